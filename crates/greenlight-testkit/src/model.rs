//! A model-based property test: random sequences of operations applied to
//! a store and to a plain reference model must agree at every step.
//!
//! The model is a `Vec` of flat job rows and a handful of loops, written
//! from the rules in DESIGN.md rather than from the core's transitions, so
//! that the two are independent: only the retry delay, a pure function of
//! the policy, is borrowed from the core. After every operation the test
//! compares the operation's answer, every stored row (read back with
//! `list`) and `stats` with the model.
//!
//! Operations that act on an executing job pick from every handle a claim
//! ever returned, stale ones included, so fencing is exercised as much as
//! the happy path.

use std::cmp::Reverse;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use greenlight_core::{
    AnyJob, ClaimRequest, Enqueued, Error, Executing, ExecutionId, Failure, Jitter, Job, JobId,
    JobRecord, LearnerId, ListFilter, MAX_BATCH, ManualClock, NewJob, RetryPolicy, Stats, Status,
    Store, WorkerId, lease_expired_message,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::StoreFactory;

/// The worker name every claim of the model uses.
const WORKER: &str = "model-worker";

/// A new job of a random sequence.
#[derive(Debug, Clone, Copy)]
struct Spec {
    priority: i32,
    delay_ms: u64,
    max_retries: u32,
    /// Drawn from a handful, so that keys repeat.
    key: Option<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (-1..=1i32, prop_oneof![Just(0u64), 1..3000u64], 0..=2u32, prop::option::of(0..4u8)).prop_map(
        |(priority, delay_ms, max_retries, key)| Spec { priority, delay_ms, max_retries, key },
    )
}

/// One step of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(Spec),
    EnqueueMany(Vec<Spec>),
    Claim { limit: usize, lease_ms: u64 },
    Complete { handle: Index },
    Fail { handle: Index, retryable: bool },
    Release { handle: Index },
    Heartbeat { handle: Index, lease_ms: u64 },
    RecordExecutionId { handle: Index, number: u8 },
    Cancel { job: Index },
    Requeue { job: Index },
    Advance { ms: u64 },
    Rescue,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => spec().prop_map(Op::Enqueue),
        1 => prop::collection::vec(spec(), 0..4).prop_map(Op::EnqueueMany),
        3 => (0..4usize, 1..4000u64).prop_map(|(limit, lease_ms)| Op::Claim { limit, lease_ms }),
        2 => any::<Index>().prop_map(|handle| Op::Complete { handle }),
        2 => (any::<Index>(), any::<bool>())
            .prop_map(|(handle, retryable)| Op::Fail { handle, retryable }),
        1 => any::<Index>().prop_map(|handle| Op::Release { handle }),
        1 => (any::<Index>(), 1..4000u64)
            .prop_map(|(handle, lease_ms)| Op::Heartbeat { handle, lease_ms }),
        1 => (any::<Index>(), 0..3u8)
            .prop_map(|(handle, number)| Op::RecordExecutionId { handle, number }),
        1 => any::<Index>().prop_map(|job| Op::Cancel { job }),
        1 => any::<Index>().prop_map(|job| Op::Requeue { job }),
        2 => (0..5000u64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Rescue),
    ]
}

/// A job as the model sees it: one flat row, like the table's.
#[derive(Debug, Clone)]
struct Row {
    id: JobId,
    priority: i32,
    max_retries: u32,
    queued_at: DateTime<Utc>,
    key: Option<String>,
    status: Status,
    run_at: DateTime<Utc>,
    retry_count: u32,
    attempt: u32,
    worker: Option<String>,
    started_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// The last error of a pending or executing job, or the error of a
    /// failed one; the `error_message` column.
    error: Option<String>,
    result: Option<Value>,
    execution_id: Option<String>,
}

/// The reference model.
struct Model {
    now: DateTime<Utc>,
    policy: RetryPolicy,
    rows: Vec<Row>,
}

impl Model {
    fn row(&mut self, id: JobId) -> &mut Row {
        self.rows.iter_mut().find(|row| row.id == id).expect("the model knows every job")
    }

    /// Whether `handle` names the current attempt of an executing job.
    fn holds(&self, handle: &Job<Executing>) -> bool {
        self.rows.iter().any(|row| {
            row.id == handle.id()
                && row.status == Status::Executing
                && row.attempt == handle.attempt()
        })
    }

    /// A failed attempt: back to pending after the backoff while failures
    /// do not exceed `max_retries` and the error is retryable, else failed.
    fn fail(&mut self, id: JobId, message: &str, retryable: bool) -> bool {
        let (now, policy) = (self.now, self.policy);
        let row = self.row(id);
        row.retry_count += 1;
        row.worker = None;
        row.lease_expires_at = None;
        row.error = Some(message.to_owned());
        if retryable && row.retry_count <= row.max_retries {
            let jitter = Jitter::for_attempt(row.id, row.attempt);
            row.run_at = greenlight_core::add_duration(now, policy.delay(row.retry_count, jitter));
            row.status = Status::Pending;
            row.started_at = None;
            true
        } else {
            row.status = Status::Failed;
            row.finished_at = Some(now);
            false
        }
    }

    fn stats(&self) -> Stats {
        let now = self.now;
        let count = |status| self.rows.iter().filter(|row| row.status == status).count() as u64;
        let pending = || self.rows.iter().filter(|row| row.status == Status::Pending);
        let ready = pending().filter(|row| row.run_at <= now);
        let waiting = pending().filter(|row| row.run_at > now);
        Stats {
            pending: count(Status::Pending),
            ready: ready.clone().count() as u64,
            executing: count(Status::Executing),
            expired_leases: self
                .rows
                .iter()
                .filter(|row| row.lease_expires_at.is_some_and(|lease| lease <= now))
                .count() as u64,
            complete: count(Status::Complete),
            failed: count(Status::Failed),
            oldest_ready_age: ready
                .map(|row| row.run_at)
                .min()
                .map(|run_at| (now - run_at).to_std().expect("ready means run_at <= now")),
            next_scheduled_in: waiting
                .map(|row| row.run_at)
                .min()
                .map(|run_at| (run_at - now).to_std().expect("waiting means run_at > now")),
        }
    }
}

/// Compares a stored job with the model's row; `Err` names the difference.
fn compare(stored: &AnyJob, row: &Row) -> Result<(), String> {
    let record = JobRecord::from(stored.clone());
    let mut differences = Vec::new();
    let mut check = |field: &str, same: bool, store: String, model: String| {
        if !same {
            differences.push(format!("{field}: store {store}, model {model}"));
        }
    };
    macro_rules! field {
        ($name:literal, $store:expr, $model:expr) => {
            check($name, $store == $model, format!("{:?}", $store), format!("{:?}", $model))
        };
    }
    field!("status", record.status, row.status);
    field!("priority", record.priority, row.priority);
    field!("max_retries", record.max_retries, row.max_retries);
    field!("queued_at", record.queued_at, row.queued_at);
    field!("retry_count", record.retry_count, row.retry_count);
    field!("attempt", record.attempt, row.attempt);
    field!("worker_id", record.worker_id.as_ref().map(WorkerId::as_str), row.worker.as_deref());
    field!("started_at", record.started_at, row.started_at);
    field!("lease_expires_at", record.lease_expires_at, row.lease_expires_at);
    field!("completed_at", record.completed_at, row.finished_at);
    field!("error_message", record.error_message, row.error);
    field!("result_payload", record.result_payload.as_deref(), row.result.as_ref());
    field!(
        "execution_id",
        record.execution_id.as_ref().map(ExecutionId::as_str),
        row.execution_id.as_deref()
    );
    field!(
        "idempotency_key",
        record.idempotency_key.as_ref().map(greenlight_core::IdempotencyKey::as_str),
        row.key.as_deref()
    );
    // What `run_at` holds once a job leaves pending is not a rule anyone
    // relies on; while pending it decides everything.
    if row.status == Status::Pending {
        field!("run_at", record.run_at, row.run_at);
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("job {} differs: {}", row.id, differences.join("; ")))
    }
}

fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::NotFound { .. } => "not found",
        Error::LeaseLost { .. } => "lease lost",
        Error::WrongState { .. } => "wrong state",
        Error::DuplicateExecutionId { .. } => "duplicate execution id",
        Error::InvalidInput { .. } => "invalid input",
        _ => "another error",
    }
}

/// Checks that `result` failed with the error kind `expected`.
fn expect_error<T: std::fmt::Debug>(
    operation: &str,
    result: Result<T, Error>,
    expected: &str,
) -> Result<(), String> {
    match result {
        Err(error) if error_kind(&error) == expected => Ok(()),
        other => Err(format!("{operation}: expected {expected}, store answered {other:?}")),
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// One random sequence, applied to a fresh store and a fresh model.
struct Case<S> {
    store: S,
    clock: ManualClock,
    model: Model,
    /// Every executing job a claim, heartbeat or record handed out.
    handles: Vec<Job<Executing>>,
    learner: LearnerId,
}

impl<S: Store> Case<S> {
    #[allow(clippy::too_many_lines, reason = "one match arm per operation reads best in one place")]
    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let now = self.model.now;
        match op {
            Op::Enqueue(spec) => {
                let answer = self.store.enqueue(self.new_job(*spec)?).await;
                self.expect_enqueued(*spec, answer)?;
            }

            Op::EnqueueMany(specs) => {
                let jobs =
                    specs.iter().map(|spec| self.new_job(*spec)).collect::<Result<_, _>>()?;
                let answers = self.store.enqueue_many(jobs).await;
                let answers = answers.map_err(|error| format!("enqueue_many: {error}"))?;
                if answers.len() != specs.len() {
                    return Err(format!("enqueue_many of {} answered {answers:?}", specs.len()));
                }
                // In input order, so a key repeated within the batch finds
                // the row its first use just added.
                for (spec, answer) in specs.iter().zip(answers) {
                    self.expect_enqueued(*spec, Ok(answer))?;
                }
            }

            Op::Claim { limit, lease_ms } => {
                let worker_id = WorkerId::new(WORKER).map_err(|error| error.to_string())?;
                let request = ClaimRequest { worker_id, limit: *limit, lease: ms(*lease_ms) };
                let claimed =
                    self.store.claim(&request).await.map_err(|e| format!("claim: {e}"))?;

                let mut ready: Vec<&Row> = self
                    .model
                    .rows
                    .iter()
                    .filter(|row| row.status == Status::Pending && row.run_at <= now)
                    .collect();
                ready.sort_by_key(|row| (Reverse(row.priority), row.run_at, row.id));
                let expected: Vec<JobId> = ready.iter().take(*limit).map(|row| row.id).collect();
                let got: Vec<JobId> = claimed.iter().map(Job::id).collect();
                if got != expected {
                    return Err(format!("claim: model expected {expected:?}, store gave {got:?}"));
                }
                for id in expected {
                    let row = self.model.row(id);
                    row.status = Status::Executing;
                    row.attempt += 1;
                    row.worker = Some(WORKER.to_owned());
                    row.started_at = Some(now);
                    row.lease_expires_at = Some(greenlight_core::add_duration(now, ms(*lease_ms)));
                }
                self.handles.extend(claimed);
            }

            Op::Complete { handle } => {
                let Some(job) = self.pick(*handle) else { return Ok(()) };
                let result = json!({"attempt": job.attempt()});
                let held = self.model.holds(&job);
                let answer = self.store.complete(job.clone(), result.clone()).await;
                if !held {
                    return expect_error("complete", answer, "lease lost");
                }
                answer.map_err(|error| format!("complete of a held job: {error}"))?;
                let row = self.model.row(job.id());
                row.status = Status::Complete;
                row.finished_at = Some(now);
                row.result = Some(result);
                row.error = None;
                row.worker = None;
                row.lease_expires_at = None;
            }

            Op::Fail { handle, retryable } => {
                let Some(job) = self.pick(*handle) else { return Ok(()) };
                let message = format!("failure of attempt {}", job.attempt());
                let failure = Failure { message: message.clone(), retryable: *retryable };
                let held = self.model.holds(&job);
                let answer = self.store.fail(job.clone(), failure).await;
                if !held {
                    return expect_error("fail", answer, "lease lost");
                }
                let outcome = answer.map_err(|error| format!("fail of a held job: {error}"))?;
                let retrying = self.model.fail(job.id(), &message, *retryable);
                if outcome.is_retrying() != retrying {
                    return Err(format!("fail: model retrying {retrying}, store gave {outcome:?}"));
                }
            }

            Op::Release { handle } => {
                let Some(job) = self.pick(*handle) else { return Ok(()) };
                let held = self.model.holds(&job);
                let answer = self.store.release(job.clone()).await;
                if !held {
                    return expect_error("release", answer, "lease lost");
                }
                answer.map_err(|error| format!("release of a held job: {error}"))?;
                let row = self.model.row(job.id());
                row.status = Status::Pending;
                row.run_at = now;
                row.worker = None;
                row.started_at = None;
                row.lease_expires_at = None;
            }

            Op::Heartbeat { handle, lease_ms } => {
                let Some(job) = self.pick(*handle) else { return Ok(()) };
                let held = self.model.holds(&job);
                let answer = self.store.heartbeat(&job, ms(*lease_ms)).await;
                if !held {
                    return expect_error("heartbeat", answer, "lease lost");
                }
                let extended = answer.map_err(|error| format!("heartbeat: {error}"))?;
                let row = self.model.row(job.id());
                row.lease_expires_at = Some(greenlight_core::add_duration(now, ms(*lease_ms)));
                self.handles.push(extended);
            }

            Op::RecordExecutionId { handle, number } => {
                let Some(job) = self.pick(*handle) else { return Ok(()) };
                let text = format!("gl-{number}");
                let execution_id = ExecutionId::new(text.clone()).map_err(|e| e.to_string())?;
                let held = self.model.holds(&job);
                let taken = self
                    .model
                    .rows
                    .iter()
                    .any(|row| row.id != job.id() && row.execution_id.as_ref() == Some(&text));
                let answer = self.store.record_execution_id(&job, execution_id).await;
                if !held {
                    return expect_error("record_execution_id", answer, "lease lost");
                }
                if taken {
                    return expect_error("record_execution_id", answer, "duplicate execution id");
                }
                let recorded = answer.map_err(|error| format!("record_execution_id: {error}"))?;
                self.model.row(job.id()).execution_id = Some(text);
                self.handles.push(recorded);
            }

            Op::Cancel { job } => {
                if self.model.rows.is_empty() {
                    return Ok(());
                }
                let id = job.get(&self.model.rows).id;
                let answer = self.store.cancel(id, "cancelled by the model").await;
                let row = self.model.row(id);
                if row.status != Status::Pending {
                    return expect_error("cancel", answer, "wrong state");
                }
                answer.map_err(|error| format!("cancel of a pending job: {error}"))?;
                row.status = Status::Failed;
                row.finished_at = Some(now);
                row.error = Some("cancelled by the model".to_owned());
            }

            Op::Requeue { job } => {
                if self.model.rows.is_empty() {
                    return Ok(());
                }
                let id = job.get(&self.model.rows).id;
                let answer = self.store.requeue(id).await;
                let row = self.model.row(id);
                if row.status != Status::Failed {
                    return expect_error("requeue", answer, "wrong state");
                }
                answer.map_err(|error| format!("requeue of a failed job: {error}"))?;
                row.status = Status::Pending;
                row.retry_count = 0;
                row.run_at = now;
                row.started_at = None;
                row.finished_at = None;
            }

            Op::Advance { ms: millis } => {
                self.clock.advance(ms(*millis));
                self.model.now = now + TimeDelta::milliseconds(*millis as i64);
            }

            Op::Rescue => {
                let rescued = self.store.rescue_expired().await.map_err(|e| format!("{e}"))?;
                let expired: Vec<(JobId, String)> = self
                    .model
                    .rows
                    .iter()
                    .filter(|row| row.status == Status::Executing)
                    .filter(|row| row.lease_expires_at.is_some_and(|lease| lease <= now))
                    .map(|row| (row.id, row.worker.clone().unwrap_or_default()))
                    .collect();
                let (mut retried, mut failed) = (0, 0);
                for (id, worker) in expired {
                    let worker = WorkerId::new(worker).map_err(|error| error.to_string())?;
                    if self.model.fail(id, &lease_expired_message(&worker), true) {
                        retried += 1;
                    } else {
                        failed += 1;
                    }
                }
                if (rescued.retried, rescued.failed) != (retried, failed) {
                    return Err(format!(
                        "rescue_expired: model expected {retried} retried and {failed} failed, \
                         store answered {rescued:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn new_job(&self, spec: Spec) -> Result<NewJob, String> {
        let mut builder = NewJob::builder(self.learner, json!({"priority": spec.priority}))
            .priority(spec.priority)
            .max_retries(spec.max_retries)
            .delay(ms(spec.delay_ms));
        if let Some(key) = spec.key {
            builder = builder.idempotency_key(format!("key-{key}"));
        }
        builder.build().map_err(|error| format!("building a job: {error}"))
    }

    /// Checks an enqueue's answer: the job of a known key, or a new pending
    /// job, which joins the model.
    fn expect_enqueued(
        &mut self,
        spec: Spec,
        answer: Result<Enqueued, Error>,
    ) -> Result<(), String> {
        let now = self.model.now;
        let key = spec.key.map(|key| format!("key-{key}"));
        let known = key
            .as_ref()
            .and_then(|key| self.model.rows.iter().find(|row| row.key.as_ref() == Some(key)));
        match (known, answer) {
            (Some(row), Ok(Enqueued::Existing(job))) if job.id() == row.id => {}
            (None, Ok(Enqueued::Created(job))) => self.model.rows.push(Row {
                id: job.id(),
                priority: spec.priority,
                max_retries: spec.max_retries,
                queued_at: now,
                key,
                status: Status::Pending,
                run_at: greenlight_core::add_duration(now, ms(spec.delay_ms)),
                retry_count: 0,
                attempt: 0,
                worker: None,
                started_at: None,
                lease_expires_at: None,
                finished_at: None,
                error: None,
                result: None,
                execution_id: None,
            }),
            (known, answer) => {
                return Err(format!(
                    "enqueue: model expected existing {:?}, store answered {answer:?}",
                    known.map(|row| row.id)
                ));
            }
        }
        Ok(())
    }

    fn pick(&self, handle: Index) -> Option<Job<Executing>> {
        (!self.handles.is_empty()).then(|| handle.get(&self.handles).clone())
    }

    /// Every stored row and the stats agree with the model.
    async fn agree(&self) -> Result<(), String> {
        let filter = ListFilter { limit: MAX_BATCH, ..ListFilter::default() };
        let page = self.store.list(&filter).await.map_err(|error| format!("list: {error}"))?;
        if page.jobs.len() != self.model.rows.len() {
            return Err(format!(
                "the store lists {} jobs, the model has {}",
                page.jobs.len(),
                self.model.rows.len()
            ));
        }
        for row in &self.model.rows {
            let stored = page
                .jobs
                .iter()
                .find(|job| job.id() == row.id)
                .ok_or_else(|| format!("job {} is missing from the store", row.id))?;
            compare(stored, row)?;
        }

        let stats = self.store.stats().await.map_err(|error| format!("stats: {error}"))?;
        let expected = self.model.stats();
        if stats != expected {
            return Err(format!("stats: store {stats:?}, model {expected:?}"));
        }
        Ok(())
    }
}

async fn run_case<F: StoreFactory>(factory: &F, ops: &[Op]) -> Result<(), String> {
    let start: DateTime<Utc> = "2026-03-01T09:30:00.123456Z".parse().expect("a valid literal");
    // Delays that come back within the clock moves of a sequence, with
    // jitter, so retries happen and their timing matters.
    let policy = RetryPolicy::new(ms(500), 2.0, ms(8000), 0.5).expect("a valid policy");
    let clock = ManualClock::new(start);
    let store = factory.make(clock.clone(), policy).await;
    let mut case = Case {
        store,
        clock,
        model: Model { now: start, policy, rows: Vec::new() },
        handles: Vec::new(),
        learner: LearnerId::random(),
    };
    for (step, op) in ops.iter().enumerate() {
        case.apply(op).await.map_err(|error| format!("step {step} ({op:?}): {error}"))?;
        case.agree().await.map_err(|error| format!("after step {step} ({op:?}): {error}"))?;
    }
    Ok(())
}

/// Runs `cases` random sequences of up to 40 operations on fresh stores
/// from `factory` and on the reference model, and panics with the
/// shrunk, smallest failing sequence if they ever disagree.
///
/// Call it from a plain `#[test]` (it starts its own tokio runtime), or use
/// [`model_test!`](crate::model_test). Fewer cases suit a slow store:
/// each case makes a fresh store.
///
/// # Panics
///
/// When the store and the model disagree, or the runtime cannot start.
#[allow(
    clippy::needless_pass_by_value,
    reason = "taken by value like every check of the conformance suite, so one factory \
              expression serves both"
)]
pub fn check_against_model<F: StoreFactory>(factory: F, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the model test");
    // No failure file: the shrunk sequence is printed, and a file next to
    // the caller's sources would be written from inside a library.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec(op(), 1..40);
    let outcome = runner.run(&strategy, |ops| {
        runtime.block_on(run_case(&factory, &ops)).map_err(TestCaseError::fail)
    });
    if let Err(error) = outcome {
        panic!("the store and the model disagree: {error}");
    }
}
