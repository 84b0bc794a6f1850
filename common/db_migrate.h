/*
 * db_migrate.h - the table of a service's versioned SQL migrations.
 * tools/embed_migrations.sh generates <service>_migrations[] from
 * services/<service>/migrations/NNN_name.sql.
 */
#ifndef PHR_DB_MIGRATE_H
#define PHR_DB_MIGRATE_H

typedef struct {
    int version; /* NNN of the file name; strictly increasing */
    const char *name;
    const char *sql; /* may hold several statements */
} db_migration_t;

#endif
