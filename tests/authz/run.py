#!/usr/bin/python3
"""tests/authz/run.py - the authorization matrix of issue 8.

Every operation of proto/{auth,records,notification,audit}.yaml x every principal -> the status
class written in proto/authz-matrix.json (the one table; see its "_doc"). A proto operation
without an entry fails, an entry without a proto operation fails, and every cell is one check.

Public routes go through the gateway (HTTP/2 over TLS, curl --http2); /internal/v1 routes and the
probes go straight to the service ports (h2c prior knowledge), and once through the gateway (404).

Principals are made through the real API: an operator (phrctl operator create), orgs X, Y, Z
with their admins, staff of X and Y, patients A (linked to X and Z by invitation) and B, a patient
whose session is past its absolute expiry (the Redis session record rewritten), and staff of X
still on the initial password (must_change). Path parameters are filled with real ids.

Environment (as tests/run.sh sets it): PHR_TEST_GATEWAY, PHR_TEST_VAR, PHR_BUILD,
PHR_TEST_PG_HOST/PORT, PHR_TEST_REDIS_HOST/PORT/PASSWORD and
PHR_{AUTH,RECORDS,NOTIFICATION,AUDIT}_PORT.
Prints "N passed, N failed"; exit status 1 on any failure. Option -v prints every cell.
"""

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid

try:
    import yaml
except ImportError:  # python3-yaml (Debian) is part of the build dependencies
    print("authz: python3-yaml is required")
    print("0 passed, 1 failed")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ["auth", "records", "notification", "audit"]
METHODS = ["get", "post", "put", "patch", "delete"]
PW = "Authz-Matrix-Pw-2026!"
VERBOSE = "-v" in sys.argv[1:]


def env(name, default=None):
    v = os.environ.get(name, default)
    if v is None:
        raise SystemExit("authz: %s is not set" % name)
    return v


GATEWAY = env("PHR_TEST_GATEWAY").rstrip("/")
VAR = env("PHR_TEST_VAR")
CA = os.path.join(VAR, "tls", "server.crt")
DEFAULT_PORTS = {"auth": "9101", "records": "9102", "notification": "9103", "audit": "9104"}
PORTS = {s: env("PHR_%s_PORT" % s.upper(), DEFAULT_PORTS[s]) for s in SERVICES}


class Resp:
    def __init__(self, status, body):
        self.status = status
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def get(self, key):
        return self.json.get(key) if isinstance(self.json, dict) else None


def curl(url, method, body=None, headers=(), ctype="application/json", direct=False):
    cmd = ["curl", "-sS", "--max-time", "30", "-X", method, "-o", "-", "-w", "\n%{http_code}"]
    if direct:
        cmd.append("--http2-prior-knowledge")
    else:
        cmd += ["--http2", "--cacert", CA]
    for h in headers:
        cmd += ["-H", h]
    data = None
    if body is not None:
        cmd += ["-H", "Content-Type: " + ctype, "--data-binary", "@-"]
        data = body.encode()
    cmd.append(url)
    for _ in range(60):
        p = subprocess.run(cmd, input=data, capture_output=True)
        out = p.stdout.decode("utf-8", "replace")
        text, _, code = out.rpartition("\n")
        status = int(code) if code.isdigit() else 0
        if status != 429:
            return Resp(status, text)
        time.sleep(1)
    return Resp(status, text)


def api(method, path, body=None, token=None, headers=()):
    h = list(headers)
    if token is not None:
        h.append("Authorization: Bearer " + token)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    return curl(GATEWAY + path, method, body, h)


def internal(service, method, path, body=None, caller=None, cred=None):
    h = []
    if caller is not None:
        h += ["x-phr-caller: " + caller, "x-phr-credential: " + cred]
    url = "http://127.0.0.1:%s%s" % (PORTS[service], path)
    return curl(url, method, body, h, direct=True)


def secret(name):
    with open(os.path.join(VAR, "secrets", name)) as f:
        return f.read().strip()


def psql(db, sql):
    e = dict(os.environ, PGPASSWORD=secret("pg_%s.password" % db))
    p = subprocess.run(["psql", "-X", "-q", "-h", env("PHR_TEST_PG_HOST", "127.0.0.1"), "-p",
                        env("PHR_TEST_PG_PORT"), "-U", "phr_" + db, "-d", "phr_" + db, "-tA",
                        "-c", sql], env=e, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("psql: " + p.stderr.strip())
    return p.stdout.strip()


def redis(*args):
    cmd = ["redis-cli", "--no-auth-warning", "-h", env("PHR_TEST_REDIS_HOST", "127.0.0.1"), "-p",
           env("PHR_TEST_REDIS_PORT"), "-a", secret("redis.password")] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("redis-cli: " + p.stderr.strip())
    return p.stdout.rstrip("\n")


def need(cond, what, r=None):
    if not cond:
        extra = " (%s %.300s)" % (r.status, r.body) if r is not None else ""
        raise RuntimeError(what + extra)


_n = [0]


def email(tag):
    _n[0] += 1
    return "authz-%s-%d-%d-%d@example.com" % (tag, int(time.time()), os.getpid(), _n[0])


# ---- principals ---------------------------------------------------------------------------


def login(mail, pw):
    r = api("POST", "/api/v1/auth/login", {"email": mail, "password": pw})
    need(r.status == 200 and r.get("token"), "login " + mail, r)
    return r.get("token")


def change_pw(token, old):
    r = api("POST", "/api/v1/auth/password", {"current_password": old, "new_password": PW},
            token)
    need(r.status == 204, "password change", r)


def onboarding_pw(account_id):
    return psql("auth", "SELECT body->'params'->>'initial_password' FROM outbox WHERE topic = "
                "'notification' AND body->>'kind' = 'staff_onboarding' AND "
                "body->'to'->>'account_id' = '%s' ORDER BY 1 LIMIT 1" % account_id)


def make_operator(ctx):
    mail = email("op")
    e = dict(os.environ, PHR_SECRETS_DIR=os.path.join(VAR, "secrets"),
             PHR_PG_HOST=env("PHR_TEST_PG_HOST", "127.0.0.1"), PHR_PG_PORT=env("PHR_TEST_PG_PORT"))
    build = os.environ.get("PHR_BUILD") or "build"
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    p = subprocess.run([os.path.join(build, "bin", "phrctl"), "operator", "create", "--email", mail,
                        "--name", "Authz Operator", "--json"],
                       env=e, capture_output=True, text=True)
    need(p.returncode == 0, "phrctl operator create: " + p.stderr.strip())
    pw = json.loads(p.stdout.splitlines()[0])["initial_password"]
    tok = login(mail, pw)
    change_pw(tok, pw)
    ctx["tok"]["operator"] = tok


def make_org(ctx, key):
    mail = email("adm" + key)
    r = api("POST", "/api/v1/admin/orgs",
            {"name": "Authz Clinic " + key.upper(), "seat_limit": 60, "admin_email": mail,
             "admin_name": "Admin " + key.upper(), "admin_locale": "en"}, ctx["tok"]["operator"])
    need(r.status == 201, "create org " + key, r)
    ctx["org_" + key] = r.get("id")
    pw = onboarding_pw(r.get("admin_account_id"))
    tok = login(mail, pw)
    change_pw(tok, pw)
    ctx["admin_tok_" + key] = tok


def add_staff(ctx, org, admin_tok, role="staff"):
    mail = email("staff")
    r = api("POST", "/api/v1/orgs/%s/staff" % org,
            {"email": mail, "name": "Authz Staff", "role": role}, admin_tok)
    need(r.status == 201, "add staff", r)
    return mail, r.get("id")


def staff_login(ctx, org, admin_tok, change=True):
    mail, sid = add_staff(ctx, org, admin_tok)
    pw = onboarding_pw(sid)
    tok = login(mail, pw)
    if change:
        change_pw(tok, pw)
    return tok, sid


def make_patient(ctx):
    mail = email("pat")
    r = api("POST", "/api/v1/auth/register", {"email": mail, "password": PW, "name": "Authz Pat"})
    need(r.status == 201, "register", r)
    pid = r.get("id")
    psql("auth", "UPDATE accounts SET email_verified_at = now() WHERE id = '%s'" % pid)
    return mail, pid, login(mail, PW)


def link(ctx, org, admin_tok, pat_tok):
    r = api("POST", "/api/v1/orgs/%s/invitations" % org, None, admin_tok)
    need(r.status == 201, "invite", r)
    r = api("POST", "/api/v1/me/links", {"code": r.get("code")}, pat_tok)
    need(r.status == 201, "accept invitation", r)


def expire_session(token):
    key = "phr:sess:" + hashlib.sha256(token.encode()).hexdigest()
    rec = json.loads(redis("GET", key))
    past = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=9))) -
            datetime.timedelta(hours=1)).isoformat(timespec="milliseconds")
    rec["absolute_expires_at"] = past
    rec["idle_expires_at"] = past
    ttl = redis("TTL", key)
    redis("SET", key, json.dumps(rec, separators=(",", ":")), "EX", ttl if int(ttl) > 0 else "600")


def setup():
    ctx = {"tok": {}}
    tok = ctx["tok"]
    make_operator(ctx)
    for k in ("x", "y", "z"):
        make_org(ctx, k)
    tok["admin_x"], tok["admin_y"] = ctx["admin_tok_x"], ctx["admin_tok_y"]
    tok["staff_x"], ctx["staff_x_id"] = staff_login(ctx, ctx["org_x"], tok["admin_x"])
    tok["staff_y"], _ = staff_login(ctx, ctx["org_y"], tok["admin_y"])
    tok["must_change"], _ = staff_login(ctx, ctx["org_x"], tok["admin_x"], change=False)
    ctx["pat_a_mail"], ctx["pat_a"], tok["pat_a"] = make_patient(ctx)
    _, ctx["pat_b"], tok["pat_b"] = make_patient(ctx)
    _, _, tok["expired"] = make_patient(ctx)
    expire_session(tok["expired"])
    link(ctx, ctx["org_x"], tok["admin_x"], tok["pat_a"])
    link(ctx, ctx["org_z"], ctx["admin_tok_z"], tok["pat_a"])
    # fixtures every row may use
    ctx["record"] = new_record(ctx)
    ctx["group"] = new_label(ctx, "groups")
    ctx["category"] = new_label(ctx, "categories")
    ctx["invitation"] = new_invitation(ctx)
    ctx["victim"] = add_staff(ctx, ctx["org_x"], tok["admin_x"])[1]
    # the same kinds of things in org Y, for the "another org's id" variants
    ctx["victim_y"] = add_staff(ctx, ctx["org_y"], tok["admin_y"])[1]
    ctx["group_y"] = new_label(ctx, "groups", "y")
    ctx["category_y"] = new_label(ctx, "categories", "y")
    ctx["invitation_y"] = new_invitation(ctx, "y")
    ctx["record_b"] = new_record(ctx, "pat_b")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30))
    r = api("POST", "/api/v1/admin/notices",
            {"subject_ja": "authz", "body_ja": "authz", "audience": "org_admins",
             "send_at": later.strftime("%Y-%m-%dT%H:%M:%SZ")}, tok["operator"])
    need(r.status == 202 and r.get("id"), "notice", r)
    ctx["notice"] = r.get("id")
    r = api("POST", "/api/v1/admin/incidents",
            {"title": "authz", "description": "authz", "org_ids": [ctx["org_x"]],
             "detected_at": "2026-01-01T00:00:00Z"}, tok["operator"])
    need(r.status in (201, 202) and r.get("id"), "incident", r)
    ctx["incident"] = r.get("id")
    jst = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=9)))
    first = jst.replace(day=1) - datetime.timedelta(days=1)
    ctx["month"] = first.strftime("%Y-%m")
    ctx["session"] = new_session(ctx)
    for _ in range(50):  # an onboarding e-mail relayed from auth's outbox
        ctx["notification"] = psql("notification", "SELECT id FROM notifications ORDER BY "
                                   "created_at DESC LIMIT 1")
        if ctx["notification"]:
            break
        time.sleep(0.2)
    need(ctx["notification"], "a notification id")
    return ctx


def new_record(ctx, who="pat_a"):
    r = api("POST", "/api/v1/me/records",
            {"type": "body_weight", "measured_at": "2026-01-05T00:30:00Z",
             "values": {"value": 70.25}}, ctx["tok"][who])
    need(r.status == 201, "record", r)
    return r.get("id")


def new_label(ctx, kind, org="x"):
    r = api("POST", "/api/v1/orgs/%s/%s" % (ctx["org_" + org], kind),
            {"name": "authz %s" % uuid.uuid4().hex[:12], "description": "d"},
            ctx["tok"]["admin_" + org])
    need(r.status == 201, kind, r)
    return r.get("id")


def new_member(ctx, kind):
    lid = new_label(ctx, kind)
    r = api("PUT", "/api/v1/orgs/%s/%s/%s/patients/%s" % (ctx["org_x"], kind, lid, ctx["pat_a"]),
            None, ctx["tok"]["admin_x"])
    need(200 <= r.status < 300, kind + " member", r)
    return lid


def new_invitation(ctx, org="x"):
    r = api("POST", "/api/v1/orgs/%s/invitations" % ctx["org_" + org], None,
            ctx["tok"]["admin_" + org])
    need(r.status == 201, "invitation", r)
    return r.get("id")


def new_session(ctx):
    """A second session of patient A (its id), so that A's own token survives."""
    t = login(ctx["pat_a_mail"], PW)
    r = api("GET", "/api/v1/auth/session", None, t)
    need(r.status == 200 and r.get("session_id"), "session", r)
    return r.get("session_id")


FRESH = {
    "record": lambda c: ("record_id", new_record(c)),
    "group": lambda c: ("group_id", new_label(c, "groups")),
    "category": lambda c: ("category_id", new_label(c, "categories")),
    "group_member": lambda c: ("group_id", new_member(c, "groups")),
    "category_member": lambda c: ("category_id", new_member(c, "categories")),
    "invitation": lambda c: ("invitation_id", new_invitation(c)),
    "staff": lambda c: ("account_id", add_staff(c, c["org_x"], c["tok"]["admin_x"])[1]),
    "session": lambda c: ("session_id", new_session(c)),
}


def params(ctx, entry):
    p = {
        "org_id": ctx["org_x"], "patient_id": ctx["pat_a"], "record_id": ctx["record"],
        "group_id": ctx["group"], "category_id": ctx["category"],
        "invitation_id": ctx["invitation"], "account_id": ctx["victim"],
        "notice_id": ctx["notice"], "incident_id": ctx["incident"], "month": ctx["month"],
        "session_id": ctx["session"], "notification_id": ctx["notification"],
    }
    for k, v in entry.get("params", {}).items():
        # "@name" refers to a context value (org_z, pat_b, ...), "uuid" to a random id
        p[k] = ctx[v[1:]] if v.startswith("@") else (str(uuid.uuid4()) if v == "uuid" else v)
    return p


# ---- the contract and the table -------------------------------------------------------------


def proto_ops():
    ops = {}
    for svc in SERVICES:
        with open(os.path.join(ROOT, "proto", svc + ".yaml")) as f:
            doc = yaml.safe_load(f)
        for path, item in (doc.get("paths") or {}).items():
            for m, op in item.items():
                if m in METHODS:
                    ops["%s %s %s" % (svc, m.upper(), path)] = op
    return ops


def matches(expect, r):
    """1 when response |r| is of the class |expect|."""
    st = r.status
    if expect == "ok":  # authorized: 2xx, or a 4xx about the request itself
        return 200 <= st < 300 or (400 <= st < 500 and st not in (401, 403, 404, 405))
    if expect == "2xx":
        return 200 <= st < 300
    if expect == "deny":
        return st in (401, 403, 404)
    if expect == "any-but-2xx":
        return not 200 <= st < 300 and st != 0
    status, _, code = expect.partition(":")
    if str(st) != status:
        return False
    return not code or r.get("code") == code


def run_cell(ctx, svc, method, path, entry, principal, expect):
    p = params(ctx, entry)
    fresh = entry.get("fresh")
    if fresh and expect in ("ok", "2xx"):
        k, v = FRESH[fresh](ctx)
        p[k] = v
    url = re.sub(r"\{([a-z_]+)\}", lambda m: p[m.group(1)], path)
    if entry.get("query"):
        url += "?" + entry["query"]
    body = entry.get("body")
    if body is None and entry["has_body"]:
        body = "{}"
    elif body is not None and not isinstance(body, str):
        body = json.dumps(body)
    if path.startswith("/internal/") or entry["probe"]:
        if principal == "via_gateway":
            return curl(GATEWAY + url, method, body)
        if principal == "none":
            return internal(svc, method, url, body)
        if principal == "bad_cred":
            who = entry.get("as", {}).get("allowed") or "records"
            return internal(svc, method, url, body, who, "x" * 43)
        who = entry["as"][principal]
        return internal(svc, method, url, body, who, secret("svc_%s.key" % who))
    tok = None if principal == "anon" else ctx["tok"][principal]
    return api(method, url, body, tok)


def main():
    with open(os.path.join(ROOT, "proto", "authz-matrix.json")) as f:
        table = json.load(f)
    ops = proto_ops()
    passed = failed = 0
    entries = {}
    for e in table["operations"]:
        if e["op"] in entries:
            print("FAIL duplicate table entry: " + e["op"])
            failed += 1
        entries[e["op"]] = e
    for k in sorted(set(ops) - set(entries)):
        print("FAIL no authz-matrix entry for proto operation: " + k)
        failed += 1
    for k in sorted(set(entries) - set(ops)):
        print("FAIL authz-matrix entry without a proto operation: " + k)
        failed += 1
    for k, e in entries.items():
        if k not in ops:
            continue
        op = ops[k]
        e["probe"] = op.get("x-phr-access") == "probe"
        e["has_body"] = "requestBody" in op
        internal_route = k.split(" ", 2)[2].startswith("/internal/") or e["probe"]
        want = table["internal_principals"] if internal_route else table["principals"]
        if e["probe"]:
            want = ["none", "via_gateway"]
        if sorted(want) != sorted(e["expect"]):
            print("FAIL %s: cells %s, want one for each of %s" % (k, sorted(e["expect"]), want))
            failed += 1
    try:
        ctx = setup()
    except (RuntimeError, KeyError, ValueError, subprocess.SubprocessError) as ex:
        print("FAIL setup: %s" % ex)
        print("%d passed, %d failed" % (passed, failed + 1))
        return 1
    runs = []
    for e in sorted((e for k, e in entries.items() if k in ops), key=lambda e: e.get("order", 0)):
        runs.append((e["op"], e))
        # variants: the same route with other ids (another org's, an unlinked patient's)
        for v in e.get("variants", []):
            bad = set(v["expect"]) - set(e["expect"])
            if bad:
                print("FAIL %s [%s]: unknown principals %s" % (e["op"], v["name"], sorted(bad)))
                failed += 1
                continue
            merged = dict(e, params=dict(e.get("params", {}), **v.get("params", {})),
                          expect=v["expect"])
            runs.append(("%s [%s]" % (e["op"], v["name"]), merged))
    for label, e in runs:
        svc, method, path = e["op"].split(" ", 2)
        # refused principals first, so that an allowed change cannot hide a refusal
        cells = sorted(e["expect"].items(), key=lambda kv: kv[1] in ("ok", "2xx"))
        for principal, expect in cells:
            if expect == "n/a":
                continue
            try:
                r = run_cell(ctx, svc, method, path, e, principal, expect)
            except (RuntimeError, KeyError) as ex:
                print("FAIL %s as %s: %s" % (label, principal, ex))
                failed += 1
                continue
            if matches(expect, r):
                passed += 1
                if VERBOSE:
                    print("ok   %s as %s: %d %s" %
                          (label, principal, r.status, r.get("code") or ""))
            else:
                failed += 1
                print("FAIL %s as %s: want %s, got %d %s" %
                      (label, principal, expect, r.status, r.get("code") or r.body[:120]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
