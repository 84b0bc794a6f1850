#include "rectype.h"

#include <string.h>

#define RF_N(name, req, lo, hi, unit, loinc) {name, RF_NUMBER, req, lo, hi, 0, unit, loinc, NULL}
#define RF_I(name, req, lo, hi, unit, loinc) {name, RF_INTEGER, req, lo, hi, 0, unit, loinc, NULL}
#define RF_T(name, req, len) {name, RF_TEXT, req, 0, 0, len, NULL, NULL, NULL}
#define RF_B(name, req) {name, RF_BOOL, req, 0, 0, 0, NULL, NULL, NULL}
#define RF_E(name, req, vals) {name, RF_ENUM, req, 0, 0, 0, NULL, NULL, vals}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const glucose_timing[] = {"fasting", "before_meal", "after_meal", "bedtime",
                                             "random", NULL};

static const rectype_field_t bp_fields[] = {
    RF_I("systolic", 1, 40, 300, "mm[Hg]", "8480-6"),
    RF_I("diastolic", 1, 20, 200, "mm[Hg]", "8462-4"),
    RF_I("pulse", 0, 20, 300, "/min", "8867-4"),
};
static const rectype_field_t pulse_fields[] = {RF_I("value", 1, 20, 300, "/min", "8867-4")};
static const rectype_field_t weight_fields[] = {RF_N("value", 1, 1, 400, "kg", "29463-7")};
static const rectype_field_t glucose_fields[] = {
    RF_N("value", 1, 10, 1000, "mg/dL", "41653-7"),
    RF_E("timing", 1, glucose_timing),
};
static const rectype_field_t hba1c_fields[] = {RF_N("value", 1, 3, 20, "%", "4548-4")};
static const rectype_field_t steps_fields[] = {RF_I("value", 1, 0, 200000, "{steps}", "55423-8")};
static const rectype_field_t temp_fields[] = {RF_N("value", 1, 30, 45, "Cel", "8310-5")};
static const rectype_field_t spo2_fields[] = {RF_N("value", 1, 50, 100, "%", "59408-5")};
static const rectype_field_t medication_fields[] = {
    RF_T("name", 1, 200),
    RF_T("dose", 0, 100),
    RF_B("taken", 1),
};
static const rectype_field_t note_fields[] = {RF_T("text", 1, 4000)};

const rectype_t rectype_table[] = {
    {"blood_pressure", "85354-9", "mm[Hg]", 0, bp_fields, COUNT(bp_fields)},
    {"pulse", "8867-4", "/min", 0, pulse_fields, COUNT(pulse_fields)},
    {"body_weight", "29463-7", "kg", 0, weight_fields, COUNT(weight_fields)},
    {"blood_glucose", "41653-7", "mg/dL", 0, glucose_fields, COUNT(glucose_fields)},
    {"hba1c", "4548-4", "%", 0, hba1c_fields, COUNT(hba1c_fields)},
    {"steps", "55423-8", "{steps}", 1, steps_fields, COUNT(steps_fields)},
    {"body_temperature", "8310-5", "Cel", 0, temp_fields, COUNT(temp_fields)},
    {"spo2", "59408-5", "%", 0, spo2_fields, COUNT(spo2_fields)},
    {"medication", NULL, NULL, 0, medication_fields, COUNT(medication_fields)},
    {"note", NULL, NULL, 0, note_fields, COUNT(note_fields)},
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
