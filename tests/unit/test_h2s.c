/*
 * test_h2s.c - unit tests of common/h2s.c driven by a real nghttp2 client.
 *
 * No external services needed. Each test gets a fresh event_base and server
 * (limits: default body 1024, header list 4096, request timeout 300 ms, idle
 * timeout 500 ms, output cap 64 KiB, 100 streams) and a client connected over
 * a socketpair (h2s_adopt_fd) or TCP on 127.0.0.1 (h2s_listen, port 0). The
 * client is nghttp2's client session (1.52 API) pumped by hand between
 * non-blocking turns of the server's event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <event2/event.h>
#include <json-c/json.h>
#include <nghttp2/nghttp2.h>

#include "err.h"
#include "h2s.h"
#include "log.h"

#define T_MAX_STREAMS 256
#define T_ECHO_MAX (64 * 1024)

/* ---- client ------------------------------------------------------------- */

typedef struct {
    int32_t id;
    int status;
    char rid[160];
    char ctype[96];
    char allow[96];
    char *body;
    size_t blen, bcap;
    int closed;
    uint32_t close_err;
    int rst;
    const char *rbody; /* request body to send */
    size_t rlen, roff;
    size_t chunk; /* max bytes per DATA frame, 0 = no limit */
    int hold;     /* keep the request open after rbody (stall) */
    int64_t t_close;
    int64_t t_headers; /* response HEADERS received */
} t_stream_t;

typedef struct {
    int fd;
    nghttp2_session *s;
    int eof;
    int recv_err;
    int goaway;
    uint32_t goaway_err;
    int paused; /* do not read from the socket */
    uint8_t *pend;
    size_t plen, pcap;
    t_stream_t st[T_MAX_STREAMS];
    int nst;
} t_client_t;

typedef struct {
    struct event_base *base;
    h2s_server_t *srv;
    t_client_t *c;
} t_fixture_t;

static t_fixture_t fx;

/* Handler bookkeeping. */
static int t_cleanups;
static int t_slow_answered;
static int t_slow_rc;
static int t_slow_was_closed;
static h2s_req_t *t_never_req;
static size_t t_big_len;
static char t_peer[64];
static int t_done_calls;
static int t_done_slow_seen;
static int64_t t_done_at;

static void
t_sleep_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static ssize_t
t_cl_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
          nghttp2_data_source *src, void *ud)
{
    t_stream_t *st = src->ptr;
    size_t n = st->rlen - st->roff;

    if (n > len) {
        n = len;
    }
    if (st->chunk != 0 && n > st->chunk) {
        n = st->chunk;
    }
    if (n == 0 && st->hold) {
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > 0) {
        memcpy(buf, st->rbody + st->roff, n);
    }
    st->roff += n;
    if (st->roff == st->rlen && !st->hold) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void
t_copy(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int
t_cl_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
            const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    t_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    char tmp[16];

    if (st == NULL || frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        t_copy(tmp, sizeof(tmp), value, valuelen);
        st->status = (int)strtol(tmp, NULL, 10);
    } else if (namelen == 12 && memcmp(name, "x-request-id", 12) == 0) {
        t_copy(st->rid, sizeof(st->rid), value, valuelen);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        t_copy(st->ctype, sizeof(st->ctype), value, valuelen);
    } else if (namelen == 5 && memcmp(name, "allow", 5) == 0) {
        t_copy(st->allow, sizeof(st->allow), value, valuelen);
    }
    return 0;
}

static int
t_cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    t_stream_t *st = nghttp2_session_get_stream_user_data(s, id);

    if (st == NULL) {
        return 0;
    }
    if (st->blen + len + 1 > st->bcap) {
        size_t cap = st->bcap ? st->bcap : 256;
        while (cap < st->blen + len + 1) {
            cap *= 2;
        }
        char *p = realloc(st->body, cap);
        if (p == NULL) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        st->body = p;
        st->bcap = cap;
    }
    memcpy(st->body + st->blen, data, len);
    st->blen += len;
    st->body[st->blen] = '\0';
    return 0;
}

static int
t_cl_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    t_client_t *c = ud;

    if (frame->hd.type == NGHTTP2_HEADERS) {
        t_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
        if (st != NULL && st->t_headers == 0) {
            st->t_headers = t_now_ms();
        }
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        c->goaway_err = frame->goaway.error_code;
    } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
        t_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
        if (st != NULL) {
            st->rst = 1;
        }
    }
    return 0;
}

static int
t_cl_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    t_stream_t *st = nghttp2_session_get_stream_user_data(s, id);

    if (st != NULL) {
        st->closed = 1;
        st->close_err = err;
        st->t_close = t_now_ms();
    }
    return 0;
}

/*
 * Creates a client on |fd| that sends its preface and SETTINGS (|window| 0 =
 * defaults; T_ZERO_WINDOW: INITIAL_WINDOW_SIZE 0 and no automatic
 * WINDOW_UPDATE, the test opens the windows by hand).
 */
#define T_ZERO_WINDOW (-1)
static t_client_t *
t_client_new(int fd, int32_t window)
{
    t_client_t *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;

    assert_non_null(c);
    c->fd = fd;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, t_cl_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, t_cl_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, t_cl_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, t_cl_close);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_no_auto_window_update(opt, window == T_ZERO_WINDOW);
    assert_int_equal(nghttp2_session_client_new2(&c->s, cbs, c, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[2] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window > 0 ? (uint32_t)window : 0}};
    assert_int_equal(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, window != 0 ? 2 : 1), 0);
    if (window > 0) {
        assert_int_equal(nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, window),
                         0);
    }
    return c;
}

static void
t_client_free(t_client_t *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < c->nst; i++) {
        free(c->st[i].body);
    }
    nghttp2_session_del(c->s);
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->pend);
    free(c);
}

/* Moves bytes between the client session and the socket without blocking. */
static void
t_client_io(t_client_t *c)
{
    for (;;) {
        if (c->plen > 0) {
            ssize_t n = send(c->fd, c->pend, c->plen, MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            memmove(c->pend, c->pend + n, c->plen - (size_t)n);
            c->plen -= (size_t)n;
            continue;
        }
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->s, &data);
        if (n <= 0) {
            break;
        }
        if ((size_t)n > c->pcap) {
            c->pcap = (size_t)n;
            c->pend = realloc(c->pend, c->pcap);
            assert_non_null(c->pend);
        }
        memcpy(c->pend, data, (size_t)n);
        c->plen = (size_t)n;
    }
    while (!c->paused && !c->eof) {
        uint8_t buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c->eof = 1;
            break;
        }
        if (n < 0) {
            break;
        }
        ssize_t r = nghttp2_session_mem_recv(c->s, buf, (size_t)n);
        if (r < 0) {
            c->recv_err = (int)r;
            break;
        }
    }
}

typedef int (*t_cond_fn)(const void *arg);

/* Runs the server loop and pumps the client until |cond| holds or |ms| pass. */
static int
t_run(t_cond_fn cond, const void *arg, int ms)
{
    int64_t end = t_now_ms() + ms;

    for (;;) {
        event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (fx.c != NULL) {
            t_client_io(fx.c);
        }
        event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (cond != NULL && cond(arg)) {
            return 1;
        }
        if (t_now_ms() >= end) {
            return 0;
        }
        t_sleep_us(300);
    }
}

static int
t_closed(const void *arg)
{
    return ((const t_stream_t *)arg)->closed;
}

static int
t_eof(const void *arg)
{
    return ((const t_client_t *)arg)->eof;
}

static int
t_flag(const void *arg)
{
    return *(const int *)arg != 0;
}

static int
t_inflight_is(const void *arg)
{
    return h2s_inflight(fx.srv) == *(const size_t *)arg;
}

static int
t_conns_zero(const void *arg)
{
    return h2s_connections(fx.srv) == 0;
}

static int
t_all_closed(const void *arg)
{
    for (int i = 0; i < fx.c->nst; i++) {
        if (!fx.c->st[i].closed) {
            return 0;
        }
    }
    return 1;
}

typedef struct {
    const char *method;
    const char *path;
    const nghttp2_nv *extra;
    size_t nextra;
    const char *body;
    size_t blen;
    int with_body; /* send DATA (even when blen is 0) */
    int hold;
    size_t chunk;
} t_reqspec_t;

static nghttp2_nv
t_nv(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name),
                     strlen(value), NGHTTP2_NV_FLAG_NONE};
    return nv;
}

static t_stream_t *
t_submit(t_client_t *c, const t_reqspec_t *r)
{
    nghttp2_nv *nva = calloc(4 + r->nextra, sizeof(*nva));
    t_stream_t *st;

    assert_non_null(nva);
    assert_true(c->nst < T_MAX_STREAMS);
    st = &c->st[c->nst++];
    nva[0] = t_nv(":method", r->method);
    nva[1] = t_nv(":scheme", "http");
    nva[2] = t_nv(":authority", "test");
    nva[3] = t_nv(":path", r->path);
    for (size_t i = 0; i < r->nextra; i++) {
        nva[4 + i] = r->extra[i];
    }
    st->rbody = r->body;
    st->rlen = r->blen;
    st->hold = r->hold;
    st->chunk = r->chunk;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = t_cl_read};
    st->id = nghttp2_submit_request(c->s, NULL, nva, 4 + r->nextra,
                                    r->with_body || r->blen > 0 || r->hold ? &prd : NULL, st);
    free(nva);
    assert_true(st->id > 0);
    return st;
}

/* Sends a request and waits (up to 3 s) for its stream to close. */
static t_stream_t *
t_do(const t_reqspec_t *r)
{
    t_stream_t *st = t_submit(fx.c, r);

    if (!t_run(t_closed, st, 3000)) {
        fail_msg("%s %s: no answer within 3 s", r->method, r->path);
    }
    return st;
}

static t_stream_t *
t_get(const char *path)
{
    t_reqspec_t r = {.method = "GET", .path = path};
    return t_do(&r);
}

static int
t_is_hex32(const char *s)
{
    if (strlen(s) != 32) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* Checks an application/problem+json answer. */
static void
t_check_problem(const t_stream_t *st, int status, const char *code)
{
    json_object *o, *v;

    assert_int_equal(st->status, status);
    assert_string_equal(st->ctype, "application/problem+json");
    assert_non_null(st->body);
    o = json_tokener_parse(st->body);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), status);
    assert_true(json_object_object_get_ex(o, "code", &v));
    assert_string_equal(json_object_get_string(v), code);
    assert_true(json_object_object_get_ex(o, "request_id", &v));
    assert_string_equal(json_object_get_string(v), st->rid);
    assert_true(json_object_object_get_ex(o, "title", &v));
    assert_string_equal(json_object_get_string(v), h2s_status_text(status));
    json_object_put(o);
}

/* ---- handlers ----------------------------------------------------------- */

static void
t_count_cleanup(void *arg)
{
    (*(int *)arg)++;
}

static void
h_hello(h2s_req_t *req, void *ud)
{
    snprintf(t_peer, sizeof(t_peer), "%s", h2s_req_peer(req));
    assert_int_equal(h2s_req_add_cleanup(req, t_count_cleanup, &t_cleanups), PHR_OK);
    h2s_respond(req, 200, "text/plain", "hello", 5);
}

/*
 * Takes request memory inside and beyond the arena, checks it is zeroed,
 * aligned and distinct, dirties it, and answers with header x-foo ("-").
 */
static void
h_mem(h2s_req_t *req, void *ud)
{
    static const size_t sizes[] = {1, 100, 7000, 20000, 3};
    unsigned char *got[5];

    for (size_t i = 0; i < 5; i++) {
        got[i] = h2s_req_alloc(req, sizes[i]);
        assert_non_null(got[i]);
        assert_int_equal((uintptr_t)got[i] % _Alignof(max_align_t), 0);
        for (size_t k = 0; k < sizes[i]; k++) {
            assert_int_equal(got[i][k], 0);
        }
        for (size_t j = 0; j < i; j++) {
            assert_true(got[i] + sizes[i] <= got[j] || got[j] + sizes[j] <= got[i]);
        }
        memset(got[i], 0xab, sizes[i]);
    }
    const char *foo = h2s_req_header(req, "x-foo");
    h2s_respond(req, 200, "text/plain", foo != NULL ? foo : "-", foo != NULL ? strlen(foo) : 1);
}

static void
h_echo(h2s_req_t *req, void *ud)
{
    size_t len = 0;
    const char *body = h2s_req_body(req, &len);

    h2s_respond(req, 200, "application/octet-stream", body, len);
}

static void
h_items(h2s_req_t *req, void *ud)
{
    char out[512];
    int n = snprintf(out, sizeof(out), "id=%s q=%s path=%s route=%s", h2s_req_param(req, "id"),
                     h2s_req_query(req), h2s_req_path(req), h2s_req_route(req));
    h2s_respond(req, 200, "text/plain", out, (size_t)n);
}

typedef struct {
    struct event *ev;
    h2s_req_t *req;
} t_slow_t;

static void
t_slow_fire(evutil_socket_t fd, short what, void *arg)
{
    t_slow_t *sl = arg;

    t_slow_was_closed = h2s_req_closed(sl->req);
    t_slow_rc = h2s_respond(sl->req, 200, "text/plain", "slow", 4);
    t_slow_answered++;
    event_free(sl->ev);
    free(sl);
}

static void
h_slow(h2s_req_t *req, void *ud)
{
    t_slow_t *sl = calloc(1, sizeof(*sl));
    struct timeval tv = {0, 100 * 1000};

    assert_non_null(sl);
    sl->req = req;
    sl->ev = evtimer_new(fx.base, t_slow_fire, sl);
    assert_int_equal(h2s_req_add_cleanup(req, t_count_cleanup, &t_cleanups), PHR_OK);
    evtimer_add(sl->ev, &tv);
}

static void
h_never(h2s_req_t *req, void *ud)
{
    t_never_req = req;
}

static void
h_big(h2s_req_t *req, void *ud)
{
    char *b = malloc(t_big_len);

    assert_non_null(b);
    for (size_t i = 0; i < t_big_len; i++) {
        b[i] = (char)('a' + i % 26);
    }
    h2s_respond(req, 200, "application/octet-stream", b, t_big_len);
    free(b);
}

/* A producer of t_gen_total bytes in 16 KiB chunks that keeps at most 256 KiB buffered. */
static size_t t_gen_total, t_gen_sent, t_gen_max_buffered;
static int t_gen_rc, t_gen_ended;

static void
t_gen_drain(h2s_req_t *req, void *ud)
{
    char chunk[16384];

    if (h2s_req_closed(req)) {
        t_gen_rc = PHR_ECLOSED; /* as the services' producers check: the client went away */
    }
    while (t_gen_rc == PHR_OK && t_gen_sent < t_gen_total &&
           h2s_stream_buffered(req) < 256 * 1024) {
        size_t n =
            t_gen_total - t_gen_sent < sizeof(chunk) ? t_gen_total - t_gen_sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++) {
            chunk[i] = (char)('a' + (t_gen_sent + i) % 26);
        }
        t_gen_rc = h2s_stream_write(req, chunk, n);
        if (t_gen_rc != PHR_OK) {
            break;
        }
        t_gen_sent += n;
        if (h2s_stream_buffered(req) > t_gen_max_buffered) {
            t_gen_max_buffered = h2s_stream_buffered(req);
        }
    }
    if (t_gen_sent == t_gen_total || t_gen_rc != PHR_OK) {
        t_gen_ended++;
        h2s_stream_end(req);
    }
}

static void
h_stream(h2s_req_t *req, void *ud)
{
    assert_int_equal(h2s_req_add_cleanup(req, t_count_cleanup, &t_cleanups), PHR_OK);
    assert_int_equal(h2s_stream_start(req, 200, "application/x-ndjson", t_gen_drain, NULL), PHR_OK);
    assert_int_equal(h2s_respond(req, 500, "text/plain", "x", 1), PHR_EINVAL);
    t_gen_drain(req, NULL);
}

/* ---- fixture ------------------------------------------------------------ */

static int
t_setup(void **state)
{
    h2s_limits_t lim = {
        .max_header_list = 4096,
        .max_body = 1024,
        .max_streams = 100,
        .output_cap = 64 * 1024,
        .idle_timeout_ms = 500,
        .request_timeout_ms = 300,
    };
    int sv[2];

    memset(&fx, 0, sizeof(fx));
    t_cleanups = t_slow_answered = t_slow_was_closed = t_done_calls = t_done_slow_seen = 0;
    t_slow_rc = 12345;
    t_never_req = NULL;
    t_big_len = 0;
    t_peer[0] = '\0';
    fx.base = event_base_new();
    assert_non_null(fx.base);
    fx.srv = h2s_server_create(fx.base, &lim);
    assert_non_null(fx.srv);
    assert_int_equal(h2s_route(fx.srv, "GET", "/hello", h_hello, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/mem", h_mem, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "POST", "/echo", h_echo, NULL, T_ECHO_MAX), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "POST", "/small", h_echo, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/slow", h_slow, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/items/{id}", h_items, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/never", h_never, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/big", h_big, NULL, 0), PHR_OK);
    assert_int_equal(h2s_route(fx.srv, "GET", "/stream", h_stream, NULL, 0), PHR_OK);
    t_gen_total = t_gen_sent = t_gen_max_buffered = 0;
    t_gen_rc = t_gen_ended = 0;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(h2s_adopt_fd(fx.srv, sv[0], "unix:1"), PHR_OK);
    assert_int_equal(h2s_connections(fx.srv), 1);
    fx.c = t_client_new(sv[1], 0);
    return 0;
}

static int
t_teardown(void **state)
{
    t_client_free(fx.c);
    fx.c = NULL;
    /* Let the server notice the close, then free everything. */
    t_run(t_conns_zero, NULL, 200);
    h2s_server_free(fx.srv);
    event_base_free(fx.base);
    memset(&fx, 0, sizeof(fx));
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void
t_route_errors(void **state)
{
    assert_int_equal(h2s_route(fx.srv, "GET", "/hello", h_hello, NULL, 0), PHR_ECONFLICT);
    assert_int_equal(h2s_route(fx.srv, "GET", "no-slash", h_hello, NULL, 0), PHR_EINVAL);
    assert_string_equal(h2s_status_text(404), "Not Found");
    assert_string_equal(h2s_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(h2s_status_text(799), "Unknown");
    assert_int_equal(h2s_port(fx.srv), -1);
}

static void
t_get_hello(void **state)
{
    t_stream_t *st = t_get("/hello");

    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, 5);
    assert_memory_equal(st->body, "hello", 5);
    assert_string_equal(st->ctype, "text/plain");
    assert_true(t_is_hex32(st->rid));
    assert_int_equal(st->close_err, NGHTTP2_NO_ERROR);
    assert_string_equal(t_peer, "unix:1");

    /* A second request gets a different id; the cleanup ran for both. */
    t_stream_t *st2 = t_get("/hello");
    assert_int_equal(st2->status, 200);
    assert_true(t_is_hex32(st2->rid));
    assert_string_not_equal(st->rid, st2->rid);
    assert_int_equal(t_cleanups, 2);
    assert_int_equal(h2s_inflight(fx.srv), 0);
}

/* Request memory is zeroed for each request, and a reused request keeps nothing of the last. */
static void
t_request_memory(void **state)
{
    nghttp2_nv nv[1] = {t_nv("x-foo", "bar")};
    t_reqspec_t with = {.method = "GET", .path = "/mem", .extra = nv, .nextra = 1};

    for (int round = 0; round < 3; round++) {
        t_stream_t *st = t_do(&with);
        assert_int_equal(st->status, 200);
        assert_int_equal(st->blen, 3);
        assert_memory_equal(st->body, "bar", 3);
        st = t_get("/mem");
        assert_int_equal(st->status, 200);
        assert_int_equal(st->blen, 1);
        assert_memory_equal(st->body, "-", 1);
    }
    assert_int_equal(h2s_inflight(fx.srv), 0);
}

static void
t_request_id(void **state)
{
    char long_id[101], max_id[65];
    nghttp2_nv nv[1];
    t_reqspec_t r = {.method = "GET", .path = "/hello", .extra = nv, .nextra = 1};

    nv[0] = t_nv("x-request-id", "abc-DEF_123.x");
    t_stream_t *st = t_do(&r);
    assert_int_equal(st->status, 200);
    assert_string_equal(st->rid, "abc-DEF_123.x");

    memset(max_id, 'a', 64);
    max_id[64] = '\0';
    nv[0] = t_nv("x-request-id", max_id);
    st = t_do(&r);
    assert_string_equal(st->rid, max_id);

    static const char *const bad[] = {"has space", "quote\"", "semi;colon", "slash/x", "é"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nv[0] = t_nv("x-request-id", bad[i]);
        st = t_do(&r);
        assert_int_equal(st->status, 200);
        assert_true(t_is_hex32(st->rid));
    }
    memset(long_id, 'b', 100);
    long_id[100] = '\0';
    nv[0] = t_nv("x-request-id", long_id);
    st = t_do(&r);
    assert_true(t_is_hex32(st->rid));

    /* The id is also the one of error answers. */
    nv[0] = t_nv("x-request-id", "err-id-1");
    r.path = "/missing";
    st = t_do(&r);
    t_check_problem(st, 404, "not_found");
    assert_string_equal(st->rid, "err-id-1");
}

static void
t_params_and_query(void **state)
{
    t_stream_t *st = t_get("/items/42?x=1&y=2");

    assert_int_equal(st->status, 200);
    assert_string_equal(st->body, "id=42 q=x=1&y=2 path=/items/42 route=/items/{id}");
    st = t_get("/items/abc");
    assert_string_equal(st->body, "id=abc q= path=/items/abc route=/items/{id}");
    st = t_get("/items/a%20b?");
    assert_string_equal(st->body, "id=a%20b q= path=/items/a%20b route=/items/{id}");
    st = t_get("/hello?foo=bar");
    assert_int_equal(st->status, 200);
    assert_string_equal(st->body, "hello");
    /* The query never takes part in routing. */
    st = t_get("/items?id=1");
    assert_int_equal(st->status, 404);
    st = t_get("/items/1/2");
    assert_int_equal(st->status, 404);
    st = t_get("/items/../hello");
    assert_int_equal(st->status, 404);
}

static void
t_not_found(void **state)
{
    t_stream_t *st = t_get("/nope");
    json_object *o, *v;

    t_check_problem(st, 404, "not_found");
    assert_true(t_is_hex32(st->rid));
    o = json_tokener_parse(st->body);
    assert_true(json_object_object_get_ex(o, "instance", &v));
    assert_string_equal(json_object_get_string(v), "/nope");
    json_object_put(o);
    st = t_get("/hello/");
    t_check_problem(st, 404, "not_found");
}

static void
t_method_not_allowed(void **state)
{
    t_reqspec_t r = {.method = "DELETE", .path = "/hello"};
    t_stream_t *st = t_do(&r);

    t_check_problem(st, 405, "method_not_allowed");
    assert_string_equal(st->allow, "GET");

    r.method = "GET";
    r.path = "/echo";
    st = t_do(&r);
    t_check_problem(st, 405, "method_not_allowed");
    assert_string_equal(st->allow, "POST");
    /* A body sent to a 405 is dropped without harming the connection. */
    r.method = "PUT";
    r.path = "/items/7";
    r.body = "payload";
    r.blen = 7;
    st = t_do(&r);
    t_check_problem(st, 405, "method_not_allowed");
    assert_string_equal(st->allow, "GET");
    assert_int_equal(t_get("/hello")->status, 200);
}

static char *
t_pattern(size_t n)
{
    char *b = malloc(n + 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        b[i] = (char)('A' + (i * 7 + i / 13) % 26);
    }
    b[n] = '\0';
    return b;
}

static void
t_post_echo(void **state)
{
    char *body = t_pattern(40000);
    t_reqspec_t r = {.method = "POST", .path = "/echo", .body = body, .blen = 40000, .chunk = 1000};
    t_stream_t *st = t_do(&r);

    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, 40000);
    assert_memory_equal(st->body, body, 40000);
    assert_string_equal(st->ctype, "application/octet-stream");

    /* Exactly at the route limit, in default-size frames. */
    free(body);
    body = t_pattern(T_ECHO_MAX);
    r.body = body;
    r.blen = T_ECHO_MAX;
    r.chunk = 0;
    st = t_do(&r);
    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, T_ECHO_MAX);
    assert_memory_equal(st->body, body, T_ECHO_MAX);

    /* An empty body (HEADERS, then an empty DATA with END_STREAM). */
    r.body = "";
    r.blen = 0;
    r.with_body = 1;
    st = t_do(&r);
    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, 0);

    /* The default limit (1024) applies to /small: 1024 passes. */
    r.path = "/small";
    r.body = body;
    r.blen = 1024;
    st = t_do(&r);
    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, 1024);
    free(body);
}

static void
t_too_large(void **state)
{
    char *body = t_pattern(T_ECHO_MAX + 4000);
    nghttp2_nv nv[1] = {t_nv("content-length", "69536")};
    t_reqspec_t r = {.method = "POST",
                     .path = "/echo",
                     .extra = nv,
                     .nextra = 1,
                     .body = body,
                     .blen = T_ECHO_MAX + 4000};

    /* Declared too large: refused from the headers alone. */
    t_stream_t *st = t_do(&r);
    t_check_problem(st, 413, "payload_too_large");
    assert_int_equal(t_get("/hello")->status, 200);

    /* Streamed without content-length, beyond the route limit. */
    r.extra = NULL;
    r.nextra = 0;
    r.chunk = 4000;
    st = t_do(&r);
    t_check_problem(st, 413, "payload_too_large");
    assert_int_equal(t_get("/hello")->status, 200);

    /* The default limit on /small, declared and streamed. */
    nv[0] = t_nv("content-length", "1025");
    r.path = "/small";
    r.extra = nv;
    r.nextra = 1;
    r.blen = 1025;
    st = t_do(&r);
    t_check_problem(st, 413, "payload_too_large");
    r.extra = NULL;
    r.nextra = 0;
    r.chunk = 100;
    st = t_do(&r);
    t_check_problem(st, 413, "payload_too_large");
    st = t_get("/hello");
    assert_int_equal(st->status, 200);
    assert_int_equal(h2s_connections(fx.srv), 1);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    free(body);
}

static void
t_headers_too_large(void **state)
{
    char *big = t_pattern(5000);
    nghttp2_nv nv[70];
    char names[70][24];
    t_reqspec_t r = {.method = "GET", .path = "/hello", .extra = nv};

    /* One huge header. */
    nv[0] = t_nv("x-big", big);
    r.nextra = 1;
    t_stream_t *st = t_do(&r);
    t_check_problem(st, 431, "headers_too_large");
    assert_int_equal(t_get("/hello")->status, 200);

    /* Many headers: 30 x (10 + 150 + 32) bytes > 4096. */
    big[150] = '\0';
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof(names[i]), "x-hdr-%04d", i);
        nv[i] = t_nv(names[i], big);
    }
    r.nextra = 30;
    st = t_do(&r);
    t_check_problem(st, 431, "headers_too_large");

    /* Just below the limit passes: 10 x (10 + 150 + 32) + pseudo-headers. */
    r.nextra = 10;
    st = t_do(&r);
    assert_int_equal(st->status, 200);

    /* 40 small fields are fine; more fields than the server stores (64) are not. */
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof(names[i]), "x-n-%02d", i);
        nv[i] = t_nv(names[i], "v");
    }
    r.nextra = 40;
    st = t_do(&r);
    assert_int_equal(st->status, 200);
    r.nextra = 70;
    st = t_do(&r);
    t_check_problem(st, 431, "headers_too_large");
    assert_int_equal(t_get("/hello")->status, 200);
    free(big);
}

static int
t_has_headers(const void *arg)
{
    return ((const t_stream_t *)arg)->t_headers != 0;
}

static void
t_request_timeout(void **state)
{
    t_reqspec_t r = {.method = "POST", .path = "/echo", .body = "par", .blen = 3, .hold = 1};
    int64_t t0 = t_now_ms();
    t_stream_t *st = t_submit(fx.c, &r);

    assert_true(t_run(t_has_headers, st, 2000));
    int64_t took = st->t_headers - t0;
    if (took < 250 || took > 600) {
        fail_msg("408 after %lld ms, want about 300", (long long)took);
    }
    /* The client still holds its half open: the server resets the stream later. */
    assert_true(t_run(t_closed, st, 2000));
    t_check_problem(st, 408, "request_timeout");
    assert_true(st->rst);
    assert_true(st->t_close - t0 < 1500);

    /* Headers only, no body yet. */
    r.blen = 0;
    r.method = "GET";
    r.path = "/hello";
    st = t_submit(fx.c, &r);
    assert_true(t_run(t_closed, st, 2000));
    t_check_problem(st, 408, "request_timeout");
    /* The connection survives. */
    st = t_get("/hello");
    assert_int_equal(st->status, 200);
    assert_int_equal(h2s_connections(fx.srv), 1);
    assert_int_equal(h2s_inflight(fx.srv), 0);
}

static void
t_async(void **state)
{
    int64_t t0 = t_now_ms();
    t_stream_t *st = t_get("/slow");

    assert_int_equal(st->status, 200);
    assert_string_equal(st->body, "slow");
    assert_true(st->t_close - t0 >= 90);
    assert_int_equal(t_slow_rc, PHR_OK);
    assert_int_equal(t_slow_was_closed, 0);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 1);
}

static void
t_async_reset(void **state)
{
    t_reqspec_t r = {.method = "GET", .path = "/slow"};
    size_t one = 1;
    t_stream_t *st = t_submit(fx.c, &r);

    assert_true(t_run(t_inflight_is, &one, 1000));
    assert_int_equal(nghttp2_submit_rst_stream(fx.c->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL),
                     0);
    assert_true(t_run(t_flag, &t_slow_answered, 1000));
    assert_true(st->closed);
    assert_int_equal(st->status, 0);
    assert_int_equal(t_slow_was_closed, 1);
    assert_int_equal(t_slow_rc, PHR_ECLOSED);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 1); /* the request was freed exactly once */
    assert_int_equal(t_get("/hello")->status, 200);
}

static void
t_client_disconnects_async(void **state)
{
    t_reqspec_t r = {.method = "GET", .path = "/slow"};
    size_t one = 1;

    t_submit(fx.c, &r);
    assert_true(t_run(t_inflight_is, &one, 1000));
    close(fx.c->fd);
    fx.c->fd = -1;
    t_client_t *c = fx.c;
    fx.c = NULL;
    assert_true(t_run(t_conns_zero, NULL, 1000));
    assert_int_equal(h2s_inflight(fx.srv), 1); /* the handler still owns it */
    assert_true(t_run(t_flag, &t_slow_answered, 1000));
    assert_int_equal(t_slow_rc, PHR_ECLOSED);
    assert_int_equal(t_slow_was_closed, 1);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 1);
    fx.c = c;
}

static void
t_many_streams(void **state)
{
    char paths[100][48];
    t_stream_t *sts[100];

    for (int i = 0; i < 100; i++) {
        if (i % 2 == 0) {
            snprintf(paths[i], sizeof(paths[i]), "/items/%d?n=%d", i, i);
        } else {
            snprintf(paths[i], sizeof(paths[i]), "/slow");
        }
        t_reqspec_t r = {.method = "GET", .path = paths[i]};
        sts[i] = t_submit(fx.c, &r);
    }
    assert_true(t_run(t_all_closed, NULL, 5000));
    for (int i = 0; i < 100; i++) {
        char want[128];
        assert_int_equal(sts[i]->status, 200);
        if (i % 2 == 0) {
            snprintf(want, sizeof(want), "id=%d q=n=%d path=/items/%d route=/items/{id}", i, i, i);
        } else {
            snprintf(want, sizeof(want), "slow");
        }
        assert_string_equal(sts[i]->body, want);
    }
    assert_int_equal(t_slow_answered, 50);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 50);
}

static void
t_garbage_preface(void **state)
{
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage";

    /* Bypass the client session: raw bytes instead of the preface. */
    assert_int_equal(send(fx.c->fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL),
                     (ssize_t)sizeof(junk) - 1);
    assert_true(t_run(t_eof, fx.c, 2000));
    assert_int_equal(h2s_connections(fx.srv), 0);
}

/* Sends the client preface and SETTINGS, then |frame| raw. */
static void
t_raw_after_preface(const uint8_t *frame, size_t len)
{
    t_client_io(fx.c); /* preface + SETTINGS */
    assert_int_equal(fx.c->plen, 0);
    assert_int_equal(send(fx.c->fd, frame, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
t_bad_frame(void **state)
{
    /* SETTINGS on stream 1: connection error PROTOCOL_ERROR. */
    static const uint8_t bad[] = {0, 0, 6, 0x4, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0, 1};

    t_raw_after_preface(bad, sizeof(bad));
    assert_true(t_run(t_eof, fx.c, 2000));
    assert_true(fx.c->goaway);
    assert_int_equal(fx.c->goaway_err, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(h2s_connections(fx.srv), 0);
}

static void
t_oversized_frame(void **state)
{
    /* A DATA frame header announcing 16 MiB - 1 (beyond SETTINGS_MAX_FRAME_SIZE). */
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0x0, 0, 0, 0, 0, 1, 'x', 'y'};

    t_raw_after_preface(bad, sizeof(bad));
    assert_true(t_run(t_eof, fx.c, 2000));
    assert_true(fx.c->goaway);
    assert_int_equal(fx.c->goaway_err, NGHTTP2_FRAME_SIZE_ERROR);
    assert_int_equal(h2s_connections(fx.srv), 0);
}

static void
t_truncated_frame(void **state)
{
    /* HEADERS for stream 1 announcing 100 bytes, only 3 sent: the idle timer ends it. */
    static const uint8_t cut[] = {0, 0, 100, 0x1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84};
    int64_t t0 = t_now_ms();

    t_raw_after_preface(cut, sizeof(cut));
    assert_true(t_run(t_eof, fx.c, 3000));
    assert_true(t_now_ms() - t0 >= 400);
    assert_int_equal(h2s_connections(fx.srv), 0);
}

static void
t_idle_close(void **state)
{
    assert_int_equal(t_get("/hello")->status, 200);
    int64_t t0 = t_now_ms();
    assert_true(t_run(t_eof, fx.c, 3000));
    int64_t took = t_now_ms() - t0;
    if (took < 400 || took > 1500) {
        fail_msg("idle close after %lld ms, want about 500", (long long)took);
    }
    assert_true(fx.c->goaway);
    assert_int_equal(fx.c->goaway_err, NGHTTP2_NO_ERROR);
    assert_int_equal(h2s_connections(fx.srv), 0);
}

static void
t_done_cb(void *ud)
{
    t_done_calls++;
    t_done_slow_seen = t_slow_answered;
    t_done_at = t_now_ms();
    (*(int *)ud)++;
}

static void
t_shutdown_drains(void **state)
{
    t_reqspec_t r = {.method = "GET", .path = "/slow"};
    size_t one = 1;
    int done = 0;
    t_stream_t *st = t_submit(fx.c, &r);

    assert_true(t_run(t_inflight_is, &one, 1000));
    h2s_shutdown(fx.srv, 2000, t_done_cb, &done);
    h2s_shutdown(fx.srv, 10, t_done_cb, &done); /* no effect */
    assert_true(t_run(t_flag, &done, 2000));
    assert_int_equal(t_done_slow_seen, 1); /* done only after the answer */
    /* The answer was written before the close: the client reads it, then EOF. */
    assert_true(t_run(t_eof, fx.c, 1000));
    assert_true(fx.c->goaway);
    assert_int_equal(fx.c->goaway_err, NGHTTP2_NO_ERROR);
    assert_true(st->closed);
    assert_int_equal(st->status, 200);
    assert_string_equal(st->body, "slow");
    assert_int_equal(t_slow_rc, PHR_OK);
    assert_int_equal(h2s_connections(fx.srv), 0);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    /* Nothing else fires later (the drain timer is cancelled, done runs once). */
    t_run(NULL, NULL, 100);
    assert_int_equal(t_done_calls, 1);
}

static void
t_shutdown_idle(void **state)
{
    int done = 0;

    assert_int_equal(t_get("/hello")->status, 200);
    h2s_shutdown(fx.srv, 5000, t_done_cb, &done);
    int64_t t0 = t_now_ms();
    assert_true(t_run(t_flag, &done, 1000));
    assert_true(t_now_ms() - t0 < 400); /* not the idle timeout, not the drain budget */
    assert_true(fx.c->goaway);
    assert_int_equal(h2s_connections(fx.srv), 0);
}

static void
t_shutdown_timeout(void **state)
{
    t_reqspec_t r = {.method = "GET", .path = "/never"};
    size_t one = 1;
    int done = 0;

    t_submit(fx.c, &r);
    assert_true(t_run(t_inflight_is, &one, 1000));
    assert_non_null(t_never_req);
    int64_t t0 = t_now_ms();
    h2s_shutdown(fx.srv, 200, t_done_cb, &done);
    assert_true(t_run(t_flag, &done, 2000));
    int64_t took = t_now_ms() - t0;
    assert_true(took >= 150 && took < 1000);
    assert_int_equal(h2s_connections(fx.srv), 0);
    assert_true(t_run(t_eof, fx.c, 1000));
    /* The handler answers late: the orphaned request is freed, the count fixed. */
    assert_int_equal(h2s_inflight(fx.srv), 1);
    assert_true(h2s_req_closed(t_never_req));
    assert_int_equal(h2s_respond(t_never_req, 200, "text/plain", "late", 4), PHR_ECLOSED);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    t_run(NULL, NULL, 50);
    assert_int_equal(t_done_calls, 1);
}

static int
t_big_done(const void *arg)
{
    const t_stream_t *st = arg;
    return st->closed;
}

/* A new client with 16 MiB windows, so flow control alone does not pace the server. */
static void
t_wide_client(void)
{
    int sv[2];

    t_client_free(fx.c);
    fx.c = NULL;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(t_run(t_conns_zero, NULL, 1000));
    assert_int_equal(h2s_adopt_fd(fx.srv, sv[0], "unix:3"), PHR_OK);
    fx.c = t_client_new(sv[1], 16 * 1024 * 1024);
    t_run(NULL, NULL, 50);
}

static void
t_stream_whole(void **state)
{
    t_wide_client();
    t_gen_total = 6 * 1024 * 1024 + 123;
    t_reqspec_t r = {.method = "GET", .path = "/stream"};
    t_stream_t *st = t_submit(fx.c, &r);

    /* A client that reads late: the producer must wait, not pile up the body. */
    fx.c->paused = 1;
    t_run(NULL, NULL, 200);
    assert_true(t_gen_sent < t_gen_total);
    fx.c->paused = 0;
    assert_true(t_run(t_closed, st, 10000));
    assert_int_equal(st->status, 200);
    assert_string_equal(st->ctype, "application/x-ndjson");
    assert_int_equal(st->blen, t_gen_total);
    for (size_t i = 0; i < st->blen; i += 4099) {
        assert_int_equal(st->body[i], 'a' + i % 26);
    }
    assert_int_equal(t_gen_ended, 1);
    assert_true(t_gen_max_buffered < 256 * 1024 + 16384);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 1);
    assert_int_equal(t_get("/hello")->status, 200);
}

static void
t_stream_reset(void **state)
{
    t_wide_client();
    t_gen_total = 64 * 1024 * 1024;
    t_reqspec_t r = {.method = "GET", .path = "/stream"};
    t_stream_t *st = t_submit(fx.c, &r);

    fx.c->paused = 1;
    t_run(NULL, NULL, 100);
    assert_int_equal(t_gen_ended, 0);
    assert_int_equal(h2s_inflight(fx.srv), 1);
    assert_int_equal(nghttp2_submit_rst_stream(fx.c->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL),
                     0);
    fx.c->paused = 0;
    /* The waiting producer is woken, learns the client left, and ends: freed once. */
    assert_true(t_run(t_flag, &t_gen_ended, 2000));
    assert_int_equal(t_gen_rc, PHR_ECLOSED);
    assert_true(t_gen_sent < t_gen_total);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(t_cleanups, 1);
    assert_int_equal(t_get("/hello")->status, 200);
}

/* A peer trickling its preface byte by byte is closed: bytes are not frames. */
/* Replaces the client with one whose windows stay closed until the test opens them. */
static void
t_zero_window_client(void)
{
    int sv[2];

    t_client_free(fx.c);
    fx.c = NULL;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(t_run(t_conns_zero, NULL, 1000));
    assert_int_equal(h2s_adopt_fd(fx.srv, sv[0], "unix:4"), PHR_OK);
    fx.c = t_client_new(sv[1], T_ZERO_WINDOW);
    t_run(NULL, NULL, 50);
}

/*
 * A client that never opens its window holds a whole answer: the stream is
 * reset (CANCEL) once it sent nothing for a request timeout (300 ms here),
 * not kept forever; the connection itself stays usable.
 */
static void
t_window_stall_reset(void **state)
{
    t_zero_window_client();
    t_big_len = 4096;
    t_reqspec_t r = {.method = "GET", .path = "/big"};
    t_stream_t *st = t_submit(fx.c, &r);

    assert_true(t_run(t_has_headers, st, 1000));
    assert_int_equal(st->status, 200);
    assert_false(st->closed);
    assert_true(t_run(t_closed, st, 2000));
    int64_t waited = st->t_close - st->t_headers;
    assert_true(st->rst);
    assert_int_equal(st->close_err, NGHTTP2_CANCEL);
    assert_int_equal(st->blen, 0);
    if (waited < 250 || waited > 1000) {
        fail_msg("reset after %lld ms; expected one to two request timeouts (300 ms)",
                 (long long)waited);
    }
    assert_int_equal(h2s_connections(fx.srv), 1);
    assert_false(fx.c->goaway);

    /* A streamed answer in the same state: reset, and its producer learns and ends. */
    t_gen_total = 1024 * 1024;
    r.path = "/stream";
    st = t_submit(fx.c, &r);
    assert_true(t_run(t_flag, &t_gen_ended, 2000));
    assert_int_equal(t_gen_rc, PHR_ECLOSED);
    assert_true(t_run(t_closed, st, 1000));
    assert_int_equal(st->close_err, NGHTTP2_CANCEL);
    assert_int_equal(h2s_inflight(fx.srv), 0);
    assert_int_equal(h2s_connections(fx.srv), 1);
}

/*
 * A slow client that opens its window a little at a time keeps its answer
 * for as long as it takes (here over four request timeouts): only a
 * stalled stream is reset.
 */
static void
t_window_slow_kept(void **state)
{
    t_zero_window_client();
    t_big_len = 12 * 1024;
    t_reqspec_t r = {.method = "GET", .path = "/big"};
    t_stream_t *st = t_submit(fx.c, &r);
    int64_t start = t_now_ms();

    assert_true(t_run(t_has_headers, st, 1000));
    while (!st->closed && t_now_ms() - start < 5000) {
        assert_int_equal(nghttp2_submit_window_update(fx.c->s, NGHTTP2_FLAG_NONE, st->id, 1024), 0);
        t_run(t_closed, st, 120);
    }
    assert_true(st->closed);
    assert_false(st->rst);
    assert_int_equal(st->close_err, NGHTTP2_NO_ERROR);
    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, t_big_len);
    assert_true(t_now_ms() - start > 4 * 300);
    for (size_t i = 0; i < t_big_len; i += 97) {
        assert_int_equal(st->body[i], (char)('a' + i % 26));
    }
}

static void
t_slow_preface(void **state)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    int sv[2], closed = 0;

    t_run(NULL, NULL, 20); /* the regular client sends its preface */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(h2s_adopt_fd(fx.srv, sv[0], "unix:slow"), PHR_OK);
    assert_int_equal(h2s_connections(fx.srv), 2);
    /* one byte every 100 ms: 2.4 s in all, against a 300 ms first-frame deadline */
    for (size_t i = 0; i + 1 < sizeof(preface) && !closed; i++) {
        if (send(sv[1], preface + i, 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
            break;
        }
        int64_t until = t_now_ms() + 100;
        while (t_now_ms() < until) {
            event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            t_client_io(fx.c);
            t_sleep_us(2000);
        }
        closed = h2s_connections(fx.srv) == 1;
    }
    assert_true(closed);
    close(sv[1]);
    /* the well-behaved client was not harmed */
    assert_int_equal(t_get("/hello")->status, 200);
}

static void
t_backpressure(void **state)
{
    static const uint8_t wu[13] = {0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    size_t written = 0;
    int blocked = 0;

    /* A fresh client with 16 MiB windows, so flow control does not stop the server. */
    t_client_free(fx.c);
    fx.c = NULL;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(t_run(t_conns_zero, NULL, 1000));
    assert_int_equal(h2s_adopt_fd(fx.srv, sv[0], "unix:2"), PHR_OK);
    fx.c = t_client_new(sv[1], 16 * 1024 * 1024);
    t_run(NULL, NULL, 50);

    t_big_len = 8 * 1024 * 1024;
    t_reqspec_t r = {.method = "GET", .path = "/big"};
    t_stream_t *st = t_submit(fx.c, &r);
    fx.c->paused = 1;
    t_run(NULL, NULL, 300);
    assert_int_equal(fx.c->plen, 0);
    assert_int_equal(nghttp2_session_want_write(fx.c->s), 0);

    /*
     * The client does not read. The server must stop reading too: harmless
     * WINDOW_UPDATE frames (increment 1) soon block in the socket. Without
     * backpressure the server would keep consuming them.
     */
    while (written < 16 * 1024 * 1024) {
        ssize_t n = send(fx.c->fd, wu, sizeof(wu), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            t_run(NULL, NULL, 20);
            n = send(fx.c->fd, wu, sizeof(wu), MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                blocked = 1;
                break;
            }
        }
        assert_int_equal(n, (ssize_t)sizeof(wu));
        written += (size_t)n;
        if (written % (64 * 1024) < sizeof(wu)) {
            event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        }
    }
    if (!blocked) {
        fail_msg("server kept reading %zu bytes while its output was stuck", written);
    }
    assert_true(written < 4 * 1024 * 1024);
    assert_int_equal(h2s_connections(fx.srv), 1);
    assert_false(st->closed);

    /* Reading again: the whole answer arrives and the connection still works. */
    fx.c->paused = 0;
    assert_true(t_run(t_big_done, st, 10000));
    assert_int_equal(st->status, 200);
    assert_int_equal(st->blen, t_big_len);
    for (size_t i = 0; i < t_big_len; i += 4099) {
        assert_int_equal(st->body[i], (char)('a' + i % 26));
    }
    assert_int_equal(t_get("/hello")->status, 200);
}

/* Connects a client over TCP to 127.0.0.1:|port|. */
static void
t_connect_tcp(int port)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    fx.c = t_client_new(fd, 0);
}

/* A port that was free a moment ago (bind to 0, read it, close). */
static int
t_free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void
t_listen_tcp(void **state)
{
    t_client_free(fx.c);
    fx.c = NULL;
    assert_true(t_run(t_conns_zero, NULL, 1000));
    int port = t_free_port();
    assert_int_equal(h2s_listen(fx.srv, "127.0.0.1", port), PHR_OK);
    assert_int_equal(h2s_port(fx.srv), port);
    t_connect_tcp(port);
    t_stream_t *st = t_get("/hello");
    assert_int_equal(st->status, 200);
    assert_int_equal(strncmp(t_peer, "127.0.0.1:", 10), 0);
    assert_int_equal(h2s_connections(fx.srv), 1);

    /* After shutdown the listener is gone. */
    int done = 0;
    h2s_shutdown(fx.srv, 1000, t_done_cb, &done);
    assert_int_equal(h2s_port(fx.srv), -1);
    assert_true(t_run(t_flag, &done, 1000));
    assert_int_equal(h2s_listen(fx.srv, "not an address", 0), PHR_EINVAL);
}

/* h2s.h: "port 0 picks one; see h2s_port". */
static void
t_listen_port0(void **state)
{
    t_client_free(fx.c);
    fx.c = NULL;
    assert_true(t_run(t_conns_zero, NULL, 1000));
    int rc = h2s_listen(fx.srv, "127.0.0.1", 0);
    if (rc != PHR_OK) {
        fail_msg("h2s_listen(\"127.0.0.1\", 0) = %d (%s), want PHR_OK", rc, phr_err_str(rc));
    }
    int port = h2s_port(fx.srv);
    assert_true(port > 0 && port < 65536);
    t_connect_tcp(port);
    assert_int_equal(t_get("/hello")->status, 200);
}

/*
 * h2s.h: h2s_server_free orphans requests held by handlers, and a handler
 * may answer later (h2s_respond returns PHR_ECLOSED and frees the request).
 * svc.c does exactly this: kv_free/db_pool_free run pending callbacks after
 * h2s_server_free. Runs in a child: a use-after-free aborts it under ASan.
 */
static void
t_respond_after_server_free(void **state)
{
    t_reqspec_t r = {.method = "GET", .path = "/never"};
    size_t one = 1;

    t_submit(fx.c, &r);
    assert_true(t_run(t_inflight_is, &one, 1000));
    assert_non_null(t_never_req);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        h2s_server_free(fx.srv);
        int rc = h2s_respond(t_never_req, 200, "text/plain", "late", 4);
        _exit(rc == PHR_ECLOSED ? 0 : 3);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    /* Parent: answer normally so nothing leaks here. */
    assert_int_equal(h2s_respond(t_never_req, 200, "text/plain", "x", 1), PHR_OK);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fail_msg("answering an orphaned request after h2s_server_free failed (status 0x%x): "
                 "h2s_respond touches the freed server",
                 st);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_route_errors, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_get_hello, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_request_memory, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_request_id, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_params_and_query, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_not_found, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_method_not_allowed, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_post_echo, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_too_large, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_headers_too_large, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_request_timeout, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_async, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_async_reset, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_client_disconnects_async, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_many_streams, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_garbage_preface, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_bad_frame, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_oversized_frame, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_truncated_frame, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_idle_close, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_shutdown_drains, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_shutdown_idle, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_shutdown_timeout, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_backpressure, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_stream_whole, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_stream_reset, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_window_stall_reset, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_window_slow_kept, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_slow_preface, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_listen_tcp, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_listen_port0, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(t_respond_after_server_free, t_setup, t_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    log_init("test_h2s", getenv("T_LOG") ? getenv("T_LOG") : "error");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
