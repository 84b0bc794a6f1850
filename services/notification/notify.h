/*
 * notify.h - enqueueing notifications (the one insert path) and waking delivery.
 *
 * notify_enqueue renders the message of |r| (template.h: locale, then the
 * fallback) and inserts one row of `notifications` (status queued) plus its
 * first `notification_events` row inside the caller's transaction |txn|. A
 * missing template variable, an unknown kind, a channel the kind does not
 * have or a missing address is refused with PHR_EINVAL before any SQL (|cb|
 * is then not called). Otherwise |cb| gets the INSERT result: one row
 * (id text, status text), or no row when |r->idempotency_key| was already
 * used (ON CONFLICT DO NOTHING: a resumed batch creates no duplicate).
 * After the caller's COMMIT, notify_kick wakes the delivery workers.
 */
#ifndef PHR_NOTIFICATION_NOTIFY_H
#define PHR_NOTIFICATION_NOTIFY_H

#include <json-c/json.h>

#include "db.h"
#include "svc.h"

typedef struct {
    const char *kind;            /* kind.h name: "maintenance_notice", ... */
    const char *channel;         /* "email" | "sms" */
    const char *to_account_id;   /* uuid text or NULL */
    const char *to_address;      /* e-mail address or E.164 phone (required) */
    const char *locale;          /* "ja" | "en"; NULL = ja */
    const json_object *params;   /* object of string values (borrowed) */
    const char *notice_id;       /* uuid text or NULL */
    const char *incident_id;     /* uuid text or NULL */
    const char *idempotency_key; /* unique per notification (required) */
} notify_req_t;

int notify_enqueue(svc_t *svc, db_txn_t *txn, const notify_req_t *r, db_cb cb, void *ud);

/* Tells the delivery workers new rows committed: deliver now rather than at the next poll. */
void notify_kick(svc_t *svc);

/* Route sets of webhook.c, notice.c and incident.c: list them in main.c's route sets. */
extern const svc_routes_t notif_webhook_routes;
extern const svc_routes_t notif_notice_routes;
extern const svc_routes_t notif_incident_routes;

/*
 * The notice and incident background jobs (due notices sent page by page, resumable;
 * incident retries and escalation): call notif_jobs_start from the service's init (after
 * the pools exist) and notif_jobs_stop from its fini.
 */
int notif_jobs_start(svc_t *svc);
void notif_jobs_stop(svc_t *svc);

#endif
