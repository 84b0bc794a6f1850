/*
 * submit.c - POST /internal/v1/notifications (idempotent submit), GET
 * /internal/v1/notifications/{id} (status history) and notify_enqueue (notify.h).
 *
 * Submit: validate, render (a missing template variable is a 400 naming params.<name>),
 * answer a replay from the stored row (same key and body: the original 202; other body:
 * 422), resolve to.account_id at auth, count the per-recipient rate limit, then in one
 * transaction: a try-lock on the key (held by a concurrent duplicate: 409), re-check,
 * insert row + history + audit event (outbox). Nothing of params or the body is logged.
 */
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "deliver.h"
#include "err.h"
#include "hex.h"
#include "kind.h"
#include "log.h"
#include "notify.h"
#include "ratelimit.h"
#include "template.h"
#include "timeutil.h"
#include "uuid.h"

#define SUB_KEY_MAX 200
#define SUB_PARAM_MAX 4000
#define SUB_PARAMS_MAX 16

static const char *const sub_kinds[] = {"email_verification",
                                        "account_exists",
                                        "staff_onboarding",
                                        "password_reset",
                                        "password_changed",
                                        "account_locked",
                                        "mfa_changed",
                                        "sms_code",
                                        "maintenance_notice",
                                        "incident_notice",
                                        NULL};
static const char *const sub_channels[] = {"email", "sms", NULL};
static const char *const sub_locales[] = {"ja", "en", NULL};

static const jx_field_t sub_fields[] = {
    {"kind", JX_STRING, 1, 0, 0, 1, 40, sub_kinds},
    {"channel", JX_STRING, 1, 0, 0, 1, 8, sub_channels},
    {"to", JX_OBJECT, 1, 0, 0, 0, 0, NULL},
    {"locale", JX_STRING, 0, 0, 0, 2, 2, sub_locales},
    {"params", JX_OBJECT, 1, 0, 0, 0, 0, NULL},
};

static const jx_field_t sub_to_fields[] = {
    {"account_id", JX_STRING, 0, 0, 0, 36, 36, NULL},
    {"email", JX_STRING, 0, 0, 0, 3, 254, NULL},
    {"phone", JX_STRING, 0, 0, 0, 8, 16, NULL},
};

static const char sub_insert_sql[] =
    "WITH ins AS (INSERT INTO notifications (id, idempotency_key, request_sha256, kind, channel, "
    "to_account_id, to_address, locale, params, subject, body, notice_id, incident_id) "
    "VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8, $9::jsonb, $10, $11, $12::uuid, $13::uuid) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status), "
    "ev AS (INSERT INTO notification_events (notification_id, status) "
    "SELECT id, 'queued' FROM ins) "
    "SELECT id::text, status FROM ins";

static const char sub_existing_sql[] =
    "SELECT id::text, coalesce(request_sha256, '') FROM notifications WHERE idempotency_key = $1";

static const char sub_lock_sql[] =
    "SELECT pg_try_advisory_xact_lock(hashtextextended('notify:' || $1, 0)), "
    "(SELECT id::text FROM notifications WHERE idempotency_key = $1), "
    "(SELECT coalesce(request_sha256, '') FROM notifications WHERE idempotency_key = $1)";

/* ---- notify_enqueue ---- */

/* Checks |r| and renders it; on a refusal names the field in |field|. */
static int
notify_render(const notify_req_t *r, char **subject, char **body, char *field, size_t cap)
{
    const kind_t *k = kind_find(r->kind);
    int bit = kind_channel_bit(r->channel);
    char missing[48];

    *subject = *body = NULL;
    if (k == NULL) {
        snprintf(field, cap, "kind");
        return PHR_EINVAL;
    }
    if (bit == 0 || !(k->channels & bit)) {
        snprintf(field, cap, "channel");
        return PHR_EINVAL;
    }
    for (size_t i = 0; k->params[i] != NULL; i++) {
        json_object *v;
        if (r->params == NULL || !json_object_object_get_ex(r->params, k->params[i], &v) ||
            !json_object_is_type(v, json_type_string)) {
            snprintf(field, cap, "params.%s", k->params[i]);
            return PHR_EINVAL;
        }
    }
    const tpl_t *t = tpl_find(r->kind, r->channel, r->locale);
    if (t == NULL) {
        snprintf(field, cap, "kind");
        return PHR_EINVAL;
    }
    int rc = tpl_render(t, r->params, subject, body, missing, sizeof(missing));
    if (rc == PHR_EINVAL) {
        snprintf(field, cap, "params.%s", missing);
    }
    return rc;
}

static int
notify_enqueue_sha(svc_t *svc, db_txn_t *txn, const notify_req_t *r, const char *sha, char *id,
                   db_cb cb, void *ud)
{
    char field[64];
    char *subject = NULL, *body = NULL;
    int rc;

    if (r->to_address == NULL || r->to_address[0] == '\0' || r->idempotency_key == NULL ||
        r->idempotency_key[0] == '\0') {
        return PHR_EINVAL;
    }
    if ((rc = notify_render(r, &subject, &body, field, sizeof(field))) != PHR_OK) {
        return rc;
    }
    if (uuid7(id) != PHR_OK) {
        tpl_free_text(subject);
        tpl_free_text(body);
        return PHR_EGENERIC;
    }
    /* json-c serialises through a non-const pointer; nothing is changed */
    union {
        const json_object *c;
        json_object *m;
    } pobj = {.c = r->params};
    const char *params =
        pobj.m != NULL ? json_object_to_json_string_ext(pobj.m, JSON_C_TO_STRING_PLAIN) : "{}";
    const char *p[] = {id,
                       r->idempotency_key,
                       sha,
                       r->kind,
                       r->channel,
                       r->to_account_id,
                       r->to_address,
                       r->locale != NULL ? r->locale : "ja",
                       params,
                       subject,
                       body,
                       r->notice_id,
                       r->incident_id};
    rc = db_txn_query(txn, sub_insert_sql, 13, p, cb, ud);
    tpl_free_text(subject);
    tpl_free_text(body);
    return rc;
}

int
notify_enqueue(svc_t *svc, db_txn_t *txn, const notify_req_t *r, db_cb cb, void *ud)
{
    char id[UUID_STR_LEN + 1];

    return notify_enqueue_sha(svc, txn, r, NULL, id, cb, ud);
}

/* ---- POST /internal/v1/notifications ---- */

typedef enum {
    SUB_NONE,
    SUB_ACCEPTED, /* 202 with ctx->id */
    SUB_REPLAY,   /* 202 with the stored id */
    SUB_REUSED,   /* 422 */
    SUB_BUSY      /* 409 */
} sub_outcome_t;

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    json_object *body;
    const kind_t *kind;
    const char *channel;
    const char *locale;
    json_object *params;
    char key[SUB_KEY_MAX + 1];
    char sha[SHA256_DIGEST_LENGTH * 2 + 1];
    char account_id[UUID_STR_LEN + 1];
    char address[256];
    char id[UUID_STR_LEN + 1];
    db_txn_t *txn;
    int rc;
    sub_outcome_t outcome;
} sub_ctx_t;

static void
sub_ctx_free(void *arg)
{
    sub_ctx_t *c = arg;

    json_object_put(c->body);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

static void
sub_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};

    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
}

static int
sub_phone_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 8 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int
sub_email_ok(const char *s)
{
    const char *at = strchr(s, '@');

    if (at == NULL || at == s || strchr(at + 1, '@') != NULL || strchr(at, '.') == NULL) {
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || strchr("\"(),:;<>[\\]", *p) != NULL) {
            return 0;
        }
    }
    return 1;
}

static int
sub_param_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 32 || s[0] < 'a' || s[0] > 'z') {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Checks what the field table cannot; adds errors to |errs|. */
static void
sub_validate(sub_ctx_t *c, jx_errors_t *errs)
{
    json_object *to = json_object_object_get(c->body, "to");
    const char *acc = jx_get_str(to, "account_id", NULL);
    const char *email = jx_get_str(to, "email", NULL);
    const char *phone = jx_get_str(to, "phone", NULL);
    int bit = kind_channel_bit(c->channel);
    char field[80];

    if (jx_validate(to, sub_to_fields, sizeof(sub_to_fields) / sizeof(sub_to_fields[0]), 0, "to",
                    errs) != PHR_OK) {
        return;
    }
    if (acc != NULL && !uuid_valid(acc)) {
        jx_error_add(errs, "to.account_id", "a lower-case UUID");
    }
    if (email != NULL && !sub_email_ok(email)) {
        jx_error_add(errs, "to.email", "an e-mail address");
    }
    if (phone != NULL && !sub_phone_ok(phone)) {
        jx_error_add(errs, "to.phone", "an E.164 number (+819012345678)");
    }
    if (!(c->kind->channels & bit)) {
        jx_error_add(errs, "channel", "kind %s is not sent by %s", c->kind->kind, c->channel);
    } else if (bit == KIND_EMAIL && acc == NULL && email == NULL) {
        jx_error_add(errs, "to", "account_id or email is required for e-mail");
    } else if (bit == KIND_SMS && phone == NULL) {
        /* auth's account lookup carries no phone number */
        jx_error_add(errs, "to.phone", "required for SMS");
    }
    size_t n = 0;
    json_object_object_foreach(c->params, name, val)
    {
        n++;
        if (!sub_param_name_ok(name)) {
            jx_error_add(errs, "params", "parameter names match ^[a-z][a-z0-9_]{0,31}$");
        } else if (!json_object_is_type(val, json_type_string)) {
            snprintf(field, sizeof(field), "params.%s", name);
            jx_error_add(errs, field, "a string");
        } else if (jx_utf8_len(json_object_get_string(val)) > SUB_PARAM_MAX) {
            snprintf(field, sizeof(field), "params.%s", name);
            jx_error_add(errs, field, "at most %d characters", SUB_PARAM_MAX);
        } else if (bit == KIND_SMS && tpl_sms_param_max(name) > 0 &&
                   jx_utf8_len(json_object_get_string(val)) > tpl_sms_param_max(name)) {
            snprintf(field, sizeof(field), "params.%s", name);
            jx_error_add(errs, field, "at most %zu characters", tpl_sms_param_max(name));
        }
    }
    if (n > SUB_PARAMS_MAX) {
        jx_error_add(errs, "params", "at most %d parameters", SUB_PARAMS_MAX);
    }
    if (strcmp(c->kind->kind, "sms_code") == 0) {
        const char *code = jx_get_str(c->params, "code", "");
        int ok = strlen(code) == 6;
        for (size_t i = 0; ok && i < 6; i++) {
            ok = code[i] >= '0' && code[i] <= '9';
        }
        if (!ok && code[0] != '\0') {
            jx_error_add(errs, "params.code", "six digits");
        }
    }
    if (errs->n == 0) {
        /* a missing template variable: refused now, never a blank in the message */
        notify_req_t r = {
            .kind = c->kind->kind, .channel = c->channel, .locale = c->locale, .params = c->params};
        char *subject, *body;
        int rc = notify_render(&r, &subject, &body, field, sizeof(field));
        tpl_free_text(subject);
        tpl_free_text(body);
        if (rc == PHR_EINVAL) {
            jx_error_add(errs, field, "required by the %s template", c->kind->kind);
        }
    }
    if (acc != NULL) {
        snprintf(c->account_id, sizeof(c->account_id), "%s", acc);
    }
    snprintf(c->address, sizeof(c->address), "%s",
             bit == KIND_SMS ? (phone ? phone : "") : (email ? email : ""));
}

static void
sub_answer_accepted(h2s_req_t *req, const char *id)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "status", json_object_new_string("queued"));
    h2s_respond_json(req, 202, o);
}

/* Same key seen: the original answer when the body matches, else 422. */
static void
sub_answer_existing(sub_ctx_t *c, const char *id, const char *sha)
{
    if (strcmp(sha, c->sha) == 0) {
        sub_answer_accepted(c->req, id);
    } else {
        h2s_respond_problem(c->req, 422, "idempotency_key_reused",
                            "this Idempotency-Key was used with another request body", NULL);
    }
}

static void
sub_finish(sub_ctx_t *c)
{
    switch (c->outcome) {
    case SUB_ACCEPTED:
        notify_kick(c->svc);
        outbox_kick(svc_outbox(c->svc));
        log_info("notification %s accepted (%s, %s)", c->id, c->kind->kind, c->channel);
        sub_answer_accepted(c->req, c->id);
        return;
    case SUB_BUSY:
        h2s_respond_problem(c->req, 409, "idempotency_in_progress",
                            "a request with this Idempotency-Key is in progress", NULL);
        return;
    default: svc_respond_error(c->req, c->rc != PHR_OK ? c->rc : PHR_EGENERIC, NULL);
    }
}

static void
sub_end_done(int rc, PGresult *res, void *ud)
{
    sub_ctx_t *c = ud;

    c->txn = NULL;
    if (c->outcome == SUB_ACCEPTED && (rc != PHR_OK || c->rc != PHR_OK)) {
        c->outcome = SUB_NONE;
        if (c->rc == PHR_OK) {
            c->rc = rc;
        }
        if (c->rc == PHR_ECONFLICT) {
            c->outcome = SUB_BUSY;
        }
    }
    sub_finish(c);
}

static void
sub_stmt_done(int rc, PGresult *res, void *ud)
{
    sub_ctx_t *c = ud;

    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
}

static void
sub_inserted(int rc, PGresult *res, void *ud)
{
    sub_ctx_t *c = ud;

    if (rc != PHR_OK) {
        if (c->rc == PHR_OK) {
            c->rc = rc;
        }
        return;
    }
    if (PQntuples(res) != 1) {
        c->rc = PHR_ECONFLICT; /* committed by a concurrent duplicate just now */
    }
}

static void
sub_end(sub_ctx_t *c, int commit)
{
    if (db_txn_end(c->txn, commit, sub_end_done, c) != PHR_OK) {
        c->txn = NULL;
        c->outcome = SUB_NONE;
        c->rc = PHR_EUNAVAIL;
        sub_finish(c);
    }
}

static void
sub_locked(int rc, PGresult *res, void *ud)
{
    sub_ctx_t *c = ud;
    char event_id[AEV_ID_LEN];

    if (rc != PHR_OK || PQntuples(res) != 1) {
        c->rc = rc != PHR_OK ? rc : PHR_EGENERIC;
        sub_end(c, 0);
        return;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        c->outcome = SUB_BUSY;
        sub_end(c, 0);
        return;
    }
    if (!PQgetisnull(res, 0, 1)) {
        /* answered after the rollback: copy what the answer needs now */
        const char *id = PQgetvalue(res, 0, 1);
        const char *sha = PQgetvalue(res, 0, 2);
        db_txn_t *txn = c->txn;
        c->txn = NULL;
        sub_answer_existing(c, id, sha);
        db_txn_end(txn, 0, NULL, NULL);
        return;
    }
    notify_req_t r = {
        .kind = c->kind->kind,
        .channel = c->channel,
        .to_account_id = c->account_id[0] ? c->account_id : NULL,
        .to_address = c->address,
        .locale = c->locale,
        .params = c->params,
        .idempotency_key = c->key,
    };
    int qrc = notify_enqueue_sha(c->svc, c->txn, &r, c->sha, c->id, sub_inserted, c);
    if (qrc != PHR_OK) {
        c->rc = qrc;
        sub_end(c, 0);
        return;
    }
    aev_t ev;
    json_object *det = json_object_new_object();
    aev_init(&ev, "notification", "notification.submit", c->req, NULL);
    ev.actor_kind = "service";
    ev.target_type = "notification";
    ev.target_id = c->id;
    json_object_object_add(det, "kind", json_object_new_string(c->kind->kind));
    json_object_object_add(det, "channel", json_object_new_string(c->channel));
    const char *caller = h2s_req_header(c->req, "x-phr-caller");
    json_object_object_add(det, "caller", json_object_new_string(caller ? caller : ""));
    ev.details = det;
    char *audit = aev_json(&ev, event_id);
    if (audit == NULL || outbox_add(c->txn, "audit", event_id, audit, sub_stmt_done, c) != PHR_OK) {
        c->rc = PHR_ENOMEM;
    }
    free(audit);
    c->outcome = SUB_ACCEPTED;
    sub_end(c, c->rc == PHR_OK);
}

static void
sub_begun(int rc, db_txn_t *txn, void *ud)
{
    sub_ctx_t *c = ud;
    const char *p[] = {c->key};

    if (rc != PHR_OK) {
        c->rc = rc;
        sub_finish(c);
        return;
    }
    c->txn = txn;
    if (db_txn_query(txn, sub_lock_sql, 1, p, sub_locked, c) != PHR_OK) {
        c->rc = PHR_EUNAVAIL;
        sub_end(c, 0);
    }
}

static void
sub_store(sub_ctx_t *c)
{
    int rc = db_txn_begin(svc_db(c->svc), sub_begun, c);

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

static void
sub_rl_done(int allowed, long retry_after_s, void *ud)
{
    sub_ctx_t *c = ud;
    char ra[24];

    if (!allowed) {
        snprintf(ra, sizeof(ra), "%ld", retry_after_s);
        h2s_req_add_header(c->req, "retry-after", ra);
        h2s_respond_problem(c->req, 429, "rate_limited",
                            "too many notifications of this kind to this recipient", NULL);
        return;
    }
    sub_store(c);
}

static void
sub_ratelimit(sub_ctx_t *c)
{
    if (rl_hit(svc_kv(c->svc), c->kind, c->address, sub_rl_done, c) != PHR_OK) {
        sub_store(c);
    }
}

static void
sub_lookup_done(int rc, const hcli_resp_t *resp, void *ud)
{
    sub_ctx_t *c = ud;
    json_object *o = NULL, *items, *it;

    if (rc != PHR_OK || resp->status >= 500) {
        svc_respond_error(c->req, PHR_EUNAVAIL, "the account directory is unavailable");
        return;
    }
    if (resp->status != 200 || (o = json_tokener_parse(resp->body)) == NULL) {
        log_error("account lookup answered %d", resp->status);
        svc_respond_error(c->req, PHR_EGENERIC, NULL);
        return;
    }
    if (!json_object_object_get_ex(o, "items", &items) ||
        !json_object_is_type(items, json_type_array) || json_object_array_length(items) < 1 ||
        (it = json_object_array_get_idx(items, 0)) == NULL ||
        jx_get_str(it, "email", NULL) == NULL) {
        json_object_put(o);
        sub_field_error(c->req, "to.account_id", "no such account");
        return;
    }
    snprintf(c->address, sizeof(c->address), "%s", jx_get_str(it, "email", ""));
    json_object_put(o);
    sub_ratelimit(c);
}

static void
sub_resolve(sub_ctx_t *c)
{
    char body[80];

    if (c->address[0] != '\0') {
        sub_ratelimit(c);
        return;
    }
    snprintf(body, sizeof(body), "{\"ids\":[\"%s\"]}", c->account_id);
    hcli_t *auth = svc_peer(c->svc, CFG_SVC_AUTH);
    if (auth == NULL ||
        hcli_request(auth, "POST", "/internal/v1/accounts/lookup", "application/json", body,
                     strlen(body), h2s_req_id(c->req), sub_lookup_done, c) != PHR_OK) {
        svc_respond_error(c->req, PHR_EUNAVAIL, NULL);
    }
}

static void
sub_existing_done(int rc, PGresult *res, void *ud)
{
    sub_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 1) {
        sub_answer_existing(c, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        return;
    }
    sub_resolve(c);
}

static void
sub_post(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *key = h2s_req_header(req, "idempotency-key");
    jx_errors_t errs = {.n = 0};
    size_t len;
    const char *raw;
    json_object *body;

    if (key == NULL || key[0] == '\0' || strlen(key) > SUB_KEY_MAX ||
        !jx_utf8_valid(key, strlen(key))) {
        sub_field_error(req, "Idempotency-Key",
                        key == NULL || key[0] == '\0' ? "the header is required"
                                                      : "1 to 200 characters");
        return;
    }
    if (svc_read_json(req, sub_fields, sizeof(sub_fields) / sizeof(sub_fields[0]), &body) !=
        PHR_OK) {
        return;
    }
    sub_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL || h2s_req_add_cleanup(req, sub_ctx_free, c) != PHR_OK) {
        free(c);
        json_object_put(body);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    c->svc = svc;
    c->req = req;
    c->body = body;
    c->kind = kind_find(jx_get_str(body, "kind", ""));
    c->channel = jx_get_str(body, "channel", "");
    c->locale = jx_get_str(body, "locale", "ja");
    c->params = json_object_object_get(body, "params");
    snprintf(c->key, sizeof(c->key), "%s", key);
    if (c->kind == NULL) {
        sub_field_error(req, "kind", "unknown kind");
        return;
    }
    sub_validate(c, &errs);
    if (errs.n > 0) {
        h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
        return;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    raw = h2s_req_body(req, &len);
    SHA256((const unsigned char *)raw, len, md);
    hex_encode(md, sizeof(md), c->sha);
    const char *p[] = {c->key};
    int rc = db_query(svc_db(svc), sub_existing_sql, 1, p, sub_existing_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- GET /internal/v1/notifications/{notification_id} ---- */

static const char sub_get_sql[] =
    "SELECT n.id::text, n.kind, n.channel, n.status, n.attempts, "
    "CASE WHEN n.status = 'queued' THEN (extract(epoch FROM n.next_attempt_at) * 1000)::bigint "
    "END, (extract(epoch FROM n.created_at) * 1000)::bigint, n.provider, n.provider_message_id, "
    "coalesce((SELECT json_agg(json_build_array(e.status, "
    "(extract(epoch FROM e.at) * 1000)::bigint, e.detail) ORDER BY e.id) "
    "FROM notification_events e WHERE e.notification_id = n.id), '[]') "
    "FROM notifications n WHERE n.id = $1::uuid";

static json_object *
sub_time(const char *ms)
{
    char buf[TU_JST_LEN];

    tu_format_jst(strtoll(ms, NULL, 10), buf, sizeof(buf));
    return json_object_new_string(buf);
}

static void
sub_get_done(int rc, PGresult *res, void *ud)
{
    h2s_req_t *req = ud;

    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such notification");
        return;
    }
    json_object *o = json_object_new_object();
    json_object *hist = json_object_new_array();
    json_object *ev = json_tokener_parse(PQgetvalue(res, 0, 9));
    const char *provider = PQgetisnull(res, 0, 7) ? NULL : PQgetvalue(res, 0, 7);
    const char *pmid = PQgetisnull(res, 0, 8) ? NULL : PQgetvalue(res, 0, 8);

    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, 0, 0)));
    json_object_object_add(o, "kind", json_object_new_string(PQgetvalue(res, 0, 1)));
    json_object_object_add(o, "channel", json_object_new_string(PQgetvalue(res, 0, 2)));
    json_object_object_add(o, "status", json_object_new_string(PQgetvalue(res, 0, 3)));
    json_object_object_add(o, "attempts",
                           json_object_new_int((int)strtol(PQgetvalue(res, 0, 4), NULL, 10)));
    json_object_object_add(o, "next_attempt_at",
                           PQgetisnull(res, 0, 5) ? NULL : sub_time(PQgetvalue(res, 0, 5)));
    json_object_object_add(o, "created_at", sub_time(PQgetvalue(res, 0, 6)));
    for (size_t i = 0; ev != NULL && i < json_object_array_length(ev); i++) {
        json_object *e = json_object_array_get_idx(ev, i);
        json_object *h = json_object_new_object();
        const char *st = json_object_get_string(json_object_array_get_idx(e, 0));
        json_object *det = json_object_array_get_idx(e, 2);
        char ms[24];
        snprintf(ms, sizeof(ms), "%lld",
                 (long long)json_object_get_int64(json_object_array_get_idx(e, 1)));
        json_object_object_add(h, "status", json_object_new_string(st));
        json_object_object_add(h, "at", sub_time(ms));
        if (provider != NULL && strcmp(st, "queued") != 0 && strcmp(st, "dead") != 0) {
            json_object_object_add(h, "provider", json_object_new_string(provider));
            json_object_object_add(h, "provider_message_id",
                                   pmid != NULL ? json_object_new_string(pmid) : NULL);
        }
        json_object_object_add(
            h, "error", det != NULL ? json_object_new_string(json_object_get_string(det)) : NULL);
        json_object_array_add(hist, h);
    }
    json_object_put(ev);
    json_object_object_add(o, "history", hist);
    h2s_respond_json(req, 200, o);
}

static void
sub_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *id = h2s_req_param(req, "notification_id");

    if (id == NULL || !uuid_valid(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such notification");
        return;
    }
    const char *p[] = {id};
    int rc = db_query(svc_db(svc), sub_get_sql, 1, p, sub_get_done, req);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static const svc_route_t sub_route_table[] = {
    {"POST", "/internal/v1/notifications", sub_post,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUTH) | SVC_CALLER(CFG_SVC_RECORDS) |
         SVC_CALLER(CFG_SVC_AUDIT),
     (size_t)64 * 1024},
    {"GET", "/internal/v1/notifications/{notification_id}", sub_get,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUTH) | SVC_CALLER(CFG_SVC_RECORDS) |
         SVC_CALLER(CFG_SVC_AUDIT),
     0},
};

const svc_routes_t notif_submit_routes = SVC_ROUTES(sub_route_table);
