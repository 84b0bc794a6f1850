#!/usr/bin/env bash
# tests/bench/run.sh BUILD_DIR - `make bench`: h2load against a private stack and nginx
# baselines; prints a Markdown report and rewrites the "Latest run" section of BENCHMARKS.md.
#
# Cases (baseline and ours alternate in this one invocation, BENCH_ROUNDS rounds each):
#   livez-h2c    GET /livez of phr-auth over h2c vs nginx `return 200` over h2c (1 worker)
#   gateway-tls  GET /api/v1/auth/password-policy through the gateway (TLS h2 -> phr-auth) vs
#                nginx serving a same-size static JSON file over the same TLS h2 settings
#   RSS          VmRSS/VmHWM of each service when idle and after the two cases
#
# Private stack: PHR_VAR=var/bench (purged first, stopped at the end), gateway 24443,
# PostgreSQL 24432, Redis 24379, services 24101-24104. Baseline nginx in var/bench/baseline:
# h2c on 24081, TLS on 24444. The gateway's API rate limit is raised for the run
# (NGINX_API_RATE/BURST) so the limiter is still evaluated but never answers 429.
#
# nginx (gateway and TLS baseline alike) ends a connection with GOAWAY after
# keepalive_requests (default 1000) and h2load 1.52 never reconnects (later requests fail),
# so a run is a series of h2load invocations of BENCH_SEGMENT (clients x 1000) requests,
# as many as last about BENCH_DURATION seconds at the rate of an unmeasured warm-up (about
# BENCH_WARMUP seconds) just before; req/s = requests / summed h2load times.
#
# Environment (defaults): BENCH_DURATION 4 (seconds per measured run), BENCH_WARMUP 1,
# BENCH_CLIENTS 10, BENCH_STREAMS 10, BENCH_ROUNDS 3, BENCH_SEGMENT (clients x 1000),
# BENCH_PIN 1 (h2load on CPU 0, the stack and the baselines on CPU 1; needs >= 2 CPUs).
#
# Exit status: 0 when the bench ran (even if a goal is missed: goals are reported, not
# asserted); 1 when it could not run (stack down, h2load error, any non-2xx response).
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

export PHR_VAR=$root/var/bench
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=24443
export PHR_PG_PORT=24432
export PHR_REDIS_PORT=24379
export PHR_AUTH_PORT=24101
export PHR_RECORDS_PORT=24102
export PHR_NOTIFICATION_PORT=24103
export PHR_AUDIT_PORT=24104
export PHR_PG_HOST=127.0.0.1
export PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
export NGINX_API_RATE=1000000r/s
export NGINX_API_BURST=100000

export BENCH_DURATION=${BENCH_DURATION:-4}
export BENCH_WARMUP=${BENCH_WARMUP:-1}
export BENCH_CLIENTS=${BENCH_CLIENTS:-10}
export BENCH_STREAMS=${BENCH_STREAMS:-10}
export BENCH_ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_SEGMENT=${BENCH_SEGMENT:-$((BENCH_CLIENTS * 1000))}
BENCH_PIN=${BENCH_PIN:-1}
if [ "$(nproc)" -lt 2 ]; then
    BENCH_PIN=0
fi
export BENCH_PIN

BASE_H2C_PORT=24081
BASE_TLS_PORT=24444
SERVICES=(auth records notification audit)
bench_dir=$root/tests/bench
base_dir=$PHR_VAR/baseline
res_dir=$PHR_VAR/results
results=$res_dir/results.jsonl
rss_json=$res_dir/rss.json
py=/usr/bin/python3
[ -x "$py" ] || py=python3

say() {
    printf 'bench: %s\n' "$*" >&2
}

die() {
    say "FAILED: $*"
    exit 1
}

for tool in h2load nginx curl taskset; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not installed (run make deps)"
done
for svc in "${SERVICES[@]}"; do
    [ -x "$build/bin/phr-$svc" ] || die "$build/bin/phr-$svc not built (make BUILD=$1 all)"
done

# Affinity prefixes: servers on CPU 1, the load generator on CPU 0.
srv_pin=()
gen_pin=()
if [ "$BENCH_PIN" = 1 ]; then
    srv_pin=(taskset -c 1)
    gen_pin=(taskset -c 0)
fi

stack() {
    "${srv_pin[@]}" bash "$root/deploy/stack.sh" "$@"
}

# ---- baseline nginx -------------------------------------------------------------

base_nginx() {
    nginx -c "$base_dir/$1.conf" -p "$base_dir/" -e "$base_dir/error.log" "${@:2}"
}

# base_stop NAME: stop the baseline nginx NAME (h2c|tls) if its pid file names an nginx.
base_stop() {
    local pid i
    [ -s "$base_dir/$1.pid" ] || return 0
    pid=$(head -n 1 "$base_dir/$1.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nginx* ]] || return 0
    kill -QUIT "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# base_render NAME WORKERS PORT
base_render() {
    local user=""
    if [ "$(id -u)" -eq 0 ]; then
        user="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
    fi
    sed -e "s|@USER@|$user|" -e "s|@WORKERS@|$2|" -e "s|@PORT@|$3|" \
        -e "s|@PREFIX@|$base_dir|g" -e "s|@CERT@|$PHR_VAR/tls/server.crt|" \
        -e "s|@KEY@|$PHR_VAR/tls/server.key|" \
        "$bench_dir/baseline-$1.conf.tmpl" > "$base_dir/$1.conf" || return 1
    if grep -n -E '@[A-Z_]+@' "$base_dir/$1.conf" >&2; then
        say "unrendered placeholders in $base_dir/$1.conf"
        return 1
    fi
}

base_start() {
    base_nginx "$1" -t -q || return 1
    "${srv_pin[@]}" nginx -c "$base_dir/$1.conf" -p "$base_dir/" -e "$base_dir/error.log"
}

stack_up=0
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    base_stop h2c
    base_stop tls
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        stack down
    fi
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM

# ---- stack and baselines up -------------------------------------------------------

# Leftovers of an interrupted run first.
if [ -d "$base_dir" ]; then
    base_stop h2c
    base_stop tls
fi
stack purge || die "could not clean $PHR_VAR"
stack_up=1
stack up >/dev/null || die "the bench stack did not come up (see $PHR_VAR/log)"

mkdir -p "$base_dir/tmp" "$base_dir/www" "$res_dir"
chmod 0755 "$base_dir" "$base_dir/www"

gw_url=https://127.0.0.1:$PHR_GATEWAY_PORT/api/v1/auth/password-policy
code=$(curl -sk --http2 -o "$base_dir/www/password-policy.json" -w '%{http_code}' \
    --max-time 5 "$gw_url") || true
[ "$code" = 200 ] || die "GET $gw_url answered '$code', expected 200"
chmod 0644 "$base_dir/www/password-policy.json"
body_bytes=$(stat -c %s "$base_dir/www/password-policy.json")

gw_workers=$(sed -n -E 's/^[[:space:]]*worker_processes[[:space:]]+([^;]+);.*/\1/p' \
    "$PHR_VAR/nginx/nginx.conf" | head -n 1)
[ -n "$gw_workers" ] || gw_workers=1
export BENCH_GATEWAY_WORKERS=$gw_workers

base_render h2c 1 "$BASE_H2C_PORT" || die "rendering the h2c baseline failed"
base_render tls "$gw_workers" "$BASE_TLS_PORT" || die "rendering the TLS baseline failed"
base_start h2c || die "baseline nginx (h2c) did not start (see $base_dir/error.log)"
base_start tls || die "baseline nginx (TLS) did not start (see $base_dir/error.log)"

base_h2c_url=http://127.0.0.1:$BASE_H2C_PORT/livez
base_tls_url=https://127.0.0.1:$BASE_TLS_PORT/api/v1/auth/password-policy
ours_h2c_url=http://127.0.0.1:$PHR_AUTH_PORT/livez
for ((i = 0; i < 50; i++)); do
    c1=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "$base_h2c_url") || true
    c2=$(curl -sk --http2 -o /dev/null -w '%{http_code}' "$base_tls_url") || true
    [ "$c1" = 200 ] && [ "$c2" = 200 ] && break
    sleep 0.1
done
[ "$c1" = 200 ] || die "baseline $base_h2c_url answered '$c1'"
[ "$c2" = 200 ] || die "baseline $base_tls_url answered '$c2'"
size2=$(curl -sk --http2 "$base_tls_url" | wc -c)
[ "$size2" = "$body_bytes" ] || die "baseline body is $size2 bytes, gateway's $body_bytes"

say "stack and baselines up; body of case 2: $body_bytes bytes; gateway workers: $gw_workers"

# ---- measurements -------------------------------------------------------------------

"$py" "$bench_dir/bench.py" rss idle "$PHR_VAR/run" "$rss_json" "${SERVICES[@]}" \
    || die "could not read the services' RSS"

# run_h2load CASE SUBJECT ROUND URL SEGMENTS: one run = SEGMENTS back-to-back h2load
# invocations of BENCH_SEGMENT requests each (fresh connections each time); bench.py adds
# them up (requests / summed time) and checks that every request was 2xx.
run_h2load() {
    local prefix=$res_dir/$1-$2-$3 dest=$results k
    rm -f "$prefix".seg*
    case $3 in
        probe | warmup) dest=/dev/null ;;
    esac
    for ((k = 1; k <= $5; k++)); do
        if ! "${gen_pin[@]}" h2load -t 1 -c "$BENCH_CLIENTS" -m "$BENCH_STREAMS" \
            -n "$BENCH_SEGMENT" --log-file="$prefix.seg$k.tsv" "$4" \
            > "$prefix.seg$k.out" 2>&1; then
            tail -n 20 "$prefix.seg$k.out" >&2
            die "h2load $4 failed (see $prefix.seg$k.out)"
        fi
    done
    "$py" "$bench_dir/bench.py" check "$dest" "$1" "$2" "$3" "$prefix" || exit 1
}

# warmup CASE SUBJECT URL: unmeasured runs (one segment, then about BENCH_WARMUP seconds'
# worth); sets n_seg to the number of segments that last about BENCH_DURATION seconds.
warmup() {
    local rps
    run_h2load "$1" "$2" probe "$3" 1 >/dev/null
    rps=$("$py" "$bench_dir/bench.py" rate "$res_dir/$1-$2-probe") || exit 1
    n_seg=$(((rps * BENCH_WARMUP + BENCH_SEGMENT - 1) / BENCH_SEGMENT))
    run_h2load "$1" "$2" warmup "$3" "$n_seg" >/dev/null
    rps=$("$py" "$bench_dir/bench.py" rate "$res_dir/$1-$2-warmup") || exit 1
    n_seg=$(((rps * BENCH_DURATION + BENCH_SEGMENT / 2) / BENCH_SEGMENT))
    [ "$n_seg" -ge 1 ] || n_seg=1
    say "$1 $2: warm-up at $rps req/s; measuring $n_seg x $BENCH_SEGMENT requests per round"
}

rm -f "$results"
for case in livez-h2c gateway-tls; do
    if [ "$case" = livez-h2c ]; then
        base_url=$base_h2c_url
        ours_url=$ours_h2c_url
    else
        base_url=$base_tls_url
        ours_url=$gw_url
    fi
    warmup "$case" base "$base_url"
    n_base=$n_seg
    warmup "$case" ours "$ours_url"
    n_ours=$n_seg
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        run_h2load "$case" base "$r" "$base_url" "$n_base"
        run_h2load "$case" ours "$r" "$ours_url" "$n_ours"
    done
done

"$py" "$bench_dir/bench.py" rss load "$PHR_VAR/run" "$rss_json" "${SERVICES[@]}" \
    || die "could not read the services' RSS after the load"

# ---- report ---------------------------------------------------------------------------

"$py" "$bench_dir/bench.py" report "$results" "$rss_json" "$root/BENCHMARKS.md" \
    || die "report failed"
say "BENCHMARKS.md updated"
exit 0
