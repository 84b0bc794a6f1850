#include "password.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonx.h"

const char pw_common_sql[] = "SELECT 1 FROM common_passwords WHERE sha256 = decode($1, 'hex')";

void
pw_common_key(const char *password, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n = strlen(password);
    char *lower = malloc(n + 1);

    for (size_t i = 0; lower != NULL && i < n; i++) {
        lower[i] = (char)tolower((unsigned char)password[i]);
    }
    if (lower == NULL || EVP_Digest(lower, n, md, &mdlen, EVP_sha256(), NULL) != 1) {
        memset(md, 0, sizeof(md));
        mdlen = 32;
    }
    if (lower != NULL) {
        OPENSSL_cleanse(lower, n);
        free(lower);
    }
    for (size_t i = 0; i < mdlen && i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static void
pw_add(pw_violations_t *out, const char *code)
{
    if (out->n < PW_MAX_VIOLATIONS) {
        out->items[out->n++] = code;
    }
}

/* 1 when |hay| contains |needle| (|n| bytes) ignoring ASCII case. */
static int
pw_contains_nocase(const char *hay, const char *needle, size_t n)
{
    for (; *hay != '\0'; hay++) {
        if (strncasecmp(hay, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

void
pw_check_rules(const char *password, const char *email, pw_violations_t *out)
{
    size_t chars = jx_utf8_len(password);
    int upper = 0, lower = 0, digit = 0;

    for (const unsigned char *p = (const unsigned char *)password; *p != '\0'; p++) {
        upper |= isupper(*p) != 0 && *p < 0x80;
        lower |= islower(*p) != 0 && *p < 0x80;
        digit |= isdigit(*p) != 0;
    }
    if (chars < PW_MIN_LENGTH) {
        pw_add(out, "too_short");
    }
    if (chars > PW_MAX_LENGTH) {
        pw_add(out, "too_long");
    }
    if (!upper) {
        pw_add(out, "missing_upper");
    }
    if (!lower) {
        pw_add(out, "missing_lower");
    }
    if (!digit) {
        pw_add(out, "missing_digit");
    }
    if (email != NULL) {
        const char *at = strchr(email, '@');
        size_t local = at != NULL ? (size_t)(at - email) : strlen(email);
        if (local >= 3 && pw_contains_nocase(password, email, local)) {
            pw_add(out, "contains_email");
        }
    }
}
