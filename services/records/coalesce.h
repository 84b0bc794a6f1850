/*
 * coalesce.h - the queue of the records service's coalesced statements
 * (getbatch.c, insbatch.c). Items wait in batches of at most per_batch, oldest
 * first; while fewer than |slots| batches are in flight, a full batch leaves at
 * once and a partial one only when none is in flight (so a lone item leaves at
 * once, and under load one fills up while the statement before it runs).
 * Items beyond |waiting| waiting ones are refused.
 */
#ifndef PHR_RECORDS_COALESCE_H
#define PHR_RECORDS_COALESCE_H

#include <stddef.h>

#include <libpq-fe.h>

typedef struct rco rco_t;

typedef struct rco_batch {
    struct rco_batch *next;
    rco_t *owner;
    int n;               /* items */
    max_align_t items[]; /* n items of item_size bytes */
} rco_batch_t;

typedef struct {
    size_t item_size;
    int per_batch, max_batch; /* per_batch outside 1..max_batch: max_batch */
    int waiting;              /* items waiting at most */
    int slots;                /* batches in flight at most (< 1: 1) */
    void *ctx;                /* send's; used until rco_free */
    /* Starts |bt|'s statement with rco_done(.., bt): PHR_OK, else an error for its items. */
    int (*send)(void *ctx, rco_batch_t *bt);
    /* Answers every item of |bt| with |rc| (PHR_OK: from |res|). */
    void (*answer)(rco_batch_t *bt, int rc, const PGresult *res);
    /* NULL, or when |bt|'s statement ended with |rc|: 1 when it resent the items itself. */
    int (*retry)(rco_batch_t *bt, int rc);
} rco_config_t;

/* A coalescer with |cfg| (copied). NULL when out of memory. */
rco_t *rco_create(const rco_config_t *cfg);

/* Waiting items get PHR_ECLOSED now; the last batch in flight frees |q|. NULL: no-op. */
void rco_free(rco_t *q);

/*
 * Room for one more item, to fill and then queue with rco_push before any other
 * call; or NULL with |*rc| PHR_ECLOSED (rco_free ran), PHR_EFULL or PHR_ENOMEM.
 */
void *rco_slot(rco_t *q, int *rc);

/* Queues the item of the last rco_slot and sends what may leave. */
void rco_push(rco_t *q);

/* The db_cb of the statement of a batch |ud|. */
void rco_done(int rc, PGresult *res, void *ud);

/* Sends |item| (copied) alone now, past queue and slots: PHR_OK (answered later) or PHR_ENOMEM. */
int rco_send_one(rco_t *q, const void *item);

#endif
