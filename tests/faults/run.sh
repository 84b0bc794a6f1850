#!/usr/bin/env bash
# tests/faults/run.sh BUILD_DIR - faults under a steady load (issue 8), on a private stack.
#
# A fresh stack in PHR_FAULTS_VAR (var/faults) with two records instances; the services reach
# PostgreSQL through tests/faults/faultproxy.py (pass / blackhole / reset). tests/faults/load.py
# keeps a steady mixed load on the gateway (patients writing and reading records, new accounts
# and password reset requests that send e-mails) and logs every acknowledged write. Then, one
# after another, each with the load running:
#
#   redis_kill         Redis SIGKILL, restarted after 5 s
#   redis_freeze       Redis SIGSTOP for 10 s, then SIGCONT
#   pg_stop            PostgreSQL `pg_ctl stop -m immediate`, started after 5 s
#   pg_blackhole       the proxy drops PostgreSQL traffic silently for 20 s
#   audit_kill         phr-audit SIGKILL, restarted by this script after 3 s
#   notification_kill  phr-notification SIGKILL, restarted after 3 s
#   records2_kill      phr-records-2 SIGKILL (restarted only after the checks)
#   nginx_reload       nginx reloads its configuration
#   records_sigterm    SIGTERM to phr-records-2 under load: it drains and exits
#
# After each fault (checks of tests/faults/check.py plus these):
#   readyz_503_during  every instance answered /readyz 503 at least once during the fault
#                      (faults of Redis and PostgreSQL, which every service needs); for the
#                      other faults others_stay_ready: the instances not hit stayed 200;
#   readyz_answers     no /readyz sample of a running instance went unanswered for 1 s;
#   ready_within_5s    every running instance answered 200 within 5 s of the recovery;
#   no_restart         every instance not killed on purpose still runs with its old pid;
#   rss_back           VmRSS of every instance not killed is within +10 % of its value before
#                      the fault, after FAULTS_SETTLE seconds (default 5);
#   audit_verify       `phrctl audit verify` passes.
# Prints "ok"/"FAIL <phase>: <check>" lines and a last line "N passed, N failed"; exit 1 on
# any failure. The whole run takes about 6 minutes.
#
# Environment: PHR_FAULTS_VAR, FAULTS_ONLY (space-separated phase names to run, e.g.
# "pg_blackhole records_sigterm"), FAULTS_SETTLE, FAULTS_RATE (record writes per second,
# default 6), and the ports (defaults in brackets): PHR_GATEWAY_PORT [22443], PHR_PG_PORT
# [22432], FAULTS_PROXY_PORT [PG + 1], FAULTS_PROXY_CTL_PORT [PG + 2], PHR_REDIS_PORT [22479],
# PHR_AUTH_PORT [22101], PHR_RECORDS_PORT [22102; the second instance listens 10 above],
# PHR_NOTIFICATION_PORT [22103], PHR_AUDIT_PORT [22104], PHR_STANDIN_PORT [22199].
set -uo pipefail

# shellcheck source=tests/lib/loadstack.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/loadstack.sh"
loadstack_env faults 22000 "$@"
# shellcheck source=tests/lib/proc.sh
. "$root/tests/lib/proc.sh"
here=$root/tests/faults
proxy_port=${FAULTS_PROXY_PORT:-$((pg_port + 1))}
proxy_ctl=${FAULTS_PROXY_CTL_PORT:-$((pg_port + 2))}
# Faster retries for the notification worker (as tests/run.sh).
export PHR_NOTIFY_CLAIM_TIMEOUT_S=${PHR_NOTIFY_CLAIM_TIMEOUT_S:-8}
export PHR_NOTIFY_BACKOFF_BASE_MS=${PHR_NOTIFY_BACKOFF_BASE_MS:-100}
export PHR_NOTIFY_BACKOFF_MAX_MS=${PHR_NOTIFY_BACKOFF_MAX_MS:-1000}
settle=${FAULTS_SETTLE:-5}
only=${FAULTS_ONLY:-}

log=$PHR_VAR/log
work=$PHR_VAR/faults
loadlog=$work/load.jsonl
insts=(auth records records-2 notification audit)
declare -A port=([auth]=$PHR_AUTH_PORT [records]=$PHR_RECORDS_PORT
    [records-2]=$((PHR_RECORDS_PORT + 10)) [notification]=$PHR_NOTIFICATION_PORT
    [audit]=$PHR_AUDIT_PORT)

passed=0
failed=0
stack_up=0
proxy_pid=""
load_pid=""
sampler_pids=()
started=$SECONDS

# Every stack.sh call after the first start gives the services the proxy as PostgreSQL.
stack() {
    PHR_PG_PORT=$proxy_port bash "$root/deploy/stack.sh" "$@"
}

cleanup() {
    local p
    for p in "${sampler_pids[@]}" $load_pid $proxy_pid; do
        kill "$p" 2>/dev/null || true
    done
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        stack down
    fi
}
trap 'cleanup' EXIT
trap 'echo "faults/run.sh: interrupted" >&2; cleanup; exit 130' INT TERM

now() {
    date +%s.%N | cut -c1-14
}

# check PHASE NAME DETAIL COMMAND...: one counted check.
check() {
    local phase=$1 name=$2 detail=$3
    shift 3
    if "$@"; then
        echo "ok   $phase: $name${detail:+ ($detail)}"
        passed=$((passed + 1))
    else
        echo "FAIL $phase: $name${detail:+ ($detail)}"
        failed=$((failed + 1))
    fi
}

pid_of() {
    head -n 1 "$PHR_VAR/run/$1.pid" 2>/dev/null
}

# proc_start PID: the process' start time (epoch seconds).
proc_start() {
    local stat ticks
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }
    ticks=$(awk '{ print $20 }' <<< "$stat")
    # now - (uptime - start ticks / HZ): btime has only whole seconds
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v up="$(cut -d' ' -f1 /proc/uptime)" \
        -v now="$(now)" 'BEGIN { printf "%.2f\n", now - (up - t / hz) }'
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

readyz() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 1 --http2-prior-knowledge \
        "http://127.0.0.1:${port[$1]}/readyz" 2>/dev/null
}

# sampler INST FILE: "EPOCH INST CODE" lines every 0.25 s until killed.
sampler() {
    while :; do
        printf '%s %s %s\n' "$(now)" "$1" "$(readyz "$1")" >> "$2"
        sleep 0.25
    done
}

start_samplers() {
    local i
    sampler_pids=()
    : > "$1"
    for i in "${insts[@]}"; do
        sampler "$i" "$1" &
        sampler_pids+=("$!")
    done
}

stop_samplers() {
    local p
    for p in "${sampler_pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null
    done
    sampler_pids=()
}

# wait_all_ready SECONDS INST...: 0 once every INST answers /readyz 200.
wait_all_ready() {
    local limit=$1 i pending t_end
    shift
    t_end=$((SECONDS + limit))
    while :; do
        pending=0
        for i in "$@"; do
            [ "$(readyz "$i")" = 200 ] || pending=1
        done
        [ "$pending" -eq 0 ] && return 0
        [ "$SECONDS" -ge "$t_end" ] && return 1
        sleep 0.1
    done
}

proxy() {
    "$PY" "$here/faultproxy.py" ctl "$proxy_ctl" "$1" > /dev/null
}

pg_data() {
    printf '%s/data\n' "$(head -n 1 "$PHR_VAR/run/pgdata")"
}

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# ---- the faults: FAULT_inject / FAULT_restore ----------------------------------------------
redis_kill_inject() {
    kill -KILL "$(pid_of redis)"
    sleep 5
}
redis_kill_restore() {
    redis-server "$PHR_VAR/redis/redis.conf"
}
redis_freeze_inject() {
    frozen=$(pid_of redis)
    kill -STOP "$frozen"
    sleep 10
}
redis_freeze_restore() {
    kill -CONT "$frozen"
}
pg_stop_inject() {
    as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$(pg_data)" -m immediate -w stop > /dev/null
    sleep 5
}
pg_stop_restore() {
    as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$(pg_data)" -l "$log/postgresql.log" -w -t 60 \
        start > /dev/null
}
pg_blackhole_inject() {
    proxy blackhole
    sleep 20
}
pg_blackhole_restore() {
    proxy pass
}
kill_and_restart_inject() {
    kill -KILL "$(pid_of "$1")"
    sleep 3
}
# restart_only INST: stack.sh up restarts INST and nothing else.
restart_only() {
    stack up > "$work/up-$1.log" 2>&1 || { cat "$work/up-$1.log" >&2; return 1; }
    local started_now
    started_now=$(grep -o 'starting [a-z0-9-]*' "$work/up-$1.log" | tr '\n' ' ')
    if [ "$started_now" != "starting phr-$1 " ]; then
        echo "    stack.sh up started: ${started_now:-nothing}" >&2
        return 1
    fi
}
audit_kill_inject() { kill_and_restart_inject audit; }
audit_kill_restore() { restart_only audit; }
notification_kill_inject() { kill_and_restart_inject notification; }
notification_kill_restore() { restart_only notification; }
records2_kill_inject() {
    kill -KILL "$(pid_of records-2)"
    sleep 10
}
records2_kill_restore() { :; }
nginx_reload_inject() {
    kill -HUP "$(pid_of nginx)"
    sleep 5
}
nginx_reload_restore() { :; }
records_sigterm_inject() {
    local victim i
    victim=$(pid_of records-2)
    kill -TERM "$victim"
    for ((i = 0; i < 150; i++)); do
        proc_alive "$victim" || break
        sleep 0.1
    done
    sleep 2
}
records_sigterm_restore() { :; }

# phase NAME KIND KILLED [--no-failures]: one fault under load and its checks. KIND: deps (a
# dependency of every service: all /readyz must go 503) or part (a process: the others must
# stay ready). KILLED: the instance killed on purpose ("-" for none).
phase() {
    local name=$1 kind=$2 killed=$3 nofail=${4:-}
    local i before_pid=() before_rss=() samples t0 t_fixing t_rest t_ready live=() running=()
    local ready_s ok detail
    if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
        return 0
    fi
    echo "=== $name ($((SECONDS - started)) s)"
    for i in "${insts[@]}"; do
        before_pid+=("$(pid_of "$i")")
        before_rss+=("$(rss_kb "$(pid_of "$i")")")
        [ "$i" != "$killed" ] && live+=("$i")
    done
    samples=$work/readyz-$name.txt
    start_samplers "$samples"
    t0=$(now)
    "${name}_inject"
    t_fixing=$(now)
    if ! "${name}_restore"; then
        check "$name" restore "the fault could not be undone" false
    fi
    t_rest=$(now)
    running=()
    for i in "${insts[@]}"; do
        proc_alive "$(pid_of "$i")" && running+=("$i")
    done
    ok=1
    wait_all_ready 30 "${running[@]}" || ok=0
    t_ready=$(now)
    stop_samplers
    # from the samples (not this script's polling, which may lag on a busy machine): per
    # instance, the first 200 after its last non-200 answer since the recovery
    ready_s=$(awk -v a="$t_rest" -v b="$t_ready" -v run=" ${running[*]} " '!index(run, " " $2 " ") {
            next }
        $1 >= a && $3 != "200" { bad[$2] = $1; ok[$2] = 0 }
        $1 >= a && $3 == "200" && ($2 in bad) && !ok[$2] { ok[$2] = $1 }
        END { m = 0; for (i in bad) { t = (ok[i] ? ok[i] : b) - a; if (t > m) m = t }
              printf "%.1f", m }' "$samples")
    check "$name" ready_within_5s "${ready_s} s after the recovery (undoing the fault took $(
        awk -v a="$t_fixing" -v b="$t_rest" 'BEGIN { printf "%.1f", b - a }') s)" \
        awk -v ok="$ok" -v s="$ready_s" 'BEGIN { exit !(ok && s <= 5.0) }'
    # a restarted instance: from its process start to its first /readyz 200
    if [ "$killed" != - ] && proc_alive "$(pid_of "$killed")"; then
        local t_start_proc first_ok
        t_start_proc=$(proc_start "$(pid_of "$killed")")
        first_ok=$(awk -v a="$t_start_proc" -v k="$killed" '$1 >= a && $2 == k && $3 == "200" {
            print $1; exit }' "$samples")
        ready_s=$(awk -v a="$t_start_proc" -v b="${first_ok:-0}" \
            'BEGIN { printf "%.1f", b - a }')
        check "$name" restarted_ready_5s "$killed ready ${ready_s} s after its start" \
            awk -v f="${first_ok:-0}" -v s="$ready_s" 'BEGIN { exit !(f > 0 && s <= 5.0) }'
    fi

    # /readyz during the fault: [t0, t_fixing]
    local seen unanswered
    unanswered=$(awk -v a="$t0" -v b="$t_fixing" -v k="$killed" \
        '$1 >= a && $1 <= b && $2 != k && $3 == "000" { print $2 }' "$samples" | sort | uniq -c |
        tr -s ' \n' ' ')
    if [ "$kind" = deps ]; then
        seen=$(awk -v a="$t0" -v b="$t_fixing" '$1 >= a && $1 <= b && $3 == "503" { print $2 }' \
            "$samples" | sort -u | tr '\n' ' ')
        check "$name" readyz_503_during "503 seen from: ${seen:-none}" \
            test "$seen" = "$(printf '%s\n' "${live[@]}" | sort -u | tr '\n' ' ')"
    else
        seen=$(awk -v a="$t0" -v b="$t_fixing" -v k="$killed" \
            '$1 >= a && $1 <= b && $2 != k && $3 != "200" { print $2 "=" $3 }' "$samples" |
            sort | uniq -c | tr -s ' \n' ' ')
        check "$name" others_stay_ready "${seen:+not 200: $seen}" test -z "${seen// /}"
    fi
    check "$name" readyz_answers "${unanswered:+unanswered: $unanswered}" test -z "$unanswered"

    # nobody restarted except the victim
    local restarted="" n=0
    for i in "${insts[@]}"; do
        if [ "$i" != "$killed" ]; then
            if [ "$(pid_of "$i")" != "${before_pid[$n]}" ] || ! proc_alive "${before_pid[$n]}"; then
                restarted+="$i "
            fi
        fi
        n=$((n + 1))
    done
    check "$name" no_restart "${restarted:+restarted or gone: $restarted}" test -z "$restarted"

    sleep "$settle"
    local grown="" rss_line=""
    n=0
    for i in "${insts[@]}"; do
        if [ "$i" != "$killed" ] && proc_alive "${before_pid[$n]}"; then
            local r
            r=$(rss_kb "${before_pid[$n]}")
            rss_line+="$i ${before_rss[$n]}->${r} kB, "
            if [ -n "${before_rss[$n]}" ] && [ "$((r * 10))" -gt "$((before_rss[n] * 11))" ]; then
                grown+="$i "
            fi
        fi
        n=$((n + 1))
    done
    check "$name" rss_back "${rss_line%, }${grown:+; grown: $grown}" test -z "$grown"

    "$PY" "$here/check.py" --phase "$name" --log "$loadlog" --since "$t0" --until "$(now)" \
        --pg-port "$pg_port" --secrets "$PHR_SECRETS_DIR" --standin-port "$PHR_STANDIN_PORT" \
        --wait 45 ${nofail:+"$nofail"} | tee "$work/check-$name.txt"
    passed=$((passed + $(grep -c '^ok ' "$work/check-$name.txt")))
    failed=$((failed + $(grep -c '^FAIL ' "$work/check-$name.txt")))
    [ -s "$work/check-$name.txt" ] || failed=$((failed + 1))

    detail=$(PHR_PG_PORT=$pg_port "$build/bin/phrctl" audit verify 2>&1 | tail -n 1)
    check "$name" audit_verify "$detail" grep -q '^ok' <<< "$detail"
}

# ---- the stack, the proxy, the load ----------------------------------------------------------
bash "$root/deploy/stack.sh" purge > /dev/null 2>&1 ||
    { echo "faults/run.sh: could not clean $PHR_VAR" >&2; exit 1; }
stack_up=1
mkdir -p "$PHR_VAR/log"
if ! PHR_PG_PORT=$pg_port bash "$root/deploy/stack.sh" up-deps > "$PHR_VAR/log/faults-up.log" 2>&1
then
    cat "$PHR_VAR/log/faults-up.log" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$work"
"$PY" "$here/faultproxy.py" serve "$proxy_port" "$pg_port" "$proxy_ctl" > "$log/faultproxy.log" 2>&1 &
proxy_pid=$!
# stack.sh provisions through PostgreSQL's socket named after the port it is given: the proxy's
# port gets a link to the real one.
sock=$(head -n 1 "$PHR_VAR/run/pgdata")/sock
ln -sfn "$sock/.s.PGSQL.$pg_port" "$sock/.s.PGSQL.$proxy_port"
for ((i = 0; i < 50; i++)); do
    proxy stats 2> /dev/null && break
    sleep 0.1
done
if ! stack up >> "$PHR_VAR/log/faults-up.log" 2>&1; then
    tail -n 30 "$PHR_VAR/log/faults-up.log" >&2
    echo "faults/run.sh: the stack did not come up (see $log)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
echo "stack up with two records instances; services reach PostgreSQL through the proxy" \
    "(127.0.0.1:$proxy_port -> $pg_port)"

rm -f "$work/load.ready"
"$PY" "$here/load.py" --gateway "127.0.0.1:$PHR_GATEWAY_PORT" --log "$loadlog" \
    --rate "${FAULTS_RATE:-6}" --ready "$work/load.ready" 2> "$work/load.err" &
load_pid=$!
for ((i = 0; i < 600; i++)); do
    [ -f "$work/load.ready" ] && break
    proc_alive "$load_pid" || break
    sleep 0.1
done
if [ ! -f "$work/load.ready" ]; then
    echo "faults/run.sh: the load client did not start" >&2
    tail -n 20 "$work/load.err" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
sleep 10 # warm up: pools, caches and RSS settle before the first baseline
t_start=$("$PY" -c 'import json,sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("ev") == "req":
        print(e["t"]); break' "$loadlog")

phase redis_kill deps -
phase redis_freeze deps -
phase pg_stop deps -
phase pg_blackhole deps -
phase audit_kill part audit
phase notification_kill part notification
phase records2_kill part records-2
if ! proc_alive "$(pid_of records-2)"; then
    restart_only records-2 || echo "    (records-2 did not come back)"
    sleep 11 # nginx rests a failed server for fail_timeout before it tries it again
fi
phase nginx_reload part -
phase records_sigterm part records-2 --no-failures

# ---- the end: stop the load, check everything once more ---------------------------------------
kill -TERM "$load_pid" 2>/dev/null
wait "$load_pid" 2>/dev/null
load_pid=""
if ! proc_alive "$(pid_of records-2)"; then
    restart_only records-2 > /dev/null 2>&1 || true
fi
echo "=== final ($((SECONDS - started)) s)"
"$PY" "$here/check.py" --phase final --log "$loadlog" --since "$t_start" --until "$(now)" \
    --pg-port "$pg_port" --secrets "$PHR_SECRETS_DIR" --standin-port "$PHR_STANDIN_PORT" \
    --wait 45 | tee "$work/check-final.txt"
passed=$((passed + $(grep -c '^ok ' "$work/check-final.txt")))
failed=$((failed + $(grep -c '^FAIL ' "$work/check-final.txt")))
detail=$(PHR_PG_PORT=$pg_port "$build/bin/phrctl" audit verify 2>&1 | tail -n 1)
check final audit_verify "$detail" grep -q '^ok' <<< "$detail"

echo "whole run: $((SECONDS - started)) s; load log $loadlog"
cleanup
trap - EXIT
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
