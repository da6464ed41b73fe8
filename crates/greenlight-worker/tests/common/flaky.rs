//! A store that fails on purpose, for testing how the worker rides out
//! storage faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use greenlight_core::{
    AnyJob, ClaimRequest, Complete, Enqueued, Error, Executing, ExecutionId, FailOutcome, Failed,
    Failure, Job, JobId, JobPage, ListFilter, NewJob, Pending, PruneRequest, Rescued, Result,
    Stats, Store, Wakeups, async_trait,
};
use serde_json::Value;

/// Wraps a store and fails some of its calls with `Unavailable`, by one of
/// two rules (see [`Rule`]). It also notes when each heartbeat came, on
/// tokio's clock, so a test can follow the beats.
#[derive(Debug)]
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    rule: Rule,
    calls: AtomicU64,
    faults: AtomicU64,
    heartbeats: Mutex<Vec<tokio::time::Instant>>,
    claims: ClaimGauge,
    completions: ClaimGauge,
}

/// How many calls of one kind were in flight at once, at most, and (for
/// claims) what they asked.
#[derive(Debug, Default)]
struct ClaimGauge {
    now: AtomicU64,
    most: AtomicU64,
    limits: Mutex<Vec<usize>>,
}

/// Which calls fail.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Every n-th call of any kind. Odd faults fail before the call reaches
    /// the store; even ones after it, so the write happened but its answer
    /// was lost, like a connection dropping mid-reply.
    EveryNth(u64),
    /// Only the first heartbeat, before it reaches the store, as a dead
    /// pooled connection would fail it.
    FirstHeartbeat,
    /// Nothing fails, and `rescue_expired` takes nothing back: a worker on
    /// this store never rescues.
    NoRescue,
    /// Nothing fails; every claim and every `complete_many` takes this long
    /// (on tokio's clock) before it reaches the store, so that they can
    /// overlap.
    SlowWrites(Duration),
    /// Nothing fails, and `wakeups` never answers: the subscription hangs.
    StuckWakeups,
}

enum Fault {
    None,
    Before,
    After,
}

impl FlakyStore {
    /// Every `every`-th call fails.
    pub fn new(inner: Arc<dyn Store>, every: u64) -> Self {
        Self::with_rule(inner, Rule::EveryNth(every))
    }

    /// Only the first heartbeat fails.
    pub fn failing_first_heartbeat(inner: Arc<dyn Store>) -> Self {
        Self::with_rule(inner, Rule::FirstHeartbeat)
    }

    /// Nothing fails; every claim and every `complete_many` waits `delay`
    /// before it reaches the store.
    pub fn slow_writes(inner: Arc<dyn Store>, delay: Duration) -> Self {
        Self::with_rule(inner, Rule::SlowWrites(delay))
    }

    /// Nothing fails, and `rescue_expired` takes nothing back.
    pub fn without_rescue(inner: Arc<dyn Store>) -> Self {
        Self::with_rule(inner, Rule::NoRescue)
    }

    /// Nothing fails, and asking for wake-ups hangs for ever.
    pub fn stuck_wakeups(inner: Arc<dyn Store>) -> Self {
        Self::with_rule(inner, Rule::StuckWakeups)
    }

    /// The most `complete_many` calls that were in flight at once.
    pub fn most_completions_at_once(&self) -> u64 {
        self.completions.most.load(Ordering::SeqCst)
    }

    /// The most claims that were in flight at once.
    pub fn most_claims_at_once(&self) -> u64 {
        self.claims.most.load(Ordering::SeqCst)
    }

    /// The limit of every claim so far, in the order they came.
    pub fn claim_limits(&self) -> Vec<usize> {
        self.claims.limits.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn with_rule(inner: Arc<dyn Store>, rule: Rule) -> Self {
        Self {
            inner,
            rule,
            calls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            heartbeats: Mutex::new(Vec::new()),
            claims: ClaimGauge::default(),
            completions: ClaimGauge::default(),
        }
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }

    /// When each heartbeat call came, failed or not.
    pub fn heartbeats(&self) -> Vec<tokio::time::Instant> {
        self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn next_fault(&self) -> Fault {
        let Rule::EveryNth(every) = self.rule else { return Fault::None };
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !call.is_multiple_of(every) {
            return Fault::None;
        }
        let fault = self.faults.fetch_add(1, Ordering::SeqCst) + 1;
        if fault % 2 == 1 { Fault::Before } else { Fault::After }
    }

    async fn call<T, F>(&self, operation: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        match self.next_fault() {
            Fault::None => operation.await,
            Fault::Before => Err(Error::unavailable("injected fault before the call")),
            Fault::After => {
                let _ = operation.await;
                Err(Error::unavailable("injected fault after the call"))
            }
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.call(self.inner.enqueue(job)).await
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        self.call(self.inner.enqueue_many(jobs)).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>> {
        // A claim whose answer is lost would strand its jobs until their
        // leases expire; that is the rescuer's business, tested elsewhere,
        // so claims only fail before reaching the store.
        let gauge = &self.claims;
        gauge.limits.lock().unwrap_or_else(PoisonError::into_inner).push(request.limit);
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.most.fetch_max(now, Ordering::SeqCst);
        if let Rule::SlowWrites(delay) = self.rule {
            tokio::time::sleep(delay).await;
        }
        let claimed = match self.next_fault() {
            Fault::None => self.inner.claim(request).await,
            Fault::Before | Fault::After => Err(Error::unavailable("injected fault")),
        };
        gauge.now.fetch_sub(1, Ordering::SeqCst);
        claimed
    }

    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>> {
        let beat = {
            let mut heartbeats = self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner);
            heartbeats.push(tokio::time::Instant::now());
            heartbeats.len()
        };
        if matches!(self.rule, Rule::FirstHeartbeat) && beat == 1 {
            self.faults.fetch_add(1, Ordering::SeqCst);
            return Err(Error::unavailable("injected fault on the first heartbeat"));
        }
        self.call(self.inner.heartbeat(job, lease)).await
    }

    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>> {
        self.call(self.inner.record_execution_id(job, execution_id)).await
    }

    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        self.call(self.inner.complete(job, result)).await
    }

    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>> {
        let gauge = &self.completions;
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.most.fetch_max(now, Ordering::SeqCst);
        if let Rule::SlowWrites(delay) = self.rule {
            tokio::time::sleep(delay).await;
        }
        let completed = self.call(self.inner.complete_many(jobs)).await;
        gauge.now.fetch_sub(1, Ordering::SeqCst);
        completed
    }

    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome> {
        self.call(self.inner.fail(job, failure)).await
    }

    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>> {
        self.call(self.inner.release(job)).await
    }

    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>> {
        self.call(self.inner.cancel(id, reason)).await
    }

    async fn requeue(&self, id: JobId) -> Result<Job<Pending>> {
        self.call(self.inner.requeue(id)).await
    }

    async fn rescue_expired(&self) -> Result<Rescued> {
        if matches!(self.rule, Rule::NoRescue) {
            return Ok(Rescued::default());
        }
        self.call(self.inner.rescue_expired()).await
    }

    async fn get(&self, id: JobId) -> Result<Option<AnyJob>> {
        self.call(self.inner.get(id)).await
    }

    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>> {
        self.call(self.inner.get_by_execution_id(execution_id)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<JobPage> {
        self.call(self.inner.list(filter)).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.call(self.inner.stats()).await
    }

    async fn has_work_within(&self, horizon: Duration) -> Result<bool> {
        self.call(self.inner.has_work_within(horizon)).await
    }

    async fn prune(&self, request: &PruneRequest) -> Result<u64> {
        self.call(self.inner.prune(request)).await
    }

    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        if matches!(self.rule, Rule::StuckWakeups) {
            std::future::pending::<()>().await;
        }
        self.inner.wakeups().await
    }
}
