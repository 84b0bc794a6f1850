/*
 * fuzz_audit_chain.c - libFuzzer target for the audit log's canonical
 * encoding (services/audit/chain.c: chain_hash, the checkpoint message, hex)
 * and the verifier's reading of a page of rows (chain_verifier_feed).
 *
 * Input: three 8-byte big-endian integers (seq, occurred_us, recorded_us),
 * then up to 18 text fields separated by NUL bytes (event_id, the actor,
 * target, result, reason, source, request id and details columns in
 * chain.h's order); a field that is the single byte 0xff is SQL NULL, absent
 * trailing fields are NULL. Invariants, trapping on violation:
 *   - chain_hash equals SHA-256 of an independent encoding written from the
 *     specification in chain.h (presence byte, 4-byte BE length, bytes);
 *   - the encoding is injective where it matters: moving one byte across a
 *     field boundary, or turning an empty field into NULL, changes the hash;
 *   - hex round-trips; the checkpoint message has the documented layout;
 *   - the verifier accepts the event as a one-row page (rows built with
 *     libpq's PQsetvalue, as PostgreSQL would send them) and refuses the same
 *     page with one field changed (hash_mismatch).
 * Run through tests/fuzz/run.sh (make fuzz); linked with the audit
 * service's objects (fuzz_audit_* targets).
 */
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/audit/chain.h"
#include "err.h"
#include "hex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NSTR 18 /* event_id + the 17 text columns */
#define FUZZ_MAX_FIELD 4096

typedef struct {
    int64_t seq, occurred_us, recorded_us;
    char *s[FUZZ_NSTR]; /* NULL = SQL NULL */
} fuzz_event_t;

/* Reference encoding buffer. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} fuzz_buf_t;

static void
fuzz_put(fuzz_buf_t *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) {
            abort();
        }
    }
    if (n > 0) {
        memcpy(b->p + b->n, d, n);
    }
    b->n += n;
}

static void
fuzz_field(fuzz_buf_t *b, const void *d, size_t n, int present)
{
    unsigned char head[5] = {present ? 1 : 0, 0, 0, 0, 0};

    if (present) {
        head[1] = (unsigned char)(n >> 24);
        head[2] = (unsigned char)(n >> 16);
        head[3] = (unsigned char)(n >> 8);
        head[4] = (unsigned char)n;
    }
    fuzz_put(b, head, sizeof(head));
    if (present) {
        fuzz_put(b, d, n);
    }
}

static void
fuzz_be64(int64_t v, unsigned char out[8])
{
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    }
}

static void
fuzz_int(fuzz_buf_t *b, int64_t v)
{
    unsigned char be[8];

    fuzz_be64(v, be);
    fuzz_field(b, be, 8, 1);
}

static void
fuzz_str(fuzz_buf_t *b, const char *s)
{
    fuzz_field(b, s, s != NULL ? strlen(s) : 0, s != NULL);
}

/* SHA-256 of the encoding chain.h specifies. */
static void
fuzz_reference(const fuzz_event_t *e, const unsigned char prev[CHAIN_HASH_LEN],
               unsigned char out[CHAIN_HASH_LEN])
{
    fuzz_buf_t b = {0};
    unsigned int len = 0;

    fuzz_str(&b, "phr-audit-v1");
    fuzz_int(&b, e->seq);
    fuzz_str(&b, e->s[0]);
    fuzz_int(&b, e->occurred_us);
    fuzz_int(&b, e->recorded_us);
    for (int i = 1; i < FUZZ_NSTR; i++) {
        fuzz_str(&b, e->s[i]);
    }
    fuzz_field(&b, prev, CHAIN_HASH_LEN, 1);
    if (EVP_Digest(b.p, b.n, out, &len, EVP_sha256(), NULL) != 1 || len != CHAIN_HASH_LEN) {
        abort();
    }
    free(b.p);
}

static chain_event_t
fuzz_chain_event(const fuzz_event_t *e)
{
    chain_event_t ev = {
        .seq = e->seq,
        .event_id = e->s[0],
        .occurred_us = e->occurred_us,
        .recorded_us = e->recorded_us,
        .actor_account_id = e->s[1],
        .actor_kind = e->s[2],
        .actor_org_id = e->s[3],
        .actor_role = e->s[4],
        .actor_session_id = e->s[5],
        .actor_ip = e->s[6],
        .actor_user_agent = e->s[7],
        .action = e->s[8],
        .target_type = e->s[9],
        .target_id = e->s[10],
        .target_patient_id = e->s[11],
        .target_org_id = e->s[12],
        .result = e->s[13],
        .reason = e->s[14],
        .source_service = e->s[15],
        .request_id = e->s[16],
        .details = e->s[17],
    };
    return ev;
}

static void
fuzz_hash(const fuzz_event_t *e, const unsigned char prev[CHAIN_HASH_LEN],
          unsigned char out[CHAIN_HASH_LEN])
{
    chain_event_t ev = fuzz_chain_event(e);

    if (chain_hash(&ev, prev, out) != 0) {
        __builtin_trap();
    }
}

static int64_t
fuzz_get64(const uint8_t *d)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | d[i];
    }
    return (int64_t)v;
}

static void
fuzz_decode(const uint8_t *data, size_t size, fuzz_event_t *e)
{
    uint8_t head[24] = {0};

    memset(e, 0, sizeof(*e));
    memcpy(head, data, size < 24 ? size : 24);
    e->seq = fuzz_get64(head);
    e->occurred_us = fuzz_get64(head + 8);
    e->recorded_us = fuzz_get64(head + 16);
    size_t off = size < 24 ? size : 24;
    for (int i = 0; i < FUZZ_NSTR && off < size; i++) {
        const uint8_t *end = memchr(data + off, 0, size - off);
        size_t n = end != NULL ? (size_t)(end - (data + off)) : size - off;
        if (n > FUZZ_MAX_FIELD) {
            n = FUZZ_MAX_FIELD;
        }
        if (!(n == 1 && data[off] == 0xff)) {
            e->s[i] = malloc(n + 1);
            if (e->s[i] == NULL) {
                abort();
            }
            memcpy(e->s[i], data + off, n);
            e->s[i][n] = '\0';
        }
        off += n + (end != NULL ? 1 : 0);
        if (end == NULL) {
            break;
        }
    }
}

static void
fuzz_event_free(fuzz_event_t *e)
{
    for (int i = 0; i < FUZZ_NSTR; i++) {
        free(e->s[i]);
    }
}

/* A one-row page of chain_sql_page for |e| with hashes |prev| and |stored|. */
static PGresult *
fuzz_page(const fuzz_event_t *e, const unsigned char prev[CHAIN_HASH_LEN],
          const unsigned char stored[CHAIN_HASH_LEN])
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc atts[CHAIN_COL_COUNT];
    char names[CHAIN_COL_COUNT][8], num[3][24], hp[2 * CHAIN_HASH_LEN + 1],
        hs[2 * CHAIN_HASH_LEN + 1];

    if (res == NULL) {
        abort();
    }
    memset(atts, 0, sizeof(atts));
    for (int c = 0; c < CHAIN_COL_COUNT; c++) {
        snprintf(names[c], sizeof(names[c]), "c%d", c);
        atts[c].name = names[c];
        atts[c].typid = 25;
        atts[c].typlen = -1;
        atts[c].atttypmod = -1;
    }
    if (!PQsetResultAttrs(res, CHAIN_COL_COUNT, atts)) {
        abort();
    }
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)e->seq);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)e->occurred_us);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)e->recorded_us);
    hex_encode(prev, CHAIN_HASH_LEN, hp);
    hex_encode(stored, CHAIN_HASH_LEN, hs);
    const char *cols[CHAIN_COL_COUNT] = {
        num[0],   e->s[0],  num[1],   num[2],   e->s[1],  e->s[2],
        e->s[3],  e->s[4],  e->s[5],  e->s[6],  e->s[7],  e->s[8],
        e->s[9],  e->s[10], e->s[11], e->s[12], e->s[13], e->s[14],
        e->s[15], e->s[16], e->s[17], hp,       hs,       "2026-01-01 00:00:00+00",
        num[0],   NULL,     NULL,     NULL,     NULL,     NULL};
    for (int c = 0; c < CHAIN_COL_COUNT; c++) {
        if (!PQsetvalue(res, 0, c, (char *)(uintptr_t)cols[c],
                        cols[c] != NULL ? (int)strlen(cols[c]) : -1)) {
            abort();
        }
    }
    return res;
}

/* 1 when the verifier accepts |e| as the single row of the walk [seq, seq]. */
static int
fuzz_verifies(const fuzz_event_t *e, const unsigned char prev[CHAIN_HASH_LEN],
              const unsigned char stored[CHAIN_HASH_LEN], char *reason, size_t cap)
{
    chain_verifier_t v;
    PGresult *res = fuzz_page(e, prev, stored);

    if (chain_verifier_init(&v, e->seq, e->seq, prev, NULL) != 0) {
        abort();
    }
    int n = chain_verifier_feed(&v, res);
    int ok = n == 1 && v.first_bad_seq == 0 && v.checked == 1;
    snprintf(reason, cap, "%s", v.reason);
    chain_verifier_fini(&v);
    PQclear(res);
    return ok;
}

/* Moves the last byte of the first non-empty field with a non-NULL successor into it. */
static int
fuzz_shift(fuzz_event_t *e)
{
    for (int i = 0; i + 1 < FUZZ_NSTR; i++) {
        size_t n = e->s[i] != NULL ? strlen(e->s[i]) : 0;
        if (n > 0 && e->s[i + 1] != NULL) {
            size_t m = strlen(e->s[i + 1]);
            char *next = malloc(m + 2);
            if (next == NULL) {
                abort();
            }
            next[0] = e->s[i][n - 1];
            memcpy(next + 1, e->s[i + 1], m + 1);
            e->s[i][n - 1] = '\0';
            free(e->s[i + 1]);
            e->s[i + 1] = next;
            return 1;
        }
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_event_t e;
    unsigned char prev[CHAIN_HASH_LEN], h1[CHAIN_HASH_LEN], h2[CHAIN_HASH_LEN];
    char hex[2 * CHAIN_HASH_LEN + 1], reason[48];

    fuzz_decode(data, size, &e);
    for (int i = 0; i < CHAIN_HASH_LEN; i++) {
        prev[i] = (unsigned char)(size + (size_t)i * 7);
    }

    /* the implementation against the specification */
    fuzz_hash(&e, prev, h1);
    fuzz_reference(&e, prev, h2);
    if (memcmp(h1, h2, CHAIN_HASH_LEN) != 0) {
        __builtin_trap();
    }

    /* hex round trip, upper case accepted, odd input refused */
    hex_encode(h1, CHAIN_HASH_LEN, hex);
    if (strlen(hex) != 2 * CHAIN_HASH_LEN || hex_decode(hex, h2, CHAIN_HASH_LEN) != 0 ||
        memcmp(h1, h2, CHAIN_HASH_LEN) != 0 || hex_decode(hex, h2, CHAIN_HASH_LEN - 1) == 0) {
        __builtin_trap();
    }

    /* the checkpoint message */
    unsigned char msg[CHAIN_CKPT_MSG_LEN], be[8];
    chain_checkpoint_msg(e.seq, h1, e.recorded_us, msg);
    fuzz_be64(e.seq, be);
    if (memcmp(msg, "phr-audit-checkpoint-v1", 23) != 0 || memcmp(msg + 23, be, 8) != 0 ||
        memcmp(msg + 31, h1, CHAIN_HASH_LEN) != 0) {
        __builtin_trap();
    }
    fuzz_be64(e.recorded_us, be);
    if (memcmp(msg + 31 + CHAIN_HASH_LEN, be, 8) != 0) {
        __builtin_trap();
    }

    /* the verifier reads the row as the encoder wrote it (seq >= 1 as in the table) */
    if (e.seq >= 1 && e.seq < INT64_MAX) {
        if (!fuzz_verifies(&e, prev, h1, reason, sizeof(reason))) {
            __builtin_trap();
        }
    }

    /* a byte moved across a field boundary, or an empty field turned NULL: another hash */
    int changed = fuzz_shift(&e);
    if (!changed) {
        for (int i = 0; i < FUZZ_NSTR && !changed; i++) {
            if (e.s[i] != NULL && e.s[i][0] == '\0') {
                free(e.s[i]);
                e.s[i] = NULL;
                changed = 1;
            }
        }
    }
    if (changed) {
        fuzz_hash(&e, prev, h2);
        if (memcmp(h1, h2, CHAIN_HASH_LEN) == 0) {
            __builtin_trap();
        }
        if (e.seq >= 1 && e.seq < INT64_MAX &&
            (fuzz_verifies(&e, prev, h1, reason, sizeof(reason)) ||
             strcmp(reason, "hash_mismatch") != 0)) {
            __builtin_trap();
        }
    }
    (void)chain_parse_jst(e.s[0], &e.occurred_us);
    fuzz_event_free(&e);
    return 0;
}
