/*
 * test_notification_template.c - templates: every kind has ja and en for each of its
 * channels, every SMS fits one UCS-2 segment with maximal parameters, strict rendering,
 * locale fallback, and every parameter auth sends renders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "../../services/notification/kind.h"
#include "../../services/notification/template.h"

/* Every parameter of |k| at its maximal length (4000 characters, or the SMS bound). */
static json_object *
t_max_params(const kind_t *k, int sms)
{
    json_object *p = json_object_new_object();
    static char big[4001 * 3];

    for (size_t i = 0; i < 4000; i++) {
        memcpy(big + 3 * i, "\xe3\x81\x82", 3); /* "あ": 1 UCS-2 unit, 3 bytes */
    }
    big[3 * 4000] = '\0';
    for (size_t i = 0; k->params[i] != NULL; i++) {
        size_t max = sms ? tpl_sms_param_max(k->params[i]) : 0;
        if (max > 0) {
            char v[64];
            memset(v, '9', max);
            v[max] = '\0';
            json_object_object_add(p, k->params[i], json_object_new_string(v));
        } else {
            json_object_object_add(p, k->params[i], json_object_new_string(big));
        }
    }
    return p;
}

static void
t_every_kind_has_templates(void **state)
{
    static const char *const locales[] = {"ja", "en"};

    for (size_t i = 0; i < kind_count; i++) {
        const kind_t *k = &kind_table[i];
        for (int ch = 0; ch < 2; ch++) {
            const char *channel = ch == 0 ? "email" : "sms";
            if (!(k->channels & (ch == 0 ? KIND_EMAIL : KIND_SMS))) {
                continue;
            }
            for (size_t l = 0; l < 2; l++) {
                const tpl_t *t = tpl_find(k->kind, channel, locales[l]);
                assert_non_null(t);
                assert_string_equal(t->locale, locales[l]);
                assert_true((t->subject != NULL) == (ch == 0));
            }
        }
    }
}

static void
t_sms_fits_one_segment(void **state)
{
    size_t checked = 0;

    for (size_t i = 0; i < tpl_count; i++) {
        const tpl_t *t = &tpl_table[i];
        if (strcmp(t->channel, "sms") != 0) {
            continue;
        }
        const kind_t *k = kind_find(t->kind);
        assert_non_null(k);
        json_object *p = t_max_params(k, 1);
        char *subject, *body, missing[48];
        assert_int_equal(tpl_render(t, p, &subject, &body, missing, sizeof(missing)), PHR_OK);
        assert_null(subject);
        if (tpl_ucs2_units(body) > TPL_SMS_UNITS) {
            fail_msg("SMS template %s/%s is %zu UCS-2 units", t->kind, t->locale,
                     tpl_ucs2_units(body));
        }
        tpl_free_text(body);
        json_object_put(p);
        checked++;
    }
    assert_true(checked >= 4); /* sms_code and incident_notice, ja and en */
}

static void
t_ucs2_units(void **state)
{
    assert_int_equal(tpl_ucs2_units(""), 0);
    assert_int_equal(tpl_ucs2_units("abc"), 3);
    assert_int_equal(tpl_ucs2_units("認証コード"), 5);
    assert_int_equal(tpl_ucs2_units("\xf0\x9f\x98\x80"), 2); /* an emoji: a surrogate pair */
}

static void
t_missing_variable(void **state)
{
    const tpl_t *t = tpl_find("password_reset", "email", "ja");
    json_object *p = json_object_new_object();
    char *subject, *body, missing[48];

    json_object_object_add(p, "name", json_object_new_string("山田 太郎"));
    json_object_object_add(p, "expires_at", json_object_new_string("2026-01-01T00:00:00+09:00"));
    assert_int_equal(tpl_render(t, p, &subject, &body, missing, sizeof(missing)), PHR_EINVAL);
    assert_string_equal(missing, "reset_url");
    assert_null(subject);
    assert_null(body);
    /* not a string: refused as well */
    json_object_object_add(p, "reset_url", json_object_new_int(3));
    assert_int_equal(tpl_render(t, p, &subject, &body, missing, sizeof(missing)), PHR_EINVAL);
    assert_string_equal(missing, "reset_url");
    json_object_object_add(p, "reset_url", json_object_new_string("https://x.example/r?t=abc"));
    assert_int_equal(tpl_render(t, p, &subject, &body, missing, sizeof(missing)), PHR_OK);
    assert_non_null(strstr(body, "山田 太郎 様"));
    assert_non_null(strstr(body, "https://x.example/r?t=abc"));
    assert_null(strstr(body, "{{"));
    tpl_free_text(subject);
    tpl_free_text(body);
    json_object_put(p);
}

static void
t_locale_fallback(void **state)
{
    assert_string_equal(tpl_find("sms_code", "sms", NULL)->locale, "ja");
    assert_string_equal(tpl_find("sms_code", "sms", "en")->locale, "en");
    assert_string_equal(tpl_find("sms_code", "sms", "fr")->locale, "ja");
    assert_null(tpl_find("sms_code", "email", "ja"));
    assert_null(tpl_find("no_such_kind", "email", "ja"));
}

/* What services/auth sends (kind, params): every one renders in both locales. */
static void
t_auth_params_render(void **state)
{
    static const char *const sent[][12] = {
        {"email_verification", "name", "n", "verify_url", "u", NULL},
        {"account_exists", "name", "n", "login_url", "u", "reset_url", "r", NULL},
        {"staff_onboarding", "name", "n", "org_name", "o", "login_url", "u", "initial_password",
         "Pw-123456", "expires_at", "e", NULL},
        {"password_reset", "name", "n", "reset_url", "u", "expires_at", "e", NULL},
        {"password_changed", "name", "n", "changed_at", "c", NULL},
        {"account_locked", "name", "n", "locked_until", "l", NULL},
        {"mfa_changed", "name", "n", "method", "totp", "change", "reset", NULL},
        {"sms_code", "code", "123456", NULL},
    };
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        const kind_t *k = kind_find(sent[i][0]);
        const char *channel = (k->channels & KIND_EMAIL) ? "email" : "sms";
        json_object *p = json_object_new_object();
        assert_non_null(k);
        for (size_t j = 1; sent[i][j] != NULL; j += 2) {
            json_object_object_add(p, sent[i][j], json_object_new_string(sent[i][j + 1]));
        }
        for (int l = 0; l < 2; l++) {
            const tpl_t *t = tpl_find(k->kind, channel, l ? "en" : "ja");
            char *subject, *body, missing[48];
            assert_int_equal(tpl_render(t, p, &subject, &body, missing, sizeof(missing)), PHR_OK);
            for (size_t j = 1; sent[i][j] != NULL; j += 2) {
                /* every value sent appears in the message */
                const char *v = sent[i][j + 1];
                assert_true(strstr(body, v) != NULL || (subject != NULL && strstr(subject, v)));
            }
            tpl_free_text(subject);
            tpl_free_text(body);
        }
        json_object_put(p);
    }
}

static void
t_kind_secrets(void **state)
{
    assert_true(kind_has_secrets(kind_find("staff_onboarding")));
    assert_true(kind_has_secrets(kind_find("sms_code")));
    assert_true(kind_has_secrets(kind_find("password_reset")));
    assert_false(kind_has_secrets(kind_find("password_changed")));
    assert_int_equal(kind_find("sms_code")->rl_max, 5);
    assert_int_equal(kind_find("sms_code")->rl_window_s, 900);
    assert_int_equal(kind_channel_bit("email"), KIND_EMAIL);
    assert_int_equal(kind_channel_bit("fax"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_every_kind_has_templates),
        cmocka_unit_test(t_sms_fits_one_segment),
        cmocka_unit_test(t_ucs2_units),
        cmocka_unit_test(t_missing_variable),
        cmocka_unit_test(t_locale_fallback),
        cmocka_unit_test(t_auth_params_render),
        cmocka_unit_test(t_kind_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
