//! The storage contract every adapter implements.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    AnyJob, Complete, Error, Executing, ExecutionId, FailOutcome, Failed, Job, JobId, LearnerId,
    NewJob, Pending, Result, Status, WorkerId,
};

/// A stream that yields whenever new work may be ready (PostgreSQL's
/// NOTIFY). It carries no data: a wake-up only says "claim now".
pub type Wakeups = Pin<Box<dyn futures_core::Stream<Item = ()> + Send>>;

/// The largest batch one `claim` or `list` call hands back.
pub const MAX_BATCH: usize = 10_000;

/// The storage behind the queue.
///
/// Implemented by the in-memory store (unit tests) and the PostgreSQL store
/// (production); both pass the conformance suite in `greenlight-testkit`, so
/// code written against this trait behaves the same on either. It works as
/// a generic bound and as a trait object (`Arc<dyn Store>`).
///
/// Fencing: every write to an executing job names the attempt the caller
/// holds. The write succeeds while that attempt is current, even after the
/// lease's expiry time, until a rescue or another claim moves the job on;
/// from then on it changes nothing and returns [`Error::LeaseLost`].
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds a job. With an idempotency key already seen, adds nothing and
    /// returns the existing job.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Adds many jobs at once, all or none; the answers are in input order.
    /// A key repeated within the batch enqueues once.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// Claims up to `request.limit` ready jobs (pending, `run_at` passed):
    /// highest priority first, then earliest `run_at`, then id. No job is
    /// ever handed to two claimers.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>>;

    /// Extends the lease on a job the caller holds to `lease` from now.
    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>>;

    /// Stores the Greenlight execution id of a job the caller holds, at
    /// once, so a worker that takes the job over can resume instead of
    /// submitting again.
    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>>;

    /// Completes a job the caller holds.
    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>>;

    /// Completes many jobs in one write. The outer error is the storage's;
    /// each inner result is that job's own (a lost lease, say), in input
    /// order.
    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>>;

    /// Records a failed attempt of a job the caller holds: retried after the
    /// store's retry policy's delay while retries are left and the failure
    /// is retryable, failed for good otherwise.
    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome>;

    /// Gives a held job back unrun (a worker shutting down): pending at once,
    /// no retry spent.
    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>>;

    /// Cancels a pending job; it fails with `reason`.
    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>>;

    /// Puts a failed job back to pending with a fresh retry budget.
    async fn requeue(&self, id: JobId) -> Result<Job<Pending>>;

    /// Takes back every executing job whose lease has expired, counting it
    /// as a failed attempt: to pending while retries are left, else failed.
    async fn rescue_expired(&self) -> Result<Rescued>;

    /// The job with this id, if any.
    async fn get(&self, id: JobId) -> Result<Option<AnyJob>>;

    /// The job with this Greenlight execution id, if any.
    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>>;

    /// A page of jobs, newest first (by `queued_at`, then id).
    async fn list(&self, filter: &ListFilter) -> Result<JobPage>;

    /// Counts per status and the age of the oldest ready job.
    async fn stats(&self) -> Result<Stats>;

    /// Whether any job is executing, or pending and due within `horizon`
    /// from now: the question a draining worker asks before it stops.
    ///
    /// The default answers from [`Store::stats`], which counts every job; a
    /// store that can answer by looking at a few rows should (PostgreSQL's
    /// probes two indexes instead of reading a table that may hold millions
    /// of finished jobs).
    async fn has_work_within(&self, horizon: Duration) -> Result<bool> {
        let stats = self.stats().await?;
        Ok(stats.ready > 0
            || stats.executing > 0
            || stats.next_scheduled_in.is_some_and(|wait| wait <= horizon))
    }

    /// Deletes up to `request.batch_size` jobs in a terminal status that
    /// finished longer ago than `request.older_than`; returns how many. Call
    /// again until it returns less than the batch size.
    async fn prune(&self, request: &PruneRequest) -> Result<u64>;

    /// A stream of wake-ups when new work is enqueued, if the store has one.
    /// A worker that has none polls.
    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        Ok(None)
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// A new pending job.
    Created(Job<Pending>),
    /// The job enqueued earlier with the same idempotency key, in whatever
    /// status it is now. Nothing was added.
    Existing(AnyJob),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(&self) -> JobId {
        match self {
            Enqueued::Created(job) => job.id(),
            Enqueued::Existing(job) => job.id(),
        }
    }

    /// Whether a job was added.
    pub fn is_created(&self) -> bool {
        matches!(self, Enqueued::Created(_))
    }

    /// The job, new or existing.
    pub fn into_any(self) -> AnyJob {
        match self {
            Enqueued::Created(job) => job.into_any(),
            Enqueued::Existing(job) => job,
        }
    }
}

/// Why an attempt failed, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, stored as the job's error message.
    pub message: String,
    /// Whether another attempt can succeed.
    pub retryable: bool,
}

impl Failure {
    /// A failure that another attempt may not repeat (a timeout, a 503).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }

    /// A failure that every attempt would repeat (a malformed request).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }
}

/// What `claim` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Who claims; stored as the lease's holder.
    pub worker_id: WorkerId,
    /// The most jobs to hand back, at most [`MAX_BATCH`].
    pub limit: usize,
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
}

impl ClaimRequest {
    /// Checks the request: a limit of at most [`MAX_BATCH`] and a lease of
    /// at least one millisecond.
    pub fn validate(&self) -> Result<()> {
        if self.limit > MAX_BATCH {
            return Err(Error::invalid("limit", format!("must be at most {MAX_BATCH}")));
        }
        if self.lease < Duration::from_millis(1) {
            return Err(Error::invalid("lease", "must be at least one millisecond"));
        }
        Ok(())
    }
}

/// Where a page of `list` starts: just after this job, in the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    /// The `queued_at` of the last job of the previous page.
    pub queued_at: DateTime<Utc>,
    /// The id of the last job of the previous page.
    pub id: JobId,
}

impl ListCursor {
    /// The cursor that continues after `job`.
    pub fn after(job: &AnyJob) -> Self {
        Self { queued_at: job.data().queued_at, id: job.id() }
    }

    /// Whether `job` comes after this cursor in the list's order (newest
    /// first: an earlier `queued_at`, or the same and a smaller id).
    pub fn precedes(&self, job: &AnyJob) -> bool {
        (job.data().queued_at, job.id()) < (self.queued_at, self.id)
    }
}

/// What `list` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only jobs in this status. Default: any.
    pub status: Option<Status>,
    /// Only this learner's jobs. Default: anyone's.
    pub learner_id: Option<LearnerId>,
    /// The most jobs on the page, at most [`MAX_BATCH`]. Default: 50.
    pub limit: usize,
    /// Continue after this job. Default: from the newest.
    pub after: Option<ListCursor>,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self { status: None, learner_id: None, limit: 50, after: None }
    }
}

impl ListFilter {
    /// Checks the limit.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_BATCH {
            return Err(Error::invalid("limit", format!("must be from 1 to {MAX_BATCH}")));
        }
        Ok(())
    }

    /// Whether `job` passes the status and learner filters (not the cursor).
    pub fn matches(&self, job: &AnyJob) -> bool {
        self.status.is_none_or(|status| job.status() == status)
            && self.learner_id.is_none_or(|learner| job.data().learner_id == learner)
    }
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<AnyJob>,
    /// Where the next page starts, when this one was full.
    pub next: Option<ListCursor>,
}

/// How many jobs `rescue_expired` took back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rescued {
    /// Back to pending, to be retried.
    pub retried: u64,
    /// Failed for good: no retries were left.
    pub failed: u64,
}

impl Rescued {
    /// All jobs taken back.
    pub fn total(&self) -> u64 {
        self.retried + self.failed
    }
}

/// A snapshot of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Pending jobs, ready or not.
    pub pending: u64,
    /// Pending jobs whose `run_at` has passed.
    pub ready: u64,
    /// Executing jobs.
    pub executing: u64,
    /// Executing jobs whose lease has expired (the rescuer's next catch).
    pub expired_leases: u64,
    /// Complete jobs.
    pub complete: u64,
    /// Failed jobs.
    pub failed: u64,
    /// How long the oldest ready job has been ready (now minus its
    /// `run_at`), if any is.
    pub oldest_ready_age: Option<Duration>,
    /// How long until the soonest pending job that is not ready yet becomes
    /// ready (its `run_at` minus now), if any is waiting. With `ready`, this
    /// tells a draining worker whether retries are still due soon.
    pub next_scheduled_in: Option<Duration>,
}

impl Stats {
    /// The count for one status.
    pub fn count(&self, status: Status) -> u64 {
        match status {
            Status::Pending => self.pending,
            Status::Executing => self.executing,
            Status::Complete => self.complete,
            Status::Failed => self.failed,
        }
    }

    /// All jobs.
    pub fn total(&self) -> u64 {
        self.pending + self.executing + self.complete + self.failed
    }
}

/// What `prune` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRequest {
    /// Complete or failed; pruning live jobs is refused.
    pub status: Status,
    /// Only jobs that finished (`completed_at`) longer ago than this.
    pub older_than: Duration,
    /// The most rows one call deletes, from 1 to [`MAX_BATCH`], so a prune
    /// never holds locks on a large part of the table.
    pub batch_size: usize,
}

impl PruneRequest {
    /// Checks the status and batch size.
    pub fn validate(&self) -> Result<()> {
        if !self.status.is_terminal() {
            return Err(Error::invalid("status", "only complete or failed jobs can be pruned"));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(Error::invalid("batch_size", format!("must be from 1 to {MAX_BATCH}")));
        }
        Ok(())
    }
}
