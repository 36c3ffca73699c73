//! `Builder`: settings it refuses with an error instead of a panic or an
//! abort. (What each setting does is tested where it acts: `workers.rs`,
//! `task_pool.rs`, `yield_now.rs`.)

use std::io::ErrorKind;

use cellio_runtime::{Builder, MAX_EVENT_CAPACITY, MAX_WORKERS};

#[test]
fn an_event_capacity_above_the_maximum_is_an_invalid_input_error() {
    // Before the check, 2^40 aborted the process (the event buffer's
    // allocation failed) and usize::MAX panicked (capacity overflow).
    for events in [MAX_EVENT_CAPACITY + 1, 1 << 40, usize::MAX] {
        let err = Builder::new()
            .workers(2)
            .event_capacity(events)
            .build()
            .err()
            .unwrap_or_else(|| panic!("event_capacity({events}) built a runtime"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{events}: {err}");
        assert!(
            err.to_string().contains(&events.to_string()),
            "the error names the value: {err}"
        );
    }
}

#[test]
#[cfg_attr(miri, ignore)] // 20 MiB of buffers per worker: slow under Miri
fn the_maximum_event_capacity_itself_builds_and_runs() {
    let rt = Builder::new()
        .workers(2)
        .event_capacity(MAX_EVENT_CAPACITY)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(async { 40 + 2 }), 42);
}

#[test]
fn an_event_capacity_of_zero_is_raised_to_one() {
    let rt = Builder::new().workers(1).event_capacity(0).build().unwrap();
    assert_eq!(rt.block_on(async { 7 }), 7);
}

#[test]
fn more_workers_than_the_maximum_is_an_invalid_input_error() {
    // Before the check, usize::MAX panicked (capacity overflow) and 2^40
    // aborted the process (the worker list's allocation failed), before
    // any worker was counted against the limit.
    for workers in [MAX_WORKERS + 1, 1 << 40, usize::MAX] {
        let err = Builder::new()
            .workers(workers)
            .build()
            .err()
            .unwrap_or_else(|| panic!("workers({workers}) built a runtime"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{workers}: {err}");
        assert!(
            err.to_string().contains(&workers.to_string()),
            "the error names the value: {err}"
        );
    }
}
