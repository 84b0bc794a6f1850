/*
 * test_auth_abandon.c - auth does not hash passwords for requests whose
 * client is gone. Many logins with a wrong password go through the gateway
 * on one HTTP/2 connection, more than auth's worker pool runs at once; once
 * auth's queue holds them (phr_workq_pending on its /metrics), the client
 * resets every stream still open. The waiting hashes must then be dropped
 * (phr_workq_dropped_total rises), the pool must empty, and auth must still
 * answer the next login.
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR,
 * PHR_AUTH_PORT.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"

#define AB_PW "Quiet7Harbor!lantern"
#define AB_N 48      /* logins at once: far more than the worker threads */
#define AB_QUEUED 12 /* reset once this many hashes are queued or running */
#define AB_WAIT_S 30 /* for the queue to fill, then for it to empty */

/* The value of metric line "|name|{service="auth"} " on auth's /metrics; -1 when absent. */
static long
ab_metric(const char *name)
{
    it_resp_t r;
    char key[128];
    long v = -1;

    snprintf(key, sizeof(key), "%s{service=\"auth\"} ", name);
    if (it_request(IT_DIRECT, "auth", "GET", "/metrics", NULL, 0, NULL, &r) != 0) {
        return -1;
    }
    const char *p = r.status == 200 && r.body != NULL ? strstr(r.body, key) : NULL;
    if (p != NULL) {
        v = strtol(p + strlen(key), NULL, 10);
    }
    it_resp_free(&r);
    return v;
}

typedef struct {
    CURL *c;
    struct curl_slist *hdrs;
    int finished; /* answered (or failed) before the reset */
} ab_call_t;

/* The answers' bodies do not matter here. */
static size_t
ab_discard(char *data, size_t size, size_t nmemb, void *ud)
{
    (void)data;
    (void)ud;
    return size * nmemb;
}

static void
ab_start(CURLM *m, ab_call_t *a, const char *body, const char *ca)
{
    char url[512];

    snprintf(url, sizeof(url), "%s/api/v1/auth/login", it_env("PHR_TEST_GATEWAY"));
    a->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    a->c = curl_easy_init();
    if (a->c == NULL) {
        return;
    }
    curl_easy_setopt(a->c, CURLOPT_URL, url);
    curl_easy_setopt(a->c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(a->c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(a->c, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(a->c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(a->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(a->c, CURLOPT_HTTPHEADER, a->hdrs);
    curl_easy_setopt(a->c, CURLOPT_WRITEFUNCTION, ab_discard);
    curl_multi_add_handle(m, a->c);
}

/* Marks the transfers that completed. */
static void
ab_reap(CURLM *m, ab_call_t *calls)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        for (size_t i = 0; msg->msg == CURLMSG_DONE && i < AB_N; i++) {
            calls[i].finished |= calls[i].c == msg->easy_handle;
        }
    }
}

/*
 * Drives the |AB_N| logins until auth holds at least AB_QUEUED of them in
 * its pool, then resets every stream still open (curl_multi_remove_handle
 * sends RST_STREAM). Returns how many were answered before; the pending
 * count seen into |*seen|.
 */
static int
ab_storm(const char *body, long *seen)
{
    ab_call_t calls[AB_N];
    char ca[512];
    int running = 1, answered = 0;
    CURLM *m = curl_multi_init();

    *seen = 0;
    if (m == NULL) {
        return -1;
    }
    memset(calls, 0, sizeof(calls));
    snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    for (size_t i = 0; i < AB_N; i++) {
        ab_start(m, &calls[i], body, ca);
    }
    for (int polls = 0; running > 0 && polls < AB_WAIT_S * 50; polls++) {
        curl_multi_perform(m, &running);
        ab_reap(m, calls);
        *seen = ab_metric("phr_workq_pending");
        if (*seen >= AB_QUEUED) {
            break;
        }
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    for (size_t i = 0; i < AB_N; i++) {
        if (calls[i].c != NULL) {
            answered += calls[i].finished;
            curl_multi_remove_handle(m, calls[i].c); /* RST_STREAM when still open */
            curl_easy_cleanup(calls[i].c);
        }
        curl_slist_free_all(calls[i].hdrs);
    }
    curl_multi_cleanup(m);
    return answered;
}

static void
ab_reset_drops_queued_hashes(void)
{
    it_patient_t p;
    char body[512], other[128];
    long seen = 0, pending = -1;

    IT_CHECK(it_patient("abandon", AB_PW, 0, &p));
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"Wrong-%s\"}", p.email, AB_PW);
    long before = ab_metric("phr_workq_dropped_total");
    IT_CHECK(before >= 0);

    int answered = ab_storm(body, &seen);
    IT_CHECK(answered >= 0);
    IT_CHECK(seen >= AB_QUEUED); /* the logins did queue up in auth's pool */

    /* The pool empties: what was running finishes, what waited is dropped. */
    for (int i = 0; i < AB_WAIT_S * 10; i++) {
        pending = ab_metric("phr_workq_pending");
        if (pending == 0) {
            break;
        }
        usleep(100 * 1000);
    }
    long dropped = ab_metric("phr_workq_dropped_total") - before;
    printf("  %d logins, %d answered before the reset, %ld in auth's pool then, %ld dropped\n",
           AB_N, answered, seen, dropped);
    IT_CHECK(pending == 0);
    IT_CHECK(dropped >= 1);
    IT_CHECK(dropped <= AB_N - answered);

    /* The pool still works: the next login is checked and refused as usual. */
    it_unique_email(other, sizeof(other), "abandon-next");
    IT_CHECK(it_login(other, AB_PW, NULL) == 401);
}

const it_case_t auth_abandon_cases[] = {
    {"auth: hashes of logins whose client reset the stream are dropped",
     ab_reset_drops_queued_hashes},
    {NULL, NULL},
};
