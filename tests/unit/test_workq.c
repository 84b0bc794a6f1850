/*
 * test_workq.c - unit tests of common/workq.c (no external services needed).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <event2/event.h>

#include "err.h"
#include "workq.h"

static pthread_t t_loop_thread;

/* Runs the loop until *flag becomes non-zero or |ms| pass. */
static void
t_run_until(struct event_base *base, const int *flag, int ms)
{
    int64_t end = t_now_ms() + ms;
    while (!*flag && t_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (!*flag) {
            t_sleep_ms(1);
        }
    }
}

/* ---- 1000 jobs over 2 threads ---------------------------------------- */

#define T_MANY 1000

typedef struct {
    int work_runs;
    int work_on_loop; /* work ran on the loop thread: wrong */
    int done_calls;
    int done_rc;
    int done_off_loop; /* done ran elsewhere than the loop thread: wrong */
} t_job_t;

static int t_many_done;
static struct event_base *t_many_base;

static void
t_many_work(void *arg)
{
    t_job_t *j = arg;
    __atomic_add_fetch(&j->work_runs, 1, __ATOMIC_SEQ_CST);
    if (pthread_equal(pthread_self(), t_loop_thread)) {
        j->work_on_loop = 1;
    }
}

static void
t_many_done_cb(int rc, void *arg)
{
    t_job_t *j = arg;
    j->done_calls++;
    j->done_rc = rc;
    if (!pthread_equal(pthread_self(), t_loop_thread)) {
        j->done_off_loop = 1;
    }
    if (++t_many_done == T_MANY) {
        event_base_loopbreak(t_many_base);
    }
}

static void
test_workq_many_jobs(void **state)
{
    struct event_base *base = event_base_new();
    t_job_t *jobs = calloc(T_MANY, sizeof(*jobs));
    assert_non_null(base);
    assert_non_null(jobs);
    t_loop_thread = pthread_self();
    t_many_base = base;
    t_many_done = 0;

    workq_t *wq = workq_create(base, 2, T_MANY);
    assert_non_null(wq);
    for (int i = 0; i < T_MANY; i++) {
        assert_int_equal(workq_submit(wq, t_many_work, t_many_done_cb, &jobs[i]), PHR_OK);
    }
    assert_true(workq_pending(wq) > 0);

    struct timeval guard = {10, 0};
    event_base_loopexit(base, &guard);
    event_base_dispatch(base);

    assert_int_equal(t_many_done, T_MANY);
    for (int i = 0; i < T_MANY; i++) {
        assert_int_equal(jobs[i].work_runs, 1);
        assert_int_equal(jobs[i].work_on_loop, 0);
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].done_rc, PHR_OK);
        assert_int_equal(jobs[i].done_off_loop, 0);
    }
    assert_int_equal(workq_pending(wq), 0);
    workq_free(wq);
    /* Nothing delivered twice by free. */
    for (int i = 0; i < T_MANY; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
    }
    free(jobs);
    event_base_free(base);
}

/* ---- a gate that blocks a job until opened --------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int running;
    int open;
} t_gate_t;

static t_gate_t t_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void
t_gate_reset(void)
{
    pthread_mutex_lock(&t_gate.mu);
    t_gate.running = 0;
    t_gate.open = 0;
    pthread_mutex_unlock(&t_gate.mu);
}

static void
t_gate_work(void *arg)
{
    pthread_mutex_lock(&t_gate.mu);
    t_gate.running = 1;
    pthread_cond_broadcast(&t_gate.cond);
    while (!t_gate.open) {
        pthread_cond_wait(&t_gate.cond, &t_gate.mu);
    }
    pthread_mutex_unlock(&t_gate.mu);
}

static void
t_gate_wait_running(void)
{
    pthread_mutex_lock(&t_gate.mu);
    while (!t_gate.running) {
        pthread_cond_wait(&t_gate.cond, &t_gate.mu);
    }
    pthread_mutex_unlock(&t_gate.mu);
}

static void
t_gate_open(void)
{
    pthread_mutex_lock(&t_gate.mu);
    t_gate.open = 1;
    pthread_cond_broadcast(&t_gate.cond);
    pthread_mutex_unlock(&t_gate.mu);
}

static void *
t_gate_open_later(void *arg)
{
    t_sleep_ms(150);
    t_gate_open();
    return NULL;
}

typedef struct {
    int calls;
    int rc;
    int order; /* sequence number of the call */
} t_res_t;

static int t_seq;

static void
t_res_done(int rc, void *arg)
{
    t_res_t *r = arg;
    r->calls++;
    r->rc = rc;
    r->order = ++t_seq;
}

static void
t_noop_work(void *arg)
{
}

/* ---- queue full ------------------------------------------------------ */

static void
test_workq_full(void **state)
{
    struct event_base *base = event_base_new();
    t_res_t blocker = {0}, q1 = {0}, q2 = {0}, rejected = {0};
    assert_non_null(base);
    t_gate_reset();

    workq_t *wq = workq_create(base, 1, 2);
    assert_non_null(wq);
    assert_int_equal(workq_submit(wq, t_gate_work, t_res_done, &blocker), PHR_OK);
    t_gate_wait_running();
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &q1), PHR_OK);
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &q2), PHR_OK);
    assert_int_equal(workq_pending(wq), 3);
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &rejected), PHR_EFULL);
    assert_int_equal(workq_pending(wq), 3); /* nothing queued */

    t_gate_open();
    t_run_until(base, &q2.calls, 5000);
    assert_int_equal(blocker.calls, 1);
    assert_int_equal(q1.calls, 1);
    assert_int_equal(q2.calls, 1);
    assert_int_equal(blocker.rc, PHR_OK);
    assert_int_equal(q2.rc, PHR_OK);
    assert_true(q1.order < q2.order); /* FIFO with one thread */

    /* Room again after the queue drained. */
    t_res_t again = {0};
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &again), PHR_OK);
    t_run_until(base, &again.calls, 5000);
    assert_int_equal(again.calls, 1);

    workq_free(wq);
    assert_int_equal(rejected.calls, 0); /* |done| of a refused job never runs */
    event_base_free(base);
}

/* ---- free with queued jobs ------------------------------------------- */

static void
test_workq_free_queued(void **state)
{
    struct event_base *base = event_base_new();
    t_res_t running = {0}, q1 = {0}, q2 = {0};
    pthread_t opener;
    assert_non_null(base);
    t_gate_reset();
    t_seq = 0;

    workq_t *wq = workq_create(base, 1, 8);
    assert_non_null(wq);
    assert_int_equal(workq_submit(wq, t_gate_work, t_res_done, &running), PHR_OK);
    t_gate_wait_running();
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &q1), PHR_OK);
    assert_int_equal(workq_submit(wq, t_noop_work, t_res_done, &q2), PHR_OK);

    /* The running job finishes 150 ms into workq_free, which must wait for it. */
    assert_int_equal(pthread_create(&opener, NULL, t_gate_open_later, NULL), 0);
    int64_t t0 = t_now_ms();
    workq_free(wq);
    int64_t took = t_now_ms() - t0;
    pthread_join(opener, NULL);

    assert_true(took >= 100);
    assert_int_equal(running.calls, 1);
    assert_int_equal(running.rc, PHR_OK);
    assert_int_equal(q1.calls, 1);
    assert_int_equal(q1.rc, PHR_ECLOSED);
    assert_int_equal(q2.calls, 1);
    assert_int_equal(q2.rc, PHR_ECLOSED);
    assert_true(running.order < q1.order);
    event_base_free(base);
}

/* ---- free from inside a done callback -------------------------------- */

static workq_t *t_self_wq;
static t_res_t t_self_other;

static void
t_free_in_done(int rc, void *arg)
{
    t_res_done(rc, arg);
    workq_free(t_self_wq);
}

static void
test_workq_free_in_done(void **state)
{
    struct event_base *base = event_base_new();
    t_res_t first = {0};
    assert_non_null(base);
    memset(&t_self_other, 0, sizeof(t_self_other));
    t_gate_reset();

    t_self_wq = workq_create(base, 1, 4);
    assert_non_null(t_self_wq);
    assert_int_equal(workq_submit(t_self_wq, t_noop_work, t_free_in_done, &first), PHR_OK);
    t_run_until(base, &first.calls, 5000);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.rc, PHR_OK);
    /* The pool is gone; the loop must still run without touching it. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}

/* ---- loop stays responsive ------------------------------------------- */

static int t_timer_fired;
static int t_slow_done;
static int t_timer_before_done;

static void
t_slow_work(void *arg)
{
    t_sleep_ms(300);
}

static void
t_slow_done_cb(int rc, void *arg)
{
    t_slow_done = 1;
}

static void
t_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    t_timer_fired = 1;
    t_timer_before_done = !t_slow_done;
}

static void
test_workq_loop_responsive(void **state)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    t_timer_fired = t_slow_done = t_timer_before_done = 0;

    workq_t *wq = workq_create(base, 1, 4);
    assert_non_null(wq);
    struct event *tm = evtimer_new(base, t_timer_cb, NULL);
    struct timeval fifty = {0, 50000};
    evtimer_add(tm, &fifty);

    int64_t t0 = t_now_ms();
    assert_int_equal(workq_submit(wq, t_slow_work, t_slow_done_cb, NULL), PHR_OK);
    t_run_until(base, &t_slow_done, 5000);
    int64_t took = t_now_ms() - t0;

    assert_int_equal(t_timer_fired, 1);
    assert_int_equal(t_timer_before_done, 1);
    assert_int_equal(t_slow_done, 1);
    assert_true(took >= 290);
    event_free(tm);
    workq_free(wq);
    event_base_free(base);
}

/* ---- jobs no longer wanted (workq_submit_live) ------------------------ */

/* A job whose |wanted| the test turns off, as a request the client reset. */
typedef struct {
    t_res_t res;
    int wanted;
    int runs;     /* |work| ran (atomic) */
    int asked;    /* |live| calls */
    int off_loop; /* |live| ran off the loop thread: wrong */
} t_live_t;

static int
t_live_fn(void *arg)
{
    t_live_t *l = arg;
    l->asked++;
    if (!pthread_equal(pthread_self(), t_loop_thread)) {
        l->off_loop = 1;
    }
    return l->wanted;
}

static void
t_live_work(void *arg)
{
    t_live_t *l = arg;
    __atomic_add_fetch(&l->runs, 1, __ATOMIC_SEQ_CST);
}

static void
t_live_gate_work(void *arg)
{
    t_live_work(arg);
    t_gate_work(arg);
}

static void
t_live_done(int rc, void *arg)
{
    t_live_t *l = arg;
    t_res_done(rc, &l->res);
}

static void
test_workq_drop_queued(void **state)
{
    struct event_base *base = event_base_new();
    t_live_t blocker = {.wanted = 1}, gone = {.wanted = 1}, kept = {.wanted = 1};
    assert_non_null(base);
    t_loop_thread = pthread_self();
    t_gate_reset();
    t_seq = 0;

    workq_t *wq = workq_create(base, 1, 8);
    assert_non_null(wq);
    assert_int_equal(workq_submit_live(wq, t_live_gate_work, t_live_done, t_live_fn, &blocker),
                     PHR_OK);
    t_gate_wait_running();
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &gone), PHR_OK);
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &kept), PHR_OK);
    assert_int_equal(workq_pending(wq), 3);

    gone.wanted = 0; /* its client left while it waited */
    t_gate_open();
    t_run_until(base, &kept.res.calls, 5000);

    assert_int_equal(blocker.res.calls, 1);
    assert_int_equal(blocker.res.rc, PHR_OK);
    assert_int_equal(kept.res.calls, 1);
    assert_int_equal(kept.res.rc, PHR_OK);
    assert_int_equal(kept.runs, 1);
    assert_int_equal(gone.res.calls, 1);
    assert_int_equal(gone.res.rc, PHR_ECLOSED);
    assert_int_equal(gone.runs, 0); /* never started */
    assert_true(gone.asked >= 1);
    assert_int_equal(gone.off_loop | kept.off_loop, 0);
    assert_int_equal(workq_dropped(wq), 1);
    assert_int_equal(workq_pending(wq), 0);
    workq_free(wq);
    assert_int_equal(gone.res.calls, 1); /* exactly once */
    event_base_free(base);
}

static void
test_workq_drop_running(void **state)
{
    struct event_base *base = event_base_new();
    t_live_t running = {.wanted = 1};
    assert_non_null(base);
    t_loop_thread = pthread_self();
    t_gate_reset();

    workq_t *wq = workq_create(base, 1, 4);
    assert_non_null(wq);
    assert_int_equal(workq_submit_live(wq, t_live_gate_work, t_live_done, t_live_fn, &running),
                     PHR_OK);
    t_gate_wait_running();
    running.wanted = 0; /* too late: the job finishes and reports as usual */
    t_gate_open();
    t_run_until(base, &running.res.calls, 5000);
    assert_int_equal(running.runs, 1);
    assert_int_equal(running.res.calls, 1);
    assert_int_equal(running.res.rc, PHR_OK);
    assert_int_equal(workq_dropped(wq), 0);
    workq_free(wq);
    assert_int_equal(running.res.calls, 1);
    event_base_free(base);
}

/* A full queue of unwanted jobs makes room for a new one; their |done| comes later, from the
 * loop, and workq_free delivers what is still due exactly once. */
static void
test_workq_drop_when_full(void **state)
{
    struct event_base *base = event_base_new();
    t_live_t blocker = {.wanted = 1}, gone = {.wanted = 1}, next = {.wanted = 1};
    t_live_t gone2 = {.wanted = 1}, last = {.wanted = 1};
    assert_non_null(base);
    t_loop_thread = pthread_self();
    t_gate_reset();

    workq_t *wq = workq_create(base, 1, 1);
    assert_non_null(wq);
    assert_int_equal(workq_submit_live(wq, t_live_gate_work, t_live_done, t_live_fn, &blocker),
                     PHR_OK);
    t_gate_wait_running();
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &gone), PHR_OK);
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &next), PHR_EFULL);
    gone.wanted = 0;
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &next), PHR_OK);
    assert_int_equal(gone.res.calls, 0); /* not from inside the submit */
    assert_int_equal(workq_dropped(wq), 1);
    t_run_until(base, &gone.res.calls, 5000);
    assert_int_equal(gone.res.rc, PHR_ECLOSED);
    assert_int_equal(gone.runs, 0);

    /* Dropped but not yet told when the pool is freed: told once, by workq_free. */
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &gone2), PHR_EFULL);
    next.wanted = 0;
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &gone2), PHR_OK);
    gone2.wanted = 0;
    assert_int_equal(workq_submit_live(wq, t_live_work, t_live_done, t_live_fn, &last), PHR_OK);
    assert_int_equal(workq_dropped(wq), 3);
    t_gate_open();
    workq_free(wq);
    assert_int_equal(blocker.res.calls, 1);
    assert_int_equal(blocker.res.rc, PHR_OK);
    assert_int_equal(next.res.calls, 1);
    assert_int_equal(next.res.rc, PHR_ECLOSED);
    assert_int_equal(gone2.res.calls, 1);
    assert_int_equal(gone2.res.rc, PHR_ECLOSED);
    assert_int_equal(last.res.calls, 1);
    assert_int_equal(last.res.rc, PHR_ECLOSED); /* queued at free: never ran */
    assert_int_equal(next.runs + gone.runs + gone2.runs + last.runs, 0);
    event_base_loop(base, EVLOOP_NONBLOCK); /* the pending wake-up is gone with the pool */
    assert_int_equal(gone.res.calls + next.res.calls + gone2.res.calls, 3);
    event_base_free(base);
}

static void
test_workq_bad_args(void **state)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    assert_null(workq_create(NULL, 1, 1));
    assert_null(workq_create(base, 0, 1));
    assert_null(workq_create(base, 1, 0));
    workq_t *wq = workq_create(base, 1, 1);
    assert_non_null(wq);
    assert_int_equal(workq_submit(wq, NULL, NULL, NULL), PHR_EINVAL);
    workq_free(wq);
    workq_free(NULL);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workq_many_jobs),       cmocka_unit_test(test_workq_full),
        cmocka_unit_test(test_workq_free_queued),     cmocka_unit_test(test_workq_free_in_done),
        cmocka_unit_test(test_workq_loop_responsive), cmocka_unit_test(test_workq_drop_queued),
        cmocka_unit_test(test_workq_drop_running),    cmocka_unit_test(test_workq_drop_when_full),
        cmocka_unit_test(test_workq_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
