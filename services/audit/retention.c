/*
 * retention.c - the audit service's maintenance timer: monthly partitions
 * created ahead (audit_ensure_partitions, 003_events.sql), timed checkpoints
 * (every audit_checkpoint_s seconds when events arrived), and hourly the
 * retention run (archive.c): partitions older than audit_retention_days are
 * exported, verified and recorded, and only then dropped; checkpoints and
 * event ids are never deleted.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "err.h"
#include "log.h"
#include "timeutil.h"

#define MAINT_TICK_S 5
#define MAINT_HOURLY_MS (3600LL * 1000)

static const char maint_sql_partitions[] = "SELECT audit_ensure_partitions(1, 3)";

typedef struct {
    audit_t *a;
    int64_t last_ckpt_ms, last_hourly_ms;
} maint_t;

static maint_t maint_state;

static void
maint_partitions_cb(int rc, PGresult *res, void *ud)
{
    (void)ud;
    if (rc != PHR_OK) {
        log_error("audit partitions: %s %s", phr_err_str(rc),
                  res != NULL ? PQresultErrorMessage(res) : "");
    } else if (PQntuples(res) == 1 && strtol(PQgetvalue(res, 0, 0), NULL, 10) > 0) {
        log_info("audit: %s monthly partition(s) created", PQgetvalue(res, 0, 0));
    }
}

static void
maint_tick(evutil_socket_t fd, short what, void *arg)
{
    maint_t *m = arg;
    const cfg_t *cfg = svc_cfg(m->a->svc);
    db_pool_t *db = svc_db(m->a->svc);
    int64_t now = tu_now_ms();
    int every_s = cfg->audit_checkpoint_s > 0 ? cfg->audit_checkpoint_s : 60;

    (void)fd;
    (void)what;
    if (!db_pool_ready(db)) {
        return;
    }
    if (now - m->last_hourly_ms >= MAINT_HOURLY_MS &&
        db_query(db, maint_sql_partitions, 0, NULL, maint_partitions_cb, NULL) == PHR_OK) {
        int rc = audit_archive_run(m->a, NULL, 0);
        if (rc == PHR_OK || rc == PHR_ECONFLICT) { /* a running one counts */
            m->last_hourly_ms = now;
        }
    }
    if (now - m->last_ckpt_ms >= (int64_t)every_s * 1000) {
        m->last_ckpt_ms = now;
        audit_writer_checkpoint(m->a->writer);
    }
}

int
audit_maint_start(audit_t *a)
{
    struct timeval tv = {MAINT_TICK_S, 0};

    maint_state.a = a;
    maint_state.last_ckpt_ms = tu_now_ms();
    maint_state.last_hourly_ms = 0;
    a->maint = event_new(svc_base(a->svc), -1, EV_PERSIST, maint_tick, &maint_state);
    if (a->maint == NULL || event_add(a->maint, &tv) != 0) {
        return PHR_ENOMEM;
    }
    return PHR_OK;
}

void
audit_maint_stop(audit_t *a)
{
    if (a->maint != NULL) {
        event_free(a->maint);
        a->maint = NULL;
    }
}
