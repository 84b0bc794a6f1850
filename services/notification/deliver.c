/*
 * deliver.c - the delivery workers and the claim reaper (see deliver.h).
 */
#include "deliver.h"

#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "err.h"
#include "kind.h"
#include "log.h"
#include "notify.h"

#define DLV_POLL_MS 250

struct dlv {
    svc_t *svc;
    prov_t *prov;
    struct event *tick; /* the next claim round */
    struct event *reap; /* the reaper */
    int claiming;       /* a claim query is out */
    int reaping;        /* a reap query is out */
    size_t active;      /* claimed rows not yet recorded */
    size_t max_active;  /* cap of active */
    int stopping;       /* dlv_stop ran: free when the last callback is in */
    unsigned long sent, retried, dead, found;
};

typedef struct {
    dlv_t *d;
    char id[40];
    char kind[40];
    char channel[8];
    int attempts;
    long unknown_since;        /* unix s of an earlier attempt with an unknown outcome; -1: none */
    char claimed_at[48];       /* this claim (text), re-stamped before a send after a lookup */
    char *to, *subject, *body; /* kept for a send after a lookup (body wiped) */
    int unknown;               /* the outcome stays unknown (keep or set unknown_since) */
    int reconciled;            /* DLV_SENT from a lookup: the provider had it, not sent again */
    prov_result_t res;
    dlv_verdict_t verdict;
    long delay_ms;
    int rc;
} dlv_job_t;

static const char dlv_claim_sql[] =
    "UPDATE notifications n SET status = 'sending', claimed_at = now(), "
    "attempts = n.attempts + 1, updated_at = now() "
    "FROM (SELECT id FROM notifications WHERE status = 'queued' AND next_attempt_at <= now() "
    "ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) c WHERE n.id = c.id "
    "RETURNING n.id::text, n.kind, n.channel, n.to_address, n.subject, n.body, n.attempts, "
    "floor(extract(epoch FROM n.unknown_since))::bigint, n.claimed_at::text";

static const char dlv_reap_sql[] =
    "WITH r AS (UPDATE notifications SET status = 'queued', claimed_at = NULL, "
    "unknown_since = coalesce(unknown_since, claimed_at), next_attempt_at = now(), "
    "last_error = 'claim expired: outcome unknown', updated_at = now() "
    "WHERE status = 'sending' AND claimed_at < now() - make_interval(secs => $1::int) "
    "RETURNING id) "
    "INSERT INTO notification_events (notification_id, status, detail) "
    "SELECT id, 'queued', 'claim expired: outcome unknown' FROM r";

static const char dlv_sent_sql[] =
    "UPDATE notifications SET "
    "status = CASE WHEN status IN ('queued', 'sending') THEN 'sent' ELSE status END, "
    "provider = $2, provider_message_id = NULLIF($3, ''), claimed_at = NULL, last_error = NULL, "
    "unknown_since = NULL, updated_at = now(), body = CASE WHEN $4::boolean THEN NULL ELSE body "
    "END, "
    "params = CASE WHEN $4::boolean THEN params - $5::text[] ELSE params END WHERE id = $1";

/* A retry (and its history row) only while this worker's claim stands: a status webhook may
 * have moved the row on already. */
static const char dlv_retry_sql[] =
    "WITH u AS (UPDATE notifications SET status = 'queued', claimed_at = NULL, "
    "next_attempt_at = now() + make_interval(secs => $2::double precision / 1000), "
    "unknown_since = CASE WHEN $4::boolean THEN coalesce(unknown_since, claimed_at) END, "
    "last_error = $3, updated_at = now() WHERE id = $1 AND status = 'sending' RETURNING id) "
    "INSERT INTO notification_events (notification_id, status, detail) "
    "SELECT id, 'queued', $3 FROM u";

static const char dlv_dead_sql[] =
    "WITH u AS (UPDATE notifications SET status = 'dead', claimed_at = NULL, last_error = $2, "
    "updated_at = now(), body = CASE WHEN $3::boolean THEN NULL ELSE body END, "
    "params = CASE WHEN $3::boolean THEN params - $4::text[] ELSE params END "
    "WHERE id = $1 AND status = 'sending' RETURNING id) "
    "INSERT INTO notification_events (notification_id, status, detail) "
    "SELECT id, 'dead', $2 FROM u";

/* Before the send that follows a lookup: the claim still ours, and stamped anew (the attempt
 * starts now; the reaper must not take it while the send is out). */
static const char dlv_restamp_sql[] =
    "UPDATE notifications SET claimed_at = now() WHERE id = $1 AND status = 'sending' "
    "AND claimed_at = $2::timestamptz RETURNING id";

static const char dlv_event_sql[] =
    "INSERT INTO notification_events (notification_id, status, detail) VALUES ($1, $2, $3)";

static void dlv_schedule(dlv_t *d, int ms);

/* Frees a stopped |d| once nothing refers to it any more. */
static void
dlv_maybe_free(dlv_t *d)
{
    if (d->stopping && !d->claiming && !d->reaping && d->active == 0) {
        free(d);
    }
}

dlv_verdict_t
dlv_judge(const char *channel, const prov_result_t *res, int attempts, int max_attempts,
          int base_ms, int cap_ms, int unknown_ms, uint64_t rnd, long *delay_ms)
{
    *delay_ms = 0;
    if (res->rc == PHR_OK && prov_accepted(channel, res->status)) {
        return DLV_SENT;
    }
    int retryable = res->rc != PHR_OK || res->status == 429 || res->status >= 500;
    if (!retryable || attempts >= max_attempts) {
        return DLV_DEAD;
    }
    uint64_t ceil = (uint64_t)(base_ms > 0 ? base_ms : 1);
    for (int i = 1; i < attempts && ceil < (uint64_t)cap_ms; i++) {
        ceil *= 2;
    }
    if (ceil > (uint64_t)cap_ms) {
        ceil = (uint64_t)cap_ms;
    }
    long delay = (long)(rnd % (ceil + 1));
    if (res->rc == PHR_OK && res->retry_after_ms > delay) {
        delay = res->retry_after_ms;
    }
    if (res->rc == PHR_ETIMEDOUT && delay < unknown_ms) {
        delay = unknown_ms; /* maybe sent: give its status webhook time to arrive first */
    }
    *delay_ms = delay;
    return DLV_RETRY;
}

/* "{a,b}": the secret parameter names of |kind| as a PostgreSQL array literal. */
static void
dlv_secret_array(const kind_t *k, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "{");

    for (size_t i = 0; k != NULL && k->secrets != NULL && k->secrets[i] != NULL; i++) {
        len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", i ? "," : "",
                                k->secrets[i]);
    }
    if (len < cap) {
        snprintf(out + len, cap - len, "}");
    }
}

/* ---- recording an outcome ---- */

static void
dlv_job_done(dlv_job_t *j)
{
    dlv_t *d = j->d;

    d->active--;
    free(j->to);
    free(j->subject);
    if (j->body != NULL) {
        explicit_bzero(j->body, strlen(j->body));
        free(j->body);
    }
    free(j);
    if (d->stopping) {
        dlv_maybe_free(d);
        return;
    }
    dlv_schedule(d, 0);
}

static void
dlv_stmt_done(int rc, PGresult *res, void *ud)
{
    dlv_job_t *j = ud;

    if (rc != PHR_OK && j->rc == PHR_OK) {
        j->rc = rc;
    }
}

static void
dlv_end_done(int rc, PGresult *res, void *ud)
{
    dlv_job_t *j = ud;

    if (rc != PHR_OK || j->rc != PHR_OK) {
        log_error("notification %s: outcome not recorded (%s); the claim will be reaped", j->id,
                  phr_err_str(j->rc != PHR_OK ? j->rc : rc));
    } else {
        outbox_kick(svc_outbox(j->d->svc));
    }
    dlv_job_done(j);
}

/* The audit event of a final outcome (ids and codes only). */
static char *
dlv_audit(dlv_job_t *j, char *event_id)
{
    aev_t ev;
    json_object *det = json_object_new_object();

    aev_init(&ev, "notification",
             j->verdict == DLV_SENT ? "notification.delivery.sent" : "notification.dead_letter",
             NULL, NULL);
    ev.target_type = "notification";
    ev.target_id = j->id;
    if (j->verdict != DLV_SENT) {
        ev.result = "failure";
        ev.reason = j->res.rc == PHR_OK ? "provider_rejected" : "provider_unreachable";
    }
    json_object_object_add(det, "kind", json_object_new_string(j->kind));
    json_object_object_add(det, "channel", json_object_new_string(j->channel));
    json_object_object_add(det, "attempts", json_object_new_int(j->attempts));
    json_object_object_add(det, "provider_status", json_object_new_int((int)j->res.status));
    ev.details = det;
    return aev_json(&ev, event_id);
}

static void
dlv_record_begun(int rc, db_txn_t *txn, void *ud)
{
    dlv_job_t *j = ud;
    const kind_t *k = kind_find(j->kind);
    int secret = k != NULL && kind_has_secrets(k);
    char secrets[256], delay[32], event_id[AEV_ID_LEN];
    const char *provider = strcmp(j->channel, "sms") == 0 ? "twilio" : "sendgrid";
    const char *err = j->res.error;
    char *audit = NULL;

    if (rc != PHR_OK) {
        log_error("notification %s: outcome not recorded (%s); the claim will be reaped", j->id,
                  phr_err_str(rc));
        dlv_job_done(j);
        return;
    }
    dlv_secret_array(k, secrets, sizeof(secrets));
    if (j->verdict == DLV_SENT) {
        const char *p[] = {j->id, provider, j->res.message_id, secret ? "true" : "false", secrets};
        const char *e[] = {j->id, "sent",
                           j->reconciled ? "found at the provider (an earlier attempt): not sent "
                                           "again"
                                         : NULL};
        db_txn_query(txn, dlv_sent_sql, 5, p, dlv_stmt_done, j);
        db_txn_query(txn, dlv_event_sql, 3, e, dlv_stmt_done, j);
    } else if (j->verdict == DLV_RETRY) {
        snprintf(delay, sizeof(delay), "%ld", j->delay_ms);
        const char *p[] = {j->id, delay, err, j->unknown ? "true" : "false"};
        db_txn_query(txn, dlv_retry_sql, 4, p, dlv_stmt_done, j);
    } else {
        const char *p[] = {j->id, err, secret ? "true" : "false", secrets};
        db_txn_query(txn, dlv_dead_sql, 4, p, dlv_stmt_done, j);
    }
    if (j->verdict != DLV_RETRY) {
        audit = dlv_audit(j, event_id);
        if (audit == NULL ||
            outbox_add(txn, "audit", event_id, audit, dlv_stmt_done, j) != PHR_OK) {
            j->rc = PHR_ENOMEM;
        }
        free(audit);
    }
    if (db_txn_end(txn, j->rc == PHR_OK, dlv_end_done, j) != PHR_OK) {
        log_error("notification %s: outcome not recorded; the claim will be reaped", j->id);
        dlv_job_done(j);
    }
}

static void
dlv_sent_cb(const prov_result_t *res, void *ud)
{
    dlv_job_t *j = ud;
    dlv_t *d = j->d;
    const cfg_t *cfg = svc_cfg(d->svc);
    uint64_t rnd = 0;

    if (d->stopping || res->rc == PHR_ECLOSED) {
        dlv_job_done(j); /* abandoned: the claim is reaped after a restart */
        return;
    }
    j->res = *res;
    j->unknown = j->unknown || res->rc != PHR_OK; /* maybe sent: look it up before a resend */
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    j->verdict = dlv_judge(j->channel, res, j->attempts, cfg->notify_max_attempts,
                           cfg->notify_backoff_base_ms, cfg->notify_backoff_max_ms,
                           cfg->provider_timeout_ms, rnd, &j->delay_ms);
    if (j->verdict == DLV_SENT && j->reconciled) {
        d->found++;
        log_info("notification %s: %s has it from an earlier attempt: not sent again", j->id,
                 strcmp(j->channel, "sms") == 0 ? "twilio" : "sendgrid");
    } else if (j->verdict == DLV_SENT) {
        d->sent++;
        log_info("notification %s: accepted by %s (attempt %d)", j->id,
                 strcmp(j->channel, "sms") == 0 ? "twilio" : "sendgrid", j->attempts);
    } else if (j->verdict == DLV_RETRY) {
        d->retried++;
        log_info("notification %s: attempt %d failed (%s); retry in %ld ms", j->id, j->attempts,
                 res->error, j->delay_ms);
    } else {
        d->dead++;
        log_warn("notification %s: dead after %d attempt(s) (%s)", j->id, j->attempts, res->error);
    }
    if (db_txn_begin(svc_db(d->svc), dlv_record_begun, j) != PHR_OK) {
        log_error("notification %s: outcome not recorded; the claim will be reaped", j->id);
        dlv_job_done(j);
    }
}

/* ---- an attempt after one whose outcome is unknown: look it up first ---- */

static void
dlv_send(dlv_job_t *j, const prov_msg_t *m)
{
    int src = prov_send(j->d->prov, m, dlv_sent_cb, j);

    if (src != PHR_OK) {
        prov_result_t r = {.rc = PHR_OK, .status = 400, .retry_after_ms = -1};
        snprintf(r.error, sizeof(r.error), "not sendable: %s", phr_err_str(src));
        dlv_sent_cb(&r, j);
    }
}

/* The message of |j| from its kept copies. */
static prov_msg_t
dlv_job_msg(dlv_job_t *j)
{
    const kind_t *k = kind_find(j->kind);
    prov_msg_t m = {
        .id = j->id,
        .kind = j->kind,
        .channel = j->channel,
        .to = j->to,
        .subject = j->subject,
        .body = j->body,
        .tracking_off = k == NULL || kind_has_secrets(k),
    };
    return m;
}

static void
dlv_restamped(int rc, PGresult *res, void *ud)
{
    dlv_job_t *j = ud;

    if (j->d->stopping) {
        dlv_job_done(j);
        return;
    }
    if (rc != PHR_OK || PQntuples(res) != 1) {
        log_warn("notification %s: claim lost before the send (%s); left to its new owner", j->id,
                 phr_err_str(rc));
        dlv_job_done(j);
        return;
    }
    prov_msg_t m = dlv_job_msg(j);
    dlv_send(j, &m);
}

static void
dlv_looked_cb(const prov_result_t *res, void *ud)
{
    dlv_job_t *j = ud;
    dlv_t *d = j->d;

    if (d->stopping || res->rc == PHR_ECLOSED) {
        dlv_job_done(j); /* abandoned: reaped after a restart, looked up again */
        return;
    }
    if (res->rc == PHR_OK && res->status == 200 && res->found) {
        prov_result_t r = *res;
        r.status = strcmp(j->channel, "sms") == 0 ? 201 : 202; /* accepted back then */
        j->reconciled = 1;
        dlv_sent_cb(&r, j);
        return;
    }
    int answered = res->rc == PHR_OK && res->status != 429 && res->status < 500;
    if (!answered) { /* still unknown: retry the lookup later */
        j->unknown = 1;
        dlv_sent_cb(res, j);
        return;
    }
    if (res->status != 200) {
        log_warn("notification %s: lookup refused (%s): sending again without it", j->id,
                 res->error);
    }
    const char *p[] = {j->id, j->claimed_at};
    if (db_query(svc_db(d->svc), dlv_restamp_sql, 2, p, dlv_restamped, j) != PHR_OK) {
        log_warn("notification %s: claim not stamped; the claim will be reaped", j->id);
        dlv_job_done(j);
    }
}

/* Keeps the message of row |i| in |j| and looks it up at the provider. */
static void
dlv_lookup(dlv_job_t *j, PGresult *res, int i)
{
    j->to = strdup(PQgetvalue(res, i, 3));
    j->subject = PQgetisnull(res, i, 4) ? NULL : strdup(PQgetvalue(res, i, 4));
    j->body = PQgetisnull(res, i, 5) ? NULL : strdup(PQgetvalue(res, i, 5));
    snprintf(j->claimed_at, sizeof(j->claimed_at), "%s", PQgetvalue(res, i, 8));
    prov_msg_t m = dlv_job_msg(j);
    int src = j->to == NULL || (j->body == NULL && !PQgetisnull(res, i, 5))
                  ? PHR_ENOMEM
                  : prov_lookup(j->d->prov, &m, j->unknown_since - 1, dlv_looked_cb, j);
    if (src != PHR_OK) {
        prov_result_t r = {.rc = PHR_OK, .status = 400, .retry_after_ms = -1};
        snprintf(r.error, sizeof(r.error), "not sendable: %s", phr_err_str(src));
        dlv_sent_cb(&r, j);
    }
}

/* ---- claiming ---- */

static void
dlv_claimed(int rc, PGresult *res, void *ud)
{
    dlv_t *d = ud;
    int n = rc == PHR_OK ? PQntuples(res) : 0;
    int want = 0;

    d->claiming = 0;
    if (d->stopping) {
        dlv_maybe_free(d); /* the claimed rows are reaped after a restart */
        return;
    }
    if (rc != PHR_OK) {
        log_warn("notification claim: %s", phr_err_str(rc));
    }
    for (int i = 0; i < n; i++) {
        dlv_job_t *j = calloc(1, sizeof(*j));
        const kind_t *k = kind_find(PQgetvalue(res, i, 1));
        if (j == NULL) {
            continue; /* reaped later */
        }
        j->d = d;
        snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 0));
        snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(res, i, 1));
        snprintf(j->channel, sizeof(j->channel), "%s", PQgetvalue(res, i, 2));
        j->attempts = (int)strtol(PQgetvalue(res, i, 6), NULL, 10);
        j->unknown_since = PQgetisnull(res, i, 7) ? -1 : strtol(PQgetvalue(res, i, 7), NULL, 10);
        d->active++;
        if (j->unknown_since >= 0) {
            dlv_lookup(j, res, i);
            continue;
        }
        prov_msg_t m = {
            .id = j->id,
            .kind = j->kind,
            .channel = j->channel,
            .to = PQgetvalue(res, i, 3),
            .subject = PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
            .body = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5),
            .tracking_off = k == NULL || kind_has_secrets(k),
        };
        dlv_send(j, &m);
    }
    want = n > 0 && (size_t)n == (size_t)svc_cfg(d->svc)->notify_batch;
    dlv_schedule(d, want ? 0 : DLV_POLL_MS);
}

static void
dlv_on_tick(evutil_socket_t fd, short what, void *arg)
{
    dlv_t *d = arg;
    const cfg_t *cfg = svc_cfg(d->svc);
    char limit[16];

    if (d->claiming || d->active >= d->max_active) {
        return; /* rescheduled when the claim answers or a job ends */
    }
    size_t room = d->max_active - d->active;
    size_t batch = (size_t)cfg->notify_batch < room ? (size_t)cfg->notify_batch : room;
    snprintf(limit, sizeof(limit), "%zu", batch);
    const char *p[] = {limit};
    if (db_query(svc_db(d->svc), dlv_claim_sql, 1, p, dlv_claimed, d) == PHR_OK) {
        d->claiming = 1;
    } else {
        dlv_schedule(d, DLV_POLL_MS * 4);
    }
}

static void
dlv_schedule(dlv_t *d, int ms)
{
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    if (d->claiming || d->stopping) {
        return;
    }
    if (ms == 0 || !evtimer_pending(d->tick, NULL)) {
        evtimer_add(d->tick, &tv);
    }
}

/* ---- reaper ---- */

static void
dlv_reaped(int rc, PGresult *res, void *ud)
{
    dlv_t *d = ud;

    d->reaping = 0;
    if (d->stopping) {
        dlv_maybe_free(d);
        return;
    }
    if (rc == PHR_OK) {
        const char *n = PQcmdTuples(res);
        if (n != NULL && n[0] != '\0' && strcmp(n, "0") != 0) {
            log_warn("notification reaper: %s stale claim(s) requeued", n);
            dlv_schedule(d, 0);
        }
    }
}

static void
dlv_on_reap(evutil_socket_t fd, short what, void *arg)
{
    dlv_t *d = arg;
    char secs[16];

    if (d->reaping) {
        return;
    }
    snprintf(secs, sizeof(secs), "%d", svc_cfg(d->svc)->notify_claim_timeout_s);
    const char *p[] = {secs};
    if (db_query(svc_db(d->svc), dlv_reap_sql, 1, p, dlv_reaped, d) == PHR_OK) {
        d->reaping = 1;
    }
}

/* ---- life cycle ---- */

void
notify_kick(svc_t *svc)
{
    dlv_t *d = svc_data(svc);

    if (d != NULL) {
        dlv_schedule(d, 0);
    }
}

int
dlv_start(svc_t *svc)
{
    const cfg_t *cfg = svc_cfg(svc);
    dlv_t *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        return PHR_ENOMEM;
    }
    d->svc = svc;
    d->max_active = (size_t)cfg->notify_batch; /* sends in flight: one batch */
    d->prov = prov_create(svc_base(svc), cfg);
    d->tick = evtimer_new(svc_base(svc), dlv_on_tick, d);
    d->reap = event_new(svc_base(svc), -1, EV_PERSIST, dlv_on_reap, d);
    if (d->prov == NULL || d->tick == NULL || d->reap == NULL) {
        prov_free(d->prov);
        if (d->tick != NULL) {
            event_free(d->tick);
        }
        if (d->reap != NULL) {
            event_free(d->reap);
        }
        free(d);
        return PHR_ENOMEM;
    }
    if ((long)cfg->notify_claim_timeout_s * 1000 <= (long)cfg->provider_timeout_ms) {
        log_warn("PHR_NOTIFY_CLAIM_TIMEOUT_S should exceed PHR_PROVIDER_TIMEOUT_MS: sends in "
                 "flight may be reaped and sent twice");
    }
    int every_ms = cfg->notify_claim_timeout_s * 1000 / 2;
    if (every_ms < 500) {
        every_ms = 500;
    }
    struct timeval tv = {every_ms / 1000, (suseconds_t)(every_ms % 1000) * 1000};
    event_add(d->reap, &tv);
    svc_set_data(svc, d);
    dlv_schedule(d, DLV_POLL_MS);
    return PHR_OK;
}

void
dlv_stop(svc_t *svc)
{
    dlv_t *d = svc_data(svc);

    if (d == NULL) {
        return;
    }
    svc_set_data(svc, NULL);
    d->stopping = 1;
    event_free(d->tick);
    event_free(d->reap);
    d->tick = d->reap = NULL;
    d->active++;        /* hold |d| while the aborted sends call back */
    prov_free(d->prov); /* in-flight sends end with PHR_ECLOSED; their claims are reaped later */
    d->prov = NULL;
    d->active--;
    dlv_maybe_free(d);
}
