#include "reset.h"

const svc_routes_t auth_reset_routes = {NULL, 0};
