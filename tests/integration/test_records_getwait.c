/*
 * test_records_getwait.c - reads of one record beyond PHR_RECORDS_GET_WAITING are refused
 * with 503 problem+json and Retry-After while the pool is busy (services/records/getbatch.c),
 * and the service answers again once it frees.
 *
 * A second phr-records runs beside the stack's with one PostgreSQL connection and the
 * smallest waiting limit (16); the records table is locked so that its one read in flight
 * blocks; 40 reads arrive at once (curl -Z --parallel-immediate: one h2c connection each, as
 * curl 7.88 fails reusing a prior-knowledge connection, curl issue 10634): 1 in flight + 16
 * waiting are answered 200 when the lock goes, the other 23 get the 503 at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define GW_PW "Blue7Harbor!qWait"
#define GW_READS 40
#define GW_WAITING 16
#define GW_ANSWERED (1 + GW_WAITING) /* the pool's one read in flight and those waiting */

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

static void
t_get_waiting_503(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    const char *b = it_env("PHR_BUILD");
    int port = it_port("records") + 87;
    char rec[37], cfg[512], out[64];
    it_patient_t p;

    IT_CHECK(it_patient("getwait", GW_PW, 1, &p) && gw_record(p.token, rec, sizeof(rec)));
    snprintf(cfg, sizeof(cfg), "%s/run/getwait.curl", v);
    IT_CHECK(gw_curl_config(cfg, port, p.token, rec));
    it_sh("rm -f %s/run/getwait.[0-9]*.json", v);
    IT_CHECK(it_sh("PHR_RECORDS_PORT=%d PHR_PG_POOL=1 PHR_RECORDS_GET_WAITING=%d "
                   "%s/bin/phr-records > %s/log/getwait.log 2>&1 & echo $! > %s/run/getwait.pid",
                   port, GW_WAITING, b, v, v) == 0);
    int up = it_sh("for i in $(seq 100); do test \"$(curl -s -o /dev/null -w '%%{http_code}' "
                   "--http2-prior-knowledge http://127.0.0.1:%d/readyz)\" = 200 && exit 0; "
                   "sleep 0.1; done; exit 1",
                   port) == 0;

    /* The table locked for 3 s: the one connection's read waits for it. */
    int locked = up && it_sh("PGPASSWORD='%s' psql -X -q -h %s -p %s -U phr_records -d "
                             "phr_records -c 'BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE "
                             "MODE; SELECT pg_sleep(3); COMMIT' > %s/log/getwait-lock.log 2>&1 & "
                             "echo $! > %s/run/getwait-lock.pid",
                             it_secret("pg_records.password"), it_env("PHR_TEST_PG_HOST"),
                             it_env("PHR_TEST_PG_PORT"), v, v) == 0;
    for (int i = 0; locked && i < 50; i++) {
        if (it_psql("records", out, sizeof(out),
                    "SELECT count(*) FROM pg_locks WHERE relation = 'records'::regclass "
                    "AND mode = 'AccessExclusiveLock' AND granted") == 0 &&
            strcmp(out, "1") == 0) {
            break;
        }
        locked = i < 49;
        it_sh("sleep 0.1");
    }
    int sent = locked && it_sh("curl -s --no-progress-meter -Z --parallel-immediate --parallel-max "
                               "%d --http2-prior-knowledge -K %s "
                               "-w '%%{http_code} %%{content_type} %%header{retry-after}\\n' "
                               "> %s/run/getwait.out",
                               GW_READS, cfg, v) == 0;
    it_sh("while kill -0 $(cat %s/run/getwait-lock.pid) 2> /dev/null; do sleep 0.1; done", v);
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
    it_sh("kill -TERM $(cat %s/run/getwait.pid); while kill -0 $(cat %s/run/getwait.pid) "
          "2> /dev/null; do sleep 0.1; done",
          v, v);
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

const it_case_t records_getwait_cases[] = {
    {"records_get_waiting_503", t_get_waiting_503},
    {NULL, NULL},
};
