/*
 * reset.c - password reset by e-mailed link and a patient's withdrawal.
 *
 * Reset request: always 202 with the same body. Known and unknown addresses
 * run the same statements (for an unknown one they touch no rows) and write
 * an audit row, so the answer and its cost do not reveal accounts. A known
 * account gets a 256-bit token (SHA-256 at rest, purpose password_reset,
 * 30 minutes, single use; its earlier unused reset tokens are invalidated)
 * and a "password_reset" e-mail through the outbox.
 *
 * Reset confirm: the policy checks of register/change, a new hash, then one
 * transaction that consumes the token (only if still unused and unexpired:
 * two racing confirms cannot both win), sets the hash, clears the lockout
 * counters and writes the "password_changed" e-mail and the
 * auth.password.reset audit event; then every session of the account is
 * revoked. MFA state is untouched, so a second factor is still asked for.
 *
 * Withdraw: patients only; the password is checked again, the account turns
 * "withdrawn" (login answers invalid_credentials from then on), its link
 * tokens die, an auth.account.withdraw audit event is written and all its
 * sessions are revoked. Records learns about withdrawals later through an
 * internal call; for now the audit event is the only trace.
 */
#include "reset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "outbox.h"
#include "timeutil.h"
#include "uuid.h"

#define RESET_TTL_MS (30LL * 60 * 1000)

static const char reset_token_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
reset_bad_field(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};

    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
}

/* ---- request ------------------------------------------------------------ */

static void
reset_request_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the request could not be recorded; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string("accepted"));
    h2s_respond_json(ctx->req, 202, o);
}

static void
reset_request_loaded(int rc, PGresult *res, void *ud)
{
    static const char expire_sql[] =
        "UPDATE account_tokens SET used_at = now() "
        "WHERE account_id = $1 AND purpose = 'password_reset' AND used_at IS NULL";
    static const char insert_sql[] =
        "INSERT INTO account_tokens (token_sha256, account_id, purpose, expires_at) "
        "SELECT decode($1, 'hex'), id, 'password_reset', "
        "to_timestamp($3::bigint / 1000.0) FROM accounts WHERE id = $2 AND status = 'active'";
    auth_ctx_t *ctx = ud;
    const cfg_t *cfg = svc_cfg(ctx->svc);
    char url[512], expires[TU_JST_LEN], key[80], event_id[37];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the database is unavailable; retry later");
        return;
    }
    ctx->found = PQntuples(res) > 0;
    if (ctx->found) {
        snprintf(ctx->account_id, sizeof(ctx->account_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 1));
        snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 2));
    } else if (uuid7(ctx->account_id) != PHR_OK) { /* names no account: the statements no-op */
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    if (sess_token_new(ctx->token) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    auth_sha256_hex(ctx->token, ctx->token_hash);
    int64_t exp_ms = tu_now_ms() + RESET_TTL_MS;
    snprintf(ctx->num, sizeof(ctx->num), "%lld", (long long)exp_ms);
    tu_format_jst(exp_ms, expires, sizeof(expires));

    const char *p1[] = {ctx->account_id};
    auth_tx_sql(ctx, expire_sql, 1, p1);
    const char *p2[] = {ctx->token_hash, ctx->account_id, ctx->num};
    auth_tx_sql(ctx, insert_sql, 3, p2);
    char *audit =
        auth_audit_json(ctx, "auth.password.reset_request", NULL, "anonymous",
                        ctx->found ? ctx->account_id : "unknown", "success", NULL, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    if (ctx->found) {
        snprintf(url, sizeof(url), "%s/reset-password?token=%s", cfg->public_base_url, ctx->token);
        const char *params[] = {"name", ctx->name, "reset_url", url, "expires_at", expires, NULL};
        snprintf(key, sizeof(key), "reset:%s", ctx->token_hash);
        auth_tx_outbox(ctx, "notification", key,
                       auth_notify_json("password_reset", ctx->account_id, ctx->locale, params));
        explicit_bzero(url, sizeof(url));
    }
    explicit_bzero(ctx->token, sizeof(ctx->token));
    auth_tx_run(ctx, reset_request_committed);
}

/* POST /api/v1/auth/password-reset/request {email} */
static void
reset_request(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"email", JX_STRING, 1, 0, -1, 1, 254, NULL},
    };
    static const char sql[] =
        "SELECT id, name, locale FROM accounts WHERE email = $1 AND status = 'active'";
    json_object *body;

    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    int ok = auth_email_normalise(jx_get_str(body, "email", ""), ctx->email, sizeof(ctx->email));
    json_object_put(body);
    if (!ok) {
        reset_bad_field(req, "email", "not a valid e-mail address");
        return;
    }
    const char *p[] = {ctx->email};
    int rc = db_query(svc_db(svc), sql, 1, p, reset_request_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- confirm ------------------------------------------------------------ */

static void
reset_invalid_token(h2s_req_t *req)
{
    h2s_respond_problem(req, 422, "invalid_token", "the link is unknown, already used or expired",
                        NULL);
}

static void
reset_confirm_revoked(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        log_error("password reset: revoking the sessions failed: %s", phr_err_str(rc));
    }
    h2s_respond(ctx->req, 204, NULL, NULL, 0);
}

static void
reset_confirm_ended(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    ctx->txn = NULL;
    if (ctx->tx_rc != PHR_OK) {
        rc = ctx->tx_rc;
    }
    if (rc == PHR_ENOTFOUND) {
        reset_invalid_token(ctx->req);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the password could not be reset; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    rc = sess_revoke(svc_kv(ctx->svc), ctx->account_id, NULL, 0, reset_confirm_revoked, ctx);
    if (rc != PHR_OK) {
        reset_confirm_revoked(rc, 0, ctx);
    }
}

static void
reset_confirm_stmt_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK && ctx->tx_rc == PHR_OK) {
        ctx->tx_rc = rc;
    }
}

static void
reset_confirm_end(auth_ctx_t *ctx)
{
    int rc = db_txn_end(ctx->txn, ctx->tx_rc == PHR_OK, reset_confirm_ended, ctx);
    if (rc != PHR_OK) {
        ctx->txn = NULL;
        svc_respond_error(ctx->req, rc, NULL);
    }
}

/* The token was consumed (or not) in the transaction: the rest follows, or a rollback. */
static void
reset_confirm_consumed(int rc, PGresult *res, void *ud)
{
    static const char others_sql[] =
        "UPDATE account_tokens SET used_at = now() "
        "WHERE account_id = $1 AND purpose = 'password_reset' AND used_at IS NULL";
    auth_ctx_t *ctx = ud;
    char now[TU_JST_LEN], event_id[37], key[80];

    if (rc != PHR_OK || PQntuples(res) != 1) {
        ctx->tx_rc = rc != PHR_OK ? rc : PHR_ENOTFOUND;
        reset_confirm_end(ctx);
        return;
    }
    const char *p[] = {ctx->account_id};
    tu_format_jst(tu_now_ms(), now, sizeof(now));
    const char *params[] = {"name", ctx->name, "changed_at", now, NULL};
    char *mail = auth_notify_json("password_changed", ctx->account_id, ctx->locale, params);
    char *audit = auth_audit_json(ctx, "auth.password.reset", ctx->account_id, ctx->kind,
                                  ctx->account_id, "success", NULL, event_id);
    snprintf(key, sizeof(key), "pwreset:%s", event_id);
    if (mail == NULL || audit == NULL) {
        ctx->tx_rc = PHR_ENOMEM;
    } else if ((rc = db_txn_query(ctx->txn, others_sql, 1, p, reset_confirm_stmt_done, ctx)) !=
                   PHR_OK ||
               (rc = outbox_add(ctx->txn, "notification", key, mail, reset_confirm_stmt_done,
                                ctx)) != PHR_OK ||
               (rc = outbox_add(ctx->txn, "audit", event_id, audit, reset_confirm_stmt_done,
                                ctx)) != PHR_OK) {
        ctx->tx_rc = rc;
    }
    free(mail);
    free(audit);
    reset_confirm_end(ctx);
}

static void
reset_confirm_begun(int rc, db_txn_t *txn, void *ud)
{
    static const char sql[] =
        "WITH t AS (UPDATE account_tokens SET used_at = now() "
        "  WHERE token_sha256 = decode($1, 'hex') AND purpose = 'password_reset' "
        "  AND used_at IS NULL AND expires_at > now() AND account_id = $2 RETURNING account_id) "
        "UPDATE accounts a SET password_hash = $3, failed_logins = 0, locked_until = NULL, "
        "must_change_password = false, password_expires_at = NULL, updated_at = now() "
        "FROM t WHERE a.id = t.account_id AND a.status = 'active' RETURNING a.id";
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    ctx->txn = txn;
    const char *p[] = {ctx->token_hash, ctx->account_id, ctx->new_hash};
    rc = db_txn_query(txn, sql, 3, p, reset_confirm_consumed, ctx);
    if (rc != PHR_OK) {
        ctx->tx_rc = rc;
        reset_confirm_end(ctx);
    }
}

static void
reset_confirm_hashed(int rc, const char *encoded, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    snprintf(ctx->new_hash, sizeof(ctx->new_hash), "%s", encoded);
    rc = db_txn_begin(svc_db(ctx->svc), reset_confirm_begun, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
reset_confirm_common_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;
    size_t n;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the password blocklist is unavailable; retry later");
        return;
    }
    if (PQntuples(res) > 0 && ctx->v.n < PW_MAX_VIOLATIONS) {
        ctx->v.items[ctx->v.n++] = "common_password";
    }
    if (ctx->v.n > 0) {
        auth_respond_policy(ctx->req, "new_password", &ctx->v);
        return;
    }
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &n);
    rc = pwhash_hash_async(svc_workq(ctx->svc), ctx->new_password, peppers, ctx->req,
                           reset_confirm_hashed, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

static void
reset_confirm_loaded(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;
    char key[65];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        reset_invalid_token(ctx->req);
        return;
    }
    snprintf(ctx->account_id, sizeof(ctx->account_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(ctx->email, sizeof(ctx->email), "%s", PQgetvalue(res, 0, 1));
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 2));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 3));
    snprintf(ctx->kind, sizeof(ctx->kind), "%s", PQgetvalue(res, 0, 4));
    pw_check_rules(ctx->new_password, ctx->email, auth_pw_min_length_of(res, 0, 4), &ctx->v);
    pw_common_key(ctx->new_password, key);
    const char *p[] = {key};
    rc = db_query(svc_db(ctx->svc), pw_common_sql, 1, p, reset_confirm_common_done, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

/* POST /api/v1/auth/password-reset/confirm {token, new_password} */
static void
reset_confirm(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"token", JX_STRING, 1, 0, -1, SESS_TOKEN_LEN, SESS_TOKEN_LEN, NULL},
        {"new_password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
    };
    static const char sql[] =
        "SELECT a.id, a.email, a.name, a.locale, " AUTH_PW_FACTS_SQL " "
        "FROM account_tokens t JOIN accounts a ON a.id = t.account_id "
        "LEFT JOIN organizations o ON o.id = a.org_id "
        "WHERE t.token_sha256 = decode($1, 'hex') AND t.purpose = 'password_reset' "
        "AND t.used_at IS NULL AND t.expires_at > now() AND a.status = 'active'";
    json_object *body;
    jx_errors_t errs = {.n = 0};

    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    const char *tok = jx_get_str(body, "token", "");
    if (strspn(tok, reset_token_chars) != SESS_TOKEN_LEN) {
        json_object_put(body);
        reset_bad_field(req, "token", "not a link token");
        return;
    }
    auth_sha256_hex(tok, ctx->token_hash);
    int rc = pw_normalize(jx_get_str(body, "new_password", ""), &ctx->new_password);
    json_object_put(body);
    if (rc == PHR_EINVAL) {
        jx_error_add(&errs, "new_password", "not valid UTF-8");
        h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    const char *p[] = {ctx->token_hash};
    rc = db_query(svc_db(svc), sql, 1, p, reset_confirm_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- withdraw ----------------------------------------------------------- */

static void
withdraw_revoked(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        log_error("withdraw: revoking the sessions failed: %s", phr_err_str(rc));
    }
    h2s_respond(ctx->req, 204, NULL, NULL, 0);
}

static void
withdraw_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the account could not be withdrawn; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    rc = sess_revoke(svc_kv(ctx->svc), ctx->sess.account_id, NULL, 0, withdraw_revoked, ctx);
    if (rc != PHR_OK) {
        withdraw_revoked(rc, 0, ctx);
    }
}

static void
withdraw_verified(int rc, int needs_rehash, void *ud)
{
    static const char account_sql[] =
        "UPDATE accounts SET status = 'withdrawn', withdrawn_at = now(), updated_at = now() "
        "WHERE id = $1 AND status = 'active'";
    static const char tokens_sql[] =
        "UPDATE account_tokens SET used_at = now() WHERE account_id = $1 AND used_at IS NULL";
    auth_ctx_t *ctx = ud;
    char event_id[37];

    if (rc == PHR_EDENIED || rc == PHR_EINVAL) {
        h2s_respond_problem(ctx->req, 422, "invalid_credentials", "the password is wrong", NULL);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    const char *p[] = {ctx->sess.account_id};
    auth_tx_sql(ctx, account_sql, 1, p);
    auth_tx_sql(ctx, tokens_sql, 1, p);
    char *audit = auth_audit_json(ctx, "auth.account.withdraw", ctx->sess.account_id,
                                  ctx->sess.kind, ctx->sess.account_id, "success", NULL, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    /* Records ends the patient's links and schedules the purge (retention). */
    json_object *w = json_object_new_object();
    char now[TU_JST_LEN], key[80];
    tu_format_jst(tu_now_ms(), now, sizeof(now));
    json_object_object_add(w, "patient_id", json_object_new_string(ctx->sess.account_id));
    json_object_object_add(w, "withdrawn_at", json_object_new_string(now));
    snprintf(key, sizeof(key), "withdraw:%s", ctx->sess.account_id);
    const char *txt = jx_to_string(w, NULL);
    auth_tx_outbox(ctx, "records", key, txt != NULL ? strdup(txt) : NULL);
    json_object_put(w);
    auth_tx_run(ctx, withdraw_committed);
}

static void
withdraw_loaded(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;
    size_t n;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 401, "session_expired", "the account no longer exists", NULL);
        return;
    }
    snprintf(ctx->hash, sizeof(ctx->hash), "%s", PQgetvalue(res, 0, 0));
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &n);
    rc = pwhash_verify_async(svc_workq(ctx->svc), ctx->hash, ctx->password, peppers, n, ctx->req,
                             withdraw_verified, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

/* POST /api/v1/auth/withdraw {password} */
static void
reset_withdraw(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
    };
    static const char sql[] =
        "SELECT password_hash FROM accounts WHERE id = $1 AND status = 'active'";
    json_object *body;

    if (strcmp(sess->kind, "patient") != 0) {
        svc_respond_error(req, PHR_EDENIED, "only patients can withdraw");
        return;
    }
    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    int rc = pw_normalize(jx_get_str(body, "password", ""), &ctx->password);
    json_object_put(body);
    if (rc == PHR_EINVAL) {
        reset_bad_field(req, "password", "not valid UTF-8");
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    const char *p[] = {sess->account_id};
    rc = db_query(svc_db(svc), sql, 1, p, withdraw_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- internal: a re-entered password (records' immediate deletion) ------- */

static void
verify_failed_committed(auth_ctx_t *ctx, int rc)
{
    if (rc == PHR_OK) {
        auth_outbox_kick(ctx->svc);
    }
    h2s_respond_problem(ctx->req, 422, "invalid_credentials", "the password is wrong", NULL);
}

static void
verify_ok_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    auth_outbox_kick(ctx->svc);
    h2s_respond(ctx->req, 204, NULL, NULL, 0);
}

static void
verify_checked(int rc, int needs_rehash, void *ud)
{
    static const char ok_sql[] = "UPDATE accounts SET failed_logins = 0 WHERE id = $1";
    auth_ctx_t *ctx = ud;
    char event_id[37];
    int wrong = rc == PHR_EDENIED || rc == PHR_EINVAL;

    if (rc != PHR_OK && !wrong) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    const char *result = wrong || ctx->locked ? "failure" : "success";
    const char *reason = wrong ? "invalid_credentials" : ctx->locked ? "account_locked" : NULL;
    char *audit = auth_audit_json(ctx, "auth.password.verify", ctx->account_id, ctx->kind,
                                  ctx->account_id, result, reason, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    if (wrong || ctx->locked) {
        auth_count_failure(ctx, ctx->failed_logins, ctx->locked);
        auth_tx_run(ctx, verify_failed_committed);
        return;
    }
    const char *p[] = {ctx->account_id};
    auth_tx_sql(ctx, ok_sql, 1, p);
    auth_tx_run(ctx, verify_ok_committed);
}

static void
verify_loaded(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;
    size_t n;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        svc_respond_error(ctx->req, PHR_ENOTFOUND, "no such active account");
        return;
    }
    snprintf(ctx->hash, sizeof(ctx->hash), "%s", PQgetvalue(res, 0, 0));
    ctx->failed_logins = (int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
    ctx->locked = PQgetvalue(res, 0, 2)[0] == 't';
    snprintf(ctx->kind, sizeof(ctx->kind), "%s", PQgetvalue(res, 0, 3));
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 4));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 5));
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &n);
    rc = pwhash_verify_async(svc_workq(ctx->svc), ctx->hash, ctx->password, peppers, n, ctx->req,
                             verify_checked, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

/* POST /internal/v1/accounts/{account_id}/verify-password {password}: 204 or 422. */
static void
reset_verify_password(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
    };
    static const char sql[] =
        "SELECT password_hash, failed_logins, coalesce(locked_until > now(), false), kind, name, "
        "locale FROM accounts WHERE id = $1 AND status = 'active'";
    const char *id = h2s_req_param(req, "account_id");
    json_object *body;

    if (!uuid_valid(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such account");
        return;
    }
    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    snprintf(ctx->account_id, sizeof(ctx->account_id), "%s", id);
    int rc = pw_normalize(jx_get_str(body, "password", ""), &ctx->password);
    json_object_put(body);
    if (rc == PHR_EINVAL) {
        reset_bad_field(req, "password", "not valid UTF-8");
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    const char *p[] = {ctx->account_id};
    rc = db_query(svc_db(svc), sql, 1, p, verify_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static const svc_route_t table[] = {
    {"POST", "/api/v1/auth/password-reset/request", reset_request, SVC_NEEDS_DB, 1024},
    {"POST", "/api/v1/auth/password-reset/confirm", reset_confirm, SVC_NEEDS_DB, 4096},
    {"POST", "/api/v1/auth/withdraw", reset_withdraw, SVC_SESSION | SVC_NEEDS_DB, 4096},
    {"POST", "/internal/v1/accounts/{account_id}/verify-password", reset_verify_password,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_RECORDS), 4096},
};

const svc_routes_t auth_reset_routes = SVC_ROUTES(table);
