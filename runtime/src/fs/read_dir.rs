//! [`ReadDir`]: a directory's entries, read on the blocking pool a batch
//! at a time (tokio's `fs::ReadDir`), and [`DirEntry`], one of them.
//!
//! # How it works
//!
//! A `ReadDir` is `Idle` (it holds `std`'s iterator and a queue of entries
//! already read) or `Busy` (one blocking job owns both and reads up to
//! [`READ_DIR_BATCH`] entries into the queue). [`next_entry`](ReadDir::next_entry)
//! takes from the queue and starts a job only when the queue is empty, so
//! a directory of `n` entries costs about `n / READ_DIR_BATCH` hand-overs to the
//! pool, not `n`.
//!
//! # Invariants
//!
//! * At most one job per `ReadDir`, and it owns the iterator: entries come
//!   out in the order the file system gives them, each once.
//! * A `next_entry` future dropped while its job runs loses nothing: the
//!   job stays in the `ReadDir` and the next call takes its entries.
//! * An error reading the directory is returned once, in its place among
//!   the entries; the entries after it (if the system gives any) follow.
//! * The queue is reused (its capacity kept) from batch to batch.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs::{FileType, Metadata};
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::{JoinHandle, RuntimeHandle};

/// How many entries one blocking job reads (tokio's batch, 32).
pub const READ_DIR_BATCH: usize = 32;

/// Returns the entries of the directory `path` (not `.` and `..`), read on
/// the blocking pool a batch at a time: [`std::fs::read_dir`] as a stream
/// (tokio's `fs::read_dir`).
///
/// # Examples
///
/// ```
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let dir = std::env::temp_dir().join(format!("cellio-read-dir-doc-{}", std::process::id()));
/// cellio_runtime::fs::create_dir_all(dir.join("sub")).await?;
/// cellio_runtime::fs::write(dir.join("a.txt"), "a").await?;
///
/// let mut names = Vec::new();
/// let mut entries = cellio_runtime::fs::read_dir(&dir).await?;
/// while let Some(entry) = entries.next_entry().await? {
///     let is_dir = entry.file_type().await?.is_dir();
///     names.push((entry.file_name(), is_dir));
/// }
/// names.sort();
/// assert_eq!(names, [("a.txt".into(), false), ("sub".into(), true)]);
/// # cellio_runtime::fs::remove_dir_all(&dir).await
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_owned();
    let iter = super::blocking(move || std::fs::read_dir(path)).await?;
    Ok(ReadDir {
        state: State::Idle(Batch {
            iter,
            entries: VecDeque::new(),
            finished: false,
        }),
    })
}

/// The entries of a directory, from [`read_dir`]: call
/// [`next_entry`](Self::next_entry) until it returns `None`.
///
/// Not a `Stream` itself (as tokio's is not);
/// [`poll_next_entry`](Self::poll_next_entry) makes one with
/// `futures_util::stream::poll_fn`.
pub struct ReadDir {
    state: State,
}

enum State {
    Idle(Batch),
    Busy(JoinHandle<Batch>),
    /// A job was lost (its thread panicked or the runtime shut down).
    Lost,
}

/// What travels between the `ReadDir` and its job.
struct Batch {
    iter: std::fs::ReadDir,
    entries: VecDeque<io::Result<DirEntry>>,
    /// `iter` returned `None`: no more jobs.
    finished: bool,
}

impl Batch {
    /// Reads up to [`READ_DIR_BATCH`] entries into the queue (on a blocking thread).
    fn fill(&mut self) {
        for _ in 0..READ_DIR_BATCH {
            match self.iter.next() {
                Some(entry) => self.entries.push_back(entry.map(DirEntry::new)),
                None => {
                    self.finished = true;
                    return;
                }
            }
        }
    }
}

impl ReadDir {
    /// The next entry, or `None` after the last one.
    ///
    /// Cancel-safe: an entry being read when the future is dropped is kept
    /// for the next call.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// The next entry, as a poll method: `Pending` while a batch is read
    /// on the blocking pool (the task is woken when it is done).
    pub fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<DirEntry>>> {
        loop {
            match &mut self.state {
                State::Idle(batch) => {
                    if let Some(entry) = batch.entries.pop_front() {
                        return Poll::Ready(entry.map(Some));
                    }
                    if batch.finished {
                        return Poll::Ready(Ok(None));
                    }
                    self.start()?;
                }
                State::Busy(job) => match ready!(Pin::new(job).poll(cx)) {
                    Ok(batch) => self.state = State::Idle(batch),
                    Err(e) => {
                        self.state = State::Lost;
                        return Poll::Ready(Err(io::Error::other(format!(
                            "cellio: reading a directory was lost: {e}"
                        ))));
                    }
                },
                State::Lost => {
                    return Poll::Ready(Err(io::Error::other(
                        "cellio: this ReadDir is unusable: an earlier read was lost",
                    )))
                }
            }
        }
    }

    /// Hands the batch to a blocking job that fills it.
    fn start(&mut self) -> io::Result<()> {
        let runtime = RuntimeHandle::current().ok_or_else(|| {
            io::Error::other(
                "cellio::fs::ReadDir used outside a cellio runtime (it reads on the runtime's blocking pool)",
            )
        })?;
        let State::Idle(mut batch) = std::mem::replace(&mut self.state, State::Lost) else {
            unreachable!("jobs start on an idle ReadDir")
        };
        self.state = State::Busy(runtime.spawn_blocking(move || {
            batch.fill();
            batch
        }));
        Ok(())
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Idle(batch) if batch.finished && batch.entries.is_empty() => "finished",
            State::Idle(_) => "idle",
            State::Busy(_) => "reading",
            State::Lost => "lost",
        };
        f.debug_struct("ReadDir").field("state", &state).finish()
    }
}

/// One entry of a directory, from [`ReadDir::next_entry`] (tokio's
/// `fs::DirEntry`): its name and path at once, its type and metadata from
/// the blocking pool.
///
/// The type is read with the entry, in the same job, where the system
/// gives it with the name (most Linux and macOS file systems): then
/// [`file_type`](Self::file_type) returns without a hand-over.
pub struct DirEntry {
    std: Arc<std::fs::DirEntry>,
    file_type: Option<FileType>,
}

impl DirEntry {
    /// Called on the blocking thread: `file_type` costs no system call
    /// where the directory listing carries the type, one `lstat` otherwise.
    fn new(std: std::fs::DirEntry) -> DirEntry {
        let file_type = std.file_type().ok();
        DirEntry {
            std: Arc::new(std),
            file_type,
        }
    }

    /// The full path: the directory given to [`read_dir`] joined with
    /// [`file_name`](Self::file_name).
    pub fn path(&self) -> PathBuf {
        self.std.path()
    }

    /// The entry's name within its directory.
    pub fn file_name(&self) -> OsString {
        self.std.file_name()
    }

    /// The entry's inode number, from the directory listing.
    #[cfg(unix)]
    pub fn ino(&self) -> u64 {
        std::os::unix::fs::DirEntryExt::ino(&*self.std)
    }

    /// The entry's metadata, not following a symbolic link
    /// ([`std::fs::DirEntry::metadata`]), read on the blocking pool.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let std = Arc::clone(&self.std);
        super::blocking(move || std.metadata()).await
    }

    /// The entry's type, not following a symbolic link
    /// ([`std::fs::DirEntry::file_type`]): at once when it came with the
    /// listing, else read on the blocking pool.
    pub async fn file_type(&self) -> io::Result<FileType> {
        if let Some(file_type) = self.file_type {
            return Ok(file_type);
        }
        let std = Arc::clone(&self.std);
        super::blocking(move || std.file_type()).await
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DirEntry").field(&self.path()).finish()
    }
}
