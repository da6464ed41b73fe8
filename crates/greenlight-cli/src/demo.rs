//! `greenlight demo`: the whole queue at work, in memory, in seconds.
//!
//! Enqueues jobs for a handful of learners into a [`MemoryStore`], starts
//! several workers on it in drain mode, and runs each job with a simulated
//! Greenlight call: a random 5 to 45 ms wait that fails at the given rate.
//! A tenth of the failures are permanent (a malformed request, which no
//! retry can fix); the rest are retryable and retried after a short
//! backoff (20 ms, doubling, capped at 200 ms, instead of the production
//! 2 s to 10 min, so retries happen while you watch). A job fails for good
//! after a permanent failure or its fourth failed attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use greenlight_core::serde_json::{Value, json};
use greenlight_core::{Executing, Job, LearnerId, NewJob, RetryPolicy, Stats, Store, WorkerId};
use greenlight_memory::MemoryStore;
use greenlight_worker::{
    ExecuteError, Executor, JobContext, Metrics, Retention, Worker, WorkerHandle, shutdown_signal,
};

use crate::args::DemoArgs;
use crate::duration::Human;
use crate::error::{CliError, CliResult};
use crate::output::{self, Table};
use crate::progress;

/// How many learners the demo's jobs belong to.
const LEARNERS: usize = 8;

/// Jobs per `enqueue_many` call.
const ENQUEUE_CHUNK: usize = 1_000;

/// How often progress is redrawn on a terminal, and how often a plain line
/// is printed when stderr is not one.
const REDRAW: Duration = Duration::from_millis(100);
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(1);

/// What the demo measured.
#[derive(Debug, serde::Serialize)]
struct Summary {
    jobs: usize,
    workers: usize,
    complete: u64,
    failed: u64,
    retries: u64,
    elapsed_seconds: f64,
    jobs_per_second: f64,
}

/// Runs the demo and prints its summary.
pub(crate) async fn run(args: &DemoArgs, json: bool) -> CliResult {
    let policy = RetryPolicy::new(Duration::from_millis(20), 2.0, Duration::from_millis(200), 0.2)?;
    let store = Arc::new(MemoryStore::builder().retry_policy(policy).build());
    enqueue(&store, args.jobs).await?;

    let executor = SimulatedExecutor::new(args.failure_rate);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(args.workers);
    for number in 1..=args.workers {
        let worker = Worker::builder(store.clone(), executor.clone())
            .worker_id(WorkerId::new(format!("demo-worker-{number}"))?)
            .concurrency(args.concurrency)
            // Retries come due within 200 ms; a short poll picks them up
            // promptly (a wake-up comes only for new work).
            .poll_interval(Duration::from_millis(20))
            .retention(Retention::keep_everything())
            .drain(true)
            .build()?;
        workers.push(worker.spawn());
    }

    let interrupted = watch(&store, &mut workers, args.jobs as u64, started).await?;
    let elapsed = started.elapsed();
    let metrics = join(&mut workers, interrupted).await;
    let stats = store.stats().await?;
    let finished = stats.complete + stats.failed;
    let summary = Summary {
        jobs: args.jobs,
        workers: args.workers,
        complete: stats.complete,
        failed: stats.failed,
        retries: metrics.retried,
        elapsed_seconds: elapsed.as_secs_f64(),
        jobs_per_second: finished as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
    };
    if json {
        output::print_json(&summary)?;
    } else {
        output::print_text(&table(&summary))?;
    }
    if finished < args.jobs as u64 {
        return Err(CliError::failed(format!(
            "the demo stopped with {} of {} jobs unfinished",
            args.jobs as u64 - finished,
            args.jobs
        )));
    }
    Ok(())
}

async fn enqueue(store: &MemoryStore, count: usize) -> CliResult {
    let learners: Vec<LearnerId> = (0..LEARNERS).map(|_| LearnerId::random()).collect();
    let jobs = (0..count)
        .map(|n| {
            let request = json!({"language": "python", "code": format!("print({n})")});
            NewJob::builder(learners[n % LEARNERS], request).build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        store.enqueue_many(chunk.to_vec()).await?;
    }
    Ok(())
}

/// Shows progress until every worker has drained the queue, or Ctrl-C.
/// Returns whether it was interrupted.
async fn watch(
    store: &MemoryStore,
    workers: &mut [WorkerHandle],
    total: u64,
    started: Instant,
) -> CliResult<bool> {
    let bar = progress::is_interactive().then(|| progress::bar(total));
    let mut last_line = Instant::now();
    let mut ticks = tokio::time::interval(REDRAW);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let interrupted = loop {
        tokio::select! {
            () = &mut signal => break true,
            _ = ticks.tick() => {}
        }
        let stats = store.stats().await?;
        let retries = workers.iter().map(|worker| worker.metrics().retried).sum();
        let line = status_line(&stats, retries, started.elapsed());
        match &bar {
            Some(bar) => {
                // The message first: setting the position redraws.
                bar.set_message(line);
                bar.set_position(stats.complete + stats.failed);
            }
            None if last_line.elapsed() >= PLAIN_LINE_EVERY => {
                eprintln!("demo: {}/{total} finished, {line}", stats.complete + stats.failed);
                last_line = Instant::now();
            }
            None => {}
        }
        if workers.iter().all(WorkerHandle::is_finished) {
            break false;
        }
    };
    if let Some(bar) = &bar {
        progress::finish(bar);
    }
    Ok(interrupted)
}

fn status_line(stats: &Stats, retries: u64, elapsed: Duration) -> String {
    let rate = (stats.complete + stats.failed) as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    format!(
        "complete {} · failed {} · retries {retries} · {rate:.0} jobs/s",
        stats.complete, stats.failed
    )
}

/// Waits for the workers (shutting them down if interrupted) and adds up
/// their counters.
async fn join(workers: &mut [WorkerHandle], interrupted: bool) -> Metrics {
    let mut total = Metrics::default();
    for worker in workers {
        let metrics = if interrupted { worker.shutdown().await } else { worker.join().await };
        total.claimed += metrics.claimed;
        total.completed += metrics.completed;
        total.retried += metrics.retried;
        total.failed += metrics.failed;
    }
    total
}

fn table(summary: &Summary) -> String {
    let mut table = Table::new(&["OUTCOME", "VALUE"]).align_right(1);
    let rows = [
        ("jobs", summary.jobs.to_string()),
        ("complete", summary.complete.to_string()),
        ("failed", summary.failed.to_string()),
        ("retries spent", summary.retries.to_string()),
        ("workers", summary.workers.to_string()),
        ("elapsed", Human(Duration::from_secs_f64(summary.elapsed_seconds)).to_string()),
        ("jobs/s", format!("{:.0}", summary.jobs_per_second)),
    ];
    for (name, value) in rows {
        table.row(vec![name.to_owned(), value]);
    }
    table.render()
}

/// A stand-in for a Greenlight call: a short random wait, then success or
/// a failure at the configured rate.
#[derive(Debug, Clone)]
struct SimulatedExecutor {
    failure_rate: f64,
    random: Arc<Random>,
}

impl SimulatedExecutor {
    fn new(failure_rate: f64) -> Self {
        Self { failure_rate, random: Arc::new(Random::from_time()) }
    }
}

#[greenlight_core::async_trait]
impl Executor for SimulatedExecutor {
    async fn execute(
        &self,
        job: &Job<Executing>,
        context: &JobContext,
    ) -> Result<Value, ExecuteError> {
        let wait = Duration::from_millis(5 + (self.random.next_unit() * 40.0) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = context.cancelled() => return Err(ExecuteError::retryable("cancelled")),
        }
        if self.random.next_unit() < self.failure_rate {
            // A tenth of failures are permanent, as a malformed request is.
            return Err(if self.random.next_unit() < 0.1 {
                ExecuteError::permanent("simulated: greenlight rejected the request")
            } else {
                ExecuteError::retryable("simulated: greenlight timed out")
            });
        }
        Ok(json!({"stdout": format!("{}\n", job.id()), "attempt": job.attempt()}))
    }
}

/// Random numbers for the simulation: splitmix64 over an atomic counter.
/// Shared by every task without a lock; statistical quality far beyond
/// what deciding a simulated failure needs, and no dependency for it.
#[derive(Debug)]
struct Random {
    state: AtomicU64,
}

impl Random {
    fn from_time() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self { state: AtomicU64::new(nanos as u64) }
    }

    /// A number in `[0, 1)`.
    fn next_unit(&self) -> f64 {
        let mut x = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        // The top 53 bits fill an f64 mantissa exactly.
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_stay_in_the_unit_interval_and_spread() {
        let random = Random { state: AtomicU64::new(42) };
        let draws: Vec<f64> = (0..10_000).map(|_| random.next_unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let below_tenth = draws.iter().filter(|&&x| x < 0.1).count();
        assert!((800..1_200).contains(&below_tenth), "{below_tenth}");
    }
}
