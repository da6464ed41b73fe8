//! The four statuses a job can be in, as stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life, as the `status` column stores it.
///
/// ```
/// use greenlight_core::Status;
///
/// let status: Status = "executing".parse().unwrap();
/// assert_eq!(status, Status::Executing);
/// assert_eq!(status.to_string(), "executing");
/// assert!("bogus".parse::<Status>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be claimed once `run_at` has passed.
    Pending,
    /// Claimed by a worker that holds a lease on it.
    Executing,
    /// Finished with a result. Terminal.
    Complete,
    /// Gave up, was cancelled, or failed permanently. Terminal until an
    /// operator requeues it.
    Failed,
}

impl Status {
    /// All four, in the order of the state picture.
    pub const ALL: [Status; 4] =
        [Status::Pending, Status::Executing, Status::Complete, Status::Failed];

    /// The text form stored in the `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Executing => "executing",
            Status::Complete => "complete",
            Status::Failed => "failed",
        }
    }

    /// Whether no worker will touch a job in this status again.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Status::Complete | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the four statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?} (expected pending, executing, complete or failed)")]
pub struct ParseStatusError(String);

impl FromStr for Status {
    type Err = ParseStatusError;

    /// Parses the exact lowercase forms; anything else is refused, since a
    /// status that was mistyped must not quietly match nothing.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| ParseStatusError(text.to_owned()))
    }
}

impl From<ParseStatusError> for crate::Error {
    fn from(error: ParseStatusError) -> Self {
        crate::Error::invalid("status", error.to_string())
    }
}
