//! The worker against the in-memory store, with the manual clock: every
//! scenario in `common` plus the checks that need no store at all.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{
    AnyJob, ClaimRequest, Complete, Enqueued, Error, Executing, ExecutionId, FailOutcome, Failed,
    Failure, Job, JobId, JobPage, LearnerId, ListFilter, ManualClock, NewJob, Pending,
    PruneRequest, Rescued, Result, RetryPolicy, Stats, Store,
};
use greenlight_memory::MemoryStore;
use greenlight_worker::{ExecuteError, FnExecutor, Worker};
use serde_json::{Value, json};

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

/// Delegates to a memory store, but its first heartbeat fails as a dead
/// pooled connection would, and it notes when each heartbeat came.
#[derive(Debug)]
struct FirstBeatFails {
    inner: MemoryStore,
    beats: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

#[greenlight_core::async_trait]
impl Store for FirstBeatFails {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.inner.enqueue(job).await
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        self.inner.enqueue_many(jobs).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>> {
        self.inner.claim(request).await
    }
    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>> {
        let first = {
            let mut beats = self.beats.lock().expect("not poisoned");
            beats.push(tokio::time::Instant::now());
            beats.len() == 1
        };
        if first {
            return Err(Error::Unavailable { message: "connection closed".into(), source: None });
        }
        self.inner.heartbeat(job, lease).await
    }
    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>> {
        self.inner.record_execution_id(job, execution_id).await
    }
    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        self.inner.complete(job, result).await
    }
    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>> {
        self.inner.complete_many(jobs).await
    }
    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome> {
        self.inner.fail(job, failure).await
    }
    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>> {
        self.inner.release(job).await
    }
    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>> {
        self.inner.cancel(id, reason).await
    }
    async fn requeue(&self, id: JobId) -> Result<Job<Pending>> {
        self.inner.requeue(id).await
    }
    async fn rescue_expired(&self) -> Result<Rescued> {
        self.inner.rescue_expired().await
    }
    async fn get(&self, id: JobId) -> Result<Option<AnyJob>> {
        self.inner.get(id).await
    }
    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>> {
        self.inner.get_by_execution_id(execution_id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<JobPage> {
        self.inner.list(filter).await
    }
    async fn stats(&self) -> Result<Stats> {
        self.inner.stats().await
    }
    async fn prune(&self, request: &PruneRequest) -> Result<u64> {
        self.inner.prune(request).await
    }
}

/// A heartbeat that meets a storage fault is tried again at once, on what
/// would be a fresh connection, rather than a third of a lease later: one
/// dead connection must not cost a third of the lease. Tokio's clock is
/// paused, so "at once" is exact and nothing here depends on the machine's
/// speed.
#[tokio::test(start_paused = true)]
async fn a_failed_heartbeat_is_retried_at_once() {
    let store = Arc::new(FirstBeatFails {
        inner: MemoryStore::new(),
        beats: std::sync::Mutex::new(Vec::new()),
    });
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

    let beats = store.beats.lock().expect("not poisoned").clone();
    assert_eq!(beats.len(), 2, "the failed beat and its retry, no more: {beats:?}");
    assert_eq!(beats[0], beats[1], "the retry comes at once");
    assert!(beats[0] - started >= lease / 3, "the first beat waits a third of the lease");
    let stored = store.get(id).await.expect("get").expect("the job");
    assert_eq!(stored.status(), greenlight_core::Status::Complete);
}
