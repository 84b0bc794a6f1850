/*
 * crypt.h - encryption at rest of record values and notes: AES-256-GCM under
 * versioned data keys (secrets data_key_v1, data_key_v2, ...: 64 hex digits
 * each). Every key present is loaded; the newest (highest version) seals,
 * any loaded version opens, so keys can rotate without re-encrypting. A
 * version written after the load (phrctl keys rotate) is loaded by the first
 * rcrypt_open that meets it, or by rcrypt_load again (records: SIGHUP).
 * Not thread-safe: one event loop uses a ring.
 *
 * A sealed blob is nonce (12 random bytes) || ciphertext || tag (16 bytes),
 * carried as PostgreSQL bytea hex text ("\x0a1b...") so it goes in and out
 * as an ordinary text parameter / text result column.
 */
#ifndef PHR_RECORDS_CRYPT_H
#define PHR_RECORDS_CRYPT_H

#include <stddef.h>

#include "config.h"

#define RCRYPT_KEY_LEN 32
#define RCRYPT_MAX_KEYS 16 /* data_key_v1 .. data_key_v16 */
#define RCRYPT_MAC_LEN 32

typedef struct rcrypt rcrypt_t;

/* An empty key ring; NULL on allocation failure. */
rcrypt_t *rcrypt_create(void);
void rcrypt_free(rcrypt_t *rc);

/* Adds key version |key_id| (1..RCRYPT_MAX_KEYS). PHR_OK or PHR_EINVAL. */
int rcrypt_add_key(rcrypt_t *rc, int key_id, const unsigned char key[RCRYPT_KEY_LEN]);

/*
 * Loads every data_key_v<N> secret of |cfg| (N = 1..RCRYPT_MAX_KEYS) and keeps
 * a copy of |cfg| for rcrypt_open. Again on a loaded ring: adds what is new.
 * PHR_OK when at least one loaded, PHR_EINVAL when one is malformed,
 * PHR_ENOTFOUND when none exists.
 */
int rcrypt_load(rcrypt_t *rc, const cfg_t *cfg);

/* The version that seals (the newest), 0 when the ring is empty. */
int rcrypt_current(const rcrypt_t *rc);

/*
 * The additional authenticated data that binds a sealed record payload to its
 * row: "rec1|<record id>|<patient id>|<type>" into |out| (truncated to |cap|).
 * The records service and phrctl keys (re-encryption) both use it.
 */
void rcrypt_aad(char *out, size_t cap, const char *id, const char *patient_id, const char *type);

/*
 * Seals |len| bytes of |plain| with the newest key, binding |aad| (a NUL-
 * terminated string, e.g. from rcrypt_aad). |*key_id| gets the key version,
 * |*hex| a malloc'd "\x..." bytea text (caller frees).
 * PHR_OK, PHR_EINVAL (no key), PHR_ENOMEM or PHR_EGENERIC.
 */
int rcrypt_seal(const rcrypt_t *rc, const char *aad, const char *plain, size_t len, int *key_id,
                char **hex);

/*
 * Opens a blob sealed by rcrypt_seal under key |key_id| with the same |aad|.
 * |*plain| gets a malloc'd NUL-terminated copy (caller frees; |*len| when
 * |len| is not NULL). A version not loaded yet is read from the secrets of
 * rcrypt_load (and seals from then on when it is the newest). PHR_EINVAL
 * when the key is unknown, the text is malformed or authentication fails
 * (tampered blob, other aad).
 */
int rcrypt_open(const rcrypt_t *rc, const char *aad, int key_id, const char *hex, char **plain,
                size_t *len);

/*
 * HMAC-SHA256 of |data| under a MAC key derived from the newest data key
 * (HMAC(key, "phr-records-mac-v1")): cursor signatures and idempotency
 * request hashes, so neither reveals or confirms health values.
 */
int rcrypt_mac(const rcrypt_t *rc, const void *data, size_t len, unsigned char out[RCRYPT_MAC_LEN]);

#endif
