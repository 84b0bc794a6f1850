/*
 * test_records_insbatch.c - services/records/insbatch.c with the records service's own
 * statements (rec_creates_create) against a real PostgreSQL: coalescing, the retry of a
 * failed batch one create at a time, the waiting limit.
 *
 * Environment: PHR_TEST_PG_CONNINFO (see pgtest.h; without it the test FAILS). Every test
 * runs in its own schema made by the records service's migrations.
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
#include "uuid.h"

extern const db_migration_t records_migrations[];

#define T_MAX 200
#define T_PATIENT_A "0190a000-0000-7000-8000-00000000000a"
#define T_PATIENT_B "0190a000-0000-7000-8000-00000000000b"
/* a note with the characters an array literal must escape */
#define T_NOTE "a\\\"b\\\\c,{}"

typedef struct {
    char id[37];
    char key[48];
    char body[160];
    int rc;
    int done;
    int own_row; /* the callback's row carried this create's id */
} t_create_t;

static t_create_t t_creates[T_MAX];
static int t_answered;

static void
t_cb(int rc, const PGresult *res, int row, void *ud)
{
    t_create_t *c = ud;

    c->rc = rc;
    c->done++;
    c->own_row = rc == PHR_OK && res != NULL && row >= 0 && row < PQntuples(res) &&
                 strcmp(PQgetvalue(res, row, REC_COL_ID), c->id) == 0;
    t_answered++;
}

/* Adds create |i| (patient A or B by parity, source |source|) to |b|. */
static void
t_add(rib_t *b, int i, const char *source)
{
    t_create_t *c = &t_creates[i];
    char id[37];

    assert_int_equal(uuid7(id), PHR_OK);
    memcpy(c->id, id, sizeof(id));
    snprintf(c->key, sizeof(c->key), "t-%s", id);
    snprintf(c->body, sizeof(c->body), "{\"id\":\"%s\",\"note\":\"%s\"}", id, T_NOTE);
    const char *pid = i % 2 == 0 ? T_PATIENT_A : T_PATIENT_B;
    const char *p[RIB_NPARAMS] = {c->id,   pid,    "pulse", "1795136400000", "2026-11-20",
                                  source,  NULL,   "1",     "\\x0102ff",     pid,
                                  "audit", c->key, c->body};
    rib_add(b, p, t_cb, c);
}

/* A pool with the records schema, the batcher, and a counter of INSERT statements. */
static db_pool_t *
t_pool(int size)
{
    db_pool_t *p = pgt_pool(g_pgt.ci, size, 5000, 10000, records_migrations);

    PGT_WAIT_UNTIL(db_pool_ready(p), 10000);
    assert_true(db_pool_ready(p));
    pgt_side_exec("CREATE TABLE t_stmts (n int); "
                  "CREATE FUNCTION t_count() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO t_stmts VALUES (1); RETURN NULL; END$$; "
                  "CREATE TRIGGER t_count AFTER INSERT ON records FOR EACH STATEMENT "
                  "EXECUTE FUNCTION t_count()");
    memset(t_creates, 0, sizeof(t_creates));
    t_answered = 0;
    return p;
}

/* INSERT statements on records so far (t_pool's trigger). */
static long
t_stmts(void)
{
    return pgt_side_long("SELECT count(*) FROM t_stmts");
}

static rib_t *
t_batcher(db_pool_t *p, int per_batch, int waiting, int slots)
{
    static cfg_t cfg;

    cfg.records_insert_batch = per_batch;
    cfg.records_insert_waiting = waiting;
    cfg.pg_pool_size = slots;
    rib_t *b = rec_creates_create(p, &cfg);
    assert_non_null(b);
    return b;
}

/* Every create |i| < n with rc PHR_OK stored once, with its outbox row, as it was sent. */
static void
t_check_stored(int n, int bad)
{
    for (int i = 0; i < n; i++) {
        const t_create_t *c = &t_creates[i];
        long want = i == bad ? 0 : 1;
        assert_int_equal(c->done, 1);
        assert_int_equal(pgt_side_long("SELECT count(*) FROM records WHERE id = '%s' AND "
                                       "patient_id = '%s' AND sealed = '\\x0102ff'::bytea AND "
                                       "measured_at = '2026-11-20 01:00:00+00' AND "
                                       "local_day = '2026-11-20' AND source = 'self'",
                                       c->id, i % 2 == 0 ? T_PATIENT_A : T_PATIENT_B),
                         want);
        assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE idempotency_key = '%s' "
                                       "AND topic = 'audit' AND body->>'id' = '%s' "
                                       "AND body->>'note' = 'a\"b\\c,{}'",
                                       c->key, c->id),
                         want);
    }
}

/* 200 creates at once for two patients: few statements, each row and event stored once. */
static void
test_coalesced(void **state)
{
    db_pool_t *p = t_pool(4);
    rib_t *b = t_batcher(p, 32, 4096, 4);

    for (int i = 0; i < T_MAX; i++) {
        t_add(b, i, "self");
    }
    PGT_WAIT_UNTIL(t_answered == T_MAX, 20000);
    assert_int_equal(t_answered, T_MAX);
    for (int i = 0; i < T_MAX; i++) {
        assert_int_equal(t_creates[i].rc, PHR_OK);
        assert_true(t_creates[i].own_row);
    }
    t_check_stored(T_MAX, -1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM records"), T_MAX);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), T_MAX);
    assert_int_equal(
        pgt_side_long("SELECT count(*) FROM records WHERE patient_id = '%s'", T_PATIENT_A),
        T_MAX / 2);
    /* one alone, then full batches of 32 (4 in flight), then the rest: 8 statements */
    long stmts = t_stmts();
    assert_true(stmts >= 1 && stmts <= 8);
    rib_free(b);
    db_pool_free(p);
}

/* A batch with one create that fails in SQL: the others stored, only that one fails. */
static void
test_one_bad(void **state)
{
    db_pool_t *p = t_pool(1);
    rib_t *b = t_batcher(p, 8, 4096, 1);
    const int n = 8, bad = 4;

    for (int i = 0; i < n; i++) { /* the first leaves alone; 1..7 wait as one batch */
        t_add(b, i, i == bad ? "bogus" : "self");
    }
    PGT_WAIT_UNTIL(t_answered == n, 10000);
    assert_int_equal(t_answered, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(t_creates[i].rc, i == bad ? PHR_EINVAL : PHR_OK);
        assert_true(i == bad || t_creates[i].own_row);
    }
    t_check_stored(n, bad);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM records"), n - 1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), n - 1);
    /* the first alone, the batch failed (nothing counted), then its 6 good ones alone */
    assert_int_equal(t_stmts(), 1 + (n - 2));
    rib_free(b);
    db_pool_free(p);
}

/* Beyond the waiting limit a create fails with PHR_EFULL at once; the others are stored. */
static void
test_waiting_limit(void **state)
{
    db_pool_t *p = t_pool(1);
    rib_t *b = t_batcher(p, 64, 16, 1);

    for (int i = 0; i < 17; i++) { /* one in flight, 16 waiting */
        t_add(b, i, "self");
    }
    assert_int_equal(t_answered, 0);
    t_add(b, 17, "self");
    assert_int_equal(t_answered, 1);
    assert_int_equal(t_creates[17].rc, PHR_EFULL);
    PGT_WAIT_UNTIL(t_answered == 18, 10000);
    for (int i = 0; i < 17; i++) {
        assert_int_equal(t_creates[i].rc, PHR_OK);
    }
    t_check_stored(17, -1);
    assert_int_equal(t_stmts(), 2);
    rib_free(b);
    db_pool_free(p);
}

/* rib_free answers waiting creates with PHR_ECLOSED; the one in flight still completes. */
static void
test_free_waiting(void **state)
{
    db_pool_t *p = t_pool(1);
    rib_t *b = t_batcher(p, 64, 16, 1);

    for (int i = 0; i < 3; i++) {
        t_add(b, i, "self");
    }
    rib_free(b);
    assert_int_equal(t_answered, 2);
    assert_int_equal(t_creates[1].rc, PHR_ECLOSED);
    assert_int_equal(t_creates[2].rc, PHR_ECLOSED);
    PGT_WAIT_UNTIL(t_answered == 3, 10000);
    assert_int_equal(t_creates[0].rc, PHR_OK);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM records"), 1);
    db_pool_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_coalesced),
        PGT_TEST(test_one_bad),
        PGT_TEST(test_waiting_limit),
        PGT_TEST(test_free_waiting),
    };

    pgt_open("test_records_insbatch", "insbatch");
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgt_close();
    return rc;
}
