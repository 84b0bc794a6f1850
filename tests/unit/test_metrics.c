/*
 * test_metrics.c - unit tests of common/metrics.c (no external services needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static int
t_reset(void **state)
{
    metrics_reset();
    metrics_set_gauges(NULL, NULL);
    return 0;
}

/* Value of the sample line starting with |prefix| (labels included), or -1. */
static double
t_value(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    return -1;
}

static char *
t_render(const char *service)
{
    size_t len = 0;
    char *s = metrics_render(service, &len);

    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_int_equal(s[len - 1], '\n');
    return s;
}

static void
t_counters(void **state)
{
    metrics_request("GET", "/api/v1/records/{id}", 200, 0.002);
    metrics_request("GET", "/api/v1/records/{id}", 200, 0.003);
    metrics_request("GET", "/api/v1/records/{id}", 404, 0.001);
    metrics_request("POST", "/api/v1/records", 201, 0.02);
    metrics_request("GET", "-", 404, 0.0001);
    char *s = t_render("records");

    assert_int_equal(t_value(s, "phr_http_requests_total{service=\"records\",method=\"GET\","
                                "route=\"/api/v1/records/{id}\",status=\"200\"}"),
                     2);
    assert_int_equal(t_value(s, "phr_http_requests_total{service=\"records\",method=\"GET\","
                                "route=\"/api/v1/records/{id}\",status=\"404\"}"),
                     1);
    assert_int_equal(t_value(s, "phr_http_requests_total{service=\"records\",method=\"POST\","
                                "route=\"/api/v1/records\",status=\"201\"}"),
                     1);
    assert_int_equal(t_value(s, "phr_http_requests_total{service=\"records\",method=\"GET\","
                                "route=\"-\",status=\"404\"}"),
                     1);
    assert_non_null(strstr(s, "# TYPE phr_http_requests_total counter\n"));
    assert_non_null(strstr(s, "# TYPE phr_http_request_duration_seconds histogram\n"));
    free(s);
}

static void
t_histogram(void **state)
{
    static const char *const les[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                      "0.1",   "0.25",   "0.5",   "1",    "2.5",   "5"};
    /* One sample per bucket edge (le is inclusive), one just above, and two beyond 5 s. */
    static const double samples[] = {0.001, 0.0011, 0.0025, 0.004, 0.5, 0.7, 5.0, 6.0, 100.0};
    double sum = 0;

    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        metrics_request("GET", "/x", 200, samples[i]);
        sum += samples[i];
    }
    char *s = t_render("auth");
    static const int want[] = {1, 3, 4, 4, 4, 4, 4, 4, 5, 6, 6, 7};
    double prev = 0;
    char key[160];

    for (size_t b = 0; b < sizeof(les) / sizeof(les[0]); b++) {
        snprintf(key, sizeof(key),
                 "phr_http_request_duration_seconds_bucket{service=\"auth\",le=\"%s\"}", les[b]);
        double v = t_value(s, key);
        if (v != want[b]) {
            fail_msg("bucket le=%s: %g, want %d", les[b], v, want[b]);
        }
        assert_true(v >= prev); /* cumulative */
        prev = v;
    }
    double inf = t_value(s, "phr_http_request_duration_seconds_bucket{service=\"auth\","
                            "le=\"+Inf\"}");
    double count = t_value(s, "phr_http_request_duration_seconds_count{service=\"auth\"}");
    double total = t_value(s, "phr_http_request_duration_seconds_sum{service=\"auth\"}");
    assert_int_equal(inf, 9);
    assert_int_equal(count, 9);
    assert_true(total > sum - 0.001 && total < sum + 0.001);
    /* Bucket lines appear in increasing le order, +Inf last. */
    assert_true(strstr(s, "le=\"0.001\"") < strstr(s, "le=\"5\""));
    assert_true(strstr(s, "le=\"5\"") < strstr(s, "le=\"+Inf\""));
    free(s);
}

static void
t_inflight_and_deps(void **state)
{
    metrics_inflight_add(1);
    metrics_inflight_add(1);
    metrics_inflight_add(1);
    metrics_inflight_add(-1);
    metrics_dependency_error("postgres");
    metrics_dependency_error("redis");
    metrics_dependency_error("postgres");
    char *s = t_render("audit");

    assert_int_equal(t_value(s, "phr_http_requests_in_flight{service=\"audit\"}"), 2);
    assert_int_equal(t_value(s, "phr_dependency_errors_total{service=\"audit\","
                                "dependency=\"postgres\"}"),
                     2);
    assert_int_equal(t_value(s, "phr_dependency_errors_total{service=\"audit\","
                                "dependency=\"redis\"}"),
                     1);
    assert_non_null(strstr(s, "# TYPE phr_http_requests_in_flight gauge\n"));
    free(s);

    metrics_reset();
    s = t_render("audit");
    assert_int_equal(t_value(s, "phr_http_requests_in_flight{service=\"audit\"}"), 0);
    assert_int_equal(t_value(s, "phr_http_request_duration_seconds_count{service=\"audit\"}"), 0);
    assert_null(strstr(s, "postgres"));
    assert_null(strstr(s, "phr_http_requests_total{"));
    free(s);
}

static int t_gauge_calls;

static void
t_gauges(char **out, size_t *len, size_t *cap, void *ud)
{
    t_gauge_calls++;
    metrics_appendf(out, len, cap, "# TYPE phr_db_pool_in_use gauge\n");
    metrics_appendf(out, len, cap, "phr_db_pool_in_use{service=\"%s\"} %d\n", (const char *)ud, 3);
}

static void
t_gauge_callback(void **state)
{
    metrics_set_gauges(t_gauges, "records");
    char *s = t_render("records");

    assert_int_equal(t_gauge_calls, 1);
    assert_int_equal(t_value(s, "phr_db_pool_in_use{service=\"records\"}"), 3);
    free(s);
    metrics_set_gauges(NULL, NULL);
    s = t_render("records");
    assert_int_equal(t_gauge_calls, 1);
    assert_null(strstr(s, "phr_db_pool_in_use"));
    free(s);
}

static void
t_appendf_grows(void **state)
{
    size_t cap = 4, len = 0;
    char *out = malloc(cap);
    char big[10000];

    assert_non_null(out);
    out[0] = '\0';
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    metrics_appendf(&out, &len, &cap, "ab");
    metrics_appendf(&out, &len, &cap, "%s", big);
    metrics_appendf(&out, &len, &cap, "%d", 12345);
    assert_int_equal(len, 2 + 9999 + 5);
    assert_true(cap > len);
    assert_int_equal(strlen(out), len);
    assert_memory_equal(out, "abzz", 4);
    assert_string_equal(out + len - 6, "z12345");
    free(out);
}

static void
t_many_series(void **state)
{
    char route[32];

    /* Far more series than the table holds: no crash, the count stays right. */
    for (int i = 0; i < 2000; i++) {
        snprintf(route, sizeof(route), "/r/%d", i);
        metrics_request("GET", route, 200, 0.001);
    }
    char *s = t_render("auth");
    assert_int_equal(t_value(s, "phr_http_request_duration_seconds_count{service=\"auth\"}"), 2000);
    assert_int_equal(t_value(s, "phr_http_requests_total{service=\"auth\",method=\"GET\","
                                "route=\"/r/0\",status=\"200\"}"),
                     1);
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_counters, t_reset),
        cmocka_unit_test_setup(t_histogram, t_reset),
        cmocka_unit_test_setup(t_inflight_and_deps, t_reset),
        cmocka_unit_test_setup(t_gauge_callback, t_reset),
        cmocka_unit_test_setup(t_appendf_grows, t_reset),
        cmocka_unit_test_setup(t_many_series, t_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
