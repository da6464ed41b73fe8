//! The raw SQL baseline: the fewest round trips PostgreSQL needs for each
//! operation, on the queue's own table and indexes, with no library code
//! between the statement and the driver.
//!
//! This is the one place outside `greenlight-postgres` that writes SQL: it
//! is the yardstick the store is measured against, so it must not share the
//! store's code. The statements are prepared once per connection, as the
//! store's are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

use crate::{Budget, Rate, Result, Scale, connect, reset, timed};

/// A batch of new jobs in one statement; every other column takes the
/// table's default, as a fresh pending job's does.
const INSERT_BATCH: &str = "\
INSERT INTO greenlight_queue (learner_id, request_payload)
SELECT * FROM unnest($1::uuid[], $2::jsonb[])";

const INSERT_ONE: &str = "\
INSERT INTO greenlight_queue (learner_id, request_payload) VALUES ($1, $2)";

/// The claim the design asks for: one CTE that locks ready rows in claim
/// order, skipping locked ones, and marks them executing with a lease.
/// It returns what a worker needs to run a job and fence its writes.
///
/// The rows are updated by primary key (`id = ANY(ARRAY(...))`) rather
/// than through a join with the CTE: the join is what the design sketches,
/// but from about 800 rows on the planner hashes the whole table for it,
/// and the baseline is meant to be the best this database does. The store
/// found the same; this text is the baseline's own.
const CLAIM: &str = "\
WITH ready AS (
    SELECT id FROM greenlight_queue
    WHERE status = 'pending' AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE greenlight_queue AS job
SET status = 'executing', attempt = job.attempt + 1, started_at = now(),
    worker_id = $2, lease_expires_at = now() + interval '30 seconds'
WHERE job.id = ANY(ARRAY(SELECT id FROM ready))
RETURNING job.id, job.attempt, job.request_payload";

const COMPLETE_BATCH: &str = "\
UPDATE greenlight_queue
SET status = 'complete', result_payload = '{}', completed_at = now(),
    lease_expires_at = NULL, worker_id = NULL
WHERE id = ANY($1) AND status = 'executing'";

const COMPLETE_ONE: &str = "\
UPDATE greenlight_queue
SET status = 'complete', result_payload = '{}', completed_at = now(),
    lease_expires_at = NULL, worker_id = NULL
WHERE id = $1 AND status = 'executing'";

/// One new job and its notification, in one statement, as an enqueue sends
/// them: the notification goes out when the insert commits.
const INSERT_NOTIFY: &str = "\
WITH inserted AS (
    INSERT INTO greenlight_queue (learner_id, request_payload) VALUES ($1, $2)
    RETURNING id
)
SELECT pg_notify('greenlight_queue_ready', '') FROM inserted";

/// Rows per statement in the batched baseline, as the targets name.
pub(crate) const BATCH: usize = 100;

/// Rows per statement when loading ready jobs for a drain (untimed).
const PRELOAD_BATCH: usize = 1_000;

/// The request every job of the harness carries: a small, typical one.
pub(crate) fn payload() -> Value {
    json!({"language": "python", "code": "print(1)"})
}

/// The baseline's figures, in jobs per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawFigures {
    pub(crate) insert_batch: Rate,
    pub(crate) insert_one: Rate,
    pub(crate) drain_batch: Rate,
    pub(crate) drain_one: Rate,
    /// Claim and complete at the burn-down's own claim batch: what the
    /// database does with the worker's statement sizes and no worker.
    pub(crate) drain_at_burn_down_batch: Rate,
}

impl RawFigures {
    /// The best rate of each figure over two rounds.
    pub(crate) fn best(self, other: Self) -> Self {
        Self {
            insert_batch: self.insert_batch.best(other.insert_batch),
            insert_one: self.insert_one.best(other.insert_one),
            drain_batch: self.drain_batch.best(other.drain_batch),
            drain_one: self.drain_one.best(other.drain_one),
            drain_at_burn_down_batch: self
                .drain_at_burn_down_batch
                .best(other.drain_at_burn_down_batch),
        }
    }
}

pub(crate) async fn run(
    url: &str,
    clients: usize,
    burn_down_batch: usize,
    scale: Scale,
) -> Result<RawFigures> {
    let (admin, _admin_task) = connect(url).await?;

    reset(&admin).await?;
    let insert_batch = insert(url, clients, scale.batch_jobs, BATCH, scale).await?;
    reset(&admin).await?;
    let insert_one = insert(url, clients, scale.single_jobs, 1, scale).await?;

    reset(&admin).await?;
    preload(&admin, scale.drain_jobs).await?;
    let drain_batch = drain(url, clients, BATCH, scale).await?;
    reset(&admin).await?;
    preload(&admin, scale.single_drain_jobs).await?;
    let drain_one = drain(url, clients, 1, scale).await?;
    reset(&admin).await?;
    preload(&admin, scale.drain_jobs).await?;
    let drain_at_burn_down_batch = drain(url, clients, burn_down_batch, scale).await?;

    Ok(RawFigures { insert_batch, insert_one, drain_batch, drain_one, drain_at_burn_down_batch })
}

/// Inserts `jobs` jobs, `per_statement` at a time, from `clients` tasks.
async fn insert(
    url: &str,
    clients: usize,
    jobs: usize,
    per_statement: usize,
    scale: Scale,
) -> Result<Rate> {
    let budget = Budget::new(jobs, scale.phase_limit);
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, _) = connect(url).await?;
        let text = if per_statement == 1 { INSERT_ONE } else { INSERT_BATCH };
        let statement = client.prepare(text).await?;
        let budget = Arc::clone(&budget);
        tasks.push(async move {
            let payload = payload();
            let mut done = 0;
            loop {
                let count = budget.take(per_statement);
                if count == 0 {
                    return Ok(done);
                }
                if per_statement == 1 {
                    client.execute(&statement, &[&Uuid::new_v4(), &payload]).await?;
                } else {
                    let learners: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
                    let payloads = vec![payload.clone(); count];
                    client.execute(&statement, &[&learners, &payloads]).await?;
                }
                done += count as u64;
            }
        });
    }
    timed(tasks).await
}

/// Claims and completes ready jobs, `per_claim` at a time, from `clients`
/// tasks, until none is left or the time is up.
async fn drain(url: &str, clients: usize, per_claim: usize, scale: Scale) -> Result<Rate> {
    let budget = Budget::new(usize::MAX, scale.phase_limit);
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let (client, _) = connect(url).await?;
        let claim = client.prepare(CLAIM).await?;
        let complete =
            client.prepare(if per_claim == 1 { COMPLETE_ONE } else { COMPLETE_BATCH }).await?;
        let budget = Arc::clone(&budget);
        let worker = format!("raw-{index}");
        let limit = per_claim as i64;
        tasks.push(async move {
            let mut done = 0;
            while !budget.expired() {
                let rows = client.query(&claim, &[&limit, &worker]).await?;
                if rows.is_empty() {
                    break;
                }
                let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
                if per_claim == 1 {
                    client.execute(&complete, &[&ids[0]]).await?;
                } else {
                    client.execute(&complete, &[&ids]).await?;
                }
                done += ids.len() as u64;
            }
            Ok(done)
        });
    }
    timed(tasks).await
}

/// The floor under the queue's enqueue-to-start latency: the same three
/// connections and steps with nothing between them. One connection inserts
/// a job and notifies, one listens, one claims a single row when woken.
/// Each sample runs from just before the insert to the claim's answer; the
/// job is then completed (untimed) and the next sample starts 2 ms after,
/// as the queue's latency phase does.
pub(crate) async fn latency(url: &str, scale: Scale) -> Result<Vec<Duration>> {
    let (admin, _admin_task) = connect(url).await?;
    reset(&admin).await?;
    let (producer, _producer_task) = connect(url).await?;
    let insert = producer.prepare(INSERT_NOTIFY).await?;
    let (claimer, _claimer_task) = connect(url).await?;
    let claim = claimer.prepare(CLAIM).await?;
    let complete = claimer.prepare(COMPLETE_ONE).await?;

    // The listening connection is driven here, not by `connect`, so that
    // its notifications can be read.
    let (listener, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (woken, mut wakeups) = mpsc::unbounded_channel::<()>();
    let _listener_task = AbortOnDrop(tokio::spawn(async move {
        let mut messages = std::pin::pin!(futures_util::stream::poll_fn(move |context| {
            connection.poll_message(context)
        }));
        while let Some(Ok(message)) = messages.next().await {
            if matches!(message, AsyncMessage::Notification(_)) && woken.send(()).is_err() {
                return;
            }
        }
    }));
    listener.batch_execute("LISTEN greenlight_queue_ready").await?;

    let payload = payload();
    let limit = 1_i64;
    let worker = "raw-latency".to_owned();
    let deadline = Instant::now() + scale.phase_limit;
    let mut samples = Vec::with_capacity(scale.latency_samples);
    while samples.len() < scale.latency_samples && Instant::now() < deadline {
        let inserted = Instant::now();
        producer.query(&insert, &[&Uuid::new_v4(), &payload]).await?;
        let (started, id) = loop {
            tokio::time::timeout(Duration::from_secs(10), wakeups.recv())
                .await
                .map_err(|_| "no notification within 10 s of the insert")?
                .ok_or("the listening connection closed")?;
            let rows = claimer.query(&claim, &[&limit, &worker]).await?;
            if let Some(row) = rows.first() {
                break (Instant::now(), row.get::<_, Uuid>(0));
            }
        };
        samples.push(started.saturating_duration_since(inserted));
        claimer.execute(&complete, &[&id]).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples.sort_unstable();
    Ok(samples)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Loads `jobs` ready jobs (untimed) and refreshes the table's statistics,
/// so that the raw drain and the burn-down start from the same table.
pub(crate) async fn preload(client: &Client, jobs: usize) -> Result<()> {
    let statement = client.prepare(INSERT_BATCH).await?;
    let payload = payload();
    let mut left = jobs;
    while left > 0 {
        let count = left.min(PRELOAD_BATCH);
        let learners: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
        let payloads = vec![payload.clone(); count];
        client.execute(&statement, &[&learners, &payloads]).await?;
        left -= count;
    }
    client.batch_execute("VACUUM ANALYZE greenlight_queue").await?;
    Ok(())
}
