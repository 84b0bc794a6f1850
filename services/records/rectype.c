#include "rectype.h"

#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const glucose_timing[] = {"fasting", "before_meal", "after_meal",
                                             "bedtime", "random",      NULL};

static const char *const glucose_alt_loinc[] = {"41653-7", NULL};

static const rectype_field_t bp_fields[] = {
    {.name = "systolic",
     .kind = RF_INTEGER,
     .required = 1,
     .min = 40,
     .max = 300,
     .unit = "mm[Hg]",
     .loinc = "8480-6"},
    {.name = "diastolic",
     .kind = RF_INTEGER,
     .required = 1,
     .min = 20,
     .max = 200,
     .unit = "mm[Hg]",
     .loinc = "8462-4"},
    {.name = "pulse",
     .kind = RF_INTEGER,
     .required = 0,
     .min = 20,
     .max = 300,
     .unit = "/min",
     .loinc = "8867-4"},
};
static const rectype_field_t pulse_fields[] = {{.name = "value",
                                                .kind = RF_INTEGER,
                                                .required = 1,
                                                .min = 20,
                                                .max = 300,
                                                .unit = "/min",
                                                .loinc = "8867-4"}};
static const rectype_field_t weight_fields[] = {{.name = "value",
                                                 .kind = RF_NUMBER,
                                                 .required = 1,
                                                 .min = 1,
                                                 .max = 400,
                                                 .unit = "kg",
                                                 .loinc = "29463-7"}};
static const rectype_field_t glucose_fields[] = {
    {.name = "value",
     .kind = RF_NUMBER,
     .required = 1,
     .min = 10,
     .max = 1000,
     .unit = "mg/dL",
     .loinc = "2339-0"},
    {.name = "timing", .kind = RF_ENUM, .required = 1, .enum_vals = glucose_timing},
};
static const rectype_field_t hba1c_fields[] = {{.name = "value",
                                                .kind = RF_NUMBER,
                                                .required = 1,
                                                .min = 3,
                                                .max = 20,
                                                .unit = "%",
                                                .loinc = "4548-4"}};
static const rectype_field_t steps_fields[] = {{.name = "value",
                                                .kind = RF_INTEGER,
                                                .required = 1,
                                                .min = 0,
                                                .max = 200000,
                                                .unit = "{steps}",
                                                .loinc = "55423-8"}};
static const rectype_field_t temp_fields[] = {{.name = "value",
                                               .kind = RF_NUMBER,
                                               .required = 1,
                                               .min = 30,
                                               .max = 45,
                                               .unit = "Cel",
                                               .loinc = "8310-5"}};
static const rectype_field_t spo2_fields[] = {{.name = "value",
                                               .kind = RF_NUMBER,
                                               .required = 1,
                                               .min = 50,
                                               .max = 100,
                                               .unit = "%",
                                               .loinc = "59408-5"}};
static const rectype_field_t medication_fields[] = {
    {.name = "name", .kind = RF_TEXT, .required = 1, .max_len = 200},
    {.name = "dose", .kind = RF_TEXT, .required = 0, .max_len = 100},
    {.name = "taken", .kind = RF_BOOL, .required = 1},
};
static const rectype_field_t note_fields[] = {
    {.name = "text", .kind = RF_TEXT, .required = 1, .max_len = 4000}};

const rectype_t rectype_table[] = {
    {"blood_pressure", "85354-9", "mm[Hg]", 0, bp_fields, COUNT(bp_fields), NULL},
    {"pulse", "8867-4", "/min", 0, pulse_fields, COUNT(pulse_fields), NULL},
    {"body_weight", "29463-7", "kg", 0, weight_fields, COUNT(weight_fields), NULL},
    {"blood_glucose", "2339-0", "mg/dL", 0, glucose_fields, COUNT(glucose_fields),
     glucose_alt_loinc},
    {"hba1c", "4548-4", "%", 0, hba1c_fields, COUNT(hba1c_fields), NULL},
    {"steps", "55423-8", "{steps}", 1, steps_fields, COUNT(steps_fields), NULL},
    {"body_temperature", "8310-5", "Cel", 0, temp_fields, COUNT(temp_fields), NULL},
    {"spo2", "59408-5", "%", 0, spo2_fields, COUNT(spo2_fields), NULL},
    {"medication", NULL, NULL, 0, medication_fields, COUNT(medication_fields), NULL},
    {"note", NULL, NULL, 0, note_fields, COUNT(note_fields), NULL},
};
const size_t rectype_count = COUNT(rectype_table);

const rectype_t *
rectype_find(const char *name)
{
    for (size_t i = 0; i < rectype_count; i++) {
        if (strcmp(rectype_table[i].type, name) == 0) {
            return &rectype_table[i];
        }
    }
    return NULL;
}

const rectype_field_t *
rectype_field(const rectype_t *t, const char *name)
{
    for (size_t i = 0; i < t->nfields; i++) {
        if (strcmp(t->fields[i].name, name) == 0) {
            return &t->fields[i];
        }
    }
    return NULL;
}
