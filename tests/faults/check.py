#!/usr/bin/python3
"""check.py - the invariants of one fault phase over the load client's log (tests/faults/run.sh).

    check.py --phase NAME --log FILE --since T0 --until T1 [--deadline S] [--no-failures]
             [--wait S] --pg-port P --secrets DIR --standin-port S

Prints one "ok   NAME: CHECK (details)" or "FAIL NAME: CHECK (details)" line per invariant;
exit status = number of failed checks. Over everything acknowledged since the load started:

  writes_in_db          every acknowledged record id (201) is a row of records.records;
  audit_events          every one of them has its records.create event in the audit database
                        (waits up to --wait seconds for the relays to catch up);
  notifications_once    every acknowledged e-mail (201 register -> email_verification, 202 reset
                        request -> password_reset) reached the provider stand-in exactly once,
                        and no address of the load got any kind of e-mail twice (also waits);
over the attempts that started in [T0, T1]:
  no_hang               no attempt took longer than the deadline;
  503_retry_after       every 503 carries Retry-After;
  no_failed_requests    (--no-failures) every attempt was answered 2xx.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import time
import urllib.request


def read_log(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def psql(args, svc, sql):
    with open(os.path.join(args.secrets, "pg_%s.password" % svc), encoding="utf-8") as f:
        pw = f.readline().strip()
    env = dict(os.environ, PGPASSWORD=pw, PGCONNECT_TIMEOUT="5")
    r = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(args.pg_port), "-U", "phr_" + svc, "-d", "phr_" + svc,
                        "-f", "-"], input=sql, env=env, capture_output=True, text=True,
                       timeout=30, check=False)
    if r.returncode != 0:
        raise RuntimeError("psql %s: %s" % (svc, r.stderr.strip()[:200]))
    return [x for x in r.stdout.splitlines() if x]


def id_values(ids):
    # ids come from our own log and are checked to be UUIDs before they reach SQL
    ok = [i for i in ids if len(i) == 36 and all(c in "0123456789abcdef-" for c in i)]
    return ",".join("('%s'::uuid)" % i for i in ok) or "(NULL::uuid)"


def missing_records(args, ids):
    if not ids:
        return []
    have = set(psql(args, "records", "SELECT r.id FROM (VALUES %s) v(id) JOIN records r "
                    "ON r.id = v.id;" % id_values(ids)))
    return [i for i in ids if i not in have]


def missing_events(args, ids):
    if not ids:
        return []
    have = set(psql(args, "audit", "SELECT DISTINCT e.target_id FROM audit_events e JOIN "
                    "(VALUES %s) v(id) ON e.target_id = v.id::text WHERE e.action = "
                    "'records.create' AND e.target_type = 'record';" % id_values(ids)))
    return [i for i in ids if i not in have]


def messages(args):
    url = "http://127.0.0.1:%d/__messages" % args.standin_port
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.load(r)
    if isinstance(data, dict):
        data = data.get("messages", [])
    count = collections.Counter()
    for m in data:
        kind = (m.get("custom_args") or {}).get("kind", "?")
        to = m.get("to")
        if isinstance(to, list):
            to = to[0] if to else ""
        if isinstance(to, dict):
            to = to.get("email", "")
        count[(str(to).lower(), kind)] += 1
    return count


def notif_problems(args, acked):
    count = messages(args)
    lost = [k for k in acked if count.get(k, 0) == 0]
    doubled = [k for k in acked if count.get(k, 0) > 1]
    doubled += [k for k, n in count.items()
                if n > 1 and k[0].startswith("faults-") and k not in acked]
    return lost, doubled


class Report:
    def __init__(self, phase):
        self.phase = phase
        self.failed = 0

    def check(self, name, ok, detail=""):
        print("%s %s: %s%s" % ("ok  " if ok else "FAIL", self.phase, name,
                               " (%s)" % detail if detail else ""), flush=True)
        if not ok:
            self.failed += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--since", type=float, required=True)
    ap.add_argument("--until", type=float, required=True)
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--no-failures", action="store_true")
    ap.add_argument("--wait", type=float, default=30.0)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--secrets", required=True)
    ap.add_argument("--standin-port", type=int, required=True)
    args = ap.parse_args()
    rep = Report(args.phase)
    log = read_log(args.log)

    rec_ids = [e["id"] for e in log if e.get("ev") == "ack" and e.get("kind") == "record"]
    new_ids = [e["id"] for e in log if e.get("ev") == "ack" and e.get("kind") == "record"
               and args.since <= e["t"] <= args.until]
    acked = {(e["to"].lower(), e["kind"]) for e in log
             if e.get("ev") == "ack" and e.get("kind") != "record"}
    deadline = time.monotonic() + args.wait

    try:
        miss = missing_records(args, rec_ids)
        rep.check("writes_in_db", not miss, "%d acknowledged, %d in this phase, %d missing%s"
                  % (len(rec_ids), len(new_ids), len(miss),
                     (": " + " ".join(miss[:5])) if miss else ""))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        rep.check("writes_in_db", False, str(e))
    try:
        while True:
            miss = missing_events(args, rec_ids)
            if not miss or time.monotonic() >= deadline:
                break
            time.sleep(1)
        rep.check("audit_events", not miss, "%d writes, %d without a records.create event%s"
                  % (len(rec_ids), len(miss), (": " + " ".join(miss[:5])) if miss else ""))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        rep.check("audit_events", False, str(e))
    try:
        while True:
            lost, doubled = notif_problems(args, acked)
            if (not lost and not doubled) or time.monotonic() >= deadline:
                break
            time.sleep(1)
        rep.check("notifications_once", not lost and not doubled and len(acked) > 0,
                  "%d acknowledged, %d not delivered, %d delivered more than once%s"
                  % (len(acked), len(lost), len(doubled),
                     (": " + " ".join("%s/%s" % k for k in (lost + doubled)[:4]))
                     if lost or doubled else ""))
    except OSError as e:
        rep.check("notifications_once", False, "stand-in: %s" % e)

    reqs = [e for e in log if e.get("ev") == "req" and args.since <= e["t"] <= args.until]
    status = collections.Counter(e["st"] for e in reqs)
    hung = [e for e in reqs if "deadline" in e.get("err", "") or e["dur"] > args.deadline]
    longest = max((e["dur"] for e in reqs), default=0.0)
    rep.check("no_hang", not hung and len(reqs) > 0,
              "%d attempts, longest %.2f s, statuses %s%s"
              % (len(reqs), longest, dict(sorted(status.items())),
                 ("; over the deadline: %s" % json.dumps(hung[:3])) if hung else ""))
    bare = [e for e in reqs if e["st"] == 503 and "ra" not in e]
    rep.check("503_retry_after", not bare, "%d 503s, %d without Retry-After"
              % (status.get(503, 0), len(bare)))
    if args.no_failures:
        bad = [e for e in reqs if not 200 <= e["st"] < 300]
        rep.check("no_failed_requests", not bad and len(reqs) > 0,
                  "%d attempts, %d failed%s" % (len(reqs), len(bad),
                                                (": " + json.dumps(bad[:3])) if bad else ""))
    return rep.failed


if __name__ == "__main__":
    sys.exit(main())
