/*
 * reset.h - the auth service's password reset, withdrawal.
 */
#ifndef PHR_AUTH_RESET_H
#define PHR_AUTH_RESET_H

#include "svc.h"

extern const svc_routes_t auth_reset_routes;

#endif
