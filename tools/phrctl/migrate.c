/*
 * migrate.c - phrctl migrate SERVICE [--json]: applies the service's pending migrations (the
 * ones embedded in this binary, the same as the service's) over an administrator connection,
 * owner migrations included (common/db_migrate.h), which the service role cannot apply
 * itself: e.g. audit's 006, which alters tables owned by the NOLOGIN role phr_audit_owner.
 *
 * The connection: PHR_PG_ADMIN, a libpq conninfo of a role that may SET ROLE to the service
 * role and to the owner roles (the PostgreSQL superuser, e.g. "host=/run/postgresql
 * user=postgres" or "host=db user=postgres passfile=/run/secrets/pg-admin/pgpass"); when
 * unset, libpq's defaults and PG* variables. The database is always phr_SERVICE. One
 * transaction under the service's advisory lock (the one the service migrates under): every
 * migration runs as the role that owns what it touches: a plain one as phr_SERVICE, an owner
 * one as its owner role (as phr_SERVICE when that role does not exist), each recorded in
 * schema_migrations as the service records it. A running service notices within seconds.
 *
 * Exit codes: 0 applied or up to date, 1 error (nothing applied), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "db_migrate.h"
#include "err.h"

extern const db_migration_t auth_migrations[];
extern const db_migration_t records_migrations[];
extern const db_migration_t notification_migrations[];
extern const db_migration_t audit_migrations[];

typedef struct {
    const char *name;
    const db_migration_t *migrations;
} ctl_mig_svc_t;

static const ctl_mig_svc_t ctl_mig_svcs[] = {
    {"auth", auth_migrations},
    {"records", records_migrations},
    {"notification", notification_migrations},
    {"audit", audit_migrations},
};

static int
ctl_migrate_usage(void)
{
    fprintf(stderr, "usage: phrctl migrate auth|records|notification|audit [--json]\n"
                    "       (connection: PHR_PG_ADMIN, a libpq conninfo of an administrator)\n");
    return CTL_EXIT_USAGE;
}

static PGconn *
ctl_migrate_connect(const char *db)
{
    const char *admin = getenv("PHR_PG_ADMIN");
    /* The conninfo first (expanded), then dbname again: the later value wins. */
    const char *const keys[] = {"dbname", "dbname", "application_name", NULL};
    const char *const vals[] = {admin != NULL ? admin : "", db, "phrctl-migrate", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);

    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "phrctl: cannot connect to %s as an administrator (PHR_PG_ADMIN): %s", db,
                PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs |sql| (several statements allowed). PHR_OK or PHR_EIO (printed). */
static int
ctl_migrate_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? PHR_OK : PHR_EIO;

    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: %s: %s", what, PQresultErrorMessage(res));
    }
    PQclear(res);
    return rc;
}

static int
ctl_migrate_applied(PGconn *conn, int version, int *applied)
{
    char v[16];
    const char *p[] = {v};
    PGresult *res = NULL;

    snprintf(v, sizeof(v), "%d", version);
    int rc = ctl_exec(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p, &res);
    if (rc == PHR_OK) {
        *applied = PQntuples(res) > 0;
        PQclear(res);
    }
    return rc;
}

/* The role |m| runs as into |as|: its owner role when marked and existing, else |svc_role|. */
static int
ctl_migrate_role(PGconn *conn, const db_migration_t *m, const char *svc_role, char *as, size_t len)
{
    char owner[DB_MIGRATE_ROLE_MAX];
    const char *p[] = {owner};
    PGresult *res = NULL;
    int marked = db_migrate_owner(m, owner, sizeof(owner));

    snprintf(as, len, "%s", svc_role);
    if (marked < 0) {
        fprintf(stderr, "phrctl: migration %s: malformed phr-migrate marker\n", m->name);
        return PHR_EINVAL;
    }
    if (marked == 0) {
        return PHR_OK;
    }
    if (ctl_exec(conn, "SELECT to_regrole($1) IS NOT NULL", 1, p, &res) != PHR_OK) {
        return PHR_EIO;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        snprintf(as, len, "%s", owner);
    }
    PQclear(res);
    return PHR_OK;
}

/* Applies |m| as |as| and records it as |set_svc| (SET LOCAL ROLE of the service role). */
static int
ctl_migrate_one(PGconn *conn, const db_migration_t *m, const char *as, const char *set_svc)
{
    char v[16];
    const char *p[] = {v, m->name};
    char *sql = db_migrate_as_role(m, as);

    if (sql == NULL) {
        return PHR_ENOMEM;
    }
    int rc = ctl_migrate_exec(conn, sql, m->name);
    free(sql);
    if (rc == PHR_OK) {
        rc = ctl_migrate_exec(conn, set_svc, "SET ROLE");
    }
    snprintf(v, sizeof(v), "%d", m->version);
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, p,
                      NULL);
    }
    return rc;
}

static int
ctl_migrate_run(PGconn *conn, const ctl_mig_svc_t *s, json_object *applied)
{
    char role[64], set_svc[96], as[DB_MIGRATE_ROLE_MAX];
    const char *lock[] = {s->name};
    int rc, done;

    snprintf(role, sizeof(role), "phr_%s", s->name);
    snprintf(set_svc, sizeof(set_svc), "SET LOCAL ROLE \"%s\"", role);
    rc = ctl_migrate_exec(conn, "BEGIN; SET LOCAL statement_timeout = 0", "BEGIN");
    if (rc == PHR_OK) {
        rc = ctl_migrate_exec(conn, set_svc, "SET ROLE (may this connection act as the service?)");
    }
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, lock, NULL);
    }
    if (rc == PHR_OK) {
        rc = ctl_migrate_exec(conn, DB_MIGRATE_TABLE_SQL, "schema_migrations");
    }
    for (const db_migration_t *m = s->migrations; rc == PHR_OK && m->sql != NULL; m++) {
        rc = ctl_migrate_applied(conn, m->version, &done);
        if (rc != PHR_OK || done) {
            continue;
        }
        rc = ctl_migrate_role(conn, m, role, as, sizeof(as));
        if (rc == PHR_OK) {
            rc = ctl_migrate_one(conn, m, as, set_svc);
        }
        if (rc == PHR_OK) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "version", json_object_new_int(m->version));
            json_object_object_add(o, "name", json_object_new_string(m->name));
            json_object_object_add(o, "as", json_object_new_string(as));
            json_object_array_add(applied, o);
        }
    }
    if (rc == PHR_OK) {
        return ctl_migrate_exec(conn, "COMMIT", "COMMIT");
    }
    ctl_migrate_exec(conn, "ROLLBACK", "ROLLBACK");
    return rc;
}

static const ctl_mig_svc_t *
ctl_migrate_find(const char *name)
{
    for (size_t k = 0; k < sizeof(ctl_mig_svcs) / sizeof(ctl_mig_svcs[0]); k++) {
        if (strcmp(name, ctl_mig_svcs[k].name) == 0) {
            return &ctl_mig_svcs[k];
        }
    }
    return NULL;
}

int
ctl_migrate_main(int argc, char **argv)
{
    const ctl_mig_svc_t *s = NULL;
    int as_json = 0;
    char db[64];

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (s != NULL || (s = ctl_migrate_find(argv[i])) == NULL) {
            return ctl_migrate_usage();
        }
    }
    if (s == NULL) {
        return ctl_migrate_usage();
    }
    snprintf(db, sizeof(db), "phr_%s", s->name);
    PGconn *conn = ctl_migrate_connect(db);
    if (conn == NULL) {
        return CTL_EXIT_ERROR;
    }
    json_object *applied = json_object_new_array();
    int rc = ctl_migrate_run(conn, s, applied);
    PQfinish(conn);
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: %s: rolled back, nothing applied\n", db);
    } else if (as_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "database", json_object_new_string(db));
        json_object_object_add(o, "applied", json_object_get(applied));
        ctl_print_json(o);
        json_object_put(o);
    } else {
        size_t n = json_object_array_length(applied);
        for (size_t i = 0; i < n; i++) {
            json_object *a = json_object_array_get_idx(applied, i), *v;
            json_object_object_get_ex(a, "name", &v);
            printf("%s: applied %s", db, json_object_get_string(v));
            json_object_object_get_ex(a, "as", &v);
            printf(" as %s\n", json_object_get_string(v));
        }
        printf("%s: %s\n", db, n > 0 ? "migrations applied" : "up to date");
    }
    json_object_put(applied);
    return rc == PHR_OK ? CTL_EXIT_OK : CTL_EXIT_ERROR;
}
