//! The worker runtime of the Greenlight queue: claims jobs from any
//! [`Store`](greenlight_core::Store), runs them with an [`Executor`], and
//! writes their outcomes.
//!
//! A worker claims as many jobs as it has free slots (under a backlog,
//! with more than one claim in flight, see
//! [`WorkerConfig::claims_in_flight`]), wakes on the store's
//! wake-ups (PostgreSQL NOTIFY) or its poll interval, heartbeats every third
//! of the lease, turns an executor's panic into a retryable failure, runs
//! the rescuer and the pruner on timers, backs off while the storage is
//! down, and on shutdown gives unfinished jobs back without spending a
//! retry. Each job runs in a `tracing` span with its id, attempt and
//! learner.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use greenlight_core::{LearnerId, NewJob, Store};
//! use greenlight_memory::MemoryStore;
//! use greenlight_worker::{ExecuteError, FnExecutor, Worker};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), greenlight_core::Error> {
//! let store = Arc::new(MemoryStore::new());
//! store.enqueue(NewJob::builder(LearnerId::random(), json!({"code": "print(1)"})).build()?).await?;
//!
//! let executor = FnExecutor::new(|job, _context| async move {
//!     Ok::<_, ExecuteError>(json!({"ran": job.data().request_payload["code"]}))
//! });
//! let metrics = Worker::builder(store.clone(), executor)
//!     .drain(true) // stop once the queue is empty
//!     .build()?
//!     .run_until(std::future::pending())
//!     .await;
//! assert_eq!(metrics.completed, 1);
//! # Ok(()) }
//! ```

mod backoff;
mod completer;
mod config;
mod executor;
mod metrics;
mod worker;

pub use config::{MAX_STATEMENTS_IN_FLIGHT, Retention, WorkerConfig};
pub use executor::{ExecuteError, Executor, FnExecutor, JobContext};
pub use metrics::Metrics;
pub use worker::{Worker, WorkerBuilder, WorkerHandle, shutdown_signal};
