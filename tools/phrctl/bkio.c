/*
 * bkio.c - what the backup verbs share: environment, PostgreSQL tools as child
 * processes, the encrypted file format, generation listing and verification.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "backup.h"
#include "err.h"
#include "hex.h"

const char *const bk_databases[BK_NDB] = {"phr_auth", "phr_records", "phr_notification",
                                          "phr_audit"};

#define BK_MAGIC "PHRBK001"
#define BK_MAGIC_LEN 8
#define BK_NONCE_LEN 12
#define BK_TAG_LEN 16
#define BK_CHUNK 65536

static const char *
bk_getenv(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

/* Values that go into a conninfo between single quotes: no quote, backslash or newline. */
static int
bk_safe_value(const char *name, const char *v)
{
    if (strpbrk(v, "'\\\n") != NULL) {
        fprintf(stderr, "phrctl: %s: quotes, backslashes and newlines are not supported\n", name);
        return 0;
    }
    return 1;
}

static int
bk_copy(char *dst, size_t len, const char *src, const char *what)
{
    if ((size_t)snprintf(dst, len, "%s", src) >= len) {
        fprintf(stderr, "phrctl: %s too long\n", what);
        return PHR_EINVAL;
    }
    return PHR_OK;
}

/* The local stack's PostgreSQL socket directory ($PHR_VAR/run/pgdata + /sock), if any. */
static int
bk_local_socket(const char *var, char *out, size_t outlen)
{
    char path[BK_PATH], area[BK_PATH];

    snprintf(path, sizeof(path), "%s/run/pgdata", var);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    int ok = fgets(area, sizeof(area), f) != NULL;
    fclose(f);
    if (!ok) {
        return 0;
    }
    area[strcspn(area, "\n")] = '\0';
    return area[0] == '/' && (size_t)snprintf(out, outlen, "%s/sock", area) < outlen;
}

int
bk_env_load(bk_env_t *env)
{
    const char *var = bk_getenv("PHR_VAR", "var");
    char def[BK_PATH];
    int rc = PHR_OK;

    memset(env, 0, sizeof(*env));
    snprintf(def, sizeof(def), "%s/backups", var);
    rc |= bk_copy(env->dir, sizeof(env->dir), bk_getenv("PHR_BACKUP_DIR", def), "PHR_BACKUP_DIR");
    snprintf(def, sizeof(def), "%s/secrets", var);
    rc |= bk_copy(env->secrets_dir, sizeof(env->secrets_dir), bk_getenv("PHR_SECRETS_DIR", def),
                  "PHR_SECRETS_DIR");
    const char *pgbin = "/usr/lib/postgresql/15/bin";
    if (access("/usr/lib/postgresql/15/bin/pg_dump", X_OK) != 0) {
        pgbin = "";
    }
    rc |= bk_copy(env->pg_bin, sizeof(env->pg_bin), bk_getenv("PHR_PG_BIN", pgbin), "PHR_PG_BIN");
    const char *host = bk_getenv("PHR_BACKUP_PG_HOST", NULL);
    if (host != NULL) {
        rc |= bk_copy(env->pg_host, sizeof(env->pg_host), host, "PHR_BACKUP_PG_HOST");
    } else if (!bk_local_socket(var, env->pg_host, sizeof(env->pg_host))) {
        rc |= bk_copy(env->pg_host, sizeof(env->pg_host), bk_getenv("PHR_PG_HOST", "127.0.0.1"),
                      "PHR_PG_HOST");
    }
    rc |= bk_copy(env->pg_port, sizeof(env->pg_port), bk_getenv("PHR_PG_PORT", "55432"),
                  "PHR_PG_PORT");
    const char *user = getenv("PHR_BACKUP_PG_USER");
    if (user == NULL || user[0] == '\0') {
        struct passwd *me = getpwuid(geteuid());
        user = geteuid() == 0 ? "postgres" : me != NULL ? me->pw_name : "postgres";
    }
    rc |= bk_copy(env->pg_user, sizeof(env->pg_user), user, "PHR_BACKUP_PG_USER");
    if (rc != PHR_OK || !bk_safe_value("PHR_BACKUP_PG_HOST", env->pg_host) ||
        !bk_safe_value("PHR_BACKUP_PG_USER", env->pg_user) ||
        !bk_safe_value("PHR_PG_PORT", env->pg_port)) {
        return PHR_EINVAL;
    }
    /* root reaching a local socket: peer authentication wants the superuser's OS user. */
    struct passwd *pw = getpwnam(env->pg_user);
    if (geteuid() == 0 && env->pg_host[0] == '/' && pw != NULL && pw->pw_uid != 0) {
        env->drop_privs = 1;
        env->uid = pw->pw_uid;
        env->gid = pw->pw_gid;
    }
    char *end = NULL;
    long keep = strtol(bk_getenv("PHR_BACKUP_KEEP", "35"), &end, 10);
    if (end == NULL || *end != '\0' || keep < 1 || keep > 3650) {
        fprintf(stderr, "phrctl: PHR_BACKUP_KEEP: 1 to 3650\n");
        return PHR_EINVAL;
    }
    env->keep = (int)keep;
    return PHR_OK;
}


int
bk_key_load(const bk_env_t *env, const char *key_id, unsigned char key[32])
{
    char path[BK_PATH], hex[130];
    struct stat st;

    for (const char *p = key_id; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            fprintf(stderr, "phrctl: bad key id in the manifest\n");
            return PHR_EINVAL;
        }
    }
    snprintf(path, sizeof(path), "%s/%s", env->secrets_dir, key_id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "phrctl: secret %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return PHR_ENOTFOUND;
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        fprintf(stderr, "phrctl: secret %s is readable by group or others\n", path);
        return PHR_EDENIED;
    }
    ssize_t n = read(fd, hex, sizeof(hex) - 1);
    close(fd);
    while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r')) {
        n--;
    }
    hex[n > 0 ? n : 0] = '\0';
    int rc = hex_decode(hex, key, 32);
    explicit_bzero(hex, sizeof(hex));
    if (rc != PHR_OK) {
        explicit_bzero(key, 32);
        fprintf(stderr, "phrctl: secret %s: not 64 hex characters\n", key_id);
    }
    return rc;
}

void
bk_conninfo(const bk_env_t *env, const char *dbname, char *out, size_t outlen)
{
    snprintf(out, outlen,
             "host='%s' port='%s' user='%s' dbname='%s' connect_timeout=10 "
             "application_name=phrctl-backup",
             env->pg_host, env->pg_port, env->pg_user, dbname);
}

/* In the child: |fd| becomes |target|, or /dev/null when fd < 0. */
static void
bk_child_fd(int fd, int target)
{
    if (fd < 0) {
        fd = open("/dev/null", O_RDWR);
    }
    if (fd >= 0 && fd != target) {
        dup2(fd, target);
        close(fd);
    }
}

int
bk_spawn_fds(const bk_env_t *env, const char *tool, char *const argv[], int child_in, int child_out,
             pid_t *pid)
{
    char path[BK_PATH];

    if (env->pg_bin[0] != '\0') {
        snprintf(path, sizeof(path), "%s/%s", env->pg_bin, tool);
    } else {
        snprintf(path, sizeof(path), "%s", tool);
    }
    fflush(NULL);
    *pid = fork();
    if (*pid < 0) {
        fprintf(stderr, "phrctl: fork: %s\n", strerror(errno));
        return PHR_EIO;
    }
    if (*pid == 0) {
        bk_child_fd(child_in, 0);
        bk_child_fd(child_out, 1);
        if (env->drop_privs &&
            (setgroups(0, NULL) != 0 || setgid(env->gid) != 0 || setuid(env->uid) != 0)) {
            fprintf(stderr, "phrctl: cannot switch to user %s\n", env->pg_user);
            _exit(126);
        }
        if (chdir("/") != 0) {
            _exit(126);
        }
        execvp(path, argv);
        fprintf(stderr, "phrctl: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return PHR_OK;
}

int
bk_spawn(const bk_env_t *env, const char *tool, char *const argv[], int *in_fd, int *out_fd,
         pid_t *pid)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, rc = PHR_EIO;

    if ((in_fd != NULL && pipe2(in, O_CLOEXEC) != 0) ||
        (out_fd != NULL && pipe2(out, O_CLOEXEC) != 0)) {
        fprintf(stderr, "phrctl: pipe: %s\n", strerror(errno));
    } else {
        rc = bk_spawn_fds(env, tool, argv, in[0], out[1], pid);
    }
    if (in[0] >= 0) {
        close(in[0]);
    }
    if (out[1] >= 0) {
        close(out[1]);
    }
    if (rc == PHR_OK) {
        if (in_fd != NULL) {
            *in_fd = in[1];
        }
        if (out_fd != NULL) {
            *out_fd = out[0];
        }
    } else {
        if (in[1] >= 0) {
            close(in[1]);
        }
        if (out[0] >= 0) {
            close(out[0]);
        }
    }
    return rc;
}

int
bk_wait(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int
bk_capture(const bk_env_t *env, const char *tool, char *const argv[], char *out, size_t outlen)
{
    int fd;
    pid_t pid;
    size_t used = 0;
    char sink[4096];

    if (bk_spawn(env, tool, argv, NULL, &fd, &pid) != PHR_OK) {
        return PHR_EIO;
    }
    for (;;) {
        ssize_t n = used + 1 < outlen ? read(fd, out + used, outlen - 1 - used)
                                      : read(fd, sink, sizeof(sink));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (used + 1 < outlen) {
            used += (size_t)n;
        }
    }
    close(fd);
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r')) {
        used--;
    }
    out[used] = '\0';
    return bk_wait(pid) == 0 ? PHR_OK : PHR_EIO;
}

int
bk_sql(const bk_env_t *env, const char *dbname, const char *sql, char *out, size_t outlen)
{
    char conninfo[BK_PATH + 256];
    char *query = strdup(sql);

    if (query == NULL) {
        return PHR_ENOMEM;
    }
    bk_conninfo(env, dbname, conninfo, sizeof(conninfo));
    char *argv[] = {"psql", "-X", "-q",     "-tA", "-v",  "ON_ERROR_STOP=1",
                    "-w",   "-d", conninfo, "-c",  query, NULL};
    int rc = bk_capture(env, "psql", argv, out, outlen);
    free(query);
    return rc;
}

/* ---- encrypted files ------------------------------------------------------------ */

static int
bk_write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to |n| bytes (fewer only at end of file); -1 on error. */
static ssize_t
bk_read_full(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Sets up |c| for AES-256-GCM with |nonce| and the AAD of |key_id| and |label|. */
static int
bk_gcm_init(EVP_CIPHER_CTX *c, int enc, const unsigned char key[32], const unsigned char *nonce,
            const char *key_id, const char *label)
{
    int n;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, BK_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)BK_MAGIC, BK_MAGIC_LEN + 1) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)key_id, (int)strlen(key_id) + 1) !=
            1 ||
        EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)label, (int)strlen(label)) != 1) {
        return -1;
    }
    return 0;
}

int
bk_encrypt(int in_fd, const char *path, const unsigned char key[32], const char *key_id,
           const char *label, bk_file_info_t *info)
{
    unsigned char nonce[BK_NONCE_LEN], tag[BK_TAG_LEN], md[32];
    unsigned char *in = malloc(BK_CHUNK), *out = malloc(BK_CHUNK + 32);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int rc = PHR_EIO, fd = -1, n;

    memset(info, 0, sizeof(*info));
    if (in == NULL || out == NULL || c == NULL || h == NULL ||
        RAND_bytes(nonce, sizeof(nonce)) != 1 || bk_gcm_init(c, 1, key, nonce, key_id, label) ||
        EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "phrctl: cipher setup failed\n");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "phrctl: %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (bk_write_all(fd, (const unsigned char *)BK_MAGIC, BK_MAGIC_LEN) != 0 ||
        bk_write_all(fd, nonce, sizeof(nonce)) != 0) {
        goto werr;
    }
    EVP_DigestUpdate(h, BK_MAGIC, BK_MAGIC_LEN);
    EVP_DigestUpdate(h, nonce, sizeof(nonce));
    info->size = BK_MAGIC_LEN + BK_NONCE_LEN;
    for (;;) {
        ssize_t r = read(in_fd, in, BK_CHUNK);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "phrctl: reading the dump: %s\n", strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        if (EVP_EncryptUpdate(c, out, &n, in, (int)r) != 1) {
            goto out;
        }
        if (bk_write_all(fd, out, (size_t)n) != 0) {
            goto werr;
        }
        EVP_DigestUpdate(h, out, (size_t)n);
        info->plain_size += (uint64_t)r;
        info->size += (uint64_t)n;
    }
    if (EVP_EncryptFinal_ex(c, out, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, BK_TAG_LEN, tag) != 1) {
        goto out;
    }
    if (bk_write_all(fd, out, (size_t)n) != 0 || bk_write_all(fd, tag, sizeof(tag)) != 0) {
        goto werr;
    }
    EVP_DigestUpdate(h, out, (size_t)n);
    EVP_DigestUpdate(h, tag, sizeof(tag));
    info->size += (uint64_t)n + BK_TAG_LEN;
    EVP_DigestFinal_ex(h, md, NULL);
    hex_encode(md, sizeof(md), info->sha256);
    if (fsync(fd) != 0) {
        goto werr;
    }
    rc = PHR_OK;
    goto out;
werr:
    fprintf(stderr, "phrctl: writing %s: %s\n", path, strerror(errno));
out:
    if (fd >= 0 && close(fd) != 0 && rc == PHR_OK) {
        rc = PHR_EIO;
    }
    if (in != NULL) {
        explicit_bzero(in, BK_CHUNK);
    }
    free(in);
    free(out);
    EVP_CIPHER_CTX_free(c);
    EVP_MD_CTX_free(h);
    return rc;
}

int
bk_decrypt(const char *path, int out_fd, const unsigned char key[32], const char *key_id,
           const char *label, bk_file_info_t *info)
{
    unsigned char head[BK_MAGIC_LEN + BK_NONCE_LEN], tag[BK_TAG_LEN], md[32];
    unsigned char *in = malloc(BK_CHUNK), *out = malloc(BK_CHUNK + 32);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    struct stat st;
    int rc = PHR_EIO, n;

    memset(info, 0, sizeof(*info));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || in == NULL || out == NULL || c == NULL || h == NULL) {
        fprintf(stderr, "phrctl: %s: %s\n", path, strerror(errno));
        goto out;
    }
    info->size = (uint64_t)st.st_size;
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    if (st.st_size < (off_t)(sizeof(head) + BK_TAG_LEN) ||
        bk_read_full(fd, head, sizeof(head)) != (ssize_t)sizeof(head) ||
        memcmp(head, BK_MAGIC, BK_MAGIC_LEN) != 0) {
        fprintf(stderr, "phrctl: %s: not a backup file\n", path);
        rc = PHR_EPROTO;
        goto out;
    }
    EVP_DigestUpdate(h, head, sizeof(head));
    if (bk_gcm_init(c, 0, key, head + BK_MAGIC_LEN, key_id, label) != 0) {
        goto out;
    }
    uint64_t left = (uint64_t)st.st_size - sizeof(head) - BK_TAG_LEN;
    while (left > 0) {
        size_t want = left < BK_CHUNK ? (size_t)left : BK_CHUNK;
        if (bk_read_full(fd, in, want) != (ssize_t)want) {
            fprintf(stderr, "phrctl: %s: short read\n", path);
            goto out;
        }
        EVP_DigestUpdate(h, in, want);
        if (EVP_DecryptUpdate(c, out, &n, in, (int)want) != 1) {
            goto out;
        }
        /* A reader that exits early (pg_restore --list) is fine: keep authenticating. */
        if (out_fd >= 0 && bk_write_all(out_fd, out, (size_t)n) != 0) {
            out_fd = -1;
        }
        info->plain_size += (uint64_t)n;
        left -= want;
    }
    if (bk_read_full(fd, tag, sizeof(tag)) != (ssize_t)sizeof(tag)) {
        goto out;
    }
    EVP_DigestUpdate(h, tag, sizeof(tag));
    EVP_DigestFinal_ex(h, md, NULL);
    hex_encode(md, sizeof(md), info->sha256);
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, BK_TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(c, out, &n) != 1) {
        fprintf(stderr, "phrctl: %s: authentication failed (wrong key or altered file)\n", path);
        rc = PHR_EPROTO;
        goto out;
    }
    rc = PHR_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (out != NULL) {
        explicit_bzero(out, BK_CHUNK + 32);
    }
    free(in);
    free(out);
    EVP_CIPHER_CTX_free(c);
    EVP_MD_CTX_free(h);
    return rc;
}

/* ---- generations ----------------------------------------------------------------- */

int
bk_gen_name_ok(const char *name)
{
    static const char shape[] = "ddddddddTdddddd+0900";

    if (strlen(name) != sizeof(shape) - 1) {
        return 0;
    }
    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd' ? (name[i] < '0' || name[i] > '9') : name[i] != shape[i]) {
            return 0;
        }
    }
    return 1;
}

static int
bk_name_cmp_desc(const void *a, const void *b)
{
    return -strcmp((const char *)a, (const char *)b);
}

int
bk_list(const bk_env_t *env, char (*names)[BK_GEN_LEN], int max)
{
    char path[BK_PATH + 64];
    struct stat st;
    int count = 0;

    DIR *d = opendir(env->dir);
    if (d == NULL) {
        return 0;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL && count < max;) {
        if (!bk_gen_name_ok(e->d_name)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s/manifest.json", env->dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            snprintf(names[count++], BK_GEN_LEN, "%.20s", e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)count, BK_GEN_LEN, bk_name_cmp_desc);
    return count;
}

int
bk_resolve(const bk_env_t *env, const char *arg, char name[BK_GEN_LEN])
{
    enum { MAX = 4096 };
    char(*names)[BK_GEN_LEN] = calloc(MAX, BK_GEN_LEN);
    int rc = PHR_ENOTFOUND;

    if (names == NULL) {
        return PHR_ENOMEM;
    }
    int n = bk_list(env, names, MAX);
    char *end = NULL;
    long idx = strtol(arg, &end, 10);
    if (arg[0] >= '0' && arg[0] <= '9' && end != NULL && *end == '\0') {
        if (idx >= 1 && idx <= n) {
            snprintf(name, BK_GEN_LEN, "%s", names[idx - 1]);
            rc = PHR_OK;
        }
    } else {
        for (int i = 0; i < n; i++) {
            if (strcmp(names[i], arg) == 0) {
                snprintf(name, BK_GEN_LEN, "%s", names[i]);
                rc = PHR_OK;
            }
        }
    }
    free(names);
    return rc;
}

json_object *
bk_manifest_read(const char *dir)
{
    char path[BK_PATH + 64];

    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    json_object *m = json_object_from_file(path);
    if (m == NULL || !json_object_is_type(m, json_type_object)) {
        fprintf(stderr, "phrctl: %s: missing or not a JSON object\n", path);
        json_object_put(m);
        return NULL;
    }
    return m;
}

static const char *
bk_jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

static int
bk_known_db(const char *db)
{
    for (int i = 0; i < BK_NDB; i++) {
        if (strcmp(db, bk_databases[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Verifies one file entry of a manifest; adds its result to |report|. */
static int
bk_verify_file(const bk_env_t *env, const char *dir, const char *gen, json_object *entry,
               const unsigned char key[32], const char *key_id, json_object *report)
{
    const char *db = bk_jstr(entry, "database"), *file = bk_jstr(entry, "file");
    const char *sha = bk_jstr(entry, "sha256");
    json_object *size_o;
    char expect_file[128], path[BK_PATH + 160], label[160];
    const char *problem = NULL;
    bk_file_info_t info;

    memset(&info, 0, sizeof(info));
    if (db == NULL || file == NULL || sha == NULL || !bk_known_db(db) ||
        !json_object_object_get_ex(entry, "size", &size_o)) {
        problem = "malformed manifest entry";
        goto done;
    }
    snprintf(expect_file, sizeof(expect_file), "%s.dump.enc", db);
    if (strcmp(file, expect_file) != 0) {
        problem = "unexpected file name in the manifest";
        goto done;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(label, sizeof(label), "%s/%s", gen, db);
    int in_fd;
    pid_t pid;
    char *argv[] = {"pg_restore", "--list", NULL};
    if (bk_spawn(env, "pg_restore", argv, &in_fd, NULL, &pid) != PHR_OK) {
        problem = "cannot run pg_restore";
        goto done;
    }
    int rc = bk_decrypt(path, in_fd, key, key_id, label, &info);
    close(in_fd);
    int listed = bk_wait(pid);
    if (rc == PHR_EPROTO) {
        problem = "decryption failed (wrong key or altered file)";
    } else if (rc != PHR_OK) {
        problem = "cannot read the file";
    } else if (info.size != (uint64_t)json_object_get_int64(size_o)) {
        problem = "size differs from the manifest";
    } else if (strcmp(info.sha256, sha) != 0) {
        problem = "SHA-256 differs from the manifest";
    } else if (listed != 0) {
        problem = "pg_restore --list failed";
    }
done:
    if (problem != NULL) {
        fprintf(stderr, "phrctl: %s/%s: %s\n", dir, file != NULL ? file : "?", problem);
    }
    if (report != NULL) {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "database", json_object_new_string(db != NULL ? db : ""));
        json_object_object_add(r, "ok", json_object_new_boolean(problem == NULL));
        json_object_object_add(r, "size", json_object_new_int64((int64_t)info.size));
        if (problem != NULL) {
            json_object_object_add(r, "error", json_object_new_string(problem));
        }
        json_object_array_add(report, r);
    }
    return problem == NULL ? PHR_OK : PHR_EPROTO;
}

int
bk_verify_dir(const bk_env_t *env, const char *dir, json_object *report)
{
    unsigned char key[32];
    json_object *files;
    char gen[BK_GEN_LEN];

    json_object *m = bk_manifest_read(dir);
    if (m == NULL) {
        return PHR_EPROTO;
    }
    /* The generation's name (without .partial) is bound into every file's AAD. */
    const char *base = strrchr(dir, '/') != NULL ? strrchr(dir, '/') + 1 : dir;
    snprintf(gen, sizeof(gen), "%.20s", base);
    const char *mgen = bk_jstr(m, "generation"), *key_id = bk_jstr(m, "key_id");
    if (mgen == NULL || strcmp(mgen, gen) != 0 || key_id == NULL ||
        !json_object_object_get_ex(m, "files", &files) ||
        !json_object_is_type(files, json_type_array)) {
        fprintf(stderr, "phrctl: %s/manifest.json: malformed or of another generation\n", dir);
        json_object_put(m);
        return PHR_EPROTO;
    }
    int rc = bk_key_load(env, key_id, key);
    if (rc != PHR_OK) {
        json_object_put(m);
        return rc;
    }
    size_t n = json_object_array_length(files);
    int bad = n != BK_NDB;
    if (bad) {
        fprintf(stderr, "phrctl: %s: the manifest lists %zu files, expected %d\n", dir, n, BK_NDB);
    }
    for (size_t i = 0; i < n; i++) {
        if (bk_verify_file(env, dir, gen, json_object_array_get_idx(files, i), key, key_id,
                           report) != PHR_OK) {
            bad = 1;
        }
    }
    explicit_bzero(key, sizeof(key));
    json_object_put(m);
    return bad ? PHR_EPROTO : PHR_OK;
}
