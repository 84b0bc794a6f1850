/*
 * lookup.c - the provider lookup of an attempt whose outcome is unknown: its URL and the
 * parsing of the answer (see prov_lookup in provider.h). No I/O here.
 */
#include <curl/curl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "err.h"
#include "jsonx.h"
#include "provider.h"

#define LOOKUP_URL_MAX 2048

/* A Twilio date (RFC 2822 in GMT) in unix seconds; -1 when absent or unparsable. */
static long
lookup_date(const char *v)
{
    if (v == NULL || v[0] == '\0') {
        return -1;
    }
    time_t t = curl_getdate(v, NULL);
    return t < 0 ? -1 : (long)t;
}

char *
prov_lookup_url(const cfg_t *cfg, const prov_msg_t *m)
{
    char q[160], *url = malloc(LOOKUP_URL_MAX), *enc;
    int n;

    if (url == NULL) {
        return NULL;
    }
    if (strcmp(m->channel, "email") == 0) {
        snprintf(q, sizeof(q), "unique_args['notification_id']=\"%s\"", m->id);
        enc = curl_easy_escape(NULL, q, 0);
        n = enc == NULL ? -1
                        : snprintf(url, LOOKUP_URL_MAX, "%s/v3/messages?limit=10&query=%s",
                                   cfg->sendgrid_base_url, enc);
    } else {
        enc = curl_easy_escape(NULL, m->to, 0);
        n = enc == NULL ? -1
                        : snprintf(url, LOOKUP_URL_MAX,
                                   "%s/2010-04-01/Accounts/%s/Messages.json?To=%s&PageSize=50",
                                   cfg->twilio_base_url, cfg->twilio_account_sid, enc);
    }
    curl_free(enc);
    if (n < 0 || n >= LOOKUP_URL_MAX) {
        free(url);
        return NULL;
    }
    return url;
}

/* SendGrid: any message carrying our notification id (the query matched on it). */
static int
lookup_sendgrid(const prov_msg_t *m, json_object *list, char *id, size_t cap)
{
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *to = jx_get_str(e, "to_email", NULL);
        const char *msg = jx_get_str(e, "msg_id", NULL);
        if (to == NULL || msg == NULL || strcasecmp(to, m->to) != 0) {
            continue;
        }
        size_t len = strcspn(msg, "."); /* "<X-Message-Id>.filter..." */
        snprintf(id, cap, "%.*s", (int)len, msg);
        return 1;
    }
    return 0;
}

/* Twilio: an outbound message to |m->to| with our body, created at or after |since_s|. */
static int
lookup_twilio(const prov_msg_t *m, long since_s, json_object *list, char *id, size_t cap)
{
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *to = jx_get_str(e, "to", NULL);
        const char *body = jx_get_str(e, "body", NULL);
        const char *sid = jx_get_str(e, "sid", NULL);
        const char *dir = jx_get_str(e, "direction", "");
        if (to == NULL || body == NULL || sid == NULL || strcmp(to, m->to) != 0 ||
            strcmp(body, m->body) != 0 || strncmp(dir, "outbound", 8) != 0 ||
            lookup_date(jx_get_str(e, "date_created", NULL)) < since_s) {
            continue;
        }
        snprintf(id, cap, "%s", sid);
        return 1;
    }
    return 0;
}

int
prov_lookup_parse(const prov_msg_t *m, long since_s, const char *body, char *id, size_t cap)
{
    json_object *o = body != NULL ? json_tokener_parse(body) : NULL;
    json_object *list = NULL;
    int rc = PHR_EPROTO;

    id[0] = '\0';
    if (o != NULL && json_object_object_get_ex(o, "messages", &list) &&
        json_object_is_type(list, json_type_array)) {
        rc = strcmp(m->channel, "email") == 0 ? lookup_sendgrid(m, list, id, cap)
                                              : lookup_twilio(m, since_s, list, id, cap);
    }
    json_object_put(o);
    return rc;
}
