//! `greenlight work`: a worker that runs a program once per job.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight_core::serde_json::json;
use greenlight_core::{RetryPolicy, Store};
use greenlight_postgres::Role;
use greenlight_worker::{Metrics, Worker, WorkerHandle, shutdown_signal};

use super::open_with;
use crate::args::WorkArgs;
use crate::duration::Human;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::process::ProcessExecutor;
use crate::progress;
use crate::reaper::Reaper;

/// The multiplier between consecutive retry delays: the usual doubling.
const RETRY_MULTIPLIER: f64 = 2.0;

/// The largest share of a retry delay that jitter removes, as the
/// library's default policy: enough to spread a burst of failures.
const RETRY_JITTER: f64 = 0.2;

/// The worker's own timeout is this much past the program's. The executor
/// kills the program at `--timeout` and reports its stderr; the worker's
/// timeout is only a backstop should the kill itself hang.
const TIMEOUT_BACKSTOP: Duration = Duration::from_secs(10);

/// How often the progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// Runs the command.
pub(crate) async fn run(url: &str, args: WorkArgs, json: bool) -> CliResult {
    // Everything that can be refused is refused before connecting.
    check_program(&args.command[0])?;
    let policy = RetryPolicy::new(args.retry_base, RETRY_MULTIPLIER, args.retry_cap, RETRY_JITTER)
        .map_err(|_| {
            CliError::input(format!(
                "invalid --retry-cap: {} is shorter than --retry-base {}",
                Human(args.retry_cap),
                Human(args.retry_base)
            ))
        })?;
    // The claims and the completion writes in flight, the rescuer, the
    // drain check and a heartbeat or two at a time: a few connections
    // beyond those and a handful of jobs are enough.
    let connections = args.concurrency.min(16) + args.claims_in_flight + args.completions_in_flight;
    let pg_store = Arc::new(open_with(url, connections, policy)?);
    let store: Arc<dyn Store> = Arc::clone(&pg_store) as Arc<dyn Store>;
    let reaper = match Reaper::start() {
        Ok(reaper) => Some(Arc::new(reaper)),
        Err(error) => {
            tracing::warn!(
                %error,
                "cannot start the reaper: programs would outlive a worker that is killed outright"
            );
            None
        }
    };
    let executor = ProcessExecutor::new(&args.command, args.timeout, reaper);
    let mut builder = Worker::builder(Arc::clone(&store), executor)
        .concurrency(args.concurrency)
        .claims_in_flight(args.claims_in_flight)
        .completions_in_flight(args.completions_in_flight)
        .lease(args.lease)
        .poll_interval(args.poll)
        .shutdown_grace(args.grace)
        .rescue_interval(args.rescue_interval)
        .job_timeout(args.timeout + TIMEOUT_BACKSTOP)
        .drain(args.drain);
    if let Some(batch_size) = args.batch_size {
        builder = builder.batch_size(batch_size);
    }
    let worker = builder.build()?;

    // Fail fast, with exit 1, when the database cannot be reached or the
    // role may not claim: the worker itself would back off and retry for
    // ever.
    pg_store.check_privileges(Role::Worker).await?;

    let started = Instant::now();
    let mut handle = worker.spawn();
    let metrics = supervise(&mut handle, started).await;
    let elapsed = started.elapsed();
    let rate = metrics.completed as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    if json {
        output::print_json(&json!({
            "metrics": metrics,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "jobs_per_second": rate,
        }))
    } else {
        output::print_text(&format!(
            "worker stopped after {}: {} completed, {} retried, {} failed, {} lease lost, \
             {} given back ({rate:.1} jobs/s)\n",
            Human(elapsed),
            metrics.completed,
            metrics.retried,
            metrics.failed,
            metrics.lease_lost,
            metrics.released,
        ))
    }
}

/// Waits for the worker to drain, or for SIGINT/SIGTERM and a graceful
/// shutdown, drawing a throughput line meanwhile on a terminal.
async fn supervise(handle: &mut WorkerHandle, started: Instant) -> Metrics {
    let spinner = progress::is_interactive().then(progress::spinner);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut ticks = tokio::time::interval(REDRAW);
    loop {
        tokio::select! {
            () = &mut signal => {
                if let Some(spinner) = &spinner {
                    spinner.set_message("shutting down: waiting for running jobs");
                }
                tracing::info!("shutting down on a signal");
                break;
            }
            _ = ticks.tick() => {}
        }
        if handle.is_finished() {
            break;
        }
        if let Some(spinner) = &spinner {
            spinner.set_message(progress_line(&handle.metrics(), started.elapsed()));
        }
    }
    let metrics = handle.shutdown().await;
    if let Some(spinner) = &spinner {
        progress::finish(spinner);
    }
    metrics
}

fn progress_line(metrics: &Metrics, elapsed: Duration) -> String {
    let rate = metrics.completed as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    format!(
        "{} running · {} completed · {} retried · {} failed · {rate:.1} jobs/s",
        metrics.in_flight, metrics.completed, metrics.retried, metrics.failed
    )
}

/// Refuses a program that cannot be found, before anything connects: a
/// typo would otherwise fail every job it claims.
fn check_program(program: &str) -> CliResult {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|directory| directory.join(program).is_file())
        })
    };
    if found {
        Ok(())
    } else {
        Err(CliError::input(format!("cannot find the program {program:?} to run for each job")))
    }
}
