//! The task table: one slot per spawned task, reused after the task ends.
//!
//! # Invariants
//!
//! * A slot's `generation` moves on when its task ends; wakes carry the
//!   generation they were made for and are dropped if it no longer matches.
//! * `scheduled` is `true` exactly while the task sits in the run queue, so
//!   a task is queued at most once however often it is woken.
//! * While a task is being polled its future is out of the table (`None`),
//!   so a wake during its own poll only queues it; nothing re-enters it.

use std::future::Future;
use std::pin::Pin;

/// A spawned task's type-erased future.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + 'static>>;

#[derive(Default)]
struct Slot {
    generation: u32,
    scheduled: bool,
    /// `true` from spawn until the task ends (even while its future is out
    /// being polled).
    live: bool,
    future: Option<BoxFuture>,
}

/// The slots of one worker's tasks.
#[derive(Default)]
pub(crate) struct Tasks {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Tasks {
    /// Stores a new task and returns its `(slot, generation)`, or gives the
    /// future back when the table is full (`limit` slots).
    pub(crate) fn insert(
        &mut self,
        future: BoxFuture,
        limit: u32,
    ) -> Result<(u32, u32), BoxFuture> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if (self.slots.len() as u64) < u64::from(limit) => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
            None => return Err(future),
        };
        let slot = &mut self.slots[index as usize];
        slot.live = true;
        slot.scheduled = true;
        slot.future = Some(future);
        self.live += 1;
        Ok((index, slot.generation))
    }

    /// Marks the task queued and returns its full generation; `None` if the
    /// wake is stale, the task finished or is already queued (then it must
    /// not be queued again).
    pub(crate) fn schedule(&mut self, index: u32, matches: impl Fn(u32) -> bool) -> Option<u32> {
        match self.slots.get_mut(index as usize) {
            Some(slot) if slot.live && !slot.scheduled && matches(slot.generation) => {
                slot.scheduled = true;
                Some(slot.generation)
            }
            _ => None,
        }
    }

    /// Takes the future out for polling. `None` if the wake is stale.
    pub(crate) fn take_for_poll(&mut self, index: u32, generation: u32) -> Option<BoxFuture> {
        let slot = self.slots.get_mut(index as usize)?;
        if !slot.live || slot.generation != generation {
            return None;
        }
        slot.scheduled = false;
        slot.future.take()
    }

    /// Puts a pending future back after its poll.
    pub(crate) fn put_back(&mut self, index: u32, future: BoxFuture) {
        self.slots[index as usize].future = Some(future);
    }

    /// Ends the task in `index`: the slot's generation moves on and it
    /// becomes free.
    pub(crate) fn finish(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.live = false;
        slot.scheduled = false;
        slot.future = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
    }

    /// Number of tasks spawned and not yet finished.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Removes every task's future (to drop them outside the borrow).
    pub(crate) fn drain(&mut self) -> Vec<BoxFuture> {
        let mut futures = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index].live {
                if let Some(future) = self.slots[index].future.take() {
                    futures.push(future);
                }
                self.finish(index as u32);
            }
        }
        futures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> BoxFuture {
        Box::pin(async {})
    }

    #[test]
    fn finished_slots_are_reused_with_a_new_generation() {
        let mut tasks = Tasks::default();
        let (a, gen_a) = tasks.insert(noop(), 10).ok().unwrap();
        assert!(tasks.take_for_poll(a, gen_a).is_some());
        tasks.finish(a);
        let (b, gen_b) = tasks.insert(noop(), 10).ok().unwrap();
        assert_eq!(a, b);
        assert_ne!(gen_a, gen_b);
        assert!(tasks.take_for_poll(a, gen_a).is_none(), "stale wake");
    }

    #[test]
    fn a_task_is_queued_at_most_once() {
        let mut tasks = Tasks::default();
        let (a, gen) = tasks.insert(noop(), 10).ok().unwrap();
        assert_eq!(
            tasks.schedule(a, |g| g == gen),
            None,
            "queued at spawn already"
        );
        let future = tasks.take_for_poll(a, gen).unwrap();
        assert_eq!(tasks.schedule(a, |g| g == gen), Some(gen));
        assert_eq!(tasks.schedule(a, |g| g == gen), None);
        tasks.put_back(a, future);
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut tasks = Tasks::default();
        assert!(tasks.insert(noop(), 1).is_ok());
        assert!(tasks.insert(noop(), 1).is_err());
    }
}
