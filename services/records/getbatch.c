/*
 * getbatch.c - reads of one record by id, coalesced into one SELECT (see
 * getbatch.h). Pending reads sit in batches of at most PHR_RECORDS_GET_BATCH,
 * oldest first; while fewer batches than the pool's connections are in flight,
 * a full batch leaves at once and a partial one when no batch is in flight.
 * More than PHR_RECORDS_GET_WAITING waiting reads: PHR_EFULL.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "getbatch.h"
#include "records.h"
#include "uuid.h"

#define RGB_MAX CFG_RECORDS_GET_BATCH_MAX /* reads per statement at most */
#define RGB_ID_LEN 36                     /* canonical uuid text */
#define RGB_ARRAY_LEN (RGB_MAX * (RGB_ID_LEN + 1) + 2)

typedef struct {
    rgb_cb cb;
    void *ud;
    char id[RGB_ID_LEN + 1];
    char patient_id[RGB_ID_LEN + 1];
} rgb_read_t;

typedef struct rgb_batch {
    struct rgb_batch *next;
    rgb_t *owner;
    int n;
    rgb_read_t reads[RGB_MAX];
} rgb_batch_t;

struct rgb {
    db_pool_t *db;
    const cfg_t *cfg;
    rgb_batch_t *head, *tail; /* waiting, oldest first */
    int pending;              /* reads waiting */
    int inflight;             /* batches sent */
    int closing;              /* rgb_free ran: the last batch in flight frees |b| */
};

/* The record columns, then the key's position (1-based) in the arrays. */
static const char rgb_sql[] =
    "SELECT " REC_COLUMNS ", k.n FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY "
    "AS k(id, patient_id, n) JOIN records r ON r.id = k.id AND r.patient_id = k.patient_id";

rgb_t *
rgb_create(db_pool_t *db, const cfg_t *cfg)
{
    rgb_t *b = calloc(1, sizeof(*b));

    if (b != NULL) {
        b->db = db;
        b->cfg = cfg;
    }
    return b;
}

/* Answers every read of |bt| from |res| (or with |rc|) and frees |bt|. */
static void
rgb_finish(rgb_batch_t *bt, int rc, const PGresult *res)
{
    int rows[RGB_MAX];

    for (int i = 0; i < bt->n; i++) {
        rows[i] = -1;
    }
    if (rc == PHR_OK && PQnfields(res) > REC_NCOLUMNS) {
        for (int row = 0; row < PQntuples(res); row++) {
            long n = strtol(PQgetvalue(res, row, REC_NCOLUMNS), NULL, 10);
            if (n >= 1 && n <= bt->n) {
                rows[n - 1] = row;
            }
        }
    } else if (rc == PHR_OK) {
        rc = PHR_EGENERIC;
    }
    for (int i = 0; i < bt->n; i++) {
        bt->reads[i].cb(rc, res, rows[i], bt->reads[i].ud);
    }
    free(bt);
}

/* "{a,b,...}": the |patient| ids or the record ids of |bt| as a uuid[] literal. */
static void
rgb_array(const rgb_batch_t *bt, int patient, char out[RGB_ARRAY_LEN])
{
    char *p = out;

    *p++ = '{';
    for (int i = 0; i < bt->n; i++) {
        if (i > 0) {
            *p++ = ',';
        }
        memcpy(p, patient ? bt->reads[i].patient_id : bt->reads[i].id, RGB_ID_LEN);
        p += RGB_ID_LEN;
    }
    *p++ = '}';
    *p = '\0';
}

static void rgb_pump(rgb_t *b);

static void
rgb_done(int rc, PGresult *res, void *ud)
{
    rgb_batch_t *bt = ud;
    rgb_t *b = bt->owner;

    b->inflight--;
    if (!b->closing) {
        rgb_pump(b); /* the reads that gathered meanwhile leave first */
    }
    rgb_finish(bt, rc, res);
    if (b->closing && b->inflight == 0) {
        free(b);
    }
}

/* Reads one statement takes: PHR_RECORDS_GET_BATCH, at most RGB_MAX. */
static int
rgb_per_batch(const rgb_t *b)
{
    int n = b->cfg->records_get_batch;

    return n > 0 && n <= RGB_MAX ? n : RGB_MAX;
}

/*
 * Sends waiting batches while fewer than the pool's connections are in flight:
 * a full batch at once, a partial one only when nothing is in flight (it then
 * fills up while the statement before it runs: fewer, larger statements).
 */
static void
rgb_pump(rgb_t *b)
{
    int slots = b->cfg->pg_pool_size;
    int full = rgb_per_batch(b);

    while (b->head != NULL && b->inflight < (slots > 0 ? slots : 1) &&
           (b->inflight == 0 || b->head->n >= full)) {
        rgb_batch_t *bt = b->head;
        char ids[RGB_ARRAY_LEN], patients[RGB_ARRAY_LEN];
        const char *params[] = {ids, patients};

        b->head = bt->next;
        if (b->head == NULL) {
            b->tail = NULL;
        }
        b->pending -= bt->n;
        rgb_array(bt, 0, ids);
        rgb_array(bt, 1, patients);
        b->inflight++;
        int rc = db_query(b->db, rgb_sql, 2, params, rgb_done, bt);
        if (rc != PHR_OK) {
            b->inflight--;
            rgb_finish(bt, rc, NULL);
        }
    }
}

void
rgb_get(rgb_t *b, const char *id, const char *patient_id, rgb_cb cb, void *ud)
{
    rgb_batch_t *bt = b->tail;

    if (!uuid_valid(id) || !uuid_valid(patient_id)) {
        cb(PHR_OK, NULL, -1, ud); /* no record has such a key */
        return;
    }
    int per_batch = rgb_per_batch(b);

    if (b->closing || b->pending >= b->cfg->records_get_waiting) {
        cb(b->closing ? PHR_ECLOSED : PHR_EFULL, NULL, -1, ud);
        return;
    }
    if (bt == NULL || bt->n >= per_batch) {
        bt = malloc(sizeof(*bt));
        if (bt == NULL) {
            cb(PHR_ENOMEM, NULL, -1, ud);
            return;
        }
        bt->next = NULL;
        bt->owner = b;
        bt->n = 0;
        if (b->tail != NULL) {
            b->tail->next = bt;
        } else {
            b->head = bt;
        }
        b->tail = bt;
    }
    rgb_read_t *rd = &bt->reads[bt->n++];
    rd->cb = cb;
    rd->ud = ud;
    memcpy(rd->id, id, RGB_ID_LEN + 1);
    memcpy(rd->patient_id, patient_id, RGB_ID_LEN + 1);
    b->pending++;
    rgb_pump(b);
}

void
rgb_free(rgb_t *b)
{
    if (b == NULL) {
        return;
    }
    b->closing = 1;
    while (b->head != NULL) {
        rgb_batch_t *bt = b->head;
        b->head = bt->next;
        rgb_finish(bt, PHR_ECLOSED, NULL);
    }
    b->tail = NULL;
    b->pending = 0;
    if (b->inflight == 0) {
        free(b);
    }
}
