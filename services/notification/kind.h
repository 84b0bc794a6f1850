/*
 * kind.h - the notification kinds: channels, locales and required parameters.
 */
#ifndef PHR_NOTIFICATION_KIND_H
#define PHR_NOTIFICATION_KIND_H

#include <stddef.h>

enum { KIND_EMAIL = 1 << 0, KIND_SMS = 1 << 1 };

typedef struct {
    const char *kind;
    int channels;              /* KIND_EMAIL | KIND_SMS */
    const char *const *params; /* NULL-terminated required template variables */
} kind_t;

extern const kind_t kind_table[];
extern const size_t kind_count;

/* The kind named |name|, or NULL. */
const kind_t *kind_find(const char *name);

#endif
