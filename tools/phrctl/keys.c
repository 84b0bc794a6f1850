/*
 * keys.c - phrctl keys status|rotate|rekey|retire: the records service's data keys
 * (secrets data_key_v<N>, services/records/crypt.h).
 *
 *   rotate [--no-rekey]: writes data_key_v<N+1> (0600, atomically) and starts the
 *     re-encryption to it (then as rekey). Records instances load the new version on
 *     SIGHUP or when they first read a row sealed under it, and seal with it from then.
 *   rekey [--batch N] [--pause-ms M]: re-encrypts every row of records and
 *     record_history not under the newest key, in batches of N rows, each batch one
 *     short transaction (rows FOR UPDATE SKIP LOCKED, updated only if still under the
 *     key they were read with) that also stores the progress marker (service_meta
 *     'keys.rekey': target and the last id done per table). Interrupted, it resumes from
 *     the marker. Rows skipped (locked) or written meanwhile under an older key are
 *     taken by another pass (at most KEYS_PASSES).
 *   status: key files, rows per key version, the marker.
 *   retire --yes: moves older key files to <secrets>/retired/ once no row uses them.
 *
 * Each verb's change is audited (records.key.*) through the records outbox.
 * Exit codes: 0 ok, 1 error, 2 usage, 3 refused (rows still use the key, or a
 * re-encryption is unfinished), 6 --yes missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../services/records/crypt.h"
#include "ctl.h"
#include "err.h"
#include "jsonx.h"
#include "timeutil.h"

#define KEYS_PASSES 3
#define KEYS_BATCH_DEFAULT 100
#define KEYS_META "keys.rekey"

/* A table of sealed rows: its progress cursor, the columns the AAD binds, the update. */
typedef struct keys_table {
    const char *name;
    const char *marker; /* key of the progress cursor in the marker object */
    const char *start;  /* cursor before the first row */
    const char *select_sql;
    const char *update_sql;
} keys_table_t;

static const keys_table_t keys_tables[] = {
    {"records", "records_after", "00000000-0000-0000-0000-000000000000",
     "SELECT id::text, id::text, patient_id::text, type, key_id, sealed FROM records "
     "WHERE key_id <> $1::int AND id > $2::uuid ORDER BY id LIMIT $3::int "
     "FOR UPDATE SKIP LOCKED",
     "UPDATE records SET key_id = $2::int, sealed = $3::bytea "
     "WHERE id = $1::uuid AND key_id = $4::int"},
    {"record_history", "history_after", "0",
     "SELECT id::text, record_id::text, patient_id::text, type, key_id, sealed "
     "FROM record_history WHERE key_id <> $1::int AND id > $2::bigint ORDER BY id "
     "LIMIT $3::int FOR UPDATE SKIP LOCKED",
     "UPDATE record_history SET key_id = $2::int, sealed = $3::bytea "
     "WHERE id = $1::bigint AND key_id = $4::int"},
};
#define KEYS_NTABLES (sizeof(keys_tables) / sizeof(keys_tables[0]))

typedef struct keys_ctx {
    cfg_t cfg;
    PGconn *conn;
    rcrypt_t *ring;
    int as_json;
} keys_ctx_t;

static int
keys_usage(void)
{
    fprintf(stderr, "usage: phrctl keys status [--json]\n"
                    "       phrctl keys rotate [--no-rekey] [--batch N] [--pause-ms M] [--json]\n"
                    "       phrctl keys rekey [--batch N] [--pause-ms M] [--json]\n"
                    "       phrctl keys retire --yes [--json]\n");
    return CTL_EXIT_USAGE;
}

static int
keys_open(keys_ctx_t *k)
{
    memset(k, 0, sizeof(*k));
    if (ctl_cfg(&k->cfg, "records") != PHR_OK) {
        return PHR_EINVAL;
    }
    k->ring = rcrypt_create();
    if (k->ring == NULL) {
        return PHR_ENOMEM;
    }
    int rc = rcrypt_load(k->ring, &k->cfg);
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: data keys in %s: %s\n", k->cfg.secrets_dir, phr_err_str(rc));
        return rc;
    }
    k->conn = ctl_pg_connect(&k->cfg, "records");
    return k->conn != NULL ? PHR_OK : PHR_EIO;
}

static void
keys_close(keys_ctx_t *k)
{
    PQfinish(k->conn);
    rcrypt_free(k->ring);
}

/* The marker object (a new one when absent or unreadable); caller puts it. */
static json_object *
keys_marker_get(keys_ctx_t *k)
{
    const char *p[] = {KEYS_META};
    PGresult *res = NULL;
    json_object *o = NULL;

    if (ctl_exec(k->conn, "SELECT value FROM service_meta WHERE key = $1", 1, p, &res) == PHR_OK &&
        PQntuples(res) == 1) {
        o = json_tokener_parse(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    if (o != NULL && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

static int
keys_marker_put(keys_ctx_t *k, json_object *m)
{
    size_t len;
    const char *p[] = {KEYS_META, jx_to_string(m, &len)};

    return ctl_exec(k->conn,
                    "INSERT INTO service_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                    2, p, NULL);
}

static void
keys_set_now(json_object *o, const char *key)
{
    char now[TU_JST_LEN];

    tu_format_jst(tu_now_ms(), now, sizeof(now));
    json_object_object_add(o, key, json_object_new_string(now));
}

/* Queues audit event |action| on data key |version| in the records outbox. */
static int
keys_audit(keys_ctx_t *k, const char *action, int version, json_object *details)
{
    char id[16], event_id[37];

    snprintf(id, sizeof(id), "v%d", version);
    char *json = ctl_audit_json("phrctl", action, "data_key", id, NULL, details, event_id);
    if (json == NULL) {
        return PHR_ENOMEM;
    }
    const char *p[] = {event_id, json};
    int rc = ctl_exec(k->conn,
                      "INSERT INTO outbox (topic, idempotency_key, body) "
                      "VALUES ('audit', $1, $2::jsonb)",
                      2, p, NULL);
    free(json);
    return rc;
}

/* Rows per key version in both tables: counts[table][version]. */
static int
keys_count(keys_ctx_t *k, long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1])
{
    char sql[128];

    memset(counts, 0, sizeof(long) * KEYS_NTABLES * (RCRYPT_MAX_KEYS + 1));
    for (size_t t = 0; t < KEYS_NTABLES; t++) {
        PGresult *res = NULL;
        snprintf(sql, sizeof(sql), "SELECT key_id, count(*) FROM %s GROUP BY key_id",
                 keys_tables[t].name);
        if (ctl_exec(k->conn, sql, 0, NULL, &res) != PHR_OK) {
            return PHR_EIO;
        }
        for (int i = 0; i < PQntuples(res); i++) {
            long v = strtol(PQgetvalue(res, i, 0), NULL, 10);
            if (v >= 0 && v <= RCRYPT_MAX_KEYS) {
                counts[t][v] = strtol(PQgetvalue(res, i, 1), NULL, 10);
            }
        }
        PQclear(res);
    }
    return PHR_OK;
}

/* Rows of both tables not under |version|. */
static long
keys_remaining(long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1], int version)
{
    long n = 0;

    for (size_t t = 0; t < KEYS_NTABLES; t++) {
        for (int v = 0; v <= RCRYPT_MAX_KEYS; v++) {
            n += v != version ? counts[t][v] : 0;
        }
    }
    return n;
}

static int
keys_file_exists(const cfg_t *cfg, int version)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/data_key_v%d", cfg->secrets_dir, version);
    return stat(path, &st) == 0;
}

/* Writes a new random key as |dir|/data_key_v<version>: 0600, fsynced, never over a file. */
static int
keys_write(const char *dir, int version)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char key[RCRYPT_KEY_LEN];
    char hex[2 * RCRYPT_KEY_LEN + 1], tmp[512], path[512];

    snprintf(tmp, sizeof(tmp), "%s/.data_key_v%d.tmp", dir, version);
    snprintf(path, sizeof(path), "%s/data_key_v%d", dir, version);
    if (RAND_bytes(key, sizeof(key)) != 1) {
        fprintf(stderr, "phrctl: no random bytes for the key\n");
        return PHR_EGENERIC;
    }
    for (size_t i = 0; i < sizeof(key); i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[2 * RCRYPT_KEY_LEN] = '\n';
    OPENSSL_cleanse(key, sizeof(key));
    unlink(tmp); /* left by an interrupted run */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, hex, sizeof(hex)) == (ssize_t)sizeof(hex) && fsync(fd) == 0;
    OPENSSL_cleanse(hex, sizeof(hex));
    if (fd >= 0 && close(fd) != 0) {
        ok = 0;
    }
    /* link: fails when the version exists (another rotation won the race) */
    if (!ok || link(tmp, path) != 0) {
        fprintf(stderr, "phrctl: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return PHR_EIO;
    }
    unlink(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return PHR_OK;
}

/* Re-encrypts one row of |res|; *failed counts rows that do not open. */
static int
keys_reseal_row(keys_ctx_t *k, const keys_table_t *t, PGresult *res, int i, int target, long *done,
                long *failed)
{
    char aad[256], target_s[16];
    char *plain = NULL, *hex = NULL;
    size_t len = 0;
    int kid = 0;
    const char *old_kid = PQgetvalue(res, i, 4);

    rcrypt_aad(aad, sizeof(aad), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
               PQgetvalue(res, i, 3));
    if (rcrypt_open(k->ring, aad, (int)strtol(old_kid, NULL, 10), PQgetvalue(res, i, 5), &plain,
                    &len) != PHR_OK) {
        fprintf(stderr, "phrctl: %s row %s does not open under key %s: left as it is\n", t->name,
                PQgetvalue(res, i, 0), old_kid);
        (*failed)++;
        return PHR_OK;
    }
    int rc = rcrypt_seal(k->ring, aad, plain, len, &kid, &hex);
    OPENSSL_cleanse(plain, len);
    free(plain);
    if (rc != PHR_OK || kid != target) {
        free(hex);
        fprintf(stderr, "phrctl: sealing under key %d failed\n", target);
        return PHR_EGENERIC;
    }
    snprintf(target_s, sizeof(target_s), "%d", target);
    const char *p[] = {PQgetvalue(res, i, 0), target_s, hex, old_kid};
    rc = ctl_exec(k->conn, t->update_sql, 4, p, NULL);
    free(hex);
    if (rc == PHR_OK) {
        (*done)++;
    }
    return rc;
}

/* One batch of table |t| after the marker's cursor: *got rows read. */
static int
keys_batch(keys_ctx_t *k, const keys_table_t *t, json_object *m, int target, int batch, int *got,
           long *done, long *failed)
{
    char target_s[16], batch_s[16];
    PGresult *res = NULL;

    snprintf(target_s, sizeof(target_s), "%d", target);
    snprintf(batch_s, sizeof(batch_s), "%d", batch);
    const char *p[] = {target_s, jx_get_str(m, t->marker, t->start), batch_s};
    int rc = ctl_exec(k->conn, "BEGIN", 0, NULL, NULL);
    if (rc == PHR_OK) {
        rc = ctl_exec(k->conn, t->select_sql, 3, p, &res);
    }
    *got = rc == PHR_OK ? PQntuples(res) : 0;
    for (int i = 0; rc == PHR_OK && i < *got; i++) {
        rc = keys_reseal_row(k, t, res, i, target, done, failed);
    }
    if (rc == PHR_OK && *got > 0) {
        json_object_object_add(m, t->marker, json_object_new_string(PQgetvalue(res, *got - 1, 0)));
        json_object_object_add(m, "rows_done",
                               json_object_new_int64(jx_get_int(m, "rows_done", 0) + *got));
        rc = keys_marker_put(k, m);
    }
    PQclear(res);
    if (rc == PHR_OK) {
        rc = ctl_exec(k->conn, "COMMIT", 0, NULL, NULL);
    } else {
        ctl_exec(k->conn, "ROLLBACK", 0, NULL, NULL);
    }
    return rc;
}

static void
keys_pause(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void
keys_print_marker(const keys_ctx_t *k, json_object *m, long remaining)
{
    if (k->as_json) {
        json_object_object_add(m, "remaining", json_object_new_int64(remaining));
        ctl_print_json(m);
        return;
    }
    printf("re-encryption to key v%d: %lld rows done, %ld rows under other keys%s\n",
           (int)jx_get_int(m, "target", 0), (long long)jx_get_int(m, "rows_done", 0), remaining,
           json_object_object_get_ex(m, "finished_at", NULL) ? " (finished)" : "");
    fflush(stdout);
}

/* Re-encrypts every row not under the newest key, resuming from the marker. */
static int
keys_rekey(keys_ctx_t *k, int batch, int pause_ms)
{
    long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1];
    long done = 0, failed = 0, remaining = 0;
    int target = rcrypt_current(k->ring), rc = PHR_OK;
    json_object *m = keys_marker_get(k);
    int was_finished = m != NULL && json_object_object_get_ex(m, "finished_at", NULL);

    if (m == NULL || jx_get_int(m, "target", 0) != target) {
        was_finished = 0;
        json_object_put(m);
        m = json_object_new_object(); /* a new target: from the start */
        json_object_object_add(m, "target", json_object_new_int(target));
        json_object_object_add(m, "pass", json_object_new_int(1));
        keys_set_now(m, "started_at");
    }
    json_object_object_del(m, "finished_at");
    for (int pass = 0; rc == PHR_OK && pass < KEYS_PASSES; pass++) {
        for (size_t t = 0; rc == PHR_OK && t < KEYS_NTABLES; t++) {
            int got = batch;
            while (rc == PHR_OK && got > 0) {
                rc = keys_batch(k, &keys_tables[t], m, target, batch, &got, &done, &failed);
                if (got > 0) {
                    keys_pause(pause_ms);
                }
            }
        }
        if (rc != PHR_OK || (rc = keys_count(k, counts)) != PHR_OK) {
            break;
        }
        remaining = keys_remaining(counts, target);
        if (remaining <= failed) {
            break;
        }
        /* rows skipped while locked, or written meanwhile under an older key */
        for (size_t t = 0; t < KEYS_NTABLES; t++) {
            json_object_object_del(m, keys_tables[t].marker);
        }
        json_object_object_add(m, "pass", json_object_new_int((int)jx_get_int(m, "pass", 1) + 1));
        rc = keys_marker_put(k, m);
    }
    if (rc != PHR_OK) {
        json_object_put(m);
        return CTL_EXIT_ERROR;
    }
    int code = CTL_EXIT_OK;
    if (remaining == 0 && done == 0 && was_finished) {
        keys_set_now(m, "finished_at"); /* nothing new: no second audit event */
    } else if (remaining == 0) {
        keys_set_now(m, "finished_at");
        json_object *d = json_object_new_object();
        json_object_object_add(d, "rows", json_object_new_int64(jx_get_int(m, "rows_done", 0)));
        if (ctl_exec(k->conn, "BEGIN", 0, NULL, NULL) != PHR_OK ||
            keys_marker_put(k, m) != PHR_OK ||
            keys_audit(k, "records.key.rekey", target, d) != PHR_OK ||
            ctl_exec(k->conn, "COMMIT", 0, NULL, NULL) != PHR_OK) {
            ctl_exec(k->conn, "ROLLBACK", 0, NULL, NULL);
            code = CTL_EXIT_ERROR;
        }
    } else {
        fprintf(stderr,
                "phrctl: %ld rows still under older keys (%ld do not open): reload the records "
                "service (SIGHUP) and run `phrctl keys rekey` again\n",
                remaining, failed);
        code = CTL_EXIT_ERROR;
    }
    keys_print_marker(k, m, remaining);
    json_object_put(m);
    return code;
}

static int
keys_rotate(keys_ctx_t *k, int rekey, int batch, int pause_ms)
{
    long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1];
    int cur = rcrypt_current(k->ring);
    json_object *m = keys_marker_get(k);

    if (keys_count(k, counts) != PHR_OK) {
        json_object_put(m);
        return CTL_EXIT_ERROR;
    }
    long remaining = keys_remaining(counts, cur);
    int busy = m != NULL && !json_object_object_get_ex(m, "finished_at", NULL);
    json_object_put(m);
    if (busy || remaining > 0) {
        fprintf(stderr,
                "phrctl: %ld rows are not under key v%d yet: finish with `phrctl keys rekey` "
                "before the next rotation\n",
                remaining, cur);
        return CTL_EXIT_CONFLICT;
    }
    if (cur >= RCRYPT_MAX_KEYS) {
        fprintf(stderr, "phrctl: key versions are used up (v%d)\n", RCRYPT_MAX_KEYS);
        return CTL_EXIT_ERROR;
    }
    if (keys_write(k->cfg.secrets_dir, cur + 1) != PHR_OK ||
        rcrypt_load(k->ring, &k->cfg) != PHR_OK || rcrypt_current(k->ring) != cur + 1) {
        return CTL_EXIT_ERROR;
    }
    m = json_object_new_object();
    json_object_object_add(m, "target", json_object_new_int(cur + 1));
    json_object_object_add(m, "pass", json_object_new_int(1));
    keys_set_now(m, "started_at");
    json_object *d = json_object_new_object();
    json_object_object_add(d, "previous", json_object_new_int(cur));
    int rc = ctl_exec(k->conn, "BEGIN", 0, NULL, NULL);
    if (rc == PHR_OK && (rc = keys_marker_put(k, m)) == PHR_OK &&
        (rc = keys_audit(k, "records.key.rotate", cur + 1, d)) == PHR_OK) {
        rc = ctl_exec(k->conn, "COMMIT", 0, NULL, NULL);
    } else {
        ctl_exec(k->conn, "ROLLBACK", 0, NULL, NULL);
    }
    json_object_put(m);
    if (rc != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    fprintf(stderr,
            "phrctl: wrote data_key_v%d; records instances seal with it after a SIGHUP (or "
            "once they read a row under it)\n",
            cur + 1);
    if (!rekey) {
        if (!k->as_json) {
            printf("key v%d written; run `phrctl keys rekey` to re-encrypt\n", cur + 1);
        }
        return CTL_EXIT_OK;
    }
    return keys_rekey(k, batch, pause_ms);
}

static int
keys_status(keys_ctx_t *k)
{
    long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1];
    int cur = rcrypt_current(k->ring);

    if (keys_count(k, counts) != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    json_object *m = keys_marker_get(k);
    for (int v = 1; v <= RCRYPT_MAX_KEYS; v++) {
        int file = keys_file_exists(&k->cfg, v);
        if (!file && counts[0][v] == 0 && counts[1][v] == 0) {
            continue;
        }
        json_object *e = json_object_new_object();
        json_object_object_add(e, "version", json_object_new_int(v));
        json_object_object_add(e, "file", json_object_new_boolean(file));
        json_object_object_add(e, "records", json_object_new_int64(counts[0][v]));
        json_object_object_add(e, "history", json_object_new_int64(counts[1][v]));
        json_object_array_add(arr, e);
        if (!k->as_json) {
            printf("key v%d%s%s: %ld records, %ld history rows\n", v, v == cur ? " (current)" : "",
                   file ? "" : " (no key file)", counts[0][v], counts[1][v]);
        }
    }
    long remaining = keys_remaining(counts, cur);
    json_object_object_add(o, "current", json_object_new_int(cur));
    json_object_object_add(o, "keys", arr);
    json_object_object_add(o, "remaining", json_object_new_int64(remaining));
    json_object_object_add(o, "rekey", m != NULL ? json_object_get(m) : NULL);
    if (k->as_json) {
        ctl_print_json(o);
    } else if (m != NULL) {
        keys_print_marker(k, m, remaining);
    }
    fflush(stdout);
    json_object_put(m);
    json_object_put(o);
    return CTL_EXIT_OK;
}

/* Moves every older key file no row uses to <secrets>/retired/. */
static int
keys_retire(keys_ctx_t *k)
{
    long counts[KEYS_NTABLES][RCRYPT_MAX_KEYS + 1];
    int cur = rcrypt_current(k->ring), code = CTL_EXIT_OK;
    char dir[512], from[512], to[600];

    if (keys_count(k, counts) != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    snprintf(dir, sizeof(dir), "%s/retired", k->cfg.secrets_dir);
    json_object *retired = json_object_new_array();
    for (int v = 1; v < cur && code == CTL_EXIT_OK; v++) {
        if (!keys_file_exists(&k->cfg, v)) {
            continue;
        }
        if (counts[0][v] + counts[1][v] > 0) {
            fprintf(stderr, "phrctl: %ld rows still use key v%d: run `phrctl keys rekey` first\n",
                    counts[0][v] + counts[1][v], v);
            code = CTL_EXIT_CONFLICT;
            break;
        }
        snprintf(from, sizeof(from), "%s/data_key_v%d", k->cfg.secrets_dir, v);
        snprintf(to, sizeof(to), "%s/data_key_v%d", dir, v);
        json_object *d = json_object_new_object();
        json_object_object_add(d, "moved_to", json_object_new_string("retired/"));
        if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || rename(from, to) != 0) {
            fprintf(stderr, "phrctl: cannot move %s to %s: %s\n", from, to, strerror(errno));
            json_object_put(d);
            code = CTL_EXIT_ERROR;
        } else if (keys_audit(k, "records.key.retire", v, d) != PHR_OK) {
            code = CTL_EXIT_ERROR;
        } else {
            json_object_array_add(retired, json_object_new_int(v));
        }
    }
    if (k->as_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "current", json_object_new_int(cur));
        json_object_object_add(o, "retired", json_object_get(retired));
        ctl_print_json(o);
        json_object_put(o);
    } else if (code == CTL_EXIT_OK) {
        printf("retired %zu key(s); sealing with v%d\n", json_object_array_length(retired), cur);
    }
    json_object_put(retired);
    return code;
}

int
ctl_keys_main(int argc, char **argv)
{
    int yes = 0, rekey = 1, batch = KEYS_BATCH_DEFAULT, pause_ms = 0, as_json = 0;
    keys_ctx_t k;

    if (argc < 1) {
        return keys_usage();
    }
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--yes") == 0) {
            yes = 1;
        } else if (strcmp(argv[i], "--no-rekey") == 0) {
            rekey = 0;
        } else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) {
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > 10000) {
                fprintf(stderr, "phrctl: --batch: 1 to 10000 rows\n");
                return CTL_EXIT_USAGE;
            }
            batch = (int)v;
        } else if (i + 1 < argc && strcmp(argv[i], "--pause-ms") == 0) {
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 0 || v > 60000) {
                fprintf(stderr, "phrctl: --pause-ms: 0 to 60000\n");
                return CTL_EXIT_USAGE;
            }
            pause_ms = (int)v;
        } else {
            return keys_usage();
        }
    }
    const char *verb = argv[0];
    if (strcmp(verb, "status") != 0 && strcmp(verb, "rotate") != 0 && strcmp(verb, "rekey") != 0 &&
        strcmp(verb, "retire") != 0) {
        return keys_usage();
    }
    if (strcmp(verb, "retire") == 0 && !yes) {
        fprintf(stderr, "phrctl: keys retire removes old keys from the secrets directory: add "
                        "--yes\n");
        return CTL_EXIT_REFUSED;
    }
    int code = CTL_EXIT_ERROR;
    if (keys_open(&k) == PHR_OK) {
        k.as_json = as_json;
        code = strcmp(verb, "status") == 0   ? keys_status(&k)
               : strcmp(verb, "rotate") == 0 ? keys_rotate(&k, rekey, batch, pause_ms)
               : strcmp(verb, "rekey") == 0  ? keys_rekey(&k, batch, pause_ms)
                                             : keys_retire(&k);
    }
    keys_close(&k);
    return code;
}
