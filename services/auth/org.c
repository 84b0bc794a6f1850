#include "org.h"

const svc_routes_t auth_org_routes = {NULL, 0};
