/*
 * test_records_share.c - records: invitations, links (consent), staff patient list, groups and
 * categories, through the gateway. Two organizations (each with its admin, who is staff of it)
 * are made once through the operator CLI and the org API; patients register, get their e-mail
 * marked verified with psql and log in. Outbox rows (audit events) and link rows are read with
 * psql as phr_records.
 *
 * Environment (set by tests/run.sh): PHR_TEST_GATEWAY, PHR_TEST_VAR, PHR_TEST_PG_HOST,
 * PHR_TEST_PG_PORT; PHR_BUILD (default "build") names the build dir holding bin/phrctl.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define SH_PW "Blue7Harbor!qLong"
#define SH_CODE_CHARS "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

typedef struct {
    char org_id[37];
    char admin_id[37];
    char token[64]; /* the admin: staff (role admin) of the org */
} sh_org_t;

static sh_org_t sh_a, sh_b;
static int sh_ready; /* 1 made, -1 failed */

/* ---- requests ----------------------------------------------------------- */

/* ---- fixtures ----------------------------------------------------------- */

/* An org made by operator |op| with its admin logged in (password changed). */
static int
sh_org_make(const char *op, const char *name, sh_org_t *o)
{
    char email[128];

    it_unique_email(email, sizeof(email), "shadm");
    return it_org_new(op, name, 5, email, "Admin", o->org_id, o->admin_id) &&
           it_staff_login(email, o->admin_id, SH_PW, o->token);
}

static int
sh_setup(void)
{
    char op[IT_TOKEN_CAP];

    if (sh_ready != 0) {
        return sh_ready > 0;
    }
    sh_ready = -1;
    if (!it_operator_new("shop", SH_PW, op) || !sh_org_make(op, "Share Clinic A", &sh_a) ||
        !sh_org_make(op, "Share Clinic B", &sh_b)) {
        return 0;
    }
    sh_ready = 1;
    return 1;
}

/* A patient named |name| (JSON-escaped already), e-mail verified when |verified|, logged in. */
static int
sh_patient(const char *name, int verified, it_patient_t *p)
{
    char out[64];

    return it_patient_named("shpat", name, SH_PW, 0, p) &&
           (!verified ||
            it_psql("auth", out, sizeof(out),
                    "UPDATE accounts SET email_verified_at = now() WHERE id = '%s'", p->id) == 0) &&
           it_login(p->email, SH_PW, p->token) == 200;
}

/* Creates an invitation of |o|; its code and id. 1 on a 201 of the right shape. */
static int
sh_invite(const sh_org_t *o, char *code, char *id)
{
    char path[160];
    it_resp_t r;

    snprintf(path, sizeof(path), "/api/v1/orgs/%s/invitations", o->org_id);
    int ok = it_gw("POST", path, NULL, o->token, &r) == 201 && it_json_str(&r, "code") != NULL &&
             it_json_str(&r, "id") != NULL;
    if (ok) {
        snprintf(code, 9, "%s", it_json_str(&r, "code"));
        snprintf(id, 37, "%s", it_json_str(&r, "id"));
    } else {
        fprintf(stderr, "  invite: %ld %.300s\n", r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* Patient |p| accepts |code|. Returns the status. */
static long
sh_accept(const it_patient_t *p, const char *code)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    return it_gw_status("POST", "/api/v1/me/links", body, p->token);
}

/* Invites and links |p| to |o|. */
static int
sh_link(const sh_org_t *o, const it_patient_t *p)
{
    char code[9], id[37];
    return sh_invite(o, code, id) && sh_accept(p, code) == 201;
}

/* 1 when |code| is 8 characters of the unambiguous alphabet. */
static int
sh_code_ok(const char *code)
{
    return strlen(code) == 8 && strspn(code, SH_CODE_CHARS) == 8;
}

/* The items array of |r| (borrowed) or NULL. */
static json_object *
sh_items(const it_resp_t *r)
{
    json_object *items;
    return r->json != NULL && json_object_object_get_ex(r->json, "items", &items) &&
                   json_object_is_type(items, json_type_array)
               ? items
               : NULL;
}

/* The item of |items| whose |key| is |value|, or NULL. */
static json_object *
sh_find(json_object *items, const char *key, const char *value)
{
    json_object *v;
    for (size_t i = 0; items != NULL && i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        if (json_object_object_get_ex(it, key, &v) &&
            strcmp(json_object_get_string(v), value) == 0) {
            return it;
        }
    }
    return NULL;
}

/* GET |path| as |token|: 1 when 200 and the patient |pid| is (|present|) or is not listed. */
static int
sh_listed(const char *path, const char *token, const char *pid, int present)
{
    it_resp_t r;
    int ok = it_gw("GET", path, NULL, token, &r) == 200 && sh_items(&r) != NULL &&
             (sh_find(sh_items(&r), "patient_id", pid) != NULL) == present;
    if (!ok) {
        fprintf(stderr, "  GET %s: %ld %.400s\n", path, r.status, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return ok;
}

/* The count of a "SELECT count(*) ..." in the records database, or -1. */
static long __attribute__((format(printf, 1, 2))) sh_count(const char *fmt, ...)
{
    char q[1024], out[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    if (it_psql("records", out, sizeof(out), "%s", q) != 0) {
        return -1;
    }
    return strtol(out, NULL, 10);
}

/* ---- invitations -------------------------------------------------------- */

static void
test_invitations(void)
{
    char path[200], path_b[200], code[9], id[37];
    it_patient_t pat;
    it_resp_t r;

    IT_CHECK(sh_setup());
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/invitations", sh_a.org_id);
    snprintf(path_b, sizeof(path_b), "/api/v1/orgs/%s/invitations", sh_b.org_id);
    /* shape: code of 8 unambiguous characters, 7 days, who and the note */
    IT_CHECK(it_gw("POST", path, "{\"note\":\"Tanaka-san, 2F\"}", sh_a.token, &r) == 201);
    const char *c = it_json_str(&r, "code");
    const char *exp = it_json_str(&r, "expires_at");
    const char *made = it_json_str(&r, "created_at");
    const char *by = it_json_str(&r, "created_by");
    const char *note = it_json_str(&r, "note");
    int shape = c != NULL && sh_code_ok(c) && exp != NULL && made != NULL && by != NULL &&
                strcmp(by, sh_a.admin_id) == 0 && note != NULL &&
                strcmp(note, "Tanaka-san, 2F") == 0 && strstr(exp, "+09:00") != NULL;
    snprintf(id, sizeof(id), "%s", it_json_str(&r, "id") ? it_json_str(&r, "id") : "");
    snprintf(code, sizeof(code), "%s", c != NULL ? c : "");
    it_resp_free(&r);
    IT_CHECK(shape);
    IT_CHECK(sh_count("SELECT count(*) FROM invitations WHERE id = '%s' AND expires_at BETWEEN "
                      "created_at + interval '7 days' - interval '1 minute' AND created_at + "
                      "interval '7 days' + interval '1 minute'",
                      id) == 1);
    /* the alphabet over many codes: every code well formed, all distinct */
    char seen[40][9];
    for (int i = 0; i < 40; i++) {
        char cid[37];
        IT_CHECK(sh_invite(&sh_a, seen[i], cid) && sh_code_ok(seen[i]));
        for (int j = 0; j < i; j++) {
            IT_CHECK(strcmp(seen[i], seen[j]) != 0);
        }
    }
    /* audited in the same transaction */
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.invitation.create' AND body->'target'->>'id' = '%s'",
                      id) == 1);
    /* listed (open ones), newest first, paged */
    IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
    int listed = sh_find(sh_items(&r), "id", id) != NULL;
    it_resp_free(&r);
    IT_CHECK(listed);
    char p2[900];
    snprintf(p2, sizeof(p2), "%s?limit=2", path);
    IT_CHECK(it_gw("GET", p2, NULL, sh_a.token, &r) == 200);
    const char *next = it_json_str(&r, "next_cursor");
    char cursor[600];
    snprintf(cursor, sizeof(cursor), "%s", next != NULL ? next : "");
    int two = sh_items(&r) != NULL && json_object_array_length(sh_items(&r)) == 2;
    it_resp_free(&r);
    IT_CHECK(two && cursor[0] != '\0');
    snprintf(p2, sizeof(p2), "%s?limit=2&cursor=%s", path, cursor);
    IT_CHECK(it_gw_status("GET", p2, NULL, sh_a.token) == 200);
    /* bad input */
    char long_note[300];
    snprintf(long_note, sizeof(long_note), "{\"note\":\"%0201d\"}", 0); /* 201 characters */
    IT_CHECK(it_gw_names_field("POST", path, long_note, sh_a.token, "note"));
    IT_CHECK(it_gw_names_field("POST", path, "{\"color\":1}", sh_a.token, "color"));
    IT_CHECK(it_gw_names_field("POST", path, "{\"note\":5}", sh_a.token, "note"));
    snprintf(p2, sizeof(p2), "%s?limit=0", path);
    IT_CHECK(it_gw_names_field("GET", p2, NULL, sh_a.token, "limit"));
    snprintf(p2, sizeof(p2), "%s?limit=abc", path);
    IT_CHECK(it_gw_names_field("GET", p2, NULL, sh_a.token, "limit"));
    snprintf(p2, sizeof(p2), "%s?cursor=AAAA", path);
    IT_CHECK(it_gw_names_field("GET", p2, NULL, sh_a.token, "cursor"));
    /* a tampered cursor: one character changed */
    cursor[3] = cursor[3] == 'A' ? 'B' : 'A';
    snprintf(p2, sizeof(p2), "%s?cursor=%s", path, cursor);
    IT_CHECK(it_gw_names_field("GET", p2, NULL, sh_a.token, "cursor"));
    /* other orgs and patients */
    IT_CHECK(it_gw_problem("POST", path, NULL, sh_b.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", path, NULL, sh_b.token, 404, "not_found"));
    IT_CHECK(sh_patient("Pat Inv", 1, &pat));
    IT_CHECK(it_gw_problem("POST", path, NULL, pat.token, 403, "forbidden"));
    IT_CHECK(it_gw_problem("GET", path, NULL, pat.token, 403, "forbidden"));
    IT_CHECK(it_gw_status("GET", path, NULL, NULL) == 401);
    /* cancel: org B cannot, org A can once; a cancelled code links nobody */
    snprintf(p2, sizeof(p2), "%s/%s", path_b, id);
    IT_CHECK(it_gw_problem("DELETE", p2, NULL, sh_b.token, 404, "not_found"));
    snprintf(p2, sizeof(p2), "%s/not-a-uuid", path);
    IT_CHECK(it_gw_problem("DELETE", p2, NULL, sh_a.token, 404, "not_found"));
    snprintf(p2, sizeof(p2), "%s/%s", path, id);
    IT_CHECK(it_gw_status("DELETE", p2, NULL, sh_a.token) == 204);
    IT_CHECK(it_gw_problem("DELETE", p2, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.invitation.cancel' AND body->'target'->>'id' = '%s'",
                      id) == 1);
    IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
    listed = sh_find(sh_items(&r), "id", id) != NULL;
    it_resp_free(&r);
    IT_CHECK(!listed);
    char body[64];
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, pat.token, 422, "invalid_code"));
}

/* ---- links -------------------------------------------------------------- */

static void
test_links(void)
{
    char code[9], id[37], body[128], path[200], typed[16];
    it_patient_t p1, p2, unverified;
    it_resp_t r;

    IT_CHECK(sh_setup());
    IT_CHECK(sh_patient("Link One", 1, &p1) && sh_patient("Link Two", 1, &p2) &&
             sh_patient("Link Unverified", 0, &unverified));
    IT_CHECK(sh_invite(&sh_a, code, id));
    /* bad input */
    IT_CHECK(it_gw_names_field("POST", "/api/v1/me/links", "{}", p1.token, "code"));
    IT_CHECK(
        it_gw_names_field("POST", "/api/v1/me/links", "{\"code\":\"0O1IL0O1\"}", p1.token, "code"));
    IT_CHECK(it_gw_names_field("POST", "/api/v1/me/links", "{\"code\":\"ABCDEFGHJKMNPQRST\"}",
                               p1.token, "code"));
    IT_CHECK(
        it_gw_names_field("POST", "/api/v1/me/links", "{\"code\":12345678}", p1.token, "code"));
    snprintf(body, sizeof(body), "{\"code\":\"%s\",\"org\":1}", code);
    IT_CHECK(it_gw_names_field("POST", "/api/v1/me/links", body, p1.token, "org"));
    snprintf(body, sizeof(body), "{\"code\":\"%s\",\"terms_version\":\"\"}", code);
    IT_CHECK(it_gw_names_field("POST", "/api/v1/me/links", body, p1.token, "terms_version"));
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", "{\"code\":\"ZZZZZZZZ\"}", p1.token, 422,
                           "invalid_code"));
    /* staff cannot accept; an unverified e-mail cannot share */
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, sh_a.token, 403, "forbidden"));
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, unverified.token, 403,
                           "email_not_verified"));
    /* typed the friendly way: lower case with a hyphen and a space */
    snprintf(typed, sizeof(typed), "%.4s- %.4s", code, code + 4);
    for (char *t = typed; *t; t++) {
        *t = (char)tolower((unsigned char)*t);
    }
    snprintf(body, sizeof(body), "{\"code\":\"%s\",\"terms_version\":\"2026-04\"}", typed);
    IT_CHECK(it_gw("POST", "/api/v1/me/links", body, p1.token, &r) == 201);
    int shape = it_json_str(&r, "org_id") != NULL &&
                strcmp(it_json_str(&r, "org_id"), sh_a.org_id) == 0 &&
                it_json_str(&r, "linked_at") != NULL &&
                strstr(it_json_str(&r, "linked_at"), "+09:00") != NULL &&
                it_json_str(&r, "terms_version") != NULL &&
                strcmp(it_json_str(&r, "terms_version"), "2026-04") == 0;
    it_resp_free(&r);
    IT_CHECK(shape);
    /* consent recorded (org, time, terms), invitation used, audited */
    IT_CHECK(sh_count("SELECT count(*) FROM links WHERE patient_id = '%s' AND org_id = '%s' AND "
                      "terms_version = '2026-04' AND revoked_at IS NULL AND linked_at > now() - "
                      "interval '1 minute'",
                      p1.id, sh_a.org_id) == 1);
    IT_CHECK(sh_count("SELECT count(*) FROM invitations WHERE id = '%s' AND used_by = '%s' AND "
                      "used_at IS NOT NULL",
                      id, p1.id) == 1);
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.link.create' AND body->'target'->>'patient_id' = '%s' AND "
                      "body->'target'->>'org_id' = '%s'",
                      p1.id, sh_a.org_id) == 1);
    /* single use */
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, p2.token, 422, "invalid_code"));
    /* already linked: 409, and the new invitation stays usable */
    IT_CHECK(sh_invite(&sh_a, code, id));
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, p1.token, 409, "already_linked"));
    IT_CHECK(sh_count("SELECT count(*) FROM invitations WHERE id = '%s' AND used_at IS NULL", id) ==
             1);
    /* expired */
    IT_CHECK(sh_count("WITH u AS (UPDATE invitations SET expires_at = now() - interval '1 second' "
                      "WHERE id = '%s' RETURNING 1) SELECT count(*) FROM u",
                      id) == 1);
    IT_CHECK(it_gw_problem("POST", "/api/v1/me/links", body, p2.token, 422, "invalid_code"));
    /* GET /me/links */
    IT_CHECK(it_gw("GET", "/api/v1/me/links", NULL, p1.token, &r) == 200);
    json_object *it = sh_find(sh_items(&r), "org_id", sh_a.org_id), *v;
    int has = it != NULL && json_object_object_get_ex(it, "terms_version", &v) &&
              json_object_object_get_ex(it, "org_name", &v);
    it_resp_free(&r);
    IT_CHECK(has);
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/links?limit=500", NULL, p1.token, "limit"));
    IT_CHECK(it_gw_names_field("GET", "/api/v1/me/links?cursor=abc!", NULL, p1.token, "cursor"));
    IT_CHECK(it_gw_problem("GET", "/api/v1/me/links", NULL, sh_a.token, 403, "forbidden"));
    /* staff see the patient */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients", sh_a.org_id);
    IT_CHECK(sh_listed(path, sh_a.token, p1.id, 1));
    char rec[256];
    snprintf(rec, sizeof(rec), "/api/v1/orgs/%s/patients/%s/records", sh_a.org_id, p1.id);
    IT_CHECK(it_gw_status("GET", rec, NULL, sh_a.token) == 200);
    /* revoke: gone at once from the list and from the staff record route */
    char del[200];
    snprintf(del, sizeof(del), "/api/v1/me/links/%s", sh_b.org_id);
    IT_CHECK(it_gw_problem("DELETE", del, NULL, p1.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", "/api/v1/me/links/nope", NULL, p1.token, 404, "not_found"));
    snprintf(del, sizeof(del), "/api/v1/me/links/%s", sh_a.org_id);
    IT_CHECK(it_gw_problem("DELETE", del, NULL, sh_a.token, 403, "forbidden"));
    IT_CHECK(it_gw_status("DELETE", del, NULL, p1.token) == 204);
    IT_CHECK(sh_listed(path, sh_a.token, p1.id, 0));
    IT_CHECK(it_gw_problem("GET", rec, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", del, NULL, p1.token, 404, "not_found"));
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.link.revoke' AND body->'target'->>'patient_id' = '%s' AND "
                      "body->'target'->>'org_id' = '%s'",
                      p1.id, sh_a.org_id) == 1);
    IT_CHECK(it_gw("GET", "/api/v1/me/links", NULL, p1.token, &r) == 200);
    has = sh_find(sh_items(&r), "org_id", sh_a.org_id) != NULL;
    it_resp_free(&r);
    IT_CHECK(!has);
    /* linking again reuses the row */
    IT_CHECK(sh_link(&sh_a, &p1));
    IT_CHECK(sh_count("SELECT count(*) FROM links WHERE patient_id = '%s' AND org_id = '%s' AND "
                      "revoked_at IS NULL",
                      p1.id, sh_a.org_id) == 1);
    IT_CHECK(sh_listed(path, sh_a.token, p1.id, 1));
}

/* ---- the staff patient list --------------------------------------------- */

static void
test_patient_list(void)
{
    it_patient_t yamada, suzuki, tanaka, other;
    char path[900], base[200];
    it_resp_t r;

    IT_CHECK(sh_setup());
    IT_CHECK(sh_patient("\u5c71\u7530 \u592a\u90ce", 1, &yamada)); /* 山田 太郎 */
    IT_CHECK(sh_patient("Suzuki Hanako", 1, &suzuki));             /* ASCII */
    IT_CHECK(sh_patient("\uff34\uff21\uff2e\uff21\uff2b\uff21 Jiro", 1, &tanaka)); /* full width */
    IT_CHECK(sh_patient("Other Org Patient", 1, &other));
    IT_CHECK(sh_link(&sh_a, &yamada) && sh_link(&sh_a, &suzuki) && sh_link(&sh_a, &tanaka));
    IT_CHECK(sh_link(&sh_b, &other));
    snprintf(base, sizeof(base), "/api/v1/orgs/%s/patients", sh_a.org_id);
    /* name and e-mail from auth, linked_at, empty labels */
    IT_CHECK(it_gw("GET", base, NULL, sh_a.token, &r) == 200);
    json_object *it = sh_find(sh_items(&r), "patient_id", suzuki.id), *v;
    int shape = it != NULL && json_object_object_get_ex(it, "name", &v) &&
                strcmp(json_object_get_string(v), "Suzuki Hanako") == 0 &&
                json_object_object_get_ex(it, "email", &v) &&
                strcmp(json_object_get_string(v), suzuki.email) == 0 &&
                json_object_object_get_ex(it, "linked_at", &v) &&
                json_object_object_get_ex(it, "groups", &v) && json_object_array_length(v) == 0 &&
                json_object_object_get_ex(it, "latest", &v) &&
                sh_find(sh_items(&r), "patient_id", other.id) == NULL;
    it_resp_free(&r);
    IT_CHECK(shape);
    /* org B sees only its own */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients", sh_b.org_id);
    IT_CHECK(sh_listed(path, sh_b.token, other.id, 1));
    IT_CHECK(sh_listed(path, sh_b.token, suzuki.id, 0));
    IT_CHECK(it_gw_problem("GET", base, NULL, sh_b.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", base, NULL, yamada.token, 403, "forbidden"));
    /* name search: ASCII case-insensitive, full width folded (NFKC), Japanese */
    snprintf(path, sizeof(path), "%s?q=suzuki", base);
    IT_CHECK(sh_listed(path, sh_a.token, suzuki.id, 1) &&
             sh_listed(path, sh_a.token, yamada.id, 0));
    snprintf(path, sizeof(path), "%s?q=tanaka", base);
    IT_CHECK(sh_listed(path, sh_a.token, tanaka.id, 1) &&
             sh_listed(path, sh_a.token, suzuki.id, 0));
    snprintf(path, sizeof(path), "%s?q=%%E5%%B1%%B1%%E7%%94%%B0", base); /* 山田 */
    IT_CHECK(sh_listed(path, sh_a.token, yamada.id, 1) &&
             sh_listed(path, sh_a.token, tanaka.id, 0));
    snprintf(path, sizeof(path), "%s?q=Hanako+Suzuki", base);
    IT_CHECK(sh_listed(path, sh_a.token, suzuki.id, 0));
    /* paging: most recently linked first, one by one through all three */
    char cursor[600] = "";
    const char *want[] = {tanaka.id, suzuki.id, yamada.id};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s?limit=1%s%s", base, cursor[0] ? "&cursor=" : "", cursor);
        IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
        json_object *items = sh_items(&r);
        int ok = items != NULL && json_object_array_length(items) == 1 &&
                 sh_find(items, "patient_id", want[i]) != NULL &&
                 it_json_str(&r, "next_cursor") != NULL;
        snprintf(cursor, sizeof(cursor), "%s", ok ? it_json_str(&r, "next_cursor") : "");
        if (!ok) {
            fprintf(stderr, "  page %d: %.400s\n", i, r.body ? r.body : "");
        }
        it_resp_free(&r);
        IT_CHECK(ok);
    }
    /* searching pages too */
    snprintf(path, sizeof(path), "%s?q=a&limit=1", base);
    IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
    int paged = sh_items(&r) != NULL && json_object_array_length(sh_items(&r)) == 1 &&
                it_json_str(&r, "next_cursor") != NULL;
    it_resp_free(&r);
    IT_CHECK(paged);
    /* bad input */
    snprintf(path, sizeof(path), "%s?group=nope", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "group"));
    snprintf(path, sizeof(path), "%s?category=123", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "category"));
    snprintf(path, sizeof(path), "%s?q=", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "q"));
    snprintf(path, sizeof(path), "%s?q=%%FF", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "q"));
    snprintf(path, sizeof(path),
             "%s?q=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xxxxxxxxxxxxxxxxxxxxx",
             base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "q"));
    snprintf(path, sizeof(path), "%s?limit=201", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "limit"));
    snprintf(path, sizeof(path), "%s?cursor=bm90LWEtY3Vyc29y", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "cursor"));
    /* the latest value per type, decrypted, and the read audited */
    IT_CHECK(it_gw_status("POST", "/api/v1/me/records",
                          "{\"type\":\"body_weight\",\"measured_at\":\"2026-11-20T07:30:00+09:00\","
                          "\"values\":{\"value\":61.5}}",
                          suzuki.token) == 201);
    IT_CHECK(it_gw_status("POST", "/api/v1/me/records",
                          "{\"type\":\"body_weight\",\"measured_at\":\"2026-11-21T07:30:00+09:00\","
                          "\"values\":{\"value\":60.25}}",
                          suzuki.token) == 201);
    IT_CHECK(it_gw("GET", base, NULL, sh_a.token, &r) == 200);
    it = sh_find(sh_items(&r), "patient_id", suzuki.id);
    json_object *latest, *w, *vals, *val;
    int latest_ok = it != NULL && json_object_object_get_ex(it, "latest", &latest) &&
                    json_object_object_get_ex(latest, "body_weight", &w) &&
                    json_object_object_get_ex(w, "values", &vals) &&
                    json_object_object_get_ex(vals, "value", &val) &&
                    json_object_get_double(val) == 60.25 &&
                    json_object_object_get_ex(w, "measured_at", &v) &&
                    strncmp(json_object_get_string(v), "2026-11-21T07:30:00", 19) == 0;
    if (!latest_ok) {
        fprintf(stderr, "  latest: %.600s\n", r.body ? r.body : "");
    }
    it_resp_free(&r);
    IT_CHECK(latest_ok);
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.read' AND body->'target'->>'patient_id' = '%s' AND "
                      "body->'details'->'record_types' ? 'body_weight' AND "
                      "body->'actor'->>'account_id' = '%s'",
                      suzuki.id, sh_a.admin_id) >= 1);
    /* no health value leaks into the audit event */
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND "
                      "body->'target'->>'patient_id' = '%s' AND body::text LIKE '%%60.25%%'",
                      suzuki.id) == 0);
}

/* ---- groups and categories ---------------------------------------------- */

/* Creates a label |name| of |kind| ("groups"/"categories") in |o|; its id. Returns the status. */
static long
sh_label(const sh_org_t *o, const char *kind, const char *name, char *id)
{
    char path[200], body[512];
    it_resp_t r;
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/%s", o->org_id, kind);
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"description\":\"d\"}", name);
    long st = it_gw("POST", path, body, o->token, &r);
    if (st == 201 && id != NULL && it_json_str(&r, "id") != NULL) {
        snprintf(id, 37, "%s", it_json_str(&r, "id"));
    }
    if (st != 201) {
        fprintf(stderr, "  POST %s %s: %ld %.300s\n", path, body, st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st;
}

/* The whole life of one kind of label ("groups" with filter "group", or "categories"). */
static void
sh_labels(const char *kind, const char *filter)
{
    it_patient_t in, out, never;
    char id[37], id2[37], bid[37], base[200], path[600], name[64];
    it_resp_t r;
    json_object *v;

    IT_CHECK(sh_setup());
    IT_CHECK(sh_patient("Label In", 1, &in) && sh_patient("Label Out", 1, &out) &&
             sh_patient("Label Never", 1, &never));
    IT_CHECK(sh_link(&sh_a, &in) && sh_link(&sh_a, &out));
    snprintf(base, sizeof(base), "/api/v1/orgs/%s/%s", sh_a.org_id, kind);
    snprintf(name, sizeof(name), "Diabetes %d", (int)getpid());
    /* create; duplicate 409; bad names 400; Japanese (50 characters) fine */
    IT_CHECK(sh_label(&sh_a, kind, name, id) == 201);
    IT_CHECK(sh_label(&sh_b, kind, name, bid) == 201); /* names are per org */
    char body[512];
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    IT_CHECK(it_gw_problem("POST", base, body, sh_a.token, 409, "duplicate_name"));
    IT_CHECK(it_gw_names_field("POST", base,
                               "{\"name\":\"123456789012345678901234567890123456789012345678901\"}",
                               sh_a.token, "name"));
    IT_CHECK(it_gw_names_field("POST", base, "{\"name\":\"\"}", sh_a.token, "name"));
    IT_CHECK(it_gw_names_field("POST", base, "{\"name\":\"   \"}", sh_a.token, "name"));
    IT_CHECK(it_gw_names_field("POST", base, "{}", sh_a.token, "name"));
    IT_CHECK(it_gw_names_field("POST", base, "{\"name\":\"x\",\"colour\":\"red\"}", sh_a.token,
                               "colour"));
    IT_CHECK(it_gw_names_field("POST", base, "{\"name\":7}", sh_a.token, "name"));
    char jp[50 * 3 + 16];
    size_t o = 0;
    for (int i = 0; i < 50; i++) { /* 糖 (U+7CD6) x 50 */
        jp[o++] = (char)0xe7;
        jp[o++] = (char)0xb3;
        jp[o++] = (char)0x96;
    }
    jp[o] = '\0';
    IT_CHECK(sh_label(&sh_a, kind, jp, id2) == 201);
    /* 51 Japanese characters are too many */
    char jp51[200];
    snprintf(jp51, sizeof(jp51), "{\"name\":\"%s\\u7cd6\"}", jp);
    IT_CHECK(it_gw_names_field("POST", base, jp51, sh_a.token, "name"));
    /* rename */
    char one[300];
    snprintf(one, sizeof(one), "%s/%s", base, id);
    snprintf(body, sizeof(body), "{\"name\":\"%s renamed\",\"description\":null}", name);
    IT_CHECK(it_gw("PATCH", one, body, sh_a.token, &r) == 200);
    int renamed = it_json_str(&r, "name") != NULL && strstr(it_json_str(&r, "name"), "renamed") &&
                  json_object_object_get_ex(r.json, "description", &v) && v == NULL;
    it_resp_free(&r);
    IT_CHECK(renamed);
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", jp);
    IT_CHECK(it_gw_problem("PATCH", one, body, sh_a.token, 409, "duplicate_name"));
    IT_CHECK(it_gw_names_field("PATCH", one, "{}", sh_a.token, ""));
    IT_CHECK(it_gw_names_field("PATCH", one, "{\"name\":null}", sh_a.token, "name"));
    IT_CHECK(it_gw_names_field("PATCH", one, "{\"id\":\"x\"}", sh_a.token, "id"));
    /* org A's id is 404 for org B, and a malformed id 404 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/%s/%s", sh_b.org_id, kind, id);
    IT_CHECK(it_gw_problem("PATCH", path, "{\"name\":\"mine\"}", sh_b.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", path, NULL, sh_b.token, 404, "not_found"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/%s/%s/patients/%s", sh_b.org_id, kind, id, in.id);
    IT_CHECK(it_gw_problem("PUT", path, NULL, sh_b.token, 404, "not_found"));
    snprintf(path, sizeof(path), "%s/xyz", base);
    IT_CHECK(it_gw_problem("PATCH", path, "{\"name\":\"x\"}", sh_a.token, 404, "not_found"));
    /* patients cannot use staff routes */
    IT_CHECK(it_gw_problem("GET", base, NULL, in.token, 403, "forbidden"));
    IT_CHECK(it_gw_problem("POST", base, "{\"name\":\"p\"}", in.token, 403, "forbidden"));
    IT_CHECK(it_gw_problem("PATCH", one, "{\"name\":\"p\"}", in.token, 403, "forbidden"));
    /* attach (idempotent); a never-linked patient is 404 */
    char member[600];
    snprintf(member, sizeof(member), "%s/patients/%s", one, in.id);
    IT_CHECK(it_gw_status("PUT", member, NULL, sh_a.token) == 204);
    IT_CHECK(it_gw_status("PUT", member, NULL, sh_a.token) == 204);
    snprintf(path, sizeof(path), "%s/patients/%s", one, never.id);
    IT_CHECK(it_gw_problem("PUT", path, NULL, sh_a.token, 404, "not_found"));
    snprintf(path, sizeof(path), "%s/patients/bad", one);
    IT_CHECK(it_gw_problem("PUT", path, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("PUT", member, NULL, in.token, 403, "forbidden"));
    /* listed with its count; the patient list shows the label and filters by it */
    IT_CHECK(it_gw("GET", base, NULL, sh_a.token, &r) == 200);
    json_object *lab = sh_find(sh_items(&r), "id", id);
    int counted = lab != NULL && json_object_object_get_ex(lab, "patient_count", &v) &&
                  json_object_get_int(v) == 1 && sh_find(sh_items(&r), "id", bid) == NULL;
    it_resp_free(&r);
    IT_CHECK(counted);
    char plist[300];
    snprintf(plist, sizeof(plist), "/api/v1/orgs/%s/patients?%s=%s", sh_a.org_id, filter, id);
    IT_CHECK(sh_listed(plist, sh_a.token, in.id, 1) && sh_listed(plist, sh_a.token, out.id, 0));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients", sh_a.org_id);
    IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
    json_object *pi = sh_find(sh_items(&r), "patient_id", in.id), *arr;
    int shown =
        pi != NULL && json_object_object_get_ex(pi, kind, &arr) && sh_find(arr, "id", id) != NULL;
    it_resp_free(&r);
    IT_CHECK(shown);
    /* org B's label as a filter on org A's list: 404 */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients?%s=%s", sh_a.org_id, filter, bid);
    IT_CHECK(it_gw_problem("GET", path, NULL, sh_a.token, 404, "not_found"));
    /* audited */
    IT_CHECK(sh_count("SELECT count(*) FROM outbox WHERE topic = 'audit' AND body->>'action' = "
                      "'records.%s.member_add' AND body->'target'->>'id' = '%s' AND "
                      "body->'target'->>'patient_id' = '%s'",
                      filter, id, in.id) == 1); /* the idempotent repeat changed nothing */
    /* detach, then attach again */
    IT_CHECK(it_gw_status("DELETE", member, NULL, sh_a.token) == 204);
    IT_CHECK(sh_listed(plist, sh_a.token, in.id, 0));
    IT_CHECK(it_gw_status("PUT", member, NULL, sh_a.token) == 204);
    /* a record of the member, to check deletion keeps it */
    IT_CHECK(it_gw_status("POST", "/api/v1/me/records",
                          "{\"type\":\"pulse\",\"measured_at\":\"2026-11-20T07:30:00+09:00\","
                          "\"values\":{\"value\":64}}",
                          in.token) == 201);
    long recs = sh_count("SELECT count(*) FROM records WHERE patient_id = '%s'", in.id);
    IT_CHECK(recs >= 1);
    /* delete: detached, patient and records stay */
    IT_CHECK(it_gw_status("DELETE", one, NULL, sh_a.token) == 204);
    IT_CHECK(it_gw_problem("DELETE", one, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("PUT", member, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("GET", plist, NULL, sh_a.token, 404, "not_found"));
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/patients", sh_a.org_id);
    IT_CHECK(sh_listed(path, sh_a.token, in.id, 1));
    IT_CHECK(sh_count("SELECT count(*) FROM records WHERE patient_id = '%s'", in.id) == recs);
    /* org B's label still there */
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/%s", sh_b.org_id, kind);
    IT_CHECK(it_gw("GET", path, NULL, sh_b.token, &r) == 200);
    int kept = sh_find(sh_items(&r), "id", bid) != NULL;
    it_resp_free(&r);
    IT_CHECK(kept);
    /* paging by name */
    snprintf(path, sizeof(path), "%s?limit=1", base);
    IT_CHECK(it_gw("GET", path, NULL, sh_a.token, &r) == 200);
    int one_item = sh_items(&r) != NULL && json_object_array_length(sh_items(&r)) == 1;
    it_resp_free(&r);
    IT_CHECK(one_item);
    snprintf(path, sizeof(path), "%s?limit=x", base);
    IT_CHECK(it_gw_names_field("GET", path, NULL, sh_a.token, "limit"));
}

static void
test_groups(void)
{
    sh_labels("groups", "group");
}

static void
test_categories(void)
{
    sh_labels("categories", "category");
}

/* Revoking a link takes the patient out of the org's labels. */
static void
test_revoke_detaches(void)
{
    it_patient_t p;
    char id[37], path[300], name[64];

    IT_CHECK(sh_setup());
    IT_CHECK(sh_patient("Revoke Labels", 1, &p) && sh_link(&sh_a, &p));
    snprintf(name, sizeof(name), "Revoke %d", (int)getpid());
    IT_CHECK(sh_label(&sh_a, "groups", name, id) == 201);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/groups/%s/patients/%s", sh_a.org_id, id, p.id);
    IT_CHECK(it_gw_status("PUT", path, NULL, sh_a.token) == 204);
    snprintf(path, sizeof(path), "/api/v1/me/links/%s", sh_a.org_id);
    IT_CHECK(it_gw_status("DELETE", path, NULL, p.token) == 204);
    IT_CHECK(sh_count("SELECT count(*) FROM group_members WHERE group_id = '%s' AND "
                      "patient_id = '%s'",
                      id, p.id) == 0);
    snprintf(path, sizeof(path), "/api/v1/orgs/%s/groups/%s/patients/%s", sh_a.org_id, id, p.id);
    IT_CHECK(it_gw_problem("PUT", path, NULL, sh_a.token, 404, "not_found"));
    IT_CHECK(it_gw_problem("DELETE", path, NULL, sh_a.token, 404, "not_found"));
}

const it_case_t records_share_cases[] = {
    {"records_share_invitations", test_invitations},
    {"records_share_links", test_links},
    {"records_share_patient_list", test_patient_list},
    {"records_share_groups", test_groups},
    {"records_share_categories", test_categories},
    {"records_share_revoke_detaches", test_revoke_detaches},
    {NULL, NULL},
};
