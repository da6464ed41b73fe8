//! The command's one error type, and the exit code each kind maps to.
//!
//! Two kinds are enough for a caller (a script, an operator) to act on:
//!
//! - [`CliError::Input`], exit 2: the command line or its input is wrong
//!   (a malformed UUID, JSON that does not parse, an unknown status). It is
//!   found before anything connects or writes, so nothing changed.
//! - [`CliError::Failed`], exit 1: the input was fine but the command could
//!   not do its work (the database is down, the job is not in the state the
//!   command needs, it does not exist).
//!
//! Either prints as one line on stderr, never a backtrace or SQL text.

use std::fmt;

use greenlight_core::Error;

/// What went wrong, already phrased for the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad input: exit code 2.
    #[error("{0}")]
    Input(String),
    /// The command could not do its work: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// A bad-input error.
    pub(crate) fn input(message: impl fmt::Display) -> Self {
        Self::Input(message.to_string())
    }

    /// A failure to do the work.
    pub(crate) fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The process's exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    /// The message on one line: a multi-line cause (a database's detail
    /// text, say) is joined, so the shell sees exactly one line.
    pub(crate) fn one_line(&self) -> String {
        let (CliError::Input(message) | CliError::Failed(message)) = self;
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

impl From<Error> for CliError {
    /// A refused value is bad input; anything else the store says is a
    /// failure of the command. The store's messages carry no SQL text and
    /// no password, so they are shown as they are.
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidInput { .. } => CliError::Input(error.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

/// The result type of every command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_failures_exit_1() {
        assert_eq!(CliError::from(Error::invalid("priority", "too high")).exit_code(), 2);
        assert_eq!(CliError::from(Error::unavailable("connection refused")).exit_code(), 1);
        assert_eq!(CliError::from(Error::storage("odd row")).exit_code(), 1);
    }

    #[test]
    fn a_multi_line_message_prints_as_one_line() {
        let error = CliError::failed("first\n  second\tthird");
        assert_eq!(error.one_line(), "first second third");
    }
}
