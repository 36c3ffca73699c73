#!/usr/bin/env python3
"""Byte-exactness check for an echo server, independent of the Rust code.

Opens N asyncio connections; each sends M messages of random size (1..MAX bytes, random
content), possibly in several chunks, reads back exactly that many bytes and compares.
Then half-closes and expects EOF (no extra bytes). Exits non-zero on any difference.

    python3 benches/scripts/echo_check.py 127.0.0.1:PORT [--conns 50] [--msgs 40] [--max 65536]
"""
import argparse
import asyncio
import os
import random
import sys


async def one(host, port, cid, msgs, max_size, rng):
    reader, writer = await asyncio.open_connection(host, port)
    total = 0
    for i in range(msgs):
        size = rng.randint(1, max_size)
        data = os.urandom(size)
        # send in 1-3 chunks so the server sees split messages too
        cuts = sorted(rng.sample(range(1, size), min(2, size - 1))) if size > 2 else []
        prev = 0
        for c in cuts + [size]:
            writer.write(data[prev:c])
            prev = c
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(size), 30)
        if got != data:
            pos = next(k for k in range(size) if got[k] != data[k])
            raise AssertionError(f"conn {cid} msg {i} size {size}: first difference at byte {pos}")
        total += size
    writer.write_eof()
    extra = await asyncio.wait_for(reader.read(), 30)
    if extra:
        raise AssertionError(f"conn {cid}: {len(extra)} unexpected bytes after the last echo")
    writer.close()
    return total


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--msgs", type=int, default=40)
    ap.add_argument("--max", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    rng = random.Random(a.seed)
    tasks = [one(host, int(port), c, a.msgs, a.max, random.Random(rng.random())) for c in range(a.conns)]
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    print(f"ok: {a.conns} connections x {a.msgs} messages, {sum(results)} bytes echoed byte-exact")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
