/*
 * kv.h - Redis on hiredis 0.14's libevent adapter, with what 0.14 lacks:
 * a timer per command (a frozen Redis fails commands with PHR_ETIMEDOUT
 * after timeout_ms instead of hanging them, and the connection is dropped
 * and re-made), AUTH on connect, and reconnect with exponential backoff.
 */
#ifndef PHR_KV_H
#define PHR_KV_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct event_base;
typedef struct kv kv_t;

/*
 * |rc| is PHR_OK with |reply| (which may be a REDIS_REPLY_ERROR),
 * PHR_ETIMEDOUT, PHR_EUNAVAIL (not connected / connection lost) or
 * PHR_ECLOSED (kv freed). |reply| is valid only during the callback.
 * The callback runs exactly once, never from inside the submitting call.
 */
typedef void (*kv_cb)(int rc, redisReply *reply, void *ud);

typedef struct {
    const char *host;
    int port;
    const char *password; /* NULL for none */
    int timeout_ms;       /* per command and per connect */
} kv_config_t;

kv_t *kv_create(struct event_base *base, const kv_config_t *cfg);
void kv_free(kv_t *kv);

/* 1 when connected and authenticated. */
int kv_ready(const kv_t *kv);

typedef struct {
    int connected;
    unsigned long commands, errors, timeouts, reconnects;
} kv_stats_t;
void kv_stats(const kv_t *kv, kv_stats_t *out);

/*
 * Sends one command given as argv (binary safe). Returns PHR_OK (callback
 * pending) or PHR_EUNAVAIL (not connected; callback not called).
 */
int kv_command_argv(kv_t *kv, kv_cb cb, void *ud, int argc, const char **argv,
                    const size_t *argvlen);

#endif
