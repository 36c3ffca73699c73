//! Tasks: the worker's task table, the task blocks it points to, and the
//! pool those blocks come from.
//!
//! * `raw` — one task's block (header, future, output) and the hand-over
//!   between the task and its `JoinHandle`;
//! * `pool` — per-worker size-class free lists the blocks are reused from;
//! * `queue` — the worker's run queue of `(slot, ticket)` entries.
//!
//! # The table's invariants
//!
//! Each slot keeps its task's reference and one `state` word:
//! `generation << 2 | SCHEDULED | LIVE`.
//!
//! * A slot's `generation` moves on when its task ends; wakes carry the
//!   generation they were made for and are dropped if it no longer matches.
//! * `SCHEDULED` is set exactly while the task sits in the run queue, so a
//!   task is queued at most once however often it is woken. A queue entry
//!   is the `state` word the slot had when it was queued (a *ticket*): it
//!   is run only if the slot still has exactly that state, so entries left
//!   behind by a task that ended are dropped.
//! * `LIVE` is set from spawn until the task ends, including while it is
//!   being polled.
//! * The free list has room for every slot (reserved when the table
//!   grows): ending a task never allocates.
//! * The task's reference stays in its slot while the task is polled (the
//!   loop polls it through a [`TaskRef`] copied out of the table): only the
//!   worker loop ends a task, after its poll, and `cancel_all` runs only
//!   when no task is being polled. A wake during the task's own poll only
//!   queues it again; nothing re-enters it.

pub(crate) mod pool;
pub(crate) mod queue;
pub(crate) mod raw;

pub use pool::DEFAULT_TASK_POOL_CAP;
pub(crate) use raw::{BlockMemory, FreeBlock, RawTask, TaskRef, Typed, NO_HOME};

/// `state` bit: the task has not ended.
const LIVE: u32 = 1;
/// `state` bit: the task is in the run queue.
const SCHEDULED: u32 = 2;
/// `state` bits below the generation.
const GEN_SHIFT: u32 = 2;

#[derive(Default)]
struct Slot {
    /// `generation << GEN_SHIFT | SCHEDULED | LIVE`.
    state: u32,
    task: Option<RawTask>,
}

/// The slots of one worker's tasks.
///
/// `slots` comes first and is a boxed slice (its length is its capacity;
/// slots not in use are on the free list): a wake and a poll read only its
/// pointer and length, [`Tasks::HOT_BYTES`] bytes, which the executor keeps
/// in its hot cache line.
#[derive(Default)]
#[repr(C)]
pub(crate) struct Tasks {
    slots: Box<[Slot]>,
    free: Vec<u32>,
    live: usize,
}

impl Tasks {
    /// Stores a new task, marked queued, and returns `(slot, ticket)` for
    /// the run queue, or gives the task back when the table is full
    /// (`limit` slots).
    pub(crate) fn insert(&mut self, task: RawTask, limit: u32) -> Result<(u32, u32), RawTask> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.grow(limit) => self.free.pop().expect("the table grew"),
            None => return Err(task),
        };
        let slot = &mut self.slots[index as usize];
        slot.state |= LIVE | SCHEDULED;
        slot.task = Some(task);
        self.live += 1;
        Ok((index, slot.state))
    }

    /// The bytes at the start of the table that [`schedule`](Self::schedule)
    /// and [`start_poll`](Self::start_poll) read: the slots' pointer and
    /// length.
    pub(crate) const HOT_BYTES: usize =
        std::mem::offset_of!(Tasks, slots) + std::mem::size_of::<Box<[Slot]>>();

    /// Adds free slots (doubling the table, up to `limit` slots); `false`
    /// if the table already has `limit`.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, limit: u32) -> bool {
        let old = self.slots.len();
        let new = (old * 2).max(8).min(limit as usize);
        if new <= old {
            return false;
        }
        let mut slots = std::mem::take(&mut self.slots).into_vec();
        slots.reserve_exact(new - old);
        slots.resize_with(new, Slot::default);
        self.slots = slots.into_boxed_slice();
        // Room for every slot on the free list, so that `finish` never
        // allocates (even the first time every task ends at once).
        self.free.reserve(new - self.free.len());
        // Lowest index on top: slots are handed out in order.
        self.free.extend((old as u32..new as u32).rev());
        true
    }

    /// Marks the task queued and returns its ticket; `None` if the wake is
    /// stale (the low bits `mask` keeps of the slot's generation differ from
    /// `generation`), the task ended or is already queued (then it must not
    /// be queued again).
    #[inline]
    pub(crate) fn schedule(&mut self, index: u32, generation: u32, mask: u32) -> Option<u32> {
        let slot = self.slots.get_mut(index as usize)?;
        let checked = (mask << GEN_SHIFT) | SCHEDULED | LIVE;
        if slot.state & checked != (generation << GEN_SHIFT) | LIVE {
            return None;
        }
        slot.state |= SCHEDULED;
        Some(slot.state)
    }

    /// Takes the task of a queue entry for polling: clears `SCHEDULED` and
    /// returns a reference to the task, which stays in the table. `None` if
    /// the entry is stale.
    #[inline]
    pub(crate) fn start_poll(&mut self, index: u32, ticket: u32) -> Option<TaskRef> {
        let slot = self.slots.get_mut(index as usize)?;
        if slot.state != ticket {
            return None;
        }
        slot.state = ticket & !SCHEDULED;
        slot.task.as_ref().map(RawTask::by_ref)
    }

    /// The generation a ticket was issued for.
    #[inline]
    pub(crate) fn generation(ticket: u32) -> u32 {
        ticket >> GEN_SHIFT
    }

    /// Ends the task in `index`: the slot's generation moves on and it
    /// becomes free. Returns the task's reference if it was in the table.
    pub(crate) fn finish(&mut self, index: u32) -> Option<RawTask> {
        let slot = &mut self.slots[index as usize];
        slot.state = (slot.state & !(SCHEDULED | LIVE)).wrapping_add(1 << GEN_SHIFT);
        self.free.push(index);
        self.live -= 1;
        slot.task.take()
    }

    /// Number of tasks spawned and not yet finished.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The slot of the first live task at or after slot `from`, or else
    /// before it (a task spawned meanwhile may have taken a lower slot),
    /// and a reference to it (to cancel it outside the table's borrow,
    /// then [`finish`](Self::finish) it); `None` when none is left.
    pub(crate) fn first_live_from(&self, from: u32) -> Option<(u32, TaskRef)> {
        let from = (from as usize).min(self.slots.len());
        let index = match self.slots[from..]
            .iter()
            .position(|slot| slot.state & LIVE != 0)
        {
            Some(index) => from + index,
            None => self.slots[..from]
                .iter()
                .position(|slot| slot.state & LIVE != 0)?,
        };
        let task = self.slots[index].task.as_ref()?;
        Some((index as u32, task.by_ref()))
    }

    /// The live task in slot `index`, if any (for the id of the task a
    /// poll is tagged with).
    pub(crate) fn live_at(&self, index: u32) -> Option<TaskRef> {
        let slot = self.slots.get(index as usize)?;
        if slot.state & LIVE == 0 {
            return None;
        }
        slot.task.as_ref().map(RawTask::by_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> RawTask {
        let (task, handle) = RawTask::new(async {}, (0, 0), None);
        assert!(
            handle.release().is_none(),
            "the task still holds a reference"
        );
        task
    }

    fn release(task: Option<RawTask>) {
        let task = task.unwrap();
        // SAFETY: this test thread is the task's only worker.
        unsafe { task.cancel() };
        task.release().expect("last reference").free(None);
    }

    impl Tasks {
        fn first_live(&self) -> Option<(u32, TaskRef)> {
            self.first_live_from(0)
        }
    }

    /// Ends the first live task and returns its reference, as the
    /// worker's `cancel_all` does.
    fn pop_live(tasks: &mut Tasks) -> Option<RawTask> {
        let (index, _) = tasks.first_live()?;
        tasks.finish(index)
    }

    /// The generation bits a waker carries, as in `waker.rs`.
    const MASK: u32 = (1 << 20) - 1;

    #[test]
    fn finished_slots_are_reused_with_a_new_generation() {
        let mut tasks = Tasks::default();
        let (a, ticket_a) = tasks.insert(task(), 10).ok().unwrap();
        assert!(tasks.start_poll(a, ticket_a).is_some());
        release(tasks.finish(a));
        let (b, ticket_b) = tasks.insert(task(), 10).ok().unwrap();
        assert_eq!(a, b);
        assert_ne!(Tasks::generation(ticket_a), Tasks::generation(ticket_b));
        assert!(tasks.start_poll(a, ticket_a).is_none(), "stale wake");
        let gen_a = Tasks::generation(ticket_a) & MASK;
        assert!(tasks.start_poll(b, ticket_b).is_some());
        assert_eq!(tasks.schedule(a, gen_a, MASK), None, "stale waker");
        release(pop_live(&mut tasks));
        assert_eq!(tasks.live(), 0);
    }

    #[test]
    fn a_slot_names_its_task_only_while_the_task_lives() {
        let mut tasks = Tasks::default();
        let (a, _) = tasks.insert(task(), 10).ok().unwrap();
        let (b, _) = tasks.insert(task(), 10).ok().unwrap();
        let id_a = tasks.live_at(a).map(TaskRef::id);
        assert!(id_a.is_some());
        assert_ne!(id_a, tasks.live_at(b).map(TaskRef::id));
        assert_eq!(
            tasks.first_live().map(|(index, task)| (index, task.id())),
            Some((a, id_a.unwrap()))
        );
        release(tasks.finish(a));
        assert!(tasks.live_at(a).is_none(), "ended");
        assert!(tasks.live_at(99).is_none(), "past the table");
        assert_eq!(tasks.first_live().map(|(index, _)| index), Some(b));
        release(pop_live(&mut tasks));
        assert!(tasks.first_live().is_none());
    }

    /// `cancel_all`'s search from a cursor: it goes on past the cursor,
    /// and comes back to a task that took a lower slot meanwhile.
    #[test]
    fn the_search_from_a_cursor_wraps_around() {
        let mut tasks = Tasks::default();
        let slots: Vec<u32> = (0..4)
            .map(|_| tasks.insert(task(), 10).ok().unwrap().0)
            .collect();
        release(tasks.finish(slots[0]));
        release(tasks.finish(slots[2]));
        let first = |tasks: &Tasks, from| tasks.first_live_from(from).map(|(index, _)| index);
        assert_eq!(first(&tasks, slots[1] + 1), Some(slots[3]));
        assert_eq!(first(&tasks, slots[3] + 1), Some(slots[1]), "wraps");
        assert_eq!(first(&tasks, 99), Some(slots[1]), "past the table");
        release(tasks.finish(slots[1]));
        release(tasks.finish(slots[3]));
        assert_eq!(first(&tasks, 2), None);
    }

    #[test]
    fn a_task_is_queued_at_most_once() {
        let mut tasks = Tasks::default();
        let (a, ticket) = tasks.insert(task(), 10).ok().unwrap();
        let gen = Tasks::generation(ticket) & MASK;
        assert_eq!(
            tasks.schedule(a, gen, MASK),
            None,
            "queued at spawn already"
        );
        assert!(tasks.start_poll(a, ticket).is_some());
        assert_eq!(tasks.schedule(a, gen, MASK), Some(ticket));
        assert_eq!(tasks.schedule(a, gen, MASK), None);
        release(pop_live(&mut tasks));
    }

    #[test]
    fn an_entry_left_by_an_ended_task_is_dropped() {
        let mut tasks = Tasks::default();
        let (a, ticket) = tasks.insert(task(), 10).ok().unwrap();
        assert!(tasks.start_poll(a, ticket).is_some());
        // Woken during its last poll: queued again, then it ends.
        let gen = Tasks::generation(ticket) & MASK;
        let queued = tasks.schedule(a, gen, MASK).unwrap();
        release(tasks.finish(a));
        assert!(tasks.start_poll(a, queued).is_none(), "ended");
        let (b, fresh) = tasks.insert(task(), 10).ok().unwrap();
        assert_eq!(a, b);
        assert!(tasks.start_poll(a, queued).is_none(), "slot reused");
        assert!(tasks.start_poll(b, fresh).is_some());
        release(pop_live(&mut tasks));
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut tasks = Tasks::default();
        assert!(tasks.insert(task(), 1).is_ok());
        let refused = tasks.insert(task(), 1);
        assert!(refused.is_err());
        release(refused.err());
        release(pop_live(&mut tasks));
    }

    #[test]
    fn the_free_list_has_room_for_every_slot() {
        let mut tasks = Tasks::default();
        let slots: Vec<u32> = (0..100)
            .map(|_| {
                let (slot, _) = tasks.insert(task(), 1000).ok().unwrap();
                assert!(tasks.free.capacity() >= tasks.slots.len());
                slot
            })
            .collect();
        let capacity = tasks.free.capacity();
        for slot in slots {
            release(tasks.finish(slot));
        }
        assert_eq!(tasks.free.len(), tasks.slots.len());
        assert_eq!(tasks.free.capacity(), capacity, "finish grew the free list");
    }
}
