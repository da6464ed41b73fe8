//! The worker: claims jobs, runs them, and writes their outcomes.
//!
//! One main task claims jobs into free slots and spawns a task per job; a
//! completer task batches completions; a maintenance task runs the rescuer
//! and the pruner. All of them live in one [`JoinSet`] tree owned by the
//! main task, so aborting the main task (a crash, in tests) stops
//! everything at once without writing anything, exactly like a killed
//! process.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use greenlight_core::{
    ClaimRequest, Error, Executing, FailOutcome, Failure, Job, PruneRequest, Status, Store,
    Wakeups, WorkerId,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::Backoff;
use crate::completer::{self, Completion, CompletionSender};
use crate::executor::{ExecuteError, Executor, JobContext};
use crate::metrics::{Counters, Metrics};
use crate::{Retention, WorkerConfig};

/// State shared by the worker's tasks.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    executor: Arc<dyn Executor>,
    pub(crate) config: WorkerConfig,
    pub(crate) counters: Counters,
    /// Fired when shutdown begins: no more claims.
    stop_claiming: CancellationToken,
    /// Fired when the grace period is over: running jobs are cancelled and
    /// given back.
    pub(crate) hard_stop: CancellationToken,
}

/// A worker, ready to start. Made with [`Worker::builder`].
pub struct Worker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// Sets up a [`Worker`]; see [`WorkerConfig`] for every default.
#[must_use]
pub struct WorkerBuilder {
    store: Arc<dyn Store>,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Replaces every setting at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`WorkerConfig::worker_id`].
    pub fn worker_id(mut self, worker_id: WorkerId) -> Self {
        self.config.worker_id = worker_id;
        self
    }

    /// See [`WorkerConfig::concurrency`]. Also raises the batch size to
    /// match when it was left at its default.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        if self.config.batch_size == WorkerConfig::default().batch_size {
            self.config.batch_size = concurrency;
        }
        self.config.concurrency = concurrency;
        self
    }

    /// See [`WorkerConfig::batch_size`].
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// See [`WorkerConfig::claims_in_flight`].
    pub fn claims_in_flight(mut self, claims: usize) -> Self {
        self.config.claims_in_flight = claims;
        self
    }

    /// See [`WorkerConfig::completions_in_flight`].
    pub fn completions_in_flight(mut self, writes: usize) -> Self {
        self.config.completions_in_flight = writes;
        self
    }

    /// See [`WorkerConfig::lease`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// See [`WorkerConfig::poll_interval`].
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.config.poll_interval = poll_interval;
        self
    }

    /// See [`WorkerConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// See [`WorkerConfig::job_timeout`].
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.config.job_timeout = Some(timeout);
        self
    }

    /// See [`WorkerConfig::rescue_interval`].
    pub fn rescue_interval(mut self, interval: Duration) -> Self {
        self.config.rescue_interval = interval;
        self
    }

    /// See [`WorkerConfig::retention`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }

    /// See [`WorkerConfig::drain`].
    pub fn drain(mut self, drain: bool) -> Self {
        self.config.drain = drain;
        self
    }

    /// Checks the settings and makes the worker.
    pub fn build(self) -> Result<Worker, Error> {
        self.config.validate()?;
        let shared = Shared {
            store: self.store,
            executor: self.executor,
            config: self.config,
            counters: Counters::default(),
            stop_claiming: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        };
        Ok(Worker { shared: Arc::new(shared) })
    }
}

impl Worker {
    /// Starts setting up a worker that runs `executor` on jobs from `store`.
    pub fn builder(store: Arc<dyn Store>, executor: impl Executor) -> WorkerBuilder {
        WorkerBuilder { store, executor: Arc::new(executor), config: WorkerConfig::default() }
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// Starts the worker on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let task = tokio::spawn(run(Arc::clone(&self.shared)));
        WorkerHandle { shared: self.shared, task: Some(task) }
    }

    /// Runs the worker until `signal` resolves (say, [`shutdown_signal`]),
    /// then shuts down gracefully; or, in drain mode, until the queue is
    /// drained. Returns the final counters.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Metrics {
        let mut handle = self.spawn();
        tokio::select! {
            () = signal => handle.shutdown().await,
            metrics = handle.join() => metrics,
        }
    }
}

/// Controls a running worker.
///
/// Dropping the handle aborts the worker on the spot, as a crash would:
/// running jobs are neither completed nor given back, and their leases
/// expire for the rescuer to take. Call [`WorkerHandle::shutdown`] for a
/// clean stop.
#[must_use = "dropping the handle aborts the worker"]
pub struct WorkerHandle {
    shared: Arc<Shared>,
    task: Option<JoinHandle<Metrics>>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("worker_id", &self.shared.config.worker_id)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// The counters so far.
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.snapshot()
    }

    /// The worker's id, as stored in its leases.
    pub fn worker_id(&self) -> &WorkerId {
        &self.shared.config.worker_id
    }

    /// Whether the worker has stopped (drained, or shut down).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops claiming, lets running jobs finish within the grace period,
    /// gives the rest back to pending without spending a retry, and returns
    /// the final counters once all of that is written.
    pub async fn shutdown(&mut self) -> Metrics {
        self.shared.stop_claiming.cancel();
        self.join().await
    }

    /// Waits for the worker to stop by itself (drain mode) or through
    /// another caller's shutdown.
    pub async fn join(&mut self) -> Metrics {
        if let Some(task) = self.task.as_mut() {
            if let Err(error) = task.await {
                error!(%error, "the worker's main task failed");
            }
            self.task = None;
        }
        self.metrics()
    }

    /// Stops the worker at once, writing nothing, as if its process were
    /// killed. For tests of crash recovery.
    pub fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere): the signal a binary
/// should pass to [`Worker::run_until`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut interrupt), Ok(mut terminate)) =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        } else {
            warn!("cannot listen for SIGINT and SIGTERM; waiting for Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The main task.
async fn run(shared: Arc<Shared>) -> Metrics {
    let config = &shared.config;
    let span = info_span!("worker", worker_id = %config.worker_id);
    async {
        info!(concurrency = config.concurrency, lease = ?config.lease, "worker started");
        let mut services = JoinSet::new();
        let (completions, completion_receiver) = mpsc::unbounded_channel();
        services.spawn(completer::run(Arc::clone(&shared), completion_receiver).in_current_span());
        services.spawn(maintain(Arc::clone(&shared)).in_current_span());

        let mut jobs = JoinSet::new();
        claim_loop(&shared, &mut jobs, &completions).await;
        // Drained, or told to stop: either way no more claims, and the
        // maintenance task stops at its next turn.
        shared.stop_claiming.cancel();

        // Shutdown: running jobs get the grace period, then are cancelled
        // and give themselves back.
        let in_flight = jobs.len();
        if in_flight > 0 {
            info!(in_flight, grace = ?config.shutdown_grace, "waiting for running jobs");
        }
        let grace = tokio::time::sleep(config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = jobs.join_next() => if joined.is_none() { break },
                () = &mut grace => {
                    shared.hard_stop.cancel();
                    break;
                }
            }
        }
        while jobs.join_next().await.is_some() {}

        // Every job task has ended. Closing the channel lets the completer
        // write what they handed it, within what is left of the grace
        // period; maintenance stopped with the claims.
        drop(completions);
        loop {
            tokio::select! {
                joined = services.join_next() => if joined.is_none() { break },
                () = &mut grace, if !shared.hard_stop.is_cancelled() => shared.hard_stop.cancel(),
            }
        }
        shared.hard_stop.cancel();
        let metrics = shared.counters.snapshot();
        info!(?metrics, "worker stopped");
        metrics
    }
    .instrument(span)
    .await
}

/// What a claim brings back to the claim loop: the jobs, or why none came,
/// with the slots it reserved before asking, one for each job it asked for.
struct Claimed {
    result: Result<Vec<Job<Executing>>, Error>,
    slots: OwnedSemaphorePermit,
}

/// Claims into free slots until shutdown begins (or, in drain mode, the
/// queue is drained).
///
/// Each claim runs as a task of its own and reserves its slots before it
/// asks, so the loop can start another while one is in flight: under a
/// backlog (the last claim came back full) up to
/// [`WorkerConfig::claims_in_flight`] run at once, each on a connection of
/// its own. One claim at a time waits for the database in turn with the
/// completer; two keep both connections busy, each taking claims and
/// completions as they come.
async fn claim_loop(shared: &Arc<Shared>, jobs: &mut JoinSet<()>, completions: &CompletionSender) {
    let config = &shared.config;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let worthwhile = config.batch_size.min(config.concurrency).div_ceil(2);
    let mut wakeups = WakeupSource::subscribe(shared);
    let mut backoff = Backoff::default();
    let mut claims: JoinSet<Claimed> = JoinSet::new();
    // Claim as soon as slots allow: at the start, after a full batch, on a
    // wake-up or a poll. Not after a claim that found less than it asked
    // for, until one of those comes.
    let mut eager = true;
    // The last claim to answer came back full: more may run at once.
    let mut backlog = false;
    let mut next_poll = Instant::now() + config.poll_interval;
    // After a failed claim, none starts before this.
    let mut not_before: Option<Instant> = None;
    // While jobs run, how long to wait for a worthwhile batch of slots.
    let mut gather_until: Option<Instant> = None;
    // Slots reserved by the claims in flight.
    let mut reserved = 0;

    loop {
        if shared.stop_claiming.is_cancelled() {
            break;
        }
        while jobs.try_join_next().is_some() {}

        let now = Instant::now();
        let room = claims.len() < if backlog { config.claims_in_flight } else { 1 };
        let free = slots.available_permits();
        // How many free slots to wait for before looking again, if any.
        let mut awaited = None;
        if eager && room && not_before.is_none_or(|at| at <= now) {
            // Under load, let a worthwhile batch of slots come free first:
            // a claim costs a round trip and a statement whatever its
            // size. Slots come free in bursts (the completer writes a
            // batch, and every job in it ends), so a short wait usually
            // gathers a whole burst.
            let gathered = gather_until.is_some_and(|at| at <= now);
            // No slot is held by a job or its outcome: none will come free.
            let settled = free + reserved == config.concurrency;
            if free > 0 && (free >= worthwhile || settled || gathered) {
                reserved += start_claim(shared, &slots, &mut claims, free.min(config.batch_size));
                gather_until = None;
                not_before = None;
                continue;
            }
            if free == 0 {
                awaited = Some(1);
            } else {
                gather_until.get_or_insert(now + GATHER_SLOTS);
                awaited = Some(worthwhile);
            }
        } else {
            gather_until = None;
        }

        tokio::select! {
            () = shared.stop_claiming.cancelled() => break,
            Some(joined) = claims.join_next() => {
                // Claim tasks catch their panics and are never aborted.
                let Ok(Claimed { result, slots: held }) = joined else { continue };
                let limit = held.num_permits();
                reserved -= limit;
                match result {
                    Ok(claimed) => {
                        backoff.reset();
                        let count = claimed.len();
                        start_jobs(shared, jobs, claimed, held, completions);
                        if count == limit {
                            // A full batch: more work is likely waiting.
                            backlog = true;
                            eager = true;
                            continue;
                        }
                        backlog = false;
                        eager = false;
                        next_poll = Instant::now() + config.poll_interval;
                        // Every slot free: no job is running, and no
                        // outcome is still being written.
                        if config.drain
                            && claims.is_empty()
                            && slots.available_permits() == config.concurrency
                            && is_drained(shared).await
                        {
                            info!("queue drained");
                            break;
                        }
                    }
                    Err(error) => {
                        let delay = backoff.next_delay();
                        log_claim_failure(&error, delay);
                        backlog = false;
                        not_before = Some(Instant::now() + delay);
                    }
                }
            }
            // Enough slots are free. The loop is woken once for a burst
            // of slots, not once for every job that ends.
            () = slots_free(&slots, awaited.unwrap_or(0)), if awaited.is_some() => {}
            // While draining, a job's outcome written is a reason to look
            // again (a failed job may be back, or the queue be empty).
            () = slots_free(&slots, free + 1), if !eager && config.drain && free < config.concurrency => {
                eager = true;
            }
            () = sleep_until(gather_until), if gather_until.is_some() => {}
            () = sleep_until(not_before), if not_before.is_some() => {}
            // Idle: a wake-up or the poll interval. Subscribed: claim, since
            // work enqueued before then woke nobody.
            () = wakeups.next(), if !eager || wakeups.subscribing() => eager = true,
            () = tokio::time::sleep_until(next_poll), if !eager => eager = true,
        }
    }

    // Claims already sent may have taken jobs: they run (and get the grace
    // period) like any other, rather than wait out their leases.
    while let Some(joined) = claims.join_next().await {
        if let Ok(Claimed { result: Ok(claimed), slots: reserved, .. }) = joined {
            start_jobs(shared, jobs, claimed, reserved, completions);
        }
    }
}

/// Logs a failed claim: a warning while the storage is only unavailable.
fn log_claim_failure(error: &Error, delay: Duration) {
    if error.is_retryable() {
        warn!(%error, ?delay, "claiming failed; backing off");
    } else {
        error!(%error, ?delay, "claiming failed; backing off");
    }
}

/// Reserves `limit` free slots and starts a claim for as many jobs;
/// returns `limit`.
fn start_claim(
    shared: &Arc<Shared>,
    slots: &Arc<Semaphore>,
    claims: &mut JoinSet<Claimed>,
    limit: usize,
) -> usize {
    let config = &shared.config;
    let reserved = u32::try_from(limit)
        .ok()
        .and_then(|count| Arc::clone(slots).try_acquire_many_owned(count).ok())
        .expect("the claim asks for no more than the free slots, which fit a u32");
    let request = ClaimRequest { worker_id: config.worker_id.clone(), limit, lease: config.lease };
    let shared = Arc::clone(shared);
    claims.spawn(
        async move {
            let result = AssertUnwindSafe(shared.store.claim(&request))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Err(Error::storage(format!(
                        "the claim panicked: {}",
                        panic_message(panic.as_ref())
                    )))
                });
            Claimed { result, slots: reserved }
        }
        .in_current_span(),
    );
    limit
}

/// Spawns a task for each claimed job, each holding one of the slots the
/// claim reserved; the slots the claim found no job for come free.
fn start_jobs(
    shared: &Arc<Shared>,
    jobs: &mut JoinSet<()>,
    claimed: Vec<Job<Executing>>,
    mut reserved: OwnedSemaphorePermit,
    completions: &CompletionSender,
) {
    Counters::add(&shared.counters.claimed, claimed.len() as u64);
    for job in claimed {
        let slot =
            reserved.split(1).expect("the store returned no more jobs than the claim asked for");
        jobs.spawn(run_job(Arc::clone(shared), job, slot, completions.clone()));
    }
}

/// Waits until at least `count` slots are free, taking none of them.
async fn slots_free(slots: &Semaphore, count: usize) {
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    // The worker never closes its semaphore, so the wait cannot fail.
    drop(slots.acquire_many(count).await);
}

/// Sleeps until `at`; never wakes when there is no time to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long the claim loop waits for more slots to come free before it
/// claims into the few it has. Long enough for a batch of completions to be
/// written and its jobs' slots freed together, short enough that a slot
/// left by a long-running job's neighbour idles only briefly.
const GATHER_SLOTS: Duration = Duration::from_millis(5);

/// An idle worker's wake-ups. Subscribing opens a connection of its own,
/// which can take a while or hang, so it goes on beside the claim loop
/// rather than before it.
struct WakeupSource<'a> {
    subscribing: Option<Pin<Box<dyn Future<Output = Option<Wakeups>> + Send + 'a>>>,
    stream: Option<Wakeups>,
}

impl<'a> WakeupSource<'a> {
    fn subscribe(shared: &'a Shared) -> Self {
        Self { subscribing: Some(Box::pin(subscribe(shared))), stream: None }
    }

    fn subscribing(&self) -> bool {
        self.subscribing.is_some()
    }

    /// Resolves when the subscription answers, or on the next wake-up, or
    /// when the stream ends (from then on the worker only polls). With no
    /// stream, never resolves. Dropped midway, it loses nothing.
    async fn next(&mut self) {
        if let Some(subscribing) = &mut self.subscribing {
            self.stream = subscribing.await;
            self.subscribing = None;
            return;
        }
        match &mut self.stream {
            Some(stream) => {
                if stream.next().await.is_none() {
                    warn!("the wake-up stream ended; polling only");
                    self.stream = None;
                }
            }
            None => std::future::pending().await,
        }
    }
}

async fn subscribe(shared: &Shared) -> Option<Wakeups> {
    match shared.store.wakeups().await {
        Ok(wakeups) => wakeups,
        Err(error) => {
            warn!(%error, "cannot subscribe to wake-ups; polling only");
            None
        }
    }
}

async fn is_drained(shared: &Shared) -> bool {
    match shared.store.has_work_within(shared.config.drain_horizon).await {
        Ok(has_work) => !has_work,
        Err(error) => {
            warn!(%error, "cannot check whether the queue is drained");
            false
        }
    }
}

/// How a job's run ended, before its outcome is written.
enum RunEnd {
    Finished(Result<serde_json::Value, ExecuteError>),
    Panicked(String),
    TimedOut(Duration),
    LeaseLost,
    Shutdown,
}

/// Runs one job in its own task and span, holding a slot until its outcome
/// is written. A result is handed to the completer with the slot, and the
/// task ends there: the completer frees the slot once the result is
/// written.
async fn run_job(
    shared: Arc<Shared>,
    job: Job<Executing>,
    slot: OwnedSemaphorePermit,
    completions: CompletionSender,
) {
    let span = info_span!(
        "job",
        id = %job.id(),
        attempt = job.attempt(),
        learner_id = %job.learner_id(),
    );
    async move {
        Counters::add(&shared.counters.in_flight, 1);
        debug!("claimed");
        // Boxed: the run and the writing of its outcome are most of this
        // future, and spawning a job moves the whole future. Unboxed it was
        // 2,640 bytes, copied on every spawn and too large for the
        // allocator's fast path; now it is under a third of that.
        let (end, latest) = Box::pin(execute(&shared, &job)).await;
        drop(job);
        if let Some(slot) = Box::pin(settle(&shared, latest, end, slot, &completions)).await {
            drop(slot);
            shared.counters.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    .instrument(span)
    .await;
}

/// Runs the executor beside the heartbeat, until the first of: the
/// executor returns or panics, the lease is lost, the job times out, the
/// grace period ends.
async fn execute(shared: &Arc<Shared>, job: &Job<Executing>) -> (RunEnd, Job<Executing>) {
    let held = Arc::new(Mutex::new(job.clone()));
    // The executor hears of a stop only after the select below has named
    // its reason. Were its token a child of the hard stop, an executor that
    // honours cancellation would answer "cancelled" in the same instant as
    // the hard stop fires, the biased select would take that answer as the
    // job's own failure, and a shutdown would spend a retry.
    let cancel = CancellationToken::new();
    let context = JobContext::new(Arc::clone(&shared.store), Arc::clone(&held), cancel.clone());

    let run = AssertUnwindSafe(shared.executor.execute(job, &context)).catch_unwind();
    tokio::pin!(run);
    let timeout = async {
        match shared.config.job_timeout {
            Some(limit) => {
                tokio::time::sleep(limit).await;
                limit
            }
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        biased;
        outcome = &mut run => match outcome {
            Ok(result) => RunEnd::Finished(result),
            Err(panic) => {
                RunEnd::Panicked(format!("executor panicked: {}", panic_message(panic.as_ref())))
            }
        },
        () = heartbeat(shared, &held) => RunEnd::LeaseLost,
        limit = timeout => RunEnd::TimedOut(limit),
        () = shared.hard_stop.cancelled() => RunEnd::Shutdown,
    };
    // Tell the executor to stop. One that was cut short gets a moment to
    // see the signal and wind down (kill a child process, cancel the
    // remote execution); whatever it returns then is discarded.
    cancel.cancel();
    if !matches!(end, RunEnd::Finished(_) | RunEnd::Panicked(_)) {
        let _ = tokio::time::timeout(WIND_DOWN, &mut run).await;
    }
    let latest = held.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (end, latest)
}

/// How long an executor that was cancelled (lease lost, timed out, or
/// shut down past the grace period) may take to wind down before it is
/// dropped. Its outcome is discarded either way.
const WIND_DOWN: Duration = Duration::from_secs(1);

/// Extends the lease every third of its length; returns only when the
/// lease is lost. A beat that meets a storage fault is tried once more at
/// once: a pooled connection that died (a restarted server, a killed
/// session) fails one call and is discarded, so the retry gets a fresh one
/// instead of spending a third of the lease. A fault that persists is
/// logged and the next beat tried: if the lease does expire, the fencing
/// token keeps the late outcome from being written.
async fn heartbeat(shared: &Shared, held: &Mutex<Job<Executing>>) {
    let lease = shared.config.lease;
    let mut beats = tokio::time::interval(lease / 3);
    beats.tick().await;
    loop {
        beats.tick().await;
        let current = held.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut beat = shared.store.heartbeat(&current, lease).await;
        if let Err(error) = &beat
            && error.is_retryable()
        {
            debug!(%error, "heartbeat failed; trying again at once");
            beat = shared.store.heartbeat(&current, lease).await;
        }
        match beat {
            Ok(extended) => {
                let mut slot = held.lock().unwrap_or_else(PoisonError::into_inner);
                // An execution id recorded while the beat was in flight is
                // kept: the beat's answer may predate it.
                *slot = match slot.data().execution_id.clone() {
                    Some(id) if extended.data().execution_id.is_none() => {
                        extended.record_execution_id(id)
                    }
                    _ => extended,
                };
            }
            Err(Error::LeaseLost { .. }) => return,
            Err(error) => warn!(%error, "heartbeat failed; the lease may run out"),
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

/// Writes a job's outcome, or hands a result to the completer with the
/// job's slot. Returns the slot when the outcome was settled here.
async fn settle(
    shared: &Shared,
    job: Job<Executing>,
    end: RunEnd,
    slot: OwnedSemaphorePermit,
    completions: &CompletionSender,
) -> Option<OwnedSemaphorePermit> {
    match end {
        RunEnd::Finished(Ok(result)) => {
            let completion = Completion { job, result, slot, span: tracing::Span::current() };
            // The completer stops only after every job task has ended.
            return match completions.send(completion) {
                Ok(()) => None,
                Err(unsent) => {
                    error!(
                        "the completer has stopped; the lease will expire and the job will run again"
                    );
                    Some(unsent.0.slot)
                }
            };
        }
        RunEnd::Finished(Err(ExecuteError::Retryable(message))) | RunEnd::Panicked(message) => {
            fail(shared, job, Failure::retryable(message)).await;
        }
        RunEnd::Finished(Err(ExecuteError::Permanent(message))) => {
            fail(shared, job, Failure::permanent(message)).await;
        }
        RunEnd::TimedOut(limit) => {
            fail(shared, job, Failure::retryable(format!("timed out after {limit:?}"))).await;
        }
        RunEnd::LeaseLost => lease_lost(shared),
        RunEnd::Shutdown => release(shared, job).await,
    }
    Some(slot)
}

pub(crate) fn lease_lost(shared: &Shared) {
    Counters::add(&shared.counters.lease_lost, 1);
    warn!("lease lost; the job was taken back and this outcome is dropped");
}

pub(crate) async fn fail(shared: &Shared, job: Job<Executing>, failure: Failure) {
    let message = failure.message.clone();
    let outcome = with_retries(shared, || shared.store.fail(job.clone(), failure.clone())).await;
    match outcome {
        Ok(FailOutcome::Retrying(next)) => {
            Counters::add(&shared.counters.retried, 1);
            let delay = (next.data().run_at - chrono_now()).to_std().unwrap_or_default();
            warn!(error = %message, retry_count = next.data().retry_count, ?delay, "attempt failed; retrying");
        }
        Ok(FailOutcome::Failed(failed)) => {
            Counters::add(&shared.counters.failed, 1);
            error!(error = %message, retry_count = failed.data().retry_count, "job failed for good");
        }
        Err(Error::LeaseLost { .. }) => lease_lost(shared),
        Err(error) => error!(
            %error,
            "cannot record the failure; the lease will expire and the rescuer will count it"
        ),
    }
}

async fn release(shared: &Shared, job: Job<Executing>) {
    match with_retries(shared, || shared.store.release(job.clone())).await {
        Ok(_) => {
            Counters::add(&shared.counters.released, 1);
            info!("given back unrun at shutdown");
        }
        Err(Error::LeaseLost { .. }) => lease_lost(shared),
        Err(error) => warn!(
            %error,
            "cannot give the job back; its lease will expire and the rescuer will take it"
        ),
    }
}

fn chrono_now() -> greenlight_core::chrono::DateTime<greenlight_core::chrono::Utc> {
    greenlight_core::chrono::Utc::now()
}

/// After the grace period, a write still gets this many tries, so that a
/// job is given back even while the database hiccups.
const TRIES_AFTER_HARD_STOP: u32 = 5;

/// Runs a store write, retrying with backoff while the storage is
/// unavailable: until it answers, or a few tries after the grace period.
async fn with_retries<T, F, Fut>(shared: &Shared, mut write: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut backoff = Backoff::default();
    let mut tries_after_stop = 0;
    loop {
        match write().await {
            Err(error) if error.is_retryable() && tries_after_stop < TRIES_AFTER_HARD_STOP => {
                if shared.hard_stop.is_cancelled() {
                    tries_after_stop += 1;
                }
                let delay = backoff.next_delay();
                warn!(%error, ?delay, "storage unavailable; retrying the write");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Runs the rescuer now and then on its interval, and the pruner on its
/// own, until shutdown begins.
async fn maintain(shared: Arc<Shared>) {
    let config = &shared.config;
    let retention = config.retention;
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        rescue(&shared).await;
        let prune_due = last_prune.is_none_or(|at| at.elapsed() >= retention.interval);
        if prune_due && (retention.complete.is_some() || retention.failed.is_some()) {
            prune(&shared, &retention).await;
            last_prune = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            () = shared.stop_claiming.cancelled() => return,
            () = tokio::time::sleep(config.rescue_interval) => {}
        }
    }
}

async fn rescue(shared: &Shared) {
    match shared.store.rescue_expired().await {
        Ok(rescued) if rescued.total() > 0 => {
            Counters::add(&shared.counters.rescued, rescued.total());
            warn!(retried = rescued.retried, failed = rescued.failed, "rescued expired leases");
        }
        Ok(_) => debug!("no expired leases"),
        Err(error) => warn!(%error, "rescuing expired leases failed"),
    }
}

/// The most batches one pruning round deletes, so a backlog of old rows is
/// worked off over several rounds instead of in one long burst.
const MAX_PRUNE_BATCHES: usize = 20;

async fn prune(shared: &Shared, retention: &Retention) {
    let targets = [(Status::Complete, retention.complete), (Status::Failed, retention.failed)];
    for (status, older_than) in targets {
        let Some(older_than) = older_than else { continue };
        let request = PruneRequest { status, older_than, batch_size: retention.batch_size };
        for _ in 0..MAX_PRUNE_BATCHES {
            match shared.store.prune(&request).await {
                Ok(deleted) => {
                    Counters::add(&shared.counters.pruned, deleted);
                    if deleted > 0 {
                        info!(%status, deleted, "pruned old jobs");
                    }
                    if deleted < retention.batch_size as u64 {
                        break;
                    }
                }
                Err(error) => {
                    warn!(%error, %status, "pruning failed");
                    break;
                }
            }
        }
    }
}
