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
server_pid=

# On exit (of the script, or of the subshell a run is in, which `set -e` ends when the client
# fails): stops a server still running, which under callgrind never exits by itself, and shows
# its output; the script itself also removes the work directory.
on_exit() {
    local status=$?
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null || true
        echo "$name: a run failed (exit status $status); the server's output:" >&2
        cat "$work/server.txt" >&2
    fi
    if [[ $BASHPID == "$$" ]]; then rm -rf "$work"; fi
}
trap on_exit EXIT

# Starts `"$@"` (a server command) under callgrind in the background; its output goes to
# $work/server.txt and its pid to $server_pid. (A subshell does not inherit the EXIT trap, so
# this sets it again.)
start_under_callgrind() {
    trap on_exit EXIT
    rm -f "$work"/cg.out.*
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" "$@" \
        >"$work/server.txt" 2>&1 &
    server_pid=$!
}

# Stops the server started last and sets $instructions to what it ran. (Not for `$(..)`: a
# subshell cannot wait for the server, which is its parent's child.) Fails with the server's
# output if the server had already exited (e.g. it could not bind).
stop_and_count() {
    if ! kill -TERM "$server_pid" 2>/dev/null; then
        echo "$name: the server exited before the run ended; its output:" >&2
        cat "$work/server.txt" >&2
        server_pid=
        return 1
    fi
    wait "$server_pid" || true
    server_pid=
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
