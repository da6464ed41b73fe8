//! The worker against a real PostgreSQL: every scenario in `common` on a
//! store driven by the manual clock, then what only a real server can
//! show: connections killed under a running worker, and NOTIFY waking an
//! idle one.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{AnyJob, Job, JobId, ManualClock, RetryPolicy, Status, Store};
use greenlight_postgres::PgStore;
use greenlight_testkit::postgres::{TestDb, admin, run_sql};
use greenlight_worker::{ExecuteError, FnExecutor, Retention, Worker};
use serde_json::json;
use tokio::sync::mpsc;

mod common;
use common::{Backend, Runs, enqueue, get, wait_for};

/// A fresh migrated database and a store on it, driven by a manual clock,
/// whose retries wait one millisecond.
async fn postgres() -> Backend {
    let db = TestDb::new().await;
    let clock = ManualClock::starting_now();
    let store = PgStore::builder(db.url())
        .clock(Arc::new(clock.clone()))
        .retry_policy(RetryPolicy::fixed(Duration::from_millis(1)))
        .build()
        .expect("a store");
    Backend { clock, store: Arc::new(store), keep: Some(Box::new(db)) }
}

worker_scenarios!(postgres);

/// Every session the store holds on `db`, from outside it.
const KILL_SESSIONS: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE datname = '{db}' AND pid <> pg_backend_pid()";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_lose_nothing_and_run_nothing_twice() {
    // Real time here: a claim whose answer dies with its connection
    // strands its jobs until their short lease runs out and the rescuer
    // takes them back.
    let db = TestDb::new().await;
    let store: Arc<dyn Store> = Arc::new(
        PgStore::builder(db.url())
            .retry_policy(RetryPolicy::fixed(Duration::from_millis(10)))
            .build()
            .expect("a store"),
    );
    let ids = enqueue(&*store, 2_000, 5).await;
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<greenlight_core::Executing>, _| {
            runs.record(job.id());
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, ExecuteError>(json!({"ok": true}))
            }
        })
    };
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            Worker::builder(Arc::clone(&store), executor.clone())
                .concurrency(8)
                .lease(Duration::from_secs(2))
                .rescue_interval(Duration::from_millis(500))
                .poll_interval(Duration::from_millis(50))
                .retention(Retention::keep_everything())
                .build()
                .expect("valid settings")
                .spawn()
        })
        .collect();

    // Kill every session of the store's pool, again and again, while the
    // workers run.
    let mut killer = admin().await;
    let mut kill_rounds = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        run_sql(&mut killer, &KILL_SESSIONS.replace("{db}", db.name()))
            .await
            .expect("terminate the store's sessions");
        kill_rounds += 1;
    }
    wait_for(&*store, |stats| stats.complete == 2_000).await;
    for worker in &mut workers {
        worker.shutdown().await;
    }

    assert_eq!(kill_rounds, 6);
    assert_eq!(runs.total(), 2_000, "no job ran twice, none was lost");
    for id in ids {
        assert_eq!(runs.of(id), 1, "job {id} ran {} times", runs.of(id));
        assert_eq!(get(&*store, id).await.status(), Status::Complete);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_long_before_its_next_poll() {
    let db = TestDb::new().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::new(db.url()).expect("a store"));
    let (started_tx, mut started) = mpsc::unbounded_channel::<JobId>();
    let executor = FnExecutor::new(move |job: Job<greenlight_core::Executing>, _| {
        let started_tx = started_tx.clone();
        async move {
            started_tx.send(job.id()).expect("the test listens");
            Ok::<_, ExecuteError>(json!({}))
        }
    });
    // The worker polls once when it starts, then not for an hour: only a
    // wake-up can make it look again within this test.
    let mut worker = Worker::builder(Arc::clone(&store), executor)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .expect("valid settings")
        .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker.metrics().claimed, 0, "the queue was empty");

    let [id] = enqueue(&*store, 1, 0).await[..] else { unreachable!() };
    let woken = tokio::time::timeout(Duration::from_secs(30), started.recv()).await;
    assert_eq!(woken.ok().flatten(), Some(id), "the idle worker was not woken by NOTIFY");
    wait_for(&*store, |stats| stats.complete == 1).await;
    worker.shutdown().await;
    assert!(matches!(get(&*store, id).await, AnyJob::Complete(_)));
}
