//! The worker against the in-memory store, with the manual clock: every
//! scenario in `common` plus the checks that need no store at all.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{Error, ManualClock, RetryPolicy, Store};
use greenlight_memory::MemoryStore;
use greenlight_worker::{ExecuteError, FnExecutor, Worker};
use serde_json::json;

mod common;
use common::Backend;

/// A fresh store on a manual clock whose retries wait one millisecond.
async fn memory() -> Backend {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .retry_policy(RetryPolicy::fixed(Duration::from_millis(1)))
        .build();
    Backend { clock, store: Arc::new(store), keep: None }
}

worker_scenarios!(memory);

#[tokio::test]
async fn bad_settings_are_refused() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let executor = || FnExecutor::new(|_, _| async { Ok::<_, ExecuteError>(json!({})) });
    let zero = Worker::builder(store.clone(), executor()).concurrency(0).build();
    assert!(matches!(zero, Err(Error::InvalidInput { field: "concurrency", .. })));
    let tiny_lease = Worker::builder(store, executor()).lease(Duration::from_millis(1)).build();
    assert!(matches!(tiny_lease, Err(Error::InvalidInput { field: "lease", .. })));
}
