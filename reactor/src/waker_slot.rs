//! A cell's waker slot: one owned [`Waker`], kept as its two raw parts
//! (data and vtable pointers) in two atomic pointers (pointers, not
//! integers, so the parts keep their provenance: Miri checks this code
//! with `-Zmiri-strict-provenance`).
//!
//! Storing the parts instead of a `Waker` in an `UnsafeCell` keeps an
//! [`OpCell`](crate::OpCell) at 24 bytes (so a socket's two cells and its
//! generation share one cache line) and lets anyone compare the stored
//! waker's identity without owning the slot ([`WakerSlot::holds`]), which
//! is what [`OpCell::park_idle`](crate::OpCell::park_idle) needs.
//!
//! # Invariants
//!
//! 1. The parts always come from one live `Waker` the slot owns (a new or
//!    reset slot owns [`Waker::noop`]); the slot drops it exactly once, when
//!    it is replaced or the slot is dropped.
//! 2. Only the slot's current owner — named by its cell's phase (see the
//!    cell module's invariant 1) — calls the `unsafe` methods. The parts'
//!    accesses are `Relaxed`: ownership moves with the cell word's
//!    Release/Acquire edges, which also order these accesses. Under loom a
//!    tracked `UnsafeCell<()>` is touched by every owner access, so the
//!    model checker still proves that no two parties own the slot at once.
//! 3. [`holds`](WakerSlot::holds) needs no ownership: it only compares
//!    pointers and never turns them back into a waker.

use std::mem::ManuallyDrop;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::sync::{AtomicPtr, Ordering};

pub(crate) struct WakerSlot {
    data: AtomicPtr<()>,
    vtable: AtomicPtr<RawWakerVTable>,
    /// Loom only: the owner's accesses, for the model checker to police.
    #[cfg(loom)]
    owner: crate::sync::UnsafeCell<()>,
}

/// A waker's identity: what [`Waker::will_wake`] compares.
#[inline]
fn parts(waker: &Waker) -> (*mut (), *mut RawWakerVTable) {
    (
        waker.data().cast_mut(),
        (waker.vtable() as *const RawWakerVTable).cast_mut(),
    )
}

impl WakerSlot {
    /// A slot holding [`Waker::noop`].
    pub(crate) fn new() -> Self {
        let (data, vtable) = parts(Waker::noop());
        Self {
            data: AtomicPtr::new(data),
            vtable: AtomicPtr::new(vtable),
            #[cfg(loom)]
            owner: crate::sync::UnsafeCell::new(()),
        }
    }

    /// Whether the stored waker has `waker`'s identity (the same data and
    /// vtable pointers). Anyone may ask; the answer is only as current as
    /// the caller's view of the slot (invariant 3).
    #[inline]
    pub(crate) fn holds(&self, waker: &Waker) -> bool {
        let (data, vtable) = parts(waker);
        self.vtable.load(Ordering::Relaxed) == vtable && self.data.load(Ordering::Relaxed) == data
    }

    /// Marks an owner access for loom; nothing outside loom.
    #[inline(always)]
    fn owner_access(&self) {
        #[cfg(loom)]
        self.owner.with_mut(|_| ());
    }

    /// The stored waker, borrowed.
    ///
    /// # Safety
    ///
    /// The caller owns the slot (invariant 2) and keeps owning it while the
    /// returned waker is alive.
    #[inline]
    unsafe fn stored(&self) -> ManuallyDrop<Waker> {
        self.owner_access();
        let data = self.data.load(Ordering::Relaxed).cast_const();
        let vtable = self.vtable.load(Ordering::Relaxed).cast_const();
        // `ManuallyDrop`: the slot keeps ownership; the caller only borrows
        // the waker while it owns the slot.
        // SAFETY: by invariant 1 the parts are those of a live waker the slot
        // owns: `vtable` is its `&'static` vtable, the pair meets its contract.
        unsafe { ManuallyDrop::new(Waker::from_raw(RawWaker::new(data, &*vtable))) }
    }

    /// A clone of the stored waker, to wake after giving the slot back.
    ///
    /// # Safety
    ///
    /// The caller owns the slot (invariant 2).
    #[inline]
    pub(crate) unsafe fn clone_waker(&self) -> Waker {
        // SAFETY: the caller owns the slot for this whole call.
        let stored = unsafe { self.stored() };
        Waker::clone(&stored)
    }

    /// Makes the slot hold `waker` (a clone of it) unless it already holds
    /// a waker with the same identity, in which case nothing is cloned.
    ///
    /// # Safety
    ///
    /// The caller owns the slot (invariant 2).
    #[inline]
    pub(crate) unsafe fn store(&self, waker: &Waker) {
        self.owner_access();
        if !self.holds(waker) {
            // SAFETY: forwarded: the caller owns the slot.
            unsafe { self.replace(waker.clone()) };
        }
    }

    /// Makes the slot hold [`Waker::noop`] again, dropping what it held.
    ///
    /// # Safety
    ///
    /// The caller owns the slot (invariant 2).
    pub(crate) unsafe fn clear(&self) {
        // SAFETY: forwarded: the caller owns the slot.
        unsafe { self.replace(Waker::noop().clone()) };
    }

    /// Stores `new`'s parts and drops the waker they replace.
    ///
    /// # Safety
    ///
    /// The caller owns the slot (invariant 2).
    unsafe fn replace(&self, new: Waker) {
        // SAFETY: the caller owns the slot; `old` is taken out of it below,
        // so dropping it is the slot's one drop of that waker (invariant 1).
        let old = unsafe { self.stored() };
        let new = ManuallyDrop::new(new);
        let (data, vtable) = parts(&new);
        self.data.store(data, Ordering::Relaxed);
        self.vtable.store(vtable, Ordering::Relaxed);
        // After the stores: the old waker's destructor may run user code,
        // which must not find the slot half-written.
        drop(ManuallyDrop::into_inner(old));
    }
}

// SAFETY: loom's tracking cell is not `Sync`, but it holds nothing: the
// slot is shared exactly as the std build's atomics are (invariant 2).
#[cfg(loom)]
unsafe impl Sync for WakerSlot {}

impl Drop for WakerSlot {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nobody else can reach the slot, and this is
        // its last use, so taking the stored waker and dropping it is the
        // one drop invariant 1 promises.
        drop(ManuallyDrop::into_inner(unsafe { self.stored() }));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::test_waker::task;
    use std::sync::Arc;

    #[test]
    fn the_slot_owns_exactly_one_clone_and_drops_it_once() {
        let (a, waker_a) = task();
        let (b, waker_b) = task();
        let slot = WakerSlot::new();
        assert!(!slot.holds(&waker_a));
        // SAFETY: this test is the slot's only user, so it owns it.
        unsafe { slot.store(&waker_a) };
        assert_eq!(Arc::strong_count(&a), 3, "ours, waker_a, the slot's clone");
        // SAFETY: this test is the slot's only user, so it owns it.
        unsafe { slot.store(&waker_a) };
        assert_eq!(
            Arc::strong_count(&a),
            3,
            "the same task again clones nothing"
        );
        assert!(slot.holds(&waker_a) && !slot.holds(&waker_b));

        // SAFETY: this test is the slot's only user, so it owns it.
        let copy = unsafe { slot.clone_waker() };
        assert_eq!(Arc::strong_count(&a), 4);
        copy.wake();
        assert_eq!(a.wakes(), 1);
        assert_eq!(Arc::strong_count(&a), 3, "wake consumed the copy");

        // SAFETY: this test is the slot's only user, so it owns it.
        unsafe { slot.store(&waker_b) };
        assert_eq!(Arc::strong_count(&a), 2, "the replaced waker was dropped");
        assert_eq!(Arc::strong_count(&b), 3);
        // SAFETY: this test is the slot's only user, so it owns it.
        unsafe { slot.clear() };
        assert_eq!(Arc::strong_count(&b), 2, "clear drops the stored waker");
        assert!(!slot.holds(&waker_b));

        // SAFETY: this test is the slot's only user, so it owns it.
        unsafe { slot.store(&waker_b) };
        drop(slot);
        assert_eq!(
            Arc::strong_count(&b),
            2,
            "dropping the slot drops its waker"
        );
    }
}
