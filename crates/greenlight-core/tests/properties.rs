//! Property tests: the invariants of DESIGN.md hold for any sequence of
//! transitions and any retry policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use greenlight_core::{
    AnyJob, FailOutcome, Jitter, Job, JobId, LearnerId, NewJob, Pending, RetryPolicy, Status,
    WorkerId,
};
use proptest::prelude::*;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().expect("a valid RFC 3339 literal")
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u64..5_000, 1.0f64..4.0, 0u64..3_600_000, 0.0f64..=1.0).prop_map(
        |(base_ms, multiplier, extra_ms, jitter)| {
            let base = Duration::from_millis(base_ms);
            RetryPolicy::new(base, multiplier, base + Duration::from_millis(extra_ms), jitter)
                .expect("the strategy only makes valid policies")
        },
    )
}

/// One step a worker, the rescuer or an operator can take.
#[derive(Debug, Clone)]
enum Step {
    Claim,
    Heartbeat,
    Complete,
    Fail,
    FailPermanently,
    ExpireLease,
    Release,
    Cancel,
    Requeue,
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Claim),
        1 => Just(Step::Heartbeat),
        1 => Just(Step::Complete),
        3 => Just(Step::Fail),
        1 => Just(Step::FailPermanently),
        1 => Just(Step::ExpireLease),
        1 => Just(Step::Release),
        1 => Just(Step::Cancel),
        1 => Just(Step::Requeue),
        2 => (0u64..10_000).prop_map(Step::Wait),
    ]
}

/// Applies a step when the job's state allows it; a step the state does not
/// allow is skipped, exactly as the types would refuse it.
fn apply(job: AnyJob, step: &Step, policy: &RetryPolicy, now: DateTime<Utc>) -> AnyJob {
    let worker = WorkerId::new("w").expect("valid");
    let lease = Duration::from_secs(30);
    match (job, step) {
        (AnyJob::Pending(job), Step::Claim) => job.claim(worker, lease, now).into_any(),
        (AnyJob::Pending(job), Step::Cancel) => job.cancel("cancelled", now).into_any(),
        (AnyJob::Executing(job), Step::Heartbeat) => job.heartbeat(lease, now).into_any(),
        (AnyJob::Executing(job), Step::Complete) => job.complete(json!({"ok": 1}), now).into_any(),
        (AnyJob::Executing(job), Step::Fail) => job.fail("boom", policy, now).into_any(),
        (AnyJob::Executing(job), Step::FailPermanently) => {
            job.fail_permanently("bad", now).into_any()
        }
        (AnyJob::Executing(job), Step::ExpireLease) => job.expire_lease(policy, now).into_any(),
        (AnyJob::Executing(job), Step::Release) => job.release(now).into_any(),
        (AnyJob::Failed(job), Step::Requeue) => job.requeue(now).into_any(),
        (job, _) => job,
    }
}

fn new_job(max_retries: u32) -> Job<Pending> {
    NewJob::builder(LearnerId::random(), json!({"code": "x"}))
        .max_retries(max_retries)
        .build()
        .expect("valid")
        .into_pending(JobId::random(), t0())
}

proptest! {
    #[test]
    fn delay_before_jitter_never_decreases(policy in policy(), n in 1u32..200) {
        prop_assert!(policy.delay_before_jitter(n) <= policy.delay_before_jitter(n + 1));
    }

    #[test]
    fn jittered_delay_stays_within_the_cap_and_the_jitter_band(
        policy in policy(), n in 0u32..10_000, unit in any::<f64>()
    ) {
        let before = policy.delay_before_jitter(n);
        let delay = policy.delay(n, Jitter::new(unit));
        prop_assert!(delay <= policy.cap());
        prop_assert!(delay <= before);
        let floor = before.as_secs_f64() * (1.0 - policy.jitter());
        // One microsecond of slack: the delay is floored to whole microseconds.
        prop_assert!(delay.as_secs_f64() + 1e-6 >= floor, "{delay:?} below {floor}");
    }

    #[test]
    fn job_derived_jitter_is_in_range(bits in any::<u128>(), attempt in any::<u32>()) {
        let jitter = Jitter::for_attempt(JobId(uuid::Uuid::from_u128(bits)), attempt);
        prop_assert!((0.0..1.0).contains(&jitter.value()));
    }

    #[test]
    fn a_job_that_keeps_failing_fails_after_exactly_max_retries_plus_one_attempts(
        policy in policy(), max_retries in 0u32..=20, expire in proptest::collection::vec(any::<bool>(), 21)
    ) {
        let mut job = new_job(max_retries);
        let mut now = t0();
        let worker = WorkerId::new("w").expect("valid");
        loop {
            let running = job.claim(worker.clone(), Duration::from_secs(30), now);
            let attempt = running.attempt();
            prop_assert!(attempt <= max_retries + 1);
            // Errors and expired leases count the same.
            let outcome = if expire[attempt as usize - 1] {
                running.expire_lease(&policy, now + Duration::from_secs(30))
            } else {
                running.fail("boom", &policy, now)
            };
            match outcome {
                FailOutcome::Retrying(next) => {
                    prop_assert!(next.data().run_at >= now);
                    now = next.data().run_at;
                    job = next;
                }
                FailOutcome::Failed(failed) => {
                    prop_assert_eq!(failed.attempt(), max_retries + 1);
                    prop_assert_eq!(failed.data().retry_count, max_retries + 1);
                    break;
                }
            }
        }
    }

    #[test]
    fn random_walks_keep_every_invariant(
        policy in policy(),
        max_retries in 0u32..=6,
        steps in proptest::collection::vec(step(), 0..80)
    ) {
        let mut job = new_job(max_retries).into_any();
        let mut now = t0();
        let mut releases_and_requeues = 0;
        let mut last_attempt = 0;
        for step in &steps {
            if let Step::Wait(ms) = step {
                now += Duration::from_millis(*ms);
                continue;
            }
            if matches!(
                (&job, step),
                (AnyJob::Executing(_), Step::Release) | (AnyJob::Failed(_), Step::Requeue)
            ) {
                releases_and_requeues += 1;
            }
            let before = job.status();
            job = apply(job, step, &policy, now);
            let data = job.data();

            // The status is always one of the four, and moves only along
            // the edges of the state picture.
            prop_assert!(Status::ALL.contains(&job.status()));
            let edge = (before, job.status());
            let allowed = before == job.status() || matches!(edge,
                (Status::Pending, Status::Executing | Status::Failed)
                | (Status::Executing, Status::Pending | Status::Complete | Status::Failed)
                | (Status::Failed, Status::Pending));
            prop_assert!(allowed, "illegal edge {edge:?}");

            // The fencing token never goes back.
            prop_assert!(data.attempt >= last_attempt);
            last_attempt = data.attempt;
            // Failures are attempts that ended badly: never more than attempts,
            // never beyond the budget.
            prop_assert!(data.retry_count <= data.attempt);
            prop_assert!(data.retry_count <= max_retries + 1);
            // Without releases or requeues, attempts stay within the budget.
            if releases_and_requeues == 0 {
                prop_assert!(data.attempt <= max_retries + 1);
            }
            if let AnyJob::Failed(failed) = &job {
                prop_assert!(!failed.state().error.is_empty());
            }
        }
    }

    #[test]
    fn any_job_survives_a_json_round_trip(
        policy in policy(),
        steps in proptest::collection::vec(step(), 0..30),
        payload in proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,20}", 0..5),
    ) {
        let mut job = NewJob::builder(LearnerId::random(), json!(payload))
            .idempotency_key("key-1")
            .build()
            .expect("valid")
            .into_pending(JobId::random(), t0())
            .into_any();
        let mut now = t0();
        for step in &steps {
            if let Step::Wait(ms) = step {
                now += Duration::from_millis(*ms);
            }
            job = apply(job, step, &policy, now);
            let text = serde_json::to_string(&job).expect("serialises");
            let back: AnyJob = serde_json::from_str(&text).expect("parses");
            prop_assert_eq!(&back, &job);
        }
    }

    #[test]
    fn status_parsing_never_panics(text in ".*") {
        let parsed = text.parse::<Status>();
        prop_assert_eq!(parsed.is_ok(), Status::ALL.iter().any(|s| s.as_str() == text));
    }
}
