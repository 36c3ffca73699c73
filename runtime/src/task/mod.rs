//! Tasks: the worker's task table, the task blocks it points to, and the
//! pool those blocks come from.
//!
//! * `raw` — one task's block (header, future, output) and the hand-over
//!   between the task and its `JoinHandle`;
//! * `pool` — per-worker size-class free lists the blocks are reused from.
//!
//! # The table's invariants
//!
//! * A slot's `generation` moves on when its task ends; wakes carry the
//!   generation they were made for and are dropped if it no longer matches.
//! * `scheduled` is `true` exactly while the task sits in the run queue, so
//!   a task is queued at most once however often it is woken.
//! * While a task is being polled its reference is out of the table
//!   (`None`), so a wake during its own poll only queues it; nothing
//!   re-enters it.

pub(crate) mod pool;
pub(crate) mod raw;

pub use pool::DEFAULT_TASK_POOL_CAP;
pub(crate) use raw::{RawTask, Typed};

#[derive(Default)]
struct Slot {
    generation: u32,
    scheduled: bool,
    /// `true` from spawn until the task ends (even while it is out being
    /// polled).
    live: bool,
    task: Option<RawTask>,
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
    /// task back when the table is full (`limit` slots).
    pub(crate) fn insert(&mut self, task: RawTask, limit: u32) -> Result<(u32, u32), RawTask> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if (self.slots.len() as u64) < u64::from(limit) => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
            None => return Err(task),
        };
        let slot = &mut self.slots[index as usize];
        slot.live = true;
        slot.scheduled = true;
        slot.task = Some(task);
        self.live += 1;
        Ok((index, slot.generation))
    }

    /// Marks the task queued and returns its full generation; `None` if the
    /// wake is stale, the task finished or is already queued (then it must
    /// not be queued again).
    #[inline]
    pub(crate) fn schedule(&mut self, index: u32, matches: impl Fn(u32) -> bool) -> Option<u32> {
        match self.slots.get_mut(index as usize) {
            Some(slot) if slot.live && !slot.scheduled && matches(slot.generation) => {
                slot.scheduled = true;
                Some(slot.generation)
            }
            _ => None,
        }
    }

    /// Takes the task out for polling. `None` if the wake is stale.
    #[inline]
    pub(crate) fn take_for_poll(&mut self, index: u32, generation: u32) -> Option<RawTask> {
        let slot = self.slots.get_mut(index as usize)?;
        if !slot.live || slot.generation != generation {
            return None;
        }
        slot.scheduled = false;
        slot.task.take()
    }

    /// Puts a pending task back after its poll.
    #[inline]
    pub(crate) fn put_back(&mut self, index: u32, task: RawTask) {
        self.slots[index as usize].task = Some(task);
    }

    /// Ends the task in `index`: the slot's generation moves on and it
    /// becomes free. Returns the task's reference if it was in the table.
    pub(crate) fn finish(&mut self, index: u32) -> Option<RawTask> {
        let slot = &mut self.slots[index as usize];
        slot.live = false;
        slot.scheduled = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        slot.task.take()
    }

    /// Number of tasks spawned and not yet finished.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Ends the first live task and returns its reference (to cancel and
    /// release it outside the table's borrow); `None` when none is left.
    pub(crate) fn pop_live(&mut self) -> Option<RawTask> {
        let index = self.slots.iter().position(|slot| slot.live)?;
        self.finish(index as u32)
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

    #[test]
    fn finished_slots_are_reused_with_a_new_generation() {
        let mut tasks = Tasks::default();
        let (a, gen_a) = tasks.insert(task(), 10).ok().unwrap();
        let taken = tasks.take_for_poll(a, gen_a);
        assert!(taken.is_some());
        tasks.put_back(a, taken.unwrap());
        release(tasks.finish(a));
        let (b, gen_b) = tasks.insert(task(), 10).ok().unwrap();
        assert_eq!(a, b);
        assert_ne!(gen_a, gen_b);
        assert!(tasks.take_for_poll(a, gen_a).is_none(), "stale wake");
        release(tasks.pop_live());
        assert_eq!(tasks.live(), 0);
    }

    #[test]
    fn a_task_is_queued_at_most_once() {
        let mut tasks = Tasks::default();
        let (a, gen) = tasks.insert(task(), 10).ok().unwrap();
        assert_eq!(
            tasks.schedule(a, |g| g == gen),
            None,
            "queued at spawn already"
        );
        let taken = tasks.take_for_poll(a, gen).unwrap();
        assert_eq!(tasks.schedule(a, |g| g == gen), Some(gen));
        assert_eq!(tasks.schedule(a, |g| g == gen), None);
        tasks.put_back(a, taken);
        release(tasks.pop_live());
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut tasks = Tasks::default();
        assert!(tasks.insert(task(), 1).is_ok());
        let refused = tasks.insert(task(), 1);
        assert!(refused.is_err());
        release(refused.err());
        release(tasks.pop_live());
    }
}
