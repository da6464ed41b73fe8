//! The conformance suite of `greenlight-testkit`, run on the memory store.

use greenlight_core::{ManualClock, RetryPolicy, Store};
use greenlight_memory::MemoryStore;

async fn make_store(clock: ManualClock, policy: RetryPolicy) -> impl Store + 'static {
    MemoryStore::builder().clock(clock).retry_policy(policy).build()
}

greenlight_testkit::conformance_suite!(make_store);
