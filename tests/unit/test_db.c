/*
 * test_db.c - common/db.c against a real PostgreSQL.
 *
 * Environment:
 *   PHR_TEST_PG_CONNINFO  libpq key=value connection string (or postgresql:// URI) of a
 *                         database where the test may create and drop schemas, e.g.
 *                         "host=127.0.0.1 port=55990 dbname=postgres user=postgres".
 *                         The role needs CREATE on the database and permission to call
 *                         pg_terminate_backend on its own sessions. When unset the test
 *                         FAILS (exit 1): it never passes silently without a server.
 *
 * Every test runs in its own schema phrtest_db_<pid>_<n> (selected with
 * options=-csearch_path=...), dropped afterwards, so parallel runs do not collide
 * (the fixture of pgtest.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgtest.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "err.h"

static int g_in_api; /* set around db_* calls: callbacks must never run inside them */

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
    int calls;
    int rc;
    int ntuples;
    int isnull[4];
    char val[4][256];
    /* optional reentrancy probes */
    db_pool_t *pool;
    int requery_rc;
    int free_pool;
} qres_t;

static void
q_cb(int rc, PGresult *res, void *ud)
{
    qres_t *q = ud;
    assert_false(g_in_api);
    q->calls++;
    q->rc = rc;
    if (rc == PHR_OK) {
        assert_non_null(res);
        q->ntuples = PQntuples(res);
        for (int i = 0; i < 4 && i < PQnfields(res) && q->ntuples > 0; i++) {
            q->isnull[i] = PQgetisnull(res, 0, i);
            snprintf(q->val[i], sizeof(q->val[i]), "%s", PQgetvalue(res, 0, i));
        }
    }
    if (q->pool != NULL) {
        static qres_t sink;
        q->requery_rc = db_query(q->pool, "SELECT 1", 0, NULL, q_cb, &sink);
        if (q->free_pool) {
            db_pool_free(q->pool);
        }
    }
}

static int
submit(db_pool_t *p, const char *sql, int n, const char *const *params, qres_t *q)
{
    g_in_api = 1;
    int rc = db_query(p, sql, n, params, q_cb, q);
    g_in_api = 0;
    return rc;
}

/* Runs one query to completion and returns its callback rc. */
static int
run_q(db_pool_t *p, const char *sql, int n, const char *const *params, qres_t *q)
{
    memset(q, 0, sizeof(*q));
    assert_int_equal(submit(p, sql, n, params, q), PHR_OK);
    PGT_WAIT_UNTIL(q->calls > 0, 10000);
    assert_int_equal(q->calls, 1);
    return q->rc;
}

static int
connected(const db_pool_t *p)
{
    db_stats_t st;
    db_pool_stats(p, &st);
    return st.connected;
}

static unsigned long
reconnects(const db_pool_t *p)
{
    db_stats_t st;
    db_pool_stats(p, &st);
    return st.reconnects;
}

static int
ncalled(const qres_t *q, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        k += q[i].calls > 0;
    }
    return k;
}

/* ---- tests ---------------------------------------------------------------- */

typedef struct {
    db_pool_t *pool;
    db_txn_t *txn;
    int begin_calls;
    int begin_rc;
    int ins_rc;
    int end_calls;
    int end_rc;
    int step_rc;
} txs_t;

static void
tx_end_cb(int rc, PGresult *res, void *ud)
{
    txs_t *t = ud;
    assert_false(g_in_api);
    t->end_calls++;
    t->end_rc = rc;
}

static void
tx_ins_cb(int rc, PGresult *res, void *ud)
{
    txs_t *t = ud;
    assert_false(g_in_api);
    t->ins_rc = rc;
    g_in_api = 1;
    t->step_rc = db_txn_end(t->txn, 1, tx_end_cb, t);
    g_in_api = 0;
}

/* Begin callback that chains INSERT then COMMIT from inside callbacks. */
static void
tx_begin_chain_cb(int rc, db_txn_t *txn, void *ud)
{
    txs_t *t = ud;
    static const char *v[1] = {"committed"};
    assert_false(g_in_api);
    t->begin_calls++;
    t->begin_rc = rc;
    t->txn = txn;
    if (rc == PHR_OK) {
        g_in_api = 1;
        t->step_rc = db_txn_query(txn, "INSERT INTO tx (v) VALUES ($1)", 1, v, tx_ins_cb, t);
        g_in_api = 0;
    }
}

static void
tx_begin_cb(int rc, db_txn_t *txn, void *ud)
{
    txs_t *t = ud;
    assert_false(g_in_api);
    t->begin_calls++;
    t->begin_rc = rc;
    t->txn = txn;
}

static void
test_params_null_utf8(void **state)
{
    qres_t q;
    db_stats_t st;
    const char *utf8 = "日本語テキスト✓ é";
    const char *params[3] = {"hello", NULL, utf8};

    db_pool_t *p = pgt_ready_pool(1, 5000, 10);
    db_pool_stats(p, &st);
    assert_int_equal(st.size, 1);
    assert_int_equal(st.connected, 1);

    assert_int_equal(run_q(p, "SELECT $1::text, $2::text IS NULL, char_length($3::text), $3::text",
                           3, params, &q),
                     PHR_OK);
    assert_int_equal(q.ntuples, 1);
    assert_string_equal(q.val[0], "hello");
    assert_string_equal(q.val[1], "t");
    assert_string_equal(q.val[2], "10");
    assert_string_equal(q.val[3], utf8);

    /* A NULL parameter comes back as SQL NULL. */
    assert_int_equal(run_q(p, "SELECT $1::text", 1, params + 1, &q), PHR_OK);
    assert_int_equal(q.isnull[0], 1);

    /* Session settings: UTC. */
    assert_int_equal(run_q(p, "SELECT current_setting('TimeZone')", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "UTC");

    /* A value that would be an injection if concatenated is stored verbatim. */
    const char *evil[1] = {"x'); DROP TABLE inj; --"};
    assert_int_equal(run_q(p, "CREATE TABLE inj (name text)", 0, NULL, &q), PHR_OK);
    assert_int_equal(run_q(p, "INSERT INTO inj (name) VALUES ($1)", 1, evil, &q), PHR_OK);
    assert_int_equal(run_q(p, "SELECT count(*), max(name) FROM inj WHERE name = $1", 1, evil, &q),
                     PHR_OK);
    assert_string_equal(q.val[0], "1");
    assert_string_equal(q.val[1], evil[0]);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM inj"), 1);

    /* The extended protocol refuses stacked statements. */
    assert_int_not_equal(run_q(p, "SELECT 1; DROP TABLE inj", 0, NULL, &q), PHR_OK);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM inj"), 1);

    /* Bad arguments are refused synchronously. */
    assert_int_equal(db_query(p, NULL, 0, NULL, q_cb, &q), PHR_EINVAL);
    assert_int_equal(db_query(p, "SELECT 1", 1, NULL, q_cb, &q), PHR_EINVAL);

    db_pool_stats(p, &st);
    assert_true(st.queries >= 7);
    assert_true(st.errors >= 1);
    db_pool_free(p);
}

static void
test_concurrent_50_on_2(void **state)
{
    enum { N = 50 };
    static qres_t q[N];
    char num[N][16];
    db_stats_t st;

    db_pool_t *p = pgt_ready_pool(2, 5000, N);
    PGT_WAIT_UNTIL(connected(p) == 2, 5000);
    memset(q, 0, sizeof(q));
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof(num[i]), "%d", i);
        const char *params[1] = {num[i]};
        assert_int_equal(submit(p, "SELECT $1::int * 2, pg_sleep(0.005)", 1, params, &q[i]),
                         PHR_OK);
    }
    db_pool_stats(p, &st);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.waiting, N - 2);

    PGT_WAIT_UNTIL(ncalled(q, N) == N, 20000);
    assert_int_equal(ncalled(q, N), N);
    pgt_spin(50);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i * 2);
        assert_int_equal(q[i].calls, 1);
        assert_int_equal(q[i].rc, PHR_OK);
        assert_string_equal(q[i].val[0], want);
    }
    db_pool_stats(p, &st);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.busy, 0);
    db_pool_free(p);
}

static void
test_queue_full_and_wait_timeout(void **state)
{
    qres_t q[4];
    memset(q, 0, sizeof(q));

    db_pool_t *p = pgt_ready_pool(1, 5000, 2);
    assert_int_equal(submit(p, "SELECT pg_sleep(0.3)", 0, NULL, &q[0]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 2", 0, NULL, &q[1]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 3", 0, NULL, &q[2]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 4", 0, NULL, &q[3]), PHR_EFULL);
    PGT_WAIT_UNTIL(q[0].calls && q[1].calls && q[2].calls, 5000);
    pgt_spin(50);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(q[i].calls, 1);
        assert_int_equal(q[i].rc, PHR_OK);
    }
    assert_int_equal(q[3].calls, 0);
    assert_string_equal(q[2].val[0], "3");
    db_pool_free(p);

    /*
     * A query waiting longer than statement_timeout fails with PHR_ETIMEDOUT:
     * an open transaction holds the only connection.
     */
    txs_t t;
    memset(&t, 0, sizeof(t));
    memset(q, 0, sizeof(q));
    p = pgt_ready_pool(1, 300, 5);
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    assert_int_equal(t.begin_rc, PHR_OK);
    int64_t t0 = t_now_ms();
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q[0]), PHR_OK);
    PGT_WAIT_UNTIL(q[0].calls > 0, 3000);
    assert_int_equal(q[0].calls, 1);
    assert_int_equal(q[0].rc, PHR_ETIMEDOUT);
    assert_true(t_now_ms() - t0 >= 250);
    assert_true(t_now_ms() - t0 < 1500);
    assert_int_equal(db_txn_end(t.txn, 0, tx_end_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.end_calls > 0, 3000);
    assert_int_equal(t.end_rc, PHR_OK);
    assert_int_equal(run_q(p, "SELECT 5", 0, NULL, &q[1]), PHR_OK);
    db_pool_free(p);
}

static void
test_error_mapping(void **state)
{
    qres_t q;
    const char *a[1] = {"alice@example.org"};
    const char *bad[1] = {"not-a-number"};

    db_pool_t *p = pgt_ready_pool(1, 5000, 10);
    assert_int_equal(
        run_q(p, "CREATE TABLE acct (email text PRIMARY KEY, n int NOT NULL)", 0, NULL, &q),
        PHR_OK);
    assert_int_equal(run_q(p, "INSERT INTO acct VALUES ($1, 1)", 1, a, &q), PHR_OK);
    assert_int_equal(run_q(p, "INSERT INTO acct VALUES ($1, 1)", 1, a, &q), PHR_ECONFLICT);
    assert_int_equal(run_q(p, "SELECT $1::int", 1, bad, &q), PHR_EINVAL);
    assert_int_equal(run_q(p, "INSERT INTO acct VALUES ('b', NULL)", 0, NULL, &q), PHR_EINVAL);
    assert_int_equal(run_q(p, "SELECT * FROM no_such_table", 0, NULL, &q), PHR_EGENERIC);
    /* The connection is still fine. */
    assert_int_equal(run_q(p, "SELECT count(*) FROM acct", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "1");
    db_pool_free(p);
}

static void
test_statement_timeout(void **state)
{
    qres_t q;
    db_stats_t st;

    db_pool_t *p = pgt_ready_pool(1, 200, 10);
    int64_t t0 = t_now_ms();
    assert_int_equal(run_q(p, "SELECT pg_sleep(2)", 0, NULL, &q), PHR_ETIMEDOUT);
    assert_true(t_now_ms() - t0 < 1500);
    assert_int_equal(run_q(p, "SELECT 41 + 1", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "42");
    db_pool_stats(p, &st);
    assert_int_equal(st.reconnects, 0);
    db_pool_free(p);
}

static const db_migration_t mig_v2[] = {
    {1, "create_a", "CREATE TABLE mig_a (id int); INSERT INTO mig_a VALUES (1);"},
    {2, "create_b", "CREATE TABLE mig_b (id int PRIMARY KEY)"},
    {0, NULL, NULL},
};

static const db_migration_t mig_v3[] = {
    {1, "create_a", "CREATE TABLE mig_a (id int); INSERT INTO mig_a VALUES (1);"},
    {2, "create_b", "CREATE TABLE mig_b (id int PRIMARY KEY)"},
    {5, "add_col", "ALTER TABLE mig_b ADD COLUMN note text; INSERT INTO mig_a VALUES (5)"},
    {0, NULL, NULL},
};

static void
test_migrations_once(void **state)
{
    qres_t q;
    db_pool_t *p = pgt_pool(g_pgt.ci, 2, 5000, 10, mig_v2);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    assert_int_equal(run_q(p, "SELECT count(*) FROM mig_b", 0, NULL, &q), PHR_OK);
    db_pool_free(p);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM schema_migrations"), 2);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM mig_a"), 1);

    /* Second run: nothing to apply. */
    p = pgt_pool(g_pgt.ci, 1, 5000, 10, mig_v2);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    db_pool_free(p);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM schema_migrations"), 2);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM mig_a"), 1);

    /* A new version applies only itself. */
    p = pgt_pool(g_pgt.ci, 1, 5000, 10, mig_v3);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    db_pool_free(p);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM schema_migrations"), 3);
    assert_int_equal(pgt_side_long("SELECT sum(version) FROM schema_migrations"), 8);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM schema_migrations WHERE version = 5 AND "
                                   "name = 'add_col' AND applied_at <= now()"),
                     1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM mig_a"), 2);
}

static long
advisory_waiters(void)
{
    return pgt_side_long(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
}

static void
test_migrations_concurrent(void **state)
{
    static const db_migration_t slow[] = {
        {1, "create_a",
         "SELECT pg_sleep(0.5); CREATE TABLE mig_a (id int); "
         "INSERT INTO mig_a VALUES (1);"},
        {2, "create_b", "CREATE TABLE mig_b (id int PRIMARY KEY)"},
        {5, "add_col", "ALTER TABLE mig_b ADD COLUMN note text; INSERT INTO mig_a VALUES (5)"},
        {0, NULL, NULL},
    };
    db_pool_t *p1 = pgt_pool(g_pgt.ci, 2, 5000, 10, slow);
    db_pool_t *p2 = pgt_pool(g_pgt.ci, 2, 5000, 10, slow);

    /* While one pool migrates, the other waits on the advisory lock. */
    PGT_WAIT_UNTIL(advisory_waiters() > 0, 3000);
    assert_true(advisory_waiters() > 0);
    assert_false(db_pool_ready(p1) || db_pool_ready(p2));
    PGT_WAIT_UNTIL(db_pool_ready(p1) && db_pool_ready(p2), 10000);
    assert_true(db_pool_ready(p1));
    assert_true(db_pool_ready(p2));
    db_pool_free(p1);
    db_pool_free(p2);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM schema_migrations"), 3);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM mig_a"), 2);
}

static void
test_migration_failure(void **state)
{
    static const db_migration_t bad[] = {
        {1, "ok", "CREATE TABLE mig_ok (id int)"},
        {2, "broken", "CREATE TABLE mig_bad (id int); SELECT * FROM no_such_table"},
        {0, NULL, NULL},
    };
    static const db_migration_t unordered[] = {
        {2, "b", "SELECT 1"},
        {1, "a", "SELECT 1"},
        {0, NULL, NULL},
    };
    qres_t q;

    db_pool_t *p = pgt_pool(g_pgt.ci, 2, 5000, 10, bad);
    PGT_WAIT_UNTIL(connected(p) == 2, 5000);
    pgt_spin(1200); /* several attempts with backoff */
    assert_false(db_pool_ready(p));
    memset(&q, 0, sizeof(q));
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q), PHR_EUNAVAIL);
    g_in_api = 1;
    assert_int_equal(db_txn_begin(p, NULL, NULL), PHR_EUNAVAIL);
    g_in_api = 0;
    db_pool_free(p);
    assert_int_equal(q.calls, 0);
    assert_int_equal(
        pgt_side_long("SELECT count(*) FROM pg_tables WHERE schemaname = '%s'", g_pgt.schema), 0);

    /* Versions must increase strictly. */
    db_config_t cfg = {.conninfo = g_pgt.ci, .size = 1, .migrations = unordered};
    assert_null(db_pool_create(g_pgt.base, &cfg));
}

static void
test_txn_commit_rollback(void **state)
{
    qres_t q, q2;
    txs_t t;
    db_stats_t st;
    const char *v[1] = {"rolled-back"};

    db_pool_t *p = pgt_ready_pool(2, 5000, 10);
    assert_int_equal(run_q(p, "CREATE TABLE tx (v text)", 0, NULL, &q), PHR_OK);

    /* Commit, driven from callbacks. */
    memset(&t, 0, sizeof(t));
    g_in_api = 1;
    assert_int_equal(db_txn_begin(p, tx_begin_chain_cb, &t), PHR_OK);
    g_in_api = 0;
    PGT_WAIT_UNTIL(t.end_calls > 0, 5000);
    assert_int_equal(t.begin_calls, 1);
    assert_int_equal(t.begin_rc, PHR_OK);
    assert_int_equal(t.ins_rc, PHR_OK);
    assert_int_equal(t.step_rc, PHR_OK);
    assert_int_equal(t.end_calls, 1);
    assert_int_equal(t.end_rc, PHR_OK);
    assert_int_equal(run_q(p, "SELECT count(*) FROM tx WHERE v = 'committed'", 0, NULL, &q),
                     PHR_OK);
    assert_string_equal(q.val[0], "1");

    /* Rollback, driven step by step; the row is invisible outside before and after. */
    memset(&t, 0, sizeof(t));
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    assert_int_equal(t.begin_rc, PHR_OK);
    assert_non_null(t.txn);
    db_pool_stats(p, &st);
    assert_int_equal(st.busy, 1);
    memset(&q, 0, sizeof(q));
    memset(&q2, 0, sizeof(q2));
    assert_int_equal(db_txn_query(t.txn, "INSERT INTO tx (v) VALUES ($1)", 1, v, q_cb, &q), PHR_OK);
    assert_int_equal(db_txn_query(t.txn, "SELECT count(*) FROM tx", 0, NULL, q_cb, &q2), PHR_OK);
    PGT_WAIT_UNTIL(q2.calls > 0, 5000);
    assert_int_equal(q.rc, PHR_OK);
    assert_int_equal(q2.rc, PHR_OK);
    assert_string_equal(q2.val[0], "2"); /* visible inside */
    assert_int_equal(pgt_side_long("SELECT count(*) FROM tx"), 1);
    assert_int_equal(db_txn_end(t.txn, 0, tx_end_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.end_calls > 0, 5000);
    assert_int_equal(t.end_rc, PHR_OK);
    assert_int_equal(run_q(p, "SELECT count(*) FROM tx", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "1");

    /* A failed statement makes COMMIT report an error. */
    memset(&t, 0, sizeof(t));
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    memset(&q, 0, sizeof(q));
    assert_int_equal(db_txn_query(t.txn, "SELECT * FROM missing", 0, NULL, q_cb, &q), PHR_OK);
    assert_int_equal(db_txn_end(t.txn, 1, tx_end_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.end_calls > 0, 5000);
    assert_int_equal(q.rc, PHR_EGENERIC);
    assert_int_not_equal(t.end_rc, PHR_OK);

    db_pool_stats(p, &st);
    assert_int_equal(st.busy, 0);
    db_pool_free(p);
}

static void
terminate(const char *pid)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
    assert_int_equal(pgt_side_long("%s::int", sql), 1);
}

/* Statements run as named prepared statements: prepared once per session, then executed. */
static void
test_prepared_statements(void **state)
{
    qres_t q;
    txs_t t;
    char sql[64], want[16], pid[32];
    const char *one[1] = {"1"};
    const char *two[1] = {"2"};
    static const char sel[] = "SELECT v FROM ps WHERE id = $1::int";
    static const char count[] = "SELECT count(*) FROM pg_prepared_statements "
                                "WHERE statement = 'SELECT v FROM ps WHERE id = $1::int'";

    db_pool_t *p = pgt_ready_pool(1, 5000, 10);
    assert_int_equal(run_q(p, "CREATE TABLE ps (id int PRIMARY KEY, v text)", 0, NULL, &q), PHR_OK);
    assert_int_equal(run_q(p, "INSERT INTO ps VALUES (1, 'one'), (2, 'two')", 0, NULL, &q), PHR_OK);
    assert_int_equal(run_q(p, sel, 1, one, &q), PHR_OK);
    assert_string_equal(q.val[0], "one");
    assert_int_equal(run_q(p, sel, 1, two, &q), PHR_OK); /* same statement, other value */
    assert_string_equal(q.val[0], "two");
    assert_int_equal(run_q(p, count, 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "1"); /* prepared once on the session */

    /* A statement that cannot be prepared fails like a query and is not kept. */
    assert_int_equal(run_q(p, "SELECT * FROM no_such_table WHERE x = $1", 1, one, &q),
                     PHR_EGENERIC);
    assert_int_equal(run_q(p, "SELECT count(*) FROM pg_prepared_statements", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "5"); /* create, insert, sel, count and this one */
    assert_int_equal(run_q(p, sel, 1, one, &q), PHR_OK);
    assert_string_equal(q.val[0], "one");

    /* Inside a transaction; a failed PREPARE there fails the statement and the COMMIT. */
    memset(&t, 0, sizeof(t));
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    assert_int_equal(t.begin_rc, PHR_OK);
    memset(&q, 0, sizeof(q));
    assert_int_equal(db_txn_query(t.txn, sel, 1, two, q_cb, &q), PHR_OK);
    PGT_WAIT_UNTIL(q.calls > 0, 5000);
    assert_int_equal(q.rc, PHR_OK);
    assert_string_equal(q.val[0], "two");
    memset(&q, 0, sizeof(q));
    assert_int_equal(db_txn_query(t.txn, "SELECT nope FROM ps", 0, NULL, q_cb, &q), PHR_OK);
    assert_int_equal(db_txn_end(t.txn, 1, tx_end_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.end_calls > 0, 5000);
    assert_int_equal(q.rc, PHR_EGENERIC);
    assert_int_not_equal(t.end_rc, PHR_OK);

    /* More distinct statements than the cache holds: the rest run unnamed, all answer. */
    for (int i = 0; i < 80; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d + $1::int", i);
        snprintf(want, sizeof(want), "%d", i + 1);
        assert_int_equal(run_q(p, sql, 1, one, &q), PHR_OK);
        assert_string_equal(q.val[0], want);
    }
    assert_int_equal(run_q(p, "SELECT count(*) <= 64 FROM pg_prepared_statements", 0, NULL, &q),
                     PHR_OK);
    assert_string_equal(q.val[0], "t");
    assert_int_equal(run_q(p, sel, 1, two, &q), PHR_OK);
    assert_string_equal(q.val[0], "two");

    /* A new session prepares again (the old names died with the old session). */
    assert_int_equal(run_q(p, "SELECT pg_backend_pid()", 0, NULL, &q), PHR_OK);
    snprintf(pid, sizeof(pid), "%.31s", q.val[0]);
    terminate(pid);
    pgt_spin(400);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_int_equal(run_q(p, sel, 1, one, &q), PHR_OK);
    assert_string_equal(q.val[0], "one");
    assert_int_equal(run_q(p, count, 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "1");
    db_pool_free(p);
}

static void
test_terminated_connection(void **state)
{
    qres_t q, q2;
    txs_t t;
    db_stats_t st;
    char pid[32];

    db_pool_t *p = pgt_ready_pool(1, 5000, 10);
    assert_int_equal(run_q(p, "SELECT pg_backend_pid()", 0, NULL, &q), PHR_OK);
    snprintf(pid, sizeof(pid), "%.31s", q.val[0]);

    memset(&q, 0, sizeof(q));
    assert_int_equal(submit(p, "SELECT pg_sleep(3)", 0, NULL, &q), PHR_OK);
    pgt_spin(100);
    terminate(pid);
    int64_t t0 = t_now_ms();
    PGT_WAIT_UNTIL(q.calls > 0, 5000);
    assert_int_equal(q.calls, 1);
    assert_int_equal(q.rc, PHR_EUNAVAIL);
    assert_true(t_now_ms() - t0 < 2000);

    /* Reconnects by itself and serves again. */
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    assert_int_equal(run_q(p, "SELECT pg_backend_pid()", 0, NULL, &q), PHR_OK);
    assert_string_not_equal(q.val[0], pid);
    snprintf(pid, sizeof(pid), "%.31s", q.val[0]);
    db_pool_stats(p, &st);
    assert_true(st.reconnects >= 1);

    /* A transaction whose connection dies: pending statement fails, end still works. */
    memset(&t, 0, sizeof(t));
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    assert_int_equal(t.begin_rc, PHR_OK);
    memset(&q, 0, sizeof(q));
    memset(&q2, 0, sizeof(q2));
    assert_int_equal(db_txn_query(t.txn, "SELECT pg_sleep(3)", 0, NULL, q_cb, &q), PHR_OK);
    assert_int_equal(db_txn_query(t.txn, "SELECT 1", 0, NULL, q_cb, &q2), PHR_OK);
    pgt_spin(100);
    terminate(pid);
    PGT_WAIT_UNTIL(q.calls > 0 && q2.calls > 0, 5000);
    assert_int_equal(q.rc, PHR_EUNAVAIL);
    assert_int_equal(q2.rc, PHR_EUNAVAIL);
    assert_int_equal(db_txn_query(t.txn, "SELECT 1", 0, NULL, q_cb, &q), PHR_EUNAVAIL);
    assert_int_equal(db_txn_end(t.txn, 1, tx_end_cb, &t), PHR_EUNAVAIL);
    assert_int_equal(t.end_calls, 0);

    /* An idle connection killed behind our back is replaced too. */
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_int_equal(run_q(p, "SELECT pg_backend_pid()", 0, NULL, &q), PHR_OK);
    snprintf(pid, sizeof(pid), "%.31s", q.val[0]);
    terminate(pid);
    pgt_spin(400);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_int_equal(run_q(p, "SELECT 7", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "7");
    db_pool_free(p);
}

static void
test_unreachable(void **state)
{
    db_stats_t st;
    qres_t q;
    memset(&q, 0, sizeof(q));

    int64_t t0 = t_now_ms();
    db_pool_t *p =
        pgt_pool("host=127.0.0.1 port=1 dbname=postgres user=postgres", 2, 1000, 10, mig_v2);
    pgt_spin(700);
    assert_false(db_pool_ready(p));
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q), PHR_EUNAVAIL);
    assert_int_equal(db_txn_begin(p, tx_begin_cb, NULL), PHR_EUNAVAIL);
    db_pool_stats(p, &st);
    assert_int_equal(st.connected, 0);
    assert_true(st.reconnects >= 2); /* retrying with backoff */
    assert_true(st.reconnects < 20);
    db_pool_free(p);
    pgt_spin(50);
    assert_int_equal(q.calls, 0);
    assert_true(t_now_ms() - t0 < 2000);

    /* A server that accepts TCP but never answers: the connect deadline fires. */
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    char ci[128];
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d dbname=postgres user=postgres sslmode=disable",
             ntohs(sa.sin_port));
    db_config_t cfg = {.conninfo = ci,
                       .size = 1,
                       .statement_timeout_ms = 1000,
                       .connect_timeout_ms = 200,
                       .queue_max = 1};
    t0 = t_now_ms();
    p = db_pool_create(g_pgt.base, &cfg);
    assert_non_null(p);
    PGT_WAIT_UNTIL(reconnects(p) >= 1, 3000);
    db_pool_stats(p, &st);
    assert_true(st.reconnects >= 1);
    assert_true(t_now_ms() - t0 >= 150);
    assert_false(db_pool_ready(p));
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q), PHR_EUNAVAIL);
    db_pool_free(p);
    close(lfd);
    assert_true(t_now_ms() - t0 < 2000);
}

/* ---- a TCP proxy in front of the server that can go silent ----------------- */

#define PX_PAIRS 16

typedef struct {
    int lfd;
    int port;
    atomic_int hole; /* 1: nothing is accepted, read or written (a silent network) */
    atomic_int mute; /* pair index + 1: that connection alone goes silent; 0: none */
    atomic_int stop;
    int fd[PX_PAIRS][2];         /* client side, server side; -1 = free */
    atomic_int upport[PX_PAIRS]; /* local TCP port of the server side (its client_port); 0 */
    pthread_t thr;
} px_t;

static px_t g_px;

/* A connection to the server g_pgt.side talks to: its numeric address, else its socket dir. */
static int
px_upstream(void)
{
    const char *host = PQhost(g_pgt.side);
    const char *addr = PQhostaddr(g_pgt.side);
    const char *ps = PQport(g_pgt.side);
    int port = ps != NULL && ps[0] != '\0' ? (int)strtol(ps, NULL, 10) : 5432;
    int fd;

    if (host != NULL && host[0] == '/') {
        struct sockaddr_un su;
        memset(&su, 0, sizeof(su));
        su.sun_family = AF_UNIX;
        snprintf(su.sun_path, sizeof(su.sun_path), "%s/.s.PGSQL.%d", host, port);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&su, sizeof(su)) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (addr == NULL || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void
px_close_pair(int i)
{
    for (int k = 0; k < 2; k++) {
        if (g_px.fd[i][k] >= 0) {
            close(g_px.fd[i][k]);
            g_px.fd[i][k] = -1;
        }
    }
    atomic_store(&g_px.upport[i], 0);
}

static void
px_accept(void)
{
    int cfd = accept(g_px.lfd, NULL, NULL);
    if (cfd < 0) {
        return;
    }
    for (int i = 0; i < PX_PAIRS; i++) {
        if (g_px.fd[i][0] < 0) {
            g_px.fd[i][0] = cfd;
            g_px.fd[i][1] = px_upstream();
            if (g_px.fd[i][1] < 0) {
                px_close_pair(i);
                return;
            }
            struct sockaddr_in sa;
            socklen_t salen = sizeof(sa);
            if (getsockname(g_px.fd[i][1], (struct sockaddr *)&sa, &salen) == 0 &&
                sa.sin_family == AF_INET) {
                atomic_store(&g_px.upport[i], ntohs(sa.sin_port));
            }
            return;
        }
    }
    close(cfd);
}

static void *
px_main(void *arg)
{
    struct pollfd pf[1 + 2 * PX_PAIRS];
    char buf[16384];

    while (!atomic_load(&g_px.stop)) {
        if (atomic_load(&g_px.hole)) {
            usleep(5000);
            continue;
        }
        int n = 0;
        pf[n++] = (struct pollfd){.fd = g_px.lfd, .events = POLLIN};
        for (int i = 0; i < PX_PAIRS; i++) {
            int muted = atomic_load(&g_px.mute) == i + 1; /* poll ignores fd -1 */
            for (int k = 0; k < 2; k++) {
                pf[n++] = (struct pollfd){.fd = muted ? -1 : g_px.fd[i][k], .events = POLLIN};
            }
        }
        if (poll(pf, (nfds_t)n, 5) <= 0 || atomic_load(&g_px.hole)) {
            continue;
        }
        for (int i = 0; i < PX_PAIRS; i++) {
            for (int k = 0; k < 2 && g_px.fd[i][0] >= 0; k++) {
                if (!(pf[1 + 2 * i + k].revents & (POLLIN | POLLHUP | POLLERR))) {
                    continue;
                }
                ssize_t got = read(g_px.fd[i][k], buf, sizeof(buf));
                if (got <= 0 || write(g_px.fd[i][1 - k], buf, (size_t)got) != got) {
                    px_close_pair(i);
                }
            }
        }
        if (pf[0].revents & POLLIN) {
            px_accept();
        }
    }
    return arg;
}

static void
px_start(void)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);

    memset(&g_px, 0, sizeof(g_px));
    memset(g_px.fd, -1, sizeof(g_px.fd));
    g_px.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(g_px.lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(g_px.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(g_px.lfd, 16), 0);
    assert_int_equal(getsockname(g_px.lfd, (struct sockaddr *)&sa, &salen), 0);
    g_px.port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&g_px.thr, NULL, px_main, NULL), 0);
}

static void
px_stop(void)
{
    atomic_store(&g_px.stop, 1);
    pthread_join(g_px.thr, NULL);
    for (int i = 0; i < PX_PAIRS; i++) {
        px_close_pair(i);
    }
    close(g_px.lfd);
}

/* g_pgt.ci's settings (those of g_pgt.side plus the test schema) with the proxy as the server. */
static void
px_conninfo(char *out, size_t len)
{
    PQconninfoOption *opts = PQconninfo(g_pgt.side);
    size_t n = (size_t)snprintf(out, len, "host=127.0.0.1 port=%d options='-csearch_path=%s'",
                                g_px.port, g_pgt.schema);
    assert_non_null(opts);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0' || strcmp(o->keyword, "host") == 0 ||
            strcmp(o->keyword, "hostaddr") == 0 || strcmp(o->keyword, "port") == 0 ||
            strcmp(o->keyword, "options") == 0 || strchr(o->val, '\'') != NULL ||
            strchr(o->val, '\\') != NULL) {
            continue;
        }
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, " %s='%s'", o->keyword, o->val);
    }
    PQconninfoFree(opts);
    assert_true(n < len);
}

/* A pool of |size| through the proxy, connected and ready; its pings (every 200 ms, 300 ms to
 * answer) find a silent server. */
static db_pool_t *
px_pool(int size, int stmt_ms)
{
    char ci[2048];
    px_conninfo(ci, sizeof(ci));
    db_config_t cfg = {.conninfo = ci,
                       .size = size,
                       .statement_timeout_ms = stmt_ms,
                       .connect_timeout_ms = 500,
                       .queue_max = 10,
                       .ping_interval_ms = 200,
                       .ping_timeout_ms = 300,
                       .keepalive_s = 5};
    db_pool_t *p = db_pool_create(g_pgt.base, &cfg);
    assert_non_null(p);
    PGT_WAIT_UNTIL(connected(p) == size && db_pool_ready(p), 5000);
    assert_int_equal(connected(p), size);
    return p;
}

static void
test_blackhole(void **state)
{
    qres_t q;

    px_start();
    db_pool_t *p = px_pool(2, 1000);
    assert_int_equal(run_q(p, "SELECT 1", 0, NULL, &q), PHR_OK);

    /* An idle pool whose server goes silent: only the pings can tell. */
    atomic_store(&g_px.hole, 1);
    PGT_WAIT_UNTIL(!db_pool_ready(p), 5000);
    assert_false(db_pool_ready(p));
    memset(&q, 0, sizeof(q));
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q), PHR_EUNAVAIL);

    /* Back: ready again, and it serves. */
    atomic_store(&g_px.hole, 0);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    assert_int_equal(run_q(p, "SELECT 2", 0, NULL, &q), PHR_OK);
    PGT_WAIT_UNTIL(connected(p) == 2, 5000);
    assert_int_equal(connected(p), 2);

    /* A query in flight when the server goes silent fails; it does not hang. */
    memset(&q, 0, sizeof(q));
    assert_int_equal(submit(p, "SELECT pg_sleep(0.2)", 0, NULL, &q), PHR_OK);
    pgt_spin(20);
    atomic_store(&g_px.hole, 1);
    PGT_WAIT_UNTIL(q.calls > 0, 5000);
    assert_int_equal(q.calls, 1);
    assert_true(q.rc == PHR_EUNAVAIL || q.rc == PHR_ETIMEDOUT);
    assert_false(db_pool_ready(p));
    atomic_store(&g_px.hole, 0);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_int_equal(run_q(p, "SELECT 3", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "3");
    db_pool_free(p);
    px_stop();
}

/* The proxy pair carrying the pool's session that runs a statement containing |marker|. */
static int
px_pair_of(const char *marker)
{
    long port = pgt_side_long("SELECT coalesce(max(client_port), -1) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND query LIKE '%%%s%%'",
                              marker);
    for (int i = 0; i < PX_PAIRS && port > 0; i++) {
        if (atomic_load(&g_px.upport[i]) == port) {
            return i;
        }
    }
    fprintf(stderr, "test_db: no proxy pair carries '%s' (the server must be reached over TCP)\n",
            marker);
    return -1;
}

/*
 * Every connection busy with a query longer than ping_timeout when the server goes silent: no
 * idle connection can be pinged, yet the pool is unready within about ping_timeout +
 * ping_interval, queued requests fail at once, and the queries in flight end by their deadline.
 */
static void
test_blackhole_busy(void **state)
{
    qres_t q[4];
    db_stats_t st;

    px_start();
    db_pool_t *p = px_pool(2, 2000); /* client deadline of a query: 2 s + 2 s of slack */
    memset(q, 0, sizeof(q));
    int64_t sent = t_now_ms();
    assert_int_equal(submit(p, "SELECT pg_sleep(1.5)", 0, NULL, &q[0]), PHR_OK);
    assert_int_equal(submit(p, "SELECT pg_sleep(1.5)", 0, NULL, &q[1]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 3", 0, NULL, &q[2]), PHR_OK);
    pgt_spin(50);
    db_pool_stats(p, &st);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.waiting, 1);

    atomic_store(&g_px.hole, 1);
    int64_t t0 = t_now_ms();
    PGT_WAIT_UNTIL(!db_pool_ready(p), 5000);
    int64_t unready_ms = t_now_ms() - t0;
    assert_false(db_pool_ready(p));
    fprintf(stderr, "test_blackhole_busy: unready %lld ms after the silence\n",
            (long long)unready_ms);
    assert_true(unready_ms <= 300 + 200 + 300);
    PGT_WAIT_UNTIL(q[2].calls > 0, 200);
    assert_int_equal(q[2].calls, 1);
    assert_int_equal(q[2].rc, PHR_EUNAVAIL);
    assert_int_equal(submit(p, "SELECT 4", 0, NULL, &q[3]), PHR_EUNAVAIL);

    /* The queries in flight do not hang past their own deadline. */
    PGT_WAIT_UNTIL(q[0].calls > 0 && q[1].calls > 0, 6000);
    assert_true(t_now_ms() - sent <= 4000 + 500);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(q[i].calls, 1);
        assert_true(q[i].rc == PHR_ETIMEDOUT || q[i].rc == PHR_EUNAVAIL);
    }

    atomic_store(&g_px.hole, 0);
    PGT_WAIT_UNTIL(db_pool_ready(p), 5000);
    assert_true(db_pool_ready(p));
    assert_int_equal(run_q(p, "SELECT 5", 0, NULL, &q[0]), PHR_OK);
    assert_string_equal(q[0].val[0], "5");
    assert_int_equal(q[3].calls, 0);
    db_pool_free(p);
    px_stop();
}

/*
 * A ping that times out on one connection (that connection alone goes silent, as on a
 * starved server) while another runs a healthy query longer than ping_timeout: the pool is
 * briefly unready, the third connection's ping answers, and the long query completes.
 */
static void
test_long_query_survives(void **state)
{
    qres_t q;
    int mute = -1, saw_unready = 0, ready_again = 0;

    px_start();
    db_pool_t *p = px_pool(3, 3000);
    memset(&q, 0, sizeof(q));
    int64_t sent = t_now_ms();
    assert_int_equal(submit(p, "SELECT pg_sleep(1.0), 'd5_long_query'", 0, NULL, &q), PHR_OK);
    pgt_spin(50);
    int busy = px_pair_of("d5_long_query");
    assert_true(busy >= 0);
    for (int i = 0; i < PX_PAIRS && mute < 0; i++) {
        if (i != busy && atomic_load(&g_px.upport[i]) != 0) {
            mute = i;
        }
    }
    assert_true(mute >= 0);
    atomic_store(&g_px.mute, mute + 1);
    while (q.calls == 0 && t_now_ms() - sent < 5000) {
        event_base_loop(g_pgt.base, EVLOOP_ONCE);
        saw_unready |= !db_pool_ready(p);
        ready_again |= saw_unready && db_pool_ready(p) && q.calls == 0;
    }
    assert_true(saw_unready); /* the muted connection's ping did time out */
    assert_int_equal(q.calls, 1);
    assert_int_equal(q.rc, PHR_OK);
    assert_true(ready_again); /* the other idle one answered while the query ran */
    assert_int_equal(q.ntuples, 1);
    assert_string_equal(q.val[1], "d5_long_query");
    assert_true(t_now_ms() - sent >= 1000);

    atomic_store(&g_px.mute, 0);
    PGT_WAIT_UNTIL(db_pool_ready(p) && connected(p) == 3, 5000);
    assert_true(db_pool_ready(p));
    assert_int_equal(run_q(p, "SELECT 6", 0, NULL, &q), PHR_OK);
    assert_string_equal(q.val[0], "6");
    db_pool_free(p);
    px_stop();
}

static void
test_free_with_pending(void **state)
{
    qres_t q[4];
    memset(q, 0, sizeof(q));

    db_pool_t *p = pgt_ready_pool(1, 5000, 10);
    assert_int_equal(submit(p, "SELECT pg_sleep(5)", 0, NULL, &q[0]), PHR_OK);
    q[1].pool = p; /* its callback calls db_query on the freeing pool */
    assert_int_equal(submit(p, "SELECT 2", 0, NULL, &q[1]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 3", 0, NULL, &q[2]), PHR_OK);
    pgt_spin(50);
    db_pool_free(p);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(q[i].calls, 1);
        assert_int_equal(q[i].rc, PHR_ECLOSED);
    }
    assert_int_equal(q[1].requery_rc, PHR_ECLOSED);
    pgt_spin(50);

    /* db_pool_free from inside a result callback, with queued work and an open txn. */
    txs_t t;
    memset(q, 0, sizeof(q));
    memset(&t, 0, sizeof(t));
    p = pgt_ready_pool(2, 5000, 10);
    assert_int_equal(db_txn_begin(p, tx_begin_cb, &t), PHR_OK);
    PGT_WAIT_UNTIL(t.begin_calls > 0, 5000);
    assert_int_equal(t.begin_rc, PHR_OK);
    assert_int_equal(db_txn_query(t.txn, "SELECT pg_sleep(5)", 0, NULL, q_cb, &q[3]), PHR_OK);
    q[0].pool = p;
    q[0].free_pool = 1;
    assert_int_equal(submit(p, "SELECT 1", 0, NULL, &q[0]), PHR_OK);
    assert_int_equal(submit(p, "SELECT 2", 0, NULL, &q[1]), PHR_OK);
    PGT_WAIT_UNTIL(q[0].calls > 0, 5000);
    assert_int_equal(q[0].rc, PHR_OK);
    assert_int_equal(q[0].requery_rc, PHR_OK);
    assert_int_equal(q[1].calls, 1);
    assert_int_equal(q[1].rc, PHR_ECLOSED);
    assert_int_equal(q[3].calls, 1);
    assert_int_equal(q[3].rc, PHR_ECLOSED);
    pgt_spin(100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_params_null_utf8),
        PGT_TEST(test_concurrent_50_on_2),
        PGT_TEST(test_queue_full_and_wait_timeout),
        PGT_TEST(test_error_mapping),
        PGT_TEST(test_statement_timeout),
        PGT_TEST(test_migrations_once),
        PGT_TEST(test_migrations_concurrent),
        PGT_TEST(test_migration_failure),
        PGT_TEST(test_txn_commit_rollback),
        PGT_TEST(test_terminated_connection),
        PGT_TEST(test_prepared_statements),
        PGT_TEST(test_unreachable),
        PGT_TEST(test_free_with_pending),
        PGT_TEST(test_blackhole),
        PGT_TEST(test_blackhole_busy),
        PGT_TEST(test_long_query_survives),
    };

    pgt_open("test_db", "db");
    if (getenv("PHR_TEST_FILTER") != NULL) { /* e.g. "test_blackhole" */
        cmocka_set_test_filter(getenv("PHR_TEST_FILTER"));
    }
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgt_close();
    return rc == 0 ? 0 : 1;
}
