/*
 * test_auth_mfa.c - the TOTP and base32 primitives of services/auth/mfa.c
 * against the published vectors: RFC 6238 appendix B (SHA-1, the last six
 * digits of its eight-digit codes) and RFC 4648 section 10 (without padding).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/auth/mfa.h"

static void
test_totp_rfc6238(void **state)
{
    static const struct {
        uint64_t t;
        uint32_t code;
    } vec[] = {
        {59, 287082},       {1111111109, 81804},  {1111111111, 50471},
        {1234567890, 5924}, {2000000000, 279037}, {20000000000ULL, 353130},
    };
    const unsigned char *key = (const unsigned char *)"12345678901234567890";

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        assert_int_equal(auth_mfa_totp(key, 20, vec[i].t / AUTH_MFA_STEP_S), vec[i].code);
    }
    /* another key, another code */
    assert_int_not_equal(auth_mfa_totp((const unsigned char *)"12345678901234567891", 20, 1),
                         auth_mfa_totp(key, 20, 1));
}

static void
test_base32_rfc4648(void **state)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "MY"},
        {"fo", "MZXQ"},
        {"foo", "MZXW6"},
        {"foob", "MZXW6YQ"},
        {"fooba", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI"},
    };
    char out[40];

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t n =
            auth_mfa_base32((const unsigned char *)vec[i][0], strlen(vec[i][0]), out, sizeof(out));
        assert_int_equal(n, strlen(vec[i][1]));
        assert_string_equal(out, vec[i][1]);
    }
    /* 20 bytes (a TOTP seed) are 32 characters; a short buffer is refused */
    unsigned char seed[20] = {0};
    assert_int_equal(auth_mfa_base32(seed, sizeof(seed), out, sizeof(out)), 32);
    assert_int_equal(auth_mfa_base32(seed, sizeof(seed), out, 32), 0); /* no room for the NUL */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_base32_rfc4648),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
