//! Files and directories, async: `std::fs`'s whole-file and directory
//! calls run on the runtime's blocking pool ([`spawn_blocking`]), as
//! tokio's `fs` functions do.
//!
//! A file system call blocks its thread (the kernel has no readiness for
//! regular files), so none of these ever runs on a worker: each takes a
//! blocking thread for the length of the call and resolves when it is
//! done, and the worker runs other tasks meanwhile. They have `std::fs`'s
//! names, arguments and errors (tokio's `fs` has the same), and each
//! copies its path (and, for [`write()`], its contents) to hand them to the
//! blocking thread: these are not allocation-free, and need not be.
//!
//! Outside a cellio runtime they fail with an error (`ErrorKind::Other`)
//! rather than panic. Dropping one of their futures does not stop a call
//! already running on its blocking thread (as in tokio): a dropped `write`
//! may still happen.
//!
//! [`read_dir()`] returns a [`ReadDir`] whose entries are read [`READ_DIR_BATCH`] at
//! a time on the blocking pool, as tokio's are.
//!
//! For reading and writing a file piece by piece, [`File`] (tokio's
//! `fs::File`) runs each read, write and seek on the blocking pool, one at
//! a time, with one reusable buffer; [`OpenOptions`] opens one. For many
//! small operations, opening a `std::fs::File` inside [`spawn_blocking`]
//! and doing the whole piece of work there costs one hand-over instead of
//! one per operation.
//!
//! # Examples
//!
//! ```
//! let rt = cellio_runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let dir = std::env::temp_dir().join(format!("cellio-fs-doc-{}", std::process::id()));
//!     cellio_runtime::fs::create_dir_all(&dir).await?;
//!     let file = dir.join("greeting.txt");
//!     cellio_runtime::fs::write(&file, "hello").await?;
//!     assert_eq!(cellio_runtime::fs::read_to_string(&file).await?, "hello");
//!     cellio_runtime::fs::remove_dir_all(&dir).await
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`spawn_blocking`]: crate::spawn_blocking

use std::fs::{Metadata, Permissions};
use std::io;
use std::path::{Path, PathBuf};

use crate::RuntimeHandle;

mod dir_builder;
mod file;
mod open_options;
mod read_dir;
pub(crate) mod traits;

pub use dir_builder::DirBuilder;
pub use file::{File, MAX_BUF};
pub use open_options::OpenOptions;
pub use read_dir::{read_dir, DirEntry, ReadDir, READ_DIR_BATCH};

/// Runs `call` on the current runtime's blocking pool.
async fn blocking<T, F>(call: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let runtime = RuntimeHandle::current().ok_or_else(|| {
        io::Error::other(
            "cellio::fs called outside a cellio runtime (it runs on the runtime's blocking pool)",
        )
    })?;
    runtime.spawn_blocking(call).await?
}

/// Reads the whole file at `path`: [`std::fs::read`].
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::read(path)).await
}

/// Reads the whole file at `path` as UTF-8: [`std::fs::read_to_string`].
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::read_to_string(path)).await
}

/// Writes `contents` as the whole file at `path`, creating or truncating
/// it: [`std::fs::write`].
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let (path, contents) = (path.as_ref().to_owned(), contents.as_ref().to_owned());
    blocking(move || std::fs::write(path, contents)).await
}

/// Copies the file `from` to `to` (its permissions too), returning the
/// bytes copied: [`std::fs::copy`].
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    blocking(move || std::fs::copy(from, to)).await
}

/// Renames `from` to `to`, replacing `to` if it exists: [`std::fs::rename`].
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    blocking(move || std::fs::rename(from, to)).await
}

/// Makes `link` a hard link to `original`: [`std::fs::hard_link`].
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_owned(), link.as_ref().to_owned());
    blocking(move || std::fs::hard_link(original, link)).await
}

/// Removes the file at `path`: [`std::fs::remove_file`].
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::remove_file(path)).await
}

/// Creates the directory `path` (its parent must exist):
/// [`std::fs::create_dir`].
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::create_dir(path)).await
}

/// Creates the directory `path` and any parents missing:
/// [`std::fs::create_dir_all`].
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::create_dir_all(path)).await
}

/// Removes the empty directory `path`: [`std::fs::remove_dir`].
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::remove_dir(path)).await
}

/// Removes the directory `path` and everything in it:
/// [`std::fs::remove_dir_all`].
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::remove_dir_all(path)).await
}

/// The metadata of `path`, following symbolic links: [`std::fs::metadata`].
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::metadata(path)).await
}

/// The metadata of `path` itself, a symbolic link included:
/// [`std::fs::symlink_metadata`].
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::symlink_metadata(path)).await
}

/// Sets the permissions of `path`: [`std::fs::set_permissions`].
pub async fn set_permissions(path: impl AsRef<Path>, permissions: Permissions) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::set_permissions(path, permissions)).await
}

/// `path` made absolute, every link and `..` resolved:
/// [`std::fs::canonicalize`].
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::canonicalize(path)).await
}

/// Where the symbolic link `path` points: [`std::fs::read_link`].
pub async fn read_link(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let path = path.as_ref().to_owned();
    blocking(move || std::fs::read_link(path)).await
}

/// Creates a symbolic link at `link` pointing at `original`:
/// [`std::os::unix::fs::symlink`].
#[cfg(unix)]
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_owned(), link.as_ref().to_owned());
    blocking(move || std::os::unix::fs::symlink(original, link)).await
}

/// Whether `path` exists (`Ok(false)` when it does not, an error when that
/// cannot be told, a directory without permission say):
/// [`std::fs::exists`].
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    let path = path.as_ref().to_owned();
    blocking(move || path.try_exists()).await
}
