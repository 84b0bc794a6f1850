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
  bench.py report RESULTS RSS_JSON BENCHMARKS_MD
      Print the Markdown report and rewrite the "## Latest run" section of BENCHMARKS_MD
      (everything from that heading to the end of the file).

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
]
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
    if len(args) != 9:
        die("usage: curlcheck RESULTS CASE SUBJECT ROUND OUT T0 T1 STATUS N")
    results, case, subject, rnd, out = args[:5]
    t0, t1, status, n = float(args[5]), float(args[6]), args[7], int(args[8])
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
        "rps": count / (t1 - t0), "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99),
        "n": count,
    }
    if results != "/dev/null":
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    print("  %-12s %-6s round %s: %8.1f req/s  p50 %6d us  p99 %6d us  (%d requests)"
          % (case, subject, rnd, row["rps"], row["p50_us"], row["p99_us"], count))


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


def report_text(rows, rss):
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
        ours = sorted((r for r in rows if r["case"] == case["id"] and r["subject"] == "ours"),
                      key=lambda r: r["round"])
        base = sorted((r for r in rows if r["case"] == case["id"]
                       and r["subject"] == case.get("base", "base")),
                      key=lambda r: r["round"])
        if not ours and not base:
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
        row = "| %s | " + fmt + " | " + fmt + " | %.2f | >= %.2f | %s | %s / %s | %s / %s |"
        lines.append(row % (
            case["title"], med(ours, "rps"), med(base, "rps"), ratio, case["goal"],
            "pass" if ratio >= case["goal"] else "**FAIL**",
            us(med(ours, "p50_us")), us(med(ours, "p99_us")),
            us(med(base, "p50_us")), us(med(base, "p99_us"))))
    lines += storm_text(rows)
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
        "Per-round numbers: `var/bench/results/results.jsonl`; raw h2load output and logs "
        "in `var/bench/results/`.",
        "",
    ]
    return "\n".join(lines)


def cmd_report(args):
    if len(args) != 3:
        die("usage: report RESULTS RSS_JSON BENCHMARKS_MD")
    results, rss_json, md = args
    with open(results, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(rss_json, encoding="utf-8") as f:
        rss = json.load(f)
    text = report_text(rows, rss)
    print(text)
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
            "curlcfg": cmd_curlcfg, "curlcheck": cmd_curlcheck, "raw": cmd_raw,
            "token": cmd_token}
    cmd = cmds.get(sys.argv[1])
    if cmd is None:
        die("unknown command %s" % sys.argv[1])
    cmd(sys.argv[2:])


if __name__ == "__main__":
    main()
