/*
 * hygiene.h - auth's periodic clean-up: withdrawn accounts anonymised after
 * the retention period, secrets of delivered e-mails and SMS wiped from the
 * outbox. A timer and POST /internal/v1/hygiene/run (phrctl retention run).
 */
#ifndef PHR_AUTH_HYGIENE_H
#define PHR_AUTH_HYGIENE_H

#include "svc.h"

extern const svc_routes_t auth_hygiene_routes;

/* Starts the timer (first run a minute after start-up). PHR_OK or PHR_ENOMEM. */
int auth_hygiene_start(svc_t *svc);

/* Stops the timer. */
void auth_hygiene_stop(void);

#endif
