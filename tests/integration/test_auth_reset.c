/*
 * Auth: reset (issue 3).
 */
#include "itest.h"

const it_case_t auth_reset_cases[] = {
    {NULL, NULL},
};
