/*
 * deliver.h - the delivery workers: claim due rows in batches (FOR UPDATE SKIP LOCKED),
 * send them through provider.h, record the outcome with its history row and audit event,
 * retry timeouts / 429 / 5xx with full-jitter exponential backoff (Retry-After honoured)
 * up to notify_max_attempts, then dead-letter; other answers are permanent (dead at
 * once). A reaper requeues claims older than notify_claim_timeout_s (a crashed worker).
 *
 * Exactly once at the provider: the claim (status sending, claimed_at) is committed before
 * the outbound call, so an attempt whose outcome is unknown - its claim reaped, or a timeout
 * or transport error after the request went out - is recorded as unknown_since. The next
 * attempt first asks the provider (prov_lookup): found -> sent with the provider's id and
 * nothing sent; not found -> the claim is stamped anew (and checked still ours) and sent;
 * lookup failing (timeout, 429, 5xx) -> retried like a send; refused (other 4xx, e.g. a key
 * without Email Activity access) -> sent anyway (at least once).
 */
#ifndef PHR_NOTIFICATION_DELIVER_H
#define PHR_NOTIFICATION_DELIVER_H

#include <stdint.h>

#include "provider.h"
#include "svc.h"

typedef struct dlv dlv_t;

/* Starts the workers of |svc| (kept as svc_data). Returns PHR_OK or PHR_ENOMEM. */
int dlv_start(svc_t *svc);

/* Stops them (sends in flight are abandoned: their claims are reaped later). */
void dlv_stop(svc_t *svc);

typedef enum { DLV_SENT, DLV_RETRY, DLV_DEAD } dlv_verdict_t;

/*
 * The verdict on one attempt (|attempts| made so far, |max_attempts| allowed) and, for
 * DLV_RETRY, the delay in ms: full jitter random(0, min(cap, base * 2^(attempts-1))),
 * at least the provider's Retry-After, and at least |unknown_ms| after a timeout (the
 * provider may have accepted: its status webhook, which stops the resend, gets that long).
 * |rnd| is a uniform random 64-bit value.
 */
dlv_verdict_t dlv_judge(const char *channel, const prov_result_t *res, int attempts,
                        int max_attempts, int base_ms, int cap_ms, int unknown_ms, uint64_t rnd,
                        long *delay_ms);

#endif
