//! Database and connection failures as the core's errors: the right
//! variant, retryable only when retrying can help, and never a password.

mod common;

use std::time::Duration;

use greenlight_core::{
    AnyJob, AtomId, ClaimRequest, Error, ExecutionId, Failure, JobId, LearnerId, NewJob,
    PayloadLimits, Store, WorkerId,
};
use greenlight_postgres::{PgStore, Role};
use serde_json::json;

fn job() -> NewJob {
    NewJob::builder(LearnerId::random(), json!({"code": "print(1)"})).build().expect("job")
}

fn with_execution_id(id: &str) -> NewJob {
    NewJob::builder(LearnerId::random(), json!({})).execution_id(id).build().expect("job")
}

fn claim_request() -> ClaimRequest {
    ClaimRequest {
        worker_id: WorkerId::new("w").expect("id"),
        limit: 10,
        lease: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn a_duplicate_execution_id_is_refused_and_writes_nothing() {
    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    store.enqueue(with_execution_id("gl-1")).await.expect("first");

    let error = store.enqueue(with_execution_id("gl-1")).await.expect_err("duplicate");
    assert!(
        matches!(&error, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-1"),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    // In a batch: all or none.
    let batch = vec![job(), with_execution_id("gl-2"), with_execution_id("gl-1")];
    let error = store.enqueue_many(batch).await.expect_err("duplicate in a batch");
    assert!(
        matches!(&error, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-1")
    );
    assert_eq!(store.stats().await.expect("stats").total(), 1, "nothing of the batch was written");

    // Recorded on a held job: refused, and the job is unchanged.
    store.enqueue(job()).await.expect("enqueue");
    let held = store.claim(&claim_request()).await.expect("claim");
    let held = held.into_iter().find(|job| job.data().execution_id.is_none()).expect("held");
    let taken = ExecutionId::new("gl-1").expect("id");
    let error = store.record_execution_id(&held, taken).await.expect_err("taken");
    assert!(
        matches!(&error, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-1")
    );
    assert_eq!(store.get(held.id()).await.expect("get"), Some(held.into_any()));
}

#[tokio::test]
async fn an_unknown_atom_is_invalid_input() {
    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    let new = NewJob::builder(LearnerId::random(), json!({}))
        .atom(AtomId::random())
        .build()
        .expect("job");
    let error = store.enqueue(new).await.expect_err("no such atom");
    assert!(matches!(error, Error::InvalidInput { field: "atom_id", .. }), "{error:?}");
    assert_eq!(store.stats().await.expect("stats").total(), 0);
}

#[tokio::test]
async fn nul_characters_are_refused_or_dropped_cleanly() {
    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    store.enqueue_many(vec![job(), job(), job()]).await.expect("enqueue");
    let mut held = store.claim(&claim_request()).await.expect("claim").into_iter();

    // A result with a NUL: refused before it reaches the database, and the
    // job is still held.
    let first = held.next().expect("a job");
    let error = store.complete(first.clone(), json!({"out": "a\u{0}b"})).await.expect_err("nul");
    assert!(matches!(error, Error::InvalidInput { field: "result_payload", .. }), "{error:?}");
    assert!(!error.to_string().contains("SELECT") && !error.to_string().contains("UPDATE"));
    store.complete(first, json!({"out": "ab"})).await.expect("a clean result completes");

    // An error message with a NUL: stored without it.
    let second = held.next().expect("a job");
    let outcome = store.fail(second, Failure::permanent("bad\u{0} input")).await.expect("fail");
    let AnyJob::Failed(failed) = outcome.into_any() else { panic!("expected failed") };
    assert_eq!(failed.state().error, "bad input");

    // A cancel reason with a NUL, likewise.
    let pending = store.enqueue(job()).await.expect("enqueue").id();
    let cancelled = store.cancel(pending, "\u{0}stop").await.expect("cancel");
    assert_eq!(cancelled.state().error, "stop");

    // Limits of the store's own, tighter than the job builder's.
    let strict = PgStore::builder(db.url())
        .payload_limits(PayloadLimits { max_bytes: 16, max_depth: 4 })
        .build()
        .expect("store");
    let big =
        NewJob::builder(LearnerId::random(), json!({"code": "x".repeat(64)})).build().expect("job");
    let error = strict.enqueue(big).await.expect_err("too big for this store");
    assert!(matches!(error, Error::InvalidInput { field: "request_payload", .. }), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_the_password_stays_secret() {
    // Port 1 on the loopback: nothing listens there, the refusal is quick.
    let url = "postgres://queue:hunter2-secret@127.0.0.1:1/queue";
    let store =
        PgStore::builder(url).connect_timeout(Duration::from_secs(3)).build().expect("lazy");
    assert!(!format!("{store:?}").contains("hunter2-secret"));

    let error = store.get(JobId::random()).await.expect_err("nothing listens on port 1");
    assert!(error.is_retryable(), "{error:?}");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains("hunter2-secret"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "the message names the server: {message}");
    assert!(!format!("{error:?}").contains("hunter2-secret"));

    let error = store.wakeups().await.err().expect("no listener either");
    assert!(error.is_retryable() && !error.to_string().contains("hunter2-secret"), "{error}");

    let error = greenlight_postgres::migrate(url).await.expect_err("nor migrations");
    assert!(error.is_retryable() && !error.to_string().contains("hunter2-secret"), "{error}");
}

#[tokio::test]
async fn a_missing_database_is_not_retryable() {
    let url = common::url_for(&common::database_url(), "greenlight_no_such_database");
    let store = PgStore::new(url).expect("lazy");
    let error = store.stats().await.expect_err("no such database");
    assert!(matches!(error, Error::Storage { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_by_the_server_is_replaced() {
    let db = common::TestDb::new().await;
    let store = PgStore::builder(db.url()).max_connections(1).build().expect("store");
    let id = store.enqueue(job()).await.expect("enqueue").id();

    // An operator (or a failover) ends the store's session: 57P01.
    let mut admin = common::admin().await;
    let killed = common::execute(
        &mut admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name()
        ),
    )
    .await
    .expect("terminate");
    assert_eq!(killed, 1, "the store's one pooled connection");

    // The first call may meet the dead connection and fail, as retryable;
    // that connection is then discarded, so the second call gets a new one.
    let mut found = None;
    let mut errors = Vec::new();
    for _ in 0..2 {
        match store.get(id).await {
            Ok(job) => {
                found = job;
                break;
            }
            Err(error) => {
                assert!(error.is_retryable(), "{error:?}");
                errors.push(error.to_string());
            }
        }
    }
    assert_eq!(found.map(|job| job.id()), Some(id), "{errors:?}");
}

#[tokio::test]
async fn a_role_without_grants_is_told_what_it_lacks() {
    let db = common::TestDb::new().await;
    let owner = PgStore::new(db.url()).expect("lazy");
    for role in [Role::Worker, Role::Producer] {
        owner.check_privileges(role).await.expect("the owner may do everything");
    }

    // A login role with no grant at all, unique to this run: roles belong
    // to the whole server.
    let name = format!("gl_bare_{}", std::process::id());
    let mut server = common::admin().await;
    common::run_sql(&mut server, &format!("DROP ROLE IF EXISTS {name}")).await.expect("clean");
    common::run_sql(&mut server, &format!("CREATE ROLE {name} LOGIN")).await.expect("a role");
    let (scheme, rest) = db.url().split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let bare = PgStore::new(format!("{scheme}://{name}@{host}")).expect("lazy");

    let error = bare.check_privileges(Role::Worker).await.expect_err("no grants");
    assert!(matches!(error, Error::PermissionDenied { .. }) && !error.is_retryable(), "{error:?}");
    assert!(
        error.to_string().contains("lacks SELECT, UPDATE, DELETE on greenlight_queue"),
        "{error}"
    );
    let error = bare.check_privileges(Role::Producer).await.expect_err("no grants");
    assert!(error.to_string().contains("lacks SELECT, INSERT"), "{error}");
    // The store's own statements are refused the same way, and say so.
    let error = bare.stats().await.expect_err("no SELECT");
    assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
    assert_eq!(error.to_string(), "permission denied for table greenlight_queue");

    drop(bare);
    drop(db);
    common::run_sql(&mut server, &format!("DROP ROLE {name}")).await.expect("drop the role");
}
