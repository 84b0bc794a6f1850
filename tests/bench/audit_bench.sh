#!/usr/bin/env bash
# audit_bench.sh - the audit service's benchmark (issue 6):
#   1. ingest rate: EVENTS fresh events posted to POST /internal/v1/events in batches of 100
#      (AUDIT_BENCH_PAR concurrent curl clients) straight to the audit service as peer "auth";
#   2. the same insert with pgbench (100 rows + their ids per transaction, 8 clients, into a
#      scratch copy of the tables, dropped afterwards): the database's own ceiling;
#   3. verification speed: phrctl audit verify over the events just written.
# Needs a running stack (deploy/stack.sh up) and its environment (PHR_VAR or PHR_SECRETS_DIR,
# PHR_AUDIT_PORT, PHR_PG_HOST, PHR_PG_PORT, PHR_BUILD). Usage: audit_bench.sh [EVENTS]
# (default 1000000). Prints one "bench:" line per figure.
set -euo pipefail

cd "$(dirname "$0")/../.."
EVENTS=${1:-1000000}
BATCH=100
PAR=${AUDIT_BENCH_PAR:-8}
SECRETS=${PHR_SECRETS_DIR:-${PHR_VAR:-var}/secrets}
PORT=${PHR_AUDIT_PORT:-9104}
PGHOST_=${PHR_PG_HOST:-127.0.0.1}
PGPORT_=${PHR_PG_PORT:-5432}
BUILD=${PHR_BUILD:-build}
batches=$(((EVENTS + BATCH - 1) / BATCH))

tmp=$(mktemp -d)
[ -n "${AUDIT_BENCH_KEEP:-}" ] && echo "bench: files in $tmp"
trap '[ -n "${AUDIT_BENCH_KEEP:-}" ] || rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
rate() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:.0f}')" "$@"; }

psql_audit() {
    PGPASSWORD=$(head -n 1 "$SECRETS/pg_audit.password") psql -X -q -tA -v ON_ERROR_STOP=1 \
        -h "$PGHOST_" -p "$PGPORT_" -U phr_audit -d phr_audit "$@"
}

# ---- 1. ingest through the service -------------------------------------------------------
python3 - "$tmp" "$batches" "$BATCH" <<'EOF'
import os, sys, time, random
tmp, nb, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ms = int(time.time() * 1000)
occ = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(time.time() + 9 * 3600)) + '.000+09:00'
n = 0
for b in range(nb):
    items = []
    for i in range(bs):
        r = random.getrandbits(74)
        u = f'{ms:012x}7{(r >> 62) & 0xfff:03x}{8 | ((r >> 60) & 3):x}{(r >> 48) & 0xfff:03x}{r & 0xffffffffffff:012x}'
        eid = f'{u[0:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:32]}'
        n += 1
        items.append('{"event_id":"%s","occurred_at":"%s","actor":{"account_id":null,'
                     '"kind":"service","ip":"192.0.2.1","user_agent":"bench"},'
                     '"action":"auth.bench.event","target":{"type":"account","id":"b%d"},'
                     '"outcome":{"result":"success"},"source":{"service":"auth",'
                     '"request_id":"bench"},"details":{"n":%d}}' % (eid, occ, n, n))
    with open(os.path.join(tmp, f'b{b}.json'), 'w') as f:
        f.write('{"items":[' + ','.join(items) + ']}')
EOF
first=$(psql_audit -c "SELECT coalesce(max(seq), 0) + 1 FROM audit_events")
t0=$(now)
key=$(head -n 1 "$SECRETS/svc_auth.key")
# one curl per batch, PAR at a time (curl's own --parallel config cannot vary the body)
seq 0 $((batches - 1)) | xargs -P "$PAR" -I{} curl -s --http2-prior-knowledge -o /dev/null \
    -w '%{http_code}\n' -H 'Content-Type: application/json' -H 'x-phr-caller: auth' \
    -H "x-phr-credential: $key" --data-binary "@$tmp/b{}.json" \
    "http://127.0.0.1:$PORT/internal/v1/events" > "$tmp/codes" || true
t1=$(now)
ok=$(grep -c '^200$' "$tmp/codes" || true)
last=$(psql_audit -c "SELECT coalesce(max(seq), 0) FROM audit_events")
secs=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
ingest=$(rate "$((ok * BATCH))" "$secs")
echo "bench: audit ingest $((ok * BATCH)) events ($ok/$batches batches of $BATCH ok, $PAR clients)" \
    "in ${secs}s = $ingest events/s"

# ---- 2. the same insert with pgbench --------------------------------------------------------
psql_audit <<'EOF'
DROP TABLE IF EXISTS bench_events, bench_event_ids;
CREATE TABLE bench_events (LIKE audit_events INCLUDING DEFAULTS) PARTITION BY RANGE (recorded_at);
CREATE TABLE bench_events_p PARTITION OF bench_events
    FOR VALUES FROM (now() - interval '1 day') TO (now() + interval '1 day');
ALTER TABLE bench_events ADD PRIMARY KEY (seq, recorded_at);
CREATE INDEX ON bench_events (target_org_id, recorded_at);
CREATE INDEX ON bench_events (target_patient_id, recorded_at);
CREATE INDEX ON bench_events (actor_account_id, recorded_at);
CREATE INDEX ON bench_events (action);
CREATE TABLE bench_event_ids (event_id uuid PRIMARY KEY, seq bigint NOT NULL UNIQUE);
CREATE SEQUENCE IF NOT EXISTS bench_seq;
EOF
cat > "$tmp/insert.sql" <<'EOF'
BEGIN;
WITH s AS (SELECT nextval('bench_seq') AS seq, gen_random_uuid() AS id FROM generate_series(1, 100)),
     e AS (INSERT INTO bench_events (seq, event_id, occurred_at, recorded_at, actor_kind, actor_ip,
                                     actor_user_agent, action, target_type, target_id, result,
                                     source_service, request_id, details, prev_hash, hash)
           SELECT seq, id, now(), now(), 'service', '192.0.2.1', 'bench', 'auth.bench.event',
                  'account', 'b' || seq, 'success', 'auth', 'bench', jsonb_build_object('n', seq),
                  sha256(int8send(seq)), sha256(int8send(seq + 1)) FROM s RETURNING 1)
INSERT INTO bench_event_ids SELECT id, seq FROM s;
COMMIT;
EOF
pgb=$(PGPASSWORD=$(head -n 1 "$SECRETS/pg_audit.password") pgbench -n -c 8 -j 4 -T 15 \
    -f "$tmp/insert.sql" -h "$PGHOST_" -p "$PGPORT_" -U phr_audit phr_audit 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
pg_rate=$(python3 -c "print(f'{float(\"${pgb:-0}\") * 100:.0f}')")
psql_audit -c "DROP TABLE bench_events, bench_event_ids; DROP SEQUENCE bench_seq"
echo "bench: pgbench same insert (100 events + ids per transaction, 8 clients) = $pg_rate events/s;" \
    "service/pgbench = $(python3 -c "print(f'{$ingest / max($pg_rate, 1):.2f}')")"

# ---- 3. verification ------------------------------------------------------------------------
t0=$(now)
out=$(PHR_SECRETS_DIR=$SECRETS PHR_PG_HOST=$PGHOST_ PHR_PG_PORT=$PGPORT_ \
    "$BUILD/bin/phrctl" audit verify --from-seq "$first" --to-seq "$last" --json || true)
t1=$(now)
checked=$(python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('checked', 0))" "$out")
secs=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
echo "bench: phrctl audit verify $checked events in ${secs}s = $(rate "$checked" "$secs") events/s ($out)"
