/*
 * webhook.c - provider status webhooks.
 *
 * POST /api/v1/webhooks/sendgrid: ECDSA P-256 / SHA-256 over timestamp + raw body, checked
 * with secret sendgrid_webhook.pub.pem; timestamps more than 10 minutes off are refused.
 * POST /api/v1/webhooks/twilio: X-Twilio-Signature = base64 HMAC-SHA1 (secret
 * twilio_auth_token) over the public callback URL (PHR_PUBLIC_BASE_URL + path, never the
 * Host header) followed by the sorted form parameters (key + value).
 *
 * A forged or stale request is 401 and changes nothing. Each event is applied in one
 * transaction, in order: it is recorded in notification_events (deduplicated by the
 * provider's event id) and moves the notification forward only: queued/sending -> sent ->
 * delivered | bounced | failed; a final state (delivered, bounced, failed, dead) never changes.
 * Each change is audited (notification.delivery.<status>, ids only) through the outbox.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev.h"
#include "err.h"
#include "hex.h"
#include "jsonx.h"
#include "log.h"
#include "notify.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

#define WH_MAX_SKEW_S 600
#define WH_MAX_EVENTS 1000
#define WH_SIG_MAX 256
#define WH_MAX_PARAMS 64

/* One status change to apply. */
typedef struct {
    char nid[37];       /* our notification id, "" when unknown */
    char msg_id[64];    /* provider message id, "" when unknown */
    char status[16];    /* DeliveryStatus */
    char event_id[128]; /* "sg:<sg_event_id>" / "tw:<MessageSid>:<MessageStatus>" */
    char detail[160];
} wh_event_t;

typedef struct {
    svc_t *svc;
    h2s_req_t *req;
    db_txn_t *txn;
    int rc;
    wh_event_t *ev;
    size_t n;
    size_t i;       /* next event to apply */
    size_t audited; /* status changes audited (outbox rows) */
} wh_ctx_t;

static EVP_PKEY *wh_sg_key; /* loaded on first use; the event loop is single-threaded */

static void
wh_ctx_free(void *arg)
{
    wh_ctx_t *c = arg;

    free(c->ev);
    free(c);
}

static wh_ctx_t *
wh_ctx_new(svc_t *svc, h2s_req_t *req)
{
    wh_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL || h2s_req_add_cleanup(req, wh_ctx_free, c) != PHR_OK) {
        free(c);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    c->svc = svc;
    c->req = req;
    return c;
}

static int
wh_unauthorized(h2s_req_t *req, const char *detail)
{
    return h2s_respond_problem(req, 401, "invalid_signature", detail, NULL);
}

static int
wh_field_error(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    return h2s_respond_problem(req, 400, "validation_failed", "the request has invalid fields",
                               &errs);
}

static void
wh_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

/* Decodes standard base64 |in| into |out|; the decoded length, or -1. */
static int
wh_b64_decode(const char *in, unsigned char *out, size_t cap)
{
    size_t len = strlen(in);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap) {
        return -1;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0) {
        return -1;
    }
    if (in[len - 1] == '=') {
        n--;
    }
    if (in[len - 2] == '=') {
        n--;
    }
    return n;
}

/* ---- applying events ------------------------------------------------------------------ */

/*
 * One event: recorded once (provider_event_id UNIQUE) and, when new, moves the notification
 * forward. $1 our id or NULL, $2 provider message id or NULL, $3 status, $4 event id,
 * $5 detail.
 */
static const char wh_apply_sql[] =
    "WITH n AS (SELECT id FROM notifications WHERE CASE WHEN $1::uuid IS NOT NULL "
    "THEN id = $1::uuid ELSE provider_message_id = $2 END LIMIT 1 FOR UPDATE), "
    "ev AS (INSERT INTO notification_events (notification_id, status, detail, provider_event_id) "
    "SELECT id, $3, $5, $4 FROM n ON CONFLICT (provider_event_id) DO NOTHING "
    "RETURNING notification_id) "
    "UPDATE notifications t SET status = $3, updated_at = now() FROM ev "
    "WHERE t.id = ev.notification_id AND t.status NOT IN ('delivered', 'bounced', 'failed', "
    "'dead') AND ($3 <> 'sent' OR t.status IN ('queued', 'sending')) "
    "RETURNING t.id, t.kind, t.channel, coalesce(t.provider, '')";

static void
wh_stmt_done(int rc, PGresult *res, void *ud)
{
    wh_ctx_t *c = ud;

    (void)res;
    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
}

static void
wh_end_done(int rc, PGresult *res, void *ud)
{
    wh_ctx_t *c = ud;

    (void)res;
    c->txn = NULL;
    if (rc != PHR_OK && c->rc == PHR_OK) {
        c->rc = rc;
    }
    if (c->rc != PHR_OK) {
        log_warn("webhook: applying %zu events failed: %s", c->n, phr_err_str(c->rc));
        svc_respond_error(c->req, c->rc == PHR_ECONFLICT ? PHR_EUNAVAIL : c->rc, NULL);
        return;
    }
    if (c->audited > 0) {
        outbox_kick(svc_outbox(c->svc));
    }
    h2s_respond(c->req, 204, NULL, NULL, 0);
}

static void wh_next(wh_ctx_t *c);

static void
wh_audited(int rc, PGresult *res, void *ud)
{
    wh_ctx_t *c = ud;

    wh_stmt_done(rc, res, ud);
    wh_next(c);
}

/* One event applied: a status that changed is audited (ids only), then the next event. */
static void
wh_applied(int rc, PGresult *res, void *ud)
{
    wh_ctx_t *c = ud;
    char action[64], event_id[AEV_ID_LEN];
    aev_t ev;

    wh_stmt_done(rc, res, ud);
    if (c->rc != PHR_OK || PQntuples(res) != 1) {
        wh_next(c);
        return;
    }
    const wh_event_t *e = &c->ev[c->i - 1];
    snprintf(action, sizeof(action), "notification.delivery.%s", e->status);
    aev_init(&ev, "notification", action, NULL, NULL);
    ev.target_type = "notification";
    ev.target_id = PQgetvalue(res, 0, 0);
    if (strcmp(e->status, "sent") != 0 && strcmp(e->status, "delivered") != 0) {
        ev.result = "failure";
        ev.reason = e->status;
    }
    ev.details = json_object_new_object();
    json_object_object_add(ev.details, "kind", json_object_new_string(PQgetvalue(res, 0, 1)));
    json_object_object_add(ev.details, "channel", json_object_new_string(PQgetvalue(res, 0, 2)));
    json_object_object_add(ev.details, "provider", json_object_new_string(PQgetvalue(res, 0, 3)));
    char *json = aev_json(&ev, event_id);
    if (json == NULL) {
        c->rc = PHR_ENOMEM;
        wh_next(c);
        return;
    }
    int orc = outbox_add(c->txn, "audit", event_id, json, wh_audited, c);
    free(json);
    c->audited++;
    if (orc != PHR_OK) {
        c->rc = orc;
        wh_next(c);
    }
}

/* Applies the next event in the transaction, or ends it. */
static void
wh_next(wh_ctx_t *c)
{
    if (c->rc == PHR_OK && c->i < c->n) {
        const wh_event_t *e = &c->ev[c->i++];
        const char *p[] = {e->nid[0] ? e->nid : NULL, e->msg_id[0] ? e->msg_id : NULL, e->status,
                           e->event_id, e->detail[0] ? e->detail : NULL};
        int qrc = db_txn_query(c->txn, wh_apply_sql, 5, p, wh_applied, c);
        if (qrc == PHR_OK) {
            return;
        }
        c->rc = qrc;
    }
    db_txn_t *txn = c->txn;
    int erc = db_txn_end(txn, c->rc == PHR_OK, wh_end_done, c);
    if (erc != PHR_OK) {
        c->txn = NULL;
        svc_respond_error(c->req, erc, NULL);
    }
}

static void
wh_begun(int rc, db_txn_t *txn, void *ud)
{
    wh_ctx_t *c = ud;

    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
        return;
    }
    c->txn = txn;
    wh_next(c);
}

static void
wh_apply(wh_ctx_t *c)
{
    if (c->n == 0) {
        h2s_respond(c->req, 204, NULL, NULL, 0);
        return;
    }
    int rc = db_txn_begin(svc_db(c->svc), wh_begun, c);
    if (rc != PHR_OK) {
        svc_respond_error(c->req, rc, NULL);
    }
}

/* ---- SendGrid --------------------------------------------------------------------------- */

static EVP_PKEY *
wh_sendgrid_key(svc_t *svc)
{
    char pem[1024];

    if (wh_sg_key != NULL) {
        return wh_sg_key;
    }
    if (cfg_read_secret(svc_cfg(svc), "sendgrid_webhook.pub.pem", pem, sizeof(pem)) != PHR_OK) {
        log_error("webhook: secret sendgrid_webhook.pub.pem unreadable");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio != NULL) {
        wh_sg_key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (wh_sg_key == NULL || EVP_PKEY_get_base_id(wh_sg_key) != EVP_PKEY_EC) {
        log_error("webhook: sendgrid_webhook.pub.pem is not an EC public key");
        EVP_PKEY_free(wh_sg_key);
        wh_sg_key = NULL;
    }
    return wh_sg_key;
}

/* 1 when |sig_b64| is |key|'s ECDSA-SHA256 signature of |ts| followed by |body|. */
static int
wh_ecdsa_ok(EVP_PKEY *key, const char *sig_b64, const char *ts, const char *body, size_t len)
{
    unsigned char sig[WH_SIG_MAX];
    int ok = 0;

    int slen = wh_b64_decode(sig_b64, sig, sizeof(sig));
    if (slen <= 0) {
        return 0;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestVerifyUpdate(md, ts, strlen(ts)) == 1 &&
        EVP_DigestVerifyUpdate(md, body, len) == 1) {
        ok = EVP_DigestVerifyFinal(md, sig, (size_t)slen) == 1;
    }
    EVP_MD_CTX_free(md);
    return ok;
}

/* DeliveryStatus of a SendGrid event, or NULL when it changes nothing. */
static const char *
wh_sendgrid_status(const char *event)
{
    if (strcmp(event, "delivered") == 0) {
        return "delivered";
    }
    if (strcmp(event, "bounce") == 0) {
        return "bounced";
    }
    if (strcmp(event, "dropped") == 0) {
        return "failed";
    }
    return NULL; /* processed, deferred, open, click, ... */
}

static void
wh_sendgrid(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *sig = h2s_req_header(req, "x-twilio-email-event-webhook-signature");
    const char *ts = h2s_req_header(req, "x-twilio-email-event-webhook-timestamp");
    const char *ctype = h2s_req_header(req, "content-type");
    size_t len;
    const char *body = h2s_req_body(req, &len);
    json_object *arr = NULL;
    jx_errors_t errs = {.n = 0};

    (void)sess;
    wh_ctx_t *c = wh_ctx_new(svc, req);
    if (c == NULL) {
        return;
    }
    if (sig == NULL || ts == NULL || strlen(sig) > WH_SIG_MAX || ts[0] == '\0' || strlen(ts) > 12 ||
        strspn(ts, "0123456789") != strlen(ts)) {
        wh_unauthorized(req, "missing or malformed signature headers");
        return;
    }
    int64_t t = strtoll(ts, NULL, 10);
    int64_t now = tu_now_ms() / 1000;
    if (t < now - WH_MAX_SKEW_S || t > now + WH_MAX_SKEW_S) {
        wh_unauthorized(req, "stale signature timestamp");
        return;
    }
    EVP_PKEY *key = wh_sendgrid_key(svc);
    if (key == NULL) {
        svc_respond_error(req, PHR_EUNAVAIL, "webhook key unavailable");
        return;
    }
    if (!wh_ecdsa_ok(key, sig, ts, body != NULL ? body : "", body != NULL ? len : 0)) {
        log_warn("webhook: sendgrid signature refused");
        wh_unauthorized(req, "signature does not verify");
        return;
    }
    if (ctype == NULL || strncmp(ctype, "application/json", 16) != 0) {
        h2s_respond_problem(req, 415, "unsupported_media_type", "send application/json", NULL);
        return;
    }
    if (jx_parse(body != NULL ? body : "", body != NULL ? len : 0, 8, &arr, &errs) != PHR_OK) {
        h2s_respond_problem(req, 400, "validation_failed", "the body is not JSON", &errs);
        return;
    }
    if (!json_object_is_type(arr, json_type_array) ||
        json_object_array_length(arr) > WH_MAX_EVENTS) {
        json_object_put(arr);
        wh_field_error(req, "", "an array of at most 1000 events");
        return;
    }
    size_t n = json_object_array_length(arr);
    c->ev = calloc(n + 1, sizeof(*c->ev));
    if (c->ev == NULL) {
        json_object_put(arr);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        char field[32];
        const char *event = jx_get_str(e, "event", NULL);
        const char *eid = jx_get_str(e, "sg_event_id", NULL);
        if (!json_object_is_type(e, json_type_object) || event == NULL || eid == NULL ||
            eid[0] == '\0' || strlen(eid) > 100) {
            snprintf(field, sizeof(field), "[%zu]", i);
            json_object_put(arr);
            wh_field_error(req, field, "an event needs event and sg_event_id strings");
            return;
        }
        const char *status = wh_sendgrid_status(event);
        if (status == NULL) {
            continue;
        }
        wh_event_t *w = &c->ev[c->n];
        const char *nid = jx_get_str(e, "notification_id", "");
        if (strlen(nid) == 36 && uuid_valid(nid)) {
            wh_copy(w->nid, sizeof(w->nid), nid);
        }
        const char *mid = jx_get_str(e, "sg_message_id", "");
        size_t mlen = strcspn(mid, ".");
        if (mlen < sizeof(w->msg_id)) {
            memcpy(w->msg_id, mid, mlen);
            w->msg_id[mlen] = '\0';
        }
        if (w->nid[0] == '\0' && w->msg_id[0] == '\0') {
            continue; /* not one of ours */
        }
        wh_copy(w->status, sizeof(w->status), status);
        snprintf(w->event_id, sizeof(w->event_id), "sg:%s", eid);
        snprintf(w->detail, sizeof(w->detail), "sendgrid %s", event);
        c->n++;
    }
    json_object_put(arr);
    wh_apply(c);
}

/* ---- Twilio ----------------------------------------------------------------------------- */

typedef struct {
    char *key;
    char *val;
} wh_param_t;


/* Form-decodes |in| (|len| bytes) into a new string; NULL on bad escapes. */
static char *
wh_form_decode(const char *in, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '+') {
            out[o++] = ' ';
        } else if (in[i] == '%') {
            int hi = i + 2 < len ? hex_val((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_val((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    if (strlen(out) != o) { /* an encoded NUL */
        free(out);
        return NULL;
    }
    return out;
}

static int
wh_param_cmp(const void *a, const void *b)
{
    const wh_param_t *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    return r != 0 ? r : strcmp(x->val, y->val);
}

static void
wh_params_free(wh_param_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        free(p[i].val);
    }
}

/* Parses a form body into |p| (sorted). The count, or -1 when malformed / too many. */
static int
wh_form_parse(const char *body, size_t len, wh_param_t *p, size_t cap)
{
    size_t n = 0, i = 0;

    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&') {
            end++;
        }
        if (end > i) {
            const char *eq = memchr(body + i, '=', end - i);
            size_t klen = eq != NULL ? (size_t)(eq - (body + i)) : end - i;
            if (n == cap) {
                wh_params_free(p, n);
                return -1;
            }
            p[n].key = wh_form_decode(body + i, klen);
            p[n].val = eq != NULL ? wh_form_decode(eq + 1, (size_t)(body + end - eq - 1))
                                  : wh_form_decode("", 0);
            n++;
            if (p[n - 1].key == NULL || p[n - 1].val == NULL) {
                wh_params_free(p, n);
                return -1;
            }
        }
        i = end + 1;
    }
    qsort(p, n, sizeof(*p), wh_param_cmp);
    return (int)n;
}

static const char *
wh_param(const wh_param_t *p, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].key, key) == 0) {
            return p[i].val;
        }
    }
    return NULL;
}

/* 1 when |sig_b64| is the Twilio signature of |url| and the sorted |p|; -1 without a key. */
static int
wh_twilio_sig_ok(svc_t *svc, const char *url, const wh_param_t *p, size_t n, const char *sig_b64)
{
    char token[256];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned char want[32];
    unsigned int maclen = 0;
    size_t total = strlen(url), off;
    int ok = 0;

    if (cfg_read_secret(svc_cfg(svc), "twilio_auth_token", token, sizeof(token)) != PHR_OK) {
        log_error("webhook: secret twilio_auth_token unreadable");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        total += strlen(p[i].key) + strlen(p[i].val);
    }
    char *data = malloc(total + 1);
    int wlen = wh_b64_decode(sig_b64, want, sizeof(want));
    if (data != NULL && wlen == 20) {
        off = strlen(url);
        memcpy(data, url, off);
        for (size_t i = 0; i < n; i++) {
            size_t kl = strlen(p[i].key), vl = strlen(p[i].val);
            memcpy(data + off, p[i].key, kl);
            memcpy(data + off + kl, p[i].val, vl);
            off += kl + vl;
        }
        ok = HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)data, off, mac,
                  &maclen) != NULL &&
             maclen == 20 && CRYPTO_memcmp(mac, want, 20) == 0;
    }
    free(data);
    OPENSSL_cleanse(token, sizeof(token));
    return ok;
}

/* DeliveryStatus of a Twilio MessageStatus, or NULL when it changes nothing. */
static const char *
wh_twilio_status(const char *st)
{
    static const char *const map[][2] = {
        {"sent", "sent"},           {"delivered", "delivered"}, {"read", "delivered"},
        {"undelivered", "bounced"}, {"failed", "failed"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(st, map[i][0]) == 0) {
            return map[i][1];
        }
    }
    return NULL; /* accepted, queued, sending, canceled, ... */
}

static void
wh_twilio(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    const char *sig = h2s_req_header(req, "x-twilio-signature");
    const char *ctype = h2s_req_header(req, "content-type");
    const char *query = h2s_req_query(req);
    size_t len;
    const char *body = h2s_req_body(req, &len);
    wh_param_t p[WH_MAX_PARAMS];
    char url[1024];

    (void)sess;
    wh_ctx_t *c = wh_ctx_new(svc, req);
    if (c == NULL) {
        return;
    }
    if (sig == NULL || sig[0] == '\0' || strlen(sig) > 64) {
        wh_unauthorized(req, "missing X-Twilio-Signature");
        return;
    }
    if (ctype == NULL || strncmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        h2s_respond_problem(req, 415, "unsupported_media_type",
                            "send application/x-www-form-urlencoded", NULL);
        return;
    }
    int n = wh_form_parse(body != NULL ? body : "", body != NULL ? len : 0, p, WH_MAX_PARAMS);
    if (n < 0) {
        wh_field_error(req, "", "a form body of at most 64 well-encoded parameters");
        return;
    }
    snprintf(url, sizeof(url), "%s%s%s%s", svc_cfg(svc)->public_base_url, h2s_req_path(req),
             query[0] ? "?" : "", query);
    int ok = wh_twilio_sig_ok(svc, url, p, (size_t)n, sig);
    if (ok <= 0) {
        wh_params_free(p, (size_t)n);
        if (ok < 0) {
            svc_respond_error(req, PHR_EUNAVAIL, "webhook key unavailable");
        } else {
            log_warn("webhook: twilio signature refused");
            wh_unauthorized(req, "signature does not verify");
        }
        return;
    }
    const char *sid = wh_param(p, (size_t)n, "MessageSid");
    const char *st = wh_param(p, (size_t)n, "MessageStatus");
    const char *missing = sid == NULL || sid[0] == '\0' || strlen(sid) > 40 ? "MessageSid"
                          : st == NULL || st[0] == '\0' || strlen(st) > 20  ? "MessageStatus"
                                                                            : NULL;
    if (missing != NULL) {
        wh_params_free(p, (size_t)n);
        wh_field_error(req, missing, "required");
        return;
    }
    const char *status = wh_twilio_status(st);
    c->ev = calloc(1, sizeof(*c->ev));
    if (c->ev == NULL) {
        wh_params_free(p, (size_t)n);
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    if (status != NULL) {
        wh_event_t *w = &c->ev[0];
        const char *err = wh_param(p, (size_t)n, "ErrorCode");
        wh_copy(w->msg_id, sizeof(w->msg_id), sid);
        wh_copy(w->status, sizeof(w->status), status);
        snprintf(w->event_id, sizeof(w->event_id), "tw:%s:%s", sid, st);
        snprintf(w->detail, sizeof(w->detail), "twilio %.20s%s%.16s", st,
                 err != NULL ? " error " : "", err != NULL ? err : "");
        c->n = 1;
    }
    wh_params_free(p, (size_t)n);
    wh_apply(c);
}

static const svc_route_t table[] = {
    {"POST", "/api/v1/webhooks/sendgrid", wh_sendgrid, SVC_PUBLIC | SVC_NEEDS_DB, 4194304},
    {"POST", "/api/v1/webhooks/twilio", wh_twilio, SVC_PUBLIC | SVC_NEEDS_DB, 65536},
};

const svc_routes_t notif_webhook_routes = SVC_ROUTES(table);
