/* coalesce.c - the queue of the records service's coalesced statements (see coalesce.h). */
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"
#include "err.h"

struct rco {
    rco_config_t cfg;
    rco_batch_t *head, *tail; /* waiting, oldest first; only the tail may be empty */
    int pending;              /* items waiting */
    int inflight;             /* batches sent */
    int closing;              /* rco_free ran: the last batch in flight frees |q| */
};

rco_t *
rco_create(const rco_config_t *cfg)
{
    rco_t *q = calloc(1, sizeof(*q));

    if (q != NULL) {
        q->cfg = *cfg;
        if (q->cfg.per_batch < 1 || q->cfg.per_batch > q->cfg.max_batch) {
            q->cfg.per_batch = q->cfg.max_batch;
        }
        q->cfg.slots = q->cfg.slots < 1 ? 1 : q->cfg.slots;
    }
    return q;
}

static rco_batch_t *
rco_batch_new(rco_t *q, int cap)
{
    rco_batch_t *bt = malloc(sizeof(*bt) + (size_t)cap * q->cfg.item_size);

    if (bt != NULL) {
        *bt = (rco_batch_t){.owner = q};
    }
    return bt;
}

static void
rco_send(rco_t *q, rco_batch_t *bt)
{
    int rc = q->cfg.send(q->cfg.ctx, bt);

    if (rc == PHR_OK) {
        q->inflight++;
    } else {
        q->cfg.answer(bt, rc, NULL);
        free(bt);
    }
}

static void
rco_pump(rco_t *q)
{
    while (q->head != NULL && q->head->n > 0 && q->inflight < q->cfg.slots &&
           (q->inflight == 0 || q->head->n >= q->cfg.per_batch)) {
        rco_batch_t *bt = q->head;

        q->head = bt->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->pending -= bt->n;
        rco_send(q, bt);
    }
}

void
rco_done(int rc, PGresult *res, void *ud)
{
    rco_batch_t *bt = ud;
    rco_t *q = bt->owner;

    q->inflight--;
    int resent = !q->closing && q->cfg.retry != NULL && q->cfg.retry(bt, rc);
    if (!q->closing) {
        rco_pump(q); /* the items that gathered meanwhile leave first */
    }
    if (!resent) {
        q->cfg.answer(bt, rc, res);
    }
    free(bt);
    if (q->closing && q->inflight == 0) {
        free(q);
    }
}

int
rco_send_one(rco_t *q, const void *item)
{
    rco_batch_t *bt = rco_batch_new(q, 1);

    if (bt == NULL) {
        return PHR_ENOMEM;
    }
    memcpy(bt->items, item, q->cfg.item_size);
    bt->n = 1;
    rco_send(q, bt);
    return PHR_OK;
}

void *
rco_slot(rco_t *q, int *rc)
{
    rco_batch_t *bt = q->tail;

    if (q->closing || q->pending >= q->cfg.waiting) {
        *rc = q->closing ? PHR_ECLOSED : PHR_EFULL;
        return NULL;
    }
    if (bt == NULL || bt->n >= q->cfg.per_batch) {
        if ((bt = rco_batch_new(q, q->cfg.per_batch)) == NULL) {
            *rc = PHR_ENOMEM;
            return NULL;
        }
        *(q->tail != NULL ? &q->tail->next : &q->head) = bt;
        q->tail = bt;
    }
    return (char *)bt->items + (size_t)bt->n * q->cfg.item_size;
}

void
rco_push(rco_t *q)
{
    q->tail->n++;
    q->pending++;
    rco_pump(q);
}

void
rco_free(rco_t *q)
{
    if (q == NULL) {
        return;
    }
    q->closing = 1; /* nothing is queued or sent any more */
    while (q->head != NULL) {
        rco_batch_t *bt = q->head;
        q->head = bt->next;
        q->cfg.answer(bt, PHR_ECLOSED, NULL);
        free(bt);
    }
    if (q->inflight == 0) {
        free(q);
    }
}
