#!/usr/bin/env python3
"""Does `load --udp` keep up with a minimal mio UDP client?

Each round starts a fresh `examples/udp_echo_server` on CPU 0 and runs, on
CPU 1 and in alternating order, the bundled load client
(`load --udp --connections 100`) and `mio_udp_load --sockets 100` (a raw mio
loop, one 64-byte datagram in flight per socket, every echo checked, no
latency timing). It prints each round's datagrams per second, the ratio, and
each client's CPU per datagram from rusage, then the median ratio.

The CPU figures are approximate: rusage covers the whole process (connect,
warm-up and window), divided by the window's rate times warm-up plus window.

    cargo build --release -p cellio-benches
    cargo build --release --example load --example udp_echo_server
    python3 benches/scripts/udp_client_check.py --rounds 8 --secs 3
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"


def timed(cmd):
    """Runs cmd; returns (completed process, user s, system s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"udp_client_check: {cmd[3]} failed ({out.returncode}): {out.stderr.strip()}")
    return out, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def per_datagram(rate, window, warmup, user, system):
    n = rate * (window + warmup)
    return user / n * 1e9, system / n * 1e9


def run_load(port, secs):
    out, user, system = timed([
        "taskset", "-c", "1", str(RELEASE / "examples" / "load"), "--udp",
        "--addr", f"127.0.0.1:{port}", "--connections", "100", "--size", "64",
        "--duration", f"{secs}s", "--warmup", "1s", "--json",
    ])
    v = json.loads(out.stdout.strip().splitlines()[-1])
    rate = v["msgs_per_sec"]
    return rate, v["lost"], per_datagram(rate, v["secs"], 1.0, user, system)


def run_mio(port, secs):
    out, user, system = timed([
        "taskset", "-c", "1", str(RELEASE / "mio_udp_load"), "--addr", f"127.0.0.1:{port}",
        "--sockets", "100", "--size", "64", "--duration", str(secs), "--warmup", "1",
    ])
    v = json.loads(out.stdout.strip().splitlines()[-1])
    rate = v["datagrams"] / v["secs"]
    return rate, v["lost"], per_datagram(rate, v["secs"], 1.0, user, system)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8, help="server restarts, one pair each")
    ap.add_argument("--secs", type=float, default=3.0, help="each client's measured window")
    ap.add_argument("--port", type=int, default=7411)
    args = ap.parse_args()
    if args.rounds < 1 or args.secs <= 0:
        sys.exit("udp_client_check: --rounds and --secs must be positive")
    for bin_ in [RELEASE / "examples" / "load", RELEASE / "examples" / "udp_echo_server",
                 RELEASE / "mio_udp_load"]:
        if not bin_.exists():
            sys.exit(f"udp_client_check: {bin_} is missing (see --help for the builds)")
    ratios, loads, mios = [], [], []
    for r in range(args.rounds):
        server = subprocess.Popen(
            ["taskset", "-c", "0", str(RELEASE / "examples" / "udp_echo_server"),
             "--addr", f"127.0.0.1:{args.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        try:
            if r % 2 == 0:
                a = run_load(args.port, args.secs)
                b = run_mio(args.port, args.secs)
            else:
                b = run_mio(args.port, args.secs)
                a = run_load(args.port, args.secs)
        finally:
            server.terminate()
            server.wait()
        ratio = a[0] / b[0]
        ratios.append(ratio)
        loads.append(a)
        mios.append(b)
        print(f"round {r}: load {a[0]:.0f}/s (lost {a[1]}; ~{a[2][0]:.0f} user, "
              f"~{a[2][1]:.0f} sys ns/datagram)  mio_udp_load {b[0]:.0f}/s (lost {b[1]}; "
              f"~{b[2][0]:.0f} user, ~{b[2][1]:.0f} sys)  ratio {ratio:.3f}", flush=True)
    med = statistics.median
    print(f"median: load {med(x[0] for x in loads):.0f}/s, ~{med(x[2][0] for x in loads):.0f} "
          f"user ns/datagram; mio_udp_load {med(x[0] for x in mios):.0f}/s, "
          f"~{med(x[2][0] for x in mios):.0f} user ns/datagram; load / mio_udp_load "
          f"{med(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}], load ahead in "
          f"{sum(x > 1 for x in ratios)} of {len(ratios)}")


if __name__ == "__main__":
    main()
