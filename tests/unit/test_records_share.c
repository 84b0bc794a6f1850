/*
 * test_records_share.c - services/records/share.c: invitation codes (alphabet,
 * no modulo bias, normalisation of typed codes) and keyset cursors (round
 * trip, tampering refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "../../services/records/share.h"

#define ALPHA_N (sizeof(RSH_CODE_ALPHABET) - 1)

static void
test_code_alphabet(void **state)
{
    char code[RSH_CODE_LEN + 1];

    assert_int_equal(ALPHA_N, 31);
    for (const char *bad = "01OIL"; *bad; bad++) {
        assert_null(strchr(RSH_CODE_ALPHABET, *bad));
    }
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rsh_code_new(code), PHR_OK);
        assert_int_equal(strlen(code), RSH_CODE_LEN);
        assert_int_equal(strspn(code, RSH_CODE_ALPHABET), RSH_CODE_LEN);
    }
}

/*
 * Every character equally likely: with "byte % 31" over all 256 byte values
 * the first 8 characters would come 9/8 as often (about +10%); here each
 * count stays within 5% of the mean over 248,000 characters (the standard
 * deviation is about 1.1%).
 */
static void
test_code_unbiased(void **state)
{
    char code[RSH_CODE_LEN + 1];
    long count[ALPHA_N];
    const int codes = 31000;

    memset(count, 0, sizeof(count));
    for (int i = 0; i < codes; i++) {
        assert_int_equal(rsh_code_new(code), PHR_OK);
        for (int j = 0; j < RSH_CODE_LEN; j++) {
            count[strchr(RSH_CODE_ALPHABET, code[j]) - RSH_CODE_ALPHABET]++;
        }
    }
    double mean = (double)codes * RSH_CODE_LEN / ALPHA_N;
    for (size_t k = 0; k < ALPHA_N; k++) {
        double dev = (count[k] - mean) / mean;
        if (dev > 0.05 || dev < -0.05) {
            fail_msg("character %c: %ld (mean %.0f)", RSH_CODE_ALPHABET[k], count[k], mean);
        }
    }
}

static void
test_code_normalise(void **state)
{
    char out[RSH_CODE_LEN + 1];

    assert_true(rsh_code_normalise("K7M2QX9P", out));
    assert_string_equal(out, "K7M2QX9P");
    assert_true(rsh_code_normalise("k7m2-qx9p", out));
    assert_string_equal(out, "K7M2QX9P");
    assert_true(rsh_code_normalise(" K7M2 QX9P ", out));
    assert_string_equal(out, "K7M2QX9P");
    assert_false(rsh_code_normalise("K7M2QX9", out));   /* 7 */
    assert_false(rsh_code_normalise("K7M2QX9PP", out)); /* 9 */
    assert_false(rsh_code_normalise("K7M2QX90", out));  /* 0 */
    assert_false(rsh_code_normalise("K7M2QXOP", out));  /* O */
    assert_false(rsh_code_normalise("K7M2QX1P", out));  /* 1 */
    assert_false(rsh_code_normalise("K7M2QX_P", out));  /* _ */
    assert_false(rsh_code_normalise("K7M2QX\xc3\xa9", out));
    assert_false(rsh_code_normalise("", out));
}

static void
test_cursor_round_trip(void **state)
{
    static const char id[] = "01a217cd-a663-7a62-a8b2-d80c25e0441d";
    char cur[600], key[RSH_KEY_MAX + 1], got[37];

    rsh_cursor("1764152000123456", id, cur, sizeof(cur));
    assert_true(strlen(cur) > 0 && strlen(cur) <= 512);
    assert_int_equal(
        strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        strlen(cur));
    assert_int_equal(rsh_cursor_parse(cur, 1, key, got), PHR_OK);
    assert_string_equal(key, "1764152000123456");
    assert_string_equal(got, id);
    /* a text key (label names, Japanese allowed, '|' inside too) */
    rsh_cursor("\xe7\xb3\x96\xe5\xb0\xbf|x", id, cur, sizeof(cur));
    assert_int_equal(rsh_cursor_parse(cur, 0, key, got), PHR_OK);
    assert_string_equal(key, "\xe7\xb3\x96\xe5\xb0\xbf|x");
    assert_string_equal(got, id);
    /* ... but not where an integer is expected */
    assert_int_equal(rsh_cursor_parse(cur, 1, key, got), PHR_EINVAL);
}

static void
test_cursor_tampered(void **state)
{
    static const char id[] = "01a217cd-a663-7a62-a8b2-d80c25e0441d";
    char cur[600], bad[700], key[RSH_KEY_MAX + 1], got[37];

    rsh_cursor("42", id, cur, sizeof(cur));
    /* every single-character change is refused or decodes to something else */
    for (size_t i = 0; cur[i] != '\0'; i++) {
        snprintf(bad, sizeof(bad), "%s", cur);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        if (rsh_cursor_parse(bad, 1, key, got) == PHR_OK) {
            assert_true(strcmp(key, "42") != 0 || strcmp(got, id) != 0);
        }
    }
    assert_int_equal(rsh_cursor_parse("", 1, key, got), PHR_EINVAL);
    assert_int_equal(rsh_cursor_parse("AAAA", 1, key, got), PHR_EINVAL);
    assert_int_equal(rsh_cursor_parse("abc!", 1, key, got), PHR_EINVAL);
    assert_int_equal(rsh_cursor_parse("ab+/", 1, key, got), PHR_EINVAL); /* not base64url */
    snprintf(bad, sizeof(bad), "%s=", cur);
    assert_int_equal(rsh_cursor_parse(bad, 1, key, got), PHR_EINVAL); /* padding */
    rsh_cursor("42", "not-a-uuid", bad, sizeof(bad));
    assert_int_equal(rsh_cursor_parse(bad, 1, key, got), PHR_EINVAL);
    rsh_cursor("-42", id, bad, sizeof(bad));
    assert_int_equal(rsh_cursor_parse(bad, 1, key, got), PHR_EINVAL);
    rsh_cursor("\xff", id, bad, sizeof(bad)); /* invalid UTF-8 key */
    assert_int_equal(rsh_cursor_parse(bad, 0, key, got), PHR_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_alphabet),   cmocka_unit_test(test_code_unbiased),
        cmocka_unit_test(test_code_normalise),  cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_cursor_tampered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
