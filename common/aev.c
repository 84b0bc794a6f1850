/*
 * aev.c - audit event JSON (see aev.h).
 */
#include "aev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jsonx.h"
#include "svc.h"
#include "timeutil.h"
#include "uuid.h"

void
aev_init(aev_t *ev, const char *service, const char *action, h2s_req_t *req, const sess_t *sess)
{
    memset(ev, 0, sizeof(*ev));
    ev->service = service;
    ev->action = action;
    ev->result = "success";
    ev->actor_kind = req != NULL ? "anonymous" : "service";
    if (sess != NULL) {
        ev->actor_id = sess->account_id;
        ev->actor_kind = sess->kind;
        ev->actor_org_id = sess->org_id;
        ev->actor_role = sess->role;
        ev->session_id = sess->session_id;
    }
    if (req != NULL) {
        const char *ua = h2s_req_header(req, "user-agent");
        svc_client_ip(req, ev->ip, sizeof(ev->ip));
        snprintf(ev->user_agent, sizeof(ev->user_agent), "%s", ua != NULL ? ua : "");
        if (!jx_utf8_valid(ev->user_agent, strlen(ev->user_agent))) {
            ev->user_agent[0] = '\0';
        }
        ev->request_id = h2s_req_id(req);
    }
}

static json_object *
aev_str(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_object_new_string(s) : NULL;
}

char *
aev_json(aev_t *ev, char *event_id)
{
    char now[TU_JST_LEN];
    json_object *o, *actor, *target, *outcome, *source;
    char *out = NULL;

    if (uuid7(event_id) != PHR_OK) {
        json_object_put(ev->details);
        ev->details = NULL;
        return NULL;
    }
    tu_format_jst(tu_now_ms(), now, sizeof(now));
    o = json_object_new_object();
    actor = json_object_new_object();
    json_object_object_add(actor, "account_id", aev_str(ev->actor_id));
    json_object_object_add(actor, "kind", json_object_new_string(ev->actor_kind));
    json_object_object_add(actor, "org_id", aev_str(ev->actor_org_id));
    json_object_object_add(actor, "role", aev_str(ev->actor_role));
    json_object_object_add(actor, "session_id", aev_str(ev->session_id));
    json_object_object_add(actor, "ip", aev_str(ev->ip));
    json_object_object_add(actor, "user_agent", aev_str(ev->user_agent));
    target = json_object_new_object();
    json_object_object_add(target, "type", json_object_new_string(ev->target_type));
    json_object_object_add(target, "id", json_object_new_string(ev->target_id));
    json_object_object_add(target, "patient_id", aev_str(ev->patient_id));
    json_object_object_add(target, "org_id", aev_str(ev->target_org_id));
    outcome = json_object_new_object();
    json_object_object_add(outcome, "result", json_object_new_string(ev->result));
    json_object_object_add(outcome, "reason", aev_str(ev->reason));
    source = json_object_new_object();
    json_object_object_add(source, "service", json_object_new_string(ev->service));
    json_object_object_add(source, "request_id", aev_str(ev->request_id));
    json_object_object_add(o, "event_id", json_object_new_string(event_id));
    json_object_object_add(o, "occurred_at", json_object_new_string(now));
    json_object_object_add(o, "actor", actor);
    json_object_object_add(o, "action", json_object_new_string(ev->action));
    json_object_object_add(o, "target", target);
    json_object_object_add(o, "outcome", outcome);
    json_object_object_add(o, "source", source);
    if (ev->details != NULL) {
        json_object_object_add(o, "details", ev->details);
        ev->details = NULL;
    }
    size_t len;
    const char *txt = jx_to_string(o, &len);
    if (txt != NULL) {
        out = strdup(txt);
    }
    json_object_put(o);
    return out;
}
