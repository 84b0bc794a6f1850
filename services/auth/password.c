/*
 * password.c - the password policy (see password.h).
 *
 * Decisions:
 * - Lengths count Unicode code points of the NFKC-normalised password, so a
 *   full-width "Ｐａｓｓｗｏｒｄ１" is the 9-character "Password1" and the
 *   ligature "ﬁ" is the two characters "fi".
 * - Character classes are Unicode-aware: upper case = general category Lu or Lt,
 *   lower case = Ll, digit = Nd (any script's decimal digit). So "Äß1xxxxx"
 *   has upper, lower and digit. Scripts without case (kana, kanji) count for
 *   length only: a Japanese password still needs one upper and one lower case
 *   letter from a cased script.
 * - contains_email: the e-mail's local part (before the last '@'), when it has
 *   at least 3 code points, is searched in the password after NFKC + Unicode
 *   case folding of both (u8_casefold), so "TARO.yamada" in the password matches
 *   "taro.yamada@example.jp".
 * - Nothing is ever truncated: the whole string is checked, hashed and keyed.
 * - Secrets in temporary buffers are wiped (OPENSSL_cleanse) before free.
 */
#include "password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "err.h"

const char pw_common_sql[] = "SELECT 1 FROM common_passwords WHERE sha256 = decode($1, 'hex')";

int
pw_normalize(const char *in, char **out)
{
    size_t n = strlen(in);
    size_t outn = 0;
    uint8_t *res;

    *out = NULL;
    if (u8_check((const uint8_t *)in, n) != NULL) {
        return PHR_EINVAL;
    }
    /* The terminating NUL is normalised too (to itself): the result is a C string. */
    res = u8_normalize(UNINORM_NFKC, (const uint8_t *)in, n + 1, NULL, &outn);
    if (res == NULL) {
        return PHR_ENOMEM;
    }
    if (outn == 0 || res[outn - 1] != '\0') { /* cannot happen: defensive */
        OPENSSL_cleanse(res, outn);
        free(res);
        return PHR_EINVAL;
    }
    *out = (char *)res;
    return PHR_OK;
}

void
pw_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void
pw_add(pw_violations_t *out, const char *code)
{
    if (out->n < PW_MAX_VIOLATIONS) {
        out->items[out->n++] = code;
    }
}

/*
 * NFKC + Unicode case folding of |n| bytes at |s| into a new buffer (caller
 * wipes and frees), length in |*outn|. NULL on invalid UTF-8 or no memory.
 */
static uint8_t *
pw_fold(const char *s, size_t n, size_t *outn)
{
    *outn = 0;
    if (n == 0) {
        return calloc(1, 1);
    }
    return u8_casefold((const uint8_t *)s, n, NULL, UNINORM_NFKC, NULL, outn);
}

static void
pw_wipe_free(uint8_t *p, size_t n)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, n);
        free(p);
    }
}

/* 1 when the password contains the local part of |email| (see the top of the file). */
static int
pw_contains_local_part(const char *password, const char *email)
{
    const char *at = strrchr(email, '@');
    size_t llen = at != NULL ? (size_t)(at - email) : strlen(email);
    size_t nlen = 0, flen = 0, plen = 0;
    uint8_t *nlocal, *flocal, *fpw;
    int found = 0;

    if (llen == 0 || u8_check((const uint8_t *)email, llen) != NULL) {
        return 0;
    }
    /* ">= 3 characters" counts the NFKC form, before case folding (which may expand ß). */
    nlocal = u8_normalize(UNINORM_NFKC, (const uint8_t *)email, llen, NULL, &nlen);
    if (nlocal == NULL || u8_mbsnlen(nlocal, nlen) < 3) {
        pw_wipe_free(nlocal, nlen);
        return 0;
    }
    flocal = pw_fold((const char *)nlocal, nlen, &flen);
    fpw = pw_fold(password, strlen(password), &plen);
    if (flocal != NULL && fpw != NULL && flen > 0) {
        found = memmem(fpw, plen, flocal, flen) != NULL;
    }
    pw_wipe_free(nlocal, nlen);
    pw_wipe_free(flocal, flen);
    pw_wipe_free(fpw, plen);
    return found;
}

void
pw_check_rules(const char *password, const char *email, size_t min_length, pw_violations_t *out)
{
    const uint8_t *p = (const uint8_t *)password;
    size_t left = strlen(password);
    size_t chars = 0;
    int upper = 0, lower = 0, digit = 0;

    while (left > 0) {
        ucs4_t c;
        int len = u8_mbtouc(&c, p, left); /* invalid bytes give U+FFFD, length 1+ */

        if (uc_is_general_category(c, UC_CATEGORY_Lu) ||
            uc_is_general_category(c, UC_CATEGORY_Lt)) {
            upper = 1;
        } else if (uc_is_general_category(c, UC_CATEGORY_Ll)) {
            lower = 1;
        } else if (uc_is_general_category(c, UC_CATEGORY_Nd)) {
            digit = 1;
        }
        chars++;
        p += len;
        left -= (size_t)len;
    }
    if (chars < min_length) {
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
    if (email != NULL && pw_contains_local_part(password, email)) {
        pw_add(out, "contains_email");
    }
}

static int
pw_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* SHA-256 of |s| lower-cased in ASCII, streamed through a small stack buffer. */
static int
pw_sha256_ascii_lower(const char *s, size_t n, unsigned char *md)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char chunk[64];
    unsigned int mdlen = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    for (size_t off = 0; ok && off < n; off += sizeof(chunk)) {
        size_t k = n - off < sizeof(chunk) ? n - off : sizeof(chunk);

        for (size_t i = 0; i < k; i++) {
            unsigned char c = (unsigned char)s[off + i];
            chunk[i] = c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
        }
        ok = EVP_DigestUpdate(ctx, chunk, k) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    OPENSSL_cleanse(chunk, sizeof(chunk));
    EVP_MD_CTX_free(ctx);
    return ok;
}

/*
 * Lower-casing: u8_tolower (Unicode full case mapping, no language, no
 * normalisation: the caller passes the NFKC form). For ASCII this is ASCII
 * tolower(), which is what tools/gen-common-passwords.sh applies to the list
 * (it ships ASCII entries only), so both sides agree. On invalid UTF-8 or no
 * memory the ASCII lower-casing is used.
 */
void
pw_common_key(const char *password, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    size_t n = strlen(password);
    int ok = 0;

    if (!pw_is_ascii(password, n)) {
        size_t ln = 0;
        uint8_t *lower = u8_tolower((const uint8_t *)password, n, NULL, NULL, NULL, &ln);

        if (lower != NULL) {
            unsigned int mdlen = 0;
            ok = EVP_Digest(lower, ln, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
            pw_wipe_free(lower, ln);
        }
    }
    if (!ok && !pw_sha256_ascii_lower(password, n, md)) {
        memset(md, 0, sizeof(md)); /* unreachable in practice: OpenSSL failed */
    }
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
}

/*
 * The generator's alphabet: no 0/O/o, 1/l/I. 24 upper + 24 lower + 8 digits =
 * 56 symbols, 16 characters = 92.9 bits.
 */
static const char pw_alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ"
                                  "abcdefghijkmnpqrstuvwxyz"
                                  "23456789";
#define PW_GEN_LEN 16
#define PW_ALPHABET_LEN (sizeof(pw_alphabet) - 1)
/* Largest multiple of the alphabet size not above 256: bytes >= it are rejected. */
#define PW_REJECT_AT (256 - 256 % PW_ALPHABET_LEN)

size_t
pw_min_length(const char *kind, int org_requires_mfa, int has_second_factor)
{
    if (kind != NULL && strcmp(kind, "staff") == 0 && !org_requires_mfa && !has_second_factor) {
        return PW_MIN_LENGTH_SINGLE_FACTOR_STAFF;
    }
    return PW_MIN_LENGTH;
}

int
pw_generate(char *out, size_t outlen)
{
    unsigned char rnd[64];
    size_t used = sizeof(rnd);
    int rc = PHR_OK;

    if (out == NULL || outlen < PW_GEN_LEN + 1) {
        return PHR_EINVAL;
    }
    /* Whole passwords lacking a class are rejected too: uniform over valid ones. */
    for (;;) {
        int upper = 0, lower = 0, digit = 0;

        for (size_t i = 0; i < PW_GEN_LEN;) {
            if (used == sizeof(rnd)) {
                if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
                    rc = PHR_EGENERIC;
                    goto out;
                }
                used = 0;
            }
            unsigned char b = rnd[used++];
            if (b >= PW_REJECT_AT) {
                continue;
            }
            char c = pw_alphabet[b % PW_ALPHABET_LEN];
            upper |= c >= 'A' && c <= 'Z';
            lower |= c >= 'a' && c <= 'z';
            digit |= c >= '0' && c <= '9';
            out[i++] = c;
        }
        out[PW_GEN_LEN] = '\0';
        if (upper && lower && digit) {
            break;
        }
    }
out:
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if (rc != PHR_OK) {
        OPENSSL_cleanse(out, outlen);
        out[0] = '\0';
    }
    return rc;
}
