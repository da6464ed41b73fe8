//! The core of the Greenlight queue: job states as types, the transitions
//! between them, the retry policy, and the [`Store`] contract.
//!
//! This crate does no I/O and depends on neither tokio nor diesel: every
//! rule of the state machine is a pure function, testable without a
//! database. Time comes in as an argument or through a [`Clock`].
//!
//! ```
//! use std::time::Duration;
//! use greenlight_core::*;
//! use serde_json::json;
//!
//! let clock = ManualClock::starting_now();
//! let new = NewJob::builder(LearnerId::random(), json!({"language": "python"})).build()?;
//! let pending = new.into_pending(JobId::random(), clock.now());
//!
//! // Claiming consumes the pending job and returns an executing one.
//! let worker = WorkerId::new("worker-1")?;
//! let executing = pending.claim(worker, Duration::from_secs(30), clock.now());
//! assert_eq!(executing.attempt(), 1);
//!
//! // A retryable failure with retries left goes back to pending, later.
//! let policy = RetryPolicy::default();
//! match executing.fail("greenlight timed out", &policy, clock.now()) {
//!     FailOutcome::Retrying(job) => assert!(job.data().run_at > clock.now()),
//!     FailOutcome::Failed(_) => unreachable!("three retries were left"),
//! }
//! # Ok::<(), Error>(())
//! ```

mod clock;
mod error;
mod ids;
mod job;
mod new_job;
mod payload;
mod retry;
mod status;
mod store;

pub use clock::{Clock, ManualClock, SystemClock, add as add_duration, truncate as truncate_time};
pub use error::{Error, Result};
pub use ids::{AtomId, ExecutionId, IdempotencyKey, JobId, LearnerId, WorkerId};
pub use job::{
    AnyJob, Complete, Executing, FailOutcome, Failed, Job, JobData, JobRecord, Pending, State,
    lease_expired_message,
};
pub use new_job::{DEFAULT_MAX_RETRIES, MAX_RETRIES_LIMIT, NewJob, NewJobBuilder, Schedule};
pub use payload::{MAX_ERROR_CHARS, Payload, PayloadLimits, sanitize_error};
pub use retry::{Jitter, RetryPolicy};
pub use status::{ParseStatusError, Status};
pub use store::{
    ClaimRequest, Enqueued, Failure, JobPage, ListCursor, ListFilter, MAX_BATCH, PruneRequest,
    Rescued, Stats, Store, Wakeups,
};

/// Re-exported so that stores and callers name the same versions.
pub use async_trait::async_trait;
pub use chrono;
pub use serde_json;
pub use uuid;
