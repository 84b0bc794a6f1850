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

const kind_t kind_table[] = {
    {"email_verification", KIND_EMAIL, p_verify},
    {"account_exists", KIND_EMAIL, p_exists},
    {"staff_onboarding", KIND_EMAIL, p_onboarding},
    {"password_reset", KIND_EMAIL, p_reset},
    {"password_changed", KIND_EMAIL, p_changed},
    {"account_locked", KIND_EMAIL, p_locked},
    {"mfa_changed", KIND_EMAIL, p_mfa},
    {"sms_code", KIND_SMS, p_sms},
    {"maintenance_notice", KIND_EMAIL, p_maintenance},
    {"incident_notice", KIND_EMAIL | KIND_SMS, p_incident},
};
const size_t kind_count = sizeof(kind_table) / sizeof(kind_table[0]);

const kind_t *
kind_find(const char *name)
{
    for (size_t i = 0; i < kind_count; i++) {
        if (strcmp(kind_table[i].kind, name) == 0) {
            return &kind_table[i];
        }
    }
    return NULL;
}
