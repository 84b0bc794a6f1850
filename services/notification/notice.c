/*
 * notice.c - operator maintenance notices, and the background jobs of notices and incidents.
 *
 * POST /api/v1/admin/notices stores the notice (202); the notice job sends every due notice
 * page by page: one page of contacts from auth (GET /internal/v1/contacts), then in one
 * transaction a maintenance_notice notification per contact (idempotency key
 * notice:<id>:<account>) and the auth cursor of the next page. A crash repeats at most the
 * page in flight, whose notifications then already exist: no duplicates. A claim not renewed
 * for NOTICE_CLAIM_S is taken over (another instance, or after a restart).
 * GET /api/v1/admin/notices[/{id}]: the notices with their counts.
 */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "aev.h"
#include "err.h"
#include "jsonx.h"
#include "log.h"
#include "notify.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

#define NOTICE_PAGE 100
#define NOTICE_TICK_MS 1000

/* incident.c: one round of incident retries and escalations (run by the job timer here). */
void notif_incident_tick(svc_t *svc);

/* A notice (alias n) as JSON text, with its counts. */
#define NOTICE_JSON_SQL                                                                            \
    "json_build_object('id', n.id, 'subject_ja', n.subject_ja, 'subject_en', n.subject_en, "       \
    "'audience', n.audience, 'status', n.status, 'send_at', notif_jst(n.send_at), "                \
    "'created_at', notif_jst(n.created_at), 'counts', (SELECT json_build_object("                  \
    "'recipients', count(*), "                                                                     \
    "'queued', count(*) FILTER (WHERE x.status IN ('queued', 'sending')), "                        \
    "'sent', count(*) FILTER (WHERE x.status IN ('sent', 'delivered')), "                          \
    "'failed', count(*) FILTER (WHERE x.status IN ('bounced', 'failed', 'dead'))) "                \
    "FROM notifications x WHERE x.notice_id = n.id))::text"

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
    db_txn_t *txn;
    int rc;
    int inserted;
    char id[37];
    char key[320];
    char sha[65];
    char send_at[40];
    json_object *body;
    nadm_page_t page;
} notice_ctx_t;

/* The job of one service instance. */
typedef struct {
    svc_t *svc;
    struct event *timer;
    int busy;  /* a round is running */
    int again; /* kicked during a round */
    int itick; /* incident job every few ticks */
    char id[37];
    char audience[16];
    char cursor[520];
    char *subject_ja, *body_ja, *subject_en, *body_en;
    json_object *page; /* the contacts page being committed */
    int more;
    db_txn_t *txn;
    int rc;
    json_object *params[NOTICE_PAGE];
    size_t nparams;
} notice_job_t;

static notice_job_t *notice_job;

static void notice_round(notice_job_t *j);

/* ---- helpers ------------------------------------------------------------------------------ */

static void
notice_ctx_free(void *arg)
{
    notice_ctx_t *c = arg;

    json_object_put(c->body);
    free(c);
}

static notice_ctx_t *
notice_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    notice_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL || h2s_req_add_cleanup(req, notice_ctx_free, c) != PHR_OK) {
        free(c);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    c->svc = svc;
    c->req = req;
    c->sess = *sess;
    return c;
}

/* ---- GET ------------------------------------------------------------------------------------ */

static void
notice_one_done(int rc, PGresult *res, void *ud)
{
    notice_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        svc_respond_error(c->req, PHR_ENOTFOUND, "no such notice");
        return;
    }
    if (c->key[0] != '\0' && strcmp(PQgetvalue(res, 0, 1), c->sha) != 0) {
        h2s_respond_problem(c->req, 422, "idempotency_key_reused",
                            "this Idempotency-Key was used with another request", NULL);
        return;
    }
    json_object *o = json_tokener_parse(PQgetvalue(res, 0, 0));
    if (o == NULL) {
        svc_respond_error(c->req, PHR_EGENERIC, NULL);
        return;
    }
    h2s_respond_json(c->req, c->key[0] != '\0' || c->inserted ? 202 : 200, o);
}

static const char notice_one_sql[] = "SELECT " NOTICE_JSON_SQL ", coalesce(n.request_sha256, '') "
                                     "FROM notices n WHERE n.id = $1::uuid";
static const char notice_by_key_sql[] =
    "SELECT " NOTICE_JSON_SQL ", coalesce(n.request_sha256, '') "
    "FROM notices n WHERE n.idempotency_key = $1";

static void
notice_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *id = h2s_req_param(req, "notice_id");

    notice_ctx_t *c = notice_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 0)) {
        return;
    }
    if (!uuid_valid(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such notice");
        return;
    }
    const char *p[] = {id};
    int rc = db_query(svc_db(svc), notice_one_sql, 1, p, notice_one_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
notice_list_done(int rc, PGresult *res, void *ud)
{
    notice_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    nadm_respond_page(c->req, res, c->page.limit);
}

static void
notice_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char sql[] =
        "SELECT " NOTICE_JSON_SQL ", (extract(epoch FROM n.created_at) * 1000)::bigint, n.id "
        "FROM notices n WHERE $1::bigint IS NULL OR (n.created_at, n.id) < "
        "(to_timestamp($1::bigint / 1000.0), $2::uuid) "
        "ORDER BY n.created_at DESC, n.id DESC LIMIT $3::int";
    char lim[16];

    notice_ctx_t *c = notice_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 0) || !nadm_page_params(c->req, &c->page)) {
        return;
    }
    snprintf(lim, sizeof(lim), "%d", c->page.limit + 1);
    const char *p[] = {c->page.cur_time[0] ? c->page.cur_time : NULL,
                       c->page.cur_id[0] ? c->page.cur_id : NULL, lim};
    int rc = db_query(svc_db(svc), sql, 3, p, notice_list_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- POST ----------------------------------------------------------------------------------- */

static void
notice_note(notice_ctx_t *c, int rc)
{
    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
}

static void
notice_stmt_done(int rc, PGresult *res, void *ud)
{
    (void)res;
    notice_note(ud, rc);
}

static void
notice_created(int rc, PGresult *res, void *ud)
{
    notice_ctx_t *c = ud;

    (void)res;
    c->txn = NULL;
    notice_note(c, rc);
    if (c->rc == PHR_ECONFLICT && c->key[0] != '\0') {
        /* the same Idempotency-Key committed meanwhile: answer as the replay */
        const char *p[] = {c->key};
        rc = db_query(svc_db(c->svc), notice_by_key_sql, 1, p, notice_one_done, c);
        if (rc != PHR_OK) {
            svc_respond_error(c->req, rc, NULL);
        }
        return;
    }
    if (c->rc != PHR_OK) {
        svc_respond_error(c->req, c->rc, NULL);
        return;
    }
    outbox_kick(svc_outbox(c->svc));
    if (notice_job != NULL) {
        notice_round(notice_job);
    }
    c->inserted = 1;
    const char *p[] = {c->id};
    rc = db_query(svc_db(c->svc), notice_one_sql, 1, p, notice_one_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

static void
notice_begun(int rc, db_txn_t *txn, void *ud)
{
    notice_ctx_t *c = ud;
    static const char sql[] =
        "INSERT INTO notices (id, idempotency_key, request_sha256, subject_ja, body_ja, "
        "subject_en, body_en, audience, send_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, "
        "$8, coalesce($9::timestamptz, now()), $10)";
    aev_t ev;
    char event_id[AEV_ID_LEN];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    c->txn = txn;
    const char *p[] = {c->id,
                       c->key[0] ? c->key : NULL,
                       c->sha,
                       jx_get_str(c->body, "subject_ja", NULL),
                       jx_get_str(c->body, "body_ja", NULL),
                       jx_get_str(c->body, "subject_en", NULL),
                       jx_get_str(c->body, "body_en", NULL),
                       jx_get_str(c->body, "audience", NULL),
                       c->send_at[0] ? c->send_at : NULL,
                       c->sess.account_id};
    notice_note(c, db_txn_query(txn, sql, 10, p, notice_stmt_done, c));
    aev_init(&ev, "notification", "notification.notice.create", c->req, &c->sess);
    ev.target_type = "notice";
    ev.target_id = c->id;
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "audience",
                           json_object_new_string(jx_get_str(c->body, "audience", "")));
    char *json = aev_json(&ev, event_id);
    if (json == NULL) {
        notice_note(c, PHR_ENOMEM);
    } else if (c->rc == PHR_OK) {
        notice_note(c, outbox_add(txn, "audit", event_id, json, notice_stmt_done, c));
    }
    free(json);
    rc = db_txn_end(txn, c->rc == PHR_OK, notice_created, c);
    if (rc != PHR_OK) {
        c->txn = NULL;
        svc_respond_error(c->req, rc, NULL);
    }
}

static void
notice_replay_done(int rc, PGresult *res, void *ud)
{
    notice_ctx_t *c = ud;

    if (rc == PHR_OK && PQntuples(res) > 0) {
        notice_one_done(rc, res, ud);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    rc = db_txn_begin(svc_db(c->svc), notice_begun, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

static void
notice_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char *const audiences[] = {"all", "org_admins", NULL};
    static const jx_field_t fields[] = {
        {"subject_ja", JX_STRING, 1, 0, 0, 1, 200, NULL},
        {"body_ja", JX_STRING, 1, 0, 0, 1, 10000, NULL},
        {"subject_en", JX_STRING, 0, 0, 0, 1, 200, NULL},
        {"body_en", JX_STRING, 0, 0, 0, 1, 10000, NULL},
        {"audience", JX_STRING, 1, 0, 0, 1, 16, audiences},
        {"send_at", JX_STRING, 0, 0, 0, 1, 40, NULL},
    };

    notice_ctx_t *c = notice_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 1)) {
        return;
    }
    if (!nadm_idem_key(req, sess, "notice", c->key, sizeof(c->key))) {
        return;
    }
    if (svc_read_json(req, fields, sizeof(fields) / sizeof(fields[0]), &c->body) != PHR_OK) {
        return;
    }
    int has_se = jx_get_str(c->body, "subject_en", NULL) != NULL;
    int has_be = jx_get_str(c->body, "body_en", NULL) != NULL;
    if (has_se != has_be) {
        nadm_field_error(req, has_se ? "body_en" : "subject_en",
                         "subject_en and body_en go together");
        return;
    }
    const char *sa = jx_get_str(c->body, "send_at", NULL);
    if (sa != NULL) {
        int64_t ms;
        if (tu_parse_rfc3339(sa, &ms) != PHR_OK) {
            nadm_field_error(req, "send_at", "an RFC 3339 date-time with an offset");
            return;
        }
        snprintf(c->send_at, sizeof(c->send_at), "%s", sa);
    }
    nadm_body_sha256(req, c->sha);
    if (uuid7(c->id) != PHR_OK) {
        svc_respond_error(req, PHR_EGENERIC, NULL);
        return;
    }
    int rc;
    if (c->key[0] != '\0') {
        const char *p[] = {c->key};
        rc = db_query(svc_db(svc), notice_by_key_sql, 1, p, notice_replay_done, c);
    } else {
        rc = db_txn_begin(svc_db(svc), notice_begun, c);
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- the notice job ------------------------------------------------------------------------- */

static void
notice_job_clear(notice_job_t *j)
{
    free(j->subject_ja);
    free(j->body_ja);
    free(j->subject_en);
    free(j->body_en);
    j->subject_ja = j->body_ja = j->subject_en = j->body_en = NULL;
    json_object_put(j->page);
    j->page = NULL;
    for (size_t i = 0; i < j->nparams; i++) {
        json_object_put(j->params[i]);
    }
    j->nparams = 0;
}

static void
notice_job_idle(notice_job_t *j)
{
    notice_job_clear(j);
    j->busy = 0;
    j->id[0] = '\0';
    if (j->again) {
        j->again = 0;
        notice_round(j);
    }
}

static void notice_fetch(notice_job_t *j);

static void
notice_page_committed(int rc, PGresult *res, void *ud)
{
    notice_job_t *j = ud;

    (void)res;
    j->txn = NULL;
    if (rc != PHR_OK || j->rc != PHR_OK) {
        log_warn("notice %s: page not committed (%s); retried later", j->id,
                 phr_err_str(rc != PHR_OK ? rc : j->rc));
        notice_job_idle(j);
        return;
    }
    notify_kick(j->svc);
    json_object_put(j->page);
    j->page = NULL;
    for (size_t i = 0; i < j->nparams; i++) {
        json_object_put(j->params[i]);
    }
    j->nparams = 0;
    if (j->more) {
        notice_fetch(j);
        return;
    }
    log_info("notice %s: every recipient queued", j->id);
    j->again = 1; /* another notice may be due */
    notice_job_idle(j);
}

static void
notice_job_stmt(int rc, PGresult *res, void *ud)
{
    notice_job_t *j = ud;

    (void)res;
    if (rc != PHR_OK && j->rc == PHR_OK) {
        j->rc = rc;
    }
}

static void
notice_page_begun(int rc, db_txn_t *txn, void *ud)
{
    notice_job_t *j = ud;
    static const char upd[] =
        "UPDATE notices SET cursor = $2, claimed_at = now(), updated_at = now(), "
        "status = CASE WHEN $3 THEN 'sending' ELSE 'done' END WHERE id = $1";
    json_object *items = NULL;
    char key[128];

    if (rc != PHR_OK) {
        log_warn("notice %s: %s", j->id, phr_err_str(rc));
        notice_job_idle(j);
        return;
    }
    j->txn = txn;
    j->rc = PHR_OK;
    json_object_object_get_ex(j->page, "items", &items);
    size_t n = items != NULL ? json_object_array_length(items) : 0;
    for (size_t i = 0; i < n && i < NOTICE_PAGE && j->rc == PHR_OK; i++) {
        json_object *ct = json_object_array_get_idx(items, i);
        const char *acct = jx_get_str(ct, "account_id", NULL);
        const char *email = jx_get_str(ct, "email", NULL);
        const char *loc = jx_get_str(ct, "locale", "ja");
        if (acct == NULL || email == NULL) {
            continue;
        }
        int en = strcmp(loc, "en") == 0 && j->subject_en != NULL;
        json_object *params = json_object_new_object();
        json_object_object_add(params, "subject",
                               json_object_new_string(en ? j->subject_en : j->subject_ja));
        json_object_object_add(params, "body",
                               json_object_new_string(en ? j->body_en : j->body_ja));
        j->params[j->nparams++] = params;
        snprintf(key, sizeof(key), "notice:%s:%s", j->id, acct);
        notify_req_t r = {
            .kind = "maintenance_notice",
            .channel = "email",
            .to_account_id = acct,
            .to_address = email,
            .locale = en ? "en" : "ja",
            .params = params,
            .notice_id = j->id,
            .idempotency_key = key,
        };
        int erc = notify_enqueue(j->svc, txn, &r, notice_job_stmt, j);
        if (erc == PHR_EINVAL) {
            log_warn("notice %s: recipient %s skipped (not renderable)", j->id, acct);
        } else if (erc != PHR_OK) {
            j->rc = erc;
        }
    }
    const char *p[] = {j->id, j->more ? j->cursor : NULL, j->more ? "true" : "false"};
    if (j->rc == PHR_OK) {
        j->rc = db_txn_query(txn, upd, 3, p, notice_job_stmt, j);
    }
    rc = db_txn_end(txn, j->rc == PHR_OK, notice_page_committed, j);
    if (rc != PHR_OK) {
        j->txn = NULL;
        notice_job_idle(j);
    }
}

static void
notice_page_got(int rc, const hcli_resp_t *resp, void *ud)
{
    notice_job_t *j = ud;

    if (rc != PHR_OK || resp->status != 200) {
        log_warn("notice %s: contacts page from auth failed (%s, status %d)", j->id,
                 phr_err_str(rc), rc == PHR_OK ? resp->status : 0);
        notice_job_idle(j);
        return;
    }
    j->page = json_tokener_parse(resp->body);
    json_object *next = NULL;
    if (j->page == NULL || !json_object_object_get_ex(j->page, "next_cursor", &next)) {
        log_warn("notice %s: malformed contacts page", j->id);
        notice_job_idle(j);
        return;
    }
    const char *nc =
        json_object_is_type(next, json_type_string) ? json_object_get_string(next) : NULL;
    j->more = nc != NULL && nc[0] != '\0' && strlen(nc) < sizeof(j->cursor);
    if (j->more) {
        snprintf(j->cursor, sizeof(j->cursor), "%s", nc);
    }
    rc = db_txn_begin(svc_db(j->svc), notice_page_begun, j);
    if (rc != PHR_OK) {
        notice_job_idle(j);
    }
}

static void
notice_fetch(notice_job_t *j)
{
    char path[700];
    hcli_t *auth = svc_peer(j->svc, CFG_SVC_AUTH);

    snprintf(path, sizeof(path), "/internal/v1/contacts?audience=%s&limit=%d%s%s", j->audience,
             NOTICE_PAGE, j->cursor[0] ? "&cursor=" : "", j->cursor);
    if (auth == NULL ||
        hcli_request(auth, "GET", path, NULL, NULL, 0, NULL, notice_page_got, j) != PHR_OK) {
        notice_job_idle(j);
    }
}

static char *
notice_dup(PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

static void
notice_claimed(int rc, PGresult *res, void *ud)
{
    notice_job_t *j = ud;

    if (rc != PHR_OK || PQntuples(res) == 0) {
        if (rc != PHR_OK && rc != PHR_EUNAVAIL) {
            log_warn("notice job: claim failed: %s", phr_err_str(rc));
        }
        j->again = 0;
        notice_job_idle(j);
        return;
    }
    snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, 0, 0));
    snprintf(j->audience, sizeof(j->audience), "%s", PQgetvalue(res, 0, 1));
    snprintf(j->cursor, sizeof(j->cursor), "%s", PQgetvalue(res, 0, 2));
    j->subject_ja = notice_dup(res, 3);
    j->body_ja = notice_dup(res, 4);
    j->subject_en = notice_dup(res, 5);
    j->body_en = notice_dup(res, 6);
    if (j->subject_ja == NULL || j->body_ja == NULL) {
        notice_job_idle(j);
        return;
    }
    if (j->subject_en == NULL || j->body_en == NULL) {
        free(j->subject_en);
        free(j->body_en);
        j->subject_en = j->body_en = NULL;
    }
    log_info("notice %s: sending (%s)", j->id, j->cursor[0] ? "resumed" : "first page");
    notice_fetch(j);
}

static void
notice_round(notice_job_t *j)
{
    static const char sql[] =
        "UPDATE notices SET status = 'sending', claimed_at = now(), updated_at = now() "
        "WHERE id = (SELECT id FROM notices WHERE status <> 'done' AND send_at <= now() "
        "AND (claimed_at IS NULL OR claimed_at < now() - interval '60 seconds') "
        "ORDER BY send_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING id, audience, coalesce(cursor, ''), subject_ja, body_ja, subject_en, body_en";

    if (j->busy) {
        j->again = 1;
        return;
    }
    if (!db_pool_ready(svc_db(j->svc))) {
        return;
    }
    j->busy = 1;
    if (db_query(svc_db(j->svc), sql, 0, NULL, notice_claimed, j) != PHR_OK) {
        j->busy = 0;
    }
}

static void
notice_tick(evutil_socket_t fd, short what, void *arg)
{
    notice_job_t *j = arg;

    (void)fd;
    (void)what;
    notice_round(j);
    if (++j->itick >= 2) {
        j->itick = 0;
        notif_incident_tick(j->svc);
    }
}

int
notif_jobs_start(svc_t *svc)
{
    struct timeval tv = {NOTICE_TICK_MS / 1000, (suseconds_t)(NOTICE_TICK_MS % 1000) * 1000};

    if (notice_job != NULL) {
        return PHR_OK;
    }
    notice_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return PHR_ENOMEM;
    }
    j->svc = svc;
    j->timer = event_new(svc_base(svc), -1, EV_PERSIST, notice_tick, j);
    if (j->timer == NULL || event_add(j->timer, &tv) != 0) {
        if (j->timer != NULL) {
            event_free(j->timer);
        }
        free(j);
        return PHR_ENOMEM;
    }
    notice_job = j;
    return PHR_OK;
}

void
notif_jobs_stop(svc_t *svc)
{
    notice_job_t *j = notice_job;

    (void)svc;
    if (j == NULL) {
        return;
    }
    event_free(j->timer);
    notice_job = NULL;
    if (j->busy) {
        return; /* a callback still holds it: freed with the process */
    }
    notice_job_clear(j);
    free(j);
}

static const svc_route_t table[] = {
    {"GET", "/api/v1/admin/notices", notice_list, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/admin/notices", notice_create, SVC_SESSION | SVC_NEEDS_DB, 65536},
    {"GET", "/api/v1/admin/notices/{notice_id}", notice_get, SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t notif_notice_routes = SVC_ROUTES(table);
