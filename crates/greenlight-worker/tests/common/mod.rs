//! Worker scenarios written once and run against every store: the
//! in-memory store (`tests/memory.rs`) and PostgreSQL
//! (`tests/postgres.rs`). Time comes from a [`ManualClock`] the store is
//! built on, so leases expire because a scenario moves the clock, never
//! because it sleeps.

#![allow(dead_code, reason = "each test binary uses its own part of the helpers")]
#![allow(unreachable_pub, reason = "test helpers, not a public API")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenlight_core::{
    AnyJob, ClaimRequest, Error, Executing, ExecutionId, Job, JobId, LearnerId, ManualClock,
    NewJob, Status, Store, WorkerId,
};
use greenlight_worker::{ExecuteError, FnExecutor, Metrics, Retention, Worker, WorkerHandle};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub mod flaky;
use flaky::FlakyStore;

/// A store under test and the clock it runs on. Whatever else must live
/// as long as the store (a test database) rides along in `keep`.
pub struct Backend {
    pub clock: ManualClock,
    pub store: Arc<dyn Store>,
    pub keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Backend {
    pub fn parts(&self) -> (ManualClock, Arc<dyn Store>) {
        (self.clock.clone(), Arc::clone(&self.store))
    }
}

/// One `#[tokio::test]` per scenario, each on a fresh backend from
/// `$make` (an async fn returning a [`Backend`]).
#[macro_export]
macro_rules! worker_scenarios {
    ($make:path) => {
        $crate::worker_scenarios!(@each $make; four_workers_run_five_thousand_jobs_exactly_once,
            fails_twice_then_succeeds_ends_complete_with_two_retries,
            always_failing_ends_failed_after_max_retries_plus_one_attempts,
            a_permanent_error_fails_at_once,
            a_panic_in_the_executor_is_a_retryable_failure,
            the_panic_message_is_stored_as_the_error,
            a_job_that_overruns_its_timeout_is_cancelled_and_retried,
            a_crashed_workers_job_is_rescued_and_its_late_completion_refused,
            shutdown_lets_a_slow_job_finish_within_the_grace_period,
            shutdown_gives_back_a_job_that_outlasts_the_grace_period_without_spending_a_retry,
            shutdown_gives_back_a_job_whose_executor_stops_when_told_without_spending_a_retry,
            a_lost_lease_cancels_the_executor_and_drops_its_outcome,
            the_execution_id_is_stored_while_the_job_runs,
            drain_mode_waits_for_retries_then_stops_by_itself,
            storage_faults_lose_nothing_and_run_nothing_twice);
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                common::$name($make().await).await;
            }
        )*
    };
}

/// Moves the clock forward a little, often, so that retries in backoff
/// become ready; leases in these tests are long enough never to expire
/// from it.
pub fn keep_time_moving(clock: &ManualClock) -> tokio::task::JoinHandle<()> {
    let clock = clock.clone();
    tokio::spawn(async move {
        loop {
            clock.advance(Duration::from_millis(5));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

pub async fn enqueue(store: &dyn Store, count: usize, max_retries: u32) -> Vec<JobId> {
    let jobs = (0..count)
        .map(|n| {
            NewJob::builder(LearnerId::random(), json!({"n": n}))
                .max_retries(max_retries)
                .build()
                .expect("a valid job")
        })
        .collect();
    store
        .enqueue_many(jobs)
        .await
        .expect("enqueued")
        .iter()
        .map(greenlight_core::Enqueued::id)
        .collect()
}

pub async fn get(store: &dyn Store, id: JobId) -> AnyJob {
    for _ in 0..RETRYABLE_TRIES {
        match store.get(id).await {
            Ok(job) => return job.expect("the job exists"),
            Err(error) if error.is_retryable() => {}
            Err(error) => panic!("get: {error:?}"),
        }
    }
    panic!("get: still unavailable after {RETRYABLE_TRIES} tries")
}

/// How often the helpers' reads are tried when the store answers with a
/// retryable error. A test that kills the pool's sessions leaves dead
/// connections in it; once the workers are idle, the test's own read is
/// the one that meets them, and each such read fails once and discards
/// its connection, as any caller's would. The pool holds ten.
const RETRYABLE_TRIES: usize = 20;

/// Waits until `done` holds of the store's stats. A generous bound turns a
/// hang into a failure; it measures nothing. A look that meets a storage
/// fault is a look with no news: the tests that kill connections kill
/// this one's too.
pub async fn wait_for(store: &dyn Store, done: impl Fn(&greenlight_core::Stats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut unavailable = 0;
    loop {
        let stats = match store.stats().await {
            Ok(stats) => stats,
            Err(error) if error.is_retryable() && unavailable < RETRYABLE_TRIES => {
                unavailable += 1;
                continue;
            }
            Err(error) => panic!("stats: {error:?}"),
        };
        if done(&stats) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn worker(store: Arc<dyn Store>, executor: impl greenlight_worker::Executor) -> Worker {
    Worker::builder(store, executor)
        .concurrency(8)
        .lease(Duration::from_secs(3600))
        .poll_interval(Duration::from_millis(5))
        .retention(Retention::keep_everything())
        .build()
        .expect("valid settings")
}

/// Counts executions per job id.
#[derive(Clone, Default)]
pub struct Runs(Arc<Mutex<HashMap<JobId, u32>>>);

impl Runs {
    pub fn record(&self, id: JobId) -> u32 {
        let mut runs = self.0.lock().expect("not poisoned");
        let count = runs.entry(id).or_default();
        *count += 1;
        *count
    }

    pub fn of(&self, id: JobId) -> u32 {
        self.0.lock().expect("not poisoned").get(&id).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.0.lock().expect("not poisoned").values().sum()
    }
}

pub async fn four_workers_run_five_thousand_jobs_exactly_once(backend: Backend) {
    let (_clock, store) = backend.parts();
    let ids = enqueue(&*store, 5_000, 3).await;
    let runs = Runs::default();

    let mut handles: Vec<WorkerHandle> = (0..4)
        .map(|_| {
            let runs = runs.clone();
            let executor = FnExecutor::new(move |job: Job<Executing>, _| {
                let runs = runs.clone();
                async move {
                    runs.record(job.id());
                    tokio::task::yield_now().await;
                    Ok::<_, ExecuteError>(json!({"n": job.data().request_payload["n"]}))
                }
            });
            worker(store.clone(), executor).spawn()
        })
        .collect();

    wait_for(&*store, |stats| stats.complete == 5_000).await;
    let mut total = Metrics::default();
    for handle in &mut handles {
        let metrics = handle.shutdown().await;
        total.completed += metrics.completed;
        total.claimed += metrics.claimed;
    }

    assert_eq!(total.completed, 5_000);
    assert_eq!(total.claimed, 5_000);
    assert_eq!(runs.total(), 5_000);
    for id in ids {
        assert_eq!(runs.of(id), 1, "job {id} ran {} times", runs.of(id));
        let AnyJob::Complete(job) = get(&*store, id).await else { panic!("{id} is not complete") };
        assert_eq!(job.state().result["n"], job.data().request_payload["n"]);
    }
}

pub async fn fails_twice_then_succeeds_ends_complete_with_two_retries(backend: Backend) {
    let (clock, store) = backend.parts();
    let _time = keep_time_moving(&clock);
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            let attempt = runs.record(job.id());
            async move {
                if attempt <= 2 {
                    Err(ExecuteError::retryable(format!("greenlight busy ({attempt})")))
                } else {
                    Ok(json!({"ok": true}))
                }
            }
        })
    };
    let mut handle = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.complete == 1).await;
    let metrics = handle.shutdown().await;

    let AnyJob::Complete(job) = get(&*store, id).await else { panic!("not complete") };
    assert_eq!(job.data().retry_count, 2);
    assert_eq!(job.attempt(), 3);
    assert_eq!(metrics.retried, 2);
    assert_eq!(metrics.completed, 1);
}

pub async fn always_failing_ends_failed_after_max_retries_plus_one_attempts(backend: Backend) {
    let (clock, store) = backend.parts();
    let _time = keep_time_moving(&clock);
    let [id] = enqueue(&*store, 1, 2).await[..] else { unreachable!() };
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            let attempt = runs.record(job.id());
            async move { Err::<Value, _>(ExecuteError::retryable(format!("boom {attempt}"))) }
        })
    };
    let mut handle = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.failed == 1).await;
    let metrics = handle.shutdown().await;

    let AnyJob::Failed(job) = get(&*store, id).await else { panic!("not failed") };
    assert_eq!(runs.of(id), 3, "max_retries = 2 allows three attempts");
    assert_eq!(job.data().retry_count, 3);
    assert_eq!(job.state().error, "boom 3", "the last error is kept");
    assert_eq!((metrics.retried, metrics.failed), (2, 1));
}

pub async fn a_permanent_error_fails_at_once(backend: Backend) {
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 5).await[..] else { unreachable!() };
    let executor = FnExecutor::new(|_, _| async {
        Err::<Value, _>(ExecuteError::permanent("the request names no language"))
    });
    let mut handle = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.failed == 1).await;
    handle.shutdown().await;

    let AnyJob::Failed(job) = get(&*store, id).await else { panic!("not failed") };
    assert_eq!(job.attempt(), 1);
    assert_eq!(job.data().retry_count, 1);
    assert_eq!(job.state().error, "the request names no language");
}

pub async fn a_panic_in_the_executor_is_a_retryable_failure(backend: Backend) {
    let (clock, store) = backend.parts();
    let _time = keep_time_moving(&clock);
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            let attempt = runs.record(job.id());
            async move {
                assert!(attempt > 1, "simulated bug in the executor");
                Ok(json!({"attempt": attempt}))
            }
        })
    };
    let mut handle = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.complete == 1).await;
    let metrics = handle.shutdown().await;

    let AnyJob::Complete(job) = get(&*store, id).await else { panic!("not complete") };
    assert_eq!(job.data().retry_count, 1);
    assert_eq!(job.state().result, json!({"attempt": 2}));
    assert_eq!(metrics.retried, 1);
}

pub async fn the_panic_message_is_stored_as_the_error(backend: Backend) {
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 0).await[..] else { unreachable!() };
    let executor = FnExecutor::new(|_, _| async {
        let empty: Vec<u8> = Vec::new();
        Ok::<_, ExecuteError>(json!({"first": empty[0]}))
    });
    let mut handle = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.failed == 1).await;
    handle.shutdown().await;

    let AnyJob::Failed(job) = get(&*store, id).await else { panic!("not failed") };
    assert!(
        job.state().error.starts_with("executor panicked: index out of bounds"),
        "{}",
        job.state().error
    );
}

pub async fn a_job_that_overruns_its_timeout_is_cancelled_and_retried(backend: Backend) {
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 0).await[..] else { unreachable!() };
    let executor = FnExecutor::new(|_, context: greenlight_worker::JobContext| async move {
        context.cancelled().await;
        Ok::<_, ExecuteError>(json!("too late"))
    });
    let mut handle = Worker::builder(store.clone(), executor)
        .job_timeout(Duration::from_millis(20))
        .poll_interval(Duration::from_millis(5))
        .build()
        .expect("valid")
        .spawn();
    wait_for(&*store, |stats| stats.failed == 1).await;
    handle.shutdown().await;

    let AnyJob::Failed(job) = get(&*store, id).await else { panic!("not failed") };
    assert!(job.state().error.starts_with("timed out after"), "{}", job.state().error);
}

pub async fn a_crashed_workers_job_is_rescued_and_its_late_completion_refused(backend: Backend) {
    let (clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };

    // The first worker takes the job and hangs on it, then dies.
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    let hanging = FnExecutor::new(move |job: Job<Executing>, _| {
        let held_tx = held_tx.clone();
        async move {
            held_tx.send(job).expect("the test listens");
            std::future::pending::<()>().await;
            Ok::<_, ExecuteError>(json!(null))
        }
    });
    let lease = Duration::from_secs(30);
    // The crashed worker never rescues: its rescuer runs once as it
    // starts, and an abort takes effect only when its tasks are next
    // scheduled, so that first run could come after the clock moves below
    // and take the job back before the second worker starts.
    let crashing_store: Arc<dyn Store> = Arc::new(FlakyStore::without_rescue(store.clone()));
    let mut crashed = Worker::builder(crashing_store, hanging)
        .lease(lease)
        .poll_interval(Duration::from_millis(5))
        .build()
        .expect("valid")
        .spawn();
    let stale = held_rx.recv().await.expect("the job was claimed");
    crashed.abort();
    drop(crashed);
    assert_eq!(get(&*store, id).await.status(), Status::Executing, "a crash writes nothing");

    // Its lease runs out; a new worker rescues the job when it starts.
    clock.advance(lease + Duration::from_secs(1));
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            runs.record(job.id());
            async move { Ok::<_, ExecuteError>(json!({"by": "second"})) }
        })
    };
    let _time = keep_time_moving(&clock);
    let mut second = worker(store.clone(), executor).spawn();
    wait_for(&*store, |stats| stats.complete == 1).await;
    let metrics = second.shutdown().await;
    assert_eq!(metrics.rescued, 1);

    let AnyJob::Complete(job) = get(&*store, id).await else { panic!("not complete") };
    assert_eq!(job.data().retry_count, 1, "the expired lease counted as a failure");
    assert_eq!(job.attempt(), 2);
    assert_eq!(runs.of(id), 1);

    // The first worker's late completion changes nothing.
    let late = store.complete(stale, json!({"by": "first"})).await;
    assert!(matches!(late, Err(Error::LeaseLost { attempt: 1, .. })), "{late:?}");
    let AnyJob::Complete(job) = get(&*store, id).await else { panic!("not complete") };
    assert_eq!(job.state().result, json!({"by": "second"}));
}

pub async fn shutdown_lets_a_slow_job_finish_within_the_grace_period(backend: Backend) {
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let executor = FnExecutor::new(move |_, _| {
        let started_tx = started_tx.clone();
        async move {
            started_tx.send(()).expect("the test listens");
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, ExecuteError>(json!({"slow": true}))
        }
    });
    let mut handle = Worker::builder(store.clone(), executor)
        .shutdown_grace(Duration::from_secs(30))
        .poll_interval(Duration::from_millis(5))
        .build()
        .expect("valid")
        .spawn();
    started.recv().await.expect("the job started");
    let metrics = handle.shutdown().await;

    assert_eq!(metrics.completed, 1);
    assert_eq!(metrics.released, 0);
    assert_eq!(get(&*store, id).await.status(), Status::Complete);
}

pub async fn shutdown_gives_back_a_job_that_outlasts_the_grace_period_without_spending_a_retry(
    backend: Backend,
) {
    shutdown_past_the_grace_period_gives_the_job_back(backend, |_| async {
        std::future::pending::<()>().await;
        Ok(json!(null))
    })
    .await;
}

/// An executor that honours cancellation, as the CLI's does (it kills its
/// program and reports the kill), must not turn the shutdown that
/// cancelled it into a failure of the job.
pub async fn shutdown_gives_back_a_job_whose_executor_stops_when_told_without_spending_a_retry(
    backend: Backend,
) {
    shutdown_past_the_grace_period_gives_the_job_back(backend, |context| async move {
        context.cancelled().await;
        Err(ExecuteError::retryable("killed: the worker is stopping"))
    })
    .await;
}

/// Runs one job with `run` as its executor, shuts the worker down once it
/// started, with a grace period too short for it, and checks that the job
/// went back to pending without spending a retry.
async fn shutdown_past_the_grace_period_gives_the_job_back<F, Fut>(backend: Backend, run: F)
where
    F: Fn(greenlight_worker::JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, ExecuteError>> + Send + 'static,
{
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let run = Arc::new(run);
    let executor = FnExecutor::new(move |_, context| {
        let (started_tx, run) = (started_tx.clone(), Arc::clone(&run));
        async move {
            started_tx.send(()).expect("the test listens");
            run(context).await
        }
    });
    let mut handle = Worker::builder(store.clone(), executor)
        .shutdown_grace(Duration::from_millis(50))
        .poll_interval(Duration::from_millis(5))
        .build()
        .expect("valid")
        .spawn();
    started.recv().await.expect("the job started");
    let metrics = handle.shutdown().await;

    assert_eq!(metrics.released, 1);
    assert_eq!(metrics.retried, 0);
    let AnyJob::Pending(job) = get(&*store, id).await else { panic!("not pending") };
    assert_eq!(job.data().retry_count, 0, "a release spends no retry");
    assert_eq!(job.attempt(), 1);
}

pub async fn a_lost_lease_cancels_the_executor_and_drops_its_outcome(backend: Backend) {
    let (clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (cancelled_tx, mut cancelled) = mpsc::unbounded_channel();
    let executor = FnExecutor::new(move |_, context: greenlight_worker::JobContext| {
        let (started_tx, cancelled_tx) = (started_tx.clone(), cancelled_tx.clone());
        async move {
            started_tx.send(()).expect("the test listens");
            context.cancelled().await;
            cancelled_tx.send(()).expect("the test listens");
            Ok::<_, ExecuteError>(json!("should be dropped"))
        }
    });
    let lease = Duration::from_millis(300);
    let mut handle = Worker::builder(store.clone(), executor)
        .lease(lease)
        .poll_interval(Duration::from_secs(3600))
        .rescue_interval(Duration::from_secs(3600))
        .build()
        .expect("valid")
        .spawn();
    started.recv().await.expect("the job started");

    // Another party takes the job over after its lease ran out. The
    // worker still beats on tokio's clock, so a beat can land between the
    // advance and the rescue and renew the lease on the manual clock: move
    // time on again until the job is taken back (a bound, not a wait). The
    // worker's own rescuer, which runs once as it starts, may be the one
    // that takes it back, when its first run comes after the advance.
    let mut taken_back = false;
    for _ in 0..20 {
        clock.advance(Duration::from_secs(1));
        store.rescue_expired().await.expect("rescue");
        if let AnyJob::Pending(job) = get(&*store, id).await {
            assert_eq!(job.data().retry_count, 1, "taken back once");
            taken_back = true;
            break;
        }
    }
    assert!(taken_back, "the expired lease was never taken back");
    clock.advance(Duration::from_secs(60));
    let thief = ClaimRequest {
        worker_id: WorkerId::new("thief").expect("valid"),
        limit: 1,
        lease: Duration::from_secs(3600),
    };
    assert_eq!(store.claim(&thief).await.expect("claim").len(), 1);

    // The next heartbeat finds the lease lost and cancels the executor.
    cancelled.recv().await.expect("the executor was cancelled");
    let metrics = handle.shutdown().await;
    assert_eq!(metrics.lease_lost, 1);
    assert_eq!(metrics.completed, 0);
    let AnyJob::Executing(job) = get(&*store, id).await else { panic!("not executing") };
    assert_eq!(job.state().worker_id.as_str(), "thief");
}

pub async fn the_execution_id_is_stored_while_the_job_runs(backend: Backend) {
    let (_clock, store) = backend.parts();
    let [id] = enqueue(&*store, 1, 3).await[..] else { unreachable!() };
    let (recorded_tx, mut recorded) = mpsc::unbounded_channel();
    let (finish_tx, finish) = tokio::sync::watch::channel(false);
    let executor = FnExecutor::new(move |_, context: greenlight_worker::JobContext| {
        let recorded_tx = recorded_tx.clone();
        let mut finish = finish.clone();
        async move {
            assert_eq!(context.execution_id(), None);
            let execution = ExecutionId::new("gl-run-77").expect("valid");
            context.record_execution_id(execution).await.map_err(ExecuteError::retryable)?;
            recorded_tx.send(()).expect("the test listens");
            finish.wait_for(|go| *go).await.expect("the test keeps the sender");
            Ok(json!({"done": true}))
        }
    });
    let mut handle = worker(store.clone(), executor).spawn();
    recorded.recv().await.expect("recorded");

    let execution = ExecutionId::new("gl-run-77").expect("valid");
    let found = store.get_by_execution_id(&execution).await.expect("lookup");
    assert_eq!(found.map(|job| (job.id(), job.status())), Some((id, Status::Executing)));

    finish_tx.send(true).expect("the executor listens");
    wait_for(&*store, |stats| stats.complete == 1).await;
    handle.shutdown().await;
    assert_eq!(get(&*store, id).await.data().execution_id.as_ref(), Some(&execution));
}

pub async fn drain_mode_waits_for_retries_then_stops_by_itself(backend: Backend) {
    let (clock, store) = backend.parts();
    let _time = keep_time_moving(&clock);
    let ids = enqueue(&*store, 20, 3).await;
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            let attempt = runs.record(job.id());
            async move {
                if attempt == 1 {
                    Err(ExecuteError::retryable("first try fails"))
                } else {
                    Ok(json!({}))
                }
            }
        })
    };
    let metrics = Worker::builder(store.clone(), executor)
        .drain(true)
        .poll_interval(Duration::from_millis(5))
        .build()
        .expect("valid")
        .run_until(std::future::pending())
        .await;
    assert_eq!(metrics.completed, 20);
    assert_eq!(metrics.retried, 20);
    for id in ids {
        assert_eq!(get(&*store, id).await.status(), Status::Complete);
    }
}

pub async fn storage_faults_lose_nothing_and_run_nothing_twice(backend: Backend) {
    let (_clock, store) = backend.parts();
    let ids = enqueue(&*store, 500, 3).await;
    // Every fourth call fails: half before reaching the store, half after
    // the store has done its work (the answer is lost on the way back).
    let flaky = Arc::new(FlakyStore::new(store.clone(), 4));
    let runs = Runs::default();
    let executor = {
        let runs = runs.clone();
        FnExecutor::new(move |job: Job<Executing>, _| {
            runs.record(job.id());
            async move { Ok::<_, ExecuteError>(json!({})) }
        })
    };
    let mut handle = Worker::builder(flaky.clone(), executor)
        .concurrency(16)
        .poll_interval(Duration::from_millis(5))
        .retention(Retention::keep_everything())
        .build()
        .expect("valid")
        .spawn();
    wait_for(&*store, |stats| stats.complete == 500).await;
    handle.shutdown().await;

    assert!(flaky.faults() > 10, "the store really failed ({} faults)", flaky.faults());
    for id in ids {
        assert_eq!(get(&*store, id).await.status(), Status::Complete);
        assert_eq!(runs.of(id), 1, "job {id} ran {} times", runs.of(id));
    }
}
