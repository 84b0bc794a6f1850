/*
 * org.c - organizations (operator routes) and their staff and seats (org
 * admin routes). Seat checks, last-admin checks and the changes they guard
 * run in one transaction with the organization row locked (FOR UPDATE), so
 * concurrent requests at the last seat or the last admin serialise.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "mfa.h"
#include "auth.h"
#include "err.h"
#include "log.h"
#include "org.h"
#include "query.h"
#include "timeutil.h"
#include "uuid.h"

#define ORG_REAUTH_MS (15LL * 60 * 1000)
#define ORG_INITIAL_PW_MS (72LL * 3600 * 1000)
#define ORG_PAGE_DEFAULT 50
#define ORG_PAGE_MAX 200
#define ORG_CURSOR_MAX 512

/* Columns of an Org answer (alias o). */
#define ORG_COLS                                                                                   \
    "o.id, o.name, o.seat_limit, (SELECT count(*) FROM accounts a WHERE a.org_id = o.id "          \
    "AND a.kind = 'staff' AND a.status = 'active'), o.require_mfa, o.status, "                     \
    "(extract(epoch FROM o.created_at) * 1000)::bigint"

/* Columns of a StaffMember answer. */
#define STAFF_COLS                                                                                 \
    "id, email, name, role, must_change_password, coalesce(locked_until > now(), false), "         \
    "(extract(epoch FROM created_at) * 1000)::bigint, "                                            \
    "(extract(epoch FROM last_login_at) * 1000)::bigint, "                                         \
    "EXISTS (SELECT 1 FROM mfa_totp t "                                                            \
    "WHERE t.account_id = accounts.id AND t.confirmed_at IS NOT NULL), "                           \
    "EXISTS (SELECT 1 FROM mfa_sms s "                                                             \
    "WHERE s.account_id = accounts.id AND s.confirmed_at IS NOT NULL)"

/* The seats taken: every active staff account of the org, admins included. */
#define ORG_SEATS_SQL                                                                              \
    "SELECT count(*) FROM accounts WHERE org_id = $1 AND kind = 'staff' AND status = 'active'"

static const char *const org_locales[] = {"ja", "en", NULL};
static const char *const org_roles[] = {"staff", "admin", NULL};
static const char *const org_statuses[] = {"active", "suspended", NULL};

typedef struct org_ctx org_ctx_t;
typedef void (*org_step_fn)(org_ctx_t *o);

/* One request's state; the auth context (request fields, audit) is |a|. */
struct org_ctx {
    auth_ctx_t *a;
    db_txn_t *txn;
    int rc;             /* first failure inside the transaction, or of the commit */
    int status;         /* a refusal decided inside the transaction: 404, 409; 0 none */
    const char *code;   /* its problem code (the detail of a 404) */
    const char *detail; /* its detail */
    org_step_fn step;   /* runs once the transaction has begun */
    org_step_fn done;   /* runs after COMMIT/ROLLBACK */
    char org_id[37];
    char target_id[37];
    char org_name[512];
    char new_role[16];
    char cur_role[16];
    char seat_limit[16]; /* "" when absent */
    char require_mfa[8]; /* "true", "false" or "" */
    char org_status[16]; /* "" when absent */
    char initial_pw[32];
    char expires[TU_JST_LEN];
    long limit_n, used_n, admins_n;
    int found, changed;
    int page_limit;
    char cur_name[512]; /* staff list cursor: name, id */
    char cur_id[37];
    char (*staff)[37]; /* a suspended org's staff: their sessions end */
    size_t nstaff;
    json_object *row;                                           /* the answer being built */
    json_object *(*page_row)(svc_t *svc, PGresult *res, int i); /* internal pages: a row */
};

static void
org_ctx_free(void *arg)
{
    org_ctx_t *o = arg;

    json_object_put(o->row);
    free(o->staff);
    explicit_bzero(o, sizeof(*o));
    free(o);
}

static org_ctx_t *
org_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *a = auth_ctx_new(svc, req, sess);
    if (a == NULL) {
        return NULL;
    }
    org_ctx_t *o = calloc(1, sizeof(*o));
    if (o == NULL || h2s_req_add_cleanup(req, org_ctx_free, o) != PHR_OK) {
        free(o);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    o->a = a;
    svc_client_ip(req, a->ip, sizeof(a->ip));
    return o;
}

static int
org_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    return h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields",
                               &errs);
}

/* ---- access ------------------------------------------------------------- */

static int
org_recent(const sess_t *s)
{
    int64_t at = s->authenticated_ms ? s->authenticated_ms : s->created_ms;
    return tu_now_ms() - at <= ORG_REAUTH_MS;
}

static int
org_reauth(h2s_req_t *req)
{
    return h2s_respond_problem(req, 401, "reauth_required",
                               "log in again: this action needs a password check within 15 minutes",
                               NULL);
}

/* Operator routes: 1 when allowed, else answered. */
static int
org_operator_ok(h2s_req_t *req, const sess_t *s, int recent)
{
    if (strcmp(s->kind, "operator") != 0) {
        svc_respond_error(req, PHR_EDENIED, "operators only");
        return 0;
    }
    if (recent && !org_recent(s)) {
        org_reauth(req);
        return 0;
    }
    return 1;
}

/* 1 when |id| is a lower-case UUID string. */
static int
org_id_ok(const char *id)
{
    return id != NULL && strlen(id) == 36 && uuid_valid(id) &&
           strspn(id, "0123456789abcdef-") == 36;
}

/*
 * Org admin routes: the caller must be an admin of {org_id}; another org's
 * id is 404, a non-admin 403. Copies the org id into |o|. 1 when allowed.
 */
static int
org_admin_ok(org_ctx_t *o, int recent, int with_target)
{
    h2s_req_t *req = o->a->req;
    const sess_t *s = &o->a->sess;
    const char *id = h2s_req_param(req, "org_id");

    if (strcmp(s->kind, "staff") != 0) {
        svc_respond_error(req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    if (!org_id_ok(id) || strcmp(id, s->org_id) != 0) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such organization");
        return 0;
    }
    if (strcmp(s->role, "admin") != 0) {
        svc_respond_error(req, PHR_EDENIED, "organization admins only");
        return 0;
    }
    if (recent && !org_recent(s)) {
        org_reauth(req);
        return 0;
    }
    memcpy(o->org_id, id, sizeof(o->org_id));
    if (with_target) {
        const char *t = h2s_req_param(req, "account_id");
        if (!org_id_ok(t)) {
            svc_respond_error(req, PHR_ENOTFOUND, "no such staff member");
            return 0;
        }
        memcpy(o->target_id, t, sizeof(o->target_id));
    }
    return 1;
}

/* ---- transactions with decisions inside --------------------------------- */

static void
org_note(org_ctx_t *o, int rc)
{
    if (rc != PHR_OK && o->rc == PHR_OK) {
        o->rc = rc;
    }
}

static void
org_stmt_done(int rc, PGresult *res, void *ud)
{
    org_note(ud, rc);
}

/* Queues a statement; |cb| NULL only records failures. */
static void
org_q(org_ctx_t *o, const char *sql, int n, const char *const *p, db_cb cb)
{
    if (o->rc != PHR_OK) {
        return;
    }
    org_note(o, db_txn_query(o->txn, sql, n, p, cb != NULL ? cb : org_stmt_done, o));
}

/* Queues an outbox row (|json| taken). */
static void
org_outbox(org_ctx_t *o, const char *topic, const char *key, char *json)
{
    if (json == NULL) {
        org_note(o, PHR_ENOMEM);
        return;
    }
    if (o->rc == PHR_OK) {
        org_note(o, outbox_add(o->txn, topic, key, json, org_stmt_done, o));
    }
    free(json);
}

static void
org_end_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;

    o->txn = NULL;
    org_note(o, rc);
    o->done(o);
}

/* Commits (or rolls back after a failure), then |done|. */
static void
org_end(org_ctx_t *o, org_step_fn done)
{
    o->done = done;
    int rc = db_txn_end(o->txn, o->rc == PHR_OK, org_end_done, o);
    if (rc != PHR_OK) {
        o->txn = NULL;
        org_note(o, rc);
        done(o);
    }
}

static void
org_begun(int rc, db_txn_t *txn, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, "the database is unavailable; retry later");
        return;
    }
    o->txn = txn;
    o->step(o);
}

static void
org_begin(org_ctx_t *o, org_step_fn step)
{
    o->step = step;
    int rc = db_txn_begin(svc_db(o->a->svc), org_begun, o);
    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, "the database is unavailable; retry later");
    }
}

/* Answers a refusal decided in the transaction or a failure; 1 when it did. */
static int
org_answered_failure(org_ctx_t *o, const char *what)
{
    if (o->rc != PHR_OK) {
        if (o->rc == PHR_ECONFLICT) {
            h2s_respond_problem(o->a->req, 409, "email_taken", "the e-mail address is in use",
                                NULL);
        } else {
            svc_respond_error(o->a->req, o->rc, what);
        }
        return 1;
    }
    if (o->status != 0) {
        if (o->status == 404) {
            svc_respond_error(o->a->req, PHR_ENOTFOUND, o->code);
        } else {
            h2s_respond_problem(o->a->req, o->status, o->code, o->detail, NULL);
        }
        return 1;
    }
    return 0;
}

/* ---- JSON --------------------------------------------------------------- */

/* An audit event by the caller about |type| |target| of this org. Caller frees. */
/* An audit event of an org route: the caller acts on |target| of org o->org_id. Takes |details|. */
static char *
org_audit_details(org_ctx_t *o, const char *action, const char *type, const char *target,
                  const char *result, const char *reason, json_object *details, char *event_id)
{
    aev_t ev;

    aev_init(&ev, "auth", action, o->a->req, &o->a->sess);
    ev.target_type = type;
    ev.target_id = target;
    ev.target_org_id = o->org_id;
    ev.result = result;
    ev.reason = reason;
    ev.details = details;
    return aev_json(&ev, event_id);
}

static char *
org_audit(org_ctx_t *o, const char *action, const char *type, const char *target,
          const char *result, const char *reason, char *event_id)
{
    return org_audit_details(o, action, type, target, result, reason, NULL, event_id);
}

static json_object *
org_time(const char *ms)
{
    char buf[TU_JST_LEN];
    if (ms == NULL || ms[0] == '\0') {
        return NULL;
    }
    tu_format_jst(strtoll(ms, NULL, 10), buf, sizeof(buf));
    return json_object_new_string(buf);
}

/* Row |i| of ORG_COLS as an Org. */
static json_object *
org_row_json(PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "seat_limit",
                           json_object_new_int64(strtoll(PQgetvalue(res, i, 2), NULL, 10)));
    json_object_object_add(o, "seats_used",
                           json_object_new_int64(strtoll(PQgetvalue(res, i, 3), NULL, 10)));
    json_object_object_add(o, "require_mfa",
                           json_object_new_boolean(PQgetvalue(res, i, 4)[0] == 't'));
    json_object_object_add(o, "status", json_object_new_string(PQgetvalue(res, i, 5)));
    json_object_object_add(o, "created_at", org_time(PQgetvalue(res, i, 6)));
    return o;
}

/* Row |i| of STAFF_COLS as a StaffMember. */
static json_object *
org_staff_json(PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    int must = PQgetvalue(res, i, 4)[0] == 't';
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "email", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 2)));
    json_object_object_add(o, "role", json_object_new_string(PQgetvalue(res, i, 3)));
    json_object_object_add(o, "status", json_object_new_string(must ? "pending" : "active"));
    json_object *methods = json_object_new_array();
    if (PQgetvalue(res, i, 8)[0] == 't') {
        json_object_array_add(methods, json_object_new_string("totp"));
    }
    if (PQgetvalue(res, i, 9)[0] == 't') {
        json_object_array_add(methods, json_object_new_string("sms"));
    }
    json_object_object_add(o, "mfa_methods", methods);
    json_object_object_add(o, "locked", json_object_new_boolean(PQgetvalue(res, i, 5)[0] == 't'));
    json_object_object_add(o, "must_change_password", json_object_new_boolean(must));
    json_object_object_add(o, "created_at", org_time(PQgetvalue(res, i, 6)));
    json_object_object_add(o, "last_login_at",
                           PQgetisnull(res, i, 7) ? NULL : org_time(PQgetvalue(res, i, 7)));
    return o;
}

/* Stores the first row of a RETURNING ORG_COLS / STAFF_COLS statement as the answer. */
static void
org_row_org(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    org_note(o, rc);
    if (rc == PHR_OK && PQntuples(res) > 0) {
        json_object_put(o->row);
        o->row = org_row_json(res, 0);
    }
}

static void
org_row_staff(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    org_note(o, rc);
    if (rc == PHR_OK && PQntuples(res) > 0) {
        json_object_put(o->row);
        o->row = org_staff_json(res, 0);
    }
}

/* ---- pagination --------------------------------------------------------- */

static void
org_b64url(const unsigned char *in, size_t n, char *out, size_t cap)
{
    unsigned char buf[ORG_CURSOR_MAX + 4];
    if (((n + 2) / 3) * 4 + 1 > sizeof(buf) || ((n + 2) / 3) * 4 + 1 > cap) {
        out[0] = '\0';
        return;
    }
    int len = EVP_EncodeBlock(buf, in, (int)n);
    size_t j = 0;
    for (int i = 0; i < len && buf[i] != '='; i++) {
        unsigned char c = buf[i] == '+' ? '-' : buf[i] == '/' ? '_' : buf[i];
        out[j++] = (char)c;
    }
    out[j] = '\0';
}

/* Decodes base64url |in| into |out|; the length, or -1 when malformed. */
static int
org_b64url_decode(const char *in, unsigned char *out, size_t cap)
{
    unsigned char buf[ORG_CURSOR_MAX + 4];
    size_t n = strlen(in);
    if (n == 0 || n > ORG_CURSOR_MAX || n % 4 == 1 || (n * 3) / 4 + 3 > cap) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : (unsigned char)in[i];
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++) {
        buf[n + i] = '=';
    }
    int len = EVP_DecodeBlock(out, buf, (int)(n + pad));
    return len < 0 ? -1 : len - (int)pad;
}

/*
 * Reads ?limit= and ?cursor= (raw cursor into |cursor|). 1 when valid, else
 * answered 400.
 */
static int
org_page_params(h2s_req_t *req, int *limit, char *cursor, size_t cap)
{
    const char *q = h2s_req_query(req);

    *limit = ORG_PAGE_DEFAULT;
    cursor[0] = '\0';
    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - q) : len;
        const char *v = eq != NULL ? eq + 1 : q + len;
        size_t vlen = (size_t)(q + len - v);
        if (klen == 5 && strncmp(q, "limit", 5) == 0) {
            char num[8];
            char *end;
            if (vlen == 0 || vlen >= sizeof(num)) {
                return org_field_error(req, "limit", "an integer from 1 to 200") && 0;
            }
            memcpy(num, v, vlen);
            num[vlen] = '\0';
            long n = strtol(num, &end, 10);
            if (*end != '\0' || n < 1 || n > ORG_PAGE_MAX) {
                return org_field_error(req, "limit", "an integer from 1 to 200") && 0;
            }
            *limit = (int)n;
        } else if (klen == 6 && strncmp(q, "cursor", 6) == 0) {
            if (vlen == 0 || vlen >= cap || vlen > ORG_CURSOR_MAX) {
                return org_field_error(req, "cursor", "not a cursor of this list") && 0;
            }
            memcpy(cursor, v, vlen);
            cursor[vlen] = '\0';
        }
        q += len;
        if (*q == '&') {
            q++;
        }
    }
    return 1;
}

/* ---- operator: organizations -------------------------------------------- */

static void
org_create_done(org_ctx_t *o)
{
    if (org_answered_failure(o, "the organization could not be created; retry later")) {
        return;
    }
    auth_outbox_kick(o->a->svc);
    if (o->row == NULL) {
        svc_respond_error(o->a->req, PHR_EGENERIC, NULL);
        return;
    }
    char loc[96];
    json_object_object_add(o->row, "seats_used", json_object_new_int(1));
    json_object_object_add(o->row, "admin_account_id", json_object_new_string(o->a->account_id));
    snprintf(loc, sizeof(loc), "/api/v1/orgs/%s", o->org_id);
    h2s_req_add_header(o->a->req, "location", loc);
    json_object *row = o->row;
    o->row = NULL;
    h2s_respond_json(o->a->req, 201, row);
}

/* The onboarding e-mail of a new staff account |o->a| (initial password inside). */
static void
org_queue_onboarding(org_ctx_t *o)
{
    char login_url[300], key[80];
    auth_ctx_t *a = o->a;

    snprintf(login_url, sizeof(login_url), "%s/login", svc_cfg(a->svc)->public_base_url);
    const char *params[] = {"name",
                            a->name,
                            "org_name",
                            o->org_name,
                            "login_url",
                            login_url,
                            "initial_password",
                            o->initial_pw,
                            "expires_at",
                            o->expires,
                            NULL};
    snprintf(key, sizeof(key), "onboard:%s", a->account_id);
    org_outbox(o, "notification", key,
               auth_notify_json("staff_onboarding", a->account_id, a->locale, params));
    explicit_bzero(o->initial_pw, sizeof(o->initial_pw));
}

static const char org_staff_insert_sql[] =
    "INSERT INTO accounts (id, email, name, locale, kind, org_id, role, password_hash, "
    "must_change_password, password_expires_at) "
    "VALUES ($1, $2, $3, $4, 'staff', $5, $6, $7, true, $8::timestamptz) RETURNING " STAFF_COLS;

static void
org_create_step(org_ctx_t *o)
{
    static const char org_sql[] =
        "INSERT INTO organizations AS o (id, name, seat_limit, require_mfa) "
        "VALUES ($1, $2, $3::int, $4::bool) RETURNING " ORG_COLS;
    auth_ctx_t *a = o->a;
    char event_id[37];

    const char *p1[] = {o->org_id, o->org_name, o->seat_limit, o->require_mfa};
    org_q(o, org_sql, 4, p1, org_row_org);
    const char *p2[] = {a->account_id, a->email, a->name, a->locale,
                        o->org_id,     "admin",  a->hash, o->expires};
    org_q(o, org_staff_insert_sql, 8, p2, NULL);
    org_queue_onboarding(o);
    char *ev = org_audit(o, "auth.org.create", "org", o->org_id, "success", NULL, event_id);
    org_outbox(o, "audit", event_id, ev);
    ev = org_audit(o, "auth.staff.create", "account", a->account_id, "success", NULL, event_id);
    org_outbox(o, "audit", event_id, ev);
    org_end(o, org_create_done);
}

static void
org_hashed(int rc, const char *encoded, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, "password hashing is saturated; retry later");
        return;
    }
    snprintf(o->a->hash, sizeof(o->a->hash), "%s", encoded);
    org_begin(o, o->step);
}

/* A new staff account's id, initial password, its expiry, then hashing; |step| in the txn. */
static void
org_prepare_staff(org_ctx_t *o, org_step_fn step)
{
    o->step = step;
    tu_format_jst(tu_now_ms() + ORG_INITIAL_PW_MS, o->expires, sizeof(o->expires));
    if (uuid7(o->a->account_id) != PHR_OK ||
        pw_generate(o->initial_pw, sizeof(o->initial_pw)) != PHR_OK) {
        svc_respond_error(o->a->req, PHR_EGENERIC, NULL);
        return;
    }
    /* a new staff account has no second factor yet: the strictest minimum applies */
    if (strlen(o->initial_pw) < pw_min_length("staff", 0, 0)) {
        log_error("org: generated initial password is shorter than the staff minimum");
        svc_respond_error(o->a->req, PHR_EGENERIC, NULL);
        return;
    }
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(o->a->svc, &npeppers);
    int rc = pwhash_hash_async(svc_workq(o->a->svc), o->initial_pw, npeppers > 0 ? peppers : NULL,
                               o->a->req, org_hashed, o);
    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, "password hashing is saturated; retry later");
    }
}

/* POST /api/v1/admin/orgs */
static void
org_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"name", JX_STRING, 1, 0, -1, 1, 100, NULL},
        {"seat_limit", JX_INT, 1, 1, 100000, 0, 0, NULL},
        {"require_mfa", JX_BOOL, 0, 0, -1, 0, 0, NULL},
        {"admin_email", JX_STRING, 1, 0, -1, 3, 254, NULL},
        {"admin_name", JX_STRING, 1, 0, -1, 1, 100, NULL},
        {"admin_locale", JX_STRING, 0, 0, -1, 0, 0, org_locales},
    };
    json_object *body, *v;

    if (!org_operator_ok(req, sess, 1) ||
        svc_read_json(req, fields, sizeof(fields) / sizeof(fields[0]), &body) != PHR_OK) {
        return;
    }
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        json_object_put(body);
        return;
    }
    auth_ctx_t *a = o->a;
    if (!auth_email_normalise(jx_get_str(body, "admin_email", ""), a->email, sizeof(a->email))) {
        json_object_put(body);
        org_field_error(req, "admin_email", "not a valid e-mail address");
        return;
    }
    snprintf(o->org_name, sizeof(o->org_name), "%s", jx_get_str(body, "name", ""));
    snprintf(o->seat_limit, sizeof(o->seat_limit), "%lld",
             (long long)jx_get_int(body, "seat_limit", 1));
    int mfa = json_object_object_get_ex(body, "require_mfa", &v) && json_object_get_boolean(v);
    snprintf(o->require_mfa, sizeof(o->require_mfa), "%s", mfa ? "true" : "false");
    snprintf(a->name, sizeof(a->name), "%s", jx_get_str(body, "admin_name", ""));
    snprintf(a->locale, sizeof(a->locale), "%s", jx_get_str(body, "admin_locale", "ja"));
    json_object_put(body);
    if (uuid7(o->org_id) != PHR_OK) {
        svc_respond_error(req, PHR_EGENERIC, NULL);
        return;
    }
    org_prepare_staff(o, org_create_step);
}

static void
org_list_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    char cursor[ORG_CURSOR_MAX + 1];

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    int more = n > o->page_limit;
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < o->page_limit; i++) {
        json_object_array_add(items, org_row_json(res, i));
    }
    json_object_object_add(out, "items", items);
    if (more) {
        const char *last = PQgetvalue(res, o->page_limit - 1, 0);
        org_b64url((const unsigned char *)last, strlen(last), cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor", more ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(o->a->req, 200, out);
}

/* GET /api/v1/admin/orgs: newest first (ids are UUIDv7), keyset on the id. */
static void
org_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] = "SELECT " ORG_COLS " FROM organizations o "
                              "WHERE ($1::uuid IS NULL OR o.id < $1::uuid) "
                              "ORDER BY o.id DESC LIMIT $2::int";
    char cursor[ORG_CURSOR_MAX + 1], lim[16];
    unsigned char raw[ORG_CURSOR_MAX];
    int limit;

    if (!org_operator_ok(req, sess, 0) || !org_page_params(req, &limit, cursor, sizeof(cursor))) {
        return;
    }
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        return;
    }
    o->page_limit = limit;
    if (cursor[0] != '\0') {
        int n = org_b64url_decode(cursor, raw, sizeof(raw));
        if (n != 36) {
            org_field_error(req, "cursor", "not a cursor of this list");
            return;
        }
        memcpy(o->cur_id, raw, 36);
        o->cur_id[36] = '\0';
        if (!org_id_ok(o->cur_id)) {
            org_field_error(req, "cursor", "not a cursor of this list");
            return;
        }
    }
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *p[] = {o->cur_id[0] ? o->cur_id : NULL, lim};
    int rc = db_query(svc_db(svc), sql, 2, p, org_list_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
org_update_answer(int rc, long count, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        /* Suspended but sessions live: the operator repeats the suspension to end them. */
        log_warn("org suspension: revoking the staff's sessions failed: %s", phr_err_str(rc));
        svc_respond_error(o->a->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    json_object *row = o->row;
    o->row = NULL;
    if (row == NULL) {
        svc_respond_error(o->a->req, PHR_EGENERIC, NULL);
        return;
    }
    h2s_respond_json(o->a->req, 200, row);
}

/* Committed; a suspension then ends every session of the org's staff at once. */
static void
org_update_done(org_ctx_t *o)
{
    if (org_answered_failure(o, "the organization could not be changed; retry later")) {
        return;
    }
    auth_outbox_kick(o->a->svc);
    int rc = auth_revoke_accounts(o->a->svc, (const char(*)[37])o->staff, o->nstaff,
                                  org_update_answer, o);
    if (rc != PHR_OK) {
        org_update_answer(rc, 0, o);
    }
}

/* The staff of the org being suspended (every status: a session may outlive its account). */
static void
org_staff_ids(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    int n = rc == PHR_OK ? PQntuples(res) : 0;

    org_note(o, rc);
    if (n > 0 && (o->staff = calloc((size_t)n, sizeof(*o->staff))) == NULL) {
        org_note(o, PHR_ENOMEM);
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(o->staff[i], sizeof(o->staff[i]), "%s", PQgetvalue(res, i, 0));
    }
    o->nstaff = (size_t)n;
}

static void
org_found(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    org_note(o, rc);
    if (rc == PHR_OK && PQntuples(res) > 0) {
        o->found = 1;
        snprintf(o->org_name, sizeof(o->org_name), "%s", PQgetvalue(res, 0, 0));
        o->limit_n = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    }
}

static void
org_update_counted(int rc, PGresult *res, void *ud)
{
    static const char sql[] =
        "UPDATE organizations AS o SET seat_limit = coalesce($2::int, seat_limit), "
        "require_mfa = coalesce($3::bool, require_mfa), status = coalesce($4, status), "
        "updated_at = now() WHERE id = $1 RETURNING " ORG_COLS;
    org_ctx_t *o = ud;
    char event_id[37];

    org_note(o, rc);
    if (o->rc == PHR_OK) {
        o->used_n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (!o->found) {
            o->status = 404;
            o->code = "no such organization";
        } else if (o->seat_limit[0] && strtol(o->seat_limit, NULL, 10) < o->used_n) {
            o->status = 409;
            o->code = "seat_limit_below_usage";
            o->detail = "the seat limit is below the seats in use";
        } else {
            const char *p[] = {o->org_id, o->seat_limit[0] ? o->seat_limit : NULL,
                               o->require_mfa[0] ? o->require_mfa : NULL,
                               o->org_status[0] ? o->org_status : NULL};
            org_q(o, sql, 4, p, org_row_org);
            if (strcmp(o->org_status, "suspended") == 0) {
                org_q(o, "SELECT id FROM accounts WHERE org_id = $1 AND kind = 'staff'", 1, p,
                      org_staff_ids);
            }
            org_outbox(
                o, "audit", event_id,
                org_audit(o, "auth.org.update", "org", o->org_id, "success", NULL, event_id));
        }
    }
    org_end(o, org_update_done);
}

/* Locks the org row, then counts its seats (a fresh snapshot after the lock). */
static void
org_lock_and_count(org_ctx_t *o, db_cb counted)
{
    static const char lock_sql[] =
        "SELECT name, seat_limit FROM organizations WHERE id = $1 FOR UPDATE";
    const char *p[] = {o->org_id};
    org_q(o, lock_sql, 1, p, org_found);
    org_q(o, ORG_SEATS_SQL, 1, p, counted);
    if (o->rc != PHR_OK) {
        org_end(o, o->done);
    }
}

static void
org_update_step(org_ctx_t *o)
{
    o->done = org_update_done;
    org_lock_and_count(o, org_update_counted);
}

/* PATCH /api/v1/admin/orgs/{org_id} */
static void
org_update(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"seat_limit", JX_INT, 0, 1, 100000, 0, 0, NULL},
        {"require_mfa", JX_BOOL, 0, 0, -1, 0, 0, NULL},
        {"status", JX_STRING, 0, 0, -1, 0, 0, org_statuses},
    };
    const char *id = h2s_req_param(req, "org_id");
    json_object *body, *v;

    if (!org_operator_ok(req, sess, 1)) {
        return;
    }
    if (!org_id_ok(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such organization");
        return;
    }
    if (svc_read_json(req, fields, 3, &body) != PHR_OK) {
        return;
    }
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        json_object_put(body);
        return;
    }
    memcpy(o->org_id, id, sizeof(o->org_id));
    if (json_object_object_get_ex(body, "seat_limit", &v) && v != NULL) {
        snprintf(o->seat_limit, sizeof(o->seat_limit), "%lld",
                 (long long)jx_get_int(body, "seat_limit", 1));
    }
    if (json_object_object_get_ex(body, "require_mfa", &v) && v != NULL) {
        snprintf(o->require_mfa, sizeof(o->require_mfa), "%s",
                 json_object_get_boolean(v) ? "true" : "false");
    }
    snprintf(o->org_status, sizeof(o->org_status), "%s", jx_get_str(body, "status", ""));
    json_object_put(body);
    if (!o->seat_limit[0] && !o->require_mfa[0] && !o->org_status[0]) {
        org_field_error(req, "", "give at least one of seat_limit, require_mfa, status");
        return;
    }
    org_begin(o, org_update_step);
}

/* ---- org admin: the organization and its staff -------------------------- */

static void
org_get_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
    } else if (PQntuples(res) == 0) {
        svc_respond_error(o->a->req, PHR_ENOTFOUND, "no such organization");
    } else {
        h2s_respond_json(o->a->req, 200, org_row_json(res, 0));
    }
}

/* GET /api/v1/orgs/{org_id} */
static void
org_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] = "SELECT " ORG_COLS " FROM organizations o WHERE o.id = $1";
    org_ctx_t *o = org_ctx_new(svc, req, sess);

    if (o == NULL || !org_admin_ok(o, 0, 0)) {
        return;
    }
    const char *p[] = {o->org_id};
    int rc = db_query(svc_db(svc), sql, 1, p, org_get_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
org_staff_list_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    char cursor[ORG_CURSOR_MAX + 1];
    unsigned char raw[ORG_CURSOR_MAX];

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    int more = n > o->page_limit;
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < o->page_limit; i++) {
        json_object_array_add(items, org_staff_json(res, i));
    }
    json_object_object_add(out, "items", items);
    if (more) { /* the cursor: id, then name, of the last item */
        const char *id = PQgetvalue(res, o->page_limit - 1, 0);
        const char *name = PQgetvalue(res, o->page_limit - 1, 2);
        size_t nl = strlen(name);
        if (nl > 300) {
            nl = 300;
        }
        snprintf((char *)raw, sizeof(raw), "%.36s%.*s", id, (int)nl, name);
        org_b64url(raw, 36 + nl, cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor", more ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(o->a->req, 200, out);
}

/* GET /api/v1/orgs/{org_id}/staff: by name, keyset on (name, id). */
static void
org_staff_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT " STAFF_COLS " FROM accounts WHERE org_id = $1 AND kind = 'staff' "
        "AND status = 'active' AND ($2::text IS NULL OR (name, id) > ($2::text, $3::uuid)) "
        "ORDER BY name, id LIMIT $4::int";
    char cursor[ORG_CURSOR_MAX + 1], lim[16];
    unsigned char raw[ORG_CURSOR_MAX + 4];
    int limit;

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 0, 0) ||
        !org_page_params(req, &limit, cursor, sizeof(cursor))) {
        return;
    }
    o->page_limit = limit;
    if (cursor[0] != '\0') {
        int n = org_b64url_decode(cursor, raw, sizeof(raw) - 1);
        if (n <= 36) {
            org_field_error(req, "cursor", "not a cursor of this list");
            return;
        }
        raw[n] = '\0';
        memcpy(o->cur_id, raw, 36);
        o->cur_id[36] = '\0';
        snprintf(o->cur_name, sizeof(o->cur_name), "%s", (const char *)raw + 36);
        if (!org_id_ok(o->cur_id) || strlen(o->cur_name) != (size_t)n - 36 ||
            !jx_utf8_valid(o->cur_name, strlen(o->cur_name))) {
            org_field_error(req, "cursor", "not a cursor of this list");
            return;
        }
    }
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *p[] = {o->org_id, o->cur_id[0] ? o->cur_name : NULL,
                       o->cur_id[0] ? o->cur_id : NULL, lim};
    int rc = db_query(svc_db(svc), sql, 4, p, org_staff_list_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
org_staff_created(org_ctx_t *o)
{
    if (o->rc == PHR_OK && o->status != 0) {
        auth_outbox_kick(o->a->svc); /* the refusal's audit event */
    }
    if (org_answered_failure(o, "the staff member could not be created; retry later")) {
        return;
    }
    auth_outbox_kick(o->a->svc);
    char loc[160];
    snprintf(loc, sizeof(loc), "/api/v1/orgs/%s/staff/%s", o->org_id, o->a->account_id);
    h2s_req_add_header(o->a->req, "location", loc);
    json_object *row = o->row;
    o->row = NULL;
    if (row == NULL) {
        svc_respond_error(o->a->req, PHR_EGENERIC, NULL);
        return;
    }
    h2s_respond_json(o->a->req, 201, row);
}

static void
org_staff_counted(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    auth_ctx_t *a = o->a;
    char event_id[37];

    org_note(o, rc);
    if (o->rc == PHR_OK) {
        o->used_n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (!o->found) {
            o->status = 404;
            o->code = "no such organization";
        } else if (o->used_n >= o->limit_n) {
            o->status = 409;
            o->code = "seat_limit_reached";
            o->detail = "every seat of the organization is taken";
            org_outbox(o, "audit", event_id,
                       org_audit(o, "auth.org.seat_limit_refusal", "org", o->org_id, "denied",
                                 "seat_limit_reached", event_id));
        } else {
            const char *p[] = {a->account_id, a->email,    a->name, a->locale,
                               o->org_id,     o->new_role, a->hash, o->expires};
            org_q(o, org_staff_insert_sql, 8, p, org_row_staff);
            org_queue_onboarding(o);
            org_outbox(o, "audit", event_id,
                       org_audit(o, "auth.staff.create", "account", a->account_id, "success", NULL,
                                 event_id));
        }
    }
    org_end(o, org_staff_created);
}

static void
org_staff_create_step(org_ctx_t *o)
{
    o->done = org_staff_created;
    org_lock_and_count(o, org_staff_counted);
}

/* POST /api/v1/orgs/{org_id}/staff */
static void
org_staff_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"email", JX_STRING, 1, 0, -1, 3, 254, NULL},
        {"name", JX_STRING, 1, 0, -1, 1, 100, NULL},
        {"role", JX_STRING, 1, 0, -1, 0, 0, org_roles},
        {"locale", JX_STRING, 0, 0, -1, 0, 0, org_locales},
    };
    json_object *body;

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 1, 0) || svc_read_json(req, fields, 4, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *a = o->a;
    if (!auth_email_normalise(jx_get_str(body, "email", ""), a->email, sizeof(a->email))) {
        json_object_put(body);
        org_field_error(req, "email", "not a valid e-mail address");
        return;
    }
    snprintf(a->name, sizeof(a->name), "%s", jx_get_str(body, "name", ""));
    snprintf(a->locale, sizeof(a->locale), "%s", jx_get_str(body, "locale", "ja"));
    snprintf(o->new_role, sizeof(o->new_role), "%s", jx_get_str(body, "role", "staff"));
    json_object_put(body);
    org_prepare_staff(o, org_staff_create_step);
}

/* Target row: its role and the org's active admins (after the org lock). */
static void
org_target_found(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;

    org_note(o, rc);
    o->found = 0;
    if (rc == PHR_OK && PQntuples(res) > 0) {
        o->found = 1;
        snprintf(o->cur_role, sizeof(o->cur_role), "%s", PQgetvalue(res, 0, 0));
        o->admins_n = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    }
    o->step(o);
}

/* Locks the org, loads the target staff member, then |decide| in the transaction. */
static void
org_target_step(org_ctx_t *o)
{
    static const char lock_sql[] = "SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE";
    static const char sql[] =
        "SELECT role, (SELECT count(*) FROM accounts WHERE org_id = $1 AND kind = 'staff' "
        "AND role = 'admin' AND status = 'active') FROM accounts "
        "WHERE id = $2 AND org_id = $1 AND kind = 'staff' AND status = 'active'";
    const char *p[] = {o->org_id, o->target_id};

    o->step = o->done; /* the decision */
    org_q(o, lock_sql, 1, p, NULL);
    org_q(o, sql, 2, p, org_target_found);
    if (o->rc != PHR_OK) {
        o->step(o);
    }
}

static void
org_revoked(int rc, long count, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        log_warn("staff change: revoking sessions failed: %s", phr_err_str(rc));
        svc_respond_error(o->a->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (o->row != NULL) {
        json_object *row = o->row;
        o->row = NULL;
        h2s_respond_json(o->a->req, 200, row);
    } else {
        h2s_respond(o->a->req, 204, NULL, NULL, 0);
    }
}

/* After a committed role change or deletion: the target's sessions end at once. */
static void
org_target_changed(org_ctx_t *o)
{
    if (org_answered_failure(o, "the staff member could not be changed; retry later")) {
        return;
    }
    auth_outbox_kick(o->a->svc);
    if (!o->changed) {
        org_revoked(PHR_OK, 0, o);
        return;
    }
    int rc = sess_revoke(svc_kv(o->a->svc), o->target_id, NULL, 0, org_revoked, o);
    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static void
org_role_decide(org_ctx_t *o)
{
    static const char sql[] = "UPDATE accounts SET role = $3, updated_at = now() "
                              "WHERE id = $2 AND org_id = $1 RETURNING " STAFF_COLS;
    char event_id[37];

    if (o->rc == PHR_OK) {
        if (!o->found) {
            o->status = 404;
            o->code = "no such staff member";
        } else if (strcmp(o->cur_role, "admin") == 0 && strcmp(o->new_role, "admin") != 0 &&
                   o->admins_n <= 1) {
            o->status = 409;
            o->code = "last_admin";
            o->detail = "the organization's last admin cannot be demoted or deleted";
        } else {
            const char *p[] = {o->org_id, o->target_id, o->new_role};
            o->changed = strcmp(o->cur_role, o->new_role) != 0;
            org_q(o, sql, 3, p, org_row_staff);
            if (o->changed) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "from", json_object_new_string(o->cur_role));
                json_object_object_add(d, "to", json_object_new_string(o->new_role));
                org_outbox(o, "audit", event_id,
                           org_audit_details(o, "auth.staff.role_change", "account", o->target_id,
                                             "success", o->new_role, d, event_id));
            }
        }
    }
    org_end(o, org_target_changed);
}

/* PATCH /api/v1/orgs/{org_id}/staff/{account_id} {role} */
static void
org_staff_update(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"role", JX_STRING, 1, 0, -1, 0, 0, org_roles},
    };
    json_object *body;

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 1, 1) || svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    snprintf(o->new_role, sizeof(o->new_role), "%s", jx_get_str(body, "role", "staff"));
    json_object_put(body);
    o->done = org_role_decide;
    org_begin(o, org_target_step);
}

static void
org_delete_decide(org_ctx_t *o)
{
    static const char sql[] =
        "UPDATE accounts SET status = 'deleted', email = 'deleted-' || id || '@deleted.invalid', "
        "failed_logins = 0, locked_until = NULL, updated_at = now() "
        "WHERE id = $2 AND org_id = $1";
    char event_id[37];

    if (o->rc == PHR_OK) {
        if (!o->found) {
            o->status = 404;
            o->code = "no such staff member";
        } else if (strcmp(o->cur_role, "admin") == 0 && o->admins_n <= 1) {
            o->status = 409;
            o->code = "last_admin";
            o->detail = "the organization's last admin cannot be demoted or deleted";
        } else {
            const char *p[] = {o->org_id, o->target_id};
            o->changed = 1;
            org_q(o, sql, 2, p, NULL);
            org_outbox(o, "audit", event_id,
                       org_audit(o, "auth.staff.delete", "account", o->target_id, "success", NULL,
                                 event_id));
        }
    }
    org_end(o, org_target_changed);
}

/* DELETE /api/v1/orgs/{org_id}/staff/{account_id} */
static void
org_staff_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 1, 1)) {
        return;
    }
    o->done = org_delete_decide;
    org_begin(o, org_target_step);
}

static void
org_unlocked(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    char event_id[37];

    org_note(o, rc);
    if (o->rc == PHR_OK) {
        if (PQntuples(res) == 0) {
            o->status = 404;
            o->code = "no such staff member";
        } else {
            org_outbox(o, "audit", event_id,
                       org_audit(o, "auth.staff.unlock", "account", o->target_id, "success", NULL,
                                 event_id));
        }
    }
    org_end(o, org_target_changed);
}

static void
org_unlock_step(org_ctx_t *o)
{
    static const char sql[] = "UPDATE accounts SET failed_logins = 0, locked_until = NULL, "
                              "updated_at = now() WHERE id = $2 AND org_id = $1 "
                              "AND kind = 'staff' AND status = 'active' RETURNING id";
    const char *p[] = {o->org_id, o->target_id};

    org_q(o, sql, 2, p, org_unlocked);
    if (o->rc != PHR_OK) {
        org_end(o, org_target_changed);
    }
}

/* POST /api/v1/orgs/{org_id}/staff/{account_id}/unlock */
static void
org_staff_unlock(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 1, 1)) {
        return;
    }
    org_begin(o, org_unlock_step);
}

/* ---- org admin: second factors ------------------------------------------ */

static void
org_mfa_reset_found(int rc, PGresult *res, void *ud)
{
    static const char del_totp[] = "DELETE FROM mfa_totp WHERE account_id = $1";
    static const char del_codes[] = "DELETE FROM mfa_recovery_codes WHERE account_id = $1";
    org_ctx_t *o = ud;
    auth_ctx_t *a = o->a;
    char event_id[37], key[80];

    org_note(o, rc);
    if (o->rc == PHR_OK) {
        if (PQntuples(res) == 0) {
            o->status = 404;
            o->code = "no such staff member";
        } else {
            const char *p[] = {o->target_id};
            snprintf(a->name, sizeof(a->name), "%s", PQgetvalue(res, 0, 0));
            snprintf(a->locale, sizeof(a->locale), "%s", PQgetvalue(res, 0, 1));
            const char *params[] = {"name", a->name, "method", "totp", "change", "reset", NULL};
            o->changed = 1;
            org_q(o, del_totp, 1, p, NULL);
            org_q(o, del_codes, 1, p, NULL);
            org_outbox(
                o, "audit", event_id,
                org_audit(o, "auth.mfa.reset", "account", o->target_id, "success", NULL, event_id));
            snprintf(key, sizeof(key), "mfa:%s", event_id);
            org_outbox(o, "notification", key,
                       auth_notify_json("mfa_changed", o->target_id, a->locale, params));
        }
    }
    org_end(o, org_target_changed);
}

static void
org_mfa_reset_step(org_ctx_t *o)
{
    static const char sql[] = "SELECT name, locale FROM accounts WHERE id = $2 AND org_id = $1 "
                              "AND kind = 'staff' AND status = 'active' FOR UPDATE";
    const char *p[] = {o->org_id, o->target_id};

    org_q(o, sql, 2, p, org_mfa_reset_found);
    if (o->rc != PHR_OK) {
        org_end(o, org_target_changed);
    }
}

/* POST /api/v1/orgs/{org_id}/staff/{account_id}/reset-mfa: TOTP and recovery codes go. */
static void
org_staff_reset_mfa(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL || !org_admin_ok(o, 1, 1)) {
        return;
    }
    org_begin(o, org_mfa_reset_step);
}

/* ---- internal routes (peer services) ------------------------------------ */


/* Reads limit and an id cursor (base64url of the last id) into |o|. 1 when valid, else 400. */
static int
org_id_page(org_ctx_t *o)
{
    char cursor[ORG_CURSOR_MAX + 1];
    unsigned char raw[ORG_CURSOR_MAX + 4];
    int limit;

    if (!org_page_params(o->a->req, &limit, cursor, sizeof(cursor))) {
        return 0;
    }
    o->page_limit = limit;
    if (cursor[0] != '\0') {
        int n = org_b64url_decode(cursor, raw, sizeof(raw) - 1);
        if (n != 36) {
            org_field_error(o->a->req, "cursor", "not a cursor of this list");
            return 0;
        }
        memcpy(o->cur_id, raw, 36);
        o->cur_id[36] = '\0';
        if (!org_id_ok(o->cur_id)) {
            org_field_error(o->a->req, "cursor", "not a cursor of this list");
            return 0;
        }
    }
    snprintf(o->seat_limit, sizeof(o->seat_limit), "%d", limit + 1);
    return 1;
}

/* Answers {items, next_cursor} of a page by id (column 0 is the id). */
static void
org_id_page_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;
    char cursor[ORG_CURSOR_MAX + 1];

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    int more = n > o->page_limit;
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < o->page_limit; i++) {
        json_object_array_add(items, o->page_row(o->a->svc, res, i));
    }
    json_object_object_add(out, "items", items);
    if (more) {
        org_b64url((const unsigned char *)PQgetvalue(res, o->page_limit - 1, 0), 36, cursor,
                   sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor", more ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(o->a->req, 200, out);
}

static json_object *
org_str_or_null(PGresult *res, int i, int col)
{
    return PQgetisnull(res, i, col) ? NULL : json_object_new_string(PQgetvalue(res, i, col));
}

/* Columns of a Contact: id, email, name, locale, org_id, org name, sealed SMS phone, its key. */
#define CONTACT_COLS                                                                               \
    "a.id, a.email, a.name, a.locale, a.org_id, "                                                  \
    "(SELECT o2.name FROM organizations o2 WHERE o2.id = a.org_id), "                              \
    "ms.phone_enc, ms.key_id"
#define CONTACT_SMS_JOIN                                                                           \
    " LEFT JOIN mfa_sms ms ON ms.account_id = a.id AND ms.confirmed_at IS NOT NULL "

static json_object *
org_contact_json(svc_t *svc, PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    char phone[32];
    const char *id = PQgetvalue(res, i, 0);
    int has_phone = !PQgetisnull(res, i, 6) &&
                    mfa_phone_open(svc, id, PQgetvalue(res, i, 6), PQgetvalue(res, i, 7), phone,
                                   sizeof(phone)) == PHR_OK;
    json_object_object_add(o, "account_id", json_object_new_string(id));
    json_object_object_add(o, "email", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 2)));
    json_object_object_add(o, "locale", json_object_new_string(PQgetvalue(res, i, 3)));
    json_object_object_add(o, "phone", has_phone ? json_object_new_string(phone) : NULL);
    json_object_object_add(o, "org_id", org_str_or_null(res, i, 4));
    json_object_object_add(o, "org_name", org_str_or_null(res, i, 5));
    explicit_bzero(phone, sizeof(phone));
    return o;
}

/* Columns of an AccountRecord. */
#define RECORD_COLS                                                                                \
    "id, kind, email, name, locale, CASE WHEN status = 'withdrawn' THEN 'withdrawn' "              \
    "WHEN must_change_password OR (kind = 'patient' AND email_verified_at IS NULL) "               \
    "THEN 'pending' ELSE 'active' END, email_verified_at IS NOT NULL, org_id, role, "              \
    "(SELECT o.name FROM organizations o WHERE o.id = accounts.org_id)"

static json_object *
org_record_json(svc_t *svc, PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    static const char *const keys[] = {"id", "kind", "email", "name", "locale", "status"};
    for (int c = 0; c < 6; c++) {
        json_object_object_add(o, keys[c], json_object_new_string(PQgetvalue(res, i, c)));
    }
    json_object_object_add(o, "email_verified",
                           json_object_new_boolean(PQgetvalue(res, i, 6)[0] == 't'));
    json_object_object_add(o, "org_id", org_str_or_null(res, i, 7));
    json_object_object_add(o, "role", org_str_or_null(res, i, 8));
    json_object_object_add(o, "org_name", org_str_or_null(res, i, 9));
    return o;
}

/* Columns of an AccountReview (alias a). */
#define REVIEW_COLS                                                                                \
    "a.id, a.kind, a.email, a.name, a.org_id, a.role, "                                            \
    "(extract(epoch FROM a.created_at) * 1000)::bigint, "                                          \
    "(extract(epoch FROM a.last_login_at) * 1000)::bigint, "                                       \
    "EXISTS (SELECT 1 FROM mfa_totp t WHERE t.account_id = a.id AND t.confirmed_at IS NOT NULL), " \
    "coalesce(a.locked_until > now(), false), "                                                    \
    "EXISTS (SELECT 1 FROM mfa_sms s WHERE s.account_id = a.id AND s.confirmed_at IS NOT NULL)"

static json_object *
org_review_json(svc_t *svc, PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object *mfa = json_object_new_array();
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "kind", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "email", json_object_new_string(PQgetvalue(res, i, 2)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 3)));
    json_object_object_add(o, "org_id", org_str_or_null(res, i, 4));
    json_object_object_add(o, "role", org_str_or_null(res, i, 5));
    json_object_object_add(o, "created_at", org_time(PQgetvalue(res, i, 6)));
    json_object_object_add(o, "last_login_at",
                           PQgetisnull(res, i, 7) ? NULL : org_time(PQgetvalue(res, i, 7)));
    if (PQgetvalue(res, i, 8)[0] == 't') {
        json_object_array_add(mfa, json_object_new_string("totp"));
    }
    if (PQgetvalue(res, i, 10)[0] == 't') {
        json_object_array_add(mfa, json_object_new_string("sms"));
    }
    json_object_object_add(o, "mfa_methods", mfa);
    json_object_object_add(o, "locked", json_object_new_boolean(PQgetvalue(res, i, 9)[0] == 't'));
    return o;
}

static void
org_records_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_object_array_add(items, org_record_json(NULL, res, i));
    }
    json_object_object_add(out, "items", items);
    h2s_respond_json(o->a->req, 200, out);
}

/*
 * Member "ids" of |body| (1 to 200 UUIDs, checked by the caller's field
 * table) as a Postgres uuid[] literal (caller frees). NULL when answered
 * (400 naming "ids", or 500).
 */
static char *
org_id_array(h2s_req_t *req, json_object *body, const char *what)
{
    json_object *ids;
    size_t n = json_object_object_get_ex(body, "ids", &ids) ? json_object_array_length(ids) : 0;
    char *list = calloc(1, n * 37 + 3);
    if (list == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    size_t off = 0;
    list[off++] = '{';
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(ids, i);
        const char *id =
            json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        if (!org_id_ok(id)) {
            free(list);
            org_field_error(req, "ids", what);
            return NULL;
        }
        if (i > 0) {
            list[off++] = ',';
        }
        memcpy(list + off, id, 36);
        off += 36;
    }
    list[off++] = '}';
    list[off] = '\0';
    return list;
}

/* Runs |sql| with the uuid[] of body member "ids" ({ids: [...]}, 1 to 200), then |done|. */
static void
org_ids_query(svc_t *svc, h2s_req_t *req, org_ctx_t *o, const char *sql, const char *what,
              db_cb done)
{
    static const jx_field_t fields[] = {
        {"ids", JX_ARRAY, 1, 0, -1, 1, 200, NULL},
    };
    json_object *body;

    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    char *list = org_id_array(req, body, what);
    json_object_put(body);
    if (list == NULL) {
        return;
    }
    const char *p[] = {list};
    int rc = db_query(svc_db(svc), sql, 1, p, done, o);
    free(list);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* POST /internal/v1/accounts/lookup {ids: [...]}: unknown and deleted ids are left out. */
static void
org_internal_lookup(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] = "SELECT " RECORD_COLS " FROM accounts "
                              "WHERE id = ANY ($1::uuid[]) AND status <> 'deleted' ORDER BY id";
    org_ctx_t *o = org_ctx_new(svc, req, sess);

    if (o != NULL) {
        org_ids_query(svc, req, o, sql, "every item must be an account id (UUID)",
                      org_records_done);
    }
}

static void
org_names_done(int rc, PGresult *res, void *ud)
{
    static const char *const keys[] = {"id", "name", "status"};
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_object *it = json_object_new_object();
        for (int k = 0; k < 3; k++) {
            json_object_object_add(it, keys[k], json_object_new_string(PQgetvalue(res, i, k)));
        }
        json_object_array_add(items, it);
    }
    json_object_object_add(out, "items", items);
    h2s_respond_json(o->a->req, 200, out);
}

/* POST /internal/v1/orgs/lookup {ids: [...]}: id, name, status; unknown ids are left out. */
static void
org_internal_org_lookup(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT id, name, status FROM organizations WHERE id = ANY ($1::uuid[]) ORDER BY id";
    org_ctx_t *o = org_ctx_new(svc, req, sess);

    if (o != NULL) {
        org_ids_query(svc, req, o, sql, "every item must be an organization id (UUID)",
                      org_names_done);
    }
}

static void
org_admins_done(int rc, PGresult *res, void *ud)
{
    org_ctx_t *o = ud;

    if (rc != PHR_OK) {
        svc_respond_error(o->a->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        svc_respond_error(o->a->req, PHR_ENOTFOUND, "no such organization");
        return;
    }
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        if (!PQgetisnull(res, i, 0)) { /* an org without active admins has one NULL row */
            json_object_array_add(items, org_contact_json(o->a->svc, res, i));
        }
    }
    json_object_object_add(out, "items", items);
    json_object_object_add(out, "next_cursor", NULL);
    h2s_respond_json(o->a->req, 200, out);
}

/* GET /internal/v1/orgs/{org_id}/admins: the active admins' contacts (incident notices). */
static void
org_internal_admins(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT " CONTACT_COLS " FROM organizations o LEFT JOIN accounts a ON a.org_id = o.id "
        "AND a.kind = 'staff' AND a.role = 'admin' AND a.status = 'active'" CONTACT_SMS_JOIN
        "WHERE o.id = $1 ORDER BY a.id";
    const char *id = h2s_req_param(req, "org_id");

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        return;
    }
    if (!org_id_ok(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such organization");
        return;
    }
    const char *p[] = {id};
    int rc = db_query(svc_db(svc), sql, 1, p, org_admins_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* GET /internal/v1/accounts?org_id=&kind=&limit=&cursor=: active accounts by id (review). */
static void
org_internal_accounts(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char *const kinds[] = {"patient", "staff", "operator", NULL};
    static const char sql[] =
        "SELECT " REVIEW_COLS " FROM accounts a WHERE a.status = 'active' "
        "AND ($1::uuid IS NULL OR a.org_id = $1::uuid) AND ($2::text IS NULL OR a.kind = $2) "
        "AND ($3::uuid IS NULL OR a.id > $3::uuid) ORDER BY a.id LIMIT $4::int";
    char kind[16];

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        return;
    }
    int has_org = qry_get(h2s_req_query(req), "org_id", o->org_id, sizeof(o->org_id));
    if (has_org != 0 && (has_org < 0 || !org_id_ok(o->org_id))) {
        org_field_error(req, "org_id", "an organization id (UUID)");
        return;
    }
    int has_kind = qry_get(h2s_req_query(req), "kind", kind, sizeof(kind));
    int kind_ok = 0;
    for (size_t i = 0; has_kind > 0 && kinds[i] != NULL; i++) {
        kind_ok |= strcmp(kind, kinds[i]) == 0;
    }
    if (has_kind != 0 && !kind_ok) {
        org_field_error(req, "kind", "one of patient, staff, operator");
        return;
    }
    if (!org_id_page(o)) {
        return;
    }
    o->page_row = org_review_json;
    const char *p[] = {has_org > 0 ? o->org_id : NULL, has_kind > 0 ? kind : NULL,
                       o->cur_id[0] ? o->cur_id : NULL, o->seat_limit};
    int rc = db_query(svc_db(svc), sql, 4, p, org_id_page_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* GET /internal/v1/contacts?audience=all|org_admins&limit=&cursor=: active accounts by id. */
static void
org_internal_contacts(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT " CONTACT_COLS " FROM accounts a" CONTACT_SMS_JOIN "WHERE a.status = 'active' "
        "AND ($1::text = 'all' OR (a.kind = 'staff' AND a.role = 'admin')) "
        "AND ($2::uuid IS NULL OR a.id > $2::uuid) ORDER BY a.id LIMIT $3::int";
    char audience[16];

    org_ctx_t *o = org_ctx_new(svc, req, sess);
    if (o == NULL) {
        return;
    }
    int has = qry_get(h2s_req_query(req), "audience", audience, sizeof(audience));
    if (has == 0) {
        snprintf(audience, sizeof(audience), "all");
    } else if (has < 0 || (strcmp(audience, "all") != 0 && strcmp(audience, "org_admins") != 0)) {
        org_field_error(req, "audience", "all or org_admins");
        return;
    }
    if (!org_id_page(o)) {
        return;
    }
    o->page_row = org_contact_json;
    const char *p[] = {audience, o->cur_id[0] ? o->cur_id : NULL, o->seat_limit};
    int rc = db_query(svc_db(svc), sql, 3, p, org_id_page_done, o);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

#define ORG_CALLERS_ANY_PEER                                                                       \
    (SVC_CALLER(CFG_SVC_RECORDS) | SVC_CALLER(CFG_SVC_NOTIFICATION) | SVC_CALLER(CFG_SVC_AUDIT))

static const svc_route_t table[] = {
    {"GET", "/api/v1/admin/orgs", org_list, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/admin/orgs", org_create, SVC_SESSION | SVC_NEEDS_DB, 4096},
    {"PATCH", "/api/v1/admin/orgs/{org_id}", org_update, SVC_SESSION | SVC_NEEDS_DB, 1024},
    {"GET", "/api/v1/orgs/{org_id}", org_get, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/orgs/{org_id}/staff", org_staff_list, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/orgs/{org_id}/staff", org_staff_create, SVC_SESSION | SVC_NEEDS_DB, 4096},
    {"PATCH", "/api/v1/orgs/{org_id}/staff/{account_id}", org_staff_update,
     SVC_SESSION | SVC_NEEDS_DB, 1024},
    {"DELETE", "/api/v1/orgs/{org_id}/staff/{account_id}", org_staff_delete,
     SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/orgs/{org_id}/staff/{account_id}/unlock", org_staff_unlock,
     SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/orgs/{org_id}/staff/{account_id}/reset-mfa", org_staff_reset_mfa,
     SVC_SESSION | SVC_NEEDS_DB, 0},
    /* Internal routes: the callers are the contract's x-phr-callers. */
    {"POST", "/internal/v1/accounts/lookup", org_internal_lookup,
     SVC_INTERNAL | SVC_NEEDS_DB | ORG_CALLERS_ANY_PEER, 16384},
    {"POST", "/internal/v1/orgs/lookup", org_internal_org_lookup,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_RECORDS), 16384},
    {"GET", "/internal/v1/accounts", org_internal_accounts,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUDIT), 0},
    {"GET", "/internal/v1/orgs/{org_id}/admins", org_internal_admins,
     SVC_INTERNAL | SVC_NEEDS_DB | ORG_CALLERS_ANY_PEER, 0},
    {"GET", "/internal/v1/contacts", org_internal_contacts,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_NOTIFICATION), 0},
};

const svc_routes_t auth_org_routes = SVC_ROUTES(table);
