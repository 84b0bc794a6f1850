/*
 * share.h - what the sharing modules (share.c: invitations and links,
 * group.c: groups and categories, patients.c: the staff patient list) share:
 * a per-request context freed with the request, the access checks of staff
 * and patient routes, query parameters, keyset cursors, and a transaction
 * whose statements are decided step by step (with audit events in the
 * outbox, committed together).
 */
#ifndef PHR_RECORDS_SHARE_H
#define PHR_RECORDS_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "aev.h"
#include "svc.h"

#define RSH_PAGE_DEFAULT 50
#define RSH_PAGE_MAX 200
#define RSH_KEY_MAX 256 /* bytes of a cursor's sort key */

typedef struct rsh_ctx rsh_ctx_t;
typedef void (*rsh_step_fn)(rsh_ctx_t *c);

struct rsh_ctx {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess;
    db_txn_t *txn;
    int rc;             /* first failure inside the transaction or of its commit */
    int status;         /* a refusal decided inside the transaction (404, 409, 422); 0 none */
    const char *code;   /* its problem code */
    const char *detail; /* its detail */
    rsh_step_fn step;   /* runs once the transaction has begun */
    rsh_step_fn done;   /* runs after COMMIT/ROLLBACK */
    char org_id[37];
    char id[37];         /* the path's object id (invitation, group, category) */
    char patient_id[37]; /* the path's or the caller's patient id */
    int page_limit;
    char cur_key[RSH_KEY_MAX + 1]; /* cursor: sort key ("" when none) */
    char cur_id[37];               /* cursor: id */
    json_object *row;              /* the answer being built (put with the context) */
    const void *kind;              /* group.c: the kind of label */
    void *ext;                     /* a module's own state, freed with ext_free */
    void (*ext_free)(void *ext);
};

/* A context freed with |req|; NULL when out of memory (then answered 500). */
rsh_ctx_t *rsh_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess);

/* 400 validation_failed naming |field|. Returns what h2s_respond_problem does. */
int rsh_field_error(h2s_req_t *req, const char *field, const char *msg);

/* 1 when |id| is a canonical lower-case UUID. */
int rsh_uuid_ok(const char *id);

/*
 * Staff routes: the caller must be staff (or admin) of path {org_id}: a
 * patient or operator is 403, another org (or a malformed id) 404. Copies the
 * org id into c->org_id. 1 when allowed, else answered.
 */
int rsh_staff_ok(rsh_ctx_t *c);

/* Patient routes: 1 when the caller is a patient (c->patient_id set), else answered 403. */
int rsh_patient_ok(rsh_ctx_t *c);

/* Path parameter |name| as a UUID into |out| (37 bytes); else answered 404 |what|. 1 when ok. */
int rsh_path_id(rsh_ctx_t *c, const char *name, char *out, const char *what);

/*
 * ?limit= (1-200, default 50) and ?cursor= (decoded into c->cur_key and
 * c->cur_id). |int_key|: the cursor's key must be a decimal integer. 1 when
 * valid, else answered 400 naming the parameter.
 */
int rsh_page(rsh_ctx_t *c, int int_key);

/* The cursor of (|key|, |id|) into |out| (base64url, at most 512 characters + NUL). */
void rsh_cursor(const char *key, const char *id, char *out, size_t cap);

/*
 * Decodes cursor |in| into |key| (RSH_KEY_MAX + 1 bytes) and |id| (37 bytes).
 * PHR_OK, or PHR_EINVAL when it is not exactly what rsh_cursor makes (a UUID
 * id; with |int_key| a decimal key).
 */
int rsh_cursor_parse(const char *in, int int_key, char *key, char *id);

/* ---- invitation codes ---------------------------------------------------- */

#define RSH_CODE_LEN 8
/* No 0/O, 1/I/L: easy to read aloud and type. 31 characters. */
#define RSH_CODE_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

/*
 * A new code into |out| (RSH_CODE_LEN + 1 bytes) from RAND_bytes, every
 * character equally likely (bytes past the last multiple of 31 are dropped).
 * PHR_OK or PHR_EGENERIC.
 */
int rsh_code_new(char *out);

/* A typed code normalised (upper case; spaces, hyphens dropped). 1 when well formed. */
int rsh_code_normalise(const char *in, char *out);

/* Epoch milliseconds text as a JST time string, NULL for "" or NULL. */
json_object *rsh_time(const char *ms);

/* String or JSON null for a NULL result column. */
json_object *rsh_col_str(const PGresult *res, int row, int col);

/* ---- transactions ------------------------------------------------------- */

/* Begins a transaction, then |step|(c) (answered 503 when it cannot begin). */
void rsh_begin(rsh_ctx_t *c, rsh_step_fn step);

/* Notes a failure (the first one sticks). */
void rsh_note(rsh_ctx_t *c, int rc);

/* Queues a statement in the transaction; |cb| NULL only records failures. */
void rsh_q(rsh_ctx_t *c, const char *sql, int n, const char *const *p, db_cb cb);

/* Queues the audit event |ev| as an outbox row (topic "audit", key the event id). */
void rsh_audit(rsh_ctx_t *c, aev_t *ev);

/* An event of the caller doing |action| on |type| |id| (target org c->org_id when set). */
void rsh_aev(rsh_ctx_t *c, aev_t *ev, const char *action, const char *type, const char *id);

/* Sets a refusal (answered after the rollback); the transaction will not commit. */
void rsh_refuse(rsh_ctx_t *c, int status, const char *code, const char *detail);

/* Commits (rolls back after a failure or refusal), then |done|(c). */
void rsh_end(rsh_ctx_t *c, rsh_step_fn done);

/*
 * Answers a refusal or failure of the transaction (PHR_ECONFLICT as 409
 * |conflict_code|); kicks the outbox relay otherwise. 1 when it answered.
 */
int rsh_failed(rsh_ctx_t *c, const char *conflict_code, const char *what);

#endif
