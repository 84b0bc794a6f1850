/*
 * The gateway: TLS + ALPN, security headers, routing to the owning service,
 * what must not be reachable, nginx's own errors as problem+json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

static void
gw_healthz_h2(void)
{
    it_resp_t r;

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/healthz", NULL, 0, NULL, &r) == 0);
    IT_CHECK(r.status == 200 && r.version == 2);
    IT_CHECK(it_json_str(&r, "status") != NULL && strcmp(it_json_str(&r, "status"), "ok") == 0);
    it_resp_free(&r);
}

static void
gw_http11_by_alpn(void)
{
    it_resp_t r;

    IT_CHECK(it_request(IT_GATEWAY_H1, NULL, "GET", "/api/v1/auth/password-policy", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(r.status == 200 && r.version == 11);
    IT_CHECK(r.json != NULL);
    it_resp_free(&r);
}

static void
gw_security_headers(void)
{
    static const char *const paths[] = {"/api/v1/auth/password-policy", "/api/v1/nothing-here",
                                        "/api/v1/auth/nothing-here"};
    for (size_t i = 0; i < 3; i++) {
        it_resp_t r;
        IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", paths[i], NULL, 0, NULL, &r) == 0);
        const char *hsts = it_header(&r, "strict-transport-security");
        IT_CHECK(hsts != NULL && strstr(hsts, "max-age=") != NULL);
        IT_CHECK(it_header(&r, "x-content-type-options") != NULL &&
                 strcmp(it_header(&r, "x-content-type-options"), "nosniff") == 0);
        IT_CHECK(it_header(&r, "referrer-policy") != NULL);
        IT_CHECK(it_header(&r, "cache-control") != NULL &&
                 strstr(it_header(&r, "cache-control"), "no-store") != NULL);
        IT_CHECK(it_header(&r, "x-request-id") != NULL);
        IT_CHECK(it_header(&r, "server") == NULL || strcmp(it_header(&r, "server"), "nginx") == 0);
        it_resp_free(&r);
    }
}

static void
gw_not_routed(void)
{
    static const char *const paths[] = {
        "/internal/v1/status",
        "/metrics",
        "/livez",
        "/readyz",
        "/readyz/",
        "/api/v2/auth/password-policy",
        "/api/v1/internal/v1/status",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        it_resp_t r;
        IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", paths[i], NULL, 0, NULL, &r) == 0);
        IT_CHECK(it_is_problem(&r, 404, "not_found"));
        IT_CHECK(strstr(r.body, "phr_http_requests_total") == NULL);
        it_resp_free(&r);
    }
}

static void
gw_request_id_propagates(void)
{
    it_resp_t r;
    char cmd[512];

    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy", "", 0, NULL,
                        &r) == 0);
    IT_CHECK(it_is_problem(&r, 405, "method_not_allowed"));
    const char *hdr = it_header(&r, "x-request-id");
    const char *body_id = it_json_str(&r, "request_id");
    IT_CHECK(hdr != NULL && body_id != NULL && strcmp(hdr, body_id) == 0);
    /* The service logged the same id in its access log. */
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 50); do grep -q '\"request_id\":\"%s\"' %s/log/auth.log && exit 0; "
             "sleep 0.1; done; exit 1",
             body_id, it_env("PHR_TEST_VAR"));
    IT_CHECK(it_sh("%s", cmd) == 0);
    it_resp_free(&r);
}

static void
gw_body_limit(void)
{
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n);
    it_resp_t r;
    static const char *const json[] = {"Content-Type: application/json", NULL};

    IT_CHECK(big != NULL);
    memset(big, 'a', n);
    int rc = it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy/check", big, n,
                        json, &r);
    free(big);
    IT_CHECK(rc == 0);
    IT_CHECK(it_is_problem(&r, 413, "payload_too_large"));
    it_resp_free(&r);
}

static void
gw_routes_to_each_service(void)
{
    static const char *const paths[] = {"/api/v1/auth/password-policy", "/api/v1/records/types",
                                        "/api/v1/notifications/kinds", "/api/v1/audit/public-key"};
    for (size_t i = 0; i < 4; i++) {
        it_resp_t r;
        IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", paths[i], NULL, 0, NULL, &r) == 0);
        IT_CHECK(r.status == 200 && r.json != NULL);
        IT_CHECK(it_header(&r, "content-type") != NULL &&
                 strcmp(it_header(&r, "content-type"), "application/json") == 0);
        it_resp_free(&r);
    }
}

/*
 * Every upstream's keepalive_timeout in the running gateway's config is shorter than the
 * services' idle timeout (the records instance's PHR_IDLE_TIMEOUT_MS, else its default), so
 * nginx never reuses a connection the service is closing with GOAWAY (a 502); the check is
 * tests/integration/gateway_idle.sh.
 */
static void
gw_upstream_idle_ends_first(void)
{
    IT_CHECK(it_sh("bash tests/integration/gateway_idle.sh '%s'", it_env("PHR_TEST_VAR")) == 0);
}

const it_case_t gateway_cases[] = {
    {"gateway: /healthz over HTTP/2", gw_healthz_h2},
    {"gateway: upstream idle ends first", gw_upstream_idle_ends_first},
    {"gateway: HTTP/1.1 by ALPN", gw_http11_by_alpn},
    {"gateway: security headers on 200 and 404", gw_security_headers},
    {"gateway: internal, metrics and health paths are not routed", gw_not_routed},
    {"gateway: request id reaches the service and its log", gw_request_id_propagates},
    {"gateway: body over 1 MiB is refused with 413", gw_body_limit},
    {"gateway: each service's public route answers", gw_routes_to_each_service},
    {NULL, NULL},
};
