/*
 * util.c - what the auth handlers share (see auth.h).
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "auth.h"
#include "err.h"
#include "hex.h"
#include "log.h"
#include "outbox.h"
#include "timeutil.h"
#include "uuid.h"

static void
auth_ctx_free(void *arg)
{
    auth_ctx_t *ctx = arg;

    pw_free(ctx->password);
    pw_free(ctx->new_password);
    for (size_t i = 0; i < ctx->ntx; i++) {
        free(ctx->tx[i].json);
    }
    explicit_bzero(ctx, sizeof(*ctx));
    free(ctx);
}

auth_ctx_t *
auth_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL || h2s_req_add_cleanup(req, auth_ctx_free, ctx) != PHR_OK) {
        free(ctx);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    ctx->svc = svc;
    ctx->req = req;
    if (sess != NULL) {
        ctx->sess = *sess;
        ctx->has_sess = 1;
    }
    return ctx;
}

void
auth_tx_sql(auth_ctx_t *ctx, const char *sql, int nparams, const char *const *params)
{
    if (ctx->ntx >= AUTH_TX_MAX || nparams > AUTH_PARAMS_MAX) {
        ctx->tx_rc = PHR_ETOOBIG;
        return;
    }
    auth_stmt_t *st = &ctx->tx[ctx->ntx++];
    st->sql = sql;
    st->nparams = nparams;
    for (int i = 0; i < nparams; i++) {
        st->params[i] = params[i];
    }
}

void
auth_tx_outbox(auth_ctx_t *ctx, const char *topic, const char *key, char *json)
{
    if (json == NULL || ctx->ntx >= AUTH_TX_MAX) {
        free(json);
        ctx->tx_rc = json == NULL ? PHR_ENOMEM : PHR_ETOOBIG;
        return;
    }
    auth_stmt_t *st = &ctx->tx[ctx->ntx++];
    st->topic = topic;
    snprintf(st->key, sizeof(st->key), "%s", key);
    st->json = json;
}

static void
auth_tx_stmt_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK && ctx->tx_rc == PHR_OK) {
        ctx->tx_rc = rc;
    }
}

static void
auth_tx_end_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    ctx->txn = NULL;
    if (ctx->tx_rc != PHR_OK) {
        rc = ctx->tx_rc;
    }
    ctx->next(ctx, rc);
}

static void
auth_tx_begun(int rc, db_txn_t *txn, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        ctx->next(ctx, rc);
        return;
    }
    ctx->txn = txn;
    for (size_t i = 0; i < ctx->ntx && ctx->tx_rc == PHR_OK; i++) {
        auth_stmt_t *st = &ctx->tx[i];
        int qrc = st->sql != NULL
                      ? db_txn_query(txn, st->sql, st->nparams, st->params, auth_tx_stmt_done, ctx)
                      : outbox_add(txn, st->topic, st->key, st->json, auth_tx_stmt_done, ctx);
        if (qrc != PHR_OK) {
            ctx->tx_rc = qrc;
        }
    }
    rc = db_txn_end(txn, ctx->tx_rc == PHR_OK, auth_tx_end_done, ctx);
    if (rc != PHR_OK) {
        ctx->txn = NULL;
        ctx->next(ctx, rc);
    }
}

void
auth_tx_run(auth_ctx_t *ctx, auth_step_fn next)
{
    ctx->next = next;
    if (ctx->tx_rc != PHR_OK) {
        next(ctx, ctx->tx_rc);
        return;
    }
    int rc = db_txn_begin(svc_db(ctx->svc), auth_tx_begun, ctx);
    if (rc != PHR_OK) {
        next(ctx, rc);
    }
}

void
auth_outbox_kick(svc_t *svc)
{
    outbox_kick(svc_outbox(svc));
}

static char *
auth_dump(json_object *o)
{
    size_t len;
    const char *txt = jx_to_string(o, &len);
    char *out = txt != NULL ? strdup(txt) : NULL;
    json_object_put(o);
    return out;
}

char *
auth_audit_json(const auth_ctx_t *ctx, const char *action, const char *actor_id,
                const char *actor_kind, const char *target_id, const char *result,
                const char *reason, char *event_id)
{
    aev_t ev;

    aev_init(&ev, "auth", action, ctx->req, ctx->has_sess ? &ctx->sess : NULL);
    if (!ctx->has_sess || actor_id == NULL || strcmp(actor_id, ctx->sess.account_id) != 0) {
        ev.actor_org_id = ev.actor_role = NULL; /* the actor is not the session's account */
    }
    ev.actor_id = actor_id;
    ev.actor_kind = actor_kind;
    ev.target_type = "account";
    ev.target_id = target_id;
    ev.result = result;
    ev.reason = reason;
    return aev_json(&ev, event_id);
}

char *
auth_notify_json(const char *kind, const char *account_id, const char *locale,
                 const char *const *params)
{
    json_object *o = json_object_new_object();
    json_object *to = json_object_new_object();
    json_object *p = json_object_new_object();

    for (size_t i = 0; params != NULL && params[i] != NULL && params[i + 1] != NULL; i += 2) {
        json_object_object_add(p, params[i], json_object_new_string(params[i + 1]));
    }
    json_object_object_add(to, "account_id", json_object_new_string(account_id));
    json_object_object_add(o, "kind", json_object_new_string(kind));
    json_object_object_add(o, "channel", json_object_new_string("email"));
    json_object_object_add(o, "to", to);
    json_object_object_add(o, "locale", json_object_new_string(locale[0] ? locale : "ja"));
    json_object_object_add(o, "params", p);
    return auth_dump(o);
}

int
auth_email_normalise(const char *in, char *out, size_t cap)
{
    size_t len = strlen(in);
    const char *at = strchr(in, '@');

    if (len < 3 || len > 254 || len >= cap || at == NULL || strchr(at + 1, '@') != NULL) {
        return 0;
    }
    size_t local = (size_t)(at - in);
    const char *domain = at + 1;
    size_t dlen = strlen(domain);
    if (local == 0 || local > 64 || dlen < 3 || strchr(domain, '.') == NULL || domain[0] == '.' ||
        domain[0] == '-' || domain[dlen - 1] == '.' || strstr(domain, "..") != NULL ||
        in[0] == '.' || at[-1] == '.' || strstr(in, "..") != NULL) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),:;<>[\\]", c) != NULL) {
            return 0;
        }
        if (in + i > at && !(isalnum(c) || c == '.' || c == '-')) {
            return 0;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return 1;
}

void
auth_sha256_hex(const char *s, char *out)
{
    sess_token_hash(s, out);
}

void
auth_respond_policy(h2s_req_t *req, const char *field, const pw_violations_t *v)
{
    jx_errors_t errs = {.n = 0};
    char msg[160];
    size_t o = 0;

    msg[0] = '\0';
    for (size_t i = 0; i < v->n && o < sizeof(msg); i++) {
        int n = snprintf(msg + o, sizeof(msg) - o, "%s%s", i ? ", " : "", v->items[i]);
        if (n < 0) {
            break;
        }
        o += (size_t)n;
    }
    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 422, "password_policy", "the password does not meet the policy",
                        &errs);
}

/* ---- password pepper ---------------------------------------------------- */

static pwhash_pepper_t auth_pepper_set[1];
static size_t auth_npeppers;
static int auth_peppers_loaded;


static void
auth_peppers_load(const svc_t *svc)
{
    pwhash_pepper_t *pp = &auth_pepper_set[0];
    char hex[130];
    int rc = cfg_read_secret(svc_cfg(svc), "auth_pepper_v1", hex, sizeof(hex));

    auth_peppers_loaded = 1;
    if (rc == PHR_ENOTFOUND) {
        log_info("auth: no password pepper (auth_pepper_v1 absent)");
        return;
    }
    memset(pp, 0, sizeof(*pp));
    snprintf(pp->id, sizeof(pp->id), "v1");
    auth_npeppers = 1;
    if (rc != PHR_OK || strlen(hex) != 64) {
        log_error("auth: auth_pepper_v1 unusable (%s); password hashing will fail",
                  rc != PHR_OK ? phr_err_str(rc) : "not 64 hex characters");
        explicit_bzero(hex, sizeof(hex));
        return; /* keylen 0: pwhash refuses the pepper */
    }
    if (hex_decode(hex, pp->key, 32) != PHR_OK) {
        log_error("auth: auth_pepper_v1 is not hex; password hashing will fail");
        explicit_bzero(hex, sizeof(hex));
        return;
    }
    pp->keylen = 32;
    explicit_bzero(hex, sizeof(hex));
    log_info("auth: password pepper v1 loaded");
}

const pwhash_pepper_t *
auth_peppers(svc_t *svc, size_t *n)
{
    if (!auth_peppers_loaded) {
        auth_peppers_load(svc);
    }
    *n = auth_npeppers;
    return auth_npeppers > 0 ? auth_pepper_set : NULL;
}

size_t
auth_pw_min_length_of(const PGresult *res, int row, int col)
{
    return pw_min_length(PQgetvalue(res, row, col), PQgetvalue(res, row, col + 1)[0] == 't',
                         PQgetvalue(res, row, col + 2)[0] == 't');
}
