//! The throughput harness: how close the queue comes to what PostgreSQL
//! itself can do on the same machine, in the same run.
//!
//! ```sh
//! cargo bench --bench throughput --features postgres,worker
//! cargo bench --bench throughput --features postgres,worker -- --smoke --json out.json
//! ```
//!
//! It makes a database of its own on `DATABASE_URL`'s server, migrates it
//! with the project's migrations, and runs, each phase on a freshly
//! truncated table:
//!
//! 1. the raw SQL baseline (`raw`): hand-written statements on
//!    tokio-postgres, the driver under diesel-async, prepared once per
//!    connection: 100-row and single-row inserts, 100-row and single-row
//!    claim-then-complete, and claim-then-complete at the burn-down's
//!    claim batch;
//! 2. the queue's enqueues (`queue`): `enqueue` one at a time and
//!    `enqueue_many` in batches of 100 and 1,000, from the same number of
//!    clients;
//! 3. the burn-down (`queue`): the worker runtime drains ready jobs with a
//!    no-op executor, in a child process (this binary, re-run), so that
//!    its peak resident memory is the worker's alone;
//! 4. the enqueue-to-start latency of one idle worker woken by NOTIFY;
//! 5. the in-memory store's full lifecycles (`memory`).
//!
//! Every queue figure is printed beside its baseline with the ratio; speed
//! is never asserted, only reported. Each phase stops at its job count or
//! its time limit, whichever comes first, and the database is dropped at
//! the end, also after a failure.

// A benchmark program reports on stdout; that is its whole purpose.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod memory;
mod queue;
mod raw;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use greenlight_testkit::postgres::{admin, database_url, drop_abandoned, url_for};
use tokio_postgres::NoTls;

use crate::memory::MemoryFigures;
use crate::report::{Report, percentile};

/// The harness's databases are named this and the process id.
const DATABASE_PREFIX: &str = "greenlight_bench_";

/// What a phase's closure returns; anything can go wrong against a shared
/// server, and the harness only needs to say what.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// How big a run is. The full run aims at steady-state figures within a
/// few minutes; the smoke run only proves that every phase still works.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Jobs inserted by each batched insert phase (raw and queue).
    batch_jobs: usize,
    /// Jobs inserted one at a time by each single-row phase.
    single_jobs: usize,
    /// Ready jobs drained by the 100-row claim phases and the burn-down.
    drain_jobs: usize,
    /// Ready jobs drained by the single-row claim phase.
    single_drain_jobs: usize,
    /// Enqueue-to-start samples.
    latency_samples: usize,
    /// In-memory lifecycles per memory phase.
    memory_lifecycles: usize,
    /// The longest any one phase runs; a phase that hits it reports the
    /// rate of what it finished.
    phase_limit: Duration,
    /// Rounds of the baseline and queue phases; each figure reports its
    /// best round.
    rounds: usize,
}

impl Scale {
    const FULL: Self = Self {
        batch_jobs: 100_000,
        single_jobs: 20_000,
        drain_jobs: 100_000,
        single_drain_jobs: 10_000,
        latency_samples: 1_000,
        memory_lifecycles: 1_000_000,
        phase_limit: Duration::from_secs(30),
        rounds: 3,
    };

    const SMOKE: Self = Self {
        batch_jobs: 2_000,
        single_jobs: 200,
        drain_jobs: 500,
        single_drain_jobs: 200,
        latency_samples: 20,
        memory_lifecycles: 10_000,
        phase_limit: Duration::from_secs(5),
        rounds: 1,
    };
}

/// The command line.
#[derive(Debug)]
struct Options {
    scale: Scale,
    smoke: bool,
    /// Where to write the figures as JSON, besides the table on stdout.
    json: Option<PathBuf>,
    /// Connections (and client tasks) for every PostgreSQL phase, raw and
    /// queue alike. Default 2: one per core of the reference machine.
    clients: usize,
    /// The server; the harness makes and drops a database of its own on it.
    server_url: String,
    /// The burn-down worker's claim batch; its concurrency is three times this.
    burn_down_batch: usize,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            scale: Scale::FULL,
            smoke: false,
            json: None,
            clients: 2,
            server_url: database_url(),
            burn_down_batch: 500,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" => {
                    options.smoke = true;
                    options.scale = Scale::SMOKE;
                }
                "--json" => options.json = Some(args.next().ok_or("--json needs a path")?.into()),
                "--clients" => {
                    let value = args.next().ok_or("--clients needs a number")?;
                    options.clients = value.parse().map_err(|_| "--clients needs a number")?;
                    if options.clients == 0 {
                        return Err("--clients must be at least 1".into());
                    }
                }
                "--burn-down-batch" => {
                    let value = args.next().ok_or("--burn-down-batch needs a number")?;
                    options.burn_down_batch =
                        value.parse().map_err(|_| "--burn-down-batch needs a number")?;
                    if !(1..=greenlight::MAX_BATCH / 2).contains(&options.burn_down_batch) {
                        return Err("--burn-down-batch must be from 1 to 5,000".into());
                    }
                }
                // `cargo bench` passes `--bench` to every bench target.
                "--bench" => {}
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    // The burn-down's child: this binary, re-run with a subcommand.
    if std::env::args().nth(1).as_deref() == Some(queue::BURN_DOWN_CHILD) {
        return match queue::burn_down_child(std::env::args().skip(2).collect()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("burn-down child: {error}");
                ExitCode::FAILURE
            }
        };
    }

    let options = match Options::parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("throughput: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("throughput: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("throughput: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    // A run killed or panicking midway leaves its database behind; the
    // next run drops it.
    drop_abandoned(&mut admin().await, DATABASE_PREFIX).await;
    let name = format!("{DATABASE_PREFIX}{}", std::process::id());
    let (admin, admin_task) = connect(&options.server_url).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let url = url_for(&options.server_url, &name);

    let outcome = measure(options, &url).await;

    // The database goes whether or not the run worked; FORCE ends any
    // session a failed phase left behind.
    let dropped =
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    drop(admin);
    let _ = admin_task.await;
    let report = outcome?;
    dropped?;

    report.print(started.elapsed());
    if let Some(path) = &options.json {
        std::fs::write(path, report.to_json(started.elapsed())?)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(())
}

/// Runs every phase against the database at `url`.
async fn measure(options: &Options, url: &str) -> Result<Report> {
    let scale = options.scale;
    greenlight::postgres::migrate(url).await?;
    let mut report = Report::new(options, url).await?;

    // Rounds alternate the baseline and the queue, and each figure keeps
    // its best round: on a shared machine a slow round is another
    // process's doing, and the best is the closest to what each can do.
    // The latency samples kept, raw and queue alike, are those of the round
    // with the lowest p99, the figure other processes disturb most.
    let mut best: Option<(raw::RawFigures, queue::QueueFigures, Latencies, MemoryFigures)> = None;
    for _ in 0..scale.rounds {
        let raw = raw::run(url, options.clients, options.burn_down_batch, scale).await?;
        let queue = queue::run(url, options.clients, options.burn_down_batch, scale).await?;
        let latencies = Latencies {
            raw: raw::latency(url, scale).await?,
            queue: queue::latency(url, scale).await?,
        };
        // The memory phases run their own runtimes, which a thread of
        // this one may not start.
        let memory = tokio::task::spawn_blocking(move || memory::run(scale)).await??;
        best = Some(match best {
            None => (raw, queue, latencies, memory),
            Some((best_raw, best_queue, best_latencies, best_memory)) => (
                best_raw.best(raw),
                best_queue.best(queue),
                best_latencies.best(latencies),
                best_memory.best(memory),
            ),
        });
    }
    let (raw, queue, latencies, memory) = best.ok_or("no rounds were run")?;
    report.add(&raw, &queue, &latencies, &memory);
    Ok(report)
}

/// Enqueue-to-start samples, sorted: the raw floor's and the queue's.
#[derive(Debug)]
struct Latencies {
    raw: Vec<Duration>,
    queue: Vec<Duration>,
}

impl Latencies {
    /// Each series from the round where its p99 was lower.
    fn best(self, other: Self) -> Self {
        let lower = |one: Vec<Duration>, two: Vec<Duration>| {
            if p99(&two) < p99(&one) { two } else { one }
        };
        Self { raw: lower(self.raw, other.raw), queue: lower(self.queue, other.queue) }
    }
}

/// The 99th percentile of sorted samples.
fn p99(sorted: &[Duration]) -> Duration {
    percentile(sorted, 0.99)
}

/// One tokio-postgres connection and the task that drives it.
async fn connect(url: &str) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let task = tokio::spawn(async move {
        // A connection error surfaces on the client's next call too;
        // here it would only be noise.
        let _ = connection.await;
    });
    Ok((client, task))
}

/// Empties the queue's table and refreshes its statistics, so that every
/// phase starts from the same state whatever the one before left.
async fn reset(client: &tokio_postgres::Client) -> Result<()> {
    client.batch_execute("TRUNCATE greenlight_queue").await?;
    client.batch_execute("VACUUM ANALYZE greenlight_queue").await?;
    Ok(())
}

/// A measured rate.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    jobs: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_second(self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.jobs as f64 / self.elapsed.as_secs_f64() }
    }

    /// The faster of two measurements.
    fn best(self, other: Self) -> Self {
        if other.per_second() > self.per_second() { other } else { self }
    }
}

/// Runs `clients` tasks at once, each made by `task(index)` and returning
/// how many jobs it finished, and times them together. The tasks are
/// built (connections opened, statements prepared) before the clock starts.
async fn timed<F>(tasks: Vec<F>) -> Result<Rate>
where
    F: Future<Output = Result<u64>> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut jobs = 0;
    for handle in handles {
        jobs += handle.await??;
    }
    Ok(Rate { jobs, elapsed: started.elapsed() })
}

/// Jobs handed out to client tasks in units, until the count or the time
/// runs out; shared by the tasks of one phase.
#[derive(Debug)]
struct Budget {
    remaining: std::sync::atomic::AtomicUsize,
    deadline: Instant,
}

impl Budget {
    fn new(jobs: usize, limit: Duration) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            remaining: std::sync::atomic::AtomicUsize::new(jobs),
            deadline: Instant::now() + limit,
        })
    }

    /// Up to `unit` jobs for the caller to do; 0 when the phase is over.
    fn take(&self, unit: usize) -> usize {
        use std::sync::atomic::Ordering;

        if Instant::now() >= self.deadline {
            return 0;
        }
        let mut granted = 0;
        let _ = self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            granted = left.min(unit);
            Some(left - granted)
        });
        granted
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}
