/*
 * Faults: PostgreSQL and Redis stopped and started again, a frozen Redis,
 * graceful shutdown on SIGTERM, bad configuration. Services must answer
 * clear 503s while a dependency is down and recover without a restart.
 */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "session.h"

static const char *const names[] = {"auth", "records", "notification", "audit"};
static const char *const json_ct[] = {"Content-Type: application/json", NULL};

/* Sum of the four services' pids: unchanged means nobody was restarted. */
static long
service_pids(void)
{
    long sum = 0;
    char path[512];

    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/run/%s.pid", it_env("PHR_TEST_VAR"), names[i]);
        FILE *f = fopen(path, "r");
        long pid = 0;
        if (f != NULL) {
            if (fscanf(f, "%ld", &pid) != 1) {
                pid = 0;
            }
            fclose(f);
        }
        sum += pid;
    }
    return sum;
}

static int
all_ready(long status, int seconds)
{
    for (int i = 0; i < 4; i++) {
        if (!it_wait_status(names[i], "/readyz", status, seconds)) {
            return 0;
        }
    }
    return 1;
}

static int
stack_up(void)
{
    return it_sh("bash deploy/stack.sh up > %s/log/fault-up.log 2>&1", it_env("PHR_TEST_VAR"));
}

static void
fault_postgres_restart(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    const char *body = "{\"password\":\"Kf8#mQ2vLp\"}";
    long pids = service_pids();
    it_resp_t r;

    IT_CHECK(it_sh("runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "
                   "\"$(head -n 1 %s/run/pgdata)/data\" -m fast -w stop > /dev/null",
                   v) == 0);
    IT_CHECK(all_ready(503, 15));
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy/check", body,
                        strlen(body), json_ct, &r) == 0);
    IT_CHECK(it_is_problem(&r, 503, "dependency_unavailable"));
    IT_CHECK(it_header(&r, "retry-after") != NULL);
    it_resp_free(&r);
    /* Routes that do not need the database keep working. */
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/records/types", NULL, 0, NULL, &r) ==
             0);
    IT_CHECK(r.status == 200);
    it_resp_free(&r);

    IT_CHECK(stack_up() == 0);
    IT_CHECK(all_ready(200, 30));
    IT_CHECK(service_pids() == pids);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/password-policy/check", body,
                        strlen(body), json_ct, &r) == 0);
    IT_CHECK(r.status == 200);
    it_resp_free(&r);
}

static void
fault_redis_restart(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    long pids = service_pids();
    const char *hdr[] = {"Authorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
    it_resp_t r;

    IT_CHECK(it_sh("pid=$(cat %s/run/redis.pid) && kill -TERM $pid && "
                   "for i in $(seq 100); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; "
                   "exit 1",
                   v) == 0);
    IT_CHECK(all_ready(503, 15));
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(it_is_problem(&r, 503, "dependency_unavailable"));
    it_resp_free(&r);

    IT_CHECK(stack_up() == 0);
    IT_CHECK(all_ready(200, 30));
    IT_CHECK(service_pids() == pids);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "session_expired"));
    it_resp_free(&r);
}

/* A crashed service: the gateway answers 502 problem+json, and `make up` restarts only it. */
static void
fault_service_crash_and_up(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    char path[512];
    long before = service_pids();
    it_resp_t r;

    snprintf(path, sizeof(path), "%s/run/notification.pid", v);
    FILE *f = fopen(path, "r");
    long pid = 0;
    IT_CHECK(f != NULL && fscanf(f, "%ld", &pid) == 1);
    fclose(f);
    IT_CHECK(it_sh("kill -KILL %ld; for i in $(seq 50); do kill -0 %ld 2>/dev/null || exit 0; "
                   "sleep 0.1; done; exit 1",
                   pid, pid) == 0);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/notifications/kinds", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(r.status == 502 || r.status == 503);
    IT_CHECK(it_header(&r, "content-type") != NULL &&
             strcmp(it_header(&r, "content-type"), "application/problem+json") == 0);
    it_resp_free(&r);

    IT_CHECK(stack_up() == 0);
    IT_CHECK(all_ready(200, 30));
    long after = service_pids();
    IT_CHECK(after != before); /* notification has a new pid ... */
    f = fopen(path, "r");
    long npid = 0;
    IT_CHECK(f != NULL && fscanf(f, "%ld", &npid) == 1);
    fclose(f);
    IT_CHECK(after - npid == before - pid); /* ... and the other three kept theirs */
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/notifications/kinds", NULL, 0, NULL,
                        &r) == 0);
    IT_CHECK(r.status == 200);
    it_resp_free(&r);
}

/* A Redis that accepts connections but answers nothing must fail requests, not hang them. */
static void
fault_redis_frozen(void)
{
    const char *hdr[] = {"Authorization: Bearer bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", NULL};
    it_resp_t r;

    IT_CHECK(it_sh("redis-cli -h 127.0.0.1 -p %s --no-auth-warning -a '%s' CLIENT PAUSE 4000 ALL "
                   "> /dev/null",
                   it_env("PHR_TEST_REDIS_PORT"), it_env("PHR_TEST_REDIS_PASSWORD")) == 0);
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(it_is_problem(&r, 503, "dependency_unavailable"));
    it_resp_free(&r);
    /* After the pause the services recover by themselves. */
    IT_CHECK(all_ready(200, 30));
    IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "GET", "/api/v1/auth/session", NULL, 0, hdr, &r) == 0);
    IT_CHECK(it_is_problem(&r, 401, "session_expired"));
    it_resp_free(&r);
}

/*
 * A port of the stack's own range for a second service instance: records' port + |offset|
 * (88-90; deploy/stack.sh's instances take up to + 80, test_records_getwait.c + 87).
 */
static int
spare_port(int offset)
{
    return it_port("records") + offset;
}

/* A second records instance on a spare port: SIGTERM makes it drain and exit 0. */
static void
fault_sigterm_drains(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    const char *b = it_env("PHR_BUILD");
    char port[16];

    snprintf(port, sizeof(port), "%d", spare_port(88));
    IT_CHECK(it_sh("PHR_RECORDS_PORT=%s %s/bin/phr-records > %s/log/drain.log 2>&1 & "
                   "echo $! > %s/run/drain.pid",
                   port, b, v, v) == 0);
    if (!it_wait_status(port, "/readyz", 200, 20)) {
        it_sh("kill -KILL $(cat %s/run/drain.pid)", v);
        IT_CHECK(0);
    }
    IT_CHECK(it_sh("pid=$(cat %s/run/drain.pid) && kill -TERM $pid && "
                   "for i in $(seq 150); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; "
                   "kill -KILL $pid; exit 1",
                   v) == 0);
    IT_CHECK(it_sh("grep -q '\"msg\":\"drained; exiting\"' %s/log/drain.log", v) == 0);
    IT_CHECK(it_sh("grep -q '\"msg\":\"stopped\"' %s/log/drain.log", v) == 0);
}

/* PHR_TLS_CERT/KEY switch a service from h2c to TLS with ALPN h2 only. */
static void
fault_tls_alpn(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    const char *b = it_env("PHR_BUILD");
    int port = spare_port(90);

    IT_CHECK(it_sh("PHR_RECORDS_PORT=%d PHR_TLS_CERT=%s/tls/server.crt "
                   "PHR_TLS_KEY=%s/tls/server.key %s/bin/phr-records > %s/log/tls.log 2>&1 & "
                   "echo $! > %s/run/tls.pid",
                   port, v, v, b, v, v) == 0);
    int up = it_sh("for i in $(seq 100); do curl -s -o /dev/null --cacert %s/tls/server.crt "
                   "--http2 https://127.0.0.1:%d/livez && exit 0; sleep 0.1; done; exit 1",
                   v, port) == 0;
    int h2 = it_sh("test \"$(curl -s -o /dev/null -w '%%{http_version}' --cacert "
                   "%s/tls/server.crt --http2 https://127.0.0.1:%d/readyz)\" = 2",
                   v, port) == 0;
    int h1_refused = it_sh("curl -s -o /dev/null --cacert %s/tls/server.crt --http1.1 "
                           "https://127.0.0.1:%d/livez",
                           v, port) != 0;
    int h2c_refused = it_sh("curl -s -o /dev/null --http2-prior-knowledge "
                            "http://127.0.0.1:%d/livez",
                            port) != 0;
    it_sh("kill -TERM $(cat %s/run/tls.pid)", v);
    IT_CHECK(up);
    IT_CHECK(h2);
    IT_CHECK(h1_refused);
    IT_CHECK(h2c_refused);
}

static void
fault_bad_config(void)
{
    const char *v = it_env("PHR_TEST_VAR");
    const char *b = it_env("PHR_BUILD");

    IT_CHECK(it_sh("PHR_MAX_STREAMS=abc %s/bin/phr-auth 2> %s/log/badcfg.log; test $? -eq 2", b,
                   v) == 0);
    IT_CHECK(it_sh("grep -q 'PHR_MAX_STREAMS' %s/log/badcfg.log", v) == 0);
    IT_CHECK(it_sh("PHR_PG_PORT=70000 %s/bin/phr-auth 2> %s/log/badcfg.log; test $? -eq 2", b, v) ==
             0);
    IT_CHECK(it_sh("grep -q 'PHR_PG_PORT' %s/log/badcfg.log", v) == 0);
    IT_CHECK(it_sh("PHR_AUTH_PORT=%d PHR_SECRETS_DIR=/nonexistent %s/bin/phr-auth "
                   "2> %s/log/badcfg.log; test $? -eq 1",
                   spare_port(89), b, v) == 0);
    IT_CHECK(it_sh("grep -q 'pg_auth.password' %s/log/badcfg.log", v) == 0);
    IT_CHECK(it_sh("PHR_TLS_CERT=/x.pem %s/bin/phr-auth 2> %s/log/badcfg.log; test $? -eq 2", b,
                   v) == 0);
    IT_CHECK(it_sh("grep -q 'PHR_TLS_KEY' %s/log/badcfg.log", v) == 0);
}

/*
 * Writes |len| raw bytes to a service port and reads until the server
 * closes (or 5 s pass). Returns 1 when the server closed the connection.
 */
static int
raw_exchange(const char *service, const void *bytes, size_t len)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)it_port(service))};
    char buf[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int closed = 0;

    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        write(fd, bytes, len) != (ssize_t)len) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    for (int i = 0; i < 50 && !closed; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(fd, buf, sizeof(buf));
            closed = n <= 0;
        }
    }
    close(fd);
    return closed;
}

static void
fault_garbage_frames(void)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    char bytes[256];

    /* Not HTTP/2 at all. */
    IT_CHECK(raw_exchange("auth", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27));
    /* A valid preface, then a frame header announcing 16 MiB of an unknown-length SETTINGS. */
    memcpy(bytes, preface, sizeof(preface) - 1);
    memcpy(bytes + 24, "\xff\xff\xff\x04\x00\x00\x00\x00\x00garbage", 16);
    IT_CHECK(raw_exchange("records", bytes, 40));
    /* A valid preface and a truncated frame, then the client goes away. */
    memcpy(bytes + 24, "\x00\x00\x06\x04", 4);
    IT_CHECK(raw_exchange("audit", bytes, 28) || 1);
    for (size_t i = 0; i < 4; i++) {
        static const char *const names4[] = {"auth", "records", "notification", "audit"};
        IT_CHECK(it_wait_status(names4[i], "/livez", 200, 5));
    }
}

static void
fault_header_flood(void)
{
    size_t n = 20000;
    char *hdr = malloc(n + 16);
    it_resp_t r;

    IT_CHECK(hdr != NULL);
    memcpy(hdr, "X-Flood: ", 9);
    memset(hdr + 9, 'a', n);
    hdr[9 + n] = '\0';
    const char *headers[] = {hdr, NULL};
    int rc =
        it_request(IT_DIRECT, "auth", "GET", "/api/v1/auth/password-policy", NULL, 0, headers, &r);
    free(hdr);
    IT_CHECK(rc == 0);
    IT_CHECK(it_is_problem(&r, 431, "headers_too_large"));
    it_resp_free(&r);
    IT_CHECK(it_wait_status("auth", "/livez", 200, 5));
}

/* The gateway's strict login zone answers 429 problem+json past its burst. */
static void
fault_login_rate_limit(void)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    int limited = 0, other = 0;

    it_wait_gateway_429 = 0;
    for (int i = 0; i < 400 && limited == 0; i++) {
        it_resp_t r;
        IT_CHECK(it_request(IT_GATEWAY_H2, NULL, "POST", "/api/v1/auth/login", "{}", 2, json, &r) ==
                 0);
        if (r.status == 429) {
            limited = it_is_problem(&r, 429, "rate_limited");
        } else if (r.status != 400) {
            other++;
        }
        it_resp_free(&r);
    }
    it_wait_gateway_429 = 1;
    IT_CHECK(limited);
    IT_CHECK(other == 0);
}

/* A patient linked to a new org |org_name| (its id into |org_id|); the patient's session into
 * |token|. 1 when made. */
static int
fault_linked_patient(const char *org_name, char *org_id, char *token)
{
    static const char pw[] = "Amber6Lantern!qFault";
    char op[64], admin_email[128], admin_id[37], admin[64], path[160], body[256], out[64];
    it_patient_t p;
    it_resp_t r;

    it_unique_email(admin_email, sizeof(admin_email), "fladm");
    if (!it_operator_new("flop", pw, op) ||
        !it_org_new(op, org_name, 5, admin_email, "Admin", org_id, admin_id) ||
        !it_staff_login(admin_email, admin_id, pw, admin)) {
        return 0;
    }
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/invitations", org_id);
    if (it_gw("POST", path, NULL, admin, &r) != 201 || it_json_str(&r, "code") == NULL) {
        it_resp_free(&r);
        return 0;
    }
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", it_json_str(&r, "code"));
    it_resp_free(&r);
    return it_patient("flpat", pw, 0, &p) &&
           it_psql("auth", out, sizeof(out),
                   "UPDATE accounts SET email_verified_at = now() WHERE id = '%s'", p.id) == 0 &&
           it_login(p.email, pw, token) == 200 &&
           it_gw_status("POST", "/api/v1/me/links", body, token) == 201;
}

/* The org_name of link |org_id| in GET /api/v1/me/links ("" when absent), the status. */
static long
fault_link_name(const char *token, const char *org_id, it_resp_t *r, char *name, size_t cap)
{
    json_object *items;
    long st = it_gw("GET", "/api/v1/me/links", NULL, token, r);

    name[0] = '\0';
    if (st == 200 && r->json != NULL && json_object_object_get_ex(r->json, "items", &items)) {
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *it = json_object_array_get_idx(items, i);
            const char *org = json_object_get_string(json_object_object_get(it, "org_id"));
            const char *n = json_object_get_string(json_object_object_get(it, "org_name"));
            if (org != NULL && strcmp(org, org_id) == 0 && n != NULL) {
                snprintf(name, cap, "%s", n);
            }
        }
    }
    return st;
}

/*
 * Auth unreachable from records: a patient's links (which name each org through auth's
 * POST /internal/v1/orgs/lookup) answer 503 problem+json with Retry-After instead of links
 * without names, and the same request answers the names once auth is back (restarted by
 * `make up`, records untouched).
 */
static void
fault_links_auth_down(void)
{
    char org_name[64], org_id[37], token[64], name[64], path[512];
    it_resp_t r;

    snprintf(org_name, sizeof(org_name), "Fault Links %d", (int)getpid());
    IT_CHECK(fault_linked_patient(org_name, org_id, token));
    IT_CHECK(fault_link_name(token, org_id, &r, name, sizeof(name)) == 200);
    it_resp_free(&r);
    IT_CHECK(strcmp(name, org_name) == 0);

    snprintf(path, sizeof(path), "%s/run/auth.pid", it_env("PHR_TEST_VAR"));
    FILE *f = fopen(path, "r");
    long pid = 0;
    IT_CHECK(f != NULL && fscanf(f, "%ld", &pid) == 1);
    if (f != NULL) {
        fclose(f);
    }
    IT_CHECK(pid > 0 && it_sh("kill -KILL %ld; for i in $(seq 50); do kill -0 %ld 2>/dev/null || "
                              "exit 0; sleep 0.1; done; exit 1",
                              pid, pid) == 0);
    IT_CHECK(fault_link_name(token, org_id, &r, name, sizeof(name)) == 503);
    IT_CHECK(it_is_problem(&r, 503, "dependency_unavailable"));
    IT_CHECK(it_header(&r, "retry-after") != NULL);
    IT_CHECK(name[0] == '\0');
    it_resp_free(&r);

    IT_CHECK(stack_up() == 0);
    IT_CHECK(all_ready(200, 30));
    IT_CHECK(fault_link_name(token, org_id, &r, name, sizeof(name)) == 200);
    it_resp_free(&r);
    IT_CHECK(strcmp(name, org_name) == 0);
}

const it_case_t fault_cases[] = {
    {"faults: garbage and truncated HTTP/2 frames close the connection only", fault_garbage_frames},
    {"gateway: the login zone answers 429 past its burst", fault_login_rate_limit},
    {"faults: header flood answers 431", fault_header_flood},
    {"faults: bad configuration stops start-up naming the variable", fault_bad_config},
    {"faults: SIGTERM drains and exits 0", fault_sigterm_drains},
    {"services: optional TLS serves h2 by ALPN only", fault_tls_alpn},
    {"faults: frozen Redis fails requests with 503, then recovers", fault_redis_frozen},
    {"faults: Redis stopped → 503, recovers without restart", fault_redis_restart},
    {"faults: crashed service → 502 problem, make up restarts only it", fault_service_crash_and_up},
    {"faults: auth down → links 503 with Retry-After, names back after", fault_links_auth_down},
    {"faults: PostgreSQL stopped → 503, recovers without restart", fault_postgres_restart},
    {NULL, NULL},
};
