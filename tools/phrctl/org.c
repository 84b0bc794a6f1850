/*
 * org.c - phrctl org create|list|set-seats, straight on the auth database
 * with the SQL of the operator routes (services/auth/org.c):
 *
 *   org create --name N --seats K --admin-email E [--admin-name N]
 *              [--admin-locale ja|en] [--require-mfa] [--json]
 *       the organization and its first admin (staff, role admin, a random
 *       initial password that must be changed within 72 hours) in one
 *       transaction with the admin's staff_onboarding e-mail (outbox topic
 *       notification, key onboard:<account id>, the same JSON as POST
 *       /api/v1/admin/orgs) and the audit events auth.org.create and
 *       auth.staff.create. The password is only in the e-mail.
 *   org list [--json]
 *   org set-seats ORG_ID K [--json]
 *       with the organization row locked; refused below the seats in use.
 *       Audited (auth.org.update).
 *
 * Exit codes: 0 ok, 1 error, 2 usage, 3 e-mail in use / seats below usage,
 * 4 no such organization.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/auth/auth.h"
#include "../../services/auth/password.h"
#include "ctl.h"
#include "err.h"
#include "jsonx.h"
#include "timeutil.h"
#include "uuid.h"

#define CTL_ORG_INITIAL_PW_MS (72LL * 3600 * 1000)
#define CTL_ORG_SEATS_MAX 100000

/* Columns of an Org (alias o), as the API answers it. */
#define CTL_ORG_COLS                                                                               \
    "o.id, o.name, o.seat_limit, (SELECT count(*) FROM accounts a WHERE a.org_id = o.id "          \
    "AND a.kind = 'staff' AND a.status = 'active'), o.require_mfa, o.status, "                     \
    "(extract(epoch FROM o.created_at) * 1000)::bigint"

typedef struct {
    const char *name, *seats, *email, *admin_name, *locale;
    int require_mfa, as_json;
} ctl_org_args_t;

static int
ctl_org_usage(void)
{
    fprintf(stderr, "usage: phrctl org create --name N --seats K --admin-email E "
                    "[--admin-name N] [--admin-locale ja|en] [--require-mfa] [--json]\n"
                    "       phrctl org list [--json]\n"
                    "       phrctl org set-seats ORG_ID K [--json]\n");
    return CTL_EXIT_USAGE;
}

/* Parses a seat limit (1..100000) into |out| (decimal text). 0 ok, -1 bad. */
static int
ctl_org_seats(const char *s, char out[16])
{
    char *end = NULL;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] < '0' || s[0] > '9' || v < 1 ||
        v > CTL_ORG_SEATS_MAX) {
        return -1;
    }
    snprintf(out, 16, "%ld", v);
    return 0;
}

/* 1..100 characters of UTF-8 without control characters. */
static int
ctl_org_text_ok(const char *s)
{
    size_t len = strlen(s);

    if (!jx_utf8_valid(s, len)) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    size_t n = jx_utf8_len(s);
    return n >= 1 && n <= 100;
}

static int
ctl_org_id_ok(const char *id)
{
    return strlen(id) == 36 && uuid_valid(id) && strspn(id, "0123456789abcdef-") == 36;
}

/* Row |i| of CTL_ORG_COLS as an Org. */
static json_object *
ctl_org_row(PGresult *res, int i)
{
    char at[TU_JST_LEN];
    json_object *o = json_object_new_object();

    tu_format_jst(strtoll(PQgetvalue(res, i, 6), NULL, 10), at, sizeof(at));
    json_object_object_add(o, "id", json_object_new_string(PQgetvalue(res, i, 0)));
    json_object_object_add(o, "name", json_object_new_string(PQgetvalue(res, i, 1)));
    json_object_object_add(o, "seat_limit",
                           json_object_new_int64(strtoll(PQgetvalue(res, i, 2), NULL, 10)));
    json_object_object_add(o, "seats_used",
                           json_object_new_int64(strtoll(PQgetvalue(res, i, 3), NULL, 10)));
    json_object_object_add(o, "require_mfa",
                           json_object_new_boolean(PQgetvalue(res, i, 4)[0] == 't'));
    json_object_object_add(o, "status", json_object_new_string(PQgetvalue(res, i, 5)));
    json_object_object_add(o, "created_at", json_object_new_string(at));
    return o;
}

static void
ctl_org_print_row(json_object *o)
{
    json_object *v;
    const char *f[] = {"id",          "name",   "seats_used", "seat_limit",
                       "require_mfa", "status", "created_at"};
    const char *s[7];

    for (int i = 0; i < 7; i++) {
        s[i] = json_object_object_get_ex(o, f[i], &v) ? json_object_get_string(v) : "";
    }
    printf("%s  %s/%s seats  mfa=%s  %s  %s  %s\n", s[0], s[2], s[3], s[4], s[5], s[6], s[1]);
}

/* Queues |json| (taken) in the outbox under |topic| and |key|. */
static int
ctl_org_outbox(PGconn *conn, const char *topic, const char *key, char *json)
{
    static const char sql[] = "INSERT INTO outbox (topic, idempotency_key, body) "
                              "VALUES ($1, $2, $3::jsonb) ON CONFLICT (idempotency_key) DO NOTHING";
    if (json == NULL) {
        return PHR_ENOMEM;
    }
    const char *p[] = {topic, key, json};
    int rc = ctl_exec(conn, sql, 3, p, NULL);
    free(json);
    return rc;
}

/* The transaction of org create; *row gets the Org. PHR_OK or an error. */
static int
ctl_org_create_txn(PGconn *conn, const cfg_t *cfg, const ctl_org_args_t *a, const char *org_id,
                   const char *account_id, const char *email, const char *hash,
                   const char *initial_pw, const char *expires, json_object **row)
{
    static const char org_sql[] = "INSERT INTO organizations AS o (id, name, seat_limit, "
                                  "require_mfa) VALUES ($1, $2, $3::int, $4::bool) "
                                  "RETURNING " CTL_ORG_COLS;
    static const char staff_sql[] =
        "INSERT INTO accounts (id, email, name, locale, kind, org_id, role, password_hash, "
        "must_change_password, password_expires_at) "
        "VALUES ($1, $2, $3, $4, 'staff', $5, 'admin', $6, true, $7::timestamptz)";
    char login_url[300], key[80], event_id[37];
    PGresult *res = NULL;

    const char *p1[] = {org_id, a->name, a->seats, a->require_mfa ? "true" : "false"};
    int rc = ctl_exec(conn, org_sql, 4, p1, &res);
    if (rc != PHR_OK) {
        return rc;
    }
    *row = ctl_org_row(res, 0);
    PQclear(res);
    const char *p2[] = {account_id, email, a->admin_name, a->locale, org_id, hash, expires};
    if ((rc = ctl_exec(conn, staff_sql, 7, p2, NULL)) != PHR_OK) {
        return rc;
    }
    snprintf(login_url, sizeof(login_url), "%s/login", cfg->public_base_url);
    const char *params[] = {"name",    a->admin_name,      "org_name", a->name,      "login_url",
                            login_url, "initial_password", initial_pw, "expires_at", expires,
                            NULL};
    snprintf(key, sizeof(key), "onboard:%s", account_id);
    char *mail = auth_notify_json("staff_onboarding", account_id, a->locale, params);
    rc = ctl_org_outbox(conn, "notification", key, mail);
    if (rc == PHR_OK) {
        char *ev = ctl_audit_json("auth", "auth.org.create", "org", org_id, org_id, NULL, event_id);
        rc = ctl_org_outbox(conn, "audit", event_id, ev);
    }
    if (rc == PHR_OK) {
        char *ev = ctl_audit_json("auth", "auth.staff.create", "account", account_id, org_id, NULL,
                                  event_id);
        rc = ctl_org_outbox(conn, "audit", event_id, ev);
    }
    return rc;
}

static int
ctl_org_create(const ctl_org_args_t *a)
{
    char email[256], org_id[37], account_id[37], pw[32], hash[PWHASH_ENCODED_MAX];
    char expires[TU_JST_LEN];
    pwhash_pepper_t pepper;
    json_object *row = NULL;
    cfg_t cfg;

    if (ctl_cfg(&cfg, "auth") != PHR_OK || ctl_pepper(&cfg, &pepper) != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    PGconn *conn = ctl_pg_connect(&cfg, "auth");
    if (conn == NULL) {
        explicit_bzero(&pepper, sizeof(pepper));
        return CTL_EXIT_ERROR;
    }
    int rc = PHR_EGENERIC;
    if (!auth_email_normalise(a->email, email, sizeof(email)) || uuid7(org_id) != PHR_OK ||
        uuid7(account_id) != PHR_OK || pw_generate(pw, sizeof(pw)) != PHR_OK ||
        strlen(pw) < pw_min_length("staff", 0, 0) ||
        pwhash_hash(pw, pepper.id[0] ? &pepper : NULL, hash, sizeof(hash)) != PHR_OK) {
        fprintf(stderr, "phrctl: could not generate the initial password\n");
        goto out;
    }
    tu_format_jst(tu_now_ms() + CTL_ORG_INITIAL_PW_MS, expires, sizeof(expires));
    rc = ctl_exec(conn, "BEGIN", 0, NULL, NULL);
    if (rc == PHR_OK) {
        rc = ctl_org_create_txn(conn, &cfg, a, org_id, account_id, email, hash, pw, expires, &row);
    }
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, "COMMIT", 0, NULL, NULL);
    } else {
        ctl_exec(conn, "ROLLBACK", 0, NULL, NULL);
    }
out:
    explicit_bzero(&pepper, sizeof(pepper));
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(hash, sizeof(hash));
    PQfinish(conn);
    if (rc == PHR_ECONFLICT) {
        fprintf(stderr, "phrctl: an account with this e-mail already exists\n");
        json_object_put(row);
        return CTL_EXIT_CONFLICT;
    }
    if (rc != PHR_OK || row == NULL) {
        json_object_put(row);
        return CTL_EXIT_ERROR;
    }
    json_object_object_add(row, "seats_used", json_object_new_int(1));
    json_object_object_add(row, "admin_account_id", json_object_new_string(account_id));
    json_object_object_add(row, "admin_email", json_object_new_string(email));
    json_object_object_add(row, "password_expires_at", json_object_new_string(expires));
    if (a->as_json) {
        ctl_print_json(row);
    } else {
        printf("organization %s created: %s (%s seats)\n"
               "admin %s (%s): the onboarding e-mail with the initial password is queued;\n"
               "it must be changed at first login, before %s\n",
               org_id, a->name, a->seats, email, account_id, expires);
    }
    json_object_put(row);
    return CTL_EXIT_OK;
}

static int
ctl_org_list(int as_json)
{
    static const char sql[] = "SELECT " CTL_ORG_COLS " FROM organizations o ORDER BY o.id DESC";
    PGresult *res = NULL;
    cfg_t cfg;

    if (ctl_cfg(&cfg, "auth") != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    PGconn *conn = ctl_pg_connect(&cfg, "auth");
    if (conn == NULL) {
        return CTL_EXIT_ERROR;
    }
    int rc = ctl_exec(conn, sql, 0, NULL, &res);
    PQfinish(conn);
    if (rc != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    json_object *items = json_object_new_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_object_array_add(items, ctl_org_row(res, i));
    }
    PQclear(res);
    if (as_json) {
        ctl_print_json(items);
    } else {
        size_t n = json_object_array_length(items);
        for (size_t i = 0; i < n; i++) {
            ctl_org_print_row(json_object_array_get_idx(items, i));
        }
        printf("%zu organization%s\n", n, n == 1 ? "" : "s");
    }
    json_object_put(items);
    return CTL_EXIT_OK;
}

/* The transaction of set-seats; *exit_code set on a refusal. */
static int
ctl_org_seats_txn(PGconn *conn, const char *org_id, const char *seats, json_object **row,
                  int *exit_code)
{
    static const char lock_sql[] = "SELECT seat_limit, (SELECT count(*) FROM accounts WHERE "
                                   "org_id = $1 AND kind = 'staff' AND status = 'active') "
                                   "FROM organizations WHERE id = $1 FOR UPDATE";
    static const char upd_sql[] = "UPDATE organizations AS o SET seat_limit = $2::int, "
                                  "updated_at = now() WHERE id = $1 RETURNING " CTL_ORG_COLS;
    PGresult *res = NULL;
    char event_id[37];
    const char *p[] = {org_id, seats};

    int rc = ctl_exec(conn, lock_sql, 1, p, &res);
    if (rc != PHR_OK) {
        return rc;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        fprintf(stderr, "phrctl: no such organization: %s\n", org_id);
        *exit_code = CTL_EXIT_NOTFOUND;
        return PHR_ENOTFOUND;
    }
    long old = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    long used = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (strtol(seats, NULL, 10) < used) {
        fprintf(stderr, "phrctl: %ld seats are in use: the limit cannot go below that\n", used);
        *exit_code = CTL_EXIT_CONFLICT;
        return PHR_ECONFLICT;
    }
    if ((rc = ctl_exec(conn, upd_sql, 2, p, &res)) != PHR_OK) {
        return rc;
    }
    *row = ctl_org_row(res, 0);
    PQclear(res);
    json_object *d = json_object_new_object();
    json_object_object_add(d, "seat_limit", json_object_new_int64(strtoll(seats, NULL, 10)));
    json_object_object_add(d, "previous_seat_limit", json_object_new_int64(old));
    char *ev = ctl_audit_json("auth", "auth.org.update", "org", org_id, org_id, d, event_id);
    return ctl_org_outbox(conn, "audit", event_id, ev);
}

static int
ctl_org_set_seats(const char *org_id, const char *seats, int as_json)
{
    json_object *row = NULL;
    int code = CTL_EXIT_ERROR;
    cfg_t cfg;

    if (ctl_cfg(&cfg, "auth") != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    PGconn *conn = ctl_pg_connect(&cfg, "auth");
    if (conn == NULL) {
        return CTL_EXIT_ERROR;
    }
    int rc = ctl_exec(conn, "BEGIN", 0, NULL, NULL);
    if (rc == PHR_OK) {
        rc = ctl_org_seats_txn(conn, org_id, seats, &row, &code);
    }
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, "COMMIT", 0, NULL, NULL);
    } else {
        ctl_exec(conn, "ROLLBACK", 0, NULL, NULL);
    }
    PQfinish(conn);
    if (rc != PHR_OK || row == NULL) {
        json_object_put(row);
        return code;
    }
    if (as_json) {
        ctl_print_json(row);
    } else {
        ctl_org_print_row(row);
    }
    json_object_put(row);
    return CTL_EXIT_OK;
}

int
ctl_org_main(int argc, char **argv)
{
    ctl_org_args_t a = {.locale = "ja"};
    const char *pos[2] = {NULL, NULL};
    char seats[16], local[128];
    int npos = 0;

    if (argc < 1) {
        return ctl_org_usage();
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (strcmp(o, "--json") == 0) {
            a.as_json = 1;
        } else if (strcmp(o, "--require-mfa") == 0) {
            a.require_mfa = 1;
        } else if (has && strcmp(o, "--name") == 0) {
            a.name = argv[++i];
        } else if (has && strcmp(o, "--seats") == 0) {
            a.seats = argv[++i];
        } else if (has && strcmp(o, "--admin-email") == 0) {
            a.email = argv[++i];
        } else if (has && strcmp(o, "--admin-name") == 0) {
            a.admin_name = argv[++i];
        } else if (has && strcmp(o, "--admin-locale") == 0) {
            a.locale = argv[++i];
        } else if (o[0] != '-' && npos < 2) {
            pos[npos++] = o;
        } else {
            return ctl_org_usage();
        }
    }
    if (strcmp(argv[0], "list") == 0) {
        return npos == 0 && !a.name && !a.seats && !a.email && !a.require_mfa
                   ? ctl_org_list(a.as_json)
                   : ctl_org_usage();
    }
    if (strcmp(argv[0], "set-seats") == 0) {
        if (npos != 2 || a.name || a.seats || a.email || a.require_mfa) {
            return ctl_org_usage();
        }
        if (!ctl_org_id_ok(pos[0])) {
            fprintf(stderr, "phrctl: ORG_ID: not an organization id (a lower-case UUID)\n");
            return CTL_EXIT_USAGE;
        }
        if (ctl_org_seats(pos[1], seats) != 0) {
            fprintf(stderr, "phrctl: K: an integer from 1 to %d\n", CTL_ORG_SEATS_MAX);
            return CTL_EXIT_USAGE;
        }
        return ctl_org_set_seats(pos[0], seats, a.as_json);
    }
    if (strcmp(argv[0], "create") != 0 || npos != 0 || !a.name || !a.seats || !a.email) {
        return ctl_org_usage();
    }
    if (!ctl_org_text_ok(a.name)) {
        fprintf(stderr, "phrctl: --name: 1 to 100 characters of UTF-8\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl_org_seats(a.seats, seats) != 0) {
        fprintf(stderr, "phrctl: --seats: an integer from 1 to %d\n", CTL_ORG_SEATS_MAX);
        return CTL_EXIT_USAGE;
    }
    a.seats = seats;
    char email[256];
    if (!auth_email_normalise(a.email, email, sizeof(email))) {
        fprintf(stderr, "phrctl: --admin-email: not a valid e-mail address\n");
        return CTL_EXIT_USAGE;
    }
    if (a.admin_name == NULL) { /* the e-mail's local part */
        snprintf(local, sizeof(local), "%.*s", (int)strcspn(email, "@"), email);
        a.admin_name = local;
    }
    if (!ctl_org_text_ok(a.admin_name)) {
        fprintf(stderr, "phrctl: --admin-name: 1 to 100 characters of UTF-8\n");
        return CTL_EXIT_USAGE;
    }
    if (strcmp(a.locale, "ja") != 0 && strcmp(a.locale, "en") != 0) {
        fprintf(stderr, "phrctl: --admin-locale: ja or en\n");
        return CTL_EXIT_USAGE;
    }
    return ctl_org_create(&a);
}
