#!/usr/bin/env bash
# tests/compose/check.sh - validate docker-compose.yml (CI; no container engine needed).
#
# 1. `docker-compose -f docker-compose.yml config -q` (Debian's docker-compose 1.29) must pass,
#    with the default settings and with the documented env file.
# 2. Structural checks on the resolved config: every long-running service has a health check,
#    restart unless-stopped, init and a 15 s stop grace period (the one-shot jobs secrets-init,
#    migrate and ops: restart "no"); only the gateway publishes a port, on 127.0.0.1:8443; the
#    named volumes exist; the files the compose file and the Dockerfile refer to exist; the shell
#    scripts parse.
# 3. The backups service: deploy/compose/Dockerfile.backups (phrctl, PostgreSQL 15 client tools,
#    backup-loop.sh as entrypoint), PHR_BACKUP_KEEP 35, the backups volume at PHR_BACKUP_DIR, the
#    full secret set (backup_key_v1, superuser password) read-only, health from the loop's
#    last success; the loop runs `phrctl backup run` daily at a valid PHR_BACKUP_AT.
# 4. The migrate job (one-shot, like secrets-init and ops): deploy/compose/audit-migrate.sh in the
#    backups image runs `phrctl migrate audit` as the superuser (PHR_PG_ADMIN without password);
#    the audit service waits for it (service_completed_successfully); postgres-init.sh creates
#    phr_audit_owner, the owner of the audit tables.
# Exit status 0 when everything passes, 1 otherwise.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fail=0
bad() {
    echo "compose check: FAIL: $*" >&2
    fail=1
}

if ! command -v docker-compose >/dev/null 2>&1; then
    echo "compose check: docker-compose not installed (apt-get install docker-compose)" >&2
    exit 1
fi

# A clean environment: a developer's PHR_* or COMPOSE_* variables must not change the result.
run_compose() {
    env -i PATH="$PATH" HOME="${HOME:-/root}" "$@"
}

if ! run_compose docker-compose -f docker-compose.yml config -q; then
    bad "docker-compose config -q"
fi
if ! run_compose PHR_ENV_FILE=deploy/compose/phr.env.example \
        docker-compose -f docker-compose.yml config -q; then
    bad "docker-compose config -q with PHR_ENV_FILE"
fi

resolved=$(run_compose docker-compose -f docker-compose.yml config 2>/dev/null) || {
    bad "docker-compose config"
    resolved=""
}

if [ -n "$resolved" ]; then
    if ! printf '%s\n' "$resolved" | python3 -c '
import re, sys, yaml
cfg = yaml.safe_load(sys.stdin)
svcs = cfg.get("services", {})
errs = []
want = {"secrets-init", "postgres", "redis", "auth", "records", "notification", "audit",
        "gateway", "backups", "migrate"}
missing = want - set(svcs)
if missing:
    errs.append("missing services: %s" % sorted(missing))
b = svcs.get("backups", {})
benv = b.get("environment", {})
if b.get("build", {}).get("dockerfile") != "deploy/compose/Dockerfile.backups":
    errs.append("backups: not built from deploy/compose/Dockerfile.backups")
for k, v in (("PHR_BACKUP_KEEP", "35"), ("PHR_BACKUP_DIR", "/backups"),
             ("PHR_SECRETS_DIR", "/run/secrets/phr"), ("PHR_BACKUP_PG_HOST", "postgres"),
             ("TZ", "Asia/Tokyo")):
    if str(benv.get(k)) != v:
        errs.append("backups: %s is %r, want %r" % (k, benv.get(k), v))
if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", str(benv.get("PHR_BACKUP_AT"))):
    errs.append("backups: PHR_BACKUP_AT is not HH:MM")
mounts = {(v.get("source"), v.get("target"), bool(v.get("read_only"))) if isinstance(v, dict)
          else tuple(v.split(":")[:2]) + (v.endswith(":ro"),) for v in b.get("volumes", [])}
for m in (("backups", "/backups", False), ("secrets", "/run/secrets", True)):
    if m not in mounts:
        errs.append("backups: volume %s not mounted at %s%s" % (m[0], m[1],
                    " read-only" if m[2] else ""))
if "--health" not in " ".join(b.get("healthcheck", {}).get("test", [])):
    errs.append("backups: the health check is not backup-loop.sh --health")
m = svcs.get("migrate", {})
menv = m.get("environment", {})
if m.get("build", {}).get("dockerfile") != "deploy/compose/Dockerfile.backups":
    errs.append("migrate: not built from deploy/compose/Dockerfile.backups")
if m.get("entrypoint") != ["/bin/bash", "/usr/local/lib/phr/audit-migrate.sh"]:
    errs.append("migrate: entrypoint is not audit-migrate.sh")
admin = str(menv.get("PHR_PG_ADMIN")).split()
if str(menv.get("PHR_SECRETS_DIR")) != "/run/secrets/phr" or "host=postgres" not in admin \
        or "user=postgres" not in admin:
    errs.append("migrate: PHR_SECRETS_DIR / PHR_PG_ADMIN (the superuser at postgres) not set")
if "password" in str(menv.get("PHR_PG_ADMIN")):
    errs.append("migrate: a password in PHR_PG_ADMIN")
mdeps = m.get("depends_on", {})
if not isinstance(mdeps, dict) or "postgres" not in mdeps:
    errs.append("migrate does not wait for postgres")
adeps = svcs.get("audit", {}).get("depends_on", {})
if not isinstance(adeps, dict) or "migrate" not in adeps:
    errs.append("audit does not wait for migrate")
adir = svcs.get("audit", {}).get("environment", {}).get("PHR_AUDIT_ARCHIVE_DIR")
avols = [v.split(":")[:2] for v in svcs.get("audit", {}).get("volumes", []) if isinstance(v, str)]
if not adir or [n for n, t in avols if t == adir and n in (cfg.get("volumes") or {})] == []:
    errs.append("audit: PHR_AUDIT_ARCHIVE_DIR is not on a named volume")
for name, s in svcs.items():
    if name != "gateway" and s.get("ports"):
        errs.append("%s publishes ports" % name)
    if name in ("secrets-init", "ops", "migrate"):  # one-shot jobs
        if s.get("restart") != "no":
            errs.append("%s: restart is not \"no\"" % name)
        continue
    if not s.get("healthcheck", {}).get("test"):
        errs.append("%s has no healthcheck" % name)
    if s.get("restart") != "unless-stopped":
        errs.append("%s: restart is not unless-stopped" % name)
    if s.get("init") is not True:
        errs.append("%s: init is not true" % name)
    if str(s.get("stop_grace_period")) not in ("15s",):
        errs.append("%s: stop_grace_period is not 15s" % name)
    deps = s.get("depends_on", {})
    if not isinstance(deps, dict) or "secrets-init" not in deps and name != "gateway":
        errs.append("%s does not wait for secrets-init" % name)
    for dep, cond in (deps.items() if isinstance(deps, dict) else []):
        c = cond.get("condition")
        if dep in ("secrets-init", "migrate"):
            ok = c == "service_completed_successfully"
        else:
            ok = c == "service_healthy"
        if not ok:
            errs.append("%s: depends_on %s has condition %s" % (name, dep, c))
ports = svcs.get("gateway", {}).get("ports", [])
flat = [p if isinstance(p, str) else
        "%s:%s:%s" % (p.get("host_ip"), p.get("published"), p.get("target")) for p in ports]
if [f[:-4] if f.endswith("/tcp") else f for f in flat] != ["127.0.0.1:8443:8443"]:
    errs.append("gateway ports are %s, want 127.0.0.1:8443:8443" % flat)
for v in ("pgdata", "redisdata", "secrets", "tls", "backups"):
    if v not in cfg.get("volumes", {}):
        errs.append("volume %s missing" % v)
for svc in ("auth", "records", "notification", "audit"):
    env = svcs.get(svc, {}).get("environment", {})
    for k in ("PHR_LISTEN_HOST", "PHR_AUTH_PORT", "PHR_RECORDS_PORT", "PHR_NOTIFICATION_PORT",
              "PHR_AUDIT_PORT", "PHR_AUTH_HOST", "PHR_RECORDS_HOST", "PHR_NOTIFICATION_HOST",
              "PHR_AUDIT_HOST", "PHR_PG_HOST", "PHR_PG_PORT", "PHR_REDIS_HOST",
              "PHR_REDIS_PORT", "PHR_SECRETS_DIR"):
        if k not in env:
            errs.append("%s: %s not set" % (svc, k))
    if svcs.get(svc, {}).get("build", {}).get("target") != svc:
        errs.append("%s: build target is not %s" % (svc, svc))
for e in errs:
    print("compose check: FAIL: " + e, file=sys.stderr)
sys.exit(1 if errs else 0)
'; then
        fail=1
    fi
fi

# Files the compose file and the Dockerfile use.
for f in deploy/Dockerfile deploy/compose/postgres-init.sh deploy/compose/redis-start.sh \
        deploy/compose/secrets-init.sh deploy/compose/gateway-entrypoint.sh \
        deploy/compose/phr.env.example deploy/gen-secrets.sh deploy/gen-tls.sh \
        deploy/nginx/render.sh deploy/nginx/nginx.conf.tmpl; do
    [ -f "$f" ] || bad "missing $f"
done
for target in secrets-init gateway builder runtime auth records notification audit; do
    grep -Eq "^FROM .* AS $target\$" deploy/Dockerfile || bad "Dockerfile has no stage $target"
done
grep -Eq '^ARG BASE_IMAGE=debian:bookworm-slim$' deploy/Dockerfile \
    || bad "Dockerfile: BASE_IMAGE must default to debian:bookworm-slim"
grep -q '^ENTRYPOINT \["/bin/bash", "/usr/local/lib/phr/backup-loop.sh"\]$' \
    deploy/compose/Dockerfile.backups || bad "Dockerfile.backups: entrypoint is not backup-loop.sh"
for w in postgresql-client-15 /usr/local/bin/phrctl deploy/compose/backup-loop.sh \
        deploy/compose/audit-migrate.sh; do
    grep -q -- "$w" deploy/compose/Dockerfile.backups || bad "Dockerfile.backups: no $w"
done
grep -q '^    if phrctl migrate audit; then$' deploy/compose/audit-migrate.sh \
    || bad "audit-migrate.sh does not run phrctl migrate audit"
grep -q "CREATE ROLE phr_audit_owner NOLOGIN" deploy/compose/postgres-init.sh \
    || bad "postgres-init.sh does not create the audit owner role phr_audit_owner"
grep -q '^    if phrctl backup run --json; then$' deploy/compose/backup-loop.sh &&
    grep -q 'date -d "tomorrow $at"' deploy/compose/backup-loop.sh ||
    bad "backup-loop.sh does not run phrctl backup run daily"
for s in deploy/compose/*.sh; do
    bash -n "$s" || bad "$s does not parse"
done

if [ "$fail" -ne 0 ]; then
    echo "compose check: FAILED" >&2
    exit 1
fi
echo "compose check: ok"
