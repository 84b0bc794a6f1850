/*
 * test_auth_reset.c - password reset, withdrawal and the password pepper
 * through the gateway.
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR (the
 * secrets dir holds pg_auth.password and auth_pepper_v1), PHR_TEST_PG_HOST,
 * PHR_TEST_PG_PORT (outbox rows, tokens and accounts are read and set with
 * psql as phr_auth). Login, register and reset share the gateway's login rate
 * zone: the cases keep those calls few.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define RS_PW "Blue7Harbor!q"
#define RS_PW2 "Green8Meadow?z"
#define RS_PW3 "Amber9Valley+w"
/* argon2id m=19456 t=2 p=1 of RS_OLD_PW without a pepper (libargon2's own encoder). */
#define RS_OLD_PW "Old5Lantern!k"
#define RS_OLD_HASH                                                                                \
    "$argon2id$v=19$m=19456,t=2,p=1$cGhyLXJlc2V0LXRlc3QwMQ$"                                       \
    "FdYMrRrV+H5uUTmmPzf/9sj8tKcnFydyY2O3ANYmCj4"
#define RS_FORGED "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static long
rs_post(const char *path, const char *body, const char *token, it_resp_t *r)
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

/* The status of POST |path| with |body|; the response is dropped. */
static long
rs_post_status(const char *path, const char *body, const char *token)
{
    it_resp_t r;
    long st = rs_post(path, body, token, &r);
    it_resp_free(&r);
    return st;
}

/* 1 when POST |path| answers the problem |status| |code|. */
static int
rs_post_problem(const char *path, const char *body, const char *token, int status, const char *code)
{
    it_resp_t r;
    rs_post(path, body, token, &r);
    int ok = it_is_problem(&r, status, code);
    it_resp_free(&r);
    return ok;
}

/* 1 when POST |path| answers 400 with errors[] naming |field|. */
static int
rs_names_field(const char *path, const char *body, const char *token, const char *field)
{
    it_resp_t r;
    json_object *errs, *f;
    int ok = 0;

    rs_post(path, body, token, &r);
    if (r.status == 400 && r.json != NULL && json_object_object_get_ex(r.json, "errors", &errs)) {
        for (size_t i = 0; i < json_object_array_length(errs); i++) {
            if (json_object_object_get_ex(json_object_array_get_idx(errs, i), "field", &f) &&
                strcmp(json_object_get_string(f), field) == 0) {
                ok = 1;
            }
        }
    }
    if (!ok) {
        printf("    expected 400 naming %s, got %ld: %.300s\n", field, r.status, r.body);
    }
    it_resp_free(&r);
    return ok;
}

/* Logs in; the token into |token| (64 bytes) when not NULL. Returns the status. */
static long
rs_login(const char *email, const char *pw, char *token)
{
    char body[512];
    it_resp_t r;
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    long st = rs_post("/api/v1/auth/login", body, NULL, &r);
    if (st == 200 && token != NULL) {
        const char *t = it_json_str(&r, "token");
        snprintf(token, 64, "%s", t != NULL ? t : "");
    } else if (st != 200) {
        printf("    login %s: %ld %.200s\n", email, st, r.body);
    }
    it_resp_free(&r);
    return st;
}

/* 1 when login with |pw| is refused exactly like a wrong password. */
static int
rs_login_refused(const char *email, const char *pw)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    return rs_post_problem("/api/v1/auth/login", body, NULL, 401, "invalid_credentials");
}

/* 1 when |token|'s session is gone (401 session_expired). */
static int
rs_session_dead(const char *token)
{
    char auth[128];
    const char *hdrs[2] = {auth, NULL};
    it_resp_t r;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdrs, &r);
    int ok = it_is_problem(&r, 401, "session_expired");
    it_resp_free(&r);
    return ok;
}

static long
rs_session_status(const char *token)
{
    char auth[128];
    const char *hdrs[2] = {auth, NULL};
    it_resp_t r;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdrs, &r);
    long st = r.status;
    it_resp_free(&r);
    return st;
}

/* Asks for a reset of |email|; the response body into |body| (cap bytes). Returns the status. */
static long
rs_request(const char *email, char *body, size_t cap)
{
    char req[512];
    it_resp_t r;
    snprintf(req, sizeof(req), "{\"email\":\"%s\"}", email);
    long st = rs_post("/api/v1/auth/password-reset/request", req, NULL, &r);
    snprintf(body, cap, "%s", r.body != NULL ? r.body : "");
    it_resp_free(&r);
    return st;
}

/* The token of the newest password_reset e-mail of |id| into |tok| (44 bytes). 1 when found. */
static int
rs_mailed_token(const char *id, char *tok)
{
    char url[512];
    if (it_psql("auth", url, sizeof(url),
                "SELECT body->'params'->>'reset_url' FROM outbox WHERE topic = 'notification' "
                "AND body->>'kind' = 'password_reset' AND body->'to'->>'account_id' = '%s' "
                "ORDER BY id DESC LIMIT 1",
                id) != 0) {
        return 0;
    }
    const char *t = strstr(url, "/reset-password?token=");
    if (t == NULL || strncmp(url, "https://", 8) != 0) {
        printf("    no reset_url for %s: '%s'\n", id, url);
        return 0;
    }
    t += strlen("/reset-password?token=");
    if (strlen(t) != 43) {
        return 0;
    }
    memcpy(tok, t, 44);
    return 1;
}

static long
rs_confirm(const char *tok, const char *pw)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"new_password\":\"%s\"}", tok, pw);
    return rs_post_status("/api/v1/auth/password-reset/confirm", body, NULL);
}

static int
rs_confirm_problem(const char *tok, const char *pw, int status, const char *code)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"new_password\":\"%s\"}", tok, pw);
    return rs_post_problem("/api/v1/auth/password-reset/confirm", body, NULL, status, code);
}

/* The count of outbox rows of |topic| matching the SQL condition |fmt|, ... */
static long rs_outbox_count(const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static long
rs_outbox_count(const char *topic, const char *fmt, ...)
{
    char out[64], where[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(where, sizeof(where), fmt, ap);
    va_end(ap);
    if (it_psql("auth", out, sizeof(out), "SELECT count(*) FROM outbox WHERE topic = '%s' AND %s",
                topic, where) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

static void
test_reset_request_uniform(void)
{
    char unknown[128], b1[256], b2[256], out[64];
    it_patient_t p;

    IT_CHECK(it_patient("known", RS_PW, 0, &p));
    it_unique_email(unknown, sizeof(unknown), "unknown");
    IT_CHECK(rs_request(p.email, b1, sizeof(b1)) == 202);
    IT_CHECK(rs_request(unknown, b2, sizeof(b2)) == 202);
    IT_CHECK(strcmp(b1, b2) == 0);
    IT_CHECK(strstr(b1, "\"status\":\"accepted\"") != NULL);
    /* the token is stored hashed, 30 minutes, and only the known account got one */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) || ':' || bool_and(expires_at BETWEEN now() + interval "
                     "'29 minutes' AND now() + interval '31 minutes') FROM account_tokens "
                     "WHERE account_id = '%s' AND purpose = 'password_reset'",
                     p.id) == 0);
    IT_CHECK(strcmp(out, "1:true") == 0);
    char tok[44];
    IT_CHECK(rs_mailed_token(p.id, tok));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM account_tokens WHERE token_sha256 = "
                     "sha256(convert_to('%s', 'UTF8'))",
                     tok) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(rs_outbox_count("audit",
                             "body->>'action' = 'auth.password.reset_request' AND "
                             "body->'target'->>'id' = '%s'",
                             p.id) == 1);
    /* bad input */
    const char *path = "/api/v1/auth/password-reset/request";
    IT_CHECK(rs_names_field(path, "{\"email\":\"not-an-address\"}", NULL, "email"));
    IT_CHECK(rs_names_field(path, "{}", NULL, "email"));
    IT_CHECK(rs_names_field(path, "{\"email\":\"a@example.com\",\"x\":1}", NULL, "x"));
}

static void
test_reset_confirm(void)
{
    char t1[64], t2[64], tok[44], old_tok[44], body[256], out[64];
    it_patient_t p;

    IT_CHECK(it_patient("confirm", RS_PW, 0, &p));
    IT_CHECK(rs_login(p.email, RS_PW, t1) == 200);
    IT_CHECK(rs_login(p.email, RS_PW, t2) == 200);
    IT_CHECK(rs_request(p.email, body, sizeof(body)) == 202);
    IT_CHECK(rs_mailed_token(p.id, old_tok));
    IT_CHECK(rs_request(p.email, body, sizeof(body)) == 202);
    IT_CHECK(rs_mailed_token(p.id, tok));
    IT_CHECK(strcmp(tok, old_tok) != 0);
    /* a lock in force is cleared by the reset */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET failed_logins = 7, locked_until = now() + "
                     "interval '10 minutes' WHERE id = '%s'",
                     p.id) == 0);
    /* the earlier token died when the second was issued */
    IT_CHECK(rs_confirm_problem(old_tok, RS_PW2, 422, "invalid_token"));
    /* policy: weak, common, containing the e-mail's local part */
    IT_CHECK(rs_confirm_problem(tok, "short1A", 422, "password_policy"));
    IT_CHECK(rs_confirm_problem(tok, "Password1", 422, "password_policy"));
    /* bad input */
    const char *path = "/api/v1/auth/password-reset/confirm";
    snprintf(body, sizeof(body), "{\"token\":\"%.42s!\",\"new_password\":\"%s\"}", tok, RS_PW2);
    IT_CHECK(rs_names_field(path, body, NULL, "token"));
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", tok);
    IT_CHECK(rs_names_field(path, body, NULL, "new_password"));
    /* the failed attempts above did not use the token up */
    IT_CHECK(rs_confirm(tok, RS_PW2) == 204);
    IT_CHECK(rs_login_refused(p.email, RS_PW));
    IT_CHECK(rs_session_dead(t1));
    IT_CHECK(rs_session_dead(t2));
    IT_CHECK(rs_login(p.email, RS_PW2, t1) == 200);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT failed_logins || ':' || (locked_until IS NULL) FROM accounts "
                     "WHERE id = '%s'",
                     p.id) == 0 &&
             strcmp(out, "0:true") == 0);
    IT_CHECK(rs_outbox_count("notification",
                             "body->>'kind' = 'password_changed' AND "
                             "body->'to'->>'account_id' = '%s' AND body->'params' ? 'changed_at'",
                             p.id) == 1);
    IT_CHECK(rs_outbox_count("audit",
                             "body->>'action' = 'auth.password.reset' AND "
                             "body->'target'->>'id' = '%s' AND body->'actor'->>'account_id' = '%s'",
                             p.id, p.id) == 1);
    /* single use, forged */
    IT_CHECK(rs_confirm_problem(tok, RS_PW3, 422, "invalid_token"));
    IT_CHECK(rs_confirm_problem(RS_FORGED, RS_PW3, 422, "invalid_token"));
    IT_CHECK(rs_login(p.email, RS_PW2, NULL) == 200);
}

static void
test_reset_expired(void)
{
    char tok[44], body[256], out[64];
    it_patient_t p;

    IT_CHECK(it_patient("expired", RS_PW, 0, &p));
    IT_CHECK(rs_request(p.email, body, sizeof(body)) == 202);
    IT_CHECK(rs_mailed_token(p.id, tok));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE account_tokens SET expires_at = now() - interval '1 second' "
                     "WHERE account_id = '%s' AND purpose = 'password_reset'",
                     p.id) == 0);
    IT_CHECK(rs_confirm_problem(tok, RS_PW2, 422, "invalid_token"));
    IT_CHECK(rs_login(p.email, RS_PW, NULL) == 200);
}

static void
test_withdraw(void)
{
    char t1[64], t2[64], body[256], out[64];
    it_patient_t p;
    const char *path = "/api/v1/auth/withdraw";

    IT_CHECK(it_patient("withdraw", RS_PW, 0, &p));
    IT_CHECK(rs_login(p.email, RS_PW, t1) == 200);
    IT_CHECK(rs_login(p.email, RS_PW, t2) == 200);
    IT_CHECK(rs_post_status(path, "{\"password\":\"" RS_PW "\"}", NULL) == 401);
    IT_CHECK(
        rs_post_problem(path, "{\"password\":\"Wrong1Password\"}", t1, 422, "invalid_credentials"));
    IT_CHECK(rs_names_field(path, "{}", t1, "password"));
    IT_CHECK(rs_names_field(path, "{\"password\":[]}", t1, "password"));
    IT_CHECK(rs_names_field(path, "{\"password\":\"x\",\"extra\":true}", t1, "extra"));
    IT_CHECK(rs_session_status(t1) == 200);
    IT_CHECK(rs_post_status(path, "{\"password\":\"" RS_PW "\"}", t1) == 204);
    IT_CHECK(rs_session_dead(t1));
    IT_CHECK(rs_session_dead(t2));
    IT_CHECK(rs_login_refused(p.email, RS_PW));
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT status FROM accounts WHERE id = '%s'",
                     p.id) == 0 &&
             strcmp(out, "withdrawn") == 0);
    IT_CHECK(rs_outbox_count("audit",
                             "body->>'action' = 'auth.account.withdraw' AND "
                             "body->'target'->>'id' = '%s'",
                             p.id) == 1);
    /* records is told in the same transaction (it ends the links, schedules the purge) */
    IT_CHECK(rs_outbox_count("records", "body->>'patient_id' = '%s'", p.id) == 1);
    /* a withdrawn account gets no reset link, with the same answer */
    IT_CHECK(rs_request(p.email, body, sizeof(body)) == 202);
    IT_CHECK(rs_outbox_count("notification",
                             "body->>'kind' = 'password_reset' AND "
                             "body->'to'->>'account_id' = '%s'",
                             p.id) == 0);
}

static void
test_withdraw_staff_forbidden(void)
{
    char email[128], org[64], id[64], tok[64];

    it_unique_email(email, sizeof(email), "staff");
    IT_CHECK(it_psql("auth", org, sizeof(org),
                     "INSERT INTO organizations (name, seat_limit, require_mfa) "
                     "VALUES ('Reset test clinic', 5, false) RETURNING id") == 0 &&
             strlen(org) == 36);
    IT_CHECK(it_psql("auth", id, sizeof(id),
                     "INSERT INTO accounts (email, name, kind, org_id, role, password_hash, "
                     "email_verified_at) VALUES ('%s', 'Staff', 'staff', '%s', 'staff', "
                     "'" RS_OLD_HASH "', now()) RETURNING id",
                     email, org) == 0 &&
             strlen(id) == 36);
    IT_CHECK(rs_login(email, RS_OLD_PW, tok) == 200);
    IT_CHECK(rs_post_problem("/api/v1/auth/withdraw", "{\"password\":\"" RS_OLD_PW "\"}", tok, 403,
                             "forbidden"));
    IT_CHECK(rs_session_status(tok) == 200);
}

static void
test_pepper(void)
{
    char old[128], id[64], out[512];
    it_patient_t p;
    const char *pepper = it_secret("auth_pepper_v1");

    IT_CHECK(pepper != NULL && strlen(pepper) == 64);
    IT_CHECK(it_patient("pepper", RS_PW, 0, &p));
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT password_hash FROM accounts WHERE id = '%s'",
                     p.id) == 0);
    IT_CHECK(strncmp(out, "$phrpepper$v1$argon2id$", 23) == 0);
    IT_CHECK(rs_login(p.email, RS_PW, NULL) == 200);
    /* an account hashed before the pepper existed still logs in, and is rehashed with it */
    it_unique_email(old, sizeof(old), "prepepper");
    IT_CHECK(it_psql("auth", id, sizeof(id),
                     "INSERT INTO accounts (email, name, kind, password_hash) "
                     "VALUES ('%s', 'Old', 'patient', '" RS_OLD_HASH "') RETURNING id",
                     old) == 0 &&
             strlen(id) == 36);
    IT_CHECK(rs_login_refused(old, RS_PW));
    IT_CHECK(rs_login(old, RS_OLD_PW, NULL) == 200);
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT password_hash FROM accounts WHERE id = '%s'",
                     id) == 0);
    IT_CHECK(strncmp(out, "$phrpepper$v1$argon2id$", 23) == 0);
    IT_CHECK(rs_login(old, RS_OLD_PW, NULL) == 200);
}

/* POST /internal/v1/accounts/{id}/verify-password: records' check of a re-entered password. */
static void
test_verify_password(void)
{
    char path[128], out[64];
    it_patient_t p;
    it_resp_t r;

    IT_CHECK(it_patient("verifypw", RS_PW, 0, &p));
    snprintf(path, sizeof(path), "/internal/v1/accounts/%s/verify-password", p.id);
    IT_CHECK(it_internal("auth", "records", "POST", path, "{\"password\":\"" RS_PW "\"}", &r) ==
             204);
    it_resp_free(&r);
    it_internal("auth", "records", "POST", path, "{\"password\":\"Wrong1Password\"}", &r);
    IT_CHECK(it_is_problem(&r, 422, "invalid_credentials"));
    it_resp_free(&r);
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT failed_logins FROM accounts WHERE id = '%s'",
                     p.id) == 0 &&
             strcmp(out, "1") == 0);
    /* only records may ask; no credential is 401 */
    it_internal("auth", "audit", "POST", path, "{\"password\":\"" RS_PW "\"}", &r);
    IT_CHECK(it_is_problem(&r, 403, "caller_not_allowed"));
    it_resp_free(&r);
    it_internal("auth", NULL, "POST", path, "{\"password\":\"" RS_PW "\"}", &r);
    IT_CHECK(r.status == 401);
    it_resp_free(&r);
    it_internal("auth", "records", "POST", path, "{}", &r);
    IT_CHECK(r.status == 400 && r.body != NULL && strstr(r.body, "\"password\"") != NULL);
    it_resp_free(&r);
    it_internal("auth", "records", "POST",
                "/internal/v1/accounts/00000000-0000-4000-8000-000000000000/verify-password",
                "{\"password\":\"" RS_PW "\"}", &r);
    IT_CHECK(r.status == 404);
    it_resp_free(&r);
    /* the right password resets the failure count; five wrong ones lock like logins do */
    IT_CHECK(it_internal("auth", "records", "POST", path, "{\"password\":\"" RS_PW "\"}", &r) ==
             204);
    it_resp_free(&r);
    for (int i = 0; i < 5; i++) {
        it_internal("auth", "records", "POST", path, "{\"password\":\"Wrong1Password\"}", &r);
        it_resp_free(&r);
    }
    it_internal("auth", "records", "POST", path, "{\"password\":\"" RS_PW "\"}", &r);
    IT_CHECK(it_is_problem(&r, 422, "invalid_credentials"));
    it_resp_free(&r);
    IT_CHECK(rs_outbox_count("audit",
                             "body->>'action' = 'auth.password.verify' AND "
                             "body->'target'->>'id' = '%s'",
                             p.id) == 9);
}

const it_case_t auth_reset_cases[] = {
    {"auth_reset_request_uniform", test_reset_request_uniform},
    {"auth_reset_confirm", test_reset_confirm},
    {"auth_reset_expired", test_reset_expired},
    {"auth_withdraw", test_withdraw},
    {"auth_withdraw_staff_forbidden", test_withdraw_staff_forbidden},
    {"auth_pepper", test_pepper},
    {"auth_verify_password", test_verify_password},
    {NULL, NULL},
};
