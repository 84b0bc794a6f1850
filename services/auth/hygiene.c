/*
 * hygiene.c - what auth must not keep:
 *
 *   withdrawn accounts past PHR_RETENTION_DAYS (the same period as records'
 *     purge): e-mail, name and password hash replaced, second factors
 *     (TOTP secret, phone, recovery and SMS codes) and link tokens deleted,
 *     purged_at set; batches of HYG_BATCH accounts, each one transaction
 *     with an auth.account.purge audit event naming the count and the ids
 *     (rows claimed FOR UPDATE SKIP LOCKED, so replicas can run it together);
 *   the secret parameters (initial password, verification and reset links,
 *     SMS codes) of notification rows delivered more than HYG_WIPE_AFTER ago:
 *     the relay only needs the row's idempotency key once it is sent.
 *
 * Runs on a timer and on POST /internal/v1/hygiene/run (phrctl retention
 * run), which answers the counts.
 */
#include "hygiene.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "auth.h"
#include "err.h"
#include "log.h"
#include "outbox.h"
#include "uuid.h"

#define HYG_INTERVAL_S 300
#define HYG_FIRST_S 60
#define HYG_BATCH "100"
#define HYG_BATCH_N 100
#define HYG_MAX_BATCHES 100
#define HYG_WIPE_AFTER "10 minutes"
#define HYG_SECRET_PARAMS "ARRAY['initial_password', 'verify_url', 'reset_url', 'code']"

typedef struct {
    svc_t *svc;
    h2s_req_t *req; /* NULL for the timer */
    db_txn_t *txn;
    int rc;
    int batches;
    long accounts, wiped;
    char days[16];
} hyg_job_t;

static int hyg_timer_busy;
static struct event *hyg_timer;

static void hyg_batch(hyg_job_t *j);

static void
hyg_finish(hyg_job_t *j)
{
    if (j->rc != PHR_OK) {
        log_error("hygiene: stopped after %ld accounts: %s", j->accounts, phr_err_str(j->rc));
    } else if (j->accounts > 0 || j->wiped > 0) {
        log_info("hygiene: %ld withdrawn accounts anonymised, secrets of %ld notifications wiped",
                 j->accounts, j->wiped);
    }
    if (j->req == NULL) {
        hyg_timer_busy = 0;
    } else if (j->rc != PHR_OK) {
        svc_respond_error(j->req, j->rc, "the retention run failed; retry later");
    } else {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "accounts_purged", json_object_new_int64(j->accounts));
        json_object_object_add(o, "notifications_wiped", json_object_new_int64(j->wiped));
        h2s_respond_json(j->req, 200, o);
    }
    free(j);
}

/* ---- secrets of delivered notifications ----------------------------------- */

static void
hyg_wiped(int rc, PGresult *res, void *ud)
{
    hyg_job_t *j = ud;

    if (rc == PHR_OK) {
        j->wiped = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    } else {
        j->rc = rc;
    }
    hyg_finish(j);
}

static void
hyg_wipe(hyg_job_t *j)
{
    static const char sql[] =
        "WITH w AS (UPDATE outbox SET body = jsonb_set(body, '{params}', "
        "(body->'params') - " HYG_SECRET_PARAMS ") WHERE topic = 'notification' "
        "AND sent_at < now() - interval '" HYG_WIPE_AFTER "' "
        "AND body->'params' ?| " HYG_SECRET_PARAMS " RETURNING 1) SELECT count(*) FROM w";
    int rc = db_query(svc_db(j->svc), sql, 0, NULL, hyg_wiped, j);
    if (rc != PHR_OK) {
        j->rc = rc;
        hyg_finish(j);
    }
}

/* ---- withdrawn accounts ----------------------------------------------------- */

static void
hyg_ended(int rc, PGresult *res, void *ud)
{
    hyg_job_t *j = ud;

    if (j->rc == PHR_OK && rc != PHR_OK) {
        j->rc = rc;
    }
    if (j->rc != PHR_OK) {
        hyg_finish(j);
        return;
    }
    hyg_batch(j);
}

static void
hyg_step_done(int rc, PGresult *res, void *ud)
{
    hyg_job_t *j = ud;

    if (rc != PHR_OK && j->rc == PHR_OK) {
        j->rc = rc;
    }
}

static void
hyg_end(hyg_job_t *j)
{
    db_txn_t *txn = j->txn;

    j->txn = NULL;
    int rc = db_txn_end(txn, j->rc == PHR_OK, hyg_ended, j);
    if (rc != PHR_OK) {
        if (j->rc == PHR_OK) {
            j->rc = rc;
        }
        hyg_finish(j);
    }
}

/* The audit event of one batch: how many accounts and which. */
static void
hyg_audit(hyg_job_t *j, PGresult *res, int n)
{
    char run_id[37], event_id[AEV_ID_LEN];
    aev_t ev;

    if (uuid7(run_id) != PHR_OK) {
        j->rc = PHR_EGENERIC;
        return;
    }
    aev_init(&ev, "auth", "auth.account.purge", NULL, NULL);
    ev.target_type = "retention_run";
    ev.target_id = run_id;
    ev.reason = "retention";
    ev.details = json_object_new_object();
    json_object *ids = json_object_new_array();
    for (int i = 0; i < n; i++) {
        json_object_array_add(ids, json_object_new_string(PQgetvalue(res, i, 0)));
    }
    json_object_object_add(ev.details, "accounts_purged", json_object_new_int(n));
    json_object_object_add(ev.details, "retention_days",
                           json_object_new_int((int)strtol(j->days, NULL, 10)));
    json_object_object_add(ev.details, "account_ids", ids);
    char *json = aev_json(&ev, event_id);
    if (json == NULL) {
        j->rc = PHR_ENOMEM;
        return;
    }
    int rc = outbox_add(j->txn, "audit", event_id, json, hyg_step_done, j);
    free(json);
    if (rc != PHR_OK) {
        j->rc = rc;
    }
}

static void
hyg_purged(int rc, PGresult *res, void *ud)
{
    hyg_job_t *j = ud;
    int n = rc == PHR_OK ? PQntuples(res) : 0;

    hyg_step_done(rc, res, ud);
    if (j->rc == PHR_OK && n > 0) {
        hyg_audit(j, res, n);
    }
    if (j->rc == PHR_OK) {
        j->accounts += n;
        if (n < HYG_BATCH_N) { /* nobody else is due */
            j->batches = HYG_MAX_BATCHES;
        }
    }
    hyg_end(j);
}

static void
hyg_begun(int rc, db_txn_t *txn, void *ud)
{
    static const char sql[] =
        "WITH d AS (UPDATE accounts a SET email = 'purged-' || a.id || '@purged.invalid', "
        "name = 'purged', password_hash = '!', email_verified_at = NULL, last_login_at = NULL, "
        "failed_logins = 0, locked_until = NULL, purged_at = now(), updated_at = now() "
        "WHERE a.id IN (SELECT id FROM accounts WHERE status = 'withdrawn' AND purged_at IS NULL "
        "AND withdrawn_at <= now() - make_interval(days => $1::int) ORDER BY withdrawn_at "
        "LIMIT " HYG_BATCH " FOR UPDATE SKIP LOCKED) RETURNING a.id), "
        "t AS (DELETE FROM mfa_totp WHERE account_id IN (SELECT id FROM d)), "
        "r AS (DELETE FROM mfa_recovery_codes WHERE account_id IN (SELECT id FROM d)), "
        "s AS (DELETE FROM mfa_sms WHERE account_id IN (SELECT id FROM d)), "
        "c AS (DELETE FROM mfa_sms_codes WHERE account_id IN (SELECT id FROM d)), "
        "k AS (DELETE FROM account_tokens WHERE account_id IN (SELECT id FROM d)) "
        "SELECT id FROM d ORDER BY id";
    hyg_job_t *j = ud;

    if (rc != PHR_OK) {
        j->rc = rc;
        hyg_finish(j);
        return;
    }
    j->txn = txn;
    const char *p[] = {j->days};
    rc = db_txn_query(txn, sql, 1, p, hyg_purged, j);
    if (rc != PHR_OK) {
        j->rc = rc;
        hyg_end(j);
    }
}

/* The next batch of due accounts, then (none left or enough for one run) the outbox. */
static void
hyg_batch(hyg_job_t *j)
{
    if (j->batches++ >= HYG_MAX_BATCHES) {
        if (j->accounts > 0) {
            outbox_kick(svc_outbox(j->svc));
        }
        hyg_wipe(j);
        return;
    }
    int rc = db_txn_begin(svc_db(j->svc), hyg_begun, j);
    if (rc != PHR_OK) {
        j->rc = rc;
        hyg_finish(j);
    }
}

static hyg_job_t *
hyg_job_new(svc_t *svc, h2s_req_t *req)
{
    hyg_job_t *j = calloc(1, sizeof(*j));

    if (j != NULL) {
        j->svc = svc;
        j->req = req;
        snprintf(j->days, sizeof(j->days), "%d", svc_cfg(svc)->retention_days);
    }
    return j;
}

/* POST /internal/v1/hygiene/run */
static void
hyg_run(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    hyg_job_t *j = hyg_job_new(svc, req);

    if (j == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    hyg_batch(j);
}

static void
hyg_tick(evutil_socket_t fd, short what, void *arg)
{
    svc_t *svc = arg;
    struct timeval every = {HYG_INTERVAL_S, 0};

    event_add(hyg_timer, &every);
    if (hyg_timer_busy || !db_pool_ready(svc_db(svc))) {
        return;
    }
    hyg_job_t *j = hyg_job_new(svc, NULL);
    if (j != NULL) {
        hyg_timer_busy = 1;
        hyg_batch(j);
    }
}

int
auth_hygiene_start(svc_t *svc)
{
    struct timeval first = {HYG_FIRST_S, 0};

    auth_hygiene_stop();
    hyg_timer = evtimer_new(svc_base(svc), hyg_tick, svc);
    if (hyg_timer == NULL) {
        return PHR_ENOMEM;
    }
    evtimer_add(hyg_timer, &first);
    return PHR_OK;
}

void
auth_hygiene_stop(void)
{
    if (hyg_timer != NULL) {
        event_free(hyg_timer);
        hyg_timer = NULL;
    }
}

static const svc_route_t hyg_routes[] = {
    /* phrctl has no service identity of its own: it calls with the auth credential. */
    {"POST", "/internal/v1/hygiene/run", hyg_run,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUTH), 0},
};

const svc_routes_t auth_hygiene_routes = SVC_ROUTES(hyg_routes);
