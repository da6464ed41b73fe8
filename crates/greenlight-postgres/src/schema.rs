//! The `greenlight_queue` table as diesel sees it, written by hand from the
//! migrations (`diesel print-schema` against a migrated database prints the
//! same columns). `learning_atoms` belongs to the host platform and the store
//! never queries it, so it is not declared here.

diesel::table! {
    /// Code-execution jobs, one row per job.
    greenlight_queue (id) {
        /// The job's id.
        id -> Uuid,
        /// The learning atom the job runs, if any.
        atom_id -> Nullable<Uuid>,
        /// The learner the job belongs to.
        learner_id -> Uuid,
        /// The id Greenlight gave the execution.
        #[max_length = 100]
        execution_id -> Nullable<Varchar>,
        /// pending, executing, complete or failed.
        #[max_length = 20]
        status -> Varchar,
        /// What to ask Greenlight.
        request_payload -> Jsonb,
        /// What Greenlight returned.
        result_payload -> Nullable<Jsonb>,
        /// When the job was enqueued.
        queued_at -> Timestamptz,
        /// When the current or last attempt started.
        started_at -> Nullable<Timestamptz>,
        /// When the job completed or failed for good.
        completed_at -> Nullable<Timestamptz>,
        /// Why the last attempt failed.
        error_message -> Nullable<Text>,
        /// How many attempts failed.
        retry_count -> Int4,
        /// How many failed attempts are retried.
        max_retries -> Int4,
        /// When the job may next be claimed.
        run_at -> Timestamptz,
        /// How many times the job was claimed: the fencing token.
        attempt -> Int4,
        /// When the current lease runs out.
        lease_expires_at -> Nullable<Timestamptz>,
        /// Who holds the lease.
        worker_id -> Nullable<Text>,
        /// Higher runs first.
        priority -> Int4,
        /// The caller's idempotency key.
        idempotency_key -> Nullable<Text>,
    }
}
