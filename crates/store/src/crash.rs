//! A crash placed inside a group commit, for the tests that prove a process killed there loses
//! nothing it answered for and stores no half of a group: with
//! `POSTHORN_TEST_ABORT_IN_COMMIT=before:N` the process aborts (no destructor, no flush, as
//! `kill -9` leaves it) in the Nth group that writes events, after its rows are written and before
//! `COMMIT`; with `after:N`, right after `COMMIT`, before any publisher is answered. Unset (always,
//! outside those tests) it costs one read of a `OnceLock` per group. Debug builds only (the
//! integration tests' binary): a release build has no such hook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Where in the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    BeforeCommit,
    AfterCommit,
}

fn plan() -> Option<(Point, u64)> {
    static PLAN: OnceLock<Option<(Point, u64)>> = OnceLock::new();
    *PLAN.get_or_init(|| {
        let v = std::env::var("POSTHORN_TEST_ABORT_IN_COMMIT").ok()?;
        let (point, n) = v.split_once(':')?;
        let point = match point {
            "before" => Point::BeforeCommit,
            "after" => Point::AfterCommit,
            _ => return None,
        };
        Some((point, n.parse().ok()?))
    })
}

static GROUPS: AtomicU64 = AtomicU64::new(0);

/// Called once per group that writes events, at each point: aborts there if the plan says so,
/// after saying which events the group held (`ids`, asked only then).
pub(crate) fn at(point: Point, ids: impl FnOnce() -> String) {
    if cfg!(not(debug_assertions)) {
        return;
    }
    let Some((planned, n)) = plan() else {
        return;
    };
    let group = if point == Point::BeforeCommit {
        GROUPS.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        GROUPS.load(Ordering::SeqCst)
    };
    if point == planned && group == n {
        eprintln!(
            "POSTHORN_TEST_ABORT_IN_COMMIT: aborting in group {n}, {point:?}, events: {}",
            ids()
        );
        std::process::abort();
    }
}
