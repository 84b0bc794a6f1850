/*
 * test_records_insbatch.c - POST /api/v1/me/records creates that arrive together are
 * coalesced into one INSERT (services/records/insbatch.c): 200 creates of two patients in
 * flight at once on one HTTP/2 connection through the gateway. Every create must answer 201
 * with its own record (and Location), read back identical, be stored once with exactly one
 * records.create audit event, and the records service must have sent fewer statements than
 * creates (phr_pg_queries_total).
 */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "itest.h"

#define IB_PW "Blue7Harbor!qLong"
#define IB_CREATES 200
#define IB_COUNT_SQL "SELECT count(*) FROM records WHERE patient_id IN ('%s', '%s')"
/* records.create events of the two patients, 0 when one record has two */
#define IB_AUDITED_SQL                                                                             \
    "SELECT count(*) * (count(*) = count(DISTINCT target_id))::int FROM audit_events "             \
    "WHERE action = 'records.create' AND target_patient_id IN ('%s', '%s')"

typedef struct {
    char id[37];
    char token[IT_TOKEN_CAP];
    char auth[128];
} ib_patient_t;

typedef struct {
    CURL *c;
    struct curl_slist *hdrs;
    it_buf_t body;
    char location[128];
    char sent[256]; /* the POST body */
    int patient;
    long status; /* 0: not answered yet */
} ib_call_t;

static int
ib_patient(ib_patient_t *p)
{
    char email[128], body[512];
    it_resp_t r;

    it_unique_email(email, sizeof(email), "rinsb");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"Insert P\"}",
             email, IB_PW);
    int ok = it_gw("POST", "/api/v1/auth/register", body, NULL, &r) == 201 &&
             it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(p->id, sizeof(p->id), "%s", it_json_str(&r, "id"));
    }
    it_resp_free(&r);
    if (!ok || it_login(email, IB_PW, p->token) != 200) {
        return 0;
    }
    snprintf(p->auth, sizeof(p->auth), "Authorization: Bearer %s", p->token);
    return 1;
}

static size_t
ib_header(char *data, size_t size, size_t n, void *ud)
{
    ib_call_t *call = ud;
    size_t len = size * n;

    if (len > 10 && strncasecmp(data, "location: ", 10) == 0) {
        size_t v = len - 10;
        while (v > 0 && (data[10 + v - 1] == '\r' || data[10 + v - 1] == '\n')) {
            v--;
        }
        snprintf(call->location, sizeof(call->location), "%.*s", (int)v, data + 10);
    }
    return len;
}

/*
 * Sends the calls of |calls| not answered yet (or refused 429 by the gateway's limiter, which
 * forwarded nothing), all at once on one connection: a POST of call->sent when |get| is NULL,
 * else GET |get|[i]. Returns how many are left unanswered, -1 on failure.
 */
static int
ib_round(ib_call_t *calls, const ib_patient_t *pt, char (*get)[37])
{
    char url[512], ca[512];
    int left = 0;
    CURLM *m = curl_multi_init();

    if (m == NULL) {
        return -1;
    }
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
    for (int i = 0; i < IB_CREATES; i++) {
        ib_call_t *call = &calls[i];
        if (call->status != 0 && call->status != 429) {
            continue;
        }
        it_buf_free(&call->body);
        call->status = 0;
        call->location[0] = '\0';
        snprintf(url, sizeof(url), "%s/api/v1/me/records%s%s", it_env("PHR_TEST_GATEWAY"),
                 get != NULL ? "/" : "", get != NULL ? get[i] : "");
        call->c = curl_easy_init();
        call->hdrs = curl_slist_append(NULL, pt[call->patient].auth);
        call->hdrs = curl_slist_append(call->hdrs, "Content-Type: application/json");
        curl_easy_setopt(call->c, CURLOPT_URL, url);
        curl_easy_setopt(call->c, CURLOPT_CAINFO, ca);
        curl_easy_setopt(call->c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(call->c, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(call->c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(call->c, CURLOPT_HTTPHEADER, call->hdrs);
        if (get == NULL) {
            curl_easy_setopt(call->c, CURLOPT_POSTFIELDS, call->sent);
        }
        curl_easy_setopt(call->c, CURLOPT_WRITEFUNCTION, it_collect);
        curl_easy_setopt(call->c, CURLOPT_WRITEDATA, &call->body);
        curl_easy_setopt(call->c, CURLOPT_HEADERFUNCTION, ib_header);
        curl_easy_setopt(call->c, CURLOPT_HEADERDATA, call);
        curl_multi_add_handle(m, call->c);
    }
    int running = 1;
    while (running > 0 && curl_multi_perform(m, &running) == CURLM_OK) {
        if (running > 0) {
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        }
    }
    for (int i = 0; i < IB_CREATES; i++) {
        ib_call_t *call = &calls[i];
        if (call->c == NULL) {
            continue;
        }
        curl_easy_getinfo(call->c, CURLINFO_RESPONSE_CODE, &call->status);
        left += call->status == 0 || call->status == 429;
        curl_multi_remove_handle(m, call->c);
        curl_easy_cleanup(call->c);
        curl_slist_free_all(call->hdrs);
        call->c = NULL;
        call->hdrs = NULL;
    }
    curl_multi_cleanup(m);
    return left;
}

/* Runs |calls| (see ib_round) until all are answered; 1 when they are. */
static int
ib_run(ib_call_t *calls, const ib_patient_t *pt, char (*get)[37])
{
    int left = IB_CREATES, rounds = 0;

    /* the gateway's limiter (burst 200, shared by the run) may refuse some: asked again */
    while (left > 0 && rounds++ < 60) {
        left = ib_round(calls, pt, get);
        if (left > 0) {
            sleep(1);
        }
    }
    return left == 0;
}

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

/* 1 when create |i| answered 201 with its own record |id| and Location, and |read| of that
 * record answered the same record. */
static int
ib_check(const ib_call_t *call, const ib_call_t *read, const ib_patient_t *pt, int i,
         const char *id)
{
    json_object *o = json_tokener_parse(call->body.buf != NULL ? call->body.buf : "");
    json_object *g = json_tokener_parse(read->body.buf != NULL ? read->body.buf : "");
    json_object *v, *x;
    char loc[128], note[32];

    snprintf(loc, sizeof(loc), "/api/v1/me/records/%.36s", id);
    snprintf(note, sizeof(note), "burst %d", i);
    int ok = call->status == 201 && strcmp(call->location, loc) == 0 && o != NULL &&
             json_object_object_get_ex(o, "patient_id", &v) &&
             strcmp(json_object_get_string(v), pt[call->patient].id) == 0 &&
             json_object_object_get_ex(o, "note", &v) &&
             strcmp(json_object_get_string(v), note) == 0 &&
             json_object_object_get_ex(o, "values", &v) &&
             json_object_object_get_ex(v, "value", &x) && json_object_get_int(x) == 40 + i % 150 &&
             read->status == 200 && g != NULL && json_object_equal(o, g);
    if (!ok) {
        printf("    create %d: %ld %.200s / read %ld %.200s\n", i, call->status,
               call->body.buf != NULL ? call->body.buf : "", read->status,
               read->body.buf != NULL ? read->body.buf : "");
    }
    json_object_put(o);
    json_object_put(g);
    return ok;
}

static void
t_post_coalesced(void)
{
    static ib_call_t posts[IB_CREATES], gets[IB_CREATES];
    static char ids[IB_CREATES][37];
    ib_patient_t pt[2];
    int bad = 0;

    IT_CHECK(ib_patient(&pt[0]) && ib_patient(&pt[1]));
    IT_CHECK(ib_count("records", IB_COUNT_SQL, pt[0].id, pt[1].id) == 0);
    for (int i = 0; i < IB_CREATES; i++) {
        memset(&posts[i], 0, sizeof(posts[i]));
        memset(&gets[i], 0, sizeof(gets[i]));
        posts[i].patient = gets[i].patient = i % 2;
        snprintf(posts[i].sent, sizeof(posts[i].sent),
                 "{\"type\":\"pulse\",\"measured_at\":\"2026-11-%02dT%02d:%02d:00+09:00\","
                 "\"values\":{\"value\":%d},\"note\":\"burst %d\"}",
                 1 + i % 20, i % 24, i % 60, 40 + i % 150, i);
    }
    long q0 = ib_queries();
    IT_CHECK(q0 >= 0);
    IT_CHECK(ib_run(posts, pt, NULL));
    long q1 = ib_queries();
    for (int i = 0; i < IB_CREATES; i++) {
        json_object *o = json_tokener_parse(posts[i].body.buf != NULL ? posts[i].body.buf : "");
        json_object *v;
        ids[i][0] = '\0';
        if (o != NULL && json_object_object_get_ex(o, "id", &v)) {
            snprintf(ids[i], sizeof(ids[i]), "%s", json_object_get_string(v));
        }
        json_object_put(o);
        if (ids[i][0] == '\0') {
            snprintf(ids[i], sizeof(ids[i]), "00000000-0000-0000-0000-000000000000");
        }
    }
    printf("    %d creates: %ld statements of the records service meanwhile\n", IB_CREATES,
           q1 - q0);
    IT_CHECK(ib_run(gets, pt, ids));
    for (int i = 0; i < IB_CREATES; i++) {
        bad += !ib_check(&posts[i], &gets[i], pt, i, ids[i]);
        it_buf_free(&posts[i].body);
        it_buf_free(&gets[i].body);
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
