/*
 * test_query.c - common/query.c: finding a parameter, decoding, and refusing
 * what does not decode cleanly; common/hex.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "err.h"
#include "hex.h"
#include "query.h"

static void
test_found_and_absent(void **state)
{
    char v[16];

    assert_int_equal(qry_get("type=pulse&limit=20", "limit", v, sizeof(v)), 1);
    assert_string_equal(v, "20");
    assert_int_equal(qry_get("type=pulse&limit=20", "type", v, sizeof(v)), 1);
    assert_string_equal(v, "pulse");
    /* a longer or shorter name is another parameter */
    assert_int_equal(qry_get("limits=1&lim=2", "limit", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(qry_get("", "limit", v, sizeof(v)), 0);
    assert_int_equal(qry_get(NULL, "limit", v, sizeof(v)), 0);
    /* no '=' or nothing after it: present and empty */
    assert_int_equal(qry_get("a&cursor", "cursor", v, sizeof(v)), 1);
    assert_string_equal(v, "");
    assert_int_equal(qry_get("cursor=&a=1", "cursor", v, sizeof(v)), 1);
    assert_string_equal(v, "");
    /* the first of two wins; empty pairs are skipped */
    assert_int_equal(qry_get("&&q=1&q=2", "q", v, sizeof(v)), 1);
    assert_string_equal(v, "1");
}

static void
test_decoding(void **state)
{
    char v[32];

    assert_int_equal(qry_get("q=%E5%B1%B1%e7%94%b0+taro", "q", v, sizeof(v)), 1);
    assert_string_equal(v, "\xe5\xb1\xb1\xe7\x94\xb0 taro"); /* 山田 taro */
    assert_int_equal(qry_get("from=2026-11-20T07%3A30%3A00%2B09%3A00", "from", v, sizeof(v)), 1);
    assert_string_equal(v, "2026-11-20T07:30:00+09:00");
}

static void
test_refused(void **state)
{
    char v[8];

    /* broken escapes */
    assert_int_equal(qry_get("q=%4", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=%", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=%zz", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=%4&r=1", "q", v, sizeof(v)), -1);
    /* a NUL, invalid UTF-8 (a lone continuation byte, an overlong '/') */
    assert_int_equal(qry_get("q=a%00b", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=%80", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=%C0%AF", "q", v, sizeof(v)), -1);
    assert_string_equal(v, "");
    /* 7 bytes fit with the NUL, 8 do not */
    assert_int_equal(qry_get("q=1234567", "q", v, sizeof(v)), 1);
    assert_string_equal(v, "1234567");
    assert_int_equal(qry_get("q=12345678", "q", v, sizeof(v)), -1);
    assert_int_equal(qry_get("q=123456%41", "q", v, sizeof(v)), 1);
    assert_string_equal(v, "123456A");
    assert_int_equal(qry_get("q=1", "q", v, 0), -1);
}

static void
test_hex(void **state)
{
    unsigned char b[4];
    char text[9];

    assert_int_equal(hex_decode("00AB10ff", b, 4), PHR_OK);
    hex_encode(b, 4, text);
    assert_string_equal(text, "00ab10ff");
    memset(b, 0xa5, sizeof(b));
    assert_int_equal(hex_decode("00ab10f", b, 4), PHR_EINVAL);
    assert_true(b[0] == 0 && b[3] == 0); /* zeroed on a wrong length too */
    assert_int_equal(hex_decode("00ab10ff0", b, 4), PHR_EINVAL);
    assert_int_equal(hex_decode("00ab10fg", b, 4), PHR_EINVAL);
    assert_true(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0); /* zeroed on failure */
    assert_int_equal(hex_decode(NULL, b, 4), PHR_EINVAL);
    for (int c = -1; c <= 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        assert_int_equal(hex_val(c), want);
    }
    assert_int_equal(hex_val('0'), 0);
    assert_int_equal(hex_val('9'), 9);
    assert_int_equal(hex_val('a'), 10);
    assert_int_equal(hex_val('F'), 15);
    assert_int_equal(hex_val('g'), -1);
    assert_int_equal(hex_val('/'), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_and_absent),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
