/*
 * records.h - what the records service's modules share: the route sets that
 * main.c registers, the service context (data-key ring), and the record
 * helpers other modules (export, import, purge) reuse.
 *
 * Record storage (migration 003_records.sql): records(id, patient_id, type,
 * measured_at UTC, local_day JST, source, org_id, key_id, sealed, created_by,
 * created_at, updated_at, version). |sealed| holds the AES-256-GCM sealed JSON
 * {"values":{...},"note":"..."|null} bound (AAD) to id, patient and type.
 */
#ifndef PHR_RECORDS_H
#define PHR_RECORDS_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "crypt.h"
#include "getbatch.h"
#include "insbatch.h"
#include "jsonx.h"
#include "rectype.h"
#include "svc.h"

/* ---- route sets (main.c registers all of them) -------------------------- */

extern const svc_routes_t rec_record_routes;  /* record.c: patient + staff record CRUD */
extern const svc_routes_t rec_summary_routes; /* summary.c */
extern const svc_routes_t rec_share_routes;   /* share.c (r2): invitations, links, patients */
extern const svc_routes_t rec_group_routes;   /* group.c (r2): groups, categories */
extern const svc_routes_t rec_patient_routes; /* patients.c (r2): staff patient list */
extern const svc_routes_t rec_export_routes;  /* export.c (r3): export, import */
extern const svc_routes_t rec_purge_routes;   /* purge.c (r3): deletion, withdrawal, retention */

/* ---- service context ------------------------------------------------------ */

typedef struct {
    rcrypt_t *crypt;   /* data keys, loaded at start */
    rgb_t *gets;       /* GET of one record: coalesced SELECTs */
    rib_t *creates;    /* a patient's POST of one record: coalesced INSERTs */
    json_tokener *tok; /* parses every opened payload (the event loop's thread only) */
} rec_ctx_t;

/* The data-key ring of the running service. */
const rcrypt_t *rec_crypt(const svc_t *svc);

/* The running service's tokener for opened payloads (rec_row_open). */
json_tokener *rec_tokener(const svc_t *svc);

/*
 * The batcher of patients' creates (insbatch.h) on |pool|, PHR_RECORDS_INSERT_*
 * of |cfg|: rec_insert_audited_sql, several at once over arrays. rib_free frees it.
 */
rib_t *rec_creates_create(db_pool_t *pool, const cfg_t *cfg);

/* ---- records --------------------------------------------------------------- */

#define REC_NOTE_MAX 1000 /* characters */
#define REC_AAD_LEN 128
#define REC_ID_LEN 37 /* UUID text + NUL */

/*
 * The select list of one record under alias r; rec_row_text reads these
 * columns starting at column 0 (REC_NCOLUMNS of them), so put any extra
 * columns after it. Times come out as epoch milliseconds.
 */
#define REC_COLUMNS                                                                                \
    "r.id, r.patient_id, r.type, "                                                                 \
    "(extract(epoch FROM r.measured_at) * 1000)::int8, r.source, r.org_id, r.key_id, r.sealed, "   \
    "r.created_by, (extract(epoch FROM r.created_at) * 1000)::int8, "                              \
    "(extract(epoch FROM r.updated_at) * 1000)::int8, r.version"
#define REC_NCOLUMNS 12
enum {
    REC_COL_ID,
    REC_COL_PATIENT,
    REC_COL_TYPE,
    REC_COL_MEASURED_MS,
    REC_COL_SOURCE,
    REC_COL_ORG,
    REC_COL_KEY_ID,
    REC_COL_SEALED,
    REC_COL_CREATED_BY,
    REC_COL_CREATED_MS,
    REC_COL_UPDATED_MS,
    REC_COL_VERSION
};

/*
 * A growing text (answers of record reads), NUL-terminated. Memory it lets go of is
 * cleansed first: it holds health values. Zero-initialise; rec_text_free frees.
 */
typedef struct {
    char *s;
    size_t len, cap;
} rec_text_t;

/* Appends |n| bytes of |s|. PHR_OK or PHR_ENOMEM (|t| unchanged). */
int rec_text_add(rec_text_t *t, const char *s, size_t n);

/* Back to its first |len| bytes (the rest cleansed; the room is kept). */
void rec_text_cut(rec_text_t *t, size_t len);

/* Cleanses and frees the text; |t| is empty again. */
void rec_text_free(rec_text_t *t);

/*
 * Appends the API JSON (proto Record) of row |row| of |res| selected with
 * REC_COLUMNS to |out|: the one serialization of a record (reads, lists,
 * exports, write answers). The opened payload is spliced in as rec_seal wrote
 * it, times in +09:00. PHR_OK; PHR_EINVAL when the row cannot be opened
 * (unknown key, tampered: logged) or PHR_ENOMEM, and then |out| is unchanged.
 */
int rec_row_text(const rcrypt_t *rc, const PGresult *res, int row, rec_text_t *out);

/*
 * rec_row_text parsed, for code that reads records as objects (FHIR, CSV,
 * patient list): parsed with the service's tokener. NULL when the row
 * cannot be opened or on allocation failure.
 */
json_object *rec_row_json(const svc_t *svc, const PGresult *res, int row);

/*
 * Same with an explicit key ring (unit tests, tools) and tokener |tok| (reset and reused;
 * NULL: one made for this call).
 */
json_object *rec_row_json_keys(const rcrypt_t *rc, json_tokener *tok, const PGresult *res, int row);

/*
 * Decrypts row |row| (REC_COLUMNS) into |*values| and |*note| (each a new
 * reference the caller puts; *note NULL when there is none), parsing with |tok|
 * as rec_row_json_keys does. PHR_OK or PHR_EINVAL. For code that works on the
 * values (summaries, edits).
 */
int rec_row_open(const rcrypt_t *rc, json_tokener *tok, const PGresult *res, int row,
                 json_object **values, json_object **note);

/* A validated record body. */
typedef struct {
    const rectype_t *type;
    int64_t measured_ms; /* UTC epoch milliseconds */
    json_object *values; /* owned: validated values object */
    char *note;          /* owned; NULL when none */
    const char *source;  /* "self" | "device" (from the body; default "self") */
    const char *org_id;  /* borrowed; set by the caller for clinic records, else NULL */
} rec_input_t;

/* rec_parse flags */
enum {
    REC_PARSE_SOURCE = 1 << 0,   /* the body may carry "source": self|device (patient POST) */
    REC_PARSE_NO_FUTURE = 1 << 1 /* measured_at not more than 1 day after |now_ms| */
};

/*
 * Validates a record body (type from the type table, measured_at RFC 3339
 * with any offset, values against the type's fields and ranges, note <= 1000
 * characters, no unknown fields). On failure returns PHR_EINVAL with errors
 * naming the fields ("type", "measured_at", "values.systolic", "note",
 * "source", ...). On success |*out| owns copies (rec_input_clear frees).
 */
int rec_parse(const json_object *body, int flags, int64_t now_ms, rec_input_t *out,
              jx_errors_t *errs);

/* Validates |values| for |type| (errors named "values.<field>"). PHR_OK or PHR_EINVAL. */
int rec_check_values(const rectype_t *type, const json_object *values, jx_errors_t *errs);

void rec_input_clear(rec_input_t *in);

/*
 * Inserts one encrypted record for |patient_id| inside the caller's
 * transaction |txn|, with |source| ("self", "device", "clinic", "import";
 * NULL: in->source) and |actor_id| as created_by. For a one-per-day type
 * (steps), the patient's record of that type on the same JST day is first
 * moved to record_history (change "replace", changed_by |actor_id|) and
 * deleted. The new id is written to |record_id_out| (REC_ID_LEN bytes) before
 * this returns. |cb| gets the result of the INSERT (RETURNING REC_COLUMNS,
 * one row) or the first error. Returns PHR_OK (|cb| will be called) or an
 * error (|cb| will not be called).
 */
int rec_insert(svc_t *svc, db_txn_t *txn, const char *patient_id, const rec_input_t *in,
               const char *source, const char *actor_id, char *record_id_out, db_cb cb, void *ud);

/* Same with an explicit key ring. */
int rec_insert_keys(const rcrypt_t *rc, db_txn_t *txn, const char *patient_id,
                    const rec_input_t *in, const char *source, const char *actor_id,
                    char *record_id_out, db_cb cb, void *ud);

/* The JST calendar day ("YYYY-MM-DD", 11 bytes) of |epoch_ms|. */
void rec_local_day(int64_t epoch_ms, char out[11]);

/* The first JST day (days since 1970-01-01) of the bucket (0 day, 1 week, 2 month) of |ms|. */
int64_t rec_bucket_start(int64_t ms, int bucket);

/* SQL: timestamptz from epoch milliseconds parameter |p| ("$3"). */
#define REC_TS(p) "(timestamptz 'epoch' + " p "::int8 * interval '1 millisecond')"

/* ---- request plumbing shared by record.c and summary.c ---------------------- */

typedef struct rec_req rec_req_t;

/*
 * The type/from/to query filters of a list or summary ("to" exclusive).
 * PHR_OK, or PHR_EINVAL after answering 400 naming the parameter.
 */
int rec_filters(rec_req_t *r, const char **type, int64_t *from, int64_t *to, int *has_from,
                int *has_to);

/* 400 validation_failed naming one field (a query parameter, header or body member). */
void rec_field_error(h2s_req_t *req, const char *field, const char *message);

#define REC_PARAMS_MAX 10

/*
 * Builds the answer of a read from its result: the JSON to send with
 * |*status| (or NULL with the answer's text in r->text), and the record types
 * read appended to r->types (staff audit). NULL and no text answers 500 (or
 * the problem already sent when r->answered).
 */
typedef json_object *(*rec_build_fn)(rec_req_t *r, const PGresult *res, int *status);

/* One request's context, in the request's memory (h2s_req_alloc). */
struct rec_req {
    svc_t *svc;
    h2s_req_t *req;
    const sess_t *sess;  /* the caller's, as long as |req| (svc_handler_fn) */
    int staff;           /* an org route: staff of org_id reading/writing a linked patient */
    char org_id[37];     /* staff routes */
    char patient_id[37]; /* the patient whose records these are */
    char record_id[37];
    db_txn_t *txn;
    int rc;
    int answered; /* the outcome is decided: stop; rec_answer sends it once the work ended */
    int sent;     /* the answer went out (|req| may be gone) */
    int pstatus;  /* a refusal decided on the way (rec_problem), sent by rec_answer */
    const char *pcode, *pdetail;
    jx_errors_t *perrs; /* its field errors, made by rec_refuse when needed */
    /* a read */
    const char *sql;
    int nparams;
    const char *params[REC_PARAMS_MAX];
    char pv[REC_PARAMS_MAX][64];
    rec_build_fn build;
    json_object *types; /* record types read, for the records.read event */
    json_object *answer;
    rec_text_t text; /* or the answer as JSON text (rec_row_text) */
    int status;
    void *priv; /* the route's own state, freed with priv_free */
    void (*priv_free)(void *priv);
};

/*
 * Checks the caller may use the route and makes the context: patient
 * routes (|staff| 0) need a patient session (else 403); org routes need a
 * staff or admin session of path {org_id} and a well-formed {patient_id}
 * (else 404; the link itself is checked by the runner). NULL when answered.
 */
rec_req_t *rec_req_new(svc_t *svc, h2s_req_t *req, const sess_t *sess, int staff);

/*
 * Runs r->sql and answers with r->build. On staff routes, inside one
 * transaction: the link check (404 when the patient is not actively linked
 * to the org), the query, and a records.read audit event (outbox) naming the
 * types read; the outbox is kicked after the commit.
 */
void rec_read_run(rec_req_t *r);

/* SQL: the patient ($2) is actively linked to the org ($1). */
#define REC_LINKED_SQL                                                                             \
    "SELECT 1 FROM links WHERE org_id = $1::uuid AND patient_id = $2::uuid AND revoked_at IS NULL"

/*
 * Adds an audit event of the caller to |txn|'s outbox: |action| on target
 * |target_type|/|target_id| of patient r->patient_id (org r->org_id on staff
 * routes), |details| taken (may be NULL). Returns as outbox_add.
 */
int rec_audit(rec_req_t *r, db_txn_t *txn, const char *action, const char *target_type,
              const char *target_id, json_object *details, db_cb cb, void *ud);

/*
 * Decides a refusal of |r| (the first one wins; |field| NULL or the field
 * named in errors[] with |message|). It is sent once the request's
 * transaction ended, never before: answering may free the request.
 */
void rec_refuse(rec_req_t *r, int status, const char *code, const char *detail, const char *field,
                const char *message);

#endif
