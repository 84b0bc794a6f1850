#!/usr/bin/env bash
# tests/ops/scale_test.sh BUILD_DIR - the stack scaled out: two instances of auth and records
# (and, for step 4, of notification) behind the gateway, sharing one PostgreSQL and one Redis
# (deploy/SCALING.md).
#
#   1. stack.sh up with PHR_{AUTH,RECORDS}_INSTANCES=2 on a fresh private stack; the gateway's
#      upstreams list both instances and both answer gateway traffic;
#   2. the whole integration suite (BUILD_DIR/tests/itest) against that stack (SCALE_SKIP_ITEST=1
#      leaves it out);
#   3. failover: 400 idempotent GETs through the gateway (records routes, with and without a
#      session) while one records instance is killed with SIGKILL: every answer is 200 (nginx
#      moves the requests to the other instance, grpc_next_upstream); a write after the kill
#      succeeds; stack.sh up restarts only the missing instance, which serves again;
#   4. outbox relays and notification workers on two instances (notification-2 started now):
#      SCALE_N registrations, withdrawals and reset requests in parallel through the gateway
#      (they land on both auth instances; both relays claim rows with SKIP LOCKED), then, at
#      the receivers: every withdrawal reached records exactly once (access-log lines per
#      patient path over both records instances), the notification service got exactly one POST
#      per relayed outbox row (202 access lines == "accepted" log lines == rows sent in the
#      window), and the provider stand-in got exactly one message per sent e-mail notification
#      (custom_args.notification_id; two notification workers).
#
# Ports (defaults, overridable through the same variables as deploy/stack.sh): gateway 18543,
# PostgreSQL 18532, Redis 18479, auth/records/notification/audit 19201-19204 (second
# instances 19211-19213), stand-in 19299. The stack lives in PHR_SCALE_VAR (var/scale); it is
# purged first and stopped at the end. SCALE_N (default 12) sets the size of step 4.
# Prints "ok"/"FAIL" per check and a last line "N passed, N failed" (the suite's counts plus
# this script's checks); exit status 1 if anything failed.
set -uo pipefail

# shellcheck source=tests/lib/buildarg.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/buildarg.sh"
buildarg "$@"
# shellcheck source=tests/lib/proc.sh
. "$root/tests/lib/proc.sh"

export PHR_VAR=${PHR_SCALE_VAR:-$root/var/scale}
export PHR_BUILD=$build
export PHR_GATEWAY_PORT=${PHR_GATEWAY_PORT:-18543}
export PHR_PG_PORT=${PHR_PG_PORT:-18532}
export PHR_REDIS_PORT=${PHR_REDIS_PORT:-18479}
export PHR_AUTH_PORT=${PHR_AUTH_PORT:-19201}
export PHR_RECORDS_PORT=${PHR_RECORDS_PORT:-19202}
export PHR_NOTIFICATION_PORT=${PHR_NOTIFICATION_PORT:-19203}
export PHR_AUDIT_PORT=${PHR_AUDIT_PORT:-19204}
export PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-19299}
# Two instances of auth and records throughout; notification gets its second instance for step 4
# only (the suite's notification crash test kills and counts one delivering process).
export PHR_AUTH_INSTANCES=2 PHR_RECORDS_INSTANCES=2 PHR_NOTIFICATION_INSTANCES=1
export NGINX_LOGIN_RATE=${NGINX_LOGIN_RATE:-600r/m}
export NGINX_LOGIN_BURST=${NGINX_LOGIN_BURST:-300}
export PHR_PG_HOST=127.0.0.1 PHR_REDIS_HOST=127.0.0.1
export PHR_SECRETS_DIR=$PHR_VAR/secrets
export CMOCKA_MESSAGE_OUTPUT=STDOUT
n_users=${SCALE_N:-12}
gw=https://127.0.0.1:$PHR_GATEWAY_PORT
log=$PHR_VAR/log
work=$PHR_VAR/scale-test

passed=0
failed=0
stack_up=0

stack() {
    bash "$root/deploy/stack.sh" "$@"
}

stop_stack() {
    if [ "$stack_up" -eq 1 ]; then
        stack_up=0
        stack down
    fi
}
trap 'stop_stack' EXIT
trap 'echo "scale_test: interrupted" >&2; stop_stack; exit 130' INT TERM

# check NAME COMMAND...: one counted check.
check() {
    local name=$1
    shift
    if "$@"; then
        echo "ok   scale_$name"
        passed=$((passed + 1))
    else
        echo "FAIL scale_$name"
        failed=$((failed + 1))
    fi
}

# eq A B: numeric equality, printing both when they differ.
eq() {
    [ "$1" = "$2" ] && return 0
    echo "    expected $2, got $1"
    return 1
}

psql_svc() {
    local svc=$1
    shift
    PGPASSWORD=$(head -n 1 "$PHR_SECRETS_DIR/pg_$svc.password") psql -X -q -h 127.0.0.1 \
        -p "$PHR_PG_PORT" -U "phr_$svc" -d "phr_$svc" -tA -v ON_ERROR_STOP=1 "$@"
}

# gw_call METHOD PATH [BODY [TOKEN]]: prints "STATUS BODY" (body on one line).
gw_call() {
    local args=(-sk --http2 --max-time 15 -X "$1" -w '\n%{http_code}' "$gw$2")
    [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    [ -n "${4:-}" ] && args+=(-H "Authorization: Bearer $4")
    local out
    out=$(curl "${args[@]}" 2>/dev/null)
    printf '%s %s\n' "${out##*$'\n'}" "$(printf '%s' "${out%$'\n'*}" | tr -d '\n')"
}

# json_get FIELD: reads JSON on stdin, prints the top-level FIELD (empty when absent).
json_get() {
    python3 -c 'import json,sys
try:
    v = json.load(sys.stdin).get(sys.argv[1], "")
except Exception:
    v = ""
print(v if v is not None else "")' "$1"
}

# nginx writes its access log from a buffer at least once a second (access_log ... flush=1s):
# both readers wait that long first, so no line of the requests before is still unwritten.
LOG_FLUSH_WAIT=1.2

# lines_after FILE OFFSET: the lines of FILE after line OFFSET.
lines_after() {
    sleep "$LOG_FLUSH_WAIT"
    tail -n +"$(($2 + 1))" "$1" 2>/dev/null
}

nlines() {
    sleep "$LOG_FLUSH_WAIT"
    if [ -f "$1" ]; then
        wc -l < "$1"
    else
        echo 0
    fi
}

# upstreams_seen FIRST_LINE PATH_REGEX: the upstream addresses in nginx-access.log lines after
# FIRST_LINE whose uri matches PATH_REGEX, one per line, sorted and unique.
upstreams_seen() {
    lines_after "$log/nginx-access.log" "$1" | python3 -c 'import json,re,sys
seen = set()
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if re.search(sys.argv[1], e.get("uri", "")):
        for a in e.get("upstream_addr", "").split(","):
            if a.strip():
                seen.add(a.strip())
print("\n".join(sorted(seen)))' "$2"
}

# ---- 1. the scaled stack -------------------------------------------------------------------
stack purge || { echo "scale_test: could not clean $PHR_VAR" >&2; exit 1; }
stack_up=1
if ! stack up; then
    echo "scale_test: FAILED: the scaled stack did not come up (see $log)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$work"
stack status
rec1=127.0.0.1:$PHR_RECORDS_PORT
rec2=127.0.0.1:$((PHR_RECORDS_PORT + 10))
auth1=127.0.0.1:$PHR_AUTH_PORT
auth2=127.0.0.1:$((PHR_AUTH_PORT + 10))

upstream_has() {
    grep -A4 "upstream $1 {" "$PHR_VAR/nginx/nginx.conf" | grep -qF "server $2 "
}
upstreams_listed() {
    upstream_has records_svc "$rec1" && upstream_has records_svc "$rec2" &&
        upstream_has auth_svc "$auth1" && upstream_has auth_svc "$auth2" &&
        upstream_has audit_svc "127.0.0.1:$PHR_AUDIT_PORT"
}
check upstream_lists_instances upstreams_listed

first=$(nlines "$log/nginx-access.log")
for ((i = 0; i < 20; i++)); do
    gw_call GET /api/v1/records/types > /dev/null
    gw_call POST /api/v1/auth/password-policy/check '{"password":"Kf8#mQ2vLp"}' > /dev/null
done
sleep 1
seen_rec=$(upstreams_seen "$first" '^/api/v1/records/')
seen_auth=$(upstreams_seen "$first" '^/api/v1/auth/')
check both_records_serve eq "$(printf '%s\n' "$seen_rec" | tr '\n' ' ')" "$rec1 $rec2 "
check both_auth_serve eq "$(printf '%s\n' "$seen_auth" | tr '\n' ' ')" "$auth1 $auth2 "

# ---- 2. the integration suite ---------------------------------------------------------------
export PHR_TEST_VAR=$PHR_VAR
export PHR_TEST_GATEWAY=$gw
export PHR_TEST_PG_HOST=127.0.0.1 PHR_TEST_PG_PORT=$PHR_PG_PORT
export PHR_TEST_REDIS_HOST=127.0.0.1 PHR_TEST_REDIS_PORT=$PHR_REDIS_PORT
PHR_TEST_REDIS_PASSWORD=$(head -n 1 "$PHR_SECRETS_DIR/redis.password")
export PHR_TEST_REDIS_PASSWORD
PHR_TEST_PG_CONNINFO="host=127.0.0.1 port=$PHR_PG_PORT dbname=phr_test user=phr_test"
PHR_TEST_PG_CONNINFO+=" password=$(head -n 1 "$PHR_SECRETS_DIR/pg_test.password")"
export PHR_TEST_PG_CONNINFO

if [ "${SCALE_SKIP_ITEST:-0}" != 1 ]; then
    echo "=== itest (two instances of auth and records)"
    timeout --foreground --kill-after=10 "${PHR_TEST_TIMEOUT:-900}" "$build/tests/itest" 2>&1 |
        tee "$work/itest.log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/itest.log" | tail -n 1)
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ] && failed=$((failed + 1))
    else
        echo "scale_test: itest exited $rc without a count"
        failed=$((failed + 1))
    fi
    # The suite restarts parts of the stack (fault tests): all instances are back?
    check stack_whole_after_itest stack up
fi

# dead PID: the process is gone (or a zombie nobody reaped yet).
dead() {
    ! proc_alive "$1"
}

# final_upstreams FIRST_LINE PATH_REGEX: how many matching requests after FIRST_LINE were
# finally answered by each upstream address ("N ADDR" lines).
final_upstreams() {
    lines_after "$log/nginx-access.log" "$1" | python3 -c 'import collections,json,re,sys
c = collections.Counter()
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if re.search(sys.argv[1], e.get("uri", "")):
        c[e.get("upstream_addr", "").split(",")[-1].strip()] += 1
for a, n in sorted(c.items()):
    print(n, a)' "$2"
}

# ---- 3. failover: kill -9 one records instance under load -----------------------------------
email="scale-$$-$RANDOM@example.jp"
reg=$(gw_call POST /api/v1/auth/register \
    "{\"email\":\"$email\",\"password\":\"Blue7Harbor!q\",\"name\":\"Scale Patient\"}")
login=$(gw_call POST /api/v1/auth/login "{\"email\":\"$email\",\"password\":\"Blue7Harbor!q\"}")
token=$(printf '%s' "${login#* }" | json_get token)
check patient_session test "${reg%% *}" = 201 -a -n "$token"

# load FILE COUNT: COUNT idempotent GETs (two records routes in turn), 20 per HTTP/2
# connection, about 40 per second (under the gateway's api rate limit, 50r/s); one status
# code per line into FILE.
load() {
    local out=$1 count=$2 i j args
    : > "$out"
    for ((i = 0; i < count; i += 20)); do
        args=()
        for ((j = 0; j < 10; j++)); do
            args+=(-o /dev/null "$gw/api/v1/records/types" -o /dev/null "$gw/api/v1/me/records?limit=5")
        done
        curl -sk --http2 --max-time 20 -H "Authorization: Bearer $token" \
            -w '%{http_code}\n' "${args[@]}" >> "$out" 2>/dev/null
        sleep 0.5
    done
}

victim=$(head -n 1 "$PHR_VAR/run/records-2.pid" 2>/dev/null)
load "$work/load.txt" 400 &
load_pid=$!
sleep 3
echo "killing records-2 (pid $victim) with SIGKILL under load"
kill -KILL "$victim"
killed_at=$(nlines "$log/nginx-access.log")
wait "$load_pid"
total=$(wc -l < "$work/load.txt")
bad=$(grep -vc '^200$' "$work/load.txt")
echo "    $total requests around the kill, $bad not 200 ($(sort "$work/load.txt" | uniq -c |
    tr -s ' \n' ' '))"
check failover_all_answered eq "$total" 400
check failover_no_errors eq "$bad" 0
check victim_gone dead "$victim"
after=$(final_upstreams "$killed_at" '^/api/v1/(records|me)/')
echo "    answered after the kill, by upstream: $(tr '\n' ' ' <<< "$after")"
retried=$(lines_after "$log/nginx-access.log" "$killed_at" | grep -c '"upstream_addr":"[^"]*, ')
echo "    requests nginx moved from the dead instance to the other one: $retried"
check failover_survivor_answers eq "$(awk '{print $2}' <<< "$after" | tr '\n' ' ')" "$rec1 "
# writes after the kill: a new record (POST: a refused connection moves it too)
rec=$(gw_call POST /api/v1/me/records \
    '{"type":"body_weight","measured_at":"2026-11-20T07:30:00+09:00","values":{"value":61.5}}' \
    "$token")
check write_after_kill eq "${rec%% *}" 201
[ "${rec%% *}" = 201 ] || echo "    ${rec:0:300}"

stack up > "$work/restart.log" 2>&1
restarted_one() {
    grep -q "starting phr-records-2" "$work/restart.log" &&
        [ "$(grep -c "starting phr-" "$work/restart.log")" -eq 1 ]
}
check restart_only_missing restarted_one
# nginx rests a failed server for fail_timeout (10 s) before trying it again.
sleep 11
first=$(nlines "$log/nginx-access.log")
load "$work/load2.txt" 100
sleep 1
check restarted_serves_again eq "$(upstreams_seen "$first" '^/api/v1/(records|me)/' |
    tr '\n' ' ')" "$rec1 $rec2 "
check after_restart_no_errors eq "$(grep -vc '^200$' "$work/load2.txt")" 0

# ---- 4. outbox relays and notification workers on two instances ------------------------------
export PHR_NOTIFICATION_INSTANCES=2
stack up > "$work/up-notification-2.log" 2>&1
check notification_second_instance grep -q "starting phr-notification-2" \
    "$work/up-notification-2.log"
# backlog SVC: unsent, live outbox rows of SVC.
backlog() {
    psql_svc "$1" -c "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL"
}
# drained [SINCE]: the outboxes of auth, records and audit are empty and no notification
# created since SINCE (a timestamp; default none) waits for delivery.
drained() {
    local n
    n=$(psql_svc notification -c "SELECT count(*) FROM notifications
        WHERE created_at >= '${1:-infinity}' AND status IN ('queued', 'sending')")
    [ "$(backlog auth)" = 0 ] && [ "$(backlog records)" = 0 ] && [ "$(backlog audit)" = 0 ] &&
        [ "$n" = 0 ]
}
wait_drained() {
    local i
    for ((i = 0; i < 90; i++)); do
        drained "$@" && return 0
        sleep 1
    done
    return 1
}
# Start from a quiet system: nothing left over from the suite is relayed inside the window.
wait_drained || echo "    (outboxes not drained before step 4)"
declare -A off
for f in "$log"/records.log "$log"/records-2.log "$log"/notification.log \
    "$log"/notification-2.log; do
    off[$f]=$(nlines "$f")
done
t0=$(psql_svc auth -c "SELECT now()")
curl -sk -X DELETE "http://127.0.0.1:$PHR_STANDIN_PORT/__messages" > /dev/null

# user I: register, log in, withdraw (patients W*), or register and ask for a reset (R*).
user_flow() {
    local i=$1 e tok out
    e="scale-$$-$i-$RANDOM@example.jp"
    gw_call POST /api/v1/auth/register \
        "{\"email\":\"$e\",\"password\":\"Blue7Harbor!q\",\"name\":\"Scale $i\"}" > /dev/null
    if [ $((i % 2)) -eq 0 ]; then
        out=$(gw_call POST /api/v1/auth/login "{\"email\":\"$e\",\"password\":\"Blue7Harbor!q\"}")
        tok=$(printf '%s' "${out#* }" | json_get token)
        out=$(gw_call POST /api/v1/auth/withdraw '{"password":"Blue7Harbor!q"}' "$tok")
        echo "W ${out%% *} $e"
    else
        out=$(gw_call POST /api/v1/auth/password-reset/request "{\"email\":\"$e\"}")
        echo "R ${out%% *} $e"
    fi
}
pids=()
for ((i = 0; i < n_users; i++)); do
    user_flow "$i" > "$work/user-$i.txt" &
    pids+=("$!")
done
wait "${pids[@]}"
# Which processes hold connections to the receivers right now (the relays just posted).
sleep 1
conns=$(ss -tnpH state established "( dport = :$PHR_NOTIFICATION_PORT or dport = :$((
    PHR_RECORDS_PORT)) or dport = :$((PHR_RECORDS_PORT + 10)) or dport = :$PHR_AUDIT_PORT )" \
    2>/dev/null)
cat "$work"/user-*.txt > "$work/users.txt"
check flows_answered eq "$(grep -cE '^(W 204|R 202) ' "$work/users.txt")" "$n_users"

wait_drained "$t0"
sleep 2
check outboxes_drained drained "$t0"

# a. withdrawals at records: one POST per patient, over both records instances.
ids=$(psql_svc auth -c "SELECT body->>'patient_id' FROM outbox
    WHERE topic = 'records' AND created_at >= '$t0' ORDER BY 1")
nw=$(grep -c '^W ' "$work/users.txt")
check withdrawal_rows eq "$(printf '%s\n' "$ids" | grep -c .)" "$nw"
recv=$(for f in "$log"/records.log "$log"/records-2.log; do
    lines_after "$f" "${off[$f]}"
done | grep '"msg":"access"' | grep -o '"path":"/internal/v1/patients/[^/"]*/withdrawal"' |
    sort | uniq -c)
dups=0
missing=0
for id in $ids; do
    c=$(printf '%s\n' "$recv" | awk -v p="\"path\":\"/internal/v1/patients/$id/withdrawal\"" \
        '$2 == p { print $1 }')
    [ -z "$c" ] && missing=$((missing + 1))
    [ -n "$c" ] && [ "$c" -gt 1 ] && dups=$((dups + 1))
done
echo "    withdrawals received per patient: $(printf '%s\n' "$recv" | awk '{print $1}' | sort |
    uniq -c | tr '\n' ' ')"
check withdrawal_each_once test "$dups" -eq 0 -a "$missing" -eq 0

# b. notification: one POST per outbox row (any duplicate POST would be a 202 without an
# "accepted" line: same key, stored once).
sent_rows() {
    psql_svc "$1" -c "SELECT count(*) FROM outbox WHERE topic = 'notification'
        AND sent_at >= '$t0'"
}
rows=$(($(sent_rows auth) + $(sent_rows records) + $(sent_rows audit)))
nlog=$(for f in "$log"/notification.log "$log"/notification-2.log; do
    lines_after "$f" "${off[$f]}"
done)
posts=$(printf '%s\n' "$nlog" | grep '"msg":"access"' |
    grep -c '"method":"POST","path":"/internal/v1/notifications",.*"status":202')
accepted=$(printf '%s\n' "$nlog" | grep -c '"msg":"notification [0-9a-f-]* accepted')
echo "    notification rows relayed $rows, POSTs received $posts, accepted $accepted"
check notification_rows_exist test "$rows" -ge "$n_users"
check notification_one_post_per_row eq "$posts" "$rows"
check notification_each_accepted_once eq "$accepted" "$rows"

# c. the provider: one message per sent e-mail notification (two notification workers), and
# none for any other (failed ones) more than once.
mapfile -t nid_list < <(psql_svc notification -c "SELECT id FROM notifications
    WHERE created_at >= '$t0' AND channel = 'email' AND status IN ('sent', 'delivered', 'bounced')
    ORDER BY 1")
curl -s "http://127.0.0.1:$PHR_STANDIN_PORT/__messages" > "$work/messages.json"
per=$(python3 -c 'import collections,json,sys
m = json.load(open(sys.argv[1]))
m = m.get("messages", m) if isinstance(m, dict) else m
c = collections.Counter((x.get("custom_args") or {}).get("notification_id") for x in m)
for nid in sys.argv[2:]:
    print(c.get(nid, 0))' "$work/messages.json" "${nid_list[@]}" | sort | uniq -c | tr '\n' ' ')
echo "    messages per e-mail notification (count x messages): $per"
one_each() {
    [ "${#nid_list[@]}" -gt 0 ] && [[ $per =~ ^\ *[0-9]+\ 1\ $ ]]
}
check provider_one_message_each one_each
# Both auth instances took part: each held a connection to a receiver right after the flows.
a1=$(head -n 1 "$PHR_VAR/run/auth.pid")
a2=$(head -n 1 "$PHR_VAR/run/auth-2.pid")
both_relay() {
    grep -q "pid=$a1," <<< "$conns" && grep -q "pid=$a2," <<< "$conns"
}
check both_auth_relay both_relay

stop_stack
trap - EXIT
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
