#!/usr/bin/env bash
# tests/compose/run-real.sh [--deps-only] [--keep] - run docker-compose.yml for real, no Docker.
#
# Debian's rootful podman serves the Docker API on a private socket and Debian's docker-compose
# 1.29 drives it (see /work/shared/reference/containers.md). No registry is needed: the base
# image is made with debootstrap and imported as localhost/debian:bookworm; PostgreSQL and Redis
# come from deploy/compose/docker-compose.test.yml (Debian packages on that base).
#   --deps-only  only secrets-init, postgres and redis (no C services, no gateway)
#   --keep       leave the stack running (then: DOCKER_HOST=unix://$WORK/podman.sock
#                docker-compose -p phrtest ... down -v, and kill the podman service)
# Checks: every container becomes healthy (podman runs no health timers without systemd, so this
# script runs `podman healthcheck run` in a loop while `up` waits); roles and REVOKE CONNECT in
# PostgreSQL; Redis password and AOF; secrets ownership; in full mode the gateway answers
# /healthz and a public route over TLS, and every service stops on SIGTERM within its grace.
# Always brings the stack down (-v) and stops the podman service at the end unless --keep.
# Needs root and the packages podman debootstrap catatonit netavark aardvark-dns crun
# docker-compose. Environment: PHR_COMPOSE_WORK (default /var/tmp/phr-compose),
# PHR_COMPOSE_GATEWAY_PORT (default 38443), PHR_COMPOSE_TIMEOUT (seconds, default 600).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
deps_only=0
keep=0
for a in "$@"; do
    case $a in
        --deps-only) deps_only=1 ;;
        --keep) keep=1 ;;
        *) echo "usage: $0 [--deps-only] [--keep]" >&2; exit 2 ;;
    esac
done

work=${PHR_COMPOSE_WORK:-/var/tmp/phr-compose}
base=localhost/debian:bookworm
timeout=${PHR_COMPOSE_TIMEOUT:-600}
project=phrtest
mkdir -p "$work"
log() { echo "run-real: $*" >&2; }

for c in podman docker-compose debootstrap; do
    command -v "$c" >/dev/null || { log "missing $c (apt-get install podman debootstrap" \
        "catatonit netavark aardvark-dns crun docker-compose)"; exit 1; }
done

# root here cannot raise its rlimits; podman's init is Debian's catatonit; runc, not crun.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
init_path = "/usr/bin/catatonit"
[engine]
# crun refuses hybrid cgroup hierarchies ("cgroups in hybrid mode not supported").
runtime = "runc"
EOF
export CONTAINERS_CONF=$work/containers.conf

if ! podman image exists "$base"; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "debootstrap bookworm from $mirror"
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log"
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$work/rootfs"
fi

sock=$work/podman.sock
rm -f "$sock"
podman system service --time=0 "unix://$sock" > "$work/podman-service.log" 2>&1 &
service_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

export DOCKER_HOST=unix://$sock
export COMPOSE_PROJECT_NAME=$project
export PHR_BUILD_IMAGE=$base PHR_BASE_IMAGE=$base PHR_IMAGE_PREFIX=phrtest
export PHR_GATEWAY_PORT=${PHR_COMPOSE_GATEWAY_PORT:-38443}
if ss -Hltn "sport = :$PHR_GATEWAY_PORT" | grep -q .; then
    log "port $PHR_GATEWAY_PORT is in use; set PHR_COMPOSE_GATEWAY_PORT"
    kill "$service_pid"
    exit 1
fi
compose=(docker-compose -f docker-compose.yml -f deploy/compose/docker-compose.test.yml)

health_pid=""
cleanup() {
    local rc=$?
    [ -n "$health_pid" ] && kill "$health_pid" 2>/dev/null
    if [ "$keep" -eq 0 ]; then
        "${compose[@]}" down -v --remove-orphans > "$work/down.log" 2>&1 || true
        podman network ls -q --filter "name=^${project}_" | xargs -r podman network rm >/dev/null
        kill "$service_pid" 2>/dev/null
        wait "$service_pid" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

if [ "$deps_only" -eq 1 ]; then
    targets=(postgres redis)
else
    targets=(gateway)
fi

# Health checks: podman has no timers without systemd; run them while `up` waits for them.
health_loop() {
    set +e +o pipefail # a failed `podman ps` (container going away) must not end the loop
    while true; do
        podman ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}}' |
            while read -r name; do
                timeout 30 podman healthcheck run "$name" </dev/null >/dev/null 2>&1 || true
            done
        sleep 2
    done
}

start=$(date +%s)
log "build (${targets[*]} and dependencies)"
if [ "$deps_only" -eq 1 ]; then
    images=(secrets-init postgres redis)
else
    images=(secrets-init postgres redis auth records notification audit gateway)
fi
"${compose[@]}" build "${images[@]}" \
    > "$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
log "built in $(( $(date +%s) - start )) s; up -d ${targets[*]}"
health_loop &
health_pid=$!
up_start=$(date +%s)
if ! timeout "$timeout" "${compose[@]}" up -d "${targets[@]}" > "$work/up.log" 2>&1; then
    tail -30 "$work/up.log" >&2
    "${compose[@]}" ps >&2 || true
    podman ps -a --filter "label=com.docker.compose.project=$project" \
        --format '{{.Names}} {{.Status}}' >&2 || true
    "${compose[@]}" logs --tail 30 >&2 || true
    exit 1
fi
log "up in $(( $(date +%s) - up_start )) s"

fail=0
check() {
    local what=$1
    shift
    if "$@" > "$work/check.out" 2>&1; then
        log "ok   $what"
    else
        log "FAIL $what"
        sed 's/^/    /' "$work/check.out" >&2
        fail=1
    fi
}
cid() { "${compose[@]}" ps -q "$1"; }
healthy() {
    [ "$(podman inspect --format '{{.State.Health.Status}}' "$(cid "$1")")" = healthy ]
}

for s in postgres redis; do
    check "$s healthy" healthy "$s"
done
check "secrets-init exited 0" test \
    "$(podman inspect --format '{{.State.ExitCode}}' "$(cid secrets-init)")" = 0

pg=$(cid postgres)
rd=$(cid redis)
# pg_as SVC DB: connect over TCP with phr_SVC's password, as a service would.
pg_as() {
    podman exec "$pg" bash -c "PGPASSWORD=\$(cat /run/secrets/postgres/pg_$1.password) \
        psql -X -tA -h 127.0.0.1 -U phr_$1 -d $2 -c 'select current_user'"
}
pg_refused() { ! pg_as "$@"; }
pg_four_dbs() {
    [ "$(podman exec "$pg" psql -X -tA -U postgres -c "select count(*) from pg_database
        where datname in ('phr_auth', 'phr_records', 'phr_notification', 'phr_audit')")" = 4 ]
}
pg_secret_modes() {
    [ "$(podman exec "$pg" stat -c '%u %a' /run/secrets/postgres \
        /run/secrets/postgres/pg_auth.password | tr '\n' ' ')" = "999 700 999 600 " ]
}
redis_noauth() { podman exec "$rd" redis-cli ping | grep -q NOAUTH; }
redis_conf() {
    podman exec "$rd" sh -c 'REDISCLI_AUTH=$(cat /run/secrets/redis/redis.password) \
        redis-cli --no-raw config get "$1"' sh "$1"
}
redis_aof() {
    redis_conf appendonly | grep -q '"yes"' && redis_conf appendfsync | grep -q '"everysec"'
}
redis_user() { podman top "$rd" user args | grep redis-server | grep -q '^redis '; }
check "phr_auth connects to phr_auth over TCP" pg_as auth phr_auth
check "phr_auth refused on phr_records (REVOKE CONNECT)" pg_refused auth phr_records
check "four service databases exist" pg_four_dbs
check "postgres secrets dir 0700 / files 0600, uid 999" pg_secret_modes
check "redis refuses without password" redis_noauth
check "redis appendonly yes, appendfsync everysec" redis_aof
check "redis-server runs as user redis" redis_user

if [ "$deps_only" -eq 0 ]; then
    for s in auth records notification audit gateway; do
        check "$s healthy" healthy "$s"
    done
    gw=https://127.0.0.1:$PHR_GATEWAY_PORT
    check "gateway /healthz over TLS" curl -kfsS --http2 "$gw/healthz"
    check "GET /api/v1/auth/password-policy through the gateway" \
        curl -kfsS --http2 "$gw/api/v1/auth/password-policy"
    gw_404() { [ "$(curl -ks -o /dev/null -w '%{http_code}' "$gw/readyz")" = 404 ]; }
    check "/readyz not reachable through the gateway" gw_404
    gw_log() {
        "${compose[@]}" logs --no-color gateway | grep -F '"uri":"/api/v1/auth/password-policy"' |
            grep -q '"request_id":"[0-9a-f]\{32\}"'
    }
    check "gateway JSON access log on the container's stdout" gw_log
    for s in gateway auth records notification audit; do
        t0=$(date +%s)
        "${compose[@]}" stop -t 15 "$s" > /dev/null 2>&1
        t=$(( $(date +%s) - t0 ))
        code=$(podman inspect --format '{{.State.ExitCode}}' "$(cid "$s")")
        stopped_ok() { [ "$t" -lt 15 ] && [ "$code" = 0 ]; }
        check "$s stops on SIGTERM (${t} s, exit $code)" stopped_ok
    done
fi

if [ "$fail" -ne 0 ]; then
    log "FAILED (logs: $work/*.log; docker-compose logs below)"
    "${compose[@]}" logs --tail 20 >&2 || true
    exit 1
fi
log "all checks passed in $(( $(date +%s) - start )) s"
