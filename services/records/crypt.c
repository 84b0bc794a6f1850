/*
 * crypt.c - AES-256-GCM sealing of record payloads under versioned data keys
 * (OpenSSL EVP), and the HMAC used for cursors and idempotency hashes.
 */
#include "crypt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fmt.h"
#include "hex.h"

#define RCRYPT_NONCE_LEN 12
#define RCRYPT_TAG_LEN 16

/* The keys themselves: behind a pointer, so that opening (const) can load a new version. */
typedef struct rcrypt_keys {
    int present[RCRYPT_MAX_KEYS + 1];
    unsigned char keys[RCRYPT_MAX_KEYS + 1][RCRYPT_KEY_LEN];
    unsigned char mac_key[RCRYPT_MAC_LEN];
    int current;
    EVP_CIPHER *gcm; /* AES-256-GCM fetched once (EVP_aes_256_gcm() looks it up on every init) */
    /* per key: a context with the key schedule made (made on first open, reused per record) */
    EVP_CIPHER_CTX *open_ctx[RCRYPT_MAX_KEYS + 1];
} rcrypt_keys_t;

struct rcrypt {
    rcrypt_keys_t *k;
    int have_cfg; /* rcrypt_load ran: |cfg| locates the secrets for rcrypt_open */
    cfg_t cfg;
};

static const char rcrypt_mac_label[] = "phr-records-mac-v1";

rcrypt_t *
rcrypt_create(void)
{
    rcrypt_t *rc = calloc(1, sizeof(rcrypt_t));

    if (rc != NULL && (rc->k = calloc(1, sizeof(rcrypt_keys_t))) == NULL) {
        free(rc);
        return NULL;
    }
    if (rc != NULL && (rc->k->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL) {
        rcrypt_free(rc);
        return NULL;
    }
    return rc;
}

void
rcrypt_free(rcrypt_t *rc)
{
    if (rc != NULL) {
        EVP_CIPHER_free(rc->k->gcm);
        for (int i = 0; i <= RCRYPT_MAX_KEYS; i++) {
            EVP_CIPHER_CTX_free(rc->k->open_ctx[i]);
        }
        OPENSSL_cleanse(rc->k, sizeof(*rc->k));
        free(rc->k);
        free(rc);
    }
}

static int
rcrypt_put_key(rcrypt_keys_t *k, int key_id, const unsigned char key[RCRYPT_KEY_LEN])
{
    unsigned int maclen = RCRYPT_MAC_LEN;

    if (key_id < 1 || key_id > RCRYPT_MAX_KEYS) {
        return PHR_EINVAL;
    }
    memcpy(k->keys[key_id], key, RCRYPT_KEY_LEN);
    k->present[key_id] = 1;
    EVP_CIPHER_CTX_free(k->open_ctx[key_id]);
    k->open_ctx[key_id] = NULL;
    if (key_id > k->current) {
        k->current = key_id;
        if (HMAC(EVP_sha256(), key, RCRYPT_KEY_LEN, (const unsigned char *)rcrypt_mac_label,
                 sizeof(rcrypt_mac_label) - 1, k->mac_key, &maclen) == NULL) {
            return PHR_EGENERIC;
        }
    }
    return PHR_OK;
}

int
rcrypt_add_key(rcrypt_t *rc, int key_id, const unsigned char key[RCRYPT_KEY_LEN])
{
    return rc != NULL ? rcrypt_put_key(rc->k, key_id, key) : PHR_EINVAL;
}


/* Reads secret data_key_v<id> into |k|: PHR_OK, PHR_ENOTFOUND, PHR_EINVAL (malformed). */
static int
rcrypt_read_key(rcrypt_keys_t *k, const cfg_t *cfg, int id)
{
    char name[32], buf[160];
    unsigned char key[RCRYPT_KEY_LEN];

    snprintf(name, sizeof(name), "data_key_v%d", id);
    int rc = cfg_read_secret(cfg, name, buf, sizeof(buf));
    if (rc != PHR_OK) {
        return rc;
    }
    rc = hex_decode(buf, key, sizeof(key));
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc == PHR_OK) {
        rc = rcrypt_put_key(k, id, key);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc == PHR_OK ? PHR_OK : PHR_EINVAL;
}

int
rcrypt_load(rcrypt_t *rc, const cfg_t *cfg)
{
    int found = 0;

    rc->cfg = *cfg;
    rc->have_cfg = 1;
    for (int id = 1; id <= RCRYPT_MAX_KEYS; id++) {
        int rc2 = rcrypt_read_key(rc->k, cfg, id);
        if (rc2 == PHR_ENOTFOUND) {
            continue;
        }
        if (rc2 != PHR_OK) {
            return rc2;
        }
        found++;
    }
    return found > 0 ? PHR_OK : PHR_ENOTFOUND;
}

int
rcrypt_current(const rcrypt_t *rc)
{
    return rc != NULL ? rc->k->current : 0;
}

void
rcrypt_aad(char *out, size_t cap, const char *id, const char *patient_id, const char *type)
{
    size_t n = fmt_cat(out, cap, 0, "rec1|");
    n = fmt_cat(out, cap, n, id);
    n = fmt_cat(out, cap, n, "|");
    n = fmt_cat(out, cap, n, patient_id);
    n = fmt_cat(out, cap, n, "|");
    fmt_cat(out, cap, n, type);
}

int
rcrypt_seal(const rcrypt_t *rc, const char *aad, const char *plain, size_t len, int *key_id,
            char **hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char *buf = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int outl = 0, finl = 0, ret = PHR_EGENERIC;
    size_t total = RCRYPT_NONCE_LEN + len + RCRYPT_TAG_LEN;

    *hex = NULL;
    if (rc == NULL || rc->k->current == 0 || len > (size_t)1 << 24) {
        return PHR_EINVAL;
    }
    buf = malloc(total);
    char *out = malloc(2 + 2 * total + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (buf == NULL || out == NULL || ctx == NULL) {
        ret = PHR_ENOMEM;
        goto fail;
    }
    if (RAND_bytes(buf, RCRYPT_NONCE_LEN) != 1 ||
        EVP_EncryptInit_ex(ctx, rc->k->gcm, NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, RCRYPT_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, rc->k->keys[rc->k->current], buf) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(ctx, buf + RCRYPT_NONCE_LEN, &outl, (const unsigned char *)plain,
                          (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + RCRYPT_NONCE_LEN + outl, &finl) != 1 ||
        (size_t)outl + (size_t)finl != len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, RCRYPT_TAG_LEN,
                            buf + RCRYPT_NONCE_LEN + len) != 1) {
        goto fail;
    }
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < total; i++) {
        out[2 + 2 * i] = digits[buf[i] >> 4];
        out[3 + 2 * i] = digits[buf[i] & 15];
    }
    out[2 + 2 * total] = '\0';
    *hex = out;
    *key_id = rc->k->current;
    out = NULL;
    ret = PHR_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    free(out);
    return ret;
}

/* The decryption context of key |key_id| (present), its key schedule made once. NULL: no memory. */
static EVP_CIPHER_CTX *
rcrypt_open_ctx(rcrypt_keys_t *k, int key_id)
{
    EVP_CIPHER_CTX *ctx = k->open_ctx[key_id];

    if (ctx == NULL && (ctx = EVP_CIPHER_CTX_new()) != NULL) {
        if (EVP_DecryptInit_ex(ctx, k->gcm, NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, RCRYPT_NONCE_LEN, NULL) != 1 ||
            EVP_DecryptInit_ex(ctx, NULL, NULL, k->keys[key_id], NULL) != 1) {
            EVP_CIPHER_CTX_free(ctx);
            return NULL;
        }
        k->open_ctx[key_id] = ctx;
    }
    return ctx;
}

int
rcrypt_open(const rcrypt_t *rc, const char *aad, int key_id, const char *hex, char **plain,
            size_t *len)
{
    unsigned char *buf = NULL;
    char *out = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int outl = 0, finl = 0, ret = PHR_EINVAL;

    *plain = NULL;
    if (rc == NULL || key_id < 1 || key_id > RCRYPT_MAX_KEYS || hex == NULL || hex[0] != '\\' ||
        hex[1] != 'x') {
        return PHR_EINVAL;
    }
    /* a version added since the load (a rotation by another instance or phrctl): load it */
    if (!rc->k->present[key_id] &&
        (!rc->have_cfg || rcrypt_read_key(rc->k, &rc->cfg, key_id) != PHR_OK)) {
        return PHR_EINVAL;
    }
    size_t hexlen = strlen(hex + 2);
    if (hexlen % 2 != 0 || hexlen / 2 < RCRYPT_NONCE_LEN + RCRYPT_TAG_LEN) {
        return PHR_EINVAL;
    }
    size_t total = hexlen / 2;
    size_t clen = total - RCRYPT_NONCE_LEN - RCRYPT_TAG_LEN;
    buf = malloc(total);
    out = malloc(clen + 1);
    ctx = rcrypt_open_ctx(rc->k, key_id);
    if (buf == NULL || out == NULL || ctx == NULL) {
        ret = PHR_ENOMEM;
        goto done;
    }
    if (hex_decode(hex + 2, buf, total) != PHR_OK) {
        goto done;
    }
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, buf) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out, &outl, buf + RCRYPT_NONCE_LEN, (int)clen) !=
            1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, RCRYPT_TAG_LEN,
                            buf + RCRYPT_NONCE_LEN + clen) != 1 ||
        EVP_DecryptFinal_ex(ctx, (unsigned char *)out + outl, &finl) != 1) {
        goto done;
    }
    out[clen] = '\0';
    *plain = out;
    if (len != NULL) {
        *len = clen;
    }
    out = NULL;
    ret = PHR_OK;
done:
    free(buf);
    if (out != NULL) {
        OPENSSL_cleanse(out, clen + 1);
        free(out);
    }
    return ret;
}

int
rcrypt_mac(const rcrypt_t *rc, const void *data, size_t len, unsigned char out[RCRYPT_MAC_LEN])
{
    unsigned int maclen = RCRYPT_MAC_LEN;

    if (rc == NULL || rc->k->current == 0) {
        return PHR_EINVAL;
    }
    if (HMAC(EVP_sha256(), rc->k->mac_key, RCRYPT_MAC_LEN, data, len, out, &maclen) == NULL) {
        return PHR_EGENERIC;
    }
    return PHR_OK;
}
