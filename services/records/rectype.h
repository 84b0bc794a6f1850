/*
 * rectype.h - the record types patients and clinics may store: one table of
 * types, LOINC codes, UCUM units, fields and plausible ranges.
 */
#ifndef PHR_RECTYPE_H
#define PHR_RECTYPE_H

#include <stddef.h>

typedef enum { RF_NUMBER, RF_INTEGER, RF_TEXT, RF_BOOL, RF_ENUM } rectype_kind_t;

typedef struct {
    const char *name;
    rectype_kind_t kind;
    int required;
    double min, max;              /* numbers */
    size_t max_len;               /* text, in characters */
    const char *unit;             /* UCUM, NULL when none */
    const char *loinc;            /* component code, NULL when none */
    const char *const *enum_vals; /* RF_ENUM, NULL-terminated */
} rectype_field_t;

typedef struct {
    const char *type;  /* "blood_pressure", ... */
    const char *loinc; /* the type's (panel) code, NULL for non-measurements */
    const char *unit;  /* the main UCUM unit, NULL when none */
    int one_per_day;   /* a second entry on the same JST day replaces the first */
    const rectype_field_t *fields;
    size_t nfields;
    const char *const *alt_loinc; /* other accepted codes, NULL-terminated; NULL when none */
} rectype_t;

extern const rectype_t rectype_table[];
extern const size_t rectype_count;

/* The type named |name|, or NULL. */
const rectype_t *rectype_find(const char *name);

/* The field named |name| of |t|, or NULL. */
const rectype_field_t *rectype_field(const rectype_t *t, const char *name);

#endif
