/*
 * pgtest.h - the PostgreSQL fixture shared by the unit tests that need a real server
 * (test_db, test_outbox, test_db_migrate).
 *
 * main() calls pgt_open() (PHR_TEST_PG_CONNINFO, the side connection, the log) first and
 * pgt_close() at the end. pgt_setup() gives every test an event loop (ticking every 10 ms, so
 * that one loop pass never blocks for long) and its own schema phrtest_<prefix>_<pid>_<n>,
 * selected on the side connection with SET search_path and for the code under test with
 * g_pgt.ci (PHR_TEST_PG_CONNINFO plus options=-csearch_path=..., key=value or URI form);
 * pgt_teardown() drops both.
 */
#ifndef PHR_PGTEST_H
#define PHR_PGTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "log.h"

typedef struct {
    const char *name;        /* the test, e.g. "test_db" (also its pools' lock name) */
    const char *prefix;      /* of its schema names */
    const char *base_ci;     /* PHR_TEST_PG_CONNINFO */
    PGconn *side;            /* the test's own connection, in the test schema */
    struct event_base *base; /* the current test's loop */
    struct event *tick;
    char schema[64]; /* the current test's schema */
    char ci[1024];   /* base_ci in that schema */
    int seq;
    int slice_ms; /* PGT_WAIT_UNTIL tests its condition every slice (0: every loop pass) */
} pgt_t;

static pgt_t g_pgt;

/* Runs the loop for |ms| regardless of progress (at least one pass). */
static inline void
pgt_spin(int ms)
{
    int64_t dl = t_now_ms() + ms;

    do {
        event_base_loop(g_pgt.base, EVLOOP_ONCE);
    } while (t_now_ms() < dl);
}

/* Runs the loop until |cond| holds or |ms| passed. */
#define PGT_WAIT_UNTIL(cond, ms)                                                                   \
    do {                                                                                           \
        int64_t pgt_dl_ = t_now_ms() + (ms);                                                       \
        while (!(cond) && t_now_ms() < pgt_dl_) {                                                  \
            pgt_spin(g_pgt.slice_ms);                                                              \
        }                                                                                          \
    } while (0)

/* Runs |sql| on the side connection; the test fails unless it succeeds. */
static inline void
pgt_side_exec(const char *sql)
{
    PGresult *res = PQexec(g_pgt.side, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_msg("side query failed: %s: %s", sql, PQresultErrorMessage(res));
    }
    PQclear(res);
}

static inline long pgt_side_long(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The one cell of one row of |fmt| (on the side connection) as a long; NULL reads as -1. */
static inline long
pgt_side_long(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGresult *res = PQexec(g_pgt.side, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("side query failed: %s: %s", sql, PQresultErrorMessage(res));
    }
    assert_int_equal(PQntuples(res), 1);
    long v = PQgetisnull(res, 0, 0) ? -1 : strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

static inline void
pgt_tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* A cmocka setup: a new loop and schema for one test (see PGT_TEST). */
static inline int
pgt_setup(void **state)
{
    char sql[256];
    struct timeval tv = {0, 10000};

    g_pgt.base = event_base_new();
    assert_non_null(g_pgt.base);
    g_pgt.tick = event_new(g_pgt.base, -1, EV_PERSIST, pgt_tick_cb, NULL);
    assert_non_null(g_pgt.tick);
    event_add(g_pgt.tick, &tv);

    snprintf(g_pgt.schema, sizeof(g_pgt.schema), "phrtest_%s_%ld_%d", g_pgt.prefix, (long)getpid(),
             ++g_pgt.seq);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", g_pgt.schema,
             g_pgt.schema);
    pgt_side_exec(sql);
    snprintf(sql, sizeof(sql), "SET search_path = %s", g_pgt.schema);
    pgt_side_exec(sql);
    if (strncmp(g_pgt.base_ci, "postgres", 8) == 0) {
        snprintf(g_pgt.ci, sizeof(g_pgt.ci), "%s%soptions=-csearch_path%%3D%s", g_pgt.base_ci,
                 strchr(g_pgt.base_ci, '?') != NULL ? "&" : "?", g_pgt.schema);
    } else {
        snprintf(g_pgt.ci, sizeof(g_pgt.ci), "%s options='-csearch_path=%s'", g_pgt.base_ci,
                 g_pgt.schema);
    }
    return 0;
}

/* A cmocka teardown: drops what pgt_setup() made. */
static inline int
pgt_teardown(void **state)
{
    char sql[256];

    pgt_side_exec("RESET search_path");
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", g_pgt.schema);
    pgt_side_exec(sql);
    event_free(g_pgt.tick);
    g_pgt.tick = NULL;
    event_base_free(g_pgt.base);
    g_pgt.base = NULL;
    return 0;
}

/*
 * Reads PHR_TEST_PG_CONNINFO, opens the side connection and the log of test |name| (level
 * PHR_TEST_LOG_LEVEL, default "error"); |prefix| names its schemas. Without a server the test
 * FAILS: this says why on stderr and exits 1.
 */
static inline void
pgt_open(const char *name, const char *prefix)
{
    g_pgt.name = name;
    g_pgt.prefix = prefix;
    g_pgt.base_ci = getenv("PHR_TEST_PG_CONNINFO");
    if (g_pgt.base_ci == NULL || g_pgt.base_ci[0] == '\0') {
        fprintf(stderr,
                "%s: FAIL: PHR_TEST_PG_CONNINFO is not set; this test needs a running "
                "PostgreSQL (see the top of tests/unit/%s.c)\n",
                name, name);
        exit(1);
    }
    g_pgt.side = PQconnectdb(g_pgt.base_ci);
    if (PQstatus(g_pgt.side) != CONNECTION_OK) {
        fprintf(stderr, "%s: FAIL: cannot connect with PHR_TEST_PG_CONNINFO: %s\n", name,
                PQerrorMessage(g_pgt.side));
        PQfinish(g_pgt.side);
        exit(1);
    }
    PQclear(PQexec(g_pgt.side, "SET client_min_messages = warning"));
    log_init(name, getenv("PHR_TEST_LOG_LEVEL") != NULL ? getenv("PHR_TEST_LOG_LEVEL") : "error");
}

/* A pool of common/db.c on the current loop (connect timeout 3 s). */
static inline db_pool_t *
pgt_pool(const char *ci, int size, int stmt_ms, int queue_max, const db_migration_t *m)
{
    db_config_t cfg = {
        .conninfo = ci,
        .size = size,
        .statement_timeout_ms = stmt_ms,
        .connect_timeout_ms = 3000,
        .queue_max = queue_max,
        .migrations = m,
        .lock_name = g_pgt.name,
    };
    db_pool_t *p = db_pool_create(g_pgt.base, &cfg);
    assert_non_null(p);
    return p;
}

/* A pool in the test schema, without migrations, once it is ready. */
static inline db_pool_t *
pgt_ready_pool(int size, int stmt_ms, int queue_max)
{
    db_pool_t *p = pgt_pool(g_pgt.ci, size, stmt_ms, queue_max, NULL);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    return p;
}

/* A test |f| with the fixture and nothing else. */
#define PGT_TEST(f) cmocka_unit_test_setup_teardown(f, pgt_setup, pgt_teardown)

/* Closes what pgt_open() opened. */
static inline void
pgt_close(void)
{
    PQfinish(g_pgt.side);
    g_pgt.side = NULL;
}

#endif
