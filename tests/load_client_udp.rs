//! Integration tests of the load client's `--udp` mode, run as a process
//! against in-test UDP servers (how it is built and run:
//! `util/load_process.rs`).
//!
//! Each server counts datagrams per peer: a connection's first datagram is
//! its probe, and its messages are the peer's datagrams 2, 3, …, so the
//! servers that misbehave on every n-th datagram do it at places the tests
//! can count exactly.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

#[path = "util/load_process.rs"]
mod load_process;

use load_process::{assert_no_allocations, count, json, load_bin, run_load};

/// What a server does with a peer's `n`-th datagram (1: the probe).
enum Reply {
    /// Sends these datagrams back.
    Send(Vec<Vec<u8>>),
    /// Holds it: the next `Send` of this peer may release it.
    Hold,
}

/// A blocking UDP server on an ephemeral port; `reply(n, datagram, held)`
/// decides, for each peer's `n`-th datagram, what goes back (`held`: the
/// datagram this peer's last `Hold` kept, if any). Returns the address.
fn udp_server(
    reply: impl Fn(u64, &[u8], &mut Option<Vec<u8>>) -> Reply + Send + 'static,
) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local_addr").to_string();
    thread::spawn(move || {
        let mut peers: HashMap<SocketAddr, (u64, Option<Vec<u8>>)> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let (count, held) = peers.entry(peer).or_default();
            *count += 1;
            match reply(*count, &buf[..n], held) {
                Reply::Send(datagrams) => {
                    for d in datagrams {
                        let _ = socket.send_to(&d, peer);
                    }
                }
                Reply::Hold => *held = Some(buf[..n].to_vec()),
            }
        }
    });
    addr
}

/// An echo server that applies `change` to a peer's `n`-th datagram.
fn changing_echo(change: impl Fn(u64, &mut Vec<u8>) + Send + 'static) -> String {
    udp_server(move |n, datagram, _| {
        let mut echo = datagram.to_vec();
        change(n, &mut echo);
        Reply::Send(vec![echo])
    })
}

fn echo_server() -> String {
    changing_echo(|_, _| {})
}

/// An echo server that sends no echo of every 10th message datagram of a
/// peer (the probe, its first datagram, is not counted).
fn dropping_every_tenth() -> String {
    udp_server(|n, datagram, _| {
        if n > 1 && (n - 1) % 10 == 0 {
            Reply::Send(Vec::new())
        } else {
            Reply::Send(vec![datagram.to_vec()])
        }
    })
}

/// `load --udp --json --addr ADDR --requests REQUESTS --connections
/// CONNECTIONS` plus `extra`.
fn run_udp(
    addr: &str,
    requests: &str,
    connections: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["--udp", "--json", "--addr", addr, "--requests", requests];
    args.extend(["--connections", connections]);
    args.extend_from_slice(extra);
    let out = run_load(&args);
    (out.status.code(), json(&out))
}

/// Each `(key, n)`: the report's count `key` is exactly `n` (all checked,
/// then any difference reported at once, with `context` and the report).
fn assert_counts(v: &serde_json::Value, expected: &[(&str, u64)], context: &str) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|&&(key, n)| count(v, key) != n)
        .map(|&(key, n)| format!("{key} {} (expected {n})", count(v, key)))
        .collect();
    assert!(wrong.is_empty(), "{context} {}: {v}", wrong.join(", "));
}

#[test]
fn counts_every_datagram_against_an_echo_server() {
    let addr = echo_server();
    for pipeline in ["1", "8"] {
        let (code, v) = run_udp(
            &addr,
            "4000",
            "4",
            &["--size", "100", "--pipeline", pipeline],
        );
        assert_eq!(code, Some(0), "pipeline {pipeline}: {v}");
        assert_eq!(v["transport"], "udp");
        assert_eq!(count(&v, "msgs"), 4000, "pipeline {pipeline}");
        for key in ["lost", "late", "mismatches", "errors", "connect_errors"] {
            assert_eq!(count(&v, key), 0, "pipeline {pipeline}: {key}");
        }
        assert_no_allocations(&v);
    }
}

#[test]
fn the_largest_datagram_goes_through_and_a_larger_size_is_refused() {
    let addr = echo_server();
    let (code, v) = run_udp(&addr, "20", "2", &["--size", "65507"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(count(&v, "msgs"), 20);

    let out = run_load(&["--udp", "--addr", &addr, "--size", "65508"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at most 65507 bytes"), "{stderr}");
}

/// Every 5th message datagram of each peer comes back with a bit flipped:
/// 2 connections × 50 messages, 10 mismatches each.
#[test]
fn corrupted_echoes_are_mismatches() {
    let addr = changing_echo(|n, echo| {
        if n > 1 && (n - 1) % 5 == 0 {
            echo[3] ^= 0x10;
        }
    });
    for pipeline in ["1", "4"] {
        let (code, v) = run_udp(&addr, "100", "2", &["--pipeline", pipeline]);
        assert_eq!(code, Some(1), "pipeline {pipeline}: {v}");
        assert_counts(
            &v,
            &[("msgs", 100), ("mismatches", 20), ("lost", 0)],
            &format!("pipeline {pipeline}"),
        );
    }
}

/// Echoes one byte short, or one byte long, every 10th message datagram:
/// mismatches, never taken for a good echo.
#[test]
fn echoes_of_the_wrong_length_are_mismatches() {
    for longer in [false, true] {
        let addr = changing_echo(move |n, echo| {
            if n > 1 && (n - 1) % 10 == 0 {
                if longer {
                    echo.push(0);
                } else {
                    echo.pop();
                }
            }
        });
        let (code, v) = run_udp(&addr, "40", "2", &[]);
        assert_eq!(code, Some(1), "longer {longer}: {v}");
        assert_eq!(count(&v, "mismatches"), 4, "longer {longer}");
        assert_eq!(count(&v, "msgs"), 40, "longer {longer}");
    }
}

/// Every 10th message datagram gets no echo: it is lost after
/// `--loss-after`, the connection goes on, and the run does not fail.
#[test]
fn datagrams_without_an_echo_are_lost_and_the_run_goes_on() {
    let addr = dropping_every_tenth();
    for pipeline in ["1", "4"] {
        let (code, v) = run_udp(
            &addr,
            "100",
            "2",
            &["--loss-after", "50ms", "--pipeline", pipeline],
        );
        assert_eq!(code, Some(0), "pipeline {pipeline}: {v}");
        assert_counts(
            &v,
            &[("lost", 10), ("msgs", 90), ("late", 0), ("mismatches", 0)],
            &format!("pipeline {pipeline}"),
        );
    }
}

/// An open loop (`--rate`) against a server that drops every 10th
/// datagram: every datagram due in the measured second is accounted for,
/// echoed (`msgs`), given up (`lost`) or cut off by the end
/// (`unfinished`: in flight, or never sent because waiting out the losses
/// put the connection behind its schedule).
#[test]
fn an_open_loop_accounts_for_every_datagram_due() {
    let addr = dropping_every_tenth();
    for pipeline in ["1", "8"] {
        let out = run_load(&[
            "--udp",
            "--json",
            "--addr",
            &addr,
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--connections",
            "2",
            "--loss-after",
            "20ms",
            "--pipeline",
            pipeline,
        ]);
        let v = json(&out);
        assert_eq!(out.status.code(), Some(0), "pipeline {pipeline}: {v}");
        let (msgs, lost) = (count(&v, "msgs"), count(&v, "lost"));
        assert_eq!(msgs + lost + count(&v, "unfinished"), 1000, "{v}");
        assert!(msgs > 0 && lost > 0, "pipeline {pipeline}: {v}");
        assert_eq!(count(&v, "mismatches"), 0, "pipeline {pipeline}: {v}");
    }
}

/// A burst of 100 lost datagrams, longer than the pipelined window (64):
/// each full window of lost ones is given up at once when the oldest's
/// `--loss-after` runs out, and the echoes after the burst are matched
/// again, none taken for a corrupted one.
#[test]
fn a_burst_of_losses_longer_than_the_window_is_lost_not_mismatched() {
    let addr = udp_server(|n, datagram, _| {
        if (12..112).contains(&n) {
            Reply::Send(Vec::new())
        } else {
            Reply::Send(vec![datagram.to_vec()])
        }
    });
    load_bin(); // a cold build of the example must not count against the bound
    let start = Instant::now();
    let (code, v) = run_udp(
        &addr,
        "300",
        "1",
        &["--pipeline", "64", "--loss-after", "50ms"],
    );
    // Two windows of losses, one `--loss-after` (and a reaper pass) each.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, Some(0), "{v}");
    assert_counts(
        &v,
        &[("lost", 100), ("msgs", 200), ("mismatches", 0), ("late", 0)],
        "",
    );
}

/// The server holds every 10th message datagram and echoes it just before
/// the next one's echo: given up after `--loss-after` (closed loop, where
/// the next datagram is sent only then), then late, never a mismatch.
#[test]
fn an_echo_after_its_datagram_was_given_up_is_late() {
    let addr = udp_server(|n, datagram, held| {
        if n > 1 && (n - 1) % 10 == 0 {
            return Reply::Hold;
        }
        let mut out: Vec<Vec<u8>> = held.take().into_iter().collect();
        out.push(datagram.to_vec());
        Reply::Send(out)
    });
    let (code, v) = run_udp(&addr, "50", "2", &["--loss-after", "50ms"]);
    assert_eq!(code, Some(0), "{v}");
    assert_counts(
        &v,
        &[("lost", 4), ("late", 4), ("msgs", 46), ("mismatches", 0)],
        "",
    );
}

/// Every 10th message datagram is echoed twice: the second copy is late
/// (its datagram is already settled), never a mismatch, and the run passes.
#[test]
fn a_duplicated_echo_is_late() {
    let addr = udp_server(|n, datagram, _| {
        let copies = if n > 1 && (n - 1) % 10 == 0 { 2 } else { 1 };
        Reply::Send(vec![datagram.to_vec(); copies])
    });
    let (code, v) = run_udp(&addr, "50", "2", &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_counts(
        &v,
        &[("late", 4), ("msgs", 50), ("lost", 0), ("mismatches", 0)],
        "",
    );
}

/// The same with datagrams too short (4 bytes) to carry their number:
/// the copy is matched against the datagrams already echoed and is late.
/// (It was taken for the next datagram's echo, corrupted, and every echo
/// after it for the one before: a mismatch each, closed loop or pipelined.)
#[test]
fn a_duplicated_short_echo_is_late() {
    for pipeline in ["1", "4"] {
        let addr = udp_server(|n, datagram, _| {
            let copies = if n > 1 && (n - 1) % 10 == 0 { 2 } else { 1 };
            Reply::Send(vec![datagram.to_vec(); copies])
        });
        let (code, v) = run_udp(&addr, "50", "2", &["--size", "4", "--pipeline", pipeline]);
        let context = format!("--pipeline {pipeline}");
        assert_eq!(code, Some(0), "{context}: {v}");
        assert_counts(
            &v,
            &[("late", 4), ("msgs", 50), ("lost", 0), ("mismatches", 0)],
            &context,
        );
    }
}

/// With datagrams too short (4 bytes) to carry their number, a late echo
/// of a datagram given up 49 datagrams earlier is still late: one lost,
/// one late, no mismatch. (Settled datagrams were remembered 32 deep: the
/// late echo was taken for the next datagram's, corrupted, settling it,
/// so that datagram's own echo was taken for the one after it, and so on:
/// a mismatch for every later echo of the connection.)
#[test]
fn a_late_short_echo_is_late_not_a_chain_of_mismatches() {
    for pipeline in ["1", "4"] {
        let addr = udp_server(|n, datagram, held| {
            // n 1 is the probe; message seq s is the peer's datagram s + 2.
            if n == 11 {
                return Reply::Hold;
            }
            let mut out: Vec<Vec<u8>> = if n == 60 {
                held.take().into_iter().collect()
            } else {
                Vec::new()
            };
            out.push(datagram.to_vec());
            Reply::Send(out)
        });
        let (code, v, context) = run_short_udp(&addr, pipeline);
        assert_counts(
            &v,
            &[("mismatches", 0), ("lost", 1), ("late", 1), ("msgs", 99)],
            &context,
        );
        assert_eq!(code, Some(0), "{context}: {v}");
    }
}

/// `load --udp` against `addr`: 100 datagrams of 4 bytes on one
/// connection with `--pipeline pipeline` and `--loss-after 50ms`; its exit
/// code, report and a context line for the assertions.
fn run_short_udp(addr: &str, pipeline: &str) -> (Option<i32>, serde_json::Value, String) {
    let (code, v) = run_udp(
        addr,
        "100",
        "1",
        &[
            "--size",
            "4",
            "--pipeline",
            pipeline,
            "--loss-after",
            "50ms",
        ],
    );
    (code, v, format!("--pipeline {pipeline}"))
}

/// A short echo that is no datagram's (a corrupted one): one mismatch,
/// its datagram lost, and the echoes after it are matched as before.
#[test]
fn a_corrupted_short_echo_is_one_mismatch() {
    for pipeline in ["1", "4"] {
        let addr = changing_echo(|n, echo| {
            if n == 11 {
                echo[1] ^= 0x5a;
            }
        });
        let (code, v, context) = run_short_udp(&addr, pipeline);
        assert_counts(
            &v,
            &[("mismatches", 1), ("lost", 1), ("late", 0), ("msgs", 99)],
            &context,
        );
        assert_eq!(code, Some(1), "{context}: {v}");
    }
}

/// Pipelined, the server swaps each pair of message datagrams (2 and 3,
/// 4 and 5, …): the overtaken one is given up at once and its echo is
/// late. 2 connections × 50 messages: 25 overtaken each, and 24 late
/// echoes each: the last pair's late echo comes after the connection's
/// last message, when nothing reads it any more.
#[test]
fn an_overtaken_datagram_is_lost_then_late_when_pipelined() {
    let addr = udp_server(|n, datagram, held| {
        if n > 1 && n % 2 == 0 {
            return Reply::Hold;
        }
        let mut out = vec![datagram.to_vec()];
        out.extend(held.take());
        Reply::Send(out)
    });
    // Nothing is lost by waiting: every datagram's echo comes back within a
    // few milliseconds.
    let extra = ["--pipeline", "4", "--loss-after", "10s"];
    let (code, v) = run_udp(&addr, "100", "2", &extra);
    assert_eq!(code, Some(0), "{v}");
    assert_counts(
        &v,
        &[("lost", 50), ("late", 48), ("msgs", 50), ("mismatches", 0)],
        "",
    );
}

/// The report's line on lost datagrams and late echoes says what they
/// count: with `--pipeline` above 1 `lost` includes the overtaken ones,
/// and `late` counts duplicated echoes too (this server echoes every
/// datagram twice: nothing is late, every second copy is a duplicate).
#[test]
fn the_report_says_what_lost_and_late_count() {
    let addr = udp_server(|_, datagram, _| Reply::Send(vec![datagram.to_vec(); 2]));
    for pipeline in ["1", "4"] {
        let out = run_load(&[
            "--udp",
            "--addr",
            &addr,
            "--requests",
            "20",
            "--connections",
            "1",
            "--pipeline",
            pipeline,
            "--loss-after",
            "10s",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--pipeline {pipeline}: {stdout}"
        );
        let line = stdout
            .lines()
            .find(|l| l.contains("datagrams lost"))
            .unwrap_or_default();
        assert!(
            line.contains("duplicates"),
            "--pipeline {pipeline}: {line:?}"
        );
        assert_eq!(
            line.contains("overtaken"),
            pipeline != "1",
            "--pipeline {pipeline}: {line:?}"
        );
    }
}

/// `udp_echo_server` bound to a wildcard address answers a datagram sent to
/// 127.0.0.2 from 127.0.0.1 (the kernel's choice: it does not read the
/// address a datagram was sent to). It says so at start, and the load
/// client, whose connected socket never hears such an echo, names that as
/// a possible cause instead of only "no echo".
#[test]
fn a_wildcard_udp_echo_server_warns_and_the_load_client_names_the_cause() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = load_process::example_bin::build_example("udp_echo_server");
    let mut child = Command::new(bin)
        .args(["--addr", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start udp_echo_server");
    let listening = load_process::example_bin::listening_addr(&mut child);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let warning = rx.recv_timeout(Duration::from_secs(10));
    let port: u16 = listening.rsplit(':').next().unwrap().parse().unwrap();
    let target = format!("127.0.0.2:{port}");
    let out = run_load(&[
        "--udp",
        "--addr",
        &target,
        "--requests",
        "10",
        "--connections",
        "1",
        "--timeout",
        "500ms",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let warning = warning.expect("a line on the server's stderr at start");
    assert!(warning.contains("wildcard"), "{warning}");
    assert_eq!(out.status.code(), Some(2));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("another address"), "{why}");
}

/// A socket that never answers: the probe finds nobody within `--timeout`,
/// and the run fails like an unreachable TCP server (exit 2, one line),
/// well within the bound.
#[test]
fn a_silent_server_fails_the_probe() {
    load_bin(); // a cold build of the example must not count against the bound
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("local_addr").to_string();
    let start = Instant::now();
    let out = run_load(&[
        "--udp",
        "--addr",
        &addr,
        "--connections",
        "3",
        "--timeout",
        "300ms",
        "--loss-after",
        "100ms",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no echo of a probe datagram"), "{stderr}");
    drop(silent);
}

/// Nobody on the port: the kernel refuses the probe (ICMP port
/// unreachable).
#[test]
fn a_closed_port_is_refused() {
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("local_addr").port()
    };
    let out = run_load(&["--udp", "--addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

/// With nothing listening, a socket the kernel gave the server's address
/// (its ephemeral port is the server's) hears its own probe: that is a
/// failed connect, exit 2, not a server. (It used to be taken for one:
/// every echo matched; found by a review.)
#[test]
fn a_socket_connected_to_itself_is_a_failed_connect() {
    let args = [
        "--udp",
        "--addr",
        "127.0.0.1:40000",
        "--requests",
        "10",
        "--timeout",
        "2s",
    ];
    let Some(out) = load_process::run_load_with_one_ephemeral_port(40000, &args) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("connected to itself"), "{stderr}");
}

/// A server that echoes the probe and nothing after: every datagram is
/// lost, no message completes, and the run ends on its own with exit 1.
#[test]
fn a_server_that_stops_answering_ends_the_run_with_nothing_completed() {
    let addr = udp_server(|n, datagram, _| {
        Reply::Send(if n == 1 {
            vec![datagram.to_vec()]
        } else {
            Vec::new()
        })
    });
    load_bin(); // a cold build of the example must not count against the bound
    let start = Instant::now();
    let (code, v) = run_udp(&addr, "6", "2", &["--loss-after", "50ms"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(count(&v, "msgs"), 0);
    assert_eq!(count(&v, "lost"), 6);
}

/// The same server in a `--duration` run: the line that says why the run
/// failed names the lost datagrams, not throughput (it said "did not keep
/// up", counting only the few datagrams in flight at the end).
#[test]
fn a_duration_run_with_every_datagram_lost_says_they_were_lost() {
    let addr = udp_server(|n, datagram, _| {
        Reply::Send(if n == 1 {
            vec![datagram.to_vec()]
        } else {
            Vec::new()
        })
    });
    for pipeline in ["1", "4"] {
        let out = run_load(&[
            "--udp",
            "--addr",
            &addr,
            "--connections",
            "2",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--loss-after",
            "50ms",
            "--pipeline",
            pipeline,
        ]);
        assert_eq!(out.status.code(), Some(1), "--pipeline {pipeline}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().last().unwrap_or_default();
        assert!(
            why.contains("lost") && !why.contains("keep up"),
            "--pipeline {pipeline}: the reason given: {why:?}"
        );
    }
}

#[test]
fn loss_after_needs_udp() {
    let out = run_load(&["--loss-after", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--udp"), "{stderr}");
}
