/*
 * test_db_migrate.c - owner migrations (common/db_migrate.h): the first-line marker, and how
 * the pool of common/db.c applies them against a real PostgreSQL.
 *
 * Environment: PHR_TEST_PG_CONNINFO (as test_db.c; the test FAILS without it). Each pool test
 * runs in its own schema phrtest_mig_<pid>_<n>, dropped afterwards (the fixture of pgtest.h).
 * The three ways a pool meets an owner migration, with roles every cluster has:
 *   the role does not exist          applied as the service role
 *   the service role is that role    applied under SET LOCAL ROLE (membership)
 *   pg_monitor (not a member)        not applied: not ready, pending named, the migrations
 *                                    before it kept; ready once someone else has applied it
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgtest.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "err.h"

static char g_me[64]; /* the test's role */
static char g_val[256];

/* The first value of |sql| ("" when no row). */
static const char *
side_val(const char *sql)
{
    PGresult *res = PQexec(g_pgt.side, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("side query failed: %s: %s", sql, PQresultErrorMessage(res));
    }
    snprintf(g_val, sizeof(g_val), "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return g_val;
}

static db_pool_t *
make_pool(const db_migration_t *m)
{
    return pgt_pool(g_pgt.ci, 2, 5000, 10, m);
}

/* ---- the marker --------------------------------------------------------------------- */

static void
test_marker(void **state)
{
    char role[DB_MIGRATE_ROLE_MAX];
    static const db_migration_t plain = {1, "a", "-- a comment\nCREATE TABLE t (i int)"};
    static const db_migration_t owned = {2, "b", "-- phr-migrate: owner=phr_x_owner\nSELECT 1"};
    static const db_migration_t only = {3, "c", "-- phr-migrate: owner=r2"};
    static const db_migration_t bad[] = {
        {4, "d", "-- phr-migrate: owner=\nSELECT 1"},
        {5, "e", "-- phr-migrate: owner=Bad\nSELECT 1"},
        {6, "f", "-- phr-migrate: owner=a b\nSELECT 1"},
        {7, "g", "-- phr-migrate: owner=a\"; DROP TABLE x; --\nSELECT 1"},
        {8, "h", "-- phr-migrate: owners=a\nSELECT 1"},
        {9, "i", "-- phr-migrate: owner=9a\nSELECT 1"},
        {10, "j",
         "-- phr-migrate: owner=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    };

    assert_int_equal(db_migrate_owner(&plain, role, sizeof(role)), 0);
    assert_string_equal(role, "");
    assert_int_equal(db_migrate_owner(&owned, role, sizeof(role)), 1);
    assert_string_equal(role, "phr_x_owner");
    assert_int_equal(db_migrate_owner(&only, role, sizeof(role)), 1);
    assert_string_equal(role, "r2");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(db_migrate_owner(&bad[i], role, sizeof(role)), PHR_EINVAL);
    }
    assert_int_equal(db_migrate_owner(&owned, role, 8), PHR_EINVAL); /* buffer too small */

    char *sql = db_migrate_as_role(&owned, "phr_x_owner");
    assert_non_null(sql);
    assert_string_equal(sql, "SET LOCAL ROLE \"phr_x_owner\";\n-- phr-migrate: owner=phr_x_owner\n"
                             "SELECT 1\n;\nSET LOCAL ROLE NONE");
    free(sql);
}

/* ---- the pool ----------------------------------------------------------------------- */

static void
test_owner_absent_applied_as_self(void **state)
{
    static const db_migration_t m[] = {
        {1, "t", "CREATE TABLE t (i int)"},
        {2, "own", "-- phr-migrate: owner=phr_no_such_role_x\nALTER TABLE t ADD COLUMN j int"},
        {0, NULL, NULL},
    };
    db_pool_t *p = make_pool(m);

    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    assert_null(db_pool_pending_migration(p));
    db_pool_free(p);
    assert_string_equal(side_val("SELECT string_agg(version || name, ',' ORDER BY version) FROM "
                                 "schema_migrations"),
                        "1t,2own");
    assert_string_equal(side_val("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                                 "AND attname = 'j'"),
                        "1");
}

static void
test_owner_member_applied_under_set_role(void **state)
{
    char sql[256];
    db_migration_t m[] = {
        {1, "t", "CREATE TABLE t (i int)"},
        {2, "own", sql},
        {0, NULL, NULL},
    };
    /* the migration itself records who it ran as */
    snprintf(sql, sizeof(sql),
             "-- phr-migrate: owner=%s\nCREATE TABLE who AS SELECT current_user::text AS u, "
             "current_setting('role') AS r",
             g_me);
    db_pool_t *p = make_pool(m);

    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    db_pool_free(p);
    assert_string_equal(side_val("SELECT r FROM who"), g_me); /* SET ROLE was in effect */
    assert_string_equal(side_val("SELECT count(*) FROM schema_migrations"), "2");
}

static void
test_owner_not_member_waits(void **state)
{
    static const db_migration_t m[] = {
        {1, "t", "CREATE TABLE t (i int)"},
        {2, "own", "-- phr-migrate: owner=pg_monitor\nALTER TABLE t ADD COLUMN j int"},
        {3, "after", "CREATE TABLE after_own (i int)"},
        {0, NULL, NULL},
    };
    if (strcmp(side_val("SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER')"), "t") == 0) {
        skip(); /* a superuser is a member of every role */
    }
    db_pool_t *p = make_pool(m);

    pgt_spin(1500);
    assert_false(db_pool_ready(p));
    assert_non_null(db_pool_pending_migration(p));
    assert_string_equal(db_pool_pending_migration(p), "own");
    /* the one before is kept, the owner one and the one after are not applied */
    assert_string_equal(side_val("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                                 "schema_migrations"),
                        "1");
    assert_string_equal(side_val("SELECT to_regclass('after_own') IS NULL"), "t");

    /* the operator's step (phrctl migrate), here by hand: the pool notices and goes on */
    pgt_side_exec("BEGIN; ALTER TABLE t ADD COLUMN j int; "
                  "INSERT INTO schema_migrations (version, name) VALUES (2, 'own'); COMMIT");
    PGT_WAIT_UNTIL(db_pool_ready(p), 8000);
    assert_true(db_pool_ready(p));
    assert_null(db_pool_pending_migration(p));
    db_pool_free(p);
    assert_string_equal(side_val("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                                 "schema_migrations"),
                        "1,2,3");
    assert_string_equal(side_val("SELECT to_regclass('after_own') IS NOT NULL"), "t");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marker),
        PGT_TEST(test_owner_absent_applied_as_self),
        PGT_TEST(test_owner_member_applied_under_set_role),
        PGT_TEST(test_owner_not_member_waits),
    };

    pgt_open("test_db_migrate", "mig");
    snprintf(g_me, sizeof(g_me), "%s", side_val("SELECT current_user"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgt_close();
    return rc == 0 ? 0 : 1;
}
