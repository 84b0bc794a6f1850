/*
 * group.c - an organization's groups and categories of linked patients.
 * Both are "labels" of the same shape (name unique per org, 1-50
 * characters, optional description, members), served by one implementation
 * parameterised by a table of SQL per kind. Deleting a label detaches its
 * members; patients and records stay. Another org's label ids and patients
 * not linked to the org are 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "records.h"
#include "share.h"
#include "uuid.h"

#define GRP_NAME_MAX 50
#define GRP_DESC_MAX 500
#define GRP_CURSOR_MAX 512

typedef struct {
    const char *param; /* path parameter of the label id */
    const char *what;  /* "group", "category": audit target type and messages */
    const char *not_found;
    const char *act_create, *act_update, *act_delete, *act_add, *act_remove;
    const char *sql_list, *sql_create, *sql_update, *sql_delete, *sql_add, *sql_remove;
} grp_kind_t;

/* Columns of a Label of table |T| (alias t); members counted while their link is active. */
#define GRP_COLS(T, M, COL)                                                                        \
    "t.id, t.name, t.description, (SELECT count(*) FROM " M " m JOIN links l ON "                  \
    "l.patient_id = m.patient_id AND l.org_id = t.org_id AND l.revoked_at IS NULL "                \
    "WHERE m." COL " = t.id), (extract(epoch FROM t.created_at) * 1000)::bigint, "                 \
    "(extract(epoch FROM t.updated_at) * 1000)::bigint"

/*
 * The SQL of a kind: label table |T|, member table |M|, member column |COL|.
 * add/remove answer (label found, patient linked, rows changed).
 */
#define GRP_KIND(T, M, COL, WHAT, PARAM)                                                           \
    {                                                                                              \
        .param = (PARAM), .what = (WHAT), .not_found = "no such " WHAT,                            \
        .act_create = "records." WHAT ".create", .act_update = "records." WHAT ".update",          \
        .act_delete = "records." WHAT ".delete", .act_add = "records." WHAT ".member_add",         \
        .act_remove = "records." WHAT ".member_remove",                                            \
        .sql_list =                                                                                \
            "SELECT " GRP_COLS(T, M, COL) " FROM " T " t WHERE t.org_id = $1 AND "                 \
                                          "($2::text IS NULL OR (t.name COLLATE \"C\", t.id) > "   \
                                          "($2::text COLLATE \"C\", $3::uuid)) "                   \
                                          "ORDER BY t.name COLLATE \"C\", t.id LIMIT $4::int",     \
        .sql_create = "INSERT INTO " T " AS t (id, org_id, name, description) "                    \
                      "VALUES ($1, $2, $3, $4) RETURNING " GRP_COLS(T, M, COL),                    \
        .sql_update = "UPDATE " T " AS t SET name = coalesce($3, t.name), description = "          \
                      "CASE WHEN $4::boolean THEN $5 ELSE t.description END, updated_at = now() "  \
                      "WHERE t.id = $1 AND t.org_id = $2 RETURNING " GRP_COLS(T, M, COL),          \
        .sql_delete = "DELETE FROM " T " WHERE id = $1 AND org_id = $2 RETURNING id",              \
        .sql_add = "WITH t AS (SELECT id FROM " T " WHERE id = $1 AND org_id = $2), "              \
                   "l AS (SELECT patient_id FROM links WHERE patient_id = $3 AND org_id = $2 "     \
                   "AND revoked_at IS NULL), "                                                     \
                   "ins AS (INSERT INTO " M " (" COL ", patient_id) SELECT t.id, l.patient_id "    \
                   "FROM t, l ON CONFLICT DO NOTHING RETURNING 1) "                                \
                   "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM l), "                   \
                   "(SELECT count(*) FROM ins)",                                                   \
        .sql_remove = "WITH t AS (SELECT id FROM " T " WHERE id = $1 AND org_id = $2), "           \
                      "l AS (SELECT patient_id FROM links WHERE patient_id = $3 AND org_id = $2 "  \
                      "AND revoked_at IS NULL), "                                                  \
                      "del AS (DELETE FROM " M " m USING t, l WHERE m." COL " = t.id AND "         \
                      "m.patient_id = l.patient_id RETURNING 1) "                                  \
                      "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM l), "                \
                      "(SELECT count(*) FROM del)",                                                \
    }

static const grp_kind_t grp_group =
    GRP_KIND("groups", "group_members", "group_id", "group", "group_id");
static const grp_kind_t grp_category =
    GRP_KIND("categories", "category_members", "category_id", "category", "category_id");

/* Request fields of a create or a patch. */
typedef struct {
    char *name;        /* NULL: unchanged */
    char *description; /* NULL: none / unchanged */
    int set_desc;      /* patch: description given (maybe null) */
    int put;           /* membership: 1 add, 0 remove */
} grp_req_t;

static void
grp_req_free(void *arg)
{
    grp_req_t *g = arg;
    if (g != NULL) {
        free(g->name);
        free(g->description);
        free(g);
    }
}

static json_object *
grp_json(const PGresult *res, int i)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "description", rsh_col_str(res, i, 2));
    json_object_object_add(o, "patient_count",
                           json_object_new_int64(strtoll(PQgetvalue(res, i, 3), NULL, 10)));
    json_object_object_add(o, "created_at", rsh_time(PQgetvalue(res, i, 4)));
    json_object_object_add(o, "updated_at", rsh_time(PQgetvalue(res, i, 5)));
    return o;
}

/* A staff context for a route of |kind|, with the label id when |with_id|. NULL when answered. */
static rsh_ctx_t *
grp_ctx(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind, int with_id)
{
    rsh_ctx_t *c = rsh_ctx_new(svc, req, sess);

    if (c == NULL || !rsh_staff_ok(c)) {
        return NULL;
    }
    c->kind = kind;
    if (with_id && !rsh_path_id(c, kind->param, c->id, kind->not_found)) {
        return NULL;
    }
    grp_req_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    c->ext = g;
    c->ext_free = grp_req_free;
    return c;
}

/*
 * A label name: 1-50 characters (checked by jx), not blank, no control
 * characters. 1 when acceptable, else answered 400.
 */
static int
grp_name_ok(h2s_req_t *req, const char *name)
{
    size_t n = strlen(name);
    size_t blank = strspn(name, " \t");

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch < 0x20 || ch == 0x7f) {
            rsh_field_error(req, "name", "must not contain control characters");
            return 0;
        }
    }
    if (blank == n) {
        rsh_field_error(req, "name", "must not be blank");
        return 0;
    }
    return 1;
}

static char *
grp_dup(h2s_req_t *req, const char *s, int *ok)
{
    char *d = s != NULL ? strdup(s) : NULL;
    if (s != NULL && d == NULL) {
        *ok = 0;
    }
    return d;
}

/* ---- list --------------------------------------------------------------- */

static void
grp_list_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    char cursor[GRP_CURSOR_MAX + 1];

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    int n = PQntuples(res);
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    for (int i = 0; i < n && i < c->page_limit; i++) {
        json_object_array_add(items, grp_json(res, i));
    }
    json_object_object_add(out, "items", items);
    if (n > c->page_limit) {
        rsh_cursor(PQgetvalue(res, c->page_limit - 1, 1), PQgetvalue(res, c->page_limit - 1, 0),
                   cursor, sizeof(cursor));
    }
    json_object_object_add(out, "next_cursor",
                           n > c->page_limit ? json_object_new_string(cursor) : NULL);
    h2s_respond_json(c->req, 200, out);
}

static void
grp_list(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind)
{
    char lim[16];
    rsh_ctx_t *c = grp_ctx(svc, req, sess, kind, 0);

    if (c == NULL || !rsh_page(c, 0)) {
        return;
    }
    snprintf(lim, sizeof(lim), "%d", c->page_limit + 1);
    const char *p[] = {c->org_id, c->cur_id[0] ? c->cur_key : NULL, c->cur_id[0] ? c->cur_id : NULL,
                       lim};
    int rc = db_query(svc_db(svc), kind->sql_list, 4, p, grp_list_done, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- create and update -------------------------------------------------- */

static void grp_saved(rsh_ctx_t *c);

/* The label row written (RETURNING GRP_COLS): audited, then committed; none is 404. */
static void
grp_row(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;
    aev_t ev;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 1) {
        c->row = grp_json(res, 0);
        rsh_aev(c, &ev, g->put ? kind->act_create : kind->act_update, kind->what, c->id);
        rsh_audit(c, &ev);
    } else if (rc == PHR_OK) {
        rsh_refuse(c, 404, "not_found", kind->not_found);
    }
    rsh_end(c, grp_saved);
}

static void
grp_saved(rsh_ctx_t *c)
{
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;

    if (rsh_failed(c, "duplicate_name",
                   kind == &grp_group ? "a group of this name exists"
                                      : "a category of this name exists")) {
        return;
    }
    json_object *row = c->row;
    c->row = NULL;
    h2s_respond_json(c->req, g->put ? 201 : 200, row);
}

static void
grp_create_step(rsh_ctx_t *c)
{
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;
    const char *p[] = {c->id, c->org_id, g->name, g->description};

    rsh_q(c, kind->sql_create, 4, p, grp_row);
    if (c->rc != PHR_OK) {
        rsh_end(c, grp_saved);
    }
}

static void
grp_update_step(rsh_ctx_t *c)
{
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;
    const char *p[] = {c->id, c->org_id, g->name, g->set_desc ? "true" : "false", g->description};

    rsh_q(c, kind->sql_update, 5, p, grp_row);
    if (c->rc != PHR_OK) {
        rsh_end(c, grp_saved);
    }
}

/* Reads a LabelCreate (|create|) or LabelPatch body into c->ext. 1 when valid, else answered. */
static int
grp_read(rsh_ctx_t *c, int create)
{
    jx_field_t fields[] = {
        {"name", JX_STRING, create, 0, -1, 1, GRP_NAME_MAX, NULL},
        {"description", JX_STRING, 0, 0, -1, 0, GRP_DESC_MAX, NULL},
    };
    grp_req_t *g = c->ext;
    json_object *body, *v;
    int ok = 1;

    if (svc_read_json(c->req, fields, 2, &body) != PHR_OK) {
        return 0;
    }
    if (!create && json_object_object_length(body) == 0) {
        json_object_put(body);
        rsh_field_error(c->req, "", "give name or description");
        return 0;
    }
    if (!create && json_object_object_get_ex(body, "name", &v) && v == NULL) {
        json_object_put(body);
        rsh_field_error(c->req, "name", "must not be null");
        return 0;
    }
    const char *name = jx_get_str(body, "name", NULL);
    if (name != NULL && !grp_name_ok(c->req, name)) {
        json_object_put(body);
        return 0;
    }
    g->name = grp_dup(c->req, name, &ok);
    g->set_desc = json_object_object_get_ex(body, "description", NULL);
    g->description = grp_dup(c->req, jx_get_str(body, "description", NULL), &ok);
    g->put = create;
    json_object_put(body);
    if (!ok) {
        svc_respond_error(c->req, PHR_ENOMEM, NULL);
    }
    return ok;
}

static void
grp_create(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind)
{
    rsh_ctx_t *c = grp_ctx(svc, req, sess, kind, 0);

    if (c == NULL || !grp_read(c, 1)) {
        return;
    }
    if (uuid7(c->id) != PHR_OK) {
        svc_respond_error(req, PHR_EGENERIC, NULL);
        return;
    }
    rsh_begin(c, grp_create_step);
}

static void
grp_update(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind)
{
    rsh_ctx_t *c = grp_ctx(svc, req, sess, kind, 1);

    if (c != NULL && grp_read(c, 0)) {
        rsh_begin(c, grp_update_step);
    }
}

/* ---- delete ------------------------------------------------------------- */

static void
grp_no_content(rsh_ctx_t *c)
{
    if (!rsh_failed(c, NULL, "the change could not be saved")) {
        h2s_respond(c->req, 204, NULL, NULL, 0);
    }
}

static void
grp_deleted(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    const grp_kind_t *kind = c->kind;
    aev_t ev;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 0) {
        rsh_refuse(c, 404, "not_found", kind->not_found);
    } else if (rc == PHR_OK) {
        rsh_aev(c, &ev, kind->act_delete, kind->what, c->id);
        rsh_audit(c, &ev);
    }
    rsh_end(c, grp_no_content);
}

static void
grp_delete_step(rsh_ctx_t *c)
{
    const grp_kind_t *kind = c->kind;
    const char *p[] = {c->id, c->org_id};

    /* Members go with the label (ON DELETE CASCADE); patients and records stay. */
    rsh_q(c, kind->sql_delete, 2, p, grp_deleted);
    if (c->rc != PHR_OK) {
        rsh_end(c, grp_no_content);
    }
}

static void
grp_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind)
{
    rsh_ctx_t *c = grp_ctx(svc, req, sess, kind, 1);

    if (c != NULL) {
        rsh_begin(c, grp_delete_step);
    }
}

/* ---- membership --------------------------------------------------------- */

static void
grp_member_done(int rc, PGresult *res, void *ud)
{
    rsh_ctx_t *c = ud;
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;
    aev_t ev;

    rsh_note(c, rc);
    if (rc == PHR_OK && PQntuples(res) == 1) {
        if (PQgetvalue(res, 0, 0)[0] == '0') {
            rsh_refuse(c, 404, "not_found", kind->not_found);
        } else if (PQgetvalue(res, 0, 1)[0] == '0') {
            rsh_refuse(c, 404, "not_found", "no such patient");
        } else if (PQgetvalue(res, 0, 2)[0] != '0') {
            rsh_aev(c, &ev, g->put ? kind->act_add : kind->act_remove, kind->what, c->id);
            ev.patient_id = c->patient_id;
            rsh_audit(c, &ev);
        }
    }
    rsh_end(c, grp_no_content);
}

static void
grp_member_step(rsh_ctx_t *c)
{
    const grp_kind_t *kind = c->kind;
    grp_req_t *g = c->ext;
    const char *p[] = {c->id, c->org_id, c->patient_id};

    rsh_q(c, g->put ? kind->sql_add : kind->sql_remove, 3, p, grp_member_done);
    if (c->rc != PHR_OK) {
        rsh_end(c, grp_no_content);
    }
}

static void
grp_member(svc_t *svc, h2s_req_t *req, const sess_t *sess, const grp_kind_t *kind, int put)
{
    rsh_ctx_t *c = grp_ctx(svc, req, sess, kind, 1);

    if (c == NULL || !rsh_path_id(c, "patient_id", c->patient_id, "no such patient")) {
        return;
    }
    ((grp_req_t *)c->ext)->put = put;
    rsh_begin(c, grp_member_step);
}

/* ---- routes: one thin entry per kind ------------------------------------ */

#define GRP_HANDLERS(K)                                                                            \
    static void grp_##K##_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)                     \
    {                                                                                              \
        grp_list(svc, req, sess, &grp_##K);                                                        \
    }                                                                                              \
    static void grp_##K##_create(svc_t *svc, h2s_req_t *req, const sess_t *sess)                   \
    {                                                                                              \
        grp_create(svc, req, sess, &grp_##K);                                                      \
    }                                                                                              \
    static void grp_##K##_update(svc_t *svc, h2s_req_t *req, const sess_t *sess)                   \
    {                                                                                              \
        grp_update(svc, req, sess, &grp_##K);                                                      \
    }                                                                                              \
    static void grp_##K##_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess)                   \
    {                                                                                              \
        grp_delete(svc, req, sess, &grp_##K);                                                      \
    }                                                                                              \
    static void grp_##K##_put(svc_t *svc, h2s_req_t *req, const sess_t *sess)                      \
    {                                                                                              \
        grp_member(svc, req, sess, &grp_##K, 1);                                                   \
    }                                                                                              \
    static void grp_##K##_remove(svc_t *svc, h2s_req_t *req, const sess_t *sess)                   \
    {                                                                                              \
        grp_member(svc, req, sess, &grp_##K, 0);                                                   \
    }

GRP_HANDLERS(group)
GRP_HANDLERS(category)

#define GRP_F (SVC_SESSION | SVC_NEEDS_DB)
#define GRP_ROUTES(K, BASE, ID)                                                                    \
    {"GET", BASE, grp_##K##_list, GRP_F, 0}, {"POST", BASE, grp_##K##_create, GRP_F, 4096},        \
        {"PATCH", BASE "/{" ID "}", grp_##K##_update, GRP_F, 4096},                                \
        {"DELETE", BASE "/{" ID "}", grp_##K##_delete, GRP_F, 0},                                  \
        {"PUT", BASE "/{" ID "}/patients/{patient_id}", grp_##K##_put, GRP_F, 0},                  \
    {                                                                                              \
        "DELETE", BASE "/{" ID "}/patients/{patient_id}", grp_##K##_remove, GRP_F, 0               \
    }

static const svc_route_t grp_routes[] = {
    GRP_ROUTES(group, "/api/v1/orgs/{org_id}/groups", "group_id"),
    GRP_ROUTES(category, "/api/v1/orgs/{org_id}/categories", "category_id"),
};

const svc_routes_t rec_group_routes = SVC_ROUTES(grp_routes);
