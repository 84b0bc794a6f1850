/*
 * pwhash.c - argon2id password hashing (see pwhash.h).
 *
 * Stored format (PHC string, parseable by any argon2 library after the
 * optional pepper prefix is removed):
 *
 *   without pepper:  $argon2id$v=19$m=19456,t=2,p=1$<salt>$<tag>
 *   with pepper:     $phrpepper$<id>$argon2id$v=19$m=19456,t=2,p=1$<salt>$<tag>
 *
 * <salt> (16 random bytes) and <tag> (32 bytes) are base64 without padding,
 * as libargon2 writes them; <id> is 1-15 characters of [A-Za-z0-9_-]. With a
 * pepper, the argon2 input is HMAC-SHA256(pepper key, password) instead of the
 * password (32 bytes, so the whole password counts whatever its length: never
 * truncated). Every argon2 computation goes through argon2_ctx() in
 * pwhash_argon2(); tags are compared with CRYPTO_memcmp (constant time).
 *
 * Parsing bounds what a stored string may ask for (m <= 256 MiB, t <= 16,
 * p <= 16, salt 8-64 bytes, tag 16-64 bytes, v=19 only): anything else is
 * malformed (PHR_EINVAL), so a corrupted row cannot make a login allocate
 * gigabytes.
 *
 * Async verify: peppers[0] is the current key (an empty id = no pepper now);
 * it is used for needs_rehash and for the dummy hash of unknown accounts.
 */
#include "pwhash.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define PWHASH_M_COST 19456u
#define PWHASH_T_COST 2u
#define PWHASH_LANES 1u
#define PWHASH_SALT_LEN 16
#define PWHASH_TAG_LEN 32
#define PWHASH_VERSION 19

#define PWHASH_MAX_M (256u * 1024u)
#define PWHASH_MAX_T 16u
#define PWHASH_MAX_P 16u
#define PWHASH_MAX_BIN 64
#define PWHASH_ID_MAX 16 /* sizeof(pwhash_pepper_t.id) */

static const char pwhash_pepper_tag[] = "$phrpepper$";
static const char pwhash_argon2id_tag[] = "$argon2id$";

typedef struct {
    char pepper_id[PWHASH_ID_MAX]; /* "" = no pepper */
    uint32_t m, t, p;
    uint8_t salt[PWHASH_MAX_BIN];
    size_t saltlen;
    uint8_t tag[PWHASH_MAX_BIN];
    size_t taglen;
} pwhash_parsed_t;

/* ---- base64 without padding (RFC 4648 alphabet, as libargon2) ----------- */

static const char pwhash_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encodes |n| bytes into |out| (size |outlen|, NUL-terminated). PHR_OK or PHR_EINVAL. */
static int
pwhash_b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (outlen < (n * 4 + 2) / 3 + 1) {
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = pwhash_b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0) {
        out[o++] = pwhash_b64[(acc << (6 - bits)) & 63];
    }
    out[o] = '\0';
    return PHR_OK;
}

static int
pwhash_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/*
 * Decodes |n| characters of unpadded base64 into |out| (|outmax| bytes).
 * Rejects non-canonical input (leftover bits set, impossible lengths).
 */
static int
pwhash_b64_decode(const char *in, size_t n, uint8_t *out, size_t outmax, size_t *outn)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (n % 4 == 1) {
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int v = pwhash_b64_value(in[i]);

        if (v < 0) {
            return PHR_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == outmax) {
                return PHR_EINVAL;
            }
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0) {
        return PHR_EINVAL;
    }
    *outn = o;
    return PHR_OK;
}

/* ---- parsing --------------------------------------------------------------- */

static int
pwhash_id_valid(const char *id, size_t n)
{
    if (n == 0 || n >= PWHASH_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Parses "<name>=<decimal>" at |*s| followed by |end|; advances |*s| past |end|. */
static int
pwhash_parse_num(const char **s, const char *name, char end, uint32_t min, uint32_t max,
                 uint32_t *out)
{
    size_t nl = strlen(name);
    const char *p = *s;
    uint64_t v = 0;
    size_t digits = 0;

    if (strncmp(p, name, nl) != 0 || p[nl] != '=') {
        return PHR_EINVAL;
    }
    p += nl + 1;
    while (*p >= '0' && *p <= '9' && digits < 10) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    /* No leading zeros: one canonical spelling per value. */
    if (digits == 0 || (digits > 1 && (*s)[nl + 1] == '0') || *p != end || v < min || v > max) {
        return PHR_EINVAL;
    }
    *out = (uint32_t)v;
    *s = p + 1;
    return PHR_OK;
}

static int
pwhash_parse(const char *enc, pwhash_parsed_t *out)
{
    const char *s = enc;
    const char *dollar;
    uint32_t v;

    memset(out, 0, sizeof(*out));
    if (enc == NULL) {
        return PHR_EINVAL;
    }
    if (strncmp(s, pwhash_pepper_tag, sizeof(pwhash_pepper_tag) - 1) == 0) {
        s += sizeof(pwhash_pepper_tag) - 1;
        dollar = strchr(s, '$');
        if (dollar == NULL || !pwhash_id_valid(s, (size_t)(dollar - s))) {
            return PHR_EINVAL;
        }
        memcpy(out->pepper_id, s, (size_t)(dollar - s));
        out->pepper_id[dollar - s] = '\0';
        s = dollar;
    }
    if (strncmp(s, pwhash_argon2id_tag, sizeof(pwhash_argon2id_tag) - 1) != 0) {
        return PHR_EINVAL;
    }
    s += sizeof(pwhash_argon2id_tag) - 1;
    if (pwhash_parse_num(&s, "v", '$', PWHASH_VERSION, PWHASH_VERSION, &v) != PHR_OK ||
        pwhash_parse_num(&s, "m", ',', 8, PWHASH_MAX_M, &out->m) != PHR_OK ||
        pwhash_parse_num(&s, "t", ',', 1, PWHASH_MAX_T, &out->t) != PHR_OK ||
        pwhash_parse_num(&s, "p", '$', 1, PWHASH_MAX_P, &out->p) != PHR_OK || out->m < 8 * out->p) {
        return PHR_EINVAL;
    }
    dollar = strchr(s, '$');
    if (dollar == NULL ||
        pwhash_b64_decode(s, (size_t)(dollar - s), out->salt, sizeof(out->salt), &out->saltlen) !=
            PHR_OK ||
        pwhash_b64_decode(dollar + 1, strlen(dollar + 1), out->tag, sizeof(out->tag),
                          &out->taglen) != PHR_OK ||
        out->saltlen < 8 || out->taglen < 16) {
        return PHR_EINVAL;
    }
    return PHR_OK;
}

/* ---- argon2 and pepper ----------------------------------------------------- */

/* The one place argon2 runs. */
static int
pwhash_argon2(const uint8_t *in, size_t inlen, const uint8_t *salt, size_t saltlen, uint32_t m,
              uint32_t t, uint32_t p, uint8_t *tag, size_t taglen)
{
    argon2_context ctx;
    /* argon2_context has non-const pointers; argon2 only reads pwd and salt (no
     * ARGON2_FLAG_CLEAR_* flags), so dropping const here is safe. */
    union {
        const uint8_t *c;
        uint8_t *m;
    } pwd = {.c = in}, slt = {.c = salt};

    if (inlen > UINT32_MAX) {
        return PHR_ETOOBIG;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.out = tag;
    ctx.outlen = (uint32_t)taglen;
    ctx.pwd = pwd.m;
    ctx.pwdlen = (uint32_t)inlen;
    ctx.salt = slt.m;
    ctx.saltlen = (uint32_t)saltlen;
    ctx.t_cost = t;
    ctx.m_cost = m;
    ctx.lanes = p;
    ctx.threads = p;
    ctx.version = ARGON2_VERSION_13;
    ctx.flags = ARGON2_DEFAULT_FLAGS;
    int arc = argon2_ctx(&ctx, Argon2_id);
    if (arc == ARGON2_OK) {
        return PHR_OK;
    }
    return arc == ARGON2_MEMORY_ALLOCATION_ERROR ? PHR_ENOMEM : PHR_EGENERIC;
}

static int
pwhash_pepper_usable(const pwhash_pepper_t *pp)
{
    size_t n = strnlen(pp->id, sizeof(pp->id));

    return n < sizeof(pp->id) && pwhash_id_valid(pp->id, n) && pp->keylen >= 1 &&
           pp->keylen <= sizeof(pp->key);
}

static int
pwhash_has_pepper(const pwhash_pepper_t *pp)
{
    return pp != NULL && pp->id[0] != '\0';
}

/*
 * Hashes |password| with |m,t,p|, |salt| and |pepper| (NULL = none) into |tag|.
 * The HMAC output is wiped.
 */
static int
pwhash_compute(const char *password, const pwhash_pepper_t *pepper, const uint8_t *salt,
               size_t saltlen, uint32_t m, uint32_t t, uint32_t p, uint8_t *tag, size_t taglen)
{
    size_t pwlen = strlen(password);
    int rc;

    if (pwhash_has_pepper(pepper)) {
        uint8_t mac[32];
        unsigned int maclen = 0;

        if (!pwhash_pepper_usable(pepper)) {
            return PHR_EINVAL;
        }
        if (HMAC(EVP_sha256(), pepper->key, (int)pepper->keylen, (const uint8_t *)password, pwlen,
                 mac, &maclen) == NULL ||
            maclen != sizeof(mac)) {
            OPENSSL_cleanse(mac, sizeof(mac));
            return PHR_EGENERIC;
        }
        rc = pwhash_argon2(mac, sizeof(mac), salt, saltlen, m, t, p, tag, taglen);
        OPENSSL_cleanse(mac, sizeof(mac));
        return rc;
    }
    return pwhash_argon2((const uint8_t *)password, pwlen, salt, saltlen, m, t, p, tag, taglen);
}

/* ---- public API ------------------------------------------------------------ */

int
pwhash_hash(const char *password, const pwhash_pepper_t *pepper, char *out, size_t outlen)
{
    uint8_t salt[PWHASH_SALT_LEN], tag[PWHASH_TAG_LEN];
    char salt64[32], tag64[48];
    int rc, n;

    if (password == NULL || out == NULL || outlen == 0) {
        return PHR_EINVAL;
    }
    out[0] = '\0';
    if (RAND_bytes(salt, (int)sizeof(salt)) != 1) {
        return PHR_EGENERIC;
    }
    rc = pwhash_compute(password, pepper, salt, sizeof(salt), PWHASH_M_COST, PWHASH_T_COST,
                        PWHASH_LANES, tag, sizeof(tag));
    if (rc != PHR_OK) {
        return rc;
    }
    pwhash_b64_encode(salt, sizeof(salt), salt64, sizeof(salt64));
    pwhash_b64_encode(tag, sizeof(tag), tag64, sizeof(tag64));
    OPENSSL_cleanse(tag, sizeof(tag));
    n = snprintf(out, outlen, "%s%s$argon2id$v=%d$m=%u,t=%u,p=%u$%s$%s",
                 pwhash_has_pepper(pepper) ? "$phrpepper$" : "",
                 pwhash_has_pepper(pepper) ? pepper->id : "", PWHASH_VERSION, PWHASH_M_COST,
                 PWHASH_T_COST, PWHASH_LANES, salt64, tag64);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return PHR_EINVAL;
    }
    return PHR_OK;
}

/* A hash of the same cost as a current one, for accounts that do not exist. */
static void
pwhash_dummy(const char *password, const pwhash_pepper_t *current)
{
    static const uint8_t salt[PWHASH_SALT_LEN] = "phr-dummy-salt!";
    uint8_t tag[PWHASH_TAG_LEN];
    pwhash_pepper_t none;

    memset(&none, 0, sizeof(none));
    if (current != NULL && pwhash_has_pepper(current) && !pwhash_pepper_usable(current)) {
        current = &none;
    }
    (void)pwhash_compute(password, current, salt, sizeof(salt), PWHASH_M_COST, PWHASH_T_COST,
                         PWHASH_LANES, tag, sizeof(tag));
    OPENSSL_cleanse(tag, sizeof(tag));
}

int
pwhash_verify(const char *encoded, const char *password, const pwhash_pepper_t *peppers,
              size_t npeppers)
{
    pwhash_parsed_t ph;
    const pwhash_pepper_t *pepper = NULL;
    uint8_t tag[PWHASH_MAX_BIN];
    int rc;

    if (password == NULL) {
        return PHR_EINVAL;
    }
    if (encoded == NULL) {
        pwhash_dummy(password, npeppers > 0 ? &peppers[0] : NULL);
        return PHR_EDENIED;
    }
    if (pwhash_parse(encoded, &ph) != PHR_OK) {
        return PHR_EINVAL;
    }
    if (ph.pepper_id[0] != '\0') {
        for (size_t i = 0; i < npeppers && pepper == NULL; i++) {
            if (strncmp(peppers[i].id, ph.pepper_id, sizeof(peppers[i].id)) == 0 &&
                pwhash_pepper_usable(&peppers[i])) {
                pepper = &peppers[i];
            }
        }
        if (pepper == NULL) {
            return PHR_EINVAL;
        }
    }
    rc = pwhash_compute(password, pepper, ph.salt, ph.saltlen, ph.m, ph.t, ph.p, tag, ph.taglen);
    if (rc == PHR_OK) {
        rc = CRYPTO_memcmp(tag, ph.tag, ph.taglen) == 0 ? PHR_OK : PHR_EDENIED;
    }
    OPENSSL_cleanse(tag, sizeof(tag));
    return rc;
}

int
pwhash_needs_rehash(const char *encoded, const pwhash_pepper_t *current)
{
    pwhash_parsed_t ph;
    const char *want = pwhash_has_pepper(current) ? current->id : "";

    if (pwhash_parse(encoded, &ph) != PHR_OK) {
        return 1;
    }
    if (strncmp(ph.pepper_id, want, sizeof(ph.pepper_id)) != 0) {
        return 1;
    }
    return ph.m != PWHASH_M_COST || ph.t != PWHASH_T_COST || ph.p != PWHASH_LANES ||
           ph.saltlen != PWHASH_SALT_LEN || ph.taglen != PWHASH_TAG_LEN;
}

/* ---- worker pool ------------------------------------------------------------ */

typedef struct {
    int verify;
    char *password;
    char *encoded; /* verify: copy of the stored string, NULL = unknown account */
    pwhash_pepper_t *peppers;
    size_t npeppers;
    int rc;
    int needs_rehash;
    char out[PWHASH_ENCODED_MAX];
    pwhash_hash_cb hash_cb;
    pwhash_verify_cb verify_cb;
    void *ud;
    const h2s_req_t *req; /* the request waiting for the answer, or NULL */
} pwhash_job_t;

static void
pwhash_job_wipe(pwhash_job_t *job)
{
    if (job->password != NULL) {
        OPENSSL_cleanse(job->password, strlen(job->password));
        free(job->password);
        job->password = NULL;
    }
    if (job->peppers != NULL) {
        OPENSSL_cleanse(job->peppers, job->npeppers * sizeof(*job->peppers));
        free(job->peppers);
        job->peppers = NULL;
    }
}

static void
pwhash_job_free(pwhash_job_t *job)
{
    pwhash_job_wipe(job);
    free(job->encoded);
    OPENSSL_cleanse(job->out, sizeof(job->out));
    free(job);
}

static void
pwhash_job_work(void *arg)
{
    pwhash_job_t *job = arg;
    const pwhash_pepper_t *current = job->npeppers > 0 ? &job->peppers[0] : NULL;

    if (job->verify) {
        job->rc = pwhash_verify(job->encoded, job->password, job->peppers, job->npeppers);
        job->needs_rehash = job->rc == PHR_OK && pwhash_needs_rehash(job->encoded, current);
    } else {
        job->rc = pwhash_hash(job->password, current, job->out, sizeof(job->out));
    }
    pwhash_job_wipe(job);
}

/* Runs on the loop before the job starts: a request already closed needs no hash. */
static int
pwhash_job_live(void *arg)
{
    const pwhash_job_t *job = arg;

    return job->req == NULL || !h2s_req_closed(job->req);
}

static void
pwhash_job_done(int rc, void *arg)
{
    pwhash_job_t *job = arg;

    if (rc != PHR_OK) { /* never ran: the pool shut down or the request closed first */
        job->rc = rc;
        job->needs_rehash = 0;
    }
    if (job->verify) {
        job->verify_cb(job->rc, job->needs_rehash, job->ud);
    } else {
        job->hash_cb(job->rc, job->rc == PHR_OK ? job->out : NULL, job->ud);
    }
    pwhash_job_free(job);
}

static pwhash_job_t *
pwhash_job_new(const char *password, const pwhash_pepper_t *peppers, size_t npeppers)
{
    pwhash_job_t *job = calloc(1, sizeof(*job));

    if (job == NULL) {
        return NULL;
    }
    job->password = strdup(password);
    if (npeppers > 0) {
        job->peppers = calloc(npeppers, sizeof(*peppers));
        if (job->peppers != NULL) {
            memcpy(job->peppers, peppers, npeppers * sizeof(*peppers));
            job->npeppers = npeppers;
        }
    }
    if (job->password == NULL || (npeppers > 0 && job->peppers == NULL)) {
        pwhash_job_free(job);
        return NULL;
    }
    return job;
}

static int
pwhash_submit(workq_t *wq, pwhash_job_t *job)
{
    int rc = workq_submit_live(wq, pwhash_job_work, pwhash_job_done, pwhash_job_live, job);

    if (rc != PHR_OK) {
        pwhash_job_free(job);
    }
    return rc;
}

int
pwhash_hash_async(workq_t *wq, const char *password, const pwhash_pepper_t *pepper,
                  const h2s_req_t *req, pwhash_hash_cb cb, void *ud)
{
    pwhash_job_t *job;

    if (wq == NULL || password == NULL || cb == NULL) {
        return PHR_EINVAL;
    }
    job = pwhash_job_new(password, pepper, pepper != NULL ? 1 : 0);
    if (job == NULL) {
        return PHR_ENOMEM;
    }
    job->hash_cb = cb;
    job->ud = ud;
    job->req = req;
    return pwhash_submit(wq, job);
}

int
pwhash_verify_async(workq_t *wq, const char *encoded, const char *password,
                    const pwhash_pepper_t *peppers, size_t npeppers, const h2s_req_t *req,
                    pwhash_verify_cb cb, void *ud)
{
    pwhash_job_t *job;

    if (wq == NULL || password == NULL || cb == NULL || (npeppers > 0 && peppers == NULL)) {
        return PHR_EINVAL;
    }
    job = pwhash_job_new(password, peppers, npeppers);
    if (job == NULL) {
        return PHR_ENOMEM;
    }
    if (encoded != NULL) {
        job->encoded = strdup(encoded);
        if (job->encoded == NULL) {
            pwhash_job_free(job);
            return PHR_ENOMEM;
        }
    }
    job->verify = 1;
    job->verify_cb = cb;
    job->ud = ud;
    job->req = req;
    return pwhash_submit(wq, job);
}
