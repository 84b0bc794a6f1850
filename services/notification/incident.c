/*
 * incident.c - incident notices with the 24-hour deadline.
 *
 * POST /api/v1/admin/incidents (operator, recent auth): the admins of the named orgs (auth
 * GET /internal/v1/orgs/{id}/admins) or of every org (GET /internal/v1/contacts?audience=
 * org_admins, paged) get an incident_notice e-mail, and an SMS where a phone is registered;
 * one transaction stores the incident, its recipients, the notifications and the audit
 * event. 201 with the incident.
 * GET /api/v1/admin/incidents[/{id}] (operator), GET /api/v1/orgs/{org_id}/incidents (that
 * org's admins; deliveries to their org only): per-admin delivery status, deadline_at =
 * detected_at + 24 h, overdue once the deadline passed with an admin lacking a sent or
 * delivered message.
 * notif_incident_tick (every 2 s): a recipient whose notification failed (failed, bounced,
 * dead) is retried once; an incident with an admin still unreached is escalated once by
 * e-mail to PHR_OPERATOR_ALERT_EMAIL when its retry failed too or 12 h before the deadline.
 */
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

#define INC_MAX_RECIPIENTS 5000
#define INC_TICK_BATCH 50

void notif_incident_tick(svc_t *svc);

/* The latest notification of recipient r (a retry replaces the first). */
#define INC_LATEST                                                                                 \
    "(SELECT x.status FROM notifications x WHERE x.incident_id = r.incident_id "                   \
    "AND x.to_account_id = r.account_id AND x.channel = r.channel "                                \
    "ORDER BY x.created_at DESC LIMIT 1)"

/* An admin (any channel) without a sent or delivered message. */
#define INC_UNREACHED                                                                              \
    "EXISTS (SELECT 1 FROM incident_recipients r WHERE r.incident_id = i.id AND NOT EXISTS "       \
    "(SELECT 1 FROM notifications x WHERE x.incident_id = i.id AND x.to_account_id = "             \
    "r.account_id AND x.status IN ('sent', 'delivered')))"

/* Incident i as JSON text; $1 = org filter of the deliveries (NULL: all). */
#define INC_JSON_SQL                                                                               \
    "json_build_object('id', i.id, 'title', i.title, 'description', i.description, "               \
    "'org_ids', i.org_ids, 'all', i.all_orgs, 'detected_at', notif_jst(i.detected_at), "           \
    "'deadline_at', notif_jst(i.deadline_at), "                                                    \
    "'overdue', (now() > i.deadline_at AND " INC_UNREACHED "), "                                   \
    "'escalated_at', notif_jst(i.escalated_at), 'created_at', notif_jst(i.created_at), "           \
    "'deliveries', coalesce((SELECT json_agg(json_build_object("                                   \
    "'account_id', r.account_id, 'org_id', r.org_id, 'name', r.name, 'channel', r.channel, "       \
    "'status', coalesce(" INC_LATEST ", 'queued'), "                                               \
    "'updated_at', notif_jst(coalesce((SELECT max(x.updated_at) FROM notifications x "             \
    "WHERE x.incident_id = r.incident_id AND x.to_account_id = r.account_id "                      \
    "AND x.channel = r.channel), i.created_at))) "                                                 \
    "ORDER BY r.org_id, r.name, r.account_id, r.channel) "                                         \
    "FROM incident_recipients r WHERE r.incident_id = i.id "                                       \
    "AND ($1::uuid IS NULL OR r.org_id = $1::uuid)), '[]'))::text"

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
    db_txn_t *txn;
    int rc;
    char id[37];
    char key[320];
    char sha[65];
    char detected[40];
    char org_filter[37];
    json_object *body;
    json_object *contacts; /* array of auth Contact objects (+ org_id) */
    json_object *params;   /* per-recipient template params, kept for the transaction */
    size_t next_org;       /* org_ids: index of the next org to ask auth about */
    char cursor[520];      /* all: next contacts page */
    int all;
    nadm_page_t page;
} inc_ctx_t;

/* ---- helpers -------------------------------------------------------------------------------- */

static void
inc_ctx_free(void *arg)
{
    inc_ctx_t *c = arg;

    json_object_put(c->body);
    json_object_put(c->contacts);
    json_object_put(c->params);
    free(c);
}

static inc_ctx_t *
inc_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    inc_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL || h2s_req_add_cleanup(req, inc_ctx_free, c) != PHR_OK) {
        free(c);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    c->svc = svc;
    c->req = req;
    c->sess = *sess;
    return c;
}

/* ---- reading -------------------------------------------------------------------------------- */

static const char inc_one_sql[] = "SELECT " INC_JSON_SQL ", coalesce(i.request_sha256, '') "
                                  "FROM incidents i WHERE i.id = $2::uuid";
static const char inc_by_key_sql[] = "SELECT " INC_JSON_SQL ", coalesce(i.request_sha256, '') "
                                     "FROM incidents i WHERE i.idempotency_key = $2";

static void
inc_one_done(int rc, PGresult *res, void *ud)
{
    inc_ctx_t *c = ud;
    char loc[128];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        svc_respond_error(c->req, PHR_ENOTFOUND, "no such incident");
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
    int created = strcmp(h2s_req_method(c->req), "POST") == 0;
    if (created) {
        snprintf(loc, sizeof(loc), "/api/v1/admin/incidents/%s", jx_get_str(o, "id", c->id));
        h2s_req_add_header(c->req, "location", loc);
    }
    h2s_respond_json(c->req, created ? 201 : 200, o);
}

static void
inc_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *id = h2s_req_param(req, "incident_id");

    inc_ctx_t *c = inc_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 0)) {
        return;
    }
    if (!uuid_valid(id)) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such incident");
        return;
    }
    const char *p[] = {NULL, id};
    int rc = db_query(svc_db(svc), inc_one_sql, 2, p, inc_one_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static void
inc_list_done(int rc, PGresult *res, void *ud)
{
    inc_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    nadm_respond_page(c->req, res, c->page.limit);
}

static const char inc_list_sql[] =
    "SELECT " INC_JSON_SQL ", (extract(epoch FROM i.created_at) * 1000)::bigint, i.id "
    "FROM incidents i WHERE ($1::uuid IS NULL OR EXISTS (SELECT 1 FROM incident_recipients r "
    "WHERE r.incident_id = i.id AND r.org_id = $1::uuid) OR $1::uuid = ANY (i.org_ids)) "
    "AND ($2::bigint IS NULL OR (i.created_at, i.id) < (to_timestamp($2::bigint / 1000.0), "
    "$3::uuid)) ORDER BY i.created_at DESC, i.id DESC LIMIT $4::int";

static void
inc_list_run(inc_ctx_t *c)
{
    char lim[16];

    snprintf(lim, sizeof(lim), "%d", c->page.limit + 1);
    const char *p[] = {c->org_filter[0] ? c->org_filter : NULL,
                       c->page.cur_time[0] ? c->page.cur_time : NULL,
                       c->page.cur_id[0] ? c->page.cur_id : NULL, lim};
    int rc = db_query(svc_db(c->svc), inc_list_sql, 4, p, inc_list_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

static void
inc_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    inc_ctx_t *c = inc_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 0) || !nadm_page_params(c->req, &c->page)) {
        return;
    }
    inc_list_run(c);
}

/* GET /api/v1/orgs/{org_id}/incidents: admins of that org; another org's id is 404. */
static void
inc_org_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *id = h2s_req_param(req, "org_id");

    inc_ctx_t *c = inc_ctx_new(svc, req, sess);
    if (c == NULL) {
        return;
    }
    if (strcmp(sess->kind, "staff") != 0) {
        svc_respond_error(req, PHR_EDENIED, "organization admins only");
        return;
    }
    if (!uuid_valid(id) || strcmp(id, sess->org_id) != 0) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such organization");
        return;
    }
    if (strcmp(sess->role, "admin") != 0) {
        svc_respond_error(req, PHR_EDENIED, "organization admins only");
        return;
    }
    if (!nadm_page_params(c->req, &c->page)) {
        return;
    }
    snprintf(c->org_filter, sizeof(c->org_filter), "%s", id);
    inc_list_run(c);
}

/* ---- creating ------------------------------------------------------------------------------- */

static void
inc_note(inc_ctx_t *c, int rc)
{
    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
}

static void
inc_stmt_done(int rc, PGresult *res, void *ud)
{
    (void)res;
    inc_note(ud, rc);
}

static void
inc_created(int rc, PGresult *res, void *ud)
{
    inc_ctx_t *c = ud;

    (void)res;
    c->txn = NULL;
    inc_note(c, rc);
    if (c->rc == PHR_ECONFLICT && c->key[0] != '\0') {
        h2s_respond_problem(c->req, 409, "idempotency_in_progress",
                            "a request with this Idempotency-Key is being processed", NULL);
        return;
    }
    if (c->rc != PHR_OK) {
        svc_respond_error(c->req, c->rc, NULL);
        return;
    }
    outbox_kick(svc_outbox(c->svc));
    notify_kick(c->svc);
    const char *p[] = {NULL, c->id};
    rc = db_query(svc_db(c->svc), inc_one_sql, 2, p, inc_one_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

/* Appends |s| as a quoted array element to |buf| (text array literal). */
static int
inc_array_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need >= *cap) {
        size_t ncap = need * 2;
        char *n = realloc(*buf, ncap);
        if (n == NULL) {
            return PHR_ENOMEM;
        }
        *buf = n;
        *cap = ncap;
    }
    if (*len > 1) {
        (*buf)[(*len)++] = ',';
    }
    (*buf)[(*len)++] = '"';
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            (*buf)[(*len)++] = '\\';
        }
        (*buf)[(*len)++] = *s;
    }
    (*buf)[(*len)++] = '"';
    (*buf)[*len] = '\0';
    return PHR_OK;
}

/* Ends a literal built by inc_array_add (which always leaves room for the brace). */
static void
inc_array_close(char *buf, size_t *len)
{
    buf[(*len)++] = '}';
    buf[*len] = '\0';
}

static void
inc_insert_recipients(inc_ctx_t *c)
{
    static const char sql[] =
        "INSERT INTO incident_recipients (incident_id, account_id, org_id, name, channel) "
        "SELECT $1, a, o, n, ch FROM "
        "unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[]) AS t (a, o, n, ch) "
        "ON CONFLICT DO NOTHING";
    char *arr[4] = {NULL, NULL, NULL, NULL};
    size_t len[4] = {0, 0, 0, 0}, cap[4] = {0, 0, 0, 0};
    int rc = PHR_OK;

    for (int k = 0; k < 4 && rc == PHR_OK; k++) {
        arr[k] = malloc(64);
        cap[k] = 64;
        if (arr[k] == NULL) {
            rc = PHR_ENOMEM;
            break;
        }
        arr[k][0] = '{';
        arr[k][1] = '\0';
        len[k] = 1;
    }
    size_t n = json_object_array_length(c->contacts);
    for (size_t i = 0; i < n && rc == PHR_OK; i++) {
        json_object *ct = json_object_array_get_idx(c->contacts, i);
        const char *phone = jx_get_str(ct, "phone", NULL);
        int nch = phone != NULL && phone[0] != '\0' ? 2 : 1;
        for (int sms = 0; sms < nch && rc == PHR_OK; sms++) {
            const char *v[4] = {jx_get_str(ct, "account_id", ""), jx_get_str(ct, "org_id", ""),
                                jx_get_str(ct, "name", ""), sms ? "sms" : "email"};
            for (int k = 0; k < 4 && rc == PHR_OK; k++) {
                rc = inc_array_add(&arr[k], &len[k], &cap[k], v[k]);
            }
        }
    }
    for (int k = 0; k < 4 && rc == PHR_OK; k++) {
        inc_array_close(arr[k], &len[k]);
    }
    if (rc == PHR_OK) {
        const char *p[] = {c->id, arr[0], arr[1], arr[2], arr[3]};
        rc = db_txn_query(c->txn, sql, 5, p, inc_stmt_done, c);
    }
    inc_note(c, rc);
    for (int k = 0; k < 4; k++) {
        free(arr[k]);
    }
}

static void
inc_begun(int rc, db_txn_t *txn, void *ud)
{
    inc_ctx_t *c = ud;
    static const char ins[] =
        "INSERT INTO incidents (id, idempotency_key, request_sha256, title, description, "
        "all_orgs, org_ids, detected_at, deadline_at, created_by) VALUES ($1, $2, $3, $4, $5, "
        "$6::boolean, $7::uuid[], $8::timestamptz, $8::timestamptz + interval '24 hours', $9)";
    char key[160];
    char event_id[AEV_ID_LEN];
    char *orgs = NULL;
    size_t olen = 0, ocap = 0;
    aev_t ev;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    c->txn = txn;
    /* org_ids: as given, or (all) the orgs whose admins were found */
    json_object *ids = NULL;
    json_object_object_get_ex(c->body, "org_ids", &ids);
    orgs = malloc(64);
    ocap = 64;
    if (orgs == NULL) {
        inc_note(c, PHR_ENOMEM);
    } else {
        orgs[0] = '{';
        orgs[1] = '\0';
        olen = 1;
    }
    size_t n = json_object_array_length(c->contacts);
    if (ids != NULL) {
        for (size_t i = 0; orgs != NULL && i < json_object_array_length(ids); i++) {
            inc_note(c, inc_array_add(&orgs, &olen, &ocap,
                                      json_object_get_string(json_object_array_get_idx(ids, i))));
        }
    } else {
        for (size_t i = 0; orgs != NULL && i < n; i++) {
            const char *o = jx_get_str(json_object_array_get_idx(c->contacts, i), "org_id", "");
            if (o[0] != '\0' && strstr(orgs, o) == NULL) {
                inc_note(c, inc_array_add(&orgs, &olen, &ocap, o));
            }
        }
    }
    if (orgs != NULL && c->rc == PHR_OK) {
        inc_array_close(orgs, &olen);
        const char *p[] = {c->id,
                           c->key[0] ? c->key : NULL,
                           c->sha,
                           jx_get_str(c->body, "title", ""),
                           jx_get_str(c->body, "description", ""),
                           c->all ? "true" : "false",
                           orgs,
                           c->detected,
                           c->sess.account_id};
        inc_note(c, db_txn_query(txn, ins, 9, p, inc_stmt_done, c));
    }
    free(orgs);
    if (c->rc == PHR_OK) {
        inc_insert_recipients(c);
    }
    c->params = json_object_new_array();
    for (size_t i = 0; i < n && c->rc == PHR_OK; i++) {
        json_object *ct = json_object_array_get_idx(c->contacts, i);
        const char *acct = jx_get_str(ct, "account_id", NULL);
        const char *email = jx_get_str(ct, "email", NULL);
        const char *phone = jx_get_str(ct, "phone", NULL);
        const char *loc = jx_get_str(ct, "locale", "ja");
        json_object *params = json_object_new_object();
        json_object_array_add(c->params, params);
        json_object_object_add(params, "org_name",
                               json_object_new_string(jx_get_str(ct, "org_name", "")));
        json_object_object_add(params, "title",
                               json_object_new_string(jx_get_str(c->body, "title", "")));
        json_object_object_add(params, "description",
                               json_object_new_string(jx_get_str(c->body, "description", "")));
        json_object_object_add(params, "detected_at", json_object_new_string(c->detected));
        int nch = phone != NULL && phone[0] != '\0' ? 2 : 1;
        for (int sms = 0; sms < nch; sms++) {
            snprintf(key, sizeof(key), "incident:%s:%s:%s", c->id, acct, sms ? "sms" : "email");
            notify_req_t r = {
                .kind = "incident_notice",
                .channel = sms ? "sms" : "email",
                .to_account_id = acct,
                .to_address = sms ? phone : email,
                .locale = strcmp(loc, "en") == 0 ? "en" : "ja",
                .params = params,
                .incident_id = c->id,
                .idempotency_key = key,
            };
            int erc = notify_enqueue(c->svc, txn, &r, inc_stmt_done, c);
            if (erc == PHR_EINVAL) {
                log_warn("incident %s: admin %s %s not renderable", c->id, acct,
                         sms ? "sms" : "email");
            } else {
                inc_note(c, erc);
            }
        }
    }
    aev_init(&ev, "notification", "notification.incident.create", c->req, &c->sess);
    ev.target_type = "incident";
    ev.target_id = c->id;
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "recipients", json_object_new_int((int)n));
    char *json = aev_json(&ev, event_id);
    if (json == NULL) {
        inc_note(c, PHR_ENOMEM);
    } else if (c->rc == PHR_OK) {
        inc_note(c, outbox_add(txn, "audit", event_id, json, inc_stmt_done, c));
    }
    free(json);
    rc = db_txn_end(txn, c->rc == PHR_OK, inc_created, c);
    if (rc != PHR_OK) {
        c->txn = NULL;
        svc_respond_error(c->req, rc, NULL);
    }
}

static void inc_resolve(inc_ctx_t *c);

/* Adds the admins of one auth answer to c->contacts (org name: the org id when unknown). */
static int
inc_add_contacts(inc_ctx_t *c, json_object *page)
{
    json_object *items = NULL;

    if (!json_object_object_get_ex(page, "items", &items) ||
        !json_object_is_type(items, json_type_array)) {
        return PHR_EPROTO;
    }
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *ct = json_object_array_get_idx(items, i);
        if (!uuid_valid(jx_get_str(ct, "account_id", NULL)) ||
            jx_get_str(ct, "email", NULL) == NULL || !uuid_valid(jx_get_str(ct, "org_id", NULL))) {
            continue;
        }
        if (json_object_array_length(c->contacts) >= INC_MAX_RECIPIENTS) {
            return PHR_ETOOBIG;
        }
        if (jx_get_str(ct, "org_name", NULL) == NULL) {
            json_object_object_add(ct, "org_name",
                                   json_object_new_string(jx_get_str(ct, "org_id", "")));
        }
        json_object_array_add(c->contacts, json_object_get(ct));
    }
    return PHR_OK;
}

static void
inc_auth_done(int rc, const hcli_resp_t *resp, void *ud)
{
    inc_ctx_t *c = ud;
    char field[32];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc == PHR_ETIMEDOUT ? rc : PHR_EUNAVAIL, "auth unavailable");
        return;
    }
    if (resp->status == 404 && !c->all) {
        snprintf(field, sizeof(field), "org_ids[%zu]", c->next_org - 1);
        nadm_field_error(c->req, field, "no such organization");
        return;
    }
    json_object *page = resp->status == 200 ? json_tokener_parse(resp->body) : NULL;
    rc = page != NULL ? inc_add_contacts(c, page) : PHR_EPROTO;
    if (rc == PHR_OK && c->all) {
        json_object *next = NULL;
        json_object_object_get_ex(page, "next_cursor", &next);
        const char *nc =
            json_object_is_type(next, json_type_string) ? json_object_get_string(next) : "";
        snprintf(c->cursor, sizeof(c->cursor), "%s", strlen(nc) < sizeof(c->cursor) ? nc : "");
    }
    json_object_put(page);
    if (rc == PHR_ETOOBIG) {
        h2s_respond_problem(c->req, 422, "too_many_recipients",
                            "more than 5000 admins are affected", NULL);
        return;
    }
    if (rc != PHR_OK) {
        log_warn("incident: unexpected answer from auth (status %d)", resp->status);
        svc_respond_error(c->req, PHR_EUNAVAIL, "auth unavailable");
        return;
    }
    if (c->all && c->cursor[0] == '\0') {
        c->next_org = (size_t)-1; /* done */
    }
    inc_resolve(c);
}

/* Asks auth for the next org's admins / page of admins, or starts the transaction. */
static void
inc_resolve(inc_ctx_t *c)
{
    char path[700];
    json_object *ids = NULL;
    hcli_t *auth = svc_peer(c->svc, CFG_SVC_AUTH);

    if (c->all) {
        if (c->next_org == (size_t)-1) {
            path[0] = '\0';
        } else {
            snprintf(path, sizeof(path), "/internal/v1/contacts?audience=org_admins&limit=200%s%s",
                     c->cursor[0] ? "&cursor=" : "", c->cursor);
            c->next_org = 1;
        }
    } else {
        json_object_object_get_ex(c->body, "org_ids", &ids);
        if (c->next_org < json_object_array_length(ids)) {
            snprintf(path, sizeof(path), "/internal/v1/orgs/%s/admins",
                     json_object_get_string(json_object_array_get_idx(ids, c->next_org)));
            c->next_org++;
        } else {
            path[0] = '\0';
        }
    }
    if (path[0] == '\0') {
        int rc = db_txn_begin(svc_db(c->svc), inc_begun, c);
        if (rc != PHR_OK) {
            svc_respond_error(c->req, rc, NULL);
        }
        return;
    }
    if (auth == NULL || hcli_request(auth, "GET", path, NULL, NULL, 0, h2s_req_id(c->req),
                                     inc_auth_done, c) != PHR_OK) {
        svc_respond_error(c->req, PHR_EUNAVAIL, "auth unavailable");
    }
}

static void
inc_replay_done(int rc, PGresult *res, void *ud)
{
    inc_ctx_t *c = ud;

    if (rc == PHR_OK && PQntuples(res) > 0) {
        inc_one_done(rc, res, ud);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    inc_resolve(c);
}

static void
inc_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"title", JX_STRING, 1, 0, 0, 1, 200, NULL},
        {"description", JX_STRING, 1, 0, 0, 1, 10000, NULL},
        {"org_ids", JX_ARRAY, 0, 0, 0, 1, 10000, NULL},
        {"all", JX_BOOL, 0, 0, 0, 0, 0, NULL},
        {"detected_at", JX_STRING, 1, 0, 0, 1, 40, NULL},
    };
    json_object *ids = NULL, *all = NULL;
    int64_t ms;

    inc_ctx_t *c = inc_ctx_new(svc, req, sess);
    if (c == NULL || !nadm_operator_ok(req, sess, 1)) {
        return;
    }
    if (!nadm_idem_key(req, sess, "incident", c->key, sizeof(c->key))) {
        return;
    }
    if (svc_read_json(req, fields, sizeof(fields) / sizeof(fields[0]), &c->body) != PHR_OK) {
        return;
    }
    int has_ids = json_object_object_get_ex(c->body, "org_ids", &ids) && ids != NULL;
    int has_all = json_object_object_get_ex(c->body, "all", &all) && all != NULL;
    if (has_ids == has_all) {
        nadm_field_error(req, has_ids ? "all" : "org_ids", "give either org_ids or all: true");
        return;
    }
    if (has_all && !json_object_get_boolean(all)) {
        nadm_field_error(req, "all", "must be true (or give org_ids)");
        return;
    }
    for (size_t i = 0; has_ids && i < json_object_array_length(ids); i++) {
        json_object *v = json_object_array_get_idx(ids, i);
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        char field[32];
        snprintf(field, sizeof(field), "org_ids[%zu]", i);
        if (s == NULL || !uuid_valid(s)) {
            nadm_field_error(req, field, "an organization id (lower-case UUID)");
            return;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s, json_object_get_string(json_object_array_get_idx(ids, k))) == 0) {
                nadm_field_error(req, field, "listed twice");
                return;
            }
        }
    }
    const char *det = jx_get_str(c->body, "detected_at", "");
    if (tu_parse_rfc3339(det, &ms) != PHR_OK) {
        nadm_field_error(req, "detected_at", "an RFC 3339 date-time with an offset");
        return;
    }
    if (ms > tu_now_ms() + (int64_t)5 * 60 * 1000) {
        nadm_field_error(req, "detected_at", "must not be in the future");
        return;
    }
    tu_format_jst(ms, c->detected, sizeof(c->detected));
    c->all = has_all;
    c->contacts = json_object_new_array();
    nadm_body_sha256(req, c->sha);
    if (uuid7(c->id) != PHR_OK || c->contacts == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    if (c->key[0] != '\0') {
        const char *p[] = {NULL, c->key};
        int rc = db_query(svc_db(svc), inc_by_key_sql, 2, p, inc_replay_done, c);
        if (rc != PHR_OK) {
            svc_respond_error(req, rc, NULL);
        }
        return;
    }
    inc_resolve(c);
}

/* ---- retries and escalation ----------------------------------------------------------------- */

typedef struct {
    svc_t *svc;
    int busy;
    db_txn_t *txn;
    int rc;
    json_object *keep; /* params of the notifications being enqueued */
    size_t n;
} inc_job_t;

static inc_job_t inc_job;

static void
inc_job_stmt(int rc, PGresult *res, void *ud)
{
    inc_job_t *j = ud;

    (void)res;
    if (rc != PHR_OK && j->rc == PHR_OK) {
        j->rc = rc;
    }
}

static void
inc_job_done(int rc, PGresult *res, void *ud)
{
    inc_job_t *j = ud;

    (void)res;
    j->txn = NULL;
    json_object_put(j->keep);
    j->keep = NULL;
    if (rc == PHR_OK && j->rc == PHR_OK && j->n > 0) {
        log_info("incident job: %zu retries / escalations queued", j->n);
        notify_kick(j->svc);
        outbox_kick(svc_outbox(j->svc));
    } else if (rc != PHR_OK || j->rc != PHR_OK) {
        log_warn("incident job: round failed: %s", phr_err_str(rc != PHR_OK ? rc : j->rc));
    }
    j->busy = 0;
}

static void
inc_job_end(inc_job_t *j)
{
    if (db_txn_end(j->txn, j->rc == PHR_OK, inc_job_done, j) != PHR_OK) {
        j->txn = NULL;
        json_object_put(j->keep);
        j->keep = NULL;
        j->busy = 0;
    }
}

/* Escalations: one e-mail to the operator alert address per incident at risk. */
static void
inc_escalate_rows(int rc, PGresult *res, void *ud)
{
    inc_job_t *j = ud;
    static const char upd[] = "UPDATE incidents SET escalated_at = now() WHERE id = $1";
    char key[128], title[600], event_id[AEV_ID_LEN];

    if (rc != PHR_OK) {
        inc_job_stmt(rc, res, ud);
        inc_job_end(j);
        return;
    }
    for (int i = 0; i < PQntuples(res) && j->rc == PHR_OK; i++) {
        const char *id = PQgetvalue(res, i, 0);
        json_object *params = json_object_new_object();
        json_object_array_add(j->keep, params);
        snprintf(title, sizeof(title), "[ESCALATION] %s", PQgetvalue(res, i, 1));
        json_object_object_add(params, "org_name", json_object_new_string(PQgetvalue(res, i, 3)));
        json_object_object_add(params, "title", json_object_new_string(title));
        json_object_object_add(
            params, "description",
            json_object_new_string("Admins not reached yet; the 24-hour deadline is at risk."));
        json_object_object_add(params, "detected_at",
                               json_object_new_string(PQgetvalue(res, i, 2)));
        snprintf(key, sizeof(key), "incident:%s:escalation", id);
        notify_req_t r = {
            .kind = "incident_notice",
            .channel = "email",
            .to_address = svc_cfg(j->svc)->operator_alert_email,
            .locale = "ja",
            .params = params,
            .idempotency_key = key,
        };
        int erc = notify_enqueue(j->svc, j->txn, &r, inc_job_stmt, j);
        if (erc != PHR_OK && j->rc == PHR_OK) {
            j->rc = erc;
        }
        const char *p[] = {id};
        if (j->rc == PHR_OK) {
            j->rc = db_txn_query(j->txn, upd, 1, p, inc_job_stmt, j);
        }
        aev_t ev;
        aev_init(&ev, "notification", "notification.incident.escalate", NULL, NULL);
        ev.target_type = "incident";
        ev.target_id = id;
        char *json = aev_json(&ev, event_id);
        if (json != NULL && j->rc == PHR_OK) {
            j->rc = outbox_add(j->txn, "audit", event_id, json, inc_job_stmt, j);
        }
        free(json);
        j->n++;
    }
    inc_job_end(j);
}

static void
inc_retry_rows(int rc, PGresult *res, void *ud)
{
    inc_job_t *j = ud;
    static const char upd[] = "UPDATE incident_recipients SET retried = true "
                              "WHERE incident_id = $1 AND account_id = $2 AND channel = $3";
    static const char esc[] =
        "SELECT i.id, i.title, notif_jst(i.detected_at), array_to_string(i.org_ids, ', ') "
        "FROM incidents i WHERE i.escalated_at IS NULL AND " INC_UNREACHED " AND "
        "(now() >= i.deadline_at - interval '12 hours' OR EXISTS (SELECT 1 FROM "
        "incident_recipients r WHERE r.incident_id = i.id AND r.retried AND " INC_LATEST " "
        "IN ('failed', 'bounced', 'dead'))) ORDER BY i.deadline_at LIMIT 50 "
        "FOR UPDATE SKIP LOCKED";
    char key[160];

    if (rc != PHR_OK) {
        inc_job_stmt(rc, res, ud);
        inc_job_end(j);
        return;
    }
    for (int i = 0; i < PQntuples(res) && j->rc == PHR_OK; i++) {
        const char *iid = PQgetvalue(res, i, 0);
        const char *acct = PQgetvalue(res, i, 1);
        const char *ch = PQgetvalue(res, i, 2);
        json_object *params = json_tokener_parse(PQgetvalue(res, i, 5));
        if (params == NULL) {
            continue;
        }
        json_object_array_add(j->keep, params);
        snprintf(key, sizeof(key), "incident:%s:%s:%s:retry", iid, acct, ch);
        notify_req_t r = {
            .kind = "incident_notice",
            .channel = ch,
            .to_account_id = acct,
            .to_address = PQgetvalue(res, i, 3),
            .locale = PQgetvalue(res, i, 4),
            .params = params,
            .incident_id = iid,
            .idempotency_key = key,
        };
        int erc = notify_enqueue(j->svc, j->txn, &r, inc_job_stmt, j);
        if (erc != PHR_OK && erc != PHR_EINVAL && j->rc == PHR_OK) {
            j->rc = erc;
        }
        const char *p[] = {iid, acct, ch};
        if (j->rc == PHR_OK) {
            j->rc = db_txn_query(j->txn, upd, 3, p, inc_job_stmt, j);
        }
        j->n++;
    }
    if (j->rc == PHR_OK) {
        j->rc = db_txn_query(j->txn, esc, 0, NULL, inc_escalate_rows, j);
    }
    if (j->rc != PHR_OK) {
        inc_job_end(j);
    }
}

static void
inc_job_begun(int rc, db_txn_t *txn, void *ud)
{
    inc_job_t *j = ud;
    static const char sql[] =
        "SELECT r.incident_id, r.account_id, r.channel, x.to_address, x.locale, x.params::text "
        "FROM incident_recipients r JOIN LATERAL (SELECT y.status, y.to_address, y.locale, "
        "y.params FROM notifications y WHERE y.incident_id = r.incident_id AND y.to_account_id = "
        "r.account_id AND y.channel = r.channel ORDER BY y.created_at DESC LIMIT 1) x ON true "
        "WHERE NOT r.retried AND x.status IN ('failed', 'bounced', 'dead') "
        "LIMIT 50 FOR UPDATE OF r SKIP LOCKED";

    if (rc != PHR_OK) {
        j->busy = 0;
        return;
    }
    j->txn = txn;
    j->rc = PHR_OK;
    j->n = 0;
    j->keep = json_object_new_array();
    j->rc = db_txn_query(txn, sql, 0, NULL, inc_retry_rows, j);
    if (j->rc != PHR_OK) {
        inc_job_end(j);
    }
}

void
notif_incident_tick(svc_t *svc)
{
    inc_job_t *j = &inc_job;

    if (j->busy || !db_pool_ready(svc_db(svc))) {
        return;
    }
    j->svc = svc;
    j->busy = 1;
    if (db_txn_begin(svc_db(svc), inc_job_begun, j) != PHR_OK) {
        j->busy = 0;
    }
}

static const svc_route_t table[] = {
    {"GET", "/api/v1/admin/incidents", inc_list, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/admin/incidents", inc_create, SVC_SESSION | SVC_NEEDS_DB, 1048576},
    {"GET", "/api/v1/admin/incidents/{incident_id}", inc_get, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/orgs/{org_id}/incidents", inc_org_list, SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t notif_incident_routes = SVC_ROUTES(table);
