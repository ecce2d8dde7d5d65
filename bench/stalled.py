#!/usr/bin/env python3
"""Memory of slow and idle clients: opens N connections of one kind to a
running server, measures its resident memory (from /proc) before, while they
are held, and after the server's timeout has closed them.

    bench/stalled.sh   # builds, starts the server, runs every kind

Kinds: idle (connects, sends nothing), keepalive (one request answered 401
without touching the database, then idle),
partial (a 1 KiB head that never ends, as a slowloris sends), bighead (a
15 KiB head that never ends, just under the 16 KiB limit), body (headers, then
1 byte of a 100-byte body).
"""
import os
import socket
import sys
import time

PORT = int(os.environ.get("PORT", "18124"))
PID = int(os.environ["SERVER_PID"])
COUNT = int(os.environ.get("COUNT", "1000"))
WAIT = float(os.environ.get("WAIT", "12"))  # past HEADER_TIMEOUT/KEEP_ALIVE_TIMEOUT/BODY_TIMEOUT


def rss_mb():
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def opening(kind):
    if kind == "idle":
        return b""
    if kind == "keepalive":
        return b"GET /api/u/tasks HTTP/1.1\r\nHost: bench\r\n\r\n"
    if kind == "partial":
        return b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Padding: " + b"a" * 1024
    if kind == "bighead":
        return b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Padding: " + b"a" * 15 * 1024
    if kind == "body":
        return (b"POST /api/u/tasks HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{")
    raise ValueError(kind)


def run(kind):
    before = rss_mb()
    held = []
    for _ in range(COUNT):
        s = socket.create_connection(("127.0.0.1", PORT))
        data = opening(kind)
        if data:
            s.sendall(data)
        held.append(s)
    time.sleep(1)
    during = rss_mb()
    time.sleep(WAIT)
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    after = rss_mb()
    print(f"{kind:10} {COUNT} held: {before:6.1f} -> {during:6.1f} MB (+{during - before:5.1f}); "
          f"closed by the server within {WAIT:.0f} s: {closed}/{COUNT}; after: {after:6.1f} MB")
    return during - before, closed


if __name__ == "__main__":
    worst = 0.0
    for kind in sys.argv[1:] or ["idle", "keepalive", "partial", "bighead", "body"]:
        growth, closed = run(kind)
        worst = max(worst, growth)
    print(f"largest growth: {worst:.1f} MB for {COUNT} connections")
