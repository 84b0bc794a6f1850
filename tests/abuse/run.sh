#!/usr/bin/env bash
# tests/abuse/run.sh BUILD_DIR - the abuse and scanner suite (issue 8) on a private stack.
#
# Starts a fresh stack in var/abuse on its own ports (like tests/run.sh, which it does not
# touch), runs tests/abuse/h2_abuse.py against the gateway and the records service's h2c
# port, then tests/abuse/tls_scan.sh against the gateway, then tests/abuse/scan_api.py
# (password and token checks, ffuf over other principals' ids, sqlmap over every route
# with parameters), and stops the stack (also on failure or Ctrl-C). The API rate limit
# is raised so the probes measure the HTTP/2 layer,
# not the limiter. Prints "N passed, N failed" (sum of all); exit 1 on any failure.
#
# Environment: H2_ABUSE_ARGS (extra arguments for h2_abuse.py, e.g. "--only ping-flood"),
# TLS_SCAN_ARGS (for tls_scan.sh, e.g. "--quick"), PHR_ABUSE_SKIP_TLS=1 skips the scan,
# SCAN_API_ARGS (for scan_api.py, e.g. "--only auth,ffuf"), PHR_ABUSE_SKIP_SCAN=1 skips it.
# Needs python3-h2, python3-yaml, testssl.sh, sqlmap and ffuf (deploy/deps.sh).
set -uo pipefail

# shellcheck source=tests/lib/buildarg.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/buildarg.sh"
buildarg "$@"

export PHR_VAR=$root/var/abuse
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=21443
export PHR_PG_PORT=21432
export PHR_REDIS_PORT=21379
export PHR_AUTH_PORT=21101
export PHR_RECORDS_PORT=21102
export PHR_NOTIFICATION_PORT=21103
export PHR_AUDIT_PORT=21104
export PHR_STANDIN_PORT=21199
export PHR_PG_HOST=127.0.0.1
export PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
export NGINX_API_RATE=${NGINX_API_RATE:-100000r/s}
export NGINX_API_BURST=${NGINX_API_BURST:-100000}

stack_up=0
stop_stack() {
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        bash "$root/deploy/stack.sh" down
    fi
}
trap 'stop_stack' EXIT
trap 'echo "abuse/run.sh: interrupted" >&2; stop_stack; exit 130' INT TERM

passed=0
failed=0
# count LOG: adds the last "N passed, N failed" line of LOG; none counts as 1 failed.
count() {
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        echo "abuse/run.sh: $(basename "$1" .log) printed no test count" >&2
        failed=$((failed + 1))
    fi
}

bash "$root/deploy/stack.sh" purge || { echo "abuse/run.sh: could not clean $PHR_VAR" >&2; exit 1; }
stack_up=1
if ! bash "$root/deploy/stack.sh" up; then
    echo "abuse/run.sh: FAILED: the stack did not come up (see $PHR_VAR/log)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
logdir=$PHR_VAR/log/abuse
mkdir -p "$logdir"

echo "=== h2_abuse.py"
# shellcheck disable=SC2086 # H2_ABUSE_ARGS is a list of arguments
"$PY" "$root/tests/abuse/h2_abuse.py" --var "$PHR_VAR" \
    --gateway "127.0.0.1:$PHR_GATEWAY_PORT" --service "records=127.0.0.1:$PHR_RECORDS_PORT" \
    ${H2_ABUSE_ARGS:-} 2>&1 | tee "$logdir/h2_abuse.log"
count "$logdir/h2_abuse.log"

if [ "${PHR_ABUSE_SKIP_TLS:-0}" != 1 ]; then
    echo "=== tls_scan.sh"
    # shellcheck disable=SC2086 # TLS_SCAN_ARGS is a list of arguments
    bash "$root/tests/abuse/tls_scan.sh" ${TLS_SCAN_ARGS:-} "127.0.0.1:$PHR_GATEWAY_PORT" \
        "$logdir/testssl.json" 2>&1 | tee "$logdir/tls_scan.log"
    count "$logdir/tls_scan.log"
fi

if [ "${PHR_ABUSE_SKIP_SCAN:-0}" != 1 ]; then
    echo "=== scan_api.py"
    # shellcheck disable=SC2086 # SCAN_API_ARGS is a list of arguments
    PHR_TEST_GATEWAY="https://127.0.0.1:$PHR_GATEWAY_PORT" PHR_TEST_VAR=$PHR_VAR \
        PHR_TEST_PG_HOST=127.0.0.1 PHR_TEST_PG_PORT=$PHR_PG_PORT PHR_TEST_REDIS_HOST=127.0.0.1 \
        PHR_TEST_REDIS_PORT=$PHR_REDIS_PORT \
        PHR_TEST_REDIS_PASSWORD="$(cat "$PHR_SECRETS_DIR/redis.password")" \
        "$PY" "$root/tests/abuse/scan_api.py" --log-dir "$logdir" \
        ${SCAN_API_ARGS:-} 2>&1 | tee "$logdir/scan_api.log"
    count "$logdir/scan_api.log"
fi

stop_stack
trap - EXIT
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
