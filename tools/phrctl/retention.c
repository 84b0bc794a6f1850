/*
 * retention.c - phrctl retention run --yes [--json]: asks the records service to
 * purge what the retention policy says is due now (POST
 * /internal/v1/retention/run over h2c, with the records service's credential:
 * phrctl has no service identity of its own). The service audits each purge
 * (records.patient.purge, actor kind service) and answers the counts.
 *
 * Destructive: refused without --yes. Exit codes: 0 done, 1 error (service
 * down, refused, failed), 2 usage, 6 no --yes.
 */
#include <stdio.h>
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

int
ctl_retention_main(int argc, char **argv)
{
    int as_json = 0, yes = 0, status = 0;
    char body[4096];
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
    int rc = ctl_http(&cfg, CFG_SVC_RECORDS, "POST", "/internal/v1/retention/run", "records", "{}",
                      CTL_RETENTION_TIMEOUT_MS, &status, body, sizeof(body));
    if (rc != PHR_OK) {
        fprintf(stderr, "phrctl: records service at %s:%d: %s\n", cfg.host[CFG_SVC_RECORDS],
                cfg.port[CFG_SVC_RECORDS], body);
        return CTL_EXIT_ERROR;
    }
    json_object *o = json_tokener_parse(body);
    if (status != 200 || o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object *d = NULL;
        const char *detail = o != NULL && json_object_is_type(o, json_type_object) &&
                                     json_object_object_get_ex(o, "detail", &d)
                                 ? json_object_get_string(d)
                                 : "unexpected answer";
        fprintf(stderr, "phrctl: retention run failed: HTTP %d: %s\n", status, detail);
        json_object_put(o);
        return CTL_EXIT_ERROR;
    }
    if (as_json) {
        ctl_print_json(o);
    } else {
        printf("retention run: %lld patients purged (%lld records), %lld invitations purged\n",
               ctl_retention_count(o, "patients_purged"), ctl_retention_count(o, "records_purged"),
               ctl_retention_count(o, "invitations_purged"));
        fflush(stdout);
    }
    json_object_put(o);
    return CTL_EXIT_OK;
}
