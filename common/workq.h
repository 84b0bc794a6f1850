/*
 * workq.h - a worker pool for CPU-heavy work (password hashing) with a
 * bounded queue. |work| runs on a worker thread; |done| then runs on the
 * event loop thread. The loop never blocks on the work. Every call is made
 * from the loop thread.
 */
#ifndef PHR_WORKQ_H
#define PHR_WORKQ_H

struct event_base;
typedef struct workq workq_t;

typedef void (*workq_work_fn)(void *arg);
/*
 * |rc| is PHR_OK after |work| ran, or PHR_ECLOSED when it never ran: the pool
 * shut down first, or the job was dropped (see workq_submit_live).
 */
typedef void (*workq_done_fn)(int rc, void *arg);
/* 1 while a queued job is still wanted (its request is open), 0 to drop it. Runs on the loop. */
typedef int (*workq_live_fn)(void *arg);

workq_t *workq_create(struct event_base *base, int threads, int queue_max);

/*
 * Queues |work|. Returns PHR_OK, or PHR_EFULL when |queue_max| jobs already
 * wait (nothing is queued then, and |done| is not called).
 */
int workq_submit(workq_t *wq, workq_work_fn work, workq_done_fn done, void *arg);

/*
 * As workq_submit, for a job that may stop being wanted while it waits: the
 * loop asks |live|(|arg|) before the job starts (and of every waiting job
 * when a worker frees up or the queue is full). On 0 the job is dropped:
 * |work| never runs and |done| gets PHR_ECLOSED later from the loop, never
 * from inside this or another workq call. A job already running finishes.
 */
int workq_submit_live(workq_t *wq, workq_work_fn work, workq_done_fn done, workq_live_fn live,
                      void *arg);

/* Jobs queued or running. */
int workq_pending(const workq_t *wq);

/* Jobs dropped so far because |live| said 0 (phr_workq_dropped_total). */
unsigned long workq_dropped(const workq_t *wq);

/* Stops the threads (running jobs finish), calls |done| of queued jobs with PHR_ECLOSED. */
void workq_free(workq_t *wq);

#endif
