/*
 * phr-audit - the tamper-evident record of who did what to whose data.
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "err.h"
#include "log.h"
#include "svc.h"

extern const db_migration_t audit_migrations[];

static audit_t audit_state;

static int
audit_init(svc_t *svc)
{
    audit_t *a = &audit_state;
    int rc;

    a->svc = svc;
    svc_set_data(svc, a);
    if ((rc = audit_keys_load(a)) != PHR_OK) {
        return rc;
    }
    if ((a->writer = audit_writer_create(a)) == NULL) {
        return PHR_ENOMEM;
    }
    if ((rc = audit_review_start(svc)) != PHR_OK) {
        return rc;
    }
    return audit_maint_start(a);
}

static void
audit_fini(svc_t *svc)
{
    audit_t *a = audit_get(svc);

    if (a == NULL) {
        return;
    }
    audit_review_stop();
    audit_maint_stop(a);
    audit_writer_free(a->writer);
    a->writer = NULL;
    EVP_PKEY_free(a->sign_key);
    EVP_PKEY_free(a->pub_key);
    a->sign_key = a->pub_key = NULL;
}

static void
audit_public_key(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    audit_t *a = audit_get(svc);
    json_object *o = json_object_new_object();

    (void)sess;
    json_object_object_add(o, "algorithm", json_object_new_string("Ed25519"));
    json_object_object_add(o, "key_id", json_object_new_string(a->key_id));
    json_object_object_add(o, "public_key_pem", json_object_new_string(a->pub_pem));
    h2s_respond_json(req, 200, o);
}

static const svc_route_t audit_routes[] = {
    {"GET", "/api/v1/audit/public-key", audit_public_key, SVC_PUBLIC, 0},
};

static const svc_routes_t audit_route_set = SVC_ROUTES(audit_routes);
static const svc_routes_t *const audit_route_sets[] = {
    &audit_route_set,    &audit_ingest_routes, &audit_verify_routes,
    &audit_query_routes, &audit_review_routes, &audit_archive_routes,
};

int
main(int argc, char **argv)
{
    static const svc_def_t def = {
        .name = "audit",
        .migrations = audit_migrations,
        .route_sets = audit_route_sets,
        .nroute_sets = sizeof(audit_route_sets) / sizeof(audit_route_sets[0]),
        .init = audit_init,
        .fini = audit_fini,
    };
    return svc_main(&def, argc, argv);
}
