//! A task block whose `JoinHandle` outlived its runtime, dropped 256
//! runtimes later. Its own test binary: the test needs runtime `i` and
//! runtime `i - 256` to get the same worker number and 8-bit epoch, which
//! other tests building runtimes in parallel would take in between (in a
//! shared binary it caught the bug 1 run in 20).

mod util;

use cellio_runtime::{spawn, Builder, JoinHandle};
use util::{with_timeout, LIMIT};

/// A `JoinHandle` that outlives its runtime and is dropped 256 runtimes
/// later (when a new worker has its worker number and 8-bit epoch, which
/// a block's header names its home by) frees its block instead of
/// pooling it in that unrelated worker: no pool holds more blocks than it
/// allocated. (The block was pooled there, the counts went wrong, and the
/// runtime's drop panicked in debug builds with "a pooled block that was
/// never counted"; found by a review.)
#[test]
#[cfg_attr(miri, ignore = "300 runtimes: too slow under Miri")]
fn a_join_handle_dropped_256_runtimes_later_frees_its_block_elsewhere() {
    with_timeout(LIMIT * 6, || {
        let mut kept: Vec<Option<JoinHandle<u64>>> = Vec::new();
        for i in 0..300usize {
            let rt = Builder::new().workers(1).build().unwrap();
            let handle = rt.block_on(async {
                // Warm this runtime's pool with one block of the class.
                assert_eq!(spawn(async { 1u64 }).await.unwrap(), 1);
                if i >= 256 {
                    // 256 runtimes ago: the same worker number and epoch.
                    drop(kept[i - 256].take());
                }
                let handle = spawn(async { 2u64 });
                if i < 256 {
                    return Some(handle); // kept past this runtime's life
                }
                assert_eq!(handle.await.unwrap(), 2);
                None
            });
            kept.push(handle);
            let (_, allocated, pooled) = rt.task_pool_stats();
            assert!(
                pooled as u64 <= allocated,
                "runtime {i}: the pool holds {pooled} blocks, allocated {allocated}"
            );
            drop(rt);
        }
    });
}
