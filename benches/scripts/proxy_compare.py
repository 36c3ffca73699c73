#!/usr/bin/env python3
"""proxy_compare: messages/s and proxy CPU per proxied message of cellio's proxy example
copying (`copy_bidirectional`), cellio's proxy splicing (`--splice`: `splice_bidirectional`),
cellio's proxy choosing per read (`--splice-auto`: `splice_bidirectional_auto`) and tokio
current_thread's (`tokio_proxy`: `tokio::io::copy_bidirectional`), between cellio's
load client and cellio's echo server, under the same closed-loop load (every echo checked byte
for byte).

The proxy runs pinned to CPU 0; the echo server and the client share CPU 1, so the figure to
compare is the proxy's CPU per message, not the rate. The proxy's user and system CPU come from
/proc/PID/stat from the end of the client's warm-up (timed by this script) to the client's
exit, divided by the messages the client measured (each message crosses the proxy twice: to
the echo server and back). The proxies are interleaved, the order reversed every other round,
and the table gives medians. Figures come from clock ticks (CLK_TCK, usually 100 per second):
use several rounds.

Build first:  cargo build --release -p cellio-benches --bin tokio_proxy &&
              cargo build --release --example proxy --example echo_server --example load
Run:          python3 benches/scripts/proxy_compare.py [--rounds 3] [--secs 3] [--size 65536]
"""

import argparse
import os
import statistics
import sys

from cpu_window import TICK_NS, measure, start_server

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")
PROXY = os.path.join(REL, "examples", "proxy")
PROXIES = {
    "tokio-current": [os.path.join(REL, "tokio_proxy")],
    "cellio-copy": [PROXY],
    "cellio-splice": [PROXY, "--splice"],
    "cellio-auto": [PROXY, "--splice-auto"],
}
ECHO = os.path.join(REL, "examples", "echo_server")
CLIENT = os.path.join(REL, "examples", "load")


def one_run(name, upstream, a):
    proxy, addr = start_server(["taskset", "-c", a.proxy_cpu] + PROXIES[name]
                        + ["--addr", "127.0.0.1:0", "--upstream", upstream], name)
    try:
        result, (user, system) = measure(
            proxy.pid,
            ["taskset", "-c", a.client_cpu, CLIENT, "--addr", addr, "--connections",
             str(a.connections), "--size", str(a.size), "--warmup", f"{a.warmup}s",
             "--duration", f"{a.secs}s", "--json"], a.warmup, f"through {name}")
    finally:
        proxy.terminate()
        proxy.wait()
    n = result["msgs"]
    return (result["msgs_per_sec"], user * TICK_NS / 1e3 / n, system * TICK_NS / 1e3 / n,
            result["p99_us"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=3.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--size", type=int, default=65536, help="message bytes")
    ap.add_argument("--proxy-cpu", default="0")
    ap.add_argument("--client-cpu", default="1", help="the client's and the echo server's")
    a = ap.parse_args()
    for path in [c[0] for c in PROXIES.values()] + [ECHO, CLIENT]:
        if not os.path.exists(path):
            sys.exit(f"proxy_compare: {path} not built (see --help)")
    echo, upstream = start_server(["taskset", "-c", a.client_cpu, ECHO, "--addr", "127.0.0.1:0"],
                           "the echo server")
    results = {name: [] for name in PROXIES}
    try:
        names = list(PROXIES)
        for r in range(a.rounds):
            for name in (names if r % 2 == 0 else list(reversed(names))):
                row = one_run(name, upstream, a)
                results[name].append(row)
                print(f"round {r + 1} {name:14s} {row[0]:9.0f} msg/s  user {row[1]:7.2f}  "
                      f"sys {row[2]:7.2f} us/msg  p99 {row[3]:8.1f} us", flush=True)
    finally:
        echo.terminate()
        echo.wait()
    med = {name: [statistics.median(v[i] for v in rows) for i in range(4)]
           for name, rows in results.items()}
    print(f"\n{a.connections} connections x {a.size} B through the proxy, closed loop; medians "
          f"of {a.rounds} rounds x {a.secs:g} s; proxy on CPU {a.proxy_cpu}, client and echo "
          f"server on CPU {a.client_cpu}")
    print(f"{'proxy':14s} {'msgs/s':>9s} {'user us':>8s} {'sys us':>8s} {'cpu us':>8s} "
          f"{'p99 us':>8s}")
    for name, (rate, user, system, p99) in med.items():
        print(f"{name:14s} {rate:9.0f} {user:8.2f} {system:8.2f} {user + system:8.2f} "
              f"{p99:8.1f}")
    t = med["tokio-current"]
    for name in ("cellio-copy", "cellio-splice", "cellio-auto"):
        c = med[name]
        print(f"{name}: proxy CPU per message {(c[1] + c[2]) / (t[1] + t[2]):.2f}x tokio "
              f"current_thread's (user {c[1] / t[1] if t[1] else float('nan'):.2f}x, "
              f"system {c[2] / t[2] if t[2] else float('nan'):.2f}x)")


if __name__ == "__main__":
    main()
