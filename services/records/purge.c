/*
 * purge.c - a patient's data leaving the service.
 *
 *   POST /api/v1/me/deletion {password}: the password is checked again by
 *     auth (POST /internal/v1/accounts/{id}/verify-password over HTTP/2),
 *     then everything of the patient is purged at once;
 *   POST /internal/v1/patients/{patient_id}/withdrawal (auth): the links end
 *     now, the data is kept until withdrawn_at + RETENTION_DAYS (a row of
 *     `withdrawals`); repeated notices change nothing;
 *   POST /internal/v1/retention/run, and the same job on a timer: purges the
 *     withdrawn patients that are due (each in its own transaction, rows
 *     claimed FOR UPDATE SKIP LOCKED so replicas can run it together) and
 *     unused invitations expired or cancelled more than RETENTION_DAYS ago.
 *
 * A purge is one transaction: record history, records, idempotency keys,
 * group and category memberships, links, the patient as used_by of
 * invitations, and a records.patient.purge audit event (outbox) naming the
 * reason and the number of records; the withdrawal row stays as the trace
 * (purged_at).
 */
#include "purge.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "err.h"
#include "log.h"
#include "records.h"
#include "timeutil.h"
#include "uuid.h"

#define PURGE_INTERVAL_S 3600
#define PURGE_FIRST_S 60
#define PURGE_MAX_PER_RUN 1000

/* ---- one patient's purge inside a transaction ----------------------------- */

typedef struct purge_one purge_one_t;
typedef void (*purge_done_fn)(purge_one_t *p, int rc);

struct purge_one {
    svc_t *svc;
    db_txn_t *txn;
    char patient_id[37];
    const char *reason; /* "deletion_request" | "retention" */
    h2s_req_t *req;     /* the audit actor: the caller of |req|, or the service */
    const sess_t *sess; /* may be NULL */
    int rc;             /* first statement error */
    long records;       /* records purged */
    purge_done_fn done; /* after COMMIT/ROLLBACK (the transaction is gone) */
    char event_id[AEV_ID_LEN];
};

static const char *const purge_stmts[] = {
    "DELETE FROM record_history WHERE patient_id = $1::uuid",
    "DELETE FROM record_idempotency WHERE patient_id = $1::uuid",
    "DELETE FROM import_idempotency WHERE patient_id = $1::uuid",
    "DELETE FROM group_members WHERE patient_id = $1::uuid",
    "DELETE FROM category_members WHERE patient_id = $1::uuid",
    "DELETE FROM links WHERE patient_id = $1::uuid",
    "UPDATE invitations SET used_by = NULL WHERE used_by = $1::uuid",
    "UPDATE withdrawals SET purged_at = now() WHERE patient_id = $1::uuid AND purged_at IS NULL",
};
static const char purge_records_sql[] =
    "WITH d AS (DELETE FROM records WHERE patient_id = $1::uuid RETURNING 1) "
    "SELECT count(*) FROM d";

static void
purge_ended(int rc, PGresult *res, void *ud)
{
    purge_one_t *p = ud;

    p->txn = NULL;
    p->done(p, p->rc != PHR_OK ? p->rc : rc);
}

static void
purge_end(purge_one_t *p, int rc)
{
    if (rc != PHR_OK && p->rc == PHR_OK) {
        p->rc = rc;
    }
    db_txn_t *txn = p->txn;
    p->txn = NULL;
    if (db_txn_end(txn, p->rc == PHR_OK, purge_ended, p) != PHR_OK) {
        p->done(p, p->rc != PHR_OK ? p->rc : PHR_EUNAVAIL);
    }
}

static void
purge_stmt_done(int rc, PGresult *res, void *ud)
{
    purge_one_t *p = ud;

    if (rc != PHR_OK && p->rc == PHR_OK) {
        p->rc = rc;
    }
}

static void
purge_audit_done(int rc, PGresult *res, void *ud)
{
    purge_end(ud, rc);
}

static void
purge_records_done(int rc, PGresult *res, void *ud)
{
    purge_one_t *p = ud;

    if (rc != PHR_OK || p->rc != PHR_OK) {
        purge_end(p, rc);
        return;
    }
    p->records = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    aev_t ev;
    aev_init(&ev, "records", "records.patient.purge", p->req, p->sess);
    if (p->sess == NULL) {
        ev.actor_kind = "service";
    }
    ev.target_type = "patient";
    ev.target_id = p->patient_id;
    ev.patient_id = p->patient_id;
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "reason", json_object_new_string(p->reason));
    json_object_object_add(ev.details, "records", json_object_new_int64(p->records));
    char *json = aev_json(&ev, p->event_id);
    rc = json != NULL ? outbox_add(p->txn, "audit", p->event_id, json, purge_audit_done, p)
                      : PHR_ENOMEM;
    free(json);
    if (rc != PHR_OK) {
        purge_end(p, rc);
    }
}

/* Queues the purge of p->patient_id on p->txn; p->done follows the COMMIT. */
static void
purge_queue(purge_one_t *p)
{
    const char *params[] = {p->patient_id};

    p->rc = PHR_OK;
    p->records = 0;
    for (size_t i = 0; i < sizeof(purge_stmts) / sizeof(purge_stmts[0]); i++) {
        int rc = db_txn_query(p->txn, purge_stmts[i], 1, params, purge_stmt_done, p);
        if (rc != PHR_OK) {
            purge_end(p, rc);
            return;
        }
    }
    int rc = db_txn_query(p->txn, purge_records_sql, 1, params, purge_records_done, p);
    if (rc != PHR_OK) {
        purge_end(p, rc);
    }
}

/* ---- POST /api/v1/me/deletion ------------------------------------------------ */

typedef struct {
    purge_one_t p;
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
} del_ctx_t;

static void
del_ctx_free(void *arg)
{
    free(arg);
}

static void
del_purged(purge_one_t *p, int rc)
{
    del_ctx_t *d = (del_ctx_t *)p; /* p is the first member */

    if (rc != PHR_OK) {
        svc_respond_error(d->req, rc, "the data could not be deleted; nothing was deleted");
        return;
    }
    outbox_kick(svc_outbox(d->svc));
    log_info("deletion: patient %s purged (%ld records)", d->sess.account_id, p->records);
    h2s_respond(d->req, 204, NULL, NULL, 0);
}

static void
del_begun(int rc, db_txn_t *txn, void *ud)
{
    del_ctx_t *d = ud;

    if (rc != PHR_OK) {
        svc_respond_error(d->req, rc, "the data could not be deleted; retry later");
        return;
    }
    d->p.txn = txn;
    purge_queue(&d->p);
}

/* auth's answer to the password check. */
static void
del_verified(int rc, const hcli_resp_t *resp, void *ud)
{
    del_ctx_t *d = ud;

    if (rc != PHR_OK) {
        svc_respond_error(d->req, PHR_EUNAVAIL, "the password cannot be checked now; retry later");
        return;
    }
    if (resp->status == 204) {
        rc = db_txn_begin(svc_db(d->svc), del_begun, d);
        if (rc != PHR_OK) {
            svc_respond_error(d->req, rc, "the data could not be deleted; retry later");
        }
        return;
    }
    if (resp->status == 422) {
        h2s_respond_problem(d->req, 422, "invalid_credentials", "the password is not correct",
                            NULL);
        return;
    }
    if (resp->status == 423 || resp->status == 429) {
        json_object *o = json_tokener_parse(resp->body != NULL ? resp->body : "");
        const char *code = jx_get_str(o, "code", "too_many_attempts");
        h2s_respond_problem(d->req, resp->status, code,
                            "too many wrong passwords; wait before trying again", NULL);
        json_object_put(o);
        return;
    }
    log_warn("deletion: verify-password answered %d", resp->status);
    if (resp->status == 404) {
        h2s_respond_problem(d->req, 403, "forbidden", "the account cannot delete data", NULL);
        return;
    }
    svc_respond_error(d->req, resp->status >= 500 ? PHR_EUNAVAIL : PHR_EGENERIC,
                      "the password cannot be checked now; retry later");
}

static void
purge_deletion(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {.name = "password", .type = JX_STRING, .required = 1, .min_len = 1, .max_len = 1024},
    };
    json_object *body = NULL;
    char path[128];

    if (strcmp(sess->kind, "patient") != 0) {
        h2s_respond_problem(req, 403, "forbidden", "only patients delete their records", NULL);
        return;
    }
    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    del_ctx_t *d = calloc(1, sizeof(*d));
    if (d == NULL || h2s_req_add_cleanup(req, del_ctx_free, d) != PHR_OK) {
        free(d);
        json_object_put(body);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    d->svc = svc;
    d->req = req;
    d->sess = *sess;
    d->p.svc = svc;
    d->p.req = req;
    d->p.sess = &d->sess;
    d->p.reason = "deletion_request";
    d->p.done = del_purged;
    snprintf(d->p.patient_id, sizeof(d->p.patient_id), "%s", sess->account_id);

    size_t len = 0;
    const char *json = jx_to_string(body, &len);
    snprintf(path, sizeof(path), "/internal/v1/accounts/%s/verify-password", sess->account_id);
    hcli_t *auth = svc_peer(svc, CFG_SVC_AUTH);
    int rc = auth != NULL ? hcli_request(auth, "POST", path, "application/json", json, len,
                                         h2s_req_id(req), del_verified, d)
                          : PHR_EUNAVAIL;
    json_object_put(body);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the password cannot be checked now; retry later");
    }
}

/* ---- POST /internal/v1/patients/{patient_id}/withdrawal -------------------- */

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    db_txn_t *txn;
    int rc;
    int fresh; /* the first notice: audit it */
    char patient_id[37];
    char at_ms[24];
    char days[16];
    char event_id[AEV_ID_LEN];
} wd_ctx_t;

static void
wd_ctx_free(void *arg)
{
    free(arg);
}

static void
wd_committed(int rc, PGresult *res, void *ud)
{
    wd_ctx_t *w = ud;

    w->txn = NULL;
    rc = w->rc != PHR_OK ? w->rc : rc;
    if (rc != PHR_OK) {
        svc_respond_error(w->req, rc, "the withdrawal could not be recorded; retry later");
        return;
    }
    if (w->fresh) {
        outbox_kick(svc_outbox(w->svc));
    }
    h2s_respond(w->req, 204, NULL, NULL, 0);
}

static void
wd_end(wd_ctx_t *w, int rc)
{
    if (rc != PHR_OK && w->rc == PHR_OK) {
        w->rc = rc;
    }
    db_txn_t *txn = w->txn;
    w->txn = NULL;
    if (db_txn_end(txn, w->rc == PHR_OK, wd_committed, w) != PHR_OK) {
        svc_respond_error(w->req, PHR_EUNAVAIL,
                          "the withdrawal could not be recorded; retry later");
    }
}

static void
wd_stmt_done(int rc, PGresult *res, void *ud)
{
    wd_end(ud, rc);
}

static void
wd_links_done(int rc, PGresult *res, void *ud)
{
    wd_ctx_t *w = ud;

    if (rc != PHR_OK || !w->fresh) {
        wd_end(w, rc);
        return;
    }
    aev_t ev;
    aev_init(&ev, "records", "records.patient.withdrawal", w->req, NULL);
    ev.actor_kind = "service";
    ev.target_type = "patient";
    ev.target_id = w->patient_id;
    ev.patient_id = w->patient_id;
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "links_ended",
                           json_object_new_int64(strtoll(PQcmdTuples(res), NULL, 10)));
    json_object_object_add(ev.details, "retention_days",
                           json_object_new_int64(strtoll(w->days, NULL, 10)));
    char *json = aev_json(&ev, w->event_id);
    rc =
        json != NULL ? outbox_add(w->txn, "audit", w->event_id, json, wd_stmt_done, w) : PHR_ENOMEM;
    free(json);
    if (rc != PHR_OK) {
        wd_end(w, rc);
    }
}

static void
wd_inserted(int rc, PGresult *res, void *ud)
{
    wd_ctx_t *w = ud;
    const char *p[] = {w->patient_id};

    if (rc != PHR_OK) {
        wd_end(w, rc);
        return;
    }
    w->fresh = PQntuples(res) > 0;
    rc = db_txn_query(w->txn,
                      "UPDATE links SET revoked_at = now() "
                      "WHERE patient_id = $1::uuid AND revoked_at IS NULL",
                      1, p, wd_links_done, w);
    if (rc != PHR_OK) {
        wd_end(w, rc);
    }
}

static void
wd_begun(int rc, db_txn_t *txn, void *ud)
{
    wd_ctx_t *w = ud;
    const char *p[] = {w->patient_id, w->at_ms, w->days};

    if (rc != PHR_OK) {
        svc_respond_error(w->req, rc, "the withdrawal could not be recorded; retry later");
        return;
    }
    w->txn = txn;
    rc = db_txn_query(txn,
                      "INSERT INTO withdrawals (patient_id, withdrawn_at, purge_after) "
                      "VALUES ($1::uuid, " REC_TS("$2") ", " REC_TS(
                          "$2") " + make_interval(days => $3::int)) "
                                "ON CONFLICT (patient_id) DO NOTHING RETURNING 1",
                      3, p, wd_inserted, w);
    if (rc != PHR_OK) {
        wd_end(w, rc);
    }
}

static void
purge_withdrawal(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {.name = "withdrawn_at", .type = JX_STRING, .required = 1, .min_len = 1, .max_len = 64},
        /* auth's outbox row also names the patient (its path parameter) */
        {.name = "patient_id", .type = JX_STRING, .required = 0, .min_len = 36, .max_len = 36},
    };
    const char *id = h2s_req_param(req, "patient_id");
    const char *key = h2s_req_header(req, "idempotency-key");
    json_object *body = NULL;
    jx_errors_t errs = {.n = 0};
    int64_t at = 0;

    if (id == NULL || !uuid_valid(id)) {
        jx_error_add(&errs, "patient_id", "must be a UUID");
    }
    if (key == NULL || key[0] == '\0' || strlen(key) > 255) {
        jx_error_add(&errs, "Idempotency-Key", "the header is required (1-255 characters)");
    }
    if (errs.n > 0) {
        h2s_respond_problem(req, 400, "validation_failed", "the request is not valid", &errs);
        return;
    }
    if (svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    if (id == NULL || strcmp(jx_get_str(body, "patient_id", id), id) != 0) {
        json_object_put(body);
        jx_error_add(&errs, "patient_id", "must be the patient of the path");
        h2s_respond_problem(req, 400, "validation_failed", "the request is not valid", &errs);
        return;
    }
    int rc = tu_parse_rfc3339(jx_get_str(body, "withdrawn_at", ""), &at);
    json_object_put(body);
    if (rc != PHR_OK || at > tu_now_ms() + 24LL * 3600 * 1000) {
        jx_error_add(&errs, "withdrawn_at", "must be an RFC 3339 date-time, not in the future");
        h2s_respond_problem(req, 400, "validation_failed", "the request is not valid", &errs);
        return;
    }
    wd_ctx_t *w = calloc(1, sizeof(*w));
    if (w == NULL || h2s_req_add_cleanup(req, wd_ctx_free, w) != PHR_OK) {
        free(w);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    w->svc = svc;
    w->req = req;
    snprintf(w->patient_id, sizeof(w->patient_id), "%s", id);
    snprintf(w->at_ms, sizeof(w->at_ms), "%lld", (long long)at);
    snprintf(w->days, sizeof(w->days), "%d", svc_cfg(svc)->retention_days);
    rc = db_txn_begin(svc_db(svc), wd_begun, w);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, "the withdrawal could not be recorded; retry later");
    }
}

/* ---- the retention job -------------------------------------------------------- */

typedef struct purge_job purge_job_t;

struct purge_job {
    purge_one_t p; /* first member */
    svc_t *svc;
    h2s_req_t *req; /* NULL for the timer */
    long patients, records, invitations;
    int rc;
    int runs;
    char days[16];
};

static int purge_timer_busy;

static void purge_job_next(purge_job_t *j);

static void
purge_job_finish(purge_job_t *j)
{
    if (j->patients > 0) {
        outbox_kick(svc_outbox(j->svc));
    }
    if (j->rc != PHR_OK) {
        log_error("retention: stopped after %ld patients: %s", j->patients, phr_err_str(j->rc));
    } else if (j->patients > 0 || j->invitations > 0) {
        log_info("retention: purged %ld patients (%ld records), %ld invitations", j->patients,
                 j->records, j->invitations);
    }
    if (j->req != NULL) {
        if (j->rc != PHR_OK) {
            svc_respond_error(j->req, j->rc, "the retention run failed; retry later");
        } else {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "patients_purged", json_object_new_int64(j->patients));
            json_object_object_add(o, "records_purged", json_object_new_int64(j->records));
            json_object_object_add(o, "invitations_purged", json_object_new_int64(j->invitations));
            h2s_respond_json(j->req, 200, o);
        }
    } else {
        purge_timer_busy = 0;
    }
    free(j);
}

static void
purge_invitations_done(int rc, PGresult *res, void *ud)
{
    purge_job_t *j = ud;

    if (rc == PHR_OK) {
        j->invitations = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    } else {
        j->rc = rc;
    }
    purge_job_finish(j);
}

/* No patient is due any more: unused invitations expired or cancelled long ago. */
static void
purge_job_invitations(purge_job_t *j)
{
    const char *p[] = {j->days};
    int rc = db_query(svc_db(j->svc),
                      "WITH d AS (DELETE FROM invitations WHERE used_at IS NULL AND "
                      "least(expires_at, coalesce(cancelled_at, expires_at)) < "
                      "now() - make_interval(days => $1::int) RETURNING 1) "
                      "SELECT count(*) FROM d",
                      1, p, purge_invitations_done, j);
    if (rc != PHR_OK) {
        j->rc = rc;
        purge_job_finish(j);
    }
}

static void
purge_job_one_done(purge_one_t *p, int rc)
{
    purge_job_t *j = (purge_job_t *)p;

    if (rc != PHR_OK) {
        j->rc = rc;
        purge_job_finish(j);
        return;
    }
    if (p->patient_id[0] == '\0') { /* nobody was due */
        purge_job_invitations(j);
        return;
    }
    j->patients++;
    j->records += p->records;
    purge_job_next(j);
}

static void
purge_job_claimed(int rc, PGresult *res, void *ud)
{
    purge_job_t *j = ud;

    if (rc != PHR_OK || PQntuples(res) == 0) {
        purge_end(&j->p, rc);
        return;
    }
    snprintf(j->p.patient_id, sizeof(j->p.patient_id), "%s", PQgetvalue(res, 0, 0));
    purge_queue(&j->p);
}

static void
purge_job_begun(int rc, db_txn_t *txn, void *ud)
{
    purge_job_t *j = ud;

    if (rc != PHR_OK) {
        j->rc = rc;
        purge_job_finish(j);
        return;
    }
    j->p.txn = txn;
    j->p.rc = PHR_OK;
    j->p.patient_id[0] = '\0';
    rc = db_txn_query(txn,
                      "SELECT patient_id FROM withdrawals WHERE purged_at IS NULL AND "
                      "purge_after <= now() ORDER BY purge_after LIMIT 1 FOR UPDATE SKIP LOCKED",
                      0, NULL, purge_job_claimed, j);
    if (rc != PHR_OK) {
        purge_end(&j->p, rc);
    }
}

/* Purges the next due patient in a transaction of its own. */
static void
purge_job_next(purge_job_t *j)
{
    if (j->runs++ >= PURGE_MAX_PER_RUN) {
        purge_job_invitations(j);
        return;
    }
    int rc = db_txn_begin(svc_db(j->svc), purge_job_begun, j);
    if (rc != PHR_OK) {
        j->rc = rc;
        purge_job_finish(j);
    }
}

static purge_job_t *
purge_job_new(svc_t *svc, h2s_req_t *req)
{
    purge_job_t *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        return NULL;
    }
    j->svc = svc;
    j->req = req;
    j->p.svc = svc;
    j->p.req = req;
    j->p.reason = "retention";
    j->p.done = purge_job_one_done;
    snprintf(j->days, sizeof(j->days), "%d", svc_cfg(svc)->retention_days);
    return j;
}

static void
purge_retention_run(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    purge_job_t *j = purge_job_new(svc, req);

    if (j == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    purge_job_next(j);
}

static struct event *purge_timer;

static void
purge_tick(evutil_socket_t fd, short what, void *arg)
{
    svc_t *svc = arg;
    struct timeval every = {PURGE_INTERVAL_S, 0};

    event_add(purge_timer, &every);
    if (purge_timer_busy || !db_pool_ready(svc_db(svc))) {
        return;
    }
    purge_job_t *j = purge_job_new(svc, NULL);
    if (j != NULL) {
        purge_timer_busy = 1;
        purge_job_next(j);
    }
}

int
rec_purge_start(svc_t *svc)
{
    struct timeval first = {PURGE_FIRST_S, 0};

    rec_purge_stop();
    purge_timer = evtimer_new(svc_base(svc), purge_tick, svc);
    if (purge_timer == NULL) {
        return PHR_ENOMEM;
    }
    evtimer_add(purge_timer, &first);
    return PHR_OK;
}

void
rec_purge_stop(void)
{
    if (purge_timer != NULL) {
        event_free(purge_timer);
        purge_timer = NULL;
    }
}

static const svc_route_t purge_routes[] = {
    {"POST", "/api/v1/me/deletion", purge_deletion, SVC_SESSION | SVC_NEEDS_DB, 4096},
    {"POST", "/internal/v1/patients/{patient_id}/withdrawal", purge_withdrawal,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUTH), 4096},
    /* phrctl has no service identity of its own: it calls with the records credential. */
    {"POST", "/internal/v1/retention/run", purge_retention_run,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_RECORDS), 0},
};

const svc_routes_t rec_purge_routes = SVC_ROUTES(purge_routes);
