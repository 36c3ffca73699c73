//! The registration table: where every registered socket's two cells live.
//!
//! # Invariants
//!
//! 1. **Stable addresses.** Slots live in pages that are allocated once, on
//!    first use, and freed only when the table is dropped. Page `p` holds
//!    `FIRST_PAGE << p` slots, so the table grows without ever moving a slot:
//!    a [`Registration`](crate::Registration) may keep a pointer to its slot
//!    for as long as it keeps the table alive.
//! 2. **Generations.** Each slot carries a generation that moves on when the
//!    slot is freed. A mio `Token` is `generation << 32 | locator`, so an
//!    event for a closed socket is recognised (its generation no longer
//!    matches) and dropped before it can reach a socket that reused the
//!    slot.
//! 3. **Locators.** A slot's [`Locator`] is its page and its offset in that
//!    page, packed as `page << OFFSET_BITS | offset`, so the reactor reaches
//!    the slot of an event with a shift, a mask and one page lookup, without
//!    recomputing the page from a flat index. Any 32-bit value is a safe
//!    argument to [`Table::get`]: a locator naming a page that does not
//!    exist or an offset past its page's end finds nothing (tokens reach the
//!    poller through user `Source` impls, so they are not trusted).
//! 4. **Key allocation** (which indices are free) sits behind a mutex and is
//!    touched only when a socket is registered or dropped, never per
//!    operation or per event. A `slab` keeps the free list (the most
//!    recently freed index is reused first, so hot slots stay hot) and
//!    pages are only added when every existing slot is taken.
//!
//! Nothing here allocates per socket once the pages and the slab have grown
//! to the peak number of live sockets.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use slab::Slab;

use crate::cell::OpCell;

/// Slots in the first page; page `p` holds `FIRST_PAGE << p`.
const FIRST_PAGE: usize = 64;
/// Number of pages: room for `FIRST_PAGE * (2^PAGES - 1)` (about 67 million)
/// sockets per reactor.
const PAGES: usize = 20;
/// Largest index the table hands out (exclusive).
pub(crate) const MAX_SLOTS: usize = FIRST_PAGE * ((1 << PAGES) - 1);
// A `Registration` keeps its index as a `u32`.
const _: () = assert!(MAX_SLOTS <= u32::MAX as usize);
/// Bits of a [`Locator`] that hold the offset in the page; the bits above
/// hold the page number.
const OFFSET_BITS: u32 = 27;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
/// Page numbers a locator can spell: the page array has this many entries,
/// so indexing it with `locator >> OFFSET_BITS` needs no bounds check. Only
/// the first `PAGES` are ever allocated.
const PAGE_SLOTS: usize = 1 << (32 - OFFSET_BITS);
const _: () = assert!(FIRST_PAGE << (PAGES - 1) <= 1 << OFFSET_BITS);
// Strictly fewer: the all-ones locator (the reactor's waker token) must
// name a page that is never allocated.
const _: () = assert!(PAGES < PAGE_SLOTS);

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// Where a slot lives: `page << OFFSET_BITS | offset`. See invariant 3.
pub(crate) type Locator = u32;

/// One registered socket's entry: its two cells, stored inline, in one
/// cache line (an event touches the generation and both cells).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) generation: AtomicU32,
    /// The registration's [`reactor_thread`](crate::Registration::reactor_thread),
    /// if it fits 32 bits (else 0). Here rather than in the
    /// `Registration`, which would outgrow its cache line: it fills the
    /// padding after `generation`, in the line every operation reads.
    /// Written when the slot is handed out, read by the registration's
    /// operations only.
    pub(crate) reactor_thread: AtomicU32,
    pub(crate) rx: OpCell,
    pub(crate) tx: OpCell,
}

/// Page and offset of slot `index`.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let n = index / FIRST_PAGE + 1;
    let page = (usize::BITS - 1 - n.leading_zeros()) as usize;
    let start = FIRST_PAGE * ((1 << page) - 1);
    (page, index - start)
}

/// The locator of slot `index`.
#[inline]
pub(crate) fn locator(index: usize) -> Locator {
    let (page, offset) = locate(index);
    ((page as u32) << OFFSET_BITS) | offset as u32
}

pub(crate) struct Table {
    /// `PAGE_SLOTS` entries, of which only the first `PAGES` are ever
    /// initialised (see `PAGE_SLOTS`).
    pages: [OnceLock<Box<[Slot]>>; PAGE_SLOTS],
    keys: Mutex<Slab<()>>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            pages: std::array::from_fn(|_| OnceLock::new()),
            keys: Mutex::new(Slab::new()),
        }
    }

    /// Takes a free slot: its index, its locator, its current generation and
    /// the slot.
    pub(crate) fn insert(&self) -> io::Result<(usize, Locator, u32, &Slot)> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_SLOTS {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "cellio reactor: registration table is full",
            ));
        }
        let index = keys.insert(());
        let (page, offset) = locate(index);
        let slots = self.pages[page].get_or_init(|| {
            tracing::debug!(
                page,
                slots = FIRST_PAGE << page,
                "registration page allocated"
            );
            (0..FIRST_PAGE << page).map(|_| Slot::default()).collect()
        });
        let slot = &slots[offset];
        Ok((
            index,
            locator(index),
            slot.generation.load(Ordering::Acquire),
            slot,
        ))
    }

    /// The slot `locator` names, if its page exists and holds it. Any value
    /// is accepted (invariant 3).
    #[inline]
    pub(crate) fn get(&self, locator: Locator) -> Option<&Slot> {
        let page = (locator >> OFFSET_BITS) as usize;
        let offset = (locator & OFFSET_MASK) as usize;
        self.pages[page].get()?.get(offset)
    }

    /// The slot at `index`, if its page exists.
    fn get_index(&self, index: usize) -> Option<&Slot> {
        if index >= MAX_SLOTS {
            return None;
        }
        self.get(locator(index))
    }

    /// Frees slot `index`: moves its generation on (so late events for it
    /// are dropped), resets both cells and returns the index to the free
    /// list.
    pub(crate) fn remove(&self, index: usize) {
        if let Some(slot) = self.get_index(index) {
            // Release: a reactor thread that Acquires the new generation
            // also sees everything the old owner did.
            slot.generation.fetch_add(1, Ordering::AcqRel);
            slot.rx.reset();
            slot.tx.reset();
        }
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.contains(index) {
            keys.remove(index);
        }
    }

    /// Runs `f` on every slot handed out when the call begins and still
    /// holding the same registration when `f` reaches it. `f` runs without
    /// the table's lock (which `insert` and `remove` take), so it may wake
    /// wakers that register or drop sockets. Allocates (the list of slots):
    /// for rare passes over the whole table, not for events.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(&Slot)) {
        let live: Vec<(Locator, u32)> = {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.iter()
                .filter_map(|(index, ())| {
                    let slot = self.get_index(index)?;
                    Some((locator(index), slot.generation.load(Ordering::Acquire)))
                })
                .collect()
        };
        for (locator, generation) in live {
            if let Some(slot) = self.get(locator) {
                if slot.generation.load(Ordering::Acquire) == generation {
                    f(slot);
                }
            }
        }
    }

    /// Number of live registrations.
    pub(crate) fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_tile_the_index_space() {
        let mut expected = (0, 0);
        for index in 0..FIRST_PAGE * 15 {
            assert_eq!(locate(index), expected, "index {index}");
            expected.1 += 1;
            if expected.1 == FIRST_PAGE << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        assert_eq!(
            locate(MAX_SLOTS - 1),
            (PAGES - 1, (FIRST_PAGE << (PAGES - 1)) - 1)
        );
    }

    #[test]
    fn freed_slots_are_reused_with_a_new_generation() {
        let table = Table::new();
        let (a, _, gen_a, _) = table.insert().unwrap();
        let (b, _, _, _) = table.insert().unwrap();
        assert_ne!(a, b);
        table.remove(a);
        let (c, _, gen_c, _) = table.insert().unwrap();
        assert_eq!(c, a);
        assert_eq!(gen_c, gen_a.wrapping_add(1));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn slot_addresses_survive_growth() {
        let table = Table::new();
        let (_, loc, _, first) = table.insert().unwrap();
        let first = first as *const Slot;
        for _ in 0..FIRST_PAGE * 8 {
            table.insert().unwrap();
        }
        assert!(std::ptr::eq(first, table.get(loc).unwrap()));
        assert!(std::ptr::eq(first, table.get_index(0).unwrap()));
    }

    #[test]
    fn locators_find_their_slots_and_nothing_else() {
        let table = Table::new();
        let mut slots = Vec::new();
        for _ in 0..FIRST_PAGE * 3 + 5 {
            let (index, loc, _, slot) = table.insert().unwrap();
            assert_eq!(loc, locator(index));
            slots.push((loc, slot as *const Slot));
        }
        for &(loc, slot) in &slots {
            assert!(std::ptr::eq(slot, table.get(loc).unwrap()));
        }
        // Past the end of an existing page, in a page not yet allocated, in
        // page numbers beyond `PAGES`, and the reactor's own waker token.
        assert!(table.get(FIRST_PAGE as u32).is_none());
        assert!(table
            .get((2 << OFFSET_BITS) | (FIRST_PAGE as u32 * 4))
            .is_none());
        assert!(table.get(3 << OFFSET_BITS).is_none());
        assert!(table.get((PAGES as u32) << OFFSET_BITS).is_none());
        assert!(table.get(u32::MAX).is_none());
    }
}
