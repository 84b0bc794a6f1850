/*
 * insbatch.h - record creates coalesced into one INSERT (the write twin of
 * getbatch.h).
 *
 * A create's cost in PostgreSQL is mostly its round trip and its commit, not
 * its row. Creates wait together (coalesce.h) and leave as one statement over
 * arrays (one per column); a lone create leaves with the one-row statement.
 * One statement is one transaction: each row commits with its own audit outbox
 * row. When PostgreSQL refuses a statement of several creates, each of them is
 * sent again alone, so one bad create cannot fail the others (a refused
 * statement wrote nothing, and the ids are made by the caller: nothing is
 * written twice). A statement whose connection was lost may have committed:
 * its creates fail (503), as alone.
 */
#ifndef PHR_RECORDS_INSBATCH_H
#define PHR_RECORDS_INSBATCH_H

#include <libpq-fe.h>

#include "config.h"
#include "db.h"

#define RIB_NPARAMS 13 /* text parameters of one create; the first is the new row's id */
#define RIB_MAX CFG_RECORDS_INSERT_BATCH_MAX /* creates per statement at most */

typedef struct rib rib_t;

typedef struct {
    const char *one_sql;  /* one create: RIB_NPARAMS text parameters */
    const char *many_sql; /* several: RIB_NPARAMS text[] parameters, one array per column */
    int per_batch;        /* creates per statement (1..RIB_MAX; 1: each alone) */
    int waiting;          /* creates waiting at most; more fail with PHR_EFULL */
    int slots;            /* statements in flight at most (the pool's connections) */
} rib_config_t;

/*
 * Outcome of one create: |rc| PHR_OK with the creator's |row| of |res| (the
 * statement's RETURNING list, its first column the id), else an error (db.h
 * codes; PHR_EFULL when too many creates wait). |res| is only valid during the
 * call.
 */
typedef void (*rib_cb)(int rc, const PGresult *res, int row, void *ud);

/* A batcher on |pool| (|cfg|'s statements must outlive it). NULL when out of memory. */
rib_t *rib_create(db_pool_t *pool, const rib_config_t *cfg);

/* rco_free: waiting creates fail with PHR_ECLOSED, those in flight finish. */
void rib_free(rib_t *b);

/*
 * Creates one row from |params| (copied; NULL is SQL NULL; params[0], the
 * row's id, must not be NULL). |cb| runs exactly once; from inside this call
 * only when the create could not be queued or sent.
 */
void rib_add(rib_t *b, const char *const params[RIB_NPARAMS], rib_cb cb, void *ud);

#endif
