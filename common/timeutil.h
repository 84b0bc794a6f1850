/*
 * timeutil.h - clocks and RFC 3339 times in JST (+09:00).
 */
#ifndef PHR_TIMEUTIL_H
#define PHR_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#define TU_JST_LEN 30 /* "2026-11-26T17:46:22.123+09:00" + NUL */

/* Wall clock, milliseconds since the Unix epoch. */
int64_t tu_now_ms(void);

/* Monotonic clock, microseconds. */
int64_t tu_mono_us(void);

/*
 * Formats |epoch_ms| as RFC 3339 in JST with milliseconds into |out|
 * (at least TU_JST_LEN bytes). Returns the length written.
 */
size_t tu_format_jst(int64_t epoch_ms, char *out, size_t outlen);

/*
 * Parses an RFC 3339 date-time with any offset ("Z" or +hh:mm) and
 * optional fraction into milliseconds since the epoch.
 * Returns PHR_OK or PHR_EINVAL.
 */
int tu_parse_rfc3339(const char *s, int64_t *epoch_ms);

#endif
