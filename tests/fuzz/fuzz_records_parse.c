/*
 * fuzz_records_parse.c - libFuzzer target for the records validator
 * (services/records/record.c rec_parse, rec_check_values; fhir.c import).
 *
 * The input is a request body. It is parsed as the services do (jx_parse,
 * depth 16); an object is validated with rec_parse under each flag set the
 * routes use, and one carrying "resourceType" is first mapped back from FHIR
 * (fhir_to_record, as an import does). Invariants, trapping on violation:
 *   - PHR_OK exactly when no error was added; a refusal names at least one
 *     field, and every field is one the API documents ("", type, measured_at,
 *     values, values.<field>, note, source), an unknown member of the body, or,
 *     for FHIR, a path under the entry's base;
 *   - an accepted record has a type of the table, values that are an object
 *     of that type's fields only and pass rec_check_values again, a note of
 *     at most REC_NOTE_MAX characters of valid UTF-8, a source self|device,
 *     and measured_at not in the future beyond one day with NO_FUTURE;
 *   - the normalised record parses again to the same values (idempotence),
 *     and exports to FHIR and imports back as a record of the same type.
 * Run through tests/fuzz/run.sh (make fuzz); linked with the records
 * service's objects (fuzz_records_* targets).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "jsonx.h"
#include "../../services/records/fhir.h"
#include "../../services/records/records.h"
#include "../../services/records/rectype.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DEPTH 16
#define FUZZ_NOW_MS 1767225600000LL /* 2026-01-01T00:00:00Z */
#define FUZZ_DAY_MS 86400000LL
#define FUZZ_BASE "entry[0].resource"
#define FUZZ_PATIENT "0190f0a0-0000-7000-8000-0000000000bb"

/* 1 when |f| is (the start of, names are truncated) a member of |body|: an unknown field. */
static int
fuzz_member(const json_object *body, const char *f)
{
    if (f[0] == '\0' || !json_object_is_type(body, json_type_object)) {
        return 0;
    }
    json_object_object_foreach((json_object *)(uintptr_t)body, key, val)
    {
        (void)val;
        if (strncmp(key, f, strlen(f)) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
fuzz_check_fields(const jx_errors_t *errs, size_t before, const json_object *body, int fhir)
{
    static const char *const names[] = {"", "type", "measured_at", "values", "note", "source"};

    if (errs->n > JX_MAX_ERRORS) {
        __builtin_trap();
    }
    for (size_t i = before; i < errs->n; i++) {
        const char *f = errs->items[i].field;
        int known = 0;
        if (memchr(f, 0, sizeof(errs->items[i].field)) == NULL ||
            memchr(errs->items[i].message, 0, sizeof(errs->items[i].message)) == NULL ||
            errs->items[i].message[0] == '\0') {
            __builtin_trap();
        }
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            known |= strcmp(f, names[k]) == 0;
        }
        known |= strncmp(f, "values.", 7) == 0; /* values.<key>, also an empty key */
        known |= !fhir && fuzz_member(body, f);
        known |= fhir && strncmp(f, FUZZ_BASE, strlen(FUZZ_BASE)) == 0;
        if (!known) {
            __builtin_trap();
        }
    }
}

/* Checks an accepted record; returns its values serialised (owned by |in|). */
static const char *
fuzz_check_accepted(const rec_input_t *in, int flags)
{
    if (in->type == NULL || rectype_find(in->type->type) != in->type ||
        !json_object_is_type(in->values, json_type_object)) {
        __builtin_trap();
    }
    json_object_object_foreach(in->values, key, val)
    {
        (void)val;
        if (rectype_field(in->type, key) == NULL) {
            __builtin_trap();
        }
    }
    jx_errors_t errs = {.n = 0};
    if (rec_check_values(in->type, in->values, &errs) != PHR_OK || errs.n != 0) {
        __builtin_trap();
    }
    if (in->note != NULL &&
        (!jx_utf8_valid(in->note, strlen(in->note)) || jx_utf8_len(in->note) > REC_NOTE_MAX)) {
        __builtin_trap();
    }
    if (in->source == NULL || (strcmp(in->source, "self") != 0 && strcmp(in->source, "device"))) {
        __builtin_trap();
    }
    if ((flags & REC_PARSE_NO_FUTURE) && in->measured_ms > FUZZ_NOW_MS + FUZZ_DAY_MS) {
        __builtin_trap();
    }
    return json_object_to_json_string_ext(in->values, JSON_C_TO_STRING_PLAIN);
}

/* The normalised record as an API body, with |measured_at| as given. */
static json_object *
fuzz_body(const rec_input_t *in, const char *measured_at)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "type", json_object_new_string(in->type->type));
    json_object_object_add(o, "measured_at", json_object_new_string(measured_at));
    json_object_object_add(o, "values", json_object_get(in->values));
    if (in->note != NULL) {
        json_object_object_add(o, "note", json_object_new_string(in->note));
    }
    return o;
}

/* Parses the normalised record again and through FHIR and back. */
static void
fuzz_round_trip(const rec_input_t *in, const char *measured_at, const char *values)
{
    json_object *body = fuzz_body(in, measured_at);
    jx_errors_t errs = {.n = 0};
    rec_input_t again;

    if (rec_parse(body, 0, FUZZ_NOW_MS, &again, &errs) != PHR_OK) {
        __builtin_trap();
    }
    if (again.type != in->type || again.measured_ms != in->measured_ms ||
        strcmp(json_object_to_json_string_ext(again.values, JSON_C_TO_STRING_PLAIN), values)) {
        __builtin_trap();
    }
    rec_input_clear(&again);

    json_object_object_add(body, "id",
                           json_object_new_string("0190f0a0-0000-7000-8000-0000000000aa"));
    json_object_object_add(body, "source", json_object_new_string(in->source));
    json_object *res = fhir_resource(body, FUZZ_PATIENT);
    if (res == NULL) {
        __builtin_trap(); /* every type of the table has a FHIR form */
    }
    json_object *back = NULL;
    fhir_paths_t paths;
    if (fhir_to_record(res, FUZZ_BASE, &back, &paths, &errs) != PHR_OK || errs.n != 0) {
        __builtin_trap();
    }
    if (strcmp(jx_get_str(back, "type", ""), in->type->type) != 0) {
        __builtin_trap();
    }
    json_object_put(back);
    json_object_put(res);
    json_object_put(body);
}

static void
fuzz_parse(const json_object *body, int flags, int fhir)
{
    jx_errors_t errs = {.n = 0};
    rec_input_t in;
    int rc = rec_parse(body, flags, FUZZ_NOW_MS, &in, &errs);

    fuzz_check_fields(&errs, 0, body, 0);
    if ((rc == PHR_OK) != (errs.n == 0)) {
        __builtin_trap();
    }
    if (rc != PHR_OK) {
        return;
    }
    const char *values = fuzz_check_accepted(&in, flags);
    if (!fhir) {
        fuzz_round_trip(&in, jx_get_str(body, "measured_at", ""), values);
    }
    rec_input_clear(&in);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int flag_sets[] = {0, REC_PARSE_SOURCE | REC_PARSE_NO_FUTURE, REC_PARSE_NO_FUTURE};
    jx_errors_t errs = {.n = 0};
    json_object *obj = NULL;

    if (jx_parse((const char *)data, size, FUZZ_DEPTH, &obj, &errs) != PHR_OK) {
        return 0;
    }
    json_object *rt = NULL;
    if (json_object_is_type(obj, json_type_object) &&
        json_object_object_get_ex(obj, "resourceType", &rt)) {
        json_object *rec = NULL;
        fhir_paths_t paths;
        int rc = fhir_to_record(obj, FUZZ_BASE, &rec, &paths, &errs);
        fuzz_check_fields(&errs, 0, obj, 1);
        if (rc == PHR_OK) {
            if (rec == NULL || errs.n != 0) {
                __builtin_trap();
            }
            fuzz_parse(rec, REC_PARSE_NO_FUTURE, 1);
            json_object_put(rec);
        } else if (rc == PHR_EINVAL && errs.n == 0) {
            __builtin_trap();
        }
    } else {
        for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
            fuzz_parse(obj, flag_sets[i], 0);
        }
    }
    json_object_put(obj);
    return 0;
}
