/*
 * test_audit.c - audit: ingest, hash chain, checkpoints, verification, tamper detection.
 *
 * Ingest goes straight to the audit service with a peer credential (it_internal);
 * the append-only checks run psql as phr_audit (it_psql); tampering runs psql as
 * the PostgreSQL superuser on the stack's socket (session_replication_role =
 * replica, so the append-only triggers do not fire) and every tampered range is
 * restored before the test checks its results. Verification is checked both with
 * GET /api/v1/admin/audit/verify (an operator through the gateway) and with
 * `phrctl audit verify --json`, on the range of the events the test wrote.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "timeutil.h"
#include "uuid.h"

#define AT_PW "Blue7Harbor!qLong"

static char at_op_token[64];

/* ---- helpers ----------------------------------------------------------------- */

/*
 * Opens a transaction holding the audit writer's lock (services/audit/ingest.c), so that
 * no batch commits between the rows a tamper case saves and the rows it cuts or puts back.
 */
#define AT_WRITER_LOCK "BEGIN; SELECT pg_advisory_xact_lock(7300206010); "

static const char *
at_build(void)
{
    const char *b = getenv("PHR_BUILD");
    return b != NULL && b[0] ? b : "build";
}

/* An operator session (phrctl operator create, login, password change), made once. */
static const char *
at_operator(void)
{
    if (at_op_token[0] == '\0' && !it_operator_new("auditop", AT_PW, at_op_token)) {
        at_op_token[0] = '\0';
        return NULL;
    }
    return at_op_token;
}

/* One event's JSON with event_id |id| (NULL: a fresh one, written to |id_out|). */
static void
at_event(char *out, size_t cap, const char *action, char *id_out)
{
    char id[37], at[TU_JST_LEN];

    uuid7(id);
    tu_format_jst(tu_now_ms(), at, sizeof(at));
    snprintf(out, cap,
             "{\"event_id\":\"%s\",\"occurred_at\":\"%s\",\"actor\":{\"account_id\":null,"
             "\"kind\":\"service\",\"ip\":\"192.0.2.1\",\"user_agent\":\"itest\"},"
             "\"action\":\"%s\",\"target\":{\"type\":\"account\",\"id\":\"t-%s\"},"
             "\"outcome\":{\"result\":\"success\"},\"source\":{\"service\":\"auth\","
             "\"request_id\":\"it-audit\"},\"details\":{\"n\":3,\"z\":\"x\",\"a\":[\"b\"]}}",
             id, at, action, id);
    if (id_out != NULL) {
        memcpy(id_out, id, 37);
    }
}

/* Posts |n| fresh events in one batch as auth; first and last seq. 1 when all accepted. */
static int
at_post(int n, int64_t *first, int64_t *last)
{
    size_t cap = (size_t)n * 700 + 64, off = 0;
    char *body = malloc(cap), ev[700];
    it_resp_t r;
    json_object *res, *seq;
    int ok;

    if (body == NULL) {
        return 0;
    }
    off += (size_t)snprintf(body + off, cap - off, "{\"items\":[");
    for (int i = 0; i < n; i++) {
        at_event(ev, sizeof(ev), "auth.itest.chain", NULL);
        off += (size_t)snprintf(body + off, cap - off, "%s%s", i ? "," : "", ev);
    }
    snprintf(body + off, cap - off, "]}");
    long st = it_internal("audit", "auth", "POST", "/internal/v1/events", body, &r);
    ok = st == 200 && r.json != NULL && json_object_object_get_ex(r.json, "results", &res) &&
         (int)json_object_array_length(res) == n &&
         json_object_object_get_ex(json_object_array_get_idx(res, 0), "seq", &seq);
    if (ok) {
        *first = json_object_get_int64(seq);
        json_object_object_get_ex(json_object_array_get_idx(res, (size_t)n - 1), "seq", &seq);
        *last = json_object_get_int64(seq);
        ok = *last - *first == n - 1;
    } else {
        fprintf(stderr, "  post: %ld %.300s\n", st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    free(body);
    return ok;
}

/*
 * Runs |sql| as the PostgreSQL superuser on the stack's socket, triggers off; the first
 * output line into |out| (may be NULL). 0 on success.
 */
static int
at_super_out(const char *sql, char *out, size_t cap)
{
    char path[512], area[400] = "", drain[256];
    size_t clen = strlen(sql) * 2 + 1024, o = 0;
    char *cmd = malloc(clen), *esc = malloc(strlen(sql) * 2 + 1);
    FILE *f;

    if (cmd == NULL || esc == NULL) {
        free(cmd);
        free(esc);
        return -1;
    }
    for (size_t i = 0; sql[i] != '\0'; i++) {
        if (strchr("$\"\\`", sql[i]) != NULL) {
            esc[o++] = '\\';
        }
        esc[o++] = sql[i];
    }
    esc[o] = '\0';
    snprintf(path, sizeof(path), "%s/run/pgdata", it_env("PHR_TEST_VAR"));
    if ((f = fopen(path, "r")) != NULL) {
        if (fgets(area, sizeof(area), f) == NULL) {
            area[0] = '\0';
        }
        fclose(f);
    }
    area[strcspn(area, "\r\n")] = '\0';
    snprintf(cmd, clen,
             "%s psql -X -q -tA -v ON_ERROR_STOP=1 -h '%s/sock' -p '%s' %s -d phr_audit "
             "-c 'SET session_replication_role = replica' -c \"%s\" 2>/dev/null",
             geteuid() == 0 ? "runuser -u postgres --" : "", area, it_env("PHR_TEST_PG_PORT"),
             geteuid() == 0 ? "-U postgres" : "", esc);
    free(esc);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (p == NULL) {
        return -1;
    }
    if (out != NULL) {
        if (fgets(out, (int)cap, p) == NULL) {
            out[0] = '\0';
        }
        out[strcspn(out, "\r\n")] = '\0';
    }
    while (fgets(drain, sizeof(drain), p) != NULL) {
    }
    return pclose(p) == 0 ? 0 : -1;
}

static int
at_super(const char *sql)
{
    return at_super_out(sql, NULL, 0);
}

typedef struct {
    int ok;
    int64_t checked, first_bad;
    char reason[48];
} at_verdict_t;

static void
at_parse_verdict(json_object *o, at_verdict_t *v)
{
    json_object *x;

    memset(v, 0, sizeof(*v));
    v->ok = -1;
    if (o == NULL) {
        return;
    }
    if (json_object_object_get_ex(o, "ok", &x)) {
        v->ok = json_object_get_boolean(x);
    }
    if (json_object_object_get_ex(o, "checked", &x)) {
        v->checked = json_object_get_int64(x);
    }
    if (json_object_object_get_ex(o, "first_bad_seq", &x) && x != NULL) {
        v->first_bad = json_object_get_int64(x);
    }
    if (json_object_object_get_ex(o, "reason", &x) && x != NULL) {
        snprintf(v->reason, sizeof(v->reason), "%s", json_object_get_string(x));
    }
}

/* The verify route's verdict on [from, to] (to 0: the head). 1 when it answered 200. */
static int
at_verify_route(int64_t from, int64_t to, at_verdict_t *v)
{
    char path[160];
    it_resp_t r;
    const char *tok = at_operator();

    if (tok == NULL) {
        return 0;
    }
    if (to > 0) {
        snprintf(path, sizeof(path),
                 "/api/v1/admin/audit/verify?from_seq=%" PRId64 "&to_seq=%" PRId64, from, to);
    } else {
        snprintf(path, sizeof(path), "/api/v1/admin/audit/verify?from_seq=%" PRId64, from);
    }
    long st = it_gw("GET", path, NULL, tok, &r);
    at_parse_verdict(r.json, v);
    if (st != 200) {
        fprintf(stderr, "  verify: %ld %.300s\n", st, r.body ? r.body : "");
    }
    it_resp_free(&r);
    return st == 200;
}

/* phrctl audit verify --json on [from, to] (to 0: the head); its exit code into |rc|. */
static int
at_verify_cli(int64_t from, int64_t to, at_verdict_t *v, int *rc)
{
    char cmd[1024], line[1024] = "", range[96];

    if (to > 0) {
        snprintf(range, sizeof(range), "--from-seq %" PRId64 " --to-seq %" PRId64, from, to);
    } else {
        snprintf(range, sizeof(range), "--from-seq %" PRId64, from);
    }
    snprintf(cmd, sizeof(cmd),
             "PHR_SECRETS_DIR='%s/secrets' PHR_PG_HOST='%s' PHR_PG_PORT='%s' "
             "'%s/bin/phrctl' audit verify %s --json",
             it_env("PHR_TEST_VAR"), it_env("PHR_TEST_PG_HOST"), it_env("PHR_TEST_PG_PORT"),
             at_build(), range);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return 0;
    }
    if (fgets(line, sizeof(line), p) == NULL) {
        line[0] = '\0';
    }
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    json_object *o = json_tokener_parse(line);
    at_parse_verdict(o, v);
    json_object_put(o);
    return o != NULL;
}

/* Both verifiers on [from, to]; 1 when both say first_bad_seq |bad| (0: ok) with |reason|. */
static int
at_both_say(int64_t from, int64_t to, int64_t bad, const char *reason, int64_t checked)
{
    at_verdict_t a, b;
    int rc = -1;
    int ok_a = at_verify_route(from, to, &a), ok_b = at_verify_cli(from, to, &b, &rc);
    int good = ok_a && ok_b;

    if (bad == 0) {
        /* open-ended (to = 0): each stops at the head it saw, and others' events keep coming */
        good = good && a.ok == 1 && b.ok == 1 && rc == 0 && (checked < 0 || a.checked == checked) &&
               (to == 0 || a.checked == b.checked);
    } else {
        good = good && a.ok == 0 && b.ok == 0 && rc == 4 && a.first_bad == bad &&
               b.first_bad == bad && strcmp(a.reason, reason) == 0 && strcmp(b.reason, reason) == 0;
    }
    if (!good) {
        fprintf(stderr,
                "  verify [%" PRId64 ",%" PRId64 "] want bad=%" PRId64
                " %s: route ok=%d bad=%" PRId64 " %s checked=%" PRId64
                "; cli rc=%d ok=%d bad=%" PRId64 " %s checked=%" PRId64 "\n",
                from, to, bad, reason ? reason : "-", a.ok, a.first_bad, a.reason, a.checked, rc,
                b.ok, b.first_bad, b.reason, b.checked);
    }
    return good;
}

/* ---- cases --------------------------------------------------------------------- */

static void
audit_ingest_batch(void)
{
    char ev1[700], ev2[700], id1[37], id2[37], body[3000];
    it_resp_t r;
    json_object *res, *x;

    at_event(ev1, sizeof(ev1), "auth.itest.ingest", id1);
    at_event(ev2, sizeof(ev2), "auth.itest.ingest", id2);
    /* the middle event is bad in several ways; it alone is rejected */
    snprintf(body, sizeof(body),
             "{\"items\":[%s,{\"event_id\":\"not-a-uuid\",\"occurred_at\":\"2026-11-26T10:00:00Z\","
             "\"actor\":{\"kind\":\"robot\"},\"action\":\"Auth.Login\",\"target\":{\"type\":"
             "\"account\",\"id\":\"x\"},\"outcome\":{\"result\":\"success\"},\"source\":{"
             "\"service\":\"auth\",\"request_id\":null},\"extra\":1},%s]}",
             ev1, ev2);
    IT_CHECK(it_internal("audit", "auth", "POST", "/internal/v1/events", body, &r) == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "results", &res) &&
             json_object_array_length(res) == 3);
    IT_CHECK(strcmp(json_object_get_string(
                        json_object_object_get(json_object_array_get_idx(res, 0), "status")),
                    "accepted") == 0);
    json_object *bad = json_object_array_get_idx(res, 1);
    IT_CHECK(strcmp(json_object_get_string(json_object_object_get(bad, "status")), "rejected") ==
             0);
    IT_CHECK(
        strcmp(json_object_get_string(json_object_object_get(bad, "event_id")), "not-a-uuid") == 0);
    const char *errs = json_object_to_json_string(json_object_object_get(bad, "errors"));
    IT_CHECK(strstr(errs, "\"event_id\"") && strstr(errs, "\"occurred_at\"") &&
             strstr(errs, "\"actor.kind\"") && strstr(errs, "\"action\"") &&
             strstr(errs, "\"extra\""));
    IT_CHECK(strcmp(json_object_get_string(
                        json_object_object_get(json_object_array_get_idx(res, 2), "status")),
                    "accepted") == 0);
    IT_CHECK(json_object_object_get_ex(r.json, "accepted", &x) && json_object_get_int(x) == 2);
    IT_CHECK(json_object_object_get_ex(r.json, "rejected", &x) && json_object_get_int(x) == 1);
    it_resp_free(&r);

    /* stored once each, times in UTC, details kept */
    char out[256];
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE event_id IN ('%s', '%s')", id1,
                     id2) == 0 &&
             strcmp(out, "2") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT details->>'z' FROM audit_events WHERE event_id = '%s'", id1) == 0 &&
             strcmp(out, "x") == 0);

    /* the same batch again: duplicates ignored, nothing new stored */
    snprintf(body, sizeof(body), "{\"items\":[%s,%s,%s]}", ev1, ev2, ev1);
    IT_CHECK(it_internal("audit", "records", "POST", "/internal/v1/events", body, &r) == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "duplicates", &x) && json_object_get_int(x) == 3);
    IT_CHECK(json_object_object_get_ex(r.json, "accepted", &x) && json_object_get_int(x) == 0);
    it_resp_free(&r);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE event_id IN ('%s', '%s')", id1,
                     id2) == 0 &&
             strcmp(out, "2") == 0);

    /* an oversized event is rejected alone */
    size_t big = 20000;
    char *huge = malloc(big + 2000);
    IT_CHECK(huge != NULL);
    char ua[300];
    memset(ua, 'u', 257);
    ua[257] = '\0';
    char ev3[700];
    at_event(ev3, sizeof(ev3), "auth.itest.ingest", NULL);
    int off = snprintf(huge, big + 2000, "{\"items\":[%s,{\"event_id\":\"", ev3);
    off += snprintf(huge + off, big + 2000 - (size_t)off, "%s\",\"pad\":\"", id1);
    memset(huge + off, 'p', big - 2000);
    off += (int)(big - 2000);
    snprintf(huge + off, big + 2000 - (size_t)off, "\"}]}");
    long st = it_internal("audit", "auth", "POST", "/internal/v1/events", huge, &r);
    free(huge);
    IT_CHECK(st == 200);
    IT_CHECK(json_object_object_get_ex(r.json, "accepted", &x) && json_object_get_int(x) == 1);
    IT_CHECK(json_object_object_get_ex(r.json, "rejected", &x) && json_object_get_int(x) == 1);
    it_resp_free(&r);

    /* a too-long user agent, a NUL in a string and an occurred_at not in +09:00 */
    char ev4[1200];
    uuid7(id2);
    snprintf(ev4, sizeof(ev4),
             "{\"items\":[{\"event_id\":\"%s\",\"occurred_at\":\"2026-11-26T10:00:00+09:00\","
             "\"actor\":{\"kind\":\"service\",\"user_agent\":\"%s\"},\"action\":\"auth.x\","
             "\"target\":{\"type\":\"account\",\"id\":\"a\\u0000b\"},\"outcome\":{\"result\":"
             "\"success\"},\"source\":{\"service\":\"auth\",\"request_id\":null}}]}",
             id2, ua);
    IT_CHECK(it_internal("audit", "auth", "POST", "/internal/v1/events", ev4, &r) == 200);
    errs = r.body != NULL ? r.body : "";
    IT_CHECK(strstr(errs, "actor.user_agent") && strstr(errs, "target.id"));
    it_resp_free(&r);

    /* no credential: 401; a body that is not a batch: 400 naming the member */
    IT_CHECK(it_internal("audit", NULL, "POST", "/internal/v1/events", body, &r) == 401);
    it_resp_free(&r);
    IT_CHECK(it_internal("audit", "auth", "POST", "/internal/v1/events", "{\"items\":[]}", &r) ==
             400);
    IT_CHECK(r.body != NULL && strstr(r.body, "\"items\"") != NULL);
    it_resp_free(&r);
    IT_CHECK(it_internal("audit", "auth", "POST", "/internal/v1/events", "[1]", &r) == 400);
    it_resp_free(&r);
}

static void
audit_append_only(void)
{
    char out[256];
    int64_t a, b;

    IT_CHECK(at_post(1, &a, &b));
    /* the service role can read and insert, never change or remove */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE seq = %" PRId64, a) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "UPDATE audit_events SET action = 'auth.x' WHERE seq = %" PRId64, a) != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "DELETE FROM audit_events WHERE seq = %" PRId64,
                     a) != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "TRUNCATE audit_events") != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "DELETE FROM checkpoints") != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "UPDATE audit_event_ids SET seq = seq") != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "ALTER TABLE audit_events DISABLE TRIGGER ALL") !=
             0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SET ROLE phr_audit_owner") != 0);
    /* even the owner is stopped by the trigger (superuser with triggers on) */
    IT_CHECK(at_super("SET session_replication_role = origin; UPDATE audit_events SET action = "
                      "action WHERE seq = -1") == 0);
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SET session_replication_role = origin; DELETE FROM audit_events WHERE seq = %" PRId64,
             a);
    IT_CHECK(at_super(sql) != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE seq = %" PRId64, a) == 0 &&
             strcmp(out, "1") == 0);
}

/* 1000 events → at least one checkpoint among them whose signature verifies with openssl. */
static void
audit_chain_checkpoint(void)
{
    int64_t first, last, f2, l2;
    char out[512], sql[256];

    IT_CHECK(at_post(500, &first, &last));
    IT_CHECK(at_post(500, &f2, &l2));
    IT_CHECK(f2 > last); /* other services' relays may append in between */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM checkpoints WHERE seq BETWEEN %" PRId64 " AND %" PRId64,
                     first, l2) == 0 &&
             strtol(out, NULL, 10) >= 1);
    IT_CHECK(at_both_say(first, l2, 0, NULL, l2 - first + 1));
    IT_CHECK(at_both_say(1, 0, 0, NULL, -1));

    /* the checkpoint message rebuilt here, signature checked with openssl pkeyutl */
    snprintf(sql, sizeof(sql),
             "SELECT seq || ' ' || encode(hash, 'hex') || ' ' || (extract(epoch FROM signed_at) * "
             "1000000)::bigint || ' ' || encode(signature, 'hex') FROM checkpoints WHERE seq "
             "BETWEEN %" PRId64 " AND %" PRId64 " ORDER BY seq LIMIT 1",
             first, l2);
    IT_CHECK(it_psql("audit", out, sizeof(out), "%s", sql) == 0);
    char hash[65], sig[129];
    long long seq, at;
    IT_CHECK(sscanf(out, "%lld %64s %lld %128s", &seq, hash, &at, sig) == 4);
    it_resp_t r;
    IT_CHECK(it_gw("GET", "/api/v1/audit/public-key", NULL, NULL, &r) == 200);
    const char *pem = it_json_str(&r, "public_key_pem");
    IT_CHECK(pem != NULL);
    char dir[] = "/tmp/phr-audit-ckpt-XXXXXX";
    IT_CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/pub.pem", dir);
    FILE *f = fopen(path, "w");
    IT_CHECK(f != NULL);
    fputs(pem, f);
    fclose(f);
    it_resp_free(&r);
    unsigned char msg[23 + 8 + 32 + 8], sigb[64];
    memcpy(msg, "phr-audit-checkpoint-v1", 23);
    for (int i = 0; i < 8; i++) {
        msg[23 + i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
        msg[23 + 8 + 32 + i] = (unsigned char)((uint64_t)at >> (56 - 8 * i));
    }
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        sscanf(hash + 2 * i, "%2x", &byte);
        msg[31 + i] = (unsigned char)byte;
    }
    for (int i = 0; i < 64; i++) {
        unsigned int byte;
        sscanf(sig + 2 * i, "%2x", &byte);
        sigb[i] = (unsigned char)byte;
    }
    snprintf(path, sizeof(path), "%s/msg", dir);
    f = fopen(path, "wb");
    IT_CHECK(f != NULL);
    fwrite(msg, 1, sizeof(msg), f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/sig", dir);
    f = fopen(path, "wb");
    IT_CHECK(f != NULL);
    fwrite(sigb, 1, sizeof(sigb), f);
    fclose(f);
    int good = it_sh("openssl pkeyutl -verify -pubin -inkey %s/pub.pem -rawin -in %s/msg "
                     "-sigfile %s/sig >/dev/null 2>&1",
                     dir, dir, dir);
    msg[30] ^= 1; /* another seq: the same signature must not verify */
    snprintf(path, sizeof(path), "%s/msg", dir);
    f = fopen(path, "wb");
    IT_CHECK(f != NULL);
    fwrite(msg, 1, sizeof(msg), f);
    fclose(f);
    int forged = it_sh("openssl pkeyutl -verify -pubin -inkey %s/pub.pem -rawin -in %s/msg "
                       "-sigfile %s/sig >/dev/null 2>&1",
                       dir, dir, dir);
    it_sh("rm -rf %s", dir);
    IT_CHECK(good == 0);
    IT_CHECK(forged != 0);
}

/*
 * Tampering: each case saves the rows it touches (superuser), tampers, asks both
 * verifiers, restores, then checks. Ranges are this test's own events.
 */
static int
at_backup(int64_t from, int64_t to)
{
    char sql[400];

    snprintf(sql, sizeof(sql),
             "DROP TABLE IF EXISTS it_tamper_backup; CREATE TABLE it_tamper_backup AS SELECT * "
             "FROM audit_events WHERE seq BETWEEN %" PRId64 " AND %" PRId64,
             from, to);
    return at_super(sql) == 0;
}

static int
at_restore(int64_t from, int64_t to)
{
    char sql[400];

    snprintf(sql, sizeof(sql),
             AT_WRITER_LOCK "DELETE FROM audit_events WHERE seq BETWEEN %" PRId64 " AND %" PRId64
                            "; INSERT INTO audit_events SELECT * FROM it_tamper_backup; DROP TABLE "
                            "it_tamper_backup; COMMIT",
             from, to);
    return at_super(sql) == 0;
}

static void
audit_tamper_detected(void)
{
    int64_t a, b;
    char sql[512];
    int r1, r2, r3, r4, restored;

    IT_CHECK(at_post(20, &a, &b));
    IT_CHECK(at_both_say(a, b, 0, NULL, 20));

    /* edit a field */
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql),
             "UPDATE audit_events SET target_id = 'someone-else' WHERE seq = %" PRId64, a + 5);
    r1 = at_super(sql) == 0 && at_both_say(a, b, a + 5, "hash_mismatch", 0);
    restored = at_restore(a, b);
    IT_CHECK(restored && r1);

    /* edit a field and re-hash it: the next link no longer matches */
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql),
             "UPDATE audit_events SET hash = decode(repeat('ab', 32), 'hex') WHERE seq = %" PRId64,
             a + 6);
    r1 = at_super(sql) == 0 && at_both_say(a, b, a + 6, "hash_mismatch", 0);
    restored = at_restore(a, b);
    IT_CHECK(restored && r1);

    /* delete a row */
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql), "DELETE FROM audit_events WHERE seq = %" PRId64, a + 7);
    r2 = at_super(sql) == 0 && at_both_say(a, b, a + 7, "seq_gap", 0);
    restored = at_restore(a, b);
    IT_CHECK(restored && r2);

    /* reorder: swap the seqs of two rows */
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql),
             "BEGIN; UPDATE audit_events SET seq = -1 WHERE seq = %" PRId64
             "; UPDATE audit_events SET seq = %" PRId64 " WHERE seq = %" PRId64
             "; UPDATE audit_events SET seq = %" PRId64 " WHERE seq = -1; COMMIT",
             a + 8, a + 8, a + 9, a + 9);
    r3 = at_super(sql) == 0 && at_both_say(a, b, a + 8, "prev_hash_mismatch", 0);
    restored = at_restore(a, b);
    IT_CHECK(restored && r3);

    /* insert a forged row: a copy of row a+10 with another target, same seq */
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql),
             "INSERT INTO audit_events SELECT seq, gen_random_uuid(), occurred_at, recorded_at - "
             "interval '1 microsecond', actor_account_id, actor_kind, actor_org_id, actor_role, "
             "actor_session_id, actor_ip, actor_user_agent, action, target_type, 'forged', "
             "target_patient_id, target_org_id, result, reason, source_service, request_id, "
             "details, prev_hash, hash FROM audit_events WHERE seq = %" PRId64,
             a + 10);
    r4 = at_super(sql) == 0 && at_both_say(a, b, a + 10, "hash_mismatch", 0);
    restored = at_restore(a, b);
    IT_CHECK(restored && r4);

    IT_CHECK(at_both_say(a, b, 0, NULL, 20));
}

/*
 * The chain hash of the row of |tbl|, computed in SQL (an independent rendering of
 * the canonical encoding of services/audit/chain.h) into |out|.
 */
static void
at_hash_sql(char *out, size_t cap)
{
    static const char *const cols[] = {"'phr-audit-v1'",
                                       "#seq",
                                       "event_id::text",
                                       "#(extract(epoch FROM occurred_at) * "
                                       "1000000)::bigint",
                                       "#(extract(epoch FROM recorded_at) * 1000000)::bigint",
                                       "actor_account_id::text",
                                       "actor_kind",
                                       "actor_org_id::text",
                                       "actor_role",
                                       "actor_session_id::text",
                                       "actor_ip",
                                       "actor_user_agent",
                                       "action",
                                       "target_type",
                                       "target_id",
                                       "target_patient_id::text",
                                       "target_org_id::text",
                                       "result",
                                       "reason",
                                       "source_service",
                                       "request_id",
                                       "details::text"};
    size_t off = (size_t)snprintf(out, cap, "sha256(");
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]) && off < cap; i++) {
        if (cols[i][0] == '#') {
            off += (size_t)snprintf(out + off, cap - off,
                                    "decode('0100000008', 'hex') || int8send(%s) || ", cols[i] + 1);
        } else {
            off += (size_t)snprintf(out + off, cap - off,
                                    "CASE WHEN (%s) IS NULL THEN decode('0000000000', 'hex') ELSE "
                                    "decode('01', 'hex') || int4send(octet_length(convert_to(%s, "
                                    "'UTF8'))) || convert_to(%s, 'UTF8') END || ",
                                    cols[i], cols[i], cols[i]);
        }
    }
    if (off < cap) {
        snprintf(out + off, cap - off, "decode('0100000020', 'hex') || prev_hash)");
    }
}

/*
 * A forged row with a correctly computed hash replacing a row: the chain holds, but its
 * event_id was never accepted by the service. The same SQL hash over the untouched row
 * equals the stored one (the encoding is what chain.h says).
 */
static void
audit_forged_row(void)
{
    int64_t a, b;
    char hash[4096], sql[8192], out[128];

    IT_CHECK(at_post(3, &a, &b));
    at_hash_sql(hash, sizeof(hash));
    snprintf(sql, sizeof(sql), "SELECT %s = hash FROM audit_events WHERE seq = %" PRId64, hash,
             a + 1);
    IT_CHECK(at_super_out(sql, out, sizeof(out)) == 0);
    IT_CHECK(strcmp(out, "t") == 0);
    IT_CHECK(at_backup(a, b));
    snprintf(sql, sizeof(sql),
             "BEGIN; CREATE TEMP TABLE f AS SELECT * FROM audit_events WHERE seq = %" PRId64
             "; UPDATE f SET event_id = gen_random_uuid(), target_id = 'forged'; UPDATE f SET "
             "hash = %s; DELETE FROM audit_events WHERE seq = %" PRId64
             "; INSERT INTO audit_events SELECT * FROM f; COMMIT",
             a + 1, hash, a + 1);
    int forged = at_super(sql) == 0;
    int seen = forged && at_both_say(a, b, a + 1, "unregistered_event", 0);
    IT_CHECK(at_restore(a, b));
    IT_CHECK(forged && seen);
}

/* Cutting the tail after (and through) the last checkpoint is detected. */
static void
audit_truncate_tail(void)
{
    int64_t a, b, head;
    char out[256], sql[512];

    IT_CHECK(at_post(500, &a, &b));
    IT_CHECK(at_post(500, &a, &b));
    IT_CHECK(at_post(5, &a, &b));
    /* the last checkpoint and the head (others' events may arrive: the writer is blocked
     * while the tail is cut, since its next seq is already taken in audit_event_ids) */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT max(seq) FROM checkpoints WHERE seq < %" PRId64, b - 2) == 0);
    int64_t ck = strtoll(out, NULL, 10);
    IT_CHECK(ck > 5 && ck < b - 2);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT max(seq) FROM audit_events") == 0);
    head = strtoll(out, NULL, 10);
    IT_CHECK(head >= b);

    /* rows after the last checkpoint removed */
    snprintf(sql, sizeof(sql),
             AT_WRITER_LOCK "DROP TABLE IF EXISTS it_tamper_backup; CREATE TABLE it_tamper_backup "
                            "AS SELECT * FROM audit_events WHERE seq > %" PRId64
                            "; DELETE FROM audit_events WHERE seq > %" PRId64 "; COMMIT",
             ck, ck);
    int t1 = at_super(sql) == 0 && at_both_say(ck - 3, 0, ck + 1, "tail_truncated", 0);
    int r1 = at_restore(ck + 1, INT64_MAX);
    IT_CHECK(r1 && t1);

    /* rows through the last checkpoint removed */
    snprintf(sql, sizeof(sql),
             AT_WRITER_LOCK "DROP TABLE IF EXISTS it_tamper_backup; CREATE TABLE it_tamper_backup "
                            "AS SELECT * FROM audit_events WHERE seq >= %" PRId64
                            "; DELETE FROM audit_events WHERE seq >= %" PRId64 "; COMMIT",
             ck - 2, ck - 2);
    int t2 = at_super(sql) == 0 && at_both_say(ck - 5, 0, ck - 2, "tail_truncated", 0);
    int r2 = at_restore(ck - 2, INT64_MAX);
    IT_CHECK(r2 && t2);

    /* a forged checkpoint signature */
    snprintf(sql, sizeof(sql),
             "DROP TABLE IF EXISTS it_ckpt_backup; CREATE TABLE it_ckpt_backup AS SELECT * FROM "
             "checkpoints WHERE seq = %" PRId64
             "; UPDATE checkpoints SET signed_at = signed_at + interval '1 second' WHERE seq = "
             "%" PRId64,
             ck, ck);
    int t3 = at_super(sql) == 0 && at_both_say(ck - 1, ck + 1, ck, "bad_signature", 0);
    snprintf(sql, sizeof(sql),
             "DELETE FROM checkpoints WHERE seq = %" PRId64
             "; INSERT INTO checkpoints SELECT * FROM it_ckpt_backup; DROP TABLE it_ckpt_backup",
             ck);
    int r3 = at_super(sql) == 0;
    IT_CHECK(r3 && t3);
    IT_CHECK(at_both_say(ck - 5, 0, 0, NULL, -1));
}

/* Batches posted in parallel by several processes: one chain, no gap, no fork. */
static void
audit_concurrent(void)
{
    char out[64];
    pid_t kids[6];
    int64_t head0, head1, a, b;

    IT_CHECK(at_post(1, &a, &head0));
    for (int k = 0; k < 6; k++) {
        kids[k] = fork();
        IT_CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            int ok = 1;
            for (int i = 0; i < 5 && ok; i++) {
                ok = at_post(40, &a, &b);
            }
            _exit(ok ? 0 : 1);
        }
    }
    int all_ok = 1;
    for (int k = 0; k < 6; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        all_ok = all_ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    IT_CHECK(all_ok);
    IT_CHECK(at_post(1, &a, &head1));
    IT_CHECK(head1 - head0 >= 6 * 5 * 40 + 1);
    IT_CHECK(at_both_say(head0, head1, 0, NULL, head1 - head0 + 1));
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_event_ids WHERE seq BETWEEN %" PRId64
                     " AND %" PRId64,
                     head0, head1) == 0);
    IT_CHECK(strtoll(out, NULL, 10) == head1 - head0 + 1);
}

/*
 * POST /internal/v1/retention/archive (the retention run) with |body|; 200 or the status.
 * The service's own hourly run (first at start-up) answers 409 while it lasts: waited out.
 */
static long
at_retention_run(const char *body, it_resp_t *r)
{
    long st = 0;
    for (int i = 0; i < 120; i++) {
        st = it_internal("audit", "audit", "POST", "/internal/v1/retention/archive", body, r);
        if (st != 409) {
            break;
        }
        it_resp_free(r);
        usleep(250 * 1000);
    }
    if (st != 200) {
        fprintf(stderr, "  retention run: %ld %.300s\n", st, r->body ? r->body : "");
    }
    return st;
}

/* The report entry of partition |name| in a retention run's answer, or NULL. */
static json_object *
at_retention_part(const it_resp_t *r, const char *name)
{
    json_object *parts = NULL;

    if (r->json == NULL || !json_object_object_get_ex(r->json, "partitions", &parts)) {
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(parts); i++) {
        json_object *p = json_object_array_get_idx(parts, i), *n = NULL;
        if (json_object_object_get_ex(p, "partition", &n) &&
            strcmp(json_object_get_string(n), name) == 0) {
            return p;
        }
    }
    return NULL;
}

static const char *
at_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o != NULL && json_object_object_get_ex(o, key, &v) && v != NULL
               ? json_object_get_string(v)
               : "";
}

/*
 * Five events recorded in the month |month| (a JST month start, SQL text) appended at the
 * chain head by the superuser, holding the writer's advisory lock, hashed in SQL.
 */
static int
at_backdate(const char *month)
{
    char hash[4096], sql[9000];

    at_hash_sql(hash, sizeof(hash));
    snprintf(sql, sizeof(sql),
             "BEGIN; SELECT pg_advisory_xact_lock(7300206010); CREATE TEMP TABLE it_old (LIKE "
             "audit_events) ON COMMIT DROP; DO $$ DECLARE h record; t timestamptz := "
             "'%s'::timestamptz + interval '3 days'; BEGIN SELECT seq, hash INTO h FROM "
             "audit_events ORDER BY seq DESC, recorded_at DESC LIMIT 1; FOR i IN 1..5 LOOP "
             "DELETE FROM it_old; INSERT INTO it_old (seq, event_id, occurred_at, recorded_at, "
             "actor_kind, action, target_type, target_id, result, source_service, details, "
             "prev_hash, hash) VALUES (h.seq + 1, gen_random_uuid(), t + i * interval '1 minute', "
             "t + i * interval '1 minute' + interval '1.234567 second', 'service', "
             "'audit.itest.retention', 'account', 'old-' || i, 'success', 'audit', "
             "'{\"n\": 1}'::jsonb, h.hash, ''::bytea); UPDATE it_old SET hash = %s; INSERT INTO "
             "audit_events SELECT * FROM it_old; INSERT INTO audit_event_ids SELECT event_id, seq "
             "FROM it_old; SELECT seq, hash INTO h FROM it_old; END LOOP; END $$; COMMIT",
             month, hash);
    return at_super(sql) == 0;
}

/*
 * Retention: an expired monthly partition is exported, the file verified from itself and
 * recorded, and only then dropped; a corrupted archive keeps the partition; the drop is
 * recorded, the partition never re-created, checkpoints kept, and both verifiers still pass
 * over the chain across the archived gap. The service role cannot drop anything itself.
 */
static void
audit_retention(void)
{
    char out[256], name[64], month[64], back[16], ck0[32], ck1[32], path[1024], file[512];
    int64_t lo, hi, a, b;
    it_resp_t r;
    json_object *p;

    /* a first run (whatever is already due) tells the retention horizon */
    IT_CHECK(at_retention_run("{}", &r) == 200);
    json_object *days = NULL;
    IT_CHECK(json_object_object_get_ex(r.json, "retention_days", &days));
    int retention = json_object_get_int(days);
    it_resp_free(&r);
    /* the newest month past the horizon whose partition was never dropped (re-runnable) */
    IT_CHECK(it_psql("audit", back, sizeof(back),
                     "SELECT m FROM generate_series(2, 600) m, LATERAL (SELECT date_trunc('month', "
                     "now() AT TIME ZONE 'Asia/Tokyo') - make_interval(months => m) AS s) x WHERE "
                     "(x.s + interval '1 month') AT TIME ZONE 'Asia/Tokyo' <= now() - "
                     "make_interval(days => %d) AND NOT EXISTS (SELECT 1 FROM audit_archives d "
                     "WHERE d.partition_name = 'audit_events_' || to_char(x.s, 'YYYYMM')) "
                     "ORDER BY m LIMIT 1",
                     retention) == 0 &&
             back[0] != '\0');
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT 'audit_events_' || to_char(s, 'YYYYMM') || ' ' || (s AT TIME ZONE "
                     "'Asia/Tokyo')::text FROM (SELECT date_trunc('month', now() AT TIME ZONE "
                     "'Asia/Tokyo') - make_interval(months => %s) AS s) x",
                     back) == 0);
    IT_CHECK(sscanf(out, "%63s %63[^\n]", name, month) == 2);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT audit_ensure_partitions(%s, 0)", back) ==
             0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT to_regclass('%s') IS NOT NULL", name) ==
                 0 &&
             strcmp(out, "t") == 0);

    /* the service role cannot drop it (nor the log, nor the database) itself */
    IT_CHECK(it_psql("audit", out, sizeof(out), "DROP TABLE %s", name) != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "DROP TABLE audit_events") != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "DROP TABLE checkpoints") != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "ALTER TABLE audit_events DETACH PARTITION %s",
                     name) != 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT d.datdba = r.oid FROM pg_database d, pg_roles r WHERE d.datname = "
                     "'phr_audit' AND r.rolname = 'phr_audit'") == 0 &&
             strcmp(out, "f") == 0);
    /* old events in it: still not dropped without a verified archive */
    IT_CHECK(at_post(1, &a, &b)); /* a head to link to, even on a fresh stack */
    IT_CHECK(at_backdate(month));
    IT_CHECK(at_post(3, &a, &b)); /* the chain goes on after the old events */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT min(seq) || ' ' || max(seq) || ' ' || count(*) FROM audit_events "
                     "WHERE tableoid = '%s'::regclass",
                     name) == 0);
    long long n = 0;
    IT_CHECK(sscanf(out, "%" SCNd64 " %" SCNd64 " %lld", &lo, &hi, &n) == 3 && n == 5 &&
             hi - lo == 4 && b > hi);
    IT_CHECK(it_psql("audit", ck0, sizeof(ck0), "SELECT count(*) FROM checkpoints") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT count(*) FROM audit_drop_expired(%d)",
                     retention) == 0 &&
             strcmp(out, "0") == 0);

    /* exported only: the file is there, the partition too */
    IT_CHECK(at_retention_run("{\"export_only\":true}", &r) == 200);
    p = at_retention_part(&r, name);
    IT_CHECK(p != NULL && strcmp(at_member(p, "status"), "exported") == 0);
    snprintf(file, sizeof(file), "%s", at_member(p, "file"));
    it_resp_free(&r);
    IT_CHECK(it_sh("test -s '%s' && test \"$(grep -c '\"record\":\"event\"' '%s')\" = 5", file,
                   file) == 0);
    /* one byte flipped before the verification: rejected, partition kept, file set aside */
    IT_CHECK(it_sh("sed -i 's/\"old-3\"/\"old-X\"/' '%s' && grep -q old-X '%s'", file, file) == 0);
    IT_CHECK(at_retention_run("{}", &r) == 200);
    p = at_retention_part(&r, name);
    IT_CHECK(p != NULL && strcmp(at_member(p, "status"), "rejected") == 0 &&
             strstr(at_member(p, "reason"), "hash_mismatch") != NULL);
    IT_CHECK(json_object_object_get_ex(r.json, "dropped", &p) &&
             strstr(json_object_to_json_string(p), name) == NULL);
    it_resp_free(&r);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT to_regclass('%s') IS NOT NULL", name) ==
                 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_archives WHERE partition_name = '%s'",
                     name) == 0 &&
             strcmp(out, "0") == 0);
    IT_CHECK(it_sh("ls '%s'.rejected-* > /dev/null 2>&1 && test ! -e '%s'", file, file) == 0);

    /* the next run exports afresh, verifies, records, then drops */
    IT_CHECK(at_retention_run("{}", &r) == 200);
    p = at_retention_part(&r, name);
    IT_CHECK(p != NULL && strcmp(at_member(p, "status"), "archived") == 0);
    char sha[80];
    snprintf(sha, sizeof(sha), "%s", at_member(p, "sha256"));
    IT_CHECK(json_object_object_get_ex(r.json, "dropped", &p) &&
             strstr(json_object_to_json_string(p), name) != NULL);
    it_resp_free(&r);
    IT_CHECK(it_sh("test \"$(sha256sum < '%s' | cut -c1-64)\" = '%s'", file, sha) == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT from_seq || ' ' || to_seq || ' ' || events || ' ' || export_sha256 "
                     "|| ' ' || archive_file FROM audit_archives WHERE partition_name = '%s'",
                     name) == 0);
    snprintf(path, sizeof(path), "%" PRId64 " %" PRId64 " 5 %s %s", lo, hi, sha, file);
    IT_CHECK(strcmp(out, path) == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT to_regclass('%s') IS NULL", name) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_partition_drops WHERE partition_name = '%s'",
                     name) == 0 &&
             strcmp(out, "1") == 0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT audit_ensure_partitions(%s, 0)", back) ==
             0);
    IT_CHECK(it_psql("audit", out, sizeof(out), "SELECT to_regclass('%s') IS NULL", name) == 0 &&
             strcmp(out, "t") == 0);
    IT_CHECK(it_psql("audit", ck1, sizeof(ck1), "SELECT count(*) FROM checkpoints") == 0);
    IT_CHECK(strtoll(ck1, NULL, 10) >= strtoll(ck0, NULL, 10));
    /* both verifiers cross the archived range: linked through its recorded last hash, from
     * up to 3 events before it (the log's first event on a fresh stack) */
    int64_t from = lo > 3 ? lo - 3 : 1;
    IT_CHECK(at_both_say(from, b, 0, NULL, b - from + 1 - 5));
    /* a tampered link after the gap is still caught */
    char sql[300];
    snprintf(sql, sizeof(sql),
             "DROP TABLE IF EXISTS it_tamper_backup; CREATE TABLE it_tamper_backup AS SELECT * "
             "FROM audit_events WHERE seq = %" PRId64 "; UPDATE audit_events SET prev_hash = "
             "decode(repeat('cd', 32), 'hex') WHERE seq = %" PRId64,
             hi + 1, hi + 1);
    int tampered = at_super(sql) == 0 && at_both_say(from, b, hi + 1, "prev_hash_mismatch", 0);
    IT_CHECK(at_restore(hi + 1, hi + 1));
    IT_CHECK(tampered);
    /* the current month is never expired */
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_drop_expired(30) x WHERE x LIKE '%%' || "
                     "to_char(now() AT TIME ZONE 'Asia/Tokyo', 'YYYYMM')") == 0 &&
             strcmp(out, "0") == 0);
}

/* A real event from auth (a failed login) reaches the table through the outbox relay. */
static void
audit_from_auth(void)
{
    char email[128], body[256], out[128], rid[128];
    it_resp_t r;

    it_unique_email(email, sizeof(email), "auditlogin");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"Wrong-password-123\"}", email);
    it_gw("POST", "/api/v1/auth/login", body, NULL, &r);
    IT_CHECK(r.status == 401 || r.status == 400);
    const char *h = it_header(&r, "x-request-id");
    IT_CHECK(h != NULL);
    snprintf(rid, sizeof(rid), "%s", h);
    it_resp_free(&r);
    int found = 0;
    for (int i = 0; i < 100 && !found; i++) {
        if (it_psql("audit", out, sizeof(out),
                    "SELECT action FROM audit_events WHERE request_id = '%s'", rid) == 0 &&
            strncmp(out, "auth.login", 10) == 0) {
            found = 1;
        } else {
            usleep(100000);
        }
    }
    IT_CHECK(found);
    IT_CHECK(it_psql("audit", out, sizeof(out),
                     "SELECT count(*) FROM audit_events WHERE request_id = '%s' AND actor_kind = "
                     "'anonymous'",
                     rid) == 0 &&
             strcmp(out, "1") == 0);
}

static void
audit_verify_access(void)
{
    it_resp_t r;
    const char *tok = at_operator();

    IT_CHECK(tok != NULL);
    IT_CHECK(it_gw("GET", "/api/v1/admin/audit/verify", NULL, NULL, &r) == 401);
    it_resp_free(&r);
    it_gw("GET", "/api/v1/admin/audit/verify?from_seq=0", NULL, tok, &r);
    IT_CHECK(it_is_problem(&r, 400, "invalid_request") && strstr(r.body, "from_seq"));
    it_resp_free(&r);
    it_gw("GET", "/api/v1/admin/audit/verify?to_seq=abc", NULL, tok, &r);
    IT_CHECK(it_is_problem(&r, 400, "invalid_request") && strstr(r.body, "to_seq"));
    it_resp_free(&r);
    it_gw("GET", "/api/v1/admin/audit/verify?from_seq=5&to_seq=2", NULL, tok, &r);
    IT_CHECK(it_is_problem(&r, 400, "invalid_request") && strstr(r.body, "to_seq"));
    it_resp_free(&r);
    /* a patient is not an operator */
    char email[128], body[512], ptok[64];
    it_unique_email(email, sizeof(email), "auditpat");
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"Pat\",\"locale\":\"en\"}", email,
             AT_PW);
    it_gw("POST", "/api/v1/auth/register", body, NULL, &r);
    long st = r.status;
    it_resp_free(&r);
    if (st == 201 && it_login(email, AT_PW, ptok) == 200) {
        IT_CHECK(it_gw("GET", "/api/v1/admin/audit/verify", NULL, ptok, &r) == 403);
        it_resp_free(&r);
    }
}

const it_case_t audit_cases[] = {
    {"audit ingest: bad event rejected alone, duplicates, 401/400", audit_ingest_batch},
    {"audit append-only for the service role", audit_append_only},
    {"audit chain: checkpoints signed and verified (route, phrctl, openssl)",
     audit_chain_checkpoint},
    {"audit tamper: edit, delete, reorder, forged row detected", audit_tamper_detected},
    {"audit tamper: forged row with a valid hash detected", audit_forged_row},
    {"audit tamper: tail truncation and checkpoint signature detected", audit_truncate_tail},
    {"audit chain: concurrent batches never fork it", audit_concurrent},
    {"audit retention: export, verify from the file, record, then drop", audit_retention},
    {"audit: a failed login reaches the log through the outbox relay", audit_from_auth},
    {"audit verify route: operators only, bad parameters", audit_verify_access},
    {NULL, NULL},
};
