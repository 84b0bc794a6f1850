#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "err.h"

#define TU_JST_OFFSET_MS (9LL * 3600 * 1000)

int64_t
tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
tu_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes |v| as |n| decimal digits, zero-padded, at |out|. */
static void
tu_put_digits(char *out, int v, int n)
{
    while (n-- > 0) {
        out[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* The proleptic Gregorian date of |days| since 1970-01-01 (Howard Hinnant's algorithm). */
static void
tu_civil_from_days(int64_t days, int *y, int *m, int *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;

    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

size_t
tu_format_jst(int64_t epoch_ms, char *out, size_t outlen)
{
    static const char pattern[] = "0000-00-00T00:00:00.000+09:00";
    int64_t local = epoch_ms + TU_JST_OFFSET_MS;
    int64_t secs = local >= 0 ? local / 1000 : (local - 999) / 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int sod = (int)(secs - days * 86400);
    int ms = (int)(local - secs * 1000);
    int y, m, d;

    tu_civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999 || outlen < sizeof(pattern)) {
        int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03d+09:00", y, m, d,
                         sod / 3600, sod / 60 % 60, sod % 60, ms);
        return n < 0 ? 0 : (size_t)n;
    }
    memcpy(out, pattern, sizeof(pattern));
    tu_put_digits(out, y, 4);
    tu_put_digits(out + 5, m, 2);
    tu_put_digits(out + 8, d, 2);
    tu_put_digits(out + 11, sod / 3600, 2);
    tu_put_digits(out + 14, sod / 60 % 60, 2);
    tu_put_digits(out + 17, sod % 60, 2);
    tu_put_digits(out + 20, ms, 3);
    return sizeof(pattern) - 1;
}

static int
tu_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return PHR_EINVAL;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return PHR_OK;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t
tu_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int
tu_parse_rfc3339(const char *s, int64_t *epoch_ms)
{
    int y, mo, d, h, mi, sec, ms = 0, off = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (s == NULL || strlen(s) < 20) {
        return PHR_EINVAL;
    }
    if (tu_digits(s, 4, &y) || s[4] != '-' || tu_digits(s + 5, 2, &mo) || s[7] != '-' ||
        tu_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || tu_digits(s + 11, 2, &h) ||
        s[13] != ':' || tu_digits(s + 14, 2, &mi) || s[16] != ':' || tu_digits(s + 17, 2, &sec)) {
        return PHR_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60) {
        return PHR_EINVAL;
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap) {
        return PHR_EINVAL;
    }
    const char *p = s + 19;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
            }
            digits++;
            p++;
        }
        if (digits == 0 || digits > 9) {
            return PHR_EINVAL;
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (tu_digits(p + 1, 2, &oh) || p[3] != ':' || tu_digits(p + 4, 2, &om) || oh > 23 ||
            om > 59) {
            return PHR_EINVAL;
        }
        off = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return PHR_EINVAL;
    }
    if (*p != '\0') {
        return PHR_EINVAL;
    }
    if (sec == 60) {
        sec = 59; /* leap second: clamp */
    }
    int64_t days = tu_days_from_civil(y, mo, d);
    int64_t t = ((days * 24 + h) * 60 + mi - off) * 60 + sec;
    *epoch_ms = t * 1000 + ms;
    return PHR_OK;
}
