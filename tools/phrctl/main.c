/*
 * phrctl - the operator CLI.
 *
 *   phrctl operator create --email E [--name N] [--locale ja|en] [--json]
 *
 * Creates an operator account in the auth database (blocking libpq; the same
 * PHR_* environment as the auth service: PHR_PG_HOST, PHR_PG_PORT,
 * PHR_SECRETS_DIR with pg_auth.password and, when present, the password pepper
 * auth_pepper_v1 the service hashes with) with a random initial password that
 * meets the policy, must be changed at first login and is printed once on
 * stdout. An audit event goes to the outbox in the same transaction.
 * Exit codes: 0 created, 1 error, 2 usage, 3 the e-mail already exists.
 */
#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/auth/auth.h"
#include "backup.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "jsonx.h"
#include "phrctl_audit.h"
#include "../../services/auth/password.h"
#include "../../services/auth/pwhash.h"
#include "timeutil.h"
#include "uuid.h"

enum { PHRCTL_OK = 0, PHRCTL_ERROR = 1, PHRCTL_USAGE = 2, PHRCTL_EXISTS = 3 };

#define PHRCTL_INITIAL_PW_MS (72LL * 3600 * 1000)

static int
phrctl_usage(void)
{
    fprintf(stderr, "usage: phrctl operator create --email E [--name N] [--locale ja|en] "
                    "[--json]\n"
                    "       phrctl backup run|list|verify [--generation N] [--json]\n"
                    "       phrctl restore --generation N [--yes] [--json]\n"
                    "       phrctl audit verify [--from-seq N] [--to-seq M] [--json]\n"
                    "       phrctl org create|list|set-seats ... (phrctl org for help)\n"
                    "       phrctl status [--json]\n"
                    "       phrctl retention run --yes [--json]\n"
                    "       phrctl keys status|rotate|rekey|retire ... (phrctl keys for help)\n"
                    "       phrctl migrate auth|records|notification|audit [--json]\n");
    return PHRCTL_USAGE;
}

static int
phrctl_operator_create(const char *email_in, const char *name, const char *locale, int as_json)
{
    static const char insert_sql[] =
        "INSERT INTO accounts (id, email, name, locale, kind, password_hash, email_verified_at, "
        "must_change_password, password_expires_at) "
        "VALUES ($1, $2, $3, $4, 'operator', $5, now(), true, $6::timestamptz)";
    static const char outbox_sql[] = "INSERT INTO outbox (topic, idempotency_key, body) "
                                     "VALUES ('audit', $1, $2::jsonb)";
    char email[256], id[37], pw[32], hash[PWHASH_ENCODED_MAX], expires[TU_JST_LEN];
    char event_id[37];

    if (!auth_email_normalise(email_in, email, sizeof(email))) {
        fprintf(stderr, "phrctl: --email: not a valid e-mail address\n");
        return PHRCTL_USAGE;
    }
    size_t nlen = jx_utf8_valid(name, strlen(name)) ? jx_utf8_len(name) : 0;
    if (nlen < 1 || nlen > 100) {
        fprintf(stderr, "phrctl: --name: 1 to 100 characters of UTF-8\n");
        return PHRCTL_USAGE;
    }
    if (strcmp(locale, "ja") != 0 && strcmp(locale, "en") != 0) {
        fprintf(stderr, "phrctl: --locale: ja or en\n");
        return PHRCTL_USAGE;
    }
    pwhash_pepper_t pepper;
    cfg_t cfg;
    if (ctl_cfg(&cfg, "auth") != PHR_OK || ctl_pepper(&cfg, &pepper) != PHR_OK) {
        return PHRCTL_ERROR;
    }
    PGconn *conn = ctl_pg_connect(&cfg, "auth");
    if (conn == NULL) {
        explicit_bzero(&pepper, sizeof(pepper));
        return PHRCTL_ERROR;
    }
    int rc = PHR_EIO;
    if (uuid7(id) != PHR_OK || pw_generate(pw, sizeof(pw)) != PHR_OK ||
        pwhash_hash(pw, pepper.id[0] ? &pepper : NULL, hash, sizeof(hash)) != PHR_OK) {
        fprintf(stderr, "phrctl: could not generate the initial password\n");
        goto out;
    }
    tu_format_jst(tu_now_ms() + PHRCTL_INITIAL_PW_MS, expires, sizeof(expires));
    char *audit =
        ctl_audit_json("phrctl", "auth.operator.create", "account", id, NULL, NULL, event_id);
    if (audit == NULL) {
        goto out;
    }
    const char *p[] = {id, email, name, locale, hash, expires};
    const char *q[] = {event_id, audit};
    rc = ctl_exec(conn, "BEGIN", 0, NULL, NULL);
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, insert_sql, 6, p, NULL);
    }
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, outbox_sql, 2, q, NULL);
    }
    free(audit);
    if (rc == PHR_OK) {
        rc = ctl_exec(conn, "COMMIT", 0, NULL, NULL);
    } else {
        ctl_exec(conn, "ROLLBACK", 0, NULL, NULL);
    }
    if (rc == PHR_ECONFLICT) {
        fprintf(stderr, "phrctl: an account with this e-mail already exists\n");
    } else if (rc == PHR_OK) {
        if (as_json) {
            json_object *o = json_object_new_object();
            size_t len;
            json_object_object_add(o, "id", json_object_new_string(id));
            json_object_object_add(o, "email", json_object_new_string(email));
            json_object_object_add(o, "initial_password", json_object_new_string(pw));
            json_object_object_add(o, "must_change_password", json_object_new_boolean(1));
            json_object_object_add(o, "expires_at", json_object_new_string(expires));
            printf("%s\n", jx_to_string(o, &len));
            json_object_put(o);
        } else {
            printf("operator %s created (%s)\ninitial password: %s\n"
                   "change it at first login, before %s\n",
                   email, id, pw, expires);
        }
        fflush(stdout);
    }
out:
    explicit_bzero(&pepper, sizeof(pepper));
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(hash, sizeof(hash));
    PQfinish(conn);
    return rc == PHR_OK ? PHRCTL_OK : rc == PHR_ECONFLICT ? PHRCTL_EXISTS : PHRCTL_ERROR;
}

int
main(int argc, char **argv)
{
    const char *email = NULL, *name = "Operator", *locale = "ja";
    int as_json = 0;

    if (argc >= 3 && strcmp(argv[1], "backup") == 0) {
        return bk_backup_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "restore") == 0) {
        return bk_restore_main(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "org") == 0) {
        return ctl_org_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "status") == 0) {
        return ctl_status_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "retention") == 0) {
        return ctl_retention_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "keys") == 0) {
        return ctl_keys_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0) {
        return ctl_migrate_main(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "audit") == 0) {
        return phrctl_audit(argc - 2, argv + 2);
    }
    if (argc < 3 || strcmp(argv[1], "operator") != 0 || strcmp(argv[2], "create") != 0) {
        return phrctl_usage();
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--email") == 0) {
            email = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--name") == 0) {
            name = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--locale") == 0) {
            locale = argv[++i];
        } else {
            return phrctl_usage();
        }
    }
    if (email == NULL) {
        return phrctl_usage();
    }
    return phrctl_operator_create(email, name, locale, as_json);
}
