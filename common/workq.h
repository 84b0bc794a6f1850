/*
 * workq.h - a worker pool for CPU-heavy work (password hashing) with a
 * bounded queue. |work| runs on a worker thread; |done| then runs on the
 * event loop thread. The loop never blocks on the work.
 */
#ifndef PHR_WORKQ_H
#define PHR_WORKQ_H

struct event_base;
typedef struct workq workq_t;

typedef void (*workq_work_fn)(void *arg);
/* |rc| is PHR_OK after |work| ran, or PHR_ECLOSED when the pool shut down first. */
typedef void (*workq_done_fn)(int rc, void *arg);

workq_t *workq_create(struct event_base *base, int threads, int queue_max);

/*
 * Queues |work|. Returns PHR_OK, or PHR_EFULL when |queue_max| jobs already
 * wait (nothing is queued then, and |done| is not called).
 */
int workq_submit(workq_t *wq, workq_work_fn work, workq_done_fn done, void *arg);

/* Jobs queued or running. */
int workq_pending(const workq_t *wq);

/* Stops the threads (running jobs finish), calls |done| of queued jobs with PHR_ECLOSED. */
void workq_free(workq_t *wq);

#endif
