/*
 * test_records_keyring.c - data key versions added after the load (phrctl keys rotate):
 * rcrypt_open loads a version it meets on first use, rcrypt_load again adds new versions
 * (records: SIGHUP), and a version that is in neither stays unknown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "../../services/records/crypt.h"

static const char key1[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
static const char key2[] = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\n";

static void
write_secret(const char *dir, const char *name, const char *text)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
}

static void
remove_dir(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Another ring (phrctl) seals under v2; the service's ring, loaded with v1 only, opens it. */
static void
test_open_loads_new_version(void **state)
{
    char dir[] = "/tmp/rkeyring-XXXXXX";
    cfg_t cfg;
    char *hex = NULL, *plain = NULL;
    int kid = 0;

    assert_non_null(mkdtemp(dir));
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.secrets_dir, sizeof(cfg.secrets_dir), "%s", dir);
    write_secret(dir, "data_key_v1", key1);
    rcrypt_t *svc = rcrypt_create();
    assert_int_equal(rcrypt_load(svc, &cfg), PHR_OK);
    assert_int_equal(rcrypt_current(svc), 1);

    write_secret(dir, "data_key_v2", key2);
    rcrypt_t *ctl = rcrypt_create();
    assert_int_equal(rcrypt_load(ctl, &cfg), PHR_OK);
    assert_int_equal(rcrypt_seal(ctl, "rec1|a|b|note", "{\"values\":{}}", 13, &kid, &hex), PHR_OK);
    assert_int_equal(kid, 2);

    assert_int_equal(rcrypt_open(svc, "rec1|a|b|note", 2, hex, &plain, NULL), PHR_OK);
    assert_string_equal(plain, "{\"values\":{}}");
    assert_int_equal(rcrypt_current(svc), 2); /* the newest now seals */
    free(plain);
    free(hex);
    /* a version in no file stays unknown */
    assert_int_equal(rcrypt_seal(ctl, "x", "y", 1, &kid, &hex), PHR_OK);
    assert_int_equal(rcrypt_open(svc, "x", 3, hex, &plain, NULL), PHR_EINVAL);
    assert_null(plain);
    free(hex);
    rcrypt_free(ctl);
    rcrypt_free(svc);
    remove_dir(dir);
}

/* rcrypt_load on a loaded ring adds the new version and keeps the old one (retired file). */
static void
test_reload_adds_and_keeps(void **state)
{
    char dir[] = "/tmp/rkeyring-XXXXXX";
    cfg_t cfg;
    char *hex = NULL, *plain = NULL;
    int kid = 0;

    assert_non_null(mkdtemp(dir));
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.secrets_dir, sizeof(cfg.secrets_dir), "%s", dir);
    write_secret(dir, "data_key_v1", key1);
    rcrypt_t *rc = rcrypt_create();
    assert_int_equal(rcrypt_load(rc, &cfg), PHR_OK);
    assert_int_equal(rcrypt_seal(rc, "a", "old", 3, &kid, &hex), PHR_OK);
    assert_int_equal(kid, 1);
    write_secret(dir, "data_key_v2", key2);
    char path[512];
    snprintf(path, sizeof(path), "%s/data_key_v1", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rcrypt_load(rc, &cfg), PHR_OK);
    assert_int_equal(rcrypt_current(rc), 2);
    assert_int_equal(rcrypt_open(rc, "a", 1, hex, &plain, NULL), PHR_OK);
    assert_string_equal(plain, "old");
    free(plain);
    free(hex);
    /* a ring built without rcrypt_load never reads files */
    rcrypt_t *bare = rcrypt_create();
    unsigned char k[RCRYPT_KEY_LEN] = {1};
    assert_int_equal(rcrypt_add_key(bare, 1, k), PHR_OK);
    assert_int_equal(rcrypt_seal(rc, "a", "new", 3, &kid, &hex), PHR_OK);
    assert_int_equal(rcrypt_open(bare, "a", 2, hex, &plain, NULL), PHR_EINVAL);
    free(hex);
    rcrypt_free(bare);
    rcrypt_free(rc);
    remove_dir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_loads_new_version),
        cmocka_unit_test(test_reload_adds_and_keeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
