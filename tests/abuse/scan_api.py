#!/usr/bin/python3
"""tests/abuse/scan_api.py - scanners against the API (issue 8, "Abuse and scanners").

    tests/abuse/scan_api.py [--only auth,ffuf,sqlmap] [-v]

Principals and real ids come from the authorization matrix's setup (tests/authz/run.py: an
operator, orgs X, Y, Z with admins, staff, patients A and B, records, groups, ...). Checks:

  auth    password and token checks of ../shared/reference/auth.md not already covered by
          tests/integration/test_auth*.c: account enumeration (register, login, reset request
          for an existing and an unknown e-mail: same status and the same body shape; the
          median times of --timing-tries tries each within --timing-bound ms of each other, a
          generous bound on a shared machine, not a benchmark), session token entropy (200
          logins: length, alphabet, no repeat, each position varies, characters spread), a
          client-supplied token never adopted (session fixation), reset token reuse refused.
          TOTP replay is tests/integration/test_auth_mfa.c's (not repeated here).
  ffuf    every id route (records, patients, groups, categories, invitations, staff, orgs) as
          patient A / staff of X / admin of X with the real ids of OTHER principals (patient
          B, orgs Y and Z, org Y's groups, staff, invitations, B's record) mixed with random
          UUIDs: every id answered (a broken connection is asked once more), none with 200.
  sqlmap  every public route with parameters (path ids, query parameters, JSON bodies; the
          route list generated from proto/*.yaml, principals from proto/authz-matrix.json),
          each parameter marked for injection: "nothing injectable" per route. Bounded time
          (about 5 minutes): boolean-blind and error-based techniques for PostgreSQL
          (--sqlmap-technique BE; time-based and union add minutes), level 1, risk 2,
          --sqlmap-jobs routes at once (deletions after the rest; session-ending routes one at a
          time, last).

Environment as tests/authz/run.py (PHR_TEST_GATEWAY, PHR_TEST_VAR, PHR_BUILD, PHR_TEST_PG_*,
PHR_TEST_REDIS_*, PHR_*_PORT). Needs sqlmap and ffuf (Debian; deploy/deps.sh).
Prints "N passed, N failed"; exit 1 on any failure.
"""

import argparse
import base64
import collections
import importlib.util
import json
import os
import pty
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_authz():
    sys.dont_write_bytecode = True  # no __pycache__ next to tests/authz/run.py
    spec = importlib.util.spec_from_file_location("authz_matrix",
                                                  os.path.join(ROOT, "tests", "authz", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


AZ = load_authz()


class Counter:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.lock = threading.Lock()

    def check(self, name, ok, detail=""):
        with self.lock:
            print("%s %s%s" % ("PASS" if ok else "FAIL", name, ": " + detail if detail else ""),
                  flush=True)
            if ok:
                self.passed += 1
            else:
                self.failed += 1


def body_shape(r):
    """The keys of a JSON body (values left out), or the raw status when it is not JSON."""
    if isinstance(r.json, dict):
        return sorted(k for k in r.json if k not in ("request_id", "instance"))
    return "non-json"


def timed_post(path, body):
    """POST through the gateway; (response, ms of the answered attempt). A 429 (the gateway's
    or the service's limiter) is waited out and not timed, so only real answers are compared."""
    cmd = ["curl", "-sS", "--http2", "--cacert", AZ.CA, "--max-time", "30", "-X", "POST",
           "-H", "Content-Type: application/json", "--data-binary", json.dumps(body),
           "-o", "-", "-w", "\n%{http_code} %{time_total}", AZ.GATEWAY + path]
    for _ in range(60):
        out = subprocess.run(cmd, capture_output=True).stdout.decode("utf-8", "replace")
        text, _, tail = out.rpartition("\n")
        code, _, secs = tail.partition(" ")
        if code != "429":
            break
        time.sleep(1)
    status = int(code) if code.isdigit() else 0
    return AZ.Resp(status, text), float(secs or 0) * 1000.0


# ---- auth: enumeration, entropy, fixation, reset reuse -------------------------------------

def enum_compare(c, label, known, unknown, tries, bound_ms):
    """Runs known()/unknown() alternately; same status, same body shape, close medians."""
    tk, tu, sk, su, bk, bu = [], [], set(), set(), set(), set()
    for _ in range(tries):
        r, ms = known()
        tk.append(ms)
        sk.add(r.status)
        bk.add(json.dumps(body_shape(r)))
        r, ms = unknown()
        tu.append(ms)
        su.add(r.status)
        bu.add(json.dumps(body_shape(r)))
    c.check("auth enumeration %s status" % label, sk == su and len(sk) == 1,
            "existing %s, unknown %s" % (sorted(sk), sorted(su)))
    c.check("auth enumeration %s body" % label, bk == bu and len(bk) == 1,
            "existing %s, unknown %s" % (sorted(bk), sorted(bu)))
    mk, mu = statistics.median(tk), statistics.median(tu)
    c.check("auth enumeration %s timing" % label, abs(mk - mu) <= bound_ms,
            "median %.1f ms existing vs %.1f ms unknown over %d tries each "
            "(bound %d ms, generous: a shared machine)" % (mk, mu, tries, bound_ms))


def check_auth(c, ctx, opts):
    api = AZ.api
    # Registration: an e-mail already taken answers like a new one (the owner is told by mail).
    taken = ctx["pat_a_mail"]

    def reg(mail):
        return lambda: timed_post("/api/v1/auth/register",
                                  {"email": mail, "password": AZ.PW, "name": "Scan Enum"})
    # Few tries: every unknown address creates an account.
    enum_compare(c, "register", reg(taken), lambda: reg(AZ.email("enum"))(),
                 max(5, opts.timing_tries // 3), opts.timing_bound)

    # Login with a wrong password: an existing account (kept below its lockout: a new account
    # every third try, all made before the timing) and an unknown address.
    mails = [AZ.make_patient(ctx)[0] for _ in range((opts.timing_tries + 2) // 3)]
    state = {"n": 0}

    def login_known():
        state["n"] += 1
        return timed_post("/api/v1/auth/login", {"email": mails[(state["n"] - 1) // 3],
                                                 "password": "Wrong-Password-123!"})
    enum_compare(c, "login", login_known,
                 lambda: timed_post("/api/v1/auth/login", {"email": AZ.email("nobody"),
                                                           "password": "Wrong-Password-123!"}),
                 opts.timing_tries, opts.timing_bound)

    # Password reset request: existing (one account each, made before the timing) vs unknown.
    n_reset = max(5, opts.timing_tries // 3)
    reset_mails = [AZ.make_patient(ctx)[0] for _ in range(n_reset)]
    enum_compare(c, "reset-request",
                 lambda: timed_post("/api/v1/auth/password-reset/request",
                                    {"email": reset_mails.pop()}),
                 lambda: timed_post("/api/v1/auth/password-reset/request",
                                    {"email": AZ.email("nobody")}),
                 n_reset, opts.timing_bound)

    # Session token entropy over 200 logins (several accounts, below the per-account limits).
    toks = []
    mail = None
    for i in range(opts.token_samples):
        if i % 40 == 0:
            mail = AZ.make_patient(ctx)[0]
        toks.append(AZ.login(mail, AZ.PW))
    lens = {len(t) for t in toks}
    alphabet = set("".join(toks))
    positions_fixed = [i for i in range(min(lens)) if len({t[i] for t in toks}) == 1]
    counts = {ch: "".join(toks).count(ch) for ch in alphabet}
    total = sum(counts.values())
    spread = max(counts.values()) / (total / len(alphabet))
    c.check("auth token entropy", len(set(toks)) == len(toks) and min(lens) >= 32 and
            len(alphabet) >= 32 and not positions_fixed and spread < 2.0,
            "%d tokens, %d distinct, length %s, %d distinct characters, fixed positions %s, "
            "most frequent character %.2fx the mean" % (
                len(toks), len(set(toks)), sorted(lens), len(alphabet), positions_fixed,
                spread))

    # Session fixation: a token the client makes up is refused, and a login that carries it
    # (as bearer or cookie) gets a new one; the made-up token stays refused.
    fixed = "F" * 43
    r = api("GET", "/api/v1/auth/session", None, fixed)
    mail = AZ.make_patient(ctx)[0]
    r2 = AZ.curl(AZ.GATEWAY + "/api/v1/auth/login", "POST",
                 json.dumps({"email": mail, "password": AZ.PW}),
                 ["Authorization: Bearer " + fixed, "Cookie: phr_session=" + fixed,
                  "X-Session-Token: " + fixed])
    r3 = api("GET", "/api/v1/auth/session", None, fixed)
    new = r2.get("token")
    c.check("auth session fixation", r.status == 401 and r2.status == 200 and new and
            new != fixed and fixed not in r2.body and r3.status == 401,
            "made-up token: %d; login carrying it: %d (%s); made-up token afterwards: %d" % (
                r.status, r2.status, "new token" if new and new != fixed else "no new token",
                r3.status))

    # Reset token reuse: the token from the e-mail works once.
    mail, pid, _ = AZ.make_patient(ctx)
    r = api("POST", "/api/v1/auth/password-reset/request", {"email": mail})
    token = None
    for _ in range(50):
        token = reset_token(pid)
        if token:
            break
        time.sleep(0.2)
    if not token:
        c.check("auth reset token reuse", False, "no reset token found for the account")
        return
    new_pw = "Scan-Reset-Pw-2026!x"
    r1 = api("POST", "/api/v1/auth/password-reset/confirm", {"token": token,
                                                              "new_password": new_pw})
    r2 = api("POST", "/api/v1/auth/password-reset/confirm", {"token": token,
                                                              "new_password": new_pw + "y"})
    r3 = api("POST", "/api/v1/auth/login", {"email": mail, "password": new_pw})
    c.check("auth reset token reuse", 200 <= r1.status < 300 and 400 <= r2.status < 500 and
            r3.status == 200, "first use %d, second use %d %s, login with the first new "
            "password %d" % (r1.status, r2.status, r2.get("code") or "", r3.status))


def reset_token(account_id):
    """The reset token of |account_id|: the reset_url of its password_reset e-mail (outbox)."""
    return AZ.psql("auth", "SELECT substring(body->'params'->>'reset_url' from 'token=([^&]+)')"
                   " FROM outbox WHERE body->>'kind' = 'password_reset' AND"
                   " body->'to'->>'account_id' = '%s' LIMIT 1" % account_id)


# ---- ffuf: other principals' ids ------------------------------------------------------------

FFUF_ROUTES = [
    # (principal, path with FUZZ, ctx keys of ids that are not the principal's)
    ("pat_a", "/api/v1/me/records/FUZZ", ["record_b"]),
    ("staff_x", "/api/v1/orgs/FUZZ/patients", ["org_y", "org_z"]),
    ("staff_x", "/api/v1/orgs/{org_x}/patients/FUZZ/records", ["pat_b"]),
    ("staff_x", "/api/v1/orgs/FUZZ/patients/{pat_a}/records", ["org_y"]),
    ("staff_x", "/api/v1/orgs/{org_x}/patients/FUZZ/records/summary?type=body_weight",
     ["pat_b"]),
    ("admin_x", "/api/v1/orgs/FUZZ", ["org_y", "org_z"]),
    ("admin_x", "/api/v1/orgs/FUZZ/staff", ["org_y", "org_z"]),
    ("admin_x", "/api/v1/orgs/FUZZ/groups", ["org_y"]),
    ("admin_x", "/api/v1/orgs/FUZZ/categories", ["org_y"]),
    ("admin_x", "/api/v1/orgs/FUZZ/invitations", ["org_y"]),
    ("admin_x", "/api/v1/orgs/FUZZ/audit-events", ["org_y", "org_z"]),
    ("admin_x", "/api/v1/orgs/FUZZ/incidents", ["org_y"]),
    ("admin_y", "/api/v1/orgs/{org_y}/patients/FUZZ/records", ["pat_a", "pat_b"]),
    ("pat_b", "/api/v1/me/records/FUZZ", ["record"]),
]


def check_ffuf(c, ctx, opts, work):
    ids = {k: ctx[k] for k in ("record", "record_b", "pat_a", "pat_b", "org_x", "org_y", "org_z",
                               "group_y", "category_y", "invitation_y", "victim_y")}
    rnd = random.Random(opts.seed)
    for principal, path, others in FFUF_ROUTES:
        path = re.sub(r"\{([a-z_]+)\}", lambda m: ctx[m.group(1)], path)
        words = [ctx[k] for k in others]
        # every other principal's id, whatever its kind, and random UUIDs
        words += [v for k, v in ids.items() if v not in words and v not in path and
                  not (principal == "pat_a" and k in ("record", "pat_a")) and
                  not (principal == "pat_b" and k in ("record_b", "pat_b")) and
                  not (principal.endswith("_x") and k in ("org_x", "pat_a")) and
                  not (principal.endswith("_y") and k == "org_y")]
        words += [str(uuid.UUID(int=rnd.getrandbits(128), version=4))
                  for _ in range(opts.ffuf_random)]
        token = ctx["tok"][principal]
        got, err = ffuf_sweep(AZ.GATEWAY + path, words, token, work)
        # a connection the machine's load broke is asked again, once, and said
        missing = [w for w in words if w not in got]
        if missing:
            again, err = ffuf_sweep(AZ.GATEWAY + path, missing, token, work)
            got.update(again)
        seen = collections.Counter(got.values())
        hits = [w for w, status in got.items() if status == 200]
        unanswered = [w for w in words if w not in got]
        c.check("ffuf %s %s" % (principal, path.replace(ctx.get("org_x"), "{org_x}")),
                not hits and not unanswered,
                "%d ids (%d of other principals), statuses %s, 200s: %s%s%s" % (
                    len(words), len(words) - opts.ffuf_random, dict(seen),
                    hits[:3] or "none",
                    "; %d asked twice" % len(missing) if missing else "",
                    "; %d never answered: %s" % (len(unanswered), err) if unanswered else ""))


def ffuf_sweep(url, words, token, work):
    """ffuf over |words| at |url| (FUZZ), every status matched: ({word: status}, ffuf's
    error text). ffuf 1.1 writes each result's input base64-encoded."""
    wl = os.path.join(work, "ids.txt")
    with open(wl, "w") as f:
        f.write("\n".join(words) + "\n")
    out = os.path.join(work, "ffuf.json")
    cmd = ["ffuf", "-s", "-u", url, "-w", wl, "-H", "Authorization: Bearer " + token,
           "-mc", "all", "-t", "4", "-timeout", "20", "-o", out, "-of", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    got = {}
    try:
        with open(out) as f:
            results = json.load(f).get("results", [])
    except (OSError, ValueError):
        results = []
    for res in results:
        word = res.get("input", {}).get("FUZZ", "")
        if word not in words:
            try:
                word = base64.b64decode(word).decode()
            except ValueError:
                pass
        got[word] = res["status"]
    return got, ("exit %d %s" % (p.returncode, p.stderr[-200:].strip())
                 if p.returncode != 0 else p.stderr[-200:].strip())


# ---- sqlmap: every route with parameters ------------------------------------------------------

PREFERRED = ["pat_a", "staff_x", "admin_x", "operator", "pat_b", "admin_y", "staff_y"]


def load_yaml(name):
    with open(os.path.join(ROOT, "proto", name)) as f:
        return AZ.yaml.safe_load(f)


def resolve(doc, node, docs):
    """Follows $ref (this file's or common.yaml's) until a plain node."""
    for _ in range(10):
        if not isinstance(node, dict) or "$ref" not in node:
            return node
        ref = node["$ref"]
        src, _, frag = ref.partition("#")
        d = docs[src.lstrip("./")] if src else doc
        if not src and not has_path(d, frag):
            d = docs["common.yaml"]  # a local ref inside something taken from common.yaml
        node = d
        for part in frag.strip("/").split("/"):
            node = node[part]
        doc = d
    return node


def has_path(doc, frag):
    node = doc
    for part in frag.strip("/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def example(doc, schema, docs, depth=0):
    """A plausible value of |schema| (its example, default, enum, or one by type/format)."""
    s = resolve(doc, schema, docs) or {}
    if depth > 4:
        return None
    for key in ("example", "default"):
        if key in s:
            return s[key]
    if s.get("enum"):
        return s["enum"][0]
    if "const" in s:
        return s["const"]
    t = s.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"][0]
    fmt = s.get("format", "")
    if t == "object" or "properties" in s:
        return {k: example(doc, v, docs, depth + 1) for k, v in (s.get("properties") or {}).items()}
    for comb in ("allOf", "oneOf", "anyOf"):
        if s.get(comb):
            return example(doc, s[comb][0], docs, depth + 1)
    if t == "array":
        return [example(doc, s.get("items", {}), docs, depth + 1)]
    if t == "integer":
        return int(s.get("minimum", 1))
    if t == "number":
        return float(s.get("minimum", 1.5))
    if t == "boolean":
        return True
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "email":
        return AZ.email("sqlmap")
    if fmt == "date-time":
        return "2026-01-05T00:30:00Z"
    if fmt == "date":
        return "2026-01-05"
    return "scan"


def sqlmap_routes(table, ctx):
    docs = {n: load_yaml(n) for n in ("common.yaml",)}
    entries = {e["op"]: e for e in table["operations"]}
    routes = []
    for svc in AZ.SERVICES:
        doc = load_yaml(svc + ".yaml")
        docs[svc + ".yaml"] = doc
        for path, item in (doc.get("paths") or {}).items():
            if path.startswith("/internal/"):
                continue
            for m, op in item.items():
                if m not in AZ.METHODS or op.get("x-phr-access") == "probe":
                    continue
                key = "%s %s %s" % (svc, m.upper(), path)
                e = entries.get(key)
                if e is None:
                    continue
                params = [resolve(doc, p, docs) for p in
                          (item.get("parameters") or []) + (op.get("parameters") or [])]
                query = [p for p in params if p.get("in") == "query"]
                body = None
                if "requestBody" in op:
                    rb = resolve(doc, op["requestBody"], docs)
                    sch = (rb.get("content", {}).get("application/json") or {}).get("schema")
                    body = example(doc, sch, docs) if sch else None
                    if isinstance(e.get("body"), dict) and isinstance(body, dict):
                        body.update(e["body"])
                    elif e.get("body") is not None:
                        body = e["body"]
                if "{" not in path and not query and body is None:
                    continue
                who = [p for p in PREFERRED if e["expect"].get(p) in ("ok", "2xx")]
                principal = who[0] if who else "anon"
                routes.append({"op": key, "method": m.upper(), "path": path, "entry": e,
                               "query": query, "body": body, "principal": principal,
                               "doc": doc})
    # reading routes first, then writes, then deletions; session-ending ones last
    rank = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}
    routes.sort(key=lambda r: (r["entry"].get("order", 0), rank[r["method"]]))
    return routes, docs


def mark_json(v):
    """Adds sqlmap's custom injection marker to every scalar of a JSON body."""
    if isinstance(v, dict):
        return {k: mark_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [mark_json(x) for x in v]
    if isinstance(v, str):
        return v + "*"
    return v


def request_file(route, ctx, tok, docs):
    e = route["entry"]
    p = AZ.params(ctx, e)
    fresh = e.get("fresh")
    if fresh:
        k, v = AZ.FRESH[fresh](ctx)
        p[k] = v
    path = re.sub(r"\{([a-z_]+)\}", lambda m: p[m.group(1)] + "*", route["path"])
    q = []
    for qp in route["query"]:
        val = example(route["doc"], qp.get("schema", {}), docs)
        if qp["name"] == "type":
            val = "body_weight"
        q.append("%s=%s*" % (qp["name"], val if not isinstance(val, bool) else "true"))
    if e.get("query"):
        q.append(e["query"].replace("&", "*&") + "*")
    if q:
        path += "?" + "&".join(q)
    body = ""
    if route["body"] is not None:
        b = route["body"]
        if isinstance(b, str):
            try:
                b = json.loads(b)
            except ValueError:
                pass
        body = json.dumps(mark_json(b)) if not isinstance(b, str) else b
    host = AZ.GATEWAY.split("://", 1)[1]
    lines = ["%s %s HTTP/1.1" % (route["method"], path), "Host: " + host,
             "Accept: application/json", "User-Agent: phr-scan-sqlmap"]
    if tok:
        lines.append("Authorization: Bearer " + tok)
    if route["body"] is not None:
        lines.append("Content-Type: application/json")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def sqlmap_token(route, ctx):
    """The principal's token; routes that end or change a session get a patient of their own."""
    if route["principal"] == "anon":
        return None
    if route["path"].startswith("/api/v1/auth/") or route["path"] == "/api/v1/me/deletion":
        if route["principal"] in ("pat_a", "pat_b"):
            return AZ.make_patient(ctx)[2]
    return ctx["tok"][route["principal"]]


def run_sqlmap(route, req, opts, work):
    d = tempfile.mkdtemp(dir=work, prefix="sqlmap-")
    rf = os.path.join(d, "request.txt")
    with open(rf, "w") as f:
        f.write(req)
    cmd = ["sqlmap", "-r", rf, "--force-ssl", "--batch", "--disable-coloring", "--flush-session",
           "--output-dir", d, "--dbms", "PostgreSQL", "--level", str(opts.sqlmap_level),
           "--risk", str(opts.sqlmap_risk), "--technique", opts.sqlmap_technique,
           "--timeout", "15", "--retries", "1", "--ignore-code", "400,401,403,404,409,413,422,429",
           "--answers", "custom injection marker=Y,JSON data=Y,process it=Y,keep testing=N",
           "--skip", "Host,User-Agent,Referer,Accept,Authorization,Content-Type"]
    t0 = time.monotonic()
    # sqlmap reads targets from a stdin that is not a terminal: give it a pseudo-terminal
    master, slave = pty.openpty()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.sqlmap_timeout,
                           stdin=slave)
        out = p.stdout + p.stderr
        rc = p.returncode
    except subprocess.TimeoutExpired as ex:
        out = (ex.stdout or b"").decode("utf-8", "replace") if isinstance(ex.stdout, bytes) \
            else (ex.stdout or "")
        rc = "timeout"
    finally:
        os.close(master)
        os.close(slave)
    secs = time.monotonic() - t0
    shutil.rmtree(d, ignore_errors=True)
    return out, rc, secs


def sqlmap_verdict(out, rc):
    # sqlmap's confirmed finding (a candidate it then discards as a false positive is not one)
    injectable = re.findall(r"Parameter: (.+)", out)
    tested = re.findall(r"testing if (.+?) parameter '([^']+)' is dynamic", out)
    points = len(set(tested))
    if "identified the following injection point" in out:
        return False, "INJECTABLE: %s" % sorted(set(injectable))
    if rc == "timeout":
        return False, "sqlmap timed out"
    clean = ("all tested parameters do not appear to be injectable" in out or
             "do not appear to be injectable" in out)
    if not clean:
        tail = [ln for ln in out.splitlines() if "[CRITICAL]" in ln or "[ERROR]" in ln]
        return False, "no verdict (exit %s): %s" % (rc, tail[-1][:200] if tail else out[-200:])
    return True, "%d injection point(s) tested, none injectable" % points


def check_sqlmap(c, ctx, opts, work):
    with open(os.path.join(ROOT, "proto", "authz-matrix.json")) as f:
        table = json.load(f)
    routes, docs = sqlmap_routes(table, ctx)
    if opts.routes:
        routes = [r for r in routes if re.search(opts.routes, r["op"])]
    print("  sqlmap: %d routes with parameters" % len(routes), flush=True)
    t_all = time.monotonic()
    lock = threading.Lock()
    queue = list(routes)
    # reads and writes in parallel, then deletions, then session-ending routes one at a time
    first = [r for r in queue if r["method"] != "DELETE" and not r["entry"].get("order")]
    deletes = [r for r in queue if r["method"] == "DELETE" and not r["entry"].get("order")]
    last = [r for r in queue if r not in first and r not in deletes]

    def worker(items):
        while True:
            with lock:
                if not items:
                    return
                route = items.pop(0)
                try:
                    tok = sqlmap_token(route, ctx)
                    req = request_file(route, ctx, tok, docs)
                except (RuntimeError, KeyError, ValueError, TypeError) as ex:
                    c.check("sqlmap %s" % route["op"], False, "request not built: %r" % ex)
                    continue
            out, rc, secs = run_sqlmap(route, req, opts, work)
            ok, detail = sqlmap_verdict(out, rc)
            if opts.log_dir:
                name = re.sub(r"[^A-Za-z0-9]+", "_", route["op"]).strip("_")
                with open(os.path.join(opts.log_dir, "sqlmap-%s.log" % name), "w") as f:
                    f.write(req + "\n\n" + out)
            c.check("sqlmap %s as %s" % (route["op"], route["principal"]), ok,
                    "%s (%.0f s)" % (detail, secs))

    for phase in (first, deletes):
        threads = [threading.Thread(target=worker, args=(phase,))
                   for _ in range(opts.sqlmap_jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    worker(last)
    print("  sqlmap: %d routes in %.0f s" % (len(routes), time.monotonic() - t_all), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="auth,ffuf,sqlmap")
    ap.add_argument("--timing-tries", type=int, default=30)
    ap.add_argument("--timing-bound", type=int, default=150,
                    help="ms between the medians of existing and unknown e-mails")
    ap.add_argument("--token-samples", type=int, default=200)
    ap.add_argument("--ffuf-random", type=int, default=40, help="random UUIDs per route")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--sqlmap-level", type=int, default=1)
    ap.add_argument("--sqlmap-risk", type=int, default=2)
    ap.add_argument("--sqlmap-technique", default="BE")
    ap.add_argument("--sqlmap-jobs", type=int, default=4)
    ap.add_argument("--sqlmap-timeout", type=int, default=240, help="seconds per route")
    ap.add_argument("--routes", default="", help="sqlmap: only ops matching this regex")
    ap.add_argument("--log-dir", default="", help="sqlmap: keep each route's request and output")
    opts = ap.parse_args()
    only = set(opts.only.split(","))
    for tool in ("ffuf", "sqlmap"):
        if tool in only and shutil.which(tool) is None:
            print("FAIL %s not installed (deploy/deps.sh)" % tool)
            print("0 passed, 1 failed")
            return 1
    c = Counter()
    try:
        ctx = AZ.setup()
    except (RuntimeError, KeyError, ValueError, subprocess.SubprocessError) as ex:
        print("FAIL setup: %s" % ex)
        print("0 passed, 1 failed")
        return 1
    work = tempfile.mkdtemp(prefix="phr-scan-")
    try:
        if "auth" in only:
            check_auth(c, ctx, opts)
        if "ffuf" in only:
            check_ffuf(c, ctx, opts, work)
        if "sqlmap" in only:
            check_sqlmap(c, ctx, opts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed or c.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
