/*
 * test_records_getbatch.c - services/records/getbatch.c against a real PostgreSQL: the
 * coalesced reads of one record answer each reader with its own row, and the reads waiting
 * beyond records_get_waiting are refused at once (PHR_EFULL: the route's 503) while the
 * pool's connections are all busy.
 *
 * Environment: PHR_TEST_PG_CONNINFO as in test_db.c (the fixture of pgtest.h; without a
 * server the test FAILS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgtest.h"

#include "config.h"
#include "err.h"
#include "../../services/records/records.h"

#define T_POOL 2     /* connections */
#define T_BATCH 4    /* reads per statement */
#define T_WAITING 16 /* the smallest PHR_RECORDS_GET_WAITING */
/*
 * Reads sent while the pool is held: the first leaves alone (nothing was in flight), the
 * next fill a batch, which leaves at once (a second connection); later ones wait, since a
 * partial batch leaves only when nothing is in flight.
 */
#define T_SENT (1 + T_BATCH)
#define T_READS (T_SENT + T_WAITING)

#define T_PATIENT "01890a5d-ac96-774b-bcce-b30209900001"
#define T_OTHER "01890a5d-ac96-774b-bcce-b30209900002"

typedef struct {
    int called;
    int rc;
    int found;   /* the row matched */
    char id[37]; /* its id */
} t_read_t;

static void
t_read_cb(int rc, const PGresult *res, int row, void *ud)
{
    t_read_t *t = ud;

    t->called++;
    t->rc = rc;
    t->found = rc == PHR_OK && row >= 0;
    if (t->found) {
        snprintf(t->id, sizeof(t->id), "%s", PQgetvalue(res, row, REC_COL_ID));
    }
}

/* How many of |reads| were answered. */
static int
t_answered(const t_read_t *reads, int n)
{
    int k = 0;

    for (int i = 0; i < n; i++) {
        k += reads[i].called;
    }
    return k;
}

static int t_sleeps_done;

static void
t_sleep_cb(int rc, PGresult *res, void *ud)
{
    assert_int_equal(rc, PHR_OK);
    t_sleeps_done++;
}

/* The records table of 003_records.sql (the columns REC_COLUMNS reads) with T_READS rows. */
static void
t_records(void)
{
    pgt_side_exec("CREATE TABLE records (id uuid PRIMARY KEY, patient_id uuid NOT NULL, "
                  "type text NOT NULL, measured_at timestamptz NOT NULL, source text NOT NULL, "
                  "org_id uuid, key_id integer NOT NULL, sealed bytea NOT NULL, "
                  "created_by uuid NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
                  "updated_at timestamptz NOT NULL DEFAULT now(), "
                  "version integer NOT NULL DEFAULT 1)");
    pgt_side_exec("INSERT INTO records (id, patient_id, type, measured_at, source, key_id, "
                  "sealed, created_by) SELECT ('01890a5d-ac96-774b-bcce-' || "
                  "lpad(g::text, 12, '0'))::uuid, '" T_PATIENT "', 'pulse', now(), 'self', 1, "
                  "'\\x00', '" T_PATIENT "' FROM generate_series(1, 64) g");
}

static void
t_record_id(int i, char out[37])
{
    snprintf(out, 37, "01890a5d-ac96-774b-bcce-%012d", i + 1);
}

/* Every connection of the pool held by a pg_sleep of 0.4 s. */
static void
t_hold_pool(db_pool_t *db)
{
    static const char sql[] = "SELECT pg_sleep(0.4)";

    db_stats_t st;

    PGT_WAIT_UNTIL((db_pool_stats(db, &st), st.connected == T_POOL), 5000);
    assert_int_equal(st.connected, T_POOL);
    t_sleeps_done = 0;
    for (int i = 0; i < T_POOL; i++) {
        assert_int_equal(db_query(db, sql, 0, NULL, t_sleep_cb, NULL), PHR_OK);
    }
    pgt_spin(50);
    db_pool_stats(db, &st);
    assert_int_equal(st.busy, T_POOL); /* each connection runs one */
    assert_int_equal(t_sleeps_done, 0);
}

/* The records table, a pool of T_POOL connections all held (t_hold_pool) in |*db|, and a
 * batcher on it. */
static rgb_t *
t_setup(db_pool_t **db)
{
    static const cfg_t cfg = {
        .pg_pool_size = T_POOL, .records_get_batch = T_BATCH, .records_get_waiting = T_WAITING};

    t_records();
    *db = pgt_ready_pool(T_POOL, 5000, 256);
    rgb_t *b = rgb_create(*db, &cfg);
    assert_non_null(b);
    t_hold_pool(*db);
    return b;
}

static void
test_waiting_limit(void **state)
{
    t_read_t reads[T_READS + 2];
    char id[37];
    db_pool_t *db;

    memset(reads, 0, sizeof(reads));
    rgb_t *b = t_setup(&db);

    /* T_SENT reads leave, T_WAITING reads wait: nobody is answered yet. */
    for (int i = 0; i < T_READS; i++) {
        t_record_id(i, id);
        rgb_get(b, id, i % 5 == 4 ? T_OTHER : T_PATIENT, t_read_cb, &reads[i]);
        assert_int_equal(reads[i].called, 0);
    }
    /* One more waiting read: refused at once, and again after the loop ran meanwhile. */
    t_record_id(T_READS, id);
    rgb_get(b, id, T_PATIENT, t_read_cb, &reads[T_READS]);
    assert_int_equal(reads[T_READS].called, 1);
    assert_int_equal(reads[T_READS].rc, PHR_EFULL);
    pgt_spin(100);
    assert_int_equal(t_sleeps_done, 0);
    rgb_get(b, id, T_PATIENT, t_read_cb, &reads[T_READS + 1]);
    assert_int_equal(reads[T_READS + 1].called, 1);
    assert_int_equal(reads[T_READS + 1].rc, PHR_EFULL);
    for (int i = 0; i < T_READS; i++) {
        assert_int_equal(reads[i].called, 0);
    }

    /* The pool frees: every accepted read is answered once, with its own patient's row. */
    PGT_WAIT_UNTIL(t_answered(reads, T_READS) == T_READS && t_sleeps_done == T_POOL, 5000);
    assert_int_equal(t_sleeps_done, T_POOL);
    for (int i = 0; i < T_READS; i++) {
        assert_int_equal(reads[i].called, 1);
        assert_int_equal(reads[i].rc, PHR_OK);
        t_record_id(i, id);
        assert_int_equal(reads[i].found, i % 5 != 4);
        if (reads[i].found) {
            assert_string_equal(reads[i].id, id);
        }
    }
    assert_int_equal(reads[T_READS].called, 1);

    /* Nothing waits any more: the next read is accepted. */
    t_read_t again = {0};
    t_record_id(0, id);
    rgb_get(b, id, T_PATIENT, t_read_cb, &again);
    PGT_WAIT_UNTIL(again.called != 0, 5000);
    assert_int_equal(again.called, 1);
    assert_int_equal(again.rc, PHR_OK);
    assert_int_equal(again.found, 1);

    rgb_free(b);
    db_pool_free(db);
}

/* rgb_free with reads waiting: they get PHR_ECLOSED now, the batches in flight finish. */
static void
test_free_with_waiting(void **state)
{
    t_read_t reads[T_SENT + T_BATCH];
    char id[37];
    db_pool_t *db;

    memset(reads, 0, sizeof(reads));
    rgb_t *b = t_setup(&db);
    for (int i = 0; i < T_SENT + T_BATCH; i++) {
        t_record_id(i, id);
        rgb_get(b, id, T_PATIENT, t_read_cb, &reads[i]);
    }
    rgb_free(b);
    for (int i = T_SENT; i < T_SENT + T_BATCH; i++) {
        assert_int_equal(reads[i].called, 1);
        assert_int_equal(reads[i].rc, PHR_ECLOSED);
    }
    PGT_WAIT_UNTIL(t_answered(reads, T_SENT) == T_SENT && t_sleeps_done == T_POOL, 5000);
    for (int i = 0; i < T_SENT; i++) {
        assert_int_equal(reads[i].called, 1);
        assert_int_equal(reads[i].rc, PHR_OK);
        assert_int_equal(reads[i].found, 1);
    }
    db_pool_free(db);
}

/* The batch capacity and the configuration's bound are one constant. */
static void
test_batch_bound(void **state)
{
    cfg_t cfg;
    char err[256];

    setenv("PHR_RECORDS_GET_BATCH", "65", 1);
    assert_int_equal(cfg_load(&cfg, "records", err, sizeof(err)), PHR_EINVAL);
    assert_non_null(strstr(err, "PHR_RECORDS_GET_BATCH"));
    setenv("PHR_RECORDS_GET_BATCH", "64", 1);
    assert_int_equal(cfg_load(&cfg, "records", err, sizeof(err)), PHR_OK);
    assert_int_equal(cfg.records_get_batch, CFG_RECORDS_GET_BATCH_MAX);
    unsetenv("PHR_RECORDS_GET_BATCH");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_waiting_limit),
        PGT_TEST(test_free_with_waiting),
        cmocka_unit_test(test_batch_bound),
    };

    pgt_open("test_records_getbatch", "rgb");
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgt_close();
    return rc;
}
