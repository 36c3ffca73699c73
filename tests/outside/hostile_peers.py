#!/usr/bin/env python3
"""hostile_peers: peers that misbehave against an echo server (Python 3 stdlib; Linux).

Where echo_check.py checks that well-behaved clients get every byte back,
this checks that badly behaved ones cost the server nothing lasting. It
opens --connections connections from 8 threads, each one of four kinds,
picked at random:

  * reset: connect, perhaps send a little, then close with SO_LINGER 0 (an RST);
  * half-close: send up to 200 KB while reading, shut down the write side,
    read to EOF: the echo must equal what was sent;
  * flood: send until the buffers are full, never read, close;
  * drop: connect and close at once.

Then the server (--pid) must be as it was: its open descriptors back to the
count before the run (a leak shows here), no CPU used over a second of quiet
(a spin shows here), and a new connection still echoed.

    python3 tests/outside/hostile_peers.py --addr 127.0.0.1:7000 --pid PID

Exits 0 if all holds, 1 otherwise (saying what). The run is bounded by
--timeout seconds (default 60; exit 2 past it).

Last line on success:
    hostile_peers: N connections (reset R, half-close H, flood F, drop D), descriptors back to B
"""

import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

PROG = "hostile_peers"
THREADS = 8


def fail(msg, code=1):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_ticks(pid):
    # utime and stime, fields 14 and 15 of /proc/PID/stat (after the
    # parenthesised name, which may hold spaces).
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def reset(addr):
    s = socket.create_connection(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if random.random() < 0.5:
        s.sendall(os.urandom(random.randint(1, 5000)))
    s.close()


def half_close(addr):
    s = socket.create_connection(addr)
    s.settimeout(20)
    data = os.urandom(random.randint(1, 200_000))

    def write():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write)
    writer.start()
    got = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    writer.join()
    s.close()
    if got != data:
        raise AssertionError(f"half-close: {len(got)} bytes back for {len(data)} sent, or different")


def flood(addr):
    s = socket.create_connection(addr)
    s.setblocking(False)
    chunk = b"f" * 65536
    try:
        for _ in range(100):
            s.send(chunk)
    except BlockingIOError:
        pass
    time.sleep(0.02)
    s.close()


def drop(addr):
    socket.create_connection(addr).close()


KINDS = {"reset": reset, "half-close": half_close, "flood": flood, "drop": drop}


def echoes(addr):
    s = socket.create_connection(addr, timeout=5)
    s.settimeout(5)
    s.sendall(b"still there?")
    got = b""
    while len(got) < 12:
        chunk = s.recv(12 - len(got))
        if not chunk:
            break
        got += chunk
    s.close()
    return got == b"still there?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", required=True, help="HOST:PORT of the echo server")
    ap.add_argument("--pid", type=int, required=True, help="the server's process id")
    ap.add_argument("--connections", type=int, default=1200)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    host, _, port = args.addr.rpartition(":")
    addr = (host.strip("[]"), int(port))
    deadline = time.monotonic() + args.timeout
    if not os.path.isdir(f"/proc/{args.pid}/fd"):
        fail(f"no process {args.pid} to watch (--pid)")

    base = descriptors(args.pid)
    counts = {k: 0 for k in KINDS}
    errors = []
    lock = threading.Lock()

    def worker(n):
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            name = random.choice(list(KINDS))
            try:
                KINDS[name](addr)
                with lock:
                    counts[name] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    errors.append(f"{name}: {e!r}")

    per = -(-args.connections // THREADS)
    threads = [threading.Thread(target=worker, args=(per,), daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads) or time.monotonic() > deadline:
        fail(f"the run did not finish within {args.timeout:.0f} s", 2)
    if errors:
        for e in errors[:5]:
            print(f"{PROG}: {e}", file=sys.stderr)
        fail(f"{len(errors)} peers saw the server misbehave")

    # The server closes what the peers left: give it 10 s (an accept loop
    # that backs off waits at most 1 s between tries).
    settle = min(deadline, time.monotonic() + 10)
    now = descriptors(args.pid)
    while now > base and time.monotonic() < settle:
        time.sleep(0.1)
        now = descriptors(args.pid)
    if now != base:
        fail(f"the server holds {now} descriptors after the run, {base} before")
    before = cpu_ticks(args.pid)
    time.sleep(1.0)
    spent = cpu_ticks(args.pid) - before
    if spent > 2:
        fail(f"the server used {spent} ticks of CPU in a second with no peer (a spin?)")
    if not echoes(addr):
        fail("a new connection is not echoed after the run")
    total = sum(counts.values())
    kinds = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"{PROG}: {total} connections ({kinds}), descriptors back to {base}")


if __name__ == "__main__":
    main()
