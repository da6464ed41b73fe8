//! The worker against the in-memory store, with the manual clock: every
//! scenario in `common` plus the checks that need no store at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use greenlight_core::{Error, LearnerId, ManualClock, NewJob, RetryPolicy, Store};
use greenlight_memory::MemoryStore;
use greenlight_worker::{ExecuteError, FnExecutor, MAX_STATEMENTS_IN_FLIGHT, Worker};
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
    let tiny_lease =
        Worker::builder(store.clone(), executor()).lease(Duration::from_millis(1)).build();
    assert!(matches!(tiny_lease, Err(Error::InvalidInput { field: "lease", .. })));
    for count in [0, MAX_STATEMENTS_IN_FLIGHT + 1] {
        let refused = Worker::builder(store.clone(), executor()).claims_in_flight(count).build();
        assert!(matches!(refused, Err(Error::InvalidInput { field: "claims_in_flight", .. })));
        let refused =
            Worker::builder(store.clone(), executor()).completions_in_flight(count).build();
        assert!(matches!(refused, Err(Error::InvalidInput { field: "completions_in_flight", .. })));
    }
}

/// A memory store whose claims and completion writes take 10 ms (on
/// tokio's clock), holding `count` ready jobs.
async fn slow_store_with_jobs(count: usize) -> Arc<FlakyStore> {
    let store =
        Arc::new(FlakyStore::slow_writes(Arc::new(MemoryStore::new()), Duration::from_millis(10)));
    let jobs: Vec<NewJob> = (0..count)
        .map(|_| NewJob::builder(LearnerId::random(), json!({})).build().expect("valid"))
        .collect();
    store.enqueue_many(jobs).await.expect("enqueue");
    store
}

/// Under a backlog, a worker with room for several batches keeps as many
/// claims in flight as it is allowed, and no more; the slots its claims
/// reserve and its running jobs never exceed its concurrency. Tokio's clock
/// is paused, so the claims' delay is exact.
#[tokio::test(start_paused = true)]
async fn a_backlog_keeps_the_allowed_claims_in_flight_within_the_slots() {
    for claims_in_flight in [1, 2] {
        let store = slow_store_with_jobs(100).await;

        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let executor = FnExecutor::new({
            let (running, most_running) = (running.clone(), most_running.clone());
            move |_, _| {
                let (running, most_running) = (running.clone(), most_running.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most_running.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ExecuteError>(json!({}))
                }
            }
        });
        let metrics = Worker::builder(store.clone(), executor)
            .concurrency(30)
            .batch_size(10)
            .claims_in_flight(claims_in_flight)
            .drain(true)
            .build()
            .expect("valid settings")
            .run_until(std::future::pending())
            .await;

        assert_eq!(metrics.completed, 100, "claims in flight: {claims_in_flight}");
        assert_eq!(store.most_claims_at_once(), claims_in_flight as u64);
        assert!(most_running.load(Ordering::SeqCst) <= 30);
        assert!(store.claim_limits().iter().all(|&limit| (1..=10).contains(&limit)));
    }
}

/// A worker claims before its subscription to wake-ups answers: a listening
/// connection that hangs (a slow or unreachable server) must not keep it
/// from working. Tokio's clock is paused; a worker that waited for the
/// subscription would wait for ever, and the timeout would fire.
#[tokio::test(start_paused = true)]
async fn a_hanging_subscription_does_not_hold_up_claiming() {
    let store = Arc::new(FlakyStore::stuck_wakeups(Arc::new(MemoryStore::new())));
    let jobs: Vec<NewJob> = (0..5)
        .map(|_| NewJob::builder(LearnerId::random(), json!({})).build().expect("valid"))
        .collect();
    store.enqueue_many(jobs).await.expect("enqueue");
    let executor = FnExecutor::new(|_, _| async { Ok::<_, ExecuteError>(json!({})) });
    let worker = Worker::builder(store.clone(), executor)
        .poll_interval(Duration::from_secs(3_600))
        .drain(true)
        .build()
        .expect("valid settings");

    let metrics =
        tokio::time::timeout(Duration::from_secs(60), worker.run_until(std::future::pending()))
            .await
            .expect("the worker drained the queue without its wake-ups");
    assert_eq!(metrics.completed, 5);
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

/// Draining ends once the last job is written, not a poll interval later:
/// with claims that take a while, jobs end while claims that find nothing
/// are in flight, and every job that ends must send the loop looking
/// again. Tokio's clock is paused: an hour of polling would pass at once
/// and show in the time taken.
#[tokio::test(start_paused = true)]
async fn draining_ends_with_the_last_job_not_at_the_next_poll() {
    let store = slow_store_with_jobs(25).await;
    let executor = FnExecutor::new(|_, _| async {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, ExecuteError>(json!({}))
    });

    let started = tokio::time::Instant::now();
    let metrics = Worker::builder(store.clone(), executor)
        .concurrency(30)
        .batch_size(10)
        .poll_interval(Duration::from_secs(3600))
        .rescue_interval(Duration::from_secs(3600))
        .drain(true)
        .build()
        .expect("valid settings")
        .run_until(std::future::pending())
        .await;

    assert_eq!(metrics.completed, 25);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "draining took {took:?}");
}

/// Under load, completions are written by as many writes at once as the
/// worker allows, and no more. Tokio's clock is paused, so the writes'
/// delay is exact.
#[tokio::test(start_paused = true)]
async fn a_backlog_keeps_the_allowed_completion_writes_in_flight() {
    for completions_in_flight in [1, 2] {
        let store = slow_store_with_jobs(3_000).await;
        let executor = FnExecutor::new(|_, _| async { Ok::<_, ExecuteError>(json!({})) });

        let metrics = Worker::builder(store.clone(), executor)
            .concurrency(1_500)
            .batch_size(500)
            .completions_in_flight(completions_in_flight)
            .drain(true)
            .build()
            .expect("valid settings")
            .run_until(std::future::pending())
            .await;

        assert_eq!(metrics.completed, 3_000, "writes in flight: {completions_in_flight}");
        assert_eq!(store.most_completions_at_once(), completions_in_flight as u64);
    }
}
