/*
 * phr-auth - identities: accounts, organizations, sessions, passwords.
 */
#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "auth.h"
#include "hygiene.h"
#include "mfa.h"
#include "org.h"
#include "password.h"
#include "reset.h"
#include "timeutil.h"
#include "svc.h"

extern const db_migration_t auth_migrations[];

/* The password rules of the white paper: 8+ characters, upper, lower and digits. */
static const struct {
    int min_length, max_length;
    int require_upper, require_lower, require_digit, require_symbol;
    int disallow_common, disallow_context;
} auth_policy = {8, 128, 1, 1, 1, 0, 1, 1};

/* The policy never changes while the process runs: its JSON is built once. */
static char auth_policy_json[256];
static size_t auth_policy_len;

static int
auth_init(svc_t *svc)
{
    int n = snprintf(
        auth_policy_json, sizeof(auth_policy_json),
        "{\"min_length\":%d,\"max_length\":%d,\"require_upper\":%s,"
        "\"require_lower\":%s,\"require_digit\":%s,\"require_symbol\":%s,"
        "\"disallow_common\":%s,\"disallow_context\":%s}",
        auth_policy.min_length, auth_policy.max_length,
        auth_policy.require_upper ? "true" : "false", auth_policy.require_lower ? "true" : "false",
        auth_policy.require_digit ? "true" : "false", auth_policy.require_symbol ? "true" : "false",
        auth_policy.disallow_common ? "true" : "false",
        auth_policy.disallow_context ? "true" : "false");
    if (n < 0 || (size_t)n >= sizeof(auth_policy_json)) {
        return PHR_ETOOBIG;
    }
    auth_policy_len = (size_t)n;
    return auth_hygiene_start(svc);
}

static void
auth_fini(svc_t *svc)
{
    auth_hygiene_stop();
}

static void
auth_password_policy(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    h2s_respond(req, 200, "application/json", auth_policy_json, auth_policy_len);
}

typedef struct {
    h2s_req_t *req;
    pw_violations_t v;
} auth_check_t;

static void
auth_check_respond(h2s_req_t *req, const pw_violations_t *v)
{
    json_object *o = json_object_new_object();
    json_object *arr = json_object_new_array();

    for (size_t i = 0; i < v->n; i++) {
        json_object_array_add(arr, json_object_new_string(v->items[i]));
    }
    json_object_object_add(o, "acceptable", json_object_new_boolean(v->n == 0));
    json_object_object_add(o, "violations", arr);
    h2s_respond_json(req, 200, o);
}

static void
auth_check_common_done(int rc, PGresult *res, void *ud)
{
    auth_check_t *chk = ud;

    if (rc != PHR_OK) {
        svc_respond_error(chk->req, rc, "the password blocklist is unavailable; retry later");
    } else {
        if (PQntuples(res) > 0) {
            chk->v.items[chk->v.n++] = "common_password";
        }
        auth_check_respond(chk->req, &chk->v);
    }
    free(chk);
}

/* POST /api/v1/auth/password-policy/check {password, email?}: live checks for sign-up forms. */
static void
auth_password_check(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
        {"email", JX_STRING, 0, 0, -1, 0, 254, NULL},
    };
    json_object *body;

    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    auth_check_t *chk = calloc(1, sizeof(*chk));
    if (chk == NULL) {
        json_object_put(body);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    chk->req = req;
    char *password = NULL;
    int rc = pw_normalize(jx_get_str(body, "password", ""), &password);
    if (rc != PHR_OK) {
        json_object_put(body);
        free(chk);
        svc_respond_error(req, rc, "password: not valid UTF-8");
        return;
    }
    pw_check_rules(password, jx_get_str(body, "email", NULL), PW_MIN_LENGTH, &chk->v);
    char key[65];
    pw_common_key(password, key);
    pw_free(password);
    const char *params[] = {key};
    rc = db_query(svc_db(svc), pw_common_sql, 1, params, auth_check_common_done, chk);
    json_object_put(body);
    if (rc != PHR_OK) {
        free(chk);
        svc_respond_error(req, rc, "the password blocklist is unavailable; retry later");
    }
}

/*
 * GET /api/v1/auth/session: the caller's session with the account and factors
 * as of login (carried in the session record: no database round trip).
 */
static void
auth_session(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    char created[TU_JST_LEN], idle[TU_JST_LEN], absolute[TU_JST_LEN], authn[TU_JST_LEN];
    json_object *o = json_object_new_object();
    json_object *a = json_object_new_object();
    json_object *methods = json_object_new_array();

    tu_format_jst(sess->created_ms, created, sizeof(created));
    tu_format_jst(sess->idle_expires_ms, idle, sizeof(idle));
    tu_format_jst(sess->absolute_expires_ms, absolute, sizeof(absolute));
    tu_format_jst(sess->authenticated_ms ? sess->authenticated_ms : sess->created_ms, authn,
                  sizeof(authn));
    json_object_object_add(a, "id", json_object_new_string(sess->account_id));
    json_object_object_add(a, "email", json_object_new_string(sess->profile.email));
    json_object_object_add(a, "name", json_object_new_string(sess->profile.name));
    json_object_object_add(a, "locale", json_object_new_string(sess->profile.locale));
    json_object_object_add(a, "email_verified",
                           json_object_new_boolean(sess->profile.email_verified));
    json_object_object_add(a, "kind", json_object_new_string(sess->kind));
    json_object_object_add(a, "org_id",
                           sess->org_id[0] ? json_object_new_string(sess->org_id) : NULL);
    json_object_object_add(a, "role", sess->role[0] ? json_object_new_string(sess->role) : NULL);
    if (sess->profile.mfa_methods & SESS_MFA_TOTP) {
        json_object_array_add(methods, json_object_new_string("totp"));
    }
    if (sess->profile.mfa_methods & SESS_MFA_SMS) {
        json_object_array_add(methods, json_object_new_string("sms"));
    }
    json_object_object_add(o, "session_id", json_object_new_string(sess->session_id));
    json_object_object_add(o, "account_id", json_object_new_string(sess->account_id));
    json_object_object_add(o, "account", a);
    json_object_object_add(o, "kind", json_object_new_string(sess->kind));
    json_object_object_add(o, "org_id",
                           sess->org_id[0] ? json_object_new_string(sess->org_id) : NULL);
    json_object_object_add(o, "role", sess->role[0] ? json_object_new_string(sess->role) : NULL);
    json_object_object_add(o, "mfa", json_object_new_string(sess->mfa));
    json_object_object_add(o, "mfa_methods", methods);
    json_object_object_add(o, "mfa_required_by_org",
                           json_object_new_boolean(sess->profile.mfa_required_by_org));
    json_object_object_add(o, "mfa_enrollment_required",
                           json_object_new_boolean(sess->mfa_enrollment_required));
    json_object_object_add(o, "created_at", json_object_new_string(created));
    json_object_object_add(o, "authenticated_at", json_object_new_string(authn));
    json_object_object_add(o, "expires_at", json_object_new_string(absolute));
    json_object_object_add(o, "idle_expires_at", json_object_new_string(idle));
    json_object_object_add(o, "must_change_password",
                           json_object_new_boolean(sess->must_change_password));
    h2s_respond_json(req, 200, o);
}

/* Session routes a session must still reach while it is gated. */
#define AUTH_GATED_OK (SVC_SESSION | SVC_ALLOW_MUST_CHANGE | SVC_ALLOW_MFA_ENROLL)

static const svc_route_t auth_core_table[] = {
    {"POST", "/api/v1/auth/password-policy/check", auth_password_check, SVC_NEEDS_DB, 4096},
    {"GET", "/api/v1/auth/session", auth_session, AUTH_GATED_OK, 0},
    {"POST", "/api/v1/auth/register", auth_register, SVC_NEEDS_DB, 4096},
    {"POST", "/api/v1/auth/verify-email", auth_verify_email, SVC_NEEDS_DB, 1024},
    {"POST", "/api/v1/auth/login", auth_login, SVC_NEEDS_DB, 4096},
    {"POST", "/api/v1/auth/logout", auth_logout, AUTH_GATED_OK, 0},
    {"POST", "/api/v1/auth/password", auth_password_change, AUTH_GATED_OK | SVC_NEEDS_DB, 4096},
    {"GET", "/api/v1/auth/sessions", auth_sessions_list, SVC_SESSION, 0},
    {"POST", "/api/v1/auth/sessions/revoke-others", auth_sessions_revoke_others, SVC_SESSION, 0},
    {"DELETE", "/api/v1/auth/sessions/{session_id}", auth_session_delete, SVC_SESSION, 0},
    {"GET", "/api/v1/auth/password-policy", auth_password_policy, SVC_PUBLIC, 0},
};

static const svc_routes_t auth_core_routes = SVC_ROUTES(auth_core_table);

/* One set per module. */
static const svc_routes_t *const auth_route_sets[] = {
    &auth_core_routes, &auth_reset_routes, &auth_mfa_routes, &auth_org_routes, &auth_hygiene_routes,
};

int
main(int argc, char **argv)
{
    static const svc_def_t def = {
        .name = "auth",
        .migrations = auth_migrations,
        .route_sets = auth_route_sets,
        .nroute_sets = sizeof(auth_route_sets) / sizeof(auth_route_sets[0]),
        .init = auth_init,
        .fini = auth_fini,
    };
    return svc_main(&def, argc, argv);
}
