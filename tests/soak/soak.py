#!/usr/bin/python3
"""soak.py - the soak of issue 8: a mixed load at half the measured maximum (tests/soak/run.sh).

    soak.py --gateway HOST:PORT --var DIR --pg-port P --standin-port S --build DIR
            [--seconds N] [--ramp-seconds N] [--levels "1 2 4 8 12"] [--patients N]
            [--notice-every S] [--warm-notices N] [--sample S]

Talks HTTP/2 over TLS to the gateway through tests/faults/load.py (its H2Client, Api and Patient,
one connection per worker thread; every attempt is a line of DIR/soak/requests.jsonl, every
acknowledged record write an "ack" line, as in the fault suite).

Seed: an operator (phrctl, password changed), an org with its admin and two staff members,
PATIENTS patients (addresses verified) with 10 records each, half of them linked to the org by
invitation, and four export patients with 50 records each that nobody writes to (so an export
costs the same at the end as at the start).

The mix (one operation = one pick by weight, by a worker that has a patient to itself):
  login 2 (a new session, then the old one logged out), write 20 (POST /me/records with an
  Idempotency-Key), read 25 (GET /me/records/{id}), list 25 (GET /me/records?limit=20),
  staff 15 (a staff member lists a linked patient's records), export 0.5 (GET /me/export of an
  export patient); and, outside the mix, an operator maintenance notice to all accounts every
  NOTICE_EVERY seconds (a fresh login first: notices need a login of the last 15 minutes),
  WARM_NOTICES (40) of them evenly in the first half of the warm-up.

1. Ramp: RAMP seconds at each concurrency of LEVELS (closed loop: each worker starts its next
   operation when the last one ends); the maximum is the best throughput (operations/s) of a
   level with < 1 % failed requests. The ramp stops early once a level is worse than the best.
2. Soak: SECONDS at half that rate (open loop: operation k starts at t0 + k / rate, whoever is
   free takes it) with twice the best level's workers.
3. Every SAMPLE seconds one row of DIR/soak/samples.csv: operations and requests of the last
   SAMPLE seconds, failed requests, latency p50/p99 (ms), VmRSS and its anonymous part
   (RssAnon, kB) of each service instance (pid files in DIR/run) and of the nginx workers
   (summed), the machine's 1-minute load average and the CPU time of the services and nginx
   workers per operation (when only the machine's other load slows requests down, the latter
   stays put), the outbox backlog of each service (rows with sent_at and dead_at NULL, as
   common/outbox.c counts them) and the notification queue (notifications queued or sending).

Definitions of the checks (S = SECONDS):
  warm-up             the first WARM = min(120, S / 3) seconds (long mode: 2 minutes; short
                      mode, S = 180: 1 minute, as the heaps of the services may still step up
                      in the first minute at a high rate);
  baseline span       [WARM, WARM + WIN), WIN = min(60, S / 6) (long mode: minutes 2-3; short
                      mode: seconds 60-90);
  zero_errors         every request of the soak (warm-up included) answered 2xx: a 4xx, a 5xx or
                      no answer before the 10 s deadline is an error (the mix expects none);
  rate_held           the soak ran at >= 95 % of its target rate;
  rss_drift.<inst>    mean VmRSS of the last 3 samples <= 1.05 x the mean of the samples in the
                      baseline span (only growth is drift); for the nginx workers VmRSS less
                      RssShmem: nginx's shared zones (TLS session cache, rate limit state;
                      10 MB each in deploy/nginx) fill up by design towards their fixed size,
                      touched by whichever worker, while a leak shows in the private part;
  p99_drift           p99 of the requests ending in the last WIN seconds <= 1.20 x the p99 of
                      those ending in the baseline span;
  backlog_flat.<q>    each outbox and the notification queue: the last sample is <= the
                      baseline span's highest sample + SLACK (25 rows + 10 %), and the backlog
                      did not grow monotonically: of the means of five equal parts of the
                      samples after the warm-up, not every one is above the one before with the
                      last more than 5 rows above the first;
  outbox_no_dead      no outbox row of any service was given up (dead_at set);
  notices_delivered   every notice is done with failed 0 and its subject reached the stand-in
                      at as many distinct addresses as it had recipients;
  writes_in_db, audit_events  (tests/faults/check.py) every acknowledged write is in the
                      records database and has its records.create audit event.

Prints one "ok <check>: detail" or "FAIL <check>: detail" line per check and a last line
"N passed, N failed"; exit status 1 on any failure. DIR/soak/summary.txt has the same lines
after the numbers of the run. Passwords and tokens are never written anywhere.
"""

import argparse
import collections
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in tests/faults
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "faults"))
import check  # noqa: E402  (tests/faults/check.py: psql, missing_records, missing_events)
import load  # noqa: E402  (tests/faults/load.py: H2Client, Api, Patient, log)

WEIGHTS = [("login", 2.0), ("write", 20.0), ("read", 25.0), ("list", 25.0), ("staff", 15.0),
           ("export", 0.5)]
SEED_RECORDS = 10
EXPORT_PATIENTS = 4
EXPORT_RECORDS = 50
PW = "Soak-Pw-7" + secrets.token_urlsafe(9)  # the policy wants a digit
RSS_MAX_DRIFT = 0.05
P99_MAX_DRIFT = 0.20
RATE_MIN = 0.95
SERVICES = ["auth", "records", "notification", "audit"]
QUEUES = ["outbox_%s" % s for s in SERVICES] + ["notification_queue"]


def die(msg):
    print("soak: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


def percentile(vals, q):
    if not vals:
        return 0.0
    s = sorted(vals)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def mean(vals):
    return sum(vals) / len(vals) if vals else 0.0


class Stats:
    """Every request's end time, duration and status, and every operation's end time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reqs = []  # (t_end, dur, status, kind)
        self.ops = []  # t_end

    def req(self, t_end, dur, st, kind):
        with self.lock:
            self.reqs.append((t_end, dur, st, kind))

    def op(self, t_end):
        with self.lock:
            self.ops.append(t_end)

    def between(self, a, b):
        with self.lock:
            reqs = [r for r in self.reqs if a <= r[0] < b]
            ops = sum(1 for t in self.ops if a <= t < b)
        return reqs, ops


STATS = Stats()


def ok_status(st):
    return 200 <= st < 300


class Api(load.Api):
    """load.Api (one H2 connection, a log line per attempt) that also feeds STATS."""

    def call(self, method, path, kind, body=None, token=None, key=None):
        m0 = time.monotonic()
        st, rh, obj = super().call(method, path, kind, body, token, key)
        STATS.req(time.monotonic(), time.monotonic() - m0, st, kind)
        return st, rh, obj


class Setup(Exception):
    pass


def need(cond, what, st=None):
    if not cond:
        raise Setup(what + ("" if st is None else " (status %s)" % st))


def login(api, mail, pw):
    st, _, obj = api.call("POST", "/api/v1/auth/login", "login", {"email": mail, "password": pw})
    need(st == 200 and obj.get("token"), "login " + mail, st)
    return obj["token"]


def change_pw(api, token, old):
    st, _, _ = api.call("POST", "/api/v1/auth/password", "password",
                        {"current_password": old, "new_password": PW}, token)
    need(st == 204, "password change", st)


def onboarding_pw(args, account_id):
    for _ in range(50):
        rows = check.psql(args, "auth", "SELECT body->'params'->>'initial_password' FROM outbox "
                          "WHERE topic = 'notification' AND body->>'kind' = 'staff_onboarding' "
                          "AND body->'to'->>'account_id' = '%s' LIMIT 1;" % account_id)
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise Setup("no onboarding password for a new staff account")


def new_email(tag):
    return "soak-%s-%s@example.jp" % (tag, secrets.token_hex(5))


class Operator:
    def __init__(self, args, api):
        self.api = api
        self.email = new_email("op")
        env = dict(os.environ, PHR_SECRETS_DIR=args.secrets, PHR_PG_HOST="127.0.0.1",
                   PHR_PG_PORT=str(args.pg_port))
        p = subprocess.run([os.path.join(args.build, "bin", "phrctl"), "operator", "create",
                            "--email", self.email, "--name", "Soak Operator", "--json"],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
        need(p.returncode == 0, "phrctl operator create: " + p.stderr.strip()[:200])
        initial = json.loads(p.stdout.splitlines()[0])["initial_password"]
        self.token = login(api, self.email, initial)
        change_pw(api, self.token, initial)

    def relogin(self):
        """A fresh session (notices need a login of the last 15 minutes); the old one ends."""
        old = self.token
        self.token = login(self.api, self.email, PW)
        self.api.call("POST", "/api/v1/auth/logout", "logout", token=old)


class Patient(load.Patient):
    """load.Patient with the soak's password and the ids of its records."""

    def __init__(self, api, n):
        super().__init__(api, n)
        self.email = new_email("p%d" % n)
        self.password = PW
        self.records = []
        self.lock = threading.Lock()


def record_body():
    return {"type": "body_weight", "measured_at": "2026-11-20T07:30:00+09:00",
            "values": {"value": round(50 + random.random() * 30, 1)}}


def write_record(api, p):
    """One acknowledged record write (an "ack" line as load.py writes them), or None."""
    key = "soak-%s" % secrets.token_hex(8)
    st, _, obj = api.call("POST", "/api/v1/me/records", "record.create", record_body(), p.token,
                          key)
    if st == 201 and obj.get("id"):
        load.log({"ev": "ack", "t": round(time.time(), 3), "kind": "record", "id": obj["id"],
                  "patient": p.id})
        p.records.append(obj["id"])
        return obj["id"]
    return None


class World:
    """The seeded principals, handed out one patient per operation."""

    def __init__(self, args):
        self.args = args
        api = Api(args)
        self.api = api
        self.op = Operator(args, api)
        admin_mail = new_email("adm")
        st, _, obj = api.call("POST", "/api/v1/admin/orgs", "org.create",
                              {"name": "Soak Clinic", "seat_limit": 10,
                               "admin_email": admin_mail, "admin_name": "Soak Admin",
                               "admin_locale": "en"}, self.op.token)
        need(st == 201 and obj.get("id"), "create the org", st)
        self.org = obj["id"]
        pw = onboarding_pw(args, obj["admin_account_id"])
        self.admin = login(api, admin_mail, pw)
        change_pw(api, self.admin, pw)
        self.staff = []
        for _ in range(2):
            mail = new_email("staff")
            st, _, obj = api.call("POST", "/api/v1/orgs/%s/staff" % self.org, "staff.create",
                                  {"email": mail, "name": "Soak Staff", "role": "staff"},
                                  self.admin)
            need(st == 201 and obj.get("id"), "add a staff member", st)
            pw = onboarding_pw(args, obj["id"])
            tok = login(api, mail, pw)
            change_pw(api, tok, pw)
            self.staff.append(tok)
        self.patients = [self.patient(i, SEED_RECORDS) for i in range(args.patients)]
        self.linked = []
        for p in self.patients[::2]:
            st, _, obj = api.call("POST", "/api/v1/orgs/%s/invitations" % self.org, "invite",
                                  None, self.admin)
            need(st == 201 and obj.get("code"), "invite", st)
            st, _, _ = api.call("POST", "/api/v1/me/links", "link", {"code": obj["code"]},
                                p.token)
            need(st == 201, "accept an invitation", st)
            self.linked.append(p.id)
        self.exporters = [self.patient(1000 + i, EXPORT_RECORDS) for i in range(EXPORT_PATIENTS)]
        self.free = list(self.patients)
        self.free_exp = list(self.exporters)
        self.cv = threading.Condition()

    def patient(self, n, records):
        p = Patient(self.api, n)
        need(p.register(), "register a patient")
        # verified before the first login (a link needs it; the e-mail round trip is not
        # under test here)
        check.psql(self.args, "auth", "UPDATE accounts SET email_verified_at = now() WHERE "
                   "email = '%s';" % p.email)
        need(p.login() and p.id, "log in a patient")
        for _ in range(records):
            need(write_record(self.api, p) is not None, "seed a record")
        return p

    def take(self, export):
        pool = self.free_exp if export else self.free
        with self.cv:
            while not pool:
                self.cv.wait()
            return pool.pop(random.randrange(len(pool)))

    def give(self, p, export):
        with self.cv:
            (self.free_exp if export else self.free).append(p)
            self.cv.notify()


def pick():
    total = sum(w for _, w in WEIGHTS)
    x = random.random() * total
    for name, w in WEIGHTS:
        x -= w
        if x < 0:
            return name
    return WEIGHTS[-1][0]


def run_op(api, world, name):
    """One operation of the mix as one worker (its own connection)."""
    export = name == "export"
    p = world.take(export)
    try:
        if name == "login":
            old = p.token
            st, _, obj = api.call("POST", "/api/v1/auth/login", "login",
                                  {"email": p.email, "password": p.password})
            if st == 200 and obj.get("token"):
                p.token = obj["token"]
                api.call("POST", "/api/v1/auth/logout", "logout", token=old)
        elif name == "write":
            write_record(api, p)
        elif name == "read":
            api.call("GET", "/api/v1/me/records/" + random.choice(p.records), "record.read",
                     token=p.token)
        elif name == "list":
            api.call("GET", "/api/v1/me/records?limit=20", "record.list", token=p.token)
        elif name == "staff":
            api.call("GET", "/api/v1/orgs/%s/patients/%s/records?limit=20"
                     % (world.org, random.choice(world.linked)), "staff.list",
                     token=random.choice(world.staff))
        elif name == "export":
            api.call("GET", "/api/v1/me/export", "export", token=p.token)
    finally:
        world.give(p, export)
    STATS.op(time.monotonic())


# ---- ramp and soak ----------------------------------------------------------------------------


def closed_loop(args, world, conc, seconds):
    """|conc| workers back to back for |seconds|: (ops/s, requests, failed requests)."""
    stop = threading.Event()

    def worker():
        api = Api(args)
        while not stop.is_set():
            run_op(api, world, pick())
        api.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(seconds)
    t1 = time.monotonic()
    stop.set()
    for t in threads:
        t.join(timeout=args.deadline + 5)
    reqs, ops = STATS.between(t0, t1)
    failed = sum(1 for r in reqs if not ok_status(r[2]))
    return ops / (t1 - t0), len(reqs), failed, percentile([r[1] for r in reqs], 99)


def ramp(args, world, out):
    best = None
    with open(os.path.join(out, "ramp.csv"), "w", encoding="utf-8") as f:
        f.write("concurrency,ops_per_s,requests,failed,p99_ms\n")
        for conc in args.levels:
            rate, n, failed, p99 = closed_loop(args, world, conc, args.ramp_seconds)
            f.write("%d,%.2f,%d,%d,%.1f\n" % (conc, rate, n, failed, p99 * 1000))
            f.flush()
            good = n > 0 and failed * 100 < n
            print("ramp: concurrency %2d: %7.1f ops/s, %d requests, %d failed, p99 %.0f ms%s"
                  % (conc, rate, n, failed, p99 * 1000, "" if good else " (>= 1 % failed)"),
                  flush=True)
            if good and (best is None or rate > best[1]):
                best = (conc, rate)
            elif best is not None:
                break  # past the knee: more concurrency no longer helps
    if best is None:
        die("no level of the ramp had < 1 % failed requests")
    return best


def open_loop(args, world, workers, rate, seconds, t0):
    """Operation k starts at t0 + k / rate, taken by whichever of |workers| is free."""
    lock = threading.Lock()
    state = {"k": 0, "late": 0}
    t_end = t0 + seconds

    def worker():
        api = Api(args)
        while True:
            with lock:
                k = state["k"]
                state["k"] += 1
            at = t0 + k / rate
            if at >= t_end:
                break
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                with lock:
                    state["late"] += 1
            run_op(api, world, pick())
        api.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["late"]


def notices(args, world, stop, sent):
    """A maintenance notice to all accounts every NOTICE_EVERY s until |stop|; in the first
    half of the warm-up WARM_NOTICES of them in quick succession, so that the notification
    service's heap has reached its high-water mark before the RSS baseline (glibc keeps the
    freed fan-out memory: about +0.9 MB over the first 60-100 notices, flat after them)."""
    api = Api(args)
    op = world.op
    op.api = api
    warm = min(120.0, args.seconds / 3)
    gaps = [warm / 2 / args.warm_notices] * args.warm_notices if args.warm_notices else []
    while not stop.wait(gaps.pop() if gaps else args.notice_every):
        try:
            op.relogin()
        except Setup:
            continue  # the failed login is counted as an error by STATS
        subject = "soak maintenance %s" % secrets.token_hex(6)
        st, _, obj = api.call("POST", "/api/v1/admin/notices", "notice.create",
                              {"subject_ja": subject, "body_ja": "メンテナンスのお知らせ",
                               "subject_en": subject, "body_en": "Maintenance tonight",
                               "audience": "all"}, op.token, "soak-" + secrets.token_hex(8))
        if st == 202 and obj.get("id"):
            sent.append((obj["id"], subject))
    api.close()


# ---- samples ----------------------------------------------------------------------------------


def pid_file(var, name):
    try:
        with open(os.path.join(var, "run", name + ".pid"), encoding="ascii") as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def rss_kb(pid, key="VmRSS:"):
    try:
        with open("/proc/%d/status" % pid, encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def instances(var):
    """{instance: pid} of the services (records, records-2, ...), from the pid files."""
    out = {}
    for name in sorted(os.listdir(os.path.join(var, "run"))):
        base = name[:-4] if name.endswith(".pid") else None
        if base and base.split("-")[0] in SERVICES:
            pid = pid_file(var, base)
            if pid:
                out[base] = pid
    return out


def cpu_ticks(pid):
    """utime + stime of |pid| in clock ticks (0 when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def load1():
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def nginx_workers(var):
    master = pid_file(var, "nginx")
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d, encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if master is not None and int(fields[1]) == master:
                pids.append(int(d))
    return pids


def backlogs(args):
    out = {}
    for s in SERVICES:
        try:
            out["outbox_" + s] = int(check.psql(args, s, "SELECT count(*) FROM outbox WHERE "
                                                "sent_at IS NULL AND dead_at IS NULL;")[0])
        except (RuntimeError, subprocess.TimeoutExpired, IndexError):
            out["outbox_" + s] = -1
    try:
        out["notification_queue"] = int(check.psql(
            args, "notification", "SELECT count(*) FROM notifications WHERE status IN "
            "('queued', 'sending');")[0])
    except (RuntimeError, subprocess.TimeoutExpired, IndexError):
        out["notification_queue"] = -1
    return out


class Sampler(threading.Thread):
    def __init__(self, args, t0, path, insts):
        super().__init__(daemon=True)
        self.args, self.t0, self.path, self.insts = args, t0, path, insts
        self.stop = threading.Event()
        self.rows = []

    def run(self):
        cols = (["t", "ops_per_s", "requests", "failed", "p50_ms", "p99_ms", "load1",
                 "cpu_ms_per_op"]
                + ["rss_kb_" + i for i in self.insts] + ["rss_kb_nginx_workers"]
                + ["anon_kb_" + i for i in self.insts] + ["anon_kb_nginx_workers"]
                + ["shm_kb_nginx_workers"] + QUEUES)
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(",".join(cols) + "\n")
            k = 1
            hz = os.sysconf("SC_CLK_TCK")
            cpu0 = None
            while not self.stop.wait(max(0.0, self.t0 + k * self.args.sample
                                         - time.monotonic())):
                t = self.t0 + k * self.args.sample
                reqs, ops = STATS.between(t - self.args.sample, t)
                durs = [r[1] for r in reqs]
                row = {"t": k * self.args.sample, "ops_per_s": ops / self.args.sample,
                       "requests": len(reqs),
                       "failed": sum(1 for r in reqs if not ok_status(r[2])),
                       "p50_ms": percentile(durs, 50) * 1000,
                       "p99_ms": percentile(durs, 99) * 1000}
                ngx = nginx_workers(self.args.var)
                cpu = sum(cpu_ticks(p) for p in list(self.insts.values()) + ngx) * 1000.0 / hz
                # CPU time of the services and nginx per operation: it stays put when only
                # the machine's other load slows the requests down
                row["load1"] = load1()
                row["cpu_ms_per_op"] = (cpu - cpu0) / ops if cpu0 is not None and ops else 0.0
                cpu0 = cpu
                for i, pid in self.insts.items():
                    row["rss_kb_" + i] = rss_kb(pid)
                    row["anon_kb_" + i] = rss_kb(pid, "RssAnon:")
                row["rss_kb_nginx_workers"] = sum(rss_kb(p) or 0 for p in ngx)
                row["anon_kb_nginx_workers"] = sum(rss_kb(p, "RssAnon:") or 0 for p in ngx)
                row["shm_kb_nginx_workers"] = sum(rss_kb(p, "RssShmem:") or 0 for p in ngx)
                row.update(backlogs(self.args))
                self.rows.append(row)
                f.write(",".join(("%.1f" % row[c]) if isinstance(row[c], float)
                                 else str(row[c]) for c in cols) + "\n")
                f.flush()
                k += 1


# ---- checks -----------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.lines = []
        self.failed = 0

    def check(self, name, ok, detail):
        self.lines.append("%s %s: %s" % ("ok" if ok else "FAIL", name, detail))
        print(self.lines[-1], flush=True)
        if not ok:
            self.failed += 1


def notices_reached(args, api, token, sent, wait):
    """(problems, done): notices not done, with failures, or short of their recipients."""
    deadline = time.monotonic() + wait
    while True:
        problems = []
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/__messages" % args.standin_port,
                                        timeout=60) as r:
                msgs = json.load(r)
        except (OSError, ValueError) as e:
            msgs = []
            problems.append("stand-in: %s" % e)
        to_by_tag = collections.defaultdict(set)
        for m in msgs:
            to = m.get("to")
            if isinstance(to, list):
                to = to[0] if to else ""
            if isinstance(to, dict):
                to = to.get("email", "")
            subject = str(m.get("subject", ""))  # the template prefixes the notice's subject
            if "soak maintenance " in subject:
                to_by_tag[subject.rsplit(" ", 1)[-1]].add(str(to).lower())
        for nid, subject in sent:
            st, _, obj = api.call("GET", "/api/v1/admin/notices/" + nid, "notice.get",
                                  token=token)
            c = obj.get("counts") or {}
            got = len(to_by_tag.get(subject.rsplit(" ", 1)[-1], ()))
            if st != 200 or obj.get("status") != "done" or c.get("failed") != 0 or \
                    got < c.get("recipients", 1) or c.get("recipients", 0) == 0:
                problems.append("%s: %s, %s, %d at the stand-in" % (nid[:8], obj.get("status"),
                                                                   json.dumps(c), got))
        if not problems or time.monotonic() >= deadline:
            return problems, len(sent) - len(problems)
        time.sleep(2)


def checks(args, world, sampler, t0, t_end, target, notice_sent):
    rep = Report()
    S = t_end - t0
    warm = min(120.0, S / 3)
    win = min(60.0, S / 6)
    reqs, ops = STATS.between(t0, t_end + args.deadline + 1)
    bad = collections.Counter((r[3], r[2]) for r in reqs if not ok_status(r[2]))
    rep.check("zero_errors", not bad and len(reqs) > 0,
              "%d requests, %d failed%s" % (len(reqs), sum(bad.values()),
                                            (" " + json.dumps({"%s %s" % k: n for k, n in
                                                               bad.most_common(6)}))
                                            if bad else ""))
    achieved = ops / S
    rep.check("rate_held", achieved >= RATE_MIN * target,
              "%.1f ops/s achieved of %.1f targeted" % (achieved, target))

    rows = sampler.rows
    base = [r for r in rows if warm < r["t"] <= warm + win]
    last3 = rows[-3:]
    summary = {"base_samples": len(base), "rss": {}, "p99_ms": {}, "backlog": {}}
    for inst in list(sampler.insts) + ["nginx_workers"]:

        def private(r, inst=inst):
            v = r["rss_kb_" + inst]
            return v - r.get("shm_kb_" + inst, 0) if v else None

        b = mean([private(r) for r in base if private(r)])
        e = mean([private(r) for r in last3 if private(r)])
        drift = (e - b) / b if b else float("inf")
        ab = mean([r["anon_kb_" + inst] for r in base if r["anon_kb_" + inst]])
        ae = mean([r["anon_kb_" + inst] for r in last3 if r["anon_kb_" + inst]])
        summary["rss"][inst] = (b, e, drift, ab, ae)
        # the anonymous part (heap) tells a leak from code pages faulted in late
        shm = ""
        if base and "shm_kb_" + inst in base[0]:
            shm = "; VmRSS less the shared zones' %.0f -> %.0f kB" % (
                mean([r["shm_kb_" + inst] for r in base]),
                mean([r["shm_kb_" + inst] for r in last3]))
        rep.check("rss_drift." + inst, b > 0 and len(last3) == 3 and drift <= RSS_MAX_DRIFT,
                  "%.0f kB after the warm-up -> %.0f kB at the end (%+.1f %%, limit +%.0f %%; "
                  "anonymous %.0f -> %.0f kB%s)"
                  % (b, e, drift * 100, RSS_MAX_DRIFT * 100, ab, ae, shm))

    first, _ = STATS.between(t0 + warm, t0 + warm + win)
    last, _ = STATS.between(t_end - win, t_end)
    p1 = percentile([r[1] for r in first], 99) * 1000
    p2 = percentile([r[1] for r in last], 99) * 1000
    summary["p99_ms"] = (p1, p2, percentile([r[1] for r in first], 50) * 1000,
                         percentile([r[1] for r in last], 50) * 1000)
    lastw = [r for r in rows if r["t"] > S - win]
    summary["machine"] = (mean([r["load1"] for r in base]), mean([r["load1"] for r in lastw]),
                          mean([r["cpu_ms_per_op"] for r in base]),
                          mean([r["cpu_ms_per_op"] for r in lastw]))
    rep.check("p99_drift", p1 > 0 and len(last) > 0 and p2 <= p1 * (1 + P99_MAX_DRIFT),
              "p99 %.1f ms in seconds %.0f-%.0f (%d requests) -> %.1f ms in the last %.0f s "
              "(%d requests) (%+.1f %%, limit +%.0f %%)"
              % (p1, warm, warm + win, len(first), p2, win, len(last),
                 (p2 / p1 - 1) * 100 if p1 else 0, P99_MAX_DRIFT * 100))

    after = [r for r in rows if r["t"] > warm]
    for q in QUEUES:
        vals = [r[q] for r in after]
        bmax = max([r[q] for r in base] or [0])
        slack = 25 + 0.1 * bmax
        parts = [vals[i * len(vals) // 5:(i + 1) * len(vals) // 5] for i in range(5)]
        means = [mean(p) for p in parts if p]
        growing = (len(means) == 5 and all(means[i + 1] > means[i] for i in range(4))
                   and means[-1] - means[0] > 5)
        summary["backlog"][q] = (bmax, vals[-1] if vals else None, max(vals or [0]))
        rep.check("backlog_flat." + q, bool(vals) and min(vals) >= 0 and not growing
                  and vals[-1] <= bmax + slack,
                  "warm-up max %d, last %s, max %d, part means %s"
                  % (bmax, vals[-1] if vals else "-", max(vals or [0]),
                     "/".join("%.1f" % m for m in means)))

    dead = {}
    for s in SERVICES:
        try:
            dead[s] = int(check.psql(args, s, "SELECT count(*) FROM outbox WHERE dead_at IS "
                                     "NOT NULL;")[0])
        except (RuntimeError, subprocess.TimeoutExpired, IndexError) as e:
            dead[s] = str(e)[:80]
    rep.check("outbox_no_dead", all(v == 0 for v in dead.values()), json.dumps(dead))

    api = Api(args)
    problems, good = notices_reached(args, api, world.op.token, notice_sent, 120)
    rep.check("notices_delivered", not problems and len(notice_sent) > 0,
              "%d notices sent, %d delivered to every account%s"
              % (len(notice_sent), good, ("; " + "; ".join(problems[:3])) if problems else ""))
    api.close()

    acked = []
    with open(args.log, encoding="utf-8") as f:
        for line in f:
            if '"ack"' in line:
                e = json.loads(line)
                if e.get("kind") == "record":
                    acked.append(e["id"])
    try:
        miss = check.missing_records(args, acked)
        rep.check("writes_in_db", not miss, "%d acknowledged writes, %d missing"
                  % (len(acked), len(miss)))
        deadline = time.monotonic() + 60
        while True:
            miss = check.missing_events(args, acked)
            if not miss or time.monotonic() >= deadline:
                break
            time.sleep(2)
        rep.check("audit_events", not miss, "%d writes, %d without a records.create event"
                  % (len(acked), len(miss)))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        rep.check("writes_in_db", False, str(e)[:200])
    return rep, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--var", required=True)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--standin-port", type=int, required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--ramp-seconds", type=float, default=20)
    ap.add_argument("--levels", default="1 2 4 8 12 16")
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--notice-every", type=float, default=60)
    ap.add_argument("--warm-notices", type=int, default=40)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--deadline", type=float, default=10.0)
    args = ap.parse_args()
    args.levels = [int(x) for x in args.levels.split()]
    args.secrets = os.path.join(args.var, "secrets")
    out = os.path.join(args.var, "soak")
    os.makedirs(out, exist_ok=True)
    args.log = os.path.join(out, "requests.jsonl")
    load.LOG_FILE = open(args.log, "w", encoding="utf-8")
    if max(args.levels) > args.patients:
        die("more workers than patients")

    t_setup = time.monotonic()
    try:
        world = World(args)
    except Setup as e:
        die("setup: %s" % e)
    print("seeded: an operator, an org with an admin and %d staff, %d patients (%d linked) with "
          "%d records, %d export patients with %d records (%.0f s)"
          % (len(world.staff), len(world.patients), len(world.linked), SEED_RECORDS,
             len(world.exporters), EXPORT_RECORDS, time.monotonic() - t_setup), flush=True)

    conc, best = ramp(args, world, out)
    target = best / 2
    workers = min(args.patients, max(4, 2 * conc))
    print("maximum: %.1f ops/s at concurrency %d; soak at %.1f ops/s with %d workers for %.0f s"
          % (best, conc, target, workers, args.seconds), flush=True)

    t0 = time.monotonic()
    insts = instances(args.var)
    sampler = Sampler(args, t0, os.path.join(out, "samples.csv"), insts)
    sampler.start()
    stop = threading.Event()
    sent = []
    nt = threading.Thread(target=notices, args=(args, world, stop, sent), daemon=True)
    nt.start()
    late = open_loop(args, world, workers, target, args.seconds, t0)
    t_end = t0 + args.seconds
    time.sleep(max(0.0, t_end + 0.5 - time.monotonic()))
    stop.set()
    nt.join(timeout=args.deadline * 3)
    sampler.stop.set()
    sampler.join(timeout=30)
    if late:
        print("soak: %d operations started more than 1 s late" % late, flush=True)

    rep, summ = checks(args, world, sampler, t0, t_end, target, sent)
    head = ["soak of %.0f s: maximum %.1f ops/s (concurrency %d, ramp %.0f s per level), "
            "soak at %.1f ops/s with %d workers; %d samples, %d notices"
            % (args.seconds, best, conc, args.ramp_seconds, target, workers, len(sampler.rows),
               len(sent))]
    p1, p2, m1, m2 = summ["p99_ms"]
    head.append("latency after the warm-up: p50 %.1f ms, p99 %.1f ms; at the end: p50 %.1f ms, "
                "p99 %.1f ms" % (m1, p1, m2, p2))
    la, lb, ca, cb = summ["machine"]
    head.append("machine load (1-min average) %.1f -> %.1f; CPU of the services and nginx per "
                "operation %.2f ms -> %.2f ms (the same spans)" % (la, lb, ca, cb))
    for inst, (b, e, d, ab, ae) in summ["rss"].items():
        head.append("rss %-14s %8.0f kB -> %8.0f kB (%+.1f %%; anonymous %.0f -> %.0f kB)"
                    % (inst, b, e, d * 100, ab, ae))
    for q, (bmax, lastv, mx) in summ["backlog"].items():
        head.append("backlog %-20s warm-up max %s, last %s, max %s" % (q, bmax, lastv, mx))
    tail = "%d passed, %d failed" % (len(rep.lines) - rep.failed, rep.failed)
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(head + rep.lines + [tail]) + "\n")
    print("\n".join(head), flush=True)
    print(tail, flush=True)
    load.LOG_FILE.close()
    return 1 if rep.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a broken run, not a failed check: exit 2 (run.sh prints the count)
        import traceback
        traceback.print_exc()
        sys.exit(2)
