/*
 * db_migrate.h - the table of a service's versioned SQL migrations.
 * tools/embed_migrations.sh generates <service>_migrations[] from
 * services/<service>/migrations/NNN_name.sql.
 *
 * Owner migrations: a migration whose first line is exactly
 *
 *     -- phr-migrate: owner=<role>
 *
 * changes objects that belong to <role> (e.g. audit's append-only tables, owned by the NOLOGIN
 * role phr_audit_owner), which the service role cannot alter. The service applies it itself
 * only when <role> does not exist or the service role is a member of it (then under
 * SET LOCAL ROLE <role>); otherwise it stops before it, stays not ready and names it
 * (db_pool_pending_migration) until an operator applies it with `phrctl migrate <service>`
 * over an administrator connection (tools/phrctl/migrate.c, deploy/OPERATIONS.md).
 * Released migrations are never edited: a change is a new file.
 */
#ifndef PHR_DB_MIGRATE_H
#define PHR_DB_MIGRATE_H

#include <stddef.h>

typedef struct {
    int version; /* NNN of the file name; strictly increasing */
    const char *name;
    const char *sql; /* may hold several statements */
} db_migration_t;

#define DB_MIGRATE_ROLE_MAX 64

/* Where the applied versions are recorded (no checksums: a released file never changes). */
#define DB_MIGRATE_TABLE_SQL                                                                       \
    "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "                      \
    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"

/*
 * The owner role of |m| into |role| (|len| >= DB_MIGRATE_ROLE_MAX): 1 when its first line
 * is the owner marker (role: [a-z_][a-z0-9_]*, shorter than DB_MIGRATE_ROLE_MAX), 0 when it
 * has none, PHR_EINVAL when the first line starts like the marker but is malformed.
 */
int db_migrate_owner(const db_migration_t *m, char *role, size_t len);

/*
 * "SET LOCAL ROLE \"<role>\";\n<sql>\n;\nSET LOCAL ROLE NONE" for applying |m| as |role|
 * (as db_migrate_owner gave it) inside the migration transaction. Caller frees; NULL on
 * allocation failure.
 */
char *db_migrate_as_role(const db_migration_t *m, const char *role);

#endif
