//! The model-based property test of `greenlight-testkit`, run on the memory
//! store: random sequences of operations agree with the reference model.

use greenlight_core::{ManualClock, RetryPolicy, Store};
use greenlight_memory::MemoryStore;

async fn make_store(clock: ManualClock, policy: RetryPolicy) -> impl Store + 'static {
    MemoryStore::builder().clock(clock).retry_policy(policy).build()
}

// A thousand sequences of up to 40 steps take well under a few seconds on
// the memory store, and reach deep states (retries after backoff, fenced
// writes after a rescue, requeues) many times over.
greenlight_testkit::model_test!(make_store, cases = 1000);
