/*
 * sessions.c - logout, listing and revocation of the caller's sessions, and of
 * every session of several accounts (a suspended organization's staff).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "timeutil.h"

/* The revocation happened: answer 204, or 200 {revoked} when ctx->num holds a count. */
static void
auth_sessions_audited(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        /* The sessions are gone either way; the missing event is an operator's concern. */
        log_error("audit event of a session revocation not recorded: %s", phr_err_str(rc));
    } else {
        auth_outbox_kick(ctx->svc);
    }
    if (ctx->num[0] == '\0') {
        h2s_respond(ctx->req, 204, NULL, NULL, 0);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "revoked", json_object_new_int64(strtol(ctx->num, NULL, 10)));
    h2s_respond_json(ctx->req, 200, o);
}

/* Writes audit event |action| (the caller acting on its own sessions) through the outbox. */
static void
auth_sessions_audit(auth_ctx_t *ctx, const char *action, const char *reason)
{
    char event_id[37];
    char *json = auth_audit_json(ctx, action, ctx->sess.account_id, ctx->sess.kind,
                                 ctx->sess.account_id, "success", reason, event_id);

    auth_tx_outbox(ctx, "audit", event_id, json);
    auth_tx_run(ctx, auth_sessions_audited);
}

static void
auth_logout_done(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    auth_sessions_audit(ctx, "auth.logout", NULL);
}

void
auth_logout(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);

    if (ctx == NULL) {
        return;
    }
    int rc = sess_revoke(svc_kv(svc), sess->account_id, sess->token_hash, 1, auth_logout_done, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static int
auth_sess_newest_first(const void *a, const void *b)
{
    const sess_t *x = a, *y = b;
    return x->created_ms < y->created_ms ? 1 : x->created_ms > y->created_ms ? -1 : 0;
}

static void
auth_sessions_listed(int rc, const sess_t *items, size_t n, void *ud)
{
    auth_ctx_t *ctx = ud;
    char t1[TU_JST_LEN], t2[TU_JST_LEN], t3[TU_JST_LEN];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    sess_t *sorted = n ? malloc(n * sizeof(*sorted)) : NULL;
    if (n && sorted == NULL) {
        svc_respond_error(ctx->req, PHR_ENOMEM, NULL);
        return;
    }
    if (n) {
        memcpy(sorted, items, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), auth_sess_newest_first);
    }
    json_object *o = json_object_new_object();
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        const sess_t *s = &sorted[i];
        int current = strcmp(s->token_hash, ctx->sess.token_hash) == 0;
        json_object *it = json_object_new_object();
        tu_format_jst(s->created_ms, t1, sizeof(t1));
        tu_format_jst(current ? ctx->sess.idle_expires_ms : s->idle_expires_ms, t2, sizeof(t2));
        tu_format_jst(s->absolute_expires_ms, t3, sizeof(t3));
        json_object_object_add(it, "id", json_object_new_string(s->session_id));
        json_object_object_add(it, "created_at", json_object_new_string(t1));
        json_object_object_add(it, "idle_expires_at", json_object_new_string(t2));
        json_object_object_add(it, "expires_at", json_object_new_string(t3));
        json_object_object_add(it, "current", json_object_new_boolean(current));
        json_object_array_add(arr, it);
    }
    free(sorted);
    json_object_object_add(o, "items", arr);
    json_object_object_add(o, "next_cursor", NULL);
    h2s_respond_json(ctx->req, 200, o);
}

void
auth_sessions_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);
    if (ctx == NULL) {
        return;
    }
    int rc = sess_list(svc_kv(svc), sess->account_id, auth_sessions_listed, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static void
auth_session_deleted(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
    } else if (count == 0) {
        svc_respond_error(ctx->req, PHR_ENOTFOUND, "no such session");
    } else {
        auth_sessions_audit(ctx, "auth.session.revoke", NULL);
    }
}

static void
auth_session_found(int rc, const sess_t *items, size_t n, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].session_id, ctx->id2) == 0) {
            memcpy(ctx->token_hash, items[i].token_hash, sizeof(ctx->token_hash));
            rc = sess_revoke(svc_kv(ctx->svc), ctx->sess.account_id, ctx->token_hash, 1,
                             auth_session_deleted, ctx);
            if (rc != PHR_OK) {
                svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
            }
            return;
        }
    }
    svc_respond_error(ctx->req, PHR_ENOTFOUND, "no such session");
}

void
auth_session_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *id = h2s_req_param(req, "session_id");
    auth_ctx_t *ctx;

    if (id == NULL || strlen(id) != 36) {
        svc_respond_error(req, PHR_ENOTFOUND, "no such session");
        return;
    }
    if ((ctx = auth_ctx_new(svc, req, sess)) == NULL) {
        return;
    }
    memcpy(ctx->id2, id, sizeof(ctx->id2));
    int rc = sess_list(svc_kv(svc), sess->account_id, auth_session_found, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static void
auth_revoked_others(int rc, long count, void *ud)
{
    auth_ctx_t *ctx = ud;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    snprintf(ctx->num, sizeof(ctx->num), "%ld", count);
    auth_sessions_audit(ctx, "auth.session.revoke_others", NULL);
}

void
auth_sessions_revoke_others(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);

    if (ctx == NULL) {
        return;
    }
    int rc =
        sess_revoke(svc_kv(svc), sess->account_id, sess->token_hash, 0, auth_revoked_others, ctx);
    if (rc != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

/* ---- every session of several accounts ------------------------------------ */

typedef struct {
    svc_t *svc;
    char (*ids)[37];
    size_t n, next;
    long total;
    sess_count_cb cb;
    void *ud;
} auth_revoke_t;

static void
auth_revoke_finish(auth_revoke_t *r, int rc)
{
    sess_count_cb cb = r->cb;
    void *ud = r->ud;
    long total = r->total;

    free(r->ids);
    free(r);
    cb(rc, total, ud);
}

static void
auth_revoke_step(int rc, long count, void *arg)
{
    auth_revoke_t *r = arg;

    if (rc != PHR_OK) {
        auth_revoke_finish(r, rc);
        return;
    }
    r->total += count;
    if (r->next == r->n) {
        auth_revoke_finish(r, PHR_OK);
        return;
    }
    const char *id = r->ids[r->next++];
    rc = sess_revoke(svc_kv(r->svc), id, NULL, 0, auth_revoke_step, r);
    if (rc != PHR_OK) {
        auth_revoke_finish(r, rc);
    }
}

int
auth_revoke_accounts(svc_t *svc, const char (*ids)[37], size_t n, sess_count_cb cb, void *ud)
{
    if (n == 0) {
        cb(PHR_OK, 0, ud);
        return PHR_OK;
    }
    auth_revoke_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->ids = malloc(n * sizeof(*r->ids))) == NULL) {
        free(r);
        return PHR_ENOMEM;
    }
    memcpy(r->ids, ids, n * sizeof(*r->ids));
    r->svc = svc;
    r->n = n;
    r->cb = cb;
    r->ud = ud;
    auth_revoke_step(PHR_OK, 0, r);
    return PHR_OK;
}
