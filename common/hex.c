#include "hex.h"

#include <string.h>

#include "err.h"

/* One more than the value of each byte as a hex digit (either case); 0 for any other byte. */
static const unsigned char hex_tab[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

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
    return c >= 0 && c < 256 ? hex_tab[c] - 1 : -1;
}

int
hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (hex == NULL || strlen(hex) != 2 * n) {
        explicit_bzero(out, n);
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hex_tab[(unsigned char)hex[2 * i]];
        unsigned lo = hex_tab[(unsigned char)hex[2 * i + 1]];
        if (hi == 0 || lo == 0) {
            explicit_bzero(out, n);
            return PHR_EINVAL;
        }
        out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    return PHR_OK;
}
