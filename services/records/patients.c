/*
 * patients.c - GET /api/v1/orgs/{org_id}/patients: the organization's
 * linked patients, most recently linked first, with name and e-mail (auth's
 * internal batch lookup over HTTP/2), linked_at, groups, categories and the
 * latest record of each type (decrypted). Filters: ?group=, ?category=, and
 * ?q= (name substring, NFKC case-folded). Names live in auth, so a q search
 * scans links in batches and matches after each lookup; one request scans at
 * most PAT_SCAN_MAX links, then answers what it found with a next_cursor to
 * go on from (a page may then be short, even empty). Showing latest values
 * is a read of the patient's records: one audit event per patient shown
 * with any, naming the record types, committed before the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>

#include "err.h"
#include "log.h"
#include "query.h"
#include "records.h"
#include "share.h"

#define PAT_BATCH 200     /* links per scan step with a name search (= auth's lookup cap) */
#define PAT_SCAN_MAX 1000 /* links scanned per request with a name search */
#define PAT_Q_MAX 100     /* characters */
#define PAT_CURSOR_MAX 512

typedef struct {
    char id[37];
    char linked_ms[24];
    char pos_us[24];
} pat_row_t;

typedef struct {
    char id[37];
    json_object *obj; /* the PatientSummary being built */
} pat_item_t;

typedef struct {
    char group[37], category[37]; /* filters, "" when none */
    uint8_t *q;                   /* NFKC case-folded search, NULL when none */
    size_t qlen;
    int batch;   /* rows asked per scan step */
    int scanned; /* links looked at so far */
    char pos_key[RSH_KEY_MAX + 1], pos_id[37];
    pat_row_t rows[PAT_BATCH + 1]; /* the scan step in flight */
    int nrows;
    pat_item_t items[RSH_PAGE_MAX];
    int n;
    int more;
} pat_t;

static void
pat_free(void *arg)
{
    pat_t *p = arg;
    if (p == NULL) {
        return;
    }
    for (int i = 0; i < p->n; i++) {
        json_object_put(p->items[i].obj);
    }
    free(p->q);
    free(p);
}

static void pat_scan(rsh_ctx_t *c);
static void pat_finish(rsh_ctx_t *c);

/* The item of |id|, or NULL. */
static pat_item_t *
pat_item(pat_t *p, const char *id)
{
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->items[i].id, id) == 0) {
            return &p->items[i];
        }
    }
    return NULL;
}

/* 1 when |name| contains the search (both NFKC case-folded). */
static int
pat_matches(const pat_t *p, const char *name)
{
    size_t n;

    if (p->q == NULL) {
        return 1;
    }
    if (name == NULL) {
        return 0;
    }
    uint8_t *f = u8_casefold((const uint8_t *)name, strlen(name), NULL, UNINORM_NFKC, NULL, &n);
    int hit = f != NULL && memmem(f, n, p->q, p->qlen) != NULL;
    free(f);
    return hit;
}

/* ---- answer ------------------------------------------------------------- */

static void
pat_answer(rsh_ctx_t *c)
{
    pat_t *p = c->ext;
    char cursor[PAT_CURSOR_MAX + 1];

    if (rsh_failed(c, NULL, "the patient list could not be read")) {
        return;
    }
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < p->n; i++) {
        json_object_array_add(items, p->items[i].obj);
        p->items[i].obj = NULL;
    }
    json_object_object_add(out, "items", items);
    if (p->more) {
        rsh_cursor(p->pos_key, p->pos_id, cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor", p->more ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(c->req, 200, out);
}

/* Labels: kind ('g' | 'c'), patient_id, id, name. */
static void
pat_labels(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    pat_t *p = c->ext;
    json_object *arr;

    rsh_note(c, rc);
    for (int i = 0; rc == PHR_OK && i < PQntuples(res); i++) {
        pat_item_t *it = pat_item(p, PQgetvalue(res, i, 1));
        const char *key = PQgetvalue(res, i, 0)[0] == 'g' ? "groups" : "categories";
        if (it == NULL || !json_object_object_get_ex(it->obj, key, &arr)) {
            continue;
        }
        json_object *ref = json_object_new_object();
        json_object_object_add(ref, "id", json_object_new_string(PQgetvalue(res, i, 2)));
        json_object_object_add(ref, "name", json_object_new_string(PQgetvalue(res, i, 3)));
        json_object_array_add(arr, ref);
    }
}

/* The latest record of each type of each patient (REC_COLUMNS); then the audit events. */
static void
pat_latest(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    pat_t *p = c->ext;
    json_object *latest, *v;

    rsh_note(c, rc);
    for (int i = 0; rc == PHR_OK && i < PQntuples(res); i++) {
        pat_item_t *it = pat_item(p, PQgetvalue(res, i, REC_COL_PATIENT));
        json_object *rec = it != NULL ? rec_row_json(c->svc, res, i) : NULL;
        if (rec == NULL || !json_object_object_get_ex(it->obj, "latest", &latest)) {
            if (it != NULL) {
                log_error("records: patient list: record %s unreadable",
                          PQgetvalue(res, i, REC_COL_ID));
            }
            json_object_put(rec);
            continue;
        }
        json_object *lv = json_object_new_object();
        if (json_object_object_get_ex(rec, "measured_at", &v)) {
            json_object_object_add(lv, "measured_at", json_object_get(v));
        }
        if (json_object_object_get_ex(rec, "values", &v)) {
            json_object_object_add(lv, "values", json_object_get(v));
        }
        json_object_object_add(latest, PQgetvalue(res, i, REC_COL_TYPE), lv);
        json_object_put(rec);
    }
    for (int i = 0; c->rc == PHR_OK && i < p->n; i++) {
        if (!json_object_object_get_ex(p->items[i].obj, "latest", &latest) ||
            json_object_object_length(latest) == 0) {
            continue;
        }
        aev_t ev;
        json_object *types = json_object_new_array();
        json_object_object_foreach(latest, type, val)
        {
            (void)val;
            json_object_array_add(types, json_object_new_string(type));
        }
        rsh_aev(c, &ev, "records.read", "patient", p->items[i].id);
        ev.patient_id = p->items[i].id;
        ev.details = json_object_new_object();
        json_object_object_add(ev.details, "record_types", types);
        json_object_object_add(ev.details, "view", json_object_new_string("patient_list"));
        rsh_audit(c, &ev);
    }
    rsh_end(c, pat_answer);
}

static void
pat_details_step(rsh_ctx_t *c)
{
    static const char labels_sql[] =
        "SELECT * FROM (SELECT 'g' AS k, m.patient_id, t.id, t.name FROM group_members m "
        "JOIN groups t ON t.id = m.group_id WHERE t.org_id = $1 AND "
        "m.patient_id = ANY ($2::uuid[]) UNION ALL SELECT 'c', m.patient_id, t.id, t.name "
        "FROM category_members m JOIN categories t ON t.id = m.category_id WHERE "
        "t.org_id = $1 AND m.patient_id = ANY ($2::uuid[])) u "
        "ORDER BY u.k, u.name COLLATE \"C\", u.id";
    static const char latest_sql[] =
        "SELECT DISTINCT ON (r.patient_id, r.type) " REC_COLUMNS " FROM records r "
        "WHERE r.patient_id = ANY ($1::uuid[]) "
        "ORDER BY r.patient_id, r.type, r.measured_at DESC, r.id DESC";
    pat_t *p = c->ext;
    char *list = malloc((size_t)p->n * 37 + 3);

    if (list == NULL) {
        rsh_note(c, PHR_ENOMEM);
        rsh_end(c, pat_answer);
        return;
    }
    size_t off = 0;
    list[off++] = '{';
    for (int i = 0; i < p->n; i++) {
        if (i > 0) {
            list[off++] = ',';
        }
        memcpy(list + off, p->items[i].id, 36);
        off += 36;
    }
    list[off++] = '}';
    list[off] = '\0';
    const char *p1[] = {c->org_id, list};
    rsh_q(c, labels_sql, 2, p1, pat_labels);
    const char *p2[] = {list};
    rsh_q(c, latest_sql, 1, p2, pat_latest);
    free(list);
    if (c->rc != PHR_OK) {
        rsh_end(c, pat_answer);
    }
}

static void
pat_finish(rsh_ctx_t *c)
{
    pat_t *p = c->ext;

    if (p->n == 0) {
        pat_answer(c);
        return;
    }
    rsh_begin(c, pat_details_step);
}

/* ---- the scan ----------------------------------------------------------- */

static json_object *
pat_summary(const pat_row_t *row, json_object *acct)
{
    json_object *o = json_object_new_object(), *v;

    json_object_object_add(o, "patient_id", json_object_new_string(row->id));
    json_object_object_add(
        o, "name",
        acct != NULL && json_object_object_get_ex(acct, "name", &v) ? json_object_get(v) : NULL);
    json_object_object_add(
        o, "email",
        acct != NULL && json_object_object_get_ex(acct, "email", &v) ? json_object_get(v) : NULL);
    json_object_object_add(o, "linked_at", rsh_time(row->linked_ms));
    json_object_object_add(o, "groups", json_object_new_array());
    json_object_object_add(o, "categories", json_object_new_array());
    json_object_object_add(o, "latest", json_object_new_object());
    return o;
}

/* Takes the scan step's rows in order, with their accounts (id -> AccountRecord). */
static void
pat_take(rsh_ctx_t *c, json_object *accounts)
{
    pat_t *p = c->ext;
    int i;

    for (i = 0; i < p->nrows; i++) {
        if (p->n == c->page_limit) {
            p->more = 1; /* an unread row remains */
            return;
        }
        const pat_row_t *row = &p->rows[i];
        json_object *acct = NULL, *name = NULL;
        p->scanned++;
        snprintf(p->pos_key, sizeof(p->pos_key), "%s", row->pos_us);
        snprintf(p->pos_id, sizeof(p->pos_id), "%s", row->id);
        if (accounts != NULL) {
            json_object_object_get_ex(accounts, row->id, &acct);
        }
        if (acct != NULL) {
            json_object_object_get_ex(acct, "name", &name);
        }
        if (pat_matches(p, name != NULL ? json_object_get_string(name) : NULL)) {
            pat_item_t *it = &p->items[p->n++];
            memcpy(it->id, row->id, sizeof(it->id));
            it->obj = pat_summary(row, acct);
        }
    }
    if (p->nrows < p->batch) {
        p->more = 0; /* the links are exhausted */
    } else if (p->n == c->page_limit || p->scanned >= PAT_SCAN_MAX) {
        p->more = 1;
    } else {
        p->more = -1; /* scan on */
    }
}

static void
pat_lookup_done(int rc, const hcli_resp_t *resp, void *ud)
{
    rsh_ctx_t *c = ud;
    pat_t *p = c->ext;
    json_object *body = NULL, *items, *accounts;
    jx_errors_t errs = {.n = 0};

    if (rc != PHR_OK || resp->status != 200 ||
        jx_parse(resp->body, resp->body_len, 16, &body, &errs) != PHR_OK ||
        !json_object_object_get_ex(body, "items", &items) ||
        !json_object_is_type(items, json_type_array)) {
        log_error("records: account lookup failed: %s %d",
                  rc != PHR_OK ? phr_err_str(rc) : "status", rc == PHR_OK ? resp->status : 0);
        json_object_put(body);
        svc_respond_error(c->req, PHR_EUNAVAIL, "names are unavailable; retry later");
        return;
    }
    accounts = json_object_new_object();
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *a = json_object_array_get_idx(items, i);
        const char *id = jx_get_str(a, "id", NULL);
        if (id != NULL && rsh_uuid_ok(id)) {
            json_object_object_add(accounts, id, json_object_get(a));
        }
    }
    json_object_put(body);
    pat_take(c, accounts);
    json_object_put(accounts);
    if (p->more < 0) {
        pat_scan(c);
    } else {
        pat_finish(c);
    }
}

/* Links of the scan step: patient_id, linked_at (ms), linked_at (us). */
static void
pat_links_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    pat_t *p = c->ext;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    p->nrows = PQntuples(res) < p->batch ? PQntuples(res) : p->batch;
    for (int i = 0; i < p->nrows; i++) {
        snprintf(p->rows[i].id, sizeof(p->rows[i].id), "%s", PQgetvalue(res, i, 0));
        snprintf(p->rows[i].linked_ms, sizeof(p->rows[i].linked_ms), "%s", PQgetvalue(res, i, 1));
        snprintf(p->rows[i].pos_us, sizeof(p->rows[i].pos_us), "%s", PQgetvalue(res, i, 2));
    }
    if (p->nrows == 0) {
        p->more = 0;
        pat_finish(c);
        return;
    }
    json_object *req = json_object_new_object();
    json_object *ids = json_object_new_array();
    for (int i = 0; i < p->nrows && i < PAT_BATCH; i++) {
        json_object_array_add(ids, json_object_new_string(p->rows[i].id));
    }
    json_object_object_add(req, "ids", ids);
    size_t len;
    const char *txt = jx_to_string(req, &len);
    hcli_t *auth = svc_peer(c->svc, CFG_SVC_AUTH);
    int qrc = auth != NULL && txt != NULL
                  ? hcli_request(auth, "POST", "/internal/v1/accounts/lookup", "application/json",
                                 txt, len, h2s_req_id(c->req), pat_lookup_done, c)
                  : PHR_EUNAVAIL;
    json_object_put(req);
    if (qrc != PHR_OK) {
        svc_respond_error(c->req, PHR_EUNAVAIL, "names are unavailable; retry later");
    }
}

static void
pat_scan(rsh_ctx_t *c)
{
    static const char sql[] =
        "SELECT l.patient_id, (extract(epoch FROM l.linked_at) * 1000)::bigint, "
        "(extract(epoch FROM l.linked_at) * 1000000)::bigint FROM links l "
        "WHERE l.org_id = $1 AND l.revoked_at IS NULL AND ($2::bigint IS NULL OR "
        "(l.linked_at, l.patient_id) < ('epoch'::timestamptz + $2::bigint * "
        "interval '1 microsecond', $3::uuid)) AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM "
        "group_members m WHERE m.group_id = $4::uuid AND m.patient_id = l.patient_id)) AND "
        "($5::uuid IS NULL OR EXISTS (SELECT 1 FROM category_members m WHERE "
        "m.category_id = $5::uuid AND m.patient_id = l.patient_id)) "
        "ORDER BY l.linked_at DESC, l.patient_id DESC LIMIT $6::int";
    pat_t *p = c->ext;
    char lim[16];

    snprintf(lim, sizeof(lim), "%d", p->batch);
    const char *prm[] = {c->org_id,
                         p->pos_id[0] ? p->pos_key : NULL,
                         p->pos_id[0] ? p->pos_id : NULL,
                         p->group[0] ? p->group : NULL,
                         p->category[0] ? p->category : NULL,
                         lim};
    int rc = db_query(svc_db(c->svc), sql, 6, prm, pat_links_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

/* The filters' labels must be this org's: counts of (group, category) found. */
static void
pat_filters_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    pat_t *p = c->ext;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    if (p->group[0] && strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        svc_respond_error(c->req, PHR_ENOTFOUND, "no such group");
        return;
    }
    if (p->category[0] && strcmp(PQgetvalue(res, 0, 1), "0") == 0) {
        svc_respond_error(c->req, PHR_ENOTFOUND, "no such category");
        return;
    }
    pat_scan(c);
}

/* Reads a UUID query parameter |key| into |out|. 1 when absent or valid, else answered 400. */
static int
pat_uuid_param(h2s_req_t *req, const char *key, char *out)
{
    char buf[64];
    int rc = qry_get(h2s_req_query(req), key, buf, sizeof(buf));

    out[0] = '\0';
    if (rc == 0) {
        return 1;
    }
    if (rc < 0 || !rsh_uuid_ok(buf)) {
        rsh_field_error(req, key, "must be a UUID");
        return 0;
    }
    memcpy(out, buf, 37);
    return 1;
}

/* GET /api/v1/orgs/{org_id}/patients?group=&category=&q=&limit=&cursor= */
static void
pat_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char filters_sql[] =
        "SELECT (SELECT count(*) FROM groups WHERE id = $1::uuid AND org_id = $3), "
        "(SELECT count(*) FROM categories WHERE id = $2::uuid AND org_id = $3)";
    char q[PAT_Q_MAX * 4 + 8];
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_staff_ok(c) || !rsh_page(c, 1)) {
        return;
    }
    pat_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    c->ext = p;
    c->ext_free = pat_free;
    if (!pat_uuid_param(req, "group", p->group) || !pat_uuid_param(req, "category", p->category)) {
        return;
    }
    int rc = qry_get(h2s_req_query(req), "q", q, sizeof(q));
    if (rc < 0 || (rc > 0 && (q[0] == '\0' || jx_utf8_len(q) > PAT_Q_MAX))) {
        rsh_field_error(req, "q", "1 to 100 characters");
        return;
    }
    if (rc > 0) {
        p->q = u8_casefold((const uint8_t *)q, strlen(q), NULL, UNINORM_NFKC, NULL, &p->qlen);
        if (p->q == NULL) {
            svc_respond_error(req, PHR_ENOMEM, NULL);
            return;
        }
    }
    /* Without a search the extra row only tells whether there is more (never looked up). */
    p->batch = p->q != NULL ? PAT_BATCH : c->page_limit + 1;
    if (c->cur_id[0] != '\0') {
        snprintf(p->pos_key, sizeof(p->pos_key), "%s", c->cur_key);
        memcpy(p->pos_id, c->cur_id, sizeof(p->pos_id));
    }
    if (p->group[0] == '\0' && p->category[0] == '\0') {
        pat_scan(c);
        return;
    }
    const char *prm[] = {p->group[0] ? p->group : NULL, p->category[0] ? p->category : NULL,
                         c->org_id};
    rc = db_query(svc_db(svc), filters_sql, 3, prm, pat_filters_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static const svc_route_t pat_routes[] = {
    {"GET", "/api/v1/orgs/{org_id}/patients", pat_list, SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t rec_patient_routes = SVC_ROUTES(pat_routes);
