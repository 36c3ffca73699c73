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
name=udp_callgrind
# shellcheck source=callgrind_common.sh
source "$root/benches/scripts/callgrind_common.sh"
require_built "$server" "$client"

# Prints "INSTRUCTIONS DATAGRAMS" for one run of SECS seconds on PORT.
run() {
    local secs=$1 port=$2
    start_under_callgrind "$server" --addr "127.0.0.1:$port" --api "$api"
    for _ in $(seq 1 100); do grep -q listening "$work/server.txt" && break; sleep 0.1; done
    local out
    out=$("$client" --addr "127.0.0.1:$port" --sockets 10 --warmup 0 --duration "$secs" | tail -n 1)
    stop_and_count
    echo "$instructions $(json_field "$out" datagrams)"
}
read -r ir1 n1 < <(run "$short" "$port")
read -r ir2 n2 < <(run "$long" $((port + 1)))
per_unit "$ir1" "$n1" "$ir2" "$n2" "--api $api" datagram "$short" "$long"
