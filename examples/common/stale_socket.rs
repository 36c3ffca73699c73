//! Freeing a Unix socket path for `bind` (`#[path]`-included:
//! `unix_echo_server`, and `restart.rs` for the restart socket): a socket
//! file left by a server that is gone is removed; a live server there, or
//! a file that is not a socket, is an error (never removed; the live
//! server is told it was only probed: [`PROBE`]). A file that vanishes
//! during the check (another process cleared the same stale file first)
//! leaves the path free: no error; whoever binds first has it.
//!
//! Two starts on one path are serialized by an advisory lock (`flock`) on
//! a sibling file, `PATH.lock` ([`PathLock`]): a start holds it from its
//! check until its `bind` returns ([`bind_clearing_stale`]), so a start
//! that found the file stale cannot remove it after another start, which
//! found it stale too, has bound the path anew (both would run, one
//! serving nobody). The lock is held for the check and the bind only, not
//! for the server's life: once bound and listening the server is found
//! live by every later check, and a start must be refused, not wait. The
//! lock file stays (an empty file, created `0600`, never followed through
//! a symbolic link): removing it would let two starts lock two different
//! files. Only servers that take the lock are serialized (these examples).
//!
//! A server removes its own socket file when it stops
//! ([`stop_listening`]), while its listener still listens: until then
//! every other start's check finds it live and refuses, so no other server
//! can have taken the path, and a file there that is not the one it bound
//! ([`SocketFile`]: its inode cannot be reused while the listener holds
//! it) is left alone.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// The exclusive lock on a socket path's lock file, `PATH.lock`, released
/// when dropped (module docs).
#[derive(Debug)]
pub struct PathLock {
    /// Open for the lock's life: closing it releases the lock.
    _file: std::fs::File,
}

impl PathLock {
    /// Waits for and takes the lock of socket path `path` (its lock file
    /// made if missing). Blocks the thread while another start holds it,
    /// which is for one check and one `bind`.
    pub fn acquire(path: &Path) -> io::Result<PathLock> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(lock_path(path))?;
        loop {
            // SAFETY: `flock` on a descriptor `file` holds open; no memory
            // is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(PathLock { _file: file });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// `PATH.lock`: the lock file of socket path `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Binds `path` with `bind` once it is free ([`clear_stale_socket`]),
/// holding the path's [`PathLock`] from the check until `bind` returns.
#[allow(dead_code)] // Not every includer binds this way (`unix_echo_server`).
pub fn bind_clearing_stale<L>(
    path: &Path,
    bind: impl FnOnce(&Path) -> io::Result<L>,
) -> io::Result<L> {
    let _lock = PathLock::acquire(path)?;
    clear_stale_socket(path)?;
    bind(path)
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
///
/// The removal holds the path's [`PathLock`] (best effort: the file is
/// this server's while it listens, lock or not), so that no start binds
/// between the check and the removal of a file someone replaced by hand;
/// it is released before the listener closes.
#[allow(dead_code)] // As for `SocketFile`.
pub fn stop_listening<L>(path: &Path, file: SocketFile, listener: L) -> io::Result<()> {
    let lock = PathLock::acquire(path).ok();
    let removed = file.remove_if_ours(path);
    drop(lock);
    drop(listener);
    removed
}
