/*
 * fhir.h - the records' outside formats: FHIR R4 resources (export and
 * import) and CSV rows, both mapped from and to the API record JSON
 * (proto/records.yaml Record: type, measured_at, values, note, source, ...).
 *
 * FHIR mapping (one table: rectype.c's LOINC codes and UCUM units):
 *   - measurements are Observations (status final) with a LOINC coding
 *     (http://loinc.org) and a UCUM valueQuantity (http://unitsofmeasure.org);
 *     blood pressure is one 85354-9 panel with components 8480-6, 8462-4 and
 *     8867-4 (pulse, when present); blood glucose's timing travels as the
 *     extension FHIR_EXT_GLUCOSE_TIMING (valueCode);
 *   - note is an Observation coded FHIR_SYS_RECORD_TYPE#note with valueString;
 *   - medication is a MedicationStatement (status completed, or not-taken
 *     when taken is false; medicationCodeableConcept.text = name;
 *     dosage[0].text = dose);
 *   - effectiveDateTime is measured_at in +09:00; the record's note is
 *     note[0].text; the source is meta.tag FHIR_SYS_SOURCE; the resource id is
 *     the record id and subject references the Patient entry (urn:uuid:<id>).
 * Import accepts what export writes, plus the usual alternatives (the types'
 * alternative LOINC codes, the 55284-4 blood pressure panel, g/[lb_av] weights, mmol/L glucose,
 * [degF] temperatures, effectiveInstant).
 */
#ifndef PHR_RECORDS_FHIR_H
#define PHR_RECORDS_FHIR_H

#include <event2/buffer.h>
#include <json-c/json.h>

#include "jsonx.h"

#define FHIR_SYS_LOINC "http://loinc.org"
#define FHIR_SYS_UCUM "http://unitsofmeasure.org"
#define FHIR_SYS_RECORD_TYPE "urn:phr:fhir:record-type"
#define FHIR_SYS_SOURCE "urn:phr:fhir:source"
#define FHIR_SYS_ACCOUNT "urn:phr:fhir:account-id"
#define FHIR_EXT_GLUCOSE_TIMING "urn:phr:fhir:glucose-timing"

/* The Patient resource of account |account_id|. */
json_object *fhir_patient(const char *account_id);

/*
 * The resource of API record |rec| (Observation or MedicationStatement),
 * subject "urn:uuid:<patient_id>". NULL when |rec| has an unknown type.
 */
json_object *fhir_resource(const json_object *rec, const char *patient_id);

/* A Bundle entry {fullUrl: "urn:uuid:<id>", resource}; takes |resource|. */
json_object *fhir_entry(const char *id, json_object *resource);

/* Where each API field of an imported record came from (to name FHIR paths in errors). */
#define FHIR_PATHS_MAX 8
typedef struct {
    struct {
        char api[32];  /* "measured_at", "values.systolic", "note", ... */
        char fhir[64]; /* "entry[3].resource.component[0].valueQuantity.value" */
    } items[FHIR_PATHS_MAX];
    size_t n;
    char base[32]; /* "entry[3].resource" */
} fhir_paths_t;

/*
 * Maps the resource of one Bundle entry back to an API record body
 * ({type, measured_at, values, note?}) into |*out| (caller puts it).
 * |base| ("entry[3].resource") prefixes field names in errors. Returns
 * PHR_OK, PHR_ENOTFOUND for resources an import skips (Patient), or
 * PHR_EINVAL with errors appended to |errs|.
 */
int fhir_to_record(const json_object *res, const char *base, json_object **out, fhir_paths_t *paths,
                   jx_errors_t *errs);

/*
 * The FHIR path of API field |api| ("values.systolic") recorded by
 * fhir_to_record; paths->base when it is not known.
 */
const char *fhir_path_of(const fhir_paths_t *paths, const char *api);

/* ---- CSV (RFC 4180, CRLF line ends) ---- */

/* The header row. */
extern const char fhir_csv_header[];

/*
 * Appends the rows of API record |rec| to |out|: one per value, in the
 * order of the type's fields. Text that a spreadsheet would run as a
 * formula (starting with = + - @ tab or CR) is prefixed with '.
 * Returns the number of rows, or -1 on allocation failure.
 */
int fhir_csv_rows(const json_object *rec, struct evbuffer *out);

/* Appends |s| as one CSV field (quoted when needed). Returns 0, -1 on allocation failure. */
int fhir_csv_field(struct evbuffer *out, const char *s, int text);

#endif
