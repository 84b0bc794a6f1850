/*
 * query.c - reading the audit log: an organization's events (its admins),
 * every event (operators), a patient's access log ("who viewed my record")
 * and the auditor's export (JSON Lines with the chain fields, streamed).
 *
 * Lists are newest first with a keyset cursor on seq; the cursor carries an
 * HMAC over the route path and the seq, so a tampered or transplanted cursor
 * is 400. Every read is itself audited (action audit.read / audit.export,
 * appended in-process before the answer; if that fails the answer is 503).
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aev.h"
#include "audit.h"
#include "err.h"
#include "hex.h"
#include "log.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

#define AQ_PAGE_DEFAULT 50
#define AQ_PAGE_MAX 200
#define AQ_EXPORT_PAGE "500"
#define AQ_EXPORT_HIGH_WATER ((size_t)256 * 1024)
#define AQ_CURSOR_MAC 16
#define AQ_QUERY_MAX 256

enum { AQ_VIEW_ORG, AQ_VIEW_ADMIN, AQ_VIEW_ACCESS_LOG, AQ_VIEW_EXPORT };

typedef struct aq_ctx aq_ctx_t;
typedef void (*aq_step_fn)(aq_ctx_t *q, int rc);

struct aq_ctx {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
    int view;
    char org_id[37]; /* the org of the view, or the admin's org_id filter; "" none */
    char actor[37];
    char patient[37];
    char action[72];
    int action_prefix;
    char from[24], to[24]; /* epoch ms as text, "" when absent */
    int limit;
    char cursor_seq[24]; /* seq bound as text, "" when absent */
    char limit_txt[16];
    json_object *out; /* the answer being built */
    json_object *items;
    size_t count;
    /* export */
    char lo[24], hi[24], next[24];
    int in_query, waiting, ended;
};

/* ---- small helpers --------------------------------------------------------- */

static void
aq_ctx_free(void *arg)
{
    aq_ctx_t *q = arg;

    json_object_put(q->out);
    free(q);
}

static aq_ctx_t *
aq_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess, int view)
{
    aq_ctx_t *q = calloc(1, sizeof(*q));

    if (q == NULL || h2s_req_add_cleanup(req, aq_ctx_free, q) != PHR_OK) {
        free(q);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    q->svc = svc;
    q->req = req;
    q->sess = *sess;
    q->view = view;
    q->limit = AQ_PAGE_DEFAULT;
    return q;
}

static int
aq_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
    return 0;
}

static int
aq_id_ok(const char *id)
{
    return id != NULL && strlen(id) == 36 && uuid_valid(id);
}


/*
 * Query parameter |name|, percent-decoded into |out| ('+' stays '+': RFC 3339
 * offsets). 1 when present, 0 when absent, -1 when malformed or too long.
 */
static int
aq_param(h2s_req_t *req, const char *name, char *out, size_t cap)
{
    const char *q = h2s_req_query(req);
    size_t nlen = strlen(name);

    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        if (len > nlen && q[nlen] == '=' && strncmp(q, name, nlen) == 0) {
            size_t o = 0;
            for (size_t i = nlen + 1; i < len; i++) {
                char c = q[i];
                if (c == '%') {
                    int hi = i + 2 < len ? hex_val((unsigned char)q[i + 1]) : -1;
                    int lo = i + 2 < len ? hex_val((unsigned char)q[i + 2]) : -1;
                    if (hi < 0 || lo < 0) {
                        return -1;
                    }
                    c = (char)(hi << 4 | lo);
                    i += 2;
                }
                if (c == '\0' || o + 1 >= cap) {
                    return -1;
                }
                out[o++] = c;
            }
            out[o] = '\0';
            return 1;
        }
        if (len == nlen && strncmp(q, name, nlen) == 0) {
            out[0] = '\0';
            return 1;
        }
        q += len;
        if (*q == '&') {
            q++;
        }
    }
    out[0] = '\0';
    return 0;
}

/*
 * |us| microseconds since the epoch as RFC 3339 in JST: milliseconds, or
 * microseconds when there are any (exact: the chain hashes microseconds).
 */
static void
aq_jst(int64_t us, char *out, size_t cap)
{
    int64_t sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - sec * 1000000;
    time_t t = (time_t)(sec + 9LL * 3600);
    struct tm tm;
    char base[32];

    if (gmtime_r(&t, &tm) == NULL || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        base[0] = '\0';
    }
    if (frac % 1000 == 0) {
        snprintf(out, cap, "%s.%03d+09:00", base, (int)(frac / 1000));
    } else {
        snprintf(out, cap, "%s.%06d+09:00", base, (int)frac);
    }
}

static json_object *
aq_time_json(const char *us_txt)
{
    char buf[48];

    if (us_txt == NULL || us_txt[0] == '\0') {
        return NULL;
    }
    aq_jst(strtoll(us_txt, NULL, 10), buf, sizeof(buf));
    return json_object_new_string(buf);
}

static json_object *
aq_col(PGresult *res, int i, int c)
{
    return PQgetisnull(res, i, c) ? NULL : json_object_new_string(PQgetvalue(res, i, c));
}

/* ---- cursors: base64url(seq as 8 bytes big-endian || HMAC-SHA256(path, seq)[0..16)) --- */

static unsigned char aq_mac_key[32];
static int aq_mac_ready;

static int
aq_mac(svc_t *svc, const char *path, uint64_t seq, unsigned char *mac)
{
    unsigned char md[EVP_MAX_MD_SIZE], msg[8 + 513];
    unsigned int mdlen = 0;
    size_t plen = strlen(path);

    if (!aq_mac_ready) {
        char secret[256];
        if (cfg_read_secret(svc_cfg(svc), "svc_audit.key", secret, sizeof(secret)) != PHR_OK ||
            EVP_Digest("phr-audit-cursor-v1", 19, aq_mac_key, NULL, EVP_sha256(), NULL) != 1) {
            return PHR_EGENERIC;
        }
        /* key = HMAC(service secret, label): the secret itself never signs cursors */
        if (HMAC(EVP_sha256(), secret, (int)strlen(secret), aq_mac_key, 32, md, &mdlen) == NULL) {
            explicit_bzero(secret, sizeof(secret));
            return PHR_EGENERIC;
        }
        explicit_bzero(secret, sizeof(secret));
        memcpy(aq_mac_key, md, 32);
        aq_mac_ready = 1;
    }
    if (plen > 512) {
        return PHR_EINVAL;
    }
    for (int b = 0; b < 8; b++) {
        msg[b] = (unsigned char)(seq >> (56 - 8 * b));
    }
    memcpy(msg + 8, path, plen + 1);
    if (HMAC(EVP_sha256(), aq_mac_key, 32, msg, 8 + plen, md, &mdlen) == NULL) {
        return PHR_EGENERIC;
    }
    memcpy(mac, md, AQ_CURSOR_MAC);
    return PHR_OK;
}

static void
aq_b64url(const unsigned char *in, size_t n, char *out, size_t cap)
{
    unsigned char buf[64];
    size_t j = 0;

    if (((n + 2) / 3) * 4 + 1 > sizeof(buf) || ((n + 2) / 3) * 4 + 1 > cap) {
        out[0] = '\0';
        return;
    }
    int len = EVP_EncodeBlock(buf, in, (int)n);
    for (int i = 0; i < len && buf[i] != '='; i++) {
        out[j++] = (char)(buf[i] == '+' ? '-' : buf[i] == '/' ? '_' : buf[i]);
    }
    out[j] = '\0';
}

/* The cursor after |seq| for this request's path into |out|; "" when it cannot be made. */
static void
aq_cursor_make(aq_ctx_t *q, const char *seq_txt, char *out, size_t cap)
{
    unsigned char raw[8 + AQ_CURSOR_MAC];
    uint64_t seq = strtoull(seq_txt, NULL, 10);

    out[0] = '\0';
    for (int b = 0; b < 8; b++) {
        raw[b] = (unsigned char)(seq >> (56 - 8 * b));
    }
    if (aq_mac(q->svc, h2s_req_path(q->req), seq, raw + 8) == PHR_OK) {
        aq_b64url(raw, sizeof(raw), out, cap);
    }
}

/* Checks |cur| against this request's path; the seq as text into q->cursor_seq. */
static int
aq_cursor_read(aq_ctx_t *q, const char *cur)
{
    unsigned char buf[64], raw[64], mac[AQ_CURSOR_MAC];
    size_t n = strlen(cur);

    if (n != 32) { /* 24 bytes, no padding */
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = cur[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return 0;
        }
        buf[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
    }
    if (EVP_DecodeBlock(raw, buf, (int)n) != 24) {
        return 0;
    }
    uint64_t seq = 0;
    for (int b = 0; b < 8; b++) {
        seq = seq << 8 | raw[b];
    }
    if (seq == 0 || seq > INT64_MAX || aq_mac(q->svc, h2s_req_path(q->req), seq, mac) != PHR_OK ||
        CRYPTO_memcmp(mac, raw + 8, AQ_CURSOR_MAC) != 0) {
        return 0;
    }
    snprintf(q->cursor_seq, sizeof(q->cursor_seq), "%" PRIu64, seq);
    return 1;
}

/* ---- access ------------------------------------------------------------------ */

/* The caller must be an admin of {org_id}: another org is 404, a non-admin 403. */
static int
aq_org_admin_ok(aq_ctx_t *q)
{
    const char *id = h2s_req_param(q->req, "org_id");

    if (strcmp(q->sess.kind, "staff") != 0) {
        svc_respond_error(q->req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    if (!aq_id_ok(id) || strcmp(id, q->sess.org_id) != 0) {
        svc_respond_error(q->req, PHR_ENOTFOUND, "no such organization");
        return 0;
    }
    if (strcmp(q->sess.role, "admin") != 0) {
        svc_respond_error(q->req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    snprintf(q->org_id, sizeof(q->org_id), "%s", id);
    return 1;
}

static int
aq_kind_ok(aq_ctx_t *q, const char *kind, const char *detail)
{
    if (strcmp(q->sess.kind, kind) != 0) {
        svc_respond_error(q->req, PHR_EDENIED, detail);
        return 0;
    }
    return 1;
}

/* ---- filters ----------------------------------------------------------------- */

static int
aq_time_param(aq_ctx_t *q, const char *name, char *out, size_t cap)
{
    char v[48];
    int64_t ms;
    int has = aq_param(q->req, name, v, sizeof(v));

    if (has == 0) {
        out[0] = '\0';
        return 1;
    }
    if (has < 0 || strlen(v) > 40 || tu_parse_rfc3339(v, &ms) != PHR_OK) {
        return aq_field_error(q->req, name, "an RFC 3339 date-time (2026-11-20T07:30:00+09:00)");
    }
    snprintf(out, cap, "%" PRId64, ms);
    return 1;
}

static int
aq_uuid_param(aq_ctx_t *q, const char *name, char *out)
{
    char v[64];
    int has = aq_param(q->req, name, v, sizeof(v));

    if (has == 0) {
        out[0] = '\0';
        return 1;
    }
    if (has < 0 || !aq_id_ok(v)) {
        return aq_field_error(q->req, name, "a UUID");
    }
    memcpy(out, v, 37);
    return 1;
}

/* limit and cursor. */
static int
aq_page_params(aq_ctx_t *q)
{
    char v[AQ_QUERY_MAX];
    int has = aq_param(q->req, "limit", v, sizeof(v));

    if (has != 0) {
        char *end = NULL;
        long n = has > 0 && v[0] != '\0' ? strtol(v, &end, 10) : 0;
        if (end == NULL || *end != '\0' || n < 1 || n > AQ_PAGE_MAX) {
            return aq_field_error(q->req, "limit", "an integer from 1 to 200");
        }
        q->limit = (int)n;
    }
    snprintf(q->limit_txt, sizeof(q->limit_txt), "%d", q->limit + 1);
    has = aq_param(q->req, "cursor", v, sizeof(v));
    if (has != 0 && (has < 0 || !aq_cursor_read(q, v))) {
        return aq_field_error(q->req, "cursor", "not a cursor of this list");
    }
    return 1;
}

/* actor, action, patient_id, from, to, limit, cursor (and org_id for operators). */
static int
aq_filters(aq_ctx_t *q)
{
    char v[AQ_QUERY_MAX];

    if (q->view == AQ_VIEW_ADMIN && !aq_uuid_param(q, "org_id", q->org_id)) {
        return 0;
    }
    if (!aq_uuid_param(q, "actor", q->actor) || !aq_uuid_param(q, "patient_id", q->patient)) {
        return 0;
    }
    int has = aq_param(q->req, "action", v, sizeof(v));
    if (has != 0) {
        size_t n = strlen(v);
        int ok = has > 0 && n >= 1 && n <= 64 && v[0] >= 'a' && v[0] <= 'z' &&
                 strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_.") == n;
        if (!ok) {
            return aq_field_error(q->req, "action",
                                  "an action (auth.login.success) or a prefix ending in '.'");
        }
        memcpy(q->action, v, n + 1);
        q->action_prefix = v[n - 1] == '.';
    }
    return aq_time_param(q, "from", q->from, sizeof(q->from)) &&
           aq_time_param(q, "to", q->to, sizeof(q->to)) && aq_page_params(q);
}

static const char *
aq_p(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

/* ---- appending an event of our own ------------------------------------------- */

/* ---- the audit.read event of this request ------------------------------------ */

static void
aq_audited(int rc, void *ud)
{
    aq_ctx_t *q = ud;

    if (rc != PHR_OK) {
        log_warn("audit: could not record a read of the audit log: %s", phr_err_str(rc));
        svc_respond_error(q->req, PHR_EUNAVAIL, "the audit log is unavailable; retry later");
        return;
    }
    if (q->view == AQ_VIEW_EXPORT) {
        return; /* the export continues in aq_export_audited */
    }
    json_object *out = q->out;
    q->out = NULL;
    h2s_respond_json(q->req, 200, out);
}

/*
 * Appends the event recording this read, then answers q->out (lists) or
 * calls |cont| (export).
 */
static void
aq_audit_read(aq_ctx_t *q, void (*cb)(int rc, void *ud))
{
    static const char *const views[] = {"org_events", "all_events", "access_log", "export"};
    static const char *const types[] = {"audit_log", "audit_log", "patient", "audit_log"};
    aev_t ev;
    char event_id[AEV_ID_LEN];
    json_object *d = json_object_new_object();

    aev_init(&ev, "audit", q->view == AQ_VIEW_EXPORT ? "audit.export" : "audit.read", q->req,
             &q->sess);
    ev.target_type = types[q->view];
    ev.target_id = q->view == AQ_VIEW_ACCESS_LOG ? q->sess.account_id
                   : q->org_id[0] != '\0'        ? q->org_id
                                                 : "all";
    ev.patient_id = q->view == AQ_VIEW_ACCESS_LOG ? q->sess.account_id : NULL;
    ev.target_org_id = q->org_id[0] != '\0' ? q->org_id : NULL;
    json_object_object_add(d, "view", json_object_new_string(views[q->view]));
    if (q->view != AQ_VIEW_EXPORT) {
        json_object_object_add(d, "count", json_object_new_int64((int64_t)q->count));
    }
    static const char *const filters[] = {"actor", "action", "patient_id", "from", "to"};
    const char *vals[] = {q->actor, q->action, q->patient, q->from, q->to};
    for (size_t i = 0; i < 5; i++) {
        if (vals[i][0] != '\0') { /* which filters, not their values (no patient ids in details) */
            json_object_object_add(d, filters[i], json_object_new_boolean(1));
        }
    }
    ev.details = d;
    char *json = aev_json(&ev, event_id);
    if (json == NULL) {
        cb(PHR_ENOMEM, q);
        return;
    }
    int rc = audit_append(q->svc, json, cb, q);
    free(json);
    if (rc != PHR_OK) {
        cb(rc, q);
    }
}

/* ---- event lists ------------------------------------------------------------- */

/* Row |i| of AUDIT_EVENT_COLS as a StoredEvent. */
static json_object *
aq_event_json(PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object *actor = json_object_new_object();
    json_object *target = json_object_new_object();
    json_object *outcome = json_object_new_object();
    json_object *source = json_object_new_object();

    json_object_object_add(o, "event_id", aq_col(res, i, 1));
    json_object_object_add(o, "occurred_at", aq_time_json(PQgetvalue(res, i, 2)));
    json_object_object_add(o, "recorded_at", aq_time_json(PQgetvalue(res, i, 3)));
    json_object_object_add(actor, "account_id", aq_col(res, i, 4));
    json_object_object_add(actor, "kind", aq_col(res, i, 5));
    json_object_object_add(actor, "org_id", aq_col(res, i, 6));
    json_object_object_add(actor, "role", aq_col(res, i, 7));
    json_object_object_add(actor, "session_id", aq_col(res, i, 8));
    json_object_object_add(actor, "ip", aq_col(res, i, 9));
    json_object_object_add(actor, "user_agent", aq_col(res, i, 10));
    json_object_object_add(o, "actor", actor);
    json_object_object_add(o, "action", aq_col(res, i, 11));
    json_object_object_add(target, "type", aq_col(res, i, 12));
    json_object_object_add(target, "id", aq_col(res, i, 13));
    json_object_object_add(target, "patient_id", aq_col(res, i, 14));
    json_object_object_add(target, "org_id", aq_col(res, i, 15));
    json_object_object_add(o, "target", target);
    json_object_object_add(outcome, "result", aq_col(res, i, 16));
    json_object_object_add(outcome, "reason", aq_col(res, i, 17));
    json_object_object_add(o, "outcome", outcome);
    json_object_object_add(source, "service", aq_col(res, i, 18));
    json_object_object_add(source, "request_id", aq_col(res, i, 19));
    json_object_object_add(o, "source", source);
    if (!PQgetisnull(res, i, 20)) {
        json_object *d = json_tokener_parse(PQgetvalue(res, i, 20));
        if (d != NULL) {
            json_object_object_add(o, "details", d);
        }
    }
    json_object_object_add(o, "seq", json_object_new_int64(strtoll(PQgetvalue(res, i, 0), 0, 10)));
    json_object_object_add(o, "prev_hash", aq_col(res, i, 21));
    json_object_object_add(o, "hash", aq_col(res, i, 22));
    return o;
}

/* Starts the answer {items, next_cursor} from a page of |n| rows (seq in column |seqcol|). */
static void
aq_page_out(aq_ctx_t *q, PGresult *res, int seqcol, json_object *(*row)(PGresult *, int))
{
    char cursor[64];
    int n = PQntuples(res);
    int more = n > q->limit;

    q->out = json_object_new_object();
    q->items = json_object_new_array();
    for (int i = 0; i < n && i < q->limit; i++) {
        json_object_array_add(q->items, row(res, i));
    }
    q->count = (size_t)(n < q->limit ? n : q->limit);
    json_object_object_add(q->out, "items", q->items);
    cursor[0] = '\0';
    if (more) {
        aq_cursor_make(q, PQgetvalue(res, q->limit - 1, seqcol), cursor, sizeof(cursor));
    }
    json_object_object_add(q->out, "next_cursor",
                           cursor[0] != '\0' ? json_object_new_string(cursor) : NULL);
}

static void
aq_list_done(int rc, PGresult *res, void *ud)
{
    aq_ctx_t *q = ud;

    if (rc != PHR_OK) {
        svc_respond_error(q->req, rc, "the audit log could not be read; retry later");
        return;
    }
    aq_page_out(q, res, 0, aq_event_json);
    aq_audit_read(q, aq_audited);
}

static void
aq_list(aq_ctx_t *q)
{
    static const char sql[] =
        "SELECT " AUDIT_EVENT_COLS " FROM audit_events e "
        "WHERE ($1::uuid IS NULL OR e.target_org_id = $1::uuid OR e.actor_org_id = $1::uuid) "
        "AND ($2::uuid IS NULL OR e.actor_account_id = $2::uuid) "
        "AND ($3::text IS NULL OR e.action = $3 OR ($4::bool AND starts_with(e.action, $3))) "
        "AND ($5::uuid IS NULL OR e.target_patient_id = $5::uuid) "
        "AND ($6::bigint IS NULL OR e.occurred_at >= to_timestamp($6::bigint / 1000.0)) "
        "AND ($7::bigint IS NULL OR e.occurred_at < to_timestamp($7::bigint / 1000.0)) "
        "AND ($8::bigint IS NULL OR e.seq < $8::bigint) "
        "ORDER BY e.seq DESC LIMIT $9::int";
    const char *p[] = {
        aq_p(q->org_id),  aq_p(q->actor), aq_p(q->action), q->action_prefix ? "true" : "false",
        aq_p(q->patient), aq_p(q->from),  aq_p(q->to),     aq_p(q->cursor_seq),
        q->limit_txt};
    int rc = db_query(svc_db(q->svc), sql, 9, p, aq_list_done, q);
    if (rc != PHR_OK) {
        svc_respond_error(q->req, rc, "the audit log could not be read; retry later");
    }
}

/* GET /api/v1/orgs/{org_id}/audit-events */
static void
aq_org_events(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    aq_ctx_t *q = aq_ctx_new(svc, req, sess, AQ_VIEW_ORG);

    if (q != NULL && aq_org_admin_ok(q) && aq_filters(q)) {
        aq_list(q);
    }
}

/* GET /api/v1/admin/audit-events */
static void
aq_admin_events(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    aq_ctx_t *q = aq_ctx_new(svc, req, sess, AQ_VIEW_ADMIN);

    if (q != NULL && aq_kind_ok(q, "operator", "operators only") && aq_filters(q)) {
        aq_list(q);
    }
}

/* ---- the patient's access log ------------------------------------------------ */

/* Columns: seq, event_id, occurred_at us, action, actor id, kind, org, role, record_types. */
static json_object *
aq_access_json(PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object *actor = json_object_new_object();
    json_object *types = NULL;

    json_object_object_add(o, "event_id", aq_col(res, i, 1));
    json_object_object_add(o, "at", aq_time_json(PQgetvalue(res, i, 2)));
    json_object_object_add(o, "action", aq_col(res, i, 3));
    json_object_object_add(actor, "account_id", aq_col(res, i, 4));
    json_object_object_add(actor, "name", NULL);
    json_object_object_add(actor, "kind", aq_col(res, i, 5));
    json_object_object_add(actor, "org_id", aq_col(res, i, 6));
    json_object_object_add(actor, "org_name", NULL);
    json_object_object_add(actor, "role", aq_col(res, i, 7));
    json_object_object_add(o, "actor", actor);
    if (!PQgetisnull(res, i, 8)) {
        types = json_tokener_parse(PQgetvalue(res, i, 8));
    }
    if (types == NULL || !json_object_is_type(types, json_type_array)) {
        json_object_put(types);
        types = json_object_new_array();
    }
    json_object_object_add(o, "record_types", types);
    return o;
}

/* Fills actor.name from auth's lookup answer (org names: auth offers none yet). */
static void
aq_names_done(int rc, const hcli_resp_t *resp, void *ud)
{
    aq_ctx_t *q = ud;
    json_object *body = NULL, *found;

    if (rc == PHR_OK && resp->status == 200) {
        body = json_tokener_parse(resp->body);
    } else {
        log_warn("audit: account lookup failed (%s, %d): access log without names", phr_err_str(rc),
                 rc == PHR_OK ? resp->status : 0);
    }
    if (body != NULL && json_object_object_get_ex(body, "items", &found)) {
        for (size_t i = 0; i < json_object_array_length(q->items); i++) {
            json_object *it = json_object_array_get_idx(q->items, i), *actor;
            json_object_object_get_ex(it, "actor", &actor);
            const char *id = jx_get_str(actor, "account_id", "");
            for (size_t k = 0; k < json_object_array_length(found); k++) {
                json_object *acc = json_object_array_get_idx(found, k);
                if (strcmp(jx_get_str(acc, "id", "-"), id) == 0) {
                    const char *name = jx_get_str(acc, "name", NULL);
                    json_object_object_add(actor, "name",
                                           name != NULL ? json_object_new_string(name) : NULL);
                }
            }
        }
    }
    json_object_put(body);
    aq_audit_read(q, aq_audited);
}

static void
aq_access_done(int rc, PGresult *res, void *ud)
{
    aq_ctx_t *q = ud;

    if (rc != PHR_OK) {
        svc_respond_error(q->req, rc, "the access log could not be read; retry later");
        return;
    }
    aq_page_out(q, res, 0, aq_access_json);
    if (q->count == 0) {
        aq_audit_read(q, aq_audited);
        return;
    }
    /* the distinct actors of the page, for their names */
    json_object *ids = json_object_new_array(), *req = json_object_new_object();
    for (size_t i = 0; i < q->count; i++) {
        const char *id = PQgetisnull(res, (int)i, 4) ? NULL : PQgetvalue(res, (int)i, 4);
        int seen = id == NULL;
        for (size_t k = 0; !seen && k < json_object_array_length(ids); k++) {
            seen = strcmp(json_object_get_string(json_object_array_get_idx(ids, k)), id) == 0;
        }
        if (!seen) {
            json_object_array_add(ids, json_object_new_string(id));
        }
    }
    json_object_object_add(req, "ids", ids);
    size_t len;
    const char *body = jx_to_string(req, &len);
    hcli_t *auth = svc_peer(q->svc, CFG_SVC_AUTH);
    rc = auth != NULL && body != NULL
             ? hcli_request(auth, "POST", "/internal/v1/accounts/lookup", "application/json", body,
                            len, h2s_req_id(q->req), aq_names_done, q)
             : PHR_ENOMEM;
    json_object_put(req);
    if (rc != PHR_OK) {
        aq_audit_read(q, aq_audited);
    }
}

/* GET /api/v1/me/access-log: staff actions on the caller's data, newest first. */
static void
aq_access_log(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT e.seq, e.event_id, (extract(epoch FROM e.occurred_at) * 1000000)::bigint, "
        "e.action, e.actor_account_id, e.actor_kind, e.actor_org_id, e.actor_role, "
        "(e.details -> 'record_types')::text FROM audit_events e "
        "WHERE e.target_patient_id = $1::uuid AND e.actor_kind IN ('staff', 'operator') "
        "AND ($2::bigint IS NULL OR e.occurred_at >= to_timestamp($2::bigint / 1000.0)) "
        "AND ($3::bigint IS NULL OR e.occurred_at < to_timestamp($3::bigint / 1000.0)) "
        "AND ($4::bigint IS NULL OR e.seq < $4::bigint) "
        "ORDER BY e.seq DESC LIMIT $5::int";
    aq_ctx_t *q = aq_ctx_new(svc, req, sess, AQ_VIEW_ACCESS_LOG);

    if (q == NULL || !aq_kind_ok(q, "patient", "patients only") ||
        !aq_time_param(q, "from", q->from, sizeof(q->from)) ||
        !aq_time_param(q, "to", q->to, sizeof(q->to)) || !aq_page_params(q)) {
        return;
    }
    const char *p[] = {q->sess.account_id, aq_p(q->from), aq_p(q->to), aq_p(q->cursor_seq),
                       q->limit_txt};
    int rc = db_query(svc_db(svc), sql, 5, p, aq_access_done, q);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, "the access log could not be read; retry later");
    }
}

/* ---- export: JSON Lines in seq order, streamed -------------------------------- */

static void aq_export_next(aq_ctx_t *q);

static void
aq_export_end(aq_ctx_t *q)
{
    if (!q->ended) {
        q->ended = 1;
        h2s_stream_end(q->req); /* may free q (cleanup) */
    }
}

/*
 * One line of an export: row |i| of a page whose column 23 is the kind ('e' an
 * event of AUDIT_EVENT_COLS, 'c' a checkpoint: seq, key_id, signed_at us, ...,
 * base64 signature, hash; else a foreign link: seq, hash).
 */
json_object *
audit_export_row(PGresult *res, int i)
{
    json_object *o;
    const char *kind = PQgetvalue(res, i, 23);

    if (kind[0] == 'c') {
        o = json_object_new_object();
        json_object_object_add(o, "record", json_object_new_string("checkpoint"));
        json_object_object_add(o, "seq",
                               json_object_new_int64(strtoll(PQgetvalue(res, i, 0), 0, 10)));
        json_object_object_add(o, "hash", aq_col(res, i, 22));
        json_object_object_add(o, "signed_at", aq_time_json(PQgetvalue(res, i, 2)));
        json_object_object_add(o, "key_id", aq_col(res, i, 1));
        json_object_object_add(o, "signature", aq_col(res, i, 21));
    } else if (kind[0] == 'e') {
        json_object *ev = aq_event_json(res, i);
        o = json_object_new_object();
        json_object_object_add(o, "record", json_object_new_string("event"));
        json_object_object_foreach(ev, k, v)
        {
            json_object_object_add(o, k, json_object_get(v));
        }
        json_object_put(ev);
        /* the details exactly as hashed (PostgreSQL's jsonb text) */
        json_object_object_add(o, "details_text", aq_col(res, i, 20));
    } else {
        o = json_object_new_object();
        json_object_object_add(o, "record", json_object_new_string("foreign"));
        json_object_object_add(o, "seq",
                               json_object_new_int64(strtoll(PQgetvalue(res, i, 0), 0, 10)));
        json_object_object_add(o, "hash", aq_col(res, i, 22));
    }
    return o;
}

/* Writes |o| as one line (consumes it). PHR_OK or the write error. */
static int
aq_export_line(aq_ctx_t *q, json_object *o)
{
    size_t len;
    const char *txt = jx_to_string(o, &len);
    int rc = txt != NULL ? h2s_stream_write(q->req, txt, len) : PHR_ENOMEM;
    if (rc == PHR_OK) {
        rc = h2s_stream_write(q->req, "\n", 1);
    }
    json_object_put(o);
    return rc;
}

/*
 * One page: events (columns AUDIT_EVENT_COLS then "own") and checkpoints of the
 * same seq span (kind 'c': seq, hash, signed_at us, key_id, signature),
 * merged by the statement in seq order (an event before its checkpoint).
 */
static void
aq_export_page(int rc, PGresult *res, void *ud)
{
    aq_ctx_t *q = ud;

    q->in_query = 0;
    if (rc != PHR_OK) {
        log_warn("audit: export query failed: %s", phr_err_str(rc));
        aq_export_end(q); /* a truncated export fails the offline verification */
        return;
    }
    int n = PQntuples(res), wrc = PHR_OK;
    for (int i = 0; i < n && wrc == PHR_OK; i++) {
        wrc = aq_export_line(q, audit_export_row(res, i));
    }
    if (wrc != PHR_OK) {
        aq_export_end(q);
        return;
    }
    /* the events of the page (checkpoints share their seq) */
    int events = 0;
    for (int i = 0; i < n; i++) {
        if (PQgetvalue(res, i, 23)[0] != 'c') {
            events++;
            snprintf(q->next, sizeof(q->next), "%s", PQgetvalue(res, i, 0));
        }
    }
    if (events == 0 || strtoll(q->next, NULL, 10) >= strtoll(q->hi, NULL, 10)) {
        aq_export_end(q);
        return;
    }
    if (h2s_stream_buffered(q->req) >= AQ_EXPORT_HIGH_WATER) {
        q->waiting = 1; /* continue in aq_export_drain */
        return;
    }
    aq_export_next(q);
}

static void
aq_export_next(aq_ctx_t *q)
{
    static const char sql[] =
        "SELECT * FROM ("
        "(SELECT " AUDIT_EVENT_COLS ", CASE WHEN (e.target_org_id = $3::uuid OR "
        "e.actor_org_id = $3::uuid) AND ($4::bigint IS NULL OR "
        "e.recorded_at >= to_timestamp($4::bigint / 1000.0)) AND ($5::bigint IS NULL OR "
        "e.recorded_at < to_timestamp($5::bigint / 1000.0)) THEN 'e' ELSE 'f' END AS k "
        "FROM audit_events e WHERE e.seq > $1::bigint AND e.seq <= $2::bigint "
        "ORDER BY e.seq LIMIT " AQ_EXPORT_PAGE ") "
        "UNION ALL "
        "(SELECT c.seq, c.key_id, (extract(epoch FROM c.signed_at) * 1000000)::bigint, NULL, "
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, NULL, NULL, translate(encode(c.signature, 'base64'), E'\\n', ''), "
        "encode(c.hash, 'hex'), 'c' FROM checkpoints c WHERE c.seq > $1::bigint "
        "AND c.seq <= LEAST($2::bigint, (SELECT max(s.seq) FROM (SELECT e2.seq FROM "
        "audit_events e2 WHERE e2.seq > $1::bigint AND e2.seq <= $2::bigint "
        "ORDER BY e2.seq LIMIT " AQ_EXPORT_PAGE ") s))) "
        ") u ORDER BY 1, 24 DESC";
    const char *p[] = {q->next, q->hi, q->org_id, aq_p(q->from), aq_p(q->to)};

    q->waiting = 0;
    q->in_query = 1;
    int rc = db_query(svc_db(q->svc), sql, 5, p, aq_export_page, q);
    if (rc != PHR_OK) {
        q->in_query = 0;
        aq_export_end(q);
    }
}

/* The client took the buffered lines (or went away). */
static void
aq_export_drain(h2s_req_t *req, void *ud)
{
    aq_ctx_t *q = ud;

    if (q->in_query || q->ended) {
        return; /* the page in flight continues */
    }
    if (h2s_req_closed(req)) {
        aq_export_end(q);
        return;
    }
    if (q->waiting) {
        aq_export_next(q);
    }
}

static void
aq_export_audited(int rc, void *ud)
{
    aq_ctx_t *q = ud;

    if (rc != PHR_OK) {
        log_warn("audit: could not record an export of the audit log: %s", phr_err_str(rc));
        svc_respond_error(q->req, PHR_EUNAVAIL, "the audit log is unavailable; retry later");
        return;
    }
    h2s_req_add_header(q->req, "cache-control", "no-store");
    rc = h2s_stream_start(q->req, 200, "application/jsonl", aq_export_drain, q);
    if (rc != PHR_OK) {
        svc_respond_error(q->req, rc, NULL);
        return;
    }
    if (q->lo[0] == '\0') {
        aq_export_end(q); /* nothing in the range: an empty body */
        return;
    }
    snprintf(q->next, sizeof(q->next), "%lld", strtoll(q->lo, NULL, 10) - 1);
    aq_export_next(q);
}

/* The seq span: the org's first and last event in the range, extended to the next checkpoint. */
static void
aq_export_span(int rc, PGresult *res, void *ud)
{
    aq_ctx_t *q = ud;

    if (rc != PHR_OK) {
        svc_respond_error(q->req, rc, "the audit log could not be read; retry later");
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        snprintf(q->lo, sizeof(q->lo), "%s", PQgetvalue(res, 0, 0));
        snprintf(q->hi, sizeof(q->hi), "%s", PQgetvalue(res, 0, 1));
    }
    aq_audit_read(q, aq_export_audited);
}

/* GET /api/v1/orgs/{org_id}/audit-events/export?from=&to= (recorded_at range) */
static void
aq_export(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "WITH r AS (SELECT min(e.seq) AS lo, max(e.seq) AS hi FROM audit_events e "
        "WHERE (e.target_org_id = $1::uuid OR e.actor_org_id = $1::uuid) "
        "AND ($2::bigint IS NULL OR e.recorded_at >= to_timestamp($2::bigint / 1000.0)) "
        "AND ($3::bigint IS NULL OR e.recorded_at < to_timestamp($3::bigint / 1000.0))) "
        "SELECT r.lo, coalesce((SELECT min(c.seq) FROM checkpoints c WHERE c.seq >= r.hi), "
        "r.hi) FROM r";
    aq_ctx_t *q = aq_ctx_new(svc, req, sess, AQ_VIEW_EXPORT);

    if (q == NULL || !aq_org_admin_ok(q) || !aq_time_param(q, "from", q->from, sizeof(q->from)) ||
        !aq_time_param(q, "to", q->to, sizeof(q->to))) {
        return;
    }
    const char *p[] = {q->org_id, aq_p(q->from), aq_p(q->to)};
    int rc = db_query(svc_db(svc), sql, 3, p, aq_export_span, q);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, "the audit log could not be read; retry later");
    }
}

static const svc_route_t table[] = {
    {"GET", "/api/v1/orgs/{org_id}/audit-events", aq_org_events, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/orgs/{org_id}/audit-events/export", aq_export, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/admin/audit-events", aq_admin_events, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/me/access-log", aq_access_log, SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t audit_query_routes = SVC_ROUTES(table);
