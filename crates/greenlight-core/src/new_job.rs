//! What a caller hands to `enqueue`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock;
use crate::{
    AtomId, Error, ExecutionId, IdempotencyKey, Job, JobData, JobId, LearnerId, Payload,
    PayloadLimits, Pending,
};

/// The largest `max_retries` accepted. A job retried more than a hundred
/// times is a bug in the caller, and the bound keeps the counters far from
/// overflow.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// The `max_retries` a job gets when the caller does not say: four attempts
/// in all, as the original table's default.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// When a new job may first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// As soon as a worker is free.
    Now,
    /// Not before this time.
    At(DateTime<Utc>),
    /// Not before this long after it is enqueued (by the store's clock).
    After(Duration),
}

impl Schedule {
    /// The `run_at` for a job enqueued at `now`, truncated to whole
    /// microseconds like every stored time.
    pub fn run_at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Now => clock::truncate(now),
            Schedule::At(at) => clock::truncate(at),
            Schedule::After(delay) => clock::truncate(clock::add(now, delay)),
        }
    }
}

/// A validated job, ready to enqueue. Made with [`NewJob::builder`].
///
/// ```
/// use std::time::Duration;
/// use greenlight_core::{LearnerId, NewJob};
/// use serde_json::json;
///
/// let job = NewJob::builder(LearnerId::random(), json!({"language": "python", "code": "print(1)"}))
///     .max_retries(5)
///     .priority(10)
///     .delay(Duration::from_secs(30))
///     .idempotency_key("submit-42")
///     .build()?;
/// assert_eq!(job.max_retries(), 5);
///
/// // A bare string is not a request: the error names the field.
/// let error = NewJob::builder(LearnerId::random(), json!("print(1)")).build().unwrap_err();
/// assert_eq!(error.to_string(), "invalid request_payload: must be a JSON object or array");
/// # Ok::<(), greenlight_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NewJob {
    learner_id: LearnerId,
    atom_id: Option<AtomId>,
    request_payload: Payload,
    max_retries: u32,
    priority: i32,
    schedule: Schedule,
    execution_id: Option<ExecutionId>,
    idempotency_key: Option<IdempotencyKey>,
    /// The limits the payload was checked against when built.
    checked_against: PayloadLimits,
}

/// Two jobs are equal when they ask for the same thing: the limits a
/// payload was checked against when it was built are not part of the job.
impl PartialEq for NewJob {
    fn eq(&self, other: &Self) -> bool {
        // Every field named, so that a new one must be placed here too.
        let Self {
            learner_id,
            atom_id,
            request_payload,
            max_retries,
            priority,
            schedule,
            execution_id,
            idempotency_key,
            checked_against: _,
        } = self;
        *learner_id == other.learner_id
            && *atom_id == other.atom_id
            && *request_payload == other.request_payload
            && *max_retries == other.max_retries
            && *priority == other.priority
            && *schedule == other.schedule
            && *execution_id == other.execution_id
            && *idempotency_key == other.idempotency_key
    }
}

impl NewJob {
    /// Starts a job for `learner_id` that asks Greenlight for `request_payload`.
    pub fn builder(learner_id: LearnerId, request_payload: impl Into<Payload>) -> NewJobBuilder {
        NewJobBuilder {
            learner_id,
            atom_id: None,
            request_payload: request_payload.into(),
            max_retries: i64::from(DEFAULT_MAX_RETRIES),
            priority: 0,
            schedule: Schedule::Now,
            execution_id: None,
            idempotency_key: None,
            limits: PayloadLimits::default(),
        }
    }

    /// The learner.
    pub fn learner_id(&self) -> LearnerId {
        self.learner_id
    }

    /// The learning atom, if any.
    pub fn atom_id(&self) -> Option<AtomId> {
        self.atom_id
    }

    /// The request payload.
    pub fn request_payload(&self) -> &Payload {
        &self.request_payload
    }

    /// How many failures are retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The priority; higher runs first.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// When the job may first run.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// A Greenlight execution id known up front, if any.
    pub fn execution_id(&self) -> Option<&ExecutionId> {
        self.execution_id.as_ref()
    }

    /// The idempotency key, if any.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// Checks the request payload against a store's `limits`, which may
    /// be tighter than the builder's. When they are no tighter in any
    /// bound, the check made by [`NewJobBuilder::build`] already covers
    /// them and the payload is not walked again.
    ///
    /// ```
    /// use greenlight_core::{LearnerId, NewJob, PayloadLimits};
    /// use serde_json::json;
    ///
    /// let job = NewJob::builder(LearnerId::random(), json!({"code": "print(1)"})).build()?;
    /// assert!(job.check_limits(&PayloadLimits::default()).is_ok());
    /// let tiny = PayloadLimits { max_bytes: 8, ..PayloadLimits::default() };
    /// assert!(job.check_limits(&tiny).is_err());
    /// # Ok::<(), greenlight_core::Error>(())
    /// ```
    pub fn check_limits(&self, limits: &PayloadLimits) -> Result<(), Error> {
        if limits.max_bytes >= self.checked_against.max_bytes
            && limits.max_depth >= self.checked_against.max_depth
        {
            return Ok(());
        }
        limits.check_request(&self.request_payload)
    }

    /// The pending job this becomes when enqueued with `id` at `now`.
    pub fn into_pending(self, id: JobId, now: DateTime<Utc>) -> Job<Pending> {
        Job::new(JobData {
            id,
            atom_id: self.atom_id,
            learner_id: self.learner_id,
            execution_id: self.execution_id,
            request_payload: self.request_payload,
            queued_at: now,
            priority: self.priority,
            run_at: self.schedule.run_at(now),
            retry_count: 0,
            max_retries: self.max_retries,
            attempt: 0,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// Builds a [`NewJob`]; nothing is checked until [`NewJobBuilder::build`],
/// which reports the first field at fault.
#[derive(Debug, Clone)]
#[must_use]
pub struct NewJobBuilder {
    learner_id: LearnerId,
    atom_id: Option<AtomId>,
    request_payload: Payload,
    max_retries: i64,
    priority: i32,
    schedule: Schedule,
    execution_id: Option<String>,
    idempotency_key: Option<String>,
    limits: PayloadLimits,
}

impl NewJobBuilder {
    /// The learning atom the job runs. Default: none.
    pub fn atom(mut self, atom_id: AtomId) -> Self {
        self.atom_id = Some(atom_id);
        self
    }

    /// How many failures are retried, from 0 to [`MAX_RETRIES_LIMIT`].
    /// Default: [`DEFAULT_MAX_RETRIES`]. Takes a signed number so that a
    /// negative count from outside is refused with a clear error rather
    /// than wrapped.
    pub fn max_retries(mut self, max_retries: impl Into<i64>) -> Self {
        self.max_retries = max_retries.into();
        self
    }

    /// The priority; higher runs first. Default: 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not before `at`. Default: at once.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.schedule = Schedule::At(at);
        self
    }

    /// Not before `delay` after it is enqueued. Default: at once.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.schedule = Schedule::After(delay);
        self
    }

    /// A Greenlight execution id known up front (at most 100 characters,
    /// unique). Default: none; the worker records it when Greenlight
    /// answers.
    pub fn execution_id(mut self, execution_id: impl Into<String>) -> Self {
        self.execution_id = Some(execution_id.into());
        self
    }

    /// A key that makes the enqueue idempotent (at most 200 characters).
    /// Default: none.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Bounds on the payload. Default: [`PayloadLimits::default`].
    pub fn limits(mut self, limits: PayloadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks every field and returns the job, or an
    /// [`Error::InvalidInput`] naming the first field at fault.
    pub fn build(self) -> Result<NewJob, Error> {
        self.limits.check_request(&self.request_payload)?;
        let max_retries = u32::try_from(self.max_retries)
            .ok()
            .filter(|&n| n <= MAX_RETRIES_LIMIT)
            .ok_or_else(|| {
                Error::invalid(
                    "max_retries",
                    format!("is {}, must be from 0 to {MAX_RETRIES_LIMIT}", self.max_retries),
                )
            })?;
        let execution_id = self.execution_id.map(ExecutionId::new).transpose()?;
        let idempotency_key = self.idempotency_key.map(IdempotencyKey::new).transpose()?;
        Ok(NewJob {
            learner_id: self.learner_id,
            atom_id: self.atom_id,
            request_payload: self.request_payload,
            max_retries,
            priority: self.priority,
            schedule: self.schedule,
            execution_id,
            idempotency_key,
            checked_against: self.limits,
        })
    }
}
