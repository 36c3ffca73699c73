//! The `udp_bulk` example as a process: over loopback, with and without
//! offload, it moves datagrams and reports them in one line per side; a
//! size UDP cannot carry is a flag error (exit 2).

use std::process::{Command, Output};

#[path = "util/example_bin.rs"]
mod example_bin;

fn run(args: &[&str]) -> Output {
    let bin = example_bin::build_example("udp_bulk");
    let out = Command::new(bin).args(args).output().expect("run udp_bulk");
    eprintln!(
        "udp_bulk {} -> {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The number before `word` in `line` ("123 datagrams" → 123).
fn count_before(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .expect(word);
    words[at - 1].parse().expect("a count")
}

#[test]
fn loopback_moves_datagrams_with_and_without_offload() {
    for offload in [false, true] {
        let mut args = vec!["loopback", "--duration", "1", "--batch", "16"];
        if offload {
            args.push("--offload");
        }
        let out = run(&args);
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let send = stdout
            .lines()
            .find(|l| l.starts_with("send:"))
            .expect("a send line");
        let recv = stdout
            .lines()
            .find(|l| l.starts_with("recv:"))
            .expect("a recv line");
        let (sent, received) = (
            count_before(send, "datagrams"),
            count_before(recv, "datagrams"),
        );
        assert!(sent > 0 && received > 0, "{stdout}");
        assert!(received <= sent, "{stdout}");
        assert!(recv.contains("ns of CPU per datagram"), "{recv}");
    }
}

#[test]
fn a_size_udp_cannot_carry_is_a_flag_error() {
    let out = run(&["loopback", "--size", "70000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
}
