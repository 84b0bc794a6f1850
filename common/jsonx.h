/*
 * jsonx.h - strict request validation on json-c.
 *
 * jx_parse accepts only a complete JSON document of valid UTF-8 within a
 * depth limit; jx_validate checks an object against a field table (required
 * and unknown fields, types, numeric ranges, string lengths counted in
 * characters, enums). Problems are collected as (field, message) pairs that
 * become problem+json "errors[]".
 */
#ifndef PHR_JSONX_H
#define PHR_JSONX_H

#include <json-c/json.h>
#include <stddef.h>

#define JX_MAX_ERRORS 16

typedef struct {
    char field[64]; /* JSON pointer-ish name: "values.systolic", "" for the body */
    char message[160];
} jx_error_t;

typedef struct {
    jx_error_t items[JX_MAX_ERRORS];
    size_t n;
} jx_errors_t;

/* Appends one error (silently dropped past JX_MAX_ERRORS). */
void jx_error_add(jx_errors_t *errs, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef enum {
    JX_STRING,
    JX_INT,    /* integral number */
    JX_NUMBER, /* integral or fractional */
    JX_BOOL,
    JX_OBJECT,
    JX_ARRAY
} jx_type_t;

typedef struct {
    const char *name;
    jx_type_t type;
    int required;
    double min, max;              /* numbers: inclusive range, ignored when min > max */
    size_t min_len, max_len;      /* strings: characters; arrays: items; max 0 = unlimited */
    const char *const *enum_vals; /* strings: NULL-terminated allowed values, or NULL */
} jx_field_t;

/*
 * Parses |len| bytes (not NUL-terminated) into |*out|. Fails with PHR_EINVAL
 * and one error ("" field, a message naming the problem: empty body, invalid
 * UTF-8 at byte N, syntax error at byte N, nesting deeper than |max_depth|,
 * trailing data) when the body is not one valid JSON value.
 */
int jx_parse(const char *buf, size_t len, int max_depth, json_object **out, jx_errors_t *errs);

/*
 * Validates object |obj| against |fields| (|n| entries). Unknown members are
 * errors unless |allow_unknown|. A member set to null counts as absent. A
 * numeric range of (0, 0), as in a zero-initialised field, or min > max
 * means "no range". Duplicate keys keep the last value (json-c). |prefix| ("" or e.g. "values") is prepended
 * to field names in errors. Returns PHR_OK or PHR_EINVAL (errors appended).
 */
int jx_validate(const json_object *obj, const jx_field_t *fields, size_t n, int allow_unknown,
                const char *prefix, jx_errors_t *errs);

/* 1 when |s| (|len| bytes) is valid UTF-8 (no overlongs, no surrogates). */
int jx_utf8_valid(const char *s, size_t len);

/* Number of code points in valid UTF-8 string |s|. */
size_t jx_utf8_len(const char *s);

/* Convenience getters; return |def| when absent or of another type. */
const char *jx_get_str(const json_object *obj, const char *key, const char *def);
int64_t jx_get_int(const json_object *obj, const char *key, int64_t def);

/*
 * Deterministic serialisation for responses: members in insertion order,
 * no spaces, "/" not escaped. Returns a string owned by |obj|.
 */
const char *jx_to_string(json_object *obj, size_t *len);

#endif
