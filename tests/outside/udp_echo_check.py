#!/usr/bin/env python3
"""Checks a UDP echo server from outside, with Python's own sockets.

Two phases, every datagram's content random (seeded) and checked byte for byte:

* one socket, one datagram at a time, sizes from 0 to 65 507 bytes (the
  largest IPv4 UDP payload) and a spread of common sizes;
* many sockets at once, each with a datagram in flight (small enough that
  the server's receive buffer holds them all, so loopback drops none).

A datagram that does not come back within --timeout is reported as lost:
on loopback, with these sizes and one in flight per socket, nothing is
dropped by the kernel, so a loss is the server's. Exits 1 on any
mismatch or loss, 2 on bad arguments, 0 otherwise.
"""

import argparse
import random
import socket
import sys
import time


def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", type=parse_addr, required=True, help="server HOST:PORT")
    ap.add_argument("--sockets", type=int, default=32, help="sockets in the concurrent phase")
    ap.add_argument("--rounds", type=int, default=50, help="rounds of the concurrent phase")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one echo")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    failures = []
    started = time.monotonic()

    def payload(n):
        return rng.randbytes(n)

    def check_echo(sock, data, what):
        """Waits for `data`'s echo on `sock`; records a loss or a mismatch."""
        try:
            back, _ = sock.recvfrom(65536)
        except socket.timeout:
            failures.append(f"{what}: a {len(data)}-byte datagram never came back")
            return
        if back != data:
            failures.append(f"{what}: a {len(data)}-byte datagram came back as {len(back)} "
                            "bytes that differ")

    # Phase 1: one at a time, every size class up to the largest.
    sizes = [0, 1, 2, 63, 64, 65, 512, 1400, 1472, 1500, 4096, 8192, 9000, 16384,
             32768, 60000, 65507] + [rng.randint(0, 65507) for _ in range(100)]
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    one.settimeout(a.timeout)
    one.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for n in sizes:
        data = payload(n)
        one.sendto(data, a.addr)
        check_echo(one, data, "one at a time")
    one.close()

    # Phase 2: many sockets, one datagram in flight on each.
    socks = []
    for _ in range(a.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(a.timeout)
        socks.append(s)
    for r in range(a.rounds):
        sent = []
        for s in socks:
            data = payload(rng.randint(1, 1024))
            s.sendto(data, a.addr)
            sent.append(data)
        for i, (s, data) in enumerate(zip(socks, sent)):
            check_echo(s, data, f"round {r}, socket {i}")
    for s in socks:
        s.close()

    total = len(sizes) + a.sockets * a.rounds
    elapsed = time.monotonic() - started
    if failures:
        for f in failures[:20]:
            print(f"udp_echo_check: {f}", file=sys.stderr)
        print(f"udp_echo_check: FAILED: {len(failures)} of {total} datagrams lost or corrupted",
              file=sys.stderr)
        return 1
    print(f"udp_echo_check: {total} datagrams (0 to 65507 bytes, {a.sockets} sockets at once) "
          f"echoed byte for byte in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
