//! A counting `#[global_allocator]` for the zero-allocation tests.
//!
//! It sees every allocation of every thread in the process but one, so
//! each test file that includes it holds a single test: nothing else may
//! run while it counts. The one it leaves out is the process's main
//! thread, which is libtest's own (tests run on threads it spawns): when it
//! starts a test it fills a timeout queue and more (148, 608, 48 and 96
//! bytes), and on a loaded machine that bookkeeping came late enough to
//! land in a test's counting window (3–5 runs in 40 of
//! `zero_alloc_runtime_start` and `zero_alloc_tcp_io` with both cores
//! busy). A test run on the main thread would count nothing, which
//! [`assert_counter_works`] reports. The sizes of the first allocations counted are kept (in a fixed
//! static array: the allocator must not allocate) so that a failure can say
//! what was allocated.
//!
//! Include it with `#[path = "util/counting_alloc.rs"] mod counting_alloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Checks that the counter sees allocations at all (one `Box` is one
/// allocation), so that a later count of zero means something.
pub fn assert_counter_works() {
    start_counting();
    drop(std::hint::black_box(Box::new(7u64)));
    assert_eq!(
        stop_counting(),
        1,
        "the counting allocator must see allocations"
    );
}

/// Sizes of the first allocations counted (0: none recorded).
static SIZES: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];

/// `true` on the process's main thread (its thread id is the process id).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn on_main_thread() -> bool {
    // SAFETY: two system calls without arguments or memory.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t == libc::getpid() }
}

/// `true` on the process's main thread (the BSDs and macOS ask libc).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn on_main_thread() -> bool {
    // SAFETY: a libc call without arguments that reads no caller memory.
    unsafe { libc::pthread_main_np() == 1 }
}

fn record(layout: &Layout) {
    if COUNTING.load(Ordering::Relaxed) && !on_main_thread() {
        let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed) as usize;
        if let Some(slot) = SIZES.get(n) {
            slot.store(layout.size(), Ordering::Relaxed);
        }
    }
}

// SAFETY: delegates every call to the system allocator unchanged; counting
// touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(&layout);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(&layout);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(&Layout::from_size_align(new_size, layout.align()).unwrap_or(layout));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Starts counting from zero.
pub fn start_counting() {
    for slot in &SIZES {
        slot.store(0, Ordering::SeqCst);
    }
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
}

/// Stops counting; returns the allocations counted.
pub fn stop_counting() -> u64 {
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// Sizes of the first allocations counted since `start_counting`.
#[allow(dead_code)] // not every test prints them
pub fn recorded_sizes() -> Vec<usize> {
    SIZES
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .take_while(|&n| n != 0)
        .collect()
}
