/*
 * workq.c - worker pool with a bounded FIFO; completions go back to the
 * event loop through an eventfd watched by an event on the base.
 *
 * The waiting jobs (|backlog|) belong to the loop thread, which hands a job
 * to the workers only when one is free (|busy| < |nthreads|): so a job's
 * |live| check runs on the loop, where its request lives, right before the
 * job starts, and a dropped job never reaches a worker. The cost is one loop
 * wake-up between a job's end and the next one's start, small next to a
 * password hash.
 *
 * Locking: one mutex guards the handed-out list (|ready|), the completed
 * list and the stop flag. Workers wait on |cond|. The loop side never blocks
 * on the mutex for longer than a list splice.
 */
#include "workq.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"

typedef struct workq_job {
    workq_work_fn work;
    workq_done_fn done;
    workq_live_fn live; /* NULL: always wanted */
    void *arg;
    struct workq_job *next;
} workq_job_t;

typedef struct {
    workq_job_t *head;
    workq_job_t *tail;
} workq_list_t;

struct workq {
    struct event_base *base;
    struct event *wake_ev;
    int wake_fd;

    pthread_t *threads;
    int nthreads;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    workq_list_t ready;     /* handed to the workers, not yet taken */
    workq_list_t completed; /* |work| ran, |done| not yet called */
    int stopping;

    /* The loop thread's own. */
    workq_list_t backlog; /* waiting for a free worker */
    int nbacklog;
    int queue_max;
    int busy;             /* handed out (ready or running) and not yet back */
    workq_list_t dropped; /* |live| said 0; |done| runs from workq_wake_cb */
    unsigned long ndropped;

    int dispatching;  /* inside workq_wake_cb */
    int free_pending; /* workq_free called from a |done| callback */
};

static void
workq_list_push(workq_list_t *l, workq_job_t *job)
{
    job->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = job;
    } else {
        l->head = job;
    }
    l->tail = job;
}

static workq_job_t *
workq_list_pop(workq_list_t *l)
{
    workq_job_t *job = l->head;

    if (job != NULL) {
        l->head = job->next;
        if (l->head == NULL) {
            l->tail = NULL;
        }
        job->next = NULL;
    }
    return job;
}

static void
workq_wake(workq_t *wq)
{
    uint64_t one = 1;
    ssize_t n;

    do {
        n = write(wq->wake_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
}

#define WORKQ_NICE 10 /* worker threads' niceness relative to the loop thread */

static void *
workq_thread_main(void *arg)
{
    workq_t *wq = arg;

    /* CPU-heavy jobs yield to the event loop thread: a hashing storm must not slow other requests. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), WORKQ_NICE);
    pthread_mutex_lock(&wq->mu);
    for (;;) {
        while (!wq->stopping && wq->ready.head == NULL) {
            pthread_cond_wait(&wq->cond, &wq->mu);
        }
        if (wq->stopping) {
            break;
        }
        workq_job_t *job = workq_list_pop(&wq->ready);
        pthread_mutex_unlock(&wq->mu);

        job->work(job->arg);

        pthread_mutex_lock(&wq->mu);
        workq_list_push(&wq->completed, job);
        workq_wake(wq);
    }
    pthread_mutex_unlock(&wq->mu);
    return NULL;
}

/* Calls |done| for every job of |list| with |rc| and frees the jobs. */
static void
workq_deliver(workq_list_t *list, int rc)
{
    workq_job_t *job;

    while ((job = workq_list_pop(list)) != NULL) {
        workq_done_fn done = job->done;
        void *arg = job->arg;

        free(job);
        if (done != NULL) {
            done(rc, arg);
        }
    }
}

/* Appends |src| to |dst| and empties |src|. */
static void
workq_list_splice(workq_list_t *dst, workq_list_t *src)
{
    if (src->head == NULL) {
        return;
    }
    if (dst->tail != NULL) {
        dst->tail->next = src->head;
    } else {
        dst->head = src->head;
    }
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

/* Moves |job|, taken off the backlog, to |wq->dropped| when nobody wants it any more: 1 if so. */
static int
workq_drop_unwanted(workq_t *wq, workq_job_t *job)
{
    if (job->live == NULL || job->live(job->arg)) {
        return 0;
    }
    workq_list_push(&wq->dropped, job);
    wq->ndropped++;
    return 1;
}

/* Moves the waiting jobs no longer wanted to |wq->dropped|. Returns how many. */
static int
workq_sweep(workq_t *wq)
{
    workq_list_t keep = {NULL, NULL};
    workq_job_t *job;
    int n = 0;

    while ((job = workq_list_pop(&wq->backlog)) != NULL) {
        if (workq_drop_unwanted(wq, job)) {
            n++;
        } else {
            workq_list_push(&keep, job);
        }
    }
    wq->backlog = keep;
    wq->nbacklog -= n;
    return n;
}

/* Hands waiting jobs to the free workers; a job no longer wanted is dropped instead. */
static void
workq_feed(workq_t *wq)
{
    workq_list_t give = {NULL, NULL};
    int n = 0, dropped = 0;

    while (wq->busy < wq->nthreads && wq->backlog.head != NULL) {
        workq_job_t *job = workq_list_pop(&wq->backlog);
        wq->nbacklog--;
        if (workq_drop_unwanted(wq, job)) {
            dropped++;
            continue;
        }
        workq_list_push(&give, job);
        wq->busy++;
        n++;
    }
    if (dropped > 0) {
        event_active(wq->wake_ev, EV_READ, 1); /* their |done| runs from the loop */
    }
    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&wq->mu);
    workq_list_splice(&wq->ready, &give);
    for (int i = 0; i < n; i++) {
        pthread_cond_signal(&wq->cond);
    }
    pthread_mutex_unlock(&wq->mu);
}

static void
workq_destroy(workq_t *wq)
{
    if (wq->wake_ev != NULL) {
        event_free(wq->wake_ev);
    }
    if (wq->wake_fd >= 0) {
        close(wq->wake_fd);
    }
    pthread_cond_destroy(&wq->cond);
    pthread_mutex_destroy(&wq->mu);
    free(wq->threads);
    free(wq);
}

static void
workq_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    workq_t *wq = arg;
    uint64_t cnt;
    workq_list_t batch, dropped;

    while (read(fd, &cnt, sizeof(cnt)) < 0 && errno == EINTR) {
    }

    pthread_mutex_lock(&wq->mu);
    batch = wq->completed;
    wq->completed.head = NULL;
    wq->completed.tail = NULL;
    pthread_mutex_unlock(&wq->mu);

    for (workq_job_t *job = batch.head; job != NULL; job = job->next) {
        wq->busy--;
    }
    /* Before the next jobs start: drop the waiting ones no longer wanted. */
    if (wq->busy < wq->nthreads) {
        workq_sweep(wq);
    }
    workq_feed(wq);
    dropped = wq->dropped;
    wq->dropped.head = wq->dropped.tail = NULL;

    wq->dispatching = 1;
    workq_deliver(&batch, PHR_OK);
    workq_deliver(&dropped, PHR_ECLOSED);
    wq->dispatching = 0;
    if (wq->free_pending) {
        workq_destroy(wq);
    }
}

workq_t *
workq_create(struct event_base *base, int threads, int queue_max)
{
    workq_t *wq;
    sigset_t all, old;

    if (base == NULL || threads < 1 || threads > 256 || queue_max < 1) {
        return NULL;
    }
    wq = calloc(1, sizeof(*wq));
    if (wq == NULL) {
        return NULL;
    }
    wq->base = base;
    wq->queue_max = queue_max;
    wq->wake_fd = -1;
    if (pthread_mutex_init(&wq->mu, NULL) != 0) {
        free(wq);
        return NULL;
    }
    if (pthread_cond_init(&wq->cond, NULL) != 0) {
        pthread_mutex_destroy(&wq->mu);
        free(wq);
        return NULL;
    }
    wq->threads = calloc((size_t)threads, sizeof(*wq->threads));
    if (wq->threads == NULL) {
        goto fail;
    }
    wq->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wq->wake_fd < 0) {
        log_error("workq: eventfd failed (errno %d)", errno);
        goto fail;
    }
    wq->wake_ev = event_new(base, wq->wake_fd, EV_READ | EV_PERSIST, workq_wake_cb, wq);
    if (wq->wake_ev == NULL || event_add(wq->wake_ev, NULL) != 0) {
        goto fail;
    }

    /* Workers inherit a mask that blocks every signal: signals go to the loop thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&wq->threads[i], NULL, workq_thread_main, wq);
        if (rc != 0) {
            log_error("workq: pthread_create failed (%d)", rc);
            break;
        }
        wq->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (wq->nthreads != threads) {
        workq_free(wq);
        return NULL;
    }
    return wq;

fail:
    workq_destroy(wq);
    return NULL;
}

int
workq_submit_live(workq_t *wq, workq_work_fn work, workq_done_fn done, workq_live_fn live,
                  void *arg)
{
    workq_job_t *job;

    if (wq == NULL || work == NULL) {
        return PHR_EINVAL;
    }
    if (wq->free_pending) {
        return PHR_ECLOSED;
    }
    /* A full queue may hold jobs nobody waits for any more: they make room. */
    if (wq->nbacklog >= wq->queue_max && workq_sweep(wq) > 0) {
        event_active(wq->wake_ev, EV_READ, 1); /* their |done| runs from the loop */
    }
    if (wq->nbacklog >= wq->queue_max) {
        return PHR_EFULL;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        return PHR_ENOMEM;
    }
    job->work = work;
    job->done = done;
    job->live = live;
    job->arg = arg;
    workq_list_push(&wq->backlog, job);
    wq->nbacklog++;
    workq_feed(wq);
    return PHR_OK;
}

int
workq_submit(workq_t *wq, workq_work_fn work, workq_done_fn done, void *arg)
{
    return workq_submit_live(wq, work, done, NULL, arg);
}

int
workq_pending(const workq_t *wq)
{
    if (wq == NULL) {
        return 0;
    }
    return wq->nbacklog + wq->busy;
}

unsigned long
workq_dropped(const workq_t *wq)
{
    return wq != NULL ? wq->ndropped : 0;
}

void
workq_free(workq_t *wq)
{
    workq_list_t unrun, completed;

    if (wq == NULL || wq->free_pending) {
        return;
    }

    pthread_mutex_lock(&wq->mu);
    wq->stopping = 1;
    pthread_cond_broadcast(&wq->cond);
    pthread_mutex_unlock(&wq->mu);

    for (int i = 0; i < wq->nthreads; i++) {
        pthread_join(wq->threads[i], NULL);
    }
    wq->nthreads = 0;

    /* No thread left: the lists are ours without locking. Never run: handed out, dropped, waiting. */
    completed = wq->completed;
    wq->completed.head = wq->completed.tail = NULL;
    unrun = wq->ready;
    wq->ready.head = wq->ready.tail = NULL;
    workq_list_splice(&unrun, &wq->dropped);
    workq_list_splice(&unrun, &wq->backlog);
    wq->nbacklog = 0;
    wq->busy = 0;

    if (wq->wake_ev != NULL) {
        event_del(wq->wake_ev);
    }
    wq->free_pending = 1;
    workq_deliver(&completed, PHR_OK);
    workq_deliver(&unrun, PHR_ECLOSED);
    if (!wq->dispatching) {
        workq_destroy(wq);
    }
}
