/*
 * test_log.c - unit tests of common/log.c (no external services needed).
 *
 * stderr is redirected (dup2) to an unlinked temporary file while a test
 * logs; every line is parsed back with json-c. Cases that could crash the
 * process run in a forked child so the other tests still report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "log.h"
#include "timeutil.h"

static int t_saved_fd = -1;
static FILE *t_cap;

static void
t_capture_begin(void)
{
    fflush(stderr);
    t_cap = tmpfile();
    assert_non_null(t_cap);
    t_saved_fd = dup(STDERR_FILENO);
    assert_true(t_saved_fd >= 0);
    assert_int_equal(dup2(fileno(t_cap), STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr; returns what was written (caller frees). */
static char *
t_capture_end(size_t *lenp)
{
    fflush(stderr);
    dup2(t_saved_fd, STDERR_FILENO);
    close(t_saved_fd);
    t_saved_fd = -1;
    long len = ftell(t_cap);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    rewind(t_cap);
    assert_int_equal(fread(buf, 1, (size_t)len, t_cap), (size_t)len);
    buf[len] = '\0';
    fclose(t_cap);
    t_cap = NULL;
    if (lenp != NULL) {
        *lenp = (size_t)len;
    }
    return buf;
}

static int
t_count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* Parses |line| (without its '\n') as a JSON object; NULL when invalid. */
static json_object *
t_parse_line(const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, line, (int)len);
    if (o != NULL &&
        (json_tokener_get_error(tok) != json_tokener_success ||
         json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static const char *
t_str(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

static void
t_fields(void **state)
{
    log_init("auth", "debug");
    t_capture_begin();
    log_msg(LOGL_WARN, "rid-123", "user %d logged %s", 42, "in");
    char *out = t_capture_end(NULL);

    assert_int_equal(t_count_lines(out), 1);
    size_t n = strlen(out);
    assert_int_equal(out[n - 1], '\n');
    json_object *o = t_parse_line(out, n - 1);
    assert_non_null(o);
    assert_string_equal(t_str(o, "level"), "warn");
    assert_string_equal(t_str(o, "service"), "auth");
    assert_string_equal(t_str(o, "request_id"), "rid-123");
    assert_string_equal(t_str(o, "msg"), "user 42 logged in");
    const char *ts = t_str(o, "ts");
    assert_non_null(ts);
    assert_int_equal(strlen(ts), TU_JST_LEN - 1);
    assert_string_equal(ts + 23, "+09:00");
    int64_t when = 0;
    assert_int_equal(tu_parse_rfc3339(ts, &when), 0);
    assert_true(llabs(when - tu_now_ms()) < 5000);
    json_object_put(o);
    free(out);
}

static void
t_macros_and_no_request_id(void **state)
{
    log_init("records", "debug");
    t_capture_begin();
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    log_msg(LOGL_INFO, "", "empty id");
    char *out = t_capture_end(NULL);

    static const char *const levels[] = {"debug", "info", "warn", "error", "info"};
    static const char *const msgs[] = {"d", "i", "w", "e", "empty id"};
    assert_int_equal(t_count_lines(out), 5);
    char *line = out;
    for (int i = 0; i < 5; i++) {
        char *nl = strchr(line, '\n');
        json_object *o = t_parse_line(line, (size_t)(nl - line));
        assert_non_null(o);
        assert_string_equal(t_str(o, "level"), levels[i]);
        assert_string_equal(t_str(o, "msg"), msgs[i]);
        assert_string_equal(t_str(o, "service"), "records");
        assert_false(json_object_object_get_ex(o, "request_id", NULL));
        json_object_put(o);
        line = nl + 1;
    }
    free(out);
}

static void
t_escaping(void **state)
{
    log_init("svc\"x", "info");
    t_capture_begin();
    log_msg(LOGL_INFO, "id\"\\",
            "q\"uote b\\ack nl\nl tab\tt cr\r bell\a del\x7f utf8 \xe6\x97\xa5");
    char *out = t_capture_end(NULL);

    assert_int_equal(t_count_lines(out), 1); /* the newline in the message is escaped */
    assert_null(strchr(out, '\t'));
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\a'));
    assert_null(strchr(out, 0x7f));
    assert_non_null(strstr(out, "q\\\"uote b\\\\ack nl\\nl tab\\u0009t cr\\u000d bell\\u0007"));
    assert_non_null(strstr(out, "del\\u007f"));
    json_object *o = t_parse_line(out, strlen(out) - 1);
    assert_non_null(o);
    assert_string_equal(t_str(o, "msg"),
                        "q\"uote b\\ack nl\nl tab\tt cr\r bell\a del\x7f utf8 \xe6\x97\xa5");
    assert_string_equal(t_str(o, "service"), "svc\"x");
    assert_string_equal(t_str(o, "request_id"), "id\"\\");
    json_object_put(o);
    free(out);
}

static void
t_level_filter(void **state)
{
    log_init("auth", "warn");
    t_capture_begin();
    log_debug("no");
    log_info("no");
    log_warn("yes1");
    log_error("yes2");
    log_access(&(log_access_t){.request_id = "r", .method = "GET", .path = "/", .status = 200});
    /* An unknown level keeps the current one. */
    log_init("auth", "loud");
    log_info("no");
    log_error("yes3");
    log_init("auth", "error");
    log_warn("no");
    log_error("yes4");
    log_init("auth", "debug");
    log_debug("yes5");
    char *out = t_capture_end(NULL);

    assert_int_equal(t_count_lines(out), 5);
    assert_null(strstr(out, "\"no\""));
    assert_null(strstr(out, "access"));
    for (int i = 1; i <= 5; i++) {
        char want[32];
        snprintf(want, sizeof(want), "\"yes%d\"", i);
        assert_non_null(strstr(out, want));
    }
    free(out);
}

static void
t_access(void **state)
{
    log_access_t a = {
        .request_id = "0123456789abcdef0123456789abcdef",
        .method = "POST",
        .path = "/api/v1/records/\"x\"",
        .route = "/api/v1/records/{id}",
        .status = 201,
        .bytes_in = 17,
        .bytes_out = 1234,
        .duration_ms = 1.5,
        .peer = "127.0.0.1:5555",
    };

    log_init("records", "info");
    t_capture_begin();
    log_access(&a);
    a.route = NULL;
    a.peer = NULL;
    log_access(&a);
    char *out = t_capture_end(NULL);

    assert_int_equal(t_count_lines(out), 2);
    char *nl = strchr(out, '\n');
    json_object *o = t_parse_line(out, (size_t)(nl - out));
    assert_non_null(o);
    assert_string_equal(t_str(o, "msg"), "access");
    assert_string_equal(t_str(o, "method"), "POST");
    assert_string_equal(t_str(o, "path"), "/api/v1/records/\"x\"");
    assert_string_equal(t_str(o, "route"), "/api/v1/records/{id}");
    assert_string_equal(t_str(o, "peer"), "127.0.0.1:5555");
    assert_string_equal(t_str(o, "request_id"), a.request_id);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), 201);
    assert_true(json_object_object_get_ex(o, "bytes_in", &v));
    assert_int_equal(json_object_get_int(v), 17);
    assert_true(json_object_object_get_ex(o, "bytes_out", &v));
    assert_int_equal(json_object_get_int(v), 1234);
    assert_true(json_object_object_get_ex(o, "ms", &v));
    assert_true(json_object_get_double(v) > 1.49 && json_object_get_double(v) < 1.51);
    json_object_put(o);

    o = t_parse_line(nl + 1, strlen(nl + 1) - 1);
    assert_non_null(o);
    assert_string_equal(t_str(o, "route"), "-");
    assert_string_equal(t_str(o, "peer"), "-");
    json_object_put(o);
    free(out);
}

static void
t_escape_fn(void **state)
{
    char out[16];
    size_t len = 0;

    log_json_escape(out, sizeof(out), &len, "a\"b");
    assert_string_equal(out, "a\\\"b");
    assert_int_equal(len, 4);
    log_json_escape(out, sizeof(out), &len, NULL);
    assert_int_equal(len, 4);
    /* every ASCII byte: plain ones as they are, the rest as JSON escapes that parse back */
    for (int c = 1; c < 128; c++) {
        char in[4] = {'a', (char)c, 'b', '\0'};
        char esc[32] = "\"";
        size_t elen = 1;
        log_json_escape(esc, sizeof(esc) - 2, &elen, in);
        esc[elen++] = '"';
        esc[elen] = '\0';
        int plain = c >= 0x20 && c != '"' && c != '\\' && c != 0x7f;
        assert_int_equal(elen, plain ? 5u : (c == '"' || c == '\\' || c == '\n') ? 6u : 10u);
        json_object *o = json_tokener_parse(esc);
        assert_non_null(o);
        assert_string_equal(json_object_get_string(o), in);
        json_object_put(o);
    }
    /* Truncates without splitting an escape and stays terminated. */
    len = 0;
    log_json_escape(out, sizeof(out), &len, "\x01\x02\x03\x04");
    assert_int_equal(len, 12);
    assert_string_equal(out, "\\u0001\\u0002");
    len = 0;
    log_json_escape(out, sizeof(out), &len, "0123456789abcdefghij");
    assert_true(len < sizeof(out));
    assert_int_equal(out[len], '\0');
    assert_int_equal(strncmp(out, "0123456789abcdefghij", len), 0);
}

/* The access line's numbers are what printf would write: status, sizes and %.3f milliseconds. */
static void
t_access_numbers(void **state)
{
    (void)state;
    static const double ms[] = {0,      0.0004,  0.0006,   0.25,       1.5, 9.9994,
                                9.9996, 12.3456, 999.9996, 123456.789, -3};
    log_init("records", "info");
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        log_access_t a = {.request_id = "r",
                          .method = "GET",
                          .path = "/",
                          .status = 200 + (int)i,
                          .bytes_in = i * 1000003u,
                          .bytes_out = SIZE_MAX - i,
                          .duration_ms = ms[i]};
        t_capture_begin();
        log_access(&a);
        char *out = t_capture_end(NULL);
        char want[160];
        snprintf(want, sizeof(want),
                 ",\"status\":%d,\"bytes_in\":%zu,\"bytes_out\":%zu,\"ms\":%.3f}\n", a.status,
                 a.bytes_in, a.bytes_out, ms[i] > 0 ? ms[i] : 0.0);
        assert_non_null(out);
        size_t n = strlen(out), w = strlen(want);
        assert_true(n >= w);
        assert_string_equal(out + n - w, want);
        free(out);
    }
}

/*
 * Runs |fn| in a child with stderr going to a temp file; returns the
 * child's wait status and fills |out| with what it wrote (caller frees).
 */
static int
t_in_child(void (*fn)(void), char **out)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fileno(f), STDERR_FILENO);
        fn();
        fflush(stderr);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    long len = ftell(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    rewind(f);
    *out = malloc((size_t)len + 1);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)len, f), (size_t)len);
    (*out)[len] = '\0';
    fclose(f);
    return st;
}

static void
t_check_lines_valid(const char *out, int want_lines)
{
    int lines = 0;
    const char *line = out;
    const char *nl;

    while ((nl = strchr(line, '\n')) != NULL) {
        json_object *o = t_parse_line(line, (size_t)(nl - line));
        if (o == NULL) {
            fail_msg("line %d is not a JSON object (%zu bytes): ...%.60s", lines + 1,
                     (size_t)(nl - line), nl - line > 60 ? nl - 60 : line);
        }
        json_object_put(o);
        lines++;
        line = nl + 1;
    }
    if (*line != '\0') {
        fail_msg("output does not end with a newline (%zu trailing bytes)", strlen(line));
    }
    assert_int_equal(lines, want_lines);
}

/* Messages of control characters fill the line buffer at every alignment. */
static void
t_child_long_msgs(void)
{
    char msg[1100];

    log_init("auth", "debug");
    for (int pre = 0; pre < 6; pre++) {
        memset(msg, 'a', (size_t)pre);
        memset(msg + pre, '\x01', sizeof(msg) - 1 - (size_t)pre);
        msg[sizeof(msg) - 1] = '\0';
        log_msg(LOGL_INFO, "rid", "%s", msg);
    }
    memset(msg, 'b', sizeof(msg) - 1);
    log_msg(LOGL_INFO, "rid", "%s", msg);
}

static void
t_long_messages(void **state)
{
    char *out = NULL;
    int st = t_in_child(t_child_long_msgs, &out);

    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fail_msg("log_msg with a long escaped message crashed the process (status 0x%x)", st);
    }
    t_check_lines_valid(out, 7);
    free(out);
}

static void
t_child_long_access(void)
{
    char path[3000];

    log_init("records", "info");
    path[0] = '/';
    memset(path + 1, 'p', sizeof(path) - 2);
    path[sizeof(path) - 1] = '\0';
    log_access(&(log_access_t){.request_id = "r1",
                               .method = "GET",
                               .path = path,
                               .route = "-",
                               .status = 404,
                               .peer = "p"});
    log_access(&(log_access_t){.request_id = "r2",
                               .method = "GET",
                               .path = "/short",
                               .route = "-",
                               .status = 200,
                               .peer = "p"});
}

static void
t_long_access_path(void **state)
{
    char *out = NULL;
    int st = t_in_child(t_child_long_access, &out);

    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* A path longer than the line buffer still yields one complete JSON line. */
    t_check_lines_valid(out, 2);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_fields),           cmocka_unit_test(t_macros_and_no_request_id),
        cmocka_unit_test(t_escaping),         cmocka_unit_test(t_level_filter),
        cmocka_unit_test(t_access),           cmocka_unit_test(t_access_numbers),
        cmocka_unit_test(t_escape_fn),        cmocka_unit_test(t_long_messages),
        cmocka_unit_test(t_long_access_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
