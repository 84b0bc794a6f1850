#!/usr/bin/env bash
# tests/run.sh unit|all BUILD_DIR - run the tests against a private, fresh stack.
#
#   unit  PostgreSQL + Redis only (stack.sh up-deps), then every BUILD_DIR/tests/test_*
#         (cmocka binaries).
#   all   the whole stack (stack.sh up), the cmocka binaries, then BUILD_DIR/tests/itest.
#
# The private stack lives in var/test (removed first, after stopping anything left there)
# on its own ports, so a stack a person runs is never touched. It is stopped at the end,
# also on failure or Ctrl-C.
#
# Environment given to every test binary:
#   PHR_TEST_VAR             absolute path of var/test
#   PHR_TEST_GATEWAY         https://127.0.0.1:18443 (self-signed: PHR_TEST_VAR/tls/server.crt)
#   PHR_TEST_PG_HOST/PORT    127.0.0.1 / 18432
#   PHR_TEST_PG_CONNINFO     libpq conninfo for database phr_test, role phr_test
#   PHR_TEST_REDIS_HOST/PORT/PASSWORD   127.0.0.1 / 18379 / the password
#   PHR_SECRETS_DIR, PHR_BUILD, PHR_GATEWAY_PORT, PHR_PG_PORT, PHR_REDIS_PORT,
#   PHR_{AUTH,RECORDS,NOTIFICATION,AUDIT}_PORT (19101-19104), PHR_STANDIN_PORT (19199,
#   provider stand-in: http://127.0.0.1:19199/__messages), PHR_PG_HOST, PHR_REDIS_HOST,
#   CMOCKA_MESSAGE_OUTPUT=STDOUT
# PHR_TEST_TIMEOUT (default 1200) bounds each binary's run time in seconds: a hang guard with
# room for a loaded machine (the integration suite passed 600 s in a CI run that shared the
# 2 cores with a 30-minute soak and the fault suite).
# PHR_ITEST_ONLY=<substring> (development) runs only the integration cases whose name has it.
#
# Output of each binary goes to the console and var/test/log/tests/<name>.log. Counting:
# cmocka's "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s), listed below:" lines, the
# itest's final "N passed, N failed" line; a binary that exits non-zero (or prints no
# count) without reporting a failure counts as 1 failed. The last line printed is
# "N passed, N failed"; exit status 1 if anything failed or nothing ran.
set -uo pipefail

if [ $# -ne 2 ] || { [ "$1" != unit ] && [ "$1" != all ]; }; then
    echo "usage: $0 unit|all BUILD_DIR" >&2
    exit 2
fi
mode=$1
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
root=$(pwd -P)
case $2 in
    /*) build=$2 ;;
    *) build=$root/$2 ;;
esac

export PHR_VAR=$root/var/test
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=18443
# The strict login zone stays on, sized so the suite's own logins fit in one window;
# tests/integration/test_faults.c floods it past the burst and expects 429s.
export NGINX_LOGIN_RATE=${NGINX_LOGIN_RATE:-600r/m}
export NGINX_LOGIN_BURST=${NGINX_LOGIN_BURST:-300}
export PHR_PG_PORT=18432
export PHR_REDIS_PORT=18379
export PHR_AUTH_PORT=19101
export PHR_RECORDS_PORT=19102
export PHR_NOTIFICATION_PORT=19103
export PHR_AUDIT_PORT=19104
export PHR_STANDIN_PORT=19199
# Delivery retries, the stale-claim reaper and provider timeouts on a test scale.
export PHR_NOTIFY_CLAIM_TIMEOUT_S=${PHR_NOTIFY_CLAIM_TIMEOUT_S:-8}
export PHR_PROVIDER_TIMEOUT_MS=${PHR_PROVIDER_TIMEOUT_MS:-5000}
export PHR_NOTIFY_BACKOFF_BASE_MS=${PHR_NOTIFY_BACKOFF_BASE_MS:-100}
export PHR_NOTIFY_BACKOFF_MAX_MS=${PHR_NOTIFY_BACKOFF_MAX_MS:-1000}
export PHR_NOTIFY_BATCH=${PHR_NOTIFY_BATCH:-20}
export PHR_PG_HOST=127.0.0.1
export PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
export CMOCKA_MESSAGE_OUTPUT=STDOUT
timeout_s=${PHR_TEST_TIMEOUT:-1200}

passed=0
failed=0
ran=0
stack_up=0

stack() {
    bash "$root/deploy/stack.sh" "$@"
}

stop_stack() {
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        stack down
    fi
}

trap 'stop_stack' EXIT
trap 'echo "run.sh: interrupted" >&2; stop_stack; exit 130' INT TERM

# ---- fresh private stack ----
stack purge || { echo "run.sh: could not clean $PHR_VAR" >&2; exit 1; }
stack_up=1
if [ "$mode" = all ]; then
    stack up
else
    stack up-deps
fi
up_rc=$?
if [ "$up_rc" -ne 0 ]; then
    echo "run.sh: FAILED: the test stack did not come up (see $PHR_VAR/log)" >&2
    failed=$((failed + 1))
fi

export PHR_TEST_VAR=$PHR_VAR
export PHR_TEST_GATEWAY=https://127.0.0.1:$PHR_GATEWAY_PORT
export PHR_TEST_PG_HOST=127.0.0.1
export PHR_TEST_PG_PORT=$PHR_PG_PORT
export PHR_TEST_REDIS_HOST=127.0.0.1
export PHR_TEST_REDIS_PORT=$PHR_REDIS_PORT
PHR_TEST_REDIS_PASSWORD=$(head -n 1 "$PHR_SECRETS_DIR/redis.password" 2>/dev/null)
export PHR_TEST_REDIS_PASSWORD
pg_test_pw=$(head -n 1 "$PHR_SECRETS_DIR/pg_test.password" 2>/dev/null)
PHR_TEST_PG_CONNINFO="host=127.0.0.1 port=$PHR_PG_PORT dbname=phr_test user=phr_test"
PHR_TEST_PG_CONNINFO+=" password=$pg_test_pw connect_timeout=5"
export PHR_TEST_PG_CONNINFO

logdir=$PHR_VAR/log/tests
mkdir -p "$logdir"

# run_one KIND BINARY [ARG...]: run, tee the output, add the counts to passed/failed.
run_one() {
    local kind=$1 bin=$2 name log rc p=0 f=0 counted=0 line
    name=$(basename "$bin")
    log=$logdir/$name.log
    echo "=== $name"
    timeout --foreground --kill-after=10 "$timeout_s" "$bin" "${@:3}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    ran=$((ran + 1))
    if [ "$kind" = cmocka ]; then
        while IFS= read -r line; do
            if [[ $line =~ ^\[\ \ PASSED\ \ \]\ ([0-9]+)\ test\(s\)\. ]]; then
                p=$((p + BASH_REMATCH[1]))
                counted=1
            elif [[ $line =~ ^\[\ \ FAILED\ \ \]\ ([0-9]+)\ test\(s\),\ listed\ below: ]]; then
                f=$((f + BASH_REMATCH[1]))
                counted=1
            fi
        done < "$log"
    else
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
        if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
            p=${BASH_REMATCH[1]}
            f=${BASH_REMATCH[2]}
            counted=1
        fi
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "run.sh: $name timed out after ${timeout_s}s" | tee -a "$log"
        else
            echo "run.sh: $name exited with status $rc" | tee -a "$log"
        fi
        f=1
    elif [ "$counted" -eq 0 ]; then
        echo "run.sh: $name printed no test count" | tee -a "$log"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

shopt -s nullglob
if [ -n "${PHR_ITEST_ONLY:-}" ]; then # development: only the integration cases matching it
    run_one itest "$build/tests/itest" "$PHR_ITEST_ONLY"
    mode=none
fi
for bin in "$build"/tests/test_*; do
    if [ "$mode" = none ] || [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    run_one cmocka "$bin"
done
if [ "$mode" = all ]; then
    if [ -x "$build/tests/itest" ]; then
        run_one itest "$build/tests/itest"
    else
        echo "run.sh: no $build/tests/itest; integration tests skipped"
    fi
    # The staff console in Debian's chromium through the gateway (issue 9).
    run_one itest "$root/services/console/tests/run.sh"
    # Every route x every principal against proto/authz-matrix.json (issue 8).
    run_one itest "$root/tests/authz/run.py"
    run_one itest "$root/tests/ops/phrctl_test.sh" # operator CLI org/status/retention
    run_one itest "$root/tests/ops/keys_test.sh" # data key rotation (phrctl keys)
    # Backups: back up the filled stack, destroy, restore, compare (tests/ops/restore_drill.sh).
    if [ "${PHR_SKIP_DRILL:-0}" != 1 ]; then
        run_one itest "$root/tests/ops/restore_drill.sh"
    fi
    run_one itest "$root/tests/ops/migrate_test.sh" # audit owner migrations (last: drops its db)
fi

stop_stack
trap - EXIT

if [ "$ran" -eq 0 ]; then
    echo "run.sh: no test binaries in $build/tests"
fi
echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ] || [ "$ran" -eq 0 ]; then
    exit 1
fi
exit 0
