//! Counters a caller can read while a worker runs.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters, shared between the worker's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) claimed: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) lease_lost: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) rescued: AtomicU64,
    pub(crate) pruned: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed is enough: each counter is read on its own, for display,
        // and no other memory depends on its value.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Metrics {
            claimed: read(&self.claimed),
            completed: read(&self.completed),
            retried: read(&self.retried),
            failed: read(&self.failed),
            lease_lost: read(&self.lease_lost),
            released: read(&self.released),
            rescued: read(&self.rescued),
            pruned: read(&self.pruned),
            in_flight: read(&self.in_flight),
        }
    }
}

/// A snapshot of a worker's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts sent back to pending for a retry.
    pub retried: u64,
    /// Jobs failed for good (no retries left, or a permanent error).
    pub failed: u64,
    /// Jobs whose lease was lost while running; their outcome was dropped.
    pub lease_lost: u64,
    /// Jobs given back unrun at shutdown.
    pub released: u64,
    /// Expired leases this worker's rescuer took back.
    pub rescued: u64,
    /// Old finished jobs this worker's pruner deleted.
    pub pruned: u64,
    /// Jobs holding a slot now: running, or their outcome being written.
    pub in_flight: u64,
}
