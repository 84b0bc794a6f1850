/*
 * query.h - reading one parameter of a URL query string ("a=1&b=x%20y").
 */
#ifndef PHR_QUERY_H
#define PHR_QUERY_H

#include <stddef.h>

/*
 * The value of the first parameter named |key| in |query| (the text after '?', may be
 * NULL), percent- and '+'-decoded, into |out| (|cap| bytes with the NUL). Returns 1 when
 * found, 0 when absent (|out| is then ""), -1 when the value does not fit, has a broken
 * escape, decodes to a NUL or is not UTF-8.
 */
int qry_get(const char *query, const char *key, char *out, size_t cap);

#endif
