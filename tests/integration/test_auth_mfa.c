/*
 * test_auth_mfa.c - TOTP second factor through the gateway: enrolment and
 * confirmation, the login challenge and /login/mfa, replay refusal, recovery
 * codes, the 5-attempt limit of an mfa_token, removal, patients refused.
 * TOTP codes are computed here (RFC 6238) from the secret enroll returns.
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR (the
 * secrets dir holds pg_auth.password), PHR_TEST_PG_HOST, PHR_TEST_PG_PORT
 * (accounts are made staff/operator and outbox rows read with psql as phr_auth).
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define MFA_PW "Blue7Harbor!q"
#define MFA_PW_WRONG "Green8Meadow?z"

static int mfa_sql_is(const char *want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when the SQL statement made from |fmt| yields |want|. */
static int
mfa_sql_is(const char *want, const char *fmt, ...)
{
    char sql[1024], out[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return it_psql("auth", out, sizeof(out), "%s", sql) == 0 && strcmp(out, want) == 0;
}

/* 1 when |r| is a 400 whose errors[] name |field|. */
static int
mfa_names_field(const it_resp_t *r, const char *field)
{
    json_object *errs, *f;
    if (r->status != 400 || r->json == NULL ||
        !json_object_object_get_ex(r->json, "errors", &errs)) {
        return 0;
    }
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        if (json_object_object_get_ex(json_object_array_get_idx(errs, i), "field", &f) &&
            strcmp(json_object_get_string(f), field) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Registers a patient and turns it into |kind| (staff of a new org, or operator). */
static int
mfa_account(const char *kind, char *email, size_t cap, char *id)
{
    char org[64], out[64];
    it_patient_t p;

    if (!it_patient(kind, MFA_PW, 0, &p)) {
        return 0;
    }
    snprintf(email, cap, "%s", p.email);
    snprintf(id, 37, "%s", p.id);
    if (strcmp(kind, "patient") == 0) {
        return 1;
    }
    if (strcmp(kind, "operator") == 0) {
        return it_psql("auth", out, sizeof(out),
                       "UPDATE accounts SET kind = 'operator' WHERE id = '%s' RETURNING 1",
                       id) == 0 &&
               strcmp(out, "1") == 0;
    }
    if (it_psql("auth", org, sizeof(org),
                "INSERT INTO organizations (name, seat_limit) VALUES ('it-mfa', 5) "
                "RETURNING id") != 0 ||
        strlen(org) != 36) {
        return 0;
    }
    return mfa_sql_is("1",
                      "UPDATE accounts SET kind = 'staff', role = 'staff', org_id = '%s' "
                      "WHERE id = '%s' RETURNING 1",
                      org, id);
}

/* POST /login; |r| keeps the answer. */
static long
mfa_login_raw(const char *email, const char *pw, it_resp_t *r)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    long st = it_gw("POST", "/api/v1/auth/login", body, NULL, r);
    return st;
}

/* Logs in expecting a session (no factor); the token into |token| (64 bytes). */
static int
mfa_login_session(const char *email, char *token)
{
    it_resp_t r;
    int ok = mfa_login_raw(email, MFA_PW, &r) == 200 && it_json_str(&r, "token") != NULL;
    if (ok) {
        snprintf(token, 64, "%s", it_json_str(&r, "token"));
    }
    it_resp_free(&r);
    return ok;
}

/* Logs in expecting an MFA challenge; its mfa_token into |mt| (64 bytes). */
static int
mfa_login_challenge(const char *email, char *mt)
{
    it_resp_t r;
    json_object *req, *methods;
    int ok = mfa_login_raw(email, MFA_PW, &r) == 200 && r.json != NULL &&
             json_object_object_get_ex(r.json, "mfa_required", &req) &&
             json_object_get_boolean(req) && it_json_str(&r, "token") == NULL &&
             it_json_str(&r, "mfa_token") != NULL && strlen(it_json_str(&r, "mfa_token")) == 43 &&
             json_object_object_get_ex(r.json, "methods", &methods) &&
             json_object_array_length(methods) >= 1 &&
             strcmp(json_object_get_string(json_object_array_get_idx(methods, 0)), "totp") == 0;
    if (ok) {
        snprintf(mt, 64, "%s", it_json_str(&r, "mfa_token"));
    }
    it_resp_free(&r);
    return ok;
}

/* POST /login/mfa with a code or a recovery code; the session token into |token| on 200. */
static long
mfa_second(const char *mt, const char *code, const char *recovery, char *token, it_resp_t *r)
{
    char body[256];
    if (code != NULL) {
        snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"code\":\"%s\"}", mt, code);
    } else {
        snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"recovery_code\":\"%s\"}", mt,
                 recovery);
    }
    long st = it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, r);
    if (st == 200 && token != NULL) {
        const char *t = it_json_str(r, "token");
        snprintf(token, 64, "%s", t != NULL ? t : "");
    }
    return st;
}

/* ---- RFC 4648 / 6238 on the test side ---- */

static size_t
mfa_b32_decode(const char *s, unsigned char *out, size_t cap)
{
    unsigned int acc = 0;
    int bits = 0;
    size_t n = 0;

    for (; *s != '\0'; s++) {
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const char *p = strchr(alphabet, *s);
        if (p == NULL || n >= cap) {
            return 0;
        }
        acc = (acc << 5) | (unsigned int)(p - alphabet);
        bits += 5;
        if (bits >= 8) {
            out[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return n;
}

static long long
mfa_step_now(void)
{
    return (long long)time(NULL) / 30;
}

static void
mfa_code(const unsigned char *key, size_t keylen, long long step, char *out)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(step & 0xff);
        step >>= 8;
    }
    HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &len);
    int off = mac[len - 1] & 0x0f;
    unsigned long bin = ((unsigned long)(mac[off] & 0x7f) << 24) |
                        ((unsigned long)mac[off + 1] << 16) | ((unsigned long)mac[off + 2] << 8) |
                        mac[off + 3];
    snprintf(out, 7, "%06lu", bin % 1000000ul);
}

/* Keeps clear of a step boundary: codes computed now are still in the server's window. */
static void
mfa_fresh(void)
{
    if (time(NULL) % 30 >= 27) {
        sleep(4);
    }
}

typedef struct {
    unsigned char key[64];
    size_t keylen;
    char secret[80];
    char recovery[10][40];
} mfa_factor_t;

/* Enrols and confirms TOTP for |token| (the code of the previous step); fills |f|. */
static int
mfa_enrol(const char *token, const char *email, mfa_factor_t *f)
{
    char body[64], code[8], label[160];
    it_resp_t r;
    json_object *arr;

    if (it_gw("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token, &r) != 200 ||
        it_json_str(&r, "secret") == NULL || it_json_str(&r, "otpauth_uri") == NULL) {
        it_resp_free(&r);
        return 0;
    }
    snprintf(f->secret, sizeof(f->secret), "%s", it_json_str(&r, "secret"));
    snprintf(label, sizeof(label), "otpauth://totp/PHR:%s?secret=%s&issuer=PHR", email, f->secret);
    int uri_ok = strncmp(it_json_str(&r, "otpauth_uri"), label, strlen(label)) == 0 &&
                 strstr(it_json_str(&r, "otpauth_uri"), "&algorithm=SHA1&digits=6&period=30");
    it_resp_free(&r);
    f->keylen = mfa_b32_decode(f->secret, f->key, sizeof(f->key));
    if (!uri_ok || strlen(f->secret) != 32 || f->keylen != 20) {
        return 0;
    }
    mfa_fresh();
    mfa_code(f->key, f->keylen, mfa_step_now() - 1, code);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    if (it_gw("POST", "/api/v1/auth/mfa/totp/confirm", body, token, &r) != 200 || r.json == NULL ||
        !json_object_object_get_ex(r.json, "recovery_codes", &arr) ||
        json_object_array_length(arr) != 10) {
        it_resp_free(&r);
        return 0;
    }
    for (size_t i = 0; i < 10; i++) {
        snprintf(f->recovery[i], sizeof(f->recovery[i]), "%s",
                 json_object_get_string(json_object_array_get_idx(arr, i)));
    }
    it_resp_free(&r);
    return 1;
}

static void
test_mfa_patient_forbidden(void)
{
    char email[128], id[37], token[64];
    it_resp_t r;
    int ok;

    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/totp/enroll", NULL, NULL) == 401);
    IT_CHECK(mfa_account("patient", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    it_gw("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token, &r);
    ok = it_is_problem(&r, 403, "forbidden");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/totp/confirm", "{\"code\":\"123456\"}",
                          token) == 403);
    IT_CHECK(it_gw_status("DELETE", "/api/v1/auth/mfa/totp",
                          "{\"password\":\"" MFA_PW "\",\"code\":\"123456\"}", token) == 403);
    IT_CHECK(mfa_sql_is("0", "SELECT count(*) FROM mfa_totp WHERE account_id = '%s'", id));
}

static void
test_mfa_enrol_and_login(void)
{
    char email[128], id[37], token[64], mt[64], sess[64], code[8], wrong[8], body[160];
    mfa_factor_t f;
    it_resp_t r;
    int ok;

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    /* confirm before any enrolment: 409 */
    it_gw("POST", "/api/v1/auth/mfa/totp/confirm", "{\"code\":\"123456\"}", token, &r);
    ok = it_is_problem(&r, 409, "conflict");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* a first enrolment left pending is replaced by the next one */
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token) == 200);
    /* enrol by hand to test the confirm errors, then mfa_enrol's path */
    IT_CHECK(it_gw("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token, &r) == 200);
    snprintf(f.secret, sizeof(f.secret), "%s",
             it_json_str(&r, "secret") ? it_json_str(&r, "secret") : "");
    it_resp_free(&r);
    f.keylen = mfa_b32_decode(f.secret, f.key, sizeof(f.key));
    IT_CHECK(f.keylen == 20);
    IT_CHECK(mfa_sql_is("t|v1|t",
                        "SELECT confirmed_at IS NULL, key_id, secret_enc ~ '^[0-9a-f]{96}$' "
                        "FROM mfa_totp WHERE account_id = '%s'",
                        id));
    it_gw("POST", "/api/v1/auth/mfa/totp/confirm", "{\"code\":\"12a456\"}", token, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    it_gw("POST", "/api/v1/auth/mfa/totp/confirm", "{\"code\":\"123456\",\"x\":1}", token, &r);
    ok = mfa_names_field(&r, "x");
    it_resp_free(&r);
    IT_CHECK(ok);
    mfa_code(f.key, f.keylen, mfa_step_now() + 7, wrong); /* well-formed, outside the window */
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", wrong);
    it_gw("POST", "/api/v1/auth/mfa/totp/confirm", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* the login is not affected by a pending enrolment */
    IT_CHECK(mfa_login_session(email, sess));
    IT_CHECK(mfa_enrol(token, email, &f));
    for (int i = 0; i < 10; i++) {
        size_t n = strlen(f.recovery[i]);
        IT_CHECK(n >= 8 && n <= 32 &&
                 strspn(f.recovery[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-") == n);
        for (int j = 0; j < i; j++) {
            IT_CHECK(strcmp(f.recovery[i], f.recovery[j]) != 0);
        }
    }
    IT_CHECK(
        mfa_sql_is("10", "SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%s'", id));
    IT_CHECK(mfa_sql_is(
        "t", "SELECT confirmed_at IS NOT NULL FROM mfa_totp WHERE account_id = '%s'", id));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                        "'auth.mfa.enroll' AND body->'target'->>'id' = '%s'",
                        id));
    IT_CHECK(mfa_sql_is("totp|enrolled",
                        "SELECT body->'params'->>'method', body->'params'->>'change' FROM outbox "
                        "WHERE body->>'kind' = 'mfa_changed' AND body->'to'->>'account_id' = '%s'",
                        id));
    /* enrolled: enroll and confirm again are conflicts */
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token) == 409);
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/totp/confirm", "{\"code\":\"123456\"}",
                          token) == 409);

    /* the login now answers a challenge; the current code opens a session */
    IT_CHECK(mfa_login_challenge(email, mt));
    mfa_fresh();
    mfa_code(f.key, f.keylen, mfa_step_now(), code);
    IT_CHECK(mfa_second(mt, code, NULL, sess, &r) == 200);
    ok = it_json_str(&r, "expires_at") != NULL && strlen(sess) == 43;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, sess, &r) == 200);
    ok = it_json_str(&r, "mfa") != NULL && strcmp(it_json_str(&r, "mfa"), "totp") == 0 &&
         it_json_str(&r, "account_id") != NULL && strcmp(it_json_str(&r, "account_id"), id) == 0;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* the used mfa_token is gone */
    mfa_second(mt, code, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "unauthenticated");
    it_resp_free(&r);
    IT_CHECK(ok);

    /* the same code on a new challenge: replay refused */
    IT_CHECK(mfa_login_challenge(email, mt));
    mfa_second(mt, code, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(
        mfa_sql_is("t",
                   "SELECT count(*) >= 1 FROM outbox WHERE topic = 'audit' AND body->>'action' "
                   "= 'auth.login.mfa.failure' AND body->'target'->>'id' = '%s'",
                   id));
    /* a recovery code works once (on the same challenge: it had one failed try) */
    IT_CHECK(mfa_second(mt, NULL, f.recovery[0], sess, &r) == 200);
    it_resp_free(&r);
    /* the session records that a recovery code, not the factor itself, was used */
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, sess, &r) == 200);
    ok = it_json_str(&r, "mfa") != NULL && strcmp(it_json_str(&r, "mfa"), "recovery_code") == 0;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_login_challenge(email, mt));
    mfa_second(mt, NULL, f.recovery[0], NULL, &r);
    ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* codes are accepted without hyphens and in lower case */
    char alt[40];
    size_t n = 0;
    for (const char *p = f.recovery[1]; *p != '\0'; p++) {
        if (*p != '-') {
            alt[n++] = (char)tolower((unsigned char)*p);
        }
    }
    alt[n] = '\0';
    IT_CHECK(mfa_second(mt, NULL, alt, sess, &r) == 200);
    it_resp_free(&r);
    IT_CHECK(mfa_sql_is("2",
                        "SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%s' "
                        "AND used_at IS NOT NULL",
                        id));
    IT_CHECK(mfa_sql_is("t",
                        "SELECT count(*) = 3 FROM outbox WHERE topic = 'audit' AND body->>'action' "
                        "= 'auth.login.mfa.success' AND body->'target'->>'id' = '%s'",
                        id));
    /* successes reset the failure counter */
    IT_CHECK(mfa_sql_is("0", "SELECT failed_logins FROM accounts WHERE id = '%s'", id));
}

static void
test_mfa_login_bad_input(void)
{
    it_resp_t r;
    int ok;
    const char *forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    char body[256];

    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\"}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body),
             "{\"mfa_token\":\"%s\",\"code\":\"123456\",\"recovery_code\":\"ABCD-EFGH\"}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    it_gw("POST", "/api/v1/auth/login/mfa", "{\"mfa_token\":\"short\",\"code\":\"123456\"}", NULL,
          &r);
    ok = mfa_names_field(&r, "mfa_token");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"code\":\"1234567\"}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"recovery_code\":\"AB$D-EFGH\"}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = mfa_names_field(&r, "recovery_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"code\":123456}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* well-formed but forged */
    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\",\"code\":\"123456\"}", forged);
    it_gw("POST", "/api/v1/auth/login/mfa", body, NULL, &r);
    ok = it_is_problem(&r, 401, "unauthenticated");
    it_resp_free(&r);
    IT_CHECK(ok);
}

static void
test_mfa_token_attempts(void)
{
    char email[128], id[37], token[64], mt[64], code[8], bad[8];
    mfa_factor_t f;
    it_resp_t r;
    int ok;

    IT_CHECK(mfa_account("operator", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    IT_CHECK(mfa_enrol(token, email, &f));
    IT_CHECK(mfa_login_challenge(email, mt));
    mfa_fresh();
    mfa_code(f.key, f.keylen, mfa_step_now(), code);
    snprintf(bad, sizeof(bad), "%s", code);
    bad[5] = (char)('0' + (bad[5] - '0' + 1) % 10);
    for (int i = 0; i < 5; i++) {
        mfa_second(mt, bad, NULL, NULL, &r);
        ok = it_is_problem(&r, 401, "invalid_credentials");
        it_resp_free(&r);
        IT_CHECK(ok);
    }
    /* the token is dead: even the right code is refused */
    mfa_second(mt, code, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "unauthenticated");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sql_is("5",
                        "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                        "'auth.login.mfa.failure' AND body->'target'->>'id' = '%s'",
                        id));
    /* wrong factors count as failed logins: the account is locked like after 5 wrong passwords */
    IT_CHECK(mfa_sql_is("t", "SELECT locked_until > now() FROM accounts WHERE id = '%s'", id));
    IT_CHECK(mfa_login_challenge(email, mt) == 0);
}

static void
test_mfa_remove(void)
{
    char email[128], id[37], token[64], code[8], body[256], other[64];
    mfa_factor_t f;
    it_resp_t r;
    int ok;

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    IT_CHECK(mfa_login_session(email, other));
    snprintf(body, sizeof(body), "{\"password\":\"%s\",\"code\":\"123456\"}", MFA_PW);
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = it_is_problem(&r, 404, "not_found");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_enrol(token, email, &f));
    mfa_fresh();
    mfa_code(f.key, f.keylen, mfa_step_now(), code);
    /* wrong password with a right code */
    snprintf(body, sizeof(body), "{\"password\":\"%s\",\"code\":\"%s\"}", MFA_PW_WRONG, code);
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* right password with a wrong code */
    char bad[8];
    snprintf(bad, sizeof(bad), "%s", code);
    bad[0] = (char)('0' + (bad[0] - '0' + 1) % 10);
    snprintf(body, sizeof(body), "{\"password\":\"%s\",\"code\":\"%s\"}", MFA_PW, bad);
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* each is required */
    snprintf(body, sizeof(body), "{\"password\":\"%s\"}", MFA_PW);
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = mfa_names_field(&r, "password");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sql_is("1", "SELECT count(*) FROM mfa_totp WHERE account_id = '%s'", id));
    /* the account's other live session lists the factor... */
    it_gw("GET", "/api/v1/auth/session", NULL, other, &r);
    ok = r.status == 200 && r.body != NULL && strstr(r.body, "\"totp\"") != NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* right password and code */
    snprintf(body, sizeof(body), "{\"password\":\"%s\",\"code\":\"%s\"}", MFA_PW, code);
    IT_CHECK(it_gw_status("DELETE", "/api/v1/auth/mfa/totp", body, token) == 204);
    /* ...and no longer once it is removed */
    it_gw("GET", "/api/v1/auth/session", NULL, other, &r);
    ok = r.status == 200 && r.body != NULL && strstr(r.body, "\"totp\"") == NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sql_is("0|0",
                        "SELECT (SELECT count(*) FROM mfa_totp WHERE account_id = '%1$s'), "
                        "(SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%1$s')",
                        id));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                        "'auth.mfa.remove' AND body->'target'->>'id' = '%s'",
                        id));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE body->>'kind' = 'mfa_changed' AND "
                        "body->'params'->>'change' = 'removed' AND body->'to'->>'account_id' = "
                        "'%s'",
                        id));
    /* the login gives a session again; removing twice is 404 */
    IT_CHECK(mfa_login_session(email, other));
    it_gw("DELETE", "/api/v1/auth/mfa/totp", body, token, &r);
    ok = it_is_problem(&r, 404, "not_found");
    it_resp_free(&r);
    IT_CHECK(ok);
}

/* ---- SMS one-time codes ---- */

/* A fresh E.164 number for this run (+8190 and 8 digits), so the per-phone limit starts at 0. */
static void
mfa_phone(char *out, size_t cap)
{
    static unsigned n;
    unsigned long v = ((unsigned long)time(NULL) * 7919ul + (unsigned long)getpid() * 104729ul +
                       ++n * 1000003ul) %
                      100000000ul;
    snprintf(out, cap, "+8190%08lu", v);
}

/* The code of the newest sms_code notification to |phone| (7 bytes). 1 when found. */
static int
mfa_sms_outbox_code(const char *phone, char *code)
{
    char out[64];
    if (it_psql("auth", out, sizeof(out),
                "SELECT body->'params'->>'code' FROM outbox WHERE topic = 'notification' AND "
                "body->>'kind' = 'sms_code' AND body->>'channel' = 'sms' AND "
                "body->'to'->>'phone' = '%s' AND NOT body->'to' ? 'account_id' AND "
                "body->>'locale' IN ('ja', 'en') ORDER BY id DESC LIMIT 1",
                phone) != 0 ||
        strlen(out) != 6 || strspn(out, "0123456789") != 6) {
        return 0;
    }
    snprintf(code, 7, "%.6s", out);
    return 1;
}

/* The number of sms_code notifications to |phone|. */
static long
mfa_sms_count(const char *phone)
{
    char out[32];
    if (it_psql("auth", out, sizeof(out),
                "SELECT count(*) FROM outbox WHERE body->>'kind' = 'sms_code' AND "
                "body->'to'->>'phone' = '%s'",
                phone) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

/* A 6-digit code different from |code|. */
static void
mfa_other_code(const char *code, char *out)
{
    unsigned long v = (unsigned long)(strtol(code, NULL, 10) + 1) % 1000000ul;
    snprintf(out, 7, "%06lu", v);
}

/* POST /mfa/sms/enroll for |phone|: 202 with expires_at and the phone hint, and its code. */
static int
mfa_sms_start(const char *token, const char *phone, char *code)
{
    char body[96], hint[16];
    it_resp_t r;

    snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", phone);
    snprintf(hint, sizeof(hint), "***-%s", phone + strlen(phone) - 4);
    int ok = it_gw("POST", "/api/v1/auth/mfa/sms/enroll", body, token, &r) == 202 &&
             it_json_str(&r, "expires_at") != NULL && it_json_str(&r, "phone_hint") != NULL &&
             strcmp(it_json_str(&r, "phone_hint"), hint) == 0;
    it_resp_free(&r);
    return ok && mfa_sms_outbox_code(phone, code);
}

/* Enrols and confirms |phone|; 1 when the answer lists |methods| (a JSON array text). */
static int
mfa_sms_enrol(const char *token, const char *phone, const char *methods, int want_recovery)
{
    char code[8], body[64];
    it_resp_t r;
    json_object *m, *rc;

    if (!mfa_sms_start(token, phone, code)) {
        return 0;
    }
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    int ok = it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r) == 200 &&
             r.json != NULL && json_object_object_get_ex(r.json, "methods", &m) &&
             strcmp(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN), methods) == 0;
    if (ok && want_recovery) {
        ok = json_object_object_get_ex(r.json, "recovery_codes", &rc) &&
             json_object_array_length(rc) == 10;
    } else if (ok) {
        ok = !json_object_object_get_ex(r.json, "recovery_codes", &rc);
    }
    it_resp_free(&r);
    return ok;
}

/* Logs in expecting a challenge listing exactly |methods|; the mfa_token into |mt|. */
static int
mfa_sms_challenge(const char *email, const char *methods, char *mt)
{
    it_resp_t r;
    json_object *m;
    int ok = mfa_login_raw(email, MFA_PW, &r) == 200 && r.json != NULL &&
             it_json_str(&r, "token") == NULL && it_json_str(&r, "mfa_token") != NULL &&
             json_object_object_get_ex(r.json, "methods", &m) &&
             strcmp(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN), methods) == 0;
    if (ok) {
        snprintf(mt, 64, "%s", it_json_str(&r, "mfa_token"));
    }
    it_resp_free(&r);
    return ok;
}

/* POST /login/mfa/sms; the status. */
static long
mfa_sms_send(const char *mt, it_resp_t *r)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"mfa_token\":\"%s\"}", mt);
    return it_gw("POST", "/api/v1/auth/login/mfa/sms", body, NULL, r);
}

/* 1 when the session |token| says its factor was |mfa|. */
static int
mfa_session_factor(const char *token, const char *mfa)
{
    it_resp_t r;
    int ok = it_gw("GET", "/api/v1/auth/session", NULL, token, &r) == 200 &&
             it_json_str(&r, "mfa") != NULL && strcmp(it_json_str(&r, "mfa"), mfa) == 0;
    it_resp_free(&r);
    return ok;
}

static void
test_mfa_sms_enrol(void)
{
    static const char *const bad[] = {
        "{\"phone\":\"819012345678\"}",  "{\"phone\":\"+0190123456\"}",
        "{\"phone\":\"+1234567\"}",      "{\"phone\":\"+1234567890123456\"}",
        "{\"phone\":\"+81901234ab78\"}", "{\"phone\":\"+81 90 1234 5678\"}",
        "{\"phone\":819012345678}",      "{}",
    };
    char email[128], id[37], token[64], phone[24], code[8], wrong[8], body[96];
    it_resp_t r;
    int ok;

    /* patients are refused */
    IT_CHECK(mfa_account("patient", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    mfa_phone(phone, sizeof(phone));
    snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", phone);
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/mfa/sms/enroll", body, NULL) == 401);
    it_gw("POST", "/api/v1/auth/mfa/sms/enroll", body, token, &r);
    ok = it_is_problem(&r, 403, "forbidden");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_count(phone) == 0);

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        it_gw("POST", "/api/v1/auth/mfa/sms/enroll", bad[i], token, &r);
        ok = mfa_names_field(&r, "phone");
        it_resp_free(&r);
        IT_CHECK(ok);
    }
    IT_CHECK(mfa_sql_is("0", "SELECT count(*) FROM mfa_sms WHERE account_id = '%s'", id));
    /* the code goes out by SMS; the phone is stored sealed, the code only as an HMAC */
    IT_CHECK(mfa_sms_start(token, phone, code));
    IT_CHECK(mfa_sql_is("t|f",
                        "SELECT confirmed_at IS NULL, position('%s' in phone_enc) > 0 "
                        "FROM mfa_sms WHERE account_id = '%s'",
                        phone + 5, id));
    IT_CHECK(mfa_sql_is("1|0",
                        "SELECT count(*), count(*) FILTER (WHERE code_hmac LIKE '%%%s%%') "
                        "FROM mfa_sms_codes WHERE account_id = '%s' AND purpose = 'enroll'",
                        code, id));
    /* bad and wrong codes */
    it_gw("POST", "/api/v1/auth/mfa/sms/confirm", "{\"code\":\"12a456\"}", token, &r);
    ok = mfa_names_field(&r, "code");
    it_resp_free(&r);
    IT_CHECK(ok);
    mfa_other_code(code, wrong);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", wrong);
    it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sql_is("", "SELECT confirmed_at FROM mfa_sms WHERE account_id = '%s'", id));
    /* the right code enrols the phone: first factor, so recovery codes come with it */
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    json_object *m, *rc;
    ok = it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r) == 200 && r.json != NULL &&
         json_object_object_get_ex(r.json, "methods", &m) &&
         strcmp(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN), "[\"sms\"]") == 0 &&
         json_object_object_get_ex(r.json, "recovery_codes", &rc) &&
         json_object_array_length(rc) == 10;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(
        mfa_sql_is("f|10",
                   "SELECT (SELECT confirmed_at IS NULL FROM mfa_sms WHERE account_id = '%1$s'),"
                   " (SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%1$s')",
                   id));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                        "'auth.mfa.enroll' AND body->'target'->>'id' = '%s' AND "
                        "body->'outcome'->>'reason' = 'sms'",
                        id));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE body->>'kind' = 'mfa_changed' AND "
                        "body->'params'->>'method' = 'sms' AND body->'params'->>'change' = "
                        "'enrolled' AND body->'to'->>'account_id' = '%s'",
                        id));
    /* the code was used; enrolling again is a conflict */
    it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    mfa_phone(phone, sizeof(phone));
    snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", phone);
    it_gw("POST", "/api/v1/auth/mfa/sms/enroll", body, token, &r);
    ok = it_is_problem(&r, 409, "conflict");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_count(phone) == 0);
}

static void
test_mfa_sms_code_dies(void)
{
    char email[128], id[37], token[64], phone[24], code[8], wrong[8], body[64];
    it_resp_t r;
    int ok = 1;

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    mfa_phone(phone, sizeof(phone));
    IT_CHECK(mfa_sms_start(token, phone, code));
    mfa_other_code(code, wrong);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", wrong);
    for (int i = 0; i < 5 && ok; i++) {
        it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r);
        ok = it_is_problem(&r, 422, "invalid_code");
        it_resp_free(&r);
    }
    IT_CHECK(ok);
    /* after 5 wrong tries the right code is dead too */
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(
        mfa_sql_is("t", "SELECT confirmed_at IS NULL FROM mfa_sms WHERE account_id = '%s'", id));
    /* an expired code is refused as well */
    IT_CHECK(mfa_sms_start(token, phone, code));
    IT_CHECK(mfa_sql_is("1",
                        "UPDATE mfa_sms_codes SET expires_at = now() - interval '1 second' "
                        "WHERE account_id = '%s' RETURNING 1",
                        id));
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    it_gw("POST", "/api/v1/auth/mfa/sms/confirm", body, token, &r);
    ok = it_is_problem(&r, 422, "invalid_code");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(
        mfa_sql_is("t", "SELECT confirmed_at IS NULL FROM mfa_sms WHERE account_id = '%s'", id));
    /* a new code replaces it and works */
    IT_CHECK(mfa_sms_enrol(token, phone, "[\"sms\"]", 1));
}

static void
test_mfa_sms_login(void)
{
    char email[128], id[37], token[64], phone[24], mt[64], mt2[64], code[8], old[8], wrong[8];
    char sess[64];
    it_resp_t r;
    int ok;

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    mfa_phone(phone, sizeof(phone));
    IT_CHECK(mfa_sms_enrol(token, phone, "[\"sms\"]", 1)); /* code 1 of this phone */
    IT_CHECK(mfa_sms_challenge(email, "[\"sms\"]", mt));
    /* bad input and unknown tokens */
    it_gw("POST", "/api/v1/auth/login/mfa/sms", "{\"mfa_token\":\"short\"}", NULL, &r);
    ok = mfa_names_field(&r, "mfa_token");
    it_resp_free(&r);
    IT_CHECK(ok);
    it_gw("POST", "/api/v1/auth/login/mfa/sms", "{}", NULL, &r);
    ok = mfa_names_field(&r, "mfa_token");
    it_resp_free(&r);
    IT_CHECK(ok);
    mfa_sms_send("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r);
    ok = it_is_problem(&r, 401, "unauthenticated");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_count(phone) == 1);
    /* the code goes to the enrolled phone; a wrong one fails, the right one logs in */
    ok = mfa_sms_send(mt, &r) == 202 && it_json_str(&r, "expires_at") != NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_count(phone) == 2);
    IT_CHECK(mfa_sms_outbox_code(phone, code));
    mfa_other_code(code, wrong);
    mfa_second(mt, wrong, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    ok = mfa_second(mt, code, NULL, sess, &r) == 200;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_session_factor(sess, "sms"));
    IT_CHECK(mfa_sql_is("1",
                        "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                        "'auth.login.mfa.success' AND body->'target'->>'id' = '%s' AND "
                        "body->'outcome'->>'reason' = 'sms'",
                        id));
    /* single use: the same code does not log in again */
    snprintf(old, sizeof(old), "%s", code);
    IT_CHECK(mfa_sms_challenge(email, "[\"sms\"]", mt2));
    mfa_second(mt2, old, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* expiry: a code past its 5 minutes is refused */
    ok = mfa_sms_send(mt2, &r) == 202;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_outbox_code(phone, code));
    IT_CHECK(mfa_sql_is("1",
                        "UPDATE mfa_sms_codes SET expires_at = now() - interval '1 second' "
                        "WHERE account_id = '%s' AND purpose = 'login' RETURNING 1",
                        id));
    mfa_second(mt2, code, NULL, NULL, &r);
    ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* rate limit: three codes per phone per 10 minutes (enrol + two logins so far) */
    IT_CHECK(mfa_sms_count(phone) == 3);
    mfa_sms_send(mt2, &r);
    ok = it_is_problem(&r, 429, "rate_limited") && it_header(&r, "retry-after") != NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_count(phone) == 3);
    /* the failures counted as failed logins */
    IT_CHECK(mfa_sql_is("2", "SELECT failed_logins FROM accounts WHERE id = '%s'", id));
}

static void
test_mfa_sms_with_totp(void)
{
    char email[128], id[37], token[64], phone[24], mt[64], code[8], sess[64];
    mfa_factor_t f;
    it_resp_t r;
    int ok;

    IT_CHECK(mfa_account("staff", email, sizeof(email), id));
    IT_CHECK(mfa_login_session(email, token));
    IT_CHECK(mfa_enrol(token, email, &f));
    mfa_phone(phone, sizeof(phone));
    /* a second factor: no new recovery codes, both methods listed */
    IT_CHECK(mfa_sms_enrol(token, phone, "[\"totp\",\"sms\"]", 0));
    IT_CHECK(
        mfa_sql_is("10", "SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%s'", id));
    IT_CHECK(mfa_sms_challenge(email, "[\"totp\",\"sms\"]", mt));
    ok = mfa_sms_send(mt, &r) == 202;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_sms_outbox_code(phone, code));
    ok = mfa_second(mt, code, NULL, sess, &r) == 200;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_session_factor(sess, "sms"));
    /* TOTP still works for the same account */
    IT_CHECK(mfa_sms_challenge(email, "[\"totp\",\"sms\"]", mt));
    mfa_fresh();
    mfa_code(f.key, f.keylen, mfa_step_now(), code);
    ok = mfa_second(mt, code, NULL, sess, &r) == 200;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(mfa_session_factor(sess, "totp"));
}

const it_case_t auth_mfa_cases[] = {
    {"auth_mfa_patient_forbidden", test_mfa_patient_forbidden},
    {"auth_mfa_enrol_and_login", test_mfa_enrol_and_login},
    {"auth_mfa_login_bad_input", test_mfa_login_bad_input},
    {"auth_mfa_token_attempts", test_mfa_token_attempts},
    {"auth_mfa_remove", test_mfa_remove},
    {"auth_mfa_sms_enrol", test_mfa_sms_enrol},
    {"auth_mfa_sms_code_dies", test_mfa_sms_code_dies},
    {"auth_mfa_sms_login", test_mfa_sms_login},
    {"auth_mfa_sms_with_totp", test_mfa_sms_with_totp},
    {NULL, NULL},
};
