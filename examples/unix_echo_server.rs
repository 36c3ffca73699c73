//! A Unix-domain stream echo server: every byte a client sends comes back,
//! exactly.
//!
//! ```text
//! cargo run --release --example unix_echo_server -- --path /tmp/cellio-echo.sock
//! cargo run --release --example load -- --unix /tmp/cellio-echo.sock --duration 5s
//! ```
//!
//! * Prints `listening on PATH` once bound. One task per connection, each
//!   with its own buffer; nothing is allocated per message.
//! * `--api futures` (the default) serves through the stream's
//!   `recv`/`send_all` futures; `--api poll` through a `UnixIo`, which
//!   keeps the stream's cells reserved (and confined to the worker) between
//!   operations.
//! * One worker: Unix sockets have no `SO_REUSEPORT` to spread connections
//!   over several listeners.
//! * The socket file: a file left at `--path` by a server that is gone (a
//!   socket nobody listens on) is removed before binding; a live server
//!   there, or a file that is not a socket, is an error, never touched (so
//!   is the file of a server that bound the path after that check: this
//!   one then fails to bind). Two starts on one path take turns for the
//!   check and the bind (a lock on `PATH.lock`, a file left in place:
//!   `common/stale_socket.rs`), so two that find the same stale file never
//!   both start. On SIGINT/SIGTERM the server stops
//!   accepting, removes its socket file (if it is still there) and only
//!   then closes its listener, gives open connections `--grace-ms` to
//!   finish and exits 0. A second signal during the grace period, 500 ms
//!   or more after the first (one sooner is taken for the same one
//!   delivered twice, as through a forwarding wrapper), ends the process
//!   at once, as the signal's default action would (a shell sees status
//!   130 or 143), closing the connections still open.
//! * Its socket file is the one it bound, told by the file's device and
//!   inode, taken right after `bind`, and removed while the listener still
//!   listens: until then another server finds it live and refuses to
//!   start, so the file is this server's (the usual stop-then-start
//!   restart binds the path only after it is gone). Checked all the same,
//!   while the inode cannot be reused: a file someone put there by hand is
//!   left alone (`stale_socket::stop_listening`).
//! * Out of descriptors, the accept loop backs off (10 ms doubling to 1 s)
//!   and says so at most once a second, as the TCP echo server does
//!   (`examples/common/accept_backoff.rs`); the soft limit on open files is
//!   raised to the hard limit at start.
//! * A connection's error ends that connection only (reported at the
//!   `tracing` debug level, as the TCP echo server does).

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use accept_backoff::accept_until_shutdown;
use cellio::unix::{UnixIo, UnixListener, UnixStream};
use cellio::{spawn, spawn_local, Runtime};
use clap::Parser;
use cli::context;
use stale_socket::SocketFile;

#[path = "common/accept_backoff.rs"]
mod accept_backoff;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/open_files.rs"]
mod open_files;
#[path = "common/shutdown_signals.rs"]
mod shutdown_signals;
#[path = "common/stale_socket.rs"]
mod stale_socket;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "A cellio Unix-domain stream echo server")]
struct Args {
    /// Socket path to bind.
    #[arg(long, default_value = "/tmp/cellio-echo.sock")]
    path: PathBuf,
    /// `futures`: the stream's futures; `poll`: a `UnixIo` (cells held and
    /// confined between operations).
    #[arg(long, value_enum, default_value_t = Api::Futures)]
    api: Api,
    /// On SIGINT/SIGTERM, how long open connections may take to finish (a
    /// second signal, 500 ms or more after the first, ends the process at
    /// once).
    #[arg(long, default_value_t = 1000)]
    grace_ms: u64,
    /// For the tests (hidden): after the stale-file check, before `bind`,
    /// the server stops itself (SIGSTOP) until it is continued, so that a
    /// test can bind the path in between (the server that loses that race
    /// must leave the winner's file alone).
    #[arg(long, hide = true)]
    stop_before_bind: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Futures,
    Poll,
}

/// Echoes through the stream's futures until the peer closes (or the
/// shutdown's grace period ends).
async fn connection(stream: UnixStream) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.recv(&mut buf).await? {
            0 => return Ok(()),
            n => stream.send_all(&buf[..n]).await?,
        }
    }
}

/// [`connection`] through a `UnixIo`.
async fn connection_io(stream: UnixStream) -> io::Result<()> {
    let mut io = UnixIo::new(stream);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match io.recv(&mut buf).await? {
            0 => return Ok(()),
            n => io.send_all(&buf[..n]).await?,
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    // Every connection is an open file: take what the hard limit allows.
    open_files::raise_open_files(None);
    // From the stale-file check until `bind` returns, no other start on
    // the path (that takes the lock) checks or binds.
    let mut start_lock = Some(
        stale_socket::PathLock::acquire(&args.path)
            .map_err(|e| context(&format!("cannot lock {}", args.path.display()), e))?,
    );
    stale_socket::clear_stale_socket(&args.path)
        .map_err(|e| context(&format!("cannot use {}", args.path.display()), e))?;
    if args.stop_before_bind {
        // SAFETY: raise(3) sends a signal to this process; no memory is
        // involved. SIGSTOP's action cannot be changed: the process stops.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
    let runtime = Runtime::builder()
        .workers(1)
        .build()
        .map_err(|e| context("cannot start the cellio runtime", e))?;
    let api = args.api;
    let served = runtime.block_on(async {
        spawn(shutdown_signals::shut_down_on_signals()?);
        let listener = UnixListener::bind(&args.path)
            .map_err(|e| context(&format!("cannot bind {}", args.path.display()), e))?;
        drop(start_lock.take());
        // Live from here: nobody else finds the file stale until the
        // listener closes.
        let file = SocketFile::of(&args.path)
            .map_err(|e| context(&format!("cannot use {}", args.path.display()), e))?;
        println!("listening on {}", args.path.display());
        // A peer that goes away mid-echo (a reset, a broken pipe) is the
        // peer's business: not worth a line each.
        let report = |result: io::Result<()>| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        };
        let serve = |(stream, _peer)| match api {
            Api::Futures => drop(spawn(async move { report(connection(stream).await) })),
            Api::Poll => drop(spawn_local(
                async move { report(connection_io(stream).await) },
            )),
        };
        accept_until_shutdown("unix_echo_server", || listener.accept(), serve).await;
        // The file goes before the grace period, and before the listener
        // closes: while it listens, the file is surely this server's.
        let removed = stale_socket::stop_listening(&args.path, file, listener);
        io::Result::Ok(removed)
    });
    runtime.shutdown_timeout(Duration::from_millis(args.grace_ms));
    served?.map_err(|e| context(&format!("cannot remove {}", args.path.display()), e))
}

fn main() -> ExitCode {
    cli::exit_code("unix_echo_server", run(&Args::parse()))
}
