#!/usr/bin/env python3
"""Hostile clients and a counting upstream for bench/abuse.sh (standard library only).

    abuse.py upstream PORT            HTTP/1.1 + WebSocket backend that counts connections;
                                      GET /_count answers "accepted open" (its own
                                      connection included in neither)
    abuse.py ATTACK HOST PORT N HOLD  runs ATTACK with N connections (or streams), holds
                                      them HOLD seconds, prints one JSON line of results

Attacks (raw frames, so each misbehaves exactly as described):
    h2_ping_idle   N h2c connections: one request each, then read forever, never ACK PING
    h2_reset       one h2c connection, N streams, each reset 30 ms after its HEADERS
    h1_slow        N HTTP/1.1 connections: GET /big, never read
    h2_zero_window N h2c streams (20 per connection) with SETTINGS_INITIAL_WINDOW_SIZE=0
    ws_fragments   N WebSocket upgrades, then an unfinished ~1 MB first-message fragment
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

# ---------------------------------------------------------------- counting upstream

STATE = {"accepted": 0, "open": 0}
BIG = b"x" * 65536
BIG_CHUNKS = 512  # 32 MiB


async def upstream_conn(reader, writer):
    counted = False
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            path = line.split(" ")[1] if " " in line else "/"
            lower = head.lower()
            if path == "/_count":
                body = f"{STATE['accepted']} {STATE['open']}\n".encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                continue
            if not counted:
                counted = True
                STATE["accepted"] += 1
                STATE["open"] += 1
            if b"upgrade: websocket" in lower:
                key = [l for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")]
                k = key[0].split(b":", 1)[1].strip() if key else b""
                accept = base64.b64encode(hashlib.sha1(k + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
                             b"sec-websocket-accept: " + accept + b"\r\n\r\n")
                await writer.drain()
                while await reader.read(65536):
                    pass
                return
            length = 0
            for l in head.split(b"\r\n"):
                if l.lower().startswith(b"content-length:"):
                    length = int(l.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if path == "/big":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(BIG) * BIG_CHUNKS))
                for _ in range(BIG_CHUNKS):
                    writer.write(BIG)
                    await writer.drain()
            else:
                if path == "/slow":
                    await asyncio.sleep(0.3)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        if counted:
            STATE["open"] -= 1
        writer.close()


async def upstream(port):
    server = await asyncio.start_server(upstream_conn, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()

# ---------------------------------------------------------------- raw HTTP/2

def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def preface(settings=()):
    payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, payload) + frame(4, 1, 0)


def get(stream, path, host=b"localhost"):
    block = bytes([0x82, 0x86, 0x04, len(path)]) + path + bytes([0x01, len(host)]) + host
    return frame(1, 0x5, stream, block)


def rst(stream):
    return frame(3, 0, stream, struct.pack(">I", 8))


async def read_frame(reader):
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    await reader.readexactly(length)
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF


async def until_closed(reader, seen=None):
    """Reads frames (never acknowledging anything) until the connection ends."""
    try:
        while True:
            kind, _, _ = await read_frame(reader)
            if seen is not None:
                seen.add(kind)
    except (asyncio.IncompleteReadError, ConnectionError):
        return


class Held:
    """Connections an attack keeps; `open` counts those the proxy has not closed."""

    def __init__(self):
        self.open = 0
        self.tasks = []
        self.writers = []

    def watch(self, reader, writer, seen=None):
        self.open += 1
        self.writers.append(writer)

        async def run():
            await until_closed(reader, seen)
            self.open -= 1
        self.tasks.append(asyncio.create_task(run()))

    def close(self):
        for t in self.tasks:
            t.cancel()
        for w in self.writers:
            w.close()


async def connect(host, port):
    return await asyncio.open_connection(host, port, limit=1 << 20)


async def h2_ping_idle(host, port, n, held):
    async def one():
        reader, writer = await connect(host, port)
        writer.write(preface() + get(1, b"/"))
        await writer.drain()
        while True:
            kind, flags, stream = await read_frame(reader)
            if stream == 1 and flags & 1 and kind in (0, 1):
                break
        held.watch(reader, writer)
    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return {}


async def h2_reset(host, port, n, held):
    reader, writer = await connect(host, port)
    writer.write(preface())
    await writer.drain()
    seen = set()
    held.watch(reader, writer, seen)
    sent = 0

    async def stream(sid):
        nonlocal sent
        writer.write(get(sid, b"/slow"))
        await writer.drain()
        await asyncio.sleep(0.03)
        writer.write(rst(sid))
        await writer.drain()
        sent += 1
    sids = list(range(1, 2 * n, 2))
    try:
        for i in range(0, n, 20):  # 20 streams in flight at a time
            if held.open == 0:
                break
            await asyncio.gather(*(stream(s) for s in sids[i:i + 20]))
    except ConnectionError:
        pass
    return {"streams_reset": sent, "goaway": 7 in seen}


def established(sock):
    """TCP_INFO's first byte is the state; 1 is ESTABLISHED (a FIN or RST from the proxy ends it)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1
    except OSError:
        return False


async def h1_slow(host, port, n, held):
    async def one():
        reader, writer = await connect(host, port)
        # Small receive buffer: the kernel does not soak up the response for us.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        await writer.drain()
        held.open += 1
        held.writers.append(writer)

        async def run():
            # Never read: buffered bytes hide an EOF, so ask the kernel for the TCP state.
            while established(sock):
                await asyncio.sleep(0.5)
            held.open -= 1
        held.tasks.append(asyncio.create_task(run()))
    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return {}


async def h2_zero_window(host, port, n, held):
    per = 20

    async def one(count):
        reader, writer = await connect(host, port)
        writer.write(preface([(4, 0)]) + b"".join(get(s, b"/big") for s in range(1, 2 * count, 2)))
        await writer.drain()
        held.watch(reader, writer)
    await asyncio.gather(*(one(min(per, n - i)) for i in range(0, n, per)), return_exceptions=True)
    return {}


async def ws_fragments(host, port, n, held):
    async def one():
        reader, writer = await connect(host, port)
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /chat HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                     b"sec-websocket-version: 13\r\nsec-websocket-key: " + key + b"\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            return
        size = 1_000_000
        mask = os.urandom(4)
        # Text frame, FIN=0: the message never ends. Payload zeros masked = the mask repeated.
        header = bytes([0x01, 0x80 | 127]) + struct.pack(">Q", size) + mask
        writer.write(header + (mask * (size // 4)))
        await writer.drain()
        held.watch(reader, writer)
    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return {}


def proxy_side_open(port):
    """Established connections on the proxy's port, as the kernel sees the proxy's end: a
    proxy that closed a connection whose client reads nothing has let go of it, even
    though its FIN waits behind unread bytes and the client still sees it open."""
    import subprocess
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def attack(name, host, port, n, hold, pids):
    held = Held()
    started = time.monotonic()
    extra = await globals()[name](host, port, n, held)
    peak = rss_kb(pids)
    opened = held.open
    while time.monotonic() - started < hold:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_kb(pids))
    result = {"client_open_at_start": opened, "client_open_at_end": proxy_side_open(port),
              "peak_rss_kb": peak, "end_rss_kb": rss_kb(pids), **extra}
    held.close()
    print(json.dumps(result))


def main():
    if sys.argv[1] == "upstream":
        asyncio.run(upstream(int(sys.argv[2])))
        return
    name, host, port, n, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    pids = [int(p) for p in sys.argv[6].split(",")] if len(sys.argv) > 6 else []
    asyncio.run(attack(name, host, port, n, hold, pids))


if __name__ == "__main__":
    main()
