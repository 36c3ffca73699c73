#!/usr/bin/env python3
"""Checks that an echo server's memory stays flat over many connection lives.

Starts the server, then runs rounds of 200 concurrent connections (connect,
one 64-byte echo, close), and reads the server's resident set size
(VmRSS) after a warm-up and at the end. Exits 1 if it grew by more than
--max-growth-mb; 2 on a setup error.

A server whose task blocks pile up in a pool that never reuses them (what
`--accept handoff` did before blocks went back to the sender's pool) grows
by a block per connection: 64 MB over 8 000 lives of the echo example.

    tests/outside/rss_churn.py --server target/release/examples/echo_server \
        --server-arg=--workers --server-arg=2 --server-arg=--accept --server-arg=handoff
"""
import argparse
import socket
import subprocess
import sys
import time

from count_allocs import echo_round, free_port

CONCURRENT = 200
MESSAGE = b"x" * 64


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/PID/status")


def lives(port, n):
    """n connection lives, CONCURRENT at a time."""
    done = 0
    while done < n:
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONCURRENT)]
        echo_round(socks, MESSAGE)
        for s in socks:
            s.close()
        done += CONCURRENT


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="echo server binary (takes --addr)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra server argument")
    ap.add_argument("--warmup", type=int, default=2000, help="connection lives before the first reading")
    ap.add_argument("--lives", type=int, default=8000, help="connection lives measured")
    ap.add_argument("--max-growth-mb", type=float, default=8.0)
    args = ap.parse_args()

    port = free_port()
    server = subprocess.Popen([args.server, "--addr", f"127.0.0.1:{port}", *args.server_arg],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if "listening" not in line:
            print(f"rss_churn: server did not start: {line}{server.stderr.read()}", file=sys.stderr)
            return 2
        lives(port, args.warmup)
        time.sleep(0.3)  # let the server finish the last closes
        before = rss_kb(server.pid)
        lives(port, args.lives)
        time.sleep(0.3)
        after = rss_kb(server.pid)
    finally:
        server.kill()
        server.wait()
    growth = (after - before) / 1024
    print(f"rss_churn: RSS {before / 1024:.1f} MB after {args.warmup} connection lives, "
          f"{after / 1024:.1f} MB after {args.lives} more: {growth:+.1f} MB")
    return 1 if growth > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
