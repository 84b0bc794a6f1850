/*
 * insbatch.c - record creates coalesced into one INSERT (see insbatch.h): a
 * batch (coalesce.h) of one is sent with the one-row statement, of several
 * over arrays; one of several that PostgreSQL refused, one create at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"
#include "err.h"
#include "insbatch.h"

typedef struct {
    rib_cb cb;
    void *ud;
    char *buf; /* the parameters, each NUL-terminated, in one allocation */
    const char *params[RIB_NPARAMS];
} rib_item_t;

struct rib {
    rco_t *q;
    db_pool_t *pool;
    rib_config_t cfg; /* its statements */
};

/* Answers |it| and frees its parameters. */
static void
rib_item_answer(rib_item_t *it, int rc, const PGresult *res, int row)
{
    it->cb(rc, res, row, it->ud);
    free(it->buf);
}

/* Answers every create of |bt| with its row of |res| (by id), or with |rc|. */
static void
rib_answer(rco_batch_t *bt, int rc, const PGresult *res)
{
    rib_item_t *items = (rib_item_t *)bt->items;
    int nrows = rc == PHR_OK && res != NULL && PQnfields(res) > 0 ? PQntuples(res) : 0;

    for (int i = 0; i < bt->n; i++) {
        rib_item_t *it = &items[i];
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
rib_arrays(const rco_batch_t *bt, const char *arrays[RIB_NPARAMS])
{
    const rib_item_t *items = (const rib_item_t *)bt->items;
    size_t len = 0;

    for (int c = 0; c < RIB_NPARAMS; c++) {
        len += 3 + (size_t)bt->n; /* braces, commas, NUL */
        for (int i = 0; i < bt->n; i++) {
            len += rib_elem_len(items[i].params[c]);
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
            p = rib_elem_put(p, items[i].params[c]);
        }
        *p++ = '}';
        *p++ = '\0';
    }
    return buf;
}

/* PostgreSQL refused a statement of several (so it wrote nothing; a lost connection,
 * PHR_EUNAVAIL, may have committed): each create is sent again alone. */
static int
rib_retry(rco_batch_t *bt, int rc)
{
    rib_item_t *items = (rib_item_t *)bt->items;

    if (bt->n < 2 ||
        (rc != PHR_EINVAL && rc != PHR_ECONFLICT && rc != PHR_ETIMEDOUT && rc != PHR_EGENERIC)) {
        return 0;
    }
    for (int i = 0; i < bt->n; i++) {
        if (rco_send_one(bt->owner, &items[i]) != PHR_OK) {
            rib_item_answer(&items[i], PHR_ENOMEM, NULL, -1);
        }
    }
    return 1;
}

/* Sends |bt| on |ctx| (the rib_t): one create with the one-row statement, several over arrays. */
static int
rib_send(void *ctx, rco_batch_t *bt)
{
    const rib_t *b = ctx;
    const rib_item_t *items = (const rib_item_t *)bt->items;
    const char *arrays[RIB_NPARAMS];
    char *buf;

    if (bt->n == 1) {
        return db_query(b->pool, b->cfg.one_sql, RIB_NPARAMS, items[0].params, rco_done, bt);
    }
    if ((buf = rib_arrays(bt, arrays)) == NULL) {
        return PHR_ENOMEM;
    }
    int rc = db_query(b->pool, b->cfg.many_sql, RIB_NPARAMS, arrays, rco_done, bt);
    free(buf);
    return rc;
}

rib_t *
rib_create(db_pool_t *pool, const rib_config_t *cfg)
{
    rib_t *b = malloc(sizeof(*b));
    rco_config_t c = {.item_size = sizeof(rib_item_t),
                      .per_batch = cfg->per_batch,
                      .max_batch = RIB_MAX,
                      .waiting = cfg->waiting,
                      .slots = cfg->slots,
                      .ctx = b,
                      .send = rib_send,
                      .answer = rib_answer,
                      .retry = rib_retry};

    if (b == NULL || (b->q = rco_create(&c)) == NULL) {
        free(b);
        return NULL;
    }
    b->pool = pool;
    b->cfg = *cfg;
    return b;
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
        it->params[c] = params[c] != NULL ? p : NULL;
        if (params[c] != NULL) {
            size_t n = strlen(params[c]) + 1;
            memcpy(p, params[c], n);
            p += n;
        }
    }
    return PHR_OK;
}

void
rib_add(rib_t *b, const char *const params[RIB_NPARAMS], rib_cb cb, void *ud)
{
    int rc;
    rib_item_t *it = rco_slot(b->q, &rc);

    if (it == NULL || (rc = rib_item_copy(it, params)) != PHR_OK) {
        cb(rc, NULL, -1, ud);
        return;
    }
    it->cb = cb;
    it->ud = ud;
    rco_push(b->q);
}

/* After rco_free nothing is sent: |b| (the send's context) may go at once. */
void
rib_free(rib_t *b)
{
    if (b != NULL) {
        rco_free(b->q);
        free(b);
    }
}
