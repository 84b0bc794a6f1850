#!/usr/bin/env bash
# tests/bench/export_bench.sh - export of N records (issue 4): time and peak RSS of phr-records.
#
# Runs against an already running stack (deploy/stack.sh up) named by the usual environment:
# PHR_VAR (var dir: secrets, tls, run/records.pid) and PHR_GATEWAY_PORT (default 8443).
# For each N of EXPORT_BENCH_SIZES (default "1000 10000") a fresh patient is registered and
# given N records through POST /api/v1/me/import (bundles of 5000), then the export is read in
# each format (json, fhir, csv) through the gateway with curl. Before every export the peak RSS
# of phr-records is reset (echo 5 > /proc/PID/clear_refs), so VmHWM after the export is that
# export's own peak, and its growth is the peak minus the RSS just before. Prints one line per
# export and a Markdown table, then the verdict: the growth for the largest N must stay within
# EXPORT_BENCH_RSS_SLACK_KB (default 8192) of the growth for the smallest N (export RSS must
# not grow with the number of records).
#
# Exit status: 0 when the exports ran and the peak did not grow; 1 when it grew; 2 when the
# bench could not run (stack down, a non-2xx answer, record count mismatch).
set -uo pipefail

VAR=${PHR_VAR:-var}
PORT=${PHR_GATEWAY_PORT:-8443}
GW=https://127.0.0.1:$PORT
CA=$VAR/tls/server.crt
SIZES=${EXPORT_BENCH_SIZES:-1000 10000}
SLACK=${EXPORT_BENCH_RSS_SLACK_KB:-8192}
PW='Blue7Harbor!qBench'
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

die() {
    echo "export_bench: $*" >&2
    exit 2
}

pid=$(head -n 1 "$VAR/run/records.pid" 2>/dev/null) || die "no $VAR/run/records.pid (stack down?)"
[ -r "/proc/$pid/status" ] || die "phr-records (pid $pid) is not running"

hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

# post PATH BODY_FILE [TOKEN] -> body on stdout, status in $TMP/status
post() {
    local auth=()
    [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
    curl -sS --http2 --cacert "$CA" -o "$TMP/out" -w '%{http_code}' -H 'Content-Type: application/json' \
        "${auth[@]}" --data-binary "@$2" "$GW$1" >"$TMP/status" || die "curl $1 failed"
    cat "$TMP/out"
}

# patient -> "id token"
patient() {
    local email
    email="bench-export-$(date +%s%N)-$$@example.com"
    printf '{"email":"%s","password":"%s","name":"Bench Export"}' "$email" "$PW" >"$TMP/reg"
    local id
    id=$(post /api/v1/auth/register "$TMP/reg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') ||
        die "register failed ($(cat "$TMP/status"))"
    printf '{"email":"%s","password":"%s"}' "$email" "$PW" >"$TMP/login"
    local token=""
    for _ in $(seq 1 60); do
        token=$(post /api/v1/auth/login "$TMP/login" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))' 2>/dev/null)
        [ "$(cat "$TMP/status")" = 200 ] && break
        sleep 1
    done
    [ -n "$token" ] || die "login failed ($(cat "$TMP/status"))"
    echo "$id $token"
}

# bundle FIRST COUNT FILE: COUNT blood pressures (every 4th with a note) a minute apart
bundle() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys, datetime
first, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = datetime.datetime(2025, 12, 31, tzinfo=datetime.timezone.utc)
def q(v):
    return {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
def c(code, v):
    return {"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": q(v)}
entries = []
for i in range(first, first + count):
    at = (base - datetime.timedelta(minutes=i)).isoformat()
    r = {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
         "effectiveDateTime": at,
         "component": [c("8480-6", 100 + i % 90), c("8462-4", 60 + i % 40)]}
    if i % 4 == 0:
        r["note"] = [{"text": "bench note, \"quoted\" %d" % i}]
    entries.append({"resource": r})
json.dump({"resourceType": "Bundle", "type": "collection", "entry": entries}, open(path, "w"))
EOF
}

rows=()
declare -A peak
for n in $SIZES; do
    read -r _ token < <(patient)
    done_n=0
    while [ "$done_n" -lt "$n" ]; do
        chunk=$((n - done_n < 5000 ? n - done_n : 5000))
        bundle "$done_n" "$chunk" "$TMP/bundle.json"
        post /api/v1/me/import "$TMP/bundle.json" "$token" >/dev/null
        [ "$(cat "$TMP/status")" = 200 ] || die "import of $chunk failed ($(cat "$TMP/status")): $(head -c 300 "$TMP/out")"
        done_n=$((done_n + chunk))
    done
    for fmt in json fhir csv; do
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || die "cannot reset the peak RSS of pid $pid"
        before=$(rss_kb)
        out=$(curl -sS --http2 --cacert "$CA" -o "$TMP/export" -w '%{http_code} %{time_total} %{size_download}' \
            -H "Authorization: Bearer $token" "$GW/api/v1/me/export?format=$fmt") || die "export failed"
        read -r code secs bytes <<<"$out"
        [ "$code" = 200 ] || die "export $fmt of $n: HTTP $code"
        hwm=$(hwm_kb)
        case $fmt in
        json) got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["records"]))' "$TMP/export") ;;
        fhir) got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entry"]) - 1)' "$TMP/export") ;;
        csv) got=$(python3 -c 'import csv,sys; print(len({r[0] for r in list(csv.reader(open(sys.argv[1], newline="")))[1:]}))' "$TMP/export") ;;
        esac
        [ "$got" = "$n" ] || die "export $fmt of $n records held $got"
        echo "export_bench: n=$n format=$fmt time=${secs}s bytes=$bytes rss_before_kb=$before peak_kb=$hwm"
        rows+=("| $n | $fmt | $secs | $bytes | $before | $hwm | $((hwm - before)) |")
        peak[$n:$fmt]=$((hwm - before))
    done
done

echo
echo "| records | format | time (s) | bytes | RSS before (KiB) | peak RSS (KiB) | growth (KiB) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo

# shellcheck disable=SC2206
sizes=($SIZES)
small=${sizes[0]}
large=${sizes[${#sizes[@]}-1]}
grew=0
for fmt in json fhir csv; do
    a=${peak[$small:$fmt]} b=${peak[$large:$fmt]}
    if [ $((b - a)) -gt "$SLACK" ]; then
        echo "export_bench: $fmt export RSS growth rose from $a KiB ($small records) to $b KiB ($large records)"
        grew=1
    else
        echo "export_bench: $fmt export RSS growth $a KiB ($small records) vs $b KiB ($large records): bounded"
    fi
done
exit $grew
