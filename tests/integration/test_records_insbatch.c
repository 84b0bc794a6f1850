/*
 * test_records_insbatch.c - POST /api/v1/me/records creates that arrive together are
 * coalesced into one INSERT (services/records/insbatch.c): 200 creates of two patients in
 * flight at once on one HTTP/2 connection through the gateway. Every create must answer 201
 * with its own record (and Location), read back identical, be stored once with exactly one
 * records.create audit event, and the records service must have sent fewer statements than
 * creates (phr_pg_queries_total).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"

#define IB_PW "Blue7Harbor!qLong"
#define IB_CREATES 200
#define IB_COUNT_SQL "SELECT count(*) FROM records WHERE patient_id IN ('%s', '%s')"
/* records.create events of the two patients, 0 when one record has two */
#define IB_AUDITED_SQL                                                                             \
    "SELECT count(*) * (count(*) = count(DISTINCT target_id))::int FROM audit_events "             \
    "WHERE action = 'records.create' AND target_patient_id IN ('%s', '%s')"

/* phr_pg_queries_total of the records service, -1 when unreadable. */
static long
ib_queries(void)
{
    static const char name[] = "phr_pg_queries_total{service=\"records\"} ";
    it_resp_t r;
    long n = -1;

    if (it_request(IT_DIRECT, "records", "GET", "/metrics", NULL, 0, NULL, &r) == 0 &&
        r.status == 200 && r.body != NULL) {
        const char *p = strstr(r.body, name);
        n = p != NULL ? strtol(p + sizeof(name) - 1, NULL, 10) : -1;
    }
    it_resp_free(&r);
    return n;
}

static long ib_count(const char *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The number the statement |fmt| answers in service |db|'s database, -1 on failure. */
static long
ib_count(const char *db, const char *fmt, ...)
{
    char out[64], sql[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (it_psql(db, out, sizeof(out), "%s", sql) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

/* 1 when create |i| (of patient |pt|) answered 201 with its own record, at the Location that
 * |read| asked for, and |read| answered the same record. */
static int
ib_check(const it_call_t *call, const it_call_t *read, const it_patient_t *pt, int i)
{
    const char *loc = it_header(&call->r, "location");
    json_object *o = call->r.json, *v, *x;
    char note[32];

    snprintf(note, sizeof(note), "burst %d", i);
    int ok = call->r.status == 201 && loc != NULL && strcmp(loc, read->path) == 0 && o != NULL &&
             json_object_object_get_ex(o, "patient_id", &v) &&
             strcmp(json_object_get_string(v), pt->id) == 0 &&
             json_object_object_get_ex(o, "note", &v) &&
             strcmp(json_object_get_string(v), note) == 0 &&
             json_object_object_get_ex(o, "values", &v) &&
             json_object_object_get_ex(v, "value", &x) && json_object_get_int(x) == 40 + i % 150 &&
             read->r.status == 200 && read->r.json != NULL && json_object_equal(o, read->r.json);
    if (!ok) {
        printf("    create %d: %ld %.200s / read %ld %.200s\n", i, call->r.status, call->r.body,
               read->r.status, read->r.body);
    }
    return ok;
}

static void
t_post_coalesced(void)
{
    static it_call_t posts[IB_CREATES], gets[IB_CREATES];
    static char sent[IB_CREATES][256];
    it_patient_t pt[2];
    int bad = 0;

    IT_CHECK(it_patient("rinsb", IB_PW, 1, &pt[0]) && it_patient("rinsb", IB_PW, 1, &pt[1]));
    IT_CHECK(ib_count("records", IB_COUNT_SQL, pt[0].id, pt[1].id) == 0);
    for (int i = 0; i < IB_CREATES; i++) {
        memset(&posts[i], 0, sizeof(posts[i]));
        memset(&gets[i], 0, sizeof(gets[i]));
        snprintf(sent[i], sizeof(sent[i]),
                 "{\"type\":\"pulse\",\"measured_at\":\"2026-11-%02dT%02d:%02d:00+09:00\","
                 "\"values\":{\"value\":%d},\"note\":\"burst %d\"}",
                 1 + i % 20, i % 24, i % 60, 40 + i % 150, i);
        snprintf(posts[i].path, sizeof(posts[i].path), "/api/v1/me/records");
        posts[i].token = gets[i].token = pt[i % 2].token;
        posts[i].body = sent[i];
    }
    long q0 = ib_queries();
    IT_CHECK(q0 >= 0);
    IT_CHECK(it_burst(posts, IB_CREATES, NULL) == 0);
    long q1 = ib_queries();
    for (int i = 0; i < IB_CREATES; i++) {
        const char *id = it_json_str(&posts[i].r, "id");
        snprintf(gets[i].path, sizeof(gets[i].path), "/api/v1/me/records/%.36s",
                 id != NULL ? id : "00000000-0000-0000-0000-000000000000");
    }
    printf("    %d creates: %ld statements of the records service meanwhile\n", IB_CREATES,
           q1 - q0);
    IT_CHECK(it_burst(gets, IB_CREATES, NULL) == 0);
    for (int i = 0; i < IB_CREATES; i++) {
        bad += !ib_check(&posts[i], &gets[i], &pt[i % 2], i);
        it_resp_free(&posts[i].r);
        it_resp_free(&gets[i].r);
    }
    IT_CHECK(bad == 0);
    IT_CHECK(q1 - q0 > 0 && q1 - q0 < IB_CREATES);
    IT_CHECK(ib_count("records", IB_COUNT_SQL, pt[0].id, pt[1].id) == IB_CREATES);
    IT_CHECK(ib_count("records",
                      "SELECT count(DISTINCT r.id) FROM records r WHERE r.patient_id IN ('%s', "
                      "'%s') AND r.type = 'pulse' AND (SELECT count(*) FROM outbox o WHERE "
                      "o.topic = 'audit' AND o.body->>'action' = 'records.create' AND "
                      "o.body->'target'->>'id' = r.id::text) = 1",
                      pt[0].id, pt[1].id) == IB_CREATES);
    /* the events reach the audit service, each once */
    long audited = 0;
    for (int s = 0; s < 60; s++) {
        audited = ib_count("audit", IB_AUDITED_SQL, pt[0].id, pt[1].id);
        if (audited >= IB_CREATES) {
            break;
        }
        sleep(1);
    }
    IT_CHECK(audited == IB_CREATES);
}

const it_case_t records_insbatch_cases[] = {
    {"records_post_coalesced", t_post_coalesced},
    {NULL, NULL},
};
