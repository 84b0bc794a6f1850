/*
 * test_auth_abandon.c - auth does not hash passwords for requests whose
 * client is gone. Many logins with a wrong password go through the gateway
 * on one HTTP/2 connection, more than auth's worker pool runs at once; once
 * auth's queue holds them (phr_workq_pending on its /metrics), the client
 * resets every stream still open. The waiting hashes must then be dropped
 * (phr_workq_dropped_total rises), the pool must empty, and auth must still
 * answer the next login.
 *
 * A correct login whose stored hash is outdated queues a re-hash after the
 * check. Other slow logins keep every worker busy so that re-hash waits in
 * the queue; the client resets the stream while the (slow, old-parameter)
 * check runs, the re-hash is dropped, and the login must end there: no
 * session, no login recorded on the account.
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

/* argon2id m=19456 t=16 p=1 of AB_OLD_PW without a pepper (libargon2's own encoder): a check
 * of some 0.3 s that needs a re-hash to the current parameters and pepper. */
#define AB_OLD_PW "Quiet7Harbor!rehash-gone"
#define AB_OLD_HASH                                                                                \
    "$argon2id$v=19$m=19456,t=16,p=1$cGhyLXJlaGFzaC1nb25lMQ$"                                      \
    "GCRSS9tV51xUYtlu5bpNvTutO2Ku/wnET0m7uQzECW4"
#define AB_BALLAST 6 /* slow wrong-password logins: more than auth's worker threads */

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

/* Wait until auth's pool is empty; 1 when it is. */
static int
ab_pool_idle(void)
{
    for (int i = 0; i < AB_WAIT_S * 10; i++) {
        if (ab_metric("phr_workq_pending") == 0) {
            return 1;
        }
        usleep(100 * 1000);
    }
    return 0;
}

/* Polls |m| until auth's pool holds at least |want| jobs; 1 when it did. */
static int
ab_until_pending(CURLM *m, long want)
{
    int running = 1;

    for (int polls = 0; running > 0 && polls < AB_WAIT_S * 100; polls++) {
        curl_multi_perform(m, &running);
        if (ab_metric("phr_workq_pending") >= want) {
            return 1;
        }
        curl_multi_poll(m, NULL, 0, 5, NULL);
    }
    return 0;
}

/*
 * Starts the login |body|; once its password check runs (the pool was idle, so
 * the job went straight to a worker and cannot be dropped itself), starts the
 * AB_BALLAST logins of |ballast| that keep every worker busy past the check's
 * end, so its re-hash waits in the queue. Then resets the first login's stream
 * and lets the others finish. Returns how many of those were answered 401,
 * -1 when auth's pool never held the logins.
 */
static int
ab_abandon_during_rehash(const char *body, char ballast[][512], size_t nballast)
{
    ab_call_t calls[1 + AB_BALLAST];
    char ca[512];
    int ok, running = 1, refused = 0;
    CURLM *m = curl_multi_init();

    if (m == NULL) {
        return -1;
    }
    memset(calls, 0, sizeof(calls));
    snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    ab_start(m, &calls[0], body, ca);
    ok = ab_until_pending(m, 1);
    for (size_t i = 0; ok && i < nballast; i++) {
        ab_start(m, &calls[1 + i], ballast[i], ca);
    }
    ok = ok && ab_until_pending(m, 1 + (long)nballast);
    if (calls[0].c != NULL) {
        curl_multi_remove_handle(m, calls[0].c); /* RST_STREAM while the check runs */
        curl_easy_cleanup(calls[0].c);
        calls[0].c = NULL;
    }
    for (int polls = 0; running > 0 && polls < AB_WAIT_S * 50; polls++) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    for (size_t i = 0; i < 1 + nballast; i++) {
        if (calls[i].c != NULL) {
            long status = 0;
            curl_easy_getinfo(calls[i].c, CURLINFO_RESPONSE_CODE, &status);
            refused += status == 401;
            curl_multi_remove_handle(m, calls[i].c);
            curl_easy_cleanup(calls[i].c);
        }
        curl_slist_free_all(calls[i].hdrs);
    }
    curl_multi_cleanup(m);
    return ok ? refused : -1;
}

/* The number of sessions listed for |token|; -1 on failure. */
static int
ab_sessions(const char *token)
{
    it_resp_t r;
    int n = -1;

    if (it_gw("GET", "/api/v1/auth/sessions", NULL, token, &r) == 200 && r.json != NULL) {
        json_object *items = NULL;
        if (json_object_object_get_ex(r.json, "items", &items)) {
            n = (int)json_object_array_length(items);
        }
    }
    it_resp_free(&r);
    return n;
}

/* A new patient account with the old-parameter hash into |email| (128) and |id| (64). */
static int
ab_old_account(const char *tag, char *email, char *id)
{
    it_unique_email(email, 128, tag);
    return it_psql("auth", id, 64,
                   "INSERT INTO accounts (email, name, kind, password_hash) "
                   "VALUES ('%s', 'Gone', 'patient', '" AB_OLD_HASH "') RETURNING id",
                   email) == 0 &&
           strlen(id) == 36;
}

/*
 * A login (old-parameter hash, so it needs a re-hash) whose stream is reset
 * while its check runs, with |nballast| wrong-password logins keeping the
 * workers busy meanwhile (0: the pool is otherwise idle). Nothing may be
 * recorded for the departed client: no session, hash and last login as they
 * were. At most its re-hash is dropped (the check itself had a worker at once).
 */
static void
ab_reset_during_check(size_t nballast)
{
    char email[128], id[64], other[128], other_id[64], out[256], body[512];
    char ballast[AB_BALLAST][512], token[IT_TOKEN_CAP];

    IT_CHECK(ab_old_account("rehash-gone", email, id));
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, AB_OLD_PW);
    for (size_t i = 0; i < nballast; i++) {
        IT_CHECK(ab_old_account("rehash-ballast", other, other_id));
        snprintf(ballast[i], sizeof(ballast[i]), "{\"email\":\"%s\",\"password\":\"Wrong-%s\"}",
                 other, AB_OLD_PW);
    }
    IT_CHECK(ab_pool_idle());
    long before = ab_metric("phr_workq_dropped_total");
    IT_CHECK(before >= 0);

    int refused = ab_abandon_during_rehash(body, ballast, nballast);
    IT_CHECK(ab_pool_idle());
    long dropped = ab_metric("phr_workq_dropped_total") - before;
    printf("  %d of %zu other logins refused, %ld hash dropped\n", refused, nballast, dropped);
    IT_CHECK(refused == (int)nballast);
    IT_CHECK(dropped >= 0 && dropped <= 1);
    /* Nothing was recorded for the departed client: hash, last login as they were. */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT (password_hash = '" AB_OLD_HASH "') || ',' || "
                     "(last_login_at IS NULL) FROM accounts WHERE id = '%s'",
                     id) == 0);
    IT_CHECK(strcmp(out, "true,true") == 0);

    /* The next login (re-hashed now) is the account's only session. */
    IT_CHECK(it_login(email, AB_OLD_PW, token) == 200);
    int sessions = ab_sessions(token);
    printf("  sessions after the next login: %d\n", sessions);
    IT_CHECK(sessions == 1);
}

static void
ab_reset_during_rehash_no_session(void)
{
    ab_reset_during_check(AB_BALLAST);
}

static void
ab_reset_idle_pool_no_session(void)
{
    ab_reset_during_check(0);
}

const it_case_t auth_abandon_cases[] = {
    {"auth: hashes of logins whose client reset the stream are dropped",
     ab_reset_drops_queued_hashes},
    {"auth: a login reset while its re-hash waits creates no session",
     ab_reset_during_rehash_no_session},
    {"auth: a login reset during its check on an idle pool creates no session",
     ab_reset_idle_pool_no_session},
    {NULL, NULL},
};
