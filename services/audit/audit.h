/*
 * audit.h - the audit service's modules: ingest and the single chain writer
 * (ingest.c), checkpoints (checkpoint.c), verification (verify.c), retention
 * (retention.c), and a2's query and review route sets (query.c, review.c).
 */
#ifndef PHR_AUDIT_H
#define PHR_AUDIT_H

#include <openssl/evp.h>
#include <stdint.h>

#include "chain.h"
#include "svc.h"

#define AUDIT_PEM_MAX 1024

typedef struct audit_writer audit_writer_t;

/* Per process state (svc_data). */
typedef struct {
    svc_t *svc;
    char pub_pem[AUDIT_PEM_MAX];
    char key_id[17];    /* SHA-256 of the public key's DER, 16 hex */
    EVP_PKEY *sign_key; /* audit_signing.pem */
    EVP_PKEY *pub_key;  /* audit_signing.pub.pem */
    audit_writer_t *writer;
    struct event *maint; /* partitions, retention, timed checkpoints */
} audit_t;

audit_t *audit_get(const svc_t *svc);

/* Loads both halves of the checkpoint key and derives key_id. PHR_OK or an error. */
int audit_keys_load(audit_t *a);

/* ---- ingest.c: POST /internal/v1/events and the chain writer ---- */
extern const svc_routes_t audit_ingest_routes;
audit_writer_t *audit_writer_create(audit_t *a);
void audit_writer_free(audit_writer_t *w);
/*
 * Appends one event of the audit service itself (JSON text of
 * proto/schemas/audit-event.json, e.g. from aev_json) to the chain through
 * the writer, without an outbox round trip. PHR_OK: |cb| is called once,
 * never from inside this call, with PHR_OK when stored (or already stored)
 * or an error. PHR_EINVAL (not a valid event) or PHR_ENOMEM: |cb| is not called.
 */
int audit_append(svc_t *svc, const char *json, void (*cb)(int rc, void *ud), void *ud);
/* Queues a checkpoint of the head if it has events not yet covered (timer). */
void audit_writer_checkpoint(audit_writer_t *w);

/* ---- checkpoint.c ---- */
/*
 * Appends to |txn| the INSERT of a signed checkpoint of (seq, hash) at the
 * current time. PHR_OK or an error (nothing queued).
 */
int audit_checkpoint_add(audit_t *a, db_txn_t *txn, int64_t seq,
                         const unsigned char hash[CHAIN_HASH_LEN], db_cb cb, void *ud);

/* ---- verify.c: GET /api/v1/admin/audit/verify ---- */
extern const svc_routes_t audit_verify_routes;

/* ---- archive.c: retention exports, their verification, then the drop ---- */
extern const svc_routes_t audit_archive_routes;
/*
 * Starts a retention run: every expired partition exported, verified and
 * recorded, then audit_drop_expired (|export_only|: the exports only). With
 * |req| the run answers it; PHR_ECONFLICT while another run is under way.
 */
int audit_archive_run(audit_t *a, h2s_req_t *req, int export_only);

/* ---- retention.c: monthly partitions and the retention timer ---- */
/* Starts the maintenance timer (partitions ahead, retention, timed checkpoints). */
int audit_maint_start(audit_t *a);
void audit_maint_stop(audit_t *a);

/* ---- a2: query.c, review.c ---- */
extern const svc_routes_t audit_query_routes;
/* Columns 0..22 of a StoredEvent (alias e), as audit_export_row reads them. */
#define AUDIT_EVENT_COLS                                                                           \
    "e.seq, e.event_id::text, (extract(epoch FROM e.occurred_at) * 1000000)::bigint, "             \
    "(extract(epoch FROM e.recorded_at) * 1000000)::bigint, e.actor_account_id, e.actor_kind, "    \
    "e.actor_org_id, e.actor_role, e.actor_session_id, e.actor_ip, e.actor_user_agent, e.action, " \
    "e.target_type, e.target_id, e.target_patient_id, e.target_org_id, e.result, e.reason, "       \
    "e.source_service, e.request_id, e.details::text, encode(e.prev_hash, 'hex'), "                \
    "encode(e.hash, 'hex')"
/*
 * One line of the auditor's export (proto/audit.yaml ExportLine): row |i| of a
 * page whose column 23 is the kind, 'e' an event (AUDIT_EVENT_COLS), 'c' a
 * checkpoint (seq, key_id, signed_at us, base64 signature in 21, hash in 22),
 * else a foreign link (seq, hash). Also the retention archives' lines.
 */
json_object *audit_export_row(PGresult *res, int i);
extern const svc_routes_t audit_review_routes;
/* The monthly access-review snapshot timer (00:00 JST on the 1st; a missed one is caught up). */
int audit_review_start(svc_t *svc);
void audit_review_stop(void);

#endif
