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
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"

#define RB_PW "Blue7Harbor!qLong"
#define RB_RECORDS 3
#define RB_READS 240

typedef struct {
    char id[37];
    char token[IT_TOKEN_CAP];
    char rec[RB_RECORDS][37];
} rb_patient_t;

typedef struct {
    CURL *c;
    struct curl_slist *hdrs;
    it_buf_t body;
    int reader;   /* patient index */
    int owner;    /* patient index, -1: an id nobody has */
    int rec;      /* record index */
    int expected; /* systolic of the record, when owner == reader */
    char id[37];  /* the record asked for (changed to nobody's when owner is -1) */
    long status;  /* 0: not answered yet */
} rb_read_t;

static int
rb_patient(rb_patient_t *p, int base)
{
    char email[128], body[512], path[128];
    it_resp_t r;

    it_unique_email(email, sizeof(email), "rbatch");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"Batch P\"}",
             email, RB_PW);
    int ok = it_gw("POST", "/api/v1/auth/register", body, NULL, &r) == 201 &&
             it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(p->id, sizeof(p->id), "%s", it_json_str(&r, "id"));
    }
    it_resp_free(&r);
    if (!ok || it_login(email, RB_PW, p->token) != 200) {
        return 0;
    }
    snprintf(path, sizeof(path), "/api/v1/me/records");
    for (int i = 0; i < RB_RECORDS; i++) {
        snprintf(body, sizeof(body),
                 "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-11-0%dT08:00:00+09:00\","
                 "\"values\":{\"systolic\":%d,\"diastolic\":70},\"note\":\"batch %d\"}",
                 i + 1, base + i, base + i);
        ok = it_gw("POST", path, body, p->token, &r) == 201 && it_json_str(&r, "id") != NULL;
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

/* 1 when |rd|'s answer is the expected record of its reader, or the 404 problem. */
static int
rb_check(const rb_read_t *rd, const rb_patient_t *pt)
{
    long status = rd->status;
    json_object *o = rd->body.buf != NULL ? json_tokener_parse(rd->body.buf) : NULL, *v, *s;
    int ok;

    if (rd->owner == rd->reader) {
        const char *want = pt[rd->owner].rec[rd->rec];
        ok = status == 200 && o != NULL && json_object_object_get_ex(o, "id", &v) &&
             strcmp(json_object_get_string(v), want) == 0 &&
             json_object_object_get_ex(o, "patient_id", &v) &&
             strcmp(json_object_get_string(v), pt[rd->reader].id) == 0 &&
             json_object_object_get_ex(o, "values", &v) &&
             json_object_object_get_ex(v, "systolic", &s) && json_object_get_int(s) == rd->expected;
    } else {
        ok = status == 404 && o != NULL && json_object_object_get_ex(o, "code", &v) &&
             strcmp(json_object_get_string(v), "not_found") == 0;
    }
    if (!ok) {
        printf("    reader %d, owner %d, record %d: %ld %.200s\n", rd->reader, rd->owner, rd->rec,
               status, rd->body.buf != NULL ? rd->body.buf : "");
    }
    json_object_put(o);
    return ok;
}

/* Runs the reads of |reads| not yet answered, all at once; 429s stay unanswered. */
static int
rb_round(rb_read_t *reads, const char auth[2][128])
{
    char url[512], ca[512], id[37];
    int left = 0;
    CURLM *m = curl_multi_init();

    if (m == NULL) {
        return -1;
    }
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
    for (int i = 0; i < RB_READS; i++) {
        rb_read_t *rd = &reads[i];
        if (rd->status != 0 && rd->status != 429) {
            continue;
        }
        it_buf_free(&rd->body);
        rd->status = 0;
        /* an id of nobody: a patient's record id with its last digit changed */
        snprintf(id, sizeof(id), "%s", rd->id);
        if (rd->owner < 0) {
            id[35] = id[35] == '0' ? '1' : '0';
        }
        snprintf(url, sizeof(url), "%s/api/v1/me/records/%s", it_env("PHR_TEST_GATEWAY"), id);
        rd->c = curl_easy_init();
        rd->hdrs = curl_slist_append(NULL, auth[rd->reader]);
        curl_easy_setopt(rd->c, CURLOPT_URL, url);
        curl_easy_setopt(rd->c, CURLOPT_CAINFO, ca);
        curl_easy_setopt(rd->c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(rd->c, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(rd->c, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(rd->c, CURLOPT_HTTPHEADER, rd->hdrs);
        curl_easy_setopt(rd->c, CURLOPT_WRITEFUNCTION, it_collect);
        curl_easy_setopt(rd->c, CURLOPT_WRITEDATA, &rd->body);
        curl_multi_add_handle(m, rd->c);
    }
    int running = 1;
    while (running > 0 && curl_multi_perform(m, &running) == CURLM_OK) {
        if (running > 0) {
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        }
    }
    for (int i = 0; i < RB_READS; i++) {
        rb_read_t *rd = &reads[i];
        if (rd->c == NULL) {
            continue;
        }
        curl_easy_getinfo(rd->c, CURLINFO_RESPONSE_CODE, &rd->status);
        left += rd->status == 0 || rd->status == 429;
        curl_multi_remove_handle(m, rd->c);
        curl_easy_cleanup(rd->c);
        curl_slist_free_all(rd->hdrs);
        rd->c = NULL;
        rd->hdrs = NULL;
    }
    curl_multi_cleanup(m);
    return left;
}

static void
t_get_coalesced(void)
{
    static rb_read_t reads[RB_READS];
    rb_patient_t pt[2];
    char auth[2][128];
    int bad = 0, left = RB_READS, rounds = 0;

    IT_CHECK(rb_patient(&pt[0], 111) && rb_patient(&pt[1], 211));
    for (int p = 0; p < 2; p++) {
        snprintf(auth[p], sizeof(auth[p]), "Authorization: Bearer %s", pt[p].token);
    }
    for (int i = 0; i < RB_READS; i++) {
        rb_read_t *rd = &reads[i];
        memset(rd, 0, sizeof(*rd));
        rd->reader = i % 2;
        rd->owner = i % 7 == 6 ? -1 : (i / 2) % 2;
        rd->rec = (i / 4) % RB_RECORDS;
        rd->expected = (rd->reader == 0 ? 111 : 211) + rd->rec;
        snprintf(rd->id, sizeof(rd->id), "%s", pt[rd->owner < 0 ? 0 : rd->owner].rec[rd->rec]);
    }
    /* the gateway's limiter (burst 200, shared by the run) may refuse some: asked again */
    while (left > 0 && rounds++ < 60) {
        left = rb_round(reads, auth);
        if (left > 0) {
            sleep(1);
        }
    }
    for (int i = 0; i < RB_READS; i++) {
        bad += left == 0 && !rb_check(&reads[i], pt);
        it_buf_free(&reads[i].body);
    }
    printf("    %d reads in %d rounds, %d unanswered, %d wrong\n", RB_READS, rounds, left, bad);
    IT_CHECK(left == 0);
    IT_CHECK(bad == 0);
}

const it_case_t records_batch_cases[] = {
    {"records_get_coalesced", t_get_coalesced},
    {NULL, NULL},
};
