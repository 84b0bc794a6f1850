/*
 * retention.c - phrctl retention run --yes [--json]: asks the records service to
 * purge what the retention policy says is due now, then the auth service to
 * anonymise the withdrawn accounts that are due and wipe the secrets of
 * delivered e-mails (POST /internal/v1/retention/run, /internal/v1/hygiene/run
 * over h2c, with that service's own credential: phrctl has no service
 * identity of its own).
 * The services audit each purge (records.patient.purge, auth.account.purge,
 * actor kind service) and answer the counts, printed together. Last, the
 * audit service archives, verifies and drops its expired monthly partitions
 * (POST /internal/v1/retention/archive; its answer under "audit").
 *
 * Destructive: refused without --yes. Exit codes: 0 done, 1 error (service
 * down, refused, failed), 2 usage, 6 no --yes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "err.h"

#define CTL_RETENTION_TIMEOUT_MS (10 * 60 * 1000)

static int
ctl_retention_usage(void)
{
    fprintf(stderr, "usage: phrctl retention run --yes [--json]\n");
    return CTL_EXIT_USAGE;
}

static long long
ctl_retention_count(json_object *o, const char *key)
{
    json_object *v = NULL;

    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

/* POST |path| to service |idx| as |name|; its answer into |out|. */
static int
ctl_retention_call(const cfg_t *cfg, int idx, const char *name, const char *path, json_object **out)
{
    enum { CTL_RETENTION_ANSWER_MAX = 1 << 20 }; /* audit lists every partition it handled */
    char *body = malloc(CTL_RETENTION_ANSWER_MAX);
    int status = 0;

    if (body == NULL) {
        return PHR_ENOMEM;
    }
    int rc = ctl_http(cfg, idx, "POST", path, name, "{}", CTL_RETENTION_TIMEOUT_MS, &status, body,
                      CTL_RETENTION_ANSWER_MAX);
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: %s service at %s:%d: %s\n", name, cfg->host[idx], cfg->port[idx],
                body);
        free(body);
        return PHR_EUNAVAIL;
    }
    json_object *o = json_tokener_parse(body);
    free(body);
    if (status != 200 || o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object *d = NULL;
        const char *detail = o != NULL && json_object_is_type(o, json_type_object) &&
                                     json_object_object_get_ex(o, "detail", &d)
                                 ? json_object_get_string(d)
                                 : "unexpected answer";
        fprintf(stderr, "phrctl: retention run failed at %s: HTTP %d: %s\n", name, status, detail);
        json_object_put(o);
        return PHR_EGENERIC;
    }
    *out = o;
    return PHR_OK;
}

int
ctl_retention_main(int argc, char **argv)
{
    int as_json = 0, yes = 0;
    cfg_t cfg;

    if (argc < 1 || strcmp(argv[0], "run") != 0) {
        return ctl_retention_usage();
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--yes") == 0) {
            yes = 1;
        } else {
            return ctl_retention_usage();
        }
    }
    if (!yes) {
        fprintf(stderr, "phrctl: retention run deletes data for good: add --yes\n");
        return CTL_EXIT_REFUSED;
    }
    if (ctl_cfg(&cfg, "records") != PHR_OK) {
        return CTL_EXIT_ERROR;
    }
    json_object *o = NULL, *a = NULL, *au = NULL;
    if (ctl_retention_call(&cfg, CFG_SVC_RECORDS, "records", "/internal/v1/retention/run", &o) !=
            PHR_OK ||
        ctl_retention_call(&cfg, CFG_SVC_AUTH, "auth", "/internal/v1/hygiene/run", &a) != PHR_OK ||
        ctl_retention_call(&cfg, CFG_SVC_AUDIT, "audit", "/internal/v1/retention/archive", &au) !=
            PHR_OK) {
        json_object_put(o);
        json_object_put(a);
        return CTL_EXIT_ERROR;
    }
    json_object_object_add(o, "audit", au); /* {retention_days, partitions, dropped} */
    json_object_object_foreach(a, key, val)
    {
        json_object_object_add(o, key, json_object_get(val));
    }
    json_object_put(a);
    if (as_json) {
        ctl_print_json(o);
    } else {
        printf("retention run: %lld patients purged (%lld records), %lld invitations purged\n",
               ctl_retention_count(o, "patients_purged"), ctl_retention_count(o, "records_purged"),
               ctl_retention_count(o, "invitations_purged"));
        printf("retention run: %lld withdrawn accounts anonymised, secrets of %lld sent "
               "notifications wiped\n",
               ctl_retention_count(o, "accounts_purged"),
               ctl_retention_count(o, "notifications_wiped"));
        json_object *parts = NULL, *dropped = NULL;
        json_object_object_get_ex(au, "partitions", &parts);
        json_object_object_get_ex(au, "dropped", &dropped);
        printf("retention run: audit: %zu expired partition(s) handled, %zu dropped after a "
               "verified export\n",
               parts != NULL ? json_object_array_length(parts) : 0,
               dropped != NULL ? json_object_array_length(dropped) : 0);
        fflush(stdout);
    }
    json_object_put(o);
    return CTL_EXIT_OK;
}
