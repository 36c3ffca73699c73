//! `cellio_runtime::fs::{read_dir, ReadDir, DirEntry}`: every entry comes
//! out once, with its type, metadata and inode; a batch of
//! `READ_DIR_BATCH` entries is read per hand-over to the blocking pool; a
//! dropped `next_entry` loses nothing; errors are errors, not panics.
//!
//! Not under Miri: its isolation has no file system.
#![cfg(not(miri))]

mod util;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::ErrorKind;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cellio_runtime::fs::{self, READ_DIR_BATCH};
use cellio_runtime::yield_now;
use util::{run, run_built, TempDir};

/// Files `f0000`.. `f{n-1}` (file `i` holds `i` bytes), directory `sub`,
/// and a symbolic link `link` to `f0000`.
fn populate(dir: &std::path::Path, files: usize) {
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:04}")), vec![b'x'; i]).unwrap();
    }
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.join("f0000"), dir.join("link")).unwrap();
}

/// `ReadDir` and `DirEntry` can be held across an `await` in a task that
/// may move (`spawn` needs `Send`), as tokio's can.
#[test]
fn read_dir_and_its_entries_are_send() {
    fn is_send<T: Send>() {}
    is_send::<fs::ReadDir>();
    is_send::<fs::DirEntry>();
}

#[test]
fn every_entry_comes_once_with_its_type_metadata_and_inode() {
    let dir = TempDir::new("read-dir-all");
    populate(&dir.0, 1000);
    let base = dir.0.clone();
    run(|| async move {
        let mut seen = BTreeMap::new();
        let mut entries = fs::read_dir(&base).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().into_string().unwrap();
            assert_eq!(entry.path(), base.join(&name));
            let file_type = entry.file_type().await?;
            let metadata = entry.metadata().await?;
            assert_eq!(metadata.file_type(), file_type, "{name}");
            let std_metadata = std::fs::symlink_metadata(entry.path())?;
            assert_eq!(
                entry.ino(),
                std::os::unix::fs::MetadataExt::ino(&std_metadata)
            );
            let kind = if file_type.is_symlink() {
                "link".to_string()
            } else if file_type.is_dir() {
                "dir".to_string()
            } else {
                format!("file of {}", metadata.len())
            };
            assert!(seen.insert(name.clone(), kind).is_none(), "{name} twice");
        }
        assert_eq!(seen.len(), 1002);
        for i in 0..1000 {
            assert_eq!(seen[&format!("f{i:04}")], format!("file of {i}"));
        }
        assert_eq!(seen["sub"], "dir");
        assert_eq!(seen["link"], "link");
        // Finished stays finished.
        assert!(entries.next_entry().await?.is_none());
        assert!(entries.next_entry().await?.is_none());
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_batch_is_read_per_hand_over_to_the_pool() {
    let dir = TempDir::new("read-dir-batch");
    populate(&dir.0, 3 * READ_DIR_BATCH);
    let base = dir.0.clone();
    run(|| async move {
        let mut entries = fs::read_dir(&base).await?;
        let mut cx = Context::from_waker(Waker::noop());
        let mut count = 0;
        loop {
            // The first entry of a batch waits for the pool; the rest of
            // the batch is there at once.
            assert!(entries.next_entry().await?.is_some());
            count += 1;
            for _ in 1..READ_DIR_BATCH {
                match entries.poll_next_entry(&mut cx) {
                    Poll::Ready(Ok(Some(_))) => count += 1,
                    Poll::Ready(Ok(None)) => {
                        assert_eq!(count, 3 * READ_DIR_BATCH + 2);
                        return Ok::<_, std::io::Error>(());
                    }
                    other => panic!("entry {count}: not read with its batch: {other:?}"),
                }
            }
        }
    })
    .unwrap();
}

/// Every batch's read is held up (the runtime's only blocking thread is
/// kept busy by a job the test releases), so each `next_entry` that starts
/// a batch is certainly dropped mid-read, on any number of CPUs (left to
/// the scheduler, a blocking thread that ran first filled the batch before
/// the poll looked, 17 runs in 20 on one CPU; found by a review).
#[test]
fn a_next_entry_dropped_while_its_batch_is_read_loses_nothing() {
    let dir = TempDir::new("read-dir-dropped");
    populate(&dir.0, 100);
    let base = dir.0.clone();
    let builder = cellio_runtime::Builder::new().max_blocking_threads(1);
    run_built(builder, || async move {
        let mut entries = fs::read_dir(&base).await?;
        let mut names = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut dropped = 0;
        let mut held_at = None;
        loop {
            // The queue is empty at each multiple of the batch size: this
            // call starts a batch's job. Hold the only blocking thread
            // first, so that the job waits behind the holder (the pool
            // runs its jobs in order) and the entry cannot come at once.
            let start = names.len() % READ_DIR_BATCH == 0 && held_at != Some(names.len());
            let held = (start && names.len() < 102).then(|| {
                held_at = Some(names.len());
                let (release, wait) = std::sync::mpsc::channel::<()>();
                let holder = cellio_runtime::spawn_blocking(move || wait.recv());
                (release, holder)
            });
            if let Some((release, holder)) = held {
                for _ in 0..3 {
                    let poll = pin!(entries.next_entry()).poll(&mut cx);
                    assert!(
                        poll.is_pending(),
                        "entry {}: not held up by the busy pool: {poll:?}",
                        names.len()
                    );
                    dropped += 1;
                }
                release.send(()).unwrap();
                holder.await.unwrap().unwrap();
            }
            // Poll once: an entry already queued comes at once; otherwise
            // the batch is still being read, and the future is dropped
            // (again and again until the batch is there).
            match pin!(entries.next_entry()).poll(&mut cx) {
                Poll::Ready(Ok(Some(entry))) => names.push(entry.file_name()),
                Poll::Ready(Ok(None)) => break,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => yield_now().await,
            }
        }
        // 102 entries: 4 batches, each dropped 3 times mid-read.
        assert_eq!(dropped, 4 * 3);
        assert_eq!(names.len(), 102);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 102, "no entry twice");
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_missing_directory_or_a_file_is_an_error_and_an_empty_one_ends_at_once() {
    let dir = TempDir::new("read-dir-errors");
    std::fs::write(dir.0.join("plain"), "x").unwrap();
    let base = dir.0.clone();
    run(|| async move {
        let missing = fs::read_dir(base.join("missing")).await.unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let file = fs::read_dir(base.join("plain")).await.unwrap_err();
        assert_eq!(file.kind(), ErrorKind::NotADirectory);
        std::fs::create_dir(base.join("empty"))?;
        let mut empty = fs::read_dir(base.join("empty")).await?;
        assert!(empty.next_entry().await?.is_none());
        assert!(empty.next_entry().await?.is_none());
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_queued_entries_come_and_then_an_error() {
    let dir = TempDir::new("read-dir-outside");
    populate(&dir.0, 2 * READ_DIR_BATCH);
    let base = dir.0.clone();
    let mut entries = run(|| async move {
        let mut entries = fs::read_dir(&base).await?;
        entries.next_entry().await?.unwrap();
        Ok::<_, std::io::Error>(entries)
    })
    .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 1..READ_DIR_BATCH {
        assert!(matches!(
            entries.poll_next_entry(&mut cx),
            Poll::Ready(Ok(Some(_)))
        ));
    }
    match entries.poll_next_entry(&mut cx) {
        Poll::Ready(Err(error)) => {
            assert!(
                error.to_string().contains("outside a cellio runtime"),
                "{error}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
