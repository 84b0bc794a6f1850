/*
 * config.h - every setting of every service, in one typed table.
 *
 * Each setting is an environment variable with a default and bounds. The
 * table in config.c is the single place where settings are documented;
 * `phr-<service> --help-config` prints it.
 */
#ifndef PHR_CONFIG_H
#define PHR_CONFIG_H

#include <stddef.h>

enum { CFG_SVC_AUTH, CFG_SVC_RECORDS, CFG_SVC_NOTIFICATION, CFG_SVC_AUDIT, CFG_SVC_COUNT };

/* Upper bound of PHR_RECORDS_GET_BATCH: also the capacity of a batch (records getbatch.c). */
#define CFG_RECORDS_GET_BATCH_MAX 64
/* Upper bound of PHR_RECORDS_INSERT_BATCH: also RIB_MAX (records insbatch.h). */
#define CFG_RECORDS_INSERT_BATCH_MAX 64

typedef struct cfg {
    int service;              /* CFG_SVC_* of the running binary */
    const char *service_name; /* "auth", ... */

    char listen_host[64];
    int port[CFG_SVC_COUNT];       /* each service's h2c port */
    char host[CFG_SVC_COUNT][128]; /* where each service is reached by its peers */

    char pg_host[128];
    int pg_port;
    int pg_pool_size;
    int pg_statement_timeout_ms;
    int pg_connect_timeout_ms;
    int pg_ping_interval_ms; /* ping a connection idle this long */
    int pg_ping_timeout_ms;  /* unanswered ping: PostgreSQL unreachable */
    int pg_keepalive_s;      /* TCP keepalive idle time of the libpq sockets */

    char redis_host[128];
    int redis_port;
    int redis_timeout_ms;

    char secrets_dir[256];
    char tls_cert[256]; /* "" = h2c; else serve TLS with ALPN h2 */
    char tls_key[256];
    char log_level[8];

    int max_header_list;    /* bytes of one request's header list */
    int max_body;           /* default request body limit, bytes */
    int max_streams;        /* SETTINGS_MAX_CONCURRENT_STREAMS */
    int output_cap;         /* bytes buffered per connection before pausing */
    int idle_timeout_ms;    /* connection idle timeout */
    int request_timeout_ms; /* time to receive a whole request */
    int write_timeout_ms;   /* pending output not taken by the client: close */
    int drain_timeout_ms;   /* graceful shutdown budget */

    int workers;      /* CPU worker threads */
    int worker_queue; /* bounded queue length */

    int session_idle_s;             /* sliding idle expiry of sessions */
    int session_absolute_s;         /* absolute session lifetime */
    int session_absolute_staff_s;   /* absolute lifetime of staff/operator sessions (auth) */
    int session_absolute_patient_s; /* absolute lifetime of patient sessions (auth) */
    char public_base_url[256];      /* base of links in e-mails, never from the Host header */

    int call_timeout_ms; /* service-to-service call deadline */

    /* records */
    int retention_days;         /* days a withdrawn patient's data is kept before the purge */
    int records_get_batch;      /* record reads coalesced into one SELECT (1: none) */
    int records_get_waiting;    /* record reads waiting for a connection before 503 */
    int records_insert_batch;   /* record creates coalesced into one INSERT (1: none) */
    int records_insert_waiting; /* record creates waiting for a connection before 503 */

    /* notification */
    char sendgrid_base_url[256];    /* SendGrid API base (the stand-in locally) */
    char twilio_base_url[256];      /* Twilio API base (the stand-in locally) */
    char twilio_account_sid[64];    /* AC... */
    char twilio_from[32];           /* E.164 sender number */
    char mail_from[256];            /* From: address of every e-mail */
    char operator_alert_email[256]; /* escalations (incident deadline at risk) */
    int notify_max_attempts;        /* delivery attempts before dead-letter */
    int notify_backoff_base_ms;     /* first retry delay (full jitter) */
    int notify_backoff_max_ms;      /* cap of the retry delay */
    int notify_claim_timeout_s;     /* a claim older than this is reaped */
    int notify_batch;               /* notifications claimed per worker round */
    int provider_timeout_ms;        /* one provider call's deadline */

    /* audit */
    int audit_checkpoint_events; /* sign a checkpoint every N events ... */
    int audit_checkpoint_s;      /* ... or every M seconds with new events */
    int audit_retention_days;    /* events kept (default 5 years) */
    char audit_archive_dir[256]; /* retention exports; "": $PHR_VAR/audit-archive */
} cfg_t;

/*
 * Fills |cfg| from the environment for |service| ("auth", "records",
 * "notification", "audit"). On a bad value returns PHR_EINVAL and writes a
 * message naming the variable into |err|.
 */
int cfg_load(cfg_t *cfg, const char *service, char *err, size_t errlen);

/* Writes the table (variable, default, bounds, description) to stdout. */
void cfg_print_help(void);

/* Index of |name| in CFG_SVC_*, or -1. */
int cfg_service_index(const char *name);
const char *cfg_service_name(int idx);

/*
 * Reads secret file |name| from cfg->secrets_dir into |buf| (NUL-terminated,
 * trailing newline removed). Returns PHR_OK, PHR_ENOTFOUND, PHR_ETOOBIG or
 * PHR_EDENIED when the file is readable by group or others.
 */
int cfg_read_secret(const cfg_t *cfg, const char *name, char *buf, size_t len);

#endif
