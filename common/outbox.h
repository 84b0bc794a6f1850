/*
 * outbox.h - the transactional outbox and its relay.
 *
 * A service writes what it must tell another service (an audit event, an
 * e-mail to send) as a row of its own database's `outbox` table, in the same
 * transaction as the change it describes (outbox_add). The relay then posts
 * pending rows to the peer over HTTP/2 (hcli) with retries and exponential
 * backoff, marking them sent only after a 2xx answer, so a peer that is down
 * delays messages and loses none. Rows are claimed with FOR UPDATE SKIP
 * LOCKED, so several replicas of a service can relay at once. Every row has
 * an idempotency key (unique); peers use it to ignore duplicates.
 *
 * Table (each service's migration NNN_outbox.sql creates it, same text everywhere):
 *   outbox(id bigserial primary key, topic text, idempotency_key text unique,
 *          body jsonb, created_at, attempts int, next_attempt_at, sent_at,
 *          last_error text)
 */
#ifndef PHR_OUTBOX_H
#define PHR_OUTBOX_H

#include <stddef.h>

#include "db.h"
#include "hcli.h"

struct event_base;
typedef struct outbox outbox_t;

typedef struct {
    const char *topic; /* "audit", "notification" */
    hcli_t *peer;      /* where rows of this topic go */
    const char *path;  /* "/internal/v1/events"; a "{name}" in it takes each row's body
                          field |name| (per-row routes only) */
    int batch;         /* 1: POST {"items":[body, ...]} (up to batch_max rows);
                          0: one POST per row with an Idempotency-Key header */
} outbox_route_t;

typedef struct {
    const outbox_route_t *routes;
    size_t nroutes;
    int poll_ms;        /* look for due rows at least this often (also after outbox_kick) */
    int batch_max;      /* rows per batch POST (batch routes) */
    int backoff_max_ms; /* cap of the per-row retry backoff */
    int rows_max;       /* rows claimed per pass of a per-row route (0: 100) */
} outbox_config_t;

outbox_t *outbox_create(struct event_base *base, db_pool_t *db, const outbox_config_t *cfg);

/* Stops relaying; rows stay in the table for the next start. NULL is a no-op. */
void outbox_free(outbox_t *ob);

/*
 * The row insert of outbox_add as SQL text, |values| the VALUES list (topic,
 * key, body::jsonb), for a statement that writes its row itself in one atomic
 * statement (a WITH item): one round trip instead of a transaction's four.
 */
#define OUTBOX_SQL_ADD(values)                                                                     \
    "INSERT INTO outbox (topic, idempotency_key, body) VALUES (" values ")"                        \
    " ON CONFLICT (idempotency_key) DO NOTHING"

/*
 * Inserts one row inside |txn| (the caller's transaction). |json| is the
 * body as JSON text. A second row with the same |key| is ignored (not an
 * error). |cb| gets the db_txn_query result. Returns as db_txn_query.
 */
int outbox_add(db_txn_t *txn, const char *topic, const char *key, const char *json, db_cb cb,
               void *ud);

/* Tells the relay a transaction with outbox rows committed: relay now rather than at the next poll. */
void outbox_kick(outbox_t *ob);

typedef struct {
    long backlog;           /* unsent rows at the last poll */
    unsigned long sent;     /* rows delivered by this process */
    unsigned long failures; /* failed delivery attempts */
} outbox_stats_t;

void outbox_stats(const outbox_t *ob, outbox_stats_t *out);

#endif
