/*
 * password.h - the password policy: composition and context rules checked
 * in memory; the common-password blocklist lives in the database.
 */
#ifndef PHR_AUTH_PASSWORD_H
#define PHR_AUTH_PASSWORD_H

#include <stddef.h>

#define PW_MIN_LENGTH 8
#define PW_MAX_LENGTH 128
#define PW_MAX_VIOLATIONS 8

typedef struct {
    const char *items[PW_MAX_VIOLATIONS]; /* static strings: "too_short", ... */
    size_t n;
} pw_violations_t;

/*
 * Checks |password| (valid UTF-8) against the composition rules and, when
 * |email| is not NULL, against its local part. Appends violation codes.
 */
void pw_check_rules(const char *password, const char *email, pw_violations_t *out);

/* SQL that answers one row when $1 (pw_common_key) is on the blocklist. */
extern const char pw_common_sql[];

/* Hex SHA-256 of the ASCII-lower-cased |password| into |out| (65 bytes). */
void pw_common_key(const char *password, char *out);

#endif
