#!/usr/bin/env bash
# tests/ops/phrctl_test.sh - the operator CLI verbs org, status and retention (issue 7,
# deploy/OPERATIONS.md) against the running stack of the environment (like the itest and
# tests/ops/restore_drill.sh): PHR_VAR, PHR_BUILD, PHR_GATEWAY_PORT, PHR_PG_PORT and the
# other PHR_*_PORT variables of deploy/stack.sh, with the stack up. Leaves the stack up.
#
#   org create  success, --json shape, the admin's staff_onboarding e-mail (outbox row as
#               the API writes it, delivered by the stand-in), the admin logs in with the
#               e-mailed password, audit events by an operator; usage errors, duplicate
#   org list    text and --json
#   org set-seats  success, audited; below the seats in use (3), unknown org (4), usage (2)
#   status      every part in --json, exit 0; a service unreachable: exit 8; backup seen
#   retention run  refused without --yes (6); purges a due patient, counts, audited
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed"; exit 1 on failure.
set -uo pipefail

# shellcheck source=tests/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PHR_PUBLIC_BASE_URL=${PHR_PUBLIC_BASE_URL:-https://127.0.0.1:${PHR_GATEWAY_PORT:-8443}}
STANDIN=http://127.0.0.1:${PHR_STANDIN_PORT:-9199}
PW='Blue7Harbor!qCtl'
export PHR_BACKUP_DIR=$TMP/backups

[ -x "$PHRCTL" ] || { echo "not built: $PHRCTL" >&2; exit 2; }
TAG=$RANDOM$RANDOM
ADMIN=ctl-admin-$TAG@example.com
ORG="Ctl Clinic $TAG"

# ---- usage errors -----------------------------------------------------------------
expect_rc 2 "org without a verb is a usage error" "$PHRCTL" org
expect_rc 2 "org create without --seats" "$PHRCTL" org create --name X --admin-email "$ADMIN"
expect_rc 2 "org create --seats 0" "$PHRCTL" org create --name X --seats 0 --admin-email "$ADMIN"
expect_rc 2 "org create --seats 12x" "$PHRCTL" org create --name X --seats 12x \
    --admin-email "$ADMIN"
expect_rc 2 "org create with a bad e-mail" "$PHRCTL" org create --name X --seats 2 \
    --admin-email not-an-email
check "  the message names --admin-email" grep -q -- '--admin-email' "$TMP/err"
expect_rc 2 "org create with an empty --name" "$PHRCTL" org create --name "" --seats 2 \
    --admin-email "$ADMIN"
expect_rc 2 "org create --admin-locale fr" "$PHRCTL" org create --name X --seats 2 \
    --admin-email "$ADMIN" --admin-locale fr
expect_rc 2 "org list with an unknown option" "$PHRCTL" org list --bogus
expect_rc 2 "org set-seats with a malformed id" "$PHRCTL" org set-seats not-a-uuid 3
expect_rc 2 "org set-seats without K" "$PHRCTL" org set-seats \
    01a21810-2c51-7e2d-ac7e-11443b034e06
expect_rc 2 "status with an unknown option" "$PHRCTL" status --bogus
expect_rc 2 "retention without run" "$PHRCTL" retention
check "no organization was created by the refused calls" \
    test "$(adm phr_auth "SELECT count(*) FROM accounts WHERE email = '$ADMIN'")" = 0

# ---- org create ---------------------------------------------------------------------
expect_rc 0 "org create --json" "$PHRCTL" org create --name "$ORG" --seats 2 \
    --admin-email "${ADMIN^^}" --admin-name "Ctl Admin" --admin-locale en --require-mfa --json
ORG_ID=$(jq_py 'j["id"]')
ADMIN_ID=$(jq_py 'j["admin_account_id"]')
check "  --json: id, name, seats, require_mfa, status, admin" test \
    "$(jq_py '[j["name"], j["seat_limit"], j["seats_used"], j["require_mfa"], j["status"],
        j["admin_email"], len(j["admin_account_id"]), "initial_password" in j]')" = \
    "['$ORG', 2, 1, True, 'active', '$ADMIN', 36, False]"
check "  the admin is an active staff admin of the org, password to change" test \
    "$(adm phr_auth "SELECT kind || role || locale || must_change_password || (org_id = '$ORG_ID')
        FROM accounts WHERE id = '$ADMIN_ID'")" = "staffadminentruetrue"
check "  one staff_onboarding outbox row keyed onboard:<admin id>, as the API writes it" test \
    "$(adm phr_auth "SELECT count(*) || ' ' || string_agg((SELECT string_agg(k, ',' ORDER BY k)
        FROM jsonb_object_keys(body->'params') k) || ' ' || (body->>'kind') || ' ' ||
        (body->>'locale') || ' ' || (body->'to'->>'account_id'), '') FROM outbox
        WHERE topic = 'notification' AND idempotency_key = 'onboard:$ADMIN_ID'")" = \
    "1 expires_at,initial_password,login_url,name,org_name staff_onboarding en $ADMIN_ID"
check "  the e-mail's login link is PHR_PUBLIC_BASE_URL/login" test \
    "$(adm phr_auth "SELECT body->'params'->>'login_url' FROM outbox
        WHERE idempotency_key = 'onboard:$ADMIN_ID'")" = "$PHR_PUBLIC_BASE_URL/login"
check "  audited: auth.org.create and auth.staff.create by an operator" test \
    "$(wait_for phr_audit "SELECT CASE WHEN count(*) = 2 THEN string_agg(action || ':' ||
        actor_kind, ' ' ORDER BY action) END FROM audit_events WHERE
        (action = 'auth.org.create' AND target_id = '$ORG_ID') OR
        (action = 'auth.staff.create' AND target_id = '$ADMIN_ID')")" = \
    "auth.org.create:operator auth.staff.create:operator"
check "  the onboarding e-mail was delivered" wait_ok phr_notification \
    "SELECT count(*) FROM notifications WHERE kind = 'staff_onboarding' AND
        to_account_id = '$ADMIN_ID' AND status IN ('sent', 'delivered')"
INITIAL=$(curl -s --max-time 10 "$STANDIN/__messages" | python3 -c '
import json, re, sys
for m in json.load(sys.stdin):
    if m.get("to") == sys.argv[1]:
        r = re.search(r"(?:Initial password|初期パスワード)\s*[:：]\s*(\S+)", m.get("text") or "")
        if r:
            print(r.group(1))' "$ADMIN" 2>/dev/null | tail -n 1)
check "  the e-mail carries an initial password" test -n "$INITIAL"
st=$(api POST /api/v1/auth/login "{\"email\":\"$ADMIN\",\"password\":\"$INITIAL\"}")
check "  the admin logs in with it through the gateway (must change it)" test \
    "$st:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))
        .get("must_change_password"))' "$TMP/body" 2>/dev/null)" = "200:True"
expect_rc 3 "org create with an e-mail in use" "$PHRCTL" org create --name "Other $TAG" \
    --seats 2 --admin-email "$ADMIN"
check "  nothing of it was kept" test \
    "$(adm phr_auth "SELECT count(*) FROM organizations WHERE name = 'Other $TAG'")" = 0
expect_rc 0 "org create (text), admin name from the e-mail" "$PHRCTL" org create \
    --name "$ORG b" --seats 5 --admin-email "ctl-b-$TAG@example.com"
check "  the text names the organization" grep -q "created: $ORG b (5 seats)" "$TMP/out"
check "  no initial password on stdout" test \
    "$(grep -ci 'initial password:' "$TMP/out")" = 0
check "  the admin is named by the e-mail's local part" test \
    "$(adm phr_auth "SELECT name FROM accounts WHERE email = 'ctl-b-$TAG@example.com'")" = \
    "ctl-b-$TAG"

# ---- org list -------------------------------------------------------------------------
expect_rc 0 "org list --json" "$PHRCTL" org list --json
check "  an array holding the new org with its seats" test \
    "$(jq_py '[(o["seats_used"], o["seat_limit"]) for o in j if o["id"] == "'"$ORG_ID"'"]')" = \
    "[(1, 2)]"
expect_rc 0 "org list (text)" "$PHRCTL" org list
check "  a line for the new org" grep -q "^$ORG_ID  1/2 seats  mfa=true  active .* $ORG\$" \
    "$TMP/out"

# ---- org set-seats --------------------------------------------------------------------
expect_rc 0 "org set-seats --json" "$PHRCTL" org set-seats "$ORG_ID" 7 --json
check "  the answer and the database have 7 seats" test \
    "$(jq_py 'j["seat_limit"]'):$(adm phr_auth "SELECT seat_limit FROM organizations
        WHERE id = '$ORG_ID'")" = "7:7"
check "  audited: auth.org.update with the old and new limit" test \
    "$(wait_for phr_audit "SELECT (details->>'previous_seat_limit') || '>' ||
        (details->>'seat_limit') || ':' || actor_kind FROM audit_events
        WHERE action = 'auth.org.update' AND target_id = '$ORG_ID'")" = "2>7:operator"
adm phr_auth "INSERT INTO accounts (id, email, name, kind, org_id, role, password_hash)
    VALUES (gen_random_uuid(), 'ctl-staff-$TAG@example.com', 'Staff', 'staff', '$ORG_ID',
    'staff', 'x')" >/dev/null
expect_rc 3 "org set-seats below the seats in use" "$PHRCTL" org set-seats "$ORG_ID" 1
check "  the limit is unchanged" test \
    "$(adm phr_auth "SELECT seat_limit FROM organizations WHERE id = '$ORG_ID'")" = 7
expect_rc 0 "org set-seats to exactly the seats in use (text)" "$PHRCTL" org set-seats \
    "$ORG_ID" 2
check "  the line shows 2/2" grep -q "2/2 seats" "$TMP/out"
expect_rc 4 "org set-seats of an unknown org" "$PHRCTL" org set-seats \
    00000000-0000-7000-8000-000000000000 3
expect_rc 2 "org set-seats 0" "$PHRCTL" org set-seats "$ORG_ID" 0

# ---- status ---------------------------------------------------------------------------
expect_rc 0 "backup run (for status)" "$PHRCTL" backup run --json
GEN=$(jq_py 'j["generation"]')
expect_rc 0 "status --json with everything up" "$PHRCTL" status --json
check "  every service ready, every outbox counted" test \
    "$(jq_py '[j["ok"]] + [(j["services"][s]["status"], sorted(j["outbox"][s])) for s in
        ("auth", "records", "notification", "audit")].count(("ready", ["dead",
        "oldest_pending_age_s", "pending"])) * [1]')" = "[True, 1, 1, 1, 1]"
check "  notification queue depth" test \
    "$(jq_py 'sorted(j["notifications"])')" = \
    "['dead', 'oldest_queued_age_s', 'queued', 'sending']"
check "  the last backup generation and its age" test \
    "$(jq_py '[j["backup"]["last_generation"], j["backup"]["generations"],
        0 <= j["backup"]["last_age_s"] < 600]')" = "['$GEN', 1, True]"
check "  the audit chain head seq and the checkpoint fields" test \
    "$(jq_py '[j["audit"]["head_seq"] >= 1, sorted(j["audit"])]')" = \
    "[True, ['head_seq', 'last_checkpoint_age_s', 'last_checkpoint_seq']]"
expect_rc 0 "status (text)" "$PHRCTL" status
check "  says ok and lists the four services" test \
    "$(head -n 1 "$TMP/out"):$(grep -cE '^(auth|records|notification|audit) +ready' \
        "$TMP/out")" = "ok:4"
expect_rc 8 "status with the audit service unreachable" env PHR_AUDIT_PORT=1 \
    "$PHRCTL" status --json
check "  it reports audit unreachable, the others ready" test \
    "$(jq_py '[j["ok"], j["services"]["audit"]["status"], j["services"]["auth"]["status"]]')" = \
    "[False, 'unreachable', 'ready']"

# ---- retention run ------------------------------------------------------------------
expect_rc 6 "retention run without --yes is refused" "$PHRCTL" retention run --json
# a patient with a record, withdrawn long enough ago to be due
PEMAIL=ctl-patient-$TAG@example.com
st=$(api POST /api/v1/auth/register "{\"email\":\"$PEMAIL\",\"password\":\"$PW\",
    \"name\":\"Ctl Patient\"}")
TOKEN=""
for ((i = 0; i < 30; i++)); do
    st=$(api POST /api/v1/auth/login "{\"email\":\"$PEMAIL\",\"password\":\"$PW\"}")
    [ "$st" = 429 ] || break
    sleep 1
done
[ "$st" = 200 ] && TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))
    ["token"])' "$TMP/body")
st=$(api POST /api/v1/me/records '{"type":"note","measured_at":"2026-01-05T07:30:00+09:00",
    "values":{"text":"ctl"},"note":"ctl"}' "$TOKEN")
check "a patient with a record (201)" test "$st" = 201
PID=$(adm phr_auth "SELECT id FROM accounts WHERE email = '$PEMAIL'")
adm phr_records "INSERT INTO withdrawals (patient_id, withdrawn_at, purge_after)
    VALUES ('$PID', now() - interval '400 days', now() - interval '1 day')" >/dev/null
expect_rc 0 "retention run --yes --json" "$PHRCTL" retention run --yes --json
check "  counts: the due patient and its record purged" test \
    "$(jq_py '[sorted(j), j["patients_purged"] >= 1, j["records_purged"] >= 1]')" = \
    "[['accounts_purged', 'audit', 'invitations_purged', 'notifications_wiped', 'patients_purged', 'records_purged'], True, True]"
check "  the patient's records are gone and the withdrawal marked purged" test \
    "$(adm phr_records "SELECT (SELECT count(*) FROM records WHERE patient_id = '$PID') || ':' ||
        (SELECT purged_at IS NOT NULL FROM withdrawals WHERE patient_id = '$PID')")" = "0:true"
check "  audited by the records service (records.patient.purge)" wait_ok phr_audit \
    "SELECT count(*) FROM audit_events WHERE action = 'records.patient.purge'
        AND target_id = '$PID'"
expect_rc 0 "retention run --yes (text), nothing more due" "$PHRCTL" retention run --yes
check "  prints the counts" grep -q "^retention run: 0 patients purged" "$TMP/out"
expect_rc 1 "retention run with the records service unreachable" env PHR_RECORDS_PORT=1 \
    "$PHRCTL" retention run --yes
finish
