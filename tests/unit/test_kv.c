/*
 * test_kv.c - common/kv.c against real Redis servers.
 *
 * Environment (required: the test FAILS when HOST or PORT is unset):
 *   PHR_TEST_REDIS_HOST      e.g. 127.0.0.1
 *   PHR_TEST_REDIS_PORT      e.g. 56379
 *   PHR_TEST_REDIS_PASSWORD  the requirepass of that server ("" or unset = none)
 * Optional:
 *   PHR_TEST_REDIS_SERVER    redis-server binary used for the tests that freeze
 *                            and kill a private server (default: "redis-server"
 *                            from PATH). Those tests start it on a random
 *                            loopback port and stop it themselves.
 *
 * The shared server is never paused or restarted (other tests may use it
 * concurrently); only this process's own connections are killed there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "kv.h"
#include "log.h"
#include "timeutil.h"

static const char *g_host;
static int g_port;
static const char *g_password;
static pid_t g_private_pid = -1;
static int g_private_port;

#define PRIVATE_PASSWORD "kv-private-pw"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    int calls;
    int rc;
    int type;
    long long integer;
    char str[256];
    size_t len;  /* bytes kept in str */
    size_t rlen; /* the whole reply's length */
    int64_t at_us;
} capture_t;

static void
capture_cb(int rc, redisReply *reply, void *ud)
{
    capture_t *c = ud;
    c->calls++;
    c->rc = rc;
    c->at_us = tu_mono_us();
    c->type = reply != NULL ? reply->type : -1;
    if (reply != NULL) {
        c->integer = reply->integer;
        if (reply->str != NULL) {
            c->rlen = reply->len;
            c->len = reply->len < sizeof(c->str) ? reply->len : sizeof(c->str);
            memcpy(c->str, reply->str, c->len);
        }
    }
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

typedef struct {
    struct event_base *base;
    struct event *tick;
} loop_t;

static void
loop_init(loop_t *l)
{
    struct timeval tv = {0, 5000};
    l->base = event_base_new();
    assert_non_null(l->base);
    l->tick = event_new(l->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_non_null(l->tick);
    event_add(l->tick, &tv);
}

static void
loop_done(loop_t *l)
{
    event_free(l->tick);
    event_base_free(l->base);
}

/* Runs the loop until *flag != 0 or |ms| passed; returns *flag. */
static int
run_until(loop_t *l, const int *flag, int ms)
{
    int64_t deadline = tu_mono_us() + (int64_t)ms * 1000;
    while ((flag == NULL || *flag == 0) && tu_mono_us() < deadline) {
        event_base_loop(l->base, EVLOOP_ONCE);
    }
    return flag != NULL ? *flag : 0;
}

static int
wait_ready(loop_t *l, kv_t *kv, int ms)
{
    int64_t deadline = tu_mono_us() + (int64_t)ms * 1000;
    while (!kv_ready(kv) && tu_mono_us() < deadline) {
        event_base_loop(l->base, EVLOOP_ONCE);
    }
    return kv_ready(kv);
}

static kv_t *
kv_new(loop_t *l, const char *host, int port, const char *pw, int timeout_ms)
{
    kv_config_t cfg = {.host = host, .port = port, .password = pw, .timeout_ms = timeout_ms};
    kv_t *kv = kv_create(l->base, &cfg);
    assert_non_null(kv);
    return kv;
}

static int
send1(kv_t *kv, capture_t *c, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    return kv_command_argv(kv, capture_cb, c, argc, argv, lens);
}

/* Blocking admin connection (hiredis sync API). */
static redisContext *
admin_connect(const char *host, int port, const char *pw)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        if (c != NULL) {
            redisFree(c);
        }
        return NULL;
    }
    if (pw != NULL && pw[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", pw);
        int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        if (r != NULL) {
            freeReplyObject(r);
        }
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static void
key_name(char *out, size_t cap, const char *what)
{
    snprintf(out, cap, "phr:test:kv:%ld:%s", (long)getpid(), what);
}

/* ---- private redis-server ---------------------------------------------- */

static int
port_free(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int is_free = c == NULL || c->err != 0;
    if (c != NULL) {
        redisFree(c);
    }
    return is_free;
}

static int
private_start(int port)
{
    const char *bin = getenv("PHR_TEST_REDIS_SERVER");
    char portstr[16];
    pid_t pid;

    if (bin == NULL || bin[0] == '\0') {
        bin = "redis-server";
    }
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, STDOUT_FILENO);
        }
        execlp(bin, bin, "--port", portstr, "--bind", "127.0.0.1", "--requirepass",
               PRIVATE_PASSWORD, "--save", "", "--appendonly", "no", "--daemonize", "no",
               (char *)NULL);
        fprintf(stderr, "test_kv: cannot exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    g_private_pid = pid;
    for (int i = 0; i < 100; i++) {
        redisContext *c = admin_connect("127.0.0.1", port, PRIVATE_PASSWORD);
        if (c != NULL) {
            redisFree(c);
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g_private_pid = -1;
            return -1;
        }
        usleep(50000);
    }
    return -1;
}

static void
private_stop(void)
{
    if (g_private_pid > 0) {
        kill(g_private_pid, SIGKILL);
        waitpid(g_private_pid, NULL, 0);
        g_private_pid = -1;
    }
}

static int
private_setup(void **state)
{
    unsigned seed = (unsigned)(tu_mono_us() ^ getpid());
    for (int i = 0; i < 50; i++) {
        int port = 20000 + (int)(rand_r(&seed) % 30000);
        if (port_free(port)) {
            g_private_port = port;
            if (private_start(port) == 0) {
                return 0;
            }
            private_stop();
        }
    }
    fprintf(stderr, "test_kv: cannot start a private redis-server (set PHR_TEST_REDIS_SERVER)\n");
    return -1;
}

static int
private_teardown(void **state)
{
    private_stop();
    return 0;
}

/* ---- tests on the shared server ------------------------------------------ */

static void
test_roundtrip_binary(void **state)
{
    loop_t l;
    char key[96];
    static const char val[] = "a\0b\r\n\xff\x01 end";
    const size_t vlen = sizeof(val) - 1;
    capture_t set = {0}, get = {0}, del = {0};
    kv_stats_t st;

    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, g_password, 2000);
    assert_true(wait_ready(&l, kv, 3000));
    key_name(key, sizeof(key), "bin");

    const char *sargv[3] = {"SET", key, val};
    size_t slen[3] = {3, strlen(key), vlen};
    assert_int_equal(kv_command_argv(kv, capture_cb, &set, 3, sargv, slen), PHR_OK);
    assert_int_equal(set.calls, 0); /* never from inside the submitting call */
    const char *gargv[2] = {"GET", key};
    assert_int_equal(send1(kv, &get, 2, gargv), PHR_OK);
    const char *dargv[2] = {"DEL", key};
    assert_int_equal(send1(kv, &del, 2, dargv), PHR_OK);
    run_until(&l, &del.calls, 2000);

    assert_int_equal(set.calls, 1);
    assert_int_equal(set.rc, PHR_OK);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_int_equal(get.calls, 1);
    assert_int_equal(get.rc, PHR_OK);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, vlen);
    assert_memory_equal(get.str, val, vlen);
    assert_int_equal(del.calls, 1);
    assert_int_equal(del.integer, 1);

    /* A command longer than kv's own formatter takes (512 bytes) goes out just as well. */
    static char big[4000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)(i * 7 + 1);
    }
    capture_t bset = {0}, bget = {0}, bdel = {0};
    const char *bsargv[3] = {"SET", key, big};
    size_t bslen[3] = {3, strlen(key), sizeof(big)};
    assert_int_equal(kv_command_argv(kv, capture_cb, &bset, 3, bsargv, bslen), PHR_OK);
    assert_int_equal(send1(kv, &bget, 2, gargv), PHR_OK);
    assert_int_equal(send1(kv, &bdel, 2, dargv), PHR_OK);
    run_until(&l, &bdel.calls, 2000);
    assert_int_equal(bset.type, REDIS_REPLY_STATUS);
    assert_int_equal(bget.type, REDIS_REPLY_STRING);
    assert_int_equal(bget.rlen, sizeof(big));
    assert_memory_equal(bget.str, big, bget.len);
    assert_int_equal(bdel.integer, 1);

    /* An error reply is PHR_OK with a REDIS_REPLY_ERROR and counts as an error. */
    capture_t bad = {0};
    const char *bargv[1] = {"NO-SUCH-COMMAND"};
    assert_int_equal(send1(kv, &bad, 1, bargv), PHR_OK);
    run_until(&l, &bad.calls, 2000);
    assert_int_equal(bad.rc, PHR_OK);
    assert_int_equal(bad.type, REDIS_REPLY_ERROR);

    kv_stats(kv, &st);
    assert_int_equal(st.connected, 1);
    assert_true(st.commands >= 4);
    assert_true(st.errors >= 1);
    assert_int_equal(st.timeouts, 0);
    kv_free(kv);
    loop_done(&l);
}

#define PIPE_N 100

typedef struct {
    int calls[PIPE_N];
    long long value[PIPE_N];
    int rc[PIPE_N];
    int total;
} pipe_t;

typedef struct {
    pipe_t *p;
    int i;
} pipe_slot_t;

static void
pipe_cb(int rc, redisReply *reply, void *ud)
{
    pipe_slot_t *s = ud;
    s->p->calls[s->i]++;
    s->p->rc[s->i] = rc;
    s->p->value[s->i] = reply != NULL ? reply->integer : -1;
    s->p->total++;
}

static void
test_pipeline_100(void **state)
{
    loop_t l;
    char key[96];
    static pipe_t p;
    static pipe_slot_t slots[PIPE_N];
    int all_done = 0;

    memset(&p, 0, sizeof(p));
    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, g_password, 3000);
    assert_true(wait_ready(&l, kv, 3000));
    key_name(key, sizeof(key), "pipe");

    const char *dargv[2] = {"DEL", key};
    capture_t del = {0};
    assert_int_equal(send1(kv, &del, 2, dargv), PHR_OK);
    for (int i = 0; i < PIPE_N; i++) {
        const char *argv[2] = {"INCR", key};
        size_t lens[2] = {4, strlen(key)};
        slots[i].p = &p;
        slots[i].i = i;
        assert_int_equal(kv_command_argv(kv, pipe_cb, &slots[i], 2, argv, lens), PHR_OK);
    }
    assert_int_equal(p.total, 0);
    int64_t deadline = tu_mono_us() + 3000000;
    while (p.total < PIPE_N && tu_mono_us() < deadline) {
        event_base_loop(l.base, EVLOOP_ONCE);
    }
    run_until(&l, &all_done, 100); /* any duplicate callback would show up now */
    assert_int_equal(p.total, PIPE_N);
    for (int i = 0; i < PIPE_N; i++) {
        assert_int_equal(p.calls[i], 1);
        assert_int_equal(p.rc[i], PHR_OK);
        assert_int_equal(p.value[i], i + 1); /* replies in submission order */
    }
    capture_t del2 = {0};
    assert_int_equal(send1(kv, &del2, 2, dargv), PHR_OK);
    run_until(&l, &del2.calls, 2000);
    kv_free(kv);
    loop_done(&l);
}

static void
test_wrong_password(void **state)
{
    loop_t l;
    capture_t c = {0};
    kv_stats_t st;
    int never = 0;

    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, "definitely-not-the-password", 500);
    assert_false(kv_ready(kv));
    const char *argv[1] = {"PING"};
    assert_int_equal(send1(kv, &c, 1, argv), PHR_EUNAVAIL);
    int64_t deadline = tu_mono_us() + 1000000;
    while (tu_mono_us() < deadline) {
        event_base_loop(l.base, EVLOOP_ONCE);
        assert_false(kv_ready(kv));
    }
    assert_int_equal(send1(kv, &c, 1, argv), PHR_EUNAVAIL);
    run_until(&l, &never, 50);
    assert_int_equal(c.calls, 0);
    kv_stats(kv, &st);
    assert_int_equal(st.connected, 0);
    assert_true(st.errors >= 1);
    assert_int_equal(st.commands, 0);
    kv_free(kv);
    loop_done(&l);
}

static void
test_unreachable(void **state)
{
    loop_t l;
    capture_t c = {0};
    kv_stats_t st;
    int never = 0;

    loop_init(&l);
    /* Port 1 on loopback: nothing listens, connects are refused. */
    kv_t *kv = kv_new(&l, "127.0.0.1", 1, NULL, 300);
    run_until(&l, &never, 600);
    assert_false(kv_ready(kv));
    const char *argv[1] = {"PING"};
    assert_int_equal(send1(kv, &c, 1, argv), PHR_EUNAVAIL);
    kv_stats(kv, &st);
    assert_true(st.reconnects >= 1); /* retried with backoff */
    assert_true(st.reconnects <= 6); /* ... not in a tight loop */
    kv_free(kv);
    assert_int_equal(c.calls, 0);
    loop_done(&l);
}

static void
test_client_killed(void **state)
{
    loop_t l;
    capture_t id = {0}, blk = {0}, after = {0}, id2 = {0};
    char key[96], cmd[64];
    kv_stats_t st;

    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, g_password, 3000);
    assert_true(wait_ready(&l, kv, 3000));
    const char *idargv[2] = {"CLIENT", "ID"};
    assert_int_equal(send1(kv, &id, 2, idargv), PHR_OK);
    run_until(&l, &id.calls, 2000);
    assert_int_equal(id.type, REDIS_REPLY_INTEGER);

    key_name(key, sizeof(key), "never-pushed");
    const char *bargv[3] = {"BLPOP", key, "2"};
    assert_int_equal(send1(kv, &blk, 3, bargv), PHR_OK);
    int never = 0;
    run_until(&l, &never, 100); /* the BLPOP is now blocked in the server */
    assert_int_equal(blk.calls, 0);

    redisContext *adm = admin_connect(g_host, g_port, g_password);
    assert_non_null(adm);
    snprintf(cmd, sizeof(cmd), "%lld", id.integer);
    redisReply *r = redisCommand(adm, "CLIENT KILL ID %s", cmd);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(adm);

    run_until(&l, &blk.calls, 1000);
    assert_int_equal(blk.calls, 1);
    assert_int_equal(blk.rc, PHR_EUNAVAIL);

    /* It reconnects by itself. */
    assert_true(wait_ready(&l, kv, 3000));
    assert_int_equal(send1(kv, &id2, 2, idargv), PHR_OK);
    const char *pargv[1] = {"PING"};
    assert_int_equal(send1(kv, &after, 1, pargv), PHR_OK);
    run_until(&l, &after.calls, 2000);
    assert_int_equal(after.rc, PHR_OK);
    assert_int_equal(id2.type, REDIS_REPLY_INTEGER);
    assert_true(id2.integer != id.integer);
    run_until(&l, &never, 2200); /* the killed BLPOP's timeout would have fired by now */
    assert_int_equal(blk.calls, 1);
    kv_stats(kv, &st);
    assert_true(st.reconnects >= 1);
    assert_int_equal(st.timeouts, 0);
    kv_free(kv);
    loop_done(&l);
}

static void
test_free_pending(void **state)
{
    loop_t l;
    capture_t c[3];
    char key[96];
    int never = 0;

    memset(c, 0, sizeof(c));
    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, g_password, 3000);
    assert_true(wait_ready(&l, kv, 3000));
    key_name(key, sizeof(key), "free-pending");
    const char *bargv[3] = {"BLPOP", key, "2"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(send1(kv, &c[i], 3, bargv), PHR_OK);
    }
    run_until(&l, &never, 50);
    kv_free(kv);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].rc, PHR_ECLOSED);
    }
    run_until(&l, &never, 200);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
    }
    loop_done(&l);
}

/* kv_free from inside a reply callback must be safe (deferred teardown). */
typedef struct {
    kv_t *kv;
    int calls;
    capture_t *other;
} self_free_t;

static void
self_free_cb(int rc, redisReply *reply, void *ud)
{
    self_free_t *s = ud;
    s->calls++;
    kv_free(s->kv);
}

static void
test_free_inside_callback(void **state)
{
    loop_t l;
    capture_t other = {0};
    self_free_t s = {0};
    int never = 0;

    loop_init(&l);
    kv_t *kv = kv_new(&l, g_host, g_port, g_password, 2000);
    assert_true(wait_ready(&l, kv, 3000));
    s.kv = kv;
    const char *pargv[1] = {"PING"};
    size_t plen[1] = {4};
    assert_int_equal(kv_command_argv(kv, self_free_cb, &s, 1, pargv, plen), PHR_OK);
    assert_int_equal(send1(kv, &other, 1, pargv), PHR_OK);
    run_until(&l, &s.calls, 2000);
    assert_int_equal(s.calls, 1);
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.rc, PHR_ECLOSED);
    run_until(&l, &never, 100); /* deferred teardown runs here */
    assert_int_equal(other.calls, 1);
    loop_done(&l);
}

/* ---- tests on a private server ------------------------------------------- */

static void
test_timeout_frozen_server(void **state)
{
    loop_t l;
    capture_t slow = {0}, after = {0};
    kv_stats_t st;
    const int timeout_ms = 200;

    loop_init(&l);
    kv_t *kv = kv_new(&l, "127.0.0.1", g_private_port, PRIVATE_PASSWORD, timeout_ms);
    assert_true(wait_ready(&l, kv, 3000));

    redisContext *adm = admin_connect("127.0.0.1", g_private_port, PRIVATE_PASSWORD);
    assert_non_null(adm);
    redisReply *r = redisCommand(adm, "CLIENT PAUSE 1500 ALL");
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(adm);
    int64_t t0 = tu_mono_us();

    const char *gargv[2] = {"GET", "phr:test:kv:frozen"};
    assert_int_equal(send1(kv, &slow, 2, gargv), PHR_OK);
    run_until(&l, &slow.calls, 1000);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(slow.rc, PHR_ETIMEDOUT);
    int64_t elapsed_ms = (slow.at_us - t0) / 1000;
    assert_true(elapsed_ms >= timeout_ms - 10);
    assert_true(elapsed_ms < timeout_ms + 250);
    assert_false(kv_ready(kv)); /* the suspect connection was dropped */

    /* Keep the loop running through and past the pause: a late reply is ignored. */
    int never = 0;
    run_until(&l, &never, 1700 - (int)((tu_mono_us() - t0) / 1000));
    assert_int_equal(slow.calls, 1);

    /* Reconnected without restarting anything. */
    assert_true(wait_ready(&l, kv, 6000));
    const char *pargv[1] = {"PING"};
    assert_int_equal(send1(kv, &after, 1, pargv), PHR_OK);
    run_until(&l, &after.calls, 2000);
    assert_int_equal(after.calls, 1);
    assert_int_equal(after.rc, PHR_OK);
    assert_int_equal(after.type, REDIS_REPLY_STATUS);
    assert_int_equal(slow.calls, 1);

    kv_stats(kv, &st);
    assert_int_equal(st.timeouts, 1);
    assert_true(st.reconnects >= 1);
    assert_int_equal(st.connected, 1);
    kv_free(kv);
    loop_done(&l);
}

static void
test_server_restart(void **state)
{
    loop_t l;
    capture_t blk = {0}, c = {0}, set = {0}, get = {0};
    kv_stats_t st;
    int never = 0;

    loop_init(&l);
    kv_t *kv = kv_new(&l, "127.0.0.1", g_private_port, PRIVATE_PASSWORD, 1000);
    assert_true(wait_ready(&l, kv, 3000));
    const char *bargv[3] = {"BLPOP", "phr:test:kv:restart", "5"};
    assert_int_equal(send1(kv, &blk, 3, bargv), PHR_OK);
    run_until(&l, &never, 100);
    assert_int_equal(blk.calls, 0);

    private_stop();
    run_until(&l, &blk.calls, 1000);
    assert_int_equal(blk.calls, 1);
    assert_int_equal(blk.rc, PHR_EUNAVAIL);
    assert_false(kv_ready(kv));
    const char *pargv[1] = {"PING"};
    assert_int_equal(send1(kv, &c, 1, pargv), PHR_EUNAVAIL);

    run_until(&l, &never, 700); /* a few refused reconnects */
    assert_false(kv_ready(kv));
    assert_int_equal(private_start(g_private_port), 0);
    assert_true(wait_ready(&l, kv, 8000));

    const char *sargv[3] = {"SET", "phr:test:kv:restart2", "back"};
    assert_int_equal(send1(kv, &set, 3, sargv), PHR_OK);
    const char *gargv[2] = {"GET", "phr:test:kv:restart2"};
    assert_int_equal(send1(kv, &get, 2, gargv), PHR_OK);
    run_until(&l, &get.calls, 2000);
    assert_int_equal(set.rc, PHR_OK);
    assert_int_equal(get.rc, PHR_OK);
    assert_int_equal(get.len, 4);
    assert_memory_equal(get.str, "back", 4);
    assert_int_equal(blk.calls, 1);
    assert_int_equal(c.calls, 0);

    kv_stats(kv, &st);
    assert_true(st.reconnects >= 2);
    assert_int_equal(st.connected, 1);
    kv_free(kv);
    loop_done(&l);
}

int
main(void)
{
    const char *port = getenv("PHR_TEST_REDIS_PORT");
    char *end = NULL;
    long p;

    g_host = getenv("PHR_TEST_REDIS_HOST");
    g_password = getenv("PHR_TEST_REDIS_PASSWORD");
    if (g_host == NULL || g_host[0] == '\0' || port == NULL || port[0] == '\0') {
        fprintf(stderr, "test_kv: FAIL: PHR_TEST_REDIS_HOST and PHR_TEST_REDIS_PORT must be set "
                        "(and PHR_TEST_REDIS_PASSWORD if the server has one)\n");
        return 1;
    }
    errno = 0;
    p = strtol(port, &end, 10);
    if (errno != 0 || *end != '\0' || p <= 0 || p > 65535) {
        fprintf(stderr, "test_kv: FAIL: bad PHR_TEST_REDIS_PORT\n");
        return 1;
    }
    g_port = (int)p;
    if (g_password == NULL) {
        g_password = "";
    }
    signal(SIGPIPE, SIG_IGN);
    log_init("test_kv", "error");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_binary),
        cmocka_unit_test(test_pipeline_100),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_client_killed),
        cmocka_unit_test(test_free_pending),
        cmocka_unit_test(test_free_inside_callback),
        cmocka_unit_test_setup_teardown(test_timeout_frozen_server, private_setup,
                                        private_teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, private_setup, private_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
