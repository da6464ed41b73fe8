//! Jobs and their transitions.
//!
//! A job's status is its type: [`Job<Pending>`], [`Job<Executing>`],
//! [`Job<Complete>`] and [`Job<Failed>`]. Each transition consumes the job
//! and returns the next type, so a move that is not in the state picture of
//! DESIGN.md does not compile:
//!
//! ```compile_fail,E0599
//! # use greenlight_core::*;
//! # fn demo(job: Job<Pending>) {
//! // A pending job has no `complete`: it must be claimed first.
//! let done = job.complete(serde_json::json!({}), chrono::Utc::now());
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use greenlight_core::*;
//! # fn demo(job: Job<Complete>) {
//! // A complete job cannot fail any more.
//! let outcome = job.fail("too late", &RetryPolicy::default(), chrono::Utc::now());
//! # }
//! ```
//!
//! ```compile_fail,E0382
//! # use greenlight_core::*;
//! # fn demo(job: Job<Executing>) {
//! // A transition consumes the job: the old value cannot be used again.
//! let done = job.clone().complete(serde_json::json!({}), chrono::Utc::now());
//! let again = job.complete(serde_json::json!({}), chrono::Utc::now());
//! let twice = job.attempt();
//! # }
//! ```
//!
//! A job read back from storage, whose status is known only at run time,
//! is an [`AnyJob`], which narrows with [`TryFrom`] or a `match`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::payload::sanitize_error;
use crate::{
    AtomId, Error, ExecutionId, IdempotencyKey, Jitter, JobId, LearnerId, Payload, RetryPolicy,
    Status, WorkerId,
};

/// The fields every job has, whatever its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobData {
    /// The job's id.
    pub id: JobId,
    /// The learning atom the job runs, if any.
    pub atom_id: Option<AtomId>,
    /// The learner the job belongs to.
    pub learner_id: LearnerId,
    /// The id Greenlight gave the execution, once known.
    pub execution_id: Option<ExecutionId>,
    /// What to ask Greenlight: a JSON object or array, shared by the
    /// job's copies.
    pub request_payload: Payload,
    /// When the job was enqueued.
    pub queued_at: DateTime<Utc>,
    /// Higher runs first among ready jobs.
    pub priority: i32,
    /// When the job may next be claimed. A claim leaves it as it was, so
    /// on an executing, complete or failed job it is the time the last
    /// attempt became due, not the time it started (see `started_at`).
    pub run_at: DateTime<Utc>,
    /// How many attempts failed (an error or an expired lease).
    pub retry_count: u32,
    /// How many failed attempts are retried: failure number `n` goes back
    /// to pending when `n <= max_retries`, so 3 allows four attempts.
    pub max_retries: u32,
    /// How many times the job was claimed: the fencing token.
    pub attempt: u32,
    /// The caller's idempotency key, if any.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// A job in status `S`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job<S> {
    data: JobData,
    state: S,
}

/// Waiting to be claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Why the previous attempt failed, for a job that is being retried or
    /// was requeued.
    pub last_error: Option<String>,
}

/// Claimed by a worker that holds a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    /// Who holds the lease.
    pub worker_id: WorkerId,
    /// When this attempt started.
    pub started_at: DateTime<Utc>,
    /// When the lease ends unless a heartbeat extends it.
    pub lease_expires_at: DateTime<Utc>,
    /// Why the previous attempt failed, if one did.
    pub last_error: Option<String>,
}

/// Finished with a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complete {
    /// When the successful attempt started; absent only for rows completed
    /// by hand in the database.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
    /// What Greenlight returned, shared by the job's copies.
    pub result: Payload,
}

/// Failed for good (until an operator requeues it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    /// When the last attempt started; absent for a job cancelled before it
    /// ever ran.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job failed (stored as `completed_at`).
    pub failed_at: DateTime<Utc>,
    /// Why.
    pub error: String,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Pending {}
    impl Sealed for super::Executing {}
    impl Sealed for super::Complete {}
    impl Sealed for super::Failed {}
}

/// One of the four state types. Sealed: the state machine has exactly four.
pub trait State: sealed::Sealed + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The status this state stores as.
    const STATUS: Status;

    /// Narrows an [`AnyJob`] to this state, or gives it back.
    #[doc(hidden)]
    #[allow(clippy::result_large_err, reason = "the job is given back whole, by value")]
    fn narrow(job: AnyJob) -> Result<Job<Self>, AnyJob>;

    /// Widens a job of this state to an [`AnyJob`].
    #[doc(hidden)]
    fn widen(job: Job<Self>) -> AnyJob;
}

macro_rules! state {
    ($state:ident) => {
        impl State for $state {
            const STATUS: Status = Status::$state;

            fn narrow(job: AnyJob) -> Result<Job<Self>, AnyJob> {
                match job {
                    AnyJob::$state(job) => Ok(job),
                    other => Err(other),
                }
            }

            fn widen(job: Job<Self>) -> AnyJob {
                AnyJob::$state(job)
            }
        }
    };
}
state!(Pending);
state!(Executing);
state!(Complete);
state!(Failed);

impl<S: State> Job<S> {
    /// The fields every job has.
    pub fn data(&self) -> &JobData {
        &self.data
    }

    /// The fields of this job's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.data.id
    }

    /// The learner the job belongs to.
    pub fn learner_id(&self) -> LearnerId {
        self.data.learner_id
    }

    /// How many times the job was claimed.
    pub fn attempt(&self) -> u32 {
        self.data.attempt
    }

    /// The job's status, the same for every job of this type.
    pub fn status(&self) -> Status {
        S::STATUS
    }

    /// Forgets the static state, for code that handles jobs of any status.
    pub fn into_any(self) -> AnyJob {
        S::widen(self)
    }

    fn with<T>(data: JobData, state: T) -> Job<T> {
        Job { data, state }
    }
}

/// What a failure leads to.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum FailOutcome {
    /// Retries were left: the job is pending again, with `run_at` moved by
    /// the retry policy.
    Retrying(Job<Pending>),
    /// No retries were left, or the error was permanent.
    Failed(Job<Failed>),
}

impl FailOutcome {
    /// The job, whichever way it went.
    pub fn into_any(self) -> AnyJob {
        match self {
            FailOutcome::Retrying(job) => job.into_any(),
            FailOutcome::Failed(job) => job.into_any(),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        match self {
            FailOutcome::Retrying(job) => job.id(),
            FailOutcome::Failed(job) => job.id(),
        }
    }

    /// Whether the job will run again.
    pub fn is_retrying(&self) -> bool {
        matches!(self, FailOutcome::Retrying(_))
    }
}

impl Job<Pending> {
    /// A new pending job, as `enqueue` makes it. Used by stores; `data`
    /// must describe a job never claimed.
    pub fn new(data: JobData) -> Self {
        Self::with(data, Pending { last_error: None })
    }

    /// Whether the job may be claimed at `now`.
    pub fn is_ready(&self, now: DateTime<Utc>) -> bool {
        self.data.run_at <= now
    }

    /// Claims the job for `worker_id`: the attempt (the fencing token) goes
    /// up by one and the lease runs for `lease` from `now`.
    #[must_use]
    pub fn claim(self, worker_id: WorkerId, lease: Duration, now: DateTime<Utc>) -> Job<Executing> {
        let mut data = self.data;
        data.attempt = data.attempt.saturating_add(1);
        let state = Executing {
            worker_id,
            started_at: now,
            lease_expires_at: clock::add(now, lease),
            last_error: self.state.last_error,
        };
        Self::with(data, state)
    }

    /// Cancels the job before it runs; it fails with `reason` and spends no
    /// retry.
    #[must_use]
    pub fn cancel(self, reason: &str, now: DateTime<Utc>) -> Job<Failed> {
        let state = Failed { started_at: None, failed_at: now, error: sanitize_error(reason) };
        Self::with(self.data, state)
    }
}

impl Job<Executing> {
    /// Whether the lease has run out at `now`. A lease is over at the
    /// instant it expires, in every store.
    pub fn is_lease_expired(&self, now: DateTime<Utc>) -> bool {
        self.state.lease_expires_at <= now
    }

    /// Extends the lease to `lease` from `now`.
    #[must_use]
    pub fn heartbeat(mut self, lease: Duration, now: DateTime<Utc>) -> Job<Executing> {
        self.state.lease_expires_at = clock::add(now, lease);
        self
    }

    /// Records the id Greenlight gave this execution.
    #[must_use]
    pub fn record_execution_id(mut self, execution_id: ExecutionId) -> Job<Executing> {
        self.data.execution_id = Some(execution_id);
        self
    }

    /// Completes the job with Greenlight's result.
    #[must_use]
    pub fn complete(self, result: impl Into<Payload>, now: DateTime<Utc>) -> Job<Complete> {
        let state = Complete {
            started_at: Some(self.state.started_at),
            completed_at: now,
            result: result.into(),
        };
        Self::with(self.data, state)
    }

    /// Records a failed attempt that may be retried: back to pending after
    /// the policy's delay while retries are left, failed for good otherwise.
    pub fn fail(self, error: &str, policy: &RetryPolicy, now: DateTime<Utc>) -> FailOutcome {
        let mut data = self.data;
        let failure = data.retry_count.saturating_add(1);
        data.retry_count = failure;
        let error = sanitize_error(error);

        if failure > data.max_retries {
            let state = Failed { started_at: Some(self.state.started_at), failed_at: now, error };
            return FailOutcome::Failed(Self::with(data, state));
        }

        let jitter = Jitter::for_attempt(data.id, data.attempt);
        data.run_at = clock::truncate(clock::add(now, policy.delay(failure, jitter)));
        FailOutcome::Retrying(Self::with(data, Pending { last_error: Some(error) }))
    }

    /// Records a failed attempt that retrying cannot help: the job fails for
    /// good, retries left or not. The attempt still counts as a failure.
    #[must_use]
    pub fn fail_permanently(self, error: &str, now: DateTime<Utc>) -> Job<Failed> {
        let mut data = self.data;
        data.retry_count = data.retry_count.saturating_add(1);
        let state = Failed {
            started_at: Some(self.state.started_at),
            failed_at: now,
            error: sanitize_error(error),
        };
        Self::with(data, state)
    }

    /// The lease ran out without a result: counted exactly like a retryable
    /// failure, with an error naming the worker that lost it.
    pub fn expire_lease(self, policy: &RetryPolicy, now: DateTime<Utc>) -> FailOutcome {
        let error = lease_expired_message(&self.state.worker_id);
        self.fail(&error, policy, now)
    }

    /// Gives the job back unrun (a worker shutting down): pending again at
    /// once, no retry spent. The attempt stays counted, since the fencing
    /// token never goes back.
    #[must_use]
    pub fn release(self, now: DateTime<Utc>) -> Job<Pending> {
        let mut data = self.data;
        data.run_at = now;
        Self::with(data, Pending { last_error: self.state.last_error })
    }
}

/// The error stored when a lease runs out; stores use the same words.
pub fn lease_expired_message(worker_id: &WorkerId) -> String {
    format!("lease expired: worker {worker_id} stopped heartbeating")
}

impl Job<Failed> {
    /// Gives a failed job a new start (an operator's decision): pending at
    /// `now` with a fresh retry budget. The last error is kept for the
    /// record; the attempt count goes on.
    #[must_use]
    pub fn requeue(self, now: DateTime<Utc>) -> Job<Pending> {
        let mut data = self.data;
        data.retry_count = 0;
        data.run_at = now;
        Self::with(data, Pending { last_error: Some(self.state.error) })
    }
}

/// A job whose status is known only at run time, as read from storage.
///
/// ```
/// use greenlight_core::{AnyJob, Job, Pending, Status};
/// # fn demo(any: AnyJob) -> Result<(), greenlight_core::Error> {
/// match any {
///     AnyJob::Pending(job) => println!("{} waits", job.id()),
///     other => {
///         // Or narrow with TryFrom, which names both statuses on failure.
///         let pending: Job<Pending> = other.try_into()?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "JobRecord", try_from = "JobRecord")]
pub enum AnyJob {
    /// A pending job.
    Pending(Job<Pending>),
    /// An executing job.
    Executing(Job<Executing>),
    /// A complete job.
    Complete(Job<Complete>),
    /// A failed job.
    Failed(Job<Failed>),
}

impl AnyJob {
    /// The fields every job has.
    pub fn data(&self) -> &JobData {
        match self {
            AnyJob::Pending(job) => job.data(),
            AnyJob::Executing(job) => job.data(),
            AnyJob::Complete(job) => job.data(),
            AnyJob::Failed(job) => job.data(),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.data().id
    }

    /// The job's status.
    pub fn status(&self) -> Status {
        match self {
            AnyJob::Pending(_) => Status::Pending,
            AnyJob::Executing(_) => Status::Executing,
            AnyJob::Complete(_) => Status::Complete,
            AnyJob::Failed(_) => Status::Failed,
        }
    }

    /// Narrows to a job of state `S`, or gives the job back unchanged.
    #[allow(clippy::result_large_err, reason = "the job is given back whole, by value")]
    pub fn narrow<S: State>(self) -> Result<Job<S>, AnyJob> {
        S::narrow(self)
    }

    /// The flat, row-shaped form of the job.
    pub fn to_record(&self) -> JobRecord {
        JobRecord::from(self.clone())
    }
}

impl<S: State> From<Job<S>> for AnyJob {
    fn from(job: Job<S>) -> Self {
        S::widen(job)
    }
}

impl<S: State> TryFrom<AnyJob> for Job<S> {
    type Error = Error;

    /// Narrows, or fails with [`Error::WrongState`] naming both statuses.
    fn try_from(job: AnyJob) -> Result<Self, Error> {
        S::narrow(job).map_err(|job| Error::WrongState {
            id: job.id(),
            expected: S::STATUS,
            actual: job.status(),
        })
    }
}

impl<S: State> Serialize for Job<S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        JobRecord::from(self.clone().into_any()).serialize(serializer)
    }
}

/// A job as one flat row, the way the `greenlight_queue` table stores it:
/// every state's fields side by side, absent where the status has none.
///
/// Stores read rows into this and turn it into an [`AnyJob`] with
/// `TryFrom`, which checks that the row keeps the state rules (an executing
/// row has a lease, a complete one a result, a failed one an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs, reason = "the fields are the table's columns, documented on JobData")]
pub struct JobRecord {
    pub id: JobId,
    pub atom_id: Option<AtomId>,
    pub learner_id: LearnerId,
    pub execution_id: Option<ExecutionId>,
    pub status: Status,
    pub request_payload: Payload,
    pub result_payload: Option<Payload>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub retry_count: u32,
    pub max_retries: u32,
    pub run_at: DateTime<Utc>,
    pub attempt: u32,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub worker_id: Option<WorkerId>,
    pub priority: i32,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl From<AnyJob> for JobRecord {
    fn from(job: AnyJob) -> Self {
        let status = job.status();
        let (data, started_at, completed_at, error_message, result_payload, lease) = match job {
            AnyJob::Pending(Job { data, state }) => {
                (data, None, None, state.last_error, None, None)
            }
            AnyJob::Executing(Job { data, state }) => (
                data,
                Some(state.started_at),
                None,
                state.last_error,
                None,
                Some((state.worker_id, state.lease_expires_at)),
            ),
            AnyJob::Complete(Job { data, state }) => {
                (data, state.started_at, Some(state.completed_at), None, Some(state.result), None)
            }
            AnyJob::Failed(Job { data, state }) => {
                (data, state.started_at, Some(state.failed_at), Some(state.error), None, None)
            }
        };
        let (worker_id, lease_expires_at) = lease.unzip();
        JobRecord {
            id: data.id,
            atom_id: data.atom_id,
            learner_id: data.learner_id,
            execution_id: data.execution_id,
            status,
            request_payload: data.request_payload,
            result_payload,
            queued_at: data.queued_at,
            started_at,
            completed_at,
            error_message,
            retry_count: data.retry_count,
            max_retries: data.max_retries,
            run_at: data.run_at,
            attempt: data.attempt,
            lease_expires_at,
            worker_id,
            priority: data.priority,
            idempotency_key: data.idempotency_key,
        }
    }
}

impl TryFrom<JobRecord> for AnyJob {
    type Error = Error;

    /// Checks the row against the state rules and builds the typed job.
    fn try_from(record: JobRecord) -> Result<Self, Error> {
        let (id, status) = (record.id, record.status);
        let broken = move |what: &str| Error::storage(format!("job {id} is {status} but {what}"));
        let data = JobData {
            id: record.id,
            atom_id: record.atom_id,
            learner_id: record.learner_id,
            execution_id: record.execution_id,
            request_payload: record.request_payload,
            queued_at: record.queued_at,
            priority: record.priority,
            run_at: record.run_at,
            retry_count: record.retry_count,
            max_retries: record.max_retries,
            attempt: record.attempt,
            idempotency_key: record.idempotency_key,
        };
        let job = match record.status {
            Status::Pending => {
                AnyJob::Pending(Job { data, state: Pending { last_error: record.error_message } })
            }
            Status::Executing => {
                let state = Executing {
                    worker_id: record.worker_id.ok_or_else(|| broken("has no worker_id"))?,
                    started_at: record.started_at.ok_or_else(|| broken("has no started_at"))?,
                    lease_expires_at: record
                        .lease_expires_at
                        .ok_or_else(|| broken("has no lease_expires_at"))?,
                    last_error: record.error_message,
                };
                AnyJob::Executing(Job { data, state })
            }
            Status::Complete => {
                let state = Complete {
                    started_at: record.started_at,
                    completed_at: record
                        .completed_at
                        .ok_or_else(|| broken("has no completed_at"))?,
                    result: record.result_payload.ok_or_else(|| broken("has no result_payload"))?,
                };
                AnyJob::Complete(Job { data, state })
            }
            Status::Failed => {
                let state = Failed {
                    started_at: record.started_at,
                    failed_at: record.completed_at.ok_or_else(|| broken("has no completed_at"))?,
                    error: record.error_message.ok_or_else(|| broken("has no error_message"))?,
                };
                AnyJob::Failed(Job { data, state })
            }
        };
        Ok(job)
    }
}
