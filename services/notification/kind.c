/*
 * kind.c - the notification kinds (see kind.h).
 */
#include "kind.h"

#include <string.h>

/* Required template variables: the same lists as proto/schemas/notification-request.json. */
static const char *const p_verify[] = {"name", "verify_url", NULL};
static const char *const p_exists[] = {"name", "login_url", "reset_url", NULL};
static const char *const p_onboarding[] = {
    "name", "org_name", "login_url", "initial_password", "expires_at", NULL};
static const char *const p_reset[] = {"name", "reset_url", "expires_at", NULL};
static const char *const p_changed[] = {"name", "changed_at", NULL};
static const char *const p_locked[] = {"name", "locked_until", NULL};
static const char *const p_mfa[] = {"name", "method", "change", NULL};
static const char *const p_sms[] = {"code", NULL};
static const char *const p_maintenance[] = {"subject", "body", NULL};
static const char *const p_incident[] = {"org_name", "title", "description", "detected_at", NULL};

/* Secrets: wiped after the provider accepted the message. */
static const char *const s_verify[] = {"verify_url", NULL};
static const char *const s_onboarding[] = {"initial_password", NULL};
static const char *const s_reset[] = {"reset_url", NULL};
static const char *const s_sms[] = {"code", NULL};

const kind_t kind_table[] = {
    {"email_verification", KIND_EMAIL, p_verify, s_verify, 0, 0},
    {"account_exists", KIND_EMAIL, p_exists, NULL, 0, 0},
    {"staff_onboarding", KIND_EMAIL, p_onboarding, s_onboarding, 0, 0},
    {"password_reset", KIND_EMAIL, p_reset, s_reset, 0, 0},
    {"password_changed", KIND_EMAIL, p_changed, NULL, 0, 0},
    {"account_locked", KIND_EMAIL, p_locked, NULL, 0, 0},
    {"mfa_changed", KIND_EMAIL, p_mfa, NULL, 0, 0},
    {"sms_code", KIND_SMS, p_sms, s_sms, 5, 15 * 60},
    {"maintenance_notice", KIND_EMAIL, p_maintenance, NULL, 0, 0},
    {"incident_notice", KIND_EMAIL | KIND_SMS, p_incident, NULL, 0, 0},
};
const size_t kind_count = sizeof(kind_table) / sizeof(kind_table[0]);

const kind_t *
kind_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < kind_count; i++) {
        if (strcmp(kind_table[i].kind, name) == 0) {
            return &kind_table[i];
        }
    }
    return NULL;
}

int
kind_has_secrets(const kind_t *kind)
{
    return kind->secrets != NULL && kind->secrets[0] != NULL;
}

int
kind_channel_bit(const char *channel)
{
    if (channel == NULL) {
        return 0;
    }
    if (strcmp(channel, "email") == 0) {
        return KIND_EMAIL;
    }
    return strcmp(channel, "sms") == 0 ? KIND_SMS : 0;
}
