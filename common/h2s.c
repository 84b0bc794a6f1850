#include "h2s.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "fmt.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "timeutil.h"

#define H2S_MAX_HEADERS 64
#define H2S_MAX_RESP_HEADERS 8
#define H2S_MAX_LISTENERS 4
#define H2S_MAX_CLEANUPS 4
#define H2S_FLUSH_ROUNDS 16
#define H2S_REQUEST_ID_MAX 64
#define H2S_READ_HIGH_WATER ((size_t)256 * 1024)
#define H2S_DEFAULT_WRITE_TIMEOUT_MS 30000
/* A request's own memory (header strings, handler contexts, a small answer) before it mallocs. */
#define H2S_ARENA_BYTES 8192
/*
 * Finished requests a server keeps for reuse. None under ASan, which must see every free: then
 * the arena is not used either, and every h2s_req_alloc is its own malloc.
 */
#if defined(__SANITIZE_ADDRESS__)
#define H2S_SPARE_REQS 0
#else
#define H2S_SPARE_REQS 256
#endif

typedef enum {
    REQ_HEADERS,    /* receiving headers */
    REQ_BODY,       /* receiving the body */
    REQ_DISPATCHED, /* handler owns the answer */
    REQ_STREAMING,  /* headers sent; the handler writes the body until h2s_stream_end */
    REQ_RESPONDED   /* response submitted */
} h2s_req_state_t;

typedef struct h2s_conn h2s_conn_t;

typedef struct {
    h2s_handler_fn fn;
    void *ud;
    size_t max_body;
} h2s_route_t;

typedef struct {
    char *name;
    char *value;
} h2s_header_t;

/* h2s_req_alloc's memory beyond the request's arena. */
typedef struct h2s_block {
    struct h2s_block *next;
    size_t len;
    max_align_t data[];
} h2s_block_t;

struct h2s_req {
    h2s_server_t *srv;
    h2s_conn_t *conn; /* NULL once the connection is gone */
    int32_t stream_id;
    h2s_req_state_t state;
    int stream_closed; /* nghttp2 closed the stream */
    int recv_complete; /* END_STREAM seen from the client */
    int headers_too_big;
    int bad_request; /* malformed pseudo-headers */
    int orphan;      /* on srv->orphans: dispatched, its connection gone */

    char method[16];
    char *path;  /* :path before '?' */
    char *query; /* after '?', "" when none */
    h2s_header_t headers[H2S_MAX_HEADERS];
    int nheaders;
    size_t header_bytes;
    char request_id[H2S_REQUEST_ID_MAX + 1];

    const h2s_route_t *route;
    route_match_t match;
    size_t max_body;
    char *body;
    size_t body_len, body_cap;

    int status;
    h2s_header_t resp_headers[H2S_MAX_RESP_HEADERS];
    int nresp_headers;
    char *resp_body;
    size_t resp_len, resp_off;
    struct evbuffer *sbuf; /* streaming: written, not yet sent */
    int s_eof;             /* streaming: h2s_stream_end called */
    int s_deferred;        /* streaming: nghttp2 waits for data (resume_data) */
    h2s_stream_fn s_drain; /* streaming: the producer's wake-up */
    void *s_ud;
    struct event s_wake; /* calls s_drain from the loop, never from nghttp2 */
    char content_type[64];
    char content_length[24];
    char status_str[4];

    void *data;
    struct {
        void (*fn)(void *);
        void *arg;
    } cleanups[H2S_MAX_CLEANUPS];
    int ncleanups;
    struct event timer; /* receive deadline, then send-stall deadline */
    size_t sent_mark;   /* resp_off when the send-stall deadline was armed */
    int64_t start_us;
    h2s_req_t *next, *prev; /* connection's list, the server's orphans or its spares */
    /* everything above is zeroed for each request; below, h2s_req_alloc's memory */
    h2s_block_t *blocks; /* beyond the arena */
    size_t arena_used;
    _Alignas(max_align_t) unsigned char arena[H2S_ARENA_BYTES];
};

struct h2s_conn {
    h2s_server_t *srv;
    struct bufferevent *bev;
    struct evbuffer *out; /* frames of the current session_send, see h2s_conn_write */
    nghttp2_session *session;
    char peer[64];
    struct event *idle_timer;
    h2s_req_t *reqs;   /* every request of this connection */
    int in_recv;       /* inside nghttp2_session_mem_recv */
    int ended_in_recv; /* requests whose END_STREAM this mem_recv read */
    int closing;       /* close once output is flushed */
    int read_paused;
    h2s_conn_t *next, *prev;
};

struct h2s_server {
    struct event_base *base;
    h2s_limits_t limits;
    router_t *router;
    h2s_route_t *routes[256];
    size_t nroutes;
    struct evconnlistener *listeners[H2S_MAX_LISTENERS];
    int nlisteners;
    h2s_conn_t *conns;
    size_t nconns;
    h2s_req_t *orphans; /* dispatched requests whose connection is gone */
    h2s_req_t *spares;  /* finished requests kept for reuse */
    size_t nspares;
    size_t inflight;
    int shutting_down;
    struct event *drain_timer;
    void (*drain_done)(void *);
    void *drain_ud;
    nghttp2_option *option;
    SSL_CTX *ssl_ctx; /* NULL: h2c */
};

static void h2s_conn_free(h2s_conn_t *conn);
static int h2s_conn_flush(h2s_conn_t *conn);
static void h2s_conn_arm_idle(h2s_conn_t *conn);
static void h2s_req_free(h2s_req_t *req);
static void h2s_check_drained(h2s_server_t *srv);
static void h2s_req_arm_timer(h2s_req_t *req);
static int h2s_write_timeout_ms(const h2s_server_t *srv);

/* ---- small helpers ------------------------------------------------------ */

/* |n| bytes of |req|'s memory, not zeroed; NULL when out of memory. */
static void *
h2s_req_take(h2s_req_t *req, size_t n)
{
    size_t align = _Alignof(max_align_t);
    size_t at = (req->arena_used + align - 1) & ~(align - 1);

    if (H2S_SPARE_REQS > 0 && n <= sizeof(req->arena) - at) {
        req->arena_used = at + n;
        return req->arena + at;
    }
    h2s_block_t *b = malloc(sizeof(*b) + n);
    if (b == NULL) {
        return NULL;
    }
    b->next = req->blocks;
    b->len = n;
    req->blocks = b;
    return b->data;
}

/* A NUL-terminated copy of |s| (|n| bytes) in |req|'s memory. */
static char *
h2s_req_strndup(h2s_req_t *req, const void *s, size_t n)
{
    char *p = h2s_req_take(req, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void *
h2s_req_alloc(h2s_req_t *req, size_t n)
{
    void *p = h2s_req_take(req, n);
    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

/* A request of |srv| to fill: a spare one when there is one. NULL when out of memory. */
static h2s_req_t *
h2s_req_new(h2s_server_t *srv)
{
    h2s_req_t *req = srv->spares;

    if (req != NULL) {
        srv->spares = req->next;
        srv->nspares--;
    } else if ((req = malloc(sizeof(*req))) == NULL) {
        return NULL;
    }
    memset(req, 0, offsetof(h2s_req_t, blocks));
    req->blocks = NULL;
    req->arena_used = 0;
    return req;
}

/* Wipes and frees |req|'s memory, then keeps |req| as a spare of |srv| (NULL: frees it). */
static void
h2s_req_release(h2s_req_t *req, h2s_server_t *srv)
{
    while (req->blocks != NULL) {
        h2s_block_t *b = req->blocks;
        req->blocks = b->next;
        explicit_bzero(b->data, b->len);
        free(b);
    }
    explicit_bzero(req->arena, req->arena_used);
#if H2S_SPARE_REQS > 0
    if (srv != NULL && srv->nspares < H2S_SPARE_REQS) {
        req->next = srv->spares;
        srv->spares = req;
        srv->nspares++;
        return;
    }
#else
    (void)srv;
#endif
    free(req);
}

const char *
h2s_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static int
h2s_request_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > H2S_REQUEST_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

/*
 * Gives |req| a request id when it arrived without a valid one: a random
 * per-process prefix and a counter (ids are unique, not secret; this keeps
 * RAND_bytes off the per-request path).
 */
static void
h2s_req_ensure_id(h2s_req_t *req)
{
    static const char hex[] = "0123456789abcdef";
    static char prefix[17];
    static uint64_t counter;
    unsigned char raw[8];
    char *out = req->request_id;

    if (out[0] != '\0') {
        return;
    }
    if (prefix[0] == '\0') {
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            memset(raw, 0x5a, sizeof(raw));
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
            prefix[2 * i] = hex[raw[i] >> 4];
            prefix[2 * i + 1] = hex[raw[i] & 15];
        }
    }
    uint64_t n = ++counter;
    memcpy(out, prefix, 16);
    for (int i = 31; i >= 16; i--) {
        out[i] = hex[n & 15];
        n >>= 4;
    }
    out[32] = '\0';
}

/* ---- request accessors -------------------------------------------------- */

const char *
h2s_req_method(const h2s_req_t *req)
{
    return req->method;
}

const char *
h2s_req_path(const h2s_req_t *req)
{
    return req->path != NULL ? req->path : "";
}

const char *
h2s_req_query(const h2s_req_t *req)
{
    return req->query != NULL ? req->query : "";
}

const char *
h2s_req_route(const h2s_req_t *req)
{
    return req->route != NULL ? req->match.pattern : "-";
}

const char *
h2s_req_param(const h2s_req_t *req, const char *name)
{
    return route_param(&req->match, name);
}

const char *
h2s_req_header(const h2s_req_t *req, const char *name)
{
    for (int i = 0; i < req->nheaders; i++) {
        if (strcmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

const char *
h2s_req_id(const h2s_req_t *req)
{
    return req->request_id;
}

const char *
h2s_req_peer(const h2s_req_t *req)
{
    return req->conn != NULL ? req->conn->peer : "-";
}

const char *
h2s_req_body(const h2s_req_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body != NULL ? req->body : "";
}

int
h2s_req_closed(const h2s_req_t *req)
{
    return req->conn == NULL || req->stream_closed;
}

void
h2s_req_set_data(h2s_req_t *req, void *data)
{
    req->data = data;
}

void *
h2s_req_data(const h2s_req_t *req)
{
    return req->data;
}

int
h2s_req_add_cleanup(h2s_req_t *req, void (*fn)(void *arg), void *arg)
{
    if (req->ncleanups == H2S_MAX_CLEANUPS) {
        return PHR_EFULL;
    }
    req->cleanups[req->ncleanups].fn = fn;
    req->cleanups[req->ncleanups].arg = arg;
    req->ncleanups++;
    return PHR_OK;
}

int
h2s_req_add_header(h2s_req_t *req, const char *name, const char *value)
{
    if (req->nresp_headers == H2S_MAX_RESP_HEADERS) {
        return PHR_ETOOBIG;
    }
    h2s_header_t *h = &req->resp_headers[req->nresp_headers];
    h->name = h2s_req_strndup(req, name, strlen(name));
    h->value = h2s_req_strndup(req, value, strlen(value));
    if (h->name == NULL || h->value == NULL) {
        return PHR_ENOMEM;
    }
    req->nresp_headers++;
    return PHR_OK;
}

/* ---- request lifecycle -------------------------------------------------- */

static void
h2s_req_unlink(h2s_req_t *req)
{
    h2s_req_t **head;

    if (req->conn != NULL) {
        head = &req->conn->reqs;
    } else if (req->orphan && req->srv != NULL) {
        head = &req->srv->orphans;
    } else {
        return;
    }
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        *head = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->next = req->prev = NULL;
    req->orphan = 0;
}

/* Moves a dispatched request, already out of its connection, to the server's orphans. */
static void
h2s_req_orphan(h2s_req_t *req)
{
    h2s_server_t *srv = req->srv;

    req->conn = NULL;
    req->stream_closed = 1;
    req->orphan = 1;
    if (req->state == REQ_STREAMING && req->s_drain != NULL) {
        event_active(&req->s_wake, EV_TIMEOUT, 1); /* the producer learns, ends and frees */
    }
    req->prev = NULL;
    req->next = srv->orphans;
    if (srv->orphans != NULL) {
        srv->orphans->prev = req;
    }
    srv->orphans = req;
}

static void
h2s_req_free(h2s_req_t *req)
{
    h2s_req_unlink(req);
    for (int i = req->ncleanups - 1; i >= 0; i--) {
        req->cleanups[i].fn(req->cleanups[i].arg);
    }
    event_del(&req->timer);
    if (req->sbuf != NULL) {
        event_del(&req->s_wake);
        evbuffer_free(req->sbuf);
    }
    free(req->body);
    h2s_req_release(req, req->srv);
}

static void
h2s_req_log(h2s_req_t *req)
{
    double ms = (double)(tu_mono_us() - req->start_us) / 1000.0;
    int status = req->state == REQ_RESPONDED || req->state == REQ_STREAMING ? req->status : 499;
    log_access_t a = {
        .request_id = req->request_id,
        .method = req->method[0] ? req->method : "-",
        .path = req->path ? req->path : "-",
        .route = h2s_req_route(req),
        .status = status,
        .bytes_in = req->body_len,
        .bytes_out = req->resp_off,
        .duration_ms = ms,
        .peer = req->conn ? req->conn->peer : "-",
    };
    log_access(&a);
    metrics_request(a.method, a.route, status, ms / 1000.0);
}

static ssize_t
h2s_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
              uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    h2s_req_t *req = source->ptr;
    size_t n = req->resp_len - req->resp_off;

    if (n > length) {
        n = length;
    }
    memcpy(buf, req->resp_body + req->resp_off, n);
    req->resp_off += n;
    if (req->resp_off == req->resp_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/*
 * Takes the answer from the handler: |state| REQ_RESPONDED (a whole body
 * follows) or REQ_STREAMING. Returns PHR_ECLOSED (|req| freed when nothing
 * else holds it) when the client went away or the request was answered.
 */
static int
h2s_begin(h2s_req_t *req, int status, h2s_req_state_t state)
{
    if (state == REQ_STREAMING) {
        req->state = REQ_STREAMING; /* from here on only h2s_stream_end frees it */
        req->status = status;
        if (h2s_req_closed(req)) {
            return PHR_ECLOSED;
        }
    } else {
        if (req->state == REQ_DISPATCHED) {
            if (req->srv != NULL) {
                req->srv->inflight--;
            }
            metrics_inflight_add(-1);
        }
        if (h2s_req_closed(req) || req->state == REQ_RESPONDED) {
            if (req->state != REQ_RESPONDED) {
                req->state = REQ_RESPONDED;
                req->status = status;
            }
            if (req->stream_closed || req->conn == NULL) {
                h2s_req_free(req);
            }
            return PHR_ECLOSED;
        }
        req->state = REQ_RESPONDED;
        req->status = status;
    }
    if (req->recv_complete) {
        req->sent_mark = req->resp_off; /* from here on the timer watches the sending */
        h2s_req_arm_timer(req);
    }
    h2s_req_ensure_id(req);
    return PHR_OK;
}

/* Submits the response headers (content-length when |len| >= 0) and the body's reader. */
static int
h2s_submit(h2s_req_t *req, const char *content_type, ssize_t len,
           nghttp2_data_source_read_callback rd)
{
    nghttp2_nv nva[4 + H2S_MAX_RESP_HEADERS];
    size_t nnv = 0;
    h2s_conn_t *conn = req->conn;

#define H2S_NV(n, v)                                                                               \
    do {                                                                                           \
        nva[nnv].name = (uint8_t *)(n);                                                            \
        nva[nnv].namelen = strlen(n);                                                              \
        nva[nnv].value = (uint8_t *)(v);                                                           \
        nva[nnv].valuelen = strlen(v);                                                             \
        nva[nnv].flags = NGHTTP2_NV_FLAG_NONE;                                                     \
        nnv++;                                                                                     \
    } while (0)

    int status = req->status >= 100 && req->status <= 999 ? req->status : 500;
    req->status_str[0] = (char)('0' + status / 100);
    req->status_str[1] = (char)('0' + status / 10 % 10);
    req->status_str[2] = (char)('0' + status % 10);
    req->status_str[3] = '\0';
    H2S_NV(":status", req->status_str);
    if (content_type != NULL && len != 0) {
        fmt_cat(req->content_type, sizeof(req->content_type), 0, content_type);
        H2S_NV("content-type", req->content_type);
    }
    if (len >= 0) {
        fmt_u64(req->content_length, (uint64_t)len);
        H2S_NV("content-length", req->content_length);
    }
    H2S_NV("x-request-id", req->request_id);
    for (int i = 0; i < req->nresp_headers; i++) {
        H2S_NV(req->resp_headers[i].name, req->resp_headers[i].value);
    }
#undef H2S_NV

    nghttp2_data_provider prd = {.source.ptr = req, .read_callback = rd};
    int rv =
        nghttp2_submit_response(conn->session, req->stream_id, nva, nnv, rd != NULL ? &prd : NULL);
    if (rv != 0) {
        log_warn("submit_response: %s", nghttp2_strerror(rv));
        return PHR_EPROTO;
    }
    if (!conn->in_recv) {
        return h2s_conn_flush(conn);
    }
    return PHR_OK;
}

int
h2s_respond(h2s_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    if (req->state == REQ_STREAMING) {
        return PHR_EINVAL;
    }
    int rc = h2s_begin(req, status, REQ_RESPONDED);
    if (rc != PHR_OK) {
        return rc;
    }
    if (len > 0) {
        req->resp_body = h2s_req_take(req, len);
        if (req->resp_body == NULL) {
            nghttp2_submit_rst_stream(req->conn->session, NGHTTP2_FLAG_NONE, req->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
            req->status = 500;
            return h2s_conn_flush(req->conn) == PHR_OK ? PHR_ENOMEM : PHR_ECLOSED;
        }
        memcpy(req->resp_body, body, len);
    }
    req->resp_len = len;
    return h2s_submit(req, content_type, (ssize_t)len, len > 0 ? h2s_data_read : NULL);
}

/* ---- streamed answers --------------------------------------------------- */

#define H2S_STREAM_LOW_WATER ((size_t)64 * 1024)

static void
h2s_stream_wake(evutil_socket_t fd, short what, void *arg)
{
    h2s_req_t *req = arg;

    if (req->s_drain != NULL && !req->s_eof) {
        req->s_drain(req, req->s_ud);
    }
}

static ssize_t
h2s_stream_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    h2s_req_t *req = source->ptr;
    size_t have = evbuffer_get_length(req->sbuf);

    if (have == 0 && !req->s_eof) {
        req->s_deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    int n = evbuffer_remove(req->sbuf, buf, length);
    if (n < 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    req->resp_off += (size_t)n;
    if (req->s_eof && evbuffer_get_length(req->sbuf) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (have >= H2S_STREAM_LOW_WATER &&
               evbuffer_get_length(req->sbuf) < H2S_STREAM_LOW_WATER) {
        event_active(&req->s_wake, EV_TIMEOUT, 1);
    }
    return n;
}

int
h2s_stream_start(h2s_req_t *req, int status, const char *content_type, h2s_stream_fn on_drain,
                 void *ud)
{
    if (req->state != REQ_DISPATCHED || req->sbuf != NULL) {
        return PHR_EINVAL;
    }
    req->sbuf = evbuffer_new();
    if (req->sbuf == NULL) {
        return PHR_ENOMEM;
    }
    req->s_drain = on_drain;
    req->s_ud = ud;
    evtimer_assign(&req->s_wake, req->srv->base, h2s_stream_wake, req);
    int rc = h2s_begin(req, status, REQ_STREAMING);
    if (rc != PHR_OK) {
        return rc;
    }
    return h2s_submit(req, content_type, -1, h2s_stream_read);
}

/* Lets nghttp2 send what was written; PHR_ECLOSED when the client is gone. */
static int
h2s_stream_push(h2s_req_t *req)
{
    h2s_conn_t *conn = req->conn;

    if (h2s_req_closed(req) || conn == NULL) {
        return PHR_ECLOSED;
    }
    if (req->s_deferred) {
        req->s_deferred = 0;
        nghttp2_session_resume_data(conn->session, req->stream_id);
    }
    return conn->in_recv ? PHR_OK : h2s_conn_flush(conn);
}

int
h2s_stream_write(h2s_req_t *req, const void *data, size_t len)
{
    if (req->state != REQ_STREAMING || req->s_eof) {
        return PHR_EINVAL;
    }
    if (h2s_req_closed(req)) {
        return PHR_ECLOSED;
    }
    if (len > 0 && evbuffer_add(req->sbuf, data, len) != 0) {
        return PHR_ENOMEM;
    }
    return h2s_stream_push(req);
}

size_t
h2s_stream_buffered(const h2s_req_t *req)
{
    return req->sbuf != NULL ? evbuffer_get_length(req->sbuf) : 0;
}

int
h2s_stream_end(h2s_req_t *req)
{
    if (req->state != REQ_STREAMING || req->s_eof) {
        return PHR_EINVAL;
    }
    req->s_eof = 1;
    event_del(&req->s_wake);
    if (req->srv != NULL) {
        req->srv->inflight--;
    }
    metrics_inflight_add(-1);
    if (h2s_req_closed(req) || req->conn == NULL) {
        req->state = REQ_RESPONDED;
        h2s_req_free(req);
        return PHR_ECLOSED;
    }
    req->state = REQ_RESPONDED;
    return h2s_stream_push(req);
}

/* Answers |obj| serialised as |content_type|; consumes |obj|. */
static int
h2s_respond_obj(h2s_req_t *req, int status, const char *content_type, json_object *obj)
{
    size_t len = 0;
    const char *s = jx_to_string(obj, &len);
    int rc = h2s_respond(req, status, content_type, s, len);

    json_object_put(obj);
    return rc;
}

int
h2s_respond_json(h2s_req_t *req, int status, json_object *obj)
{
    return h2s_respond_obj(req, status, "application/json", obj);
}

int
h2s_respond_problem(h2s_req_t *req, int status, const char *code, const char *detail,
                    const jx_errors_t *errs)
{
    json_object *o = json_object_new_object();

    h2s_req_ensure_id(req);
    json_object_object_add(o, "type", json_object_new_string("about:blank"));
    json_object_object_add(o, "title", json_object_new_string(h2s_status_text(status)));
    json_object_object_add(o, "status", json_object_new_int(status));
    json_object_object_add(o, "detail", json_object_new_string(detail != NULL ? detail : ""));
    json_object_object_add(o, "instance", json_object_new_string(h2s_req_path(req)));
    json_object_object_add(o, "code", json_object_new_string(code));
    json_object_object_add(o, "request_id", json_object_new_string(req->request_id));
    if (errs != NULL && errs->n > 0) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < errs->n; i++) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "field", json_object_new_string(errs->items[i].field));
            json_object_object_add(e, "message", json_object_new_string(errs->items[i].message));
            json_object_array_add(arr, e);
        }
        json_object_object_add(o, "errors", arr);
    }
    return h2s_respond_obj(req, status, "application/problem+json", o);
}

static void
h2s_req_arm_timer(h2s_req_t *req)
{
    int ms = req->srv->limits.request_timeout_ms;
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(&req->timer, &tv);
}

/*
 * 1 when the answer has bytes waiting that the client's flow-control window
 * (of the stream or of the connection) does not let out.
 */
static int
h2s_req_window_stalled(const h2s_req_t *req)
{
    nghttp2_session *session = req->conn->session;
    int pending =
        req->sbuf != NULL ? evbuffer_get_length(req->sbuf) > 0 : req->resp_off < req->resp_len;

    return pending &&
           (nghttp2_session_get_stream_remote_window_size(session, req->stream_id) <= 0 ||
            nghttp2_session_get_remote_window_size(session) <= 0);
}

/*
 * The receive deadline. A request still incomplete gets 408; one answered
 * early (413, 408, 431) whose client keeps the stream open past another
 * period is reset, so no stream outlives its deadline. Once the request is
 * received and answered the same timer is the send-stall deadline: an answer
 * that sent nothing for a whole period because the client keeps its window
 * at zero is reset (CANCEL), so a client cannot hold a response (and its
 * memory) forever; one still moving is watched for another period.
 */
static void
h2s_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    h2s_req_t *req = arg;
    h2s_conn_t *conn = req->conn;

    if (req->state == REQ_HEADERS || req->state == REQ_BODY) {
        h2s_req_arm_timer(req);
        h2s_respond_problem(req, 408, "request_timeout",
                            "the request was not received completely in time", NULL);
    } else if ((req->state == REQ_RESPONDED || req->state == REQ_STREAMING) && conn != NULL) {
        uint32_t code = NGHTTP2_NO_ERROR;
        if (req->recv_complete) {
            if (req->resp_off != req->sent_mark || !h2s_req_window_stalled(req)) {
                req->sent_mark = req->resp_off;
                h2s_req_arm_timer(req);
                return;
            }
            log_info("%s: stream %d stalled by a zero window, reset", conn->peer,
                     (int)req->stream_id);
            code = NGHTTP2_CANCEL;
        }
        nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE, req->stream_id, code);
        h2s_conn_flush(conn);
    }
}

static void
h2s_dispatch(h2s_req_t *req)
{
    h2s_server_t *srv = req->srv;

    event_del(&req->timer);
    if (req->body != NULL) {
        req->body[req->body_len] = '\0';
    }
    req->state = REQ_DISPATCHED;
    srv->inflight++;
    metrics_inflight_add(1);
    req->route->fn(req, req->route->ud);
}

/* End of the request headers: validate, route, check declared length. */
static void
h2s_headers_done(h2s_req_t *req)
{
    h2s_server_t *srv = req->conn->srv;
    const char *rid = h2s_req_header(req, "x-request-id");

    if (rid != NULL && h2s_request_id_valid(rid, strlen(rid))) {
        memcpy(req->request_id, rid, strlen(rid) + 1);
    }
    h2s_req_ensure_id(req);
    if (req->headers_too_big) {
        h2s_respond_problem(req, 431, "headers_too_large",
                            "the request header list exceeds the limit", NULL);
        return;
    }
    if (req->bad_request || req->method[0] == '\0' || req->path == NULL) {
        h2s_respond_problem(req, 400, "bad_request", "malformed request headers", NULL);
        return;
    }
    int rc = router_match(srv->router, req->method, req->path, strlen(req->path), &req->match);
    if (rc != PHR_OK) {
        if (req->match.allow[0] != '\0') {
            char detail[160];
            snprintf(detail, sizeof(detail), "method %s is not allowed here; allowed: %s",
                     req->method, req->match.allow);
            h2s_req_add_header(req, "allow", req->match.allow);
            h2s_respond_problem(req, 405, "method_not_allowed", detail, NULL);
        } else {
            h2s_respond_problem(req, 404, "not_found", "no such resource", NULL);
        }
        return;
    }
    req->route = req->match.data;
    req->max_body = req->route->max_body ? req->route->max_body : srv->limits.max_body;
    const char *cl = h2s_req_header(req, "content-length");
    if (cl != NULL) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || *end != '\0' || cl[0] == '-') {
            h2s_respond_problem(req, 400, "bad_request", "content-length is not a number", NULL);
            return;
        }
        if (n > req->max_body) {
            char detail[96];
            snprintf(detail, sizeof(detail), "the body exceeds %zu bytes", req->max_body);
            h2s_respond_problem(req, 413, "payload_too_large", detail, NULL);
            return;
        }
    }
    req->state = REQ_BODY;
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static ssize_t
h2s_on_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
            void *user_data)
{
    h2s_conn_t *conn = user_data;
    size_t queued =
        evbuffer_get_length(bufferevent_get_output(conn->bev)) + evbuffer_get_length(conn->out);

    if (queued >= conn->srv->limits.output_cap) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (evbuffer_add(conn->out, data, length) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)length;
}

static int
h2s_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2s_conn_t *conn = user_data;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    h2s_req_t *req = h2s_req_new(conn->srv);
    if (req == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    req->srv = conn->srv;
    req->conn = conn;
    req->stream_id = frame->hd.stream_id;
    req->start_us = tu_mono_us();
    evtimer_assign(&req->timer, bufferevent_get_base(conn->bev), h2s_req_timeout, req);
    h2s_req_arm_timer(req);
    req->next = conn->reqs;
    if (conn->reqs != NULL) {
        conn->reqs->prev = req;
    }
    conn->reqs = req;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, req);
    return 0;
}

static int
h2s_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
              size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    h2s_conn_t *conn = user_data;
    h2s_req_t *req;

    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    req = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (req == NULL || req->state != REQ_HEADERS) {
        return 0; /* trailers are ignored */
    }
    req->header_bytes += namelen + valuelen + 32;
    if (req->header_bytes > conn->srv->limits.max_header_list) {
        req->headers_too_big = 1;
        return 0;
    }
    if (namelen > 0 && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            if (valuelen == 0 || valuelen >= sizeof(req->method)) {
                req->bad_request = 1;
            } else {
                memcpy(req->method, value, valuelen);
                req->method[valuelen] = '\0';
            }
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            const uint8_t *q = memchr(value, '?', valuelen);
            size_t plen = q != NULL ? (size_t)(q - value) : valuelen;
            req->path = h2s_req_strndup(req, value, plen);
            req->query = q != NULL ? h2s_req_strndup(req, q + 1, valuelen - plen - 1) : NULL;
            if (req->path == NULL) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
        return 0;
    }
    if (req->nheaders == H2S_MAX_HEADERS) {
        req->headers_too_big = 1;
        return 0;
    }
    h2s_header_t *h = &req->headers[req->nheaders];
    h->name = h2s_req_strndup(req, name, namelen);
    h->value = h2s_req_strndup(req, value, valuelen);
    if (h->name == NULL || h->value == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    req->nheaders++;
    return 0;
}

static int
h2s_on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                  size_t len, void *user_data)
{
    h2s_req_t *req = nghttp2_session_get_stream_user_data(session, stream_id);

    if (req == NULL || req->state != REQ_BODY) {
        return 0; /* already answered (413, 408): drop */
    }
    if (req->body_len + len > req->max_body) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the body exceeds %zu bytes", req->max_body);
        h2s_respond_problem(req, 413, "payload_too_large", detail, NULL);
        return 0;
    }
    if (req->body_len + len + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + len + 1) {
            cap *= 2;
        }
        char *p = realloc(req->body, cap);
        if (p == NULL) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        req->body = p;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    return 0;
}

static int
h2s_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2s_req_t *req;

    h2s_conn_arm_idle(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    req = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (req == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS && req->state == REQ_HEADERS) {
        h2s_headers_done(req);
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        req->recv_complete = 1;
        ((h2s_conn_t *)user_data)->ended_in_recv++;
        if (req->state == REQ_BODY) {
            h2s_dispatch(req);
        }
    }
    return 0;
}

static int
h2s_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                    void *user_data)
{
    h2s_req_t *req = nghttp2_session_get_stream_user_data(session, stream_id);

    if (req == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    req->stream_closed = 1;
    h2s_req_log(req);
    if (req->state == REQ_DISPATCHED || req->state == REQ_STREAMING) {
        /* The handler still owns the answer; h2s_respond/h2s_stream_end will free it. */
        h2s_req_unlink(req);
        h2s_req_orphan(req);
        return 0;
    }
    h2s_req_free(req);
    return 0;
}

/* ---- connection --------------------------------------------------------- */

/*
 * (Re)arms the idle timer. It restarts on complete frames only, never on
 * bytes, so a peer trickling a frame byte by byte cannot keep a connection;
 * a new connection gets request_timeout_ms for its preface and first frame.
 */
static void
h2s_conn_arm(h2s_conn_t *conn, int ms)
{
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(conn->idle_timer, &tv);
}

static void
h2s_conn_arm_idle(h2s_conn_t *conn)
{
    h2s_conn_arm(conn, conn->srv->limits.idle_timeout_ms);
}

/*
 * Moves the frames of one session_send to the socket. On cleartext
 * connections with nothing pending they are written at once (one writev,
 * no EV_WRITE round trip); the rest goes to the bufferevent, which writes
 * it in order when the socket is writable (and then calls h2s_conn_writecb).
 */
static int
h2s_conn_write(h2s_conn_t *conn, int direct)
{
    struct evbuffer *pending = bufferevent_get_output(conn->bev);

    if (evbuffer_get_length(conn->out) == 0) {
        return PHR_OK;
    }
    if (direct && conn->srv->ssl_ctx == NULL && evbuffer_get_length(pending) == 0) {
        int n = evbuffer_write(conn->out, bufferevent_getfd(conn->bev));
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return PHR_EIO;
        }
    }
    if (evbuffer_get_length(conn->out) > 0 && bufferevent_write_buffer(conn->bev, conn->out) != 0) {
        return PHR_ENOMEM;
    }
    return PHR_OK;
}

/*
 * Sends what nghttp2 has queued; frees the connection when it is finished
 * (then returns PHR_OK) or broken (PHR_ECLOSED). |conn| must not be used
 * after this call.
 */
static int
h2s_conn_flush(h2s_conn_t *conn)
{
    struct evbuffer *out = bufferevent_get_output(conn->bev);

    /*
     * session_send stops at the output cap; when everything it produced went
     * straight to the socket no write callback will follow, so continue here.
     */
    for (int round = 0; round < H2S_FLUSH_ROUNDS; round++) {
        int rv = nghttp2_session_send(conn->session);
        /* The last round leaves the bytes to libevent, whose write callback resumes us. */
        if (rv != 0 || h2s_conn_write(conn, round < H2S_FLUSH_ROUNDS - 1) != PHR_OK) {
            log_debug("session_send: %s", rv != 0 ? nghttp2_strerror(rv) : strerror(errno));
            h2s_conn_free(conn);
            return PHR_ECLOSED;
        }
        if (!nghttp2_session_want_write(conn->session) || evbuffer_get_length(out) > 0) {
            break;
        }
    }
    size_t queued = evbuffer_get_length(out);
    /* Backpressure: stop reading while the client does not drain its output. */
    if (queued >= conn->srv->limits.output_cap && !conn->read_paused) {
        bufferevent_disable(conn->bev, EV_READ);
        conn->read_paused = 1;
    } else if (queued < conn->srv->limits.output_cap / 2 && conn->read_paused) {
        bufferevent_enable(conn->bev, EV_READ);
        conn->read_paused = 0;
    }
    if (!nghttp2_session_want_read(conn->session) && !nghttp2_session_want_write(conn->session) &&
        queued == 0) {
        h2s_conn_free(conn); /* finished gracefully: everything was sent */
    }
    return PHR_OK;
}

/*
 * Acknowledges what was just read at once (TCP_QUICKACK; Linux clears it after
 * each ACK) on cleartext connections (the gateway, the services), unless the
 * read completed a request and no other one is still arriving: the answer then
 * carries the ACK, and one setsockopt and one bare ACK per request are saved.
 * Otherwise nginx, which sets no TCP_NODELAY on upstream connections, may hold
 * its next small segment (a body, a window update before the next request) in
 * Nagle's buffer until our delayed ACK: a 40 ms stall.
 */
static void
h2s_conn_quickack(h2s_conn_t *conn)
{
    int one = 1;

    if (conn->srv->ssl_ctx != NULL) {
        return;
    }
    if (conn->ended_in_recv > 0) {
        const h2s_req_t *r = conn->reqs;
        while (r != NULL && (r->recv_complete || r->stream_closed)) {
            r = r->next;
        }
        if (r == NULL) {
            return;
        }
    }
    setsockopt(bufferevent_getfd(conn->bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void
h2s_conn_readcb(struct bufferevent *bev, void *arg)
{
    h2s_conn_t *conn = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    unsigned char *data = evbuffer_pullup(in, -1);

    conn->in_recv = 1;
    conn->ended_in_recv = 0;
    ssize_t rv = nghttp2_session_mem_recv(conn->session, data, len);
    conn->in_recv = 0;
    if (rv < 0) {
        log_debug("mem_recv from %s: %s", conn->peer, nghttp2_strerror((int)rv));
        /* nghttp2 queued GOAWAY for protocol errors: try to send it, then close. */
        nghttp2_session_send(conn->session);
        h2s_conn_free(conn);
        return;
    }
    evbuffer_drain(in, (size_t)rv);
    h2s_conn_quickack(conn);
    h2s_conn_flush(conn);
}

static void
h2s_conn_writecb(struct bufferevent *bev, void *arg)
{
    h2s_conn_flush(arg);
}

static void
h2s_conn_eventcb(struct bufferevent *bev, short events, void *arg)
{
    h2s_conn_t *conn = arg;

    if (events & BEV_EVENT_CONNECTED) {
        const unsigned char *alpn = NULL;
        unsigned int alpnlen = 0;
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl != NULL) {
            SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
        }
        if (ssl != NULL && (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0)) {
            log_debug("%s: TLS client did not negotiate h2", conn->peer);
            h2s_conn_free(conn);
        }
        return;
    }
    if ((events & BEV_EVENT_TIMEOUT) && (events & BEV_EVENT_WRITING)) {
        log_info("%s: output not read for %d ms, connection closed", conn->peer,
                 h2s_write_timeout_ms(conn->srv));
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        h2s_conn_free(conn);
    }
}

static void
h2s_conn_idle(evutil_socket_t fd, short what, void *arg)
{
    h2s_conn_t *conn = arg;

    if (conn->reqs != NULL) {
        h2s_conn_arm_idle(conn);
        return;
    }
    nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(conn->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    nghttp2_session_terminate_session(conn->session, NGHTTP2_NO_ERROR);
    h2s_conn_flush(conn);
}

static void
h2s_conn_free(h2s_conn_t *conn)
{
    h2s_server_t *srv = conn->srv;

    /* Orphan requests whose handlers still run; free the rest. */
    while (conn->reqs != NULL) {
        h2s_req_t *req = conn->reqs;
        conn->reqs = req->next;
        if (conn->reqs != NULL) {
            conn->reqs->prev = NULL;
        }
        req->next = req->prev = NULL;
        if (req->state == REQ_DISPATCHED || req->state == REQ_STREAMING) {
            h2s_req_log(req);
            h2s_req_orphan(req);
        } else {
            req->conn = NULL;
            h2s_req_free(req);
        }
    }
    nghttp2_session_del(conn->session);
    bufferevent_free(conn->bev);
    evbuffer_free(conn->out);
    event_free(conn->idle_timer);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        srv->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    srv->nconns--;
    free(conn);
    h2s_check_drained(srv);
}

static int
h2s_write_timeout_ms(const h2s_server_t *srv)
{
    int ms = srv->limits.write_timeout_ms;
    return ms > 0 ? ms : H2S_DEFAULT_WRITE_TIMEOUT_MS;
}

/*
 * The write timeout: libevent reports BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING
 * when output waits in the bufferevent and the socket took no byte of it for
 * that long (a client that stopped reading); h2s_conn_eventcb then frees the
 * connection and its streams. Output is capped meanwhile (output_cap: reads
 * pause), so such a client holds bounded memory until then.
 */
static void
h2s_conn_set_write_timeout(h2s_conn_t *conn)
{
    int ms = h2s_write_timeout_ms(conn->srv);
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    bufferevent_set_timeouts(conn->bev, NULL, &tv);
}

static int
h2s_conn_create(h2s_server_t *srv, evutil_socket_t fd, const char *peer)
{
    nghttp2_session_callbacks *cbs;
    int one = 1;
    h2s_conn_t *conn = calloc(1, sizeof(*conn));

    if (conn == NULL) {
        evutil_closesocket(fd);
        return PHR_ENOMEM;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evutil_make_socket_nonblocking(fd);
    conn->srv = srv;
    snprintf(conn->peer, sizeof(conn->peer), "%s", peer);
    if (srv->ssl_ctx != NULL) {
        SSL *ssl = SSL_new(srv->ssl_ctx);
        conn->bev = ssl == NULL ? NULL
                                : bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                                                 BUFFEREVENT_SSL_ACCEPTING,
                                                                 BEV_OPT_CLOSE_ON_FREE);
        if (conn->bev == NULL) {
            SSL_free(ssl);
        }
    } else {
        conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    conn->idle_timer = evtimer_new(srv->base, h2s_conn_idle, conn);
    conn->out = evbuffer_new();
    if (conn->bev == NULL || conn->idle_timer == NULL || conn->out == NULL ||
        nghttp2_session_callbacks_new(&cbs) != 0) {
        goto fail;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, h2s_on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2s_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2s_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2s_on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2s_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2s_on_stream_close);
    int rv = nghttp2_session_server_new2(&conn->session, cbs, conn, srv->option);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        goto fail;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->limits.max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->limits.max_header_list},
    };
    nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, 2);

    conn->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = conn;
    }
    srv->conns = conn;
    srv->nconns++;

    bufferevent_setcb(conn->bev, h2s_conn_readcb, h2s_conn_writecb, h2s_conn_eventcb, conn);
    bufferevent_setwatermark(conn->bev, EV_READ, 0, H2S_READ_HIGH_WATER);
    h2s_conn_set_write_timeout(conn);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
    h2s_conn_arm(conn, srv->limits.request_timeout_ms); /* the preface and a first frame */
    if (srv->shutting_down) {
        nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    }
    h2s_conn_flush(conn);
    return PHR_OK;

fail:
    if (conn->bev != NULL) {
        bufferevent_free(conn->bev);
    } else {
        evutil_closesocket(fd);
    }
    if (conn->idle_timer != NULL) {
        event_free(conn->idle_timer);
    }
    if (conn->out != NULL) {
        evbuffer_free(conn->out);
    }
    free(conn);
    return PHR_ENOMEM;
}

static void
h2s_acceptcb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
             int addrlen, void *arg)
{
    char host[INET6_ADDRSTRLEN] = "-";
    char peer[64];
    int port = 0;

    if (addr->sa_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)addr;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        port = ntohs(sin6->sin6_port);
    }
    snprintf(peer, sizeof(peer), "%s:%d", host, port);
    h2s_conn_create(arg, fd, peer);
}

/* ---- server ------------------------------------------------------------- */

h2s_server_t *
h2s_server_create(struct event_base *base, const h2s_limits_t *limits)
{
    h2s_server_t *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        return NULL;
    }
    srv->base = base;
    srv->limits = *limits;
    srv->router = router_create();
    if (srv->router == NULL || nghttp2_option_new(&srv->option) != 0) {
        router_free(srv->router);
        free(srv);
        return NULL;
    }
    /* Rapid-reset and CONTINUATION-flood limiters (backported into Debian's 1.52). */
    nghttp2_option_set_stream_reset_rate_limit(srv->option, 1000, 33);
    nghttp2_option_set_max_continuations(srv->option, 8);
    nghttp2_option_set_max_settings(srv->option, 32);
    nghttp2_option_set_max_outbound_ack(srv->option, 1000);
    return srv;
}

void
h2s_server_free(h2s_server_t *srv)
{
    if (srv == NULL) {
        return;
    }
    srv->drain_done = NULL;
    for (int i = 0; i < srv->nlisteners; i++) {
        evconnlistener_free(srv->listeners[i]);
    }
    srv->nlisteners = 0;
    while (srv->conns != NULL) {
        h2s_conn_free(srv->conns);
    }
    /* Handlers may still answer orphans later: they must not reach the freed server. */
    while (srv->orphans != NULL) {
        h2s_req_t *req = srv->orphans;
        srv->orphans = req->next;
        req->next = req->prev = NULL;
        req->orphan = 0;
        req->srv = NULL;
    }
    if (srv->drain_timer != NULL) {
        event_free(srv->drain_timer);
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i]);
    }
    while (srv->spares != NULL) {
        h2s_req_t *req = srv->spares;
        srv->spares = req->next;
        free(req);
    }
    router_free(srv->router);
    nghttp2_option_del(srv->option);
    SSL_CTX_free(srv->ssl_ctx);
    free(srv);
}

int
h2s_route(h2s_server_t *srv, const char *method, const char *pattern, h2s_handler_fn fn, void *ud,
          size_t max_body)
{
    if (srv->nroutes == sizeof(srv->routes) / sizeof(srv->routes[0])) {
        return PHR_EFULL;
    }
    h2s_route_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        return PHR_ENOMEM;
    }
    rt->fn = fn;
    rt->ud = ud;
    rt->max_body = max_body;
    int rc = router_add(srv->router, method, pattern, rt);
    if (rc != PHR_OK) {
        free(rt);
        return rc;
    }
    srv->routes[srv->nroutes++] = rt;
    return PHR_OK;
}

int
h2s_listen(h2s_server_t *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t sslen;

    if (srv->nlisteners == H2S_MAX_LISTENERS) {
        return PHR_EFULL;
    }
    if (port < 0 || port > 65535) {
        return PHR_EINVAL;
    }
    memset(&ss, 0, sizeof(ss));
    if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof(*sin);
    } else if (evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*sin6);
    } else {
        log_error("listen address %s is not a numeric IPv4 or IPv6 address", host);
        return PHR_EINVAL;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(srv->base, h2s_acceptcb, srv,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                1024, (struct sockaddr *)&ss, (int)sslen);
    if (l == NULL) {
        log_error("cannot listen on %s port %d: %s", host, port, strerror(errno));
        return PHR_EIO;
    }
    srv->listeners[srv->nlisteners++] = l;
    return PHR_OK;
}

static int
h2s_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                unsigned int inlen, void *arg)
{
    unsigned char *sel = NULL;

    if (nghttp2_select_next_protocol(&sel, outlen, in, inlen) != 1) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int
h2s_use_tls(h2s_server_t *srv, const char *cert_file, const char *key_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        return PHR_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    if (SSL_CTX_set_cipher_list(ctx,
                                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_error("TLS: cannot use certificate %s / key %s: %s", cert_file, key_file,
                  ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return PHR_EINVAL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, h2s_alpn_select, NULL);
    SSL_CTX_free(srv->ssl_ctx);
    srv->ssl_ctx = ctx;
    return PHR_OK;
}

int
h2s_port(const h2s_server_t *srv)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    memset(&ss, 0, sizeof(ss));
    if (srv->nlisteners == 0 ||
        getsockname(evconnlistener_get_fd(srv->listeners[0]), (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int
h2s_adopt_fd(h2s_server_t *srv, int fd, const char *peer)
{
    return h2s_conn_create(srv, fd, peer);
}

size_t
h2s_connections(const h2s_server_t *srv)
{
    return srv->nconns;
}

size_t
h2s_inflight(const h2s_server_t *srv)
{
    return srv->inflight;
}

static void
h2s_finish_drain(h2s_server_t *srv)
{
    void (*done)(void *) = srv->drain_done;

    srv->drain_done = NULL;
    if (srv->drain_timer != NULL) {
        event_del(srv->drain_timer);
    }
    if (done != NULL) {
        done(srv->drain_ud);
    }
}

/* When the last connection is gone, completes the drain from the loop (never re-entrantly). */
static void
h2s_check_drained(h2s_server_t *srv)
{
    static const struct timeval now = {0, 0};

    if (srv->shutting_down && srv->nconns == 0 && srv->drain_done != NULL) {
        evtimer_add(srv->drain_timer, &now);
    }
}

static void
h2s_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    h2s_server_t *srv = arg;

    if (srv->nconns > 0) {
        log_warn("drain timeout: closing %zu connection(s) with %zu request(s) in flight",
                 srv->nconns, srv->inflight);
    }
    while (srv->conns != NULL) {
        h2s_conn_free(srv->conns);
    }
    h2s_finish_drain(srv);
}

void
h2s_shutdown(h2s_server_t *srv, int drain_ms, void (*done)(void *ud), void *ud)
{
    if (srv->shutting_down) {
        return;
    }
    srv->shutting_down = 1;
    srv->drain_done = done;
    srv->drain_ud = ud;
    for (int i = 0; i < srv->nlisteners; i++) {
        evconnlistener_free(srv->listeners[i]);
    }
    srv->nlisteners = 0;
    srv->drain_timer = evtimer_new(srv->base, h2s_drain_timeout, srv);
    struct timeval tv = {drain_ms / 1000, (suseconds_t)(drain_ms % 1000) * 1000};
    evtimer_add(srv->drain_timer, &tv);

    /* Connections that close during the loop must not complete the drain under it. */
    srv->drain_done = NULL;
    h2s_conn_t *conn = srv->conns;
    while (conn != NULL) {
        h2s_conn_t *next = conn->next;
        nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(conn->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2s_conn_flush(conn);
        conn = next;
    }
    srv->drain_done = done;
    h2s_check_drained(srv);
}
