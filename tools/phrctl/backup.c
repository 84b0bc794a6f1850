/*
 * backup.c - phrctl backup run|list|verify [--generation N] [--json]
 *
 *   run     dumps every service database (pg_dump -Fc through the admin connection),
 *           encrypts each dump with AES-256-GCM (secret backup_key_v1) into
 *           <dir>/<generation>.partial/, writes manifest.json (JST times, sizes,
 *           SHA-256, key id, PostgreSQL versions, audit chain head), verifies the
 *           generation, renames it to <dir>/<generation>/ and only then removes the
 *           oldest generations beyond PHR_BACKUP_KEEP (35).
 *   list    the complete generations, newest first, numbered from 1.
 *   verify  one generation (default 1 = newest): sizes, SHA-256, GCM tags and
 *           `pg_restore --list` of every file.
 *
 * Exit codes: 0 ok, 1 error, 2 usage, 4 no such generation, 5 verification failed,
 * 7 another backup or restore is running.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "backup.h"
#include "err.h"
#include "jsonx.h"
#include "timeutil.h"

enum { BK_LIST_MAX = 4096 };

static int
bk_usage(void)
{
    fprintf(stderr, "usage: phrctl backup run [--json]\n"
                    "       phrctl backup list [--json]\n"
                    "       phrctl backup verify [--generation N|NAME] [--json]\n");
    return BK_EXIT_USAGE;
}

static void
bk_print_json(json_object *o)
{
    size_t len;
    const char *txt = jx_to_string(o, &len);
    printf("%s\n", txt != NULL ? txt : "null");
    fflush(stdout);
}

/* Creates |path| and its missing parents (mode 0700 for the new ones). */
static int
bk_mkdirs(const char *path)
{
    char tmp[BK_PATH];

    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int
bk_lock(const bk_env_t *env)
{
    char path[BK_PATH + 16];

    if (bk_mkdirs(env->dir) != 0) {
        fprintf(stderr, "phrctl: %s: %s\n", env->dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/.lock", env->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "phrctl: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        fprintf(stderr, "phrctl: another backup or restore is running (%s)\n", path);
        return -2;
    }
    return fd;
}

static void
bk_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Removes the flat directory |dir|/|name| (a generation). 0 or -1. */
static int
bk_remove_gen(const char *dir, const char *name)
{
    char path[BK_PATH + 64], file[BK_PATH + 384];
    int rc = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (unlink(file) != 0) {
            rc = -1;
        }
    }
    closedir(d);
    if (rmdir(path) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        fprintf(stderr, "phrctl: cannot remove %s: %s\n", path, strerror(errno));
    }
    return rc;
}

/* Removes what an interrupted run left behind (<generation>.partial). */
static void
bk_remove_partials(const bk_env_t *env)
{
    char name[64];
    DIR *d = opendir(env->dir);

    if (d == NULL) {
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len == BK_GEN_LEN - 1 + 8 && strcmp(e->d_name + BK_GEN_LEN - 1, ".partial") == 0) {
            snprintf(name, sizeof(name), "%.*s", BK_GEN_LEN - 1, e->d_name);
            if (bk_gen_name_ok(name)) {
                bk_remove_gen(env->dir, e->d_name);
            }
        }
    }
    closedir(d);
}

/* The generation name of now: "20261126T211800+0900" (JST). */
static void
bk_gen_now(char name[BK_GEN_LEN])
{
    time_t t = time(NULL) + (time_t)9 * 3600;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(name, BK_GEN_LEN, "%Y%m%dT%H%M%S+0900", &tm);
}

/* {"seq": N, "hash": "hex"} of the last audit event, or NULL (no table, no events). */
static json_object *
bk_chain_head(const bk_env_t *env, int *failed)
{
    char out[256];

    *failed = 0;
    if (bk_sql(env, "phr_audit", "SELECT to_regclass('public.audit_events') IS NOT NULL", out,
               sizeof(out)) != PHR_OK) {
        *failed = 1;
        return NULL;
    }
    if (strcmp(out, "t") != 0) {
        return NULL;
    }
    if (bk_sql(env, "phr_audit",
               "SELECT seq || ' ' || encode(hash, 'hex') FROM audit_events "
               "ORDER BY seq DESC LIMIT 1",
               out, sizeof(out)) != PHR_OK) {
        *failed = 1;
        return NULL;
    }
    char *sp = strchr(out, ' ');
    if (sp == NULL) {
        return NULL;
    }
    *sp = '\0';
    json_object *h = json_object_new_object();
    json_object_object_add(h, "seq", json_object_new_int64(strtoll(out, NULL, 10)));
    json_object_object_add(h, "hash", json_object_new_string(sp + 1));
    return h;
}

/* Dumps |db| into |dir|/|db|.dump.enc; adds its manifest entry to |files|. */
static int
bk_dump_one(const bk_env_t *env, const char *dir, const char *gen, const char *db,
            const unsigned char key[32], json_object *files)
{
    char conninfo[BK_PATH + 256], path[BK_PATH + 128], label[128], file[64];
    bk_file_info_t info;
    int out_fd;
    pid_t pid;

    bk_conninfo(env, db, conninfo, sizeof(conninfo));
    snprintf(file, sizeof(file), "%s.dump.enc", db);
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(label, sizeof(label), "%s/%s", gen, db);
    char *argv[] = {"pg_dump", "--format=custom", "--no-password", "--dbname", conninfo, NULL};
    if (bk_spawn(env, "pg_dump", argv, NULL, &out_fd, &pid) != PHR_OK) {
        return PHR_EIO;
    }
    int rc = bk_encrypt(out_fd, path, key, BK_KEY_ID, label, &info);
    close(out_fd);
    if (bk_wait(pid) != 0) {
        fprintf(stderr, "phrctl: pg_dump of %s failed\n", db);
        rc = PHR_EIO;
    }
    if (rc != PHR_OK) {
        return rc;
    }
    json_object *e = json_object_new_object();
    json_object_object_add(e, "database", json_object_new_string(db));
    json_object_object_add(e, "service", json_object_new_string(db + 4));
    json_object_object_add(e, "file", json_object_new_string(file));
    json_object_object_add(e, "size", json_object_new_int64((int64_t)info.size));
    json_object_object_add(e, "plain_size", json_object_new_int64((int64_t)info.plain_size));
    json_object_object_add(e, "sha256", json_object_new_string(info.sha256));
    json_object_array_add(files, e);
    return PHR_OK;
}

/* Keeps the newest env->keep generations; removed names are added to |removed|. */
static int
bk_rotate(const bk_env_t *env, json_object *removed)
{
    char(*names)[BK_GEN_LEN] = calloc(BK_LIST_MAX, BK_GEN_LEN);
    int rc = 0;

    if (names == NULL) {
        return -1;
    }
    int n = bk_list(env, names, BK_LIST_MAX);
    for (int i = env->keep; i < n; i++) {
        if (bk_remove_gen(env->dir, names[i]) != 0) {
            rc = -1;
        } else {
            json_object_array_add(removed, json_object_new_string(names[i]));
        }
    }
    free(names);
    return rc;
}

/* Builds, verifies and publishes a new generation. */
static int
bk_run(const bk_env_t *env, int as_json)
{
    char gen[BK_GEN_LEN], dir[BK_PATH + 64], final[BK_PATH + 64], manifest[BK_PATH + 96];
    char started[TU_JST_LEN], finished[TU_JST_LEN], server[128], dumpver[128];
    unsigned char key[32];
    int head_failed, code = BK_EXIT_ERROR;

    umask(077);
    int lock = bk_lock(env);
    if (lock < 0) {
        return lock == -2 ? BK_EXIT_BUSY : BK_EXIT_ERROR;
    }
    if (bk_key_load(env, BK_KEY_ID, key) != PHR_OK) {
        close(lock);
        return BK_EXIT_ERROR;
    }
    bk_remove_partials(env);
    struct stat st;
    for (int tries = 0;; tries++) {
        bk_gen_now(gen);
        snprintf(final, sizeof(final), "%s/%s", env->dir, gen);
        if (stat(final, &st) != 0 || tries >= 2) {
            break;
        }
        sleep(1); /* one generation per second at most */
    }
    snprintf(dir, sizeof(dir), "%s/%s.partial", env->dir, gen);
    tu_format_jst(tu_now_ms(), started, sizeof(started));
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "phrctl: %s: %s\n", dir, strerror(errno));
        goto out;
    }
    char *verargv[] = {"pg_dump", "--version", NULL};
    if (bk_sql(env, "postgres", "SHOW server_version", server, sizeof(server)) != PHR_OK ||
        bk_capture(env, "pg_dump", verargv, dumpver, sizeof(dumpver)) != PHR_OK) {
        fprintf(stderr, "phrctl: cannot reach PostgreSQL as %s at %s:%s\n", env->pg_user,
                env->pg_host, env->pg_port);
        goto out;
    }
    /* Read before the audit database is dumped: the dump holds at least this head. */
    json_object *head = bk_chain_head(env, &head_failed);
    if (head_failed) {
        fprintf(stderr, "phrctl: cannot read the audit chain head\n");
        goto out;
    }
    json_object *m = json_object_new_object();
    json_object *files = json_object_new_array();
    json_object_object_add(m, "format", json_object_new_string("phr-backup/1"));
    json_object_object_add(m, "generation", json_object_new_string(gen));
    json_object_object_add(m, "started_at", json_object_new_string(started));
    json_object_object_add(m, "cipher", json_object_new_string("AES-256-GCM"));
    json_object_object_add(m, "key_id", json_object_new_string(BK_KEY_ID));
    json_object_object_add(m, "pg_server_version", json_object_new_string(server));
    json_object_object_add(m, "pg_dump_version", json_object_new_string(dumpver));
    json_object_object_add(m, "audit_chain_head", head);
    json_object_object_add(m, "files", files);
    for (int i = 0; i < BK_NDB; i++) {
        if (bk_dump_one(env, dir, gen, bk_databases[i], key, files) != PHR_OK) {
            json_object_put(m);
            goto out;
        }
    }
    tu_format_jst(tu_now_ms(), finished, sizeof(finished));
    json_object_object_add(m, "finished_at", json_object_new_string(finished));
    snprintf(manifest, sizeof(manifest), "%s/manifest.json", dir);
    if (json_object_to_file_ext(manifest, m,
                                JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) != 0) {
        fprintf(stderr, "phrctl: cannot write %s\n", manifest);
        json_object_put(m);
        goto out;
    }
    bk_fsync_path(manifest);
    json_object *report = json_object_new_array();
    if (bk_verify_dir(env, dir, report) != PHR_OK) {
        fprintf(stderr, "phrctl: the new generation failed verification; kept in %s\n", dir);
        json_object_put(report);
        json_object_put(m);
        code = BK_EXIT_CORRUPT;
        goto out;
    }
    json_object_put(report);
    if (rename(dir, final) != 0) {
        fprintf(stderr, "phrctl: rename %s: %s\n", dir, strerror(errno));
        json_object_put(m);
        goto out;
    }
    bk_fsync_path(env->dir);
    json_object *removed = json_object_new_array();
    code = bk_rotate(env, removed) == 0 ? BK_EXIT_OK : BK_EXIT_ERROR;
    if (as_json) {
        json_object_object_add(m, "dir", json_object_new_string(final));
        json_object_object_add(m, "verified", json_object_new_boolean(1));
        json_object_object_add(m, "removed", json_object_get(removed));
        bk_print_json(m);
    } else {
        uint64_t total = 0;
        for (size_t i = 0; i < json_object_array_length(files); i++) {
            json_object *sz;
            json_object_object_get_ex(json_object_array_get_idx(files, i), "size", &sz);
            total += (uint64_t)json_object_get_int64(sz);
        }
        printf("backup %s: %d databases, %llu bytes, verified\n", final, BK_NDB,
               (unsigned long long)total);
        for (size_t i = 0; i < json_object_array_length(removed); i++) {
            printf("removed old generation %s\n",
                   json_object_get_string(json_object_array_get_idx(removed, i)));
        }
        fflush(stdout);
    }
    json_object_put(removed);
    json_object_put(m);
out:
    explicit_bzero(key, sizeof(key));
    close(lock);
    return code;
}

static int
bk_cmd_list(const bk_env_t *env, int as_json)
{
    char(*names)[BK_GEN_LEN] = calloc(BK_LIST_MAX, BK_GEN_LEN);
    char dir[BK_PATH + 64];

    if (names == NULL) {
        return BK_EXIT_ERROR;
    }
    int n = bk_list(env, names, BK_LIST_MAX);
    json_object *arr = json_object_new_array();
    if (!as_json) {
        printf("%-3s %-20s %-29s %12s  %s\n", "N", "GENERATION", "FINISHED (JST)", "BYTES",
               "AUDIT HEAD");
    }
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof(dir), "%s/%s", env->dir, names[i]);
        json_object *m = bk_manifest_read(dir), *v, *files, *head = NULL;
        int64_t total = 0;
        const char *finished = "?";
        if (m != NULL && json_object_object_get_ex(m, "files", &files)) {
            for (size_t j = 0; j < json_object_array_length(files); j++) {
                if (json_object_object_get_ex(json_object_array_get_idx(files, j), "size", &v)) {
                    total += json_object_get_int64(v);
                }
            }
        }
        if (m != NULL && json_object_object_get_ex(m, "finished_at", &v)) {
            finished = json_object_get_string(v);
        }
        if (m != NULL) {
            json_object_object_get_ex(m, "audit_chain_head", &head);
        }
        if (as_json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "index", json_object_new_int(i + 1));
            json_object_object_add(o, "generation", json_object_new_string(names[i]));
            json_object_object_add(o, "dir", json_object_new_string(dir));
            json_object_object_add(o, "finished_at", json_object_new_string(finished));
            json_object_object_add(o, "size", json_object_new_int64(total));
            json_object_object_add(o, "audit_chain_head", json_object_get(head));
            json_object_array_add(arr, o);
        } else {
            json_object *seq = NULL;
            if (head != NULL) {
                json_object_object_get_ex(head, "seq", &seq);
            }
            printf("%-3d %-20s %-29s %12lld  %s\n", i + 1, names[i], finished, (long long)total,
                   seq != NULL ? json_object_get_string(seq) : "-");
        }
        json_object_put(m);
    }
    if (as_json) {
        bk_print_json(arr);
    }
    fflush(stdout);
    json_object_put(arr);
    free(names);
    return BK_EXIT_OK;
}

static int
bk_cmd_verify(const bk_env_t *env, const char *gen_arg, int as_json)
{
    char gen[BK_GEN_LEN], dir[BK_PATH + 64];

    if (bk_resolve(env, gen_arg, gen) != PHR_OK) {
        fprintf(stderr, "phrctl: no generation %s in %s\n", gen_arg, env->dir);
        return BK_EXIT_NOTFOUND;
    }
    snprintf(dir, sizeof(dir), "%s/%s", env->dir, gen);
    json_object *report = json_object_new_array();
    int rc = bk_verify_dir(env, dir, report);
    if (as_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "generation", json_object_new_string(gen));
        json_object_object_add(o, "dir", json_object_new_string(dir));
        json_object_object_add(o, "ok", json_object_new_boolean(rc == PHR_OK));
        json_object_object_add(o, "files", json_object_get(report));
        bk_print_json(o);
        json_object_put(o);
    } else {
        printf("generation %s: %s\n", gen, rc == PHR_OK ? "verified" : "FAILED");
        fflush(stdout);
    }
    json_object_put(report);
    if (rc == PHR_OK) {
        return BK_EXIT_OK;
    }
    return rc == PHR_EPROTO ? BK_EXIT_CORRUPT : BK_EXIT_ERROR;
}

int
bk_backup_main(int argc, char **argv)
{
    const char *gen = "1";
    int as_json = 0, has_gen = 0;
    bk_env_t env;

    if (argc < 1) {
        return bk_usage();
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--generation") == 0) {
            gen = argv[++i];
            has_gen = 1;
        } else {
            return bk_usage();
        }
    }
    if (bk_env_load(&env) != PHR_OK) {
        return BK_EXIT_ERROR;
    }
    signal(SIGPIPE, SIG_IGN); /* pg_restore --list stops reading early */
    if (strcmp(argv[0], "run") == 0 && !has_gen) {
        return bk_run(&env, as_json);
    }
    if (strcmp(argv[0], "list") == 0 && !has_gen) {
        return bk_cmd_list(&env, as_json);
    }
    if (strcmp(argv[0], "verify") == 0) {
        return bk_cmd_verify(&env, gen, as_json);
    }
    return bk_usage();
}
