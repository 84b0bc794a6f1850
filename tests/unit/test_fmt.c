/*
 * test_fmt.c - fmt_cat and fmt_u64 against what snprintf writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fmt.h"

static void
t_u64_matches_printf(void **state)
{
    (void)state;
    uint64_t v = 0;
    char got[FMT_U64_LEN], want[FMT_U64_LEN];

    /* every power of ten and its neighbours, then a spread of larger values, then the maximum */
    for (uint64_t p = 1; p != 0 && p <= UINT64_MAX / 10; p *= 10) {
        for (uint64_t d = 0; d < 3; d++) {
            v = p - 1 + d;
            size_t n = fmt_u64(got, v);
            snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
            assert_string_equal(got, want);
            assert_int_equal(n, strlen(want));
        }
    }
    for (v = 1; v < UINT64_MAX / 7; v = v * 7 + 3) {
        fmt_u64(got, v);
        snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
        assert_string_equal(got, want);
    }
    assert_int_equal(fmt_u64(got, UINT64_MAX), 20);
    assert_string_equal(got, "18446744073709551615");
    assert_int_equal(fmt_u64(got, 0), 1);
    assert_string_equal(got, "0");
}

static void
t_cat_bounds(void **state)
{
    (void)state;
    char out[8];

    memset(out, 'x', sizeof(out));
    size_t n = fmt_cat(out, sizeof(out), 0, "ab");
    assert_int_equal(n, 2);
    n = fmt_cat(out, sizeof(out), n, "");
    assert_int_equal(n, 2);
    n = fmt_cat(out, sizeof(out), n, "cdefghij");
    assert_int_equal(n, 7); /* cut so that the NUL fits */
    assert_string_equal(out, "abcdefg");
    n = fmt_cat(out, sizeof(out), n, "z");
    assert_int_equal(n, 7);
    assert_string_equal(out, "abcdefg");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_u64_matches_printf),
        cmocka_unit_test(t_cat_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
