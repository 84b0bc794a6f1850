/*
 * backup.h - phrctl backup run|list|verify and phrctl restore (deploy/BACKUPS.md).
 *
 * A generation is a directory $PHR_BACKUP_DIR/<YYYYMMDDTHHMMSS+0900>/ holding one
 * encrypted pg_dump (custom format) per service database and manifest.json. It is
 * built as <name>.partial and renamed only once verified. bkio.c holds what the verbs
 * share: the environment, child processes (pg_dump, pg_restore, psql) and the
 * AES-256-GCM file format:
 *
 *   "PHRBK001" | 12-byte nonce | ciphertext | 16-byte tag
 *   AAD = "PHRBK001" NUL key_id NUL label, label = "<generation>/<database>"
 *
 * so a file cannot be passed off as another database's or another generation's.
 */
#ifndef PHRCTL_BACKUP_H
#define PHRCTL_BACKUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

/* Exit codes of the backup verbs (0..3 are shared with the rest of phrctl). */
enum {
    BK_EXIT_OK = 0,
    BK_EXIT_ERROR = 1,
    BK_EXIT_USAGE = 2,
    BK_EXIT_NOTFOUND = 4, /* no such generation */
    BK_EXIT_CORRUPT = 5,  /* a generation failed verification */
    BK_EXIT_REFUSED = 6,  /* destructive verb without --yes */
    BK_EXIT_BUSY = 7      /* another backup runs, or services are connected */
};

#define BK_NDB 4
#define BK_PATH 1024  /* local path buffers */
#define BK_DIRLEN 512 /* directories and hosts in bk_env_t */
#define BK_GEN_LEN 21 /* "20261126T211800+0900" + NUL */
#define BK_KEY_ID "backup_key_v1"

extern const char *const bk_databases[BK_NDB]; /* phr_auth ... phr_audit */

typedef struct bk_env {
    char dir[BK_DIRLEN]; /* PHR_BACKUP_DIR, default $PHR_VAR/backups */
    char secrets_dir[BK_DIRLEN];
    char pg_bin[BK_DIRLEN];  /* directory of pg_dump etc.; "" = PATH */
    char pg_host[BK_DIRLEN]; /* socket directory or host of the admin connection */
    char pg_port[16];
    char pg_user[64]; /* superuser of the admin connection */
    int drop_privs;   /* run PostgreSQL tools as pg_user (root + local socket) */
    uid_t uid;
    gid_t gid;
    int keep; /* PHR_BACKUP_KEEP, default 35 */
} bk_env_t;

/* Fills |env| from the environment. PHR_OK or PHR_EINVAL (message printed). */
int bk_env_load(bk_env_t *env);

/* Loads secret |key_id| (64 hex characters) into |key|. PHR_OK or an error (printed). */
int bk_key_load(const bk_env_t *env, const char *key_id, unsigned char key[32]);

/* libpq conninfo of the admin connection to |dbname| into |out|. */
void bk_conninfo(const bk_env_t *env, const char *dbname, char *out, size_t outlen);

/*
 * Starts PostgreSQL tool |tool| (pg_dump, pg_restore, psql) with |argv| (argv[0]
 * ignored, NULL-terminated). *in_fd / *out_fd, when not NULL, receive the write end
 * of its stdin / the read end of its stdout (else they are /dev/null). stderr is
 * inherited. PHR_OK or PHR_EIO.
 */
int bk_spawn(const bk_env_t *env, const char *tool, char *const argv[], int *in_fd, int *out_fd,
             pid_t *pid);

/* Like bk_spawn with given descriptors as the child's stdin/stdout (-1: /dev/null). */
int bk_spawn_fds(const bk_env_t *env, const char *tool, char *const argv[], int child_in,
                 int child_out, pid_t *pid);

/* Waits for |pid|; 0 when it exited with status 0, else -1. */
int bk_wait(pid_t pid);

/*
 * Runs |tool| with |argv| and captures at most |outlen|-1 bytes of its stdout
 * (trailing newlines removed) into |out|. PHR_OK when it exited 0.
 */
int bk_capture(const bk_env_t *env, const char *tool, char *const argv[], char *out, size_t outlen);

/* Runs one SQL statement with psql on |dbname|; the unaligned tuples into |out|. */
int bk_sql(const bk_env_t *env, const char *dbname, const char *sql, char *out, size_t outlen);

/* Result of one encryption or decryption pass. */
typedef struct bk_file_info {
    uint64_t size;       /* bytes of the encrypted file */
    uint64_t plain_size; /* bytes of plaintext */
    char sha256[65];     /* of the encrypted file, hex */
} bk_file_info_t;

/*
 * Encrypts everything read from |in_fd| into the new file |path| (mode 0600,
 * fsynced). PHR_OK or an error (printed).
 */
int bk_encrypt(int in_fd, const char *path, const unsigned char key[32], const char *key_id,
               const char *label, bk_file_info_t *info);

/*
 * Decrypts |path|, writing plaintext to |out_fd| (-1: nowhere; a reader that goes away
 * early is tolerated) and checking the tag. PHR_OK when the whole file authenticated,
 * PHR_EPROTO when it did not, PHR_EIO on a read error; |info| is filled either way.
 */
int bk_decrypt(const char *path, int out_fd, const unsigned char key[32], const char *key_id,
               const char *label, bk_file_info_t *info);

/* |name| looks like a generation ("20261126T211800+0900"). */
int bk_gen_name_ok(const char *name);

/* Generations (complete directories) newest first; returns the count (<= max). */
int bk_list(const bk_env_t *env, char (*names)[BK_GEN_LEN], int max);

/*
 * Resolves --generation |arg| (1 = newest, as `backup list` numbers them, or a
 * directory name) into |name|. PHR_OK or PHR_ENOTFOUND.
 */
int bk_resolve(const bk_env_t *env, const char *arg, char name[BK_GEN_LEN]);

/*
 * Verifies the generation in directory |dir| (complete or partial): manifest, sizes,
 * SHA-256, GCM tags and `pg_restore --list` of every file. Adds one object per file to
 * |report| (an array; may be NULL). PHR_OK, PHR_EPROTO (corrupt) or another error.
 */
int bk_verify_dir(const bk_env_t *env, const char *dir, json_object *report);

/*
 * Takes the backup directory's lock (backups and restores never overlap). Returns the
 * lock's descriptor, -1 on error (printed), -2 when another run holds it.
 */
int bk_lock(const bk_env_t *env);

/* Reads |dir|/manifest.json. NULL (message printed) when missing or malformed. */
json_object *bk_manifest_read(const char *dir);

/*
 * The patient purges recorded after the generation of |manifest| (replay.c): from the
 * live audit log and the live records outbox, plus those an interrupted restore kept.
 * An object patient id -> purge event id, also kept in $PHR_BACKUP_DIR/.purge-replay.json
 * until applied; NULL on error (printed).
 */
json_object *bk_purges_collect(const bk_env_t *env, json_object *manifest);

/*
 * Applies |purges| to the restored phr_records, each with an audit event (records outbox,
 * reason restore_replay); adds one object per patient to |report|. PHR_OK or an error.
 */
int bk_purges_apply(const bk_env_t *env, const char *gen, json_object *purges, json_object *report);

/* The verbs; argv starts after the verb ("run", "--json", ...). Return exit codes. */
int bk_backup_main(int argc, char **argv);
int bk_restore_main(int argc, char **argv);

#endif
