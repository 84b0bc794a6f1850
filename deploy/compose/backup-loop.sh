#!/usr/bin/env bash
# backup-loop.sh [--health | COMMAND...] - the backups service of docker-compose.yml
# (deploy/BACKUPS.md, "Scheduling").
#   no arguments  forever: `phrctl backup run` once a day at PHR_BACKUP_AT (HH:MM local time,
#                 TZ Asia/Tokyo in the image; default 03:17), and once at start when no run
#                 succeeded in the last 24 hours. phrctl keeps the newest PHR_BACKUP_KEEP (35)
#                 generations, removing older ones only after the new one verified.
#   --health      exit 0 while the last successful run is less than 26 hours old.
#   COMMAND...    runs COMMAND in the same environment, e.g.
#                 docker-compose run --rm backups phrctl backup list
# The superuser's password (PHR_SECRETS_DIR/pg_postgres.password, when present) reaches the
# PostgreSQL tools through a private PGPASSFILE in /tmp (mode 0600), never through a command
# line. docker-compose.yml sets PGPASSFILE=/tmp/phr-pgpass in the container's environment, so
# `docker-compose exec backups phrctl backup run` finds the file the running loop wrote.
# A failed run is logged and retried at the next slot; monitoring sees it through --health.
set -uo pipefail

dir=${PHR_BACKUP_DIR:-/backups}
stamp=$dir/.last-success
at=${PHR_BACKUP_AT:-03:17}
log() { echo "backups: $(date '+%Y-%m-%dT%H:%M:%S%z') $*" >&2; }

# fresh SECONDS: the last successful run is younger than SECONDS.
fresh() {
    [ -f "$stamp" ] && [ $(($(date +%s) - $(stat -c %Y "$stamp"))) -lt "$1" ]
}

if [ "${1:-}" = --health ]; then
    fresh $((26 * 3600))
    exit $?
fi

pw=${PHR_SECRETS_DIR:-/run/secrets/phr}/pg_postgres.password
if [ -r "$pw" ]; then
    PGPASSFILE=${PGPASSFILE:-$(umask 077 && mktemp /tmp/pgpass.XXXXXX)} || exit 1
    (umask 077 && printf '*:*:*:%s:%s\n' "${PHR_BACKUP_PG_USER:-postgres}" "$(head -n 1 "$pw")" \
        >"$PGPASSFILE") || exit 1
    export PGPASSFILE
fi
if [ $# -gt 0 ]; then
    exec "$@"
fi
if ! [[ $at =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]]; then
    log "PHR_BACKUP_AT must be HH:MM, not '$at'"
    exit 2
fi

run_backup() {
    mkdir -p "$dir"
    if phrctl backup run --json; then
        touch "$stamp"
        log "backup run ok"
    else
        log "backup run FAILED (exit $?); next attempt at $at"
    fi
}

sleeper=""
trap 'log "stopping"; [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT
fresh $((24 * 3600)) || run_backup
while :; do
    now=$(date +%s)
    next=$(date -d "today $at" +%s)
    [ "$next" -gt "$now" ] || next=$(date -d "tomorrow $at" +%s)
    log "next backup run at $(date -d "@$next" '+%Y-%m-%d %H:%M %Z')"
    sleep $((next - now)) &
    sleeper=$!
    wait "$sleeper" # a signal interrupts the wait, not only the sleep
    sleeper=""
    run_backup
done
