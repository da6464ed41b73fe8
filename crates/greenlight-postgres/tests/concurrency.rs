//! Many claimers at once: every job is claimed exactly once, and a claimer
//! skips rows another transaction holds instead of waiting for them.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use greenlight_core::{ClaimRequest, JobId, LearnerId, NewJob, Store, WorkerId};
use greenlight_postgres::PgStore;
use serde_json::json;
use tokio::sync::Barrier;

const JOBS: usize = 600;
const CLAIMERS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_each_get_distinct_jobs() {
    let db = common::TestDb::new().await;
    let setup = PgStore::new(db.url()).expect("store");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| {
            NewJob::builder(LearnerId::random(), json!({"n": n}))
                .priority((n % 7) as i32)
                .build()
                .expect("job")
        })
        .collect();
    let enqueued: HashSet<JobId> = setup
        .enqueue_many(jobs)
        .await
        .expect("enqueue")
        .iter()
        .map(greenlight_core::Enqueued::id)
        .collect();
    assert_eq!(enqueued.len(), JOBS);

    // Every claimer has a pool of its own with one connection: twelve
    // separate sessions, released together by the barrier.
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = PgStore::builder(db.url()).max_connections(1).build().expect("store");
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let request = ClaimRequest {
                    worker_id: WorkerId::new(format!("claimer-{n}")).expect("id"),
                    limit: 7,
                    lease: Duration::from_secs(60),
                };
                // Open the connection before the start line.
                store.stats().await.expect("warm up");
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim(&request).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    for job in &batch {
                        assert_eq!(job.attempt(), 1, "a job claimed twice");
                        assert_eq!(job.state().worker_id, request.worker_id);
                    }
                    // Within a batch: highest priority first.
                    assert!(
                        batch
                            .windows(2)
                            .all(|pair| pair[0].data().priority >= pair[1].data().priority)
                    );
                    mine.extend(batch.into_iter().map(|job| job.id()));
                }
            })
        })
        .collect();

    let mut claimed = Vec::new();
    let mut busy_claimers = 0;
    for claimer in claimers {
        let mine = claimer.await.expect("claimer");
        if !mine.is_empty() {
            busy_claimers += 1;
        }
        claimed.extend(mine);
    }
    let distinct: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), JOBS, "every job claimed, none twice");
    assert_eq!(distinct, enqueued);
    assert!(busy_claimers > 1, "the claims did run side by side");
    let stats = setup.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.executing), (0, JOBS as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_skips_rows_locked_by_another_transaction() {
    let db = common::TestDb::new().await;
    let store = PgStore::new(db.url()).expect("store");
    let top = NewJob::builder(LearnerId::random(), json!({})).priority(10).build().expect("job");
    let top = store.enqueue(top).await.expect("enqueue").id();
    let rest =
        (0..3).map(|_| NewJob::builder(LearnerId::random(), json!({})).build().expect("job"));
    store.enqueue_many(rest.collect()).await.expect("enqueue");

    // Another session locks the highest-priority row and holds the lock
    // (its transaction stays open) while the store claims.
    let mut holder = db.connect().await;
    common::run_sql(
        &mut holder,
        &format!("BEGIN; SELECT id FROM greenlight_queue WHERE id = '{}' FOR UPDATE", top.0),
    )
    .await
    .expect("lock the row");

    let request = ClaimRequest {
        worker_id: WorkerId::new("w").expect("id"),
        limit: 10,
        lease: Duration::from_secs(60),
    };
    // SKIP LOCKED: no waiting on the held row, and the others come back.
    let claimed = tokio::time::timeout(Duration::from_secs(5), store.claim(&request))
        .await
        .expect("the claim did not wait for the lock")
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|job| job.id() != top));

    common::run_sql(&mut holder, "COMMIT").await.expect("release the lock");
    let after = store.claim(&request).await.expect("claim");
    assert_eq!(after.iter().map(greenlight_core::Job::id).collect::<Vec<_>>(), vec![top]);
}
