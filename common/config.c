#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "err.h"

typedef enum { CFG_INT, CFG_STR } cfg_type_t;

typedef struct {
    const char *env;
    cfg_type_t type;
    size_t offset;
    size_t size; /* buffer size for CFG_STR */
    const char *def;
    long min, max;
    const char *help;
} cfg_def_t;

#define CINT(env, field, def, lo, hi, help)                                                        \
    {                                                                                              \
        env, CFG_INT, offsetof(cfg_t, field), 0, def, lo, hi, help                                 \
    }
#define CSTR(env, field, def, help)                                                                \
    {                                                                                              \
        env, CFG_STR, offsetof(cfg_t, field), sizeof(((cfg_t *)0)->field), def, 0, 0, help         \
    }

static const cfg_def_t cfg_table[] = {
    CSTR("PHR_LISTEN_HOST", listen_host, "127.0.0.1", "address the service listens on"),
    CINT("PHR_AUTH_PORT", port[CFG_SVC_AUTH], "9101", 1, 65535, "auth service h2c port"),
    CINT("PHR_RECORDS_PORT", port[CFG_SVC_RECORDS], "9102", 1, 65535, "records service h2c port"),
    CINT("PHR_NOTIFICATION_PORT", port[CFG_SVC_NOTIFICATION], "9103", 1, 65535,
         "notification service h2c port"),
    CINT("PHR_AUDIT_PORT", port[CFG_SVC_AUDIT], "9104", 1, 65535, "audit service h2c port"),
    CSTR("PHR_AUTH_HOST", host[CFG_SVC_AUTH], "127.0.0.1", "host where peers reach auth"),
    CSTR("PHR_RECORDS_HOST", host[CFG_SVC_RECORDS], "127.0.0.1", "host where peers reach records"),
    CSTR("PHR_NOTIFICATION_HOST", host[CFG_SVC_NOTIFICATION], "127.0.0.1",
         "host where peers reach notification"),
    CSTR("PHR_AUDIT_HOST", host[CFG_SVC_AUDIT], "127.0.0.1", "host where peers reach audit"),
    CSTR("PHR_PG_HOST", pg_host, "127.0.0.1", "PostgreSQL host"),
    CINT("PHR_PG_PORT", pg_port, "55432", 1, 65535, "PostgreSQL port"),
    CINT("PHR_PG_POOL", pg_pool_size, "4", 1, 64, "PostgreSQL connections per service"),
    CINT("PHR_PG_STATEMENT_TIMEOUT_MS", pg_statement_timeout_ms, "5000", 100, 600000,
         "statement_timeout of every PostgreSQL session"),
    CINT("PHR_PG_CONNECT_TIMEOUT_MS", pg_connect_timeout_ms, "3000", 100, 60000,
         "PostgreSQL connect deadline"),
    CINT("PHR_PG_PING_INTERVAL_MS", pg_ping_interval_ms, "2000", 100, 600000,
         "a PostgreSQL connection idle this long is pinged (an empty query)"),
    CINT("PHR_PG_PING_TIMEOUT_MS", pg_ping_timeout_ms, "2000", 100, 60000,
         "a ping unanswered this long: PostgreSQL unreachable, /readyz 503 until it answers"),
    CINT("PHR_PG_KEEPALIVE_S", pg_keepalive_s, "10", 1, 3600,
         "TCP keepalive idle time of the PostgreSQL sockets (3 probes, every third of it)"),
    CSTR("PHR_REDIS_HOST", redis_host, "127.0.0.1", "Redis host"),
    CINT("PHR_REDIS_PORT", redis_port, "56379", 1, 65535, "Redis port"),
    CINT("PHR_REDIS_TIMEOUT_MS", redis_timeout_ms, "1000", 10, 60000,
         "deadline of one Redis command"),
    CSTR("PHR_SECRETS_DIR", secrets_dir, "var/secrets",
         "directory of generated secrets (mode 0600 files)"),
    CSTR("PHR_TLS_CERT", tls_cert, "", "PEM certificate chain: serve TLS (ALPN h2) instead of h2c"),
    CSTR("PHR_TLS_KEY", tls_key, "", "PEM private key of PHR_TLS_CERT"),
    CSTR("PHR_LOG_LEVEL", log_level, "info", "debug, info, warn or error"),
    CINT("PHR_MAX_HEADER_LIST", max_header_list, "16384", 1024, 1048576,
         "largest request header list, bytes (431 above)"),
    CINT("PHR_MAX_BODY", max_body, "1048576", 1024, 67108864,
         "default request body limit, bytes (413 above; routes may raise it)"),
    CINT("PHR_MAX_STREAMS", max_streams, "100", 1, 1000, "concurrent streams per connection"),
    CINT("PHR_OUTPUT_CAP", output_cap, "262144", 16384, 16777216,
         "bytes buffered for one connection before reading pauses"),
    CINT("PHR_IDLE_TIMEOUT_MS", idle_timeout_ms, "60000", 100, 3600000, "idle connection timeout"),
    CINT("PHR_REQUEST_TIMEOUT_MS", request_timeout_ms, "15000", 100, 600000,
         "time to receive one whole request (408 above)"),
    CINT("PHR_WRITE_TIMEOUT_MS", write_timeout_ms, "30000", 100, 600000,
         "a connection whose client takes no byte of its pending output this long is closed"),
    CINT("PHR_DRAIN_TIMEOUT_MS", drain_timeout_ms, "10000", 0, 120000,
         "how long in-flight requests may finish after SIGTERM"),
    CINT("PHR_WORKERS", workers, "2", 1, 64, "worker threads for CPU-heavy work"),
    CINT("PHR_WORKER_QUEUE", worker_queue, "256", 1, 65536, "bounded worker queue length"),
    CINT("PHR_SESSION_IDLE_S", session_idle_s, "1800", 60, 86400, "session idle expiry, seconds"),
    CINT("PHR_SESSION_ABSOLUTE_S", session_absolute_s, "43200", 300, 2592000,
         "absolute session lifetime, seconds"),
    CINT("PHR_SESSION_ABSOLUTE_STAFF_S", session_absolute_staff_s, "43200", 300, 2592000,
         "absolute lifetime of staff and operator sessions, seconds"),
    CINT("PHR_SESSION_ABSOLUTE_PATIENT_S", session_absolute_patient_s, "2592000", 300, 2592000,
         "absolute lifetime of patient sessions, seconds"),
    CSTR("PHR_PUBLIC_BASE_URL", public_base_url, "https://127.0.0.1:8443",
         "public base URL for links in e-mails (never taken from the Host header)"),
    CINT("PHR_CALL_TIMEOUT_MS", call_timeout_ms, "5000", 50, 120000,
         "deadline of one service-to-service call"),
    CINT("PHR_RETENTION_DAYS", retention_days, "30", 0, 3650,
         "records: days a withdrawn patient's data is kept before the purge"),
    CINT("PHR_RECORDS_GET_BATCH", records_get_batch, "32", 1, CFG_RECORDS_GET_BATCH_MAX,
         "records: reads by id coalesced into one SELECT while the pool is busy (1: none)"),
    CINT("PHR_RECORDS_GET_WAITING", records_get_waiting, "4096", 16, 65536,
         "records: reads by id waiting for a free connection before 503"),
    CINT("PHR_RECORDS_INSERT_BATCH", records_insert_batch, "32", 1, CFG_RECORDS_INSERT_BATCH_MAX,
         "records: creates coalesced into one INSERT while the pool is busy (1: none)"),
    CINT("PHR_RECORDS_INSERT_WAITING", records_insert_waiting, "4096", 16, 65536,
         "records: creates waiting for a free connection before 503"),
    CSTR("PHR_SENDGRID_BASE_URL", sendgrid_base_url, "http://127.0.0.1:9199",
         "notification: SendGrid API base URL"),
    CSTR("PHR_TWILIO_BASE_URL", twilio_base_url, "http://127.0.0.1:9199",
         "notification: Twilio API base URL"),
    CSTR("PHR_TWILIO_ACCOUNT_SID", twilio_account_sid, "AC00000000000000000000000000000000",
         "notification: Twilio account SID (auth token: secret twilio_auth_token)"),
    CSTR("PHR_TWILIO_FROM", twilio_from, "+15005550006", "notification: SMS sender number"),
    CSTR("PHR_MAIL_FROM", mail_from, "no-reply@phr.example.jp",
         "notification: From address (API key: secret sendgrid_api_key)"),
    CSTR("PHR_OPERATOR_ALERT_EMAIL", operator_alert_email, "ops@phr.example.jp",
         "notification: where incident escalations go"),
    CINT("PHR_NOTIFY_MAX_ATTEMPTS", notify_max_attempts, "8", 1, 100,
         "notification: delivery attempts before dead-letter"),
    CINT("PHR_NOTIFY_BACKOFF_BASE_MS", notify_backoff_base_ms, "1000", 1, 3600000,
         "notification: first retry delay (full jitter, doubling)"),
    CINT("PHR_NOTIFY_BACKOFF_MAX_MS", notify_backoff_max_ms, "300000", 1, 86400000,
         "notification: cap of one retry delay"),
    CINT("PHR_NOTIFY_CLAIM_TIMEOUT_S", notify_claim_timeout_s, "60", 1, 86400,
         "notification: a delivery claim older than this is reaped"),
    CINT("PHR_NOTIFY_BATCH", notify_batch, "50", 1, 1000,
         "notification: notifications claimed per worker round"),
    CINT("PHR_PROVIDER_TIMEOUT_MS", provider_timeout_ms, "10000", 100, 120000,
         "notification: deadline of one provider call"),
    CINT("PHR_AUDIT_CHECKPOINT_EVENTS", audit_checkpoint_events, "1000", 1, 10000000,
         "audit: sign a checkpoint every N events"),
    CINT("PHR_AUDIT_CHECKPOINT_S", audit_checkpoint_s, "60", 1, 86400,
         "audit: or every M seconds when events arrived"),
    CINT("PHR_AUDIT_RETENTION_DAYS", audit_retention_days, "1826", 30, 36500,
         "audit: days events are kept (partitions dropped only once exported and verified)"),
    CSTR("PHR_AUDIT_ARCHIVE_DIR", audit_archive_dir, "",
         "audit: where expired partitions are exported before their drop (\"\": $PHR_VAR/"
         "audit-archive, else var/audit-archive)"),
};

static const char *cfg_services[CFG_SVC_COUNT] = {"auth", "records", "notification", "audit"};

int
cfg_service_index(const char *name)
{
    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        if (name != NULL && strcmp(name, cfg_services[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *
cfg_service_name(int idx)
{
    return idx >= 0 && idx < CFG_SVC_COUNT ? cfg_services[idx] : NULL;
}

static int
cfg_set(cfg_t *cfg, const cfg_def_t *d, const char *val, char *err, size_t errlen)
{
    char *field = (char *)cfg + d->offset;

    if (d->type == CFG_STR) {
        size_t n = strlen(val);
        if ((n == 0 && d->def[0] != '\0') || n >= d->size) {
            snprintf(err, errlen, "%s: must be 1..%zu characters", d->env, d->size - 1);
            return PHR_EINVAL;
        }
        memcpy(field, val, n + 1);
        return PHR_OK;
    }

    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno != 0 || end == val || *end != '\0') {
        snprintf(err, errlen, "%s: '%s' is not an integer", d->env, val);
        return PHR_EINVAL;
    }
    if (v < d->min || v > d->max) {
        snprintf(err, errlen, "%s: %ld is outside %ld..%ld", d->env, v, d->min, d->max);
        return PHR_EINVAL;
    }
    *(int *)(void *)field = (int)v;
    return PHR_OK;
}

int
cfg_load(cfg_t *cfg, const char *service, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->service = cfg_service_index(service);
    if (cfg->service < 0) {
        snprintf(err, errlen, "unknown service '%s'", service ? service : "(null)");
        return PHR_EINVAL;
    }
    cfg->service_name = cfg_services[cfg->service];

    for (size_t i = 0; i < sizeof(cfg_table) / sizeof(cfg_table[0]); i++) {
        const cfg_def_t *d = &cfg_table[i];
        const char *val = getenv(d->env);
        int rc = cfg_set(cfg, d, val != NULL ? val : d->def, err, errlen);
        if (rc != PHR_OK) {
            return rc;
        }
    }
    if (strcmp(cfg->log_level, "debug") != 0 && strcmp(cfg->log_level, "info") != 0 &&
        strcmp(cfg->log_level, "warn") != 0 && strcmp(cfg->log_level, "error") != 0) {
        snprintf(err, errlen, "PHR_LOG_LEVEL: '%s' is not debug, info, warn or error",
                 cfg->log_level);
        return PHR_EINVAL;
    }
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
        snprintf(err, errlen, "PHR_TLS_CERT and PHR_TLS_KEY must be set together");
        return PHR_EINVAL;
    }
    if (cfg->session_idle_s > cfg->session_absolute_s) {
        snprintf(err, errlen, "PHR_SESSION_IDLE_S: must not exceed PHR_SESSION_ABSOLUTE_S");
        return PHR_EINVAL;
    }
    return PHR_OK;
}

void
cfg_print_help(void)
{
    for (size_t i = 0; i < sizeof(cfg_table) / sizeof(cfg_table[0]); i++) {
        const cfg_def_t *d = &cfg_table[i];
        if (d->type == CFG_INT) {
            printf("%-30s %-12s %ld..%ld  %s\n", d->env, d->def, d->min, d->max, d->help);
        } else {
            printf("%-30s %-12s %-10s  %s\n", d->env, d->def, "text", d->help);
        }
    }
}

int
cfg_read_secret(const cfg_t *cfg, const char *name, char *buf, size_t len)
{
    char path[512];
    struct stat st;

    if (strchr(name, '/') != NULL || len == 0) {
        return PHR_EINVAL;
    }
    snprintf(path, sizeof(path), "%s/%s", cfg->secrets_dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? PHR_ENOTFOUND : PHR_EIO;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return PHR_EIO;
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return PHR_EDENIED;
    }
    ssize_t n = read(fd, buf, len);
    close(fd);
    if (n < 0) {
        return PHR_EIO;
    }
    if ((size_t)n >= len) {
        return PHR_ETOOBIG;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    buf[n] = '\0';
    return PHR_OK;
}
