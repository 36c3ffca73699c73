//! [`RawSlice`]: a heap slice owned through a raw pointer, so that
//! pointers into it taken once stay valid for its whole life.
//!
//! A receive batch hands the kernel pointers into its buffers (each
//! datagram's bytes and sender storage, each header's `iovec`). Taken
//! anew from a `Box` before every `recvmmsg`, they cost a write per slot
//! per call, whether one datagram came or a hundred. Taken once and kept,
//! they would not be valid under Rust's aliasing rules if the memory were
//! a `Box`: moving the owner, or a `&mut` reborrow of the box, asserts
//! unique access to its contents and invalidates every pointer derived
//! before. Memory reached only through one raw pointer has no such
//! assertions: a pointer derived from it (by arithmetic, never through a
//! reference) stays valid until the slice is dropped, and the short-lived
//! references [`get`](RawSlice::get) and friends hand out end before the
//! next use of such a pointer (the borrow checker sees to it: they borrow
//! the `RawSlice`, and the kernel writes only during a call that borrows it
//! mutably).
//!
//! # Invariants
//!
//! * `ptr` and `len` come from `Box::into_raw` of a `Box<[T]>`, which
//!   `Drop` rebuilds and drops; nothing else frees it or moves its
//!   elements.
//! * Every pointer into the slice is derived from `ptr` by arithmetic, so
//!   all share its provenance (Miri checks the pattern: the tests below).

use std::ptr::NonNull;

/// An owned `[T]` reached through a raw pointer (see the module docs).
pub(super) struct RawSlice<T> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: a `RawSlice<T>` owns its elements as a `Box<[T]>` would, and
// hands them out only through `&self` (shared) and `&mut self` (unique)
// borrows, so it may cross threads when a box of them may.
unsafe impl<T: Send> Send for RawSlice<T> {}
// SAFETY: as above: `&RawSlice<T>` gives only `&T`.
unsafe impl<T: Sync> Sync for RawSlice<T> {}

impl<T> RawSlice<T> {
    /// Takes ownership of `elements`.
    pub(super) fn new(elements: Box<[T]>) -> Self {
        let len = elements.len();
        let ptr =
            NonNull::new(Box::into_raw(elements).cast::<T>()).expect("Box::into_raw is never null");
        Self { ptr, len }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Element `index`'s address, with the slice's provenance: valid until
    /// the slice drops, for reads and writes that no reference handed out
    /// by this slice overlaps.
    ///
    /// # Panics
    ///
    /// If `index > len` (`len` itself gives the end).
    #[inline]
    #[cfg_attr(
        not(all(
            any(target_os = "linux", target_os = "android"),
            not(cellio_portable_datagrams)
        )),
        allow(dead_code) // only `recvmmsg`'s headers keep pointers
    )]
    pub(super) fn ptr_at(&self, index: usize) -> *mut T {
        assert!(
            index <= self.len,
            "RawSlice index {index} past {}",
            self.len
        );
        // SAFETY: `index <= len`: in bounds of the allocation or one past
        // its end.
        unsafe { self.ptr.as_ptr().add(index) }
    }

    /// Elements `start..end`.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds or reversed.
    #[inline]
    pub(super) fn slice(&self, start: usize, end: usize) -> &[T] {
        assert!(
            start <= end && end <= self.len,
            "RawSlice range {start}..{end} out of 0..{}",
            self.len
        );
        // In bounds (checked), initialised (a box's elements), and `&self`
        // keeps out every `&mut` this slice hands out; the pointers given to
        // the kernel are used only in calls holding `&mut` on its owner.
        // SAFETY: so the shared slice is valid while `&self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) }
    }

    /// Element `index`.
    #[inline]
    pub(super) fn get(&self, index: usize) -> &T {
        &self.slice(index, index + 1)[0]
    }

    /// Elements `start..end`, mutably.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds or reversed.
    #[inline]
    pub(super) fn slice_mut(&mut self, start: usize, end: usize) -> &mut [T] {
        assert!(
            start <= end && end <= self.len,
            "RawSlice range {start}..{end} out of 0..{}",
            self.len
        );
        // SAFETY: in bounds (checked), initialised, and `&mut self` makes
        // this the only reference into the slice while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), end - start) }
    }
}

impl<T> Drop for RawSlice<T> {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr` and `len` came from `Box::into_raw` of a `Box<[T]>`
        // (invariant), rebuilt once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pointer taken once stays usable across moves of the owner and
    /// between references handed out, as the kernel uses a receive
    /// batch's: Miri (`-Zmiri-strict-provenance`, CI's Miri step) reports
    /// any write through it that the aliasing model does not allow.
    #[test]
    fn a_pointer_taken_once_outlives_moves_and_borrows() {
        let mut slice = RawSlice::new(vec![0u32; 4].into_boxed_slice());
        let kept = slice.ptr_at(2);
        // SAFETY: in bounds; no reference into the slice is live.
        unsafe { kept.write(7) };
        assert_eq!(slice.slice(0, 4), [0, 0, 7, 0]);
        slice.slice_mut(0, 4)[3] = 9;
        // A move, and a box around it.
        let moved = Box::new(slice);
        // SAFETY: as above: the references are gone, the memory is not.
        unsafe { kept.write(8) };
        let mut back = *moved;
        assert_eq!(*back.get(2), 8);
        back.slice_mut(2, 3)[0] = 1;
        // SAFETY: as above.
        assert_eq!(unsafe { kept.read() }, 1);
        assert_eq!(back.len(), 4);
    }

    #[test]
    #[should_panic(expected = "out of 0..4")]
    fn a_range_past_the_end_panics() {
        let slice = RawSlice::new(vec![0u8; 4].into_boxed_slice());
        let _ = slice.slice(2, 5);
    }
}
