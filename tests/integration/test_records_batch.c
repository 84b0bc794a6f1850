/*
 * test_records_batch.c - GET /api/v1/me/records/{id} reads that arrive together are
 * coalesced into one SELECT (services/records/getbatch.c): many reads of two patients,
 * their own records, each other's and unknown ids, all in flight at once on one HTTP/2
 * connection; every answer must be the reader's own record or a 404.
 *
 * The burst goes through the gateway on one HTTP/2 connection: nginx forwards the streams
 * at once, on as many upstream connections, so the reads outnumber the service's pool
 * connections and wait together.
 */
#include <stdio.h>
#include <string.h>

#include "itest.h"

#define RB_PW "Blue7Harbor!qLong"
#define RB_RECORDS 3
#define RB_READS 240

typedef struct {
    it_patient_t p;
    char rec[RB_RECORDS][37];
} rb_patient_t;

/* How a read of the burst (an it_call_t of the same index) is answered correctly. */
typedef struct {
    int reader;   /* patient index */
    int owner;    /* patient index, -1: an id nobody has */
    int rec;      /* record index */
    int expected; /* systolic of the record, when owner == reader */
} rb_read_t;

/* A patient with RB_RECORDS blood pressures, systolic |base| + i. */
static int
rb_patient(rb_patient_t *p, int base)
{
    char body[512];
    it_resp_t r;

    if (!it_patient("rbatch", RB_PW, 1, &p->p)) {
        return 0;
    }
    for (int i = 0; i < RB_RECORDS; i++) {
        snprintf(body, sizeof(body),
                 "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-11-0%dT08:00:00+09:00\","
                 "\"values\":{\"systolic\":%d,\"diastolic\":70},\"note\":\"batch %d\"}",
                 i + 1, base + i, base + i);
        int ok = it_gw("POST", "/api/v1/me/records", body, p->p.token, &r) == 201 &&
                 it_json_str(&r, "id") != NULL;
        if (ok) {
            snprintf(p->rec[i], sizeof(p->rec[i]), "%s", it_json_str(&r, "id"));
        }
        it_resp_free(&r);
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* 1 when |call|'s answer is the record of |rd|'s reader it should be, or the 404 problem. */
static int
rb_check(const it_call_t *call, const rb_read_t *rd, const rb_patient_t *pt)
{
    long status = call->r.status;
    json_object *o = call->r.json, *v, *s;
    int ok;

    if (rd->owner == rd->reader) {
        const char *want = pt[rd->owner].rec[rd->rec];
        ok = status == 200 && o != NULL && json_object_object_get_ex(o, "id", &v) &&
             strcmp(json_object_get_string(v), want) == 0 &&
             json_object_object_get_ex(o, "patient_id", &v) &&
             strcmp(json_object_get_string(v), pt[rd->reader].p.id) == 0 &&
             json_object_object_get_ex(o, "values", &v) &&
             json_object_object_get_ex(v, "systolic", &s) && json_object_get_int(s) == rd->expected;
    } else {
        ok = status == 404 && o != NULL && json_object_object_get_ex(o, "code", &v) &&
             strcmp(json_object_get_string(v), "not_found") == 0;
    }
    if (!ok) {
        printf("    reader %d, owner %d, record %d: %ld %.200s\n", rd->reader, rd->owner, rd->rec,
               status, call->r.body);
    }
    return ok;
}

static void
t_get_coalesced(void)
{
    static it_call_t calls[RB_READS];
    static rb_read_t reads[RB_READS];
    rb_patient_t pt[2];
    int bad = 0, rounds = 0;

    IT_CHECK(rb_patient(&pt[0], 111) && rb_patient(&pt[1], 211));
    for (int i = 0; i < RB_READS; i++) {
        rb_read_t *rd = &reads[i];
        char id[37];
        memset(&calls[i], 0, sizeof(calls[i]));
        rd->reader = i % 2;
        rd->owner = i % 7 == 6 ? -1 : (i / 2) % 2;
        rd->rec = (i / 4) % RB_RECORDS;
        rd->expected = (rd->reader == 0 ? 111 : 211) + rd->rec;
        snprintf(id, sizeof(id), "%s", pt[rd->owner < 0 ? 0 : rd->owner].rec[rd->rec]);
        /* an id of nobody: a patient's record id with its last digit changed */
        if (rd->owner < 0) {
            id[35] = id[35] == '0' ? '1' : '0';
        }
        snprintf(calls[i].path, sizeof(calls[i].path), "/api/v1/me/records/%s", id);
        calls[i].token = pt[rd->reader].p.token;
    }
    /* the gateway's limiter (burst 200, shared by the run) may refuse some: asked again */
    int left = it_burst(calls, RB_READS, &rounds);
    for (int i = 0; i < RB_READS; i++) {
        bad += left == 0 && !rb_check(&calls[i], &reads[i], pt);
        it_resp_free(&calls[i].r);
    }
    printf("    %d reads in %d rounds, %d unanswered, %d wrong\n", RB_READS, rounds, left, bad);
    IT_CHECK(left == 0);
    IT_CHECK(bad == 0);
}

const it_case_t records_batch_cases[] = {
    {"records_get_coalesced", t_get_coalesced},
    {NULL, NULL},
};
