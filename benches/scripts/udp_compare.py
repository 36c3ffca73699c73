#!/usr/bin/env python3
"""udp_compare: CPU per echoed UDP datagram of cellio's UDP echo server (on the socket's
futures, through a `UdpIo`: cellio-io, and on batches, `recv_many`/`send_many`:
cellio-batch), a raw mio loop (the floor) and tokio current_thread, under the same
closed-loop load.

Each server runs pinned to CPU 0 and `mio_udp_load` (--sockets sockets, one --size-byte
datagram in flight on each, every echo checked byte for byte) to CPU 1. The server's user and
system CPU come from /proc/PID/stat over the client's measured window (between its
`# warmup-done` and `# window-done` lines), divided by the datagrams echoed in it. The servers
are interleaved, the order reversed every other round, and the table gives medians over the
rounds. User figures come from clock ticks (CLK_TCK, usually 100 per second): a 6 s window of a
server spending ~5% of its time in user space holds ~30 ticks, so single rounds scatter by
~20%; use several rounds.

With --syscalls, one more run per server counts its syscalls over the client's window with
`perf stat -e raw_syscalls:sys_enter` (Linux, perf installed, root or a low
perf_event_paranoid), reported per datagram. perf is attached to the server before the client
starts, with counting off (`--delay -1`), and switched on at the client's `# warmup-done` and
off at its `# window-done` through a control FIFO (`--control`), each switch acknowledged before
the script goes on (as echo_compare's perf.rs): the syscalls and the datagrams are counted over
the same window. (Attaching perf at the warm-up mark instead missed the syscalls of the window's
first tens of milliseconds, perf's start-up, while counting all its datagrams: the raw mio loop
read 1.77-2.02 where it makes at least 2 per datagram.)

Build first:  cargo build --release -p cellio-benches && cargo build --release --example udp_echo_server
Run:          python3 benches/scripts/udp_compare.py [--rounds 6] [--secs 6] [--syscalls]
"""

import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from cpu_window import TICK_NS, cpu_ticks

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")
SERVERS = {
    "mio": os.path.join(REL, "mio_udp_echo"),
    "tokio-current": os.path.join(REL, "tokio_udp_echo"),
    "cellio": os.path.join(REL, "examples", "udp_echo_server"),
    "cellio-io": os.path.join(REL, "examples", "udp_echo_server"),
    "cellio-batch": os.path.join(REL, "examples", "udp_echo_server"),
}
# Extra server flags: cellio-io serves through a UdpIo, cellio-batch on batches.
FLAGS = {"cellio-io": ["--api", "poll"], "cellio-batch": ["--api", "batch"]}
CLIENT = os.path.join(REL, "mio_udp_load")


class SyscallCount:
    """A `perf stat -e raw_syscalls:sys_enter` attached to a process, counting only while
    enabled. Attached (and acknowledged on its control FIFO) before the constructor returns,
    so that the caller can start the load after it."""

    ACK_TIMEOUT_S = 10

    def __init__(self, pid):
        self.dir = tempfile.mkdtemp(prefix="udp_compare.perf.")
        ctl, ack, self.out = (os.path.join(self.dir, n) for n in ("ctl", "ack", "out"))
        os.mkfifo(ctl)
        os.mkfifo(ack)
        # Read-write opens of a FIFO do not wait for the other end (Linux).
        self.ctl = os.open(ctl, os.O_RDWR)
        self.ack = os.open(ack, os.O_RDWR)
        self.perf = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "--delay", "-1",
             "--control", f"fifo:{ctl},{ack}", "-p", str(pid), "-o", self.out],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        try:
            # A no-op command as a ping: perf answers once it is attached and listening.
            self.command("disable")
        except BaseException:
            self.close()
            raise

    def command(self, what):
        os.write(self.ctl, f"{what}\n".encode())
        poll = select.poll()
        poll.register(self.ack, select.POLLIN)
        if not poll.poll(self.ACK_TIMEOUT_S * 1000):
            err = self.perf.stderr.read() if self.perf.poll() is not None else ""
            raise RuntimeError(f"perf did not acknowledge `{what}` within "
                               f"{self.ACK_TIMEOUT_S} s {err!r}")
        answer = os.read(self.ack, 64)
        if not answer.startswith(b"ack"):
            raise RuntimeError(f"perf answered {answer!r} to `{what}`")

    def finish(self):
        """Detaches perf and returns the syscalls counted while enabled."""
        self.perf.send_signal(signal.SIGINT)
        _, err = self.perf.communicate()
        with open(self.out) as f:
            text = f.read()
        for line in text.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] == "raw_syscalls:sys_enter":
                return int(fields[0])
        raise RuntimeError(f"perf stat gave no syscall count: {text!r} {err!r}")

    def close(self):
        if self.perf.poll() is None:
            self.perf.kill()
            self.perf.wait()
        os.close(self.ctl)
        os.close(self.ack)
        shutil.rmtree(self.dir, ignore_errors=True)


def one_run(name, port, a, count_syscalls=False):
    addr = f"127.0.0.1:{port}"
    command = [SERVERS[name], "--addr", addr] + FLAGS.get(name, [])
    server = subprocess.Popen(["taskset", "-c", a.server_cpu] + command,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    perf = None
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"{name} did not start: {line!r} {server.stderr.read()}")
        if count_syscalls:
            perf = SyscallCount(server.pid)
        client = subprocess.Popen(
            ["taskset", "-c", a.client_cpu, CLIENT, "--addr", addr, "--sockets", str(a.sockets),
             "--size", str(a.size), "--warmup", "1", "--duration", str(a.secs)],
            stdout=subprocess.PIPE, text=True)
        if client.stdout.readline().strip() != "# warmup-done":
            raise RuntimeError("the client did not finish its warm-up")
        if perf:
            perf.command("enable")
        u0, s0 = cpu_ticks(server.pid)
        if client.stdout.readline().strip() != "# window-done":
            raise RuntimeError("the client did not finish its window")
        u1, s1 = cpu_ticks(server.pid)
        if perf:
            perf.command("disable")
            syscalls = perf.finish()
        result = json.loads(client.stdout.readline())
        if client.wait() != 0:
            raise RuntimeError(f"the client failed against {name}: {result}")
    finally:
        if perf:
            perf.close()
        server.terminate()
        server.wait()
    n = result["datagrams"]
    tick_ns = TICK_NS
    if count_syscalls:
        return syscalls / n
    return n / result["secs"], (u1 - u0) * tick_ns / n, (s1 - s0) * tick_ns / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--secs", type=float, default=6.0, help="measured window per run")
    ap.add_argument("--sockets", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--port", type=int, default=7601)
    ap.add_argument("--syscalls", action="store_true",
                    help="one more run per server, counting its syscalls with perf stat")
    a = ap.parse_args()
    for path in list(SERVERS.values()) + [CLIENT]:
        if not os.path.exists(path):
            sys.exit(f"udp_compare: {path} not built (cargo build --release -p cellio-benches "
                     "&& cargo build --release --example udp_echo_server)")
    results = {name: [] for name in SERVERS}
    port = a.port
    for r in range(a.rounds):
        order = list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))
        for name in order:
            port += 1
            rate, user, system = one_run(name, port, a)
            results[name].append((rate, user, system))
            print(f"round {r + 1} {name:14s} {rate:9.0f} datagrams/s  user {user:6.1f}  "
                  f"sys {system:7.1f} ns/datagram", flush=True)
    med = {name: [statistics.median(v[i] for v in rows) for i in range(3)]
           for name, rows in results.items()}
    print(f"\n{a.sockets} sockets x {a.size} B, closed loop; medians of {a.rounds} rounds x "
          f"{a.secs:g} s; server on CPU {a.server_cpu}, client on CPU {a.client_cpu}")
    print(f"{'server':14s} {'datagrams/s':>11s} {'user ns':>8s} {'sys ns':>8s} {'total ns':>9s}")
    for name, (rate, user, system) in med.items():
        print(f"{name:14s} {rate:11.0f} {user:8.1f} {system:8.1f} {user + system:9.1f}")
    if a.syscalls:
        print("\nsyscalls per datagram (one run each, perf stat over the window):")
        for name in SERVERS:
            port += 1
            print(f"{name:14s} {one_run(name, port, a, count_syscalls=True):8.3f}", flush=True)
    m, t = med["mio"][1], med["tokio-current"][1]
    for name in ("cellio", "cellio-io", "cellio-batch"):
        c = med[name][1]
        print(f"{name} user CPU per datagram: {c / m:.2f}x the raw mio loop, {c / t:.2f}x tokio "
              "current_thread")


if __name__ == "__main__":
    main()
