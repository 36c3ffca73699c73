//! Running an example in a network namespace of its own (`unshare -rn`:
//! an unprivileged user namespace, so no root is needed), set up by a
//! shell command first (`ip link set lo up`, routes, port ranges), for the
//! tests of what a program does where the network differs from the
//! host's. Where such namespaces cannot be made the runner says
//! "skipped" and gives `None`: the test then checks nothing.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `bin` with `args` in a new network namespace after `setup` (a
/// shell command) succeeded there, killed after 60 s; prints what it
/// said, under `label`. `None` where the namespace cannot be made.
#[allow(dead_code)] // not every test file runs one
pub fn run_in_a_namespace(setup: &str, bin: &Path, args: &[&str], label: &str) -> Option<Output> {
    let works = Command::new("unshare")
        .args(["-rn", "sh", "-c", setup])
        .output()
        .is_ok_and(|out| out.status.success());
    if !works {
        eprintln!("skipped: needs unshare -rn (user and network namespaces) and ip");
        return None;
    }
    let out = Command::new("unshare")
        .args([
            "-rn",
            "sh",
            "-c",
            &format!("{setup} && exec timeout 60 \"$0\" \"$@\""),
        ])
        .arg(bin)
        .args(args)
        .output()
        .expect("run an example in a network namespace");
    eprintln!(
        "{label} {} -> {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}
