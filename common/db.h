/*
 * db.h - PostgreSQL on non-blocking libpq inside the libevent loop.
 *
 * A pool of connections made with PQconnectStart/PQconnectPoll, queries sent
 * with PQsendQueryParams (parameterized only), a bounded wait queue when all
 * connections are busy, statement_timeout set on every session, reconnect
 * with exponential backoff, and versioned migrations applied once at start
 * under an advisory lock. The pool is ready (db_pool_ready) only when at least
 * one connection is up and every migration has been applied.
 */
#ifndef PHR_DB_H
#define PHR_DB_H

#include <libpq-fe.h>
#include <stddef.h>

#include "db_migrate.h"

struct event_base;
typedef struct db_pool db_pool_t;
typedef struct db_txn db_txn_t;

/*
 * Result callback. |rc| is PHR_OK with |res| (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or an error: PHR_EUNAVAIL (no connection / connection
 * lost), PHR_ETIMEDOUT (statement_timeout or queue wait), PHR_ECONFLICT
 * (unique or exclusion violation, serialization failure or deadlock: SQLSTATE
 * 23505/23P01/40001/40P01), PHR_EINVAL
 * (other SQLSTATE class 22/23 data errors), PHR_EGENERIC otherwise; |res| may
 * then be non-NULL for inspection (PQresultErrorField). |res| is owned by the
 * pool and cleared when the callback returns.
 */
typedef void (*db_cb)(int rc, PGresult *res, void *ud);

/*
 * Notes: statement_timeout_ms <= 0 disables the statement timeout and the
 * queue wait limit; otherwise a query also fails with PHR_ETIMEDOUT when it
 * waited that long for a connection, and a connection whose reply is
 * statement_timeout_ms + 2 s late is closed (PHR_ETIMEDOUT). connect_timeout_ms
 * <= 0 means 10 s. |migrations| must outlive the pool (strings are not
 * copied); a migration body may hold several statements but no transaction
 * control (all pending migrations run in one transaction, without a statement
 * timeout). Use a numeric host (hostaddr) in |conninfo|: a DNS lookup in
 * PQconnectStart blocks. Each session gets TimeZone UTC, client_encoding
 * UTF8 and idle_in_transaction_session_timeout 60 s.
 *
 * Reachability: a connection with no reply for ping_interval_ms is sent an
 * empty query. When a ping outlives ping_timeout_ms, or a query its client
 * deadline, or a request has waited ping_timeout_ms on a busy connection while
 * no connection received a byte and none was idle to ping, the server is taken
 * as unreachable: the timed-out connection is closed, queued requests fail
 * with PHR_EUNAVAIL, idle connections are pinged at once, and db_pool_ready is
 * 0 until a reply arrives on any connection. Requests in flight keep their
 * client deadline (a long query on a slow server is not killed; a pool busy
 * with queries longer than ping_timeout_ms reads as not ready until one
 * answers). keepalive_s > 0 turns on TCP
 * keepalives (probes every keepalive_s / 3 s, 3 unanswered ones drop the
 * socket) for partitions where even the kernel stays silent.
 */
typedef struct {
    const char *conninfo;             /* libpq connection string (copied) */
    int size;                         /* number of connections */
    int statement_timeout_ms;         /* SET statement_timeout on each session */
    int connect_timeout_ms;           /* deadline of one connection attempt */
    int queue_max;                    /* waiting queries before PHR_EFULL */
    const db_migration_t *migrations; /* terminated by {0, NULL, NULL}; may be NULL */
    const char *lock_name;            /* advisory lock key for migrations (the service name) */
    int ping_interval_ms;             /* ping a connection idle this long; <= 0: no pings */
    int ping_timeout_ms;              /* deadline of a ping; <= 0 means 2 s */
    int keepalive_s; /* TCP keepalive idle time of the sockets; <= 0: libpq's default */
} db_config_t;

/*
 * Creates the pool and starts connecting (from the event loop). Returns NULL
 * on allocation failure or an invalid |cfg| (size < 1, no conninfo, migration
 * versions not strictly increasing).
 */
db_pool_t *db_pool_create(struct event_base *base, const db_config_t *cfg);

/*
 * Closes every connection; pending callbacks run with PHR_ECLOSED (inside this
 * call). May be called from a db callback. Transactions not yet ended are
 * freed with the pool: their handles must not be used afterwards (except from
 * the PHR_ECLOSED callbacks run here, where db_txn_end returns PHR_ECLOSED).
 * NULL is a no-op.
 */
void db_pool_free(db_pool_t *pool);

/* 1 when a connection is up, migrations are done and no deadline passed since the last reply. */
int db_pool_ready(const db_pool_t *pool);

/*
 * The name of the owner migration (db_migrate.h) the pool waits for, NULL when none: the
 * migrations before it are applied, the pool is not ready and looks again every few seconds
 * until `phrctl migrate <service>` has applied it.
 */
const char *db_pool_pending_migration(const db_pool_t *pool);

typedef struct {
    int size, connected, busy, waiting;
    unsigned long queries, errors, reconnects;
} db_stats_t;

void db_pool_stats(const db_pool_t *pool, db_stats_t *out);

/*
 * Runs one parameterized statement on any free connection (queued when all
 * are busy). |params| are text-format values (NULL = SQL NULL).
 * Returns PHR_OK (|cb| will be called exactly once, never from inside this
 * call), PHR_EUNAVAIL when the pool is not ready, PHR_EFULL when the wait
 * queue is full (|cb| is then not called).
 */
int db_query(db_pool_t *pool, const char *sql, int nparams, const char *const *params, db_cb cb,
             void *ud);

/*
 * Transactions: db_txn_begin reserves a connection and runs BEGIN; |cb| gets
 * the transaction handle (or NULL with an error). Statements then run in
 * order on that connection with db_txn_query; db_txn_end(commit=1|0) runs
 * COMMIT or ROLLBACK, releases the connection and frees |txn| after |cb|.
 * If a statement fails, the caller must still call db_txn_end (with 0).
 * Return codes as for db_query, plus: db_txn_query returns PHR_EUNAVAIL once
 * the connection was lost (statements already queued then fail with
 * PHR_EUNAVAIL) and PHR_EINVAL after db_txn_end. db_txn_end always takes
 * ownership of |txn|: on PHR_OK |cb| (may be NULL) is called once with the
 * COMMIT/ROLLBACK result (a COMMIT of a transaction whose statement failed
 * reports PHR_EGENERIC); on PHR_EUNAVAIL (connection lost) or PHR_ECLOSED
 * (pool closing) |txn| is freed at once and |cb| is not called.
 */
typedef void (*db_txn_cb)(int rc, db_txn_t *txn, void *ud);
int db_txn_begin(db_pool_t *pool, db_txn_cb cb, void *ud);
int db_txn_query(db_txn_t *txn, const char *sql, int nparams, const char *const *params, db_cb cb,
                 void *ud);
int db_txn_end(db_txn_t *txn, int commit, db_cb cb, void *ud);

#endif
