#!/usr/bin/env bash
# tests/compose/run-real.sh [--deps-only] [--keep] - run docker-compose.yml for real, no Docker.
#
# Debian's rootful podman serves the Docker API on a private socket and Debian's docker-compose
# 1.29 drives it (see /work/shared/reference/containers.md). No registry is needed: the base
# image is made with debootstrap and imported as localhost/debian:bookworm, the console stage's
# Node.js image (localhost/phr-node:20) is that base plus the host's Node.js 20; PostgreSQL,
# Redis and a provider stand-in come from deploy/compose/docker-compose.test.yml (Debian
# packages on that base). The images are built from a snapshot of the work tree (tracked and
# untracked, not ignored files) in PHR_COMPOSE_WORK/src, so every image sees the same sources.
#   --deps-only  only secrets-init, postgres and redis (no C services, no gateway)
#   --keep       leave the stack running (then: DOCKER_HOST=unix://$WORK/podman.sock
#                docker-compose -p phrtest ... down -v, and kill the podman service)
# Checks: every container becomes healthy (podman runs no health timers without systemd, so this
# script runs `podman healthcheck run` in a loop while `up` waits); roles and REVOKE CONNECT in
# PostgreSQL; Redis password and AOF; secrets ownership; in full mode the gateway answers
# /healthz and a public route over TLS, then
#   - the migrate job exited 0 and the audit tables belong to phr_audit_owner;
#   - the integration suite (PHR_BUILD/tests/itest) against the containerised gateway, with the
#     cases that need the native stack's processes or files skipped by name (listed, reasons);
#   - one backup run in the backups container: listed, verified, no plaintext in its files;
#   - a data key rotation as deploy/README.md shows it (ops service, secrets-init, SIGHUP);
#   - every service stops on SIGTERM within its grace.
# Always brings the stack down (-v) and stops the podman service at the end unless --keep.
# Needs root and the packages podman debootstrap catatonit netavark aardvark-dns crun runc
# docker-compose, Node.js >= 20.19 on the host, and `make all` (PHR_BUILD, default build).
# Environment: PHR_COMPOSE_WORK (default /var/tmp/phr-compose), PHR_COMPOSE_GATEWAY_PORT
# (default 27443; PostgreSQL, Redis, the services and the stand-in are published on 127.0.0.1
# at PHR_COMPOSE_{PG,REDIS,AUTH,RECORDS,NOTIFICATION,AUDIT,STANDIN}_PORT, defaults 27432 27379
# 28101-28104 28199), PHR_COMPOSE_TIMEOUT (seconds, default 600), PHR_BUILD.
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
node_image=localhost/phr-node:20
repo=$(pwd -P)
build_dir=${PHR_BUILD:-build}
case $build_dir in /*) ;; *) build_dir=$repo/$build_dir ;; esac
timeout=${PHR_COMPOSE_TIMEOUT:-600}
project=phrtest
mkdir -p "$work"
log() { echo "run-real: $*" >&2; }
# One run per work directory: a second one would replace the first's socket and sources.
exec 9> "$work/lock"
if ! flock -n 9; then
    log "another run is using $work (set PHR_COMPOSE_WORK)"
    exit 1
fi

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

# The console stage (deploy/Dockerfile) needs Node.js >= 20.19 (Vite 7), newer than Debian 12's:
# the host's node binary and npm on the local base.
if [ "$deps_only" -eq 0 ] && ! podman image exists "$node_image"; then
    node_bin=$(command -v node) || { log "missing node (Node.js >= 20.19)"; exit 1; }
    npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
    if ! "$node_bin" -e 'const [a, b] = process.versions.node.split(".").map(Number);
            process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
        log "node $("$node_bin" --version) is older than 20.19"
        exit 1
    fi
    rm -rf "$work/node-ctx"
    mkdir -p "$work/node-ctx"
    cp "$node_bin" "$work/node-ctx/node"
    cp -a "$npm_dir" "$work/node-ctx/npm"
    # npm in the image trusts what the host's npm trusts (its cafile, when one is set).
    cafile=$(npm config get cafile 2>/dev/null || true)
    : > "$work/node-ctx/npm-ca.pem"
    if [ -f "$cafile" ]; then
        cp "$cafile" "$work/node-ctx/npm-ca.pem"
    fi
    {
        printf '%s\n' "FROM $base" 'COPY node /usr/local/bin/node' \
            'COPY npm /usr/local/lib/node_modules/npm' 'COPY npm-ca.pem /usr/local/etc/npm-ca.pem' \
            'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version'
        if [ -s "$work/node-ctx/npm-ca.pem" ]; then
            echo 'ENV npm_config_cafile=/usr/local/etc/npm-ca.pem'
        fi
    } | podman build -q -t "$node_image" -f - "$work/node-ctx" >/dev/null
    rm -rf "$work/node-ctx"
fi

# One consistent snapshot of the sources for every image (the work tree may change meanwhile).
src=$work/src
rm -rf "$src"
mkdir -p "$src"
git ls-files -z -c -o --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$src" -xf -

sock=$work/podman.sock
rm -f "$sock"
podman system service --time=0 "unix://$sock" > "$work/podman-service.log" 2>&1 &
service_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

export DOCKER_HOST=unix://$sock
export COMPOSE_PROJECT_NAME=$project
export PHR_BUILD_IMAGE=$base PHR_BASE_IMAGE=$base PHR_NODE_IMAGE=$node_image
export PHR_IMAGE_PREFIX=phrtest
export PHR_GATEWAY_PORT=${PHR_COMPOSE_GATEWAY_PORT:-27443}
export PHR_COMPOSE_PG_PORT=${PHR_COMPOSE_PG_PORT:-27432}
export PHR_COMPOSE_REDIS_PORT=${PHR_COMPOSE_REDIS_PORT:-27379}
export PHR_COMPOSE_AUTH_PORT=${PHR_COMPOSE_AUTH_PORT:-28101}
export PHR_COMPOSE_RECORDS_PORT=${PHR_COMPOSE_RECORDS_PORT:-28102}
export PHR_COMPOSE_NOTIFICATION_PORT=${PHR_COMPOSE_NOTIFICATION_PORT:-28103}
export PHR_COMPOSE_AUDIT_PORT=${PHR_COMPOSE_AUDIT_PORT:-28104}
export PHR_COMPOSE_STANDIN_PORT=${PHR_COMPOSE_STANDIN_PORT:-28199}
for port in "$PHR_GATEWAY_PORT" "$PHR_COMPOSE_PG_PORT" "$PHR_COMPOSE_REDIS_PORT" \
    "$PHR_COMPOSE_AUTH_PORT" "$PHR_COMPOSE_RECORDS_PORT" "$PHR_COMPOSE_NOTIFICATION_PORT" \
    "$PHR_COMPOSE_AUDIT_PORT" "$PHR_COMPOSE_STANDIN_PORT"; do
    if ss -Hltn "sport = :$port" | grep -q .; then
        log "port $port is in use; set the PHR_COMPOSE_*_PORT variables"
        kill "$service_pid"
        exit 1
    fi
done
# PostgreSQL's socket directory and the audit archive directory, shared with the host
# (deploy/compose/docker-compose.test.yml) for the suite's superuser-only and retention checks.
export PHR_COMPOSE_PG_SOCK_DIR=$work/pgsock PHR_COMPOSE_AUDIT_ARCHIVE=$work/audit-archive
rm -rf "$PHR_COMPOSE_PG_SOCK_DIR" "$PHR_COMPOSE_AUDIT_ARCHIVE"
mkdir -p "$PHR_COMPOSE_PG_SOCK_DIR" "$PHR_COMPOSE_AUDIT_ARCHIVE"
chown 10104:10104 "$PHR_COMPOSE_AUDIT_ARCHIVE"
chmod 0700 "$PHR_COMPOSE_AUDIT_ARCHIVE"
compose=(docker-compose --project-directory "$src" -f "$src/docker-compose.yml"
    -f "$src/deploy/compose/docker-compose.test.yml")

health_pid=""
cleanup() {
    local rc=$?
    [ -n "$health_pid" ] && kill "$health_pid" 2>/dev/null
    if [ "$keep" -eq 0 ]; then
        "${compose[@]}" down -v --remove-orphans > "$work/down.log" 2>&1 || true
        rm -rf "$PHR_COMPOSE_PG_SOCK_DIR" "$PHR_COMPOSE_AUDIT_ARCHIVE"
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
    targets=(gateway backups)
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
    images=(secrets-init postgres redis standin auth records notification audit gateway backups)
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
    # `up -d` waits for what the gateway depends on, not for the gateway's own first health check.
    for _ in $(seq 30); do
        healthy gateway && break
        sleep 2
    done
    for s in auth records notification audit gateway; do
        check "$s healthy" healthy "$s"
    done
    # The audit schema as deploy/stack.sh leaves it natively: the migrate job applied every
    # migration (006 as the owner); the append-only tables and the database belong to the
    # NOLOGIN role phr_audit_owner, and phr_audit is no longer a member of it.
    check "migrate (phrctl migrate audit) exited 0" test \
        "$(podman inspect --format '{{.State.ExitCode}}' "$(cid migrate)")" = 0
    audit_sealed() {
        local q="SELECT (SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables
            WHERE tablename IN ('audit_events_' || to_char(now(), 'YYYYMM'), 'audit_event_ids',
                                'checkpoints', 'audit_archives', 'audit_partition_drops'))
            || ' ' || pg_get_userbyid((SELECT datdba FROM pg_database
                                       WHERE datname = 'phr_audit'))
            || ' ' || pg_has_role('phr_audit', 'phr_audit_owner', 'MEMBER')
            || ' ' || (SELECT max(version) FROM schema_migrations)"
        local got
        got=$(podman exec "$pg" psql -X -tA -U postgres -d phr_audit -c "$q")
        echo "owner of the tables, of the database, membership, schema version: $got"
        local newest
        newest=$(find "$src/services/audit/migrations" -name '[0-9]*_*.sql' -printf '%f\n' |
            sed 's/^0*\([0-9][0-9]*\)_.*/\1/' | sort -n | tail -n 1)
        [ "$got" = "phr_audit_owner phr_audit_owner false $newest" ]
    }
    check "audit tables and database owned by phr_audit_owner, phr_audit not a member" \
        audit_sealed
    migrate_again() {
        "${compose[@]}" run --rm migrate < /dev/null && [ "$(podman inspect --format \
            '{{.State.Health.Status}}' "$(cid audit)")" = healthy ]
    }
    check "docker-compose run --rm migrate again: nothing pending, audit still healthy" \
        migrate_again
    grep -qx 'phr_audit: up to date' "$work/check.out" || {
        log "FAIL migrate again did not say 'phr_audit: up to date'"
        fail=1
    }
    check "audit's archive volume is writable by phr-audit" podman exec "$(cid audit)" \
        sh -c 'f=/var/lib/phr-audit/archive/.probe && : > "$f" && rm "$f"'
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

    # ---- the integration suite against the containerised gateway -------------------------
    # From here on a failing step is a failed check (or shows in one), not the end of the run.
    set +e
    # The suite's view of the stack: the master secret set and the certificate (copied from
    # the volumes), the published ports, the host's phrctl.
    vol() { podman volume inspect --format '{{.Mountpoint}}' "${project}_$1"; }
    itv=$work/itest-var
    rm -rf "$itv"
    mkdir -p "$itv/secrets" "$itv/tls" "$itv/log" "$itv/run"
    cp -a "$(vol secrets)/phr/." "$itv/secrets/"
    cp "$(vol tls)/server.crt" "$itv/tls/server.crt"
    # The superuser's local socket (trust) where the suite looks for the native cluster's:
    # $PHR_TEST_VAR/run/pgdata names a directory whose sock/ holds .s.PGSQL.<published port>.
    mkdir -p "$itv/pgarea/sock"
    ln -s "$PHR_COMPOSE_PG_SOCK_DIR/.s.PGSQL.5432" \
        "$itv/pgarea/sock/.s.PGSQL.$PHR_COMPOSE_PG_PORT"
    echo "$itv/pgarea" > "$itv/run/pgdata"
    # Cases that need the native stack's processes or files (deploy/stack.sh pid files, logs
    # in var/log); each reason is printed. The superuser's local socket is there (above). Their container
    # counterparts: SIGTERM stops below, the gateway log check above.
    declare -A skip=(
        ["faults: Redis stopped → 503, recovers without restart"]="kills the native redis by pid file and restarts it with deploy/stack.sh"
        ["faults: crashed service → 502 problem, make up restarts only it"]="kills a native service by pid file and runs deploy/stack.sh up"
        ["faults: PostgreSQL stopped → 503, recovers without restart"]="stops the native cluster with pg_ctl"
        ["notify_crash_batch"]="kills the native notification service mid-batch and runs deploy/stack.sh up"
        ["gateway: request id reaches the service and its log"]="greps var/log/auth.log (compose: container stdout, checked above)"
        ["faults: auth down → links 503 with Retry-After, names back after"]="stops the native auth service by pid file"
        ["services: optional TLS serves h2 by ALPN only"]="starts a native records instance (host binary, not the stack)"
    )
    skip_list=""
    for name in "${!skip[@]}"; do
        log "skip $name: ${skip[$name]}"
        skip_list+="$name"$'\n'
    done
    itest_run() {
        env PHR_VAR="$itv" PHR_BUILD="$build_dir" PHR_TEST_VAR="$itv" PHR_TEST_GATEWAY="$gw" \
            PHR_TEST_PG_HOST=127.0.0.1 PHR_TEST_PG_PORT="$PHR_COMPOSE_PG_PORT" \
            PHR_TEST_REDIS_HOST=127.0.0.1 PHR_TEST_REDIS_PORT="$PHR_COMPOSE_REDIS_PORT" \
            PHR_TEST_REDIS_PASSWORD="$(head -n 1 "$itv/secrets/redis.password")" \
            PHR_SECRETS_DIR="$itv/secrets" PHR_PG_HOST=127.0.0.1 PHR_PG_PORT="$PHR_COMPOSE_PG_PORT" \
            PHR_REDIS_HOST=127.0.0.1 PHR_REDIS_PORT="$PHR_COMPOSE_REDIS_PORT" \
            PHR_AUTH_PORT="$PHR_COMPOSE_AUTH_PORT" PHR_RECORDS_PORT="$PHR_COMPOSE_RECORDS_PORT" \
            PHR_NOTIFICATION_PORT="$PHR_COMPOSE_NOTIFICATION_PORT" \
            PHR_AUDIT_PORT="$PHR_COMPOSE_AUDIT_PORT" PHR_STANDIN_PORT="$PHR_COMPOSE_STANDIN_PORT" \
            PHR_ITEST_SKIP="$skip_list" \
            timeout --kill-after=10 "${PHR_COMPOSE_ITEST_TIMEOUT:-1200}" \
            "$build_dir/tests/itest" ${PHR_COMPOSE_ITEST_ONLY:+"$PHR_COMPOSE_ITEST_ONLY"}
    }
    if [ -x "$build_dir/tests/itest" ]; then
        t0=$(date +%s)
        itest_run > "$work/itest.log" 2>&1
        counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/itest.log" | tail -n 1)
        log "integration suite in $(( $(date +%s) - t0 )) s: ${counts:-no count}" \
            "($(grep -c '^skip ' "$work/itest.log") skipped; log $work/itest.log)"
        grep '^FAIL ' "$work/itest.log" | sed 's/^/    /' >&2 || true
        itest_ok() { [[ $counts =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]; }
        check "integration suite: ${counts:-no count}" itest_ok
    else
        log "FAIL no $build_dir/tests/itest (make all first)"
        fail=1
    fi

    # ---- a patient and a record note through the gateway ---------------------------------
    api() { # METHOD PATH [BODY] [TOKEN]: body to $work/body, status on stdout
        local args=(-sk --http2 -o "$work/body" -w '%{http_code}' -X "$1" --max-time 20
            -H 'content-type: application/json')
        [ -n "${3:-}" ] && args+=(--data-binary "$3")
        [ -n "${4:-}" ] && args+=(-H "authorization: Bearer $4")
        curl "${args[@]}" "$gw$2"
    }
    field() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$work/body" "$1" 2>/dev/null; }
    psql_c() { podman exec "$pg" psql -X -q -tA -U postgres -d "$1" -c "$2"; }
    email=compose-$RANDOM$RANDOM@example.com
    marker=ZqxComposeNote$RANDOM$RANDOM
    api POST /api/v1/auth/register "{\"email\":\"$email\",\"password\":\"Blue7Harbor!qCompose\",
        \"name\":\"Compose\"}" > /dev/null
    api POST /api/v1/auth/login "{\"email\":\"$email\",\"password\":\"Blue7Harbor!qCompose\"}" \
        > /dev/null
    token=$(field token)
    st=$(api POST /api/v1/me/records "{\"type\":\"note\",\"measured_at\":
        \"2026-02-01T08:00:00+09:00\",\"values\":{\"text\":\"$marker\"},\"note\":\"$marker\"}" \
        "$token")
    rec_old=$(field id)
    check "a patient's record written through the gateway ($st)" test "$st" = 201 -a -n "$rec_old"

    # ---- backups: one run in the backups container, listed, verified, encrypted ------------
    # In the running container, as deploy/README.md shows (PGPASSFILE: the loop's file).
    "${compose[@]}" exec -T backups phrctl backup run --json > "$work/backup-run.json" \
        2> "$work/backup-run.err"
    gen=$(/usr/bin/python3 -c 'import json,sys; m=json.load(open(sys.argv[1]));
print(m["generation"] if m.get("verified") is True else "")' "$work/backup-run.json" 2>/dev/null)
    check "phrctl backup run in the backups container: generation ${gen:-none}, verified" \
        test -n "$gen"
    "${compose[@]}" exec -T backups phrctl backup list --json > "$work/backup-list.json" 2>&1
    listed() { grep -qF "\"generation\": \"$gen\"" "$work/backup-list.json" ||
        grep -qF "\"generation\":\"$gen\"" "$work/backup-list.json"; }
    check "phrctl backup list shows generation $gen" listed
    bk_verify() { "${compose[@]}" exec -T backups phrctl backup verify; }
    check "phrctl backup verify (newest generation)" bk_verify
    bkdir=$(vol backups)/$gen
    # The e-mail is plaintext in phr_auth (a plain dump has it); the note is sealed at rest.
    plain_has() { [ "$(podman exec "$pg" pg_dump -U postgres phr_auth | grep -cF "$email")" -gt 0 ]; }
    check "control: a plain pg_dump of phr_auth holds the patient's e-mail" plain_has
    no_plain() { [ -d "$bkdir" ] && ! grep -rqF -e "$email" -e "$marker" "$bkdir"; }
    check "no plaintext (e-mail, record note) in the backup files" no_plain
    check "backups healthy after the run" healthy backups

    # ---- data key rotation under compose (deploy/README.md "Rotating the data keys") -------
    key_of() { psql_c phr_records "SELECT key_id FROM records WHERE id = '$1'"; }
    k_old=$(key_of "$rec_old")
    "${compose[@]}" run --rm ops phrctl keys rotate --no-rekey --json \
        > "$work/keys-rotate.json" 2>&1 < /dev/null
    "${compose[@]}" run --rm secrets-init > "$work/secrets-init.log" 2>&1 < /dev/null
    "${compose[@]}" kill -s HUP records > /dev/null 2>&1
    k_new=$((k_old + 1))
    has_key() { [ -n "$(podman exec "$(cid records)" ls "/run/secrets/records/data_key_v$k_new")" ]; }
    check "data_key_v$k_new written by ops and granted to records by secrets-init" has_key
    sleep 1
    st=$(api POST /api/v1/me/records "{\"type\":\"note\",\"measured_at\":
        \"2026-02-02T08:00:00+09:00\",\"values\":{\"text\":\"after\"}}" "$token")
    rec_new=$(field id)
    check "a record written after SIGHUP is sealed with v$k_new (was v$k_old)" \
        test "$st:$(key_of "$rec_new")" = "201:$k_new"
    st=$(api GET "/api/v1/me/records/$rec_old" "" "$token")
    check "the record written before the rotation reads back ($st)" \
        test "$st:$(field note)" = "200:$marker"
    "${compose[@]}" run --rm ops phrctl keys rekey --json > "$work/keys-rekey.json" 2>&1 \
        < /dev/null
    "${compose[@]}" run --rm ops phrctl keys status --json > "$work/keys-status.json" \
        2>&1 < /dev/null
    rekeyed() {
        [ "$(psql_c phr_records "SELECT count(*) FROM records WHERE key_id <> $k_new")" = 0 ] &&
            [ "$(key_of "$rec_old")" = "$k_new" ]
    }
    check "phrctl keys rekey: every row under v$k_new" rekeyed
    st=$(api GET "/api/v1/me/records/$rec_old" "" "$token")
    check "the old record reads back after the rekey ($st)" \
        test "$st:$(field note)" = "200:$marker"

    for s in gateway auth records notification audit backups standin; do
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
