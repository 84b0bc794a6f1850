/*
 * fuzz_query.c - libFuzzer target for common/query.c and common/hex.c.
 *
 * The input is "KEY\nQUERY" (split at the first newline; without one the key
 * is "q" and the whole input is the query). Invariants (trap on violation):
 *   - qry_get answers 1, 0 or -1; on 0 and -1 the output is "";
 *   - on 1 the output fits the buffer, is NUL-terminated, has no NUL before its
 *     end and is valid UTF-8, and the query has "KEY=" or "KEY" as a pair;
 *   - a value of only unreserved characters comes back unchanged;
 *   - hex_decode of the query as digits either fails with the output zeroed, or
 *     hex_encode of its output gives the input again, lower-cased.
 * Seed corpus: tests/fuzz/corpus/query/. Run through tests/fuzz/run.sh.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hex.h"
#include "jsonx.h"
#include "query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP 64

/* 1 when |q| has a pair whose name is exactly |key|. */
static int
fuzz_has_pair(const char *q, const char *key)
{
    size_t kl = strlen(key);

    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        if ((len == kl || (len > kl && q[kl] == '=')) && strncmp(q, key, kl) == 0) {
            return 1;
        }
        q += len;
        q += *q == '&';
    }
    return 0;
}

static void
fuzz_hex(const char *s)
{
    unsigned char bytes[FUZZ_CAP];
    char back[2 * FUZZ_CAP + 1];
    size_t n = strlen(s) / 2;

    if (n == 0 || n > FUZZ_CAP) {
        return;
    }
    memset(bytes, 0xa5, sizeof(bytes));
    if (hex_decode(s, bytes, n) != PHR_OK) {
        for (size_t i = 0; i < n; i++) {
            if (bytes[i] != 0) {
                __builtin_trap();
            }
        }
        return;
    }
    hex_encode(bytes, n, back);
    for (size_t i = 0; i < 2 * n; i++) {
        if (back[i] != (char)tolower((unsigned char)s[i])) {
            __builtin_trap();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    char out[FUZZ_CAP];

    if (in == NULL) {
        return 0;
    }
    memcpy(in, data, size);
    in[size] = '\0';
    char *nl = memchr(in, '\n', size);
    const char *key = "q", *query = in;
    if (nl != NULL) {
        *nl = '\0';
        key = in;
        query = nl + 1;
    }
    memset(out, 'x', sizeof(out));
    int rc = qry_get(query, key, out, sizeof(out));
    if (rc != 1 && rc != 0 && rc != -1) {
        __builtin_trap();
    }
    if (rc != 1 && out[0] != '\0') {
        __builtin_trap();
    }
    if (rc == 1) {
        size_t len = strnlen(out, sizeof(out));
        if (len == sizeof(out) || !jx_utf8_valid(out, len) || !fuzz_has_pair(query, key)) {
            __builtin_trap();
        }
    }
    /* unreserved characters only: the value comes back as it was */
    size_t ql = strlen(query);
    if (ql > 0 && ql < sizeof(out) - 2 &&
        strspn(query, "abcdefghijklmnopqrstuvwxyz0123456789-._~") == ql) {
        char q2[FUZZ_CAP + 4];
        memcpy(q2, "v=", 2);
        memcpy(q2 + 2, query, ql + 1);
        if (qry_get(q2, "v", out, sizeof(out)) != 1 || strcmp(out, query) != 0) {
            __builtin_trap();
        }
    }
    fuzz_hex(query);
    free(in);
    return 0;
}
