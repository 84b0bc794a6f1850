#include "fmt.h"

#include <string.h>

size_t
fmt_cat(char *out, size_t cap, size_t len, const char *s)
{
    size_t n = strlen(s);

    if (len + 1 >= cap) {
        return len;
    }
    if (len + n >= cap) {
        n = cap - len - 1;
    }
    memcpy(out + len, s, n);
    len += n;
    out[len] = '\0';
    return len;
}

size_t
fmt_u64(char *out, uint64_t v)
{
    char d[FMT_U64_LEN];
    size_t i = sizeof(d);

    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t n = sizeof(d) - i;
    memcpy(out, d + i, n);
    out[n] = '\0';
    return n;
}
