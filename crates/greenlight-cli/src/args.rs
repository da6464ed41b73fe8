//! The command line, as clap reads it.
//!
//! Every value that can be checked without the database is checked here,
//! by a value parser, so that a bad value is refused before anything
//! connects: UUIDs, statuses, durations, JSON payloads, execution ids and
//! counts. A parser's error is one line; `main` prints clap's first line
//! only, so the whole complaint stays on one line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use greenlight_core::chrono::{DateTime, Utc};
use greenlight_core::serde_json::Value;
use greenlight_core::{AtomId, ExecutionId, JobId, LearnerId, MAX_BATCH, Status};
use greenlight_worker::MAX_STATEMENTS_IN_FLIGHT;

use crate::duration;

/// The database the tests and a local install use when nothing else is
/// said.
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Operate the Greenlight job queue, run workers, or watch a demo.
#[derive(Debug, Parser)]
#[command(name = "greenlight", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// PostgreSQL URL (postgres://user:password@host:port/database).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub(crate) database_url: String,

    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Less log output on stderr (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) quiet: u8,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a simulated workload on the in-memory store (no database).
    Demo(DemoArgs),
    /// Apply the embedded migrations to the database (harmless to repeat).
    Migrate,
    /// Add one job, or many from a JSON Lines file.
    Enqueue(Box<EnqueueArgs>),
    /// Run a worker that executes a program once per job.
    Work(WorkArgs),
    /// Count jobs per status.
    Stats,
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job in full.
    Show(ShowArgs),
    /// Put a failed job (or every failed job) back to pending.
    Retry(RetryArgs),
    /// Cancel a pending job: it fails with a reason.
    Cancel(CancelArgs),
    /// Delete finished jobs older than a given age.
    Prune(PruneArgs),
}

/// `greenlight demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many jobs to run.
    #[arg(long, default_value = "2000", value_parser = positive_count, allow_hyphen_values = true)]
    pub(crate) jobs: usize,
    /// How many workers share the queue.
    #[arg(long, default_value = "4", value_parser = positive_count, allow_hyphen_values = true)]
    pub(crate) workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value = "16", value_parser = positive_count, allow_hyphen_values = true)]
    pub(crate) concurrency: usize,
    /// The share of attempts that fail (0 to 1); a tenth of those fail
    /// permanently, the rest are retried.
    #[arg(long, default_value = "0.1", value_parser = failure_rate)]
    pub(crate) failure_rate: f64,
}

/// `greenlight enqueue`.
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Read jobs from this JSON Lines file (`-` for stdin): one object per
    /// line, keyed by the table's column names (see the README).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "learner", "atom", "payload", "payload_file", "max_retries", "priority",
        "delay", "run_at", "execution_id", "key",
    ])]
    pub(crate) batch: Option<PathBuf>,

    /// The learner the job belongs to.
    #[arg(long, value_name = "UUID", value_parser = learner_id, required_unless_present = "batch")]
    pub(crate) learner: Option<LearnerId>,

    /// The learning atom the job runs.
    #[arg(long, value_name = "UUID", value_parser = atom_id)]
    pub(crate) atom: Option<AtomId>,

    /// The request payload: a JSON object or array. Default: {}.
    #[arg(long, value_name = "JSON", value_parser = payload, conflicts_with = "payload_file")]
    pub(crate) payload: Option<Value>,

    /// Read the request payload from this file (`-` for stdin).
    #[arg(long, value_name = "PATH")]
    pub(crate) payload_file: Option<PathBuf>,

    /// How many failures are retried (0 to 100). Default: 3.
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub(crate) max_retries: Option<u64>,

    /// Higher runs first; may be negative. Default: 0.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) priority: Option<i32>,

    /// Run no sooner than this long from now (30s, 5m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, conflicts_with = "run_at")]
    pub(crate) delay: Option<Duration>,

    /// Run no sooner than this time (RFC 3339, e.g. 2030-01-01T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub(crate) run_at: Option<DateTime<Utc>>,

    /// A Greenlight execution id known up front (at most 100 characters).
    #[arg(long, value_name = "ID", value_parser = execution_id)]
    pub(crate) execution_id: Option<ExecutionId>,

    /// An idempotency key: enqueueing the same key again returns the first
    /// job instead of adding one.
    #[arg(long, value_name = "IDEMPOTENCY_KEY")]
    pub(crate) key: Option<String>,
}

/// `greenlight work`.
#[derive(Debug, Args)]
pub(crate) struct WorkArgs {
    /// Jobs run at once.
    #[arg(long, default_value = "8", value_parser = positive_count, allow_hyphen_values = true)]
    pub(crate) concurrency: usize,
    /// The most jobs one claim takes. Default: the concurrency.
    #[arg(long = "batch", value_name = "N", value_parser = positive_count, allow_hyphen_values = true)]
    pub(crate) batch_size: Option<usize>,
    /// The most claims at once while a backlog lasts, each on a connection
    /// of its own (from 1 to 16).
    #[arg(long, value_name = "N", default_value = "2", value_parser = statements_in_flight, allow_hyphen_values = true)]
    pub(crate) claims_in_flight: usize,
    /// The most writes of finished jobs' outcomes at once, each on a
    /// connection of its own (from 1 to 16).
    #[arg(long, value_name = "N", default_value = "2", value_parser = statements_in_flight, allow_hyphen_values = true)]
    pub(crate) completions_in_flight: usize,
    /// How long a claim holds a job without a heartbeat.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub(crate) lease: Duration,
    /// Kill the program and retry the job when it runs longer than this.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    pub(crate) timeout: Duration,
    /// Exit once no job is ready, none is executing, and no retry is due
    /// within ten minutes.
    #[arg(long)]
    pub(crate) drain: bool,
    /// On SIGINT or SIGTERM, how long running jobs may take to finish
    /// before they are killed and given back to pending.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub(crate) grace: Duration,
    /// How long an idle worker waits before looking for work again when no
    /// notification arrives.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    pub(crate) poll: Duration,
    /// How often the worker takes back jobs whose lease expired (a crashed
    /// worker's); it also does so when it starts.
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    pub(crate) rescue_interval: Duration,
    /// The delay before a failed job's first retry; it doubles with each
    /// further failure.
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    pub(crate) retry_base: Duration,
    /// The longest delay between retries.
    #[arg(long, default_value = "10m", value_parser = duration::parse)]
    pub(crate) retry_cap: Duration,
    /// The program to run for each job, and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

/// `greenlight list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only jobs in this status: pending, executing, complete or failed.
    #[arg(long, value_parser = status)]
    pub(crate) status: Option<Status>,
    /// Only this learner's jobs.
    #[arg(long, value_name = "UUID", value_parser = learner_id)]
    pub(crate) learner: Option<LearnerId>,
    /// The most jobs to show.
    #[arg(long, default_value = "50", value_parser = list_limit, allow_hyphen_values = true)]
    pub(crate) limit: usize,
}

/// `greenlight show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job's id.
    #[arg(value_name = "ID", value_parser = job_id)]
    pub(crate) id: JobId,
}

/// `greenlight retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The failed job's id.
    #[arg(value_name = "ID", value_parser = job_id, required_unless_present = "all_failed")]
    pub(crate) id: Option<JobId>,
    /// Requeue every failed job.
    #[arg(long, conflicts_with = "id")]
    pub(crate) all_failed: bool,
}

/// `greenlight cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The pending job's id.
    #[arg(value_name = "ID", value_parser = job_id)]
    pub(crate) id: JobId,
    /// Why; stored as the job's error message.
    #[arg(long, default_value = "cancelled by an operator")]
    pub(crate) reason: String,
}

/// `greenlight prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete jobs that finished longer ago than this (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub(crate) older_than: Duration,
    /// Only complete or only failed jobs. Default: both.
    #[arg(long, value_parser = terminal_status)]
    pub(crate) status: Option<Status>,
}

// Value parsers. Each returns a one-line message; clap prefixes it with the
// argument's name.

fn learner_id(text: &str) -> Result<LearnerId, String> {
    text.parse().map_err(|_| not_a_uuid(text))
}

fn atom_id(text: &str) -> Result<AtomId, String> {
    text.parse().map_err(|_| not_a_uuid(text))
}

fn job_id(text: &str) -> Result<JobId, String> {
    text.parse().map_err(|_| not_a_uuid(text))
}

fn not_a_uuid(text: &str) -> String {
    format!("{text:?} is not a UUID")
}

fn status(text: &str) -> Result<Status, String> {
    text.parse().map_err(|error: greenlight_core::ParseStatusError| error.to_string())
}

fn terminal_status(text: &str) -> Result<Status, String> {
    match status(text)? {
        status if status.is_terminal() => Ok(status),
        status => Err(format!("only complete or failed jobs can be pruned, not {status}")),
    }
}

/// A JSON request payload given on the command line: it must parse and be
/// an object or an array, as the queue requires.
pub(crate) fn payload(text: &str) -> Result<Value, String> {
    let value: Value = greenlight_core::serde_json::from_str(text)
        .map_err(|error| format!("not JSON: {error}"))?;
    if !(value.is_object() || value.is_array()) {
        return Err("must be a JSON object or array".to_owned());
    }
    Ok(value)
}

fn execution_id(text: &str) -> Result<ExecutionId, String> {
    ExecutionId::new(text).map_err(|error| error.to_string())
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| format!("{text:?} is not an RFC 3339 time ({error})"))
}

/// A count of zero or more. Read as a signed number so that `-1` is
/// refused as negative, not misread as a flag.
fn count(text: &str) -> Result<u64, String> {
    let value: i64 = text.parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    u64::try_from(value).map_err(|_| format!("must not be negative (got {value})"))
}

fn positive_count(text: &str) -> Result<usize, String> {
    let value = count(text)?;
    if value == 0 || value > MAX_BATCH as u64 {
        return Err(format!("must be from 1 to {MAX_BATCH} (got {value})"));
    }
    Ok(value as usize)
}

fn statements_in_flight(text: &str) -> Result<usize, String> {
    let value = count(text)?;
    if value == 0 || value > MAX_STATEMENTS_IN_FLIGHT as u64 {
        return Err(format!("must be from 1 to {MAX_STATEMENTS_IN_FLIGHT} (got {value})"));
    }
    Ok(value as usize)
}

fn list_limit(text: &str) -> Result<usize, String> {
    positive_count(text)
}

fn failure_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("must be between 0 and 1 (got {rate})"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn payloads_must_be_objects_or_arrays() {
        assert!(payload(r#"{"code": "print(1)"}"#).is_ok());
        assert!(payload("[1, 2]").is_ok());
        assert_eq!(payload("42").unwrap_err(), "must be a JSON object or array");
        assert!(payload("{").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn counts_refuse_negative_numbers() {
        assert_eq!(count("3"), Ok(3));
        assert!(count("-1").unwrap_err().contains("negative"));
        assert!(positive_count("0").is_err());
        assert_eq!(statements_in_flight("16"), Ok(16));
        assert!(statements_in_flight("0").unwrap_err().contains("from 1 to 16"));
        assert!(statements_in_flight("17").unwrap_err().contains("from 1 to 16"));
    }

    #[test]
    fn prune_takes_only_terminal_statuses() {
        assert_eq!(terminal_status("failed"), Ok(Status::Failed));
        assert!(terminal_status("pending").is_err());
        assert!(terminal_status("done").unwrap_err().contains("unknown status"));
    }
}
