//! Waiting for task blocks to come home, for the allocation tests whose
//! tasks end on other threads (`spawn_on`, the blocking pool, a `JoinSet`
//! with members on worker 1). Included by path (`#[path]`), like
//! `counting_alloc.rs`.

use cellio::{yield_now, Runtime};

/// Waits until every block worker 0's pool handed out is back in it. A
/// task's block is freed where its last reference goes, which may be on
/// another thread after the task's handle saw it end, and then travels
/// home through worker 0's inbox. Waiting keeps the number of blocks in
/// flight (and of fresh allocations) from depending on the threads'
/// timing.
pub async fn blocks_home(runtime: &Runtime) {
    loop {
        let (_, allocated, pooled) = runtime.task_pool_stats();
        if pooled as u64 == allocated {
            return;
        }
        yield_now().await;
    }
}
