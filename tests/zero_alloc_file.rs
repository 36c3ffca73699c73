//! Once warm, `fs::File` allocates nothing per operation: its buffer
//! travels to each blocking job and back, the job's block comes from the
//! worker's pool (and returns through its inbox), and the file's `Arc` is
//! only cloned. (tokio's `fs::File` spawns a task per operation: the same
//! rounds cost it 4 allocations each, docs/design.md, "Files".)
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::io::SeekFrom;

use cellio::fs::File;
use cellio::{Builder, Runtime};
use futures_util::future::join;

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// `n` rounds of: write 4 KiB, flush, seek back, read it again, check it.
async fn rounds(runtime: &Runtime, file: &mut File, n: usize) {
    let mut out = [0u8; 4096];
    let mut back = [0u8; 4096];
    for i in 0..n {
        out.fill(i as u8);
        file.seek(SeekFrom::Start(0)).await.unwrap();
        file.write_all(&out).await.unwrap();
        file.flush().await.unwrap();
        file.seek(SeekFrom::Start(0)).await.unwrap();
        let mut got = 0;
        while got < back.len() {
            let n = file.read(&mut back[got..]).await.unwrap();
            assert_ne!(n, 0, "round {i}: the end of the file after {got} bytes");
            got += n;
        }
        assert_eq!(back, out, "round {i}");
        blocks_home(runtime).await;
    }
}

/// Each of `rounds`' operations on two files at once, so that the pool
/// holds two blocks of each job's class and the count does not depend on
/// the pool thread's timing.
async fn two_at_once(a: &mut File, b: &mut File) {
    let out = [7u8; 4096];
    let (mut back_a, mut back_b) = ([0u8; 4096], [0u8; 4096]);
    let both = |(a, b): (std::io::Result<u64>, std::io::Result<u64>)| (a.unwrap(), b.unwrap());
    let done = |(a, b): (std::io::Result<()>, std::io::Result<()>)| a.and(b).unwrap();
    assert_eq!(
        both(join(a.seek(SeekFrom::Start(0)), b.seek(SeekFrom::Start(0))).await),
        (0, 0)
    );
    done(join(a.write_all(&out), b.write_all(&out)).await);
    done(join(a.flush(), b.flush()).await);
    assert_eq!(
        both(join(a.seek(SeekFrom::Start(0)), b.seek(SeekFrom::Start(0))).await),
        (0, 0)
    );
    let (a, b) = join(a.read(&mut back_a), b.read(&mut back_b)).await;
    assert!(a.unwrap() > 0 && b.unwrap() > 0);
}

/// A file to read and write, created empty.
async fn open(path: &std::path::Path) -> File {
    cellio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .await
        .unwrap()
}

#[test]
fn file_operations_allocate_nothing_after_warm_up() {
    assert_counter_works();
    let path = std::env::temp_dir().join(format!("cellio-zero-alloc-file-{}", std::process::id()));
    let other_path = path.with_extension("other");
    // One pool thread: a chain of jobs then has at most two blocks in
    // flight (the last job's, which its thread may still hold after the
    // result is out, and the next one's).
    let runtime = Builder::new()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut file = open(&path).await;
        let mut other = open(&other_path).await;
        two_at_once(&mut file, &mut other).await;
        drop(other);
        rounds(&runtime, &mut file, 20).await;
        start_counting();
        rounds(&runtime, &mut file, 200).await;
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "200 rounds of write, flush, seek and read allocated (sizes {:?})",
            recorded_sizes()
        );
    });
    std::fs::remove_file(&other_path).unwrap();
    std::fs::remove_file(&path).unwrap();
}
