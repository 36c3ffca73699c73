# callgrind_common.sh: what udp_callgrind.sh and unix_callgrind.sh share (sourced, not run):
# the checks before a run, the work directory, one server run under callgrind, and the
# per-message figure from two runs of different lengths (their difference cancels start-up and
# shutdown). That holds only if each run's count covers every message the server echoed after
# its start-up: the clients run with no warm-up (`--warmup 0`), whose uncounted messages would
# not cancel (their number varies from run to run under valgrind). echo_compare's --callgrind
# has none either: its built-in client echoes a fixed number of messages.
#
# The sourcing script sets `name` (for messages) and passes its binaries to `require_built`.

# Exits 2 with a message unless every given binary is built and valgrind is installed.
require_built() {
    local bin
    for bin in "$@"; do
        [[ -x $bin ]] || { echo "$name: $bin not built (see the header)" >&2; exit 2; }
    done
    command -v valgrind >/dev/null || { echo "$name: valgrind not installed" >&2; exit 2; }
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Starts `"$@"` (a server command) under callgrind in the background; its output goes to
# $work/server.txt and its pid to $server_pid.
start_under_callgrind() {
    rm -f "$work"/cg.out.*
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" "$@" \
        >"$work/server.txt" 2>&1 &
    server_pid=$!
}

# Stops the server started last and sets $instructions to what it ran. (Not for `$(..)`: a
# subshell cannot wait for the server, which is its parent's child.)
stop_and_count() {
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    instructions=$(grep -h '^summary:' "$work"/cg.out.* | awk '{ print $2 }')
}

# The field FIELD of the JSON object JSON.
json_field() {
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# Prints the per-UNIT figure from two runs: IR1 N1 IR2 N2 LABEL UNIT SHORT LONG.
per_unit() {
    python3 -c "
ir1, n1, ir2, n2 = map(int, '$1 $2 $3 $4'.split())
print(f'$5: {(ir2 - ir1) / (n2 - n1):.1f} instructions per $6 '
      f'({ir1} for {n1} ${6}s in $7 s, {ir2} for {n2} in $8 s)')"
}
