#!/usr/bin/env python3
"""Counts a running echo server's heap allocations from outside the process.

Builds malloc_count.so (beside this file) with cc, starts the server with it
preloaded, warms up, then asks the server for its allocation count (SIGUSR2)
before and after two phases:

* messages: C connections echo M messages each (64 bytes), closed loop;
* connections: K short connection lives (connect, echo, close).

Prints allocations per message and per connection, and large copies (memcpy
calls of 4 KiB or more: the shim's doc) per message and per connection; a
connection life's large copies are the copies of its task's future, which
spawning makes once. Exits 1 if the message phase allocated anything (the
zero-allocation promise) or, with --max-per-connection or
--max-copies-per-connection, if a connection life allocated or copied more
than that; 2 on a setup error.

    tests/outside/count_allocs.py --server target/release/examples/echo_server
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def build_shim(out_dir):
    shim = os.path.join(out_dir, "malloc_count.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim,
                    os.path.join(HERE, "malloc_count.c")], check=True)
    return shim


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_round(socks, payload):
    for s in socks:
        s.sendall(payload)
    for s in socks:
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                raise RuntimeError("server closed a connection")
            got += chunk
        if got != payload:
            raise RuntimeError("echo mismatch")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="echo server binary (takes --addr)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra server argument")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000, help="per connection")
    ap.add_argument("--lives", type=int, default=200, help="connection lives to count")
    ap.add_argument("--max-per-connection", type=float, default=None,
                    help="also fail (exit 1) if a connection life allocates more than this")
    ap.add_argument("--max-copies-per-connection", type=float, default=None,
                    help="also fail (exit 1) if a connection life makes more large copies than this")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cellio-allocs-")
    counts = os.path.join(work, "counts")
    shim = build_shim(work)
    port = free_port()
    env = dict(os.environ, LD_PRELOAD=shim, MALLOC_COUNT_FILE=counts)
    server = subprocess.Popen([args.server, "--addr", f"127.0.0.1:{port}", *args.server_arg],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if "listening" not in line:
            print(f"count_allocs: server did not start: {line}{server.stderr.read()}", file=sys.stderr)
            return 2

        def reports():
            return open(counts).read().splitlines() if os.path.exists(counts) else []

        def snapshot():
            """(allocations, large copies) so far."""
            time.sleep(0.3)  # let the server finish the last echo
            before = len(reports())
            server.send_signal(signal.SIGUSR2)
            deadline = time.time() + 5
            while time.time() < deadline:
                lines = reports()
                if len(lines) > before:
                    allocations, copies = lines[-1].split()
                    return int(allocations), int(copies)
                time.sleep(0.05)
            raise RuntimeError("server did not report its allocation count")

        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.connections)]
        for s in socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(200):  # warm-up
            echo_round(socks, bytes([i % 251]) * 64)
        a = snapshot()
        for i in range(args.messages):
            echo_round(socks, bytes([(i * 7) % 251]) * 64)
        b = snapshot()
        for s in socks:
            s.close()
        for i in range(20):  # warm-up of connection lives
            with socket.create_connection(("127.0.0.1", port)) as c:
                echo_round([c], b"warm")
        c0 = snapshot()
        for i in range(args.lives):
            with socket.create_connection(("127.0.0.1", port)) as c:
                echo_round([c], b"life %d" % i)
        c1 = snapshot()
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    messages = args.connections * args.messages
    allocs, copies = b[0] - a[0], b[1] - a[1]
    print(f"count_allocs: {messages} messages: {allocs} allocations "
          f"({allocs / messages:.4f} per message), {copies} large copies")
    life_allocs, life_copies = c1[0] - c0[0], c1[1] - c0[1]
    print(f"count_allocs: {args.lives} connection lives: {life_allocs} allocations "
          f"({life_allocs / args.lives:.2f} per connection), {life_copies} large copies "
          f"({life_copies / args.lives:.2f} per connection)")
    if allocs != 0:
        return 1
    if args.max_per_connection is not None and life_allocs / args.lives > args.max_per_connection:
        return 1
    if (args.max_copies_per_connection is not None
            and life_copies / args.lives > args.max_copies_per_connection):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
