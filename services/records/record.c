/*
 * record.c - one health record: validation, sealed storage, the API JSON,
 * and the patient and staff record routes (create with Idempotency-Key,
 * keyset list, get, edit and delete with history).
 */
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aev.h"
#include "err.h"
#include "fmt.h"
#include "hex.h"
#include "log.h"
#include "query.h"
#include "records.h"
#include "timeutil.h"
#include "uuid.h"

#define REC_DAY_MS 86400000LL
#define REC_JST_MS (9LL * 3600 * 1000)
#define REC_PAGE_DEFAULT 50
#define REC_PAGE_MAX 200
#define REC_MIN_MS (-2208988800000LL) /* 1900-01-01T00:00:00Z */
#define REC_CURSOR_RAW 40             /* 8 ms + 16 id + 16 mac */

/* ---- small helpers ----------------------------------------------------------- */

const rcrypt_t *
rec_crypt(const svc_t *svc)
{
    const rec_ctx_t *ctx = svc_data(svc);
    return ctx != NULL ? ctx->crypt : NULL;
}

json_tokener *
rec_tokener(const svc_t *svc)
{
    const rec_ctx_t *ctx = svc_data(svc);
    return ctx != NULL ? ctx->tok : NULL;
}

static int64_t
rec_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void
rec_local_day(int64_t epoch_ms, char out[11])
{
    time_t t = (time_t)(rec_floor_div(epoch_ms + REC_JST_MS, REC_DAY_MS) * 86400);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

static int
rec_parse_i64(const char *s, int64_t *out)
{
    char *end;

    if (s == NULL || *s == '\0') {
        return PHR_EINVAL;
    }
    long long v = strtoll(s, &end, 10);
    if (*end != '\0') {
        return PHR_EINVAL;
    }
    *out = (int64_t)v;
    return PHR_OK;
}

/* ---- validation -------------------------------------------------------------- */

static int
rec_check_field(const rectype_field_t *f, json_object *v, jx_errors_t *errs)
{
    char name[64];

    snprintf(name, sizeof(name), "values.%s", f->name);
    switch (f->kind) {
    case RF_NUMBER:
    case RF_INTEGER: {
        int is_int = json_object_is_type(v, json_type_int);
        if (!is_int && !json_object_is_type(v, json_type_double)) {
            jx_error_add(errs, name, "must be a number");
            return PHR_EINVAL;
        }
        double d = json_object_get_double(v);
        if (!isfinite(d)) {
            jx_error_add(errs, name, "must be a finite number");
            return PHR_EINVAL;
        }
        if (f->kind == RF_INTEGER && !is_int && d != floor(d)) {
            jx_error_add(errs, name, "must be an integer");
            return PHR_EINVAL;
        }
        if (d < f->min || d > f->max) {
            jx_error_add(errs, name, "must be between %g and %g", f->min, f->max);
            return PHR_EINVAL;
        }
        return PHR_OK;
    }
    case RF_TEXT: {
        if (!json_object_is_type(v, json_type_string)) {
            jx_error_add(errs, name, "must be a string");
            return PHR_EINVAL;
        }
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (strlen(s) != len || !jx_utf8_valid(s, len)) {
            jx_error_add(errs, name, "must be valid UTF-8 text");
            return PHR_EINVAL;
        }
        size_t chars = jx_utf8_len(s);
        if (chars < 1 || chars > f->max_len) {
            jx_error_add(errs, name, "must be 1 to %zu characters", f->max_len);
            return PHR_EINVAL;
        }
        return PHR_OK;
    }
    case RF_BOOL:
        if (!json_object_is_type(v, json_type_boolean)) {
            jx_error_add(errs, name, "must be true or false");
            return PHR_EINVAL;
        }
        return PHR_OK;
    case RF_ENUM:
        if (json_object_is_type(v, json_type_string)) {
            for (const char *const *e = f->enum_vals; *e != NULL; e++) {
                if (strcmp(*e, json_object_get_string(v)) == 0) {
                    return PHR_OK;
                }
            }
        }
        jx_error_add(errs, name, "must be one of the allowed values");
        return PHR_EINVAL;
    }
    return PHR_EINVAL;
}

int
rec_check_values(const rectype_t *type, const json_object *values, jx_errors_t *errs)
{
    int rc = PHR_OK;

    if (!json_object_is_type(values, json_type_object)) {
        jx_error_add(errs, "values", "must be an object");
        return PHR_EINVAL;
    }
    struct lh_table *tab = json_object_get_object(values);
    for (struct lh_entry *e = tab != NULL ? tab->head : NULL; e != NULL; e = e->next) {
        const char *key = (const char *)lh_entry_k(e);
        if (rectype_field(type, key) == NULL) {
            char name[64];
            snprintf(name, sizeof(name), "values.%.48s", key);
            jx_error_add(errs, name, "is not a field of %s", type->type);
            rc = PHR_EINVAL;
        }
    }
    for (size_t i = 0; i < type->nfields; i++) {
        const rectype_field_t *f = &type->fields[i];
        json_object *v = NULL;
        if (!json_object_object_get_ex(values, f->name, &v) || v == NULL) {
            if (f->required) {
                char name[64];
                snprintf(name, sizeof(name), "values.%s", f->name);
                jx_error_add(errs, name, "is required");
                rc = PHR_EINVAL;
            }
            continue;
        }
        if (rec_check_field(f, v, errs) != PHR_OK) {
            rc = PHR_EINVAL;
        }
    }
    return rc;
}

/* A copy of validated |values| with the type's fields in table order, nulls left out. */
static json_object *
rec_values_copy(const rectype_t *type, const json_object *values)
{
    json_object *o = json_object_new_object();

    for (size_t i = 0; o != NULL && i < type->nfields; i++) {
        json_object *v = NULL;
        if (json_object_object_get_ex(values, type->fields[i].name, &v) && v != NULL) {
            json_object_object_add(o, type->fields[i].name, json_object_get(v));
        }
    }
    return o;
}

static int
rec_check_note(json_object *note, jx_errors_t *errs)
{
    if (!json_object_is_type(note, json_type_string)) {
        jx_error_add(errs, "note", "must be a string");
        return PHR_EINVAL;
    }
    const char *s = json_object_get_string(note);
    size_t len = (size_t)json_object_get_string_len(note);
    if (strlen(s) != len || !jx_utf8_valid(s, len)) {
        jx_error_add(errs, "note", "must be valid UTF-8 text");
        return PHR_EINVAL;
    }
    if (jx_utf8_len(s) > REC_NOTE_MAX) {
        jx_error_add(errs, "note", "must be at most %d characters", REC_NOTE_MAX);
        return PHR_EINVAL;
    }
    return PHR_OK;
}

static int
rec_check_time(const char *s, int no_future, int64_t now_ms, int64_t *out, jx_errors_t *errs)
{
    if (tu_parse_rfc3339(s, out) != PHR_OK) {
        jx_error_add(errs, "measured_at", "must be an RFC 3339 date-time with an offset");
        return PHR_EINVAL;
    }
    if (*out < REC_MIN_MS) {
        jx_error_add(errs, "measured_at", "must not be before 1900");
        return PHR_EINVAL;
    }
    if (no_future && *out > now_ms + REC_DAY_MS) {
        jx_error_add(errs, "measured_at", "must not be more than 1 day in the future");
        return PHR_EINVAL;
    }
    return PHR_OK;
}

static const char *const rec_sources[] = {"self", "device", NULL};

#define REC_BODY_FIELDS                                                                            \
    {"type", JX_STRING, 1, 0, -1, 1, 64, NULL}, {"measured_at", JX_STRING, 1, 0, -1, 1, 64, NULL}, \
        {"values", JX_OBJECT, 1, 0, -1, 0, 0, NULL},                                               \
        {"note", JX_STRING, 0, 0, -1, 0, REC_NOTE_MAX, NULL},                                      \
    {                                                                                              \
        "source", JX_STRING, 0, 0, -1, 1, 16, rec_sources                                          \
    }

static const jx_field_t rec_body_fields[] = {REC_BODY_FIELDS};

void
rec_input_clear(rec_input_t *in)
{
    json_object_put(in->values);
    if (in->note != NULL) {
        OPENSSL_cleanse(in->note, strlen(in->note));
        free(in->note);
    }
    memset(in, 0, sizeof(*in));
}

int
rec_parse(const json_object *body, int flags, int64_t now_ms, rec_input_t *out, jx_errors_t *errs)
{
    size_t nfields = (flags & REC_PARSE_SOURCE) ? 5 : 4;
    json_object *v;

    memset(out, 0, sizeof(*out));
    if (!json_object_is_type(body, json_type_object)) {
        jx_error_add(errs, "", "the body must be a JSON object");
        return PHR_EINVAL;
    }
    size_t before = errs->n;
    jx_validate(body, rec_body_fields, nfields, 0, "", errs);
    for (size_t i = before; i < errs->n; i++) {
        if (strcmp(errs->items[i].field, "values") == 0) {
            return PHR_EINVAL; /* values missing or not an object: nothing more to say */
        }
    }
    int bad = errs->n > before;
    const char *tname = jx_get_str(body, "type", NULL);
    const rectype_t *type = tname != NULL ? rectype_find(tname) : NULL;
    if (tname != NULL && type == NULL) {
        jx_error_add(errs, "type", "unknown record type");
        bad = 1;
    }
    const char *mt = jx_get_str(body, "measured_at", NULL);
    if (mt != NULL && rec_check_time(mt, flags & REC_PARSE_NO_FUTURE, now_ms, &out->measured_ms,
                                     errs) != PHR_OK) {
        bad = 1;
    }
    json_object *values = NULL;
    json_object_object_get_ex(body, "values", &values);
    if (type != NULL && values != NULL && rec_check_values(type, values, errs) != PHR_OK) {
        bad = 1;
    }
    if (json_object_object_get_ex(body, "note", &v) && v != NULL &&
        rec_check_note(v, errs) != PHR_OK) {
        bad = 1;
    }
    if (bad || type == NULL || values == NULL || mt == NULL) {
        if (errs->n == before) {
            jx_error_add(errs, "", "invalid record");
        }
        return PHR_EINVAL;
    }
    out->type = type;
    out->values = rec_values_copy(type, values);
    out->source = "self";
    if ((flags & REC_PARSE_SOURCE) && jx_get_str(body, "source", NULL) != NULL) {
        out->source = strcmp(jx_get_str(body, "source", ""), "device") == 0 ? "device" : "self";
    }
    if (json_object_object_get_ex(body, "note", &v) && v != NULL) {
        out->note = strdup(json_object_get_string(v));
        if (out->note == NULL) {
            rec_input_clear(out);
            return PHR_ENOMEM;
        }
    }
    if (out->values == NULL) {
        rec_input_clear(out);
        return PHR_ENOMEM;
    }
    return PHR_OK;
}

/* ---- sealed payload ------------------------------------------------------------ */

/* The payload of a record, {"values":..., "note":...} (|note| NULL: null). */
static json_object *
rec_plain_new(json_object *values, const char *note)
{
    json_object *o = json_object_new_object();

    if (o != NULL) {
        json_object_object_add(o, "values", json_object_get(values));
        json_object_object_add(o, "note", note != NULL ? json_object_new_string(note) : NULL);
    }
    return o;
}

/* Seals rec_plain_new's payload for record |id|. */
static int
rec_seal(const rcrypt_t *rc, const char *id, const char *patient_id, const char *type,
         json_object *values, const char *note, int *key_id, char **hex)
{
    char aad[REC_AAD_LEN];
    json_object *o = rec_plain_new(values, note);
    size_t len;

    if (o == NULL) {
        return PHR_ENOMEM;
    }
    const char *plain = jx_to_string(o, &len);
    rcrypt_aad(aad, sizeof(aad), id, patient_id, type);
    int ret = plain != NULL ? rcrypt_seal(rc, aad, plain, len, key_id, hex) : PHR_ENOMEM;
    json_object_put(o);
    return ret;
}

/*
 * json_tokener_parse of an opened payload with |tok| reset and reused (the service's: a new
 * tokener per record was a large allocation each time), or one made for this call.
 */
static json_object *
rec_plain_parse(json_tokener *tok, const char *plain)
{
    if (tok == NULL) {
        return json_tokener_parse(plain);
    }
    json_tokener_reset(tok);
    json_object *o = json_tokener_parse_ex(tok, plain, -1);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

int
rec_row_open(const rcrypt_t *rc, json_tokener *tok, const PGresult *res, int row,
             json_object **values, json_object **note)
{
    char aad[REC_AAD_LEN];
    char *plain = NULL;
    size_t len = 0;
    int64_t key_id;

    *values = NULL;
    *note = NULL;
    if (rec_parse_i64(PQgetvalue(res, row, REC_COL_KEY_ID), &key_id) != PHR_OK) {
        return PHR_EINVAL;
    }
    rcrypt_aad(aad, sizeof(aad), PQgetvalue(res, row, REC_COL_ID),
               PQgetvalue(res, row, REC_COL_PATIENT), PQgetvalue(res, row, REC_COL_TYPE));
    if (rcrypt_open(rc, aad, (int)key_id, PQgetvalue(res, row, REC_COL_SEALED), &plain, &len) !=
        PHR_OK) {
        log_error("records: record %s could not be decrypted (key %d)",
                  PQgetvalue(res, row, REC_COL_ID), (int)key_id);
        return PHR_EINVAL;
    }
    json_object *o = rec_plain_parse(tok, plain);
    OPENSSL_cleanse(plain, len);
    free(plain);
    json_object *v = NULL, *n = NULL;
    if (o == NULL || !json_object_object_get_ex(o, "values", &v) ||
        !json_object_is_type(v, json_type_object)) {
        json_object_put(o);
        return PHR_EINVAL;
    }
    json_object_object_get_ex(o, "note", &n);
    *values = json_object_get(v);
    *note = n != NULL ? json_object_get(n) : NULL;
    json_object_put(o);
    return PHR_OK;
}

/* ---- the API JSON of a record: one serialization, as text ------------------------- */

/* Room for |n| more bytes and the NUL; the old block is cleansed when it moves. */
static int
rec_text_reserve(rec_text_t *t, size_t n)
{
    if (t->cap > t->len && t->cap - t->len > n) {
        return PHR_OK;
    }
    if (n >= SIZE_MAX / 4 - t->len) {
        return PHR_ENOMEM;
    }
    size_t cap = t->cap > 0 ? t->cap : 512;
    while (cap - t->len <= n) {
        cap *= 2;
    }
    char *s = malloc(cap);
    if (s == NULL) {
        return PHR_ENOMEM;
    }
    if (t->s != NULL) {
        memcpy(s, t->s, t->len);
        OPENSSL_cleanse(t->s, t->cap);
        free(t->s);
    }
    s[t->len] = '\0';
    t->s = s;
    t->cap = cap;
    return PHR_OK;
}

int
rec_text_add(rec_text_t *t, const char *s, size_t n)
{
    if (rec_text_reserve(t, n) != PHR_OK) {
        return PHR_ENOMEM;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
    return PHR_OK;
}

void
rec_text_free(rec_text_t *t)
{
    if (t->s != NULL) {
        OPENSSL_cleanse(t->s, t->cap);
        free(t->s);
    }
    t->s = NULL;
    t->len = t->cap = 0;
}

void
rec_text_cut(rec_text_t *t, size_t len)
{
    if (t->s != NULL && len < t->len) {
        OPENSSL_cleanse(t->s + len, t->len - len);
        t->len = len;
        t->s[len] = '\0';
    }
}

/* |s| as a JSON string; json-c writes the rare one that needs escaping, as it does elsewhere. */
static int
rec_text_str(rec_text_t *t, const char *s)
{
    size_t n = 0;

    while (s[n] != '\0' && s[n] != '"' && s[n] != '\\' && (unsigned char)s[n] >= 0x20) {
        n++;
    }
    if (s[n] != '\0') {
        json_object *o = json_object_new_string(s);
        size_t len = 0;
        const char *j = o != NULL ? jx_to_string(o, &len) : NULL;
        int rc = j != NULL ? rec_text_add(t, j, len) : PHR_ENOMEM;
        json_object_put(o);
        return rc;
    }
    if (rec_text_reserve(t, n + 2) != PHR_OK) {
        return PHR_ENOMEM;
    }
    t->s[t->len] = '"';
    memcpy(t->s + t->len + 1, s, n);
    t->s[t->len + n + 1] = '"';
    t->len += n + 2;
    t->s[t->len] = '\0';
    return PHR_OK;
}

/* Epoch milliseconds |ms_text| as a +09:00 time string; null when it is not a number. */
static int
rec_text_time(rec_text_t *t, const char *ms_text)
{
    int64_t ms;
    char buf[TU_JST_LEN];

    if (rec_parse_i64(ms_text, &ms) != PHR_OK) {
        return rec_text_add(t, "null", 4);
    }
    tu_format_jst(ms, buf, sizeof(buf));
    return rec_text_str(t, buf);
}

/*
 * The members of proto Record in order: each a column as a string, a time or a
 * string-or-null, or (REC_M_PAYLOAD) the payload's "values" and "note".
 */
enum { REC_M_STR, REC_M_TIME, REC_M_STR_OR_NULL, REC_M_PAYLOAD };
static const struct {
    const char *head; /* what precedes the value */
    int col;
    int kind;
} rec_members[] = {
    {"{\"id\":", REC_COL_ID, REC_M_STR},
    {",\"patient_id\":", REC_COL_PATIENT, REC_M_STR},
    {",\"type\":", REC_COL_TYPE, REC_M_STR},
    {",\"measured_at\":", REC_COL_MEASURED_MS, REC_M_TIME},
    {",", REC_COL_SEALED, REC_M_PAYLOAD},
    {",\"source\":", REC_COL_SOURCE, REC_M_STR},
    {",\"org_id\":", REC_COL_ORG, REC_M_STR_OR_NULL},
    {",\"created_at\":", REC_COL_CREATED_MS, REC_M_TIME},
    {",\"updated_at\":", REC_COL_UPDATED_MS, REC_M_TIME},
};

/* Appends the record of row |row| around |members|, the payload's "values":...,"note":... */
static int
rec_text_row(rec_text_t *t, const PGresult *res, int row, const char *members, size_t n)
{
    size_t start = t->len;
    int rc = PHR_OK;

    for (size_t i = 0; rc == PHR_OK && i < sizeof(rec_members) / sizeof(rec_members[0]); i++) {
        const char *v = PQgetvalue(res, row, rec_members[i].col);
        rc = rec_text_add(t, rec_members[i].head, strlen(rec_members[i].head));
        if (rc != PHR_OK) {
            break;
        }
        switch (rec_members[i].kind) {
        case REC_M_STR: rc = rec_text_str(t, v); break;
        case REC_M_TIME: rc = rec_text_time(t, v); break;
        case REC_M_STR_OR_NULL:
            rc = v[0] != '\0' ? rec_text_str(t, v) : rec_text_add(t, "null", 4);
            break;
        default: rc = rec_text_add(t, members, n); break;
        }
    }
    rc = rc != PHR_OK ? rc : rec_text_add(t, "}", 1);
    if (rc != PHR_OK) {
        rec_text_cut(t, start);
    }
    return rc;
}

/* The members "values" and "note" of an opened payload as rec_seal wrote it, else NULL. */
static const char *
rec_plain_members(const char *plain, size_t len, size_t *n)
{
    static const char head[] = "{\"values\":{";

    if (len < sizeof(head) + 1 || memcmp(plain, head, sizeof(head) - 1) != 0 ||
        plain[len - 1] != '}' || memchr(plain, '\0', len) != NULL) {
        return NULL;
    }
    *n = len - 2;
    return plain + 1;
}

int
rec_row_text(const rcrypt_t *rc, const PGresult *res, int row, rec_text_t *out)
{
    char aad[REC_AAD_LEN];
    char *plain = NULL;
    size_t plain_len = 0, n = 0;
    int64_t key_id;

    if (PQnfields(res) < REC_NCOLUMNS ||
        rec_parse_i64(PQgetvalue(res, row, REC_COL_KEY_ID), &key_id) != PHR_OK) {
        return PHR_EINVAL;
    }
    rcrypt_aad(aad, sizeof(aad), PQgetvalue(res, row, REC_COL_ID),
               PQgetvalue(res, row, REC_COL_PATIENT), PQgetvalue(res, row, REC_COL_TYPE));
    if (rcrypt_open(rc, aad, (int)key_id, PQgetvalue(res, row, REC_COL_SEALED), &plain,
                    &plain_len) != PHR_OK) {
        log_error("records: record %s could not be decrypted (key %d)",
                  PQgetvalue(res, row, REC_COL_ID), (int)key_id);
        return PHR_EINVAL;
    }
    const char *members = rec_plain_members(plain, plain_len, &n);
    int ret = members != NULL ? rec_text_row(out, res, row, members, n) : PHR_EINVAL;
    if (members == NULL) {
        log_error("records: record %s: the payload is not in the sealed form",
                  PQgetvalue(res, row, REC_COL_ID));
    }
    OPENSSL_cleanse(plain, plain_len);
    free(plain);
    return ret;
}

/* Appends the record of row |row| just sealed from |in|, without opening its payload again. */
static int
rec_text_input(rec_text_t *t, const PGresult *res, int row, const rec_input_t *in)
{
    json_object *o = rec_plain_new(in->values, in->note);
    size_t len = 0, n = 0;
    const char *plain = o != NULL ? jx_to_string(o, &len) : NULL;
    const char *members = plain != NULL ? rec_plain_members(plain, len, &n) : NULL;
    int rc = members != NULL ? rec_text_row(t, res, row, members, n) : PHR_ENOMEM;

    json_object_put(o);
    return rc;
}

json_object *
rec_row_json_keys(const rcrypt_t *rc, json_tokener *tok, const PGresult *res, int row)
{
    rec_text_t t = {.s = NULL};
    json_object *o = rec_row_text(rc, res, row, &t) == PHR_OK ? rec_plain_parse(tok, t.s) : NULL;

    rec_text_free(&t);
    return o;
}

json_object *
rec_row_json(const svc_t *svc, const PGresult *res, int row)
{
    return rec_row_json_keys(rec_crypt(svc), rec_tokener(svc), res, row);
}

/* ---- insert -------------------------------------------------------------------- */

typedef struct {
    db_cb cb;
    void *ud;
    int rc;
    int insert_queued;
} rec_ins_t;

/* The replace statement's result; it answers only when the INSERT could not be queued. */
static void
rec_ins_moved(int rc, PGresult *res, void *ud)
{
    rec_ins_t *ins = ud;

    if (rc != PHR_OK && ins->rc == PHR_OK) {
        ins->rc = rc;
    }
    if (!ins->insert_queued) {
        ins->cb(ins->rc != PHR_OK ? ins->rc : PHR_EGENERIC, NULL, ins->ud);
        free(ins);
    }
}

static void
rec_ins_done(int rc, PGresult *res, void *ud)
{
    rec_ins_t *ins = ud;

    if (ins->rc != PHR_OK) {
        rc = ins->rc;
        res = NULL;
    }
    ins->cb(rc, res, ins->ud);
    free(ins);
}

/* The previous versions kept on edit, delete and replace: $1 change, $2 changed_by. */
#define REC_HISTORY_COLS                                                                           \
    "record_id, patient_id, type, measured_at, source, org_id, key_id, sealed, version, "          \
    "created_by, created_at, change, changed_by"
#define REC_HISTORY_SELECT                                                                         \
    "id, patient_id, type, measured_at, source, org_id, key_id, sealed, version, created_by, "     \
    "created_at, $1, $2::uuid"

static const char rec_replace_sql[] =
    "WITH old AS (DELETE FROM records WHERE patient_id = $3::uuid AND type = $4 "
    "AND local_day = $5::date RETURNING *) "
    "INSERT INTO record_history (" REC_HISTORY_COLS ") SELECT " REC_HISTORY_SELECT " FROM old";

#define REC_INSERT_INTO                                                                            \
    "INSERT INTO records AS r (id, patient_id, type, measured_at, local_day, source, org_id, "     \
    "key_id, sealed, created_by) "
#define REC_INSERT                                                                                 \
    REC_INSERT_INTO "VALUES ($1::uuid, $2::uuid, $3, " REC_TS(                                     \
        "$4") ", $5::date, $6, $7::uuid, "                                                         \
              "$8::int4, $9::bytea, $10::uuid) RETURNING " REC_COLUMNS

static const char rec_insert_sql[] = REC_INSERT;

/* The insert and its audit event ($11 topic, $12 key, $13 body) in one statement. */
static const char rec_insert_audited_sql[] =
    "WITH ob AS (" OUTBOX_SQL_ADD("$11, $12, $13::jsonb") ") " REC_INSERT;

/*
 * Several creates at once (insbatch.h): rec_insert_audited_sql over arrays,
 * $1..$13 one text[] per parameter of it, cast the same way; the rows come
 * back in no set order (insbatch matches them by id).
 */
static const char rec_insert_audited_many_sql[] =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
    "$12::text[], $13::text[]) AS v(id, patient_id, type, ms, day, source, org_id, key_id, "
    "sealed, created_by, topic, okey, body)), "
    "ob AS (INSERT INTO outbox (topic, idempotency_key, body) SELECT v.topic, v.okey, "
    "v.body::jsonb FROM v ON CONFLICT (idempotency_key) DO NOTHING) " REC_INSERT_INTO
    "SELECT v.id::uuid, v.patient_id::uuid, v.type, " REC_TS(
        "v.ms") ", v.day::date, v.source, "
                "v.org_id::uuid, v.key_id::int4, v.sealed::bytea, v.created_by::uuid FROM v "
                "RETURNING " REC_COLUMNS;

rib_t *
rec_creates_create(db_pool_t *pool, const cfg_t *cfg)
{
    rib_config_t rc = {
        .one_sql = rec_insert_audited_sql,
        .many_sql = rec_insert_audited_many_sql,
        .per_batch = cfg->records_insert_batch,
        .waiting = cfg->records_insert_waiting,
        .slots = cfg->pg_pool_size,
    };
    return rib_create(pool, &rc);
}

/* A new record's id (uuid7) and sealed value, as the text parameters of rec_insert_sql. */
typedef struct {
    char day[11], ms[24], kid[12];
    char *hex;
} rec_sealed_t;

static int
rec_insert_prep(const rcrypt_t *rc, const char *patient_id, const rec_input_t *in,
                char *record_id_out, rec_sealed_t *out)
{
    int key_id = 0;

    out->hex = NULL;
    if (uuid7(record_id_out) != PHR_OK) {
        return PHR_EGENERIC;
    }
    int ret = rec_seal(rc, record_id_out, patient_id, in->type->type, in->values, in->note, &key_id,
                       &out->hex);
    if (ret != PHR_OK) {
        return ret;
    }
    rec_local_day(in->measured_ms, out->day);
    snprintf(out->ms, sizeof(out->ms), "%lld", (long long)in->measured_ms);
    snprintf(out->kid, sizeof(out->kid), "%d", key_id);
    return PHR_OK;
}

int
rec_insert_keys(const rcrypt_t *rc, db_txn_t *txn, const char *patient_id, const rec_input_t *in,
                const char *source, const char *actor_id, char *record_id_out, db_cb cb, void *ud)
{
    rec_sealed_t sl;

    if (source == NULL) {
        source = in->source != NULL ? in->source : "self";
    }
    int ret = rec_insert_prep(rc, patient_id, in, record_id_out, &sl);
    if (ret != PHR_OK) {
        return ret;
    }
    rec_ins_t *ins = calloc(1, sizeof(*ins));
    if (ins == NULL) {
        free(sl.hex);
        return PHR_ENOMEM;
    }
    ins->cb = cb;
    ins->ud = ud;
    if (in->type->one_per_day) {
        const char *p[] = {"replace", actor_id, patient_id, in->type->type, sl.day};
        ret = db_txn_query(txn, rec_replace_sql, 5, p, rec_ins_moved, ins);
        if (ret != PHR_OK) {
            free(ins);
            free(sl.hex);
            return ret;
        }
    }
    const char *p[] = {record_id_out, patient_id, in->type->type, sl.ms,  sl.day,
                       source,        in->org_id, sl.kid,         sl.hex, actor_id};
    ins->insert_queued = 1;
    ret = db_txn_query(txn, rec_insert_sql, 10, p, rec_ins_done, ins);
    free(sl.hex);
    if (ret == PHR_OK) {
        return PHR_OK;
    }
    if (in->type->one_per_day) { /* the replace statement answers with the error */
        ins->insert_queued = 0;
        ins->rc = ret;
        return PHR_OK;
    }
    free(ins);
    return ret;
}

int
rec_insert(svc_t *svc, db_txn_t *txn, const char *patient_id, const rec_input_t *in,
           const char *source, const char *actor_id, char *record_id_out, db_cb cb, void *ud)
{
    return rec_insert_keys(rec_crypt(svc), txn, patient_id, in, source, actor_id, record_id_out, cb,
                           ud);
}

/* ---- request plumbing ------------------------------------------------------------ */


void
rec_field_error(h2s_req_t *req, const char *field, const char *message)
{
    jx_errors_t errs = {.n = 0};

    jx_error_add(&errs, field, "%s", message);
    h2s_respond_problem(req, 400, "validation_failed", message, &errs);
}

static void
rec_req_free(void *arg)
{
    rec_req_t *r = arg;

    if (r->priv_free != NULL) {
        r->priv_free(r->priv);
    }
    json_object_put(r->types);
    json_object_put(r->answer);
    free(r->perrs);
    rec_text_free(&r->text);
}

rec_req_t *
rec_req_new(svc_t *svc, h2s_req_t *req, const sess_t *sess, int staff)
{
    if (!staff && strcmp(sess->kind, "patient") != 0) {
        h2s_respond_problem(req, 403, "forbidden", "only patients have their own records", NULL);
        return NULL;
    }
    if (staff) {
        const char *org = h2s_req_param(req, "org_id");
        const char *pid = h2s_req_param(req, "patient_id");
        if (strcmp(sess->kind, "staff") != 0 ||
            (strcmp(sess->role, "staff") != 0 && strcmp(sess->role, "admin") != 0)) {
            h2s_respond_problem(req, 403, "forbidden", "only staff of the organization", NULL);
            return NULL;
        }
        if (org == NULL || pid == NULL || !uuid_valid(org) || !uuid_valid(pid) ||
            strcmp(org, sess->org_id) != 0) {
            svc_respond_error(req, PHR_ENOTFOUND, "no such patient");
            return NULL;
        }
    }
    rec_req_t *r = h2s_req_alloc(req, sizeof(*r));
    if (r == NULL || h2s_req_add_cleanup(req, rec_req_free, r) != PHR_OK) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return NULL;
    }
    r->svc = svc;
    r->req = req;
    r->sess = sess;
    r->staff = staff;
    if (staff) {
        fmt_cat(r->org_id, sizeof(r->org_id), 0, h2s_req_param(req, "org_id"));
        fmt_cat(r->patient_id, sizeof(r->patient_id), 0, h2s_req_param(req, "patient_id"));
    } else {
        fmt_cat(r->patient_id, sizeof(r->patient_id), 0, sess->account_id);
    }
    return r;
}

/* The audit event of |r| as JSON (caller frees; NULL on no memory), its key in |event_id|. */
static char *
rec_audit_json(rec_req_t *r, const char *action, const char *target_type, const char *target_id,
               json_object *details, char event_id[AEV_ID_LEN])
{
    aev_t ev;

    aev_init(&ev, "records", action, r->req, r->sess);
    ev.target_type = target_type;
    ev.target_id = target_id;
    ev.patient_id = r->patient_id;
    ev.target_org_id = r->staff ? r->org_id : NULL;
    ev.details = details;
    return aev_json(&ev, event_id);
}

int
rec_audit(rec_req_t *r, db_txn_t *txn, const char *action, const char *target_type,
          const char *target_id, json_object *details, db_cb cb, void *ud)
{
    char event_id[AEV_ID_LEN];
    char *json = rec_audit_json(r, action, target_type, target_id, details, event_id);

    if (json == NULL) {
        return PHR_ENOMEM;
    }
    int rc = outbox_add(txn, "audit", event_id, json, cb, ud);
    free(json);
    return rc;
}

/*
 * Answers the outcome of a request whose transaction ended: the refusal
 * decided on the way (rec_problem), else |rc| with the built answer. Never
 * earlier: answering may free |req| and with it |r|.
 */
static void
rec_answer(rec_req_t *r, int rc, const char *what)
{
    if (r->sent) {
        return;
    }
    r->sent = 1;
    r->answered = 1;
    if (r->pstatus != 0) {
        h2s_respond_problem(r->req, r->pstatus, r->pcode, r->pdetail,
                            r->perrs != NULL && r->perrs->n > 0 ? r->perrs : NULL);
        return;
    }
    if (rc == PHR_OK && r->text.s != NULL) {
        h2s_respond(r->req, r->status != 0 ? r->status : 200, "application/json", r->text.s,
                    r->text.len);
        return;
    }
    if (rc == PHR_OK && r->answer != NULL) {
        json_object *a = r->answer;
        r->answer = NULL;
        h2s_respond_json(r->req, r->status != 0 ? r->status : 200, a);
        return;
    }
    if (rc == PHR_OK) {
        h2s_respond(r->req, r->status != 0 ? r->status : 204, NULL, NULL, 0);
        return;
    }
    svc_respond_error(r->req, rc, rc == PHR_EGENERIC || rc == PHR_ENOMEM ? NULL : what);
}

/* The refusal's field errors, made on first use (most requests have none); NULL: no memory. */
static jx_errors_t *
rec_perrs(rec_req_t *r)
{
    if (r->perrs == NULL) {
        r->perrs = calloc(1, sizeof(*r->perrs));
    }
    return r->perrs;
}

void
rec_refuse(rec_req_t *r, int status, const char *code, const char *detail, const char *field,
           const char *message)
{
    if (!r->answered) {
        r->answered = 1;
        r->pstatus = status;
        r->pcode = code;
        r->pdetail = detail;
        if (field != NULL && rec_perrs(r) != NULL) {
            jx_error_add(r->perrs, field, "%s", message);
        }
    }
}

static void
rec_problem(rec_req_t *r, int status, const char *code, const char *detail)
{
    rec_refuse(r, status, code, detail, NULL, NULL);
}

/* ---- reads (patient: one query; staff: link check + query + audit, one transaction) ---- */

static void
rec_read_ended(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    r->txn = NULL;
    if (r->rc != PHR_OK) {
        rc = r->rc;
    }
    if (rc == PHR_OK) {
        outbox_kick(svc_outbox(r->svc));
    }
    rec_answer(r, rc, "the records could not be read; retry later");
}

static void
rec_read_end(rec_req_t *r, int commit)
{
    int rc = db_txn_end(r->txn, commit && r->rc == PHR_OK, rec_read_ended, r);
    if (rc != PHR_OK) {
        r->txn = NULL;
        rec_answer(r, rc, NULL);
    }
}

static void
rec_read_step(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK && r->rc == PHR_OK) {
        r->rc = rc;
    }
}

static void
rec_read_rows(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK) {
        r->answer = r->build(r, res, &r->status);
        if (r->answer == NULL && r->text.s == NULL && !r->answered) {
            rc = PHR_EGENERIC;
        }
    }
    if (rc != PHR_OK || r->answered) {
        r->rc = rc != PHR_OK ? rc : PHR_EINVAL;
        rec_read_end(r, 0);
        return;
    }
    json_object *details = json_object_new_object();
    json_object_object_add(details, "types",
                           r->types != NULL ? json_object_get(r->types) : json_object_new_array());
    rc = rec_audit(r, r->txn, "records.read", "patient", r->patient_id, details, rec_read_step, r);
    if (rc != PHR_OK) {
        r->rc = rc;
    }
    rec_read_end(r, 1);
}

static void
rec_read_linked(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK && PQntuples(res) == 0) {
        rec_problem(r, 404, "not_found", "no such patient");
        r->rc = PHR_ENOTFOUND;
    } else if (rc != PHR_OK) {
        r->rc = rc;
    }
    if (r->rc != PHR_OK) {
        rec_read_end(r, 0);
        return;
    }
    rc = db_txn_query(r->txn, r->sql, r->nparams, r->params, rec_read_rows, r);
    if (rc != PHR_OK) {
        r->rc = rc;
        rec_read_end(r, 0);
    }
}

static void
rec_read_begun(int rc, db_txn_t *txn, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK) {
        rec_answer(r, rc, "the records could not be read; retry later");
        return;
    }
    r->txn = txn;
    const char *p[] = {r->org_id, r->patient_id};
    rc = db_txn_query(txn, REC_LINKED_SQL, 2, p, rec_read_linked, r);
    if (rc != PHR_OK) {
        r->rc = rc;
        rec_read_end(r, 0);
    }
}

static void
rec_read_done(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK) {
        r->answer = r->build(r, res, &r->status);
        if (r->answer == NULL && r->text.s == NULL && !r->answered) {
            rc = PHR_EGENERIC;
        }
    }
    rec_answer(r, rc, "the records could not be read; retry later");
}

void
rec_read_run(rec_req_t *r)
{
    int rc = r->staff ? db_txn_begin(svc_db(r->svc), rec_read_begun, r)
                      : db_query(svc_db(r->svc), r->sql, r->nparams, r->params, rec_read_done, r);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the records could not be read; retry later");
    }
}

/* ---- list: filters and the signed keyset cursor ------------------------------------ */

static const char rec_b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
rec_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[j++] = rec_b64url[(v >> 18) & 63];
        out[j++] = rec_b64url[(v >> 12) & 63];
        if (i + 1 < n) {
            out[j++] = rec_b64url[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[j++] = rec_b64url[v & 63];
        }
    }
    out[j] = '\0';
}

/* Decodes exactly |n| bytes; PHR_EINVAL when |in| is anything else. */
static int
rec_b64url_decode(const char *in, unsigned char *out, size_t n)
{
    size_t len = strlen(in), bits = 0, j = 0;
    uint32_t acc = 0;

    if (len != (n * 4 + 2) / 3) {
        return PHR_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(rec_b64url, in[i]);
        if (in[i] == '\0' || p == NULL) {
            return PHR_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)(p - rec_b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (j < n) {
                out[j++] = (unsigned char)(acc >> bits);
            }
        }
    }
    return j == n && (acc & ((1u << bits) - 1)) == 0 ? PHR_OK : PHR_EINVAL;
}

static int
rec_uuid_bytes(const char *id, unsigned char out[16])
{
    size_t j = 0;
    for (const char *p = id; *p != '\0'; p++) {
        if (*p == '-') {
            continue;
        }
        int hi = hex_val((unsigned char)p[0]);
        int lo = p[1] != '\0' ? hex_val((unsigned char)p[1]) : -1;
        if (hi < 0 || lo < 0 || j >= 16) {
            return PHR_EINVAL;
        }
        out[j++] = (unsigned char)(hi << 4 | lo);
        p++;
    }
    return j == 16 ? PHR_OK : PHR_EINVAL;
}

static void
rec_uuid_text(const unsigned char b[16], char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static int
rec_cursor_mac(const rcrypt_t *rc, const char *patient_id, const unsigned char *raw,
               unsigned char mac[RCRYPT_MAC_LEN])
{
    unsigned char msg[5 + 36 + 24];
    snprintf((char *)msg, 42, "cur1|%.36s", patient_id); /* 41 characters; raw overwrites the NUL */
    memcpy(msg + 41, raw, 24);
    return rcrypt_mac(rc, msg, sizeof(msg), mac);
}

/* The cursor after row (|ms|, |id|) of |patient_id|'s list into |out| (64 bytes). */
static int
rec_cursor_make(const rcrypt_t *rc, const char *patient_id, int64_t ms, const char *id, char *out)
{
    unsigned char raw[REC_CURSOR_RAW], mac[RCRYPT_MAC_LEN];
    uint64_t u = (uint64_t)ms;

    for (int i = 0; i < 8; i++) {
        raw[i] = (unsigned char)(u >> (56 - 8 * i));
    }
    if (rec_uuid_bytes(id, raw + 8) != PHR_OK ||
        rec_cursor_mac(rc, patient_id, raw, mac) != PHR_OK) {
        return PHR_EINVAL;
    }
    memcpy(raw + 24, mac, 16);
    rec_b64url_encode(raw, sizeof(raw), out);
    return PHR_OK;
}

static int
rec_cursor_read(const rcrypt_t *rc, const char *patient_id, const char *cursor, int64_t *ms,
                char id[37])
{
    unsigned char raw[REC_CURSOR_RAW], mac[RCRYPT_MAC_LEN];
    uint64_t u = 0;

    if (rec_b64url_decode(cursor, raw, sizeof(raw)) != PHR_OK ||
        rec_cursor_mac(rc, patient_id, raw, mac) != PHR_OK ||
        CRYPTO_memcmp(mac, raw + 24, 16) != 0) {
        return PHR_EINVAL;
    }
    for (int i = 0; i < 8; i++) {
        u = (u << 8) | raw[i];
    }
    *ms = (int64_t)u;
    rec_uuid_text(raw + 8, id);
    return PHR_OK;
}

int
rec_filters(rec_req_t *r, const char **type, int64_t *from, int64_t *to, int *has_from, int *has_to)
{
    char buf[80];
    int got;

    *type = NULL;
    *has_from = *has_to = 0;
    got = qry_get(h2s_req_query(r->req), "type", buf, sizeof(buf));
    if (got != 0) {
        const rectype_t *t = got > 0 ? rectype_find(buf) : NULL;
        if (t == NULL) {
            rec_field_error(r->req, "type", "unknown record type");
            return PHR_EINVAL;
        }
        *type = t->type;
    }
    got = qry_get(h2s_req_query(r->req), "from", buf, sizeof(buf));
    if (got < 0 || (got > 0 && tu_parse_rfc3339(buf, from) != PHR_OK)) {
        rec_field_error(r->req, "from", "must be an RFC 3339 date-time with an offset");
        return PHR_EINVAL;
    }
    *has_from = got > 0;
    got = qry_get(h2s_req_query(r->req), "to", buf, sizeof(buf));
    if (got < 0 || (got > 0 && tu_parse_rfc3339(buf, to) != PHR_OK)) {
        rec_field_error(r->req, "to", "must be an RFC 3339 date-time with an offset");
        return PHR_EINVAL;
    }
    *has_to = got > 0;
    if (*has_from && *has_to && *from > *to) {
        rec_field_error(r->req, "to", "must not be before from");
        return PHR_EINVAL;
    }
    return PHR_OK;
}

static const char rec_list_sql[] =
    "SELECT " REC_COLUMNS " FROM records r WHERE r.patient_id = $1::uuid "
    "AND ($2::text IS NULL OR r.type = $2::text) "
    "AND ($3::int8 IS NULL OR r.measured_at >= " REC_TS(
        "$3") ") "
              "AND ($4::int8 IS NULL OR r.measured_at < " REC_TS(
                  "$4") ") "
                        "AND ($5::int8 IS NULL OR (r.measured_at, r.id) < (" REC_TS(
                            "$5") ", $6::uuid)) "
                                  "ORDER BY r.measured_at DESC, r.id DESC LIMIT $7::int4";

typedef struct {
    int limit;
} rec_list_t;

static void
rec_add_type(json_object *types, const char *type)
{
    size_t n = json_object_array_length(types);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(json_object_get_string(json_object_array_get_idx(types, i)), type) == 0) {
            return;
        }
    }
    json_object_array_add(types, json_object_new_string(type));
}

static json_object *
rec_list_build(rec_req_t *r, const PGresult *res, int *status)
{
    rec_list_t *l = r->priv;
    const rcrypt_t *rc = rec_crypt(r->svc);
    rec_text_t *t = &r->text;
    int n = PQntuples(res);
    int more = n > l->limit;
    int ret = rec_text_add(t, "{\"items\":[", 10);

    r->types = json_object_new_array();
    if (more) {
        n = l->limit;
    }
    for (int i = 0; ret == PHR_OK && i < n; i++) {
        ret = i > 0 ? rec_text_add(t, ",", 1) : PHR_OK;
        ret = ret == PHR_OK ? rec_row_text(rc, res, i, t) : ret;
        rec_add_type(r->types, PQgetvalue(res, i, REC_COL_TYPE));
    }
    char cursor[64];
    int64_t ms;
    if (ret == PHR_OK && more &&
        (rec_parse_i64(PQgetvalue(res, n - 1, REC_COL_MEASURED_MS), &ms) != PHR_OK ||
         rec_cursor_make(rc, r->patient_id, ms, PQgetvalue(res, n - 1, REC_COL_ID), cursor) !=
             PHR_OK)) {
        ret = PHR_EGENERIC;
    }
    ret = ret == PHR_OK ? rec_text_add(t, "],\"next_cursor\":", 16) : ret;
    ret = ret == PHR_OK ? (more ? rec_text_str(t, cursor) : rec_text_add(t, "null", 4)) : ret;
    ret = ret == PHR_OK ? rec_text_add(t, "}", 1) : ret;
    if (ret != PHR_OK) {
        rec_text_free(t);
    }
    *status = 200;
    return NULL; /* the answer is r->text */
}

static void
rec_list(svc_t *svc, h2s_req_t *req, const sess_t *sess, int staff)
{
    rec_req_t *r = rec_req_new(svc, req, sess, staff);
    const char *type;
    int64_t from = 0, to = 0, cur_ms = 0;
    int has_from, has_to, got;
    char buf[600], cur_id[37];

    if (r == NULL || rec_filters(r, &type, &from, &to, &has_from, &has_to) != PHR_OK) {
        return;
    }
    rec_list_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        svc_respond_error(req, PHR_ENOMEM, NULL);
        return;
    }
    r->priv = l;
    r->priv_free = free;
    l->limit = REC_PAGE_DEFAULT;
    got = qry_get(h2s_req_query(req), "limit", buf, sizeof(buf));
    if (got != 0) {
        char *end;
        long n = got > 0 ? strtol(buf, &end, 10) : 0;
        if (got < 0 || buf[0] == '\0' || *end != '\0' || n < 1 || n > REC_PAGE_MAX) {
            rec_field_error(req, "limit", "must be an integer from 1 to 200");
            return;
        }
        l->limit = (int)n;
    }
    got = qry_get(h2s_req_query(req), "cursor", buf, sizeof(buf));
    if (got < 0 || (got > 0 && rec_cursor_read(rec_crypt(svc), r->patient_id, buf, &cur_ms,
                                               cur_id) != PHR_OK)) {
        rec_field_error(req, "cursor", "not a cursor of this list");
        return;
    }
    snprintf(r->pv[0], sizeof(r->pv[0]), "%s", r->patient_id);
    snprintf(r->pv[2], sizeof(r->pv[2]), "%lld", (long long)from);
    snprintf(r->pv[3], sizeof(r->pv[3]), "%lld", (long long)to);
    snprintf(r->pv[4], sizeof(r->pv[4]), "%lld", (long long)cur_ms);
    snprintf(r->pv[5], sizeof(r->pv[5]), "%s", got > 0 ? cur_id : "");
    snprintf(r->pv[6], sizeof(r->pv[6]), "%d", l->limit + 1);
    r->sql = rec_list_sql;
    r->nparams = 7;
    r->params[0] = r->pv[0];
    r->params[1] = type;
    r->params[2] = has_from ? r->pv[2] : NULL;
    r->params[3] = has_to ? r->pv[3] : NULL;
    r->params[4] = got > 0 ? r->pv[4] : NULL;
    r->params[5] = got > 0 ? r->pv[5] : NULL;
    r->params[6] = r->pv[6];
    r->build = rec_list_build;
    rec_read_run(r);
}

static void
rec_me_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_list(svc, req, sess, 0);
}

static void
rec_org_list(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_list(svc, req, sess, 1);
}

/* ---- get one ------------------------------------------------------------------------ */

static const char rec_get_sql[] =
    "SELECT " REC_COLUMNS " FROM records r WHERE r.id = $1::uuid AND r.patient_id = $2::uuid";

static void
rec_one_done(int rc, const PGresult *res, int row, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK && row < 0) {
        rec_problem(r, 404, "not_found", "no such record");
    } else if (rc == PHR_OK) {
        rc = rec_row_text(rec_crypt(r->svc), res, row, &r->text) == PHR_OK ? PHR_OK : PHR_EGENERIC;
    }
    rec_answer(r, rc, "the records could not be read; retry later");
}

/* The {record_id} of the path into r->record_id; 404 when malformed. */
static int
rec_path_record(rec_req_t *r)
{
    const char *id = h2s_req_param(r->req, "record_id");
    if (id == NULL || !uuid_valid(id)) {
        svc_respond_error(r->req, PHR_ENOTFOUND, "no such record");
        return PHR_ENOTFOUND;
    }
    fmt_cat(r->record_id, sizeof(r->record_id), 0, id);
    return PHR_OK;
}

static void
rec_me_get(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_req_t *r = rec_req_new(svc, req, sess, 0);

    if (r == NULL || rec_path_record(r) != PHR_OK) {
        return;
    }
    const rec_ctx_t *ctx = svc_data(svc);
    rgb_get(ctx->gets, r->record_id, r->patient_id, rec_one_done, r);
}

/* ---- writes: a transaction with the change, its history and its audit event ------------ */

typedef struct {
    rec_input_t in;
    json_object *body; /* PATCH: the request body */
    char key[256];     /* Idempotency-Key, "" when none */
    char hash[2 * RCRYPT_MAC_LEN + 1];
    int claimed; /* the key row was inserted by this request */
    int lookups; /* idempotency look-ups done */
    char ms[24], day[11], kid[12];
    char *hex;
    const char *action;
    json_object *details;
} rec_write_t;

static void
rec_write_free(void *arg)
{
    rec_write_t *w = arg;

    if (w == NULL) {
        return;
    }
    rec_input_clear(&w->in);
    json_object_put(w->body);
    json_object_put(w->details);
    free(w->hex);
    free(w);
}

static rec_write_t *
rec_write_new(rec_req_t *r)
{
    rec_write_t *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        svc_respond_error(r->req, PHR_ENOMEM, NULL);
        return NULL;
    }
    r->priv = w;
    r->priv_free = rec_write_free;
    return w;
}

static void rec_post_lookup(rec_req_t *r);

static void
rec_write_step(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK && r->rc == PHR_OK) {
        r->rc = rc;
    }
}

static void
rec_write_ended(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;
    rec_write_t *w = r->priv;

    r->txn = NULL;
    if (r->rc != PHR_OK) {
        rc = r->rc;
    }
    if (rc == PHR_AGAIN && w->lookups < 2) { /* another request claimed the key meanwhile */
        r->rc = PHR_OK;
        rec_text_free(&r->text);
        rec_post_lookup(r);
        return;
    }
    if (rc == PHR_OK) {
        outbox_kick(svc_outbox(r->svc));
        if (r->status == 201 && !r->staff) {
            char loc[80];
            snprintf(loc, sizeof(loc), "/api/v1/me/records/%s", r->record_id);
            h2s_req_add_header(r->req, "location", loc);
        }
    }
    if (rc == PHR_ECONFLICT) {
        rec_problem(r, 409, "conflict", "a concurrent change conflicted; retry");
    }
    rec_answer(r, rc == PHR_AGAIN ? PHR_ECONFLICT : rc,
               "the record could not be stored; retry later");
}

/* Queues the audit event (on success so far) and ends the transaction. */
static void
rec_write_finish(rec_req_t *r, const char *target_id)
{
    rec_write_t *w = r->priv;

    if (r->rc == PHR_OK && !r->answered) {
        json_object *d = w->details;
        w->details = NULL;
        int rc = rec_audit(r, r->txn, w->action, "record", target_id, d, rec_write_step, r);
        if (rc != PHR_OK) {
            r->rc = rc;
        }
    }
    int rc = db_txn_end(r->txn, r->rc == PHR_OK && !r->answered, rec_write_ended, r);
    if (rc != PHR_OK) {
        r->txn = NULL;
        rec_answer(r, rc, NULL);
    }
}

static void
rec_write_abort(rec_req_t *r, int rc)
{
    if (r->rc == PHR_OK) {
        r->rc = rc;
    }
    rec_write_finish(r, NULL);
}

/* ---- POST: create (patient: self/device; staff: clinic) --------------------------------- */

static const char rec_idem_get_sql[] =
    "SELECT request_hash, record_id FROM record_idempotency WHERE account_id = $1::uuid "
    "AND key = $2";
static const char rec_idem_claim_sql[] =
    "INSERT INTO record_idempotency (account_id, key, patient_id, request_hash, record_id) "
    "VALUES ($1::uuid, $2, $3::uuid, $4, $5::uuid) ON CONFLICT DO NOTHING RETURNING 1";

static void
rec_post_claimed(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
    } else if (PQntuples(res) == 0) {
        rec_write_abort(r, PHR_AGAIN); /* roll back; replay the other request's record */
    } else {
        rec_write_finish(r, r->record_id);
    }
}

/* The answer of a POST from the inserted row; a failure goes to r->rc. */
static void
rec_post_built(rec_req_t *r, int rc, const PGresult *res, int row)
{
    rec_write_t *w = r->priv;

    if (rc == PHR_OK) { /* the row just sealed from w->in: no need to open it again */
        rc = PQnfields(res) >= REC_NCOLUMNS ? rec_text_input(&r->text, res, row, &w->in)
                                            : PHR_EGENERIC;
        r->status = 201;
    }
    if (rc != PHR_OK && r->rc == PHR_OK) {
        r->rc = rc;
    }
}

static void
rec_post_inserted(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;
    rec_write_t *w = r->priv;

    rec_post_built(r, rc, res, 0);
    if (w->key[0] != '\0') {
        return; /* rec_post_claimed ends the transaction */
    }
    if (r->rc != PHR_OK) {
        rec_write_abort(r, r->rc);
    } else {
        rec_write_finish(r, r->record_id);
    }
}

static void
rec_post_insert(rec_req_t *r)
{
    rec_write_t *w = r->priv;

    int rc = rec_insert(r->svc, r->txn, r->patient_id, &w->in, r->staff ? "clinic" : NULL,
                        r->sess->account_id, r->record_id, rec_post_inserted, r);
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
        return;
    }
    if (w->key[0] != '\0') {
        const char *p[] = {r->sess->account_id, w->key, r->patient_id, w->hash, r->record_id};
        rc = db_txn_query(r->txn, rec_idem_claim_sql, 5, p, rec_post_claimed, r);
        if (rc != PHR_OK) {
            r->rc = rc; /* rec_post_inserted ends it */
            w->key[0] = '\0';
        }
    }
}

static void
rec_post_linked(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK && PQntuples(res) == 0) {
        rec_problem(r, 404, "not_found", "no such patient");
        rc = PHR_ENOTFOUND;
    }
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
        return;
    }
    rec_post_insert(r);
}

static void
rec_post_begun(int rc, db_txn_t *txn, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be stored; retry later");
        return;
    }
    r->txn = txn;
    if (!r->staff) {
        rec_post_insert(r);
        return;
    }
    const char *p[] = {r->org_id, r->patient_id};
    rc = db_txn_query(txn, REC_LINKED_SQL, 2, p, rec_post_linked, r);
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
    }
}

/* The one-statement create answered (no transaction was opened: r->txn stays NULL). */
static void
rec_post_stored(int rc, const PGresult *res, int row, void *ud)
{
    rec_req_t *r = ud;

    rec_post_built(r, rc, res, row);
    rec_write_ended(r->rc, NULL, r);
}

/*
 * A patient's create without an Idempotency-Key of a type that replaces
 * nothing: the record and its audit event in one atomic statement (one round
 * trip instead of BEGIN, two INSERTs and COMMIT), coalesced with the creates
 * that wait with it (insbatch.h).
 */
static void
rec_post_single(rec_req_t *r)
{
    rec_write_t *w = r->priv;
    rec_sealed_t sl;
    char event_id[AEV_ID_LEN];

    int rc = rec_insert_prep(rec_crypt(r->svc), r->patient_id, &w->in, r->record_id, &sl);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be stored; retry later");
        return;
    }
    json_object *d = w->details;
    w->details = NULL;
    char *ev = rec_audit_json(r, w->action, "record", r->record_id, d, event_id);
    const char *source = w->in.source != NULL ? w->in.source : "self";
    const char *p[] = {
        r->record_id, r->patient_id, w->in.type->type,    sl.ms,   sl.day,   source, NULL,
        sl.kid,       sl.hex,        r->sess->account_id, "audit", event_id, ev};
    if (ev != NULL) {
        const rec_ctx_t *ctx = svc_data(r->svc);
        rib_add(ctx->creates, p, rec_post_stored, r); /* |r| may be gone when it returns */
    } else {
        rec_answer(r, PHR_ENOMEM, "the record could not be stored; retry later");
    }
    free(ev);
    free(sl.hex);
}

static void
rec_post_begin(rec_req_t *r)
{
    rec_write_t *w = r->priv;

    if (!r->staff && w->key[0] == '\0' && !w->in.type->one_per_day) {
        rec_post_single(r);
        return;
    }
    int rc = db_txn_begin(svc_db(r->svc), rec_post_begun, r);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be stored; retry later");
    }
}

static void
rec_post_replayed(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK && PQntuples(res) == 0) {
        rec_problem(r, 409, "conflict",
                    "the record created with this Idempotency-Key was deleted since");
        rec_answer(r, PHR_OK, NULL);
        return;
    }
    if (rc == PHR_OK) {
        r->status = 201;
        if (rec_row_text(rec_crypt(r->svc), res, 0, &r->text) != PHR_OK) {
            rc = PHR_EGENERIC;
        } else if (!r->staff) {
            char loc[80];
            snprintf(loc, sizeof(loc), "/api/v1/me/records/%s", r->record_id);
            h2s_req_add_header(r->req, "location", loc);
        }
    }
    rec_answer(r, rc, "the record could not be read; retry later");
}

static void
rec_post_looked_up(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;
    rec_write_t *w = r->priv;

    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be stored; retry later");
        return;
    }
    if (PQntuples(res) == 0) {
        rec_post_begin(r);
        return;
    }
    if (CRYPTO_memcmp(PQgetvalue(res, 0, 0), w->hash, sizeof(w->hash)) != 0) {
        rec_problem(r, 422, "idempotency_key_reused",
                    "this Idempotency-Key was used with another request");
        rec_answer(r, PHR_OK, NULL);
        return;
    }
    snprintf(r->record_id, sizeof(r->record_id), "%s", PQgetvalue(res, 0, 1));
    const char *p[] = {r->record_id, r->patient_id};
    rc = db_query(svc_db(r->svc), rec_get_sql, 2, p, rec_post_replayed, r);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be read; retry later");
    }
}

static void
rec_post_lookup(rec_req_t *r)
{
    rec_write_t *w = r->priv;
    const char *p[] = {r->sess->account_id, w->key};

    w->lookups++;
    int rc = db_query(svc_db(r->svc), rec_idem_get_sql, 2, p, rec_post_looked_up, r);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be stored; retry later");
    }
}

/* The Idempotency-Key header into w->key and the request's keyed hash; 0 when answered 400. */
static int
rec_post_key(rec_req_t *r, rec_write_t *w)
{
    const char *key = h2s_req_header(r->req, "idempotency-key");
    size_t len;
    const char *body = h2s_req_body(r->req, &len);
    unsigned char mac[RCRYPT_MAC_LEN];

    if (key == NULL) {
        return 1;
    }
    size_t klen = strlen(key);
    int ok = klen >= 1 && klen < sizeof(w->key);
    for (size_t i = 0; ok && i < klen; i++) {
        ok = key[i] >= 0x21 && key[i] <= 0x7e;
    }
    if (!ok) {
        rec_field_error(r->req, "Idempotency-Key", "1 to 255 printable ASCII characters");
        return 0;
    }
    memcpy(w->key, key, klen + 1);
    const char *path = h2s_req_path(r->req);
    size_t plen = strlen(path);
    unsigned char *msg = malloc(plen + 2 + len);
    if (msg == NULL) {
        svc_respond_error(r->req, PHR_ENOMEM, NULL);
        return 0;
    }
    snprintf((char *)msg, plen + 2, "%s\n", path);
    memcpy(msg + plen + 1, body, len);
    int rc = rcrypt_mac(rec_crypt(r->svc), msg, plen + 1 + len, mac);
    free(msg);
    if (rc != PHR_OK) {
        svc_respond_error(r->req, rc, NULL);
        return 0;
    }
    hex_encode(mac, sizeof(mac), w->hash);
    return 1;
}

static void
rec_post(svc_t *svc, h2s_req_t *req, const sess_t *sess, int staff)
{
    rec_req_t *r = rec_req_new(svc, req, sess, staff);
    json_object *body;
    jx_errors_t errs = {.n = 0};

    if (r == NULL) {
        return;
    }
    rec_write_t *w = rec_write_new(r);
    if (w == NULL || svc_read_json(req, rec_body_fields, staff ? 4 : 5, &body) != PHR_OK) {
        return;
    }
    int flags = REC_PARSE_NO_FUTURE | (staff ? 0 : REC_PARSE_SOURCE);
    int rc = rec_parse(body, flags, tu_now_ms(), &w->in, &errs);
    json_object_put(body);
    if (rc == PHR_EINVAL) {
        h2s_respond_problem(req, 400, "validation_failed", "the record has invalid fields", &errs);
        return;
    }
    if (rc != PHR_OK) {
        svc_respond_error(req, rc, NULL);
        return;
    }
    if (!rec_post_key(r, w)) {
        return;
    }
    w->in.org_id = staff ? r->org_id : NULL;
    w->action = "records.create";
    w->details = json_object_new_object();
    json_object_object_add(w->details, "type", json_object_new_string(w->in.type->type));
    json_object_object_add(w->details, "source",
                           json_object_new_string(staff ? "clinic" : w->in.source));
    if (w->key[0] != '\0') {
        rec_post_lookup(r);
    } else {
        rec_post_begin(r);
    }
}

static void
rec_me_post(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_post(svc, req, sess, 0);
}

static void
rec_org_post(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_post(svc, req, sess, 1);
}

/* ---- PATCH and DELETE (patients, their own non-clinic records) ------------------------------ */

static const char rec_lock_sql[] = "SELECT " REC_COLUMNS " FROM records r WHERE r.id = $1::uuid "
                                   "AND r.patient_id = $2::uuid FOR UPDATE";
static const char rec_history_sql[] =
    "INSERT INTO record_history (" REC_HISTORY_COLS ") SELECT " REC_HISTORY_SELECT
    " FROM records WHERE id = $3::uuid";
static const char rec_update_sql[] = "UPDATE records AS r SET measured_at = " REC_TS(
    "$2") ", local_day = $3::date, key_id = $4::int4, sealed = $5::bytea, "
          "version = r.version + 1, updated_at = now() WHERE r.id = $1::uuid "
          "RETURNING " REC_COLUMNS;
static const char rec_delete_sql[] = "DELETE FROM records WHERE id = $1::uuid";

static void
rec_patch_updated(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;

    if (rc == PHR_OK) {
        r->status = 200;
        if (rec_row_text(rec_crypt(r->svc), res, 0, &r->text) != PHR_OK) {
            rc = PHR_EGENERIC;
        }
    }
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
        return;
    }
    rec_write_finish(r, r->record_id);
}

/* Builds the new version from the locked row and the PATCH body, then queues the change. */
static int
rec_patch_apply(rec_req_t *r, const PGresult *res)
{
    rec_write_t *w = r->priv;
    jx_errors_t errs = {.n = 0};
    json_object *values = NULL, *note = NULL, *v;
    int64_t ms;
    int key_id;
    const rectype_t *type = rectype_find(PQgetvalue(res, 0, REC_COL_TYPE));

    if (type == NULL ||
        rec_row_open(rec_crypt(r->svc), rec_tokener(r->svc), res, 0, &values, &note) != PHR_OK ||
        rec_parse_i64(PQgetvalue(res, 0, REC_COL_MEASURED_MS), &ms) != PHR_OK) {
        json_object_put(values);
        json_object_put(note);
        return PHR_EGENERIC;
    }
    json_object *changed = json_object_new_array();
    if (json_object_object_get_ex(w->body, "measured_at", &v) && v != NULL) {
        rec_check_time(json_object_get_string(v), 1, tu_now_ms(), &ms, &errs);
        json_object_array_add(changed, json_object_new_string("measured_at"));
    }
    if (json_object_object_get_ex(w->body, "values", &v) && v != NULL) {
        if (rec_check_values(type, v, &errs) == PHR_OK) {
            json_object_put(values);
            values = rec_values_copy(type, v);
        }
        json_object_array_add(changed, json_object_new_string("values"));
    }
    if (json_object_object_get_ex(w->body, "note", &v)) {
        if (v == NULL || rec_check_note(v, &errs) == PHR_OK) {
            json_object_put(note);
            note = v != NULL ? json_object_get(v) : NULL;
        }
        json_object_array_add(changed, json_object_new_string("note"));
    }
    json_object_object_add(w->details, "fields", changed);
    if (errs.n > 0 || values == NULL) {
        json_object_put(values);
        json_object_put(note);
        if (errs.n > 0) {
            rec_problem(r, 400, "validation_failed", "the record has invalid fields");
            if (rec_perrs(r) != NULL) {
                *r->perrs = errs;
            }
            return PHR_EINVAL;
        }
        return PHR_ENOMEM;
    }
    int rc = rec_seal(rec_crypt(r->svc), r->record_id, r->patient_id, type->type, values,
                      note != NULL ? json_object_get_string(note) : NULL, &key_id, &w->hex);
    json_object_put(values);
    json_object_put(note);
    if (rc != PHR_OK) {
        return rc;
    }
    snprintf(w->ms, sizeof(w->ms), "%lld", (long long)ms);
    rec_local_day(ms, w->day);
    snprintf(w->kid, sizeof(w->kid), "%d", key_id);
    const char *hp[] = {"update", r->sess->account_id, r->record_id};
    rc = db_txn_query(r->txn, rec_history_sql, 3, hp, rec_write_step, r);
    if (rc != PHR_OK) {
        return rc;
    }
    const char *up[] = {r->record_id, w->ms, w->day, w->kid, w->hex};
    rc = db_txn_query(r->txn, rec_update_sql, 5, up, rec_patch_updated, r);
    if (rc != PHR_OK) {
        r->rc = rc;
        rec_write_finish(r, NULL); /* history statement queued: end now, it reports */
        return PHR_AGAIN;
    }
    return PHR_OK;
}

static void
rec_change_locked(int rc, PGresult *res, void *ud)
{
    rec_req_t *r = ud;
    rec_write_t *w = r->priv;

    if (rc == PHR_OK && PQntuples(res) == 0) {
        rec_problem(r, 404, "not_found", "no such record");
        rc = PHR_ENOTFOUND;
    } else if (rc == PHR_OK && strcmp(PQgetvalue(res, 0, REC_COL_SOURCE), "clinic") == 0) {
        rec_problem(r, 403, "clinic_record_readonly",
                    "records written by a clinic can be read but not changed");
        rc = PHR_EDENIED;
    }
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
        return;
    }
    json_object_object_add(w->details, "type",
                           json_object_new_string(PQgetvalue(res, 0, REC_COL_TYPE)));
    if (w->body != NULL) { /* PATCH */
        rc = rec_patch_apply(r, res);
        if (rc == PHR_AGAIN) {
            return;
        }
        if (rc != PHR_OK) {
            rec_write_abort(r, rc);
        }
        return;
    }
    const char *hp[] = {"delete", r->sess->account_id, r->record_id};
    rc = db_txn_query(r->txn, rec_history_sql, 3, hp, rec_write_step, r);
    if (rc == PHR_OK) {
        const char *dp[] = {r->record_id};
        rc = db_txn_query(r->txn, rec_delete_sql, 1, dp, rec_write_step, r);
    }
    if (rc != PHR_OK && r->rc == PHR_OK) {
        r->rc = rc;
    }
    r->status = 204;
    rec_write_finish(r, r->record_id);
}

static void
rec_change_begun(int rc, db_txn_t *txn, void *ud)
{
    rec_req_t *r = ud;

    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be changed; retry later");
        return;
    }
    r->txn = txn;
    const char *p[] = {r->record_id, r->patient_id};
    rc = db_txn_query(txn, rec_lock_sql, 2, p, rec_change_locked, r);
    if (rc != PHR_OK) {
        rec_write_abort(r, rc);
    }
}

static void
rec_change(svc_t *svc, h2s_req_t *req, const sess_t *sess, int patch)
{
    static const jx_field_t fields[] = {
        {"measured_at", JX_STRING, 0, 0, -1, 1, 64, NULL},
        {"values", JX_OBJECT, 0, 0, -1, 0, 0, NULL},
        {"note", JX_STRING, 0, 0, -1, 0, REC_NOTE_MAX, NULL},
    };
    rec_req_t *r = rec_req_new(svc, req, sess, 0);

    if (r == NULL || rec_path_record(r) != PHR_OK) {
        return;
    }
    rec_write_t *w = rec_write_new(r);
    if (w == NULL) {
        return;
    }
    if (patch) {
        if (svc_read_json(req, fields, 3, &w->body) != PHR_OK) {
            return;
        }
        if (json_object_object_length(w->body) == 0) {
            rec_field_error(req, "", "name at least one of measured_at, values, note");
            return;
        }
        /* answer the checks that need no stored record before touching the database */
        jx_errors_t errs = {.n = 0};
        json_object *v;
        int64_t ms;
        if (json_object_object_get_ex(w->body, "measured_at", &v) && v != NULL) {
            rec_check_time(json_object_get_string(v), 1, tu_now_ms(), &ms, &errs);
        }
        if (json_object_object_get_ex(w->body, "note", &v) && v != NULL) {
            rec_check_note(v, &errs);
        }
        if (errs.n > 0) {
            h2s_respond_problem(req, 400, "validation_failed", "the record has invalid fields",
                                &errs);
            return;
        }
    }
    w->action = patch ? "records.update" : "records.delete";
    w->details = json_object_new_object();
    int rc = db_txn_begin(svc_db(svc), rec_change_begun, r);
    if (rc != PHR_OK) {
        rec_answer(r, rc, "the record could not be changed; retry later");
    }
}

static void
rec_me_patch(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_change(svc, req, sess, 1);
}

static void
rec_me_delete(svc_t *svc, h2s_req_t *req, const sess_t *sess)
{
    rec_change(svc, req, sess, 0);
}

static const svc_route_t rec_record_table[] = {
    {"POST", "/api/v1/me/records", rec_me_post, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/me/records", rec_me_list, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/me/records/{record_id}", rec_me_get, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"PATCH", "/api/v1/me/records/{record_id}", rec_me_patch, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"DELETE", "/api/v1/me/records/{record_id}", rec_me_delete, SVC_SESSION | SVC_NEEDS_DB, 0},
    {"GET", "/api/v1/orgs/{org_id}/patients/{patient_id}/records", rec_org_list,
     SVC_SESSION | SVC_NEEDS_DB, 0},
    {"POST", "/api/v1/orgs/{org_id}/patients/{patient_id}/records", rec_org_post,
     SVC_SESSION | SVC_NEEDS_DB, 0},
};

const svc_routes_t rec_record_routes = SVC_ROUTES(rec_record_table);
