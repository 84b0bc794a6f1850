/*
 * testutil.h - small helpers shared by the unit tests.
 */
#ifndef PHR_TESTUTIL_H
#define PHR_TESTUTIL_H

#include <stdint.h>
#include <time.h>

#include "timeutil.h"

/* Monotonic milliseconds. */
static inline int64_t
t_now_ms(void)
{
    return tu_mono_us() / 1000;
}

/* Sleeps |ms| milliseconds, resuming after signals. */
static inline void
t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

#endif
