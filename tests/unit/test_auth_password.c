/*
 * test_auth_password.c - services/auth/password.c: NFKC normalisation, the
 * composition and e-mail rules, the common-password key, the generator, and
 * migration 003 (the full common-password list) against a real PostgreSQL.
 *
 * Environment:
 *   PHR_TEST_PG_CONNINFO  libpq conninfo of a database where the test may create and
 *                         drop a schema (phrtest_pw_<pid>). When unset the PostgreSQL
 *                         test FAILS: it never passes silently without a server.
 *
 * The PostgreSQL test applies the embedded migrations 002 and 003 (auth_migrations[],
 * as phr-auth does), prints their run time, and checks that pw_common_key() of list
 * entries typed in other cases or in full-width forms finds them through pw_common_sql.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_migrate.h"
#include "err.h"
#include "../../services/auth/password.h"

extern const db_migration_t auth_migrations[];

/* ---- helpers ---------------------------------------------------------------- */

static int
t_has(const pw_violations_t *v, const char *code)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->items[i], code) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Violations of |raw| (normalised first) for |email| and |min|. */
static pw_violations_t
t_check(const char *raw, const char *email, size_t min)
{
    pw_violations_t v;
    char *norm = NULL;

    memset(&v, 0, sizeof(v));
    assert_int_equal(pw_normalize(raw, &norm), PHR_OK);
    pw_check_rules(norm, email, min, &v);
    pw_free(norm);
    return v;
}

static void
t_key_of_normalized(const char *raw, char *key)
{
    char *norm = NULL;

    assert_int_equal(pw_normalize(raw, &norm), PHR_OK);
    pw_common_key(norm, key);
    pw_free(norm);
}

/* ---- pw_normalize -------------------------------------------------------------- */

static void
test_normalize_nfkc(void **state)
{
    char *out = NULL;

    /* Full-width letters and digit. */
    assert_int_equal(pw_normalize("\xef\xbc\xb0\xef\xbd\x81\xef\xbd\x93\xef\xbd\x93\xef\xbd\x97"
                                  "\xef\xbd\x8f\xef\xbd\x92\xef\xbd\x84\xef\xbc\x91",
                                  &out),
                     PHR_OK);
    assert_string_equal(out, "Password1");
    pw_free(out);
    /* The "fi" ligature U+FB01 becomes two characters. */
    assert_int_equal(pw_normalize("\xef\xac\x81sh", &out), PHR_OK);
    assert_string_equal(out, "fish");
    pw_free(out);
    /* Composed and decomposed e-acute are the same after NFKC. */
    char *a = NULL, *b = NULL;
    assert_int_equal(pw_normalize("caf\xc3\xa9", &a), PHR_OK);
    assert_int_equal(pw_normalize("cafe\xcc\x81", &b), PHR_OK);
    assert_string_equal(a, b);
    pw_free(a);
    pw_free(b);
    /* Empty stays empty; ASCII is unchanged. */
    assert_int_equal(pw_normalize("", &out), PHR_OK);
    assert_string_equal(out, "");
    pw_free(out);
    assert_int_equal(pw_normalize("Plain ASCII 123 !", &out), PHR_OK);
    assert_string_equal(out, "Plain ASCII 123 !");
    pw_free(out);
    pw_free(NULL);
}

static void
test_normalize_invalid_utf8(void **state)
{
    static const char *const bad[] = {
        "abc\xff",          /* never valid */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80xyz",  /* UTF-16 surrogate */
        "x\xe3\x81",        /* truncated sequence */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char sentinel = 0;
        char *out = &sentinel; /* must be reset to NULL */
        assert_int_equal(pw_normalize(bad[i], &out), PHR_EINVAL);
        assert_null(out);
    }
}

/* ---- pw_check_rules ------------------------------------------------------------ */

static void
test_rules_composition(void **state)
{
    pw_violations_t v;

    v = t_check("Password1", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
    v = t_check("Pass1", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 1);
    assert_true(t_has(&v, "too_short"));
    v = t_check("password1", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 1);
    assert_true(t_has(&v, "missing_upper"));
    v = t_check("PASSWORD1", NULL, PW_MIN_LENGTH);
    assert_true(t_has(&v, "missing_lower"));
    assert_false(t_has(&v, "missing_upper"));
    v = t_check("Password!", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 1);
    assert_true(t_has(&v, "missing_digit"));
    v = t_check("", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 4);
    /* Symbols are optional and allowed. */
    v = t_check("Pa ss-w0rd!", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
}

static void
test_rules_staff_min_length(void **state)
{
    pw_violations_t v;

    v = t_check("Password1234", NULL, PW_MIN_LENGTH_SINGLE_FACTOR_STAFF); /* 12 */
    assert_int_equal(v.n, 1);
    assert_true(t_has(&v, "too_short"));
    v = t_check("Password12345", NULL, PW_MIN_LENGTH_SINGLE_FACTOR_STAFF); /* 13 */
    assert_int_equal(v.n, 0);
    v = t_check("Password1234", NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
}

/* Lengths are code points, not bytes: 'Aa1' + hiragana "a" (3 bytes each). */
static void
test_rules_length_in_code_points(void **state)
{
    char buf[3 + 3 * 200 + 1];
    pw_violations_t v;

    for (int total = 7; total <= 130; total++) {
        size_t o = 0;
        memcpy(buf, "Aa1", 3);
        o = 3;
        for (int i = 3; i < total; i++) {
            memcpy(buf + o, "\xe3\x81\x82", 3);
            o += 3;
        }
        buf[o] = '\0';
        v = t_check(buf, NULL, PW_MIN_LENGTH);
        assert_int_equal(t_has(&v, "too_short"), total < PW_MIN_LENGTH);
        assert_int_equal(t_has(&v, "too_long"), total > PW_MAX_LENGTH);
        assert_int_equal(v.n, (size_t)(total < PW_MIN_LENGTH || total > PW_MAX_LENGTH));
    }
    /* 8 full-width characters are 8 characters (24 bytes). */
    v = t_check("\xef\xbc\xa1\xef\xbd\x82\xef\xbd\x83\xef\xbd\x84\xef\xbc\x91\xef\xbc\x92"
                "\xef\xbc\x93\xef\xbc\x94",
                NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
}

/* Unicode-aware classes: Lu/Lt upper, Ll lower, Nd digit; caseless scripts count for neither. */
static void
test_rules_unicode_classes(void **state)
{
    pw_violations_t v;

    v = t_check("\xc3\x89\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                "12",
                NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0); /* "Éééééé12" */
    v = t_check("\xce\xa3\xcf\x89\xcf\x89\xcf\x89\xcf\x89\xcf\x89\xcf\x89"
                "\xd9\xa3",
                NULL, PW_MIN_LENGTH);
    assert_int_equal(v.n, 0); /* Greek "Σωωωωωω" + ARABIC-INDIC DIGIT THREE */
    v = t_check("\xe3\x81\x82\xe3\x81\x84\xe3\x81\x86\xe3\x81\x88\xe3\x81\x8a"
                "123",
                NULL, PW_MIN_LENGTH);
    assert_true(t_has(&v, "missing_upper"));
    assert_true(t_has(&v, "missing_lower"));
    assert_false(t_has(&v, "missing_digit"));
    assert_false(t_has(&v, "too_short"));
}

static void
test_rules_contains_email(void **state)
{
    pw_violations_t v;

    v = t_check("Xtaro.yamada99", "taro.yamada@example.jp", PW_MIN_LENGTH);
    assert_int_equal(v.n, 1);
    assert_true(t_has(&v, "contains_email"));
    /* Case-insensitive, and after NFKC of the (full-width) password. */
    v = t_check("\xef\xbc\xb4\xef\xbc\xa1\xef\xbc\xb2\xef\xbc\xaf"
                "abc1X",
                "taro@example.jp", PW_MIN_LENGTH);
    assert_true(t_has(&v, "contains_email"));
    v = t_check("MyTARO2024x", "Taro@example.jp", PW_MIN_LENGTH);
    assert_true(t_has(&v, "contains_email"));
    /* Full-width local part in the address is normalised too. */
    v = t_check("MyTaro2024x", "\xef\xbd\x94\xef\xbd\x81\xef\xbd\x92\xef\xbd\x8f@example.jp",
                PW_MIN_LENGTH);
    assert_true(t_has(&v, "contains_email"));
    /* Local parts under 3 characters are ignored; other addresses do not match. */
    v = t_check("Password1ab", "ab@example.jp", PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
    v = t_check("Password1", "hanako@example.jp", PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
    /* The domain is not the local part. */
    v = t_check("Example2024x", "hanako@example.jp", PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
    /* The whole local part must appear: a prefix is not enough. */
    v = t_check("Hanak0-1xyz", "hanako@example.jp", PW_MIN_LENGTH);
    assert_int_equal(v.n, 0);
    /* A local part found only near the end of a long password (no truncation). */
    char buf[200];
    memset(buf, 'x', 150);
    buf[0] = 'A';
    buf[1] = '1';
    memcpy(buf + 150, "hanako", 7);
    v = t_check(buf, "hanako@example.jp", PW_MIN_LENGTH);
    assert_true(t_has(&v, "contains_email"));
    assert_true(t_has(&v, "too_long"));
}

/* ---- pw_common_key --------------------------------------------------------------- */

static void
test_common_key(void **state)
{
    char a[65], b[65];

    /* SHA-256("password") */
    pw_common_key("password", a);
    assert_string_equal(a, "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8");
    pw_common_key("PassWORD", b);
    assert_string_equal(a, b);
    t_key_of_normalized("\xef\xbc\xb0\xef\xbc\xa1\xef\xbc\xb3\xef\xbc\xb3\xef\xbc\xb7\xef\xbc\xaf"
                        "\xef\xbc\xb2\xef\xbc\xa4",
                        b); /* full-width PASSWORD */
    assert_string_equal(a, b);
    /* Unicode lower-casing: "ÄBC" and "äbc"; not the same as "abc". */
    pw_common_key("\xc3\x84"
                  "BC",
                  a);
    pw_common_key("\xc3\xa4"
                  "bc",
                  b);
    assert_string_equal(a, b);
    pw_common_key("abc", b);
    assert_string_not_equal(a, b);
    /* Never truncated: differ only at character 100 of 120. */
    char p1[121], p2[121];
    memset(p1, 'a', 120);
    p1[120] = '\0';
    memcpy(p2, p1, sizeof(p1));
    p2[99] = 'b';
    pw_common_key(p1, a);
    pw_common_key(p2, b);
    assert_string_not_equal(a, b);
    /* Invalid UTF-8 (never passed after pw_normalize) still gives a key. */
    pw_common_key("AB\xff", a);
    pw_common_key("ab\xff", b);
    assert_int_equal(strlen(a), 64);
    assert_string_equal(a, b);
}

/* ---- pw_generate ------------------------------------------------------------------ */

static void
test_generate(void **state)
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    enum { N = 1000 };
    static char seen[N][17];
    int counts[256] = {0};
    char out[17];

    assert_int_equal(pw_generate(out, 16), PHR_EINVAL);
    for (int i = 0; i < N; i++) {
        pw_violations_t v;

        memset(&v, 0, sizeof(v));
        assert_int_equal(pw_generate(seen[i], sizeof(seen[i])), PHR_OK);
        assert_int_equal(strlen(seen[i]), 16);
        assert_null(strpbrk(seen[i], "0O1lIo"));
        for (int k = 0; k < 16; k++) {
            assert_non_null(strchr(alphabet, seen[i][k]));
            counts[(unsigned char)seen[i][k]]++;
        }
        pw_check_rules(seen[i], NULL, PW_MIN_LENGTH_SINGLE_FACTOR_STAFF, &v);
        assert_int_equal(v.n, 0);
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(seen[i], seen[j]);
        }
    }
    /* 16,000 draws over 56 symbols: about 286 each (sd ~17); a biased or stuck
     * generator falls outside 150..450. */
    for (size_t k = 0; k < sizeof(alphabet) - 1; k++) {
        int c = counts[(unsigned char)alphabet[k]];
        if (c < 150 || c > 450) {
            fail_msg("symbol %c drawn %d times", alphabet[k], c);
        }
    }
}

/* ---- migration 003 ---------------------------------------------------------------- */

static const db_migration_t *
t_migration(int version)
{
    for (const db_migration_t *m = auth_migrations; m->sql != NULL; m++) {
        if (m->version == version) {
            return m;
        }
    }
    return NULL;
}

static void
test_migration_embedded(void **state)
{
    const db_migration_t *m = t_migration(3);
    size_t entries = 0;

    assert_non_null(m);
    assert_non_null(t_migration(2));
    assert_non_null(strstr(m->sql, "ON CONFLICT DO NOTHING"));
    for (const char *p = m->sql; (p = strstr(p, "('")) != NULL; p++) {
        entries++;
    }
    /* Entries like ('a?' || '?b') count once per "('". */
    assert_true(entries >= 49000);
    assert_non_null(strstr(m->sql, "('password'), "));
    assert_non_null(strstr(m->sql, "('pic''s')"));
}

static void
t_exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
}

static int
t_on_list(PGconn *c, const char *raw)
{
    char key[65];
    const char *params[1] = {key};
    PGresult *r;
    int n;

    t_key_of_normalized(raw, key);
    r = PQexecParams(c, pw_common_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail_msg("common query: %s", PQerrorMessage(c));
    }
    n = PQntuples(r);
    PQclear(r);
    return n;
}

static void
test_migration_pg(void **state)
{
    const char *ci = getenv("PHR_TEST_PG_CONNINFO");
    char schema[64], sql[256];
    PGconn *c;
    PGresult *r;

    if (ci == NULL || ci[0] == '\0') {
        fail_msg("PHR_TEST_PG_CONNINFO is not set: this test needs PostgreSQL");
    }
    c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("connect: %s", PQerrorMessage(c));
    }
    snprintf(schema, sizeof(schema), "phrtest_pw_%ld", (long)getpid());
    t_exec_ok(c, "SET client_min_messages = warning");
    snprintf(sql, sizeof(sql),
             "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; "
             "SET search_path = %s",
             schema, schema, schema);
    t_exec_ok(c, sql);

    int64_t t0 = t_now_ms();
    t_exec_ok(c, "BEGIN");
    t_exec_ok(c, t_migration(2)->sql);
    int64_t t1 = t_now_ms();
    t_exec_ok(c, t_migration(3)->sql);
    t_exec_ok(c, "COMMIT");
    int64_t t2 = t_now_ms();
    printf("migration 002: %lld ms, 003: %lld ms (%zu bytes of SQL)\n", (long long)(t1 - t0),
           (long long)(t2 - t1), strlen(t_migration(3)->sql));

    r = PQexec(c, "SELECT count(*) FROM common_passwords");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long rows = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    printf("common_passwords rows: %ld\n", rows);
    assert_true(rows >= 49233); /* the list has no duplicates after lower-casing */

    /* On the list, typed in any case or full width. */
    assert_int_equal(t_on_list(c, "password"), 1);
    assert_int_equal(t_on_list(c, "PASSWORD"), 1);
    assert_int_equal(t_on_list(c, "Password1"), 1);
    assert_int_equal(t_on_list(c, "\xef\xbc\xb0\xef\xbd\x81\xef\xbd\x93\xef\xbd\x93\xef\xbd\x97"
                                  "\xef\xbd\x8f\xef\xbd\x92\xef\xbd\x84\xef\xbc\x91"),
                     1);
    assert_int_equal(t_on_list(c, "Pic's"), 1);
    assert_int_equal(t_on_list(c, "GreedIsGood"), 1);
    assert_int_equal(t_on_list(c, "Qwerty123"), 1);
    assert_int_equal(t_on_list(c, "Asdasd123"), 1);
    /* Not on the list. */
    assert_int_equal(t_on_list(c, "Kx7-vQ2m!Lr9Tz"), 0);
    assert_int_equal(t_on_list(c, "password\xef\xbc\x81x"), 0);

    /* Applying 003 again changes nothing (ON CONFLICT DO NOTHING). */
    t_exec_ok(c, t_migration(3)->sql);
    r = PQexec(c, "SELECT count(*) FROM common_passwords");
    assert_int_equal(strtol(PQgetvalue(r, 0, 0), NULL, 10), rows);
    PQclear(r);

    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    t_exec_ok(c, sql);
    PQfinish(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_nfkc),
        cmocka_unit_test(test_normalize_invalid_utf8),
        cmocka_unit_test(test_rules_composition),
        cmocka_unit_test(test_rules_staff_min_length),
        cmocka_unit_test(test_rules_length_in_code_points),
        cmocka_unit_test(test_rules_unicode_classes),
        cmocka_unit_test(test_rules_contains_email),
        cmocka_unit_test(test_common_key),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_migration_embedded),
        cmocka_unit_test(test_migration_pg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
