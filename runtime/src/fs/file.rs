//! [`File`]: an open file whose reads, writes and seeks run on the
//! blocking pool, one at a time, with one buffer that travels between the
//! file and its job (tokio's `fs::File`).
//!
//! # How it works
//!
//! A file is `Idle` (it holds its buffer) or `Busy` (one blocking job owns
//! the buffer and returns it with the operation's result). A read starts a
//! job that reads into the buffer, then copies out; a write copies into
//! the buffer, starts a job that writes it all, and returns at once
//! (write-behind, as tokio's does): the next operation, or
//! [`flush`](File::flush), waits for it and reports its error.
//!
//! # Invariants
//!
//! * At most one job per file at a time, so operations happen in the order
//!   they were made, and the file position moves as if they had run in
//!   place. Every job (`set_len`, `metadata`, `sync_all`, ... too) is the
//!   file's `Busy` state, so one whose future was dropped still comes
//!   before the next operation.
//! * The buffer's unread bytes are read ahead of the logical position: a
//!   write, a seek, `set_len` or `try_clone` first moves the file position
//!   back by them (in its job) and drops them; `metadata`,
//!   `set_permissions` and `sync_*` leave them for the next read, and so
//!   does everything on a file that cannot seek (a pipe, FIFO or
//!   terminal). A write's bytes never stay in the buffer
//!   after its job, whatever its result, so a read never takes them for
//!   bytes read; if the move back fails the write is not made and the
//!   read-ahead is kept, except on a file that cannot seek (a pipe, FIFO
//!   or terminal), where the write is made and the read-ahead kept for the
//!   next read.
//! * The buffer is reused (its capacity kept, up to the file's
//!   [`max_buf_size`](File::max_buf_size)) and a
//!   job's block comes from the worker's task pool: once warm, reading and
//!   writing allocate nothing. Warming up includes the blocking pool's
//!   growth to the threads the program's jobs keep busy: even a chain of
//!   one job at a time may start a second thread (and starting one
//!   allocates), when a job is queued before the last one's thread is
//!   back waiting (`blocking/pool.rs`).
//! * Dropping a `File` (or an operation's future) does not stop a job
//!   already running: a write already accepted still happens, and its
//!   error is lost unless [`flush`](File::flush) was awaited. Nor does
//!   the runtime's drop: a write's job is *mandatory* (see `blocking`),
//!   run by the pool before the drop returns even if it was still queued.
//! * The next operation waits for a job whose future was dropped and
//!   reports only a write's error: that of a `set_len`, `sync_all`, seek
//!   (or any other job) is lost with its future, as in tokio's `File`.

use std::fmt;
use std::fs::{Metadata, Permissions};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use super::OpenOptions;
use crate::{JoinHandle, RuntimeHandle};

/// The most one read or write job moves at a time by default (tokio's, 2
/// MiB): a larger read returns less, a larger write is taken in part.
/// [`File::set_max_buf_size`] changes it for one file.
pub const MAX_BUF: usize = 2 * 1024 * 1024;

/// An open file, read and written without blocking the worker (tokio's
/// `fs::File`): each operation runs on the runtime's blocking pool.
///
/// Implements `futures-io`'s `AsyncRead`, `AsyncWrite` and `AsyncSeek`;
/// the inherent methods cover the common cases.
///
/// Writes are accepted into the file's buffer and completed in the
/// background: call [`flush`](Self::flush) (or [`sync_all`](Self::sync_all))
/// before dropping the file to learn whether the last write succeeded.
///
/// # Examples
///
/// ```
/// use cellio_runtime::fs::File;
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let path = std::env::temp_dir().join(format!("cellio-file-doc-{}", std::process::id()));
/// let mut file = File::create(&path).await?;
/// file.write_all(b"hello, file").await?;
/// file.flush().await?; // the write's result
///
/// let mut file = File::open(&path).await?;
/// let mut contents = Vec::new();
/// file.read_to_end(&mut contents).await?;
/// assert_eq!(contents, b"hello, file");
/// # cellio_runtime::fs::remove_file(&path).await
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct File {
    std: Arc<std::fs::File>,
    state: State,
    /// The most one job reads or writes ([`MAX_BUF`] unless set).
    max_buf: usize,
    /// The `pos` of the [`poll_seek`](File::poll_seek) call (or tokio's
    /// `start_seek`) that started the seek job in progress (or last
    /// started one): a later call with another `pos` does not take that
    /// job's result for its own.
    seeking: Option<SeekFrom>,
}

/// What the file is doing.
enum State {
    /// No job runs; the buffer may hold bytes read ahead.
    Idle(Buf),
    /// A job owns the buffer and gives it back with its result.
    Busy(JoinHandle<(Done, Buf)>),
    /// A job panicked or was lost with the buffer (the runtime shut down):
    /// the file is unusable.
    Broken,
}

/// What a finished job did.
///
/// `Metadata` makes it large on some systems (232 bytes on macOS), and
/// boxing it would allocate per `metadata()` call: the job's output lives
/// in its pooled task block instead.
#[allow(clippy::large_enum_variant)]
enum Done {
    Read(io::Result<()>),
    Write(io::Result<()>),
    Seek(io::Result<u64>),
    /// A [`File::run`] job: `sync_all`, `sync_data`, `set_len` or
    /// `set_permissions`.
    Other(io::Result<()>),
    Metadata(io::Result<Metadata>),
    Clone(io::Result<std::fs::File>),
}

/// Whether a [`File::run`] job needs the position where the reader is
/// (`set_len`, which may cut off bytes read ahead, and `try_clone`, whose
/// file shares the position), so the bytes read ahead are given back
/// first, or does not (`metadata`, `set_permissions`, `sync_*`), so they
/// stay for the next read.
#[derive(Clone, Copy)]
enum Settle {
    Yes,
    No,
}

/// The buffer: `data[pos..]` are bytes read and not yet taken, or the
/// bytes a write job is to write.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    pos: usize,
}

impl Buf {
    fn unread(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Copies unread bytes into `dst`: how many.
    fn take_into(&mut self, dst: &mut [u8]) -> usize {
        let n = self.unread().len().min(dst.len());
        dst[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    /// Drops the unread bytes.
    fn discard_unread(&mut self) {
        self.data.clear();
        self.pos = 0;
    }

    /// Reads up to `len` bytes from `file` into the emptied buffer.
    fn read_from(&mut self, mut file: &std::fs::File, len: usize) -> io::Result<()> {
        self.data.clear();
        self.data.reserve_exact(len);
        self.data.resize(len, 0);
        self.pos = 0;
        let read = loop {
            match file.read(&mut self.data) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                read => break read,
            }
        };
        self.data.truncate(*read.as_ref().unwrap_or(&0));
        read.map(drop)
    }

    /// Appends `src` (a write's bytes) after the unread bytes, which stay
    /// read ahead until [`write_to`](Self::write_to) has moved the file
    /// position back over them: where the write starts in `data`.
    fn push_write(&mut self, src: &[u8]) -> usize {
        self.data.drain(..self.pos);
        self.pos = 0;
        let start = self.data.len();
        self.data.reserve_exact(src.len());
        self.data.extend_from_slice(src);
        start
    }

    /// Writes `data[start..]` (from [`push_write`](Self::push_write)) to
    /// `file` where the reader is: first moves the position back over the
    /// bytes read ahead (`data[pos..start]`) and drops them. A file that
    /// cannot seek (a pipe, FIFO or terminal: `ESPIPE`) has no position
    /// to move back, so the write is made and the read-ahead kept for the
    /// next read. If the move back fails otherwise, the write is not made:
    /// its bytes are dropped (never left to be taken for bytes read) and
    /// the read-ahead kept, consistent with the file position.
    fn write_to(&mut self, mut file: &std::fs::File, start: usize) -> io::Result<()> {
        let back = start - self.pos;
        let mut keep_read_ahead = false;
        if back != 0 {
            if let Err(e) = file.seek(SeekFrom::Current(-(back as i64))) {
                if e.raw_os_error() != Some(libc::ESPIPE) {
                    self.data.truncate(start);
                    return Err(e);
                }
                keep_read_ahead = true;
            }
        }
        let written = file.write_all(&self.data[start..]);
        if keep_read_ahead {
            self.data.truncate(start);
        } else {
            self.data.clear();
            self.pos = 0;
        }
        written
    }

    /// Keeps the buffer's memory for reuse, up to `max` bytes (or as many
    /// as it holds unread: a read's result is never dropped).
    fn shrink(&mut self, max: usize) {
        if self.data.capacity() > max {
            self.data.drain(..self.pos);
            self.pos = 0;
            if self.data.is_empty() {
                self.data = Vec::new();
            } else {
                self.data.shrink_to(max);
            }
        }
    }
}

impl File {
    /// Opens `path` for reading: [`std::fs::File::open`].
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Creates `path` for writing, truncating it if it exists:
    /// [`std::fs::File::create`].
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Creates `path` for reading and writing, failing if it exists:
    /// [`std::fs::File::create_new`].
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// An [`OpenOptions`] to open a file with: `File::options().append(true)`.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Wraps a `std` file (its position is where this file starts).
    pub fn from_std(std: std::fs::File) -> File {
        File {
            std: Arc::new(std),
            state: State::Idle(Buf::default()),
            max_buf: MAX_BUF,
            seeking: None,
        }
    }

    /// Sets the most one job reads or writes, [`MAX_BUF`] (2 MiB) by
    /// default (tokio's `set_max_buf_size`): a read returns at most this
    /// many bytes, a write accepts at most this many, and the file keeps a
    /// buffer of up to this size between operations. `0` counts as 1.
    pub fn set_max_buf_size(&mut self, max_buf_size: usize) {
        self.max_buf = max_buf_size.max(1);
    }

    /// The most one job reads or writes
    /// ([`set_max_buf_size`](Self::set_max_buf_size)).
    pub fn max_buf_size(&self) -> usize {
        self.max_buf
    }

    /// Reads into `buf`: the number of bytes read, `0` at end of file. One
    /// job reads up to `buf.len()` bytes (at most
    /// [`max_buf_size`](Self::max_buf_size)).
    ///
    /// Cancel-safe in the sense that nothing is lost: bytes a dropped read
    /// had fetched stay in the file's buffer for the next read.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Reads to the end of the file, appending to `buf`: the number of
    /// bytes read.
    ///
    /// The bytes are appended straight from the file's buffer (`buf` is
    /// not zeroed first); if the future is dropped, what was appended so
    /// far stays in `buf`.
    pub async fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        const CHUNK: usize = 64 * 1024;
        let start = buf.len();
        loop {
            poll_fn(|cx| self.poll_buffered(cx, CHUNK)).await?;
            let taken = self.take_buffered(usize::MAX, |bytes| buf.extend_from_slice(bytes));
            if taken == 0 {
                return Ok(buf.len() - start);
            }
        }
    }

    /// Accepts up to [`max_buf_size`](Self::max_buf_size) bytes of `buf`
    /// for writing and returns how many; the write itself completes in
    /// the background (see [`flush`](Self::flush)). Waits for the
    /// operation in progress first, and returns its error if it is a
    /// write that failed. (As with tokio's `File`, the error of another
    /// operation whose future was dropped while its job ran, a `set_len`,
    /// `sync_all` or seek, is lost: its job still runs, before this
    /// write.) Fails without writing outside a runtime, and when the
    /// runtime is shutting down or cannot start a blocking thread for it.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    /// Writes all of `buf` (in jobs of up to
    /// [`max_buf_size`](Self::max_buf_size) bytes); the last
    /// job completes in the background (see [`flush`](Self::flush)).
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Waits for the write in progress, if any, and returns its result.
    /// (Nothing is synced to the disk: see [`sync_all`](Self::sync_all).)
    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Moves the file position: the new position from the start, as
    /// [`std::io::Seek::seek`]. Bytes read ahead are accounted for. Waits
    /// for the operation in progress first (a seek whose future was
    /// dropped still happens, before this one). A seek that fails (before
    /// the start of the file, or on a pipe) leaves the position and the
    /// bytes read ahead as they were: the next read goes on where the
    /// reader was, as with std.
    pub async fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.flush().await?;
        poll_fn(|cx| self.poll_seek(cx, pos)).await
    }

    /// Flushes, then syncs the file's data and metadata to the disk:
    /// [`std::fs::File::sync_all`]. Bytes read ahead stay for the next
    /// read (as with [`metadata`](Self::metadata)).
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.run_other(Settle::No, |file| file.sync_all()).await
    }

    /// Flushes, then syncs the file's data (not all of its metadata) to
    /// the disk: [`std::fs::File::sync_data`]. Bytes read ahead stay for
    /// the next read.
    pub async fn sync_data(&mut self) -> io::Result<()> {
        self.run_other(Settle::No, |file| file.sync_data()).await
    }

    /// Flushes, then truncates or extends the file to `size` bytes:
    /// [`std::fs::File::set_len`]. The position does not move (bytes read
    /// ahead are given back first, as they may be cut off).
    pub async fn set_len(&mut self, size: u64) -> io::Result<()> {
        self.run_other(Settle::Yes, move |file| file.set_len(size))
            .await
    }

    /// Flushes, then reads the file's metadata: [`std::fs::File::metadata`].
    /// The position does not matter to it: bytes read ahead (by a read
    /// whose future was dropped) stay for the next read, on a pipe or
    /// FIFO too.
    pub async fn metadata(&mut self) -> io::Result<Metadata> {
        match self
            .run(Settle::No, |file| Done::Metadata(file.metadata()))
            .await?
        {
            Done::Metadata(metadata) => metadata,
            _ => unreachable!("a metadata job"),
        }
    }

    /// Flushes, then sets the file's permissions:
    /// [`std::fs::File::set_permissions`]. Bytes read ahead stay for the
    /// next read.
    pub async fn set_permissions(&mut self, permissions: Permissions) -> io::Result<()> {
        self.run_other(Settle::No, move |file| file.set_permissions(permissions))
            .await
    }

    /// Waits for the operation in progress, then returns the `std` file,
    /// its position where this file's reader is (bytes read ahead, by a
    /// read whose future was dropped, are given back with a seek).
    ///
    /// As tokio's `into_std`, it gives the file back whatever that
    /// operation's result: **the error of a write that failed in the
    /// background is lost**, so call [`flush`](Self::flush) first to learn
    /// it. Bytes read ahead that cannot be given back are lost with this
    /// `File` (as with std's `BufReader::into_inner` and tokio's
    /// `into_std`, which gives none back): on a pipe, FIFO or terminal,
    /// which have no position, or if the seek back fails; a read first
    /// returns them without waiting.
    ///
    /// Fails only if the file's last operation was lost with its runtime
    /// and still holds the file.
    pub async fn into_std(mut self) -> io::Result<std::fs::File> {
        // Errors here are dropped, as tokio's `into_std` drops them: the
        // file is given back whatever happened.
        let _ = self.flush().await;
        if matches!(&self.state, State::Idle(buf) if !buf.unread().is_empty()) {
            let _ = self.seek(SeekFrom::Current(0)).await;
        }
        Arc::try_unwrap(self.std).map_err(|_| io::Error::other("cellio: File still shared"))
    }

    /// Flushes, then a second `File` for the same open file (sharing its
    /// position): [`std::fs::File::try_clone`]. Bytes read ahead (by a
    /// read whose future was dropped) are given back first, so the clone
    /// starts where this file's reader is; a file that cannot seek (a
    /// pipe, FIFO or terminal) has no position to give them back to, so
    /// they stay in this file's buffer for its next read, and the clone
    /// reads what comes after them.
    pub async fn try_clone(&mut self) -> io::Result<File> {
        match self
            .run(Settle::Yes, |file| Done::Clone(file.try_clone()))
            .await?
        {
            Done::Clone(std) => Ok(File::from_std(std?)),
            _ => unreachable!("a try_clone job"),
        }
    }

    /// [`read`](Self::read) as a poll method (what `AsyncRead` calls).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_buffered(cx, dst.len()))?;
        let State::Idle(buf) = &mut self.state else {
            unreachable!("poll_buffered leaves the file idle")
        };
        Poll::Ready(Ok(buf.take_into(dst)))
    }

    /// Waits until the buffer holds unread bytes, read by a job that asked
    /// for up to `want` (at most `max_buf`), or holds none because the
    /// file ended (or `want` is 0). `Ready(Ok(()))` leaves the file idle:
    /// the caller copies out what it takes.
    pub(crate) fn poll_buffered(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Idle(buf) => {
                    if !buf.unread().is_empty() || want == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let len = want.min(self.max_buf);
                    if let Err(e) =
                        self.start(move |file, buf| Done::Read(buf.read_from(file, len)))
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                State::Busy(_) => match ready!(self.poll_job(cx))? {
                    // Read (or `0`: the end of the file); copied out by
                    // the caller at once.
                    Done::Read(Ok(())) => return Poll::Ready(Ok(())),
                    Done::Read(Err(e)) | Done::Write(Err(e)) => return Poll::Ready(Err(e)),
                    // A write, seek or other job before this read
                    // finished: now read.
                    Done::Write(Ok(()))
                    | Done::Seek(_)
                    | Done::Other(_)
                    | Done::Metadata(_)
                    | Done::Clone(_) => {}
                },
                State::Broken => return Poll::Ready(Err(broken())),
            }
        }
    }

    /// Takes up to `max` unread bytes out of the buffer through `copy`
    /// (after [`poll_buffered`](Self::poll_buffered)): how many.
    pub(crate) fn take_buffered(&mut self, max: usize, copy: impl FnOnce(&[u8])) -> usize {
        let State::Idle(buf) = &mut self.state else {
            unreachable!("taken only from an idle file")
        };
        let n = buf.unread().len().min(max);
        copy(&buf.unread()[..n]);
        buf.pos += n;
        n
    }

    /// [`write`](Self::write) as a poll method (what `AsyncWrite` calls).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match &mut self.state {
                State::Idle(buf) => {
                    if src.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    // Found before the buffer changes: a write refused
                    // here leaves the file as it was.
                    let runtime = match blocking_pool() {
                        Ok(runtime) => runtime,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let n = src.len().min(self.max_buf);
                    let start = buf.push_write(&src[..n]);
                    let started = self.start_job(
                        runtime,
                        move |file, buf| Done::Write(buf.write_to(file, start)),
                        true,
                    );
                    return Poll::Ready(started.map(|()| n));
                }
                State::Busy(_) => match ready!(self.poll_job(cx))? {
                    Done::Write(Err(e)) => return Poll::Ready(Err(e)),
                    // A read's bytes are dropped (and the position moved
                    // back) by this write's job, or kept on a pipe.
                    Done::Write(Ok(()))
                    | Done::Read(_)
                    | Done::Seek(_)
                    | Done::Other(_)
                    | Done::Metadata(_)
                    | Done::Clone(_) => {}
                },
                State::Broken => return Poll::Ready(Err(broken())),
            }
        }
    }

    /// [`flush`](Self::flush) as a poll method.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.state {
            State::Idle(_) => Poll::Ready(Ok(())),
            State::Busy(_) => match ready!(self.poll_job(cx))? {
                Done::Write(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(())),
            },
            State::Broken => Poll::Ready(Err(broken())),
        }
    }

    /// [`seek`](Self::seek) as a poll method (what `AsyncSeek` calls):
    /// call it with the same `pos` until it is ready. A seek left in
    /// progress by a call with another `pos` (its future dropped) finishes
    /// first, then this one runs; one left with the same `pos` cannot be
    /// told from this call's own, and its result is taken (the inherent
    /// [`seek`](Self::seek) waits for it first and has no such case).
    pub fn poll_seek(&mut self, cx: &mut Context<'_>, pos: SeekFrom) -> Poll<io::Result<u64>> {
        loop {
            match &mut self.state {
                State::Idle(_) => {
                    if let Err(e) = self.start_seek_job(pos) {
                        return Poll::Ready(Err(e));
                    }
                }
                State::Busy(_) => match ready!(self.poll_job(cx))? {
                    Done::Seek(result) if self.seeking.take() == Some(pos) => {
                        return Poll::Ready(result)
                    }
                    // A seek elsewhere, given up: it happened; now this one.
                    Done::Seek(_) => {}
                    Done::Write(Err(e)) => return Poll::Ready(Err(e)),
                    Done::Write(Ok(()))
                    | Done::Read(_)
                    | Done::Other(_)
                    | Done::Metadata(_)
                    | Done::Clone(_) => {}
                },
                State::Broken => return Poll::Ready(Err(broken())),
            }
        }
    }

    /// Starts the job of a seek to `pos` on the idle file (the read-ahead
    /// accounted for, and dropped if the seek is made) and records `pos`
    /// in `seeking`. An error leaves the file as it was.
    fn start_seek_job(&mut self, pos: SeekFrom) -> io::Result<()> {
        // Found before the buffer changes, as in `poll_write`.
        let runtime = blocking_pool()?;
        let State::Idle(buf) = &mut self.state else {
            unreachable!("a seek starts on an idle file")
        };
        let target = match pos {
            // From where the reader is, not the read-ahead.
            SeekFrom::Current(offset) => {
                let Some(offset) = offset.checked_sub(buf.unread().len() as i64) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "invalid seek to a negative or overflowing position",
                    ));
                };
                SeekFrom::Current(offset)
            }
            other => other,
        };
        // The read-ahead is dropped only once the seek is made: a seek the
        // kernel refuses leaves the position, and so the bytes read ahead
        // of it, as they were (std's seek does not move on an error).
        let seek = move |mut file: &std::fs::File, buf: &mut Buf| {
            let sought = file.seek(target);
            if sought.is_ok() {
                buf.discard_unread();
            }
            Done::Seek(sought)
        };
        self.start_job(runtime, seek, false)?;
        self.seeking = Some(pos);
        Ok(())
    }

    /// Waits for the job in progress; then the file is idle, its read-ahead
    /// given back (the position is where the reader is), or, on a file
    /// that cannot seek (a pipe, FIFO or terminal: `ESPIPE`), kept for the
    /// next read: such a file has no position to give it back to.
    async fn settle(&mut self) -> io::Result<()> {
        self.flush().await?;
        if matches!(&self.state, State::Idle(buf) if !buf.unread().is_empty()) {
            // The seek drops the bytes read ahead and moves back over them
            // (or, refused, leaves them).
            match self.seek(SeekFrom::Current(0)).await {
                Err(e) if e.raw_os_error() != Some(libc::ESPIPE) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits for the job in progress (and settles the file if `settle`
    /// says so), then runs `call` on it on the blocking pool, as the
    /// file's job: if this future is dropped, the next operation still
    /// waits for it (and drops its result).
    async fn run(
        &mut self,
        settle: Settle,
        call: impl FnOnce(&std::fs::File) -> Done + Send + 'static,
    ) -> io::Result<Done> {
        match settle {
            Settle::Yes => self.settle().await?,
            Settle::No => self.flush().await?,
        }
        self.start(move |file, _| call(file))?;
        poll_fn(|cx| self.poll_job(cx)).await
    }

    /// [`run`](Self::run) for a call that returns `()`.
    async fn run_other(
        &mut self,
        settle: Settle,
        call: impl FnOnce(&std::fs::File) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        match self
            .run(settle, move |file| Done::Other(call(file)))
            .await?
        {
            Done::Other(result) => result,
            _ => unreachable!("a run job"),
        }
    }

    /// Starts a job that runs `job` with the file and the buffer: the file
    /// becomes busy.
    fn start(
        &mut self,
        job: impl FnOnce(&std::fs::File, &mut Buf) -> Done + Send + 'static,
    ) -> io::Result<()> {
        self.start_job(blocking_pool()?, job, false)
    }

    /// [`start`](Self::start) on `runtime`'s pool (found before the caller
    /// changed the buffer), the job mandatory (a write: the runtime's
    /// shutdown runs it rather than cancel it) or not.
    fn start_job(
        &mut self,
        runtime: RuntimeHandle,
        job: impl FnOnce(&std::fs::File, &mut Buf) -> Done + Send + 'static,
        mandatory: bool,
    ) -> io::Result<()> {
        let State::Idle(buf) = std::mem::replace(&mut self.state, State::Broken) else {
            unreachable!("jobs start on an idle file")
        };
        let (file, mut buf) = (Arc::clone(&self.std), buf);
        let job = move || {
            let done = job(&file, &mut buf);
            (done, buf)
        };
        if mandatory {
            let (handle, queued) = runtime.spawn_mandatory_blocking(job);
            self.state = State::Busy(handle);
            if !queued {
                return Err(io::Error::other(
                    "cellio::fs::File: the write was not made: the runtime is shutting down, \
                     or no blocking thread could be started",
                ));
            }
        } else {
            self.state = State::Busy(runtime.spawn_blocking(job));
        }
        Ok(())
    }

    /// Polls the job in progress; when it is done the file is idle again
    /// (or broken, if the job was lost).
    fn poll_job(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Done>> {
        let State::Busy(job) = &mut self.state else {
            unreachable!("polled only while busy")
        };
        let finished = ready!(Pin::new(job).poll(cx));
        Poll::Ready(match finished {
            Ok((done, mut buf)) => {
                buf.shrink(self.max_buf);
                self.state = State::Idle(buf);
                Ok(done)
            }
            Err(e) => {
                self.state = State::Broken;
                Err(io::Error::other(format!(
                    "cellio: a file operation was lost: {e}"
                )))
            }
        })
    }
}

/// The current runtime, whose blocking pool runs file operations.
fn blocking_pool() -> io::Result<RuntimeHandle> {
    RuntimeHandle::current().ok_or_else(|| {
        io::Error::other("cellio::fs::File used outside a cellio runtime (it runs on the runtime's blocking pool)")
    })
}

fn broken() -> io::Error {
    io::Error::other("cellio: the file is unusable: an earlier operation was lost")
}

super::traits::file_read_traits!(File, |file| file);
super::traits::file_write_traits!(File, |file| file);

impl futures_io::AsyncSeek for File {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        File::poll_seek(self.get_mut(), cx, pos)
    }
}

/// With the `tokio-io` feature: tokio's `AsyncSeek`, as tokio's `File`
/// does it: `start_seek` starts the seek's job at once (an operation made
/// next, a read say, comes after it) and is an error while another
/// operation is in progress (call `poll_complete` first, as tokio's
/// `AsyncSeekExt::seek` does); `poll_complete` waits for the operation in
/// progress and returns a seek's result, or, with no seek in progress,
/// the position (from a seek to `Current(0)` of its own: on a pipe or
/// FIFO, `ESPIPE`, as std's `stream_position`, with any bytes read ahead
/// kept for the next read). A seek whose future was dropped still
/// happens, once.
#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match this.state {
            State::Idle(_) => this.start_seek_job(position),
            State::Busy(_) => Err(io::Error::other(
                "cellio: another file operation is in progress: call poll_complete before start_seek",
            )),
            State::Broken => Err(broken()),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        loop {
            match &this.state {
                State::Busy(_) => match ready!(this.poll_job(cx))? {
                    Done::Seek(result) => {
                        this.seeking = None;
                        return Poll::Ready(result);
                    }
                    Done::Write(Err(e)) => return Poll::Ready(Err(e)),
                    Done::Write(Ok(()))
                    | Done::Read(_)
                    | Done::Other(_)
                    | Done::Metadata(_)
                    | Done::Clone(_) => {}
                },
                // No seek in progress: the position, by a seek of its own.
                State::Idle(_) => return this.poll_seek(cx, SeekFrom::Current(0)),
                State::Broken => return Poll::Ready(Err(broken())),
            }
        }
    }
}

impl From<std::fs::File> for File {
    fn from(std: std::fs::File) -> Self {
        File::from_std(std)
    }
}

impl std::os::fd::AsRawFd for File {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.std.as_raw_fd()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle(_) => "idle",
            State::Busy(_) => "busy",
            State::Broken => "broken",
        };
        f.debug_struct("File")
            .field("std", &self.std)
            .field("state", &state)
            .finish()
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;

    /// A write whose job is cancelled because no pool thread can be
    /// started (out of threads or memory) returns an error: the write was
    /// not made. (It returned `Ok`, the loss showing only at the next
    /// operation; found by a review.)
    #[test]
    fn a_write_no_thread_can_run_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("cellio-file-no-thread-{}", std::process::id()));
        std::fs::write(&path, b"before").unwrap();
        let runtime = crate::Builder::new().workers(1).build().unwrap();
        let (written, flushed) = runtime.block_on(async {
            let std = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            // No job has run: the pool has no thread, and cannot start one.
            let mut file = File::from_std(std);
            crate::blocking::fail_thread_starts(true);
            let written = file.write(b"after").await;
            crate::blocking::fail_thread_starts(false);
            (written, file.flush().await)
        });
        drop(runtime);
        let contents = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let error = written.expect_err("the write was not made");
        assert!(error.to_string().contains("not made"), "{error}");
        assert!(flushed.is_err(), "the file lost an operation");
        assert_eq!(contents, b"before");
    }
}
