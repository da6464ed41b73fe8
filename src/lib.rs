//! The Greenlight queue: a typed job queue on PostgreSQL.
//!
//! This facade re-exports the core (job states, transitions, the retry
//! policy and the [`Store`] trait) and, behind features, the adapters:
//!
//! | feature | module | what |
//! | --- | --- | --- |
//! | `memory` (default) | [`memory`] | the in-memory store, for unit tests |
//! | `postgres` | `postgres` | the diesel-async PostgreSQL store |
//! | `worker` | `worker` | the tokio worker runtime |
//!
//! See ARCHITECTURE.md for the map of the crates.

pub use greenlight_core::*;

/// The in-memory store, for unit tests of a domain layer.
#[cfg(feature = "memory")]
pub use greenlight_memory as memory;

/// The PostgreSQL store.
#[cfg(feature = "postgres")]
pub use greenlight_postgres as postgres;

/// The worker runtime.
#[cfg(feature = "worker")]
pub use greenlight_worker as worker;
