//! cellio never raises `SIGPIPE`, even in a program that restored its
//! default action (which ends the process): a `splice` or a `send_file`
//! into a stream that can no longer send, or a write to an exited child's
//! standard input, fails with `BrokenPipe` and nothing else, on `block_on`'s thread and on a
//! background worker; and `block_on` gives its caller's thread back as it
//! found it (`SIGPIPE` not blocked, none pending). The test sets
//! `SIGPIPE`'s default action for its whole process, so it has a binary
//! of its own.
#![cfg(target_os = "linux")]

mod util;

use std::io::{self, Write};
use std::process::Stdio;

use cellio_net::process::Command;
use cellio_net::splice_bidirectional;
use cellio_net::unix::UnixStream;
use cellio_runtime::Builder;

/// `SIGPIPE`'s default action, which ends the process, as a program that
/// wants `yes | head` to end quietly sets it.
fn restore_sigpipe_default() {
    // SAFETY: setting a standard signal's action to SIG_DFL.
    assert_ne!(
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) },
        libc::SIG_ERR
    );
}

/// Whether `SIGPIPE` is blocked on this thread, and whether one is
/// pending.
fn sigpipe_blocked_and_pending() -> (bool, bool) {
    let mut mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: a null new set only reads the mask; `sigpending` fills
    // `pending`; both are read only after the calls succeeded.
    unsafe {
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr()),
            0
        );
        assert_eq!(libc::sigpending(pending.as_mut_ptr()), 0);
        (
            libc::sigismember(mask.as_ptr(), libc::SIGPIPE) == 1,
            libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1,
        )
    }
}

/// A splice from a stream with bytes waiting into one shut down for
/// writing (`EPIPE` every time; a closed peer can also be a reset).
async fn splice_into_a_closed_stream() -> io::Error {
    let (client, source) = UnixStream::pair().expect("pair");
    let (destination, _peer) = UnixStream::pair().expect("pair");
    destination
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    client.send_all(b"to nowhere").await.expect("send");
    splice_bidirectional(&source, &destination)
        .await
        .expect_err("the destination is closed")
}

/// A `send_file` into a stream shut down for writing.
async fn send_file_into_a_closed_stream() -> io::Error {
    let mut file = tempfile();
    file.write_all(b"a file's bytes").expect("write");
    let (stream, _peer) = UnixStream::pair().expect("pair");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    stream
        .send_file(&file, 0, 14)
        .await
        .expect_err("the peer is closed")
}

/// An unnamed temporary file.
fn tempfile() -> std::fs::File {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("cellio-sigpipe-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temporary file");
    std::fs::remove_file(&path).expect("unlink");
    file
}

#[test]
fn a_splice_into_a_closed_stream_is_an_error_not_a_signal() {
    restore_sigpipe_default();
    util::with_timeout(util::LIMIT, || {
        let rt = Builder::new().build().expect("runtime");
        let e = rt.block_on(splice_into_a_closed_stream());
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        // The caller's thread is as it was.
        assert_eq!(sigpipe_blocked_and_pending(), (false, false));
    });
}

#[test]
fn send_file_on_a_background_worker_is_an_error_not_a_signal() {
    restore_sigpipe_default();
    util::with_timeout(util::LIMIT, || {
        let rt = Builder::new().workers(2).build().expect("runtime");
        let e = rt.block_on(async {
            cellio_runtime::spawn_on(1, send_file_into_a_closed_stream())
                .await
                .expect("the task")
        });
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        let e = rt.block_on(send_file_into_a_closed_stream());
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        assert_eq!(sigpipe_blocked_and_pending(), (false, false));
    });
}

#[test]
fn a_write_to_an_exited_childs_stdin_is_an_error_not_a_signal() {
    restore_sigpipe_default();
    util::with_timeout(util::LIMIT, || {
        let rt = Builder::new().build().expect("runtime");
        let e = rt.block_on(async {
            let mut child = Command::new("true")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn true");
            // Taken first: `wait` closes a stdin still in the child.
            let mut stdin = child.stdin.take().expect("stdin");
            child.wait().await.expect("wait");
            stdin.write(b"nobody reads this").await.expect_err("exited")
        });
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        assert_eq!(sigpipe_blocked_and_pending(), (false, false));
    });
}

/// A process started after a splice blocked `SIGPIPE` on the thread does
/// not inherit the blocked signal (std's spawn clears the child's mask):
/// `yes | head` in it still ends quietly.
#[test]
fn a_child_started_after_a_splice_does_not_inherit_the_blocked_signal() {
    restore_sigpipe_default();
    util::with_timeout(util::LIMIT, || {
        let rt = Builder::new().build().expect("runtime");
        let blocked = rt.block_on(async {
            let e = splice_into_a_closed_stream().await;
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
            assert!(sigpipe_blocked_and_pending().0, "blocked while in block_on");
            let out = Command::new("sh")
                .args(["-c", "grep SigBlk /proc/self/status"])
                .stdin(Stdio::null())
                .output()
                .await
                .expect("run sh");
            String::from_utf8(out.stdout).expect("utf-8")
        });
        let mask = blocked.trim().trim_start_matches("SigBlk:").trim();
        let mask = u64::from_str_radix(mask, 16).expect("a hex mask");
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{blocked}");
    });
}
