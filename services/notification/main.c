/*
 * phr-notification - e-mail through SendGrid and SMS through Twilio: submit (submit.c),
 * templates (template.c), delivery workers (deliver.c) over libcurl (provider.c).
 */
#include "deliver.h"
#include "err.h"
#include "kind.h"
#include "notify.h"
#include "svc.h"

extern const db_migration_t notification_migrations[];
extern const svc_routes_t notif_submit_routes;

static json_object *
notification_strings(const char *const *v)
{
    json_object *arr = json_object_new_array();

    for (; *v != NULL; v++) {
        json_object_array_add(arr, json_object_new_string(*v));
    }
    return arr;
}

static void
notification_kinds(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    static const char *const locales[] = {"ja", "en", NULL};
    json_object *items = json_object_new_array();
    json_object *o = json_object_new_object();

    for (size_t i = 0; i < kind_count; i++) {
        const kind_t *k = &kind_table[i];
        json_object *it = json_object_new_object();
        json_object *channels = json_object_new_array();
        if (k->channels & KIND_EMAIL) {
            json_object_array_add(channels, json_object_new_string("email"));
        }
        if (k->channels & KIND_SMS) {
            json_object_array_add(channels, json_object_new_string("sms"));
        }
        json_object_object_add(it, "kind", json_object_new_string(k->kind));
        json_object_object_add(it, "channels", channels);
        json_object_object_add(it, "locales", notification_strings(locales));
        json_object_object_add(it, "params", notification_strings(k->params));
        json_object_array_add(items, it);
    }
    json_object_object_add(o, "items", items);
    json_object_object_add(o, "next_cursor", NULL);
    h2s_respond_json(req, 200, o);
}

static const svc_route_t notification_routes[] = {
    {"GET", "/api/v1/notifications/kinds", notification_kinds, SVC_PUBLIC, 0},
};

static const svc_routes_t notification_route_set = SVC_ROUTES(notification_routes);
static const svc_routes_t *const notification_route_sets[] = {
    &notification_route_set, &notif_submit_routes,   &notif_webhook_routes,
    &notif_notice_routes,    &notif_incident_routes,
};

static int
notification_init(svc_t *svc)
{
    int rc = dlv_start(svc);

    return rc == PHR_OK ? notif_jobs_start(svc) : rc;
}

static void
notification_fini(svc_t *svc)
{
    notif_jobs_stop(svc);
    dlv_stop(svc);
}

int
main(int argc, char **argv)
{
    static const svc_def_t def = {
        .name = "notification",
        .migrations = notification_migrations,
        .route_sets = notification_route_sets,
        .nroute_sets = sizeof(notification_route_sets) / sizeof(notification_route_sets[0]),
        .init = notification_init,
        .fini = notification_fini,
    };
    return svc_main(&def, argc, argv);
}
