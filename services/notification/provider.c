/*
 * provider.c - SendGrid and Twilio over libcurl multi on libevent (see provider.h).
 */
#include "provider.h"

#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "jsonx.h"
#include "log.h"

#define PROV_BODY_MAX ((size_t)64 * 1024)
#define PROV_KEY_MAX 512

typedef struct prov_xfer prov_xfer_t;

struct prov {
    struct event_base *base;
    const cfg_t *cfg;
    CURLM *multi;
    struct event *timer;
    prov_xfer_t *xfers; /* in flight, doubly linked */
    size_t n;
    char sendgrid_key[PROV_KEY_MAX];
    char twilio_token[PROV_KEY_MAX];
};

struct prov_xfer {
    prov_t *p;
    prov_xfer_t *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *post;
    char *auth; /* "Authorization: Bearer ..." (wiped) */
    char channel[8];
    int lookup;   /* prov_lookup: a GET whose answer is matched against |m| */
    long since_s; /* prov_lookup: the attempt's start */
    prov_msg_t m; /* prov_lookup: id, channel, to, body (pointing at the copies below) */
    char *m_id, *m_to, *m_body; /* prov_lookup: owned copies (body wiped) */
    prov_cb cb;
    void *ud;
    char *resp;
    size_t resp_len;
    prov_result_t res;
};

/* One event per socket curl watches. */
typedef struct {
    prov_t *p;
    curl_socket_t fd;
    struct event *ev;
} prov_sock_t;

static void prov_check_done(prov_t *p);

static void
prov_xfer_free(prov_xfer_t *x)
{
    if (x->easy != NULL) {
        curl_multi_remove_handle(x->p->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    if (x->post != NULL) {
        explicit_bzero(x->post, strlen(x->post));
        free(x->post);
    }
    if (x->auth != NULL) {
        explicit_bzero(x->auth, strlen(x->auth));
        free(x->auth);
    }
    free(x->resp);
    free(x->m_id);
    free(x->m_to);
    if (x->m_body != NULL) {
        explicit_bzero(x->m_body, strlen(x->m_body));
        free(x->m_body);
    }
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else if (x->p->xfers == x) {
        x->p->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    x->p->n--;
    free(x);
}

/* ---- libevent <-> curl glue ---- */

static void
prov_on_event(evutil_socket_t fd, short what, void *arg)
{
    prov_t *p = arg;
    int running = 0;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(p->multi, fd, action, &running);
    prov_check_done(p);
}

static void
prov_on_timer(evutil_socket_t fd, short what, void *arg)
{
    prov_t *p = arg;
    int running = 0;

    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    prov_check_done(p);
}

static int
prov_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    prov_t *p = userp;

    if (timeout_ms < 0) {
        evtimer_del(p->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (suseconds_t)((timeout_ms % 1000) * 1000)};
    evtimer_add(p->timer, &tv);
    return 0;
}

static int
prov_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    prov_t *p = userp;
    prov_sock_t *ps = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (ps != NULL) {
            event_free(ps->ev);
            free(ps);
            curl_multi_assign(p->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (ps == NULL) {
        ps = calloc(1, sizeof(*ps));
        if (ps == NULL) {
            return -1;
        }
        ps->p = p;
        ps->fd = s;
        curl_multi_assign(p->multi, s, ps);
    } else {
        event_free(ps->ev);
    }
    ps->ev = event_new(p->base, s, kind, prov_on_event, p);
    if (ps->ev == NULL) {
        curl_multi_assign(p->multi, s, NULL);
        free(ps);
        return -1;
    }
    event_add(ps->ev, NULL);
    return 0;
}

/* ---- answers ---- */

static size_t
prov_on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    prov_xfer_t *x = ud;
    size_t n = size * nmemb;
    size_t keep = x->resp_len + n > PROV_BODY_MAX ? PROV_BODY_MAX - x->resp_len : n;

    if (keep > 0) {
        char *r = realloc(x->resp, x->resp_len + keep + 1);
        if (r == NULL) {
            return 0;
        }
        x->resp = r;
        memcpy(x->resp + x->resp_len, data, keep);
        x->resp_len += keep;
        x->resp[x->resp_len] = '\0';
    }
    return n;
}

/* Copies the value of header line |line| named |name| (case-insensitive) into |out|. */
static int
prov_header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);

    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return 0;
    }
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
        end--;
    }
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 1;
}

static size_t
prov_on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    prov_xfer_t *x = ud;
    size_t n = size * nmemb;
    char v[96];

    if (strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue, say): forget the previous headers */
        x->res.message_id[0] = '\0';
        x->res.retry_after_ms = -1;
    } else if (prov_header_value(data, n, "x-message-id", v, sizeof(v))) {
        snprintf(x->res.message_id, sizeof(x->res.message_id), "%s", v);
    } else if (prov_header_value(data, n, "retry-after", v, sizeof(v))) {
        x->res.retry_after_ms = prov_retry_after_ms(v, (long)time(NULL));
    }
    return n;
}

/* A short reason from a provider's error body (the first message, never our content). */
static void
prov_error_text(prov_xfer_t *x)
{
    json_object *o = x->resp != NULL ? json_tokener_parse(x->resp) : NULL;
    const char *msg = NULL;
    long code = 0;

    if (o != NULL && strcmp(x->channel, "email") == 0) {
        json_object *errs, *e0;
        if (json_object_object_get_ex(o, "errors", &errs) &&
            json_object_is_type(errs, json_type_array) && json_object_array_length(errs) > 0 &&
            (e0 = json_object_array_get_idx(errs, 0)) != NULL) {
            msg = jx_get_str(e0, "message", NULL);
        }
    } else if (o != NULL) {
        msg = jx_get_str(o, "message", NULL);
        code = (long)jx_get_int(o, "code", 0);
    }
    if (code != 0) {
        snprintf(x->res.error, sizeof(x->res.error), "%s %ld code %ld: %.120s",
                 strcmp(x->channel, "email") == 0 ? "sendgrid" : "twilio", x->res.status, code,
                 msg != NULL ? msg : "");
    } else {
        snprintf(x->res.error, sizeof(x->res.error), "%s %ld%s%.140s",
                 strcmp(x->channel, "email") == 0 ? "sendgrid" : "twilio", x->res.status,
                 msg != NULL ? ": " : "", msg != NULL ? msg : "");
    }
    json_object_put(o);
}

static void
prov_finish(prov_xfer_t *x, CURLcode cc)
{
    if (cc == CURLE_OK) {
        long st = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
        x->res.rc = PHR_OK;
        x->res.status = st;
        if (x->lookup && st == 200) {
            int f = prov_lookup_parse(&x->m, x->since_s, x->resp, x->res.message_id,
                                      sizeof(x->res.message_id));
            x->res.found = f == 1;
            if (f < 0) {
                x->res.rc = PHR_EPROTO;
                snprintf(x->res.error, sizeof(x->res.error), "%s lookup: unexpected answer",
                         strcmp(x->channel, "email") == 0 ? "sendgrid" : "twilio");
            }
        } else if (!x->lookup && prov_accepted(x->channel, st)) {
            if (strcmp(x->channel, "sms") == 0) {
                json_object *o = x->resp != NULL ? json_tokener_parse(x->resp) : NULL;
                snprintf(x->res.message_id, sizeof(x->res.message_id), "%s",
                         jx_get_str(o, "sid", ""));
                json_object_put(o);
            }
        } else {
            prov_error_text(x);
        }
    } else {
        x->res.rc = cc == CURLE_OPERATION_TIMEDOUT ? PHR_ETIMEDOUT : PHR_EUNAVAIL;
        snprintf(x->res.error, sizeof(x->res.error), "%s: %s",
                 strcmp(x->channel, "email") == 0 ? "sendgrid" : "twilio", curl_easy_strerror(cc));
    }
    prov_cb cb = x->cb;
    void *ud = x->ud;
    prov_result_t res = x->res;
    prov_xfer_free(x);
    cb(&res, ud);
}

static void
prov_check_done(prov_t *p)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        prov_xfer_t *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL) {
            prov_finish(x, msg->data.result);
        }
    }
}

/* ---- requests ---- */

int
prov_accepted(const char *channel, long status)
{
    if (strcmp(channel, "sms") == 0) {
        return status == 201 || status == 200;
    }
    return status == 202 || status == 200;
}

long
prov_retry_after_ms(const char *value, long now_s)
{
    char *end;

    if (value == NULL || value[0] == '\0') {
        return -1;
    }
    if (isdigit((unsigned char)value[0])) {
        long s = strtol(value, &end, 10);
        return (*end == '\0' && s >= 0 && s <= 86400) ? s * 1000 : -1;
    }
    time_t t = curl_getdate(value, NULL);
    if (t < 0) {
        return -1;
    }
    return t <= now_s ? 0 : ((long)t - now_s) * 1000;
}

char *
prov_sendgrid_json(const cfg_t *cfg, const prov_msg_t *m)
{
    json_object *o = json_object_new_object();
    json_object *pers = json_object_new_array();
    json_object *p0 = json_object_new_object();
    json_object *to = json_object_new_array();
    json_object *to0 = json_object_new_object();
    json_object *args = json_object_new_object();
    json_object *from = json_object_new_object();
    json_object *content = json_object_new_array();
    json_object *c0 = json_object_new_object();
    json_object *cats = json_object_new_array();

    json_object_object_add(to0, "email", json_object_new_string(m->to));
    json_object_array_add(to, to0);
    json_object_object_add(p0, "to", to);
    json_object_object_add(args, "notification_id", json_object_new_string(m->id));
    json_object_object_add(args, "kind", json_object_new_string(m->kind));
    json_object_object_add(p0, "custom_args", args);
    json_object_array_add(pers, p0);
    json_object_object_add(o, "personalizations", pers);
    json_object_object_add(from, "email", json_object_new_string(cfg->mail_from));
    json_object_object_add(from, "name", json_object_new_string("PHR"));
    json_object_object_add(o, "from", from);
    json_object_object_add(o, "subject", json_object_new_string(m->subject ? m->subject : ""));
    json_object_object_add(c0, "type", json_object_new_string("text/plain"));
    json_object_object_add(c0, "value", json_object_new_string(m->body));
    json_object_array_add(content, c0);
    json_object_object_add(o, "content", content);
    json_object_array_add(cats, json_object_new_string(m->kind));
    json_object_object_add(o, "categories", cats);
    if (m->tracking_off) {
        json_object *ts = json_object_new_object();
        json_object *click = json_object_new_object();
        json_object *open = json_object_new_object();
        json_object_object_add(click, "enable", json_object_new_boolean(0));
        json_object_object_add(click, "enable_text", json_object_new_boolean(0));
        json_object_object_add(open, "enable", json_object_new_boolean(0));
        json_object_object_add(ts, "click_tracking", click);
        json_object_object_add(ts, "open_tracking", open);
        json_object_object_add(o, "tracking_settings", ts);
    }
    size_t len;
    const char *txt = jx_to_string(o, &len);
    char *out = txt != NULL ? strdup(txt) : NULL;
    json_object_put(o);
    return out;
}

/* Appends "&name=value" (percent-encoded) to |*buf|. */
static int
prov_form_add(char **buf, size_t *len, const char *name, const char *value)
{
    char *enc = curl_easy_escape(NULL, value, 0);
    if (enc == NULL) {
        return PHR_ENOMEM;
    }
    size_t need = *len + strlen(name) + strlen(enc) + 3;
    char *b = malloc(need);
    if (b == NULL) {
        curl_free(enc);
        return PHR_ENOMEM;
    }
    int n =
        snprintf(b, need, "%s%s%s=%s", *buf != NULL ? *buf : "", *len > 0 ? "&" : "", name, enc);
    explicit_bzero(enc, strlen(enc));
    curl_free(enc);
    if (*buf != NULL) {
        explicit_bzero(*buf, *len);
        free(*buf);
    }
    *buf = b;
    *len = (size_t)n;
    return PHR_OK;
}

char *
prov_twilio_form(const cfg_t *cfg, const prov_msg_t *m)
{
    char *buf = NULL, cbu[300];
    size_t len = 0;

    snprintf(cbu, sizeof(cbu), "%s/api/v1/webhooks/twilio", cfg->public_base_url);
    if (prov_form_add(&buf, &len, "To", m->to) != PHR_OK ||
        prov_form_add(&buf, &len, "From", cfg->twilio_from) != PHR_OK ||
        prov_form_add(&buf, &len, "Body", m->body) != PHR_OK ||
        prov_form_add(&buf, &len, "StatusCallback", cbu) != PHR_OK) {
        if (buf != NULL) {
            explicit_bzero(buf, len);
        }
        free(buf);
        return NULL;
    }
    return buf;
}

static int prov_setup_common(prov_t *p, prov_xfer_t *x, const char *url);

/* Credentials of |channel|'s provider on |x| (SendGrid Bearer header, Twilio Basic). */
static int
prov_setup_auth(prov_t *p, prov_xfer_t *x, const char *channel)
{
    if (strcmp(channel, "email") == 0) {
        size_t alen = strlen(p->sendgrid_key) + 32;
        x->auth = malloc(alen);
        if (x->auth == NULL) {
            return PHR_ENOMEM;
        }
        snprintf(x->auth, alen, "Authorization: Bearer %s", p->sendgrid_key);
        x->headers = curl_slist_append(x->headers, x->auth);
    } else {
        curl_easy_setopt(x->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(x->easy, CURLOPT_USERNAME, p->cfg->twilio_account_sid);
        curl_easy_setopt(x->easy, CURLOPT_PASSWORD, p->twilio_token);
    }
    x->headers = curl_slist_append(x->headers, "Accept: application/json");
    return x->headers != NULL ? PHR_OK : PHR_ENOMEM;
}

static int
prov_setup(prov_t *p, prov_xfer_t *x, const prov_msg_t *m)
{
    const cfg_t *cfg = p->cfg;
    char url[512];
    CURL *e = x->easy;

    if (prov_setup_auth(p, x, m->channel) != PHR_OK) {
        return PHR_ENOMEM;
    }
    if (strcmp(m->channel, "email") == 0) {
        snprintf(url, sizeof(url), "%s/v3/mail/send", cfg->sendgrid_base_url);
        x->post = prov_sendgrid_json(cfg, m);
        x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
    } else {
        snprintf(url, sizeof(url), "%s/2010-04-01/Accounts/%s/Messages.json", cfg->twilio_base_url,
                 cfg->twilio_account_sid);
        x->post = prov_twilio_form(cfg, m);
        x->headers =
            curl_slist_append(x->headers, "Content-Type: application/x-www-form-urlencoded");
    }
    if (x->post == NULL || x->headers == NULL) {
        return PHR_ENOMEM;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->post));
    return prov_setup_common(p, x, url);
}

/* The options every request shares: |url|, headers, timeouts, TLS checks, callbacks. */
static int
prov_setup_common(prov_t *p, prov_xfer_t *x, const char *url)
{
    const cfg_t *cfg = p->cfg;
    CURL *e = x->easy;

    x->headers = curl_slist_append(x->headers, "Expect:");
    if (x->headers == NULL) {
        return PHR_ENOMEM;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->provider_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->provider_timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, prov_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, prov_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "phr-notification/1");
    return PHR_OK;
}

/* A new transfer of |m| on |p|'s list (NULL on allocation failure). */
static prov_xfer_t *
prov_xfer_new(prov_t *p, const prov_msg_t *m, prov_cb cb, void *ud)
{
    prov_xfer_t *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->p = p;
    x->cb = cb;
    x->ud = ud;
    x->res.retry_after_ms = -1;
    snprintf(x->channel, sizeof(x->channel), "%s", m->channel);
    x->next = p->xfers;
    if (p->xfers != NULL) {
        p->xfers->prev = x;
    }
    p->xfers = x;
    p->n++;
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        prov_xfer_free(x);
        return NULL;
    }
    return x;
}

/* Starts |x| once set up (|rc| the setup's result); frees it on failure. */
static int
prov_xfer_start(prov_xfer_t *x, int rc)
{
    if (rc != PHR_OK || curl_multi_add_handle(x->p->multi, x->easy) != CURLM_OK) {
        prov_xfer_free(x);
        return PHR_ENOMEM;
    }
    return PHR_OK;
}

/* 0 unless |m| has what a send or lookup needs. */
static int
prov_msg_ok(const prov_msg_t *m)
{
    return m->to != NULL && m->body != NULL && m->id != NULL && m->kind != NULL &&
           (strcmp(m->channel, "email") == 0 || strcmp(m->channel, "sms") == 0);
}

int
prov_send(prov_t *p, const prov_msg_t *m, prov_cb cb, void *ud)
{
    if (!prov_msg_ok(m)) {
        return PHR_EINVAL;
    }
    prov_xfer_t *x = prov_xfer_new(p, m, cb, ud);
    if (x == NULL) {
        return PHR_ENOMEM;
    }
    return prov_xfer_start(x, prov_setup(p, x, m));
}

int
prov_lookup(prov_t *p, const prov_msg_t *m, long since_s, prov_cb cb, void *ud)
{
    if (!prov_msg_ok(m)) {
        return PHR_EINVAL;
    }
    prov_xfer_t *x = prov_xfer_new(p, m, cb, ud);
    if (x == NULL) {
        return PHR_ENOMEM;
    }
    char *url = prov_lookup_url(p->cfg, m);
    x->lookup = 1;
    x->since_s = since_s;
    x->m.channel = x->channel;
    x->m.kind = "";
    x->m.id = x->m_id = strdup(m->id);
    x->m.to = x->m_to = strdup(m->to);
    x->m.body = x->m_body = strdup(m->body);
    int rc = url == NULL || x->m_id == NULL || x->m_to == NULL || x->m_body == NULL
                 ? PHR_ENOMEM
                 : prov_setup_auth(p, x, m->channel);
    if (rc == PHR_OK) {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
        rc = prov_setup_common(p, x, url);
    }
    free(url); /* curl copies the URL */
    return prov_xfer_start(x, rc);
}

size_t
prov_inflight(const prov_t *p)
{
    return p->n;
}

prov_t *
prov_create(struct event_base *base, const cfg_t *cfg)
{
    static int global_done;
    prov_t *p;
    int rc;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return NULL;
        }
        global_done = 1;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL) {
        return NULL;
    }
    p->base = base;
    p->cfg = cfg;
    if ((rc = cfg_read_secret(cfg, "sendgrid_api_key", p->sendgrid_key, sizeof(p->sendgrid_key))) !=
        PHR_OK) {
        log_warn("secret sendgrid_api_key: %s (e-mail sends will be refused)", phr_err_str(rc));
    }
    if ((rc = cfg_read_secret(cfg, "twilio_auth_token", p->twilio_token,
                              sizeof(p->twilio_token))) != PHR_OK) {
        log_warn("secret twilio_auth_token: %s (SMS sends will be refused)", phr_err_str(rc));
    }
    p->multi = curl_multi_init();
    p->timer = evtimer_new(base, prov_on_timer, p);
    if (p->multi == NULL || p->timer == NULL) {
        prov_free(p);
        return NULL;
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, prov_socket_cb);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, prov_timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    /* no per-host cap: a queued transfer would spend its deadline waiting (deliver.c caps
     * the sends in flight at one batch) */
    return p;
}

void
prov_free(prov_t *p)
{
    if (p == NULL) {
        return;
    }
    /* free every transfer first, then tell their owners (who must not see |p| again) */
    size_t n = p->n, k = 0;
    struct {
        prov_cb cb;
        void *ud;
    } *calls = n > 0 ? calloc(n, sizeof(*calls)) : NULL;
    while (p->xfers != NULL) {
        prov_xfer_t *x = p->xfers;
        p->xfers = x->next; /* unlinked here: prov_xfer_free leaves the list alone */
        if (p->xfers != NULL) {
            p->xfers->prev = NULL;
        }
        x->prev = x->next = NULL;
        if (calls != NULL && k < n) {
            calls[k].cb = x->cb;
            calls[k].ud = x->ud;
            k++;
        }
        prov_xfer_free(x);
    }
    for (size_t i = 0; i < k; i++) {
        prov_result_t res = {.rc = PHR_ECLOSED, .retry_after_ms = -1};
        calls[i].cb(&res, calls[i].ud);
    }
    free(calls);
    if (p->multi != NULL) {
        curl_multi_cleanup(p->multi);
    }
    if (p->timer != NULL) {
        event_free(p->timer);
    }
    explicit_bzero(p->sendgrid_key, sizeof(p->sendgrid_key));
    explicit_bzero(p->twilio_token, sizeof(p->twilio_token));
    free(p);
}
