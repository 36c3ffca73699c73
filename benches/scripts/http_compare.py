#!/usr/bin/env python3
"""http_compare: requests/s, p99 and server CPU per request of hyper's HTTP/1.1 server on
cellio (the `http_server` example) and on tokio current_thread (`tokio_http`), under the same
keep-alive load from `wrk` (`GET /`, 18-byte body). `--protocol http2`: the same over HTTP/2
(cleartext, prior knowledge), loaded by `h2load` with `--streams` requests in flight per
connection; its p99 comes from h2load's per-request log.

The server runs pinned to CPU 0 and the client (one thread) to CPU 1. Each run: a warm-up of
`--warmup` seconds, then the measured wrk of `--secs`; the server's user and system CPU come
from /proc/PID/stat across the measured wrk only, divided by the requests wrk completed. The
servers are interleaved, the order reversed every other round, and the table gives medians.
Figures come from clock ticks (CLK_TCK, usually 100 per second): use several rounds.

`--tls`: HTTPS, both servers with the same throwaway certificate (made with `openssl`) and
rustls (cellio's example and tokio_http share `examples/http/src/tls.rs`); keep-alive
connections, so a run measures the records' encryption more than handshakes.

`--allocs`: instead, each server's heap allocations per request, counted from outside the
process (tests/outside/malloc_count.c preloaded; needs cc): `--allocs-requests` requests by
h2load (`--h1` for HTTP/1.1) after as many of warm-up, the count read before and after.

Needs wrk (apt-get install wrk), for HTTP/2 and --allocs h2load (apt-get install nghttp2-client).
Build first:  cargo build --release -p cellio-benches-http -p cellio-http-example
Run:          python3 benches/scripts/http_compare.py [--rounds 3] [--secs 5] [--connections 50]
                  [--protocol http2 --streams 10] [--allocs]
"""

import argparse
import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import signal
import tempfile
import time

from cpu_window import TICK_NS, cpu_ticks, start_server

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")
SERVERS = {
    "tokio-current": [os.path.join(REL, "tokio_http")],
    "cellio": [os.path.join(REL, "http_server")],
}


def wrk(a, addr, secs):
    """Runs wrk against `addr` for `secs`; returns (requests, requests/s, p99 µs)."""
    out = subprocess.run(
        ["taskset", "-c", a.client_cpu, "wrk", "-t1", f"-c{a.connections}", f"-d{secs}s",
         "--latency", f"{a.scheme}://{addr}/"], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if re.search(r"Non-2xx or 3xx responses|Socket errors", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
    return requests, rate, p99


def h2load(a, addr, secs):
    """Runs h2load against `addr` for `secs`; returns (requests, requests/s, p99 µs)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".log") as log:
        out = subprocess.run(
            ["taskset", "-c", a.client_cpu, "h2load", "-t1", f"-c{a.connections}",
             f"-m{a.streams}", f"-D{secs}", f"--log-file={log.name}", f"{a.scheme}://{addr}/"],
            capture_output=True, text=True, check=True).stdout
        # One line per request: start time, status, duration in µs.
        durations = sorted(int(line.split()[2]) for line in log if line.strip())
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    if done is None or int(done.group(3)) or int(done.group(4)) \
            or done.group(1) != done.group(2):
        raise RuntimeError(f"h2load saw errors:\n{out}")
    requests = int(done.group(2))
    rate = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
    return requests, rate, p99


def make_certificate():
    """A throwaway certificate for 127.0.0.1 in a new directory: the servers' TLS flags."""
    if shutil.which("openssl") is None:
        sys.exit("http_compare: --tls needs openssl (apt-get install openssl)")
    work = tempfile.mkdtemp(prefix="cellio-http-tls-")
    atexit.register(shutil.rmtree, work, True)
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return ["--tls-cert", cert, "--tls-key", key]


def one_run(name, a):
    server, addr = start_server(["taskset", "-c", a.server_cpu] + SERVERS[name]
                         + ["--addr", "127.0.0.1:0", "--protocol", a.protocol] + a.tls_args,
                         name)
    load = wrk if a.protocol == "http1" else h2load
    try:
        load(a, addr, a.warmup)
        u0, s0 = cpu_ticks(server.pid)
        requests, rate, p99 = load(a, addr, a.secs)
        u1, s1 = cpu_ticks(server.pid)
    finally:
        server.terminate()
        server.wait()
    return (rate, (u1 - u0) * TICK_NS / 1e3 / requests, (s1 - s0) * TICK_NS / 1e3 / requests,
            p99)


def allocs_per_request(name, a, shim, work):
    """`name`'s heap allocations per request under h2load: (allocations, requests)."""
    counts = os.path.join(work, f"counts-{name}")
    env = dict(os.environ, LD_PRELOAD=shim, MALLOC_COUNT_FILE=counts)
    server = subprocess.Popen(SERVERS[name] + ["--addr", "127.0.0.1:0", "--protocol", a.protocol]
                              + a.tls_args,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"{name} did not start: {line!r}")
        addr = line.split()[2].rstrip(",")
        h1 = ["--h1"] if a.protocol == "http1" else []

        def load():
            out = subprocess.run(["h2load", *h1, "-t1", f"-c{a.connections}", f"-m{a.streams}",
                                  f"-n{a.allocs_requests}", f"{a.scheme}://{addr}/"],
                                 capture_output=True, text=True, check=True).stdout
            if f"{a.allocs_requests} succeeded" not in out:
                raise RuntimeError(f"h2load saw failures against {name}:\n{out}")

        def count():
            time.sleep(0.3)  # the last responses' teardown
            before = len(open(counts).read().splitlines()) if os.path.exists(counts) else 0
            server.send_signal(signal.SIGUSR2)
            for _ in range(500):
                lines = open(counts).read().splitlines() if os.path.exists(counts) else []
                if len(lines) > before:
                    return int(lines[-1].split()[0])
                time.sleep(0.01)
            raise RuntimeError(f"{name} did not report its allocations")

        load()  # warm-up: connections, buffers, task pools
        c0 = count()
        load()
        return count() - c0, a.allocs_requests
    finally:
        server.terminate()
        server.wait()


def main_allocs(a):
    if shutil.which("h2load") is None or shutil.which("cc") is None:
        sys.exit("http_compare: --allocs needs h2load (apt-get install nghttp2-client) and cc")
    work = tempfile.mkdtemp(prefix="cellio-http-allocs-")
    # The shim and its build are tests/outside/count_allocs.py's.
    sys.path.insert(0, os.path.join(ROOT, "tests", "outside"))
    from count_allocs import build_shim
    shim = build_shim(work)
    print(f"h2load{' --h1' if a.protocol == 'http1' else ''} -t1 -c{a.connections} "
          f"-m{a.streams} -n{a.allocs_requests}, GET /, after as many of warm-up")
    for name in SERVERS:
        allocations, requests = allocs_per_request(name, a, shim, work)
        print(f"{name:14s} {allocations / requests:8.2f} allocations per request "
              f"({allocations} in {requests})")
    shutil.rmtree(work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5, help="measured window per run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--protocol", choices=["http1", "http2"], default="http1")
    ap.add_argument("--streams", type=int, default=10,
                    help="HTTP/2: requests in flight per connection (h2load -m)")
    ap.add_argument("--allocs", action="store_true",
                    help="count heap allocations per request instead (see the top)")
    ap.add_argument("--allocs-requests", type=int, default=100000)
    ap.add_argument("--tls", action="store_true", help="HTTPS (see the top; needs openssl)")
    a = ap.parse_args()
    a.scheme, a.tls_args = "http", []
    if a.tls:
        a.scheme, a.tls_args = "https", make_certificate()
    if a.allocs:
        return main_allocs(a)
    if a.protocol == "http1" and shutil.which("wrk") is None:
        sys.exit("http_compare: wrk not found (apt-get install wrk)")
    if a.protocol == "http2" and shutil.which("h2load") is None:
        sys.exit("http_compare: h2load not found (apt-get install nghttp2-client)")
    for command in SERVERS.values():
        if not os.path.exists(command[0]):
            sys.exit(f"http_compare: {command[0]} not built (see --help)")
    results = {name: [] for name in SERVERS}
    names = list(SERVERS)
    for r in range(a.rounds):
        for name in (names if r % 2 == 0 else list(reversed(names))):
            row = one_run(name, a)
            results[name].append(row)
            print(f"round {r + 1} {name:14s} {row[0]:9.0f} req/s  user {row[1]:6.2f}  "
                  f"sys {row[2]:6.2f} us/req  p99 {row[3]:8.1f} us", flush=True)
    med = {name: [statistics.median(v[i] for v in rows) for i in range(4)]
           for name, rows in results.items()}
    client = (f"wrk -t1 -c{a.connections}, GET /, keep-alive" if a.protocol == "http1" else
              f"h2load -t1 -c{a.connections} -m{a.streams}, GET /, HTTP/2")
    if a.tls:
        client += ", over TLS"
    print(f"\n{client}; medians of {a.rounds} rounds x "
          f"{a.secs} s; server on CPU {a.server_cpu}, client on CPU {a.client_cpu}")
    print(f"{'server':14s} {'req/s':>9s} {'user us':>8s} {'sys us':>8s} {'cpu us':>8s} "
          f"{'p99 us':>8s}")
    for name, (rate, user, system, p99) in med.items():
        print(f"{name:14s} {rate:9.0f} {user:8.2f} {system:8.2f} {user + system:8.2f} "
              f"{p99:8.1f}")
    t, c = med["tokio-current"], med["cellio"]
    print(f"cellio: {c[0] / t[0]:.2f}x tokio current_thread's requests/s; server CPU per "
          f"request {(c[1] + c[2]) / (t[1] + t[2]):.2f}x (user {c[1] / t[1]:.2f}x, system "
          f"{c[2] / t[2]:.2f}x)")


if __name__ == "__main__":
    main()
