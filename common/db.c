/*
 * db.c - PostgreSQL connection pool on non-blocking libpq inside libevent.
 *
 * Every connection is a state machine driven by events on PQsocket():
 *
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> SETUP --SETs done--> IDLE
 *   IDLE --request--> BUSY --results--> IDLE (or TXN while a transaction holds it)
 *   IDLE --no reply for ping_interval--> PING --empty query answered--> IDLE
 *   IDLE --first up, migrations pending--> MIGRATE --COMMIT--> IDLE
 *   any state --socket error / PQstatus bad / deadline--> DOWN (reconnect after backoff)
 *
 * Requests wait in a bounded FIFO when no connection is idle. User callbacks
 * run from event handlers only: failures decided synchronously (a send that
 * fails inside db_query, a broken connection) are pushed on a deferred list
 * that a zero-timeout event drains. db_pool_free may be called from any
 * callback: pool->depth counts active handlers and the memory is released
 * when the outermost one returns.
 *
 * Reachability: an idle socket says nothing about a server behind a silent
 * network, so idle connections are pinged, and a ping or query past its
 * deadline, or a request waiting ping_timeout while no connection hears
 * anything and none is idle, makes the pool unreachable (not ready) until the
 * next reply. Requests in flight then keep their own deadlines.
 */
#include "db.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "timeutil.h"

#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 2000    /* a server back after an outage is used within ~2 s */
#define DB_DEADLINE_SLACK_MS 2000 /* client deadline = statement_timeout + slack */
#define DB_DEFAULT_CONNECT_MS 10000
#define DB_IDLE_TXN_TIMEOUT_MS 60000 /* server drops sessions idle inside a txn */
#define DB_MAX_PARAMS 65535
#define DB_DEFAULT_LOCK "phr"
#define DB_STMT_CACHE 64 /* named prepared statements per connection */
#define DB_DEFAULT_PING_MS 2000
#define DB_KEEPALIVE_PROBES "3"

enum { DBR_QUERY, DBR_BEGIN, DBR_STMT, DBR_END };

enum {
    DBC_DOWN,       /* no connection; reconnect timer pending */
    DBC_CONNECTING, /* PQconnectPoll in progress */
    DBC_SETUP,      /* session SETs in flight */
    DBC_MIGRATE,    /* running the migration transaction */
    DBC_IDLE,       /* free for the next request */
    DBC_BUSY,       /* c->cur in flight */
    DBC_TXN,        /* reserved by c->txn, no statement in flight */
    DBC_PING        /* empty query in flight to prove the server answers */
};

enum {
    MS_BEGIN,
    MS_LOCK,
    MS_CREATE,
    MS_READ,
    MS_OWNER, /* may this role apply the owner migration next? */
    MS_APPLY,
    MS_RECORD,
    MS_COMMIT,
    MS_ROLLBACK
};

/* How the service may apply an owner migration (db_migrate.h): 0 as itself (the role does
 * not exist), 1 under SET LOCAL ROLE (a member), 2 not at all (the operator's step). */
#define DB_MIG_OWNER_SQL                                                                           \
    "SELECT CASE WHEN to_regrole($1) IS NULL THEN 0 "                                              \
    "WHEN pg_has_role(current_user, to_regrole($1), 'MEMBER') THEN 1 ELSE 2 END"
#define DB_MIG_RECHECK_MS 3000 /* waiting for an owner migration: look again this often */

typedef struct db_req db_req_t;
typedef struct db_conn db_conn_t;

struct db_req {
    db_req_t *next;
    int kind;       /* DBR_* */
    int rc;         /* result of a deferred failure */
    int commit;     /* DBR_END: COMMIT (1) or ROLLBACK (0) */
    int64_t enq_us; /* when it entered the wait queue */
    db_cb cb;
    db_txn_cb tcb; /* DBR_BEGIN */
    void *ud;
    db_txn_t *txn; /* DBR_BEGIN, DBR_END */
    char *sql;     /* copies, in the same allocation */
    int nparams;
    char **params;
};

typedef struct {
    db_req_t *head;
    db_req_t *tail;
    int n;
} db_fifo_t;

struct db_conn {
    db_pool_t *pool;
    int idx;
    int state; /* DBC_* */
    PGconn *pg;
    struct event *ev; /* socket event, re-made when fd or interest changes */
    evutil_socket_t ev_fd;
    short ev_what;
    struct event *tmr; /* backoff, connect deadline, query or ping deadline */
    int flushing;      /* PQflush returned 1: wait for writability */
    PGresult *res;     /* result being collected */
    db_req_t *cur;     /* request in flight (DBC_BUSY) */
    db_txn_t *txn;     /* transaction holding this connection */
    int backoff_ms;
    int attempts; /* connection attempts made */
    int mig_step; /* MS_* */
    int mig_idx;
    /* statements prepared on this session (slot i is named "phr_<i>"): text and its hash */
    char *stmt_sql[DB_STMT_CACHE];
    uint32_t stmt_hash[DB_STMT_CACHE];
    int nstmt;
    int preparing;    /* c->cur waits for the PREPARE of slot preparing - 1 */
    int64_t sent_us;  /* when the request or ping in flight was sent */
    int64_t reply_us; /* when the last bytes from the server arrived */
};

struct db_txn {
    db_pool_t *pool;
    db_conn_t *conn;   /* NULL before BEGIN is sent and after a break */
    db_fifo_t q;       /* statements (and the END) not yet sent */
    db_req_t *end_req; /* preallocated so db_txn_end cannot fail on memory */
    int broken;
    int ending;
    db_txn_t *prev;
    db_txn_t *next;
};

struct db_pool {
    struct event_base *base;
    char *conninfo;
    char *lock_name;
    int size;
    int stmt_timeout_ms;
    int connect_timeout_ms;
    int queue_max;
    int ping_interval_ms;
    int ping_timeout_ms;
    int keepalive_s;
    int unreachable; /* a deadline passed with no reply since: not ready */
    const db_migration_t *migrations;
    int nmig;
    int migrated;
    int migrating;
    int mig_backoff_ms;
    const db_migration_t *mig_blocked; /* the owner migration the operator must apply */
    int mig_blocking;                  /* the current run stopped before mig_blocked */
    int mig_warned;                    /* version last logged as waiting for its owner */
    int *applied;
    int napplied;
    db_conn_t *conns;
    db_fifo_t queue;    /* requests waiting for a connection */
    db_fifo_t deferred; /* requests to fail from the deferred event */
    struct event *defer_ev;
    struct event *queue_tmr;
    struct event *mig_tmr;
    struct event *ping_tmr;
    db_txn_t *txns; /* every live transaction */
    int closing;
    int depth; /* nesting of handlers / db_pool_free currently running */
    uint64_t rng;
    unsigned long queries;
    unsigned long errors;
    unsigned long reconnects;
};

static void db_conn_connect(db_conn_t *c);
static void db_conn_broken(db_conn_t *c, int cur_rc, const char *why);
static void db_pool_pump(db_pool_t *pool);
static void db_pool_try_migrate(db_pool_t *pool);
static void db_pool_leave(db_pool_t *pool);

/* ---- small helpers ------------------------------------------------------ */

static void
db_fifo_push(db_fifo_t *f, db_req_t *r)
{
    r->next = NULL;
    if (f->tail != NULL) {
        f->tail->next = r;
    } else {
        f->head = r;
    }
    f->tail = r;
    f->n++;
}

static db_req_t *
db_fifo_pop(db_fifo_t *f)
{
    db_req_t *r = f->head;
    if (r != NULL) {
        f->head = r->next;
        if (f->head == NULL) {
            f->tail = NULL;
        }
        f->n--;
        r->next = NULL;
    }
    return r;
}

static char *
db_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static struct timeval
db_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return tv;
}

static void
db_timer_ms(struct event *ev, int ms)
{
    struct timeval tv = db_tv(ms < 0 ? 0 : ms);
    evtimer_add(ev, &tv);
}

/* A delay in [ms/2, ms] (xorshift64 jitter). */
static int
db_jitter(db_pool_t *pool, int ms)
{
    uint64_t x = pool->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pool->rng = x;
    int half = ms / 2;
    return half + (int)(x % (uint64_t)(ms - half + 1));
}

static int
db_next_backoff(int ms)
{
    return ms >= DB_BACKOFF_MAX_MS / 2 ? DB_BACKOFF_MAX_MS : ms * 2;
}

/* Copies |sql| and |params| into one allocation. */
static db_req_t *
db_req_new(int kind, const char *sql, int nparams, const char *const *params)
{
    size_t sqllen = strlen(sql) + 1;
    size_t total = sizeof(db_req_t) + (size_t)nparams * sizeof(char *) + sqllen;
    for (int i = 0; i < nparams; i++) {
        if (params[i] != NULL) {
            total += strlen(params[i]) + 1;
        }
    }
    db_req_t *r = calloc(1, total);
    if (r == NULL) {
        return NULL;
    }
    char *p = (char *)(r + 1);
    r->kind = kind;
    r->nparams = nparams;
    if (nparams > 0) {
        r->params = (char **)(void *)p;
        p += (size_t)nparams * sizeof(char *);
    }
    r->sql = p;
    memcpy(p, sql, sqllen);
    p += sqllen;
    for (int i = 0; i < nparams; i++) {
        if (params[i] == NULL) {
            r->params[i] = NULL;
            continue;
        }
        size_t n = strlen(params[i]) + 1;
        memcpy(p, params[i], n);
        r->params[i] = p;
        p += n;
    }
    return r;
}

static int
db_sqlstate_rc(const char *st)
{
    if (st == NULL || strlen(st) != 5) {
        return PHR_EGENERIC;
    }
    if (strcmp(st, "23505") == 0 || strcmp(st, "23P01") == 0 || strcmp(st, "40001") == 0 ||
        strcmp(st, "40P01") == 0) {
        return PHR_ECONFLICT;
    }
    if (strcmp(st, "57014") == 0) {
        return PHR_ETIMEDOUT;
    }
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
        strcmp(st, "57P03") == 0) {
        return PHR_EUNAVAIL;
    }
    if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
        return PHR_EINVAL;
    }
    return PHR_EGENERIC;
}

static int
db_res_rc(const PGresult *res)
{
    if (res == NULL) {
        return PHR_EGENERIC;
    }
    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK: return PHR_OK;
    case PGRES_EMPTY_QUERY: return PHR_EINVAL;
    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR: return db_sqlstate_rc(PQresultErrorField(res, PG_DIAG_SQLSTATE));
    default: return PHR_EGENERIC;
    }
}

/* Logs the SQLSTATE and primary message, never parameters or DETAIL. */
static void
db_log_res(const db_conn_t *c, const char *what, const PGresult *res)
{
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    /* Data exceptions and raised exceptions may quote the offending value. */
    if (st != NULL && (strncmp(st, "22", 2) == 0 || strncmp(st, "P0", 2) == 0)) {
        msg = "(message withheld)";
    }
    log_warn("db[%d]: %s failed: sqlstate=%s: %s", c->idx, what, st != NULL ? st : "none",
             msg != NULL ? msg : "no message");
}

static void
db_notice_rx(void *arg, const PGresult *res)
{
    const db_conn_t *c = arg;
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    log_debug("db[%d]: server notice sqlstate=%s", c->idx, st != NULL ? st : "none");
}

static void db_conn_io(evutil_socket_t fd, short what, void *arg);

/* Watches the connection's socket for |what| (EV_READ and/or EV_WRITE). */
static int
db_conn_watch(db_conn_t *c, short what)
{
    evutil_socket_t fd = PQsocket(c->pg);
    if (fd < 0) {
        return PHR_EUNAVAIL;
    }
    if (c->ev != NULL && c->ev_fd == fd && c->ev_what == what) {
        return PHR_OK;
    }
    if (c->ev != NULL) {
        event_free(c->ev);
    }
    c->ev = event_new(c->pool->base, fd, (short)(what | EV_PERSIST), db_conn_io, c);
    if (c->ev == NULL || event_add(c->ev, NULL) != 0) {
        return PHR_ENOMEM;
    }
    c->ev_fd = fd;
    c->ev_what = what;
    return PHR_OK;
}

static int
db_conn_is_up(const db_conn_t *c)
{
    return c->state == DBC_MIGRATE || c->state == DBC_IDLE || c->state == DBC_BUSY ||
           c->state == DBC_TXN || c->state == DBC_PING;
}

static int
db_pool_connected(const db_pool_t *pool)
{
    int n = 0;
    for (int i = 0; i < pool->size; i++) {
        n += db_conn_is_up(&pool->conns[i]);
    }
    return n;
}

static db_conn_t *
db_pool_idle(db_pool_t *pool)
{
    if (!pool->migrated || pool->closing) {
        return NULL;
    }
    for (int i = 0; i < pool->size; i++) {
        if (pool->conns[i].state == DBC_IDLE) {
            return &pool->conns[i];
        }
    }
    return NULL;
}

/* ---- requests and transactions ------------------------------------------ */

static void
db_txn_unlink(db_txn_t *txn)
{
    db_pool_t *pool = txn->pool;
    if (txn->prev != NULL) {
        txn->prev->next = txn->next;
    } else if (pool->txns == txn) {
        pool->txns = txn->next;
    }
    if (txn->next != NULL) {
        txn->next->prev = txn->prev;
    }
    txn->prev = txn->next = NULL;
}

/* Frees an unlinked transaction and anything it still owns. */
static void
db_txn_release(db_txn_t *txn)
{
    db_req_t *r;
    while ((r = db_fifo_pop(&txn->q)) != NULL) {
        free(r);
    }
    free(txn->end_req);
    free(txn);
}

/* Fails |req| with |rc| from the deferred event (never synchronously). */
static void
db_pool_fail(db_pool_t *pool, db_req_t *req, int rc)
{
    req->rc = rc;
    db_fifo_push(&pool->deferred, req);
    if (pool->defer_ev != NULL && !pool->closing) {
        event_active(pool->defer_ev, EV_TIMEOUT, 0);
    }
}

/* Runs the user callback of |req| and frees it. |res| stays owned by the caller. */
static void
db_req_finish(db_pool_t *pool, db_req_t *req, int rc, PGresult *res)
{
    db_txn_t *txn = req->txn;

    pool->queries++;
    if (rc != PHR_OK) {
        pool->errors++;
    }
    switch (req->kind) {
    case DBR_BEGIN:
        if (rc != PHR_OK) {
            db_txn_unlink(txn);
            db_txn_release(txn);
            txn = NULL;
        }
        if (req->tcb != NULL) {
            req->tcb(rc, txn, req->ud);
        }
        break;
    case DBR_END:
        db_txn_unlink(txn);
        if (req->cb != NULL) {
            req->cb(rc, res, req->ud);
        }
        db_txn_release(txn);
        break;
    default:
        if (req->cb != NULL) {
            req->cb(rc, res, req->ud);
        }
        break;
    }
    free(req);
}

/* The connection of |txn| is gone: fail everything queued on it. */
static void
db_txn_break(db_txn_t *txn, int rc)
{
    db_req_t *r;
    if (txn->conn != NULL) {
        txn->conn->txn = NULL;
        txn->conn = NULL;
    }
    txn->broken = 1;
    while ((r = db_fifo_pop(&txn->q)) != NULL) {
        db_pool_fail(txn->pool, r, rc);
    }
}

static void
db_pool_fail_queue(db_pool_t *pool, int rc)
{
    db_req_t *r;
    while ((r = db_fifo_pop(&pool->queue)) != NULL) {
        db_pool_fail(pool, r, rc);
    }
}

/* ---- sending ------------------------------------------------------------- */

/* Pushes what libpq buffered for |c| and watches the socket for the rest and the answer. */
static int
db_conn_flush(db_conn_t *c)
{
    int f = PQflush(c->pg);
    if (f < 0) {
        return PHR_EUNAVAIL;
    }
    c->flushing = f == 1;
    return db_conn_watch(c, f == 1 ? (short)(EV_READ | EV_WRITE) : (short)EV_READ);
}

static int
db_conn_send(db_conn_t *c, const char *sql, int nparams, const char *const *params, int extended)
{
    int ok = extended ? PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0)
                      : PQsendQuery(c->pg, sql);
    if (!ok) {
        return PHR_EUNAVAIL;
    }
    return db_conn_flush(c);
}

static uint32_t
db_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/*
 * Sends |req| as a named prepared statement of |c| (parsed and planned by the
 * server once per session, not on every execution): executes it when |c|
 * prepared the text before, else sends the PREPARE (db_conn_done then
 * executes). When the cache is full the statement is sent unnamed.
 */
static int
db_conn_send_stmt(db_conn_t *c, db_req_t *req)
{
    const char *const *params = (const char *const *)req->params;
    char name[16];
    uint32_t h = db_hash(req->sql);
    int i;

    for (i = 0; i < c->nstmt; i++) {
        if (c->stmt_hash[i] == h && strcmp(c->stmt_sql[i], req->sql) == 0) {
            break;
        }
    }
    if (i == c->nstmt && (i == DB_STMT_CACHE || (c->stmt_sql[i] = strdup(req->sql)) == NULL)) {
        return db_conn_send(c, req->sql, req->nparams, params, 1);
    }
    snprintf(name, sizeof(name), "phr_%d", i);
    if (i < c->nstmt) {
        if (!PQsendQueryPrepared(c->pg, name, req->nparams, params, NULL, NULL, 0)) {
            return PHR_EUNAVAIL;
        }
    } else {
        c->stmt_hash[i] = h;
        c->nstmt++; /* taken back in db_conn_done if the PREPARE fails */
        c->preparing = i + 1;
        if (!PQsendPrepare(c->pg, name, req->sql, req->nparams, NULL)) {
            return PHR_EUNAVAIL;
        }
    }
    return db_conn_flush(c);
}

/* Starts |req| on the idle (or transaction-held) connection |c|. */
static void
db_conn_start(db_conn_t *c, db_req_t *req)
{
    db_pool_t *pool = c->pool;
    int rc;

    c->cur = req;
    c->state = DBC_BUSY;
    c->sent_us = tu_mono_us();
    if (req->kind == DBR_BEGIN) {
        c->txn = req->txn;
        req->txn->conn = c;
    }
    if (req->kind == DBR_QUERY || req->kind == DBR_STMT) {
        rc = db_conn_send_stmt(c, req);
    } else {
        rc = db_conn_send(c, req->sql, req->nparams, (const char *const *)req->params, 1);
    }
    if (rc != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "send failed");
        return;
    }
    if (pool->stmt_timeout_ms > 0) {
        db_timer_ms(c->tmr, pool->stmt_timeout_ms + DB_DEADLINE_SLACK_MS);
    }
}

static void
db_txn_pump(db_conn_t *c)
{
    if (c->state != DBC_TXN || c->txn == NULL || c->txn->q.n == 0) {
        return;
    }
    db_conn_start(c, db_fifo_pop(&c->txn->q));
}

static void
db_pool_arm_queue_timer(db_pool_t *pool)
{
    if (pool->stmt_timeout_ms <= 0 || pool->queue.head == NULL ||
        evtimer_pending(pool->queue_tmr, NULL)) {
        return;
    }
    int64_t waited_ms = (tu_mono_us() - pool->queue.head->enq_us) / 1000;
    db_timer_ms(pool->queue_tmr, pool->stmt_timeout_ms - (int)waited_ms);
}

static void
db_pool_pump(db_pool_t *pool)
{
    db_conn_t *c;
    while (pool->queue.n > 0 && (c = db_pool_idle(pool)) != NULL) {
        db_conn_start(c, db_fifo_pop(&pool->queue));
    }
    if (pool->queue.n == 0) {
        evtimer_del(pool->queue_tmr);
    }
}

/* Hands |req| to an idle connection or the wait queue. Frees it on error. */
static int
db_pool_submit(db_pool_t *pool, db_req_t *req)
{
    db_conn_t *c = pool->queue.n == 0 ? db_pool_idle(pool) : NULL;
    if (c != NULL) {
        db_conn_start(c, req);
        return PHR_OK;
    }
    if (pool->queue.n >= pool->queue_max) {
        free(req);
        return PHR_EFULL;
    }
    req->enq_us = tu_mono_us();
    db_fifo_push(&pool->queue, req);
    db_pool_arm_queue_timer(pool);
    return PHR_OK;
}

/* ---- connection life cycle ---------------------------------------------- */

static void
db_conn_close(db_conn_t *c)
{
    if (c->ev != NULL) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->res != NULL) {
        PQclear(c->res);
        c->res = NULL;
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    if (c->tmr != NULL) {
        evtimer_del(c->tmr);
    }
    c->flushing = 0;
    for (int i = 0; i < c->nstmt; i++) { /* prepared statements end with the session */
        free(c->stmt_sql[i]);
        c->stmt_sql[i] = NULL;
    }
    c->nstmt = 0;
    c->preparing = 0;
}

static void
db_pool_arm_migration(db_pool_t *pool)
{
    if (pool->migrated || pool->closing || evtimer_pending(pool->mig_tmr, NULL)) {
        return;
    }
    db_timer_ms(pool->mig_tmr, db_jitter(pool, pool->mig_backoff_ms));
    pool->mig_backoff_ms = db_next_backoff(pool->mig_backoff_ms);
}

/*
 * Closes |c| after a failure: the request in flight fails with |cur_rc|, an
 * open transaction breaks, and a reconnect is scheduled after backoff.
 */
static void
db_conn_broken(db_conn_t *c, int cur_rc, const char *why)
{
    db_pool_t *pool = c->pool;
    const char *msg = c->pg != NULL ? PQerrorMessage(c->pg) : "";
    size_t len = strcspn(msg, "\n"); /* first line: the rest is libpq boilerplate */

    while (len > 0 && msg[len - 1] == ' ') {
        len--;
    }
    log_warn("db[%d]: %s%s%.*s", c->idx, why, len > 0 ? ": " : "", (int)len, msg);

    if (c->cur != NULL) {
        db_pool_fail(pool, c->cur, cur_rc);
        c->cur = NULL;
    }
    if (c->txn != NULL) {
        db_txn_break(c->txn, PHR_EUNAVAIL);
    }
    if (c->state == DBC_MIGRATE) {
        pool->migrating = 0;
        db_pool_arm_migration(pool);
    }
    db_conn_close(c);
    c->state = DBC_DOWN;
    if (!pool->closing) {
        db_timer_ms(c->tmr, db_jitter(pool, c->backoff_ms));
        c->backoff_ms = db_next_backoff(c->backoff_ms);
    }
    if (db_pool_connected(pool) == 0) {
        db_pool_fail_queue(pool, PHR_EUNAVAIL);
    }
}

/*
 * PQconnectStart with TCP keepalives: |conninfo| is expanded as the first
 * "dbname" and the keepalive keywords after it override what it says.
 */
static PGconn *
db_connect_start(const db_pool_t *pool)
{
    char idle[16], intvl[16];
    const char *const keys[] = {
        "dbname", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", NULL};
    const char *const vals[] = {pool->conninfo, "1", idle, intvl, DB_KEEPALIVE_PROBES, NULL};

    if (pool->keepalive_s <= 0) {
        return PQconnectStart(pool->conninfo);
    }
    snprintf(idle, sizeof(idle), "%d", pool->keepalive_s);
    snprintf(intvl, sizeof(intvl), "%d", pool->keepalive_s >= 3 ? pool->keepalive_s / 3 : 1);
    return PQconnectStartParams(keys, vals, 1);
}

static void
db_conn_connect(db_conn_t *c)
{
    db_pool_t *pool = c->pool;

    if (c->attempts++ > 0) {
        pool->reconnects++;
    }
    c->pg = db_connect_start(pool);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        db_conn_broken(c, PHR_EUNAVAIL, "connect failed");
        return;
    }
    PQsetNoticeReceiver(c->pg, db_notice_rx, c);
    c->state = DBC_CONNECTING;
    db_timer_ms(c->tmr, pool->connect_timeout_ms);
    /* "Consider PGRES_POLLING_WRITING to have been returned at the beginning." */
    if (db_conn_watch(c, EV_WRITE) != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "connect failed");
    }
}

static void
db_conn_setup(db_conn_t *c)
{
    char sql[256];
    db_pool_t *pool = c->pool;
    int st = pool->stmt_timeout_ms > 0 ? pool->stmt_timeout_ms : 0;

    if (PQsetnonblocking(c->pg, 1) != 0) {
        db_conn_broken(c, PHR_EUNAVAIL, "setnonblocking failed");
        return;
    }
    snprintf(sql, sizeof(sql),
             "SET statement_timeout = %d; SET TimeZone = 'UTC'; SET client_encoding = 'UTF8'; "
             "SET idle_in_transaction_session_timeout = %d",
             st, DB_IDLE_TXN_TIMEOUT_MS);
    c->state = DBC_SETUP;
    if (db_conn_send(c, sql, 0, NULL, 0) != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "setup send failed");
    }
}

static void
db_conn_connect_poll(db_conn_t *c)
{
    int rc = PHR_OK;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING: rc = db_conn_watch(c, EV_READ); break;
    case PGRES_POLLING_WRITING: rc = db_conn_watch(c, EV_WRITE); break;
    case PGRES_POLLING_OK: db_conn_setup(c); return;
    default: rc = PHR_EUNAVAIL; break;
    }
    if (rc != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "connect failed");
    }
}

/* ---- reachability --------------------------------------------------------- */

/* Sends the empty query to the idle connection |c| under the ping deadline. */
static void
db_conn_ping(db_conn_t *c)
{
    c->state = DBC_PING;
    c->sent_us = tu_mono_us();
    if (db_conn_send(c, "", 0, NULL, 0) != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "ping send failed");
        return;
    }
    db_timer_ms(c->tmr, c->pool->ping_timeout_ms);
}

/* A complete result arrived on |c|: the server answers. */
static void
db_conn_replied(db_conn_t *c)
{
    db_pool_t *pool = c->pool;
    c->reply_us = tu_mono_us();
    if (pool->unreachable) {
        pool->unreachable = 0;
        log_info("db[%d]: PostgreSQL answers again", c->idx);
    }
}

/*
 * A deadline passed without a reply: not ready until the next one. Queued
 * requests fail now and idle connections are pinged at once. A request in
 * flight keeps its own deadline (statement_timeout + slack), which bounds its
 * wait when the server is gone: a late ping does not tell a silent network
 * from a slow server, and a long query on a slow one must not be killed.
 */
static void
db_pool_unreachable(db_pool_t *pool, const char *why)
{
    if (pool->closing) {
        return;
    }
    if (!pool->unreachable) {
        log_warn("db: PostgreSQL unreachable (%s): not ready until it answers", why);
    }
    pool->unreachable = 1;
    db_pool_fail_queue(pool, PHR_EUNAVAIL);
    for (int i = 0; i < pool->size; i++) {
        if (pool->conns[i].state == DBC_IDLE) {
            db_conn_ping(&pool->conns[i]);
        }
    }
}

/*
 * 1 when a request has waited |limit| us on a busy connection and no byte came
 * from the server on any connection for as long.
 */
static int
db_pool_silent(const db_pool_t *pool, int64_t now, int64_t limit)
{
    int waiting = 0;

    for (int i = 0; i < pool->size; i++) {
        const db_conn_t *c = &pool->conns[i];
        if (now - c->reply_us < limit) {
            return 0;
        }
        waiting |= c->state == DBC_BUSY && now - c->sent_us >= limit;
    }
    return waiting;
}

static void
db_pool_on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    db_pool_t *pool = arg;
    int64_t now = tu_mono_us();
    int64_t limit = (int64_t)pool->ping_interval_ms * 1000;
    int64_t timeout = (int64_t)pool->ping_timeout_ms * 1000;
    int early = db_pool_silent(pool, now, timeout / 2); /* ping idle ones before their time */
    int silent = early && db_pool_silent(pool, now, timeout);
    int pinging = 0;

    pool->depth++;
    for (int i = 0; i < pool->size && !pool->closing; i++) {
        db_conn_t *c = &pool->conns[i];
        if (c->state == DBC_IDLE && (early || now - c->reply_us >= limit)) {
            db_conn_ping(c);
        }
        pinging |= c->state == DBC_PING;
    }
    /* every connection busy: no ping can answer for the server */
    if (silent && !pinging && !pool->unreachable) {
        db_pool_unreachable(pool, "no reply on any connection, none idle to ping");
    }
    db_pool_leave(pool);
}

/* ---- migrations ----------------------------------------------------------- */

static void
db_mig_send(db_conn_t *c, int step, const char *sql, int nparams, const char *const *params,
            int extended)
{
    c->mig_step = step;
    if (db_conn_send(c, sql, nparams, params, extended) != PHR_OK) {
        db_conn_broken(c, PHR_EUNAVAIL, "migration send failed");
    }
}

static void
db_mig_start(db_conn_t *c)
{
    c->pool->migrating = 1;
    c->state = DBC_MIGRATE;
    /* A migration may legitimately run longer than an API statement. */
    db_mig_send(c, MS_BEGIN, "BEGIN; SET LOCAL statement_timeout = 0", 0, NULL, 0);
}

static int
db_mig_applied(const db_pool_t *pool, int version)
{
    for (int i = 0; i < pool->napplied; i++) {
        if (pool->applied[i] == version) {
            return 1;
        }
    }
    return 0;
}

static void
db_mig_next(db_conn_t *c)
{
    db_pool_t *pool = c->pool;
    while (c->mig_idx < pool->nmig && db_mig_applied(pool, pool->migrations[c->mig_idx].version)) {
        c->mig_idx++;
    }
    if (c->mig_idx < pool->nmig) {
        const db_migration_t *m = &pool->migrations[c->mig_idx];
        char role[DB_MIGRATE_ROLE_MAX];
        const char *params[1] = {role};
        if (db_migrate_owner(m, role, sizeof(role)) == 1) {
            db_mig_send(c, MS_OWNER, DB_MIG_OWNER_SQL, 1, params, 1);
            return;
        }
        log_info("db: applying migration %d (%s)", m->version, m->name != NULL ? m->name : "");
        db_mig_send(c, MS_APPLY, m->sql, 0, NULL, 0);
    } else {
        db_mig_send(c, MS_COMMIT, "COMMIT", 0, NULL, 0);
    }
}

static int
db_mig_read(db_pool_t *pool, const PGresult *res)
{
    int n = PQntuples(res);
    int *v = n > 0 ? calloc((size_t)n, sizeof(int)) : NULL;
    if (n > 0 && v == NULL) {
        return PHR_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        char *end;
        long x = strtol(PQgetvalue(res, i, 0), &end, 10);
        if (*end != '\0' || x < 0 || x > INT32_MAX) {
            free(v);
            return PHR_EPROTO;
        }
        v[i] = (int)x;
    }
    free(pool->applied);
    pool->applied = v;
    pool->napplied = n;
    return PHR_OK;
}

static void
db_mig_fail(db_conn_t *c, const char *what, const PGresult *res)
{
    db_pool_t *pool = c->pool;
    if (res != NULL) {
        db_log_res(c, what, res);
    } else {
        log_warn("db[%d]: %s failed", c->idx, what);
    }
    pool->migrating = 0;
    db_mig_send(c, MS_ROLLBACK, "ROLLBACK", 0, NULL, 0);
}

/* The answer of DB_MIG_OWNER_SQL for the owner migration at c->mig_idx. */
static void
db_mig_owner(db_conn_t *c, const PGresult *res)
{
    db_pool_t *pool = c->pool;
    const db_migration_t *m = &pool->migrations[c->mig_idx];
    const char *how = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
    const char *name = m->name != NULL ? m->name : "";
    char role[DB_MIGRATE_ROLE_MAX];
    char *sql;

    db_migrate_owner(m, role, sizeof(role));
    if (strcmp(how, "0") == 0) {
        log_info("db: applying migration %d (%s): role %s does not exist, as this role", m->version,
                 name, role);
        db_mig_send(c, MS_APPLY, m->sql, 0, NULL, 0);
    } else if (strcmp(how, "1") == 0) {
        if ((sql = db_migrate_as_role(m, role)) == NULL) {
            db_mig_fail(c, "migration (out of memory)", NULL);
            return;
        }
        log_info("db: applying migration %d (%s) as %s", m->version, name, role);
        db_mig_send(c, MS_APPLY, sql, 0, NULL, 0); /* libpq has copied it */
        free(sql);
    } else {
        if (pool->mig_warned != m->version) {
            log_error("db: migration %d (%s) must be applied by its owner role %s: run "
                      "`phrctl migrate %s` (deploy/OPERATIONS.md); not ready until then",
                      m->version, name, role, pool->lock_name);
            pool->mig_warned = m->version;
        }
        pool->mig_blocked = m;
        pool->mig_blocking = 1;
        db_mig_send(c, MS_COMMIT, "COMMIT", 0, NULL, 0); /* keep what was applied before it */
    }
}

static void
db_mig_result(db_conn_t *c, PGresult *res)
{
    db_pool_t *pool = c->pool;
    char vbuf[16];
    const char *params[2];
    const db_migration_t *m;
    int rc = db_res_rc(res);

    if (c->mig_step == MS_ROLLBACK) {
        c->state = DBC_IDLE;
        db_pool_arm_migration(pool);
        return;
    }
    if (rc != PHR_OK) {
        if (c->mig_step == MS_APPLY || c->mig_step == MS_RECORD) {
            m = &pool->migrations[c->mig_idx];
            log_warn("db[%d]: migration %d (%s) failed, rolled back", c->idx, m->version,
                     m->name != NULL ? m->name : "");
        }
        db_mig_fail(c, "migration", res);
        return;
    }
    switch (c->mig_step) {
    case MS_BEGIN:
        params[0] = pool->lock_name;
        db_mig_send(c, MS_LOCK, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, params, 1);
        break;
    case MS_LOCK: db_mig_send(c, MS_CREATE, DB_MIGRATE_TABLE_SQL, 0, NULL, 1); break;
    case MS_CREATE:
        db_mig_send(c, MS_READ, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL,
                    1);
        break;
    case MS_READ:
        if (db_mig_read(pool, res) != PHR_OK) {
            db_mig_fail(c, "reading schema_migrations", NULL);
            return;
        }
        c->mig_idx = 0;
        pool->mig_blocking = 0;
        db_mig_next(c);
        break;
    case MS_OWNER: db_mig_owner(c, res); break;
    case MS_APPLY:
        m = &pool->migrations[c->mig_idx];
        snprintf(vbuf, sizeof(vbuf), "%d", m->version);
        params[0] = vbuf;
        params[1] = m->name != NULL ? m->name : "";
        db_mig_send(c, MS_RECORD, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    2, params, 1);
        break;
    case MS_RECORD:
        c->mig_idx++;
        db_mig_next(c);
        break;
    case MS_COMMIT:
        pool->migrating = 0;
        c->state = DBC_IDLE;
        if (pool->mig_blocking) {
            /* Not ready: look again until the operator has applied it. */
            db_timer_ms(pool->mig_tmr, DB_MIG_RECHECK_MS);
            break;
        }
        pool->migrated = 1;
        pool->mig_blocked = NULL;
        log_info("db: migrations done (%d known, %d applied before)", pool->nmig, pool->napplied);
        db_pool_pump(pool);
        break;
    default: break;
    }
}

static void
db_pool_try_migrate(db_pool_t *pool)
{
    if (pool->migrated || pool->migrating || pool->closing ||
        evtimer_pending(pool->mig_tmr, NULL)) {
        return;
    }
    for (int i = 0; i < pool->size; i++) {
        if (pool->conns[i].state == DBC_IDLE) {
            db_mig_start(&pool->conns[i]);
            return;
        }
    }
}

/* ---- results ------------------------------------------------------------- */

/* All results of the statement in flight have arrived. */
static void
db_conn_done(db_conn_t *c)
{
    db_pool_t *pool = c->pool;
    PGresult *res = c->res;
    db_req_t *req;
    int rc;

    c->res = NULL;
    evtimer_del(c->tmr);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        PQclear(res);
        db_conn_broken(c, PHR_EUNAVAIL, "connection lost");
        return;
    }
    db_conn_replied(c);
    switch (c->state) {
    case DBC_PING:
        PQclear(res);
        c->state = DBC_IDLE;
        if (!pool->migrated) {
            db_pool_try_migrate(pool);
        } else {
            db_pool_pump(pool);
        }
        return;
    case DBC_SETUP:
        rc = db_res_rc(res);
        if (rc != PHR_OK) {
            db_log_res(c, "session setup", res);
            PQclear(res);
            db_conn_broken(c, PHR_EUNAVAIL, "session setup failed");
            return;
        }
        PQclear(res);
        c->state = DBC_IDLE;
        c->backoff_ms = DB_BACKOFF_MIN_MS;
        log_info("db[%d]: connected", c->idx);
        if (!pool->migrated) {
            db_pool_try_migrate(pool);
        } else {
            db_pool_pump(pool);
        }
        return;
    case DBC_MIGRATE:
        db_mig_result(c, res);
        PQclear(res);
        return;
    case DBC_BUSY: break;
    default: PQclear(res); return;
    }

    req = c->cur;
    rc = db_res_rc(res);
    if (c->preparing > 0) { /* the PREPARE of c->cur's statement: now execute it */
        int slot = c->preparing - 1;
        c->preparing = 0;
        if (rc == PHR_OK) {
            PQclear(res);
            c->cur = NULL;
            db_conn_start(c, req);
            return;
        }
        free(c->stmt_sql[slot]); /* the last slot: nothing was prepared after it */
        c->stmt_sql[slot] = NULL;
        c->nstmt = slot;
    }
    c->cur = NULL;
    if (rc != PHR_OK) {
        db_log_res(c, "query", res);
    }
    switch (req->kind) {
    case DBR_BEGIN:
        if (rc == PHR_OK) {
            c->state = DBC_TXN;
        } else {
            c->txn = NULL;
            req->txn->conn = NULL;
            c->state = DBC_IDLE;
        }
        break;
    case DBR_STMT: c->state = DBC_TXN; break;
    case DBR_END:
        if (rc == PHR_OK && req->commit && strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
            log_warn("db[%d]: COMMIT of a failed transaction rolled back", c->idx);
            rc = PHR_EGENERIC;
        }
        c->txn = NULL;
        req->txn->conn = NULL;
        c->state = DBC_IDLE;
        break;
    default: c->state = DBC_IDLE; break;
    }
    db_req_finish(pool, req, rc, res);
    PQclear(res);
    if (pool->closing) {
        return;
    }
    if (c->state == DBC_TXN) {
        db_txn_pump(c);
    } else {
        db_pool_pump(pool);
    }
}

static void
db_conn_collect(db_conn_t *c, PGresult *r)
{
    if (c->res == NULL) {
        c->res = r;
    } else if (db_res_rc(c->res) != PHR_OK) {
        PQclear(r); /* keep the first error */
    } else {
        PQclear(c->res); /* keep the last (or the failing) result */
        c->res = r;
    }
}

static void
db_conn_io_busy(db_conn_t *c, short what)
{
    if (what & EV_READ) {
        if (!PQconsumeInput(c->pg)) {
            db_conn_broken(c, PHR_EUNAVAIL, "connection lost");
            return;
        }
        c->reply_us = tu_mono_us(); /* bytes of a long answer: the server is there */
    }
    if (c->flushing) {
        int f = PQflush(c->pg);
        if (f < 0) {
            db_conn_broken(c, PHR_EUNAVAIL, "connection lost");
            return;
        }
        if (f == 1) {
            return;
        }
        c->flushing = 0;
        if (db_conn_watch(c, EV_READ) != PHR_OK) {
            db_conn_broken(c, PHR_EUNAVAIL, "watch failed");
            return;
        }
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            db_conn_done(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            db_conn_broken(c, PHR_EINVAL, "COPY is not supported");
            return;
        }
        db_conn_collect(c, r);
    }
}

static void
db_conn_io_idle(db_conn_t *c)
{
    PGnotify *n;
    if (!PQconsumeInput(c->pg)) {
        db_conn_broken(c, PHR_EUNAVAIL, "connection lost");
        return;
    }
    while ((n = PQnotifies(c->pg)) != NULL) {
        PQfreemem(n);
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        db_conn_broken(c, PHR_EUNAVAIL, "connection lost");
    }
}

static void
db_conn_io(evutil_socket_t fd, short what, void *arg)
{
    db_conn_t *c = arg;
    db_pool_t *pool = c->pool;

    pool->depth++;
    switch (c->state) {
    case DBC_CONNECTING: db_conn_connect_poll(c); break;
    case DBC_SETUP:
    case DBC_MIGRATE:
    case DBC_BUSY:
    case DBC_PING: db_conn_io_busy(c, what); break;
    case DBC_IDLE:
    case DBC_TXN: db_conn_io_idle(c); break;
    default: break;
    }
    db_pool_leave(pool);
}

static void
db_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    db_conn_t *c = arg;
    db_pool_t *pool = c->pool;

    pool->depth++;
    switch (c->state) {
    case DBC_DOWN: db_conn_connect(c); break;
    case DBC_CONNECTING:
    case DBC_SETUP:
        db_conn_broken(c, PHR_EUNAVAIL, "connect timed out");
        db_pool_unreachable(pool, "connect timed out");
        break;
    case DBC_BUSY:
        db_conn_broken(c, PHR_ETIMEDOUT, "query exceeded its client deadline");
        db_pool_unreachable(pool, "query deadline passed");
        break;
    case DBC_PING:
        db_conn_broken(c, PHR_EUNAVAIL, "ping timed out");
        db_pool_unreachable(pool, "ping deadline passed");
        break;
    default: break;
    }
    db_pool_leave(pool);
}

/* ---- pool events ---------------------------------------------------------- */

static void
db_pool_on_defer(evutil_socket_t fd, short what, void *arg)
{
    db_pool_t *pool = arg;
    int n = pool->deferred.n;

    pool->depth++;
    while (n-- > 0 && !pool->closing) {
        db_req_t *r = db_fifo_pop(&pool->deferred);
        if (r == NULL) {
            break;
        }
        db_req_finish(pool, r, r->rc, NULL);
    }
    if (!pool->closing && pool->deferred.n > 0) {
        event_active(pool->defer_ev, EV_TIMEOUT, 0);
    }
    db_pool_leave(pool);
}

static void
db_pool_on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
    db_pool_t *pool = arg;
    int64_t now = tu_mono_us();
    int64_t limit = (int64_t)pool->stmt_timeout_ms * 1000;
    int n = 0;

    while (pool->queue.head != NULL && now - pool->queue.head->enq_us >= limit) {
        db_pool_fail(pool, db_fifo_pop(&pool->queue), PHR_ETIMEDOUT);
        n++;
    }
    if (n > 0) {
        log_warn("db: %d queued queries timed out waiting for a connection", n);
    }
    db_pool_arm_queue_timer(pool);
}

static void
db_pool_on_mig_timer(evutil_socket_t fd, short what, void *arg)
{
    db_pool_t *pool = arg;
    pool->depth++;
    db_pool_try_migrate(pool);
    db_pool_leave(pool);
}

/* ---- public API ------------------------------------------------------------ */

static int
db_check_migrations(const db_migration_t *m, int *count)
{
    int n = 0;
    int last = 0;
    for (; m != NULL && m[n].sql != NULL; n++) {
        if (m[n].version <= last) {
            return PHR_EINVAL;
        }
        last = m[n].version;
    }
    *count = n;
    return PHR_OK;
}

static void
db_pool_destroy(db_pool_t *pool)
{
    db_req_t *r;

    while (pool->txns != NULL) {
        db_txn_t *t = pool->txns;
        db_txn_unlink(t);
        db_txn_release(t);
    }
    for (int i = 0; pool->conns != NULL && i < pool->size; i++) {
        db_conn_close(&pool->conns[i]);
        if (pool->conns[i].tmr != NULL) {
            event_free(pool->conns[i].tmr);
        }
    }
    while ((r = db_fifo_pop(&pool->queue)) != NULL) {
        free(r);
    }
    while ((r = db_fifo_pop(&pool->deferred)) != NULL) {
        free(r);
    }
    if (pool->defer_ev != NULL) {
        event_free(pool->defer_ev);
    }
    if (pool->queue_tmr != NULL) {
        event_free(pool->queue_tmr);
    }
    if (pool->mig_tmr != NULL) {
        event_free(pool->mig_tmr);
    }
    if (pool->ping_tmr != NULL) {
        event_free(pool->ping_tmr);
    }
    free(pool->conns);
    free(pool->applied);
    if (pool->conninfo != NULL) {
        explicit_bzero(pool->conninfo, strlen(pool->conninfo)); /* may hold a password */
    }
    free(pool->conninfo);
    free(pool->lock_name);
    free(pool);
}

static void
db_pool_leave(db_pool_t *pool)
{
    if (--pool->depth == 0 && pool->closing) {
        db_pool_destroy(pool);
    }
}

db_pool_t *
db_pool_create(struct event_base *base, const db_config_t *cfg)
{
    int nmig = 0;

    if (base == NULL || cfg == NULL || cfg->conninfo == NULL || cfg->size < 1 ||
        db_check_migrations(cfg->migrations, &nmig) != PHR_OK) {
        log_error("db: invalid pool configuration");
        return NULL;
    }
    db_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return NULL;
    }
    pool->base = base;
    pool->size = cfg->size;
    pool->stmt_timeout_ms = cfg->statement_timeout_ms > 0 ? cfg->statement_timeout_ms : 0;
    pool->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DB_DEFAULT_CONNECT_MS;
    pool->queue_max = cfg->queue_max > 0 ? cfg->queue_max : 0;
    pool->ping_interval_ms = cfg->ping_interval_ms > 0 ? cfg->ping_interval_ms : 0;
    pool->ping_timeout_ms = cfg->ping_timeout_ms > 0 ? cfg->ping_timeout_ms : DB_DEFAULT_PING_MS;
    pool->keepalive_s = cfg->keepalive_s > 0 ? cfg->keepalive_s : 0;
    pool->migrations = cfg->migrations;
    pool->nmig = nmig;
    pool->migrated = nmig == 0;
    pool->mig_backoff_ms = DB_BACKOFF_MIN_MS;
    pool->rng = ((uint64_t)tu_mono_us() << 16) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)pool;
    if (pool->rng == 0) {
        pool->rng = 0x9e3779b97f4a7c15ULL;
    }
    pool->conninfo = db_strdup(cfg->conninfo);
    pool->lock_name = db_strdup(cfg->lock_name != NULL ? cfg->lock_name : DB_DEFAULT_LOCK);
    pool->conns = calloc((size_t)cfg->size, sizeof(db_conn_t));
    pool->defer_ev = event_new(base, -1, 0, db_pool_on_defer, pool);
    pool->queue_tmr = evtimer_new(base, db_pool_on_queue_timer, pool);
    pool->mig_tmr = evtimer_new(base, db_pool_on_mig_timer, pool);
    if (pool->ping_interval_ms > 0) {
        pool->ping_tmr = event_new(base, -1, EV_PERSIST, db_pool_on_ping_timer, pool);
    }
    if (pool->conninfo == NULL || pool->lock_name == NULL || pool->conns == NULL ||
        pool->defer_ev == NULL || pool->queue_tmr == NULL || pool->mig_tmr == NULL ||
        (pool->ping_interval_ms > 0 && pool->ping_tmr == NULL)) {
        db_pool_destroy(pool);
        return NULL;
    }
    for (int i = 0; i < pool->size; i++) {
        db_conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->idx = i;
        c->state = DBC_DOWN;
        c->backoff_ms = DB_BACKOFF_MIN_MS;
        c->tmr = evtimer_new(base, db_conn_timer, c);
        if (c->tmr == NULL) {
            db_pool_destroy(pool);
            return NULL;
        }
    }
    /* Connect from the loop: the first attempt starts at once. */
    for (int i = 0; i < pool->size; i++) {
        db_timer_ms(pool->conns[i].tmr, 0);
    }
    if (pool->ping_tmr != NULL) { /* idle connections are checked twice per interval */
        struct timeval tv = db_tv(pool->ping_interval_ms >= 20 ? pool->ping_interval_ms / 2 : 10);
        event_add(pool->ping_tmr, &tv);
    }
    return pool;
}

void
db_pool_free(db_pool_t *pool)
{
    db_req_t *r;

    if (pool == NULL || pool->closing) {
        return;
    }
    pool->closing = 1;
    pool->depth++;
    for (int i = 0; i < pool->size; i++) {
        db_conn_t *c = &pool->conns[i];
        if (c->cur != NULL) {
            db_pool_fail(pool, c->cur, PHR_ECLOSED);
            c->cur = NULL;
        }
        if (c->txn != NULL) {
            db_txn_break(c->txn, PHR_ECLOSED);
        }
        db_conn_close(c);
        c->state = DBC_DOWN;
    }
    for (db_txn_t *t = pool->txns; t != NULL; t = t->next) {
        db_txn_break(t, PHR_ECLOSED);
    }
    db_pool_fail_queue(pool, PHR_ECLOSED);
    evtimer_del(pool->queue_tmr);
    evtimer_del(pool->mig_tmr);
    if (pool->ping_tmr != NULL) {
        event_del(pool->ping_tmr);
    }
    event_del(pool->defer_ev);
    while ((r = db_fifo_pop(&pool->deferred)) != NULL) {
        db_req_finish(pool, r, r->rc, NULL);
    }
    db_pool_leave(pool);
}

const char *
db_pool_pending_migration(const db_pool_t *pool)
{
    if (pool == NULL || pool->migrated || pool->mig_blocked == NULL) {
        return NULL;
    }
    return pool->mig_blocked->name;
}

int
db_pool_ready(const db_pool_t *pool)
{
    return pool != NULL && !pool->closing && pool->migrated && !pool->unreachable &&
           db_pool_connected(pool) > 0;
}

void
db_pool_stats(const db_pool_t *pool, db_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (pool == NULL) {
        return;
    }
    out->size = pool->size;
    for (int i = 0; i < pool->size; i++) {
        int st = pool->conns[i].state;
        out->connected += db_conn_is_up(&pool->conns[i]);
        out->busy += st == DBC_BUSY || st == DBC_TXN || st == DBC_MIGRATE;
    }
    out->waiting = pool->queue.n;
    out->queries = pool->queries;
    out->errors = pool->errors;
    out->reconnects = pool->reconnects;
}

static int
db_check_args(const char *sql, int nparams, const char *const *params)
{
    if (sql == NULL || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && params == NULL)) {
        return PHR_EINVAL;
    }
    return PHR_OK;
}

int
db_query(db_pool_t *pool, const char *sql, int nparams, const char *const *params, db_cb cb,
         void *ud)
{
    if (pool == NULL || db_check_args(sql, nparams, params) != PHR_OK) {
        return PHR_EINVAL;
    }
    if (pool->closing) {
        return PHR_ECLOSED;
    }
    if (!db_pool_ready(pool)) {
        return PHR_EUNAVAIL;
    }
    db_req_t *req = db_req_new(DBR_QUERY, sql, nparams, params);
    if (req == NULL) {
        return PHR_ENOMEM;
    }
    req->cb = cb;
    req->ud = ud;
    return db_pool_submit(pool, req);
}

int
db_txn_begin(db_pool_t *pool, db_txn_cb cb, void *ud)
{
    if (pool == NULL) {
        return PHR_EINVAL;
    }
    if (pool->closing) {
        return PHR_ECLOSED;
    }
    if (!db_pool_ready(pool)) {
        return PHR_EUNAVAIL;
    }
    db_txn_t *txn = calloc(1, sizeof(*txn));
    db_req_t *req = db_req_new(DBR_BEGIN, "BEGIN", 0, NULL);
    if (txn != NULL) {
        txn->end_req = db_req_new(DBR_END, "ROLLBACK", 0, NULL);
    }
    if (txn == NULL || req == NULL || txn->end_req == NULL) {
        if (txn != NULL) {
            free(txn->end_req);
        }
        free(txn);
        free(req);
        return PHR_ENOMEM;
    }
    txn->pool = pool;
    txn->next = pool->txns;
    if (pool->txns != NULL) {
        pool->txns->prev = txn;
    }
    pool->txns = txn;
    req->txn = txn;
    req->tcb = cb;
    req->ud = ud;
    int rc = db_pool_submit(pool, req);
    if (rc != PHR_OK) {
        db_txn_unlink(txn);
        db_txn_release(txn);
    }
    return rc;
}

/* Sends |req| now if the transaction's connection is free, else queues it. */
static void
db_txn_submit(db_txn_t *txn, db_req_t *req)
{
    db_conn_t *c = txn->conn;
    if (c->state == DBC_TXN && c->cur == NULL && txn->q.n == 0) {
        db_conn_start(c, req);
    } else {
        db_fifo_push(&txn->q, req);
    }
}

int
db_txn_query(db_txn_t *txn, const char *sql, int nparams, const char *const *params, db_cb cb,
             void *ud)
{
    if (txn == NULL || db_check_args(sql, nparams, params) != PHR_OK || txn->ending) {
        return PHR_EINVAL;
    }
    if (txn->pool->closing) {
        return PHR_ECLOSED;
    }
    if (txn->broken || txn->conn == NULL) {
        return PHR_EUNAVAIL;
    }
    if (txn->q.n > 0 && txn->q.n >= txn->pool->queue_max) {
        return PHR_EFULL;
    }
    db_req_t *req = db_req_new(DBR_STMT, sql, nparams, params);
    if (req == NULL) {
        return PHR_ENOMEM;
    }
    req->cb = cb;
    req->ud = ud;
    db_txn_submit(txn, req);
    return PHR_OK;
}

int
db_txn_end(db_txn_t *txn, int commit, db_cb cb, void *ud)
{
    if (txn == NULL || txn->ending) {
        return PHR_EINVAL;
    }
    if (txn->pool->closing || txn->broken || txn->conn == NULL) {
        int rc = txn->pool->closing ? PHR_ECLOSED : PHR_EUNAVAIL;
        db_txn_unlink(txn);
        db_txn_release(txn);
        return rc;
    }
    db_req_t *req = txn->end_req;
    txn->end_req = NULL;
    txn->ending = 1;
    if (commit) {
        memcpy(req->sql, "COMMIT", sizeof("COMMIT"));
    }
    req->commit = commit != 0;
    req->cb = cb;
    req->ud = ud;
    req->txn = txn;
    db_txn_submit(txn, req);
    return PHR_OK;
}
