/*
 * aev.h - the JSON of one audit event (proto/schemas/audit-event.json), as
 * every service puts it in its outbox (topic "audit", key = event_id).
 *
 * aev_init fills the actor from the caller's session and request (address
 * from the gateway's x-forwarded-for entry, user agent, request id); the
 * caller then names the target and, when it is not a success, the outcome.
 */
#ifndef PHR_AEV_H
#define PHR_AEV_H

#include <json-c/json.h>

#include "h2s.h"
#include "session.h"

#define AEV_ID_LEN 37

/* Events per POST /internal/v1/events at most: the audit ingest's limit and the relays' batch. */
#define AEV_BATCH_MAX 1000

typedef struct {
    const char *service; /* "auth", "records", ... */
    const char *action;  /* "records.read" */
    /* actor: from the session; kind "anonymous" without one, "service" for jobs */
    const char *actor_id, *actor_kind, *actor_org_id, *actor_role, *session_id;
    char ip[46];
    char user_agent[257];
    /* target */
    const char *target_type, *target_id, *patient_id, *target_org_id;
    /* outcome: "success" unless set */
    const char *result, *reason;
    const char *request_id; /* NULL for background jobs */
    json_object *details;   /* optional small object (no health values, no secrets); taken */
} aev_t;

/*
 * Starts an event of |service| doing |action| for the caller of |req|
 * (|req| and |sess| may be NULL: a background job acts as kind "service").
 * Strings are borrowed: |sess| and |req| must outlive aev_json.
 */
void aev_init(aev_t *ev, const char *service, const char *action, h2s_req_t *req,
              const sess_t *sess);

/*
 * The event as JSON text (caller frees) with a fresh UUIDv7 written to
 * |event_id| (AEV_ID_LEN bytes): the outbox key. Takes ev->details. NULL on
 * allocation failure.
 */
char *aev_json(aev_t *ev, char *event_id);

#endif
