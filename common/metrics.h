/*
 * metrics.h - the process's Prometheus metrics.
 *
 * One registry per process (like redis' global server struct): request
 * counters by route and status, a latency histogram, in-flight requests,
 * dependency errors, plus gauges sampled at scrape time through a callback.
 */
#ifndef PHR_METRICS_H
#define PHR_METRICS_H

#include <stddef.h>

/* Records one finished request. |route| is the template ("-" when unrouted). */
void metrics_request(const char *method, const char *route, int status, double seconds);

/* In-flight requests: +1 when dispatched, -1 when answered or dropped. */
void metrics_inflight_add(int delta);

/* Counts a failed call to a dependency ("postgres", "redis", "audit", ...). */
void metrics_dependency_error(const char *dependency);

/* Called at scrape time to append extra gauges (pool usage, ...) to |out|. */
typedef void (*metrics_gauge_fn)(char **out, size_t *len, size_t *cap, void *ud);
void metrics_set_gauges(metrics_gauge_fn fn, void *ud);

/* Appends formatted text to a growing buffer (for gauge callbacks). */
void metrics_appendf(char **out, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Renders the exposition text (caller frees). |service| becomes a label. */
char *metrics_render(const char *service, size_t *len);

/* Forgets everything (tests). */
void metrics_reset(void);

#endif
