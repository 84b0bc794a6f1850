/*
 * checkpoint.c - the checkpoint signing key and signed checkpoints (chain.h):
 * Ed25519 over (seq, hash, signed_at), stored in `checkpoints`, never deleted.
 * The writer adds one every audit_checkpoint_events events (ingest.c) and the
 * maintenance timer every audit_checkpoint_s seconds with new events.
 */
#include <inttypes.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "audit.h"
#include "err.h"
#include "hex.h"
#include "log.h"

static const char ckpt_sql_insert[] =
    "INSERT INTO checkpoints (seq, hash, signed_at, signature, key_id)"
    " VALUES ($1::bigint, decode($2, 'hex'), $3::timestamptz, decode($4, 'hex'), $5)";

static EVP_PKEY *
ckpt_read_key(audit_t *a, const char *name, int private)
{
    char pem[4096];
    const cfg_t *cfg = svc_cfg(a->svc);
    int rc = cfg_read_secret(cfg, name, pem, sizeof(pem));
    EVP_PKEY *key = NULL;

    if (rc != PHR_OK) {
        log_error("secret %s: %s", name, phr_err_str(rc));
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio != NULL) {
        key = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                      : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    if (!private && strlen(pem) < sizeof(a->pub_pem)) {
        memcpy(a->pub_pem, pem, strlen(pem) + 1);
    }
    explicit_bzero(pem, sizeof(pem));
    if (key == NULL || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        log_error("%s is not an Ed25519 key", name);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

int
audit_keys_load(audit_t *a)
{
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned int mdlen = 0;

    a->pub_key = ckpt_read_key(a, "audit_signing.pub.pem", 0);
    a->sign_key = ckpt_read_key(a, "audit_signing.pem", 1);
    if (a->pub_key == NULL || a->sign_key == NULL) {
        return PHR_EINVAL;
    }
    int len = i2d_PUBKEY(a->pub_key, &der);
    if (len <= 0 || EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(der);
        return PHR_EGENERIC;
    }
    OPENSSL_free(der);
    hex_encode(md, 8, a->key_id);
    /* the two halves must belong together, or no checkpoint would ever verify */
    unsigned char h[CHAIN_HASH_LEN] = {0}, sig[CHAIN_SIG_LEN];
    if (chain_checkpoint_sign(a->sign_key, 1, h, 0, sig) != 0 ||
        !chain_checkpoint_check(a->pub_key, 1, h, 0, sig, sizeof(sig))) {
        log_error("audit_signing.pem and audit_signing.pub.pem are not one key pair");
        return PHR_EINVAL;
    }
    return PHR_OK;
}

int
audit_checkpoint_add(audit_t *a, db_txn_t *txn, int64_t seq,
                     const unsigned char hash[CHAIN_HASH_LEN], db_cb cb, void *ud)
{
    unsigned char sig[CHAIN_SIG_LEN];
    char seqs[24], hashhex[2 * CHAIN_HASH_LEN + 1], sighex[2 * CHAIN_SIG_LEN + 1], at[48];
    struct timeval tv;

    gettimeofday(&tv, NULL);
    int64_t now_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    if (chain_checkpoint_sign(a->sign_key, seq, hash, now_us, sig) != 0) {
        log_error("audit checkpoint: signing failed");
        return PHR_EGENERIC;
    }
    snprintf(seqs, sizeof(seqs), "%" PRId64, seq);
    hex_encode(hash, CHAIN_HASH_LEN, hashhex);
    hex_encode(sig, CHAIN_SIG_LEN, sighex);
    chain_format_utc(now_us, at, sizeof(at));
    const char *params[5] = {seqs, hashhex, at, sighex, a->key_id};
    return db_txn_query(txn, ckpt_sql_insert, 5, params, cb, ud);
}
