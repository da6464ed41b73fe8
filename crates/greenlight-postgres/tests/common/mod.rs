//! Test helpers for this crate: the per-test databases come from
//! `greenlight_testkit::postgres` (shared with the worker and CLI tests);
//! here, a store that owns its database, for the conformance suite.

#![allow(dead_code, reason = "each test binary uses its own part of the helper")]
#![allow(unreachable_pub, reason = "a test helper module, not a public API")]

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{
    AnyJob, ClaimRequest, Complete, Enqueued, Executing, ExecutionId, FailOutcome, Failed, Failure,
    Job, JobId, JobPage, ListFilter, ManualClock, NewJob, Pending, PruneRequest, Rescued, Result,
    RetryPolicy, Stats, Store, Wakeups,
};
use greenlight_postgres::PgStore;
#[allow(unused_imports, reason = "each test binary uses its own part of the helper")]
pub use greenlight_testkit::postgres::{TestDb, admin, database_url, execute, run_sql, url_for};
use serde_json::Value;

/// A store on its own fresh database, driven by `clock`, retrying with
/// `policy`.
pub async fn store_with(clock: ManualClock, policy: RetryPolicy) -> TestStore {
    let db = TestDb::new().await;
    let store = PgStore::builder(db.url())
        .clock(Arc::new(clock))
        .retry_policy(policy)
        .build()
        .expect("build the store");
    TestStore { store, db: Arc::new(db) }
}

/// A [`PgStore`] that owns its test database, so the database goes when
/// the store does.
#[derive(Debug, Clone)]
pub struct TestStore {
    /// The store under test.
    pub store: PgStore,
    /// Its database; declared after the store so the pool closes first.
    pub db: Arc<TestDb>,
}

#[greenlight_core::async_trait]
impl Store for TestStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.store.enqueue(job).await
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        self.store.enqueue_many(jobs).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>> {
        self.store.claim(request).await
    }
    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>> {
        self.store.heartbeat(job, lease).await
    }
    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>> {
        self.store.record_execution_id(job, execution_id).await
    }
    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        self.store.complete(job, result).await
    }
    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>> {
        self.store.complete_many(jobs).await
    }
    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome> {
        self.store.fail(job, failure).await
    }
    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>> {
        self.store.release(job).await
    }
    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>> {
        self.store.cancel(id, reason).await
    }
    async fn requeue(&self, id: JobId) -> Result<Job<Pending>> {
        self.store.requeue(id).await
    }
    async fn rescue_expired(&self) -> Result<Rescued> {
        self.store.rescue_expired().await
    }
    async fn get(&self, id: JobId) -> Result<Option<AnyJob>> {
        self.store.get(id).await
    }
    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>> {
        self.store.get_by_execution_id(execution_id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<JobPage> {
        self.store.list(filter).await
    }
    async fn stats(&self) -> Result<Stats> {
        self.store.stats().await
    }
    async fn has_work_within(&self, horizon: Duration) -> Result<bool> {
        self.store.has_work_within(horizon).await
    }
    async fn prune(&self, request: &PruneRequest) -> Result<u64> {
        self.store.prune(request).await
    }
    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        self.store.wakeups().await
    }
}
