/*
 * test_jsonx.c - unit tests of common/jsonx.c (cmocka).
 *
 * No environment variables or servers needed.
 * Build and run:
 *   make BUILD=build-jsonx build-jsonx/tests/test_jsonx && build-jsonx/tests/test_jsonx
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "jsonx.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- jx_parse: accepted bodies ----------------------------------------- */

typedef struct {
    const char *body;
    enum json_type type; /* expected type of the parsed value */
} parse_ok_case_t;

static const parse_ok_case_t parse_ok_cases[] = {
    {"{}", json_type_object},
    {"[]", json_type_array},
    {" \t\r\n{ \"a\" : 1 }\n ", json_type_object},
    {"{\"a\":{\"b\":[1,2,{\"c\":null}]}}", json_type_object},
    {"0", json_type_int},
    {"-0", json_type_int},
    {"123", json_type_int},
    {"-123 ", json_type_int},
    {"1.5", json_type_double},
    {"1.5e-3", json_type_double},
    {"1E+2", json_type_double},
    {"-0.0e0", json_type_double},
    {"true", json_type_boolean},
    {"false", json_type_boolean},
    {"null", json_type_null},
    {"\"plain\"", json_type_string},
    {"\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\"", json_type_string},
    {"\"pair \\ud83d\\ude00\"", json_type_string},
    {"\"\xC3\xA9\"", json_type_string},         /* U+00E9, 2 bytes */
    {"\"\xE2\x82\xAC\"", json_type_string},     /* U+20AC, 3 bytes */
    {"\"\xED\x9F\xBF\"", json_type_string},     /* U+D7FF, last before surrogates */
    {"\"\xEE\x80\x80\"", json_type_string},     /* U+E000, first after surrogates */
    {"\"\xEF\xBF\xBF\"", json_type_string},     /* U+FFFF */
    {"\"\xF0\x9F\x98\x80\"", json_type_string}, /* U+1F600, 4 bytes */
    {"\"\xF4\x8F\xBF\xBF\"", json_type_string}, /* U+10FFFF, the last code point */
    {"{\"\xE6\x97\xA5\xE6\x9C\xAC\":\"\xE8\xAA\x9E\"}", json_type_object},
    {"[1,2.5,\"x\",true,false,null,{},[]]", json_type_array},
    {"{\"a\":1,\"a\":2}", json_type_object}, /* duplicate: json-c keeps the last */
};

static void
test_parse_ok(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(parse_ok_cases); i++) {
        const parse_ok_case_t *c = &parse_ok_cases[i];
        jx_errors_t errs = {.n = 0};
        json_object *obj = (json_object *)&errs; /* must be overwritten */
        int rc = jx_parse(c->body, strlen(c->body), 16, &obj, &errs);

        if (rc != PHR_OK || errs.n != 0)
            fail_msg("case %zu (%s): rc %d, error '%s'", i, c->body, rc,
                     errs.n > 0 ? errs.items[0].message : "");
        if (json_object_get_type(obj) != c->type)
            fail_msg("case %zu (%s): type %s", i, c->body,
                     json_type_to_name(json_object_get_type(obj)));
        if (c->type == json_type_null)
            assert_null(obj);
        json_object_put(obj);
    }
}

static void
test_parse_values(void **state)
{
    jx_errors_t errs = {.n = 0};
    json_object *obj = NULL;
    const char *body = "{\"a\":\"x\\u00e9\\ud83d\\ude00\",\"a\":\"last\",\"n\":-42}";

    assert_int_equal(jx_parse(body, strlen(body), 4, &obj, &errs), PHR_OK);
    assert_string_equal(jx_get_str(obj, "a", NULL), "last");
    assert_int_equal(jx_get_int(obj, "n", 0), -42);
    json_object_put(obj);

    body = "\"x\\u00e9\\ud83d\\ude00\"";
    assert_int_equal(jx_parse(body, strlen(body), 4, &obj, &errs), PHR_OK);
    assert_string_equal(json_object_get_string(obj), "x\xC3\xA9\xF0\x9F\x98\x80");
    json_object_put(obj);

    /* Not NUL-terminated: only |len| bytes are read. */
    body = "[1,2]garbage";
    assert_int_equal(jx_parse(body, 5, 4, &obj, &errs), PHR_OK);
    assert_int_equal(json_object_array_length(obj), 2);
    json_object_put(obj);

    /* A number right at the end of the buffer. */
    body = "12345";
    assert_int_equal(jx_parse(body, 3, 4, &obj, &errs), PHR_OK);
    assert_int_equal(json_object_get_int64(obj), 123);
    json_object_put(obj);
    assert_int_equal(errs.n, 0);
}

/* ---- jx_parse: rejected bodies ----------------------------------------- */

typedef struct {
    const char *body;
    size_t len; /* 0: strlen(body) */
    int depth;
    const char *message;
} parse_bad_case_t;

static const parse_bad_case_t parse_bad_cases[] = {
    {"", 0, 16, "body is empty"},
    {" \r\n\t ", 0, 16, "body is empty"},
    /* NUL bytes */
    {"{\"a\":1}\0", 8, 16, "body contains a NUL byte at byte 7"},
    {"\"a\0b\"", 5, 16, "body contains a NUL byte at byte 2"},
    {"\0", 1, 16, "body contains a NUL byte at byte 0"},
    /* invalid UTF-8 */
    {"\"\xC0\x80\"", 0, 16, "body is not valid UTF-8 at byte 1"},         /* overlong NUL */
    {"\"\xC1\xBF\"", 0, 16, "body is not valid UTF-8 at byte 1"},         /* overlong 2-byte */
    {"\"\xE0\x80\xAF\"", 0, 16, "body is not valid UTF-8 at byte 1"},     /* overlong 3-byte */
    {"\"\xE0\x9F\xBF\"", 0, 16, "body is not valid UTF-8 at byte 1"},     /* overlong 3-byte */
    {"\"\xF0\x80\x80\xAF\"", 0, 16, "body is not valid UTF-8 at byte 1"}, /* overlong 4-byte */
    {"\"\xF0\x8F\xBF\xBF\"", 0, 16, "body is not valid UTF-8 at byte 1"}, /* overlong 4-byte */
    {"\"\xED\xA0\x80\"", 0, 16, "body is not valid UTF-8 at byte 1"},     /* U+D800 */
    {"\"\xED\xBF\xBF\"", 0, 16, "body is not valid UTF-8 at byte 1"},     /* U+DFFF */
    {"\"ab\xED\xB0\x80\"", 0, 16, "body is not valid UTF-8 at byte 3"},   /* U+DC00 */
    {"\"\xF4\x90\x80\x80\"", 0, 16, "body is not valid UTF-8 at byte 1"}, /* U+110000 */
    {"\"\xF5\x80\x80\x80\"", 0, 16, "body is not valid UTF-8 at byte 1"},
    {"\"\xFF\"", 0, 16, "body is not valid UTF-8 at byte 1"},
    {"\"\x80\"", 0, 16, "body is not valid UTF-8 at byte 1"}, /* lone continuation */
    {"\"\xC3\"", 0, 16, "body is not valid UTF-8 at byte 1"}, /* truncated 2-byte */
    {"\"\xE2\x82\"", 0, 16, "body is not valid UTF-8 at byte 1"},
    {"\"\xE2\x82", 0, 16, "body is not valid UTF-8 at byte 1"}, /* truncated at end */
    {"\"\xF0\x9F\x98", 0, 16, "body is not valid UTF-8 at byte 1"},
    {"\"ok\xF0\x9F\x98\x80\xF0\x9F\"", 0, 16, "body is not valid UTF-8 at byte 7"},
    {"{\"\xC3\x28\":1}", 0, 16, "body is not valid UTF-8 at byte 2"},
    /* syntax */
    {"{", 0, 16, "body is not valid JSON: unexpected end of data at byte 1"},
    {"[1,2", 0, 16, "body is not valid JSON: unexpected end of data at byte 4"},
    {"{\"a\"", 0, 16, "body is not valid JSON: unexpected end of data at byte 4"},
    {"\"abc", 0, 16, "body is not valid JSON: unexpected end of data at byte 4"},
    {"tru", 0, 16, "body is not valid JSON: unexpected end of data at byte 3"},
    {"-", 0, 16, "body is not valid JSON: unexpected end of data at byte 1"},
    {"]", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"{\"a\":1,}", 0, 16, "body is not valid JSON: expected a quoted member name at byte 7"},
    {"{'a':1}", 0, 16, "body is not valid JSON: expected a quoted member name at byte 1"},
    {"{a:1}", 0, 16, "body is not valid JSON: expected a quoted member name at byte 1"},
    {"{\"a\" 1}", 0, 16, "body is not valid JSON: expected ':' after member name at byte 5"},
    {"{\"a\":1 \"b\":2}", 0, 16, "body is not valid JSON: unexpected character at byte 7"},
    {"[1,]", 0, 16, "body is not valid JSON: unexpected character at byte 3"},
    {"[1 2]", 0, 16, "body is not valid JSON: unexpected character at byte 3"},
    {"[1}", 0, 16, "body is not valid JSON: unexpected character at byte 2"},
    {"{\"a\":1]", 0, 16, "body is not valid JSON: unexpected character at byte 6"},
    {"NaN", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"Infinity", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"True", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"nul", 0, 16, "body is not valid JSON: unexpected end of data at byte 3"},
    {"nulx", 0, 16, "body is not valid JSON: unexpected character at byte 3"},
    {"/*c*/1", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"+1", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {".5", 0, 16, "body is not valid JSON: unexpected character at byte 0"},
    {"[01]", 0, 16, "body is not valid JSON: invalid number at byte 1"},
    {"-01", 0, 16, "body is not valid JSON: invalid number at byte 0"},
    {"1.", 0, 16, "body is not valid JSON: invalid number at byte 0"},
    {"1.e5", 0, 16, "body is not valid JSON: invalid number at byte 0"},
    {"1e", 0, 16, "body is not valid JSON: invalid number at byte 0"},
    {"[1e+]", 0, 16, "body is not valid JSON: invalid number at byte 1"},
    {"-a", 0, 16, "body is not valid JSON: invalid number at byte 0"},
    {"0x10", 0, 16, "body has trailing data after the JSON value at byte 1"},
    {"\"a\tb\"", 0, 16, "body is not valid JSON: control character in string at byte 2"},
    {"\"a\nb\"", 0, 16, "body is not valid JSON: control character in string at byte 2"},
    {"\"\\x\"", 0, 16, "body is not valid JSON: invalid escape in string at byte 1"},
    {"\"\\u12G4\"", 0, 16, "body is not valid JSON: invalid escape in string at byte 1"},
    {"\"\\u12\"", 0, 16, "body is not valid JSON: invalid escape in string at byte 1"},
    {"\"\\", 0, 16, "body is not valid JSON: unexpected end of data at byte 2"},
    {"\"\\ud800\"", 0, 16, "body is not valid JSON: unpaired surrogate escape in string at byte 1"},
    {"\"\\ud800\\u0041\"", 0, 16,
     "body is not valid JSON: unpaired surrogate escape in string at byte 1"},
    {"\"x\\udc00\"", 0, 16,
     "body is not valid JSON: unpaired surrogate escape in string at byte 2"},
    {"{\"a\\u0000b\":1}", 0, 16, "body is not valid JSON: NUL character in member name at byte 3"},
    /* trailing data */
    {"{} x", 0, 16, "body has trailing data after the JSON value at byte 3"},
    {"{}{}", 0, 16, "body has trailing data after the JSON value at byte 2"},
    {"1 2", 0, 16, "body has trailing data after the JSON value at byte 2"},
    {"[1]]", 0, 16, "body has trailing data after the JSON value at byte 3"},
    {"\"a\"\"b\"", 0, 16, "body has trailing data after the JSON value at byte 3"},
    {"null,", 0, 16, "body has trailing data after the JSON value at byte 4"},
    /* depth */
    {"[[[1]]]", 0, 2, "body is nested deeper than 2 levels at byte 2"},
    {"{\"a\":{\"b\":{}}}", 0, 2, "body is nested deeper than 2 levels at byte 10"},
    {"[[]]", 0, 1, "body is nested deeper than 1 levels at byte 1"},
};

static void
test_parse_bad(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(parse_bad_cases); i++) {
        const parse_bad_case_t *c = &parse_bad_cases[i];
        size_t len = c->len != 0 ? c->len : strlen(c->body);
        jx_errors_t errs = {.n = 0};
        json_object *obj = (json_object *)&errs;
        int rc = jx_parse(c->body, len, c->depth, &obj, &errs);

        if (rc != PHR_EINVAL)
            fail_msg("case %zu: rc %d, want PHR_EINVAL", i, rc);
        if (obj != NULL)
            fail_msg("case %zu: *out not NULL on failure", i);
        if (errs.n != 1)
            fail_msg("case %zu: %zu errors, want 1", i, errs.n);
        if (strcmp(errs.items[0].field, "") != 0)
            fail_msg("case %zu: field '%s', want \"\"", i, errs.items[0].field);
        if (strcmp(errs.items[0].message, c->message) != 0)
            fail_msg("case %zu: message '%s', want '%s'", i, errs.items[0].message, c->message);
    }
}

/* Nesting of exactly |levels| arrays (or objects) around a 1. */
static char *
nest(int levels, int objects)
{
    size_t cap = (size_t)levels * 6 + 8;
    char *s = malloc(cap);
    size_t n = 0;

    assert_non_null(s);
    for (int i = 0; i < levels; i++) {
        if (objects) {
            memcpy(s + n, "{\"k\":", 5);
            n += 5;
        } else {
            s[n++] = '[';
        }
    }
    s[n++] = '1';
    for (int i = 0; i < levels; i++)
        s[n++] = objects ? '}' : ']';
    s[n] = '\0';
    return s;
}

static void
test_parse_depth_boundary(void **state)
{
    static const int limits[] = {1, 2, 16, 32, 100};

    for (size_t i = 0; i < ARRAY_LEN(limits); i++) {
        int max = limits[i];

        for (int objects = 0; objects <= 1; objects++) {
            char *ok = nest(max, objects);
            char *deep = nest(max + 1, objects);
            jx_errors_t errs = {.n = 0};
            json_object *obj = NULL;
            char want[160];

            if (jx_parse(ok, strlen(ok), max, &obj, &errs) != PHR_OK)
                fail_msg("depth %d objects %d: rejected at the limit: %s", max, objects,
                         errs.items[0].message);
            assert_non_null(obj);
            json_object_put(obj);
            obj = NULL;
            assert_int_equal(jx_parse(deep, strlen(deep), max, &obj, &errs), PHR_EINVAL);
            assert_null(obj);
            assert_int_equal(errs.n, 1);
            snprintf(want, sizeof(want), "body is nested deeper than %d levels at byte %d", max,
                     objects ? max * 5 : max);
            assert_string_equal(errs.items[0].message, want);
            free(ok);
            free(deep);
        }
    }
}

static void
test_parse_args(void **state)
{
    jx_errors_t errs = {.n = 0};
    json_object *obj = NULL;
    char *deep = nest(40, 0);

    /* max_depth <= 0 uses json-c's default of 32. */
    assert_int_equal(jx_parse("[[1]]", 5, 0, &obj, &errs), PHR_OK);
    json_object_put(obj);
    assert_int_equal(jx_parse(deep, strlen(deep), 0, &obj, &errs), PHR_EINVAL);
    assert_string_equal(errs.items[0].message, "body is nested deeper than 32 levels at byte 32");
    free(deep);
    /* NULL buffer with length 0 is an empty body; errs may be NULL. */
    assert_int_equal(jx_parse(NULL, 0, 4, &obj, NULL), PHR_EINVAL);
    assert_null(obj);
    assert_int_equal(jx_parse("{}", 2, 4, NULL, &errs), PHR_EINVAL);
}

/* ---- UTF-8 helpers ----------------------------------------------------- */

typedef struct {
    const char *s;
    int valid;
    size_t chars; /* when valid */
} utf8_case_t;

static const utf8_case_t utf8_cases[] = {
    {"", 1, 0},
    {"abc", 1, 3},
    {"\xC2\x80", 1, 1},
    {"\xDF\xBF", 1, 1},
    {"\xE0\xA0\x80", 1, 1},
    {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 1, 3},
    {"\xF0\x90\x80\x80", 1, 1},
    {"a\xF0\x9F\x98\x80z", 1, 3},
    {"\xF4\x8F\xBF\xBF", 1, 1},
    {"\xC0\x80", 0, 0},
    {"\xC1\x81", 0, 0},
    {"\xE0\x9F\xBF", 0, 0},
    {"\xED\xA0\x80", 0, 0},
    {"\xED\xBF\xBF", 0, 0},
    {"\xF0\x8F\xBF\xBF", 0, 0},
    {"\xF4\x90\x80\x80", 0, 0},
    {"\xF8\x88\x80\x80\x80", 0, 0},
    {"\xBF", 0, 0},
    {"\xE2\x82", 0, 0},
    {"\xE2\x28\xA1", 0, 0},
    {"\xF0\x9F\x98", 0, 0},
    {"\xF0\x9F\x98\x28", 0, 0},
};

static void
test_utf8(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(utf8_cases); i++) {
        const utf8_case_t *c = &utf8_cases[i];

        if (jx_utf8_valid(c->s, strlen(c->s)) != c->valid)
            fail_msg("utf8 case %zu: valid %d, want %d", i, !c->valid, c->valid);
        if (c->valid && jx_utf8_len(c->s) != c->chars)
            fail_msg("utf8 case %zu: %zu chars, want %zu", i, jx_utf8_len(c->s), c->chars);
    }
    /* Length-bounded: the bad byte lies outside |len|. */
    assert_int_equal(jx_utf8_valid("ab\xFF", 2), 1);
    assert_int_equal(jx_utf8_valid("\xE2\x82\xAC", 2), 0);
    assert_int_equal(jx_utf8_valid(NULL, 0), 1);
    assert_int_equal(jx_utf8_len(NULL), 0);
}

/* ---- jx_validate ------------------------------------------------------- */

static const char *const kinds[] = {"bp", "weight", "glucose", NULL};

static const jx_field_t fields[] = {
    {.name = "kind", .type = JX_STRING, .required = 1, .min = 1, .max = 0, .enum_vals = kinds},
    {.name = "note", .type = JX_STRING, .min = 1, .max = 0, .min_len = 2, .max_len = 5},
    {.name = "systolic", .type = JX_INT, .min = 40, .max = 300},
    {.name = "weight", .type = JX_NUMBER, .min = 0.5, .max = 500},
    {.name = "count", .type = JX_INT, .min = 1, .max = 0},    /* no range */
    {.name = "ratio", .type = JX_NUMBER, .min = 1, .max = 0}, /* no range */
    {.name = "shared", .type = JX_BOOL, .min = 1, .max = 0},
    {.name = "values", .type = JX_OBJECT, .min = 1, .max = 0},
    {.name = "tags", .type = JX_ARRAY, .min = 1, .max = 0, .min_len = 1, .max_len = 3},
    {.name = "zero", .type = JX_INT}, /* zero-initialised range: none */
};

typedef struct {
    const char *body;
    int allow_unknown;
    const char *prefix;
    int rc;
    const char *errors; /* "field=message|field=message", "" for none */
} validate_case_t;

static const validate_case_t validate_cases[] = {
    /* required / happy paths */
    {"{\"kind\":\"bp\"}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"glucose\",\"note\":\"ab\",\"systolic\":40,\"weight\":0.5,\"count\":-7,"
     "\"ratio\":-1e300,\"shared\":false,\"values\":{},\"tags\":[1],\"zero\":12345}",
     0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"systolic\":300,\"weight\":500,\"tags\":[1,2,3],\"note\":\"abcde\"}", 0, "",
     PHR_OK, ""},
    {"{}", 0, "", PHR_EINVAL, "kind=is required"},
    {"{\"kind\":null}", 0, "", PHR_EINVAL, "kind=is required"},
    {"{\"kind\":\"bp\",\"note\":null}", 0, "", PHR_OK, ""},
    {"{}", 0, "values", PHR_EINVAL, "values.kind=is required"},
    /* strings */
    {"{\"kind\":1}", 0, "", PHR_EINVAL, "kind=must be a string"},
    {"{\"kind\":true}", 0, "", PHR_EINVAL, "kind=must be a string"},
    {"{\"kind\":[\"bp\"]}", 0, "", PHR_EINVAL, "kind=must be a string"},
    {"{\"kind\":\"BP\"}", 0, "", PHR_EINVAL, "kind=must be one of: bp, weight, glucose"},
    {"{\"kind\":\"\"}", 0, "", PHR_EINVAL, "kind=must be one of: bp, weight, glucose"},
    {"{\"kind\":\"bp \"}", 0, "", PHR_EINVAL, "kind=must be one of: bp, weight, glucose"},
    {"{\"kind\":\"bp\",\"note\":\"a\"}", 0, "", PHR_EINVAL, "note=must be at least 2 characters"},
    {"{\"kind\":\"bp\",\"note\":\"\"}", 0, "", PHR_EINVAL, "note=must be at least 2 characters"},
    {"{\"kind\":\"bp\",\"note\":\"abcdef\"}", 0, "", PHR_EINVAL,
     "note=must be at most 5 characters"},
    /* 5 characters of 3 bytes each (15 bytes) fit; 6 do not; 4-byte characters count once */
    {"{\"kind\":\"bp\",\"note\":\"\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\"}",
     0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"note\":\"\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5"
     "\xE6\x97\xA5\"}",
     0, "", PHR_EINVAL, "note=must be at most 5 characters"},
    {"{\"kind\":\"bp\",\"note\":\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\"}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"note\":\"\\u00e9\"}", 0, "", PHR_EINVAL,
     "note=must be at least 2 characters"},
    {"{\"kind\":\"bp\",\"note\":\"a\\u0000b\"}", 0, "", PHR_EINVAL,
     "note=must not contain NUL characters"},
    /* integers */
    {"{\"kind\":\"bp\",\"systolic\":39}", 0, "", PHR_EINVAL, "systolic=must be between 40 and 300"},
    {"{\"kind\":\"bp\",\"systolic\":301}", 0, "", PHR_EINVAL,
     "systolic=must be between 40 and 300"},
    {"{\"kind\":\"bp\",\"systolic\":-1}", 0, "", PHR_EINVAL, "systolic=must be between 40 and 300"},
    {"{\"kind\":\"bp\",\"systolic\":120.0}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"systolic\":120.5}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"systolic\":1e2}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"systolic\":\"120\"}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"systolic\":true}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"systolic\":{}}", 0, "", PHR_EINVAL, "systolic=must be an integer"},
    {"{\"kind\":\"bp\",\"count\":9223372036854775807}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"count\":-9223372036854775807}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"count\":9223372036854775808}", 0, "", PHR_EINVAL, "count=is out of range"},
    {"{\"kind\":\"bp\",\"count\":18446744073709551616}", 0, "", PHR_EINVAL,
     "count=is out of range"},
    {"{\"kind\":\"bp\",\"count\":-9223372036854775809}", 0, "", PHR_EINVAL,
     "count=is out of range"},
    {"{\"kind\":\"bp\",\"count\":-99999999999999999999999}", 0, "", PHR_EINVAL,
     "count=is out of range"},
    {"{\"kind\":\"bp\",\"zero\":0}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"zero\":-5}", 0, "", PHR_OK, ""},
    /* numbers */
    {"{\"kind\":\"bp\",\"weight\":70}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"weight\":70.25}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"weight\":0.49}", 0, "", PHR_EINVAL, "weight=must be between 0.5 and 500"},
    {"{\"kind\":\"bp\",\"weight\":500.01}", 0, "", PHR_EINVAL,
     "weight=must be between 0.5 and 500"},
    {"{\"kind\":\"bp\",\"weight\":true}", 0, "", PHR_EINVAL, "weight=must be a number"},
    {"{\"kind\":\"bp\",\"weight\":\"70\"}", 0, "", PHR_EINVAL, "weight=must be a number"},
    {"{\"kind\":\"bp\",\"ratio\":1e308}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"ratio\":1e400}", 0, "", PHR_EINVAL, "ratio=is out of range"},
    {"{\"kind\":\"bp\",\"ratio\":-1e400}", 0, "", PHR_EINVAL, "ratio=is out of range"},
    {"{\"kind\":\"bp\",\"ratio\":9223372036854775808}", 0, "", PHR_EINVAL, "ratio=is out of range"},
    {"{\"kind\":\"bp\",\"ratio\":1e-400}", 0, "", PHR_OK, ""},
    /* booleans, objects, arrays */
    {"{\"kind\":\"bp\",\"shared\":true}", 0, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"shared\":0}", 0, "", PHR_EINVAL, "shared=must be a boolean"},
    {"{\"kind\":\"bp\",\"shared\":\"true\"}", 0, "", PHR_EINVAL, "shared=must be a boolean"},
    {"{\"kind\":\"bp\",\"values\":[]}", 0, "", PHR_EINVAL, "values=must be an object"},
    {"{\"kind\":\"bp\",\"values\":\"{}\"}", 0, "", PHR_EINVAL, "values=must be an object"},
    {"{\"kind\":\"bp\",\"tags\":{}}", 0, "", PHR_EINVAL, "tags=must be an array"},
    {"{\"kind\":\"bp\",\"tags\":[]}", 0, "", PHR_EINVAL, "tags=must have at least 1 items"},
    {"{\"kind\":\"bp\",\"tags\":[1,2,3,4]}", 0, "", PHR_EINVAL, "tags=must have at most 3 items"},
    /* unknown members */
    {"{\"kind\":\"bp\",\"extra\":1}", 0, "", PHR_EINVAL, "extra=is not allowed"},
    {"{\"kind\":\"bp\",\"extra\":1}", 1, "", PHR_OK, ""},
    {"{\"kind\":\"bp\",\"Kind\":\"bp\"}", 0, "", PHR_EINVAL, "Kind=is not allowed"},
    {"{\"kind\":\"bp\",\"extra\":null}", 0, "values", PHR_EINVAL, "values.extra=is not allowed"},
    /* several errors: table order first, then unknown members in document order */
    {"{\"zz\":1,\"systolic\":1.5,\"weight\":false,\"aa\":2}", 0, "values", PHR_EINVAL,
     "values.kind=is required|values.systolic=must be an integer|values.weight=must be a "
     "number|values.zz=is not allowed|values.aa=is not allowed"},
    /* not an object */
    {"[]", 0, "", PHR_EINVAL, "=must be an object"},
    {"\"x\"", 0, "values", PHR_EINVAL, "values=must be an object"},
    {"null", 0, "", PHR_EINVAL, "=must be an object"},
};

/* Renders |errs| as "field=message|..." for comparison. */
static void
render(const jx_errors_t *errs, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < errs->n && used < cap; i++) {
        int n = snprintf(out + used, cap - used, "%s%s=%s", i > 0 ? "|" : "", errs->items[i].field,
                         errs->items[i].message);

        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static void
test_validate_table(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(validate_cases); i++) {
        const validate_case_t *c = &validate_cases[i];
        jx_errors_t errs = {.n = 0};
        json_object *obj = NULL;
        char got[2048];
        int rc;

        if (jx_parse(c->body, strlen(c->body), 8, &obj, &errs) != PHR_OK)
            fail_msg("validate case %zu: parse failed: %s", i, errs.items[0].message);
        rc = jx_validate(obj, fields, ARRAY_LEN(fields), c->allow_unknown, c->prefix, &errs);
        render(&errs, got, sizeof(got));
        if (rc != c->rc || strcmp(got, c->errors) != 0)
            fail_msg("validate case %zu (%s): rc %d errors '%s', want rc %d errors '%s'", i,
                     c->body, rc, got, c->rc, c->errors);
        json_object_put(obj);
    }
}

static void
test_validate_error_cap(void **state)
{
    json_object *obj = json_object_new_object();
    jx_errors_t errs = {.n = 0};

    for (int i = 0; i < 3 * JX_MAX_ERRORS; i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%d", i);
        json_object_object_add(obj, key, json_object_new_int(i));
    }
    assert_int_equal(jx_validate(obj, fields, ARRAY_LEN(fields), 0, "", &errs), PHR_EINVAL);
    assert_int_equal(errs.n, JX_MAX_ERRORS);
    assert_string_equal(errs.items[0].field, "kind");
    assert_string_equal(errs.items[1].field, "k0");
    assert_string_equal(errs.items[JX_MAX_ERRORS - 1].field, "k14");

    /* Still fails (and does not overflow) when the list is already full. */
    assert_int_equal(jx_validate(obj, fields, ARRAY_LEN(fields), 0, "", &errs), PHR_EINVAL);
    assert_int_equal(errs.n, JX_MAX_ERRORS);
    /* And with no error list at all. */
    assert_int_equal(jx_validate(obj, fields, ARRAY_LEN(fields), 0, "", NULL), PHR_EINVAL);
    json_object_put(obj);
}

static void
test_error_add(void **state)
{
    jx_errors_t errs = {.n = 0};
    char longname[200];

    memset(longname, 'f', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    jx_error_add(&errs, longname, "value %d of %s", 7, "x");
    jx_error_add(&errs, NULL, "%s", longname);
    assert_int_equal(errs.n, 2);
    assert_int_equal(strlen(errs.items[0].field), sizeof(errs.items[0].field) - 1);
    assert_string_equal(errs.items[0].message, "value 7 of x");
    assert_string_equal(errs.items[1].field, "");
    assert_int_equal(strlen(errs.items[1].message), sizeof(errs.items[1].message) - 1);
    for (int i = 0; i < 40; i++)
        jx_error_add(&errs, "f", "m%d", i);
    assert_int_equal(errs.n, JX_MAX_ERRORS);
    assert_string_equal(errs.items[JX_MAX_ERRORS - 1].message, "m13");
    jx_error_add(NULL, "f", "ignored");
}

static void
test_validate_long_enum(void **state)
{
    static const char *const many[] = {"aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb",
                                       "cccccccccccccccccccc", "dddddddddddddddddddd",
                                       "eeeeeeeeeeeeeeeeeeee", "ffffffffffffffffffff",
                                       "gggggggggggggggggggg", "hhhhhhhhhhhhhhhhhhhh",
                                       "iiiiiiiiiiiiiiiiiiii", NULL};
    static const jx_field_t f[] = {
        {.name = "v", .type = JX_STRING, .required = 1, .enum_vals = many},
    };
    json_object *obj = json_object_new_object();
    jx_errors_t errs = {.n = 0};

    json_object_object_add(obj, "v", json_object_new_string("zzz"));
    assert_int_equal(jx_validate(obj, f, 1, 0, "", &errs), PHR_EINVAL);
    assert_int_equal(errs.n, 1);
    assert_int_equal(strncmp(errs.items[0].message, "must be one of: aaaa", 20), 0);
    assert_int_equal(strlen(errs.items[0].message), sizeof(errs.items[0].message) - 1);
    json_object_object_add(obj, "v", json_object_new_string("iiiiiiiiiiiiiiiiiiii"));
    assert_int_equal(jx_validate(obj, f, 1, 0, "", &errs), PHR_OK);
    json_object_put(obj);
}

/* ---- getters and output ------------------------------------------------ */

static void
test_getters(void **state)
{
    const char *body = "{\"s\":\"str\",\"i\":-12,\"d\":1.5,\"b\":true,\"n\":null,"
                       "\"big\":9223372036854775808,\"max\":9223372036854775807}";
    jx_errors_t errs = {.n = 0};
    json_object *obj = NULL;

    assert_int_equal(jx_parse(body, strlen(body), 4, &obj, &errs), PHR_OK);
    assert_string_equal(jx_get_str(obj, "s", "def"), "str");
    assert_string_equal(jx_get_str(obj, "i", "def"), "def");
    assert_string_equal(jx_get_str(obj, "n", "def"), "def");
    assert_string_equal(jx_get_str(obj, "missing", "def"), "def");
    assert_null(jx_get_str(obj, "missing", NULL));
    assert_int_equal(jx_get_int(obj, "i", 99), -12);
    assert_int_equal(jx_get_int(obj, "d", 99), 99);
    assert_int_equal(jx_get_int(obj, "b", 99), 99);
    assert_int_equal(jx_get_int(obj, "s", 99), 99);
    assert_int_equal(jx_get_int(obj, "n", 99), 99);
    assert_int_equal(jx_get_int(obj, "big", 99), 99);
    assert_true(jx_get_int(obj, "max", 99) == INT64_MAX);
    assert_int_equal(jx_get_int(obj, "missing", 99), 99);
    assert_int_equal(jx_get_int(NULL, "i", 5), 5);
    assert_string_equal(jx_get_str(NULL, "s", "d"), "d");
    json_object_put(obj);
}

static void
test_to_string(void **state)
{
    json_object *obj = json_object_new_object();
    json_object *arr = json_object_new_array();
    size_t len = 0;
    const char *s;
    const char *want = "{\"z\":\"a/b\",\"a\":[1,2.5,true,null],\"m\":\"\\\"q\\\"\xC3\xA9\"}";

    json_object_object_add(obj, "z", json_object_new_string("a/b"));
    json_object_array_add(arr, json_object_new_int(1));
    json_object_array_add(arr, json_object_new_double(2.5));
    json_object_array_add(arr, json_object_new_boolean(1));
    json_object_array_add(arr, NULL);
    json_object_object_add(obj, "a", arr);
    json_object_object_add(obj, "m", json_object_new_string("\"q\"\xC3\xA9"));
    s = jx_to_string(obj, &len);
    assert_string_equal(s, want);
    assert_int_equal(len, strlen(want));
    assert_string_equal(jx_to_string(obj, NULL), want);
    json_object_put(obj);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),       cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_parse_bad),      cmocka_unit_test(test_parse_depth_boundary),
        cmocka_unit_test(test_parse_args),     cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_validate_table), cmocka_unit_test(test_validate_error_cap),
        cmocka_unit_test(test_error_add),      cmocka_unit_test(test_validate_long_enum),
        cmocka_unit_test(test_getters),        cmocka_unit_test(test_to_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
