/*
 * admin.h - what the operator routes of notice.c and incident.c share: the operator check
 * (with the 15-minute re-authentication of writes), field errors, the Idempotency-Key header,
 * the request hash, and the newest-first paging of their lists (limit, cursor
 * "<epoch ms>_<uuid>", next_cursor).
 */
#ifndef PHR_NOTIFICATION_ADMIN_H
#define PHR_NOTIFICATION_ADMIN_H

#include <libpq-fe.h>
#include <stddef.h>

#include "h2s.h"
#include "session.h"

#define NADM_SHA_HEX_LEN 65

/* The paging of a list request: limit and, after the first page, the cursor's parts. */
typedef struct {
    int limit;
    char cur_time[40]; /* epoch ms as text, "" on the first page */
    char cur_id[37];   /* uuid, "" on the first page */
} nadm_page_t;

/* Answers 400 validation_failed naming |field|. Returns what h2s_respond_problem does. */
int nadm_field_error(h2s_req_t *req, const char *field, const char *msg);

/* Operator routes: 1 when |s| is an operator (authenticated within 15 minutes when |recent|);
 * else answered (403, or 401 reauth_required) and 0. */
int nadm_operator_ok(h2s_req_t *req, const sess_t *s, int recent);

/* The Idempotency-Key header as "<prefix>:<account>:<key>" into |out| ("" when absent).
 * 1 when absent or valid (1 to 255 visible ASCII characters), else answered 400 and 0. */
int nadm_idem_key(h2s_req_t *req, const sess_t *s, const char *prefix, char *out, size_t cap);

/* SHA-256 of the request body as lower-case hex into |out| (NADM_SHA_HEX_LEN bytes). */
void nadm_body_sha256(h2s_req_t *req, char out[NADM_SHA_HEX_LEN]);

/* limit (1..200, default 50) and cursor of the query into |p|. 1 when valid, else answered
 * 400 and 0. */
int nadm_page_params(h2s_req_t *req, nadm_page_t *p);

/* Answers a page: |res| columns (json text, created epoch ms, id), up to |limit| + 1 rows. */
void nadm_respond_page(h2s_req_t *req, const PGresult *res, int limit);

#endif
