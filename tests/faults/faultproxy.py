#!/usr/bin/python3
"""faultproxy.py - a fault-injecting TCP proxy for the fault suite (tests/faults/run.sh).

    faultproxy.py serve LISTEN_PORT UPSTREAM_PORT CONTROL_PORT   (127.0.0.1 only)
    faultproxy.py ctl CONTROL_PORT MODE                           MODE: pass|blackhole|reset|stats

Sits between the services and PostgreSQL (or any TCP server). Modes, switched at run time
through the control port (one line in, one JSON line out):

  pass       bytes flow both ways (the default);
  blackhole  nothing flows and nothing is closed: open connections stall (the bytes wait, as
             TCP would retransmit them during a partition), new connections are accepted but
             not connected upstream until the mode changes - a peer sees only silence, so only
             its own timeouts can save it;
  reset      every open connection and every new one is closed with a TCP RST;
  stats      (not a mode) answers {"mode", "open", "accepted", "reset"}.

When a stalled connection's client gives up and closes it, its upstream side is closed too.
"""

import asyncio
import json
import socket
import struct
import sys


class Proxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.mode = "pass"
        self.conns = set()
        self.accepted = 0
        self.resets = 0

    @staticmethod
    def rst(writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()

    def set_mode(self, mode):
        self.mode = mode
        if mode == "blackhole":
            self.flowing.clear()
        else:
            self.flowing.set()
        if mode == "reset":
            for pair in list(self.conns):
                for w in pair:
                    if w is not None:
                        self.rst(w)
                        self.resets += 1

    async def pump(self, reader, writer, pair):
        try:
            while True:
                await self.flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in pair:
                if w is not None:
                    w.close()

    async def handle(self, creader, cwriter):
        self.accepted += 1
        pair = [cwriter, None]
        self.conns.add(tuple(pair))
        key = tuple(pair)
        try:
            if self.mode == "reset":
                self.rst(cwriter)
                self.resets += 1
                return
            # Blackhole: the client waits in silence; it may give up meanwhile.
            while not self.flowing.is_set():
                try:
                    await asyncio.wait_for(self.flowing.wait(), 0.2)
                except asyncio.TimeoutError:
                    if cwriter.is_closing() or creader.at_eof():
                        cwriter.close()
                        return
            try:
                ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                cwriter.close()
                return
            pair[1] = uwriter
            self.conns.discard(key)
            key = tuple(pair)
            self.conns.add(key)
            await asyncio.gather(self.pump(creader, uwriter, pair),
                                 self.pump(ureader, cwriter, pair))
        finally:
            self.conns.discard(key)

    async def control(self, reader, writer):
        try:
            line = (await reader.readline()).decode().strip()
            if line in ("pass", "blackhole", "reset"):
                self.set_mode(line)
            elif line != "stats":
                writer.write(b'{"error":"unknown command"}\n')
                return
            writer.write((json.dumps({"mode": self.mode, "open": len(self.conns),
                                      "accepted": self.accepted, "reset": self.resets})
                          + "\n").encode())
            await writer.drain()
        finally:
            writer.close()


async def serve(listen_port, upstream_port, control_port):
    p = Proxy(upstream_port)
    s1 = await asyncio.start_server(p.handle, "127.0.0.1", listen_port)
    s2 = await asyncio.start_server(p.control, "127.0.0.1", control_port)
    print("faultproxy: 127.0.0.1:%d -> 127.0.0.1:%d, control 127.0.0.1:%d"
          % (listen_port, upstream_port, control_port), flush=True)
    async with s1, s2:
        await asyncio.gather(s1.serve_forever(), s2.serve_forever())


def ctl(control_port, mode):
    with socket.create_connection(("127.0.0.1", control_port), timeout=5) as s:
        s.sendall((mode + "\n").encode())
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    sys.stdout.write(out.decode())
    return 0 if b'"mode"' in out else 1


def main(argv):
    if len(argv) == 5 and argv[1] == "serve":
        asyncio.run(serve(int(argv[2]), int(argv[3]), int(argv[4])))
        return 0
    if len(argv) == 4 and argv[1] == "ctl":
        return ctl(int(argv[2]), argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
