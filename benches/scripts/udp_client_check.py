#!/usr/bin/env python3
"""Does `load --udp` keep up with a minimal mio UDP client?

Each round starts a fresh `examples/udp_echo_server` on CPU 0 (on a free
port, read from its `listening on` line) and runs, on
CPU 1 and in alternating order, the bundled load client
(`load --udp --connections 100`) and `mio_udp_load --sockets 100` (a raw mio
loop, one 64-byte datagram in flight per socket, every echo checked, no
latency timing). It prints each round's datagrams per second, the ratio, and
each client's CPU per datagram, then the medians.

By default the CPU figures are from rusage and approximate: they cover the
whole process (connect, warm-up and window), divided by the window's rate
times warm-up plus window, and ticks book part of the syscalls as user time
(docs/benchmarks.md).

`--user-time` preloads the user-time shim of `user_time_ab.py` into each
client instead and prints its exact user time between syscalls per datagram
(whole process; datagrams counted as its receive-to-send stretches), less
the shim's floor, and the stretches by the calls around them. `load` then
runs from its hooks build (its syscalls are inline: no preloaded library
can wrap them), `target/user-time-hooks/release/examples/load`.

    cargo build --release -p cellio-benches
    cargo build --release --example load --example udp_echo_server
    python3 benches/scripts/udp_client_check.py --rounds 8 --secs 3
    RUSTFLAGS="--cfg cellio_user_time_hooks" CARGO_TARGET_DIR=target/user-time-hooks \\
        cargo build --release --example load
    python3 benches/scripts/udp_client_check.py --rounds 6 --secs 3 --user-time
"""

import argparse
import json
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import user_time_ab

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
HOOKS_LOAD = ROOT / "target" / "user-time-hooks" / "release" / "examples" / "load"


class Rusage:
    """Approximate CPU per datagram from rusage (ticks)."""

    def env(self):
        return None

    def run(self, cmd):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = run_checked(cmd, None)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return out, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)

    def describe(self, used, rate, secs, warmup):
        n = rate * (secs + warmup)
        user, system = used[0] / n * 1e9, used[1] / n * 1e9
        return user, f"~{user:.0f} user, ~{system:.0f} sys ns/datagram"


class UserTime:
    """Exact user time between syscalls per datagram, from the preloaded shim."""

    def __init__(self, tmp):
        self.tsc = user_time_ab.tsc_rate(tmp)
        self.shim, self.floors = user_time_ab.build(tmp, self.tsc, "raw")
        self.counters = os.path.join(tmp, "client.ctr")
        print(f"TSC {self.tsc:.4f} ticks/ns; the shim's floor per stretch: "
              f"{self.floors['wrappers']:.1f} ns (wrappers), {self.floors['hooks']:.1f} ns (hooks)")

    def run(self, cmd):
        # The shim creates the file as the client starts: a previous run's must not be read.
        if os.path.exists(self.counters):
            os.remove(self.counters)
        env = dict(os.environ, LD_PRELOAD=self.shim, USER_TIME_FILE=self.counters)
        out = run_checked(cmd, env)
        words = user_time_ab.words(self.counters)
        floor = self.floors["hooks" if user_time_ab.uses_hooks(cmd[3]) else "wrappers"]
        return out, (words, floor)

    def describe(self, used, rate, secs, warmup):
        words, floor = used
        n = user_time_ab.pair(words, user_time_ab.PAIR_SEGMENTS, user_time_ab.RECEIVE,
                              user_time_ab.SEND)
        less = words[1] / self.tsc / n - floor * words[2] / n
        return less, (f"{less:.1f} user ns/datagram less the floor; "
                      f"{user_time_ab.segments(words, self.tsc, n)}")


def run_checked(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"udp_client_check: {cmd[3]} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def start_server(port, log):
    """Starts the UDP echo server on CPU 0 and returns it and the address from its
    `listening on ADDR` line; exits with its stderr if it exits first (e.g. the port is taken:
    the clients would measure whatever holds it) or says nothing within 30 s."""
    with open(log, "w") as err:
        server = subprocess.Popen(
            ["taskset", "-c", "0", str(RELEASE / "examples" / "udp_echo_server"),
             "--addr", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=err)
    deadline = time.monotonic() + 30
    fd, seen = server.stdout.fileno(), b""
    while True:
        *lines, seen = seen.split(b"\n")
        for line in lines:
            if line.startswith(b"listening on "):
                return server, line.split()[2].decode()
        left = deadline - time.monotonic()
        chunk = os.read(fd, 4096) if left > 0 and select.select([fd], [], [], left)[0] else None
        if not chunk:
            if chunk is None:
                server.kill()
            server.wait()
            sys.exit(f"udp_client_check: udp_echo_server did not start (exit status "
                     f"{server.returncode}): {Path(log).read_text().strip()}")
        seen += chunk


def check_server(server, log):
    """Exits if the server has exited (it serves until stopped)."""
    if server.poll() is not None:
        sys.exit(f"udp_client_check: udp_echo_server exited during the round (status "
                 f"{server.returncode}): {Path(log).read_text().strip()}")


def run_load(cpu, load, addr, secs):
    out, used = cpu.run([
        "taskset", "-c", "1", str(load), "--udp",
        "--addr", addr, "--connections", "100", "--size", "64",
        "--duration", f"{secs}s", "--warmup", "1s", "--json",
    ])
    v = json.loads(out.stdout.strip().splitlines()[-1])
    rate = v["msgs_per_sec"]
    return (rate, v["lost"]) + cpu.describe(used, rate, v["secs"], 1.0)


def run_mio(cpu, addr, secs):
    out, used = cpu.run([
        "taskset", "-c", "1", str(RELEASE / "mio_udp_load"), "--addr", addr,
        "--sockets", "100", "--size", "64", "--duration", str(secs), "--warmup", "1",
    ])
    v = json.loads(out.stdout.strip().splitlines()[-1])
    rate = v["datagrams"] / v["secs"]
    return (rate, v["lost"]) + cpu.describe(used, rate, v["secs"], 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8, help="server restarts, one pair each")
    ap.add_argument("--secs", type=float, default=3.0, help="each client's measured window")
    ap.add_argument("--port", type=int, default=0,
                    help="the server's port (default 0: a free one, as the server reports)")
    ap.add_argument("--user-time", action="store_true",
                    help="exact user time between syscalls from the preloaded shim (needs cc, "
                         "x86-64 and load's hooks build)")
    args = ap.parse_args()
    if args.rounds < 1 or args.secs <= 0:
        sys.exit("udp_client_check: --rounds and --secs must be positive")
    load = HOOKS_LOAD if args.user_time else RELEASE / "examples" / "load"
    for bin_ in [load, RELEASE / "examples" / "udp_echo_server", RELEASE / "mio_udp_load"]:
        if not bin_.exists():
            sys.exit(f"udp_client_check: {bin_} is missing (see --help for the builds)")
    if args.user_time and not user_time_ab.uses_hooks(load):
        sys.exit(f"udp_client_check: {load} is not a hooks build (its syscalls would be out of "
                 "the shim's sight; see --help for the build)")
    with tempfile.TemporaryDirectory() as tmp:
        cpu = UserTime(tmp) if args.user_time else Rusage()
        ratios, loads, mios = [], [], []
        for r in range(args.rounds):
            log = os.path.join(tmp, "server.err")
            server, addr = start_server(args.port, log)
            try:
                if r % 2 == 0:
                    a = run_load(cpu, load, addr, args.secs)
                    b = run_mio(cpu, addr, args.secs)
                else:
                    b = run_mio(cpu, addr, args.secs)
                    a = run_load(cpu, load, addr, args.secs)
                check_server(server, log)
            finally:
                server.terminate()
                server.wait()
            ratios.append(a[0] / b[0])
            loads.append(a)
            mios.append(b)
            print(f"round {r}: load {a[0]:.0f}/s (lost {a[1]}; {a[3]})\n"
                  f"         mio_udp_load {b[0]:.0f}/s (lost {b[1]}; {b[3]})\n"
                  f"         ratio {ratios[-1]:.3f}", flush=True)
    med = statistics.median
    unit = "user ns/datagram less the floor" if args.user_time else "~user ns/datagram"
    print(f"median: load {med(x[0] for x in loads):.0f}/s, {med(x[2] for x in loads):.1f} {unit}; "
          f"mio_udp_load {med(x[0] for x in mios):.0f}/s, {med(x[2] for x in mios):.1f}; "
          f"load / mio_udp_load {med(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}], "
          f"load ahead in {sum(x > 1 for x in ratios)} of {len(ratios)}")


if __name__ == "__main__":
    main()
