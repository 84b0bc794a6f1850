/*
 * test_session.c - common/session.c (token format and hash, JSON, and the
 * Redis record) against a real Redis.
 *
 * Environment (required: the test FAILS when HOST or PORT is unset):
 *   PHR_TEST_REDIS_HOST      e.g. 127.0.0.1
 *   PHR_TEST_REDIS_PORT      e.g. 56379
 *   PHR_TEST_REDIS_PASSWORD  the requirepass of that server ("" or unset = none)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "kv.h"
#include "log.h"
#include "session.h"
#include "timeutil.h"

static const char *g_host;
static int g_port;
static const char *g_password;

/* ---- helpers ------------------------------------------------------------ */

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

typedef struct {
    struct event_base *base;
    struct event *tick;
    kv_t *kv;
    sess_reader_t *reader; /* on kv */
    redisContext *adm;
} fix_t;

static void
run_until(fix_t *f, const int *flag, int ms)
{
    int64_t deadline = tu_mono_us() + (int64_t)ms * 1000;
    while ((flag == NULL || *flag == 0) && tu_mono_us() < deadline) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static int
setup(void **state)
{
    struct timeval tv = {0, 5000};
    struct timeval ctv = {2, 0};
    fix_t *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(f->tick, &tv);
    kv_config_t cfg = {.host = g_host, .port = g_port, .password = g_password, .timeout_ms = 2000};
    f->kv = kv_create(f->base, &cfg);
    if (f->kv == NULL) {
        return -1;
    }
    int64_t deadline = tu_mono_us() + 3000000;
    while (!kv_ready(f->kv) && tu_mono_us() < deadline) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    if (!kv_ready(f->kv)) {
        fprintf(stderr, "test_session: redis %s:%d not ready\n", g_host, g_port);
        return -1;
    }
    f->reader = sess_reader_create(f->kv);
    if (f->reader == NULL) {
        return -1;
    }
    f->adm = redisConnectWithTimeout(g_host, g_port, ctv);
    if (f->adm == NULL || f->adm->err) {
        return -1;
    }
    if (g_password[0] != '\0') {
        redisReply *r = redisCommand(f->adm, "AUTH %s", g_password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            return -1;
        }
        freeReplyObject(r);
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fix_t *f = *state;
    if (f != NULL) {
        kv_free(f->kv);
        sess_reader_free(f->reader);
        redisFree(f->adm);
        event_free(f->tick);
        event_base_free(f->base);
        free(f);
    }
    return 0;
}

static void
sample(sess_t *s, int64_t now, int idle_s, int abs_s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->session_id, sizeof(s->session_id), "0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3a");
    snprintf(s->account_id, sizeof(s->account_id), "5e2d9c1a-7b4f-4e8a-b3c6-1f0a2d9e8c7b");
    snprintf(s->kind, sizeof(s->kind), "staff");
    snprintf(s->org_id, sizeof(s->org_id), "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
    snprintf(s->role, sizeof(s->role), "admin");
    snprintf(s->mfa, sizeof(s->mfa), "totp");
    s->created_ms = now;
    s->idle_expires_ms = now + (int64_t)idle_s * 1000;
    s->absolute_expires_ms = now + (int64_t)abs_s * 1000;
}

static void
key_of(const char *token, char *key, size_t cap)
{
    char hash[SESS_HASH_LEN + 1];
    sess_token_hash(token, hash);
    snprintf(key, cap, "phr:sess:%s", hash);
}

static long long
adm_int(fix_t *f, const char *cmd, const char *key)
{
    redisReply *r = redisCommand(f->adm, "%s %s", cmd, key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void
adm_set(fix_t *f, const char *key, const char *val)
{
    redisReply *r = redisCommand(f->adm, "SET %s %s EX 100", key, val);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

typedef struct {
    int calls;
    int rc;
    sess_t s;
} look_t;

static void
look_cb(int rc, const sess_t *s, void *ud)
{
    look_t *l = ud;
    l->calls++;
    l->rc = rc;
    if (s != NULL) {
        l->s = *s;
    }
}

typedef struct {
    int calls;
    int rc;
} done_t;

typedef struct {
    int calls;
    int rc;
    long long integer;
} capture_t;

static void
capture_cb(int rc, redisReply *reply, void *ud)
{
    capture_t *c = ud;
    c->calls++;
    c->rc = rc;
    c->integer = reply != NULL ? reply->integer : 0;
}

static void
done_cb(int rc, void *ud)
{
    done_t *d = ud;
    d->calls++;
    d->rc = rc;
}

/*
 * One more round trip on the kv connection: fire-and-forget follow-ups
 * (EXPIREAT, DEL) queued before it have been executed when it returns.
 */
static void
barrier(fix_t *f)
{
    done_t d = {0};
    static const char zero[] = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(sess_delete_hash(f->kv, zero, done_cb, &d), PHR_OK);
    run_until(f, &d.calls, 2000);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, PHR_ENOTFOUND);
}

static void
store(fix_t *f, const char *token, const sess_t *s)
{
    done_t d = {0};
    assert_int_equal(sess_store(f->kv, token, s, done_cb, &d), PHR_OK);
    assert_int_equal(d.calls, 0);
    run_until(f, &d.calls, 2000);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, PHR_OK);
}

static look_t
lookup(fix_t *f, const char *token, int idle_s)
{
    look_t l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(sess_lookup(f->reader, token, idle_s, look_cb, &l), PHR_OK);
    assert_int_equal(l.calls, 0);
    run_until(f, &l.calls, 2000);
    int extra = 0;
    run_until(f, &extra, 20);
    assert_int_equal(l.calls, 1);
    return l;
}

/* ---- offline tests ------------------------------------------------------ */

static void
test_token_hash_vector(void **state)
{
    char h[SESS_HASH_LEN + 1];
    sess_token_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sess_token_hash("", h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void
test_token_format(void **state)
{
    char a[SESS_TOKEN_LEN + 1], b[SESS_TOKEN_LEN + 1];
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int seen_last_char_bits = 0;

    for (int i = 0; i < 64; i++) {
        assert_int_equal(sess_token_new(a), PHR_OK);
        assert_int_equal(strlen(a), SESS_TOKEN_LEN);
        assert_int_equal(strspn(a, alphabet), SESS_TOKEN_LEN);
        /* 256 bits in 43 chars: the last char carries 4 bits, low 2 bits zero */
        const char *pos = strchr(alphabet, a[SESS_TOKEN_LEN - 1]);
        assert_non_null(pos);
        assert_int_equal((pos - alphabet) & 3, 0);
        seen_last_char_bits |= (int)(pos - alphabet);
        assert_int_equal(sess_token_new(b), PHR_OK);
        assert_string_not_equal(a, b);
    }
    assert_int_not_equal(seen_last_char_bits, 0);
}

static void
test_json_roundtrip(void **state)
{
    sess_t s, t;
    int64_t now = 1795682782123LL; /* 2026-11-26T17:46:22.123+09:00 */

    sample(&s, now, 1800, 43200);
    char *json = sess_to_json(&s);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"created_at\":\"2026-11-26T17:46:22.123+09:00\""));
    assert_non_null(strstr(json, "\"idle_expires_at\":\"2026-11-26T18:16:22.123+09:00\""));
    assert_int_equal(sess_from_json(json, &t), PHR_OK);
    free(json);
    assert_string_equal(t.session_id, s.session_id);
    assert_string_equal(t.account_id, s.account_id);
    assert_string_equal(t.kind, "staff");
    assert_string_equal(t.org_id, s.org_id);
    assert_string_equal(t.role, "admin");
    assert_string_equal(t.mfa, "totp");
    assert_true(t.created_ms == s.created_ms);
    assert_true(t.idle_expires_ms == s.idle_expires_ms);
    assert_true(t.absolute_expires_ms == s.absolute_expires_ms);

    /* patient: empty org_id and role are valid */
    sample(&s, now, 60, 120);
    snprintf(s.kind, sizeof(s.kind), "patient");
    s.org_id[0] = '\0';
    s.role[0] = '\0';
    snprintf(s.mfa, sizeof(s.mfa), "none");
    json = sess_to_json(&s);
    assert_non_null(json);
    assert_int_equal(sess_from_json(json, &t), PHR_OK);
    free(json);
    assert_string_equal(t.org_id, "");
    assert_string_equal(t.role, "");
    assert_int_equal(t.mfa_enrollment_required, 0);

    /* the MFA enrolment gate and a recovery-code login survive the round trip */
    sample(&s, now, 60, 120);
    s.mfa_enrollment_required = 1;
    snprintf(s.mfa, sizeof(s.mfa), "recovery_code");
    json = sess_to_json(&s);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"mfa_enrollment_required\":true"));
    assert_int_equal(sess_from_json(json, &t), PHR_OK);
    free(json);
    assert_int_equal(t.mfa_enrollment_required, 1);
    assert_string_equal(t.mfa, "recovery_code");

    /* records written before the field existed: absent = false; a non-boolean is corrupt */
    assert_int_equal(
        sess_from_json(
            "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"staff\",\"org_id\":\"\","
            "\"role\":\"staff\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
            &t),
        PHR_OK);
    assert_int_equal(t.mfa_enrollment_required, 0);
    assert_int_equal(
        sess_from_json(
            "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"staff\",\"org_id\":\"\","
            "\"role\":\"staff\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"mfa_enrollment_required\":\"yes\"}",
            &t),
        PHR_EINVAL);
}

static void
test_json_rejects(void **state)
{
    sess_t t;
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"session_id\":\"x\"}",
        /* bad kind */
        "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"root\",\"org_id\":\"\","
        "\"role\":\"\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
        /* bad time */
        "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"patient\",\"org_id\":\"\","
        "\"role\":\"\",\"mfa\":\"none\",\"created_at\":\"yesterday\","
        "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
        /* number where a string is required */
        "{\"session_id\":\"a\",\"account_id\":7,\"kind\":\"patient\",\"org_id\":\"\","
        "\"role\":\"\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
        /* too long for the field */
        "{\"session_id\":\"0123456789012345678901234567890123456789\",\"account_id\":\"b\","
        "\"kind\":\"patient\",\"org_id\":\"\",\"role\":\"\",\"mfa\":\"none\","
        "\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
        /* trailing garbage */
        "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"patient\",\"org_id\":\"\","
        "\"role\":\"\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"} x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sess_from_json(bad[i], &t), PHR_EINVAL);
    }
    /* the same record without the defect parses (so the cases above test what they claim) */
    assert_int_equal(
        sess_from_json(
            "{\"session_id\":\"a\",\"account_id\":\"b\",\"kind\":\"patient\",\"org_id\":\"\","
            "\"role\":\"\",\"mfa\":\"none\",\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"idle_expires_at\":\"2026-11-26T17:46:22.123+09:00\","
            "\"absolute_expires_at\":\"2026-11-26T17:46:22.123+09:00\"}",
            &t),
        PHR_OK);
}

/* ---- Redis tests -------------------------------------------------------- */

static void
test_store_lookup_roundtrip(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1], key[96];
    sess_t s;
    int64_t now = tu_now_ms();

    assert_int_equal(sess_token_new(token), PHR_OK);
    key_of(token, key, sizeof(key));
    sample(&s, now, 600, 3600);
    store(f, token, &s);

    long long ttl = adm_int(f, "TTL", key);
    assert_true(ttl > 590 && ttl <= 600);

    look_t l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_OK);
    assert_string_equal(l.s.session_id, s.session_id);
    assert_string_equal(l.s.account_id, s.account_id);
    assert_string_equal(l.s.kind, s.kind);
    assert_string_equal(l.s.org_id, s.org_id);
    assert_string_equal(l.s.role, s.role);
    assert_string_equal(l.s.mfa, s.mfa);
    assert_true(l.s.created_ms == s.created_ms);
    assert_true(l.s.absolute_expires_ms == s.absolute_expires_ms);

    /* delete by hash */
    char hash[SESS_HASH_LEN + 1];
    done_t d = {0};
    sess_token_hash(token, hash);
    assert_int_equal(sess_delete_hash(f->kv, hash, done_cb, &d), PHR_OK);
    run_until(f, &d.calls, 2000);
    assert_int_equal(d.rc, PHR_OK);
    assert_int_equal(adm_int(f, "EXISTS", key), 0);
    l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);
    assert_int_equal(sess_delete_hash(f->kv, "not-a-hash", done_cb, &d), PHR_EINVAL);
}

/* A token whose hash starts with the same byte as |hash| modulo 64 (the lookup cache's slot). */
static void
same_slot_token(const char *hash, char *token)
{
    char h[SESS_HASH_LEN + 1];
    unsigned want = (unsigned)strtoul((char[]){hash[0], hash[1], '\0'}, NULL, 16) % 64;

    for (int i = 0; i < 100000; i++) {
        assert_int_equal(sess_token_new(token), PHR_OK);
        sess_token_hash(token, h);
        if ((unsigned)strtoul((char[]){h[0], h[1], '\0'}, NULL, 16) % 64 == want &&
            strcmp(h, hash) != 0) {
            return;
        }
    }
    fail_msg("no token in the same slot");
}

/* Lookups parse a record once; whatever changes in Redis is seen by the next lookup. */
static void
test_lookup_follows_record(void **state)
{
    fix_t *f = *state;
    char t1[SESS_TOKEN_LEN + 1], t2[SESS_TOKEN_LEN + 1], h1[SESS_HASH_LEN + 1], key[96];
    sess_t s1, s2;
    int64_t now = tu_now_ms();

    assert_int_equal(sess_token_new(t1), PHR_OK);
    sess_token_hash(t1, h1);
    same_slot_token(h1, t2);
    sample(&s1, now, 600, 3600);
    store(f, t1, &s1);
    for (int i = 0; i < 2; i++) {
        look_t l = lookup(f, t1, 600);
        assert_int_equal(l.rc, PHR_OK);
        assert_string_equal(l.s.role, "admin");
        assert_string_equal(l.s.token_hash, h1);
    }
    /* another session in the same slot, then the first again */
    sample(&s2, now, 600, 3600);
    snprintf(s2.kind, sizeof(s2.kind), "patient");
    s2.role[0] = s2.org_id[0] = '\0';
    store(f, t2, &s2);
    look_t l = lookup(f, t2, 600);
    assert_int_equal(l.rc, PHR_OK);
    assert_string_equal(l.s.kind, "patient");
    l = lookup(f, t1, 600);
    assert_string_equal(l.s.kind, "staff");
    assert_string_equal(l.s.role, "admin");
    /* the record changed behind the cache: the new text is parsed */
    snprintf(s1.role, sizeof(s1.role), "staff");
    char *json = sess_to_json(&s1);
    assert_non_null(json);
    key_of(t1, key, sizeof(key));
    adm_set(f, key, json);
    free(json);
    l = lookup(f, t1, 600);
    assert_int_equal(l.rc, PHR_OK);
    assert_string_equal(l.s.role, "staff");
    /* and a record corrupted since is refused, not answered from the cache */
    adm_set(f, key, "{}");
    assert_int_equal(lookup(f, t1, 600).rc, PHR_ENOTFOUND);
}

static void
test_idle_slide(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1], key[96];
    sess_t s;
    int64_t now = tu_now_ms();

    assert_int_equal(sess_token_new(token), PHR_OK);
    key_of(token, key, sizeof(key));
    sample(&s, now, 100, 7200);
    store(f, token, &s);
    long long ttl = adm_int(f, "TTL", key);
    assert_true(ttl > 90 && ttl <= 100);

    int64_t before = tu_now_ms();
    look_t l = lookup(f, token, 1000);
    int64_t after = tu_now_ms();
    assert_int_equal(l.rc, PHR_OK);
    ttl = adm_int(f, "TTL", key);
    assert_true(ttl > 990 && ttl <= 1000); /* slid */
    assert_true(l.s.idle_expires_ms >= before + 1000000);
    assert_true(l.s.idle_expires_ms <= after + 1000000);
    adm_int(f, "DEL", key);
}

static void
test_absolute_cap(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1], key[96];
    sess_t s;
    int64_t now = tu_now_ms();

    assert_int_equal(sess_token_new(token), PHR_OK);
    key_of(token, key, sizeof(key));
    sample(&s, now, 20, 50);
    store(f, token, &s);

    look_t l = lookup(f, token, 1000);
    assert_int_equal(l.rc, PHR_OK);
    assert_true(l.s.idle_expires_ms == s.absolute_expires_ms);
    /* the EXPIREAT follow-up is pipelined behind the GETEX: one more round trip sees it */
    barrier(f);
    long long ttl = adm_int(f, "TTL", key);
    assert_true(ttl >= 45 && ttl <= 50);

    /* store refuses a record whose absolute expiry has passed */
    done_t d = {0};
    sample(&s, now, 20, -1);
    assert_int_equal(sess_store(f->kv, token, &s, done_cb, &d), PHR_EINVAL);
    adm_int(f, "DEL", key);
}

static void
test_absolutely_expired_deleted(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1], key[96];
    sess_t s;
    int64_t now = tu_now_ms();

    assert_int_equal(sess_token_new(token), PHR_OK);
    key_of(token, key, sizeof(key));
    /* written directly: sess_store would refuse it */
    sample(&s, now - 7200000, 3600, 3600);
    s.idle_expires_ms = now + 60000;
    s.absolute_expires_ms = now - 1000;
    char *json = sess_to_json(&s);
    assert_non_null(json);
    adm_set(f, key, json);
    free(json);
    assert_int_equal(adm_int(f, "EXISTS", key), 1);

    look_t l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);
    /* the DEL follow-up is queued behind the GETEX; let it through */
    barrier(f);
    assert_int_equal(adm_int(f, "EXISTS", key), 0);
}

static void
test_unknown_token(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1];

    assert_int_equal(sess_token_new(token), PHR_OK);
    look_t l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);
    l = lookup(f, "not even a token", 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);
}

static void
test_corrupt_record(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1], key[96];

    assert_int_equal(sess_token_new(token), PHR_OK);
    key_of(token, key, sizeof(key));
    adm_set(f, key, "{not-json");
    look_t l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);

    adm_set(f, key, "{\"session_id\":\"x\"}");
    l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);

    /* wrong Redis type */
    adm_int(f, "DEL", key);
    redisReply *r = redisCommand(f->adm, "LPUSH %s x", key);
    assert_non_null(r);
    freeReplyObject(r);
    l = lookup(f, token, 600);
    assert_int_equal(l.rc, PHR_ENOTFOUND);
    adm_int(f, "DEL", key);
}

static void
test_redis_down(void **state)
{
    fix_t *f = *state;
    char token[SESS_TOKEN_LEN + 1];
    look_t l = {0};
    done_t d = {0};
    sess_t s;
    int never = 0;

    /* a kv whose server is not there */
    kv_config_t cfg = {.host = "127.0.0.1", .port = 1, .password = NULL, .timeout_ms = 200};
    kv_t *down = kv_create(f->base, &cfg);
    assert_non_null(down);
    sess_reader_t *down_reader = sess_reader_create(down);
    assert_non_null(down_reader);
    run_until(f, &never, 100);
    assert_int_equal(sess_token_new(token), PHR_OK);
    sample(&s, tu_now_ms(), 60, 120);
    assert_int_equal(sess_lookup(down_reader, token, 600, look_cb, &l), PHR_EUNAVAIL);
    assert_int_equal(sess_store(down, token, &s, done_cb, &d), PHR_EUNAVAIL);
    run_until(f, &never, 50);
    assert_int_equal(l.calls, 0);
    assert_int_equal(d.calls, 0);
    kv_free(down);
    sess_reader_free(down_reader);

    /*
     * Connection lost while the lookup is in flight: park our connection in a
     * BLPOP so the pipelined GETEX waits behind it, then kill that connection.
     */
    capture_t id = {0}, blk = {0};
    char key[96], idstr[32];
    snprintf(key, sizeof(key), "phr:test:sess:%ld:never", (long)getpid());
    const char *idargv[2] = {"CLIENT", "ID"};
    size_t idlen[2] = {6, 2};
    assert_int_equal(kv_command_argv(f->kv, capture_cb, &id, 2, idargv, idlen), PHR_OK);
    run_until(f, &id.calls, 2000);
    assert_int_equal(id.rc, PHR_OK);
    const char *bargv[3] = {"BLPOP", key, "1"};
    size_t blen[3] = {5, strlen(key), 1};
    assert_int_equal(kv_command_argv(f->kv, capture_cb, &blk, 3, bargv, blen), PHR_OK);
    memset(&l, 0, sizeof(l));
    assert_int_equal(sess_lookup(f->reader, token, 600, look_cb, &l), PHR_OK);
    run_until(f, &never, 100);
    assert_int_equal(l.calls, 0);
    snprintf(idstr, sizeof(idstr), "%lld", id.integer);
    redisReply *r = redisCommand(f->adm, "CLIENT KILL ID %s", idstr);
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    run_until(f, &l.calls, 1000);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.rc, PHR_EUNAVAIL);
    assert_int_equal(blk.rc, PHR_EUNAVAIL);

    /* kv_free with a lookup pending: PHR_ECLOSED */
    int64_t deadline = tu_mono_us() + 3000000;
    while (!kv_ready(f->kv) && tu_mono_us() < deadline) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_true(kv_ready(f->kv));
    assert_int_equal(kv_command_argv(f->kv, capture_cb, &blk, 3, bargv, blen), PHR_OK);
    memset(&l, 0, sizeof(l));
    assert_int_equal(sess_lookup(f->reader, token, 600, look_cb, &l), PHR_OK);
    kv_free(f->kv);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.rc, PHR_ECLOSED);
    f->kv = NULL;
}

/* ---- issue 3: new fields, the per-account index ------------------------- */

static void
test_json_new_fields(void **state)
{
    sess_t s, t;
    int64_t now = 1795682782123LL;

    sample(&s, now, 1800, 43200);
    s.must_change_password = 1;
    s.authenticated_ms = now + 5000;
    char *json = sess_to_json(&s);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"must_change_password\":true"));
    assert_non_null(strstr(json, "\"authenticated_at\":\"2026-11-26T17:46:27.123+09:00\""));
    assert_null(strstr(json, "token_hash"));
    assert_int_equal(sess_from_json(json, &t), PHR_OK);
    free(json);
    assert_int_equal(t.must_change_password, 1);
    assert_true(t.authenticated_ms == now + 5000);

    /* a record written before these fields existed still reads */
    static const char old[] =
        "{\"session_id\":\"0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3a\","
        "\"account_id\":\"5e2d9c1a-7b4f-4e8a-b3c6-1f0a2d9e8c7b\",\"kind\":\"patient\","
        "\"org_id\":\"\",\"role\":\"\",\"mfa\":\"none\","
        "\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T18:16:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-27T05:46:22.123+09:00\"}";
    assert_int_equal(sess_from_json(old, &t), PHR_OK);
    assert_int_equal(t.must_change_password, 0);
    assert_true(t.authenticated_ms == now);

    /* but a wrong type is refused */
    static const char badtype[] =
        "{\"session_id\":\"0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3a\","
        "\"account_id\":\"5e2d9c1a-7b4f-4e8a-b3c6-1f0a2d9e8c7b\",\"kind\":\"patient\","
        "\"org_id\":\"\",\"role\":\"\",\"mfa\":\"none\","
        "\"created_at\":\"2026-11-26T17:46:22.123+09:00\","
        "\"idle_expires_at\":\"2026-11-26T18:16:22.123+09:00\","
        "\"absolute_expires_at\":\"2026-11-27T05:46:22.123+09:00\","
        "\"must_change_password\":\"yes\"}";
    assert_int_equal(sess_from_json(badtype, &t), PHR_EINVAL);
}

typedef struct {
    int calls;
    int rc;
    size_t n;
    sess_t items[8];
} list_t;

static void
list_cb(int rc, const sess_t *items, size_t n, void *ud)
{
    list_t *l = ud;
    l->calls++;
    l->rc = rc;
    l->n = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        l->items[i] = items[i];
    }
}

static list_t
list(fix_t *f, const char *account_id)
{
    list_t l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(sess_list(f->kv, account_id, list_cb, &l), PHR_OK);
    run_until(f, &l.calls, 2000);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.rc, PHR_OK);
    return l;
}

typedef struct {
    int calls;
    int rc;
    long count;
} count_t;

static void
count_cb(int rc, long count, void *ud)
{
    count_t *c = ud;
    c->calls++;
    c->rc = rc;
    c->count = count;
}

static long
revoke_n(fix_t *f, const char *account_id, const char *hash, int only)
{
    count_t c = {0};
    assert_int_equal(sess_revoke(f->kv, account_id, hash, only, count_cb, &c), PHR_OK);
    run_until(f, &c.calls, 2000);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, PHR_OK);
    return c.count;
}

static void
test_account_index(void **state)
{
    fix_t *f = *state;
    char t1[SESS_TOKEN_LEN + 1], t2[SESS_TOKEN_LEN + 1], t3[SESS_TOKEN_LEN + 1];
    char h1[SESS_HASH_LEN + 1], h2[SESS_HASH_LEN + 1], h3[SESS_HASH_LEN + 1], k[128];
    char acct[37];
    sess_t s;
    int64_t now = tu_now_ms();

    snprintf(acct, sizeof(acct), "%08x-0000-4000-8000-000000000001", (unsigned)getpid());
    sess_token_new(t1);
    sess_token_new(t2);
    sess_token_new(t3);
    sess_token_hash(t1, h1);
    sess_token_hash(t2, h2);
    sess_token_hash(t3, h3);
    sample(&s, now, 600, 3600);
    snprintf(s.account_id, sizeof(s.account_id), "%s", acct);
    store(f, t1, &s);
    snprintf(s.session_id, sizeof(s.session_id), "0b7c6a52-3f1e-4c7d-9a51-000000000002");
    store(f, t2, &s);
    snprintf(s.session_id, sizeof(s.session_id), "0b7c6a52-3f1e-4c7d-9a51-000000000003");
    store(f, t3, &s);

    /* the index expires with the sessions */
    snprintf(k, sizeof(k), "phr:acct:%s:sess", acct);
    long long ttl = adm_int(f, "TTL", k);
    assert_true(ttl > 3500 && ttl <= 3601);
    assert_int_equal(adm_int(f, "SCARD", k), 3);

    /* lookup reports the token hash */
    look_t l = lookup(f, t2, 600);
    assert_int_equal(l.rc, PHR_OK);
    assert_string_equal(l.s.token_hash, h2);

    list_t ls = list(f, acct);
    assert_int_equal(ls.n, 3);
    int seen = 0;
    for (size_t i = 0; i < ls.n; i++) {
        seen |= strcmp(ls.items[i].token_hash, h1) == 0 ? 1 : 0;
        seen |= strcmp(ls.items[i].token_hash, h2) == 0 ? 2 : 0;
        seen |= strcmp(ls.items[i].token_hash, h3) == 0 ? 4 : 0;
    }
    assert_int_equal(seen, 7);

    /* a record that expired on its own is dropped from the index when listed */
    key_of(t3, k, sizeof(k));
    assert_int_equal(adm_int(f, "DEL", k), 1);
    ls = list(f, acct);
    assert_int_equal(ls.n, 2);
    snprintf(k, sizeof(k), "phr:acct:%s:sess", acct);
    assert_int_equal(adm_int(f, "SCARD", k), 2);

    /* rewrite keeps the TTL and changes the record */
    l = lookup(f, t1, 600);
    l.s.must_change_password = 1;
    done_t d = {0};
    assert_int_equal(sess_rewrite(f->kv, &l.s, done_cb, &d), PHR_OK);
    run_until(f, &d.calls, 2000);
    assert_int_equal(d.rc, PHR_OK);
    key_of(t1, k, sizeof(k));
    ttl = adm_int(f, "TTL", k);
    assert_true(ttl > 590 && ttl <= 600);
    l = lookup(f, t1, 600);
    assert_int_equal(l.s.must_change_password, 1);

    /* revoke all but t1, then t1 alone */
    assert_int_equal(revoke_n(f, acct, h1, 0), 1);
    assert_int_equal(lookup(f, t2, 600).rc, PHR_ENOTFOUND);
    assert_int_equal(lookup(f, t1, 600).rc, PHR_OK);
    assert_int_equal(revoke_n(f, acct, h2, 1), 0); /* already gone */
    assert_int_equal(revoke_n(f, acct, h1, 1), 1);
    assert_int_equal(lookup(f, t1, 600).rc, PHR_ENOTFOUND);
    assert_int_equal(list(f, acct).n, 0);

    /* rewriting a deleted record does not resurrect it */
    d.calls = 0;
    assert_int_equal(sess_rewrite(f->kv, &l.s, done_cb, &d), PHR_OK);
    run_until(f, &d.calls, 2000);
    assert_int_equal(d.rc, PHR_ENOTFOUND);
    assert_int_equal(lookup(f, t1, 600).rc, PHR_ENOTFOUND);

    /* bad arguments */
    assert_int_equal(sess_revoke(f->kv, acct, "nothex", 1, count_cb, NULL), PHR_EINVAL);
    assert_int_equal(sess_revoke(f->kv, acct, NULL, 1, count_cb, NULL), PHR_EINVAL);
    assert_int_equal(sess_list(f->kv, "", list_cb, NULL), PHR_EINVAL);
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
        fprintf(stderr, "test_session: FAIL: PHR_TEST_REDIS_HOST and PHR_TEST_REDIS_PORT must be "
                        "set (and PHR_TEST_REDIS_PASSWORD if the server has one)\n");
        return 1;
    }
    errno = 0;
    p = strtol(port, &end, 10);
    if (errno != 0 || *end != '\0' || p <= 0 || p > 65535) {
        fprintf(stderr, "test_session: FAIL: bad PHR_TEST_REDIS_PORT\n");
        return 1;
    }
    g_port = (int)p;
    if (g_password == NULL) {
        g_password = "";
    }
    log_init("test_session", "error");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_hash_vector),
        cmocka_unit_test(test_token_format),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_json_rejects),
        cmocka_unit_test(test_json_new_fields),
        cmocka_unit_test_setup_teardown(test_account_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_lookup_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_follows_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_slide, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolutely_expired_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
