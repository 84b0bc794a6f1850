/*
 * kind.h - the notification kinds: channels, required parameters, secret parameters
 * and per-recipient rate limits.
 */
#ifndef PHR_NOTIFICATION_KIND_H
#define PHR_NOTIFICATION_KIND_H

#include <stddef.h>

enum { KIND_EMAIL = 1 << 0, KIND_SMS = 1 << 1 };

typedef struct {
    const char *kind;
    int channels;              /* KIND_EMAIL | KIND_SMS */
    const char *const *params; /* NULL-terminated required template variables */
    /*
     * NULL-terminated parameters carrying a secret (initial password, code, link with a
     * token), or NULL. A kind with secrets has its rendered body and these parameters
     * deleted once the provider accepted the message, and e-mail tracking off.
     */
    const char *const *secrets;
    int rl_max;      /* submits per recipient within rl_window_s; 0 = no limit */
    int rl_window_s; /* rate-limit window */
} kind_t;

extern const kind_t kind_table[];
extern const size_t kind_count;

/* The kind named |name|, or NULL. */
const kind_t *kind_find(const char *name);

/* 1 when |kind| carries secrets (see kind_t.secrets). */
int kind_has_secrets(const kind_t *kind);

/* Channel bit of "email" / "sms", or 0. */
int kind_channel_bit(const char *channel);

#endif
