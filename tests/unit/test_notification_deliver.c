/*
 * test_notification_deliver.c - retry verdicts and backoff (deliver.c), provider request
 * bodies and Retry-After parsing (provider.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/notification/deliver.h"
#include "err.h"
#include "../../services/notification/provider.h"

static prov_result_t
t_res(int rc, long status, long retry_after_ms)
{
    prov_result_t r = {.rc = rc, .status = status, .retry_after_ms = retry_after_ms};
    return r;
}

static void
t_verdicts(void **state)
{
    long d;
    prov_result_t r;

    r = t_res(PHR_OK, 202, -1);
    assert_int_equal(dlv_judge("email", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_SENT);
    r = t_res(PHR_OK, 201, -1);
    assert_int_equal(dlv_judge("email", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_DEAD);
    assert_int_equal(dlv_judge("sms", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_SENT);
    /* retried: timeouts, transport errors, 429, 5xx */
    r = t_res(PHR_ETIMEDOUT, 0, -1);
    assert_int_equal(dlv_judge("email", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_RETRY);
    r = t_res(PHR_EUNAVAIL, 0, -1);
    assert_int_equal(dlv_judge("sms", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_RETRY);
    r = t_res(PHR_OK, 429, -1);
    assert_int_equal(dlv_judge("email", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_RETRY);
    r = t_res(PHR_OK, 500, -1);
    assert_int_equal(dlv_judge("email", &r, 4, 5, 100, 1000, 0, 7, &d), DLV_RETRY);
    r = t_res(PHR_OK, 503, -1);
    assert_int_equal(dlv_judge("email", &r, 5, 5, 100, 1000, 0, 7, &d), DLV_DEAD); /* capped */
    /* permanent: other 4xx */
    static const long perm[] = {400, 401, 403, 404, 413, 422};
    for (size_t i = 0; i < sizeof(perm) / sizeof(perm[0]); i++) {
        r = t_res(PHR_OK, perm[i], -1);
        assert_int_equal(dlv_judge("email", &r, 1, 5, 100, 1000, 0, 7, &d), DLV_DEAD);
    }
}

static void
t_full_jitter(void **state)
{
    prov_result_t r = t_res(PHR_OK, 500, -1);
    long d, maxseen = 0;

    /* attempt n: uniform in [0, min(cap, base * 2^(n-1))] */
    for (uint64_t rnd = 0; rnd < 5000; rnd += 7) {
        assert_int_equal(dlv_judge("email", &r, 1, 10, 100, 100000, 0, rnd, &d), DLV_RETRY);
        assert_true(d >= 0 && d <= 100);
        assert_int_equal(dlv_judge("email", &r, 3, 10, 100, 100000, 0, rnd, &d), DLV_RETRY);
        assert_true(d >= 0 && d <= 400);
        maxseen = d > maxseen ? d : maxseen;
        assert_int_equal(dlv_judge("email", &r, 9, 10, 100, 1000, 0, rnd, &d), DLV_RETRY);
        assert_true(d >= 0 && d <= 1000);
    }
    assert_true(maxseen > 300); /* the whole range is used */
    assert_int_equal(dlv_judge("email", &r, 2, 10, 100, 1000, 0, UINT64_MAX, &d), DLV_RETRY);
    assert_true(d >= 0 && d <= 200);
    /* huge attempt counts do not overflow */
    assert_int_equal(dlv_judge("email", &r, 90, 100, 1000, 5000, 0, 123456789, &d), DLV_RETRY);
    assert_true(d >= 0 && d <= 5000);
}

static void
t_retry_after_honoured(void **state)
{
    prov_result_t r = t_res(PHR_OK, 429, 3000);
    long d;

    for (uint64_t rnd = 0; rnd < 100; rnd++) {
        assert_int_equal(dlv_judge("sms", &r, 1, 5, 100, 1000, 0, rnd, &d), DLV_RETRY);
        assert_true(d >= 3000);
    }
    /* a timeout (maybe sent) waits at least the unknown-outcome floor */
    prov_result_t t = t_res(PHR_ETIMEDOUT, 0, -1);
    for (uint64_t rnd = 0; rnd < 100; rnd++) {
        assert_int_equal(dlv_judge("email", &t, 1, 5, 100, 1000, 5000, rnd, &d), DLV_RETRY);
        assert_true(d >= 5000);
    }
    prov_result_t five = t_res(PHR_OK, 503, -1);
    assert_int_equal(dlv_judge("email", &five, 1, 5, 100, 1000, 5000, 3, &d), DLV_RETRY);
    assert_true(d <= 100); /* a 5xx is a known failure: no floor */
    assert_int_equal(prov_retry_after_ms("2", 0), 2000);
    assert_int_equal(prov_retry_after_ms("0", 0), 0);
    assert_int_equal(prov_retry_after_ms("", 0), -1);
    assert_int_equal(prov_retry_after_ms("2x", 0), -1);
    assert_int_equal(prov_retry_after_ms("-1", 0), -1);
    /* an HTTP date: Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_int_equal(prov_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10000);
    assert_int_equal(prov_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0);
}

static cfg_t t_cfg;

static void
t_sendgrid_body(void **state)
{
    prov_msg_t m = {.id = "0190a0a0-0000-7000-8000-000000000001",
                    .kind = "staff_onboarding",
                    .channel = "email",
                    .to = "taro@example.jp",
                    .subject = "件名",
                    .body = "本文\nPassword: x\"y",
                    .tracking_off = 1};
    snprintf(t_cfg.mail_from, sizeof(t_cfg.mail_from), "no-reply@phr.example.jp");
    char *txt = prov_sendgrid_json(&t_cfg, &m);
    json_object *o = json_tokener_parse(txt);
    json_object *p0 = json_object_array_get_idx(json_object_object_get(o, "personalizations"), 0);
    json_object *to0 = json_object_array_get_idx(json_object_object_get(p0, "to"), 0);
    json_object *args = json_object_object_get(p0, "custom_args");
    json_object *c0 = json_object_array_get_idx(json_object_object_get(o, "content"), 0);
    json_object *ts = json_object_object_get(o, "tracking_settings");

    assert_non_null(o);
    assert_string_equal(json_object_get_string(json_object_object_get(to0, "email")),
                        "taro@example.jp");
    assert_string_equal(json_object_get_string(json_object_object_get(args, "notification_id")),
                        m.id);
    assert_string_equal(
        json_object_get_string(json_object_object_get(json_object_object_get(o, "from"), "email")),
        "no-reply@phr.example.jp");
    assert_string_equal(json_object_get_string(json_object_object_get(o, "subject")), "件名");
    assert_string_equal(json_object_get_string(json_object_object_get(c0, "type")), "text/plain");
    assert_string_equal(json_object_get_string(json_object_object_get(c0, "value")), m.body);
    assert_false(json_object_get_boolean(
        json_object_object_get(json_object_object_get(ts, "click_tracking"), "enable")));
    assert_false(json_object_get_boolean(
        json_object_object_get(json_object_object_get(ts, "open_tracking"), "enable")));
    json_object_put(o);
    free(txt);
    m.tracking_off = 0;
    txt = prov_sendgrid_json(&t_cfg, &m);
    assert_null(strstr(txt, "tracking_settings"));
    free(txt);
}

static void
t_twilio_form(void **state)
{
    prov_msg_t m = {.id = "x",
                    .kind = "sms_code",
                    .channel = "sms",
                    .to = "+819012345678",
                    .body = "【PHR】認証コード: 123456 & more"};
    snprintf(t_cfg.twilio_from, sizeof(t_cfg.twilio_from), "+15005550006");
    snprintf(t_cfg.public_base_url, sizeof(t_cfg.public_base_url), "https://phr.example.jp");
    char *f = prov_twilio_form(&t_cfg, &m);

    assert_non_null(f);
    assert_non_null(strstr(f, "To=%2B819012345678&From=%2B15005550006&Body=%E3%80%90PHR"));
    assert_non_null(strstr(f, "123456%20%26%20more"));
    assert_non_null(
        strstr(f, "&StatusCallback=https%3A%2F%2Fphr.example.jp%2Fapi%2Fv1%2Fwebhooks%2Ftwilio"));
    free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_verdicts),
        cmocka_unit_test(t_full_jitter),
        cmocka_unit_test(t_retry_after_honoured),
        cmocka_unit_test(t_sendgrid_body),
        cmocka_unit_test(t_twilio_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
