/*
 * mfa.h - the auth service's second factors: TOTP, SMS codes, recovery codes.
 */
#ifndef PHR_AUTH_MFA_H
#define PHR_AUTH_MFA_H

#include "svc.h"

extern const svc_routes_t auth_mfa_routes;

#endif
