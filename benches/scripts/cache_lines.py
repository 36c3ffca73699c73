#!/usr/bin/env python3
"""Distinct cache lines an echo server touches per message, and who touches them.

Why: on this VM every read/write syscall evicts most of the user's L1 lines, so a
server's user cycles per message track the number of distinct lines it touches
between syscalls more than its instruction count (`perf stat -e
L1-dcache-load-misses:u` on the 100-connection benchmark: raw mio ~4 per message,
cellio ~17-20 before the cache-line work). Sampling profiles cannot show where those
misses are on this VM (the PMU interrupt skids into the kernel), so this script
counts lines exactly instead, from a valgrind `lackey` memory trace:

* runs SERVER --addr 127.0.0.1:PORT under `valgrind --tool=lackey --trace-mem=yes
  --trace-syscalls=yes`;
* drives one connection in strict ping-pong (N messages of 64 B), so that every
  message is one reactor wait: the trace splits into one window per message at the
  server's epoll wait;
* over the middle third of the windows, prints the average number of distinct data
  and instruction lines per message, then, for one window, every data line with the
  code that touched it first (addr2line, inline chain) and the instruction lines per
  function.

    python3 benches/scripts/cache_lines.py target/release/examples/echo_server [--port 7160] [--messages 200]

Needs valgrind and addr2line (binutils); a release build with debug info (the
workspace profile has `debug = 1`). Traces are large (~20 MB for 200 messages).
Limits: user space only; a line counts once per message however often it is touched;
addresses assume valgrind's load base for PIE executables on amd64 (0x108000).
"""
import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time

PIE_BASE = 0x108000


def drive(port, messages):
    for _ in range(200):
        try:
            probe = socket.create_connection(("127.0.0.1", port))
            probe.close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit("the server never started listening")
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(messages):
        s.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            chunk = s.recv(64 - len(got))
            if not chunk:
                sys.exit("the server closed the connection")
            got += chunk
    s.close()


def windows_of(log):
    """Splits the trace at the epoll wait that occurs most often (the reactor's)."""
    waits = collections.Counter()
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("SYSCALL") and "epoll" in line and "wait" in line and "(" in line:
                waits[line.split(")", 1)[1].split(",")[0]] += 1
    if not waits:
        sys.exit("no epoll wait in the trace")
    marker = waits.most_common(1)[0][0]
    windows, cur = [], None
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("SYSCALL"):
                if marker in line:
                    if cur is not None:
                        windows.append(cur)
                    cur = []
                continue
            if cur is None:
                continue
            if line.startswith("I "):
                cur.append(("I", int(line[2:].split(",")[0], 16), 0))
            elif line[:3] in (" L ", " S ", " M "):
                addr, size = line[3:].strip().split(",")
                cur.append((line[1], int(addr, 16), int(size)))
    return windows


def symbolize(binary, addr, depth=3):
    """The inline chain at `addr`, innermost first: its first `depth` frames, or,
    with a negative `depth`, its last (outermost) `-depth` frames."""
    if not PIE_BASE <= addr < 0x4000000:
        return hex(addr)
    out = subprocess.run(
        ["addr2line", "-f", "-C", "-i", "-e", binary, hex(addr - PIE_BASE)],
        capture_output=True, text=True).stdout.split("\n")
    frames = [(out[j], out[j + 1].split("/")[-1]) for j in range(0, len(out) - 1, 2)]
    frames = frames[:depth] if depth > 0 else frames[depth:]
    return " < ".join(f"{fn[:60]}@{loc}" for fn, loc in frames)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server")
    ap.add_argument("--port", type=int, default=7160)
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "lackey.log")
        server = subprocess.Popen(
            ["valgrind", "--tool=lackey", "--trace-mem=yes", "--trace-syscalls=yes",
             f"--log-file={log}", args.server, "--addr", f"127.0.0.1:{args.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            drive(args.port, args.messages)
            time.sleep(0.5)
        finally:
            server.terminate()
            server.wait()
        windows = windows_of(log)
    steady = windows[len(windows) // 3: 2 * len(windows) // 3]
    if not steady:
        sys.exit("too few messages traced")
    data, code, instrs = [], [], []
    for w in steady:
        d = {a >> 6 for k, a, _ in w if k != "I"} | {(a + s - 1) >> 6 for k, a, s in w if k != "I"}
        data.append(len(d))
        code.append(len({a >> 6 for k, a, _ in w if k == "I"}))
        instrs.append(sum(1 for k, _, _ in w if k == "I"))
    avg = lambda xs: sum(xs) / len(xs)
    print(f"{len(steady)} messages: {avg(data):.1f} data lines, {avg(code):.1f} instruction lines, "
          f"{avg(instrs):.0f} instructions per message")
    w = steady[len(steady) // 2]
    first, last_i = {}, 0
    for k, a, s in w:
        if k == "I":
            last_i = a
            continue
        for line in {a >> 6, (a + s - 1) >> 6}:
            first.setdefault(line, (k, a, last_i))
    regions = collections.Counter()
    print("\ndata lines of one message (first access, address, first toucher):")
    for line, (k, a, ia) in sorted(first.items()):
        region = "stack" if a > 0x1F00000000 else ("image" if a < 0x4000000 else "heap")
        regions[region] += 1
        print(f"  {k} {a:#14x} {region:5s} {symbolize(args.server, ia)}")
    print("  by region:", dict(regions))
    per_fn, seen = collections.Counter(), set()
    for k, a, _ in w:
        if k == "I" and (a >> 6) not in seen:
            seen.add(a >> 6)
            per_fn[symbolize(args.server, a, depth=-1).split("@")[0]] += 1
    print("\ninstruction lines of one message, by outermost function:")
    for fn, n in per_fn.most_common():
        print(f"  {n:3d} {fn}")


if __name__ == "__main__":
    main()
