/*
 * Auth: org (issue 3).
 */
#include "itest.h"

const it_case_t auth_org_cases[] = {
    {NULL, NULL},
};
