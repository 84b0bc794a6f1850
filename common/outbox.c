/*
 * outbox.c - the transactional outbox relay (see outbox.h).
 *
 * One relay pass at a time (|running|); outbox_kick and the poll timer only
 * start a pass through |kick_ev| / |poll_ev|, and a kick during a pass sets
 * |again| so another pass follows at once. A pass, per route (topic):
 *
 *   1. claims due rows with one statement (its own transaction):
 *      SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE next_attempt_at =
 *      now() + lease, RETURNING them. The HTTP call then runs with no DB
 *      transaction open; a replica that dies mid-call leaves rows that
 *      become due again when the lease ends.
 *   2. posts them: batch routes one POST {"items":[...]}, per-row routes one
 *      POST per row with an Idempotency-Key header.
 *   3. records the outcome: sent_at (2xx), dead_at (permanent 4xx), or
 *      attempts + 1 and next_attempt_at = now() + full-jitter backoff.
 *
 * Order per topic: a row that failed and waits for its retry (attempts > 0,
 * next_attempt_at in the future) holds back every later row of its topic,
 * so after an outage rows are delivered in id order. Rows on their first
 * attempt do not hold others back, so replicas relay in parallel.
 *
 * Lifetime: every callback we are waiting for (db or hcli) holds a reference
 * on the outbox_t. outbox_free marks it freed, cancels the timers and drops
 * the owner's reference; callbacks that arrive later (with any rc, including
 * PHR_ECLOSED) only release what they hold.
 */
#include "outbox.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "err.h"
#include "jsonx.h"
#include "log.h"
#include "timeutil.h"

#define OB_LEASE_SQL "30 seconds" /* claim lease; must exceed the hcli timeout */
#define OB_BACKOFF_BASE_MS 500
#define OB_DEFAULT_POLL_MS 1000
#define OB_DEFAULT_BATCH 100
#define OB_MAX_BATCH 1000
#define OB_DEFAULT_BACKOFF_MAX_MS 60000
#define OB_GC_INTERVAL_US (60LL * 1000000) /* delete old sent rows this often */
#define OB_GC_ROWS "1000"                  /* rows per delete */
#define OB_TOPIC_MAX 64
#define OB_ERR_MAX 96
#define OB_KEY_MAX 255 /* the longest idempotency key a peer may name back */

static const char ob_sql_claim[] =
    "WITH b AS ("
    " SELECT min(id) AS id FROM outbox"
    " WHERE topic = $2 AND sent_at IS NULL AND dead_at IS NULL AND attempts > 0"
    " AND next_attempt_at > now()),"
    " c AS ("
    " SELECT o.id FROM outbox o, b"
    " WHERE o.topic = $2 AND o.sent_at IS NULL AND o.dead_at IS NULL"
    " AND o.next_attempt_at <= now() AND (b.id IS NULL OR o.id < b.id)"
    " ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED)"
    " UPDATE outbox u SET next_attempt_at = now() + interval '" OB_LEASE_SQL "'"
    " FROM c WHERE u.id = c.id"
    " RETURNING u.id, u.attempts, u.idempotency_key, u.body::text";

static const char ob_sql_sent[] = "UPDATE outbox SET sent_at = now(), last_error = NULL"
                                  " WHERE id = ANY($1::bigint[]) AND sent_at IS NULL";

/* A batch the peer answered item by item: the keys in $2 it rejected are dead, the rest sent. */
static const char ob_sql_sent_but[] =
    "UPDATE outbox SET"
    " sent_at = CASE WHEN idempotency_key = ANY($2::text[]) THEN NULL ELSE now() END,"
    " dead_at = CASE WHEN idempotency_key = ANY($2::text[]) THEN now() END,"
    " attempts = attempts + CASE WHEN idempotency_key = ANY($2::text[]) THEN 1 ELSE 0 END,"
    " last_error = CASE WHEN idempotency_key = ANY($2::text[]) THEN $3 END"
    " WHERE id = ANY($1::bigint[]) AND sent_at IS NULL AND dead_at IS NULL";

static const char ob_sql_retry[] =
    "UPDATE outbox SET attempts = attempts + 1,"
    " next_attempt_at = now() + $2::bigint * interval '1 millisecond', last_error = $3"
    " WHERE id = ANY($1::bigint[]) AND sent_at IS NULL AND dead_at IS NULL";

static const char ob_sql_dead[] =
    "UPDATE outbox SET attempts = attempts + 1, dead_at = now(), last_error = $2"
    " WHERE id = ANY($1::bigint[]) AND sent_at IS NULL AND dead_at IS NULL";

static const char ob_sql_backlog[] =
    "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL";

static const char ob_sql_gc[] =
    "DELETE FROM outbox WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM outbox WHERE sent_at < now() - interval '7 days' LIMIT " OB_GC_ROWS "))";

static const char ob_sql_add[] = OUTBOX_SQL_ADD("$1, $2, $3::jsonb");

typedef struct {
    outbox_t *ob;
    size_t route;
} ob_claim_t;

typedef enum { OB_SENT, OB_RETRY, OB_DEAD } ob_outcome_t;

typedef struct {
    outbox_t *ob;
    size_t route;
    size_t nids;
    int max_attempts;
    int released; /* the pass stopped waiting for it (see ob_post_finish_items) */
    int64_t ids[];
} ob_post_t;

struct outbox {
    struct event_base *base;
    db_pool_t *db;
    outbox_route_t *routes; /* copies; topic and path point into |strs| */
    char **strs;            /* owned copies: topic, path of each route */
    ob_claim_t *claims;     /* one per route, the ud of its claim query */
    size_t nroutes;
    int poll_ms;
    int batch_max;
    int rows_max;
    int backoff_max_ms;

    struct event *poll_ev;
    struct event *kick_ev;

    int refs;    /* owner + one per awaited callback */
    int freed;   /* outbox_free ran */
    int running; /* a pass is in flight */
    int again;   /* run another pass when this one ends */
    int pending; /* awaited callbacks of the current pass */
    int db_warned;
    int backlog_inflight;
    int gc_inflight;
    int64_t backlog_at_us;
    int64_t gc_at_us;
    uint64_t rng;
    outbox_stats_t stats;
};

static void ob_pass_start(outbox_t *ob);

static void
ob_destroy(outbox_t *ob)
{
    for (size_t i = 0; ob->strs != NULL && i < 2 * ob->nroutes; i++) {
        free(ob->strs[i]);
    }
    free(ob->strs);
    free(ob->routes);
    free(ob->claims);
    if (ob->poll_ev != NULL) {
        event_free(ob->poll_ev);
    }
    if (ob->kick_ev != NULL) {
        event_free(ob->kick_ev);
    }
    free(ob);
}

static void
ob_unref(outbox_t *ob)
{
    if (--ob->refs == 0) {
        ob_destroy(ob);
    }
}

/* One awaited callback of the current pass returned. May free |ob|. */
/* The pass stops waiting for one operation; the next pass starts when none is left. */
static void
ob_pass_release(outbox_t *ob)
{
    ob->pending--;
    if (ob->pending == 0 && ob->running) {
        ob->running = 0;
        if (ob->again && !ob->freed) {
            struct timeval tv = {0, 0};
            evtimer_add(ob->kick_ev, &tv);
        }
    }
}

static void
ob_op_done(outbox_t *ob)
{
    ob_pass_release(ob);
    ob_unref(ob);
}

static uint64_t
ob_rand(outbox_t *ob)
{
    /* xorshift64*: jitter only, not security. */
    ob->rng ^= ob->rng >> 12;
    ob->rng ^= ob->rng << 25;
    ob->rng ^= ob->rng >> 27;
    return ob->rng * 2685821657736338717ULL;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempts)] milliseconds. */
static long
ob_backoff_ms(outbox_t *ob, int attempts)
{
    int shift = attempts < 0 ? 0 : (attempts > 20 ? 20 : attempts);
    long ceiling = (long)OB_BACKOFF_BASE_MS << shift;

    if (ceiling > ob->backoff_max_ms) {
        ceiling = ob->backoff_max_ms;
    }
    return (long)(ob_rand(ob) % (uint64_t)(ceiling + 1));
}

/* "{1,2,3}" into a malloc'd string, or NULL. */
static char *
ob_ids_literal(const int64_t *ids, size_t n)
{
    size_t cap = 3 + n * 21;
    size_t len = 0;
    char *s = malloc(cap);

    if (s == NULL) {
        return NULL;
    }
    s[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(s + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
        if (w < 0 || (size_t)w >= cap - len) {
            free(s);
            return NULL;
        }
        len += (size_t)w;
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

static void
ob_update_cb(int rc, PGresult *res, void *ud)
{
    ob_post_t *p = ud;
    outbox_t *ob = p->ob;

    if (rc != PHR_OK && !ob->freed) {
        /* The rows stay claimed until the lease ends, then go out again (the peer dedups). */
        log_warn("outbox: recording the outcome of %zu %s row(s) failed: %s", p->nids,
                 ob->routes[p->route].topic, phr_err_str(rc));
    }
    if (p->released) {
        free(p);
        ob_unref(ob);
        return;
    }
    free(p);
    ob_op_done(ob);
}

/*
 * Records the outcome of |p| (takes it over); called once per post.
 * |rejected|: for OB_SENT, a text[] literal of the keys the peer refused
 * item by item (those rows turn dead), else NULL.
 */
static void
ob_post_finish_items(ob_post_t *p, ob_outcome_t outcome, const char *why, const char *rejected)
{
    outbox_t *ob = p->ob;
    const outbox_route_t *rt = &ob->routes[p->route];
    char *ids = ob_ids_literal(p->ids, p->nids);
    char delay[24];
    int rc;

    if (outcome == OB_SENT) {
        ob->stats.sent += p->nids;
    } else {
        ob->stats.failures += p->nids;
    }
    if (ids == NULL) {
        free(p);
        ob_op_done(ob);
        return;
    }
    if (outcome == OB_SENT && rejected != NULL) {
        const char *params[3] = {ids, rejected, "rejected by the peer"};
        log_warn("outbox: peer rejected some %s item(s) of a batch (first id %" PRId64
                 "); marked dead",
                 rt->topic, p->ids[0]);
        rc = db_query(ob->db, ob_sql_sent_but, 3, params, ob_update_cb, p);
    } else if (outcome == OB_SENT) {
        const char *params[1] = {ids};
        rc = db_query(ob->db, ob_sql_sent, 1, params, ob_update_cb, p);
        /*
         * The next pass need not wait for this UPDATE: these rows stay leased until it
         * commits, so it claims only newer ones, and they were delivered (order kept).
         */
        if (rc == PHR_OK) {
            p->released = 1;
            ob_pass_release(ob);
        }
    } else if (outcome == OB_DEAD) {
        const char *params[2] = {ids, why};
        log_warn("outbox: peer refused %zu %s row(s) (first id %" PRId64 ") permanently (%s); "
                 "marked dead",
                 p->nids, rt->topic, p->ids[0], why);
        rc = db_query(ob->db, ob_sql_dead, 2, params, ob_update_cb, p);
    } else {
        snprintf(delay, sizeof(delay), "%ld", ob_backoff_ms(ob, p->max_attempts));
        const char *params[3] = {ids, delay, why};
        log_debug("outbox: %zu %s row(s) not delivered (%s), retry in %s ms", p->nids, rt->topic,
                  why, delay);
        rc = db_query(ob->db, ob_sql_retry, 3, params, ob_update_cb, p);
    }
    free(ids);
    if (rc != PHR_OK) {
        log_warn("outbox: cannot record the outcome of %zu %s row(s): %s", p->nids, rt->topic,
                 phr_err_str(rc));
        free(p);
        ob_op_done(ob);
    }
}

static void
ob_post_finish(ob_post_t *p, ob_outcome_t outcome, const char *why)
{
    ob_post_finish_items(p, outcome, why, NULL);
}

/*
 * The keys a batch answer {"results":[{"event_id":K,"status":"rejected"},...]}
 * refused, as a text[] literal (caller frees); NULL when none (or no such
 * answer: everything was taken).
 */
static char *
ob_rejected_keys(const hcli_resp_t *resp)
{
    json_object *o = NULL, *results, *it, *v;
    char *out = NULL;
    size_t len = 0, cap = 0;

    if (resp->body == NULL || resp->body_len == 0 ||
        jx_parse(resp->body, resp->body_len, 8, &o, NULL) != PHR_OK ||
        !json_object_object_get_ex(o, "results", &results) ||
        !json_object_is_type(results, json_type_array)) {
        json_object_put(o);
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(results); i++) {
        it = json_object_array_get_idx(results, i);
        if (!json_object_object_get_ex(it, "status", &v) ||
            strcmp(json_object_get_string(v), "rejected") != 0 ||
            !json_object_object_get_ex(it, "event_id", &v) ||
            !json_object_is_type(v, json_type_string)) {
            continue;
        }
        const char *key = json_object_get_string(v);
        size_t klen = strlen(key);
        if (klen == 0 || klen > OB_KEY_MAX) {
            continue; /* not one of our keys: nothing to match */
        }
        if (out == NULL || len + 2 * klen + 6 > cap) { /* ',' '"' escaped key '"' '}' NUL */
            cap = (len + 2 * klen + 6) * 2;
            char *n = realloc(out, cap);
            if (n == NULL) {
                free(out);
                json_object_put(o);
                return NULL;
            }
            out = n;
        }
        out[len] = len == 0 ? '{' : ',';
        out[len + 1] = '"';
        len += 2;
        for (size_t k = 0; k < klen; k++) {
            if (key[k] == '"' || key[k] == '\\') {
                out[len++] = '\\';
            }
            out[len++] = key[k];
        }
        out[len++] = '"';
        out[len] = '\0';
    }
    json_object_put(o);
    if (out != NULL) {
        out[len++] = '}';
        out[len] = '\0';
    }
    return out;
}

static void
ob_post_cb(int rc, const hcli_resp_t *resp, void *ud)
{
    ob_post_t *p = ud;
    outbox_t *ob = p->ob;
    char why[OB_ERR_MAX];

    if (ob->freed) {
        free(p);
        ob_op_done(ob);
        return;
    }
    if (rc != PHR_OK) {
        snprintf(why, sizeof(why), "%s", phr_err_str(rc));
        ob_post_finish(p, OB_RETRY, why);
        return;
    }
    int st = resp->status;
    snprintf(why, sizeof(why), "http %d", st);
    if (st >= 200 && st <= 299) {
        char *rejected = ob->routes[p->route].batch ? ob_rejected_keys(resp) : NULL;
        ob_post_finish_items(p, OB_SENT, NULL, rejected);
        free(rejected);
    } else if (st >= 400 && st <= 499 && st != 404 && st != 405 && st != 408 && st != 409 &&
               st != 429) {
        ob_post_finish(p, OB_DEAD, why);
    } else {
        /* 5xx, 429, 408, 409 (duplicate in flight), 404/405 (route not deployed yet), 1xx/3xx */
        ob_post_finish(p, OB_RETRY, why);
    }
}

static ob_post_t *
ob_post_new(outbox_t *ob, size_t route, size_t nids)
{
    ob_post_t *p = calloc(1, sizeof(*p) + nids * sizeof(p->ids[0]));

    if (p != NULL) {
        p->ob = ob;
        p->route = route;
    }
    return p;
}

/*
 * The path of one row: the route's path with "{name}" replaced by the body's
 * string field |name| (letters, digits and '-' only). PHR_EINVAL when the
 * field is missing or unsafe.
 */
static int
ob_row_path(const char *tmpl, const char *body, size_t len, char *out, size_t cap)
{
    const char *open = strchr(tmpl, '{');
    const char *close = open != NULL ? strchr(open, '}') : NULL;
    char name[64];

    if (open == NULL || close == NULL) {
        return snprintf(out, cap, "%s", tmpl) < (int)cap ? PHR_OK : PHR_ETOOBIG;
    }
    if ((size_t)(close - open - 1) >= sizeof(name)) {
        return PHR_EINVAL;
    }
    memcpy(name, open + 1, (size_t)(close - open - 1));
    name[close - open - 1] = '\0';
    json_object *o = NULL, *v = NULL;
    if (jx_parse(body, len, 8, &o, NULL) != PHR_OK) {
        o = NULL;
    }
    const char *val = o != NULL && json_object_object_get_ex(o, name, &v) &&
                              json_object_is_type(v, json_type_string)
                          ? json_object_get_string(v)
                          : "";
    int ok = val[0] != '\0' && strspn(val, "0123456789abcdefABCDEF-") == strlen(val) &&
             snprintf(out, cap, "%.*s%s%s", (int)(open - tmpl), tmpl, val, close + 1) < (int)cap;
    json_object_put(o);
    return ok ? PHR_OK : PHR_EINVAL;
}

/* Sends |p| (owned by the pass from now on: the pass waits for it). */
static void
ob_post_send(ob_post_t *p, const char *key, const char *body, size_t len)
{
    outbox_t *ob = p->ob;
    const outbox_route_t *rt = &ob->routes[p->route];
    const char *hdrs[3] = {"idempotency-key", key, NULL};
    char path[512];
    int rc;

    ob->refs++;
    ob->pending++;
    if (ob_row_path(rt->path, body, len, path, sizeof(path)) != PHR_OK) {
        ob_post_finish(p, OB_DEAD, "the row lacks the path's parameter");
        return;
    }
    rc = hcli_request_hdrs(rt->peer, "POST", path, key != NULL ? hdrs : NULL, "application/json",
                           body, len, NULL, ob_post_cb, p);
    if (rc == PHR_EINVAL) {
        ob_post_finish(p, OB_DEAD, "invalid idempotency key");
    } else if (rc != PHR_OK) {
        ob_post_finish(p, OB_RETRY, phr_err_str(rc));
    }
}

static int64_t
ob_row_id(const PGresult *res, int row)
{
    return strtoll(PQgetvalue(res, row, 0), NULL, 10);
}

static int
ob_row_attempts(const PGresult *res, int row)
{
    long v = strtol(PQgetvalue(res, row, 1), NULL, 10);
    return v < 0 ? 0 : (v > 1000000 ? 1000000 : (int)v);
}

static const PGresult *ob_sort_res; /* qsort has no context argument; single-threaded */

static int
ob_row_cmp(const void *a, const void *b)
{
    int64_t x = ob_row_id(ob_sort_res, *(const int *)a);
    int64_t y = ob_row_id(ob_sort_res, *(const int *)b);
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* One POST {"items":[...]} for rows |order[0..n)| of |res|. */
static void
ob_send_batch(outbox_t *ob, size_t route, const PGresult *res, const int *order, size_t n)
{
    static const char head[] = "{\"items\":[";
    static const char tail[] = "]}";
    ob_post_t *p = ob_post_new(ob, route, n);
    size_t total = sizeof(head) + sizeof(tail);
    size_t off = 0;
    char *body;

    for (size_t i = 0; i < n; i++) {
        total += (size_t)PQgetlength(res, order[i], 3) + 1;
    }
    body = malloc(total);
    if (p == NULL || body == NULL) {
        free(p);
        free(body);
        log_error("outbox: out of memory building a batch; rows retry after the lease");
        return;
    }
    memcpy(body + off, head, sizeof(head) - 1);
    off += sizeof(head) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)PQgetlength(res, order[i], 3);
        if (i > 0) {
            body[off++] = ',';
        }
        memcpy(body + off, PQgetvalue(res, order[i], 3), len);
        off += len;
        p->ids[i] = ob_row_id(res, order[i]);
        int att = ob_row_attempts(res, order[i]);
        if (att > p->max_attempts) {
            p->max_attempts = att;
        }
    }
    memcpy(body + off, tail, sizeof(tail) - 1);
    off += sizeof(tail) - 1;
    body[off] = '\0';
    p->nids = n;
    ob_post_send(p, NULL, body, off);
    free(body);
}

static void
ob_send_rows(outbox_t *ob, size_t route, const PGresult *res, const int *order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ob_post_t *p = ob_post_new(ob, route, 1);
        if (p == NULL) {
            log_error("outbox: out of memory; rows retry after the lease");
            return;
        }
        p->ids[0] = ob_row_id(res, order[i]);
        p->max_attempts = ob_row_attempts(res, order[i]);
        p->nids = 1;
        ob_post_send(p, PQgetvalue(res, order[i], 2), PQgetvalue(res, order[i], 3),
                     (size_t)PQgetlength(res, order[i], 3));
    }
}

/* Rows claimed per pass for route |i|: a whole batch, or rows_max single posts. */
static int
ob_claim_limit(const outbox_t *ob, size_t i)
{
    return ob->routes[i].batch ? ob->batch_max : ob->rows_max;
}

static void
ob_claim_cb(int rc, PGresult *res, void *ud)
{
    ob_claim_t *cl = ud;
    outbox_t *ob = cl->ob;

    if (ob->freed) {
        ob_op_done(ob);
        return;
    }
    if (rc != PHR_OK) {
        if (!ob->db_warned) {
            log_warn("outbox: claiming %s rows failed: %s", ob->routes[cl->route].topic,
                     phr_err_str(rc));
            ob->db_warned = 1;
        }
        ob_op_done(ob);
        return;
    }
    ob->db_warned = 0;
    int n = PQntuples(res);
    if (n >= ob_claim_limit(ob, cl->route)) {
        ob->again = 1; /* probably more due rows */
    }
    if (n > 0) {
        int *order = malloc((size_t)n * sizeof(*order));
        if (order == NULL) {
            log_error("outbox: out of memory; rows retry after the lease");
            ob_op_done(ob);
            return;
        }
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        ob_sort_res = res;
        qsort(order, (size_t)n, sizeof(*order), ob_row_cmp);
        ob_sort_res = NULL;
        if (ob->routes[cl->route].batch) {
            ob_send_batch(ob, cl->route, res, order, (size_t)n);
        } else {
            ob_send_rows(ob, cl->route, res, order, (size_t)n);
        }
        free(order);
    }
    ob_op_done(ob);
}

static void
ob_backlog_cb(int rc, PGresult *res, void *ud)
{
    outbox_t *ob = ud;

    ob->backlog_inflight = 0;
    if (!ob->freed && rc == PHR_OK && PQntuples(res) == 1) {
        ob->stats.backlog = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    }
    ob_unref(ob);
}

static void
ob_gc_cb(int rc, PGresult *res, void *ud)
{
    outbox_t *ob = ud;

    ob->gc_inflight = 0;
    if (!ob->freed && rc == PHR_OK) {
        const char *n = PQcmdTuples(res);
        if (n[0] != '\0' && strcmp(n, "0") != 0) {
            log_info("outbox: deleted %s rows sent more than 7 days ago", n);
        }
    }
    ob_unref(ob);
}

/* The backlog count (at most once per poll) and the deletion of old sent rows. */
static void
ob_housekeeping(outbox_t *ob)
{
    int64_t now = tu_mono_us();

    if (!ob->backlog_inflight && now - ob->backlog_at_us >= (int64_t)ob->poll_ms * 1000) {
        if (db_query(ob->db, ob_sql_backlog, 0, NULL, ob_backlog_cb, ob) == PHR_OK) {
            ob->backlog_at_us = now;
            ob->backlog_inflight = 1;
            ob->refs++;
        }
    }
    if (!ob->gc_inflight && now - ob->gc_at_us >= OB_GC_INTERVAL_US) {
        if (db_query(ob->db, ob_sql_gc, 0, NULL, ob_gc_cb, ob) == PHR_OK) {
            ob->gc_at_us = now;
            ob->gc_inflight = 1;
            ob->refs++;
        }
    }
}

static void
ob_pass_start(outbox_t *ob)
{
    char limit[16];

    if (ob->freed) {
        return;
    }
    if (ob->running) {
        ob->again = 1;
        return;
    }
    ob->running = 1;
    ob->again = 0;
    ob->pending = 1; /* held by this function until the claims are submitted */
    ob->refs++;
    ob_housekeeping(ob);
    for (size_t i = 0; i < ob->nroutes; i++) {
        snprintf(limit, sizeof(limit), "%d", ob_claim_limit(ob, i));
        const char *params[2] = {limit, ob->routes[i].topic};
        int rc = db_query(ob->db, ob_sql_claim, 2, params, ob_claim_cb, &ob->claims[i]);
        if (rc == PHR_OK) {
            ob->refs++;
            ob->pending++;
        } else if (!ob->db_warned && rc != PHR_EUNAVAIL) {
            log_warn("outbox: cannot claim %s rows: %s", ob->routes[i].topic, phr_err_str(rc));
            ob->db_warned = 1;
        }
    }
    ob_op_done(ob);
}

static void
ob_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    ob_pass_start(arg);
}

static char *
ob_strdup(const char *s)
{
    size_t len = strlen(s);
    char *d = malloc(len + 1);

    if (d != NULL) {
        memcpy(d, s, len + 1);
    }
    return d;
}

static int
ob_topic_ok(const char *t)
{
    size_t len = t != NULL ? strlen(t) : 0;

    if (len == 0 || len > OB_TOPIC_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-')) {
            return 0;
        }
    }
    return 1;
}

outbox_t *
outbox_create(struct event_base *base, db_pool_t *db, const outbox_config_t *cfg)
{
    outbox_t *ob;

    if (base == NULL || db == NULL || cfg == NULL || cfg->nroutes == 0 || cfg->routes == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const outbox_route_t *r = &cfg->routes[i];
        if (!ob_topic_ok(r->topic) || r->peer == NULL || r->path == NULL || r->path[0] != '/') {
            return NULL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].topic, r->topic) == 0) {
                return NULL; /* one route per topic */
            }
        }
    }
    ob = calloc(1, sizeof(*ob));
    if (ob == NULL) {
        return NULL;
    }
    ob->base = base;
    ob->db = db;
    ob->refs = 1;
    ob->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : OB_DEFAULT_POLL_MS;
    ob->batch_max = cfg->batch_max > 0 ? cfg->batch_max : OB_DEFAULT_BATCH;
    if (ob->batch_max > OB_MAX_BATCH) {
        ob->batch_max = OB_MAX_BATCH;
    }
    ob->rows_max = cfg->rows_max > 0 ? cfg->rows_max : OB_DEFAULT_BATCH;
    if (ob->rows_max > OB_MAX_BATCH) {
        ob->rows_max = OB_MAX_BATCH;
    }
    ob->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : OB_DEFAULT_BACKOFF_MAX_MS;
    ob->rng = (uint64_t)tu_mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)ob;
    if (ob->rng == 0) {
        ob->rng = 0x9e3779b97f4a7c15ULL;
    }
    ob->backlog_at_us = tu_mono_us() - (int64_t)ob->poll_ms * 1000;
    ob->gc_at_us = tu_mono_us() - OB_GC_INTERVAL_US;
    ob->routes = calloc(cfg->nroutes, sizeof(*ob->routes));
    ob->claims = calloc(cfg->nroutes, sizeof(*ob->claims));
    ob->strs = calloc(2 * cfg->nroutes, sizeof(*ob->strs));
    if (ob->routes == NULL || ob->claims == NULL || ob->strs == NULL) {
        ob_destroy(ob);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        ob->routes[i] = cfg->routes[i];
        ob->strs[2 * i] = ob_strdup(cfg->routes[i].topic);
        ob->strs[2 * i + 1] = ob_strdup(cfg->routes[i].path);
        ob->routes[i].topic = ob->strs[2 * i];
        ob->routes[i].path = ob->strs[2 * i + 1];
        ob->claims[i].ob = ob;
        ob->claims[i].route = i;
        ob->nroutes = i + 1;
        if (ob->strs[2 * i] == NULL || ob->strs[2 * i + 1] == NULL) {
            ob_destroy(ob);
            return NULL;
        }
    }
    ob->poll_ev = event_new(base, -1, EV_PERSIST, ob_timer_cb, ob);
    ob->kick_ev = evtimer_new(base, ob_timer_cb, ob);
    if (ob->poll_ev == NULL || ob->kick_ev == NULL) {
        ob_destroy(ob);
        return NULL;
    }
    struct timeval poll = {ob->poll_ms / 1000, (suseconds_t)(ob->poll_ms % 1000) * 1000};
    struct timeval now = {0, 0};
    event_add(ob->poll_ev, &poll);
    evtimer_add(ob->kick_ev, &now); /* first pass right away */
    return ob;
}

void
outbox_free(outbox_t *ob)
{
    if (ob == NULL || ob->freed) {
        return;
    }
    ob->freed = 1;
    event_del(ob->poll_ev);
    event_del(ob->kick_ev);
    ob_unref(ob);
}

int
outbox_add(db_txn_t *txn, const char *topic, const char *key, const char *json, db_cb cb, void *ud)
{
    if (txn == NULL || !ob_topic_ok(topic) || key == NULL || key[0] == '\0' || json == NULL ||
        cb == NULL) {
        return PHR_EINVAL;
    }
    const char *params[3] = {topic, key, json};
    return db_txn_query(txn, ob_sql_add, 3, params, cb, ud);
}

void
outbox_kick(outbox_t *ob)
{
    if (ob == NULL || ob->freed) {
        return;
    }
    if (ob->running) {
        ob->again = 1;
        return;
    }
    struct timeval now = {0, 0};
    evtimer_add(ob->kick_ev, &now);
}

void
outbox_stats(const outbox_t *ob, outbox_stats_t *out)
{
    if (ob == NULL || out == NULL) {
        return;
    }
    *out = ob->stats;
}
