/*
 * provider.h - outbound calls to SendGrid (e-mail) and Twilio (SMS) on libcurl multi
 * driven by the service's libevent loop (curl_multi_socket_action, one event per socket
 * and one timer): the loop never blocks. TLS certificates are verified (libcurl's
 * defaults, never turned off). Credentials: secrets sendgrid_api_key, twilio_auth_token.
 */
#ifndef PHR_NOTIFICATION_PROVIDER_H
#define PHR_NOTIFICATION_PROVIDER_H

#include <stddef.h>

#include "config.h"

struct event_base;
typedef struct prov prov_t;

typedef struct {
    const char *id;      /* our notification id (SendGrid custom_args) */
    const char *kind;    /* kind name (SendGrid category) */
    const char *channel; /* "email" -> sendgrid, "sms" -> twilio */
    const char *to;      /* e-mail address or E.164 phone */
    const char *subject; /* e-mail only */
    const char *body;    /* text */
    int tracking_off;    /* SendGrid click/open tracking off (secret-bearing kinds) */
} prov_msg_t;

typedef struct {
    int rc;      /* PHR_OK (an HTTP answer), PHR_ETIMEDOUT, PHR_EUNAVAIL (transport), PHR_ECLOSED */
    long status; /* HTTP status when rc is PHR_OK */
    long retry_after_ms; /* Retry-After of the answer, -1 when absent */
    char message_id[96]; /* X-Message-Id (sendgrid) or sid (twilio); "" when absent */
    char error[200];     /* short reason when not accepted (never message content) */
    int found;           /* prov_lookup: 1 when the provider has the message (message_id set) */
} prov_result_t;

/* Called once per prov_send, from the event loop (never inside prov_send). */
typedef void (*prov_cb)(const prov_result_t *res, void *ud);

/*
 * Creates the client. |cfg| must outlive it. Reads the provider secrets (a missing
 * secret leaves that provider answering 401 locally: logged at start). NULL on failure.
 */
prov_t *prov_create(struct event_base *base, const cfg_t *cfg);

/* Aborts transfers in flight (their callbacks run with rc PHR_ECLOSED). NULL is a no-op. */
void prov_free(prov_t *p);

/* Starts one send. Returns PHR_OK (|cb| pending), PHR_EINVAL or PHR_ENOMEM. */
int prov_send(prov_t *p, const prov_msg_t *m, prov_cb cb, void *ud);

/*
 * Asks the provider whether it already accepted |m| in an attempt begun at or after |since_s|
 * (unix seconds), for an attempt whose outcome is unknown (neither provider has an
 * idempotency key). SendGrid: GET /v3/messages (Email Activity) with the query
 * unique_args['notification_id']="<m->id>" (our custom_args). Twilio: GET .../Messages.json
 * ?To=<m->to>, a message of the same Body created at or after |since_s| (the list is not
 * filtered by DateSent: date_sent stays null while Twilio still queues the message).
 * |cb| gets rc PHR_OK and status 200 with |found| (and message_id) on an answer, else the
 * failure as for prov_send. Returns PHR_OK (|cb| pending), PHR_EINVAL or PHR_ENOMEM.
 */
int prov_lookup(prov_t *p, const prov_msg_t *m, long since_s, prov_cb cb, void *ud);

/* The lookup URL of |m| (see prov_lookup; caller frees); NULL on allocation failure. */
char *prov_lookup_url(const cfg_t *cfg, const prov_msg_t *m);

/*
 * Parses a lookup answer |body| for |m|: 1 when it lists the message (its id, for SendGrid
 * the X-Message-Id part of msg_id, copied into |id|), 0 when not, PHR_EPROTO when |body| is
 * not the provider's list shape.
 */
int prov_lookup_parse(const prov_msg_t *m, long since_s, const char *body, char *id, size_t cap);

/* Transfers in flight. */
size_t prov_inflight(const prov_t *p);

/* 1 when |status| of |channel| means accepted (sendgrid 202/200, twilio 201). */
int prov_accepted(const char *channel, long status);

/* The SendGrid v3 mail/send JSON of |m| (caller frees); NULL on allocation failure. */
char *prov_sendgrid_json(const cfg_t *cfg, const prov_msg_t *m);

/* The Twilio form body of |m| (caller frees); NULL on allocation failure. */
char *prov_twilio_form(const cfg_t *cfg, const prov_msg_t *m);

/* Retry-After (delta seconds or an HTTP date) in ms from now; -1 when unparsable. */
long prov_retry_after_ms(const char *value, long now_s);

#endif
