/*
 * share.c - sharing by consent: an organization's single-use invitation
 * codes (staff), the patient's links to organizations (accept a code, list,
 * revoke), and the helpers of share.h. Every write and its audit event
 * commit in one transaction.
 */
#include "share.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "outbox.h"
#include "query.h"
#include "records.h"
#include "timeutil.h"
#include "uuid.h"

#define SHARE_CODE_TRIES 3

static const char rsh_code_alphabet[] = RSH_CODE_ALPHABET;
#define SHARE_TERMS_DEFAULT "1"
#define SHARE_CURSOR_MAX 512


/* ---- context and access ------------------------------------------------- */

static void
rsh_ctx_free(void *arg)
{
    rsh_ctx_t *c = arg;

    json_object_put(c->row);
    if (c->ext_free != NULL) {
        c->ext_free(c->ext);
    }
    explicit_bzero(c, sizeof(*c));
    free(c);
}

rsh_ctx_t *
rsh_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rsh_ctx_t *c = calloc(1, sizeof(*c));

    if (c == NULL || h2s_req_add_cleanup(req, rsh_ctx_free, c) != PHR_OK) {
        free(c);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    c->svc = svc;
    c->req = req;
    if (sess != NULL) {
        c->sess = *sess;
    }
    return c;
}

int
rsh_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    return h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields",
                               &errs);
}

int
rsh_uuid_ok(const char *id)
{
    return id != NULL && strlen(id) == UUID_STR_LEN && uuid_valid(id) &&
           strspn(id, "0123456789abcdef-") == UUID_STR_LEN;
}

int
rsh_staff_ok(rsh_ctx_t *c)
{
    const char *id = h2s_req_param(c->req, "org_id");

    if (strcmp(c->sess.kind, "staff") != 0) {
        svc_respond_error(c->req, PHR_EDENIED, "organization staff only");
        return 0;
    }
    if (!rsh_uuid_ok(id) || strcmp(id, c->sess.org_id) != 0) {
        svc_respond_error(c->req, PHR_ENOTFOUND, "no such organization");
        return 0;
    }
    memcpy(c->org_id, id, sizeof(c->org_id));
    return 1;
}

int
rsh_patient_ok(rsh_ctx_t *c)
{
    if (strcmp(c->sess.kind, "patient") != 0 || !rsh_uuid_ok(c->sess.account_id)) {
        svc_respond_error(c->req, PHR_EDENIED, "patients only");
        return 0;
    }
    memcpy(c->patient_id, c->sess.account_id, sizeof(c->patient_id));
    return 1;
}

int
rsh_path_id(rsh_ctx_t *c, const char *name, char *out, const char *what)
{
    const char *id = h2s_req_param(c->req, name);

    if (!rsh_uuid_ok(id)) {
        svc_respond_error(c->req, PHR_ENOTFOUND, what);
        return 0;
    }
    memcpy(out, id, UUID_STR_LEN + 1);
    return 1;
}


/* ---- cursors: base64url of "<key>|<uuid>" -------------------------------- */

void
rsh_cursor(const char *key, const char *id, char *out, size_t cap)
{
    unsigned char raw[RSH_KEY_MAX + 40], enc[SHARE_CURSOR_MAX + 8];
    int n = snprintf((char *)raw, sizeof(raw), "%s|%s", key, id);

    out[0] = '\0';
    if (n < 0 || (size_t)n >= sizeof(raw) || ((size_t)n + 2) / 3 * 4 + 1 > sizeof(enc)) {
        return;
    }
    int len = EVP_EncodeBlock(enc, raw, n);
    size_t j = 0;
    for (int i = 0; i < len && enc[i] != '=' && j + 1 < cap; i++) {
        out[j++] = (char)(enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i]);
    }
    out[j] = '\0';
}

/* Decodes a cursor into |key| and |id|. PHR_OK or PHR_EINVAL (tampered). */
int
rsh_cursor_parse(const char *in, int int_key, char *key, char *id)
{
    unsigned char buf[SHARE_CURSOR_MAX + 4], raw[SHARE_CURSOR_MAX + 4];
    char again[SHARE_CURSOR_MAX + 1];
    size_t n = strlen(in);

    if (n == 0 || n > SHARE_CURSOR_MAX || n % 4 == 1 ||
        strspn(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != n) {
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : (unsigned char)in[i];
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++) {
        buf[n + i] = '=';
    }
    int len = EVP_DecodeBlock(raw, buf, (int)(n + pad));
    if (len < 0) {
        return PHR_EINVAL;
    }
    len -= (int)pad;
    raw[len] = '\0';
    if (memchr(raw, '\0', (size_t)len) != NULL) {
        return PHR_EINVAL;
    }
    char *bar = strrchr((char *)raw, '|');
    if (bar == NULL || (size_t)(bar - (char *)raw) > RSH_KEY_MAX || !rsh_uuid_ok(bar + 1)) {
        return PHR_EINVAL;
    }
    *bar = '\0';
    size_t kl = strlen((char *)raw);
    if (!jx_utf8_valid((char *)raw, kl)) {
        return PHR_EINVAL;
    }
    if (int_key && (kl == 0 || kl > 18 || strspn((char *)raw, "0123456789") != kl)) {
        return PHR_EINVAL;
    }
    memcpy(key, raw, kl + 1);
    memcpy(id, bar + 1, UUID_STR_LEN + 1);
    /* Only the canonical encoding: no alternative spellings of a cursor. */
    rsh_cursor(key, id, again, sizeof(again));
    return strcmp(again, in) == 0 ? PHR_OK : PHR_EINVAL;
}

int
rsh_page(rsh_ctx_t *c, int int_key)
{
    char num[16] = {0}, cursor[SHARE_CURSOR_MAX + 2] = {0};
    int rc = qry_get(h2s_req_query(c->req), "limit", num, sizeof(num));

    c->page_limit = RSH_PAGE_DEFAULT;
    if (rc != 0) {
        char *end;
        long n = rc > 0 && num[0] != '\0' ? strtol(num, &end, 10) : 0;
        if (rc < 0 || num[0] == '\0' || *end != '\0' || n < 1 || n > RSH_PAGE_MAX) {
            rsh_field_error(c->req, "limit", "an integer from 1 to 200");
            return 0;
        }
        c->page_limit = (int)n;
    }
    rc = qry_get(h2s_req_query(c->req), "cursor", cursor, sizeof(cursor));
    if (rc != 0 && (rc < 0 || rsh_cursor_parse(cursor, int_key, c->cur_key, c->cur_id) != 0)) {
        rsh_field_error(c->req, "cursor", "not a cursor of this list");
        return 0;
    }
    return 1;
}

json_object *
rsh_time(const char *ms)
{
    char buf[TU_JST_LEN];
    if (ms == NULL || ms[0] == '\0') {
        return NULL;
    }
    tu_format_jst(strtoll(ms, NULL, 10), buf, sizeof(buf));
    return json_object_new_string(buf);
}

json_object *
rsh_col_str(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : json_object_new_string(PQgetvalue(res, row, col));
}

/* ---- transactions ------------------------------------------------------- */

void
rsh_note(rsh_ctx_t *c, int rc)
{
    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
}

static void
rsh_stmt_done(int rc, PGresult *res, void *ud)
{
    rsh_note(ud, rc);
}

static void
rsh_begun(int rc, db_txn_t *txn, void *ud)
{
    rsh_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, "the database is unavailable; retry later");
        return;
    }
    c->txn = txn;
    c->step(c);
}

void
rsh_begin(rsh_ctx_t *c, rsh_step_fn step)
{
    c->step = step;
    int rc = db_txn_begin(svc_db(c->svc), rsh_begun, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, "the database is unavailable; retry later");
    }
}

void
rsh_q(rsh_ctx_t *c, const char *sql, int n, const char *const *p, db_cb cb)
{
    if (c->rc != PHR_OK || c->status != 0) {
        return;
    }
    rsh_note(c, db_txn_query(c->txn, sql, n, p, cb != NULL ? cb : rsh_stmt_done, c));
}

void
rsh_audit(rsh_ctx_t *c, aev_t *ev)
{
    char event_id[AEV_ID_LEN];
    char *json = aev_json(ev, event_id);

    if (json == NULL) {
        rsh_note(c, PHR_ENOMEM);
        return;
    }
    if (c->rc == PHR_OK && c->status == 0) {
        rsh_note(c, outbox_add(c->txn, "audit", event_id, json, rsh_stmt_done, c));
    }
    free(json);
}

void
rsh_aev(rsh_ctx_t *c, aev_t *ev, const char *action, const char *type, const char *id)
{
    aev_init(ev, "records", action, c->req, &c->sess);
    ev->target_type = type;
    ev->target_id = id;
    ev->target_org_id = c->org_id[0] != '\0' ? c->org_id : NULL;
}

void
rsh_refuse(rsh_ctx_t *c, int status, const char *code, const char *detail)
{
    if (c->status == 0) {
        c->status = status;
        c->code = code;
        c->detail = detail;
    }
}

static void
rsh_end_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;

    c->txn = NULL;
    if (c->status == 0) {
        rsh_note(c, rc);
    }
    c->done(c);
}

void
rsh_end(rsh_ctx_t *c, rsh_step_fn done)
{
    c->done = done;
    int rc = db_txn_end(c->txn, c->rc == PHR_OK && c->status == 0, rsh_end_done, c);
    if (rc != PHR_OK) {
        c->txn = NULL;
        rsh_note(c, rc);
        done(c);
    }
}

int
rsh_failed(rsh_ctx_t *c, const char *conflict_code, const char *what)
{
    if (c->rc != PHR_OK) {
        if (c->rc == PHR_ECONFLICT && conflict_code != NULL) {
            h2s_respond_problem(c->req, 409, conflict_code, what, NULL);
        } else {
            if (c->rc != PHR_ECONFLICT && c->rc != PHR_EUNAVAIL && c->rc != PHR_ETIMEDOUT) {
                log_error("records: %s: %s", h2s_req_route(c->req), phr_err_str(c->rc));
            }
            svc_respond_error(c->req, c->rc == PHR_ECONFLICT ? PHR_EUNAVAIL : c->rc, "retry later");
        }
        return 1;
    }
    if (c->status != 0) {
        if (c->status == 404) {
            svc_respond_error(c->req, PHR_ENOTFOUND, c->detail);
        } else {
            h2s_respond_problem(c->req, c->status, c->code, c->detail, NULL);
        }
        return 1;
    }
    outbox_kick(svc_outbox(c->svc));
    return 0;
}

/* ---- invitations (staff) ------------------------------------------------ */

/* Columns of an Invitation (alias i). */
#define SHARE_INV_COLS                                                                             \
    "i.id, i.code, i.note, (extract(epoch FROM i.created_at) * 1000)::bigint, "                    \
    "(extract(epoch FROM i.expires_at) * 1000)::bigint, i.created_by"

typedef struct {
    char code[RSH_CODE_LEN + 1];
    char *note; /* NULL: none */
    int tries;
} share_inv_t;

static void
share_inv_free(void *arg)
{
    share_inv_t *s = arg;
    if (s != NULL) {
        free(s->note);
        free(s);
    }
}

static json_object *
share_inv_json(const PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "code", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "note", rsh_col_str(res, i, 2));
    json_object_object_add(o, "created_at", rsh_time(PQgetvalue(res, i, 3)));
    json_object_object_add(o, "expires_at", rsh_time(PQgetvalue(res, i, 4)));
    json_object_object_add(o, "created_by", json_object_new_string(PQgetvalue(res, i, 5)));
    return o;
}

/*
 * A new code: 8 characters of rsh_code_alphabet from RAND_bytes, rejecting
 * bytes >= 248 (8 * 31) so that every character is equally likely.
 */
int
rsh_code_new(char *out)
{
    unsigned char buf[32];
    size_t o = 0;
    const size_t limit = 256 - 256 % (sizeof(rsh_code_alphabet) - 1);

    while (o < RSH_CODE_LEN) {
        if (RAND_bytes(buf, sizeof(buf)) != 1) {
            return PHR_EGENERIC;
        }
        for (size_t i = 0; i < sizeof(buf) && o < RSH_CODE_LEN; i++) {
            if (buf[i] < limit) {
                out[o++] = rsh_code_alphabet[buf[i] % (sizeof(rsh_code_alphabet) - 1)];
            }
        }
    }
    out[o] = '\0';
    explicit_bzero(buf, sizeof(buf));
    return PHR_OK;
}

static void share_inv_create_step(rsh_ctx_t *c);

static void
share_inv_created(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 1) {
        c->row = share_inv_json(res, 0);
    }
}

static void
share_inv_create_done(rsh_ctx_t *c)
{
    share_inv_t *s = c->ext;

    if (c->rc == PHR_ECONFLICT && s->tries < SHARE_CODE_TRIES) {
        /* A code already taken (about 1 in 10^11): draw another one. */
        c->rc = PHR_OK;
        rsh_begin(c, share_inv_create_step);
        return;
    }
    if (rsh_failed(c, NULL, "the invitation could not be created")) {
        return;
    }
    json_object *row = c->row;
    c->row = NULL;
    h2s_respond_json(c->req, 201, row);
}

static void
share_inv_create_step(rsh_ctx_t *c)
{
    static const char sql[] =
        "INSERT INTO invitations AS i (id, org_id, code, note, created_by, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, now() + interval '7 days') RETURNING " SHARE_INV_COLS;
    share_inv_t *s = c->ext;
    aev_t ev;

    s->tries++;
    if (uuid7(c->id) != PHR_OK || rsh_code_new(s->code) != PHR_OK) {
        rsh_note(c, PHR_EGENERIC);
    }
    const char *p[] = {c->id, c->org_id, s->code, s->note, c->sess.account_id};
    rsh_q(c, sql, 5, p, share_inv_created);
    rsh_aev(c, &ev, "records.invitation.create", "invitation", c->id);
    rsh_audit(c, &ev);
    rsh_end(c, share_inv_create_done);
}

/* POST /api/v1/orgs/{org_id}/invitations {note?} */
static void
share_inv_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"note", JX_STRING, 0, 0, -1, 0, 200, NULL},
    };
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);
    json_object *body = NULL;
    size_t len;

    if (c == NULL || !rsh_staff_ok(c)) {
        return;
    }
    share_inv_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    c->ext = s;
    c->ext_free = share_inv_free;
    /* The body is optional. */
    h2s_req_body(req, &len);
    if (len > 0) {
        if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
            return;
        }
        const char *note = jx_get_str(body, "note", NULL);
        if (note != NULL && (s->note = strdup(note)) == NULL) {
            json_object_put(body);
            svc_respond_error(req, PHR_ENOMEM, NULL);
            return;
        }
        json_object_put(body);
    }
    rsh_begin(c, share_inv_create_step);
}

static void
share_inv_list_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    char cursor[SHARE_CURSOR_MAX + 1];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < c->page_limit; i++) {
        json_object_array_add(items, share_inv_json(res, i));
    }
    json_object_object_add(out, "items", items);
    if (n > c->page_limit) {
        rsh_cursor("0", PQgetvalue(res, c->page_limit - 1, 0), cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor",
                           n > c->page_limit ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(c->req, 200, out);
}

/* GET /api/v1/orgs/{org_id}/invitations: open ones, newest first (ids are UUIDv7). */
static void
share_inv_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] = "SELECT " SHARE_INV_COLS " FROM invitations i "
                              "WHERE i.org_id = $1 AND i.used_at IS NULL AND "
                              "i.cancelled_at IS NULL AND i.expires_at > now() AND "
                              "($2::uuid IS NULL OR i.id < $2::uuid) "
                              "ORDER BY i.id DESC LIMIT $3::int";
    char lim[16];
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_staff_ok(c) || !rsh_page(c, 1)) {
        return;
    }
    snprintf(lim, sizeof(lim), "%d", c->page_limit + 1);
    const char *p[] = {c->org_id, c->cur_id[0] ? c->cur_id : NULL, lim};
    int rc = db_query(svc_db(svc), sql, 3, p, share_inv_list_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
share_found(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 0) {
        rsh_refuse(c, 404, "not_found", "no such open invitation");
    }
}

static void
share_no_content(rsh_ctx_t *c)
{
    if (!rsh_failed(c, NULL, "the change could not be saved")) {
        h2s_respond(c->req, 204, NULL, NULL, 0);
    }
}

static void
share_inv_cancel_audit(rsh_ctx_t *c)
{
    aev_t ev;

    if (c->status == 0) {
        rsh_aev(c, &ev, "records.invitation.cancel", "invitation", c->id);
        rsh_audit(c, &ev);
    }
    rsh_end(c, share_no_content);
}

static void
share_inv_cancelled(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    share_found(rc, res, c);
    share_inv_cancel_audit(c);
}

static void
share_inv_cancel_step(rsh_ctx_t *c)
{
    static const char sql[] =
        "UPDATE invitations SET cancelled_at = now() WHERE id = $1 AND org_id = $2 AND "
        "used_at IS NULL AND cancelled_at IS NULL AND expires_at > now() RETURNING id";
    const char *p[] = {c->id, c->org_id};

    rsh_q(c, sql, 2, p, share_inv_cancelled);
    if (c->rc != PHR_OK) {
        rsh_end(c, share_no_content);
    }
}

/* DELETE /api/v1/orgs/{org_id}/invitations/{invitation_id} */
static void
share_inv_cancel(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_staff_ok(c) ||
        !rsh_path_id(c, "invitation_id", c->id, "no such open invitation")) {
        return;
    }
    rsh_begin(c, share_inv_cancel_step);
}

/* ---- links (patient) ---------------------------------------------------- */

/* Columns of a Link (alias l). */
#define SHARE_LINK_COLS                                                                            \
    "l.org_id, (extract(epoch FROM l.linked_at) * 1000)::bigint, l.terms_version, "                \
    "(extract(epoch FROM l.linked_at) * 1000000)::bigint"

typedef struct {
    char code[RSH_CODE_LEN + 1];
    char terms[33 * 4];
    char inv_id[37];
} share_link_t;

static void
share_link_free(void *arg)
{
    free(arg);
}

/* A Link; org_name is null until share_link_names fills it from auth. */
static json_object *
share_link_json(const PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "org_id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "org_name", NULL);
    json_object_object_add(o, "linked_at", rsh_time(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "terms_version", json_object_new_string(PQgetvalue(res, i, 2)));
    return o;
}

/* Normalises a typed code (case-insensitive; spaces and hyphens ignored). 1 when well formed. */
int
rsh_code_normalise(const char *in, char *out)
{
    size_t o = 0;

    for (const char *p = in; *p != '\0'; p++) {
        char ch = *p;
        if (ch == ' ' || ch == '-') {
            continue;
        }
        if (ch >= 'a' && ch <= 'z') {
            ch = (char)(ch - 'a' + 'A');
        }
        if (o >= RSH_CODE_LEN || strchr(rsh_code_alphabet, ch) == NULL || ch == '\0') {
            return 0;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return o == RSH_CODE_LEN;
}

static void
share_link_answer(rsh_ctx_t *c)
{
    if (rsh_failed(c, NULL, "the link could not be saved")) {
        return;
    }
    json_object *row = c->row;
    c->row = NULL;
    h2s_respond_json(c->req, 201, row);
}

/* The link row (none: already linked, 409); then the invitation is used, audited, committed. */
static void
share_link_saved(int rc, PGresult *res, void *ud)
{
    static const char use_sql[] =
        "UPDATE invitations SET used_at = now(), used_by = $2 WHERE id = $1";
    rsh_ctx_t *c = ud;
    share_link_t *s = c->ext;
    aev_t ev;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 1) {
        c->row = share_link_json(res, 0);
        const char *p[] = {s->inv_id, c->patient_id};
        rsh_q(c, use_sql, 2, p, NULL);
        rsh_aev(c, &ev, "records.link.create", "org", c->org_id);
        ev.patient_id = c->patient_id;
        ev.details = json_object_new_object();
        json_object_object_add(ev.details, "terms_version", json_object_new_string(s->terms));
        json_object_object_add(ev.details, "invitation_id", json_object_new_string(s->inv_id));
        rsh_audit(c, &ev);
    } else if (rc == PHR_OK) {
        rsh_refuse(c, 409, "already_linked", "you already share with this organization");
    }
    rsh_end(c, share_link_answer);
}

/* The invitation row (locked): id, org_id, open. */
static void
share_link_inv(int rc, PGresult *res, void *ud)
{
    static const char link_sql[] =
        "INSERT INTO links AS l (patient_id, org_id, terms_version) VALUES ($1, $2, $3) "
        "ON CONFLICT (patient_id, org_id) DO UPDATE SET linked_at = now(), "
        "terms_version = EXCLUDED.terms_version, revoked_at = NULL "
        "WHERE l.revoked_at IS NOT NULL RETURNING " SHARE_LINK_COLS;
    rsh_ctx_t *c = ud;
    share_link_t *s = c->ext;

    rsh_note(c, rc);
    if (c->rc == PHR_OK && (PQntuples(res) != 1 || PQgetvalue(res, 0, 2)[0] != 't')) {
        rsh_refuse(c, 422, "invalid_code", "the code is unknown, used, cancelled or expired");
    }
    if (c->rc != PHR_OK || c->status != 0) {
        rsh_end(c, share_link_answer);
        return;
    }
    snprintf(s->inv_id, sizeof(s->inv_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(c->org_id, sizeof(c->org_id), "%s", PQgetvalue(res, 0, 1));
    const char *p[] = {c->patient_id, c->org_id, s->terms};
    rsh_q(c, link_sql, 3, p, share_link_saved);
    if (c->rc != PHR_OK) {
        rsh_end(c, share_link_answer);
    }
}

static void
share_link_step(rsh_ctx_t *c)
{
    static const char sql[] =
        "SELECT id, org_id, used_at IS NULL AND cancelled_at IS NULL AND expires_at > now() "
        "FROM invitations WHERE code = $1 FOR UPDATE";
    share_link_t *s = c->ext;
    const char *p[] = {s->code};

    rsh_q(c, sql, 1, p, share_link_inv);
    if (c->rc != PHR_OK) {
        rsh_end(c, share_link_answer);
    }
}

/* POST /api/v1/me/links {code, terms_version?} */
static void
share_link_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"code", JX_STRING, 1, 0, -1, 8, 16, NULL},
        {"terms_version", JX_STRING, 0, 0, -1, 1, 32, NULL},
    };
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);
    json_object *body;

    if (c == NULL || !rsh_patient_ok(c)) {
        return;
    }
    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    share_link_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        json_object_put(body);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    c->ext = s;
    c->ext_free = share_link_free;
    int ok = rsh_code_normalise(jx_get_str(body, "code", ""), s->code);
    const char *terms = jx_get_str(body, "terms_version", SHARE_TERMS_DEFAULT);
    snprintf(s->terms, sizeof(s->terms), "%s", terms);
    json_object_put(body);
    if (!ok) {
        rsh_field_error(req, "code", "8 characters of 23456789ABCDEFGHJKMNPQRSTUVWXYZ");
        return;
    }
    if (!sess->profile.email_verified) {
        h2s_respond_problem(req, 403, "email_not_verified",
                            "verify your e-mail address before sharing your records", NULL);
        return;
    }
    rsh_begin(c, share_link_step);
}

/* Auth's answer: each item's org_name from the matching organization. */
static void
share_link_names_done(int rc, const hcli_resp_t *resp, void *ud)
{
    rsh_ctx_t *c = ud;
    json_object *body = NULL, *orgs, *items;

    if (rc != PHR_OK || resp->status != 200 ||
        jx_parse(resp->body, resp->body_len, 8, &body, NULL) != PHR_OK ||
        !json_object_object_get_ex(body, "items", &orgs) ||
        !json_object_is_type(orgs, json_type_array)) {
        log_error("records: organization lookup failed: %s %d",
                  rc != PHR_OK ? phr_err_str(rc) : "status", rc == PHR_OK ? resp->status : 0);
        json_object_put(body);
        svc_respond_error(c->req, PHR_EUNAVAIL, "organization names are unavailable; retry later");
        return;
    }
    json_object_object_get_ex(c->row, "items", &items);
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        const char *id = jx_get_str(it, "org_id", "");
        for (size_t k = 0; k < json_object_array_length(orgs); k++) {
            json_object *org = json_object_array_get_idx(orgs, k);
            if (strcmp(jx_get_str(org, "id", ""), id) == 0) {
                json_object_object_add(it, "org_name",
                                       json_object_new_string(jx_get_str(org, "name", "")));
                break;
            }
        }
    }
    json_object_put(body);
    json_object *out = c->row;
    c->row = NULL;
    h2s_respond_json(c->req, 200, out);
}

/* Asks auth for the names of the orgs of c->row's items (a page: at most 200). */
static void
share_link_names(rsh_ctx_t *c)
{
    json_object *items, *ids = json_object_new_array();

    json_object_object_get_ex(c->row, "items", &items);
    if (json_object_array_length(items) == 0) {
        json_object_put(ids);
        json_object *out = c->row;
        c->row = NULL;
        h2s_respond_json(c->req, 200, out);
        return;
    }
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        json_object_array_add(ids, json_object_new_string(jx_get_str(it, "org_id", "")));
    }
    json_object *req = json_object_new_object();
    json_object_object_add(req, "ids", ids);
    size_t len;
    const char *txt = jx_to_string(req, &len);
    hcli_t *auth = svc_peer(c->svc, CFG_SVC_AUTH);
    int rc = auth != NULL && txt != NULL
                 ? hcli_request(auth, "POST", "/internal/v1/orgs/lookup", "application/json", txt,
                                len, h2s_req_id(c->req), share_link_names_done, c)
                 : PHR_EUNAVAIL;
    json_object_put(req);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, PHR_EUNAVAIL, "organization names are unavailable; retry later");
    }
}

static void
share_link_list_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    char cursor[SHARE_CURSOR_MAX + 1];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < c->page_limit; i++) {
        json_object_array_add(items, share_link_json(res, i));
    }
    json_object_object_add(out, "items", items);
    if (n > c->page_limit) {
        rsh_cursor(PQgetvalue(res, c->page_limit - 1, 3), PQgetvalue(res, c->page_limit - 1, 0),
                   cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor",
                           n > c->page_limit ? json_object_new_string(cursor) : NULL);
    json_object_put(c->row);
    c->row = out;
    share_link_names(c);
}

/* GET /api/v1/me/links: active links, most recent first. */
static void
share_link_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT " SHARE_LINK_COLS " FROM links l WHERE l.patient_id = $1 AND "
        "l.revoked_at IS NULL AND ($2::bigint IS NULL OR (l.linked_at, l.org_id) < "
        "('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::uuid)) "
        "ORDER BY l.linked_at DESC, l.org_id DESC LIMIT $4::int";
    char lim[16];
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_patient_ok(c) || !rsh_page(c, 1)) {
        return;
    }
    snprintf(lim, sizeof(lim), "%d", c->page_limit + 1);
    const char *p[] = {c->patient_id, c->cur_key[0] ? c->cur_key : NULL,
                       c->cur_id[0] ? c->cur_id : NULL, lim};
    int rc = db_query(svc_db(svc), sql, 4, p, share_link_list_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
share_link_revoked(int rc, PGresult *res, void *ud)
{
    static const char detach_sql[] =
        "WITH g AS (DELETE FROM group_members m USING groups g WHERE m.group_id = g.id AND "
        "g.org_id = $2 AND m.patient_id = $1) "
        "DELETE FROM category_members m USING categories k WHERE m.category_id = k.id AND "
        "k.org_id = $2 AND m.patient_id = $1";
    rsh_ctx_t *c = ud;
    aev_t ev;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 0) {
        rsh_refuse(c, 404, "not_found", "you do not share with this organization");
    }
    /* The org's groups and categories forget the patient along with the consent. */
    const char *p[] = {c->patient_id, c->org_id};
    rsh_q(c, detach_sql, 2, p, NULL);
    rsh_aev(c, &ev, "records.link.revoke", "org", c->org_id);
    ev.patient_id = c->patient_id;
    rsh_audit(c, &ev);
    rsh_end(c, share_no_content);
}

static void
share_link_revoke_step(rsh_ctx_t *c)
{
    static const char sql[] = "UPDATE links SET revoked_at = now() WHERE patient_id = $1 AND "
                              "org_id = $2 AND revoked_at IS NULL RETURNING org_id";
    const char *p[] = {c->patient_id, c->org_id};

    rsh_q(c, sql, 2, p, share_link_revoked);
    if (c->rc != PHR_OK) {
        rsh_end(c, share_no_content);
    }
}

/* DELETE /api/v1/me/links/{org_id}: the org's staff lose access with the commit. */
static void
share_link_revoke(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_patient_ok(c) ||
        !rsh_path_id(c, "org_id", c->org_id, "you do not share with this organization")) {
        return;
    }
    rsh_begin(c, share_link_revoke_step);
}

#define SHARE_STAFF (SVC_SESSION | SVC_NEEDS_DB)

static const svc_route_t share_routes[] = {
    {"POST", "/api/v1/orgs/{org_id}/invitations", share_inv_create, SHARE_STAFF, 4096},
    {"GET", "/api/v1/orgs/{org_id}/invitations", share_inv_list, SHARE_STAFF, 0},
    {"DELETE", "/api/v1/orgs/{org_id}/invitations/{invitation_id}", share_inv_cancel, SHARE_STAFF,
     0},
    {"POST", "/api/v1/me/links", share_link_create, SHARE_STAFF, 4096},
    {"GET", "/api/v1/me/links", share_link_list, SHARE_STAFF, 0},
    {"DELETE", "/api/v1/me/links/{org_id}", share_link_revoke, SHARE_STAFF, 0},
};

const svc_routes_t rec_share_routes = SVC_ROUTES(share_routes);
