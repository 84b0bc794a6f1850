/*
 * getbatch.c - reads of one record by id, coalesced into one SELECT (see
 * getbatch.h): a batch (coalesce.h) as arrays of keys, the rows to their readers.
 */
#include <stdlib.h>
#include <string.h>

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

/* The record columns, then the key's position (1-based) in the arrays. */
static const char rgb_sql[] =
    "SELECT " REC_COLUMNS ", k.n FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY "
    "AS k(id, patient_id, n) JOIN records r ON r.id = k.id AND r.patient_id = k.patient_id";

/* Answers every read of |bt| from |res| (or with |rc|). */
static void
rgb_answer(rco_batch_t *bt, int rc, const PGresult *res)
{
    const rgb_read_t *reads = (const rgb_read_t *)bt->items;
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
        reads[i].cb(rc, res, rows[i], reads[i].ud);
    }
}

/* "{a,b,...}": the |patient| ids or the record ids of |bt| as a uuid[] literal. */
static void
rgb_array(const rco_batch_t *bt, int patient, char out[RGB_ARRAY_LEN])
{
    const rgb_read_t *reads = (const rgb_read_t *)bt->items;
    char *p = out;

    *p++ = '{';
    for (int i = 0; i < bt->n; i++) {
        if (i > 0) {
            *p++ = ',';
        }
        memcpy(p, patient ? reads[i].patient_id : reads[i].id, RGB_ID_LEN);
        p += RGB_ID_LEN;
    }
    *p++ = '}';
    *p = '\0';
}

/* One SELECT over the keys of |bt| on the pool |db|. */
static int
rgb_send(void *db, rco_batch_t *bt)
{
    char ids[RGB_ARRAY_LEN], patients[RGB_ARRAY_LEN];
    const char *params[] = {ids, patients};

    rgb_array(bt, 0, ids);
    rgb_array(bt, 1, patients);
    return db_query(db, rgb_sql, 2, params, rco_done, bt);
}

rgb_t *
rgb_create(db_pool_t *db, const cfg_t *cfg)
{
    rco_config_t c = {.item_size = sizeof(rgb_read_t),
                      .per_batch = cfg->records_get_batch,
                      .max_batch = RGB_MAX,
                      .waiting = cfg->records_get_waiting,
                      .slots = cfg->pg_pool_size,
                      .ctx = db,
                      .send = rgb_send,
                      .answer = rgb_answer};

    return rco_create(&c);
}

void
rgb_get(rgb_t *b, const char *id, const char *patient_id, rgb_cb cb, void *ud)
{
    int rc = PHR_OK; /* and no row: no record has a key that is not a uuid */
    rgb_read_t *rd;

    if (!uuid_valid(id) || !uuid_valid(patient_id) || (rd = rco_slot(b, &rc)) == NULL) {
        cb(rc, NULL, -1, ud);
        return;
    }
    rd->cb = cb;
    rd->ud = ud;
    memcpy(rd->id, id, RGB_ID_LEN + 1);
    memcpy(rd->patient_id, patient_id, RGB_ID_LEN + 1);
    rco_push(b);
}

void
rgb_free(rgb_t *b)
{
    rco_free(b);
}
