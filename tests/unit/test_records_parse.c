/*
 * test_records_parse.c - services/records: rec_parse and rec_check_values
 * (type table, ranges, enums, unknown fields, measured_at and its 1-day
 * future limit, note length in characters, source), the type table itself
 * (LOINC codes, UCUM units), JST days and summary buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "../../services/records/records.h"

#define NOW_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

/* Parses |json|; PHR_OK or the first error's field into |field|. */
static int
parse(const char *json, int flags, rec_input_t *in, char *field)
{
    json_object *o = json_tokener_parse(json);
    jx_errors_t errs = {.n = 0};

    assert_non_null(o);
    int rc = rec_parse(o, flags, NOW_MS, in, &errs);
    json_object_put(o);
    field[0] = '\0';
    if (rc != PHR_OK) {
        assert_true(errs.n > 0);
        snprintf(field, 64, "%s", errs.items[0].field);
    }
    return rc;
}

static void
expect_field(const char *json, int flags, const char *want)
{
    rec_input_t in;
    char field[64];
    int rc = parse(json, flags, &in, field);
    if (rc != PHR_EINVAL || strcmp(field, want) != 0) {
        fail_msg("%s: rc %d field '%s', wanted '%s'", json, rc, field, want);
    }
}

static void
test_valid(void **state)
{
    rec_input_t in;
    char field[64];

    assert_int_equal(parse("{\"type\":\"blood_pressure\",\"measured_at\":"
                           "\"2025-12-31T07:30:00+09:00\",\"values\":{\"pulse\":70,"
                           "\"diastolic\":80,\"systolic\":120},\"note\":\"ok\","
                           "\"source\":\"device\"}",
                           REC_PARSE_SOURCE | REC_PARSE_NO_FUTURE, &in, field),
                     PHR_OK);
    assert_string_equal(in.type->type, "blood_pressure");
    assert_int_equal(in.measured_ms, 1767133800000LL);
    assert_string_equal(in.source, "device");
    assert_string_equal(in.note, "ok");
    /* values come out in table order */
    assert_string_equal(jx_to_string(in.values, NULL),
                        "{\"systolic\":120,\"diastolic\":80,\"pulse\":70}");
    rec_input_clear(&in);
    /* 23 h ahead is fine, source defaults to self, no note */
    assert_int_equal(parse("{\"type\":\"pulse\",\"measured_at\":\"2026-01-01T23:00:00Z\","
                           "\"values\":{\"value\":60}}",
                           REC_PARSE_NO_FUTURE, &in, field),
                     PHR_OK);
    assert_string_equal(in.source, "self");
    assert_null(in.note);
    rec_input_clear(&in);
    /* without NO_FUTURE (import of old exports, tools) the future is not checked */
    assert_int_equal(parse("{\"type\":\"pulse\",\"measured_at\":\"2030-01-01T00:00:00Z\","
                           "\"values\":{\"value\":60}}",
                           0, &in, field),
                     PHR_OK);
    rec_input_clear(&in);
}

static void
test_invalid(void **state)
{
    const int f = REC_PARSE_SOURCE | REC_PARSE_NO_FUTURE;
    char note[1200], body[1400];

    expect_field("{\"type\":\"bp\",\"measured_at\":\"2025-12-31T07:30:00Z\",\"values\":{}}", f,
                 "type");
    expect_field("{\"measured_at\":\"2025-12-31T07:30:00Z\",\"values\":{\"value\":1}}", f, "type");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\"}", f, "values");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\",\"values\":[1]}", f,
                 "values");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31\",\"values\":{\"value\":60}}", f,
                 "measured_at");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2026-01-02T00:00:01Z\","
                 "\"values\":{\"value\":60}}",
                 f, "measured_at");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"1899-12-31T00:00:00Z\","
                 "\"values\":{\"value\":60}}",
                 f, "measured_at");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":60},\"x\":1}",
                 f, "x");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":60},\"source\":\"clinic\"}",
                 f, "source");
    /* source is an unknown field where the route does not take it */
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":60},\"source\":\"self\"}",
                 REC_PARSE_NO_FUTURE, "source");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":\"60\"}}",
                 f, "values.value");
    expect_field("{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":60.5}}",
                 f, "values.value");
    expect_field("{\"type\":\"blood_pressure\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"systolic\":39,\"diastolic\":30}}",
                 f, "values.systolic");
    expect_field("{\"type\":\"blood_pressure\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"systolic\":120}}",
                 f, "values.diastolic");
    expect_field("{\"type\":\"blood_glucose\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":1000.5,\"timing\":\"fasting\"}}",
                 f, "values.value");
    expect_field("{\"type\":\"blood_glucose\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":100,\"timing\":\"noon\"}}",
                 f, "values.timing");
    expect_field("{\"type\":\"body_weight\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":0.5}}",
                 f, "values.value");
    expect_field("{\"type\":\"medication\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"name\":\"\",\"taken\":true}}",
                 f, "values.name");
    expect_field("{\"type\":\"medication\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"name\":\"a\",\"taken\":1}}",
                 f, "values.taken");
    expect_field("{\"type\":\"steps\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"value\":-1}}",
                 f, "values.value");
    expect_field("{\"type\":\"note\",\"measured_at\":\"2025-12-31T07:30:00Z\","
                 "\"values\":{\"text\":\"a\",\"mood\":\"ok\"}}",
                 f, "values.mood");
    /* note: 1000 characters (multi-byte) pass, 1001 do not */
    size_t o = 0;
    for (int i = 0; i < 1001; i++) {
        note[o++] = i < 1000 ? 'a' : 'b';
    }
    note[o] = '\0';
    snprintf(body, sizeof(body),
             "{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
             "\"values\":{\"value\":60},\"note\":\"%s\"}",
             note);
    expect_field(body, f, "note");
    rec_input_t in;
    char field[64];
    note[1000] = '\0';
    snprintf(body, sizeof(body),
             "{\"type\":\"pulse\",\"measured_at\":\"2025-12-31T07:30:00Z\","
             "\"values\":{\"value\":60},\"note\":\"%s\"}",
             note);
    assert_int_equal(parse(body, f, &in, field), PHR_OK);
    rec_input_clear(&in);
}

static void
test_type_table(void **state)
{
    static const struct {
        const char *type, *loinc, *unit;
    } want[] = {
        {"blood_pressure", "85354-9", "mm[Hg]"},
        {"pulse", "8867-4", "/min"},
        {"body_weight", "29463-7", "kg"},
        {"blood_glucose", "2339-0", "mg/dL"},
        {"hba1c", "4548-4", "%"},
        {"steps", "55423-8", "{steps}"},
        {"body_temperature", "8310-5", "Cel"},
        {"spo2", "59408-5", "%"},
        {"medication", NULL, NULL},
        {"note", NULL, NULL},
    };
    assert_int_equal(rectype_count, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < rectype_count; i++) {
        const rectype_t *t = rectype_find(want[i].type);
        assert_non_null(t);
        if (want[i].loinc == NULL) {
            assert_null(t->loinc);
        } else {
            assert_string_equal(t->loinc, want[i].loinc);
            assert_string_equal(t->unit, want[i].unit);
        }
    }
    const rectype_t *bp = rectype_find("blood_pressure");
    assert_string_equal(rectype_field(bp, "systolic")->loinc, "8480-6");
    assert_string_equal(rectype_field(bp, "diastolic")->loinc, "8462-4");
    assert_string_equal(rectype_field(bp, "pulse")->loinc, "8867-4");
    assert_int_equal(rectype_field(bp, "systolic")->min, 40);
    assert_int_equal(rectype_field(bp, "systolic")->max, 300);
    assert_string_equal(rectype_find("blood_glucose")->alt_loinc[0], "41653-7");
    assert_true(rectype_find("steps")->one_per_day);
    assert_null(rectype_find("weight"));
}

static void
test_days_and_buckets(void **state)
{
    char day[11];

    rec_local_day(1767193200000LL, day); /* 2025-12-31T15:00:00Z = 2026-01-01 00:00 JST */
    assert_string_equal(day, "2026-01-01");
    rec_local_day(1767193199999LL, day);
    assert_string_equal(day, "2025-12-31");
    rec_local_day(-1, day);
    assert_string_equal(day, "1970-01-01");
    /* 2026-01-14 (Wednesday) 12:00 JST: day 20467, week from Monday 01-12, month from 01-01 */
    int64_t ms = 1768359600000LL;
    assert_int_equal(rec_bucket_start(ms, 0), 20467);
    assert_int_equal(rec_bucket_start(ms, 1), 20465);
    assert_int_equal(rec_bucket_start(ms, 2), 20454);
    /* a Monday is its own week start; a Sunday belongs to the week before */
    assert_int_equal(rec_bucket_start(1768143600000LL, 1), 20465); /* 01-12 00:00 JST */
    assert_int_equal(rec_bucket_start(1768143599999LL, 1), 20458); /* 01-11 23:59 JST */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_days_and_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
