/*
 * phr-audit - the tamper-evident record of who did what to whose data.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "svc.h"

extern const db_migration_t audit_migrations[];

#define AUDIT_PEM_MAX 1024

typedef struct {
    char pem[AUDIT_PEM_MAX];
    char key_id[17];
} audit_key_t;

static audit_key_t audit_key;

/* Loads the checkpoint-signing public key and derives its id (SHA-256 of the DER, 16 hex). */
static int
audit_load_key(svc_t *svc)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned int mdlen = 0;
    int rc = cfg_read_secret(svc_cfg(svc), "audit_signing.pub.pem", audit_key.pem,
                             sizeof(audit_key.pem));

    if (rc != PHR_OK) {
        log_error("secret audit_signing.pub.pem: %s", phr_err_str(rc));
        return rc;
    }
    BIO *bio = BIO_new_mem_buf(audit_key.pem, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int len = pkey ? i2d_PUBKEY(pkey, &der) : -1;
    if (pkey == NULL || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519 || len <= 0 ||
        EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        log_error("audit_signing.pub.pem is not an Ed25519 public key");
        rc = PHR_EINVAL;
    } else {
        for (size_t i = 0; i < 8; i++) {
            audit_key.key_id[2 * i] = hex[md[i] >> 4];
            audit_key.key_id[2 * i + 1] = hex[md[i] & 15];
        }
        audit_key.key_id[16] = '\0';
    }
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return rc;
}

static void
audit_public_key(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "algorithm", json_object_new_string("Ed25519"));
    json_object_object_add(o, "key_id", json_object_new_string(audit_key.key_id));
    json_object_object_add(o, "public_key_pem", json_object_new_string(audit_key.pem));
    h2s_respond_json(req, 200, o);
}

static const svc_route_t audit_routes[] = {
    {"GET", "/api/v1/audit/public-key", audit_public_key, SVC_PUBLIC, 0},
};

static const svc_routes_t audit_route_set = SVC_ROUTES(audit_routes);
static const svc_routes_t *const audit_route_sets[] = {&audit_route_set};

int
main(int argc, char **argv)
{
    static const svc_def_t def = {
        .name = "audit",
        .migrations = audit_migrations,
        .route_sets = audit_route_sets,
        .nroute_sets = 1,
        .init = audit_load_key,
    };
    return svc_main(&def, argc, argv);
}
