/*
 * test_auth_pwhash.c - services/auth/pwhash.c: argon2id hashing, the stored
 * format, peppers, needs_rehash, NFKC equivalence, no truncation, the dummy
 * hash and the worker-pool versions. No external services needed.
 *
 * argon2_ctx() is wrapped here (the test binary's definition wins over
 * libargon2's for pwhash.o, the real one is found with dlsym(RTLD_NEXT)): the
 * wrapper counts calls, records their cost parameters and thread, and can hold
 * calls at a gate so the queue-full test is deterministic. Costs are compared
 * by counting argon2 calls and their parameters, never by wall time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

#include <argon2.h>
#include <dlfcn.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/auth/password.h"
#include "../../services/auth/pwhash.h"
#include "err.h"
#include "workq.h"

/* ---- argon2_ctx wrapper ------------------------------------------------------- */

typedef int (*t_argon2_ctx_fn)(argon2_context *ctx, argon2_type type);

static pthread_mutex_t t_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t t_cond = PTHREAD_COND_INITIALIZER;
static int t_gate_closed;
static int t_waiting; /* calls held at the gate */
static int t_calls;
static int t_calls_on_loop;
static uint32_t t_last_m, t_last_t, t_last_p;
static int t_last_type;
static pthread_t t_loop_thread;

int
argon2_ctx(argon2_context *ctx, argon2_type type)
{
    static t_argon2_ctx_fn real;
    t_argon2_ctx_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);

    if (fn == NULL) {
        void *sym = dlsym(RTLD_NEXT, "argon2_ctx");
        memcpy(&fn, &sym, sizeof(fn));
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    pthread_mutex_lock(&t_mu);
    if (t_gate_closed) {
        t_waiting++;
        pthread_cond_broadcast(&t_cond);
        while (t_gate_closed) {
            pthread_cond_wait(&t_cond, &t_mu);
        }
        t_waiting--;
    }
    t_calls++;
    t_calls_on_loop += pthread_equal(pthread_self(), t_loop_thread) != 0;
    t_last_m = ctx->m_cost;
    t_last_t = ctx->t_cost;
    t_last_p = ctx->lanes;
    t_last_type = (int)type;
    pthread_mutex_unlock(&t_mu);
    return fn(ctx, type);
}

static void
t_gate(int closed)
{
    pthread_mutex_lock(&t_mu);
    t_gate_closed = closed;
    pthread_cond_broadcast(&t_cond);
    pthread_mutex_unlock(&t_mu);
}

static void
t_reset_counts(void)
{
    pthread_mutex_lock(&t_mu);
    t_calls = 0;
    t_calls_on_loop = 0;
    t_last_m = t_last_t = t_last_p = 0;
    t_last_type = -1;
    pthread_mutex_unlock(&t_mu);
}

/* Waits (up to 10 s) until |n| argon2 calls are held at the closed gate. */
static int
t_wait_held(int n)
{
    int64_t end = t_now_ms() + 10000;

    pthread_mutex_lock(&t_mu);
    while (t_waiting < n && t_now_ms() < end) {
        pthread_mutex_unlock(&t_mu);
        t_sleep_ms(1);
        pthread_mutex_lock(&t_mu);
    }
    int held = t_waiting;
    pthread_mutex_unlock(&t_mu);
    return held;
}

static int
t_count(void)
{
    pthread_mutex_lock(&t_mu);
    int n = t_calls;
    pthread_mutex_unlock(&t_mu);
    return n;
}

/* ---- helpers ------------------------------------------------------------------ */

static const char t_current_prefix[] = "$argon2id$v=19$m=19456,t=2,p=1$";

static pwhash_pepper_t
t_pepper(const char *id, unsigned char fill)
{
    pwhash_pepper_t p;

    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "%s", id);
    memset(p.key, fill, 32);
    p.keylen = 32;
    return p;
}

/* Decodes unpadded base64 |n| chars at |s| into |out|; returns the byte count. */
static size_t
t_b64_decode(const char *s, size_t n, unsigned char *out)
{
    char buf[128];
    unsigned char tmp[96];
    size_t padded = (n + 3) / 4 * 4;

    assert_true(padded < sizeof(buf));
    memcpy(buf, s, n);
    memset(buf + n, '=', padded - n);
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)buf, (int)padded);
    assert_true(len >= 0);
    len -= (int)(padded - n == 2 ? 2 : padded - n == 1 ? 1 : 0);
    memcpy(out, tmp, (size_t)len);
    return (size_t)len;
}

static char *
t_norm(const char *raw)
{
    char *out = NULL;
    assert_int_equal(pw_normalize(raw, &out), PHR_OK);
    return out;
}

/* ---- known answers ------------------------------------------------------------ */

/* RFC 9106 section 5.3 (Argon2id test vector) through libargon2's argon2_ctx. */
static void
test_rfc9106_vector(void **state)
{
    static const uint8_t expect[32] = {0x0d, 0x64, 0x0d, 0xf5, 0x8d, 0x78, 0x76, 0x6c,
                                       0x08, 0xc0, 0x37, 0xa3, 0x4a, 0x8b, 0x53, 0xc9,
                                       0xd0, 0x1e, 0xf0, 0x45, 0x2d, 0x75, 0xb6, 0x5e,
                                       0xb5, 0x25, 0x20, 0xe9, 0x6b, 0x01, 0xe6, 0x59};
    uint8_t pwd[32], salt[16], secret[8], ad[12], tag[32];
    argon2_context ctx;

    memset(pwd, 1, sizeof(pwd));
    memset(salt, 2, sizeof(salt));
    memset(secret, 3, sizeof(secret));
    memset(ad, 4, sizeof(ad));
    memset(&ctx, 0, sizeof(ctx));
    ctx.out = tag;
    ctx.outlen = sizeof(tag);
    ctx.pwd = pwd;
    ctx.pwdlen = sizeof(pwd);
    ctx.salt = salt;
    ctx.saltlen = sizeof(salt);
    ctx.secret = secret;
    ctx.secretlen = sizeof(secret);
    ctx.ad = ad;
    ctx.adlen = sizeof(ad);
    ctx.t_cost = 3;
    ctx.m_cost = 32;
    ctx.lanes = 4;
    ctx.threads = 4;
    ctx.version = ARGON2_VERSION_13;
    assert_int_equal(argon2_ctx(&ctx, Argon2_id), ARGON2_OK);
    assert_memory_equal(tag, expect, sizeof(expect));
}

/*
 * pwhash_hash's output equals what libargon2's own encoder produces for the
 * same password and salt, and strings from libargon2 verify here.
 */
static void
test_matches_libargon2(void **state)
{
    static const char pw[] = "correct horse battery staple 1A";
    char enc[PWHASH_ENCODED_MAX], ref[PWHASH_ENCODED_MAX];
    unsigned char salt[64];

    assert_int_equal(pwhash_hash(pw, NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(strncmp(enc, t_current_prefix, strlen(t_current_prefix)), 0);
    const char *s = enc + strlen(t_current_prefix);
    const char *dollar = strchr(s, '$');
    assert_non_null(dollar);
    assert_int_equal(dollar - s, 22);         /* 16 bytes */
    assert_int_equal(strlen(dollar + 1), 43); /* 32 bytes */
    size_t saltlen = t_b64_decode(s, (size_t)(dollar - s), salt);
    assert_int_equal(saltlen, 16);
    assert_int_equal(
        argon2id_hash_encoded(2, 19456, 1, pw, strlen(pw), salt, saltlen, 32, ref, sizeof(ref)),
        ARGON2_OK);
    assert_string_equal(enc, ref);

    /* A fixed-salt string made by libargon2 verifies, and is current. */
    assert_int_equal(argon2id_hash_encoded(2, 19456, 1, "Password1", 9, "somesaltsomesalt", 16, 32,
                                           ref, sizeof(ref)),
                     ARGON2_OK);
    assert_int_equal(pwhash_verify(ref, "Password1", NULL, 0), PHR_OK);
    assert_int_equal(pwhash_verify(ref, "Password2", NULL, 0), PHR_EDENIED);
    assert_int_equal(pwhash_needs_rehash(ref, NULL), 0);

    /* Two hashes of one password differ (random salt) and both verify. */
    assert_int_equal(pwhash_hash(pw, NULL, ref, sizeof(ref)), PHR_OK);
    assert_string_not_equal(enc, ref);
    assert_int_equal(pwhash_verify(ref, pw, NULL, 0), PHR_OK);
}

/* ---- verify ---------------------------------------------------------------------- */

static void
test_verify_basic(void **state)
{
    char enc[PWHASH_ENCODED_MAX];

    assert_int_equal(pwhash_hash("Password1", NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_verify(enc, "Password1", NULL, 0), PHR_OK);
    assert_int_equal(pwhash_verify(enc, "password1", NULL, 0), PHR_EDENIED);
    assert_int_equal(pwhash_verify(enc, "Password1 ", NULL, 0), PHR_EDENIED);
    assert_int_equal(pwhash_verify(enc, "", NULL, 0), PHR_EDENIED);
    /* A too-small output buffer is refused, not truncated. */
    char small[40];
    assert_int_equal(pwhash_hash("Password1", NULL, small, sizeof(small)), PHR_EINVAL);
    assert_string_equal(small, "");
}

static void
test_verify_malformed(void **state)
{
    char enc[PWHASH_ENCODED_MAX], bad[PWHASH_ENCODED_MAX + 16];
    static const char salt_tag[] = "c29tZXNhbHRzb21lc2FsdA$"
                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    static const char *const heads[] = {
        "$argon2i$v=19$m=19456,t=2,p=1$",      "$argon2d$v=19$m=19456,t=2,p=1$",
        "$argon2id$v=16$m=19456,t=2,p=1$",     "$argon2id$m=19456,t=2,p=1$",
        "$argon2id$v=19$m=0,t=2,p=1$",         "$argon2id$v=19$m=99999999,t=2,p=1$",
        "$argon2id$v=19$m=19456,t=0,p=1$",     "$argon2id$v=19$m=19456,t=2,p=0$",
        "$argon2id$v=19$m=19456,t=2,p=1,x=1$", "$argon2id$v=19$m=019456,t=2,p=1$",
        "$argon2id$v=19$t=2,m=19456,p=1$",     "$argon2id$v=19$m=19456,t=2,p=1",
        "$argon2id$v=19$m=-1,t=2,p=1$",        "$argon2id$v=19$m=4294967297,t=2,p=1$",
    };

    assert_int_equal(pwhash_hash("Password1", NULL, enc, sizeof(enc)), PHR_OK);
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        snprintf(bad, sizeof(bad), "%s%s", heads[i], salt_tag);
        if (pwhash_verify(bad, "Password1", NULL, 0) != PHR_EINVAL) {
            fail_msg("accepted malformed %s", bad);
        }
        assert_int_equal(pwhash_needs_rehash(bad, NULL), 1);
    }
    /* The same head with a well-formed salt and tag parses (wrong tag: denied). */
    snprintf(bad, sizeof(bad), "%s%s", t_current_prefix, salt_tag);
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EDENIED);

    static const char *const whole[] = {"", "$", "argon2id", "$phrpepper$",
                                        "$phrpepper$$argon2id$"};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        assert_int_equal(pwhash_verify(whole[i], "Password1", NULL, 0), PHR_EINVAL);
    }
    /* Truncated tag, extra character, bad base64, missing tag. */
    size_t n = strlen(enc);
    memcpy(bad, enc, n - 2); /* 41 tag characters: no byte length fits */
    bad[n - 2] = '\0';
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    snprintf(bad, sizeof(bad), "%s=", enc); /* padding is not part of the format */
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    snprintf(bad, sizeof(bad), "%s$", enc);
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    snprintf(bad, sizeof(bad), "%sAA", enc); /* 45 characters: no byte length fits */
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    snprintf(bad, sizeof(bad), "%s", enc);
    bad[n - 5] = '*';
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    snprintf(bad, sizeof(bad), "%s", enc);
    *strrchr(bad, '$') = '\0';
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EINVAL);
    /* A flipped (valid base64) tag character: a mismatch, not malformed. */
    snprintf(bad, sizeof(bad), "%s", enc);
    bad[n - 5] = bad[n - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(pwhash_verify(bad, "Password1", NULL, 0), PHR_EDENIED);
}

/* ---- peppers ---------------------------------------------------------------------- */

static void
test_pepper(void **state)
{
    pwhash_pepper_t v1 = t_pepper("v1", 0x11), v2 = t_pepper("v2", 0x22);
    pwhash_pepper_t v1_other = t_pepper("v1", 0x33), none = t_pepper("", 0);
    pwhash_pepper_t both[2] = {v2, v1};
    char enc[PWHASH_ENCODED_MAX];

    assert_int_equal(pwhash_hash("Password1", &v1, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(strncmp(enc, "$phrpepper$v1$argon2id$v=19$m=19456,t=2,p=1$", 44), 0);
    assert_int_equal(pwhash_verify(enc, "Password1", &v1, 1), PHR_OK);
    assert_int_equal(pwhash_verify(enc, "Password1", both, 2), PHR_OK);
    assert_int_equal(pwhash_verify(enc, "Password2", both, 2), PHR_EDENIED);
    /* Unknown pepper id: malformed for us. */
    assert_int_equal(pwhash_verify(enc, "Password1", NULL, 0), PHR_EINVAL);
    assert_int_equal(pwhash_verify(enc, "Password1", &v2, 1), PHR_EINVAL);
    /* Same id, another key: no match. */
    assert_int_equal(pwhash_verify(enc, "Password1", &v1_other, 1), PHR_EDENIED);
    /* The pepper is really applied: without the prefix the argon2 string does not verify. */
    assert_int_equal(pwhash_verify(enc + strlen("$phrpepper$v1"), "Password1", NULL, 0),
                     PHR_EDENIED);
    /* An empty id means no pepper. */
    assert_int_equal(pwhash_hash("Password1", &none, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(strncmp(enc, t_current_prefix, strlen(t_current_prefix)), 0);
    assert_int_equal(pwhash_verify(enc, "Password1", both, 2), PHR_OK);
    /* Unusable peppers are refused. */
    pwhash_pepper_t badid = t_pepper("v$1", 1), nokey = t_pepper("v3", 1);
    nokey.keylen = 0;
    assert_int_equal(pwhash_hash("Password1", &badid, enc, sizeof(enc)), PHR_EINVAL);
    assert_int_equal(pwhash_hash("Password1", &nokey, enc, sizeof(enc)), PHR_EINVAL);
}

static void
test_needs_rehash(void **state)
{
    pwhash_pepper_t v1 = t_pepper("v1", 0x11), v2 = t_pepper("v2", 0x22), none = t_pepper("", 0);
    char enc[PWHASH_ENCODED_MAX], peppered[PWHASH_ENCODED_MAX], ref[PWHASH_ENCODED_MAX];

    assert_int_equal(pwhash_hash("Password1", NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_needs_rehash(enc, NULL), 0);
    assert_int_equal(pwhash_needs_rehash(enc, &none), 0);
    assert_int_equal(pwhash_needs_rehash(enc, &v1), 1);
    assert_int_equal(pwhash_hash("Password1", &v1, peppered, sizeof(peppered)), PHR_OK);
    assert_int_equal(pwhash_needs_rehash(peppered, &v1), 0);
    assert_int_equal(pwhash_needs_rehash(peppered, &v2), 1);
    assert_int_equal(pwhash_needs_rehash(peppered, NULL), 1);
    /* Other parameters (Keycloak's m=7168,t=5; t=3; p=2; 16-byte tag; 8-byte salt). */
    static const struct {
        uint32_t t, m, p, saltlen, taglen;
    } other[] = {{5, 7168, 1, 16, 32},
                 {3, 19456, 1, 16, 32},
                 {2, 19456, 2, 16, 32},
                 {2, 19456, 1, 16, 16},
                 {2, 19456, 1, 8, 32}};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        assert_int_equal(argon2id_hash_encoded(other[i].t, other[i].m, other[i].p, "Password1", 9,
                                               "somesaltsomesalt", other[i].saltlen,
                                               other[i].taglen, ref, sizeof(ref)),
                         ARGON2_OK);
        assert_int_equal(pwhash_verify(ref, "Password1", NULL, 0), PHR_OK);
        assert_int_equal(pwhash_needs_rehash(ref, NULL), 1);
    }
    assert_int_equal(pwhash_needs_rehash("garbage", NULL), 1);
}

/* ---- NFKC and truncation ---------------------------------------------------------- */

static void
test_nfkc_equivalence(void **state)
{
    char enc[PWHASH_ENCODED_MAX];
    char *fw = t_norm("\xef\xbc\xb0\xef\xbd\x81\xef\xbd\x93\xef\xbd\x93\xef\xbd\x97"
                      "\xef\xbd\x8f\xef\xbd\x92\xef\xbd\x84\xef\xbc\x91"); /* Ｐａｓｓｗｏｒｄ１ */
    char *ascii = t_norm("Password1");
    char *lig = t_norm("\xef\xac\x81sh-Tank1"); /* ﬁsh-Tank1 */
    char *plain = t_norm("fish-Tank1");

    assert_string_equal(fw, "Password1");
    assert_int_equal(pwhash_hash(fw, NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_verify(enc, ascii, NULL, 0), PHR_OK);
    assert_int_equal(pwhash_hash(lig, NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_verify(enc, plain, NULL, 0), PHR_OK);
    /* Without normalisation they differ: normalising is what makes them equal. */
    assert_int_equal(pwhash_verify(enc, "\xef\xac\x81sh-Tank1", NULL, 0), PHR_EDENIED);
    pw_free(fw);
    pw_free(ascii);
    pw_free(lig);
    pw_free(plain);
}

static void
test_never_truncated(void **state)
{
    pwhash_pepper_t v1 = t_pepper("v1", 0x11);
    char a[130], b[130], c[130], enc[PWHASH_ENCODED_MAX];

    for (int i = 0; i < 128; i++) {
        a[i] = (char)('a' + i % 26);
    }
    a[0] = 'A';
    a[1] = '1';
    a[128] = '\0';
    memcpy(b, a, sizeof(a));
    b[127] = b[127] == 'x' ? 'y' : 'x'; /* the last character */
    memcpy(c, a, sizeof(a));
    c[99] = c[99] == 'x' ? 'y' : 'x'; /* character 100 */
    assert_int_equal(pwhash_hash(a, NULL, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_verify(enc, a, NULL, 0), PHR_OK);
    assert_int_equal(pwhash_verify(enc, b, NULL, 0), PHR_EDENIED);
    assert_int_equal(pwhash_verify(enc, c, NULL, 0), PHR_EDENIED);
    assert_int_equal(pwhash_hash(b, &v1, enc, sizeof(enc)), PHR_OK);
    assert_int_equal(pwhash_verify(enc, b, &v1, 1), PHR_OK);
    assert_int_equal(pwhash_verify(enc, a, &v1, 1), PHR_EDENIED);
}

/* ---- dummy hash ------------------------------------------------------------------- */

static void
test_dummy_same_cost(void **state)
{
    pwhash_pepper_t v1 = t_pepper("v1", 0x11);
    char enc[PWHASH_ENCODED_MAX];

    assert_int_equal(pwhash_hash("Password1", &v1, enc, sizeof(enc)), PHR_OK);

    t_reset_counts();
    assert_int_equal(pwhash_verify(enc, "Password1", &v1, 1), PHR_OK);
    assert_int_equal(t_count(), 1);
    uint32_t m = t_last_m, t = t_last_t, p = t_last_p;
    assert_int_equal(t_last_type, Argon2_id);

    t_reset_counts();
    assert_int_equal(pwhash_verify(NULL, "Password1", &v1, 1), PHR_EDENIED);
    assert_int_equal(t_count(), 1);
    assert_int_equal(t_last_type, Argon2_id);
    assert_int_equal(t_last_m, m);
    assert_int_equal(t_last_t, t);
    assert_int_equal(t_last_p, p);
    assert_int_equal(m, 19456);
    assert_int_equal(t, 2);
    assert_int_equal(p, 1);

    t_reset_counts();
    assert_int_equal(pwhash_verify(NULL, "Password1", NULL, 0), PHR_EDENIED);
    assert_int_equal(t_count(), 1);
    assert_int_equal(t_last_m, 19456);
    /* A malformed string costs nothing (the caller treats it as a server error). */
    t_reset_counts();
    assert_int_equal(pwhash_verify("x", "Password1", NULL, 0), PHR_EINVAL);
    assert_int_equal(t_count(), 0);
}

/* ---- worker pool ------------------------------------------------------------------ */

typedef struct {
    int want_rc;
    int got_rc;
    int calls;
    int off_loop;
    int rehash;
} t_vjob_t;

static int t_done;

static void
t_verify_cb(int rc, int needs_rehash, void *ud)
{
    t_vjob_t *j = ud;

    j->got_rc = rc;
    j->rehash = needs_rehash;
    j->calls++;
    j->off_loop |= !pthread_equal(pthread_self(), t_loop_thread);
    t_done++;
}

static char t_hashed[PWHASH_ENCODED_MAX];
static int t_hash_rc = 1;

static void
t_hash_cb(int rc, const char *encoded, void *ud)
{
    int *off_loop = ud;

    t_hash_rc = rc;
    *off_loop |= !pthread_equal(pthread_self(), t_loop_thread);
    snprintf(t_hashed, sizeof(t_hashed), "%s", encoded != NULL ? encoded : "");
    t_done++;
}

static void
t_run_until_done(struct event_base *base, int want, int ms)
{
    int64_t end = t_now_ms() + ms;

    while (t_done < want && t_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (t_done < want) {
            t_sleep_ms(1);
        }
    }
}

static void
test_async_verify_20(void **state)
{
    enum { N = 20 };
    pwhash_pepper_t v1 = t_pepper("v1", 0x11), v2 = t_pepper("v2", 0x22);
    pwhash_pepper_t keys[2] = {v2, v1}; /* v2 current */
    struct event_base *base = event_base_new();
    workq_t *wq = workq_create(base, 2, 64);
    char enc_v1[PWHASH_ENCODED_MAX], enc_v2[PWHASH_ENCODED_MAX];
    t_vjob_t jobs[N];
    char pw[32];

    assert_non_null(wq);
    t_loop_thread = pthread_self();
    assert_int_equal(pwhash_hash("Password1", &v1, enc_v1, sizeof(enc_v1)), PHR_OK);
    assert_int_equal(pwhash_hash("Password1", &v2, enc_v2, sizeof(enc_v2)), PHR_OK);
    memset(jobs, 0, sizeof(jobs));
    t_done = 0;
    t_reset_counts();
    for (int i = 0; i < N; i++) {
        const char *enc = i % 4 == 3 ? NULL : i % 2 == 0 ? enc_v2 : enc_v1;
        int right = i % 3 != 2;

        snprintf(pw, sizeof(pw), "%s", right ? "Password1" : "Password2");
        jobs[i].want_rc = enc != NULL && right ? PHR_OK : PHR_EDENIED;
        assert_int_equal(pwhash_verify_async(wq, enc, pw, keys, 2, NULL, t_verify_cb, &jobs[i]),
                         PHR_OK);
        memset(pw, 'Z', sizeof(pw) - 1); /* the job has its own copy */
    }
    t_run_until_done(base, N, 30000);
    assert_int_equal(t_done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].calls, 1);
        assert_int_equal(jobs[i].off_loop, 0);
        assert_int_equal(jobs[i].got_rc, jobs[i].want_rc);
        /* Old pepper v1 (odd i) verified: rehash under the current v2. */
        int verified_v1 = jobs[i].want_rc == PHR_OK && i % 2 == 1;
        assert_int_equal(jobs[i].rehash, verified_v1);
    }
    assert_int_equal(t_count(), N); /* one argon2 each, dummies included */
    assert_int_equal(t_calls_on_loop, 0);

    /* hash_async: the string arrives on the loop and verifies. */
    int off_loop = 0;
    t_done = 0;
    assert_int_equal(pwhash_hash_async(wq, "Async-Pass1", &v2, NULL, t_hash_cb, &off_loop), PHR_OK);
    t_run_until_done(base, 1, 10000);
    assert_int_equal(t_done, 1);
    assert_int_equal(t_hash_rc, PHR_OK);
    assert_int_equal(off_loop, 0);
    assert_int_equal(strncmp(t_hashed, "$phrpepper$v2$argon2id$", 23), 0);
    assert_int_equal(t_calls_on_loop, 0);
    assert_int_equal(pwhash_verify(t_hashed, "Async-Pass1", keys, 2), PHR_OK);

    workq_free(wq);
    event_base_free(base);
}

static void
test_async_queue_full(void **state)
{
    enum { TRIES = 8 };
    struct event_base *base = event_base_new();
    workq_t *wq = workq_create(base, 1, 2);
    t_vjob_t jobs[TRIES];
    int accepted = 0, full = 0;
    char enc[PWHASH_ENCODED_MAX];

    assert_non_null(wq);
    t_loop_thread = pthread_self();
    assert_int_equal(pwhash_hash("Password1", NULL, enc, sizeof(enc)), PHR_OK);
    memset(jobs, 0, sizeof(jobs));
    t_done = 0;
    t_gate(1); /* argon2 calls wait: nothing completes while we submit */
    /* The one worker takes a first job and is held in argon2 ... */
    assert_int_equal(
        pwhash_verify_async(wq, enc, "Password1", NULL, 0, NULL, t_verify_cb, &jobs[0]), PHR_OK);
    assert_int_equal(t_wait_held(1), 1);
    accepted = 1;
    /* ... so exactly queue_max (2) more wait in the queue, and the rest are refused. */
    for (int i = 1; i < TRIES; i++) {
        int rc = pwhash_verify_async(wq, enc, "Password1", NULL, 0, NULL, t_verify_cb, &jobs[i]);
        if (rc == PHR_OK) {
            accepted++;
        } else {
            assert_int_equal(rc, PHR_EFULL);
            full++;
        }
    }
    assert_int_equal(accepted, 3);
    assert_int_equal(full, TRIES - 3);
    for (int i = 0; i < TRIES; i++) {
        assert_int_equal(jobs[i].calls, 0);
    }
    int refused_hash = pwhash_hash_async(wq, "x", NULL, NULL, t_hash_cb, &full);
    assert_int_equal(refused_hash, PHR_EFULL);
    t_gate(0);
    t_run_until_done(base, accepted, 30000);
    assert_int_equal(t_done, accepted);
    for (int i = 0; i < TRIES; i++) {
        assert_int_equal(jobs[i].calls, i < accepted ? 1 : 0);
        if (i < accepted) {
            assert_int_equal(jobs[i].got_rc, PHR_OK);
        }
    }
    workq_free(wq);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc9106_vector),   cmocka_unit_test(test_matches_libargon2),
        cmocka_unit_test(test_verify_basic),     cmocka_unit_test(test_verify_malformed),
        cmocka_unit_test(test_pepper),           cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_nfkc_equivalence), cmocka_unit_test(test_never_truncated),
        cmocka_unit_test(test_dummy_same_cost),  cmocka_unit_test(test_async_verify_20),
        cmocka_unit_test(test_async_queue_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
