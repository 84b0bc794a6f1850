/*
 * test_records_coalesce.c - services/records/coalesce.c with a fake send: items leave
 * oldest first, a full batch at once and a partial one only when nothing is in flight, at
 * most |slots| batches in flight, the waiting limit, send errors, the retry hook and
 * rco_free with items waiting and in flight. Statements "end" when the test calls rco_done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "../../services/records/coalesce.h"

#define T_ITEMS 64

typedef struct {
    int id;
} t_item_t;

static char t_log[1024];          /* what was sent, in order: "[0][1,2,3,4]..." */
static rco_batch_t *t_flight[64]; /* batches sent, in order */
static int t_nflight;
static int t_send_rc;          /* what the fake send returns */
static int t_rc[T_ITEMS];      /* each item's answer */
static int t_answers[T_ITEMS]; /* how often each was answered */
static int t_nanswered;
static int t_retry_rc;      /* the rc the retry hook resends on */
static int t_answered_sent; /* t_nanswered when the last batch was sent */

static void
t_reset(void)
{
    memset(t_log, 0, sizeof(t_log));
    t_nflight = 0;
    t_send_rc = PHR_OK;
    memset(t_answers, 0, sizeof(t_answers));
    t_nanswered = 0;
    t_retry_rc = PHR_EINVAL;
}

static int
t_send(void *ctx, rco_batch_t *bt)
{
    const t_item_t *items = (const t_item_t *)bt->items;
    size_t len = strlen(t_log);

    assert_ptr_equal(ctx, &t_log);
    assert_true(bt->n >= 1);
    for (int i = 0; i < bt->n; i++) {
        len += (size_t)snprintf(t_log + len, sizeof(t_log) - len, "%c%d", i == 0 ? '[' : ',',
                                items[i].id);
    }
    snprintf(t_log + len, sizeof(t_log) - len, "]");
    t_answered_sent = t_nanswered;
    if (t_send_rc == PHR_OK) {
        t_flight[t_nflight++] = bt;
    }
    return t_send_rc;
}

static void
t_answer(rco_batch_t *bt, int rc, const PGresult *res)
{
    const t_item_t *items = (const t_item_t *)bt->items;

    assert_null(res);
    for (int i = 0; i < bt->n; i++) {
        t_rc[items[i].id] = rc;
        t_answers[items[i].id]++;
        t_nanswered++;
    }
}

/* A batch that failed with t_retry_rc: each item again alone. */
static int
t_retry(rco_batch_t *bt, int rc)
{
    const t_item_t *items = (const t_item_t *)bt->items;

    if (rc != t_retry_rc || bt->n < 2) {
        return 0;
    }
    for (int i = 0; i < bt->n; i++) {
        assert_int_equal(rco_send_one(bt->owner, &items[i]), PHR_OK);
    }
    return 1;
}

static rco_t *
t_coalescer(int per_batch, int waiting, int slots, int retry)
{
    rco_config_t c = {.item_size = sizeof(t_item_t),
                      .per_batch = per_batch,
                      .max_batch = 8,
                      .waiting = waiting,
                      .slots = slots,
                      .ctx = &t_log,
                      .send = t_send,
                      .answer = t_answer,
                      .retry = retry ? t_retry : NULL};
    rco_t *q;

    t_reset();
    q = rco_create(&c);
    assert_non_null(q);
    return q;
}

/* Queues item |id|: the rc of rco_slot (PHR_OK when queued). */
static int
t_add(rco_t *q, int id)
{
    int rc = PHR_OK;
    t_item_t *it = rco_slot(q, &rc);

    if (it == NULL) {
        assert_int_not_equal(rc, PHR_OK);
        return rc;
    }
    it->id = id;
    rco_push(q);
    return PHR_OK;
}

/* Ends statement |i| (in the order sent) with |rc|. */
static void
t_end(int i, int rc)
{
    assert_true(i < t_nflight);
    rco_done(rc, NULL, t_flight[i]);
}

/* Batches of 4, 2 in flight: full ones leave at once, a partial one when nothing is in flight. */
static void
test_batch_rule(void **state)
{
    rco_t *q = t_coalescer(4, 100, 2, 0);

    assert_int_equal(t_add(q, 0), PHR_OK); /* alone: nothing in flight */
    assert_string_equal(t_log, "[0]");
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    assert_string_equal(t_log, "[0]"); /* partial, one in flight: waits */
    assert_int_equal(t_add(q, 4), PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4]"); /* full: leaves, second slot */
    for (int i = 5; i <= 13; i++) {
        assert_int_equal(t_add(q, i), PHR_OK); /* both slots busy: wait */
    }
    assert_string_equal(t_log, "[0][1,2,3,4]");
    assert_int_equal(t_nanswered, 0);

    /* The next full batch leaves before the ended one's items are answered. */
    t_end(0, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6,7,8]");
    assert_int_equal(t_answered_sent, 0);
    assert_int_equal(t_answers[0], 1);
    assert_int_equal(t_nanswered, 1);
    t_end(1, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6,7,8][9,10,11,12]");
    t_end(2, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6,7,8][9,10,11,12]"); /* [13] partial, 1 busy */
    assert_int_equal(t_add(q, 14), PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6,7,8][9,10,11,12]");
    t_end(3, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6,7,8][9,10,11,12][13,14]"); /* idle: leaves */
    t_end(4, PHR_OK);
    assert_int_equal(t_nanswered, 15);
    for (int i = 0; i <= 14; i++) {
        assert_int_equal(t_answers[i], 1);
        assert_int_equal(t_rc[i], PHR_OK);
    }
    rco_free(q);
}

/* per_batch outside 1..max_batch is max_batch; slots below 1 are 1. */
static void
test_bounds(void **state)
{
    rco_t *q = t_coalescer(0, 100, 0, 0);

    for (int i = 0; i <= 9; i++) {
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    assert_string_equal(t_log, "[0]"); /* one slot: [1..8] is full but waits */
    t_end(0, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4,5,6,7,8]");
    t_end(1, PHR_EGENERIC);
    assert_string_equal(t_log, "[0][1,2,3,4,5,6,7,8][9]");
    t_end(2, PHR_OK);
    assert_int_equal(t_rc[1], PHR_EGENERIC);
    assert_int_equal(t_rc[8], PHR_EGENERIC);
    assert_int_equal(t_rc[9], PHR_OK);
    assert_int_equal(t_nanswered, 10);
    rco_free(q);

    q = t_coalescer(9, 100, 1, 0);
    for (int i = 0; i <= 9; i++) {
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    t_end(0, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4,5,6,7,8]");
    rco_free(q);
    assert_int_equal(t_rc[9], PHR_ECLOSED);
    t_end(1, PHR_OK);
    assert_int_equal(t_nanswered, 10);
}

/* More than |waiting| items waiting: PHR_EFULL at once, until some leave. */
static void
test_waiting_limit(void **state)
{
    rco_t *q = t_coalescer(4, 5, 1, 0);

    for (int i = 0; i <= 5; i++) { /* one in flight, five waiting */
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    assert_int_equal(t_add(q, 6), PHR_EFULL);
    assert_int_equal(t_add(q, 6), PHR_EFULL);
    assert_int_equal(t_nanswered, 0); /* a refusal answers nobody: the caller does */
    t_end(0, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4]");
    assert_int_equal(t_add(q, 6), PHR_OK); /* one waits: room again */
    t_end(1, PHR_OK);
    assert_string_equal(t_log, "[0][1,2,3,4][5,6]");
    t_end(2, PHR_OK);
    assert_int_equal(t_nanswered, 7);
    rco_free(q);
}

/* A send that fails answers its items with its error at once; nothing stays in flight. */
static void
test_send_error(void **state)
{
    rco_t *q = t_coalescer(4, 100, 1, 0);

    t_send_rc = PHR_EUNAVAIL;
    assert_int_equal(t_add(q, 0), PHR_OK);
    assert_int_equal(t_answers[0], 1);
    assert_int_equal(t_rc[0], PHR_EUNAVAIL);
    t_send_rc = PHR_OK;
    assert_int_equal(t_add(q, 1), PHR_OK); /* idle again: leaves at once */
    assert_string_equal(t_log, "[0][1]");
    t_end(0, PHR_OK);
    assert_int_equal(t_rc[1], PHR_OK);
    rco_free(q);
}

/* The retry hook takes over a failed batch: its items go again alone, past the slots. */
static void
test_retry(void **state)
{
    rco_t *q = t_coalescer(4, 100, 1, 1);

    for (int i = 0; i <= 5; i++) {
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    t_end(0, PHR_EINVAL); /* one item: answered, not retried */
    assert_int_equal(t_rc[0], PHR_EINVAL);
    assert_string_equal(t_log, "[0][1,2,3,4]");
    t_end(1, PHR_EINVAL); /* resent alone before [5] leaves: [5] then waits (4 in flight) */
    assert_string_equal(t_log, "[0][1,2,3,4][1][2][3][4]");
    assert_int_equal(t_answers[1], 0);
    for (int i = 2; i <= 5; i++) { /* statement i: item i - 1; item 3 fails alone too */
        t_end(i, i == 4 ? PHR_EINVAL : PHR_OK);
    }
    assert_string_equal(t_log, "[0][1,2,3,4][1][2][3][4][5]");
    t_end(6, PHR_EUNAVAIL); /* not a retry's rc */
    assert_int_equal(t_nanswered, 6);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(t_answers[i], 1);
        assert_int_equal(t_rc[i], i == 3 ? PHR_EINVAL : i == 5 ? PHR_EUNAVAIL : PHR_OK);
    }
    rco_free(q);
}

/* rco_free: waiting items get PHR_ECLOSED now; those in flight their own rc, nothing more leaves. */
static void
test_free_with_waiting(void **state)
{
    rco_t *q = t_coalescer(2, 100, 2, 1);

    for (int i = 0; i <= 6; i++) { /* [0] [1,2] in flight; [3,4] [5,6] wait */
        assert_int_equal(t_add(q, i), PHR_OK);
    }
    assert_string_equal(t_log, "[0][1,2]");
    rco_free(q);
    assert_int_equal(t_nanswered, 4);
    for (int i = 3; i <= 6; i++) {
        assert_int_equal(t_rc[i], PHR_ECLOSED);
    }
    t_end(1, PHR_EINVAL); /* closing: no retry, no pump */
    assert_int_equal(t_rc[1], PHR_EINVAL);
    assert_int_equal(t_rc[2], PHR_EINVAL);
    t_end(0, PHR_OK); /* the last one frees the coalescer (ASan: no leak, no use after free) */
    assert_int_equal(t_rc[0], PHR_OK);
    assert_string_equal(t_log, "[0][1,2]");
    for (int i = 0; i <= 6; i++) {
        assert_int_equal(t_answers[i], 1);
    }

    /* Nothing in flight: rco_free frees at once; NULL is a no-op. */
    q = t_coalescer(2, 100, 1, 0);
    rco_free(q);
    rco_free(NULL);
    assert_int_equal(t_nanswered, 0);
}

/* A refused item leaves no empty batch behind that would be sent. */
static void
test_slot_unused(void **state)
{
    rco_t *q = t_coalescer(2, 100, 1, 0);
    int rc;

    assert_int_equal(t_add(q, 0), PHR_OK);
    assert_int_equal(t_add(q, 1), PHR_OK);
    assert_int_equal(t_add(q, 2), PHR_OK);
    assert_non_null(rco_slot(q, &rc)); /* a new, empty batch: never pushed */
    t_end(0, PHR_OK);
    assert_string_equal(t_log, "[0][1,2]");
    t_end(1, PHR_OK);
    assert_string_equal(t_log, "[0][1,2]"); /* the empty one did not leave */
    assert_int_equal(t_add(q, 3), PHR_OK);
    assert_string_equal(t_log, "[0][1,2][3]");
    t_end(2, PHR_OK);
    assert_int_equal(t_nanswered, 4);
    rco_free(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_rule),    cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_waiting_limit), cmocka_unit_test(test_send_error),
        cmocka_unit_test(test_retry),         cmocka_unit_test(test_free_with_waiting),
        cmocka_unit_test(test_slot_unused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
