/*
 * itest.h - the integration test harness: real HTTP/2 requests (libcurl)
 * against the private test stack that tests/run.sh starts.
 */
#ifndef PHR_ITEST_H
#define PHR_ITEST_H

#include <json-c/json.h>
#include <stddef.h>

typedef enum {
    IT_GATEWAY_H2, /* TLS to nginx, HTTP/2 by ALPN */
    IT_GATEWAY_H1, /* TLS to nginx, HTTP/1.1 */
    IT_DIRECT      /* h2c prior knowledge straight to a service */
} it_mode_t;

typedef struct {
    long status;  /* 0 when the transfer failed */
    long version; /* 2 for HTTP/2, 11 for HTTP/1.1 */
    char *body;
    size_t len;
    char *headers; /* raw header block(s) */
    size_t hlen;
    json_object *json; /* parsed body, or NULL */
} it_resp_t;

typedef struct {
    const char *name;
    void (*fn)(void);
} it_case_t;

extern int it_failed;           /* set by IT_CHECK */
extern int it_wait_gateway_429; /* 1 (default): it_request waits out the gateway's 429 */

void it_fail(const char *file, int line, const char *what);

#define IT_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            it_fail(__FILE__, __LINE__, #cond);                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Bytes received by libcurl, NUL-terminated; buf stays NULL until something arrives. */
typedef struct {
    char *buf;
    size_t len;
} it_buf_t;

/* libcurl write (or header) callback appending to the it_buf_t |ud|. */
size_t it_collect(char *data, size_t size, size_t nmemb, void *ud);

/* Frees |b|'s bytes and empties it. */
void it_buf_free(it_buf_t *b);

/*
 * |method| |path| (a JSON |body| or NULL) to the provider stand-in over HTTP/1.1: its answer
 * parsed as JSON (caller puts), NULL on no answer or a body that is not JSON; its status in
 * |*status| when not NULL (0: no answer).
 */
json_object *it_standin(const char *method, const char *path, const char *body, long *status);

/* Environment of the test stack. */
const char *it_env(const char *name);
int it_port(const char *service); /* "auth" → PHR_AUTH_PORT */

/*
 * Sends one request. |path| is a gateway path (IT_GATEWAY_*) or a service
 * path with |service| naming the service (IT_DIRECT). |headers| is a
 * NULL-terminated list of "Name: value" strings or NULL. Returns 0 when a
 * response arrived. Through the gateway, its 429 is retried for up to 90 s
 * unless it_wait_gateway_429 is 0.
 */
int it_request(it_mode_t mode, const char *service, const char *method, const char *path,
               const char *body, size_t body_len, const char *const *headers, it_resp_t *r);
void it_resp_free(it_resp_t *r);

/* Value of response header |name| (case-insensitive) copied into a static buffer, or NULL. */
const char *it_header(const it_resp_t *r, const char *name);

/* String member |key| of the parsed body, or NULL. */
const char *it_json_str(const it_resp_t *r, const char *key);

/* 1 when |r| is an RFC 9457 problem with |status| and |code|. */
int it_is_problem(const it_resp_t *r, int status, const char *code);

/* Runs a shell command; returns its exit status. */
int it_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a secret file of the test stack (trailing newline removed) into a static buffer. */
const char *it_secret(const char *name);

/*
 * Runs one SQL statement in service |db|'s database as its role (psql) and
 * copies the first line of output into |out|. Returns 0 when psql succeeded.
 */
int it_psql(const char *db, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A fresh e-mail address "it-<tag>-<time>-<pid>-<n>@example.com". */
void it_unique_email(char *out, size_t cap, const char *tag);

/*
 * Sends |method| |path| straight to |service| as peer service |caller| (its
 * credential from the secrets; NULL: none), JSON |body| or NULL. Returns the status.
 */
long it_internal(const char *service, const char *caller, const char *method, const char *path,
                 const char *body, it_resp_t *r);

/* Polls GET |path| of |service| directly until it answers |status| or |seconds| pass. */
int it_wait_status(const char *service, const char *path, long status, int seconds);

/* Token buffers of it_login and it_operator_new hold IT_TOKEN_CAP bytes. */
#define IT_TOKEN_CAP 64

/* A JSON request through the gateway (IT_GATEWAY_H2) with |token| as bearer (NULL: none). */
long it_gw(const char *method, const char *path, const char *body, const char *token, it_resp_t *r);

/* it_gw's status only (a 5xx or failed transfer is printed to stderr). */
long it_gw_status(const char *method, const char *path, const char *body, const char *token);

/* 1 when the request is answered 400 with |field| named in errors[]. */
int it_gw_names_field(const char *method, const char *path, const char *body, const char *token,
                      const char *field);

/* 1 when the request is answered with the problem |status| |code|. */
int it_gw_problem(const char *method, const char *path, const char *body, const char *token,
                  int status, const char *code);

/* POST /api/v1/auth/login; the token into |token| (NULL: not kept). Returns the status. */
long it_login(const char *email, const char *pw, char *token);

/* Changes the password of the session |token| from |old| to |new_pw|. 1 when done (204). */
int it_change_pw(const char *token, const char *old, const char *new_pw);

/* The initial password e-mailed to staff |account_id| (from the outbox row). 1 when found. */
int it_onboarding_pw(const char *account_id, char *pw, size_t cap);

/* Staff |email| (|account_id|) logs in with the e-mailed initial password and changes it to
 * |new_pw|; the session into |token|. 1 when done. */
int it_staff_login(const char *email, const char *account_id, const char *new_pw, char *token);

/* Operator |op| creates org |name| of |seats| with admin |admin_email| (|admin_name|, locale en)
 * through the gateway; the ids into |org_id| and |admin_id| (37 bytes each). 1 when created. */
int it_org_new(const char *op, const char *name, int seats, const char *admin_email,
               const char *admin_name, char *org_id, char *admin_id);

/* A patient registered through the gateway. */
typedef struct {
    char email[128];
    char id[37];
    char token[IT_TOKEN_CAP]; /* "" unless logged in */
} it_patient_t;

/* Registers a patient (e-mail tagged |tag|, password |pw|) into |p| and, when |login|, logs it
 * in. 1 when done. */
int it_patient(const char *tag, const char *pw, int login, it_patient_t *p);

/* it_patient with the name |name| (JSON-escaped already) instead of "IT Patient". */
int it_patient_named(const char *tag, const char *name, const char *pw, int login, it_patient_t *p);

/* One request of it_burst: through the gateway (HTTP/2), GET |path|, or a POST of JSON |body|
 * when that is not NULL; |token| the bearer (NULL: none). Zeroed before the first it_burst. */
typedef struct {
    char path[128];
    const char *token;
    const char *body;
    it_resp_t r; /* the answer (r.status 0: none); it_resp_free when done */
} it_call_t;

/*
 * Sends the |n| |calls| at once on one HTTP/2 connection, and again, a second apart and for up
 * to 60 rounds, those that got no answer or a 429 (the gateway's limiter forwards nothing).
 * The rounds into |*rounds| when not NULL. Returns how many stay unanswered, -1 on failure.
 */
int it_burst(it_call_t *calls, size_t n, int *rounds);

/* Runs `phrctl |args|` against the test stack; its first output line into |line|. Exit code. */
int it_phrctl(const char *args, char *line, size_t cap);

/* `phrctl operator create` for |email|: the initial password into |pw| ("" if none). Exit code. */
int it_operator_create(const char *email, const char *name, char *pw, size_t cap);

/* A new operator (e-mail tagged |tag|), logged in, password changed to |new_pw|. 1 when done. */
int it_operator_new(const char *tag, const char *new_pw, char *token);

extern const it_case_t gateway_cases[];
extern const it_case_t service_cases[];
extern const it_case_t fault_cases[];
extern const it_case_t auth_cases[];
extern const it_case_t auth_reset_cases[];
extern const it_case_t auth_mfa_cases[];
extern const it_case_t auth_org_cases[];
extern const it_case_t auth_hygiene_cases[];
extern const it_case_t auth_abandon_cases[];
extern const it_case_t records_cases[];
extern const it_case_t records_share_cases[];
extern const it_case_t records_export_cases[];
extern const it_case_t records_batch_cases[];
extern const it_case_t records_getwait_cases[];
extern const it_case_t records_insbatch_cases[];
extern const it_case_t notify_cases[];
extern const it_case_t notify_notice_cases[];
extern const it_case_t audit_cases[];
extern const it_case_t audit_query_cases[];

#endif
