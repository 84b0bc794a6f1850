#!/usr/bin/env bash
# tests/ops/migrate_test.sh - the upgrade path of audit's owner migrations (common/db_migrate.h,
# deploy/OPERATIONS.md "Upgrades: owner migrations") against the running stack of the
# environment (PHR_VAR, PHR_BUILD, the PHR_*_PORT variables of deploy/stack.sh). Destroys the
# stack's audit database twice and leaves it migrated, with the audit service running.
#
#   released  the audit database as a deployment of the release left it (001-005, 003 without
#             the archive columns, tables owned by phr_audit_owner): the new service applies
#             nothing it cannot, answers /readyz 503 naming 006_archive_columns and logs how
#             to apply it; `phrctl migrate audit` (administrator connection) applies it as
#             phr_audit_owner; /readyz 200, the columns and the stricter drop function there,
#             ownership and the service role's lost membership unchanged, a second run applies
#             nothing; then the integration cases of the archive and the append-only log pass.
#   edited    a database that got the columns from last session's in-place edit of 003: 006
#             applies cleanly over them (idempotent).
#   usage     unknown service (2), unreachable administrator connection (1).
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed"; exit 1 on failure.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PHR_REDIS_HOST=${PHR_REDIS_HOST:-127.0.0.1} PHR_REDIS_PORT=${PHR_REDIS_PORT:-56379}
export PHR_GATEWAY_PORT=${PHR_GATEWAY_PORT:-8443} PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-9199}

[ -x "$PHRCTL" ] || { echo "not built: $PHRCTL" >&2; exit 2; }
RUN=$PHR_VAR/run
AUDIT_LOG=$PHR_VAR/log/audit.log
READYZ=http://127.0.0.1:$PHR_AUDIT_PORT/readyz
SOCK=$(head -n 1 "$RUN/pgdata")/sock
if [ "$(id -u)" -eq 0 ]; then
    SUPER=postgres
else
    SUPER=$(id -un)
fi
ADMIN="host=$SOCK port=$PHR_PG_PORT user=$SUPER"
ARCHIVE_COLS="'events','archive_file','first_prev_hash','last_hash'"

as_super() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# phrctl migrate audit [ARGS...] over the superuser's socket, as deploy/README.md shows.
migrate() { as_super env PHR_PG_ADMIN="$ADMIN" "$PHRCTL" migrate audit "$@"; }

audit_stop() {
    local pid i
    pid=$(head -n 1 "$RUN/audit.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# As deploy/stack.sh starts it (so `stack.sh down` stops it).
audit_start() {
    env PHR_STACK_ID="$PHR_VAR" setsid nohup "$PHR_BUILD/bin/phr-audit" >>"$AUDIT_LOG" 2>&1 \
        </dev/null &
    printf '%s\n' "$!" >"$RUN/audit.pid"
}

# Polls /readyz (30 s) until it answers WANT (and its body holds TEXT); body in $TMP/readyz.
wait_readyz() {
    local i st
    for ((i = 0; i < 150; i++)); do
        st=$(curl -s --http2-prior-knowledge -o "$TMP/readyz" -w '%{http_code}' --max-time 2 \
            "$READYZ")
        if [ "$st" = "$1" ] && grep -qF -- "${2:-}" "$TMP/readyz"; then
            return 0
        fi
        sleep 0.2
    done
    echo "    /readyz answers $st: $(cat "$TMP/readyz" 2>/dev/null)"
    return 1
}

# An empty audit database provisioned by deploy/stack.sh (owner role, membership until 004),
# then the new service started on it: it applies 001-005, the release's migrations.
released_db() {
    audit_stop
    adm postgres "DROP DATABASE IF EXISTS phr_audit WITH (FORCE)" >/dev/null
    # its archives go with it (a file left over would be verified against the new chain)
    rm -f "${PHR_AUDIT_ARCHIVE_DIR:-$PHR_VAR/audit-archive}"/audit_events_*
    bash "$ROOT/deploy/stack.sh" up-deps >"$TMP/up.log" 2>&1 || cat "$TMP/up.log"
    LOG_FROM=$(($(wc -l <"$AUDIT_LOG") + 1))
    audit_start
}

# Polls the service's log since the restart (10 s; info lines are flushed in batches).
wait_log() {
    local i
    for ((i = 0; i < 50; i++)); do
        tail -n +"$LOG_FROM" "$AUDIT_LOG" | grep -q -- "$1" && return 0
        sleep 0.2
    done
    return 1
}

archive_cols() {
    adm phr_audit "SELECT count(*) FROM pg_attribute WHERE attrelid = 'audit_archives'::regclass
        AND attname IN ($ARCHIVE_COLS) AND NOT attisdropped"
}

# ---- usage ----------------------------------------------------------------------------
expect_rc 2 "migrate without a service" "$PHRCTL" migrate
expect_rc 2 "migrate an unknown service" "$PHRCTL" migrate billing
expect_rc 2 "migrate two services" "$PHRCTL" migrate audit auth
expect_rc 1 "migrate over an unreachable administrator connection" \
    env PHR_PG_ADMIN="host=127.0.0.1 port=1 user=postgres connect_timeout=2" \
    "$PHRCTL" migrate audit
check "  the message names PHR_PG_ADMIN" grep -q PHR_PG_ADMIN "$TMP/err"

# ---- a database that got the columns from the edited 003 ------------------------------
released_db
check "edited: the service waits for 006 (readyz 503)" wait_readyz 503 006_archive_columns
check "edited: the columns added as the old 003 edit did" adm phr_audit "SET ROLE phr_audit_owner;
    ALTER TABLE audit_archives ADD COLUMN events bigint NOT NULL,
        ADD COLUMN archive_file text NOT NULL, ADD COLUMN first_prev_hash bytea,
        ADD COLUMN last_hash bytea"
expect_rc 0 "edited: phrctl migrate audit applies 006 over them" migrate
check "  output: 006_archive_columns as phr_audit_owner" \
    grep -qx 'phr_audit: applied 006_archive_columns as phr_audit_owner' "$TMP/out"
check "edited: readyz 200" wait_readyz 200
check "edited: four archive columns, once each" test "$(archive_cols)" = 4

# ---- the database as the release left it ----------------------------------------------
released_db
check "released: readyz 503 naming the migration" wait_readyz 503 pending_migration
check "  pending_migration and checks.postgres" test "$(jq_py '[j["pending_migration"],
    j["checks"]["postgres"]]' "$TMP/readyz")" = "['006_archive_columns', 'migration_pending']"
check "  the log says to run phrctl migrate audit" \
    wait_log 'migration 6 (006_archive_columns) must be applied by .*phrctl migrate audit'
check "  migrations 1-5 applied, 6 not" test \
    "$(adm phr_audit "SELECT string_agg(version::text, ',' ORDER BY version)
        FROM schema_migrations")" = 1,2,3,4,5
check "  audit_archives as released: none of the archive columns" test "$(archive_cols)" = 0
check "  the service role is no member of phr_audit_owner" test \
    "$(adm phr_audit "SELECT pg_has_role('phr_audit', 'phr_audit_owner', 'MEMBER')")" = f
alter_as_service() {
    adm phr_audit "SET ROLE phr_audit; ALTER TABLE audit_archives ADD COLUMN events bigint" \
        2>"$TMP/alter.err"
}
check "  so it cannot alter the owner's table itself" not alter_as_service
check "    (must be owner)" grep -q 'must be owner of table audit_archives' "$TMP/alter.err"
ingest_status() {
    curl -s --http2-prior-knowledge -o "$TMP/ingest" -w '%{http_code} %{content_type}' \
        -X POST -H 'content-type: application/json' --data-binary '{"events":[]}' \
        "http://127.0.0.1:$PHR_AUDIT_PORT/internal/v1/events"
}
check "  a write (POST /internal/v1/events) answers 503 problem+json" \
    test "$(ingest_status)" = "503 application/problem+json"
check "  still 503 a few seconds later (it looks again, applies nothing)" sh -c \
    "sleep 4; test \"\$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
    '$READYZ')\" = 503"

expect_rc 0 "released: phrctl migrate audit --json" migrate --json
check "  applied exactly 006 as phr_audit_owner" test "$(jq_py '[(a["version"], a["name"],
    a["as"]) for a in j["applied"]]')" = "[(6, '006_archive_columns', 'phr_audit_owner')]"
check "released: readyz 200 without a restart" wait_readyz 200
check "  the log says the migrations are done" wait_log 'db: migrations done'
check "  the write route is served again (past the database gate: 401 without a credential)" \
    test "$(ingest_status)" = "401 application/problem+json"
check "  the four archive columns exist" test "$(archive_cols)" = 4
check "  events and archive_file NOT NULL without a default" test \
    "$(adm phr_audit "SELECT count(*) FROM pg_attribute WHERE attrelid =
        'audit_archives'::regclass AND attname IN ('events', 'archive_file') AND attnotnull
        AND NOT atthasdef")" = 2
check "  audit_drop_expired checks the event count, owned by phr_audit_owner" test \
    "$(adm phr_audit "SELECT pg_get_userbyid(proowner) || ' ' || (prosrc LIKE
        '%a.events = n%') || ' ' || prosecdef FROM pg_proc WHERE proname =
        'audit_drop_expired'")" = "phr_audit_owner true true"
check "  every append-only table still owned by phr_audit_owner" test \
    "$(adm phr_audit "SELECT count(*) FROM pg_tables WHERE tablename IN ('audit_events',
        'audit_event_ids', 'checkpoints', 'audit_archives', 'audit_partition_drops')
        AND tableowner = 'phr_audit_owner'")" = 5
check "  the service role still no member" test \
    "$(adm phr_audit "SELECT pg_has_role('phr_audit', 'phr_audit_owner', 'MEMBER')")" = f
expect_rc 0 "released: a second run applies nothing" migrate
check "  output: up to date" grep -qx 'phr_audit: up to date' "$TMP/out"

# ---- archive and append-only through the real stack (tests/integration/test_audit.c) ---
export PHR_TEST_VAR=${PHR_TEST_VAR:-$PHR_VAR}
export PHR_TEST_GATEWAY=${PHR_TEST_GATEWAY:-$GATEWAY}
export PHR_TEST_PG_HOST=${PHR_TEST_PG_HOST:-$PHR_PG_HOST}
export PHR_TEST_PG_PORT=${PHR_TEST_PG_PORT:-$PHR_PG_PORT}
export PHR_TEST_REDIS_HOST=${PHR_TEST_REDIS_HOST:-$PHR_REDIS_HOST}
export PHR_TEST_REDIS_PORT=${PHR_TEST_REDIS_PORT:-$PHR_REDIS_PORT}
PHR_TEST_REDIS_PASSWORD=${PHR_TEST_REDIS_PASSWORD:-$(head -n 1 "$PHR_SECRETS_DIR/redis.password")}
export PHR_TEST_REDIS_PASSWORD
# (ingest first: the retention case reads the chain a few events before what it archives)
# The service's own first retention run starts at the first maintenance tick (every 5 s)
# after it became ready, and would archive the retention case's backdated partition under
# its feet: let it start first (a run still going is waited out by the case: 409).
sleep 6
for c in "audit ingest" "audit retention" "audit append-only"; do
    expect_rc 0 "itest '$c' after the upgrade" "$PHR_BUILD/tests/itest" "$c"
    check "  it ran and passed" grep -Eq '^[1-9][0-9]* passed, 0 failed$' "$TMP/out"
done

finish
