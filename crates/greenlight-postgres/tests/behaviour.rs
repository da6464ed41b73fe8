//! What the conformance suite cannot see: NOTIFY per statement, the LISTEN
//! connection's reconnection, and the database's own clock when no clock is
//! injected.

mod common;

use std::pin::pin;
use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use greenlight_core::{
    AnyJob, ClaimRequest, Enqueued, FailOutcome, Failure, LearnerId, NewJob, Rescued, Store,
    WorkerId,
};
use greenlight_postgres::{NOTIFY_CHANNEL, PgStore};
use serde_json::json;

fn keyed(key: &str) -> NewJob {
    NewJob::builder(LearnerId::random(), json!({})).idempotency_key(key).build().expect("job")
}

/// Notifications that reach `conn` within `wait`.
async fn notifications(conn: &mut AsyncPgConnection, wait: Duration) -> usize {
    let mut stream = pin!(conn.notifications_stream());
    let mut count = 0;
    while let Ok(Some(notification)) = tokio::time::timeout(wait, stream.next()).await {
        let notification = notification.expect("a notification");
        assert_eq!(notification.channel, NOTIFY_CHANNEL);
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_statement_and_none_when_nothing_was_added() {
    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    let mut listener = db.connect().await;
    common::run_sql(&mut listener, &format!("LISTEN {NOTIFY_CHANNEL}")).await.expect("listen");

    let batch: Vec<NewJob> = (0..50).map(|n| keyed(&format!("k{n}"))).collect();
    store.enqueue_many(batch).await.expect("enqueue");
    assert_eq!(notifications(&mut listener, Duration::from_millis(300)).await, 1);

    // Every key is known: nothing is added, nobody is woken.
    let again: Vec<NewJob> = (0..50).map(|n| keyed(&format!("k{n}"))).collect();
    let answers = store.enqueue_many(again).await.expect("enqueue again");
    assert!(answers.iter().all(|answer| !answer.is_created()));
    assert_eq!(notifications(&mut listener, Duration::from_millis(300)).await, 0);

    // Two statements, two notifications.
    store.enqueue(keyed("a")).await.expect("enqueue");
    store.enqueue(keyed("b")).await.expect("enqueue");
    assert_eq!(notifications(&mut listener, Duration::from_millis(300)).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_survive_a_lost_listen_connection() {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }

    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    let mut wakeups = store.wakeups().await.expect("wakeups").expect("a stream");
    let next = async |wakeups: &mut greenlight_core::Wakeups| {
        tokio::time::timeout(Duration::from_secs(10), wakeups.next()).await
    };

    store.enqueue(keyed("first")).await.expect("enqueue");
    assert_eq!(next(&mut wakeups).await, Ok(Some(())), "a wake-up for the first job");

    // Kill the listening session, found by its application_name.
    let mut admin = common::admin().await;
    let listener_pid = format!(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = '{}' AND application_name = 'greenlight-listener'",
        db.name()
    );
    let before: Vec<Pid> =
        diesel::sql_query(&listener_pid).load(&mut admin).await.expect("find the listener");
    assert_eq!(before.len(), 1, "one listening connection");
    common::run_sql(&mut admin, &format!("SELECT pg_terminate_backend({})", before[0].pid))
        .await
        .expect("terminate");

    // After reconnecting, one wake-up covers what may have been missed.
    assert_eq!(next(&mut wakeups).await, Ok(Some(())), "a wake-up after reconnecting");
    let after: Vec<Pid> =
        diesel::sql_query(&listener_pid).load(&mut admin).await.expect("find the listener");
    assert_eq!(after.len(), 1, "listening again");
    assert_ne!(after[0].pid, before[0].pid, "on a new connection");

    // And new work wakes it again.
    store.enqueue(keyed("second")).await.expect("enqueue");
    assert_eq!(next(&mut wakeups).await, Ok(Some(())), "a wake-up for the second job");

    // Dropping the stream ends the listening task and closes its session.
    drop(wakeups);
    let mut gone = false;
    for _ in 0..50 {
        let left: Vec<Pid> =
            diesel::sql_query(&listener_pid).load(&mut admin).await.expect("find the listener");
        if left.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the listening connection closes with its stream");
}

/// Without an injected clock, the database's `now()` decides. This is the one
/// place the tests wait on real time, briefly: it is the behaviour tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_clock_the_database_decides_the_time() {
    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        now: chrono::DateTime<chrono::Utc>,
    }

    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    let mut conn = db.connect().await;
    let before: Now =
        diesel::sql_query("SELECT now() AS now").get_result(&mut conn).await.expect("now");

    let Enqueued::Created(job) = store.enqueue(keyed("a")).await.expect("enqueue") else {
        panic!("a new job");
    };
    assert!(job.data().queued_at >= before.now);
    assert_eq!(job.data().run_at, job.data().queued_at);

    let request = ClaimRequest {
        worker_id: WorkerId::new("w").expect("id"),
        limit: 1,
        lease: Duration::from_millis(50),
    };
    let held = store.claim(&request).await.expect("claim").pop().expect("claimed");
    let lease = held.state().lease_expires_at - held.state().started_at;
    assert_eq!(lease, chrono::TimeDelta::milliseconds(50));

    // A retryable failure: pending again, after the default policy's delay.
    let FailOutcome::Retrying(retrying) =
        store.fail(held, Failure::retryable("timeout")).await.expect("fail")
    else {
        panic!("three retries were left");
    };
    assert!(retrying.data().run_at > retrying.data().queued_at);
    let nothing_ready = store.claim(&request).await.expect("claim");
    assert!(nothing_ready.is_empty(), "the backoff has not passed");

    // A lease that runs out is rescued once the database's clock passes it.
    store.enqueue(keyed("b")).await.expect("enqueue");
    let held = store.claim(&request).await.expect("claim").pop().expect("claimed");
    assert_eq!(store.rescue_expired().await.expect("rescue"), Rescued::default());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.rescue_expired().await.expect("rescue"), Rescued { retried: 1, failed: 0 });
    let AnyJob::Pending(rescued) = store.get(held.id()).await.expect("get").expect("job") else {
        panic!("rescued to pending");
    };
    assert_eq!(
        rescued.state().last_error.as_deref(),
        Some("lease expired: worker w stopped heartbeating")
    );
}
