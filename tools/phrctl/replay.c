/*
 * replay.c - the last step of phrctl restore: patient purges (deletion requests,
 * withdrawals past retention) recorded after the restored generation are applied
 * again, so no restore brings a purged patient back (deploy/BACKUPS.md).
 *
 * Before anything is replaced, bk_purges_collect reads the records.patient.purge
 * events of the live audit log after the generation (seq beyond the manifest's
 * audit_chain_head, or occurred at or after its started_at) and those still waiting
 * in the live records outbox, and keeps them in $PHR_BACKUP_DIR/.purge-replay.json,
 * because the restore replaces the audit log too. After the databases are restored,
 * bk_purges_apply deletes each patient's rows again in phr_records (every table with
 * a patient_id column, as services/records/purge.c does) in one transaction with a
 * records.patient.purge audit event (reason restore_replay) in the records outbox.
 * The file goes once every purge is applied; an interrupted restore keeps it and the
 * next restore applies it as well.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "ctl.h"
#include "err.h"
#include "jsonx.h"
#include "timeutil.h"

#define BK_REPLAY_FILE ".purge-replay.json"
#define BK_REPLAY_OUT (1 << 20) /* psql output: ~14000 purges */

static int
bk_uuid_ok(const char *s)
{
    if (strlen(s) != 36) {
        return 0;
    }
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static void
bk_replay_path(const bk_env_t *env, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" BK_REPLAY_FILE, env->dir);
}

/* Adds "<event id> <patient id>" lines of |text| to |purges| (one entry per patient). */
static void
bk_purges_add_lines(json_object *purges, char *text)
{
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (sp == NULL) {
            continue;
        }
        *sp = '\0';
        const char *event = line, *patient = sp + 1;
        if (!bk_uuid_ok(event) || !bk_uuid_ok(patient) ||
            json_object_object_get_ex(purges, patient, NULL)) {
            continue;
        }
        json_object_object_add(purges, patient, json_object_new_string(event));
    }
}

/* Runs |sql| on |db| when table |table| exists there; PHR_ENOTFOUND when it does not. */
static int
bk_sql_if(const bk_env_t *env, const char *db, const char *table, const char *sql, char *out)
{
    char q[128];

    snprintf(q, sizeof(q), "SELECT to_regclass('public.%s') IS NOT NULL", table);
    if (bk_sql(env, db, q, out, BK_REPLAY_OUT) != PHR_OK) {
        return PHR_EIO;
    }
    if (strcmp(out, "t") != 0) {
        return PHR_ENOTFOUND;
    }
    return bk_sql(env, db, sql, out, BK_REPLAY_OUT);
}

json_object *
bk_purges_collect(const bk_env_t *env, json_object *manifest)
{
    char path[BK_PATH + 64], sql[512], since[TU_JST_LEN];
    json_object *head = NULL, *seq = NULL, *started = NULL;
    int64_t ms;

    if (!json_object_object_get_ex(manifest, "started_at", &started) ||
        tu_parse_rfc3339(json_object_get_string(started), &ms) != PHR_OK) {
        fprintf(stderr, "phrctl: manifest: no valid started_at\n");
        return NULL;
    }
    tu_format_jst(ms, since, sizeof(since));
    if (json_object_object_get_ex(manifest, "audit_chain_head", &head) && head != NULL) {
        json_object_object_get_ex(head, "seq", &seq);
    }
    bk_replay_path(env, path, sizeof(path));
    json_object *purges = json_object_from_file(path);
    if (purges == NULL || !json_object_is_type(purges, json_type_object)) {
        json_object_put(purges);
        purges = json_object_new_object();
    }
    char *out = malloc(BK_REPLAY_OUT);
    if (out == NULL) {
        json_object_put(purges);
        return NULL;
    }
    snprintf(sql, sizeof(sql),
             "SELECT event_id::text || ' ' || target_id FROM audit_events "
             "WHERE action = 'records.patient.purge' AND (seq > %lld OR occurred_at >= "
             "'%s'::timestamptz) ORDER BY seq",
             (long long)(seq != NULL ? json_object_get_int64(seq) : 0), since);
    int rc = bk_sql_if(env, "phr_audit", "audit_events", sql, out);
    if (rc == PHR_ENOTFOUND) {
        fprintf(stderr, "phrctl: warning: phr_audit holds no audit log: purges after the "
                        "backup cannot be known from it\n");
    } else if (rc == PHR_OK) {
        bk_purges_add_lines(purges, out);
        rc = bk_sql_if(env, "phr_records", "outbox",
                       "SELECT (body->>'event_id') || ' ' || (body->'target'->>'id') FROM outbox "
                       "WHERE topic = 'audit' AND sent_at IS NULL AND "
                       "body->>'action' = 'records.patient.purge' ORDER BY id",
                       out);
        if (rc == PHR_OK) {
            bk_purges_add_lines(purges, out);
        }
        rc = rc == PHR_ENOTFOUND ? PHR_OK : rc;
    }
    free(out);
    if (rc != PHR_OK && rc != PHR_ENOTFOUND) {
        fprintf(stderr, "phrctl: cannot read the purges from the audit log\n");
        json_object_put(purges);
        return NULL;
    }
    if (json_object_object_length(purges) > 0) {
        size_t len;
        const char *txt = jx_to_string(purges, &len);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, txt, len) != (ssize_t)len || fsync(fd) != 0) {
            fprintf(stderr, "phrctl: cannot write %s: %s\n", path, strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            json_object_put(purges);
            return NULL;
        }
        close(fd);
    }
    return purges;
}

/* |s| as a single-quoted SQL literal into a malloc'd string (standard_conforming_strings). */
static char *
bk_sql_quote(const char *s)
{
    size_t n = strlen(s), j = 0;
    char *q = malloc(2 * n + 3);

    if (q == NULL) {
        return NULL;
    }
    q[j++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            q[j++] = '\'';
        }
        q[j++] = s[i];
    }
    q[j++] = '\'';
    q[j] = '\0';
    return q;
}

/* Purges |patient| in phr_records again, auditing it; *records gets the rows deleted. */
static int
bk_purge_one(const bk_env_t *env, const char *gen, const char *patient, const char *event,
             long *records)
{
    static const char fmt[] =
        "DO $phr$ DECLARE t text; BEGIN "
        "FOR t IN SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables b ON b.table_schema = c.table_schema "
        "AND b.table_name = c.table_name WHERE c.table_schema = 'public' "
        "AND c.column_name = 'patient_id' AND b.table_type = 'BASE TABLE' "
        "AND c.table_name <> 'withdrawals' LOOP "
        "EXECUTE format('DELETE FROM public.%%I WHERE patient_id = $1', t) USING '%s'::uuid; "
        "END LOOP; "
        "IF to_regclass('public.invitations') IS NOT NULL THEN "
        "UPDATE invitations SET used_by = NULL WHERE used_by = '%s'::uuid; END IF; "
        "IF to_regclass('public.withdrawals') IS NOT NULL THEN "
        "UPDATE withdrawals SET purged_at = now() WHERE patient_id = '%s'::uuid "
        "AND purged_at IS NULL; END IF; END $phr$; "
        "INSERT INTO outbox (topic, idempotency_key, body) VALUES ('audit', '%s', %s::jsonb)";
    char out[64], q[160], event_id[37];

    snprintf(q, sizeof(q), "SELECT count(*) FROM records WHERE patient_id = '%s'", patient);
    if (bk_sql(env, "phr_records", q, out, sizeof(out)) != PHR_OK) {
        return PHR_EIO;
    }
    *records = strtol(out, NULL, 10);
    json_object *d = json_object_new_object();
    json_object_object_add(d, "reason", json_object_new_string("restore_replay"));
    json_object_object_add(d, "records", json_object_new_int64(*records));
    json_object_object_add(d, "replayed_event_id", json_object_new_string(event));
    json_object_object_add(d, "generation", json_object_new_string(gen));
    char *json =
        ctl_audit_json("phrctl", "records.patient.purge", "patient", patient, NULL, d, event_id);
    char *lit = json != NULL ? bk_sql_quote(json) : NULL;
    free(json);
    if (lit == NULL) {
        return PHR_ENOMEM;
    }
    size_t cap = sizeof(fmt) + 3 * 36 + sizeof(event_id) + strlen(lit);
    char *sql = malloc(cap);
    if (sql == NULL) {
        free(lit);
        return PHR_ENOMEM;
    }
    snprintf(sql, cap, fmt, patient, patient, patient, event_id, lit);
    free(lit);
    /* psql -c runs the statements in one transaction */
    int rc = bk_sql(env, "phr_records", sql, out, sizeof(out));
    free(sql);
    return rc;
}

int
bk_purges_apply(const bk_env_t *env, const char *gen, json_object *purges, json_object *report)
{
    char path[BK_PATH + 64];
    int rc = PHR_OK;

    json_object_object_foreach(purges, patient, ev)
    {
        long records = 0;
        rc = bk_purge_one(env, gen, patient, json_object_get_string(ev), &records);
        if (rc != PHR_OK) {
            fprintf(stderr, "phrctl: re-applying the purge of patient %s failed\n", patient);
            return rc;
        }
        json_object *r = json_object_new_object();
        json_object_object_add(r, "patient_id", json_object_new_string(patient));
        json_object_object_add(r, "event_id", json_object_get(ev));
        json_object_object_add(r, "records", json_object_new_int64(records));
        json_object_array_add(report, r);
    }
    bk_replay_path(env, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "phrctl: cannot remove %s: %s\n", path, strerror(errno));
    }
    return rc;
}
