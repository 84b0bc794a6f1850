/*
 * pwhash.h - password hashing: argon2id (libargon2) m=19456 KiB, t=2, p=1,
 * 16-byte random salt, 32-byte tag, stored as the PHC encoded string, with an
 * optional pepper (HMAC-SHA256 of the NFKC password under a versioned key
 * from the secrets dir, applied before argon2; the key id is stored with the
 * hash as a "$pepper=<id>" suffix-free prefix field so keys can rotate).
 * Hashing is CPU-heavy: the *_async calls run it on the worker pool and call
 * back on the event loop.
 */
#ifndef PHR_AUTH_PWHASH_H
#define PHR_AUTH_PWHASH_H

#include <stddef.h>

#include "h2s.h"
#include "workq.h"

#define PWHASH_ENCODED_MAX 256

typedef struct {
    char id[16]; /* "v1"; "" = no pepper */
    unsigned char key[64];
    size_t keylen;
} pwhash_pepper_t;

/*
 * Hashes |password| (already NFKC-normalised) into |out| (PWHASH_ENCODED_MAX).
 * |pepper| may be NULL or have an empty id. Returns PHR_OK, PHR_EGENERIC.
 */
int pwhash_hash(const char *password, const pwhash_pepper_t *pepper, char *out, size_t outlen);

/*
 * Checks |password| against |encoded|. |peppers| (|npeppers| entries) are
 * the known keys; the one named in |encoded| is used. Returns PHR_OK on a
 * match, PHR_EDENIED on a mismatch, PHR_EINVAL when |encoded| is malformed or
 * names an unknown pepper. Constant-time in the comparison of tags.
 */
int pwhash_verify(const char *encoded, const char *password, const pwhash_pepper_t *peppers,
                  size_t npeppers);

/* 1 when |encoded| uses other parameters or another pepper than |current|: rehash on login. */
int pwhash_needs_rehash(const char *encoded, const pwhash_pepper_t *current);

/*
 * Worker-pool versions. |password| is copied (and wiped after use). The
 * callback runs on the loop: for hash, |encoded| is the new string (valid
 * during the call); for verify, |rc| as pwhash_verify and |needs_rehash|.
 * |encoded| NULL in verify means "no such account": a dummy hash of the same
 * cost runs and the answer is PHR_EDENIED (no timing difference).
 * |req| is the request waiting for the answer (NULL: none): when it closes
 * (the client reset the stream or left) before the hash starts, the hash is
 * dropped and the callback gets PHR_ECLOSED (counted in workq_dropped); a
 * hash already running finishes. |req| must stay valid until the callback,
 * as an unanswered h2s request does.
 * Returns PHR_OK, PHR_EFULL (queue full: answer 503 + Retry-After), PHR_ENOMEM.
 */
typedef void (*pwhash_hash_cb)(int rc, const char *encoded, void *ud);
typedef void (*pwhash_verify_cb)(int rc, int needs_rehash, void *ud);

int pwhash_hash_async(workq_t *wq, const char *password, const pwhash_pepper_t *pepper,
                      const h2s_req_t *req, pwhash_hash_cb cb, void *ud);
int pwhash_verify_async(workq_t *wq, const char *encoded, const char *password,
                        const pwhash_pepper_t *peppers, size_t npeppers, const h2s_req_t *req,
                        pwhash_verify_cb cb, void *ud);

#endif
