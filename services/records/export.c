/*
 * export.c - GET /api/v1/me/export (json, fhir, csv) and POST /api/v1/me/import.
 *
 * Export is a producer over the streaming answer of h2s: the patient's
 * records are read in keyset pages of EXP_PAGE rows (measured_at, id
 * ascending), each page is turned into text and written, and the next page
 * is read only once the bytes waiting for the client fell below
 * EXP_HIGH_WATER (on_drain), so memory stays bounded by one page whatever
 * the number of records. The first page is read before the headers go out,
 * so a database failure is still a 503; a failure after that truncates the
 * body (the document is then not valid JSON/CSV: never a silently shorter
 * export).
 *
 * Import maps every entry of a FHIR Bundle back to a record body
 * (fhir_to_record), validates all of them (rec_parse) before writing
 * anything, then inserts them with source "import" in one transaction
 * together with a records.import audit event: all or nothing.
 */
#include <event2/buffer.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aev.h"
#include "err.h"
#include "fhir.h"
#include "hex.h"
#include "log.h"
#include "records.h"
#include "timeutil.h"
#include "uuid.h"

#define EXP_PAGE 500
#define EXP_HIGH_WATER ((size_t)256 * 1024)
#define IMP_MAX_BODY ((size_t)20 * 1024 * 1024)
#define IMP_MAX_ENTRIES 100000
#define IMP_MAX_DEPTH 24
#define IMP_TRIM_ENTRIES 1000

enum { EXP_JSON, EXP_FHIR, EXP_CSV };

/* ---- shared --------------------------------------------------------------- */

/* 1 when the caller is a patient; else answers 403 and returns 0. */
static int
exp_patient_only(h2s_req_t *req, const sess_t *sess)
{
    if (strcmp(sess->kind, "patient") != 0) {
        h2s_respond_problem(req, 403, "forbidden", "only patients have records to export or import",
                            NULL);
        return 0;
    }
    return 1;
}

static void
exp_field_error(h2s_req_t *req, const char *field, const char *message)
{
    jx_errors_t errs = {.n = 0};

    jx_error_add(&errs, field, "%s", message);
    h2s_respond_problem(req, 400, "validation_failed", "the request is not valid", &errs);
}

/* ---- export ---------------------------------------------------------------- */

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    int format;
    char patient_id[37];
    char exported_at[TU_JST_LEN];
    int streaming; /* headers sent: from here on only h2s_stream_end ends the request */
    int querying;  /* a page query is in flight */
    int records_done;
    int finished; /* h2s_stream_end called */
    int have_key;
    char key_ms[24], key_id[37];
    long nrecords;
    struct evbuffer *out;
    rec_text_t text; /* json: one record's text (its room reused) */
} exp_ctx_t;

static void
exp_ctx_free(void *arg)
{
    exp_ctx_t *x = arg;

    if (x->out != NULL) {
        evbuffer_free(x->out);
    }
    rec_text_free(&x->text);
    free(x);
}

static const char exp_page_first_sql[] =
    "SELECT " REC_COLUMNS " FROM records r WHERE r.patient_id = $1::uuid "
    "ORDER BY r.measured_at, r.id LIMIT 500";
static const char exp_page_next_sql[] =
    "SELECT " REC_COLUMNS " FROM records r WHERE r.patient_id = $1::uuid "
    "AND (r.measured_at, r.id) > (" REC_TS("$2") ", $3::uuid) "
                                                 "ORDER BY r.measured_at, r.id LIMIT 500";
static const char exp_links_sql[] =
    "SELECT org_id, (extract(epoch FROM linked_at) * 1000)::int8, terms_version FROM links "
    "WHERE patient_id = $1::uuid AND revoked_at IS NULL ORDER BY linked_at, org_id";

static void exp_next(exp_ctx_t *x);

/* Ends the body (truncated when |complete| is 0). */
static void
exp_finish(exp_ctx_t *x, int complete)
{
    if (x->finished) {
        return;
    }
    x->finished = 1;
    if (complete && evbuffer_get_length(x->out) > 0) {
        size_t n = evbuffer_get_length(x->out);
        h2s_stream_write(x->req, evbuffer_pullup(x->out, -1), n);
        evbuffer_drain(x->out, n);
    }
    if (!complete && h2s_req_closed(x->req)) {
        log_info("export: the client left after %ld records (request %s)", x->nrecords,
                 h2s_req_id(x->req));
    } else if (!complete) {
        log_error("export: truncated after %ld records (request %s)", x->nrecords,
                  h2s_req_id(x->req));
    }
    h2s_stream_end(x->req); /* frees the request and |x| (cleanup) */
}

/* Sends what the page produced. 0 when the client is still there. */
static int
exp_flush(exp_ctx_t *x)
{
    size_t n = evbuffer_get_length(x->out);

    if (n == 0) {
        return h2s_req_closed(x->req) ? -1 : 0;
    }
    int rc = h2s_stream_write(x->req, evbuffer_pullup(x->out, -1), n);
    evbuffer_drain(x->out, n);
    return rc == PHR_OK ? 0 : -1;
}

/* Appends |o| serialised; consumes |o|. */
static int
exp_add_json(exp_ctx_t *x, json_object *o)
{
    size_t len = 0;
    const char *s = o != NULL ? jx_to_string(o, &len) : NULL;
    int rc = s != NULL ? evbuffer_add(x->out, s, len) : -1;

    json_object_put(o);
    return rc;
}

static int
exp_prefix(exp_ctx_t *x)
{
    switch (x->format) {
    case EXP_JSON:
        return evbuffer_add_printf(x->out,
                                   "{\"format\":\"phr-export-v1\",\"exported_at\":\"%s\","
                                   "\"account_id\":\"%s\",\"records\":[",
                                   x->exported_at, x->patient_id) < 0
                   ? -1
                   : 0;
    case EXP_FHIR:
        if (evbuffer_add_printf(x->out,
                                "{\"resourceType\":\"Bundle\",\"type\":\"collection\","
                                "\"timestamp\":\"%s\",\"entry\":[",
                                x->exported_at) < 0) {
            return -1;
        }
        return exp_add_json(x, fhir_entry(x->patient_id, fhir_patient(x->patient_id)));
    default: return evbuffer_add(x->out, fhir_csv_header, strlen(fhir_csv_header));
    }
}

/* Appends record |i| of |res| in the export's format. 0, or -1. */
static int
exp_row(exp_ctx_t *x, const PGresult *res, int i)
{
    if (x->format == EXP_JSON) {
        int rc = rec_row_text(rec_crypt(x->svc), res, i, &x->text);
        if (rc == PHR_EINVAL) {
            log_error("export: record %s cannot be opened", PQgetvalue(res, i, REC_COL_ID));
        }
        rc = rc == PHR_OK ? evbuffer_add(x->out, x->text.s, x->text.len) : -1;
        rec_text_cut(&x->text, 0);
        return rc;
    }
    json_object *rec = rec_row_json(x->svc, res, i);
    int rc = -1;
    if (rec == NULL) {
        log_error("export: record %s cannot be opened", PQgetvalue(res, i, REC_COL_ID));
        return -1;
    }
    if (x->format == EXP_CSV) {
        rc = fhir_csv_rows(rec, x->out) < 0 ? -1 : 0;
    } else {
        json_object *r = fhir_resource(rec, x->patient_id);
        rc = r != NULL ? exp_add_json(x, fhir_entry(jx_get_str(rec, "id", ""), r)) : -1;
    }
    json_object_put(rec);
    return rc;
}

/* Turns the rows of one page into text. 0, or -1 when a row cannot be read. */
static int
exp_rows(exp_ctx_t *x, const PGresult *res)
{
    int n = PQntuples(res);

    for (int i = 0; i < n; i++) {
        int sep = x->format != EXP_CSV && (x->format == EXP_FHIR || x->nrecords > 0);
        if ((sep && evbuffer_add(x->out, ",", 1) != 0) || exp_row(x, res, i) != 0) {
            return -1;
        }
        x->nrecords++;
    }
    if (n > 0) {
        snprintf(x->key_ms, sizeof(x->key_ms), "%s", PQgetvalue(res, n - 1, REC_COL_MEASURED_MS));
        snprintf(x->key_id, sizeof(x->key_id), "%s", PQgetvalue(res, n - 1, REC_COL_ID));
        x->have_key = 1;
    }
    if (n < EXP_PAGE) {
        x->records_done = 1;
    }
    return 0;
}

static void
exp_drain(h2s_req_t *req, void *ud)
{
    exp_ctx_t *x = ud;

    if (x->querying || x->finished) {
        return; /* the query's answer carries on */
    }
    if (h2s_req_closed(req)) {
        exp_finish(x, 0);
        return;
    }
    exp_next(x);
}

/* Starts the streamed answer: headers, then the document's beginning. */
static int
exp_start(exp_ctx_t *x)
{
    static const char *const types[] = {"application/json", "application/fhir+json",
                                        "text/csv; charset=utf-8"};
    static const char *const exts[] = {"json", "fhir.json", "csv"};
    char disp[96], day[16];

    snprintf(day, sizeof(day), "%.4s%.2s%.2s", x->exported_at, x->exported_at + 5,
             x->exported_at + 8);
    snprintf(disp, sizeof(disp), "attachment; filename=\"phr-export-%s.%s\"", day, exts[x->format]);
    h2s_req_add_header(x->req, "content-disposition", disp);
    h2s_req_add_header(x->req, "cache-control", "no-store");
    if (h2s_stream_start(x->req, 200, types[x->format], exp_drain, x) != PHR_OK) {
        return -1;
    }
    x->streaming = 1;
    return exp_prefix(x);
}

static void
exp_links_done(int rc, PGresult *res, void *ud)
{
    exp_ctx_t *x = ud;

    x->querying = 0;
    if (rc != PHR_OK || evbuffer_add(x->out, "],\"links\":[", 11) != 0) {
        exp_finish(x, 0);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        char at[TU_JST_LEN];
        json_object *l = json_object_new_object();
        tu_format_jst(strtoll(PQgetvalue(res, i, 1), NULL, 10), at, sizeof(at));
        json_object_object_add(l, "org_id", json_object_new_string(PQgetvalue(res, i, 0)));
        json_object_object_add(l, "org_name", NULL);
        json_object_object_add(l, "linked_at", json_object_new_string(at));
        json_object_object_add(l, "terms_version", json_object_new_string(PQgetvalue(res, i, 2)));
        if ((i > 0 && evbuffer_add(x->out, ",", 1) != 0) || exp_add_json(x, l) != 0) {
            exp_finish(x, 0);
            return;
        }
    }
    if (evbuffer_add(x->out, "]}", 2) != 0) {
        exp_finish(x, 0);
        return;
    }
    exp_finish(x, 1);
}

/* After the last page: the document's end (JSON: the links first). */
static void
exp_tail(exp_ctx_t *x)
{
    if (x->format == EXP_CSV) {
        exp_finish(x, 1);
        return;
    }
    if (x->format == EXP_FHIR) {
        exp_finish(x, evbuffer_add(x->out, "]}", 2) == 0);
        return;
    }
    const char *p[] = {x->patient_id};
    x->querying = 1;
    if (db_query(svc_db(x->svc), exp_links_sql, 1, p, exp_links_done, x) != PHR_OK) {
        x->querying = 0;
        exp_finish(x, 0);
    }
}

static void
exp_page_done(int rc, PGresult *res, void *ud)
{
    exp_ctx_t *x = ud;

    x->querying = 0;
    if (!x->streaming) {
        if (rc != PHR_OK) {
            svc_respond_error(x->req, rc, "the export could not be read; retry later");
            return;
        }
        if (exp_start(x) != 0) {
            if (x->streaming) {
                exp_finish(x, 0);
            } else {
                svc_respond_error(x->req, PHR_ENOMEM, NULL);
            }
            return;
        }
    } else if (rc != PHR_OK) {
        exp_finish(x, 0);
        return;
    }
    if (exp_rows(x, res) != 0 || exp_flush(x) != 0) {
        exp_finish(x, 0);
        return;
    }
    if (x->records_done) {
        exp_tail(x);
        return;
    }
    if (h2s_stream_buffered(x->req) < EXP_HIGH_WATER) {
        exp_next(x);
    } /* else exp_drain resumes */
}

/* Reads the next page. */
static void
exp_next(exp_ctx_t *x)
{
    const char *p[] = {x->patient_id, x->key_ms, x->key_id};
    int rc;

    x->querying = 1;
    if (x->have_key) {
        rc = db_query(svc_db(x->svc), exp_page_next_sql, 3, p, exp_page_done, x);
    } else {
        rc = db_query(svc_db(x->svc), exp_page_first_sql, 1, p, exp_page_done, x);
    }
    if (rc != PHR_OK) {
        x->querying = 0;
        if (x->streaming) {
            exp_finish(x, 0);
        } else {
            svc_respond_error(x->req, rc, "the export could not be read; retry later");
        }
    }
}

/*
 * The value of query parameter |name| (not decoded: the values this route
 * takes are plain words) into |out|. 1 present, 0 absent, -1 too long.
 */
static int
exp_query_word(h2s_req_t *req, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);

    for (const char *q = h2s_req_query(req); q != NULL && *q != '\0';) {
        const char *end = strchr(q, '&');
        size_t len = end != NULL ? (size_t)(end - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            if (len - nl - 1 >= cap) {
                return -1;
            }
            memcpy(out, q + nl + 1, len - nl - 1);
            out[len - nl - 1] = '\0';
            return 1;
        }
        if (len == nl && strncmp(q, name, nl) == 0) {
            out[0] = '\0';
            return 1;
        }
        q = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* GET /api/v1/me/export?format=json|fhir|csv */
static void
exp_export(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    char fmt[16] = "json";

    if (!exp_patient_only(req, sess)) {
        return;
    }
    int have = exp_query_word(req, "format", fmt, sizeof(fmt));
    int format = strcmp(fmt, "json") == 0   ? EXP_JSON
                 : strcmp(fmt, "fhir") == 0 ? EXP_FHIR
                 : strcmp(fmt, "csv") == 0  ? EXP_CSV
                                            : -1;
    if (have < 0 || format < 0) {
        exp_field_error(req, "format", "must be one of json, fhir, csv");
        return;
    }
    exp_ctx_t *x = calloc(1, sizeof(*x));
    if (x == NULL || (x->out = evbuffer_new()) == NULL ||
        h2s_req_add_cleanup(req, exp_ctx_free, x) != PHR_OK) {
        if (x != NULL && x->out != NULL) {
            evbuffer_free(x->out);
        }
        free(x);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    x->svc = svc;
    x->req = req;
    x->format = format;
    snprintf(x->patient_id, sizeof(x->patient_id), "%s", sess->account_id);
    tu_format_jst(tu_now_ms(), x->exported_at, sizeof(x->exported_at));
    exp_next(x);
}

/* ---- import ------------------------------------------------------------------ */

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
    rec_input_t *in;
    size_t n, cap, next;
    long skipped;
    db_txn_t *txn;
    int rc;
    char *audit;
    char event_id[AEV_ID_LEN];
    char key[256];                     /* Idempotency-Key, "" when none */
    char hash[2 * RCRYPT_MAC_LEN + 1]; /* keyed hash of path and body */
    int replay_status;                 /* 200 (same request) or 422 (other body) */
    long replay_imported, replay_skipped;
} imp_ctx_t;

static void
imp_ctx_free(void *arg)
{
    imp_ctx_t *m = arg;

    for (size_t i = 0; i < m->n; i++) {
        rec_input_clear(&m->in[i]);
    }
    free(m->in);
    free(m->audit);
    size_t big = m->cap;
    free(m);
    if (big >= IMP_TRIM_ENTRIES) {
        malloc_trim(0); /* a big bundle's parse tree: give the pages back */
    }
}

/* Adds rec_parse's errors of entry |base| with the fields renamed to FHIR paths. */
static void
imp_rename_errors(const jx_errors_t *perrs, const fhir_paths_t *paths, jx_errors_t *errs)
{
    for (size_t i = 0; i < perrs->n; i++) {
        jx_error_add(errs, fhir_path_of(paths, perrs->items[i].field), "%s",
                     perrs->items[i].message);
    }
}

/* Validates every entry of |bundle| into m->in. PHR_OK, or PHR_EINVAL with |errs|. */
static int
imp_collect(imp_ctx_t *m, const json_object *bundle, jx_errors_t *errs)
{
    json_object *entries = NULL;
    const char *rt = jx_get_str(bundle, "resourceType", NULL);
    const char *type = jx_get_str(bundle, "type", NULL);
    int64_t now = tu_now_ms();

    if (!json_object_is_type(bundle, json_type_object) || rt == NULL || strcmp(rt, "Bundle") != 0) {
        jx_error_add(errs, "resourceType", "must be Bundle");
        return PHR_EINVAL;
    }
    if (type == NULL || strcmp(type, "collection") != 0) {
        jx_error_add(errs, "type", "must be collection");
    }
    if (!json_object_object_get_ex(bundle, "entry", &entries) ||
        !json_object_is_type(entries, json_type_array)) {
        jx_error_add(errs, "entry", "an array of entries is required");
        return PHR_EINVAL;
    }
    size_t total = json_object_array_length(entries);
    if (total > IMP_MAX_ENTRIES) {
        jx_error_add(errs, "entry", "at most %d entries", IMP_MAX_ENTRIES);
        return PHR_EINVAL;
    }
    if (errs->n > 0) {
        return PHR_EINVAL;
    }
    m->in = calloc(total > 0 ? total : 1, sizeof(*m->in));
    if (m->in == NULL) {
        return PHR_ENOMEM;
    }
    m->cap = total;
    for (size_t i = 0; i < total && errs->n < JX_MAX_ERRORS; i++) {
        char base[32];
        json_object *entry = json_object_array_get_idx(entries, i), *res = NULL, *body = NULL;
        fhir_paths_t paths;
        jx_errors_t perrs = {.n = 0};

        snprintf(base, sizeof(base), "entry[%zu].resource", i);
        if (!json_object_object_get_ex(entry, "resource", &res)) {
            jx_error_add(errs, base, "a resource is required");
            continue;
        }
        int rc = fhir_to_record(res, base, &body, &paths, errs);
        if (rc == PHR_ENOTFOUND) {
            m->skipped++;
            continue;
        }
        if (rc != PHR_OK) {
            continue;
        }
        rc = rec_parse(body, REC_PARSE_NO_FUTURE, now, &m->in[m->n], &perrs);
        json_object_put(body);
        if (rc != PHR_OK) {
            imp_rename_errors(&perrs, &paths, errs);
            continue;
        }
        m->n++;
    }
    return errs->n > 0 ? PHR_EINVAL : PHR_OK;
}

static void
imp_respond(h2s_req_t *req, long imported, long skipped)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "imported", json_object_new_int64(imported));
    json_object_object_add(o, "skipped", json_object_new_int64(skipped));
    h2s_respond_json(req, 200, o);
}

static void
imp_committed(int rc, PGresult *res, void *ud)
{
    imp_ctx_t *m = ud;

    m->txn = NULL;
    if (m->rc != PHR_OK) {
        rc = m->rc;
    }
    if (rc != PHR_OK) {
        svc_respond_error(m->req, rc, "the import could not be saved; nothing was imported");
        return;
    }
    outbox_kick(svc_outbox(m->svc));
    imp_respond(m->req, (long)m->n, m->skipped);
}

/* A retry of a keyed import: the first answer again, or 422 for another body. */
static void
imp_replay_ended(int rc, PGresult *res, void *ud)
{
    imp_ctx_t *m = ud;

    m->txn = NULL;
    if (m->replay_status == 422) {
        h2s_respond_problem(m->req, 422, "idempotency_key_reused",
                            "this Idempotency-Key was used for another import", NULL);
        return;
    }
    h2s_req_add_header(m->req, "idempotent-replayed", "true");
    imp_respond(m->req, m->replay_imported, m->replay_skipped);
}

static void
imp_end(imp_ctx_t *m, int rc)
{
    if (rc != PHR_OK && m->rc == PHR_OK) {
        m->rc = rc;
    }
    db_txn_t *txn = m->txn;
    if (db_txn_end(txn, m->rc == PHR_OK, imp_committed, m) != PHR_OK) {
        m->txn = NULL;
        svc_respond_error(m->req, PHR_EUNAVAIL,
                          "the import could not be saved; nothing was imported");
    }
}

static void
imp_audit_done(int rc, PGresult *res, void *ud)
{
    imp_end(ud, rc);
}

static void imp_insert_next(imp_ctx_t *m);

static void
imp_inserted(int rc, PGresult *res, void *ud)
{
    imp_ctx_t *m = ud;

    if (rc != PHR_OK) {
        imp_end(m, rc);
        return;
    }
    imp_insert_next(m);
}

/* Inserts the records one after the other (a steps entry may replace an earlier one). */
static void
imp_insert_next(imp_ctx_t *m)
{
    char id[REC_ID_LEN];
    int rc;

    if (m->next < m->n) {
        rc = rec_insert(m->svc, m->txn, m->sess.account_id, &m->in[m->next++], "import",
                        m->sess.account_id, id, imp_inserted, m);
    } else {
        rc = outbox_add(m->txn, "audit", m->event_id, m->audit, imp_audit_done, m);
    }
    if (rc != PHR_OK) {
        imp_end(m, rc);
    }
}

static void
imp_key_found(int rc, PGresult *res, void *ud)
{
    imp_ctx_t *m = ud;

    if (rc != PHR_OK || PQntuples(res) != 1) {
        imp_end(m, rc != PHR_OK ? rc : PHR_ECONFLICT);
        return;
    }
    m->replay_status = strcmp(PQgetvalue(res, 0, 0), m->hash) == 0 ? 200 : 422;
    m->replay_imported = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    m->replay_skipped = strtol(PQgetvalue(res, 0, 2), NULL, 10);
    db_txn_t *txn = m->txn;
    if (db_txn_end(txn, 0, imp_replay_ended, m) != PHR_OK) {
        m->txn = NULL;
        svc_respond_error(m->req, PHR_EUNAVAIL, "retry later");
    }
}

/* The key was new: import; else look up the first import (this waited for its commit). */
static void
imp_key_claimed(int rc, PGresult *res, void *ud)
{
    imp_ctx_t *m = ud;
    const char *p[] = {m->sess.account_id, m->key};

    if (rc != PHR_OK) {
        imp_end(m, rc);
        return;
    }
    if (PQntuples(res) == 1) {
        imp_insert_next(m);
        return;
    }
    rc = db_txn_query(m->txn,
                      "SELECT request_hash, imported, skipped FROM import_idempotency "
                      "WHERE patient_id = $1::uuid AND key = $2",
                      2, p, imp_key_found, m);
    if (rc != PHR_OK) {
        imp_end(m, rc);
    }
}

static void
imp_begun(int rc, db_txn_t *txn, void *ud)
{
    imp_ctx_t *m = ud;
    char imported[24], skipped[24];
    const char *p[] = {m->sess.account_id, m->key, m->hash, imported, skipped};

    if (rc != PHR_OK) {
        svc_respond_error(m->req, rc, "the import could not be saved; nothing was imported");
        return;
    }
    m->txn = txn;
    if (m->key[0] == '\0') {
        imp_insert_next(m);
        return;
    }
    snprintf(imported, sizeof(imported), "%zu", m->n);
    snprintf(skipped, sizeof(skipped), "%ld", m->skipped);
    rc = db_txn_query(txn,
                      "INSERT INTO import_idempotency (patient_id, key, request_hash, imported, "
                      "skipped) VALUES ($1::uuid, $2, $3, $4::int, $5::int) "
                      "ON CONFLICT (patient_id, key) DO NOTHING RETURNING 1",
                      5, p, imp_key_claimed, m);
    if (rc != PHR_OK) {
        imp_end(m, rc);
    }
}

/* Idempotency-Key into m->key and the keyed hash of path and body; 0 when answered. */
static int
imp_read_key(imp_ctx_t *m, const char *body, size_t len)
{
    const char *key = h2s_req_header(m->req, "idempotency-key");
    const char *path = h2s_req_path(m->req);
    unsigned char mac[RCRYPT_MAC_LEN];

    if (key == NULL) {
        return 1;
    }
    size_t klen = strlen(key), plen = strlen(path);
    int ok = klen >= 1 && klen < sizeof(m->key);
    for (size_t i = 0; ok && i < klen; i++) {
        ok = key[i] >= 0x21 && key[i] <= 0x7e;
    }
    if (!ok) {
        exp_field_error(m->req, "Idempotency-Key", "1 to 255 printable ASCII characters");
        return 0;
    }
    memcpy(m->key, key, klen + 1);
    unsigned char *msg = malloc(plen + 2 + len);
    if (msg == NULL) {
        svc_respond_error(m->req, PHR_ENOMEM, NULL);
        return 0;
    }
    snprintf((char *)msg, plen + 2, "%s\n", path);
    memcpy(msg + plen + 1, body, len);
    int rc = rcrypt_mac(rec_crypt(m->svc), msg, plen + 1 + len, mac);
    free(msg);
    if (rc != PHR_OK) {
        svc_respond_error(m->req, rc, NULL);
        return 0;
    }
    hex_encode(mac, sizeof(mac), m->hash);
    return 1;
}

/* POST /api/v1/me/import (a FHIR Bundle) */
static void
exp_import(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *ct = h2s_req_header(req, "content-type");
    size_t len = 0;
    const char *body = h2s_req_body(req, &len);
    json_object *bundle = NULL;
    jx_errors_t errs = {.n = 0};

    if (!exp_patient_only(req, sess)) {
        return;
    }
    if (ct == NULL || (strncasecmp(ct, "application/json", 16) != 0 &&
                       strncasecmp(ct, "application/fhir+json", 21) != 0)) {
        h2s_respond_problem(req, 415, "unsupported_media_type",
                            "send application/fhir+json or application/json", NULL);
        return;
    }
    if (jx_parse(body, len, IMP_MAX_DEPTH, &bundle, &errs) != PHR_OK) {
        h2s_respond_problem(req, 400, "validation_failed", "the body is not valid JSON", &errs);
        return;
    }
    imp_ctx_t *m = calloc(1, sizeof(*m));
    if (m == NULL || h2s_req_add_cleanup(req, imp_ctx_free, m) != PHR_OK) {
        free(m);
        json_object_put(bundle);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    m->svc = svc;
    m->req = req;
    m->sess = *sess;
    if (!imp_read_key(m, body, len)) {
        json_object_put(bundle);
        return;
    }
    int rc = imp_collect(m, bundle, &errs);
    json_object_put(bundle);
    if (rc == PHR_EINVAL) {
        h2s_respond_problem(req, 400, "validation_failed",
                            "the bundle has invalid entries; nothing was imported", &errs);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    aev_t ev;
    aev_init(&ev, "records", "records.import", req, &m->sess);
    ev.target_type = "patient";
    ev.target_id = m->sess.account_id;
    ev.patient_id = m->sess.account_id;
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "imported", json_object_new_int64((int64_t)m->n));
    json_object_object_add(ev.details, "skipped", json_object_new_int64(m->skipped));
    m->audit = aev_json(&ev, m->event_id);
    if (m->audit == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    rc = db_txn_begin(svc_db(svc), imp_begun, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, "the import could not be saved; nothing was imported");
    }
}

static const svc_route_t exp_routes[] = {
    {"GET", "/api/v1/me/export", exp_export, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/me/import", exp_import, SVC_SESSION | SVC_NEEDS_DB, IMP_MAX_BODY},
};

const svc_routes_t rec_export_routes = SVC_ROUTES(exp_routes);
