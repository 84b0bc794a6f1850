#include "query.h"

#include <string.h>

#include "hex.h"
#include "jsonx.h"


/* Decodes |v| .. |end| into |out|: the number of bytes, or -1. */
static int
qry_decode(const char *v, const char *end, char *out, size_t cap)
{
    size_t n = 0;

    while (v < end) {
        int c = (unsigned char)*v++;
        if (c == '%') {
            int hi = end - v >= 2 ? hex_val((unsigned char)v[0]) : -1;
            int lo = hi >= 0 ? hex_val((unsigned char)v[1]) : -1;
            if (lo < 0) {
                return -1;
            }
            c = hi << 4 | lo;
            v += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0 || n + 1 >= cap) {
            return -1;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return (int)n;
}

int
qry_get(const char *query, const char *key, char *out, size_t cap)
{
    const char *q = query;
    size_t kl = strlen(key);

    if (cap == 0) {
        return -1;
    }
    out[0] = '\0';
    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - q) : len;
        if (klen == kl && strncmp(q, key, kl) == 0) {
            const char *v = eq != NULL ? eq + 1 : q + len;
            int n = qry_decode(v, q + len, out, cap);
            if (n < 0 || !jx_utf8_valid(out, (size_t)n)) {
                out[0] = '\0';
                return -1;
            }
            return 1;
        }
        q += len;
        if (*q == '&') {
            q++;
        }
    }
    return 0;
}
