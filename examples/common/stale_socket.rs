//! Freeing a Unix socket path for `bind` (`#[path]`-included:
//! `unix_echo_server`, and `restart.rs` for the restart socket): a socket
//! file left by a server that is gone is removed; a live server there, or
//! a file that is not a socket, is an error (never removed; the live
//! server is told it was only probed: [`PROBE`]). A file that vanishes
//! during the check (another process cleared the same stale file first)
//! leaves the path free: no error; whoever binds first has it.
//!
//! A server removes its own socket file when it stops
//! ([`stop_listening`]), while its listener still listens: until then
//! every other start's check finds it live and refuses, so no other server
//! can have taken the path, and a file there that is not the one it bound
//! ([`SocketFile`]: its inode cannot be reused while the listener holds
//! it) is left alone.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

/// The socket file a server bound: its device and inode, taken right after
/// `bind`. While the server's listener is open the inode is the listener's
/// and no other file at the path can have it; once closed, a new file may
/// get the same number at once (ext4 does), so compare only while
/// listening ([`stop_listening`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // Not every includer removes its file this way (`handover.rs`).
pub struct SocketFile {
    dev: u64,
    ino: u64,
}

#[allow(dead_code)] // As for `SocketFile`.
impl SocketFile {
    /// The file at `path` now (take it right after `bind`).
    pub fn of(path: &Path) -> io::Result<SocketFile> {
        let metadata = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            dev: metadata.dev(),
            ino: metadata.ino(),
        })
    }

    /// Removes the file at `path` if it is still this one; a file of
    /// another server's (the path was cleared by hand and bound again) is
    /// left alone, and no file at all is no error (removed already: by an
    /// operator, a temporary-files cleaner).
    fn remove_if_ours(self, path: &Path) -> io::Result<()> {
        let removed = match SocketFile::of(path) {
            Ok(now) if now == self => std::fs::remove_file(path),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match removed {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            removed => removed,
        }
    }
}

/// A server stops serving `path`: removes its socket `file` (if it is still
/// there) while `listener` still listens, then closes the listener. In
/// that order, the file removed is certainly this server's: another start
/// finds it live until the listener closes, and by then it is gone. (The
/// other order let a start clear the closed listener's file and bind the
/// path in between; its new file could have the inode number just freed,
/// so the check took it for this server's and removed it.)
#[allow(dead_code)] // As for `SocketFile`.
pub fn stop_listening<L>(path: &Path, file: SocketFile, listener: L) -> io::Result<()> {
    let removed = file.remove_if_ours(path);
    drop(listener);
    removed
}
