/*
 * uuid.c - UUID text generation (see uuid.h).
 */
#include "uuid.h"

#include <openssl/rand.h>
#include <string.h>

#include "err.h"
#include "timeutil.h"

static void
uuid_format(const unsigned char b[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

int
uuid7_at(int64_t epoch_ms, char *out)
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)epoch_ms;

    if (RAND_bytes(b + 6, 10) != 1) {
        return PHR_EGENERIC;
    }
    for (int i = 0; i < 6; i++) {
        b[i] = (unsigned char)(ms >> (8 * (5 - i)));
    }
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    uuid_format(b, out);
    return PHR_OK;
}

int
uuid7(char *out)
{
    return uuid7_at(tu_now_ms(), out);
}

int
uuid4(char *out)
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return PHR_EGENERIC;
    }
    b[6] = (unsigned char)(0x40 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    uuid_format(b, out);
    return PHR_OK;
}

int
uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != UUID_STR_LEN) {
        return 0;
    }
    for (size_t i = 0; i < UUID_STR_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}
