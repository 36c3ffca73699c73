#!/usr/bin/env python3
"""What an idle connection costs the echo server, by serving API.

For each `--api` of `examples/echo_server` (one worker, on 127.0.0.1), in
turn: start the server, read its resident memory (VmRSS), open
`--connections` connections that each send one 4-byte message and read its
echo (so every connection's task has run and waits in its receive), read
the server's VmRSS again, then close them and stop the server. Prints the
growth per connection. The kernel's socket buffers are not in the server's
RSS; what is there is the connections' tasks and the runtime's tables.

    cargo build --release --example echo_server
    python3 benches/scripts/idle_connections.py --connections 10000
"""

import argparse
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "target" / "release" / "examples" / "echo_server"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start(api: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(SERVER), "--addr", f"127.0.0.1:{port}", "--api", api],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        server.kill()
        sys.exit(f"idle_connections: echo_server --api {api} did not start: {line!r}")
    return server


def measure(api: str, port: int, connections: int) -> tuple[int, int]:
    server = start(api, port)
    try:
        before = rss_kib(server.pid)
        held = []
        for _ in range(connections):
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(b"ping")
            held.append(conn)
        for conn in held:
            got = b""
            while len(got) < 4:
                chunk = conn.recv(4 - len(got))
                if not chunk:
                    sys.exit(f"idle_connections: --api {api} closed a connection")
                got += chunk
            if got != b"ping":
                sys.exit(f"idle_connections: --api {api} echoed {got!r}")
        time.sleep(0.5)
        after = rss_kib(server.pid)
        for conn in held:
            conn.close()
        return before, after
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--apis", default="futures,poll,readiness")
    parser.add_argument("--port", type=int, default=17_600)
    args = parser.parse_args()
    if not SERVER.exists():
        sys.exit("idle_connections: build it first: cargo build --release --example echo_server")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.connections + 100:
        sys.exit(f"idle_connections: the open-files hard limit ({hard}) is below --connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{args.connections} idle connections, one worker:")
    for i, api in enumerate(args.apis.split(",")):
        before, after = measure(api, args.port + i, args.connections)
        per = (after - before) * 1024 / args.connections
        print(
            f"  --api {api:10} RSS {before:7} KiB before, {after:7} KiB after: "
            f"{per:6.0f} bytes per connection"
        )


if __name__ == "__main__":
    main()
