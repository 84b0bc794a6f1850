/*
 * test_records_crypt.c - services/records/crypt.c: AES-256-GCM round trip,
 * tampering and a wrong AAD fail, key rotation (old versions still open, the
 * newest seals), loading data_key_v<N> from a secrets dir, the MAC; and
 * rec_row_json decrypting a row shaped like REC_COLUMNS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "../../services/records/records.h"

static const unsigned char key1[RCRYPT_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const unsigned char key2[RCRYPT_KEY_LEN] = {0xaa, 0xbb, 0xcc, 0xdd};

static void
test_round_trip(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    char *hex = NULL, *plain = NULL;
    size_t len = 0;
    int kid = 0;
    const char *msg = "{\"values\":{\"systolic\":132},\"note\":\"朝\"}";

    assert_int_equal(rcrypt_current(rc), 0);
    assert_int_equal(rcrypt_seal(rc, "aad", msg, strlen(msg), &kid, &hex), PHR_EINVAL);
    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    assert_int_equal(rcrypt_seal(rc, "aad", msg, strlen(msg), &kid, &hex), PHR_OK);
    assert_int_equal(kid, 1);
    assert_memory_equal(hex, "\\x", 2);
    assert_int_equal(strlen(hex), 2 + 2 * (12 + strlen(msg) + 16));
    assert_null(strstr(hex, "systolic"));
    assert_int_equal(rcrypt_open(rc, "aad", 1, hex, &plain, &len), PHR_OK);
    assert_int_equal(len, strlen(msg));
    assert_string_equal(plain, msg);
    free(plain);
    /* two seals of the same text differ (random nonce) */
    char *hex2 = NULL;
    assert_int_equal(rcrypt_seal(rc, "aad", msg, strlen(msg), &kid, &hex2), PHR_OK);
    assert_string_not_equal(hex, hex2);
    free(hex2);
    /* an empty payload works too */
    assert_int_equal(rcrypt_seal(rc, "a", "", 0, &kid, &hex2), PHR_OK);
    assert_int_equal(rcrypt_open(rc, "a", 1, hex2, &plain, NULL), PHR_OK);
    assert_string_equal(plain, "");
    free(plain);
    free(hex2);
    free(hex);
    rcrypt_free(rc);
}

static void
test_tamper_fails(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    char *hex = NULL, *plain = NULL;
    int kid = 0;
    const char *msg = "{\"values\":{\"value\":64.5},\"note\":null}";

    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    assert_int_equal(rcrypt_seal(rc, "rec1|a|b|body_weight", msg, strlen(msg), &kid, &hex), PHR_OK);
    /* every byte position flipped fails: nonce, ciphertext, tag */
    size_t n = strlen(hex);
    for (size_t i = 2; i < n; i += 7) {
        char saved = hex[i];
        hex[i] = saved == '0' ? '1' : '0';
        assert_int_equal(rcrypt_open(rc, "rec1|a|b|body_weight", 1, hex, &plain, NULL), PHR_EINVAL);
        assert_null(plain);
        hex[i] = saved;
    }
    /* another record's AAD (id, patient or type swapped) fails */
    assert_int_equal(rcrypt_open(rc, "rec1|a|c|body_weight", 1, hex, &plain, NULL), PHR_EINVAL);
    assert_int_equal(rcrypt_open(rc, "rec1|a|b|pulse", 1, hex, &plain, NULL), PHR_EINVAL);
    /* truncated, malformed, unknown key */
    char *cut = strndup(hex, n - 2);
    assert_int_equal(rcrypt_open(rc, "rec1|a|b|body_weight", 1, cut, &plain, NULL), PHR_EINVAL);
    free(cut);
    assert_int_equal(rcrypt_open(rc, "x", 1, "\\xzz", &plain, NULL), PHR_EINVAL);
    assert_int_equal(rcrypt_open(rc, "x", 1, "0011", &plain, NULL), PHR_EINVAL);
    assert_int_equal(rcrypt_open(rc, "rec1|a|b|body_weight", 2, hex, &plain, NULL), PHR_EINVAL);
    assert_int_equal(rcrypt_open(rc, "rec1|a|b|body_weight", 1, hex, &plain, NULL), PHR_OK);
    free(plain);
    free(hex);
    rcrypt_free(rc);
}

static void
test_rotation(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    char *old = NULL, *new = NULL, *plain = NULL;
    int kid = 0;
    unsigned char mac1[RCRYPT_MAC_LEN], mac2[RCRYPT_MAC_LEN];

    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    assert_int_equal(rcrypt_mac(rc, "abc", 3, mac1), PHR_OK);
    assert_int_equal(rcrypt_seal(rc, "a", "old", 3, &kid, &old), PHR_OK);
    assert_int_equal(kid, 1);
    /* a new version: it seals, the old one still opens */
    assert_int_equal(rcrypt_add_key(rc, 2, key2), PHR_OK);
    assert_int_equal(rcrypt_current(rc), 2);
    assert_int_equal(rcrypt_seal(rc, "a", "new", 3, &kid, &new), PHR_OK);
    assert_int_equal(kid, 2);
    assert_int_equal(rcrypt_open(rc, "a", 1, old, &plain, NULL), PHR_OK);
    assert_string_equal(plain, "old");
    free(plain);
    assert_int_equal(rcrypt_open(rc, "a", 2, new, &plain, NULL), PHR_OK);
    assert_string_equal(plain, "new");
    free(plain);
    /* the right key only */
    assert_int_equal(rcrypt_open(rc, "a", 2, old, &plain, NULL), PHR_EINVAL);
    assert_int_equal(rcrypt_open(rc, "a", 1, new, &plain, NULL), PHR_EINVAL);
    /* the MAC key follows the newest data key */
    assert_int_equal(rcrypt_mac(rc, "abc", 3, mac2), PHR_OK);
    assert_memory_not_equal(mac1, mac2, RCRYPT_MAC_LEN);
    /* out-of-range versions */
    assert_int_equal(rcrypt_add_key(rc, 0, key1), PHR_EINVAL);
    assert_int_equal(rcrypt_add_key(rc, RCRYPT_MAX_KEYS + 1, key1), PHR_EINVAL);
    free(old);
    free(new);
    rcrypt_free(rc);
}

static void
write_secret(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static void
test_load_from_secrets(void **state)
{
    char dir[] = "/tmp/rcrypt-XXXXXX";
    cfg_t cfg;
    rcrypt_t *rc = rcrypt_create();
    char *hex = NULL, *plain = NULL;
    int kid = 0;

    assert_non_null(mkdtemp(dir));
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.secrets_dir, sizeof(cfg.secrets_dir), "%s", dir);
    assert_int_equal(rcrypt_load(rc, &cfg), PHR_ENOTFOUND);
    write_secret(dir, "data_key_v1",
                 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    write_secret(dir, "data_key_v3",
                 "F00102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n");
    assert_int_equal(rcrypt_load(rc, &cfg), PHR_OK);
    assert_int_equal(rcrypt_current(rc), 3);
    assert_int_equal(rcrypt_seal(rc, "a", "x", 1, &kid, &hex), PHR_OK);
    assert_int_equal(kid, 3);
    assert_int_equal(rcrypt_open(rc, "a", 3, hex, &plain, NULL), PHR_OK);
    free(plain);
    free(hex);
    rcrypt_free(rc);
    /* a malformed key stops the load */
    rc = rcrypt_create();
    write_secret(dir, "data_key_v2", "not hex\n");
    assert_int_equal(rcrypt_load(rc, &cfg), PHR_EINVAL);
    rcrypt_free(rc);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A one-row PGresult of REC_COLUMNS, as libpq would hand it over. */
static PGresult *
row_result(const char *const vals[REC_NCOLUMNS])
{
    PGresAttDesc att[REC_NCOLUMNS];
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    memset(att, 0, sizeof(att));
    for (int i = 0; i < REC_NCOLUMNS; i++) {
        att[i].name = (char *)(uintptr_t) "c";
        att[i].typid = 25;
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(res, REC_NCOLUMNS, att), 1);
    for (int i = 0; i < REC_NCOLUMNS; i++) {
        if (vals[i] != NULL) {
            assert_int_equal(
                PQsetvalue(res, 0, i, (char *)(uintptr_t)vals[i], (int)strlen(vals[i])), 1);
        } else {
            assert_int_equal(PQsetvalue(res, 0, i, NULL, -1), 1);
        }
    }
    return res;
}

static void
test_row_json(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    const char *id = "01890a5d-ac96-774b-bcce-b302099a8057";
    const char *pid = "01890a5d-ac96-774b-bcce-b302099a8058";
    const char *plain = "{\"values\":{\"systolic\":132,\"diastolic\":84},\"note\":\"食後\"}";
    char aad[REC_AAD_LEN], *hex = NULL, kid[8];
    int k;

    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    rcrypt_aad(aad, sizeof(aad), id, pid, "blood_pressure");
    assert_int_equal(rcrypt_seal(rc, aad, plain, strlen(plain), &k, &hex), PHR_OK);
    snprintf(kid, sizeof(kid), "%d", k);
    const char *vals[REC_NCOLUMNS] = {id,  pid, "blood_pressure", "1763937000000", "self", "", kid,
                                      hex, pid, "1763937000123",  "1763937000123", "1"};
    PGresult *res = row_result(vals);
    json_object *o = rec_row_json_keys(rc, NULL, res, 0);
    assert_non_null(o);
    assert_string_equal(jx_to_string(o, NULL),
                        "{\"id\":\"01890a5d-ac96-774b-bcce-b302099a8057\","
                        "\"patient_id\":\"01890a5d-ac96-774b-bcce-b302099a8058\","
                        "\"type\":\"blood_pressure\","
                        "\"measured_at\":\"2025-11-24T07:30:00.000+09:00\","
                        "\"values\":{\"systolic\":132,\"diastolic\":84},\"note\":\"食後\","
                        "\"source\":\"self\",\"org_id\":null,"
                        "\"created_at\":\"2025-11-24T07:30:00.123+09:00\","
                        "\"updated_at\":\"2025-11-24T07:30:00.123+09:00\"}");
    json_object_put(o);
    PQclear(res);
    /* the same blob under another type (a moved ciphertext) does not open */
    vals[REC_COL_TYPE] = "pulse";
    res = row_result(vals);
    assert_null(rec_row_json_keys(rc, NULL, res, 0));
    PQclear(res);
    free(hex);
    rcrypt_free(rc);
}

/* rec_row_text answers what the JSON path serializes, or NULL where it cannot splice. */
static void
test_row_text(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    const char *id = "01890a5d-ac96-774b-bcce-b302099a8057";
    const char *pid = "01890a5d-ac96-774b-bcce-b302099a8058";
    const char *plains[] = {
        "{\"values\":{\"systolic\":132,\"diastolic\":84},\"note\":\"食後\"}",
        "{\"values\":{\"value\":64.50},\"note\":null}",
        "{\"values\":{\"text\":\"a \\\" / \\\\ \\u0001\"},\"note\":\"x\\ny\"}",
        "{\"values\":{\"name\":\"m\",\"taken\":true},\"note\":null}",
    };
    const char *orgs[] = {"", "01890a5d-ac96-774b-bcce-b302099a8059"};
    char aad[REC_AAD_LEN], kid[8];
    int k;

    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    rcrypt_aad(aad, sizeof(aad), id, pid, "note");
    for (size_t i = 0; i < sizeof(plains) / sizeof(plains[0]); i++) {
        char *hex = NULL;
        assert_int_equal(rcrypt_seal(rc, aad, plains[i], strlen(plains[i]), &k, &hex), PHR_OK);
        snprintf(kid, sizeof(kid), "%d", k);
        for (int o = 0; o < 2; o++) {
            const char *vals[REC_NCOLUMNS] = {
                id,  pid, "note", "1763937000000", "self",          orgs[o],
                kid, hex, pid,    "1763937000123", "1763937000999", "1"};
            PGresult *res = row_result(vals);
            json_object *obj = rec_row_json_keys(rc, NULL, res, 0);
            size_t len = 0;
            char *text = rec_row_text(rc, res, 0, &len);
            assert_non_null(obj);
            assert_non_null(text);
            assert_int_equal(len, strlen(text));
            assert_string_equal(text, jx_to_string(obj, NULL));
            free(text);
            json_object_put(obj);
            /* a column that would need escaping: the JSON path answers instead */
            vals[REC_COL_SOURCE] = "se\"lf";
            PQclear(res);
            res = row_result(vals);
            assert_null(rec_row_text(rc, res, 0, &len));
            PQclear(res);
        }
        free(hex);
    }
    /* a payload not in rec_seal's form, and one that does not open */
    const char *odd = "{\"note\":null,\"values\":{\"value\":1}}";
    char *hex = NULL;
    size_t len = 0;
    assert_int_equal(rcrypt_seal(rc, aad, odd, strlen(odd), &k, &hex), PHR_OK);
    const char *vals[REC_NCOLUMNS] = {id,  pid, "note", "1763937000000", "self",          "",
                                      "1", hex, pid,    "1763937000123", "1763937000123", "1"};
    PGresult *res = row_result(vals);
    assert_null(rec_row_text(rc, res, 0, &len));
    PQclear(res);
    vals[REC_COL_TYPE] = "pulse";
    res = row_result(vals);
    assert_null(rec_row_text(rc, res, 0, &len));
    PQclear(res);
    free(hex);
    rcrypt_free(rc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_tamper_fails),
        cmocka_unit_test(test_rotation),   cmocka_unit_test(test_load_from_secrets),
        cmocka_unit_test(test_row_json),   cmocka_unit_test(test_row_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
