#!/usr/bin/env bash
# tests/ops/restore_drill.sh - the backup and restore drill (issue 7, deploy/BACKUPS.md).
#
# Runs against the stack of the environment (like the itest): PHR_VAR, PHR_BUILD,
# PHR_GATEWAY_PORT, PHR_PG_PORT and the other PHR_*_PORT variables of deploy/stack.sh,
# with the stack up. It stops and starts the services itself (deploy/stack.sh down,
# up-deps, up) and leaves the stack up. Backups go to $PHR_VAR/drill-backups (wiped first).
#
#   1. fills data through the gateway (patients, records with a distinctive note)
#   2. backs up while the stack runs; restore refusals (no --yes, services connected,
#      unknown generation); tampered or renamed files fail verification
#   3. more data, services stopped, every table fingerprinted, backed up again
#   4. the databases destroyed, the older generation restored (later data absent),
#      the newer one restored: every table's rows identical to the fingerprint, the
#      audit chain head equals the manifest's, `phrctl audit verify` passes, the
#      patients log in and read their notes through the gateway
#   5. no plaintext note or password in the encrypted files nor in the decrypted dumps
#      (decrypted here independently, with python3-cryptography)
#   6. rotation: with 36 old generations a failed run removes none; a good run keeps
#      exactly PHR_BACKUP_KEEP (35), the newest
#   7. purges are not resurrected: back up, patient C deletes her data (POST
#      /api/v1/me/deletion), restore that generation: C's records are gone again, the replay
#      is audited (records.patient.purge, reason restore_replay) and the chain verifies
#   8. the docker-compose backups service's loop (deploy/compose/backup-loop.sh) on this
#      stack: a run at start, then it waits for the daily slot; stops on SIGTERM; no second run
#      when restarted within the day; --health; one-off commands
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed"; exit 1 on failure.
set -uo pipefail

# shellcheck source=tests/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/lib/proc.sh
. "$ROOT/tests/lib/proc.sh"
export PHR_BACKUP_DIR=$PHR_VAR/drill-backups
DBS=(phr_auth phr_records phr_notification phr_audit)
PW='Blue7Harbor!qDrill'

stack() {
    bash "$ROOT/deploy/stack.sh" "$@" >"$TMP/stack.log" 2>&1 || {
        cat "$TMP/stack.log" >&2
        return 1
    }
}

# Every row of every table of every service database, as "db.table count:md5".
fingerprint() {
    local db t
    for db in "${DBS[@]}"; do
        for t in $(adm "$db" "SELECT tablename FROM pg_tables WHERE schemaname = 'public'
                             ORDER BY 1"); do
            printf '%s.%s %s\n' "$db" "$t" "$(adm "$db" "SELECT count(*) || ':' ||
                md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"$t\" x")"
        done
    done
}

json_get() { # KEY: from $TMP/body
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
        "$TMP/body" "$1" 2>/dev/null
}

# login EMAIL: the token on stdout.
login() {
    [ "$(api POST /api/v1/auth/login "{\"email\":\"$1\",\"password\":\"$PW\"}")" = 200 ] &&
        json_get token
}

# patient NAME NOTE: registers a patient, logs in, posts a note; sets EMAIL_<NAME>.
patient() {
    local email=drill-${1,,}-$RANDOM$RANDOM@example.com token st
    st=$(api POST /api/v1/auth/register "{\"email\":\"$email\",\"password\":\"$PW\",
        \"name\":\"Drill $1\"}")
    [ "$st" = 201 ] || { echo "register: $st $(head -c 300 "$TMP/body")" >&2; return 1; }
    token=$(login "$email") && [ -n "$token" ] || { echo "login failed" >&2; return 1; }
    st=$(api POST /api/v1/me/records "{\"type\":\"note\",
        \"measured_at\":\"2026-01-05T07:30:00+09:00\",\"values\":{\"text\":\"$2\"},
        \"note\":\"$2\"}" "$token")
    [ "$st" = 201 ] || { echo "record: $st $(head -c 300 "$TMP/body")" >&2; return 1; }
    printf -v "EMAIL_$1" '%s' "$email"
}

# Waits until the audit log stops growing (the outbox relays are asynchronous).
audit_settle() {
    local last=-1 now same=0 i
    for ((i = 0; i < 40 && same < 3; i++)); do
        now=$(adm phr_audit "SELECT count(*) FROM audit_events" 2>/dev/null || echo -1)
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
        last=$now
        sleep 1
    done
}

gens() { # generation names, newest first
    "$PHRCTL" backup list --json | python3 -c \
        'import json,sys; [print(g["generation"]) for g in json.load(sys.stdin)]'
}

# decrypt GEN DB: the plaintext pg_dump archive of DB in GEN on stdout (independent of phrctl).
decrypt() {
    python3 - "$PHR_SECRETS_DIR/backup_key_v1" "$PHR_BACKUP_DIR/$1/$2.dump.enc" "$1/$2" <<'EOF'
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = bytes.fromhex(open(sys.argv[1]).read().strip())
data = open(sys.argv[2], 'rb').read()
assert data[:8] == b'PHRBK001'
aad = b'PHRBK001\0' + b'backup_key_v1\0' + sys.argv[3].encode()
sys.stdout.buffer.write(AESGCM(key).decrypt(data[8:20], data[20:], aad))
EOF
}

[ -x "$PHRCTL" ] || { echo "not built: $PHRCTL" >&2; exit 2; }
[ -s "$PHR_SECRETS_DIR/backup_key_v1" ] || bash "$ROOT/deploy/gen-secrets.sh" "$PHR_SECRETS_DIR"
rm -rf "$PHR_BACKUP_DIR"
NOTE1="drill-note-one-$RANDOM$RANDOM"
NOTE2="drill-note-two-$RANDOM$RANDOM"

# ---- 1. data, live backup --------------------------------------------------------
check "patient A registered with a note through the gateway" patient A "$NOTE1" || finish
audit_settle
expect_rc 0 "backup run while the stack runs" "$PHRCTL" backup run --json
GEN1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' \
    "$TMP/out" 2>/dev/null)
check "run --json names the generation ($GEN1)" test -n "$GEN1"
check "generation directory and manifest exist" test -s "$PHR_BACKUP_DIR/$GEN1/manifest.json"
check "manifest: JST times, 4 files with size and SHA-256, key id, versions" python3 - \
    "$PHR_BACKUP_DIR/$GEN1" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
m = json.load(open(d + '/manifest.json'))
assert m['started_at'].endswith('+09:00') and m['finished_at'].endswith('+09:00')
assert m['key_id'] == 'backup_key_v1' and m['cipher'] == 'AES-256-GCM'
assert m['pg_server_version'] and m['pg_dump_version'].startswith('pg_dump')
assert sorted(f['database'] for f in m['files']) == sorted(
    ['phr_auth', 'phr_records', 'phr_notification', 'phr_audit'])
for f in m['files']:
    p = os.path.join(d, f['file'])
    assert os.path.getsize(p) == f['size']
    assert hashlib.sha256(open(p, 'rb').read()).hexdigest() == f['sha256']
    assert os.stat(p).st_mode & 0o077 == 0
EOF
check "manifest holds the audit chain head" python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))["audit_chain_head"]
assert h is not None and h["seq"] >= 1 and len(h["hash"]) == 64' \
    "$PHR_BACKUP_DIR/$GEN1/manifest.json"
expect_rc 0 "backup verify (newest)" "$PHRCTL" backup verify
expect_rc 6 "restore without --yes is refused" "$PHRCTL" restore --generation 1
expect_rc 7 "restore while the services are connected is refused" \
    "$PHRCTL" restore --generation 1 --yes
expect_rc 4 "restore of an unknown generation" "$PHRCTL" restore --generation 99 --yes
expect_rc 2 "restore without --generation is a usage error" "$PHRCTL" restore --yes

# Tampering: a copy with one flipped byte, and an intact file under another generation name.
BAD=20200101T000000+0900
cp -a "$PHR_BACKUP_DIR/$GEN1" "$PHR_BACKUP_DIR/$BAD"
sed -i "s/$GEN1/$BAD/" "$PHR_BACKUP_DIR/$BAD/manifest.json"
expect_rc 5 "a generation's files renamed into another generation fail verification" \
    "$PHRCTL" backup verify --generation "$BAD"
rm -rf "${PHR_BACKUP_DIR:?}/$BAD"
cp -a "$PHR_BACKUP_DIR/$GEN1" "$TMP/gen1.orig"
python3 - "$PHR_BACKUP_DIR/$GEN1/phr_records.dump.enc" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 1
open(p, 'wb').write(bytes(b))
EOF
expect_rc 5 "a flipped byte fails verification" "$PHRCTL" backup verify --generation "$GEN1"
check "  ... naming the file's problem" grep -q "records.dump.enc: decryption failed" "$TMP/err"
rm -rf "${PHR_BACKUP_DIR:?}/$GEN1"
mv "$TMP/gen1.orig" "$PHR_BACKUP_DIR/$GEN1"
expect_rc 0 "the untouched generation still verifies" "$PHRCTL" backup verify --generation "$GEN1"

# ---- 2. more data, quiescent backup ---------------------------------------------------
check "patient B registered with a note through the gateway" patient B "$NOTE2" || finish
audit_settle
sleep 1 # generation names have one-second resolution
services_stopped() { stack down && stack up-deps; }
check "services stopped (stack down, up-deps)" services_stopped
fingerprint >"$TMP/fp.before"
check "fingerprint covers the service tables" test "$(wc -l <"$TMP/fp.before")" -ge 20
HEAD_SEQ=$(adm phr_audit "SELECT max(seq) FROM audit_events")
HEAD_HASH=$(adm phr_audit "SELECT encode(hash, 'hex') FROM audit_events ORDER BY seq DESC LIMIT 1")
expect_rc 0 "backup run with the services stopped" "$PHRCTL" backup run --json
GEN2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' \
    "$TMP/out" 2>/dev/null)
check "manifest's audit chain head is the database's ($HEAD_SEQ)" python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))["audit_chain_head"]
assert h["seq"] == int(sys.argv[2]) and h["hash"] == sys.argv[3]' \
    "$PHR_BACKUP_DIR/$GEN2/manifest.json" "$HEAD_SEQ" "$HEAD_HASH"
check "list numbers the newest 1" test "$(gens | sed -n 1p)" = "$GEN2"

# ---- 3. no plaintext -------------------------------------------------------------------
check "encrypted files hold neither note nor e-mail nor password" \
    not grep -rqaF -e "$NOTE1" -e "$NOTE2" -e "$EMAIL_B" -e "$PW" "$PHR_BACKUP_DIR/$GEN2"
decrypt "$GEN2" phr_records >"$TMP/records.dump" && decrypt "$GEN2" phr_auth >"$TMP/auth.dump"
check "the files decrypt independently (python3 AES-GCM, documented AAD)" test -s "$TMP/auth.dump"
pg_restore -f "$TMP/records.sql" "$TMP/records.dump" && pg_restore -f "$TMP/auth.sql" "$TMP/auth.dump"
PID_B=$(adm phr_auth "SELECT id FROM accounts WHERE email = '$EMAIL_B'")
check "decrypted records dump holds patient B's records" grep -qF "$PID_B" "$TMP/records.sql"
check "decrypted records dump holds no plaintext note" \
    not grep -qF -e "$NOTE1" -e "$NOTE2" "$TMP/records.sql" "$TMP/records.dump"
HASH_B=$(adm phr_auth "SELECT password_hash FROM accounts WHERE email = '$EMAIL_B'")
auth_dump_hashed() {
    grep -qF "$EMAIL_B" "$TMP/auth.sql" && test -n "$HASH_B" &&
        grep -qF "$HASH_B" "$TMP/auth.sql" && ! grep -qF "$PW" "$TMP/auth.sql"
}
check "decrypted auth dump holds the account, only a hash of its password" auth_dump_hashed
rm -f "$TMP"/*.dump "$TMP"/*.sql

# ---- 4. destroy, restore the older, restore the newer ---------------------------------
for db in "${DBS[@]}"; do
    adm "$db" "SET client_min_messages = warning; DROP SCHEMA public CASCADE;
               CREATE SCHEMA public AUTHORIZATION pg_database_owner;
               GRANT USAGE ON SCHEMA public TO PUBLIC" >/dev/null
done
check "databases destroyed" test "$(adm phr_auth "SELECT count(*) FROM pg_tables
    WHERE schemaname = 'public'")" = 0
expect_rc 0 "restore --generation 2 (the older, by number)" "$PHRCTL" restore --generation 2 --yes
check "older generation: patient A present" \
    test "$(adm phr_auth "SELECT count(*) FROM accounts WHERE email = '$EMAIL_A'")" = 1
check "older generation: patient B (later) absent" \
    test "$(adm phr_auth "SELECT count(*) FROM accounts WHERE email = '$EMAIL_B'")" = 0
expect_rc 0 "restore --generation $GEN2 (by name) --json" \
    "$PHRCTL" restore --generation "$GEN2" --yes --json
check "restore --json reports 4 databases" python3 -c '
import json, sys
o = json.load(open(sys.argv[1])); assert o["ok"] and len(o["restored"]) == 4' "$TMP/out"
fingerprint >"$TMP/fp.after"
if diff "$TMP/fp.before" "$TMP/fp.after" >"$TMP/fp.diff"; then
    ok "every row of every table equals the state at backup time"
else
    not_ok "every row of every table equals the state at backup time"
    head -n 10 "$TMP/fp.diff" | sed 's/^/    /'
fi
check "audit tables still owned by phr_audit_owner, phr_audit not a member" test \
    "$(adm phr_audit "SELECT count(*) FROM pg_tables WHERE tablename = 'audit_events'
     AND tableowner = 'phr_audit_owner'")$(adm phr_audit \
        "SELECT pg_has_role('phr_audit', 'phr_audit_owner', 'MEMBER')")" = 1f
expect_rc 0 "phrctl audit verify passes on the restored chain" "$PHRCTL" audit verify
check "services start on the restored databases" stack up
TOKEN=$(login "$EMAIL_B")
check "patient B logs in after the restore" test -n "$TOKEN"
st=$(api GET /api/v1/me/records "" "$TOKEN")
check "patient B reads the note back through the gateway ($st)" grep -qF "$NOTE2" "$TMP/body"

# ---- 5. rotation -------------------------------------------------------------------------
for ((i = 0; i < 36; i++)); do
    name=$(printf '20200101T0000%02d+0900' "$i")
    mkdir -p "$PHR_BACKUP_DIR/$name"
    cp "$PHR_BACKUP_DIR/$GEN1/manifest.json" "$PHR_BACKUP_DIR/$name/"
done
before=$(gens | wc -l)
# A run whose verification fails (pg_restore replaced by a failing stub) removes nothing.
mkdir -p "$TMP/pgbin"
ln -s /usr/lib/postgresql/15/bin/pg_dump /usr/lib/postgresql/15/bin/psql "$TMP/pgbin/"
printf '#!/bin/sh\ncat >/dev/null\nexit 1\n' >"$TMP/pgbin/pg_restore"
chmod 0755 "$TMP/pgbin" "$TMP/pgbin/pg_restore"
chmod 0711 "$TMP" # the PostgreSQL tools run as postgres
sleep 1
PHR_PG_BIN=$TMP/pgbin expect_rc 5 "a run that fails verification exits 5" "$PHRCTL" backup run
check "  ... and removes no generation ($before kept)" test "$(gens | wc -l)" = "$before"
check "  ... and publishes nothing (only a .partial)" \
    test "$(find "$PHR_BACKUP_DIR" -maxdepth 1 -name '*.partial' | wc -l)" = 1
sleep 1
expect_rc 0 "backup run with $before generations present" "$PHRCTL" backup run --json
GEN3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' \
    "$TMP/out" 2>/dev/null)
check "exactly 35 generations kept" test "$(gens | wc -l)" = 35
check "the newest is the new one, the real ones survive" \
    test "$(gens | sed -n 1,3p | tr '\n' ' ')" = "$GEN3 $GEN2 $GEN1 "
check "the oldest were removed" test ! -e "$PHR_BACKUP_DIR/20200101T000000+0900"
check "the interrupted .partial was cleaned up" \
    test "$(find "$PHR_BACKUP_DIR" -maxdepth 1 -name '*.partial' | wc -l)" = 0
PHR_BACKUP_KEEP=3 expect_rc 0 "PHR_BACKUP_KEEP=3 run" "$PHRCTL" backup run
check "  ... keeps 3" test "$(gens | wc -l)" = 3

# ---- 7. a purge after the backup is applied again by the restore ----------------------
NOTE3="drill-note-three-$RANDOM$RANDOM"
check "patient C registered with a note through the gateway" patient C "$NOTE3" || finish
PID_C=$(adm phr_auth "SELECT id FROM accounts WHERE email = '$EMAIL_C'")
audit_settle
sleep 1
expect_rc 0 "backup run with patient C's records" "$PHRCTL" backup run --json
GEN4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' \
    "$TMP/out" 2>/dev/null)
c_rows() { # records + history rows of patient C
    adm phr_records "SELECT (SELECT count(*) FROM records WHERE patient_id = '$PID_C') +
        (SELECT count(*) FROM record_history WHERE patient_id = '$PID_C')"
}
check "  patient C has records ($(c_rows))" test "$(c_rows)" -ge 1
TOKEN=$(login "$EMAIL_C")
st=$(api POST /api/v1/me/deletion "{\"password\":\"$PW\"}" "$TOKEN")
check "patient C deletes her data after the backup (POST /api/v1/me/deletion: $st)" \
    test "$st" = 204 -a "$(c_rows)" = 0
audit_settle
check "  the purge is in the audit log" test "$(adm phr_audit "SELECT count(*) FROM audit_events
    WHERE action = 'records.patient.purge' AND target_id = '$PID_C'")" = 1
check "services stopped (stack down, up-deps)" services_stopped
expect_rc 0 "restore of the generation taken before the deletion" \
    "$PHRCTL" restore --generation "$GEN4" --yes --json
check "  --json: the purge of patient C applied again (1 record)" python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert o["ok"] and [(p["patient_id"], p["records"]) for p in o["purges_reapplied"]] == \
    [(sys.argv[2], 1)], o["purges_reapplied"]' "$TMP/out" "$PID_C"
check "patient C's records and history are gone again" test "$(c_rows)" = 0
check "patient B's records are still there" test "$(adm phr_records "SELECT count(*) FROM
    records r WHERE patient_id = '$PID_B'")" -ge 1
check "  the pending replay file is gone" test ! -e "$PHR_BACKUP_DIR/.purge-replay.json"
check "services start on the restored databases" stack up
audit_settle
check "the replay is audited (records.patient.purge, restore_replay, generation)" test \
    "$(adm phr_audit "SELECT details->>'generation' FROM audit_events WHERE action =
        'records.patient.purge' AND target_id = '$PID_C' AND
        details->>'reason' = 'restore_replay'")" = "$GEN4"
expect_rc 0 "phrctl audit verify passes after the replay" "$PHRCTL" audit verify
TOKEN=$(login "$EMAIL_C")
st=$(api GET /api/v1/me/records "" "$TOKEN")
check "patient C reads no records through the gateway ($st)" python3 -c '
import json, sys
assert json.load(open(sys.argv[1]))["items"] == []' "$TMP/body"

# ---- 8. the compose backups service's loop -----------------------------------------------
LOOPDIR=$TMP/loop
# the loop script as the backups container runs it, phrctl on PATH (env: $! is the script)
LOOPCMD=(env PHR_BACKUP_DIR="$LOOPDIR" PATH="$PHR_BUILD/bin:$PATH"
    PHR_BACKUP_AT="$(date -d '+2 hours' +%H:%M)" bash "$ROOT/deploy/compose/backup-loop.sh")
loop() { "${LOOPCMD[@]}" "$@"; }
loop_gens() { PHR_BACKUP_DIR=$LOOPDIR "$PHRCTL" backup list --json | python3 -c \
    'import json,sys; print(len(json.load(sys.stdin)))'; }
"${LOOPCMD[@]}" >"$TMP/loop.out" 2>"$TMP/loop.err" &
LOOP=$!
trap 'kill -TERM "$LOOP" 2>/dev/null; rm -rf "$TMP"' EXIT
for ((i = 0; i < 120; i++)); do [ -e "$LOOPDIR/.last-success" ] && break; sleep 0.5; done
check "backup loop: a run at start (a verified generation, success stamp)" \
    test -e "$LOOPDIR/.last-success" -a "$(loop_gens)" = 1
for ((i = 0; i < 20; i++)); do grep -q "next backup run at" "$TMP/loop.err" && break; sleep 0.25; done
check "  then it waits for the daily slot" grep -q "next backup run at" "$TMP/loop.err"
check "  --health passes" loop --health
SLEEPER=$(pgrep -P "$LOOP" -x sleep)
kill -TERM "$LOOP"
t0=$(date +%s)
wait "$LOOP"
rc=$?
took=$(($(date +%s) - t0))
check "  SIGTERM stops it at once (exit $rc after $took s)" test "$rc:$((took < 3))" = 0:1
gone() { # PID: the process ends within 5 s (a zombie waiting for init to reap it has ended)
    local i
    for ((i = 0; i < 50; i++)); do
        proc_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}
check "  ... and its sleep ($SLEEPER)" gone "${SLEEPER:-0}"
"${LOOPCMD[@]}" >"$TMP/loop.out" 2>"$TMP/loop.err" &
LOOP=$!
for ((i = 0; i < 20; i++)); do grep -q "next backup run at" "$TMP/loop.err" && break; sleep 0.25; done
kill -TERM "$LOOP"
wait "$LOOP"
check "  restarted within the day: no second run" test "$(loop_gens)" = 1
touch -d '27 hours ago' "$LOOPDIR/.last-success"
check "  --health fails when the last success is 27 hours old" not loop --health
check "  one-off commands run in its environment (backup list)" \
    test "$(loop "$PHRCTL" backup list --json | python3 -c \
        'import json,sys; print(len(json.load(sys.stdin)))')" = 1

rm -rf "$PHR_BACKUP_DIR"
finish
