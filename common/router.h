/*
 * router.h - method + path-template routing.
 *
 * Templates are absolute paths whose segments are literals or "{name}"
 * parameters ("/api/v1/orgs/{org_id}/groups"). A parameter matches one
 * non-empty segment. Literal segments win over parameters at the same depth.
 */
#ifndef PHR_ROUTER_H
#define PHR_ROUTER_H

#include <stddef.h>

#define ROUTE_MAX_PARAMS 4
#define ROUTE_MAX_SEGMENTS 12

typedef struct router router_t;

typedef struct {
    const char *name;  /* parameter name from the template */
    const char *value; /* NUL-terminated copy inside the match */
} route_param_t;

typedef struct {
    const void *data; /* the pointer given to router_add */
    const char *pattern;
    int nparams;
    route_param_t params[ROUTE_MAX_PARAMS];
    char allow[96]; /* on 405: comma-separated methods of the path */
    char buf[512];  /* storage of parameter values */
} route_match_t;

router_t *router_create(void);
void router_free(router_t *r);

/*
 * Adds a route. |method| and |pattern| must outlive the router.
 * Returns PHR_OK, PHR_EINVAL (malformed template, too many segments or
 * parameters), PHR_ECONFLICT (same method and template already added) or
 * PHR_ENOMEM.
 */
int router_add(router_t *r, const char *method, const char *pattern, const void *data);

/*
 * Matches |path| (|len| bytes, no query string). Returns PHR_OK with |m|
 * filled, or PHR_ENOTFOUND: when m->allow is non-empty the path exists under
 * other methods (answer 405 with Allow), otherwise nothing matches (404).
 * Paths with empty, "." or ".." segments, or longer than the buffer, never match.
 */
int router_match(const router_t *r, const char *method, const char *path, size_t len,
                 route_match_t *m);

/* Value of parameter |name| in |m|, or NULL. */
const char *route_param(const route_match_t *m, const char *name);

#endif
