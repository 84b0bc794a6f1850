#include "err.h"

const char *
phr_err_str(int err)
{
    switch (err) {
    case PHR_OK: return "ok";
    case PHR_EGENERIC: return "failure";
    case PHR_ENOMEM: return "out of memory";
    case PHR_EINVAL: return "invalid input";
    case PHR_ETIMEDOUT: return "timed out";
    case PHR_EUNAVAIL: return "dependency unavailable";
    case PHR_ENOTFOUND: return "not found";
    case PHR_ECONFLICT: return "conflict";
    case PHR_EIO: return "i/o error";
    case PHR_EPROTO: return "protocol error";
    case PHR_ECLOSED: return "closed";
    case PHR_EFULL: return "capacity exhausted";
    case PHR_ETOOBIG: return "too large";
    case PHR_EDENIED: return "denied";
    case PHR_AGAIN: return "in progress";
    default: return "unknown error";
    }
}
