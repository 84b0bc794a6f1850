#!/usr/bin/env bash
# tests/soak/run.sh BUILD_DIR - the soak of issue 8 on a private stack.
#
# A fresh stack in PHR_SOAK_VAR (var/soak) with two records instances, then tests/soak/soak.py:
# seeds it (an operator, an org with its admin, staff and linked patients, patients with
# records), measures the maximum rate of the mix (logins, record reads, lists and writes, staff
# reads, exports) with a short ramp of increasing concurrency, and runs the mix at half that
# rate for SOAK_SECONDS (default 1800: the long mode of `make soak`; `make resilience` runs
# SOAK_SECONDS=180), with an operator maintenance notice to every account every minute (every
# 30 s in runs shorter than 10 minutes). Every 10 s a row of $PHR_SOAK_VAR/soak/samples.csv
# (rate, p50/p99, failures, VmRSS of every service instance and of the nginx workers, each
# service's outbox backlog and the notification queue). The checks and their definitions
# (warm-up, baseline span, drift limits) are in soak.py's header; it prints "ok <check>" /
# "FAIL <check>: detail" lines and "N passed, N failed" (also in soak/summary.txt). The stack is
# stopped at the end and its directory kept for a look.
#
# Environment: PHR_SOAK_VAR, SOAK_SECONDS, SOAK_RAMP_SECONDS (per level; default 20, 10 in runs
# shorter than 10 minutes), SOAK_LEVELS (concurrencies of the ramp, "1 2 4 8 12 16"),
# SOAK_PATIENTS (40), SOAK_NOTICE_EVERY, and the ports (defaults in brackets): PHR_GATEWAY_PORT
# [36443], PHR_PG_PORT [36432], PHR_REDIS_PORT [36479], PHR_AUTH_PORT [36101],
# PHR_RECORDS_PORT [36102; the second instance listens 10 above], PHR_NOTIFICATION_PORT
# [36103], PHR_AUDIT_PORT [36104], PHR_STANDIN_PORT [36199].
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
root=$(pwd -P)
case $1 in
    /*) build=$1 ;;
    *) build=$root/$1 ;;
esac
PY=/usr/bin/python3

export PHR_VAR=${PHR_SOAK_VAR:-$root/var/soak}
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=${PHR_GATEWAY_PORT:-36443}
export PHR_PG_PORT=${PHR_PG_PORT:-36432}
export PHR_REDIS_PORT=${PHR_REDIS_PORT:-36479}
export PHR_AUTH_PORT=${PHR_AUTH_PORT:-36101}
export PHR_RECORDS_PORT=${PHR_RECORDS_PORT:-36102}
export PHR_NOTIFICATION_PORT=${PHR_NOTIFICATION_PORT:-36103}
export PHR_AUDIT_PORT=${PHR_AUDIT_PORT:-36104}
export PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-36199}
export PHR_RECORDS_INSTANCES=2 PHR_AUTH_INSTANCES=1 PHR_NOTIFICATION_INSTANCES=1
export PHR_AUDIT_INSTANCES=1
export PHR_PG_HOST=127.0.0.1 PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
# One client address for the whole load: the gateway's per-address limits are not under test.
export NGINX_API_RATE=${NGINX_API_RATE:-100000r/s} NGINX_API_BURST=${NGINX_API_BURST:-100000}
export NGINX_LOGIN_RATE=${NGINX_LOGIN_RATE:-6000r/m} NGINX_LOGIN_BURST=${NGINX_LOGIN_BURST:-1000}
seconds=${SOAK_SECONDS:-1800}
if [ "${seconds%.*}" -lt 600 ]; then
    ramp=${SOAK_RAMP_SECONDS:-10}
    notice=${SOAK_NOTICE_EVERY:-30}
else
    ramp=${SOAK_RAMP_SECONDS:-20}
    notice=${SOAK_NOTICE_EVERY:-60}
fi

stack_up=0
cleanup() {
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        bash "$root/deploy/stack.sh" down > /dev/null 2>&1
    fi
}
trap 'cleanup' EXIT
trap 'echo "soak/run.sh: interrupted" >&2; exit 130' INT TERM

bash "$root/deploy/stack.sh" purge > /dev/null 2>&1 ||
    { echo "soak/run.sh: could not clean $PHR_VAR" >&2; exit 1; }
stack_up=1
mkdir -p "$PHR_VAR/log"
if ! bash "$root/deploy/stack.sh" up > "$PHR_VAR/log/soak-up.log" 2>&1; then
    tail -n 30 "$PHR_VAR/log/soak-up.log" >&2
    echo "soak/run.sh: the stack did not come up (see $PHR_VAR/log)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
echo "soak: stack up in $PHR_VAR (two records instances); ${seconds} s at half the maximum"

"$PY" "$root/tests/soak/soak.py" --gateway "127.0.0.1:$PHR_GATEWAY_PORT" --var "$PHR_VAR" \
    --pg-port "$PHR_PG_PORT" --standin-port "$PHR_STANDIN_PORT" --build "$build" \
    --seconds "$seconds" --ramp-seconds "$ramp" --notice-every "$notice" \
    --levels "${SOAK_LEVELS:-1 2 4 8 12 16}" --patients "${SOAK_PATIENTS:-40}"
rc=$?
if [ "$rc" -eq 2 ]; then
    echo "0 passed, 1 failed"
fi
[ "$rc" -eq 0 ]
