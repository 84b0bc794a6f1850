/*
 * ctl.c - helpers of the phrctl verbs org, status and retention (ctl.h).
 */
#include <curl/curl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aev.h"
#include "ctl.h"
#include "err.h"
#include "hex.h"
#include "jsonx.h"

#define CTL_KEY_MAX 512

int
ctl_cfg(cfg_t *cfg, const char *svc)
{
    char err[256];

    if (cfg_load(cfg, svc, err, sizeof(err)) != PHR_OK) {
        fprintf(stderr, "phrctl: configuration: %s\n", err);
        return PHR_EINVAL;
    }
    return PHR_OK;
}

PGconn *
ctl_pg_connect(const cfg_t *cfg, const char *svc)
{
    char name[64], pw[512], conninfo[1024];

    snprintf(name, sizeof(name), "pg_%s.password", svc);
    int rc = cfg_read_secret(cfg, name, pw, sizeof(pw));
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: secret %s in %s: %s\n", name, cfg->secrets_dir, phr_err_str(rc));
        return NULL;
    }
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=%d dbname=phr_%s user=phr_%s password=%s "
             "application_name=phrctl connect_timeout=10",
             cfg->pg_host, cfg->pg_port, svc, svc, pw);
    explicit_bzero(pw, sizeof(pw));
    PGconn *conn = PQconnectdb(conninfo);
    explicit_bzero(conninfo, sizeof(conninfo));
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "phrctl: cannot connect to the %s database: %s", svc, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int
ctl_exec(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **out)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int rc = PHR_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "23505") == 0) {
            rc = PHR_ECONFLICT;
        } else {
            fprintf(stderr, "phrctl: database: %s", PQresultErrorMessage(res));
            rc = PHR_EIO;
        }
    }
    if (out != NULL && rc == PHR_OK) {
        *out = res;
    } else {
        PQclear(res);
    }
    return rc;
}


int
ctl_pepper(const cfg_t *cfg, pwhash_pepper_t *pp)
{
    char hex[130];
    int rc = cfg_read_secret(cfg, "auth_pepper_v1", hex, sizeof(hex));

    memset(pp, 0, sizeof(*pp));
    if (rc == PHR_ENOTFOUND) {
        return PHR_OK;
    }
    if (rc != PHR_OK || strlen(hex) != 64) {
        explicit_bzero(hex, sizeof(hex));
        fprintf(stderr, "phrctl: secret auth_pepper_v1: %s\n",
                rc != PHR_OK ? phr_err_str(rc) : "not 64 hex characters");
        return rc != PHR_OK ? rc : PHR_EINVAL;
    }
    if (hex_decode(hex, pp->key, 32) != PHR_OK) {
        explicit_bzero(hex, sizeof(hex));
        explicit_bzero(pp, sizeof(*pp));
        fprintf(stderr, "phrctl: secret auth_pepper_v1: not hex\n");
        return PHR_EINVAL;
    }
    explicit_bzero(hex, sizeof(hex));
    pp->keylen = 32;
    snprintf(pp->id, sizeof(pp->id), "v1");
    return PHR_OK;
}

char *
ctl_audit_json(const char *service, const char *action, const char *type, const char *id,
               const char *org_id, json_object *details, char *event_id)
{
    aev_t ev;
    struct passwd pwbuf, *pw = NULL;
    char buf[1024];

    aev_init(&ev, service, action, NULL, NULL);
    ev.actor_kind = "operator";
    snprintf(ev.user_agent, sizeof(ev.user_agent), "phrctl");
    ev.target_type = type;
    ev.target_id = id;
    ev.target_org_id = org_id;
    if (details == NULL) {
        details = json_object_new_object();
    }
    /* who ran it: phrctl has no login, the operating system account stands in */
    if (getpwuid_r(geteuid(), &pwbuf, buf, sizeof(buf), &pw) == 0 && pw != NULL &&
        jx_utf8_valid(pw->pw_name, strlen(pw->pw_name))) {
        json_object_object_add(details, "os_user", json_object_new_string(pw->pw_name));
    }
    ev.details = details;
    return aev_json(&ev, event_id);
}

void
ctl_print_json(json_object *o)
{
    size_t len;
    const char *txt = jx_to_string(o, &len);

    printf("%s\n", txt != NULL ? txt : "null");
    fflush(stdout);
}

typedef struct {
    char *out;
    size_t len, cap;
} ctl_buf_t;

static size_t
ctl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    ctl_buf_t *b = ud;
    size_t n = size * nmemb;
    size_t room = b->cap - 1 - b->len;
    size_t take = n < room ? n : room;

    memcpy(b->out + b->len, ptr, take);
    b->len += take;
    b->out[b->len] = '\0';
    return n;
}

int
ctl_http(const cfg_t *cfg, int svc_idx, const char *method, const char *path, const char *caller,
         const char *body, int timeout_ms, int *status, char *out, size_t outlen)
{
    char url[512], key[CTL_KEY_MAX], name[64], hdr[CTL_KEY_MAX + 32], chdr[64];
    char errbuf[CURL_ERROR_SIZE] = "";
    ctl_buf_t b = {out, 0, outlen};
    struct curl_slist *hdrs = NULL;
    int rc = PHR_EUNAVAIL;

    out[0] = '\0';
    *status = 0;
    snprintf(url, sizeof(url), "http://%s:%d%s", cfg->host[svc_idx], cfg->port[svc_idx], path);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(out, outlen, "libcurl: cannot start");
        return PHR_ENOMEM;
    }
    if (caller != NULL) {
        snprintf(name, sizeof(name), "svc_%s.key", caller);
        int krc = cfg_read_secret(cfg, name, key, sizeof(key));
        if (krc != PHR_OK) {
            snprintf(out, outlen, "secret %s: %s", name, phr_err_str(krc));
            curl_easy_cleanup(c);
            return PHR_EINVAL;
        }
        snprintf(chdr, sizeof(chdr), "x-phr-caller: %s", caller);
        snprintf(hdr, sizeof(hdr), "x-phr-credential: %s", key);
        explicit_bzero(key, sizeof(key));
        hdrs = curl_slist_append(hdrs, chdr);
        hdrs = curl_slist_append(hdrs, hdr);
        explicit_bzero(hdr, sizeof(hdr));
    }
    if (body != NULL) {
        hdrs = curl_slist_append(hdrs, "content-type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    hdrs = curl_slist_append(hdrs, "user-agent: phrctl");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ctl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        *status = (int)code;
        rc = PHR_OK;
    } else {
        snprintf(out, outlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    curl_easy_cleanup(c);
    /* the list held the credential header */
    for (struct curl_slist *s = hdrs; s != NULL; s = s->next) {
        explicit_bzero(s->data, strlen(s->data));
    }
    curl_slist_free_all(hdrs);
    return rc;
}
