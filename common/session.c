/*
 * session.c - the shared session record in Redis (see session.h).
 *
 * Key   "phr:sess:<hex SHA-256 of the bearer token>"
 * Value {"session_id","account_id","kind","org_id","role","mfa",
 *        "created_at","idle_expires_at","absolute_expires_at",
 *        "authenticated_at","must_change_password","mfa_enrollment_required"}
 *        (the last three optional when read: records written before they existed)
 *        with the times as RFC 3339 JST strings (proto/schemas/session.json).
 * TTL   the idle expiry, never past the absolute expiry.
 *
 * The bearer token itself is never stored and never logged.
 */
#include "session.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fmt.h"
#include "log.h"
#include "timeutil.h"

#define SESS_KEY_PREFIX "phr:sess:"
#define SESS_KEY_LEN (sizeof(SESS_KEY_PREFIX) - 1 + SESS_HASH_LEN)
#define SESS_JSON_MAX 4096
#define SESS_JSON_DEPTH 4
#define SESS_ACCT_PREFIX "phr:acct:"
#define SESS_ACCT_SUFFIX ":sess"
#define SESS_ACCT_KEY_MAX 64

typedef struct {
    sess_reader_t *reader;
    sess_cb cb;
    void *ud;
    int idle_s;
    char key[SESS_KEY_LEN + 1];
    char hash[SESS_HASH_LEN + 1];
} sess_lookup_t;

typedef struct {
    sess_done_cb cb;
    void *ud;
} sess_done_t;

/*
 * The last records read, parsed: a record whose text is byte for byte the one
 * parsed before (the usual case: only auth rewrites it, and GETEX reads the
 * text each time) is not parsed again. Slots by the first hex digits of the
 * token hash, made on first use.
 */
#define SESS_CACHE_SLOTS 64

typedef struct {
    char *json; /* the record's text as last read (NULL: empty slot) */
    size_t len;
    sess_t s; /* its parse */
} sess_cached_t;

struct sess_reader {
    kv_t *kv;
    EVP_MD *sha256;     /* fetched once: EVP_sha256() makes every EVP_Digest look it up again */
    EVP_MD_CTX *digest; /* reused: a fresh context per token costs two allocations */
    sess_cached_t *cache[SESS_CACHE_SLOTS];
};

static const char *const sess_kinds[] = {"patient", "staff", "operator", NULL};
static const char *const sess_roles[] = {"", "staff", "admin", NULL};
static const char *const sess_mfas[] = {"none", "totp", "sms", "recovery_code", NULL};

sess_reader_t *
sess_reader_create(kv_t *kv)
{
    sess_reader_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->kv = kv;
    r->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    r->digest = EVP_MD_CTX_new();
    if (r->sha256 == NULL || r->digest == NULL) {
        sess_reader_free(r);
        return NULL;
    }
    return r;
}

void
sess_reader_free(sess_reader_t *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < SESS_CACHE_SLOTS; i++) {
        sess_cached_t *c = r->cache[i];
        if (c == NULL) {
            continue;
        }
        if (c->json != NULL) {
            OPENSSL_cleanse(c->json, c->len);
            free(c->json);
        }
        OPENSSL_cleanse(c, sizeof(*c));
        free(c);
    }
    EVP_MD_CTX_free(r->digest);
    EVP_MD_free(r->sha256);
    free(r);
}

/* sess_token_hash with context |ctx| and digest |sha256|. */
static void
sess_hash_with(EVP_MD_CTX *ctx, const EVP_MD *sha256, const char *token, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (ctx == NULL || sha256 == NULL || EVP_DigestInit_ex2(ctx, sha256, NULL) != 1 ||
        EVP_DigestUpdate(ctx, token, strlen(token)) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        /* Cannot happen with the default provider; never yield a usable key. */
        memset(out, '0', SESS_HASH_LEN);
        out[SESS_HASH_LEN] = '\0';
        return;
    }
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[SESS_HASH_LEN] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
}

void
sess_token_hash(const char *token, char *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    sess_hash_with(ctx, EVP_sha256(), token, out);
    EVP_MD_CTX_free(ctx);
}

int
sess_token_new(char *token)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[SESS_TOKEN_BYTES];
    size_t o = 0;
    size_t i;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return PHR_EGENERIC;
    }
    for (i = 0; i + 3 <= sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        token[o++] = b64url[(v >> 18) & 63];
        token[o++] = b64url[(v >> 12) & 63];
        token[o++] = b64url[(v >> 6) & 63];
        token[o++] = b64url[v & 63];
    }
    /* 32 = 10 * 3 + 2: two bytes left -> three characters, no padding */
    uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
    token[o++] = b64url[(v >> 18) & 63];
    token[o++] = b64url[(v >> 12) & 63];
    token[o++] = b64url[(v >> 6) & 63];
    token[o] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return PHR_OK;
}

static void
sess_key(const char *token_hash, char *key)
{
    memcpy(key, SESS_KEY_PREFIX, sizeof(SESS_KEY_PREFIX) - 1);
    memcpy(key + sizeof(SESS_KEY_PREFIX) - 1, token_hash, SESS_HASH_LEN);
    key[SESS_KEY_LEN] = '\0';
}

static int
sess_add_str(json_object *o, const char *name, const char *val)
{
    json_object *s = json_object_new_string(val);
    if (s == NULL) {
        return PHR_ENOMEM;
    }
    if (json_object_object_add(o, name, s) != 0) {
        json_object_put(s);
        return PHR_ENOMEM;
    }
    return PHR_OK;
}

static int
sess_add_time(json_object *o, const char *name, int64_t ms)
{
    char buf[TU_JST_LEN];
    tu_format_jst(ms, buf, sizeof(buf));
    return sess_add_str(o, name, buf);
}

static json_object *
sess_profile_json(const sess_t *s)
{
    json_object *p = json_object_new_object();
    json_object *methods = json_object_new_array();

    json_object_object_add(p, "email", json_object_new_string(s->profile.email));
    json_object_object_add(p, "name", json_object_new_string(s->profile.name));
    json_object_object_add(p, "locale", json_object_new_string(s->profile.locale));
    json_object_object_add(p, "email_verified", json_object_new_boolean(s->profile.email_verified));
    if (s->profile.mfa_methods & SESS_MFA_TOTP) {
        json_object_array_add(methods, json_object_new_string("totp"));
    }
    if (s->profile.mfa_methods & SESS_MFA_SMS) {
        json_object_array_add(methods, json_object_new_string("sms"));
    }
    json_object_object_add(p, "mfa_methods", methods);
    json_object_object_add(p, "mfa_required_by_org",
                           json_object_new_boolean(s->profile.mfa_required_by_org));
    return p;
}

/* Reads the optional "profile" (records written before it existed have none). */
static void
sess_profile_parse(json_object *o, sess_t *s)
{
    json_object *p, *v;

    if (!json_object_object_get_ex(o, "profile", &p) || !json_object_is_type(p, json_type_object)) {
        return;
    }
    if (json_object_object_get_ex(p, "email", &v) && json_object_is_type(v, json_type_string)) {
        snprintf(s->profile.email, sizeof(s->profile.email), "%s", json_object_get_string(v));
    }
    if (json_object_object_get_ex(p, "name", &v) && json_object_is_type(v, json_type_string)) {
        snprintf(s->profile.name, sizeof(s->profile.name), "%s", json_object_get_string(v));
    }
    if (json_object_object_get_ex(p, "locale", &v) && json_object_is_type(v, json_type_string)) {
        snprintf(s->profile.locale, sizeof(s->profile.locale), "%s", json_object_get_string(v));
    }
    if (json_object_object_get_ex(p, "email_verified", &v)) {
        s->profile.email_verified = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(p, "mfa_required_by_org", &v)) {
        s->profile.mfa_required_by_org = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(p, "mfa_methods", &v) &&
        json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            const char *m = json_object_get_string(json_object_array_get_idx(v, i));
            if (m != NULL && strcmp(m, "totp") == 0) {
                s->profile.mfa_methods |= SESS_MFA_TOTP;
            } else if (m != NULL && strcmp(m, "sms") == 0) {
                s->profile.mfa_methods |= SESS_MFA_SMS;
            }
        }
    }
}

char *
sess_to_json(const sess_t *s)
{
    json_object *o = json_object_new_object();
    char *out = NULL;

    if (o == NULL) {
        return NULL;
    }
    if (sess_add_str(o, "session_id", s->session_id) == PHR_OK &&
        sess_add_str(o, "account_id", s->account_id) == PHR_OK &&
        sess_add_str(o, "kind", s->kind) == PHR_OK &&
        sess_add_str(o, "org_id", s->org_id) == PHR_OK &&
        sess_add_str(o, "role", s->role) == PHR_OK && sess_add_str(o, "mfa", s->mfa) == PHR_OK &&
        sess_add_time(o, "created_at", s->created_ms) == PHR_OK &&
        sess_add_time(o, "idle_expires_at", s->idle_expires_ms) == PHR_OK &&
        sess_add_time(o, "absolute_expires_at", s->absolute_expires_ms) == PHR_OK &&
        sess_add_time(o, "authenticated_at",
                      s->authenticated_ms ? s->authenticated_ms : s->created_ms) == PHR_OK &&
        json_object_object_add(o, "must_change_password",
                               json_object_new_boolean(s->must_change_password != 0)) == 0 &&
        json_object_object_add(o, "mfa_enrollment_required",
                               json_object_new_boolean(s->mfa_enrollment_required != 0)) == 0 &&
        json_object_object_add(o, "profile", sess_profile_json(s)) == 0) {
        const char *txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (txt != NULL) {
            out = strdup(txt);
        }
    }
    json_object_put(o);
    return out;
}

static int
sess_in(const char *v, const char *const *allowed)
{
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(v, allowed[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Copies string member |name| of |o| into |dst| (capacity |cap|). */
static int
sess_get_str(json_object *o, const char *name, char *dst, size_t cap, int allow_empty)
{
    json_object *v;

    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string)) {
        return PHR_EINVAL;
    }
    const char *str = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len >= cap || strlen(str) != len || (len == 0 && !allow_empty)) {
        return PHR_EINVAL;
    }
    memcpy(dst, str, len + 1);
    return PHR_OK;
}

static int
sess_get_time(json_object *o, const char *name, int64_t *ms)
{
    char buf[64];
    if (sess_get_str(o, name, buf, sizeof(buf), 0) != PHR_OK) {
        return PHR_EINVAL;
    }
    return tu_parse_rfc3339(buf, ms);
}

int
sess_from_json(const char *json, sess_t *s)
{
    json_tokener *tok;
    json_object *o;
    size_t len;
    int rc = PHR_EINVAL;

    if (json == NULL || s == NULL) {
        return PHR_EINVAL;
    }
    len = strlen(json);
    if (len == 0 || len > SESS_JSON_MAX) {
        return PHR_EINVAL;
    }
    tok = json_tokener_new_ex(SESS_JSON_DEPTH);
    if (tok == NULL) {
        return PHR_ENOMEM;
    }
    o = json_tokener_parse_ex(tok, json, (int)len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        goto out;
    }
    if (!json_object_is_type(o, json_type_object)) {
        goto out;
    }
    memset(s, 0, sizeof(*s));
    if (sess_get_str(o, "session_id", s->session_id, sizeof(s->session_id), 0) != PHR_OK ||
        sess_get_str(o, "account_id", s->account_id, sizeof(s->account_id), 0) != PHR_OK ||
        sess_get_str(o, "kind", s->kind, sizeof(s->kind), 0) != PHR_OK ||
        sess_get_str(o, "org_id", s->org_id, sizeof(s->org_id), 1) != PHR_OK ||
        sess_get_str(o, "role", s->role, sizeof(s->role), 1) != PHR_OK ||
        sess_get_str(o, "mfa", s->mfa, sizeof(s->mfa), 0) != PHR_OK ||
        sess_get_time(o, "created_at", &s->created_ms) != PHR_OK ||
        sess_get_time(o, "idle_expires_at", &s->idle_expires_ms) != PHR_OK ||
        sess_get_time(o, "absolute_expires_at", &s->absolute_expires_ms) != PHR_OK) {
        goto out;
    }
    json_object *v;
    if (json_object_object_get_ex(o, "authenticated_at", &v)) {
        if (sess_get_time(o, "authenticated_at", &s->authenticated_ms) != PHR_OK) {
            goto out;
        }
    } else {
        s->authenticated_ms = s->created_ms;
    }
    if (json_object_object_get_ex(o, "must_change_password", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            goto out;
        }
        s->must_change_password = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(o, "mfa_enrollment_required", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            goto out;
        }
        s->mfa_enrollment_required = json_object_get_boolean(v) ? 1 : 0;
    }
    if (!sess_in(s->kind, sess_kinds) || !sess_in(s->role, sess_roles) ||
        !sess_in(s->mfa, sess_mfas)) {
        goto out;
    }
    sess_profile_parse(o, s);
    rc = PHR_OK;
out:
    if (o != NULL) {
        json_object_put(o);
    }
    json_tokener_free(tok);
    if (rc != PHR_OK) {
        memset(s, 0, sizeof(*s));
    }
    return rc;
}

static void
sess_ignore_cb(int rc, redisReply *reply, void *ud)
{
    if (rc == PHR_OK && reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        log_warn("session: follow-up command failed: %.120s", reply->str);
    }
}

/* Fire and forget: kv owns the request, nothing to free here. */
static void
sess_fire(kv_t *kv, int argc, const char **argv, const size_t *argvlen)
{
    if (kv_command_argv(kv, sess_ignore_cb, NULL, argc, argv, argvlen) != PHR_OK) {
        log_warn("session: could not send %s (redis unavailable)", argv[0]);
    }
}

/* Parses record |json| (|len| bytes) of token hash |hash| into |s|, through the cache. */
static int
sess_parse_cached(sess_reader_t *r, const char *hash, const char *json, size_t len, sess_t *s)
{
    size_t slot = 0;
    for (int i = 0; i < 2; i++) { /* lowercase hex digits (sess_token_hash) */
        slot = slot << 4 | (size_t)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    }
    slot %= SESS_CACHE_SLOTS;
    sess_cached_t *c = r->cache[slot];

    if (c != NULL && c->json != NULL && c->len == len && memcmp(c->json, json, len) == 0 &&
        strcmp(c->s.token_hash, hash) == 0) {
        *s = c->s;
        return PHR_OK;
    }
    int rc = sess_from_json(json, s);
    if (rc != PHR_OK) {
        return rc;
    }
    if (c == NULL && (c = r->cache[slot] = calloc(1, sizeof(*c))) == NULL) {
        return PHR_OK;
    }
    if (c->json != NULL) {
        OPENSSL_cleanse(c->json, c->len);
        free(c->json);
    }
    c->json = malloc(len + 1);
    c->len = len;
    if (c->json != NULL) {
        memcpy(c->json, json, len + 1);
        c->s = *s;
        memcpy(c->s.token_hash, hash, sizeof(c->s.token_hash));
    }
    return PHR_OK;
}

static void
sess_lookup_done(int rc, redisReply *reply, void *ud)
{
    sess_lookup_t *lk = ud;
    sess_t s;

    if (rc != PHR_OK) {
        lk->cb(rc, NULL, lk->ud);
        goto out;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        lk->cb(PHR_ENOTFOUND, NULL, lk->ud);
        goto out;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (reply->str != NULL && strncmp(reply->str, "WRONGTYPE", 9) == 0) {
            log_warn("session: record has the wrong Redis type; treated as absent");
            lk->cb(PHR_ENOTFOUND, NULL, lk->ud);
        } else {
            log_error("session: GETEX failed: %.120s", reply->str != NULL ? reply->str : "");
            lk->cb(PHR_EUNAVAIL, NULL, lk->ud);
        }
        goto out;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->str == NULL ||
        strlen(reply->str) != reply->len ||
        sess_parse_cached(lk->reader, lk->hash, reply->str, reply->len, &s) != PHR_OK) {
        log_warn("session: corrupt session record; treated as absent");
        lk->cb(PHR_ENOTFOUND, NULL, lk->ud);
        goto out;
    }

    int64_t now = tu_now_ms();
    const char *argv[3];
    size_t argvlen[3];
    char num[24];

    if (now >= s.absolute_expires_ms) {
        argv[0] = "DEL";
        argvlen[0] = 3;
        argv[1] = lk->key;
        argvlen[1] = SESS_KEY_LEN;
        sess_fire(lk->reader->kv, 2, argv, argvlen);
        lk->cb(PHR_ENOTFOUND, NULL, lk->ud);
        goto out;
    }
    int64_t idle = now + (int64_t)lk->idle_s * 1000;
    if (idle >= s.absolute_expires_ms) {
        /* GETEX slid the TTL past the absolute expiry: pull it back. */
        int n = snprintf(num, sizeof(num), "%lld", (long long)(s.absolute_expires_ms / 1000));
        argv[0] = "EXPIREAT";
        argvlen[0] = 8;
        argv[1] = lk->key;
        argvlen[1] = SESS_KEY_LEN;
        argv[2] = num;
        argvlen[2] = (size_t)n;
        sess_fire(lk->reader->kv, 3, argv, argvlen);
        idle = s.absolute_expires_ms;
    }
    s.idle_expires_ms = idle;
    memcpy(s.token_hash, lk->hash, sizeof(s.token_hash));
    lk->cb(PHR_OK, &s, lk->ud);
out:
    free(lk);
}

int
sess_lookup(sess_reader_t *r, const char *token, int idle_s, sess_cb cb, void *ud)
{
    sess_lookup_t *lk;
    char hash[SESS_HASH_LEN + 1];
    char num[FMT_U64_LEN];
    const char *argv[4];
    size_t argvlen[4];
    int rc;

    if (r == NULL || token == NULL || cb == NULL || idle_s <= 0) {
        return PHR_EINVAL;
    }
    if (!kv_ready(r->kv)) {
        return PHR_EUNAVAIL;
    }
    lk = calloc(1, sizeof(*lk));
    if (lk == NULL) {
        return PHR_ENOMEM;
    }
    lk->reader = r;
    lk->cb = cb;
    lk->ud = ud;
    lk->idle_s = idle_s;
    sess_hash_with(r->digest, r->sha256, token, hash);
    sess_key(hash, lk->key);
    memcpy(lk->hash, hash, sizeof(lk->hash));

    size_t n = fmt_u64(num, (uint64_t)idle_s);
    argv[0] = "GETEX";
    argvlen[0] = 5;
    argv[1] = lk->key;
    argvlen[1] = SESS_KEY_LEN;
    argv[2] = "EX";
    argvlen[2] = 2;
    argv[3] = num;
    argvlen[3] = n;
    rc = kv_command_argv(r->kv, sess_lookup_done, lk, 4, argv, argvlen);
    if (rc != PHR_OK) {
        free(lk);
    }
    return rc;
}

static void
sess_done(int rc, redisReply *reply, void *ud)
{
    sess_done_t *d = ud;

    if (rc == PHR_OK && reply->type == REDIS_REPLY_ERROR) {
        log_error("session: redis refused the write: %.120s", reply->str != NULL ? reply->str : "");
        rc = PHR_EGENERIC;
    } else if (rc == PHR_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        rc = PHR_ENOTFOUND; /* DEL of a key that was not there */
    }
    if (d->cb != NULL) {
        d->cb(rc, d->ud);
    }
    free(d);
}

static int
sess_send_done(kv_t *kv, sess_done_cb cb, void *ud, int argc, const char **argv,
               const size_t *argvlen)
{
    sess_done_t *d;
    int rc;

    if (!kv_ready(kv)) {
        return PHR_EUNAVAIL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return PHR_ENOMEM;
    }
    d->cb = cb;
    d->ud = ud;
    rc = kv_command_argv(kv, sess_done, d, argc, argv, argvlen);
    if (rc != PHR_OK) {
        free(d);
    }
    return rc;
}

/* KEYS: record, index. ARGV: json, ttl seconds, hash, index expiry (epoch seconds). */
static const char sess_store_lua[] = "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
                                     "redis.call('SADD', KEYS[2], ARGV[3]) "
                                     "redis.call('EXPIREAT', KEYS[2], ARGV[4]) "
                                     "return 1";

/* KEYS: index. ARGV: record key prefix. Answers {hash, json, ...} of live records. */
static const char sess_list_lua[] = "local out = {} "
                                    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
                                    "  local v = redis.call('GET', ARGV[1] .. h) "
                                    "  if v then out[#out + 1] = h; out[#out + 1] = v "
                                    "  else redis.call('SREM', KEYS[1], h) end "
                                    "end "
                                    "return out";

/* KEYS: index. ARGV: prefix, hash or "", only (1|0). Answers the number of live records deleted. */
static const char sess_revoke_lua[] =
    "local n = 0 "
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "  local hit = (h == ARGV[2]) "
    "  if (ARGV[3] == '1' and hit) or (ARGV[3] ~= '1' and not hit) then "
    "    n = n + redis.call('DEL', ARGV[1] .. h) "
    "    redis.call('SREM', KEYS[1], h) "
    "  end "
    "end "
    "return n";

/* KEYS: record. ARGV: json. Rewrites an existing record, keeping its TTL. */
static const char sess_rewrite_lua[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
                                       "redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') "
                                       "return 1";

static int
sess_acct_key(const char *account_id, char *key, size_t cap)
{
    if (account_id == NULL || account_id[0] == '\0' || strlen(account_id) > 36) {
        return PHR_EINVAL;
    }
    int n = snprintf(key, cap, SESS_ACCT_PREFIX "%s" SESS_ACCT_SUFFIX, account_id);
    return n > 0 && (size_t)n < cap ? PHR_OK : PHR_EINVAL;
}

int
sess_store(kv_t *kv, const char *token, const sess_t *s, sess_done_cb cb, void *ud)
{
    char hash[SESS_HASH_LEN + 1];
    char key[SESS_KEY_LEN + 1];
    char idx[SESS_ACCT_KEY_MAX];
    char num[24], until_s[24];
    const char *argv[9];
    size_t argvlen[9];
    char *json;
    int rc;

    if (token == NULL || s == NULL || sess_acct_key(s->account_id, idx, sizeof(idx)) != PHR_OK) {
        return PHR_EINVAL;
    }
    int64_t now = tu_now_ms();
    int64_t until =
        s->idle_expires_ms < s->absolute_expires_ms ? s->idle_expires_ms : s->absolute_expires_ms;
    int64_t ttl_s = (until - now) / 1000;
    if (ttl_s <= 0) {
        return PHR_EINVAL;
    }
    json = sess_to_json(s);
    if (json == NULL) {
        return PHR_ENOMEM;
    }
    sess_token_hash(token, hash);
    sess_key(hash, key);
    int n = snprintf(num, sizeof(num), "%lld", (long long)ttl_s);
    int64_t until_epoch_s = s->absolute_expires_ms / 1000 + 1;
    int m = snprintf(until_s, sizeof(until_s), "%lld", (long long)until_epoch_s);
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = sess_store_lua;
    argvlen[1] = sizeof(sess_store_lua) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = key;
    argvlen[3] = SESS_KEY_LEN;
    argv[4] = idx;
    argvlen[4] = strlen(idx);
    argv[5] = json;
    argvlen[5] = strlen(json);
    argv[6] = num;
    argvlen[6] = (size_t)n;
    argv[7] = hash;
    argvlen[7] = SESS_HASH_LEN;
    argv[8] = until_s;
    argvlen[8] = (size_t)m;
    rc = sess_send_done(kv, cb, ud, 9, argv, argvlen);
    free(json);
    return rc;
}

static int
sess_hash_valid(const char *h)
{
    return h != NULL && strlen(h) == SESS_HASH_LEN &&
           strspn(h, "0123456789abcdef") == SESS_HASH_LEN;
}

int
sess_rewrite(kv_t *kv, const sess_t *s, sess_done_cb cb, void *ud)
{
    char key[SESS_KEY_LEN + 1];
    const char *argv[5];
    size_t argvlen[5];
    char *json;
    int rc;

    if (s == NULL || !sess_hash_valid(s->token_hash)) {
        return PHR_EINVAL;
    }
    json = sess_to_json(s);
    if (json == NULL) {
        return PHR_ENOMEM;
    }
    sess_key(s->token_hash, key);
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = sess_rewrite_lua;
    argvlen[1] = sizeof(sess_rewrite_lua) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = key;
    argvlen[3] = SESS_KEY_LEN;
    argv[4] = json;
    argvlen[4] = strlen(json);
    rc = sess_send_done(kv, cb, ud, 5, argv, argvlen);
    free(json);
    return rc;
}

typedef struct {
    sess_list_cb list_cb;
    sess_count_cb count_cb;
    void *ud;
} sess_multi_t;

static void
sess_list_done(int rc, redisReply *reply, void *ud)
{
    sess_multi_t *m = ud;
    sess_t *items = NULL;
    size_t n = 0;

    if (rc == PHR_OK && reply->type != REDIS_REPLY_ARRAY) {
        log_error("session: list failed: %.120s",
                  reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "bad reply");
        rc = PHR_EUNAVAIL;
    }
    if (rc == PHR_OK && reply->elements > 0) {
        items = calloc(reply->elements / 2 + 1, sizeof(*items));
        if (items == NULL) {
            rc = PHR_ENOMEM;
        }
    }
    for (size_t i = 0; rc == PHR_OK && i + 1 < reply->elements; i += 2) {
        const redisReply *h = reply->element[i];
        const redisReply *v = reply->element[i + 1];
        if (h->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            h->len != SESS_HASH_LEN || strlen(v->str) != v->len ||
            sess_from_json(v->str, &items[n]) != PHR_OK) {
            continue; /* corrupt: not listed (lookup treats it as absent too) */
        }
        memcpy(items[n].token_hash, h->str, SESS_HASH_LEN);
        items[n].token_hash[SESS_HASH_LEN] = '\0';
        n++;
    }
    m->list_cb(rc, rc == PHR_OK ? items : NULL, rc == PHR_OK ? n : 0, m->ud);
    free(items);
    free(m);
}

int
sess_list(kv_t *kv, const char *account_id, sess_list_cb cb, void *ud)
{
    char idx[SESS_ACCT_KEY_MAX];
    const char *argv[5];
    size_t argvlen[5];
    sess_multi_t *m;
    int rc;

    if (cb == NULL || sess_acct_key(account_id, idx, sizeof(idx)) != PHR_OK) {
        return PHR_EINVAL;
    }
    if (!kv_ready(kv)) {
        return PHR_EUNAVAIL;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        return PHR_ENOMEM;
    }
    m->list_cb = cb;
    m->ud = ud;
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = sess_list_lua;
    argvlen[1] = sizeof(sess_list_lua) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = idx;
    argvlen[3] = strlen(idx);
    argv[4] = SESS_KEY_PREFIX;
    argvlen[4] = sizeof(SESS_KEY_PREFIX) - 1;
    rc = kv_command_argv(kv, sess_list_done, m, 5, argv, argvlen);
    if (rc != PHR_OK) {
        free(m);
    }
    return rc;
}

static void
sess_revoke_done(int rc, redisReply *reply, void *ud)
{
    sess_multi_t *m = ud;
    long count = 0;

    if (rc == PHR_OK && reply->type != REDIS_REPLY_INTEGER) {
        log_error("session: revoke failed: %.120s",
                  reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "bad reply");
        rc = PHR_EUNAVAIL;
    }
    if (rc == PHR_OK) {
        count = (long)reply->integer;
    }
    if (m->count_cb != NULL) {
        m->count_cb(rc, count, m->ud);
    }
    free(m);
}

int
sess_revoke(kv_t *kv, const char *account_id, const char *token_hash, int only, sess_count_cb cb,
            void *ud)
{
    char idx[SESS_ACCT_KEY_MAX];
    const char *argv[7];
    size_t argvlen[7];
    sess_multi_t *m;
    int rc;

    if (sess_acct_key(account_id, idx, sizeof(idx)) != PHR_OK ||
        (token_hash != NULL && !sess_hash_valid(token_hash)) || (only && token_hash == NULL)) {
        return PHR_EINVAL;
    }
    if (!kv_ready(kv)) {
        return PHR_EUNAVAIL;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        return PHR_ENOMEM;
    }
    m->count_cb = cb;
    m->ud = ud;
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = sess_revoke_lua;
    argvlen[1] = sizeof(sess_revoke_lua) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = idx;
    argvlen[3] = strlen(idx);
    argv[4] = SESS_KEY_PREFIX;
    argvlen[4] = sizeof(SESS_KEY_PREFIX) - 1;
    argv[5] = token_hash != NULL ? token_hash : "";
    argvlen[5] = strlen(argv[5]);
    argv[6] = only ? "1" : "0";
    argvlen[6] = 1;
    rc = kv_command_argv(kv, sess_revoke_done, m, 7, argv, argvlen);
    if (rc != PHR_OK) {
        free(m);
    }
    return rc;
}

int
sess_delete_hash(kv_t *kv, const char *token_hash, sess_done_cb cb, void *ud)
{
    char key[SESS_KEY_LEN + 1];
    const char *argv[2];
    size_t argvlen[2];

    if (token_hash == NULL || strlen(token_hash) != SESS_HASH_LEN ||
        strspn(token_hash, "0123456789abcdef") != SESS_HASH_LEN) {
        return PHR_EINVAL;
    }
    sess_key(token_hash, key);
    argv[0] = "DEL";
    argvlen[0] = 3;
    argv[1] = key;
    argvlen[1] = SESS_KEY_LEN;
    return sess_send_done(kv, cb, ud, 2, argv, argvlen);
}
