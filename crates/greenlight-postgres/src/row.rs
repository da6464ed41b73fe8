//! Rows of `greenlight_queue` and their way into the core's types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use greenlight_core::{
    AnyJob, AtomId, Error, Executing, ExecutionId, IdempotencyKey, Job, JobId, JobRecord,
    LearnerId, Payload, Result, Status, WorkerId,
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
        Ok(JobRecord {
            id,
            atom_id: self.atom_id.map(AtomId),
            learner_id: LearnerId(self.learner_id),
            execution_id: text(id, "execution_id", self.execution_id, ExecutionId::new)?,
            status: self.status.parse::<Status>().map_err(|error| broken(id, "status", &error))?,
            request_payload: self.request_payload.into(),
            result_payload: self.result_payload.map(Payload::from),
            queued_at: self.queued_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            error_message: self.error_message,
            retry_count: count(id, "retry_count", self.retry_count)?,
            max_retries: count(id, "max_retries", self.max_retries)?,
            run_at: self.run_at,
            attempt: count(id, "attempt", self.attempt)?,
            lease_expires_at: self.lease_expires_at,
            worker_id: text(id, "worker_id", self.worker_id, WorkerId::new)?,
            priority: self.priority,
            idempotency_key: text(
                id,
                "idempotency_key",
                self.idempotency_key,
                IdempotencyKey::new,
            )?,
        })
    }

    /// The typed job, checked against the state rules by the core.
    pub(crate) fn into_job(self) -> Result<AnyJob> {
        AnyJob::try_from(self.into_record()?)
    }
}

/// A column the core would refuse, as a storage error naming the job.
fn broken(id: JobId, column: &str, why: &dyn std::fmt::Display) -> Error {
    Error::storage(format!("job {id} has an invalid {column}: {why}"))
}

/// A count column, which the core keeps unsigned.
fn count(id: JobId, column: &str, value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| broken(id, column, &format!("{value} is negative")))
}

/// A text column the core keeps as a checked type.
fn text<T>(
    id: JobId,
    column: &str,
    value: Option<String>,
    make: impl FnOnce(String) -> Result<T>,
) -> Result<Option<T>> {
    value.map(make).transpose().map_err(|error| broken(id, column, &error))
}

/// What a claim returns of each row, read by position in this order (the
/// claim's `RETURNING` list names the same columns in the same order; see
/// [`ClaimedSqlType`]). The status, the holder and the finished-job
/// columns do not come back: a claimed row is executing, held by the
/// claimer, with no result and no completion time. Reading by position
/// skips the search by name diesel makes for every column of every row
/// otherwise.
#[derive(Debug, Queryable)]
pub(crate) struct ClaimedRow {
    id: Uuid,
    atom_id: Option<Uuid>,
    learner_id: Uuid,
    execution_id: Option<String>,
    request_payload: Value,
    queued_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    error_message: Option<String>,
    retry_count: i32,
    max_retries: i32,
    run_at: DateTime<Utc>,
    attempt: i32,
    lease_expires_at: DateTime<Utc>,
    priority: i32,
    idempotency_key: Option<String>,
}

/// The SQL types of [`ClaimedRow`]'s columns, in its order.
pub(crate) type ClaimedSqlType = (
    SqlUuid,
    Nullable<SqlUuid>,
    SqlUuid,
    Nullable<Text>,
    Jsonb,
    Timestamptz,
    Timestamptz,
    Nullable<Text>,
    Int4,
    Int4,
    Timestamptz,
    Int4,
    Timestamptz,
    Int4,
    Nullable<Text>,
);

impl ClaimedRow {
    /// The job as `worker_id` holds it, checked against the state rules by
    /// the core like any other row.
    pub(crate) fn into_job(self, worker_id: &WorkerId) -> Result<Job<Executing>> {
        let id = JobId(self.id);
        let record = JobRecord {
            id,
            atom_id: self.atom_id.map(AtomId),
            learner_id: LearnerId(self.learner_id),
            execution_id: text(id, "execution_id", self.execution_id, ExecutionId::new)?,
            status: Status::Executing,
            request_payload: self.request_payload.into(),
            result_payload: None,
            queued_at: self.queued_at,
            started_at: Some(self.started_at),
            completed_at: None,
            error_message: self.error_message,
            retry_count: count(id, "retry_count", self.retry_count)?,
            max_retries: count(id, "max_retries", self.max_retries)?,
            run_at: self.run_at,
            attempt: count(id, "attempt", self.attempt)?,
            lease_expires_at: Some(self.lease_expires_at),
            worker_id: Some(worker_id.clone()),
            priority: self.priority,
            idempotency_key: text(
                id,
                "idempotency_key",
                self.idempotency_key,
                IdempotencyKey::new,
            )?,
        };
        Job::<Executing>::try_from(AnyJob::try_from(record)?)
    }
}
