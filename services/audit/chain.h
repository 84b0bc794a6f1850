/*
 * chain.h - the audit log's hash chain and signed checkpoints, shared by the
 * service (ingest, GET /api/v1/admin/audit/verify) and the offline verifier
 * (phrctl audit verify).
 *
 * hash(seq) = SHA-256 over the canonical encoding of the event's stored
 * columns followed by prev_hash (32 zero bytes for seq 1). The encoding is a
 * sequence of fields, each a presence byte (0 = NULL, 1 = value), a 4-byte
 * big-endian length and the bytes: first the domain string "phr-audit-v1",
 * then seq (8-byte big-endian), event_id, occurred_at and recorded_at
 * (microseconds since the epoch, 8-byte big-endian), actor_account_id,
 * actor_kind, actor_org_id, actor_role, actor_session_id, actor_ip,
 * actor_user_agent, action, target_type, target_id, target_patient_id,
 * target_org_id, result, reason, source_service, request_id, details (the
 * jsonb as PostgreSQL prints it), prev_hash. UUIDs are lower-case text.
 *
 * A checkpoint signs (Ed25519) the message "phr-audit-checkpoint-v1" ||
 * seq (8-byte BE) || hash (32) || signed_at (microseconds, 8-byte BE).
 */
#ifndef PHR_AUDIT_CHAIN_H
#define PHR_AUDIT_CHAIN_H

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define CHAIN_HASH_LEN 32
#define CHAIN_CKPT_MSG_LEN (23 + 8 + CHAIN_HASH_LEN + 8)
#define CHAIN_SIG_LEN 64

typedef struct {
    int64_t seq;
    const char *event_id;
    int64_t occurred_us, recorded_us;
    const char *actor_account_id, *actor_kind, *actor_org_id, *actor_role, *actor_session_id;
    const char *actor_ip, *actor_user_agent;
    const char *action, *target_type, *target_id, *target_patient_id, *target_org_id;
    const char *result, *reason, *source_service, *request_id;
    const char *details; /* jsonb text as PostgreSQL prints it, or NULL */
} chain_event_t;

/* out = SHA-256(canonical(ev) || prev). Returns 0, or -1 when OpenSSL fails. */
int chain_hash(const chain_event_t *ev, const unsigned char prev[CHAIN_HASH_LEN],
               unsigned char out[CHAIN_HASH_LEN]);

/* The checkpoint message signed for (seq, hash, signed_at). */
void chain_checkpoint_msg(int64_t seq, const unsigned char hash[CHAIN_HASH_LEN], int64_t signed_us,
                          unsigned char out[CHAIN_CKPT_MSG_LEN]);

/* Ed25519 signature of a checkpoint into |sig| (CHAIN_SIG_LEN bytes). 0 or -1. */
int chain_checkpoint_sign(EVP_PKEY *key, int64_t seq, const unsigned char hash[CHAIN_HASH_LEN],
                          int64_t signed_us, unsigned char sig[CHAIN_SIG_LEN]);

/* 1 when |sig| is a valid checkpoint signature by |pub|, else 0. */
int chain_checkpoint_check(EVP_PKEY *pub, int64_t seq, const unsigned char hash[CHAIN_HASH_LEN],
                           int64_t signed_us, const unsigned char *sig, size_t siglen);

/* Microseconds since the epoch as UTC text PostgreSQL reads exactly ("...+00"). */
void chain_format_utc(int64_t us, char *out, size_t cap);

/* RFC 3339 in +09:00 with at most 6 fraction digits → microseconds. 0 or -1. */
int chain_parse_jst(const char *s, int64_t *us);

/*
 * The page query of a verification walk: rows with (seq, recorded_at) after
 * ($1::bigint, $2::timestamptz) and seq <= $3, at most $4 rows, in chain order,
 * with their audit_event_ids seq, their checkpoint, if any, and the archive
 * (audit_archives, partition dropped) that ends just before them, if any: a
 * gap in seq that such an archive covers links to its last hash.
 */
extern const char chain_sql_page[];
/* Column indexes of chain_sql_page beyond the event's own columns. */
enum {
    CHAIN_COL_RECORDED_TEXT = 23, /* recorded_at as text for the next page's $2 */
    CHAIN_COL_ID_SEQ,
    CHAIN_COL_CKPT_HASH,
    CHAIN_COL_CKPT_AT,
    CHAIN_COL_CKPT_SIG,
    CHAIN_COL_ARCH_FROM, /* from_seq of the dropped archive ending at seq - 1 */
    CHAIN_COL_ARCH_HASH, /* its last hash */
    CHAIN_COL_COUNT
};
/* Walk start: $1 from_seq → the stored hash of seq from_seq - 1 (no row: none). */
extern const char chain_sql_prev[];
/* After the walk: the highest seq that checkpoints or the id table know ($1: to_seq). */
extern const char chain_sql_tail[];
/* 1 when partitions were ever dropped (the chain may start after seq 1). */
extern const char chain_sql_dropped[];

/* The running state of a verification. */
typedef struct {
    int64_t from_seq, to_seq; /* to_seq: INT64_MAX for the head */
    int64_t next_seq;         /* expected seq of the next row */
    unsigned char prev[CHAIN_HASH_LEN];
    int prev_known; /* 0: the first row's prev_hash is trusted (partitions dropped) */
    int64_t checked, checkpoints;
    int64_t archived;      /* seqs skipped as archived and dropped (retention) */
    int64_t first_bad_seq; /* 0 while ok */
    char reason[48];
    char last_recorded[48]; /* recorded_at text of the last row (paging) */
    EVP_PKEY *pub;          /* borrowed: checkpoint signatures */
    EVP_MD_CTX *md;
} chain_verifier_t;

/*
 * Starts a walk of [from_seq, to_seq] with the public key |pub| (borrowed).
 * |prev| is the hash before from_seq (NULL: unknown, the first row's
 * prev_hash is trusted, as after a retention drop). 0 or -1.
 */
int chain_verifier_init(chain_verifier_t *v, int64_t from_seq, int64_t to_seq,
                        const unsigned char *prev, EVP_PKEY *pub);
void chain_verifier_fini(chain_verifier_t *v);

/*
 * Feeds the rows of one chain_sql_page result. Returns the number of rows
 * consumed; stops at the first bad row (first_bad_seq set).
 */
int chain_verifier_feed(chain_verifier_t *v, const PGresult *res);

/* After the last page: |tail_seq| is chain_sql_tail's answer (0 when none). */
void chain_verifier_finish(chain_verifier_t *v, int64_t tail_seq);

/* Fills the page query parameters (buffers of the verifier) for the next page. */
void chain_verifier_params(chain_verifier_t *v, int page_rows, char bufs[3][24],
                           const char *params[4]);

/*
 * A retention archive (archive_file.c): the export lines (proto/audit.yaml
 * ExportLine, events and checkpoints only) of one whole partition. The check
 * re-hashes every event from the file, requires seq from_seq..to_seq without
 * a gap, links the first prev_hash to |prev| (when known) and the last hash
 * to |next_prev| (the prev_hash of seq to_seq + 1; with none, a checkpoint in
 * the file must sign the last event), and checks every checkpoint signature.
 */
typedef struct {
    int64_t from_seq, to_seq, events; /* expected (events 0: an empty file) */
    const unsigned char *prev;        /* hash before from_seq, NULL when unknown */
    const unsigned char *next_prev;   /* prev_hash of seq to_seq + 1, NULL when none */
    EVP_PKEY *pub;                    /* borrowed */
    int64_t lines, events_seen, checkpoints, last_seq, last_ckpt_seq;
    unsigned char sha256[CHAIN_HASH_LEN]; /* of the file's bytes */
    unsigned char first_prev[CHAIN_HASH_LEN], last_hash[CHAIN_HASH_LEN];
    int64_t bad_line; /* 1-based; 0 when it verified */
    char reason[48];
} chain_archive_check_t;

/* 0 when |path| verifies (results in |c|), -1 (reason, bad_line) when not. */
int chain_archive_check(const char *path, chain_archive_check_t *c);

#endif
