//! How database and pool failures become the core's [`Error`].
//!
//! The rule: a caller must tell "try again" from "this will never work".
//! Anything about the connection (refused, lost, the pool timing out, the
//! server shutting down or starting up) is [`Error::Unavailable`]; a value
//! the database refuses because of the caller's input is
//! [`Error::InvalidInput`]; the rest is [`Error::Storage`]. No message
//! carries SQL text, and the password of the database URL is scrubbed from
//! every message that could echo it.

use diesel::result::{ConnectionError, DatabaseErrorInformation, DatabaseErrorKind};
use diesel_async::pooled_connection::PoolError as ManagerError;
use greenlight_core::Error;

/// The pool's error type for our connections.
pub(crate) type PoolError = deadpool::managed::PoolError<ManagerError>;

/// What keeps execution ids unique: the partial unique index of migration
/// 003, and before it the constraint PostgreSQL named for `execution_id
/// VARCHAR(100) UNIQUE` (a database migrated only that far still reports
/// this name).
const EXECUTION_ID_UNIQUE: [&str; 2] =
    ["idx_greenlight_queue_execution_id", "greenlight_queue_execution_id_key"];

/// What must never appear in a message: the database URL's password.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    password: Option<String>,
    /// The URL with its password replaced, for messages and `Debug`.
    redacted_url: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("redacted_url", &self.redacted_url).finish_non_exhaustive()
    }
}

impl Secrets {
    /// Finds the password in a URL (`postgres://user:password@host/db`) or a
    /// key-value connection string (`host=... password=...`).
    pub(crate) fn from_url(url: &str) -> Self {
        let password = url_password(url).or_else(|| keyword_password(url));
        let redacted_url = match &password {
            Some(password) if !password.is_empty() => url.replace(password.as_str(), "***"),
            _ => url.to_owned(),
        };
        Self { password: password.filter(|password| !password.is_empty()), redacted_url }
    }

    /// The URL without its password.
    pub(crate) fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// `text` with the password, if it appears, replaced.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(password) => text.replace(password.as_str(), "***"),
            None => text.to_owned(),
        }
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    // The user info ends at the last '@' before the path: a password may
    // itself contain '@' when not percent-encoded.
    let authority = rest.split(['/', '?']).next()?;
    let (user_info, _host) = authority.rsplit_once('@')?;
    let (_user, password) = user_info.split_once(':')?;
    Some(password.to_owned())
}

fn keyword_password(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|pair| pair.strip_prefix("password="))
        .map(|password| password.trim_matches('\'').to_owned())
}

/// Whether a failed statement says the connection itself is gone (rather
/// than the statement being refused): such a connection must not be reused.
pub(crate) fn connection_lost(error: &diesel::result::Error) -> bool {
    let diesel::result::Error::DatabaseError(kind, info) = error else {
        return matches!(error, diesel::result::Error::BrokenTransactionManager);
    };
    if matches!(kind, DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection)
    {
        return true;
    }
    let state = info.sqlstate();
    let state = state.as_ref().map_or("", |state| state.as_str());
    state.starts_with("08") || matches!(state, "57P01" | "57P02" | "57P03")
}

/// Maps a failed query.
pub(crate) fn query_error(error: diesel::result::Error, secrets: &Secrets) -> Error {
    use diesel::result::Error as Diesel;

    match error {
        Diesel::DatabaseError(kind, info) => database_error(kind, info.as_ref(), secrets),
        Diesel::DeserializationError(source) => Error::Storage {
            message: format!("cannot read a row: {}", secrets.scrub(&source.to_string())),
            source: Some(source),
        },
        Diesel::SerializationError(source) => Error::Storage {
            message: format!("cannot send a value: {}", secrets.scrub(&source.to_string())),
            source: Some(source),
        },
        Diesel::BrokenTransactionManager => {
            Error::unavailable("the database connection was left in a broken state")
        }
        other => Error::storage(secrets.scrub(&other.to_string())),
    }
}

fn database_error(
    kind: DatabaseErrorKind,
    info: &(dyn DatabaseErrorInformation + Send + Sync),
    secrets: &Secrets,
) -> Error {
    let message = secrets.scrub(info.message());
    let state = info.sqlstate();
    let state = state.as_ref().map_or("", |state| state.as_str());
    let constraint = info.constraint_name().unwrap_or("");

    match kind {
        DatabaseErrorKind::UniqueViolation if EXECUTION_ID_UNIQUE.contains(&constraint) => {
            Error::DuplicateExecutionId { execution_id: duplicate_key(info).unwrap_or_default() }
        }
        DatabaseErrorKind::ForeignKeyViolation if constraint.ends_with("atom_id_fkey") => {
            Error::invalid("atom_id", "no learning atom has this id")
        }
        DatabaseErrorKind::CheckViolation => Error::invalid(
            constrained_field(constraint),
            format!("breaks the table's constraint {constraint}"),
        ),
        DatabaseErrorKind::NotNullViolation => Error::invalid(
            column_field(info.column_name().unwrap_or("")),
            "must not be null".to_owned(),
        ),
        DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection => {
            Error::unavailable(format!("lost the connection to PostgreSQL: {message}"))
        }
        DatabaseErrorKind::SerializationFailure => {
            Error::unavailable(format!("the database asked to retry: {message}"))
        }
        _ => match state {
            // Class 08: connection exceptions. 57P01 admin shutdown, 57P02
            // crash shutdown, 57P03 cannot connect now (starting up or in
            // recovery), 53300 too many connections, 40P01 deadlock, 57014
            // statement timeout: all pass if tried again later.
            _ if state.starts_with("08") => {
                Error::unavailable(format!("lost the connection to PostgreSQL: {message}"))
            }
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "57014" => {
                Error::unavailable(format!("PostgreSQL cannot serve the request now: {message}"))
            }
            // A NUL character or a byte sequence the database cannot store:
            // the core refuses these in every value it checks, so one that
            // gets here still came from the caller.
            "22021" | "22P05" => {
                Error::invalid("value", "contains a NUL character or text PostgreSQL cannot store")
            }
            // A time past what PostgreSQL stores (year 294276): an absurd
            // delay or lease.
            "22008" => Error::invalid("time", "is outside the range PostgreSQL can store"),
            // Insufficient privilege: the role lacks a grant SECURITY.md
            // lists. PostgreSQL's own text names the table.
            "42501" => Error::PermissionDenied { message },
            _ => Error::storage(format!("database error {state}: {message}")),
        },
    }
}

/// The value in a unique violation's detail, `Key (execution_id)=(x)
/// already exists.`
fn duplicate_key(info: &(dyn DatabaseErrorInformation + Send + Sync)) -> Option<String> {
    let detail = info.details()?;
    let start = detail.find(")=(")? + 3;
    let end = detail.rfind(") already exists")?;
    detail.get(start..end).map(str::to_owned)
}

/// The field a CHECK constraint of `greenlight_queue` guards.
fn constrained_field(constraint: &str) -> &'static str {
    match constraint {
        "greenlight_queue_status_check"
        | "greenlight_queue_executing_check"
        | "greenlight_queue_complete_check"
        | "greenlight_queue_failed_check" => "status",
        "greenlight_queue_max_retries_check" => "max_retries",
        "greenlight_queue_retry_count_check" => "retry_count",
        "greenlight_queue_attempt_check" => "attempt",
        "greenlight_queue_request_payload_check" => "request_payload",
        _ => "value",
    }
}

/// A column name as a `'static` field name (the error type wants one).
fn column_field(column: &str) -> &'static str {
    const COLUMNS: [&str; 10] = [
        "learner_id",
        "status",
        "request_payload",
        "queued_at",
        "retry_count",
        "max_retries",
        "run_at",
        "attempt",
        "priority",
        "worker_id",
    ];
    COLUMNS.into_iter().find(|&known| known == column).unwrap_or("value")
}

/// Maps a failure to get a connection from the pool.
pub(crate) fn pool_error(error: PoolError, secrets: &Secrets) -> Error {
    use deadpool::managed::TimeoutType;

    let url = secrets.redacted_url();
    match error {
        PoolError::Timeout(TimeoutType::Wait) => {
            Error::unavailable("timed out waiting for a free connection in the pool")
        }
        PoolError::Timeout(TimeoutType::Create) => {
            Error::unavailable(format!("timed out connecting to PostgreSQL at {url}"))
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            Error::unavailable("timed out checking a pooled connection")
        }
        PoolError::Backend(ManagerError::ConnectionError(error)) => {
            connection_error(error, secrets)
        }
        PoolError::Backend(ManagerError::QueryError(error)) => query_error(error, secrets),
        PoolError::Closed => Error::unavailable("the connection pool is closed"),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            Error::storage("the connection pool is misconfigured")
        }
    }
}

/// Maps a failure to open a connection.
pub(crate) fn connection_error(error: ConnectionError, secrets: &Secrets) -> Error {
    let url = secrets.redacted_url();
    match error {
        ConnectionError::CouldntSetupConfiguration(diesel::result::Error::DatabaseError(
            kind,
            info,
        )) => {
            let message = secrets.scrub(info.message());
            let state = info.sqlstate();
            let state = state.as_ref().map_or("", |state| state.as_str());
            // Class 28: wrong user or password; 3D000: no such database.
            // Retrying the same URL cannot help.
            if state.starts_with("28") || state == "3D000" {
                return Error::storage(format!("cannot connect to PostgreSQL at {url}: {message}"));
            }
            match database_error(kind, info.as_ref(), secrets) {
                Error::Unavailable { .. } | Error::Storage { .. } => {
                    Error::unavailable(format!("cannot connect to PostgreSQL at {url}: {message}"))
                }
                other => other,
            }
        }
        ConnectionError::InvalidConnectionUrl(message) => {
            Error::invalid("database_url", secrets.scrub(&message))
        }
        other => Error::unavailable(format!(
            "cannot connect to PostgreSQL at {url}: {}",
            secrets.scrub(&other.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error as the driver reports it, with a chosen SQLSTATE.
    struct Reported {
        state: &'static str,
        message: &'static str,
        constraint: Option<&'static str>,
        detail: Option<&'static str>,
    }

    impl DatabaseErrorInformation for Reported {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            self.detail
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            Some("greenlight_queue")
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.constraint
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
        fn sqlstate(&self) -> Option<diesel::result::SqlState> {
            self.state.parse().ok()
        }
    }

    fn reported(kind: DatabaseErrorKind, state: &'static str, message: &'static str) -> Error {
        let info = Reported { state, message, constraint: None, detail: None };
        query_error(diesel::result::Error::DatabaseError(kind, Box::new(info)), &Secrets::default())
    }

    #[test]
    fn server_states_map_to_retryable_or_not() {
        let unknown = DatabaseErrorKind::Unknown;
        for state in ["57P01", "57P03", "08006", "53300", "40P01"] {
            let error = reported(unknown, state, "terminating connection");
            assert!(matches!(error, Error::Unavailable { .. }), "{state}: {error:?}");
        }
        for state in ["22021", "22P05"] {
            let error = reported(unknown, state, "unsupported Unicode escape sequence");
            assert!(matches!(error, Error::InvalidInput { field: "value", .. }), "{error:?}");
        }
        let error = reported(unknown, "42P01", "relation \"greenlight_queue\" does not exist");
        assert!(matches!(error, Error::Storage { .. }) && !error.is_retryable());
        assert_eq!(
            error.to_string(),
            "storage error: database error 42P01: relation \"greenlight_queue\" does not exist"
        );
        let error = reported(unknown, "42501", "permission denied for table greenlight_queue");
        assert!(matches!(error, Error::PermissionDenied { .. }) && !error.is_retryable());
        assert_eq!(error.to_string(), "permission denied for table greenlight_queue");
        let error = reported(DatabaseErrorKind::ClosedConnection, "", "connection closed");
        assert!(error.is_retryable());
    }

    #[test]
    fn constraint_violations_name_the_field() {
        let check = Reported {
            state: "23514",
            message: "new row violates check constraint",
            constraint: Some("greenlight_queue_max_retries_check"),
            detail: None,
        };
        let error = query_error(
            diesel::result::Error::DatabaseError(
                DatabaseErrorKind::CheckViolation,
                Box::new(check),
            ),
            &Secrets::default(),
        );
        assert!(matches!(error, Error::InvalidInput { field: "max_retries", .. }), "{error:?}");

        let unique = Reported {
            state: "23505",
            message: "duplicate key value violates unique constraint",
            constraint: Some(EXECUTION_ID_UNIQUE[0]),
            detail: Some("Key (execution_id)=(gl-7) already exists."),
        };
        let error = query_error(
            diesel::result::Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                Box::new(unique),
            ),
            &Secrets::default(),
        );
        assert!(
            matches!(&error, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-7"),
            "{error:?}"
        );
    }

    #[test]
    fn passwords_are_found_and_scrubbed() {
        let secrets = Secrets::from_url("postgres://app:s3cr@t@db.example:5432/queue?x=1");
        assert_eq!(secrets.redacted_url(), "postgres://app:***@db.example:5432/queue?x=1");
        assert_eq!(secrets.scrub("auth failed for s3cr@t"), "auth failed for ***");

        let keywords = Secrets::from_url("host=db user=app password=hunter2 dbname=q");
        assert_eq!(keywords.redacted_url(), "host=db user=app password=*** dbname=q");

        let none = Secrets::from_url("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(none.redacted_url(), "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(none.scrub("anything"), "anything");
    }
}
