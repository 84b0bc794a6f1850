/*
 * status.c - phrctl status [--json]: one look at the stack.
 *
 *   services      GET /readyz of each service over h2c (PHR_<SVC>_HOST/PORT)
 *   outbox        per service database: pending rows (not sent, not dead), dead
 *                 rows, the age of the oldest pending row
 *   notifications the delivery queue: queued, sending, dead, oldest queued age
 *   backup        the newest complete generation ($PHR_BACKUP_DIR), its age, the count
 *   audit         the chain head seq and the last signed checkpoint (seq, age)
 *
 * Read-only; each database is read with the service's own role. Exit codes: 0 every
 * service ready and every database answered, 8 something is not (the report still
 * printed), 1 error, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup.h"
#include "ctl.h"
#include "err.h"

#define CTL_STATUS_TIMEOUT_MS 3000
#define CTL_STATUS_GENS 4096

/* A number column, or JSON null when SQL NULL. */
static json_object *
ctl_status_num(PGresult *res, int col)
{
    if (PQgetisnull(res, 0, col)) {
        return NULL;
    }
    return json_object_new_int64(strtoll(PQgetvalue(res, 0, col), NULL, 10));
}

/* Runs a one-row |sql| on |conn| and names its columns |cols| in a new object. */
static json_object *
ctl_status_row(PGconn *conn, const char *sql, const char *const *cols, int ncols)
{
    PGresult *res = NULL;

    if (conn == NULL || ctl_exec(conn, sql, 0, NULL, &res) != PHR_OK) {
        return NULL;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != ncols) {
        PQclear(res);
        return NULL;
    }
    json_object *o = json_object_new_object();
    for (int i = 0; i < ncols; i++) {
        json_object_object_add(o, cols[i], ctl_status_num(res, i));
    }
    PQclear(res);
    return o;
}

static json_object *
ctl_status_service(const cfg_t *cfg, int idx, int *bad)
{
    char body[1024];
    int status = 0;
    json_object *o = json_object_new_object();

    int rc = ctl_http(cfg, idx, "GET", "/readyz", NULL, NULL, CTL_STATUS_TIMEOUT_MS, &status, body,
                      sizeof(body));
    const char *state = rc != PHR_OK ? "unreachable" : status == 200 ? "ready" : "not_ready";
    json_object_object_add(o, "status", json_object_new_string(state));
    json_object_object_add(o, "http_status", rc == PHR_OK ? json_object_new_int(status) : NULL);
    json_object *checks = rc == PHR_OK ? json_tokener_parse(body) : NULL;
    json_object *c = NULL;
    if (checks != NULL && json_object_object_get_ex(checks, "checks", &c)) {
        json_object_object_add(o, "checks", json_object_get(c));
    }
    json_object_put(checks);
    if (rc != PHR_OK) {
        json_object_object_add(o, "error", json_object_new_string(body));
    }
    if (status != 200) {
        *bad = 1;
    }
    return o;
}

/* Seconds since the generation |name| ("20261126T211800+0900") was taken. */
static long long
ctl_status_gen_age(const char *name)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(name, "%4d%2d%2dT%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6) {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm) - (time_t)9 * 3600;
    return (long long)(time(NULL) - t);
}

static json_object *
ctl_status_backup(void)
{
    bk_env_t env;
    json_object *o = json_object_new_object();

    if (bk_env_load(&env) != PHR_OK) {
        json_object_object_add(o, "error", json_object_new_string("backup environment invalid"));
        return o;
    }
    char(*names)[BK_GEN_LEN] = calloc(CTL_STATUS_GENS, BK_GEN_LEN);
    int n = names != NULL ? bk_list(&env, names, CTL_STATUS_GENS) : 0;
    json_object_object_add(o, "dir", json_object_new_string(env.dir));
    json_object_object_add(o, "generations", json_object_new_int(n));
    json_object_object_add(o, "keep", json_object_new_int(env.keep));
    json_object_object_add(o, "last_generation", n > 0 ? json_object_new_string(names[0]) : NULL);
    json_object_object_add(o, "last_age_s",
                           n > 0 ? json_object_new_int64(ctl_status_gen_age(names[0])) : NULL);
    free(names);
    return o;
}

/* The report; *bad set when a service or a database did not answer. */
static json_object *
ctl_status_collect(int *bad)
{
    static const char outbox_sql[] =
        "SELECT count(*) FILTER (WHERE sent_at IS NULL AND dead_at IS NULL), "
        "count(*) FILTER (WHERE dead_at IS NOT NULL), "
        "floor(extract(epoch FROM now() - min(created_at) "
        "FILTER (WHERE sent_at IS NULL AND dead_at IS NULL)))::bigint FROM outbox";
    static const char *const outbox_cols[] = {"pending", "dead", "oldest_pending_age_s"};
    static const char queue_sql[] =
        "SELECT count(*) FILTER (WHERE status = 'queued'), "
        "count(*) FILTER (WHERE status = 'sending'), count(*) FILTER (WHERE status = 'dead'), "
        "floor(extract(epoch FROM now() - min(created_at) "
        "FILTER (WHERE status = 'queued')))::bigint FROM notifications";
    static const char *const queue_cols[] = {"queued", "sending", "dead", "oldest_queued_age_s"};
    static const char audit_sql[] =
        "SELECT (SELECT max(seq) FROM audit_events), c.seq, "
        "floor(extract(epoch FROM now() - c.signed_at))::bigint "
        "FROM (SELECT 1) one LEFT JOIN (SELECT seq, signed_at FROM checkpoints "
        "ORDER BY seq DESC LIMIT 1) c ON true";
    static const char *const audit_cols[] = {"head_seq", "last_checkpoint_seq",
                                             "last_checkpoint_age_s"};
    json_object *report = json_object_new_object();
    json_object *services = json_object_new_object();
    json_object *outbox = json_object_new_object();
    json_object *queue = NULL, *audit = NULL;
    cfg_t cfg;

    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        const char *svc = cfg_service_name(i);
        if (ctl_cfg(&cfg, svc) != PHR_OK) {
            *bad = 1;
            continue;
        }
        json_object_object_add(services, svc, ctl_status_service(&cfg, i, bad));
        PGconn *conn = ctl_pg_connect(&cfg, svc);
        json_object *ob = ctl_status_row(conn, outbox_sql, outbox_cols, 3);
        if (ob == NULL) {
            *bad = 1;
        }
        json_object_object_add(outbox, svc, ob);
        if (i == CFG_SVC_NOTIFICATION &&
            (queue = ctl_status_row(conn, queue_sql, queue_cols, 4)) == NULL) {
            *bad = 1;
        }
        if (i == CFG_SVC_AUDIT &&
            (audit = ctl_status_row(conn, audit_sql, audit_cols, 3)) == NULL) {
            *bad = 1;
        }
        PQfinish(conn);
    }
    json_object_object_add(report, "ok", json_object_new_boolean(!*bad));
    json_object_object_add(report, "services", services);
    json_object_object_add(report, "outbox", outbox);
    json_object_object_add(report, "notifications", queue);
    json_object_object_add(report, "backup", ctl_status_backup());
    json_object_object_add(report, "audit", audit);
    return report;
}

/* |key| of |o| as text, "-" when absent or null. */
static const char *
ctl_status_s(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL) {
        return "-";
    }
    return json_object_get_string(v);
}

static void
ctl_status_print(json_object *r)
{
    json_object *services, *outbox, *v;

    json_object_object_get_ex(r, "services", &services);
    json_object_object_get_ex(r, "outbox", &outbox);
    printf("%s\n", json_object_get_boolean(json_object_object_get(r, "ok")) ? "ok" : "DEGRADED");
    for (int i = 0; i < CFG_SVC_COUNT; i++) {
        const char *svc = cfg_service_name(i);
        json_object *s = json_object_object_get_ex(services, svc, &v) ? v : NULL;
        json_object *ob = json_object_object_get_ex(outbox, svc, &v) ? v : NULL;
        printf("%-13s %-11s outbox pending %s dead %s oldest %ss\n", svc, ctl_status_s(s, "status"),
               ctl_status_s(ob, "pending"), ctl_status_s(ob, "dead"),
               ctl_status_s(ob, "oldest_pending_age_s"));
    }
    json_object *q = json_object_object_get(r, "notifications");
    printf("notifications queued %s sending %s dead %s oldest %ss\n", ctl_status_s(q, "queued"),
           ctl_status_s(q, "sending"), ctl_status_s(q, "dead"),
           ctl_status_s(q, "oldest_queued_age_s"));
    json_object *b = json_object_object_get(r, "backup");
    printf("backup        last %s age %ss (%s of %s generations kept)\n",
           ctl_status_s(b, "last_generation"), ctl_status_s(b, "last_age_s"),
           ctl_status_s(b, "generations"), ctl_status_s(b, "keep"));
    json_object *a = json_object_object_get(r, "audit");
    printf("audit         head seq %s, last checkpoint seq %s age %ss\n",
           ctl_status_s(a, "head_seq"), ctl_status_s(a, "last_checkpoint_seq"),
           ctl_status_s(a, "last_checkpoint_age_s"));
    fflush(stdout);
}

int
ctl_status_main(int argc, char **argv)
{
    int as_json = 0, bad = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else {
            fprintf(stderr, "usage: phrctl status [--json]\n");
            return CTL_EXIT_USAGE;
        }
    }
    json_object *r = ctl_status_collect(&bad);
    if (as_json) {
        ctl_print_json(r);
    } else {
        ctl_status_print(r);
    }
    json_object_put(r);
    return bad ? CTL_EXIT_DEGRADED : CTL_EXIT_OK;
}
