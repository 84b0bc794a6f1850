/*
 * test_auth_org.c - organizations, staff and seats through the gateway: the
 * operator CLI (phrctl), organization creation with its first admin and the
 * onboarding e-mail, staff creation up to the seat limit (also two creates
 * racing for the last seat), cross-org isolation, roles, the last admin,
 * deletion revoking sessions, unlock, re-authentication, and paging; an org
 * admin's MFA reset of a staff member (TOTP codes computed here, RFC 6238);
 * the internal account routes straight against the auth port with a peer
 * service's credential (x-phr-caller + x-phr-credential from svc_<caller>.key).
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR (secrets
 * dir), PHR_TEST_PG_HOST, PHR_TEST_PG_PORT (outbox rows read with psql as
 * phr_auth), PHR_TEST_REDIS_HOST, PHR_TEST_REDIS_PORT, PHR_TEST_REDIS_PASSWORD
 * (a session's authenticated_at is aged in Redis); PHR_BUILD (default
 * "build") names the build dir holding bin/phrctl.
 */
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "session.h"
#include "timeutil.h"

#define ORG_PW "Blue7Harbor!qLong"
/* 't' when a password hash carries the current pepper id ("$phrpepper$v1$..."). */
#define ORG_PEPPERED_SQL                                                                           \
    "SELECT starts_with(password_hash, chr(36) || 'phrpepper' || chr(36) || 'v1' || chr(36)) "     \
    "FROM accounts WHERE "

typedef struct {
    char op_token[64];
    char org_id[37];
    char admin_id[37];
    char admin_email[128];
    char admin_token[64];
} org_env_t;

/* Creates an org of |seats| as operator |op_token|; its id and admin id. 1 on 201. */
static int
org_create(const char *op_token, int seats, const char *admin_email, char *org_id, char *admin_id)
{
    char body[512];
    it_resp_t r;
    json_object *v;

    snprintf(body, sizeof(body),
             "{\"name\":\"IT Clinic\",\"seat_limit\":%d,\"admin_email\":\"%s\","
             "\"admin_name\":\"Admin A\",\"admin_locale\":\"en\"}",
             seats, admin_email);
    int ok = it_gw("POST", "/api/v1/admin/orgs", body, op_token, &r) == 201 &&
             it_json_str(&r, "id") != NULL && it_json_str(&r, "admin_account_id") != NULL &&
             json_object_object_get_ex(r.json, "seats_used", &v) && json_object_get_int(v) == 1 &&
             strstr(r.body, "initial_password") == NULL && it_header(&r, "location") != NULL;
    if (ok) {
        snprintf(org_id, 37, "%s", it_json_str(&r, "id"));
        snprintf(admin_id, 37, "%s", it_json_str(&r, "admin_account_id"));
    } else {
        fprintf(stderr, "  create org: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* An operator (password changed), an org of |seats| and its admin logged in (password changed). */
static int
org_setup(org_env_t *e, int seats)
{
    memset(e, 0, sizeof(*e));
    if (!it_operator_new("op", ORG_PW, e->op_token)) {
        return 0;
    }
    it_unique_email(e->admin_email, sizeof(e->admin_email), "admin");
    return org_create(e->op_token, seats, e->admin_email, e->org_id, e->admin_id) &&
           it_staff_login(e->admin_email, e->admin_id, ORG_PW, e->admin_token);
}

/* The admin of |e| adds staff |email| with |role|; its id into |id|. Returns the status. */
static long
org_add_staff(const org_env_t *e, const char *email, const char *role, char *id)
{
    char path[160], body[512];
    it_resp_t r;

    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e->org_id);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Staff %s\",\"role\":\"%s\"}", email,
             role, role);
    long st = it_gw("POST", path, body, e->admin_token, &r);
    if (st == 201 && id != NULL && it_json_str(&r, "id") != NULL) {
        snprintf(id, 37, "%s", it_json_str(&r, "id"));
    }
    if (st == 201 && strstr(r.body, "initial_password") != NULL) {
        st = -1; /* the initial password must never be returned */
    }
    it_resp_free(&r);
    return st;
}

static long
org_int(const it_resp_t *r, const char *key)
{
    json_object *v;
    return r->json != NULL && json_object_object_get_ex(r->json, key, &v) ? json_object_get_int(v)
                                                                          : -1;
}

static void
test_phrctl(void)
{
    char email[128], pw[64], token[64];

    it_unique_email(email, sizeof(email), "cli");
    IT_CHECK(it_operator_create(email, "IT Operator", pw, sizeof(pw)) == 0 && strlen(pw) >= 16);
    char pw2[64];
    IT_CHECK(it_operator_create(email, "IT Operator", pw2, sizeof(pw2)) == 3 &&
             pw2[0] == '\0'); /* already exists */
    /* hashed with the service's current pepper (a login would rehash, so check before it) */
    char out[64];
    IT_CHECK(it_psql("auth", out, sizeof(out), ORG_PEPPERED_SQL " email = '%s'", email) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_sh("'%s/bin/phrctl' operator >/dev/null 2>&1",
                   getenv("PHR_BUILD") ? getenv("PHR_BUILD") : "build") == 2);
    IT_CHECK(it_login(email, pw, token) == 200);
    /* must change the password first */
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/admin/orgs", NULL, token, 403, "password_change_required"));
    IT_CHECK(it_change_pw(token, pw, ORG_PW));
    IT_CHECK(it_gw_status("GET", "/api/v1/admin/orgs", NULL, token) == 200);
}

static void
test_org_create_and_access(void)
{
    org_env_t e;
    char email[128], pw[64], token[64], id[37], path[160];
    it_resp_t r;

    IT_CHECK(org_setup(&e, 3));
    /* bad input */
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/orgs",
                               "{\"seat_limit\":2,\"admin_email\":\"a@example.com\","
                               "\"admin_name\":\"A\"}",
                               e.op_token, "name"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/orgs",
                               "{\"name\":\"X\",\"seat_limit\":0,\"admin_email\":\"a@example.com\","
                               "\"admin_name\":\"A\"}",
                               e.op_token, "seat_limit"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/orgs",
                               "{\"name\":\"X\",\"seat_limit\":2,\"admin_email\":\"nope\","
                               "\"admin_name\":\"A\"}",
                               e.op_token, "admin_email"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/admin/orgs",
                               "{\"name\":\"X\",\"seat_limit\":2,\"admin_email\":\"a@example.com\","
                               "\"admin_name\":\"A\",\"color\":1}",
                               e.op_token, "color"));
    /* the admin's address is taken */
    char body[512];
    snprintf(body, sizeof(body),
             "{\"name\":\"X\",\"seat_limit\":2,\"admin_email\":\"%s\",\"admin_name\":\"A\"}",
             e.admin_email);
    IT_CHECK(it_gw_problem("POST", "/api/v1/admin/orgs", body, e.op_token, 409, "email_taken"));
    /* the onboarding e-mail has every parameter */
    IT_CHECK(it_psql("auth", pw, sizeof(pw),
                     "SELECT count(*) FROM outbox WHERE body->>'kind' = 'staff_onboarding' AND "
                     "body->'to'->>'account_id' = '%s' AND body->'params' ?& "
                     "array['name','org_name','login_url','initial_password','expires_at']",
                     e.admin_id) == 0 &&
             strcmp(pw, "1") == 0);
    IT_CHECK(it_psql("auth", pw, sizeof(pw),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                     "body->>'action' = 'auth.org.create' AND body->'target'->>'id' = '%s'",
                     e.org_id) == 0 &&
             strcmp(pw, "1") == 0);
    /* only operators manage orgs; an admin is not one */
    IT_CHECK(it_gw_problem("GET", "/api/v1/admin/orgs", NULL, e.admin_token, 403, "forbidden"));
    IT_CHECK(it_gw_problem("POST", "/api/v1/admin/orgs", body, e.admin_token, 403, "forbidden"));
    /* the admin sees the org */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s", e.org_id);
    IT_CHECK(it_gw("GET", path, NULL, e.admin_token, &r) == 200);
    int shape = org_int(&r, "seat_limit") == 3 && org_int(&r, "seats_used") == 1 &&
                it_json_str(&r, "name") != NULL &&
                strcmp(it_json_str(&r, "name"), "IT Clinic") == 0;
    it_resp_free(&r);
    IT_CHECK(shape);
    /* a plain staff member is 403 on admin routes */
    it_unique_email(email, sizeof(email), "s");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_staff_login(email, id, ORG_PW, token));
    IT_CHECK(it_gw_problem("GET", path, NULL, token, 403, "forbidden"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    IT_CHECK(it_gw_problem("GET", path, NULL, token, 403, "forbidden"));
    /* another org's admin is 404 on every route of this org */
    org_env_t b;
    IT_CHECK(org_setup(&b, 2));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s", e.org_id);
    IT_CHECK(it_gw_problem("GET", path, NULL, b.admin_token, 404, "not_found"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    IT_CHECK(it_gw_problem("GET", path, NULL, b.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("POST", path,
                           "{\"email\":\"x@example.com\",\"name\":\"X\",\"role\":\"staff\"}",
                           b.admin_token, 404, "not_found"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", e.org_id, id);
    IT_CHECK(it_gw_problem("DELETE", path, NULL, b.admin_token, 404, "not_found"));
    IT_CHECK(it_gw_problem("PATCH", path, "{\"role\":\"admin\"}", b.admin_token, 404, "not_found"));
    /* staff of org A named under org B's path: 404 too */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", b.org_id, id);
    IT_CHECK(it_gw_problem("DELETE", path, NULL, b.admin_token, 404, "not_found"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s/unlock", b.org_id, id);
    IT_CHECK(it_gw_problem("POST", path, NULL, b.admin_token, 404, "not_found"));
}

/* Child process: one staff create; exit 1 on 201, 2 on 409 seat_limit_reached, 3 otherwise. */
static void
org_race_child(const org_env_t *e, const char *tag)
{
    char email[128], path[160], body[512];
    it_resp_t r;
    snprintf(email, sizeof(email), "it-org-race-%s-%ld-%d@example.com", tag, (long)time(NULL),
             (int)getpid());
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e->org_id);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Racer\",\"role\":\"staff\"}", email);
    it_gw("POST", path, body, e->admin_token, &r);
    int code = r.status == 201 ? 1 : it_is_problem(&r, 409, "seat_limit_reached") ? 2 : 3;
    it_resp_free(&r);
    _exit(code);
}

static void
test_seats(void)
{
    org_env_t e;
    char email[128], id[37], out[64], path[160];
    it_resp_t r;

    IT_CHECK(org_setup(&e, 4));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    /* bad input */
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"email\":\"a@example.com\",\"name\":\"A\","
                               "\"role\":\"boss\"}",
                               e.admin_token, "role"));
    IT_CHECK(it_gw_names_field("POST", path,
                               "{\"email\":\"a@@example.com\",\"name\":\"A\","
                               "\"role\":\"staff\"}",
                               e.admin_token, "email"));
    IT_CHECK(it_gw_names_field("POST", path, "{\"email\":\"a@example.com\",\"role\":\"staff\"}",
                               e.admin_token, "name"));
    IT_CHECK(it_gw_problem("POST", path, "{\"email\":", e.admin_token, 400, "invalid_json"));
    it_unique_email(email, sizeof(email), "seat");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(org_add_staff(&e, email, "staff", NULL) == 409); /* email_taken */
    /* fill up to one free seat */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM accounts WHERE org_id = '%s' AND status = 'active'",
                     e.org_id) == 0);
    long used = strtol(out, NULL, 10);
    while (used < 3) {
        it_unique_email(email, sizeof(email), "fill");
        IT_CHECK(org_add_staff(&e, email, "staff", NULL) == 201);
        used++;
    }
    /* two creates race for the last seat: exactly one wins */
    pid_t p1 = fork();
    if (p1 == 0) {
        org_race_child(&e, "a");
    }
    pid_t p2 = fork();
    if (p2 == 0) {
        org_race_child(&e, "b");
    }
    int s1 = 0, s2 = 0;
    waitpid(p1, &s1, 0);
    waitpid(p2, &s2, 0);
    int c1 = WIFEXITED(s1) ? WEXITSTATUS(s1) : 0, c2 = WIFEXITED(s2) ? WEXITSTATUS(s2) : 0;
    fprintf(stderr, "  race: %d %d\n", c1, c2);
    IT_CHECK((c1 == 1 && c2 == 2) || (c1 == 2 && c2 == 1));
    /* full: the next create is refused, and audited */
    it_unique_email(email, sizeof(email), "over");
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Over\",\"role\":\"staff\"}", email);
    IT_CHECK(it_gw_problem("POST", path, body, e.admin_token, 409, "seat_limit_reached"));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) >= 2 FROM outbox WHERE topic = 'audit' AND body->>'action' "
                     "= 'auth.org.seat_limit_refusal' AND body->'target'->>'id' = '%s'",
                     e.org_id) == 0 &&
             strcmp(out, "t") == 0);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s", e.org_id);
    IT_CHECK(it_gw("GET", path, NULL, e.admin_token, &r) == 200);
    long seats = org_int(&r, "seats_used");
    it_resp_free(&r);
    IT_CHECK(seats == 4);
    /* the operator cannot lower the limit below the usage, but can raise it */
    snprintf(path, sizeof(path), "/api/v1/admin/orgs/%s", e.org_id);
    IT_CHECK(it_gw_problem("PATCH", path, "{\"seat_limit\":3}", e.op_token, 409,
                           "seat_limit_below_usage"));
    IT_CHECK(it_gw_names_field("PATCH", path, "{}", e.op_token, ""));
    IT_CHECK(it_gw_names_field("PATCH", path, "{\"status\":\"gone\"}", e.op_token, "status"));
    IT_CHECK(it_gw_problem("PATCH", "/api/v1/admin/orgs/00000000-0000-7000-8000-000000000000",
                           "{\"seat_limit\":3}", e.op_token, 404, "not_found"));
    IT_CHECK(it_gw("PATCH", path, "{\"seat_limit\":5,\"require_mfa\":true}", e.op_token, &r) ==
             200);
    seats = org_int(&r, "seat_limit");
    it_resp_free(&r);
    IT_CHECK(seats == 5);
    it_unique_email(email, sizeof(email), "more");
    IT_CHECK(org_add_staff(&e, email, "staff", NULL) == 201);
    /* a suspended organization's staff cannot log in (the answer of a wrong password) */
    char tok[64];
    IT_CHECK(it_gw_status("PATCH", path, "{\"status\":\"suspended\"}", e.op_token) == 200);
    IT_CHECK(it_login(e.admin_email, ORG_PW, tok) == 401);
    IT_CHECK(it_gw_status("PATCH", path, "{\"status\":\"active\"}", e.op_token) == 200);
    IT_CHECK(it_login(e.admin_email, ORG_PW, tok) == 200);
}

static void
test_roles_delete_unlock(void)
{
    org_env_t e;
    char email[128], email2[128], id[37], id2[37], tok[64], tok2[64], path[200], out[64];
    it_resp_t r;

    IT_CHECK(org_setup(&e, 5));
    /* the only admin cannot be demoted or deleted */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", e.org_id, e.admin_id);
    IT_CHECK(
        it_gw_problem("PATCH", path, "{\"role\":\"staff\"}", e.admin_token, 409, "last_admin"));
    IT_CHECK(it_gw_problem("DELETE", path, NULL, e.admin_token, 409, "last_admin"));
    IT_CHECK(it_gw_names_field("PATCH", path, "{\"role\":\"owner\"}", e.admin_token, "role"));
    it_unique_email(email, sizeof(email), "role");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_staff_login(email, id, ORG_PW, tok));
    /* promotion: the target's sessions end at once */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", e.org_id, id);
    IT_CHECK(it_gw("PATCH", path, "{\"role\":\"admin\"}", e.admin_token, &r) == 200);
    int promoted = it_json_str(&r, "role") != NULL && strcmp(it_json_str(&r, "role"), "admin") == 0;
    it_resp_free(&r);
    IT_CHECK(promoted);
    IT_CHECK(it_gw_problem("GET", "/api/v1/auth/session", NULL, tok, 401, "session_expired"));
    /* with two admins, the first can be demoted */
    IT_CHECK(it_login(email, ORG_PW, tok) == 200);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", e.org_id, e.admin_id);
    IT_CHECK(it_gw_status("PATCH", path, "{\"role\":\"staff\"}", tok) == 200);
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/auth/session", NULL, e.admin_token, 401, "session_expired"));
    /* deletion: the deleted member's token fails on the next request, the seat is freed */
    it_unique_email(email2, sizeof(email2), "del");
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Del\",\"role\":\"staff\"}", email2);
    IT_CHECK(it_gw("POST", path, body, tok, &r) == 201);
    snprintf(id2, sizeof(id2), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    it_resp_free(&r);
    IT_CHECK(it_staff_login(email2, id2, ORG_PW, tok2));
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, tok2) == 200);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s", e.org_id, id2);
    IT_CHECK(it_gw_status("DELETE", path, NULL, tok) == 204);
    IT_CHECK(it_gw_problem("GET", "/api/v1/auth/session", NULL, tok2, 401, "session_expired"));
    IT_CHECK(it_login(email2, ORG_PW, tok2) == 401);
    IT_CHECK(it_gw_problem("DELETE", path, NULL, tok, 404, "not_found"));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'auth.staff.delete' AND body->'target'->>'id' = '%s'",
                     id2) == 0 &&
             strcmp(out, "1") == 0);
    /* unlock lifts a lockout */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET failed_logins = 7, locked_until = now() + interval "
                     "'10 minutes' WHERE id = '%s' RETURNING 1",
                     e.admin_id) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_login(e.admin_email, ORG_PW, e.admin_token) == 401);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s/unlock", e.org_id, e.admin_id);
    IT_CHECK(it_gw_status("POST", path, NULL, tok) == 204);
    IT_CHECK(it_login(e.admin_email, ORG_PW, e.admin_token) == 200);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s/unlock", e.org_id, id2);
    IT_CHECK(it_gw_problem("POST", path, NULL, tok, 404, "not_found")); /* deleted */
    /* the demoted admin is plain staff now */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    IT_CHECK(it_gw_problem("GET", path, NULL, e.admin_token, 403, "forbidden"));
}

/* Ages the authenticated_at of |token|'s session in Redis by |age_ms|. 0 on success. */
static int
org_age_session(const char *token, int64_t age_ms)
{
    char hash[SESS_HASH_LEN + 1];
    sess_t s;
    int ok = 0;

    sess_token_hash(token, hash);
    redisContext *c = redisConnect(it_env("PHR_TEST_REDIS_HOST"),
                                   (int)strtol(it_env("PHR_TEST_REDIS_PORT"), NULL, 10));
    if (c == NULL || c->err) {
        redisFree(c);
        return -1;
    }
    redisReply *rep = redisCommand(c, "AUTH %s", it_env("PHR_TEST_REDIS_PASSWORD"));
    freeReplyObject(rep);
    rep = redisCommand(c, "GET phr:sess:%s", hash);
    if (rep != NULL && rep->type == REDIS_REPLY_STRING && sess_from_json(rep->str, &s) == 0) {
        s.authenticated_ms = tu_now_ms() - age_ms;
        char *json = sess_to_json(&s);
        redisReply *set = json ? redisCommand(c, "SET phr:sess:%s %s KEEPTTL", hash, json) : NULL;
        ok = set != NULL && set->type == REDIS_REPLY_STATUS;
        freeReplyObject(set);
        free(json);
    }
    freeReplyObject(rep);
    redisFree(c);
    return ok ? 0 : -1;
}

static void
test_reauth_and_paging(void)
{
    org_env_t e;
    char email[128], path[800], cursor[600], out[64];
    it_resp_t r;
    json_object *items;

    IT_CHECK(org_setup(&e, 6));
    for (int i = 0; i < 2; i++) {
        it_unique_email(email, sizeof(email), "page");
        IT_CHECK(org_add_staff(&e, email, "staff", NULL) == 201);
    }
    /* staff list: 3 members over pages of 2 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff?limit=2", e.org_id);
    IT_CHECK(it_gw("GET", path, NULL, e.admin_token, &r) == 200);
    int n1 = json_object_object_get_ex(r.json, "items", &items)
                 ? (int)json_object_array_length(items)
                 : -1;
    snprintf(cursor, sizeof(cursor), "%s",
             it_json_str(&r, "next_cursor") ? it_json_str(&r, "next_cursor") : "");
    it_resp_free(&r);
    IT_CHECK(n1 == 2 && cursor[0] != '\0');
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff?limit=2&cursor=%s", e.org_id, cursor);
    IT_CHECK(it_gw("GET", path, NULL, e.admin_token, &r) == 200);
    int n2 = json_object_object_get_ex(r.json, "items", &items)
                 ? (int)json_object_array_length(items)
                 : -1;
    int last = it_json_str(&r, "next_cursor") == NULL;
    it_resp_free(&r);
    IT_CHECK(n2 == 1 && last);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff?cursor=AAAA", e.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, e.admin_token, "cursor"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff?limit=0", e.org_id);
    IT_CHECK(it_gw_names_field("GET", path, NULL, e.admin_token, "limit"));
    /* operator org list: newest first, paged */
    IT_CHECK(it_gw("GET", "/api/v1/admin/orgs?limit=1", NULL, e.op_token, &r) == 200);
    snprintf(cursor, sizeof(cursor), "%s",
             it_json_str(&r, "next_cursor") ? it_json_str(&r, "next_cursor") : "");
    int first =
        json_object_object_get_ex(r.json, "items", &items) && json_object_array_length(items) == 1;
    it_resp_free(&r);
    IT_CHECK(first && cursor[0] != '\0');
    snprintf(path, sizeof(path), "/api/v1/admin/orgs?limit=1&cursor=%s", cursor);
    IT_CHECK(it_gw_status("GET", path, NULL, e.op_token) == 200);
    IT_CHECK(it_gw_names_field("GET", "/api/v1/admin/orgs?cursor=!!", NULL, e.op_token, "cursor"));
    /* admin actions need a password check within 15 minutes */
    IT_CHECK(org_age_session(e.admin_token, 16 * 60 * 1000LL) == 0);
    it_unique_email(email, sizeof(email), "late");
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"name\":\"Late\",\"role\":\"staff\"}", email);
    IT_CHECK(it_gw_problem("POST", path, body, e.admin_token, 401, "reauth_required"));
    IT_CHECK(it_gw_status("GET", path, NULL, e.admin_token) == 200); /* reading needs no re-auth */
    IT_CHECK(org_age_session(e.op_token, 16 * 60 * 1000LL) == 0);
    IT_CHECK(it_gw_problem("PATCH", "/api/v1/admin/orgs/00000000-0000-7000-8000-000000000000",
                           "{\"seat_limit\":3}", e.op_token, 401, "reauth_required"));
    IT_CHECK(it_psql("auth", out, sizeof(out), "SELECT count(*) FROM accounts WHERE email = '%s'",
                     email) == 0 &&
             strcmp(out, "0") == 0);
}

/* ---- MFA reset ----------------------------------------------------------- */

static size_t
org_b32_decode(const char *s, unsigned char *out, size_t cap)
{
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned int acc = 0;
    int bits = 0;
    size_t n = 0;

    for (; *s != '\0'; s++) {
        const char *p = strchr(alphabet, *s);
        if (p == NULL || n >= cap) {
            return 0;
        }
        acc = (acc << 5) | (unsigned int)(p - alphabet);
        bits += 5;
        if (bits >= 8) {
            out[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return n;
}

static void
org_totp(const unsigned char *key, size_t keylen, long long step, char *out)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(step & 0xff);
        step >>= 8;
    }
    HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &len);
    int off = mac[len - 1] & 0x0f;
    unsigned long bin = ((unsigned long)(mac[off] & 0x7f) << 24) |
                        ((unsigned long)mac[off + 1] << 16) | ((unsigned long)mac[off + 2] << 8) |
                        mac[off + 3];
    snprintf(out, 7, "%06lu", bin % 1000000ul);
}

/* Enrols and confirms TOTP for |token|. 1 when confirmed. */
static int
org_enrol_totp(const char *token)
{
    unsigned char key[64];
    char body[64], code[8];
    it_resp_t r;

    if (it_gw("POST", "/api/v1/auth/mfa/totp/enroll", NULL, token, &r) != 200 ||
        it_json_str(&r, "secret") == NULL) {
        it_resp_free(&r);
        return 0;
    }
    size_t keylen = org_b32_decode(it_json_str(&r, "secret"), key, sizeof(key));
    it_resp_free(&r);
    if (time(NULL) % 30 >= 27) {
        sleep(4);
    }
    org_totp(key, keylen, (long long)time(NULL) / 30, code);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    return keylen == 20 &&
           it_gw_status("POST", "/api/v1/auth/mfa/totp/confirm", body, token) == 200;
}

static void
test_reset_mfa(void)
{
    org_env_t e, other;
    char email[128], id[37], token[64], stoken[64], path[256], out[128];
    char semail[128], sid[37];

    IT_CHECK(org_setup(&e, 5));
    IT_CHECK(org_setup(&other, 2));
    it_unique_email(email, sizeof(email), "mfa");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_staff_login(email, id, ORG_PW, token));
    IT_CHECK(org_enrol_totp(token));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT (SELECT count(*) FROM mfa_totp WHERE account_id = '%s' AND "
                     "confirmed_at IS NOT NULL) || '/' || (SELECT count(*) FROM "
                     "mfa_recovery_codes WHERE account_id = '%s')",
                     id, id) == 0 &&
             strcmp(out, "1/10") == 0);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff/%s/reset-mfa", e.org_id, id);
    /* a plain staff member, another org's admin, an unknown or malformed target */
    it_unique_email(semail, sizeof(semail), "mfa-plain");
    IT_CHECK(org_add_staff(&e, semail, "staff", sid) == 201);
    IT_CHECK(it_staff_login(semail, sid, ORG_PW, stoken));
    IT_CHECK(it_gw_problem("POST", path, NULL, stoken, 403, "forbidden"));
    IT_CHECK(it_gw_status("POST", path, NULL, other.admin_token) == 404);
    snprintf(out, sizeof(out), "/api/v1/orgs/%s/staff/%s/reset-mfa", other.org_id, id);
    IT_CHECK(it_gw_status("POST", out, NULL, other.admin_token) == 404);
    char bad[256];
    snprintf(bad, sizeof(bad), "/api/v1/orgs/%s/staff/%s/reset-mfa", e.org_id,
             "0190f3a0-0000-7000-8000-0000000000ff");
    IT_CHECK(it_gw_status("POST", bad, NULL, e.admin_token) == 404);
    snprintf(bad, sizeof(bad), "/api/v1/orgs/%s/staff/not-a-uuid/reset-mfa", e.org_id);
    IT_CHECK(it_gw_status("POST", bad, NULL, e.admin_token) == 404);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM mfa_totp WHERE account_id = '%s'", id) == 0 &&
             strcmp(out, "1") == 0);
    /* the reset itself */
    IT_CHECK(it_gw_status("POST", path, NULL, e.admin_token) == 204);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT (SELECT count(*) FROM mfa_totp WHERE account_id = '%s') || '/' || "
                     "(SELECT count(*) FROM mfa_recovery_codes WHERE account_id = '%s')",
                     id, id) == 0 &&
             strcmp(out, "0/0") == 0);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/session", NULL, token) == 401);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'auth.mfa.reset' AND body->'target'->>'id' = '%s' AND "
                     "body->'actor'->>'account_id' = '%s'",
                     id, e.admin_id) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT body->'params'->>'method' || '/' || (body->'params'->>'change') "
                     "FROM outbox WHERE topic = 'notification' AND body->>'kind' = "
                     "'mfa_changed' AND body->'to'->>'account_id' = '%s' "
                     "ORDER BY created_at DESC LIMIT 1",
                     id) == 0 &&
             strcmp(out, "totp/reset") == 0);
    /* the staff member logs in with the password alone now */
    it_resp_t r;
    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, ORG_PW);
    IT_CHECK(it_gw("POST", "/api/v1/auth/login", body, NULL, &r) == 200 &&
             it_json_str(&r, "token") != NULL);
    it_resp_free(&r);
    /* a reset needs a recent password check */
    IT_CHECK(org_age_session(e.admin_token, 16 * 60 * 1000LL) == 0);
    IT_CHECK(it_gw_problem("POST", path, NULL, e.admin_token, 401, "reauth_required"));
}

/* ---- internal routes ----------------------------------------------------- */

static int
org_internal_problem(const char *caller, const char *method, const char *path, const char *body,
                     int status, const char *code)
{
    it_resp_t r;
    it_internal("auth", caller, method, path, body, &r);
    int ok = it_is_problem(&r, status, code);
    if (!ok) {
        fprintf(stderr, "  %s %s: %ld %.300s\n", method, path, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* 1 when the internal 400 answer names |field|. */
static int
org_internal_field(const char *method, const char *path, const char *body, const char *field)
{
    it_resp_t r;
    json_object *errs, *f;
    int ok = 0;
    /* A caller the route admits: contacts are for notification, the rest admits audit. */
    const char *caller = strncmp(path, "/internal/v1/contacts", 21) == 0 ? "notification" : "audit";
    if (it_internal("auth", caller, method, path, body, &r) == 400 && r.json != NULL &&
        json_object_object_get_ex(r.json, "errors", &errs)) {
        for (size_t i = 0; i < json_object_array_length(errs); i++) {
            if (json_object_object_get_ex(json_object_array_get_idx(errs, i), "field", &f) &&
                strcmp(json_object_get_string(f), field) == 0) {
                ok = 1;
            }
        }
    }
    if (!ok) {
        fprintf(stderr, "  %s %s: %ld %.300s\n", method, path, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* Item |i| of the answer's items, or NULL. */
static json_object *
org_item(const it_resp_t *r, size_t i)
{
    json_object *items;
    if (r->json == NULL || !json_object_object_get_ex(r->json, "items", &items) ||
        i >= json_object_array_length(items)) {
        return NULL;
    }
    return json_object_array_get_idx(items, i);
}

static size_t
org_nitems(const it_resp_t *r)
{
    json_object *items;
    return r->json != NULL && json_object_object_get_ex(r->json, "items", &items)
               ? json_object_array_length(items)
               : 0;
}

static const char *
org_get(json_object *o, const char *key)
{
    json_object *v;
    return o != NULL && json_object_object_get_ex(o, key, &v) && v != NULL
               ? json_object_get_string(v)
               : NULL;
}

static int
org_streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
test_internal_lookup_admins(void)
{
    org_env_t e;
    char email[128], id[37], body[512], path[160];
    it_resp_t r;

    IT_CHECK(org_setup(&e, 4));
    it_unique_email(email, sizeof(email), "int");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    /* the initial password was hashed with the current pepper */
    char out[64];
    IT_CHECK(it_psql("auth", out, sizeof(out), ORG_PEPPERED_SQL " id = '%s'", id) == 0 &&
             strcmp(out, "t") == 0);
    /* credentials */
    snprintf(body, sizeof(body), "{\"ids\":[\"%s\"]}", id);
    IT_CHECK(org_internal_problem(NULL, "POST", "/internal/v1/accounts/lookup", body, 401,
                                  "service_credential_required"));
    snprintf(path, sizeof(path), "/internal/v1/orgs/%s/admins", e.org_id);
    IT_CHECK(org_internal_problem(NULL, "GET", path, NULL, 401, "service_credential_required"));
    IT_CHECK(org_internal_problem(NULL, "GET", "/internal/v1/accounts", NULL, 401,
                                  "service_credential_required"));
    IT_CHECK(org_internal_problem(NULL, "GET", "/internal/v1/contacts", NULL, 401,
                                  "service_credential_required"));
    /* lookup: known ids in, unknown left out */
    snprintf(body, sizeof(body),
             "{\"ids\":[\"%s\",\"%s\",\"0190f3a0-0000-7000-8000-0000000000fe\"]}", id, e.admin_id);
    IT_CHECK(it_internal("auth", "records", "POST", "/internal/v1/accounts/lookup", body, &r) ==
             200);
    IT_CHECK(org_nitems(&r) == 2);
    int seen = 0;
    for (size_t i = 0; i < org_nitems(&r); i++) {
        json_object *it = org_item(&r, i);
        if (org_streq(org_get(it, "id"), id)) {
            seen +=
                org_streq(org_get(it, "email"), email) && org_streq(org_get(it, "kind"), "staff") &&
                org_streq(org_get(it, "role"), "staff") &&
                org_streq(org_get(it, "org_id"), e.org_id) &&
                org_streq(org_get(it, "status"), "pending") &&
                org_streq(org_get(it, "locale"), "ja") &&
                org_streq(org_get(it, "name"), "Staff staff") && org_get(it, "org_name") != NULL;
        } else if (org_streq(org_get(it, "id"), e.admin_id)) {
            seen += org_streq(org_get(it, "role"), "admin") &&
                    org_streq(org_get(it, "status"), "active") &&
                    org_streq(org_get(it, "email"), e.admin_email);
        }
    }
    it_resp_free(&r);
    IT_CHECK(seen == 2);
    IT_CHECK(org_internal_field("POST", "/internal/v1/accounts/lookup", "{\"ids\":[]}", "ids"));
    IT_CHECK(
        org_internal_field("POST", "/internal/v1/accounts/lookup", "{\"ids\":[\"x\"]}", "ids"));
    IT_CHECK(org_internal_field("POST", "/internal/v1/accounts/lookup", "{\"ids\":[1]}", "ids"));
    IT_CHECK(org_internal_field("POST", "/internal/v1/accounts/lookup", "{}", "ids"));
    /* admins of the org: exactly its one admin; a promoted staff member joins */
    IT_CHECK(it_internal("auth", "notification", "GET", path, NULL, &r) == 200);
    IT_CHECK(org_nitems(&r) == 1 && org_streq(org_get(org_item(&r, 0), "account_id"), e.admin_id) &&
             org_streq(org_get(org_item(&r, 0), "email"), e.admin_email) &&
             org_streq(org_get(org_item(&r, 0), "org_id"), e.org_id));
    /* the org's name travels with its people (incident mails, access logs) */
    char oname[128];
    IT_CHECK(it_psql("auth", oname, sizeof(oname), "SELECT name FROM organizations WHERE id = '%s'",
                     e.org_id) == 0);
    IT_CHECK(org_streq(org_get(org_item(&r, 0), "org_name"), oname));
    it_resp_free(&r);
    char spath[160];
    snprintf(spath, sizeof(spath), "/api/v1/orgs/%s/staff/%s", e.org_id, id);
    IT_CHECK(it_gw_status("PATCH", spath, "{\"role\":\"admin\"}", e.admin_token) == 200);
    IT_CHECK(it_internal("auth", "notification", "GET", path, NULL, &r) == 200);
    IT_CHECK(org_nitems(&r) == 2);
    it_resp_free(&r);
    IT_CHECK(org_internal_problem("audit", "GET",
                                  "/internal/v1/orgs/0190f3a0-0000-7000-8000-0000000000fd/admins",
                                  NULL, 404, "not_found"));
}

static void
test_internal_review_contacts(void)
{
    org_env_t e;
    char email[128], id[37], path[800], cursor[600];
    it_resp_t r;

    IT_CHECK(org_setup(&e, 5));
    for (int i = 0; i < 2; i++) {
        it_unique_email(email, sizeof(email), "rev");
        IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    }
    IT_CHECK(it_staff_login(email, id, ORG_PW, path)); /* the last one has logged in */
    /* the org's accounts by id, 2 a page: admin + 2 staff = 3 */
    snprintf(path, sizeof(path), "/internal/v1/accounts?org_id=%s&limit=2", e.org_id);
    IT_CHECK(it_internal("auth", "audit", "GET", path, NULL, &r) == 200);
    size_t n1 = org_nitems(&r);
    snprintf(cursor, sizeof(cursor), "%s",
             it_json_str(&r, "next_cursor") ? it_json_str(&r, "next_cursor") : "");
    char first[37];
    snprintf(first, sizeof(first), "%s",
             org_get(org_item(&r, 0), "id") ? org_get(org_item(&r, 0), "id") : "");
    int sorted =
        strcmp(first, org_get(org_item(&r, 1), "id") ? org_get(org_item(&r, 1), "id") : "") < 0;
    it_resp_free(&r);
    IT_CHECK(n1 == 2 && cursor[0] != '\0' && sorted);
    snprintf(path, sizeof(path), "/internal/v1/accounts?org_id=%s&limit=2&cursor=%s", e.org_id,
             cursor);
    IT_CHECK(it_internal("auth", "audit", "GET", path, NULL, &r) == 200);
    IT_CHECK(org_nitems(&r) == 1 && it_json_str(&r, "next_cursor") == NULL);
    it_resp_free(&r);
    /* the logged-in one has a last login, role and no MFA */
    snprintf(path, sizeof(path), "/internal/v1/accounts?org_id=%s&kind=staff", e.org_id);
    IT_CHECK(it_internal("auth", "audit", "GET", path, NULL, &r) == 200);
    int found = 0;
    for (size_t i = 0; i < org_nitems(&r); i++) {
        json_object *it = org_item(&r, i), *m;
        if (org_streq(org_get(it, "id"), id)) {
            found = org_get(it, "last_login_at") != NULL &&
                    org_streq(org_get(it, "role"), "staff") &&
                    json_object_object_get_ex(it, "mfa_methods", &m) &&
                    json_object_array_length(m) == 0 && org_get(it, "created_at") != NULL;
        }
    }
    IT_CHECK(org_nitems(&r) == 3 && found);
    it_resp_free(&r);
    snprintf(path, sizeof(path), "/internal/v1/accounts?org_id=%s&kind=patient", e.org_id);
    IT_CHECK(it_internal("auth", "audit", "GET", path, NULL, &r) == 200 && org_nitems(&r) == 0);
    it_resp_free(&r);
    IT_CHECK(org_internal_field("GET", "/internal/v1/accounts?org_id=nope", NULL, "org_id"));
    IT_CHECK(org_internal_field("GET", "/internal/v1/accounts?kind=robot", NULL, "kind"));
    IT_CHECK(org_internal_field("GET", "/internal/v1/accounts?limit=201", NULL, "limit"));
    IT_CHECK(org_internal_field("GET", "/internal/v1/accounts?cursor=AAAA", NULL, "cursor"));
    /* contacts: every page of org admins, resumed by cursor, holds this org's admin once */
    int pages = 0, admin_seen = 0, staff_seen = 0;
    cursor[0] = '\0';
    do {
        snprintf(path, sizeof(path), "/internal/v1/contacts?audience=org_admins&limit=50%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        IT_CHECK(it_internal("auth", "notification", "GET", path, NULL, &r) == 200);
        for (size_t i = 0; i < org_nitems(&r); i++) {
            json_object *it = org_item(&r, i), *ph;
            admin_seen += org_streq(org_get(it, "account_id"), e.admin_id) &&
                          json_object_object_get_ex(it, "phone", &ph) && ph == NULL;
            staff_seen += org_streq(org_get(it, "account_id"), id);
        }
        snprintf(cursor, sizeof(cursor), "%s",
                 it_json_str(&r, "next_cursor") ? it_json_str(&r, "next_cursor") : "");
        it_resp_free(&r);
    } while (cursor[0] != '\0' && ++pages < 1000);
    IT_CHECK(admin_seen == 1 && staff_seen == 0);
    /* all: a page of 1 after the admin's id starts past it */
    /* Only the callers the contract names: audit may not page through contacts, and so on. */
    IT_CHECK(org_internal_problem("audit", "GET", "/internal/v1/contacts?limit=1", NULL, 403,
                                  "caller_not_allowed"));
    IT_CHECK(org_internal_problem("records", "GET", "/internal/v1/accounts?limit=1", NULL, 403,
                                  "caller_not_allowed"));
    IT_CHECK(it_internal("auth", "notification", "GET", "/internal/v1/contacts?limit=1", NULL,
                         &r) == 200);
    IT_CHECK(org_nitems(&r) == 1 && it_json_str(&r, "next_cursor") != NULL);
    it_resp_free(&r);
    IT_CHECK(
        org_internal_field("GET", "/internal/v1/contacts?audience=everyone", NULL, "audience"));
    IT_CHECK(org_internal_field("GET", "/internal/v1/contacts?cursor=!!", NULL, "cursor"));
}

/* ---- require_mfa, the password minimum, initial password expiry, SessionInfo ---- */

/* Sets require_mfa of |e|'s org as its operator. 1 on 200. */
static int
org_require_mfa(const org_env_t *e, int on)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/orgs/%s", e->org_id);
    return it_gw_status("PATCH", path, on ? "{\"require_mfa\":true}" : "{\"require_mfa\":false}",
                        e->op_token) == 200;
}

/* 1 when boolean |key| of |o| is |want|. */
static int
org_bool_is(json_object *o, const char *key, int want)
{
    json_object *v;
    return o != NULL && json_object_object_get_ex(o, key, &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v) == want;
}

/* Logs in with the full answer in |r| (caller frees); the token into |token|. Returns the status. */
static long
org_login_resp(const char *email, const char *pw, char *token, it_resp_t *r)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    long st = it_gw("POST", "/api/v1/auth/login", body, NULL, r);
    if (st == 200 && it_json_str(r, "token") != NULL) {
        snprintf(token, 64, "%s", it_json_str(r, "token"));
    }
    return st;
}

static void
test_require_mfa_gate(void)
{
    org_env_t e;
    char email[128], id[37], pw[64], tok[64], tok2[64], path[160];
    it_resp_t r;
    int ok;

    IT_CHECK(org_setup(&e, 5));
    /* no require_mfa: no gate */
    IT_CHECK(org_login_resp(e.admin_email, ORG_PW, tok, &r) == 200);
    ok = org_bool_is(r.json, "mfa_enrollment_required", 0);
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/sessions", NULL, tok) == 200);

    IT_CHECK(org_require_mfa(&e, 1));
    it_unique_email(email, sizeof(email), "gate");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_onboarding_pw(id, pw, sizeof(pw)));
    IT_CHECK(org_login_resp(email, pw, tok, &r) == 200);
    ok = org_bool_is(r.json, "mfa_enrollment_required", 1) &&
         org_bool_is(r.json, "must_change_password", 1);
    it_resp_free(&r);
    IT_CHECK(ok);
    /* the password gate first, then the MFA gate; the password change itself is allowed */
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/auth/sessions", NULL, tok, 403, "password_change_required"));
    IT_CHECK(it_change_pw(tok, pw, ORG_PW));
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/auth/sessions", NULL, tok, 403, "mfa_enrollment_required"));
    IT_CHECK(it_gw_problem("POST", "/api/v1/auth/sessions/revoke-others", NULL, tok, 403,
                           "mfa_enrollment_required"));
    IT_CHECK(it_gw_problem("DELETE", "/api/v1/auth/mfa/totp", "{\"password\":\"x\",\"code\":\"1\"}",
                           tok, 403, "mfa_enrollment_required"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    IT_CHECK(it_gw_problem("GET", path, NULL, tok, 403, "mfa_enrollment_required"));
    /* the session route answers and says why */
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, tok, &r) == 200);
    ok = org_bool_is(r.json, "mfa_enrollment_required", 1) &&
         org_bool_is(r.json, "mfa_required_by_org", 1);
    it_resp_free(&r);
    IT_CHECK(ok);
    /* a second gated session of the same account */
    IT_CHECK(it_login(email, ORG_PW, tok2) == 200);
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/auth/sessions", NULL, tok2, 403, "mfa_enrollment_required"));
    /* an admin of the org logging in again is gated too (staff routes included) */
    char atok[64];
    IT_CHECK(it_login(e.admin_email, ORG_PW, atok) == 200);
    IT_CHECK(it_gw_problem("GET", path, NULL, atok, 403, "mfa_enrollment_required"));
    IT_CHECK(it_gw_status("GET", path, NULL, tok) == 403);
    /* enrolling lifts the gate of every session of the account at once */
    IT_CHECK(org_enrol_totp(tok));
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/sessions", NULL, tok) == 200);
    IT_CHECK(it_gw_status("GET", "/api/v1/auth/sessions", NULL, tok2) == 200);
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, tok, &r) == 200);
    ok = org_bool_is(r.json, "mfa_enrollment_required", 0);
    it_resp_free(&r);
    IT_CHECK(ok);
    /* the admin's session stays gated until it enrols; logout is always allowed */
    IT_CHECK(it_gw_problem("GET", path, NULL, atok, 403, "mfa_enrollment_required"));
    IT_CHECK(it_gw_status("POST", "/api/v1/auth/logout", NULL, atok) == 204);
    /* require_mfa off again: a new login is not gated */
    IT_CHECK(org_require_mfa(&e, 0));
    IT_CHECK(it_login(e.admin_email, ORG_PW, atok) == 200);
    IT_CHECK(it_gw_status("GET", path, NULL, atok) == 200);
}

/* Changes |token|'s password from |old| to |new_pw|; 1 when the answer is |status|. */
static int
org_change_pw_to(const char *token, const char *old, const char *new_pw, long status)
{
    char body[256];
    it_resp_t r;
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", old,
             new_pw);
    long st = it_gw("POST", "/api/v1/auth/password", body, token, &r);
    int ok = st == status && (status != 422 || strstr(r.body, "too_short") != NULL);
    if (!ok) {
        fprintf(stderr, "  password change: %ld %.300s\n", st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

static void
test_password_minimum(void)
{
    org_env_t e;
    char email[128], id[37], tok[64];

    /* 12 characters: too short for single-factor staff (13+), enough with a second factor */
    IT_CHECK(org_setup(&e, 5));
    it_unique_email(email, sizeof(email), "min");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_staff_login(email, id, ORG_PW, tok));
    IT_CHECK(org_change_pw_to(tok, ORG_PW, "Gr4nite!Lake", 422));
    IT_CHECK(org_change_pw_to(tok, ORG_PW, "Gr4nite!Lakes", 204));
    IT_CHECK(org_enrol_totp(tok));
    IT_CHECK(org_change_pw_to(tok, "Gr4nite!Lakes", "Gr4nite!Lake", 204));
    /* staff of an org requiring MFA (gated, but may change the password): 8+ */
    IT_CHECK(org_require_mfa(&e, 1));
    it_unique_email(email, sizeof(email), "min2");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_staff_login(email, id, ORG_PW, tok));
    IT_CHECK(org_change_pw_to(tok, ORG_PW, "Gr4nite!Lake", 204));
}

static void
test_initial_password_expiry(void)
{
    org_env_t e;
    char email[128], id[37], pw[64], tok[64], out[64];

    IT_CHECK(org_setup(&e, 5));
    it_unique_email(email, sizeof(email), "exp");
    IT_CHECK(org_add_staff(&e, email, "staff", id) == 201);
    IT_CHECK(it_onboarding_pw(id, pw, sizeof(pw)));
    /* created with a 72 h expiry */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT password_expires_at BETWEEN now() + interval '71 hours' AND "
                     "now() + interval '73 hours' FROM accounts WHERE id = '%s'",
                     id) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET password_expires_at = now() - interval '1 minute' "
                     "WHERE id = '%s' RETURNING 1",
                     id) == 0 &&
             strcmp(out, "1") == 0);
    it_resp_t r;
    org_login_resp(email, pw, tok, &r); /* waits out the gateway's 429 */
    int ok = it_is_problem(&r, 401, "invalid_credentials");
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                     "'auth.login.failure' AND body->'target'->>'id' = '%s' AND "
                     "body->'outcome'->>'reason' = 'password_expired'",
                     id) == 0 &&
             strcmp(out, "1") == 0);
    /* still valid: login works, and the change clears the expiry */
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "UPDATE accounts SET password_expires_at = now() + interval '1 hour', "
                     "failed_logins = 0 WHERE id = '%s' RETURNING 1",
                     id) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_login(email, pw, tok) == 200);
    IT_CHECK(it_change_pw(tok, pw, ORG_PW));
    IT_CHECK(it_psql("auth", out, sizeof(out),
                     "SELECT password_expires_at IS NULL FROM accounts WHERE id = '%s'", id) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_login(email, ORG_PW, tok) == 200);
}

static void
test_session_info(void)
{
    org_env_t e;
    json_object *a, *m, *v;
    it_resp_t r;
    int ok;

    IT_CHECK(org_setup(&e, 5));
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, e.admin_token, &r) == 200);
    ok = r.json != NULL && json_object_object_get_ex(r.json, "account", &a) &&
         json_object_object_get_ex(r.json, "mfa_methods", &m) &&
         json_object_is_type(m, json_type_array) && json_object_array_length(m) == 0 &&
         org_streq(org_get(a, "id"), e.admin_id) && org_streq(org_get(a, "email"), e.admin_email) &&
         org_streq(org_get(a, "name"), "Admin A") && org_streq(org_get(a, "kind"), "staff") &&
         org_streq(org_get(a, "locale"), "en") && org_streq(org_get(a, "org_id"), e.org_id) &&
         org_streq(org_get(a, "role"), "admin") &&
         json_object_object_get_ex(a, "email_verified", &v) &&
         org_streq(it_json_str(&r, "kind"), "staff") &&
         org_streq(it_json_str(&r, "org_id"), e.org_id) &&
         org_streq(it_json_str(&r, "role"), "admin") && org_streq(it_json_str(&r, "mfa"), "none") &&
         it_json_str(&r, "session_id") != NULL && it_json_str(&r, "created_at") != NULL &&
         it_json_str(&r, "authenticated_at") != NULL && it_json_str(&r, "expires_at") != NULL &&
         it_json_str(&r, "idle_expires_at") != NULL &&
         org_bool_is(r.json, "must_change_password", 0) &&
         org_bool_is(r.json, "mfa_required_by_org", 0);
    if (!ok) {
        fprintf(stderr, "  session: %.600s\n", r.body ? r.body : "");
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    /* enrolled factors come from the MFA tables */
    IT_CHECK(org_enrol_totp(e.admin_token));
    IT_CHECK(it_gw("GET", "/api/v1/auth/session", NULL, e.admin_token, &r) == 200);
    ok = json_object_object_get_ex(r.json, "mfa_methods", &m) && json_object_array_length(m) == 1 &&
         org_streq(json_object_get_string(json_object_array_get_idx(m, 0)), "totp");
    it_resp_free(&r);
    IT_CHECK(ok);
    /* ... and the org's staff list shows them (the console's MFA column) */
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/staff", e.org_id);
    IT_CHECK(it_gw("GET", path, NULL, e.admin_token, &r) == 200);
    ok = 0;
    for (size_t i = 0; i < org_nitems(&r); i++) {
        json_object *it = org_item(&r, i);
        if (org_streq(org_get(it, "id"), e.admin_id)) {
            ok = json_object_object_get_ex(it, "mfa_methods", &m) &&
                 json_object_array_length(m) == 1 &&
                 org_streq(json_object_get_string(json_object_array_get_idx(m, 0)), "totp");
        }
    }
    it_resp_free(&r);
    IT_CHECK(ok);
    IT_CHECK(
        it_gw_problem("GET", "/api/v1/auth/session", NULL, "not-a-token", 401, "session_expired"));
    IT_CHECK(it_gw_problem("GET", "/api/v1/auth/session", NULL, NULL, 401, "unauthenticated"));
}

const it_case_t auth_org_cases[] = {
    {"auth_org_phrctl", test_phrctl},
    {"auth_org_create_access", test_org_create_and_access},
    {"auth_org_seats", test_seats},
    {"auth_org_roles_delete_unlock", test_roles_delete_unlock},
    {"auth_org_reauth_paging", test_reauth_and_paging},
    {"auth_org_reset_mfa", test_reset_mfa},
    {"auth_org_internal_lookup_admins", test_internal_lookup_admins},
    {"auth_org_internal_review_contacts", test_internal_review_contacts},
    {"auth_org_require_mfa_gate", test_require_mfa_gate},
    {"auth_org_password_minimum", test_password_minimum},
    {"auth_org_initial_password_expiry", test_initial_password_expiry},
    {"auth_org_session_info", test_session_info},
    {NULL, NULL},
};
