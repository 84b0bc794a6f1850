# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# tests/ops/lib.sh - the common part of the ops checks that run against the stack of the
# environment (keys_test.sh, phrctl_test.sh, restore_drill.sh); sourced, never run.
#
# Changes to the repository root (ROOT) and takes the stack from PHR_VAR, PHR_BUILD and the
# PHR_*_PORT variables of deploy/stack.sh (the same defaults). Sets GATEWAY, PHRCTL and TMP
# (removed on exit), the counters and these functions:
#   ok NAME / not_ok NAME       one counted check ("ok - ..." / "not ok - ...")
#   check NAME CMD...           CMD's exit status decides
#   expect_rc WANT NAME CMD...  CMD exits with WANT; its stdout in $TMP/out, stderr in $TMP/err
#   not CMD...                  CMD fails
#   finish                      prints "N passed, N failed" and exits, 1 on a failure
#   adm DB SQL                  one statement as the PostgreSQL superuser; unaligned tuples
#   jq_py EXPR [FILE]           a Python expression over the JSON in FILE ($TMP/out) as `j`
#   api METHOD PATH [BODY] [TOKEN] [OUT]  through the gateway, body to OUT ($TMP/body),
#                               status on stdout; waits out the gateway's 429
#   wait_for DB SQL             polls (20 s) until SQL answers non-empty and non-zero; prints it
#   wait_ok DB SQL              wait_for without the output

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$(pwd -P)
: "${PHR_VAR:?PHR_VAR must name the directory of the running stack}"
case $PHR_VAR in /*) ;; *) PHR_VAR=$ROOT/$PHR_VAR ;; esac
PHR_BUILD=${PHR_BUILD:-build}
case $PHR_BUILD in /*) ;; *) PHR_BUILD=$ROOT/$PHR_BUILD ;; esac
export PHR_VAR PHR_BUILD
export PHR_SECRETS_DIR=${PHR_SECRETS_DIR:-$PHR_VAR/secrets}
export PHR_PG_PORT=${PHR_PG_PORT:-55432}
export PHR_PG_HOST=${PHR_PG_HOST:-127.0.0.1}
# phrctl reads the services' settings: the same defaults as deploy/stack.sh
export PHR_AUTH_PORT=${PHR_AUTH_PORT:-9101} PHR_RECORDS_PORT=${PHR_RECORDS_PORT:-9102}
export PHR_NOTIFICATION_PORT=${PHR_NOTIFICATION_PORT:-9103} PHR_AUDIT_PORT=${PHR_AUDIT_PORT:-9104}
GATEWAY=${PHR_TEST_GATEWAY:-https://127.0.0.1:${PHR_GATEWAY_PORT:-8443}}
PHRCTL=$PHR_BUILD/bin/phrctl
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0

ok() {
    passed=$((passed + 1))
    echo "ok - $1"
}

not_ok() {
    failed=$((failed + 1))
    echo "not ok - $1"
}

check() {
    local name=$1
    shift
    if "$@"; then
        ok "$name"
    else
        not_ok "$name"
        return 1
    fi
}

expect_rc() {
    local want=$1 name=$2 rc
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "$name (exit $rc)"
    else
        not_ok "$name (exit $rc, wanted $want)"
        sed 's/^/    /' "$TMP/err" | tail -n 5
    fi
}

not() { ! "$@"; }

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

adm() {
    local sock
    sock=$(head -n 1 "$PHR_VAR/run/pgdata")/sock
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -h "$sock" -p "$PHR_PG_PORT" \
            -d "$1" -c "$2"
    else
        psql -X -q -tA -v ON_ERROR_STOP=1 -h "$sock" -p "$PHR_PG_PORT" -U "$(id -un)" \
            -d "$1" -c "$2"
    fi
}

jq_py() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); r=eval(sys.argv[1]);
print(r if not isinstance(r, bool) else str(r).lower())' "$1" "${2:-$TMP/out}" 2>/dev/null
}

api() {
    local st i args=(-sk --http2 -o "${5:-$TMP/body}" -w '%{http_code}' -X "$1" --max-time 20
        -H 'content-type: application/json')
    [ -n "${3:-}" ] && args+=(--data-binary "$3")
    [ -n "${4:-}" ] && args+=(-H "authorization: Bearer $4")
    for ((i = 0; i < 60; i++)); do
        st=$(curl "${args[@]}" "$GATEWAY$2")
        [ "$st" = 429 ] || break
        sleep 0.5
    done
    printf '%s' "$st"
}

wait_for() {
    local out i
    for ((i = 0; i < 40; i++)); do
        out=$(adm "$1" "$2" 2>/dev/null)
        if [ -n "$out" ] && [ "$out" != 0 ]; then
            printf '%s\n' "$out"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

wait_ok() { wait_for "$@" >/dev/null; }
