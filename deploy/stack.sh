#!/usr/bin/env bash
# stack.sh up|up-deps|down|status|logs|run|purge - the local real stack under $PHR_VAR.
#
#   up      start whatever is not running (secrets, TLS, PostgreSQL, Redis, the four
#           services, nginx), wait for every /readyz and the gateway's /healthz, then
#           print "ready: https://127.0.0.1:<PHR_GATEWAY_PORT>". Exit 1 on timeout.
#           Pending audit migrations are applied by `phrctl migrate audit` before the
#           services start (owner migrations: deploy/OPERATIONS.md).
#   up-deps only secrets, TLS, PostgreSQL and Redis (for unit tests).
#   down    stop everything (idempotent).
#   status  one line per part.
#   logs    follow $PHR_VAR/log/*.log.
#   run     follow the logs in the foreground; Ctrl-C runs down and exits 0.
#   purge   down, then delete $PHR_VAR and the PostgreSQL cluster (tests use this).
#
# Environment (defaults): PHR_VAR (var, relative to the repo root), PHR_BUILD (build),
# PHR_GATEWAY_PORT 8443, PHR_PG_PORT 55432, PHR_REDIS_PORT 56379, PHR_AUTH_PORT 9101,
# PHR_RECORDS_PORT 9102, PHR_NOTIFICATION_PORT 9103, PHR_AUDIT_PORT 9104,
# PHR_STANDIN_PORT 9199 (provider stand-in tools/standin/standin.py; the services get
# PHR_SENDGRID_BASE_URL/PHR_TWILIO_BASE_URL pointing at it), PHR_PUBLIC_BASE_URL
# (https://127.0.0.1:<PHR_GATEWAY_PORT>),
# PHR_UP_TIMEOUT 60 (seconds to wait for readiness), PHR_TZ Asia/Tokyo (nginx log times),
# PHR_{AUTH,RECORDS,NOTIFICATION,AUDIT}_INSTANCES 1 (1-9: instance N > 1 listens on the
# service's port + 10 * (N - 1), pid file var/run/<svc>-N.pid, log var/log/<svc>-N.log; the
# gateway's upstream lists every instance; peers call instance 1; deploy/SCALING.md),
# NGINX_LOGIN_RATE/BURST and NGINX_API_RATE/BURST (see deploy/nginx/render.sh).
#
# Layout: var/pg (cluster; or /var/tmp/phr-pg-<hash> when user postgres cannot reach
# var/, recorded in var/run/pgdata), var/redis, var/nginx, var/tls, var/secrets,
# var/log, var/run (pid files).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$ROOT/$1" ;;
    esac
}

PHR_VAR=$(abspath "${PHR_VAR:-var}")
PHR_VAR=${PHR_VAR%/}
PHR_BUILD=$(abspath "${PHR_BUILD:-build}")
export PHR_VAR PHR_BUILD
export PHR_GATEWAY_PORT=${PHR_GATEWAY_PORT:-8443}
export PHR_PG_PORT=${PHR_PG_PORT:-55432}
export PHR_REDIS_PORT=${PHR_REDIS_PORT:-56379}
export PHR_AUTH_PORT=${PHR_AUTH_PORT:-9101}
export PHR_RECORDS_PORT=${PHR_RECORDS_PORT:-9102}
export PHR_NOTIFICATION_PORT=${PHR_NOTIFICATION_PORT:-9103}
export PHR_AUDIT_PORT=${PHR_AUDIT_PORT:-9104}
export PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-9199}
export PHR_SENDGRID_BASE_URL=${PHR_SENDGRID_BASE_URL:-http://127.0.0.1:$PHR_STANDIN_PORT}
export PHR_TWILIO_BASE_URL=${PHR_TWILIO_BASE_URL:-http://127.0.0.1:$PHR_STANDIN_PORT}
export PHR_PUBLIC_BASE_URL=${PHR_PUBLIC_BASE_URL:-https://127.0.0.1:$PHR_GATEWAY_PORT}
export PHR_STANDIN_WEBHOOK_BASE=${PHR_STANDIN_WEBHOOK_BASE:-https://127.0.0.1:$PHR_GATEWAY_PORT}
export PHR_PG_HOST=127.0.0.1
export PHR_REDIS_HOST=127.0.0.1
UP_TIMEOUT=${PHR_UP_TIMEOUT:-60}

SERVICES=(auth records notification audit)
LOG=$PHR_VAR/log
RUN=$PHR_VAR/run
SECRETS=$PHR_VAR/secrets
TLS=$PHR_VAR/tls
REDIS_DIR=$PHR_VAR/redis
NGINX_DIR=$PHR_VAR/nginx
NGINX_CONF=$NGINX_DIR/nginx.conf
PG_BIN=/usr/lib/postgresql/15/bin
export PHR_SECRETS_DIR=$SECRETS

say() {
    printf 'stack: %s\n' "$*" >&2
}

die() {
    say "$*"
    exit 1
}

port_of() {
    local v="PHR_${1^^}_PORT"
    printf '%s\n' "${!v}"
}

# instances_of SVC: PHR_<SVC>_INSTANCES (default 1, at most 9).
instances_of() {
    local v="PHR_${1^^}_INSTANCES" n
    n=${!v:-1}
    [[ $n =~ ^[1-9]$ ]] || die "$v must be 1-9 (is '$n')"
    printf '%s\n' "$n"
}

# inst_name SVC N: "auth" for instance 1, "auth-2" for instance 2 (pid and log file names).
inst_name() {
    if [ "$2" -eq 1 ]; then
        printf '%s\n' "$1"
    else
        printf '%s-%s\n' "$1" "$2"
    fi
}

# inst_port SVC N: instance N listens on the service's port + 10 * (N - 1).
inst_port() {
    printf '%s\n' "$(($(port_of "$1") + 10 * ($2 - 1)))"
}

# inst_addrs SVC: "127.0.0.1:PORT ..." of every instance (the gateway's upstream).
inst_addrs() {
    local i n out=""
    n=$(instances_of "$1")
    for ((i = 1; i <= n; i++)); do
        out+="${out:+ }127.0.0.1:$(inst_port "$1" "$i")"
    done
    printf '%s\n' "$out"
}

# pid_of FILE: prints the pid in FILE if that process is alive.
pid_of() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(head -n 1 "$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# comm_is PID NAME: the process' command name starts with NAME (guards stale pid files).
comm_is() {
    local comm
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    [[ $comm == "$2"* ]]
}

# alive PID: the process exists and is not a zombie (exited children reparented to
# PID 1 may stay zombies for a while when PID 1 reaps slowly, as in some containers).
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

# wait_gone PID SECONDS: 0 once PID has exited, 1 if still alive after SECONDS.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$1" || return 0
        sleep 0.1
    done
    ! alive "$1"
}

# ---- PostgreSQL --------------------------------------------------------------------

if [ "$(id -u)" -eq 0 ]; then
    PG_SUPER=postgres
else
    PG_SUPER=$(id -un)
fi

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Sets PG_AREA (cluster root: data/ and sock/ inside), PG_DATA, PG_SOCK.
pg_locate() {
    local hash
    if [ -s "$RUN/pgdata" ]; then
        PG_AREA=$(head -n 1 "$RUN/pgdata")
    else
        PG_AREA=$PHR_VAR/pg
        # The socket path must fit sockaddr_un (107 bytes) and postgres must reach it.
        if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$PHR_VAR"; then
            PG_AREA=""
        elif [ $((${#PG_AREA} + 25)) -gt 107 ]; then
            PG_AREA=""
        fi
        if [ -z "$PG_AREA" ]; then
            hash=$(printf '%s' "$PHR_VAR" | sha1sum | cut -c1-12)
            PG_AREA=/var/tmp/phr-pg-$hash
        fi
    fi
    PG_DATA=$PG_AREA/data
    PG_SOCK=$PG_AREA/sock
    # A cluster outside var/ logs next to itself (postgres cannot reach var/log either);
    # var/log/postgresql.log is then a symlink to it.
    if [ "$PG_AREA" = "$PHR_VAR/pg" ]; then
        PG_LOG=$LOG/postgresql.log
    else
        PG_LOG=$PG_AREA/postgresql.log
    fi
}

pg_running() {
    [ -f "$PG_DATA/PG_VERSION" ] || return 1
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_psql() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PHR_PG_PORT" \
        -U "$PG_SUPER" -d postgres "$@"
}

pg_init() {
    mkdir -p "$PG_AREA"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$PG_AREA"
    fi
    chmod 0700 "$PG_AREA"
    printf '%s\n' "$PG_AREA" > "$RUN/pgdata"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "initdb $PG_DATA"
        rm -rf "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPER" -E UTF8 --no-locale \
            --auth-local=peer --auth-host=scram-sha-256 >"$LOG/initdb.log" 2>&1 \
            || { tail -n 20 "$LOG/initdb.log" >&2; die "initdb failed"; }
        printf "\ninclude 'phr.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    fi
    as_pg mkdir -p "$PG_SOCK"
    as_pg chmod 0700 "$PG_SOCK"
    as_pg tee "$PG_DATA/phr.conf" >/dev/null <<EOF
# written by deploy/stack.sh on every up
listen_addresses = '127.0.0.1'
port = $PHR_PG_PORT
unix_socket_directories = '$PG_SOCK'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 64MB
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
EOF
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# written by deploy/stack.sh on every up
local   all   $PG_SUPER                peer
host    all   all        127.0.0.1/32  scram-sha-256
EOF
}

pg_up() {
    pg_locate
    if pg_running; then
        return 0
    fi
    pg_init
    if [ "$PG_LOG" != "$LOG/postgresql.log" ]; then
        ln -sfn "$PG_LOG" "$LOG/postgresql.log"
    fi
    touch "$PG_LOG"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$PG_LOG"
    fi
    say "starting postgresql on 127.0.0.1:$PHR_PG_PORT"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null; then
        tail -n 20 "$PG_LOG" >&2
        die "postgresql failed to start"
    fi
}

# One role + database per service (and phr_test); passwords re-set from the secrets.
pg_provision() {
    local name pw sql=""
    for name in "${SERVICES[@]}" test; do
        pw=$(head -n 1 "$SECRETS/pg_$name.password")
        [[ $pw =~ ^[A-Za-z0-9]+$ ]] || die "bad secret pg_$name.password"
        sql+="SELECT 'CREATE ROLE phr_$name LOGIN' WHERE NOT EXISTS
    (SELECT 1 FROM pg_roles WHERE rolname = 'phr_$name') \\gexec
ALTER ROLE phr_$name WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$pw';
SELECT 'CREATE DATABASE phr_$name OWNER phr_$name' WHERE NOT EXISTS
    (SELECT 1 FROM pg_database WHERE datname = 'phr_$name') \\gexec
REVOKE ALL ON DATABASE phr_$name FROM PUBLIC;
GRANT ALL ON DATABASE phr_$name TO phr_$name;
"
    done
    sql+="REVOKE ALL ON DATABASE postgres FROM PUBLIC;
"
    # Through stdin: passwords never appear on a command line.
    printf '%s' "$sql" | pg_psql -f - >/dev/null || die "postgresql provisioning failed"
    # audit: the NOLOGIN owner of the append-only tables. The service role is made a member
    # only until its migration 004_append_only.sql has handed the tables over (it then revokes
    # its own membership): after that it can INSERT and SELECT, never UPDATE/DELETE/TRUNCATE.
    printf '%s\n' "SELECT 'CREATE ROLE phr_audit_owner NOLOGIN' WHERE NOT EXISTS
    (SELECT 1 FROM pg_roles WHERE rolname = 'phr_audit_owner') \\gexec" \
        | pg_psql -f - >/dev/null || die "postgresql provisioning failed (audit owner)"
    # It also owns the database (so the public schema): the owner of a database or a schema
    # could drop it or any table in it, the append-only ones included.
    pg_psql -c "ALTER DATABASE phr_audit OWNER TO phr_audit_owner" \
        -c "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE phr_audit TO phr_audit" >/dev/null \
        || die "postgresql provisioning failed (audit database owner)"
    pg_psql -d phr_audit -c "GRANT USAGE, CREATE ON SCHEMA public TO phr_audit" >/dev/null \
        || die "postgresql provisioning failed (audit schema grant)"
    if [ -z "$(pg_psql -d phr_audit -tA -c "SELECT to_regclass('public.audit_events')")" ]; then
        pg_psql -c "GRANT phr_audit_owner TO phr_audit WITH ADMIN OPTION" >/dev/null \
            || die "postgresql provisioning failed (audit owner grant)"
    fi
}

# Every pending audit migration, the owner ones included (common/db_migrate.h: they alter
# what phr_audit_owner owns, which the service role cannot), applied before the service starts
# by `phrctl migrate audit` over the superuser's socket (deploy/OPERATIONS.md). Without it the
# service would wait, not ready, naming the migration.
pg_migrate() {
    local bin=$PHR_BUILD/bin/phrctl out
    [ -x "$bin" ] || die "$bin not built (run make)"
    # User postgres may not reach the build tree (a private home): a copy beside the cluster.
    if ! as_pg test -x "$bin"; then
        install -m 0755 "$bin" "$PG_AREA/phrctl" || die "cannot copy phrctl to $PG_AREA"
        bin=$PG_AREA/phrctl
    fi
    out=$(as_pg env PHR_PG_ADMIN="host=$PG_SOCK port=$PHR_PG_PORT user=$PG_SUPER" \
        "$bin" migrate audit) || die "audit migrations failed (phrctl migrate audit)"
    if [[ $out == *applied* ]]; then
        say "$out"
    fi
}

pg_down() {
    pg_locate
    if pg_running; then
        say "stopping postgresql"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null || true
    fi
}

# ---- Redis --------------------------------------------------------------------------

redis_pid() {
    local pid
    pid=$(pid_of "$RUN/redis.pid") || return 1
    comm_is "$pid" redis-server || return 1
    printf '%s\n' "$pid"
}

redis_ping() {
    REDISCLI_AUTH=$(head -n 1 "$SECRETS/redis.password") \
        redis-cli -h 127.0.0.1 -p "$PHR_REDIS_PORT" ping 2>/dev/null | grep -q PONG
}

redis_up() {
    local i
    if redis_pid >/dev/null; then
        return 0
    fi
    mkdir -p "$REDIS_DIR"
    chmod 0700 "$REDIS_DIR"
    (
        umask 077
        cat > "$REDIS_DIR/redis.conf" <<EOF
# written by deploy/stack.sh on every up
bind 127.0.0.1
port $PHR_REDIS_PORT
protected-mode yes
requirepass $(head -n 1 "$SECRETS/redis.password")
dir $REDIS_DIR
appendonly yes
appendfsync everysec
daemonize yes
pidfile $RUN/redis.pid
logfile $LOG/redis.log
EOF
    )
    say "starting redis on 127.0.0.1:$PHR_REDIS_PORT"
    redis-server "$REDIS_DIR/redis.conf" || die "redis failed to start"
    for ((i = 0; i < 100; i++)); do
        redis_ping && return 0
        sleep 0.1
    done
    tail -n 20 "$LOG/redis.log" >&2
    die "redis does not answer PING"
}

redis_down() {
    local pid
    pid=$(redis_pid) || return 0
    say "stopping redis"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
}

# ---- services -----------------------------------------------------------------------

# The service's pid, only if the process was started by this stack (same PHR_VAR).
svc_pid() {
    local pid
    pid=$(pid_of "$RUN/$1.pid") || return 1
    tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" \
        | grep -qxF "PHR_STACK_ID=$PHR_VAR" || return 1
    printf '%s\n' "$pid"
}

# svc_up SVC [N]: start instance N (default 1) unless it runs. Only its own port variable
# differs from instance 1 (peers are still reached on their instance 1 ports).
svc_up() {
    local svc=$1 i=${2:-1} bin name port
    bin=$PHR_BUILD/bin/phr-$svc
    name=$(inst_name "$svc" "$i")
    if svc_pid "$name" >/dev/null; then
        return 0
    fi
    [ -x "$bin" ] || die "$bin not built (run make)"
    port=$(inst_port "$svc" "$i")
    say "starting phr-$svc${name#"$svc"} on 127.0.0.1:$port"
    env "PHR_${svc^^}_PORT=$port" PHR_STACK_ID="$PHR_VAR" \
        setsid nohup "$bin" >>"$LOG/$name.log" 2>&1 </dev/null &
    printf '%s\n' "$!" > "$RUN/$name.pid"
}

# The pid file names (without .pid) of every instance of SVC that has one, running or not.
svc_pidfiles() {
    local f
    for f in "$RUN/$1.pid" "$RUN/$1"-[1-9].pid; do
        [ -e "$f" ] || continue
        f=${f##*/}
        printf '%s\n' "${f%.pid}"
    done
}

svc_down_all() {
    local svc name pid pids=() i
    for svc in "${SERVICES[@]}"; do
        for name in $(svc_pidfiles "$svc"); do
            if pid=$(svc_pid "$name"); then
                say "stopping phr-$name"
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$pid")
            fi
            rm -f "$RUN/$name.pid"
        done
    done
    # Services drain for up to 10 s on SIGTERM; give them 15 s, then SIGKILL.
    for ((i = 0; i < 150; i++)); do
        local running=0
        for pid in "${pids[@]}"; do
            alive "$pid" && running=1
        done
        [ "$running" -eq 0 ] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if alive "$pid"; then
            say "pid $pid did not exit after 15 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# ---- provider stand-in (SendGrid + Twilio) ------------------------------------------

standin_pid() {
    local pid
    pid=$(pid_of "$RUN/standin.pid") || return 1
    comm_is "$pid" python3 || return 1
    printf '%s\n' "$pid"
}

standin_up() {
    local i
    if standin_pid >/dev/null; then
        return 0
    fi
    say "starting provider stand-in on http://127.0.0.1:$PHR_STANDIN_PORT"
    setsid nohup /usr/bin/python3 "$ROOT/tools/standin/standin.py" >>"$LOG/standin.log" 2>&1 </dev/null &
    printf '%s\n' "$!" > "$RUN/standin.pid"
    for ((i = 0; i < 100; i++)); do
        [ "$(http_code "http://127.0.0.1:$PHR_STANDIN_PORT/__health")" = 200 ] && return 0
        pid_of "$RUN/standin.pid" >/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$LOG/standin.log" >&2
    die "provider stand-in failed to start"
}

standin_down() {
    local pid
    pid=$(standin_pid) || return 0
    say "stopping provider stand-in"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$RUN/standin.pid"
}

# ---- nginx --------------------------------------------------------------------------

nginx_pid() {
    local pid
    pid=$(pid_of "$RUN/nginx.pid") || return 1
    comm_is "$pid" nginx || return 1
    printf '%s\n' "$pid"
}

nginx_cmd() {
    nginx -c "$NGINX_CONF" -p "$NGINX_DIR/" -e "$LOG/nginx-error.log" "$@"
}

nginx_render() {
    NGINX_AUTH_ADDR=${NGINX_AUTH_ADDR:-$(inst_addrs auth)} \
        NGINX_RECORDS_ADDR=${NGINX_RECORDS_ADDR:-$(inst_addrs records)} \
        NGINX_NOTIFICATION_ADDR=${NGINX_NOTIFICATION_ADDR:-$(inst_addrs notification)} \
        NGINX_AUDIT_ADDR=${NGINX_AUDIT_ADDR:-$(inst_addrs audit)} \
        NGINX_TLS_CERT=$TLS/server.crt NGINX_TLS_KEY=$TLS/server.key \
        NGINX_PREFIX=$NGINX_DIR NGINX_LOG_DIR=$LOG NGINX_PID_FILE=$RUN/nginx.pid \
        bash "$ROOT/deploy/nginx/render.sh" "$1"
}

nginx_up() {
    local pid
    mkdir -p "$NGINX_DIR"
    chmod 0755 "$NGINX_DIR"
    nginx_render "$NGINX_CONF.new"
    if pid=$(nginx_pid); then
        if cmp -s "$NGINX_CONF.new" "$NGINX_CONF"; then
            rm -f "$NGINX_CONF.new"
            return 0
        fi
        mv "$NGINX_CONF.new" "$NGINX_CONF"
        nginx_cmd -t -q || die "nginx config test failed"
        say "reloading nginx (config changed)"
        kill -HUP "$pid"
        return 0
    fi
    mv "$NGINX_CONF.new" "$NGINX_CONF"
    nginx_cmd -t -q || die "nginx config test failed"
    say "starting nginx on https://127.0.0.1:$PHR_GATEWAY_PORT"
    # Access log times in the service's zone (JST), like the services' own logs.
    if ! TZ=${PHR_TZ:-Asia/Tokyo} nginx_cmd; then
        tail -n 20 "$LOG/nginx-error.log" >&2
        die "nginx failed to start"
    fi
}

nginx_down() {
    local pid
    pid=$(nginx_pid) || return 0
    say "stopping nginx"
    nginx_cmd -s quit 2>/dev/null || kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    fi
}

# ---- readiness ----------------------------------------------------------------------

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" 2>/dev/null || true
}

# svc_ready PORT
svc_ready() {
    [ "$(http_code --http2-prior-knowledge "http://127.0.0.1:$1/readyz")" = 200 ]
}

gateway_ready() {
    [ "$(http_code -k "https://127.0.0.1:$PHR_GATEWAY_PORT/healthz")" = 200 ]
}

not_ready() {
    local part=$1 logfile=$2
    say "not ready: $part"
    if [ -f "$logfile" ]; then
        say "--- tail of $logfile"
        tail -n 20 "$logfile" >&2
    fi
}

# Every instance of every service answers /readyz, and the gateway /healthz.
wait_ready() {
    local deadline svc pending i n name port
    deadline=$((SECONDS + UP_TIMEOUT))
    while :; do
        pending=()
        for svc in "${SERVICES[@]}"; do
            n=$(instances_of "$svc")
            for ((i = 1; i <= n; i++)); do
                name=$(inst_name "$svc" "$i")
                if ! svc_pid "$name" >/dev/null; then
                    not_ready "phr-$name (process exited)" "$LOG/$name.log"
                    return 1
                fi
                svc_ready "$(inst_port "$svc" "$i")" || pending+=("$svc:$i")
            done
        done
        gateway_ready || pending+=(gateway)
        [ "${#pending[@]}" -eq 0 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            for name in "${pending[@]}"; do
                if [ "$name" = gateway ]; then
                    not_ready "gateway https://127.0.0.1:$PHR_GATEWAY_PORT/healthz" \
                        "$LOG/nginx-error.log"
                else
                    svc=${name%:*}
                    port=$(inst_port "$svc" "${name#*:}")
                    name=$(inst_name "$svc" "${name#*:}")
                    not_ready "phr-$name /readyz on 127.0.0.1:$port answers $(http_code \
                        --http2-prior-knowledge "http://127.0.0.1:$port/readyz")" \
                        "$LOG/$name.log"
                fi
            done
            return 1
        fi
        sleep 0.3
    done
}

# ---- commands -----------------------------------------------------------------------

cmd_up() {
    local svc i n
    mkdir -p "$PHR_VAR" "$LOG" "$RUN"
    chmod 0755 "$PHR_VAR" "$LOG" "$RUN"
    bash "$ROOT/deploy/gen-secrets.sh" "$SECRETS"
    bash "$ROOT/deploy/gen-tls.sh" "$TLS"
    pg_up
    pg_provision
    pg_migrate
    redis_up
    standin_up
    for svc in "${SERVICES[@]}"; do
        n=$(instances_of "$svc")
        for ((i = 1; i <= n; i++)); do
            svc_up "$svc" "$i"
        done
    done
    nginx_up
    wait_ready || exit 1
    echo "ready: https://127.0.0.1:$PHR_GATEWAY_PORT"
    echo "messages sent (provider stand-in): http://127.0.0.1:$PHR_STANDIN_PORT/__messages"
}

# Only what unit tests need: secrets, TLS material, PostgreSQL, Redis.
cmd_up_deps() {
    mkdir -p "$PHR_VAR" "$LOG" "$RUN"
    chmod 0755 "$PHR_VAR" "$LOG" "$RUN"
    bash "$ROOT/deploy/gen-secrets.sh" "$SECRETS"
    bash "$ROOT/deploy/gen-tls.sh" "$TLS"
    pg_up
    pg_provision
    redis_up
    echo "ready: postgresql 127.0.0.1:$PHR_PG_PORT, redis 127.0.0.1:$PHR_REDIS_PORT"
}

cmd_down() {
    [ -d "$PHR_VAR" ] || return 0
    mkdir -p "$RUN"
    nginx_down
    svc_down_all
    standin_down
    redis_down
    pg_down
}

cmd_status() {
    local svc pid rc=0 i n name
    [ -d "$PHR_VAR" ] && mkdir -p "$RUN"
    pg_locate
    if pg_running; then
        echo "postgresql    running  127.0.0.1:$PHR_PG_PORT ($PG_DATA)"
    else
        echo "postgresql    stopped"
        rc=1
    fi
    if pid=$(redis_pid); then
        echo "redis         running  127.0.0.1:$PHR_REDIS_PORT (pid $pid)"
    else
        echo "redis         stopped"
        rc=1
    fi
    for svc in "${SERVICES[@]}"; do
        n=$(instances_of "$svc")
        for ((i = 1; i <= n; i++)); do
            name=$(inst_name "$svc" "$i")
            if pid=$(svc_pid "$name"); then
                printf '%-13s running  127.0.0.1:%s (pid %s)\n' "$name" \
                    "$(inst_port "$svc" "$i")" "$pid"
            else
                printf '%-13s stopped\n' "$name"
                rc=1
            fi
        done
    done
    if pid=$(standin_pid); then
        echo "standin       running  http://127.0.0.1:$PHR_STANDIN_PORT (pid $pid)"
    else
        echo "standin       stopped"
        rc=1
    fi
    if pid=$(nginx_pid); then
        echo "nginx         running  https://127.0.0.1:$PHR_GATEWAY_PORT (pid $pid)"
    else
        echo "nginx         stopped"
        rc=1
    fi
    return "$rc"
}

cmd_logs() {
    mkdir -p "$LOG"
    exec tail -n 20 -F "$LOG"/*.log
}

cmd_run() {
    local tail_pid
    mkdir -p "$LOG"
    trap 'trap - INT TERM; kill "$tail_pid" 2>/dev/null || true; cmd_down; exit 0' INT TERM
    tail -n 20 -F "$LOG"/*.log &
    tail_pid=$!
    wait "$tail_pid" || true
    cmd_down
}

cmd_purge() {
    case $PHR_VAR/ in
        "$ROOT/" | "$ROOT"/build*/ | "$ROOT"/deploy/* | "$ROOT"/.git/*)
            die "refusing to purge $PHR_VAR" ;;
    esac
    case $ROOT/ in
        "$PHR_VAR"/*) die "refusing to purge $PHR_VAR (contains the repo)" ;;
    esac
    cmd_down
    pg_locate
    if [[ $PG_AREA == /var/tmp/phr-pg-* ]]; then
        rm -rf "$PG_AREA"
    fi
    rm -rf "$PHR_VAR"
}

case ${1:-} in
    up) cmd_up ;;
    up-deps) cmd_up_deps ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs ;;
    run) cmd_run ;;
    purge) cmd_purge ;;
    *)
        echo "usage: $0 up|up-deps|down|status|logs|run|purge" >&2
        exit 2
        ;;
esac
