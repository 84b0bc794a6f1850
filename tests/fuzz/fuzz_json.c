/*
 * fuzz_json.c - libFuzzer target for common/jsonx.c.
 *
 * Feeds arbitrary bytes to jx_parse (depth 16); objects are validated against
 * a representative field table (and a nested "values" object with a prefix).
 * Checks invariants and traps on violation:
 *   - a failed parse leaves *out NULL and exactly one error for field "";
 *   - the error list never exceeds JX_MAX_ERRORS; messages are terminated;
 *   - a parsed value serialises with jx_to_string, that text parses again
 *     and serialises to the same bytes.
 * Run through tests/fuzz/run.sh (make fuzz).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "jsonx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DEPTH 16

static const char *const fuzz_kinds[] = {"blood_pressure", "weight", "glucose", NULL};

static const jx_field_t fuzz_fields[] = {
    {.name = "kind", .type = JX_STRING, .required = 1, .enum_vals = fuzz_kinds},
    {.name = "measured_at", .type = JX_STRING, .required = 1, .min_len = 20, .max_len = 40},
    {.name = "note", .type = JX_STRING, .max_len = 500},
    {.name = "values", .type = JX_OBJECT, .required = 1},
    {.name = "tags", .type = JX_ARRAY, .max_len = 10},
    {.name = "shared", .type = JX_BOOL},
    {.name = "limit", .type = JX_INT, .min = 1, .max = 100},
};

static const jx_field_t fuzz_values[] = {
    {.name = "systolic", .type = JX_INT, .min = 40, .max = 300},
    {.name = "diastolic", .type = JX_INT, .min = 20, .max = 200},
    {.name = "kg", .type = JX_NUMBER, .min = 0.5, .max = 500},
    {.name = "mg_dl", .type = JX_NUMBER, .min = 1, .max = 0},
};

static void
check_errors(const jx_errors_t *errs)
{
    if (errs->n > JX_MAX_ERRORS)
        __builtin_trap();
    for (size_t i = 0; i < errs->n; i++) {
        if (memchr(errs->items[i].field, 0, sizeof(errs->items[i].field)) == NULL ||
            memchr(errs->items[i].message, 0, sizeof(errs->items[i].message)) == NULL ||
            errs->items[i].message[0] == '\0')
            __builtin_trap();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jx_errors_t errs = {.n = 0};
    json_object *obj = NULL;
    int rc = jx_parse((const char *)data, size, FUZZ_DEPTH, &obj, &errs);

    check_errors(&errs);
    if (rc != PHR_OK) {
        if (obj != NULL || errs.n != 1 || errs.items[0].field[0] != '\0')
            __builtin_trap();
        return 0;
    }
    if (errs.n != 0)
        __builtin_trap();

    {
        size_t len1 = 0, len2 = 0;
        const char *s1 = jx_to_string(obj, &len1);
        json_object *again = NULL;
        jx_errors_t errs2 = {.n = 0};

        if (s1 == NULL || strlen(s1) != len1)
            __builtin_trap();
        if (jx_parse(s1, len1, FUZZ_DEPTH, &again, &errs2) != PHR_OK)
            __builtin_trap();
        {
            const char *s2 = jx_to_string(again, &len2);

            if (len1 != len2 || memcmp(s1, s2, len1) != 0)
                __builtin_trap();
        }
        json_object_put(again);
    }

    if (json_object_is_type(obj, json_type_object)) {
        json_object *values = NULL;

        rc = jx_validate(obj, fuzz_fields, sizeof(fuzz_fields) / sizeof(fuzz_fields[0]), 0, "",
                         &errs);
        if ((rc == PHR_OK) != (errs.n == 0))
            __builtin_trap();
        if (json_object_object_get_ex(obj, "values", &values))
            (void)jx_validate(values, fuzz_values, sizeof(fuzz_values) / sizeof(fuzz_values[0]), 1,
                              "values", &errs);
        check_errors(&errs);
        (void)jx_get_str(obj, "kind", NULL);
        (void)jx_get_int(obj, "limit", 0);
    }
    json_object_put(obj);
    return 0;
}
