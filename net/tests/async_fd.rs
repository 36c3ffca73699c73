//! `AsyncFd`: a pipe's reader waits for the writer and gets every byte, a
//! writer waits for room in a full pipe, a dropped wait runs nothing, the
//! descriptor comes back registered-free from `into_inner`, and misuse (a
//! blocking descriptor, a regular file, no runtime, two readers at once)
//! is a clear error. The poll methods and the `futures-io` traits keep
//! their state in the `AsyncFd`.

mod util;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use cellio_net::AsyncFd;
use cellio_runtime::Builder;
use util::{pattern, poll_once, run, run_with};

/// A pipe `(read end, write end)`, both non-blocking unless `blocking`.
#[allow(clippy::incompatible_msrv)] // tests build with a current toolchain; the libraries keep to the MSRV
fn pipe(blocking: bool) -> (File, File) {
    let (read, write) = std::io::pipe().expect("pipe");
    let (read, write) = (
        File::from(OwnedFd::from(read)),
        File::from(OwnedFd::from(write)),
    );
    if !blocking {
        for end in [&read, &write] {
            // SAFETY: F_SETFL with flags on a descriptor `end` owns; no memory is touched.
            assert_eq!(
                unsafe { libc::fcntl(end.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) },
                0
            );
        }
    }
    (read, write)
}

/// A non-blocking read on `file`, as an `AsyncFd` closure.
fn read_into(buf: &mut [u8]) -> impl FnMut(&File) -> io::Result<usize> + '_ {
    move |mut file| file.read(buf)
}

#[test]
fn a_reader_waits_for_the_writer_and_gets_every_byte_in_order() {
    run(|| async {
        let (reader, mut writer) = pipe(false);
        let reader = AsyncFd::new(reader)?;
        let len = 256 * 1024;
        // A blocking writer on another thread: the write end is
        // non-blocking, so it retries on `WouldBlock`.
        let thread = std::thread::spawn(move || {
            let data: Vec<u8> = (0..len).map(pattern).collect();
            let mut sent = 0;
            while sent < len {
                match writer.write(&data[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        let mut got = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read_with(read_into(&mut buf)).await?;
            if n == 0 {
                break; // the writer closed
            }
            for (i, &byte) in buf[..n].iter().enumerate() {
                assert_eq!(byte, pattern(got + i), "byte {}", got + i);
            }
            got += n;
        }
        thread.join().unwrap()?;
        assert_eq!(got, len);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_writer_waits_for_room_in_a_full_pipe() {
    run(|| async {
        let (mut reader, writer) = pipe(false);
        let writer = AsyncFd::new(writer)?;
        // Fill the pipe until it says `WouldBlock`.
        let chunk = [7u8; 4096];
        let mut filled = 0;
        loop {
            match writer
                .write_with(|mut file| file.write(&chunk))
                .try_complete()
            {
                Some(Ok(n)) => filled += n,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        assert!(filled >= 4096, "the pipe took {filled} bytes");
        let mut write = pin!(writer.write_with(|mut file| file.write(b"after")));
        assert!(
            poll_once(write.as_mut()).await.is_pending(),
            "the pipe is full"
        );
        // Another thread drains the pipe: the write wakes and goes through.
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut all = Vec::new();
            let mut buf = [0u8; 65536];
            let mut last = 0;
            while all.len() < filled + 5 {
                match reader.read(&mut buf) {
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        last += 1;
                        assert!(last < 10_000, "the write never came");
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(all)
        });
        assert_eq!(write.await?, 5);
        let all = thread.join().unwrap()?;
        assert!(all[..filled].iter().all(|&b| b == 7));
        assert_eq!(&all[filled..], b"after");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_dropped_wait_runs_nothing_and_the_next_read_gets_the_data() {
    run(|| async {
        let (reader, mut writer) = pipe(false);
        let reader = AsyncFd::new(reader)?;
        let mut calls = 0;
        {
            let mut buf = [0u8; 16];
            let mut read = pin!(reader.read_with(|mut file| {
                calls += 1;
                file.read(&mut buf)
            }));
            assert!(poll_once(read.as_mut()).await.is_pending());
        }
        assert_eq!(calls, 1, "one try, then the wait, dropped");
        writer.write_all(b"kept")?;
        let mut buf = [0u8; 16];
        let n = reader.read_with(read_into(&mut buf)).await?;
        assert_eq!(&buf[..n], b"kept");
        // A second reader while one waits: refused, as on a socket.
        let mut held = [0u8; 4];
        let mut first = pin!(reader.read_with(read_into(&mut held)));
        assert!(poll_once(first.as_mut()).await.is_pending());
        let mut other = [0u8; 4];
        let error = reader.read_with(read_into(&mut other)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ResourceBusy, "{error}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn the_futures_io_traits_move_every_byte_through_a_full_pipe_on_one_worker() {
    use futures_util::{AsyncReadExt, AsyncWriteExt};
    run_with(Builder::new().workers(1), || async {
        let (reader, writer) = pipe(false);
        let (mut reader, mut writer) = (AsyncFd::new(reader)?, AsyncFd::new(writer)?);
        let len = 512 * 1024;
        // Writer and reader on one worker: each parks through the poll
        // methods until the other makes room or data.
        let write = cellio_runtime::spawn(async move {
            let data: Vec<u8> = (0..len).map(pattern).collect();
            for chunk in data.chunks(3000) {
                writer.write_all(chunk).await?;
            }
            writer.close().await // flushes; the descriptor closes on drop
        });
        let mut got = vec![0u8; len];
        reader.read_exact(&mut got).await?;
        write.await.unwrap()?;
        for (i, &byte) in got.iter().enumerate() {
            assert_eq!(byte, pattern(i), "byte {i}");
        }
        // The writer is gone: end of file.
        assert_eq!(reader.read(&mut [0u8; 8]).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_read_left_pending_by_a_poll_holds_the_cell_until_a_poll_completes_it() {
    run(|| async {
        let (reader, mut writer) = pipe(false);
        let mut reader = AsyncFd::new(reader)?;
        let mut buf = [0u8; 16];
        let polled = std::future::poll_fn(|cx| {
            Poll::Ready(reader.poll_read_with(cx, |mut file| file.read(&mut buf)))
        })
        .await;
        assert!(polled.is_pending(), "nothing written yet");
        // The pending poll holds the receive cell.
        let mut other = [0u8; 16];
        let error = reader.read_with(read_into(&mut other)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ResourceBusy, "{error}");
        // Data comes; the next poll completes the read and frees the cell.
        writer.write_all(b"polled")?;
        let n =
            std::future::poll_fn(|cx| reader.poll_read_with(cx, |mut file| file.read(&mut buf)))
                .await?;
        assert_eq!(&buf[..n], b"polled");
        writer.write_all(b"then")?;
        let n = reader.read_with(read_into(&mut other)).await?;
        assert_eq!(&other[..n], b"then");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn into_inner_hands_back_an_open_descriptor_that_can_be_registered_again() {
    run(|| async {
        let (reader, mut writer) = pipe(false);
        let reader = AsyncFd::new(reader)?.into_inner();
        let again = AsyncFd::new(reader)?;
        writer.write_all(b"again")?;
        let mut buf = [0u8; 16];
        let n = again.read_with(read_into(&mut buf)).await?;
        assert_eq!(&buf[..n], b"again");
        let owned: OwnedFd = again.into_inner().into();
        drop(owned);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn misuse_is_a_clear_error() {
    run(|| async {
        let (blocking, _writer) = pipe(true);
        let error = AsyncFd::new(blocking).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("non-blocking"), "{error}");

        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblocking()
            .open("/proc/self/status")?;
        let error = AsyncFd::new(file).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
        assert!(error.to_string().contains("spawn_blocking"), "{error}");
        // A device that cannot be polled: the message names such devices
        // too. (It used to name only regular files and directories; found
        // by a review.)
        let null = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblocking()
            .open("/dev/null")?;
        let error = AsyncFd::new(null).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
        assert!(error.to_string().contains("/dev/null"), "{error}");
        io::Result::Ok(())
    })
    .unwrap();
    let (reader, _writer) = pipe(false);
    let error = AsyncFd::new(reader).unwrap_err();
    assert!(error.to_string().contains("no cellio reactor"), "{error}");
}

/// `O_NONBLOCK` for `OpenOptions`.
trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

/// `readable` waits until there is something to read, and waits again once
/// it is read; a hang-up counts as readable (the read then sees the end).
#[test]
fn readable_waits_for_data_and_again_after_it_is_read() {
    run(|| async {
        let (reader, mut writer) = pipe(false);
        let reader = AsyncFd::new(reader)?;
        {
            let mut waiting = pin!(reader.readable());
            assert!(
                poll_once(waiting.as_mut()).await.is_pending(),
                "an empty pipe is not readable"
            );
            writer.write_all(b"one")?;
            waiting.await?;
        }
        let mut buf = [0u8; 8];
        assert_eq!(reader.get_ref().read(&mut buf)?, 3);
        // Drained: it waits again (the kernel is asked, no stale readiness).
        let mut again = pin!(reader.readable());
        assert!(
            poll_once(again.as_mut()).await.is_pending(),
            "readable after a drain"
        );
        drop(writer);
        again.await?;
        assert_eq!(reader.get_ref().read(&mut buf)?, 0, "the end of the pipe");
        io::Result::Ok(())
    })
    .unwrap();
}

/// `writable` waits until a full pipe has room again.
#[test]
fn writable_waits_for_room_in_a_full_pipe() {
    run(|| async {
        let (mut reader, writer) = pipe(false);
        let writer = AsyncFd::new(writer)?;
        writer.writable().await?; // an empty pipe has room
        let chunk = [7u8; 4096];
        while writer.get_ref().write(&chunk).is_ok() {}
        let mut waiting = pin!(writer.writable());
        assert!(
            poll_once(waiting.as_mut()).await.is_pending(),
            "a full pipe is not writable"
        );
        let mut drained = vec![0u8; 1 << 20];
        while reader.read(&mut drained).is_ok() {}
        waiting.await?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// Fills `writer`'s pipe until a write says `WouldBlock`.
fn fill(writer: &File) {
    let chunk = [0u8; 65536];
    loop {
        match (&mut &*writer).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A flush or close with nothing to flush, an empty write and an empty
/// read (`futures-io`) complete at once even after a wait in their
/// direction was given up (the cell then says drained) or a `poll_write`
/// was left pending (its state is kept): nothing to wait for. (They waited
/// for the reader to make room, or for data; found by a review.)
#[test]
fn flush_close_and_empty_operations_do_not_wait_after_a_wait_given_up() {
    use futures_util::io::{AsyncRead as _, AsyncWrite as _};
    use std::future::poll_fn;
    use std::pin::Pin;
    run(|| async {
        let (reader, writer) = pipe(false);
        let (mut reader, mut writer) = (AsyncFd::new(reader)?, AsyncFd::new(writer)?);
        fill(writer.get_ref());
        let chunk = [0u8; 65536];
        // A write that waits for room, given up.
        {
            let mut write = pin!(writer.write_with(|mut f| f.write(&chunk)));
            assert!(poll_once(write.as_mut()).await.is_pending());
        }
        let flushed = poll_once(pin!(poll_fn(|cx| Pin::new(&mut writer).poll_flush(cx)))).await;
        assert!(matches!(flushed, Poll::Ready(Ok(()))), "{flushed:?}");
        let empty = poll_once(pin!(
            poll_fn(|cx| Pin::new(&mut writer).poll_write(cx, &[]))
        ))
        .await;
        assert!(matches!(empty, Poll::Ready(Ok(0))), "{empty:?}");
        // A poll_write left pending, its state kept in the AsyncFd.
        let pending = poll_once(pin!(poll_fn(
            |cx| Pin::new(&mut writer).poll_write(cx, &chunk)
        )))
        .await;
        assert!(pending.is_pending());
        let empty = poll_once(pin!(
            poll_fn(|cx| Pin::new(&mut writer).poll_write(cx, &[]))
        ))
        .await;
        assert!(matches!(empty, Poll::Ready(Ok(0))), "{empty:?}");
        let closed = poll_once(pin!(poll_fn(|cx| Pin::new(&mut writer).poll_close(cx)))).await;
        assert!(matches!(closed, Poll::Ready(Ok(()))), "{closed:?}");
        // Reads: the pipe drained, a read that waits for data given up.
        let mut sink = vec![0u8; 1 << 20];
        while reader.get_ref().read(&mut sink).is_ok() {}
        {
            let mut buf = [0u8; 8];
            let mut read = pin!(reader.read_with(|mut f| f.read(&mut buf)));
            assert!(poll_once(read.as_mut()).await.is_pending());
        }
        let empty = poll_once(pin!(poll_fn(
            |cx| Pin::new(&mut reader).poll_read(cx, &mut [])
        )))
        .await;
        assert!(matches!(empty, Poll::Ready(Ok(0))), "{empty:?}");
        io::Result::Ok(())
    })
    .unwrap();
}
