/*
 * ratelimit.c - per recipient and kind limits (see ratelimit.h).
 */
#include "ratelimit.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

/* KEYS: bucket. ARGV: window s. -> {count, ttl} */
static const char rl_lua[] = "local n = redis.call('INCR', KEYS[1]) "
                             "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
                             "return {n, redis.call('TTL', KEYS[1])}";

typedef struct {
    rl_cb cb;
    void *ud;
    int max;
    int window;
} rl_ctx_t;

static void
rl_done(int rc, redisReply *r, void *ud)
{
    rl_ctx_t *c = ud;
    int allowed = 1;
    long ttl = 0;

    if (rc == PHR_OK && r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        allowed = r->element[0]->integer <= c->max;
        ttl = (long)r->element[1]->integer;
        if (ttl < 1) {
            ttl = c->window;
        }
    } else {
        log_warn("rate limit not enforced: redis %s", phr_err_str(rc != PHR_OK ? rc : PHR_EPROTO));
    }
    rl_cb cb = c->cb;
    void *cud = c->ud;
    free(c);
    cb(allowed, ttl, cud);
}

int
rl_hit(kv_t *kv, const kind_t *kind, const char *address, rl_cb cb, void *ud)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char key[128], window[16];
    size_t len = 0;

    if (kind->rl_max <= 0 || kv == NULL || !kv_ready(kv)) {
        return PHR_AGAIN;
    }
    rl_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return PHR_AGAIN;
    }
    c->cb = cb;
    c->ud = ud;
    c->max = kind->rl_max;
    c->window = kind->rl_window_s;
    SHA256((const unsigned char *)address, strlen(address), md);
    len = (size_t)snprintf(key, sizeof(key), "notify:rl:%s:", kind->kind);
    for (size_t i = 0; i < 16 && len + 2 < sizeof(key); i++) {
        len += (size_t)snprintf(key + len, sizeof(key) - len, "%02x", md[i]);
    }
    snprintf(window, sizeof(window), "%d", kind->rl_window_s);
    const char *argv[] = {"EVAL", rl_lua, "1", key, window};
    size_t argvlen[5];
    for (size_t i = 0; i < 5; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    if (kv_command_argv(kv, rl_done, c, 5, argv, argvlen) != PHR_OK) {
        free(c);
        return PHR_AGAIN;
    }
    return PHR_OK;
}
