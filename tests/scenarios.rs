//! The job lifecycle as behaviour scenarios: the Gherkin files in
//! `tests/features/` say what the queue promises, in words a product person
//! can read, and the steps below hold every store to them. The whole set
//! runs twice, on the in-memory store and on PostgreSQL (a fresh database
//! per scenario), so the two stores keep the same promises.
//!
//! Time comes from a `ManualClock` that the steps move ("31 seconds pass");
//! nothing sleeps. A step whose store call fails keeps the error for a
//! later "is told" step; any other step first checks that no error is left
//! unread, so an unexpected failure cannot pass unnoticed.
//!
//! Run them alone with `cargo test --test scenarios`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "cucumber parses each captured parameter into an owned value for the step"
)]

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cucumber::{World as _, given, then, when, writer::Stats as _};
use futures_util::FutureExt as _;
use greenlight::memory::MemoryStore;
use greenlight::{
    AnyJob, ClaimRequest, Clock, Enqueued, Error, Executing, Failure, Job, JobId, LearnerId,
    ManualClock, NewJob, Rescued, RetryPolicy, Status, Store, WorkerId,
};
use greenlight_postgres::PgStore;
use greenlight_testkit::postgres::TestDb;
use serde_json::Value;

/// Which store a run of the scenarios uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "in-memory store",
            Self::Postgres => "PostgreSQL store",
        })
    }
}

/// One scenario's queue and what its steps have seen.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
struct QueueWorld {
    /// Set by the `before` hook of each run.
    backend: Backend,
    clock: ManualClock,
    store: Option<Arc<dyn Store>>,
    /// Keeps the scenario's PostgreSQL database alive as long as its store.
    database: Option<TestDb>,
    lease: Duration,
    learner: LearnerId,
    /// The job the scenario is about ("the job").
    job: Option<JobId>,
    /// Jobs the scenario named ("old", "urgent").
    named: HashMap<String, JobId>,
    /// What each worker holds, by worker name.
    held: HashMap<String, Job<Executing>>,
    /// Every enqueue's answer, in order.
    enqueued: Vec<Enqueued>,
    rescued: Option<Rescued>,
    /// The error of the last refused call, until a step reads it.
    error: Option<Error>,
}

impl QueueWorld {
    fn new() -> Self {
        Self {
            backend: Backend::Memory,
            clock: ManualClock::starting_now(),
            store: None,
            database: None,
            lease: Duration::from_secs(30),
            learner: LearnerId::random(),
            job: None,
            named: HashMap::new(),
            held: HashMap::new(),
            enqueued: Vec::new(),
            rescued: None,
            error: None,
        }
    }

    /// Makes the scenario's store, empty, on this run's backend.
    async fn open(&mut self, policy: RetryPolicy) {
        let store: Arc<dyn Store> = match self.backend {
            Backend::Memory => Arc::new(
                MemoryStore::builder().clock(self.clock.clone()).retry_policy(policy).build(),
            ),
            Backend::Postgres => {
                let database = TestDb::new().await;
                let store = PgStore::builder(database.url())
                    .clock(Arc::new(self.clock.clone()))
                    .retry_policy(policy)
                    .build()
                    .expect("a PostgreSQL store on the scenario's database");
                self.database = Some(database);
                Arc::new(store)
            }
        };
        self.store = Some(store);
    }

    /// The store, after checking that no earlier call failed unread.
    fn store(&self) -> Arc<dyn Store> {
        if let Some(error) = &self.error {
            panic!("an earlier step failed and no step expected it: {error}");
        }
        Arc::clone(self.store.as_ref().expect("a `Given ... queue` step opens the store first"))
    }

    fn job_id(&self) -> JobId {
        self.job.expect("an earlier step enqueues the job")
    }

    async fn the_job(&self) -> AnyJob {
        let id = self.job_id();
        self.store().get(id).await.expect("get").unwrap_or_else(|| panic!("job {id} is gone"))
    }

    async fn enqueue(&mut self, job: Result<NewJob, Error>) {
        let store = self.store();
        match job {
            Ok(job) => match store.enqueue(job).await {
                Ok(enqueued) => {
                    self.job = Some(enqueued.id());
                    self.enqueued.push(enqueued);
                }
                Err(error) => self.error = Some(error),
            },
            Err(error) => self.error = Some(error),
        }
    }

    async fn claim(&self, worker: &str, limit: usize) -> Vec<Job<Executing>> {
        let request = ClaimRequest { worker_id: worker_id(worker), limit, lease: self.lease };
        self.store().claim(&request).await.expect("claim")
    }

    fn holding(&mut self, worker: &str) -> Job<Executing> {
        self.held.remove(worker).unwrap_or_else(|| panic!("worker {worker:?} holds no job"))
    }

    /// Keeps a refused call's error for a later step to read.
    fn keep<T>(&mut self, outcome: Result<T, Error>) -> Option<T> {
        outcome.map_err(|error| self.error = Some(error)).ok()
    }

    fn take_error(&mut self) -> Error {
        self.error.take().expect("the last call to have been refused, but it succeeded")
    }
}

fn worker_id(name: &str) -> WorkerId {
    WorkerId::new(name).expect("a valid worker name")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{text} is not JSON: {error}"))
}

fn seconds(count: u64) -> Duration {
    Duration::from_secs(count)
}

// ---- the queue ----

#[given("an empty queue")]
async fn an_empty_queue(world: &mut QueueWorld) {
    world.open(RetryPolicy::default()).await;
}

#[given(expr = "a queue that waits {int} seconds after the first failure, doubling each time")]
async fn a_queue_with_backoff(world: &mut QueueWorld, base: u64) {
    // No jitter, so the scenario can name the exact delays.
    let policy = RetryPolicy::new(seconds(base), 2.0, seconds(3600), 0.0).expect("a valid policy");
    world.open(policy).await;
}

#[given(expr = "leases of {int} seconds")]
fn leases_of(world: &mut QueueWorld, lease: u64) {
    world.lease = seconds(lease);
}

#[when(regex = r"^(\d+) seconds? pass(?:es)?$")]
fn time_passes(world: &mut QueueWorld, count: u64) {
    world.clock.advance(seconds(count));
}

#[then(expr = "the queue holds {int} job(s)")]
async fn the_queue_holds(world: &mut QueueWorld, count: u64) {
    let stats = world.store().stats().await.expect("stats");
    assert_eq!(stats.total(), count, "jobs in the queue: {stats:?}");
}

// ---- enqueue ----

#[when(regex = r"^a learner enqueues a job with payload (.+)$")]
async fn enqueue_with_payload(world: &mut QueueWorld, payload: String) {
    let job = NewJob::builder(world.learner, json(&payload)).build();
    world.enqueue(job).await;
}

#[when(expr = "a learner enqueues job {string} with priority {int}")]
async fn enqueue_named(world: &mut QueueWorld, name: String, priority: i32) {
    let job = NewJob::builder(world.learner, json("{}")).priority(priority).build();
    world.enqueue(job).await;
    world.named.insert(name, world.job_id());
}

#[when(expr = "a learner enqueues a job to run in {int} seconds")]
async fn enqueue_delayed(world: &mut QueueWorld, delay: u64) {
    let job = NewJob::builder(world.learner, json("{}")).delay(seconds(delay)).build();
    world.enqueue(job).await;
}

#[given(regex = r"^a learner enqueued a job allowed (\d+) retr(?:y|ies)$")]
async fn enqueued_with_retries(world: &mut QueueWorld, max_retries: u32) {
    let job = NewJob::builder(world.learner, json(r#"{"code": "print(1)"}"#))
        .max_retries(max_retries)
        .build();
    world.enqueue(job).await;
}

#[when(regex = r#"^(?:a|the) learner enqueues a job with idempotency key "([^"]+)"(?: again)?$"#)]
async fn enqueue_with_key(world: &mut QueueWorld, key: String) {
    let job = NewJob::builder(world.learner, json("{}")).idempotency_key(key).build();
    world.enqueue(job).await;
}

#[then("the second enqueue returned the first job")]
fn second_enqueue_returned_first(world: &mut QueueWorld) {
    let [first, second] = world.enqueued.as_slice() else {
        panic!("expected two enqueues, saw {}", world.enqueued.len());
    };
    assert!(first.is_created(), "the first enqueue creates the job");
    assert!(!second.is_created(), "the second enqueue creates nothing");
    assert_eq!(second.id(), first.id());
}

#[then(expr = "the enqueue is refused as invalid input naming {string}")]
fn enqueue_refused(world: &mut QueueWorld, field: String) {
    match world.take_error() {
        Error::InvalidInput { field: named, .. } => assert_eq!(named, field),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

// ---- workers ----

#[when(expr = "worker {string} claims work")]
async fn worker_claims(world: &mut QueueWorld, worker: String) {
    let mut claimed = world.claim(&worker, 1).await;
    let job = claimed.pop().unwrap_or_else(|| panic!("worker {worker:?} found no ready job"));
    world.held.insert(worker, job);
}

#[then(expr = "a claim by worker {string} finds nothing")]
async fn claim_finds_nothing(world: &mut QueueWorld, worker: String) {
    let claimed = world.claim(&worker, 10).await;
    assert!(claimed.is_empty(), "claimed {} job(s)", claimed.len());
}

#[then(expr = "worker {string} claims {string}, then {string}, then {string}")]
async fn claims_in_order(
    world: &mut QueueWorld,
    worker: String,
    first: String,
    second: String,
    third: String,
) {
    for name in [first, second, third] {
        let claimed = world.claim(&worker, 1).await;
        let ids: Vec<JobId> = claimed.iter().map(Job::id).collect();
        assert_eq!(ids, vec![world.named[&name]], "the next claim should take {name:?}");
    }
}

#[then(expr = "worker {string} holds the job on attempt {int}")]
fn holds_on_attempt(world: &mut QueueWorld, worker: String, attempt: u32) {
    let job = world.held.get(&worker).unwrap_or_else(|| panic!("worker {worker:?} holds no job"));
    assert_eq!(job.id(), world.job_id(), "worker {worker:?} holds another job");
    assert_eq!(job.attempt(), attempt);
}

#[when(expr = "worker {string} completes the job with result {}")]
async fn worker_completes(world: &mut QueueWorld, worker: String, result: String) {
    let job = world.holding(&worker);
    let outcome = world.store().complete(job, json(&result)).await;
    world.keep(outcome);
}

#[when(expr = "worker {string} fails the job with {string}")]
async fn worker_fails(world: &mut QueueWorld, worker: String, message: String) {
    let job = world.holding(&worker);
    let outcome = world.store().fail(job, Failure::retryable(message)).await;
    world.keep(outcome);
}

#[when(expr = "worker {string} fails the job permanently with {string}")]
async fn worker_fails_permanently(world: &mut QueueWorld, worker: String, message: String) {
    let job = world.holding(&worker);
    let outcome = world.store().fail(job, Failure::permanent(message)).await;
    world.keep(outcome);
}

#[when(expr = "worker {string} sends a heartbeat")]
async fn worker_heartbeats(world: &mut QueueWorld, worker: String) {
    let job = world.holding(&worker);
    let outcome = world.store().heartbeat(&job, world.lease).await;
    // A refused heartbeat leaves the worker holding what it had: a real
    // worker learns of the loss from the error, not by forgetting the job.
    let renewed = world.keep(outcome).unwrap_or(job);
    world.held.insert(worker, renewed);
}

#[then(expr = "worker {string} is told its lease was lost")]
fn told_lease_lost(world: &mut QueueWorld, worker: String) {
    match world.take_error() {
        Error::LeaseLost { id, .. } => assert_eq!(id, world.job_id(), "for {worker:?}"),
        other => panic!("expected a lost lease for {worker:?}, got {other:?}"),
    }
}

// ---- the rescuer ----

#[when("the rescuer runs")]
async fn rescuer_runs(world: &mut QueueWorld) {
    world.rescued = Some(world.store().rescue_expired().await.expect("rescue"));
}

#[then(expr = "the rescuer took back {int} job(s)")]
fn rescuer_took_back(world: &mut QueueWorld, count: u64) {
    let rescued = world.rescued.expect("the rescuer ran");
    assert_eq!(rescued.total(), count, "{rescued:?}");
}

// ---- operators ----

#[when(expr = "an operator cancels the job because {string}")]
async fn operator_cancels(world: &mut QueueWorld, reason: String) {
    let outcome = world.store().cancel(world.job_id(), &reason).await;
    world.keep(outcome);
}

#[when("an operator requeues the job")]
async fn operator_requeues(world: &mut QueueWorld) {
    let outcome = world.store().requeue(world.job_id()).await;
    world.keep(outcome);
}

#[then(expr = "the operator is told the job is {word}")]
fn operator_told_state(world: &mut QueueWorld, status: String) {
    let status: Status = status.parse().expect("a status");
    match world.take_error() {
        Error::WrongState { id, actual, .. } => {
            assert_eq!(id, world.job_id());
            assert_eq!(actual, status);
        }
        other => panic!("expected a wrong-state error, got {other:?}"),
    }
}

// ---- the job as stored ----

#[then(regex = r"^the job is pending, with (\d+) failed attempts?$")]
async fn job_is_pending(world: &mut QueueWorld, failures: u32) {
    match world.the_job().await {
        AnyJob::Pending(job) => assert_eq!(job.data().retry_count, failures),
        other => panic!("expected a pending job, found {}", other.status()),
    }
}

#[then(expr = "the job is executing, held by worker {string}")]
async fn job_is_executing(world: &mut QueueWorld, worker: String) {
    match world.the_job().await {
        AnyJob::Executing(job) => assert_eq!(job.state().worker_id.as_str(), worker),
        other => panic!("expected an executing job, found {}", other.status()),
    }
}

#[then(expr = "the job is complete with result {}")]
async fn job_is_complete(world: &mut QueueWorld, result: String) {
    match world.the_job().await {
        AnyJob::Complete(job) => assert_eq!(job.state().result, json(&result)),
        other => panic!("expected a complete job, found {}", other.status()),
    }
}

#[then(expr = "the job has failed with error {string}")]
async fn job_has_failed(world: &mut QueueWorld, error: String) {
    match world.the_job().await {
        AnyJob::Failed(job) => assert_eq!(job.state().error, error),
        other => panic!("expected a failed job, found {}", other.status()),
    }
}

#[then(expr = "the job has failed with an error that names worker {string}")]
async fn job_failed_naming_worker(world: &mut QueueWorld, worker: String) {
    match world.the_job().await {
        AnyJob::Failed(job) => {
            let error = &job.state().error;
            assert!(error.contains(&format!("worker {worker}")), "error {error:?}");
        }
        other => panic!("expected a failed job, found {}", other.status()),
    }
}

#[then(regex = r"^the job has (\d+) failed attempts? out of (\d+) attempts?$")]
async fn job_counts(world: &mut QueueWorld, failures: u32, attempts: u32) {
    let job = world.the_job().await;
    assert_eq!((job.data().retry_count, job.data().attempt), (failures, attempts));
}

#[then(expr = "the job becomes ready again after {int} seconds")]
async fn job_ready_after(world: &mut QueueWorld, delay: u64) {
    let due = world.the_job().await.data().run_at;
    assert_eq!(due - world.clock.now(), chrono_seconds(delay), "the retry's run_at");

    // And the store agrees: not a moment before, then at once.
    world.clock.advance(seconds(delay).saturating_sub(Duration::from_micros(1)));
    assert!(world.claim("probe", 10).await.is_empty(), "claimed before its time");
    world.clock.advance(Duration::from_micros(1));
    let ready = world.store().stats().await.expect("stats").ready;
    assert_eq!(ready, 1, "the job is ready once its delay has passed");
}

fn chrono_seconds(count: u64) -> greenlight::chrono::TimeDelta {
    greenlight::chrono::TimeDelta::seconds(i64::try_from(count).expect("a small count"))
}

// ---- the runner ----

/// Runs every feature file on one backend; true when all of it passed.
async fn run(backend: Backend) -> bool {
    println!("\n=== behaviour scenarios on the {backend} ===");
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features");
    let writer = QueueWorld::cucumber()
        // Fixed options, not the command line: `cargo test FILTER` hands
        // its arguments to every test binary, and cucumber's parser would
        // refuse libtest's.
        .with_default_cli()
        // A step with no definition is a broken promise, not a skip.
        .fail_on_skipped()
        // Each PostgreSQL scenario has a database of its own; a few at a
        // time keep the server's connection count modest.
        .max_concurrent_scenarios(8)
        .before(move |_, _, _, world| {
            world.backend = backend;
            async {}.boxed_local()
        })
        .after(|_, _, _, _, world| {
            // Dropping a `TestDb` blocks its thread until the database is
            // gone, and it waits for a lock that a scenario being set up on
            // this runtime may hold: on a runtime thread that can deadlock,
            // so the database goes on a blocking thread instead.
            let database = world.and_then(|world| {
                world.store = None;
                world.database.take()
            });
            async move {
                if let Some(database) = database {
                    tokio::task::spawn_blocking(move || drop(database))
                        .await
                        .expect("drop the scenario's database");
                }
            }
            .boxed_local()
        })
        .run(features)
        .await;
    let passed = !writer.execution_has_failed() && writer.passed_steps() > 0;
    println!("=== {backend}: {}", if passed { "all scenarios passed" } else { "FAILED" });
    passed
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let memory = runtime.block_on(run(Backend::Memory));
    let postgres = runtime.block_on(run(Backend::Postgres));
    assert!(memory && postgres, "behaviour scenarios failed (see above)");
}
