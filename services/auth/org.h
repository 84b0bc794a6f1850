/*
 * org.h - the auth service's organizations, staff, seats and the internal account routes.
 */
#ifndef PHR_AUTH_ORG_H
#define PHR_AUTH_ORG_H

#include "svc.h"

extern const svc_routes_t auth_org_routes;

#endif
