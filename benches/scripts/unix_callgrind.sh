#!/usr/bin/env bash
# unix_callgrind.sh: user-space instructions per echoed message of the Unix-domain stream echo
# server, counted by valgrind's callgrind under `load --unix --connections 10 --size 64`. Two runs
# (SHORT and LONG seconds of load); the difference of their instruction counts divided by the
# difference of their messages, so that start-up and shutdown cancel out (as udp_callgrind.sh).
# The client runs with no warm-up: its count leaves a warm-up's messages out while callgrind
# counts the server's instructions for them, and under valgrind the warm-up's rate varies 2x
# from run to run, so a warm-up would not cancel.
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
name=unix_callgrind
# shellcheck source=callgrind_common.sh
source "$root/benches/scripts/callgrind_common.sh"
require_built "$server" "$client"

# Prints "INSTRUCTIONS MESSAGES" for one run of SECS seconds.
run() {
    local secs=$1 sock="$work/echo.sock"
    rm -f "$sock"
    start_under_callgrind "$server" --path "$sock" --api "$api"
    for _ in $(seq 1 100); do [[ -S $sock ]] && break; sleep 0.1; done
    local out
    out=$("$client" --unix "$sock" --connections 10 --size 64 --warmup 0s --duration "${secs}s" --json | tail -n 1)
    stop_and_count
    echo "$instructions $(json_field "$out" msgs)"
}
read -r ir1 n1 < <(run "$short")
read -r ir2 n2 < <(run "$long")
per_unit "$ir1" "$n1" "$ir2" "$n2" "--api $api" message "$short" "$long"
