/*
 * getbatch.h - reads of one record by id, coalesced into one SELECT.
 *
 * Under load a single-record read costs PostgreSQL a wake-up and a round trip
 * far dearer than its index lookup. Reads wait together (coalesce.h) and leave
 * as one statement over arrays of (record id, patient id) keys. Each key is
 * still matched against its patient in SQL: a reader sees only its own
 * patient's record.
 */
#ifndef PHR_RECORDS_GETBATCH_H
#define PHR_RECORDS_GETBATCH_H

#include <libpq-fe.h>

#include "coalesce.h"
#include "config.h"
#include "db.h"

typedef rco_t rgb_t;

/*
 * Outcome of one read: |rc| PHR_OK with the reader's |row| of |res|
 * (REC_COLUMNS), or -1 (|res| then maybe NULL) when that patient has no such
 * record; else an error
 * (db.h codes, PHR_EFULL when too many reads wait). |res| is only valid during
 * the call.
 */
typedef void (*rgb_cb)(int rc, const PGresult *res, int row, void *ud);

/*
 * A batcher on |db| (as many batches in flight as cfg->pg_pool_size; it must outlive the
 * batcher) with the limits records_get_batch and records_get_waiting of |cfg|.
 */
rgb_t *rgb_create(db_pool_t *db, const cfg_t *cfg);

/* rco_free: waiting reads fail with PHR_ECLOSED, those in flight finish. */
void rgb_free(rgb_t *b);

/*
 * Reads record |id| of |patient_id| (uuids; anything else is no record).
 * |cb| runs exactly once; from inside this call only for such a key or when
 * the read could not be queued or sent.
 */
void rgb_get(rgb_t *b, const char *id, const char *patient_id, rgb_cb cb, void *ud);

#endif
