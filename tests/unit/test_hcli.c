/*
 * test_hcli.c - unit tests of common/hcli.c against real HTTP/2 servers.
 *
 * Servers used:
 *   - nghttpd (Debian package nghttp2-server), started by the test on a free
 *     loopback port with --no-tls -d <tmpdir>. Path from HCLI_TEST_NGHTTPD,
 *     default /usr/sbin/nghttpd, then /usr/bin/nghttpd. Missing = failure.
 *   - an in-process h2c server (nghttp2 server session on the same event
 *     base) that records request headers and can hold, GOAWAY or send big
 *     bodies;
 *   - plain listening sockets that never answer, and ports with nothing
 *     listening.
 * No other environment variables are read.
 */
#include <arpa/inet.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "err.h"
#include "hcli.h"

#define T_SECRET "s3cret-credential-value"
#define T_HELLO "hello h2\n"

/* ---- helpers ---------------------------------------------------------- */

/* Runs |base| until *counter >= target or |ms| pass. */
static void
t_run_until(struct event_base *base, const int *counter, int target, int ms)
{
    int64_t end = t_now_ms() + ms;
    while (*counter < target && t_now_ms() < end) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static void
t_run_for(struct event_base *base, int ms)
{
    int never = 0;
    t_run_until(base, &never, 1, ms);
}

static int
t_free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static int
t_can_connect(int port)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

/* A listening socket that never accepts or answers (the kernel completes the handshake). */
static int
t_silent_listener(int port)
{
    struct sockaddr_in sin;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

/* ---- results ------------------------------------------------------------ */

typedef struct {
    int calls;
    int rc;
    int status;
    char *body;
    size_t body_len;
    char ctype[64];
    int64_t at_ms;
} t_res_t;

static int t_in_submit;    /* set around hcli_request */
static int t_cb_in_submit; /* a callback ran inside hcli_request: wrong */
static int t_done;         /* callbacks so far */

static void
t_res_reset(t_res_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].body);
    }
    memset(r, 0, n * sizeof(*r));
}

static void
t_cb(int rc, const hcli_resp_t *resp, void *ud)
{
    t_res_t *r = ud;
    if (t_in_submit) {
        t_cb_in_submit = 1;
    }
    r->calls++;
    r->rc = rc;
    r->at_ms = t_now_ms();
    if (rc == PHR_OK) {
        assert_non_null(resp);
        r->status = resp->status;
        free(r->body);
        r->body = malloc(resp->body_len + 1);
        memcpy(r->body, resp->body, resp->body_len + 1);
        r->body_len = resp->body_len;
        if (resp->content_type != NULL) {
            snprintf(r->ctype, sizeof(r->ctype), "%s", resp->content_type);
        }
    }
    t_done++;
}

static int
t_req(hcli_t *cli, const char *method, const char *path, const char *ct, const char *body,
      const char *rid, t_res_t *res)
{
    int rc;
    t_in_submit = 1;
    rc = hcli_request(cli, method, path, ct, body, body != NULL ? strlen(body) : 0, rid, t_cb, res);
    t_in_submit = 0;
    return rc;
}

static hcli_t *
t_client(struct event_base *base, int port, int timeout_ms)
{
    hcli_config_t cfg = {"127.0.0.1", port, "records", T_SECRET, timeout_ms};
    hcli_t *cli = hcli_create(base, &cfg);
    assert_non_null(cli);
    t_done = 0;
    t_cb_in_submit = 0;
    return cli;
}

/* ---- nghttpd ------------------------------------------------------------ */

static pid_t t_nghttpd_pid = -1;
static char t_docroot[64];

static const char *
t_nghttpd_path(void)
{
    const char *env = getenv("HCLI_TEST_NGHTTPD");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    if (access("/usr/sbin/nghttpd", X_OK) == 0) {
        return "/usr/sbin/nghttpd";
    }
    return "/usr/bin/nghttpd";
}

static void
t_docroot_make(void)
{
    char path[128];
    FILE *f;
    if (t_docroot[0] != '\0') {
        return;
    }
    snprintf(t_docroot, sizeof(t_docroot), "/tmp/hcli-test-XXXXXX");
    assert_non_null(mkdtemp(t_docroot));
    snprintf(path, sizeof(path), "%s/hello.txt", t_docroot);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(T_HELLO, f);
    fclose(f);
}

static void
t_nghttpd_start(int port)
{
    const char *bin = t_nghttpd_path();
    char portstr[16];
    pid_t pid;

    if (access(bin, X_OK) != 0) {
        fail_msg("nghttpd not found at %s (apt-get install nghttp2-server)", bin);
    }
    t_docroot_make();
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl(bin, "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", t_docroot, portstr,
              (char *)NULL);
        _exit(127);
    }
    t_nghttpd_pid = pid;
    for (int i = 0; i < 500 && !t_can_connect(port); i++) {
        t_sleep_ms(10);
    }
    assert_true(t_can_connect(port));
}

static void
t_nghttpd_kill(void)
{
    if (t_nghttpd_pid > 0) {
        kill(t_nghttpd_pid, SIGKILL);
        waitpid(t_nghttpd_pid, NULL, 0);
        t_nghttpd_pid = -1;
    }
}

static int
t_teardown(void **state)
{
    t_nghttpd_kill();
    return 0;
}

/* ---- in-process h2c test server --------------------------------------- */

typedef enum { TSRV_ECHO, TSRV_HOLD, TSRV_BIG } tsrv_mode_t;

#define TSRV_MAX_CONNS 16
#define TSRV_MAX_HDRS 32
#define TSRV_MAX_HELD 256
#define TSRV_MAX_LOG 64

typedef struct tsrv tsrv_t;
typedef struct tsrv_conn tsrv_conn_t;

typedef struct tsrv_stream {
    int32_t id;
    tsrv_conn_t *conn;
    char path[32];
    char body[4096];
    size_t len;
    size_t off;
    struct tsrv_stream *prev, *next;
} tsrv_stream_t;

struct tsrv_conn {
    tsrv_t *srv;
    struct bufferevent *bev;
    nghttp2_session *session;
    int deleting;
    int idx;     /* 1 for the first accepted connection, ... */
    int shut_wr; /* close the sending side once the output is written */
};

struct tsrv {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    tsrv_mode_t mode;
    size_t big_size;
    int accepted;
    int requests;
    int cancels; /* RST_STREAM(CANCEL) received */
    int nlog;    /* complete requests received, in order: */
    int log_conn[TSRV_MAX_LOG];
    char log_path[TSRV_MAX_LOG][32];
    char log_body[TSRV_MAX_LOG][32];
    tsrv_conn_t *conns[TSRV_MAX_CONNS];
    tsrv_stream_t *streams;
    tsrv_stream_t *held[TSRV_MAX_HELD];
    int nheld;
    int nhdr;
    char hname[TSRV_MAX_HDRS][64];
    char hval[TSRV_MAX_HDRS][256];
};

static void
tsrv_stream_free(tsrv_t *srv, tsrv_stream_t *st)
{
    for (int i = 0; i < srv->nheld; i++) {
        if (srv->held[i] == st) {
            memmove(&srv->held[i], &srv->held[i + 1],
                    (size_t)(srv->nheld - i - 1) * sizeof(srv->held[0]));
            srv->nheld--;
            break;
        }
    }
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        srv->streams = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    free(st);
}

static void
tsrv_conn_free(tsrv_conn_t *c)
{
    tsrv_t *srv = c->srv;
    tsrv_stream_t *st, *nx;

    c->deleting = 1;
    nghttp2_session_del(c->session);
    bufferevent_free(c->bev);
    for (st = srv->streams; st != NULL; st = nx) {
        nx = st->next;
        if (st->conn == c) {
            tsrv_stream_free(srv, st);
        }
    }
    for (int i = 0; i < TSRV_MAX_CONNS; i++) {
        if (srv->conns[i] == c) {
            srv->conns[i] = NULL;
        }
    }
    free(c);
}

static void
tsrv_send(tsrv_conn_t *c)
{
    if (nghttp2_session_send(c->session) != 0) {
        tsrv_conn_free(c);
    }
}

static ssize_t
tsrv_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    tsrv_conn_t *c = ud;
    bufferevent_write(c->bev, data, len);
    return (ssize_t)len;
}

static ssize_t
tsrv_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
             nghttp2_data_source *src, void *ud)
{
    tsrv_stream_t *st = src->ptr;
    tsrv_t *srv = st->conn->srv;
    size_t total, n;

    if (srv->mode == TSRV_BIG) {
        total = srv->big_size;
        n = total - st->off < len ? total - st->off : len;
        memset(buf, 'x', n);
    } else {
        const char *b = st->len > 0 ? st->body : "ok";
        total = st->len > 0 ? st->len : 2;
        n = total - st->off < len ? total - st->off : len;
        memcpy(buf, b + st->off, n);
    }
    st->off += n;
    if (st->off == total) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void
tsrv_respond(tsrv_stream_t *st)
{
    nghttp2_nv nva[2] = {
        {(uint8_t *)(uintptr_t) ":status", (uint8_t *)(uintptr_t) "200", 7, 3, 0},
        {(uint8_t *)(uintptr_t) "content-type", (uint8_t *)(uintptr_t) "text/plain", 12, 10, 0},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = st;
    prd.read_callback = tsrv_read_cb;
    nghttp2_submit_response(st->conn->session, st->id, nva, 2, &prd);
}

static int
tsrv_begin_headers_cb(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    tsrv_conn_t *c = ud;
    tsrv_t *srv = c->srv;
    tsrv_stream_t *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    st = calloc(1, sizeof(*st));
    st->id = frame->hd.stream_id;
    st->conn = c;
    st->next = srv->streams;
    if (srv->streams != NULL) {
        srv->streams->prev = st;
    }
    srv->streams = st;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    srv->nhdr = 0;
    return 0;
}

static int
tsrv_header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
               const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    tsrv_t *srv = ((tsrv_conn_t *)ud)->srv;
    tsrv_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st != NULL && namelen == 5 && memcmp(name, ":path", 5) == 0) {
        snprintf(st->path, sizeof(st->path), "%.*s", (int)valuelen, (const char *)value);
    }
    if (srv->nhdr < TSRV_MAX_HDRS) {
        snprintf(srv->hname[srv->nhdr], sizeof(srv->hname[0]), "%.*s", (int)namelen,
                 (const char *)name);
        snprintf(srv->hval[srv->nhdr], sizeof(srv->hval[0]), "%.*s", (int)valuelen,
                 (const char *)value);
        srv->nhdr++;
    }
    return 0;
}

static int
tsrv_data_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
             void *ud)
{
    tsrv_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (st != NULL && st->len + len <= sizeof(st->body)) {
        memcpy(st->body + st->len, data, len);
        st->len += len;
    }
    return 0;
}

static int
tsrv_frame_recv_cb(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    tsrv_t *srv = ((tsrv_conn_t *)ud)->srv;
    tsrv_stream_t *st;

    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code == NGHTTP2_CANCEL) {
        srv->cancels++;
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    srv->requests++;
    if (srv->nlog < TSRV_MAX_LOG) {
        srv->log_conn[srv->nlog] = st->conn->idx;
        snprintf(srv->log_path[srv->nlog], sizeof(srv->log_path[0]), "%s", st->path);
        snprintf(srv->log_body[srv->nlog], sizeof(srv->log_body[0]), "%.*s", (int)st->len,
                 st->body);
        srv->nlog++;
    }
    if (srv->mode == TSRV_HOLD && srv->nheld < TSRV_MAX_HELD) {
        srv->held[srv->nheld++] = st;
    } else {
        tsrv_respond(st);
    }
    return 0;
}

static int
tsrv_stream_close_cb(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    tsrv_conn_t *c = ud;
    tsrv_stream_t *st;

    if (c->deleting) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, id);
    if (st != NULL) {
        tsrv_stream_free(c->srv, st);
    }
    return 0;
}

static void
tsrv_readcb(struct bufferevent *bev, void *ud)
{
    tsrv_conn_t *c = ud;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    ssize_t rv = nghttp2_session_mem_recv(c->session, evbuffer_pullup(in, -1), len);
    if (rv < 0) {
        tsrv_conn_free(c);
        return;
    }
    evbuffer_drain(in, (size_t)rv);
    tsrv_send(c);
}

static void
tsrv_writecb(struct bufferevent *bev, void *ud)
{
    tsrv_conn_t *c = ud;
    if (c->shut_wr) {
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        return;
    }
    tsrv_send(c);
}

static void
tsrv_eventcb(struct bufferevent *bev, short events, void *ud)
{
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        tsrv_conn_free(ud);
    }
}

static void
tsrv_accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
               void *ud)
{
    tsrv_t *srv = ud;
    tsrv_conn_t *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256}};

    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, tsrv_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, tsrv_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, tsrv_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, tsrv_data_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, tsrv_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, tsrv_stream_close_cb);
    nghttp2_session_server_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
    bufferevent_setcb(c->bev, tsrv_readcb, tsrv_writecb, tsrv_eventcb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    for (int i = 0; i < TSRV_MAX_CONNS; i++) {
        if (srv->conns[i] == NULL) {
            srv->conns[i] = c;
            break;
        }
    }
    srv->accepted++;
    c->idx = srv->accepted;
    tsrv_send(c);
}

static tsrv_t *
tsrv_new(struct event_base *base, tsrv_mode_t mode)
{
    tsrv_t *srv = calloc(1, sizeof(*srv));
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    assert_non_null(srv);
    srv->base = base;
    srv->mode = mode;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->lis = evconnlistener_new_bind(base, tsrv_accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                       (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(srv->lis);
    assert_int_equal(getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&sin, &len),
                     0);
    srv->port = ntohs(sin.sin_port);
    return srv;
}

static void
tsrv_free(tsrv_t *srv)
{
    for (int i = 0; i < TSRV_MAX_CONNS; i++) {
        if (srv->conns[i] != NULL) {
            tsrv_conn_free(srv->conns[i]);
        }
    }
    evconnlistener_free(srv->lis);
    free(srv);
}

/* Answers the held stream |id| (0 = all held streams). */
static void
tsrv_release(tsrv_t *srv, int32_t id)
{
    tsrv_conn_t *touched[TSRV_MAX_HELD];
    int nt = 0;

    for (int i = 0; i < srv->nheld;) {
        tsrv_stream_t *st = srv->held[i];
        if (id != 0 && st->id != id) {
            i++;
            continue;
        }
        memmove(&srv->held[i], &srv->held[i + 1],
                (size_t)(srv->nheld - i - 1) * sizeof(srv->held[0]));
        srv->nheld--;
        tsrv_respond(st);
        touched[nt++] = st->conn;
    }
    for (int i = 0; i < nt; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) {
            seen |= touched[j] == touched[i];
        }
        if (!seen) {
            tsrv_send(touched[i]);
        }
    }
}

static const char *
tsrv_header(const tsrv_t *srv, const char *name)
{
    for (int i = 0; i < srv->nhdr; i++) {
        if (strcmp(srv->hname[i], name) == 0) {
            return srv->hval[i];
        }
    }
    return NULL;
}

/* ---- tests against nghttpd --------------------------------------------- */

static void
test_hcli_nghttpd_get(void **state)
{
    struct event_base *base = event_base_new();
    int port = t_free_port();
    t_res_t res[2];
    memset(res, 0, sizeof(res));
    t_nghttpd_start(port);

    hcli_t *cli = t_client(base, port, 3000);
    assert_int_equal(t_req(cli, "GET", "/hello.txt", NULL, NULL, "rid-1", &res[0]), PHR_OK);
    assert_int_equal(t_req(cli, "GET", "/missing.txt", NULL, NULL, NULL, &res[1]), PHR_OK);
    assert_int_equal(t_done, 0);
    t_run_until(base, &t_done, 2, 5000);

    assert_int_equal(t_cb_in_submit, 0);
    assert_int_equal(res[0].calls, 1);
    assert_int_equal(res[0].rc, PHR_OK);
    assert_int_equal(res[0].status, 200);
    assert_int_equal(res[0].body_len, strlen(T_HELLO));
    assert_string_equal(res[0].body, T_HELLO);
    assert_int_equal(res[1].calls, 1);
    assert_int_equal(res[1].rc, PHR_OK);
    assert_int_equal(res[1].status, 404);

    hcli_free(cli);
    t_res_reset(res, 2);
    t_nghttpd_kill();
    event_base_free(base);
}

#define T_CONC 200

static void
test_hcli_nghttpd_concurrent(void **state)
{
    struct event_base *base = event_base_new();
    int port = t_free_port();
    t_res_t *res = calloc(T_CONC, sizeof(*res));
    t_nghttpd_start(port);

    hcli_t *cli = t_client(base, port, 5000);
    for (int i = 0; i < T_CONC; i++) {
        assert_int_equal(t_req(cli, "GET", "/hello.txt", NULL, NULL, NULL, &res[i]), PHR_OK);
    }
    t_run_until(base, &t_done, T_CONC, 10000);
    assert_int_equal(t_done, T_CONC);
    for (int i = 0; i < T_CONC; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].rc, PHR_OK);
        assert_int_equal(res[i].status, 200);
        assert_string_equal(res[i].body, T_HELLO);
    }
    hcli_free(cli);
    t_res_reset(res, T_CONC);
    free(res);
    t_nghttpd_kill();
    event_base_free(base);
}

static void
test_hcli_nghttpd_killed_then_reconnect(void **state)
{
    struct event_base *base = event_base_new();
    int port = t_free_port();
    t_res_t res[3];
    memset(res, 0, sizeof(res));
    t_nghttpd_start(port);

    hcli_t *cli = t_client(base, port, 5000);
    assert_int_equal(t_req(cli, "GET", "/hello.txt", NULL, NULL, NULL, &res[0]), PHR_OK);
    t_run_until(base, &t_done, 1, 5000);
    assert_int_equal(res[0].rc, PHR_OK);

    /* Freeze the server so the next request stays in flight, then kill it. */
    kill(t_nghttpd_pid, SIGSTOP);
    assert_int_equal(t_req(cli, "GET", "/hello.txt", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_for(base, 200);
    assert_int_equal(res[1].calls, 0);
    int64_t t0 = t_now_ms();
    t_nghttpd_kill();
    t_run_until(base, &t_done, 2, 5000);
    assert_int_equal(res[1].calls, 1);
    assert_int_equal(res[1].rc, PHR_EUNAVAIL);
    assert_true(res[1].at_ms - t0 < 1000); /* the drop, not the 5 s deadline */

    t_nghttpd_start(port);
    assert_int_equal(t_req(cli, "GET", "/hello.txt", NULL, NULL, NULL, &res[2]), PHR_OK);
    t_run_until(base, &t_done, 3, 5000);
    assert_int_equal(res[2].calls, 1);
    assert_int_equal(res[2].rc, PHR_OK);
    assert_int_equal(res[2].status, 200);
    assert_string_equal(res[2].body, T_HELLO);

    hcli_free(cli);
    t_res_reset(res, 3);
    t_nghttpd_kill();
    event_base_free(base);
}

/* ---- timeouts, refused connections, backoff ----------------------------- */

static void
test_hcli_timeout_silent_peer(void **state)
{
    struct event_base *base = event_base_new();
    int port = t_free_port();
    int lfd = t_silent_listener(port);
    t_res_t res;
    memset(&res, 0, sizeof(res));

    hcli_t *cli = t_client(base, port, 300);
    int64_t t0 = t_now_ms();
    assert_int_equal(t_req(cli, "GET", "/x", NULL, NULL, NULL, &res), PHR_OK);
    t_run_until(base, &t_done, 1, 3000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.rc, PHR_ETIMEDOUT);
    assert_true(res.at_ms - t0 >= 290);
    assert_true(res.at_ms - t0 < 1000);
    assert_int_equal(t_cb_in_submit, 0);

    hcli_free(cli);
    close(lfd);
    event_base_free(base);
}

static void
test_hcli_unavailable_and_backoff(void **state)
{
    struct event_base *base = event_base_new();
    int port = t_free_port(); /* nothing listens there */
    t_res_t res[3];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, port, 300);
    int64_t t0 = t_now_ms();
    assert_int_equal(t_req(cli, "GET", "/x", NULL, NULL, NULL, &res[0]), PHR_OK);
    assert_int_equal(res[0].calls, 0); /* never inside the submitting call */
    t_run_until(base, &t_done, 1, 3000);
    assert_int_equal(res[0].rc, PHR_EUNAVAIL);
    assert_true(res[0].at_ms - t0 < 250);

    /* Now something listens, but we are inside the 50 ms backoff: fail fast
     * without trying (a connection attempt would end in ETIMEDOUT instead). */
    int lfd = t_silent_listener(port);
    t0 = t_now_ms();
    assert_int_equal(t_req(cli, "GET", "/x", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_until(base, &t_done, 2, 3000);
    assert_int_equal(res[1].rc, PHR_EUNAVAIL);
    assert_true(res[1].at_ms - t0 < 45);

    /* After the backoff the client tries again and reaches the listener. */
    t_sleep_ms(80);
    assert_int_equal(t_req(cli, "GET", "/x", NULL, NULL, NULL, &res[2]), PHR_OK);
    t_run_until(base, &t_done, 3, 3000);
    assert_int_equal(res[2].rc, PHR_ETIMEDOUT);
    assert_int_equal(t_cb_in_submit, 0);

    hcli_free(cli);
    close(lfd);
    event_base_free(base);
}

/* ---- tests against the in-process server -------------------------------- */

static void
test_hcli_headers_and_body(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_ECHO);
    char authority[32];
    t_res_t res[2];
    memset(res, 0, sizeof(res));
    snprintf(authority, sizeof(authority), "127.0.0.1:%d", srv->port);

    hcli_t *cli = t_client(base, srv->port, 3000);
    assert_int_equal(t_req(cli, "POST", "/internal/v1/things", "application/json", "{\"a\":1}",
                           "req-123", &res[0]),
                     PHR_OK);
    t_run_until(base, &t_done, 1, 5000);
    assert_int_equal(res[0].rc, PHR_OK);
    assert_int_equal(res[0].status, 200);
    assert_string_equal(res[0].body, "{\"a\":1}");
    assert_string_equal(res[0].ctype, "text/plain");
    assert_string_equal(tsrv_header(srv, ":method"), "POST");
    assert_string_equal(tsrv_header(srv, ":scheme"), "http");
    assert_string_equal(tsrv_header(srv, ":authority"), authority);
    assert_string_equal(tsrv_header(srv, ":path"), "/internal/v1/things");
    assert_string_equal(tsrv_header(srv, "content-type"), "application/json");
    assert_string_equal(tsrv_header(srv, "content-length"), "7");
    assert_string_equal(tsrv_header(srv, "x-phr-caller"), "records");
    assert_string_equal(tsrv_header(srv, "x-phr-credential"), T_SECRET);
    assert_string_equal(tsrv_header(srv, "x-request-id"), "req-123");
    assert_string_equal(tsrv_header(srv, "accept"), "application/json");

    /* GET: no body headers, no request id, credential still sent. */
    assert_int_equal(t_req(cli, "GET", "/internal/v1/ping", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_until(base, &t_done, 2, 5000);
    assert_int_equal(res[1].rc, PHR_OK);
    assert_string_equal(res[1].body, "ok");
    assert_string_equal(tsrv_header(srv, ":method"), "GET");
    assert_null(tsrv_header(srv, "content-type"));
    assert_null(tsrv_header(srv, "content-length"));
    assert_null(tsrv_header(srv, "x-request-id"));
    assert_string_equal(tsrv_header(srv, "x-phr-credential"), T_SECRET);
    assert_int_equal(srv->accepted, 1);

    hcli_free(cli);
    t_res_reset(res, 2);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_multiplexed_one_connection(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_ECHO);
    t_res_t *res = calloc(T_CONC, sizeof(*res));
    char body[32];

    hcli_t *cli = t_client(base, srv->port, 5000);
    for (int i = 0; i < T_CONC; i++) {
        snprintf(body, sizeof(body), "body-%d", i);
        assert_int_equal(t_req(cli, "POST", "/echo", "text/plain", body, NULL, &res[i]), PHR_OK);
    }
    t_run_until(base, &t_done, T_CONC, 10000);
    assert_int_equal(t_done, T_CONC);
    for (int i = 0; i < T_CONC; i++) {
        snprintf(body, sizeof(body), "body-%d", i);
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].rc, PHR_OK);
        assert_string_equal(res[i].body, body);
    }
    assert_int_equal(srv->accepted, 1);
    assert_int_equal(srv->requests, T_CONC);

    hcli_free(cli);
    t_res_reset(res, T_CONC);
    free(res);
    tsrv_free(srv);
    event_base_free(base);
}

static int32_t
tsrv_held_id(const tsrv_t *srv, int rank)
{
    int32_t ids[TSRV_MAX_HELD];
    int n = srv->nheld;
    for (int i = 0; i < n; i++) {
        ids[i] = srv->held[i]->id;
    }
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int32_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    }
    return ids[rank];
}

/* The |rank|-th lowest id held on connection |idx|, or -1. */
static int32_t
tsrv_held_on(const tsrv_t *srv, int idx, int rank)
{
    int32_t best = -1;
    for (int k = 0; k <= rank; k++) {
        int32_t floor = best;
        best = -1;
        for (int i = 0; i < srv->nheld; i++) {
            int32_t id = srv->held[i]->id;
            if (srv->held[i]->conn->idx == idx && id > floor && (best < 0 || id < best)) {
                best = id;
            }
        }
    }
    return best;
}

static tsrv_conn_t *
tsrv_conn_at(const tsrv_t *srv, int idx)
{
    for (int i = 0; i < TSRV_MAX_CONNS; i++) {
        if (srv->conns[i] != NULL && srv->conns[i]->idx == idx) {
            return srv->conns[i];
        }
    }
    fail_msg("no server connection %d", idx);
    return NULL;
}

/* Requests received on connection |idx| with |path| and |body| (NULL: any). */
static int
tsrv_log_count(const tsrv_t *srv, int idx, const char *path, const char *body)
{
    int n = 0;
    for (int i = 0; i < srv->nlog; i++) {
        n += srv->log_conn[i] == idx && (path == NULL || strcmp(srv->log_path[i], path) == 0) &&
             (body == NULL || strcmp(srv->log_body[i], body) == 0);
    }
    return n;
}

/* GOAWAY(|last|) on |c|, then its sending side closed: the client reads the GOAWAY, then EOF. */
static void
tsrv_goaway_close(tsrv_conn_t *c, int32_t last)
{
    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
    assert_int_equal(nghttp2_session_send(c->session), 0);
    assert_true(evbuffer_get_length(bufferevent_get_output(c->bev)) > 0);
    c->shut_wr = 1; /* tsrv_writecb, once the GOAWAY is written */
}

#define T_GOAWAY_N 6

/*
 * A GOAWAY with requests above its last_stream_id, then the connection
 * closes: those (POSTs) go once, body and all, to a new connection; those
 * at or below it fail (they may have been processed). A second GOAWAY on
 * the new connection fails the rest: no third connection.
 */
static void
test_hcli_goaway_resends_unprocessed(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[T_GOAWAY_N];
    char path[T_GOAWAY_N][24], body[T_GOAWAY_N][24];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 10000);
    for (int i = 0; i < T_GOAWAY_N; i++) {
        snprintf(path[i], sizeof(path[i]), "/r%d", i);
        snprintf(body[i], sizeof(body[i]), "body-%d", i);
        assert_int_equal(t_req(cli, "POST", path[i], "text/plain", body[i], NULL, &res[i]), PHR_OK);
    }
    t_run_until(base, &srv->nheld, T_GOAWAY_N, 5000);
    assert_int_equal(srv->nheld, T_GOAWAY_N);

    /* Streams are opened in submit order: last_stream_id = /r1's stream. */
    tsrv_goaway_close(tsrv_conn_at(srv, 1), tsrv_held_on(srv, 1, 1));
    t_run_until(base, &srv->requests, T_GOAWAY_N + 4, 5000);
    t_run_until(base, &t_done, 2, 5000);
    t_run_for(base, 50);
    assert_int_equal(srv->accepted, 2);
    assert_int_equal(srv->requests, T_GOAWAY_N + 4);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].rc, PHR_EUNAVAIL);
        assert_int_equal(tsrv_log_count(srv, 2, path[i], NULL), 0);
    }
    for (int i = 2; i < T_GOAWAY_N; i++) {
        assert_int_equal(res[i].calls, 0);
        assert_int_equal(tsrv_log_count(srv, 2, path[i], body[i]), 1);
    }
    assert_int_equal(tsrv_log_count(srv, 2, NULL, NULL), T_GOAWAY_N - 2);

    /* Connection 2 answers its two lowest streams, then GOAWAY(the second
     * of them) and closes: the other two were refused twice and fail. */
    int32_t a = tsrv_held_on(srv, 2, 0), b = tsrv_held_on(srv, 2, 1);
    srv->mode = TSRV_ECHO;
    tsrv_release(srv, a);
    tsrv_release(srv, b);
    t_run_until(base, &t_done, 4, 5000);
    assert_int_equal(t_done, 4);
    tsrv_goaway_close(tsrv_conn_at(srv, 2), b);
    t_run_until(base, &t_done, T_GOAWAY_N, 5000);
    t_run_for(base, 100);
    int ok = 0, unavail = 0;
    for (int i = 2; i < T_GOAWAY_N; i++) {
        assert_int_equal(res[i].calls, 1);
        if (res[i].rc == PHR_OK) {
            assert_string_equal(res[i].body, body[i]); /* the echo of its own body */
            ok++;
        } else {
            assert_int_equal(res[i].rc, PHR_EUNAVAIL);
            unavail++;
        }
    }
    assert_int_equal(ok, 2);
    assert_int_equal(unavail, 2);
    assert_int_equal(t_done, T_GOAWAY_N);
    assert_int_equal(srv->accepted, 2);
    assert_int_equal(srv->requests, T_GOAWAY_N + 4);

    hcli_free(cli);
    t_res_reset(res, T_GOAWAY_N);
    tsrv_free(srv);
    event_base_free(base);
}

/* The resent request keeps its first deadline. */
static void
test_hcli_goaway_resend_keeps_deadline(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[2];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 600);
    int64_t t0 = t_now_ms();
    assert_int_equal(t_req(cli, "GET", "/a", NULL, NULL, NULL, &res[0]), PHR_OK);
    assert_int_equal(t_req(cli, "GET", "/b", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_until(base, &srv->nheld, 2, 5000);
    t_run_for(base, 300);
    tsrv_conn_t *sc = tsrv_conn_at(srv, 1);
    nghttp2_submit_goaway(sc->session, NGHTTP2_FLAG_NONE, tsrv_held_on(srv, 1, 0), NGHTTP2_NO_ERROR,
                          NULL, 0);
    tsrv_send(sc);
    t_run_until(base, &t_done, 2, 3000);
    assert_int_equal(srv->accepted, 2);
    assert_int_equal(tsrv_log_count(srv, 2, "/b", NULL), 1);
    assert_int_equal(res[1].calls, 1);
    assert_int_equal(res[1].rc, PHR_ETIMEDOUT);
    assert_true(res[1].at_ms - t0 >= 590);
    assert_true(res[1].at_ms - t0 < 850); /* a new deadline would end after 900 ms */
    assert_int_equal(res[0].rc, PHR_ETIMEDOUT);

    hcli_free(cli);
    t_res_reset(res, 2);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_goaway(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[4];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 5000);
    assert_int_equal(t_req(cli, "GET", "/a", NULL, NULL, NULL, &res[0]), PHR_OK);
    assert_int_equal(t_req(cli, "GET", "/b", NULL, NULL, NULL, &res[1]), PHR_OK);
    assert_int_equal(t_req(cli, "GET", "/d", NULL, NULL, NULL, &res[2]), PHR_OK);
    t_run_until(base, &srv->nheld, 3, 5000);
    assert_int_equal(srv->nheld, 3);

    /* GOAWAY(last_stream_id = second stream): the third was not processed
     * and is sent again on a new connection. Answer the second; the first
     * stays open on the old connection. */
    tsrv_conn_t *sc = srv->held[0]->conn;
    int32_t first = tsrv_held_id(srv, 0), second = tsrv_held_id(srv, 1);
    srv->mode = TSRV_ECHO;
    nghttp2_submit_goaway(sc->session, NGHTTP2_FLAG_NONE, second, NGHTTP2_NO_ERROR, NULL, 0);
    tsrv_release(srv, second);
    t_run_until(base, &t_done, 2, 5000);
    assert_int_equal(res[0].calls, 0);
    assert_int_equal(res[1].calls, 1);
    assert_int_equal(res[1].rc, PHR_OK);
    assert_int_equal(res[1].status, 200);
    assert_int_equal(res[2].calls, 1);
    assert_int_equal(res[2].rc, PHR_OK);
    assert_int_equal(res[2].status, 200);
    assert_int_equal(srv->accepted, 2);
    assert_int_equal(tsrv_log_count(srv, 2, "/d", NULL), 1);
    assert_int_equal(tsrv_log_count(srv, 2, NULL, NULL), 1);

    /* A new request goes to the new connection while the old one drains. */
    assert_int_equal(t_req(cli, "GET", "/c", NULL, NULL, NULL, &res[3]), PHR_OK);
    t_run_until(base, &t_done, 3, 5000);
    assert_int_equal(res[3].calls, 1);
    assert_int_equal(res[3].rc, PHR_OK);
    assert_int_equal(srv->accepted, 2);
    assert_int_equal(res[0].calls, 0);

    /* The old connection still completes the stream below last_stream_id. */
    tsrv_release(srv, first);
    t_run_until(base, &t_done, 4, 5000);
    assert_int_equal(res[0].calls, 1);
    assert_int_equal(res[0].rc, PHR_OK);

    hcli_free(cli);
    t_res_reset(res, 4);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_body_limit(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_BIG);
    t_res_t res[3];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 10000);
    srv->big_size = 2u << 20;
    assert_int_equal(t_req(cli, "GET", "/big", NULL, NULL, NULL, &res[0]), PHR_OK);
    t_run_until(base, &t_done, 1, 10000);
    assert_int_equal(res[0].rc, PHR_OK);
    assert_int_equal(res[0].body_len, 2u << 20);
    assert_int_equal(res[0].body[0], 'x');
    assert_int_equal(res[0].body[(2u << 20) - 1], 'x');

    srv->big_size = 9u << 20;
    assert_int_equal(t_req(cli, "GET", "/huge", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_until(base, &t_done, 2, 10000);
    assert_int_equal(res[1].rc, PHR_EPROTO);
    t_run_until(base, &srv->cancels, 1, 2000);
    assert_int_equal(srv->cancels, 1);

    /* The connection survives a reset stream. */
    srv->mode = TSRV_ECHO;
    assert_int_equal(t_req(cli, "GET", "/small", NULL, NULL, NULL, &res[2]), PHR_OK);
    t_run_until(base, &t_done, 3, 5000);
    assert_int_equal(res[2].rc, PHR_OK);
    assert_int_equal(srv->accepted, 1);

    hcli_free(cli);
    t_res_reset(res, 3);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_deadline_resets_stream(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[2];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 200);
    int64_t t0 = t_now_ms();
    assert_int_equal(t_req(cli, "GET", "/slow", NULL, NULL, NULL, &res[0]), PHR_OK);
    t_run_until(base, &t_done, 1, 3000);
    assert_int_equal(res[0].rc, PHR_ETIMEDOUT);
    assert_true(res[0].at_ms - t0 >= 190);
    assert_true(res[0].at_ms - t0 < 800);
    t_run_until(base, &srv->cancels, 1, 2000);
    assert_int_equal(srv->cancels, 1); /* RST_STREAM(CANCEL) reached the server */
    assert_int_equal(srv->nheld, 0);   /* and closed the stream there */

    srv->mode = TSRV_ECHO;
    assert_int_equal(t_req(cli, "GET", "/fast", NULL, NULL, NULL, &res[1]), PHR_OK);
    t_run_until(base, &t_done, 2, 3000);
    assert_int_equal(res[1].rc, PHR_OK);
    assert_int_equal(srv->accepted, 1);
    assert_int_equal(res[0].calls, 1); /* the late stream never calls back twice */

    hcli_free(cli);
    t_res_reset(res, 2);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_free_with_pending(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[3];
    memset(res, 0, sizeof(res));

    hcli_t *cli = t_client(base, srv->port, 5000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t_req(cli, "GET", "/held", NULL, NULL, NULL, &res[i]), PHR_OK);
    }
    t_run_until(base, &srv->nheld, 3, 5000);
    assert_int_equal(srv->nheld, 3);
    assert_int_equal(t_done, 0);
    hcli_free(cli);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].rc, PHR_ECLOSED);
    }
    t_run_for(base, 50); /* nothing may fire for the freed client */
    assert_int_equal(t_done, 3);

    t_res_reset(res, 3);
    tsrv_free(srv);
    event_base_free(base);
}

static hcli_t *t_self_cli;

static void
t_free_in_cb(int rc, const hcli_resp_t *resp, void *ud)
{
    t_cb(rc, resp, ud);
    hcli_free(t_self_cli);
    t_self_cli = NULL;
}

static void
test_hcli_free_inside_callback(void **state)
{
    struct event_base *base = event_base_new();
    tsrv_t *srv = tsrv_new(base, TSRV_HOLD);
    t_res_t res[3];
    memset(res, 0, sizeof(res));

    t_self_cli = t_client(base, srv->port, 5000);
    assert_int_equal(
        hcli_request(t_self_cli, "GET", "/1", NULL, NULL, 0, NULL, t_free_in_cb, &res[0]), PHR_OK);
    assert_int_equal(t_req(t_self_cli, "GET", "/2", NULL, NULL, NULL, &res[1]), PHR_OK);
    assert_int_equal(t_req(t_self_cli, "GET", "/3", NULL, NULL, NULL, &res[2]), PHR_OK);
    t_run_until(base, &srv->nheld, 3, 5000);
    srv->mode = TSRV_ECHO;
    tsrv_release(srv, tsrv_held_id(srv, 0));
    t_run_until(base, &t_done, 3, 5000);
    assert_null(t_self_cli);
    assert_int_equal(res[0].calls, 1);
    assert_int_equal(res[0].rc, PHR_OK);
    assert_int_equal(res[1].calls, 1);
    assert_int_equal(res[1].rc, PHR_ECLOSED);
    assert_int_equal(res[2].calls, 1);
    assert_int_equal(res[2].rc, PHR_ECLOSED);
    t_run_for(base, 50);
    assert_int_equal(t_done, 3);

    t_res_reset(res, 3);
    tsrv_free(srv);
    event_base_free(base);
}

static void
test_hcli_bad_args(void **state)
{
    struct event_base *base = event_base_new();
    hcli_config_t bad_port = {"127.0.0.1", 0, "x", "y", 100};
    hcli_config_t no_host = {NULL, 80, "x", "y", 100};
    assert_null(hcli_create(base, &bad_port));
    assert_null(hcli_create(base, &no_host));
    assert_null(hcli_create(NULL, &bad_port));
    hcli_t *cli = t_client(base, 9, 100);
    assert_int_equal(hcli_request(cli, NULL, "/", NULL, NULL, 0, NULL, t_cb, NULL), PHR_EINVAL);
    assert_int_equal(hcli_request(cli, "GET", "/", NULL, NULL, 0, NULL, NULL, NULL), PHR_EINVAL);
    hcli_free(cli);
    hcli_free(NULL);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hcli_nghttpd_get, t_teardown),
        cmocka_unit_test_teardown(test_hcli_nghttpd_concurrent, t_teardown),
        cmocka_unit_test_teardown(test_hcli_nghttpd_killed_then_reconnect, t_teardown),
        cmocka_unit_test(test_hcli_timeout_silent_peer),
        cmocka_unit_test(test_hcli_unavailable_and_backoff),
        cmocka_unit_test(test_hcli_headers_and_body),
        cmocka_unit_test(test_hcli_multiplexed_one_connection),
        cmocka_unit_test(test_hcli_goaway),
        cmocka_unit_test(test_hcli_goaway_resends_unprocessed),
        cmocka_unit_test(test_hcli_goaway_resend_keeps_deadline),
        cmocka_unit_test(test_hcli_body_limit),
        cmocka_unit_test(test_hcli_deadline_resets_stream),
        cmocka_unit_test(test_hcli_free_with_pending),
        cmocka_unit_test(test_hcli_free_inside_callback),
        cmocka_unit_test(test_hcli_bad_args),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (t_docroot[0] != '\0') {
        char path[128];
        snprintf(path, sizeof(path), "%s/hello.txt", t_docroot);
        unlink(path);
        rmdir(t_docroot);
    }
    return rc;
}
