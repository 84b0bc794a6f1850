/*
 * admin.c - the shared part of the operator routes of notice.c and incident.c (admin.h).
 */
#include "admin.h"

#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hex.h"
#include "jsonx.h"
#include "query.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

#define NADM_REAUTH_MS ((int64_t)15 * 60 * 1000)
#define NADM_LIMIT_DEFAULT 50
#define NADM_LIMIT_MAX 200

int
nadm_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};

    jx_error_add(&errs, field, "%s", msg);
    return h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields",
                               &errs);
}

int
nadm_operator_ok(h2s_req_t *req, const sess_t *s, int recent)
{
    if (strcmp(s->kind, "operator") != 0) {
        svc_respond_error(req, PHR_EDENIED, "operators only");
        return 0;
    }
    int64_t at = s->authenticated_ms ? s->authenticated_ms : s->created_ms;
    if (recent && tu_now_ms() - at > NADM_REAUTH_MS) {
        h2s_respond_problem(req, 401, "reauth_required",
                            "log in again: this action needs a password check within 15 minutes",
                            NULL);
        return 0;
    }
    return 1;
}

int
nadm_idem_key(h2s_req_t *req, const sess_t *s, const char *prefix, char *out, size_t cap)
{
    const char *key = h2s_req_header(req, "idempotency-key");

    out[0] = '\0';
    if (key == NULL) {
        return 1;
    }
    size_t kl = strlen(key);
    int ok = kl >= 1 && kl <= 255;
    for (size_t i = 0; ok && i < kl; i++) {
        ok = key[i] >= 0x21 && key[i] <= 0x7e;
    }
    if (!ok) {
        nadm_field_error(req, "Idempotency-Key", "1 to 255 visible ASCII characters");
        return 0;
    }
    snprintf(out, cap, "%s:%s:%s", prefix, s->account_id, key);
    return 1;
}

void
nadm_body_sha256(h2s_req_t *req, char out[NADM_SHA_HEX_LEN])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    size_t len = 0;
    const char *raw = h2s_req_body(req, &len);

    SHA256((const unsigned char *)(raw != NULL ? raw : ""), raw != NULL ? len : 0, d);
    hex_encode(d, sizeof(d), out);
}


int
nadm_page_params(h2s_req_t *req, nadm_page_t *p)
{
    char buf[80];

    memset(p, 0, sizeof(*p));
    p->limit = NADM_LIMIT_DEFAULT;
    int has = qry_get(h2s_req_query(req), "limit", buf, sizeof(buf));
    if (has != 0) {
        char *end = NULL;
        long v = has > 0 && buf[0] != '\0' ? strtol(buf, &end, 10) : -1;
        if (has < 0 || end == NULL || *end != '\0' || v < 1 || v > NADM_LIMIT_MAX) {
            nadm_field_error(req, "limit", "an integer from 1 to 200");
            return 0;
        }
        p->limit = (int)v;
    }
    has = qry_get(h2s_req_query(req), "cursor", buf, sizeof(buf));
    if (has != 0) {
        char *us = has > 0 ? strchr(buf, '_') : NULL;
        char *end = NULL;
        if (us != NULL) {
            *us = '\0';
            (void)strtoll(buf, &end, 10);
        }
        if (us == NULL || buf[0] == '\0' || end == NULL || *end != '\0' || !uuid_valid(us + 1) ||
            strlen(buf) > 15) {
            nadm_field_error(req, "cursor", "not a cursor of this list");
            return 0;
        }
        snprintf(p->cur_time, sizeof(p->cur_time), "%.15s", buf);
        snprintf(p->cur_id, sizeof(p->cur_id), "%s", us + 1);
    }
    return 1;
}

void
nadm_respond_page(h2s_req_t *req, const PGresult *res, int limit)
{
    json_object *out = json_object_new_object();
    json_object *items = json_object_new_array();
    int n = PQntuples(res);
    char cursor[80];

    for (int i = 0; i < n && i < limit; i++) {
        json_object *it = json_tokener_parse(PQgetvalue(res, i, 0));
        if (it != NULL) {
            json_object_array_add(items, it);
        }
    }
    json_object_object_add(out, "items", items);
    if (n > limit) {
        snprintf(cursor, sizeof(cursor), "%s_%s", PQgetvalue(res, limit - 1, 1),
                 PQgetvalue(res, limit - 1, 2));
        json_object_object_add(out, "next_cursor", json_object_new_string(cursor));
    } else {
        json_object_object_add(out, "next_cursor", NULL);
    }
    h2s_respond_json(req, 200, out);
}
