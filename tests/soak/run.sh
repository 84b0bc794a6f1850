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
# [23443], PHR_PG_PORT [23432], PHR_REDIS_PORT [23479], PHR_AUTH_PORT [23101],
# PHR_RECORDS_PORT [23102; the second instance listens 10 above], PHR_NOTIFICATION_PORT
# [23103], PHR_AUDIT_PORT [23104], PHR_STANDIN_PORT [23199].
set -uo pipefail

# shellcheck source=tests/lib/loadstack.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/loadstack.sh"
loadstack_env soak 23000 "$@"
export PHR_PG_PORT=$pg_port
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
