/*
 * account.c - registration, e-mail verification and password change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "outbox.h"
#include "timeutil.h"
#include "uuid.h"

static const char *const auth_locales[] = {"ja", "en", NULL};

/* ---- register ----------------------------------------------------------- */

static void
auth_register_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK && rc != PHR_ECONFLICT) { /* a racing duplicate answers as a duplicate */
        svc_respond_error(ctx->req, rc, "the account could not be created; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id",
                           json_object_new_string(ctx->found ? ctx->id2 : ctx->account_id));
    json_object_object_add(o, "email", json_object_new_string(ctx->email));
    json_object_object_add(o, "kind", json_object_new_string("patient"));
    json_object_object_add(o, "email_verified", json_object_new_boolean(0));
    h2s_respond_json(ctx->req, 201, o);
}

static void
auth_register_create(auth_ctx_t *ctx)
{
    static const char insert_sql[] =
        "INSERT INTO accounts (id, email, name, locale, kind, password_hash) "
        "VALUES ($1, $2, $3, $4, 'patient', $5)";
    static const char token_sql[] =
        "INSERT INTO account_tokens (token_sha256, account_id, purpose, expires_at) "
        "VALUES (decode($1, 'hex'), $2, 'verify_email', now() + interval '24 hours')";
    const cfg_t *cfg = svc_cfg(ctx->svc);
    char url[512], key[80];

    if (uuid7(ctx->account_id) != PHR_OK || sess_token_new(ctx->token) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    auth_sha256_hex(ctx->token, ctx->token_hash);
    const char *p[] = {ctx->account_id, ctx->email, ctx->name, ctx->locale, ctx->hash};
    auth_tx_sql(ctx, insert_sql, 5, p);
    const char *t[] = {ctx->token_hash, ctx->account_id};
    auth_tx_sql(ctx, token_sql, 2, t);
    snprintf(url, sizeof(url), "%s/verify-email?token=%s", cfg->public_base_url, ctx->token);
    const char *params[] = {"name", ctx->name, "verify_url", url, NULL};
    snprintf(key, sizeof(key), "verify:%s", ctx->token_hash);
    auth_tx_outbox(ctx, "notification", key,
                   auth_notify_json("email_verification", ctx->account_id, ctx->locale, params));
    explicit_bzero(url, sizeof(url));
    auth_tx_run(ctx, auth_register_committed);
}

static void
auth_register_existing(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the database is unavailable; retry later");
        return;
    }
    if (PQntuples(res) == 0) {
        auth_register_create(ctx);
        return;
    }
    /* The address is taken: tell its owner, answer as if registered. */
    const cfg_t *cfg = svc_cfg(ctx->svc);
    char login_url[300], reset_url[300], key[80];
    char locale[4], name[404];
    ctx->found = 1;
    snprintf(ctx->account_id, sizeof(ctx->account_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(name, sizeof(name), "%s", PQgetvalue(res, 0, 1));
    snprintf(locale, sizeof(locale), "%s", PQgetvalue(res, 0, 2));
    if (uuid7(ctx->id2) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    snprintf(login_url, sizeof(login_url), "%s/login", cfg->public_base_url);
    snprintf(reset_url, sizeof(reset_url), "%s/password-reset", cfg->public_base_url);
    const char *params[] = {"name", name, "login_url", login_url, "reset_url", reset_url, NULL};
    snprintf(key, sizeof(key), "exists:%s", ctx->id2);
    auth_tx_outbox(ctx, "notification", key,
                   auth_notify_json("account_exists", ctx->account_id, locale, params));
    auth_tx_run(ctx, auth_register_committed);
}

/* Hashing comes first for new and taken addresses alike: the same cost either way. */
static void
auth_register_hashed(int rc, const char *encoded, void *ud)
{
    static const char sql[] = "SELECT id, name, locale FROM accounts WHERE email = $1";
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    snprintf(ctx->hash, sizeof(ctx->hash), "%s", encoded);
    const char *p[] = {ctx->email};
    rc = db_query(svc_db(ctx->svc), sql, 1, p, auth_register_existing, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
auth_register_common_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the password blocklist is unavailable; retry later");
        return;
    }
    if (PQntuples(res) > 0 && ctx->v.n < PW_MAX_VIOLATIONS) {
        ctx->v.items[ctx->v.n++] = "common_password";
    }
    if (ctx->v.n > 0) {
        auth_respond_policy(ctx->req, "password", &ctx->v);
        return;
    }
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);
    rc = pwhash_hash_async(svc_workq(ctx->svc), ctx->password, peppers, ctx->req,
                           auth_register_hashed, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

/* Normalises |pw| into |*out| and checks the rules; answers and returns non-OK on failure. */
static int
auth_password_prepare(auth_ctx_t *ctx, const char *field, const char *pw, char **out)
{
    jx_errors_t errs = {.n = 0};
    int rc = pw_normalize(pw, out);

    if (rc == PHR_EINVAL) {
        jx_error_add(&errs, field, "not valid UTF-8");
        h2s_respond_problem(ctx->req, 400, "validation_failed", "the request has invalid fields",
                            &errs);
    } else if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
    return rc;
}

void
auth_register(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"email", JX_STRING, 1, 0, -1, 3, 254, NULL},
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
        {"name", JX_STRING, 1, 0, -1, 1, 100, NULL},
        {"locale", JX_STRING, 0, 0, -1, 0, 0, auth_locales},
    };
    json_object *body;
    char key[65];

    if (svc_read_json(req, fields, sizeof(fields) / sizeof(fields[0]), &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    if (!auth_email_normalise(jx_get_str(body, "email", ""), ctx->email, sizeof(ctx->email))) {
        jx_errors_t errs = {.n = 0};
        json_object_put(body);
        jx_error_add(&errs, "email", "not a valid e-mail address");
        h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", jx_get_str(body, "name", ""));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", jx_get_str(body, "locale", "ja"));
    int rc =
        auth_password_prepare(ctx, "password", jx_get_str(body, "password", ""), &ctx->password);
    json_object_put(body);
    if (rc != PHR_OK) {
        return;
    }
    pw_check_rules(ctx->password, ctx->email, pw_min_length("patient", 0, 0), &ctx->v);
    pw_common_key(ctx->password, key);
    const char *p[] = {key};
    rc = db_query(svc_db(svc), pw_common_sql, 1, p, auth_register_common_done, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- verify-email ------------------------------------------------------- */

static void
auth_verify_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    } else if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 422, "invalid_token",
                            "the link is unknown, already used or expired", NULL);
    } else {
        h2s_respond(ctx->req, 204, NULL, NULL, 0);
    }
}

void
auth_verify_email(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"token", JX_STRING, 1, 0, -1, SESS_TOKEN_LEN, SESS_TOKEN_LEN, NULL},
    };
    static const char sql[] =
        "WITH t AS (UPDATE account_tokens SET used_at = now() "
        "  WHERE token_sha256 = decode($1, 'hex') AND purpose = 'verify_email' "
        "  AND used_at IS NULL AND expires_at > now() RETURNING account_id) "
        "UPDATE accounts a SET email_verified_at = coalesce(a.email_verified_at, now()), "
        "updated_at = now() FROM t WHERE a.id = t.account_id RETURNING a.id";
    json_object *body;

    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    const char *tok = jx_get_str(body, "token", "");
    if (strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
        SESS_TOKEN_LEN) {
        jx_errors_t errs = {.n = 0};
        json_object_put(body);
        jx_error_add(&errs, "token", "not a link token");
        h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
        return;
    }
    auth_sha256_hex(tok, ctx->token_hash);
    json_object_put(body);
    const char *p[] = {ctx->token_hash};
    int rc = db_query(svc_db(svc), sql, 1, p, auth_verify_done, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- password change ---------------------------------------------------- */

static void
auth_pwchange_revoked(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        log_warn("password change: revoking other sessions failed: %s", phr_err_str(rc));
    }
    h2s_respond(ctx->req, 204, NULL, NULL, 0);
}

static void
auth_pwchange_rewritten(int rc, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK && rc != PHR_ENOTFOUND) {
        log_warn("password change: session update failed: %s", phr_err_str(rc));
    }
    rc = sess_revoke(svc_kv(ctx->svc), ctx->sess.account_id, ctx->sess.token_hash, 0,
                     auth_pwchange_revoked, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static void
auth_pwchange_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the password could not be changed; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    ctx->sess.must_change_password = 0;
    ctx->sess.authenticated_ms = tu_now_ms();
    rc = sess_rewrite(svc_kv(ctx->svc), &ctx->sess, auth_pwchange_rewritten, ctx);
    if (rc != PHR_OK) {
        auth_pwchange_rewritten(rc, ctx);
    }
}

static void
auth_pwchange_hashed(int rc, const char *encoded, void *ud)
{
    static const char sql[] =
        "UPDATE accounts SET password_hash = $2, must_change_password = false, "
        "password_expires_at = NULL, updated_at = now() WHERE id = $1";
    auth_ctx_t *ctx = ud;
    char now[TU_JST_LEN], event_id[37], key[80];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    snprintf(ctx->new_hash, sizeof(ctx->new_hash), "%s", encoded);
    const char *p[] = {ctx->sess.account_id, ctx->new_hash};
    auth_tx_sql(ctx, sql, 2, p);
    tu_format_jst(tu_now_ms(), now, sizeof(now));
    const char *params[] = {"name", ctx->name, "changed_at", now, NULL};
    char *audit = auth_audit_json(ctx, "auth.password.change", ctx->sess.account_id, ctx->sess.kind,
                                  ctx->sess.account_id, "success", NULL, event_id);
    snprintf(key, sizeof(key), "pwchanged:%s", event_id);
    auth_tx_outbox(ctx, "notification", key,
                   auth_notify_json("password_changed", ctx->sess.account_id, ctx->locale, params));
    auth_tx_outbox(ctx, "audit", event_id, audit);
    auth_tx_run(ctx, auth_pwchange_committed);
}

static void
auth_pwchange_common_done(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) > 0 && ctx->v.n < PW_MAX_VIOLATIONS) {
        ctx->v.items[ctx->v.n++] = "common_password";
    }
    if (ctx->v.n > 0) {
        auth_respond_policy(ctx->req, "new_password", &ctx->v);
        return;
    }
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);
    rc = pwhash_hash_async(svc_workq(ctx->svc), ctx->new_password, peppers, ctx->req,
                           auth_pwchange_hashed, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

static void
auth_pwchange_verified(int rc, int needs_rehash, void *ud)
{
    auth_ctx_t *ctx = ud;
    char key[65];

    if (rc == PHR_EDENIED || rc == PHR_EINVAL) {
        h2s_respond_problem(ctx->req, 422, "invalid_credentials", "the current password is wrong",
                            NULL);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    pw_check_rules(ctx->new_password, ctx->email, ctx->pw_min, &ctx->v);
    if (strcmp(ctx->new_password, ctx->password) == 0 && ctx->v.n < PW_MAX_VIOLATIONS) {
        ctx->v.items[ctx->v.n++] = "same_as_current";
    }
    pw_common_key(ctx->new_password, key);
    const char *p[] = {key};
    rc = db_query(svc_db(ctx->svc), pw_common_sql, 1, p, auth_pwchange_common_done, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
auth_pwchange_loaded(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 401, "session_expired", "the account no longer exists", NULL);
        return;
    }
    snprintf(ctx->hash, sizeof(ctx->hash), "%s", PQgetvalue(res, 0, 0));
    snprintf(ctx->email, sizeof(ctx->email), "%s", PQgetvalue(res, 0, 1));
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 2));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 3));
    ctx->pw_min = auth_pw_min_length_of(res, 0, 4);
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);
    rc = pwhash_verify_async(svc_workq(ctx->svc), ctx->hash, ctx->password, peppers, npeppers,
                             ctx->req, auth_pwchange_verified, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

void
auth_password_change(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"current_password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
        {"new_password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
    };
    static const char sql[] =
        "SELECT a.password_hash, a.email, a.name, a.locale, " AUTH_PW_FACTS_SQL
        " FROM accounts a LEFT JOIN organizations o ON o.id = a.org_id "
        "WHERE a.id = $1 AND a.status = 'active'";
    json_object *body;

    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    int rc = auth_password_prepare(ctx, "current_password",
                                   jx_get_str(body, "current_password", ""), &ctx->password);
    if (rc == PHR_OK) {
        rc = auth_password_prepare(ctx, "new_password", jx_get_str(body, "new_password", ""),
                                   &ctx->new_password);
    }
    json_object_put(body);
    if (rc != PHR_OK) {
        return;
    }
    const char *p[] = {sess->account_id};
    rc = db_query(svc_db(svc), sql, 1, p, auth_pwchange_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}
