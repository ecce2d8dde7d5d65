#!/usr/bin/env python3
"""Opens STREAMS event streams spread over USERS users, then creates tasks
through the API at RATE per second for SECONDS, and reports how long each
change took from its create request being sent to its event arriving at
every stream of its user, plus the server's memory with the streams open.
bench/streams.sh runs it against a fresh server; see there.

    bench/streams.py BASE_URL BINARY SERVER_PID USERS STREAMS RATE SECONDS
"""
import asyncio
import json
import subprocess
import sys
import time
import urllib.parse

base, binary, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
users, streams, rate, seconds = (int(arg) for arg in sys.argv[4:8])
url = urllib.parse.urlsplit(base)


def rss_mb():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def token(user):
    return subprocess.run([binary, "token", "--sub", user, "--ttl", "2h"],
                          check=True, capture_output=True, text=True).stdout.strip()


async def request(method, path, token_, body=None):
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token_}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload)
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, rest = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, rest


arrivals = {}   # task_id -> list of arrival times
sent = {}       # task_id -> send time
opened = 0


async def stream(user, token_, ready):
    global opened
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    # HTTP/1.0: the body is the bare event stream, without the chunk framing
    # HTTP/1.1 would put between (and within) its lines.
    writer.write(
        f"GET /api/{user}/events HTTP/1.0\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {token_}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    assert b" 200 " in status_line, status_line
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    opened += 1
    if opened == streams:
        ready.set()
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            change = json.loads(line[6:])
            arrivals.setdefault(change["task_id"], []).append(time.perf_counter())


async def main():
    names = [f"streamer{n}" for n in range(users)]
    tokens = {name: token(name) for name in names}
    idle = rss_mb()
    ready = asyncio.Event()
    tasks = [asyncio.create_task(stream(names[n % users], tokens[names[n % users]], ready))
             for n in range(streams)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(1)
    with_streams = rss_mb()

    async def create(n):
        user = names[n % users]
        started = time.perf_counter()
        status, body = await request("POST", f"/api/{user}/tasks", tokens[user], {"title": f"bench {n}"})
        assert status == 201, (status, body)
        sent[json.loads(body)["id"]] = started

    writes = []
    for n in range(rate * seconds):
        writes.append(asyncio.create_task(create(n)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*writes)
    await asyncio.sleep(2)
    peak = rss_mb()
    per_user = streams // users
    latencies = sorted(
        arrival - sent[task_id]
        for task_id, times in arrivals.items() if task_id in sent
        for arrival in times)
    expected = len(sent) * per_user
    missing = expected - len(latencies)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    print(f"streams open: {streams} for {users} users; creates: {len(sent)} at {rate}/s")
    print(f"deliveries: {len(latencies)} of {expected} ({missing} missing)")
    print(f"send-to-delivery ms: p50 {pct(50):.1f}  p95 {pct(95):.1f}  p99 {pct(99):.1f}  max {latencies[-1] * 1000:.1f}")
    print(f"server RSS MB: idle {idle:.1f}, {streams} streams open {with_streams:.1f} "
          f"(+{with_streams - idle:.1f}), after the writes {peak:.1f}")
    for task in tasks:
        task.cancel()


asyncio.run(main())
