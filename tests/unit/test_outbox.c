/*
 * test_outbox.c - common/outbox.c against a real PostgreSQL and a real
 * HTTP/2 peer (an in-process h2s server on 127.0.0.1, port 0).
 *
 * Environment:
 *   PHR_TEST_PG_CONNINFO  libpq key=value connection string (or postgresql:// URI) of a
 *                         database where the test may create and drop schemas, e.g.
 *                         "host=127.0.0.1 port=55991 dbname=phr_test user=postgres".
 *                         When unset the test FAILS (exit 1).
 *   PHR_TEST_LOG_LEVEL    optional log level of the code under test (default "error").
 *
 * Every test runs in its own schema phrtest_outbox_<pid>_<n> (selected with
 * options=-csearch_path=...), created from services/records/migrations/002_outbox.sql
 * (read from the working directory, the repository root) and dropped afterwards (the
 * fixture of pgtest.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgtest.h"

#include <event2/event.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "h2s.h"
#include "hcli.h"
#include "outbox.h"

#define T_EVENTS "/internal/v1/events"
#define T_NOTIF "/internal/v1/notifications"
#define T_NOTIF_BASE 1000 /* notification rows carry n >= 1000, audit rows n < 1000 */
#define T_MAXN 2000
#define T_MAXREQ 1024
#define T_MAXHUNG 16

enum { M_202, M_503, M_400, M_HANG, M_REJECT_ODD };

static const char *const t_migration_files[] = {
    "services/records/migrations/002_outbox.sql",
    "services/notification/migrations/002_outbox.sql",
    "services/audit/migrations/002_outbox.sql",
    "services/auth/migrations/005_outbox.sql",
};

static char *g_migration;

/* ---- the peer -------------------------------------------------------------- */

typedef struct {
    int mode_events; /* M_* */
    int mode_notif;
    int fail_left; /* answer 503 to this many requests first */
    int nreq;      /* requests received (any answer) */
    int nreq_events;
    int nreq_notif;
    int bad_shape;         /* a request that did not look as expected */
    int seen[T_MAXN];      /* accepted (2xx) deliveries per n */
    int order[T_MAXN * 2]; /* accepted n in arrival order, both topics */
    int norder;
    h2s_req_t *hung[T_MAXHUNG];
    int nhung;
} peer_t;

static peer_t g_peer;
static h2s_server_t *g_srv;
static int g_port;
static hcli_t *g_cli;

/* n of one item: {"n": <int>, "event_id": "..."}; -1 when absent. */
static int
item_n(json_object *o)
{
    json_object *n;

    if (o == NULL || !json_object_object_get_ex(o, "n", &n) ||
        !json_object_is_type(n, json_type_int)) {
        return -1;
    }
    int v = json_object_get_int(n);
    return v >= 0 && v < T_MAXN ? v : -1;
}

static void
peer_accept(int n)
{
    g_peer.seen[n]++;
    if (g_peer.norder < T_MAXN * 2) {
        g_peer.order[g_peer.norder++] = n;
    }
}

static void
h_peer(h2s_req_t *req, void *ud)
{
    int is_events = ud != NULL;
    size_t len;
    const char *body = h2s_req_body(req, &len);
    const char *key = h2s_req_header(req, "idempotency-key");
    json_object *o = json_tokener_parse(body);
    int mode = is_events ? g_peer.mode_events : g_peer.mode_notif;
    int ns[T_MAXN];
    int nn = 0;

    g_peer.nreq++;
    g_peer.nreq_events += is_events;
    g_peer.nreq_notif += !is_events;
    if (o == NULL) {
        g_peer.bad_shape++;
    } else if (is_events) {
        json_object *items;
        if (key != NULL || !json_object_object_get_ex(o, "items", &items) ||
            !json_object_is_type(items, json_type_array) || json_object_array_length(items) == 0) {
            g_peer.bad_shape++;
        } else {
            for (size_t i = 0; i < json_object_array_length(items) && nn < T_MAXN; i++) {
                int n = item_n(json_object_array_get_idx(items, i));
                if (n < 0 || n >= T_NOTIF_BASE) {
                    g_peer.bad_shape++;
                } else {
                    ns[nn++] = n;
                }
            }
        }
    } else {
        int n = item_n(o);
        char want[64];
        snprintf(want, sizeof(want), "notification-%d", n);
        if (n < T_NOTIF_BASE || key == NULL || strcmp(key, want) != 0) {
            g_peer.bad_shape++;
        } else {
            ns[nn++] = n;
        }
    }
    json_object_put(o);

    if (g_peer.fail_left > 0) {
        g_peer.fail_left--;
        mode = M_503;
    }
    switch (mode) {
    case M_202:
        for (int i = 0; i < nn; i++) {
            peer_accept(ns[i]);
        }
        h2s_respond(req, 202, "application/json", "{}", 2);
        break;
    case M_REJECT_ODD: { /* 200 with per-item results: odd n rejected, even accepted */
        json_object *res = json_object_new_object(), *arr = json_object_new_array();
        for (int i = 0; i < nn; i++) {
            json_object *it = json_object_new_object();
            char k[64];
            snprintf(k, sizeof(k), "audit-%d", ns[i]);
            json_object_object_add(it, "event_id", json_object_new_string(k));
            json_object_object_add(it, "status",
                                   json_object_new_string(ns[i] % 2 ? "rejected" : "accepted"));
            json_object_array_add(arr, it);
            if (ns[i] % 2 == 0) {
                peer_accept(ns[i]);
            }
        }
        json_object_object_add(res, "results", arr);
        const char *txt = json_object_to_json_string(res);
        h2s_respond(req, 200, "application/json", txt, strlen(txt));
        json_object_put(res);
        break;
    }
    case M_503: h2s_respond(req, 503, "application/json", "{}", 2); break;
    case M_400: h2s_respond(req, 400, "application/json", "{}", 2); break;
    default:
        if (g_peer.nhung < T_MAXHUNG) {
            g_peer.hung[g_peer.nhung++] = req;
        } else {
            h2s_respond(req, 503, "application/json", "{}", 2);
        }
        break;
    }
}

static h2s_server_t *
peer_start(int port)
{
    h2s_limits_t lim = {
        .max_header_list = 16384,
        .max_body = (size_t)4 * 1024 * 1024,
        .max_streams = 100,
        .output_cap = (size_t)256 * 1024,
        .idle_timeout_ms = 30000,
        .request_timeout_ms = 5000,
    };
    h2s_server_t *srv = h2s_server_create(g_pgt.base, &lim);
    assert_non_null(srv);
    assert_int_equal(h2s_route(srv, "POST", T_EVENTS, h_peer, (void *)1, 0), PHR_OK);
    assert_int_equal(h2s_route(srv, "POST", T_NOTIF, h_peer, NULL, 0), PHR_OK);
    assert_int_equal(h2s_listen(srv, "127.0.0.1", port), PHR_OK);
    return srv;
}

/* Answers every request the peer is holding with |status|. */
static void
peer_release(int status)
{
    for (int i = 0; i < g_peer.nhung; i++) {
        h2s_respond(g_peer.hung[i], status, "application/json", "{}", 2);
    }
    g_peer.nhung = 0;
}

/* ---- helpers --------------------------------------------------------------- */

static long
n_sent(void)
{
    return pgt_side_long("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL");
}

/* A ready pool in the test schema. */
static db_pool_t *
make_pool(void)
{
    return pgt_ready_pool(3, 5000, 1000);
}

static hcli_t *
make_cli(int port)
{
    hcli_config_t cfg = {"127.0.0.1", port, "records", "test-secret", 1000};
    hcli_t *cli = hcli_create(g_pgt.base, &cfg);
    assert_non_null(cli);
    return cli;
}

static outbox_route_t g_routes[2];

static outbox_t *
make_outbox(db_pool_t *db, hcli_t *cli, int poll_ms, int batch_max, int backoff_max_ms)
{
    g_routes[0] = (outbox_route_t){"audit", cli, T_EVENTS, 1};
    g_routes[1] = (outbox_route_t){"notification", cli, T_NOTIF, 0};
    outbox_config_t cfg = {g_routes, 2, poll_ms, batch_max, backoff_max_ms, batch_max};
    outbox_t *ob = outbox_create(g_pgt.base, db, &cfg);
    assert_non_null(ob);
    return ob;
}

typedef struct {
    int calls;
    int rc;
    db_txn_t *txn;
} tcb_t;

static void
t_txn_cb(int rc, db_txn_t *txn, void *ud)
{
    tcb_t *t = ud;
    t->calls++;
    t->rc = rc;
    t->txn = txn;
}

static void
t_q_cb(int rc, PGresult *res, void *ud)
{
    tcb_t *t = ud;
    t->calls++;
    if (rc != PHR_OK) {
        t->rc = rc;
    }
}

static db_txn_t *
txn_begin(db_pool_t *p)
{
    tcb_t b = {0};
    assert_int_equal(db_txn_begin(p, t_txn_cb, &b), PHR_OK);
    PGT_WAIT_UNTIL(b.calls > 0, 5000);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, PHR_OK);
    assert_non_null(b.txn);
    return b.txn;
}

static void
txn_end(db_txn_t *txn, int commit)
{
    tcb_t e = {0};
    assert_int_equal(db_txn_end(txn, commit, t_q_cb, &e), PHR_OK);
    PGT_WAIT_UNTIL(e.calls > 0, 5000);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.rc, PHR_OK);
}

/* Adds rows n = from..to-1 of |topic| (key "<topic>-<n>") in one transaction. */
static void
add_rows(db_pool_t *p, const char *topic, int from, int to, int commit)
{
    db_txn_t *txn = txn_begin(p);
    tcb_t q = {0};
    char key[64], body[128];

    for (int n = from; n < to; n++) {
        snprintf(key, sizeof(key), "%s-%d", topic, n);
        snprintf(body, sizeof(body), "{\"n\": %d, \"event_id\": \"%s\"}", n, key);
        assert_int_equal(outbox_add(txn, topic, key, body, t_q_cb, &q), PHR_OK);
    }
    PGT_WAIT_UNTIL(q.calls == to - from, 5000);
    assert_int_equal(q.calls, to - from);
    assert_int_equal(q.rc, PHR_OK);
    txn_end(txn, commit);
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = calloc(1, 65536);
    size_t n = buf != NULL ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf != NULL && n == 0) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* Number of accepted deliveries of n in [from, to) that were not exactly one. */
static int
not_once(int from, int to)
{
    int bad = 0;
    for (int n = from; n < to; n++) {
        bad += g_peer.seen[n] != 1;
    }
    return bad;
}

/* 1 when the accepted deliveries of each topic arrived in increasing n. */
static int
in_order(void)
{
    int last_a = -1, last_n = -1;
    for (int i = 0; i < g_peer.norder; i++) {
        int n = g_peer.order[i];
        int *last = n < T_NOTIF_BASE ? &last_a : &last_n;
        if (n <= *last) {
            return 0;
        }
        *last = n;
    }
    return 1;
}

static int
setup(void **state)
{
    memset(&g_peer, 0, sizeof(g_peer));
    pgt_setup(state);
    pgt_side_exec(g_migration);
    g_srv = peer_start(0);
    g_port = h2s_port(g_srv);
    assert_true(g_port > 0);
    g_cli = make_cli(g_port);
    return 0;
}

static int
teardown(void **state)
{
    hcli_free(g_cli);
    g_cli = NULL;
    peer_release(503);
    pgt_spin(50);
    h2s_server_free(g_srv);
    g_srv = NULL;
    return pgt_teardown(state);
}

/* ---- tests ----------------------------------------------------------------- */

/* The four services create the table with the same text. */
static void
test_migrations_identical(void **state)
{
    for (size_t i = 1; i < sizeof(t_migration_files) / sizeof(t_migration_files[0]); i++) {
        char *other = read_file(t_migration_files[i]);
        assert_non_null(other);
        assert_string_equal(other, g_migration);
        free(other);
    }
}

/* Committed rows are delivered once, in the right shape; rolled-back rows never. */
static void
test_commit_delivered_once(void **state)
{
    db_pool_t *db = make_pool();
    outbox_stats_t st;

    add_rows(db, "audit", 0, 5, 1);
    add_rows(db, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 3, 1);
    add_rows(db, "audit", 100, 103, 0);                                      /* rolled back */
    add_rows(db, "notification", T_NOTIF_BASE + 100, T_NOTIF_BASE + 102, 0); /* rolled back */
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), 8);

    outbox_t *ob = make_outbox(db, g_cli, 200, 100, 1000);
    PGT_WAIT_UNTIL(n_sent() == 8, 5000);
    assert_int_equal(n_sent(), 8);
    pgt_spin(600); /* a few more polls: nothing goes out twice */

    assert_int_equal(g_peer.bad_shape, 0);
    assert_int_equal(not_once(0, 5), 0);
    assert_int_equal(not_once(T_NOTIF_BASE, T_NOTIF_BASE + 3), 0);
    assert_int_equal(g_peer.norder, 8);
    assert_int_equal(g_peer.nreq_events, 1); /* one batch */
    assert_int_equal(g_peer.nreq_notif, 3);  /* one POST per row */
    assert_true(in_order());
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE attempts <> 0 OR "
                                   "last_error IS NOT NULL OR dead_at IS NOT NULL"),
                     0);
    PGT_WAIT_UNTIL((outbox_stats(ob, &st), st.backlog == 0), 2000);
    outbox_stats(ob, &st);
    assert_int_equal(st.sent, 8);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.backlog, 0);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* Rows of a rolled-back transaction never go out, even with later rows around them. */
static void
test_rollback_never_delivered(void **state)
{
    db_pool_t *db = make_pool();
    outbox_t *ob = make_outbox(db, g_cli, 100, 100, 1000);

    add_rows(db, "audit", 0, 2, 0);
    add_rows(db, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 2, 0);
    add_rows(db, "audit", 10, 11, 1);
    outbox_kick(ob);
    PGT_WAIT_UNTIL(g_peer.seen[10] == 1, 5000);
    pgt_spin(500);
    assert_int_equal(g_peer.seen[10], 1);
    assert_int_equal(g_peer.norder, 1);
    assert_int_equal(g_peer.nreq, 1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), 1);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* Peer down: rows stay, attempts grow, backoff; peer back: all delivered once, in order. */
static void
test_peer_down_then_back(void **state)
{
    int port = g_port;
    db_pool_t *db = make_pool();
    outbox_stats_t st;

    h2s_server_free(g_srv); /* nothing listens on |port| any more */
    g_srv = NULL;
    add_rows(db, "audit", 0, 6, 1);
    add_rows(db, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 3, 1);
    outbox_t *ob = make_outbox(db, g_cli, 100, 100, 400);

    PGT_WAIT_UNTIL(pgt_side_long("SELECT min(attempts) FROM outbox") >= 2, 5000);
    assert_true(pgt_side_long("SELECT min(attempts) FROM outbox") >= 2);
    assert_int_equal(n_sent(), 0);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE last_error IS NULL OR "
                                   "dead_at IS NOT NULL"),
                     0);
    /*
     * Backed off: never later than the cap (400 ms) after the last failure, plus slack.
     * Rows claimed by a pass still in flight carry the 30 s lease instead: not a backoff.
     */
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE next_attempt_at > now() + "
                                   "interval '1 second' AND next_attempt_at < now() + "
                                   "interval '20 seconds'"),
                     0);
    /* Rows added during the outage wait behind the failed ones. */
    add_rows(db, "audit", 6, 9, 1);
    add_rows(db, "notification", T_NOTIF_BASE + 3, T_NOTIF_BASE + 5, 1);
    pgt_spin(700);
    long a1 = pgt_side_long("SELECT sum(attempts) FROM outbox");
    pgt_spin(700);
    assert_true(pgt_side_long("SELECT sum(attempts) FROM outbox") > a1); /* still trying */
    assert_int_equal(n_sent(), 0);
    PGT_WAIT_UNTIL((outbox_stats(ob, &st), st.backlog == 14), 2000);
    outbox_stats(ob, &st);
    assert_int_equal(st.backlog, 14);
    assert_true(st.failures > 0);
    assert_int_equal(st.sent, 0);

    g_srv = peer_start(port);
    PGT_WAIT_UNTIL(n_sent() == 14, 10000);
    assert_int_equal(n_sent(), 14);
    pgt_spin(500);
    assert_int_equal(g_peer.bad_shape, 0);
    assert_int_equal(not_once(0, 9), 0);
    assert_int_equal(not_once(T_NOTIF_BASE, T_NOTIF_BASE + 5), 0);
    assert_int_equal(g_peer.norder, 14);
    assert_true(in_order());
    outbox_stats(ob, &st);
    assert_int_equal(st.sent, 14);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* 503, 503, then 202: delivered once, attempts counts the failures, sent_at set. */
static void
test_503_then_202(void **state)
{
    db_pool_t *db = make_pool();
    outbox_stats_t st;

    g_peer.fail_left = 2;
    add_rows(db, "audit", 0, 3, 1);
    outbox_t *ob = make_outbox(db, g_cli, 50, 100, 200);
    PGT_WAIT_UNTIL(n_sent() == 3, 5000);
    assert_int_equal(n_sent(), 3);
    pgt_spin(300);
    assert_int_equal(g_peer.nreq, 3);
    assert_int_equal(not_once(0, 3), 0);
    assert_int_equal(g_peer.bad_shape, 0);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE attempts = 2 AND "
                                   "sent_at IS NOT NULL AND last_error IS NULL"),
                     3);
    outbox_stats(ob, &st);
    assert_int_equal(st.sent, 3);
    assert_int_equal(st.failures, 6);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* A 400 is permanent: the row is dead, kept, not retried, and does not block later rows. */
static void
test_400_dead(void **state)
{
    db_pool_t *db = make_pool();

    g_peer.mode_notif = M_400;
    add_rows(db, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 1, 1);
    outbox_t *ob = make_outbox(db, g_cli, 50, 100, 200);
    PGT_WAIT_UNTIL(pgt_side_long("SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL") == 1,
                   5000);
    pgt_spin(800);
    assert_int_equal(g_peer.nreq, 1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL AND "
                                   "sent_at IS NULL AND attempts = 1 AND last_error = 'http 400'"),
                     1);

    g_peer.mode_notif = M_202;
    add_rows(db, "notification", T_NOTIF_BASE + 1, T_NOTIF_BASE + 2, 1);
    outbox_kick(ob);
    PGT_WAIT_UNTIL(g_peer.seen[T_NOTIF_BASE + 1] == 1, 5000);
    pgt_spin(300);
    assert_int_equal(g_peer.seen[T_NOTIF_BASE + 1], 1);
    assert_int_equal(g_peer.seen[T_NOTIF_BASE], 0);
    assert_int_equal(g_peer.nreq, 2);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), 2);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* A batch answered item by item: the rejected items are dead, the others sent, none retried. */
static void
test_batch_rejects_items(void **state)
{
    db_pool_t *db = make_pool();

    g_peer.mode_events = M_REJECT_ODD;
    add_rows(db, "audit", 0, 6, 1);
    outbox_t *ob = make_outbox(db, g_cli, 50, 100, 200);
    PGT_WAIT_UNTIL(pgt_side_long("SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL OR "
                                 "sent_at IS NOT NULL") == 6,
                   5000);
    pgt_spin(500);
    assert_int_equal(g_peer.nreq, 1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL AND "
                                   "dead_at IS NULL AND idempotency_key IN "
                                   "('audit-0', 'audit-2', 'audit-4')"),
                     3);
    assert_int_equal(
        pgt_side_long(
            "SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL AND "
            "sent_at IS NULL AND last_error = 'rejected by the peer' AND idempotency_key IN "
            "('audit-1', 'audit-3', 'audit-5')"),
        3);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* Two relays on one table (two replicas) deliver every row exactly once. */
static void
test_two_relays(void **state)
{
    db_pool_t *db1 = make_pool();
    db_pool_t *db2 = make_pool();
    hcli_t *cli2 = make_cli(g_port);
    outbox_stats_t s1, s2;

    add_rows(db1, "audit", 0, 300, 1);
    add_rows(db1, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 80, 1);
    outbox_t *ob1 = make_outbox(db1, g_cli, 30, 10, 200);
    outbox_t *ob2 = make_outbox(db2, cli2, 30, 10, 200);
    PGT_WAIT_UNTIL(n_sent() == 380, 20000);
    assert_int_equal(n_sent(), 380);
    pgt_spin(300);
    assert_int_equal(g_peer.bad_shape, 0);
    assert_int_equal(not_once(0, 300), 0);
    assert_int_equal(not_once(T_NOTIF_BASE, T_NOTIF_BASE + 80), 0);
    assert_int_equal(g_peer.norder, 380);
    outbox_stats(ob1, &s1);
    outbox_stats(ob2, &s2);
    assert_int_equal(s1.sent + s2.sent, 380);
    outbox_free(ob1);
    outbox_free(ob2);
    pgt_spin(50);
    hcli_free(cli2);
    db_pool_free(db1);
    db_pool_free(db2);
}

/* outbox_kick delivers at once, not at the next poll (a minute away). */
static void
test_kick(void **state)
{
    db_pool_t *db = make_pool();
    outbox_t *ob = make_outbox(db, g_cli, 60000, 100, 1000);

    pgt_spin(300); /* the first pass at start found nothing */
    add_rows(db, "audit", 0, 2, 1);
    pgt_spin(300);
    assert_int_equal(g_peer.norder, 0); /* no poll in between */
    int64_t t0 = t_now_ms();
    outbox_kick(ob);
    outbox_kick(ob); /* coalesced */
    PGT_WAIT_UNTIL(n_sent() == 2, 3000);
    assert_int_equal(n_sent(), 2);
    assert_true(t_now_ms() - t0 < 2000);
    assert_int_equal(not_once(0, 2), 0);
    assert_int_equal(g_peer.nreq, 1);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* The same idempotency key twice (same and another transaction): one row, one delivery. */
static void
test_duplicate_key(void **state)
{
    db_pool_t *db = make_pool();
    tcb_t q = {0};

    db_txn_t *txn = txn_begin(db);
    assert_int_equal(outbox_add(txn, "audit", "evt-1", "{\"n\": 1}", t_q_cb, &q), PHR_OK);
    assert_int_equal(outbox_add(txn, "audit", "evt-1", "{\"n\": 2}", t_q_cb, &q), PHR_OK);
    PGT_WAIT_UNTIL(q.calls == 2, 5000);
    assert_int_equal(q.rc, PHR_OK);
    txn_end(txn, 1);
    txn = txn_begin(db);
    assert_int_equal(outbox_add(txn, "audit", "evt-1", "{\"n\": 3}", t_q_cb, &q), PHR_OK);
    PGT_WAIT_UNTIL(q.calls == 3, 5000);
    assert_int_equal(q.rc, PHR_OK);
    txn_end(txn, 1);
    assert_int_equal(pgt_side_long("SELECT count(*) FROM outbox"), 1);

    /* Bad arguments never reach the database. */
    txn = txn_begin(db);
    assert_int_equal(outbox_add(txn, "audit", "", "{}", t_q_cb, &q), PHR_EINVAL);
    assert_int_equal(outbox_add(txn, "Bad Topic", "k", "{}", t_q_cb, &q), PHR_EINVAL);
    assert_int_equal(outbox_add(txn, "audit", "k", NULL, t_q_cb, &q), PHR_EINVAL);
    assert_int_equal(outbox_add(NULL, "audit", "k", "{}", t_q_cb, &q), PHR_EINVAL);
    txn_end(txn, 1);

    outbox_t *ob = make_outbox(db, g_cli, 100, 100, 1000);
    PGT_WAIT_UNTIL(n_sent() == 1, 5000);
    pgt_spin(300);
    assert_int_equal(g_peer.norder, 1);
    assert_int_equal(g_peer.seen[1], 1);
    assert_int_equal(g_peer.seen[2] + g_peer.seen[3], 0);
    outbox_free(ob);
    pgt_spin(50);
    db_pool_free(db);
}

/* outbox_free with a claim or a POST in flight: late callbacks do not crash (run under ASan). */
static void
test_free_inflight(void **state)
{
    db_pool_t *db = make_pool();

    /* 1: freed while its first claim query is in flight. */
    outbox_t *ob = make_outbox(db, g_cli, 100, 100, 1000);
    pgt_spin(1); /* the pass starts, the claim is sent */
    outbox_free(ob);
    pgt_spin(200);

    /* 2: freed with a POST in flight; the peer answers afterwards. */
    g_peer.mode_notif = M_HANG;
    add_rows(db, "notification", T_NOTIF_BASE, T_NOTIF_BASE + 1, 1);
    ob = make_outbox(db, g_cli, 100, 100, 1000);
    PGT_WAIT_UNTIL(g_peer.nhung == 1, 5000);
    assert_int_equal(g_peer.nhung, 1);
    outbox_free(ob);
    outbox_free(NULL);
    pgt_spin(50);
    peer_release(202);
    pgt_spin(300);
    /* The answer arrived after free: not recorded (the lease expires, the peer dedups). */
    assert_int_equal(n_sent(), 0);

    /* 3: freed with a POST in flight, then the client is freed (PHR_ECLOSED). */
    pgt_side_exec("UPDATE outbox SET next_attempt_at = now()");
    hcli_t *cli2 = make_cli(g_port);
    ob = make_outbox(db, cli2, 100, 100, 1000);
    PGT_WAIT_UNTIL(g_peer.nhung == 1, 5000);
    assert_int_equal(g_peer.nhung, 1);
    outbox_free(ob);
    hcli_free(cli2);
    pgt_spin(100);
    peer_release(202);
    pgt_spin(100);

    /* 4: the pool is freed right after the outbox, with a claim in flight. */
    pgt_side_exec("UPDATE outbox SET next_attempt_at = now()");
    g_peer.mode_notif = M_202;
    ob = make_outbox(db, g_cli, 100, 100, 1000);
    pgt_spin(1);
    outbox_free(ob);
    db_pool_free(db);
    pgt_spin(100);
}

static void
never_cb(int rc, const hcli_resp_t *resp, void *ud)
{
    fail_msg("a refused request called back");
}

/* Invalid configurations and the hcli extra-header checks. */
static void
test_invalid_args(void **state)
{
    db_pool_t *db = make_pool();
    outbox_route_t r[2] = {{"audit", g_cli, T_EVENTS, 1}, {"audit", g_cli, T_NOTIF, 0}};
    outbox_config_t cfg = {r, 1, 100, 10, 100, 10};
    outbox_stats_t st = {5, 5, 5};

    assert_null(outbox_create(NULL, db, &cfg));
    assert_null(outbox_create(g_pgt.base, NULL, &cfg));
    cfg.nroutes = 2; /* two routes for one topic */
    assert_null(outbox_create(g_pgt.base, db, &cfg));
    cfg.nroutes = 1;
    r[0].peer = NULL;
    assert_null(outbox_create(g_pgt.base, db, &cfg));
    r[0].peer = g_cli;
    r[0].path = "internal";
    assert_null(outbox_create(g_pgt.base, db, &cfg));
    r[0].path = T_EVENTS;
    r[0].topic = "a b";
    assert_null(outbox_create(g_pgt.base, db, &cfg));
    outbox_kick(NULL);
    outbox_stats(NULL, &st);
    assert_int_equal(st.sent, 5);

    const char *upper[] = {"Idempotency-Key", "k", NULL};
    const char *cred[] = {"x-phr-credential", "k", NULL};
    const char *crlf[] = {"idempotency-key", "a\r\nx: y", NULL};
    const char *ctype[] = {"content-type", "text/plain", NULL};
    const char *novalue[] = {"idempotency-key", NULL};
    const char *many[2 * HCLI_MAX_EXTRA_HEADERS + 3];
    for (size_t i = 0; i < HCLI_MAX_EXTRA_HEADERS + 1; i++) {
        many[2 * i] = "x-a";
        many[2 * i + 1] = "b";
    }
    many[2 * HCLI_MAX_EXTRA_HEADERS + 2] = NULL;
    const char *const *bad[] = {upper, cred, crlf, ctype, novalue, many};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hcli_request_hdrs(g_cli, "POST", T_NOTIF, bad[i], "application/json", "{}",
                                           2, NULL, never_cb, NULL),
                         PHR_EINVAL);
    }
    pgt_spin(50);
    db_pool_free(db);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_delivered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_never_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_down_then_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_then_202, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_rejects_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_relays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
    };

    pgt_open("test_outbox", "outbox");
    g_migration = read_file(t_migration_files[0]);
    if (g_migration == NULL) {
        fprintf(stderr, "test_outbox: FAIL: cannot read %s (run from the repository root)\n",
                t_migration_files[0]);
        pgt_close();
        return 1;
    }
    g_pgt.slice_ms = 20; /* conditions here query the database: test them every 20 ms */
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgt_close();
    free(g_migration);
    return rc == 0 ? 0 : 1;
}
