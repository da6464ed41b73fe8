//! Micro-benchmarks of the core's pure functions: the transitions a job
//! goes through on its way to complete or failed, and the retry policy.
//! They measure the library's own share of a job's cost, with no store
//! and no I/O, so a regression here shows up undiluted by the database.
//!
//! ```sh
//! cargo bench -p greenlight-core --bench core
//! ```

#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use greenlight_core::chrono::Utc;
use greenlight_core::{
    AnyJob, FailOutcome, Jitter, Job, JobId, LearnerId, NewJob, Pending, RetryPolicy, WorkerId,
};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

fn new_job() -> NewJob {
    NewJob::builder(LearnerId::random(), json!({"language": "python", "code": "print(1)"}))
        .build()
        .expect("a valid payload")
}

fn pending() -> Job<Pending> {
    new_job().into_pending(JobId::random(), Utc::now())
}

fn transitions(c: &mut Criterion) {
    let worker = WorkerId::new("bench").expect("a valid worker id");
    let policy = RetryPolicy::default();
    let now = Utc::now();
    let result = json!({"stdout": "1\n"});

    let mut group = c.benchmark_group("transitions");
    group.bench_function("build a new job", |b| b.iter(new_job));
    group.bench_function("claim then complete", |b| {
        b.iter_batched(
            pending,
            |job| {
                let job = job.claim(worker.clone(), LEASE, now);
                black_box(job.complete(result.clone(), now))
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("claim then fail (retry)", |b| {
        b.iter_batched(
            pending,
            |job| {
                let job = job.claim(worker.clone(), LEASE, now);
                match job.fail("greenlight timed out", &policy, now) {
                    FailOutcome::Retrying(job) => black_box(job.into_any()),
                    FailOutcome::Failed(job) => black_box(job.into_any()),
                }
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("heartbeat", |b| {
        b.iter_batched(
            || pending().claim(worker.clone(), LEASE, now),
            |job| black_box(job.heartbeat(LEASE, now)),
            criterion::BatchSize::SmallInput,
        );
    });
    // A store reads rows back as records and narrows them to typed jobs.
    group.bench_function("record to typed job", |b| {
        let record = pending().claim(worker.clone(), LEASE, now).into_any().to_record();
        b.iter(|| black_box(AnyJob::try_from(record.clone())));
    });
    group.finish();
}

fn retry_policy(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let id = JobId::random();

    let mut group = c.benchmark_group("retry policy");
    group.bench_function("delay, failure 3", |b| {
        b.iter(|| black_box(policy.delay(black_box(3), Jitter::for_attempt(id, 4))));
    });
    // Past the cap the exponent stops mattering; this must stay as cheap.
    group.bench_function("delay, failure 60 (capped)", |b| {
        b.iter(|| black_box(policy.delay(black_box(60), Jitter::for_attempt(id, 61))));
    });
    group.bench_function("jitter for an attempt", |b| {
        b.iter(|| black_box(Jitter::for_attempt(black_box(id), black_box(7))));
    });
    group.finish();
}

criterion_group!(benches, transitions, retry_policy);
criterion_main!(benches);
