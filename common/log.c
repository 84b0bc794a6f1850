#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "timeutil.h"

/* Field budgets add up to well under LOG_LINE_MAX: lines are never cut mid-JSON. */
#define LOG_LINE_MAX 4096

static const char *log_service = "phr";
static log_level_t log_min = LOGL_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *service, const char *level)
{
    static char buf[64 * 1024];

    setvbuf(stderr, buf, _IOFBF, sizeof(buf));
    log_service = service;
    for (int i = LOGL_DEBUG; i <= LOGL_ERROR; i++) {
        if (level != NULL && strcmp(level, log_names[i]) == 0) {
            log_min = (log_level_t)i;
        }
    }
}

void
log_json_escape(char *out, size_t cap, size_t *len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = *len;

    for (; s != NULL && *s != '\0' && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            out[n++] = '\\';
            out[n++] = 'u';
            out[n++] = '0';
            out[n++] = '0';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    *len = n;
}

/* Appends |s|; never overflows, keeps |out| NUL-terminated. */
static void
log_append(char *out, size_t cap, size_t *len, const char *s)
{
    *len = fmt_cat(out, cap, *len, s);
}

/*
 * Appends ,"name":"value" with |value| escaped and cut to |max| bytes, so
 * that the fixed budget of every field keeps the line valid JSON.
 */
static void
log_field(char *line, size_t cap, size_t *len, const char *name, const char *value, size_t max)
{
    log_append(line, cap, len, ",\"");
    log_append(line, cap, len, name);
    log_append(line, cap, len, "\":\"");
    log_json_escape(line, *len + max < cap ? *len + max : cap, len, value);
    log_append(line, cap, len, "\"");
}

/* Appends ,"name":N. */
static void
log_number(char *line, size_t cap, size_t *len, const char *name, unsigned long long v)
{
    char d[FMT_U64_LEN];

    log_append(line, cap, len, ",\"");
    log_append(line, cap, len, name);
    log_append(line, cap, len, "\":");
    fmt_u64(d, v);
    log_append(line, cap, len, d);
}

static void
log_head(char *line, size_t cap, size_t *len, const char *level, const char *request_id)
{
    char ts[TU_JST_LEN];

    tu_format_jst(tu_now_ms(), ts, sizeof(ts));
    log_append(line, cap, len, "{\"ts\":\"");
    log_append(line, cap, len, ts);
    log_append(line, cap, len, "\"");
    log_field(line, cap, len, "level", level, 16);
    log_field(line, cap, len, "service", log_service, 32);
    if (request_id != NULL && request_id[0] != '\0') {
        log_field(line, cap, len, "request_id", request_id, 80);
    }
}

void
log_msg(log_level_t level, const char *request_id, const char *fmt, ...)
{
    char msg[1024];
    char line[LOG_LINE_MAX];
    size_t len = 0;
    va_list ap;

    if (level < log_min) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    log_head(line, sizeof(line), &len, log_names[level], request_id);
    log_field(line, sizeof(line), &len, "msg", msg, 2048);
    log_append(line, sizeof(line), &len, "}\n");
    fputs(line, stderr);
    if (level >= LOGL_WARN) {
        fflush(stderr);
    }
}

void
log_flush(void)
{
    fflush(stderr);
}

void
log_access(const log_access_t *a)
{
    char line[LOG_LINE_MAX];
    size_t len = 0;

    if (LOGL_INFO < log_min) {
        return;
    }
    log_head(line, sizeof(line), &len, "info", a->request_id);
    log_field(line, sizeof(line), &len, "msg", "access", 16);
    log_field(line, sizeof(line), &len, "method", a->method, 32);
    log_field(line, sizeof(line), &len, "path", a->path, 1024);
    log_field(line, sizeof(line), &len, "route", a->route ? a->route : "-", 256);
    log_field(line, sizeof(line), &len, "peer", a->peer ? a->peer : "-", 64);
    log_number(line, sizeof(line), &len, "status", (unsigned)(a->status > 0 ? a->status : 0));
    log_number(line, sizeof(line), &len, "bytes_in", a->bytes_in);
    log_number(line, sizeof(line), &len, "bytes_out", a->bytes_out);
    /* milliseconds with three decimals, as %.3f would print them */
    unsigned long long us =
        a->duration_ms > 0 ? (unsigned long long)(a->duration_ms * 1000 + 0.5) : 0;
    char frac[5] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10), '\0'};
    log_number(line, sizeof(line), &len, "ms", us / 1000);
    log_append(line, sizeof(line), &len, frac);
    log_append(line, sizeof(line), &len, "}\n");
    fputs(line, stderr);
}
