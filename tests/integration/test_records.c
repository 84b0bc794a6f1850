/*
 * test_records.c - records: patient record CRUD, history, idempotency, list, summary, staff
 * record routes, encryption at rest. Everything goes through the gateway (HTTP/2); the
 * records database is inspected with psql/pg_dump as phr_records. Links of patients to an
 * org are written with psql (the links table is the sharing module's; created here when the
 * sharing migration is not in yet).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define REC_PW "Blue7Harbor!qLong"

static long
rec_req(const char *method, const char *path, const char *body, const char *token,
        const char *extra, it_resp_t *r)
{
    char auth[128];
    const char *hdrs[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    if (body != NULL) {
        hdrs[n++] = "Content-Type: application/json";
    }
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    if (extra != NULL) {
        hdrs[n++] = extra;
    }
    it_request(IT_GATEWAY_H2, NULL, method, path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

/* POSTs a record; its id into |id| (37 bytes, may be NULL). Returns the status. */
static long
rec_post(const char *token, const char *body, char *id)
{
    it_resp_t r;
    long st = rec_req("POST", "/api/v1/me/records", body, token, NULL, &r);
    if (st == 201 && id != NULL) {
        snprintf(id, 37, "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    }
    if (st != 201) {
        fprintf(stderr, "  POST %.200s: %ld %.300s\n", body, st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st;
}

static long rec_count(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long
rec_count(const char *fmt, ...)
{
    char out[64], sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (it_psql("records", out, sizeof(out), "%s", sql) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

static double
rec_num(json_object *o, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(o, a, &x)) {
        return NAN;
    }
    if (b == NULL) {
        return json_object_get_double(x);
    }
    return json_object_object_get_ex(x, b, &y) ? json_object_get_double(y) : NAN;
}

/* ---- validation ---------------------------------------------------------------- */

static void
test_types_valid_and_ranges(void)
{
    it_patient_t p;
    static const struct {
        const char *ok, *bad, *field;
    } cases[] = {
        {"{\"type\":\"blood_pressure\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"systolic\":132,\"diastolic\":84,\"pulse\":71}}",
         "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"systolic\":301,\"diastolic\":84}}",
         "values.systolic"},
        {"{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\",\"values\":{\"value\":60}}",
         "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\",\"values\":{\"value\":19}}",
         "values.value"},
        {"{\"type\":\"body_weight\",\"measured_at\":\"2026-01-05T07:30:00+01:00\","
         "\"values\":{\"value\":64.5}}",
         "{\"type\":\"body_weight\",\"measured_at\":\"2026-01-05T07:30:00+01:00\","
         "\"values\":{\"value\":400.5}}",
         "values.value"},
        {"{\"type\":\"blood_glucose\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"value\":98,\"timing\":\"fasting\"}}",
         "{\"type\":\"blood_glucose\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"value\":98,\"timing\":\"lunch\"}}",
         "values.timing"},
        {"{\"type\":\"blood_glucose\",\"measured_at\":\"2026-01-05T08:30:00+09:00\","
         "\"values\":{\"value\":1000,\"timing\":\"random\"}}",
         "{\"type\":\"blood_glucose\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"value\":9,\"timing\":\"random\"}}",
         "values.value"},
        {"{\"type\":\"hba1c\",\"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{\"value\":"
         "6.9}}",
         "{\"type\":\"hba1c\",\"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{\"value\":"
         "25}}",
         "values.value"},
        {"{\"type\":\"steps\",\"measured_at\":\"2026-01-05T21:00:00+09:00\",\"values\":{\"value\":"
         "8000}}",
         "{\"type\":\"steps\",\"measured_at\":\"2026-01-05T21:00:00+09:00\",\"values\":{\"value\":"
         "1.5}}",
         "values.value"},
        {"{\"type\":\"body_temperature\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"value\":36.6}}",
         "{\"type\":\"body_temperature\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"value\":46}}",
         "values.value"},
        {"{\"type\":\"spo2\",\"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{\"value\":"
         "97}}",
         "{\"type\":\"spo2\",\"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{\"value\":"
         "101}}",
         "values.value"},
        {"{\"type\":\"medication\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"name\":\"メトホルミン\",\"dose\":\"500mg\",\"taken\":true}}",
         "{\"type\":\"medication\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"name\":\"x\",\"taken\":\"yes\"}}",
         "values.taken"},
        {"{\"type\":\"note\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
         "\"values\":{\"text\":\"朝食後に散歩\"}}",
         "{\"type\":\"note\",\"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{}}",
         "values.text"},
    };
    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        IT_CHECK(rec_post(p.token, cases[i].ok, NULL) == 201);
        IT_CHECK(
            it_gw_names_field("POST", "/api/v1/me/records", cases[i].bad, p.token, cases[i].field));
    }
    /* every type landed, nothing from the rejected ones */
    IT_CHECK(rec_count("SELECT count(*) FROM records WHERE patient_id = '%s'", p.id) == 11);
    /* the answer: JST times, values, source */
    it_resp_t r;
    IT_CHECK(rec_req("POST", "/api/v1/me/records",
                     "{\"type\":\"body_weight\",\"measured_at\":\"2026-01-05T00:30:00Z\","
                     "\"values\":{\"value\":70.25},\"note\":\"n\",\"source\":\"device\"}",
                     p.token, NULL, &r) == 201);
    int shape = it_json_str(&r, "measured_at") != NULL &&
                strcmp(it_json_str(&r, "measured_at"), "2026-01-05T09:30:00.000+09:00") == 0 &&
                rec_num(r.json, "values", "value") == 70.25 &&
                strcmp(it_json_str(&r, "source"), "device") == 0 &&
                strcmp(it_json_str(&r, "note"), "n") == 0 &&
                strcmp(it_json_str(&r, "patient_id"), p.id) == 0 &&
                strstr(it_json_str(&r, "created_at"), "+09:00") != NULL &&
                it_header(&r, "location") != NULL;
    it_resp_free(&r);
    IT_CHECK(shape);
}

static void
test_bad_inputs(void)
{
    it_patient_t p;
    char body[4096], note[1100];
    const char *path = "/api/v1/me/records";

    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"weight\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                               "\"values\":{\"value\":60}}",
                               p.token, "type"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                               "\"values\":{\"value\":60},\"color\":\"red\"}",
                               p.token, "color"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                               "\"values\":{\"value\":60,\"bpm\":3}}",
                               p.token, "values.bpm"));
    IT_CHECK(
        it_gw_names_field("POST", path,
                          "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                          "\"values\":{\"diastolic\":80}}",
                          p.token, "values.systolic"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05 07:30\","
                               "\"values\":{\"value\":60}}",
                               p.token, "measured_at"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2026-02-30T07:30:00Z\","
                               "\"values\":{\"value\":60}}",
                               p.token, "measured_at"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2099-01-05T07:30:00Z\","
                               "\"values\":{\"value\":60}}",
                               p.token, "measured_at"));
    IT_CHECK(it_gw_names_field("POST", path, "{\"type\":\"pulse\",\"values\":{\"value\":60}}",
                               p.token, "measured_at"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                               "\"values\":{\"value\":60},\"source\":\"clinic\"}",
                               p.token, "source"));
    memset(note, 'a', 1001);
    note[1001] = '\0';
    snprintf(body, sizeof(body),
             "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
             "\"values\":{\"value\":60},\"note\":\"%s\"}",
             note);
    IT_CHECK(it_gw_names_field("POST", path, body, p.token, "note"));
    /* 1000 characters of Japanese (3 bytes each) are fine */
    size_t o = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(body + o, "\xe3\x81\x82", 3); /* あ */
        o += 3;
    }
    body[o] = '\0';
    char big[4300];
    snprintf(big, sizeof(big),
             "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
             "\"values\":{\"value\":60},\"note\":\"%s\"}",
             body);
    IT_CHECK(rec_post(p.token, big, NULL) == 201);
    /* invalid UTF-8 in a string */
    IT_CHECK(it_gw_problem("POST", path,
                           "{\"type\":\"note\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                           "\"values\":{\"text\":\"\xff\xfe\"}}",
                           p.token, 400, "invalid_json"));
    IT_CHECK(it_gw_problem("POST", path, "{\"type\":", p.token, 400, "invalid_json"));
    /* a measurement 23 hours ahead is accepted (clock skew, time zones), 25 hours is not */
    char ahead[40];
    time_t t = time(NULL) + 23 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ahead, sizeof(ahead), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body),
             "{\"type\":\"pulse\",\"measured_at\":\"%s\",\"values\":{\"value\":60}}", ahead);
    IT_CHECK(rec_post(p.token, body, NULL) == 201);
    t += 2 * 3600;
    gmtime_r(&t, &tm);
    strftime(ahead, sizeof(ahead), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body),
             "{\"type\":\"pulse\",\"measured_at\":\"%s\",\"values\":{\"value\":60}}", ahead);
    IT_CHECK(it_gw_names_field("POST", path, body, p.token, "measured_at"));
    IT_CHECK(rec_count("SELECT count(*) FROM records WHERE patient_id = '%s'", p.id) == 2);
    IT_CHECK(it_gw_problem("GET", "/api/v1/me/records?limit=0", NULL, p.token, 400,
                           "validation_failed"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records?limit=201", NULL, p.token, "limit"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records?type=bogus", NULL, p.token, "type"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records?from=yesterday", NULL, p.token, "from"));
    IT_CHECK(it_gw_status("GET", "/api/v1/me/records/not-a-uuid", NULL, p.token) == 404);
    IT_CHECK(it_gw_status("GET", "/api/v1/me/records", NULL, NULL) == 401);
    /* nothing partially written by any of these */
    IT_CHECK(rec_count("SELECT count(*) FROM record_history WHERE patient_id = '%s'", p.id) == 0);
}

/* ---- CRUD, history, audit --------------------------------------------------------- */

static void
test_crud_history(void)
{
    it_patient_t p, q;
    char id[37], path[128], out[256];
    it_resp_t r;

    IT_CHECK(it_patient("rec", REC_PW, 1, &p) && it_patient("rec", REC_PW, 1, &q));
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-01-10T07:30:00+09:00\","
                      "\"values\":{\"systolic\":140,\"diastolic\":90},\"note\":\"before\"}",
                      id) == 201);
    snprintf(path, sizeof(path), "/api/v1/me/records/%s", id);
    IT_CHECK(rec_req("GET", path, NULL, p.token, NULL, &r) == 200);
    int ok = rec_num(r.json, "values", "systolic") == 140 && strcmp(it_json_str(&r, "id"), id) == 0;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* another patient: 404 for read, edit and delete */
    IT_CHECK(it_gw_problem("GET", path, NULL, q.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("PATCH", path, "{\"note\":\"x\"}", q.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", path, NULL, q.token, 404, "not_found"));
    /* PATCH: validation against the stored type */
    IT_CHECK(it_gw_names_field("PATCH", path, "{\"values\":{\"systolic\":20,\"diastolic\":80}}",
                               p.token, "values.systolic"));
    IT_CHECK(it_gw_names_field("PATCH", path, "{\"colour\":1}", p.token, "colour"));
    IT_CHECK(it_gw_problem("PATCH", path, "{}", p.token, 400, "validation_failed"));
    IT_CHECK(rec_count("SELECT count(*) FROM record_history WHERE record_id = '%s'", id) == 0);
    /* PATCH values and note: history keeps the previous version */
    IT_CHECK(rec_req("PATCH", path,
                     "{\"values\":{\"systolic\":128,\"diastolic\":82,\"pulse\":66},\"note\":null}",
                     p.token, NULL, &r) == 200);
    ok = rec_num(r.json, "values", "systolic") == 128 && rec_num(r.json, "values", "pulse") == 66 &&
         json_object_object_get_ex(r.json, "note", NULL) && it_json_str(&r, "note") == NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "SELECT h.change || ',' || h.version || ',' || h.changed_by || ',' || "
                     "r.version FROM record_history h JOIN records r ON r.id = h.record_id "
                     "WHERE h.record_id = '%s'",
                     id) == 0);
    char want[160];
    snprintf(want, sizeof(want), "update,1,%s,2", p.id);
    IT_CHECK(strcmp(out, want) == 0);
    IT_CHECK(rec_req("GET", path, NULL, p.token, NULL, &r) == 200);
    ok = rec_num(r.json, "values", "diastolic") == 82 && it_json_str(&r, "note") == NULL;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* measured_at moves */
    IT_CHECK(rec_req("PATCH", path, "{\"measured_at\":\"2026-01-09T23:00:00Z\"}", p.token, NULL,
                     &r) == 200);
    ok = strcmp(it_json_str(&r, "measured_at"), "2026-01-10T08:00:00.000+09:00") == 0 &&
         rec_num(r.json, "values", "systolic") == 128;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* audit events of the writes, in the outbox, without values */
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                       "body->>'action' = 'records.update' AND body->'target'->>'id' = '%s'",
                       id) == 2);
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                       "body->>'action' = 'records.create' AND body->'target'->>'id' = '%s' "
                       "AND body->'target'->>'patient_id' IS NOT NULL",
                       id) == 1);
    /* DELETE */
    IT_CHECK(it_gw_status("DELETE", path, NULL, p.token) == 204);
    IT_CHECK(it_gw_problem("GET", path, NULL, p.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", path, NULL, p.token, 404, "not_found"));
    IT_CHECK(rec_count("SELECT count(*) FROM record_history WHERE record_id = '%s'", id) == 3);
    IT_CHECK(rec_count("SELECT count(*) FROM record_history WHERE record_id = '%s' AND "
                       "change = 'delete' AND version = 3",
                       id) == 1);
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                       "body->>'action' = 'records.delete' AND body->'target'->>'id' = '%s'",
                       id) == 1);
    /* reads of one's own records are not audited */
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE body->>'action' = 'records.read' AND "
                       "body->'target'->>'patient_id' = '%s'",
                       p.id) == 0);
}

static void
test_idempotency(void)
{
    it_patient_t p, q;
    const char *b1 = "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                     "\"values\":{\"value\":61}}";
    const char *b2 = "{\"type\":\"pulse\",\"measured_at\":\"2026-01-05T07:30:00Z\","
                     "\"values\":{\"value\":62}}";
    it_resp_t r;
    char id1[37] = "", id2[37] = "";

    IT_CHECK(it_patient("rec", REC_PW, 1, &p) && it_patient("rec", REC_PW, 1, &q));
    IT_CHECK(rec_req("POST", "/api/v1/me/records", b1, p.token, "Idempotency-Key: k-1", &r) == 201);
    snprintf(id1, sizeof(id1), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    it_resp_free(&r);
    IT_CHECK(rec_req("POST", "/api/v1/me/records", b1, p.token, "Idempotency-Key: k-1", &r) == 201);
    snprintf(id2, sizeof(id2), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    int ok = rec_num(r.json, "values", "value") == 61 && it_header(&r, "location") != NULL;
    it_resp_free(&r);
    IT_CHECK(ok && id1[0] != '\0' && strcmp(id1, id2) == 0);
    IT_CHECK(rec_req("POST", "/api/v1/me/records", b2, p.token, "Idempotency-Key: k-1", &r) == 422);
    ok = it_is_problem(&r, 422, "idempotency_key_reused");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(rec_count("SELECT count(*) FROM records WHERE patient_id = '%s'", p.id) == 1);
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE body->>'action' = 'records.create' AND "
                       "body->'target'->>'patient_id' = '%s'",
                       p.id) == 1);
    /* keys are per caller: another patient's k-1 is a new record */
    IT_CHECK(rec_req("POST", "/api/v1/me/records", b1, q.token, "Idempotency-Key: k-1", &r) == 201);
    ok = it_json_str(&r, "id") != NULL && strcmp(it_json_str(&r, "id"), id1) != 0;
    it_resp_free(&r);
    IT_CHECK(ok);
    /* a malformed key */
    IT_CHECK(rec_req("POST", "/api/v1/me/records", b1, p.token, "Idempotency-Key: a b", &r) == 400);
    it_resp_free(&r);
    IT_CHECK(rec_count("SELECT count(*) FROM record_idempotency WHERE account_id = '%s'", p.id) ==
             1);
}

/* ---- list ------------------------------------------------------------------------- */

static void
test_keyset_pages(void)
{
    it_patient_t p;
    char body[256], ids[30][37], path[700], cursor[600];
    int seen[30] = {0};

    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    /* 25 records, several sharing a timestamp (ties broken by id) */
    for (int i = 0; i < 25; i++) {
        snprintf(body, sizeof(body),
                 "{\"type\":\"%s\",\"measured_at\":\"2026-01-%02dT07:%02d:00+09:00\","
                 "\"values\":{\"value\":%d}}",
                 i % 2 ? "pulse" : "body_weight", 1 + i / 3, (i % 3) == 2 ? 0 : 30, 60 + i);
        IT_CHECK(rec_post(p.token, body, ids[i]) == 201);
    }
    cursor[0] = '\0';
    int total = 0, pages = 0;
    char prev_t[40] = "9999", prev_id[37] = "";
    for (;;) {
        it_resp_t r;
        json_object *items, *nc;
        snprintf(path, sizeof(path), "/api/v1/me/records?limit=4%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        IT_CHECK(rec_req("GET", path, NULL, p.token, NULL, &r) == 200);
        int ok = json_object_object_get_ex(r.json, "items", &items) &&
                 json_object_object_get_ex(r.json, "next_cursor", &nc);
        for (size_t i = 0; ok && i < json_object_array_length(items); i++) {
            json_object *it = json_object_array_get_idx(items, i), *v;
            json_object_object_get_ex(it, "id", &v);
            const char *id = json_object_get_string(v);
            json_object_object_get_ex(it, "measured_at", &v);
            const char *t = json_object_get_string(v);
            /* newest first; equal times by id descending */
            int cmp = strcmp(t, prev_t);
            if (cmp > 0 || (cmp == 0 && strcmp(id, prev_id) >= 0)) {
                ok = 0;
            }
            snprintf(prev_t, sizeof(prev_t), "%s", t);
            snprintf(prev_id, sizeof(prev_id), "%s", id);
            for (int k = 0; k < 25; k++) {
                if (strcmp(ids[k], id) == 0) {
                    seen[k]++;
                }
            }
            total++;
        }
        int more = ok && json_object_get_type(nc) == json_type_string;
        if (more) {
            snprintf(cursor, sizeof(cursor), "%s", json_object_get_string(nc));
        }
        it_resp_free(&r);
        IT_CHECK(ok);
        pages++;
        IT_CHECK(pages < 20);
        if (!more) {
            break;
        }
    }
    IT_CHECK(total == 25 && pages == 7);
    for (int k = 0; k < 25; k++) {
        IT_CHECK(seen[k] == 1);
    }
    /* filters: type, from (inclusive), to (exclusive) */
    it_resp_t r;
    json_object *items;
    IT_CHECK(rec_req("GET", "/api/v1/me/records?type=pulse&limit=200", NULL, p.token, NULL, &r) ==
             200);
    int n = json_object_object_get_ex(r.json, "items", &items)
                ? (int)json_object_array_length(items)
                : -1;
    it_resp_free(&r);
    IT_CHECK(n == 12);
    IT_CHECK(rec_req("GET",
                     "/api/v1/me/records?from=2026-01-02T07:00:00%2B09:00"
                     "&to=2026-01-03T07:00:00%2B09:00",
                     NULL, p.token, NULL, &r) == 200);
    n = json_object_object_get_ex(r.json, "items", &items) ? (int)json_object_array_length(items)
                                                           : -1;
    it_resp_free(&r);
    IT_CHECK(n == 3);
    /* a tampered cursor: one character changed, or garbage */
    IT_CHECK(rec_req("GET", "/api/v1/me/records?limit=4", NULL, p.token, NULL, &r) == 200);
    snprintf(cursor, sizeof(cursor), "%s", it_json_str(&r, "next_cursor"));
    it_resp_free(&r);
    char orig = cursor[5];
    cursor[5] = orig == 'A' ? 'B' : 'A';
    snprintf(path, sizeof(path), "/api/v1/me/records?limit=4&cursor=%s", cursor);
    IT_CHECK(it_gw_names_field("GET", path, NULL, p.token, "cursor"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records?cursor=abc", NULL, p.token, "cursor"));
    /* another patient's cursor does not work here */
    it_patient_t q;
    IT_CHECK(it_patient("rec", REC_PW, 1, &q));
    cursor[5] = orig;
    snprintf(path, sizeof(path), "/api/v1/me/records?limit=4&cursor=%s", cursor);
    IT_CHECK(it_gw_status("GET", path, NULL, p.token) == 200);
    IT_CHECK(it_gw_names_field("GET", path, NULL, q.token, "cursor"));
}

static void
test_steps_per_day(void)
{
    it_patient_t p;
    it_resp_t r;
    json_object *items;
    char id1[37], id2[37];

    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    /* 2026-01-20 00:30 JST is 2026-01-19 in UTC; 23:00 JST the same JST day */
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"steps\",\"measured_at\":\"2026-01-20T00:30:00+09:00\","
                      "\"values\":{\"value\":1000}}",
                      id1) == 201);
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"steps\",\"measured_at\":\"2026-01-20T14:00:00Z\","
                      "\"values\":{\"value\":9000}}",
                      id2) == 201);
    IT_CHECK(rec_req("GET", "/api/v1/me/records?type=steps", NULL, p.token, NULL, &r) == 200);
    int ok = json_object_object_get_ex(r.json, "items", &items) &&
             json_object_array_length(items) == 1 &&
             rec_num(json_object_array_get_idx(items, 0), "values", "value") == 9000;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(rec_count("SELECT count(*) FROM record_history WHERE record_id = '%s' AND "
                       "change = 'replace'",
                       id1) == 1);
    /* the next JST day (15:00 UTC = 00:00 JST) is another day */
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"steps\",\"measured_at\":\"2026-01-20T15:00:00Z\","
                      "\"values\":{\"value\":500}}",
                      NULL) == 201);
    IT_CHECK(rec_count("SELECT count(*) FROM records WHERE patient_id = '%s'", p.id) == 2);
}

/* ---- summary ------------------------------------------------------------------------ */

static void
test_summary(void)
{
    it_patient_t p;
    it_resp_t r;
    json_object *items, *b;
    static const char *const bp[] = {
        /* JST day 2026-01-12 (Monday): 120/80, 140/90 (the second 23:30 UTC of the 11th) */
        "\"2026-01-12T07:00:00+09:00\",\"values\":{\"systolic\":120,\"diastolic\":80,\"pulse\":60}",
        "\"2026-01-11T23:30:00Z\",\"values\":{\"systolic\":140,\"diastolic\":90}",
        /* 2026-01-14: 130/85 */
        "\"2026-01-14T21:00:00+09:00\",\"values\":{\"systolic\":130,\"diastolic\":85}",
        /* 2026-01-19 (next week): 110/70 */
        "\"2026-01-19T07:00:00+09:00\",\"values\":{\"systolic\":110,\"diastolic\":70}",
        /* 2026-02-01 (next month; a Sunday, so still the week of 01-26) */
        "\"2026-02-01T07:00:00+09:00\",\"values\":{\"systolic\":150,\"diastolic\":95}",
    };
    char body[256];

    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    for (size_t i = 0; i < sizeof(bp) / sizeof(bp[0]); i++) {
        snprintf(body, sizeof(body), "{\"type\":\"blood_pressure\",\"measured_at\":%s}", bp[i]);
        IT_CHECK(rec_post(p.token, body, NULL) == 201);
    }
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"pulse\",\"measured_at\":\"2026-01-12T07:00:00+09:00\","
                      "\"values\":{\"value\":99}}",
                      NULL) == 201);
    /* day */
    IT_CHECK(rec_req("GET", "/api/v1/me/records/summary?type=blood_pressure", NULL, p.token, NULL,
                     &r) == 200);
    int ok =
        json_object_object_get_ex(r.json, "items", &items) && json_object_array_length(items) == 4;
    if (ok) {
        b = json_object_array_get_idx(items, 0);
        json_object *vals, *sys, *pul;
        ok = strcmp(json_object_get_string(json_object_object_get(b, "start")),
                    "2026-01-12T00:00:00.000+09:00") == 0 &&
             rec_num(b, "count", NULL) == 2 && json_object_object_get_ex(b, "values", &vals) &&
             json_object_object_get_ex(vals, "systolic", &sys) &&
             rec_num(sys, "min", NULL) == 120 && rec_num(sys, "max", NULL) == 140 &&
             rec_num(sys, "mean", NULL) == 130 && rec_num(vals, "diastolic", "mean") == 85 &&
             json_object_object_get_ex(vals, "pulse", &pul) && rec_num(pul, "mean", NULL) == 60 &&
             strcmp(it_json_str(&r, "bucket"), "day") == 0;
        b = json_object_array_get_idx(items, 3);
        ok = ok && rec_num(b, "count", NULL) == 1 &&
             strcmp(json_object_get_string(json_object_object_get(b, "start")),
                    "2026-02-01T00:00:00.000+09:00") == 0;
    }
    if (!ok) {
        fprintf(stderr, "  day summary: %.600s\n", r.body);
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    /* week (Monday) */
    IT_CHECK(rec_req("GET", "/api/v1/me/records/summary?type=blood_pressure&bucket=week", NULL,
                     p.token, NULL, &r) == 200);
    ok = json_object_object_get_ex(r.json, "items", &items) && json_object_array_length(items) == 3;
    if (ok) {
        b = json_object_array_get_idx(items, 0);
        ok = rec_num(b, "count", NULL) == 3;
        json_object *vals;
        json_object_object_get_ex(b, "values", &vals);
        ok = ok && rec_num(vals, "systolic", "mean") == 130 &&
             rec_num(vals, "diastolic", "max") == 90;
        b = json_object_array_get_idx(items, 2);
        ok = ok && strcmp(json_object_get_string(json_object_object_get(b, "start")),
                          "2026-01-26T00:00:00.000+09:00") == 0;
    }
    if (!ok) {
        fprintf(stderr, "  week summary: %.600s\n", r.body);
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    /* month, bounded by from/to */
    IT_CHECK(rec_req("GET",
                     "/api/v1/me/records/summary?type=blood_pressure&bucket=month"
                     "&from=2026-01-12T00:00:00%2B09:00&to=2026-03-01T00:00:00%2B09:00",
                     NULL, p.token, NULL, &r) == 200);
    ok = json_object_object_get_ex(r.json, "items", &items) && json_object_array_length(items) == 2;
    if (ok) {
        json_object *vals;
        b = json_object_array_get_idx(items, 0);
        json_object_object_get_ex(b, "values", &vals);
        ok = rec_num(b, "count", NULL) == 4 && rec_num(vals, "systolic", "mean") == 125 &&
             rec_num(vals, "systolic", "min") == 110 &&
             strcmp(json_object_get_string(json_object_object_get(b, "start")),
                    "2026-01-01T00:00:00.000+09:00") == 0;
    }
    if (!ok) {
        fprintf(stderr, "  month summary: %.600s\n", r.body);
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records/summary", NULL, p.token, "type"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/records/summary?type=pulse&bucket=year", NULL,
                               p.token, "bucket"));
}

/* ---- encryption at rest ---------------------------------------------------------------- */

static void
test_encrypted_at_rest(void)
{
    it_patient_t p;
    char id[37], body[512], marker[64], drug[64], cmd[1024];

    IT_CHECK(it_patient("rec", REC_PW, 1, &p));
    snprintf(marker, sizeof(marker), "ZqxNoteMarker%d", (int)getpid());
    snprintf(drug, sizeof(drug), "Quetzalumab%d", (int)getpid());
    snprintf(body, sizeof(body),
             "{\"type\":\"medication\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
             "\"values\":{\"name\":\"%s\",\"taken\":true},\"note\":\"%s\"}",
             drug, marker);
    IT_CHECK(rec_post(p.token, body, id) == 201);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/me/records/%s", id);
    IT_CHECK(it_gw_status("PATCH", path, "{\"note\":\"ZqxSecondMarker\"}", p.token) == 200);
    /* the dump has the row (its id) but neither the note nor the value, also not in history or
     * outbox (audit events carry no health values) */
    snprintf(cmd, sizeof(cmd),
             "PGPASSWORD='%s' pg_dump -h %s -p %s -U phr_records -d phr_records -a "
             "-t records -t record_history -t outbox > '%s/rec-dump.sql'",
             it_secret("pg_records.password"), it_env("PHR_TEST_PG_HOST"),
             it_env("PHR_TEST_PG_PORT"), it_env("PHR_TEST_VAR"));
    IT_CHECK(it_sh("%s", cmd) == 0);
    IT_CHECK(it_sh("grep -q '%s' '%s/rec-dump.sql'", id, it_env("PHR_TEST_VAR")) == 0);
    IT_CHECK(it_sh("grep -q '%s' '%s/rec-dump.sql'", marker, it_env("PHR_TEST_VAR")) != 0);
    IT_CHECK(it_sh("grep -q '%s' '%s/rec-dump.sql'", drug, it_env("PHR_TEST_VAR")) != 0);
    IT_CHECK(it_sh("grep -q ZqxSecondMarker '%s/rec-dump.sql'", it_env("PHR_TEST_VAR")) != 0);
    it_sh("rm -f '%s/rec-dump.sql'", it_env("PHR_TEST_VAR"));
    /* the stored row names its key version */
    IT_CHECK(rec_count("SELECT count(*) FROM records WHERE id = '%s' AND key_id >= 1", id) == 1);
}

/* ---- staff --------------------------------------------------------------------------- */

typedef struct {
    char op_token[64];
    char org_id[37];
    char admin_id[37];
    char admin_token[64];
} rec_org_t;

static int
rec_org_setup(rec_org_t *e)
{
    char email[128];

    memset(e, 0, sizeof(*e));
    if (!it_operator_new("recop", REC_PW, e->op_token)) {
        return 0;
    }
    it_unique_email(email, sizeof(email), "recadm");
    return it_org_new(e->op_token, "Rec Clinic", 3, email, "Admin R", e->org_id, e->admin_id) &&
           it_staff_login(email, e->admin_id, REC_PW, e->admin_token);
}

/* The sharing module's table, for when its migration has not landed yet. */
static int
rec_links_table(void)
{
    char out[16];
    return it_psql("records", out, sizeof(out),
                   "CREATE TABLE IF NOT EXISTS links (patient_id uuid NOT NULL, org_id uuid NOT "
                   "NULL, linked_at timestamptz NOT NULL DEFAULT now(), terms_version text NOT "
                   "NULL DEFAULT '1', revoked_at timestamptz, PRIMARY KEY (patient_id, org_id))") ==
           0;
}

static int
rec_link(const char *org_id, const char *patient_id)
{
    char out[16];
    return it_psql("records", out, sizeof(out),
                   "INSERT INTO links (patient_id, org_id, linked_at, terms_version) VALUES "
                   "('%s', '%s', now(), '1') ON CONFLICT (patient_id, org_id) DO UPDATE SET "
                   "revoked_at = NULL",
                   patient_id, org_id) == 0;
}

static void
test_staff_access(void)
{
    rec_org_t e, e2;
    it_patient_t p, other;
    char path[256], spath[320], mpath[128], id[37] = "";
    it_resp_t r;
    json_object *items;

    IT_CHECK(rec_links_table());
    IT_CHECK(rec_org_setup(&e) && rec_org_setup(&e2));
    IT_CHECK(it_patient("rec", REC_PW, 1, &p) && it_patient("rec", REC_PW, 1, &other));
    IT_CHECK(rec_post(p.token,
                      "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-01-05T07:30:00+09:00\","
                      "\"values\":{\"systolic\":132,\"diastolic\":84}}",
                      NULL) == 201);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients/%s/records", e.org_id, p.id);
    snprintf(spath, sizeof(spath), "%s/summary?type=blood_pressure", path);
    const char *clinic = "{\"type\":\"hba1c\",\"measured_at\":\"2026-01-06T10:00:00+09:00\","
                         "\"values\":{\"value\":6.8},\"note\":\"lab\"}";
    /* not linked: 404 for reads and writes, nothing audited as a read */
    IT_CHECK(it_gw_problem("GET", path, NULL, e.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", spath, NULL, e.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("POST", path, clinic, e.admin_token, 404, "not_found"));
    IT_CHECK(rec_link(e.org_id, p.id));
    /* linked: the list, audited as records.read with the types */
    IT_CHECK(rec_req("GET", path, NULL, e.admin_token, NULL, &r) == 200);
    int ok =
        json_object_object_get_ex(r.json, "items", &items) && json_object_array_length(items) == 1;
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                       "'records.read' AND body->'target'->>'patient_id' = '%s' AND "
                       "body->'details'->'types' ? 'blood_pressure'",
                       p.id) == 1);
    IT_CHECK(it_gw_status("GET", spath, NULL, e.admin_token) == 200);
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE body->>'action' = 'records.read' AND "
                       "body->'target'->>'patient_id' = '%s'",
                       p.id) == 2);
    /* a clinic record: source clinic with the org; the patient reads it but cannot change it */
    IT_CHECK(rec_req("POST", path, clinic, e.admin_token, NULL, &r) == 201);
    ok = strcmp(it_json_str(&r, "source"), "clinic") == 0 &&
         strcmp(it_json_str(&r, "org_id"), e.org_id) == 0;
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"type\":\"hba1c\",\"measured_at\":\"2026-01-06T10:00:00+09:00\","
                               "\"values\":{\"value\":6.8},\"source\":\"self\"}",
                               e.admin_token, "source"));
    snprintf(mpath, sizeof(mpath), "/api/v1/me/records/%s", id);
    IT_CHECK(it_gw_status("GET", mpath, NULL, p.token) == 200);
    IT_CHECK(
        it_gw_problem("PATCH", mpath, "{\"note\":\"x\"}", p.token, 403, "clinic_record_readonly"));
    IT_CHECK(it_gw_problem("DELETE", mpath, NULL, p.token, 403, "clinic_record_readonly"));
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE body->>'action' = 'records.create' AND "
                       "body->'target'->>'id' = '%s' AND body->'actor'->>'kind' = 'staff'",
                       id) == 1);
    /* another org, a patient of nobody, a patient calling an org route, a bad id */
    char p2[256];
    snprintf(p2, sizeof(p2), "/api/v1/orgs/%s/patients/%s/records", e2.org_id, p.id);
    IT_CHECK(it_gw_problem("GET", p2, NULL, e.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", p2, NULL, e2.admin_token, 404, "not_found"));
    snprintf(p2, sizeof(p2), "/api/v1/orgs/%s/patients/%s/records", e.org_id, other.id);
    IT_CHECK(it_gw_problem("GET", p2, NULL, e.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", path, NULL, p.token, 403, "forbidden"));
    snprintf(p2, sizeof(p2), "/api/v1/orgs/%s/patients/nope/records", e.org_id);
    IT_CHECK(it_gw_problem("GET", p2, NULL, e.admin_token, 404, "not_found"));
    /* staff have no /me/records */
    IT_CHECK(it_gw_problem("GET", "/api/v1/me/records", NULL, e.admin_token, 403, "forbidden"));
    /* revoked: access ends at once */
    char out[16];
    IT_CHECK(it_psql("records", out, sizeof(out),
                     "UPDATE links SET revoked_at = now() WHERE org_id = '%s' AND patient_id = "
                     "'%s'",
                     e.org_id, p.id) == 0);
    IT_CHECK(it_gw_problem("GET", path, NULL, e.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("POST", path, clinic, e.admin_token, 404, "not_found"));
    IT_CHECK(rec_count("SELECT count(*) FROM outbox WHERE body->>'action' = 'records.read' AND "
                       "body->'target'->>'patient_id' = '%s'",
                       p.id) == 2);
}

const it_case_t records_cases[] = {
    {"records_types_valid_and_ranges", test_types_valid_and_ranges},
    {"records_bad_inputs", test_bad_inputs},
    {"records_crud_history", test_crud_history},
    {"records_idempotency", test_idempotency},
    {"records_keyset_pages", test_keyset_pages},
    {"records_steps_per_day", test_steps_per_day},
    {"records_summary", test_summary},
    {"records_encrypted_at_rest", test_encrypted_at_rest},
    {"records_staff_access", test_staff_access},
    {NULL, NULL},
};
