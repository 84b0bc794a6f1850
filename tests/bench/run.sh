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
#   record-get   GET /api/v1/me/records/{id} through the gateway (patient token) vs nginx
#                serving the same answer as a static file over the TLS baseline
#   record-pg    the same runs vs pgbench running the service's SELECT (text taken from
#                services/records/*.c by bench.py) with PHR_PG_POOL connections
#   record-post  POST /api/v1/me/records through the gateway (h2load -d) vs pgbench running
#                the service's one statement (record insert with its audit outbox row as a
#                WITH item, rec_insert_audited_sql; same-size values)
#   audit-keepup during record-post: the records outbox backlog of audit events, sampled
#                every 0.5 s, and events written vs events the audit service stored
#   record-list  GET /api/v1/me/records?limit=100, one request at a time (time per request)
#   export       tests/bench/export_bench.sh: exports of 1,000 and 10,000 records, time and
#                phr-records peak RSS per export
#   notify-submit POST /internal/v1/notifications h2c direct (tests/bench/svc_load.c: the
#                services' own client, a unique Idempotency-Key per request) vs pgbench of the
#                same transaction on copies of its tables; delivery rate at the stand-in;
#                submit-to-provider latency at half the submit rate
#   audit-ingest POST /internal/v1/events, batches of 100 (events/s) vs pgbench of the
#                writer's transaction on copies of its tables
#   audit-verify GET /api/v1/admin/audit/verify (an operator) over a chain of at least
#                BENCH_VERIFY_EVENTS events (filled through the API in batches of 500)
#   console      tests/bench/console_bench.mjs: cold first loads of the staff console (gateway)
#                vs a one-script page on the TLS baseline, in Debian's Chromium: bytes on the
#                wire and time until the sign-in button is visible (skipped, and reported
#                so, without chromium or services/console/dist)
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
# probe), BENCH_CASES (all of the cases above; a subset for development), PHR_WORKERS 2
# (the auth worker pool and argon2_raw's threads), PHR_PG_POOL 4 (each service's PostgreSQL
# connections = pgbench -c), BENCH_VERIFY_EVENTS 1000000 (events in the verified chain),
# PHR_STANDIN_PORT 24199 (the provider stand-in of the bench stack), BENCH_CONSOLE_LOADS 5
# (cold loads per page of the console case), PHR_CHROMIUM /usr/bin/chromium.
#
# Exit status: 0 when the bench ran (even if a goal is missed: goals are reported, not
# asserted); 1 when it could not run (stack down, h2load error, any non-2xx response).
set -uo pipefail

# shellcheck source=tests/lib/buildarg.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/buildarg.sh"
buildarg "$@"

# A second bench beside this one (development): BENCH_PORT_BASE moves every port (24000:
# gateway base+443, PostgreSQL base+432, ..., baselines base+81 and base+444), BENCH_VAR the
# stack's directory and BENCH_REPORT the Markdown file whose "Latest run" section is rewritten
# (0 or empty: none, the report is only printed).
port_base=${BENCH_PORT_BASE:-24000}
[[ $port_base =~ ^[1-5][0-9]{3}0$ ]] || { echo "BENCH_PORT_BASE: 1000-59990" >&2; exit 2; }
export PHR_VAR=${BENCH_VAR:-$root/var/bench}
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=$((port_base + 443))
export PHR_PG_PORT=$((port_base + 432))
export PHR_REDIS_PORT=$((port_base + 379))
export PHR_AUTH_PORT=$((port_base + 101))
export PHR_RECORDS_PORT=$((port_base + 102))
export PHR_NOTIFICATION_PORT=$((port_base + 103))
export PHR_AUDIT_PORT=$((port_base + 104))
export PHR_PG_HOST=127.0.0.1
export PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
export NGINX_API_RATE=1000000r/s
export NGINX_API_BURST=100000
# The login zone too (login and register): the service's own limits stay in force.
export NGINX_LOGIN_RATE=1000000r/s
export NGINX_LOGIN_BURST=100000
export PHR_WORKERS=${PHR_WORKERS:-2}
export PHR_PG_POOL=${PHR_PG_POOL:-4}
export PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-$((port_base + 199))}

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
export BENCH_VERIFY_EVENTS=${BENCH_VERIFY_EVENTS:-1000000}
export BENCH_CASES=${BENCH_CASES:-livez-h2c gateway-tls login session storm record-get record-pg \
record-post record-list export notify-submit audit-ingest audit-verify audit-keepup console}
BENCH_PIN=${BENCH_PIN:-1}
if [ "$(nproc)" -lt 2 ]; then
    BENCH_PIN=0
fi
export BENCH_PIN

BASE_H2C_PORT=$((port_base + 81))
BASE_TLS_PORT=$((port_base + 444))
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
# The load client of the internal routes (the services' own h2c client, common/hcli).
pkgs=(libevent libevent_pthreads libevent_openssl libnghttp2 hiredis json-c libpq openssl)
read -r -a pkg_cflags < <(pkg-config --cflags "${pkgs[@]}")
read -r -a pkg_libs < <(pkg-config --libs "${pkgs[@]}")
gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root/common" "${pkg_cflags[@]}" \
    -o "$build/bench/svc_load" "$bench_dir/svc_load.c" "$build/libcommon.a" "${pkg_libs[@]}" \
    -largon2 -lunistring -lcurl -lpthread -lm || die "could not build $build/bench/svc_load"

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
# How busy the machine is without us: other work on the 2 CPUs skews every ratio.
BENCH_IDLE_START=$("$py" "$bench_dir/bench.py" idle 2) || BENCH_IDLE_START="? ?"
export BENCH_IDLE_START
say "machine before the stack: ${BENCH_IDLE_START% *} % busy (load average ${BENCH_IDLE_START#* })"
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
# The record-get case's static file (one record, written once it exists).
rec_loc='location ^~ /api/v1/me/records/ {\n\1    try_files /record.json =404;\n\1}'
sed -i -E "s|^([[:space:]]*)location / \\{|\\1$rec_loc\\n&|" "$base_dir/tls.conf"
grep -q 'try_files /record.json' "$base_dir/tls.conf" || die "could not add the record file"
# Case 16's baseline page (a button rendered by one small module script), served like the
# console: its content types, gzip, security headers and Content-Security-Policy.
mkdir -p "$base_dir/www/console-base"
printf '%s\n' '<!doctype html>' '<html lang="ja">' '<head><meta charset="utf-8">' \
    '<title>baseline</title><script type="module" src="/console-base/app.js"></script>' \
    '</head>' '<body><div id="app"></div></body>' '</html>' \
    > "$base_dir/www/console-base/index.html"
printf '%s\n' "const b = document.createElement('button');" "b.type = 'button';" \
    "b.textContent = 'ログイン';" "document.getElementById('app').append(b);" \
    > "$base_dir/www/console-base/app.js"
chmod 0755 "$base_dir/www/console-base"
chmod 0644 "$base_dir/www/console-base/"*
cat > "$base_dir/console-base.conf" <<'CONF'
location ^~ /console-base/ {
    types {
        text/html html;
        text/javascript js;
    }
    charset utf-8;
    charset_types text/javascript;
    gzip on;
    gzip_comp_level 6;
    gzip_types text/javascript;
    add_header Strict-Transport-Security "max-age=63072000" always;
    add_header X-Content-Type-Options "nosniff" always;
    add_header Referrer-Policy "no-referrer" always;
    add_header Content-Security-Policy "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'" always;
    add_header Cache-Control "no-cache" always;
    add_header X-Request-Id $request_id always;
}
CONF
sed -i -E "s|^([[:space:]]*)location / \\{|\\1include $base_dir/console-base.conf;\\n&|" \
    "$base_dir/tls.conf"
grep -q 'console-base.conf;' "$base_dir/tls.conf" || die "could not add the console baseline"
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
# settle CASE: wait (up to 30 s) until the stack's CPU is quiet, so that work left over from
# the case before (queued logins still hashing, a relay catching up) does not load this one.
settle() {
    local waited
    waited=$("$py" "$bench_dir/bench.py" settle "$([ "$BENCH_PIN" = 1 ] && echo 1 || echo all)" 30) \
        || return 0
    if [ "${waited%.*}" -ge 2 ]; then
        say "$1: waited $waited s for the stack's CPU to settle"
    fi
}

warmup() {
    local rps
    settle "$1"
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
        settle "$1"
        run_h2load "$1" base "$r" "$2" "$n_base"
        settle "$1"
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

# want_any CASE...: one of them is selected.
want_any() {
    local c
    for c in "$@"; do
        want "$c" && return 0
    done
    return 1
}

session_url=$gw/api/v1/auth/session
if want_any login session storm record-get record-pg record-post record-list audit-keepup; then
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

# ---- records: record-get, record-pg, record-post, record-list, export -------------------

# psql_db DB SQL: one query as the service's own role (password from the secrets, through the
# environment); unaligned tuples on stdout.
psql_db() {
    PGPASSWORD=$(head -n 1 "$PHR_SECRETS_DIR/pg_$1.password") psql -X -q -h 127.0.0.1 \
        -p "$PHR_PG_PORT" -U "phr_$1" -d "phr_$1" -tA -v ON_ERROR_STOP=1 -c "$2"
}

# run_pgbench CASE ROUND DB SCRIPT SECONDS [pgbench options]: pgbench on the generator's CPU
# with as many connections as the service's pool (PHR_PG_POOL), prepared statements like
# the services (common/db.c prepares each statement once per connection; BENCH_PG_MODE
# extended for the old unnamed-statement baseline); a row (CASE, pgbench, ROUND) unless
# ROUND is warmup.
run_pgbench() {
    local prefix=$res_dir/$1-pgbench-$2 dest=$results
    [ "$2" = warmup ] && dest=/dev/null
    rm -f "$prefix".log.*
    if ! PGPASSWORD=$(head -n 1 "$PHR_SECRETS_DIR/pg_$3.password") "${gen_pin[@]}" pgbench -n \
        -M "${BENCH_PG_MODE:-prepared}" -h 127.0.0.1 -p "$PHR_PG_PORT" -U "phr_$3" -c "$PHR_PG_POOL" -j 1 -T "$5" \
        -l --log-prefix="$prefix.log" "${@:6}" -f "$4" "phr_$3" > "$prefix.out" 2>&1; then
        tail -n 20 "$prefix.out" >&2
        die "pgbench $4 failed (see $prefix.out)"
    fi
    "$py" "$bench_dir/bench.py" pgcheck "$dest" "$1" pgbench "$2" "$prefix.out" "$prefix.log" \
        "${pg_mult:-1}" || exit 1
}

rec_url=$gw/api/v1/me/records
h2_auth=()
if [ -s "$cdir/auth-header" ]; then
    h2_auth=(-H "$(cat "$cdir/auth-header")")
fi
if want_any record-get record-pg record-post record-list audit-keepup; then
    # One blood pressure (the body of every POST); its GET answer is the baseline's file.
    printf '%s' '{"type":"blood_pressure","measured_at":"2026-11-01T08:00:00+09:00",' \
        '"values":{"systolic":120,"diastolic":80},"note":"bench record"}' > "$cdir/record.json"
    rid=$(curl -sk --http2 -H @"$cdir/auth-header" -H 'content-type: application/json' \
        --data-binary @"$cdir/record.json" --max-time 5 "$rec_url" \
        | "$py" -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
        || die "POST $rec_url did not answer a record"
    [[ $rid =~ ^[0-9a-f-]{36}$ ]] || die "POST $rec_url answered a malformed id"
    code=$(curl -sk --http2 -H @"$cdir/auth-header" -o "$base_dir/www/record.json" \
        -w '%{http_code}' --max-time 5 "$rec_url/$rid") || true
    [ "$code" = 200 ] || die "GET $rec_url/$rid answered '$code', expected 200"
    chmod 0644 "$base_dir/www/record.json"
    base_rec_url=https://127.0.0.1:$BASE_TLS_PORT/api/v1/me/records/$rid
    size1=$(stat -c %s "$base_dir/www/record.json")
    size2=$(curl -sk --http2 "$base_rec_url" | wc -c)
    [ "$size1" = "$size2" ] || die "record baseline body is $size2 bytes, the gateway's $size1"
    # The pgbench baselines' parameters: the stored row and its audit event, as sent.
    IFS='|' read -r rec_pid rec_ms rec_day rec_kid rec_sealed < <(psql_db records \
        "SELECT patient_id, (extract(epoch FROM measured_at) * 1000)::int8, local_day, key_id,
         '\\x' || encode(sealed, 'hex') FROM records WHERE id = '$rid'") \
        || die "could not read record $rid"
    rec_body=$(psql_db records "SELECT body::text FROM outbox WHERE topic = 'audit'
        AND body->'target'->>'id' = '$rid'") || die "could not read the audit event of $rid"
    if [ -z "$rec_body" ] || [ -z "$rec_sealed" ]; then
        die "record $rid: no row or no audit event"
    fi
    "$py" "$bench_dir/bench.py" pgscript "$root" record-get "$res_dir/record-get.sql" || exit 1
    "$py" "$bench_dir/bench.py" pgscript "$root" record-post "$res_dir/record-post.sql" || exit 1
    say "record $rid: $size1 bytes; pgbench scripts in $res_dir"
fi

if want_any record-get record-pg; then
    h2_load=(-c "$BENCH_CLIENTS" -m "$BENCH_STREAMS" -n "$BENCH_SEGMENT")
    h2_extra=("${h2_auth[@]}")
    warmup record-get base "$base_rec_url"
    n_base=$n_seg
    warmup record-get ours "$rec_url/$rid"
    n_ours=$n_seg
    pg_get=(-D "rid=$rid" -D "pid=$rec_pid")
    want record-pg && run_pgbench record-pg warmup records "$res_dir/record-get.sql" \
        "$BENCH_WARMUP" "${pg_get[@]}" > /dev/null
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        settle record-get
        run_h2load record-get base "$r" "$base_rec_url" "$n_base"
        settle record-get
        run_h2load record-get ours "$r" "$rec_url/$rid" "$n_ours"
        if want record-pg; then
            settle record-pg
            run_pgbench record-pg "$r" records "$res_dir/record-get.sql" "$BENCH_DURATION" \
                "${pg_get[@]}"
        fi
    done
fi

# keepup_sample FILE: every 0.5 s "seconds-since-epoch backlog" of the records outbox (audit
# events not yet sent) until killed.
keepup_sample() {
    while :; do
        printf '%s %s\n' "$(now)" "$(psql_db records "SELECT count(*) FROM outbox
            WHERE topic = 'audit' AND sent_at IS NULL AND dead_at IS NULL")" >> "$1"
        sleep 0.5
    done
}

# keepup_counts: "records-events audit-events" now (rows of topic audit ever written to the
# records outbox; the audit chain's head sequence).
keepup_counts() {
    printf '%s %s\n' "$(psql_db records "SELECT count(*) FROM outbox WHERE topic = 'audit'")" \
        "$(psql_db audit "SELECT coalesce(max(seq), 0) FROM audit_events")"
}

if want_any record-post audit-keepup; then
    seg=$((BENCH_CLIENTS * 100))
    h2_load=(-c "$BENCH_CLIENTS" -m "$BENCH_STREAMS" -n "$seg")
    h2_extra=("${h2_auth[@]}" -H 'content-type: application/json' -d "$cdir/record.json")
    seg_saved=$BENCH_SEGMENT
    BENCH_SEGMENT=$seg
    warmup record-post ours "$rec_url"
    n_ours=$n_seg
    BENCH_SEGMENT=$seg_saved
    # Its rows go to a patient of their own: a sealed value bound to another id would not
    # open in the bench patient's list (case 10).
    pg_post=(-D "pid=00000000-0000-4000-8000-00000000b0b0" -D "type=blood_pressure"
        -D "ms=$rec_ms" -D "day=$rec_day" -D "source=self" -D "kid=$rec_kid"
        -D "sealed=$rec_sealed" -D "body=$rec_body")
    run_pgbench record-post warmup records "$res_dir/record-post.sql" "$BENCH_WARMUP" \
        "${pg_post[@]}" > /dev/null
    sleep 2 # the warm-up's audit events relayed before the first measured round
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        kfile=$res_dir/keepup-$r.txt
        rm -f "$kfile"
        settle record-post
        read -r ev0 au0 < <(keepup_counts)
        keepup_sample "$kfile" &
        sampler=$!
        t0=$(now)
        run_h2load record-post ours "$r" "$rec_url" "$n_ours"
        t1=$(now)
        read -r ev1 au1 < <(keepup_counts)
        # The backlog after the load: sampled 2 s longer (drained or not).
        sleep 2
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        read -r ev2 au2 < <(keepup_counts)
        "$py" "$bench_dir/bench.py" keepup "$results" "$r" "$kfile" "$t0" "$t1" \
            "$ev0" "$ev1" "$ev2" "$au0" "$au1" "$au2" || exit 1
        settle record-post # the relay's catch-up would load pgbench's run
        run_pgbench record-post "$r" records "$res_dir/record-post.sql" "$BENCH_DURATION" \
            "${pg_post[@]}"
    done
fi

if want record-list; then
    # At least 100 records (the POST case made thousands when it ran).
    h2_load=(-c 1 -m 10 -n 200)
    h2_extra=("${h2_auth[@]}" -H 'content-type: application/json' -d "$cdir/record.json")
    run_h2load record-list seed seed "$rec_url" 1 > /dev/null
    # Time per request: one request at a time.
    h2_load=(-c 1 -m 1 -n 200)
    h2_extra=("${h2_auth[@]}")
    seg_saved=$BENCH_SEGMENT
    BENCH_SEGMENT=200
    warmup record-list ours "$rec_url?limit=100"
    BENCH_SEGMENT=$seg_saved
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        run_h2load record-list ours "$r" "$rec_url?limit=100" "$n_seg"
    done
fi

if want export; then
    # tests/bench/export_bench.sh (records): 1,000 and 10,000 records imported for two new
    # patients, each exported in json, fhir and csv; the peak RSS of phr-records is reset
    # before every export (clear_refs), so VmHWM - VmRSS before is that export's growth.
    say "export: importing and exporting 1,000 and 10,000 records"
    EXPORT_BENCH_SIZES="1000 10000" "${gen_pin[@]}" bash "$bench_dir/export_bench.sh" \
        > "$res_dir/export.out" 2>&1
    erc=$?
    if [ "$erc" -ge 2 ]; then
        tail -n 20 "$res_dir/export.out" >&2
        die "export_bench.sh could not run (see $res_dir/export.out)"
    fi
    "$py" "$bench_dir/bench.py" exportparse "$results" "$res_dir/export.out" || exit 1
fi

# ---- console: first load ------------------------------------------------------------

if want console; then
    # tests/bench/console_bench.mjs: cold loads of the console (gateway) and of the baseline
    # page (TLS baseline nginx) in Debian's Chromium until the sign-in button is visible.
    chromium_bin=${PHR_CHROMIUM:-/usr/bin/chromium}
    skip=""
    if [ ! -x "$chromium_bin" ] || ! command -v node > /dev/null 2>&1; then
        skip="no chromium"
    elif [ ! -s "$root/services/console/dist/index.html" ] \
        || [ ! -d "$root/services/console/node_modules/playwright-core" ]; then
        skip="console not built"
    fi
    if [ -n "$skip" ]; then
        say "console: skipped ($skip)"
        "$py" "$bench_dir/bench.py" consoleparse "$results" - "$skip" || exit 1
    else
        say "console: ${BENCH_CONSOLE_LOADS:-5} cold loads of each page"
        if ! PHR_CHROMIUM=$chromium_bin "${gen_pin[@]}" node "$bench_dir/console_bench.mjs" "$gw/" \
            "https://127.0.0.1:$BASE_TLS_PORT/console-base/" > "$res_dir/console.out" 2>&1; then
            tail -n 20 "$res_dir/console.out" >&2
            die "console_bench.mjs failed (see $res_dir/console.out)"
        fi
        "$py" "$bench_dir/bench.py" consoleparse "$results" "$res_dir/console.out" || exit 1
    fi
fi

# ---- notification: submit, delivery, latency ------------------------------------------

# svc_run CALLER PORT PATH LIST OUT CONCURRENCY [RATE]: svc_load (one multiplexed h2c
# connection with CALLER's credential) POSTs LIST to PATH; "status seconds" lines in OUT.
svc_run() {
    "${gen_pin[@]}" "$build/bench/svc_load" "$1" "$2" "$3" "$4" "$6" "${7:-0}" > "$5"
}

# svccfg KIND N TAG [EVENTS]: see bench.py svccfg; prints the list's path.
svccfg() {
    "$py" "$bench_dir/bench.py" svccfg "$1" "$2" "$cdir" "$3" "${@:4}"
}

# rate_n N T0 T1 SECONDS: how many requests a run of SECONDS takes at N / (T1 - T0).
rate_n() {
    "$py" -c "import math,sys; n,t0,t1,d=map(float,sys.argv[1:]); \
        print(max(20, math.ceil(n / max(t1 - t0, 1e-3) * d)))" "$@"
}

standin_url=http://127.0.0.1:$PHR_STANDIN_PORT/__messages
notify_path=/internal/v1/notifications
if want notify-submit; then
    psql_db notification "CREATE TABLE IF NOT EXISTS bench_notifications
        (LIKE notifications INCLUDING ALL);
        CREATE TABLE IF NOT EXISTS bench_notification_events
        (LIKE notification_events INCLUDING ALL)" > /dev/null \
        || die "could not create the notification baseline's tables"
    # Warm-up: 200 submits (unique recipients bench-w-K@example.com), all delivered.
    cfg=$(svccfg notify-lat 200 w) || exit 1
    t0=$(now)
    svc_run auth "$PHR_NOTIFICATION_PORT" "$notify_path" "$cfg" "$cdir/notify-w.out" 16
    t1=$(now)
    "$py" "$bench_dir/bench.py" curlcheck /dev/null notify-submit ours warmup \
        "$cdir/notify-w.out" "$t0" "$t1" 202 200 || die "notification warm-up failed"
    n=$(rate_n 200 "$t0" "$t1" "$BENCH_DURATION")
    "$py" "$bench_dir/bench.py" standin /dev/null notify-deliver warmup "$standin_url" w 200 - \
        60 > /dev/null || die "the warm-up's notifications did not reach the stand-in"
    psql_db notification "SELECT row_to_json(t) FROM (SELECT n.request_sha256 AS sha, n.kind,
        n.channel, n.to_address AS addr, n.locale, n.params::text AS params, n.subject, n.body,
        (SELECT body::text FROM outbox WHERE topic = 'audit' ORDER BY id DESC LIMIT 1) AS event
        FROM notifications n WHERE n.to_address = 'bench-w-0@example.com') t" \
        > "$res_dir/notify-row.json" || die "could not read a stored notification"
    mapfile -d '' pg_notify < <("$py" "$bench_dir/bench.py" pgvars notify \
        "$res_dir/notify-row.json") || die "no notification row"
    [ "${#pg_notify[@]}" -ge 2 ] || die "no notification row for the pgbench baseline"
    "$py" "$bench_dir/bench.py" pgscript "$root" notify-submit "$res_dir/notify-submit.sql" \
        || exit 1
    run_pgbench notify-submit warmup notification "$res_dir/notify-submit.sql" \
        "$BENCH_WARMUP" "${pg_notify[@]}" > /dev/null
    say "notify-submit: warm-up at about $((n / BENCH_DURATION)) submits/s; $n per round"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        cfg=$(svccfg notify-lat "$n" "s$r") || exit 1
        t0=$(now)
        svc_run auth "$PHR_NOTIFICATION_PORT" "$notify_path" "$cfg" "$cdir/notify-s$r.out" 16
        t1=$(now)
        "$py" "$bench_dir/bench.py" curlcheck "$results" notify-submit ours "$r" \
            "$cdir/notify-s$r.out" "$t0" "$t1" 202 "$n" || die "notify-submit round $r failed"
        # Delivery: the span of the stand-in's received_at over this round's messages.
        "$py" "$bench_dir/bench.py" standin "$results" notify-deliver "$r" "$standin_url" \
            "s$r" "$n" - 120 || die "notify round $r: not every message was delivered"
        run_pgbench notify-submit "$r" notification "$res_dir/notify-submit.sql" \
            "$BENCH_DURATION" "${pg_notify[@]}"
    done
    # Latency at half the submit rate: starts paced at half the median rate for
    # BENCH_DURATION s; submit time = the row's created_at (its transaction's start).
    half=$("$py" -c "import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])]; \
        v=[x['rps'] for x in r if x['case']=='notify-submit' and x['subject']=='ours']; \
        print(max(1, int(statistics.median(v) / 2)))" "$results") || die "no submit rate"
    m=$((half * BENCH_DURATION))
    cfg=$(svccfg notify-lat "$m" lat) || exit 1
    svc_run auth "$PHR_NOTIFICATION_PORT" "$notify_path" "$cfg" "$cdir/notify-lat.out" 1000 \
        "$half"
    "$py" "$bench_dir/bench.py" curlcheck /dev/null notify-latency ours lat "$cdir/notify-lat.out" \
        0 1 202 "$m" > /dev/null || die "the latency clients failed"
    "$py" "$bench_dir/bench.py" standin /dev/null notify-latency lat "$standin_url" lat \
        "$m" - 120 > /dev/null || die "the latency probe's messages were not delivered"
    psql_db notification "SELECT to_address, extract(epoch FROM created_at) FROM notifications
        WHERE to_address LIKE 'bench-lat-%'" | tr '|' ' ' > "$res_dir/notify-lat.txt" \
        || die "could not read the submit times"
    "$py" "$bench_dir/bench.py" standin "$results" notify-latency 1 "$standin_url" lat \
        "$m" "$res_dir/notify-lat.txt" 30 || die "latency report failed"
fi

# ---- audit: ingest, verify, keep-up (with case 9) -------------------------------------

audit_path=/internal/v1/events
audit_head() {
    psql_db audit "SELECT coalesce(max(seq), 0) FROM audit_events"
}
if want audit-ingest; then
    psql_db audit "CREATE TABLE IF NOT EXISTS bench_audit_events (LIKE audit_events INCLUDING ALL);
        CREATE TABLE IF NOT EXISTS bench_audit_event_ids (LIKE audit_event_ids INCLUDING ALL);
        CREATE TABLE IF NOT EXISTS bench_checkpoints (LIKE checkpoints INCLUDING ALL);
        CREATE SEQUENCE IF NOT EXISTS bench_seq; CREATE SEQUENCE IF NOT EXISTS bench_seq_ids" \
        > /dev/null || die "could not create the audit baseline's tables"
    cfg=$(svccfg audit 10 records-w 100) || exit 1
    s0=$(audit_head)
    t0=$(now)
    svc_run records "$PHR_AUDIT_PORT" "$audit_path" "$cfg" "$cdir/audit-w.out" 4
    t1=$(now)
    s1=$(audit_head)
    "$py" "$bench_dir/bench.py" curlcheck /dev/null audit-ingest ours warmup "$cdir/audit-w.out" \
        "$t0" "$t1" 200 10 > /dev/null || die "audit warm-up failed"
    # at least ours: other services' relays may append their own events meanwhile
    [ $((s1 - s0)) -ge 1000 ] || die "audit warm-up: $((s1 - s0)) of 1000 events stored"
    n=$(rate_n 10 "$t0" "$t1" "$BENCH_DURATION")
    psql_db audit "SELECT json_build_object('rows', json_agg(x), 'details', json_agg(x.details),
        'ids', '{' || string_agg(x.event_id::text, ',') || '}',
        'idrows', json_agg(json_build_object('event_id', x.event_id, 'seq', x.seq)))
        FROM (SELECT seq, event_id, occurred_at, recorded_at, actor_account_id, actor_kind,
        actor_org_id, actor_role, actor_session_id, actor_ip, actor_user_agent, action,
        target_type, target_id, target_patient_id, target_org_id, result, reason,
        source_service, request_id, details, encode(prev_hash, 'hex') AS prev_hash,
        encode(hash, 'hex') AS hash FROM audit_events ORDER BY seq DESC LIMIT 100) x" \
        > "$res_dir/audit-rows.json" || die "could not read the stored events"
    mapfile -d '' pg_audit < <("$py" "$bench_dir/bench.py" pgvars audit \
        "$res_dir/audit-rows.json") || die "no audit rows"
    "$py" "$bench_dir/bench.py" pgscript "$root" audit-ingest "$res_dir/audit-ingest.sql" \
        || exit 1
    pg_mult=100 # events per transaction
    run_pgbench audit-ingest warmup audit "$res_dir/audit-ingest.sql" "$BENCH_WARMUP" \
        "${pg_audit[@]}" > /dev/null
    say "audit-ingest: warm-up at about $((n * 100 / BENCH_DURATION)) events/s;" \
        "$n batches per round"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        cfg=$(svccfg audit "$n" "records-r$r" 100) || exit 1
        s0=$(audit_head)
        t0=$(now)
        svc_run records "$PHR_AUDIT_PORT" "$audit_path" "$cfg" "$cdir/audit-r$r.out" 4
        t1=$(now)
        s1=$(audit_head)
        [ $((s1 - s0)) -ge $((n * 100)) ] \
            || die "audit round $r: $((s1 - s0)) of $((n * 100)) events stored"
        "$py" "$bench_dir/bench.py" curlcheck "$results" audit-ingest ours "$r" \
            "$cdir/audit-r$r.out" "$t0" "$t1" 200 "$n" 100 || die "audit-ingest round $r failed"
        rm -rf "$cdir/audit-records-r$r"
        run_pgbench audit-ingest "$r" audit "$res_dir/audit-ingest.sql" "$BENCH_DURATION" \
            "${pg_audit[@]}"
    done
    pg_mult=1
fi

if want audit-verify; then
    # An operator (phrctl operator create, login, password change).
    op_email=bench-operator-$(date +%s)@example.com
    op_json=$(PHR_PG_HOST=127.0.0.1 "$build/bin/phrctl" operator create --email "$op_email" \
        --name 'Bench Operator' --json) || die "phrctl operator create failed"
    OP_JSON=$op_json "$py" "$bench_dir/bench.py" operator "$gw" "$op_email" "$cdir" \
        > /dev/null || die "could not log in the operator"
    # Fill the chain up to BENCH_VERIFY_EVENTS through the API (batches of 500).
    have=$(audit_head)
    if [ "$have" -lt "$BENCH_VERIFY_EVENTS" ]; then
            nb=$(((BENCH_VERIFY_EVENTS - have + 499) / 500))
        say "audit-verify: ingesting $((nb * 500)) events (chain at $have)"
        cfg=$(svccfg audit "$nb" records-fill 500) || exit 1
        t0=$(now)
        svc_run records "$PHR_AUDIT_PORT" "$audit_path" "$cfg" "$cdir/audit-fill.out" 4
        t1=$(now)
        "$py" "$bench_dir/bench.py" curlcheck /dev/null audit-fill ours 1 "$cdir/audit-fill.out" \
            "$t0" "$t1" 200 "$nb" 500 || die "filling the audit chain failed"
        rm -rf "$cdir/audit-records-fill"
    fi
    have=$(audit_head)
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        t0=$(now)
        code=$(curl -sk --http2 -H @"$cdir/operator-header" -o "$res_dir/verify-$r.json" \
            -w '%{http_code}' --max-time 600 "$gw/api/v1/admin/audit/verify") || true
        t1=$(now)
        [ "$code" = 200 ] || die "GET /api/v1/admin/audit/verify answered '$code'"
        "$py" "$bench_dir/bench.py" verify "$results" "$r" "$res_dir/verify-$r.json" "$t0" \
            "$t1" "$have" || exit 1
    done
fi

# ---- report ---------------------------------------------------------------------------

report_md=${BENCH_REPORT-$root/BENCHMARKS.md}
[ "$report_md" = 0 ] && report_md=
BENCH_IDLE_END=$("$py" "$bench_dir/bench.py" idle 2) || BENCH_IDLE_END="? ?"
export BENCH_IDLE_END
"$py" "$bench_dir/bench.py" report "$results" "$rss_json" "${report_md:--}" || die "report failed"
say "${report_md:-no report file (BENCH_REPORT=0)}${report_md:+ updated}"
exit 0
