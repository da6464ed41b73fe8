//! The checks of the conformance suite, one pub async fn per rule.
//!
//! Each takes a [`StoreFactory`], makes a fresh store on a [`ManualClock`]
//! stopped at a fixed instant, and panics with a message naming the broken
//! rule. [`conformance_suite!`](crate::conformance_suite) turns each into a
//! test.
//!
//! # Panics
//!
//! Every check panics when the store breaks the rule it checks; that is
//! its whole purpose, so the functions do not repeat it one by one.

#![allow(
    clippy::missing_panics_doc,
    reason = "a check panics exactly when the store breaks its rule, said once above"
)]

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use greenlight_core::{
    AnyJob, AtomId, ClaimRequest, Clock, Enqueued, Error, Executing, ExecutionId, FailOutcome,
    Failure, Jitter, Job, JobId, JobRecord, LearnerId, ListCursor, ListFilter, MAX_BATCH,
    ManualClock, NewJob, Pending, PruneRequest, Rescued, RetryPolicy, Stats, Status, Store,
    WorkerId, add_duration,
};
use serde_json::{Value, json};

use crate::StoreFactory;

/// The lease most checks claim with.
const LEASE: Duration = Duration::from_secs(30);

/// Asserts that a result is the error matching `pattern`.
macro_rules! assert_error {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected {}, got {:?}",
                stringify!($pattern $(if $guard)?),
                other.map(|_| "a success")
            ),
        }
    };
}

/// A store, the clock it reads and the policy it retries with.
struct Harness<S> {
    store: S,
    clock: ManualClock,
    policy: RetryPolicy,
}

/// The instant every check starts at. It has a sub-second part with all
/// six digits set, so a store that loses microseconds shows it.
fn start() -> DateTime<Utc> {
    "2026-03-01T09:30:00.123456Z".parse().expect("a valid RFC 3339 literal")
}

async fn harness<F: StoreFactory>(factory: &F) -> Harness<F::Store> {
    harness_with(factory, RetryPolicy::default()).await
}

async fn harness_with<F: StoreFactory>(factory: &F, policy: RetryPolicy) -> Harness<F::Store> {
    let clock = ManualClock::new(start());
    let store = factory.make(clock.clone(), policy).await;
    Harness { store, clock, policy }
}

fn worker(name: &str) -> WorkerId {
    WorkerId::new(name).expect("a valid worker id")
}

fn request(limit: usize) -> ClaimRequest {
    ClaimRequest { worker_id: worker("worker-a"), limit, lease: LEASE }
}

fn builder() -> greenlight_core::NewJobBuilder {
    NewJob::builder(LearnerId::random(), json!({"language": "python", "code": "print(1)"}))
}

fn new_job() -> NewJob {
    builder().build().expect("a valid job")
}

impl<S: Store> Harness<S> {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn enqueue(&self, job: NewJob) -> Job<Pending> {
        match self.store.enqueue(job).await.expect("enqueue") {
            Enqueued::Created(job) => job,
            Enqueued::Existing(job) => panic!("expected a new job, got existing {job:?}"),
        }
    }

    async fn enqueue_one(&self) -> Job<Pending> {
        self.enqueue(new_job()).await
    }

    async fn claim(&self, limit: usize) -> Vec<Job<Executing>> {
        self.store.claim(&request(limit)).await.expect("claim")
    }

    async fn claim_with(&self, name: &str, lease: Duration) -> Job<Executing> {
        let request = ClaimRequest { worker_id: worker(name), limit: 1, lease };
        let mut claimed = self.store.claim(&request).await.expect("claim");
        assert_eq!(claimed.len(), 1, "expected exactly one job to claim");
        claimed.remove(0)
    }

    async fn claim_one(&self) -> Job<Executing> {
        self.claim_with("worker-a", LEASE).await
    }

    async fn stored(&self, id: JobId) -> AnyJob {
        self.store.get(id).await.expect("get").unwrap_or_else(|| panic!("job {id} is not stored"))
    }

    async fn stats(&self) -> Stats {
        self.store.stats().await.expect("stats")
    }

    /// Moves the clock to `at` if it is in the future.
    fn advance_to(&self, at: DateTime<Utc>) {
        if at > self.now() {
            self.clock.set(at);
        }
    }

    /// A job that failed for good, through a permanent failure.
    async fn failed_job(&self) -> JobId {
        let pending = self.enqueue_one().await;
        let executing = self.claim_one().await;
        assert_eq!(executing.id(), pending.id());
        let failure = Failure::permanent("bad request");
        let outcome = self.store.fail(executing, failure).await.expect("fail");
        assert!(!outcome.is_retrying(), "a permanent failure must not retry");
        pending.id()
    }

    /// A job that completed.
    async fn complete_job(&self) -> JobId {
        let pending = self.enqueue_one().await;
        let executing = self.claim_one().await;
        assert_eq!(executing.id(), pending.id());
        self.store.complete(executing, json!({"stdout": "1\n"})).await.expect("complete");
        pending.id()
    }
}

/// A job the store never saw, shaped like `model` but with another id.
fn forged(model: &Job<Executing>) -> Job<Executing> {
    let mut record = JobRecord::from(model.clone().into_any());
    record.id = JobId::random();
    AnyJob::try_from(record).expect("a valid record").try_into().expect("still executing")
}

/// The age `now - earlier`, which must not be negative.
fn age(now: DateTime<Utc>, earlier: DateTime<Utc>) -> Duration {
    (now - earlier).to_std().expect("an age is never negative")
}

/// Enqueue then get returns the same job, equal to the core's own
/// `into_pending` at the clock's time.
pub async fn enqueue_then_get<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let new = new_job();

    let created = h.enqueue(new.clone()).await;

    assert_eq!(created, new.into_pending(created.id(), h.now()));
    assert_eq!(h.stored(created.id()).await, created.into_any());
}

/// Every field of a new job survives the store, times truncated to
/// microseconds.
pub async fn enqueue_keeps_every_field<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let nanos = start() + chrono::TimeDelta::nanoseconds(1_234_567_891);
    let new = builder()
        .atom(AtomId::random())
        .priority(-7)
        .max_retries(9)
        .run_at(nanos)
        .execution_id("gl-known-up-front")
        .idempotency_key("submission-17")
        .build()
        .expect("a valid job");
    let delayed = builder().delay(Duration::from_nanos(90_000_000_777)).build().expect("valid");

    let created = h.enqueue(new.clone()).await;
    let later = h.enqueue(delayed.clone()).await;

    assert_eq!(created, new.into_pending(created.id(), h.now()));
    assert_eq!(created.data().run_at, greenlight_core::truncate_time(nanos));
    assert_eq!(h.stored(created.id()).await, created.clone().into_any());
    assert_eq!(later, delayed.into_pending(later.id(), h.now()));
    assert_eq!(h.stored(later.id()).await, later.into_any());
    let execution_id = ExecutionId::new("gl-known-up-front").expect("valid");
    let found = h.store.get_by_execution_id(&execution_id).await.expect("get_by_execution_id");
    assert_eq!(found, Some(created.into_any()));
}

/// `enqueue_many` of a thousand jobs returns them all, in input order.
pub async fn enqueue_many_keeps_order<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let learner = LearnerId::random();
    let jobs: Vec<NewJob> = (0..1000)
        .map(|n| NewJob::builder(learner, json!({"n": n})).build().expect("valid"))
        .collect();

    let enqueued = h.store.enqueue_many(jobs.clone()).await.expect("enqueue_many");

    assert_eq!(enqueued.len(), jobs.len());
    let mut ids = HashSet::new();
    for (new, answer) in jobs.into_iter().zip(enqueued) {
        let Enqueued::Created(job) = answer else { panic!("expected a new job, got {answer:?}") };
        assert!(ids.insert(job.id()), "job id {} handed out twice", job.id());
        assert_eq!(job, new.into_pending(job.id(), h.now()));
    }
    let stats = h.stats().await;
    assert_eq!((stats.total(), stats.pending), (1000, 1000));
    for id in ids.iter().take(10) {
        assert_eq!(h.stored(*id).await.status(), Status::Pending);
    }
}

/// `enqueue_many` of no jobs does nothing.
pub async fn enqueue_many_of_nothing<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;

    let enqueued = h.store.enqueue_many(Vec::new()).await.expect("enqueue_many");

    assert!(enqueued.is_empty());
    assert_eq!(h.stats().await, Stats::default());
}

/// A known idempotency key returns the first job, in whatever state it is
/// now, and adds nothing.
pub async fn idempotency_key_returns_existing_job<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let first = h.enqueue(builder().idempotency_key("click-1").build().expect("valid")).await;

    let again = NewJob::builder(LearnerId::random(), json!({"other": true}))
        .idempotency_key("click-1")
        .build()
        .expect("valid");
    let answer = h.store.enqueue(again.clone()).await.expect("enqueue");
    assert_eq!(answer, Enqueued::Existing(first.clone().into_any()));
    assert_eq!(h.stats().await.total(), 1);

    // Once the job moved on, the answer shows where it is now.
    h.claim_one().await;
    let answer = h.store.enqueue(again.clone()).await.expect("enqueue");
    assert_eq!(answer, Enqueued::Existing(h.stored(first.id()).await));
    assert_eq!(answer.into_any().status(), Status::Executing);

    let fresh = builder().idempotency_key("click-2").build().expect("valid");
    let answers = h.store.enqueue_many(vec![again, fresh]).await.expect("enqueue_many");
    assert_eq!(answers[0], Enqueued::Existing(h.stored(first.id()).await));
    assert!(answers[1].is_created());
    assert_eq!(h.stats().await.total(), 2);
}

/// A key repeated within one batch enqueues once; the repeat answers with
/// the job the batch created.
pub async fn idempotency_key_within_one_batch<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let a = builder().idempotency_key("k-1").build().expect("valid");
    let b = builder().idempotency_key("k-2").build().expect("valid");
    let c = builder().idempotency_key("k-1").build().expect("valid");

    let answers = h.store.enqueue_many(vec![a.clone(), b, c]).await.expect("enqueue_many");

    assert_eq!(answers.len(), 3);
    let Enqueued::Created(first) = &answers[0] else { panic!("expected a new job") };
    assert_eq!(first, &a.into_pending(first.id(), h.now()));
    assert!(answers[1].is_created());
    assert_eq!(answers[2], Enqueued::Existing(first.clone().into_any()));
    assert_eq!(h.stats().await.total(), 2);
}

/// A duplicate execution id is refused and writes nothing; in a batch, the
/// whole batch writes nothing.
pub async fn duplicate_execution_id_writes_nothing<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue(builder().execution_id("gl-1").build().expect("valid")).await;
    let taken = builder().execution_id("gl-1").build().expect("valid");

    assert_error!(h.store.enqueue(taken.clone()).await, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-1");
    assert_eq!(h.stats().await.total(), 1);

    let batch = vec![new_job(), taken];
    assert_error!(h.store.enqueue_many(batch).await, Error::DuplicateExecutionId { .. });
    assert_eq!(h.stats().await.total(), 1, "a refused batch must write nothing");

    let twice = builder().execution_id("gl-2").build().expect("valid");
    let batch = vec![twice.clone(), new_job(), twice];
    assert_error!(h.store.enqueue_many(batch).await, Error::DuplicateExecutionId { execution_id } if execution_id == "gl-2");
    assert_eq!(h.stats().await.total(), 1, "a refused batch must write nothing");
    let gl2 = ExecutionId::new("gl-2").expect("valid");
    assert_eq!(h.store.get_by_execution_id(&gl2).await.expect("lookup"), None);
}

/// A delayed job is not claimed until the clock reaches its `run_at`.
pub async fn claim_respects_run_at<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let delay = Duration::from_secs(60);
    let delayed = h.enqueue(builder().delay(delay).build().expect("valid")).await;
    let at = add_duration(h.now(), Duration::from_secs(3600));
    let scheduled = h.enqueue(builder().run_at(at).build().expect("valid")).await;

    assert!(h.claim(10).await.is_empty(), "nothing is ready yet");
    h.clock.set(add_duration(h.now(), delay) - chrono::TimeDelta::microseconds(1));
    assert!(h.claim(10).await.is_empty(), "one microsecond early");
    assert_eq!(h.stats().await.ready, 0);

    h.clock.advance(Duration::from_micros(1));
    let claimed = h.claim(10).await;
    assert_eq!(claimed.iter().map(Job::id).collect::<Vec<_>>(), vec![delayed.id()]);

    h.advance_to(at);
    let claimed = h.claim(10).await;
    assert_eq!(claimed.iter().map(Job::id).collect::<Vec<_>>(), vec![scheduled.id()]);
}

/// Claim order: highest priority, then earliest `run_at`, then id.
pub async fn claim_orders_by_priority_then_run_at_then_id<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let mut created = Vec::new();
    for (priority, ago) in [(0, 10), (5, 1), (0, 30), (5, 20), (-3, 60), (5, 1), (0, 10)] {
        let run_at = h.now() - chrono::TimeDelta::seconds(ago);
        let job = builder().priority(priority).run_at(run_at).build().expect("valid");
        created.push(h.enqueue(job).await);
    }
    // Two jobs enqueued at once with equal priority and run_at: only the
    // id tells them apart.
    let twins = h.store.enqueue_many(vec![new_job(), new_job()]).await.expect("enqueue_many");
    created.extend(twins.into_iter().map(|answer| match answer {
        Enqueued::Created(job) => job,
        Enqueued::Existing(job) => panic!("unexpected existing job {job:?}"),
    }));
    // A high-priority job that is not ready must not jump the queue.
    h.enqueue(builder().priority(100).delay(Duration::from_secs(5)).build().expect("valid")).await;

    let mut expected: Vec<_> = created.iter().map(Job::data).collect();
    expected.sort_by_key(|data| (Reverse(data.priority), data.run_at, data.id));
    let expected: Vec<JobId> = expected.into_iter().map(|data| data.id).collect();

    let mut claimed = h.claim(3).await;
    claimed.extend(h.claim(100).await);
    assert_eq!(claimed.iter().map(Job::id).collect::<Vec<_>>(), expected);
}

/// Claim hands out at most `limit` jobs; a limit of zero hands out none.
pub async fn claim_respects_limit<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    for _ in 0..5 {
        h.enqueue_one().await;
    }

    assert!(h.claim(0).await.is_empty());
    assert_eq!(h.stats().await.ready, 5, "a claim of zero must claim nothing");
    assert_eq!(h.claim(2).await.len(), 2);
    assert_eq!(h.claim(10).await.len(), 3);
    assert!(h.claim(10).await.is_empty());
    assert_eq!(h.stats().await.executing, 5);
}

/// A limit above [`MAX_BATCH`] or a zero lease is invalid input.
pub async fn claim_rejects_invalid_requests<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;

    let too_many = ClaimRequest { limit: MAX_BATCH + 1, ..request(1) };
    assert_error!(h.store.claim(&too_many).await, Error::InvalidInput { field: "limit", .. });
    let no_lease = ClaimRequest { lease: Duration::ZERO, ..request(1) };
    assert_error!(h.store.claim(&no_lease).await, Error::InvalidInput { field: "lease", .. });
    assert_eq!(h.stats().await.executing, 0, "a refused claim must claim nothing");
}

/// A claimed job is the core's `claim` of the pending job: attempt + 1,
/// the worker, the lease from now.
pub async fn claim_sets_lease_and_attempt<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let pending = h.enqueue_one().await;
    h.clock.advance(Duration::from_millis(1500));
    let lease = Duration::from_millis(12_345);

    let claimed = h.claim_with("worker-b", lease).await;

    let expected = pending.claim(worker("worker-b"), lease, h.now());
    assert_eq!(claimed, expected);
    assert_eq!(h.stored(claimed.id()).await, expected.into_any());

    let released = h.store.release(claimed).await.expect("release");
    let again = h.claim_with("worker-c", lease).await;
    assert_eq!(again, released.claim(worker("worker-c"), lease, h.now()));
}

/// Sixteen tasks claiming in small batches drain 2,000 jobs, and every job
/// is handed out exactly once.
pub async fn no_double_claim<F: StoreFactory>(factory: F) {
    const JOBS: usize = 2000;
    const TASKS: usize = 16;
    let h = harness(&factory).await;
    for _ in 0..2 {
        let batch = (0..JOBS / 2).map(|_| new_job()).collect();
        h.store.enqueue_many(batch).await.expect("enqueue_many");
    }
    let store = Arc::new(h.store);

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let request = ClaimRequest {
                worker_id: worker(&format!("worker-{task}")),
                limit: 7,
                lease: LEASE,
            };
            let mut seen = Vec::new();
            loop {
                let claimed = store.claim(&request).await.expect("claim");
                if claimed.is_empty() {
                    return seen;
                }
                for job in claimed {
                    seen.push(job.id());
                    store.complete(job, json!({"ok": true})).await.expect("complete");
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a claiming task panicked"));
    }

    let unique: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "some job was claimed twice");
    assert_eq!(all.len(), JOBS, "every job is claimed");
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.complete, stats.total()), (JOBS as u64, JOBS as u64));
}

/// Complete stores the result; the row is the core's `complete`.
pub async fn complete_stores_result<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    h.clock.advance(Duration::from_secs(3));
    let result = json!({"stdout": "1\n", "exit_code": 0, "nested": [1, {"a": null}]});

    let complete = h.store.complete(executing.clone(), result.clone()).await.expect("complete");

    let expected = executing.complete(result, h.now());
    assert_eq!(complete, expected);
    assert_eq!(h.stored(complete.id()).await, expected.into_any());
    assert_eq!(h.stats().await.complete, 1);
}

/// A result PostgreSQL would refuse (a NUL character) or beyond the limits
/// is invalid input and changes nothing.
pub async fn complete_rejects_invalid_result<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    let before = h.stored(executing.id()).await;

    let nul = json!({"stdout": "a\u{0000}b"});
    assert_error!(
        h.store.complete(executing.clone(), nul).await,
        Error::InvalidInput { field: "result_payload", .. }
    );
    let nul_key = json!({"a\u{0000}": 1});
    assert_error!(
        h.store.complete(executing.clone(), nul_key).await,
        Error::InvalidInput { field: "result_payload", .. }
    );
    let huge = Value::String("x".repeat(greenlight_core::PayloadLimits::default().max_bytes + 1));
    assert_error!(
        h.store.complete(executing.clone(), huge).await,
        Error::InvalidInput { field: "result_payload", .. }
    );
    assert_eq!(h.stored(executing.id()).await, before, "a refused result must change nothing");

    let done = h.store.complete(executing, json!("fine")).await.expect("complete");
    assert_eq!(done.state().result, json!("fine"));
}

/// `complete_many` answers per job: held jobs complete, a job whose lease
/// was lost reports [`Error::LeaseLost`], a bad result reports
/// [`Error::InvalidInput`], and none of them affects the others.
pub async fn complete_many_reports_each_job<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let lost = h.claim_with("worker-a", Duration::from_secs(10)).await;
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.store.rescue_expired().await.expect("rescue").retried, 1);
    h.advance_to(h.stored(lost.id()).await.data().run_at);
    let retaken = h.claim_with("worker-b", LEASE).await;
    assert_eq!(retaken.id(), lost.id());
    h.enqueue_one().await;
    h.enqueue_one().await;
    h.enqueue_one().await;
    let held = h.claim(3).await;
    h.clock.advance(Duration::from_secs(1));

    let batch = vec![
        (held[0].clone(), json!({"n": 0})),
        (lost.clone(), json!({"n": 1})),
        (held[1].clone(), json!({"bad": "\u{0000}"})),
        (held[2].clone(), json!({"n": 3})),
    ];
    let answers = h.store.complete_many(batch).await.expect("complete_many");

    assert_eq!(answers.len(), 4);
    let expected = held[0].clone().complete(json!({"n": 0}), h.now());
    assert_eq!(answers[0].as_ref().expect("held job completes"), &expected);
    assert_eq!(h.stored(held[0].id()).await, expected.into_any());
    assert!(
        matches!(&answers[1], Err(Error::LeaseLost { id, attempt: 1 }) if *id == lost.id()),
        "expected a lost lease, got {:?}",
        answers[1]
    );
    assert_eq!(h.stored(lost.id()).await, retaken.into_any(), "the new holder keeps the job");
    assert!(
        matches!(&answers[2], Err(Error::InvalidInput { field: "result_payload", .. })),
        "expected invalid input, got {:?}",
        answers[2]
    );
    assert_eq!(h.stored(held[1].id()).await, held[1].clone().into_any());
    let expected = held[2].clone().complete(json!({"n": 3}), h.now());
    assert_eq!(answers[3].as_ref().expect("held job completes"), &expected);
    assert_eq!(h.stored(held[2].id()).await, expected.into_any());

    assert!(h.store.complete_many(Vec::new()).await.expect("complete_many").is_empty());
}

/// A retryable failure with retries left: pending again at
/// `now + policy.delay(n, jitter)`, retry count `n`, the error kept.
pub async fn fail_with_retries_left_goes_back_to_pending<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    h.clock.advance(Duration::from_secs(1));
    let now = h.now();

    let outcome = h
        .store
        .fail(executing.clone(), Failure::retryable("greenlight timed out"))
        .await
        .expect("fail");

    let expected = executing.clone().fail("greenlight timed out", &h.policy, now);
    assert_eq!(outcome, expected);
    let FailOutcome::Retrying(pending) = outcome else { panic!("retries were left") };
    let jitter = Jitter::for_attempt(executing.id(), executing.attempt());
    let run_at = add_duration(now, h.policy.delay(1, jitter));
    assert_eq!(pending.data().run_at, run_at);
    assert_eq!(pending.data().retry_count, 1);
    assert_eq!(pending.data().attempt, executing.attempt());
    assert_eq!(pending.state().last_error.as_deref(), Some("greenlight timed out"));
    assert_eq!(h.stored(pending.id()).await, pending.clone().into_any());

    // The backoff holds the job back until run_at, not a moment longer.
    h.clock.set(run_at - chrono::TimeDelta::microseconds(1));
    assert!(h.claim(1).await.is_empty(), "claimed before its backoff ended");
    h.clock.set(run_at);
    let again = h.claim_one().await;
    assert_eq!(again.attempt(), 2);
    assert_eq!(again.state().last_error.as_deref(), Some("greenlight timed out"));
}

/// With `max_retries = 3`, failure number `n` retries while `n <= 3`: four
/// attempts in all, then the job fails for good.
pub async fn fail_until_retries_run_out<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let max_retries = greenlight_core::DEFAULT_MAX_RETRIES;
    let id = h.enqueue(builder().max_retries(max_retries).build().expect("valid")).await.id();

    let mut attempts = 0;
    loop {
        h.advance_to(h.stored(id).await.data().run_at);
        let executing = h.claim_one().await;
        attempts += 1;
        assert_eq!(executing.attempt(), attempts);
        let message = format!("failure {attempts}");
        let outcome =
            h.store.fail(executing.clone(), Failure::retryable(&message)).await.expect("fail");
        assert_eq!(outcome, executing.fail(&message, &h.policy, h.now()));
        assert_eq!(h.stored(id).await, outcome.clone().into_any());
        if attempts <= max_retries {
            assert!(outcome.is_retrying(), "failure {attempts} of {max_retries} must retry");
        } else {
            let FailOutcome::Failed(failed) = outcome else { panic!("retries ran out") };
            assert_eq!(failed.data().retry_count, max_retries + 1);
            assert_eq!(failed.state().error, message);
            break;
        }
    }
    assert_eq!(attempts, max_retries + 1);
    h.clock.advance(Duration::from_secs(24 * 3600));
    assert!(h.claim(1).await.is_empty(), "a failed job is never claimed");
}

/// With `max_retries = 0` the first failure is final.
pub async fn fail_with_no_retries_fails_at_once<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue(builder().max_retries(0).build().expect("valid")).await;
    let executing = h.claim_one().await;

    let outcome = h.store.fail(executing.clone(), Failure::retryable("boom")).await.expect("fail");

    assert!(!outcome.is_retrying());
    assert_eq!(outcome, executing.fail("boom", &h.policy, h.now()));
    assert_eq!(h.stored(outcome.id()).await, outcome.into_any());
}

/// A permanent failure fails at once with retries left, counting one
/// failure; the message is stored as the core sanitises it.
pub async fn fail_permanently_fails_at_once<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    h.clock.advance(Duration::from_secs(2));
    let message = "malformed\u{0000} request";

    let outcome = h.store.fail(executing.clone(), Failure::permanent(message)).await.expect("fail");

    let expected = executing.fail_permanently(message, h.now());
    assert_eq!(outcome, FailOutcome::Failed(expected.clone()));
    assert_eq!(expected.data().retry_count, 1);
    assert_eq!(expected.state().error, "malformed request");
    assert_eq!(h.stored(expected.id()).await, expected.into_any());

    // An empty message still leaves the failed job saying why.
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    let outcome = h.store.fail(executing.clone(), Failure::permanent("")).await.expect("fail");
    let expected = executing.fail_permanently("", h.now());
    assert_eq!(outcome, FailOutcome::Failed(expected.clone()));
    assert_eq!(h.stored(expected.id()).await, expected.into_any());
}

/// Cancel fails a pending job (delayed or ready) with the reason; any
/// other status is the wrong state, and an unknown id is not found.
pub async fn cancel_only_pending<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let ready = h.enqueue_one().await;
    let delayed = h.enqueue(builder().delay(Duration::from_secs(60)).build().expect("ok")).await;
    h.clock.advance(Duration::from_secs(1));

    let cancelled = h.store.cancel(ready.id(), "learner withdrew").await.expect("cancel");
    assert_eq!(cancelled, ready.clone().cancel("learner withdrew", h.now()));
    assert_eq!(h.stored(ready.id()).await, cancelled.into_any());
    let cancelled = h.store.cancel(delayed.id(), "").await.expect("cancel");
    assert_eq!(cancelled, delayed.cancel("", h.now()));
    h.clock.advance(Duration::from_secs(120));
    assert!(h.claim(10).await.is_empty(), "a cancelled job is never claimed");

    let executing = {
        h.enqueue_one().await;
        h.claim_one().await.id()
    };
    let complete = h.complete_job().await;
    for (id, actual) in
        [(executing, Status::Executing), (complete, Status::Complete), (ready.id(), Status::Failed)]
    {
        let before = h.stored(id).await;
        assert_error!(
            h.store.cancel(id, "too late").await,
            Error::WrongState { id: at, expected: Status::Pending, actual: got }
                if at == id && got == actual
        );
        assert_eq!(h.stored(id).await, before, "a refused cancel must change nothing");
    }
    let unknown = JobId::random();
    assert_error!(h.store.cancel(unknown, "x").await, Error::NotFound { id } if id == unknown);
}

/// Requeue gives a failed job a fresh retry budget, pending at once, the
/// last error kept; any other status is the wrong state.
pub async fn requeue_only_failed<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let id = h.failed_job().await;
    h.clock.advance(Duration::from_secs(3600));
    let failed: Job<greenlight_core::Failed> = h.stored(id).await.try_into().expect("failed");

    let requeued = h.store.requeue(id).await.expect("requeue");

    let expected = failed.requeue(h.now());
    assert_eq!(requeued, expected);
    assert_eq!(requeued.data().retry_count, 0);
    assert_eq!(requeued.data().run_at, h.now());
    assert_eq!(requeued.state().last_error.as_deref(), Some("bad request"));
    assert_eq!(h.stored(id).await, expected.into_any());
    let again = h.claim_one().await;
    assert_eq!((again.id(), again.attempt()), (id, 2));

    let complete = h.complete_job().await;
    let pending = h.enqueue_one().await.id();
    for (id, actual) in
        [(pending, Status::Pending), (again.id(), Status::Executing), (complete, Status::Complete)]
    {
        let before = h.stored(id).await;
        assert_error!(
            h.store.requeue(id).await,
            Error::WrongState { id: at, expected: Status::Failed, actual: got }
                if at == id && got == actual
        );
        assert_eq!(h.stored(id).await, before, "a refused requeue must change nothing");
    }
    let unknown = JobId::random();
    assert_error!(h.store.requeue(unknown).await, Error::NotFound { id } if id == unknown);
}

/// Release puts a held job back to pending at once, spending no retry and
/// keeping the attempt.
pub async fn release_spends_no_retry<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let id = h.enqueue_one().await.id();
    let first = h.claim_one().await;
    let _ = h.store.fail(first, Failure::retryable("flaky")).await.expect("fail");
    h.advance_to(h.stored(id).await.data().run_at);
    let executing = h.claim_one().await;
    h.clock.advance(Duration::from_secs(4));

    let released = h.store.release(executing.clone()).await.expect("release");

    let expected = executing.release(h.now());
    assert_eq!(released, expected);
    assert_eq!(released.data().retry_count, 1);
    assert_eq!(released.data().attempt, 2);
    assert_eq!(released.data().run_at, h.now());
    assert_eq!(h.stored(id).await, expected.into_any());
    let again = h.claim_one().await;
    assert_eq!(again.attempt(), 3, "the fencing token never goes back");
}

/// Heartbeat moves the lease to `now + lease`, so the rescuer leaves the
/// job alone past its first expiry; a zero lease is invalid input.
pub async fn heartbeat_extends_lease<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    h.clock.advance(Duration::from_secs(20));
    let longer = Duration::from_secs(60);

    let extended = h.store.heartbeat(&executing, longer).await.expect("heartbeat");

    let expected = executing.clone().heartbeat(longer, h.now());
    assert_eq!(extended, expected);
    assert_eq!(extended.state().lease_expires_at, add_duration(h.now(), longer));
    assert_eq!(h.stored(executing.id()).await, expected.clone().into_any());

    h.clock.advance(Duration::from_secs(30));
    assert_eq!(h.store.rescue_expired().await.expect("rescue"), Rescued::default());
    assert_eq!(h.stats().await.expired_leases, 0);

    // The handle from the claim still names the current attempt.
    let again = h.store.heartbeat(&executing, longer).await.expect("heartbeat");
    assert_eq!(again, expected.heartbeat(longer, h.now()));

    let before = h.stored(executing.id()).await;
    assert_error!(
        h.store.heartbeat(&executing, Duration::ZERO).await,
        Error::InvalidInput { field: "lease", .. }
    );
    assert_eq!(h.stored(executing.id()).await, before);
}

/// The execution id is stored at once and found by
/// `get_by_execution_id`; another job's id is refused; a new id replaces
/// the old one.
pub async fn record_execution_id_is_stored_at_once<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    h.enqueue_one().await;
    let first = h.claim_one().await;
    let second = h.claim_one().await;
    let gl1 = ExecutionId::new("gl-1").expect("valid");
    let gl2 = ExecutionId::new("gl-2").expect("valid");

    let recorded = h.store.record_execution_id(&first, gl1.clone()).await.expect("record");

    let expected = first.clone().record_execution_id(gl1.clone());
    assert_eq!(recorded, expected);
    assert_eq!(h.stored(first.id()).await, expected.clone().into_any());
    let found = h.store.get_by_execution_id(&gl1).await.expect("lookup");
    assert_eq!(found, Some(expected.clone().into_any()));

    let before = h.stored(second.id()).await;
    assert_error!(
        h.store.record_execution_id(&second, gl1.clone()).await,
        Error::DuplicateExecutionId { execution_id } if execution_id == "gl-1"
    );
    assert_eq!(h.stored(second.id()).await, before, "a refused id must change nothing");

    // Recording the same id again is harmless; a new one replaces it.
    let same = h.store.record_execution_id(&first, gl1.clone()).await.expect("record");
    assert_eq!(same, expected);
    let replaced = h.store.record_execution_id(&first, gl2.clone()).await.expect("record");
    assert_eq!(replaced, expected.record_execution_id(gl2.clone()));
    assert_eq!(h.store.get_by_execution_id(&gl1).await.expect("lookup"), None);
    assert_eq!(
        h.store.get_by_execution_id(&gl2).await.expect("lookup").map(|j| j.id()),
        Some(first.id())
    );

    // The id outlives the attempt.
    let done = h.store.complete(replaced, json!({})).await.expect("complete");
    let found = h.store.get_by_execution_id(&gl2).await.expect("lookup");
    assert_eq!(found, Some(done.into_any()));
}

/// After the lease expired, the job was rescued and another worker claimed
/// it, every write of the first holder is a lost lease and changes nothing.
pub async fn fencing_after_rescue_and_reclaim<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let stale = h.claim_with("worker-a", Duration::from_secs(10)).await;
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.store.rescue_expired().await.expect("rescue"), Rescued { retried: 1, failed: 0 });
    h.advance_to(h.stored(stale.id()).await.data().run_at);
    let current = h.claim_with("worker-b", LEASE).await;
    assert_eq!((current.id(), current.attempt()), (stale.id(), 2));
    let before = h.stored(stale.id()).await;
    let id = stale.id();

    assert_error!(h.store.complete(stale.clone(), json!({})).await, Error::LeaseLost { id: at, attempt: 1 } if at == id);
    assert_error!(
        h.store.fail(stale.clone(), Failure::retryable("late")).await,
        Error::LeaseLost { id: at, attempt: 1 } if at == id
    );
    assert_error!(
        h.store.fail(stale.clone(), Failure::permanent("late")).await,
        Error::LeaseLost { id: at, attempt: 1 } if at == id
    );
    assert_error!(h.store.heartbeat(&stale, LEASE).await, Error::LeaseLost { id: at, attempt: 1 } if at == id);
    assert_error!(h.store.release(stale.clone()).await, Error::LeaseLost { id: at, attempt: 1 } if at == id);
    let execution_id = ExecutionId::new("gl-stale").expect("valid");
    assert_error!(
        h.store.record_execution_id(&stale, execution_id.clone()).await,
        Error::LeaseLost { id: at, attempt: 1 } if at == id
    );
    let answers =
        h.store.complete_many(vec![(stale.clone(), json!({}))]).await.expect("complete_many");
    assert!(matches!(answers.as_slice(), [Err(Error::LeaseLost { attempt: 1, .. })]));

    assert_eq!(h.stored(id).await, before, "a fenced-off write must change nothing");
    assert_eq!(h.store.get_by_execution_id(&execution_id).await.expect("lookup"), None);
    let done = h.store.complete(current, json!({"by": "b"})).await.expect("complete");
    assert_eq!(done.attempt(), 2);
}

/// A write succeeds while the held attempt is current, even past the
/// lease's expiry, until a rescue moves the job on.
pub async fn write_past_expiry_succeeds_until_rescued<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    h.enqueue_one().await;
    let first = h.claim_with("worker-a", Duration::from_secs(10)).await;
    let second = h.claim_with("worker-a", Duration::from_secs(10)).await;
    h.clock.advance(Duration::from_secs(15));
    assert_eq!(h.stats().await.expired_leases, 2);

    let extended = h.store.heartbeat(&first, LEASE).await.expect("heartbeat past expiry");
    assert_eq!(extended, first.clone().heartbeat(LEASE, h.now()));
    let done = h.store.complete(second.clone(), json!(1)).await.expect("complete past expiry");
    assert_eq!(done, second.complete(json!(1), h.now()));

    assert_eq!(h.store.rescue_expired().await.expect("rescue"), Rescued::default());
    assert_eq!(h.stored(first.id()).await, extended.into_any());
}

/// The rescuer takes back expired leases (expiry at or before now): to
/// pending with the policy's delay while retries are left, else failed;
/// live leases stay.
pub async fn rescue_expired_moves_only_expired_leases<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let short = Duration::from_secs(10);
    h.enqueue(builder().max_retries(3).build().expect("valid")).await;
    let retried = h.claim_with("worker-a", short).await;
    h.enqueue(builder().max_retries(0).build().expect("valid")).await;
    let exhausted = h.claim_with("worker-b", short).await;
    h.enqueue_one().await;
    let boundary = h.claim_with("worker-c", short * 2).await;
    h.enqueue_one().await;
    let live = h.claim_with("worker-d", short * 2 + Duration::from_micros(1)).await;
    h.clock.advance(short * 2);
    assert_eq!(h.stats().await.expired_leases, 3);

    let rescued = h.store.rescue_expired().await.expect("rescue");

    assert_eq!(rescued, Rescued { retried: 2, failed: 1 });
    for job in [retried, exhausted, boundary] {
        let expected = job.clone().expire_lease(&h.policy, h.now()).into_any();
        assert_eq!(h.stored(job.id()).await, expected);
    }
    assert_eq!(h.stored(live.id()).await, live.clone().into_any());
    assert_eq!(h.store.rescue_expired().await.expect("rescue"), Rescued::default());
    let stats = h.stats().await;
    assert_eq!((stats.pending, stats.executing, stats.failed), (2, 1, 1));

    h.clock.advance(Duration::from_micros(1));
    assert_eq!(h.store.rescue_expired().await.expect("rescue"), Rescued { retried: 1, failed: 0 });
}

/// Pages of `list`, by status, by learner or both, newest first, cover
/// every matching job exactly once.
pub async fn list_by_status_and_learner_pages_everything_once<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let learners = [LearnerId::random(), LearnerId::random()];
    let mut ids = Vec::new();
    for round in 0..4 {
        for learner in learners {
            let job = NewJob::builder(learner, json!({"round": round})).build().expect("valid");
            ids.push(h.enqueue(job).await.id());
        }
        // Jobs enqueued in one batch share queued_at: only the id orders
        // them, and a cursor must still not skip or repeat one.
        let batch = (0..3)
            .map(|n| NewJob::builder(learners[n % 2], json!({"n": n})).build().expect("valid"))
            .collect();
        let answers = h.store.enqueue_many(batch).await.expect("enqueue_many");
        ids.extend(answers.iter().map(Enqueued::id));
        h.clock.advance(Duration::from_secs(1));
    }
    let claimed = h.claim(9).await;
    for job in claimed.into_iter().take(4) {
        h.store.complete(job, json!({})).await.expect("complete");
    }
    let mut all = Vec::new();
    for id in ids {
        all.push(h.stored(id).await);
    }
    all.sort_by_key(|job| Reverse((job.data().queued_at, job.id())));

    let mut filters = vec![ListFilter::default()];
    for status in Status::ALL {
        filters.push(ListFilter { status: Some(status), ..ListFilter::default() });
    }
    for learner in learners {
        filters.push(ListFilter { learner_id: Some(learner), ..ListFilter::default() });
        let executing = Some(Status::Executing);
        filters.push(ListFilter {
            learner_id: Some(learner),
            status: executing,
            ..ListFilter::default()
        });
    }
    for filter in filters {
        for limit in [1, 3, 7, 100] {
            let filter = ListFilter { limit, ..filter.clone() };
            let expected: Vec<AnyJob> =
                all.iter().filter(|job| filter.matches(job)).cloned().collect();
            let mut listed = Vec::new();
            let mut page_filter = filter.clone();
            loop {
                let page = h.store.list(&page_filter).await.expect("list");
                assert!(page.jobs.len() <= limit, "a page holds at most the limit");
                if page.jobs.len() < limit {
                    assert_eq!(page.next, None, "a short page is the last");
                }
                if let Some(next) = page.next {
                    let last = page.jobs.last().expect("a page with a cursor has jobs");
                    assert_eq!(next, ListCursor::after(last));
                }
                listed.extend(page.jobs);
                let Some(next) = page.next else { break };
                page_filter.after = Some(next);
                assert!(listed.len() <= expected.len(), "paging does not end: {filter:?}");
            }
            assert_eq!(listed, expected, "pages of {filter:?}");
        }
    }
}

/// A list limit of zero or above [`MAX_BATCH`] is invalid input.
pub async fn list_rejects_invalid_limit<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;

    for limit in [0, MAX_BATCH + 1] {
        let filter = ListFilter { limit, ..ListFilter::default() };
        assert_error!(h.store.list(&filter).await, Error::InvalidInput { field: "limit", .. });
    }
}

/// Every field of `stats`: counts per status, ready jobs, expired leases,
/// the age of the oldest ready job and the wait for the next scheduled one.
pub async fn stats_counts_every_field<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    assert_eq!(h.stats().await, Stats::default());

    h.enqueue_one().await;
    h.claim_with("worker-a", Duration::from_secs(5)).await;
    h.enqueue_one().await;
    h.claim_with("worker-a", Duration::from_secs(3600)).await;
    h.complete_job().await;
    h.failed_job().await;
    let oldest = h.enqueue_one().await;
    h.clock.advance(Duration::from_secs(7));
    h.enqueue_one().await;
    let soonest = h.enqueue(builder().delay(Duration::from_secs(600)).build().expect("ok")).await;
    h.enqueue(builder().delay(Duration::from_secs(3600)).build().expect("valid")).await;
    h.clock.advance(Duration::from_millis(2500));

    let stats = h.stats().await;

    let expected = Stats {
        pending: 4,
        ready: 2,
        executing: 2,
        expired_leases: 1,
        complete: 1,
        failed: 1,
        oldest_ready_age: Some(age(h.now(), oldest.data().run_at)),
        next_scheduled_in: Some(age(soonest.data().run_at, h.now())),
    };
    assert_eq!(stats, expected);
    assert_eq!(stats.total(), 8);

    // Once the soonest waiting job is due, it counts as ready instead.
    h.advance_to(soonest.data().run_at);
    let stats = h.stats().await;
    assert_eq!((stats.ready, stats.pending), (3, 4));
    assert_eq!(stats.oldest_ready_age, Some(age(h.now(), oldest.data().run_at)));
    assert!(stats.next_scheduled_in.is_some_and(|wait| wait > Duration::ZERO));
}

/// `has_work_within` sees executing jobs and pending ones due within the
/// horizon, and nothing else: finished jobs and jobs scheduled later are no
/// work. A horizon too long to add to a date is no error.
pub async fn has_work_within_sees_executing_and_due_jobs<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let has_work = |horizon: Duration| {
        let store = &h.store;
        async move { store.has_work_within(horizon).await.expect("has_work_within") }
    };
    assert!(!has_work(Duration::ZERO).await, "an empty store has no work");
    assert!(!has_work(Duration::MAX).await, "an empty store has no work");

    h.complete_job().await;
    h.failed_job().await;
    assert!(!has_work(Duration::MAX).await, "finished jobs are no work");

    let wait = Duration::from_secs(600);
    let later = h.enqueue(builder().delay(wait).build().expect("valid")).await;
    assert!(!has_work(Duration::ZERO).await, "a job due in ten minutes is not due now");
    assert!(!has_work(Duration::from_secs(599)).await, "nor within 599 s");
    assert!(has_work(wait).await, "a job due in exactly the horizon counts");
    assert!(has_work(Duration::MAX).await, "and within any longer one");

    h.advance_to(later.data().run_at);
    assert!(has_work(Duration::ZERO).await, "a ready job is work now");
    let running = h.claim_one().await;
    assert_eq!(running.id(), later.id());
    assert!(has_work(Duration::ZERO).await, "an executing job is work");
    h.store.complete(running, json!({})).await.expect("complete");
    assert!(!has_work(Duration::MAX).await, "nothing left");
}

/// Prune deletes only jobs of the given terminal status that finished
/// longer ago than `older_than`, at most `batch_size` per call, oldest
/// first; a live status or a bad batch size is invalid input.
pub async fn prune_deletes_only_old_terminal_jobs<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let keyed = h.enqueue(builder().idempotency_key("prune-me").build().expect("ok")).await;
    let keyed_run = h.claim_one().await;
    let execution_id = ExecutionId::new("gl-pruned").expect("valid");
    let keyed_run =
        h.store.record_execution_id(&keyed_run, execution_id.clone()).await.expect("ok");
    h.store.complete(keyed_run, json!({})).await.expect("complete");
    let mut old_complete = vec![keyed.id()];
    for _ in 0..4 {
        old_complete.push(h.complete_job().await);
    }
    let old_failed = h.failed_job().await;
    h.enqueue_one().await;
    let executing = h.claim_one().await.id();
    // Delayed, so that the claims below leave it alone.
    let week = Duration::from_secs(7 * 24 * 3600);
    let pending = h.enqueue(builder().delay(week).build().expect("valid")).await.id();
    let hour = Duration::from_secs(3600);
    h.clock.advance(hour);
    let recent = h.complete_job().await;
    let half_hour = Duration::from_secs(1800);

    for status in [Status::Pending, Status::Executing] {
        let request = PruneRequest { status, older_than: half_hour, batch_size: 10 };
        assert_error!(h.store.prune(&request).await, Error::InvalidInput { field: "status", .. });
    }
    for batch_size in [0, MAX_BATCH + 1] {
        let request = PruneRequest { status: Status::Complete, older_than: half_hour, batch_size };
        assert_error!(
            h.store.prune(&request).await,
            Error::InvalidInput { field: "batch_size", .. }
        );
    }
    assert_eq!(h.stats().await.total(), 9, "a refused prune deletes nothing");

    let request = PruneRequest { status: Status::Complete, older_than: half_hour, batch_size: 2 };
    assert_eq!(h.store.prune(&request).await.expect("prune"), 2);
    assert_eq!(h.store.prune(&request).await.expect("prune"), 2);
    assert_eq!(h.store.prune(&request).await.expect("prune"), 1);
    assert_eq!(h.store.prune(&request).await.expect("prune"), 0);
    for id in &old_complete {
        assert_eq!(h.store.get(*id).await.expect("get"), None);
    }
    for id in [recent, old_failed, pending, executing] {
        h.stored(id).await;
    }

    let request = PruneRequest { status: Status::Failed, older_than: half_hour, batch_size: 10 };
    assert_eq!(h.store.prune(&request).await.expect("prune"), 1);
    assert_eq!(h.store.get(old_failed).await.expect("get"), None);

    // Exactly `older_than` ago is not longer ago than it.
    let exact = PruneRequest { status: Status::Complete, older_than: hour, batch_size: 10 };
    h.clock.advance(hour);
    assert_eq!(h.store.prune(&exact).await.expect("prune"), 0);
    h.clock.advance(Duration::from_micros(1));
    assert_eq!(h.store.prune(&exact).await.expect("prune"), 1);
    assert_eq!(h.stats().await.total(), 2);

    // A pruned job frees its idempotency key and execution id.
    assert_eq!(h.store.get_by_execution_id(&execution_id).await.expect("lookup"), None);
    let again =
        builder().idempotency_key("prune-me").execution_id("gl-pruned").build().expect("ok");
    assert!(h.store.enqueue(again).await.expect("enqueue").is_created());
}

/// Unknown ids: `get` finds nothing, `cancel` and `requeue` are not found,
/// and so is every write naming an executing job the store never had.
pub async fn unknown_ids_are_not_found<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let real = h.claim_one().await;
    let ghost = forged(&real);
    let id = ghost.id();

    assert_eq!(h.store.get(id).await.expect("get"), None);
    let nowhere = ExecutionId::new("gl-nowhere").expect("valid");
    assert_eq!(h.store.get_by_execution_id(&nowhere).await.expect("lookup"), None);
    assert_error!(h.store.cancel(id, "x").await, Error::NotFound { id: at } if at == id);
    assert_error!(h.store.requeue(id).await, Error::NotFound { id: at } if at == id);
    assert_error!(h.store.complete(ghost.clone(), json!({})).await, Error::NotFound { id: at } if at == id);
    assert_error!(
        h.store.fail(ghost.clone(), Failure::retryable("x")).await,
        Error::NotFound { id: at } if at == id
    );
    assert_error!(h.store.heartbeat(&ghost, LEASE).await, Error::NotFound { id: at } if at == id);
    assert_error!(h.store.release(ghost.clone()).await, Error::NotFound { id: at } if at == id);
    assert_error!(
        h.store.record_execution_id(&ghost, nowhere.clone()).await,
        Error::NotFound { id: at } if at == id
    );
    let answers =
        h.store.complete_many(vec![(ghost.clone(), json!({}))]).await.expect("complete_many");
    assert!(matches!(answers.as_slice(), [Err(Error::NotFound { id: at })] if *at == id));
    assert_eq!(h.stats().await.total(), 1, "nothing was written");
    assert_eq!(h.stored(real.id()).await, real.into_any());
}

/// A job that finished is no longer held: a second write from its last
/// holder is a lost lease and changes nothing.
pub async fn writes_to_finished_jobs_are_lease_lost<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    let id = executing.id();
    h.store.complete(executing.clone(), json!({"first": true})).await.expect("complete");
    let done = h.stored(id).await;
    h.clock.advance(Duration::from_secs(1));

    assert_error!(h.store.complete(executing.clone(), json!({})).await, Error::LeaseLost { id: at, .. } if at == id);
    assert_error!(
        h.store.fail(executing.clone(), Failure::retryable("late")).await,
        Error::LeaseLost { id: at, .. } if at == id
    );
    assert_error!(h.store.heartbeat(&executing, LEASE).await, Error::LeaseLost { id: at, .. } if at == id);
    assert_error!(h.store.release(executing.clone()).await, Error::LeaseLost { id: at, .. } if at == id);
    assert_eq!(h.stored(id).await, done, "a late write must change nothing");

    // The same for a job that a permanent failure ended.
    h.enqueue_one().await;
    let executing = h.claim_one().await;
    let _ = h.store.fail(executing.clone(), Failure::permanent("no")).await.expect("fail");
    let failed = h.stored(executing.id()).await;
    assert_error!(h.store.complete(executing.clone(), json!({})).await, Error::LeaseLost { .. });
    assert_eq!(h.stored(executing.id()).await, failed);
}

/// A store with wake-ups yields one after an enqueue, so a worker need not
/// poll. A store without them passes trivially: its workers poll.
pub async fn wakeups_follow_enqueue<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let Some(mut wakeups) = h.store.wakeups().await.expect("wakeups") else { return };

    h.enqueue_one().await;

    // A bound on waiting, not a sleep: a store that never wakes fails here
    // instead of hanging the suite.
    let woke = tokio::time::timeout(Duration::from_secs(10), wakeups.next()).await;
    assert_eq!(woke, Ok(Some(())), "no wake-up after an enqueue");
}

/// Text shaped like SQL, quoting or formatting tricks, stored verbatim.
const HOSTILE_TEXTS: [&str; 6] = [
    "'); DROP TABLE greenlight_queue; --",
    "\" OR ''='' --",
    "$1 $$ \\ %s {} %n \\x27",
    "Robert'); DELETE FROM learning_atoms WHERE ('a'='a",
    "\u{202e}ʇxǝʇ 🙃 \u{feff}",
    "<script>alert(1)</script>",
];

/// Hostile text in every text field (payload keys and values, execution
/// id, idempotency key, worker id, error message, cancel reason, result)
/// is stored and read back unchanged, and finds its job again by
/// execution id and by key.
pub async fn hostile_text_is_stored_verbatim<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    for (n, text) in HOSTILE_TEXTS.iter().enumerate() {
        let mut payload = serde_json::Map::new();
        payload.insert((*text).to_owned(), json!(text));
        let job = NewJob::builder(LearnerId::random(), Value::Object(payload.clone()))
            .execution_id(format!("{text}-{n}"))
            .idempotency_key(format!("{text}-key"))
            .build()
            .expect("hostile text is valid text");
        let pending = h.enqueue(job.clone()).await;
        assert_eq!(pending.data().request_payload, Value::Object(payload));
        let execution_id = ExecutionId::new(format!("{text}-{n}")).expect("valid");
        let found = h.store.get_by_execution_id(&execution_id).await.expect("lookup");
        assert_eq!(found.map(|job| job.id()), Some(pending.id()), "found by execution id");
        match h.store.enqueue(job).await.expect("enqueue again") {
            Enqueued::Existing(existing) => assert_eq!(existing.id(), pending.id()),
            Enqueued::Created(job) => panic!("the key {text:?} made a second job {job:?}"),
        }

        let request = ClaimRequest { worker_id: worker(text), limit: 1, lease: LEASE };
        let executing = h.store.claim(&request).await.expect("claim").remove(0);
        assert_eq!(executing.state().worker_id.as_str(), *text);
        let failure = Failure::retryable(*text);
        let FailOutcome::Retrying(retrying) = h.store.fail(executing, failure).await.expect("fail")
        else {
            panic!("a retryable failure with retries left must retry");
        };
        assert_eq!(retrying.state().last_error.as_deref(), Some(*text));
        h.advance_to(retrying.data().run_at);
        let executing = h.claim_one().await;
        let complete = h.store.complete(executing, json!({ "stdout": text })).await.expect("done");
        let AnyJob::Complete(stored) = h.stored(complete.id()).await else {
            panic!("job {} is not complete", complete.id());
        };
        assert_eq!(stored.state().result, json!({ "stdout": text }));
        assert_eq!(stored.data().retry_count, 1);

        let cancelled = h.enqueue_one().await;
        let failed = h.store.cancel(cancelled.id(), text).await.expect("cancel");
        assert_eq!(failed.state().error, *text);
        let AnyJob::Failed(stored) = h.stored(cancelled.id()).await else {
            panic!("job {} is not failed", cancelled.id());
        };
        assert_eq!(stored.state().error, *text);
    }
    let stats = h.stats().await;
    assert_eq!(stats.complete, HOSTILE_TEXTS.len() as u64, "the table is intact");
    assert_eq!(stats.failed, HOSTILE_TEXTS.len() as u64);
}

/// A job built with looser limits than the store's is refused by the
/// store, alone or in a batch, and nothing of the batch is written; NUL
/// characters in an error message or a cancel reason, which PostgreSQL
/// refuses in text, are dropped rather than failing the write.
pub async fn store_limits_refuse_oversized_payloads_and_write_nothing<F: StoreFactory>(factory: F) {
    let h = harness(&factory).await;
    let loose = greenlight_core::PayloadLimits { max_bytes: 8 * 1024 * 1024, max_depth: 1_000 };
    let too_big =
        json!({ "code": "x".repeat(greenlight_core::PayloadLimits::default().max_bytes) });
    let mut too_deep = json!([]);
    for _ in 0..greenlight_core::PayloadLimits::default().max_depth {
        too_deep = json!([too_deep]);
    }
    for payload in [too_big, too_deep] {
        let job =
            NewJob::builder(LearnerId::random(), payload).limits(loose).build().expect("loose");
        assert_error!(
            h.store.enqueue(job.clone()).await,
            Error::InvalidInput { field: "request_payload", .. }
        );
        assert_error!(
            h.store.enqueue_many(vec![new_job(), job, new_job()]).await,
            Error::InvalidInput { field: "request_payload", .. }
        );
        assert_eq!(h.stats().await.pending, 0, "a refused batch writes nothing");
    }

    h.enqueue_one().await;
    let executing = h.claim_one().await;
    let failure = Failure::permanent("exit 1: a\u{0}b");
    let FailOutcome::Failed(failed) = h.store.fail(executing, failure).await.expect("fail") else {
        panic!("a permanent failure must fail");
    };
    assert_eq!(failed.state().error, "exit 1: ab");
    let pending = h.enqueue_one().await;
    let cancelled = h.store.cancel(pending.id(), "\u{0}gone\u{0}").await.expect("cancel");
    assert_eq!(cancelled.state().error, "gone");
    assert_eq!(h.stored(pending.id()).await, cancelled.into_any());
}
