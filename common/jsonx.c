/*
 * jsonx.c - strict request parsing and validation on json-c 0.16.
 *
 * jx_parse runs three passes over the body:
 *   1. a byte scan for NUL bytes and invalid UTF-8 (overlongs, surrogates,
 *      code points above U+10FFFF, truncated sequences);
 *   2. a strict RFC 8259 grammar scan (json-c's tokener, even in strict mode,
 *      accepts single-quoted strings, NaN, "1." and raw control characters in
 *      strings), which also enforces the depth limit, rejects lone surrogate
 *      escapes and "\u0000" in member names, and finds trailing data;
 *   3. json-c's tokener over exactly |len| bytes to build the tree.
 * Byte offsets in messages are zero-based.
 *
 * Known json-c behaviour kept as is: a duplicate member name keeps the last
 * value; an integer literal beyond the int64/uint64 range is clamped by json-c,
 * so jx_validate reports any integer outside (INT64_MIN, INT64_MAX] as out of
 * range.
 */
#include "jsonx.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Deepest nesting jx_parse accepts whatever |max_depth| says. */
#define JX_DEPTH_CAP 4096
/* json-c's own default, used when |max_depth| <= 0. */
#define JX_DEPTH_DEFAULT 32

void
jx_error_add(jx_errors_t *errs, const char *field, const char *fmt, ...)
{
    va_list ap;
    jx_error_t *e;

    if (errs == NULL || errs->n >= JX_MAX_ERRORS)
        return;
    e = &errs->items[errs->n++];
    snprintf(e->field, sizeof(e->field), "%s", field != NULL ? field : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* ---- UTF-8 ------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence starting at |s[0]| (|avail| bytes
 * available), or 0 when the sequence is invalid or truncated.
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

/* Offset of the first invalid sequence in |s|, or |len| when all is valid. */
static size_t
utf8_first_invalid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_seq_len(s + i, len - i);

        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

int
jx_utf8_valid(const char *s, size_t len)
{
    if (s == NULL)
        return len == 0;
    return utf8_first_invalid((const unsigned char *)s, len) == len;
}

static size_t
utf8_count(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    }
    return n;
}

size_t
jx_utf8_len(const char *s)
{
    if (s == NULL)
        return 0;
    return utf8_count(s, strlen(s));
}

/* ---- strict grammar scan ---------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len;
    size_t pos;
    int max_depth;
    int depth;
    uint64_t kinds[JX_DEPTH_CAP / 64]; /* bit set = object, clear = array */
    const char *err;                   /* NULL or a static description */
    size_t err_pos;
    int err_depth;    /* 1 when the depth limit was hit */
    int err_trailing; /* 1 when data follows the value */
} scan_t;

static int
scan_fail(scan_t *sc, size_t pos, const char *what)
{
    sc->err = what;
    sc->err_pos = pos;
    return -1;
}

static int
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void
scan_ws(scan_t *sc)
{
    while (sc->pos < sc->len && is_ws(sc->p[sc->pos]))
        sc->pos++;
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits of a \u escape at |pos|; -1 when malformed. */
static long
scan_hex4(const scan_t *sc, size_t pos)
{
    long v = 0;

    if (sc->len - pos < 4)
        return -1;
    for (size_t i = 0; i < 4; i++) {
        int h = hexval(sc->p[pos + i]);

        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string starting at the opening quote. |is_key| rejects \u0000. */
static int
scan_string(scan_t *sc, int is_key)
{
    sc->pos++; /* opening quote */
    for (;;) {
        unsigned char c;

        if (sc->pos >= sc->len)
            return scan_fail(sc, sc->len, "unexpected end of data");
        c = sc->p[sc->pos];
        if (c == '"') {
            sc->pos++;
            return 0;
        }
        if (c < 0x20)
            return scan_fail(sc, sc->pos, "control character in string");
        if (c != '\\') {
            sc->pos++;
            continue;
        }
        if (sc->pos + 1 >= sc->len)
            return scan_fail(sc, sc->len, "unexpected end of data");
        c = sc->p[sc->pos + 1];
        if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
            sc->pos += 2;
            continue;
        }
        if (c != 'u')
            return scan_fail(sc, sc->pos, "invalid escape in string");
        {
            size_t esc = sc->pos;
            long cp = scan_hex4(sc, esc + 2);

            if (cp < 0)
                return scan_fail(sc, esc, "invalid escape in string");
            sc->pos = esc + 6;
            if (cp == 0 && is_key)
                return scan_fail(sc, esc, "NUL character in member name");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return scan_fail(sc, esc, "unpaired surrogate escape in string");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = -1;

                if (sc->len - sc->pos >= 6 && sc->p[sc->pos] == '\\' && sc->p[sc->pos + 1] == 'u')
                    lo = scan_hex4(sc, sc->pos + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return scan_fail(sc, esc, "unpaired surrogate escape in string");
                sc->pos += 6;
            }
        }
    }
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int
scan_number(scan_t *sc)
{
    size_t start = sc->pos;

    if (sc->p[sc->pos] == '-')
        sc->pos++;
    if (sc->pos >= sc->len)
        return scan_fail(sc, sc->len, "unexpected end of data");
    if (sc->p[sc->pos] == '0') {
        sc->pos++;
        if (sc->pos < sc->len && is_digit(sc->p[sc->pos]))
            return scan_fail(sc, start, "invalid number");
    } else if (is_digit(sc->p[sc->pos])) {
        while (sc->pos < sc->len && is_digit(sc->p[sc->pos]))
            sc->pos++;
    } else {
        return scan_fail(sc, start, "invalid number");
    }
    if (sc->pos < sc->len && sc->p[sc->pos] == '.') {
        sc->pos++;
        if (sc->pos >= sc->len || !is_digit(sc->p[sc->pos]))
            return scan_fail(sc, start, "invalid number");
        while (sc->pos < sc->len && is_digit(sc->p[sc->pos]))
            sc->pos++;
    }
    if (sc->pos < sc->len && (sc->p[sc->pos] == 'e' || sc->p[sc->pos] == 'E')) {
        sc->pos++;
        if (sc->pos < sc->len && (sc->p[sc->pos] == '+' || sc->p[sc->pos] == '-'))
            sc->pos++;
        if (sc->pos >= sc->len || !is_digit(sc->p[sc->pos]))
            return scan_fail(sc, start, "invalid number");
        while (sc->pos < sc->len && is_digit(sc->p[sc->pos]))
            sc->pos++;
    }
    return 0;
}

static int
scan_literal(scan_t *sc, const char *word)
{
    size_t n = strlen(word);

    for (size_t i = 0; i < n; i++) {
        if (sc->pos + i >= sc->len)
            return scan_fail(sc, sc->len, "unexpected end of data");
        if (sc->p[sc->pos + i] != (unsigned char)word[i])
            return scan_fail(sc, sc->pos + i, "unexpected character");
    }
    sc->pos += n;
    return 0;
}

/* A scalar value at sc->pos (whitespace already skipped). */
static int
scan_scalar(scan_t *sc)
{
    unsigned char c = sc->p[sc->pos];

    switch (c) {
    case '"': return scan_string(sc, 0);
    case 't': return scan_literal(sc, "true");
    case 'f': return scan_literal(sc, "false");
    case 'n': return scan_literal(sc, "null");
    default:
        if (c == '-' || is_digit(c))
            return scan_number(sc);
        return scan_fail(sc, sc->pos, "unexpected character");
    }
}

static int
scan_push(scan_t *sc, int is_object)
{
    int d = sc->depth;

    if (d >= sc->max_depth) {
        sc->err_depth = 1;
        return scan_fail(sc, sc->pos, "nesting too deep");
    }
    if (is_object)
        sc->kinds[d / 64] |= (uint64_t)1 << (d % 64);
    else
        sc->kinds[d / 64] &= ~((uint64_t)1 << (d % 64));
    sc->depth++;
    sc->pos++;
    return 0;
}

static int
scan_top_is_object(const scan_t *sc)
{
    int d = sc->depth - 1;

    return ((sc->kinds[d / 64] >> (d % 64)) & 1) != 0;
}

/*
 * Iterative scan of one value at sc->pos. After a value inside a container
 * we expect ',' or the closing bracket; after '{' or ',' in an object a
 * member name.
 */
static int
scan_value(scan_t *sc)
{
    enum { WANT_VALUE, WANT_FIRST_VALUE, WANT_KEY, WANT_FIRST_KEY, AFTER_VALUE } st = WANT_VALUE;

    for (;;) {
        unsigned char c;

        scan_ws(sc);
        if (sc->pos >= sc->len)
            return scan_fail(sc, sc->len, "unexpected end of data");
        c = sc->p[sc->pos];
        switch (st) {
        case WANT_FIRST_KEY:
            if (c == '}') {
                sc->depth--;
                sc->pos++;
                st = AFTER_VALUE;
                break;
            }
            /* fall through */
        case WANT_KEY:
            if (c != '"')
                return scan_fail(sc, sc->pos, "expected a quoted member name");
            if (scan_string(sc, 1) < 0)
                return -1;
            scan_ws(sc);
            if (sc->pos >= sc->len)
                return scan_fail(sc, sc->len, "unexpected end of data");
            if (sc->p[sc->pos] != ':')
                return scan_fail(sc, sc->pos, "expected ':' after member name");
            sc->pos++;
            st = WANT_VALUE;
            break;
        case WANT_FIRST_VALUE:
            if (c == ']') {
                sc->depth--;
                sc->pos++;
                st = AFTER_VALUE;
                break;
            }
            /* fall through */
        case WANT_VALUE:
            if (c == '{') {
                if (scan_push(sc, 1) < 0)
                    return -1;
                st = WANT_FIRST_KEY;
            } else if (c == '[') {
                if (scan_push(sc, 0) < 0)
                    return -1;
                st = WANT_FIRST_VALUE;
            } else {
                if (scan_scalar(sc) < 0)
                    return -1;
                st = AFTER_VALUE;
            }
            break;
        case AFTER_VALUE:
            if (sc->depth == 0)
                return 0;
            if (c == ',') {
                sc->pos++;
                st = scan_top_is_object(sc) ? WANT_KEY : WANT_VALUE;
            } else if (c == (scan_top_is_object(sc) ? '}' : ']')) {
                sc->pos++;
                sc->depth--;
            } else {
                return scan_fail(sc, sc->pos, "unexpected character");
            }
            break;
        }
        if (st == AFTER_VALUE && sc->depth == 0)
            return 0;
    }
}

/* ---- jx_parse ---------------------------------------------------------- */

int
jx_parse(const char *buf, size_t len, int max_depth, json_object **out, jx_errors_t *errs)
{
    const unsigned char *p = (const unsigned char *)buf;
    scan_t sc;
    struct json_tokener *tok;
    json_object *obj;
    enum json_tokener_error jerr;
    size_t bad, i;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || (buf == NULL && len > 0)) {
        jx_error_add(errs, "", "body could not be read");
        return PHR_EINVAL;
    }
    if (max_depth <= 0)
        max_depth = JX_DEPTH_DEFAULT;
    if (max_depth > JX_DEPTH_CAP)
        max_depth = JX_DEPTH_CAP;

    for (i = 0; i < len && is_ws(p[i]); i++)
        ;
    if (i == len) {
        jx_error_add(errs, "", "body is empty");
        return PHR_EINVAL;
    }
    if (len > INT_MAX - 1) {
        jx_error_add(errs, "", "body is too large");
        return PHR_EINVAL;
    }
    {
        const void *nul = memchr(p, 0, len);

        if (nul != NULL) {
            jx_error_add(errs, "", "body contains a NUL byte at byte %zu",
                         (size_t)((const unsigned char *)nul - p));
            return PHR_EINVAL;
        }
    }
    bad = utf8_first_invalid(p, len);
    if (bad < len) {
        jx_error_add(errs, "", "body is not valid UTF-8 at byte %zu", bad);
        return PHR_EINVAL;
    }

    memset(&sc, 0, sizeof(sc));
    sc.p = p;
    sc.len = len;
    sc.max_depth = max_depth;
    if (scan_value(&sc) == 0) {
        scan_ws(&sc);
        if (sc.pos < len) {
            sc.err_trailing = 1;
            scan_fail(&sc, sc.pos, "trailing data");
        }
    }
    if (sc.err != NULL) {
        if (sc.err_depth)
            jx_error_add(errs, "", "body is nested deeper than %d levels at byte %zu", max_depth,
                         sc.err_pos);
        else if (sc.err_trailing)
            jx_error_add(errs, "", "body has trailing data after the JSON value at byte %zu",
                         sc.err_pos);
        else
            jx_error_add(errs, "", "body is not valid JSON: %s at byte %zu", sc.err, sc.err_pos);
        return PHR_EINVAL;
    }

    /* json-c's max_depth counts one more than the containers it admits. */
    tok = json_tokener_new_ex(max_depth + 1);
    if (tok == NULL)
        return PHR_ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, buf, (int)len);
    jerr = json_tokener_get_error(tok);
    if (obj == NULL && jerr == json_tokener_continue) {
        /* A number at the very end: a NUL byte tells json-c the data ended. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        if (jerr != json_tokener_success) {
            json_object_put(obj);
            jx_error_add(errs, "", "body is not valid JSON: %s at byte %zu",
                         json_tokener_error_desc(jerr), len);
            json_tokener_free(tok);
            return PHR_EINVAL;
        }
    } else if (jerr != json_tokener_success) {
        size_t at = json_tokener_get_parse_end(tok);

        json_object_put(obj);
        if (jerr == json_tokener_error_depth)
            jx_error_add(errs, "", "body is nested deeper than %d levels at byte %zu", max_depth,
                         at);
        else
            jx_error_add(errs, "", "body is not valid JSON: %s at byte %zu",
                         json_tokener_error_desc(jerr), at);
        json_tokener_free(tok);
        return PHR_EINVAL;
    } else {
        size_t end = json_tokener_get_parse_end(tok);

        for (i = end; i < len && is_ws(p[i]); i++)
            ;
        if (i < len) {
            json_object_put(obj);
            jx_error_add(errs, "", "body has trailing data after the JSON value at byte %zu", i);
            json_tokener_free(tok);
            return PHR_EINVAL;
        }
    }
    json_tokener_free(tok);
    *out = obj; /* NULL for a body that is just "null" */
    return PHR_OK;
}

/* ---- jx_validate ------------------------------------------------------- */

static void
field_path(char *dst, size_t cap, const char *prefix, const char *name)
{
    if (prefix == NULL || prefix[0] == '\0')
        snprintf(dst, cap, "%s", name);
    else
        snprintf(dst, cap, "%s.%s", prefix, name);
}

static const char *
type_message(jx_type_t t)
{
    switch (t) {
    case JX_STRING: return "must be a string";
    case JX_INT: return "must be an integer";
    case JX_NUMBER: return "must be a number";
    case JX_BOOL: return "must be a boolean";
    case JX_OBJECT: return "must be an object";
    case JX_ARRAY: return "must be an array";
    }
    return "has the wrong type";
}

static int
has_range(const jx_field_t *f)
{
    /* A zero-initialised range (0, 0) means "no range" as well. */
    return f->min <= f->max && !(f->min == 0 && f->max == 0);
}

static void
enum_message(char *dst, size_t cap, const char *const *vals)
{
    size_t used;

    snprintf(dst, cap, "must be one of: ");
    used = strlen(dst);
    for (size_t i = 0; vals[i] != NULL && used + 1 < cap; i++) {
        int n = snprintf(dst + used, cap - used, "%s%s", i > 0 ? ", " : "", vals[i]);

        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used >= cap && cap > 4)
        memcpy(dst + cap - 4, "...", 4);
}

/*
 * Numeric value of |v| for a JX_INT/JX_NUMBER field. Returns 0 when usable,
 * -1 for the wrong type, -2 for out of int64/double range.
 */
static int
number_value(const json_object *v, jx_type_t want, double *num)
{
    enum json_type t = json_object_get_type(v);

    if (t == json_type_int) {
        int64_t i = json_object_get_int64(v);

        /* json-c clamps literals beyond int64 (and uint64): treat the clamps as out of range. */
        if (i == INT64_MIN || (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX))
            return -2;
        *num = (double)i;
        return 0;
    }
    if (t == json_type_double && want == JX_NUMBER) {
        double d = json_object_get_double(v);

        if (!isfinite(d))
            return -2;
        *num = d;
        return 0;
    }
    return -1;
}

static void
range_message(char *dst, size_t cap, const jx_field_t *f)
{
    snprintf(dst, cap, "must be between %.15g and %.15g", f->min, f->max);
}

/* Checks one present member; returns 1 when it is invalid (error appended). */
static int
check_field(const jx_field_t *f, json_object *v, const char *path, jx_errors_t *errs)
{
    enum json_type t = json_object_get_type(v);
    char msg[sizeof(errs->items[0].message)];

    switch (f->type) {
    case JX_STRING: {
        const char *s;
        size_t blen, chars, i;

        if (t != json_type_string)
            break;
        s = json_object_get_string(v);
        blen = (size_t)json_object_get_string_len(v);
        if (s == NULL || memchr(s, 0, blen) != NULL || !jx_utf8_valid(s, blen)) {
            jx_error_add(errs, path, "must not contain NUL characters");
            return 1;
        }
        chars = utf8_count(s, blen);
        if (chars < f->min_len) {
            jx_error_add(errs, path, "must be at least %zu characters", f->min_len);
            return 1;
        }
        if (f->max_len > 0 && chars > f->max_len) {
            jx_error_add(errs, path, "must be at most %zu characters", f->max_len);
            return 1;
        }
        if (f->enum_vals == NULL)
            return 0;
        for (i = 0; f->enum_vals[i] != NULL; i++) {
            if (strcmp(f->enum_vals[i], s) == 0)
                return 0;
        }
        enum_message(msg, sizeof(msg), f->enum_vals);
        jx_error_add(errs, path, "%s", msg);
        return 1;
    }
    case JX_INT:
    case JX_NUMBER: {
        double num = 0;
        int rc = number_value(v, f->type, &num);

        if (rc == -1)
            break;
        if (rc == -2) {
            jx_error_add(errs, path, "is out of range");
            return 1;
        }
        if (has_range(f) && (num < f->min || num > f->max)) {
            range_message(msg, sizeof(msg), f);
            jx_error_add(errs, path, "%s", msg);
            return 1;
        }
        return 0;
    }
    case JX_BOOL:
        if (t != json_type_boolean)
            break;
        return 0;
    case JX_OBJECT:
        if (t != json_type_object)
            break;
        return 0;
    case JX_ARRAY: {
        size_t n;

        if (t != json_type_array)
            break;
        n = json_object_array_length(v);
        if (n < f->min_len) {
            jx_error_add(errs, path, "must have at least %zu items", f->min_len);
            return 1;
        }
        if (f->max_len > 0 && n > f->max_len) {
            jx_error_add(errs, path, "must have at most %zu items", f->max_len);
            return 1;
        }
        return 0;
    }
    }
    jx_error_add(errs, path, "%s", type_message(f->type));
    return 1;
}

int
jx_validate(const json_object *obj, const jx_field_t *fields, size_t n, int allow_unknown,
            const char *prefix, jx_errors_t *errs)
{
    int failed = 0;
    char path[sizeof(errs->items[0].field)];
    struct lh_table *tab;

    if (prefix == NULL)
        prefix = "";
    if (json_object_get_type(obj) != json_type_object) {
        jx_error_add(errs, prefix, "must be an object");
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const jx_field_t *f = &fields[i];
        json_object *v = NULL;

        field_path(path, sizeof(path), prefix, f->name);
        /* A member that is null counts as absent. */
        if (!json_object_object_get_ex(obj, f->name, &v) || v == NULL) {
            if (f->required) {
                jx_error_add(errs, path, "is required");
                failed = 1;
            }
            continue;
        }
        if (check_field(f, v, path, errs))
            failed = 1;
    }
    if (allow_unknown)
        return failed ? PHR_EINVAL : PHR_OK;
    tab = json_object_get_object(obj);
    for (struct lh_entry *e = tab != NULL ? lh_table_head(tab) : NULL; e != NULL;
         e = lh_entry_next(e)) {
        const char *key = (const char *)lh_entry_k(e);
        size_t i;

        for (i = 0; i < n; i++) {
            if (strcmp(fields[i].name, key) == 0)
                break;
        }
        if (i == n) {
            field_path(path, sizeof(path), prefix, key);
            jx_error_add(errs, path, "is not allowed");
            failed = 1;
        }
    }
    return failed ? PHR_EINVAL : PHR_OK;
}

/* ---- getters and output ------------------------------------------------ */

const char *
jx_get_str(const json_object *obj, const char *key, const char *def)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return def;
    return json_object_get_string(v);
}

int64_t
jx_get_int(const json_object *obj, const char *key, int64_t def)
{
    json_object *v = NULL;
    int64_t i;

    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int))
        return def;
    i = json_object_get_int64(v);
    if (i == INT64_MIN || (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX))
        return def; /* clamped by json-c: the real value does not fit */
    return i;
}

const char *
jx_to_string(json_object *obj, size_t *len)
{
    size_t dummy;

    return json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len != NULL ? len : &dummy);
}
