#!/usr/bin/env python3
"""A/B of echo server builds by user time between syscalls (the `echo_compare --user-time` shim).

For comparing two builds of one server (a code change, compiler flags, PGO), which the driver,
made to compare different servers, does not do. Each round runs every (binary, variant) pair
once, in alternating order: the server pinned to CPU 0 under the preloaded shim, `mio_load`
pinned to CPU 1 (100 connections, 64 B, closed loop), the shim's counters read at the client's
warm-up and window marks. Prints each run and the medians of user ns/msg less the shim's floor.

    benches/scripts/user_time_ab.py --bins A,B [--variants futures,poll] [--rounds 6] [--secs 4]
        [--shims raw,libc] [--segments] [--rate R] [--udp]

`--udp`: UDP echo servers (`udp_echo_server`, `mio_udp_echo`, `tokio_udp_echo`) under
`mio_udp_load` (100 sockets, 64 B, one datagram in flight on each); a message is a datagram.

A binary whose name starts with `tokio` runs as `--flavor current`, one starting with `mio`
with no flags; any other gets `--api VARIANT` (cellio's echo_server: build it with
RUSTFLAGS="--cfg cellio_user_time_hooks", or the shim sees none of its syscalls). A binary
that names the shim's hooks has the hooks' floor taken off, any other the wrappers'.
`--shims libc` builds the shim with wrappers that call on into libc (one frame deeper than the
program's own call: for comparison). Needs cc, taskset, x86-64 with a constant TSC, and the
release build of cellio-benches (for mio_load).

Each server runs on a free port (`--port 0`, the default) read from its `listening on ADDR` line;
a run fails (exit status 1, with the child's last error lines) when the server exits or does not
listen, or the client exits non-zero or counts a mismatched, failed, lost or unconnected message,
and also when the shim saw fewer calls than one per message (an echo makes at least a receive
and a send for each): the server then makes its syscalls out of the shim's sight.
"""
import argparse
import json
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src", "bin", "echo_compare")
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MAGIC = 0x5553455254494D45
# The shim's counter layout (`struct counters` in user_time.c): eight words, then a KINDS x KINDS
# table of cycles and one of segment counts, each indexed by (kind the segment started after,
# kind of the call that ended it).
RECEIVE, SEND, WAIT, OTHER, KINDS = 0, 1, 2, 3, 4
PAIR_CYCLES, PAIR_SEGMENTS = 8, 8 + KINDS * KINDS
TSC_RATE_C = r"""
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>
int main(void) {
    struct timespec a, b, pause = {0, 200000000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    unsigned long long t0 = __rdtsc();
    nanosleep(&pause, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    unsigned long long t1 = __rdtsc();
    printf("%.6f\n", (t1 - t0) / ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)));
    return 0;
}
"""


def words(path):
    with open(path, "rb") as f:
        w = struct.unpack("40Q", f.read(320))
    if w[0] != MAGIC:
        sys.exit(f"{path}: not the shim's counters")
    return w


def tsc_rate(tmp):
    rate = os.path.join(tmp, "tsc_rate")
    with open(rate + ".c", "w") as f:
        f.write(TSC_RATE_C)
    subprocess.run(["cc", "-O2", "-o", rate, rate + ".c"], check=True)
    return float(subprocess.run([rate], capture_output=True, text=True, check=True).stdout)


def build(tmp, tsc, shim_kind):
    """Builds the shim (`raw`: its wrappers make the syscalls; `libc`: they call libc's
    functions, one frame deeper) and measures its floor."""
    shim = os.path.join(tmp, f"user_time_{shim_kind}.so")
    floor = os.path.join(tmp, "floor")
    defines = ["-DUSER_TIME_CALL_LIBC"] if shim_kind == "libc" else []
    for args in (defines + ["-shared", "-fPIC", "-o", shim, os.path.join(SRC, "user_time.c"), "-ldl"],
                 ["-o", floor, os.path.join(SRC, "user_time_floor.c")]):
        subprocess.run(["cc", "-O2"] + args, check=True)
    ctr = os.path.join(tmp, "floor.ctr")
    env = dict(os.environ, LD_PRELOAD=shim, USER_TIME_FILE=ctr)
    floors = {}
    for mode in ("wrappers", "hooks"):
        subprocess.run(["taskset", "-c", "0", floor, "1000000"] + (["hooks"] if mode == "hooks" else []),
                       env=env, check=True)
        w = words(ctr)
        floors[mode] = w[1] / w[2] / tsc
    return shim, floors


def uses_hooks(binary):
    """A cellio build with `--cfg cellio_user_time_hooks` calls the shim's hooks around its
    inline syscalls: its floor is the hooks' (and it names them, for `dlsym`)."""
    with open(binary, "rb") as f:
        return b"user_time_enter\0" in f.read()


def fail(what, log=None):
    """Exits non-zero with `what` and, if given, the tail of the file `log` (a child's stderr)."""
    text = ""
    if log:
        with open(log, errors="replace") as f:
            text = "".join(f.readlines()[-10:])
    sys.exit(f"user_time_ab: {what}" + (f"\n{text.rstrip()}" if text.strip() else ""))


def wait_listening(server, what, log, timeout=30.0):
    """The address from the server's `listening on ADDR` line; fails if the server exits or
    says nothing of the kind within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    fd, seen = server.stdout.fileno(), b""
    while True:
        *lines, seen = seen.split(b"\n")
        for line in lines:
            if line.startswith(b"listening on "):
                return line.split()[2].decode().rstrip(",")
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            fail(f"{what}: the server did not say `listening on` within {timeout:g} s", log)
        chunk = os.read(fd, 4096)
        if not chunk:
            server.wait()
            fail(f"{what}: the server exited (status {server.returncode}) before listening", log)
        seen += chunk


def check_client(what, status, result, log):
    """Fails unless the client exited 0 and its JSON reports no mismatched, failed, lost or
    unconnected message (a mismatch also drops its connection: the rest of the run would be
    at another load)."""
    if result is None:
        fail(f"{what}: the client (exit status {status}) printed no JSON", log)
    bad = {k: result[k] for k in ("mismatches", "errors", "lost", "connect_errors")
           if result.get(k)}
    if status != 0 or bad:
        fail(f"{what}: the client failed (exit status {status}, {bad or 'no failure counted'})",
             log)


def run_once(shim, tsc, floor, binary, variant, secs, tmp, port, rate=None, udp=False):
    ctr = os.path.join(tmp, "run.ctr")
    # The shim creates the file when the server starts: a previous run's must not be read.
    if os.path.exists(ctr):
        os.remove(ctr)
    env = dict(os.environ, LD_PRELOAD=shim, USER_TIME_FILE=ctr)
    name = os.path.basename(binary)
    what = f"{binary} {variant}"
    extra = (([] if udp else ["--flavor", "current"]) if name.startswith("tokio")
             else [] if name.startswith("mio") else ["--api", variant])
    server_log, client_log = os.path.join(tmp, "server.err"), os.path.join(tmp, "client.err")
    with open(server_log, "w") as err:
        server = subprocess.Popen(["taskset", "-c", "0", binary] + extra
                                  + ["--addr", f"127.0.0.1:{port}"],
                                  env=env, stdout=subprocess.PIPE, stderr=err)
    try:
        return measure(server, what, server_log, client_log, ctr, tsc, floor, secs, rate, udp)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def measure(server, what, server_log, client_log, ctr, tsc, floor, secs, rate, udp):
    """The rest of `run_once`, with the server started."""
    addr = wait_listening(server, what, server_log)
    if not os.path.exists(ctr):
        fail(f"{what}: the shim wrote no counters ({ctr}): was it preloaded?", server_log)
    marks, cpu_marks, result = [], [], None

    def mark():
        marks.append(words(ctr))
        cpu_marks.append((proc_cpu_ticks(server.pid), time.monotonic()))

    if rate is None:
        # Closed loop: a mio client that marks its warm-up's and window's ends on stdout.
        if udp:
            cmd = [os.path.join(ROOT, "target", "release", "mio_udp_load"), "--sockets", "100"]
        else:
            cmd = [os.path.join(ROOT, "target", "release", "mio_load"), "--connections", "100",
                   "--phase-marks", "--json"]
        with open(client_log, "w") as err:
            client = subprocess.Popen(["taskset", "-c", "1"] + cmd
                                      + ["--addr", addr, "--size", "64",
                                         "--duration", str(secs), "--warmup", "1"],
                                      stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in client.stdout:
                if line.startswith("#"):
                    mark()
                elif line.startswith("{"):
                    result = json.loads(line)
        except BaseException:
            client.kill()
            raise
        finally:
            client.wait()
        check_client(what, client.returncode, result, client_log)
        if udp:
            result = {"msgs": result["datagrams"],
                      "msgs_per_sec": result["datagrams"] / result["secs"]}
    else:
        # Open loop: cellio's load client paced at `rate`; the window is timed here (the
        # client prints no marks), 0.25 s inside its measured period at each end.
        load = os.path.join(ROOT, "target", "release", "examples", "load")
        with open(client_log, "w") as err:
            client = subprocess.Popen(["taskset", "-c", "1", load, "--addr", addr,
                                       "--connections", "100", "--size", "64", "--rate",
                                       str(rate), "--spin", "--warmup", "1s", "--duration",
                                       f"{secs + 0.5}s", "--json"],
                                      stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            time.sleep(1.25)
            mark()
            time.sleep(secs)
            mark()
            for line in client.stdout:
                if line.startswith("{"):
                    result = json.loads(line)
        except BaseException:
            client.kill()
            raise
        finally:
            client.wait()
        check_client(what, client.returncode, result, client_log)
    if server.poll() is not None:
        fail(f"{what}: the server exited (status {server.returncode}) during the run",
             server_log)
    server.send_signal(signal.SIGTERM)
    server.wait()
    if len(marks) != 2 or not result["msgs"]:
        fail(f"{what}: the run gave no window")
    d = [b - a for a, b in zip(*marks)]
    # Closed loop: the client's count of the window's messages. Open loop: each echoed message
    # has exactly one receive→send segment, counted by the shim over the same window.
    msgs = result["msgs"] if rate is None else pair(d, PAIR_SEGMENTS, RECEIVE, SEND)
    if not msgs:
        fail(f"{what}: no message in the window")
    # An echo makes at least a receive and a send per message: fewer calls seen mean the
    # server makes its syscalls out of the shim's sight (as echo_compare refuses).
    calls = d[3] / msgs
    if calls < 1.0:
        fail(f"{what}: the user-time shim saw {calls:.3f} calls per message: the server makes "
             "its syscalls without libc (for cellio's servers, a build with "
             "RUSTFLAGS=\"--cfg cellio_user_time_hooks\")")
    user = d[1] / tsc / msgs
    (t0, w0), (t1, w1) = cpu_marks
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = ((t1[0] - t0[0]) / ticks * 1e9 / msgs, (t1[1] - t0[1]) / ticks * 1e9 / msgs,
           100.0 * (sum(t1) - sum(t0)) / ticks / (w1 - w0))
    return (result["msgs_per_sec"], user, user - floor * d[2] / msgs, d[5], calls,
            segments(d, tsc, msgs), cpu)


def proc_cpu_ticks(pid):
    """`(utime, stime)` of `pid` in clock ticks, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


KIND_NAMES = ("receive", "send", "wait", "other")
SEGMENTS_SHOWN = ((RECEIVE, SEND), (SEND, RECEIVE), (SEND, WAIT), (WAIT, RECEIVE))


def pair(d, table, after, call):
    """One entry of a counter delta's pair table (`PAIR_CYCLES` or `PAIR_SEGMENTS`)."""
    return d[table + after * KINDS + call]


def segments(d, tsc, msgs):
    """The segments between the calls of each pair of kinds the driver's table shows:
    `from→to per-message-count × raw ns each` (the floor not taken off)."""
    out = []
    for a, b in SEGMENTS_SHOWN:
        n, cycles = pair(d, PAIR_SEGMENTS, a, b), pair(d, PAIR_CYCLES, a, b)
        each = cycles / tsc / n if n else 0.0
        out.append(f"{KIND_NAMES[a]}→{KIND_NAMES[b]} {n / msgs:.2f}×{each:.0f}")
    return "  ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", required=True, help="comma-separated server binaries")
    ap.add_argument("--variants", default="futures", help="comma-separated --api values for cellio")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--secs", type=float, default=4.0, help="measured window per run")
    ap.add_argument("--port", type=int, default=0,
                    help="the servers' port (default 0: a free one each run, as the server reports)")
    ap.add_argument("--shims", default="raw",
                    help="comma-separated shim builds: raw (the wrappers make the syscalls, the "
                         "default), libc (they call libc's functions: one frame deeper)")
    ap.add_argument("--rate", type=float,
                    help="open loop instead: cellio's load client (`load --rate R --spin`, release "
                         "example build) paces R msg/s in total; messages are then counted as the "
                         "shim's receive→send segments")
    ap.add_argument("--segments", action="store_true",
                    help="also print each run's segments by the calls around them (count per "
                         "message × raw ns), as the driver's table does, and the server's CPU "
                         "per message and CPU%% from /proc over the window")
    ap.add_argument("--udp", action="store_true",
                    help="UDP echo servers under mio_udp_load (a message is a datagram)")
    a = ap.parse_args()
    if a.udp and a.rate is not None:
        sys.exit("--udp runs closed loop only (no --rate)")
    bins = [os.path.abspath(b) for b in a.bins.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tsc = tsc_rate(tmp)
        shims = {}
        for kind in a.shims.split(","):
            if kind not in ("raw", "libc"):
                sys.exit(f"--shims: unknown shim build {kind!r} (raw, libc)")
            shims[kind] = build(tmp, tsc, kind)
            floors = shims[kind][1]
            print(f"TSC {tsc:.4f} ticks/ns; the {kind} shim's floor per segment: "
                  f"{floors['wrappers']:.1f} ns through its wrappers, {floors['hooks']:.1f} ns "
                  "through its hooks", flush=True)
        pairs = [(b, v, k) for b in bins
                 for v in (["tokio"] if os.path.basename(b).startswith("tokio")
                           else ["mio"] if os.path.basename(b).startswith("mio")
                           else a.variants.split(","))
                 for k in shims]
        results = {p: [] for p in pairs}
        for r in range(a.rounds):
            for b, v, k in (pairs if r % 2 == 0 else list(reversed(pairs))):
                shim, floors = shims[k]
                floor = floors["hooks" if uses_hooks(b) else "wrappers"]
                rate, user, less, long_segments, calls, segs, cpu = run_once(
                    shim, tsc, floor, b, v, a.secs, tmp, a.port, a.rate, a.udp)
                results[(b, v, k)].append(less)
                print(f"round {r + 1} {os.path.basename(b):<16} {v:<8} {k:<4} {rate:>9.0f} msg/s  "
                      f"user {user:6.1f} ns/msg, {less:6.1f} less the floor, {calls:.3f} calls/msg  "
                      f"({long_segments} long)"
                      + (f"\n    {segs}" if a.segments else "")
                      + (f"\n    /proc: user {cpu[0]:.0f} + system {cpu[1]:.0f} ns/msg, "
                         f"CPU {cpu[2]:.0f}%" if a.segments else ""),
                      flush=True)
        print("medians, user ns/msg less the floor:")
        for (b, v, k), xs in results.items():
            print(f"  {os.path.basename(b):<16} {v:<8} {k:<4} {statistics.median(xs):6.1f}   "
                  + " ".join(f"{x:.1f}" for x in xs))


if __name__ == "__main__":
    main()
