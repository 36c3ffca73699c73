//! Freeing a Unix socket path for `bind` (`#[path]`-included:
//! `unix_echo_server`, and `restart.rs` for the restart socket): a socket
//! file left by a server that is gone is removed; a live server there, or
//! a file that is not a socket, is an error (never removed; the live
//! server is told it was only probed: [`PROBE`]). A file that vanishes
//! during the check (another process cleared the same stale file first)
//! leaves the path free: no error; whoever binds first has it.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// What the check says to a live server it finds before it closes the
/// connection: a server offering restarts (`handover.rs`) tells it from a
/// successor by these words, and lets it go without a word.
pub const PROBE: &[u8] = b"cellio-probe";

/// Makes `path` free to bind: nothing there, or a socket file nobody
/// listens on any more (removed, by this call or by another process
/// meanwhile). A live server or a file that is not a socket is an error.
pub fn clear_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    // A non-blocking probe: a live server whose accept queue is full makes
    // a blocking connect wait, and this one say `WouldBlock`.
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => {
            // At once, before closing (best effort: a fresh connection's
            // buffer has room, and a server that is not a cellio one may
            // ignore it).
            let _ = probe.send(PROBE);
            Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another server is listening on {}", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another server is listening on {} (its queue is full)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                // Another process cleared it first (a server started with
                // this one): the path is free all the same.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                removed => removed,
            }
        }
        // Removed since it was looked at: free.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
