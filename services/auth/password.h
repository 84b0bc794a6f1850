/*
 * password.h - the password policy (the white paper's, kept): 8-128
 * characters after NFKC normalisation, at least one upper case, one lower
 * case and one digit, symbols optional, any Unicode, never truncated; not on
 * the shipped common-password list; not containing the e-mail's local part.
 * Staff of an org with neither MFA nor require_mfa need 13+ characters.
 * Composition and context rules are checked in memory; the common-password
 * blocklist lives in the database (SHA-256 of the lower-cased password).
 */
#ifndef PHR_AUTH_PASSWORD_H
#define PHR_AUTH_PASSWORD_H

#include <stddef.h>

#define PW_MIN_LENGTH 8
#define PW_MIN_LENGTH_SINGLE_FACTOR_STAFF 13
#define PW_MAX_LENGTH 128
#define PW_MAX_VIOLATIONS 8

typedef struct {
    const char *items[PW_MAX_VIOLATIONS]; /* static strings: "too_short", ... */
    size_t n;
} pw_violations_t;

/*
 * NFKC-normalises valid UTF-8 |in| into a new string (caller frees with
 * pw_free, which wipes it). Returns PHR_OK, PHR_EINVAL (invalid UTF-8) or
 * PHR_ENOMEM.
 */
int pw_normalize(const char *in, char **out);
void pw_free(char *s);

/*
 * Checks normalised |password| against the composition rules with minimum
 * length |min_length| (PW_MIN_LENGTH or PW_MIN_LENGTH_SINGLE_FACTOR_STAFF)
 * and, when |email| is not NULL, against its local part. Appends violation
 * codes: too_short, too_long, missing_upper, missing_lower, missing_digit,
 * contains_email.
 */
void pw_check_rules(const char *password, const char *email, size_t min_length,
                    pw_violations_t *out);

/*
 * The minimum password length of an account (MHLW guideline: 13+ mixed
 * characters, or 8+ with a second factor): PW_MIN_LENGTH_SINGLE_FACTOR_STAFF
 * for staff (|kind| "staff") of an org that does not require MFA and without a
 * confirmed second factor, else PW_MIN_LENGTH. Register, password change,
 * reset and staff creation all ask this.
 */
size_t pw_min_length(const char *kind, int org_requires_mfa, int has_second_factor);

/* SQL answering one row when $1 (pw_common_key) is on the blocklist. */
extern const char pw_common_sql[];

/* Hex SHA-256 of the lower-cased |password| into |out| (65 bytes). */
void pw_common_key(const char *password, char *out);

/*
 * A random initial password meeting the policy (16 characters from an
 * unambiguous alphabet with upper, lower and digits) into |out| (>= 17 bytes).
 */
int pw_generate(char *out, size_t outlen);

#endif
