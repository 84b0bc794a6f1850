#!/usr/bin/env bash
# tests/ops/keys_test.sh - data key rotation (phrctl keys, issue 7) against the running stack
# of the environment (like tests/ops/phrctl_test.sh): PHR_VAR, PHR_BUILD, PHR_GATEWAY_PORT,
# PHR_PG_PORT and the other PHR_*_PORT variables of deploy/stack.sh, with the stack up.
#
#   A patient's records (and their history rows) are written under the current key v<N>.
#   `keys rotate` re-encrypts to v<N+1> in small throttled batches while the patient reads
#   (identical values) and writes through the gateway; it is killed (SIGKILL) midway: the
#   marker shows the progress, `retire` and another `rotate` are refused. SIGHUP makes the
#   records service seal with v<N+1> (a new record carries it). `keys rekey` resumes and
#   finishes: no row of either table under another key, every row of the patient decrypts
#   independently (python3-cryptography, the key files) to the same plaintext as before, none
#   lost or added, reads through the gateway identical. Audited; `retire --yes` moves
#   v<N> to secrets/retired/ and the records service, restarted, still serves everything.
# Leaves the stack up (sealing with v<N+1>, v<N> retired).
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed"; exit 1 on failure.
set -uo pipefail

# shellcheck source=tests/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=/usr/bin/python3 # Debian's, with python3-cryptography
PW='Blue7Harbor!qKeys'
NREC=24

# reads OUT: every record of the patient through the gateway as sorted (id, values, note).
reads() {
    local st
    st=$(api GET "/api/v1/me/records?limit=200" "" "$TOKEN" "$TMP/list") || return 1
    [ "$st" = 200 ] || { echo "    GET records: $st $(head -c 200 "$TMP/list")" >&2; return 1; }
    python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
assert j.get("next_cursor") is None
for r in sorted(j["items"], key=lambda r: r["id"]):
    print(json.dumps([r["id"], r["values"], r["note"]], sort_keys=True))' "$TMP/list" >"$1"
}
# sealed OUT: decrypts every row of the patient in both tables with the key files; prints
# "table|id|key_id|sha256(plaintext)" sorted, fails when any row does not open.
cat >"$TMP/open.py" <<'EOF'
import glob, hashlib, json, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
keys = {}
for d in (sys.argv[1], os.path.join(sys.argv[1], "retired")):
    for f in glob.glob(os.path.join(d, "data_key_v*")):
        keys[int(f.rsplit("v", 1)[1])] = bytes.fromhex(open(f).read().strip())
bad = 0
out = []
for line in sys.stdin:
    t, rid, aad_id, patient, typ, kid, hexd = line.rstrip("\n").split("|")
    blob = bytes.fromhex(hexd)
    try:
        plain = AESGCM(keys[int(kid)]).decrypt(blob[:12], blob[12:],
                                               f"rec1|{aad_id}|{patient}|{typ}".encode())
        assert "values" in json.loads(plain)
    except Exception as e:
        bad += 1
        print(f"{t} {rid} key {kid} does not open: {e!r}", file=sys.stderr)
        continue
    out.append(f"{t}|{rid}|{hashlib.sha256(plain).hexdigest()}")
print("\n".join(sorted(out)))
sys.exit(1 if bad else 0)
EOF
sealed() {
    adm phr_records "SELECT 'r', id::text, id, patient_id, type, key_id, encode(sealed, 'hex')
        FROM records WHERE patient_id = '$PID' UNION ALL
        SELECT 'h', id::text, record_id, patient_id, type, key_id, encode(sealed, 'hex')
        FROM record_history WHERE patient_id = '$PID'" | $PY "$TMP/open.py" "$PHR_SECRETS_DIR" >"$1"
}
record_pids() { cat "$PHR_VAR"/run/records*.pid 2>/dev/null; }

[ -x "$PHRCTL" ] || { echo "not built: $PHRCTL" >&2; exit 2; }

# ---- usage and refusals ---------------------------------------------------------------
expect_rc 2 "keys without a verb is a usage error" "$PHRCTL" keys
expect_rc 2 "keys rekey --batch 0" "$PHRCTL" keys rekey --batch 0
expect_rc 6 "keys retire without --yes is refused" "$PHRCTL" keys retire
expect_rc 0 "keys status --json" "$PHRCTL" keys status --json
OLD=$(jq_py 'j["current"]')
NEW=$((OLD + 1))
check "  a current key and nothing left to re-encrypt" test "$(jq_py 'j["remaining"]')" = 0

# ---- a patient's records under v<OLD> -------------------------------------------------
EMAIL=keys-$RANDOM$RANDOM@example.com
st=$(api POST /api/v1/auth/register "{\"email\":\"$EMAIL\",\"password\":\"$PW\",\"name\":\"Keys\"}")
st=$(api POST /api/v1/auth/login "{\"email\":\"$EMAIL\",\"password\":\"$PW\"}")
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' \
    "$TMP/body" 2>/dev/null)
check "patient registered and logged in" test "$st" = 200 -a -n "$TOKEN" || finish
n=0
for ((i = 1; i <= NREC; i++)); do
    st=$(api POST /api/v1/me/records "{\"type\":\"note\",
        \"measured_at\":\"2026-02-$(printf %02d "$i")T08:00:00+09:00\",
        \"values\":{\"text\":\"keys note $i\"},\"note\":\"secret $i\"}" "$TOKEN")
    [ "$st" = 201 ] && n=$((n + 1))
done
check "$NREC records written (201)" test "$n" = "$NREC"
PID=$(adm phr_auth "SELECT id FROM accounts WHERE email = '$EMAIL'")
mapfile -t IDS < <(adm phr_records "SELECT id FROM records WHERE patient_id = '$PID'
    ORDER BY id LIMIT 6")
n=0
for id in "${IDS[@]:0:4}"; do
    st=$(api PATCH "/api/v1/me/records/$id" '{"note":"edited"}' "$TOKEN")
    [ "$st" = 200 ] && n=$((n + 1))
done
for id in "${IDS[@]:4:2}"; do
    st=$(api DELETE "/api/v1/me/records/$id" "" "$TOKEN")
    [ "$st" = 204 ] && n=$((n + 1))
done
check "4 edits and 2 deletions made 6 history rows" test "$n:$(adm phr_records \
    "SELECT count(*) FROM record_history WHERE patient_id = '$PID'")" = "6:6"
check "every row of the patient is under v$OLD" test "$(adm phr_records \
    "SELECT (SELECT count(*) FROM records WHERE patient_id = '$PID' AND key_id = $OLD) ||
        ':' || (SELECT count(*) FROM record_history WHERE patient_id = '$PID'
        AND key_id = $OLD)")" = "$((NREC - 2)):6"
check "reads before the rotation" reads "$TMP/reads0"
check "every row decrypts independently (v$OLD)" sealed "$TMP/sealed0"

# ---- rotate, read and write meanwhile, kill it midway ---------------------------------
"$PHRCTL" keys rotate --batch 1 --pause-ms 300 --json >"$TMP/rotate.out" 2>"$TMP/rotate.err" &
ROT=$!
for ((i = 0; i < 100; i++)); do
    done_rows=$(adm phr_records "SELECT (value::jsonb->>'rows_done')::int
        FROM service_meta WHERE key = 'keys.rekey' AND value::jsonb->>'target' = '$NEW'" \
        2>/dev/null)
    [ "${done_rows:-0}" -ge 3 ] && break
    sleep 0.1
done
st=$(api POST /api/v1/me/records '{"type":"note","measured_at":"2026-03-01T08:00:00+09:00",
    "values":{"text":"during"}}' "$TOKEN")
DURID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body" \
    2>/dev/null)
check "a write during the re-encryption succeeds (201)" test "$st" = 201 -a -n "$DURID"
during=0
for ((i = 0; i < 2; i++)); do
    reads "$TMP/reads_during" && grep -vF "\"$DURID\"" "$TMP/reads_during" |
        cmp -s "$TMP/reads0" - && during=$((during + 1))
done
kill -9 "$ROT" 2>/dev/null
wait "$ROT" 2>/dev/null
check "data_key_v$NEW written, mode 0600" test \
    "$(stat -c %a "$PHR_SECRETS_DIR/data_key_v$NEW" 2>/dev/null)" = 600
check "reads during the re-encryption return the same values (2 reads)" test "$during" = 2
expect_rc 0 "keys status --json after the kill" "$PHRCTL" keys status --json
check "  killed midway: progress made, rows left under v$OLD" test \
    "$(jq_py '[j["current"], j["rekey"]["target"], j["rekey"]["rows_done"] > 0,
        j["remaining"] > 0, "finished_at" in j["rekey"]]')" = "[$NEW, $NEW, True, True, False]"
expect_rc 3 "keys retire --yes while rows use v$OLD is refused" "$PHRCTL" keys retire --yes
check "  the key file stays" test -e "$PHR_SECRETS_DIR/data_key_v$OLD"
expect_rc 3 "another rotation before the re-encryption finished is refused" \
    "$PHRCTL" keys rotate --no-rekey
check "  no data_key_v$((NEW + 1))" test ! -e "$PHR_SECRETS_DIR/data_key_v$((NEW + 1))"

# ---- the records service seals with the new key after SIGHUP --------------------------
for p in $(cat "$PHR_VAR"/run/records*.pid); do kill -HUP "$p"; done
hup=0
for ((i = 0; i < 40; i++)); do
    grep -q "SIGHUP: data keys reloaded, sealing with version $NEW" "$PHR_VAR"/log/records*.log \
        2>/dev/null && hup=1 && break
    sleep 0.25
done
check "SIGHUP: the records service says it seals with v$NEW" test "$hup" = 1
st=$(api POST /api/v1/me/records '{"type":"note","measured_at":"2026-03-02T08:00:00+09:00",
    "values":{"text":"after"}}' "$TOKEN")
NEWID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/body" \
    2>/dev/null)
check "a new record is written under v$NEW" test \
    "$st:$(adm phr_records "SELECT key_id FROM records WHERE id = '$NEWID'")" = "201:$NEW"

# ---- resume ---------------------------------------------------------------------------
expect_rc 0 "keys rekey resumes and finishes" "$PHRCTL" keys rekey --batch 3 --json
check "  the marker: finished, nothing remaining" test \
    "$(jq_py '[j["target"], j["remaining"], "finished_at" in j]')" = "[$NEW, 0, True]"
check "no row of records or record_history under another key (whole database)" test \
    "$(adm phr_records "SELECT (SELECT count(*) FROM records WHERE key_id <> $NEW) || ':' ||
        (SELECT count(*) FROM record_history WHERE key_id <> $NEW)")" = "0:0"
check "SELECT count(*) WHERE key_id = $OLD is 0 in both tables" test \
    "$(adm phr_records "SELECT (SELECT count(*) FROM records WHERE key_id = $OLD) +
        (SELECT count(*) FROM record_history WHERE key_id = $OLD)")" = 0
check "every row of the patient decrypts independently under v$NEW" sealed "$TMP/sealed1"
grep -v -e "^r|$NEWID|" -e "^r|$DURID|" "$TMP/sealed1" >"$TMP/sealed1_old"
check "  no row lost or double-encrypted: the same rows and plaintexts as before" \
    cmp -s "$TMP/sealed0" "$TMP/sealed1_old"
check "  plus the two new records" test "$(wc -l <"$TMP/sealed1")" = \
    "$(($(wc -l <"$TMP/sealed0") + 2))"
check "reads after the rotation" reads "$TMP/reads1"
check "  the same values as before, plus the two new records" test \
    "$(grep -cvxFf "$TMP/reads0" "$TMP/reads1"):$(grep -cxFf "$TMP/reads0" "$TMP/reads1")" = \
    "2:$((NREC - 2))"
expect_rc 0 "keys rekey again: nothing to do" "$PHRCTL" keys rekey --json
check "  0 remaining" test "$(jq_py 'j["remaining"]')" = 0
check "audited: records.key.rotate and records.key.rekey by an operator" wait_ok phr_audit \
    "SELECT count(*) FROM audit_events WHERE action IN ('records.key.rotate',
        'records.key.rekey') AND target_id = 'v$NEW' AND actor_kind = 'operator'
        HAVING count(*) = 2"

# ---- retire, restart --------------------------------------------------------------------
expect_rc 0 "keys retire --yes --json" "$PHRCTL" keys retire --yes --json
check "  v$OLD retired, moved to secrets/retired/" test \
    "$(jq_py 'j["retired"]'):$(test -e "$PHR_SECRETS_DIR/data_key_v$OLD" && echo kept):$(
        stat -c %a "$PHR_SECRETS_DIR/retired/data_key_v$OLD")" = "[$OLD]::600"
check "  audited: records.key.retire" wait_ok phr_audit \
    "SELECT count(*) FROM audit_events WHERE action = 'records.key.retire'
        AND target_id = 'v$OLD'"
for p in $(record_pids); do kill -TERM "$p"; done
for ((i = 0; i < 50; i++)); do
    alive=0
    for p in $(record_pids); do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
done
bash deploy/stack.sh up >"$TMP/up.log" 2>&1
check "the records service restarts without the retired key" test $? = 0
check "  and reads everything as before" reads "$TMP/reads2"
check "  (identical)" cmp -s "$TMP/reads1" "$TMP/reads2"
finish
