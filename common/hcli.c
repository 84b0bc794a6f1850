/*
 * hcli.c - HTTP/2 client (h2c prior knowledge) on libevent + nghttp2 1.52.
 *
 * Ownership:
 *   hcli_t owns its connections (|conns|: live, |dead|: waiting to be
 *   freed), the queue of finished requests waiting for their callback and
 *   the queue of requests to send again (|resend|). A connection owns the
 *   requests attached to its nghttp2 streams.
 *
 * A request is freed when both (a) its callback ran and (b) nghttp2 no
 * longer refers to it (its stream closed, or the session was deleted).
 * A request that timed out keeps its memory until its RST_STREAM closes
 * the stream, so a late nghttp2 callback never sees freed memory.
 *
 * Callbacks to the caller always run from |defer_ev| (never inside
 * hcli_request, never inside nghttp2 or bufferevent callbacks), so a
 * caller may submit or free from its callback. Dead connections are
 * freed from there as well, never inside their own callbacks.
 *
 * A request the peer did not process (RFC 9113 6.8: a stream above the
 * last_stream_id of its GOAWAY, or closed with REFUSED_STREAM) is sent once
 * more from |defer_ev|, on the current or a new connection, with the same
 * headers, body and deadline; refused again, it fails with PHR_EUNAVAIL.
 */
#include "hcli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "err.h"
#include "log.h"

#define HCLI_MAX_BODY ((size_t)8 * 1024 * 1024) /* response body limit */
#define HCLI_OUT_CAP ((size_t)64 * 1024)        /* bytes buffered before WOULDBLOCK */
#define HCLI_BACKOFF_MIN_MS 50
#define HCLI_BACKOFF_MAX_MS 2000
#define HCLI_DEFAULT_TIMEOUT_MS 5000
#define HCLI_STREAM_WINDOW (1 << 20)
#define HCLI_CONN_WINDOW (16 << 20)
#define HCLI_MAX_CTYPE 256
#define HCLI_MAX_NV 12
#define HCLI_NO_GOAWAY INT32_MAX /* hcli_conn.last_sid before a GOAWAY */

typedef struct hcli_conn hcli_conn_t;
typedef struct hcli_req hcli_req_t;

struct hcli_req {
    hcli_t *cli;
    hcli_conn_t *conn; /* set while attached */
    int32_t stream_id;
    int attached;  /* nghttp2 stream user data points at us */
    int completed; /* rc decided, callback queued */
    int delivered; /* callback returned */
    int queued;    /* on cli->resend */
    int resent;    /* already queued once: a second refusal fails it */
    int rc;
    struct event *timer;
    hcli_cb cb;
    void *ud;

    char *hbuf; /* our copies of the header values nva points at */
    nghttp2_nv nva[HCLI_MAX_NV + HCLI_MAX_EXTRA_HEADERS];
    size_t nvlen;
    char *body; /* request body copy */
    size_t body_len;
    size_t body_off;

    int status;
    char *ctype;
    char *rbody;
    size_t rlen;
    size_t rcap;

    hcli_req_t *cprev, *cnext; /* conn->reqs */
    hcli_req_t *dnext;         /* cli->done queue */
    hcli_req_t *rnext;         /* cli->resend queue */
};

struct hcli_conn {
    hcli_t *cli;
    struct bufferevent *bev;
    nghttp2_session *session;
    int connected;
    int got_settings; /* the peer spoke HTTP/2: resets the backoff */
    int goaway;
    int32_t last_sid; /* the peer's GOAWAY last_stream_id, or HCLI_NO_GOAWAY */
    int dead;
    int deleting; /* inside nghttp2_session_del: ignore callbacks */
    hcli_req_t *reqs;
    hcli_conn_t *prev, *next; /* cli->conns, or cli->dead (next only) */
};

struct hcli {
    struct event_base *base;
    char *host;
    int port;
    char *caller;
    char *credential;
    char *authority;
    int timeout_ms;

    hcli_conn_t *conn;  /* the one new requests use; NULL when none */
    hcli_conn_t *conns; /* every live connection (incl. |conn|, GOAWAY'd ones) */
    hcli_conn_t *dead;  /* failed, to be freed from defer_ev */

    hcli_req_t *done_head, *done_tail;
    hcli_req_t *resend_head, *resend_tail;
    struct event *defer_ev;

    int backoff_ms;      /* last backoff step; 0 when the last attempt worked */
    int64_t retry_at_us; /* monotonic; no new connection before this */

    int delivering;
    int closing;
    int free_pending;
};

static int64_t
hcli_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *
hcli_strdup(const char *s, size_t max)
{
    size_t n;
    char *p;

    if (s == NULL) {
        return NULL;
    }
    n = strnlen(s, max);
    p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* ---- requests --------------------------------------------------------- */

static void
hcli_req_free(hcli_req_t *r)
{
    if (r->timer != NULL) {
        event_free(r->timer);
    }
    free(r->hbuf);
    free(r->body);
    free(r->ctype);
    free(r->rbody);
    free(r);
}

/* Decides the outcome of |r| once and queues its callback. */
static void
hcli_req_complete(hcli_req_t *r, int rc)
{
    hcli_t *cli = r->cli;

    if (r->completed) {
        return;
    }
    r->completed = 1;
    r->rc = rc;
    if (r->timer != NULL) {
        evtimer_del(r->timer);
    }
    r->dnext = NULL;
    if (cli->done_tail != NULL) {
        cli->done_tail->dnext = r;
    } else {
        cli->done_head = r;
    }
    cli->done_tail = r;
    event_active(cli->defer_ev, EV_TIMEOUT, 0);
}

/*
 * The peer did not process |r|: queues it to be sent again from defer_ev,
 * once; the second time it completes with PHR_EUNAVAIL.
 */
static void
hcli_req_refused(hcli_req_t *r)
{
    hcli_t *cli = r->cli;

    if (r->completed || r->queued) {
        return;
    }
    if (r->resent || cli->closing) {
        hcli_req_complete(r, PHR_EUNAVAIL);
        return;
    }
    r->queued = 1;
    r->resent = 1;
    r->rnext = NULL;
    if (cli->resend_tail != NULL) {
        cli->resend_tail->rnext = r;
    } else {
        cli->resend_head = r;
    }
    cli->resend_tail = r;
    event_active(cli->defer_ev, EV_TIMEOUT, 0);
}

static void
hcli_req_attach(hcli_conn_t *c, hcli_req_t *r)
{
    r->conn = c;
    r->attached = 1;
    r->cprev = NULL;
    r->cnext = c->reqs;
    if (c->reqs != NULL) {
        c->reqs->cprev = r;
    }
    c->reqs = r;
}

/* nghttp2 no longer refers to |r|; frees it when its callback already ran. */
static void
hcli_req_detach(hcli_req_t *r)
{
    hcli_conn_t *c = r->conn;

    if (!r->attached) {
        return;
    }
    if (r->cprev != NULL) {
        r->cprev->cnext = r->cnext;
    } else {
        c->reqs = r->cnext;
    }
    if (r->cnext != NULL) {
        r->cnext->cprev = r->cprev;
    }
    r->cprev = r->cnext = NULL;
    r->conn = NULL;
    r->attached = 0;
    if (r->delivered) {
        hcli_req_free(r);
    }
}

/* Runs queued callbacks in order. */
static void
hcli_deliver(hcli_t *cli)
{
    hcli_req_t *r;

    while ((r = cli->done_head) != NULL) {
        cli->done_head = r->dnext;
        if (cli->done_head == NULL) {
            cli->done_tail = NULL;
        }
        r->dnext = NULL;
        if (r->rc == PHR_OK) {
            hcli_resp_t resp;
            resp.status = r->status;
            resp.content_type = r->ctype;
            resp.body = r->rbody != NULL ? r->rbody : "";
            resp.body_len = r->rlen;
            r->cb(PHR_OK, &resp, r->ud);
        } else {
            r->cb(r->rc, NULL, r->ud);
        }
        /* Set only now: a hcli_free inside the callback must not free |r|. */
        r->delivered = 1;
        if (!r->attached) {
            hcli_req_free(r);
        } else {
            free(r->rbody);
            r->rbody = NULL;
            r->rlen = r->rcap = 0;
        }
    }
}

/* ---- connections ------------------------------------------------------ */

static void
hcli_conn_destroy(hcli_conn_t *c)
{
    c->deleting = 1;
    if (c->session != NULL) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    while (c->reqs != NULL) {
        /* detach unlinks the head from c->reqs before it may free it */
        hcli_req_detach(c->reqs); // NOLINT(clang-analyzer-unix.Malloc)
    }
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
    }
    free(c);
}

static void
hcli_conns_unlink(hcli_t *cli, hcli_conn_t *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        cli->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

static void
hcli_reap(hcli_t *cli)
{
    hcli_conn_t *c;

    while ((c = cli->dead) != NULL) {
        cli->dead = c->next; // NOLINT(clang-analyzer-unix.Malloc): c is freed only below
        hcli_conn_destroy(c);
    }
}

/*
 * Marks |c| dead: its unfinished requests complete with |rc|, and it is
 * freed later from defer_ev. Safe inside bufferevent callbacks.
 */
static void
hcli_conn_fail(hcli_conn_t *c, int rc, const char *why)
{
    hcli_t *cli = c->cli;
    hcli_req_t *r;

    if (c->dead) {
        return;
    }
    c->dead = 1;
    if (cli->conn == c) {
        cli->conn = NULL;
    }
    if (!c->got_settings) {
        int step = cli->backoff_ms == 0 ? HCLI_BACKOFF_MIN_MS : cli->backoff_ms * 2;
        if (step > HCLI_BACKOFF_MAX_MS) {
            step = HCLI_BACKOFF_MAX_MS;
        }
        cli->backoff_ms = step;
        cli->retry_at_us = hcli_mono_us() + (int64_t)step * 1000;
        log_warn("hcli: %s unavailable (%s), next attempt in %d ms", cli->authority, why, step);
    } else if (c->reqs != NULL || !c->goaway) {
        log_info("hcli: connection to %s closed (%s)", cli->authority, why);
    }
    for (r = c->reqs; r != NULL; r = r->cnext) {
        if (r->stream_id > c->last_sid) {
            hcli_req_refused(r); /* above the GOAWAY's last_stream_id */
        } else {
            hcli_req_complete(r, rc);
        }
    }
    hcli_conns_unlink(cli, c);
    c->next = cli->dead;
    cli->dead = c;
    if (c->bev != NULL) {
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    }
    event_active(cli->defer_ev, EV_TIMEOUT, 0);
}

/* Flushes nghttp2 output; never call from inside an nghttp2 callback. */
static void
hcli_conn_send(hcli_conn_t *c)
{
    int rv;

    if (c->dead) {
        return;
    }
    rv = nghttp2_session_send(c->session);
    if (rv != 0) {
        hcli_conn_fail(c, PHR_EUNAVAIL, nghttp2_strerror(rv));
        return;
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        hcli_conn_fail(c, PHR_EUNAVAIL, "session finished");
    }
}

static ssize_t
hcli_send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
             void *user_data)
{
    hcli_conn_t *c = user_data;

    if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= HCLI_OUT_CAP) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (bufferevent_write(c->bev, data, length) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)length;
}

static int
hcli_on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                  size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                  void *user_data)
{
    hcli_req_t *r;

    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (r == NULL || r->completed) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++) {
            if (value[i] < '0' || value[i] > '9') {
                st = 0;
                break;
            }
            st = st * 10 + (value[i] - '0');
        }
        r->status = valuelen == 3 ? st : 0;
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        size_t n = valuelen < HCLI_MAX_CTYPE ? valuelen : HCLI_MAX_CTYPE;
        char *ct = malloc(n + 1);
        if (ct != NULL) {
            memcpy(ct, value, n);
            ct[n] = '\0';
            free(r->ctype);
            r->ctype = ct;
        }
    }
    return 0;
}

static int
hcli_on_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                      const uint8_t *data, size_t len, void *user_data)
{
    hcli_req_t *r = nghttp2_session_get_stream_user_data(session, stream_id);

    if (r == NULL || r->completed) {
        return 0;
    }
    if (len > HCLI_MAX_BODY - r->rlen) {
        log_warn("hcli: response from %s over %zu bytes, stream reset", r->cli->authority,
                 HCLI_MAX_BODY);
        hcli_req_complete(r, PHR_EPROTO);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        return 0;
    }
    if (r->rlen + len + 1 > r->rcap) {
        size_t cap = r->rcap != 0 ? r->rcap : 4096;
        while (cap < r->rlen + len + 1) {
            cap *= 2;
        }
        char *nb = realloc(r->rbody, cap);
        if (nb == NULL) {
            hcli_req_complete(r, PHR_ENOMEM);
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
            return 0;
        }
        r->rbody = nb;
        r->rcap = cap;
    }
    memcpy(r->rbody + r->rlen, data, len);
    r->rlen += len;
    r->rbody[r->rlen] = '\0';
    return 0;
}

static int
hcli_on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    hcli_conn_t *c = user_data;
    hcli_t *cli = c->cli;
    hcli_req_t *r;

    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !c->got_settings) {
            c->got_settings = 1;
            cli->backoff_ms = 0;
            cli->retry_at_us = 0;
        }
        break;
    case NGHTTP2_GOAWAY:
        /* New requests go to a new connection. Right after this callback
         * (or at the next send, for requests not sent yet) nghttp2 closes
         * the streams above last_stream_id with REFUSED_STREAM. */
        c->goaway = 1;
        c->last_sid = frame->goaway.last_stream_id;
        if (cli->conn == c) {
            cli->conn = NULL;
        }
        break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
            if (r != NULL && !r->completed) {
                hcli_req_complete(r, r->status >= 200 ? PHR_OK : PHR_EPROTO);
            }
        }
        break;
    default: break;
    }
    return 0;
}

static int
hcli_on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                        void *user_data)
{
    hcli_conn_t *c = user_data;
    hcli_req_t *r;

    if (c->deleting) {
        return 0;
    }
    r = nghttp2_session_get_stream_user_data(session, stream_id);
    if (r == NULL) {
        return 0;
    }
    if (error_code == NGHTTP2_REFUSED_STREAM) {
        hcli_req_refused(r); /* the peer did not process it (GOAWAY, limits) */
    } else {
        hcli_req_complete(r, PHR_EPROTO); /* no-op when completed */
    }
    hcli_req_detach(r);
    return 0;
}

static ssize_t
hcli_body_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                  uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    hcli_req_t *r = source->ptr;
    size_t n = r->body_len - r->body_off;

    if (n > length) {
        n = length;
    }
    if (n > 0) {
        memcpy(buf, r->body + r->body_off, n);
        r->body_off += n;
    }
    if (r->body_off == r->body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void
hcli_readcb(struct bufferevent *bev, void *arg)
{
    hcli_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    unsigned char *data;
    ssize_t rv;

    if (c->dead || len == 0) {
        return;
    }
    data = evbuffer_pullup(in, -1);
    rv = nghttp2_session_mem_recv(c->session, data, len);
    if (rv < 0) {
        hcli_conn_fail(c, PHR_EPROTO, nghttp2_strerror((int)rv));
        return;
    }
    evbuffer_drain(in, (size_t)rv);
    hcli_conn_send(c);
}

static void
hcli_writecb(struct bufferevent *bev, void *arg)
{
    hcli_conn_t *c = arg;

    if (!c->dead) {
        hcli_conn_send(c);
    }
}

static void
hcli_eventcb(struct bufferevent *bev, short events, void *arg)
{
    hcli_conn_t *c = arg;

    if (c->dead) {
        return;
    }
    if (events & BEV_EVENT_CONNECTED) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        c->connected = 1;
        hcli_conn_send(c);
        return;
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        hcli_conn_fail(c, PHR_EUNAVAIL,
                       (events & BEV_EVENT_EOF) ? "closed by peer"
                       : c->connected           ? "socket error"
                                                : "connect failed");
    }
}

static int
hcli_conn_start(hcli_conn_t *c)
{
    hcli_t *cli = c->cli;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, cli->host, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)cli->port);
        return bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof(sin));
    }
    if (inet_pton(AF_INET6, cli->host, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)cli->port);
        return bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin6, sizeof(sin6));
    }
    /* No evdns base: a name is resolved with a blocking getaddrinfo. */
    return bufferevent_socket_connect_hostname(c->bev, NULL, AF_UNSPEC, cli->host, cli->port);
}

/*
 * Creates a connection and starts connecting. Returns NULL on allocation
 * failure. The result may already be dead (connect refused at once).
 */
static hcli_conn_t *
hcli_conn_new(hcli_t *cli)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_settings_entry iv[3] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HCLI_STREAM_WINDOW},
    };
    hcli_conn_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->cli = cli;
    c->last_sid = HCLI_NO_GOAWAY;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        free(c);
        return NULL;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, hcli_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, hcli_on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, hcli_on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, hcli_on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, hcli_on_stream_close_cb);
    int rv = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        free(c);
        return NULL;
    }
    /* Preface + SETTINGS are queued now and flushed by the first send. */
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_submit_window_update(c->session, NGHTTP2_FLAG_NONE, 0,
                                     HCLI_CONN_WINDOW - NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) !=
            0) {
        nghttp2_session_del(c->session);
        free(c);
        return NULL;
    }
    c->bev = bufferevent_socket_new(cli->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        nghttp2_session_del(c->session);
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, hcli_readcb, hcli_writecb, hcli_eventcb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);

    c->next = cli->conns;
    if (cli->conns != NULL) {
        cli->conns->prev = c;
    }
    cli->conns = c;
    cli->conn = c;

    if (hcli_conn_start(c) != 0) {
        hcli_conn_fail(c, PHR_EUNAVAIL, "connect failed");
    }
    return c;
}

/*
 * Opens a stream for |r| on the current connection (made when needed).
 * Returns PHR_OK (|r| attached, or completed with PHR_EUNAVAIL) or
 * PHR_ENOMEM (|r| untouched).
 */
static int
hcli_req_submit(hcli_t *cli, hcli_req_t *r)
{
    hcli_conn_t *c = cli->conn;
    nghttp2_data_provider prd;
    int32_t sid;

    if (c == NULL) {
        if (cli->retry_at_us != 0 && hcli_mono_us() < cli->retry_at_us) {
            hcli_req_complete(r, PHR_EUNAVAIL); /* backing off: fail fast */
            return PHR_OK;
        }
        c = hcli_conn_new(cli);
        if (c == NULL) {
            return PHR_ENOMEM;
        }
    }
    if (c->dead) {
        hcli_req_complete(r, PHR_EUNAVAIL);
        return PHR_OK;
    }
    prd.source.ptr = r;
    prd.read_callback = hcli_body_read_cb;
    sid = nghttp2_submit_request(c->session, NULL, r->nva, r->nvlen, r->body != NULL ? &prd : NULL,
                                 r);
    if (sid < 0) {
        if (sid == NGHTTP2_ERR_NOMEM) {
            return PHR_ENOMEM;
        }
        /* Stream ids exhausted or the session is going away: retire it. */
        c->goaway = 1;
        if (cli->conn == c) {
            cli->conn = NULL;
        }
        if (c->reqs == NULL) {
            hcli_conn_fail(c, PHR_EUNAVAIL, "cannot open a stream");
        }
        hcli_req_complete(r, PHR_EUNAVAIL);
        return PHR_OK;
    }
    r->stream_id = sid;
    hcli_req_attach(c, r);
    hcli_conn_send(c);
    return PHR_OK;
}

/* Sends the queued requests again; hcli_reap has detached them. */
static void
hcli_resend(hcli_t *cli)
{
    hcli_req_t *r;

    while ((r = cli->resend_head) != NULL) {
        cli->resend_head = r->rnext;
        if (cli->resend_head == NULL) {
            cli->resend_tail = NULL;
        }
        r->rnext = NULL;
        r->queued = 0;
        if (r->completed) {
            continue; /* its deadline passed while queued */
        }
        if (r->attached) {
            hcli_req_complete(r, PHR_EUNAVAIL); /* not expected: hcli_reap detached it */
            continue;
        }
        r->status = 0;
        free(r->ctype);
        r->ctype = NULL;
        r->rlen = 0;
        r->body_off = 0;
        if (hcli_req_submit(cli, r) != PHR_OK) {
            hcli_req_complete(r, PHR_EUNAVAIL);
        }
    }
}

/* ---- public API ------------------------------------------------------- */

static void
hcli_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    hcli_t *cli = arg;

    cli->delivering = 1;
    hcli_reap(cli);
    hcli_resend(cli);
    hcli_deliver(cli);
    cli->delivering = 0;
    if (cli->free_pending) {
        event_free(cli->defer_ev);
        free(cli->host);
        free(cli->caller);
        free(cli->credential);
        free(cli->authority);
        free(cli);
    }
}

static void
hcli_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    hcli_req_t *r = arg;
    hcli_conn_t *c = r->conn;

    if (r->completed) {
        return;
    }
    hcli_req_complete(r, PHR_ETIMEDOUT);
    if (c == NULL || !r->attached || c->dead) {
        return;
    }
    if (!c->got_settings) {
        /* The peer never spoke HTTP/2 within a whole deadline. */
        hcli_conn_fail(c, PHR_EUNAVAIL, "no SETTINGS before the deadline");
        return;
    }
    nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
    hcli_conn_send(c);
}

hcli_t *
hcli_create(struct event_base *base, const hcli_config_t *cfg)
{
    hcli_t *cli;
    size_t alen;

    if (base == NULL || cfg == NULL || cfg->host == NULL || cfg->host[0] == '\0' || cfg->port < 1 ||
        cfg->port > 65535) {
        return NULL;
    }
    cli = calloc(1, sizeof(*cli));
    if (cli == NULL) {
        return NULL;
    }
    cli->base = base;
    cli->port = cfg->port;
    cli->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : HCLI_DEFAULT_TIMEOUT_MS;
    cli->host = hcli_strdup(cfg->host, 255);
    cli->caller = hcli_strdup(cfg->caller, 255);
    cli->credential = hcli_strdup(cfg->credential, 1024);
    alen = strlen(cfg->host) + 16;
    cli->authority = malloc(alen);
    cli->defer_ev = event_new(base, -1, 0, hcli_defer_cb, cli);
    if (cli->host == NULL || (cfg->caller != NULL && cli->caller == NULL) ||
        (cfg->credential != NULL && cli->credential == NULL) || cli->authority == NULL ||
        cli->defer_ev == NULL) {
        if (cli->defer_ev != NULL) {
            event_free(cli->defer_ev);
        }
        free(cli->host);
        free(cli->caller);
        free(cli->credential);
        free(cli->authority);
        free(cli);
        return NULL;
    }
    if (strchr(cli->host, ':') != NULL) {
        snprintf(cli->authority, alen, "[%s]:%d", cli->host, cli->port);
    } else {
        snprintf(cli->authority, alen, "%s:%d", cli->host, cli->port);
    }
    return cli;
}

void
hcli_free(hcli_t *cli)
{
    hcli_conn_t *c;
    hcli_req_t *r;

    if (cli == NULL || cli->closing) {
        return;
    }
    cli->closing = 1;
    while ((r = cli->resend_head) != NULL) {
        cli->resend_head = r->rnext;
        r->rnext = NULL;
        r->queued = 0;
        hcli_req_complete(r, PHR_ECLOSED);
    }
    cli->resend_tail = NULL;
    while ((c = cli->conns) != NULL) {
        for (r = c->reqs; r != NULL; r = r->cnext) {
            hcli_req_complete(r, PHR_ECLOSED);
        }
        hcli_conns_unlink(cli, c);
        c->next = cli->dead;
        cli->dead = c;
    }
    cli->conn = NULL;
    hcli_reap(cli);
    hcli_deliver(cli);
    if (cli->delivering) {
        cli->free_pending = 1; /* hcli_defer_cb frees us when the callback returns */
        return;
    }
    event_free(cli->defer_ev);
    free(cli->host);
    free(cli->caller);
    free(cli->credential);
    free(cli->authority);
    free(cli);
}

static void
hcli_nv(nghttp2_nv *nv, const char *name, const char *value, uint8_t flags)
{
    /* nghttp2 1.52's nghttp2_nv has non-const pointers it never writes through. */
    union {
        const char *in;
        uint8_t *out;
    } n = {.in = name}, v = {.in = value};

    nv->name = n.out;
    nv->namelen = strlen(name);
    nv->value = v.out;
    nv->valuelen = strlen(value);
    nv->flags = flags;
}

/* 1 when |name| may be sent as an extra header (lowercase token, not one we set ourselves). */
static int
hcli_extra_name_ok(const char *name)
{
    static const char *const reserved[] = {"content-type",
                                           "content-length",
                                           "accept",
                                           "x-request-id",
                                           "host",
                                           "connection",
                                           "transfer-encoding",
                                           "te",
                                           NULL};
    size_t len = strlen(name);

    if (len == 0 || len > 64 || strncmp(name, "x-phr-", 6) == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
            return 0;
        }
    }
    for (int i = 0; reserved[i] != NULL; i++) {
        if (strcmp(name, reserved[i]) == 0) {
            return 0;
        }
    }
    return 1;
}

/* 1 when |value| has no control characters (CR, LF, NUL ...) and is not too long. */
static int
hcli_extra_value_ok(const char *value)
{
    size_t len = strlen(value);

    if (len > 1024) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return 0;
        }
    }
    return 1;
}

int
hcli_request(hcli_t *cli, const char *method, const char *path, const char *content_type,
             const char *body, size_t body_len, const char *request_id, hcli_cb cb, void *ud)
{
    return hcli_request_hdrs(cli, method, path, NULL, content_type, body, body_len, request_id, cb,
                             ud);
}

/* Copies |s| (with its NUL) to *pos and moves *pos past it. */
static const char *
hcli_hput(char **pos, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = *pos;

    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

/*
 * Fills r->nva, kept for a resend: values the caller passed are copied to
 * r->hbuf, the others point into |cli| (alive while requests are sent).
 */
static int
hcli_req_headers(hcli_req_t *r, const char *method, const char *path, const char *const *headers,
                 size_t nextra, const char *content_type, const char *request_id)
{
    hcli_t *cli = r->cli;
    char clen[24];
    size_t size = strlen(method) + strlen(path) + 2;
    size_t n = 0;
    char *p;

    snprintf(clen, sizeof(clen), "%zu", r->body_len);
    if (r->body != NULL) {
        size += strlen(clen) + 1 + (content_type != NULL ? strlen(content_type) + 1 : 0);
    }
    if (request_id != NULL) {
        size += strlen(request_id) + 1;
    }
    for (size_t i = 0; i < 2 * nextra; i++) {
        size += strlen(headers[i]) + 1;
    }
    p = r->hbuf = malloc(size);
    if (p == NULL) {
        return PHR_ENOMEM;
    }
    hcli_nv(&r->nva[n++], ":method", hcli_hput(&p, method), NGHTTP2_NV_FLAG_NONE);
    hcli_nv(&r->nva[n++], ":scheme", "http", NGHTTP2_NV_FLAG_NONE);
    hcli_nv(&r->nva[n++], ":authority", cli->authority, NGHTTP2_NV_FLAG_NONE);
    hcli_nv(&r->nva[n++], ":path", hcli_hput(&p, path), NGHTTP2_NV_FLAG_NONE);
    if (r->body != NULL) {
        if (content_type != NULL) {
            hcli_nv(&r->nva[n++], "content-type", hcli_hput(&p, content_type),
                    NGHTTP2_NV_FLAG_NONE);
        }
        hcli_nv(&r->nva[n++], "content-length", hcli_hput(&p, clen), NGHTTP2_NV_FLAG_NONE);
    }
    if (cli->caller != NULL) {
        hcli_nv(&r->nva[n++], "x-phr-caller", cli->caller, NGHTTP2_NV_FLAG_NONE);
    }
    if (cli->credential != NULL) {
        /* Never put the secret into the HPACK dynamic table. */
        hcli_nv(&r->nva[n++], "x-phr-credential", cli->credential, NGHTTP2_NV_FLAG_NO_INDEX);
    }
    if (request_id != NULL) {
        hcli_nv(&r->nva[n++], "x-request-id", hcli_hput(&p, request_id), NGHTTP2_NV_FLAG_NONE);
    }
    hcli_nv(&r->nva[n++], "accept", "application/json", NGHTTP2_NV_FLAG_NONE);
    for (size_t i = 0; i < nextra; i++) {
        const char *name = hcli_hput(&p, headers[2 * i]);
        hcli_nv(&r->nva[n++], name, hcli_hput(&p, headers[2 * i + 1]), NGHTTP2_NV_FLAG_NONE);
    }
    r->nvlen = n;
    return PHR_OK;
}

int
hcli_request_hdrs(hcli_t *cli, const char *method, const char *path, const char *const *headers,
                  const char *content_type, const char *body, size_t body_len,
                  const char *request_id, hcli_cb cb, void *ud)
{
    size_t nextra = 0;
    hcli_req_t *r;

    if (cli == NULL || method == NULL || path == NULL || cb == NULL) {
        return PHR_EINVAL;
    }
    if (headers != NULL) {
        for (; headers[2 * nextra] != NULL; nextra++) {
            if (nextra >= HCLI_MAX_EXTRA_HEADERS || headers[2 * nextra + 1] == NULL ||
                !hcli_extra_name_ok(headers[2 * nextra]) ||
                !hcli_extra_value_ok(headers[2 * nextra + 1])) {
                return PHR_EINVAL;
            }
        }
    }
    if (cli->closing) {
        return PHR_ECLOSED;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return PHR_ENOMEM;
    }
    r->cli = cli;
    r->cb = cb;
    r->ud = ud;
    if (body != NULL) {
        r->body = malloc(body_len > 0 ? body_len : 1);
        if (r->body == NULL) {
            free(r);
            return PHR_ENOMEM;
        }
        memcpy(r->body, body, body_len);
        r->body_len = body_len;
    }
    r->timer = evtimer_new(cli->base, hcli_timeout_cb, r);
    if (r->timer == NULL ||
        hcli_req_headers(r, method, path, headers, nextra, content_type, request_id) != PHR_OK) {
        hcli_req_free(r);
        return PHR_ENOMEM;
    }
    struct timeval tv = {cli->timeout_ms / 1000, (suseconds_t)(cli->timeout_ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
    if (hcli_req_submit(cli, r) != PHR_OK) {
        hcli_req_free(r);
        return PHR_ENOMEM;
    }
    return PHR_OK;
}
