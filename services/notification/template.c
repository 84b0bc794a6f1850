/*
 * template.c - message templates and strict rendering (see template.h).
 */
#include "template.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

#define SIGN_JA "\n--\nPHR（パーソナルヘルスレコード）\nこのメールは送信専用です。\n"
#define SIGN_EN "\n--\nPHR (Personal Health Record)\nThis address does not accept replies.\n"
#define NOT_YOU_JA "お心当たりがない場合は、このメールを破棄してください。\n"
#define NOT_YOU_EN "If this was not you, please ignore this e-mail.\n"

const tpl_t tpl_table[] = {
    {"email_verification", "email", "ja", "【PHR】メールアドレスの確認",
     "{{name}} 様\n\nPHRへのご登録ありがとうございます。\n"
     "以下のリンクからメールアドレスを確認してください。\n\n{{verify_url}}\n\n" NOT_YOU_JA SIGN_JA},
    {"email_verification", "email", "en", "[PHR] Confirm your e-mail address",
     "Dear {{name}},\n\nThank you for signing up for PHR.\n"
     "Please confirm your e-mail address with this link:\n\n{{verify_url}}\n\n" NOT_YOU_EN SIGN_EN},
    {"account_exists", "email", "ja", "【PHR】アカウント登録のご案内",
     "{{name}} 様\n\nこのメールアドレスはすでにPHRに登録されています。\n\n"
     "ログイン: {{login_url}}\nパスワードをお忘れの場合: {{reset_url}}\n\n" NOT_YOU_JA SIGN_JA},
    {"account_exists", "email", "en", "[PHR] You already have an account",
     "Dear {{name}},\n\nThis e-mail address is already registered with PHR.\n\n"
     "Log in: {{login_url}}\nForgot your password: {{reset_url}}\n\n" NOT_YOU_EN SIGN_EN},
    {"staff_onboarding", "email", "ja", "【PHR】{{org_name}} のアカウントが作成されました",
     "{{name}} 様\n\n{{org_name}} のスタッフアカウントが作成されました。\n\n"
     "ログイン: {{login_url}}\n初期パスワード: {{initial_password}}\n"
     "初期パスワードの有効期限: {{expires_at}}\n\n"
     "初回ログイン時にパスワードの変更が必要です。\n" SIGN_JA},
    {"staff_onboarding", "email", "en", "[PHR] Your {{org_name}} account was created",
     "Dear {{name}},\n\nA staff account at {{org_name}} was created for you.\n\n"
     "Log in: {{login_url}}\nInitial password: {{initial_password}}\n"
     "The initial password expires at: {{expires_at}}\n\n"
     "You must change the password when you first log in.\n" SIGN_EN},
    {"password_reset", "email", "ja", "【PHR】パスワード再設定のご案内",
     "{{name}} 様\n\n以下のリンクからパスワードを再設定してください。\n"
     "リンクの有効期限: {{expires_at}}\n\n{{reset_url}}\n\n" NOT_YOU_JA
     "パスワードは変更されません。\n" SIGN_JA},
    {"password_reset", "email", "en", "[PHR] Reset your password",
     "Dear {{name}},\n\nUse this link to reset your password.\n"
     "The link expires at: {{expires_at}}\n\n{{reset_url}}\n\n" NOT_YOU_EN
     "Your password has not been changed.\n" SIGN_EN},
    {"password_changed", "email", "ja", "【PHR】パスワードが変更されました",
     "{{name}} 様\n\n{{changed_at}} にPHRのパスワードが変更されました。\n\n"
     "お心当たりがない場合は、至急お問い合わせください。\n" SIGN_JA},
    {"password_changed", "email", "en", "[PHR] Your password was changed",
     "Dear {{name}},\n\nYour PHR password was changed at {{changed_at}}.\n\n"
     "If this was not you, contact us at once.\n" SIGN_EN},
    {"account_locked", "email", "ja", "【PHR】アカウントを一時的にロックしました",
     "{{name}} 様\n\nログインの失敗が続いたため、アカウントを {{locked_until}} まで"
     "ロックしました。\n\nお心当たりがない場合は、パスワードの変更をおすすめします。\n" SIGN_JA},
    {"account_locked", "email", "en", "[PHR] Your account is temporarily locked",
     "Dear {{name}},\n\nAfter repeated failed logins your account is locked until "
     "{{locked_until}}.\n\nIf this was not you, we recommend changing your password.\n" SIGN_EN},
    {"mfa_changed", "email", "ja", "【PHR】二要素認証の設定が変更されました",
     "{{name}} 様\n\n二要素認証の設定が変更されました。\n\n方式: {{method}}\n変更: {{change}}\n\n"
     "お心当たりがない場合は、至急お問い合わせください。\n" SIGN_JA},
    {"mfa_changed", "email", "en", "[PHR] Your two-factor settings changed",
     "Dear {{name}},\n\nYour two-factor authentication settings changed.\n\n"
     "Method: {{method}}\nChange: {{change}}\n\n"
     "If this was not you, contact us at once.\n" SIGN_EN},
    {"sms_code", "sms", "ja", NULL,
     "【PHR】認証コード: {{code}}\nこのコードは誰にも教えないでください。"},
    {"sms_code", "sms", "en", NULL, "PHR code: {{code}}. Do not share this code with anyone."},
    {"maintenance_notice", "email", "ja", "【PHR】{{subject}}", "{{body}}\n" SIGN_JA},
    {"maintenance_notice", "email", "en", "[PHR] {{subject}}", "{{body}}\n" SIGN_EN},
    {"incident_notice", "email", "ja", "【PHR】重要: セキュリティインシデントのお知らせ",
     "{{org_name}} 管理者様\n\n以下のセキュリティインシデントを検知しましたのでお知らせします。\n\n"
     "件名: {{title}}\n検知日時: {{detected_at}}\n\n{{description}}\n\n"
     "対応状況は管理画面でご確認ください。\n" SIGN_JA},
    {"incident_notice", "email", "en", "[PHR] Important: security incident notice",
     "Dear administrator of {{org_name}},\n\nWe detected the following security incident.\n\n"
     "Title: {{title}}\nDetected at: {{detected_at}}\n\n{{description}}\n\n"
     "See the administration console for the current status.\n" SIGN_EN},
    {"incident_notice", "sms", "ja", NULL,
     "【PHR】重要: セキュリティインシデントのお知らせをメールで送りました。至急ご確認ください。"},
    {"incident_notice", "sms", "en", NULL,
     "PHR: important security incident notice sent by e-mail. Read it now."},
};
const size_t tpl_count = sizeof(tpl_table) / sizeof(tpl_table[0]);

static const tpl_t *
tpl_lookup(const char *kind, const char *channel, const char *locale)
{
    for (size_t i = 0; i < tpl_count; i++) {
        const tpl_t *t = &tpl_table[i];
        if (strcmp(t->kind, kind) == 0 && strcmp(t->channel, channel) == 0 &&
            strcmp(t->locale, locale) == 0) {
            return t;
        }
    }
    return NULL;
}

const tpl_t *
tpl_find(const char *kind, const char *channel, const char *locale)
{
    static const char *const order[] = {"ja", "en"};
    const tpl_t *t = NULL;

    if (kind == NULL || channel == NULL) {
        return NULL;
    }
    if (locale != NULL && (t = tpl_lookup(kind, channel, locale)) != NULL) {
        return t;
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && t == NULL; i++) {
        t = tpl_lookup(kind, channel, order[i]);
    }
    return t;
}

/* Growing output buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} tpl_buf_t;

static void
tpl_put(tpl_buf_t *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = malloc(cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL) {
            memcpy(p, b->p, b->len);
            explicit_bzero(b->p, b->cap);
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static int
tpl_expand(const char *text, const json_object *params, char **out, char *missing, size_t cap)
{
    tpl_buf_t b = {NULL, 0, 0, 0};
    const char *s = text;

    *out = NULL;
    tpl_put(&b, "", 0);
    while (*s != '\0') {
        const char *open = strstr(s, "{{");
        const char *close = open != NULL ? strstr(open + 2, "}}") : NULL;
        if (open == NULL || close == NULL) {
            tpl_put(&b, s, strlen(s));
            break;
        }
        tpl_put(&b, s, (size_t)(open - s));
        char name[40];
        size_t nlen = (size_t)(close - open - 2);
        json_object *v = NULL;
        if (nlen >= sizeof(name)) {
            nlen = sizeof(name) - 1;
        }
        memcpy(name, open + 2, nlen);
        name[nlen] = '\0';
        if (params == NULL || !json_object_object_get_ex(params, name, &v) ||
            !json_object_is_type(v, json_type_string)) {
            size_t n = strlen(name) < cap ? strlen(name) : cap - 1;
            memcpy(missing, name, n);
            missing[n] = '\0';
            tpl_free_text(b.p);
            return PHR_EINVAL;
        }
        tpl_put(&b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        s = close + 2;
    }
    if (b.oom) {
        tpl_free_text(b.p);
        return PHR_ENOMEM;
    }
    *out = b.p;
    return PHR_OK;
}

int
tpl_render(const tpl_t *t, const json_object *params, char **subject, char **body, char *missing,
           size_t missing_cap)
{
    int rc;

    *subject = NULL;
    *body = NULL;
    if (missing_cap > 0) {
        missing[0] = '\0';
    }
    if (t->subject != NULL &&
        (rc = tpl_expand(t->subject, params, subject, missing, missing_cap)) != PHR_OK) {
        return rc;
    }
    if ((rc = tpl_expand(t->body, params, body, missing, missing_cap)) != PHR_OK) {
        tpl_free_text(*subject);
        *subject = NULL;
        return rc;
    }
    return PHR_OK;
}

void
tpl_free_text(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

size_t
tpl_ucs2_units(const char *s)
{
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xc0) != 0x80) {
            n += (*p >= 0xf0) ? 2 : 1; /* 4-byte sequences need a surrogate pair */
        }
    }
    return n;
}

size_t
tpl_sms_param_max(const char *name)
{
    return strcmp(name, "code") == 0 ? 6 : 0;
}
