/*
 * audit.c - phrctl audit verify: recomputes the audit log's hash chain and
 * checks every checkpoint signature with the public key from the secrets dir
 * (audit_signing.pub.pem), reading the audit database a page at a time (the
 * same walk as GET /api/v1/admin/audit/verify, services/audit/chain.c).
 *
 * Output: one line, "ok: N events, C checkpoints" or "FAILED at seq S: reason
 * (N events checked)", or with --json the route's answer {ok, checked,
 * checkpoints_checked, first_bad_seq, reason}.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/audit/chain.h"
#include "config.h"
#include "err.h"
#include "hex.h"
#include "phrctl_audit.h"

#define PHRCTL_AUDIT_PAGE 5000
#define PHRCTL_AUDIT_FAILED 4

static int
phrctl_audit_usage(void)
{
    fprintf(stderr, "usage: phrctl audit verify [--from-seq N] [--to-seq M] [--json]\n");
    return 2;
}

static int
phrctl_audit_num(const char *s, int64_t *out)
{
    char *end = NULL;

    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || s[0] == '+' || v < 1) {
        return -1;
    }
    *out = v;
    return 0;
}

static PGconn *
phrctl_audit_connect(const cfg_t *cfg)
{
    char pw[512], conninfo[1024];
    int rc = cfg_read_secret(cfg, "pg_audit.password", pw, sizeof(pw));

    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: secret pg_audit.password in %s: %s\n", cfg->secrets_dir,
                phr_err_str(rc));
        return NULL;
    }
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=%d dbname=phr_audit user=phr_audit password=%s "
             "application_name=phrctl connect_timeout=10",
             cfg->pg_host, cfg->pg_port, pw);
    explicit_bzero(pw, sizeof(pw));
    PGconn *conn = PQconnectdb(conninfo);
    explicit_bzero(conninfo, sizeof(conninfo));
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "phrctl: cannot connect to the audit database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static EVP_PKEY *
phrctl_audit_pubkey(const cfg_t *cfg)
{
    char pem[4096];
    EVP_PKEY *key = NULL;

    if (cfg_read_secret(cfg, "audit_signing.pub.pem", pem, sizeof(pem)) != PHR_OK) {
        fprintf(stderr, "phrctl: cannot read audit_signing.pub.pem in %s\n", cfg->secrets_dir);
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio != NULL) {
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    if (key == NULL || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        fprintf(stderr, "phrctl: audit_signing.pub.pem is not an Ed25519 public key\n");
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/* One statement; NULL (reported) unless it returned rows. */
static PGresult *
phrctl_audit_query(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "phrctl: query failed: %s", PQerrorMessage(conn));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Walks the chain; 0 done (verdict in |v|), -1 database error. */
static int
phrctl_audit_walk(PGconn *conn, chain_verifier_t *v, int64_t from, int64_t to, EVP_PKEY *pub)
{
    char from_s[24], to_s[24], bufs[3][24];
    const char *params[4];
    unsigned char prev[CHAIN_HASH_LEN] = {0};
    const unsigned char *pp = NULL;
    PGresult *res = phrctl_audit_query(conn, chain_sql_dropped, 0, NULL);

    if (res == NULL) {
        return -1;
    }
    int dropped = PQgetvalue(res, 0, 0)[0] == 't';
    int64_t head = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (to > head) {
        to = head;
    }
    snprintf(from_s, sizeof(from_s), "%" PRId64, from);
    snprintf(to_s, sizeof(to_s), "%" PRId64, to);
    params[0] = from_s;
    if ((res = phrctl_audit_query(conn, chain_sql_prev, 1, params)) == NULL) {
        return -1;
    }
    if ((from == 1 && !dropped) ||
        (PQntuples(res) == 1 && hex_decode(PQgetvalue(res, 0, 0), prev, CHAIN_HASH_LEN) == 0)) {
        pp = prev;
    }
    PQclear(res);
    if (chain_verifier_init(v, from, to, pp, pub) != 0) {
        return -1;
    }
    for (;;) {
        chain_verifier_params(v, PHRCTL_AUDIT_PAGE, bufs, params);
        if ((res = phrctl_audit_query(conn, chain_sql_page, 4, params)) == NULL) {
            return -1;
        }
        int n = PQntuples(res);
        chain_verifier_feed(v, res);
        PQclear(res);
        if (v->first_bad_seq != 0) {
            return 0;
        }
        if (n < PHRCTL_AUDIT_PAGE) {
            break;
        }
    }
    params[0] = to_s;
    if ((res = phrctl_audit_query(conn, chain_sql_tail, 1, params)) == NULL) {
        return -1;
    }
    chain_verifier_finish(v, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
    return 0;
}

int
phrctl_audit(int argc, char **argv)
{
    int64_t from = 1, to = INT64_MAX;
    int as_json = 0, rc;
    cfg_t cfg;
    char err[256];
    chain_verifier_t v;

    if (argc < 1 || strcmp(argv[0], "verify") != 0) {
        return phrctl_audit_usage();
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--from-seq") == 0) {
            if (phrctl_audit_num(argv[++i], &from) != 0) {
                return phrctl_audit_usage();
            }
        } else if (i + 1 < argc && strcmp(argv[i], "--to-seq") == 0) {
            if (phrctl_audit_num(argv[++i], &to) != 0) {
                return phrctl_audit_usage();
            }
        } else {
            return phrctl_audit_usage();
        }
    }
    if (to < from) {
        return phrctl_audit_usage();
    }
    if (cfg_load(&cfg, "audit", err, sizeof(err)) != PHR_OK) {
        fprintf(stderr, "phrctl: configuration: %s\n", err);
        return 1;
    }
    EVP_PKEY *pub = phrctl_audit_pubkey(&cfg);
    PGconn *conn = pub != NULL ? phrctl_audit_connect(&cfg) : NULL;
    if (conn == NULL) {
        EVP_PKEY_free(pub);
        return 1;
    }
    memset(&v, 0, sizeof(v));
    rc = phrctl_audit_walk(conn, &v, from, to, pub);
    PQfinish(conn);
    if (rc == 0) {
        int ok = v.first_bad_seq == 0;
        if (as_json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "ok", json_object_new_boolean(ok));
            json_object_object_add(o, "checked", json_object_new_int64(v.checked));
            json_object_object_add(o, "checkpoints_checked", json_object_new_int64(v.checkpoints));
            json_object_object_add(o, "first_bad_seq",
                                   ok ? NULL : json_object_new_int64(v.first_bad_seq));
            json_object_object_add(o, "reason", ok ? NULL : json_object_new_string(v.reason));
            printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
        } else if (ok) {
            printf("ok: %" PRId64 " events, %" PRId64 " checkpoints verified\n", v.checked,
                   v.checkpoints);
        } else {
            printf("FAILED at seq %" PRId64 ": %s (%" PRId64 " events verified before it)\n",
                   v.first_bad_seq, v.reason, v.checked);
        }
        rc = ok ? 0 : PHRCTL_AUDIT_FAILED;
    } else {
        rc = 1;
    }
    chain_verifier_fini(&v);
    EVP_PKEY_free(pub);
    return rc;
}
