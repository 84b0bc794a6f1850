#!/usr/bin/env bash
# tests/bench/run.sh BUILD_DIR - `make bench`: h2load against a private stack and nginx
# baselines; prints a Markdown report and rewrites the "Latest run" section of BENCHMARKS.md.
#
# Cases (baseline and ours alternate in this one invocation, BENCH_ROUNDS rounds each):
#   livez-h2c    GET /livez of phr-auth over h2c vs nginx `return 200` over h2c (1 worker)
#   gateway-tls  GET /api/v1/auth/password-policy through the gateway (TLS h2 -> phr-auth) vs
#                nginx serving a same-size static JSON file over the same TLS h2 settings
#   RSS          VmRSS/VmHWM of each service when idle and after the two cases
#   login        POST /api/v1/auth/login through the gateway (curl --parallel --http2,
#                BENCH_ACCOUNTS registered accounts in turn) vs argon2_raw: PHR_WORKERS threads hashing with the
#                service's argon2id parameters on the stack's CPU; logins/s vs hashes/s
#   session      GET /api/v1/auth/session (bearer token) through the gateway vs nginx serving a
#                same-size static JSON file over the TLS baseline
#   storm        p99 of GET /api/v1/auth/session at a low fixed rate (h2load --rps), idle and
#                during a login storm that keeps every hashing worker busy
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
# BENCH_PIN 1 (h2load on CPU 0, the stack and the baselines on CPU 1; needs >= 2 CPUs),
# BENCH_ACCOUNTS 50 (login accounts), BENCH_LOGIN_PARALLEL 16 (logins in flight),
# BENCH_P99_CLIENTS 2 and BENCH_P99_RPS 100 (requests per second per client of the p99
# probe), BENCH_CASES (all: livez-h2c gateway-tls login session storm; a subset for
# development), PHR_WORKERS 2 (the auth worker pool and argon2_raw's threads).
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
# The login zone too (login and register): the service's own limits stay in force.
export NGINX_LOGIN_RATE=1000000r/s
export NGINX_LOGIN_BURST=100000
export PHR_WORKERS=${PHR_WORKERS:-2}

export BENCH_DURATION=${BENCH_DURATION:-4}
export BENCH_WARMUP=${BENCH_WARMUP:-1}
export BENCH_CLIENTS=${BENCH_CLIENTS:-10}
export BENCH_STREAMS=${BENCH_STREAMS:-10}
export BENCH_ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_SEGMENT=${BENCH_SEGMENT:-$((BENCH_CLIENTS * 1000))}
export BENCH_ACCOUNTS=${BENCH_ACCOUNTS:-50}
export BENCH_LOGIN_PARALLEL=${BENCH_LOGIN_PARALLEL:-16}
export BENCH_P99_CLIENTS=${BENCH_P99_CLIENTS:-2}
export BENCH_P99_RPS=${BENCH_P99_RPS:-100}
export BENCH_CASES=${BENCH_CASES:-livez-h2c gateway-tls login session storm}
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

for tool in h2load nginx curl taskset gcc; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not installed (run make deps)"
done
for svc in "${SERVICES[@]}"; do
    [ -x "$build/bin/phr-$svc" ] || die "$build/bin/phr-$svc not built (make BUILD=$1 all)"
done

# The raw argon2id baseline of the login case, with the service's library.
raw_bin=$build/bench/argon2_raw
mkdir -p "$build/bench"
gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$raw_bin" "$bench_dir/argon2_raw.c" \
    -largon2 -lpthread || die "could not build $raw_bin"

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
# The session case's static file (written once the session exists), next to case 2's.
sess_loc='location = /api/v1/auth/session {\n\1    try_files /session.json =404;\n\1}'
sed -i -E "s|^([[:space:]]*)location / \\{|\\1$sess_loc\\n&|" "$base_dir/tls.conf"
grep -q 'try_files /session.json' "$base_dir/tls.conf" || die "could not add the session file"
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

# h2load's load options (throughput cases) and extra options (request headers).
h2_load=(-c "$BENCH_CLIENTS" -m "$BENCH_STREAMS" -n "$BENCH_SEGMENT")
h2_extra=()

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
        if ! "${gen_pin[@]}" h2load -t 1 "${h2_load[@]}" "${h2_extra[@]}" \
            --log-file="$prefix.seg$k.tsv" "$4" > "$prefix.seg$k.out" 2>&1; then
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

want() {
    [[ " $BENCH_CASES " == *" $1 "* ]]
}

# ratio_case CASE BASE_URL OURS_URL: warm-ups, then BENCH_ROUNDS alternating runs.
ratio_case() {
    local r n_base n_ours
    warmup "$1" base "$2"
    n_base=$n_seg
    warmup "$1" ours "$3"
    n_ours=$n_seg
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        run_h2load "$1" base "$r" "$2" "$n_base"
        run_h2load "$1" ours "$r" "$3" "$n_ours"
    done
}

rm -f "$results"
if want livez-h2c; then
    ratio_case livez-h2c "$base_h2c_url" "$ours_h2c_url"
fi
if want gateway-tls; then
    ratio_case gateway-tls "$base_tls_url" "$gw_url"
fi

"$py" "$bench_dir/bench.py" rss load "$PHR_VAR/run" "$rss_json" "${SERVICES[@]}" \
    || die "could not read the services' RSS after the load"

# ---- auth: login, session, storm ---------------------------------------------------
# After the RSS sample: argon2id's 19 MiB per worker is not part of the memory goal.

gw=https://127.0.0.1:$PHR_GATEWAY_PORT
cdir=$res_dir/curl
mkdir -p "$cdir"
logins_sent=0

# curl_cfg KIND N: a curl config of N requests (KIND register|login) cycling the
# BENCH_ACCOUNTS accounts; prints its path. Counts logins against the service's limits
# (per client address 5000 and per (address, account) 100 per 5 minutes, services/auth/
# login.c): every request of the bench comes from 127.0.0.1.
curl_cfg() {
    if [ "$1" = login ]; then
        logins_sent=$((logins_sent + $2))
        if [ $((logins_sent / BENCH_ACCOUNTS)) -ge 95 ] || [ "$logins_sent" -ge 4900 ]; then
            die "$logins_sent logins would hit the service's login limits; raise" \
                "BENCH_ACCOUNTS or lower BENCH_DURATION/BENCH_ROUNDS"
        fi
    fi
    "$py" "$bench_dir/bench.py" curlcfg "$1" "$gw/api/v1/auth/$1" "$2" "$BENCH_ACCOUNTS" "$cdir"
}

# curl_run CFG OUT: the requests of CFG, BENCH_LOGIN_PARALLEL at a time on one HTTP/2
# connection; one "status seconds" line per request on OUT (curl's stderr, unbuffered).
curl_run() {
    "${gen_pin[@]}" curl --parallel --parallel-max "$BENCH_LOGIN_PARALLEL" --no-progress-meter \
        -K "$1" 2> "$2"
}

now() {
    date +%s.%N
}

# run_raw ROUND RESULTS [SECONDS]: argon2_raw on the stack's CPUs; sets raw_rate
# (hashes/s) and appends a row to RESULTS.
raw_rate=0
run_raw() {
    local out=$res_dir/raw-$1.json
    "${srv_pin[@]}" "$raw_bin" "$PHR_WORKERS" "${3:-$BENCH_DURATION}" > "$out" \
        || die "argon2_raw failed"
    raw_rate=$("$py" "$bench_dir/bench.py" raw "$2" "$1" "$out") || exit 1
}

session_url=$gw/api/v1/auth/session
if want login || want session || want storm; then
    cfg=$(curl_cfg register "$BENCH_ACCOUNTS") || exit 1
    t0=$(now)
    curl_run "$cfg" "$cdir/register.out"
    t1=$(now)
    "$py" "$bench_dir/bench.py" curlcheck /dev/null register ours setup "$cdir/register.out" \
        "$t0" "$t1" 201 "$BENCH_ACCOUNTS" > /dev/null || die "registering the accounts failed"
    # A session for the session and storm cases (account 1).
    token=$("$py" "$bench_dir/bench.py" token "$gw/api/v1/auth/login" "$cdir") \
        || die "could not log in"
    logins_sent=$((logins_sent + 1))
    h2_extra=(-H "authorization: Bearer $token")
    code=$(curl -sk --http2 -H @"$cdir/auth-header" -o "$base_dir/www/session.json" \
        -w '%{http_code}' --max-time 5 "$session_url") || true
    [ "$code" = 200 ] || die "GET $session_url answered '$code', expected 200"
    chmod 0644 "$base_dir/www/session.json"
    run_raw warmup /dev/null 2
    say "accounts registered; warm-up raw argon2id rate $raw_rate hashes/s on $PHR_WORKERS threads"
fi

if want login; then
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        run_raw "$r" "$results"
        n=$("$py" -c "import math,sys; print(max(10, math.ceil(float(sys.argv[1]) * \
            float(sys.argv[2]))))" "$raw_rate" "$BENCH_DURATION")
        cfg=$(curl_cfg login "$n") || exit 1
        t0=$(now)
        curl_run "$cfg" "$cdir/login-$r.out"
        t1=$(now)
        "$py" "$bench_dir/bench.py" curlcheck "$results" login ours "$r" "$cdir/login-$r.out" \
            "$t0" "$t1" 200 "$n" || die "login round $r failed"
    done
fi

if want session; then
    base_session_url=https://127.0.0.1:$BASE_TLS_PORT/api/v1/auth/session
    size1=$(stat -c %s "$base_dir/www/session.json")
    size2=$(curl -sk --http2 "$base_session_url" | wc -c)
    [ "$size1" = "$size2" ] || die "session baseline body is $size2 bytes, the gateway's $size1"
    ratio_case session "$base_session_url" "$session_url"
fi

if want storm; then
    # The p99 probe: BENCH_P99_CLIENTS connections at BENCH_P99_RPS requests/s each for
    # BENCH_DURATION seconds, up to 8 requests in flight per connection.
    h2_load=(-c "$BENCH_P99_CLIENTS" -m 8 --rps "$BENCH_P99_RPS"
        -n $((BENCH_P99_CLIENTS * BENCH_P99_RPS * BENCH_DURATION)))
    run_h2load storm probe probe "$session_url" 1 > /dev/null
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        run_h2load storm idle "$r" "$session_url" 1
        # Enough logins to outlast the probe; stopped when the probe ends.
        n=$("$py" -c "import math,sys; print(math.ceil(float(sys.argv[1]) * \
            (float(sys.argv[2]) + 6)))" "$raw_rate" "$BENCH_DURATION")
        cfg=$(curl_cfg login "$n") || exit 1
        curl_run "$cfg" "$cdir/storm-$r.out" &
        storm_pid=$!
        sleep 1 # every worker busy, the queue filled
        t0=$(now)
        done0=$(wc -l < "$cdir/storm-$r.out")
        run_h2load storm storm "$r" "$session_url" 1
        done1=$(wc -l < "$cdir/storm-$r.out")
        t1=$(now)
        if ! kill -0 "$storm_pid" 2>/dev/null; then
            die "the login storm ended before the probe (round $r)"
        fi
        kill "$storm_pid" 2>/dev/null
        wait "$storm_pid" 2>/dev/null
        "$py" "$bench_dir/bench.py" curlcheck "$results" storm logins "$r" \
            "$cdir/storm-$r.out" "$t0" "$t1" 200 "-$((done1 - done0))" \
            || die "storm round $r failed"
        # Let the service finish the logins still queued before the next idle probe.
        sleep "$("$py" -c "import sys; print(round(1 + float(sys.argv[1]) / \
            max(float(sys.argv[2]), 1), 2))" "$BENCH_LOGIN_PARALLEL" "$raw_rate")"
    done
fi

# ---- report ---------------------------------------------------------------------------

"$py" "$bench_dir/bench.py" report "$results" "$rss_json" "$root/BENCHMARKS.md" \
    || die "report failed"
say "BENCHMARKS.md updated"
exit 0
