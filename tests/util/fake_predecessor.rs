//! A stand-in for a server that hands its sockets over (the predecessor's
//! side of `examples/common/handover.rs`), to give a successor what no
//! real server would.

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Listening at a restart path, for one successor.
pub struct FakePredecessor(UnixListener);

impl FakePredecessor {
    /// Listens at `path` (start the successor after this).
    pub fn listen(path: &Path) -> FakePredecessor {
        let listener = UnixListener::bind(path).expect("listen at the restart path");
        listener.set_nonblocking(true).unwrap();
        FakePredecessor(listener)
    }

    /// Waits up to 10 s for the successor, sends it `header` with `fds`
    /// attached, and returns its answer: what it sends within 10 s before
    /// it closes the connection (`""` if it closes at once).
    pub fn hand_over(&self, header: &[u8], fds: &[BorrowedFd<'_>]) -> String {
        let connection = self.successor();
        // Descriptors go with a message through cellio's own `send_with_fds`.
        let answer = cellio::Runtime::new()
            .unwrap()
            .block_on(async {
                let connection = cellio::unix::UnixStream::from_std(connection)?;
                connection.send_with_fds(header, fds).await?;
                let mut answer = [0u8; 64];
                let limit = Duration::from_secs(10);
                let n = cellio::runtime::timeout(limit, connection.recv(&mut answer)).await??;
                Ok::<_, std::io::Error>(answer[..n].to_vec())
            })
            .expect("hand over");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// As [`FakePredecessor::hand_over`], but returns the connection
    /// without reading the answer: dropped, it gives up on the successor
    /// as a predecessor whose wait ran out does.
    #[allow(dead_code)] // not every includer gives up
    pub fn hand_over_unanswered(
        &self,
        header: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> std::os::unix::net::UnixStream {
        let connection = self.successor();
        cellio::Runtime::new()
            .unwrap()
            .block_on(async {
                let connection = cellio::unix::UnixStream::from_std(connection)?;
                connection.send_with_fds(header, fds).await?;
                connection.into_std()
            })
            .expect("hand over")
    }

    /// Waits up to 10 s for the successor's connection (non-blocking).
    fn successor(&self) -> std::os::unix::net::UnixStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        let connection = loop {
            match self.0.accept() {
                Ok((connection, _)) => break connection,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no successor came");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        connection.set_nonblocking(true).unwrap();
        connection
    }

    /// Hands `successor` (started with `--take-over` this path and its
    /// stderr piped) `header` with `fds`, among which one it cannot serve,
    /// and checks that it refuses: no `serving`, exit 1 within 10 s, and
    /// "cannot serve a socket from PATH" on stderr.
    #[allow(dead_code)] // not every includer checks it
    pub fn expect_refused(
        &self,
        mut successor: Child,
        header: &[u8],
        fds: &[BorrowedFd<'_>],
        path: &Path,
    ) {
        let answer = self.hand_over(header, fds);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match successor.try_wait().unwrap() {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => break None,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let _ = successor.kill();
        let _ = successor.wait();
        let mut stderr = String::new();
        let _ = successor
            .stderr
            .take()
            .expect("stderr piped")
            .read_to_string(&mut stderr);
        assert_eq!(
            answer, "",
            "the successor answered instead of closing: {stderr}"
        );
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot serve a socket from {}", path.display())),
            "{stderr}"
        );
    }
}
