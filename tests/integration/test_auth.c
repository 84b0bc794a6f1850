/*
 * test_auth.c - the auth core through the gateway: registration and e-mail
 * verification, login and lockout, sessions, logout, password change and the
 * must_change_password gate.
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR (the
 * secrets dir holds pg_auth.password), PHR_TEST_PG_HOST, PHR_TEST_PG_PORT
 * (outbox rows and account flags are read and set with psql as phr_auth).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define AUTH_PW "Blue7Harbor!q"
#define AUTH_PW2 "Green8Meadow?z"

static long
auth_post(const char *path, const char *body, const char *token, it_resp_t *r)
{
    char auth[128];
    const char *hdrs[3] = {"Content-Type: application/json", NULL, NULL};
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[1] = auth;
    }
    it_request(IT_GATEWAY_H2, NULL, "POST", path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

static long
auth_call(const char *method, const char *path, const char *token, it_resp_t *r)
{
    char auth[128];
    const char *hdrs[2] = {auth, NULL};
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    it_request(IT_GATEWAY_H2, NULL, method, path, NULL, 0, hdrs, r);
    return r->status;
}

static long
auth_status(const char *method, const char *path, const char *token)
{
    it_resp_t r;
    long st = auth_call(method, path, token, &r);
    it_resp_free(&r);
    return st;
}

/* The session id of |token| via GET /api/v1/auth/session. */
static int
auth_session_id(const char *token, char *out)
{
    it_resp_t r;
    int ok = auth_call("GET", "/api/v1/auth/session", token, &r) == 200 &&
             it_json_str(&r, "session_id") != NULL;
    if (ok) {
        snprintf(out, 37, "%s", it_json_str(&r, "session_id"));
    }
    it_resp_free(&r);
    return ok;
}

/* 1 when the errors[] of |r| name |field| (and, when not NULL, contain |text|). */
static int
auth_names_field(const it_resp_t *r, const char *field, const char *text)
{
    json_object *errs, *it, *f, *m;
    if (r->json == NULL || !json_object_object_get_ex(r->json, "errors", &errs)) {
        return 0;
    }
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        it = json_object_array_get_idx(errs, i);
        if (json_object_object_get_ex(it, "field", &f) &&
            strcmp(json_object_get_string(f), field) == 0 &&
            (text == NULL || (json_object_object_get_ex(it, "message", &m) &&
                              strstr(json_object_get_string(m), text) != NULL))) {
            return 1;
        }
    }
    return 0;
}

static void
test_register_verify(void)
{
    char email[128], id[37], url[512], body[256];
    it_resp_t r;

    it_unique_email(email, sizeof(email), "reg");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"A\"}", email,
             AUTH_PW);
    IT_CHECK(auth_post("/api/v1/auth/register", body, NULL, &r) == 201);
    json_object *v;
    int shape = it_json_str(&r, "id") != NULL && it_json_str(&r, "email") != NULL &&
                strcmp(it_json_str(&r, "kind"), "patient") == 0 &&
                json_object_object_get_ex(r.json, "email_verified", &v) &&
                !json_object_get_boolean(v);
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    it_resp_free(&r);
    IT_CHECK(shape);
    IT_CHECK(it_psql("auth", url, sizeof(url),
                     "SELECT body->'params'->>'verify_url' FROM outbox WHERE topic = "
                     "'notification' AND body->>'kind' = 'email_verification' AND "
                     "body->'to'->>'account_id' = '%s'",
                     id) == 0);
    const char *tok = strstr(url, "/verify-email?token=");
    IT_CHECK(tok != NULL && strncmp(url, "https://", 8) == 0);
    tok += strlen("/verify-email?token=");
    IT_CHECK(strlen(tok) == 43);
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", tok);
    IT_CHECK(auth_post("/api/v1/auth/verify-email", body, NULL, &r) == 204);
    it_resp_free(&r);
    char out[64];
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT email_verified_at IS NOT NULL FROM accounts "
                     "WHERE id = '%s'",
                     id) == 0 &&
             strcmp(out, "t") == 0);
    auth_post("/api/v1/auth/verify-email", body, NULL, &r);
    int again = it_is_problem(&r, 422, "invalid_token");
    it_resp_free(&r);
    IT_CHECK(again);
    /* a forged token */
    auth_post("/api/v1/auth/verify-email",
              "{\"token\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", NULL, &r);
    int forged = it_is_problem(&r, 422, "invalid_token");
    it_resp_free(&r);
    IT_CHECK(forged);
}

static void
test_register_duplicate(void)
{
    char body[256], out[64];
    it_patient_t u;
    it_resp_t r;

    IT_CHECK(it_patient("dup", AUTH_PW, 0, &u));
    /* the same address in other case: same 201 shape, another id, a mail to the owner */
    for (char *p = u.email; *p != '@'; p++) {
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    }
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"B\"}", u.email,
             AUTH_PW2);
    IT_CHECK(auth_post("/api/v1/auth/register", body, NULL, &r) == 201);
    int shape = it_json_str(&r, "id") != NULL && strcmp(it_json_str(&r, "id"), u.id) != 0 &&
                it_json_str(&r, "kind") != NULL;
    it_resp_free(&r);
    IT_CHECK(shape);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE body->>'kind' = 'account_exists' AND "
                     "body->'to'->>'account_id' = '%s'",
                     u.id) == 0);
    IT_CHECK(strcmp(out, "1") == 0);
}

static void
test_register_bad_inputs(void)
{
    it_resp_t r;
    char email[128], body[512];
    int ok;

    auth_post("/api/v1/auth/register",
              "{\"email\":\"not-an-address\",\"password\":\"" AUTH_PW "\",\"name\":\"A\"}", NULL,
              &r);
    ok = r.status == 400 && auth_names_field(&r, "email", NULL);
    it_resp_free(&r);
    IT_CHECK(ok);

    it_unique_email(email, sizeof(email), "bad");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"short\",\"name\":\"A\"}", email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = it_is_problem(&r, 422, "password_policy") &&
         auth_names_field(&r, "password", "too_short") &&
         auth_names_field(&r, "password", "missing_digit");
    it_resp_free(&r);
    IT_CHECK(ok);

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"Password1\",\"name\":\"A\"}",
             email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = it_is_problem(&r, 422, "password_policy") &&
         auth_names_field(&r, "password", "common_password");
    it_resp_free(&r);
    IT_CHECK(ok);

    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"" AUTH_PW "\",\"name\":\"A\",\"admin\":true}",
             email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = r.status == 400 && auth_names_field(&r, "admin", NULL);
    it_resp_free(&r);
    IT_CHECK(ok);

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"" AUTH_PW "\",\"name\":5}",
             email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = r.status == 400 && auth_names_field(&r, "name", NULL);
    it_resp_free(&r);
    IT_CHECK(ok);

    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"" AUTH_PW "\",\"name\":\"A\",\"locale\":\"fr\"}",
             email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = r.status == 400 && auth_names_field(&r, "locale", NULL);
    it_resp_free(&r);
    IT_CHECK(ok);

    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"" AUTH_PW "\",\"name\":\"\xff\"}", email);
    auth_post("/api/v1/auth/register", body, NULL, &r);
    ok = r.status == 400;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* nothing was created for that address */
    char out[32];
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT count(*) FROM accounts WHERE email = '%s'",
                     email) == 0 &&
             strcmp(out, "0") == 0);
}

/* Compares two problem bodies except request_id and instance. */
static int
auth_same_problem(const it_resp_t *a, const it_resp_t *b)
{
    static const char *const keys[] = {"type", "title", "code", "detail", NULL};
    if (a->status != b->status || a->json == NULL || b->json == NULL ||
        json_object_object_length(a->json) != json_object_object_length(b->json)) {
        return 0;
    }
    for (size_t i = 0; keys[i] != NULL; i++) {
        const char *x = it_json_str(a, keys[i]), *y = it_json_str(b, keys[i]);
        if (x == NULL || y == NULL || strcmp(x, y) != 0) {
            return 0;
        }
    }
    return 1;
}

static void
test_login_and_failures(void)
{
    char ghost[128], token[64], body[256];
    it_patient_t u;
    it_resp_t wrong, unknown, r;

    it_unique_email(ghost, sizeof(ghost), "ghost");
    IT_CHECK(it_patient("login", AUTH_PW, 0, &u));
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, AUTH_PW);
    IT_CHECK(auth_post("/api/v1/auth/login", body, NULL, &r) == 200);
    json_object *acct, *mc;
    int shape = it_json_str(&r, "token") != NULL && it_json_str(&r, "expires_at") != NULL &&
                it_json_str(&r, "idle_expires_at") != NULL &&
                json_object_object_get_ex(r.json, "account", &acct) &&
                json_object_object_get_ex(r.json, "must_change_password", &mc) &&
                !json_object_get_boolean(mc);
    snprintf(token, sizeof(token), "%s", shape ? it_json_str(&r, "token") : "");
    it_resp_free(&r);
    IT_CHECK(shape);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", token) == 200);

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, AUTH_PW2);
    auth_post("/api/v1/auth/login", body, NULL, &wrong);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", ghost, AUTH_PW2);
    auth_post("/api/v1/auth/login", body, NULL, &unknown);
    int same =
        it_is_problem(&wrong, 401, "invalid_credentials") && auth_same_problem(&wrong, &unknown);
    it_resp_free(&wrong);
    it_resp_free(&unknown);
    IT_CHECK(same);
}

static void
test_lockout(void)
{
    char out[32];
    it_patient_t u;
    it_resp_t right, r;

    IT_CHECK(it_patient("lock", AUTH_PW, 0, &u));
    for (int i = 0; i < 5; i++) {
        IT_CHECK(it_login(u.email, AUTH_PW2, NULL) == 401);
    }
    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, AUTH_PW);
    auth_post("/api/v1/auth/login", body, NULL, &right);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, AUTH_PW2);
    auth_post("/api/v1/auth/login", body, NULL, &r);
    int same = it_is_problem(&right, 401, "invalid_credentials") && auth_same_problem(&right, &r);
    it_resp_free(&right);
    it_resp_free(&r);
    IT_CHECK(same);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT locked_until > now() + interval '30 seconds' AND locked_until < "
                     "now() + interval '61 seconds' FROM accounts WHERE email = '%s'",
                     u.email) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'auth.lockout' AND body->'target'->>'id' = (SELECT id::text FROM accounts "
                     "WHERE email = '%s')",
                     u.email) == 0 &&
             strcmp(out, "1") == 0);
}

static void
test_logout(void)
{
    it_patient_t u;
    it_resp_t r;

    IT_CHECK(it_patient("logout", AUTH_PW, 1, &u));
    IT_CHECK(auth_status("POST", "/api/v1/auth/logout", u.token) == 204);
    auth_call("GET", "/api/v1/auth/session", u.token, &r);
    int gone = it_is_problem(&r, 401, "session_expired");
    it_resp_free(&r);
    IT_CHECK(gone);
    /* The logout is audited through the outbox, in the same database as the account. */
    char out[64];
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'auth.logout' AND body->'actor'->>'account_id' = (SELECT id::text FROM "
                     "accounts WHERE email = '%s')",
                     u.email) == 0 &&
             strcmp(out, "1") == 0);
}

static void
test_sessions_list_revoke(void)
{
    char a[64], b[64], sid_a[37], sid_b[37];
    it_patient_t u;
    it_resp_t r;

    IT_CHECK(it_patient("sess", AUTH_PW, 0, &u));
    IT_CHECK(it_login(u.email, AUTH_PW, a) == 200);
    IT_CHECK(it_login(u.email, AUTH_PW, b) == 200);
    IT_CHECK(auth_session_id(a, sid_a) && auth_session_id(b, sid_b));
    IT_CHECK(auth_call("GET", "/api/v1/auth/sessions", a, &r) == 200);
    json_object *items, *cur;
    int n = 0, ok = 1, seen_a = 0, seen_b = 0;
    if (r.json != NULL && json_object_object_get_ex(r.json, "items", &items)) {
        n = (int)json_object_array_length(items);
        for (int i = 0; i < n; i++) {
            json_object *it = json_object_array_get_idx(items, (size_t)i), *id;
            if (!json_object_object_get_ex(it, "id", &id) ||
                !json_object_object_get_ex(it, "current", &cur)) {
                ok = 0;
                continue;
            }
            int is_a = strcmp(json_object_get_string(id), sid_a) == 0;
            seen_a += is_a;
            seen_b += strcmp(json_object_get_string(id), sid_b) == 0;
            if (json_object_get_boolean(cur) != is_a) {
                ok = 0;
            }
        }
    }
    it_resp_free(&r);
    IT_CHECK(n == 2 && ok && seen_a == 1 && seen_b == 1);
    IT_CHECK(auth_post("/api/v1/auth/sessions/revoke-others", NULL, a, &r) == 200);
    json_object *rev;
    int one = r.json != NULL && json_object_object_get_ex(r.json, "revoked", &rev) &&
              json_object_get_int(rev) == 1;
    it_resp_free(&r);
    IT_CHECK(one);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", b) == 401);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", a) == 200);
}

static void
test_session_delete(void)
{
    char a[64], a2[64], x[64], sid_x[37], sid_a2[37], path[128];
    it_patient_t u1, u2;
    it_resp_t r;

    IT_CHECK(it_patient("del1", AUTH_PW, 0, &u1) && it_patient("del2", AUTH_PW, 0, &u2));
    IT_CHECK(it_login(u1.email, AUTH_PW, a) == 200 && it_login(u1.email, AUTH_PW, a2) == 200);
    IT_CHECK(it_login(u2.email, AUTH_PW, x) == 200);
    IT_CHECK(auth_session_id(x, sid_x) && auth_session_id(a2, sid_a2));
    snprintf(path, sizeof(path), "/api/v1/auth/sessions/%s", sid_x);
    auth_call("DELETE", path, a, &r);
    int nf = it_is_problem(&r, 404, "not_found");
    it_resp_free(&r);
    IT_CHECK(nf);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", x) == 200);
    snprintf(path, sizeof(path), "/api/v1/auth/sessions/%s", sid_a2);
    IT_CHECK(auth_status("DELETE", path, a) == 204);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", a2) == 401);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", a) == 200);
}

static void
test_password_change(void)
{
    char a[64], b[64], body[256], out[32];
    it_patient_t u;
    it_resp_t r;
    int ok;

    IT_CHECK(it_patient("pwc", AUTH_PW, 0, &u));
    IT_CHECK(it_login(u.email, AUTH_PW, a) == 200 && it_login(u.email, AUTH_PW, b) == 200);
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", AUTH_PW2,
             AUTH_PW2);
    auth_post("/api/v1/auth/password", body, a, &r);
    ok = it_is_problem(&r, 422, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", AUTH_PW,
             AUTH_PW);
    auth_post("/api/v1/auth/password", body, a, &r);
    ok = it_is_problem(&r, 422, "password_policy") &&
         auth_names_field(&r, "new_password", "same_as_current");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", AUTH_PW,
             AUTH_PW2);
    IT_CHECK(auth_post("/api/v1/auth/password", body, a, &r) == 204);
    it_resp_free(&r);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", b) == 401);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", a) == 200);
    IT_CHECK(it_login(u.email, AUTH_PW, NULL) == 401);
    IT_CHECK(it_login(u.email, AUTH_PW2, NULL) == 200);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE body->>'kind' = 'password_changed' AND "
                     "body->'to'->>'account_id' = (SELECT id::text FROM accounts WHERE email = "
                     "'%s')",
                     u.email) == 0 &&
             strcmp(out, "1") == 0);
}

static void
test_must_change_gate(void)
{
    char token[64], out[32], body[256];
    it_patient_t u;
    it_resp_t r;
    int ok;

    IT_CHECK(it_patient("must", AUTH_PW, 0, &u));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET must_change_password = true WHERE email = '%s' "
                     "RETURNING 1",
                     u.email) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_login(u.email, AUTH_PW, token) == 200);
    auth_call("GET", "/api/v1/auth/sessions", token, &r);
    ok = it_is_problem(&r, 403, "password_change_required");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(auth_status("GET", "/api/v1/auth/session", token) == 200);
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", AUTH_PW,
             AUTH_PW2);
    IT_CHECK(auth_post("/api/v1/auth/password", body, token, &r) == 204);
    it_resp_free(&r);
    IT_CHECK(auth_status("GET", "/api/v1/auth/sessions", token) == 200);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT must_change_password FROM accounts WHERE email = '%s'",
                     u.email) == 0 &&
             strcmp(out, "f") == 0);
}

/* A 100-character Japanese name survives sign-up, login and the session (no byte truncation). */
static void
test_session_profile_utf8(void)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    char email[128], token[64], name[512] = "", body[1024];
    it_resp_t r;
    json_object *acct, *v;

    for (int i = 0; i < 100; i++) {
        memcpy(name + 3 * i, "\xe5\xb1\xb1", 4); /* U+5C71, NUL-terminated each time */
    }
    it_unique_email(email, sizeof(email), "utf8");
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"%s\",\"locale\":\"en\"}", email,
             AUTH_PW, name);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/register", body, strlen(body),
                        json, &r) == 0);
    IT_CHECK(r.status == 201);
    it_resp_free(&r);
    IT_CHECK(it_login(email, AUTH_PW, token) == 200);
    auth_call("GET", "/api/v1/auth/session", token, &r);
    IT_CHECK(r.status == 200 && r.json != NULL);
    int ok = json_object_object_get_ex(r.json, "account", &acct) &&
             json_object_object_get_ex(acct, "name", &v) &&
             strcmp(json_object_get_string(v), name) == 0 &&
             json_object_object_get_ex(acct, "email", &v) &&
             strcmp(json_object_get_string(v), email) == 0 &&
             json_object_object_get_ex(acct, "locale", &v) &&
             strcmp(json_object_get_string(v), "en") == 0;
    if (!ok) {
        printf("    session: %.400s\n", r.body);
    }
    it_resp_free(&r);
    IT_CHECK(ok);
}

const it_case_t auth_cases[] = {
    {"auth_session_profile_utf8", test_session_profile_utf8},
    {"auth_register_verify", test_register_verify},
    {"auth_register_duplicate", test_register_duplicate},
    {"auth_register_bad_inputs", test_register_bad_inputs},
    {"auth_login_and_failures", test_login_and_failures},
    {"auth_lockout", test_lockout},
    {"auth_logout", test_logout},
    {"auth_sessions_list_revoke", test_sessions_list_revoke},
    {"auth_session_delete", test_session_delete},
    {"auth_password_change", test_password_change},
    {"auth_must_change_gate", test_must_change_gate},
    {NULL, NULL},
};
