#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "timeutil.h"

static const char *log_service = "phr";
static log_level_t log_min = LOGL_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *service, const char *level)
{
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

static void
log_append(char *out, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= cap) {
        n = cap - *len - 1;
    }
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

static void
log_head(char *line, size_t cap, size_t *len, const char *level, const char *request_id)
{
    char ts[TU_JST_LEN];

    tu_format_jst(tu_now_ms(), ts, sizeof(ts));
    log_append(line, cap, len, "{\"ts\":\"");
    log_append(line, cap, len, ts);
    log_append(line, cap, len, "\",\"level\":\"");
    log_append(line, cap, len, level);
    log_append(line, cap, len, "\",\"service\":\"");
    log_json_escape(line, cap, len, log_service);
    log_append(line, cap, len, "\"");
    if (request_id != NULL && request_id[0] != '\0') {
        log_append(line, cap, len, ",\"request_id\":\"");
        log_json_escape(line, cap, len, request_id);
        log_append(line, cap, len, "\"");
    }
}

void
log_msg(log_level_t level, const char *request_id, const char *fmt, ...)
{
    char msg[1024];
    char line[2048];
    size_t len = 0;
    va_list ap;

    if (level < log_min) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    log_head(line, sizeof(line), &len, log_names[level], request_id);
    log_append(line, sizeof(line), &len, ",\"msg\":\"");
    log_json_escape(line, sizeof(line), &len, msg);
    log_append(line, sizeof(line) - 2, &len, "\"}");
    log_append(line, sizeof(line), &len, "\n");
    fputs(line, stderr);
}

void
log_access(const log_access_t *a)
{
    char line[2048];
    char num[160];
    size_t len = 0;

    if (LOGL_INFO < log_min) {
        return;
    }
    log_head(line, sizeof(line), &len, "info", a->request_id);
    log_append(line, sizeof(line), &len, ",\"msg\":\"access\",\"method\":\"");
    log_json_escape(line, sizeof(line), &len, a->method);
    log_append(line, sizeof(line), &len, "\",\"path\":\"");
    log_json_escape(line, sizeof(line), &len, a->path);
    log_append(line, sizeof(line), &len, "\",\"route\":\"");
    log_json_escape(line, sizeof(line), &len, a->route ? a->route : "-");
    log_append(line, sizeof(line), &len, "\",\"peer\":\"");
    log_json_escape(line, sizeof(line), &len, a->peer ? a->peer : "-");
    snprintf(num, sizeof(num), "\",\"status\":%d,\"bytes_in\":%zu,\"bytes_out\":%zu,\"ms\":%.3f}\n",
             a->status, a->bytes_in, a->bytes_out, a->duration_ms);
    log_append(line, sizeof(line), &len, num);
    fputs(line, stderr);
}
