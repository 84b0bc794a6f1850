/*
 * Auth: mfa (issue 3).
 */
#include "itest.h"

const it_case_t auth_mfa_cases[] = {
    {NULL, NULL},
};
