/*
 * fuzz_route.c - libFuzzer target for common/router.c.
 *
 * The input is "METHOD PATH" (split at the first space; without one the
 * method is GET and the whole input is the path). The path is passed with
 * its length and is not NUL-terminated. A static router holds ~20 templates
 * shaped like the services' API. Invariants (trap on violation):
 *   - a match has data, a pattern, <= ROUTE_MAX_PARAMS parameters whose
 *     values are non-empty, slash-free, equal to the path's segment and
 *     found again by route_param; the Allow list is then empty;
 *   - a path with an empty, "." or ".." segment never matches;
 *   - a 405 Allow list is a NUL-terminated, comma-separated list of the
 *     registered methods.
 * Seed corpus: tests/fuzz/corpus/route/. Run through tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_routes[][2] = {
    {"GET", "/livez"},
    {"GET", "/readyz"},
    {"GET", "/metrics"},
    {"POST", "/api/v1/auth/register"},
    {"POST", "/api/v1/auth/login"},
    {"POST", "/api/v1/auth/logout"},
    {"GET", "/api/v1/auth/me"},
    {"GET", "/api/v1/records"},
    {"POST", "/api/v1/records"},
    {"GET", "/api/v1/records/{record_id}"},
    {"PUT", "/api/v1/records/{record_id}"},
    {"DELETE", "/api/v1/records/{record_id}"},
    {"GET", "/api/v1/records/export"},
    {"GET", "/api/v1/orgs/{org_id}/groups"},
    {"POST", "/api/v1/orgs/{org_id}/groups"},
    {"GET", "/api/v1/orgs/{org_id}/groups/{group_id}/members/{user_id}"},
    {"PATCH", "/api/v1/orgs/{org_id}/groups/{group_id}"},
    {"GET", "/api/v1/notifications"},
    {"POST", "/api/v1/notifications/{id}/read"},
    {"GET", "/internal/audit/events"},
    {"POST", "/internal/audit/events"},
    {"GET", "/{a}/{b}/{c}/{d}"},
};
#define FUZZ_NROUTES (sizeof(fuzz_routes) / sizeof(fuzz_routes[0]))

static router_t *fuzz_router;

static void
fuzz_init(void)
{
    fuzz_router = router_create();
    if (fuzz_router == NULL) {
        abort();
    }
    for (size_t i = 0; i < FUZZ_NROUTES; i++) {
        if (router_add(fuzz_router, fuzz_routes[i][0], fuzz_routes[i][1], fuzz_routes[i]) !=
            PHR_OK) {
            abort();
        }
    }
}

/* 1 when |path| has an empty, "." or ".." segment. */
static int
fuzz_bad_segment(const char *path, size_t len)
{
    size_t i = 0;

    if (len <= 1) {
        return 0;
    }
    while (i < len) {
        size_t start = ++i;
        while (i < len && path[i] != '/') {
            i++;
        }
        size_t n = i - start;
        if (n == 0 || (n == 1 && path[start] == '.') ||
            (n == 2 && path[start] == '.' && path[start + 1] == '.')) {
            return 1;
        }
    }
    return 0;
}

static int
fuzz_known_method(const char *m, size_t n)
{
    for (size_t i = 0; i < FUZZ_NROUTES; i++) {
        if (strlen(fuzz_routes[i][0]) == n && memcmp(fuzz_routes[i][0], m, n) == 0) {
            return 1;
        }
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char method[32] = "GET";
    const uint8_t *sp = memchr(data, ' ', size);
    const uint8_t *path = data;
    size_t plen = size;
    route_match_t m;

    if (fuzz_router == NULL) {
        fuzz_init();
    }
    if (sp != NULL) {
        size_t mlen = (size_t)(sp - data);
        if (mlen >= sizeof(method) || memchr(data, '\0', mlen) != NULL) {
            return 0;
        }
        memcpy(method, data, mlen);
        method[mlen] = '\0';
        path = sp + 1;
        plen = size - mlen - 1;
    }
    /* An exact-size heap copy, so ASan sees any read past |plen|. */
    char *p = malloc(plen > 0 ? plen : 1);
    if (p == NULL) {
        return 0;
    }
    if (plen > 0) {
        memcpy(p, path, plen);
    }
    int rc = router_match(fuzz_router, method, p, plen, &m);

    if (memchr(m.allow, '\0', sizeof(m.allow)) == NULL) {
        __builtin_trap();
    }
    if (rc == PHR_OK) {
        const char *const *rt = m.data;
        if (rt == NULL || m.pattern == NULL || m.pattern != rt[1] || strcmp(rt[0], method) != 0 ||
            m.allow[0] != '\0' || m.nparams < 0 || m.nparams > ROUTE_MAX_PARAMS ||
            fuzz_bad_segment(p, plen) || plen == 0 || p[0] != '/') {
            __builtin_trap();
        }
        /* Values are C strings: a NUL inside the path cuts them, so only check the rest. */
        int has_nul = memchr(p, '\0', plen) != NULL;
        for (int i = 0; i < m.nparams; i++) {
            const char *v = m.params[i].value;
            if (has_nul) {
                continue;
            }
            size_t vlen = strlen(v);
            if (vlen == 0 || strchr(v, '/') != NULL || memmem(p, plen, v, vlen) == NULL ||
                v < m.buf || v + vlen >= m.buf + sizeof(m.buf)) {
                __builtin_trap();
            }
            /* The name runs up to '}' in the pattern. */
            char name[64];
            const char *end = strchr(m.params[i].name, '}');
            if (end == NULL || (size_t)(end - m.params[i].name) >= sizeof(name)) {
                __builtin_trap();
            }
            memcpy(name, m.params[i].name, (size_t)(end - m.params[i].name));
            name[end - m.params[i].name] = '\0';
            if (route_param(&m, name) == NULL) {
                __builtin_trap();
            }
        }
    } else if (rc == PHR_ENOTFOUND) {
        if (m.data != NULL) {
            __builtin_trap();
        }
        /* Every entry of Allow is a registered method other than |method|. */
        const char *a = m.allow;
        while (*a != '\0') {
            const char *comma = strstr(a, ", ");
            size_t n = comma != NULL ? (size_t)(comma - a) : strlen(a);
            if (!fuzz_known_method(a, n) || (strlen(method) == n && memcmp(method, a, n) == 0)) {
                __builtin_trap();
            }
            a += n;
            if (comma != NULL) {
                a += 2;
            }
        }
    } else {
        __builtin_trap();
    }
    free(p);
    return 0;
}
