/*
 * test_records_fhir.c - services/records/fhir.c: FHIR R4 resources of each
 * record type (LOINC codes, UCUM units, the blood pressure panel), the way
 * back (with error paths naming the entry), and RFC 4180 CSV rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/records/fhir.h"
#include "err.h"

#define PAT "0190f0a0-0000-7000-8000-000000000001"

static json_object *
parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

/* The member at dotted |path| ("component.1.valueQuantity.code"), or NULL. */
static json_object *
at(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok != NULL && o != NULL;
         tok = strtok_r(NULL, ".", &save)) {
        if (json_object_is_type(o, json_type_array)) {
            o = json_object_array_get_idx(o, (size_t)strtol(tok, NULL, 10));
        } else if (!json_object_object_get_ex(o, tok, &o)) {
            return NULL;
        }
    }
    return o;
}

static const char *
str_at(json_object *o, const char *path)
{
    json_object *v = at(o, path);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static void
test_blood_pressure_panel(void **state)
{
    json_object *rec =
        parse("{\"id\":\"0190f0a0-0000-7000-8000-0000000000aa\",\"type\":\"blood_pressure\","
              "\"measured_at\":\"2026-11-20T07:30:00.000+09:00\",\"values\":{\"systolic\":132,"
              "\"diastolic\":84,\"pulse\":71},\"note\":\"morning\",\"source\":\"self\"}");
    json_object *r = fhir_resource(rec, PAT);

    assert_non_null(r);
    assert_string_equal(str_at(r, "resourceType"), "Observation");
    assert_string_equal(str_at(r, "status"), "final");
    assert_string_equal(str_at(r, "code.coding.0.system"), "http://loinc.org");
    assert_string_equal(str_at(r, "code.coding.0.code"), "85354-9");
    assert_string_equal(str_at(r, "category.0.coding.0.code"), "vital-signs");
    assert_string_equal(str_at(r, "subject.reference"), "urn:uuid:" PAT);
    assert_string_equal(str_at(r, "effectiveDateTime"), "2026-11-20T07:30:00.000+09:00");
    assert_null(at(r, "valueQuantity"));
    assert_int_equal(json_object_array_length(at(r, "component")), 3);
    assert_string_equal(str_at(r, "component.0.code.coding.0.code"), "8480-6");
    assert_int_equal(json_object_get_int(at(r, "component.0.valueQuantity.value")), 132);
    assert_string_equal(str_at(r, "component.0.valueQuantity.system"), "http://unitsofmeasure.org");
    assert_string_equal(str_at(r, "component.0.valueQuantity.code"), "mm[Hg]");
    assert_string_equal(str_at(r, "component.1.code.coding.0.code"), "8462-4");
    assert_string_equal(str_at(r, "component.2.code.coding.0.code"), "8867-4");
    assert_string_equal(str_at(r, "component.2.valueQuantity.code"), "/min");
    assert_string_equal(str_at(r, "note.0.text"), "morning");
    assert_string_equal(str_at(r, "meta.tag.0.code"), "self");

    /* and back */
    fhir_paths_t paths;
    jx_errors_t errs = {.n = 0};
    json_object *back = NULL;
    assert_int_equal(fhir_to_record(r, "entry[1].resource", &back, &paths, &errs), PHR_OK);
    assert_string_equal(str_at(back, "type"), "blood_pressure");
    assert_string_equal(str_at(back, "measured_at"), "2026-11-20T07:30:00.000+09:00");
    assert_int_equal(json_object_get_int(at(back, "values.systolic")), 132);
    assert_int_equal(json_object_get_int(at(back, "values.diastolic")), 84);
    assert_int_equal(json_object_get_int(at(back, "values.pulse")), 71);
    assert_string_equal(str_at(back, "note"), "morning");
    assert_null(at(back, "source"));
    assert_string_equal(fhir_path_of(&paths, "values.diastolic"),
                        "entry[1].resource.component[1].valueQuantity.value");
    assert_string_equal(fhir_path_of(&paths, "measured_at"), "entry[1].resource.effectiveDateTime");
    assert_string_equal(fhir_path_of(&paths, "nothing"), "entry[1].resource");
    json_object_put(back);
    json_object_put(r);
    json_object_put(rec);
}

typedef struct {
    const char *type, *values, *loinc, *ucum;
} single_t;

static void
test_single_values_round_trip(void **state)
{
    static const single_t cases[] = {
        {"pulse", "{\"value\":64}", "8867-4", "/min"},
        {"body_weight", "{\"value\":64.5}", "29463-7", "kg"},
        {"blood_glucose", "{\"value\":108,\"timing\":\"fasting\"}", "2339-0", "mg/dL"},
        {"hba1c", "{\"value\":6.9}", "4548-4", "%"},
        {"steps", "{\"value\":8012}", "55423-8", "{steps}"},
        {"body_temperature", "{\"value\":36.6}", "8310-5", "Cel"},
        {"spo2", "{\"value\":98}", "59408-5", "%"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char txt[512];
        snprintf(txt, sizeof(txt),
                 "{\"id\":\"0190f0a0-0000-7000-8000-0000000000bb\",\"type\":\"%s\","
                 "\"measured_at\":\"2026-11-20T07:30:00.000+09:00\",\"values\":%s,"
                 "\"note\":null,\"source\":\"device\"}",
                 cases[i].type, cases[i].values);
        json_object *rec = parse(txt);
        json_object *r = fhir_resource(rec, PAT);
        assert_non_null(r);
        assert_string_equal(str_at(r, "code.coding.0.code"), cases[i].loinc);
        assert_string_equal(str_at(r, "valueQuantity.system"), "http://unitsofmeasure.org");
        assert_string_equal(str_at(r, "valueQuantity.code"), cases[i].ucum);
        assert_null(at(r, "note"));
        assert_null(at(r, "component"));
        json_object *back = NULL;
        fhir_paths_t paths;
        jx_errors_t errs = {.n = 0};
        assert_int_equal(fhir_to_record(r, "entry[2].resource", &back, &paths, &errs), PHR_OK);
        assert_string_equal(str_at(back, "type"), cases[i].type);
        json_object *want = parse(cases[i].values);
        assert_string_equal(json_object_to_json_string_ext(at(back, "values"), 0),
                            json_object_to_json_string_ext(want, 0));
        json_object_put(want);
        json_object_put(back);
        json_object_put(r);
        json_object_put(rec);
    }
}

static void
test_exact_number_text(void **state)
{
    json_object *rec = parse("{\"id\":\"x\",\"type\":\"body_temperature\",\"measured_at\":\"t\","
                             "\"values\":{\"value\":36.6},\"source\":\"self\"}");
    json_object *r = fhir_resource(rec, PAT);
    assert_non_null(strstr(json_object_to_json_string_ext(r, 0), "\"value\":36.6,"));
    json_object_put(r);
    json_object_put(rec);
}

static void
test_medication_and_note(void **state)
{
    json_object *rec = parse("{\"id\":\"m1\",\"type\":\"medication\",\"measured_at\":\"t1\","
                             "\"values\":{\"name\":\"Metformin\",\"dose\":\"500 mg\",\"taken\":"
                             "false},\"note\":\"forgot\",\"source\":\"self\"}");
    json_object *r = fhir_resource(rec, PAT);
    assert_string_equal(str_at(r, "resourceType"), "MedicationStatement");
    assert_string_equal(str_at(r, "status"), "not-taken");
    assert_string_equal(str_at(r, "medicationCodeableConcept.text"), "Metformin");
    assert_string_equal(str_at(r, "dosage.0.text"), "500 mg");
    assert_string_equal(str_at(r, "effectiveDateTime"), "t1");
    json_object *back = NULL;
    fhir_paths_t paths;
    jx_errors_t errs = {.n = 0};
    assert_int_equal(fhir_to_record(r, "entry[1].resource", &back, &paths, &errs), PHR_OK);
    assert_string_equal(json_object_to_json_string_ext(back, 0),
                        "{\"type\":\"medication\",\"measured_at\":\"t1\",\"values\":{\"name\":"
                        "\"Metformin\",\"dose\":\"500 mg\",\"taken\":false},\"note\":\"forgot\"}");
    json_object_put(back);
    json_object_put(r);
    json_object_put(rec);

    rec = parse("{\"id\":\"n1\",\"type\":\"note\",\"measured_at\":\"t2\",\"values\":{\"text\":"
                "\"felt dizzy\"},\"note\":null,\"source\":\"self\"}");
    r = fhir_resource(rec, PAT);
    assert_string_equal(str_at(r, "resourceType"), "Observation");
    assert_string_equal(str_at(r, "code.coding.0.system"), FHIR_SYS_RECORD_TYPE);
    assert_string_equal(str_at(r, "valueString"), "felt dizzy");
    assert_int_equal(fhir_to_record(r, "entry[2].resource", &back, &paths, &errs), PHR_OK);
    assert_string_equal(json_object_to_json_string_ext(back, 0),
                        "{\"type\":\"note\",\"measured_at\":\"t2\",\"values\":{\"text\":"
                        "\"felt dizzy\"}}");
    json_object_put(back);
    json_object_put(r);
    json_object_put(rec);
}

static void
test_import_alternatives(void **state)
{
    json_object *r = parse(
        "{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
        "\"code\":\"29463-7\"}]},\"effectiveDateTime\":\"2026-01-01T00:00:00Z\","
        "\"valueQuantity\":{\"value\":150,\"system\":\"http://unitsofmeasure.org\","
        "\"code\":\"[lb_av]\"}}");
    json_object *back = NULL;
    fhir_paths_t paths;
    jx_errors_t errs = {.n = 0};

    assert_int_equal(fhir_to_record(r, "entry[0].resource", &back, &paths, &errs), PHR_OK);
    assert_true(json_object_get_double(at(back, "values.value")) > 68.03 &&
                json_object_get_double(at(back, "values.value")) < 68.05);
    json_object_put(back);
    json_object_put(r);

    /* glucose 41653-7 (home meter) in mmol/L without a timing: random */
    r = parse("{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":"
              "\"http://loinc.org\",\"code\":\"41653-7\"}]},\"effectiveInstant\":\"2026-01-01T00:"
              "00:00Z\",\"valueQuantity\":{\"value\":6,\"system\":\"http://unitsofmeasure.org\","
              "\"code\":\"mmol/L\"}}");
    assert_int_equal(fhir_to_record(r, "entry[0].resource", &back, &paths, &errs), PHR_OK);
    assert_string_equal(str_at(back, "type"), "blood_glucose");
    assert_string_equal(str_at(back, "values.timing"), "random");
    assert_true(json_object_get_double(at(back, "values.value")) > 108.05 &&
                json_object_get_double(at(back, "values.value")) < 108.15);
    json_object_put(back);
    json_object_put(r);

    /* the Patient is skipped */
    r = parse("{\"resourceType\":\"Patient\",\"id\":\"p\"}");
    assert_int_equal(fhir_to_record(r, "entry[0].resource", &back, &paths, &errs), PHR_ENOTFOUND);
    assert_null(back);
    assert_int_equal(errs.n, 0);
    json_object_put(r);
}

/* 1 when |errs| names |field|. */
static int
names(const jx_errors_t *errs, const char *field)
{
    for (size_t i = 0; i < errs->n; i++) {
        if (strcmp(errs->items[i].field, field) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
test_import_errors_name_the_path(void **state)
{
    static const struct {
        const char *res, *field;
    } cases[] = {
        {"{\"resourceType\":\"Condition\"}", "entry[3].resource.resourceType"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"1234-5\"}]}}",
         "entry[3].resource.code"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"8867-4\"}]},\"effectiveDateTime\":\"2026-01-01T00:00:00Z\"}",
         "entry[3].resource.valueQuantity"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"8867-4\"}]},\"effectiveDateTime\":\"2026-01-01T00:00:00Z\",\"valueQuantity\":"
         "{\"value\":60,\"system\":\"http://unitsofmeasure.org\",\"code\":\"kg\"}}",
         "entry[3].resource.valueQuantity.code"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"8867-4\"}]},\"effectiveDateTime\":\"2026-01-01T00:00:00Z\",\"valueQuantity\":"
         "{\"value\":\"60\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"/min\"}}",
         "entry[3].resource.valueQuantity.value"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"8867-4\"}]},\"valueQuantity\":"
         "{\"value\":60,\"system\":\"http://unitsofmeasure.org\",\"code\":\"/min\"}}",
         "entry[3].resource.effectiveDateTime"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
         "\"code\":\"85354-9\"}]},\"effectiveDateTime\":\"2026-01-01T00:00:00Z\",\"component\":"
         "[{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},"
         "\"valueQuantity\":{\"value\":120,\"system\":\"http://unitsofmeasure.org\",\"code\":"
         "\"mm[Hg]\"}},{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":"
         "\"9999-9\"}]}}]}",
         "entry[3].resource.component[1].code"},
        {"{\"resourceType\":\"MedicationStatement\",\"status\":\"completed\","
         "\"effectiveDateTime\":\"2026-01-01T00:00:00Z\"}",
         "entry[3].resource.medicationCodeableConcept.text"},
        {"[1]", "entry[3].resource"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *r = parse(cases[i].res), *back = NULL;
        fhir_paths_t paths;
        jx_errors_t errs = {.n = 0};
        assert_int_equal(fhir_to_record(r, "entry[3].resource", &back, &paths, &errs), PHR_EINVAL);
        assert_null(back);
        if (!names(&errs, cases[i].field)) {
            fail_msg("case %zu: %s not named (first: %s)", i, cases[i].field,
                     errs.n ? errs.items[0].field : "-");
        }
        json_object_put(r);
    }
}

static char *
drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = calloc(1, n + 1);
    evbuffer_remove(b, s, n);
    return s;
}

static void
test_csv_rows_and_quoting(void **state)
{
    struct evbuffer *b = evbuffer_new();
    json_object *rec = parse("{\"id\":\"r1\",\"type\":\"blood_pressure\",\"measured_at\":\"t\","
                             "\"values\":{\"systolic\":132,\"diastolic\":84},\"note\":"
                             "\"a, \\\"b\\\"\\nc\",\"source\":\"self\"}");

    assert_string_equal(fhir_csv_header,
                        "id,type,measured_at,field,value,unit,loinc,source,note\r\n");
    assert_int_equal(fhir_csv_rows(rec, b), 2);
    char *s = drain(b);
    assert_string_equal(s, "r1,blood_pressure,t,systolic,132,mm[Hg],8480-6,self,\"a, \"\"b\"\"\nc\""
                           "\r\n"
                           "r1,blood_pressure,t,diastolic,84,mm[Hg],8462-4,self,\"a, \"\"b\"\"\nc\""
                           "\r\n");
    free(s);
    json_object_put(rec);

    rec = parse("{\"id\":\"r2\",\"type\":\"medication\",\"measured_at\":\"t\",\"values\":{"
                "\"name\":\"=HYPERLINK(1)\",\"taken\":true},\"note\":null,\"source\":\"self\"}");
    assert_int_equal(fhir_csv_rows(rec, b), 2);
    s = drain(b);
    assert_string_equal(s, "r2,medication,t,name,\"'=HYPERLINK(1)\",,,self,\r\n"
                           "r2,medication,t,taken,true,,,self,\r\n");
    free(s);
    json_object_put(rec);

    rec = parse("{\"id\":\"r3\",\"type\":\"body_temperature\",\"measured_at\":\"t\",\"values\":{"
                "\"value\":36.6},\"source\":\"device\"}");
    assert_int_equal(fhir_csv_rows(rec, b), 1);
    s = drain(b);
    assert_string_equal(s, "r3,body_temperature,t,value,36.6,Cel,8310-5,device,\r\n");
    free(s);
    json_object_put(rec);
    evbuffer_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blood_pressure_panel),
        cmocka_unit_test(test_single_values_round_trip),
        cmocka_unit_test(test_exact_number_text),
        cmocka_unit_test(test_medication_and_note),
        cmocka_unit_test(test_import_alternatives),
        cmocka_unit_test(test_import_errors_name_the_path),
        cmocka_unit_test(test_csv_rows_and_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
