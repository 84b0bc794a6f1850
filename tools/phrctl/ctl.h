/*
 * ctl.h - what the phrctl verbs org, status and retention share: the exit
 * codes, blocking connections to a service database (the service's own role
 * and password secret, as the service connects), the auth password pepper,
 * audit events by the operator and h2c calls to a service's port (libcurl,
 * HTTP/2 prior knowledge).
 */
#ifndef PHRCTL_CTL_H
#define PHRCTL_CTL_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "../../services/auth/pwhash.h"
#include "config.h"

/* Exit codes (0..7 as the other verbs; deploy/OPERATIONS.md). */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_ERROR = 1,
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_CONFLICT = 3, /* e-mail in use, seat limit below the seats in use */
    CTL_EXIT_NOTFOUND = 4, /* no such organization */
    CTL_EXIT_REFUSED = 6,  /* destructive verb without --yes */
    CTL_EXIT_DEGRADED = 8  /* status: a service is not ready or unreachable */
};

/* Loads the configuration as service |svc| would ("auth", ...). PHR_OK or printed error. */
int ctl_cfg(cfg_t *cfg, const char *svc);

/* Connects to database phr_<svc> as role phr_<svc>. NULL (printed) on failure. */
PGconn *ctl_pg_connect(const cfg_t *cfg, const char *svc);

/*
 * Runs |sql| with |n| text parameters; *res receives the result when |res| is
 * not NULL (caller clears). PHR_OK, PHR_ECONFLICT (unique violation, not
 * printed) or PHR_EIO (printed).
 */
int ctl_exec(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **res);

/* The current auth password pepper (secret auth_pepper_v1); id "" when absent. */
int ctl_pepper(const cfg_t *cfg, pwhash_pepper_t *pp);

/*
 * The audit event (proto/schemas/audit-event.json) of an operator acting
 * through phrctl (actor kind operator, user agent phrctl): |action| on
 * |type| |id| (of org |org_id|, may be NULL) with a fresh id in |event_id|
 * (37 bytes). Takes |details| (may be NULL). Caller frees; NULL on failure.
 */
char *ctl_audit_json(const char *service, const char *action, const char *type, const char *id,
                     const char *org_id, json_object *details, char *event_id);

/* Prints |o| as one line of JSON on stdout. */
void ctl_print_json(json_object *o);

/*
 * One h2c request to service |svc_idx| (CFG_SVC_*) at cfg->host/port: |method|
 * |path| with |body| (NULL: none). With |caller| set, sends the service
 * credential of service |caller| (secret svc_<caller>.key) as x-phr-caller and
 * x-phr-credential. *status gets the HTTP status, |out| the body (truncated,
 * NUL-terminated). PHR_OK when an answer came, PHR_EUNAVAIL otherwise (the
 * reason in |out|).
 */
int ctl_http(const cfg_t *cfg, int svc_idx, const char *method, const char *path,
             const char *caller, const char *body, int timeout_ms, int *status, char *out,
             size_t outlen);

/* The verbs; |argv| starts after the verb's first word ("org", "status", "retention"). */
int ctl_org_main(int argc, char **argv);
int ctl_status_main(int argc, char **argv);
int ctl_retention_main(int argc, char **argv);
int ctl_keys_main(int argc, char **argv); /* keys.c; argv starts at status|rotate|... */
/* migrate.c; argv starts at the service */
int ctl_migrate_main(int argc, char **argv);

#endif
