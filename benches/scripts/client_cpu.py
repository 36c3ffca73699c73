#!/usr/bin/env python3
"""Where a load client's time goes: CPU per message of `load` and `mio_load`, side by side.

Both clients drive a fresh cellio echo server (pinned to CPU 0) from CPU 1, in pairs whose
order alternates, 100 connections x 64 B, closed loop, with no warm-up (so every message of
the run is counted). For each run it reports messages/s and the client's own user and system
CPU per message (from the kernel's rusage of the finished client), then the medians. With
the client core saturated, messages/s is about 1 / (client CPU per message): the split says
whether a difference between the clients comes from their own (user) work or from the
kernel's work per message, which both share. It also counts how often each side went to
sleep for want of work (voluntary context switches per 1000 messages: the client's from its
rusage, the server's from /proc): the side that is faster waits for the other, and every
time it sleeps the other side's next send pays for waking it.

    python3 benches/scripts/client_cpu.py [--pairs 10] [--secs 3] [--user-time]

Needs `taskset` and the release builds: `cargo build --release -p cellio-benches` and
`cargo build --release --example echo_server --example load`.

Ticks split user from system time by sampling, so the user column is only good to some
0.05 us per message. `--user-time` measures each client's user time exactly instead: the
user-time shim of `echo_compare --user-time` (`user_time.c`, built here with `cc`) is
preloaded into the *client*, and its time-stamp-counter sums, read when the client has
finished, give user ns per message less the shim's own floor. `load` then runs from its
build that tells the shim about its inline syscalls:
`RUSTFLAGS="--cfg cellio_user_time_hooks" cargo build --release --example load
--target-dir target/user-time-hooks`. The shim slows both clients a little (a few percent
of messages/s): compare the exact user times, not the rates, of such runs.
"""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RELEASE = os.path.join(ROOT, "target", "release")
HOOKS_LOAD = os.path.join(ROOT, "target", "user-time-hooks", "release", "examples", "load")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"client_cpu: the echo server did not listen on port {port}")


def server_sleeps(pid):
    """How many times the server has gone to sleep (voluntary context switches, all threads)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


class Shim:
    """The user-time shim, built in `tmp`, with the time-stamp counter's rate and its floors."""

    def __init__(self, tmp):
        sys.path.insert(0, HERE)
        import user_time_ab  # the shim's build and counter layout, shared with that script

        self.ut = user_time_ab
        self.tsc = user_time_ab.tsc_rate(tmp)
        self.path, self.floors = user_time_ab.build(tmp, self.tsc, "raw")
        self.counters = os.path.join(tmp, "client.ctr")

    def env(self):
        if os.path.exists(self.counters):
            os.remove(self.counters)
        return dict(os.environ, LD_PRELOAD=self.path, USER_TIME_FILE=self.counters)

    def user_ns(self, binary, msgs):
        """The finished client's user ns per message less the floor of its way to the shim."""
        w = self.ut.words(self.counters)
        floor = self.floors["hooks" if self.ut.uses_hooks(binary) else "wrappers"]
        return (w[1] / self.tsc - floor * w[2]) / msgs


def run_client(name, port, secs, server_pid, shim=None):
    """One pinned client run: (msgs/s, user us/msg, sys us/msg, client sleeps and server
    sleeps per 1000 messages, exact user ns/msg or None)."""
    addr = f"127.0.0.1:{port}"
    if name == "load":
        binary = HOOKS_LOAD if shim else os.path.join(RELEASE, "examples", "load")
        argv = [binary, "--addr", addr, "--duration", f"{secs}s", "--warmup", "0s", "--json"]
    else:
        binary = os.path.join(RELEASE, "mio_load")
        argv = [binary, "--addr", addr, "--duration", str(secs), "--warmup", "0", "--json"]
    server_before = server_sleeps(server_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["taskset", "-c", "1"] + argv, capture_output=True, text=True,
                         env=shim.env() if shim else None)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = server_sleeps(server_pid)
    if out.returncode != 0:
        raise SystemExit(f"client_cpu: {name} failed: {out.stderr.strip()}")
    result = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("{")))
    msgs = result["msgs"]
    if msgs == 0:
        raise SystemExit(f"client_cpu: {name} completed no message")
    user = (after.ru_utime - before.ru_utime) * 1e6 / msgs
    system = (after.ru_stime - before.ru_stime) * 1e6 / msgs
    client_sleeps = (after.ru_nvcsw - before.ru_nvcsw) * 1000 / msgs
    exact = shim.user_ns(binary, msgs) if shim else None
    return (result["msgs_per_sec"], user, system, client_sleeps,
            (server_after - server_before) * 1000 / msgs, exact)


def line(run):
    rate, user, system, client_sleeps, server_sleeps, exact = run
    exact = "" if exact is None else f"  exact user {exact:.1f} ns/msg"
    return (f"{rate:>9.0f} msg/s  user {user:.2f} us/msg  sys {system:.2f} us/msg  "
            f"sleeps per 1000 msgs: client {client_sleeps:.2f}, server {server_sleeps:.2f}"
            f"{exact}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--user-time", action="store_true",
                    help="also measure each client's user time exactly (the preloaded shim)")
    args = ap.parse_args()
    if args.pairs < 1 or args.secs <= 0:
        ap.error("--pairs must be at least 1 and --secs positive")
    with tempfile.TemporaryDirectory() as tmp:
        shim = None
        if args.user_time:
            if not os.path.exists(HOOKS_LOAD):
                ap.error(f"--user-time needs the hooks build of load ({HOOKS_LOAD}): "
                         "RUSTFLAGS=\"--cfg cellio_user_time_hooks\" cargo build --release "
                         "--example load --target-dir target/user-time-hooks")
            shim = Shim(tmp)
            print(f"shim floor per segment: {shim.floors['wrappers']:.1f} ns through its "
                  f"wrappers (mio_load), {shim.floors['hooks']:.1f} ns through its hooks (load)")
        return measure(args, shim)


def measure(args, shim):
    runs = {"load": [], "mio_load": []}
    for i in range(args.pairs):
        order = ["load", "mio_load"] if i % 2 == 0 else ["mio_load", "load"]
        for name in order:
            port = free_port()
            server = subprocess.Popen(
                ["taskset", "-c", "0", os.path.join(RELEASE, "examples", "echo_server"),
                 "--addr", f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_listening(port)
                run = run_client(name, port, args.secs, server.pid, shim)
            finally:
                server.terminate()
                server.wait()
            runs[name].append(run)
            print(f"pair {i + 1:>2} {name:<8} {line(run)}", flush=True)
    med = {k: [statistics.median(r[j] for r in v) for j in range(5)]
           + [statistics.median(r[5] for r in v) if shim else None] for k, v in runs.items()}
    for name, run in med.items():
        print(f"median   {name:<8} {line(run)}")
    ratios = [a[0] / b[0] for a, b in zip(runs["load"], runs["mio_load"])]
    extra_user = med["load"][1] - med["mio_load"][1]
    per_msg = med["mio_load"][1] + med["mio_load"][2]
    print(f"load / mio_load: median of the pairs {statistics.median(ratios):.3f}, "
          f"load ahead in {sum(r > 1 for r in ratios)} of {len(ratios)}; load's extra user time "
          f"{extra_user:.2f} us/msg is {100 * extra_user / per_msg:.1f}% of mio_load's "
          f"{per_msg:.2f} us of client CPU per message")
    if shim:
        print(f"exact user time (shim, less its floor): load {med['load'][5]:.1f}, mio_load "
              f"{med['mio_load'][5]:.1f} ns/msg: load's extra "
              f"{med['load'][5] - med['mio_load'][5]:.1f} ns/msg")


if __name__ == "__main__":
    sys.exit(main())
