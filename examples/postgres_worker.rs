//! A domain layer wiring its executor to the PostgreSQL store. Run it with
//! `cargo run --example postgres_worker --features postgres,worker`.
use greenlight::worker::{ExecuteError, Executor, JobContext, Worker, shutdown_signal};
use greenlight::{Executing, ExecutionId, Job, LearnerId, NewJob, Store, postgres::PgStore};
use serde_json::{Value, json};
use std::sync::Arc;

/// Submits a job's code to Greenlight once, recording the execution id at
/// once, so a worker that rescues the job resumes instead of resubmitting.
struct RunOnGreenlight;

#[greenlight::async_trait]
impl Executor for RunOnGreenlight {
    async fn execute(&self, job: &Job<Executing>, cx: &JobContext) -> Result<Value, ExecuteError> {
        if let Some(id) = cx.execution_id() {
            return Ok(json!({"resumed": id.as_str()})); // poll the earlier submission
        }
        let id = ExecutionId::new(format!("gl-{}", job.id())).map_err(ExecuteError::permanent)?;
        cx.record_execution_id(id.clone()).await.map_err(ExecuteError::retryable)?;
        Ok(json!({"execution_id": id.as_str(), "stdout": "1\n"}))
    }
}

#[tokio::main]
async fn main() -> Result<(), greenlight::Error> {
    let default = "postgres://postgres@127.0.0.1:5432/postgres";
    let store = Arc::new(PgStore::new(std::env::var("DATABASE_URL").unwrap_or(default.into()))?);
    store.migrate().await?;
    let job = NewJob::builder(LearnerId::random(), json!({"code": "print(1)"})).build()?;
    store.enqueue(job).await?;

    // Drain the queue and stop, or stop early on Ctrl-C / SIGTERM.
    let worker = Worker::builder(store, RunOnGreenlight).concurrency(8).drain(true).build()?;
    let metrics = worker.run_until(shutdown_signal()).await;
    println!("completed {}, failed {}", metrics.completed, metrics.failed);
    Ok(())
}
