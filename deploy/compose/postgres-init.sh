#!/usr/bin/env bash
# postgres-init.sh - one role and one database per service, for the official postgres image.
#
# docker-compose.yml mounts it as /docker-entrypoint-initdb.d/10-phr.sh: the image's entrypoint
# runs it (or sources it, if not executable) once, as the postgres user, while a temporary server
# listens on the unix socket only. It is idempotent and can also be run by hand against a live
# server: `PGHOST=... PGUSER=postgres bash postgres-init.sh`.
#
# For each service S in auth records notification audit:
#   role phr_S  LOGIN, password from $PHR_PG_SECRETS_DIR/pg_S.password (re-set on every run)
#   db   phr_S  owned by phr_S; CONNECT and TEMPORARY revoked from PUBLIC, so one service's
#               role cannot open another service's database.
# audit, as deploy/stack.sh provisions it natively: the NOLOGIN role phr_audit_owner owns the
# database phr_audit (so its public schema) and, once the audit migration 004_append_only.sql
# has run, the append-only tables; phr_audit gets CONNECT, TEMPORARY, CREATE on the database
# and USAGE, CREATE on the schema, and is a member of phr_audit_owner WITH ADMIN OPTION only
# while the tables do not exist yet (004 hands them over, then revokes that membership). The
# owner migrations after 004 run through `phrctl migrate audit` (the compose service migrate,
# deploy/compose/audit-migrate.sh).
# Passwords go through psql's backtick \set, never through a command line or the environment.
#
# Environment: PHR_PG_SECRETS_DIR (default /run/secrets/postgres), POSTGRES_USER (default
# postgres), POSTGRES_DB (default postgres), PHR_SERVICES (default "auth records notification
# audit").

phr_pg_init() {
    local dir=${PHR_PG_SECRETS_DIR:-/run/secrets/postgres}
    local svc file owner sql=""
    local -a svcs
    read -r -a svcs <<< "${PHR_SERVICES:-auth records notification audit}"

    for svc in "${svcs[@]}"; do
        if [[ ! "$svc" =~ ^[a-z][a-z0-9_]*$ ]]; then
            echo "postgres-init: bad service name '$svc'" >&2
            return 1
        fi
        file=$dir/pg_$svc.password
        if [ ! -r "$file" ] || ! grep -Eqx '[A-Za-z0-9]{16,128}' "$file"; then
            echo "postgres-init: $file is missing, unreadable or not 16-128 alphanumerics" >&2
            return 1
        fi
        owner=phr_$svc
        if [ "$svc" = audit ]; then
            owner=phr_audit_owner
            sql+="SELECT 'CREATE ROLE phr_audit_owner NOLOGIN'
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phr_audit_owner') \\gexec
"
        fi
        sql+="\\set pw \`cat '$file'\`
SELECT format('CREATE ROLE %I LOGIN', 'phr_$svc')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phr_$svc') \\gexec
ALTER ROLE phr_$svc WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
\\unset pw
SELECT format('CREATE DATABASE %I OWNER %I', 'phr_$svc', 'phr_$svc')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'phr_$svc') \\gexec
ALTER DATABASE phr_$svc OWNER TO $owner;
REVOKE CONNECT, TEMPORARY ON DATABASE phr_$svc FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE phr_$svc TO phr_$svc;
"
    done
    for svc in "${svcs[@]}"; do
        if [ "$svc" = audit ]; then
            sql+="GRANT CREATE ON DATABASE phr_audit TO phr_audit;
\\connect phr_audit
GRANT USAGE, CREATE ON SCHEMA public TO phr_audit;
SELECT 'GRANT phr_audit_owner TO phr_audit WITH ADMIN OPTION'
    WHERE to_regclass('public.audit_events') IS NULL \\gexec
"
        fi
    done
    printf '%s' "$sql" | psql -X -q -v ON_ERROR_STOP=1 \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" || return 1
    echo "postgres-init: roles and databases ready for: ${svcs[*]}"
}

phr_pg_init
