#!/usr/bin/python3
"""load.py - the steady mixed load of the fault suite (tests/faults/run.sh).

    load.py --gateway HOST:PORT --log FILE [--writers N] [--rate R] [--notify-every S]
            [--deadline S] [--ready FILE]

Talks HTTP/2 over TLS to the gateway (python3-h2, one connection per worker thread, as a
browser or app would) until SIGTERM or SIGINT:

  writers    patients (registered at the start) writing records with POST /api/v1/me/records
             and an Idempotency-Key (a failed or unanswered attempt is retried with the same
             key and body until acknowledged or given up), then reading the record back and
             listing their newest records; together about R writes per second;
  notifier   every S seconds a new account (POST /api/v1/auth/register: an email_verification
             e-mail) and a password reset request for it (202: a password_reset e-mail).

Every attempt gets a deadline (default 10 s): an answer later than that is a hang. One JSON
object per line goes to FILE (appended, flushed per line):

  {"ev":"req","t":START,"dur":SECONDS,"m":METHOD,"p":PATH_KIND,"st":STATUS,"ra":RETRY_AFTER,
   "err":TEXT,"refused":N}      every attempt; st 0 = no answer (err says why), "deadline" in
                               err = the deadline passed; refused = sent again on a new
                               connection N times because the server had not processed it
  {"ev":"ack","t":T,"kind":"record","id":ID,"patient":ACCOUNT_ID}     a 201 of a record write
  {"ev":"ack","t":T,"kind":KIND,"to":EMAIL}   a 201 register (email_verification) or 202 reset
                                               request (password_reset): one e-mail is owed
  {"ev":"unsure","t":T,"to":EMAIL}            an attempt for EMAIL got no clear answer: it may
                                               or may not have been committed
  {"ev":"info","msg":TEXT}

--ready FILE is created once the patients are registered and logged in. Passwords and tokens are
never written anywhere.
"""

import argparse
import json
import random
import secrets
import signal
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.errors
import h2.connection
import h2.events
import h2.exceptions

STOP = threading.Event()
LOG_LOCK = threading.Lock()
LOG_FILE = None


def log(obj):
    line = json.dumps(obj, separators=(",", ":"))
    with LOG_LOCK:
        LOG_FILE.write(line + "\n")
        LOG_FILE.flush()


class Unprocessed(Exception):
    """The server did not process the stream: safe to send again."""


class Connection(h2.connection.H2Connection):
    """h2 closes the whole connection on any GOAWAY, so the answers to streams the server
    still processes after a graceful one (NO_ERROR, RFC 9113 section 6.8: nginx on reload,
    a draining service) would be refused as protocol errors. Keep receiving instead; the
    client opens no new stream on such a connection."""

    def _receive_goaway_frame(self, frame):
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class H2Client:
    """One HTTP/2 connection, one request at a time; reconnects after any error."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.sock = None
        self.conn = None
        self.goaway = False
        self.refused = 0  # unprocessed sends of the last request (sent again)
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.ctx.set_alpn_protocols(["h2"])

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.conn = None
        self.goaway = False

    def _connect(self, deadline):
        raw = socket.create_connection((self.host, self.port),
                                       timeout=max(0.1, deadline - time.monotonic()))
        try:
            self.sock = self.ctx.wrap_socket(raw, server_hostname="localhost")
        except Exception:
            raw.close()
            raise
        if self.sock.selected_alpn_protocol() != "h2":
            self.close()
            raise ConnectionError("no h2 from the gateway")
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = Connection(config=cfg)
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def request(self, method, path, body=None, headers=(), timeout=10.0):
        """(status, headers dict, body bytes, error text); status 0 when unanswered.

        A stream the server refused unprocessed (above a GOAWAY's last stream id, or
        REFUSED_STREAM) is sent again on a new connection within the same deadline, as
        RFC 9113 section 8.7 allows for any method."""
        deadline = time.monotonic() + timeout
        self.refused = 0
        while True:
            try:
                out = self._request(method, path, body, headers, deadline) + ("",)
                if self.goaway:
                    self.close()  # no new streams on a connection that is going away
                return out
            except Unprocessed:
                self.refused += 1
                self.close()
                if time.monotonic() < deadline:
                    continue
                return 0, {}, b"", "deadline: refused until the deadline"
            except (OSError, ssl.SSLError, ConnectionError, h2.exceptions.ProtocolError) as e:
                self.close()
                what = "deadline" if time.monotonic() >= deadline else type(e).__name__
                return 0, {}, b"", "%s: %s" % (what, str(e)[:120])

    def _request(self, method, path, body, headers, deadline):
        if self.conn is None:
            self._connect(deadline)
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", "%s:%d" % (self.host, self.port))]
        hdrs += list(headers)
        if body is not None:
            hdrs += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self.conn.send_headers(sid, hdrs, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status, rh, data = 0, {}, bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionError("no answer before the deadline")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    rh = dict(ev.headers)
                    status = int(rh.get(":status", "0"))
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if ev.stream_id == sid:
                        data += ev.data
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self.sock.sendall(self.conn.data_to_send())
                    return status, rh, bytes(data)
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    if ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                        raise Unprocessed()
                    raise ConnectionError("stream reset (error %s)" % ev.error_code)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    if ev.last_stream_id is not None and ev.last_stream_id < sid:
                        raise Unprocessed()
                    if ev.error_code != h2.errors.ErrorCodes.NO_ERROR:
                        raise ConnectionError("GOAWAY error %s" % ev.error_code)
                    # graceful: our stream is still answered, then the connection closes
                    self.goaway = True
            self.sock.sendall(self.conn.data_to_send())


class Api:
    """Requests with the per-attempt log line."""

    def __init__(self, args):
        host, port = args.gateway.rsplit(":", 1)
        self.cli = H2Client(host, int(port))
        self.timeout = args.deadline

    def call(self, method, path, kind, body=None, token=None, key=None):
        headers = []
        if token:
            headers.append(("authorization", "Bearer " + token))
        if key:
            headers.append(("idempotency-key", key))
        raw = None if body is None else json.dumps(body).encode()
        t0 = time.time()
        m0 = time.monotonic()
        st, rh, data, err = self.cli.request(method, path, raw, headers, self.timeout)
        dur = time.monotonic() - m0
        if st != 0 and rh.get("connection", "") == "close":
            self.cli.close()
        try:
            obj = json.loads(data) if data else {}
        except ValueError:
            obj = {}
        line = {"ev": "req", "t": round(t0, 3), "dur": round(dur, 3), "m": method, "p": kind,
                "st": st}
        if "retry-after" in rh:
            line["ra"] = rh["retry-after"]
        if self.cli.refused:
            line["refused"] = self.cli.refused
        if err:
            line["err"] = err
        elif st >= 400 and isinstance(obj, dict) and obj.get("code"):
            line["err"] = str(obj.get("code"))[:60]
        log(line)
        return st, rh, obj

    def close(self):
        self.cli.close()


def pause(st, rh, base=0.3):
    """Back-off before a retry: Retry-After when given (at most 3 s), else |base|."""
    try:
        wait = min(3.0, float(rh.get("retry-after", base)))
    except ValueError:
        wait = base
    STOP.wait(max(base, wait))


def new_password():
    return "Fx9!" + secrets.token_urlsafe(12)


def email(tag):
    return "faults-%s-%s@example.jp" % (tag, secrets.token_hex(6))


class Patient:
    def __init__(self, api, n):
        self.api = api
        self.email = email("p%d" % n)
        self.password = new_password()
        self.token = None
        self.id = None

    def register(self):
        while not STOP.is_set():
            st, rh, _ = self.api.call("POST", "/api/v1/auth/register", "register",
                                      {"email": self.email, "password": self.password,
                                       "name": "Fault Patient"})
            if st in (201, 202, 409):
                return True
            pause(st, rh, 1.0)
        return False

    def login(self):
        while not STOP.is_set():
            st, rh, obj = self.api.call("POST", "/api/v1/auth/login", "login",
                                        {"email": self.email, "password": self.password})
            if st == 200 and obj.get("token"):
                self.token = obj["token"]
                acc = obj.get("account") or {}
                self.id = acc.get("id") or obj.get("account_id") or self.id
                return True
            pause(st, rh, 0.5)
        return False


def writer(args, n, ready_barrier):
    api = Api(args)
    p = Patient(api, n)
    ok = p.register() and p.login()
    ready_barrier.wait()
    if not ok:
        api.close()
        return
    period = args.writers / max(0.1, args.rate)
    seq = 0
    next_t = time.monotonic() + random.random() * period
    while not STOP.is_set():
        STOP.wait(max(0.0, next_t - time.monotonic()))
        if STOP.is_set():
            break
        next_t += period
        seq += 1
        key = "faults-%d-%d-%s" % (n, seq, secrets.token_hex(4))
        body = {"type": "body_weight", "measured_at": "2026-11-20T07:30:00+09:00",
                "values": {"value": round(50 + random.random() * 30, 1)}}
        give_up = time.monotonic() + args.give_up
        rid = None
        while not STOP.is_set() and time.monotonic() < give_up:
            st, rh, obj = api.call("POST", "/api/v1/me/records", "record.create", body,
                                   p.token, key)
            if st == 201 and obj.get("id"):
                rid = obj["id"]
                log({"ev": "ack", "t": round(time.time(), 3), "kind": "record", "id": rid,
                     "patient": p.id})
                break
            if st == 401:
                p.login()
                continue
            if st in (400, 403, 404, 422):
                log({"ev": "info", "msg": "record write refused: %d" % st})
                break
            pause(st, rh)
        if rid is None:
            continue
        api.call("GET", "/api/v1/me/records/" + rid, "record.read", token=p.token)
        api.call("GET", "/api/v1/me/records?limit=5", "record.list", token=p.token)
    api.close()


def notifier(args):
    api = Api(args)
    while not STOP.is_set():
        t_next = time.monotonic() + args.notify_every
        addr = email("n")
        pw = new_password()
        st, _, _ = api.call("POST", "/api/v1/auth/register", "register",
                            {"email": addr, "password": pw, "name": "Fault Notify"})
        if st == 201:
            log({"ev": "ack", "t": round(time.time(), 3), "kind": "email_verification",
                 "to": addr})
            st, _, _ = api.call("POST", "/api/v1/auth/password-reset/request", "reset.request",
                                {"email": addr})
            if st == 202:
                log({"ev": "ack", "t": round(time.time(), 3), "kind": "password_reset",
                     "to": addr})
            elif st == 0 or st >= 500:
                log({"ev": "unsure", "t": round(time.time(), 3), "to": addr})
        elif st == 0 or st >= 500:
            log({"ev": "unsure", "t": round(time.time(), 3), "to": addr})
        STOP.wait(max(0.0, t_next - time.monotonic()))
    api.close()


def main():
    global LOG_FILE
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=6.0, help="record writes per second")
    ap.add_argument("--notify-every", type=float, default=1.5)
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--give-up", type=float, default=60.0,
                    help="seconds a write is retried before it is given up")
    ap.add_argument("--ready")
    args = ap.parse_args()
    LOG_FILE = open(args.log, "a", encoding="utf-8")
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())

    barrier = threading.Barrier(args.writers + 1)
    threads = [threading.Thread(target=writer, args=(args, i, barrier), daemon=True)
               for i in range(args.writers)]
    for t in threads:
        t.start()
    barrier.wait()
    if args.ready:
        with open(args.ready, "w", encoding="utf-8") as f:
            f.write("ready\n")
    log({"ev": "info", "msg": "load started: %d writers, %.1f writes/s" % (args.writers,
                                                                           args.rate)})
    nt = threading.Thread(target=notifier, args=(args,), daemon=True)
    nt.start()
    threads.append(nt)
    while not STOP.is_set():
        STOP.wait(0.5)
    for t in threads:
        t.join(timeout=args.deadline + 5)
    log({"ev": "info", "msg": "load stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
