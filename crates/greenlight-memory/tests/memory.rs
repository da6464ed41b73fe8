//! Behaviour of the memory store beyond the shared conformance suite: its
//! settings, wake-ups, sharing between handles, and a clock set backwards.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use greenlight_core::{
    ClaimRequest, Clock, Error, JobId, LearnerId, ManualClock, NewJob, PayloadLimits, PruneRequest,
    RetryPolicy, Status, Store, WorkerId, uuid,
};
use greenlight_memory::MemoryStore;
use serde_json::json;

fn new_job() -> NewJob {
    NewJob::builder(LearnerId::random(), json!({"code": "print(1)"})).build().expect("valid")
}

fn request() -> ClaimRequest {
    ClaimRequest {
        worker_id: WorkerId::new("worker").expect("valid"),
        limit: 10,
        lease: Duration::from_secs(30),
    }
}

#[test]
fn defaults_come_from_the_core() {
    let store = MemoryStore::new();

    assert_eq!(store.retry_policy(), &RetryPolicy::default());
    assert_eq!(store.payload_limits(), &PayloadLimits::default());
    assert!(store.is_empty().expect("len"));
    // The system clock: within a minute of now, whatever the machine.
    let skew = greenlight_core::chrono::Utc::now() - store.clock().now();
    assert!(skew.num_seconds().abs() < 60, "the default clock is the system clock");
}

#[tokio::test]
async fn builder_settings_are_used() {
    let clock = ManualClock::starting_now();
    let policy = RetryPolicy::fixed(Duration::from_secs(9));
    // Room for the request payload (19 bytes), not for the result below.
    let limits = PayloadLimits { max_bytes: 24, max_depth: 4 };
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .retry_policy(policy)
        .payload_limits(limits)
        .build();
    store.enqueue(new_job()).await.expect("enqueue");
    let job = store.claim(&request()).await.expect("claim").remove(0);

    let too_big = json!({"stdout": "far more than twenty-four bytes"});
    let refused = store.complete(job.clone(), too_big).await;
    assert!(matches!(refused, Err(Error::InvalidInput { field: "result_payload", .. })));

    let outcome =
        store.fail(job, greenlight_core::Failure::retryable("x")).await.expect("fail").into_any();
    let expected = greenlight_core::add_duration(clock.now(), Duration::from_secs(9));
    assert_eq!(outcome.data().run_at, expected, "the fixed policy decides the delay");
}

#[tokio::test]
async fn clones_share_the_jobs_and_work_as_trait_objects() {
    let store = MemoryStore::new();
    let shared: Arc<dyn Store> = Arc::new(store.clone());

    let id = shared.enqueue(new_job()).await.expect("enqueue").id();

    assert_eq!(store.len().expect("len"), 1);
    assert_eq!(store.get(id).await.expect("get").map(|job| job.id()), Some(id));
    assert!(format!("{store:?}").contains("jobs: Some(1)"));
}

#[tokio::test]
async fn wakeups_follow_enqueue_release_and_requeue_without_loss() {
    let store = MemoryStore::new();
    let mut wakeups = store.wakeups().await.expect("wakeups").expect("the memory store has them");
    assert_eq!(wakeups.next().now_or_never(), None, "nothing happened yet");

    // Two enqueues while nobody polls: the wake-up is kept, not lost, and
    // one is enough to send the worker claiming.
    store.enqueue(new_job()).await.expect("enqueue");
    store.enqueue_many(vec![new_job()]).await.expect("enqueue_many");
    assert_eq!(wakeups.next().now_or_never(), Some(Some(())));
    assert_eq!(wakeups.next().now_or_never(), None);

    let claimed = store.claim(&request()).await.expect("claim");
    assert_eq!(wakeups.next().now_or_never(), None, "a claim makes no new work");
    let mut claimed = claimed.into_iter();
    let first = claimed.next().expect("two jobs were claimed");
    store.release(first).await.expect("release");
    assert_eq!(wakeups.next().now_or_never(), Some(Some(())), "a released job is ready");

    let second = claimed.next().expect("two jobs were claimed");
    let failure = greenlight_core::Failure::permanent("no");
    let id = store.fail(second, failure).await.expect("fail").id();
    store.requeue(id).await.expect("requeue");
    assert_eq!(wakeups.next().now_or_never(), Some(Some(())), "a requeued job is ready");

    drop(store);
    assert_eq!(wakeups.next().await, None, "the stream ends with the store");
}

#[tokio::test]
async fn a_clock_set_backwards_holds_jobs_back_again() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let enqueued_at = clock.now();
    store.enqueue(new_job()).await.expect("enqueue");
    store.enqueue(new_job()).await.expect("enqueue");
    assert_eq!(store.stats().await.expect("stats").ready, 2);

    clock.set(enqueued_at - greenlight_core::chrono::TimeDelta::hours(1));
    assert!(store.claim(&request()).await.expect("claim").is_empty());
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.pending), (0, 2));
    assert_eq!(stats.next_scheduled_in, Some(Duration::from_secs(3600)));

    clock.set(enqueued_at);
    assert_eq!(store.claim(&request()).await.expect("claim").len(), 2);
}

#[tokio::test]
async fn ids_are_unique_across_many_jobs() {
    let store = MemoryStore::new();
    let jobs = (0..5000).map(|_| new_job()).collect();

    let enqueued = store.enqueue_many(jobs).await.expect("enqueue_many");

    let ids: std::collections::HashSet<_> =
        enqueued.iter().map(greenlight_core::Enqueued::id).collect();
    assert_eq!(ids.len(), 5000);
    assert!(ids.iter().all(|id| id.as_uuid().get_version_num() == 4), "ids are version 4 UUIDs");
}

/// The same id with some of its random bits changed: it names the same
/// slot of the store (the last four bytes are kept) but is another id.
fn same_slot_other_id(id: JobId) -> JobId {
    let mut bytes = *id.as_uuid().as_bytes();
    bytes[0] ^= 0xff;
    JobId(uuid::Uuid::from_bytes(bytes))
}

#[tokio::test]
async fn only_a_jobs_own_id_finds_it() {
    let store = MemoryStore::new();
    let id = store.enqueue(new_job()).await.expect("enqueue").id();
    let impostor = same_slot_other_id(id);

    assert!(store.get(id).await.expect("get").is_some());
    assert!(store.get(impostor).await.expect("get").is_none());
    let error = store.cancel(impostor, "not mine").await.expect_err("no such job");
    assert!(matches!(error, Error::NotFound { id } if id == impostor), "{error:?}");
    // A job id never seen, whatever slot it names, is simply not found.
    assert!(store.get(JobId::random()).await.expect("get").is_none());
    assert_eq!(store.len().expect("len"), 1);
}

#[tokio::test]
async fn a_pruned_jobs_id_stays_unknown_when_its_place_is_reused() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let old = store.enqueue(new_job()).await.expect("enqueue").id();
    store.cancel(old, "done with it").await.expect("cancel");
    clock.advance(Duration::from_secs(60));
    let request =
        PruneRequest { status: Status::Failed, older_than: Duration::from_secs(1), batch_size: 10 };
    assert_eq!(store.prune(&request).await.expect("prune"), 1);

    // The next job takes the freed place, under a new id.
    let new = store.enqueue(new_job()).await.expect("enqueue").id();
    assert_ne!(new, old);
    assert!(store.get(old).await.expect("get").is_none(), "the pruned id finds nothing");
    assert_eq!(store.get(new).await.expect("get").map(|job| job.id()), Some(new));
    assert_eq!(store.len().expect("len"), 1);
}
