/*
 * mfa.c - TOTP enrolment, confirmation and removal, recovery codes, and the
 * second step of a login (see mfa.h).
 *
 * Tables (migration 007): mfa_totp (secret sealed with AES-256-GCM under the
 * secrets-dir key data_key_<key_id>, the account id as AAD; last_step is the
 * last accepted time step, so a code is accepted once) and mfa_recovery_codes
 * (SHA-256 of the normalised code). Redis: "phr:mfa:login:<sha256(token)>" a
 * hash {account, tries} living AUTH_MFA_TOKEN_TTL_S seconds.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "mfa.h"
#include "timeutil.h"
#include "uuid.h"

#define MFA_KEY_ID "v1"
#define MFA_NONCE 12
#define MFA_TAG 16
#define MFA_BLOB (MFA_NONCE + AUTH_MFA_SECRET_BYTES + MFA_TAG)
#define MFA_NCODES 10
#define MFA_CODE_BYTES 10 /* 80 bits: 16 base32 characters */
#define MFA_CODE_LEN 19   /* XXXX-XXXX-XXXX-XXXX */
#define MFA_PHONE_MAX 16  /* '+' and up to 15 digits: sealed NUL-padded to this length */
#define MFA_SMS_TTL_S 300
#define MFA_SMS_MAX_TRIES 5
#define MFA_SMS_RATE_MAX 3 /* codes per phone per window */
#define MFA_SMS_RATE_S "600"

/* What the auth context has no room for; freed (wiped) with the request. */
typedef struct {
    auth_ctx_t *ctx;
    unsigned char secret[AUTH_MFA_SECRET_BYTES];
    char blob[MFA_BLOB * 2 + 1];
    char key_id[8];
    char code[8];
    char recovery_hash[SESS_HASH_LEN + 1];
    int use_recovery;
    int64_t last_step;
    int64_t step;
    char step_txt[24];
    char codes[MFA_NCODES][MFA_CODE_LEN + 1];
    char hashes[MFA_NCODES * (SESS_HASH_LEN + 1) + 4];
    char mfa_token[SESS_TOKEN_LEN + 1];
    char kv_key[96];
    long long tries;
    int failed_logins, locked;
    const char *reason;
    /* SMS */
    const char *method; /* the factor a login code matched: "totp" or "sms" */
    int has_totp, has_sms;
    char phone[MFA_PHONE_MAX + 1];
    char code_hmac[SESS_HASH_LEN + 1];
    char expires[TU_JST_LEN];
    const char *purpose;
    /* clearing the enrolment gate of the account's sessions */
    auth_step_fn ungate_then;
    int ungate_pending;
    unsigned ungate_method; /* SESS_MFA_* just confirmed: added to live sessions */
    unsigned drop_method;   /* SESS_MFA_* just removed: taken off live sessions */
} mfa_ext_t;

/* One cached data key (the services read secrets once; keys rotate by id). */
static struct {
    char id[8];
    unsigned char key[32];
    int loaded;
} mfa_key_cache;

static void
mfa_ext_free(void *arg)
{
    explicit_bzero(arg, sizeof(mfa_ext_t));
    free(arg);
}

/* Creates the request's auth context and its MFA extension; NULL when it answered. */
static mfa_ext_t *
mfa_ext_for(auth_ctx_t *ctx)
{
    mfa_ext_t *m = calloc(1, sizeof(*m));

    if (m == NULL || h2s_req_add_cleanup(ctx->req, mfa_ext_free, m) != PHR_OK) {
        free(m);
        svc_respond_error(ctx->req, PHR_ENOMEM, NULL);
        return NULL;
    }
    m->ctx = ctx;
    h2s_req_set_data(ctx->req, m);
    return m;
}

static mfa_ext_t *
mfa_ext_new(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    auth_ctx_t *ctx = auth_ctx_new(svc, req, sess);
    if (ctx == NULL) {
        return NULL;
    }
    svc_client_ip(req, ctx->ip, sizeof(ctx->ip));
    return mfa_ext_for(ctx);
}

static mfa_ext_t *
mfa_ext_of(const auth_ctx_t *ctx)
{
    return h2s_req_data(ctx->req);
}

/* ---- RFC 4648 / 4226 / 6238 ---- */

size_t
auth_mfa_base32(const unsigned char *in, size_t len, char *out, size_t cap)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t need = (len * 8 + 4) / 5, o = 0;
    unsigned int acc = 0;
    int bits = 0;

    if (cap < need + 1) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) {
        out[o++] = alphabet[(acc << (5 - bits)) & 31];
    }
    out[o] = '\0';
    return o;
}

uint32_t
auth_mfa_totp(const unsigned char *key, size_t keylen, uint64_t step)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(step & 0xff);
        step >>= 8;
    }
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &maclen) == NULL || maclen < 20) {
        return UINT32_MAX; /* never equal to a 6-digit code */
    }
    unsigned int off = mac[maclen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    return bin % 1000000u;
}

/* 1 when |s| is exactly 6 ASCII digits. */
static int
mfa_code_valid(const char *s)
{
    return strlen(s) == 6 && strspn(s, "0123456789") == 6;
}

/*
 * Checks |code| against the steps now-1, now, now+1 that are newer than
 * |last_step|; the matching step into |*step|. 1 on a match.
 */
static int
mfa_totp_check(const unsigned char *secret, const char *code, int64_t last_step, int64_t *step)
{
    int64_t now = tu_now_ms() / 1000 / AUTH_MFA_STEP_S;
    int ok = 0;

    for (int64_t s = now - 1; s <= now + 1; s++) {
        char want[8];
        snprintf(want, sizeof(want), "%06u",
                 (unsigned)auth_mfa_totp(secret, AUTH_MFA_SECRET_BYTES, (uint64_t)s));
        /* every step is compared, so timing does not tell which one matched */
        if (CRYPTO_memcmp(want, code, 6) == 0 && s > last_step && !ok) {
            *step = s;
            ok = 1;
        }
    }
    return ok;
}

/* ---- the data key and the sealed secret ---- */

static int
mfa_hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != n * 2) {
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = (char)tolower((unsigned char)hex[2 * i + (size_t)j]);
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) {
                return PHR_EINVAL;
            }
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return PHR_OK;
}

static void
mfa_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The 32-byte key of |key_id| from the secrets file data_key_<key_id>. */
static int
mfa_data_key(svc_t *svc, const char *key_id, unsigned char *key)
{
    char name[32], hex[80];

    if (mfa_key_cache.loaded && strcmp(mfa_key_cache.id, key_id) == 0) {
        memcpy(key, mfa_key_cache.key, 32);
        return PHR_OK;
    }
    snprintf(name, sizeof(name), "data_key_%s", key_id);
    int rc = cfg_read_secret(svc_cfg(svc), name, hex, sizeof(hex));
    if (rc == PHR_OK) {
        rc = mfa_hex_decode(hex, key, 32);
    }
    explicit_bzero(hex, sizeof(hex));
    if (rc != PHR_OK) {
        log_error("mfa: secret %s: %s", name, phr_err_str(rc));
        return PHR_EGENERIC;
    }
    snprintf(mfa_key_cache.id, sizeof(mfa_key_cache.id), "%s", key_id);
    memcpy(mfa_key_cache.key, key, 32);
    mfa_key_cache.loaded = 1;
    return PHR_OK;
}

/*
 * Seals the |n| bytes (at most AUTH_MFA_SECRET_BYTES) of |in| for |account_id|
 * under the current key into |hex| (2 * (n + 28) + 1 bytes) and its key id into |key_id|.
 */
static int
mfa_seal_buf(svc_t *svc, const char *account_id, const unsigned char *in, size_t n, char *hex,
             char *key_id)
{
    unsigned char key[32], blob[MFA_BLOB];
    int len = 0, ok = 0;
    EVP_CIPHER_CTX *c = NULL;

    if (n > AUTH_MFA_SECRET_BYTES || mfa_data_key(svc, MFA_KEY_ID, key) != PHR_OK ||
        RAND_bytes(blob, MFA_NONCE) != 1 || (c = EVP_CIPHER_CTX_new()) == NULL) {
        goto out;
    }
    ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, blob) == 1 &&
         EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)account_id,
                           (int)strlen(account_id)) == 1 &&
         EVP_EncryptUpdate(c, blob + MFA_NONCE, &len, in, (int)n) == 1 && len == (int)n &&
         EVP_EncryptFinal_ex(c, blob + MFA_NONCE + len, &len) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, MFA_TAG, blob + MFA_NONCE + n) == 1;
    if (ok) {
        mfa_hex_encode(blob, MFA_NONCE + n + MFA_TAG, hex);
        snprintf(key_id, 8, "%s", MFA_KEY_ID);
    }
out:
    EVP_CIPHER_CTX_free(c);
    explicit_bzero(key, sizeof(key));
    return ok ? PHR_OK : PHR_EGENERIC;
}

/* Opens |hex| sealed for |account_id| under |key_id| into the |n| bytes of |out|. */
static int
mfa_open_buf(svc_t *svc, const char *account_id, const char *hex, const char *key_id,
             unsigned char *out, size_t n)
{
    unsigned char key[32], blob[MFA_BLOB];
    int len = 0, ok = 0;
    EVP_CIPHER_CTX *c = NULL;

    if (n > AUTH_MFA_SECRET_BYTES || mfa_hex_decode(hex, blob, MFA_NONCE + n + MFA_TAG) != PHR_OK ||
        mfa_data_key(svc, key_id, key) != PHR_OK || (c = EVP_CIPHER_CTX_new()) == NULL) {
        goto out;
    }
    ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, blob) == 1 &&
         EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)account_id,
                           (int)strlen(account_id)) == 1 &&
         EVP_DecryptUpdate(c, out, &len, blob + MFA_NONCE, (int)n) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, MFA_TAG, blob + MFA_NONCE + n) == 1 &&
         EVP_DecryptFinal_ex(c, out + len, &len) == 1;
out:
    EVP_CIPHER_CTX_free(c);
    explicit_bzero(key, sizeof(key));
    if (!ok) {
        log_error("mfa: a sealed factor of an account cannot be opened (key %s)", key_id);
    }
    return ok ? PHR_OK : PHR_EGENERIC;
}

int
mfa_phone_open(svc_t *svc, const char *account_id, const char *hex, const char *key_id, char *out,
               size_t cap)
{
    unsigned char pbuf[MFA_PHONE_MAX];

    if (cap < MFA_PHONE_MAX + 1 ||
        mfa_open_buf(svc, account_id, hex, key_id, pbuf, sizeof(pbuf)) != PHR_OK) {
        return PHR_EGENERIC;
    }
    memcpy(out, pbuf, sizeof(pbuf));
    out[MFA_PHONE_MAX] = '\0';
    explicit_bzero(pbuf, sizeof(pbuf));
    return PHR_OK;
}

/* Seals m->secret for |account_id| into m->blob (hex) under the current key. */
static int
mfa_seal(svc_t *svc, mfa_ext_t *m, const char *account_id)
{
    return mfa_seal_buf(svc, account_id, m->secret, AUTH_MFA_SECRET_BYTES, m->blob, m->key_id);
}

/* Opens |hex| sealed for |account_id| under |key_id| into m->secret. */
static int
mfa_open(svc_t *svc, mfa_ext_t *m, const char *account_id, const char *hex, const char *key_id)
{
    return mfa_open_buf(svc, account_id, hex, key_id, m->secret, AUTH_MFA_SECRET_BYTES);
}

/* ---- recovery codes ---- */

/* Upper-cases |in| without '-' into |out| (17 bytes); 1 when it is 16 base32 characters. */
static int
mfa_recovery_normalise(const char *in, char *out)
{
    size_t n = 0;

    for (; *in != '\0'; in++) {
        char c = (char)toupper((unsigned char)*in);
        if (c == '-') {
            continue;
        }
        if (n >= 16 || !((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'))) {
            return 0;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return n == 16;
}

/* Ten new codes into m->codes and the array literal of their hashes into m->hashes. */
static int
mfa_recovery_new(mfa_ext_t *m)
{
    size_t o = 0;

    m->hashes[o++] = '{';
    for (int i = 0; i < MFA_NCODES; i++) {
        unsigned char raw[MFA_CODE_BYTES];
        char b32[20], norm[17], hash[SESS_HASH_LEN + 1];
        if (RAND_bytes(raw, sizeof(raw)) != 1 ||
            auth_mfa_base32(raw, sizeof(raw), b32, sizeof(b32)) != 16) {
            return PHR_EGENERIC;
        }
        snprintf(m->codes[i], sizeof(m->codes[i]), "%.4s-%.4s-%.4s-%.4s", b32, b32 + 4, b32 + 8,
                 b32 + 12);
        if (!mfa_recovery_normalise(m->codes[i], norm)) {
            return PHR_EGENERIC;
        }
        auth_sha256_hex(norm, hash);
        o += (size_t)snprintf(m->hashes + o, sizeof(m->hashes) - o, "%s%s", i ? "," : "", hash);
        explicit_bzero(raw, sizeof(raw));
        explicit_bzero(b32, sizeof(b32));
    }
    snprintf(m->hashes + o, sizeof(m->hashes) - o, "}");
    return PHR_OK;
}

/* ---- shared bits ---- */

/* Staff and operators only: 403 for patients. 1 when allowed. */
static int
mfa_allowed(h2s_req_t *req, const sess_t *sess)
{
    if (strcmp(sess->kind, "staff") == 0 || strcmp(sess->kind, "operator") == 0) {
        return 1;
    }
    h2s_respond_problem(req, 403, "forbidden", "second factors are for staff and operators", NULL);
    return 0;
}

static void
mfa_bad_field(h2s_req_t *req, const char *field, const char *msg)
{
    jx_errors_t errs = {.n = 0};
    jx_error_add(&errs, field, "%s", msg);
    h2s_respond_problem(req, 400, "validation_failed", "the request body is not valid", &errs);
}

/* Queues the audit event and the mfa_changed e-mail of an enrolment or removal. */
static void
mfa_queue_change(auth_ctx_t *ctx, const char *action, const char *change, const char *method)
{
    char event_id[37], key[80];
    const char *params[] = {"name", ctx->name, "method", method, "change", change, NULL};
    char *audit = auth_audit_json(ctx, action, ctx->sess.account_id, ctx->sess.kind,
                                  ctx->sess.account_id, "success", method, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    snprintf(key, sizeof(key), "mfa:%s", event_id);
    auth_tx_outbox(ctx, "notification", key,
                   auth_notify_json("mfa_changed", ctx->sess.account_id, ctx->locale, params));
}

/* ---- POST /api/v1/auth/mfa/totp/enroll ---- */

static void
mfa_percent_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *in != '\0' && o + 4 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || strchr("-._~@", c) != NULL) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static void
mfa_enroll_stored(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    char b32[40], label[800], uri[1024];

    if (rc != PHR_OK) {
        svc_respond_error(m->ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(m->ctx->req, 409, "conflict",
                            "TOTP is already enrolled; remove it before enrolling again", NULL);
        return;
    }
    auth_mfa_base32(m->secret, sizeof(m->secret), b32, sizeof(b32));
    mfa_percent_encode(PQgetvalue(res, 0, 0), label, sizeof(label));
    snprintf(uri, sizeof(uri),
             "otpauth://totp/PHR:%s?secret=%s&issuer=PHR&algorithm=SHA1&digits=6&period=%d", label,
             b32, AUTH_MFA_STEP_S);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "secret", json_object_new_string(b32));
    json_object_object_add(o, "otpauth_uri", json_object_new_string(uri));
    h2s_req_add_header(m->ctx->req, "cache-control", "no-store");
    h2s_respond_json(m->ctx->req, 200, o);
    explicit_bzero(b32, sizeof(b32));
    explicit_bzero(uri, sizeof(uri));
}

static void
mfa_enroll(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    /* a pending enrolment is replaced; a confirmed one is left alone (no row returned) */
    static const char sql[] =
        "INSERT INTO mfa_totp (account_id, secret_enc, key_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (account_id) DO UPDATE SET secret_enc = EXCLUDED.secret_enc, "
        "key_id = EXCLUDED.key_id, last_step = 0, created_at = now() "
        "WHERE mfa_totp.confirmed_at IS NULL "
        "RETURNING (SELECT email FROM accounts WHERE id = $1)";

    if (!mfa_allowed(req, sess)) {
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, sess);
    if (m == NULL) {
        return;
    }
    if (RAND_bytes(m->secret, sizeof(m->secret)) != 1 ||
        mfa_seal(svc, m, sess->account_id) != PHR_OK) {
        svc_respond_error(req, PHR_EGENERIC, NULL);
        return;
    }
    const char *p[] = {sess->account_id, m->blob, m->key_id};
    int rc = db_query(svc_db(svc), sql, 3, p, mfa_enroll_stored, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- clearing the MFA enrolment gate once a factor is confirmed ---- */

static void
mfa_ungate_finish(mfa_ext_t *m)
{
    if (--m->ungate_pending == 0) {
        m->ungate_then(m->ctx, PHR_OK);
    }
}

static void
mfa_ungate_rewritten(int rc, void *ud)
{
    if (rc != PHR_OK && rc != PHR_ENOTFOUND) {
        log_warn("mfa: could not lift the enrolment gate of a session: %s", phr_err_str(rc));
    }
    mfa_ungate_finish(ud);
}

static void
mfa_ungate_listed(int rc, const sess_t *items, size_t n, void *ud)
{
    mfa_ext_t *m = ud;

    if (rc != PHR_OK) {
        log_warn("mfa: could not list sessions to lift the enrolment gate: %s", phr_err_str(rc));
    }
    m->ungate_pending = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned methods = (items[i].profile.mfa_methods | m->ungate_method) & ~m->drop_method;
        int lift = m->ungate_method != 0 && items[i].mfa_enrollment_required;
        if (!lift && methods == items[i].profile.mfa_methods) {
            continue;
        }
        sess_t s = items[i];
        if (lift) {
            s.mfa_enrollment_required = 0;
        }
        s.profile.mfa_methods = methods;
        if (sess_rewrite(svc_kv(m->ctx->svc), &s, mfa_ungate_rewritten, m) == PHR_OK) {
            m->ungate_pending++;
        }
    }
    mfa_ungate_finish(m);
}

/*
 * A factor was confirmed (ungate_method) or removed (drop_method): rewrites
 * the account's live sessions so their profile lists the factors as they now
 * are and, after a confirmation, no longer carry the require_mfa enrolment
 * gate (403 mfa_enrollment_required); then |then|(ctx, PHR_OK) so the
 * caller's next request already sees the change.
 */
static void
mfa_ungate(mfa_ext_t *m, auth_step_fn then)
{
    m->ungate_then = then;
    if (sess_list(svc_kv(m->ctx->svc), m->ctx->sess.account_id, mfa_ungate_listed, m) != PHR_OK) {
        log_warn("mfa: session store unavailable; the enrolment gate stays until the next login");
        then(m->ctx, PHR_OK);
    }
}

/* ---- POST /api/v1/auth/mfa/totp/confirm ---- */

static void
mfa_confirm_respond(auth_ctx_t *ctx, int rc)
{
    mfa_ext_t *m = mfa_ext_of(ctx);
    json_object *o = json_object_new_object();
    json_object *arr = json_object_new_array();
    for (int i = 0; i < MFA_NCODES; i++) {
        json_object_array_add(arr, json_object_new_string(m->codes[i]));
    }
    json_object_object_add(o, "recovery_codes", arr);
    h2s_req_add_header(ctx->req, "cache-control", "no-store");
    h2s_respond_json(ctx->req, 200, o);
}

static void
mfa_confirm_committed(auth_ctx_t *ctx, int rc)
{
    if (rc == PHR_EINVAL) { /* the guard: confirmed or replaced meanwhile */
        h2s_respond_problem(ctx->req, 409, "conflict", "the enrolment changed; enroll again", NULL);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    auth_outbox_kick(ctx->svc);
    mfa_ext_of(ctx)->ungate_method = SESS_MFA_TOTP;
    mfa_ungate(mfa_ext_of(ctx), mfa_confirm_respond);
}

static void
mfa_confirm_loaded(int rc, PGresult *res, void *ud)
{
    static const char guard[] =
        "WITH u AS (UPDATE mfa_totp SET confirmed_at = now(), last_step = $2::bigint "
        "WHERE account_id = $1 AND confirmed_at IS NULL AND secret_enc = $3 "
        "AND last_step < $2::bigint RETURNING 1) SELECT 1 / count(*)::int FROM u";
    static const char wipe[] = "DELETE FROM mfa_recovery_codes WHERE account_id = $1";
    static const char insert[] = "INSERT INTO mfa_recovery_codes (account_id, code_sha256) "
                                 "SELECT $1, unnest($2::text[])";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 401, "session_expired", "the account no longer exists", NULL);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 4));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 5));
    if (PQgetisnull(res, 0, 0)) {
        h2s_respond_problem(ctx->req, 409, "conflict", "no TOTP enrolment is pending", NULL);
        return;
    }
    if (PQgetvalue(res, 0, 2)[0] == 't') {
        h2s_respond_problem(ctx->req, 409, "conflict", "TOTP is already enrolled", NULL);
        return;
    }
    snprintf(m->blob, sizeof(m->blob), "%s", PQgetvalue(res, 0, 0));
    m->last_step = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    if (mfa_open(ctx->svc, m, ctx->sess.account_id, m->blob, PQgetvalue(res, 0, 1)) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    if (!mfa_totp_check(m->secret, m->code, m->last_step, &m->step)) {
        h2s_respond_problem(ctx->req, 422, "invalid_code", "the code is wrong or expired", NULL);
        return;
    }
    if (mfa_recovery_new(m) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    snprintf(m->step_txt, sizeof(m->step_txt), "%lld", (long long)m->step);
    const char *pg[] = {ctx->sess.account_id, m->step_txt, m->blob};
    const char *pw[] = {ctx->sess.account_id};
    const char *pi[] = {ctx->sess.account_id, m->hashes};
    auth_tx_sql(ctx, guard, 3, pg);
    auth_tx_sql(ctx, wipe, 1, pw);
    auth_tx_sql(ctx, insert, 2, pi);
    mfa_queue_change(ctx, "auth.mfa.enroll", "enrolled", "totp");
    auth_tx_run(ctx, mfa_confirm_committed);
}

static void
mfa_confirm(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"code", JX_STRING, 1, 0, -1, 1, 16, NULL},
    };
    static const char sql[] =
        "SELECT t.secret_enc, t.key_id, t.confirmed_at IS NOT NULL, t.last_step, a.name, a.locale "
        "FROM accounts a LEFT JOIN mfa_totp t ON t.account_id = a.id "
        "WHERE a.id = $1 AND a.status = 'active'";
    json_object *body;

    if (!mfa_allowed(req, sess) || svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    const char *code = jx_get_str(body, "code", "");
    if (!mfa_code_valid(code)) {
        json_object_put(body);
        mfa_bad_field(req, "code", "must be 6 digits");
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, sess);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    snprintf(m->code, sizeof(m->code), "%s", code);
    json_object_put(body);
    const char *p[] = {sess->account_id};
    int rc = db_query(svc_db(svc), sql, 1, p, mfa_confirm_loaded, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- DELETE /api/v1/auth/mfa/totp ---- */

static void
mfa_remove_denied(h2s_req_t *req)
{
    h2s_respond_problem(req, 422, "invalid_credentials", "the password or the code is wrong", NULL);
}

static void
mfa_remove_respond(auth_ctx_t *ctx, int rc)
{
    h2s_respond(ctx->req, 204, NULL, NULL, 0);
}

static void
mfa_remove_committed(auth_ctx_t *ctx, int rc)
{
    if (rc == PHR_EINVAL) { /* the guard: the step was used meanwhile (replay) */
        mfa_remove_denied(ctx->req);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    auth_outbox_kick(ctx->svc);
    mfa_ext_of(ctx)->drop_method = SESS_MFA_TOTP;
    mfa_ungate(mfa_ext_of(ctx), mfa_remove_respond);
}

static void
mfa_remove_verified(int rc, int needs_rehash, void *ud)
{
    static const char guard[] =
        "WITH d AS (DELETE FROM mfa_totp WHERE account_id = $1 AND confirmed_at IS NOT NULL "
        "AND last_step < $2::bigint RETURNING 1) SELECT 1 / count(*)::int FROM d";
    static const char wipe[] = "DELETE FROM mfa_recovery_codes WHERE account_id = $1";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc == PHR_EDENIED || rc == PHR_EINVAL) {
        mfa_remove_denied(ctx->req);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (!mfa_totp_check(m->secret, m->code, m->last_step, &m->step)) {
        mfa_remove_denied(ctx->req);
        return;
    }
    snprintf(m->step_txt, sizeof(m->step_txt), "%lld", (long long)m->step);
    const char *pg[] = {ctx->sess.account_id, m->step_txt};
    const char *pw[] = {ctx->sess.account_id};
    auth_tx_sql(ctx, guard, 2, pg);
    auth_tx_sql(ctx, wipe, 1, pw);
    mfa_queue_change(ctx, "auth.mfa.remove", "removed", "totp");
    auth_tx_run(ctx, mfa_remove_committed);
}

static void
mfa_remove_loaded(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 404, "not_found", "no TOTP is enrolled", NULL);
        return;
    }
    snprintf(ctx->hash, sizeof(ctx->hash), "%s", PQgetvalue(res, 0, 0));
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 1));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 2));
    m->last_step = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    if (mfa_open(ctx->svc, m, ctx->sess.account_id, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4)) !=
        PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    size_t npeppers;
    const pwhash_pepper_t *peppers = auth_peppers(ctx->svc, &npeppers);
    rc = pwhash_verify_async(svc_workq(ctx->svc), ctx->hash, ctx->password, peppers, npeppers,
                             ctx->req, mfa_remove_verified, m);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "password hashing is saturated; retry later");
    }
}

static void
mfa_remove(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"password", JX_STRING, 1, 0, -1, 1, 1024, NULL},
        {"code", JX_STRING, 1, 0, -1, 1, 16, NULL},
    };
    static const char sql[] =
        "SELECT a.password_hash, a.name, a.locale, t.secret_enc, t.key_id, t.last_step "
        "FROM accounts a JOIN mfa_totp t ON t.account_id = a.id AND t.confirmed_at IS NOT NULL "
        "WHERE a.id = $1 AND a.status = 'active'";
    json_object *body;

    if (!mfa_allowed(req, sess) || svc_read_json(req, fields, 2, &body) != PHR_OK) {
        return;
    }
    const char *code = jx_get_str(body, "code", "");
    if (!mfa_code_valid(code)) {
        json_object_put(body);
        mfa_bad_field(req, "code", "must be 6 digits");
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, sess);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    snprintf(m->code, sizeof(m->code), "%s", code);
    int rc = pw_normalize(jx_get_str(body, "password", ""), &m->ctx->password);
    json_object_put(body);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, "password: not valid UTF-8");
        return;
    }
    const char *p[] = {sess->account_id};
    rc = db_query(svc_db(svc), sql, 1, p, mfa_remove_loaded, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- SMS one-time codes ---- */

/*
 * Consumes one try of the live code of account $1 and purpose $2 (MFA_SMS_MAX_TRIES
 * tries, MFA_SMS_TTL_S seconds); the code is used when its HMAC is $3. A row
 * {matched, name, locale, has_totp} while the code was alive, else none.
 */
static const char mfa_sms_consume_sql[] =
    "UPDATE mfa_sms_codes SET tries = tries + 1, "
    "used_at = CASE WHEN code_hmac = $3 THEN now() END "
    "WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() "
    "AND tries < 5 RETURNING used_at IS NOT NULL, "
    "(SELECT name FROM accounts WHERE id = $1), (SELECT locale FROM accounts WHERE id = $1), "
    "EXISTS (SELECT 1 FROM mfa_totp WHERE account_id = $1 AND confirmed_at IS NOT NULL)";

/* KEYS: rate key. ARGV: window seconds. {codes in the window, seconds left}. */
static const char mfa_sms_rate_lua[] = "local n = redis.call('INCR', KEYS[1]) "
                                       "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
                                       "return {n, redis.call('TTL', KEYS[1])}";

/* 1 when |s| is E.164: '+', then 8 to 15 digits, the first not 0. */
static int
mfa_phone_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 9 && n <= MFA_PHONE_MAX && s[0] == '+' && s[1] >= '1' && s[1] <= '9' &&
           strspn(s + 1, "0123456789") == n - 1;
}

/* A uniform 6-digit code: draws past the last whole block of 10^6 are redrawn. */
static int
mfa_sms_code_new(char *out, size_t cap)
{
    uint32_t v;

    do {
        unsigned char b[4];
        if (RAND_bytes(b, sizeof(b)) != 1) {
            return PHR_EGENERIC;
        }
        v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
        explicit_bzero(b, sizeof(b));
    } while (v >= 4294000000u); /* 4294 * 10^6 <= 2^32 */
    snprintf(out, cap, "%06u", (unsigned)(v % 1000000u));
    return PHR_OK;
}

/* Hex HMAC-SHA256 under the data key of "purpose:account:code" into m->code_hmac. */
static int
mfa_sms_hmac(svc_t *svc, mfa_ext_t *m, const char *account_id)
{
    unsigned char key[32], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char msg[80];
    int n = snprintf(msg, sizeof(msg), "%s:%s:%s", m->purpose, account_id, m->code);
    int ok = n > 0 && (size_t)n < sizeof(msg) && mfa_data_key(svc, MFA_KEY_ID, key) == PHR_OK &&
             HMAC(EVP_sha256(), key, (int)sizeof(key), (const unsigned char *)msg, (size_t)n, mac,
                  &maclen) != NULL &&
             maclen == 32;

    if (ok) {
        mfa_hex_encode(mac, 32, m->code_hmac);
    }
    explicit_bzero(key, sizeof(key));
    explicit_bzero(msg, sizeof(msg));
    return ok ? PHR_OK : PHR_EGENERIC;
}

/* The notification request of an sms_code to |phone|; caller frees. */
static char *
mfa_sms_json(const char *phone, const char *locale, const char *code)
{
    json_object *o = json_object_new_object();
    json_object *to = json_object_new_object();
    json_object *p = json_object_new_object();

    json_object_object_add(to, "phone", json_object_new_string(phone));
    json_object_object_add(p, "code", json_object_new_string(code));
    json_object_object_add(o, "kind", json_object_new_string("sms_code"));
    json_object_object_add(o, "channel", json_object_new_string("sms"));
    json_object_object_add(o, "to", to);
    json_object_object_add(o, "locale", json_object_new_string(locale[0] ? locale : "ja"));
    json_object_object_add(o, "params", p);
    const char *txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    char *out = txt != NULL ? strdup(txt) : NULL;
    json_object_put(o);
    return out;
}

/* ---- login, step 1: the challenge ---- */

/* KEYS: token key. ARGV: account id, ttl. */
static const char mfa_challenge_lua[] =
    "redis.call('HSET', KEYS[1], 'account', ARGV[1], 'tries', '0') "
    "redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1";

/* KEYS: token key. ARGV: max tries. {account, tries} or nil when unknown/used up. */
static const char mfa_attempt_lua[] =
    "local a = redis.call('HGET', KEYS[1], 'account') "
    "if not a then return false end "
    "local n = redis.call('HINCRBY', KEYS[1], 'tries', 1) "
    "if n > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return false end "
    "return {a, n}";

static int
mfa_kv(kv_t *kv, kv_cb cb, void *ud, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc && i < 8; i++) {
        lens[i] = strlen(argv[i]);
    }
    return kv_command_argv(kv, cb, ud, argc, argv, lens);
}

static void
mfa_kv_ignore(int rc, redisReply *reply, void *ud)
{
    if (rc != PHR_OK) {
        log_warn("mfa: deleting a used mfa_token failed: %s", phr_err_str(rc));
    }
}

static void
mfa_token_key(const char *token, char *out, size_t cap)
{
    char hash[SESS_HASH_LEN + 1];
    auth_sha256_hex(token, hash);
    snprintf(out, cap, "phr:mfa:login:%s", hash);
}

/* 1 when |token| looks like an mfa_token (43 base64url characters). */
static int
mfa_token_valid(const char *token)
{
    return strlen(token) == SESS_TOKEN_LEN &&
           strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
               SESS_TOKEN_LEN;
}

static void
mfa_challenge_stored(int rc, redisReply *reply, void *ud)
{
    mfa_ext_t *m = ud;

    if (rc != PHR_OK || reply->type == REDIS_REPLY_ERROR) {
        svc_respond_error(m->ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    json_object *o = json_object_new_object();
    json_object *methods = json_object_new_array();
    if (m->has_totp) {
        json_object_array_add(methods, json_object_new_string("totp"));
    }
    if (m->has_sms) {
        json_object_array_add(methods, json_object_new_string("sms"));
    }
    json_object_object_add(o, "mfa_required", json_object_new_boolean(1));
    json_object_object_add(o, "mfa_token", json_object_new_string(m->mfa_token));
    json_object_object_add(o, "methods", methods);
    h2s_respond_json(m->ctx->req, 200, o);
}

static void
mfa_login_factors(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;
    char ttl[16];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the login could not be completed; retry later");
        return;
    }
    m->has_totp = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    m->has_sms = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
    ctx->org_requires_mfa = PQntuples(res) == 1 && PQgetvalue(res, 0, 2)[0] == 't';
    ctx->mfa_methods = (m->has_totp ? SESS_MFA_TOTP : 0) | (m->has_sms ? SESS_MFA_SMS : 0);
    if (!m->has_totp && !m->has_sms) {
        /* the org requires a second factor: a session that may only enrol one */
        ctx->mfa_enroll_required = PQntuples(res) == 1 && PQgetvalue(res, 0, 2)[0] == 't';
        auth_login_issue(ctx, "none");
        return;
    }
    if (sess_token_new(m->mfa_token) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    mfa_token_key(m->mfa_token, m->kv_key, sizeof(m->kv_key));
    snprintf(ttl, sizeof(ttl), "%d", AUTH_MFA_TOKEN_TTL_S);
    const char *argv[] = {"EVAL", mfa_challenge_lua, "1", m->kv_key, ctx->account_id, ttl};
    if (mfa_kv(svc_kv(ctx->svc), mfa_challenge_stored, m, 6, argv) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

void
auth_mfa_login(auth_ctx_t *ctx)
{
    /* a rehashed password is kept even though the session waits for the second factor */
    static const char sql[] =
        "WITH r AS (UPDATE accounts SET password_hash = $2 WHERE id = $1 AND $2::text IS NOT NULL "
        "RETURNING 1) SELECT "
        "EXISTS (SELECT 1 FROM mfa_totp WHERE account_id = $1 AND confirmed_at IS NOT NULL), "
        "EXISTS (SELECT 1 FROM mfa_sms WHERE account_id = $1 AND confirmed_at IS NOT NULL), "
        "EXISTS (SELECT 1 FROM accounts a JOIN organizations o ON o.id = a.org_id "
        "WHERE a.id = $1 AND a.kind = 'staff' AND o.require_mfa)";
    mfa_ext_t *m = mfa_ext_for(ctx);

    if (m == NULL) {
        return;
    }
    const char *p[] = {ctx->account_id, ctx->new_hash[0] ? ctx->new_hash : NULL};
    int rc = db_query(svc_db(ctx->svc), sql, 2, p, mfa_login_factors, m);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the login could not be completed; retry later");
    }
}

/* ---- login, step 2: POST /api/v1/auth/login/mfa ---- */

static void
mfa_login_denied(h2s_req_t *req)
{
    h2s_respond_problem(req, 401, "invalid_credentials", "the code is wrong or was already used",
                        NULL);
}

static void
mfa_login_fail_committed(auth_ctx_t *ctx, int rc)
{
    if (rc != PHR_OK) {
        log_warn("mfa login failure bookkeeping failed: %s", phr_err_str(rc));
    } else {
        auth_outbox_kick(ctx->svc);
    }
    mfa_login_denied(ctx->req);
}

/* A wrong factor counts as a failed login (the account locks as for passwords). */
static void
mfa_login_failed(mfa_ext_t *m, const char *reason)
{
    auth_ctx_t *ctx = m->ctx;
    char event_id[37];

    if (m->tries >= AUTH_MFA_MAX_TRIES) {
        const char *argv[] = {"DEL", m->kv_key};
        mfa_kv(svc_kv(ctx->svc), mfa_kv_ignore, NULL, 2, argv);
    }
    char *audit = auth_audit_json(ctx, "auth.login.mfa.failure", NULL, "anonymous", ctx->account_id,
                                  "failure", reason, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    auth_count_failure(ctx, m->failed_logins, m->locked);
    auth_tx_run(ctx, mfa_login_fail_committed);
}

static void
mfa_login_consumed(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;
    char event_id[37];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the login could not be completed; retry later");
        return;
    }
    if (PQntuples(res) == 0) { /* used by a concurrent request */
        mfa_login_failed(m, m->use_recovery ? "recovery_code_used" : "code_replayed");
        return;
    }
    const char *argv[] = {"DEL", m->kv_key};
    mfa_kv(svc_kv(ctx->svc), mfa_kv_ignore, NULL, 2, argv);
    char *audit =
        auth_audit_json(ctx, "auth.login.mfa.success", ctx->account_id, ctx->kind, ctx->account_id,
                        "success", m->use_recovery ? "recovery_code" : m->method, event_id);
    auth_tx_outbox(ctx, "audit", event_id, audit);
    auth_login_issue(ctx, m->use_recovery ? "recovery_code" : m->method);
}

static void
mfa_login_sms_checked(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;

    if (rc != PHR_OK) {
        svc_respond_error(m->ctx->req, rc, "the login could not be completed; retry later");
        return;
    }
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
        mfa_login_failed(m, "invalid_code");
        return;
    }
    m->method = "sms";
    mfa_login_consumed(PHR_OK, res, m);
}

static void
mfa_login_loaded(int rc, PGresult *res, void *ud)
{
    static const char use_step[] = "UPDATE mfa_totp SET last_step = $2::bigint "
                                   "WHERE account_id = $1 AND last_step < $2::bigint RETURNING 1";
    static const char use_code[] =
        "UPDATE mfa_recovery_codes SET used_at = now() WHERE account_id = $1 "
        "AND code_sha256 = $2 AND used_at IS NULL RETURNING 1";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, "the login could not be completed; retry later");
        return;
    }
    if (PQntuples(res) == 0) { /* the factor was removed or the account closed meanwhile */
        const char *argv[] = {"DEL", m->kv_key};
        mfa_kv(svc_kv(ctx->svc), mfa_kv_ignore, NULL, 2, argv);
        h2s_respond_problem(ctx->req, 401, "unauthenticated", "the MFA token is no longer valid",
                            NULL);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 1));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 2));
    snprintf(ctx->kind, sizeof(ctx->kind), "%s", PQgetvalue(res, 0, 3));
    snprintf(ctx->org_id, sizeof(ctx->org_id), "%s", PQgetvalue(res, 0, 4));
    snprintf(ctx->role, sizeof(ctx->role), "%s", PQgetvalue(res, 0, 5));
    snprintf(ctx->email, sizeof(ctx->email), "%s", PQgetvalue(res, 0, 6));
    ctx->email_verified = PQgetvalue(res, 0, 7)[0] == 't';
    ctx->must_change = PQgetvalue(res, 0, 8)[0] == 't';
    m->failed_logins = (int)strtol(PQgetvalue(res, 0, 9), NULL, 10);
    m->locked = PQgetvalue(res, 0, 10)[0] == 't';
    m->last_step = strtoll(PQgetvalue(res, 0, 13), NULL, 10);
    m->has_totp = !PQgetisnull(res, 0, 11);
    m->has_sms = PQgetvalue(res, 0, 14)[0] == 't';
    ctx->mfa_methods = (m->has_totp ? SESS_MFA_TOTP : 0) | (m->has_sms ? SESS_MFA_SMS : 0);
    ctx->org_requires_mfa = PQgetvalue(res, 0, 15)[0] == 't' && strcmp(ctx->kind, "staff") == 0;
    ctx->found = 1;
    if (m->locked) {
        mfa_login_failed(m, "locked");
        return;
    }
    if (m->use_recovery) {
        const char *p[] = {ctx->account_id, m->recovery_hash};
        rc = db_query(svc_db(ctx->svc), use_code, 2, p, mfa_login_consumed, m);
    } else {
        int totp_ok = 0;
        if (m->has_totp) {
            if (mfa_open(ctx->svc, m, ctx->account_id, PQgetvalue(res, 0, 11),
                         PQgetvalue(res, 0, 12)) != PHR_OK) {
                svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
                return;
            }
            totp_ok = mfa_totp_check(m->secret, m->code, m->last_step, &m->step);
        }
        if (!totp_ok && m->has_sms) { /* else the SMS code of this login */
            m->purpose = "login";
            if (mfa_sms_hmac(ctx->svc, m, ctx->account_id) != PHR_OK) {
                svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
                return;
            }
            const char *p[] = {ctx->account_id, m->purpose, m->code_hmac};
            rc = db_query(svc_db(ctx->svc), mfa_sms_consume_sql, 3, p, mfa_login_sms_checked, m);
            if (rc != PHR_OK) {
                svc_respond_error(ctx->req, rc, NULL);
            }
            return;
        }
        if (!totp_ok) {
            mfa_login_failed(m, "invalid_code");
            return;
        }
        m->method = "totp";
        snprintf(m->step_txt, sizeof(m->step_txt), "%lld", (long long)m->step);
        const char *p[] = {ctx->account_id, m->step_txt};
        rc = db_query(svc_db(ctx->svc), use_step, 2, p, mfa_login_consumed, m);
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
mfa_login_attempted(int rc, redisReply *reply, void *ud)
{
    static const char sql[] =
        "SELECT a.id, a.name, a.locale, a.kind, coalesce(a.org_id::text, ''), "
        "coalesce(a.role, ''), a.email, a.email_verified_at IS NOT NULL, a.must_change_password, "
        "a.failed_logins, coalesce(a.locked_until > now(), false), t.secret_enc, t.key_id, "
        "coalesce(t.last_step, 0), s.account_id IS NOT NULL, "
        "coalesce((SELECT require_mfa FROM organizations WHERE id = a.org_id), false) "
        "FROM accounts a "
        "LEFT JOIN mfa_totp t ON t.account_id = a.id AND t.confirmed_at IS NOT NULL "
        "LEFT JOIN mfa_sms s ON s.account_id = a.id AND s.confirmed_at IS NOT NULL "
        "WHERE a.id = $1 AND a.status = 'active' "
        "AND (t.account_id IS NOT NULL OR s.account_id IS NOT NULL)";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK || reply->type == REDIS_REPLY_ERROR) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_INTEGER || reply->element[0]->len != 36) {
        h2s_respond_problem(ctx->req, 401, "unauthenticated",
                            "the MFA token is unknown, expired or used up; log in again", NULL);
        return;
    }
    memcpy(ctx->account_id, reply->element[0]->str, 36);
    ctx->account_id[36] = '\0';
    m->tries = reply->element[1]->integer;
    const char *p[] = {ctx->account_id};
    rc = db_query(svc_db(ctx->svc), sql, 1, p, mfa_login_loaded, m);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
mfa_login(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"mfa_token", JX_STRING, 1, 0, -1, 1, 64, NULL},
        {"code", JX_STRING, 0, 0, -1, 1, 16, NULL},
        {"recovery_code", JX_STRING, 0, 0, -1, 1, 64, NULL},
    };
    json_object *body;

    if (svc_read_json(req, fields, 3, &body) != PHR_OK) {
        return;
    }
    const char *token = jx_get_str(body, "mfa_token", "");
    const char *code = jx_get_str(body, "code", NULL);
    const char *recovery = jx_get_str(body, "recovery_code", NULL);
    const char *bad = NULL, *msg = NULL;
    if (!mfa_token_valid(token)) {
        bad = "mfa_token", msg = "must be the 43-character token of the login answer";
    } else if ((code == NULL) == (recovery == NULL)) {
        bad = "code", msg = "give exactly one of code and recovery_code";
    } else if (code != NULL && !mfa_code_valid(code)) {
        bad = "code", msg = "must be 6 digits";
    } else if (recovery != NULL &&
               (strlen(recovery) < 8 || strlen(recovery) > 32 ||
                strspn(recovery,
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") !=
                    strlen(recovery))) {
        bad = "recovery_code", msg = "must be 8-32 letters, digits or '-'";
    }
    if (bad != NULL) {
        json_object_put(body);
        mfa_bad_field(req, bad, msg);
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, NULL);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    if (code != NULL) {
        snprintf(m->code, sizeof(m->code), "%s", code);
    } else {
        char norm[17];
        m->use_recovery = 1;
        if (!mfa_recovery_normalise(recovery, norm)) {
            snprintf(norm, sizeof(norm), "-"); /* matches no stored hash */
        }
        auth_sha256_hex(norm, m->recovery_hash);
        explicit_bzero(norm, sizeof(norm));
    }
    mfa_token_key(token, m->kv_key, sizeof(m->kv_key));
    json_object_put(body);
    char max[8];
    snprintf(max, sizeof(max), "%d", AUTH_MFA_MAX_TRIES);
    const char *argv[] = {"EVAL", mfa_attempt_lua, "1", m->kv_key, max};
    if (mfa_kv(svc_kv(svc), mfa_login_attempted, m, 5, argv) != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static void
mfa_sms_sent(auth_ctx_t *ctx, int rc)
{
    mfa_ext_t *m = mfa_ext_of(ctx);
    char hint[16];

    if (rc == PHR_EINVAL) { /* the guard: confirmed meanwhile */
        h2s_respond_problem(ctx->req, 409, "conflict", "SMS is already enrolled", NULL);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    auth_outbox_kick(ctx->svc);
    size_t n = strlen(m->phone);
    snprintf(hint, sizeof(hint), "***-%s", m->phone + (n > 4 ? n - 4 : 0));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "expires_at", json_object_new_string(m->expires));
    json_object_object_add(o, "phone_hint", json_object_new_string(hint));
    h2s_respond_json(ctx->req, 202, o);
}

/* Makes a code for m->purpose and commits it with its SMS (and, to enrol, the sealed phone). */
static void
mfa_sms_send(mfa_ext_t *m)
{
    static const char phone_sql[] =
        "WITH u AS (INSERT INTO mfa_sms (account_id, phone_enc, key_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (account_id) DO UPDATE SET phone_enc = EXCLUDED.phone_enc, "
        "key_id = EXCLUDED.key_id, created_at = now() WHERE mfa_sms.confirmed_at IS NULL "
        "RETURNING 1) SELECT 1 / count(*)::int FROM u";
    static const char code_sql[] =
        "INSERT INTO mfa_sms_codes (account_id, purpose, code_hmac, expires_at) "
        "VALUES ($1, $2, $3, $4::timestamptz) ON CONFLICT (account_id, purpose) DO UPDATE "
        "SET code_hmac = EXCLUDED.code_hmac, tries = 0, expires_at = EXCLUDED.expires_at, "
        "used_at = NULL, created_at = now()";
    auth_ctx_t *ctx = m->ctx;
    char id[37], key[48];

    if (mfa_sms_code_new(m->code, sizeof(m->code)) != PHR_OK ||
        mfa_sms_hmac(ctx->svc, m, ctx->account_id) != PHR_OK || uuid7(id) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    snprintf(key, sizeof(key), "sms:%s", id);
    tu_format_jst(tu_now_ms() + (int64_t)MFA_SMS_TTL_S * 1000, m->expires, sizeof(m->expires));
    if (strcmp(m->purpose, "enroll") == 0) {
        unsigned char pbuf[MFA_PHONE_MAX];
        memset(pbuf, 0, sizeof(pbuf));
        memcpy(pbuf, m->phone, strlen(m->phone));
        int rc = mfa_seal_buf(ctx->svc, ctx->account_id, pbuf, sizeof(pbuf), m->blob, m->key_id);
        explicit_bzero(pbuf, sizeof(pbuf));
        if (rc != PHR_OK) {
            svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
            return;
        }
        const char *pp[] = {ctx->account_id, m->blob, m->key_id};
        auth_tx_sql(ctx, phone_sql, 3, pp);
    }
    const char *pc[] = {ctx->account_id, m->purpose, m->code_hmac, m->expires};
    auth_tx_sql(ctx, code_sql, 4, pc);
    auth_tx_outbox(ctx, "notification", key, mfa_sms_json(m->phone, ctx->locale, m->code));
    explicit_bzero(m->code, sizeof(m->code));
    auth_tx_run(ctx, mfa_sms_sent);
}

static void
mfa_sms_rated(int rc, redisReply *reply, void *ud)
{
    mfa_ext_t *m = ud;
    h2s_req_t *req = m->ctx->req;

    if (rc != PHR_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (reply->element[0]->integer > MFA_SMS_RATE_MAX) {
        char after[24];
        long long ttl = reply->element[1]->integer;
        snprintf(after, sizeof(after), "%lld", ttl > 0 ? ttl : 1);
        h2s_req_add_header(req, "retry-after", after);
        h2s_respond_problem(req, 429, "rate_limited",
                            "too many codes were sent to this phone; retry later", NULL);
        return;
    }
    mfa_sms_send(m);
}

/* Counts a code for m->phone (MFA_SMS_RATE_MAX per MFA_SMS_RATE_S) and sends it when allowed. */
static void
mfa_sms_rate(mfa_ext_t *m)
{
    char hash[SESS_HASH_LEN + 1], key[96];

    auth_sha256_hex(m->phone, hash);
    snprintf(key, sizeof(key), "phr:mfa:sms:rate:%s", hash);
    const char *argv[] = {"EVAL", mfa_sms_rate_lua, "1", key, MFA_SMS_RATE_S};
    if (mfa_kv(svc_kv(m->ctx->svc), mfa_sms_rated, m, 5, argv) != PHR_OK) {
        svc_respond_error(m->ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

/* ---- POST /api/v1/auth/mfa/sms/enroll ---- */

static void
mfa_sms_enroll_loaded(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 401, "session_expired", "the account no longer exists", NULL);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 0));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 1));
    if (PQgetvalue(res, 0, 2)[0] == 't') {
        h2s_respond_problem(ctx->req, 409, "conflict", "SMS is already enrolled", NULL);
        return;
    }
    mfa_sms_rate(m);
}

static void
mfa_sms_enroll(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"phone", JX_STRING, 1, 0, -1, 1, 32, NULL},
    };
    static const char sql[] =
        "SELECT a.name, a.locale, coalesce(s.confirmed_at IS NOT NULL, false) FROM accounts a "
        "LEFT JOIN mfa_sms s ON s.account_id = a.id WHERE a.id = $1 AND a.status = 'active'";
    json_object *body;

    if (!mfa_allowed(req, sess) || svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    const char *phone = jx_get_str(body, "phone", "");
    if (!mfa_phone_valid(phone)) {
        json_object_put(body);
        mfa_bad_field(req, "phone", "must be E.164: '+' and 8-15 digits, the first not 0");
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, sess);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    snprintf(m->phone, sizeof(m->phone), "%s", phone);
    json_object_put(body);
    m->purpose = "enroll";
    snprintf(m->ctx->account_id, sizeof(m->ctx->account_id), "%s", sess->account_id);
    const char *p[] = {sess->account_id};
    int rc = db_query(svc_db(svc), sql, 1, p, mfa_sms_enroll_loaded, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- POST /api/v1/auth/mfa/sms/confirm ---- */

static void
mfa_sms_confirm_respond(auth_ctx_t *ctx, int rc)
{
    mfa_ext_t *m = mfa_ext_of(ctx);
    json_object *o = json_object_new_object();
    json_object *methods = json_object_new_array();
    if (m->has_totp) {
        json_object_array_add(methods, json_object_new_string("totp"));
    }
    json_object_array_add(methods, json_object_new_string("sms"));
    json_object_object_add(o, "methods", methods);
    if (!m->has_totp) {
        json_object *arr = json_object_new_array();
        for (int i = 0; i < MFA_NCODES; i++) {
            json_object_array_add(arr, json_object_new_string(m->codes[i]));
        }
        json_object_object_add(o, "recovery_codes", arr);
    }
    h2s_req_add_header(ctx->req, "cache-control", "no-store");
    h2s_respond_json(ctx->req, 200, o);
}

static void
mfa_sms_confirm_committed(auth_ctx_t *ctx, int rc)
{
    if (rc == PHR_EINVAL) { /* the guard: no pending enrolment (confirmed meanwhile) */
        h2s_respond_problem(ctx->req, 422, "invalid_code", "no SMS enrolment is pending", NULL);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    auth_outbox_kick(ctx->svc);
    mfa_ext_of(ctx)->ungate_method = SESS_MFA_SMS;
    mfa_ungate(mfa_ext_of(ctx), mfa_sms_confirm_respond);
}

static void
mfa_sms_confirm_checked(int rc, PGresult *res, void *ud)
{
    static const char guard[] =
        "WITH u AS (UPDATE mfa_sms SET confirmed_at = now() WHERE account_id = $1 "
        "AND confirmed_at IS NULL RETURNING 1) SELECT 1 / count(*)::int FROM u";
    static const char wipe[] = "DELETE FROM mfa_recovery_codes WHERE account_id = $1";
    static const char insert[] = "INSERT INTO mfa_recovery_codes (account_id, code_sha256) "
                                 "SELECT $1, unnest($2::text[])";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0 || PQgetvalue(res, 0, 0)[0] != 't') {
        h2s_respond_problem(ctx->req, 422, "invalid_code",
                            "the code is wrong, expired or used up; enroll again", NULL);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 1));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 2));
    m->has_totp = PQgetvalue(res, 0, 3)[0] == 't';
    const char *pg[] = {ctx->account_id};
    auth_tx_sql(ctx, guard, 1, pg);
    if (!m->has_totp) { /* the first factor: recovery codes come with it */
        if (mfa_recovery_new(m) != PHR_OK) {
            svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
            return;
        }
        const char *pi[] = {ctx->account_id, m->hashes};
        auth_tx_sql(ctx, wipe, 1, pg);
        auth_tx_sql(ctx, insert, 2, pi);
    }
    mfa_queue_change(ctx, "auth.mfa.enroll", "enrolled", "sms");
    auth_tx_run(ctx, mfa_sms_confirm_committed);
}

static void
mfa_sms_confirm(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"code", JX_STRING, 1, 0, -1, 1, 16, NULL},
    };
    json_object *body;

    if (!mfa_allowed(req, sess) || svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    const char *code = jx_get_str(body, "code", "");
    if (!mfa_code_valid(code)) {
        json_object_put(body);
        mfa_bad_field(req, "code", "must be 6 digits");
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, sess);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    snprintf(m->code, sizeof(m->code), "%s", code);
    json_object_put(body);
    m->purpose = "enroll";
    snprintf(m->ctx->account_id, sizeof(m->ctx->account_id), "%s", sess->account_id);
    if (mfa_sms_hmac(svc, m, sess->account_id) != PHR_OK) {
        svc_respond_error(req, PHR_EGENERIC, NULL);
        return;
    }
    const char *p[] = {sess->account_id, m->purpose, m->code_hmac};
    int rc = db_query(svc_db(svc), mfa_sms_consume_sql, 3, p, mfa_sms_confirm_checked, m);
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
    }
}

/* ---- POST /api/v1/auth/login/mfa/sms ---- */

static void
mfa_sms_login_loaded(int rc, PGresult *res, void *ud)
{
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;
    unsigned char pbuf[MFA_PHONE_MAX];

    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        h2s_respond_problem(ctx->req, 401, "unauthenticated",
                            "the account has no SMS factor; log in again", NULL);
        return;
    }
    snprintf(ctx->name, sizeof(ctx->name), "%s", PQgetvalue(res, 0, 0));
    snprintf(ctx->locale, sizeof(ctx->locale), "%s", PQgetvalue(res, 0, 1));
    if (mfa_open_buf(ctx->svc, ctx->account_id, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3), pbuf,
                     sizeof(pbuf)) != PHR_OK) {
        svc_respond_error(ctx->req, PHR_EGENERIC, NULL);
        return;
    }
    memcpy(m->phone, pbuf, sizeof(pbuf));
    m->phone[MFA_PHONE_MAX] = '\0';
    explicit_bzero(pbuf, sizeof(pbuf));
    mfa_sms_rate(m);
}

static void
mfa_sms_login_token(int rc, redisReply *reply, void *ud)
{
    static const char sql[] =
        "SELECT a.name, a.locale, s.phone_enc, s.key_id FROM accounts a "
        "JOIN mfa_sms s ON s.account_id = a.id AND s.confirmed_at IS NOT NULL "
        "WHERE a.id = $1 AND a.status = 'active'";
    mfa_ext_t *m = ud;
    auth_ctx_t *ctx = m->ctx;

    if (rc != PHR_OK || reply->type == REDIS_REPLY_ERROR) {
        svc_respond_error(ctx->req, PHR_EUNAVAIL, "the session store is unavailable");
        return;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len != 36) {
        h2s_respond_problem(ctx->req, 401, "unauthenticated",
                            "the MFA token is unknown, expired or used up; log in again", NULL);
        return;
    }
    memcpy(ctx->account_id, reply->str, 36);
    ctx->account_id[36] = '\0';
    const char *p[] = {ctx->account_id};
    rc = db_query(svc_db(ctx->svc), sql, 1, p, mfa_sms_login_loaded, m);
    if (rc != PHR_OK) {
        svc_respond_error(ctx->req, rc, NULL);
    }
}

static void
mfa_sms_login_send(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const jx_field_t fields[] = {
        {"mfa_token", JX_STRING, 1, 0, -1, 1, 64, NULL},
    };
    json_object *body;

    if (svc_read_json(req, fields, 1, &body) != PHR_OK) {
        return;
    }
    const char *token = jx_get_str(body, "mfa_token", "");
    if (!mfa_token_valid(token)) {
        json_object_put(body);
        mfa_bad_field(req, "mfa_token", "must be the 43-character token of the login answer");
        return;
    }
    mfa_ext_t *m = mfa_ext_new(svc, req, NULL);
    if (m == NULL) {
        json_object_put(body);
        return;
    }
    mfa_token_key(token, m->kv_key, sizeof(m->kv_key));
    json_object_put(body);
    m->purpose = "login";
    const char *argv[] = {"HGET", m->kv_key, "account"};
    if (mfa_kv(svc_kv(svc), mfa_sms_login_token, m, 3, argv) != PHR_OK) {
        svc_respond_error(req, PHR_EUNAVAIL, "the session store is unavailable");
    }
}

static const svc_route_t table[] = {
    {"POST", "/api/v1/auth/mfa/totp/enroll", mfa_enroll,
     SVC_SESSION | SVC_ALLOW_MFA_ENROLL | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/auth/mfa/totp/confirm", mfa_confirm,
     SVC_SESSION | SVC_ALLOW_MFA_ENROLL | SVC_NEEDS_DB, 1024},
    {"DELETE", "/api/v1/auth/mfa/totp", mfa_remove, SVC_SESSION | SVC_NEEDS_DB, 4096},
    {"POST", "/api/v1/auth/login/mfa", mfa_login, SVC_NEEDS_DB, 1024},
    {"POST", "/api/v1/auth/login/mfa/sms", mfa_sms_login_send, SVC_NEEDS_DB, 1024},
    {"POST", "/api/v1/auth/mfa/sms/enroll", mfa_sms_enroll,
     SVC_SESSION | SVC_ALLOW_MFA_ENROLL | SVC_NEEDS_DB, 1024},
    {"POST", "/api/v1/auth/mfa/sms/confirm", mfa_sms_confirm,
     SVC_SESSION | SVC_ALLOW_MFA_ENROLL | SVC_NEEDS_DB, 1024},
};

const svc_routes_t auth_mfa_routes = SVC_ROUTES(table);
