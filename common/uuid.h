/*
 * uuid.h - UUIDs as lower-case text: version 7 (time-ordered, RFC 9562) for
 * event ids and new rows, version 4 where no ordering should leak.
 */
#ifndef PHR_UUID_H
#define PHR_UUID_H

#include <stdint.h>

#define UUID_STR_LEN 36 /* without the NUL */

/* Version 7 from |epoch_ms| and RAND_bytes into |out| (37 bytes). Returns PHR_OK or PHR_EGENERIC. */
int uuid7_at(int64_t epoch_ms, char *out);

/* Version 7 for now. */
int uuid7(char *out);

/* Version 4 (random) into |out| (37 bytes). Returns PHR_OK or PHR_EGENERIC. */
int uuid4(char *out);

/* 1 when |s| is a canonical lower-case UUID text (any version), else 0. */
int uuid_valid(const char *s);

#endif
