/*
 * test_router.c - unit tests of common/router.c (no external services needed).
 *
 * Trailing slash behaviour (documented here, checked by t_trailing_slash):
 * a path or template ending in '/' has an empty last segment, so "/a/" never
 * matches "/a" (404, not a redirect) and router_add("/a/") is PHR_EINVAL.
 * The root "/" is a valid template with zero segments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "router.h"

static int t_d1, t_d2, t_d3, t_d4, t_d5;

static int
t_match(const router_t *r, const char *method, const char *path, route_match_t *m)
{
    return router_match(r, method, path, strlen(path), m);
}

static void
t_literal_beats_param(void **state)
{
    router_t *r = router_create();
    route_match_t m;

    assert_non_null(r);
    /* Add the parameter route first so insertion order cannot explain the result. */
    assert_int_equal(router_add(r, "GET", "/api/v1/items/{id}", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/api/v1/items/new", &t_d2), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/api/v1/{kind}/new", &t_d3), PHR_OK);

    assert_int_equal(t_match(r, "GET", "/api/v1/items/new", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d2);
    assert_string_equal(m.pattern, "/api/v1/items/new");
    assert_int_equal(m.nparams, 0);

    assert_int_equal(t_match(r, "GET", "/api/v1/items/42", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d1);
    assert_string_equal(route_param(&m, "id"), "42");

    /* /items/{id} (literal at depth 3) outranks /{kind}/new (literal at depth 4 only). */
    assert_int_equal(t_match(r, "GET", "/api/v1/things/new", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d3);
    assert_string_equal(route_param(&m, "kind"), "things");
    router_free(r);
}

static void
t_earlier_literal_wins(void **state)
{
    router_t *r = router_create();
    route_match_t m;

    assert_int_equal(router_add(r, "GET", "/{a}/x", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/x/{b}", &t_d2), PHR_OK);
    assert_int_equal(t_match(r, "GET", "/x/x", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d2);
    assert_string_equal(route_param(&m, "b"), "x");
    assert_null(route_param(&m, "a"));
    router_free(r);
}

static void
t_404_vs_405(void **state)
{
    router_t *r = router_create();
    route_match_t m;

    assert_int_equal(router_add(r, "GET", "/api/v1/records/{id}", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "PUT", "/api/v1/records/{id}", &t_d2), PHR_OK);
    assert_int_equal(router_add(r, "DELETE", "/api/v1/records/{id}", &t_d3), PHR_OK);
    assert_int_equal(router_add(r, "POST", "/api/v1/records", &t_d4), PHR_OK);

    assert_int_equal(t_match(r, "PATCH", "/api/v1/records/7", &m), PHR_ENOTFOUND);
    assert_string_equal(m.allow, "GET, PUT, DELETE");
    assert_null(m.data);

    assert_int_equal(t_match(r, "GET", "/api/v1/records", &m), PHR_ENOTFOUND);
    assert_string_equal(m.allow, "POST");

    assert_int_equal(t_match(r, "GET", "/api/v1/nothing/7", &m), PHR_ENOTFOUND);
    assert_string_equal(m.allow, "");

    /* A hit clears the Allow list collected from other methods. */
    assert_int_equal(t_match(r, "DELETE", "/api/v1/records/7", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d3);
    assert_string_equal(m.allow, "");

    /* Method names are case sensitive (HTTP/2 sends them as they are). */
    assert_int_equal(t_match(r, "get", "/api/v1/records/7", &m), PHR_ENOTFOUND);
    assert_int_not_equal(m.allow[0], '\0');
    router_free(r);
}

static void
t_allow_no_duplicates(void **state)
{
    router_t *r = router_create();
    route_match_t m;

    /* Two GET templates both match /a/b: GET must appear once. */
    assert_int_equal(router_add(r, "GET", "/a/{x}", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/{y}/b", &t_d2), PHR_OK);
    assert_int_equal(router_add(r, "POST", "/a/b", &t_d3), PHR_OK);
    assert_int_equal(t_match(r, "PUT", "/a/b", &m), PHR_ENOTFOUND);
    assert_string_equal(m.allow, "GET, POST");
    router_free(r);
}

static void
t_bad_paths_never_match(void **state)
{
    router_t *r = router_create();
    route_match_t m;
    static const char *const bad[] = {
        "/a/../b", "/a/./b", "/a//b", "//a/b", "/a/b/..", "/..", "/.", "", "a/b", "/a/b/",
    };

    assert_int_equal(router_add(r, "GET", "/{p}/{q}", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/{p}/{q}/{r}", &t_d2), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/{p}", &t_d3), PHR_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(t_match(r, "GET", bad[i], &m), PHR_ENOTFOUND);
        assert_string_equal(m.allow, "");
    }
    /* Segments that merely contain dots are fine. */
    assert_int_equal(t_match(r, "GET", "/a.b/...", &m), PHR_OK);
    assert_string_equal(route_param(&m, "q"), "...");
    assert_int_equal(t_match(r, "GET", "/..a", &m), PHR_OK);
    router_free(r);
}

static void
t_bad_templates(void **state)
{
    router_t *r = router_create();
    static const char *const bad[] = {
        "",
        "a/b",
        "/a//b",
        "/a/../b",
        "/a/./b",
        "/a/",
        "/{}",
        "/{x",
        "/x}",
        "/a{x}",
        "/{x}y",
        "/{",
        "//",
        "/1/2/3/4/5/6/7/8/9/10/11/12/13",
        "/{a}/{b}/{c}/{d}/{e}",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(router_add(r, "GET", bad[i], &t_d1), PHR_EINVAL);
    }
    /* The limits themselves are accepted. */
    assert_int_equal(router_add(r, "GET", "/1/2/3/4/5/6/7/8/9/10/11/12", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/{a}/{b}/{c}/{d}", &t_d2), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/", &t_d3), PHR_OK);
    router_free(r);
}

static void
t_duplicate(void **state)
{
    router_t *r = router_create();

    assert_int_equal(router_add(r, "GET", "/a/{id}", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/a/{id}", &t_d2), PHR_ECONFLICT);
    assert_int_equal(router_add(r, "POST", "/a/{id}", &t_d2), PHR_OK);
    /* A different parameter name matches the same paths: refused too. */
    assert_int_equal(router_add(r, "GET", "/a/{other}", &t_d3), PHR_ECONFLICT);
    assert_int_equal(router_add(r, "GET", "/a/{id}/b", &t_d3), PHR_OK);
    router_free(r);
}

static void
t_params_copied(void **state)
{
    router_t *r = router_create();
    route_match_t m;
    char path[64];

    assert_int_equal(router_add(r, "GET", "/orgs/{org_id}/groups/{group_id}", &t_d1), PHR_OK);
    memcpy(path, "/orgs/acme/groups/g1", sizeof("/orgs/acme/groups/g1"));
    /* Only the first 20 bytes count: the length, not the NUL, ends the path. */
    assert_int_equal(router_match(r, "GET", path, strlen(path), &m), PHR_OK);
    memset(path, 'X', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(m.nparams, 2);
    assert_string_equal(route_param(&m, "org_id"), "acme");
    assert_string_equal(route_param(&m, "group_id"), "g1");
    assert_null(route_param(&m, "org"));
    assert_null(route_param(&m, "group_id_x"));
    assert_null(route_param(&m, ""));

    /* A length shorter than the string cuts the path. */
    assert_int_equal(router_match(r, "GET", "/orgs/acme/groups/g1/extra", 20, &m), PHR_OK);
    assert_string_equal(route_param(&m, "group_id"), "g1");
    router_free(r);
}

static void
t_trailing_slash(void **state)
{
    router_t *r = router_create();
    route_match_t m;

    assert_int_equal(router_add(r, "GET", "/a", &t_d1), PHR_OK);
    assert_int_equal(router_add(r, "GET", "/", &t_d2), PHR_OK);
    assert_int_equal(t_match(r, "GET", "/a", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d1);
    assert_int_equal(t_match(r, "GET", "/a/", &m), PHR_ENOTFOUND);
    assert_string_equal(m.allow, "");
    assert_int_equal(t_match(r, "GET", "/", &m), PHR_OK);
    assert_ptr_equal(m.data, &t_d2);
    router_free(r);
}

static void
t_long_paths(void **state)
{
    router_t *r = router_create();
    route_match_t m;
    char path[1024];

    assert_int_equal(router_add(r, "GET", "/x/{v}", &t_d1), PHR_OK);
    /* 511 bytes fit the match buffer, 512 do not. */
    path[0] = '/';
    path[1] = 'x';
    path[2] = '/';
    memset(path + 3, 'v', sizeof(path) - 3);
    assert_int_equal(router_match(r, "GET", path, 511, &m), PHR_OK);
    assert_int_equal(strlen(route_param(&m, "v")), 508);
    assert_int_equal(router_match(r, "GET", path, 512, &m), PHR_ENOTFOUND);
    assert_int_equal(router_match(r, "GET", path, sizeof(path), &m), PHR_ENOTFOUND);

    /* More segments than ROUTE_MAX_SEGMENTS never match (and do not overflow). */
    const char *deep = "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p";
    assert_int_equal(t_match(r, "GET", deep, &m), PHR_ENOTFOUND);
    router_free(r);
}

static void
t_many_routes(void **state)
{
    router_t *r = router_create();
    route_match_t m;
    static char pats[100][32];

    for (int i = 0; i < 100; i++) {
        snprintf(pats[i], sizeof(pats[i]), "/r%d/{id}", i);
        assert_int_equal(router_add(r, "GET", pats[i], pats[i]), PHR_OK);
    }
    assert_int_equal(t_match(r, "GET", "/r73/abc", &m), PHR_OK);
    assert_ptr_equal(m.data, pats[73]);
    assert_string_equal(route_param(&m, "id"), "abc");
    (void)t_d4;
    (void)t_d5;
    router_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_literal_beats_param),
        cmocka_unit_test(t_earlier_literal_wins),
        cmocka_unit_test(t_404_vs_405),
        cmocka_unit_test(t_allow_no_duplicates),
        cmocka_unit_test(t_bad_paths_never_match),
        cmocka_unit_test(t_bad_templates),
        cmocka_unit_test(t_duplicate),
        cmocka_unit_test(t_params_copied),
        cmocka_unit_test(t_trailing_slash),
        cmocka_unit_test(t_long_paths),
        cmocka_unit_test(t_many_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
