/*
 * login.c - POST /api/v1/auth/login: attempt counters in Redis, the password
 * check on the worker pool (a dummy hash for unknown accounts), lockout after
 * AUTH_LOCK_AFTER consecutive failures (1, 2, 4 ... minutes, at most 15),
 * audit events in the same transaction as the account update, then a session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "mfa.h"
#include "timeutil.h"
#include "uuid.h"

#define AUTH_IP_LIMIT "5000"     /* attempts per IP per window (the gateway limits too) */
#define AUTH_IP_ACCT_LIMIT "100" /* attempts per (IP, account) per window */
#define AUTH_WINDOW_S "300"

/* KEYS: ip counter, ip+account counter. ARGV: window, ip limit, pair limit. 1 = over. */
static const char auth_limit_lua[] =
    "local a = redis.call('INCR', KEYS[1]) "
    "if a == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "local b = redis.call('INCR', KEYS[2]) "
    "if b == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end "
    "if a > tonumber(ARGV[2]) or b > tonumber(ARGV[3]) then return 1 end "
    "return 0";

static void
auth_login_denied(auth_ctx_t *ctx)
{
    h2s_respond_problem(ctx->req, 401, "invalid_credentials", "wrong e-mail or password", NULL);
}

static void
auth_login_fail_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        log_warn("login failure bookkeeping failed: %s", phr_err_str(rc));
    } else {
        auth_outbox_kick(ctx->svc);
    }
    auth_login_denied(ctx);
}

void
auth_count_failure(auth_ctx_t *ctx, int failed_logins, int locked)
{
    static const char sql[] =
        "UPDATE accounts SET failed_logins = failed_logins + 1, updated_at = now(), "
        "locked_until = CASE WHEN failed_logins + 1 >= 5 THEN now() + "
        "least(15, power(2, failed_logins + 1 - 5))::int * interval '1 minute' "
        "ELSE locked_until END WHERE id = $1";
    char event_id[37], key[80], until[TU_JST_LEN];

    if (locked) {
        return; /* a locked account's attempts neither count nor extend the lock */
    }
    const char *p[] = {ctx->account_id};
    auth_tx_sql(ctx, sql, 1, p);
    if (failed_logins + 1 < AUTH_LOCK_AFTER) {
        return;
    }
    int shift = failed_logins + 1 - AUTH_LOCK_AFTER;
    int64_t minutes = shift >= 4 ? 15 : (int64_t)1 << shift;
    tu_format_jst(tu_now_ms() + minutes * 60000, until, sizeof(until));
    char *audit = auth_audit_json(ctx, "auth.lockout", NULL, "anonymous", ctx->account_id,
                                  "success", "too_many_failures", event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    const char *params[] = {"name", ctx->name, "locked_until", until, NULL};
    snprintf(key, sizeof(key), "locked:%s", event_id);
    auth_tx_outbox(ctx, "notification", key,
                   auth_notify_json("account_locked", ctx->account_id, ctx->locale, params));
}

/* Records a failed attempt (and a lock at the threshold) with its audit events. */
static void
auth_login_failed(auth_ctx_t *ctx, const char *reason)
{
    char event_id[37];
    char *audit;

    if (!ctx->found) {
        audit = auth_audit_json(ctx, "auth.login.failure", NULL, "anonymous", "unknown", "failure",
                                "invalid_credentials", event_id);
        auth_tx_outbox(ctx, "audit", event_id, audit);
        auth_tx_run(ctx, auth_login_fail_committed);
        return;
    }
    audit = auth_audit_json(ctx, "auth.login.failure", NULL, "anonymous", ctx->account_id,
                            "failure", reason, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    auth_count_failure(ctx, ctx->failed_logins, ctx->locked);
    auth_tx_run(ctx, auth_login_fail_committed);
}

static void
auth_login_stored(int rc, void *ud)
{
    auth_ctx_t *ctx = ud;
    char exp[TU_JST_LEN], idle[TU_JST_LEN];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    tu_format_jst(ctx->sess.absolute_expires_ms, exp, sizeof(exp));
    tu_format_jst(ctx->sess.idle_expires_ms, idle, sizeof(idle));
    json_object *o = json_object_new_object();
    json_object *a = json_object_new_object();
    json_object_object_add(a, "id", json_object_new_string(ctx->account_id));
    json_object_object_add(a, "email", json_object_new_string(ctx->email));
    json_object_object_add(a, "name", json_object_new_string(ctx->name));
    json_object_object_add(a, "kind", json_object_new_string(ctx->kind));
    json_object_object_add(a, "org_id",
                           ctx->org_id[0] ? json_object_new_string(ctx->org_id) : NULL);
    json_object_object_add(a, "role", ctx->role[0] ? json_object_new_string(ctx->role) : NULL);
    json_object_object_add(a, "locale", json_object_new_string(ctx->locale));
    json_object_object_add(a, "email_verified", json_object_new_boolean(ctx->email_verified));
    json_object_object_add(o, "token", json_object_new_string(ctx->token));
    json_object_object_add(o, "expires_at", json_object_new_string(exp));
    json_object_object_add(o, "idle_expires_at", json_object_new_string(idle));
    json_object_object_add(o, "account", a);
    json_object_object_add(o, "must_change_password", json_object_new_boolean(ctx->must_change));
    json_object_object_add(o, "mfa_enrollment_required",
                           json_object_new_boolean(ctx->mfa_enroll_required));
    h2s_respond_json(ctx->req, 200, o);
}

static void
auth_login_committed(auth_ctx_t *ctx, int rc)
{
    const cfg_t *cfg = svc_cfg(ctx->svc);
    sess_t *s = &ctx->sess;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the login could not be completed; retry later");
        return;
    }
    auth_outbox_kick(ctx->svc);
    int64_t now = tu_now_ms();
    int64_t life = strcmp(ctx->kind, "patient") == 0 ? cfg->session_absolute_patient_s
                                                     : cfg->session_absolute_staff_s;
    char mfa[sizeof(s->mfa)];
    snprintf(mfa, sizeof(mfa), "%s", s->mfa[0] ? s->mfa : "none"); /* set by auth_login_issue */
    memset(s, 0, sizeof(*s));
    memcpy(s->session_id, ctx->id2, sizeof(s->session_id));
    memcpy(s->account_id, ctx->account_id, sizeof(s->account_id));
    memcpy(s->kind, ctx->kind, sizeof(s->kind));
    memcpy(s->org_id, ctx->org_id, sizeof(s->org_id));
    memcpy(s->role, ctx->role, sizeof(s->role));
    memcpy(s->mfa, mfa, sizeof(s->mfa));
    s->created_ms = now;
    s->authenticated_ms = now;
    s->absolute_expires_ms = now + life * 1000;
    s->idle_expires_ms = now + (int64_t)cfg->session_idle_s * 1000;
    if (s->idle_expires_ms > s->absolute_expires_ms) {
        s->idle_expires_ms = s->absolute_expires_ms;
    }
    s->must_change_password = ctx->must_change;
    s->mfa_enrollment_required = ctx->mfa_enroll_required;
    snprintf(s->profile.email, sizeof(s->profile.email), "%s", ctx->email);
    snprintf(s->profile.name, sizeof(s->profile.name), "%s", ctx->name);
    snprintf(s->profile.locale, sizeof(s->profile.locale), "%s", ctx->locale);
    s->profile.email_verified = ctx->email_verified;
    s->profile.mfa_methods = ctx->mfa_methods;
    s->profile.mfa_required_by_org = ctx->org_requires_mfa;
    rc = sess_store(svc_kv(ctx->svc), ctx->token, s, auth_login_stored, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

void
auth_login_issue(auth_ctx_t *ctx, const char *mfa)
{
    static const char sql[] =
        "UPDATE accounts SET failed_logins = 0, locked_until = NULL, last_login_at = now(), "
        "password_hash = coalesce($2, password_hash), updated_at = now() WHERE id = $1";
    char event_id[37];

    if (sess_token_new(ctx->token) != PHR_OK || uuid4(ctx->id2) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    const char *p[] = {ctx->account_id, ctx->new_hash[0] ? ctx->new_hash : NULL};
    auth_tx_sql(ctx, sql, 2, p);
    ctx->has_sess = 1; /* the audit event names the new session */
    memcpy(ctx->sess.session_id, ctx->id2, sizeof(ctx->sess.session_id));
    snprintf(ctx->sess.mfa, sizeof(ctx->sess.mfa), "%s", mfa);
    char *audit = auth_audit_json(ctx, "auth.login.success", ctx->account_id, ctx->kind,
                                  ctx->account_id, "success", NULL, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    auth_tx_run(ctx, auth_login_committed);
}

/* The password is right: an MFA challenge when a factor is enrolled, else the session. */
static void
auth_login_success(auth_ctx_t *ctx)
{
    auth_mfa_login(ctx);
}

static void
auth_login_rehashed(int rc, const char *encoded, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc == PHR_ECLOSED && h2s_req_closed(ctx->req)) {
        /* The client left while the re-hash waited: no session for it. Frees the request. */
        h2s_respond(ctx->req, 499, NULL, NULL, 0);
        return;
    }
    if (rc == PHR_OK) {
        snprintf(ctx->new_hash, sizeof(ctx->new_hash), "%s", encoded);
    } else {
        log_warn("login: rehash failed: %s", phr_err_str(rc));
    }
    auth_login_success(ctx);
}

static void
auth_login_verified(int rc, int needs_rehash, void *ud)
{
    auth_ctx_t *ctx = ud;
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);

    if (rc == PHR_ECLOSED && h2s_req_closed(ctx->req)) {
        /* The check was dropped: the client left before it started. Frees the request. */
        h2s_respond(ctx->req, 499, NULL, NULL, 0);
        return;
    }
    if (rc != PHR_OK && rc != PHR_EDENIED && rc != PHR_EINVAL) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (!ctx->found) {
        auth_login_failed(ctx, "unknown_account");
        return;
    }
    if (ctx->locked) {
        auth_login_failed(ctx, "locked");
        return;
    }
    if (rc != PHR_OK) {
        auth_login_failed(ctx, "invalid_credentials");
        return;
    }
    if (ctx->pw_expired) { /* an initial password not changed within 72 h */
        auth_login_failed(ctx, "password_expired");
        return;
    }
    if (h2s_req_closed(ctx->req)) {
        /* The client left during the check: no session, no last login for nobody. */
        h2s_respond(ctx->req, 499, NULL, NULL, 0);
        return;
    }
    if (needs_rehash && pwhash_hash_async(svc_workq(ctx->svc), ctx->password, peppers, ctx->req,
                                          auth_login_rehashed, ctx) == PHR_OK) {
        return;
    }
    auth_login_success(ctx);
}

static void
auth_login_loaded(int rc, PGresult *res, void *ud)
{
    auth_ctx_t *ctx = ud;
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) > 0) {
        ctx->found = 1;
        snprintf(ctx->account_id, sizeof(ctx->account_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 1));
        snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 2));
        snprintf(ctx->kind, sizeof(ctx->kind), "%s", PQgetvalue(res, 0, 3));
        snprintf(ctx->org_id, sizeof(ctx->org_id), "%s", PQgetvalue(res, 0, 4));
        snprintf(ctx->role, sizeof(ctx->role), "%s", PQgetvalue(res, 0, 5));
        snprintf(ctx->hash, sizeof(ctx->hash), "%s", PQgetvalue(res, 0, 6));
        ctx->email_verified = PQgetvalue(res, 0, 7)[0] == 't';
        ctx->must_change = PQgetvalue(res, 0, 8)[0] == 't';
        ctx->failed_logins = (int)strtol(PQgetvalue(res, 0, 9), NULL, 10);
        ctx->locked = PQgetvalue(res, 0, 10)[0] == 't';
        ctx->pw_expired = PQgetvalue(res, 0, 11)[0] == 't';
    }
    /* Unknown and locked accounts cost the same hash as a real check. */
    rc = pwhash_verify_async(svc_workq(ctx->svc), ctx->found && !ctx->locked ? ctx->hash : NULL,
                             ctx->password, peppers, npeppers, ctx->req, auth_login_verified, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

static void
auth_login_limited(int rc, redisReply *reply, void *ud)
{
    static const char sql[] =
        "SELECT id, name, locale, kind, coalesce(org_id::text, ''), coalesce(role, ''), "
        "password_hash, email_verified_at IS NOT NULL, must_change_password, failed_logins, "
        "coalesce(locked_until > now(), false), coalesce(password_expires_at <= now(), false) "
        "FROM accounts "
        "WHERE email = $1 AND status = 'active' AND NOT EXISTS (SELECT 1 FROM organizations o "
        "WHERE o.id = accounts.org_id AND o.status <> 'active')"; /* a suspended org's staff */
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK || reply->type != REDIS_REPLY_INTEGER) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (reply->integer == 1) {
        h2s_req_add_header(ctx->req, "retry-after", AUTH_WINDOW_S);
        h2s_respond_problem(ctx->req, 429, "rate_limited", "too many login attempts; retry later",
                            NULL);
        return;
    }
    const char *p[] = {ctx->email};
    rc = db_query(svc_db(ctx->svc), sql, 1, p, auth_login_loaded, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

void
auth_login(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"email", JX_STRING, 1, 0, -1, 1, 254, NULL},
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
    };
    json_object *body;
    char k1[128], k2[160], ehash[65];

    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    auth_ctx_t *ctx = auth_ctx_new(svc, req, NULL);
    if (ctx == NULL) {
        json_object_put(body);
        return;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    if (!auth_email_normalise(jx_get_str(body, "email", ""), ctx->email, sizeof(ctx->email))) {
        snprintf(ctx->email, sizeof(ctx->email), "invalid@invalid"); /* no such account */
    }
    int rc = pw_normalize(jx_get_str(body, "password", ""), &ctx->password);
    json_object_put(body);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc == PHR_EINVAL ? PHR_EINVAL : rc, "password: not valid UTF-8");
        return;
    }
    auth_sha256_hex(ctx->email, ehash);
    snprintf(k1, sizeof(k1), "phr:login:ip:%s", ctx->ip);
    snprintf(k2, sizeof(k2), "phr:login:ipacct:%s:%.32s", ctx->ip, ehash);
    const char *argv[] = {"EVAL", auth_limit_lua, "2",           k1,
                          k2,     AUTH_WINDOW_S,  AUTH_IP_LIMIT, AUTH_IP_ACCT_LIMIT};
    size_t argvlen[8];
    for (size_t i = 0; i < 8; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    rc = kv_command_argv(svc_kv(svc), auth_login_limited, ctx, 8, argv, argvlen);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}
