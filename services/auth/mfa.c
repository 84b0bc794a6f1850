#include "mfa.h"

const svc_routes_t auth_mfa_routes = {NULL, 0};
