/*
 * phr-records - patients' health records and their sharing with clinics.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "purge.h"
#include "records.h"

extern const db_migration_t records_migrations[];

static const char *const records_kind_names[] = {"number", "integer", "text", "boolean", "enum"};

static json_object *
records_field_json(const rectype_field_t *f)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "name", json_object_new_string(f->name));
    json_object_object_add(o, "kind", json_object_new_string(records_kind_names[f->kind]));
    json_object_object_add(o, "required", json_object_new_boolean(f->required));
    if (f->kind == RF_NUMBER || f->kind == RF_INTEGER) {
        json_object_object_add(o, "min", json_object_new_double(f->min));
        json_object_object_add(o, "max", json_object_new_double(f->max));
    }
    if (f->kind == RF_TEXT) {
        json_object_object_add(o, "max_length", json_object_new_int((int)f->max_len));
    }
    if (f->unit != NULL) {
        json_object_object_add(o, "unit", json_object_new_string(f->unit));
    }
    if (f->loinc != NULL) {
        json_object_object_add(o, "loinc", json_object_new_string(f->loinc));
    }
    if (f->enum_vals != NULL) {
        json_object *vals = json_object_new_array();
        for (const char *const *v = f->enum_vals; *v != NULL; v++) {
            json_object_array_add(vals, json_object_new_string(*v));
        }
        json_object_object_add(o, "enum", vals);
    }
    return o;
}

static void
records_types(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    json_object *items = json_object_new_array();
    json_object *o = json_object_new_object();

    for (size_t i = 0; i < rectype_count; i++) {
        const rectype_t *t = &rectype_table[i];
        json_object *it = json_object_new_object();
        json_object *fields = json_object_new_array();
        json_object_object_add(it, "type", json_object_new_string(t->type));
        json_object_object_add(it, "loinc", t->loinc ? json_object_new_string(t->loinc) : NULL);
        if (t->alt_loinc != NULL) {
            json_object *alt = json_object_new_array();
            for (const char *const *a = t->alt_loinc; *a != NULL; a++) {
                json_object_array_add(alt, json_object_new_string(*a));
            }
            json_object_object_add(it, "alt_loinc", alt);
        }
        json_object_object_add(it, "unit", t->unit ? json_object_new_string(t->unit) : NULL);
        json_object_object_add(it, "one_per_day", json_object_new_boolean(t->one_per_day));
        for (size_t j = 0; j < t->nfields; j++) {
            json_object_array_add(fields, records_field_json(&t->fields[j]));
        }
        json_object_object_add(it, "fields", fields);
        json_object_array_add(items, it);
    }
    json_object_object_add(o, "items", items);
    json_object_object_add(o, "next_cursor", NULL);
    h2s_respond_json(req, 200, o);
}

static const svc_route_t records_routes[] = {
    {"GET", "/api/v1/records/types", records_types, SVC_PUBLIC, 0},
};

static const svc_routes_t records_route_set = SVC_ROUTES(records_routes);
static const svc_routes_t *const records_route_sets[] = {
    &records_route_set, &rec_record_routes, &rec_summary_routes, &rec_share_routes,
    &rec_group_routes,  &rec_export_routes, &rec_purge_routes,   &rec_patient_routes,
};

static rec_ctx_t records_ctx;
static struct event *records_sighup;

/* SIGHUP: loads data keys added since (phrctl keys rotate); the newest seals from now on. */
static void
records_on_sighup(evutil_socket_t sig, short what, void *ud)
{
    svc_t *svc = ud;
    int before = rcrypt_current(records_ctx.crypt);
    int rc = rcrypt_load(records_ctx.crypt, svc_cfg(svc));

    if (rc != PHR_OK) {
        log_error("records: SIGHUP: data keys could not be reloaded: %s (still sealing with "
                  "version %d)",
                  phr_err_str(rc), rcrypt_current(records_ctx.crypt));
        return;
    }
    log_info("records: SIGHUP: data keys reloaded, sealing with version %d (was %d)",
             rcrypt_current(records_ctx.crypt), before);
}

/* Loads the data keys: without one the service cannot store a record, so it does not start. */
static int
records_init(svc_t *svc)
{
    records_ctx.crypt = rcrypt_create();
    if (records_ctx.crypt == NULL) {
        return PHR_ENOMEM;
    }
    int rc = rcrypt_load(records_ctx.crypt, svc_cfg(svc));
    if (rc != PHR_OK) {
        log_error("records: data keys (data_key_v<N>) could not be loaded: %s", phr_err_str(rc));
        rcrypt_free(records_ctx.crypt);
        records_ctx.crypt = NULL;
        return rc;
    }
    log_info("records: data keys loaded, sealing with version %d",
             rcrypt_current(records_ctx.crypt));
    records_ctx.gets = rgb_create(svc_db(svc), svc_cfg(svc));
    records_ctx.creates = rec_creates_create(svc_db(svc), svc_cfg(svc));
    records_ctx.tok = json_tokener_new();
    if (records_ctx.gets == NULL || records_ctx.creates == NULL || records_ctx.tok == NULL) {
        return PHR_ENOMEM;
    }
    svc_set_data(svc, &records_ctx);
    records_sighup = evsignal_new(svc_base(svc), SIGHUP, records_on_sighup, svc);
    if (records_sighup == NULL || evsignal_add(records_sighup, NULL) != 0) {
        return PHR_ENOMEM;
    }
    return rec_purge_start(svc);
}

static void
records_fini(svc_t *svc)
{
    rec_purge_stop();
    if (records_sighup != NULL) {
        event_free(records_sighup);
        records_sighup = NULL;
    }
    svc_set_data(svc, NULL);
    rgb_free(records_ctx.gets);
    records_ctx.gets = NULL;
    rib_free(records_ctx.creates);
    records_ctx.creates = NULL;
    json_tokener_free(records_ctx.tok);
    records_ctx.tok = NULL;
    rcrypt_free(records_ctx.crypt);
    records_ctx.crypt = NULL;
}

int
main(int argc, char **argv)
{
    static const svc_def_t def = {
        .name = "records",
        .migrations = records_migrations,
        .route_sets = records_route_sets,
        .nroute_sets = sizeof(records_route_sets) / sizeof(records_route_sets[0]),
        .init = records_init,
        .fini = records_fini,
    };
    return svc_main(&def, argc, argv);
}
