/*
 * hex.h - bytes as lower-case hexadecimal text, and back.
 */
#ifndef PHR_HEX_H
#define PHR_HEX_H

#include <stddef.h>

/* |n| bytes of |in| as 2n lower-case digits and a NUL into |out| (2n + 1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);

/*
 * Exactly |n| bytes from |hex|: 2n digits of either case, then the NUL. PHR_OK, or
 * PHR_EINVAL (NULL, another length, a non-digit; |out| is then zeroed).
 */
int hex_decode(const char *hex, unsigned char *out, size_t n);

/* The value of hex digit |c| (either case), -1 for any other character. */
int hex_val(int c);

#endif
