/*
 * test_notify.c - notification: submit, templates, delivery through the provider stand-in, retries.
 *
 * Submits go straight to the notification service (h2c) as peer "auth"; what the providers
 * received is read from the stand-in's GET /__messages and GET /__requests. Retry tests use
 * the stand-in's recipient tags (+fail500x1, +fail429x1, +fail400). The crash test SIGKILLs
 * the service in the middle of a batch of 1,000 and restarts it with deploy/stack.sh up.
 * Quick runs want small settings: PHR_NOTIFY_BACKOFF_BASE_MS, PHR_NOTIFY_CLAIM_TIMEOUT_S,
 * PHR_PROVIDER_TIMEOUT_MS (the waits below adapt to the values in the environment).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "timeutil.h"

#define NT_PW "Notify-Test-Pass-2026!"

/* ---- helpers ------------------------------------------------------------- */

static int
nt_env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? (int)strtol(v, NULL, 10) : def;
}

/* POST /internal/v1/notifications as |caller| with Idempotency-Key |key| (NULL: none). */
static long
nt_submit(const char *caller, const char *key, const char *body, it_resp_t *r)
{
    char who[64], cred[300], idem[300], sec[64];
    const char *hdrs[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
    size_t n = 1;

    if (caller != NULL) {
        snprintf(sec, sizeof(sec), "svc_%s.key", caller);
        snprintf(who, sizeof(who), "x-phr-caller: %s", caller);
        snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret(sec));
        hdrs[n++] = who;
        hdrs[n++] = cred;
    }
    if (key != NULL) {
        snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
        hdrs[n++] = idem;
    }
    it_request(IT_DIRECT, "notification", "POST", "/internal/v1/notifications", body, strlen(body),
               hdrs, r);
    return r->status;
}

static long
nt_submit_status(const char *key, const char *body)
{
    it_resp_t r;
    long st = nt_submit("auth", key, body, &r);
    if (st != 202) {
        fprintf(stderr, "  submit: %ld %.300s\n", st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st;
}

/* Submits and copies the id. 1 on 202. */
static int
nt_submit_id(const char *key, const char *body, char *id)
{
    it_resp_t r;
    int ok = nt_submit("auth", key, body, &r) == 202 && it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(id, 37, "%s", it_json_str(&r, "id"));
    } else {
        fprintf(stderr, "  submit: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* 1 when a 400 answer names |field| in errors[]. */
static int
nt_names_field(const it_resp_t *r, const char *field)
{
    json_object *errs, *f;

    if (r->status != 400 || r->json == NULL ||
        !json_object_object_get_ex(r->json, "errors", &errs)) {
        return 0;
    }
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        if (json_object_object_get_ex(json_object_array_get_idx(errs, i), "field", &f) &&
            strcmp(json_object_get_string(f), field) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
nt_bad(const char *key, const char *body, const char *field)
{
    it_resp_t r;
    nt_submit("auth", key, body, &r);
    int ok = nt_names_field(&r, field) &&
             strcmp(it_header(&r, "content-type"), "application/problem+json") == 0;
    if (!ok) {
        fprintf(stderr, "  want 400 %s: %ld %.300s\n", field, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* GET /internal/v1/notifications/{id}; the parsed answer (caller puts) or NULL. */
static json_object *
nt_get(const char *id, long *status)
{
    char path[128];
    it_resp_t r;

    snprintf(path, sizeof(path), "/internal/v1/notifications/%s", id);
    *status = it_internal("notification", "auth", "GET", path, NULL, &r);
    json_object *o = r.json != NULL ? json_object_get(r.json) : NULL;
    it_resp_free(&r);
    return o;
}

/*
 * Waits up to |seconds| for notification |id| to reach |want| ("sent" also accepts a later
 * "delivered" from the stand-in's webhook); its final answer in |out|.
 */
static int
nt_wait_status(const char *id, const char *want, int seconds, json_object **out)
{
    long st;
    json_object *o = NULL;
    const char *s = "";

    for (int i = 0; i < seconds * 10; i++) {
        json_object_put(o);
        o = nt_get(id, &st);
        s = o != NULL ? json_object_get_string(json_object_object_get(o, "status")) : "";
        if (st == 200 && s != NULL &&
            (strcmp(s, want) == 0 || (strcmp(want, "sent") == 0 && strcmp(s, "delivered") == 0))) {
            if (out != NULL) {
                *out = o;
            } else {
                json_object_put(o);
            }
            return 1;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "  notification %s: status %s, wanted %s\n", id, s ? s : "?", want);
    json_object_put(o);
    return 0;
}

/* GET |path| of the stand-in as JSON (caller puts), or NULL unless it answered 200. */
static json_object *
nt_standin(const char *path)
{
    long code = 0;
    json_object *o = it_standin("GET", path, NULL, &code);

    if (code != 200) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Stand-in entries of |list| ("/__messages" or "/__requests") to |addr|: their count. */
static int
nt_count_to(const char *list, const char *addr)
{
    json_object *all = nt_standin(list);
    int n = 0;

    for (size_t i = 0; all != NULL && i < json_object_array_length(all); i++) {
        json_object *m = json_object_array_get_idx(all, i), *to;
        if (!json_object_object_get_ex(m, "to", &to)) {
            continue;
        }
        if (json_object_is_type(to, json_type_array)) {
            for (size_t j = 0; j < json_object_array_length(to); j++) {
                n += strcmp(json_object_get_string(json_object_array_get_idx(to, j)), addr) == 0;
            }
        } else {
            n += strcmp(json_object_get_string(to), addr) == 0;
        }
    }
    json_object_put(all);
    return n;
}

/* Stand-in messages carrying our notification id |id| (SendGrid custom_args). */
static int
nt_count_nid(const char *id)
{
    json_object *all = nt_standin("/__messages");
    int n = 0;

    for (size_t i = 0; all != NULL && i < json_object_array_length(all); i++) {
        json_object *args =
            json_object_object_get(json_object_array_get_idx(all, i), "custom_args");
        const char *nid = json_object_get_string(json_object_object_get(args, "notification_id"));
        n += nid != NULL && strcmp(nid, id) == 0;
    }
    json_object_put(all);
    return n;
}

/* The newest stand-in message to |addr| (caller puts), waiting up to |seconds|. */
static json_object *
nt_wait_message(const char *addr, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        json_object *all = nt_standin("/__messages");
        for (size_t j = 0; all != NULL && j < json_object_array_length(all); j++) {
            json_object *m = json_object_array_get_idx(all, j);
            const char *to = json_object_get_string(json_object_object_get(m, "to"));
            if (to != NULL && strcmp(to, addr) == 0) {
                json_object *keep = json_object_get(m);
                json_object_put(all);
                return keep;
            }
        }
        json_object_put(all);
        usleep(100 * 1000);
    }
    fprintf(stderr, "  no message to %s at the stand-in\n", addr);
    return NULL;
}

/* An address |tag|ged for the stand-in's fault injection: "it-<x>-...+<tag>@example.com". */
static void
nt_tagged(char *out, size_t cap, const char *tag)
{
    char base[128];
    it_unique_email(base, sizeof(base), "nt");
    char *at = strchr(base, '@');
    *at = '\0';
    snprintf(out, cap, "%s%s%s@example.com", base, tag[0] ? "+" : "", tag);
}

static void
nt_body_changed(char *out, size_t cap, const char *email, const char *locale)
{
    snprintf(out, cap,
             "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"email\":\"%s\"},"
             "\"locale\":\"%s\",\"params\":{\"name\":\"山田 太郎\","
             "\"changed_at\":\"2026-11-26T10:00:00+09:00\"}}",
             email, locale);
}

static void
nt_key(char *out, size_t cap, const char *tag)
{
    static int n;
    snprintf(out, cap, "it-%s-%ld-%d-%d", tag, (long)time(NULL), (int)getpid(), ++n);
}

/* ---- auth flows through the gateway (itest.h: it_gw, it_login, it_operator_new) ---- */

/* The value after |label| on its line in |text|, into |out|. */
static int
nt_line_value(const char *text, const char *label, char *out, size_t cap)
{
    const char *p = text != NULL ? strstr(text, label) : NULL;
    if (p == NULL) {
        return 0;
    }
    p += strlen(label);
    size_t n = strcspn(p, "\r\n");
    if (n == 0 || n >= cap) {
        return 0;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

/* ---- cases ---------------------------------------------------------------- */

/* Auth's onboarding e-mail arrives at the stand-in; its initial password logs in. */
static void
test_onboarding_mail(void)
{
    char op[64], admin_email[128], body[512], org_id[40], admin_id[40], pw[128], token[64];
    it_resp_t r;

    IT_CHECK(it_operator_new("ntop", NT_PW, op));
    it_unique_email(admin_email, sizeof(admin_email), "ntadm");
    snprintf(body, sizeof(body),
             "{\"name\":\"Notify Clinic\",\"seat_limit\":3,\"admin_email\":\"%s\","
             "\"admin_name\":\"Admin N\",\"admin_locale\":\"en\"}",
             admin_email);
    IT_CHECK(it_gw("POST", "/api/v1/admin/orgs", body, op, &r) == 201);
    snprintf(org_id, sizeof(org_id), "%s", it_json_str(&r, "id"));
    snprintf(admin_id, sizeof(admin_id), "%s", it_json_str(&r, "admin_account_id"));
    it_resp_free(&r);

    json_object *m = nt_wait_message(admin_email, 30);
    IT_CHECK(m != NULL);
    const char *text = json_object_get_string(json_object_object_get(m, "text"));
    const char *subject = json_object_get_string(json_object_object_get(m, "subject"));
    json_object *ts = json_object_object_get(m, "tracking_settings");
    json_object *args = json_object_object_get(m, "custom_args");
    int ok = nt_line_value(text, "Initial password: ", pw, sizeof(pw)) && subject != NULL &&
             strstr(subject, "Notify Clinic") != NULL && strstr(text, "Admin N") != NULL &&
             strstr(text, "{{") == NULL && ts != NULL &&
             !json_object_get_boolean(
                 json_object_object_get(json_object_object_get(ts, "click_tracking"), "enable")) &&
             json_object_get_string(json_object_object_get(args, "notification_id")) != NULL;
    char nid[40];
    snprintf(nid, sizeof(nid), "%s",
             ok ? json_object_get_string(json_object_object_get(args, "notification_id")) : "");
    json_object_put(m);
    IT_CHECK(ok);
    /* the e-mailed password works */
    IT_CHECK(it_login(admin_email, pw, token) == 200);
    IT_CHECK(it_change_pw(token, pw, NT_PW));
    /* once accepted: the body and the secret parameter are gone from the row */
    char out[256];
    IT_CHECK(nt_wait_status(nid, "sent", 10, NULL));
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT (body IS NULL)::text || ',' || (params ? 'initial_password')::text "
                     "|| ',' || (params ? 'name')::text || ',' || to_account_id::text "
                     "FROM notifications WHERE id = '%s'",
                     nid) == 0);
    char want[128];
    snprintf(want, sizeof(want), "true,false,true,%s", admin_id);
    IT_CHECK(strcmp(out, want) == 0);
    /* to.account_id resolved at auth: a password_changed notice to the admin by id only */
    char key[96], id[40];
    nt_key(key, sizeof(key), "byid");
    snprintf(body, sizeof(body),
             "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"account_id\":\"%s\"},"
             "\"params\":{\"name\":\"Admin N\",\"changed_at\":\"2026-11-26T10:00:00+09:00\"}}",
             admin_id);
    IT_CHECK(nt_submit_id(key, body, id));
    IT_CHECK(nt_wait_status(id, "sent", 15, NULL));
    IT_CHECK(nt_count_nid(id) == 1);
    /* an unknown account: 400 naming to.account_id */
    nt_key(key, sizeof(key), "byid");
    snprintf(body, sizeof(body),
             "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"account_id\":"
             "\"00000000-0000-4000-8000-000000000000\"},"
             "\"params\":{\"name\":\"N\",\"changed_at\":\"x\"}}");
    IT_CHECK(nt_bad(key, body, "to.account_id"));
}

/* The history has a status |st| (and, when |err| is set, an error containing it). */
static int
nt_history_has(json_object *o, const char *st, const char *err)
{
    json_object *h = json_object_object_get(o, "history");
    for (size_t i = 0; h != NULL && i < json_object_array_length(h); i++) {
        json_object *e = json_object_array_get_idx(h, i);
        const char *s = json_object_get_string(json_object_object_get(e, "status"));
        const char *er = json_object_get_string(json_object_object_get(e, "error"));
        if (s != NULL && strcmp(s, st) == 0 && (err == NULL || (er && strstr(er, err)))) {
            return 1;
        }
    }
    return 0;
}

/* A 500 then success: one message at the provider, two requests, status sent. */
static void
test_500_then_success(void)
{
    char addr[160], body[1024], key[96], id[40];
    json_object *o = NULL;

    nt_tagged(addr, sizeof(addr), "fail500x1");
    nt_body_changed(body, sizeof(body), addr, "ja");
    nt_key(key, sizeof(key), "500");
    IT_CHECK(nt_submit_id(key, body, id));
    IT_CHECK(nt_wait_status(id, "sent", 30, &o));
    int attempts = json_object_get_int(json_object_object_get(o, "attempts"));
    int hist = nt_history_has(o, "queued", "500") && nt_history_has(o, "sent", NULL);
    json_object_put(o);
    IT_CHECK(attempts == 2 && hist);
    sleep(1);
    IT_CHECK(nt_count_to("/__messages", addr) == 1);
    IT_CHECK(nt_count_to("/__requests", addr) == 2);
    /* the Japanese template reached the provider */
    json_object *m = nt_wait_message(addr, 1);
    IT_CHECK(m != NULL);
    const char *subject = json_object_get_string(json_object_object_get(m, "subject"));
    const char *text = json_object_get_string(json_object_object_get(m, "text"));
    int ja = subject != NULL && strstr(subject, "パスワードが変更されました") != NULL &&
             text != NULL && strstr(text, "山田 太郎 様") != NULL;
    json_object_put(m);
    IT_CHECK(ja);
    /* audit: the submit and the delivery outcome went into the outbox */
    char out[64];
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                     "body->'target'->>'id' = '%s' AND body->>'action' IN "
                     "('notification.submit', 'notification.delivery.sent')",
                     id) == 0 &&
             strcmp(out, "2") == 0);
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                     "body->'target'->>'id' = '%s' AND body::text LIKE '%%山田%%'",
                     id) == 0 &&
             strcmp(out, "0") == 0);
}

/* Milliseconds since the epoch of the stand-in's request times to |addr|, oldest first. */
static int
nt_request_times(const char *addr, int64_t *t, int cap)
{
    json_object *all = nt_standin("/__requests");
    int n = 0;

    for (size_t i = 0; all != NULL && i < json_object_array_length(all); i++) {
        json_object *q = json_object_array_get_idx(all, i);
        json_object *to = json_object_object_get(q, "to");
        const char *first = to != NULL && json_object_is_type(to, json_type_array)
                                ? json_object_get_string(json_object_array_get_idx(to, 0))
                                : json_object_get_string(to);
        const char *at = json_object_get_string(json_object_object_get(q, "at"));
        if (first != NULL && strcmp(first, addr) == 0 && at != NULL && n < cap &&
            tu_parse_rfc3339(at, &t[n]) == 0) {
            n++;
        }
    }
    json_object_put(all);
    for (int i = 0; i + 1 < n; i++) { /* newest first: sort ascending */
        for (int j = i + 1; j < n; j++) {
            if (t[j] < t[i]) {
                int64_t x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
        }
    }
    return n;
}

/* 429 with Retry-After: the next attempt not before it; then sent once. */
static void
test_429_retry_after(void)
{
    char addr[160], body[1024], key[96], id[40];
    int64_t t[8];
    int ra = nt_env_int("PHR_STANDIN_RETRY_AFTER", 1);

    nt_tagged(addr, sizeof(addr), "fail429x1");
    nt_body_changed(body, sizeof(body), addr, "en");
    nt_key(key, sizeof(key), "429");
    IT_CHECK(nt_submit_id(key, body, id));
    IT_CHECK(nt_wait_status(id, "sent", 30, NULL));
    IT_CHECK(nt_request_times(addr, t, 8) == 2);
    if (t[1] - t[0] < (int64_t)ra * 1000 - 50) {
        fprintf(stderr, "  retried after %lld ms, Retry-After %d s\n", (long long)(t[1] - t[0]),
                ra);
    }
    IT_CHECK(t[1] - t[0] >= (int64_t)ra * 1000 - 50); /* 50 ms: clock resolution of the log */
    IT_CHECK(nt_count_to("/__messages", addr) == 1);
}

/* A permanent 400: dead at once with the error, no retry, a dead-letter audit event. */
static void
test_400_dead(void)
{
    char addr[160], body[1024], key[96], id[40], out[64];
    json_object *o = NULL;

    nt_tagged(addr, sizeof(addr), "fail400");
    nt_body_changed(body, sizeof(body), addr, "ja");
    nt_key(key, sizeof(key), "400");
    IT_CHECK(nt_submit_id(key, body, id));
    IT_CHECK(nt_wait_status(id, "dead", 20, &o));
    int attempts = json_object_get_int(json_object_object_get(o, "attempts"));
    int hist = nt_history_has(o, "dead", "400");
    json_object_put(o);
    IT_CHECK(attempts == 1 && hist);
    sleep(1);
    IT_CHECK(nt_count_to("/__requests", addr) == 1);
    IT_CHECK(nt_count_to("/__messages", addr) == 0);
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                     "body->>'action' = 'notification.dead_letter' AND "
                     "body->'target'->>'id' = '%s' AND body->'outcome'->>'result' = 'failure'",
                     id) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT status || ',' || (last_error LIKE 'sendgrid 400%%')::text "
                     "FROM notifications WHERE id = '%s'",
                     id) == 0 &&
             strcmp(out, "dead,true") == 0);
}

/* Idempotency-Key: required; replay; other body 422; a concurrent duplicate 409. */
static void
test_idempotency(void)
{
    char addr[160], body[1024], body2[1024], key[96], id[40], id2[40], cmd[1024];
    it_resp_t r;

    it_unique_email(addr, sizeof(addr), "ntidem");
    nt_body_changed(body, sizeof(body), addr, "ja");
    nt_body_changed(body2, sizeof(body2), addr, "en");
    nt_key(key, sizeof(key), "idem");
    IT_CHECK(nt_submit("auth", NULL, body, &r) == 400);
    IT_CHECK(nt_names_field(&r, "Idempotency-Key"));
    it_resp_free(&r);
    IT_CHECK(nt_submit_id(key, body, id));
    IT_CHECK(nt_submit_id(key, body, id2));
    IT_CHECK(strcmp(id, id2) == 0);
    IT_CHECK(nt_submit("auth", key, body2, &r) == 422);
    IT_CHECK(it_is_problem(&r, 422, "idempotency_key_reused"));
    it_resp_free(&r);
    char out[32];
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FROM notifications WHERE idempotency_key = '%s'", key) == 0 &&
             strcmp(out, "1") == 0);
    /* a duplicate still in progress (its key locked by another transaction): 409 */
    nt_key(key, sizeof(key), "busy");
    snprintf(cmd, sizeof(cmd),
             "PGPASSWORD='%s' psql -X -q -h %s -p %s -U phr_notification -d phr_notification "
             "-c \"SELECT pg_advisory_lock(hashtextextended('notify:%s', 0)), pg_sleep(3)\" "
             ">/dev/null 2>&1 &",
             it_secret("pg_notification.password"), it_env("PHR_TEST_PG_HOST"),
             it_env("PHR_TEST_PG_PORT"), key);
    IT_CHECK(it_sh("%s", cmd) == 0);
    usleep(800 * 1000);
    IT_CHECK(nt_submit("auth", key, body, &r) == 409);
    IT_CHECK(it_is_problem(&r, 409, "idempotency_in_progress"));
    it_resp_free(&r);
    sleep(3);
    IT_CHECK(nt_submit_id(key, body, id)); /* released: accepted now */
}

/* Bad input: 400 naming the field; auth and caller checks. */
static void
test_bad_input(void)
{
    char key[96], body[1024];
    it_resp_t r;

    nt_key(key, sizeof(key), "bad");
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"no_such\",\"channel\":\"email\",\"to\":{\"email\":\"a@b.jp\"},"
                    "\"params\":{}}",
                    "kind"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"fax\",\"to\":{\"email\":"
                    "\"a@b.jp\"},\"params\":{\"name\":\"n\",\"changed_at\":\"c\"}}",
                    "channel"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"sms\",\"to\":{\"phone\":"
                    "\"+819012345678\"},\"params\":{\"name\":\"n\",\"changed_at\":\"c\"}}",
                    "channel"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_reset\",\"channel\":\"email\",\"to\":{\"email\":"
                    "\"a@b.jp\"},\"params\":{\"name\":\"n\",\"expires_at\":\"e\"}}",
                    "params.reset_url"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"email\":"
                    "\"a@b.jp\"},\"params\":{\"name\":1,\"changed_at\":\"c\"}}",
                    "params.name"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"sms_code\",\"channel\":\"sms\",\"to\":{\"phone\":\"0901234\"},"
                    "\"params\":{\"code\":\"123456\"}}",
                    "to.phone"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"sms_code\",\"channel\":\"sms\",\"to\":{\"phone\":"
                    "\"+819012345678\"},\"params\":{\"code\":\"12345x\"}}",
                    "params.code"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"account_id\":"
                    "\"not-a-uuid-at-all-not-a-uuid-at-all\"},\"params\":{\"name\":\"n\","
                    "\"changed_at\":\"c\"}}",
                    "to.account_id"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{},"
                    "\"params\":{\"name\":\"n\",\"changed_at\":\"c\"}}",
                    "to"));
    IT_CHECK(nt_bad(key,
                    "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"email\":"
                    "\"a@b.jp\"},\"params\":{\"name\":\"n\",\"changed_at\":\"c\"},\"x\":1}",
                    "x"));
    /* nothing was stored under that key */
    char out[32];
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FROM notifications WHERE idempotency_key = '%s'", key) == 0 &&
             strcmp(out, "0") == 0);
    /* no credential: 401; a peer the contract does not name: 403 */
    nt_body_changed(body, sizeof(body), "a@b.jp", "ja");
    IT_CHECK(nt_submit(NULL, key, body, &r) == 401);
    it_resp_free(&r);
    IT_CHECK(nt_submit("notification", key, body, &r) == 401 || r.status == 403);
    it_resp_free(&r);
    /* GET: malformed and unknown ids are 404 */
    long st;
    json_object_put(nt_get("nope", &st));
    IT_CHECK(st == 404);
    json_object_put(nt_get("00000000-0000-4000-8000-000000000000", &st));
    IT_CHECK(st == 404);
}

/* sms_code: at most 5 per recipient in 15 minutes, then 429 with Retry-After. */
static void
test_sms_rate_limit(void)
{
    char phone[32], key[96], body[512], id[40];
    it_resp_t r;

    snprintf(phone, sizeof(phone), "+8190%04d%04d", (int)(time(NULL) % 10000),
             (int)(getpid() % 10000));
    snprintf(body, sizeof(body),
             "{\"kind\":\"sms_code\",\"channel\":\"sms\",\"to\":{\"phone\":\"%s\"},"
             "\"params\":{\"code\":\"493817\"}}",
             phone);
    for (int i = 0; i < 5; i++) {
        nt_key(key, sizeof(key), "sms");
        IT_CHECK(nt_submit_id(key, body, id));
    }
    nt_key(key, sizeof(key), "sms");
    IT_CHECK(nt_submit("auth", key, body, &r) == 429);
    const char *ra = it_header(&r, "retry-after");
    IT_CHECK(ra != NULL && strtol(ra, NULL, 10) > 0 && strtol(ra, NULL, 10) <= 900);
    it_resp_free(&r);
    /* the last one reaches the provider in one segment, the code inside */
    IT_CHECK(nt_wait_status(id, "sent", 20, NULL));
    json_object *m = nt_wait_message(phone, 5);
    IT_CHECK(m != NULL);
    const char *text = json_object_get_string(json_object_object_get(m, "text"));
    int ok = text != NULL && strstr(text, "493817") != NULL;
    json_object_put(m);
    IT_CHECK(ok);
    char out[64];
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT (body IS NULL)::text || ',' || (params ? 'code')::text "
                     "FROM notifications WHERE id = '%s'",
                     id) == 0 &&
             strcmp(out, "true,false") == 0);
}

/* Rows of the batch |like| whose status is (|in| 1) or is not (0) in |statuses|. */
static long
nt_count_batch(const char *like, int in, const char *statuses)
{
    char out[64];
    if (it_psql("notification", out, sizeof(out),
                "SELECT count(*) FROM notifications WHERE to_address LIKE '%s' AND status %s (%s)",
                like, in ? "IN" : "NOT IN", statuses) != 0) {
        return -1;
    }
    return atol(out);
}

/* SIGKILL in the middle of a batch of 1,000: after a restart every one is delivered. */
static void
test_crash_batch(void)
{
    enum { N = 1000 };
    char tag[64], addr[160], body[1024], key[128], like[96], path[512];
    const char *v = it_env("PHR_TEST_VAR");
    int claim_s = nt_env_int("PHR_NOTIFY_CLAIM_TIMEOUT_S", 60);

    snprintf(tag, sizeof(tag), "crash%ld%d", (long)time(NULL), (int)getpid());
    snprintf(like, sizeof(like), "it-%s-%%", tag);
    for (int i = 0; i < N; i++) {
        /* the provider takes 400 ms per message (20 in flight: 20 s for the batch), so the batch
         * is still going out at the kill even when the submits are slow (a loaded machine) */
        snprintf(addr, sizeof(addr), "it-%s-%d+slow400@example.com", tag, i);
        nt_body_changed(body, sizeof(body), addr, i % 2 ? "en" : "ja");
        snprintf(key, sizeof(key), "it-%s-%d", tag, i);
        IT_CHECK(nt_submit_status(key, body) == 202);
    }
    /* wait until part of the batch went out, then kill the service mid-way */
    long sent = 0;
    for (int i = 0; i < 600; i++) {
        sent = nt_count_batch(like, 1, "'sent', 'delivered'");
        if (sent >= N / 10) {
            break;
        }
        usleep(20 * 1000);
    }
    snprintf(path, sizeof(path), "%s/run/notification.pid", v);
    FILE *f = fopen(path, "r");
    long pid = 0;
    IT_CHECK(f != NULL && fscanf(f, "%ld", &pid) == 1);
    fclose(f);
    IT_CHECK(it_sh("kill -KILL %ld; for i in $(seq 50); do kill -0 %ld 2>/dev/null || exit 0; "
                   "sleep 0.1; done; exit 1",
                   pid, pid) == 0);
    long done_at_kill = nt_count_batch(like, 1, "'sent', 'delivered'");
    long unknown = nt_count_batch(like, 1, "'sending'");
    fprintf(stderr, "  killed with %ld sent, %ld in flight (outcome unknown)\n", done_at_kill,
            unknown);
    IT_CHECK(done_at_kill < N); /* really in the middle */
    IT_CHECK(it_sh("bash deploy/stack.sh up > %s/log/notify-crash-up.log 2>&1", v) == 0);
    /* every one sent; the claims of the killed process are reaped after claim_s */
    long left = N;
    for (int i = 0; i < (claim_s + 600) * 5 && left > 0; i++) { /* a loaded stand-in is slow */
        left = nt_count_batch(like, 0, "'sent', 'delivered'");
        usleep(200 * 1000);
    }
    IT_CHECK(left == 0);
    /* counted at the stand-in: each notification exactly once. The sends whose outcome the
     * killed process never recorded are looked up at the provider (SendGrid Email Activity by
     * our custom_args notification_id) before any resend. */
    sleep(1);
    json_object *all = nt_standin("/__messages");
    IT_CHECK(all != NULL);
    static unsigned char seen[N];
    memset(seen, 0, sizeof(seen));
    long total = 0, dup = 0;
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "it-%s-", tag);
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        const char *to =
            json_object_get_string(json_object_object_get(json_object_array_get_idx(all, i), "to"));
        if (to == NULL || strncmp(to, prefix, strlen(prefix)) != 0) {
            continue;
        }
        int k = (int)strtol(to + strlen(prefix), NULL, 10);
        if (k >= 0 && k < N) {
            total++;
            dup += seen[k] > 0;
            if (seen[k] < 255) {
                seen[k]++;
            }
        }
    }
    json_object_put(all);
    long missing = 0;
    for (int i = 0; i < N; i++) {
        missing += seen[i] == 0;
    }
    fprintf(stderr, "  stand-in: %ld messages, %ld missing, %ld duplicates\n", total, missing, dup);
    /* attempts whose outcome the service could not know (a provider timeout, or a claim of
     * the killed process reaped after the restart) and those the provider turned out to have */
    char out[64];
    IT_CHECK(it_psql("notification", out, sizeof(out),
                     "SELECT count(*) FILTER (WHERE e.status = 'queued' AND (e.detail LIKE "
                     "'%%Timeout%%' OR e.detail LIKE 'claim expired%%')) || ' ' || count(*) FILTER "
                     "(WHERE e.status = 'sent' AND e.detail LIKE 'found at the provider%%') FROM "
                     "notification_events e JOIN notifications n ON n.id = e.notification_id "
                     "WHERE n.to_address LIKE '%s'",
                     like) == 0);
    char *end;
    long unknown_total = strtol(out, &end, 10);
    long found = strtol(end, NULL, 10);
    fprintf(stderr, "  unknown outcomes: %ld (%ld at the kill), found at the provider: %ld\n",
            unknown_total, unknown, found);
    IT_CHECK(missing == 0);
    IT_CHECK(dup == 0);
    IT_CHECK(total == N);
}

const it_case_t notify_cases[] = {
    {"notify_bad_input", test_bad_input},
    {"notify_idempotency", test_idempotency},
    {"notify_onboarding_mail", test_onboarding_mail},
    {"notify_500_then_success", test_500_then_success},
    {"notify_429_retry_after", test_429_retry_after},
    {"notify_400_dead", test_400_dead},
    {"notify_sms_rate_limit", test_sms_rate_limit},
    {"notify_crash_batch", test_crash_batch},
    {NULL, NULL},
};
