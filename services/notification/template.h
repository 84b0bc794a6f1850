/*
 * template.h - the message templates (kind x channel x locale) and strict rendering.
 *
 * A template is text with {{name}} placeholders. Rendering fails on a placeholder
 * whose parameter is missing (never a blank in the message). Locale: the requested
 * one, then ja (the default), then en. SMS templates must fit one UCS-2 segment
 * (70 code units) with every parameter at its maximal length (a unit test checks).
 */
#ifndef PHR_NOTIFICATION_TEMPLATE_H
#define PHR_NOTIFICATION_TEMPLATE_H

#include <json-c/json.h>
#include <stddef.h>

#define TPL_SMS_UNITS 70

typedef struct {
    const char *kind;
    const char *channel; /* "email" | "sms" */
    const char *locale;  /* "ja" | "en" */
    const char *subject; /* NULL for SMS */
    const char *body;
} tpl_t;

extern const tpl_t tpl_table[];
extern const size_t tpl_count;

/* The template for |kind|/|channel| in |locale| (NULL = ja) or its fallback, or NULL. */
const tpl_t *tpl_find(const char *kind, const char *channel, const char *locale);

/*
 * Renders |t| with string parameters |params| into |*subject| (NULL for SMS) and
 * |*body| (caller frees both with tpl_free_text). On a missing or non-string
 * parameter returns PHR_EINVAL with its name in |missing|; PHR_ENOMEM on allocation
 * failure.
 */
int tpl_render(const tpl_t *t, const json_object *params, char **subject, char **body,
               char *missing, size_t missing_cap);

/* Wipes and frees rendered text (it may carry secrets). NULL is a no-op. */
void tpl_free_text(char *s);

/* UTF-16 code units of UTF-8 text |s| (the UCS-2 length of an SMS). */
size_t tpl_ucs2_units(const char *s);

/* Maximal length (characters) of parameter |name| in an SMS; 0 = unbounded. */
size_t tpl_sms_param_max(const char *name);

#endif
