/*
 * restore.c - phrctl restore --generation N|NAME [--yes] [--json]
 *
 * Replaces the contents of every service database with the chosen generation
 * (1 = newest, as `phrctl backup list` numbers them). Destructive: refused without
 * --yes, and refused while anything but this tool is connected to a service database
 * (stop the services first: deploy/BACKUPS.md). The whole generation is verified
 * first; each database is then restored by `pg_restore --clean --if-exists
 * --single-transaction` fed the decrypted dump, and the transaction is killed before
 * it commits when the file's GCM tag does not authenticate. Last, the patient purges
 * recorded after the generation are applied again (replay.c).
 *
 * Exit codes: 0 restored, 1 error, 2 usage, 4 no such generation, 5 the generation
 * failed verification, 6 --yes missing, 7 services connected or a backup running.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "err.h"
#include "jsonx.h"

static int
bk_restore_usage(void)
{
    fprintf(stderr, "usage: phrctl restore --generation N|NAME [--yes] [--json]\n");
    return BK_EXIT_USAGE;
}

/*
 * Sessions other than ours on the service databases; -1 when PostgreSQL is unreachable.
 * A client that just disconnected stays listed until its backend has exited, so a
 * nonzero count is asked again for up to BK_DISCONNECT_WAIT_MS before it stands.
 */
static long
bk_connected(const bk_env_t *env)
{
    enum { BK_DISCONNECT_WAIT_MS = 3000, BK_DISCONNECT_POLL_MS = 100 };
    char out[64];
    long n = 0;

    for (int waited = 0; waited <= BK_DISCONNECT_WAIT_MS; waited += BK_DISCONNECT_POLL_MS) {
        if (bk_sql(env, "postgres",
                   "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                   "datname IN ('phr_auth', 'phr_records', 'phr_notification', 'phr_audit')",
                   out, sizeof(out)) != PHR_OK) {
            return -1;
        }
        n = strtol(out, NULL, 10);
        if (n == 0) {
            break;
        }
        usleep(BK_DISCONNECT_POLL_MS * 1000);
    }
    return n;
}

/*
 * Restores one database from |dir|/|db|.dump.enc in one transaction: psql -1 first
 * empties the schema, then runs the SQL that `pg_restore -f -` makes of the decrypted
 * archive (pg_restore --clean cannot drop the partitions' inherited constraints).
 * PHR_OK or an error (printed); on any failure nothing is committed.
 */
static int
bk_restore_one(const bk_env_t *env, const char *dir, const char *gen, const char *db,
               const char *key_id, const unsigned char key[32])
{
    static const char wipe[] = "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
                               "CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
                               "GRANT USAGE ON SCHEMA public TO PUBLIC; "
                               "COMMENT ON SCHEMA public IS 'standard public schema'";
    char conninfo[BK_PATH + 256], path[BK_PATH + 128], label[128], wipe_sql[sizeof(wipe)];
    bk_file_info_t info;
    int sql[2], arc[2];
    pid_t psql, restore;

    bk_conninfo(env, db, conninfo, sizeof(conninfo));
    snprintf(path, sizeof(path), "%s/%s.dump.enc", dir, db);
    snprintf(label, sizeof(label), "%s/%s", gen, db);
    memcpy(wipe_sql, wipe, sizeof(wipe));
    char *psql_argv[] = {"psql",
                         "-X",
                         "-q",
                         "-v",
                         "ON_ERROR_STOP=1",
                         "-w",
                         "--single-transaction",
                         "-d",
                         conninfo,
                         "-c",
                         wipe_sql,
                         "-f",
                         "-",
                         NULL};
    char *restore_argv[] = {"pg_restore", "--file=-", NULL};
    if (pipe2(sql, O_CLOEXEC) != 0) {
        return PHR_EIO;
    }
    if (pipe2(arc, O_CLOEXEC) != 0) {
        close(sql[0]);
        close(sql[1]);
        return PHR_EIO;
    }
    /* decrypted archive -> arc -> pg_restore -> SQL -> sql -> psql (one transaction) */
    int rc = bk_spawn_fds(env, "psql", psql_argv, sql[0], -1, &psql);
    close(sql[0]);
    if (rc != PHR_OK) {
        close(sql[1]);
        close(arc[0]);
        close(arc[1]);
        return rc;
    }
    rc = bk_spawn_fds(env, "pg_restore", restore_argv, arc[0], sql[1], &restore);
    close(arc[0]);
    close(sql[1]);
    if (rc != PHR_OK) {
        kill(psql, SIGKILL);
        close(arc[1]);
        bk_wait(psql);
        return rc;
    }
    rc = bk_decrypt(path, arc[1], key, key_id, label, &info);
    if (rc != PHR_OK) {
        /* psql first: it commits when its input ends, and it must never see that end. */
        kill(psql, SIGKILL);
        kill(restore, SIGKILL);
    }
    close(arc[1]);
    int restored = bk_wait(restore), applied = bk_wait(psql);
    if (rc == PHR_OK && (restored != 0 || applied != 0)) {
        fprintf(stderr, "phrctl: restoring %s failed (rolled back)\n", db);
        rc = PHR_EIO;
    }
    return rc;
}

static int
bk_restore(const bk_env_t *env, const char *gen_arg, int yes, int as_json)
{
    char gen[BK_GEN_LEN], dir[BK_PATH + 64];
    unsigned char key[32];
    json_object *files, *v;

    if (bk_resolve(env, gen_arg, gen) != PHR_OK) {
        fprintf(stderr, "phrctl: no generation %s in %s\n", gen_arg, env->dir);
        return BK_EXIT_NOTFOUND;
    }
    snprintf(dir, sizeof(dir), "%s/%s", env->dir, gen);
    if (!yes) {
        fprintf(stderr,
                "phrctl: restore replaces the contents of phr_auth, phr_records, "
                "phr_notification and phr_audit with generation %s; stop the services and "
                "repeat with --yes\n",
                gen);
        return BK_EXIT_REFUSED;
    }
    int lock = bk_lock(env);
    if (lock < 0) {
        return lock == -2 ? BK_EXIT_BUSY : BK_EXIT_ERROR;
    }
    int code = BK_EXIT_ERROR;
    json_object *m = NULL, *purges = NULL, *restored = json_object_new_array();
    json_object *replayed = json_object_new_array();
    long conns = bk_connected(env);
    if (conns < 0) {
        fprintf(stderr, "phrctl: cannot reach PostgreSQL as %s at %s:%s\n", env->pg_user,
                env->pg_host, env->pg_port);
        goto out;
    }
    if (conns > 0) {
        fprintf(stderr,
                "phrctl: %ld session(s) connected to the service databases: stop the "
                "services first (deploy/BACKUPS.md)\n",
                conns);
        code = BK_EXIT_BUSY;
        goto out;
    }
    int rc = bk_verify_dir(env, dir, NULL);
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: generation %s failed verification: nothing restored\n", gen);
        code = rc == PHR_EPROTO ? BK_EXIT_CORRUPT : BK_EXIT_ERROR;
        goto out;
    }
    m = bk_manifest_read(dir);
    if (m == NULL || !json_object_object_get_ex(m, "files", &files) ||
        !json_object_object_get_ex(m, "key_id", &v) ||
        bk_key_load(env, json_object_get_string(v), key) != PHR_OK) {
        goto out;
    }
    const char *key_id = json_object_get_string(v);
    purges = bk_purges_collect(env, m); /* before the audit log is replaced */
    if (purges == NULL) {
        explicit_bzero(key, sizeof(key));
        goto out;
    }
    code = BK_EXIT_OK;
    for (size_t i = 0; i < json_object_array_length(files); i++) {
        json_object *db;
        json_object_object_get_ex(json_object_array_get_idx(files, i), "database", &db);
        const char *name = json_object_get_string(db);
        if (bk_restore_one(env, dir, gen, name, key_id, key) != PHR_OK) {
            fprintf(stderr, "phrctl: stopped at %s; restored before it: %zu database(s)\n", name,
                    json_object_array_length(restored));
            code = BK_EXIT_ERROR;
            break;
        }
        json_object_array_add(restored, json_object_new_string(name));
    }
    explicit_bzero(key, sizeof(key));
    if (code == BK_EXIT_OK && bk_purges_apply(env, gen, purges, replayed) != PHR_OK) {
        fprintf(stderr, "phrctl: the databases are restored but not every purge since the "
                        "backup is applied again: run the restore again before starting the "
                        "services\n");
        code = BK_EXIT_ERROR;
    }
    json_object *head = NULL;
    json_object_object_get_ex(m, "audit_chain_head", &head);
    if (as_json) {
        json_object *o = json_object_new_object();
        size_t len;
        json_object_object_add(o, "generation", json_object_new_string(gen));
        json_object_object_add(o, "ok", json_object_new_boolean(code == BK_EXIT_OK));
        json_object_object_add(o, "restored", json_object_get(restored));
        json_object_object_add(o, "audit_chain_head", json_object_get(head));
        json_object_object_add(o, "purges_reapplied", json_object_get(replayed));
        printf("%s\n", jx_to_string(o, &len));
        json_object_put(o);
    } else if (code == BK_EXIT_OK) {
        json_object *seq = NULL;
        if (head != NULL) {
            json_object_object_get_ex(head, "seq", &seq);
        }
        printf("restored generation %s into %zu databases; audit chain head at backup: %s\n"
               "patient purges since the backup applied again: %zu\n"
               "run `phrctl audit verify` once the services are up\n",
               gen, json_object_array_length(restored),
               seq != NULL ? json_object_get_string(seq) : "none",
               json_object_array_length(replayed));
    }
    fflush(stdout);
out:
    json_object_put(m);
    json_object_put(purges);
    json_object_put(restored);
    json_object_put(replayed);
    close(lock);
    return code;
}

int
bk_restore_main(int argc, char **argv)
{
    const char *gen = NULL;
    int yes = 0, as_json = 0;
    bk_env_t env;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--yes") == 0) {
            yes = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--generation") == 0) {
            gen = argv[++i];
        } else {
            return bk_restore_usage();
        }
    }
    if (gen == NULL) {
        return bk_restore_usage();
    }
    if (bk_env_load(&env) != PHR_OK) {
        return BK_EXIT_ERROR;
    }
    signal(SIGPIPE, SIG_IGN); /* pg_restore may exit while we still write */
    return bk_restore(&env, gen, yes, as_json);
}
