/*
 * itest - integration tests over the real stack. Prints one line per case
 * and ends with "N passed, N failed".
 */
#include "itest.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

int it_failed;
int it_wait_gateway_429 = 1;

/* The last few error responses of the running case, printed when a check fails. */
#define IT_TRAIL 4
static char it_trail[IT_TRAIL][320];
static unsigned it_trail_n;

static void
it_trail_add(const char *method, const char *path, const it_resp_t *r)
{
    snprintf(it_trail[it_trail_n++ % IT_TRAIL], sizeof(it_trail[0]), "%s %.80s -> %ld %.200s",
             method, path, r->status, r->body != NULL ? r->body : "");
}

void
it_fail(const char *file, int line, const char *what)
{
    printf("    check failed at %s:%d: %s\n", file, line, what);
    unsigned first = it_trail_n > IT_TRAIL ? it_trail_n - IT_TRAIL : 0;
    for (unsigned i = first; i < it_trail_n; i++) {
        printf("    recent error response: %s\n", it_trail[i % IT_TRAIL]);
    }
    it_failed = 1;
}

const char *
it_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "itest: environment variable %s is not set (run through tests/run.sh)\n",
                name);
        exit(2);
    }
    return v;
}

int
it_port(const char *service)
{
    char name[64];
    int i;

    if (service[0] >= '0' && service[0] <= '9') {
        return (int)strtol(service, NULL, 10);
    }
    snprintf(name, sizeof(name), "PHR_%s_PORT", service);
    for (i = 4; name[i] != '\0'; i++) {
        if (name[i] >= 'a' && name[i] <= 'z') {
            name[i] = (char)(name[i] - 'a' + 'A');
        }
    }
    return (int)strtol(it_env(name), NULL, 10);
}

size_t
it_collect(char *data, size_t size, size_t nmemb, void *ud)
{
    it_buf_t *b = ud;
    size_t n = size * nmemb;
    char *p = realloc(b->buf, b->len + n + 1);

    if (p == NULL) {
        return 0;
    }
    memcpy(p + b->len, data, n);
    b->len += n;
    p[b->len] = '\0';
    b->buf = p;
    return n;
}

void
it_buf_free(it_buf_t *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
}

json_object *
it_standin(const char *method, const char *path, const char *body, long *status)
{
    char url[256];
    const char *port = getenv("PHR_STANDIN_PORT");
    it_buf_t b = {NULL, 0};
    struct curl_slist *h = NULL;
    long code = 0;

    if (status != NULL) {
        *status = 0;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%s%s", port != NULL && port[0] ? port : "9199",
             path);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return NULL;
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_object *o = rc == CURLE_OK && b.buf != NULL ? json_tokener_parse(b.buf) : NULL;
    it_buf_free(&b);
    if (status != NULL && rc == CURLE_OK) {
        *status = code;
    }
    return o;
}

static int
it_request_once(it_mode_t mode, const char *service, const char *method, const char *path,
                const char *body, size_t body_len, const char *const *headers, it_resp_t *r)
{
    char url[1024], ca[512];
    it_buf_t b = {NULL, 0}, h = {NULL, 0};
    struct curl_slist *list = NULL;
    CURL *c = curl_easy_init();

    memset(r, 0, sizeof(*r));
    if (mode == IT_DIRECT) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", it_port(service), path);
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    } else {
        snprintf(url, sizeof(url), "%s%s", it_env("PHR_TEST_GATEWAY"), path);
        snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                         mode == IT_GATEWAY_H2 ? (long)CURL_HTTP_VERSION_2TLS
                                               : (long)CURL_HTTP_VERSION_1_1);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, it_collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        list = curl_slist_append(list, "Expect:");
    }
    for (; headers != NULL && *headers != NULL; headers++) {
        list = curl_slist_append(list, *headers);
    }
    if (list != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &r->version);
        r->version = r->version == CURL_HTTP_VERSION_2_0 ? 2 : 11;
    } else {
        printf("    %s %s: %s\n", method, url, curl_easy_strerror(rc));
    }
    r->body = b.buf != NULL ? b.buf : strdup("");
    r->len = b.len;
    r->headers = h.buf != NULL ? h.buf : strdup("");
    r->hlen = h.len;
    if (r->len > 0) {
        r->json = json_tokener_parse(r->body);
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

/*
 * The gateway's rate-limit zones are shared by every case of the run, so its
 * 429 (the one without Retry-After; the services' own carry it) is waited out.
 */
int
it_request(it_mode_t mode, const char *service, const char *method, const char *path,
           const char *body, size_t body_len, const char *const *headers, it_resp_t *r)
{
    int rc = it_request_once(mode, service, method, path, body, body_len, headers, r);

    for (int i = 0; rc == 0 && mode != IT_DIRECT && it_wait_gateway_429 && r->status == 429 &&
                    it_header(r, "retry-after") == NULL && i < 90;
         i++) {
        it_resp_free(r);
        sleep(1);
        rc = it_request_once(mode, service, method, path, body, body_len, headers, r);
    }
    if (r->status == 0 || r->status >= 400) {
        it_trail_add(method, path, r);
    }
    return rc;
}

void
it_resp_free(it_resp_t *r)
{
    free(r->body);
    free(r->headers);
    if (r->json != NULL) {
        json_object_put(r->json);
    }
    memset(r, 0, sizeof(*r));
}

const char *
it_header(const it_resp_t *r, const char *name)
{
    static char value[1024];
    size_t n = strlen(name);
    const char *line = r->headers;

    while (line != NULL && *line != '\0') {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') {
                v++;
            }
            size_t len = strcspn(v, "\r\n");
            if (len >= sizeof(value)) {
                len = sizeof(value) - 1;
            }
            memcpy(value, v, len);
            value[len] = '\0';
            return value;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return NULL;
}

const char *
it_json_str(const it_resp_t *r, const char *key)
{
    json_object *v;

    if (r->json == NULL || !json_object_object_get_ex(r->json, key, &v) ||
        !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

int
it_is_problem(const it_resp_t *r, int status, const char *code)
{
    const char *ct = it_header(r, "content-type");
    json_object *st;

    if (r->status != status || ct == NULL || strcmp(ct, "application/problem+json") != 0) {
        printf("    expected problem %d %s, got %ld %s: %.300s\n", status, code, r->status,
               ct ? ct : "(no content-type)", r->body);
        return 0;
    }
    if (r->json == NULL || !json_object_object_get_ex(r->json, "status", &st) ||
        json_object_get_int(st) != status || it_json_str(r, "title") == NULL ||
        it_json_str(r, "request_id") == NULL) {
        printf("    malformed problem body: %.300s\n", r->body);
        return 0;
    }
    const char *got = it_json_str(r, "code");
    if (got == NULL || strcmp(got, code) != 0) {
        printf("    expected code %s, got %s\n", code, got ? got : "(none)");
        return 0;
    }
    return 1;
}

int
it_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(stdout);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

const char *
it_secret(const char *name)
{
    static char buf[4096];
    char path[512];

    snprintf(path, sizeof(path), "%s/secrets/%s", it_env("PHR_TEST_VAR"), name);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    buf[n] = '\0';
    return buf;
}

int
it_psql(const char *db, char *out, size_t cap, const char *fmt, ...)
{
    char sql[2048], esc[4096], cmd[5120], secret[64], drain[256];
    size_t o = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    /* The statement goes inside a double-quoted shell word: escape what the shell expands. */
    for (size_t i = 0; sql[i] != '\0' && o + 2 < sizeof(esc); i++) {
        if (strchr("$\"\\`", sql[i]) != NULL) {
            esc[o++] = '\\';
        }
        esc[o++] = sql[i];
    }
    esc[o] = '\0';
    snprintf(secret, sizeof(secret), "pg_%s.password", db);
    snprintf(cmd, sizeof(cmd),
             "PGPASSWORD='%s' psql -X -q -h %s -p %s -U phr_%s -d phr_%s -tA -c \"%s\"",
             it_secret(secret), it_env("PHR_TEST_PG_HOST"), it_env("PHR_TEST_PG_PORT"), db, db,
             esc);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    out[0] = '\0';
    if (fgets(out, (int)cap, p) == NULL) {
        out[0] = '\0';
    }
    out[strcspn(out, "\r\n")] = '\0';
    while (fgets(drain, sizeof(drain), p) != NULL) {
    }
    return pclose(p) == 0 ? 0 : -1;
}

void
it_unique_email(char *out, size_t cap, const char *tag)
{
    static int n;

    snprintf(out, cap, "it-%s-%ld-%d-%d@example.com", tag, (long)time(NULL), (int)getpid(), ++n);
}

long
it_internal(const char *service, const char *caller, const char *method, const char *path,
            const char *body, it_resp_t *r)
{
    char who[64], cred[300], key[64];
    const char *hdrs[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;

    if (caller != NULL) {
        snprintf(key, sizeof(key), "svc_%s.key", caller);
        snprintf(who, sizeof(who), "x-phr-caller: %s", caller);
        snprintf(cred, sizeof(cred), "x-phr-credential: %s", it_secret(key));
        hdrs[n++] = who;
        hdrs[n++] = cred;
    }
    if (body != NULL) {
        hdrs[n++] = "Content-Type: application/json";
    }
    it_request(IT_DIRECT, service, method, path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

int
it_wait_status(const char *service, const char *path, long status, int seconds)
{
    time_t end = time(NULL) + seconds;

    for (;;) {
        it_resp_t r;
        it_request(IT_DIRECT, service, "GET", path, NULL, 0, NULL, &r);
        long got = r.status;
        it_resp_free(&r);
        if (got == status) {
            return 1;
        }
        if (time(NULL) >= end) {
            printf("    %s %s: still %ld after %d s (wanted %ld)\n", service, path, got, seconds,
                   status);
            return 0;
        }
        usleep(200 * 1000);
    }
}

long
it_gw(const char *method, const char *path, const char *body, const char *token, it_resp_t *r)
{
    char auth[128];
    const char *hdrs[3] = {NULL, NULL, NULL};
    size_t n = 0;

    if (body != NULL) {
        hdrs[n++] = "Content-Type: application/json";
    }
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    it_request(IT_GATEWAY_H2, NULL, method, path, body, body ? strlen(body) : 0, hdrs, r);
    return r->status;
}

long
it_gw_status(const char *method, const char *path, const char *body, const char *token)
{
    it_resp_t r;
    long st = it_gw(method, path, body, token, &r);

    if (st >= 500 || st == 0) {
        fprintf(stderr, "  %s %s: %ld %.300s\n", method, path, st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st;
}

int
it_gw_names_field(const char *method, const char *path, const char *body, const char *token,
                  const char *field)
{
    it_resp_t r;
    json_object *errs, *f;
    int ok = 0;

    if (it_gw(method, path, body, token, &r) == 400 && r.json != NULL &&
        json_object_object_get_ex(r.json, "errors", &errs)) {
        for (size_t i = 0; i < json_object_array_length(errs); i++) {
            if (json_object_object_get_ex(json_object_array_get_idx(errs, i), "field", &f) &&
                strcmp(json_object_get_string(f), field) == 0) {
                ok = 1;
            }
        }
    }
    if (!ok) {
        fprintf(stderr, "  %s %s %.200s: %ld %.300s (wanted field %s)\n", method, path,
                body ? body : "", r.status, r.body ? r.body : "", field);
    }
    it_resp_free(&r);
    return ok;
}

int
it_gw_problem(const char *method, const char *path, const char *body, const char *token, int status,
              const char *code)
{
    it_resp_t r;

    it_gw(method, path, body, token, &r);
    int ok = it_is_problem(&r, status, code);
    if (!ok) {
        fprintf(stderr, "  %s %s: %ld %.300s\n", method, path, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

long
it_login(const char *email, const char *pw, char *token)
{
    char body[512];
    it_resp_t r;

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    long st = it_gw("POST", "/api/v1/auth/login", body, NULL, &r);
    if (st == 200 && token != NULL) {
        const char *t = it_json_str(&r, "token");
        snprintf(token, IT_TOKEN_CAP, "%s", t != NULL ? t : "");
    }
    it_resp_free(&r);
    return st;
}

int
it_change_pw(const char *token, const char *old, const char *new_pw)
{
    char body[256];

    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", old,
             new_pw);
    return it_gw_status("POST", "/api/v1/auth/password", body, token) == 204;
}

int
it_onboarding_pw(const char *account_id, char *pw, size_t cap)
{
    return it_psql("auth", pw, cap,
                   "SELECT body->'params'->>'initial_password' FROM outbox WHERE topic = "
                   "'notification' AND body->>'kind' = 'staff_onboarding' AND "
                   "body->'to'->>'account_id' = '%s'",
                   account_id) == 0 &&
           strlen(pw) >= 16;
}

int
it_staff_login(const char *email, const char *account_id, const char *new_pw, char *token)
{
    char pw[64];

    return it_onboarding_pw(account_id, pw, sizeof(pw)) && it_login(email, pw, token) == 200 &&
           it_change_pw(token, pw, new_pw);
}

int
it_org_new(const char *op, const char *name, int seats, const char *admin_email,
           const char *admin_name, char *org_id, char *admin_id)
{
    char body[512];
    it_resp_t r;

    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"seat_limit\":%d,\"admin_email\":\"%s\","
             "\"admin_name\":\"%s\",\"admin_locale\":\"en\"}",
             name, seats, admin_email, admin_name);
    int ok = it_gw("POST", "/api/v1/admin/orgs", body, op, &r) == 201 &&
             it_json_str(&r, "id") != NULL && it_json_str(&r, "admin_account_id") != NULL;
    if (ok) {
        snprintf(org_id, 37, "%s", it_json_str(&r, "id"));
        snprintf(admin_id, 37, "%s", it_json_str(&r, "admin_account_id"));
    } else {
        fprintf(stderr, "  create org: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

int
it_phrctl(const char *args, char *line, size_t cap)
{
    char cmd[1024], rest[256];
    const char *build = getenv("PHR_BUILD");

    snprintf(cmd, sizeof(cmd),
             "PHR_SECRETS_DIR='%s/secrets' PHR_PG_HOST='%s' PHR_PG_PORT='%s' '%s/bin/phrctl' %s",
             it_env("PHR_TEST_VAR"), it_env("PHR_TEST_PG_HOST"), it_env("PHR_TEST_PG_PORT"),
             build != NULL && build[0] ? build : "build", args);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    line[0] = '\0';
    if (fgets(line, (int)cap, p) == NULL) {
        line[0] = '\0';
    }
    while (fgets(rest, sizeof(rest), p) != NULL) {
    }
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int
it_operator_create(const char *email, const char *name, char *pw, size_t cap)
{
    char args[256], line[1024];
    json_object *o, *v;

    snprintf(args, sizeof(args), "operator create --email '%s' --name '%s' --json", email, name);
    int rc = it_phrctl(args, line, sizeof(line));
    o = json_tokener_parse(line);
    pw[0] = '\0';
    if (o != NULL && json_object_object_get_ex(o, "initial_password", &v)) {
        snprintf(pw, cap, "%s", json_object_get_string(v));
    }
    json_object_put(o);
    return rc;
}

int
it_operator_new(const char *tag, const char *new_pw, char *token)
{
    char email[128], pw[64];

    it_unique_email(email, sizeof(email), tag);
    it_operator_create(email, "IT Operator", pw, sizeof(pw));
    return pw[0] != '\0' && it_login(email, pw, token) == 200 && it_change_pw(token, pw, new_pw);
}

int
it_patient(const char *tag, const char *pw, int login, it_patient_t *p)
{
    return it_patient_named(tag, "IT Patient", pw, login, p);
}

int
it_patient_named(const char *tag, const char *name, const char *pw, int login, it_patient_t *p)
{
    char body[512];
    it_resp_t r;

    memset(p, 0, sizeof(*p));
    it_unique_email(p->email, sizeof(p->email), tag);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"%s\"}", p->email,
             pw, name);
    int ok = it_gw("POST", "/api/v1/auth/register", body, NULL, &r) == 201 &&
             it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(p->id, sizeof(p->id), "%s", it_json_str(&r, "id"));
    } else {
        fprintf(stderr, "  register: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok && (!login || it_login(p->email, pw, p->token) == 200);
}

/* The libcurl side of one it_call_t while a round of it_burst runs. */
typedef struct {
    CURL *c;
    struct curl_slist *hdrs;
    it_buf_t body, head;
} it_easy_t;

static void
it_easy_start(CURLM *m, it_call_t *call, it_easy_t *e, const char *ca)
{
    char url[512], auth[128];

    it_resp_free(&call->r);
    snprintf(url, sizeof(url), "%s%s", it_env("PHR_TEST_GATEWAY"), call->path);
    if (call->token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", call->token);
        e->hdrs = curl_slist_append(e->hdrs, auth);
    }
    e->c = curl_easy_init();
    if (e->c == NULL) {
        return;
    }
    if (call->body != NULL) {
        e->hdrs = curl_slist_append(e->hdrs, "Content-Type: application/json");
        curl_easy_setopt(e->c, CURLOPT_POSTFIELDS, call->body);
    }
    curl_easy_setopt(e->c, CURLOPT_URL, url);
    curl_easy_setopt(e->c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(e->c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e->c, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e->c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(e->c, CURLOPT_HTTPHEADER, e->hdrs);
    curl_easy_setopt(e->c, CURLOPT_WRITEFUNCTION, it_collect);
    curl_easy_setopt(e->c, CURLOPT_WRITEDATA, &e->body);
    curl_easy_setopt(e->c, CURLOPT_HEADERFUNCTION, it_collect);
    curl_easy_setopt(e->c, CURLOPT_HEADERDATA, &e->head);
    curl_multi_add_handle(m, e->c);
}

/* Moves the answer of |e| into |call| and frees |e|'s handle. */
static void
it_easy_end(CURLM *m, it_call_t *call, it_easy_t *e)
{
    if (e->c != NULL) {
        curl_easy_getinfo(e->c, CURLINFO_RESPONSE_CODE, &call->r.status);
        curl_easy_getinfo(e->c, CURLINFO_HTTP_VERSION, &call->r.version);
        call->r.version = call->r.version == CURL_HTTP_VERSION_2_0 ? 2 : 11;
        curl_multi_remove_handle(m, e->c);
        curl_easy_cleanup(e->c);
    }
    curl_slist_free_all(e->hdrs);
    call->r.body = e->body.buf != NULL ? e->body.buf : strdup("");
    call->r.len = e->body.len;
    call->r.headers = e->head.buf != NULL ? e->head.buf : strdup("");
    call->r.hlen = e->head.len;
    call->r.json = call->r.len > 0 ? json_tokener_parse(call->r.body) : NULL;
    memset(e, 0, sizeof(*e));
}

static int
it_burst_left(const it_call_t *calls, size_t n)
{
    int left = 0;

    for (size_t i = 0; i < n; i++) {
        left += calls[i].r.status == 0 || calls[i].r.status == 429;
    }
    return left;
}

/* One round of it_burst: the calls still unanswered, at once. */
static int
it_burst_round(CURLM *m, it_call_t *calls, it_easy_t *e, size_t n)
{
    char ca[512];
    int running = 1;

    snprintf(ca, sizeof(ca), "%s/tls/server.crt", it_env("PHR_TEST_VAR"));
    for (size_t i = 0; i < n; i++) {
        if (calls[i].r.status == 0 || calls[i].r.status == 429) {
            it_easy_start(m, &calls[i], &e[i], ca);
        }
    }
    while (running > 0 && curl_multi_perform(m, &running) == CURLM_OK) {
        if (running > 0) {
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (calls[i].r.status == 0) { /* started this round */
            it_easy_end(m, &calls[i], &e[i]);
        }
    }
    return it_burst_left(calls, n);
}

int
it_burst(it_call_t *calls, size_t n, int *rounds)
{
    it_easy_t *e = calloc(n > 0 ? n : 1, sizeof(*e));
    CURLM *m = curl_multi_init();
    int left = -1, round = 0;

    if (e != NULL && m != NULL) {
        curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
        curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
        left = it_burst_left(calls, n);
        while (left > 0 && round++ < 60) {
            left = it_burst_round(m, calls, e, n);
            if (left > 0) {
                sleep(1);
            }
        }
    }
    if (m != NULL) {
        curl_multi_cleanup(m);
    }
    free(e);
    if (rounds != NULL) {
        *rounds = round;
    }
    return left;
}

/* PHR_ITEST_SKIP: exact case names, one a line, that are not run (tests/compose/run-real.sh). */
static int
it_skipped(const char *name)
{
    const char *s = getenv("PHR_ITEST_SKIP");
    size_t n = strlen(name);

    while (s != NULL && *s != '\0') {
        size_t len = strcspn(s, "\n");
        if (len == n && strncmp(s, name, n) == 0) {
            return 1;
        }
        s += len + (s[len] == '\n');
    }
    return 0;
}

static int
it_run(const it_case_t *cases, const char *filter, int *passed, int *failed)
{
    for (const it_case_t *t = cases; t->name != NULL; t++) {
        if (filter != NULL && strstr(t->name, filter) == NULL) {
            continue;
        }
        if (it_skipped(t->name)) {
            printf("skip %s\n", t->name);
            continue;
        }
        it_failed = 0;
        it_trail_n = 0;
        t->fn();
        printf("%s %s\n", it_failed ? "FAIL" : "ok  ", t->name);
        fflush(stdout);
        *(it_failed ? failed : passed) += 1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    const char *filter = argc > 1 ? argv[1] : NULL;

    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_run(gateway_cases, filter, &passed, &failed);
    it_run(service_cases, filter, &passed, &failed);
    it_run(auth_cases, filter, &passed, &failed);
    it_run(auth_reset_cases, filter, &passed, &failed);
    it_run(auth_mfa_cases, filter, &passed, &failed);
    it_run(auth_org_cases, filter, &passed, &failed);
    it_run(auth_hygiene_cases, filter, &passed, &failed);
    it_run(auth_abandon_cases, filter, &passed, &failed);
    it_run(records_cases, filter, &passed, &failed);
    it_run(records_share_cases, filter, &passed, &failed);
    it_run(records_export_cases, filter, &passed, &failed);
    it_run(records_batch_cases, filter, &passed, &failed);
    it_run(records_getwait_cases, filter, &passed, &failed);
    it_run(records_insbatch_cases, filter, &passed, &failed);
    it_run(notify_cases, filter, &passed, &failed);
    it_run(notify_notice_cases, filter, &passed, &failed);
    it_run(audit_cases, filter, &passed, &failed);
    it_run(audit_query_cases, filter, &passed, &failed);
    it_run(fault_cases, filter, &passed, &failed);
    curl_global_cleanup();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
