/*
 * workq.c - worker pool with a bounded FIFO; completions go back to the
 * event loop through an eventfd watched by an event on the base.
 *
 * Locking: one mutex guards the waiting queue, the completed list, the
 * counters and the stop flag. Workers wait on |cond|. The loop side never
 * blocks on the mutex for longer than a list splice.
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
    workq_list_t queue; /* waiting to run */
    int queued;         /* length of |queue| */
    int queue_max;
    int pending;            /* queued + running; read atomically by workq_pending */
    workq_list_t completed; /* |work| ran, |done| not yet called */
    int stopping;

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
        while (!wq->stopping && wq->queue.head == NULL) {
            pthread_cond_wait(&wq->cond, &wq->mu);
        }
        if (wq->stopping) {
            break;
        }
        workq_job_t *job = workq_list_pop(&wq->queue);
        wq->queued--;
        pthread_mutex_unlock(&wq->mu);

        job->work(job->arg);

        pthread_mutex_lock(&wq->mu);
        workq_list_push(&wq->completed, job);
        __atomic_sub_fetch(&wq->pending, 1, __ATOMIC_RELEASE);
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
    workq_list_t batch;

    while (read(fd, &cnt, sizeof(cnt)) < 0 && errno == EINTR) {
    }

    pthread_mutex_lock(&wq->mu);
    batch = wq->completed;
    wq->completed.head = NULL;
    wq->completed.tail = NULL;
    pthread_mutex_unlock(&wq->mu);

    wq->dispatching = 1;
    workq_deliver(&batch, PHR_OK);
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
workq_submit(workq_t *wq, workq_work_fn work, workq_done_fn done, void *arg)
{
    workq_job_t *job;

    if (wq == NULL || work == NULL) {
        return PHR_EINVAL;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        return PHR_ENOMEM;
    }
    job->work = work;
    job->done = done;
    job->arg = arg;

    pthread_mutex_lock(&wq->mu);
    if (wq->stopping) {
        pthread_mutex_unlock(&wq->mu);
        free(job);
        return PHR_ECLOSED;
    }
    if (wq->queued >= wq->queue_max) {
        pthread_mutex_unlock(&wq->mu);
        free(job);
        return PHR_EFULL;
    }
    workq_list_push(&wq->queue, job);
    wq->queued++;
    __atomic_add_fetch(&wq->pending, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&wq->cond);
    pthread_mutex_unlock(&wq->mu);
    return PHR_OK;
}

int
workq_pending(const workq_t *wq)
{
    if (wq == NULL) {
        return 0;
    }
    return __atomic_load_n(&wq->pending, __ATOMIC_ACQUIRE);
}

void
workq_free(workq_t *wq)
{
    workq_list_t queued, completed;

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

    /* No thread left: the lists are ours without locking. */
    queued = wq->queue;
    wq->queue.head = wq->queue.tail = NULL;
    wq->queued = 0;
    completed = wq->completed;
    wq->completed.head = wq->completed.tail = NULL;
    __atomic_store_n(&wq->pending, 0, __ATOMIC_RELEASE);

    if (wq->wake_ev != NULL) {
        event_del(wq->wake_ev);
    }
    wq->free_pending = 1;
    workq_deliver(&completed, PHR_OK);
    workq_deliver(&queued, PHR_ECLOSED);
    if (!wq->dispatching) {
        workq_destroy(wq);
    }
}
