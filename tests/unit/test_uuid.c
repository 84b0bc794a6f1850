/*
 * test_uuid.c - common/uuid.c: version and variant bits, time ordering,
 * uniqueness, validation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "uuid.h"

static void
test_v7_layout(void **state)
{
    char u[UUID_STR_LEN + 1];

    /* the first 48 bits are the milliseconds, big-endian */
    assert_int_equal(uuid7_at(0x0123456789abLL, u), PHR_OK);
    assert_int_equal(strlen(u), UUID_STR_LEN);
    assert_memory_equal(u, "01234567-89ab-7", 15);
    assert_non_null(strchr("89ab", u[19]));
    assert_true(uuid_valid(u));
}

static void
test_v7_ordered_and_unique(void **state)
{
    char a[UUID_STR_LEN + 1], b[UUID_STR_LEN + 1];

    for (int i = 0; i < 200; i++) {
        assert_int_equal(uuid7_at(1000 + i, a), PHR_OK);
        assert_int_equal(uuid7_at(1001 + i, b), PHR_OK);
        assert_true(strcmp(a, b) < 0); /* later milliseconds sort later */
        assert_int_equal(uuid7(a), PHR_OK);
        assert_int_equal(uuid7(b), PHR_OK);
        assert_string_not_equal(a, b);
    }
}

static void
test_v4(void **state)
{
    char a[UUID_STR_LEN + 1], b[UUID_STR_LEN + 1];

    assert_int_equal(uuid4(a), PHR_OK);
    assert_int_equal(uuid4(b), PHR_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_true(uuid_valid(a));
}

static void
test_valid(void **state)
{
    assert_true(uuid_valid("0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3a"));
    assert_false(uuid_valid("0B7C6A52-3F1E-4C7D-9A51-2D0F8E6B1C3A"));
    assert_false(uuid_valid("0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3"));
    assert_false(uuid_valid("0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3ab"));
    assert_false(uuid_valid("0b7c6a52_3f1e-4c7d-9a51-2d0f8e6b1c3a"));
    assert_false(uuid_valid("0b7c6a52-3f1e-4c7d-9a51-2d0f8e6b1c3g"));
    assert_false(uuid_valid(""));
    assert_false(uuid_valid(NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v7_layout),
        cmocka_unit_test(test_v7_ordered_and_unique),
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
