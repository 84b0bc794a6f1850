/*
 * log.h - JSON-lines logging with JST timestamps.
 *
 * One line per event on stderr:
 * {"ts":"2026-11-26T17:46:22.123+09:00","level":"info","service":"auth",
 *  "request_id":"...","msg":"..."}
 * Never log passwords, tokens or health values.
 */
#ifndef PHR_LOG_H
#define PHR_LOG_H

#include <stddef.h>

typedef enum { LOGL_DEBUG = 0, LOGL_INFO, LOGL_WARN, LOGL_ERROR } log_level_t;

/*
 * Sets the service name and the lowest level written ("debug", "info", ...).
 * Output is block-buffered: warnings and errors are flushed at once, other
 * lines when log_flush runs (the service calls it every 50 ms and at exit).
 */
void log_init(const char *service, const char *level);

/* Writes buffered lines out. */
void log_flush(void);

void log_msg(log_level_t level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOGL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOGL_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOGL_ERROR, NULL, __VA_ARGS__)

/* The access log line of one finished request. */
typedef struct {
    const char *request_id;
    const char *method;
    const char *path;
    const char *route;
    int status;
    size_t bytes_in;
    size_t bytes_out;
    double duration_ms;
    const char *peer;
} log_access_t;

void log_access(const log_access_t *a);

/*
 * Appends |s| to |out| (capacity |cap|, current length |*len|) as the body of
 * a JSON string, escaping quotes, backslashes and control characters.
 * Truncates rather than overflows; |out| stays NUL-terminated.
 */
void log_json_escape(char *out, size_t cap, size_t *len, const char *s);

#endif
