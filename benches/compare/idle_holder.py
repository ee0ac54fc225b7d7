#!/usr/bin/env python3
"""Hold N idle keep-alive client connections open against one HTTP/1.1 server.

Used by benches/compare.sh to measure a proxy's memory per idle client
connection. Each connection sends one `GET / HTTP/1.1` request, reads the
whole response (Content-Length or chunked), then stays open and idle.

Protocol with the caller (all bounded in time):
  1. open and warm N connections (at most --open-timeout seconds), then
     write one line to READY_FILE: "<ok> <failed>" and keep holding;
  2. wait until CLOSE_FILE exists (at most --hold-timeout seconds), then
     write "<closed_by_peer_while_held>" to DONE_FILE after closing every
     connection gracefully (FIN, no RST).
Exit code 0 when every connection was opened and warmed, 1 otherwise.
"""
import argparse
import asyncio
import os
import resource
import sys
import time


def raise_nofile(want):
    """Raise RLIMIT_NOFILE to `want` if allowed, else to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((want, max(want, hard)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def one(host, port, sem, conns, stats):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["failed"] += 1
            return
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: idle-holder\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), 30)
            if status != 200:
                raise ValueError(status)
        except Exception:
            stats["failed"] += 1
            writer.close()
            return
        conns.append((reader, writer))
        stats["ok"] += 1


async def watch_eof(reader, stats):
    try:
        data = await reader.read(1)
        if not data:
            stats["closed_by_peer"] += 1
    except (OSError, asyncio.CancelledError):
        if not stats.get("closing"):
            stats["closed_by_peer"] += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--close-file", required=True)
    ap.add_argument("--done-file", required=True)
    ap.add_argument("--open-timeout", type=float, default=60)
    ap.add_argument("--hold-timeout", type=float, default=120)
    a = ap.parse_args()

    limit = raise_nofile(65536)
    if limit < a.n + 64:
        print(f"idle_holder: open-file limit {limit} is too low for {a.n} connections", file=sys.stderr)
        return 2

    stats = {"ok": 0, "failed": 0, "closed_by_peer": 0}
    conns = []
    sem = asyncio.Semaphore(a.parallel)
    tasks = [asyncio.create_task(one(a.host, a.port, sem, conns, stats)) for _ in range(a.n)]
    done, pending = await asyncio.wait(tasks, timeout=a.open_timeout)
    for t in pending:
        t.cancel()
        stats["failed"] += 1
    watchers = [asyncio.create_task(watch_eof(r, stats)) for r, _ in conns]
    with open(a.ready_file + ".tmp", "w") as f:
        f.write(f"{stats['ok']} {stats['failed']}\n")
    os.rename(a.ready_file + ".tmp", a.ready_file)

    deadline = time.monotonic() + a.hold_timeout
    while not os.path.exists(a.close_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    closed_while_held = stats["closed_by_peer"]
    stats["closing"] = True
    for t in watchers:
        t.cancel()
    for _, w in conns:
        w.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    with open(a.done_file + ".tmp", "w") as f:
        f.write(f"{closed_while_held}\n")
    os.rename(a.done_file + ".tmp", a.done_file)
    return 0 if stats["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
