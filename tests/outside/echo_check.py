#!/usr/bin/env python3
"""echo_check: an outside client for an echo server (Python 3 stdlib, asyncio).

It shares no code with cellio, so it checks the server the way any other
client would. For each of --clients concurrent connections:

  1. --rounds messages of random size (log-uniform, 1 byte .. --max-size,
     default 64 KiB). Each message is written in several random chunks with
     small awaits between them while the echo is read concurrently, and the
     echo must match byte for byte.
  2. A half-close phase: a last payload is written (again in chunks), then
     the write side is shut down (write_eof, a FIN). Everything is read until
     EOF and must equal what was sent: the server must echo all of it and
     then close its side.

Exits 0 only if every byte came back in order and every connection ended
cleanly; otherwise prints what went wrong and exits 1 (2 on a timeout).
The whole run is bounded by --timeout seconds (default 60).

    python3 tests/outside/echo_check.py --addr 127.0.0.1:7000 [--clients 120] [--rounds 8]

Last line on success:
    echo_check: 120 clients, N messages, M bytes, 0 mismatches
"""

import argparse
import asyncio
import math
import random
import sys
import time

PROG = "echo_check"
MAX_REPORTS = 5


class Stats:
    def __init__(self):
        self.messages = 0
        self.bytes = 0
        self.mismatches = 0
        self.errors = 0
        self.finished = 0
        self.reports = []
        self.phase = {}  # client id -> what it is doing, while unfinished

    def report(self, text):
        if len(self.reports) < MAX_REPORTS:
            self.reports.append(text)


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:7000
    port = int(port)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, port


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def random_size(rng, max_size):
    """Log-uniform in 1..max_size: many small messages, some large ones."""
    return max(1, min(max_size, int(math.exp(rng.uniform(0, math.log(max_size + 1))))))


def random_bytes(rng, size):
    return rng.getrandbits(8 * size).to_bytes(size, "little")


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


async def write_in_chunks(writer, data, rng, then_eof=False):
    """Writes `data` in 1..8 random pieces, yielding to the loop between.

    With `then_eof`, the write side is shut down (FIN) right behind the last
    piece, with no await in between, so the last bytes and the FIN tend to
    reach the server together.
    """
    pieces = rng.randint(1, min(8, len(data))) if data else 1
    cuts = sorted(rng.sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []
    start = 0
    for end in cuts + [len(data)]:
        writer.write(data[start:end])
        start = end
        if then_eof and end == len(data):
            if not writer.can_write_eof():
                raise RuntimeError("transport cannot shut down its write side")
            writer.write_eof()
            await writer.drain()
            return
        await writer.drain()
        # Small awaits so the server sees the message arrive in parts.
        if rng.random() < 0.3:
            await asyncio.sleep(rng.choice((0, 0.0005, 0.002)))
        else:
            await asyncio.sleep(0)


def compare(stats, cid, what, sent, got):
    if got == sent:
        stats.messages += 1
        stats.bytes += len(sent)
        return True
    stats.mismatches += 1
    at = first_difference(sent, got)
    stats.report(
        f"client {cid}: {what}: sent {len(sent)} bytes, got {len(got)} back; "
        f"first difference at byte {at}"
    )
    return False


async def client(cid, host, port, args, stats):
    rng = random.Random((args.seed << 20) ^ cid)
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        stats.errors += 1
        stats.report(f"client {cid}: cannot connect to {host}:{port}: {e}")
        return
    phase = "connect"
    stats.phase[cid] = phase
    send = None
    try:
        for rnd in range(args.rounds):
            phase = f"round {rnd}"
            stats.phase[cid] = phase
            data = random_bytes(rng, random_size(rng, args.max_size))
            send = asyncio.ensure_future(write_in_chunks(writer, data, rng))
            try:
                got = await reader.readexactly(len(data))
            except asyncio.IncompleteReadError as e:
                got = e.partial
                stats.report(f"client {cid}: {phase}: connection closed early")
            await send
            if not compare(stats, cid, phase, data, got):
                return

        # Half-close: send a last payload, then FIN; the echo of everything
        # must arrive, followed by EOF. Half the clients send the FIN right
        # behind the last bytes, the others after a pause, so the server sees
        # both "data and end of stream at once" and "end of stream alone".
        phase = "half-close"
        stats.phase[cid] = phase
        data = random_bytes(rng, random_size(rng, args.max_size))
        fin_at_once = cid % 2 == 0

        async def send_then_fin():
            if fin_at_once:
                await write_in_chunks(writer, data, rng, then_eof=True)
            else:
                await write_in_chunks(writer, data, rng)
                await asyncio.sleep(0.01)
                writer.write_eof()

        send = asyncio.ensure_future(send_then_fin())
        got = await reader.read(-1)  # until EOF
        await send
        if compare(stats, cid, "half-close (write, shutdown, read to EOF)", data, got):
            stats.finished += 1
            del stats.phase[cid]
    except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
        stats.errors += 1
        stats.report(f"client {cid}: {phase}: {type(e).__name__}: {e}")
    finally:
        if send is not None and not send.done():
            send.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def run(args, stats):
    host, port = args.addr
    await asyncio.gather(*(client(cid, host, port, args, stats) for cid in range(args.clients)))


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Check an echo server byte for byte from outside."
    )
    parser.add_argument("--addr", type=parse_addr, required=True, help="server HOST:PORT")
    parser.add_argument("--clients", type=positive, default=120, help="concurrent connections (120)")
    parser.add_argument("--rounds", type=positive, default=8, help="messages per client before the half-close (8)")
    parser.add_argument("--max-size", type=positive, default=64 * 1024, help="largest message in bytes (65536)")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the whole run, seconds (60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = int(time.time() * 1000) % 1_000_000
    host, port = args.addr

    stats = Stats()
    started = time.monotonic()
    timed_out = False

    async def bounded():
        nonlocal timed_out
        try:
            await asyncio.wait_for(run(args, stats), args.timeout)
        except asyncio.TimeoutError:
            timed_out = True

    asyncio.run(bounded())
    elapsed = time.monotonic() - started

    for line in stats.reports:
        print(f"{PROG}: {line}", file=sys.stderr)
    summary = (
        f"{PROG}: {args.clients} clients, {stats.messages} messages, "
        f"{stats.bytes} bytes, {stats.mismatches} mismatches"
    )
    detail = f"({stats.errors} errors, {elapsed:.1f} s, seed {args.seed}, server {host}:{port})"
    if timed_out:
        print(f"{summary} {detail}")
        stuck = sorted(stats.phase.items())
        for cid, phase in stuck[:MAX_REPORTS]:
            hint = ""
            if phase == "half-close":
                hint = " (the server never closed its side after our FIN: end of stream missed?)"
            print(f"{PROG}: client {cid} still waiting in {phase}{hint}", file=sys.stderr)
        if len(stuck) > MAX_REPORTS:
            print(f"{PROG}: ... and {len(stuck) - MAX_REPORTS} more", file=sys.stderr)
        print(
            f"{PROG}: FAILED: timed out after {args.timeout:g} s; "
            f"{stats.finished} of {args.clients} clients finished",
            file=sys.stderr,
        )
        return 2
    if stats.mismatches or stats.errors or stats.finished != args.clients:
        print(f"{summary} {detail}")
        print(
            f"{PROG}: FAILED: {stats.mismatches} mismatches, {stats.errors} errors, "
            f"{stats.finished} of {args.clients} clients finished cleanly "
            f"(rerun with --seed {args.seed} to repeat)",
            file=sys.stderr,
        )
        return 1
    print(f"{summary} {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
