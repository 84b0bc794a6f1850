/*
 * test_audit_query.c - audit: the query API (org admins, operators), the
 * patient's access log, the auditor's export and the monthly access review,
 * through the gateway. Events come from real actions (org and staff creation,
 * logins relayed from auth's outbox) and, where a test needs exact fields,
 * from batches posted straight to the audit service's POST /internal/v1/events
 * with the records service's credential.
 *
 * Environment as for test_auth_org.c (PHR_TEST_GATEWAY, PHR_TEST_VAR,
 * PHR_TEST_PG_HOST/PORT for psql, PHR_BUILD for bin/phrctl).
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "timeutil.h"
#include "uuid.h"

#define AQ_PW "Blue7Harbor!qLong"

typedef struct {
    char op_token[64];
    char org_id[37];
    char admin_id[37];
    char admin_token[64];
    char org_b[37];
    char admin_b_token[64];
} aq_env_t;

static aq_env_t aq_env;
static int aq_env_ready;

/* ---- fixtures ----------------------------------------------------------------------------- */

/* Creates an org (operator |op|) with an admin who logs in and changes the password. */
static int
aq_org(const char *op, char *org_id, char *admin_id, char *admin_token)
{
    char email[128];

    it_unique_email(email, sizeof(email), "aqadm");
    return it_org_new(op, "AQ Clinic", 10, email, "Admin AQ", org_id, admin_id) &&
           it_staff_login(email, admin_id, AQ_PW, admin_token);
}

/* An operator and two orgs with their admins (made once for the suite). */
static int
aq_setup(void)
{
    char id_b[37];
    aq_env_t *e = &aq_env;

    if (aq_env_ready) {
        return 1;
    }
    if (!it_operator_new("aqop", AQ_PW, e->op_token) ||
        !aq_org(e->op_token, e->org_id, e->admin_id, e->admin_token) ||
        !aq_org(e->op_token, e->org_b, id_b, e->admin_b_token)) {
        return 0;
    }
    aq_env_ready = 1;
    return 1;
}

/* Staff |email| added to |org| with |role| by its admin, logged in (password changed). */
static int
aq_staff_of(const char *org, const char *admin_token, const char *role, char *email, size_t cap,
            char *id, char *token)
{
    char path[160], body[512];
    it_resp_t r;

    it_unique_email(email, cap, "aqstaff");
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", org);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Staff AQ\",\"role\":\"%s\"}", email,
             role);
    long st = it_gw("POST", path, body, admin_token, &r);
    if (st == 201 && it_json_str(&r, "id") != NULL) {
        snprintf(id, 37, "%s", it_json_str(&r, "id"));
    }
    it_resp_free(&r);
    return st == 201 && it_staff_login(email, id, AQ_PW, token);
}

static int
aq_staff(const char *role, char *email, size_t cap, char *id, char *token)
{
    return aq_staff_of(aq_env.org_id, aq_env.admin_token, role, email, cap, id, token);
}

/* ---- events posted straight to the audit service ------------------------------------------- */

/*
 * Posts one event of the records service: staff |actor| (org |org|) doing
 * |action| on patient |patient| at |occurred_ms| (0: now). Its id into |id|.
 */
static int
aq_ingest(const char *action, const char *actor, const char *org, const char *patient,
          int64_t occurred_ms, char *id)
{
    char body[2048], at[TU_JST_LEN], cred[160], eid[37];
    const char *hdrs[] = {"Content-Type: application/json", "x-phr-caller: records", cred, NULL};
    it_resp_t r;

    if (uuid7(eid) != 0) {
        return 0;
    }
    tu_format_jst(occurred_ms ? occurred_ms : tu_now_ms(), at, sizeof(at));
    snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret("svc_records.key"));
    snprintf(body, sizeof(body),
             "{\"events\":[{\"event_id\":\"%s\",\"occurred_at\":\"%s\","
             "\"actor\":{\"account_id\":\"%s\",\"kind\":\"staff\",\"org_id\":\"%s\","
             "\"role\":\"admin\",\"session_id\":null,\"ip\":\"192.0.2.7\",\"user_agent\":\"it\"},"
             "\"action\":\"%s\",\"target\":{\"type\":\"record\",\"id\":\"r-%s\","
             "\"patient_id\":\"%s\",\"org_id\":\"%s\"},\"outcome\":{\"result\":\"success\"},"
             "\"source\":{\"service\":\"records\",\"request_id\":\"it-aq\"},"
             "\"details\":{\"record_types\":[\"blood_pressure\",\"weight\"],\"count\":2}}]}",
             eid, at, actor, org, action, eid, patient, org);
    it_request(IT_DIRECT, "audit", "POST", "/internal/v1/events", body, strlen(body), hdrs, &r);
    int ok = r.status == 200 && r.body != NULL && strstr(r.body, "\"accepted\"") != NULL;
    if (!ok) {
        fprintf(stderr, "  ingest: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    if (id != NULL) {
        memcpy(id, eid, 37);
    }
    return ok;
}

/* GET |path|; the items array (a new reference, caller puts) or NULL. */
static json_object *
aq_items(const char *path, const char *token, char *next, size_t cap)
{
    it_resp_t r;
    json_object *items = NULL, *nc;

    if (it_gw("GET", path, NULL, token, &r) == 200 && r.json != NULL &&
        json_object_object_get_ex(r.json, "items", &items)) {
        json_object_get(items);
        if (next != NULL) {
            next[0] = '\0';
            if (json_object_object_get_ex(r.json, "next_cursor", &nc) && nc != NULL) {
                snprintf(next, cap, "%s", json_object_get_string(nc));
            }
        }
    } else {
        items = NULL;
        fprintf(stderr, "  GET %s: %ld %.300s\n", path, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return items;
}

static const char *
aq_str(json_object *o, const char *a, const char *b)
{
    json_object *v;
    if (a != NULL && !json_object_object_get_ex(o, a, &o)) {
        return NULL;
    }
    if (!json_object_object_get_ex(o, b, &v) || v == NULL) {
        return NULL;
    }
    return json_object_get_string(v);
}

/* Polls |path| until it lists an item whose |a|.|b| is |want| (NULL: any item); 1 when seen. */
static int
aq_wait_item(const char *path, const char *token, const char *a, const char *b, const char *want)
{
    for (int t = 0; t < 40; t++) {
        json_object *items = aq_items(path, token, NULL, 0);
        int seen = 0;
        for (size_t i = 0; items != NULL && i < json_object_array_length(items); i++) {
            const char *v = aq_str(json_object_array_get_idx(items, i), a, b);
            seen |= want == NULL || (v != NULL && strcmp(v, want) == 0);
        }
        json_object_put(items);
        if (seen) {
            return 1;
        }
        usleep(250 * 1000);
    }
    return 0;
}

/* ---- an auditor's offline check of an export (services/audit/chain.h, re-done here) ---------- */

/* "YYYY-MM-DDTHH:MM:SS[.f{1,6}]+09:00" to microseconds since the epoch; -1 when malformed. */
static int64_t
aq_us(const char *s)
{
    int y, mo, d, h, mi, se, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6) {
        return -1;
    }
    int64_t frac = 0;
    const char *p = s + n;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            frac = frac * 10 + (*p - '0');
        }
        for (; digits < 6; digits++) {
            frac *= 10;
        }
    }
    if (strcmp(p, "+09:00") != 0) {
        return -1;
    }
    int64_t yy = mo <= 2 ? y - 1 : y;
    int64_t era = yy / 400, yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return ((days * 86400 + h * 3600 + mi * 60 + se) - 9 * 3600) * 1000000 + frac;
}

static void
aq_field(EVP_MD_CTX *md, const void *data, size_t len, int present)
{
    unsigned char head[5] = {present ? 1 : 0, 0, 0, 0, 0};
    if (present) {
        head[1] = (unsigned char)(len >> 24);
        head[2] = (unsigned char)(len >> 16);
        head[3] = (unsigned char)(len >> 8);
        head[4] = (unsigned char)len;
    }
    EVP_DigestUpdate(md, head, 5);
    if (present && len > 0) {
        EVP_DigestUpdate(md, data, len);
    }
}

static void
aq_be64(int64_t v, unsigned char *b)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)((uint64_t)v & 0xff);
        v = (int64_t)((uint64_t)v >> 8);
    }
}

static int
aq_unhex(const char *hex, unsigned char *out, size_t n)
{
    if (hex == NULL || strlen(hex) != 2 * n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            return -1;
        }
        out[i] = (unsigned char)b;
    }
    return 0;
}

/* 1 when export line |o| (an event) hashes to its "hash". */
static int
aq_rehash(json_object *o)
{
    static const char *const fields[][2] = {
        {"actor", "account_id"},  {"actor", "kind"},        {"actor", "org_id"},
        {"actor", "role"},        {"actor", "session_id"},  {"actor", "ip"},
        {"actor", "user_agent"},  {NULL, "action"},         {"target", "type"},
        {"target", "id"},         {"target", "patient_id"}, {"target", "org_id"},
        {"outcome", "result"},    {"outcome", "reason"},    {"source", "service"},
        {"source", "request_id"}, {NULL, "details_text"}};
    unsigned char b[8], prev[32], out[32], want[32];
    unsigned int outlen = 0;
    json_object *v;
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    if (md == NULL || aq_unhex(aq_str(o, NULL, "prev_hash"), prev, 32) != 0 ||
        aq_unhex(aq_str(o, NULL, "hash"), want, 32) != 0 ||
        !json_object_object_get_ex(o, "seq", &v)) {
        EVP_MD_CTX_free(md);
        return 0;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    aq_field(md, "phr-audit-v1", 12, 1);
    aq_be64(json_object_get_int64(v), b);
    aq_field(md, b, 8, 1);
    const char *id = aq_str(o, NULL, "event_id");
    aq_field(md, id, strlen(id), 1);
    aq_be64(aq_us(aq_str(o, NULL, "occurred_at")), b);
    aq_field(md, b, 8, 1);
    aq_be64(aq_us(aq_str(o, NULL, "recorded_at")), b);
    aq_field(md, b, 8, 1);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *s = aq_str(o, fields[i][0], fields[i][1]);
        aq_field(md, s, s != NULL ? strlen(s) : 0, s != NULL);
    }
    aq_field(md, prev, 32, 1);
    EVP_DigestFinal_ex(md, out, &outlen);
    EVP_MD_CTX_free(md);
    return outlen == 32 && memcmp(out, want, 32) == 0;
}

/* 1 when checkpoint line |o| carries a valid Ed25519 signature by |pub|. */
static int
aq_ckpt_ok(json_object *o, EVP_PKEY *pub)
{
    unsigned char msg[23 + 8 + 32 + 8], sig[128];
    json_object *v;
    const char *b64 = aq_str(o, NULL, "signature");

    if (pub == NULL || b64 == NULL || strlen(b64) != 88 ||
        !json_object_object_get_ex(o, "seq", &v) ||
        aq_unhex(aq_str(o, NULL, "hash"), msg + 31, 32) != 0 ||
        EVP_DecodeBlock(sig, (const unsigned char *)b64, 88) != 66) {
        return 0;
    }
    memcpy(msg, "phr-audit-checkpoint-v1", 23);
    aq_be64(json_object_get_int64(v), msg + 23);
    aq_be64(aq_us(aq_str(o, NULL, "signed_at")), msg + 63);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(md, sig, 64, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* The checkpoint key from GET /api/v1/audit/public-key. */
static EVP_PKEY *
aq_public_key(void)
{
    it_resp_t r;
    EVP_PKEY *pub = NULL;
    if (it_gw("GET", "/api/v1/audit/public-key", NULL, NULL, &r) == 200) {
        const char *pem = it_json_str(&r, "public_key_pem");
        BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
        pub = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
    }
    it_resp_free(&r);
    return pub;
}

/* ---- cases ------------------------------------------------------------------------------- */

static void
test_aq_org_scope(void)
{
    char path[1024], email[128], sid[37], stoken[64];

    IT_CHECK(aq_setup());
    /* the org's creation (relayed from auth's outbox) shows in its admin's list */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?action=auth.org.create",
             aq_env.org_id);
    IT_CHECK(aq_wait_item(path, aq_env.admin_token, "target", "org_id", aq_env.org_id));
    /* only this org's events */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?limit=200", aq_env.org_id);
    json_object *items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) > 0);
    int foreign = 0, shape = 1;
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        const char *t = aq_str(it, "target", "org_id"), *a = aq_str(it, "actor", "org_id");
        foreign += !((t != NULL && strcmp(t, aq_env.org_id) == 0) ||
                     (a != NULL && strcmp(a, aq_env.org_id) == 0));
        const char *h = aq_str(it, NULL, "hash"), *ph = aq_str(it, NULL, "prev_hash");
        const char *at = aq_str(it, NULL, "occurred_at");
        shape &= h != NULL && strlen(h) == 64 && ph != NULL && strlen(ph) == 64 && at != NULL &&
                 strstr(at, "+09:00") != NULL && aq_str(it, NULL, "event_id") != NULL;
    }
    json_object_put(items);
    IT_CHECK(foreign == 0 && shape);
    /* org B's id: 404, also for its export and review; a malformed id: 404 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events", aq_env.org_b);
    IT_CHECK(it_gw_status("GET", path, NULL, aq_env.admin_token) == 404);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events/export", aq_env.org_b);
    IT_CHECK(it_gw_status("GET", path, NULL, aq_env.admin_token) == 404);
    IT_CHECK(it_gw_status("GET", "/api/v1/orgs/not-a-uuid/audit-events", NULL,
                          aq_env.admin_token) == 404);
    /* B's admin does not see A's events */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?limit=200", aq_env.org_b);
    items = aq_items(path, aq_env.admin_b_token, NULL, 0);
    IT_CHECK(items != NULL);
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        const char *t = aq_str(json_object_array_get_idx(items, i), "target", "org_id");
        foreign += t != NULL && strcmp(t, aq_env.org_id) == 0;
    }
    json_object_put(items);
    IT_CHECK(foreign == 0);
    /* a staff member (not admin) of A: 403; the operator list needs an operator */
    IT_CHECK(aq_staff("staff", email, sizeof(email), sid, stoken));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events", aq_env.org_id);
    IT_CHECK(it_gw_status("GET", path, NULL, stoken) == 403);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/audit-events", NULL, aq_env.admin_token) == 403);
    IT_CHECK(it_gw_status("GET", "/api/v1/me/access-log", NULL, aq_env.admin_token) == 403);
    IT_CHECK(it_gw_status("GET", path, NULL, NULL) == 401);
    /* the operator sees both orgs, and can narrow to one */
    snprintf(path, sizeof(path), "/api/v1/admin/audit-events?action=auth.org.create&org_id=%s",
             aq_env.org_b);
    IT_CHECK(aq_wait_item(path, aq_env.op_token, "target", "org_id", aq_env.org_b));
    items = aq_items(path, aq_env.op_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 1);
    json_object_put(items);
}

static void
test_aq_filters(void)
{
    char path[2048], patient[37], other[37], actor[37];
    int64_t now = tu_now_ms();

    IT_CHECK(aq_setup());
    IT_CHECK(uuid4(patient) == 0 && uuid4(other) == 0 && uuid4(actor) == 0);
    /* three events of one patient: two by |actor| an hour and a day ago, one by the admin */
    IT_CHECK(aq_ingest("records.read", actor, aq_env.org_id, patient, now - 3600 * 1000, NULL));
    IT_CHECK(aq_ingest("records.create", actor, aq_env.org_id, patient, now - 86400 * 1000, NULL));
    IT_CHECK(aq_ingest("records.read", aq_env.admin_id, aq_env.org_id, patient, 0, NULL));
    IT_CHECK(aq_ingest("records.read", actor, aq_env.org_id, other, 0, NULL));

    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?patient_id=%s", aq_env.org_id,
             patient);
    json_object *items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 3);
    json_object_put(items);
    /* actor */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?actor=%s", aq_env.org_id, actor);
    items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 3);
    json_object_put(items);
    /* action, exact and as a prefix */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?actor=%s&action=records.read",
             aq_env.org_id, actor);
    items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 2);
    json_object_put(items);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?actor=%s&action=records.",
             aq_env.org_id, actor);
    items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 3);
    json_object_put(items);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?actor=%s&action=records.rea",
             aq_env.org_id, actor);
    items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 0);
    json_object_put(items);
    /* from/to (any offset; '+' percent-encoded): the hour-old event only */
    char from[TU_JST_LEN], to[TU_JST_LEN];
    tu_format_jst(now - 2 * 3600 * 1000, from, sizeof(from));
    tu_format_jst(now - 60 * 1000, to, sizeof(to));
    from[23] = '\0'; /* drop "+09:00", add it encoded */
    to[23] = '\0';
    snprintf(path, sizeof(path),
             "/api/v1/orgs/%s/audit-events?patient_id=%s&from=%s%%2B09:00&to=%s%%2B09:00",
             aq_env.org_id, patient, from, to);
    items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 1 &&
             strcmp(aq_str(json_object_array_get_idx(items, 0), NULL, "action"), "records.read") ==
                 0);
    json_object_put(items);
    /* bad filters name the parameter */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?actor=nope", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "actor"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?patient_id=1", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "patient_id"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?action=Auth.Login", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "action"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?from=yesterday", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "from"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?to=2026-13-01T00:00:00Z",
             aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "to"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?limit=0", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "limit"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?limit=201", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "limit"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/admin/audit-events?org_id=x", NULL, aq_env.op_token,
                               "org_id"));
}

static void
test_aq_paging(void)
{
    char path[2048], next[600], patient[37], actor[37];
    long long prev_seq = -1;
    int total = 0, pages = 0;

    IT_CHECK(aq_setup());
    IT_CHECK(uuid4(patient) == 0 && uuid4(actor) == 0);
    for (int i = 0; i < 7; i++) {
        IT_CHECK(aq_ingest("records.read", actor, aq_env.org_id, patient, 0, NULL));
    }
    next[0] = '\0';
    do {
        if (next[0] == '\0') {
            snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?patient_id=%s&limit=3",
                     aq_env.org_id, patient);
        } else {
            snprintf(path, sizeof(path),
                     "/api/v1/orgs/%s/audit-events?patient_id=%s&limit=3&cursor=%s", aq_env.org_id,
                     patient, next);
        }
        char cur[600];
        json_object *items = aq_items(path, aq_env.admin_token, cur, sizeof(cur));
        IT_CHECK(items != NULL);
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *seq;
            json_object_object_get_ex(json_object_array_get_idx(items, i), "seq", &seq);
            long long s = json_object_get_int64(seq);
            IT_CHECK(prev_seq < 0 || s < prev_seq); /* newest first, no repeats */
            prev_seq = s;
            total++;
        }
        json_object_put(items);
        pages++;
        if (pages == 1 && cur[0] != '\0') {
            /* a tampered cursor, and the cursor on another list, are 400 */
            char bad[700];
            size_t n = strlen(cur);
            snprintf(bad, sizeof(bad), "%s", cur);
            bad[n / 2] = bad[n / 2] == 'A' ? 'B' : 'A';
            snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?patient_id=%s&cursor=%s",
                     aq_env.org_id, patient, bad);
            IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "cursor"));
            snprintf(path, sizeof(path), "/api/v1/admin/audit-events?cursor=%s", cur);
            IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.op_token, "cursor"));
            snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?cursor=%%00", aq_env.org_id);
            IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "cursor"));
        }
        snprintf(next, sizeof(next), "%s", cur);
    } while (next[0] != '\0' && pages < 10);
    IT_CHECK(total == 7 && pages == 3);
}

static void
test_aq_read_audited(void)
{
    char path[1024], out[64], before[32];

    IT_CHECK(aq_setup());
    IT_CHECK(it_psql("audit", before, sizeof(before),
                     "SELECT count(*) FROM audit_events WHERE action = 'audit.read' AND "
                     "actor_account_id = '%s'",
                     aq_env.admin_id) == 0);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?limit=5&action=auth.",
             aq_env.org_id);
    IT_CHECK(it_gw_status("GET", path, NULL, aq_env.admin_token) == 200);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE action = 'audit.read' AND "
                     "actor_account_id = '%s'",
                     aq_env.admin_id) == 0);
    IT_CHECK(strtol(out, NULL, 10) == strtol(before, NULL, 10) + 1);
    /* the read is in the org's own list, with what was asked (not the values) */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?action=audit.read&limit=1",
             aq_env.org_id);
    json_object *items = aq_items(path, aq_env.admin_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 1);
    json_object *it = json_object_array_get_idx(items, 0), *d, *v;
    int ok = strcmp(aq_str(it, "actor", "account_id"), aq_env.admin_id) == 0 &&
             strcmp(aq_str(it, "target", "type"), "audit_log") == 0 &&
             json_object_object_get_ex(it, "details", &d) &&
             json_object_object_get_ex(d, "action", &v) && json_object_get_boolean(v);
    json_object_put(items);
    IT_CHECK(ok);
}

static void
test_aq_access_log(void)
{
    char path[256];
    it_patient_t p;

    IT_CHECK(aq_setup());
    IT_CHECK(it_patient("aqpat", AQ_PW, 1, &p));
    /* nothing yet */
    json_object *items = aq_items("/api/v1/me/access-log", p.token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 0);
    json_object_put(items);
    /* a staff read of the patient's records (the records service's event) */
    char eid[37];
    IT_CHECK(aq_ingest("records.read", aq_env.admin_id, aq_env.org_id, p.id, 0, eid));
    items = aq_items("/api/v1/me/access-log", p.token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 1);
    json_object *it = json_object_array_get_idx(items, 0), *types;
    const char *at = aq_str(it, NULL, "at");
    int ok = strcmp(aq_str(it, NULL, "event_id"), eid) == 0 &&
             strcmp(aq_str(it, NULL, "action"), "records.read") == 0 && at != NULL &&
             strlen(at) >= 25 && strcmp(at + strlen(at) - 6, "+09:00") == 0 &&
             strcmp(aq_str(it, "actor", "name"), "Admin AQ") == 0 &&
             strcmp(aq_str(it, "actor", "org_id"), aq_env.org_id) == 0 &&
             strcmp(aq_str(it, "actor", "kind"), "staff") == 0 &&
             json_object_object_get_ex(it, "record_types", &types) &&
             json_object_array_length(types) == 2;
    json_object_put(items);
    IT_CHECK(ok);
    /* the patient's own reading is audited but is not a staff access */
    items = aq_items("/api/v1/me/access-log", p.token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 1);
    json_object_put(items);
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/access-log?from=x", NULL, p.token, "from"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/access-log?cursor=abc", NULL, p.token, "cursor"));
    /* patients cannot read an org's events */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events", aq_env.org_id);
    IT_CHECK(it_gw_status("GET", path, NULL, p.token) == 403);
}

static void
test_aq_export(void)
{
    char path[1024], prev_hash[65] = "";
    it_resp_t r;
    int events = 0, foreign = 0, links = 0, bad = 0, lines = 0;
    long long last_seq = 0;

    IT_CHECK(aq_setup());
    /* events of org B in between, so the export has foreign lines */
    char pat[37], act[37];
    IT_CHECK(uuid4(pat) == 0 && uuid4(act) == 0);
    IT_CHECK(aq_ingest("records.read", act, aq_env.org_id, pat, 0, NULL));
    IT_CHECK(aq_ingest("records.read", act, aq_env.org_b, pat, 0, NULL));
    IT_CHECK(aq_ingest("records.read", act, aq_env.org_id, pat, 0, NULL));
    /* let a timed checkpoint (PHR_AUDIT_CHECKPOINT_S, 60 s by default) cover them */
    char out[32];
    for (int i = 0; i < 90; i++) {
        IT_CHECK(it_psql("audit", out, sizeof(out),
                         "SELECT (SELECT coalesce(max(seq), 0) FROM checkpoints) >= "
                         "(SELECT max(seq) FROM audit_events WHERE target_org_id = '%s')",
                         aq_env.org_id) == 0);
        if (strcmp(out, "t") == 0) {
            break;
        }
        sleep(1);
    }
    EVP_PKEY *pub = aq_public_key();
    IT_CHECK(pub != NULL);
    int rehashed = 0, signed_ok = 0;
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events/export", aq_env.org_id);
    IT_CHECK(it_gw("GET", path, NULL, aq_env.admin_token, &r) == 200);
    const char *ct = it_header(&r, "content-type");
    IT_CHECK(ct != NULL && strncmp(ct, "application/jsonl", 17) == 0);
    char *save = NULL;
    for (char *line = strtok_r(r.body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(line), *v;
        lines++;
        if (o == NULL) {
            bad++;
            continue;
        }
        const char *rec = aq_str(o, NULL, "record");
        const char *h = aq_str(o, NULL, "hash");
        long long seq = json_object_object_get_ex(o, "seq", &v) ? json_object_get_int64(v) : 0;
        if (rec == NULL || h == NULL || strlen(h) != 64 || seq <= 0) {
            bad++;
        } else if (strcmp(rec, "checkpoint") == 0) {
            /* signs an event already listed */
            bad += seq != last_seq || strcmp(h, prev_hash) != 0 || !aq_ckpt_ok(o, pub);
            signed_ok++;
        } else {
            bad += seq != last_seq + 1 && last_seq != 0;
            if (strcmp(rec, "event") == 0) {
                const char *ph = aq_str(o, NULL, "prev_hash");
                const char *t = aq_str(o, "target", "org_id"), *a = aq_str(o, "actor", "org_id");
                bad += ph == NULL || !((t && strcmp(t, aq_env.org_id) == 0) ||
                                       (a && strcmp(a, aq_env.org_id) == 0));
                bad += !aq_rehash(o); /* recomputed from the line alone */
                rehashed++;
                if (ph != NULL && prev_hash[0] != '\0') {
                    bad += strcmp(ph, prev_hash) != 0;
                    links++;
                }
                events++;
            } else {
                bad += strcmp(rec, "foreign") != 0 || aq_str(o, NULL, "action") != NULL;
                foreign++;
            }
            snprintf(prev_hash, sizeof(prev_hash), "%s", h);
            last_seq = seq;
        }
        json_object_put(o);
    }
    it_resp_free(&r);
    EVP_PKEY_free(pub);
    if (bad) {
        fprintf(stderr, "  export: %d lines, %d bad\n", lines, bad);
    }
    IT_CHECK(bad == 0 && events >= 3 && foreign >= 1 && links >= 2);
    IT_CHECK(rehashed == events && signed_ok >= 1);
    /* the export was audited */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE action = 'audit.export' AND "
                     "target_org_id = '%s'",
                     aq_env.org_id) == 0 &&
             strtol(out, NULL, 10) >= 1);
    /* a range without events: an empty body; a bad bound names it */
    snprintf(path, sizeof(path),
             "/api/v1/orgs/%s/audit-events/export?from=2001-01-01T00:00:00Z&"
             "to=2001-02-01T00:00:00Z",
             aq_env.org_id);
    IT_CHECK(it_gw("GET", path, NULL, aq_env.admin_token, &r) == 200 && r.len == 0);
    it_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events/export?from=x", aq_env.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, aq_env.admin_token, "from"));
}

/* The review line of |id| in |items|, or NULL. */
static json_object *
aq_line(json_object *items, const char *id)
{
    for (size_t i = 0; items != NULL && i < json_object_array_length(items); i++) {
        json_object *l = json_object_array_get_idx(items, i);
        const char *a = aq_str(l, NULL, "account_id");
        if (a != NULL && strcmp(a, id) == 0) {
            return l;
        }
    }
    return NULL;
}

static int
aq_has_flag(json_object *line, const char *flag)
{
    json_object *flags;
    if (line == NULL || !json_object_object_get_ex(line, "flags", &flags)) {
        return 0;
    }
    for (size_t i = 0; i < json_object_array_length(flags); i++) {
        if (strcmp(json_object_get_string(json_object_array_get_idx(flags, i)), flag) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
test_aq_access_review(void)
{
    char path[1024], email[128], sid[37], stok[64], lemail[128], lid[37], ltok[64], did[37],
        dtok[64], demail[128], month[16], prev[16], body[512];
    time_t now = time(NULL) + 9 * 3600;
    struct tm tm;

    char org[37], admin[37], atok[64];
    IT_CHECK(aq_setup());
    IT_CHECK(aq_org(aq_env.op_token, org, admin, atok)); /* an org of this test alone */
    gmtime_r(&now, &tm);
    snprintf(month, sizeof(month), "%04d-%02d", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100);
    snprintf(prev, sizeof(prev), "%04d-%02d",
             (tm.tm_mon == 0 ? tm.tm_year + 1899 : tm.tm_year + 1900) % 10000,
             (tm.tm_mon == 0 ? 12 : tm.tm_mon) % 100);
    IT_CHECK(aq_staff_of(org, atok, "staff", email, sizeof(email), sid, stok));
    IT_CHECK(aq_staff_of(org, atok, "staff", lemail, sizeof(lemail), lid, ltok));
    IT_CHECK(aq_staff_of(org, atok, "staff", demail, sizeof(demail), did, dtok));
    /* locked after 5 bad logins; dormant: last login 100 days ago */
    for (int i = 0; i < 5; i++) {
        IT_CHECK(it_login(lemail, "Wrong-password-123", NULL) == 401);
    }
    char out[64];
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET last_login_at = now() - interval '100 days' "
                     "WHERE id = '%s' RETURNING id",
                     did) == 0 &&
             strcmp(out, did) == 0);
    /* promoted to admin this month */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", org, sid);
    IT_CHECK(it_gw_status("PATCH", path, "{\"role\":\"admin\"}", atok) == 200);
    /* the role change must have reached the log */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/audit-events?action=auth.staff.role_change", org);
    IT_CHECK(aq_wait_item(path, atok, "target", "id", sid));

    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=%s", org, month);
    it_resp_t r;
    IT_CHECK(it_gw("GET", path, NULL, atok, &r) == 200 && r.json != NULL);
    json_object *items, *v, *ch;
    IT_CHECK(json_object_object_get_ex(r.json, "items", &items) &&
             json_object_object_get_ex(r.json, "snapshot_at", &v) && v == NULL);
    json_object *adm = aq_line(items, admin), *s = aq_line(items, sid);
    json_object *l = aq_line(items, lid), *d = aq_line(items, did);
    int ok =
        json_object_array_length(items) == 4 && adm != NULL && s != NULL && l != NULL && d != NULL;
    ok = ok && aq_has_flag(adm, "admin_without_mfa") && aq_has_flag(adm, "created_this_month") &&
         !aq_has_flag(adm, "locked") && !aq_has_flag(adm, "dormant");
    ok = ok && aq_has_flag(s, "promoted_this_month") && aq_has_flag(s, "admin_without_mfa") &&
         strcmp(aq_str(s, NULL, "role"), "admin") == 0 &&
         json_object_object_get_ex(s, "role_changes", &ch) && json_object_array_length(ch) == 1 &&
         strcmp(aq_str(json_object_array_get_idx(ch, 0), NULL, "from"), "staff") == 0 &&
         strcmp(aq_str(json_object_array_get_idx(ch, 0), NULL, "to"), "admin") == 0 &&
         strcmp(aq_str(json_object_array_get_idx(ch, 0), NULL, "by"), admin) == 0;
    ok = ok && aq_has_flag(l, "locked") && !aq_has_flag(l, "admin_without_mfa") &&
         aq_has_flag(d, "dormant") && !aq_has_flag(d, "locked") &&
         strcmp(aq_str(d, NULL, "email"), demail) == 0 &&
         json_object_object_get_ex(d, "attestation", &v) && v == NULL;
    if (!ok) {
        fprintf(stderr, "  review: %.1500s\n", r.body);
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    /* paging by 3: 3 + 1 */
    char next[200];
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?limit=3", org);
    items = aq_items(path, atok, next, sizeof(next));
    IT_CHECK(items != NULL && json_object_array_length(items) == 3 && next[0] != '\0');
    json_object_put(items);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?limit=3&cursor=%s", org, next);
    items = aq_items(path, atok, next, sizeof(next));
    IT_CHECK(items != NULL && json_object_array_length(items) == 1 && next[0] == '\0');
    json_object_put(items);
    /* bad input and access */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=2026-13", org);
    IT_CHECK(it_gw_names_field("GET", path, NULL, atok, "month"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=2999-01", org);
    IT_CHECK(it_gw_names_field("GET", path, NULL, atok, "month"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?cursor=xyz", org);
    IT_CHECK(it_gw_names_field("GET", path, NULL, atok, "cursor"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review", aq_env.org_b);
    IT_CHECK(it_gw_status("GET", path, NULL, atok) == 404);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review", org);
    IT_CHECK(it_gw_status("GET", path, NULL, dtok) == 403);
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/access-review", NULL, atok) == 403);

    /* attestations: recorded, shown on the line, audited */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review/%s/attestations", org, month);
    snprintf(body, sizeof(body),
             "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"remove\",\"comment\":\"left\"},"
             "{\"account_id\":\"%s\",\"decision\":\"keep\"}]}",
             did, lid);
    IT_CHECK(it_gw("POST", path, body, atok, &r) == 201 &&
             json_object_object_get_ex(r.json, "items", &items) &&
             json_object_array_length(items) == 2 &&
             strcmp(aq_str(json_object_array_get_idx(items, 0), NULL, "by"), admin) == 0);
    it_resp_free(&r);
    snprintf(body, sizeof(body), "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"keep\"}]}",
             admin);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=%s", org, month);
    IT_CHECK(it_gw("GET", path, NULL, atok, &r) == 200 &&
             json_object_object_get_ex(r.json, "items", &items));
    d = aq_line(items, did);
    ok = d != NULL && json_object_object_get_ex(d, "attestation", &v) && v != NULL &&
         strcmp(aq_str(v, NULL, "decision"), "remove") == 0 &&
         strcmp(aq_str(v, NULL, "comment"), "left") == 0;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE action = "
                     "'audit.access_review.attest' AND actor_account_id = '%s' AND target_id = "
                     "'%s' AND (details ->> 'count')::int = 2",
                     admin, month) == 0 &&
             strcmp(out, "1") == 0);
    /* bad attestations */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review/%s/attestations", org, month);
    snprintf(body, sizeof(body), "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"keep\"}]}",
             aq_env.op_token[0] ? "00000000-0000-4000-8000-000000000000" : "");
    IT_CHECK(it_gw_names_field("POST", path, body, atok, "items[0].account_id"));
    snprintf(body, sizeof(body), "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"maybe\"}]}",
             did);
    IT_CHECK(it_gw_names_field("POST", path, body, atok, "items[0].decision"));
    IT_CHECK(it_gw_names_field("POST", path, "{\"items\":[]}", atok, "items"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review/2026-1/attestations", org);
    snprintf(body, sizeof(body), "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"keep\"}]}",
             did);
    IT_CHECK(it_gw_names_field("POST", path, body, atok, "month"));

    /* the previous month answers from its snapshot */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=%s", org, prev);
    IT_CHECK(it_gw("GET", path, NULL, atok, &r) == 200 && r.json != NULL &&
             json_object_object_get_ex(r.json, "snapshot_at", &v) && v != NULL);
    it_resp_free(&r);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM access_review_snapshots WHERE month = '%s'",
                     prev) == 0 &&
             strcmp(out, "1") == 0);
    /* a month before any snapshot: 404 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=2001-01", org);
    IT_CHECK(it_gw_status("GET", path, NULL, atok) == 404);

    /* the operator: every org, or one */
    snprintf(path, sizeof(path), "/api/v1/admin/access-review?org_id=%s", org);
    items = aq_items(path, aq_env.op_token, NULL, 0);
    IT_CHECK(items != NULL && json_object_array_length(items) == 4 &&
             aq_line(items, admin) != NULL);
    json_object_put(items);
    IT_CHECK(it_gw_names_field("GET", "/api/v1/admin/access-review?month=x", NULL, aq_env.op_token,
                               "month"));
    /* the operator's own attestation; an admin may not use the operator route */
    snprintf(path, sizeof(path), "/api/v1/admin/access-review/%s/attestations", month);
    snprintf(body, sizeof(body), "{\"items\":[{\"account_id\":\"%s\",\"decision\":\"change\"}]}",
             sid);
    IT_CHECK(it_gw_status("POST", path, body, aq_env.op_token) == 201);
    IT_CHECK(it_gw_status("POST", path, body, atok) == 403);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/access-review?month=%s", org, month);
    IT_CHECK(it_gw("GET", path, NULL, atok, &r) == 200 &&
             json_object_object_get_ex(r.json, "items", &items));
    s = aq_line(items, sid);
    ok = s != NULL && json_object_object_get_ex(s, "attestation", &v) && v != NULL &&
         strcmp(aq_str(v, NULL, "decision"), "change") == 0;
    it_resp_free(&r);
    IT_CHECK(ok);
}

const it_case_t audit_query_cases[] = {
    {"aq_org_scope", test_aq_org_scope},
    {"aq_filters", test_aq_filters},
    {"aq_paging", test_aq_paging},
    {"aq_read_audited", test_aq_read_audited},
    {"aq_access_log", test_aq_access_log},
    {"aq_export", test_aq_export},
    {"aq_access_review", test_aq_access_review},
    {NULL, NULL},
};
