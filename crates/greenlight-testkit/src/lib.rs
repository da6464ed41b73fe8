//! The conformance suite every Greenlight [`Store`] must pass, written once
//! and instantiated per adapter, and a model-based property test that
//! checks a store against a plain reference model.
//!
//! An adapter provides a factory that makes a fresh, empty store driven by
//! the given clock and retry policy, and instantiates the suite in one of
//! its test files:
//!
//! ```text
//! // tests/conformance.rs of an adapter
//! use greenlight_core::{ManualClock, RetryPolicy, Store};
//!
//! async fn make_store(clock: ManualClock, policy: RetryPolicy) -> impl Store + 'static {
//!     MyStore::connect(/* a fresh database */).with_clock(clock).with_retry_policy(policy)
//! }
//!
//! greenlight_testkit::conformance_suite!(make_store);
//! greenlight_testkit::model_test!(make_store, cases = 64);
//! ```
//!
//! [`conformance_suite!`] expands to one
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per check,
//! so a failure names the rule that broke; the test crate needs `tokio` (with
//! the `macros` and `rt-multi-thread` features) as a dev-dependency. Each
//! check is also a pub async fn in [`conformance`], callable by hand.
//! [`model_test!`] expands to a plain `#[test]` that runs
//! [`model::check_against_model`].
//!
//! Rules every check follows:
//! - time comes only from the [`ManualClock`] handed to the factory; the
//!   suite moves it and never sleeps;
//! - expected values come from the core's own transitions and
//!   [`RetryPolicy`], never from numbers written into the test, so the suite
//!   cannot agree with a bug by coincidence;
//! - every write is checked twice: the value returned and the row read back
//!   with `get`.

pub mod conformance;
pub mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
use std::future::Future;

use greenlight_core::{ManualClock, RetryPolicy, Store};

/// Makes a fresh, empty store that reads `clock` and retries with `policy`.
///
/// Implemented for every `Fn(ManualClock, RetryPolicy) -> impl Future`
/// whose output is a [`Store`], so an `async fn make_store(clock, policy)`
/// is a factory as it stands.
pub trait StoreFactory {
    /// The store made.
    type Store: Store + 'static;
    /// The future that makes it.
    type Future: Future<Output = Self::Store>;

    /// A fresh, empty store.
    fn make(&self, clock: ManualClock, policy: RetryPolicy) -> Self::Future;
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn(ManualClock, RetryPolicy) -> Fut,
    Fut: Future<Output = S>,
    S: Store + 'static,
{
    type Store = S;
    type Future = Fut;

    fn make(&self, clock: ManualClock, policy: RetryPolicy) -> Fut {
        self(clock, policy)
    }
}

/// Instantiates the conformance suite for a store factory: one
/// `#[tokio::test]` per check in [`conformance`], named after it.
///
/// ```text
/// greenlight_testkit::conformance_suite!(make_store);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::__conformance_tests!(
            $factory;
            enqueue_then_get,
            enqueue_keeps_every_field,
            enqueue_many_keeps_order,
            enqueue_many_of_nothing,
            idempotency_key_returns_existing_job,
            idempotency_key_within_one_batch,
            duplicate_execution_id_writes_nothing,
            claim_respects_run_at,
            claim_orders_by_priority_then_run_at_then_id,
            claim_respects_limit,
            claim_rejects_invalid_requests,
            claim_sets_lease_and_attempt,
            no_double_claim,
            complete_stores_result,
            complete_rejects_invalid_result,
            complete_many_reports_each_job,
            fail_with_retries_left_goes_back_to_pending,
            fail_until_retries_run_out,
            fail_with_no_retries_fails_at_once,
            fail_permanently_fails_at_once,
            cancel_only_pending,
            requeue_only_failed,
            release_spends_no_retry,
            heartbeat_extends_lease,
            record_execution_id_is_stored_at_once,
            fencing_after_rescue_and_reclaim,
            write_past_expiry_succeeds_until_rescued,
            rescue_expired_moves_only_expired_leases,
            list_by_status_and_learner_pages_everything_once,
            list_rejects_invalid_limit,
            stats_counts_every_field,
            has_work_within_sees_executing_and_due_jobs,
            prune_deletes_only_old_terminal_jobs,
            unknown_ids_are_not_found,
            writes_to_finished_jobs_are_lease_lost,
            wakeups_follow_enqueue,
            hostile_text_is_stored_verbatim,
            store_limits_refuse_oversized_payloads_and_write_nothing,
        );
    };
}

/// Expands the list of checks; an implementation detail of
/// [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:path; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::conformance::$check($factory).await;
            }
        )*
    };
}

/// Instantiates the model-based property test for a store factory as one
/// `#[test]` named `store_agrees_with_model`, running `cases` random
/// sequences of operations.
///
/// ```text
/// greenlight_testkit::model_test!(make_store, cases = 256);
/// ```
#[macro_export]
macro_rules! model_test {
    ($factory:path, cases = $cases:expr) => {
        #[test]
        fn store_agrees_with_model() {
            $crate::model::check_against_model($factory, $cases);
        }
    };
}
