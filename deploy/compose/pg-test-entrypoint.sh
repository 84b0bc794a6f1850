#!/usr/bin/env bash
# pg-test-entrypoint.sh - entrypoint of the Debian-package PostgreSQL test image
# (deploy/compose/Dockerfile.test); the subset of the official postgres image's entrypoint that
# docker-compose.yml uses: POSTGRES_USER, POSTGRES_PASSWORD_FILE, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD and /docker-entrypoint-initdb.d/*.sh on first start.
set -euo pipefail

bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
sock=/var/run/postgresql

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$data" "$sock"
    chown postgres:postgres "$data" "$sock"
    chmod 0700 "$data"
    exec setpriv --reuid=postgres --regid=postgres --init-groups /bin/bash "$0" "$@"
fi

if [ ! -s "$data/PG_VERSION" ]; then
    if [ ! -r "${POSTGRES_PASSWORD_FILE:-}" ]; then
        echo "pg-test-entrypoint: POSTGRES_PASSWORD_FILE unreadable" >&2
        exit 1
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options
    "$bin/initdb" -D "$data" --username="${POSTGRES_USER:-postgres}" \
        --pwfile="$POSTGRES_PASSWORD_FILE" ${POSTGRES_INITDB_ARGS:-}
    echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$data/pg_hba.conf"
    "$bin/pg_ctl" -D "$data" -w -o "-c listen_addresses='' -c unix_socket_directories=$sock" start
    export PGHOST=$sock
    for f in /docker-entrypoint-initdb.d/*.sh; do
        [ -e "$f" ] || continue
        echo "pg-test-entrypoint: running $f"
        bash "$f"
    done
    "$bin/pg_ctl" -D "$data" -m fast -w stop
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories="$sock"
