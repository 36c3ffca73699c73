#!/usr/bin/env python3
"""unix_compare: messages/s and server CPU per echoed message of cellio's Unix-domain stream
echo server (on the stream's futures, and through a `UnixIo`: cellio-io) and tokio
current_thread's (`tokio_echo --unix`), under the same closed-loop load from cellio's load
client (`load --unix`, every echo checked byte for byte).

Each server runs pinned to CPU 0 and the client to CPU 1. The server's user and system CPU come
from /proc/PID/stat from the end of the client's warm-up (timed by this script) to the client's
exit, divided by the messages the client measured: teardown is in the CPU, so the figures lean
a little high, the same way for every server. The servers are interleaved, the order reversed
every other round, and the table gives medians. User figures come from clock ticks (CLK_TCK,
usually 100 per second): use several rounds.

`--callgrind` instead counts user-space instructions per echoed message, exactly: each server
runs under `valgrind --tool=callgrind` while `load --unix --requests N` (20 connections, not
pinned) sends N and then 4N messages; the difference of the two runs' instructions over the
difference of their messages leaves start-up and teardown out.

Build first:  cargo build --release -p cellio-benches --bin tokio_echo &&
              cargo build --release --example unix_echo_server --example load
Run:          python3 benches/scripts/unix_compare.py [--rounds 5] [--secs 5] [--tcp] [--callgrind]
(`--tcp` also needs `cargo build --release --example echo_server`.)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from cpu_window import TICK_NS, measure

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")
CELLIO = os.path.join(REL, "examples", "unix_echo_server")
SERVERS = {
    "tokio-current": [os.path.join(REL, "tokio_echo"), "--unix"],
    "cellio": [CELLIO, "--path"],
    "cellio-io": [CELLIO, "--api", "poll", "--path"],
}
CLIENT = os.path.join(REL, "examples", "load")
# `--tcp`: cellio's TCP echo server over loopback in the same rotation, so that what the
# kernel costs per message over a Unix stream and over TCP comes from one run.
TCP_SERVER = "cellio-tcp"
TCP_COMMAND = [os.path.join(REL, "examples", "echo_server"), "--addr"]


def one_run(name, path, a):
    if name == TCP_SERVER:
        # The "path" is then a loopback address.
        command, target = TCP_COMMAND + [path], ["--addr", path]
    else:
        command, target = SERVERS[name] + [path], ["--unix", path]
    server = subprocess.Popen(["taskset", "-c", a.server_cpu] + command,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"{name} did not start: {line!r} {server.stderr.read()}")
        result, (user, system) = measure(
            server.pid,
            ["taskset", "-c", a.client_cpu, CLIENT] + target + ["--connections",
             str(a.connections), "--size", str(a.size), "--warmup", f"{a.warmup}s",
             "--duration", f"{a.secs}s", "--json"], a.warmup, name)
    finally:
        server.terminate()
        server.wait()
    n = result["msgs"]
    return (result["msgs_per_sec"], user * TICK_NS / n, system * TICK_NS / n, result["p99_us"])


def callgrind_run(name, path, requests):
    """Instructions the server ran, and messages echoed, for `requests` messages."""
    with tempfile.TemporaryDirectory(prefix="cellio-callgrind-") as out_dir:
        out = os.path.join(out_dir, "callgrind.out")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + SERVERS[name]
            + [path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline()
            if not line.startswith("listening on"):
                raise RuntimeError(f"{name} did not start under callgrind: {line!r}")
            client = subprocess.run(
                [CLIENT, "--unix", path, "--connections", "20", "--requests", str(requests),
                 "--warmup", "0s", "--json"], capture_output=True, text=True, check=True)
            msgs = json.loads(client.stdout)["msgs"]
        finally:
            server.terminate()
            server.wait()
        with open(out) as f:
            total = next(int(l.split()[1]) for l in f if l.startswith("summary:"))
    return total, msgs


def callgrind(a):
    n = a.requests
    with tempfile.TemporaryDirectory(prefix="cellio-unix-compare-") as tmp:
        per = {}
        for name in SERVERS:
            small = callgrind_run(name, os.path.join(tmp, f"{name}-s.sock"), n)
            large = callgrind_run(name, os.path.join(tmp, f"{name}-l.sock"), 4 * n)
            per[name] = (large[0] - small[0]) / (large[1] - small[1])
            print(f"{name:14s} {per[name]:7.1f} instructions per message", flush=True)
    t = per["tokio-current"]
    for name in ("cellio", "cellio-io"):
        print(f"{name}: {per[name] / t:.2f}x tokio current_thread's instructions per message")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=float, default=5.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--tcp", action="store_true",
                    help=f"also run {TCP_SERVER}: cellio's echo_server over TCP loopback")
    ap.add_argument("--port", type=int, default=7801, help="with --tcp: the first port")
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions per message under callgrind instead")
    ap.add_argument("--requests", type=int, default=20000,
                    help="with --callgrind: messages of the smaller run (the larger sends 4x)")
    a = ap.parse_args()
    for command in SERVERS.values():
        if not os.path.exists(command[0]):
            sys.exit(f"unix_compare: {command[0]} not built (see --help)")
    if not os.path.exists(CLIENT):
        sys.exit(f"unix_compare: {CLIENT} not built (see --help)")
    if a.callgrind:
        return callgrind(a)
    names = list(SERVERS) + ([TCP_SERVER] if a.tcp else [])
    results = {name: [] for name in names}
    port = a.port
    with tempfile.TemporaryDirectory(prefix="cellio-unix-compare-") as tmp:
        for r in range(a.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for name in order:
                port += 1
                path = (f"127.0.0.1:{port}" if name == TCP_SERVER
                        else os.path.join(tmp, f"{name}-{r}.sock"))
                row = one_run(name, path, a)
                results[name].append(row)
                print(f"round {r + 1} {name:14s} {row[0]:9.0f} msg/s  user {row[1]:6.1f}  "
                      f"sys {row[2]:7.1f} ns/msg  p99 {row[3]:7.1f} us", flush=True)
    med = {name: [statistics.median(v[i] for v in rows) for i in range(4)]
           for name, rows in results.items()}
    print(f"\n{a.connections} connections x {a.size} B, closed loop; medians of {a.rounds} "
          f"rounds x {a.secs:g} s; server on CPU {a.server_cpu}, client on CPU {a.client_cpu}")
    print(f"{'server':14s} {'msgs/s':>9s} {'user ns':>8s} {'sys ns':>8s} {'p99 us':>8s}")
    for name, (rate, user, system, p99) in med.items():
        print(f"{name:14s} {rate:9.0f} {user:8.1f} {system:8.1f} {p99:8.1f}")
    t = med["tokio-current"]
    for name in ("cellio", "cellio-io"):
        c = med[name]
        print(f"{name}: {c[0] / t[0]:.2f}x tokio current_thread's msgs/s, user CPU per message "
              f"{c[1] / t[1]:.2f}x")
    if a.tcp:
        u, tcp = med["cellio"], med[TCP_SERVER]
        print(f"system CPU per message, cellio over a Unix stream / over TCP loopback: "
              f"{u[2]:.1f} / {tcp[2]:.1f} ns = {u[2] / tcp[2]:.2f}x")


if __name__ == "__main__":
    main()
