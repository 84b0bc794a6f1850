#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct {
    const char *text; /* literal text or parameter name (not NUL-terminated) */
    size_t len;
    int is_param;
} route_seg_t;

typedef struct {
    const char *method;
    const char *pattern;
    const void *data;
    int nsegs;
    route_seg_t segs[ROUTE_MAX_SEGMENTS];
} route_t;

struct router {
    route_t *routes;
    size_t n, cap;
};

router_t *
router_create(void)
{
    return calloc(1, sizeof(router_t));
}

void
router_free(router_t *r)
{
    if (r != NULL) {
        free(r->routes);
        free(r);
    }
}

/* Splits |path| into segments; returns the count or -1 when malformed. */
static int
router_split(const char *path, size_t len, route_seg_t *segs, int max)
{
    int n = 0;
    size_t i = 0;

    if (len == 0 || path[0] != '/') {
        return -1;
    }
    if (len == 1) {
        return 0;
    }
    while (i < len) {
        size_t start = ++i; /* skip '/' */
        while (i < len && path[i] != '/') {
            i++;
        }
        size_t seglen = i - start;
        if (seglen == 0 || n == max) {
            return -1;
        }
        if ((seglen == 1 && path[start] == '.') ||
            (seglen == 2 && path[start] == '.' && path[start + 1] == '.')) {
            return -1;
        }
        segs[n].text = path + start;
        segs[n].len = seglen;
        segs[n].is_param = 0;
        n++;
    }
    return n;
}

/* 1 when |a| and |b| match the same paths ("/a/{id}" and "/a/{other}" do). */
static int
router_same_shape(const route_t *a, const route_t *b)
{
    if (a->nsegs != b->nsegs) {
        return 0;
    }
    for (int i = 0; i < a->nsegs; i++) {
        const route_seg_t *x = &a->segs[i], *y = &b->segs[i];
        if (x->is_param != y->is_param ||
            (!x->is_param && (x->len != y->len || memcmp(x->text, y->text, x->len) != 0))) {
            return 0;
        }
    }
    return 1;
}

int
router_add(router_t *r, const char *method, const char *pattern, const void *data)
{
    route_t rt;
    int nparams = 0;

    memset(&rt, 0, sizeof(rt));
    rt.nsegs = router_split(pattern, strlen(pattern), rt.segs, ROUTE_MAX_SEGMENTS);
    if (rt.nsegs < 0) {
        return PHR_EINVAL;
    }
    for (int i = 0; i < rt.nsegs; i++) {
        route_seg_t *s = &rt.segs[i];
        if (s->text[0] == '{') {
            if (s->len < 3 || s->text[s->len - 1] != '}' || ++nparams > ROUTE_MAX_PARAMS) {
                return PHR_EINVAL;
            }
            s->is_param = 1;
            s->text++;
            s->len -= 2;
        } else if (memchr(s->text, '{', s->len) != NULL || memchr(s->text, '}', s->len) != NULL) {
            return PHR_EINVAL;
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->routes[i].method, method) == 0 && router_same_shape(&r->routes[i], &rt)) {
            return PHR_ECONFLICT;
        }
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        route_t *routes = realloc(r->routes, cap * sizeof(route_t));
        if (routes == NULL) {
            return PHR_ENOMEM;
        }
        r->routes = routes;
        r->cap = cap;
    }
    rt.method = method;
    rt.pattern = pattern;
    rt.data = data;
    r->routes[r->n++] = rt;
    return PHR_OK;
}

/*
 * Scores how well |rt| matches: -1 for no match, else a number where a
 * literal at an earlier segment outranks parameters (bit per segment).
 */
static long
router_score(const route_t *rt, const route_seg_t *segs, int nsegs)
{
    long score = 0;

    if (rt->nsegs != nsegs) {
        return -1;
    }
    for (int i = 0; i < nsegs; i++) {
        const route_seg_t *t = &rt->segs[i];
        score <<= 1;
        if (t->is_param) {
            continue;
        }
        if (t->len != segs[i].len || memcmp(t->text, segs[i].text, t->len) != 0) {
            return -1;
        }
        score |= 1;
    }
    return score;
}

static void
router_allow_add(route_match_t *m, const char *method)
{
    size_t used = strlen(m->allow);
    size_t n = strlen(method);

    /* Skip a method already listed (whole tokens only). */
    for (const char *p = m->allow; *p != '\0';) {
        size_t tok = strcspn(p, ",");
        if (tok == n && memcmp(p, method, n) == 0) {
            return;
        }
        p += tok;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    if (used + n + 3 > sizeof(m->allow)) {
        return;
    }
    if (used > 0) {
        memcpy(m->allow + used, ", ", 2);
        used += 2;
    }
    memcpy(m->allow + used, method, n + 1);
}

int
router_match(const router_t *r, const char *method, const char *path, size_t len, route_match_t *m)
{
    route_seg_t segs[ROUTE_MAX_SEGMENTS];
    const route_t *hit = NULL;
    long hit_score = -1;

    memset(m, 0, sizeof(*m));
    if (len >= sizeof(m->buf)) {
        return PHR_ENOTFOUND;
    }
    int nsegs = router_split(path, len, segs, ROUTE_MAX_SEGMENTS);
    if (nsegs < 0) {
        return PHR_ENOTFOUND;
    }
    /* The best-scoring template among those of |method|; the others only feed Allow. */
    for (size_t i = 0; i < r->n; i++) {
        const route_t *rt = &r->routes[i];
        long score = router_score(rt, segs, nsegs);
        if (score < 0) {
            continue;
        }
        if (strcmp(rt->method, method) != 0) {
            router_allow_add(m, rt->method);
        } else if (score > hit_score) {
            hit_score = score;
            hit = rt;
        }
    }
    if (hit == NULL) {
        return PHR_ENOTFOUND;
    }
    m->allow[0] = '\0';
    m->data = hit->data;
    m->pattern = hit->pattern;

    size_t off = 0;
    for (int i = 0; i < nsegs; i++) {
        if (!hit->segs[i].is_param) {
            continue;
        }
        route_param_t *p = &m->params[m->nparams++];
        p->name = hit->segs[i].text; /* points into the pattern: NUL-less, see route_param */
        memcpy(m->buf + off, segs[i].text, segs[i].len);
        m->buf[off + segs[i].len] = '\0';
        p->value = m->buf + off;
        off += segs[i].len + 1;
    }
    return PHR_OK;
}

const char *
route_param(const route_match_t *m, const char *name)
{
    size_t n = strlen(name);

    for (int i = 0; i < m->nparams; i++) {
        const char *pn = m->params[i].name;
        if (strncmp(pn, name, n) == 0 && pn[n] == '}') {
            return m->params[i].value;
        }
    }
    return NULL;
}
