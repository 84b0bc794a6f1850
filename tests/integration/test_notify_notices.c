/*
 * test_notify_notices.c - notification: webhooks, operator notices and incidents.
 *
 * Webhooks: signed requests are made by the provider stand-in (POST /__webhook on
 * 127.0.0.1:$PHR_STANDIN_PORT signs with the stack's secrets and posts to the gateway),
 * against notifications inserted here with psql (status sent/sending, so no worker touches
 * them). Forged or stale signatures are 401 and change nothing; valid events move the status
 * forward only; a duplicate event id is recorded once. End to end, a +bounce address gets
 * the stand-in's own bounce webhook.
 * Notices and incidents go through the gateway as an operator (phrctl) and org admins; what
 * was sent is counted at the stand-in (GET /__messages).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "timeutil.h"

#define NN_PW "Blue7Harbor!qLong"

/* Signs and posts a webhook through the stand-in; the service's status code (0: failed). */
static long
nn_hook(const char *json)
{
    json_object *o = it_standin("POST", "/__webhook", json, NULL), *st;
    long s = o != NULL && json_object_object_get_ex(o, "status", &st) ? json_object_get_int(st) : 0;
    json_object_put(o);
    return s;
}

/* Messages at the stand-in whose |field| contains |needle| (and whose "to" has |to|, if set). */
static int
nn_count(const char *field, const char *needle, const char *to)
{
    json_object *arr = it_standin("GET", "/__messages", NULL, NULL);
    int n = 0;
    for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
        json_object *m = json_object_array_get_idx(arr, i), *v, *t;
        const char *s = json_object_object_get_ex(m, field, &v) ? json_object_get_string(v) : NULL;
        const char *ts = json_object_object_get_ex(m, "to", &t) ? json_object_get_string(t) : "";
        if (s != NULL && strstr(s, needle) != NULL && (to == NULL || strcmp(ts, to) == 0)) {
            n++;
        }
    }
    json_object_put(arr);
    return n;
}

static long nn_sql_long(const char *db, const char *sql);

/* Distinct "to" addresses of the messages whose subject contains |needle|. */
static int
nn_count_distinct(const char *needle)
{
    json_object *arr = it_standin("GET", "/__messages", NULL, NULL);
    json_object *seen = json_object_new_object();
    int n = 0;
    for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
        json_object *m = json_object_array_get_idx(arr, i), *v, *t;
        const char *s =
            json_object_object_get_ex(m, "subject", &v) ? json_object_get_string(v) : NULL;
        if (s != NULL && strstr(s, needle) != NULL && json_object_object_get_ex(m, "to", &t) &&
            !json_object_object_get_ex(seen, json_object_get_string(t), NULL)) {
            json_object_object_add(seen, json_object_get_string(t), NULL);
            n++;
        }
    }
    json_object_put(seen);
    json_object_put(arr);
    return n;
}

/*
 * 1 when the stand-in got the notice once per notification the provider accepted (distinct
 * addresses), duplicates only for notifications retried after a timeout (unknown outcome:
 * at least once).
 */
static int
nn_notice_reached(const char *notice_id, const char *subject)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notifications WHERE notice_id = '%s' AND attempts > 1",
             notice_id);
    long retried = nn_sql_long("notification", sql);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notifications WHERE notice_id = '%s' AND "
             "provider_message_id IS NOT NULL",
             notice_id);
    long accepted = nn_sql_long("notification", sql);
    int total = nn_count("subject", subject, NULL);
    int distinct = nn_count_distinct(subject);
    if (accepted <= 0 || distinct != accepted || retried < 0 || total > accepted + retried) {
        fprintf(stderr, "  notice %s: %d messages to %d addresses, %ld accepted, %ld retried\n",
                notice_id, total, distinct, accepted, retried);
        return 0;
    }
    return 1;
}

/* Inserts a notification (|status|, |provider|, |msg_id|); its id into |id|. 1 when done. */
static int
nn_insert(const char *status, const char *provider, const char *msg_id, char *id)
{
    char out[64];
    if (it_psql("notification", out, sizeof(out),
                "INSERT INTO notifications (id, idempotency_key, kind, channel, to_address, "
                "status, provider, provider_message_id) VALUES (gen_random_uuid(), "
                "'it-' || gen_random_uuid(), 'password_changed', '%s', '%s', '%s', '%s', '%s') "
                "RETURNING id",
                strcmp(provider, "twilio") == 0 ? "sms" : "email",
                strcmp(provider, "twilio") == 0 ? "+819012345678" : "it-hook@example.com", status,
                provider, msg_id) != 0 ||
        strlen(out) < 36) {
        return 0;
    }
    snprintf(id, 37, "%.36s", out);
    return 1;
}

static int
nn_status_is(const char *id, const char *want)
{
    char out[32];
    return it_psql("notification", out, sizeof(out),
                   "SELECT status FROM notifications WHERE id = '%s'", id) == 0 &&
           strcmp(out, want) == 0;
}

static long
nn_sql_long(const char *db, const char *sql)
{
    char out[64];
    if (it_psql(db, out, sizeof(out), "%s", sql) != 0 || out[0] == '\0') {
        return -1;
    }
    return strtol(out, NULL, 10);
}

static void
nn_rand_hex(char *out, size_t n)
{
    static unsigned seq;
    unsigned long long x = (unsigned long long)time(NULL) * 2654435761u ^ (unsigned)getpid();
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL + seq++;
        out[i] = "0123456789abcdef"[(x >> 33) & 15];
    }
    out[n] = '\0';
}

/* ---- gateway helpers ---------------------------------------------------------------------- */

static long
nn_req(const char *method, const char *path, const char *body, const char *token, const char *idem,
       it_resp_t *r)
{
    char auth[128], key[300];
    const char *hdrs[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    if (body != NULL) {
        hdrs[n++] = "Content-Type: application/json";
    }
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    if (idem != NULL) {
        snprintf(key, sizeof(key), "Idempotency-Key: %s", idem);
        hdrs[n++] = key;
    }
    it_request(IT_GATEWAY_H2, NULL, method, path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

/* An org whose admin is |email|, the admin logged in. 1 when done. */
static int
nn_org(const char *op, const char *email, char *org_id, char *admin_id, char *admin_token)
{
    return it_org_new(op, "IT Notice Clinic", 3, email, "Admin N", org_id, admin_id) &&
           (admin_token == NULL || it_staff_login(email, admin_id, NN_PW, admin_token));
}

/* ---- webhooks ------------------------------------------------------------------------------- */

static void
test_sendgrid_webhook(void)
{
    char id[37], id2[37], msg[24], msg2[24], eid[24], body[1024];
    long now = (long)time(NULL);

    nn_rand_hex(msg, 22);
    nn_rand_hex(msg2, 22);
    nn_rand_hex(eid, 22);
    IT_CHECK(nn_insert("sent", "sendgrid", msg, id));
    IT_CHECK(nn_insert("sent", "sendgrid", msg2, id2));

    /* forged signature (another key), stale timestamp, no headers: 401 and nothing changes */
    snprintf(body, sizeof(body),
             "{\"provider\":\"sendgrid\",\"forge\":true,\"events\":[{\"event\":\"delivered\","
             "\"sg_event_id\":\"%s\",\"timestamp\":%ld,\"notification_id\":\"%s\"}]}",
             eid, now, id);
    IT_CHECK(nn_hook(body) == 401);
    snprintf(body, sizeof(body),
             "{\"provider\":\"sendgrid\",\"timestamp\":%ld,\"events\":[{\"event\":\"delivered\","
             "\"sg_event_id\":\"%s\",\"timestamp\":%ld,\"notification_id\":\"%s\"}]}",
             now - 3600, eid, now, id);
    IT_CHECK(nn_hook(body) == 401);
    {
        it_resp_t r;
        const char *h[] = {"Content-Type: application/json",
                           "X-Twilio-Email-Event-Webhook-Signature: MEUCIQ==", NULL};
        char ev[256], ts[64];
        snprintf(ts, sizeof(ts), "X-Twilio-Email-Event-Webhook-Timestamp: %ld", now);
        const char *h2[] = {h[0], h[1], ts, NULL};
        snprintf(ev, sizeof(ev),
                 "[{\"event\":\"delivered\",\"sg_event_id\":\"x%s\",\"notification_id\":\"%s\"}]",
                 eid, id);
        it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/webhooks/sendgrid", ev, strlen(ev), h, &r);
        IT_CHECK(r.status == 401);
        it_resp_free(&r);
        it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/webhooks/sendgrid", ev, strlen(ev), h2,
                   &r);
        IT_CHECK(it_is_problem(&r, 401, "invalid_signature"));
        it_resp_free(&r);
    }
    IT_CHECK(nn_status_is(id, "sent"));

    /* a valid delivered event moves it; processed changes nothing */
    snprintf(body, sizeof(body),
             "{\"provider\":\"sendgrid\",\"events\":[{\"event\":\"processed\",\"sg_event_id\":"
             "\"p%s\",\"timestamp\":%ld,\"notification_id\":\"%s\"},{\"event\":\"delivered\","
             "\"sg_event_id\":\"%s\",\"timestamp\":%ld,\"notification_id\":\"%s\"}]}",
             eid, now, id, eid, now, id);
    IT_CHECK(nn_hook(body) == 204);
    IT_CHECK(nn_status_is(id, "delivered"));
    /* the same event again: recorded once */
    IT_CHECK(nn_hook(body) == 204);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notification_events WHERE provider_event_id = 'sg:%s'", eid);
    IT_CHECK(nn_sql_long("notification", sql) == 1);
    /* never backwards from a final state: a later bounce leaves it delivered */
    snprintf(body, sizeof(body),
             "{\"provider\":\"sendgrid\",\"events\":[{\"event\":\"bounce\",\"sg_event_id\":"
             "\"b%s\",\"timestamp\":%ld,\"notification_id\":\"%s\"}]}",
             eid, now, id);
    IT_CHECK(nn_hook(body) == 204);
    IT_CHECK(nn_status_is(id, "delivered"));
    /* the one change was audited, the duplicate and the refused bounce were not */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' LIKE "
             "'notification.delivery.%%' AND body::text LIKE '%%%s%%'",
             id);
    IT_CHECK(nn_sql_long("notification", sql) == 1);
    /* found by sg_message_id alone (no custom_args) */
    snprintf(body, sizeof(body),
             "{\"provider\":\"sendgrid\",\"events\":[{\"event\":\"bounce\",\"sg_event_id\":"
             "\"m%s\",\"timestamp\":%ld,\"sg_message_id\":\"%s.recvd-1-0-0\"}]}",
             eid, now, msg2);
    IT_CHECK(nn_hook(body) == 204);
    IT_CHECK(nn_status_is(id2, "bounced"));
    /* signed but malformed: 400 naming the event */
    IT_CHECK(nn_hook("{\"provider\":\"sendgrid\",\"events\":[{\"event\":\"delivered\"}]}") == 400);
}

static void
test_twilio_webhook(void)
{
    char id[37], id2[37], sid[40], sid2[40], body[1024];

    memcpy(sid, "SM", 2);
    nn_rand_hex(sid + 2, 32);
    memcpy(sid2, "SM", 2);
    nn_rand_hex(sid2 + 2, 32);
    IT_CHECK(nn_insert("sending", "twilio", sid, id));
    IT_CHECK(nn_insert("sent", "twilio", sid2, id2));

#define NN_TW(forge, sid_, st)                                                                     \
    (snprintf(                                                                                     \
         body, sizeof(body),                                                                       \
         "{\"provider\":\"twilio\",\"forge\":%s,\"params\":{\"MessageSid\":\"%s\","                \
         "\"MessageStatus\":\"%s\",\"AccountSid\":\"AC00000000000000000000000000000000\","         \
         "\"To\":\"+819012345678\",\"From\":\"+15005550006\",\"ApiVersion\":\"2010-04-01\"}}",     \
         forge, sid_, st),                                                                         \
     nn_hook(body))

    IT_CHECK(NN_TW("true", sid, "delivered") == 401);
    IT_CHECK(nn_status_is(id, "sending"));
    {
        it_resp_t r;
        const char *h[] = {"Content-Type: application/x-www-form-urlencoded",
                           "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
        char form[128];
        snprintf(form, sizeof(form), "MessageSid=%s&MessageStatus=delivered", sid);
        it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/webhooks/twilio", form, strlen(form), h,
                   &r);
        IT_CHECK(it_is_problem(&r, 401, "invalid_signature"));
        it_resp_free(&r);
    }
    IT_CHECK(nn_status_is(id, "sending"));
    IT_CHECK(NN_TW("false", sid, "sent") == 204);
    IT_CHECK(nn_status_is(id, "sent"));
    IT_CHECK(NN_TW("false", sid, "delivered") == 204);
    IT_CHECK(nn_status_is(id, "delivered"));
    /* out of order: a late "sent" or "failed" does not move a delivered message back */
    IT_CHECK(NN_TW("false", sid, "sent") == 204);
    IT_CHECK(NN_TW("false", sid, "failed") == 204);
    IT_CHECK(nn_status_is(id, "delivered"));
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notification_events WHERE provider_event_id = 'tw:%s:sent'",
             sid);
    IT_CHECK(nn_sql_long("notification", sql) == 1);
    IT_CHECK(NN_TW("false", sid2, "undelivered") == 204);
    IT_CHECK(nn_status_is(id2, "bounced"));
    /* signed, but without MessageStatus: 400 naming it */
    snprintf(body, sizeof(body),
             "{\"provider\":\"twilio\",\"params\":{\"MessageSid\":\"%s\",\"AccountSid\":\"AC0\"}}",
             sid);
    IT_CHECK(nn_hook(body) == 400);
#undef NN_TW
}

/* End to end: the stand-in's own signed bounce webhook reaches a submitted message. */
static void
test_webhook_end_to_end(void)
{
    char body[512], key[64], path[128], email[160], hex[17];
    it_resp_t r;

    nn_rand_hex(hex, 16);
    snprintf(email, sizeof(email), "it-e2e-%s+bounce@example.com", hex);
    snprintf(key, sizeof(key), "it-e2e-%s", hex);
    snprintf(body, sizeof(body),
             "{\"kind\":\"password_changed\",\"channel\":\"email\",\"to\":{\"email\":\"%s\"},"
             "\"params\":{\"name\":\"E2E\",\"changed_at\":\"2026-01-01T00:00:00+09:00\"}}",
             email);
    const char *h[] = {"x-phr-caller: auth", NULL, "Content-Type: application/json", NULL, NULL};
    char cred[300], idem[128];
    snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret("svc_auth.key"));
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
    h[1] = cred;
    h[3] = idem;
    it_request(IT_DIRECT, "notification", "POST", "/internal/v1/notifications", body, strlen(body),
               h, &r);
    IT_CHECK(r.status == 202 && it_json_str(&r, "id") != NULL);
    char id[37];
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id"));
    it_resp_free(&r);
    snprintf(path, sizeof(path), "/internal/v1/notifications/%s", id);
    /* the worker and the stand-in's webhooks may still carry a large batch: wait while
     * they make progress (fewer unfinished notifications), up to 60 s without progress */
    int bounced = 0;
    long last = -1;
    for (int i = 0, idle = 0; i < 2400 && idle < 240 && !bounced; i++) {
        bounced = nn_status_is(id, "bounced");
        if (!bounced) {
            long n = nn_sql_long("notification", "SELECT count(*) FROM notifications"
                                                 " WHERE status IN ('queued', 'sending', 'sent')");
            int progress = n >= 0 && (last < 0 || n < last);
            idle = progress ? 0 : idle + 1;
            last = progress ? n : last;
            usleep(250000);
        }
    }
    IT_CHECK(bounced);
}

/* ---- notices -------------------------------------------------------------------------------- */

static long
nn_json_int(json_object *o, const char *a, const char *b)
{
    json_object *v = o, *w;
    if (v == NULL || !json_object_object_get_ex(v, a, &w)) {
        return -1;
    }
    if (b != NULL && !json_object_object_get_ex(w, b, &w)) {
        return -1;
    }
    return json_object_get_int(w);
}

static void
test_notice_all(void)
{
    char op[64], tag[17], body[1024], path[128], id[37], subject[64];
    it_resp_t r;

    IT_CHECK(it_operator_new("nop", NN_PW, op));
    nn_rand_hex(tag, 16);
    snprintf(subject, sizeof(subject), "maintenance %s", tag);
    snprintf(body, sizeof(body),
             "{\"subject_ja\":\"%s\",\"body_ja\":\"メンテナンスのお知らせ\","
             "\"subject_en\":\"%s\",\"body_en\":\"Maintenance tonight\",\"audience\":\"all\"}",
             subject, subject);
    IT_CHECK(nn_req("POST", "/api/v1/admin/notices", body, op, tag, &r) == 202);
    IT_CHECK(it_json_str(&r, "id") != NULL && it_json_str(&r, "status") != NULL);
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id"));
    it_resp_free(&r);
    /* same key and body: the same notice; same key, other body: 422 */
    IT_CHECK(nn_req("POST", "/api/v1/admin/notices", body, op, tag, &r) == 202);
    IT_CHECK(it_json_str(&r, "id") != NULL && strcmp(it_json_str(&r, "id"), id) == 0);
    it_resp_free(&r);
    IT_CHECK(nn_req("POST", "/api/v1/admin/notices",
                    "{\"subject_ja\":\"x\",\"body_ja\":\"y\",\"audience\":\"all\"}", op, tag,
                    &r) == 422);
    it_resp_free(&r);

    long accounts = nn_sql_long("auth", "SELECT count(*) FROM accounts WHERE status = 'active'");
    IT_CHECK(accounts > 0);
    snprintf(path, sizeof(path), "/api/v1/admin/notices/%s", id);
    long recipients = -1, queued = -1, sent = -1, failed = -1;
    for (int i = 0; i < 240; i++) {
        IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
        recipients = nn_json_int(r.json, "counts", "recipients");
        queued = nn_json_int(r.json, "counts", "queued");
        sent = nn_json_int(r.json, "counts", "sent");
        failed = nn_json_int(r.json, "counts", "failed");
        int done =
            it_json_str(&r, "status") != NULL && strcmp(it_json_str(&r, "status"), "done") == 0;
        it_resp_free(&r);
        if (done && recipients == accounts && queued == 0 && sent + failed == accounts &&
            nn_count_distinct(subject) >= sent) {
            break;
        }
        usleep(250000);
    }
    fprintf(stderr, "  notice: %ld accounts, %ld recipients, %ld sent, %ld failed, %ld queued\n",
            accounts, recipients, sent, failed, queued);
    /* every account got one (a +fail400 address of another test fails permanently) */
    IT_CHECK(recipients == accounts && queued == 0 && sent + failed == accounts && sent > 0);
    IT_CHECK(nn_notice_reached(id, subject));

    /* resumed after a "crash" (claim and cursor lost): no duplicates */
    IT_CHECK(it_psql("notification", body, sizeof(body),
                     "UPDATE notices SET status = 'sending', cursor = NULL, claimed_at = NULL "
                     "WHERE id = '%s'",
                     id) == 0);
    for (int i = 0; i < 40; i++) {
        char st[16];
        if (it_psql("notification", st, sizeof(st), "SELECT status FROM notices WHERE id = '%s'",
                    id) == 0 &&
            strcmp(st, "done") == 0) {
            break;
        }
        usleep(250000);
    }
    sleep(1);
    IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
    IT_CHECK(nn_json_int(r.json, "counts", "recipients") == accounts);
    IT_CHECK(strcmp(it_json_str(&r, "status"), "done") == 0);
    it_resp_free(&r);
    IT_CHECK(nn_notice_reached(id, subject));

    /* the list has it */
    IT_CHECK(nn_req("GET", "/api/v1/admin/notices?limit=5", NULL, op, NULL, &r) == 200);
    IT_CHECK(r.body != NULL && strstr(r.body, id) != NULL);
    it_resp_free(&r);
}

static void
test_notice_access_and_input(void)
{
    char op[64], org[37], admin[37], admin_tok[64], email[128];

    IT_CHECK(it_operator_new("nop", NN_PW, op));
    it_unique_email(email, sizeof(email), "nadm");
    IT_CHECK(nn_org(op, email, org, admin, admin_tok));
    const char *ok = "{\"subject_ja\":\"s\",\"body_ja\":\"b\",\"audience\":\"org_admins\"}";
    IT_CHECK(it_gw_status("POST", "/api/v1/admin/notices", ok, admin_tok) == 403);
    IT_CHECK(it_gw_status("POST", "/api/v1/admin/notices", ok, NULL) == 401);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/notices", NULL, admin_tok) == 403);
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/notices",
                               "{\"subject_ja\":\"s\",\"body_ja\":\"b\",\"audience\":\"some\"}", op,
                               "audience"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/notices",
                               "{\"body_ja\":\"b\",\"audience\":\"all\"}", op, "subject_ja"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/notices",
                               "{\"subject_ja\":\"s\",\"body_ja\":\"b\",\"audience\":\"all\","
                               "\"subject_en\":\"e\"}",
                               op, "body_en"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/notices",
                               "{\"subject_ja\":\"s\",\"body_ja\":\"b\",\"audience\":\"all\","
                               "\"send_at\":\"tomorrow\"}",
                               op, "send_at"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/admin/notices?limit=0", NULL, op, "limit"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/admin/notices?cursor=zz", NULL, op, "cursor"));
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/notices/not-a-uuid", NULL, op) == 404);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/notices/01890000-0000-7000-8000-000000000000", NULL,
                          op) == 404);

    /* a scheduled notice waits for send_at; org_admins reaches the admins only */
    char tag[17], subject[64], body[512], path[128], id[37];
    it_resp_t r;
    nn_rand_hex(tag, 16);
    snprintf(subject, sizeof(subject), "admins %s", tag);
    char when[TU_JST_LEN];
    tu_format_jst(tu_now_ms() + 5000, when, sizeof(when));
    snprintf(body, sizeof(body),
             "{\"subject_ja\":\"%s\",\"body_ja\":\"b\",\"audience\":\"org_admins\","
             "\"send_at\":\"%s\"}",
             subject, when);
    IT_CHECK(nn_req("POST", "/api/v1/admin/notices", body, op, NULL, &r) == 202);
    IT_CHECK(strcmp(it_json_str(&r, "status"), "scheduled") == 0);
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id"));
    it_resp_free(&r);
    IT_CHECK(nn_count("subject", subject, NULL) == 0);
    long admins = nn_sql_long("auth", "SELECT count(*) FROM accounts WHERE status = 'active' "
                                      "AND kind = 'staff' AND role = 'admin'");
    snprintf(path, sizeof(path), "/api/v1/admin/notices/%s", id);
    long sent = -1, failed = -1, recipients = -1;
    for (int i = 0; i < 160 && sent + failed != admins; i++) {
        usleep(250000);
        IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
        sent = nn_json_int(r.json, "counts", "sent");
        failed = nn_json_int(r.json, "counts", "failed");
        recipients = nn_json_int(r.json, "counts", "recipients");
        it_resp_free(&r);
    }
    IT_CHECK(admins > 0 && recipients == admins && sent + failed == admins && sent > 0);
    IT_CHECK(nn_count("subject", subject, email) == 1);
}

/* ---- incidents ------------------------------------------------------------------------------ */

/* The delivery status of |account| in incident JSON |o|, or "". */
static const char *
nn_delivery(json_object *o, const char *account)
{
    json_object *d, *v;
    if (o == NULL || !json_object_object_get_ex(o, "deliveries", &d)) {
        return "";
    }
    for (size_t i = 0; i < json_object_array_length(d); i++) {
        json_object *it = json_object_array_get_idx(d, i);
        if (json_object_object_get_ex(it, "account_id", &v) &&
            strcmp(json_object_get_string(v), account) == 0 &&
            json_object_object_get_ex(it, "status", &v)) {
            return json_object_get_string(v);
        }
    }
    return "";
}

static void
test_incident(void)
{
    char op[64], org_a[37], org_b[37], adm_a[37], adm_b[37], tok_a[64], mail_a[128], mail_b[160];
    char hex[17], body[1024], path[160], id[37], det[TU_JST_LEN], title[64];
    it_resp_t r;
    json_object *v;

    IT_CHECK(it_operator_new("nop", NN_PW, op));
    it_unique_email(mail_a, sizeof(mail_a), "inca");
    nn_rand_hex(hex, 16);
    snprintf(mail_b, sizeof(mail_b), "it-incb-%s+fail400@example.com", hex);
    IT_CHECK(nn_org(op, mail_a, org_a, adm_a, tok_a));
    IT_CHECK(nn_org(op, mail_b, org_b, adm_b, NULL));

    /* bad input names the field; non-operators are refused */
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents",
                               "{\"description\":\"d\",\"all\":true,"
                               "\"detected_at\":\"2026-01-01T00:00:00Z\"}",
                               op, "title"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents",
                               "{\"title\":\"t\",\"description\":\"d\",\"detected_at\":"
                               "\"2026-01-01T00:00:00Z\"}",
                               op, "org_ids"));
    snprintf(body, sizeof(body),
             "{\"title\":\"t\",\"description\":\"d\",\"all\":true,\"org_ids\":[\"%s\"],"
             "\"detected_at\":\"2026-01-01T00:00:00Z\"}",
             org_a);
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents", body, op, "all"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents",
                               "{\"title\":\"t\",\"description\":\"d\",\"org_ids\":[\"nope\"],"
                               "\"detected_at\":\"2026-01-01T00:00:00Z\"}",
                               op, "org_ids[0]"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents",
                               "{\"title\":\"t\",\"description\":\"d\",\"org_ids\":"
                               "[\"01890000-0000-7000-8000-000000000000\"],"
                               "\"detected_at\":\"2026-01-01T00:00:00Z\"}",
                               op, "org_ids[0]"));
    snprintf(body, sizeof(body),
             "{\"title\":\"t\",\"description\":\"d\",\"org_ids\":[\"%s\"],"
             "\"detected_at\":\"yesterday\"}",
             org_a);
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/incidents", body, op, "detected_at"));
    snprintf(body, sizeof(body),
             "{\"title\":\"t\",\"description\":\"d\",\"org_ids\":[\"%s\"],"
             "\"detected_at\":\"2026-01-01T00:00:00Z\"}",
             org_a);
    IT_CHECK(it_gw_status("POST", "/api/v1/admin/incidents", body, tok_a) == 403);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/incidents", NULL, tok_a) == 403);

    /* detected 25 h ago: past the deadline; admin B's address is refused by the provider */
    int64_t det_ms = tu_now_ms() - 25LL * 3600 * 1000;
    tu_format_jst(det_ms, det, sizeof(det));
    snprintf(title, sizeof(title), "Incident %s", hex);
    snprintf(body, sizeof(body),
             "{\"title\":\"%s\",\"description\":\"Unauthorized access detected.\","
             "\"org_ids\":[\"%s\",\"%s\"],\"detected_at\":\"%s\"}",
             title, org_a, org_b, det);
    IT_CHECK(nn_req("POST", "/api/v1/admin/incidents", body, op, hex, &r) == 201);
    IT_CHECK(it_header(&r, "location") != NULL && it_json_str(&r, "id") != NULL);
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id"));
    int64_t dl_ms = 0;
    IT_CHECK(it_json_str(&r, "deadline_at") != NULL &&
             tu_parse_rfc3339(it_json_str(&r, "deadline_at"), &dl_ms) == 0 &&
             dl_ms / 1000 == det_ms / 1000 + 24 * 3600);
    IT_CHECK(json_object_object_get_ex(r.json, "deliveries", &v) &&
             json_object_array_length(v) == 2);
    it_resp_free(&r);
    /* replayed with the same key: the same incident, nothing sent twice */
    IT_CHECK(nn_req("POST", "/api/v1/admin/incidents", body, op, hex, &r) == 201);
    IT_CHECK(strcmp(it_json_str(&r, "id"), id) == 0);
    it_resp_free(&r);

    snprintf(path, sizeof(path), "/api/v1/admin/incidents/%s", id);
    /* admin B's rows: the first attempt and its one retry (B "failed" may precede the retry) */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notifications WHERE incident_id = '%s' AND to_account_id = "
             "'%s'",
             id, adm_b);
    int settled = 0;
    for (int i = 0; i < 240 && !settled; i++) {
        IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
        const char *sa = nn_delivery(r.json, adm_a), *sb = nn_delivery(r.json, adm_b);
        json_object *esc = NULL;
        settled = (strcmp(sa, "sent") == 0 || strcmp(sa, "delivered") == 0) &&
                  (strcmp(sb, "dead") == 0 || strcmp(sb, "failed") == 0) &&
                  json_object_object_get_ex(r.json, "escalated_at", &esc) && esc != NULL &&
                  nn_count("text", title, mail_a) == 1 && nn_sql_long("notification", sql) >= 2;
        if (i == 239 || settled) {
            fprintf(stderr, "  incident: admin A %s, admin B %s, %.200s\n", sa, sb,
                    r.body ? r.body : "");
        }
        if (settled) {
            IT_CHECK(json_object_object_get_ex(r.json, "overdue", &v) &&
                     json_object_get_boolean(v));
        }
        it_resp_free(&r);
        if (!settled) {
            usleep(250000);
        }
    }
    IT_CHECK(settled);
    /* admin B was retried once, then the operator alert went out once */
    IT_CHECK(nn_sql_long("notification", sql) == 2);
    char esc_title[96];
    snprintf(esc_title, sizeof(esc_title), "[ESCALATION] %s", title);
    for (int i = 0; i < 40 && nn_count("text", esc_title, "ops@phr.example.jp") == 0; i++) {
        usleep(250000);
    }
    IT_CHECK(nn_count("text", esc_title, "ops@phr.example.jp") == 1);
    IT_CHECK(nn_count("text", title, mail_a) == 1);

    /* org admin A sees the incident with its own org's deliveries only; B's org is 404 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/incidents", org_a);
    IT_CHECK(nn_req("GET", path, NULL, tok_a, NULL, &r) == 200);
    IT_CHECK(r.body != NULL && strstr(r.body, id) != NULL && strstr(r.body, adm_a) != NULL &&
             strstr(r.body, adm_b) == NULL);
    it_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/incidents", org_b);
    IT_CHECK(it_gw_status("GET", path, NULL, tok_a) == 404);
    snprintf(path, sizeof(path), "/api/v1/admin/incidents/%s", id);
    IT_CHECK(it_gw_status("GET", path, NULL, tok_a) == 403);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/incidents/nope", NULL, op) == 404);
    IT_CHECK(nn_req("GET", "/api/v1/admin/incidents?limit=1", NULL, op, NULL, &r) == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "items", &v) && json_object_array_length(v) == 1);
    it_resp_free(&r);
    /* audit events went into the outbox */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' LIKE "
             "'notification.incident.%%' AND body::text LIKE '%%%s%%'",
             id);
    IT_CHECK(nn_sql_long("notification", sql) == 2);
}

/* An incident detected just now is not overdue and is not escalated. */
static void
test_incident_fresh(void)
{
    char op[64], org[37], adm[37], mail[128], body[512], det[TU_JST_LEN], path[160];
    it_resp_t r;
    json_object *v;

    IT_CHECK(it_operator_new("nop", NN_PW, op));
    it_unique_email(mail, sizeof(mail), "incf");
    IT_CHECK(nn_org(op, mail, org, adm, NULL));
    tu_format_jst(tu_now_ms() - 60000, det, sizeof(det));
    snprintf(body, sizeof(body),
             "{\"title\":\"fresh\",\"description\":\"d\",\"org_ids\":[\"%s\"],"
             "\"detected_at\":\"%s\"}",
             org, det);
    IT_CHECK(nn_req("POST", "/api/v1/admin/incidents", body, op, NULL, &r) == 201);
    snprintf(path, sizeof(path), "/api/v1/admin/incidents/%s", it_json_str(&r, "id"));
    it_resp_free(&r);
    sleep(3);
    IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "overdue", &v) && !json_object_get_boolean(v));
    IT_CHECK(json_object_object_get_ex(r.json, "escalated_at", &v) && v == NULL);
    it_resp_free(&r);
}

/* The delivery status of |account| on |channel| in incident JSON |o|, or "". */
static const char *
nn_delivery_on(json_object *o, const char *account, const char *channel)
{
    json_object *d, *a, *c, *s;
    if (o == NULL || !json_object_object_get_ex(o, "deliveries", &d)) {
        return "";
    }
    for (size_t i = 0; i < json_object_array_length(d); i++) {
        json_object *it = json_object_array_get_idx(d, i);
        if (json_object_object_get_ex(it, "account_id", &a) &&
            json_object_object_get_ex(it, "channel", &c) &&
            json_object_object_get_ex(it, "status", &s) &&
            strcmp(json_object_get_string(a), account) == 0 &&
            strcmp(json_object_get_string(c), channel) == 0) {
            return json_object_get_string(s);
        }
    }
    return "";
}

/* UTF-16 code units of UTF-8 |s| (what a UCS-2 SMS segment counts). */
static size_t
nn_utf16_units(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80) {
            n += *p >= 0xF0 ? 2 : 1;
        }
    }
    return n;
}

/* Registers SMS MFA |phone| for the account of |token| (enrol, then confirm with the code). */
static int
nn_enrol_phone(const char *token, const char *phone)
{
    char body[96], code[16];
    snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", phone);
    if (it_gw_status("POST", "/api/v1/auth/mfa/sms/enroll", body, token) != 202 ||
        it_psql("auth", code, sizeof(code),
                "SELECT body->'params'->>'code' FROM outbox WHERE topic = 'notification' AND "
                "body->>'kind' = 'sms_code' AND body->'to'->>'phone' = '%s' "
                "ORDER BY id DESC LIMIT 1",
                phone) != 0 ||
        strlen(code) != 6) {
        return 0;
    }
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    return it_gw_status("POST", "/api/v1/auth/mfa/sms/confirm", body, token) == 200;
}

/* An admin with a registered phone gets the incident SMS (one UCS-2 segment) as well as the
 * e-mail, and the incident lists both deliveries. */
static void
test_incident_sms(void)
{
    char op[64], org[37], adm[37], tok[64], mail[128], phone[24], body[512], det[TU_JST_LEN];
    char path[160], id[37] = "";
    it_resp_t r;
    json_object *v;

    IT_CHECK(it_operator_new("nop", NN_PW, op));
    it_unique_email(mail, sizeof(mail), "incs");
    IT_CHECK(nn_org(op, mail, org, adm, tok));
    snprintf(phone, sizeof(phone), "+8170%08lu",
             ((unsigned long)time(NULL) * 7919ul + (unsigned long)getpid()) % 100000000ul);
    IT_CHECK(nn_enrol_phone(tok, phone));

    tu_format_jst(tu_now_ms() - 60000, det, sizeof(det));
    snprintf(body, sizeof(body),
             "{\"title\":\"sms %s\",\"description\":\"d\",\"org_ids\":[\"%s\"],"
             "\"detected_at\":\"%s\"}",
             phone, org, det);
    IT_CHECK(nn_req("POST", "/api/v1/admin/incidents", body, op, NULL, &r) == 201);
    if (it_json_str(&r, "id") != NULL) {
        snprintf(id, sizeof(id), "%s", it_json_str(&r, "id"));
    }
    IT_CHECK(json_object_object_get_ex(r.json, "deliveries", &v) &&
             json_object_array_length(v) == 2);
    it_resp_free(&r);
    IT_CHECK(id[0] != '\0');

    snprintf(path, sizeof(path), "/api/v1/admin/incidents/%s", id);
    int settled = 0;
    for (int i = 0; i < 240 && !settled; i++) {
        IT_CHECK(nn_req("GET", path, NULL, op, NULL, &r) == 200);
        const char *se = nn_delivery_on(r.json, adm, "email");
        const char *ss = nn_delivery_on(r.json, adm, "sms");
        settled = (strcmp(se, "sent") == 0 || strcmp(se, "delivered") == 0) &&
                  (strcmp(ss, "sent") == 0 || strcmp(ss, "delivered") == 0);
        if (settled || i == 239) {
            fprintf(stderr, "  incident sms: e-mail %s, sms %s\n", se, ss);
        }
        it_resp_free(&r);
        if (!settled) {
            usleep(250000);
        }
    }
    IT_CHECK(settled);

    /* the stand-in got exactly one incident SMS for the phone, within one UCS-2 segment */
    json_object *arr = it_standin("GET", "/__messages", NULL, NULL);
    int n = 0;
    size_t units = 0;
    for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
        json_object *m = json_object_array_get_idx(arr, i), *p, *to, *text;
        if (json_object_object_get_ex(m, "provider", &p) &&
            strcmp(json_object_get_string(p), "twilio") == 0 &&
            json_object_object_get_ex(m, "to", &to) &&
            strcmp(json_object_get_string(to), phone) == 0 &&
            json_object_object_get_ex(m, "text", &text) &&
            (strstr(json_object_get_string(text), "incident") != NULL ||
             strstr(json_object_get_string(text), "インシデント") != NULL)) {
            n++;
            units = nn_utf16_units(json_object_get_string(text));
        }
    }
    json_object_put(arr);
    fprintf(stderr, "  incident sms at the stand-in: %d message(s), %zu UTF-16 units\n", n, units);
    IT_CHECK(n == 1);
    IT_CHECK(units > 0 && units <= 70);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notifications WHERE incident_id = '%s' AND channel = 'sms' "
             "AND to_address = '%s'",
             id, phone);
    IT_CHECK(nn_sql_long("notification", sql) == 1);
}

const it_case_t notify_notice_cases[] = {
    {"notice_webhook_sendgrid", test_sendgrid_webhook},
    {"notice_webhook_twilio", test_twilio_webhook},
    {"notice_webhook_end_to_end", test_webhook_end_to_end},
    {"notice_access_and_input", test_notice_access_and_input},
    {"notice_all_accounts", test_notice_all},
    {"notice_incident", test_incident},
    {"notice_incident_fresh", test_incident_fresh},
    {"notice_incident_sms", test_incident_sms},
    {NULL, NULL},
};
