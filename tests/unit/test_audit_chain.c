/*
 * test_audit_chain.c - services/audit/chain.c: the canonical encoding (checked
 * against an independent byte-by-byte rendering of the format in chain.h), the
 * Ed25519 checkpoints, and the streaming verifier on synthetic result pages
 * (PQmakeEmptyPGresult) with each kind of tampering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "../../services/audit/chain.h"
#include "err.h"
#include "hex.h"

/* ---- an independent rendering of the encoding ------------------------------ */

typedef struct {
    unsigned char buf[8192];
    size_t n;
} enc_t;

static void
enc_field(enc_t *e, const void *p, size_t len, int present)
{
    e->buf[e->n++] = present ? 1 : 0;
    for (int i = 3; i >= 0; i--) {
        e->buf[e->n++] = present ? (unsigned char)(len >> (8 * i)) : 0;
    }
    if (present) {
        memcpy(e->buf + e->n, p, len);
        e->n += len;
    }
}

static void
enc_str(enc_t *e, const char *s)
{
    enc_field(e, s, s ? strlen(s) : 0, s != NULL);
}

static void
enc_i64(enc_t *e, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    }
    enc_field(e, b, 8, 1);
}

static void
ref_hash(const chain_event_t *ev, const unsigned char prev[32], unsigned char out[32])
{
    enc_t e = {.n = 0};
    unsigned int len = 0;

    enc_str(&e, "phr-audit-v1");
    enc_i64(&e, ev->seq);
    enc_str(&e, ev->event_id);
    enc_i64(&e, ev->occurred_us);
    enc_i64(&e, ev->recorded_us);
    const char *s[] = {
        ev->actor_account_id, ev->actor_kind, ev->actor_org_id,      ev->actor_role,
        ev->actor_session_id, ev->actor_ip,   ev->actor_user_agent,  ev->action,
        ev->target_type,      ev->target_id,  ev->target_patient_id, ev->target_org_id,
        ev->result,           ev->reason,     ev->source_service,    ev->request_id,
        ev->details};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        enc_str(&e, s[i]);
    }
    enc_field(&e, prev, 32, 1);
    EVP_Digest(e.buf, e.n, out, &len, EVP_sha256(), NULL);
}

static chain_event_t
sample(int64_t seq)
{
    chain_event_t ev = {
        .seq = seq,
        .event_id = "019abc00-0000-7000-8000-000000000001",
        .occurred_us = 1764158400123456LL,
        .recorded_us = 1764158401000000LL,
        .actor_account_id = "019abc00-0000-7000-8000-0000000000aa",
        .actor_kind = "staff",
        .actor_org_id = NULL,
        .actor_role = "admin",
        .actor_session_id = NULL,
        .actor_ip = "192.0.2.1",
        .actor_user_agent = "curl/8 日本語",
        .action = "records.read",
        .target_type = "record",
        .target_id = "r-1",
        .target_patient_id = "019abc00-0000-7000-8000-0000000000bb",
        .target_org_id = NULL,
        .result = "success",
        .reason = NULL,
        .source_service = "records",
        .request_id = "req-1",
        .details = "{\"count\": 1}",
    };
    return ev;
}

static void
test_hash_matches_spec(void **state)
{
    unsigned char prev[32] = {0}, a[32], b[32];
    chain_event_t ev = sample(1);

    (void)state;
    assert_int_equal(chain_hash(&ev, prev, a), 0);
    ref_hash(&ev, prev, b);
    assert_memory_equal(a, b, 32);
    memset(prev, 0x5a, sizeof(prev));
    assert_int_equal(chain_hash(&ev, prev, a), 0);
    ref_hash(&ev, prev, b);
    assert_memory_equal(a, b, 32);
}

static void
test_hash_sensitive(void **state)
{
    unsigned char prev[32] = {0}, base[32], h[32];
    chain_event_t ev = sample(7), x;

    (void)state;
    chain_hash(&ev, prev, base);
    /* NULL and "" differ */
    x = ev;
    x.reason = "";
    chain_hash(&x, prev, h);
    assert_memory_not_equal(base, h, 32);
    /* moving a byte across a field boundary changes the hash (length prefixes) */
    x = ev;
    x.target_type = "recor";
    x.target_id = "dr-1";
    chain_hash(&x, prev, h);
    assert_memory_not_equal(base, h, 32);
    /* seq, times and prev_hash are covered */
    x = ev;
    x.seq = 8;
    chain_hash(&x, prev, h);
    assert_memory_not_equal(base, h, 32);
    x = ev;
    x.occurred_us++;
    chain_hash(&x, prev, h);
    assert_memory_not_equal(base, h, 32);
    prev[31] = 1;
    chain_hash(&ev, prev, h);
    assert_memory_not_equal(base, h, 32);
}

static void
test_hex_and_time(void **state)
{
    unsigned char in[4] = {0x00, 0xab, 0x10, 0xff}, out[4];
    char hex[9], t[48];

    (void)state;
    hex_encode(in, 4, hex);
    assert_string_equal(hex, "00ab10ff");
    assert_int_equal(hex_decode("00AB10ff", out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(hex_decode("00ab10f", out, 4), PHR_EINVAL);
    assert_int_equal(hex_decode("00ab10fg", out, 4), PHR_EINVAL);
    chain_format_utc(1764158400123456LL, t, sizeof(t));
    assert_string_equal(t, "2025-11-26 12:00:00.123456+00");
    chain_format_utc(5, t, sizeof(t));
    assert_string_equal(t, "1970-01-01 00:00:00.000005+00");
}

static EVP_PKEY *
gen_key(void)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);

    assert_non_null(c);
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
    EVP_PKEY_CTX_free(c);
    return k;
}

static void
test_checkpoint_sign(void **state)
{
    EVP_PKEY *k = gen_key(), *other = gen_key();
    unsigned char h[32], sig[CHAIN_SIG_LEN], msg[CHAIN_CKPT_MSG_LEN];

    (void)state;
    memset(h, 7, sizeof(h));
    assert_int_equal(chain_checkpoint_sign(k, 42, h, 1000, sig), 0);
    assert_int_equal(chain_checkpoint_check(k, 42, h, 1000, sig, sizeof(sig)), 1);
    assert_int_equal(chain_checkpoint_check(k, 43, h, 1000, sig, sizeof(sig)), 0);
    assert_int_equal(chain_checkpoint_check(k, 42, h, 1001, sig, sizeof(sig)), 0);
    assert_int_equal(chain_checkpoint_check(other, 42, h, 1000, sig, sizeof(sig)), 0);
    h[0] ^= 1;
    assert_int_equal(chain_checkpoint_check(k, 42, h, 1000, sig, sizeof(sig)), 0);
    chain_checkpoint_msg(0x0102030405060708LL, h, 9, msg);
    assert_memory_equal(msg, "phr-audit-checkpoint-v1", 23);
    assert_int_equal(msg[23], 1);
    assert_int_equal(msg[30], 8);
    assert_int_equal(msg[CHAIN_CKPT_MSG_LEN - 1], 9);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

/* ---- the verifier on synthetic pages ---------------------------------------- */

#define NROWS 6

typedef struct {
    chain_event_t ev[NROWS];
    char ids[NROWS][37];
    unsigned char prev[NROWS][32], hash[NROWS][32];
    int64_t id_seq[NROWS];
    int ckpt[NROWS]; /* sign a checkpoint on this row */
    int bad_sig[NROWS];
} rows_t;

static void
rows_build(rows_t *r)
{
    unsigned char prev[32] = {0};

    memset(r, 0, sizeof(*r));
    for (int i = 0; i < NROWS; i++) {
        r->ev[i] = sample(i + 1);
        snprintf(r->ids[i], sizeof(r->ids[i]), "019abc00-0000-7000-8000-%012d", i + 1);
        r->ev[i].event_id = r->ids[i];
        r->ev[i].recorded_us += i;
        memcpy(r->prev[i], prev, 32);
        chain_hash(&r->ev[i], prev, r->hash[i]);
        memcpy(prev, r->hash[i], 32);
        r->id_seq[i] = i + 1;
    }
}

static void
set_str(PGresult *res, int row, int col, const char *s)
{
    assert_int_equal(PQsetvalue(res, row, col, (char *)(uintptr_t)s, s ? (int)strlen(s) : -1), 1);
}

static void
set_int(PGresult *res, int row, int col, int64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v);
    set_str(res, row, col, b);
}

/* The page of rows |order| (indexes into r, -1 ends) as chain_sql_page would return it. */
static PGresult *
page(const rows_t *r, const int *order, EVP_PKEY *key)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[CHAIN_COL_COUNT];
    char names[CHAIN_COL_COUNT][16];
    int row = 0;

    memset(att, 0, sizeof(att));
    for (int c = 0; c < CHAIN_COL_COUNT; c++) {
        snprintf(names[c], sizeof(names[c]), "c%d", c);
        att[c].name = names[c];
        att[c].format = 0;
        att[c].typid = 25;
        att[c].typlen = -1;
        att[c].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(res, CHAIN_COL_COUNT, att), 1);
    for (; order[row] >= 0; row++) {
        int i = order[row];
        const chain_event_t *e = &r->ev[i];
        char hex[65], sighex[129];
        set_int(res, row, 0, e->seq);
        set_str(res, row, 1, e->event_id);
        set_int(res, row, 2, e->occurred_us);
        set_int(res, row, 3, e->recorded_us);
        const char *s[] = {
            e->actor_account_id, e->actor_kind, e->actor_org_id,      e->actor_role,
            e->actor_session_id, e->actor_ip,   e->actor_user_agent,  e->action,
            e->target_type,      e->target_id,  e->target_patient_id, e->target_org_id,
            e->result,           e->reason,     e->source_service,    e->request_id,
            e->details};
        for (int k = 0; k < 17; k++) {
            set_str(res, row, 4 + k, s[k]);
        }
        hex_encode(r->prev[i], 32, hex);
        set_str(res, row, 21, hex);
        hex_encode(r->hash[i], 32, hex);
        set_str(res, row, 22, hex);
        set_str(res, row, CHAIN_COL_RECORDED_TEXT, "2026-01-01 00:00:00+00");
        if (r->id_seq[i] != 0) {
            set_int(res, row, CHAIN_COL_ID_SEQ, r->id_seq[i]);
        } else {
            set_str(res, row, CHAIN_COL_ID_SEQ, NULL);
        }
        if (r->ckpt[i]) {
            unsigned char sig[64];
            assert_int_equal(chain_checkpoint_sign(key, e->seq, r->hash[i], 77, sig), 0);
            if (r->bad_sig[i]) {
                sig[5] ^= 1;
            }
            hex_encode(sig, 64, sighex);
            hex_encode(r->hash[i], 32, hex);
            set_str(res, row, CHAIN_COL_CKPT_HASH, hex);
            set_int(res, row, CHAIN_COL_CKPT_AT, 77);
            set_str(res, row, CHAIN_COL_CKPT_SIG, sighex);
        } else {
            set_str(res, row, CHAIN_COL_CKPT_HASH, NULL);
            set_str(res, row, CHAIN_COL_CKPT_AT, NULL);
            set_str(res, row, CHAIN_COL_CKPT_SIG, NULL);
        }
    }
    return res;
}

/* Verifies rows |order| from seq 1 (genesis known); tail as given. */
static void
run(const rows_t *r, const int *order, int64_t tail, EVP_PKEY *key, int64_t *bad, char *reason,
    int64_t *checked)
{
    chain_verifier_t v;
    unsigned char zero[32] = {0};
    PGresult *res = page(r, order, key);

    assert_int_equal(chain_verifier_init(&v, 1, INT64_MAX, zero, key), 0);
    chain_verifier_feed(&v, res);
    if (v.first_bad_seq == 0) {
        chain_verifier_finish(&v, tail);
    }
    *bad = v.first_bad_seq;
    *checked = v.checked;
    snprintf(reason, 48, "%s", v.reason);
    chain_verifier_fini(&v);
    PQclear(res);
}

static void
test_verifier(void **state)
{
    EVP_PKEY *key = gen_key();
    rows_t r;
    int64_t bad, checked;
    char reason[48];
    const int all[] = {0, 1, 2, 3, 4, 5, -1};

    (void)state;
    rows_build(&r);
    r.ckpt[3] = 1;
    run(&r, all, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 0);
    assert_int_equal(checked, 6);

    /* an edited field */
    rows_build(&r);
    r.ev[2].target_id = "other";
    run(&r, all, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 3);
    assert_string_equal(reason, "hash_mismatch");

    /* a deleted row */
    rows_build(&r);
    const int gap[] = {0, 1, 3, 4, 5, -1};
    run(&r, gap, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 3);
    assert_string_equal(reason, "seq_gap");

    /* two rows swapped (their seqs exchanged) */
    rows_build(&r);
    r.ev[3].seq = 5;
    r.ev[4].seq = 4;
    const int swapped[] = {0, 1, 2, 4, 3, 5, -1};
    run(&r, swapped, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 4);
    assert_string_equal(reason, "prev_hash_mismatch");

    /* a duplicate seq */
    rows_build(&r);
    const int dup[] = {0, 1, 1, 2, -1};
    run(&r, dup, 3, key, &bad, reason, &checked);
    assert_int_equal(bad, 2);
    assert_string_equal(reason, "duplicate_seq");

    /* a row whose event id the service never accepted */
    rows_build(&r);
    r.id_seq[4] = 0;
    run(&r, all, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 5);
    assert_string_equal(reason, "unregistered_event");

    /* a bad checkpoint signature */
    rows_build(&r);
    r.ckpt[2] = 1;
    r.bad_sig[2] = 1;
    run(&r, all, 6, key, &bad, reason, &checked);
    assert_int_equal(bad, 3);
    assert_string_equal(reason, "bad_signature");

    /* the tail cut: the ids or checkpoints know seq 8 */
    rows_build(&r);
    run(&r, all, 8, key, &bad, reason, &checked);
    assert_int_equal(bad, 7);
    assert_string_equal(reason, "tail_truncated");

    /* the first row missing (genesis known) */
    rows_build(&r);
    const int nofirst[] = {1, 2, -1};
    run(&r, nofirst, 3, key, &bad, reason, &checked);
    assert_int_equal(bad, 1);
    assert_string_equal(reason, "seq_gap");
    EVP_PKEY_free(key);
}

/* After a retention drop the walk starts at the first row present, trusting its prev_hash. */
static void
test_verifier_after_drop(void **state)
{
    EVP_PKEY *key = gen_key();
    rows_t r;
    chain_verifier_t v;
    const int tail[] = {3, 4, 5, -1};

    (void)state;
    rows_build(&r);
    PGresult *res = page(&r, tail, key);
    assert_int_equal(chain_verifier_init(&v, 1, INT64_MAX, NULL, key), 0);
    assert_int_equal(chain_verifier_feed(&v, res), 3);
    chain_verifier_finish(&v, 6);
    assert_int_equal(v.first_bad_seq, 0);
    assert_int_equal(v.checked, 3);
    chain_verifier_fini(&v);
    PQclear(res);
    EVP_PKEY_free(key);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_matches_spec), cmocka_unit_test(test_hash_sensitive),
        cmocka_unit_test(test_hex_and_time),      cmocka_unit_test(test_checkpoint_sign),
        cmocka_unit_test(test_verifier),          cmocka_unit_test(test_verifier_after_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
