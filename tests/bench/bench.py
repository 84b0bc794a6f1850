#!/usr/bin/python3
"""bench.py - helpers for tests/bench/run.sh (Debian python3, standard library only).

  bench.py check RESULTS CASE SUBJECT ROUND PREFIX
      Parse one run: the h2load invocations PREFIX.segK.out (stdout) and PREFIX.segK.tsv
      (--log-file: one line per request: start time in microseconds since the epoch, HTTP
      status, microseconds to the end of the response), K = 1, 2, ... Fails (exit 1) unless
      every request finished with a 2xx status. req/s = requests done / summed "finished
      in" times; p50/p99 (nearest rank) over all requests. Appends one JSON line {case,
      subject, round, rps, p50_us, p99_us, n} to RESULTS and prints a one-line summary.
  bench.py rate PREFIX
      Check a run like `check` and print its req/s as an integer (for sizing runs).
  bench.py rss PHASE RUN_DIR OUT_JSON SERVICE...
      Read VmRSS and VmHWM (KiB) of each service (pid in RUN_DIR/<service>.pid) from
      /proc/PID/status and store them under PHASE ("idle" or "load") in OUT_JSON.
  bench.py curlcfg KIND URL N ACCOUNTS DIR
      Write DIR/register-NNN.json and DIR/login-NNN.json request bodies for accounts
      1..ACCOUNTS and a curl config DIR/KIND-N.cfg of N POSTs to URL cycling through them (HTTP/2,
      output discarded, one "status seconds" line per request on stderr); print its path.
  bench.py curlcheck RESULTS CASE SUBJECT ROUND OUT T0 T1 STATUS N
      Check the lines of a curl_run: every one has STATUS. N >= 0: exactly N requests, rate
      = N / (T1 - T0); N < 0: a run stopped early, -N requests finished between T0 and T1
      (monotonic-enough `date +%s.%N` times), rate = -N / (T1 - T0). p50/p99 of curl's
      time_total. Appends a row to RESULTS like `check`.
  bench.py raw RESULTS ROUND FILE
      Append argon2_raw's JSON line FILE as the row (login, raw, ROUND); print its rate.
  bench.py token URL DIR
      Log in as account 1 (DIR/login-001.json) at URL; write DIR/auth-header (0600) and
      print the session token.
  bench.py pgscript ROOT KIND OUT
      The pgbench script of KIND (record-get, record-post, notify-submit, audit-ingest) built
      from the services' own SQL strings (static const char NAME[] and #define macros in
      services/*/ and common/outbox.c), $N replaced by pgbench variables or expressions.
  bench.py pgcheck RESULTS CASE SUBJECT ROUND OUT LOGPREFIX [MULT]
      A pgbench run: tps x MULT from its output, p50/p99 from its -l transaction log.
  bench.py pgvars KIND FILE
      NUL-separated `-D name=value` arguments from one JSON row (psql row_to_json).
  bench.py svccfg KIND N DIR TAG [EVENTS]
      Request bodies and the request list of svc_load (notification submits, audit batches).
  bench.py standin RESULTS CASE ROUND URL TAG N TIMES|- TIMEOUT
      Wait for N messages at the provider stand-in; delivery rate (and latency from TIMES).
  bench.py keepup / verify / operator / exportparse
      Rows of the audit keep-up, verify and export cases; an operator session.
  bench.py consoleparse RESULTS OUT | consoleparse RESULTS - REASON
      Rows of the console case from console_bench.mjs's output, or why it was skipped.
  bench.py report RESULTS RSS_JSON BENCHMARKS_MD
      Print the Markdown report and rewrite the "## Latest run" section of BENCHMARKS_MD
      (everything from that heading to the end of the file); BENCHMARKS_MD "-": print only.

Settings shown in the report come from the environment run.sh exports: BENCH_DURATION,
BENCH_WARMUP, BENCH_CLIENTS, BENCH_STREAMS, BENCH_ROUNDS, BENCH_PIN, BENCH_GATEWAY_WORKERS.
"""

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import zoneinfo

CASES = [
    {
        "id": "livez-h2c",
        "title": "1. `GET /livez` h2c direct: phr-auth vs nginx `return 200`",
        "goal": 0.6,
    },
    {
        "id": "gateway-tls",
        "title": "2. `GET /api/v1/auth/password-policy` TLS h2 via gateway vs nginx static file",
        "goal": 0.5,
    },
    {
        "id": "login",
        "title": "4. `POST /api/v1/auth/login` via gateway (logins/s) vs raw argon2id "
                 "(hashes/s, same threads)",
        "goal": 0.85,
        "base": "raw",
    },
    {
        "id": "session",
        "title": "5. `GET /api/v1/auth/session` TLS h2 via gateway vs nginx static file",
        "goal": 0.35,
    },
    {
        "id": "record-get",
        "title": "7. `GET /api/v1/me/records/{id}` TLS h2 via gateway vs nginx static file",
        "goal": 0.2,
    },
    {
        "id": "record-pg",
        "title": "8. `GET /api/v1/me/records/{id}` via gateway (case 7's runs) vs pgbench of "
                 "its SELECT (tps)",
        "goal": 0.5,
        "base": "pgbench",
        "ours_case": "record-get",
    },
    {
        "id": "record-post",
        "title": "9. `POST /api/v1/me/records` via gateway vs pgbench of its transaction "
                 "(record + outbox insert, tps)",
        "goal": 0.6,
        "base": "pgbench",
    },
    {
        "id": "notify-submit",
        "title": "12. `POST /internal/v1/notifications` h2c direct (202/s) vs pgbench of its "
                 "transaction (tps)",
        "goal": None,
        "base": "pgbench",
    },
    {
        "id": "audit-ingest",
        "title": "13. `POST /internal/v1/events` h2c direct, batches of 100 (events/s) vs "
                 "pgbench of its insert transaction (events/s)",
        "goal": None,
        "base": "pgbench",
    },
]
KEEPUP_GOAL = 1.0
EXPORT_SLACK_KIB = 8192  # export_bench.sh's EXPORT_BENCH_RSS_SLACK_KB
KEEPUP_FLAT_SLACK = 1000  # events: one relay batch (AEV_BATCH_MAX in common/aev.h)
CONSOLE_BUDGET_BYTES = 200 * 1024  # issue 9: first load <= 200 KB, compressed
STORM_GOAL = 3.0
BENCH_PASSWORD = "Bench-Login-%03d-x9Q"  # meets the policy; not the e-mail's local part
BENCH_EMAIL = "bench-%03d@example.com"
IDLE_RSS_GOAL_KIB = 8 * 1024
LOAD_HWM_GOAL_KIB = 32 * 1024
LOAD_HWM_SERVICE = "auth"
SECTION = "## Latest run"


def die(msg):
    print("bench.py: " + msg, file=sys.stderr)
    sys.exit(1)


def percentile(sorted_vals, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_vals:
        raise ValueError("no values")
    rank = max(1, -(-len(sorted_vals) * q // 100))
    return sorted_vals[int(rank) - 1]


def parse_out(text):
    """Return (seconds, counters dict, status dict) from h2load's stdout."""
    m = re.search(r"^finished in ([0-9.]+)(us|ms|s), [0-9.]+ req/s", text, re.M)
    if not m:
        die("no 'finished in ..., N req/s' line in h2load output")
    secs = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)]
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if not m:
        die("no 'requests:' line in h2load output")
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    counters = dict(zip(keys, (int(g) for g in m.groups())))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not m:
        die("no 'status codes:' line in h2load output")
    status = dict(zip(("2xx", "3xx", "4xx", "5xx"), (int(g) for g in m.groups())))
    return secs, counters, status


def segments(prefix):
    """The (out, log) file pairs of one run, in order."""
    pairs = []
    k = 1
    while os.path.exists("%s.seg%d.out" % (prefix, k)):
        pairs.append(("%s.seg%d.out" % (prefix, k), "%s.seg%d.tsv" % (prefix, k)))
        k += 1
    if not pairs:
        die("no h2load output %s.seg1.out" % prefix)
    return pairs


def check_run(prefix, label):
    """Validate every segment of a run; return (req/s, sorted latencies in us)."""
    total_secs = 0.0
    total_done = 0
    lat = []
    for out, log in segments(prefix):
        with open(out, encoding="utf-8", errors="replace") as f:
            secs, counters, status = parse_out(f.read())
        bad = []
        if counters["succeeded"] == 0 or counters["succeeded"] != counters["total"]:
            bad.append("%d of %d requests succeeded" % (counters["succeeded"],
                                                        counters["total"]))
        for k in ("failed", "errored", "timeout"):
            if counters[k]:
                bad.append("%d %s" % (counters[k], k))
        for k in ("3xx", "4xx", "5xx"):
            if status[k]:
                bad.append("%d %s" % (status[k], k))
        non2xx = {}
        n = 0
        with open(log, encoding="ascii", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split("\t")
                if len(parts) != 3:
                    die("%s: %s:%d: expected 3 tab-separated fields" % (label, log, lineno))
                try:
                    code = int(parts[1])
                    usec = int(parts[2])
                except ValueError:
                    die("%s: %s:%d: not numbers" % (label, log, lineno))
                if code < 200 or code > 299:
                    non2xx[code] = non2xx.get(code, 0) + 1
                lat.append(usec)
                n += 1
        for code, cnt in sorted(non2xx.items()):
            bad.append("%d responses with status %d in the log" % (cnt, code))
        if n != counters["total"]:
            bad.append("%d log lines for %d requests" % (n, counters["total"]))
        if bad:
            die("FAILED: %s: not every request was 2xx: %s (see %s)"
                % (label, "; ".join(bad), out))
        total_secs += secs
        total_done += counters["done"]
    lat.sort()
    return total_done / total_secs, lat


def cmd_rate(args):
    if len(args) != 1:
        die("usage: rate PREFIX")
    rps, _ = check_run(args[0], args[0])
    print(int(rps))


def cmd_check(args):
    if len(args) != 5:
        die("usage: check RESULTS CASE SUBJECT ROUND PREFIX")
    results, case, subject, rnd, prefix = args
    label = "%s/%s round %s" % (case, subject, rnd)
    rps, lat = check_run(prefix, label)
    row = {
        "case": case, "subject": subject, "round": int(rnd) if rnd.isdigit() else rnd,
        "rps": rps, "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99),
        "n": len(lat),
    }
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("  %-12s %-5s round %s: %8.0f req/s  p50 %6d us  p99 %6d us  (%d requests)"
          % (case, subject, rnd, rps, row["p50_us"], row["p99_us"], row["n"]))


def cmd_curlcfg(args):
    if len(args) != 5:
        die("usage: curlcfg KIND URL N ACCOUNTS DIR")
    kind, url, n, accounts, out_dir = args[0], args[1], int(args[2]), int(args[3]), args[4]
    if kind not in ("register", "login") or n < 1 or accounts < 1:
        die("curlcfg: bad arguments")
    for i in range(1, accounts + 1):
        login = {"email": BENCH_EMAIL % i, "password": BENCH_PASSWORD % i}
        register = dict(login, name="Bench %03d" % i)
        for name, body in (("login", login), ("register", register)):
            with open(os.path.join(out_dir, "%s-%03d.json" % (name, i)), "w",
                      encoding="utf-8") as f:
                json.dump(body, f)
    cfg = os.path.join(out_dir, "%s-%d.cfg" % (kind, n))
    with open(cfg, "w", encoding="utf-8") as f:
        for k in range(n):
            body = os.path.join(out_dir, "%s-%03d.json" % (kind, k % accounts + 1))
            f.write('url = "%s"\ndata-binary = "@%s"\n' % (url, body))
            f.write('header = "content-type: application/json"\noutput = "/dev/null"\n')
            f.write('write-out = "%{stderr}%{http_code} %{time_total}\\n"\n')
            f.write("insecure\nhttp2\nsilent\nshow-error\n")
            if k + 1 < n:
                f.write("next\n")
    print(cfg)


def cmd_curlcheck(args):
    if len(args) not in (9, 10):
        die("usage: curlcheck RESULTS CASE SUBJECT ROUND OUT T0 T1 STATUS N [MULT]")
    results, case, subject, rnd, out = args[:5]
    t0, t1, status, n = float(args[5]), float(args[6]), args[7], int(args[8])
    mult = int(args[9]) if len(args) == 10 else 1
    label = "%s/%s round %s" % (case, subject, rnd)
    lat = []
    bad = {}
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif n < 0 and lines:
        lines.pop()  # the run was stopped: a last line may be cut short
    for line in lines:
        m = re.match(r"^(\d{3}) ([0-9.]+)$", line)
        if not m:
            bad[line[:80]] = bad.get(line[:80], 0) + 1
            continue
        if m.group(1) != status:
            bad["status " + m.group(1)] = bad.get("status " + m.group(1), 0) + 1
            continue
        lat.append(int(float(m.group(2)) * 1e6))
    if bad:
        die("%s: %s (expected %s for every request; see %s)"
            % (label, ", ".join("%d x %s" % (v, k) for k, v in sorted(bad.items())), status, out))
    count = n if n >= 0 else -n
    if n >= 0 and len(lat) != n:
        die("%s: %d of %d requests finished" % (label, len(lat), n))
    if count == 0 or not lat or t1 <= t0:
        die("%s: no requests finished" % label)
    lat.sort()
    row = {
        "case": case, "subject": subject, "round": int(rnd) if rnd.isdigit() else rnd,
        "rps": count * mult / (t1 - t0), "p50_us": percentile(lat, 50),
        "p99_us": percentile(lat, 99), "n": count * mult,
    }
    if results != "/dev/null":
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    print("  %-12s %-6s round %s: %8.1f %s/s  p50 %6d us  p99 %6d us  (%d requests)"
          % (case, subject, rnd, row["rps"], "req" if mult == 1 else "events", row["p50_us"],
             row["p99_us"], count))


def cmd_raw(args):
    if len(args) != 3:
        die("usage: raw RESULTS ROUND FILE")
    results, rnd, path = args
    with open(path, encoding="utf-8") as f:
        raw = json.loads(f.readline())
    if raw.get("hashes", 0) < 1 or raw.get("rate", 0) <= 0:
        die("argon2_raw: no hashes in %s" % path)
    row = {"case": "login", "subject": "raw", "round": int(rnd) if rnd.isdigit() else rnd,
           "rps": raw["rate"], "p50_us": None, "p99_us": None, "n": raw["hashes"],
           "threads": raw["threads"]}
    if results != "/dev/null":
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print("  %-12s %-6s round %s: %8.1f hashes/s on %d threads" % (
            "login", "raw", rnd, raw["rate"], raw["threads"]), file=sys.stderr)
    print("%.3f" % raw["rate"])


def cmd_token(args):
    if len(args) != 2:
        die("usage: token URL DIR")
    url, out_dir = args
    p = subprocess.run(["curl", "-sk", "--http2", "--max-time", "10", "-H",
                        "content-type: application/json", "--data-binary",
                        "@" + os.path.join(out_dir, "login-001.json"), "-w", "\n%{http_code}",
                        url], capture_output=True, text=True, check=False)
    body, _, code = p.stdout.rpartition("\n")
    if p.returncode != 0 or code != "200":
        die("login answered %s (curl exit %d)" % (code or "nothing", p.returncode))
    try:
        token = json.loads(body)["token"]
    except (ValueError, KeyError, TypeError):
        die("login answer has no token")
    if not re.match(r"^[A-Za-z0-9_-]+$", token):
        die("login answer has a malformed token")
    path = os.path.join(out_dir, "auth-header")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("authorization: Bearer %s\n" % token)
    print(token)


# ---- SQL of the services, for the pgbench baselines --------------------------------------

C_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|[A-Za-z_]\w*|[(),]')


def c_strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def c_defs(paths):
    """#define NAME / NAME(p) and `static const char NAME[] =` string expressions."""
    macros, consts = {}, {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = c_strip_comments(f.read()).replace("\\\n", " ")
        for m in re.finditer(r"^#define\s+(\w+)(\((\w+)\))?[ \t]+(.*)$", text, re.M):
            macros[m.group(1)] = (m.group(3), C_TOKEN.findall(m.group(4)))
        for m in re.finditer(r"static const char (\w+)\[\]\s*=\s*(.*?);", text, re.S):
            consts[m.group(1)] = C_TOKEN.findall(m.group(2))
    return macros, consts


def c_expand(tokens, macros, depth=0):
    """Concatenate the string literals of |tokens|, expanding string macros."""
    if depth > 20:
        die("macro recursion")
    out = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith('"'):
            out.append(bytes(t[1:-1], "utf-8").decode("unicode_escape"))
        elif t in macros:
            param, body = macros[t]
            if param is not None:
                if i + 1 >= len(tokens) or tokens[i + 1] != "(":
                    die("macro %s without arguments" % t)
                level, j, arg = 0, i + 1, []
                while j < len(tokens):
                    if tokens[j] == "(":
                        level += 1
                        if level == 1:
                            j += 1
                            continue
                    elif tokens[j] == ")":
                        level -= 1
                        if level == 0:
                            break
                    arg.append(tokens[j])
                    j += 1
                body = [x for b in body for x in (arg if b == param else [b])]
                i = j
            out.append(c_expand(body, macros, depth + 1))
        elif t not in ("(", ")", ","):
            die("unexpected token %s in a SQL string" % t)
        i += 1
    return "".join(out)


def service_sql(root, name):
    paths = [os.path.join(root, p) for p in (
        "services/records/records.h", "services/records/record.c", "common/outbox.h",
        "common/outbox.c",
        "services/notification/submit.c", "services/audit/ingest.c")]
    macros, consts = c_defs([p for p in paths if os.path.exists(p)])
    if name not in consts:
        die("no SQL %s in %s" % (name, ", ".join(paths)))
    return c_expand(consts[name], macros)


def pg_params(sql, mapping):
    """Replace $N by mapping[N] (a pgbench :variable or an SQL expression)."""
    def sub(m):
        n = int(m.group(1))
        if n not in mapping:
            die("no value for $%d in %s" % (n, sql[:60]))
        return mapping[n]
    return re.sub(r"\$(\d+)", sub, sql)


def cmd_pgscript(args):
    """pgscript ROOT KIND OUT: the pgbench script of KIND (record-get|record-post)."""
    if len(args) != 3:
        die("usage: pgscript ROOT KIND OUT")
    root, kind, out = args
    if kind == "record-get":
        text = pg_params(service_sql(root, "rec_get_sql"), {1: ":rid", 2: ":pid"}) + ";\n"
    elif kind == "record-post":
        # The service's one statement: the record insert and its audit outbox row (topic
        # 'bench': a topic no relay route claims, so these rows are never sent).
        text = pg_params(service_sql(root, "rec_insert_audited_sql"), {
            1: "gen_random_uuid()", 2: ":pid", 3: ":type", 4: ":ms", 5: ":day",
            6: ":source", 7: "NULL", 8: ":kid", 9: ":sealed", 10: ":pid",
            11: "'bench'", 12: "gen_random_uuid()::text", 13: ":body"}) + ";\n"
    elif kind == "notify-submit":
        # The service's transaction (lock, insert + queued event, audit outbox row) on copies
        # of its tables (bench_*: same columns and indexes) that no delivery worker reads.
        lock = pg_params(service_sql(root, "sub_lock_sql"), {1: "('b' || :k)"})
        ins = pg_params(service_sql(root, "sub_insert_sql"), {
            1: "gen_random_uuid()", 2: "('b' || :k)", 3: ":sha", 4: ":kind", 5: ":channel",
            6: "NULL", 7: ":addr", 8: ":locale", 9: ":params", 10: ":subject", 11: ":body",
            12: "NULL", 13: "NULL"})
        ins = re.sub(r"\b(notifications|notification_events)\b", r"bench_\1", ins)
        lock = re.sub(r"\bnotifications\b", "bench_notifications", lock)
        ob = pg_params(service_sql(root, "ob_sql_add"), {
            1: "'bench'", 2: "gen_random_uuid()::text", 3: ":event"})
        text = ("\\set k random(1, 9000000000000000)\nBEGIN;\n%s;\n%s;\n%s;\nCOMMIT;\n"
                % (lock, ins, ob))
    elif kind == "audit-ingest":
        # The writer's transaction for one batch (lock, head, known ids, details, events, ids)
        # on copies of the tables (bench_*), new seq and event ids per batch; no checkpoint.
        stmts = []
        for name in ("ingest_sql_lock", "ingest_sql_head", "ingest_sql_existing",
                     "ingest_sql_details", "ingest_sql_insert", "ingest_sql_ids"):
            sql = service_sql(root, name)
            for old, repl in (("SELECT r.seq, r.event_id,",
                               "SELECT nextval('bench_seq'), gen_random_uuid(),"),
                              ("SELECT (x->>'event_id')::uuid, (x->>'seq')::bigint",
                               "SELECT gen_random_uuid(), nextval('bench_seq_ids')")):
                if name in ("ingest_sql_insert", "ingest_sql_ids") and old in sql:
                    sql = sql.replace(old, repl)
            if "nextval" not in sql and name in ("ingest_sql_insert", "ingest_sql_ids"):
                die("pgscript: %s changed; update bench.py" % name)
            sql = re.sub(r"\b(audit_events|audit_event_ids|checkpoints)\b", r"bench_\1", sql)
            stmts.append(pg_params(sql, {1: {"ingest_sql_existing": ":ids",
                                             "ingest_sql_details": ":details",
                                             "ingest_sql_insert": ":rows",
                                             "ingest_sql_ids": ":idrows"}.get(name, "")}))
        text = "BEGIN;\n%s;\nCOMMIT;\n" % ";\n".join(stmts)
    else:
        die("pgscript: unknown kind %s" % kind)
    if re.search(r"\$\d", text):
        die("pgscript: unmapped parameter in %s" % text)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def cmd_pgcheck(args):
    """pgcheck RESULTS CASE SUBJECT ROUND OUT LOGPREFIX: a pgbench run's tps and latencies."""
    if len(args) not in (6, 7):
        die("usage: pgcheck RESULTS CASE SUBJECT ROUND OUT LOGPREFIX [MULT]")
    results, case, subject, rnd, out, logprefix = args[:6]
    mult = int(args[6]) if len(args) == 7 else 1
    label = "%s/%s round %s" % (case, subject, rnd)
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if not m or (failed and int(failed.group(1)) != 0) or "aborted" in text:
        die("%s: pgbench failed (see %s)" % (label, out))
    lat = []
    d = os.path.dirname(logprefix) or "."
    base = os.path.basename(logprefix)
    for name in sorted(os.listdir(d)):
        if name.startswith(base + "."):
            with open(os.path.join(d, name), encoding="ascii") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]))
    if not lat:
        die("%s: no pgbench transaction log %s.*" % (label, logprefix))
    lat.sort()
    row = {"case": case, "subject": subject, "round": int(rnd) if rnd.isdigit() else rnd,
           "rps": float(m.group(1)) * mult, "p50_us": percentile(lat, 50),
           "p99_us": percentile(lat, 99), "n": len(lat)}
    if results != "/dev/null":
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    print("  %-12s %-7s round %s: %8.0f tps    p50 %6d us  p99 %6d us  (%d transactions)"
          % (case, subject, rnd, row["rps"], row["p50_us"], row["p99_us"], row["n"]))


def uuid7():
    ms = int(time.time() * 1000)
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) & 0xFFF) << 64 | (0b10 << 62) | (r & (2**62 - 1))
    h = "%032x" % v
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def jst_now():
    now = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))
    return now.isoformat(timespec="microseconds")


NOTIFY_BODY = {"kind": "password_changed", "channel": "email", "locale": "ja",
               "to": {"email": "bench-notify@example.com"},
               "params": {"name": "Bench Patient", "changed_at": "2026-11-26 12:00"}}


def audit_event(caller):
    return {"event_id": uuid7(), "occurred_at": jst_now(),
            "actor": {"account_id": None, "kind": "service", "ip": "192.0.2.1",
                      "user_agent": "bench"},
            "action": "%s.bench.event" % caller, "target": {"type": "account", "id": "bench"},
            "outcome": {"result": "success"},
            "source": {"service": caller, "request_id": "bench"}, "details": {"n": 1}}


def cmd_svccfg(args):
    """svccfg KIND N DIR TAG [EVENTS]: the request list of svc_load (lines "BODY_FILE KEY") for
    N POSTs to a service's internal route. KIND notify-lat: a unique recipient
    (bench-TAG-K@example.com) and Idempotency-Key (bench-TAG-K) per request; audit: N fresh
    batches of EVENTS events (source.service = TAG up to its first '-'), no key. Prints the
    list's path."""
    if len(args) not in (4, 5):
        die("usage: svccfg KIND N DIR TAG [EVENTS]")
    kind, n, out_dir, tag = args[:4]
    n = int(n)
    events = int(args[4]) if len(args) == 5 else 100
    bdir = os.path.join(out_dir, "%s-%s" % (kind, tag))
    os.makedirs(bdir, exist_ok=True)
    path = os.path.join(out_dir, "%s-%s.list" % (kind, tag))
    with open(path, "w", encoding="utf-8") as f:
        for k in range(n):
            body = os.path.join(bdir, "%d.json" % k)
            if kind == "notify-lat":
                b = dict(NOTIFY_BODY, to={"email": "bench-%s-%d@example.com" % (tag, k)})
                key = "bench-%s-%d" % (tag, k)
            elif kind == "audit":
                b = {"items": [audit_event(tag.split("-")[0]) for _ in range(events)]}
                key = ""
            else:
                die("svccfg: unknown kind %s" % kind)
            with open(body, "w", encoding="utf-8") as bf:
                json.dump(b, bf)
            f.write(("%s %s\n" % (body, key)) if key else body + "\n")
    print(path)


def cmd_pgvars(args):
    """pgvars KIND FILE: NUL-separated pgbench -D arguments from a JSON object FILE (one row
    of psql's row_to_json)."""
    if len(args) != 2:
        die("usage: pgvars KIND FILE")
    with open(args[1], encoding="utf-8") as f:
        text = f.read().strip()
    if not text:
        die("pgvars: %s is empty" % args[1])
    obj = json.loads(text)
    out = []
    for k, v in sorted(obj.items()):
        if v is None:
            die("pgvars: %s is null" % k)
        if not isinstance(v, str):
            v = json.dumps(v, separators=(",", ":"))
        out += ["-D", "%s=%s" % (k, v)]
    sys.stdout.write("\0".join(out) + "\0")


def cmd_standin(args):
    """standin RESULTS CASE ROUND URL TAG N T_SUBMIT_FILE TIMEOUT: wait until the stand-in
    lists N messages to bench-TAG-*@example.com (or TIMEOUT s pass); row CASE/ours/ROUND with
    the delivery rate (messages / span of received_at) and, when T_SUBMIT_FILE (lines
    "address epoch-seconds") is not '-', the submit-to-provider latency p50/p99."""
    if len(args) != 8:
        die("usage: standin RESULTS CASE ROUND URL TAG N T_SUBMIT_FILE TIMEOUT")
    results, case, rnd, url, tag, n, tfile, timeout = args
    n, timeout = int(n), float(timeout)
    pat = re.compile(r"^bench-%s-(\d+)@example\.com$" % tag)  # TAG: a regex ([a-z0-9] or [1-4])
    deadline = time.time() + timeout
    got = {}
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                msgs = json.load(resp)
        except (OSError, ValueError) as e:  # a busy stand-in: ask again until the deadline
            print("bench.py: %s: %s" % (url, e), file=sys.stderr)
            if time.time() > deadline:
                die("%s round %s: the stand-in did not answer" % (case, rnd))
            time.sleep(1)
            continue
        got = {}
        for m in msgs:
            to = m.get("to")
            if isinstance(to, list):
                to = to[0] if to else ""
            if isinstance(to, dict):
                to = to.get("email", "")
            if isinstance(to, str) and pat.match(to) and to not in got:
                got[to] = datetime.datetime.fromisoformat(
                    m["received_at"].replace("Z", "+00:00")).timestamp()
        if len(got) >= n or time.time() > deadline:
            break
        time.sleep(0.5)
    if len(got) < n:
        die("%s round %s: %d of %d messages reached the stand-in in %.0f s"
            % (case, rnd, len(got), n, timeout))
    times = sorted(got.values())
    span = max(times[-1] - times[0], 1e-3)
    row = {"case": case, "subject": "ours", "round": int(rnd) if rnd.isdigit() else rnd,
           "rps": (len(times) - 1) / span if len(times) > 1 else 0.0, "p50_us": None,
           "p99_us": None, "n": len(times)}
    if tfile != "-":
        sent = {}
        with open(tfile, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    sent[parts[0]] = float(parts[1])
        lat = sorted(int((got[a] - t) * 1e6) for a, t in sent.items() if a in got)
        if not lat:
            die("%s round %s: no submit times matched" % (case, rnd))
        row["p50_us"] = percentile(lat, 50)
        row["p99_us"] = percentile(lat, 99)
        row["rps"] = len(sent) / max(max(sent.values()) - min(sent.values()), 1e-3)
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("  %-14s round %s: %8.1f /s  p50 %s  p99 %s  (%d messages)" % (
        case, rnd, row["rps"], us(row["p50_us"]), us(row["p99_us"]), row["n"]))


def http_json(method, url, body, token=None):
    cmd = ["curl", "-sk", "--http2", "--max-time", "10", "-X", method, "-H",
           "content-type: application/json", "-w", "\n%{http_code}", url]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    if token is not None:
        cmd += ["-H", "authorization: Bearer " + token]
    p = subprocess.run(cmd, input=json.dumps(body) if body is not None else None,
                       capture_output=True, text=True, check=False)
    text, _, code = p.stdout.rpartition("\n")
    return code, text


def cmd_operator(args):
    """operator GW EMAIL DIR: log in the operator whose `phrctl operator create --json` answer
    is in $OP_JSON, change the initial password, write DIR/operator-header (0600)."""
    if len(args) != 3:
        die("usage: operator GW EMAIL DIR")
    gw, email, out_dir = args
    try:
        initial = json.loads(os.environ.get("OP_JSON", ""))["initial_password"]
    except (ValueError, KeyError, TypeError):
        die("no initial_password in the phrctl answer")
    code, text = http_json("POST", gw + "/api/v1/auth/login",
                           {"email": email, "password": initial})
    if code != "200":
        die("operator login answered %s" % code)
    token = json.loads(text)["token"]
    new_pw = "Bench-Operator-" + os.urandom(6).hex()
    code, _ = http_json("POST", gw + "/api/v1/auth/password",
                        {"current_password": initial, "new_password": new_pw}, token)
    if code != "204":
        die("operator password change answered %s" % code)
    path = os.path.join(out_dir, "operator-header")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("authorization: Bearer %s\n" % token)
    print("ok")


def cmd_verify(args):
    """verify RESULTS ROUND FILE T0 T1 EVENTS: the verify answer must be ok; row audit-verify
    with events / (T1 - T0)."""
    if len(args) != 6:
        die("usage: verify RESULTS ROUND FILE T0 T1 EVENTS")
    results, rnd, path, t0, t1, events = args
    with open(path, encoding="utf-8") as f:
        ans = json.load(f)
    if ans.get("ok") is not True:
        die("audit verify round %s: not ok: %s" % (rnd, json.dumps(ans)[:300]))
    secs = float(t1) - float(t0)
    row = {"case": "audit-verify", "subject": "ours", "round": int(rnd),
           "rps": int(events) / secs, "p50_us": None, "p99_us": None, "n": int(events)}
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("  audit-verify round %s: %d events in %.2f s = %.0f events/s" % (
        rnd, int(events), secs, row["rps"]))


def cmd_exportparse(args):
    """exportparse RESULTS OUT: the export_bench.sh lines as rows (case export)."""
    if len(args) != 2:
        die("usage: exportparse RESULTS OUT")
    results, out = args
    rows = []
    with open(out, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^export_bench: n=(\d+) format=(\w+) time=([0-9.]+)s bytes=(\d+) "
                         r"rss_before_kb=(\d+) peak_kb=(\d+)$", line.strip())
            if m:
                rows.append({"case": "export", "subject": m.group(2), "round": 1,
                             "records": int(m.group(1)), "secs": float(m.group(3)),
                             "bytes": int(m.group(4)), "rss_before_kib": int(m.group(5)),
                             "hwm_kib": int(m.group(6))})
    if not rows:
        die("no export lines in %s" % out)
    with open(results, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")



def cmd_consoleparse(args):
    """consoleparse RESULTS OUT | consoleparse RESULTS - REASON: console_bench.mjs's lines as
    rows (case console), or one row saying why the case was skipped."""
    if len(args) == 3 and args[1] == "-":
        with open(args[0], "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": "console", "subject": "skipped", "round": 0,
                                "reason": args[2]}) + "\n")
        return
    if len(args) != 2:
        die("usage: consoleparse RESULTS OUT | consoleparse RESULTS - REASON")
    results, out = args
    rows = []
    with open(out, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^console_bench: subject=(ours|base) round=(\d+) bytes=(\d+) "
                         r"tti_ms=([0-9.]+)$", line.strip())
            if m:
                rows.append({"case": "console", "subject": m.group(1), "round": int(m.group(2)),
                             "bytes": int(m.group(3)), "tti_ms": float(m.group(4))})
    ours = [r for r in rows if r["subject"] == "ours"]
    if not ours or len(ours) != len(rows) - len(ours):
        die("console: %d ours and %d baseline loads in %s" % (
            len(ours), len(rows) - len(ours), out))
    with open(results, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print("  console: %d loads each; median %d bytes (ours), %d bytes (baseline)" % (
        len(ours), statistics.median(r["bytes"] for r in ours),
        statistics.median(r["bytes"] for r in rows if r["subject"] == "base")))


def proc_status_kib(pid, key, name="status"):
    with open("/proc/%d/%s" % (pid, name), encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    die("no %s in /proc/%d/%s" % (key, pid, name))
    return 0


def cmd_rss(args):
    if len(args) < 4:
        die("usage: rss PHASE RUN_DIR OUT_JSON SERVICE...")
    phase, run_dir, out, services = args[0], args[1], args[2], args[3:]
    data = {}
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
    for svc in services:
        try:
            with open(os.path.join(run_dir, svc + ".pid"), encoding="ascii") as f:
                pid = int(f.readline().strip())
            with open("/proc/%d/comm" % pid, encoding="ascii") as f:
                comm = f.read().strip()
        except (OSError, ValueError) as e:
            die("phr-%s: no running process (%s)" % (svc, e))
        if not ("phr-" + svc).startswith(comm):
            die("phr-%s: pid %d is '%s'" % (svc, pid, comm))
        data.setdefault(svc, {})[phase] = {
            "pid": pid,
            "rss_kib": proc_status_kib(pid, "VmRSS"),
            "hwm_kib": proc_status_kib(pid, "VmHWM"),
            "anon_kib": proc_status_kib(pid, "RssAnon"),
            "pss_kib": proc_status_kib(pid, "Pss", "smaps_rollup"),
        }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    text = (p.stdout + p.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def us(v):
    if v is None:
        return "n/a"
    return "%.2f ms" % (v / 1000.0) if v >= 1000 else "%d us" % v


def storm_text(rows):
    """The storm case: p99 of GET /session idle and during a login storm, per round."""
    def pick(subject):
        return {r["round"]: r for r in rows if r["case"] == "storm" and r["subject"] == subject}
    idle, storm, logins, raw = pick("idle"), pick("storm"), pick("logins"), {}
    raw = {r["round"]: r for r in rows if r["case"] == "login" and r["subject"] == "raw"}
    out = ["", "| 6. `GET /api/v1/auth/session` during a login storm | idle p50 / p99 "
           "| storm p50 / p99 | p99 storm / idle | goal | result | storm logins/s |",
           "|---|---:|---:|---:|---:|---|---:|"]
    rounds = sorted(set(idle) & set(storm))
    if not rounds:
        out.append("| not run (BENCH_CASES) | | | | | | |")
        return out
    ratios = []
    for rnd in rounds:
        ratio = storm[rnd]["p99_us"] / max(idle[rnd]["p99_us"], 1)
        ratios.append(ratio)
        out.append("| round %s | %s / %s | %s / %s | %.2f | <= %.1f | %s | %s |" % (
            rnd, us(idle[rnd]["p50_us"]), us(idle[rnd]["p99_us"]), us(storm[rnd]["p50_us"]),
            us(storm[rnd]["p99_us"]), ratio, STORM_GOAL,
            "pass" if ratio <= STORM_GOAL else "**FAIL**",
            "%.1f" % logins[rnd]["rps"] if rnd in logins else "n/a"))
    ratio = statistics.median(ratios)
    out.append("| **median** | | | **%.2f** | <= %.1f | **%s** | |" % (
        ratio, STORM_GOAL, "pass" if ratio <= STORM_GOAL else "FAIL"))
    if raw and logins:
        out += ["", "Storm logins/s against the raw argon2id rate of the login case (median "
                "%.1f hashes/s): the storm keeps every hashing worker busy."
                % statistics.median(r["rps"] for r in raw.values())]
    return out


SINGLE = [
    ("record-list", "10. `GET /api/v1/me/records?limit=100` via gateway, one request at a time",
     "req/s"),
    ("notify-deliver", "12b. notification delivery to the provider stand-in (messages counted "
     "at `/__messages`)", "messages/s"),
    ("notify-latency", "12c. submit-to-provider latency at half the submit rate "
     "(p50 / p99 of provider `received_at` - submit time)", "submits/s"),
    ("audit-verify", "14. `GET /api/v1/admin/audit/verify` of the whole chain", "events/s"),
]


def single_text(rows):
    """Cases without a baseline: rate and latency per round, medians."""
    out = ["", "| case without a baseline | unit | rate (median) | p50 / p99 (median) | rounds "
           "| per round |", "|---|---|---:|---:|---:|---|"]
    for cid, title, unit in SINGLE:
        rs = sorted((r for r in rows if r["case"] == cid and r["subject"] == "ours"),
                    key=lambda r: str(r["round"]))
        if not rs:
            out.append("| %s | %s | not run | | | |" % (title, unit))
            continue
        p50 = [r["p50_us"] for r in rs if r.get("p50_us") is not None]
        p99 = [r["p99_us"] for r in rs if r.get("p99_us") is not None]
        extra = "; ".join("%.0f (n %d)" % (r["rps"], r["n"]) for r in rs)
        out.append("| %s | %s | %.0f | %s / %s | %d | %s |" % (
            title, unit, statistics.median(r["rps"] for r in rs),
            us(statistics.median(p50)) if p50 else "n/a",
            us(statistics.median(p99)) if p99 else "n/a", len(rs), extra))
    return out


def export_text(rows):
    """Case 11: export time and phr-records peak RSS growth per record count and format."""
    ex = [r for r in rows if r["case"] == "export"]
    out = ["", "| 11. `GET /api/v1/me/export` | records | time | bytes | records/s "
           "| VmRSS before | VmHWM during | growth |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    if not ex:
        out.append("| not run (BENCH_CASES) | | | | | | | |")
        return out
    for r in sorted(ex, key=lambda r: (r["subject"], r["records"])):
        out.append("| format=%s | %d | %.2f s | %d | %.0f | %s | %s | %s |" % (
            r["subject"], r["records"], r["secs"], r["bytes"], r["records"] / max(r["secs"], 1e-6),
            mib(r["rss_before_kib"]), mib(r["hwm_kib"]),
            mib(r["hwm_kib"] - r["rss_before_kib"])))
    sizes = sorted({r["records"] for r in ex})
    notes = []
    for fmt in sorted({r["subject"] for r in ex}):
        by = {r["records"]: r for r in ex if r["subject"] == fmt}
        if sizes[0] in by and sizes[-1] in by and sizes[0] != sizes[-1]:
            a, b = by[sizes[0]], by[sizes[-1]]
            ga, gb = a["hwm_kib"] - a["rss_before_kib"], b["hwm_kib"] - b["rss_before_kib"]
            ok = gb - ga <= EXPORT_SLACK_KIB
            notes.append("%s: %s vs %s (ratio %s) **%s**" % (
                fmt, mib(ga), mib(gb),
                "%.2f" % (gb / ga) if ga >= 256 else "n/a, under 256 KiB",
                "pass" if ok else "FAIL"))
    if notes:
        out += ["", "Export peak growth (VmHWM during the export - VmRSS before it), %d vs %d "
                "records; goal: it does not grow with the count (within %d MiB): %s. VmRSS "
                "before rises between the rows with the imports and earlier exports (heap "
                "kept by the allocator), not with the export itself."
                % (sizes[0], sizes[-1], EXPORT_SLACK_KIB // 1024, "; ".join(notes))]
    return out


def console_text(rows):
    """Case 16: the console's first load, bytes against the budget, time to interactive
    against the baseline page of the same run."""
    cr = [r for r in rows if r["case"] == "console"]
    out = ["", "| 16. Console first load (cold, until the sign-in button is visible) | ours "
           "| baseline | ours / baseline | goal | result |", "|---|---:|---:|---:|---|---|"]
    skipped = [r for r in cr if r["subject"] == "skipped"]
    if skipped:
        out.append("| %s | | | | <= %d KB | reported: skipped (no chromium / console not "
                   "built) |" % (skipped[0]["reason"], CONSOLE_BUDGET_BYTES // 1024))
        return out
    ours = sorted((r for r in cr if r["subject"] == "ours"), key=lambda r: r["round"])
    base = sorted((r for r in cr if r["subject"] == "base"), key=lambda r: r["round"])
    if not ours or not base:
        out.append("| not run (BENCH_CASES) | | | | | |")
        return out
    ob = statistics.median(r["bytes"] for r in ours)
    bb = statistics.median(r["bytes"] for r in base)
    out.append("| bytes on the wire (median of %d loads) | %d (%.1f KB) | %d (%.1f KB) | %.1f "
               "| <= %d KB | %s |" % (
                   len(ours), ob, ob / 1024, bb, bb / 1024, ob / max(bb, 1),
                   CONSOLE_BUDGET_BYTES // 1024,
                   "pass" if ob <= CONSOLE_BUDGET_BYTES else "**FAIL**"))
    ot = sorted(r["tti_ms"] for r in ours)
    bt = sorted(r["tti_ms"] for r in base)
    for q in (50, 99):
        o, b = percentile(ot, q), percentile(bt, q)
        out.append("| time to interactive p%d | %.0f ms | %.0f ms | %.2f | n/a | reported |" % (
            q, o, b, o / max(b, 1e-3)))
    out += ["", "Per load (baseline / ours, ms): %s. Baseline: a page of one small script that "
            "renders the button, from the TLS baseline nginx with the console's headers and "
            "gzip; a fresh browser context (no cache, new TLS connection) per load; p99 over "
            "%d loads is their maximum." % (
                "; ".join("%.0f / %.0f" % (b["tti_ms"], o["tti_ms"])
                          for b, o in zip(base, ours)), len(ours))]
    return out


def keepup_text(rows):
    """Case 15: the audit service keeps up with the records write benchmark."""
    kr = sorted((r for r in rows if r["case"] == "audit-keepup"), key=lambda r: r["round"])
    out = ["", "| 15. audit keeps up with case 9 | records events/s | audit ingested/s "
           "| ratio (window) | backlog start / max / end / +2 s | goal | result |",
           "|---|---:|---:|---:|---:|---|---|"]
    if not kr:
        out.append("| not run (BENCH_CASES) | | | | | | |")
        return out
    for r in kr:
        flat = r["backlog_after"] <= r["backlog_start"] + KEEPUP_FLAT_SLACK
        ratio = r["ingested"] / max(r["events"], 1)
        ok = flat and ratio >= KEEPUP_GOAL - KEEPUP_FLAT_SLACK / max(r["events"], 1)
        out.append("| round %s | %.0f | %.0f | %.2f | %d / %d / %d / %d | >= %.1f, backlog "
                   "flat | %s |" % (
                       r["round"], r["events"] / r["secs"], r["ingested"] / r["secs"], ratio,
                       r["backlog_start"], r["backlog_max"], r["backlog_end"],
                       r["backlog_after"], KEEPUP_GOAL, "pass" if ok else "**FAIL**"))
    cap = [r for r in rows if r["case"] == "audit-ingest" and r["subject"] == "ours"]
    post = [r for r in rows if r["case"] == "record-post" and r["subject"] == "ours"]
    if cap and post:
        c = statistics.median(r["rps"] for r in cap)
        p = statistics.median(r["rps"] for r in post)
        out += ["", "Capacity ratio: audit ingest (case 13, %.0f events/s) / records event rate "
                "(case 9, %.0f records/s, one event each) = **%.2f** (goal >= %.1f: %s)." % (
                    c, p, c / max(p, 1e-9), KEEPUP_GOAL,
                    "pass" if c / max(p, 1e-9) >= KEEPUP_GOAL else "**FAIL**")]
    return out


def cmd_keepup(args):
    """keepup RESULTS ROUND SAMPLES T0 T1 EV0 EV1 EV2 AU0 AU1 AU2"""
    if len(args) != 11:
        die("usage: keepup RESULTS ROUND SAMPLES T0 T1 EV0 EV1 EV2 AU0 AU1 AU2")
    results, rnd, path = args[:3]
    t0, t1 = float(args[3]), float(args[4])
    ev0, ev1, ev2, au0, au1, au2 = (int(x) for x in args[5:])
    samples = []
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                samples.append((float(parts[0]), int(parts[1])))
    if not samples or t1 <= t0:
        die("keepup round %s: no backlog samples in %s" % (rnd, path))
    during = [b for t, b in samples if t <= t1] or [samples[0][1]]
    row = {"case": "audit-keepup", "subject": "ours", "round": int(rnd), "secs": t1 - t0,
           "events": ev1 - ev0, "ingested": au1 - au0, "events_total": ev2 - ev0,
           "ingested_total": au2 - au0, "backlog_start": samples[0][1],
           "backlog_max": max(b for _, b in samples), "backlog_end": during[-1],
           "backlog_after": samples[-1][1], "samples": len(samples)}
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("  audit-keepup round %s: %d records events, %d audit events in %.1f s; backlog "
          "%d / max %d / end %d / +2 s %d" % (rnd, row["events"], row["ingested"], row["secs"],
                                             row["backlog_start"], row["backlog_max"],
                                             row["backlog_end"], row["backlog_after"]))


def shown_path(path):
    """PATH relative to the repository when it lies inside it, else absolute."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.abspath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def report_text(rows, rss, res_dir):
    env = os.environ
    now = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))
    pin = env.get("BENCH_PIN", "0") == "1"
    lines = [
        SECTION,
        "",
        "- Date: %s" % now.strftime("%Y-%m-%d %H:%M %Z (UTC%z)"),
        "- Machine: %d CPUs (`nproc`), %s; kernel %s"
        % (os.cpu_count() or 0, cpu_model(), os.uname().release),
        "- Versions: %s; %s" % (first_line(["nginx", "-v"]), first_line(["h2load", "--version"])),
        "- h2load: `-t 1 -c %s -m %s -n %s` repeated for ~%s s per run (nginx ends a "
        "connection after 1000 requests), after a ~%s s warm-up; %s rounds per subject, "
        "baseline and ours alternating; values are medians of the rounds, ratio = median "
        "of the per-round ratios (ours / the baseline run just before it)"
        % (env.get("BENCH_CLIENTS", "?"), env.get("BENCH_STREAMS", "?"),
           env.get("BENCH_SEGMENT", "?"),
           env.get("BENCH_DURATION", "?"), env.get("BENCH_WARMUP", "?"),
           env.get("BENCH_ROUNDS", "?")),
        "- Machine load (other work skews every ratio): %s %% of the CPUs busy over 2 s "
        "before the stack started (1-min load average %s); %s %% after the last case with the "
        "stack still up, its own background work included (%s)"
        % tuple((env.get("BENCH_IDLE_" + k, "? ?").split() + ["?", "?"])[i]
                for k, i in (("START", 0), ("START", 1), ("END", 0), ("END", 1))),
        "- CPU pinning: %s" % ("h2load on CPU 0; the stack and the baseline nginx on CPU 1"
                               if pin else "none"),
        "- Gateway and TLS baseline `worker_processes %s`; h2c baseline 1 worker"
        % env.get("BENCH_GATEWAY_WORKERS", "?"),
        "- Login (4): %s auth workers (`PHR_WORKERS`) and as many `argon2_raw` threads "
        "(argon2id m=19456 KiB, t=2, p=1, libargon2), both on the stack's CPU(s); per round "
        "~%s s of raw hashing, then as many logins as the raw rate does in that time, "
        "`curl --parallel --http2` with %s in flight over one connection, cycling %s "
        "registered accounts"
        % (env.get("PHR_WORKERS", "?"), env.get("BENCH_DURATION", "?"),
           env.get("BENCH_LOGIN_PARALLEL", "?"), env.get("BENCH_ACCOUNTS", "?")),
        "- Storm (6): p99 probe `h2load -c %s -m 8 --rps %s` for ~%s s, idle and then while "
        "the login client keeps %s logins in flight; per round"
        % (env.get("BENCH_P99_CLIENTS", "?"), env.get("BENCH_P99_RPS", "?"),
           env.get("BENCH_DURATION", "?"), env.get("BENCH_LOGIN_PARALLEL", "?")),
        "- Cases run: %s" % env.get("BENCH_CASES", "?"),
        "",
        "| case | ours req/s | baseline req/s | ratio | goal | result | ours p50 / p99 "
        "| baseline p50 / p99 |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for case in CASES:
        ours = sorted((r for r in rows if r["case"] == case.get("ours_case", case["id"])
                       and r["subject"] == "ours"), key=lambda r: r["round"])
        base = sorted((r for r in rows if r["case"] == case["id"]
                       and r["subject"] == case.get("base", "base")),
                      key=lambda r: r["round"])
        if not base:
            lines.append("| %s | not run (BENCH_CASES) | | | | | | |" % case["title"])
            continue
        if not ours or len(ours) != len(base):
            die("case %s: %d ours rounds, %d baseline rounds" % (case["id"], len(ours), len(base)))
        ratios = [o["rps"] / b["rps"] for o, b in zip(ours, base)]
        ratio = statistics.median(ratios)

        def med(rs, key):
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        fmt = "%.1f" if case["id"] == "login" else "%.0f"
        row = "| %s | " + fmt + " | " + fmt + " | %.2f | %s | %s | %s / %s | %s / %s |"
        goal = case["goal"]
        lines.append(row % (
            case["title"], med(ours, "rps"), med(base, "rps"), ratio,
            "n/a" if goal is None else ">= %.2f" % goal,
            "reported" if goal is None else "pass" if ratio >= goal else "**FAIL**",
            us(med(ours, "p50_us")), us(med(ours, "p99_us")),
            us(med(base, "p50_us")), us(med(base, "p99_us"))))
    lines += storm_text(rows)
    lines += single_text(rows)
    lines += export_text(rows)
    lines += keepup_text(rows)
    lines += console_text(rows)
    lines += [
        "",
        "| service | idle VmRSS (RssAnon, Pss) | idle VmHWM | after load VmRSS (RssAnon) "
        "| after load VmHWM | goal | result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for svc in sorted(rss):
        idle = rss[svc].get("idle")
        load = rss[svc].get("load")
        if not idle or not load:
            die("rss: missing idle or load sample for %s" % svc)
        idle_ok = idle["rss_kib"] <= IDLE_RSS_GOAL_KIB
        goal = "idle VmRSS <= 8 MiB"
        result = "idle %s" % ("pass" if idle_ok else "**FAIL**")
        if svc == LOAD_HWM_SERVICE:
            load_ok = load["hwm_kib"] <= LOAD_HWM_GOAL_KIB
            goal += "; VmHWM under load <= 32 MiB"
            result += "; load %s" % ("pass" if load_ok else "**FAIL**")
        lines.append("| phr-%s | %s (%s, %s) | %s | %s (%s) | %s | %s | %s |" % (
            svc, mib(idle["rss_kib"]), mib(idle["anon_kib"]), mib(idle["pss_kib"]),
            mib(idle["hwm_kib"]), mib(load["rss_kib"]), mib(load["anon_kib"]),
            mib(load["hwm_kib"]), goal, result))
    lines += [
        "",
        "VmRSS counts the pages of shared libraries (RssFile: libcrypto, libc, libpq and its "
        "krb5/ldap/gnutls dependencies) that all four services and nginx share; RssAnon is "
        "the process' own memory, Pss its proportional share.",
        "",
        "Per-round numbers: `%s/results.jsonl`; raw h2load output and logs in `%s/`."
        % (res_dir, res_dir),
        "",
    ]
    return "\n".join(lines)


def cmd_idle(args):
    """Percent of all CPUs busy over ARGS[0] seconds (from /proc/stat), then the 1-min loadavg."""
    def sample():
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(float(args[0]) if args else 2.0)
    t1, i1 = sample()
    busy = 100.0 * (1 - (i1 - i0) / max(t1 - t0, 1))
    with open("/proc/loadavg", encoding="ascii") as f:
        load = f.read().split()[0]
    print("%.1f %s" % (busy, load))


def cmd_settle(args):
    """settle CPU MAX_SECONDS: wait until CPU ('all' or its number) is under 10 % busy for two
    0.5-s samples in a row, at most MAX_SECONDS; prints the seconds waited."""
    key = "cpu " if args[0] == "all" else "cpu%s " % args[0]

    def sample():
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    v = [int(x) for x in line.split()[1:]]
                    return sum(v), v[3] + v[4]
        die("settle: no %r in /proc/stat" % key)
    start = time.monotonic()
    quiet = 0
    t0, i0 = sample()
    while quiet < 2 and time.monotonic() - start < float(args[1]):
        time.sleep(0.5)
        t1, i1 = sample()
        busy = 1 - (i1 - i0) / max(t1 - t0, 1)
        quiet = quiet + 1 if busy < 0.10 else 0
        t0, i0 = t1, i1
    print("%.1f" % (time.monotonic() - start))


def cmd_report(args):
    if len(args) != 3:
        die("usage: report RESULTS RSS_JSON BENCHMARKS_MD")
    results, rss_json, md = args
    with open(results, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(rss_json, encoding="utf-8") as f:
        rss = json.load(f)
    text = report_text(rows, rss, shown_path(os.path.dirname(results)))
    print(text)
    if md == "-":
        return
    head = "# Benchmarks\n\n"
    if os.path.exists(md):
        with open(md, encoding="utf-8") as f:
            old = f.read()
        idx = old.find(SECTION)
        head = old[:idx] if idx >= 0 else old.rstrip("\n") + "\n\n"
    tmp = md + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(head + text)
    os.replace(tmp, md)


def main():
    if len(sys.argv) < 2:
        die("usage: bench.py check|rss|report ...")
    cmds = {"check": cmd_check, "rate": cmd_rate, "rss": cmd_rss, "report": cmd_report,
            "idle": cmd_idle, "settle": cmd_settle,
            "curlcfg": cmd_curlcfg, "curlcheck": cmd_curlcheck, "raw": cmd_raw,
            "token": cmd_token, "pgscript": cmd_pgscript, "pgcheck": cmd_pgcheck,
            "exportparse": cmd_exportparse, "keepup": cmd_keepup, "svccfg": cmd_svccfg,
            "pgvars": cmd_pgvars, "standin": cmd_standin, "operator": cmd_operator,
            "verify": cmd_verify, "consoleparse": cmd_consoleparse}
    cmd = cmds.get(sys.argv[1])
    if cmd is None:
        die("unknown command %s" % sys.argv[1])
    cmd(sys.argv[2:])


if __name__ == "__main__":
    main()
