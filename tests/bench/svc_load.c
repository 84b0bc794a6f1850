/*
 * svc_load.c - load client for a service's internal routes (tests/bench/run.sh).
 *
 *   svc_load CALLER PORT PATH LIST CONCURRENCY RATE
 *
 * POSTs the requests of LIST (one line each: BODY_FILE [IDEMPOTENCY_KEY]) to
 * http://127.0.0.1:PORT/PATH over one multiplexed h2c connection with the
 * service credential of CALLER ($PHR_SECRETS_DIR/svc_CALLER.key), through the
 * services' own client (common/hcli). At most CONCURRENCY requests are in
 * flight; RATE > 0 also paces the starts at RATE per second. Prints one line
 * "STATUS SECONDS" per request as it completes (STATUS 000: no answer), the
 * format of the curl runs that bench.py curlcheck reads.
 *
 * (curl 7.88's --http2-prior-knowledge fails every request after the first on
 * a connection with "Error in the HTTP2 framing layer", and h2load cannot vary
 * a header per request.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "err.h"
#include "hcli.h"
#include "log.h"

#define SL_LINE_MAX 4096
#define SL_KEY_MAX 256

typedef struct {
    char *body_file;
    char key[SL_KEY_MAX];
} sl_item_t;

typedef struct {
    struct event_base *base;
    hcli_t *cli;
    const char *path;
    sl_item_t *items;
    size_t n, next, done, inflight;
    size_t concurrency;
    double rate;
    struct event *tick;
    int failed;
    int stopping; /* the client is being freed: start nothing more */
} sl_t;

typedef struct {
    sl_t *sl;
    double t0;
    char *body;
} sl_call_t;

static double
sl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
sl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void sl_fill(sl_t *sl);

static void
sl_done(int rc, const hcli_resp_t *resp, void *ud)
{
    sl_call_t *c = ud;
    sl_t *sl = c->sl;
    int status = rc == PHR_OK && resp != NULL ? resp->status : 0;

    printf("%03d %.6f\n", status, sl_now() - c->t0);
    free(c->body);
    free(c);
    sl->inflight--;
    sl->done++;
    if (sl->done == sl->n) {
        event_base_loopexit(sl->base, NULL);
        return;
    }
    if (sl->rate <= 0 && !sl->stopping) {
        sl_fill(sl);
    }
}

/* Starts the next request; 0 when there is none or it could not start. */
static int
sl_start(sl_t *sl)
{
    if (sl->stopping || sl->next >= sl->n || sl->inflight >= sl->concurrency) {
        return 0;
    }
    sl_item_t *it = &sl->items[sl->next++];
    sl_call_t *c = calloc(1, sizeof(*c));
    size_t len = 0;
    if (c == NULL || (c->body = sl_read_file(it->body_file, &len)) == NULL) {
        fprintf(stderr, "svc_load: cannot read %s\n", it->body_file);
        free(c);
        sl->failed = 1;
        event_base_loopexit(sl->base, NULL);
        return 0;
    }
    c->sl = sl;
    c->t0 = sl_now();
    const char *hdrs[] = {"idempotency-key", it->key, NULL};
    sl->inflight++;
    if (hcli_request_hdrs(sl->cli, "POST", sl->path, it->key[0] != '\0' ? hdrs : NULL,
                          "application/json", c->body, len, NULL, sl_done, c) != PHR_OK) {
        fprintf(stderr, "svc_load: request could not start\n");
        sl->inflight--;
        free(c->body);
        free(c);
        sl->failed = 1;
        event_base_loopexit(sl->base, NULL);
        return 0;
    }
    return 1;
}

static void
sl_fill(sl_t *sl)
{
    while (sl_start(sl)) {
    }
}

static void
sl_on_tick(evutil_socket_t fd, short what, void *arg)
{
    sl_t *sl = arg;
    (void)fd;
    (void)what;
    sl_start(sl);
}

static int
sl_load_list(sl_t *sl, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[SL_LINE_MAX];
    size_t cap = 0;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') {
            continue;
        }
        if (sl->n == cap) {
            cap = cap != 0 ? cap * 2 : 1024;
            sl_item_t *ni = realloc(sl->items, cap * sizeof(*ni));
            if (ni == NULL) {
                fclose(f);
                return -1;
            }
            sl->items = ni;
        }
        sl_item_t *it = &sl->items[sl->n];
        char *sp = strchr(line, ' ');
        it->key[0] = '\0';
        if (sp != NULL) {
            *sp = '\0';
            snprintf(it->key, sizeof(it->key), "%s", sp + 1);
        }
        it->body_file = strdup(line);
        if (it->body_file == NULL) {
            fclose(f);
            return -1;
        }
        sl->n++;
    }
    fclose(f);
    return sl->n > 0 ? 0 : -1;
}

static int
sl_parse_num(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        return -1;
    }
    *out = v;
    return 0;
}

static void
sl_free_items(sl_t *sl)
{
    for (size_t i = 0; i < sl->n; i++) {
        free(sl->items[i].body_file);
    }
    free(sl->items);
    sl->items = NULL;
    sl->n = 0;
}

/* Runs the loaded list against 127.0.0.1:|port| |path|; the exit status. */
static int
sl_run(sl_t *sl, const char *caller, const char *cred, int port, const char *path)
{
    hcli_config_t cfg = {.host = "127.0.0.1",
                         .port = port,
                         .caller = caller,
                         .credential = cred,
                         .timeout_ms = 60000};

    sl->path = path;
    sl->base = event_base_new();
    sl->cli = sl->base != NULL ? hcli_create(sl->base, &cfg) : NULL;
    if (sl->cli == NULL) {
        fprintf(stderr, "svc_load: no client\n");
        if (sl->base != NULL) {
            event_base_free(sl->base);
        }
        return 2;
    }
    int rc = 0;
    if (sl->rate > 0) {
        double iv = 1.0 / sl->rate;
        struct timeval tv = {(time_t)iv, (suseconds_t)((iv - (double)(time_t)iv) * 1e6)};
        sl->tick = event_new(sl->base, -1, EV_PERSIST, sl_on_tick, sl);
        if (sl->tick == NULL || event_add(sl->tick, &tv) != 0) {
            rc = 2;
        } else {
            sl_start(sl);
        }
    } else {
        sl_fill(sl);
    }
    if (rc == 0) {
        event_base_dispatch(sl->base);
    }
    if (sl->tick != NULL) {
        event_free(sl->tick);
    }
    sl->stopping = 1;
    hcli_free(sl->cli);
    event_base_free(sl->base);
    fflush(stdout);
    if (rc == 0 && (sl->failed || sl->done != sl->n)) {
        rc = 1;
    }
    return rc;
}

int
main(int argc, char **argv)
{
    sl_t sl = {0};
    double port, conc;
    char keyfile[1024], cred[256];

    if (argc != 7 || sl_parse_num(argv[2], &port) != 0 || sl_parse_num(argv[5], &conc) != 0 ||
        sl_parse_num(argv[6], &sl.rate) != 0 || conc < 1 || port < 1 || port > 65535) {
        fprintf(stderr, "usage: svc_load CALLER PORT PATH LIST CONCURRENCY RATE\n");
        return 2;
    }
    const char *dir = getenv("PHR_SECRETS_DIR");
    snprintf(keyfile, sizeof(keyfile), "%s/svc_%s.key", dir != NULL ? dir : ".", argv[1]);
    FILE *kf = fopen(keyfile, "r");
    if (kf == NULL || fgets(cred, sizeof(cred), kf) == NULL) {
        fprintf(stderr, "svc_load: cannot read the credential of %s\n", argv[1]);
        if (kf != NULL) {
            fclose(kf);
        }
        return 2;
    }
    fclose(kf);
    cred[strcspn(cred, "\r\n")] = '\0';
    if (sl_load_list(&sl, argv[4]) != 0) {
        fprintf(stderr, "svc_load: cannot read the list %s\n", argv[4]);
        sl_free_items(&sl);
        return 2;
    }
    log_init("svc_load", "error");
    sl.concurrency = (size_t)conc;
    int rc = sl_run(&sl, argv[1], cred, (int)port, argv[3]);
    sl_free_items(&sl);
    return rc;
}
