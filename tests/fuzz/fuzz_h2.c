/*
 * fuzz_h2.c - libFuzzer target for the HTTP/2 request path of common/h2s.c.
 *
 * The first input byte chooses the framing: odd = the client connection
 * preface is prepended to the rest, even = the rest is sent as is (so the
 * preface check itself is fuzzed too). The bytes go through a socketpair
 * into a connection adopted by one static server (routes: sync, echo, path
 * parameter, and an answer deferred to a zero-delay timer). The loop runs
 * non-blocking a bounded number of times, the server's output is read and
 * dropped, the client end is closed and the loop runs until the server has
 * freed the connection. Invariants (trap on violation): every connection is
 * freed, no request stays in flight, no deferred answer is left over.
 * Seed corpus: tests/fuzz/corpus/h2/. Run through tests/fuzz/run.sh.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "h2s.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define FUZZ_TURNS 64

static struct event_base *fuzz_base;
static h2s_server_t *fuzz_srv;
static int fuzz_deferred; /* answers scheduled but not yet given */

static void
fuzz_hello(h2s_req_t *req, void *ud)
{
    h2s_respond(req, 200, "text/plain", "hello", 5);
}

static void
fuzz_echo(h2s_req_t *req, void *ud)
{
    size_t len = 0;
    const char *body = h2s_req_body(req, &len);

    if (h2s_req_header(req, "x-fail") != NULL) {
        h2s_respond_problem(req, 422, "invalid", "x-fail was sent", NULL);
        return;
    }
    h2s_respond(req, 200, "application/octet-stream", body, len);
}

static void
fuzz_item(h2s_req_t *req, void *ud)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(h2s_req_param(req, "id")));
    json_object_object_add(o, "query", json_object_new_string(h2s_req_query(req)));
    json_object_object_add(o, "request_id", json_object_new_string(h2s_req_id(req)));
    h2s_req_add_header(req, "cache-control", "no-store");
    h2s_respond_json(req, 200, o);
}

static void
fuzz_later(evutil_socket_t fd, short what, void *arg)
{
    fuzz_deferred--;
    h2s_respond(arg, 202, "text/plain", "later", 5);
}

static void
fuzz_async(h2s_req_t *req, void *ud)
{
    static const struct timeval zero = {0, 0};

    if (event_base_once(fuzz_base, -1, EV_TIMEOUT, fuzz_later, req, &zero) == 0) {
        fuzz_deferred++;
    } else {
        h2s_respond(req, 500, "text/plain", "x", 1);
    }
}

static void
fuzz_init(void)
{
    h2s_limits_t lim = {
        .max_header_list = 4096,
        .max_body = 2048,
        .max_streams = 16,
        .output_cap = 32 * 1024,
        .idle_timeout_ms = 60000,
        .request_timeout_ms = 60000,
    };

    signal(SIGPIPE, SIG_IGN);
    log_init("fuzz", "error");
    fuzz_base = event_base_new();
    fuzz_srv = fuzz_base != NULL ? h2s_server_create(fuzz_base, &lim) : NULL;
    if (fuzz_srv == NULL || h2s_route(fuzz_srv, "GET", "/hello", fuzz_hello, NULL, 0) != PHR_OK ||
        h2s_route(fuzz_srv, "POST", "/echo", fuzz_echo, NULL, 0) != PHR_OK ||
        h2s_route(fuzz_srv, "PUT", "/echo", fuzz_echo, NULL, 64) != PHR_OK ||
        h2s_route(fuzz_srv, "GET", "/items/{id}", fuzz_item, NULL, 0) != PHR_OK ||
        h2s_route(fuzz_srv, "GET", "/async", fuzz_async, NULL, 0) != PHR_OK) {
        abort();
    }
}

static void
fuzz_drain(int fd)
{
    uint8_t buf[16384];

    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    size_t off = 0;
    int turns = 0;

    if (fuzz_srv == NULL) {
        fuzz_init();
    }
    if (size == 0) {
        return 0;
    }
    int preface = data[0] & 1;
    data++;
    size--;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        return 0;
    }
    if (h2s_adopt_fd(fuzz_srv, sv[0], "fuzz:1") != PHR_OK) {
        close(sv[1]);
        return 0;
    }
    if (preface) {
        (void)!send(sv[1], FUZZ_PREFACE, sizeof(FUZZ_PREFACE) - 1, MSG_NOSIGNAL);
    }
    /* Feed the input, letting the server run and draining its answers. */
    while (turns++ < FUZZ_TURNS) {
        if (off < size) {
            ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += (size_t)n;
            } else if (n < 0 && errno != EAGAIN) {
                off = size; /* the server closed the connection */
            }
        }
        event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        fuzz_drain(sv[1]);
        if (off == size && turns > 8 && h2s_connections(fuzz_srv) == 0) {
            break;
        }
    }
    close(sv[1]);
    for (int i = 0; i < FUZZ_TURNS && (h2s_connections(fuzz_srv) > 0 || fuzz_deferred > 0); i++) {
        event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    if (h2s_connections(fuzz_srv) != 0 || fuzz_deferred != 0 || h2s_inflight(fuzz_srv) != 0) {
        __builtin_trap();
    }
    return 0;
}
