#!/usr/bin/env bash
# udp_callgrind.sh: user-space instructions per echoed datagram of a UDP echo server, counted
# by valgrind's callgrind under `mio_udp_load --sockets 10`. Two runs (SHORT and LONG seconds
# of load); the difference of their instruction counts divided by the difference of their
# datagrams, so that start-up and shutdown cancel out.
#
# Build first:  cargo build --release -p cellio-benches && cargo build --release --example udp_echo_server
# Run:          benches/scripts/udp_callgrind.sh [API] [SHORT] [LONG] [PORT]
#               API: the udp_echo_server's --api (futures, poll, batch; default futures),
#               SHORT/LONG seconds (default 1 and 3), PORT (default 7671; LONG uses PORT+1).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
server="$root/target/release/examples/udp_echo_server"
client="$root/target/release/mio_udp_load"
api=${1:-futures} short=${2:-1} long=${3:-3} port=${4:-7671}
for bin in "$server" "$client"; do
    [[ -x $bin ]] || { echo "udp_callgrind: $bin not built (see the header)" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "udp_callgrind: valgrind not installed" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints "INSTRUCTIONS DATAGRAMS" for one run of SECS seconds on PORT.
run() {
    local secs=$1 port=$2
    rm -f "$work"/cg.out.*
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" \
        "$server" --addr "127.0.0.1:$port" --api "$api" >"$work/server.txt" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do grep -q listening "$work/server.txt" && break; sleep 0.1; done
    local out
    out=$("$client" --addr "127.0.0.1:$port" --sockets 10 --warmup 0 --duration "$secs" | tail -n 1)
    kill -TERM "$pid"
    wait "$pid" || true
    local ir
    ir=$(grep -h '^summary:' "$work"/cg.out.* | awk '{ print $2 }')
    echo "$ir $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["datagrams"])' "$out")"
}
read -r ir1 n1 < <(run "$short" "$port")
read -r ir2 n2 < <(run "$long" $((port + 1)))
python3 -c "
ir1, n1, ir2, n2 = map(int, '$ir1 $n1 $ir2 $n2'.split())
print(f'--api $api: {(ir2 - ir1) / (n2 - n1):.1f} instructions per datagram '
      f'({ir1} for {n1} datagrams in ${short} s, {ir2} for {n2} in ${long} s)')"
