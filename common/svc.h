/*
 * svc.h - what every service binary shares: start-up (config, secrets,
 * PostgreSQL pool with migrations, Redis, worker pool, peer clients, the
 * HTTP/2 server), the health endpoints (/livez, /readyz, /metrics),
 * authentication of routes (bearer session or service credential), and
 * graceful shutdown on SIGTERM (readyz turns 503, GOAWAY, drain, exit 0).
 */
#ifndef PHR_SVC_H
#define PHR_SVC_H

#include <stddef.h>

#include "config.h"
#include "db.h"
#include "h2s.h"
#include "hcli.h"
#include "jsonx.h"
#include "kv.h"
#include "outbox.h"
#include "session.h"
#include "workq.h"

typedef struct svc svc_t;

/* |sess| is the caller's session on SVC_SESSION routes (valid as long as |req|), else NULL. */
typedef void (*svc_handler_fn)(svc_t *svc, h2s_req_t *req, const sess_t *sess);

enum {
    SVC_PUBLIC = 0,                 /* no authentication */
    SVC_SESSION = 1 << 0,           /* Authorization: Bearer <session token> */
    SVC_INTERNAL = 1 << 1,          /* x-phr-caller + x-phr-credential of a peer service */
    SVC_NEEDS_DB = 1 << 2,          /* 503 while PostgreSQL is not ready */
    SVC_ALLOW_MUST_CHANGE = 1 << 3, /* callable by a session with must_change_password */
    SVC_ALLOW_MFA_ENROLL = 1 << 4   /* callable by a session with mfa_enrollment_required */
};

typedef struct {
    const char *method;
    const char *pattern;
    svc_handler_fn handler;
    int flags;
    size_t max_body; /* 0: the configured default */
} svc_route_t;

/*
 * On SVC_INTERNAL routes, flags may also name the peers allowed to call
 * (SVC_CALLER(CFG_SVC_AUDIT) | ...); with none named, any peer may.
 */
#define SVC_CALLER(service_idx) (1 << (16 + (service_idx)))
#define SVC_CALLERS_MASK (((1 << CFG_SVC_COUNT) - 1) << 16)

/* A module's routes; a service is the union of its modules' sets. */
typedef struct {
    const svc_route_t *routes;
    size_t n;
} svc_routes_t;

#define SVC_ROUTES(table)                                                                          \
    {                                                                                              \
        (table), sizeof(table) / sizeof((table)[0])                                                \
    }

typedef struct {
    const char *name; /* "auth", "records", "notification", "audit" */
    const db_migration_t *migrations;
    const svc_routes_t *const *route_sets;
    size_t nroute_sets;
    int (*init)(svc_t *svc);  /* optional, after the pools exist; PHR_OK or stop */
    void (*fini)(svc_t *svc); /* optional */
} svc_def_t;

/* Runs the service until SIGTERM/SIGINT. Returns the process exit code. */
int svc_main(const svc_def_t *def, int argc, char **argv);

const cfg_t *svc_cfg(const svc_t *svc);
struct event_base *svc_base(const svc_t *svc);
db_pool_t *svc_db(const svc_t *svc);
kv_t *svc_kv(const svc_t *svc);
workq_t *svc_workq(const svc_t *svc);
hcli_t *svc_peer(const svc_t *svc, int service_idx); /* CFG_SVC_*; NULL for itself */
outbox_t *svc_outbox(const svc_t *svc); /* outbox_kick it after committing outbox rows */
void svc_set_data(svc_t *svc, void *data);
void *svc_data(const svc_t *svc);

/*
 * Reads the request body as a JSON object validated against |fields|.
 * On success returns PHR_OK and |*out| (caller puts it). Otherwise it has
 * already answered (415 wrong content type, 400 with errors[] naming the
 * fields) and returns PHR_EINVAL.
 */
int svc_read_json(h2s_req_t *req, const jx_field_t *fields, size_t n, json_object **out);

/*
 * Answers the problem matching error |rc|: PHR_EUNAVAIL/PHR_ETIMEDOUT 503
 * (Retry-After), PHR_ENOTFOUND 404, PHR_ECONFLICT 409, PHR_EDENIED 403,
 * PHR_EINVAL 400, PHR_EFULL 503, anything else 500.
 */
int svc_respond_error(h2s_req_t *req, int rc, const char *detail);

/*
 * The client's address: the last x-forwarded-for entry (the one the gateway
 * appended; earlier ones are the client's own claims), else the peer address
 * without port; "" when it is not an address.
 */
void svc_client_ip(h2s_req_t *req, char *out, size_t cap);

#endif
