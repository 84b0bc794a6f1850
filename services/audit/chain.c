/*
 * chain.c - canonical encoding, SHA-256 chain, Ed25519 checkpoints and the
 * streaming verifier (see chain.h).
 */
#include "chain.h"
#include "hex.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char chain_domain[] = "phr-audit-v1";
static const char chain_ckpt_domain[] = "phr-audit-checkpoint-v1"; /* 23 bytes */

#define CHAIN_EVENT_COLS                                                                           \
    "e.seq, e.event_id::text, (extract(epoch FROM e.occurred_at) * 1000000)::bigint,"              \
    " (extract(epoch FROM e.recorded_at) * 1000000)::bigint, e.actor_account_id::text,"            \
    " e.actor_kind, e.actor_org_id::text, e.actor_role, e.actor_session_id::text, e.actor_ip,"     \
    " e.actor_user_agent, e.action, e.target_type, e.target_id, e.target_patient_id::text,"        \
    " e.target_org_id::text, e.result, e.reason, e.source_service, e.request_id,"                  \
    " e.details::text, encode(e.prev_hash, 'hex'), encode(e.hash, 'hex')"

const char chain_sql_page[] =
    "SELECT " CHAIN_EVENT_COLS ", e.recorded_at::text, i.seq, encode(c.hash, 'hex'),"
    " (extract(epoch FROM c.signed_at) * 1000000)::bigint, encode(c.signature, 'hex'),"
    " a.from_seq, encode(a.last_hash, 'hex')"
    " FROM audit_events e"
    " LEFT JOIN audit_event_ids i ON i.event_id = e.event_id"
    " LEFT JOIN checkpoints c ON c.seq = e.seq"
    " LEFT JOIN (SELECT a.from_seq, a.to_seq, a.last_hash FROM audit_archives a"
    " JOIN audit_partition_drops d ON d.partition_name = a.partition_name"
    " WHERE a.events > 0) a ON a.to_seq = e.seq - 1"
    " WHERE (e.seq, e.recorded_at) > ($1::bigint, $2::timestamptz) AND e.seq <= $3::bigint"
    " ORDER BY e.seq, e.recorded_at LIMIT $4::int";

const char chain_sql_prev[] =
    "SELECT encode(hash, 'hex') FROM audit_events WHERE seq = $1::bigint - 1"
    " ORDER BY recorded_at LIMIT 1";

const char chain_sql_tail[] = "SELECT greatest((SELECT max(seq) FROM checkpoints WHERE seq <= "
                              "$1::bigint), (SELECT max(seq) FROM audit_event_ids WHERE seq <= "
                              "$1::bigint), 0)";

/*
 * Whether partitions were dropped, and the head the walk stops at: events
 * arriving while it runs are left for the next verification (else the tail
 * check would mistake them for a truncation).
 */
const char chain_sql_dropped[] =
    "SELECT EXISTS (SELECT 1 FROM audit_partition_drops), greatest((SELECT max(seq) FROM "
    "checkpoints), (SELECT max(seq) FROM audit_event_ids), 0)";

static void
chain_be64(int64_t v, unsigned char out[8])
{
    uint64_t u = (uint64_t)v;

    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(u & 0xff);
        u >>= 8;
    }
}

static int
chain_field(EVP_MD_CTX *md, const void *data, size_t len, int present)
{
    unsigned char head[5];

    head[0] = present ? 1 : 0;
    head[1] = (unsigned char)(len >> 24);
    head[2] = (unsigned char)(len >> 16);
    head[3] = (unsigned char)(len >> 8);
    head[4] = (unsigned char)len;
    if (!present) {
        memset(head + 1, 0, 4);
        return EVP_DigestUpdate(md, head, sizeof(head)) == 1 ? 0 : -1;
    }
    if (EVP_DigestUpdate(md, head, sizeof(head)) != 1 ||
        (len > 0 && EVP_DigestUpdate(md, data, len) != 1)) {
        return -1;
    }
    return 0;
}

static int
chain_str(EVP_MD_CTX *md, const char *s)
{
    return chain_field(md, s, s != NULL ? strlen(s) : 0, s != NULL);
}

static int
chain_int(EVP_MD_CTX *md, int64_t v)
{
    unsigned char b[8];

    chain_be64(v, b);
    return chain_field(md, b, sizeof(b), 1);
}

static int
chain_hash_ctx(EVP_MD_CTX *md, const chain_event_t *ev, const unsigned char prev[CHAIN_HASH_LEN],
               unsigned char out[CHAIN_HASH_LEN])
{
    unsigned int outlen = 0;
    const char *strs1[] = {
        ev->actor_account_id, ev->actor_kind, ev->actor_org_id,      ev->actor_role,
        ev->actor_session_id, ev->actor_ip,   ev->actor_user_agent,  ev->action,
        ev->target_type,      ev->target_id,  ev->target_patient_id, ev->target_org_id,
        ev->result,           ev->reason,     ev->source_service,    ev->request_id,
        ev->details};
    int bad = EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1;

    bad = bad || chain_str(md, chain_domain) != 0 || chain_int(md, ev->seq) != 0 ||
          chain_str(md, ev->event_id) != 0 || chain_int(md, ev->occurred_us) != 0 ||
          chain_int(md, ev->recorded_us) != 0;
    for (size_t i = 0; !bad && i < sizeof(strs1) / sizeof(strs1[0]); i++) {
        bad = chain_str(md, strs1[i]) != 0;
    }
    bad = bad || chain_field(md, prev, CHAIN_HASH_LEN, 1) != 0 ||
          EVP_DigestFinal_ex(md, out, &outlen) != 1 || outlen != CHAIN_HASH_LEN;
    return bad ? -1 : 0;
}

int
chain_hash(const chain_event_t *ev, const unsigned char prev[CHAIN_HASH_LEN],
           unsigned char out[CHAIN_HASH_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md != NULL ? chain_hash_ctx(md, ev, prev, out) : -1;

    EVP_MD_CTX_free(md);
    return rc;
}

void
chain_checkpoint_msg(int64_t seq, const unsigned char hash[CHAIN_HASH_LEN], int64_t signed_us,
                     unsigned char out[CHAIN_CKPT_MSG_LEN])
{
    size_t dl = sizeof(chain_ckpt_domain) - 1;

    memcpy(out, chain_ckpt_domain, dl);
    chain_be64(seq, out + dl);
    memcpy(out + dl + 8, hash, CHAIN_HASH_LEN);
    chain_be64(signed_us, out + dl + 8 + CHAIN_HASH_LEN);
}

int
chain_checkpoint_sign(EVP_PKEY *key, int64_t seq, const unsigned char hash[CHAIN_HASH_LEN],
                      int64_t signed_us, unsigned char sig[CHAIN_SIG_LEN])
{
    unsigned char msg[CHAIN_CKPT_MSG_LEN];
    size_t siglen = CHAIN_SIG_LEN;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    chain_checkpoint_msg(seq, hash, signed_us, msg);
    ok = md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
         EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) == 1 && siglen == CHAIN_SIG_LEN;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int
chain_checkpoint_check(EVP_PKEY *pub, int64_t seq, const unsigned char hash[CHAIN_HASH_LEN],
                       int64_t signed_us, const unsigned char *sig, size_t siglen)
{
    unsigned char msg[CHAIN_CKPT_MSG_LEN];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    chain_checkpoint_msg(seq, hash, signed_us, msg);
    ok = md != NULL && pub != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 1 : 0;
}


void
chain_format_utc(int64_t us, char *out, size_t cap)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    struct tm tm;
    time_t t;

    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    t = (time_t)secs;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06" PRId64 "+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static int
chain_digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int
chain_parse_jst(const char *s, int64_t *us)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, frac = 0, fd = 0;
    struct tm tm;

    if (s == NULL || strlen(s) < 25 || chain_digits(s, 4, &y) || s[4] != '-' ||
        chain_digits(s + 5, 2, &mo) || s[7] != '-' || chain_digits(s + 8, 2, &d) || s[10] != 'T' ||
        chain_digits(s + 11, 2, &h) || s[13] != ':' || chain_digits(s + 14, 2, &mi) ||
        s[16] != ':' || chain_digits(s + 17, 2, &sec)) {
        return -1;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9' && fd < 7) {
            frac = frac * 10 + (*p - '0');
            p++;
            fd++;
        }
        if (fd < 1 || fd > 6) {
            return -1;
        }
        for (int i = fd; i < 6; i++) {
            frac *= 10;
        }
    }
    if (strcmp(p, "+09:00") != 0 || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 ||
        mi > 59 || sec > 59) {
        return -1;
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) {
        return -1;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *us = ((int64_t)timegm(&tm) - 32400) * 1000000 + frac; /* +09:00 */
    return 0;
}

int
chain_verifier_init(chain_verifier_t *v, int64_t from_seq, int64_t to_seq,
                    const unsigned char *prev, EVP_PKEY *pub)
{
    memset(v, 0, sizeof(*v));
    v->from_seq = from_seq;
    v->to_seq = to_seq;
    v->next_seq = from_seq;
    v->prev_known = prev != NULL;
    if (prev != NULL) {
        memcpy(v->prev, prev, CHAIN_HASH_LEN);
    }
    v->pub = pub;
    snprintf(v->last_recorded, sizeof(v->last_recorded), "-infinity");
    v->md = EVP_MD_CTX_new();
    return v->md != NULL ? 0 : -1;
}

void
chain_verifier_fini(chain_verifier_t *v)
{
    EVP_MD_CTX_free(v->md);
    v->md = NULL;
}

static void
chain_bad(chain_verifier_t *v, int64_t seq, const char *reason)
{
    v->first_bad_seq = seq;
    snprintf(v->reason, sizeof(v->reason), "%s", reason);
}

static const char *
chain_col(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int64_t
chain_col_int(const PGresult *res, int row, int col)
{
    const char *s = chain_col(res, row, col);

    return s != NULL ? strtoll(s, NULL, 10) : 0;
}

/* Checks one row; 0 ok, -1 bad (recorded). */
static int
chain_check_row(chain_verifier_t *v, const PGresult *res, int r)
{
    chain_event_t ev = {
        .seq = chain_col_int(res, r, 0),
        .event_id = chain_col(res, r, 1),
        .occurred_us = chain_col_int(res, r, 2),
        .recorded_us = chain_col_int(res, r, 3),
        .actor_account_id = chain_col(res, r, 4),
        .actor_kind = chain_col(res, r, 5),
        .actor_org_id = chain_col(res, r, 6),
        .actor_role = chain_col(res, r, 7),
        .actor_session_id = chain_col(res, r, 8),
        .actor_ip = chain_col(res, r, 9),
        .actor_user_agent = chain_col(res, r, 10),
        .action = chain_col(res, r, 11),
        .target_type = chain_col(res, r, 12),
        .target_id = chain_col(res, r, 13),
        .target_patient_id = chain_col(res, r, 14),
        .target_org_id = chain_col(res, r, 15),
        .result = chain_col(res, r, 16),
        .reason = chain_col(res, r, 17),
        .source_service = chain_col(res, r, 18),
        .request_id = chain_col(res, r, 19),
        .details = chain_col(res, r, 20),
    };
    unsigned char prev[CHAIN_HASH_LEN], stored[CHAIN_HASH_LEN], calc[CHAIN_HASH_LEN];

    if (ev.seq < v->next_seq) {
        chain_bad(v, ev.seq, "duplicate_seq");
        return -1;
    }
    if (ev.seq > v->next_seq) {
        /* a gap is allowed only where a verified archive of a dropped partition ends */
        const char *afrom = chain_col(res, r, CHAIN_COL_ARCH_FROM);
        int at_start = !v->prev_known && v->checked == 0;
        if (afrom != NULL && (at_start || strtoll(afrom, NULL, 10) == v->next_seq)) {
            if (hex_decode(chain_col(res, r, CHAIN_COL_ARCH_HASH), v->prev, CHAIN_HASH_LEN) != 0) {
                chain_bad(v, ev.seq, "malformed_hash");
                return -1;
            }
            v->prev_known = 1;
            v->archived += ev.seq - v->next_seq;
        } else if (!at_start) {
            chain_bad(v, v->next_seq, "seq_gap");
            return -1;
        }
    }
    if (hex_decode(chain_col(res, r, 21), prev, CHAIN_HASH_LEN) != 0 ||
        hex_decode(chain_col(res, r, 22), stored, CHAIN_HASH_LEN) != 0) {
        chain_bad(v, ev.seq, "malformed_hash");
        return -1;
    }
    if (!v->prev_known && v->checked == 0) {
        memcpy(v->prev, prev, CHAIN_HASH_LEN); /* the log starts after a retention drop */
    }
    if (CRYPTO_memcmp(prev, v->prev, CHAIN_HASH_LEN) != 0) {
        chain_bad(v, ev.seq, "prev_hash_mismatch");
        return -1;
    }
    if (chain_hash_ctx(v->md, &ev, prev, calc) != 0) {
        chain_bad(v, ev.seq, "internal_error");
        return -1;
    }
    if (CRYPTO_memcmp(calc, stored, CHAIN_HASH_LEN) != 0) {
        chain_bad(v, ev.seq, "hash_mismatch");
        return -1;
    }
    if (chain_col(res, r, CHAIN_COL_ID_SEQ) == NULL ||
        chain_col_int(res, r, CHAIN_COL_ID_SEQ) != ev.seq) {
        chain_bad(v, ev.seq, "unregistered_event");
        return -1;
    }
    if (chain_col(res, r, CHAIN_COL_CKPT_HASH) != NULL) {
        unsigned char ch[CHAIN_HASH_LEN], sig[CHAIN_SIG_LEN];
        if (hex_decode(chain_col(res, r, CHAIN_COL_CKPT_HASH), ch, CHAIN_HASH_LEN) != 0 ||
            CRYPTO_memcmp(ch, calc, CHAIN_HASH_LEN) != 0) {
            chain_bad(v, ev.seq, "checkpoint_mismatch");
            return -1;
        }
        if (hex_decode(chain_col(res, r, CHAIN_COL_CKPT_SIG), sig, CHAIN_SIG_LEN) != 0 ||
            !chain_checkpoint_check(v->pub, ev.seq, ch, chain_col_int(res, r, CHAIN_COL_CKPT_AT),
                                    sig, CHAIN_SIG_LEN)) {
            chain_bad(v, ev.seq, "bad_signature");
            return -1;
        }
        v->checkpoints++;
    }
    memcpy(v->prev, calc, CHAIN_HASH_LEN);
    v->next_seq = ev.seq + 1;
    v->checked++;
    snprintf(v->last_recorded, sizeof(v->last_recorded), "%s",
             chain_col(res, r, CHAIN_COL_RECORDED_TEXT));
    return 0;
}

int
chain_verifier_feed(chain_verifier_t *v, const PGresult *res)
{
    int n = PQntuples(res);

    if (PQnfields(res) != CHAIN_COL_COUNT) {
        chain_bad(v, v->next_seq, "internal_error");
        return 0;
    }
    for (int r = 0; r < n; r++) {
        if (v->first_bad_seq != 0 || chain_check_row(v, res, r) != 0) {
            return r;
        }
    }
    return n;
}

void
chain_verifier_finish(chain_verifier_t *v, int64_t tail_seq)
{
    if (v->first_bad_seq == 0 && tail_seq >= v->next_seq && tail_seq >= v->from_seq) {
        chain_bad(v, v->next_seq, "tail_truncated");
    }
}

void
chain_verifier_params(chain_verifier_t *v, int page_rows, char bufs[3][24], const char *params[4])
{
    /* the first page starts at from_seq (any recorded_at); later ones after the last row */
    if (v->checked == 0) {
        snprintf(bufs[0], sizeof(bufs[0]), "%" PRId64, v->from_seq);
        params[1] = "-infinity";
    } else {
        snprintf(bufs[0], sizeof(bufs[0]), "%" PRId64, v->next_seq - 1);
        params[1] = v->last_recorded;
    }
    snprintf(bufs[1], sizeof(bufs[1]), "%" PRId64, v->to_seq);
    snprintf(bufs[2], sizeof(bufs[2]), "%d", page_rows);
    params[0] = bufs[0];
    params[2] = bufs[1];
    params[3] = bufs[2];
}
