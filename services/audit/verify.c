/*
 * verify.c - GET /api/v1/admin/audit/verify?from_seq=&to_seq= (operators):
 * recomputes the hash chain and checks every checkpoint signature in the
 * range, streaming through the table a page at a time (chain.h), and answers
 * {ok, checked, checkpoints_checked, first_bad_seq, reason}.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "err.h"
#include "hex.h"
#include "log.h"

#define VERIFY_PAGE 2000

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    int64_t from_seq, to_seq;
    int dropped;
    int has_verifier;
    chain_verifier_t v;
    char bufs[3][24];
    char to_buf[24];
} verify_ctx_t;

static void
verify_ctx_free(void *arg)
{
    verify_ctx_t *c = arg;

    if (c->has_verifier) {
        chain_verifier_fini(&c->v);
    }
    free(c);
}

static void
verify_respond(verify_ctx_t *c)
{
    json_object *o = json_object_new_object();
    int ok = c->v.first_bad_seq == 0;

    json_object_object_add(o, "ok", json_object_new_boolean(ok));
    json_object_object_add(o, "checked", json_object_new_int64(c->v.checked));
    json_object_object_add(o, "checkpoints_checked", json_object_new_int64(c->v.checkpoints));
    json_object_object_add(o, "first_bad_seq",
                           ok ? NULL : json_object_new_int64(c->v.first_bad_seq));
    json_object_object_add(o, "reason", ok ? NULL : json_object_new_string(c->v.reason));
    if (!ok) {
        log_msg(LOGL_WARN, h2s_req_id(c->req),
                "audit chain verification failed at seq %" PRId64 ": %s", c->v.first_bad_seq,
                c->v.reason);
    }
    h2s_respond_json(c->req, 200, o);
}

static void
verify_fail(verify_ctx_t *c, int rc)
{
    svc_respond_error(c->req, rc == PHR_ETIMEDOUT ? PHR_ETIMEDOUT : PHR_EUNAVAIL, NULL);
}

static void
verify_tail_cb(int rc, PGresult *res, void *ud)
{
    verify_ctx_t *c = ud;

    if (rc != PHR_OK || PQntuples(res) != 1) {
        verify_fail(c, rc);
        return;
    }
    chain_verifier_finish(&c->v, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    verify_respond(c);
}

static void verify_page(verify_ctx_t *c);

static void
verify_page_cb(int rc, PGresult *res, void *ud)
{
    verify_ctx_t *c = ud;

    if (rc != PHR_OK) {
        verify_fail(c, rc);
        return;
    }
    int n = PQntuples(res);
    chain_verifier_feed(&c->v, res);
    if (c->v.first_bad_seq != 0) {
        verify_respond(c);
    } else if (n == VERIFY_PAGE) {
        verify_page(c);
    } else {
        const char *p[1] = {c->to_buf};
        if ((rc = db_query(svc_db(c->svc), chain_sql_tail, 1, p, verify_tail_cb, c)) != PHR_OK) {
            verify_fail(c, rc);
        }
    }
}

static void
verify_page(verify_ctx_t *c)
{
    const char *params[4];
    int rc;

    chain_verifier_params(&c->v, VERIFY_PAGE, c->bufs, params);
    if ((rc = db_query(svc_db(c->svc), chain_sql_page, 4, params, verify_page_cb, c)) != PHR_OK) {
        verify_fail(c, rc);
    }
}

static void
verify_prev_cb(int rc, PGresult *res, void *ud)
{
    verify_ctx_t *c = ud;
    unsigned char prev[CHAIN_HASH_LEN] = {0};
    const unsigned char *pp = NULL;

    if (rc != PHR_OK) {
        verify_fail(c, rc);
        return;
    }
    /* the genesis (32 zero bytes), else the stored hash before from_seq if there is one */
    if ((c->from_seq == 1 && !c->dropped) ||
        (res != NULL && PQntuples(res) == 1 &&
         hex_decode(PQgetvalue(res, 0, 0), prev, CHAIN_HASH_LEN) == 0)) {
        pp = prev;
    }
    if (chain_verifier_init(&c->v, c->from_seq, c->to_seq, pp, audit_get(c->svc)->pub_key) != 0) {
        svc_respond_error(c->req, PHR_ENOMEM, NULL);
        return;
    }
    c->has_verifier = 1;
    verify_page(c);
}

static void
verify_dropped_cb(int rc, PGresult *res, void *ud)
{
    verify_ctx_t *c = ud;
    char from[24];

    if (rc != PHR_OK || PQntuples(res) != 1) {
        verify_fail(c, rc);
        return;
    }
    c->dropped = PQgetvalue(res, 0, 0)[0] == 't';
    int64_t head = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    if (c->to_seq > head) { /* later arrivals are the next verification's */
        c->to_seq = head;
        snprintf(c->to_buf, sizeof(c->to_buf), "%" PRId64, head);
    }
    snprintf(from, sizeof(from), "%" PRId64, c->from_seq);
    const char *p[1] = {from};
    if ((rc = db_query(svc_db(c->svc), chain_sql_prev, 1, p, verify_prev_cb, c)) != PHR_OK) {
        verify_fail(c, rc);
    }
}

/* ?name=<integer >= 1>; 1 ok (|*out| set when present), 0 answered 400. */
static int
verify_param(h2s_req_t *req, const char *name, int64_t *out)
{
    const char *q = h2s_req_query(req);
    size_t nlen = strlen(name);

    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        if (len > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            char num[24], *end = NULL;
            size_t vlen = len - nlen - 1;
            jx_errors_t errs = {0};
            if (vlen == 0 || vlen >= sizeof(num)) {
                goto bad;
            }
            memcpy(num, q + nlen + 1, vlen);
            num[vlen] = '\0';
            errno = 0;
            long long v = strtoll(num, &end, 10);
            if (errno != 0 || *end != '\0' || num[0] == '+' || num[0] == '-' || v < 1) {
                goto bad;
            }
            *out = v;
            goto next;
        bad:
            jx_error_add(&errs, name, "must be an integer >= 1");
            h2s_respond_problem(req, 400, "invalid_request", "bad query parameter", &errs);
            return 0;
        }
    next:
        q += len;
        if (*q == '&') {
            q++;
        }
    }
    return 1;
}

static void
verify_route(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    int64_t from = 1, to = INT64_MAX;

    if (strcmp(sess->kind, "operator") != 0) {
        svc_respond_error(req, PHR_EDENIED, "operators only");
        return;
    }
    if (!verify_param(req, "from_seq", &from) || !verify_param(req, "to_seq", &to)) {
        return;
    }
    if (to < from) {
        jx_errors_t errs = {0};
        jx_error_add(&errs, "to_seq", "must not be below from_seq");
        h2s_respond_problem(req, 400, "invalid_request", "bad query parameter", &errs);
        return;
    }
    verify_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL || h2s_req_add_cleanup(req, verify_ctx_free, c) != PHR_OK) {
        free(c);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    c->svc = svc;
    c->req = req;
    c->from_seq = from;
    c->to_seq = to;
    snprintf(c->to_buf, sizeof(c->to_buf), "%" PRId64, to);
    int rc = db_query(svc_db(svc), chain_sql_dropped, 0, NULL, verify_dropped_cb, c);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

static const svc_route_t verify_routes[] = {
    {"GET", "/api/v1/admin/audit/verify", verify_route, SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t audit_verify_routes = SVC_ROUTES(verify_routes);
