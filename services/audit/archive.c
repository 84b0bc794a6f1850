/*
 * archive.c - retention of the audit log: each monthly partition older than
 * audit_retention_days is exported whole (the auditor's export lines, events
 * and their checkpoints, proto/audit.yaml ExportLine) to
 * <audit_archive_dir>/<partition>.jsonl, the file is verified offline on a
 * worker thread (chain_archive_check: re-hashed from the file, linked to the
 * hashes stored around the range, checkpoint signatures checked), recorded in
 * audit_archives (file, sha256, events, last hash) and only then may
 * audit_drop_expired drop the partition. Checkpoints are never deleted.
 *
 * A file that fails verification is renamed <file>.rejected-<time> and its
 * partition kept; an archive already on disk without a record (an earlier
 * run's export, a crash) is verified rather than trusted. One run at a time:
 * hourly from the maintenance timer (retention.c) and on
 * POST /internal/v1/retention/archive (phrctl retention run).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "err.h"
#include "hex.h"
#include "log.h"
#include "timeutil.h"

#define ARCH_PAGE "2000"

/* Expired partitions (upper bound at least $1 days ago) without an archive, oldest first. */
static const char arch_sql_parts[] =
    "SELECT p.name, p.b[1], p.b[2] FROM (SELECT c.relname::text AS name,"
    " regexp_match(pg_get_expr(c.relpartbound, c.oid),"
    " 'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS b"
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'audit_events'::regclass) p"
    " WHERE p.b[2]::timestamptz <= now() - make_interval(days => $1::int)"
    " AND NOT EXISTS (SELECT 1 FROM audit_archives a WHERE a.partition_name = p.name)"
    " ORDER BY p.b[1]::timestamptz";

/* A partition's span and the stored hashes on both sides of it. */
static const char arch_sql_span[] =
    "WITH s AS (SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM audit_events"
    " WHERE recorded_at >= $1::timestamptz AND recorded_at < $2::timestamptz)"
    " SELECT s.n, coalesce(s.lo, 0), coalesce(s.hi, 0),"
    " coalesce((SELECT encode(hash, 'hex') FROM audit_events WHERE seq = s.lo - 1 LIMIT 1),"
    " (SELECT encode(last_hash, 'hex') FROM audit_archives WHERE to_seq = s.lo - 1"
    " AND events > 0 LIMIT 1), CASE WHEN s.lo = 1 THEN repeat('00', 32) END),"
    " (SELECT encode(prev_hash, 'hex') FROM audit_events WHERE seq = s.hi + 1 LIMIT 1)"
    " FROM s";

/* One page of the partition after seq $3: events, then the checkpoints of their seqs. */
static const char arch_sql_page[] =
    "WITH ev AS (SELECT " AUDIT_EVENT_COLS ", 'e'::text AS k FROM audit_events e"
    " WHERE e.recorded_at >= $1::timestamptz AND e.recorded_at < $2::timestamptz"
    " AND e.seq > $3::bigint ORDER BY e.seq LIMIT " ARCH_PAGE ")"
    " SELECT * FROM (SELECT * FROM ev UNION ALL"
    " SELECT c.seq, c.key_id, (extract(epoch FROM c.signed_at) * 1000000)::bigint, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, translate(encode(c.signature, 'base64'), E'\\n', ''), encode(c.hash, 'hex'), 'c'"
    " FROM checkpoints c WHERE c.seq IN (SELECT seq FROM ev)) u ORDER BY 1, 24 DESC";

static const char arch_sql_record[] =
    "INSERT INTO audit_archives (partition_name, from_seq, to_seq, events, archive_file,"
    " export_sha256, first_prev_hash, last_hash, exported_at, verified_at)"
    " VALUES ($1, $2::bigint, $3::bigint, $4::bigint, $5, $6, decode($7, 'hex'),"
    " decode($8, 'hex'), $9::timestamptz, now())";

static const char arch_sql_drop[] = "SELECT audit_drop_expired($1::int)";

typedef struct {
    audit_t *a;
    h2s_req_t *req; /* NULL: the timer */
    int export_only;
    char days[16];
    PGresult *parts;
    int pi;
    json_object *report, *dropped;
    /* the partition at hand */
    char name[64];
    int64_t events, from, to;
    unsigned char prev[CHAIN_HASH_LEN], next_prev[CHAIN_HASH_LEN];
    int has_prev, has_next;
    char path[512], tmp[520], after[24], exported_at[48];
    FILE *f;
    chain_archive_check_t chk;
    int chk_rc;
} arch_job_t;

static arch_job_t *arch_running;

static void arch_next_partition(arch_job_t *j);

static const char *
arch_dir(const cfg_t *cfg, char *buf, size_t cap)
{
    const char *var = getenv("PHR_VAR");

    if (cfg->audit_archive_dir[0] != '\0') {
        return cfg->audit_archive_dir;
    }
    snprintf(buf, cap, "%s/audit-archive", var != NULL && var[0] != '\0' ? var : "var");
    return buf;
}

static void
arch_close_tmp(arch_job_t *j)
{
    if (j->f != NULL) {
        fclose(j->f);
        j->f = NULL;
        unlink(j->tmp);
    }
}

static void
arch_finish(arch_job_t *j, int rc)
{
    if (rc != PHR_OK) {
        log_error("audit retention: stopped at %s: %s", j->name[0] ? j->name : "the start",
                  phr_err_str(rc));
    }
    if (j->req != NULL) {
        if (rc == PHR_OK) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "retention_days",
                                   json_object_new_int((int)strtol(j->days, NULL, 10)));
            json_object_object_add(o, "partitions", json_object_get(j->report));
            json_object_object_add(o, "dropped", json_object_get(j->dropped));
            h2s_respond_json(j->req, 200, o);
        } else {
            svc_respond_error(j->req, rc == PHR_ECONFLICT ? rc : PHR_EUNAVAIL,
                              "the retention run stopped; retry later");
        }
    }
    arch_close_tmp(j);
    PQclear(j->parts);
    json_object_put(j->report);
    json_object_put(j->dropped);
    arch_running = NULL;
    free(j);
}

/* Appends this partition's outcome to the report. */
static void
arch_report(arch_job_t *j, const char *status, const char *reason)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "partition", json_object_new_string(j->name));
    json_object_object_add(o, "status", json_object_new_string(status));
    json_object_object_add(o, "events", json_object_new_int64(j->events));
    json_object_object_add(o, "file", j->path[0] ? json_object_new_string(j->path) : NULL);
    if (strcmp(status, "archived") == 0) {
        char hex[2 * CHAIN_HASH_LEN + 1];
        hex_encode(j->chk.sha256, CHAIN_HASH_LEN, hex);
        json_object_object_add(o, "sha256", json_object_new_string(hex));
    }
    json_object_object_add(o, "reason", reason != NULL ? json_object_new_string(reason) : NULL);
    json_object_array_add(j->report, o);
}

static void
arch_drop_cb(int rc, PGresult *res, void *ud)
{
    arch_job_t *j = ud;

    if (rc != PHR_OK) {
        log_error("audit retention: drop failed: %s", res ? PQresultErrorMessage(res) : "");
        arch_finish(j, rc);
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        log_warn("audit retention: dropped partition %s (exported and verified)",
                 PQgetvalue(res, r, 0));
        json_object_array_add(j->dropped, json_object_new_string(PQgetvalue(res, r, 0)));
    }
    arch_finish(j, PHR_OK);
}

static void
arch_record_cb(int rc, PGresult *res, void *ud)
{
    arch_job_t *j = ud;

    if (rc != PHR_OK) {
        log_error("audit retention: %s not recorded: %s", j->name,
                  res ? PQresultErrorMessage(res) : "");
        arch_finish(j, rc);
        return;
    }
    log_info("audit retention: %s archived to %s (%" PRId64 " events, verified)", j->name, j->path,
             j->events);
    arch_report(j, "archived", NULL);
    arch_next_partition(j);
}

static void
arch_verify_work(void *arg)
{
    arch_job_t *j = arg;

    j->chk_rc = chain_archive_check(j->path, &j->chk);
}

static void
arch_verify_done(int rc, void *arg)
{
    arch_job_t *j = arg;
    char from[24], to[24], n[24], sha[2 * CHAIN_HASH_LEN + 1];
    char first[2 * CHAIN_HASH_LEN + 1], last[2 * CHAIN_HASH_LEN + 1];

    if (rc != PHR_OK) {
        arch_finish(j, rc);
        return;
    }
    if (j->chk_rc != 0) {
        char bad[600], reason[96];
        snprintf(bad, sizeof(bad), "%s.rejected-%" PRId64, j->path, tu_now_ms());
        log_error("audit retention: archive %s of %s failed verification at line %" PRId64
                  ": %s; kept the partition, file moved to %s",
                  j->path, j->name, j->chk.bad_line, j->chk.reason, bad);
        if (rename(j->path, bad) != 0) {
            log_error("audit retention: rename %s: %s", j->path, strerror(errno));
        }
        snprintf(reason, sizeof(reason), "%s at line %" PRId64, j->chk.reason, j->chk.bad_line);
        arch_report(j, "rejected", reason);
        arch_next_partition(j);
        return;
    }
    snprintf(from, sizeof(from), "%" PRId64, j->from);
    snprintf(to, sizeof(to), "%" PRId64, j->to);
    snprintf(n, sizeof(n), "%" PRId64, j->events);
    hex_encode(j->chk.sha256, CHAIN_HASH_LEN, sha);
    hex_encode(j->chk.first_prev, CHAIN_HASH_LEN, first);
    hex_encode(j->chk.last_hash, CHAIN_HASH_LEN, last);
    const char *p[9] = {j->name,
                        from,
                        to,
                        n,
                        j->path,
                        sha,
                        j->events > 0 ? first : NULL,
                        j->events > 0 ? last : NULL,
                        j->exported_at};
    if ((rc = db_query(svc_db(j->a->svc), arch_sql_record, 9, p, arch_record_cb, j)) != PHR_OK) {
        arch_finish(j, rc);
    }
}

static void
arch_verify(arch_job_t *j)
{
    struct stat st;

    if (stat(j->path, &st) != 0) {
        arch_finish(j, PHR_EIO);
        return;
    }
    chain_format_utc((int64_t)st.st_mtime * 1000000, j->exported_at, sizeof(j->exported_at));
    memset(&j->chk, 0, sizeof(j->chk));
    j->chk.from_seq = j->from;
    j->chk.to_seq = j->to;
    j->chk.events = j->events;
    j->chk.prev = j->has_prev ? j->prev : NULL;
    j->chk.next_prev = j->has_next ? j->next_prev : NULL;
    j->chk.pub = j->a->pub_key;
    int rc = workq_submit(svc_workq(j->a->svc), arch_verify_work, arch_verify_done, j);
    if (rc != PHR_OK) {
        arch_finish(j, rc);
    }
}

/* The export is complete: durable, then renamed into place. */
static void
arch_export_done(arch_job_t *j)
{
    int bad = fflush(j->f) != 0 || fsync(fileno(j->f)) != 0;

    bad = fclose(j->f) != 0 || bad;
    j->f = NULL;
    if (bad || rename(j->tmp, j->path) != 0) {
        log_error("audit retention: writing %s: %s", j->path, strerror(errno));
        unlink(j->tmp);
        arch_finish(j, PHR_EIO);
        return;
    }
    if (j->export_only) {
        arch_report(j, "exported", NULL);
        arch_next_partition(j);
        return;
    }
    arch_verify(j);
}

static void arch_export_page(arch_job_t *j);

static void
arch_page_cb(int rc, PGresult *res, void *ud)
{
    arch_job_t *j = ud;
    int events = 0;

    if (rc != PHR_OK) {
        arch_finish(j, rc);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        size_t len = 0;
        json_object *o = audit_export_row(res, i);
        const char *txt = jx_to_string(o, &len);
        int ok = txt != NULL && fwrite(txt, 1, len, j->f) == len && fputc('\n', j->f) != EOF;
        json_object_put(o);
        if (!ok) {
            log_error("audit retention: writing %s: %s", j->tmp, strerror(errno));
            arch_finish(j, PHR_EIO);
            return;
        }
        if (PQgetvalue(res, i, 23)[0] == 'e') {
            events++;
            snprintf(j->after, sizeof(j->after), "%s", PQgetvalue(res, i, 0));
        }
    }
    if (events == 0 || strtoll(j->after, NULL, 10) >= j->to) {
        arch_export_done(j);
    } else {
        arch_export_page(j);
    }
}

static void
arch_export_page(arch_job_t *j)
{
    const char *p[3] = {PQgetvalue(j->parts, j->pi, 1), PQgetvalue(j->parts, j->pi, 2), j->after};
    int rc = db_query(svc_db(j->a->svc), arch_sql_page, 3, p, arch_page_cb, j);

    if (rc != PHR_OK) {
        arch_finish(j, rc);
    }
}

static void
arch_span_cb(int rc, PGresult *res, void *ud)
{
    arch_job_t *j = ud;
    char dirbuf[256];
    const char *dir = arch_dir(svc_cfg(j->a->svc), dirbuf, sizeof(dirbuf));

    if (rc != PHR_OK || PQntuples(res) != 1) {
        arch_finish(j, rc != PHR_OK ? rc : PHR_EGENERIC);
        return;
    }
    j->events = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    j->from = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    j->to = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    j->has_prev =
        !PQgetisnull(res, 0, 3) && hex_decode(PQgetvalue(res, 0, 3), j->prev, CHAIN_HASH_LEN) == 0;
    j->has_next = !PQgetisnull(res, 0, 4) &&
                  hex_decode(PQgetvalue(res, 0, 4), j->next_prev, CHAIN_HASH_LEN) == 0;
    if (j->events > 0 && j->to - j->from + 1 != j->events) {
        /* seqs of another month in between (clock set back): not one range, kept */
        log_error("audit retention: %s holds %" PRId64 " events in seq %" PRId64 "..%" PRId64
                  ": not contiguous, kept",
                  j->name, j->events, j->from, j->to);
        arch_report(j, "kept", "not_contiguous");
        arch_next_partition(j);
        return;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("audit retention: archive directory %s: %s", dir, strerror(errno));
        arch_finish(j, PHR_EIO);
        return;
    }
    snprintf(j->path, sizeof(j->path), "%s/%s.jsonl", dir, j->name);
    if (access(j->path, F_OK) == 0) {
        arch_verify(j); /* exported earlier: verified, never trusted */
        return;
    }
    snprintf(j->tmp, sizeof(j->tmp), "%s.part", j->path);
    int fd = open(j->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (j->f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        log_error("audit retention: %s: %s", j->tmp, strerror(errno));
        arch_finish(j, PHR_EIO);
        return;
    }
    if (j->events == 0) {
        arch_export_done(j);
        return;
    }
    snprintf(j->after, sizeof(j->after), "%" PRId64, j->from - 1);
    arch_export_page(j);
}

static void
arch_next_partition(arch_job_t *j)
{
    int rc;

    j->pi++;
    j->name[0] = j->path[0] = '\0';
    if (j->pi >= PQntuples(j->parts)) {
        const char *p[1] = {j->days};
        if (j->export_only) {
            arch_finish(j, PHR_OK);
        } else if ((rc = db_query(svc_db(j->a->svc), arch_sql_drop, 1, p, arch_drop_cb, j)) !=
                   PHR_OK) {
            arch_finish(j, rc);
        }
        return;
    }
    snprintf(j->name, sizeof(j->name), "%s", PQgetvalue(j->parts, j->pi, 0));
    const char *p[2] = {PQgetvalue(j->parts, j->pi, 1), PQgetvalue(j->parts, j->pi, 2)};
    if ((rc = db_query(svc_db(j->a->svc), arch_sql_span, 2, p, arch_span_cb, j)) != PHR_OK) {
        arch_finish(j, rc);
    }
}

static void
arch_parts_cb(int rc, PGresult *res, void *ud)
{
    arch_job_t *j = ud;

    if (rc != PHR_OK) {
        arch_finish(j, rc);
        return;
    }
    j->parts = res;
    j->pi = -1;
    arch_next_partition(j);
}

/* Takes ownership of |res| (the partition list): the rows are read for the whole run. */
static void
arch_parts_keep(int rc, PGresult *res, void *ud)
{
    PGresult *copy = res != NULL ? PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES) : NULL;

    if (rc == PHR_OK && copy == NULL) {
        rc = PHR_ENOMEM;
    }
    arch_parts_cb(rc, copy, ud);
}

int
audit_archive_run(audit_t *a, h2s_req_t *req, int export_only)
{
    const cfg_t *cfg = svc_cfg(a->svc);
    arch_job_t *j;

    if (arch_running != NULL) {
        return PHR_ECONFLICT;
    }
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        return PHR_ENOMEM;
    }
    j->a = a;
    j->req = req;
    j->export_only = export_only;
    j->report = json_object_new_array();
    j->dropped = json_object_new_array();
    snprintf(j->days, sizeof(j->days), "%d",
             cfg->audit_retention_days > 0 ? cfg->audit_retention_days : 1826);
    const char *p[1] = {j->days};
    int rc = db_query(svc_db(a->svc), arch_sql_parts, 1, p, arch_parts_keep, j);
    if (rc != PHR_OK) {
        json_object_put(j->report);
        json_object_put(j->dropped);
        free(j);
        return rc;
    }
    arch_running = j;
    return PHR_OK;
}

/* POST /internal/v1/retention/archive {"export_only"?: bool} (phrctl retention run). */
static void
arch_route(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {{.name = "export_only", .type = JX_BOOL}};
    json_object *body = NULL, *v = NULL;

    (void)sess;
    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    int export_only = json_object_object_get_ex(body, "export_only", &v) && v != NULL &&
                      json_object_get_boolean(v);
    json_object_put(body);
    int rc = audit_archive_run(audit_get(svc), req, export_only);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc,
                          rc == PHR_ECONFLICT ? "a retention run is already under way" : NULL);
    }
}

static const svc_route_t arch_routes[] = {
    /* phrctl has no service identity of its own: it calls with the audit credential. */
    {"POST", "/internal/v1/retention/archive", arch_route,
     SVC_INTERNAL | SVC_NEEDS_DB | SVC_CALLER(CFG_SVC_AUDIT), 0},
};

const svc_routes_t audit_archive_routes = SVC_ROUTES(arch_routes);
