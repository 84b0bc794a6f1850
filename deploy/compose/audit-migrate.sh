#!/usr/bin/env bash
# audit-migrate.sh - the one-shot `migrate` service of docker-compose.yml: `phrctl migrate audit`
# over the PostgreSQL superuser's connection (tools/phrctl/migrate.c), before the audit service
# starts (it waits for this job: depends_on service_completed_successfully).
#
# The audit service's append-only tables belong to the NOLOGIN role phr_audit_owner
# (deploy/compose/postgres-init.sh creates it); owner migrations (common/db_migrate.h) alter
# them, which the service role cannot. phrctl applies every pending migration in one
# transaction, each as the role that owns what it touches. Re-running it is harmless ("up to
# date"), so it runs on every `docker-compose up`.
#
# The superuser's password (PHR_SECRETS_DIR/pg_postgres.password) reaches libpq through a
# private PGPASSFILE in /tmp (mode 0600), never through a command line or the environment.
# Environment: PHR_PG_ADMIN (libpq conninfo without password), PHR_SECRETS_DIR (default
# /run/secrets/phr), PGPASSFILE (default /tmp/phr-pgpass), PHR_MIGRATE_TRIES (default 5; 3 s
# apart: the connection may be refused right after PostgreSQL turned healthy).
set -euo pipefail

pw_file=${PHR_SECRETS_DIR:-/run/secrets/phr}/pg_postgres.password
export PGPASSFILE=${PGPASSFILE:-/tmp/phr-pgpass}
tries=${PHR_MIGRATE_TRIES:-5}
if [ -z "${PHR_PG_ADMIN:-}" ]; then
    echo "audit-migrate: PHR_PG_ADMIN is not set" >&2
    exit 1
fi
pw=$(head -n 1 "$pw_file") || exit 1
if [[ ! $pw =~ ^[A-Za-z0-9]+$ ]]; then
    echo "audit-migrate: $pw_file is not alphanumeric" >&2
    exit 1
fi
(umask 077 && printf '*:*:*:*:%s\n' "$pw" > "$PGPASSFILE") || exit 1
unset pw

for ((i = 1; ; i++)); do
    if phrctl migrate audit; then
        exit 0
    fi
    if [ "$i" -ge "$tries" ]; then
        echo "audit-migrate: phrctl migrate audit failed $i times" >&2
        exit 1
    fi
    sleep 3
done
