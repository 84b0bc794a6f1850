/*
 * db_migrate.c - the owner marker of a migration (db_migrate.h).
 */
#include "db_migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define DBM_MARKER "-- phr-migrate:"
#define DBM_OWNER "-- phr-migrate: owner="

int
db_migrate_owner(const db_migration_t *m, char *role, size_t len)
{
    const char *p;
    size_t n = 0;

    if (m == NULL || m->sql == NULL || role == NULL || len < DB_MIGRATE_ROLE_MAX) {
        return PHR_EINVAL;
    }
    role[0] = '\0';
    if (strncmp(m->sql, DBM_MARKER, strlen(DBM_MARKER)) != 0) {
        return 0;
    }
    if (strncmp(m->sql, DBM_OWNER, strlen(DBM_OWNER)) != 0) {
        return PHR_EINVAL;
    }
    p = m->sql + strlen(DBM_OWNER);
    for (; p[n] != '\0' && p[n] != '\n'; n++) {
        char ch = p[n];
        int ok = ch == '_' || (ch >= 'a' && ch <= 'z') || (n > 0 && ch >= '0' && ch <= '9');
        if (!ok || n + 1 >= DB_MIGRATE_ROLE_MAX) {
            return PHR_EINVAL;
        }
    }
    if (n == 0) {
        return PHR_EINVAL;
    }
    memcpy(role, p, n);
    role[n] = '\0';
    return 1;
}

char *
db_migrate_as_role(const db_migration_t *m, const char *role)
{
    static const char fmt[] = "SET LOCAL ROLE \"%s\";\n%s\n;\nSET LOCAL ROLE NONE";
    size_t len = sizeof(fmt) + strlen(role) + strlen(m->sql);
    char *out = malloc(len);

    if (out != NULL) {
        snprintf(out, len, fmt, role, m->sql);
    }
    return out;
}
