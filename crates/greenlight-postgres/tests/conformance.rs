//! The shared conformance suite and the model-based property test, run
//! against PostgreSQL with the injected clock.

mod common;

use greenlight_core::{ManualClock, RetryPolicy};

/// The suite names learning atoms by random ids (`AtomId::random()`), as a
/// host platform would name atoms it owns. In PostgreSQL `atom_id` is a
/// foreign key to the host's `learning_atoms`, so in the suite's databases
/// the "host" owns every atom the suite names: this trigger adds the atom
/// row first. The foreign key itself stays and is checked by the error
/// tests (an unknown atom is refused as invalid input).
const HOST_OWNS_EVERY_ATOM: &str = "
CREATE FUNCTION greenlight_test_host_atoms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO learning_atoms (id) VALUES (NEW.atom_id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER greenlight_test_host_atoms
    BEFORE INSERT ON greenlight_queue
    FOR EACH ROW WHEN (NEW.atom_id IS NOT NULL)
    EXECUTE FUNCTION greenlight_test_host_atoms();
";

async fn make_store(clock: ManualClock, policy: RetryPolicy) -> common::TestStore {
    let store = common::store_with(clock, policy).await;
    let mut connection = store.db.connect().await;
    common::run_sql(&mut connection, HOST_OWNS_EVERY_ATOM).await.expect("host atoms fixture");
    store
}

greenlight_testkit::conformance_suite!(make_store);

// Each case makes a database of its own, so fewer cases than the in-memory
// store runs; the sequences are still random and shrunk on failure.
greenlight_testkit::model_test!(make_store, cases = 48);
