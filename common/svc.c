#include "svc.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aev.h"
#include "err.h"
#include "log.h"
#include "metrics.h"

#define SVC_KEY_MAX 128
#define SVC_DB_QUEUE 1024

struct svc {
    const svc_def_t *def;
    cfg_t cfg;
    struct event_base *base;
    h2s_server_t *srv;
    db_pool_t *db;
    kv_t *kv;
    sess_reader_t *sessions; /* session lookups on |kv| */
    workq_t *wq;
    hcli_t *peers[CFG_SVC_COUNT];
    outbox_t *outbox;
    char keys[CFG_SVC_COUNT][SVC_KEY_MAX];
    struct event *sigterm, *sigint, *log_timer;
    int draining;
    void *data;
};

/* One authenticated call in flight: the route and, for sessions, a copy of the record. */
typedef struct {
    svc_t *svc;
    const svc_route_t *route;
    h2s_req_t *req;
    sess_t sess;
} svc_call_t;

const cfg_t *
svc_cfg(const svc_t *svc)
{
    return &svc->cfg;
}

struct event_base *
svc_base(const svc_t *svc)
{
    return svc->base;
}

db_pool_t *
svc_db(const svc_t *svc)
{
    return svc->db;
}

kv_t *
svc_kv(const svc_t *svc)
{
    return svc->kv;
}

workq_t *
svc_workq(const svc_t *svc)
{
    return svc->wq;
}

hcli_t *
svc_peer(const svc_t *svc, int idx)
{
    return idx >= 0 && idx < CFG_SVC_COUNT ? svc->peers[idx] : NULL;
}

outbox_t *
svc_outbox(const svc_t *svc)
{
    return svc->outbox;
}

void
svc_set_data(svc_t *svc, void *data)
{
    svc->data = data;
}

void *
svc_data(const svc_t *svc)
{
    return svc->data;
}

/* ---- responses ---------------------------------------------------------- */

int
svc_respond_error(h2s_req_t *req, int rc, const char *detail)
{
    switch (rc) {
    case PHR_EUNAVAIL:
    case PHR_ETIMEDOUT:
    case PHR_EFULL:
        h2s_req_add_header(req, "retry-after", "1");
        return h2s_respond_problem(req, 503, "dependency_unavailable",
                                   detail ? detail : "a dependency is unavailable; retry later",
                                   NULL);
    case PHR_ENOTFOUND:
        return h2s_respond_problem(req, 404, "not_found", detail ? detail : "no such resource",
                                   NULL);
    case PHR_ECONFLICT:
        return h2s_respond_problem(req, 409, "conflict", detail ? detail : "conflict", NULL);
    case PHR_EDENIED:
        return h2s_respond_problem(req, 403, "forbidden", detail ? detail : "not allowed", NULL);
    case PHR_EINVAL:
        return h2s_respond_problem(req, 400, "invalid_request", detail ? detail : "invalid", NULL);
    default:
        return h2s_respond_problem(req, 500, "internal_error", "the request could not be completed",
                                   NULL);
    }
}

int
svc_read_json(h2s_req_t *req, const jx_field_t *fields, size_t n, json_object **out)
{
    const char *ct = h2s_req_header(req, "content-type");
    jx_errors_t errs = {.n = 0};
    size_t len;
    const char *body = h2s_req_body(req, &len);
    json_object *obj = NULL;

    *out = NULL;
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';')) {
        h2s_respond_problem(req, 415, "unsupported_media_type", "the body must be application/json",
                            NULL);
        return PHR_EINVAL;
    }
    if (jx_parse(body, len, 16, &obj, &errs) != PHR_OK) {
        h2s_respond_problem(req, 400, "invalid_json", errs.n ? errs.items[0].message : "invalid",
                            &errs);
        return PHR_EINVAL;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        jx_error_add(&errs, "", "the body must be a JSON object");
        h2s_respond_problem(req, 400, "invalid_request", "the body must be a JSON object", &errs);
        return PHR_EINVAL;
    }
    if (jx_validate(obj, fields, n, 0, "", &errs) != PHR_OK) {
        json_object_put(obj);
        h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields", &errs);
        return PHR_EINVAL;
    }
    *out = obj;
    return PHR_OK;
}

/* ---- health ------------------------------------------------------------- */

static void
svc_livez(h2s_req_t *req, void *ud)
{
    static const char body[] = "{\"status\":\"alive\"}";
    h2s_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

static void
svc_readyz(h2s_req_t *req, void *ud)
{
    svc_t *svc = ud;
    int db_ok = db_pool_ready(svc->db);
    int kv_ok = kv_ready(svc->kv);
    int ready = db_ok && kv_ok && !svc->draining;
    const char *pending = db_pool_pending_migration(svc->db);
    json_object *o = json_object_new_object();
    json_object *checks = json_object_new_object();
    const char *pg = db_ok ? "ok" : pending != NULL ? "migration_pending" : "down";

    json_object_object_add(checks, "postgres", json_object_new_string(pg));
    if (pending != NULL) { /* an owner migration: `phrctl migrate <service>` (db_migrate.h) */
        json_object_object_add(o, "pending_migration", json_object_new_string(pending));
    }
    json_object_object_add(checks, "redis", json_object_new_string(kv_ok ? "ok" : "down"));
    json_object_object_add(checks, "draining", json_object_new_boolean(svc->draining));
    json_object_object_add(o, "status", json_object_new_string(ready ? "ready" : "not_ready"));
    json_object_object_add(o, "checks", checks);
    h2s_respond_json(req, ready ? 200 : 503, o);
}

static void
svc_gauges(char **out, size_t *len, size_t *cap, void *ud)
{
    svc_t *svc = ud;
    db_stats_t ds;
    kv_stats_t ks;
    const char *name = svc->cfg.service_name;

    db_pool_stats(svc->db, &ds);
    kv_stats(svc->kv, &ks);
    metrics_appendf(out, len, cap,
                    "# TYPE phr_pg_pool_connections gauge\n"
                    "phr_pg_pool_connections{service=\"%s\",state=\"connected\"} %d\n"
                    "phr_pg_pool_connections{service=\"%s\",state=\"busy\"} %d\n"
                    "phr_pg_pool_connections{service=\"%s\",state=\"size\"} %d\n"
                    "# TYPE phr_pg_pool_waiting gauge\n"
                    "phr_pg_pool_waiting{service=\"%s\"} %d\n"
                    "# TYPE phr_pg_queries_total counter\n"
                    "phr_pg_queries_total{service=\"%s\"} %lu\n"
                    "# TYPE phr_pg_errors_total counter\n"
                    "phr_pg_errors_total{service=\"%s\"} %lu\n"
                    "# TYPE phr_redis_connected gauge\n"
                    "phr_redis_connected{service=\"%s\"} %d\n"
                    "# TYPE phr_redis_errors_total counter\n"
                    "phr_redis_errors_total{service=\"%s\"} %lu\n"
                    "# TYPE phr_redis_timeouts_total counter\n"
                    "phr_redis_timeouts_total{service=\"%s\"} %lu\n"
                    "# TYPE phr_workq_pending gauge\n"
                    "phr_workq_pending{service=\"%s\"} %d\n"
                    "# TYPE phr_workq_dropped_total counter\n"
                    "phr_workq_dropped_total{service=\"%s\"} %lu\n"
                    "# TYPE phr_http_connections gauge\n"
                    "phr_http_connections{service=\"%s\"} %zu\n"
                    "# TYPE phr_ready gauge\n"
                    "phr_ready{service=\"%s\"} %d\n",
                    name, ds.connected, name, ds.busy, name, ds.size, name, ds.waiting, name,
                    ds.queries, name, ds.errors, name, ks.connected, name, ks.errors, name,
                    ks.timeouts, name, workq_pending(svc->wq), name, workq_dropped(svc->wq), name,
                    h2s_connections(svc->srv), name,
                    db_pool_ready(svc->db) && kv_ready(svc->kv) && !svc->draining);
}

static void
svc_metrics(h2s_req_t *req, void *ud)
{
    svc_t *svc = ud;
    size_t len;
    char *text = metrics_render(svc->cfg.service_name, &len);

    if (text == NULL) {
        h2s_respond_problem(req, 500, "internal_error", "out of memory", NULL);
        return;
    }
    h2s_respond(req, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

/* GET /internal/v1/status: readiness and backlogs, for phrctl status and peers. */
static void
svc_status(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    db_stats_t ds;
    kv_stats_t ks;
    json_object *o = json_object_new_object();
    json_object *db = json_object_new_object();
    json_object *kv = json_object_new_object();

    db_pool_stats(svc->db, &ds);
    kv_stats(svc->kv, &ks);
    json_object_object_add(db, "ready", json_object_new_boolean(db_pool_ready(svc->db)));
    json_object_object_add(db, "connected", json_object_new_int(ds.connected));
    json_object_object_add(db, "busy", json_object_new_int(ds.busy));
    json_object_object_add(db, "waiting", json_object_new_int(ds.waiting));
    json_object_object_add(kv, "ready", json_object_new_boolean(kv_ready(svc->kv)));
    json_object_object_add(kv, "timeouts", json_object_new_int64((int64_t)ks.timeouts));
    json_object_object_add(o, "service", json_object_new_string(svc->cfg.service_name));
    json_object_object_add(o, "draining", json_object_new_boolean(svc->draining));
    json_object_object_add(o, "postgres", db);
    json_object_object_add(o, "redis", kv);
    json_object_object_add(o, "workq_pending", json_object_new_int(workq_pending(svc->wq)));
    outbox_stats_t os;
    outbox_stats(svc->outbox, &os);
    json_object_object_add(o, "outbox_backlog", json_object_new_int64(os.backlog));
    json_object_object_add(o, "connections",
                           json_object_new_int64((int64_t)h2s_connections(svc->srv)));
    json_object_object_add(o, "inflight", json_object_new_int64((int64_t)h2s_inflight(svc->srv)));
    h2s_respond_json(req, 200, o);
}

static const svc_route_t svc_builtin_routes[] = {
    {"GET", "/internal/v1/status", svc_status, SVC_INTERNAL, 0},
};
static const svc_routes_t svc_builtin = SVC_ROUTES(svc_builtin_routes);

/* Routes of |def| plus the built-in ones. */
static size_t
svc_count_routes(const svc_def_t *def)
{
    size_t n = svc_builtin.n;

    for (size_t i = 0; i < def->nroute_sets; i++) {
        n += def->route_sets[i]->n;
    }
    return n;
}

/* ---- authentication of routes ------------------------------------------- */

/* The CFG_SVC_* index of the peer whose credential |req| carries, or -1. */
static int
svc_check_credential(svc_t *svc, h2s_req_t *req)
{
    const char *caller = h2s_req_header(req, "x-phr-caller");
    const char *cred = h2s_req_header(req, "x-phr-credential");
    int idx = cfg_service_index(caller);

    if (idx < 0 || cred == NULL) {
        return -1;
    }
    size_t n = strlen(svc->keys[idx]);
    if (n == 0 || strlen(cred) != n || CRYPTO_memcmp(cred, svc->keys[idx], n) != 0) {
        return -1;
    }
    return idx;
}

static void
svc_session_done(int rc, const sess_t *s, void *ud)
{
    svc_call_t *call = ud;

    if (h2s_req_closed(call->req)) {
        h2s_respond(call->req, 499, NULL, NULL, 0); /* frees the orphaned request */
        return;
    }
    if (rc == PHR_ENOTFOUND) {
        h2s_req_add_header(call->req, "www-authenticate", "Bearer error=\"invalid_token\"");
        h2s_respond_problem(call->req, 401, "session_expired",
                            "the session does not exist or has expired; log in again", NULL);
        return;
    }
    if (rc != PHR_OK) {
        metrics_dependency_error("redis");
        svc_respond_error(call->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (s->must_change_password && !(call->route->flags & SVC_ALLOW_MUST_CHANGE)) {
        h2s_respond_problem(call->req, 403, "password_change_required",
                            "the password must be changed before anything else", NULL);
        return;
    }
    if (s->mfa_enrollment_required && !(call->route->flags & SVC_ALLOW_MFA_ENROLL)) {
        h2s_respond_problem(call->req, 403, "mfa_enrollment_required",
                            "the organisation requires a second factor: enrol one first", NULL);
        return;
    }
    call->sess = *s;
    call->route->handler(call->svc, call->req, &call->sess);
}

/* The h2s handler of every service route; |ud| is the svc_call template. */
static void
svc_route_handler(h2s_req_t *req, void *ud)
{
    svc_call_t *tmpl = ud;
    svc_t *svc = tmpl->svc;
    const svc_route_t *route = tmpl->route;

    if ((route->flags & SVC_NEEDS_DB) && !db_pool_ready(svc->db)) {
        metrics_dependency_error("postgres");
        svc_respond_error(req, PHR_EUNAVAIL, "the database is unavailable; retry later");
        return;
    }
    if (route->flags & SVC_INTERNAL) {
        int caller = svc_check_credential(svc, req);
        if (caller < 0) {
            h2s_respond_problem(req, 401, "service_credential_required",
                                "a valid service credential is required", NULL);
            return;
        }
        if ((route->flags & SVC_CALLERS_MASK) != 0 && !(route->flags & SVC_CALLER(caller))) {
            h2s_respond_problem(req, 403, "caller_not_allowed",
                                "this service may not call this route", NULL);
            return;
        }
        route->handler(svc, req, NULL);
        return;
    }
    if (!(route->flags & SVC_SESSION)) {
        route->handler(svc, req, NULL);
        return;
    }
    const char *auth = h2s_req_header(req, "authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
        h2s_req_add_header(req, "www-authenticate", "Bearer");
        h2s_respond_problem(req, 401, "unauthenticated",
                            "an Authorization: Bearer session token is required", NULL);
        return;
    }
    svc_call_t *call = h2s_req_alloc(req, sizeof(*call));
    if (call == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    *call = *tmpl;
    call->req = req;
    int rc = sess_lookup(svc->sessions, auth + 7, svc->cfg.session_idle_s, svc_session_done, call);
    if (rc != PHR_OK) {
        metrics_dependency_error("redis");
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

/* ---- start-up and shutdown ---------------------------------------------- */

static void
svc_drained(void *ud)
{
    svc_t *svc = ud;

    log_info("drained; exiting");
    event_base_loopbreak(svc->base);
}

static void
svc_on_signal(evutil_socket_t sig, short what, void *ud)
{
    svc_t *svc = ud;

    if (svc->draining) {
        return;
    }
    log_info("signal %d: draining for up to %d ms", (int)sig, svc->cfg.drain_timeout_ms);
    svc->draining = 1;
    h2s_shutdown(svc->srv, svc->cfg.drain_timeout_ms, svc_drained, svc);
}

static void
svc_log_tick(evutil_socket_t fd, short what, void *ud)
{
    log_flush();
}

static int
svc_load_secrets(svc_t *svc, char *pg_password, size_t pglen, char *redis_password, size_t redislen)
{
    char name[64];
    int rc;

    snprintf(name, sizeof(name), "pg_%s.password", svc->cfg.service_name);
    if ((rc = cfg_read_secret(&svc->cfg, name, pg_password, pglen)) != PHR_OK) {
        log_error("secret %s/%s: %s", svc->cfg.secrets_dir, name, phr_err_str(rc));
        return rc;
    }
    if ((rc = cfg_read_secret(&svc->cfg, "redis.password", redis_password, redislen)) != PHR_OK) {
        log_error("secret %s/redis.password: %s", svc->cfg.secrets_dir, phr_err_str(rc));
        return rc;
    }
    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        snprintf(name, sizeof(name), "svc_%s.key", cfg_service_name(i));
        if ((rc = cfg_read_secret(&svc->cfg, name, svc->keys[i], SVC_KEY_MAX)) != PHR_OK) {
            log_error("secret %s/%s: %s", svc->cfg.secrets_dir, name, phr_err_str(rc));
            return rc;
        }
    }
    return PHR_OK;
}

static int
svc_add_routes(svc_t *svc, svc_call_t *tmpls)
{
    int rc = h2s_route(svc->srv, "GET", "/livez", svc_livez, svc, 0);
    if (rc == PHR_OK) {
        rc = h2s_route(svc->srv, "GET", "/readyz", svc_readyz, svc, 0);
    }
    if (rc == PHR_OK) {
        rc = h2s_route(svc->srv, "GET", "/metrics", svc_metrics, svc, 0);
    }
    size_t k = 0;
    for (size_t set = 0; rc == PHR_OK && set <= svc->def->nroute_sets; set++) {
        const svc_routes_t *rs = set == 0 ? &svc_builtin : svc->def->route_sets[set - 1];
        for (size_t i = 0; rc == PHR_OK && i < rs->n; i++, k++) {
            const svc_route_t *r = &rs->routes[i];
            tmpls[k].svc = svc;
            tmpls[k].route = r;
            rc = h2s_route(svc->srv, r->method, r->pattern, svc_route_handler, &tmpls[k],
                           r->max_body);
            if (rc != PHR_OK) {
                log_error("route %s %s: %s", r->method, r->pattern, phr_err_str(rc));
            }
        }
    }
    return rc;
}

/* The relay of this service's outbox: audit events to audit, e-mails and SMS to notification. */
static int
svc_start_outbox(svc_t *svc)
{
    outbox_route_t routes[3];
    size_t n = 0;

    if (svc->cfg.service != CFG_SVC_AUDIT) {
        routes[n++] =
            (outbox_route_t){"audit", svc->peers[CFG_SVC_AUDIT], "/internal/v1/events", 1};
    }
    if (svc->cfg.service != CFG_SVC_NOTIFICATION) {
        routes[n++] = (outbox_route_t){"notification", svc->peers[CFG_SVC_NOTIFICATION],
                                       "/internal/v1/notifications", 0};
    }
    if (svc->cfg.service == CFG_SVC_AUTH) {
        routes[n++] = (outbox_route_t){"records", svc->peers[CFG_SVC_RECORDS],
                                       "/internal/v1/patients/{patient_id}/withdrawal", 0};
    }
    outbox_config_t oc = {
        .routes = routes,
        .nroutes = n,
        .poll_ms = 1000,
        .batch_max = AEV_BATCH_MAX,
        .rows_max = 100,
        .backoff_max_ms = 60000,
    };
    svc->outbox = outbox_create(svc->base, svc->db, &oc);
    return svc->outbox != NULL ? PHR_OK : PHR_ENOMEM;
}

static int
svc_start(svc_t *svc, svc_call_t *tmpls)
{
    char pg_password[SVC_KEY_MAX], redis_password[SVC_KEY_MAX], conninfo[512];
    const cfg_t *c = &svc->cfg;

    if (svc_load_secrets(svc, pg_password, sizeof(pg_password), redis_password,
                         sizeof(redis_password)) != PHR_OK) {
        return PHR_EINVAL;
    }
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=%d dbname=phr_%s user=phr_%s password=%s application_name=phr-%s",
             c->pg_host, c->pg_port, c->service_name, c->service_name, pg_password,
             c->service_name);
    db_config_t dbc = {
        .conninfo = conninfo,
        .size = c->pg_pool_size,
        .statement_timeout_ms = c->pg_statement_timeout_ms,
        .connect_timeout_ms = c->pg_connect_timeout_ms,
        .ping_interval_ms = c->pg_ping_interval_ms,
        .ping_timeout_ms = c->pg_ping_timeout_ms,
        .keepalive_s = c->pg_keepalive_s,
        .queue_max = SVC_DB_QUEUE,
        .migrations = svc->def->migrations,
        .lock_name = c->service_name,
    };
    kv_config_t kvc = {
        .host = c->redis_host,
        .port = c->redis_port,
        .password = redis_password,
        .timeout_ms = c->redis_timeout_ms,
    };
    h2s_limits_t lim = {
        .max_header_list = (size_t)c->max_header_list,
        .max_body = (size_t)c->max_body,
        .max_streams = (uint32_t)c->max_streams,
        .output_cap = (size_t)c->output_cap,
        .idle_timeout_ms = c->idle_timeout_ms,
        .request_timeout_ms = c->request_timeout_ms,
        .write_timeout_ms = c->write_timeout_ms,
    };
    svc->db = db_pool_create(svc->base, &dbc);
    svc->kv = kv_create(svc->base, &kvc);
    svc->sessions = svc->kv != NULL ? sess_reader_create(svc->kv) : NULL;
    svc->wq = workq_create(svc->base, c->workers, c->worker_queue);
    svc->srv = h2s_server_create(svc->base, &lim);
    explicit_bzero(pg_password, sizeof(pg_password));
    explicit_bzero(conninfo, sizeof(conninfo));
    explicit_bzero(redis_password, sizeof(redis_password));
    if (svc->db == NULL || svc->kv == NULL || svc->sessions == NULL || svc->wq == NULL ||
        svc->srv == NULL) {
        log_error("out of memory at start-up");
        return PHR_ENOMEM;
    }
    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        if (i == c->service) {
            continue;
        }
        hcli_config_t hc = {
            .host = c->host[i],
            .port = c->port[i],
            .caller = c->service_name,
            .credential = svc->keys[c->service],
            .timeout_ms = c->call_timeout_ms,
        };
        if ((svc->peers[i] = hcli_create(svc->base, &hc)) == NULL) {
            return PHR_ENOMEM;
        }
    }
    if (svc_start_outbox(svc) != PHR_OK) {
        return PHR_ENOMEM;
    }
    if (svc_add_routes(svc, tmpls) != PHR_OK) {
        return PHR_EINVAL;
    }
    if (svc->def->init != NULL && svc->def->init(svc) != PHR_OK) {
        log_error("service initialisation failed");
        return PHR_EINVAL;
    }
    if (c->tls_cert[0] != '\0' && h2s_use_tls(svc->srv, c->tls_cert, c->tls_key) != PHR_OK) {
        return PHR_EINVAL;
    }
    if (h2s_listen(svc->srv, c->listen_host, c->port[c->service]) != PHR_OK) {
        return PHR_EIO;
    }
    svc->sigterm = evsignal_new(svc->base, SIGTERM, svc_on_signal, svc);
    svc->sigint = evsignal_new(svc->base, SIGINT, svc_on_signal, svc);
    if (svc->sigterm == NULL || svc->sigint == NULL) {
        return PHR_ENOMEM;
    }
    event_add(svc->sigterm, NULL);
    event_add(svc->sigint, NULL);
    svc->log_timer = event_new(svc->base, -1, EV_PERSIST, svc_log_tick, svc);
    if (svc->log_timer == NULL) {
        return PHR_ENOMEM;
    }
    struct timeval tick = {0, (suseconds_t)50 * 1000};
    event_add(svc->log_timer, &tick);
    metrics_set_gauges(svc_gauges, svc);
    log_info("listening on %s:%d (%s)", c->listen_host, c->port[c->service],
             c->tls_cert[0] ? "TLS, ALPN h2" : "h2c");
    return PHR_OK;
}

static void
svc_stop(svc_t *svc)
{
    if (svc->def->fini != NULL) {
        svc->def->fini(svc);
    }
    metrics_set_gauges(NULL, NULL);
    if (svc->sigterm != NULL) {
        event_free(svc->sigterm);
    }
    if (svc->sigint != NULL) {
        event_free(svc->sigint);
    }
    if (svc->log_timer != NULL) {
        event_free(svc->log_timer);
    }
    /* Dependencies first: their pending callbacks answer requests while the server exists. */
    outbox_free(svc->outbox);
    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        hcli_free(svc->peers[i]);
    }
    workq_free(svc->wq);
    kv_free(svc->kv);
    sess_reader_free(svc->sessions); /* after kv_free: it answers the lookups in flight */
    db_pool_free(svc->db);
    h2s_server_free(svc->srv);
    explicit_bzero(svc->keys, sizeof(svc->keys));
}

int
svc_main(const svc_def_t *def, int argc, char **argv)
{
    static svc_t svc;
    char err[256];

    if (argc > 1 && strcmp(argv[1], "--help-config") == 0) {
        cfg_print_help();
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: phr-%s [--help-config]\n", def->name);
        return 2;
    }
    if (cfg_load(&svc.cfg, def->name, err, sizeof(err)) != PHR_OK) {
        fprintf(stderr, "phr-%s: configuration error: %s\n", def->name, err);
        return 2;
    }
    log_init(def->name, svc.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    svc.def = def;
    svc.base = event_base_new();
    svc_call_t *tmpls = calloc(svc_count_routes(def), sizeof(*tmpls));
    if (svc.base == NULL || tmpls == NULL) {
        log_error("out of memory at start-up");
        free(tmpls);
        return 1;
    }
    int rc = svc_start(&svc, tmpls);
    if (rc == PHR_OK) {
        event_base_dispatch(svc.base);
    }
    svc_stop(&svc);
    event_base_free(svc.base);
    free(tmpls);
    log_info("stopped");
    log_flush();
    return rc == PHR_OK ? 0 : 1;
}

void
svc_client_ip(h2s_req_t *req, char *out, size_t cap)
{
    const char *xff = h2s_req_header(req, "x-forwarded-for");
    const char *src = xff != NULL && xff[0] != '\0' ? xff : h2s_req_peer(req);
    size_t n = 0;

    /*
     * The gateway appends the address it saw ($proxy_add_x_forwarded_for):
     * only the last entry is trustworthy; earlier ones are whatever the
     * client sent and must not choose the rate-limit bucket.
     */
    if (xff != NULL && src == xff) {
        const char *last = strrchr(xff, ',');
        src = last != NULL ? last + 1 : xff;
    }

    if (src == NULL) {
        src = "";
    }
    while (src[n] == ' ') {
        src++;
    }
    while (src[n] != '\0' && src[n] != ',' && src[n] != ' ' && n + 1 < cap) {
        n++;
    }
    memcpy(out, src, n);
    out[n] = '\0';
    if (xff == NULL || xff[0] == '\0') {
        char *colon = strrchr(out, ':'); /* "ip:port" of the peer */
        if (colon != NULL && strchr(out, ':') == colon) {
            *colon = '\0';
        }
    }
    if (strspn(out, "0123456789abcdefABCDEF.:[]") != strlen(out)) {
        out[0] = '\0'; /* not an address: never echo it into keys or events */
    }
}
