//! The worker against the in-memory store, with the manual clock: every
//! scenario in `common` plus the checks that need no store at all.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{Error, LearnerId, ManualClock, NewJob, RetryPolicy, Store};
use greenlight_memory::MemoryStore;
use greenlight_worker::{ExecuteError, FnExecutor, Worker};
use serde_json::json;

mod common;
use common::Backend;
use common::flaky::FlakyStore;

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

/// A heartbeat that meets a storage fault is tried again at once, on what
/// would be a fresh connection, rather than a third of a lease later: one
/// dead connection must not cost a third of the lease. Tokio's clock is
/// paused, so "at once" is exact and nothing here depends on the machine's
/// speed.
#[tokio::test(start_paused = true)]
async fn a_failed_heartbeat_is_retried_at_once() {
    let store = Arc::new(FlakyStore::failing_first_heartbeat(Arc::new(MemoryStore::new())));
    let lease = Duration::from_secs(3);
    let job = NewJob::builder(LearnerId::random(), json!({})).build().expect("valid");
    let id = store.enqueue(job).await.expect("enqueue").id();

    // The job runs for half a lease: one beat is due a third of the way in.
    let executor = FnExecutor::new(move |_, _| async move {
        tokio::time::sleep(lease / 2).await;
        Ok::<_, ExecuteError>(json!({"done": true}))
    });
    let started = tokio::time::Instant::now();
    let mut worker = Worker::builder(store.clone(), executor)
        .lease(lease)
        .poll_interval(Duration::from_millis(5))
        .drain(true)
        .build()
        .expect("valid settings")
        .spawn();
    worker.join().await;

    let beats = store.heartbeats();
    assert_eq!(beats.len(), 2, "the failed beat and its retry, no more: {beats:?}");
    assert_eq!(beats[0], beats[1], "the retry comes at once");
    assert!(beats[0] - started >= lease / 3, "the first beat waits a third of the lease");
    let stored = store.get(id).await.expect("get").expect("the job");
    assert_eq!(stored.status(), greenlight_core::Status::Complete);
}
