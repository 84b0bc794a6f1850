/*
 * hcli.h - HTTP/2 client for service-to-service calls (h2c prior knowledge).
 *
 * One multiplexed connection per peer, made lazily and re-made after it
 * drops (exponential backoff), a deadline per call, and the caller's
 * service credential sent on every request (headers x-phr-caller and
 * x-phr-credential).
 */
#ifndef PHR_HCLI_H
#define PHR_HCLI_H

#include <stddef.h>

struct event_base;
typedef struct hcli hcli_t;

typedef struct {
    int status;
    const char *content_type; /* may be NULL */
    const char *body;         /* NUL-terminated for convenience */
    size_t body_len;
} hcli_resp_t;

/*
 * |rc| is PHR_OK with |resp| (any HTTP status), PHR_ETIMEDOUT (deadline),
 * PHR_EUNAVAIL (cannot connect / connection lost / not processed by the peer
 * twice), PHR_EPROTO, or PHR_ECLOSED (client freed). |resp| is valid only
 * during the callback. Called exactly once, never from inside the submitting
 * call. A request the peer did not process (above its GOAWAY's
 * last_stream_id, or REFUSED_STREAM) is sent once more, on a new connection
 * after a GOAWAY, within the same deadline.
 */
typedef void (*hcli_cb)(int rc, const hcli_resp_t *resp, void *ud);

typedef struct {
    const char *host;
    int port;
    const char *caller;     /* our service name */
    const char *credential; /* our service secret */
    int timeout_ms;         /* default per-call deadline */
} hcli_config_t;

hcli_t *hcli_create(struct event_base *base, const hcli_config_t *cfg);
void hcli_free(hcli_t *cli);

/*
 * Sends one request. |body| may be NULL. |request_id| is forwarded as
 * x-request-id when not NULL. Returns PHR_OK or PHR_ENOMEM.
 */
int hcli_request(hcli_t *cli, const char *method, const char *path, const char *content_type,
                 const char *body, size_t body_len, const char *request_id, hcli_cb cb, void *ud);

#define HCLI_MAX_EXTRA_HEADERS 8

/*
 * As hcli_request, plus extra request headers: |headers| is NULL or a list
 * of name, value, name, value, ..., NULL (at most HCLI_MAX_EXTRA_HEADERS
 * pairs, copied). Names must be lowercase tokens and not pseudo-headers,
 * content-type, content-length, accept, x-request-id or x-phr-*.
 * Returns PHR_OK, PHR_EINVAL (bad arguments or header) or PHR_ENOMEM.
 */
int hcli_request_hdrs(hcli_t *cli, const char *method, const char *path, const char *const *headers,
                      const char *content_type, const char *body, size_t body_len,
                      const char *request_id, hcli_cb cb, void *ud);

#endif
