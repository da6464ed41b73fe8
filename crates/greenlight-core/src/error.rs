//! The one error type of the core and of every store.

use crate::{JobId, Status};

/// What can go wrong in the queue.
///
/// Every store maps its own failures onto these variants, so a caller can
/// handle errors the same way whatever the store. [`Error::is_retryable`]
/// tells "try again later" from "this will never work".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No job has this id.
    #[error("job {id} not found")]
    NotFound {
        /// The id that was looked up.
        id: JobId,
    },

    /// The caller no longer holds the job: its lease expired and the job was
    /// rescued, claimed again, or moved on. The write changed nothing.
    #[error("lease lost on job {id} (attempt {attempt} is no longer current)")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The attempt the caller held.
        attempt: u32,
    },

    /// The job is not in a state that allows the operation (cancelling an
    /// executing job, requeueing a complete one).
    #[error("job {id} is {actual}, but the operation needs it {expected}")]
    WrongState {
        /// The job.
        id: JobId,
        /// The state the operation needs.
        expected: Status,
        /// The state the job is in.
        actual: Status,
    },

    /// Another job already carries this Greenlight execution id.
    #[error("execution id {execution_id:?} is already used by another job")]
    DuplicateExecutionId {
        /// The execution id.
        execution_id: String,
    },

    /// A value given to the queue is not acceptable; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or argument at fault, named as in the table.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// The storage cannot be reached right now (connection refused or lost,
    /// pool timed out, database restarting). Retrying later can succeed.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// What failed, without SQL text or credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The storage refused the operation because the caller lacks a
    /// privilege (a producer's role trying to claim, say). Retrying will
    /// not help until an operator grants it; SECURITY.md lists what each
    /// role needs.
    #[error("{message}")]
    PermissionDenied {
        /// What was refused, starting with "permission denied", without
        /// SQL text or credentials.
        message: String,
    },

    /// The storage refused the operation or returned something that makes
    /// no sense (a row breaking the state rules, an unexpected database
    /// error). Retrying the same call will not help.
    #[error("storage error: {message}")]
    Storage {
        /// What failed, without SQL text or credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// Whether the same call may succeed if made again later.
    ///
    /// Only [`Error::Unavailable`] is retryable: every other error is a
    /// property of the input or of the job, and repeating the call gives the
    /// same answer.
    ///
    /// ```
    /// use greenlight_core::Error;
    ///
    /// let down = Error::unavailable("connection refused");
    /// assert!(down.is_retryable());
    /// let bad = Error::invalid("max_retries", "must be at most 100");
    /// assert!(!bad.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// An [`Error::InvalidInput`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput { field, reason: reason.into() }
    }

    /// An [`Error::Unavailable`] with no source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable { message: message.into(), source: None }
    }

    /// An [`Error::Storage`] with no source.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::Storage { message: message.into(), source: None }
    }
}

/// The result type of the queue.
pub type Result<T, E = Error> = std::result::Result<T, E>;
