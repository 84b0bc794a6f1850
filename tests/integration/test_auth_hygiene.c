/*
 * test_auth_hygiene.c - what auth must not keep or let live, through the
 * gateway: a suspended organization's staff sessions end at once (and stay
 * ended after reactivation); delivered e-mails lose their secrets in auth's
 * outbox (the initial password compared with the one the provider stand-in
 * received); withdrawn accounts past the retention period are anonymised by
 * `phrctl retention run` (login then answers as for an unknown account, an
 * audit event names the count); and a patient's consent links carry the
 * organization's name (records asks auth's internal org lookup).
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR,
 * PHR_TEST_PG_HOST/PORT (psql), PHR_STANDIN_PORT (GET /__messages),
 * PHR_AUTH_PORT, PHR_RECORDS_PORT and PHR_BUILD (bin/phrctl).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define HY_PW "Green4Meadow!kLong"

typedef struct {
    char op_token[64];
    char org_id[37];
    char org_name[64];
    char admin_id[37];
    char admin_email[128];
    char admin_pw[64]; /* the e-mailed initial password */
    char admin_token[64];
} hy_org_t;

/* The problem code of a failed login of |email| / |pw| with its status: "401 code". */
static void
hy_login_problem(const char *email, const char *pw, char *out, size_t cap)
{
    char body[512];
    it_resp_t r;
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    it_gw("POST", "/api/v1/auth/login", body, NULL, &r);
    const char *code = it_json_str(&r, "code");
    snprintf(out, cap, "%ld %s", r.status, code != NULL ? code : "-");
    it_resp_free(&r);
}

/* The initial password e-mailed to |account_id|, as auth's outbox row has it ("" when gone). */
static int
hy_outbox_pw(const char *account_id, char *pw, size_t cap)
{
    return it_psql("auth", pw, cap,
                   "SELECT coalesce(body->'params'->>'initial_password', '') FROM outbox WHERE "
                   "topic = 'notification' AND body->>'kind' = 'staff_onboarding' AND "
                   "body->'to'->>'account_id' = '%s'",
                   account_id) == 0;
}

/* An org named |name| made by a fresh operator, its admin logged in with the password changed. */
static int
hy_org(const char *name, hy_org_t *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->org_name, sizeof(o->org_name), "%s", name);
    if (!it_operator_new("hyop", HY_PW, o->op_token)) {
        return 0;
    }
    it_unique_email(o->admin_email, sizeof(o->admin_email), "hyadm");
    if (!it_org_new(o->op_token, name, 5, o->admin_email, "Admin", o->org_id, o->admin_id)) {
        return 0;
    }
    return hy_outbox_pw(o->admin_id, o->admin_pw, sizeof(o->admin_pw)) &&
           strlen(o->admin_pw) >= 16 &&
           it_login(o->admin_email, o->admin_pw, o->admin_token) == 200 &&
           it_change_pw(o->admin_token, o->admin_pw, HY_PW);
}

/* The operator sets the status of |o|'s org. Returns the status. */
static long
hy_org_set(const hy_org_t *o, const char *status)
{
    char path[128], body[64];
    snprintf(path, sizeof(path), "/api/v1/admin/orgs/%s", o->org_id);
    snprintf(body, sizeof(body), "{\"status\":\"%s\"}", status);
    return it_gw_status("PATCH", path, body, o->op_token);
}

/* A registered patient (e-mail verified), logged in. 1 when made. */
static int
hy_patient(it_patient_t *p)
{
    char out[64];

    return it_patient("hypat", HY_PW, 0, p) &&
           it_psql("auth", out, sizeof(out),
                   "UPDATE accounts SET email_verified_at = now() WHERE id = '%s'", p->id) == 0 &&
           it_login(p->email, HY_PW, p->token) == 200;
}

/* psql's answer to |sql| (a count or a boolean) in |db|, compared with |want|. */
static int
hy_sql_is(const char *db, const char *want, const char *sql)
{
    char out[256];
    if (it_psql(db, out, sizeof(out), "%s", sql) != 0) {
        return 0;
    }
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "  %s: got '%s', want '%s'\n", sql, out, want);
        return 0;
    }
    return 1;
}

/* Polls |sql| in |db| until it answers |want| or |seconds| pass. */
static int
hy_wait_sql(const char *db, const char *want, int seconds, const char *sql)
{
    char out[256];
    for (int i = 0; i < seconds * 5; i++) {
        if (it_psql(db, out, sizeof(out), "%s", sql) == 0 && strcmp(out, want) == 0) {
            return 1;
        }
        usleep(200 * 1000);
    }
    return hy_sql_is(db, want, sql);
}

/* ---- suspension ends the staff's sessions ---------------------------------- */

static void
test_suspend_revokes(void)
{
    hy_org_t o;
    char path[160], body[512], staff_email[128], staff_id[37] = "", staff_pw[64];
    char staff_token[64], admin_again[64];
    it_resp_t r;

    IT_CHECK(hy_org("Hygiene Suspend Clinic", &o));
    /* a second staff member, logged in twice (two live sessions) */
    it_unique_email(staff_email, sizeof(staff_email), "hystaff");
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", o.org_id);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Staff S\",\"role\":\"staff\"}",
             staff_email);
    IT_CHECK(it_gw("POST", path, body, o.admin_token, &r) == 201 && it_json_str(&r, "id") != NULL);
    snprintf(staff_id, sizeof(staff_id), "%s", it_json_str(&r, "id"));
    it_resp_free(&r);
    IT_CHECK(hy_outbox_pw(staff_id, staff_pw, sizeof(staff_pw)) && strlen(staff_pw) >= 16);
    IT_CHECK(it_login(staff_email, staff_pw, staff_token) == 200);
    IT_CHECK(it_change_pw(staff_token, staff_pw, HY_PW));
    IT_CHECK(it_login(staff_email, HY_PW, admin_again) == 200);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, staff_token) == 200);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, admin_again) == 200);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s", o.org_id);
    IT_CHECK(it_gw_status("GET", path, NULL, o.admin_token) == 200);

    IT_CHECK(hy_org_set(&o, "suspended") == 200);
    /* every session of the org's staff ended at once, here and at the other services */
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, o.admin_token) == 401);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, staff_token) == 401);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, admin_again) == 401);
    IT_CHECK(it_gw_status("GET", path, NULL, o.admin_token) == 401);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients", o.org_id);
    IT_CHECK(it_gw_status("GET", path, NULL, staff_token) == 401);
    /* and no new one while suspended; the operator's own session is untouched */
    IT_CHECK(it_login(staff_email, HY_PW, NULL) == 401);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, o.op_token) == 200);
    /* repeating the suspension is harmless */
    IT_CHECK(hy_org_set(&o, "suspended") == 200);

    IT_CHECK(hy_org_set(&o, "active") == 200);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, o.admin_token) == 401);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, staff_token) == 401);
    IT_CHECK(it_login(staff_email, HY_PW, staff_token) == 200);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, staff_token) == 200);
}

/* ---- delivered e-mails lose their secrets ------------------------------------ */

/* 1 when the stand-in holds a message to |addr| whose text contains |needle|. */
static int
hy_standin_has(const char *addr, const char *needle)
{
    long code = 0;
    int found = 0;
    json_object *all = it_standin("GET", "/__messages", NULL, &code);

    if (code != 200 || !json_object_is_type(all, json_type_array)) {
        json_object_put(all);
        return 0;
    }
    for (size_t i = 0; all != NULL && i < json_object_array_length(all) && !found; i++) {
        json_object *m = json_object_array_get_idx(all, i);
        const char *to = json_object_get_string(json_object_object_get(m, "to"));
        const char *text = json_object_get_string(json_object_object_get(m, "text"));
        found = to != NULL && text != NULL && strcmp(to, addr) == 0 && strstr(text, needle);
    }
    json_object_put(all);
    return found;
}

static void
test_outbox_secrets_wiped(void)
{
    hy_org_t o;
    char sql[512], pw[64];
    it_resp_t r;
    int delivered = 0;

    IT_CHECK(hy_org("Hygiene Mail Clinic", &o));
    /* the provider received the initial password that auth's outbox row still carries */
    for (int i = 0; i < 150 && !delivered; i++) {
        delivered = hy_standin_has(o.admin_email, o.admin_pw);
        if (!delivered) {
            usleep(200 * 1000);
        }
    }
    IT_CHECK(delivered);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE topic = 'notification' AND sent_at IS NOT NULL "
             "AND body->>'kind' = 'staff_onboarding' AND body->'to'->>'account_id' = '%s'",
             o.admin_id);
    IT_CHECK(hy_wait_sql("auth", "1", 30, sql));
    /* a row delivered just now keeps it for a grace period (readers of the outbox) */
    IT_CHECK(it_internal("auth", "auth", "POST", "/internal/v1/hygiene/run", "{}", &r) == 200);
    it_resp_free(&r);
    IT_CHECK(hy_outbox_pw(o.admin_id, pw, sizeof(pw)) && strcmp(pw, o.admin_pw) == 0);
    /* delivered long enough ago: the secret leaves the database, the row stays */
    IT_CHECK(it_psql("auth", pw, sizeof(pw),
                     "UPDATE outbox SET sent_at = now() - interval '1 hour' WHERE topic = "
                     "'notification' AND body->'to'->>'account_id' = '%s'",
                     o.admin_id) == 0);
    IT_CHECK(it_internal("auth", "auth", "POST", "/internal/v1/hygiene/run", "{}", &r) == 200);
    json_object *v;
    int wiped = r.json != NULL && json_object_object_get_ex(r.json, "notifications_wiped", &v) &&
                json_object_get_int64(v) >= 1;
    it_resp_free(&r);
    IT_CHECK(wiped);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE strpos(body::text, '%s') > 0 OR "
             "strpos(coalesce(last_error, ''), '%s') > 0",
             o.admin_pw, o.admin_pw);
    IT_CHECK(hy_sql_is("auth", "0", sql));
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE topic = 'notification' AND "
             "idempotency_key = 'onboard:%s' AND body->>'kind' = 'staff_onboarding' AND "
             "body->'params' ? 'login_url' AND NOT body->'params' ? 'initial_password'",
             o.admin_id);
    IT_CHECK(hy_sql_is("auth", "1", sql));
    /* the account itself is untouched: its (changed) password still works */
    IT_CHECK(it_login(o.admin_email, HY_PW, NULL) == 200);
}

/* ---- withdrawn accounts are anonymised after the retention period ------------ */

static void
test_withdrawn_purged(void)
{
    char body[256], sql[768], line[1024];
    char unknown[128], want[64], got[64];
    it_patient_t p;
    json_object *o, *v;

    IT_CHECK(hy_patient(&p));
    snprintf(body, sizeof(body), "{\"password\":\"%s\"}", HY_PW);
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/withdraw", body, p.token) == 204);
    snprintf(sql, sizeof(sql),
             "SELECT withdrawn_at IS NOT NULL AND purged_at IS NULL FROM accounts "
             "WHERE id = '%s'",
             p.id);
    IT_CHECK(hy_sql_is("auth", "t", sql));
    /* not due yet: a run keeps the row */
    IT_CHECK(it_phrctl("retention run --yes --json", line, sizeof(line)) == 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM accounts WHERE email = '%s'", p.email);
    IT_CHECK(hy_sql_is("auth", "1", sql));
    /* past any retention period (PHR_RETENTION_DAYS is at most 3650) */
    IT_CHECK(it_psql("auth", got, sizeof(got),
                     "UPDATE accounts SET withdrawn_at = now() - interval '3700 days' "
                     "WHERE id = '%s'",
                     p.id) == 0);
    IT_CHECK(it_phrctl("retention run --yes --json", line, sizeof(line)) == 0);
    o = json_tokener_parse(line);
    int counted = o != NULL && json_object_object_get_ex(o, "accounts_purged", &v) &&
                  json_object_get_int64(v) >= 1 &&
                  json_object_object_get_ex(o, "patients_purged", &v);
    json_object_put(o);
    IT_CHECK(counted);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM accounts WHERE id = '%s' AND email <> '%s' AND "
             "strpos(email, 'hypat') = 0 AND name = 'purged' AND password_hash = '!' AND "
             "purged_at IS NOT NULL AND status = 'withdrawn'",
             p.id, p.email);
    IT_CHECK(hy_sql_is("auth", "1", sql));
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM accounts WHERE email = '%s') + (SELECT count(*) FROM "
             "account_tokens WHERE account_id = '%s')",
             p.email, p.id);
    IT_CHECK(hy_sql_is("auth", "0", sql));
    /* the login of the former address is refused exactly like an unknown one's */
    it_unique_email(unknown, sizeof(unknown), "hynobody");
    hy_login_problem(unknown, HY_PW, want, sizeof(want));
    hy_login_problem(p.email, HY_PW, got, sizeof(got));
    IT_CHECK(strncmp(want, "401 ", 4) == 0);
    IT_CHECK(strcmp(got, want) == 0);
    /* audited (through auth's outbox into the audit log) with the count and the id */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_events WHERE action = 'auth.account.purge' AND "
             "(details->>'accounts_purged')::int >= 1 AND details->'account_ids' ? '%s'",
             p.id);
    IT_CHECK(hy_wait_sql("audit", "1", 30, sql));
    /* a second run finds nothing more of it */
    snprintf(sql, sizeof(sql), "SELECT purged_at < now() FROM accounts WHERE id = '%s'", p.id);
    IT_CHECK(it_phrctl("retention run --yes", line, sizeof(line)) == 0);
    IT_CHECK(hy_sql_is("auth", "t", sql));
}

/* ---- a patient's links name the organization ---------------------------------- */

static void
test_links_org_name(void)
{
    hy_org_t o;
    char path[160], body[128], code[16] = "";
    it_patient_t p;
    char name[64];
    it_resp_t r;
    json_object *items;

    snprintf(name, sizeof(name), "Hygiene Links %d", (int)getpid());
    IT_CHECK(hy_org(name, &o));
    IT_CHECK(hy_patient(&p));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/invitations", o.org_id);
    IT_CHECK(it_gw("POST", path, NULL, o.admin_token, &r) == 201 &&
             it_json_str(&r, "code") != NULL);
    snprintf(code, sizeof(code), "%s", it_json_str(&r, "code"));
    it_resp_free(&r);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    IT_CHECK(it_gw_status("POST", "/api/v1/me/links", body, p.token) == 201);

    IT_CHECK(it_gw("GET", "/api/v1/me/links", NULL, p.token, &r) == 200);
    int found = 0;
    if (r.json != NULL && json_object_object_get_ex(r.json, "items", &items)) {
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *it = json_object_array_get_idx(items, i);
            const char *org = json_object_get_string(json_object_object_get(it, "org_id"));
            const char *n = json_object_get_string(json_object_object_get(it, "org_name"));
            found += org != NULL && strcmp(org, o.org_id) == 0 && n != NULL && strcmp(n, name) == 0;
        }
    }
    if (found != 1) {
        fprintf(stderr, "  links: %.400s\n", r.body ? r.body : "");
    }
    it_resp_free(&r);
    IT_CHECK(found == 1);
    /* the internal route: records only, unknown ids left out, bad ids named */
    snprintf(body, sizeof(body), "{\"ids\":[\"%s\",\"%s\"]}", o.org_id, p.id);
    IT_CHECK(it_internal("auth", "records", "POST", "/internal/v1/orgs/lookup", body, &r) == 200);
    int one = r.json != NULL && json_object_object_get_ex(r.json, "items", &items) &&
              json_object_array_length(items) == 1 &&
              strcmp(json_object_get_string(
                         json_object_object_get(json_object_array_get_idx(items, 0), "status")),
                     "active") == 0;
    it_resp_free(&r);
    IT_CHECK(one);
    IT_CHECK(it_internal("auth", "records", "POST", "/internal/v1/orgs/lookup",
                         "{\"ids\":[\"nope\"]}", &r) == 400);
    int named = it_is_problem(&r, 400, "validation_failed") && strstr(r.body, "\"ids\"") != NULL;
    it_resp_free(&r);
    IT_CHECK(named);
    IT_CHECK(it_internal("auth", "notification", "POST", "/internal/v1/orgs/lookup", body, &r) ==
             403);
    it_resp_free(&r);
}

const it_case_t auth_hygiene_cases[] = {
    {"auth hygiene: suspending an org ends its staff's sessions", test_suspend_revokes},
    {"auth hygiene: delivered e-mails lose their secrets in the outbox", test_outbox_secrets_wiped},
    {"auth hygiene: withdrawn accounts anonymised after retention (phrctl)", test_withdrawn_purged},
    {"records: a patient's links name the organization (auth org lookup)", test_links_org_name},
    {NULL, NULL},
};
