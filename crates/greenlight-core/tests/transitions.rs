//! Unit tests for every transition and every validation error of the core.

use std::time::Duration;

use chrono::{DateTime, Utc};
use greenlight_core::{
    AnyJob, Error, Executing, FailOutcome, Failed, Jitter, Job, JobId, JobRecord, LearnerId,
    NewJob, Pending, RetryPolicy, Status, WorkerId,
};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().expect("a valid RFC 3339 literal")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn pending(max_retries: u32) -> Job<Pending> {
    NewJob::builder(LearnerId::random(), json!({"language": "python", "code": "print(1)"}))
        .max_retries(max_retries)
        .build()
        .expect("a valid job")
        .into_pending(JobId::random(), t0())
}

fn worker() -> WorkerId {
    WorkerId::new("worker-a").expect("a valid worker id")
}

fn executing(max_retries: u32) -> Job<Executing> {
    pending(max_retries).claim(worker(), secs(30), t0())
}

#[test]
fn enqueue_sets_the_initial_counters() {
    let job = pending(3);
    assert_eq!(job.status(), Status::Pending);
    assert_eq!(job.attempt(), 0);
    assert_eq!(job.data().retry_count, 0);
    assert_eq!(job.data().queued_at, t0());
    assert_eq!(job.data().run_at, t0());
    assert!(job.is_ready(t0()));
}

#[test]
fn a_delayed_job_is_ready_only_once_its_time_has_come() {
    let job = NewJob::builder(LearnerId::random(), json!({}))
        .delay(secs(60))
        .build()
        .expect("a valid job")
        .into_pending(JobId::random(), t0());
    assert_eq!(job.data().run_at, t0() + secs(60));
    assert!(!job.is_ready(t0() + secs(59)));
    assert!(job.is_ready(t0() + secs(60)));
}

#[test]
fn claim_increments_the_attempt_and_starts_a_lease() {
    let job = executing(3);
    assert_eq!(job.attempt(), 1);
    assert_eq!(job.state().started_at, t0());
    assert_eq!(job.state().lease_expires_at, t0() + secs(30));
    assert_eq!(job.state().worker_id, worker());
    assert!(!job.is_lease_expired(t0() + secs(29)));
    assert!(job.is_lease_expired(t0() + secs(30)));
}

#[test]
fn heartbeat_extends_the_lease_from_now() {
    let job = executing(3).heartbeat(secs(30), t0() + secs(20));
    assert_eq!(job.state().lease_expires_at, t0() + secs(50));
    assert_eq!(job.attempt(), 1);
}

#[test]
fn record_execution_id_keeps_the_id() {
    let id = greenlight_core::ExecutionId::new("gl-123").expect("valid");
    let job = executing(3).record_execution_id(id.clone());
    assert_eq!(job.data().execution_id, Some(id));
}

#[test]
fn complete_keeps_the_result_and_times() {
    let job = executing(3).complete(json!({"stdout": "1\n"}), t0() + secs(5));
    assert_eq!(job.status(), Status::Complete);
    assert_eq!(job.state().result, json!({"stdout": "1\n"}));
    assert_eq!(job.state().started_at, Some(t0()));
    assert_eq!(job.state().completed_at, t0() + secs(5));
}

#[test]
fn fail_with_retries_left_goes_back_to_pending_after_the_policy_delay() {
    let policy = RetryPolicy::default();
    let job = executing(3);
    let (id, attempt) = (job.id(), job.attempt());
    let now = t0() + secs(1);
    let FailOutcome::Retrying(job) = job.fail("timeout", &policy, now) else {
        panic!("three retries were left");
    };
    assert_eq!(job.data().retry_count, 1);
    assert_eq!(job.state().last_error.as_deref(), Some("timeout"));
    let delay = policy.delay(1, Jitter::for_attempt(id, attempt));
    assert!(delay > Duration::ZERO);
    assert_eq!(job.data().run_at, now + delay);
}

#[test]
fn max_retries_three_allows_exactly_four_attempts() {
    let policy = RetryPolicy::fixed(secs(1));
    let mut job = pending(3);
    let mut now = t0();
    for attempt in 1..=4 {
        let running = job.claim(worker(), secs(30), now);
        assert_eq!(running.attempt(), attempt);
        match running.fail("boom", &policy, now) {
            FailOutcome::Retrying(next) => {
                assert!(attempt < 4, "attempt {attempt} should have been the last");
                job = next;
                now = job.data().run_at;
            }
            FailOutcome::Failed(failed) => {
                assert_eq!(attempt, 4);
                assert_eq!(failed.data().retry_count, 4);
                assert_eq!(failed.state().error, "boom");
                return;
            }
        }
    }
    panic!("the job never failed for good");
}

#[test]
fn max_retries_zero_fails_on_the_first_failure() {
    let outcome = executing(0).fail("boom", &RetryPolicy::default(), t0());
    let FailOutcome::Failed(job) = outcome else { panic!("no retries were allowed") };
    assert_eq!(job.data().retry_count, 1);
}

#[test]
fn a_permanent_failure_fails_at_once_with_retries_left() {
    let job = executing(3).fail_permanently("syntax error in request", t0());
    assert_eq!(job.status(), Status::Failed);
    assert_eq!(job.data().retry_count, 1);
    assert_eq!(job.state().error, "syntax error in request");
    assert_eq!(job.state().started_at, Some(t0()));
}

#[test]
fn an_expired_lease_counts_as_a_failure_and_names_the_worker() {
    let outcome = executing(3).expire_lease(&RetryPolicy::default(), t0() + secs(31));
    let FailOutcome::Retrying(job) = outcome else { panic!("retries were left") };
    assert_eq!(job.data().retry_count, 1);
    let error = job.state().last_error.clone().expect("an error is kept");
    assert!(error.contains("worker-a"), "{error}");

    let outcome = executing(0).expire_lease(&RetryPolicy::default(), t0() + secs(31));
    assert!(matches!(outcome, FailOutcome::Failed(_)));
}

#[test]
fn release_spends_no_retry_but_keeps_the_attempt() {
    let job = executing(3).release(t0() + secs(3));
    assert_eq!(job.data().retry_count, 0);
    assert_eq!(job.attempt(), 1);
    assert_eq!(job.data().run_at, t0() + secs(3));
    let again = job.claim(worker(), secs(30), t0() + secs(3));
    assert_eq!(again.attempt(), 2, "the fencing token never goes back");
}

#[test]
fn cancel_fails_a_pending_job_without_spending_a_retry() {
    let job = pending(3).cancel("learner withdrew", t0());
    assert_eq!(job.state().error, "learner withdrew");
    assert_eq!(job.state().started_at, None);
    assert_eq!(job.data().retry_count, 0);
}

#[test]
fn requeue_gives_a_fresh_budget_and_keeps_the_last_error() {
    let failed: Job<Failed> = executing(0).fail_permanently("bad", t0());
    let job = failed.requeue(t0() + secs(10));
    assert_eq!(job.data().retry_count, 0);
    assert_eq!(job.data().run_at, t0() + secs(10));
    assert_eq!(job.state().last_error.as_deref(), Some("bad"));
    assert_eq!(job.attempt(), 1);
}

#[test]
fn error_messages_are_made_storable() {
    let job = executing(3).fail_permanently("nul\0inside", t0());
    assert_eq!(job.state().error, "nulinside");
    let job = executing(3).fail_permanently("   ", t0());
    assert_eq!(job.state().error, "unknown error");
    let long = "x".repeat(greenlight_core::MAX_ERROR_CHARS + 10);
    let job = executing(3).fail_permanently(&long, t0());
    assert_eq!(job.state().error.chars().count(), greenlight_core::MAX_ERROR_CHARS);
}

#[test]
fn any_job_narrows_to_its_own_state_only() {
    let any = executing(3).into_any();
    assert_eq!(any.status(), Status::Executing);
    let error = Job::<Pending>::try_from(any.clone()).expect_err("it is executing");
    assert!(matches!(
        error,
        Error::WrongState { expected: Status::Pending, actual: Status::Executing, .. }
    ));
    assert_eq!(
        error.to_string(),
        format!("job {} is executing, but the operation needs it pending", any.id())
    );
    let job: Job<Executing> = any.try_into().expect("it is executing");
    assert_eq!(job.attempt(), 1);
}

#[test]
fn records_breaking_the_state_rules_are_refused() {
    let mut record = executing(3).into_any().to_record();
    record.lease_expires_at = None;
    let error = AnyJob::try_from(record).expect_err("an executing row needs a lease");
    assert!(error.to_string().contains("lease_expires_at"), "{error}");

    let mut record: JobRecord = executing(3).complete(json!(1), t0()).into_any().to_record();
    record.result_payload = None;
    assert!(AnyJob::try_from(record).is_err());

    let mut record = pending(3).cancel("x", t0()).into_any().to_record();
    record.error_message = None;
    assert!(AnyJob::try_from(record).is_err());
}

#[test]
fn new_job_validation_names_the_field() {
    let learner = LearnerId::random();
    let cases: Vec<(greenlight_core::NewJobBuilder, &str)> = vec![
        (NewJob::builder(learner, json!(42)), "request_payload"),
        (NewJob::builder(learner, json!("code")), "request_payload"),
        (NewJob::builder(learner, json!(null)), "request_payload"),
        (NewJob::builder(learner, json!({"code": "a\u{0}b"})), "request_payload"),
        (NewJob::builder(learner, json!({})).max_retries(-1), "max_retries"),
        (NewJob::builder(learner, json!({})).max_retries(101), "max_retries"),
        (NewJob::builder(learner, json!({})).execution_id("e".repeat(101)), "execution_id"),
        (NewJob::builder(learner, json!({})).execution_id(""), "execution_id"),
        (NewJob::builder(learner, json!({})).idempotency_key("k\0"), "idempotency_key"),
    ];
    for (builder, field) in cases {
        match builder.build() {
            Err(Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    let ok = NewJob::builder(learner, json!([1, 2])).execution_id("e".repeat(100)).build();
    assert!(ok.is_ok());
}

#[test]
fn payload_limits_bound_size_and_depth() {
    let limits = greenlight_core::PayloadLimits { max_bytes: 64, max_depth: 3 };
    let big = json!({"code": "x".repeat(100)});
    let error = limits.check_request(&big).expect_err("too big");
    assert!(error.to_string().contains("bytes"), "{error}");
    let deep = json!({"a": {"b": {"c": {}}}});
    let error = limits.check_request(&deep).expect_err("too deep");
    assert!(error.to_string().contains("deeper"), "{error}");
    assert!(limits.check_request(&json!({"a": {"b": {}}})).is_ok());
}

#[test]
fn new_jobs_compare_by_what_they_ask_not_by_the_limits_they_were_checked_against() {
    let learner = LearnerId::random();
    let build = |limits: greenlight_core::PayloadLimits| {
        NewJob::builder(learner, json!({"code": "print(1)"})).priority(3).limits(limits).build()
    };
    let loose = build(greenlight_core::PayloadLimits::default()).expect("valid");
    let tight =
        build(greenlight_core::PayloadLimits { max_bytes: 64, max_depth: 3 }).expect("valid");
    assert_eq!(loose, tight);
    let other = NewJob::builder(learner, json!({"code": "print(1)"})).priority(4).build();
    assert_ne!(loose, other.expect("valid"));
}

#[test]
fn retry_policy_rejects_nonsense() {
    assert!(RetryPolicy::new(Duration::ZERO, 2.0, secs(1), 0.1).is_err());
    assert!(RetryPolicy::new(secs(1), 0.5, secs(10), 0.1).is_err());
    assert!(RetryPolicy::new(secs(1), f64::NAN, secs(10), 0.1).is_err());
    assert!(RetryPolicy::new(secs(10), 2.0, secs(1), 0.1).is_err());
    assert!(RetryPolicy::new(secs(1), 2.0, secs(10), 1.5).is_err());
    assert!(RetryPolicy::new(secs(1), 2.0, secs(10), 1.0).is_ok());
}

#[test]
fn statuses_parse_only_their_four_forms() {
    for status in Status::ALL {
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
    }
    for bad in ["", "Pending", "done", "pending ", "bogus"] {
        assert!(bad.parse::<Status>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn ids_parse_with_a_clear_error() {
    let error = "not-a-uuid".parse::<LearnerId>().expect_err("not a uuid");
    assert_eq!(error.to_string(), "invalid learner_id: \"not-a-uuid\" is not a UUID");
    let id = JobId::random();
    assert_eq!(id.to_string().parse::<JobId>().expect("round trip"), id);
}

#[test]
fn only_unavailable_is_retryable() {
    assert!(Error::unavailable("down").is_retryable());
    let not_retryable = [
        Error::NotFound { id: JobId::random() },
        Error::LeaseLost { id: JobId::random(), attempt: 1 },
        Error::invalid("x", "y"),
        Error::storage("z"),
        Error::DuplicateExecutionId { execution_id: "e".into() },
    ];
    for error in not_retryable {
        assert!(!error.is_retryable(), "{error}");
    }
}

#[test]
fn huge_durations_saturate_instead_of_panicking() {
    let job = pending(3).claim(worker(), Duration::MAX, t0());
    assert_eq!(job.state().lease_expires_at, DateTime::<Utc>::MAX_UTC);
}
