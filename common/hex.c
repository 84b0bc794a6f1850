#include "hex.h"

#include <string.h>

#include "err.h"

void
hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int
hex_val(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int
hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (hex == NULL || strlen(hex) != 2 * n) {
        explicit_bzero(out, n);
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val((unsigned char)hex[2 * i]);
        int lo = hex_val((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            explicit_bzero(out, n);
            return PHR_EINVAL;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return PHR_OK;
}
