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

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, count_while_the_pool_stays, recorded_sizes};

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

#[test]
fn file_operations_allocate_nothing_after_warm_up() {
    assert_counter_works();
    let path = std::env::temp_dir().join(format!("cellio-zero-alloc-file-{}", std::process::id()));
    let runtime = Builder::new().workers(1).build().unwrap();
    runtime.block_on(async {
        let mut file = cellio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .unwrap();
        rounds(&runtime, &mut file, 20).await;
        // Taken again if the blocking pool started a thread meanwhile.
        let allocations =
            count_while_the_pool_stays!(runtime, rounds(&runtime, &mut file, 200).await);
        assert_eq!(
            allocations,
            0,
            "200 rounds of write, flush, seek and read allocated (sizes {:?})",
            recorded_sizes()
        );
    });
    std::fs::remove_file(&path).unwrap();
}
