/*
 * argon2_raw.c - the raw argon2id baseline of the login bench (tests/bench/run.sh).
 *
 *   argon2_raw THREADS SECONDS
 *
 * THREADS threads hash back to back with the parameters of services/auth/pwhash.c
 * (argon2id v1.3, m=19456 KiB, t=2, p=1, 16-byte salt, 32-byte tag, through argon2_ctx()
 * with the default allocator, as the service does) until SECONDS have passed; a thread
 * finishes the hash it is in. Prints one JSON line:
 *   {"threads":T,"hashes":N,"seconds":S,"rate":N/S}
 * where S runs from the common start to the end of the last hash. Exit 0, or 1 on error.
 */
#include <argon2.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RAW_M_COST 19456u
#define RAW_T_COST 2u
#define RAW_LANES 1u
#define RAW_SALT_LEN 16
#define RAW_TAG_LEN 32
#define RAW_MAX_THREADS 64

typedef struct {
    pthread_t tid;
    int index;
    double deadline; /* CLOCK_MONOTONIC seconds */
    long hashes;
    double end;
    int failed;
} raw_thread_t;

static pthread_barrier_t raw_barrier;

static double
raw_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
raw_run(void *arg)
{
    raw_thread_t *t = arg;
    uint8_t pwd[32], salt[RAW_SALT_LEN], tag[RAW_TAG_LEN];

    for (size_t i = 0; i < sizeof(pwd); i++) {
        pwd[i] = (uint8_t)(0x41 + (i + (size_t)t->index) % 26);
    }
    for (size_t i = 0; i < sizeof(salt); i++) {
        salt[i] = (uint8_t)(i * 7 + (size_t)t->index);
    }
    pthread_barrier_wait(&raw_barrier);
    do {
        argon2_context ctx;

        memset(&ctx, 0, sizeof(ctx));
        ctx.out = tag;
        ctx.outlen = sizeof(tag);
        ctx.pwd = pwd;
        ctx.pwdlen = sizeof(pwd);
        ctx.salt = salt;
        ctx.saltlen = sizeof(salt);
        ctx.t_cost = RAW_T_COST;
        ctx.m_cost = RAW_M_COST;
        ctx.lanes = RAW_LANES;
        ctx.threads = RAW_LANES;
        ctx.version = ARGON2_VERSION_13;
        ctx.flags = ARGON2_DEFAULT_FLAGS;
        if (argon2_ctx(&ctx, Argon2_id) != ARGON2_OK) {
            t->failed = 1;
            break;
        }
        t->hashes++;
        salt[0]++; /* a fresh salt per hash, like the service */
    } while (raw_now() < t->deadline);
    t->end = raw_now();
    return NULL;
}

static int
raw_parse(const char *s, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

int
main(int argc, char **argv)
{
    static raw_thread_t threads[RAW_MAX_THREADS];
    long nthreads, seconds;

    if (argc != 3 || raw_parse(argv[1], 1, RAW_MAX_THREADS, &nthreads) != 0 ||
        raw_parse(argv[2], 1, 3600, &seconds) != 0) {
        fprintf(stderr, "usage: argon2_raw THREADS(1-%d) SECONDS(1-3600)\n", RAW_MAX_THREADS);
        return 1;
    }
    if (pthread_barrier_init(&raw_barrier, NULL, (unsigned)nthreads + 1) != 0) {
        fprintf(stderr, "argon2_raw: pthread_barrier_init failed\n");
        return 1;
    }
    for (long i = 0; i < nthreads; i++) {
        threads[i].index = (int)i;
        if (pthread_create(&threads[i].tid, NULL, raw_run, &threads[i]) != 0) {
            fprintf(stderr, "argon2_raw: pthread_create failed\n");
            return 1;
        }
    }
    /* The threads wait at the barrier: they read their deadline after it. */
    double start = raw_now();
    for (long i = 0; i < nthreads; i++) {
        threads[i].deadline = start + (double)seconds;
    }
    pthread_barrier_wait(&raw_barrier);

    long hashes = 0;
    double end = start;
    int failed = 0;
    for (long i = 0; i < nthreads; i++) {
        pthread_join(threads[i].tid, NULL);
        hashes += threads[i].hashes;
        failed |= threads[i].failed;
        if (threads[i].end > end) {
            end = threads[i].end;
        }
    }
    pthread_barrier_destroy(&raw_barrier);
    if (failed || hashes == 0) {
        fprintf(stderr, "argon2_raw: argon2_ctx failed\n");
        return 1;
    }
    double secs = end - start;
    printf("{\"threads\":%ld,\"hashes\":%ld,\"seconds\":%.4f,\"rate\":%.3f}\n", nthreads, hashes,
           secs, (double)hashes / secs);
    return 0;
}
