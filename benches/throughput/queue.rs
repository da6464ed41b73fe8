//! The queue's figures on PostgreSQL: enqueues, the worker's burn-down and
//! the enqueue-to-start latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight::postgres::PgStore;
use greenlight::worker::{ExecuteError, Executor, FnExecutor, JobContext, Retention, Worker};
use greenlight::{Executing, Job, LearnerId, NewJob, Store};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::raw::{BATCH, payload, preload};
use crate::{Budget, Rate, Result, Scale, connect, reset, timed};

/// The subcommand under which this binary runs the burn-down's worker.
pub(crate) const BURN_DOWN_CHILD: &str = "burn-down-child";

/// Slots per claimed job in the burn-down: room for three claims' worth of
/// jobs, so that two full batches can be claimed (one per connection)
/// while the last is completed. Two per batch left the second claim only
/// half a batch, and more claims per job.
const SLOTS_PER_BATCH: usize = 3;

/// The queue's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueFigures {
    pub(crate) enqueue_one: Rate,
    pub(crate) enqueue_many_100: Rate,
    pub(crate) enqueue_many_1000: Rate,
    pub(crate) burn_down: Rate,
    /// The burn-down worker process's peak resident set, in KiB.
    pub(crate) burn_down_peak_kib: u64,
}

pub(crate) async fn run(
    url: &str,
    clients: usize,
    batch: usize,
    scale: Scale,
) -> Result<QueueFigures> {
    let (admin, _admin_task) = connect(url).await?;

    reset(&admin).await?;
    let enqueue_one = enqueue(url, clients, scale.single_jobs, 1, scale).await?;
    reset(&admin).await?;
    let enqueue_many_100 = enqueue(url, clients, scale.batch_jobs, BATCH, scale).await?;
    reset(&admin).await?;
    let enqueue_many_1000 = enqueue(url, clients, scale.batch_jobs, 1_000, scale).await?;

    reset(&admin).await?;
    preload(&admin, scale.drain_jobs).await?;
    let (burn_down, burn_down_peak_kib) = burn_down(url, clients, batch, scale).await?;

    Ok(QueueFigures {
        enqueue_one,
        enqueue_many_100,
        enqueue_many_1000,
        burn_down,
        burn_down_peak_kib,
    })
}

impl QueueFigures {
    /// The best rate of each figure over two rounds, and the higher peak
    /// memory (the conservative one).
    pub(crate) fn best(self, other: Self) -> Self {
        Self {
            enqueue_one: self.enqueue_one.best(other.enqueue_one),
            enqueue_many_100: self.enqueue_many_100.best(other.enqueue_many_100),
            enqueue_many_1000: self.enqueue_many_1000.best(other.enqueue_many_1000),
            burn_down: self.burn_down.best(other.burn_down),
            burn_down_peak_kib: self.burn_down_peak_kib.max(other.burn_down_peak_kib),
        }
    }
}

/// A store with one connection per client, opened before the clock starts.
async fn store(url: &str, connections: usize) -> Result<PgStore> {
    let store = PgStore::builder(url).max_connections(connections).build()?;
    let warm: Vec<_> = (0..connections)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.stats().await })
        })
        .collect();
    for handle in warm {
        handle.await??;
    }
    Ok(store)
}

/// Enqueues `jobs` jobs, `per_call` at a time (`enqueue` when 1, else
/// `enqueue_many`), from `clients` tasks sharing one store.
async fn enqueue(
    url: &str,
    clients: usize,
    jobs: usize,
    per_call: usize,
    scale: Scale,
) -> Result<Rate> {
    let store = store(url, clients).await?;
    let budget = Budget::new(jobs, scale.phase_limit);
    let template = NewJob::builder(LearnerId::random(), payload()).build()?;
    let tasks = (0..clients).map(|_| {
        let store = store.clone();
        let budget = Arc::clone(&budget);
        let template = template.clone();
        async move {
            let mut done = 0;
            loop {
                let count = budget.take(per_call);
                if count == 0 {
                    return Ok(done);
                }
                // A learner and a request of its own per job, as in the
                // baseline; building the job is part of what a caller pays.
                // (Cloning the template's `Payload` would share one
                // document among all jobs, which no real caller gets.)
                let mut batch: Vec<NewJob> = (0..count)
                    .map(|_| {
                        let request = template.request_payload().as_value().clone();
                        NewJob::builder(LearnerId::random(), request).build()
                    })
                    .collect::<Result<_, _>>()?;
                if per_call == 1 {
                    store.enqueue(batch.remove(0)).await?;
                } else {
                    store.enqueue_many(batch).await?;
                }
                done += count as u64;
            }
        }
    });
    timed(tasks.collect()).await
}

/// Runs the burn-down's worker in a child process and reads its figures.
async fn burn_down(url: &str, clients: usize, batch: usize, scale: Scale) -> Result<(Rate, u64)> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg(BURN_DOWN_CHILD)
        .arg(url)
        .arg(clients.to_string())
        .arg(batch.to_string())
        .arg(scale.phase_limit.as_secs().to_string())
        .stderr(std::process::Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    if !output.status.success() {
        return Err(format!("the burn-down child failed: {}", output.status).into());
    }
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    let field = |name: &str| answer[name].as_f64().ok_or(format!("the child sent no {name}"));
    let rate =
        Rate { jobs: field("jobs")? as u64, elapsed: Duration::from_secs_f64(field("seconds")?) };
    Ok((rate, field("peak_kib")? as u64))
}

/// The burn-down's child: drains the ready jobs with a no-op executor and
/// prints `{"jobs", "seconds", "peak_kib"}` on stdout.
///
/// Arguments: the database URL, the connection count for the store's
/// working connections, the claim batch, the time limit in seconds.
pub(crate) fn burn_down_child(args: Vec<String>) -> Result<()> {
    let [url, clients, batch, limit] =
        <[String; 4]>::try_from(args).map_err(|_| "expected: URL CLIENTS BATCH LIMIT_SECONDS")?;
    let clients: usize = clients.parse()?;
    let batch: usize = batch.parse()?;
    let limit = Duration::from_secs(limit.parse()?);

    let runtime = tokio::runtime::Runtime::new()?;
    let (jobs, elapsed) = runtime.block_on(async {
        // As many connections as the baseline's clients, shared by the
        // claims and the completion writes (as many of each in flight as
        // there are connections), the maintenance task and the drain
        // check: the worker never has more statements running at once
        // than the baseline has.
        let store = Arc::new(store(&url, clients).await?);
        let worker = Worker::builder(store, NoOp)
            .concurrency(batch * SLOTS_PER_BATCH)
            .batch_size(batch)
            .claims_in_flight(clients.min(greenlight::worker::MAX_STATEMENTS_IN_FLIGHT))
            .completions_in_flight(clients.min(greenlight::worker::MAX_STATEMENTS_IN_FLIGHT))
            .retention(Retention::keep_everything())
            .drain(true)
            .build()?;
        let started = Instant::now();
        let mut handle = worker.spawn();
        let metrics = match tokio::time::timeout(limit, handle.join()).await {
            Ok(metrics) => metrics,
            Err(_) => handle.shutdown().await,
        };
        Ok::<_, crate::BoxError>((metrics.completed, started.elapsed()))
    })?;
    drop(runtime);

    let answer = json!({
        "jobs": jobs,
        "seconds": elapsed.as_secs_f64(),
        "peak_kib": peak_resident_kib()?,
    });
    println!("{answer}");
    Ok(())
}

/// The burn-down's executor: does nothing and returns an empty result.
/// Not an `FnExecutor`, which hands its closure a clone of every job.
struct NoOp;

#[greenlight::async_trait]
impl Executor for NoOp {
    async fn execute(&self, _: &Job<Executing>, _: &JobContext) -> Result<Value, ExecuteError> {
        Ok(json!({}))
    }
}

/// This process's peak resident set size (`VmHWM`), in KiB.
fn peak_resident_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    let kib = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// Enqueue-to-start latency: one idle worker, one slot, polling once an
/// hour, so only NOTIFY can wake it. Each sample is timed from just before
/// `enqueue` to the executor's first line; the next job is enqueued only
/// once the worker is idle again.
pub(crate) async fn latency(url: &str, scale: Scale) -> Result<Vec<Duration>> {
    let (admin, _admin_task) = connect(url).await?;
    reset(&admin).await?;
    let store = Arc::new(store(url, 2).await?);
    let (started, mut starts) = mpsc::unbounded_channel::<Instant>();
    let executor = FnExecutor::new(move |_, _| {
        let now = Instant::now();
        let started = started.clone();
        async move {
            let _ = started.send(now);
            Ok::<_, ExecuteError>(json!({}))
        }
    });
    let worker = Worker::builder(Arc::clone(&store) as Arc<dyn Store>, executor)
        .concurrency(1)
        .poll_interval(Duration::from_secs(3_600))
        .rescue_interval(Duration::from_secs(3_600))
        .retention(Retention::keep_everything())
        .build()?;
    let mut handle = worker.spawn();
    // Let the worker subscribe and settle into its idle wait.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let deadline = Instant::now() + scale.phase_limit;
    let mut samples = Vec::with_capacity(scale.latency_samples);
    for index in 0..scale.latency_samples {
        if Instant::now() >= deadline {
            break;
        }
        let job = NewJob::builder(LearnerId::random(), payload()).build()?;
        let enqueued = Instant::now();
        store.enqueue(job).await?;
        let start = tokio::time::timeout(Duration::from_secs(10), starts.recv())
            .await
            .map_err(|_| "no job started within 10 s of its enqueue")?
            .ok_or("the executor went away")?;
        samples.push(start.saturating_duration_since(enqueued));

        // Wait until the job is written and the claim loop has found
        // nothing more, so the next sample starts from an idle worker.
        while handle.metrics().completed <= index as u64 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.shutdown().await;
    samples.sort_unstable();
    Ok(samples)
}
