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

#include <stdint.h>

#include "kv.h"

#define SESS_TOKEN_BYTES 32 /* 256-bit bearer token */
#define SESS_TOKEN_LEN 43   /* base64url without padding */
#define SESS_HASH_LEN 64    /* hex SHA-256 */

typedef struct {
    char session_id[37]; /* UUID, public handle for listing/revoking */
    char account_id[37];
    char kind[16];   /* patient | staff | operator */
    char org_id[37]; /* "" when none */
    char role[16];   /* staff | admin | "" */
    char mfa[16];    /* none | totp | sms: factor used at login */
    int64_t created_ms;
    int64_t idle_expires_ms;
    int64_t absolute_expires_ms;
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
 * Looks up the session of bearer |token|, slides its idle expiry by |idle_s|
 * (capped at the absolute expiry) and calls |cb| with PHR_OK and the record,
 * PHR_ENOTFOUND (no such session or expired), PHR_EUNAVAIL/PHR_ETIMEDOUT
 * (Redis trouble). Returns PHR_OK or PHR_EUNAVAIL (callback not called).
 */
typedef void (*sess_cb)(int rc, const sess_t *s, void *ud);
int sess_lookup(kv_t *kv, const char *token, int idle_s, sess_cb cb, void *ud);

/* Stores |s| under the hash of |token| with TTL = idle expiry. Auth only. */
typedef void (*sess_done_cb)(int rc, void *ud);
int sess_store(kv_t *kv, const char *token, const sess_t *s, sess_done_cb cb, void *ud);

/* Deletes the session of |token_hash|. */
int sess_delete_hash(kv_t *kv, const char *token_hash, sess_done_cb cb, void *ud);

#endif
