/*
 * insbatch.c - record creates coalesced into one INSERT (see insbatch.h).
 * Pending creates sit in batches of at most per_batch, oldest first; while
 * fewer statements than the pool's connections are in flight, a full batch
 * leaves at once and a partial one when nothing is in flight. A batch of
 * one is sent with the one-row statement; a batch of several that PostgreSQL
 * refused is split into batches of one, each sent again (they count as
 * statements in flight).
 */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "insbatch.h"

typedef struct {
    rib_cb cb;
    void *ud;
    char *buf; /* the parameters, each NUL-terminated, in one allocation */
    const char *params[RIB_NPARAMS];
} rib_item_t;

typedef struct rib_batch {
    struct rib_batch *next;
    rib_t *owner;
    int n, cap;
    rib_item_t items[];
} rib_batch_t;

struct rib {
    db_pool_t *pool;
    rib_config_t cfg;
    rib_batch_t *head, *tail; /* waiting, oldest first */
    int pending;              /* creates waiting */
    int inflight;             /* statements sent */
    int closing;              /* rib_free ran: the last statement in flight frees |b| */
};

rib_t *
rib_create(db_pool_t *pool, const rib_config_t *cfg)
{
    rib_t *b = calloc(1, sizeof(*b));

    if (b != NULL) {
        b->pool = pool;
        b->cfg = *cfg;
        if (b->cfg.per_batch < 1 || b->cfg.per_batch > RIB_MAX) {
            b->cfg.per_batch = RIB_MAX;
        }
        if (b->cfg.slots < 1) {
            b->cfg.slots = 1;
        }
    }
    return b;
}

static rib_batch_t *
rib_batch_new(rib_t *b, int cap)
{
    rib_batch_t *bt = malloc(sizeof(*bt) + (size_t)cap * sizeof(bt->items[0]));

    if (bt != NULL) {
        bt->next = NULL;
        bt->owner = b;
        bt->n = 0;
        bt->cap = cap;
    }
    return bt;
}

/* Answers |it| and frees its parameters. */
static void
rib_item_answer(rib_item_t *it, int rc, const PGresult *res, int row)
{
    it->cb(rc, res, row, it->ud);
    free(it->buf);
}

/* Answers every create of |bt| with its row of |res| (by id), or with |rc|; frees |bt|. */
static void
rib_finish(rib_batch_t *bt, int rc, const PGresult *res)
{
    int nrows = rc == PHR_OK && res != NULL && PQnfields(res) > 0 ? PQntuples(res) : 0;

    for (int i = 0; i < bt->n; i++) {
        rib_item_t *it = &bt->items[i];
        int row = -1;
        /* rows mostly come back in the order of the arrays: try the same position first */
        for (int k = 0; k < nrows && row < 0; k++) {
            int j = (i + k) % nrows;
            if (strcmp(PQgetvalue(res, j, 0), it->params[0]) == 0) {
                row = j;
            }
        }
        int irc = rc != PHR_OK ? rc : row < 0 ? PHR_EGENERIC : PHR_OK;
        rib_item_answer(it, irc, irc == PHR_OK ? res : NULL, row);
    }
    free(bt);
}

/* Bytes of |s| as a quoted array element ("..." with " and \ escaped), or NULL. */
static size_t
rib_elem_len(const char *s)
{
    size_t n = 2;

    if (s == NULL) {
        return 4;
    }
    for (; *s != '\0'; s++) {
        n += *s == '"' || *s == '\\' ? 2 : 1;
    }
    return n;
}

static char *
rib_elem_put(char *p, const char *s)
{
    if (s == NULL) {
        for (const char *n = "NULL"; *n != '\0'; n++) {
            *p++ = *n;
        }
        return p;
    }
    *p++ = '"';
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
        }
        *p++ = *s;
    }
    *p++ = '"';
    return p;
}

/*
 * The array literals ("{a,b,...}") of the columns of |bt| into one new buffer,
 * arrays[c] pointing at column c's. NULL when out of memory.
 */
static char *
rib_arrays(const rib_batch_t *bt, const char *arrays[RIB_NPARAMS])
{
    size_t len = 0;

    for (int c = 0; c < RIB_NPARAMS; c++) {
        len += 3 + (size_t)bt->n; /* braces, commas, NUL */
        for (int i = 0; i < bt->n; i++) {
            len += rib_elem_len(bt->items[i].params[c]);
        }
    }
    char *buf = malloc(len);
    char *p = buf;
    if (buf == NULL) {
        return NULL;
    }
    for (int c = 0; c < RIB_NPARAMS; c++) {
        arrays[c] = p;
        *p++ = '{';
        for (int i = 0; i < bt->n; i++) {
            if (i > 0) {
                *p++ = ',';
            }
            p = rib_elem_put(p, bt->items[i].params[c]);
        }
        *p++ = '}';
        *p++ = '\0';
    }
    return buf;
}

static void rib_pump(rib_t *b);
static void rib_send(rib_t *b, rib_batch_t *bt);

/* Sends each create of the failed batch |bt| again alone; frees |bt|. */
static void
rib_split(rib_t *b, rib_batch_t *bt)
{
    for (int i = 0; i < bt->n; i++) {
        rib_batch_t *one = rib_batch_new(b, 1);
        if (one == NULL) {
            rib_item_answer(&bt->items[i], PHR_ENOMEM, NULL, -1);
            continue;
        }
        one->items[0] = bt->items[i];
        one->n = 1;
        rib_send(b, one);
    }
    free(bt);
}

/*
 * PostgreSQL answered that the statement failed, so it wrote nothing and its
 * creates can be sent again. Not a lost connection (PHR_EUNAVAIL): it may have
 * committed; its creators get the error, as a lone create would.
 */
static int
rib_failed_whole(int rc)
{
    return rc == PHR_EINVAL || rc == PHR_ECONFLICT || rc == PHR_ETIMEDOUT || rc == PHR_EGENERIC;
}

static void
rib_done(int rc, PGresult *res, void *ud)
{
    rib_batch_t *bt = ud;
    rib_t *b = bt->owner;

    int retry = rib_failed_whole(rc) && bt->n > 1 && !b->closing;

    b->inflight--;
    if (retry) {
        rib_split(b, bt);
    }
    if (!b->closing) {
        rib_pump(b); /* the creates that gathered meanwhile leave first */
    }
    if (!retry) {
        rib_finish(bt, rc, res);
    }
    if (b->closing && b->inflight == 0) {
        free(b);
    }
}

/* Sends |bt|: one create with the one-row statement, several over arrays. */
static void
rib_send(rib_t *b, rib_batch_t *bt)
{
    const char *arrays[RIB_NPARAMS];
    char *buf = NULL;
    int rc = PHR_ENOMEM;

    if (bt->n == 1) {
        rc = db_query(b->pool, b->cfg.one_sql, RIB_NPARAMS, bt->items[0].params, rib_done, bt);
    } else if ((buf = rib_arrays(bt, arrays)) != NULL) {
        rc = db_query(b->pool, b->cfg.many_sql, RIB_NPARAMS, arrays, rib_done, bt);
        free(buf);
    }
    if (rc == PHR_OK) {
        b->inflight++;
    } else {
        rib_finish(bt, rc, NULL);
    }
}

/* Sends waiting batches while fewer statements than the pool's connections are in flight. */
static void
rib_pump(rib_t *b)
{
    while (b->head != NULL && b->inflight < b->cfg.slots &&
           (b->inflight == 0 || b->head->n >= b->cfg.per_batch)) {
        rib_batch_t *bt = b->head;

        b->head = bt->next;
        if (b->head == NULL) {
            b->tail = NULL;
        }
        b->pending -= bt->n;
        rib_send(b, bt);
    }
}

/* Copies |params| into it->buf. PHR_OK or PHR_ENOMEM. */
static int
rib_item_copy(rib_item_t *it, const char *const params[RIB_NPARAMS])
{
    size_t len = 0;

    for (int c = 0; c < RIB_NPARAMS; c++) {
        len += params[c] != NULL ? strlen(params[c]) + 1 : 0;
    }
    it->buf = malloc(len > 0 ? len : 1);
    if (it->buf == NULL) {
        return PHR_ENOMEM;
    }
    char *p = it->buf;
    for (int c = 0; c < RIB_NPARAMS; c++) {
        it->params[c] = NULL;
        if (params[c] != NULL) {
            size_t n = strlen(params[c]) + 1;
            memcpy(p, params[c], n);
            it->params[c] = p;
            p += n;
        }
    }
    return PHR_OK;
}

void
rib_add(rib_t *b, const char *const params[RIB_NPARAMS], rib_cb cb, void *ud)
{
    rib_batch_t *bt = b->tail;
    rib_item_t it = {.cb = cb, .ud = ud};

    if (b->closing || b->pending >= b->cfg.waiting) {
        cb(b->closing ? PHR_ECLOSED : PHR_EFULL, NULL, -1, ud);
        return;
    }
    if (rib_item_copy(&it, params) != PHR_OK) {
        cb(PHR_ENOMEM, NULL, -1, ud);
        return;
    }
    if (bt == NULL || bt->n >= bt->cap) {
        bt = rib_batch_new(b, b->cfg.per_batch);
        if (bt == NULL) {
            rib_item_answer(&it, PHR_ENOMEM, NULL, -1);
            return;
        }
        if (b->tail != NULL) {
            b->tail->next = bt;
        } else {
            b->head = bt;
        }
        b->tail = bt;
    }
    bt->items[bt->n++] = it;
    b->pending++;
    rib_pump(b);
}

void
rib_free(rib_t *b)
{
    if (b == NULL) {
        return;
    }
    b->closing = 1;
    while (b->head != NULL) {
        rib_batch_t *bt = b->head;
        b->head = bt->next;
        rib_finish(bt, PHR_ECLOSED, NULL);
    }
    b->tail = NULL;
    b->pending = 0;
    if (b->inflight == 0) {
        free(b);
    }
}
