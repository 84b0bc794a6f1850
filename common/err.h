/*
 * err.h - the one error vocabulary of the project.
 *
 * Every function in common/ and services/ that can fail returns an int:
 * PHR_OK (0) on success or one of the negative PHR_E* codes below.
 * PHR_AGAIN means "not finished yet, you will be called back".
 */
#ifndef PHR_ERR_H
#define PHR_ERR_H

enum {
    PHR_OK = 0,
    PHR_EGENERIC = -1,  /* unspecified failure */
    PHR_ENOMEM = -2,    /* allocation failed */
    PHR_EINVAL = -3,    /* bad argument or bad input */
    PHR_ETIMEDOUT = -4, /* deadline passed */
    PHR_EUNAVAIL = -5,  /* a dependency (PostgreSQL, Redis, peer) is down */
    PHR_ENOTFOUND = -6, /* no such thing */
    PHR_ECONFLICT = -7, /* already exists / concurrent change */
    PHR_EIO = -8,       /* system call or socket failure */
    PHR_EPROTO = -9,    /* peer violated a protocol */
    PHR_ECLOSED = -10,  /* object was closed or cancelled */
    PHR_EFULL = -11,    /* queue or pool at capacity */
    PHR_ETOOBIG = -12,  /* input exceeds a configured limit */
    PHR_EDENIED = -13,  /* authentication or authorisation refused */
    PHR_AGAIN = -14     /* in progress; completion is signalled later */
};

/* Returns a static, human-readable name for |err| ("ok", "timed out", ...). */
const char *phr_err_str(int err);

#endif
