//! The worker's local run queue: a growable ring of `(slot, ticket)`
//! entries, first in, first out.
//!
//! A ring rather than a `VecDeque` because the worker pushes and pops once
//! per woken task: with a power-of-two capacity and free-running counters,
//! each is a compare, a masked index and an increment.
//!
//! The queue is 24 bytes (the buffer's pointer and length, two `u32`
//! counters) and all of it is touched by every push and pop: it sits in the
//! executor's hot cache line (see `worker`), and the mask is the buffer's
//! length minus one rather than a field of its own.
//!
//! # Invariants
//!
//! * `buf.len()` is a power of two, at most [`MAX_CAPACITY`] (so it divides
//!   2^32 and the `u32` counters may wrap).
//! * `head` and `tail` count pops and pushes (wrapping); the queue holds
//!   `tail - head <= buf.len()` entries, at positions `head & mask`,
//!   `(head + 1) & mask`, … in order, where `mask == buf.len() - 1`.

/// A queued task: its slot and the ticket it was queued with.
pub(crate) type Entry = (u32, u32);

/// Largest ring: 2^31 entries, far more than a worker's tasks can queue
/// (each task is queued at most once; see the table's invariants).
const MAX_CAPACITY: usize = 1 << 31;

#[repr(C)]
pub(crate) struct RunQueue {
    buf: Box<[Entry]>,
    head: u32,
    tail: u32,
}

impl RunQueue {
    /// An empty queue with room for at least `capacity` entries before it
    /// grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let len = capacity.clamp(1, MAX_CAPACITY).next_power_of_two();
        Self {
            buf: vec![(0, 0); len].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    /// The ring position of counter value `count`.
    #[inline(always)]
    fn index(&self, count: u32) -> usize {
        count as usize & (self.buf.len() - 1)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Entries queued (some may be stale: see the table's invariants).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tail.wrapping_sub(self.head) as usize
    }

    #[inline]
    pub(crate) fn push(&mut self, entry: Entry) {
        if self.tail.wrapping_sub(self.head) as usize == self.buf.len() {
            // The whole push out of line: nothing stays live across the
            // call, so the inlined fast path needs no saved registers.
            self.grow_and_push(entry);
            return;
        }
        let index = self.index(self.tail);
        // SAFETY: `buf.len()` is a power of two (invariant), so `index`,
        // masked with `buf.len() - 1`, is in bounds.
        unsafe { *self.buf.get_unchecked_mut(index) = entry };
        self.tail = self.tail.wrapping_add(1);
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Entry> {
        if self.head == self.tail {
            return None;
        }
        let index = self.index(self.head);
        // SAFETY: `buf.len()` is a power of two (invariant), so `index`,
        // masked with `buf.len() - 1`, is in bounds.
        let entry = unsafe { *self.buf.get_unchecked(index) };
        self.head = self.head.wrapping_add(1);
        Some(entry)
    }

    #[cold]
    #[inline(never)]
    fn grow_and_push(&mut self, entry: Entry) {
        self.grow();
        self.push(entry);
    }

    /// Doubles the capacity, keeping the entries in order.
    fn grow(&mut self) {
        let len = self.buf.len() * 2;
        assert!(len <= MAX_CAPACITY, "cellio: run queue overflow");
        let mut buf = Vec::with_capacity(len);
        while let Some(entry) = self.pop() {
            buf.push(entry);
        }
        let count = buf.len();
        buf.resize(len, (0, 0));
        self.buf = buf.into_boxed_slice();
        self.head = 0;
        self.tail = count as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_across_wraps_and_growth() {
        let mut queue = RunQueue::with_capacity(3);
        assert_eq!(queue.buf.len(), 4);
        let mut expected = std::collections::VecDeque::new();
        let mut next = 0u32;
        // Interleave pushes and pops so the ring wraps, and push more than
        // it holds so it grows while wrapped.
        for round in 0..50u32 {
            for _ in 0..(round % 7) {
                queue.push((next, !next));
                expected.push_back((next, !next));
                next += 1;
            }
            for _ in 0..(round % 5) {
                assert_eq!(queue.pop(), expected.pop_front());
            }
            assert_eq!(queue.is_empty(), expected.is_empty());
        }
        while let Some(entry) = expected.pop_front() {
            assert_eq!(queue.pop(), Some(entry));
        }
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn counters_may_wrap() {
        let mut queue = RunQueue::with_capacity(2);
        queue.head = u32::MAX - 1;
        queue.tail = u32::MAX - 1;
        for i in 0..5 {
            queue.push((i, i));
        }
        for i in 0..5 {
            assert_eq!(queue.pop(), Some((i, i)));
        }
        assert!(queue.is_empty());
    }
}
