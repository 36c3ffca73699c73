"""cpu_window: a server's CPU over a client's measured window, for the compare scripts
(`proxy_compare.py`, `http_compare.py`, `unix_compare.py`, `udp_compare.py`; imported from this
directory), and `start_server`, which starts a server that announces its address.

A closed-loop client runs a warm-up and then its measured window and prints one JSON object;
the server's user and system clock ticks (/proc/PID/stat) are read at the end of the warm-up
(timed here) and after the client exits, so teardown is in the figure: it leans a little high,
the same way for every server.
"""

import json
import os
import subprocess
import time

# Nanoseconds per clock tick (CLK_TCK, usually 100 per second).
TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """(user, system) clock ticks `pid` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def measure(server_pid, client_command, warmup, what):
    """Runs `client_command` (which prints one JSON object on stdout) and returns its result and
    the server's (user, system) ticks from the end of its `warmup` seconds to its exit."""
    client = subprocess.Popen(client_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(warmup + 0.05)
    u0, s0 = cpu_ticks(server_pid)
    out, err = client.communicate()
    u1, s1 = cpu_ticks(server_pid)
    if client.returncode != 0:
        raise RuntimeError(f"the client failed against {what}: {out} {err}")
    return json.loads(out), (u1 - u0, s1 - s0)


def start_server(command, what):
    """Starts `command`, a server whose first line on stdout is `listening on ADDR` (maybe
    followed by `,` and more), and returns the process and ADDR."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline()
    if not line.startswith("listening on"):
        process.kill()
        raise RuntimeError(f"{what} did not start: {line!r} {process.stderr.read()}")
    return process, line.split()[2].rstrip(",")
