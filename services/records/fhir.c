/*
 * fhir.c - FHIR R4 and CSV forms of a record (see fhir.h).
 */
#include "fhir.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "rectype.h"

#define FHIR_SYS_CATEGORY "http://terminology.hl7.org/CodeSystem/observation-category"

typedef struct {
    const char *code, *display;
} fhir_display_t;

static const fhir_display_t fhir_loinc_names[] = {
    {"85354-9", "Blood pressure panel with all children optional"},
    {"8480-6", "Systolic blood pressure"},
    {"8462-4", "Diastolic blood pressure"},
    {"8867-4", "Heart rate"},
    {"29463-7", "Body weight"},
    {"2339-0", "Glucose [Mass/volume] in Blood"},
    {"41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer"},
    {"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"},
    {"55423-8", "Number of steps in unspecified time Pedometer"},
    {"8310-5", "Body temperature"},
    {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"},
};

static const char *
fhir_loinc_display(const char *code)
{
    for (size_t i = 0; i < sizeof(fhir_loinc_names) / sizeof(fhir_loinc_names[0]); i++) {
        if (strcmp(fhir_loinc_names[i].code, code) == 0) {
            return fhir_loinc_names[i].display;
        }
    }
    return NULL;
}

static const char *
fhir_category(const char *type)
{
    static const char *const vital[] = {"blood_pressure",   "pulse", "body_weight",
                                        "body_temperature", "spo2",  NULL};
    for (const char *const *v = vital; *v != NULL; v++) {
        if (strcmp(*v, type) == 0) {
            return "vital-signs";
        }
    }
    if (strcmp(type, "blood_glucose") == 0 || strcmp(type, "hba1c") == 0) {
        return "laboratory";
    }
    if (strcmp(type, "steps") == 0) {
        return "activity";
    }
    return NULL;
}

/* Human-readable unit of UCUM code |code|. */
static const char *
fhir_unit_text(const char *code)
{
    if (strcmp(code, "mm[Hg]") == 0) {
        return "mmHg";
    }
    if (strcmp(code, "/min") == 0) {
        return "beats/minute";
    }
    if (strcmp(code, "{steps}") == 0) {
        return "steps";
    }
    if (strcmp(code, "Cel") == 0) {
        return "Cel";
    }
    return code;
}

/* ---- export -------------------------------------------------------------- */

static json_object *
fhir_str(const char *s)
{
    return s != NULL ? json_object_new_string(s) : NULL;
}

/* A copy of number |v| that prints as written (no 36.600000000000001). */
static json_object *
fhir_number(const json_object *v)
{
    char buf[32];

    if (json_object_is_type(v, json_type_int)) {
        return json_object_new_int64(json_object_get_int64(v));
    }
    double d = json_object_get_double(v);
    snprintf(buf, sizeof(buf), "%.15g", d);
    return json_object_new_double_s(d, buf);
}

static json_object *
fhir_coding(const char *system, const char *code, const char *display)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "system", json_object_new_string(system));
    json_object_object_add(c, "code", json_object_new_string(code));
    if (display != NULL) {
        json_object_object_add(c, "display", json_object_new_string(display));
    }
    return c;
}

static json_object *
fhir_concept(const char *system, const char *code, const char *display, const char *text)
{
    json_object *cc = json_object_new_object();
    json_object *codings = json_object_new_array();

    json_object_array_add(codings, fhir_coding(system, code, display));
    json_object_object_add(cc, "coding", codings);
    if (text != NULL) {
        json_object_object_add(cc, "text", json_object_new_string(text));
    }
    return cc;
}

static json_object *
fhir_quantity(const json_object *v, const char *ucum)
{
    json_object *q = json_object_new_object();

    json_object_object_add(q, "value", fhir_number(v));
    json_object_object_add(q, "unit", json_object_new_string(fhir_unit_text(ucum)));
    json_object_object_add(q, "system", json_object_new_string(FHIR_SYS_UCUM));
    json_object_object_add(q, "code", json_object_new_string(ucum));
    return q;
}

static json_object *
fhir_reference(const char *id)
{
    char ref[64];
    json_object *o = json_object_new_object();

    snprintf(ref, sizeof(ref), "urn:uuid:%s", id != NULL ? id : "");
    json_object_object_add(o, "reference", json_object_new_string(ref));
    return o;
}

/* The members every resource starts with: resourceType, id, meta.tag (source). */
static json_object *
fhir_resource_head(const char *rtype, const json_object *rec)
{
    json_object *o = json_object_new_object();
    json_object *meta = json_object_new_object();
    json_object *tags = json_object_new_array();
    const char *source = jx_get_str(rec, "source", NULL);

    json_object_object_add(o, "resourceType", json_object_new_string(rtype));
    json_object_object_add(o, "id", fhir_str(jx_get_str(rec, "id", NULL)));
    if (source != NULL) {
        json_object_array_add(tags, fhir_coding(FHIR_SYS_SOURCE, source, NULL));
    }
    json_object_object_add(meta, "tag", tags);
    json_object_object_add(o, "meta", meta);
    return o;
}

static void
fhir_add_note(json_object *o, const json_object *rec)
{
    const char *note = jx_get_str(rec, "note", NULL);

    if (note != NULL) {
        json_object *arr = json_object_new_array();
        json_object *a = json_object_new_object();
        json_object_object_add(a, "text", json_object_new_string(note));
        json_object_array_add(arr, a);
        json_object_object_add(o, "note", arr);
    }
}

static json_object *
fhir_medication(const json_object *rec, const json_object *values, const char *patient_id)
{
    json_object *o = fhir_resource_head("MedicationStatement", rec);
    json_object *med = json_object_new_object();
    json_object *taken = NULL;
    const char *dose = jx_get_str(values, "dose", NULL);

    json_object_object_get_ex(values, "taken", &taken);
    json_object_object_add(
        o, "status",
        json_object_new_string(json_object_get_boolean(taken) ? "completed" : "not-taken"));
    json_object_object_add(med, "text", fhir_str(jx_get_str(values, "name", "")));
    json_object_object_add(o, "medicationCodeableConcept", med);
    json_object_object_add(o, "subject", fhir_reference(patient_id));
    json_object_object_add(o, "effectiveDateTime", fhir_str(jx_get_str(rec, "measured_at", NULL)));
    if (dose != NULL) {
        json_object *dosage = json_object_new_array();
        json_object *d = json_object_new_object();
        json_object_object_add(d, "text", json_object_new_string(dose));
        json_object_array_add(dosage, d);
        json_object_object_add(o, "dosage", dosage);
    }
    fhir_add_note(o, rec);
    return o;
}

json_object *
fhir_resource(const json_object *rec, const char *patient_id)
{
    const char *type = jx_get_str(rec, "type", NULL);
    const rectype_t *t = type != NULL ? rectype_find(type) : NULL;
    json_object *values = NULL;

    if (t == NULL || !json_object_object_get_ex(rec, "values", &values) ||
        !json_object_is_type(values, json_type_object)) {
        return NULL;
    }
    if (strcmp(type, "medication") == 0) {
        return fhir_medication(rec, values, patient_id);
    }
    json_object *o = fhir_resource_head("Observation", rec);
    const char *timing = jx_get_str(values, "timing", NULL);
    if (timing != NULL) {
        json_object *exts = json_object_new_array();
        json_object *e = json_object_new_object();
        json_object_object_add(e, "url", json_object_new_string(FHIR_EXT_GLUCOSE_TIMING));
        json_object_object_add(e, "valueCode", json_object_new_string(timing));
        json_object_array_add(exts, e);
        json_object_object_add(o, "extension", exts);
    }
    json_object_object_add(o, "status", json_object_new_string("final"));
    const char *cat = fhir_category(type);
    if (cat != NULL) {
        json_object *cats = json_object_new_array();
        json_object_array_add(cats, fhir_concept(FHIR_SYS_CATEGORY, cat, NULL, NULL));
        json_object_object_add(o, "category", cats);
    }
    if (t->loinc != NULL) {
        json_object_object_add(
            o, "code", fhir_concept(FHIR_SYS_LOINC, t->loinc, fhir_loinc_display(t->loinc), NULL));
    } else {
        json_object_object_add(o, "code", fhir_concept(FHIR_SYS_RECORD_TYPE, type, type, type));
    }
    json_object_object_add(o, "subject", fhir_reference(patient_id));
    json_object_object_add(o, "effectiveDateTime", fhir_str(jx_get_str(rec, "measured_at", NULL)));
    const char *issued = jx_get_str(rec, "created_at", NULL);
    if (issued != NULL) {
        json_object_object_add(o, "issued", json_object_new_string(issued));
    }
    if (strcmp(type, "note") == 0) {
        json_object_object_add(o, "valueString", fhir_str(jx_get_str(values, "text", "")));
        fhir_add_note(o, rec);
        return o;
    }
    json_object *comps = strcmp(type, "blood_pressure") == 0 ? json_object_new_array() : NULL;
    for (size_t i = 0; i < t->nfields; i++) {
        const rectype_field_t *f = &t->fields[i];
        json_object *v = NULL;
        if ((f->kind != RF_NUMBER && f->kind != RF_INTEGER) ||
            !json_object_object_get_ex(values, f->name, &v) || v == NULL) {
            continue;
        }
        if (comps == NULL) {
            json_object_object_add(o, "valueQuantity", fhir_quantity(v, f->unit));
            continue;
        }
        json_object *c = json_object_new_object();
        json_object_object_add(
            c, "code", fhir_concept(FHIR_SYS_LOINC, f->loinc, fhir_loinc_display(f->loinc), NULL));
        json_object_object_add(c, "valueQuantity", fhir_quantity(v, f->unit));
        json_object_array_add(comps, c);
    }
    fhir_add_note(o, rec);
    if (comps != NULL) {
        json_object_object_add(o, "component", comps);
    }
    return o;
}

json_object *
fhir_patient(const char *account_id)
{
    json_object *o = json_object_new_object();
    json_object *ids = json_object_new_array();
    json_object *id = json_object_new_object();

    json_object_object_add(o, "resourceType", json_object_new_string("Patient"));
    json_object_object_add(o, "id", json_object_new_string(account_id));
    json_object_object_add(id, "system", json_object_new_string(FHIR_SYS_ACCOUNT));
    json_object_object_add(id, "value", json_object_new_string(account_id));
    json_object_array_add(ids, id);
    json_object_object_add(o, "identifier", ids);
    json_object_object_add(o, "active", json_object_new_boolean(1));
    return o;
}

json_object *
fhir_entry(const char *id, json_object *resource)
{
    char url[64];
    json_object *e = json_object_new_object();

    snprintf(url, sizeof(url), "urn:uuid:%s", id != NULL ? id : "");
    json_object_object_add(e, "fullUrl", json_object_new_string(url));
    json_object_object_add(e, "resource", resource);
    return e;
}

/* ---- import -------------------------------------------------------------- */

typedef struct {
    const json_object *res;
    const char *base;
    fhir_paths_t *paths;
    jx_errors_t *errs;
    size_t nerr0;
} fhir_in_t;

static void fhir_bad(fhir_in_t *in, const char *rel, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fhir_bad(fhir_in_t *in, const char *rel, const char *fmt, ...)
{
    char field[64], msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(field, sizeof(field), "%s%s%s", in->base, rel[0] != '\0' ? "." : "", rel);
    jx_error_add(in->errs, field, "%s", msg);
}

static void
fhir_note_path(fhir_in_t *in, const char *api, const char *rel)
{
    fhir_paths_t *p = in->paths;

    if (p->n < FHIR_PATHS_MAX) {
        snprintf(p->items[p->n].api, sizeof(p->items[p->n].api), "%s", api);
        snprintf(p->items[p->n].fhir, sizeof(p->items[p->n].fhir), "%s.%s", in->base, rel);
        p->n++;
    }
}

const char *
fhir_path_of(const fhir_paths_t *paths, const char *api)
{
    for (size_t i = 0; i < paths->n; i++) {
        if (strcmp(paths->items[i].api, api) == 0) {
            return paths->items[i].fhir;
        }
    }
    return paths->base;
}

static const json_object *
fhir_member(const json_object *o, const char *key)
{
    json_object *v = NULL;

    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v;
}

/* The code of the first coding of concept |cc| in |system|, or NULL. */
static const char *
fhir_code_in(const json_object *cc, const char *system)
{
    const json_object *codings = fhir_member(cc, "coding");

    if (codings == NULL || !json_object_is_type(codings, json_type_array)) {
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(codings); i++) {
        const json_object *c = json_object_array_get_idx(codings, i);
        const char *sys = jx_get_str(c, "system", NULL);
        if (sys != NULL && strcmp(sys, system) == 0) {
            return jx_get_str(c, "code", NULL);
        }
    }
    return NULL;
}

/* The record type of LOINC |code| (panel or single value), or NULL. */
static const rectype_t *
fhir_type_of_loinc(const char *code)
{
    if (strcmp(code, "55284-4") == 0) {
        return rectype_find("blood_pressure");
    }
    for (size_t i = 0; i < rectype_count; i++) {
        const rectype_t *t = &rectype_table[i];
        if (t->loinc != NULL && strcmp(t->loinc, code) == 0) {
            return t;
        }
        for (const char *const *a = t->alt_loinc; a != NULL && *a != NULL; a++) {
            if (strcmp(*a, code) == 0) {
                return t;
            }
        }
    }
    return NULL;
}

/*
 * Converts a quantity in UCUM |code| to |want| (the field's unit). Returns 1
 * with |*v| converted, 0 when the units do not convert.
 */
static int
fhir_convert(const char *code, const char *want, double *v)
{
    if (strcmp(code, want) == 0) {
        return 1;
    }
    if (strcmp(want, "kg") == 0 && strcmp(code, "g") == 0) {
        *v /= 1000.0;
        return 1;
    }
    if (strcmp(want, "kg") == 0 && strcmp(code, "[lb_av]") == 0) {
        *v *= 0.45359237;
        return 1;
    }
    if (strcmp(want, "mg/dL") == 0 && strcmp(code, "mmol/L") == 0) {
        *v *= 18.016;
        return 1;
    }
    if (strcmp(want, "Cel") == 0 && strcmp(code, "[degF]") == 0) {
        *v = (*v - 32.0) * 5.0 / 9.0;
        return 1;
    }
    if (strcmp(want, "/min") == 0 && strcmp(code, "{beats}/min") == 0) {
        return 1;
    }
    return 0;
}

/*
 * Reads valueQuantity |q| (at |rel|) for field |f| into |values|. Returns 1
 * when it was added, 0 after an error.
 */
static int
fhir_read_quantity(fhir_in_t *in, const json_object *q, const char *rel, const rectype_field_t *f,
                   json_object *values)
{
    char path[64], api[32];
    const json_object *v = fhir_member(q, "value");
    const char *sys = jx_get_str(q, "system", NULL);
    const char *code = jx_get_str(q, "code", NULL);

    if (q == NULL || !json_object_is_type(q, json_type_object)) {
        fhir_bad(in, rel, "a Quantity is required");
        return 0;
    }
    snprintf(path, sizeof(path), "%s.value", rel);
    if (v == NULL ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))) {
        fhir_bad(in, path, "a number is required");
        return 0;
    }
    snprintf(path, sizeof(path), "%s.code", rel);
    double d = json_object_get_double(v);
    if (sys == NULL || strcmp(sys, FHIR_SYS_UCUM) != 0 || code == NULL ||
        !fhir_convert(code, f->unit, &d)) {
        fhir_bad(in, path, "a UCUM (" FHIR_SYS_UCUM ") unit convertible to %s is required",
                 f->unit);
        return 0;
    }
    snprintf(api, sizeof(api), "values.%s", f->name);
    snprintf(path, sizeof(path), "%s.value", rel);
    fhir_note_path(in, api, path);
    if (f->kind == RF_INTEGER) {
        if (d != floor(d) && strcmp(code, f->unit) == 0) {
            fhir_bad(in, path, "a whole number is required");
            return 0;
        }
        json_object_object_add(values, f->name, json_object_new_int64((int64_t)llround(d)));
    } else {
        char buf[32];
        if (strcmp(code, f->unit) != 0) {
            d = round(d * 100.0) / 100.0;
        }
        snprintf(buf, sizeof(buf), "%.15g", d);
        json_object_object_add(values, f->name, json_object_new_double_s(d, buf));
    }
    return 1;
}

static const rectype_field_t *
fhir_field_of_loinc(const rectype_t *t, const char *code)
{
    for (size_t i = 0; i < t->nfields; i++) {
        if (t->fields[i].loinc != NULL && strcmp(t->fields[i].loinc, code) == 0) {
            return &t->fields[i];
        }
    }
    return NULL;
}

static void
fhir_read_components(fhir_in_t *in, const rectype_t *t, json_object *values)
{
    const json_object *comps = fhir_member(in->res, "component");
    char rel[48];

    if (comps == NULL || !json_object_is_type(comps, json_type_array)) {
        fhir_bad(in, "component", "the blood pressure components are required");
        return;
    }
    for (size_t i = 0; i < json_object_array_length(comps) && i < 100; i++) {
        const json_object *c = json_object_array_get_idx(comps, i);
        const char *code = fhir_code_in(fhir_member(c, "code"), FHIR_SYS_LOINC);
        const rectype_field_t *f = code != NULL ? fhir_field_of_loinc(t, code) : NULL;
        if (f == NULL) {
            snprintf(rel, sizeof(rel), "component[%zu].code", i);
            fhir_bad(in, rel, "a LOINC code of a blood pressure component is required");
            continue;
        }
        if (fhir_member(values, f->name) != NULL) {
            snprintf(rel, sizeof(rel), "component[%zu].code", i);
            fhir_bad(in, rel, "component %s appears twice", f->loinc);
            continue;
        }
        snprintf(rel, sizeof(rel), "component[%zu].valueQuantity", i);
        fhir_read_quantity(in, fhir_member(c, "valueQuantity"), rel, f, values);
    }
}

/* measured_at from effectiveDateTime (or effectiveInstant). */
static void
fhir_read_effective(fhir_in_t *in, json_object *rec)
{
    const char *rel = "effectiveDateTime";
    const char *at = jx_get_str(in->res, rel, NULL);

    if (at == NULL && jx_get_str(in->res, "effectiveInstant", NULL) != NULL) {
        rel = "effectiveInstant";
        at = jx_get_str(in->res, rel, NULL);
    }
    if (at == NULL) {
        fhir_bad(in, "effectiveDateTime", "the time of the measurement is required");
        return;
    }
    fhir_note_path(in, "measured_at", rel);
    json_object_object_add(rec, "measured_at", json_object_new_string(at));
}

static void
fhir_read_note(fhir_in_t *in, json_object *rec)
{
    const json_object *notes = fhir_member(in->res, "note");

    if (notes == NULL) {
        return;
    }
    const json_object *first =
        json_object_is_type(notes, json_type_array) && json_object_array_length(notes) > 0
            ? json_object_array_get_idx(notes, 0)
            : NULL;
    const char *text = jx_get_str(first, "text", NULL);
    if (text == NULL) {
        fhir_bad(in, "note", "an array of annotations with text is required");
        return;
    }
    fhir_note_path(in, "note", "note[0].text");
    json_object_object_add(rec, "note", json_object_new_string(text));
}

static void
fhir_read_medication(fhir_in_t *in, json_object *rec, json_object *values)
{
    const json_object *med = fhir_member(in->res, "medicationCodeableConcept");
    const char *name = jx_get_str(med, "text", NULL);
    const char *status = jx_get_str(in->res, "status", NULL);
    const json_object *dosage = fhir_member(in->res, "dosage");

    if (name == NULL) {
        const json_object *codings = fhir_member(med, "coding");
        if (codings != NULL && json_object_is_type(codings, json_type_array) &&
            json_object_array_length(codings) > 0) {
            name = jx_get_str(json_object_array_get_idx(codings, 0), "display", NULL);
        }
    }
    if (name == NULL) {
        fhir_bad(in, "medicationCodeableConcept.text", "the medication's name is required");
    } else {
        fhir_note_path(in, "values.name", "medicationCodeableConcept.text");
        json_object_object_add(values, "name", json_object_new_string(name));
    }
    if (dosage != NULL && json_object_is_type(dosage, json_type_array) &&
        json_object_array_length(dosage) > 0) {
        const char *dose = jx_get_str(json_object_array_get_idx(dosage, 0), "text", NULL);
        if (dose != NULL) {
            fhir_note_path(in, "values.dose", "dosage[0].text");
            json_object_object_add(values, "dose", json_object_new_string(dose));
        }
    }
    if (status == NULL) {
        fhir_bad(in, "status", "the statement's status is required");
        return;
    }
    fhir_note_path(in, "values.taken", "status");
    json_object_object_add(values, "taken",
                           json_object_new_boolean(strcmp(status, "not-taken") != 0));
    json_object_object_add(rec, "type", json_object_new_string("medication"));
}

/* Observation: the type from its code, values from value[x] or components. */
static void
fhir_read_observation(fhir_in_t *in, json_object *rec, json_object *values)
{
    const json_object *code = fhir_member(in->res, "code");
    const char *loinc = fhir_code_in(code, FHIR_SYS_LOINC);
    const char *own = fhir_code_in(code, FHIR_SYS_RECORD_TYPE);
    const rectype_t *t = loinc != NULL ? fhir_type_of_loinc(loinc) : NULL;

    if (t == NULL && own != NULL && strcmp(own, "note") == 0) {
        const char *text = jx_get_str(in->res, "valueString", NULL);
        json_object_object_add(rec, "type", json_object_new_string("note"));
        if (text == NULL) {
            fhir_bad(in, "valueString", "the note's text is required");
            return;
        }
        fhir_note_path(in, "values.text", "valueString");
        json_object_object_add(values, "text", json_object_new_string(text));
        return;
    }
    if (t == NULL) {
        fhir_bad(in, "code",
                 "a LOINC (" FHIR_SYS_LOINC ") code of a supported record type is required");
        return;
    }
    fhir_note_path(in, "type", "code");
    json_object_object_add(rec, "type", json_object_new_string(t->type));
    if (strcmp(t->type, "blood_pressure") == 0) {
        fhir_read_components(in, t, values);
        return;
    }
    fhir_read_quantity(in, fhir_member(in->res, "valueQuantity"), "valueQuantity", &t->fields[0],
                       values);
    if (strcmp(t->type, "blood_glucose") == 0) {
        const char *timing = "random";
        const json_object *exts = fhir_member(in->res, "extension");
        for (size_t i = 0; exts != NULL && json_object_is_type(exts, json_type_array) &&
                           i < json_object_array_length(exts);
             i++) {
            const json_object *e = json_object_array_get_idx(exts, i);
            const char *url = jx_get_str(e, "url", NULL);
            if (url != NULL && strcmp(url, FHIR_EXT_GLUCOSE_TIMING) == 0) {
                timing = jx_get_str(e, "valueCode", "");
                fhir_note_path(in, "values.timing", "extension.valueCode");
            }
        }
        json_object_object_add(values, "timing", json_object_new_string(timing));
    }
}

int
fhir_to_record(const json_object *res, const char *base, json_object **out, fhir_paths_t *paths,
               jx_errors_t *errs)
{
    const char *rtype = jx_get_str(res, "resourceType", NULL);

    *out = NULL;
    memset(paths, 0, sizeof(*paths));
    snprintf(paths->base, sizeof(paths->base), "%s", base);
    fhir_in_t in = {res, base, paths, errs, errs->n};
    if (res == NULL || !json_object_is_type(res, json_type_object)) {
        fhir_bad(&in, "", "a resource object is required");
        return PHR_EINVAL;
    }
    if (rtype != NULL && strcmp(rtype, "Patient") == 0) {
        return PHR_ENOTFOUND;
    }
    json_object *rec = json_object_new_object();
    json_object *values = json_object_new_object();
    if (rtype != NULL && strcmp(rtype, "Observation") == 0) {
        fhir_read_observation(&in, rec, values);
    } else if (rtype != NULL && strcmp(rtype, "MedicationStatement") == 0) {
        fhir_read_medication(&in, rec, values);
    } else {
        fhir_bad(&in, "resourceType", "Patient, Observation or MedicationStatement is expected");
    }
    if (errs->n == in.nerr0) {
        fhir_read_effective(&in, rec);
        json_object_object_add(rec, "values", values);
        values = NULL;
        fhir_read_note(&in, rec);
    }
    json_object_put(values);
    if (errs->n != in.nerr0) {
        json_object_put(rec);
        return PHR_EINVAL;
    }
    *out = rec;
    return PHR_OK;
}

/* ---- CSV ----------------------------------------------------------------- */

const char fhir_csv_header[] = "id,type,measured_at,field,value,unit,loinc,source,note\r\n";

int
fhir_csv_field(struct evbuffer *out, const char *s, int text)
{
    int rc = 0;

    if (s == NULL) {
        return 0;
    }
    int formula = text && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' ||
                           s[0] == '\t' || s[0] == '\r');
    if (!formula && strpbrk(s, ",\"\r\n") == NULL) {
        return evbuffer_add(out, s, strlen(s));
    }
    rc |= evbuffer_add(out, formula ? "\"'" : "\"", formula ? 2 : 1);
    for (const char *p = s; *p != '\0';) {
        const char *q = strchr(p, '"');
        size_t n = q != NULL ? (size_t)(q - p) + 1 : strlen(p);
        rc |= evbuffer_add(out, p, n);
        if (q != NULL) {
            rc |= evbuffer_add(out, "\"", 1);
        }
        p += n;
    }
    rc |= evbuffer_add(out, "\"", 1);
    return rc != 0 ? -1 : 0;
}

/* The text of value |name| of |values| in a CSV cell. */
static const char *
fhir_csv_value(const json_object *values, const char *name, char *buf, size_t cap)
{
    const json_object *v = fhir_member(values, name);

    if (json_object_is_type(v, json_type_int)) {
        snprintf(buf, cap, "%lld", (long long)json_object_get_int64(v));
    } else if (json_object_is_type(v, json_type_double)) {
        snprintf(buf, cap, "%.15g", json_object_get_double(v));
    } else if (json_object_is_type(v, json_type_boolean)) {
        snprintf(buf, cap, "%s", json_object_get_boolean(v) ? "true" : "false");
    } else {
        return jx_get_str(values, name, "");
    }
    return buf;
}

int
fhir_csv_rows(const json_object *rec, struct evbuffer *out)
{
    const char *type = jx_get_str(rec, "type", NULL);
    const rectype_t *t = type != NULL ? rectype_find(type) : NULL;
    const json_object *values = fhir_member(rec, "values");
    int rows = 0, rc = 0;
    char buf[32];

    if (t == NULL || values == NULL) {
        return 0;
    }
    for (size_t i = 0; i < t->nfields; i++) {
        const rectype_field_t *f = &t->fields[i];
        const json_object *v = fhir_member(values, f->name);
        if (v == NULL) {
            continue;
        }
        rc |= fhir_csv_field(out, jx_get_str(rec, "id", ""), 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, type, 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, jx_get_str(rec, "measured_at", ""), 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, f->name, 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, fhir_csv_value(values, f->name, buf, sizeof(buf)),
                             f->kind == RF_TEXT);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, f->unit != NULL ? f->unit : "", 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, f->loinc != NULL ? f->loinc : "", 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, jx_get_str(rec, "source", ""), 0);
        rc |= evbuffer_add(out, ",", 1);
        rc |= fhir_csv_field(out, jx_get_str(rec, "note", ""), 1);
        rc |= evbuffer_add(out, "\r\n", 2);
        rows++;
    }
    return rc != 0 ? -1 : rows;
}
