/*
 * test_records_getwait.c - reads of one record beyond PHR_RECORDS_GET_WAITING, and creates
 * beyond PHR_RECORDS_INSERT_WAITING, are refused with 503 problem+json and Retry-After while
 * the pool is busy (services/records/getbatch.c, insbatch.c), and the service answers again
 * once it frees.
 *
 * A second phr-records runs beside the stack's with one PostgreSQL connection and the
 * smallest waiting limit (16); the records table is locked so that its one statement in
 * flight blocks; 40 requests arrive at once (curl -Z --parallel-immediate: one h2c connection
 * each, as curl 7.88 fails reusing a prior-knowledge connection, curl issue 10634): 1 in
 * flight + 16 waiting are answered when the lock goes, the other 23 get the 503 at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define GW_PW "Blue7Harbor!qWait"
#define GW_READS 40
#define GW_WAITING 16
#define GW_ANSWERED (1 + GW_WAITING) /* the pool's one statement in flight and those waiting */
#define GW_BATCH 4                   /* PHR_RECORDS_INSERT_BATCH of the creates' instance */

/* A record of the patient |token|: its id into |rec|. */
static int
gw_record(const char *token, char *rec, size_t rec_cap)
{
    const char *body = "{\"type\":\"blood_pressure\",\"measured_at\":\"2026-11-02T08:00:00+09:00\","
                       "\"values\":{\"systolic\":121,\"diastolic\":70}}";
    it_resp_t r;

    int ok = it_gw("POST", "/api/v1/me/records", body, token, &r) == 201 &&
             it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(rec, rec_cap, "%s", it_json_str(&r, "id"));
    }
    it_resp_free(&r);
    return ok;
}

/* A curl config of GW_READS reads of |rec| on |port|, each body into getwait.<i>.json. */
static int
gw_curl_config(const char *path, int port, const char *token, const char *rec)
{
    const char *v = it_env("PHR_TEST_VAR");
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        return 0;
    }
    fprintf(f, "header = \"Authorization: Bearer %s\"\n", token);
    for (int i = 0; i < GW_READS; i++) {
        fprintf(f, "url = \"http://127.0.0.1:%d/api/v1/me/records/%s\"\n", port, rec);
        fprintf(f, "output = \"%s/run/getwait.%d.json\"\n", v, i);
    }
    return fclose(f) == 0;
}

/* Starts the second phr-records |tag| on |port| with one connection and the settings |env|
 * (log/<tag>.log, run/<tag>.pid). 1 when it answers /readyz. */
static int
gw_start(const char *tag, int port, const char *env)
{
    const char *v = it_env("PHR_TEST_VAR");

    if (it_sh("PHR_RECORDS_PORT=%d PHR_PG_POOL=1 %s %s/bin/phr-records > %s/log/%s.log 2>&1 & "
              "echo $! > %s/run/%s.pid",
              port, env, it_env("PHR_BUILD"), v, tag, v, tag) != 0) {
        return 0;
    }
    return it_sh("for i in $(seq 100); do test \"$(curl -s -o /dev/null -w '%%{http_code}' "
                 "--http2-prior-knowledge http://127.0.0.1:%d/readyz)\" = 200 && exit 0; "
                 "sleep 0.1; done; exit 1",
                 port) == 0;
}

/* Stops the second phr-records |tag| and waits until it is gone. */
static void
gw_stop(const char *tag)
{
    const char *v = it_env("PHR_TEST_VAR");

    it_sh("kill -TERM $(cat %s/run/%s.pid); while kill -0 $(cat %s/run/%s.pid) 2> /dev/null; "
          "do sleep 0.1; done",
          v, tag, v, tag);
}

/* Locks the records table for 3 s (psql in the background, run/<tag>-lock.pid); 1 once the
 * lock is held: the one connection's next statement on records waits for it. */
static int
gw_lock(const char *tag)
{
    const char *v = it_env("PHR_TEST_VAR");
    char out[64];

    if (it_sh("PGPASSWORD='%s' psql -X -q -h %s -p %s -U phr_records -d phr_records -c 'BEGIN; "
              "LOCK TABLE records IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT' "
              "> %s/log/%s-lock.log 2>&1 & echo $! > %s/run/%s-lock.pid",
              it_secret("pg_records.password"), it_env("PHR_TEST_PG_HOST"),
              it_env("PHR_TEST_PG_PORT"), v, tag, v, tag) != 0) {
        return 0;
    }
    for (int i = 0; i < 50; i++) {
        if (it_psql("records", out, sizeof(out),
                    "SELECT count(*) FROM pg_locks WHERE relation = 'records'::regclass "
                    "AND mode = 'AccessExclusiveLock' AND granted") == 0 &&
            strcmp(out, "1") == 0) {
            return 1;
        }
        it_sh("sleep 0.1");
    }
    return 0;
}

/* Waits until the lock of gw_lock(|tag|) is gone. */
static void
gw_unlocked(const char *tag)
{
    const char *v = it_env("PHR_TEST_VAR");

    it_sh("while kill -0 $(cat %s/run/%s-lock.pid) 2> /dev/null; do sleep 0.1; done", v, tag);
}

static void
t_get_waiting_503(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    int port = it_port("records") + 87;
    char rec[37], cfg[512], env[64];
    it_patient_t p;

    IT_CHECK(it_patient("getwait", GW_PW, 1, &p) && gw_record(p.token, rec, sizeof(rec)));
    snprintf(cfg, sizeof(cfg), "%s/run/getwait.curl", v);
    IT_CHECK(gw_curl_config(cfg, port, p.token, rec));
    it_sh("rm -f %s/run/getwait.[0-9]*.json", v);
    snprintf(env, sizeof(env), "PHR_RECORDS_GET_WAITING=%d", GW_WAITING);
    int up = gw_start("getwait", port, env);
    int locked = up && gw_lock("getwait");
    int sent = locked && it_sh("curl -s --no-progress-meter -Z --parallel-immediate --parallel-max "
                               "%d --http2-prior-knowledge -K %s "
                               "-w '%%{http_code} %%{content_type} %%header{retry-after}\\n' "
                               "> %s/run/getwait.out",
                               GW_READS, cfg, v) == 0;
    gw_unlocked("getwait");
    int refused = it_sh("test \"$(grep -c '^503 application/problem+json 1$' %s/run/getwait.out)\" "
                        "= %d",
                        v, GW_READS - GW_ANSWERED) == 0;
    int answered = it_sh("test \"$(grep -c '^200 application/json' %s/run/getwait.out)\" = %d", v,
                         GW_ANSWERED) == 0;
    int body = it_sh("test \"$(grep -lE '\"status\": *503' %s/run/getwait.[0-9]*.json | wc -l)\" "
                     "= %d",
                     v, GW_READS - GW_ANSWERED) == 0;
    /* Free again: the next read is answered. */
    int again = it_sh("test \"$(curl -s -o /dev/null -w '%%{http_code}' --http2-prior-knowledge "
                      "-H 'Authorization: Bearer %s' http://127.0.0.1:%d/api/v1/me/records/%s)\" "
                      "= 200",
                      p.token, port, rec) == 0;
    gw_stop("getwait");
    if (!refused || !answered) {
        it_sh("sort %s/run/getwait.out | uniq -c | sed 's/^/    /'", v);
    }
    IT_CHECK(up);
    IT_CHECK(locked);
    IT_CHECK(sent);
    IT_CHECK(refused);
    IT_CHECK(answered);
    IT_CHECK(body);
    IT_CHECK(again);
}

/* ---- creates ------------------------------------------------------------- */

/* The body of create |i| (its note names it). */
static void
pw_body(char *out, size_t cap, int i)
{
    snprintf(out, cap,
             "{\"type\":\"pulse\",\"measured_at\":\"2026-11-03T07:%02d:00+09:00\","
             "\"values\":{\"value\":%d},\"note\":\"wait %d\"}",
             i, 50 + i, i);
}

/* A curl config of GW_READS creates on |port|, create i's headers and body into
 * postwait.<i>.hdr and .json; "next" starts each, as they differ in body. */
static int
pw_curl_config(const char *path, int port, const char *token)
{
    const char *v = it_env("PHR_TEST_VAR");
    FILE *f = fopen(path, "w");
    char body[256];

    if (f == NULL) {
        return 0;
    }
    for (int i = 0; i < GW_READS; i++) {
        pw_body(body, sizeof(body), i);
        fprintf(f, "%surl = \"http://127.0.0.1:%d/api/v1/me/records\"\nhttp2-prior-knowledge\n",
                i > 0 ? "next\n" : "", port);
        fprintf(f, "header = \"Authorization: Bearer %s\"\n", token);
        fprintf(f, "header = \"Content-Type: application/json\"\n");
        fprintf(f, "data = \"");
        for (const char *c = body; *c != '\0'; c++) {
            fprintf(f, "%s%c", *c == '"' ? "\\" : "", *c);
        }
        fprintf(f, "\"\ndump-header = \"%s/run/postwait.%d.hdr\"\n", v, i);
        fprintf(f, "output = \"%s/run/postwait.%d.json\"\n", v, i);
    }
    return fclose(f) == 0;
}

/* The whole file |path| as a new NUL-terminated string, or NULL. */
static char *
pw_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    if (f != NULL) {
        fclose(f);
    }
    return buf;
}

/* The answer to create |i| as curl stored it (r->status 0: none). */
static void
pw_answer(int i, it_resp_t *r)
{
    const char *v = it_env("PHR_TEST_VAR");
    char path[512];

    memset(r, 0, sizeof(*r));
    snprintf(path, sizeof(path), "%s/run/postwait.%d.hdr", v, i);
    r->headers = pw_slurp(path, &r->hlen);
    snprintf(path, sizeof(path), "%s/run/postwait.%d.json", v, i);
    r->body = pw_slurp(path, &r->len);
    if (r->headers == NULL || sscanf(r->headers, "HTTP/%*s %ld", &r->status) != 1) {
        r->status = 0;
    }
    r->json = r->body != NULL && r->len > 0 ? json_tokener_parse(r->body) : NULL;
}

/* 1 when |r| is the 503 of a full queue: problem+json with type, status, title and detail,
 * and Retry-After. */
static int
pw_refused(const it_resp_t *r)
{
    const char *ra = it_header(r, "retry-after");

    int ok = ra != NULL && strtol(ra, NULL, 10) > 0 &&
             it_is_problem(r, 503, "dependency_unavailable") && it_json_str(r, "type") != NULL &&
             it_json_str(r, "detail") != NULL && *it_json_str(r, "detail") != '\0';
    if (!ok) {
        printf("    refused without Retry-After or problem fields: %.300s\n", r->headers);
    }
    return ok;
}

/* 1 when create |i| of |pt| answered 201 with its record, at |loc|, and |read| (GET |loc|
 * through the gateway) answered the same record. */
static int
pw_created(const it_resp_t *r, const it_call_t *read, const it_patient_t *pt, int i)
{
    const char *loc = it_header(r, "location");
    json_object *o = r->json, *v, *x;
    char note[32];

    snprintf(note, sizeof(note), "wait %d", i);
    int ok = loc != NULL && strcmp(loc, read->path) == 0 && o != NULL &&
             json_object_object_get_ex(o, "patient_id", &v) &&
             strcmp(json_object_get_string(v), pt->id) == 0 &&
             json_object_object_get_ex(o, "note", &v) &&
             strcmp(json_object_get_string(v), note) == 0 &&
             json_object_object_get_ex(o, "values", &v) &&
             json_object_object_get_ex(v, "value", &x) && json_object_get_int(x) == 50 + i &&
             read->r.status == 200 && read->r.json != NULL && json_object_equal(o, read->r.json);
    if (!ok) {
        printf("    create %d: %.200s / read %ld %.200s\n", i, r->body, read->r.status,
               read->r.body);
    }
    return ok;
}

/* "<records> <outbox rows> <outbox rows of a stored record>" of patient |id| into |out|. */
static int
pw_stored(const char *id, char *out, size_t cap)
{
    return it_psql("records", out, cap,
                   "SELECT (SELECT count(*) FROM records WHERE patient_id = '%s') || ' ' || "
                   "count(*) || ' ' || count(r.id) FROM outbox o LEFT JOIN records r ON "
                   "r.id::text = o.body->'target'->>'id' AND r.patient_id = '%s' WHERE o.topic "
                   "= 'audit' AND o.body->>'action' = 'records.create' AND "
                   "o.body->'target'->>'patient_id' = '%s'",
                   id, id, id) == 0;
}

static void
t_post_waiting_503(void)
{
    static it_call_t gets[GW_READS];
    it_resp_t posts[GW_READS];
    const char *v = it_env("PHR_TEST_VAR");
    int port = it_port("records") + 88, created = 0, refused = 0, bad = 0;
    char cfg[512], env[128], stored[64], want[64];
    it_patient_t p;

    IT_CHECK(it_patient("postwait", GW_PW, 1, &p));
    snprintf(cfg, sizeof(cfg), "%s/run/postwait.curl", v);
    IT_CHECK(pw_curl_config(cfg, port, p.token));
    it_sh("rm -f %s/run/postwait.[0-9]*.*", v);
    snprintf(env, sizeof(env), "PHR_RECORDS_INSERT_WAITING=%d PHR_RECORDS_INSERT_BATCH=%d",
             GW_WAITING, GW_BATCH);
    int up = gw_start("postwait", port, env);
    int locked = up && gw_lock("postwait");
    int sent = locked && it_sh("curl -s --no-progress-meter -Z --parallel-immediate --parallel-max "
                               "%d -K %s",
                               GW_READS, cfg) == 0;
    gw_unlocked("postwait");
    /* Free again: the next create is stored. */
    int again = it_sh("test \"$(curl -s -o /dev/null -w '%%{http_code}' --http2-prior-knowledge "
                      "-H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d "
                      "'{\"type\":\"pulse\",\"measured_at\":\"2026-11-03T08:00:00+09:00\","
                      "\"values\":{\"value\":60}}' http://127.0.0.1:%d/api/v1/me/records)\" = 201",
                      p.token, port) == 0;
    gw_stop("postwait");
    it_sh("rm -f %s", cfg);
    IT_CHECK(up);
    IT_CHECK(locked);
    IT_CHECK(sent);
    for (int i = 0; i < GW_READS; i++) {
        pw_answer(i, &posts[i]);
        const char *id = posts[i].status == 201 ? it_json_str(&posts[i], "id") : NULL;
        memset(&gets[i], 0, sizeof(gets[i]));
        gets[i].token = p.token;
        snprintf(gets[i].path, sizeof(gets[i].path), "/api/v1/me/records/%.36s",
                 id != NULL ? id : "00000000-0000-0000-0000-000000000000");
    }
    int read = it_burst(gets, GW_READS, NULL) == 0;
    for (int i = 0; i < GW_READS; i++) {
        if (posts[i].status == 201) {
            created++;
            bad += !pw_created(&posts[i], &gets[i], &p, i);
        } else if (posts[i].status == 503) {
            refused++;
            bad += !pw_refused(&posts[i]);
        } else {
            bad++;
            printf("    create %d: %ld %.200s\n", i, posts[i].status, posts[i].body);
        }
        it_resp_free(&posts[i]);
        it_resp_free(&gets[i].r);
    }
    printf("    %d creates at once: %d created, %d refused\n", GW_READS, created, refused);
    /* every create answered 201 stored once with one audit event; the 503s left nothing */
    snprintf(want, sizeof(want), "%d %d %d", created + again, created + again, created + again);
    IT_CHECK(pw_stored(p.id, stored, sizeof(stored)));
    if (strcmp(stored, want) != 0) {
        printf("    records, outbox rows, of them of a stored record: %s, want %s\n", stored, want);
    }
    IT_CHECK(read);
    IT_CHECK(bad == 0);
    IT_CHECK(created == GW_ANSWERED && refused == GW_READS - GW_ANSWERED);
    IT_CHECK(again);
    IT_CHECK(strcmp(stored, want) == 0);
}

const it_case_t records_getwait_cases[] = {
    {"records_get_waiting_503", t_get_waiting_503},
    {"records_post_waiting_503", t_post_waiting_503},
    {NULL, NULL},
};
