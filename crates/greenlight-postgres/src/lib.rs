//! The PostgreSQL [`Store`](greenlight_core::Store) of the Greenlight queue,
//! on diesel-async.
//!
//! - [`PgStore`]: the store, over a pool of `AsyncPgConnection`s; made with
//!   [`PgStore::builder`].
//! - [`migrate`]: applies the embedded migrations (the top-level
//!   `migrations/` folder); [`PgStore::migrate`] does the same.
//! - [`NOTIFY_CHANNEL`]: the channel on which every enqueue sends one
//!   notification; [`Store::wakeups`](greenlight_core::Store::wakeups) listens
//!   on it from a dedicated connection that reconnects by itself.
//!
//! Every claim is one statement (`FOR UPDATE SKIP LOCKED`); every write to
//! an executing job names the attempt it holds and changes nothing when that
//! attempt is no longer current; a failure decides retry or fail in the same
//! UPDATE. Database errors become the core's [`Error`](greenlight_core::Error):
//! connection trouble is [`Error::Unavailable`](greenlight_core::Error::Unavailable)
//! (retryable), a refused value [`Error::InvalidInput`](greenlight_core::Error::InvalidInput),
//! a taken execution id [`Error::DuplicateExecutionId`](greenlight_core::Error::DuplicateExecutionId).
//!
//! ```no_run
//! use std::time::Duration;
//! use greenlight_core::{ClaimRequest, LearnerId, NewJob, Store, WorkerId};
//! use greenlight_postgres::PgStore;
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), greenlight_core::Error> {
//! let store = PgStore::builder("postgres://postgres@127.0.0.1:5432/postgres")
//!     .max_connections(8)
//!     .build()?;
//! store.migrate().await?;
//!
//! let job = NewJob::builder(LearnerId::random(), json!({"language": "python"})).build()?;
//! store.enqueue(job).await?;
//!
//! let request = ClaimRequest {
//!     worker_id: WorkerId::new("worker-1")?,
//!     limit: 10,
//!     lease: Duration::from_secs(30),
//! };
//! for job in store.claim(&request).await? {
//!     store.complete(job, json!({"stdout": "1\n"})).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod listen;
mod migrate;
mod privileges;
mod row;
mod schema;
mod sql;
mod store;

pub use migrate::migrate;
pub use privileges::Role;
pub use store::{PgStore, PgStoreBuilder};

/// The NOTIFY channel for new work. Each enqueue statement that adds jobs
/// sends one notification on it (never one per row), with an empty payload:
/// a notification only says "claim now".
pub const NOTIFY_CHANNEL: &str = "greenlight_queue_ready";

#[cfg(test)]
mod tests {
    #[test]
    fn the_enqueue_statements_notify_the_documented_channel() {
        let call = format!("pg_notify('{}'", super::NOTIFY_CHANNEL);
        for statement in [super::sql::ENQUEUE, super::sql::ENQUEUE_PLAIN] {
            assert!(statement.text().contains(&call));
            assert_eq!(statement.text().matches("pg_notify").count(), 1);
        }
    }
}
