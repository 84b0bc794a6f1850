/*
 * The services behind the gateway: their public routes, request
 * validation, limits, health and metrics, service credentials and the
 * shared session store.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"
#include "session.h"
#include "timeutil.h"

static const char *const svc_names[] = {"auth", "records", "notification", "audit"};
static const char *const json_ct[] = {"Content-Type: application/json", NULL};

static int
check_password(const char *body, it_resp_t *r)
{
    return it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy/check", body,
                      strlen(body), json_ct, r);
}

/* 1 when the violations array of |r| is exactly |want| (comma-separated, "" for none). */
static int
violations_are(const it_resp_t *r, const char *want)
{
    json_object *v;
    char got[256] = "";

    if (r->json == NULL || !json_object_object_get_ex(r->json, "violations", &v)) {
        return 0;
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        size_t n = strlen(got);
        snprintf(got + n, sizeof(got) - n, "%s%s", i ? "," : "",
                 json_object_get_string(json_object_array_get_idx(v, i)));
    }
    if (strcmp(got, want) != 0) {
        printf("    violations: got [%s], want [%s]\n", got, want);
        return 0;
    }
    return 1;
}

static void
svc_password_policy(void)
{
    it_resp_t r;
    json_object *v;

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/password-policy", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(r.status == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "min_length", &v) && json_object_get_int(v) == 8);
    IT_CHECK(json_object_object_get_ex(r.json, "require_upper", &v) && json_object_get_boolean(v));
    IT_CHECK(json_object_object_get_ex(r.json, "require_symbol", &v) &&
             !json_object_get_boolean(v));
    it_resp_free(&r);
}

static void
svc_password_check_rules(void)
{
    static const struct {
        const char *body, *violations;
    } cases[] = {
        {"{\"password\":\"Kf8#mQ2vLp\"}", ""},
        {"{\"password\":\"Password1\"}", "common_password"},
        {"{\"password\":\"PASSWORD1\"}", "missing_lower,common_password"},
        {"{\"password\":\"Ab1\"}", "too_short"},
        {"{\"password\":\"alllowercase1\"}", "missing_upper"},
        {"{\"password\":\"NoDigitsHere\"}", "missing_digit"},
        {"{\"password\":\"Tanaka2026x\",\"email\":\"tanaka@example.jp\"}", "contains_email"},
        {"{\"password\":\"\\u3042\\u3044\\u3046\\u3048\\u304aAb1\"}", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_resp_t r;
        IT_CHECK(check_password(cases[i].body, &r) == 0);
        IT_CHECK(r.status == 200);
        IT_CHECK(violations_are(&r, cases[i].violations));
        it_resp_free(&r);
    }
}

/* Bad bodies: each answer is a 400/415 problem naming what is wrong. */
static void
svc_bad_input(void)
{
    static const struct {
        const char *body;
        int status;
        const char *code, *field, *needle;
    } cases[] = {
        {"{\"password\":", 400, "invalid_json", "", "not valid JSON"},
        {"", 400, "invalid_json", "", "empty"},
        {"[1,2]", 400, "invalid_request", "", "JSON object"},
        {"{\"password\":\"Abcdefg1\",\"bogus\":1}", 400, "validation_failed", "bogus",
         "not allowed"},
        {"{\"password\":12345678}", 400, "validation_failed", "password", "string"},
        {"{}", 400, "validation_failed", "password", "required"},
        {"{\"password\":\"Abcdefg1\"} trailing", 400, "invalid_json", "", NULL},
        {"{\"password\":\"Ab\xc0\xaf"
         "cdefg1\"}",
         400, "invalid_json", "", "UTF-8"},
        {"{\"password\":\"Ab\xed\xa0\x80"
         "cdefg1\"}",
         400, "invalid_json", "", "UTF-8"},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "]]]"
         "]]]]]]]]",
         400, "invalid_json", "", "deep"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_resp_t r;
        IT_CHECK(check_password(cases[i].body, &r) == 0);
        IT_CHECK(it_is_problem(&r, cases[i].status, cases[i].code));
        json_object *errs, *first, *field;
        if (cases[i].field[0] != '\0') {
            IT_CHECK(json_object_object_get_ex(r.json, "errors", &errs));
            first = json_object_array_get_idx(errs, 0);
            IT_CHECK(first != NULL && json_object_object_get_ex(first, "field", &field));
            IT_CHECK(strcmp(json_object_get_string(field), cases[i].field) == 0);
        }
        if (cases[i].needle != NULL && strstr(r.body, cases[i].needle) == NULL) {
            printf("    case %zu: '%s' not in %s\n", i, cases[i].needle, r.body);
            IT_CHECK(0);
        }
        it_resp_free(&r);
    }
    /* Wrong media type. */
    it_resp_t r;
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy/check",
                        "{\"password\":\"x\"}", 16, text, &r) == 0);
    IT_CHECK(it_is_problem(&r, 415, "unsupported_media_type"));
    it_resp_free(&r);
}

static void
svc_unknown_route_and_method(void)
{
    it_resp_t r;

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/no-such-thing", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(it_is_problem(&r, 404, "not_found"));
    IT_CHECK(it_json_str(&r, "instance") != NULL &&
             strcmp(it_json_str(&r, "instance"), "/api/v1/auth/no-such-thing") == 0);
    it_resp_free(&r);

    IT_CHECK(
        it_request(IT_GATEWAY_H2, NULL, "DELETE", "/api/v1/records/types", NULL, 0, NULL, &r) == 0);
    IT_CHECK(it_is_problem(&r, 405, "method_not_allowed"));
    IT_CHECK(it_header(&r, "allow") != NULL && strcmp(it_header(&r, "allow"), "GET") == 0);
    it_resp_free(&r);
}

/* The service enforces its own per-route body limit (4 KiB on the check route). */
static void
svc_route_body_limit(void)
{
    char body[8192];
    it_resp_t r;

    memset(body, 'a', sizeof(body));
    IT_CHECK(it_request(IT_DIRECT, "auth", "POST", "/api/v1/auth/password-policy/check", body,
                        sizeof(body), json_ct, &r) == 0);
    IT_CHECK(it_is_problem(&r, 413, "payload_too_large"));
    it_resp_free(&r);
    /* The connection and service are fine afterwards. */
    IT_CHECK(it_wait_status("auth", "/livez", 200, 5));
}

static void
svc_catalogues(void)
{
    it_resp_t r;

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/records/types", NULL, 0, NULL, &r) ==
             0);
    IT_CHECK(r.status == 200);
    IT_CHECK(strstr(r.body, "\"type\":\"blood_pressure\",\"loinc\":\"85354-9\"") != NULL);
    IT_CHECK(strstr(r.body, "\"name\":\"systolic\"") != NULL);
    IT_CHECK(strstr(r.body, "\"unit\":\"mg/dL\"") != NULL);
    it_resp_free(&r);

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/notifications/kinds", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(r.status == 200);
    IT_CHECK(strstr(r.body, "{\"kind\":\"sms_code\",\"channels\":[\"sms\"]") != NULL);
    IT_CHECK(strstr(r.body, "incident_notice") != NULL);
    it_resp_free(&r);
}

static void
svc_audit_public_key(void)
{
    it_resp_t r;
    char want[64] = "";

    IT_CHECK(it_sh("openssl pkey -pubin -in %s/secrets/audit_signing.pub.pem -outform DER | "
                   "sha256sum | cut -c1-16 > %s/log/keyid.txt",
                   it_env("PHR_TEST_VAR"), it_env("PHR_TEST_VAR")) == 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/log/keyid.txt", it_env("PHR_TEST_VAR"));
    FILE *f = fopen(path, "r");
    IT_CHECK(f != NULL && fgets(want, sizeof(want), f) != NULL);
    fclose(f);
    want[strcspn(want, "\n")] = '\0';

    IT_CHECK(
        it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/audit/public-key", NULL, 0, NULL, &r) == 0);
    IT_CHECK(r.status == 200);
    IT_CHECK(strcmp(it_json_str(&r, "algorithm"), "Ed25519") == 0);
    IT_CHECK(strcmp(it_json_str(&r, "key_id"), want) == 0);
    IT_CHECK(strncmp(it_json_str(&r, "public_key_pem"), "-----BEGIN PUBLIC KEY-----", 26) == 0);
    it_resp_free(&r);
}

static void
svc_health_and_metrics(void)
{
    for (size_t i = 0; i < 4; i++) {
        it_resp_t r;
        IT_CHECK(it_request(IT_DIRECT, svc_names[i], "GET", "/livez", NULL, 0, NULL, &r) == 0);
        IT_CHECK(r.status == 200 && r.version == 2);
        it_resp_free(&r);
        IT_CHECK(it_request(IT_DIRECT, svc_names[i], "GET", "/readyz", NULL, 0, NULL, &r) == 0);
        IT_CHECK(r.status == 200);
        IT_CHECK(strstr(r.body, "\"postgres\":\"ok\"") && strstr(r.body, "\"redis\":\"ok\""));
        it_resp_free(&r);
        IT_CHECK(it_request(IT_DIRECT, svc_names[i], "GET", "/metrics", NULL, 0, NULL, &r) == 0);
        IT_CHECK(r.status == 200);
        IT_CHECK(strstr(r.body, "phr_http_requests_total{") != NULL);
        IT_CHECK(strstr(r.body, "phr_http_request_duration_seconds_bucket{") != NULL);
        IT_CHECK(strstr(r.body, "phr_http_requests_in_flight{") != NULL);
        IT_CHECK(strstr(r.body, "phr_pg_pool_connections{") != NULL);
        IT_CHECK(strstr(r.body, "route=\"/readyz\",status=\"200\"") != NULL);
        it_resp_free(&r);
    }
}

static void
svc_internal_needs_credential(void)
{
    char caller[64], cred[256];
    it_resp_t r;

    IT_CHECK(it_request(IT_DIRECT, "audit", "GET", "/internal/v1/status", NULL, 0, NULL, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "service_credential_required"));
    it_resp_free(&r);

    snprintf(caller, sizeof(caller), "x-phr-caller: records");
    snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret("svc_auth.key"));
    const char *wrong[] = {caller, cred, NULL};
    IT_CHECK(it_request(IT_DIRECT, "audit", "GET", "/internal/v1/status", NULL, 0, wrong, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "service_credential_required"));
    it_resp_free(&r);

    snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret("svc_records.key"));
    const char *right[] = {caller, cred, NULL};
    IT_CHECK(it_request(IT_DIRECT, "audit", "GET", "/internal/v1/status", NULL, 0, right, &r) == 0);
    IT_CHECK(r.status == 200);
    IT_CHECK(strcmp(it_json_str(&r, "service"), "audit") == 0);
    it_resp_free(&r);
}

static redisContext *
redis_open(void)
{
    redisContext *c = redisConnect(it_env("PHR_TEST_REDIS_HOST"),
                                   (int)strtol(it_env("PHR_TEST_REDIS_PORT"), NULL, 10));
    if (c == NULL || c->err) {
        return NULL;
    }
    redisReply *rep = redisCommand(c, "AUTH %s", it_env("PHR_TEST_REDIS_PASSWORD"));
    int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A real patient account's id (the session route refuses sessions without one). */
static char session_account[37];

/* Stores a session the way auth does, returning its bearer token. */
static int
session_inject(const char *token, int64_t absolute_ms, int ttl_s)
{
    sess_t s;
    char hash[SESS_HASH_LEN + 1], key[80];

    memset(&s, 0, sizeof(s));
    snprintf(s.session_id, sizeof(s.session_id), "0190f3a0-0000-7000-8000-000000000001");
    snprintf(s.account_id, sizeof(s.account_id), "%s", session_account);
    snprintf(s.kind, sizeof(s.kind), "patient");
    snprintf(s.mfa, sizeof(s.mfa), "none");
    s.created_ms = tu_now_ms();
    s.idle_expires_ms = s.created_ms + ttl_s * 1000LL;
    s.absolute_expires_ms = absolute_ms;
    char *json = sess_to_json(&s);
    sess_token_hash(token, hash);
    snprintf(key, sizeof(key), "phr:sess:%s", hash);
    redisContext *c = redis_open();
    if (c == NULL || json == NULL) {
        free(json);
        return -1;
    }
    redisReply *rep = redisCommand(c, "SET %s %s EX %d", key, json, ttl_s);
    int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    redisFree(c);
    free(json);
    return ok ? 0 : -1;
}

static long long
session_ttl(const char *token)
{
    char hash[SESS_HASH_LEN + 1];
    redisContext *c = redis_open();
    long long ttl = -100;

    sess_token_hash(token, hash);
    if (c != NULL) {
        redisReply *rep = redisCommand(c, "TTL phr:sess:%s", hash);
        if (rep != NULL && rep->type == REDIS_REPLY_INTEGER) {
            ttl = rep->integer;
        }
        freeReplyObject(rep);
        redisFree(c);
    }
    return ttl;
}

static void
svc_session_authentication(void)
{
    char token[SESS_TOKEN_LEN + 1], auth[128];
    it_patient_t p;
    it_resp_t r;

    IT_CHECK(it_patient("svc", "Kf8#mQ2vLp", 0, &p));
    snprintf(session_account, sizeof(session_account), "%s", p.id);
    IT_CHECK(sess_token_new(token) == 0);
    IT_CHECK(session_inject(token, tu_now_ms() + 3600 * 1000LL, 60) == 0);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *hdr[] = {auth, NULL};
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(r.status == 200);
    IT_CHECK(strcmp(it_json_str(&r, "account_id"), session_account) == 0);
    IT_CHECK(strcmp(it_json_str(&r, "kind"), "patient") == 0);
    IT_CHECK(strstr(it_json_str(&r, "expires_at"), "+09:00") != NULL);
    it_resp_free(&r);
    /* The idle expiry slid from 60 s to the configured idle time, capped by the absolute one. */
    long long ttl = session_ttl(token);
    IT_CHECK(ttl > 60 && ttl <= 3600);

    /* An unknown token and a malformed header are refused. */
    const char *bad[] = {"Authorization: Bearer not-a-real-token", NULL};
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, bad, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "session_expired"));
    IT_CHECK(it_header(&r, "www-authenticate") != NULL);
    it_resp_free(&r);
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, basic, &r) ==
             0);
    IT_CHECK(it_is_problem(&r, 401, "unauthenticated"));
    it_resp_free(&r);

    /* Past its absolute expiry a session is refused and removed. */
    IT_CHECK(sess_token_new(token) == 0);
    IT_CHECK(session_inject(token, tu_now_ms() - 1000, 60) == 0);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "session_expired"));
    it_resp_free(&r);
    IT_CHECK(session_ttl(token) == -2);
}

const it_case_t service_cases[] = {
    {"auth: password policy", svc_password_policy},
    {"auth: password check rules and blocklist", svc_password_check_rules},
    {"services: bad JSON, UTF-8, fields and media type answer problem+json", svc_bad_input},
    {"services: unknown route 404 and wrong method 405 with Allow", svc_unknown_route_and_method},
    {"services: per-route body limit 413", svc_route_body_limit},
    {"records/notification: catalogues", svc_catalogues},
    {"audit: public key matches the signing key", svc_audit_public_key},
    {"services: livez, readyz, metrics", svc_health_and_metrics},
    {"services: /internal/ needs the caller's credential", svc_internal_needs_credential},
    {"services: bearer sessions from the shared store", svc_session_authentication},
    {NULL, NULL},
};
