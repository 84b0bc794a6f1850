/*
 * ingest.c - POST /internal/v1/events: the outbox relays' batches, validated
 * event by event (proto/schemas/audit-event.json), deduplicated by event_id
 * and appended to the hash chain by one writer.
 *
 * The writer runs one transaction at a time per process (a FIFO of jobs) and
 * takes a transaction-scoped advisory lock first, so that replicas never
 * fork the chain either: lock, read the head (seq, hash), find the event ids
 * already stored, let PostgreSQL normalise the details (the hash covers the
 * jsonb text it will print back), compute seq/prev_hash/hash in arrival
 * order, insert events and ids, and sign a checkpoint when one is due.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "aev.h"
#include "audit.h"
#include "err.h"
#include "hex.h"
#include "log.h"
#include "timeutil.h"
#include "uuid.h"

#define INGEST_MAX_ITEMS AEV_BATCH_MAX /* proto/audit.yaml maxItems */
#define INGEST_EVENT_MAX 16384         /* bytes of one event's JSON */
#define INGEST_LOCK_KEY "7300206010"
#define INGEST_SKEW_US (5LL * 60 * 1000000)
#define INGEST_GROUP_MAX 2000 /* events of queued batches written in one transaction */

/* One event of a batch. */
typedef struct {
    json_object *obj; /* borrowed from the batch */
    const char *event_id;
    int64_t occurred_us;
    int status; /* 0 pending/accepted, 1 duplicate, 2 rejected */
    int has_details;
    int in_details; /* its details were sent for normalisation */
    jx_errors_t errs;
    int64_t seq;
    chain_event_t ev;
    char *details_text; /* normalised by PostgreSQL */
} ingest_item_t;

typedef enum { JOB_BATCH, JOB_CHECKPOINT } ingest_job_kind_t;

typedef struct ingest_job {
    ingest_job_kind_t kind;
    struct ingest_job *next;
    audit_t *a;
    h2s_req_t *req;
    json_object *batch;
    ingest_item_t *items;
    size_t n;
    int rc; /* first failure in the transaction */
    db_txn_t *txn;
    int64_t head_seq; /* from the head query */
    unsigned char head_hash[CHAIN_HASH_LEN];
    int64_t ckpt_seq;   /* last checkpoint */
    char *ids_array;    /* '{...}' of valid ids */
    char *details_json; /* [details, ...] of valid items with details */
    char *rows_json;    /* jsonb_to_recordset input */
    int64_t recorded_us;
    void (*done)(int rc, void *ud); /* audit_append */
    void *done_ud;
    struct ingest_job **members; /* group commit: the batches this job writes at once */
    size_t nmembers;
} ingest_job_t;

struct audit_writer {
    audit_t *a;
    ingest_job_t *head, *tail;
    int busy;
    int64_t last_event_us; /* for timed checkpoints */
};

static const char ingest_sql_lock[] = "SELECT pg_advisory_xact_lock(" INGEST_LOCK_KEY ")";
static const char ingest_sql_head[] =
    "SELECT e.seq, encode(e.hash, 'hex'), (SELECT coalesce(max(seq), 0) FROM checkpoints)"
    " FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT seq, hash FROM audit_events"
    " ORDER BY seq DESC, recorded_at DESC LIMIT 1) e ON true";
static const char ingest_sql_existing[] =
    "SELECT event_id::text FROM audit_event_ids WHERE event_id = ANY($1::uuid[])";
static const char ingest_sql_details[] =
    "SELECT d::text FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY t(d, n) ORDER BY n";
static const char ingest_sql_insert[] =
    "INSERT INTO audit_events (seq, event_id, occurred_at, recorded_at, actor_account_id,"
    " actor_kind, actor_org_id, actor_role, actor_session_id, actor_ip, actor_user_agent, action,"
    " target_type, target_id, target_patient_id, target_org_id, result, reason, source_service,"
    " request_id, details, prev_hash, hash)"
    " SELECT r.seq, r.event_id, r.occurred_at, r.recorded_at, r.actor_account_id, r.actor_kind,"
    " r.actor_org_id, r.actor_role, r.actor_session_id, r.actor_ip, r.actor_user_agent, r.action,"
    " r.target_type, r.target_id, r.target_patient_id, r.target_org_id, r.result, r.reason,"
    " r.source_service, r.request_id, r.details, decode(r.prev_hash, 'hex'), decode(r.hash, 'hex')"
    " FROM jsonb_to_recordset($1::jsonb) AS r(seq bigint, event_id uuid, occurred_at timestamptz,"
    " recorded_at timestamptz, actor_account_id uuid, actor_kind text, actor_org_id uuid,"
    " actor_role text, actor_session_id uuid, actor_ip text, actor_user_agent text, action text,"
    " target_type text, target_id text, target_patient_id uuid, target_org_id uuid, result text,"
    " reason text, source_service text, request_id text, details jsonb, prev_hash text, hash text)";
static const char ingest_sql_ids[] =
    "INSERT INTO audit_event_ids (event_id, seq) SELECT (x->>'event_id')::uuid,"
    " (x->>'seq')::bigint FROM jsonb_array_elements($1::jsonb) x";

audit_t *
audit_get(const svc_t *svc)
{
    return svc_data(svc);
}

/* ---- validation ---------------------------------------------------------- */

static int
ingest_uuid_ok(const char *s, int v7)
{
    if (s == NULL || strlen(s) != 36 || strspn(s, "0123456789abcdef-") != 36 || !uuid_valid(s)) {
        return 0;
    }
    return !v7 || (s[14] == '7' && strchr("89ab", s[19]) != NULL);
}

/* A string member without NUL bytes and at most |max| characters. */
static const char *
ingest_str(json_object *o, const char *key, size_t min, size_t max, int nullable, int required,
           const char *prefix, jx_errors_t *errs, int *bad)
{
    json_object *v = NULL;
    char field[64];

    snprintf(field, sizeof(field), "%s%s", prefix, key);
    if (!json_object_object_get_ex(o, key, &v) || v == NULL) {
        int present = json_object_object_get_ex(o, key, NULL);
        if ((present && !nullable) || (!present && required)) {
            jx_error_add(errs, field, present ? "must not be null" : "is required");
            *bad = 1;
        }
        return NULL;
    }
    if (!json_object_is_type(v, json_type_string)) {
        jx_error_add(errs, field, "must be a string");
        *bad = 1;
        return NULL;
    }
    const char *s = json_object_get_string(v);
    size_t blen = (size_t)json_object_get_string_len(v);
    size_t chars = jx_utf8_len(s);
    if (strlen(s) != blen) {
        jx_error_add(errs, field, "must not contain NUL characters");
        *bad = 1;
        return NULL;
    }
    if (chars < min || chars > max) {
        jx_error_add(errs, field, "must be %zu to %zu characters", min, max);
        *bad = 1;
        return NULL;
    }
    return s;
}

static int
ingest_in(const char *s, const char *const *vals)
{
    for (size_t i = 0; s != NULL && vals[i] != NULL; i++) {
        if (strcmp(s, vals[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Only |keys| (NULL-terminated) allowed in |o|. */
static void
ingest_known(json_object *o, const char *const *keys, const char *prefix, jx_errors_t *errs,
             int *bad)
{
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        if (!ingest_in(k, keys)) {
            char field[64];
            snprintf(field, sizeof(field), "%s%.40s", prefix, k);
            jx_error_add(errs, field, "unknown member");
            *bad = 1;
        }
    }
}

static json_object *
ingest_obj(json_object *o, const char *key, jx_errors_t *errs, int *bad)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object)) {
        jx_error_add(errs, key, v == NULL ? "is required" : "must be an object");
        *bad = 1;
        return NULL;
    }
    return v;
}

static int
ingest_action_ok(const char *s)
{
    static const char *const svcs[] = {"auth", "records", "notification", "audit", "ops", NULL};
    size_t plen = strcspn(s, ".");
    char first[16];
    int parts = 0;

    if (plen >= sizeof(first)) {
        return 0;
    }
    memcpy(first, s, plen);
    first[plen] = '\0';
    if (!ingest_in(first, svcs)) {
        return 0;
    }
    for (const char *p = s + plen; *p != '\0';) {
        if (*p != '.' || !islower((unsigned char)p[1])) {
            return 0;
        }
        p += 2;
        while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_') {
            p++;
        }
        parts++;
    }
    return parts >= 1 && parts <= 3;
}

static int
ingest_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n < 1 || n > max || !islower((unsigned char)s[0])) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_') {
            return 0;
        }
    }
    return 1;
}

static int
ingest_nul_free(json_object *v)
{
    return strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v);
}

static void
ingest_details(json_object *d, jx_errors_t *errs, int *bad)
{
    size_t n = 0;

    json_object_object_foreach(d, k, v)
    {
        char field[64];
        int ok = 1;
        n++;
        snprintf(field, sizeof(field), "details.%.32s", k);
        if (!ingest_name_ok(k, 32) || strchr(k, '\0') == NULL) {
            jx_error_add(errs, "details", "member names must match ^[a-z][a-z0-9_]{0,31}$");
            *bad = 1;
            continue;
        }
        switch (v == NULL ? json_type_null : json_object_get_type(v)) {
        case json_type_null:
        case json_type_boolean:
        case json_type_int:
        case json_type_double: break;
        case json_type_string:
            ok = ingest_nul_free(v) && jx_utf8_len(json_object_get_string(v)) <= 256;
            break;
        case json_type_array: {
            size_t m = json_object_array_length(v);
            ok = m <= 32;
            for (size_t i = 0; ok && i < m; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                ok = e != NULL && json_object_is_type(e, json_type_string) && ingest_nul_free(e) &&
                     jx_utf8_len(json_object_get_string(e)) <= 64;
            }
            break;
        }
        default: ok = 0;
        }
        if (!ok) {
            jx_error_add(errs, field,
                         "must be a string (<= 256), number, boolean, null or an array of at "
                         "most 32 strings (<= 64)");
            *bad = 1;
        }
    }
    if (n > 16) {
        jx_error_add(errs, "details", "at most 16 members");
        *bad = 1;
    }
}

/* Validates one event into |it|; sets status 2 with errors when it is bad. */
static void
ingest_validate(ingest_item_t *it)
{
    static const char *const top[] = {"event_id", "occurred_at", "recorded_at", "actor",   "action",
                                      "target",   "outcome",     "source",      "details", NULL};
    static const char *const actor_keys[] = {"account_id", "kind", "org_id",     "role",
                                             "session_id", "ip",   "user_agent", NULL};
    static const char *const target_keys[] = {"type", "id", "patient_id", "org_id", NULL};
    static const char *const outcome_keys[] = {"result", "reason", NULL};
    static const char *const source_keys[] = {"service", "request_id", NULL};
    static const char *const kinds[] = {"patient", "staff",     "operator",
                                        "service", "anonymous", NULL};
    static const char *const roles[] = {"staff", "admin", NULL};
    static const char *const results[] = {"success", "failure", "denied", NULL};
    static const char *const services[] = {"auth",  "records", "notification",
                                           "audit", "phrctl",  NULL};
    json_object *o = it->obj, *actor, *target, *outcome, *source, *details = NULL;
    jx_errors_t *e = &it->errs;
    chain_event_t *ev = &it->ev;
    int bad = 0;
    size_t len = 0;

    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        jx_error_add(e, "", "an event must be a JSON object");
        it->status = 2;
        return;
    }
    it->event_id = ingest_str(o, "event_id", 36, 36, 0, 1, "", e, &bad);
    if (it->event_id != NULL && !ingest_uuid_ok(it->event_id, 1)) {
        jx_error_add(e, "event_id", "must be a lower-case UUIDv7");
        bad = 1;
    }
    if (jx_to_string(o, &len) == NULL || len > INGEST_EVENT_MAX) {
        jx_error_add(e, "", "event larger than %d bytes", INGEST_EVENT_MAX);
        it->status = 2;
        return;
    }
    ingest_known(o, top, "", e, &bad);
    const char *occ = ingest_str(o, "occurred_at", 1, 40, 0, 1, "", e, &bad);
    if (occ != NULL && chain_parse_jst(occ, &it->occurred_us) != 0) {
        jx_error_add(e, "occurred_at", "must be RFC 3339 in +09:00 (at most 6 fraction digits)");
        bad = 1;
    }
    const char *rec = ingest_str(o, "recorded_at", 1, 40, 1, 0, "", e, &bad);
    int64_t ignored;
    if (rec != NULL && chain_parse_jst(rec, &ignored) != 0) {
        jx_error_add(e, "recorded_at", "must be RFC 3339 in +09:00");
        bad = 1;
    }
    ev->action = ingest_str(o, "action", 1, 64, 0, 1, "", e, &bad);
    if (ev->action != NULL && !ingest_action_ok(ev->action)) {
        jx_error_add(e, "action", "must match <service>.<object>[.<verb>...]");
        bad = 1;
    }
    if ((actor = ingest_obj(o, "actor", e, &bad)) != NULL) {
        ingest_known(actor, actor_keys, "actor.", e, &bad);
        ev->actor_account_id = ingest_str(actor, "account_id", 36, 36, 1, 0, "actor.", e, &bad);
        ev->actor_kind = ingest_str(actor, "kind", 1, 16, 0, 1, "actor.", e, &bad);
        ev->actor_org_id = ingest_str(actor, "org_id", 36, 36, 1, 0, "actor.", e, &bad);
        ev->actor_role = ingest_str(actor, "role", 1, 16, 1, 0, "actor.", e, &bad);
        ev->actor_session_id = ingest_str(actor, "session_id", 36, 36, 1, 0, "actor.", e, &bad);
        ev->actor_ip = ingest_str(actor, "ip", 0, 45, 1, 0, "actor.", e, &bad);
        ev->actor_user_agent = ingest_str(actor, "user_agent", 0, 256, 1, 0, "actor.", e, &bad);
        if (ev->actor_kind != NULL && !ingest_in(ev->actor_kind, kinds)) {
            jx_error_add(e, "actor.kind",
                         "must be one of patient, staff, operator, service, "
                         "anonymous");
            bad = 1;
        }
        if (ev->actor_role != NULL && !ingest_in(ev->actor_role, roles)) {
            jx_error_add(e, "actor.role", "must be staff, admin or null");
            bad = 1;
        }
    }
    if ((target = ingest_obj(o, "target", e, &bad)) != NULL) {
        ingest_known(target, target_keys, "target.", e, &bad);
        ev->target_type = ingest_str(target, "type", 1, 32, 0, 1, "target.", e, &bad);
        ev->target_id = ingest_str(target, "id", 1, 64, 0, 1, "target.", e, &bad);
        ev->target_patient_id = ingest_str(target, "patient_id", 36, 36, 1, 0, "target.", e, &bad);
        ev->target_org_id = ingest_str(target, "org_id", 36, 36, 1, 0, "target.", e, &bad);
        if (ev->target_type != NULL &&
            (!ingest_name_ok(ev->target_type, 32) || strpbrk(ev->target_type, "0123456789"))) {
            jx_error_add(e, "target.type", "must match ^[a-z][a-z_]{0,31}$");
            bad = 1;
        }
    }
    if ((outcome = ingest_obj(o, "outcome", e, &bad)) != NULL) {
        ingest_known(outcome, outcome_keys, "outcome.", e, &bad);
        ev->result = ingest_str(outcome, "result", 1, 16, 0, 1, "outcome.", e, &bad);
        ev->reason = ingest_str(outcome, "reason", 0, 64, 1, 0, "outcome.", e, &bad);
        if (ev->result != NULL && !ingest_in(ev->result, results)) {
            jx_error_add(e, "outcome.result", "must be success, failure or denied");
            bad = 1;
        }
    }
    if ((source = ingest_obj(o, "source", e, &bad)) != NULL) {
        ingest_known(source, source_keys, "source.", e, &bad);
        ev->source_service = ingest_str(source, "service", 1, 16, 0, 1, "source.", e, &bad);
        ev->request_id = ingest_str(source, "request_id", 0, 64, 1, 0, "source.", e, &bad);
        if (!json_object_object_get_ex(source, "request_id", NULL)) {
            jx_error_add(e, "source.request_id", "is required (null for background jobs)");
            bad = 1;
        }
        if (ev->source_service != NULL && !ingest_in(ev->source_service, services)) {
            jx_error_add(e, "source.service", "unknown service");
            bad = 1;
        }
    }
    const char *uuids[][2] = {{ev->actor_account_id, "actor.account_id"},
                              {ev->actor_org_id, "actor.org_id"},
                              {ev->actor_session_id, "actor.session_id"},
                              {ev->target_patient_id, "target.patient_id"},
                              {ev->target_org_id, "target.org_id"}};
    for (size_t i = 0; i < sizeof(uuids) / sizeof(uuids[0]); i++) {
        if (uuids[i][0] != NULL && !ingest_uuid_ok(uuids[i][0], 0)) {
            jx_error_add(e, uuids[i][1], "must be a lower-case UUID or null");
            bad = 1;
        }
    }
    if (json_object_object_get_ex(o, "details", &details)) {
        if (details == NULL || !json_object_is_type(details, json_type_object)) {
            jx_error_add(e, "details", "must be an object");
            bad = 1;
        } else {
            ingest_details(details, e, &bad);
            it->has_details = 1;
        }
    }
    it->status = bad ? 2 : 0;
}

/* ---- the writer ----------------------------------------------------------- */

static void ingest_next(audit_writer_t *w);
static int ingest_prepare(ingest_job_t *job);

static void
ingest_job_free(ingest_job_t *job)
{
    if (job == NULL) {
        return;
    }
    for (size_t i = 0; i < job->n; i++) {
        free(job->items[i].details_text);
    }
    free(job->items);
    free(job->ids_array);
    free(job->details_json);
    free(job->rows_json);
    if (job->batch != NULL) {
        json_object_put(job->batch);
    }
    for (size_t i = 0; i < job->nmembers; i++) {
        ingest_job_free(job->members[i]);
    }
    free(job->members);
    free(job);
}

static void
ingest_respond(ingest_job_t *job)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    int acc = 0, dup = 0, rej = 0;

    for (size_t i = 0; i < job->n; i++) {
        ingest_item_t *it = &job->items[i];
        json_object *r = json_object_new_object();
        json_object *sent = NULL;
        if (it->event_id == NULL && it->obj != NULL &&
            json_object_is_type(it->obj, json_type_object) &&
            json_object_object_get_ex(it->obj, "event_id", &sent) &&
            json_object_is_type(sent, json_type_string) && json_object_get_string_len(sent) <= 64) {
            json_object_object_add(r, "event_id", json_object_get(sent)); /* as sent */
        } else {
            json_object_object_add(
                r, "event_id", it->event_id != NULL ? json_object_new_string(it->event_id) : NULL);
        }
        if (it->status == 0) {
            acc++;
            json_object_object_add(r, "status", json_object_new_string("accepted"));
            json_object_object_add(r, "seq", json_object_new_int64(it->seq));
        } else if (it->status == 1) {
            dup++;
            json_object_object_add(r, "status", json_object_new_string("duplicate"));
        } else {
            json_object *errs = json_object_new_array();
            rej++;
            json_object_object_add(r, "status", json_object_new_string("rejected"));
            for (size_t k = 0; k < it->errs.n; k++) {
                json_object *fe = json_object_new_object();
                json_object_object_add(fe, "field",
                                       json_object_new_string(it->errs.items[k].field));
                json_object_object_add(fe, "message",
                                       json_object_new_string(it->errs.items[k].message));
                json_object_array_add(errs, fe);
            }
            json_object_object_add(r, "errors", errs);
        }
        json_object_array_add(arr, r);
    }
    json_object_object_add(o, "accepted", json_object_new_int(acc));
    json_object_object_add(o, "duplicates", json_object_new_int(dup));
    json_object_object_add(o, "rejected", json_object_new_int(rej));
    json_object_object_add(o, "results", arr);
    if (rej > 0) {
        log_msg(LOGL_WARN, h2s_req_id(job->req), "audit batch: %d event(s) rejected", rej);
    }
    h2s_respond_json(job->req, 200, o);
}

/* Answers the request of |job| (or calls back its audit_append caller). */
static void
ingest_complete(ingest_job_t *job, int rc)
{
    if (job->req != NULL) {
        if (rc == PHR_OK) {
            ingest_respond(job);
        } else {
            log_msg(LOGL_ERROR, h2s_req_id(job->req), "audit batch not stored: %s",
                    phr_err_str(rc));
            svc_respond_error(job->req, rc == PHR_EINVAL ? PHR_EGENERIC : PHR_EUNAVAIL,
                              "events not stored, retry");
        }
    } else if (job->done != NULL) {
        if (rc == PHR_OK && job->n == 1 && job->items[0].status == 2) {
            rc = PHR_EINVAL;
        }
        job->done(rc, job->done_ud);
    } else if (rc != PHR_OK) {
        log_error("audit checkpoint not stored: %s", phr_err_str(rc));
    }
}

/* Ends |job|: answers its request(s) and starts the next job. */
static void
ingest_finish(ingest_job_t *job, int rc)
{
    audit_writer_t *w = job->a->writer;

    if (job->nmembers > 0) {
        size_t off = 0;
        for (size_t m = 0; m < job->nmembers; m++) {
            ingest_job_t *mj = job->members[m];
            for (size_t i = 0; i < mj->n && off < job->n; i++, off++) {
                mj->items[i].status = job->items[off].status;
                mj->items[i].seq = job->items[off].seq;
            }
            ingest_complete(mj, rc);
        }
    } else {
        ingest_complete(job, rc);
    }
    ingest_job_free(job);
    w->busy = 0;
    ingest_next(w);
}

static void
ingest_end_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;

    (void)res;
    if (job->rc == PHR_OK && rc != PHR_OK) {
        job->rc = rc;
    }
    if (job->rc != PHR_OK) {
        for (size_t i = 0; i < job->n; i++) {
            job->items[i].seq = 0;
        }
    } else if (job->kind == JOB_BATCH) {
        job->a->writer->last_event_us = job->recorded_us;
    }
    ingest_finish(job, job->rc);
}

static void
ingest_end(ingest_job_t *job)
{
    int rc = db_txn_end(job->txn, job->rc == PHR_OK, ingest_end_cb, job);

    job->txn = NULL;
    if (rc != PHR_OK) {
        ingest_finish(job, job->rc != PHR_OK ? job->rc : rc);
    }
}

static void
ingest_stmt_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;

    (void)res;
    if (rc != PHR_OK && job->rc == PHR_OK) {
        job->rc = rc;
        log_error("audit writer statement failed: %s%s", phr_err_str(rc),
                  res != NULL ? PQresultErrorMessage(res) : "");
    }
}

static int64_t
ingest_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void
ingest_put_str(json_object *row, const char *key, const char *v)
{
    json_object_object_add(row, key, v != NULL ? json_object_new_string(v) : NULL);
}

/* Assigns seq and hashes to the new items and queues the inserts. */
static void
ingest_write(ingest_job_t *job)
{
    const cfg_t *cfg = svc_cfg(job->a->svc);
    json_object *rows = json_object_new_array(), *ids = json_object_new_array();
    unsigned char prev[CHAIN_HASH_LEN];
    int64_t seq = job->head_seq;
    char rec[48], occ[48], hex[2 * CHAIN_HASH_LEN + 1];
    size_t nnew = 0;

    memcpy(prev, job->head_hash, CHAIN_HASH_LEN);
    job->recorded_us = ingest_now_us();
    chain_format_utc(job->recorded_us, rec, sizeof(rec));
    for (size_t i = 0; i < job->n && job->rc == PHR_OK; i++) {
        ingest_item_t *it = &job->items[i];
        if (it->status != 0) {
            continue;
        }
        unsigned char hash[CHAIN_HASH_LEN];
        json_object *row = json_object_new_object(), *idr = json_object_new_object();
        it->seq = ++seq;
        it->ev.seq = it->seq;
        it->ev.event_id = it->event_id;
        it->ev.occurred_us = it->occurred_us;
        it->ev.recorded_us = job->recorded_us;
        it->ev.details = it->details_text;
        if (chain_hash(&it->ev, prev, hash) != 0) {
            job->rc = PHR_EGENERIC;
        }
        if (it->occurred_us - job->recorded_us > INGEST_SKEW_US) {
            log_warn("audit event %s: occurred_at is %" PRId64 " s ahead of this clock",
                     it->event_id, (it->occurred_us - job->recorded_us) / 1000000);
        }
        chain_format_utc(it->occurred_us, occ, sizeof(occ));
        json_object_object_add(row, "seq", json_object_new_int64(it->seq));
        ingest_put_str(row, "event_id", it->event_id);
        ingest_put_str(row, "occurred_at", occ);
        ingest_put_str(row, "recorded_at", rec);
        ingest_put_str(row, "actor_account_id", it->ev.actor_account_id);
        ingest_put_str(row, "actor_kind", it->ev.actor_kind);
        ingest_put_str(row, "actor_org_id", it->ev.actor_org_id);
        ingest_put_str(row, "actor_role", it->ev.actor_role);
        ingest_put_str(row, "actor_session_id", it->ev.actor_session_id);
        ingest_put_str(row, "actor_ip", it->ev.actor_ip);
        ingest_put_str(row, "actor_user_agent", it->ev.actor_user_agent);
        ingest_put_str(row, "action", it->ev.action);
        ingest_put_str(row, "target_type", it->ev.target_type);
        ingest_put_str(row, "target_id", it->ev.target_id);
        ingest_put_str(row, "target_patient_id", it->ev.target_patient_id);
        ingest_put_str(row, "target_org_id", it->ev.target_org_id);
        ingest_put_str(row, "result", it->ev.result);
        ingest_put_str(row, "reason", it->ev.reason);
        ingest_put_str(row, "source_service", it->ev.source_service);
        ingest_put_str(row, "request_id", it->ev.request_id);
        if (it->details_text != NULL) {
            json_object *d = NULL;
            json_object_object_get_ex(it->obj, "details", &d);
            json_object_object_add(row, "details", json_object_get(d));
        }
        hex_encode(prev, CHAIN_HASH_LEN, hex);
        ingest_put_str(row, "prev_hash", hex);
        hex_encode(hash, CHAIN_HASH_LEN, hex);
        ingest_put_str(row, "hash", hex);
        json_object_array_add(rows, row);
        ingest_put_str(idr, "event_id", it->event_id);
        json_object_object_add(idr, "seq", json_object_new_int64(it->seq));
        json_object_array_add(ids, idr);
        memcpy(prev, hash, CHAIN_HASH_LEN);
        nnew++;
    }
    if (job->rc == PHR_OK && nnew > 0) {
        const char *p1[1];
        job->rows_json = strdup(jx_to_string(rows, NULL));
        p1[0] = job->rows_json;
        if (p1[0] == NULL) {
            job->rc = PHR_ENOMEM;
        } else if (db_txn_query(job->txn, ingest_sql_insert, 1, p1, ingest_stmt_cb, job) !=
                   PHR_OK) {
            job->rc = PHR_EUNAVAIL;
        } else {
            p1[0] = jx_to_string(ids, NULL);
            if (db_txn_query(job->txn, ingest_sql_ids, 1, p1, ingest_stmt_cb, job) != PHR_OK) {
                job->rc = PHR_EUNAVAIL;
            }
        }
        int every = cfg->audit_checkpoint_events > 0 ? cfg->audit_checkpoint_events : 1000;
        if (job->rc == PHR_OK && seq - job->ckpt_seq >= every &&
            audit_checkpoint_add(job->a, job->txn, seq, prev, ingest_stmt_cb, job) != PHR_OK) {
            job->rc = PHR_EGENERIC;
        }
    }
    json_object_put(rows);
    json_object_put(ids);
    ingest_end(job);
}

/* Last of the reads: everything is known, compute and write. */
static void
ingest_details_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;
    int row = 0;

    ingest_stmt_cb(rc, res, ud);
    for (size_t i = 0; job->rc == PHR_OK && i < job->n; i++) {
        ingest_item_t *it = &job->items[i];
        if (!it->in_details) {
            continue;
        }
        if (res == NULL || row >= PQntuples(res) ||
            (it->details_text = strdup(PQgetvalue(res, row, 0))) == NULL) {
            job->rc = PHR_EGENERIC;
        }
        row++;
    }
    if (job->rc != PHR_OK) {
        ingest_end(job);
        return;
    }
    ingest_write(job);
}

static void
ingest_existing_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;

    ingest_stmt_cb(rc, res, ud);
    if (job->rc != PHR_OK || res == NULL) {
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *id = PQgetvalue(res, r, 0);
        for (size_t i = 0; i < job->n; i++) {
            if (job->items[i].status == 0 && strcmp(job->items[i].event_id, id) == 0) {
                job->items[i].status = 1;
            }
        }
    }
}

static void
ingest_head_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;

    ingest_stmt_cb(rc, res, ud);
    if (job->rc != PHR_OK || res == NULL || PQntuples(res) != 1) {
        job->rc = job->rc != PHR_OK ? job->rc : PHR_EGENERIC;
        return;
    }
    if (PQgetisnull(res, 0, 0)) {
        job->head_seq = 0;
        memset(job->head_hash, 0, CHAIN_HASH_LEN);
    } else {
        job->head_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (hex_decode(PQgetvalue(res, 0, 1), job->head_hash, CHAIN_HASH_LEN) != 0) {
            job->rc = PHR_EGENERIC;
        }
    }
    job->ckpt_seq = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
}

/* A timed checkpoint: sign the head if newer than the last checkpoint. */
static void
ingest_ckpt_head_cb(int rc, PGresult *res, void *ud)
{
    ingest_job_t *job = ud;

    ingest_head_cb(rc, res, ud);
    if (job->rc == PHR_OK && job->head_seq > job->ckpt_seq &&
        audit_checkpoint_add(job->a, job->txn, job->head_seq, job->head_hash, ingest_stmt_cb,
                             job) != PHR_OK) {
        job->rc = PHR_EGENERIC;
    }
    ingest_end(job);
}

static void
ingest_begun(int rc, db_txn_t *txn, void *ud)
{
    ingest_job_t *job = ud;

    if (rc != PHR_OK || txn == NULL) {
        ingest_finish(job, rc != PHR_OK ? rc : PHR_EGENERIC);
        return;
    }
    job->txn = txn;
    if (db_txn_query(txn, ingest_sql_lock, 0, NULL, ingest_stmt_cb, job) != PHR_OK) {
        job->rc = PHR_EUNAVAIL;
        ingest_end(job);
        return;
    }
    if (job->kind == JOB_CHECKPOINT) {
        if (db_txn_query(txn, ingest_sql_head, 0, NULL, ingest_ckpt_head_cb, job) != PHR_OK) {
            job->rc = PHR_EUNAVAIL;
            ingest_end(job);
        }
        return;
    }
    const char *pids[1] = {job->ids_array}, *pdet[1] = {job->details_json};
    if (db_txn_query(txn, ingest_sql_head, 0, NULL, ingest_head_cb, job) != PHR_OK ||
        db_txn_query(txn, ingest_sql_existing, 1, pids, ingest_existing_cb, job) != PHR_OK ||
        db_txn_query(txn, ingest_sql_details, 1, pdet, ingest_details_cb, job) != PHR_OK) {
        job->rc = PHR_EUNAVAIL;
        ingest_end(job);
    }
}

static ingest_job_t *
ingest_pop(audit_writer_t *w)
{
    ingest_job_t *job = w->head;

    w->head = job->next;
    if (w->head == NULL) {
        w->tail = NULL;
    }
    job->next = NULL;
    return job;
}

/*
 * Group commit: batches queued behind |job| are written in the same transaction
 * (one fsync for all), up to INGEST_GROUP_MAX events. Returns the job to run.
 */
static ingest_job_t *
ingest_group(audit_writer_t *w, ingest_job_t *job)
{
    size_t n = job->n, k = 1;
    ingest_job_t *g = NULL;

    if (job->kind != JOB_BATCH) {
        return job;
    }
    for (ingest_job_t *j = w->head;
         j != NULL && j->kind == JOB_BATCH && n + j->n <= INGEST_GROUP_MAX; j = j->next) {
        n += j->n;
        k++;
    }
    if (k == 1 || (g = calloc(1, sizeof(*g))) == NULL ||
        (g->items = calloc(n, sizeof(*g->items))) == NULL ||
        (g->members = calloc(k, sizeof(ingest_job_t *))) == NULL) {
        if (k > 1 && g != NULL) {
            free(g->items);
            free(g);
        }
        return job;
    }
    g->kind = JOB_BATCH;
    g->a = job->a;
    g->members[g->nmembers++] = job;
    while (g->nmembers < k) {
        g->members[g->nmembers++] = ingest_pop(w);
    }
    for (size_t m = 0; m < k; m++) {
        ingest_job_t *mj = g->members[m];
        for (size_t i = 0; i < mj->n; i++) {
            g->items[g->n] = mj->items[i]; /* borrows the member's JSON */
            g->items[g->n].details_text = NULL;
            g->items[g->n].in_details = 0;
            g->n++;
        }
    }
    if (ingest_prepare(g) != PHR_OK) { /* also finds duplicates across the batches */
        free(g->ids_array);
        free(g->details_json);
        g->ids_array = g->details_json = NULL;
        g->rc = PHR_ENOMEM;
    }
    return g;
}

static void
ingest_next(audit_writer_t *w)
{
    while (!w->busy && w->head != NULL) {
        ingest_job_t *job = ingest_group(w, ingest_pop(w));
        w->busy = 1;
        if (job->rc != PHR_OK) {
            ingest_finish(job, job->rc);
            return;
        }
        int rc = db_txn_begin(svc_db(w->a->svc), ingest_begun, job);
        if (rc != PHR_OK) {
            ingest_finish(job, rc); /* resets busy and recurses at most once per job */
            return;
        }
    }
}

static void
ingest_enqueue(audit_writer_t *w, ingest_job_t *job)
{
    job->next = NULL;
    if (w->tail != NULL) {
        w->tail->next = job;
    } else {
        w->head = job;
    }
    w->tail = job;
    ingest_next(w);
}

audit_writer_t *
audit_writer_create(audit_t *a)
{
    audit_writer_t *w = calloc(1, sizeof(*w));

    if (w != NULL) {
        w->a = a;
        w->last_event_us = ingest_now_us();
    }
    return w;
}

void
audit_writer_free(audit_writer_t *w)
{
    if (w == NULL) {
        return;
    }
    while (w->head != NULL) {
        ingest_job_t *job = w->head;
        w->head = job->next;
        ingest_job_free(job);
    }
    free(w);
}

void
audit_writer_checkpoint(audit_writer_t *w)
{
    ingest_job_t *job;

    if (w == NULL || (job = calloc(1, sizeof(*job))) == NULL) {
        return;
    }
    job->kind = JOB_CHECKPOINT;
    job->a = w->a;
    ingest_enqueue(w, job);
}

int
audit_append(svc_t *svc, const char *json, void (*cb)(int rc, void *ud), void *ud)
{
    audit_t *a = audit_get(svc);
    ingest_job_t *job = calloc(1, sizeof(*job));
    jx_errors_t errs = {0};
    json_object *obj = NULL;

    if (job == NULL || (job->items = calloc(1, sizeof(*job->items))) == NULL) {
        free(job);
        return PHR_ENOMEM;
    }
    if (json == NULL || jx_parse(json, strlen(json), 16, &obj, &errs) != PHR_OK) {
        ingest_job_free(job);
        return PHR_EINVAL;
    }
    job->kind = JOB_BATCH;
    job->a = a;
    job->batch = obj;
    job->n = 1;
    job->items[0].obj = obj;
    job->done = cb;
    job->done_ud = ud;
    ingest_validate(&job->items[0]);
    if (job->items[0].status != 0 || ingest_prepare(job) != PHR_OK) {
        log_error("audit_append: invalid event (%s: %s)",
                  job->items[0].errs.n > 0 ? job->items[0].errs.items[0].field : "",
                  job->items[0].errs.n > 0 ? job->items[0].errs.items[0].message : "memory");
        ingest_job_free(job);
        return PHR_EINVAL;
    }
    ingest_enqueue(a->writer, job);
    return PHR_OK;
}

/* ---- the route ------------------------------------------------------------ */

/* Builds '{id,id,...}' and '[details,...]' for the valid items. */
static int
ingest_prepare(ingest_job_t *job)
{
    size_t cap = 3 + job->n * 37;
    json_object *dets = json_object_new_array();
    char *ids = malloc(cap);
    size_t off = 0;

    if (ids == NULL || dets == NULL) {
        free(ids);
        json_object_put(dets);
        return PHR_ENOMEM;
    }
    ids[off++] = '{';
    for (size_t i = 0; i < job->n; i++) {
        ingest_item_t *it = &job->items[i];
        if (it->status != 0) {
            continue;
        }
        /* a second copy of an id in the same batch is a duplicate */
        for (size_t k = 0; k < i; k++) {
            if (job->items[k].status == 0 && strcmp(job->items[k].event_id, it->event_id) == 0) {
                it->status = 1;
                break;
            }
        }
        if (it->status != 0) {
            continue;
        }
        if (off > 1) {
            ids[off++] = ',';
        }
        memcpy(ids + off, it->event_id, 36);
        off += 36;
        if (it->has_details) {
            json_object *d = NULL;
            json_object_object_get_ex(it->obj, "details", &d);
            json_object_array_add(dets, json_object_get(d));
            it->in_details = 1;
        }
    }
    ids[off++] = '}';
    ids[off] = '\0';
    job->ids_array = ids;
    job->details_json = strdup(jx_to_string(dets, NULL));
    json_object_put(dets);
    return job->details_json != NULL ? PHR_OK : PHR_ENOMEM;
}

static void
ingest_events(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *ctype = h2s_req_header(req, "content-type");
    size_t len = 0;
    const char *body = h2s_req_body(req, &len);
    json_object *batch = NULL, *items = NULL;
    jx_errors_t errs = {0};

    (void)sess;
    if (ctype == NULL || strncmp(ctype, "application/json", 16) != 0) {
        h2s_respond_problem(req, 415, "unsupported_media_type", "send application/json", NULL);
        return;
    }
    if (jx_parse(body, len, 16, &batch, &errs) != PHR_OK) {
        h2s_respond_problem(req, 400, "invalid_request", "the body is not JSON", &errs);
        return;
    }
    const char *key = json_object_object_get_ex(batch, "items", &items) ? "items" : "events";
    if (!json_object_is_type(batch, json_type_object) ||
        (items == NULL && !json_object_object_get_ex(batch, "events", &items)) ||
        json_object_object_length(batch) != 1 || !json_object_is_type(items, json_type_array) ||
        json_object_array_length(items) < 1 || json_object_array_length(items) > INGEST_MAX_ITEMS) {
        jx_error_add(&errs, key, "must be the only member: an array of 1 to %d events",
                     INGEST_MAX_ITEMS);
        json_object_put(batch);
        h2s_respond_problem(req, 400, "invalid_request", "not an event batch", &errs);
        return;
    }
    ingest_job_t *job = calloc(1, sizeof(*job));
    size_t n = json_object_array_length(items);
    if (job == NULL || (job->items = calloc(n, sizeof(*job->items))) == NULL) {
        free(job);
        json_object_put(batch);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    job->kind = JOB_BATCH;
    job->a = audit_get(svc);
    job->req = req;
    job->batch = batch;
    job->n = n;
    for (size_t i = 0; i < n; i++) {
        job->items[i].obj = json_object_array_get_idx(items, i);
        ingest_validate(&job->items[i]);
    }
    if (ingest_prepare(job) != PHR_OK) {
        ingest_job_free(job);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (job->items[i].status == 0) {
            ingest_enqueue(job->a->writer, job);
            return;
        }
    }
    ingest_respond(job); /* nothing to store */
    ingest_job_free(job);
}

static const svc_route_t ingest_routes[] = {
    {"POST", "/internal/v1/events", ingest_events, SVC_INTERNAL | SVC_NEEDS_DB,
     (size_t)4 * 1024 * 1024},
};

const svc_routes_t audit_ingest_routes = SVC_ROUTES(ingest_routes);
