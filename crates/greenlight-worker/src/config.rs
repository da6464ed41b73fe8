//! How a worker is set up.

use std::time::Duration;

use greenlight_core::{Error, MAX_BATCH, WorkerId};

/// How long finished jobs are kept before the pruner deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Complete jobs older than this are deleted; `None` keeps them.
    /// Default: 7 days, long enough for a learner to come back for a result.
    pub complete: Option<Duration>,
    /// Failed jobs older than this are deleted; `None` keeps them.
    /// Default: 30 days, since operators investigate failures later.
    pub failed: Option<Duration>,
    /// How often the pruner runs. Default: 10 minutes.
    pub interval: Duration,
    /// The most rows one delete removes. Default: 1,000, so a prune never
    /// holds many row locks at once.
    pub batch_size: usize,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        Self {
            complete: Some(7 * DAY),
            failed: Some(30 * DAY),
            interval: Duration::from_secs(600),
            batch_size: 1_000,
        }
    }
}

impl Retention {
    /// Keeps every finished job: the pruner never runs.
    pub fn keep_everything() -> Self {
        Self { complete: None, failed: None, ..Self::default() }
    }
}

/// The most statements of one kind a worker may have in flight at once:
/// the bound on [`WorkerConfig::claims_in_flight`] and on
/// [`WorkerConfig::completions_in_flight`]. Each statement holds a database
/// connection while it runs, and more than a few only queue up for the
/// pool.
pub const MAX_STATEMENTS_IN_FLIGHT: usize = 16;

/// A worker's settings; every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Names this worker in leases and logs. Default: host, pid and a
    /// random suffix.
    pub worker_id: WorkerId,
    /// Jobs run at once. Default: 8; Greenlight calls mostly wait, so a
    /// worker can run several per core.
    pub concurrency: usize,
    /// The most jobs one claim asks for; a claim never asks for more than
    /// the free slots. While jobs are running, the worker waits up to 5 ms
    /// for half a batch of slots to come free before it claims, so that a
    /// busy worker claims in batches rather than a slot at a time.
    /// Default: 8 (the concurrency).
    pub batch_size: usize,
    /// The most claims in flight at once. While every claim comes back
    /// full (a backlog) and at least half a batch of slots is free beyond
    /// those already being claimed into, the worker starts another claim
    /// without waiting for the first to answer, so that claims keep more
    /// than one database connection busy, each connection taking claims
    /// and completions in turn. An idle worker claims one at a time
    /// whatever this says. With the default concurrency and batch size
    /// the slots never allow a second claim. From 1 to
    /// [`MAX_STATEMENTS_IN_FLIGHT`]; default: 2.
    pub claims_in_flight: usize,
    /// The most completion writes in flight at once. While one is in
    /// flight, another starts only for at least half of the most one write
    /// carries (500 completions); fewer wait for a writer, so that a busy
    /// worker writes in batches. Two keep pace with two claims in flight.
    /// From 1 to [`MAX_STATEMENTS_IN_FLIGHT`]; default: 2.
    pub completions_in_flight: usize,
    /// How long a claim holds a job without a heartbeat. Heartbeats come
    /// every third of it. Default: 30 s: long enough to ride out a slow
    /// heartbeat, short enough that a crashed worker's jobs restart soon.
    pub lease: Duration,
    /// How often an idle worker looks for work when no wake-up arrives.
    /// Default: 1 s; with PostgreSQL NOTIFY the wake-up usually comes first.
    pub poll_interval: Duration,
    /// How long shutdown waits for running jobs before giving them back.
    /// Default: 30 s.
    pub shutdown_grace: Duration,
    /// Cancels and retries a job that runs longer than this. Default: none.
    pub job_timeout: Option<Duration>,
    /// How often the rescuer takes back expired leases. It also runs when
    /// the worker starts. Default: 15 s, half the default lease.
    pub rescue_interval: Duration,
    /// The pruner's settings. Default: [`Retention::default`].
    pub retention: Retention,
    /// Exit once the queue is drained: nothing executing, nothing ready,
    /// and nothing scheduled within `drain_horizon`. Default: off.
    pub drain: bool,
    /// With `drain`, pending jobs due within this long are waited for (so
    /// retries in backoff finish). Default: 10 minutes, the default retry
    /// policy's cap.
    pub drain_horizon: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: WorkerId::generate(),
            concurrency: 8,
            batch_size: 8,
            claims_in_flight: 2,
            completions_in_flight: 2,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            job_timeout: None,
            rescue_interval: Duration::from_secs(15),
            retention: Retention::default(),
            drain: false,
            drain_horizon: Duration::from_secs(600),
        }
    }
}

impl WorkerConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        if self.concurrency == 0 || self.concurrency > MAX_BATCH {
            return Err(Error::invalid("concurrency", format!("must be from 1 to {MAX_BATCH}")));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(Error::invalid("batch_size", format!("must be from 1 to {MAX_BATCH}")));
        }
        if self.claims_in_flight == 0 || self.claims_in_flight > MAX_STATEMENTS_IN_FLIGHT {
            return Err(Error::invalid(
                "claims_in_flight",
                format!("must be from 1 to {MAX_STATEMENTS_IN_FLIGHT}"),
            ));
        }
        if self.completions_in_flight == 0 || self.completions_in_flight > MAX_STATEMENTS_IN_FLIGHT
        {
            return Err(Error::invalid(
                "completions_in_flight",
                format!("must be from 1 to {MAX_STATEMENTS_IN_FLIGHT}"),
            ));
        }
        if self.lease < Duration::from_millis(30) {
            return Err(Error::invalid("lease", "must be at least 30 ms"));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::invalid("poll_interval", "must be greater than zero"));
        }
        if self.rescue_interval.is_zero() {
            return Err(Error::invalid("rescue_interval", "must be greater than zero"));
        }
        if self.retention.interval.is_zero() {
            return Err(Error::invalid("retention.interval", "must be greater than zero"));
        }
        if self.retention.batch_size == 0 || self.retention.batch_size > MAX_BATCH {
            return Err(Error::invalid(
                "retention.batch_size",
                format!("must be from 1 to {MAX_BATCH}"),
            ));
        }
        if self.job_timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(Error::invalid("job_timeout", "must be greater than zero"));
        }
        Ok(())
    }
}
