//! Pooled task storage: per-worker free lists of memory blocks by size class.
//!
//! A spawned task lives in one block (header, future, output). When the
//! task and its `JoinHandle` are both done, the block returns to the free
//! list of its class on the worker that owns it, and the next `spawn` of a
//! task of that class reuses it: a connection's task costs no allocation in
//! steady state. This is the Rust counterpart of .NET 5's pooled
//! async-method boxes (seed 002), and the same caveat applies: a pool is a
//! custom allocator, so it is capped, can be trimmed, and can be turned off
//! (`Builder::task_pooling(false)`) to measure it against the system
//! allocator.
//!
//! # Invariants
//!
//! * Classes are powers of two from 64 B to 64 KiB, aligned to 64 bytes.
//!   Tasks larger than that, or aligned more strictly, bypass the pool.
//! * A block is allocated and freed with its class layout, whether it comes
//!   from the pool or the system allocator, so a block may always be handed
//!   back to the system allocator (that is what a block does whose home
//!   worker is gone).
//! * A block returns to the pool it was taken from, on that worker's
//!   thread: directly when its last reference goes there, else through the
//!   worker's inbox (`Inbox::return_block`), which the worker empties into
//!   the pool on each loop turn and before it takes a block. A task sent to another worker
//!   (`spawn_on`) takes its block from the sender's pool, so a server that
//!   hands connections from one worker to others reuses blocks too.
//! * At most `cap` blocks per class are kept; the rest are freed.
//! * A class's free list has room for every block of the class that could
//!   come back to it (up to `cap`), reserved when a fresh block is
//!   allocated: `give_back` never allocates, even the first time every
//!   task of a peak ends at once.
//! * No class holds more free blocks than it counts (`blocks`): a block
//!   given back when all of them are free is another runtime's (its home
//!   named by an epoch that came round again) and is freed.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// Smallest class: 64 bytes (one cache line).
const MIN_SHIFT: u32 = 6;
/// Number of classes: 64 B .. 64 KiB.
pub(crate) const CLASSES: usize = 11;
/// Alignment of every pooled block.
const ALIGN: usize = 64;

/// Default cap on pooled blocks per size class and worker.
pub const DEFAULT_TASK_POOL_CAP: usize = 4096;

/// The size class a block of `layout` uses, if it is poolable.
pub(crate) fn class_of(layout: Layout) -> Option<u8> {
    if layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(1 << MIN_SHIFT).next_power_of_two();
    let class = size.trailing_zeros() - MIN_SHIFT;
    ((class as usize) < CLASSES).then_some(class as u8)
}

/// The layout every block of `class` is allocated with.
pub(crate) fn class_layout(class: u8) -> Layout {
    // SAFETY-free: a power of two size and alignment 64 always form a
    // valid layout.
    Layout::from_size_align(1 << (MIN_SHIFT + u32::from(class)), ALIGN)
        .expect("class layouts are valid")
}

/// One worker's free lists.
#[derive(Debug)]
pub(crate) struct Pool {
    enabled: bool,
    cap: usize,
    free: [Vec<NonNull<u8>>; CLASSES],
    /// Blocks of each class taken from here and not freed here: those
    /// that may come back. An upper bound: a block that comes back after
    /// this worker is gone is freed where it is.
    blocks: [usize; CLASSES],
    reused: u64,
    allocated: u64,
}

impl Pool {
    pub(crate) fn new(enabled: bool, cap: usize) -> Self {
        Self {
            enabled,
            cap,
            free: Default::default(),
            blocks: [0; CLASSES],
            reused: 0,
            allocated: 0,
        }
    }

    /// Whether blocks of `layout` go through this pool (else: the system
    /// allocator with the exact layout).
    pub(crate) fn class_for(&self, layout: Layout) -> Option<u8> {
        if self.enabled {
            class_of(layout)
        } else {
            None
        }
    }

    /// A block of `class`: reused if one is free, else fresh.
    pub(crate) fn take(&mut self, class: u8) -> NonNull<u8> {
        if let Some(block) = self.free[usize::from(class)].pop() {
            self.reused += 1;
            return block;
        }
        self.allocated += 1;
        self.count_block(class);
        alloc_layout(class_layout(class))
    }

    /// One more block of `class` may come back: room for it on the free
    /// list (up to the cap), amortised like any `Vec` growth.
    fn count_block(&mut self, class: u8) {
        let c = usize::from(class);
        self.blocks[c] += 1;
        let (list, need) = (&mut self.free[c], self.blocks[c].min(self.cap));
        if list.capacity() < need {
            list.reserve(need - list.len());
        }
    }

    /// Returns a block of `class` to the free list, or to the system
    /// allocator when the list is at its cap.
    ///
    /// # Safety
    ///
    /// `block` was allocated with `class_layout(class)`, holds no live value
    /// and is not used again by the caller.
    pub(crate) unsafe fn give_back(&mut self, class: u8, block: NonNull<u8>) {
        let c = usize::from(class);
        let list = &mut self.free[c];
        // With every block counted here already pooled, this one is not
        // ours: a block of a dropped runtime's worker whose number and
        // 8-bit epoch this worker has now (a `JoinHandle` dropped 256
        // runtimes later; a block's header names its home by the epoch).
        // Freed, not pooled: the counts stay true and the list within the
        // room reserved for it.
        let ours = list.len() < self.blocks[c];
        if ours && list.len() < self.cap {
            list.push(block);
            return;
        }
        // SAFETY: the caller's contract: allocated with this layout.
        unsafe { dealloc(block.as_ptr(), class_layout(class)) };
        if ours {
            self.blocks[c] -= 1;
        }
    }

    /// Frees every pooled block; returns how many.
    pub(crate) fn trim(&mut self) -> usize {
        let mut freed = 0;
        for (class, list) in self.free.iter_mut().enumerate() {
            let blocks = &mut self.blocks[class];
            for block in list.drain(..) {
                // SAFETY: every pooled block was allocated with its class
                // layout (module invariant) and is unused while pooled.
                unsafe { dealloc(block.as_ptr(), class_layout(class as u8)) };
                freed += 1;
                debug_assert!(*blocks > 0, "a pooled block that was never counted");
                *blocks = blocks.saturating_sub(1);
            }
            // Keep room for the blocks still out (see the invariants).
            list.shrink_to((*blocks).min(self.cap));
        }
        freed
    }

    /// Blocks currently pooled (free), over all classes.
    pub(crate) fn pooled(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
    }

    /// Blocks taken from here and not freed here, over all classes: how
    /// many could come back at once (through the inbox, too).
    pub(crate) fn outstanding(&self) -> usize {
        self.blocks.iter().sum()
    }

    /// `(reused, freshly allocated)` blocks handed out so far; the fresh
    /// ones include those allocated for this worker outside the pool
    /// ([`count_unpooled`](Self::count_unpooled)).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.reused, self.allocated)
    }

    /// Counts a block allocated for this worker from the system allocator
    /// rather than the pool (pooling off, or a task too big or too
    /// strictly aligned for any class): fresh at every spawn.
    pub(crate) fn count_unpooled(&mut self) {
        self.allocated += 1;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.trim();
    }
}

/// Allocates `layout` (non-zero size) or aborts like `Box` does.
pub(crate) fn alloc_layout(layout: Layout) -> NonNull<u8> {
    // SAFETY: every layout used for tasks has a non-zero size (it holds at
    // least the task header).
    let ptr = unsafe { alloc(layout) };
    NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_of(Layout::from_size_align(1, 1).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(64, 8).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(65, 8).unwrap()), Some(1));
        assert_eq!(
            class_of(Layout::from_size_align(65536, 8).unwrap()),
            Some(10)
        );
        assert_eq!(class_of(Layout::from_size_align(65537, 8).unwrap()), None);
        assert_eq!(class_of(Layout::from_size_align(64, 128).unwrap()), None);
        assert_eq!(class_layout(3).size(), 512);
    }

    #[test]
    fn blocks_are_reused_and_the_cap_holds() {
        let mut pool = Pool::new(true, 1);
        let a = pool.take(2);
        let b = pool.take(2);
        // SAFETY: both came from `take(2)` and are unused.
        unsafe {
            pool.give_back(2, a);
            pool.give_back(2, b); // over the cap: freed
        }
        assert_eq!(pool.pooled(), 1);
        assert_eq!(pool.take(2), a);
        assert_eq!(pool.counts(), (1, 2));
        // SAFETY: from `take(2)`.
        unsafe { pool.give_back(2, a) };
        assert_eq!(pool.trim(), 1);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn give_back_never_grows_a_free_list() {
        let mut pool = Pool::new(true, 64);
        let blocks: Vec<_> = (0..100).map(|_| pool.take(1)).collect();
        let capacity = pool.free[1].capacity();
        assert!(capacity >= 64, "room for a capped list: {capacity}");
        for block in blocks {
            // SAFETY: from `take(1)`, unused.
            unsafe { pool.give_back(1, block) };
        }
        assert_eq!(pool.pooled(), 64);
        assert_eq!(pool.free[1].capacity(), capacity);
        // Trimming keeps room for the block still out.
        let out = pool.take(1);
        assert_eq!(pool.trim(), 63);
        assert!(pool.free[1].capacity() >= 1);
        // SAFETY: from `take(1)`, unused.
        unsafe { pool.give_back(1, out) };
        assert_eq!(pool.trim(), 1);
    }

    /// A random model: own blocks taken and given back in any order,
    /// strangers (same class, allocated elsewhere: another runtime's, see
    /// `give_back`) given back at any time, trims in between. `give_back` never grows a list, a list never
    /// holds more than its class counts, and under Miri every block is
    /// freed exactly once (no leak, no double free).
    #[test]
    fn random_takes_give_backs_and_strangers_keep_the_counts() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let rounds = if cfg!(miri) { 20 } else { 2000 };
        for round in 0..rounds {
            let cap = (next() % 5) as usize;
            let mut pool = Pool::new(true, cap);
            let mut out: Vec<NonNull<u8>> = Vec::new();
            for _ in 0..(if cfg!(miri) { 40 } else { 200 }) {
                let c = 1usize;
                match next() % 6 {
                    0 | 1 => out.push(pool.take(1)),
                    2 | 3 if !out.is_empty() => {
                        let i = (next() as usize) % out.len();
                        let block = out.swap_remove(i);
                        let capacity = pool.free[c].capacity();
                        // SAFETY: from `take(1)`, unused.
                        unsafe { pool.give_back(1, block) };
                        assert_eq!(pool.free[c].capacity(), capacity, "round {round}: grew");
                    }
                    4 => {
                        let stranger = alloc_layout(class_layout(1));
                        let capacity = pool.free[c].capacity();
                        // SAFETY: allocated with the class layout, unused.
                        unsafe { pool.give_back(1, stranger) };
                        assert_eq!(pool.free[c].capacity(), capacity, "round {round}: grew");
                    }
                    5 if next() % 4 == 0 => {
                        pool.trim();
                    }
                    _ => {}
                }
                assert!(pool.free[c].len() <= pool.blocks[c], "round {round}");
                assert!(pool.free[c].len() <= cap, "round {round}");
                assert!(
                    pool.free[c].capacity() >= pool.blocks[c].min(cap),
                    "round {round}: room {} for {} counted",
                    pool.free[c].capacity(),
                    pool.blocks[c]
                );
                assert!(pool.pooled() as u64 <= pool.counts().1);
            }
            // Half the time the remaining blocks come back before the
            // pool goes, half the time after (the worker is gone).
            if next() % 2 == 0 {
                for block in out.drain(..) {
                    // SAFETY: from `take(1)`, unused.
                    unsafe { pool.give_back(1, block) };
                }
                drop(pool);
            } else {
                drop(pool);
                for block in out.drain(..) {
                    // SAFETY: allocated with the class layout, unused.
                    unsafe { dealloc(block.as_ptr(), class_layout(1)) };
                }
            }
        }
    }
}
