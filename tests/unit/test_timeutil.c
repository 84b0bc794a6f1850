/*
 * test_timeutil.c - unit tests of common/timeutil.c (no external services needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "err.h"
#include "timeutil.h"

static void
t_fmt(int64_t ms, const char *want)
{
    char buf[TU_JST_LEN];
    size_t n = tu_format_jst(ms, buf, sizeof(buf));

    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    assert_int_equal(n, TU_JST_LEN - 1);
}

static void
t_format_jst(void **state)
{
    t_fmt(0, "1970-01-01T09:00:00.000+09:00");
    t_fmt(1, "1970-01-01T09:00:00.001+09:00");
    t_fmt(999, "1970-01-01T09:00:00.999+09:00");
    t_fmt(-1, "1970-01-01T08:59:59.999+09:00");
    t_fmt(-1000, "1970-01-01T08:59:59.000+09:00");
    t_fmt(-1001, "1970-01-01T08:59:58.999+09:00");
    t_fmt(-32400000, "1970-01-01T00:00:00.000+09:00");
    t_fmt(-32400001, "1969-12-31T23:59:59.999+09:00");
    /* 2024-02-29T00:00:00Z = 1709164800 s: leap day, 09:00 in Tokyo. */
    t_fmt(1709164800123LL, "2024-02-29T09:00:00.123+09:00");
    /* Day rollover: 2026-11-26T15:00:00Z is midnight of the 27th in JST. */
    t_fmt(1795705200000LL, "2026-11-27T00:00:00.000+09:00");
    t_fmt(1795705199999LL, "2026-11-26T23:59:59.999+09:00");
}

static void
t_format_small_buffer(void **state)
{
    char buf[10];

    memset(buf, 'X', sizeof(buf));
    tu_format_jst(0, buf, sizeof(buf));
    assert_int_equal(buf[9], '\0');
    assert_string_equal(buf, "1970-01-0");
}

static void
t_ok(const char *s, int64_t want)
{
    int64_t got = -12345;

    if (tu_parse_rfc3339(s, &got) != PHR_OK) {
        fail_msg("rejected valid time '%s'", s);
    }
    if (got != want) {
        fail_msg("'%s': got %lld, want %lld", s, (long long)got, (long long)want);
    }
}

static void
t_bad(const char *s)
{
    int64_t got = 777;

    if (tu_parse_rfc3339(s, &got) != PHR_EINVAL) {
        fail_msg("accepted invalid time '%s'", s);
    }
    assert_int_equal(got, 777); /* untouched on failure */
}

static void
t_parse_valid(void **state)
{
    t_ok("1970-01-01T00:00:00Z", 0);
    t_ok("1970-01-01t00:00:00z", 0);
    t_ok("1970-01-01T09:00:00+09:00", 0);
    t_ok("1970-01-01T00:00:00.000+00:00", 0);
    t_ok("1969-12-31T15:00:00-09:00", 0);
    t_ok("1969-12-31T23:59:59.999Z", -1);
    t_ok("1969-12-31T23:59:59Z", -1000);
    t_ok("1970-01-01T00:00:00.5Z", 500);
    t_ok("1970-01-01T00:00:00.05Z", 50);
    t_ok("1970-01-01T00:00:00.123456789Z", 123); /* truncated, not rounded */
    t_ok("1970-01-01T05:30:00+05:30", 0);
    t_ok("1970-01-01T00:00:00-00:01", 60000);
    t_ok("2024-02-29T00:00:00Z", 1709164800000LL);
    t_ok("2000-02-29T00:00:00Z", 951782400000LL);
    t_ok("2026-11-26T17:46:22.123+09:00", 1795682782123LL);
    t_ok("2023-12-31T23:59:59Z", 1704067199000LL);
    t_ok("2016-12-31T23:59:60Z", 1483228799000LL); /* leap second clamps to :59 */
    t_ok("1900-03-01T00:00:00Z", -2203891200000LL);
}

static void
t_parse_invalid(void **state)
{
    t_bad(NULL);
    t_bad("");
    t_bad("2024-02-30T00:00:00Z");
    t_bad("2023-02-29T00:00:00Z");
    t_bad("1900-02-29T00:00:00Z");
    t_bad("2024-04-31T00:00:00Z");
    t_bad("2024-13-01T00:00:00Z");
    t_bad("2024-00-01T00:00:00Z");
    t_bad("2024-01-00T00:00:00Z");
    t_bad("2024-01-32T00:00:00Z");
    t_bad("2024-01-01T24:00:00Z");
    t_bad("2024-01-01T23:60:00Z");
    t_bad("2024-01-01T23:59:61Z");
    t_bad("2024-01-01T00:00:00");        /* missing offset */
    t_bad("2024-01-01T00:00:00.123");    /* missing offset after fraction */
    t_bad("2024-01-01T00:00:00Zjunk");   /* trailing junk */
    t_bad("2024-01-01T00:00:00+09:00 "); /* trailing space */
    t_bad("2024-01-01T00:00:00+0900");
    t_bad("2024-01-01T00:00:00+09");
    t_bad("2024-01-01T00:00:00+24:00");
    t_bad("2024-01-01T00:00:00+09:60");
    t_bad("2024-01-01T00:00:00.Z");
    t_bad("2024-01-01T00:00:00.1234567890Z"); /* more than 9 fraction digits */
    t_bad("2024-01-01 00:00:00Z");
    t_bad("2024/01/01T00:00:00Z");
    t_bad("24-01-01T00:00:00Z");
    t_bad("2024-1-01T00:00:00Z");
    t_bad("2024-01-01T0:00:00Z");
    t_bad("2024-01-01T00:00:0Z");
    t_bad("+2024-01-01T00:00:00Z");
    t_bad("2024-01-01T00:00:00-");
    t_bad("2024-01-01T00:00:00+");
    t_bad("2024-01-01T00:00:00+1");
}

static void
t_round_trip(void **state)
{
    static const int64_t samples[] = {
        0,
        1,
        -1,
        999,
        -999,
        1000,
        86399999,
        951782400000LL,
        1709164800123LL,
        1795682782123LL,
        -2203891200001LL,
        4102444799999LL,
    };
    char buf[TU_JST_LEN];

    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        int64_t back = 0;
        tu_format_jst(samples[i], buf, sizeof(buf));
        assert_int_equal(tu_parse_rfc3339(buf, &back), PHR_OK);
        assert_int_equal(back, samples[i]);
    }
    /* A pseudo-random walk over two centuries. */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        int64_t back = 0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % 6311390400000ULL) - 3155695200000LL;
        tu_format_jst(ms, buf, sizeof(buf));
        assert_int_equal(tu_parse_rfc3339(buf, &back), PHR_OK);
        assert_int_equal(back, ms);
    }
}

static void
t_format_matches_libc(void **state)
{
    /* Every day of 1896..2104 (and a year past 9999) formats as gmtime_r() + 9 h does. */
    for (int64_t day = -27028; day < 49309 + 1; day += 1) {
        int64_t ms = day == 49309 ? 253402300800000LL : day * 86400000 + 3723456;
        int64_t frac = (ms % 1000 + 1000) % 1000;
        time_t t = (time_t)((ms - frac) / 1000 + 9 * 3600);
        struct tm tm;
        char want[48], got[TU_JST_LEN + 8];

        gmtime_r(&t, &tm);
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03d+09:00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
        assert_int_equal(tu_format_jst(ms, got, sizeof(got)), strlen(want));
        assert_string_equal(got, want);
    }
}

static void
t_matches_libc(void **state)
{
    /* The civil-date arithmetic agrees with timegm() for every day of 1896..2104. */
    for (int64_t day = -27028; day < 49309; day += 1) {
        time_t t = (time_t)(day * 86400 + 3723);
        struct tm tm;
        char s[40];
        int64_t back = 0;

        gmtime_r(&t, &tm);
        snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_int_equal(tu_parse_rfc3339(s, &back), PHR_OK);
        assert_int_equal(back, (int64_t)t * 1000);
    }
}

static void
t_clocks(void **state)
{
    int64_t a = tu_mono_us();
    int64_t now = tu_now_ms();
    struct timespec ts = {0, 2000000};
    int64_t b;

    nanosleep(&ts, NULL);
    b = tu_mono_us();
    assert_true(b - a >= 2000);
    assert_true(b - a < 2000000);
    assert_true(now > 1700000000000LL); /* after 2023-11 */
    assert_true(llabs(now - (int64_t)time(NULL) * 1000) < 2000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_format_jst),          cmocka_unit_test(t_format_small_buffer),
        cmocka_unit_test(t_parse_valid),         cmocka_unit_test(t_parse_invalid),
        cmocka_unit_test(t_round_trip),          cmocka_unit_test(t_matches_libc),
        cmocka_unit_test(t_format_matches_libc), cmocka_unit_test(t_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
