/*
 * mfa.h - the auth service's second factors: TOTP (RFC 6238, SHA-1, 6 digits,
 * 30 s, one step either side, each step accepted once), secrets sealed with
 * AES-256-GCM under the data key, ten hashed single-use recovery codes, and
 * the second step of a login (an mfa_token in Redis, 5 minutes, 5 attempts).
 */
#ifndef PHR_AUTH_MFA_H
#define PHR_AUTH_MFA_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "svc.h"

#define AUTH_MFA_SECRET_BYTES 20 /* 160-bit TOTP seed */
#define AUTH_MFA_STEP_S 30
#define AUTH_MFA_TOKEN_TTL_S 300
#define AUTH_MFA_MAX_TRIES 5

extern const svc_routes_t auth_mfa_routes;

/*
 * Called by login once the password is right: answers the MFA challenge
 * (200 {mfa_required, mfa_token, methods}) when the account has a confirmed
 * second factor, else continues with auth_login_issue(ctx, "none").
 */
void auth_mfa_login(auth_ctx_t *ctx);

/* The RFC 6238/4226 code (0..999999) of |key| at time step |step|. */
uint32_t auth_mfa_totp(const unsigned char *key, size_t keylen, uint64_t step);

/* RFC 4648 base32 of |in| without padding into |out|; the length or 0 when |cap| is short. */
size_t auth_mfa_base32(const unsigned char *in, size_t len, char *out, size_t cap);

/*
 * The confirmed SMS phone of |account_id| from its sealed mfa_sms.phone_enc
 * |hex| and |key_id| into |out| (>= 17 bytes). PHR_OK or PHR_EGENERIC.
 */
int mfa_phone_open(svc_t *svc, const char *account_id, const char *hex, const char *key_id,
                   char *out, size_t cap);

#endif
