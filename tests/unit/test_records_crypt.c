/*
 * test_records_crypt.c - services/records/crypt.c: AES-256-GCM round trip,
 * tampering and a wrong AAD fail, key rotation (old versions still open, the
 * newest seals), loading data_key_v<N> from a secrets dir, the MAC; and
 * rec_row_json and rec_row_text (the one serialization of a record) decrypting
 * a row shaped like REC_COLUMNS.
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

/* Row |vals| with payload |plain| sealed under key 1 for |type| (the hex into |*hex|). */
static PGresult *
sealed_row(rcrypt_t *rc, const char *plain, const char *vals[REC_NCOLUMNS], char **hex)
{
    char aad[REC_AAD_LEN];
    int k;

    rcrypt_aad(aad, sizeof(aad), vals[REC_COL_ID], vals[REC_COL_PATIENT], vals[REC_COL_TYPE]);
    assert_int_equal(rcrypt_seal(rc, aad, plain, strlen(plain), &k, hex), PHR_OK);
    assert_int_equal(k, 1);
    vals[REC_COL_KEY_ID] = "1";
    vals[REC_COL_SEALED] = *hex;
    return row_result(vals);
}

#define T_ID "01890a5d-ac96-774b-bcce-b302099a8057"
#define T_PID "01890a5d-ac96-774b-bcce-b302099a8058"
#define T_ORG "01890a5d-ac96-774b-bcce-b302099a8059"
#define T_HEAD "{\"id\":\"" T_ID "\",\"patient_id\":\"" T_PID "\",\"type\":\"note\","
#define T_TIMES                                                                                    \
    "\"created_at\":\"2025-11-24T07:30:00.123+09:00\","                                            \
    "\"updated_at\":\"2025-11-24T07:30:00.999+09:00\"}"

/* rec_row_text, the one serialization of a record, against literal answers. */
static void
test_row_text(void **state)
{
    rcrypt_t *rc = rcrypt_create();
    static const struct {
        const char *plain, *source, *org, *measured, *want;
    } cases[] = {
        {"{\"values\":{\"text\":\"食後\"},\"note\":\"朝 😀\"}", "self", "", "1763937000000",
         T_HEAD "\"measured_at\":\"2025-11-24T07:30:00.000+09:00\","
                "\"values\":{\"text\":\"食後\"},\"note\":\"朝 😀\",\"source\":\"self\","
                "\"org_id\":null," T_TIMES},
        /* numbers and escapes stay as sealed */
        {"{\"values\":{\"value\":64.50,\"n\":1e2},\"note\":null}", "device", T_ORG,
         "-2208988800000",
         T_HEAD "\"measured_at\":\"1900-01-01T09:00:00.000+09:00\","
                "\"values\":{\"value\":64.50,\"n\":1e2},\"note\":null,\"source\":\"device\","
                "\"org_id\":\"" T_ORG "\"," T_TIMES},
        {"{\"values\":{\"text\":\"a \\\" / \\\\ \\u0001\"},\"note\":\"x\\ny\"}", "clinic", T_ORG,
         "1763937000001",
         T_HEAD "\"measured_at\":\"2025-11-24T07:30:00.001+09:00\","
                "\"values\":{\"text\":\"a \\\" / \\\\ \\u0001\"},\"note\":\"x\\ny\","
                "\"source\":\"clinic\",\"org_id\":\"" T_ORG "\"," T_TIMES},
        /* a column that needs escaping is escaped as json-c does; a bad time is null */
        {"{\"values\":{},\"note\":\"\"}", "se\"lf\\\t/", "", "x",
         T_HEAD "\"measured_at\":null,\"values\":{},\"note\":\"\","
                "\"source\":\"se\\\"lf\\\\\\t/\",\"org_id\":null," T_TIMES},
    };
    rec_text_t all = {.s = NULL};
    size_t all_len = 0;

    assert_int_equal(rcrypt_add_key(rc, 1, key1), PHR_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *vals[REC_NCOLUMNS] = {
            T_ID, T_PID, "note", cases[i].measured, cases[i].source, cases[i].org,
            NULL, NULL,  T_PID,  "1763937000123",   "1763937000999", "1"};
        char *hex = NULL;
        rec_text_t t = {.s = NULL};
        PGresult *res = sealed_row(rc, cases[i].plain, vals, &hex);

        assert_int_equal(rec_row_text(rc, res, 0, &t), PHR_OK);
        assert_string_equal(t.s, cases[i].want);
        assert_int_equal(t.len, strlen(cases[i].want));
        /* the object form is that text parsed */
        json_object *o = rec_row_json_keys(rc, NULL, res, 0);
        assert_non_null(o);
        assert_string_equal(jx_to_string(o, NULL), cases[i].want);
        json_object_put(o);
        /* rows append (a list): earlier text kept */
        assert_int_equal(rec_text_add(&all, i > 0 ? "," : "[", 1), PHR_OK);
        assert_int_equal(rec_row_text(rc, res, 0, &all), PHR_OK);
        all_len += 1 + t.len;
        assert_int_equal(all.len, all_len);
        assert_memory_equal(all.s + all.len - t.len, t.s, t.len);
        rec_text_free(&t);
        assert_null(t.s);
        PQclear(res);
        free(hex);
    }
    assert_memory_equal(all.s, "[" T_HEAD, strlen("[" T_HEAD));
    /* a long payload grows the text; a row that does not open leaves it as it was */
    char note[4200];
    memset(note, 'n', sizeof(note));
    int nl = snprintf(note, sizeof(note), "{\"values\":{\"text\":\"%04000d\"},\"note\":null}", 7);
    assert_true(nl > 4000);
    const char *vals[REC_NCOLUMNS] = {T_ID, T_PID, "note", "1763937000000", "self",          "",
                                      NULL, NULL,  T_PID,  "1763937000123", "1763937000999", "1"};
    char *hex = NULL;
    PGresult *res = sealed_row(rc, note, vals, &hex);
    assert_int_equal(rec_row_text(rc, res, 0, &all), PHR_OK);
    char want[4600];
    int wl = snprintf(want, sizeof(want),
                      T_HEAD "\"measured_at\":\"2025-11-24T07:30:00.000+09:00\",%.*s,"
                             "\"source\":\"self\",\"org_id\":null," T_TIMES,
                      nl - 2, note + 1);
    assert_true(wl > nl && (size_t)wl < sizeof(want));
    assert_int_equal(all.len, all_len + (size_t)wl);
    assert_string_equal(all.s + all_len, want);
    all_len = all.len;
    PQclear(res);
    vals[REC_COL_TYPE] = "pulse"; /* the blob moved to another type: it does not open */
    res = row_result(vals);
    assert_int_equal(rec_row_text(rc, res, 0, &all), PHR_EINVAL);
    assert_null(rec_row_json_keys(rc, NULL, res, 0));
    assert_int_equal(all.len, all_len);
    PQclear(res);
    free(hex);
    /* a payload not in rec_seal's form is refused, not spliced */
    vals[REC_COL_TYPE] = "note";
    res = sealed_row(rc, "{\"note\":null,\"values\":{\"value\":1}}", vals, &hex);
    assert_int_equal(rec_row_text(rc, res, 0, &all), PHR_EINVAL);
    assert_int_equal(all.len, all_len);
    PQclear(res);
    free(hex);
    rec_text_cut(&all, 1);
    assert_string_equal(all.s, "[");
    rec_text_free(&all);
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
