/*
 * summary.c - per-bucket statistics of one record type (JST day, ISO week
 * from Monday, calendar month): count, and min/max/mean of every numeric
 * field, oldest bucket first. Values are sealed, so rows are decrypted and
 * aggregated here, in one pass over the rows in time order.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "query.h"
#include "records.h"
#include "timeutil.h"

#define SUM_DAY_MS 86400000LL
#define SUM_JST_MS (9LL * 3600 * 1000)
#define SUM_MAX_ROWS 50000
#define SUM_MAX_FIELDS 8

enum { SUM_DAY, SUM_WEEK, SUM_MONTH };

typedef struct {
    const rectype_t *type;
    int bucket;
} sum_t;

typedef struct {
    int64_t start_day; /* JST days since 1970-01-01 */
    int count;
    int n[SUM_MAX_FIELDS];
    double min[SUM_MAX_FIELDS], max[SUM_MAX_FIELDS], sum[SUM_MAX_FIELDS];
} sum_acc_t;

static int64_t
sum_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The first JST day of the bucket holding |ms|. */
int64_t
rec_bucket_start(int64_t ms, int bucket)
{
    int64_t day = sum_floor_div(ms + SUM_JST_MS, SUM_DAY_MS);

    if (bucket == SUM_WEEK) {
        int64_t wd = ((day + 3) % 7 + 7) % 7; /* 1970-01-01 was a Thursday; Monday = 0 */
        return day - wd;
    }
    if (bucket == SUM_MONTH) {
        time_t t = (time_t)(day * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        return day - (tm.tm_mday - 1);
    }
    return day;
}

static void
sum_flush(const sum_t *s, const sum_acc_t *a, json_object *items)
{
    char start[TU_JST_LEN];
    json_object *b = json_object_new_object();
    json_object *values = json_object_new_object();

    tu_format_jst(a->start_day * SUM_DAY_MS - SUM_JST_MS, start, sizeof(start));
    json_object_object_add(b, "start", json_object_new_string(start));
    json_object_object_add(b, "count", json_object_new_int(a->count));
    for (size_t i = 0; i < s->type->nfields && i < SUM_MAX_FIELDS; i++) {
        if (a->n[i] == 0) {
            continue;
        }
        json_object *st = json_object_new_object();
        json_object_object_add(st, "min", json_object_new_double(a->min[i]));
        json_object_object_add(st, "max", json_object_new_double(a->max[i]));
        json_object_object_add(st, "mean", json_object_new_double(a->sum[i] / a->n[i]));
        json_object_object_add(values, s->type->fields[i].name, st);
    }
    json_object_object_add(b, "values", values);
    json_object_array_add(items, b);
}

static void
sum_add(const sum_t *s, sum_acc_t *a, json_object *values)
{
    a->count++;
    for (size_t i = 0; i < s->type->nfields && i < SUM_MAX_FIELDS; i++) {
        const rectype_field_t *f = &s->type->fields[i];
        json_object *v;
        if ((f->kind != RF_NUMBER && f->kind != RF_INTEGER) ||
            !json_object_object_get_ex(values, f->name, &v) ||
            !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))) {
            continue;
        }
        double d = json_object_get_double(v);
        if (a->n[i] == 0 || d < a->min[i]) {
            a->min[i] = d;
        }
        if (a->n[i] == 0 || d > a->max[i]) {
            a->max[i] = d;
        }
        a->sum[i] += d;
        a->n[i]++;
    }
}

static json_object *
sum_build(rec_req_t *r, const PGresult *res, int *status)
{
    const sum_t *s = r->priv;
    const rcrypt_t *rc = rec_crypt(r->svc);
    json_tokener *tok = rec_tokener(r->svc);
    int n = PQntuples(res);
    sum_acc_t acc;

    if (n > SUM_MAX_ROWS) {
        rec_refuse(r, 400, "validation_failed", "the request is not valid", "from",
                   "the range holds too many records; narrow from and to");
        return NULL;
    }
    json_object *o = json_object_new_object();
    json_object *items = json_object_new_array();
    static const char *const names[] = {"day", "week", "month"};
    json_object_object_add(o, "type", json_object_new_string(s->type->type));
    json_object_object_add(o, "bucket", json_object_new_string(names[s->bucket]));
    json_object_object_add(o, "items", items);
    r->types = json_object_new_array();
    json_object_array_add(r->types, json_object_new_string(s->type->type));
    memset(&acc, 0, sizeof(acc));
    for (int i = 0; i < n; i++) {
        json_object *values, *note;
        char *end;
        long long ms = strtoll(PQgetvalue(res, i, REC_COL_MEASURED_MS), &end, 10);
        if (rec_row_open(rc, tok, res, i, &values, &note) != PHR_OK) {
            json_object_put(o);
            return NULL;
        }
        json_object_put(note);
        int64_t start = rec_bucket_start(ms, s->bucket);
        if (acc.count > 0 && start != acc.start_day) {
            sum_flush(s, &acc, items);
            memset(&acc, 0, sizeof(acc));
        }
        acc.start_day = start;
        sum_add(s, &acc, values);
        json_object_put(values);
    }
    if (acc.count > 0) {
        sum_flush(s, &acc, items);
    }
    *status = 200;
    return o;
}

static const char sum_sql[] =
    "SELECT " REC_COLUMNS " FROM records r WHERE r.patient_id = $1::uuid AND r.type = $2 "
    "AND ($3::int8 IS NULL OR r.measured_at >= " REC_TS(
        "$3") ") "
              "AND ($4::int8 IS NULL OR r.measured_at < " REC_TS(
                  "$4") ") "
                        "ORDER BY r.measured_at, r.id LIMIT $5::int4";

static void
sum_run(svc_t *svc, h2s_req_t *req, const sess_t *sess, int staff)
{
    rec_req_t *r = rec_req_new(svc, req, sess, staff);
    const char *type;
    int64_t from = 0, to = 0;
    int has_from, has_to;
    char buf[16];

    if (r == NULL || rec_filters(r, &type, &from, &to, &has_from, &has_to) != PHR_OK) {
        return;
    }
    if (type == NULL) {
        rec_field_error(req, "type", "is required");
        return;
    }
    sum_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    r->priv = s;
    r->priv_free = free;
    s->type = rectype_find(type);
    s->bucket = SUM_DAY;
    int got = qry_get(h2s_req_query(req), "bucket", buf, sizeof(buf));
    if (got != 0) {
        if (got > 0 && strcmp(buf, "week") == 0) {
            s->bucket = SUM_WEEK;
        } else if (got > 0 && strcmp(buf, "month") == 0) {
            s->bucket = SUM_MONTH;
        } else if (got < 0 || strcmp(buf, "day") != 0) {
            rec_field_error(req, "bucket", "must be day, week or month");
            return;
        }
    }
    snprintf(r->pv[0], sizeof(r->pv[0]), "%s", r->patient_id);
    snprintf(r->pv[2], sizeof(r->pv[2]), "%lld", (long long)from);
    snprintf(r->pv[3], sizeof(r->pv[3]), "%lld", (long long)to);
    snprintf(r->pv[4], sizeof(r->pv[4]), "%d", SUM_MAX_ROWS + 1);
    r->sql = sum_sql;
    r->nparams = 5;
    r->params[0] = r->pv[0];
    r->params[1] = s->type->type;
    r->params[2] = has_from ? r->pv[2] : NULL;
    r->params[3] = has_to ? r->pv[3] : NULL;
    r->params[4] = r->pv[4];
    r->build = sum_build;
    rec_read_run(r);
}

static void
sum_me(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    sum_run(svc, req, sess, 0);
}

static void
sum_org(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    sum_run(svc, req, sess, 1);
}

static const svc_route_t sum_table[] = {
    {"GET", "/api/v1/me/records/summary", sum_me, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/orgs/{org_id}/patients/{patient_id}/records/summary", sum_org,
     SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t rec_summary_routes = SVC_ROUTES(sum_table);
