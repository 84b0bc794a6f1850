/*
 * purge.h - the retention timer of purge.c (deletion, withdrawal, retention).
 */
#ifndef PHR_RECORDS_PURGE_H
#define PHR_RECORDS_PURGE_H

#include "svc.h"

/*
 * Arms the retention timer: withdrawn patients past RETENTION_DAYS are
 * purged every PURGE_INTERVAL_S seconds (first run a minute after start),
 * as POST /internal/v1/retention/run does on demand. PHR_OK or PHR_ENOMEM.
 */
int rec_purge_start(svc_t *svc);

/* Disarms it (a run in progress finishes on its own). */
void rec_purge_stop(void);

#endif
