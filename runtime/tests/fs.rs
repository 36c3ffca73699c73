//! `cellio_runtime::fs`: `std::fs`'s calls on the blocking pool. Each
//! gives what `std::fs` gives (results and errors alike), the worker runs
//! other tasks while a call blocks, and outside a runtime they fail with an
//! error instead of panicking.
//!
//! Not under Miri: its isolation has no file system (the code here is
//! `spawn_blocking`'s, which `spawn_blocking.rs` runs under Miri).
#![cfg(not(miri))]

mod util;

use std::future::Future;
use std::io::ErrorKind;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cellio_runtime::{fs, spawn, yield_now};
use util::{run, TempDir};

#[test]
fn files_are_written_read_copied_renamed_and_removed() {
    let dir = TempDir::new("files");
    let base = dir.0.clone();
    run(|| async move {
        let a = base.join("a.txt");
        fs::write(&a, b"first line\n").await?;
        assert_eq!(fs::read(&a).await?, b"first line\n");
        assert_eq!(fs::read_to_string(&a).await?, "first line\n");
        assert_eq!(fs::metadata(&a).await?.len(), 11);
        assert!(fs::try_exists(&a).await?);

        let b = base.join("b.txt");
        assert_eq!(fs::copy(&a, &b).await?, 11);
        let c = base.join("c.txt");
        fs::rename(&b, &c).await?;
        assert!(!fs::try_exists(&b).await?);
        assert_eq!(fs::read(&c).await?, b"first line\n");

        let link = base.join("hard");
        fs::hard_link(&a, &link).await?;
        fs::write(&a, "changed").await?;
        assert_eq!(fs::read_to_string(&link).await?, "changed");

        let mut names = Vec::new();
        let mut entries = fs::read_dir(&base).await?;
        while let Some(entry) = entries.next_entry().await? {
            names.push(entry.file_name().into_string().unwrap());
        }
        names.sort();
        assert_eq!(names, ["a.txt", "c.txt", "hard"]);

        fs::remove_file(&c).await?;
        assert_eq!(fs::read(&c).await.unwrap_err().kind(), ErrorKind::NotFound);
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn directories_links_and_permissions() {
    let dir = TempDir::new("dirs");
    let base = dir.0.clone();
    run(|| async move {
        let deep = base.join("x").join("y");
        assert_eq!(
            fs::create_dir(&deep).await.unwrap_err().kind(),
            ErrorKind::NotFound,
            "create_dir needs the parent"
        );
        fs::create_dir_all(&deep).await?;
        assert!(fs::metadata(&deep).await?.is_dir());
        fs::create_dir(base.join("empty")).await?;
        fs::remove_dir(base.join("empty")).await?;
        fs::write(deep.join("f"), "z").await?;
        assert!(fs::remove_dir(base.join("x")).await.is_err(), "not empty");

        let target = deep.join("f");
        let symlink = base.join("link");
        fs::symlink(&target, &symlink).await?;
        assert_eq!(fs::read_link(&symlink).await?, target);
        assert!(fs::symlink_metadata(&symlink).await?.is_symlink());
        assert!(fs::metadata(&symlink).await?.is_file());
        assert_eq!(
            fs::canonicalize(base.join("x/y/../y/f")).await?,
            std::fs::canonicalize(&target)?
        );

        let mut permissions = fs::metadata(&target).await?.permissions();
        permissions.set_readonly(true);
        fs::set_permissions(&target, permissions).await?;
        assert!(fs::metadata(&target).await?.permissions().readonly());

        fs::remove_dir_all(base.join("x")).await?;
        assert!(!fs::try_exists(base.join("x")).await?);
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn errors_are_std_fs_errors() {
    let dir = TempDir::new("errors");
    let base = dir.0.clone();
    run(|| async move {
        let missing = base.join("missing");
        assert_eq!(
            fs::read(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::metadata(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let binary = base.join("binary");
        fs::write(&binary, [0xff, 0xfe, 0x00]).await.unwrap();
        assert_eq!(
            fs::read_to_string(&binary).await.unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    });
}

/// A read of a FIFO blocks its thread until a writer comes: the worker
/// (the runtime's only one) meanwhile runs the task that writes.
#[test]
fn the_worker_runs_on_while_a_call_blocks() {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let read = run(|| async move {
        let reader = spawn(fs::read(fifo.clone()));
        // Other tasks run while the read waits for a writer.
        for _ in 0..10 {
            yield_now().await;
        }
        assert!(!reader.is_finished());
        fs::write(&fifo, "through the pipe").await.unwrap();
        reader.await.unwrap().unwrap()
    });
    assert_eq!(read, b"through the pipe");
}

#[test]
fn outside_a_runtime_a_call_is_an_error_not_a_panic() {
    let mut read = pin!(fs::read("Cargo.toml"));
    let mut cx = Context::from_waker(Waker::noop());
    match read.as_mut().poll(&mut cx) {
        Poll::Ready(Err(error)) => {
            assert_eq!(error.kind(), ErrorKind::Other);
            assert!(
                error.to_string().contains("outside a cellio runtime"),
                "{error}"
            );
        }
        other => panic!("expected an error at once, got {other:?}"),
    }
}
