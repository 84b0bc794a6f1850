/*
 * session.h - the shared session record in Redis.
 *
 * Key "phr:sess:<hex SHA-256 of the bearer token>", value a JSON object
 * (proto/schemas/session.json). Every service reads it to authenticate
 * "Authorization: Bearer <token>"; only auth writes it. The key's TTL is the
 * idle expiry, slid on each successful lookup, never past the absolute expiry.
 */
#ifndef PHR_SESSION_H
#define PHR_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define SESS_TOKEN_BYTES 32 /* 256-bit bearer token */
#define SESS_TOKEN_LEN 43   /* base64url without padding */
#define SESS_HASH_LEN 64    /* hex SHA-256 */
#define SESS_MFA_TOTP 1u
#define SESS_MFA_SMS 2u

typedef struct {
    char session_id[37]; /* UUID, public handle for listing/revoking */
    char account_id[37];
    char kind[16];   /* patient | staff | operator */
    char org_id[37]; /* "" when none */
    char role[16];   /* staff | admin | "" */
    char mfa[16];    /* none | totp | sms | recovery_code: factor used at login */
    int64_t created_ms;
    int64_t idle_expires_ms;
    int64_t absolute_expires_ms;
    int64_t authenticated_ms;    /* last password/factor check; 0 when the record has none */
    int must_change_password;    /* 1: only password change, session and logout allowed */
    int mfa_enrollment_required; /* 1: only MFA enrolment, password, session and logout */
    /* The account as of login, so that reading the session needs no database (auth only). */
    struct {
        char email[1024]; /* 254 characters of UTF-8 at most */
        char name[404];   /* 100 characters of UTF-8 at most */
        char locale[4];
        int email_verified;
        unsigned mfa_methods; /* SESS_MFA_TOTP | SESS_MFA_SMS: factors enrolled */
        int mfa_required_by_org;
    } profile;
    char token_hash[SESS_HASH_LEN + 1]; /* filled by sess_lookup/sess_list; not serialised */
} sess_t;

/* Hex SHA-256 of |token| into |out| (SESS_HASH_LEN + 1 bytes). */
void sess_token_hash(const char *token, char *out);

/*
 * Fills |token| (SESS_TOKEN_LEN + 1 bytes) with a new random bearer token
 * from RAND_bytes. Returns PHR_OK or PHR_EGENERIC.
 */
int sess_token_new(char *token);

/* Serialises |s| to JSON (caller frees) / parses JSON into |s|. */
char *sess_to_json(const sess_t *s);
int sess_from_json(const char *json, sess_t *s);

/*
 * The reading side of the sessions in |kv| (every service authenticates through
 * one): SHA-256 fetched once, and the parses of the records last read, so that a
 * record read again unchanged is not parsed again. The event loop's thread only.
 * Free it after |kv| (kv_free answers the lookups in flight).
 */
typedef struct sess_reader sess_reader_t;
sess_reader_t *sess_reader_create(kv_t *kv);
void sess_reader_free(sess_reader_t *r);

/*
 * Looks up the session of bearer |token| through |r|, slides its idle expiry by
 * |idle_s| (capped at the absolute expiry) and calls |cb| with PHR_OK and the
 * record, PHR_ENOTFOUND (no such session or expired), PHR_EUNAVAIL/PHR_ETIMEDOUT
 * (Redis trouble). Returns PHR_OK or PHR_EUNAVAIL (callback not called).
 */
typedef void (*sess_cb)(int rc, const sess_t *s, void *ud);
int sess_lookup(sess_reader_t *r, const char *token, int idle_s, sess_cb cb, void *ud);

/*
 * Stores |s| under the hash of |token| with TTL = idle expiry, and adds the
 * hash to the account's index "phr:acct:<account_id>:sess" (expiring at the
 * absolute expiry), atomically. Auth only.
 */
typedef void (*sess_done_cb)(int rc, void *ud);
int sess_store(kv_t *kv, const char *token, const sess_t *s, sess_done_cb cb, void *ud);

/*
 * Rewrites the record of |s->token_hash| keeping its TTL (only if it still
 * exists: PHR_ENOTFOUND otherwise). Auth only.
 */
int sess_rewrite(kv_t *kv, const sess_t *s, sess_done_cb cb, void *ud);

/*
 * The live sessions of |account_id| (hashes whose record expired are dropped
 * from the index). |items| (|n| entries, token_hash filled) is valid during
 * the callback only; |rc| PHR_OK or a kv error.
 */
typedef void (*sess_list_cb)(int rc, const sess_t *items, size_t n, void *ud);
int sess_list(kv_t *kv, const char *account_id, sess_list_cb cb, void *ud);

/*
 * Deletes the sessions of |account_id|: only |token_hash| when |only| is 1,
 * else every one except |token_hash| (NULL: all). |cb| gets PHR_OK and the
 * number of live sessions deleted, or a kv error.
 */
typedef void (*sess_count_cb)(int rc, long count, void *ud);
int sess_revoke(kv_t *kv, const char *account_id, const char *token_hash, int only,
                sess_count_cb cb, void *ud);

/* Deletes the session of |token_hash|. */
int sess_delete_hash(kv_t *kv, const char *token_hash, sess_done_cb cb, void *ud);

#endif
