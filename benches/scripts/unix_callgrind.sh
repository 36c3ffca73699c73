#!/usr/bin/env bash
# unix_callgrind.sh: user-space instructions per echoed message of the Unix-domain stream echo
# server, counted by valgrind's callgrind under `load --unix --connections 10 --size 64`. Two runs
# (SHORT and LONG seconds of load); the difference of their instruction counts divided by the
# difference of their messages, so that start-up and shutdown cancel out (as udp_callgrind.sh).
#
# Build first:  cargo build --release --example unix_echo_server --example load
# Run:          benches/scripts/unix_callgrind.sh [API] [SHORT] [LONG]
#               API: the unix_echo_server's --api (futures, poll; default futures),
#               SHORT/LONG seconds (default 1 and 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
server="$root/target/release/examples/unix_echo_server"
client="$root/target/release/examples/load"
api=${1:-futures} short=${2:-1} long=${3:-3}
for bin in "$server" "$client"; do
    [[ -x $bin ]] || { echo "unix_callgrind: $bin not built (see the header)" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "unix_callgrind: valgrind not installed" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints "INSTRUCTIONS MESSAGES" for one run of SECS seconds.
run() {
    local secs=$1 sock="$work/echo.sock"
    rm -f "$work"/cg.out.* "$sock"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" \
        "$server" --path "$sock" --api "$api" >"$work/server.txt" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do [[ -S $sock ]] && break; sleep 0.1; done
    local out
    out=$("$client" --unix "$sock" --connections 10 --size 64 --duration "${secs}s" --json | tail -n 1)
    kill -TERM "$pid"
    wait "$pid" || true
    local ir
    ir=$(grep -h '^summary:' "$work"/cg.out.* | awk '{ print $2 }')
    echo "$ir $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["msgs"])' "$out")"
}
read -r ir1 n1 < <(run "$short")
read -r ir2 n2 < <(run "$long")
python3 -c "
ir1, n1, ir2, n2 = map(int, '$ir1 $n1 $ir2 $n2'.split())
print(f'--api $api: {(ir2 - ir1) / (n2 - n1):.1f} instructions per message '
      f'({ir1} for {n1} messages in ${short} s, {ir2} for {n2} in ${long} s)')"
