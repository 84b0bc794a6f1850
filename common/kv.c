/*
 * kv.c - Redis client on hiredis 0.14's async API and libevent adapter.
 *
 * hiredis 0.14 has neither command timeouts nor reconnects, so this module
 * adds them:
 *
 *  - One connection at a time (kv->ac). It is "ready" only after its first
 *    command (AUTH <password>, or PING when no password is configured) got a
 *    non-error reply within timeout_ms of the connect.
 *  - Every user command owns a kv_req_t (the hiredis privdata) with its own
 *    evtimer. Whichever of {reply, timer, disconnect, kv_free} comes first
 *    sets req->done and calls the user callback; later events only release
 *    the request. The kv_req_t is freed when hiredis hands the privdata back
 *    (a reply, or the NULL reply every pending callback gets when hiredis
 *    frees the context), so hiredis never holds a dangling pointer.
 *  - A timeout marks the connection suspect: it is "dropped" (events
 *    stopped, parked on kv->dying, freed from a zero timer, never from inside
 *    a hiredis callback) and a new one is made with exponential backoff
 *    (100 ms doubling to 5 s, jitter -25 %).
 *  - hiredis frees a context itself on EOF/error; the connect and disconnect
 *    callbacks tell us, and we forget the context (live or dying) there.
 *  - An idle connection is probed: every max(timeout_ms, 1 s) without a
 *    command in flight, a PING goes out with the same timeout, so a frozen
 *    or silently unreachable server stops being "ready" (/readyz) even when
 *    no request needs Redis meanwhile. Probes are not counted as commands.
 *
 * Stats: commands accepted, errors (error replies, commands failed by a lost
 * connection, failed connects/AUTH), timeouts (commands timed out) and
 * reconnects (connection attempts after the first).
 */
#include "kv.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fmt.h"
#include "log.h"
#include "timeutil.h"

#define KV_BACKOFF_MIN_MS 100
#define KV_BACKOFF_MAX_MS 5000
#define KV_PROBE_MIN_MS 1000

typedef struct kv_req {
    struct kv_req *prev, *next; /* kv->pending while !done */
    kv_t *kv;
    redisAsyncContext *ac; /* the connection the command was sent on */
    struct event timer;    /* assigned by kv_send, pending until the command is done */
    kv_cb cb;
    void *ud;
    int done; /* user callback already called */
} kv_req_t;

typedef struct kv_dying {
    struct kv_dying *next;
    redisAsyncContext *ac;
} kv_dying_t;

struct kv {
    struct event_base *base;
    char *host;
    int port;
    char *password;
    int timeout_ms;

    redisAsyncContext *ac; /* current connection or NULL */
    int ready;             /* ac connected and authenticated */
    int closing;           /* kv_free called */
    int cb_depth;          /* > 0 while inside a user callback run by hiredis */
    int down_logged;       /* "unavailable" already logged for this outage */
    int attempts;
    int backoff_ms;
    uint64_t rng;

    struct event *connect_timer;
    struct event *retry_timer;
    struct event *reap_timer;  /* zero timer: frees dying contexts / the kv */
    struct event *probe_timer; /* persistent: PING an idle connection */

    kv_dying_t *dying;
    kv_req_t *pending; /* commands whose callback has not run yet */
    kv_stats_t stats;
};

static void kv_connect(kv_t *kv);

static uint32_t
kv_rand(kv_t *kv)
{
    /* xorshift64*: jitter only, not security relevant */
    kv->rng ^= kv->rng >> 12;
    kv->rng ^= kv->rng << 25;
    kv->rng ^= kv->rng >> 27;
    return (uint32_t)((kv->rng * 2685821657736338717ULL) >> 32);
}

static void
kv_timer_add_ms(struct event *ev, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void
kv_pending_link(kv_t *kv, kv_req_t *req)
{
    req->prev = NULL;
    req->next = kv->pending;
    if (kv->pending != NULL) {
        kv->pending->prev = req;
    }
    kv->pending = req;
}

static void
kv_pending_unlink(kv_t *kv, kv_req_t *req)
{
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else if (kv->pending == req) {
        kv->pending = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->prev = req->next = NULL;
}

/* Marks |req| answered and returns 1 when the caller must run its callback. */
static int
kv_req_finish(kv_req_t *req)
{
    if (req->done) {
        return 0;
    }
    req->done = 1;
    evtimer_del(&req->timer);
    kv_pending_unlink(req->kv, req);
    return 1;
}

static void
kv_req_free(kv_req_t *req)
{
    evtimer_del(&req->timer);
    free(req);
}

/* Removes |ac| from the dying list; returns 1 if it was there. */
static int
kv_dying_remove(kv_t *kv, const redisAsyncContext *ac)
{
    for (kv_dying_t **pp = &kv->dying; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->ac == ac) {
            kv_dying_t *d = *pp;
            *pp = d->next;
            free(d);
            return 1;
        }
    }
    return 0;
}

static void
kv_schedule_reconnect(kv_t *kv)
{
    if (kv->closing || evtimer_pending(kv->retry_timer, NULL)) {
        return;
    }
    int b = kv->backoff_ms;
    int delay = b - (int)(kv_rand(kv) % (uint32_t)(b / 4 + 1));
    kv->backoff_ms = b * 2 > KV_BACKOFF_MAX_MS ? KV_BACKOFF_MAX_MS : b * 2;
    kv_timer_add_ms(kv->retry_timer, delay);
}

static void
kv_log_down(kv_t *kv, const char *why)
{
    if (!kv->down_logged) {
        log_warn("redis %s:%d unavailable: %s", kv->host, kv->port, why);
        kv->down_logged = 1;
    }
}

/* The current connection went away on its own (hiredis frees it). */
static void
kv_lost(kv_t *kv, const char *why)
{
    kv->ac = NULL;
    kv->ready = 0;
    evtimer_del(kv->connect_timer);
    kv->stats.errors++;
    kv_log_down(kv, why);
    kv_schedule_reconnect(kv);
}

/*
 * Abandons the current connection: stops its events, parks it for the reap
 * timer (so it is never freed inside one of its own callbacks) and schedules
 * a reconnect. Pending commands on it get PHR_EUNAVAIL when it is freed.
 */
static void
kv_drop(kv_t *kv, const char *why)
{
    redisAsyncContext *ac = kv->ac;
    if (ac == NULL) {
        return;
    }
    kv->ac = NULL;
    kv->ready = 0;
    evtimer_del(kv->connect_timer);
    if (ac->ev.delRead != NULL) {
        ac->ev.delRead(ac->ev.data);
    }
    if (ac->ev.delWrite != NULL) {
        ac->ev.delWrite(ac->ev.data);
    }
    kv_dying_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        /* Cannot park it: leave it to hiredis (no events, so it stays idle). */
        log_error("redis: out of memory dropping a connection");
    } else {
        d->ac = ac;
        d->next = kv->dying;
        kv->dying = d;
        kv_timer_add_ms(kv->reap_timer, 0);
    }
    kv_log_down(kv, why);
    kv_schedule_reconnect(kv);
}

static void
kv_teardown(kv_t *kv)
{
    redisAsyncContext *ac = kv->ac;
    kv_dying_t *d = kv->dying;

    kv->ac = NULL;
    kv->dying = NULL;
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
    while (d != NULL) {
        kv_dying_t *next = d->next;
        redisAsyncFree(d->ac);
        free(d);
        d = next;
    }
    event_free(kv->connect_timer);
    event_free(kv->retry_timer);
    event_free(kv->reap_timer);
    event_free(kv->probe_timer);
    free(kv->host);
    if (kv->password != NULL) {
        explicit_bzero(kv->password, strlen(kv->password));
        free(kv->password);
    }
    free(kv);
}

static void
kv_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_t *kv = arg;

    kv->cb_depth++; /* a kv_free from a callback run below is deferred to us */
    while (kv->dying != NULL) {
        kv_dying_t *d = kv->dying;
        kv->dying = d->next;
        redisAsyncFree(d->ac);
        free(d);
    }
    kv->cb_depth--;
    if (kv->closing) {
        kv_teardown(kv);
    }
}

static void
kv_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    kv_req_t *req = privdata;
    kv_t *kv = req->kv;
    redisReply *reply = r;

    if (kv_req_finish(req)) {
        int rc = PHR_OK;
        if (reply == NULL) {
            rc = PHR_EUNAVAIL;
            kv->stats.errors++;
            if (ac == kv->ac) {
                kv->ready = 0; /* hiredis is tearing this connection down */
            }
        } else if (reply->type == REDIS_REPLY_ERROR) {
            kv->stats.errors++;
        }
        kv->cb_depth++;
        req->cb(rc, reply, req->ud);
        kv->cb_depth--;
    }
    kv_req_free(req);
}

static void
kv_req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_req_t *req = arg;
    kv_t *kv = req->kv;

    if (!kv_req_finish(req)) {
        return;
    }
    kv->stats.timeouts++;
    if (req->ac == kv->ac) {
        log_warn("redis command timed out after %d ms; reconnecting", kv->timeout_ms);
        kv_drop(kv, "command timed out");
    }
    /* |req| stays owned by hiredis until it hands the privdata back. */
    req->cb(PHR_ETIMEDOUT, NULL, req->ud);
}

static void
kv_hello_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    kv_t *kv = privdata;
    redisReply *reply = r;

    if (ac != kv->ac || kv->closing || reply == NULL) {
        return; /* stale connection, or lost: the connect/disconnect hook handles it */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        kv->stats.errors++;
        /* The server's message names no secret; ours never includes the password. */
        if (!kv->down_logged) {
            log_warn("redis %s:%d refused the connection: %.120s", kv->host, kv->port,
                     reply->str != NULL ? reply->str : "");
            kv->down_logged = 1;
        }
        kv_drop(kv, "authentication failed");
        return;
    }
    evtimer_del(kv->connect_timer);
    kv->ready = 1;
    kv->backoff_ms = KV_BACKOFF_MIN_MS;
    if (kv->down_logged || kv->attempts > 1) {
        log_info("redis %s:%d connected", kv->host, kv->port);
    }
    kv->down_logged = 0;
}

static void
kv_on_connect(const redisAsyncContext *ac, int status)
{
    kv_t *kv = ac->data;

    if (status == REDIS_OK) {
        return; /* ready once the hello command is answered */
    }
    /* hiredis frees |ac| when we return. */
    if (ac == kv->ac) {
        kv_lost(kv, ac->errstr != NULL && ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
    } else {
        kv_dying_remove(kv, ac);
    }
}

static void
kv_on_disconnect(const redisAsyncContext *ac, int status)
{
    kv_t *kv = ac->data;

    /* hiredis frees |ac| when we return. */
    if (ac == kv->ac) {
        kv_lost(kv, ac->errstr != NULL && ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
    } else {
        kv_dying_remove(kv, ac);
    }
}

static void
kv_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_t *kv = arg;

    if (kv->ac != NULL && !kv->ready) {
        kv->stats.errors++;
        kv_drop(kv, "connect/AUTH timed out");
    }
}

static void
kv_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_t *kv = arg;

    if (kv->ac == NULL && !kv->closing) {
        kv_connect(kv);
    }
}

static int kv_send(kv_t *kv, kv_cb cb, void *ud, int argc, const char **argv,
                   const size_t *argvlen);

static void
kv_probe_done(int rc, redisReply *reply, void *ud)
{
    (void)rc; /* a timeout already dropped the connection (kv_req_timeout_cb) */
    (void)reply;
    (void)ud;
}

static void
kv_probe_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_t *kv = arg;
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};

    /* A command in flight has its own timer: only an idle connection needs a probe. */
    if (kv_ready(kv) && kv->pending == NULL) {
        (void)kv_send(kv, kv_probe_done, NULL, 1, argv, argvlen);
    }
}

static void
kv_connect(kv_t *kv)
{
    redisAsyncContext *ac;

    if (kv->attempts++ > 0) {
        kv->stats.reconnects++;
    }
    ac = redisAsyncConnect(kv->host, kv->port);
    if (ac == NULL || ac->err != 0) {
        kv->stats.errors++;
        kv_log_down(kv, ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac); /* not connected, no callbacks: safe here */
        }
        kv_schedule_reconnect(kv);
        return;
    }
    ac->data = kv;
    if (redisLibeventAttach(ac, kv->base) != REDIS_OK) {
        redisAsyncFree(ac);
        kv_log_down(kv, "cannot attach to the event loop");
        kv_schedule_reconnect(kv);
        return;
    }
    redisAsyncSetConnectCallback(ac, kv_on_connect);
    redisAsyncSetDisconnectCallback(ac, kv_on_disconnect);
    kv->ac = ac;
    kv->ready = 0;

    int rc;
    if (kv->password != NULL) {
        const char *argv[2] = {"AUTH", kv->password};
        size_t argvlen[2] = {4, strlen(kv->password)};
        rc = redisAsyncCommandArgv(ac, kv_hello_cb, kv, 2, argv, argvlen);
    } else {
        const char *argv[1] = {"PING"};
        size_t argvlen[1] = {4};
        rc = redisAsyncCommandArgv(ac, kv_hello_cb, kv, 1, argv, argvlen);
    }
    if (rc != REDIS_OK) {
        kv_drop(kv, "cannot queue the hello command");
        return;
    }
    kv_timer_add_ms(kv->connect_timer, kv->timeout_ms);
}

kv_t *
kv_create(struct event_base *base, const kv_config_t *cfg)
{
    kv_t *kv;

    if (base == NULL || cfg == NULL || cfg->host == NULL || cfg->port <= 0 || cfg->port > 65535 ||
        cfg->timeout_ms <= 0) {
        return NULL;
    }
    kv = calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return NULL;
    }
    kv->base = base;
    kv->port = cfg->port;
    kv->timeout_ms = cfg->timeout_ms;
    kv->backoff_ms = KV_BACKOFF_MIN_MS;
    kv->rng = (uint64_t)tu_mono_us() ^ ((uint64_t)(uintptr_t)kv << 16) ^ 0x9e3779b97f4a7c15ULL;
    kv->host = strdup(cfg->host);
    if (cfg->password != NULL && cfg->password[0] != '\0') {
        kv->password = strdup(cfg->password);
    }
    kv->connect_timer = evtimer_new(base, kv_connect_timeout_cb, kv);
    kv->retry_timer = evtimer_new(base, kv_retry_cb, kv);
    kv->reap_timer = evtimer_new(base, kv_reap_cb, kv);
    kv->probe_timer = event_new(base, -1, EV_PERSIST, kv_probe_cb, kv);
    if (kv->host == NULL ||
        (cfg->password != NULL && cfg->password[0] != '\0' && kv->password == NULL) ||
        kv->connect_timer == NULL || kv->retry_timer == NULL || kv->reap_timer == NULL ||
        kv->probe_timer == NULL) {
        if (kv->connect_timer != NULL) {
            event_free(kv->connect_timer);
        }
        if (kv->retry_timer != NULL) {
            event_free(kv->retry_timer);
        }
        if (kv->reap_timer != NULL) {
            event_free(kv->reap_timer);
        }
        if (kv->probe_timer != NULL) {
            event_free(kv->probe_timer);
        }
        free(kv->host);
        if (kv->password != NULL) {
            explicit_bzero(kv->password, strlen(kv->password));
            free(kv->password);
        }
        free(kv);
        return NULL;
    }
    kv_timer_add_ms(kv->probe_timer,
                    kv->timeout_ms > KV_PROBE_MIN_MS ? kv->timeout_ms : KV_PROBE_MIN_MS);
    kv_connect(kv);
    return kv;
}

void
kv_free(kv_t *kv)
{
    if (kv == NULL || kv->closing) {
        return;
    }
    kv->closing = 1;
    kv->ready = 0;
    evtimer_del(kv->connect_timer);
    evtimer_del(kv->retry_timer);
    evtimer_del(kv->probe_timer);
    while (kv->pending != NULL) {
        kv_req_t *req = kv->pending;
        kv_req_finish(req);
        req->cb(PHR_ECLOSED, NULL, req->ud);
        /* |req| is released when its connection is freed below. */
    }
    if (kv->cb_depth > 0) {
        /* Inside a hiredis callback: finish from the reap timer. */
        kv_timer_add_ms(kv->reap_timer, 0);
        return;
    }
    kv_teardown(kv);
}

int
kv_ready(const kv_t *kv)
{
    return kv != NULL && kv->ready && !kv->closing && kv->ac != NULL;
}

void
kv_stats(const kv_t *kv, kv_stats_t *out)
{
    *out = kv->stats;
    out->connected = kv_ready(kv);
}

/* Bytes of a command kv_send formats itself; longer ones go through hiredis' formatter. */
#define KV_CMD_MAX 512

/*
 * |argv| as a RESP array of bulk strings into |out| (KV_CMD_MAX bytes). Returns its
 * length, or 0 when it does not fit.
 */
static size_t
kv_format(char *out, int argc, const char **argv, const size_t *argvlen)
{
    char num[FMT_U64_LEN];
    size_t n = 0, k;

    k = fmt_u64(num, (uint64_t)argc);
    if (k + 3 > KV_CMD_MAX) {
        return 0;
    }
    out[n++] = '*';
    memcpy(out + n, num, k);
    n += k;
    out[n++] = '\r';
    out[n++] = '\n';
    for (int i = 0; i < argc; i++) {
        k = fmt_u64(num, argvlen[i]);
        if (argvlen[i] > KV_CMD_MAX || n + k + argvlen[i] + 5 > KV_CMD_MAX) {
            return 0;
        }
        out[n++] = '$';
        memcpy(out + n, num, k);
        n += k;
        out[n++] = '\r';
        out[n++] = '\n';
        memcpy(out + n, argv[i], argvlen[i]);
        n += argvlen[i];
        out[n++] = '\r';
        out[n++] = '\n';
    }
    return n;
}

/* Sends one command on the current connection with its own timer (not counted). */
static int
kv_send(kv_t *kv, kv_cb cb, void *ud, int argc, const char **argv, const size_t *argvlen)
{
    kv_req_t *req;

    if (!kv_ready(kv)) {
        return PHR_EUNAVAIL;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        return PHR_ENOMEM;
    }
    req->kv = kv;
    req->ac = kv->ac;
    req->cb = cb;
    req->ud = ud;
    evtimer_assign(&req->timer, kv->base, kv_req_timeout_cb, req);
    char cmd[KV_CMD_MAX];
    size_t len = kv_format(cmd, argc, argv, argvlen);
    int sent = len > 0 ? redisAsyncFormattedCommand(kv->ac, kv_reply_cb, req, cmd, len)
                       : redisAsyncCommandArgv(kv->ac, kv_reply_cb, req, argc, argv, argvlen);
    if (sent != REDIS_OK) {
        kv_req_free(req);
        return PHR_EUNAVAIL;
    }
    kv_pending_link(kv, req);
    kv_timer_add_ms(&req->timer, kv->timeout_ms);
    return PHR_OK;
}

int
kv_command_argv(kv_t *kv, kv_cb cb, void *ud, int argc, const char **argv, const size_t *argvlen)
{
    if (cb == NULL || argc <= 0 || argv == NULL || argvlen == NULL) {
        return PHR_EINVAL;
    }
    int rc = kv_send(kv, cb, ud, argc, argv, argvlen);
    if (rc == PHR_OK) {
        kv->stats.commands++;
    }
    return rc;
}
