//! `fs::File`: every byte written comes back, in jobs larger and smaller
//! than its buffer; reads, writes and seeks keep the position exact even
//! with bytes read ahead; a write's error reaches `flush`; `into_std`
//! hands the position back; `OpenOptions` opens as `std`'s does; the
//! `futures-io` traits work; outside a runtime it is an error that changes
//! nothing, not a panic; and a write accepted before the runtime's drop
//! reaches the file.
//!
//! Not under Miri: its isolation has no file system.
#![cfg(not(miri))]

mod util;

use std::future::Future;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cellio_runtime::fs::{File, OpenOptions, MAX_BUF};
use util::{run, TempDir};

/// Byte `i` of the test pattern (period 251, so no power of two lines up).
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// A fresh directory holding `data`: `len` bytes of the pattern.
fn patterned_file(name: &str, len: usize) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let path = dir.0.join("data");
    std::fs::write(&path, patterned(len)).unwrap();
    (dir, path)
}

async fn open_read_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path).await
}

/// Leaves `len` bytes read ahead in `file`'s buffer: a read of `len` is
/// started and dropped before its job can run (the pool's one thread is
/// held until then), so the job's bytes stay in the buffer. Needs a
/// runtime with one blocking thread ([`run_one_blocking_thread`]).
async fn read_ahead(file: &mut File, len: usize) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holder = cellio_runtime::spawn_blocking(move || held.recv());
    let mut big = vec![0u8; len];
    {
        let mut read = Box::pin(file.read(&mut big));
        assert!(
            util::poll_once(&mut read).await.is_pending(),
            "the job waits"
        );
    }
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
}

/// [`run`] on a runtime of one worker and one blocking thread.
fn run_one_blocking_thread<M, Fut>(make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    util::with_timeout(util::LIMIT, move || one_blocking_thread().block_on(make()))
}

/// A runtime of one worker and one blocking thread.
fn one_blocking_thread() -> cellio_runtime::Runtime {
    cellio_runtime::Builder::new()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap()
}

#[test]
fn bytes_written_in_jobs_larger_than_the_buffer_come_back_whole() {
    let dir = TempDir::new("file-whole");
    let path = dir.0.join("data");
    run(move || async move {
        let data = patterned(2 * MAX_BUF + 12_345);
        let mut file = File::create(&path).await?;
        file.write_all(&data).await?;
        file.flush().await?;
        assert_eq!(std::fs::read(&path)?, data, "as std reads it");
        let mut file = File::open(&path).await?;
        let mut back = Vec::new();
        assert_eq!(file.read_to_end(&mut back).await?, data.len());
        assert_eq!(back, data);
        // At the end: end of file.
        assert_eq!(file.read(&mut [0u8; 16]).await?, 0);
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn bytes_read_ahead_do_not_move_the_position_seen_by_writes_and_seeks() {
    let (_dir, path) = patterned_file("file-ahead", 100_000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        // A read of 4 096 bytes starts its job and is dropped: the bytes
        // it fetches stay in the file's buffer, read ahead.
        read_ahead(&mut file, 4096).await;
        let mut small = [0u8; 10];
        assert_eq!(file.read(&mut small).await?, 10);
        assert_eq!(small.to_vec(), patterned(10));
        // The write lands where the reader is (10), not after the read-ahead.
        file.write_all(b"XYZ").await?;
        file.flush().await?;
        assert_eq!(file.seek(SeekFrom::Current(0)).await?, 13);
        let mut next = [0u8; 5];
        file.read(&mut next).await?;
        assert_eq!(next.to_vec(), (13..18).map(pattern).collect::<Vec<_>>());
        // Another read-ahead, then a relative seek from the reader.
        read_ahead(&mut file, 4096).await;
        assert_eq!(file.read(&mut next).await?, 5); // 18..23
        assert_eq!(file.seek(SeekFrom::Current(-3)).await?, 20);
        assert_eq!(file.seek(SeekFrom::End(-5)).await?, 99_995);
        assert_eq!(file.seek(SeekFrom::Start(7)).await?, 7);
        let mut one = [0u8; 1];
        file.read(&mut one).await?;
        assert_eq!(one[0], pattern(7));
        let on_disk = std::fs::read(&path)?;
        assert_eq!(&on_disk[..10], &patterned(10)[..]);
        assert_eq!(&on_disk[10..13], b"XYZ");
        assert_eq!(&on_disk[13..], &patterned(100_000)[13..]);
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn into_std_gives_back_the_readers_position_and_metadata_and_set_len_settle_first() {
    let (_dir, path) = patterned_file("file-std", 50_000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        read_ahead(&mut file, 8192).await;
        let mut three = [0u8; 3];
        assert_eq!(file.read(&mut three).await?, 3);
        file.write_all(&[0xEE; 1000]).await?;
        // metadata waits for the write.
        assert_eq!(file.metadata().await?.len(), 50_000);
        file.set_len(2_000).await?;
        assert_eq!(file.metadata().await?.len(), 2_000);
        file.sync_all().await?;
        let mut std_file = file.into_std().await?;
        assert_eq!(std_file.stream_position()?, 1_003, "the reader's position");
        let mut rest = Vec::new();
        std_file.read_to_end(&mut rest)?;
        assert_eq!(rest, patterned(2_000)[1_003..].to_vec());
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn into_std_after_a_read_ahead_is_at_the_readers_position() {
    let (_dir, path) = patterned_file("file-std-ahead", 20_000);
    run_one_blocking_thread(move || async move {
        let mut file = File::open(&path).await?;
        read_ahead(&mut file, 8192).await;
        let mut three = [0u8; 3];
        assert_eq!(file.read(&mut three).await?, 3);
        let mut std_file = file.into_std().await?;
        assert_eq!(std_file.stream_position()?, 3, "not 8 192");
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_failed_write_is_reported_by_flush_or_the_next_read() {
    let dir = TempDir::new("file-error");
    let path = dir.0.join("read-only");
    std::fs::write(&path, b"x").unwrap();
    run(move || async move {
        // Opened for reading only: the write is accepted into the buffer,
        // and its job's EBADF comes back from `flush`.
        let mut file = File::open(&path).await?;
        assert_eq!(file.write(b"lost?").await?, 5);
        let error = file.flush().await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc_ebadf()), "{error}");
        // Reported once; the file is usable after.
        file.flush().await?;
        // The next read reports a failed write too.
        assert_eq!(file.write(b"again").await?, 5);
        let mut byte = [0u8; 1];
        let error = file.read(&mut byte).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc_ebadf()), "{error}");
        assert_eq!(file.read(&mut byte).await?, 1);
        assert_eq!(&byte, b"x");
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn open_options_append_and_create_new_behave_as_std() {
    let dir = TempDir::new("file-options");
    let path = dir.0.join("log");
    run(move || async move {
        for line in ["one\n", "two\n"] {
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            log.write_all(line.as_bytes()).await?;
            log.flush().await?;
        }
        assert_eq!(std::fs::read(&path)?, b"one\ntwo\n");
        let error = File::create_new(&path).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        let error = File::open(path.with_extension("missing"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn the_futures_io_traits_read_write_and_seek() {
    use futures_util::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    let dir = TempDir::new("file-traits");
    let path = dir.0.join("data");
    run(move || async move {
        let data = patterned(300_000);
        let mut file = File::create_new(&path).await?;
        for chunk in data.chunks(7_000) {
            AsyncWriteExt::write_all(&mut file, chunk).await?;
        }
        AsyncWriteExt::close(&mut file).await?;
        assert_eq!(
            AsyncSeekExt::seek(&mut file, SeekFrom::Start(1_000)).await?,
            1_000
        );
        let mut back = Vec::new();
        AsyncReadExt::read_to_end(&mut file, &mut back).await?;
        assert_eq!(back, data[1_000..].to_vec());
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// With the `tokio-io` feature, tokio's traits: `write_all`, `shutdown`,
/// `seek`, `read_to_end` and a `BufReader`'s lines.
#[cfg(feature = "tokio-io")]
#[test]
fn the_tokio_io_traits_read_write_and_seek() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
    let dir = TempDir::new("file-tokio");
    let path = dir.0.join("lines");
    run(move || async move {
        let mut file = File::create_new(&path).await?;
        for n in 0..2_000 {
            AsyncWriteExt::write_all(&mut file, format!("line {n}\n").as_bytes()).await?;
        }
        AsyncWriteExt::shutdown(&mut file).await?;
        assert_eq!(AsyncSeekExt::seek(&mut file, SeekFrom::Start(5)).await?, 5);
        let mut rest = Vec::new();
        AsyncReadExt::read_to_end(&mut file, &mut rest).await?;
        assert!(rest.starts_with(b"0\nline 1\n"));
        AsyncSeekExt::rewind(&mut file).await?;
        let mut lines = BufReader::new(file).lines();
        let mut n = 0;
        while let Some(line) = lines.next_line().await? {
            assert_eq!(line, format!("line {n}"));
            n += 1;
        }
        assert_eq!(n, 2_000);
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// Leaves a tokio `seek(target)` future dropped with its seek's job
/// started and not yet run (the pool's one thread held), as a `select!`
/// with a timeout may. tokio's `Seek` future calls `poll_complete` (here a
/// `Current(0)` job of its own), then `start_seek`, then `poll_complete`
/// again; the future is dropped in that last wait.
#[cfg(feature = "tokio-io")]
async fn drop_a_tokio_seek_in_flight(file: &mut File, target: SeekFrom) {
    use tokio::io::AsyncSeekExt;
    let (release1, held1) = std::sync::mpsc::channel::<()>();
    let holder1 = cellio_runtime::spawn_blocking(move || held1.recv());
    let mut seek = Box::pin(AsyncSeekExt::seek(file, target));
    assert!(
        util::poll_once(&mut seek).await.is_pending(),
        "poll_complete waits"
    );
    // A second holder, queued behind the first `poll_complete`'s job.
    let (started, started_rx) = std::sync::mpsc::channel::<()>();
    let (release2, held2) = std::sync::mpsc::channel::<()>();
    let holder2 = cellio_runtime::spawn_blocking(move || {
        started.send(()).unwrap();
        held2.recv()
    });
    release1.send(()).unwrap();
    holder1.await.unwrap().unwrap();
    started_rx.recv_timeout(util::LIMIT).unwrap(); // the `Current(0)` job ran
    assert!(
        util::poll_once(&mut seek).await.is_pending(),
        "the seek waits"
    );
    drop(seek);
    release2.send(()).unwrap();
    holder2.await.unwrap().unwrap();
}

/// A tokio `seek` dropped while its job waited still happens, once: the
/// next read reads at its target, and the next seeks start from where
/// that read left the reader. (`poll_complete` used to run the dropped
/// seek again, moving the position back to its target; found by a
/// review.)
#[cfg(feature = "tokio-io")]
#[test]
fn a_dropped_tokio_seek_happens_once() {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (_dir, path) = patterned_file("file-tokio-dropped-seek", 100);
    run_one_blocking_thread(move || async move {
        let mut file = File::open(&path).await?;
        drop_a_tokio_seek_in_flight(&mut file, SeekFrom::Start(10)).await;
        let mut five = [0u8; 5];
        AsyncReadExt::read_exact(&mut file, &mut five).await?;
        assert_eq!(five[..], patterned(15)[10..], "read at the seek's target");
        assert_eq!(AsyncSeekExt::stream_position(&mut file).await?, 15);
        assert_eq!(
            AsyncSeekExt::seek(&mut file, SeekFrom::Current(5)).await?,
            20
        );
        assert_eq!(AsyncReadExt::read_u8(&mut file).await?, pattern(20));
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// tokio's `start_seek` starts the seek, as tokio's `File` does: a read
/// made next (without `poll_complete`) reads at the new position, and
/// `poll_complete` then returns the position. While another operation is
/// in progress (a write completing in the background) it is an error, as
/// in tokio. (The seek used to wait for `poll_complete`, so the read read
/// at the old position; found by a review.)
#[cfg(feature = "tokio-io")]
#[test]
fn tokio_start_seek_starts_the_seek() {
    use std::future::poll_fn;
    use std::pin::Pin;
    use tokio::io::{AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWriteExt};
    let (_dir, path) = patterned_file("file-tokio-start-seek", 100);
    run(move || async move {
        let mut file = open_read_write(&path).await?;
        Pin::new(&mut file).start_seek(SeekFrom::Start(10))?;
        let mut five = [0u8; 5];
        AsyncReadExt::read_exact(&mut file, &mut five).await?;
        assert_eq!(five[..], patterned(15)[10..], "read at the new position");
        let at = poll_fn(|cx| Pin::new(&mut file).poll_complete(cx)).await?;
        assert_eq!(at, 15);
        AsyncWriteExt::write_all(&mut file, b"xy").await?;
        let busy = Pin::new(&mut file).start_seek(SeekFrom::Start(0));
        assert!(busy.is_err(), "start_seek while the write completes");
        assert_eq!(
            AsyncSeekExt::seek(&mut file, SeekFrom::Start(15)).await?,
            15
        );
        assert_eq!(AsyncReadExt::read_u8(&mut file).await?, b'x');
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A tokio read into a fresh, uninitialized `ReadBuf` (as `read_buf` on a
/// `BytesMut`'s spare capacity gives): the bytes land in it, and exactly
/// as many are marked filled and initialized (copied in, not zeroed
/// first); a buffer smaller than what the job read gets the rest next.
#[cfg(feature = "tokio-io")]
#[test]
fn a_tokio_read_into_uninitialized_memory_fills_exactly_what_came() {
    use std::future::poll_fn;
    use std::mem::MaybeUninit;
    use std::pin::Pin;
    use tokio::io::{AsyncRead, ReadBuf};
    let dir = TempDir::new("file-tokio-uninit");
    let path = dir.0.join("data");
    std::fs::write(&path, b"hello, uninitialized file").unwrap();
    run(move || async move {
        let mut file = File::open(&path).await?;
        let mut memory = [MaybeUninit::<u8>::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut memory);
        poll_fn(|cx| Pin::new(&mut file).poll_read(cx, &mut buf)).await?;
        assert_eq!(buf.filled(), b"hello, uninitialized file");
        assert_eq!(buf.initialized().len(), 25, "initialized: what came");
        // Read ahead by a larger read, taken by a smaller buffer in parts.
        std::fs::write(&path, b"0123456789")?;
        let mut file = File::open(&path).await?;
        let mut small = [MaybeUninit::<u8>::uninit(); 4];
        let mut parts = Vec::new();
        loop {
            let mut buf = ReadBuf::uninit(&mut small);
            poll_fn(|cx| Pin::new(&mut file).poll_read(cx, &mut buf)).await?;
            if buf.filled().is_empty() {
                break;
            }
            parts.push(buf.filled().to_vec());
        }
        assert_eq!(parts, [&b"0123"[..], b"4567", b"89"]);
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// `set_max_buf_size` bounds each job: a write accepts at most that
/// many bytes, a read returns at most that many; `write_all` and
/// `read_to_end` still move everything, in order.
#[test]
fn max_buf_size_bounds_each_read_and_write() {
    let dir = TempDir::new("file-max-buf");
    let path = dir.0.join("data");
    run(move || async move {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut file = File::create_new(&path).await?;
        assert_eq!(file.max_buf_size(), MAX_BUF);
        file.set_max_buf_size(4096);
        assert_eq!(file.write(&data).await?, 4096);
        file.write_all(&data[4096..]).await?;
        file.flush().await?;
        file.seek(SeekFrom::Start(0)).await?;
        let mut first = vec![0u8; 10_000];
        assert_eq!(file.read(&mut first).await?, 4096);
        assert_eq!(first[..4096], data[..4096]);
        let mut rest = Vec::new();
        assert_eq!(file.read_to_end(&mut rest).await?, 10_000 - 4096);
        assert!(rest == data[4096..], "the rest differs");
        file.set_max_buf_size(0);
        assert_eq!(file.max_buf_size(), 1, "0 counts as 1");
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_an_operation_is_an_error() {
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let mut file = File::from_std(file);
    let mut buf = [0u8; 16];
    let mut read = pin!(file.read(&mut buf));
    let mut cx = Context::from_waker(Waker::noop());
    match read.as_mut().poll(&mut cx) {
        Poll::Ready(Err(error)) => {
            assert!(
                error.to_string().contains("outside a cellio runtime"),
                "{error}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Polls `fut` once with a no-op waker, on this thread outside any
/// `block_on`.
fn poll_outside<F: Future>(fut: F) -> Poll<F::Output> {
    pin!(fut)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// A write or a seek refused outside a runtime leaves the file as it was:
/// the bytes read ahead stay, and the next read (back in the runtime) gets
/// the bytes after the reader's position. (The write used to drop the
/// read-ahead and leave its own bytes in the buffer, as if read.)
#[test]
fn a_write_or_seek_refused_outside_a_runtime_leaves_the_file_as_it_was() {
    let (_dir, path) = patterned_file("file-refused-outside", 20);
    let rt = one_blocking_thread();
    let mut file = rt.block_on(async {
        let mut file = open_read_write(&path).await.unwrap();
        read_ahead(&mut file, 20).await;
        let mut two = [0u8; 2];
        assert_eq!(file.read(&mut two).await.unwrap(), 2);
        file
    });
    let refused = |polled: Poll<std::io::Result<u64>>| match polled {
        Poll::Ready(Err(error)) => {
            assert!(
                error.to_string().contains("outside a cellio runtime"),
                "{error}"
            )
        }
        other => panic!("expected the error, got {other:?}"),
    };
    refused(poll_outside(async {
        file.write(b"XY").await.map(|n| n as u64)
    }));
    refused(poll_outside(file.seek(SeekFrom::Start(15))));
    refused(poll_outside(file.seek(SeekFrom::Current(5))));
    let (next, at) = rt.block_on(async move {
        let mut two = [0u8; 2];
        let n = file.read(&mut two).await.unwrap();
        (
            two[..n].to_vec(),
            file.seek(SeekFrom::Current(0)).await.unwrap(),
        )
    });
    assert_eq!(next, [pattern(2), pattern(3)], "the bytes after the reader");
    assert_eq!(at, 4, "the position after that read");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        patterned(20),
        "nothing written"
    );
}

/// `EBADF`, without a libc dependency.
fn libc_ebadf() -> i32 {
    9
}

/// A write after a `set_len` whose future was dropped (its job started)
/// waits for that job and lands after it: the file holds the write.
/// (It used to start its own job at once, beside a truncation the file
/// did not track, so on a pool of several threads the truncation now and
/// then ran after the write and emptied the file after `flush` had said
/// `Ok`; found by a review.)
#[test]
fn a_write_after_a_dropped_set_len_waits_for_it() {
    let dir = TempDir::new("file-dropped-set-len");
    let path = dir.0.join("data");
    run_one_blocking_thread(move || async move {
        std::fs::write(&path, [b'a'; 8192])?;
        let mut file = open_read_write(&path).await?;
        // The pool's one thread is held: the truncation's job waits.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = cellio_runtime::spawn_blocking(move || held.recv());
        {
            let mut truncate = Box::pin(file.set_len(0));
            assert!(
                util::poll_once(&mut truncate).await.is_pending(),
                "its job waits"
            );
        }
        let mut write = Box::pin(file.write_all(b"new"));
        let early = util::poll_once(&mut write).await.is_ready();
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(!early, "the write did not wait for the truncation");
        write.await?;
        file.flush().await?;
        assert_eq!(std::fs::read(&path)?, b"new", "truncated, then written");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A `set_len` that fails, its future dropped while its job waited: the
/// next write waits for the job and succeeds, the `set_len`'s error lost
/// (as with tokio's `File`, and as `write`'s docs say: only a write's
/// error is reported by the next operation).
#[test]
fn the_error_of_a_dropped_set_len_is_lost_as_in_tokio() {
    let dir = TempDir::new("file-dropped-set-len-error");
    let path = dir.0.join("data");
    run_one_blocking_thread(move || async move {
        std::fs::write(&path, b"0123456789")?;
        let mut file = open_read_write(&path).await?;
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = cellio_runtime::spawn_blocking(move || held.recv());
        {
            // Above i64::MAX: std's `set_len` fails with `InvalidInput`.
            let mut set_len = Box::pin(file.set_len(u64::MAX));
            assert!(util::poll_once(&mut set_len).await.is_pending());
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert_eq!(file.write(b"x").await?, 1);
        file.flush().await?;
        assert_eq!(
            std::fs::read(&path)?,
            b"x123456789",
            "unchanged but the write"
        );
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// `into_std` after a `metadata` whose future was dropped (its job
/// waiting) waits for that job and gives the file back. (It used to find
/// the untracked job still holding the file and fail with "File still
/// shared", having consumed the `File`; found by a review.)
#[test]
fn into_std_after_a_dropped_metadata_gives_the_file_back() {
    let (_dir, path) = patterned_file("file-into-std-dropped-run", 1000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = cellio_runtime::spawn_blocking(move || held.recv());
        {
            let mut metadata = Box::pin(file.metadata());
            assert!(
                util::poll_once(&mut metadata).await.is_pending(),
                "its job waits"
            );
        }
        let mut into_std = Box::pin(file.into_std());
        assert!(util::poll_once(&mut into_std).await.is_pending());
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut std = into_std.await?;
        assert_eq!(std.stream_position()?, 0);
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// After `set_max_buf_size` is lowered below the buffer's size, the next
/// read returns the bytes its job read, and the rest of the file follows.
/// (The shrink that followed the job dropped the buffer with them, so the
/// read returned `0`, a false end of file, and the position had moved
/// past them; found by a review.)
#[test]
fn a_read_after_lowering_max_buf_size_returns_its_bytes() {
    let (_dir, path) = patterned_file("file-lowered-max-buf", 100_000);
    run(move || async move {
        let mut file = open_read_write(&path).await?;
        // A 64 KiB read: the buffer's capacity is now 64 KiB.
        let mut big = vec![0u8; 65_536];
        assert_eq!(file.read(&mut big).await?, 65_536);
        file.set_max_buf_size(4096);
        let mut next = vec![0u8; 4096];
        assert_eq!(file.read(&mut next).await?, 4096, "not the end of file");
        assert_eq!(next, (65_536..69_632).map(pattern).collect::<Vec<_>>());
        let mut rest = Vec::new();
        assert_eq!(file.read_to_end(&mut rest).await?, 100_000 - 69_632);
        assert!(rest == patterned(100_000)[69_632..], "the rest differs");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A seek after a seek whose future was dropped (its job waiting) goes
/// where it was asked, after the dropped one, and the next read reads
/// there; two equal relative seeks both move. (It used to take the
/// dropped seek's result for its own and not move; found by a review.)
#[test]
fn a_seek_after_a_dropped_seek_goes_where_it_was_asked() {
    let (_dir, path) = patterned_file("file-dropped-seek", 10_000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        // (dropped, then, where it ends); each read moves on by 1.
        let rounds = [
            (SeekFrom::Start(5_000), SeekFrom::Start(7), 7),
            (SeekFrom::Current(100), SeekFrom::Current(100), 208),
        ];
        for (dropped, then, at) in rounds {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let holder = cellio_runtime::spawn_blocking(move || held.recv());
            {
                let mut seek = Box::pin(file.seek(dropped));
                assert!(
                    util::poll_once(&mut seek).await.is_pending(),
                    "the job waits"
                );
            }
            release.send(()).unwrap();
            holder.await.unwrap().unwrap();
            assert_eq!(file.seek(then).await?, at, "after {dropped:?}, {then:?}");
            let mut one = [0u8; 1];
            file.read(&mut one).await?;
            assert_eq!(one[0], pattern(at as usize), "read there");
        }
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// The same through `futures-io`'s `AsyncSeek`: a seek with another
/// position than one whose future was dropped is not given that one's
/// result. (It used to be; found by a review.)
#[test]
fn a_futures_io_seek_after_a_dropped_one_elsewhere_goes_where_it_was_asked() {
    use futures_util::AsyncSeekExt;
    let (_dir, path) = patterned_file("file-dropped-seek-futures-io", 10_000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = cellio_runtime::spawn_blocking(move || held.recv());
        {
            let mut seek = AsyncSeekExt::seek(&mut file, SeekFrom::Start(5_000));
            assert!(
                util::poll_once(&mut seek).await.is_pending(),
                "the job waits"
            );
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert_eq!(AsyncSeekExt::seek(&mut file, SeekFrom::Start(7)).await?, 7);
        let mut one = [0u8; 1];
        file.read(&mut one).await?;
        assert_eq!(one[0], pattern(7), "read there");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A relative seek whose offset, taken back over the bytes read ahead,
/// would overflow `i64` is an `InvalidInput` error, and the position and
/// the bytes read ahead stay. (It used to panic with an overflow in debug
/// builds, and pass a wrapped offset to `lseek` in release; found by a
/// review.)
#[test]
fn a_relative_seek_near_i64_min_with_bytes_read_ahead_is_an_error_not_a_panic() {
    let (_dir, path) = patterned_file("file-seek-min", 10_000);
    run_one_blocking_thread(move || async move {
        let mut file = open_read_write(&path).await?;
        read_ahead(&mut file, 4096).await;
        let mut small = [0u8; 10];
        assert_eq!(file.read(&mut small).await?, 10);
        let err = file.seek(SeekFrom::Current(i64::MIN)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(file.read(&mut small).await?, 10);
        assert_eq!(small.to_vec(), (10..20).map(pattern).collect::<Vec<_>>());
        assert_eq!(file.seek(SeekFrom::Current(0)).await?, 20, "the position");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A write the file accepted (`Ok`, no `flush`) whose job is still queued
/// behind the pool's one busy thread when the runtime is dropped reaches
/// the file before the drop returns, as `File`'s docs promise. (The drop
/// used to cancel the queued job, and the bytes were lost; found by a
/// review.)
#[test]
fn a_write_queued_when_the_runtime_drops_reaches_the_file() {
    let dir = TempDir::new("file-write-at-drop");
    let path = dir.0.join("data");
    let std_file = std::fs::File::create(&path).unwrap();
    util::with_timeout(util::LIMIT, move || {
        let runtime = one_blocking_thread();
        runtime.block_on(async move {
            // The pool's one thread is busy until after the drop began.
            let (started, started_rx) = std::sync::mpsc::channel();
            drop(cellio_runtime::spawn_blocking(move || {
                started.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
            }));
            started_rx.recv_timeout(util::LIMIT).unwrap();
            let mut file = File::from_std(std_file);
            file.write_all(b"accepted").await.unwrap();
            let pool = cellio_runtime::RuntimeHandle::current()
                .unwrap()
                .blocking_pool_stats();
            assert_eq!(pool.2, 1, "the write waits in the queue");
        });
    });
    assert_eq!(std::fs::read(&path).unwrap(), b"accepted");
}

/// The common case of the same: the default pool, nothing else running,
/// and a write as the last thing before the runtime is dropped. Every
/// round's bytes reach the file. (Nearly every round lost them: the
/// write's thread, woken or just started, had not taken the job when the
/// drop emptied the queue; found by a review.)
#[test]
fn a_last_write_before_the_runtime_drops_reaches_the_file() {
    let dir = TempDir::new("file-last-write");
    let rounds = 50;
    let lost = util::with_timeout(util::LIMIT, move || {
        (0..rounds)
            .filter(|round| {
                let path = dir.0.join(format!("data-{round}"));
                let std_file = std::fs::File::create(&path).unwrap();
                let runtime = cellio_runtime::Builder::new().workers(1).build().unwrap();
                runtime.block_on(async move {
                    File::from_std(std_file).write_all(b"bye").await.unwrap();
                });
                drop(runtime);
                std::fs::read(&path).unwrap() != b"bye"
            })
            .count()
    });
    assert_eq!(lost, 0, "{lost} of {rounds} last writes lost");
}

/// A write a task on a background worker makes while the runtime's drop
/// is under way (the drop has shut the blocking pool down but not yet
/// stopped that worker) reaches the file or is refused with an error, as
/// tokio's `File` refuses it. (It was accepted, `Ok`, and then dropped:
/// the pool cancels a job submitted after its shutdown; found by a
/// review.)
#[test]
fn a_write_accepted_while_the_runtime_drops_reaches_the_file_or_fails() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = TempDir::new("file-write-during-drop");
    let path = dir.0.join("data");
    let std_file = std::fs::File::create(&path).unwrap();
    let dropping = Arc::new(AtomicBool::new(false));
    let result: Arc<Mutex<Option<std::io::Result<()>>>> = Arc::new(Mutex::new(None));
    let (dropping2, result2) = (Arc::clone(&dropping), Arc::clone(&result));
    util::with_timeout(util::LIMIT, move || {
        let runtime = cellio_runtime::Builder::new().workers(2).build().unwrap();
        runtime.block_on(async move {
            let (ready, ready_rx) = std::sync::mpsc::channel();
            drop(cellio_runtime::spawn_on(1, async move {
                let mut file = File::from_std(std_file);
                ready.send(()).unwrap();
                // Block this worker until the drop has begun, then write.
                while !dropping2.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
                let r = file.write_all(b"accepted").await;
                *result2.lock().unwrap() = Some(r);
            }));
            ready_rx.recv_timeout(util::LIMIT).unwrap();
        });
        dropping.store(true, Ordering::SeqCst);
        drop(runtime);
    });
    let written = std::fs::read(&path).unwrap();
    let result = result.lock().unwrap().take();
    eprintln!(
        "write returned {result:?}; file holds {:?}",
        String::from_utf8_lossy(&written)
    );
    match result {
        Some(Ok(())) => assert_eq!(written, b"accepted", "an accepted write was lost"),
        Some(Err(e)) => assert!(e.to_string().contains("shutting down"), "{e}"),
        None => panic!("the write was never made"),
    }
}

/// A write into a full pipe nobody reads: shutdown_timeout returns within
/// its grace (the drop would wait for good, as documented).
#[test]
fn shutdown_timeout_bounds_a_blocked_mandatory_write() {
    let (_reader, writer) = std::io::pipe().unwrap();
    let elapsed = util::with_timeout(util::LIMIT, move || {
        let runtime = cellio_runtime::Builder::new().workers(1).build().unwrap();
        runtime.block_on(async move {
            let mut file = File::from_std(std::fs::File::from(std::os::fd::OwnedFd::from(writer)));
            // Larger than the pipe's 64 KiB: the job blocks.
            let _ = file.write_all(&vec![b'x'; 256 * 1024]).await;
        });
        let start = std::time::Instant::now();
        runtime.shutdown_timeout(std::time::Duration::from_millis(200));
        start.elapsed()
    });
    eprintln!("shutdown_timeout took {elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(2));
}

/// A FIFO at `dir/fifo`, opened for reading and writing (so that neither
/// open nor a read of what it wrote waits for another process).
async fn open_fifo(dir: &TempDir) -> std::io::Result<File> {
    let path = dir.0.join("fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    open_read_write(&path).await
}

/// Two `File`s over one open file (`try_clone`, sharing its position, as
/// std's clones do): A has `0123` read ahead, B moves the shared position
/// to 0, so A's write cannot move back over its read-ahead (`EINVAL`).
/// The write is not made, `flush` says so, and A's next read returns the
/// bytes it read ahead, not the write's. (They came back from the next
/// read as file data; found by a review.)
#[test]
fn a_write_that_cannot_move_back_over_the_read_ahead_is_not_read_back() {
    let (_dir, path) = patterned_file("file-refused-write", 10);
    run_one_blocking_thread(move || async move {
        let mut a = open_read_write(&path).await?;
        let mut b = a.try_clone().await?;
        read_ahead(&mut a, 4).await;
        b.seek(SeekFrom::Start(0)).await?;
        a.write_all(b"WXYZ").await?;
        let error = a.flush().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        let mut four = [0u8; 4];
        assert_eq!(a.read(&mut four).await?, 4);
        assert_eq!(four.to_vec(), patterned(4), "the bytes read ahead");
        assert_eq!(std::fs::read(&path)?, patterned(10), "nothing written");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A FIFO opened to read and write (a terminal behaves the same): a write
/// after bytes were read ahead is made (a pipe has no position to move
/// back), and the bytes read ahead still come first. (The write was
/// refused with `ESPIPE` and its bytes came back from the next read as if
/// read from the pipe; found by a review.)
#[test]
fn a_write_on_a_fifo_after_a_read_ahead_is_made_and_the_read_ahead_kept() {
    let dir = TempDir::new("file-fifo-write");
    run_one_blocking_thread(move || async move {
        let mut file = open_fifo(&dir).await?;
        file.write_all(b"first").await?;
        file.flush().await?;
        read_ahead(&mut file, 5).await; // "first" in the buffer
        file.write_all(b"second").await?;
        file.flush().await?;
        let mut buf = [0u8; 16];
        let n = file.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"first");
        let n = file.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"second", "the write reached the pipe");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A seek the kernel refuses (before the start of the file: `EINVAL`)
/// after bytes were read ahead leaves the position and the read-ahead as
/// they were, as std's seek does: the next read goes on where the reader
/// was. (The refused seek dropped the read-ahead, and the next read
/// skipped those bytes; found by a review.)
#[test]
fn a_seek_the_kernel_refuses_keeps_the_position_and_the_read_ahead() {
    let (_dir, path) = patterned_file("file-refused-seek", 100);
    run_one_blocking_thread(move || async move {
        let mut file = File::open(&path).await?;
        read_ahead(&mut file, 10).await;
        let mut two = [0u8; 2];
        assert_eq!(file.read(&mut two).await?, 2);
        for refused in [SeekFrom::Current(-100), SeekFrom::End(-1000)] {
            let error = file.seek(refused).await.unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidInput,
                "{refused:?}: {error}"
            );
        }
        let mut four = [0u8; 4];
        assert_eq!(file.read(&mut four).await?, 4);
        assert_eq!(
            four.to_vec(),
            patterned(6)[2..],
            "the bytes after the reader"
        );
        assert_eq!(file.seek(SeekFrom::Current(0)).await?, 6);
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A FIFO `File` with bytes read ahead (a read whose future was dropped):
/// `metadata`, `set_permissions`, `sync_all` and `try_clone` work and keep
/// the bytes for the next read (a pipe has no position to give them back
/// to); a seek fails with `ESPIPE`, as std's, and keeps them too. (Each
/// settled the file with a seek back, which a pipe refuses: they failed
/// with "Illegal seek" and the bytes were lost; found by a review.)
#[test]
fn operations_on_a_fifo_with_bytes_read_ahead_keep_them() {
    let dir = TempDir::new("file-fifo-ops");
    run_one_blocking_thread(move || async move {
        use std::os::unix::fs::FileTypeExt;
        let mut file = open_fifo(&dir).await?;
        file.write_all(b"hello world").await?;
        file.flush().await?;
        read_ahead(&mut file, 11).await;
        let metadata = file.metadata().await?;
        assert!(metadata.file_type().is_fifo());
        file.set_permissions(metadata.permissions()).await?;
        let _clone = file.try_clone().await?;
        let error = file.seek(SeekFrom::Current(0)).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(29), "ESPIPE: {error}");
        let mut buf = [0u8; 16];
        let n = file.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"hello world");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// tokio's `poll_complete` with no seek in progress (what its
/// `stream_position` and every `seek` call first) on a FIFO with bytes
/// read ahead: `ESPIPE`, as std's `stream_position`, and the bytes stay.
#[cfg(feature = "tokio-io")]
#[test]
fn a_tokio_stream_position_on_a_fifo_keeps_the_bytes_read_ahead() {
    let dir = TempDir::new("file-fifo-tokio");
    run_one_blocking_thread(move || async move {
        let mut file = open_fifo(&dir).await?;
        file.write_all(b"hello").await?;
        file.flush().await?;
        read_ahead(&mut file, 5).await;
        let error = tokio::io::AsyncSeekExt::stream_position(&mut file)
            .await
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(29), "ESPIPE: {error}");
        let mut buf = [0u8; 16];
        let n = file.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"hello");
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// `into_std` after a write that failed in the background (`/dev/full`:
/// `ENOSPC`) gives the file back, as tokio's does; the write's error is
/// lost, as the docs say (`flush` first to learn it). (It returned the
/// error and closed the file; found by a review.)
#[test]
fn into_std_after_a_failed_write_gives_the_file_back() {
    use std::os::fd::AsRawFd;
    run(|| async {
        let mut file = OpenOptions::new().write(true).open("/dev/full").await?;
        let fd = file.as_raw_fd();
        assert_eq!(file.write(b"lost").await?, 4);
        let std_file = file.into_std().await?;
        assert_eq!(std_file.as_raw_fd(), fd, "the same open file");
        assert_eq!(std_file.metadata()?.len(), 0);
        std::io::Result::Ok(())
    })
    .unwrap();
}
