#include "metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_SERIES 512
#define METRICS_MAX_DEPS 16

static const double metrics_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,   0.25,   0.5,   1,    2.5,   5};
#define METRICS_NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

typedef struct {
    char method[8];
    char route[96];
    int status;
    unsigned long count;
} metrics_series_t;

typedef struct {
    char name[32];
    unsigned long count;
} metrics_dep_t;

static struct {
    metrics_series_t series[METRICS_MAX_SERIES];
    size_t nseries;
    unsigned long overflow;
    unsigned long hist[METRICS_NBUCKETS + 1];
    double hist_sum;
    unsigned long hist_count;
    long inflight;
    metrics_dep_t deps[METRICS_MAX_DEPS];
    size_t ndeps;
    metrics_gauge_fn gauge_fn;
    void *gauge_ud;
} metrics;

void
metrics_request(const char *method, const char *route, int status, double seconds)
{
    size_t i;

    for (i = 0; i < metrics.nseries; i++) {
        metrics_series_t *s = &metrics.series[i];
        if (s->status == status && strcmp(s->route, route) == 0 && strcmp(s->method, method) == 0) {
            break;
        }
    }
    if (i == metrics.nseries) {
        if (i == METRICS_MAX_SERIES) {
            metrics.overflow++;
            i = SIZE_MAX;
        } else {
            metrics_series_t *s = &metrics.series[metrics.nseries++];
            snprintf(s->method, sizeof(s->method), "%s", method);
            snprintf(s->route, sizeof(s->route), "%s", route);
            s->status = status;
        }
    }
    if (i != SIZE_MAX) {
        metrics.series[i].count++;
    }
    size_t b = 0;
    while (b < METRICS_NBUCKETS && seconds > metrics_buckets[b]) {
        b++;
    }
    metrics.hist[b]++;
    metrics.hist_sum += seconds;
    metrics.hist_count++;
}

void
metrics_inflight_add(int delta)
{
    metrics.inflight += delta;
}

void
metrics_dependency_error(const char *dependency)
{
    for (size_t i = 0; i < metrics.ndeps; i++) {
        if (strcmp(metrics.deps[i].name, dependency) == 0) {
            metrics.deps[i].count++;
            return;
        }
    }
    if (metrics.ndeps < METRICS_MAX_DEPS) {
        metrics_dep_t *d = &metrics.deps[metrics.ndeps++];
        snprintf(d->name, sizeof(d->name), "%s", dependency);
        d->count = 1;
    }
}

void
metrics_set_gauges(metrics_gauge_fn fn, void *ud)
{
    metrics.gauge_fn = fn;
    metrics.gauge_ud = ud;
}

void
metrics_appendf(char **out, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;

    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*out + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if (*len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = (*cap + (size_t)n) * 2;
        char *p = realloc(*out, ncap);
        if (p == NULL) {
            return;
        }
        *out = p;
        *cap = ncap;
    }
}

char *
metrics_render(const char *service, size_t *lenp)
{
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    unsigned long cum = 0;

    if (out == NULL) {
        return NULL;
    }
    out[0] = '\0';
    metrics_appendf(&out, &len, &cap,
                    "# HELP phr_http_requests_total Requests answered, by route and status.\n"
                    "# TYPE phr_http_requests_total counter\n");
    for (size_t i = 0; i < metrics.nseries; i++) {
        const metrics_series_t *s = &metrics.series[i];
        metrics_appendf(&out, &len, &cap,
                        "phr_http_requests_total{service=\"%s\",method=\"%s\",route=\"%s\","
                        "status=\"%d\"} %lu\n",
                        service, s->method, s->route, s->status, s->count);
    }
    metrics_appendf(&out, &len, &cap,
                    "# HELP phr_http_request_duration_seconds Request latency.\n"
                    "# TYPE phr_http_request_duration_seconds histogram\n");
    for (size_t b = 0; b < METRICS_NBUCKETS; b++) {
        cum += metrics.hist[b];
        metrics_appendf(&out, &len, &cap,
                        "phr_http_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %lu\n",
                        service, metrics_buckets[b], cum);
    }
    cum += metrics.hist[METRICS_NBUCKETS];
    metrics_appendf(&out, &len, &cap,
                    "phr_http_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %lu\n"
                    "phr_http_request_duration_seconds_sum{service=\"%s\"} %.6f\n"
                    "phr_http_request_duration_seconds_count{service=\"%s\"} %lu\n"
                    "# HELP phr_http_requests_in_flight Requests being handled.\n"
                    "# TYPE phr_http_requests_in_flight gauge\n"
                    "phr_http_requests_in_flight{service=\"%s\"} %ld\n"
                    "# HELP phr_dependency_errors_total Failed calls to dependencies.\n"
                    "# TYPE phr_dependency_errors_total counter\n",
                    service, cum, service, metrics.hist_sum, service, metrics.hist_count, service,
                    metrics.inflight);
    for (size_t i = 0; i < metrics.ndeps; i++) {
        metrics_appendf(&out, &len, &cap,
                        "phr_dependency_errors_total{service=\"%s\",dependency=\"%s\"} %lu\n",
                        service, metrics.deps[i].name, metrics.deps[i].count);
    }
    if (metrics.gauge_fn != NULL) {
        metrics.gauge_fn(&out, &len, &cap, metrics.gauge_ud);
    }
    *lenp = len;
    return out;
}

void
metrics_reset(void)
{
    memset(&metrics, 0, sizeof(metrics));
}
