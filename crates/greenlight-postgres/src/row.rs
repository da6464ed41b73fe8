//! Rows of `greenlight_queue` and their way into the core's types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use greenlight_core::{
    AnyJob, AtomId, Error, ExecutionId, IdempotencyKey, JobId, JobRecord, LearnerId, Payload,
    Result, Status, WorkerId,
};
use serde_json::Value;
use uuid::Uuid;

use crate::schema::greenlight_queue;

/// One row, read either by a diesel query (`Selectable`) or by raw SQL whose
/// `RETURNING` names the columns (`QueryableByName`).
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = greenlight_queue, check_for_backend(diesel::pg::Pg))]
pub(crate) struct JobRow {
    id: Uuid,
    atom_id: Option<Uuid>,
    learner_id: Uuid,
    execution_id: Option<String>,
    status: String,
    request_payload: Value,
    result_payload: Option<Value>,
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error_message: Option<String>,
    retry_count: i32,
    max_retries: i32,
    run_at: DateTime<Utc>,
    attempt: i32,
    lease_expires_at: Option<DateTime<Utc>>,
    worker_id: Option<String>,
    priority: i32,
    idempotency_key: Option<String>,
}

impl JobRow {
    /// The flat record. A value the core would refuse (a negative count, an
    /// empty worker id written by hand) is a broken row: a storage error
    /// naming the job and the column, never a panic.
    pub(crate) fn into_record(self) -> Result<JobRecord> {
        let id = JobId(self.id);
        let broken = |column: &str, why: &dyn std::fmt::Display| {
            Error::storage(format!("job {id} has an invalid {column}: {why}"))
        };
        let count = |column: &str, value: i32| {
            u32::try_from(value).map_err(|_| broken(column, &format!("{value} is negative")))
        };
        let text = |column: &str, error: Error| broken(column, &error);

        Ok(JobRecord {
            id,
            atom_id: self.atom_id.map(AtomId),
            learner_id: LearnerId(self.learner_id),
            execution_id: self
                .execution_id
                .map(ExecutionId::new)
                .transpose()
                .map_err(|error| text("execution_id", error))?,
            status: self.status.parse::<Status>().map_err(|error| broken("status", &error))?,
            request_payload: self.request_payload.into(),
            result_payload: self.result_payload.map(Payload::from),
            queued_at: self.queued_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            error_message: self.error_message,
            retry_count: count("retry_count", self.retry_count)?,
            max_retries: count("max_retries", self.max_retries)?,
            run_at: self.run_at,
            attempt: count("attempt", self.attempt)?,
            lease_expires_at: self.lease_expires_at,
            worker_id: self
                .worker_id
                .map(WorkerId::new)
                .transpose()
                .map_err(|error| text("worker_id", error))?,
            priority: self.priority,
            idempotency_key: self
                .idempotency_key
                .map(IdempotencyKey::new)
                .transpose()
                .map_err(|error| text("idempotency_key", error))?,
        })
    }

    /// The typed job, checked against the state rules by the core.
    pub(crate) fn into_job(self) -> Result<AnyJob> {
        AnyJob::try_from(self.into_record()?)
    }
}
