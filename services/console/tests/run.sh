#!/usr/bin/env bash
# services/console/tests/run.sh - the staff console's browser tests against a running stack.
#
# Needs the environment the integration tests get (tests/run.sh): PHR_TEST_GATEWAY,
# PHR_TEST_VAR, PHR_TEST_PG_HOST, PHR_TEST_PG_PORT, PHR_STANDIN_PORT, PHR_BUILD (for
# bin/phrctl); the console built (make console) and served by that gateway; Debian's
# chromium (PHR_CHROMIUM, default /usr/bin/chromium). Screenshots: PHR_CONSOLE_ARTIFACTS
# (default $PHR_TEST_VAR/console-artifacts). Each tests/e2e/*.mjs (but lib.mjs) prints its
# own count; a file that dies without one counts as 1 failed. Prints the total
# "N passed, N failed" last; exit 1 on any failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

if ! command -v node >/dev/null 2>&1 || [ ! -x "${PHR_CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "console tests: node or chromium missing (make deps)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund --loglevel=error || { echo "0 passed, 1 failed"; exit 1; }
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
for t in tests/e2e/*.mjs; do
    [ "$t" = tests/e2e/lib.mjs ] && continue
    timeout "${PHR_TEST_TIMEOUT:-600}" node "$t" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        read -r p _ f _ <<< "$line"
        passed=$((passed + p))
        failed=$((failed + f))
        [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
    else
        echo "$t: exit $rc without a count"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
