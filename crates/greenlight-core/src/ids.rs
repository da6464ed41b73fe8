//! Newtypes for the identifiers a job carries, so a learner id cannot be
//! passed where a job id is expected, and a text id is validated once, when
//! it is made.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (version 4) id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| Error::invalid($field, format!("{text:?} is not a UUID")))
            }
        }
    };
}

uuid_id!(
    /// The id of a job (`greenlight_queue.id`).
    JobId,
    "id"
);
uuid_id!(
    /// The learner a job belongs to (`learner_id`).
    LearnerId,
    "learner_id"
);
uuid_id!(
    /// The learning atom a job runs, when it has one (`atom_id`).
    AtomId,
    "atom_id"
);

/// Checks a text that will be stored: not empty, at most `max` characters,
/// and free of NUL characters, which PostgreSQL refuses in text columns.
pub(crate) fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), Error> {
    if text.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let length = text.chars().count();
    if length > max {
        return Err(Error::invalid(
            field,
            format!("is {length} characters, at most {max} allowed"),
        ));
    }
    if text.contains('\0') {
        return Err(Error::invalid(field, "must not contain a NUL character"));
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Shared text: a job's copies (stores and workers keep several)
        // share it instead of copying it.
        pub struct $name(Arc<str>);

        impl $name {
            /// The longest text accepted, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Validates `text`: not empty, at most [`Self::MAX_CHARS`]
            /// characters, no NUL character.
            pub fn new(text: impl Into<String>) -> Result<Self, Error> {
                let text = text.into();
                check_text($field, &text, $max)?;
                Ok(Self(text.into()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;

            fn try_from(text: String) -> Result<Self, Error> {
                Self::new(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_ref().to_owned()
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                Self::new(text)
            }
        }
    };
}

text_id!(
    /// The id Greenlight gave an execution (`execution_id`, at most 100
    /// characters, unique across jobs).
    ///
    /// ```
    /// use greenlight_core::ExecutionId;
    ///
    /// assert!(ExecutionId::new("gl-exec-42").is_ok());
    /// assert!(ExecutionId::new("x".repeat(101)).is_err());
    /// ```
    ExecutionId,
    "execution_id",
    100
);
text_id!(
    /// Names the worker that holds a lease (`worker_id`), for operators.
    WorkerId,
    "worker_id",
    200
);
text_id!(
    /// A caller's key that makes an enqueue idempotent: a second enqueue
    /// with a key already seen returns the first job instead of a new one
    /// (a learner's double click runs once).
    IdempotencyKey,
    "idempotency_key",
    200
);

impl WorkerId {
    /// A worker id made of the host name (when known), the process id and
    /// a random suffix, unique enough to tell workers apart in logs.
    pub fn generate() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        let suffix = &Uuid::new_v4().simple().to_string()[..8];
        let text = format!("{host}-{}-{suffix}", std::process::id());
        let text: String = text.chars().filter(|&c| c != '\0').take(Self::MAX_CHARS).collect();
        Self(text.into())
    }
}
