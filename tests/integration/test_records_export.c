/*
 * test_records_export.c - records: export (json, fhir, csv), import, deletion and retention,
 * through the gateway (internal routes straight to the records port with a peer's
 * credential). Counts are compared with the database (psql as phr_records).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define EX_PW "Blue7Harbor!qExport"
#define EX_NOTE "a, \\\"quoted\\\"\\nline"        /* JSON text of: a, "quoted"<LF>line */
#define EX_NOTE_CSV "\"a, \"\"quoted\"\"\nline\"" /* the same as one CSV field */

static long
ex_req(const char *method, const char *path, const char *ctype, const char *body, const char *token,
       it_resp_t *r)
{
    char auth[128], ct[96];
    const char *hdrs[3] = {NULL, NULL, NULL};
    size_t n = 0;
    if (body != NULL) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype != NULL ? ctype : "application/json");
        hdrs[n++] = ct;
    }
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    it_request(IT_GATEWAY_H2, NULL, method, path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

/* POST /api/v1/me/import of |body| with Idempotency-Key |key|. Returns the status. */
static long
ex_import(const char *token, const char *body, const char *key, it_resp_t *r)
{
    char auth[128], idem[128];
    const char *hdrs[4] = {"Content-Type: application/fhir+json", auth, idem, NULL};
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
    it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/me/import", body, strlen(body), hdrs, r);
    return r->status;
}

/* POST /api/v1/me/records; 1 on 201. */
static int
ex_record(const it_patient_t *u, const char *type, const char *at, const char *values,
          const char *note)
{
    char body[1024];
    it_resp_t r;
    snprintf(body, sizeof(body), "{\"type\":\"%s\",\"measured_at\":\"%s\",\"values\":%s%s%s%s}",
             type, at, values, note ? ",\"note\":\"" : "", note ? note : "", note ? "\"" : "");
    long st = ex_req("POST", "/api/v1/me/records", NULL, body, u->token, &r);
    if (st != 201) {
        fprintf(stderr, "  POST record %s: %ld %.300s\n", type, st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st == 201;
}

/* One of every type (13 records), one with a note full of CSV specials. */
static int
ex_seed(const it_patient_t *u)
{
    return ex_record(u, "blood_pressure", "2026-11-20T07:30:00+09:00",
                     "{\"systolic\":132,\"diastolic\":84,\"pulse\":71}", EX_NOTE) &&
           ex_record(u, "blood_pressure", "2026-11-20T21:30:00+09:00",
                     "{\"systolic\":121,\"diastolic\":79}", NULL) &&
           ex_record(u, "pulse", "2026-11-19T08:00:00Z", "{\"value\":64}", NULL) &&
           ex_record(u, "body_weight", "2026-11-19T08:01:00+09:00", "{\"value\":64.5}",
                     "after run") &&
           ex_record(u, "blood_glucose", "2026-11-19T08:02:00+09:00",
                     "{\"value\":108,\"timing\":\"fasting\"}", NULL) &&
           ex_record(u, "hba1c", "2026-11-01T10:00:00+09:00", "{\"value\":6.9}", NULL) &&
           ex_record(u, "steps", "2026-11-18T23:00:00+09:00", "{\"value\":8012}", NULL) &&
           ex_record(u, "body_temperature", "2026-11-18T07:00:00+09:00", "{\"value\":36.6}",
                     NULL) &&
           ex_record(u, "spo2", "2026-11-18T07:01:00+09:00", "{\"value\":98}", NULL) &&
           ex_record(u, "medication", "2026-11-18T07:02:00+09:00",
                     "{\"name\":\"Metformin\",\"dose\":\"500 mg\",\"taken\":true}", NULL) &&
           ex_record(u, "medication", "2026-11-18T19:02:00+09:00",
                     "{\"name\":\"Amlodipine\",\"taken\":false}", "=1+1") &&
           ex_record(u, "note", "2026-11-17T12:00:00+09:00", "{\"text\":\"felt dizzy, then ok\"}",
                     NULL) &&
           ex_record(u, "body_weight", "2026-11-16T08:01:00+09:00", "{\"value\":65}", NULL);
}

/* count(*) of |table| rows of patient |id| in the records database, or -1. */
static long
ex_count(const char *table, const char *id)
{
    char out[64];
    if (it_psql("records", out, sizeof(out), "SELECT count(*) FROM %s WHERE patient_id = '%s'",
                table, id) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

/* GET /api/v1/me/export?format=|fmt|; the parsed body into |*out| (json, fhir). */
static long
ex_export(const it_patient_t *u, const char *fmt, it_resp_t *r, json_object **out)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/me/export?format=%s", fmt);
    long st = ex_req("GET", path, NULL, NULL, u->token, r);
    if (out != NULL) {
        *out = st == 200 && r->body != NULL ? json_tokener_parse(r->body) : NULL;
    }
    return st;
}

static json_object *
ex_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o != NULL && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *
ex_str(json_object *o, const char *key)
{
    json_object *v = ex_get(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* The code of the first coding of concept |key| of |o|. */
static const char *
ex_code(json_object *o, const char *key)
{
    json_object *c = ex_get(ex_get(o, key), "coding");
    return c != NULL ? ex_str(json_object_array_get_idx(c, 0), "code") : "";
}

/* 1 when the 400 answer |r| names |field|. */
static int
ex_names(const it_resp_t *r, const char *field)
{
    json_object *errs = ex_get(r->json, "errors");
    for (size_t i = 0; errs != NULL && i < json_object_array_length(errs); i++) {
        if (strcmp(ex_str(json_object_array_get_idx(errs, i), "field"), field) == 0) {
            return 1;
        }
    }
    fprintf(stderr, "  %s not named: %ld %.400s\n", field, r->status, r->body ? r->body : "");
    return 0;
}

/*
 * Parses CSV |s| (RFC 4180): the number of data rows into |*rows|, and 1 when
 * every row has 9 fields. The first row must be the header.
 */
static int
ex_csv(const char *s, long *rows, long *distinct_ids, const char *want_field)
{
    char ids[4096] = "";
    size_t idlen = 0;
    long nrows = -1, nids = 0;
    int fields = 1, ok = 1, found = want_field == NULL;
    const char *p = s, *fstart = s;
    char cur_id[40] = "";

    while (*p != '\0') {
        if (*p == '"') { /* quoted field */
            p++;
            while (*p != '\0' && !(*p == '"' && p[1] != '"')) {
                p += *p == '"' ? 2 : 1;
            }
            if (*p == '"') {
                p++;
            }
        }
        if (fields == 9 && want_field != NULL && (size_t)(p - fstart) == strlen(want_field) &&
            strncmp(fstart, want_field, strlen(want_field)) == 0) {
            found = 1;
        }
        if (*p == ',') {
            if (fields == 1 && nrows >= 0) {
                snprintf(cur_id, sizeof(cur_id), "%.*s", (int)(p - fstart), fstart);
            }
            fields++;
            p++;
            fstart = p;
            continue;
        }
        if (*p == '\r' && p[1] == '\n') {
            if (fields != 9) {
                ok = 0;
            }
            if (nrows >= 0 && strstr(ids, cur_id) == NULL && idlen + 40 < sizeof(ids)) {
                idlen += (size_t)snprintf(ids + idlen, sizeof(ids) - idlen, "%s;", cur_id);
                nids++;
            }
            nrows++;
            fields = 1;
            p += 2;
            fstart = p;
            continue;
        }
        if (*p != '\0') {
            p++;
        }
    }
    *rows = nrows;
    *distinct_ids = nids;
    return ok && found && fields == 1;
}

static void
test_export_formats_complete(void)
{
    it_patient_t u;
    it_resp_t r;
    json_object *doc;

    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    IT_CHECK(ex_seed(&u));
    long db = ex_count("records", u.id);
    IT_CHECK(db == 13);

    /* json */
    IT_CHECK(ex_export(&u, "json", &r, &doc) == 200);
    IT_CHECK(strstr(it_header(&r, "content-type"), "application/json") != NULL);
    IT_CHECK(strstr(it_header(&r, "content-disposition"), "attachment; filename=") != NULL);
    IT_CHECK(doc != NULL);
    IT_CHECK(strcmp(ex_str(doc, "format"), "phr-export-v1") == 0);
    IT_CHECK(strcmp(ex_str(doc, "account_id"), u.id) == 0);
    IT_CHECK((long)json_object_array_length(ex_get(doc, "records")) == db);
    IT_CHECK(json_object_is_type(ex_get(doc, "links"), json_type_array));
    long values = 0;
    for (long i = 0; i < db; i++) {
        json_object *rec = json_object_array_get_idx(ex_get(doc, "records"), (size_t)i);
        values += json_object_object_length(ex_get(rec, "values"));
        IT_CHECK(strstr(ex_str(rec, "measured_at"), "+09:00") != NULL);
    }
    IT_CHECK(values == 20);
    json_object_put(doc);
    it_resp_free(&r);

    /* fhir */
    IT_CHECK(ex_export(&u, "fhir", &r, &doc) == 200);
    IT_CHECK(strstr(it_header(&r, "content-type"), "application/fhir+json") != NULL);
    IT_CHECK(doc != NULL);
    IT_CHECK(strcmp(ex_str(doc, "resourceType"), "Bundle") == 0);
    IT_CHECK(strcmp(ex_str(doc, "type"), "collection") == 0);
    json_object *entries = ex_get(doc, "entry");
    IT_CHECK((long)json_object_array_length(entries) == db + 1);
    IT_CHECK(
        strcmp(ex_str(ex_get(json_object_array_get_idx(entries, 0), "resource"), "resourceType"),
               "Patient") == 0);
    int panels = 0, meds = 0, quantities = 0;
    for (size_t i = 1; i < json_object_array_length(entries); i++) {
        json_object *res = ex_get(json_object_array_get_idx(entries, i), "resource");
        IT_CHECK(strstr(ex_str(res, "effectiveDateTime"), "+09:00") != NULL);
        IT_CHECK(strcmp(ex_str(ex_get(res, "subject"), "reference"), "") != 0);
        if (strcmp(ex_str(res, "resourceType"), "MedicationStatement") == 0) {
            meds++;
            continue;
        }
        IT_CHECK(strcmp(ex_str(res, "resourceType"), "Observation") == 0);
        json_object *q = ex_get(res, "valueQuantity");
        if (q != NULL) {
            quantities++;
            IT_CHECK(strcmp(ex_str(q, "system"), "http://unitsofmeasure.org") == 0);
            IT_CHECK(
                strcmp(ex_str(json_object_array_get_idx(ex_get(ex_get(res, "code"), "coding"), 0),
                              "system"),
                       "http://loinc.org") == 0);
            const char *code = ex_code(res, "code");
            const char *unit = ex_str(q, "code");
            IT_CHECK((strcmp(code, "29463-7") != 0 || strcmp(unit, "kg") == 0) &&
                     (strcmp(code, "55423-8") != 0 || strcmp(unit, "{steps}") == 0) &&
                     (strcmp(code, "8310-5") != 0 || strcmp(unit, "Cel") == 0) &&
                     (strcmp(code, "8867-4") != 0 || strcmp(unit, "/min") == 0));
        }
        if (strcmp(ex_code(res, "code"), "85354-9") == 0) {
            json_object *comps = ex_get(res, "component");
            IT_CHECK(q == NULL && comps != NULL);
            size_t nc = json_object_array_length(comps);
            IT_CHECK(nc == 2 || nc == 3);
            IT_CHECK(strcmp(ex_code(json_object_array_get_idx(comps, 0), "code"), "8480-6") == 0);
            IT_CHECK(strcmp(ex_code(json_object_array_get_idx(comps, 1), "code"), "8462-4") == 0);
            IT_CHECK(nc == 2 ||
                     strcmp(ex_code(json_object_array_get_idx(comps, 2), "code"), "8867-4") == 0);
            IT_CHECK(
                strcmp(ex_str(ex_get(json_object_array_get_idx(comps, 0), "valueQuantity"), "code"),
                       "mm[Hg]") == 0);
            panels++;
        }
    }
    IT_CHECK(panels == 2 && meds == 2 && quantities == 8);
    json_object_put(doc);
    it_resp_free(&r);

    /* csv: one row per value, the note quoted */
    IT_CHECK(ex_export(&u, "csv", &r, NULL) == 200);
    IT_CHECK(strstr(it_header(&r, "content-type"), "text/csv") != NULL);
    IT_CHECK(r.body != NULL &&
             strncmp(r.body, "id,type,measured_at,field,value,unit,loinc,source,note\r\n", 56) ==
                 0);
    long rows = 0, ids = 0;
    IT_CHECK(ex_csv(r.body, &rows, &ids, EX_NOTE_CSV));
    IT_CHECK(rows == values);
    IT_CHECK(ids == db);
    IT_CHECK(strstr(r.body, ",\"'=1+1\"\r\n") != NULL); /* no formula for spreadsheets */
    it_resp_free(&r);

    /* bad input */
    IT_CHECK(ex_export(&u, "xml", &r, NULL) == 400);
    IT_CHECK(ex_names(&r, "format"));
    it_resp_free(&r);
    IT_CHECK(ex_req("GET", "/api/v1/me/export", NULL, NULL, NULL, &r) == 401);
    it_resp_free(&r);
}

/* The observations of a FHIR export without what differs between accounts. */
static json_object *
ex_observations(json_object *bundle)
{
    json_object *out = json_object_new_array();
    json_object *entries = ex_get(bundle, "entry");
    for (size_t i = 0; entries != NULL && i < json_object_array_length(entries); i++) {
        json_object *res = ex_get(json_object_array_get_idx(entries, i), "resource");
        if (strcmp(ex_str(res, "resourceType"), "Patient") == 0) {
            continue;
        }
        json_object *copy = NULL;
        json_object_deep_copy(res, &copy, NULL);
        json_object_object_del(copy, "id");
        json_object_object_del(copy, "meta");
        json_object_object_del(copy, "subject");
        json_object_object_del(copy, "issued");
        json_object_array_add(out, copy);
    }
    return out;
}

static void
test_export_import_round_trip(void)
{
    it_patient_t a, b;
    it_resp_t r;
    json_object *bundle_a, *bundle_b;
    char out[128];

    IT_CHECK(it_patient("export", EX_PW, 1, &a) && it_patient("export", EX_PW, 1, &b));
    IT_CHECK(ex_seed(&a));
    IT_CHECK(ex_export(&a, "fhir", &r, &bundle_a) == 200 && bundle_a != NULL);
    char *text = strdup(r.body);
    it_resp_free(&r);

    IT_CHECK(ex_import(b.token, text, "round-trip-1", &r) == 200);
    IT_CHECK(r.json != NULL);
    IT_CHECK(json_object_get_int(ex_get(r.json, "imported")) == 13);
    IT_CHECK(json_object_get_int(ex_get(r.json, "skipped")) == 1);
    it_resp_free(&r);
    IT_CHECK(ex_count("records", b.id) == 13);
    /* a retry with the same key imports nothing more; the key with another body is refused */
    IT_CHECK(ex_import(b.token, text, "round-trip-1", &r) == 200);
    IT_CHECK(it_header(&r, "idempotent-replayed") != NULL);
    IT_CHECK(json_object_get_int(ex_get(r.json, "imported")) == 13);
    it_resp_free(&r);
    IT_CHECK(ex_import(b.token,
                       "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[]}",
                       "round-trip-1", &r) == 422);
    IT_CHECK(it_is_problem(&r, 422, "idempotency_key_reused"));
    it_resp_free(&r);
    free(text);
    IT_CHECK(ex_count("records", b.id) == 13);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) FROM records WHERE patient_id = '%s' AND source = 'import'",
                     b.id) == 0 &&
             strcmp(out, "13") == 0);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'records.import' AND body->'target'->>'id' = '%s'",
                     b.id) == 0 &&
             strcmp(out, "1") == 0);

    IT_CHECK(ex_export(&b, "fhir", &r, &bundle_b) == 200 && bundle_b != NULL);
    it_resp_free(&r);
    json_object *oa = ex_observations(bundle_a), *ob = ex_observations(bundle_b);
    int same = strcmp(json_object_to_json_string_ext(oa, JSON_C_TO_STRING_PLAIN),
                      json_object_to_json_string_ext(ob, JSON_C_TO_STRING_PLAIN)) == 0;
    if (!same) {
        fprintf(stderr, "  A: %.600s\n  B: %.600s\n",
                json_object_to_json_string_ext(oa, JSON_C_TO_STRING_PLAIN),
                json_object_to_json_string_ext(ob, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(oa);
    json_object_put(ob);
    json_object_put(bundle_a);
    json_object_put(bundle_b);
    IT_CHECK(same);
}

#define EX_OBS(code, value, unit)                                                                  \
    "{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":"   \
    "[{\"system\":\"http://loinc.org\",\"code\":\"" code "\"}]},\"effectiveDateTime\":"            \
    "\"2026-10-01T08:00:00+09:00\",\"valueQuantity\":{\"value\":" value ",\"system\":"             \
    "\"http://unitsofmeasure.org\",\"code\":\"" unit "\"}}}"

static void
test_import_bad_entries(void)
{
    it_patient_t u;
    it_resp_t r;
    static const char bad_bp[] =
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"x\"}}," EX_OBS(
            "8867-4", "64",
            "/min") "," EX_OBS("29463-7", "64.5",
                               "kg") ","
                                     "{\"resource\":{\"resourceType\":\"Observation\",\"code\":{"
                                     "\"coding\":[{\"system\":"
                                     "\"http://"
                                     "loinc.org\",\"code\":\"85354-9\"}]},\"effectiveDateTime\":"
                                     "\"2026-10-01T08:00:00Z\","
                                     "\"component\":[{\"code\":{\"coding\":[{\"system\":\"http://"
                                     "loinc.org\",\"code\":"
                                     "\"8480-6\"}]},\"valueQuantity\":{\"value\":400,\"system\":"
                                     "\"http://unitsofmeasure.org\","
                                     "\"code\":\"mm[Hg]\"}},{\"code\":{\"coding\":[{\"system\":"
                                     "\"http://loinc.org\",\"code\":"
                                     "\"8462-4\"}]},\"valueQuantity\":{\"value\":80,\"system\":"
                                     "\"http://unitsofmeasure.org\","
                                     "\"code\":\"mm[Hg]\"}}]}}]}";
    static const char bad_code[] = "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":"
                                   "[" EX_OBS("8867-4", "64", "/min") "," EX_OBS(
                                       "1234-5", "1", "kg") "," EX_OBS("8867-4", "64", "kg") "]}";

    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    IT_CHECK(ex_req("POST", "/api/v1/me/import", "application/fhir+json", bad_bp, u.token, &r) ==
             400);
    IT_CHECK(ex_names(&r, "entry[3].resource.component[0].valueQuantity.value"));
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 0);

    IT_CHECK(ex_req("POST", "/api/v1/me/import", NULL, bad_code, u.token, &r) == 400);
    IT_CHECK(ex_names(&r, "entry[1].resource.code"));
    IT_CHECK(ex_names(&r, "entry[2].resource.valueQuantity.code"));
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 0);

    IT_CHECK(ex_req("POST", "/api/v1/me/import", NULL, "{\"resourceType\":\"Patient\"}", u.token,
                    &r) == 400);
    IT_CHECK(ex_names(&r, "resourceType"));
    it_resp_free(&r);
    IT_CHECK(ex_req("POST", "/api/v1/me/import", NULL, "{\"resourceType\":", u.token, &r) == 400);
    it_resp_free(&r);
    IT_CHECK(ex_req("POST", "/api/v1/me/import", "text/plain", "{}", u.token, &r) == 415);
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 0);
}

/* Imports |n| blood pressures a minute apart, then checks the export pages through all. */
static void
test_export_many_pages(void)
{
    it_patient_t u;
    it_resp_t r;
    json_object *doc;
    const int n = 1234;
    size_t cap = (size_t)n * 700 + 256, len = 0;
    char *bundle = malloc(cap);

    IT_CHECK(bundle != NULL);
    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    len += (size_t)snprintf(bundle + len, cap - len,
                            "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[");
    for (int i = 0; i < n; i++) {
        time_t t = 1767225600 - (time_t)(n - i) * 60; /* before 2026-01-01 */
        struct tm tm;
        char at[32];
        gmtime_r(&t, &tm);
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
        len += (size_t)snprintf(
            bundle + len, cap - len,
            "%s{\"resource\":{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":"
            "\"http://loinc.org\",\"code\":\"85354-9\"}]},\"effectiveDateTime\":\"%s\","
            "\"component\":[{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":"
            "\"8480-6\"}]},\"valueQuantity\":{\"value\":%d,\"system\":"
            "\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}},{\"code\":{\"coding\":[{"
            "\"system\":\"http://loinc.org\",\"code\":\"8462-4\"}]},\"valueQuantity\":{\"value\":"
            "80,\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}}]}}",
            i ? "," : "", at, 100 + i % 100);
    }
    len += (size_t)snprintf(bundle + len, cap - len, "]}");
    long st = ex_req("POST", "/api/v1/me/import", NULL, bundle, u.token, &r);
    free(bundle);
    if (st != 200) {
        fprintf(stderr, "  import: %ld %.300s\n", st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    IT_CHECK(st == 200);
    IT_CHECK(ex_count("records", u.id) == n);

    IT_CHECK(ex_export(&u, "json", &r, &doc) == 200 && doc != NULL);
    it_resp_free(&r);
    json_object *recs = ex_get(doc, "records");
    int ok = (int)json_object_array_length(recs) == n;
    for (int i = 1; ok && i < n; i++) { /* oldest first, each once */
        const char *prev = ex_str(json_object_array_get_idx(recs, (size_t)i - 1), "measured_at");
        const char *cur = ex_str(json_object_array_get_idx(recs, (size_t)i), "measured_at");
        ok = strcmp(prev, cur) < 0;
    }
    json_object_put(doc);
    IT_CHECK(ok);

    IT_CHECK(ex_export(&u, "csv", &r, NULL) == 200);
    long rows = 0, ids = 0;
    IT_CHECK(ex_csv(r.body, &rows, &ids, NULL));
    IT_CHECK(rows == 2L * n);
    it_resp_free(&r);
}

/* A link and group/category memberships of |id| (rows the sharing routes would make). */
static int
ex_share_rows(const char *id)
{
    char out[64];
    return it_psql("records", out, sizeof(out),
                   "INSERT INTO links (patient_id, org_id, terms_version) VALUES ('%s', "
                   "gen_random_uuid(), 'v1')",
                   id) == 0 &&
           it_psql("records", out, sizeof(out),
                   "WITH g AS (INSERT INTO groups (id, org_id, name) VALUES (gen_random_uuid(), "
                   "gen_random_uuid(), 'g-' || gen_random_uuid()) RETURNING id) "
                   "INSERT INTO group_members (group_id, patient_id) SELECT id, '%s' FROM g",
                   id) == 0 &&
           it_psql("records", out, sizeof(out),
                   "WITH c AS (INSERT INTO categories (id, org_id, name) VALUES "
                   "(gen_random_uuid(), gen_random_uuid(), 'c-' || gen_random_uuid()) RETURNING "
                   "id) INSERT INTO category_members (category_id, patient_id) SELECT id, '%s' "
                   "FROM c",
                   id) == 0;
}

static void
test_deletion(void)
{
    it_patient_t u;
    it_resp_t r;
    char out[64], body[128];

    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    IT_CHECK(ex_seed(&u));
    IT_CHECK(ex_share_rows(u.id));
    /* a history row: the patient deletes one record */
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT id FROM records WHERE patient_id = '%s' AND type = 'spo2'",
                     u.id) == 0);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/me/records/%s", out);
    IT_CHECK(ex_req("DELETE", path, NULL, NULL, u.token, &r) == 204);
    it_resp_free(&r);
    IT_CHECK(ex_count("record_history", u.id) >= 1);

    IT_CHECK(ex_req("POST", "/api/v1/me/deletion", NULL, "{}", u.token, &r) == 400);
    IT_CHECK(ex_names(&r, "password"));
    it_resp_free(&r);
    IT_CHECK(ex_req("POST", "/api/v1/me/deletion", NULL, "{\"password\":\"Wrong7Password!x\"}",
                    u.token, &r) == 422);
    IT_CHECK(it_is_problem(&r, 422, "invalid_credentials"));
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 12);
    IT_CHECK(ex_count("links", u.id) == 1);

    snprintf(body, sizeof(body), "{\"password\":\"%s\"}", EX_PW);
    IT_CHECK(ex_req("POST", "/api/v1/me/deletion", NULL, body, u.token, &r) == 204);
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 0);
    IT_CHECK(ex_count("record_history", u.id) == 0);
    IT_CHECK(ex_count("links", u.id) == 0);
    IT_CHECK(ex_count("group_members", u.id) == 0);
    IT_CHECK(ex_count("category_members", u.id) == 0);
    IT_CHECK(ex_count("record_idempotency", u.id) == 0);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT body->'details'->>'records' || ' ' || (body->'actor'->>'kind') FROM "
                     "outbox WHERE topic = 'audit' AND body->>'action' = 'records.patient.purge' "
                     "AND body->'target'->>'id' = '%s'",
                     u.id) == 0);
    IT_CHECK(strcmp(out, "12 patient") == 0);
    /* the export is now empty */
    json_object *doc;
    IT_CHECK(ex_export(&u, "json", &r, &doc) == 200 && doc != NULL);
    IT_CHECK(json_object_array_length(ex_get(doc, "records")) == 0);
    json_object_put(doc);
    it_resp_free(&r);
}

/* POST |path| straight to the records service as peer |caller|. */
static long
ex_internal(const char *caller, const char *path, const char *body, const char *idem, it_resp_t *r)
{
    char c1[64], c2[160], key[64], idh[128];
    const char *hdrs[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
    size_t n = 1;
    if (caller != NULL) {
        snprintf(key, sizeof(key), "svc_%s.key", caller);
        snprintf(c1, sizeof(c1), "x-phr-caller: %s", caller);
        snprintf(c2, sizeof(c2), "x-phr-credential: %s", it_secret(key));
        hdrs[n++] = c1;
        hdrs[n++] = c2;
    }
    if (idem != NULL) {
        snprintf(idh, sizeof(idh), "Idempotency-Key: %s", idem);
        hdrs[n++] = idh;
    }
    it_request(IT_DIRECT, "records", "POST", path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

static void
test_withdrawal_and_retention(void)
{
    it_patient_t u;
    it_resp_t r;
    char path[128], out[128], body[128];

    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    IT_CHECK(ex_seed(&u));
    IT_CHECK(ex_share_rows(u.id));
    snprintf(path, sizeof(path), "/internal/v1/patients/%s/withdrawal", u.id);
    snprintf(body, sizeof(body), "{\"withdrawn_at\":\"2026-11-25T10:00:00+09:00\"}");

    /* who may call, and bad input */
    IT_CHECK(ex_internal(NULL, path, body, "w1", &r) == 401);
    it_resp_free(&r);
    IT_CHECK(ex_internal("notification", path, body, "w1", &r) == 403);
    it_resp_free(&r);
    IT_CHECK(ex_internal("auth", path, body, NULL, &r) == 400);
    IT_CHECK(ex_names(&r, "Idempotency-Key"));
    it_resp_free(&r);
    IT_CHECK(ex_internal("auth", "/internal/v1/patients/not-a-uuid/withdrawal", body, "w1", &r) ==
             400);
    IT_CHECK(ex_names(&r, "patient_id"));
    it_resp_free(&r);
    IT_CHECK(ex_internal("auth", path, "{\"withdrawn_at\":\"yesterday\"}", "w1", &r) == 400);
    IT_CHECK(ex_names(&r, "withdrawn_at"));
    it_resp_free(&r);
    IT_CHECK(ex_count("withdrawals", u.id) == 0);

    /* the notice, twice: links end, data kept, one audit event */
    IT_CHECK(ex_internal("auth", path, body, "w1", &r) == 204);
    it_resp_free(&r);
    IT_CHECK(ex_internal("auth", path, body, "w1", &r) == 204);
    it_resp_free(&r);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) FROM links WHERE patient_id = '%s' AND revoked_at IS NULL",
                     u.id) == 0 &&
             strcmp(out, "0") == 0);
    IT_CHECK(ex_count("links", u.id) == 1);
    IT_CHECK(ex_count("records", u.id) == 13);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT extract(day FROM purge_after - withdrawn_at)::int FROM withdrawals "
                     "WHERE patient_id = '%s'",
                     u.id) == 0 &&
             strcmp(out, "30") == 0);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) || ' ' || min(body->'actor'->>'kind') FROM outbox WHERE "
                     "topic = 'audit' AND body->>'action' = 'records.patient.withdrawal' AND "
                     "body->'target'->>'id' = '%s'",
                     u.id) == 0 &&
             strcmp(out, "1 service") == 0);

    /* not due yet: the retention run keeps the data */
    IT_CHECK(ex_internal("auth", "/internal/v1/retention/run", NULL, NULL, &r) == 403);
    it_resp_free(&r);
    IT_CHECK(ex_internal("records", "/internal/v1/retention/run", NULL, NULL, &r) == 200);
    IT_CHECK(r.json != NULL && ex_get(r.json, "patients_purged") != NULL &&
             ex_get(r.json, "records_purged") != NULL &&
             ex_get(r.json, "invitations_purged") != NULL);
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 13);

    /* due: purged */
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "UPDATE withdrawals SET purge_after = now() - interval '1 minute' WHERE "
                     "patient_id = '%s'",
                     u.id) == 0);
    IT_CHECK(ex_internal("records", "/internal/v1/retention/run", NULL, NULL, &r) == 200);
    IT_CHECK(json_object_get_int(ex_get(r.json, "patients_purged")) >= 1);
    IT_CHECK(json_object_get_int(ex_get(r.json, "records_purged")) >= 13);
    it_resp_free(&r);
    IT_CHECK(ex_count("records", u.id) == 0);
    IT_CHECK(ex_count("links", u.id) == 0);
    IT_CHECK(ex_count("group_members", u.id) == 0);
    IT_CHECK(ex_count("category_members", u.id) == 0);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT purged_at IS NOT NULL FROM withdrawals WHERE patient_id = '%s'",
                     u.id) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT (body->'details'->>'reason') || ' ' || (body->'actor'->>'kind') FROM "
                     "outbox WHERE topic = 'audit' AND body->>'action' = 'records.patient.purge' "
                     "AND body->'target'->>'id' = '%s'",
                     u.id) == 0 &&
             strcmp(out, "retention service") == 0);
    /* a late duplicate notice changes nothing */
    IT_CHECK(ex_internal("auth", path, body, "w2", &r) == 204);
    it_resp_free(&r);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) FROM withdrawals WHERE patient_id = '%s' AND purged_at IS "
                     "NULL",
                     u.id) == 0 &&
             strcmp(out, "0") == 0);
}

/* A withdrawal at auth reaches records through auth's outbox: the links end, the purge is due later. */
static void
test_withdrawal_from_auth(void)
{
    it_patient_t u;
    it_resp_t r;
    char out[128], body[128];

    IT_CHECK(it_patient("export", EX_PW, 1, &u));
    IT_CHECK(ex_seed(&u));
    IT_CHECK(ex_share_rows(u.id));
    snprintf(body, sizeof(body), "{\"password\":\"%s\"}", EX_PW);
    IT_CHECK(ex_req("POST", "/api/v1/auth/withdraw", NULL, body, u.token, &r) == 204);
    it_resp_free(&r);
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        seen = ex_count("withdrawals", u.id) == 1;
        if (!seen) {
            usleep(100 * 1000);
        }
    }
    IT_CHECK(seen);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT count(*) FROM links WHERE patient_id = '%s' AND revoked_at IS NULL",
                     u.id) == 0 &&
             strcmp(out, "0") == 0);
    IT_CHECK(ex_count("records", u.id) == 13);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'records' AND sent_at IS NOT NULL "
                     "AND body->>'patient_id' = '%s'",
                     u.id) == 0 &&
             strcmp(out, "1") == 0);
}

const it_case_t records_export_cases[] = {
    {"records_export_formats_complete", test_export_formats_complete},
    {"records_export_import_round_trip", test_export_import_round_trip},
    {"records_import_bad_entries", test_import_bad_entries},
    {"records_export_many_pages", test_export_many_pages},
    {"records_deletion", test_deletion},
    {"records_withdrawal_and_retention", test_withdrawal_and_retention},
    {"records_withdrawal_from_auth", test_withdrawal_from_auth},
    {NULL, NULL},
};
