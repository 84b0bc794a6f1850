/*
 * h2s.h - HTTP/2 server on libevent + nghttp2 1.52.
 *
 * Cleartext HTTP/2 with prior knowledge (h2c), or TLS with ALPN h2 after
 * h2s_use_tls. Ownership: the server owns
 * its connections; a connection owns its streams; each stream owns one
 * request (h2s_req_t). A handler receives the request once its headers and
 * body are complete and must answer it exactly once with h2s_respond*(),
 * now or later (after a database reply, say). If the client resets the
 * stream or the connection drops first, the request stays valid for the
 * handler (h2s_req_closed() turns 1) and the answer just frees it.
 *
 * Built in: routing (404, 405 with Allow), body limits per route (413),
 * header list limit (431), request receive timeout (408), idle connection
 * timeout, output cap with read pausing (backpressure), nghttp2's stream
 * reset and CONTINUATION limiters, x-request-id propagation, an access log
 * line and metrics per request, graceful shutdown (GOAWAY then drain).
 */
#ifndef PHR_H2S_H
#define PHR_H2S_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "jsonx.h"

struct event_base;
typedef struct h2s_server h2s_server_t;
typedef struct h2s_req h2s_req_t;

typedef void (*h2s_handler_fn)(h2s_req_t *req, void *ud);

typedef struct {
    size_t max_header_list; /* bytes (name + value + 32 per field) */
    size_t max_body;        /* default body limit of a route */
    uint32_t max_streams;   /* SETTINGS_MAX_CONCURRENT_STREAMS */
    size_t output_cap;      /* bytes queued per connection before reads pause */
    int idle_timeout_ms;    /* close a connection without streams after this */
    int request_timeout_ms; /* a request must be received within this */
    int write_timeout_ms;   /* close a connection whose pending output moved no byte for this
                               long (a client that stopped reading); <= 0 means 30 s */
} h2s_limits_t;

h2s_server_t *h2s_server_create(struct event_base *base, const h2s_limits_t *limits);

/* Frees the server, its listeners and connections (requests held by handlers are orphaned). */
void h2s_server_free(h2s_server_t *srv);

/*
 * Adds a route. |max_body| 0 means limits->max_body. |method| and |pattern|
 * must outlive the server. Returns PHR_OK, PHR_EINVAL, PHR_ECONFLICT, PHR_ENOMEM.
 */
int h2s_route(h2s_server_t *srv, const char *method, const char *pattern, h2s_handler_fn fn,
              void *ud, size_t max_body);

/* Listens on |host|:|port| (port 0 picks one; see h2s_port). Returns PHR_OK or PHR_EIO. */
int h2s_listen(h2s_server_t *srv, const char *host, int port);

/*
 * Serves TLS (1.2+, ALPN "h2" only) instead of h2c on every connection
 * accepted from now on. Returns PHR_OK, PHR_EINVAL (unreadable or
 * mismatched certificate/key) or PHR_ENOMEM.
 */
int h2s_use_tls(h2s_server_t *srv, const char *cert_file, const char *key_file);

/* Port of the first listener, or -1. */
int h2s_port(const h2s_server_t *srv);

/* Serves an already-connected socket (tests, fuzzing). Takes ownership of |fd|. */
int h2s_adopt_fd(h2s_server_t *srv, int fd, const char *peer);

/*
 * Stops accepting, sends GOAWAY on every connection and lets in-flight
 * requests finish for up to |drain_ms|; then closes what is left and calls
 * |done| (once). Safe to call twice (the second call does nothing).
 */
void h2s_shutdown(h2s_server_t *srv, int drain_ms, void (*done)(void *ud), void *ud);

/* Number of open connections and of requests dispatched but not answered. */
size_t h2s_connections(const h2s_server_t *srv);
size_t h2s_inflight(const h2s_server_t *srv);

/* ---- the request, as seen by handlers ---- */
const char *h2s_req_method(const h2s_req_t *req);
const char *h2s_req_path(const h2s_req_t *req);                    /* without the query */
const char *h2s_req_query(const h2s_req_t *req);                   /* after '?', "" when none */
const char *h2s_req_route(const h2s_req_t *req);                   /* matched template or "-" */
const char *h2s_req_param(const h2s_req_t *req, const char *name); /* path parameter */
const char *h2s_req_header(const h2s_req_t *req, const char *lowercase_name);
const char *h2s_req_id(const h2s_req_t *req);   /* x-request-id (received or generated) */
const char *h2s_req_peer(const h2s_req_t *req); /* "ip:port" of the client */
const char *h2s_req_body(const h2s_req_t *req, size_t *len); /* NUL-terminated */
int h2s_req_closed(const h2s_req_t *req);

/* Handler-owned state attached to the request. */
void h2s_req_set_data(h2s_req_t *req, void *data);
void *h2s_req_data(const h2s_req_t *req);

/*
 * Registers |fn|(|arg|) to run when the request is freed (answered and
 * closed), like nginx pool cleanups. Returns PHR_OK or PHR_EFULL.
 */
int h2s_req_add_cleanup(h2s_req_t *req, void (*fn)(void *arg), void *arg);

/*
 * |n| zeroed bytes (aligned for any type) that live as long as the request:
 * released, wiped, after its cleanups ran. A handler's per-request context
 * belongs here rather than in malloc. NULL when out of memory.
 */
void *h2s_req_alloc(h2s_req_t *req, size_t n);

/* Adds a response header (before h2s_respond*). Returns PHR_OK or PHR_ETOOBIG. */
int h2s_req_add_header(h2s_req_t *req, const char *name, const char *value);

/*
 * Answers the request (the body is copied). After this call |req| must not
 * be used. Returns PHR_OK, or PHR_ECLOSED when the client went away (the
 * request is freed all the same).
 */
int h2s_respond(h2s_req_t *req, int status, const char *content_type, const char *body, size_t len);

/* Answers with |obj| serialised (application/json); consumes |obj|. */
int h2s_respond_json(h2s_req_t *req, int status, json_object *obj);

/*
 * Answers an RFC 9457 application/problem+json body with type, title (the
 * status phrase), status, detail, instance (the path), code, request_id and,
 * when |errs| has entries, errors[] of {field, message}.
 */
int h2s_respond_problem(h2s_req_t *req, int status, const char *code, const char *detail,
                        const jx_errors_t *errs);

/*
 * Streamed answers (exports): h2s_stream_start sends the headers (no
 * content-length); the handler then writes the body in chunks and must end
 * with h2s_stream_end, also after a write failed: until then it owns |req|.
 * Producer pattern: write while h2s_stream_buffered() is below a few hundred
 * KiB, then return and continue in |on_drain|, which runs from the event loop
 * once the buffered bytes fell below 64 KiB, or when the client went away
 * (h2s_stream_write then says PHR_ECLOSED). Memory stays bounded by what the
 * producer lets pile up, whatever the size of the whole body.
 */
typedef void (*h2s_stream_fn)(h2s_req_t *req, void *ud);
int h2s_stream_start(h2s_req_t *req, int status, const char *content_type, h2s_stream_fn on_drain,
                     void *ud);
int h2s_stream_write(h2s_req_t *req, const void *data, size_t len); /* copies |data| */
size_t h2s_stream_buffered(const h2s_req_t *req);
/* Ends the body. |req| must not be used afterwards. PHR_ECLOSED when the client went away. */
int h2s_stream_end(h2s_req_t *req);

/* The reason phrase of |status| ("Not Found"). */
const char *h2s_status_text(int status);

#endif
