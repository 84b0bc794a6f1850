/*
 * review.c - the monthly access review: every staff and operator account
 * (from auth's GET /internal/v1/accounts) with its role changes of the month
 * (auth.staff.role_change events of the log) and flags, the reviewers'
 * attestations, and the snapshot of the month that just ended, taken at
 * 00:00 JST on the 1st (a timer; a replica that finds the previous month
 * without a snapshot takes it then). The current month is answered live, a
 * past month from its snapshot.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "aev.h"
#include "audit.h"
#include "err.h"
#include "log.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

#define RV_PAGE_DEFAULT 50
#define RV_PAGE_MAX 200
#define RV_AUTH_PAGE 200
#define RV_MAX_ACCOUNTS 100000
#define RV_DORMANT_MS (90LL * 24 * 3600 * 1000)
#define RV_REAUTH_MS (15LL * 60 * 1000)
#define RV_JST_MS (9LL * 3600 * 1000)
#define RV_TIMER_MAX_S 3600
#define RV_CURSOR_MAC 16

typedef struct rv_ctx rv_ctx_t;
typedef void (*rv_step_fn)(rv_ctx_t *r, int rc);

struct rv_ctx {
    svc_t *svc;
    h2s_req_t *req; /* NULL for the snapshot timer */
    sess_t sess;
    char month[8];
    int64_t m0_ms, m1_ms; /* the month's bounds (JST) */
    int64_t ref_ms;       /* "now" of the flags */
    int live;             /* the current month: lines built now */
    char org_id[37];      /* scope; "" = every organization */
    int kind_i;           /* auth paging: index in rv_kinds */
    char auth_cursor[600];
    json_object *accts; /* AccountReview items from auth */
    json_object *lines; /* AccessReviewLine items (without attestation), by account id */
    json_object *body;  /* attestation request */
    json_object *out;
    char snapshot_at[48]; /* "" live */
    int limit;
    char after[37];        /* cursor: last account id of the previous page */
    rv_step_fn next;       /* the step after an asynchronous call */
    rv_step_fn done;       /* after rv_collect */
    rv_step_fn after_snap; /* after rv_snapshot_take */
    char saved_org[37];    /* the request's scope while a snapshot (every org) is built */
    rv_step_fn after_load; /* after rv_load */
    int snap_tried;
    char event_id[AEV_ID_LEN];
    int64_t now_us;
};

/* query.c: appends one event through the service's own ingest path. */

static const char *const rv_kinds_all[] = {"staff", "operator", NULL};
static const char *const rv_kinds_org[] = {"staff", NULL};

static void
rv_ctx_free(void *arg)
{
    rv_ctx_t *r = arg;

    if (r == NULL) {
        return;
    }
    json_object_put(r->accts);
    json_object_put(r->lines);
    json_object_put(r->body);
    json_object_put(r->out);
    free(r);
}

static void
rv_ctx_init(rv_ctx_t *r, svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    r->svc = svc;
    r->req = req;
    if (sess != NULL) {
        r->sess = *sess;
    }
    r->limit = RV_PAGE_DEFAULT;
    r->ref_ms = tu_now_ms();
}

/* The context of a request, freed with it. */
static rv_ctx_t *
rv_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rv_ctx_t *r = calloc(1, sizeof(*r));

    if (r == NULL || h2s_req_add_cleanup(req, rv_ctx_free, r) != PHR_OK) {
        free(r);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    rv_ctx_init(r, svc, req, sess);
    return r;
}

static int
rv_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
    return 0;
}

static int
rv_id_ok(const char *id)
{
    return id != NULL && strlen(id) == 36 && uuid_valid(id);
}

/* Query parameter |name| into |out| (no decoding needed: ids, months, cursors). */
static int
rv_param(h2s_req_t *req, const char *name, char *out, size_t cap)
{
    const char *q = h2s_req_query(req);
    size_t nlen = strlen(name);

    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        if (len >= nlen && strncmp(q, name, nlen) == 0 && (len == nlen || q[nlen] == '=')) {
            size_t vlen = len > nlen ? len - nlen - 1 : 0;
            if (vlen >= cap) {
                return -1;
            }
            memcpy(out, q + len - vlen, vlen);
            out[vlen] = '\0';
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

/* ---- times ------------------------------------------------------------------------- */

static void
rv_jst(int64_t ms, char *out, size_t cap)
{
    char buf[TU_JST_LEN];
    tu_format_jst(ms, buf, sizeof(buf));
    snprintf(out, cap, "%s", buf);
}

static json_object *
rv_time_json(int64_t ms)
{
    char buf[TU_JST_LEN];
    tu_format_jst(ms, buf, sizeof(buf));
    return json_object_new_string(buf);
}

/* Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t
rv_days(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Start of month |y|-|m| 00:00 JST, ms since the epoch. */
static int64_t
rv_month_start(int y, int m)
{
    return rv_days(y, m, 1) * 86400000LL - RV_JST_MS;
}

/* The JST month of |ms| as y, m. */
static void
rv_month_of(int64_t ms, int *y, int *m)
{
    time_t t = (time_t)((ms + RV_JST_MS) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
}

/* Parses "YYYY-MM" into |r| (bounds too). 1 when valid. */
static int
rv_month_set(rv_ctx_t *r, const char *s)
{
    if (s == NULL || strlen(s) != 7 || s[4] != '-' || strspn(s, "0123456789") != 4 ||
        strspn(s + 5, "0123456789") != 2) {
        return 0;
    }
    int y = (int)strtol(s, NULL, 10);
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    if (y < 2000 || y > 9999 || m < 1 || m > 12) {
        return 0;
    }
    memcpy(r->month, s, 8);
    r->m0_ms = rv_month_start(y, m);
    r->m1_ms = m == 12 ? rv_month_start(y + 1, 1) : rv_month_start(y, m + 1);
    return 1;
}

static void
rv_month_text(int y, int m, char *out, size_t cap)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%04d-%02d", y % 10000, m % 100);
    snprintf(out, cap, "%.7s", buf);
}

/* ---- cursors: base64url(account id (36) || HMAC(path|month|id)[0..16)) ----------------- */

static unsigned char rv_mac_key[32];
static int rv_mac_ready;

static int
rv_mac(rv_ctx_t *r, const char *id, unsigned char *mac)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char msg[700];

    if (!rv_mac_ready) {
        char secret[256];
        static const char label[] = "phr-audit-review-cursor-v1";
        if (cfg_read_secret(svc_cfg(r->svc), "svc_audit.key", secret, sizeof(secret)) != PHR_OK) {
            return PHR_EGENERIC;
        }
        unsigned char *k = HMAC(EVP_sha256(), secret, (int)strlen(secret),
                                (const unsigned char *)label, sizeof(label) - 1, md, &mdlen);
        explicit_bzero(secret, sizeof(secret));
        if (k == NULL) {
            return PHR_EGENERIC;
        }
        memcpy(rv_mac_key, md, 32);
        rv_mac_ready = 1;
    }
    int n = snprintf(msg, sizeof(msg), "%s|%s|%s", h2s_req_path(r->req), r->month, id);
    if (n < 0 || (size_t)n >= sizeof(msg) ||
        HMAC(EVP_sha256(), rv_mac_key, 32, (const unsigned char *)msg, (size_t)n, md, &mdlen) ==
            NULL) {
        return PHR_EGENERIC;
    }
    memcpy(mac, md, RV_CURSOR_MAC);
    return PHR_OK;
}

static void
rv_cursor_make(rv_ctx_t *r, const char *id, char *out, size_t cap)
{
    unsigned char raw[36 + RV_CURSOR_MAC], buf[80];
    size_t j = 0;

    out[0] = '\0';
    if (strlen(id) != 36 || cap < 72 || rv_mac(r, id, raw + 36) != PHR_OK) {
        return;
    }
    memcpy(raw, id, 36);
    int len = EVP_EncodeBlock(buf, raw, (int)sizeof(raw));
    for (int i = 0; i < len && buf[i] != '='; i++) {
        out[j++] = (char)(buf[i] == '+' ? '-' : buf[i] == '/' ? '_' : buf[i]);
    }
    out[j] = '\0';
}

static int
rv_cursor_read(rv_ctx_t *r, const char *cur)
{
    unsigned char buf[80], raw[80], mac[RV_CURSOR_MAC];
    size_t n = strlen(cur);

    if (n != 70) { /* 52 bytes: 69.3 characters, 70 without padding */
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
    buf[70] = '=';
    buf[71] = '=';
    if (EVP_DecodeBlock(raw, buf, 72) != 54) {
        return 0;
    }
    char id[37];
    memcpy(id, raw, 36);
    id[36] = '\0';
    if (!rv_id_ok(id) || rv_mac(r, id, mac) != PHR_OK ||
        CRYPTO_memcmp(mac, raw + 36, RV_CURSOR_MAC) != 0) {
        return 0;
    }
    memcpy(r->after, id, 37);
    return 1;
}

/* ---- access --------------------------------------------------------------------------- */

static int
rv_recent(const sess_t *s)
{
    int64_t at = s->authenticated_ms ? s->authenticated_ms : s->created_ms;
    return tu_now_ms() - at <= RV_REAUTH_MS;
}

static int
rv_reauth_ok(rv_ctx_t *r)
{
    if (!rv_recent(&r->sess)) {
        h2s_respond_problem(r->req, 401, "reauth_required",
                            "log in again: this action needs a password check within 15 minutes",
                            NULL);
        return 0;
    }
    return 1;
}

/* Org admin routes: another org's id is 404, a non-admin 403. */
static int
rv_org_admin_ok(rv_ctx_t *r)
{
    const char *id = h2s_req_param(r->req, "org_id");

    if (strcmp(r->sess.kind, "staff") != 0) {
        svc_respond_error(r->req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    if (!rv_id_ok(id) || strcmp(id, r->sess.org_id) != 0) {
        svc_respond_error(r->req, PHR_ENOTFOUND, "no such organization");
        return 0;
    }
    if (strcmp(r->sess.role, "admin") != 0) {
        svc_respond_error(r->req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    memcpy(r->org_id, id, 37);
    return 1;
}

static int
rv_operator_ok(rv_ctx_t *r)
{
    if (strcmp(r->sess.kind, "operator") != 0) {
        svc_respond_error(r->req, PHR_EDENIED, "operators only");
        return 0;
    }
    return 1;
}

/*
 * The month of the request (|m|: the path's or the query's; NULL or "" is the
 * current month): a future month or a bad one is 400 naming "month".
 */
static int
rv_month_ok(rv_ctx_t *r, const char *m)
{
    int y, mo;
    char cur[8];

    rv_month_of(r->ref_ms, &y, &mo);
    rv_month_text(y, mo, cur, sizeof(cur));
    if (m == NULL || m[0] == '\0') {
        m = cur;
    }
    if (!rv_month_set(r, m)) {
        return rv_field_error(r->req, "month", "a month YYYY-MM");
    }
    if (strcmp(r->month, cur) > 0) {
        return rv_field_error(r->req, "month", "a month that has begun");
    }
    r->live = strcmp(r->month, cur) == 0;
    return 1;
}

/* ---- building the lines: auth's accounts, then the month's role changes --------------- */

static void rv_fetch_page(rv_ctx_t *r);

static const char *const *
rv_kinds(const rv_ctx_t *r)
{
    return r->org_id[0] != '\0' ? rv_kinds_org : rv_kinds_all;
}

static void
rv_accounts_page(int rc, const hcli_resp_t *resp, void *ud)
{
    rv_ctx_t *r = ud;
    json_object *body = NULL, *items, *next;

    if (rc == PHR_OK && resp->status != 200) {
        log_warn("audit: auth GET /internal/v1/accounts answered %d", resp->status);
        rc = PHR_EUNAVAIL;
    }
    if (rc == PHR_OK) {
        body = json_tokener_parse(resp->body);
    }
    if (body == NULL || !json_object_object_get_ex(body, "items", &items) ||
        !json_object_is_type(items, json_type_array)) {
        json_object_put(body);
        r->next(r, rc != PHR_OK ? rc : PHR_EPROTO);
        return;
    }
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object_array_add(r->accts, json_object_get(json_object_array_get_idx(items, i)));
    }
    const char *nc = json_object_object_get_ex(body, "next_cursor", &next) &&
                             json_object_is_type(next, json_type_string)
                         ? json_object_get_string(next)
                         : NULL;
    if (nc != NULL && strlen(nc) < sizeof(r->auth_cursor) &&
        strspn(nc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
            strlen(nc)) {
        snprintf(r->auth_cursor, sizeof(r->auth_cursor), "%s", nc);
    } else {
        r->auth_cursor[0] = '\0';
        r->kind_i++;
    }
    json_object_put(body);
    if (json_object_array_length(r->accts) > RV_MAX_ACCOUNTS) {
        r->next(r, PHR_ETOOBIG);
        return;
    }
    if (rv_kinds(r)[r->kind_i] == NULL) {
        r->next(r, PHR_OK);
        return;
    }
    rv_fetch_page(r);
}

static void
rv_fetch_page(rv_ctx_t *r)
{
    char path[900];
    hcli_t *auth = svc_peer(r->svc, CFG_SVC_AUTH);

    snprintf(path, sizeof(path), "/internal/v1/accounts?kind=%s&limit=%d%s%s%s%s",
             rv_kinds(r)[r->kind_i], RV_AUTH_PAGE, r->org_id[0] ? "&org_id=" : "", r->org_id,
             r->auth_cursor[0] ? "&cursor=" : "", r->auth_cursor);
    int rc = auth != NULL
                 ? hcli_request(auth, "GET", path, NULL, NULL, 0,
                                r->req != NULL ? h2s_req_id(r->req) : NULL, rv_accounts_page, r)
                 : PHR_EUNAVAIL;
    if (rc != PHR_OK) {
        r->next(r, rc);
    }
}

/* Fetches every account of the scope into r->accts, then |next|. */
static void
rv_fetch_accounts(rv_ctx_t *r, rv_step_fn next)
{
    r->next = next;
    r->kind_i = 0;
    r->auth_cursor[0] = '\0';
    json_object_put(r->accts);
    r->accts = json_object_new_array();
    rv_fetch_page(r);
}

static int
rv_by_account(const void *a, const void *b)
{
    json_object *const *x = a, *const *y = b;
    return strcmp(jx_get_str(*x, "account_id", ""), jx_get_str(*y, "account_id", ""));
}

static int64_t
rv_ms_of(json_object *o, const char *key)
{
    int64_t ms = 0;
    const char *s = jx_get_str(o, key, NULL);
    return s != NULL && tu_parse_rfc3339(s, &ms) == PHR_OK ? ms : -1;
}

static json_object *
rv_flag_list(json_object *acct, json_object *changes, int mfa, const rv_ctx_t *r)
{
    json_object *flags = json_object_new_array();
    const char *kind = jx_get_str(acct, "kind", "");
    const char *role = jx_get_str(acct, "role", "");
    int64_t created = rv_ms_of(acct, "created_at"), last = rv_ms_of(acct, "last_login_at");
    int promoted = 0;

    for (size_t i = 0; i < json_object_array_length(changes); i++) {
        promoted |=
            strcmp(jx_get_str(json_object_array_get_idx(changes, i), "to", ""), "admin") == 0;
    }
    if (!mfa && (strcmp(role, "admin") == 0 || strcmp(kind, "operator") == 0)) {
        json_object_array_add(flags, json_object_new_string("admin_without_mfa"));
    }
    if ((last >= 0 ? last : created) < r->ref_ms - RV_DORMANT_MS) {
        json_object_array_add(flags, json_object_new_string("dormant"));
    }
    if (created >= r->m0_ms && created < r->m1_ms) {
        json_object_array_add(flags, json_object_new_string("created_this_month"));
    }
    if (promoted) {
        json_object_array_add(flags, json_object_new_string("promoted_this_month"));
    }
    json_object *locked = NULL;
    if (json_object_object_get_ex(acct, "locked", &locked) && json_object_get_boolean(locked)) {
        json_object_array_add(flags, json_object_new_string("locked"));
    }
    return flags;
}

/*
 * Role changes of the month: seq order, columns target_id, occurred_at ms,
 * reason (the new role), actor_account_id. Builds r->lines from r->accts.
 */
static void
rv_changes_done(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK) {
        r->next(r, rc);
        return;
    }
    json_object *by_acct = json_object_new_object();
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        const char *to = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
        json_object *list, *c = json_object_new_object();
        if (!json_object_object_get_ex(by_acct, id, &list)) {
            list = json_object_new_array();
            json_object_object_add(by_acct, id, list);
        }
        /* from: as auth recorded it; events older than that field: the previous change's role,
           else the other of the two staff roles */
        size_t n = json_object_array_length(list);
        const char *from = !PQgetisnull(res, i, 4) ? PQgetvalue(res, i, 4)
                           : n > 0 ? jx_get_str(json_object_array_get_idx(list, n - 1), "to", NULL)
                           : to == NULL               ? NULL
                           : strcmp(to, "admin") == 0 ? "staff"
                                                      : "admin";
        json_object_object_add(c, "at", rv_time_json(strtoll(PQgetvalue(res, i, 1), NULL, 10)));
        json_object_object_add(c, "from", from != NULL ? json_object_new_string(from) : NULL);
        json_object_object_add(c, "to", to != NULL ? json_object_new_string(to) : NULL);
        json_object_object_add(
            c, "by", PQgetisnull(res, i, 3) ? NULL : json_object_new_string(PQgetvalue(res, i, 3)));
        json_object_array_add(list, c);
    }
    json_object_put(r->lines);
    r->lines = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(r->accts); i++) {
        json_object *a = json_object_array_get_idx(r->accts, i), *l = json_object_new_object();
        json_object *changes, *mfa, *v;
        const char *id = jx_get_str(a, "id", "");
        const char *kind = jx_get_str(a, "kind", "");
        int has_mfa = json_object_object_get_ex(a, "mfa_methods", &mfa) &&
                      json_object_is_type(mfa, json_type_array) &&
                      json_object_array_length(mfa) > 0;
        if (json_object_object_get_ex(by_acct, id, &changes)) {
            json_object_get(changes);
        } else {
            changes = json_object_new_array();
        }
        json_object_object_add(l, "account_id", json_object_new_string(id));
        json_object_object_add(l, "email", json_object_new_string(jx_get_str(a, "email", "")));
        json_object_object_add(l, "name", json_object_new_string(jx_get_str(a, "name", "")));
        json_object_object_add(
            l, "org_id", json_object_object_get_ex(a, "org_id", &v) ? json_object_get(v) : NULL);
        json_object_object_add(
            l, "role",
            strcmp(kind, "operator") == 0
                ? json_object_new_string("operator")
                : (json_object_object_get_ex(a, "role", &v) ? json_object_get(v) : NULL));
        json_object_object_add(l, "created_at",
                               json_object_object_get_ex(a, "created_at", &v) ? json_object_get(v)
                                                                              : NULL);
        json_object_object_add(
            l, "last_login_at",
            json_object_object_get_ex(a, "last_login_at", &v) ? json_object_get(v) : NULL);
        json_object_object_add(l, "mfa_enabled", json_object_new_boolean(has_mfa));
        json_object_object_add(l, "role_changes", changes);
        json_object_object_add(l, "flags", rv_flag_list(a, changes, has_mfa, r));
        json_object_array_add(r->lines, l);
    }
    json_object_put(by_acct);
    json_object_array_sort(r->lines, rv_by_account);
    r->next(r, PHR_OK);
}

/* Role changes of the month, then the lines; then r->done. */
static void
rv_accounts_fetched(rv_ctx_t *r, int rc)
{
    static const char sql[] =
        "SELECT e.target_id, (extract(epoch FROM e.occurred_at) * 1000)::bigint, "
        "coalesce(e.details->>'to', e.reason), e.actor_account_id, e.details->>'from' "
        "FROM audit_events e WHERE e.action = 'auth.staff.role_change' "
        "AND e.result = 'success' AND e.occurred_at >= to_timestamp($1::bigint / 1000.0) "
        "AND e.occurred_at < to_timestamp($2::bigint / 1000.0) "
        "AND ($3::uuid IS NULL OR e.target_org_id = $3::uuid) ORDER BY e.seq";
    char m0[24], m1[24];

    if (rc != PHR_OK) {
        r->done(r, rc);
        return;
    }
    r->next = r->done;
    snprintf(m0, sizeof(m0), "%" PRId64, r->m0_ms);
    snprintf(m1, sizeof(m1), "%" PRId64, r->m1_ms);
    const char *p[] = {m0, m1, r->org_id[0] ? r->org_id : NULL};
    rc = db_query(svc_db(r->svc), sql, 3, p, rv_changes_done, r);
    if (rc != PHR_OK) {
        r->done(r, rc);
    }
}

/* Builds r->lines of the scope and month as of now, then |done|. */
static void
rv_collect(rv_ctx_t *r, rv_step_fn done)
{
    r->done = done;
    rv_fetch_accounts(r, rv_accounts_fetched);
}

/* ---- the audit event of a request ------------------------------------------------------ */

static void
rv_audit(rv_ctx_t *r, const char *action, json_object *details, void (*cb)(int rc, void *ud))
{
    aev_t ev;

    aev_init(&ev, "audit", action, r->req, &r->sess);
    ev.target_type = "access_review";
    ev.target_id = r->month;
    ev.target_org_id = r->org_id[0] != '\0' ? r->org_id : NULL;
    ev.details = details;
    char *json = aev_json(&ev, r->event_id);
    int rc = json != NULL ? audit_append(r->svc, json, cb, r) : PHR_ENOMEM;
    free(json);
    if (rc != PHR_OK) {
        cb(rc, r);
    }
}

/* ---- the snapshot ------------------------------------------------------------------------ */

static void
rv_snapshot_end(rv_ctx_t *r, int rc)
{
    memcpy(r->org_id, r->saved_org, sizeof(r->org_id));
    r->after_snap(r, rc);
}

static void
rv_snapshot_stored(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK) {
        log_error("audit: access review snapshot of %s not stored: %s", r->month, phr_err_str(rc));
    }
    rv_snapshot_end(r, rc);
}

/* Stores r->lines as the snapshot of r->month (a replica that lost the race stores nothing). */
static void
rv_snapshot_store(rv_ctx_t *r, int rc)
{
    static const char sql[] =
        "WITH s AS (INSERT INTO access_review_snapshots (month, accounts) VALUES ($1, $2::int) "
        "ON CONFLICT (month) DO NOTHING RETURNING month) "
        "INSERT INTO access_review_lines (month, account_id, org_id, line) "
        "SELECT s.month, (l ->> 'account_id')::uuid, (l ->> 'org_id')::uuid, l "
        "FROM s, jsonb_array_elements($3::jsonb) AS l";
    char count[16];
    size_t len;

    if (rc != PHR_OK) {
        log_error("audit: access review snapshot of %s: %s", r->month, phr_err_str(rc));
        rv_snapshot_end(r, rc);
        return;
    }
    snprintf(count, sizeof(count), "%zu", json_object_array_length(r->lines));
    const char *p[] = {r->month, count, jx_to_string(r->lines, &len)};
    rc = db_query(svc_db(r->svc), sql, 3, p, rv_snapshot_stored, r);
    if (rc != PHR_OK) {
        rv_snapshot_stored(rc, NULL, r);
    }
}

static void
rv_snapshot_exists(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK || PQntuples(res) > 0) {
        rv_snapshot_end(r, rc);
        return;
    }
    log_info("audit: taking the access review snapshot of %s", r->month);
    r->org_id[0] = '\0'; /* every organization */
    rv_collect(r, rv_snapshot_store);
}

/*
 * Takes the snapshot of r->month (every organization, flags as of now) unless
 * one exists; then |done| with PHR_OK (taken or already there) or an error.
 */
static void
rv_snapshot_take(rv_ctx_t *r, rv_step_fn done)
{
    static const char sql[] = "SELECT 1 FROM access_review_snapshots WHERE month = $1";
    const char *p[] = {r->month};

    r->after_snap = done;
    memcpy(r->saved_org, r->org_id, sizeof(r->saved_org));
    int rc = db_query(svc_db(r->svc), sql, 1, p, rv_snapshot_exists, r);
    if (rc != PHR_OK) {
        rv_snapshot_end(r, rc);
    }
}

/* ---- loading a month: live, or from its snapshot ------------------------------------------ */

static void rv_load(rv_ctx_t *r, rv_step_fn done);

static void
rv_load_again(rv_ctx_t *r, int rc)
{
    if (rc != PHR_OK) {
        r->after_load(r, rc);
        return;
    }
    rv_load(r, r->after_load);
}

static void
rv_snap_lines(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK) {
        r->after_load(r, rc);
        return;
    }
    json_object_put(r->lines);
    r->lines = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_object *l = json_tokener_parse(PQgetvalue(res, i, 0));
        if (l != NULL) {
            json_object_array_add(r->lines, l);
        }
    }
    r->after_load(r, PHR_OK);
}

static void
rv_snap_row(int rc, PGresult *res, void *ud)
{
    static const char sql[] = "SELECT line::text FROM access_review_lines WHERE month = $1 "
                              "AND ($2::uuid IS NULL OR org_id = $2::uuid) ORDER BY account_id";
    rv_ctx_t *r = ud;
    int y, m;
    char prev[8];

    if (rc != PHR_OK) {
        r->after_load(r, rc);
        return;
    }
    if (PQntuples(res) == 0) {
        rv_month_of(r->ref_ms, &y, &m);
        rv_month_text(m == 1 ? y - 1 : y, m == 1 ? 12 : m - 1, prev, sizeof(prev));
        if (strcmp(prev, r->month) == 0 && !r->snap_tried) {
            r->snap_tried = 1; /* the timer has not run yet: take it now */
            rv_snapshot_take(r, rv_load_again);
            return;
        }
        r->after_load(r, PHR_ENOTFOUND);
        return;
    }
    rv_jst(strtoll(PQgetvalue(res, 0, 0), NULL, 10), r->snapshot_at, sizeof(r->snapshot_at));
    const char *p[] = {r->month, r->org_id[0] ? r->org_id : NULL};
    rc = db_query(svc_db(r->svc), sql, 2, p, rv_snap_lines, r);
    if (rc != PHR_OK) {
        r->after_load(r, rc);
    }
}

/* r->lines of r->month in the scope (r->org_id), then |done|. */
static void
rv_load(rv_ctx_t *r, rv_step_fn done)
{
    static const char sql[] = "SELECT (extract(epoch FROM taken_at) * 1000)::bigint "
                              "FROM access_review_snapshots WHERE month = $1";
    const char *p[] = {r->month};

    r->after_load = done;
    r->snapshot_at[0] = '\0';
    if (r->live) {
        rv_collect(r, done);
        return;
    }
    int rc = db_query(svc_db(r->svc), sql, 1, p, rv_snap_row, r);
    if (rc != PHR_OK) {
        done(r, rc);
    }
}

/* Answers a failure of rv_load or of a later step. */
static void
rv_fail(rv_ctx_t *r, int rc)
{
    if (rc == PHR_ENOTFOUND) {
        svc_respond_error(r->req, PHR_ENOTFOUND, "no access review snapshot for that month");
    } else if (rc == PHR_EPROTO || rc == PHR_EUNAVAIL || rc == PHR_ETIMEDOUT) {
        svc_respond_error(r->req, PHR_EUNAVAIL, "a dependency is unavailable; retry later");
    } else {
        svc_respond_error(r->req, rc, NULL);
    }
}

/* ---- GET ...access-review ---------------------------------------------------------------- */

static void
rv_get_audited(int rc, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK) {
        log_warn("audit: could not record an access review read: %s", phr_err_str(rc));
        svc_respond_error(r->req, PHR_EUNAVAIL, "the audit log is unavailable; retry later");
        return;
    }
    json_object *out = r->out;
    r->out = NULL;
    h2s_respond_json(r->req, 200, out);
}

static json_object *
rv_attestation_json(PGresult *res, int i)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "account_id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(a, "decision", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(a, "comment",
                           PQgetisnull(res, i, 2) ? NULL
                                                  : json_object_new_string(PQgetvalue(res, i, 2)));
    json_object_object_add(a, "by", json_object_new_string(PQgetvalue(res, i, 3)));
    json_object_object_add(a, "at", rv_time_json(strtoll(PQgetvalue(res, i, 4), NULL, 10)));
    return a;
}

/* The latest attestations of the month (account_id order), then the page. */
static void
rv_get_attested(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;
    char cursor[96];

    if (rc != PHR_OK) {
        rv_fail(r, rc);
        return;
    }
    json_object *items = json_object_new_array();
    size_t n = json_object_array_length(r->lines), taken = 0;
    int more = 0, k = 0, rows = PQntuples(res);
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *l = json_object_array_get_idx(r->lines, i);
        const char *id = jx_get_str(l, "account_id", "");
        if (r->after[0] != '\0' && strcmp(id, r->after) <= 0) {
            continue;
        }
        if (taken == (size_t)r->limit) {
            more = 1;
            break;
        }
        while (k < rows && strcmp(PQgetvalue(res, k, 0), id) < 0) {
            k++;
        }
        json_object *line = json_object_get(l);
        json_object_object_add(line, "attestation",
                               k < rows && strcmp(PQgetvalue(res, k, 0), id) == 0
                                   ? rv_attestation_json(res, k)
                                   : NULL);
        json_object_array_add(items, line);
        last = id;
        taken++;
    }
    cursor[0] = '\0';
    if (more && last != NULL) {
        rv_cursor_make(r, last, cursor, sizeof(cursor));
    }
    r->out = json_object_new_object();
    json_object_object_add(r->out, "month", json_object_new_string(r->month));
    json_object_object_add(r->out, "snapshot_at",
                           r->snapshot_at[0] != '\0' ? json_object_new_string(r->snapshot_at)
                                                     : NULL);
    json_object_object_add(r->out, "items", items);
    json_object_object_add(r->out, "next_cursor",
                           cursor[0] != '\0' ? json_object_new_string(cursor) : NULL);
    json_object *d = json_object_new_object();
    json_object_object_add(d, "month", json_object_new_string(r->month));
    json_object_object_add(d, "count", json_object_new_int64((int64_t)taken));
    rv_audit(r, "audit.access_review.read", d, rv_get_audited);
}

static void
rv_get_loaded(rv_ctx_t *r, int rc)
{
    static const char sql[] =
        "SELECT DISTINCT ON (account_id) account_id, decision, comment, by_account_id, "
        "(extract(epoch FROM at) * 1000)::bigint FROM access_review_attestations "
        "WHERE month = $1 ORDER BY account_id, id DESC";
    const char *p[] = {r->month};

    if (rc != PHR_OK) {
        rv_fail(r, rc);
        return;
    }
    rc = db_query(svc_db(r->svc), sql, 1, p, rv_get_attested, r);
    if (rc != PHR_OK) {
        rv_fail(r, rc);
    }
}

/* month, limit, cursor. 1 when valid, else answered 400. */
static int
rv_get_params(rv_ctx_t *r)
{
    char v[128];
    int has = rv_param(r->req, "month", v, sizeof(v));

    if (has < 0 || (has > 0 && v[0] == '\0')) {
        return rv_field_error(r->req, "month", "a month YYYY-MM");
    }
    if (!rv_month_ok(r, has > 0 ? v : NULL)) {
        return 0;
    }
    has = rv_param(r->req, "limit", v, sizeof(v));
    if (has != 0) {
        char *end = NULL;
        long n = has > 0 && v[0] != '\0' ? strtol(v, &end, 10) : 0;
        if (end == NULL || *end != '\0' || n < 1 || n > RV_PAGE_MAX) {
            return rv_field_error(r->req, "limit", "an integer from 1 to 200");
        }
        r->limit = (int)n;
    }
    has = rv_param(r->req, "cursor", v, sizeof(v));
    if (has != 0 && (has < 0 || !rv_cursor_read(r, v))) {
        return rv_field_error(r->req, "cursor", "not a cursor of this list");
    }
    return 1;
}

static void rv_timer_ensure(svc_t *svc);

/* GET /api/v1/orgs/{org_id}/access-review?month= */
static void
rv_org_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rv_ctx_t *r = rv_ctx_new(svc, req, sess);

    rv_timer_ensure(svc);
    if (r != NULL && rv_org_admin_ok(r) && rv_get_params(r)) {
        rv_load(r, rv_get_loaded);
    }
}

/* GET /api/v1/admin/access-review?month=&org_id= */
static void
rv_admin_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rv_ctx_t *r = rv_ctx_new(svc, req, sess);
    char v[64];

    rv_timer_ensure(svc);
    if (r == NULL || !rv_operator_ok(r)) {
        return;
    }
    int has = rv_param(req, "org_id", v, sizeof(v));
    if (has != 0 && (has < 0 || !rv_id_ok(v))) {
        rv_field_error(req, "org_id", "an organization id (UUID)");
        return;
    }
    if (has > 0) {
        memcpy(r->org_id, v, 37);
    }
    if (rv_get_params(r)) {
        rv_load(r, rv_get_loaded);
    }
}

/* ---- POST .../access-review/{month}/attestations ----------------------------------------- */

static void
rv_attest_stored(int rc, PGresult *res, void *ud)
{
    rv_ctx_t *r = ud;

    if (rc != PHR_OK) {
        rv_fail(r, rc);
        return;
    }
    json_object *out = json_object_new_object(), *items = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_object_array_add(items, rv_attestation_json(res, i));
    }
    json_object_object_add(out, "items", items);
    h2s_respond_json(r->req, 201, out);
}

static void
rv_attest_audited(int rc, void *ud)
{
    static const char sql[] =
        "INSERT INTO access_review_attestations (month, account_id, reviewer_org_id, decision, "
        "comment, by_account_id, event_id) SELECT $1, (i ->> 'account_id')::uuid, $2::uuid, "
        "i ->> 'decision', i ->> 'comment', $3::uuid, $4::uuid "
        "FROM jsonb_array_elements($5::jsonb -> 'items') WITH ORDINALITY AS x (i, n) ORDER BY n "
        "RETURNING account_id, decision, comment, by_account_id, "
        "(extract(epoch FROM at) * 1000)::bigint";
    rv_ctx_t *r = ud;
    size_t len;

    if (rc != PHR_OK) {
        log_warn("audit: could not record an attestation: %s", phr_err_str(rc));
        svc_respond_error(r->req, PHR_EUNAVAIL, "the audit log is unavailable; retry later");
        return;
    }
    const char *p[] = {r->month, r->org_id[0] ? r->org_id : NULL, r->sess.account_id, r->event_id,
                       jx_to_string(r->body, &len)};
    rc = db_query(svc_db(r->svc), sql, 5, p, rv_attest_stored, r);
    if (rc != PHR_OK) {
        rv_fail(r, rc);
    }
}

/* Every item must be a line of the month's review in the caller's scope. */
static void
rv_attest_loaded(rv_ctx_t *r, int rc)
{
    json_object *items;
    jx_errors_t errs = {.n = 0};
    int64_t keep = 0, change = 0, removes = 0;

    if (rc != PHR_OK) {
        rv_fail(r, rc);
        return;
    }
    json_object_object_get_ex(r->body, "items", &items);
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        const char *id = jx_get_str(it, "account_id", "");
        const char *dec = jx_get_str(it, "decision", "");
        int found = 0;
        for (size_t k = 0; !found && k < json_object_array_length(r->lines); k++) {
            found = strcmp(jx_get_str(json_object_array_get_idx(r->lines, k), "account_id", ""),
                           id) == 0;
        }
        if (!found) {
            char field[48];
            snprintf(field, sizeof(field), "items[%zu].account_id", i);
            jx_error_add(&errs, field, "not an account of this review");
        }
        keep += strcmp(dec, "keep") == 0;
        change += strcmp(dec, "change") == 0;
        removes += strcmp(dec, "remove") == 0;
    }
    if (errs.n > 0) {
        h2s_respond_problem(r->req, 400, "validation_failed", "the request has invalid fields",
                            &errs);
        return;
    }
    json_object *d = json_object_new_object();
    json_object_object_add(d, "month", json_object_new_string(r->month));
    json_object_object_add(d, "count",
                           json_object_new_int64((int64_t)json_object_array_length(items)));
    json_object_object_add(d, "keep", json_object_new_int64(keep));
    json_object_object_add(d, "change", json_object_new_int64(change));
    json_object_object_add(d, "remove", json_object_new_int64(removes));
    rv_audit(r, "audit.access_review.attest", d, rv_attest_audited);
}

/* Reads and checks the body; then loads the month. */
static void
rv_attest(rv_ctx_t *r)
{
    static const char *const decisions[] = {"keep", "change", "remove", NULL};
    static const jx_field_t fields[] = {
        {"items", JX_ARRAY, 1, 0, -1, 1, 500, NULL},
    };
    static const jx_field_t item_fields[] = {
        {"account_id", JX_STRING, 1, 0, -1, 36, 36, NULL},
        {"decision", JX_STRING, 1, 0, -1, 0, 0, decisions},
        {"comment", JX_STRING, 0, 0, -1, 0, 500, NULL},
    };
    jx_errors_t errs = {.n = 0};
    json_object *items;

    if (!rv_month_ok(r, h2s_req_param(r->req, "month")) ||
        svc_read_json(r->req, fields, 1, &r->body) != PHR_OK) {
        return;
    }
    json_object_object_get_ex(r->body, "items", &items);
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "items[%zu]", i);
        if (!json_object_is_type(it, json_type_object)) {
            jx_error_add(&errs, prefix, "must be an object");
        } else if (jx_validate(it, item_fields, 3, 0, prefix, &errs) == PHR_OK &&
                   !rv_id_ok(jx_get_str(it, "account_id", ""))) {
            char field[48];
            snprintf(field, sizeof(field), "%s.account_id", prefix);
            jx_error_add(&errs, field, "an account id (UUID)");
        }
        for (size_t k = 0; k < i && errs.n == 0; k++) {
            if (strcmp(jx_get_str(it, "account_id", ""),
                       jx_get_str(json_object_array_get_idx(items, k), "account_id", "-")) == 0) {
                char field[48];
                snprintf(field, sizeof(field), "%s.account_id", prefix);
                jx_error_add(&errs, field, "the same account twice");
            }
        }
    }
    if (errs.n > 0) {
        h2s_respond_problem(r->req, 400, "validation_failed", "the request has invalid fields",
                            &errs);
        return;
    }
    rv_load(r, rv_attest_loaded);
}

/* POST /api/v1/orgs/{org_id}/access-review/{month}/attestations */
static void
rv_org_attest(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rv_ctx_t *r = rv_ctx_new(svc, req, sess);

    if (r != NULL && rv_org_admin_ok(r) && rv_reauth_ok(r)) {
        rv_attest(r);
    }
}

/* POST /api/v1/admin/access-review/{month}/attestations */
static void
rv_admin_attest(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rv_ctx_t *r = rv_ctx_new(svc, req, sess);

    if (r != NULL && rv_operator_ok(r) && rv_reauth_ok(r)) {
        rv_attest(r);
    }
}

/* ---- the snapshot timer: 00:00 JST on the 1st (checked at least hourly) ---------------- */

static struct event *rv_timer;
static int rv_tick_running;

static void
rv_timer_arm(void)
{
    int y, m;
    int64_t now = tu_now_ms();

    rv_month_of(now, &y, &m);
    int64_t next = m == 12 ? rv_month_start(y + 1, 1) : rv_month_start(y, m + 1);
    int64_t wait_ms = next - now + 1000;
    if (wait_ms > RV_TIMER_MAX_S * 1000LL) {
        wait_ms = RV_TIMER_MAX_S * 1000LL;
    }
    struct timeval tv = {.tv_sec = (time_t)(wait_ms / 1000),
                         .tv_usec = (suseconds_t)(wait_ms % 1000) * 1000};
    evtimer_add(rv_timer, &tv);
}

static void
rv_tick_done(rv_ctx_t *r, int rc)
{
    rv_tick_running = 0;
    rv_ctx_free(r);
}

static void
rv_tick(evutil_socket_t fd, short what, void *arg)
{
    svc_t *svc = arg;
    int y, m;

    rv_timer_arm();
    if (rv_tick_running || !db_pool_ready(svc_db(svc))) {
        return;
    }
    rv_ctx_t *r = calloc(1, sizeof(*r)); /* freed by rv_tick_done */
    if (r == NULL) {
        return;
    }
    rv_ctx_init(r, svc, NULL, NULL);
    rv_month_of(r->ref_ms, &y, &m);
    rv_month_text(m == 1 ? y - 1 : y, m == 1 ? 12 : m - 1, r->month, sizeof(r->month));
    rv_month_set(r, r->month);
    rv_tick_running = 1;
    rv_snapshot_take(r, rv_tick_done);
}

/* Starts the snapshot timer (first check in a few seconds: a missed 1st is caught up). */
int
audit_review_start(svc_t *svc)
{
    if (rv_timer != NULL) {
        return PHR_OK;
    }
    rv_timer = evtimer_new(svc_base(svc), rv_tick, svc);
    if (rv_timer == NULL) {
        return PHR_ENOMEM;
    }
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    evtimer_add(rv_timer, &tv);
    return PHR_OK;
}

void
audit_review_stop(void)
{
    if (rv_timer != NULL) {
        event_free(rv_timer);
        rv_timer = NULL;
    }
}

static void
rv_timer_ensure(svc_t *svc)
{
    if (rv_timer == NULL && audit_review_start(svc) != PHR_OK) {
        log_warn("audit: the access review snapshot timer could not start");
    }
}

static const svc_route_t table[] = {
    {"GET", "/api/v1/orgs/{org_id}/access-review", rv_org_get, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/orgs/{org_id}/access-review/{month}/attestations", rv_org_attest,
     SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/admin/access-review", rv_admin_get, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/admin/access-review/{month}/attestations", rv_admin_attest,
     SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t audit_review_routes = SVC_ROUTES(table);
