#include "log.h"

#include <stdarg.h>
#include <stdint.h>
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

/* 1: a byte JSON strings carry as it is (not a control character, quote or backslash). */
static const unsigned char log_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

void
log_json_escape(char *out, size_t cap, size_t *len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = *len;

    while (s != NULL && *s != '\0' && n + 7 < cap) {
        size_t run = 0;
        while (log_plain[(unsigned char)s[run]]) {
            run++;
        }
        if (run > 0) {
            if (run > cap - 7 - n) {
                run = cap - 7 - n;
            }
            memcpy(out + n, s, run);
            n += run;
            s += run;
            continue;
        }
        unsigned char c = (unsigned char)*s++;
        out[n++] = '\\';
        if (c == '"' || c == '\\') {
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = 'n';
        } else {
            out[n++] = 'u';
            out[n++] = '0';
            out[n++] = '0';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
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

/* The JSON text that starts member |name| of a line: ,"name": */
#define LOG_KEY(name) ",\"" name "\":"

/*
 * Appends |key| (LOG_KEY) and "value" with |value| escaped and cut to |max|
 * bytes, so that the fixed budget of every field keeps the line valid JSON.
 */
static void
log_field(char *line, size_t cap, size_t *len, const char *key, const char *value, size_t max)
{
    log_append(line, cap, len, key);
    log_append(line, cap, len, "\"");
    log_json_escape(line, *len + max < cap ? *len + max : cap, len, value);
    log_append(line, cap, len, "\"");
}

/* Appends |key| (LOG_KEY) and the number |v|. */
static void
log_number(char *line, size_t cap, size_t *len, const char *key, unsigned long long v)
{
    char d[FMT_U64_LEN];

    log_append(line, cap, len, key);
    fmt_u64(d, v);
    log_append(line, cap, len, d);
}

static void
log_head(char *line, size_t cap, size_t *len, const char *level, const char *request_id)
{
    /* the time of the last line: lines come many per millisecond under load */
    static char ts[TU_JST_LEN];
    static int64_t ts_ms = -1;
    int64_t now = tu_now_ms();

    if (now != ts_ms) {
        tu_format_jst(now, ts, sizeof(ts));
        ts_ms = now;
    }
    log_append(line, cap, len, "{\"ts\":\"");
    log_append(line, cap, len, ts);
    log_append(line, cap, len, "\"");
    log_field(line, cap, len, LOG_KEY("level"), level, 16);
    log_field(line, cap, len, LOG_KEY("service"), log_service, 32);
    if (request_id != NULL && request_id[0] != '\0') {
        log_field(line, cap, len, LOG_KEY("request_id"), request_id, 80);
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
    log_field(line, sizeof(line), &len, LOG_KEY("msg"), msg, 2048);
    log_append(line, sizeof(line), &len, "}\n");
    fwrite(line, 1, len, stderr);
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
    log_field(line, sizeof(line), &len, LOG_KEY("msg"), "access", 16);
    log_field(line, sizeof(line), &len, LOG_KEY("method"), a->method, 32);
    log_field(line, sizeof(line), &len, LOG_KEY("path"), a->path, 1024);
    log_field(line, sizeof(line), &len, LOG_KEY("route"), a->route ? a->route : "-", 256);
    log_field(line, sizeof(line), &len, LOG_KEY("peer"), a->peer ? a->peer : "-", 64);
    log_number(line, sizeof(line), &len, LOG_KEY("status"),
               (unsigned)(a->status > 0 ? a->status : 0));
    log_number(line, sizeof(line), &len, LOG_KEY("bytes_in"), a->bytes_in);
    log_number(line, sizeof(line), &len, LOG_KEY("bytes_out"), a->bytes_out);
    /* milliseconds with three decimals, as %.3f would print them */
    unsigned long long us =
        a->duration_ms > 0 ? (unsigned long long)(a->duration_ms * 1000 + 0.5) : 0;
    char frac[5] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10), '\0'};
    log_number(line, sizeof(line), &len, LOG_KEY("ms"), us / 1000);
    log_append(line, sizeof(line), &len, frac);
    log_append(line, sizeof(line), &len, "}\n");
    fwrite(line, 1, len, stderr);
}
