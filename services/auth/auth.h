/*
 * auth.h - the auth service's handlers and what they share: a per-request
 * context freed with the request, a transaction runner for a fixed list of
 * statements plus outbox rows, and the JSON of audit events and e-mails.
 */
#ifndef PHR_AUTH_H
#define PHR_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "password.h"
#include "pwhash.h"
#include "session.h"
#include "svc.h"

#define AUTH_TX_MAX 6
#define AUTH_PARAMS_MAX 8
#define AUTH_LOCK_AFTER 5 /* consecutive failures before a lock */

typedef struct auth_ctx auth_ctx_t;
typedef void (*auth_step_fn)(auth_ctx_t *ctx, int rc);

typedef struct {
    const char *sql; /* NULL: an outbox row (topic, key, json) */
    int nparams;
    const char *params[AUTH_PARAMS_MAX];
    const char *topic;
    char key[80];
    char *json; /* owned */
} auth_stmt_t;

/* Everything one request needs; freed (passwords wiped) when the request is. */
struct auth_ctx {
    svc_t *svc;
    h2s_req_t *req;
    sess_t sess; /* the caller's session on session routes */
    int has_sess;
    auth_step_fn next;
    db_txn_t *txn;
    int tx_rc;
    auth_stmt_t tx[AUTH_TX_MAX];
    size_t ntx;
    /* request fields */
    char email[1024]; /* up to 254 characters of UTF-8 */
    char name[404];   /* up to 100 characters of UTF-8 */
    char locale[4];
    char *password; /* NFKC-normalised, pw_free'd */
    char *new_password;
    char ip[64];
    /* the account row */
    int found;
    char account_id[37];
    char kind[16], org_id[37], role[16];
    char hash[PWHASH_ENCODED_MAX];
    char new_hash[PWHASH_ENCODED_MAX];
    int email_verified, must_change, failed_logins, locked, active;
    int pw_expired;          /* an initial password past accounts.password_expires_at */
    int mfa_enroll_required; /* staff of a require_mfa org without a confirmed factor */
    unsigned mfa_methods;    /* SESS_MFA_*: factors enrolled, for the session's profile */
    int org_requires_mfa;    /* staff of an org with require_mfa */
    size_t pw_min;           /* pw_min_length of the account */
    /* scratch */
    char token[SESS_TOKEN_LEN + 1];
    char token_hash[SESS_HASH_LEN + 1];
    char id2[37];
    char num[24];
    pw_violations_t v;
    int needs_rehash;
};

/*
 * SQL columns for pw_min_length of account alias "a" (with "LEFT JOIN
 * organizations o ON o.id = a.org_id"): kind, org requires MFA, has a
 * confirmed second factor.
 */
#define AUTH_PW_FACTS_SQL                                                                          \
    "a.kind, coalesce(o.require_mfa, false), "                                                     \
    "EXISTS (SELECT 1 FROM mfa_totp WHERE account_id = a.id AND confirmed_at IS NOT NULL) OR "     \
    "EXISTS (SELECT 1 FROM mfa_sms WHERE account_id = a.id AND confirmed_at IS NOT NULL)"

/* pw_min_length of the three AUTH_PW_FACTS_SQL columns of |res| row |row| from |col|. */
size_t auth_pw_min_length_of(const PGresult *res, int row, int col);

auth_ctx_t *auth_ctx_new(svc_t *svc, h2s_req_t *req, const sess_t *sess);

/* Queues a statement (params must live as long as |ctx|) / an outbox row (|json| taken). */
void auth_tx_sql(auth_ctx_t *ctx, const char *sql, int nparams, const char *const *params);
void auth_tx_outbox(auth_ctx_t *ctx, const char *topic, const char *key, char *json);

/* Runs the queued statements in one transaction and commits; then |next|(ctx, rc). */
void auth_tx_run(auth_ctx_t *ctx, auth_step_fn next);

/*
 * Queues, in |ctx|'s transaction, one more failed login of ctx->account_id
 * (|failed_logins| so far; nothing when |locked|) and, at the threshold, the
 * lock with its audit event and e-mail. Shared by password and second-factor
 * failures so both lock the account the same way.
 */
void auth_count_failure(auth_ctx_t *ctx, int failed_logins, int locked);

/* Tells the outbox relay that rows committed. */
void auth_outbox_kick(svc_t *svc);

/*
 * The JSON of an audit event (proto/schemas/audit-event.json); |actor_id|
 * NULL for an anonymous actor. Caller frees. |event_id| gets the UUIDv7.
 */
char *auth_audit_json(const auth_ctx_t *ctx, const char *action, const char *actor_id,
                      const char *actor_kind, const char *target_id, const char *result,
                      const char *reason, char *event_id);

/* The JSON of a notification request; |params| is a NULL-terminated name, value list. */
char *auth_notify_json(const char *kind, const char *account_id, const char *locale,
                       const char *const *params);

/* Lower-cases |in| into |out| and checks it is a plausible e-mail address. 1 when valid. */
int auth_email_normalise(const char *in, char *out, size_t cap);

/* Hex SHA-256 of |s| (65 bytes). */
void auth_sha256_hex(const char *s, char *out);

/* 422 with code and the violations as errors[] of |field|. */
void auth_respond_policy(h2s_req_t *req, const char *field, const pw_violations_t *v);

/*
 * The password peppers for pwhash_*: |*n| entries, [0] the current one (hash
 * with it: pass NULL when |*n| is 0); NULL and 0 when the secrets dir has no
 * auth_pepper_v1 (64 hex chars). Loaded on the first call. A pepper file that
 * is unreadable or malformed yields an unusable entry: hashing then fails
 * rather than silently dropping the pepper.
 */
const pwhash_pepper_t *auth_peppers(svc_t *svc, size_t *n);

/*
 * Issues the session of a login whose checks passed (ctx: account fields
 * loaded, new_hash set when rehashed): resets the failure counter, audits
 * auth.login.success with any rows already queued, stores the session with
 * factor |mfa| ("none", "totp", "sms") and answers 200. Used by /login and
 * /login/mfa.
 */
void auth_login_issue(auth_ctx_t *ctx, const char *mfa);

/*
 * Ends every session of the |n| accounts |ids| (copied), one account after
 * another; |cb| gets PHR_OK and the number ended, or the first kv error
 * (then called, not returned). Returns PHR_OK or PHR_ENOMEM (|cb| not called).
 */
int auth_revoke_accounts(svc_t *svc, const char (*ids)[37], size_t n, sess_count_cb cb, void *ud);

/* Handlers. */
void auth_register(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_verify_email(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_login(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_password_change(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_logout(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_sessions_list(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_session_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess);
void auth_sessions_revoke_others(svc_t *svc, h2s_req_t *req, const sess_t *sess);

#endif
