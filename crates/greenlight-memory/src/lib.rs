//! An in-memory [`Store`] for the Greenlight queue, with the same semantics
//! as the PostgreSQL store: both pass the conformance suite of
//! `greenlight-testkit`. It is what a domain layer's unit tests use.
//!
//! Every transition is the core's own pure function applied to the stored
//! job, so the rules (retry counting, backoff, fencing) cannot drift from
//! the core. Time comes from an injected [`Clock`]: with a
//! [`ManualClock`](greenlight_core::ManualClock) a test moves time forward
//! instead of sleeping.
//!
//! Defaults, all set through [`MemoryStore::builder`]: the system clock,
//! [`RetryPolicy::default`] and [`PayloadLimits::default`].
//!
//! Claims are served from an index ordered as the claim orders (priority,
//! then `run_at`, then id) and the rescuer from an index on lease expiry,
//! so neither scans the jobs; `list`, `stats` and `prune` scan, as operator
//! queries that no hot path calls.
//!
//! ```
//! use std::time::Duration;
//! use greenlight_core::{
//!     ClaimRequest, Failure, LearnerId, ManualClock, NewJob, RetryPolicy, Status, Store,
//!     WorkerId,
//! };
//! use greenlight_memory::MemoryStore;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), greenlight_core::Error> {
//! let clock = ManualClock::starting_now();
//! let store = MemoryStore::builder()
//!     .clock(clock.clone())
//!     .retry_policy(RetryPolicy::fixed(Duration::from_secs(5)))
//!     .build();
//!
//! // The domain layer enqueues a learner's submission.
//! let learner = LearnerId::random();
//! let new = NewJob::builder(learner, json!({"language": "python", "code": "print(1)"}))
//!     .build()?;
//! let id = store.enqueue(new).await?.id();
//!
//! // A worker claims it, and Greenlight times out: the job waits 5 s.
//! let request = ClaimRequest {
//!     worker_id: WorkerId::new("test-worker")?,
//!     limit: 10,
//!     lease: Duration::from_secs(30),
//! };
//! let job = store.claim(&request).await?.remove(0);
//! let outcome = store.fail(job, Failure::retryable("greenlight timed out")).await?;
//! assert!(outcome.is_retrying());
//! assert!(store.claim(&request).await?.is_empty(), "the retry waits for its backoff");
//!
//! // Time moves on without sleeping, and the retry succeeds.
//! clock.advance(Duration::from_secs(5));
//! let job = store.claim(&request).await?.remove(0);
//! store.complete(job, json!({"stdout": "1\n"})).await?;
//! let stored = store.get(id).await?.expect("the job is stored");
//! assert_eq!(stored.status(), Status::Complete);
//! assert_eq!(stored.data().retry_count, 1);
//! # Ok(())
//! # }
//! ```

mod state;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use greenlight_core::chrono::{DateTime, TimeDelta, Utc};
use greenlight_core::serde_json::Value;
use greenlight_core::{
    AnyJob, ClaimRequest, Clock, Complete, Enqueued, Error, Executing, ExecutionId, FailOutcome,
    Failed, Failure, Job, JobId, JobPage, ListCursor, ListFilter, NewJob, PayloadLimits, Pending,
    PruneRequest, Rescued, Result, RetryPolicy, Stats, Status, Store, SystemClock, Wakeups,
    async_trait,
};
use tokio::sync::watch;

use crate::state::State;

/// The shortest lease a heartbeat may ask for, the same bound as
/// [`ClaimRequest::validate`] puts on a claim's lease.
const MIN_LEASE: Duration = Duration::from_millis(1);

/// The in-memory store.
///
/// Cloning gives another handle on the same jobs, so a test can hand one
/// clone to a worker and keep one to check on. All handles are safe to use
/// from many tasks and threads at once: every operation takes one lock,
/// does its work without awaiting, and releases it.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    retry_policy: RetryPolicy,
    payload_limits: PayloadLimits,
    /// Bumped when work becomes ready at once (enqueue, release, requeue).
    /// A watch channel, unlike a bare `Notify`, never loses a wake-up that
    /// lands while a waiter is busy claiming: the receiver remembers it.
    wake: watch::Sender<u64>,
}

impl MemoryStore {
    /// A store on the system clock, with [`RetryPolicy::default`] and
    /// [`PayloadLimits::default`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts a store with non-default settings.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            retry_policy: RetryPolicy::default(),
            payload_limits: PayloadLimits::default(),
        }
    }

    /// The clock the store reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The policy that decides when a failed job runs again.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry_policy
    }

    /// The bounds results are checked against.
    pub fn payload_limits(&self) -> &PayloadLimits {
        &self.inner.payload_limits
    }

    /// How many jobs are stored, in any status.
    pub fn len(&self) -> Result<usize> {
        Ok(self.lock()?.len())
    }

    /// Whether no job is stored.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Takes the one lock. A panic while it was held may have left the
    /// indexes half updated, so a poisoned lock is reported rather than
    /// trusted.
    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.inner
            .state
            .lock()
            .map_err(|_| Error::storage("memory store is poisoned: a panic interrupted an update"))
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn wake(&self) {
        // Without receivers nobody is waiting, and a later subscriber claims
        // whatever is ready before it first waits.
        if self.inner.wake.receiver_count() > 0 {
            self.inner.wake.send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The jobs themselves could be many; their count says enough.
        let jobs = self.inner.state.lock().map(|state| state.len()).ok();
        f.debug_struct("MemoryStore")
            .field("jobs", &jobs)
            .field("clock", &self.inner.clock)
            .field("retry_policy", &self.inner.retry_policy)
            .field("payload_limits", &self.inner.payload_limits)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`MemoryStore`], from [`MemoryStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    clock: Arc<dyn Clock>,
    retry_policy: RetryPolicy,
    payload_limits: PayloadLimits,
}

impl MemoryStoreBuilder {
    /// The clock the store reads. Default: [`SystemClock`]. Pass a clone of
    /// a [`ManualClock`](greenlight_core::ManualClock) to move time by hand.
    pub fn clock(self, clock: impl Clock + 'static) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    /// The clock the store reads, already shared. Default: [`SystemClock`].
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// When failed jobs run again. Default: [`RetryPolicy::default`].
    pub fn retry_policy(mut self, retry_policy: RetryPolicy) -> Self {
        self.retry_policy = retry_policy;
        self
    }

    /// Bounds on the request payloads enqueued and the results passed to
    /// `complete`. Default: [`PayloadLimits::default`]. A [`NewJob`] is
    /// checked against its builder's limits when built and against the
    /// store's when enqueued, so the tighter of the two wins.
    pub fn payload_limits(mut self, payload_limits: PayloadLimits) -> Self {
        self.payload_limits = payload_limits;
        self
    }

    /// The store, empty.
    pub fn build(self) -> MemoryStore {
        let (wake, _) = watch::channel(0);
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new()),
                clock: self.clock,
                retry_policy: self.retry_policy,
                payload_limits: self.payload_limits,
                wake,
            }),
        }
    }
}

/// What `enqueue_many` does with one job of the batch, decided before
/// anything is written so that the batch is all or none.
enum Plan {
    /// The key names a stored job.
    Existing(JobId),
    /// The key repeats an earlier job of the same batch, at this index.
    SameAs(usize),
    /// A new job.
    Create,
}

fn broken_index(id: JobId) -> Error {
    Error::storage(format!("memory store index names job {id}, which is not stored"))
}

fn duplicate(execution_id: &ExecutionId) -> Error {
    Error::DuplicateExecutionId { execution_id: execution_id.as_str().to_owned() }
}

fn check_lease(lease: Duration) -> Result<()> {
    if lease < MIN_LEASE {
        return Err(Error::invalid("lease", "must be at least one millisecond"));
    }
    Ok(())
}

/// When a terminal job finished (`completed_at`), or `None` for a live one.
fn completed_at(job: &AnyJob) -> Option<DateTime<Utc>> {
    match job {
        AnyJob::Complete(job) => Some(job.state().completed_at),
        AnyJob::Failed(job) => Some(job.state().failed_at),
        AnyJob::Pending(_) | AnyJob::Executing(_) => None,
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.check_limits(&self.inner.payload_limits)?;
        let now = self.now();
        let enqueued = {
            let mut state = self.lock()?;
            if let Some(id) = job.idempotency_key().and_then(|key| state.id_for_key(key)) {
                let existing = state.get(id).ok_or_else(|| broken_index(id))?;
                return Ok(Enqueued::Existing(existing.clone()));
            }
            if let Some(execution_id) = job.execution_id()
                && state.id_for_execution_id(execution_id).is_some()
            {
                return Err(duplicate(execution_id));
            }

            Enqueued::Created(state.insert_new(job, now)?)
        };
        self.wake();
        Ok(enqueued)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        // This store's limits may be tighter than those the jobs were
        // built with; one job over them refuses the whole batch.
        for job in &jobs {
            job.check_limits(&self.inner.payload_limits)?;
        }
        let now = self.now();
        let enqueued = {
            let mut state = self.lock()?;

            // Decide every job's fate and find every conflict first: an
            // error here leaves the store untouched.
            let mut plans = Vec::with_capacity(jobs.len());
            let mut batch_keys = std::collections::HashMap::new();
            let mut batch_execution_ids = std::collections::HashSet::new();
            for (index, job) in jobs.iter().enumerate() {
                if let Some(key) = job.idempotency_key() {
                    if let Some(id) = state.id_for_key(key) {
                        plans.push(Plan::Existing(id));
                        continue;
                    }
                    if let Some(&first) = batch_keys.get(key) {
                        plans.push(Plan::SameAs(first));
                        continue;
                    }
                    batch_keys.insert(key, index);
                }
                if let Some(execution_id) = job.execution_id()
                    && (state.id_for_execution_id(execution_id).is_some()
                        || !batch_execution_ids.insert(execution_id))
                {
                    return Err(duplicate(execution_id));
                }
                plans.push(Plan::Create);
            }
            drop(batch_keys);
            drop(batch_execution_ids);
            state.check_room(plans.iter().filter(|plan| matches!(plan, Plan::Create)).count())?;

            // Then write.
            let mut enqueued: Vec<Enqueued> = Vec::with_capacity(jobs.len());
            for (job, plan) in jobs.into_iter().zip(plans) {
                let answer = match plan {
                    Plan::Existing(id) => {
                        let existing = state.get(id).ok_or_else(|| broken_index(id))?;
                        Enqueued::Existing(existing.clone())
                    }
                    Plan::SameAs(first) => Enqueued::Existing(enqueued[first].clone().into_any()),
                    Plan::Create => Enqueued::Created(state.insert_new(job, now)?),
                };
                enqueued.push(answer);
            }
            enqueued
        };
        if enqueued.iter().any(Enqueued::is_created) {
            self.wake();
        }
        Ok(enqueued)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>> {
        request.validate()?;
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.lock()?.claim(&request.worker_id, request.lease, request.limit, now)
    }

    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>> {
        check_lease(lease)?;
        let now = self.now();
        let mut state = self.lock()?;
        let (slot, held) = state.take_held(job)?;
        let extended = held.heartbeat(lease, now);
        state.put_executing(slot, extended.clone());
        Ok(extended)
    }

    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>> {
        let mut state = self.lock()?;
        let previous = state.check_held(job)?.data().execution_id.clone();
        match state.id_for_execution_id(&execution_id) {
            Some(owner) if owner != job.id() => return Err(duplicate(&execution_id)),
            _ => {}
        }

        let (slot, held) = state.take_held(job)?;
        let recorded = held.record_execution_id(execution_id.clone());
        state.index_execution_id(job.id(), previous.as_ref(), &execution_id);
        state.put_executing(slot, recorded.clone());
        Ok(recorded)
    }

    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        self.inner.payload_limits.check_result(&result)?;
        let now = self.now();
        let mut state = self.lock()?;
        let (slot, held) = state.take_held(&job)?;
        let complete = held.complete(result, now);
        state.put_unindexed(slot, complete.clone().into_any());
        Ok(complete)
    }

    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>> {
        let now = self.now();
        let mut state = self.lock()?;
        let answers = jobs
            .into_iter()
            .map(|(job, result)| {
                self.inner.payload_limits.check_result(&result)?;
                let (slot, held) = state.take_held(&job)?;
                let complete = held.complete(result, now);
                state.put_unindexed(slot, complete.clone().into_any());
                Ok(complete)
            })
            .collect();
        Ok(answers)
    }

    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome> {
        let now = self.now();
        let mut state = self.lock()?;
        let (slot, held) = state.take_held(&job)?;
        let outcome = if failure.retryable {
            held.fail(&failure.message, &self.inner.retry_policy, now)
        } else {
            FailOutcome::Failed(held.fail_permanently(&failure.message, now))
        };
        match &outcome {
            FailOutcome::Retrying(pending) => state.put_pending(slot, pending.clone(), now),
            FailOutcome::Failed(failed) => state.put_unindexed(slot, failed.clone().into_any()),
        }
        Ok(outcome)
    }

    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>> {
        let now = self.now();
        let released = {
            let mut state = self.lock()?;
            let (slot, held) = state.take_held(&job)?;
            let released = held.release(now);
            state.put_pending(slot, released.clone(), now);
            released
        };
        self.wake();
        Ok(released)
    }

    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>> {
        let now = self.now();
        let mut state = self.lock()?;
        let actual = state.get(id).ok_or(Error::NotFound { id })?.status();
        if actual != Status::Pending {
            return Err(Error::WrongState { id, expected: Status::Pending, actual });
        }

        let (slot, pending) = state.take_pending(id).ok_or_else(|| broken_index(id))?;
        let cancelled = pending.cancel(reason, now);
        state.put_unindexed(slot, cancelled.clone().into_any());
        Ok(cancelled)
    }

    async fn requeue(&self, id: JobId) -> Result<Job<Pending>> {
        let now = self.now();
        let requeued = {
            let mut state = self.lock()?;
            let actual = state.get(id).ok_or(Error::NotFound { id })?.status();
            if actual != Status::Failed {
                return Err(Error::WrongState { id, expected: Status::Failed, actual });
            }

            let Some((slot, AnyJob::Failed(failed))) = state.remove_raw(id) else {
                return Err(broken_index(id));
            };
            let requeued = failed.requeue(now);
            state.put_pending(slot, requeued.clone(), now);
            requeued
        };
        self.wake();
        Ok(requeued)
    }

    async fn rescue_expired(&self) -> Result<Rescued> {
        let now = self.now();
        let mut rescued = Rescued::default();
        let mut state = self.lock()?;
        for id in state.take_expired(now) {
            let Some((slot, AnyJob::Executing(job))) = state.remove_raw(id) else {
                return Err(broken_index(id));
            };
            match job.expire_lease(&self.inner.retry_policy, now) {
                FailOutcome::Retrying(pending) => {
                    rescued.retried += 1;
                    state.put_pending(slot, pending, now);
                }
                FailOutcome::Failed(failed) => {
                    rescued.failed += 1;
                    state.put_unindexed(slot, failed.into_any());
                }
            }
        }
        // No wake-up: a rescued job waits out its backoff, so a worker
        // woken now would find nothing to claim.
        Ok(rescued)
    }

    async fn get(&self, id: JobId) -> Result<Option<AnyJob>> {
        Ok(self.lock()?.get(id).cloned())
    }

    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>> {
        let state = self.lock()?;
        let Some(id) = state.id_for_execution_id(execution_id) else { return Ok(None) };
        Ok(Some(state.get(id).ok_or_else(|| broken_index(id))?.clone()))
    }

    async fn list(&self, filter: &ListFilter) -> Result<JobPage> {
        filter.validate()?;
        let state = self.lock()?;

        // Listing is an operator's query, not the hot path: a scan and a
        // sort of the matching keys keeps the store free of an index that
        // every enqueue would pay for.
        let mut keys: Vec<(DateTime<Utc>, JobId)> = state
            .jobs()
            .filter(|job| filter.matches(job) && filter.after.is_none_or(|at| at.precedes(job)))
            .map(|job| (job.data().queued_at, job.id()))
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(filter.limit);

        let jobs: Vec<AnyJob> = keys
            .into_iter()
            .map(|(_, id)| state.get(id).cloned().ok_or_else(|| broken_index(id)))
            .collect::<Result<_>>()?;
        let next =
            if jobs.len() == filter.limit { jobs.last().map(ListCursor::after) } else { None };
        Ok(JobPage { jobs, next })
    }

    async fn stats(&self) -> Result<Stats> {
        let now = self.now();
        let state = self.lock()?;
        let mut counts = Stats::default();
        let mut oldest_ready: Option<DateTime<Utc>> = None;
        let mut next_scheduled: Option<DateTime<Utc>> = None;
        for job in state.jobs() {
            match job {
                AnyJob::Pending(job) => {
                    counts.pending += 1;
                    let run_at = job.data().run_at;
                    if job.is_ready(now) {
                        counts.ready += 1;
                        oldest_ready = Some(oldest_ready.map_or(run_at, |old| old.min(run_at)));
                    } else {
                        next_scheduled = Some(next_scheduled.map_or(run_at, |old| old.min(run_at)));
                    }
                }
                AnyJob::Executing(job) => {
                    counts.executing += 1;
                    if job.is_lease_expired(now) {
                        counts.expired_leases += 1;
                    }
                }
                AnyJob::Complete(_) => counts.complete += 1,
                AnyJob::Failed(_) => counts.failed += 1,
            }
        }
        // A ready job's run_at is at most now and a waiting one's is later,
        // so neither difference is negative and both convert.
        counts.oldest_ready_age =
            oldest_ready.map(|run_at| (now - run_at).to_std().unwrap_or_default());
        counts.next_scheduled_in =
            next_scheduled.map(|run_at| (run_at - now).to_std().unwrap_or_default());
        Ok(counts)
    }

    async fn prune(&self, request: &PruneRequest) -> Result<u64> {
        request.validate()?;
        let now = self.now();
        // An age beyond what chrono can represent reaches before any job.
        let Some(cutoff) = TimeDelta::from_std(request.older_than)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
        else {
            return Ok(0);
        };

        let mut state = self.lock()?;
        let mut doomed: Vec<(DateTime<Utc>, JobId)> = state
            .jobs()
            .filter(|job| job.status() == request.status)
            .filter_map(|job| completed_at(job).map(|at| (at, job.id())))
            .filter(|&(at, _)| at < cutoff)
            .collect();
        // The oldest go first, as a batched prune in SQL would take them.
        doomed.sort_unstable();
        doomed.truncate(request.batch_size);
        for &(_, id) in &doomed {
            state.delete_terminal(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        let receiver = self.inner.wake.subscribe();
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            // The sender lives as long as the store; once the store is gone
            // no work can arrive and the stream ends.
            receiver.changed().await.ok()?;
            Some(((), receiver))
        });
        Ok(Some(Box::pin(stream)))
    }
}
