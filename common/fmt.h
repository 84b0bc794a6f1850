/*
 * fmt.h - text building without printf for hot paths: bounded appends and
 * decimal numbers. Every function keeps its output NUL-terminated.
 */
#ifndef PHR_FMT_H
#define PHR_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes fmt_u64 needs: 20 digits and the NUL. */
#define FMT_U64_LEN 21

/*
 * Appends |s| to |out| (capacity |cap|, current length |len|), cut so that
 * the NUL fits. Returns the new length.
 */
size_t fmt_cat(char *out, size_t cap, size_t len, const char *s);

/* |v| in decimal and a NUL into |out| (FMT_U64_LEN bytes). Returns the digit count. */
size_t fmt_u64(char *out, uint64_t v);

#endif
