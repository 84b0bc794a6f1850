/*
 * ratelimit.h - per recipient and kind submit limits in Redis (fixed window: INCR, then
 * EXPIRE on the first hit). The key holds a hash of the address, never the address.
 * Redis down: the limit is not enforced (logged), delivery must not depend on it.
 */
#ifndef PHR_NOTIFICATION_RATELIMIT_H
#define PHR_NOTIFICATION_RATELIMIT_H

#include "kind.h"
#include "kv.h"

/* |allowed| 1 or 0; when 0, |retry_after_s| is the time left in the window. */
typedef void (*rl_cb)(int allowed, long retry_after_s, void *ud);

/*
 * Counts one submit of |kind| to |address|. Calls |cb| (never inside this call when it
 * returns PHR_OK). Returns PHR_OK, or PHR_AGAIN when |kind| has no limit or Redis is not
 * connected (|cb| is then not called: treat as allowed).
 */
int rl_hit(kv_t *kv, const kind_t *kind, const char *address, rl_cb cb, void *ud);

#endif
