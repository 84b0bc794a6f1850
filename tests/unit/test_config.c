/*
 * test_config.c - unit tests of common/config.c (no external services needed).
 *
 * Every PHR_* variable inherited from the environment (tests/run.sh sets
 * several) is removed before each test, so the defaults are the table's.
 * Secret files are created under a private mkdtemp() directory in $TMPDIR
 * (default /tmp), removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"

extern char **environ;

static char t_dir[256];

static int
t_clear_env(void **state)
{
    char name[128];

    for (;;) {
        char **e = environ;
        while (*e != NULL && strncmp(*e, "PHR_", 4) != 0) {
            e++;
        }
        if (*e == NULL) {
            return 0;
        }
        const char *eq = strchr(*e, '=');
        size_t n = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
        if (n >= sizeof(name)) {
            return -1;
        }
        memcpy(name, *e, n);
        name[n] = '\0';
        unsetenv(name);
    }
}

static void
t_defaults(void **state)
{
    cfg_t cfg;
    char err[256] = "";

    assert_int_equal(cfg_load(&cfg, "records", err, sizeof(err)), PHR_OK);
    assert_int_equal(cfg.service, CFG_SVC_RECORDS);
    assert_string_equal(cfg.service_name, "records");
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.port[CFG_SVC_AUTH], 9101);
    assert_int_equal(cfg.port[CFG_SVC_RECORDS], 9102);
    assert_int_equal(cfg.port[CFG_SVC_NOTIFICATION], 9103);
    assert_int_equal(cfg.port[CFG_SVC_AUDIT], 9104);
    assert_string_equal(cfg.host[CFG_SVC_AUDIT], "127.0.0.1");
    assert_int_equal(cfg.pg_port, 55432);
    assert_int_equal(cfg.pg_pool_size, 4);
    assert_int_equal(cfg.redis_port, 56379);
    assert_string_equal(cfg.secrets_dir, "var/secrets");
    assert_string_equal(cfg.log_level, "info");
    assert_int_equal(cfg.max_header_list, 16384);
    assert_int_equal(cfg.max_body, 1048576);
    assert_int_equal(cfg.max_streams, 100);
    assert_int_equal(cfg.output_cap, 262144);
    assert_int_equal(cfg.idle_timeout_ms, 60000);
    assert_int_equal(cfg.request_timeout_ms, 15000);
    assert_int_equal(cfg.drain_timeout_ms, 10000);
    assert_int_equal(cfg.session_idle_s, 1800);
    assert_int_equal(cfg.session_absolute_s, 43200);
    assert_int_equal(cfg.call_timeout_ms, 5000);
}

static void
t_services(void **state)
{
    cfg_t cfg;
    char err[256] = "";

    assert_int_equal(cfg_service_index("auth"), CFG_SVC_AUTH);
    assert_int_equal(cfg_service_index("audit"), CFG_SVC_AUDIT);
    assert_int_equal(cfg_service_index("Auth"), -1);
    assert_int_equal(cfg_service_index(NULL), -1);
    assert_string_equal(cfg_service_name(CFG_SVC_NOTIFICATION), "notification");
    assert_null(cfg_service_name(CFG_SVC_COUNT));
    assert_null(cfg_service_name(-1));
    assert_int_equal(cfg_load(&cfg, "gateway", err, sizeof(err)), PHR_EINVAL);
    assert_non_null(strstr(err, "gateway"));
    assert_int_equal(cfg_load(&cfg, NULL, err, sizeof(err)), PHR_EINVAL);
}

static void
t_overrides(void **state)
{
    cfg_t cfg;
    char err[256] = "";

    setenv("PHR_PG_PORT", "5432", 1);
    setenv("PHR_LISTEN_HOST", "0.0.0.0", 1);
    setenv("PHR_LOG_LEVEL", "debug", 1);
    setenv("PHR_MAX_STREAMS", "1", 1);
    setenv("PHR_MAX_BODY", "67108864", 1);
    setenv("PHR_DRAIN_TIMEOUT_MS", "0", 1);
    assert_int_equal(cfg_load(&cfg, "auth", err, sizeof(err)), PHR_OK);
    assert_int_equal(cfg.pg_port, 5432);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_string_equal(cfg.log_level, "debug");
    assert_int_equal(cfg.max_streams, 1);
    assert_int_equal(cfg.max_body, 67108864);
    assert_int_equal(cfg.drain_timeout_ms, 0);
}

typedef struct {
    const char *var;
    const char *value;
} t_bad_t;

static void
t_bad_values(void **state)
{
    static const t_bad_t bad[] = {
        {"PHR_PG_PORT", "abc"},
        {"PHR_PG_PORT", "12x"},
        {"PHR_PG_PORT", " "},
        {"PHR_PG_PORT", ""},
        {"PHR_PG_PORT", "0"},
        {"PHR_PG_PORT", "65536"},
        {"PHR_PG_PORT", "-1"},
        {"PHR_PG_PORT", "1.5"},
        {"PHR_PG_PORT", "99999999999999999999999"},
        {"PHR_AUTH_PORT", "70000"},
        {"PHR_MAX_STREAMS", "1001"},
        {"PHR_MAX_HEADER_LIST", "1023"},
        {"PHR_IDLE_TIMEOUT_MS", "99"},
        {"PHR_WORKERS", "0x10"},
        {"PHR_LISTEN_HOST", ""},
        {"PHR_REDIS_HOST", ""},
        {"PHR_LOG_LEVEL", "verbose"},
        {"PHR_LOG_LEVEL", "INFO"},
        {"PHR_LOG_LEVEL", ""},
        {"PHR_SESSION_IDLE_S", "50000"}, /* above the absolute lifetime */
    };
    char long_host[200];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_t cfg;
        char err[256] = "";

        t_clear_env(NULL);
        setenv(bad[i].var, bad[i].value, 1);
        int rc = cfg_load(&cfg, "auth", err, sizeof(err));
        if (rc != PHR_EINVAL) {
            fail_msg("%s='%s': rc %d, want PHR_EINVAL", bad[i].var, bad[i].value, rc);
        }
        if (strstr(err, bad[i].var) == NULL) {
            fail_msg("%s='%s': message '%s' does not name the variable", bad[i].var, bad[i].value,
                     err);
        }
    }

    /* A string longer than its buffer is refused, not truncated. */
    cfg_t cfg;
    char err[256] = "";
    t_clear_env(NULL);
    memset(long_host, 'h', sizeof(long_host) - 1);
    long_host[sizeof(long_host) - 1] = '\0';
    setenv("PHR_PG_HOST", long_host, 1);
    assert_int_equal(cfg_load(&cfg, "auth", err, sizeof(err)), PHR_EINVAL);
    assert_non_null(strstr(err, "PHR_PG_HOST"));

    /* Boundary values are accepted. */
    t_clear_env(NULL);
    setenv("PHR_PG_PORT", "65535", 1);
    setenv("PHR_REDIS_PORT", "1", 1);
    assert_int_equal(cfg_load(&cfg, "auth", err, sizeof(err)), PHR_OK);
    assert_int_equal(cfg.pg_port, 65535);
    assert_int_equal(cfg.redis_port, 1);
}

static void
t_small_err_buffer(void **state)
{
    cfg_t cfg;
    char err[8];

    setenv("PHR_PG_PORT", "abc", 1);
    memset(err, 'X', sizeof(err));
    assert_int_equal(cfg_load(&cfg, "auth", err, sizeof(err)), PHR_EINVAL);
    assert_non_null(memchr(err, '\0', sizeof(err)));
}

static void
t_write_file(const char *name, const char *content, mode_t mode)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", t_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void
t_secrets(void **state)
{
    cfg_t cfg;
    char err[256] = "";
    char buf[64];

    setenv("PHR_SECRETS_DIR", t_dir, 1);
    assert_int_equal(cfg_load(&cfg, "auth", err, sizeof(err)), PHR_OK);

    t_write_file("ok", "s3cret-value\n", 0600);
    assert_int_equal(cfg_read_secret(&cfg, "ok", buf, sizeof(buf)), PHR_OK);
    assert_string_equal(buf, "s3cret-value");

    t_write_file("crlf", "abc\r\n", 0400);
    assert_int_equal(cfg_read_secret(&cfg, "crlf", buf, sizeof(buf)), PHR_OK);
    assert_string_equal(buf, "abc");

    t_write_file("nonl", "xyz", 0600);
    assert_int_equal(cfg_read_secret(&cfg, "nonl", buf, sizeof(buf)), PHR_OK);
    assert_string_equal(buf, "xyz");

    t_write_file("group", "g\n", 0640);
    assert_int_equal(cfg_read_secret(&cfg, "group", buf, sizeof(buf)), PHR_EDENIED);
    t_write_file("other", "o\n", 0604);
    assert_int_equal(cfg_read_secret(&cfg, "other", buf, sizeof(buf)), PHR_EDENIED);
    t_write_file("gwrite", "w\n", 0620);
    assert_int_equal(cfg_read_secret(&cfg, "gwrite", buf, sizeof(buf)), PHR_EDENIED);

    assert_int_equal(cfg_read_secret(&cfg, "missing", buf, sizeof(buf)), PHR_ENOTFOUND);
    assert_int_equal(cfg_read_secret(&cfg, "../ok", buf, sizeof(buf)), PHR_EINVAL);
    assert_int_equal(cfg_read_secret(&cfg, "ok", buf, 0), PHR_EINVAL);

    /* 12 bytes + newline: a 13-byte buffer cannot hold the file read, 14 can. */
    assert_int_equal(cfg_read_secret(&cfg, "ok", buf, 13), PHR_ETOOBIG);
    assert_int_equal(cfg_read_secret(&cfg, "ok", buf, 14), PHR_OK);
    assert_string_equal(buf, "s3cret-value");

    static const char *const names[] = {"ok", "crlf", "nonl", "group", "other", "gwrite"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", t_dir, names[i]);
        unlink(path);
    }
}

static int
t_setup_dir(void **state)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(t_dir, sizeof(t_dir), "%s/phr-test-config.XXXXXX", tmp != NULL ? tmp : "/tmp");
    return mkdtemp(t_dir) != NULL ? 0 : -1;
}

static int
t_teardown_dir(void **state)
{
    return rmdir(t_dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_defaults, t_clear_env),
        cmocka_unit_test_setup(t_services, t_clear_env),
        cmocka_unit_test_setup(t_overrides, t_clear_env),
        cmocka_unit_test_setup(t_bad_values, t_clear_env),
        cmocka_unit_test_setup(t_small_err_buffer, t_clear_env),
        cmocka_unit_test_setup(t_secrets, t_clear_env),
    };
    return cmocka_run_group_tests(tests, t_setup_dir, t_teardown_dir);
}
