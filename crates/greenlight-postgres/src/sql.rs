//! The statements the store runs, in one place so their shapes can be read
//! side by side.
//!
//! Conventions:
//! - `$1` is the injected clock's time, or NULL, wherever time is read; every statement
//!   reads "now" as `COALESCE($1, now())` once, in a `clock` CTE or inline,
//!   so that without an injected clock the database's `now()` decides every
//!   comparison (clock skew between workers cannot expire a lease early),
//!   and with one the conformance suite drives time without sleeping.
//! - Every write to an executing row is guarded by `status = 'executing'
//!   AND attempt = $held`: the row count tells success from a lost lease.
//! - No statement reads a row and then writes it in a second statement
//!   without repeating that guard.
//! - Each text is constant, so each connection prepares it once and keeps
//!   it (see [`Statement`]): one round trip per call instead of two.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement whose text never changes.
///
/// diesel's `sql_query` marks its statements unsafe to cache, since its text
/// is often built at run time; then every call prepares the statement anew,
/// a second round trip. These texts are constants, so caching them per
/// connection is safe. Binds go on as with `sql_query`: `$1`, `$2`, ... in
/// the order of the `bind` calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Statement(&'static str);

impl Statement {
    /// The SQL text.
    #[cfg(test)]
    pub(crate) fn text(self) -> &'static str {
        self.0
    }

    /// The statement with its first bind parameter, `$1`; further
    /// parameters follow with `.bind`, in order.
    pub(crate) fn bind<ST, V>(self, value: V) -> Bound<Self, V, ST> {
        Bound { query: self, value, sql_type: PhantomData }
    }
}

/// A statement with its bind parameters so far, the last one `value`.
#[derive(Debug)]
pub(crate) struct Bound<Q, V, ST> {
    query: Q,
    value: V,
    sql_type: PhantomData<ST>,
}

impl<Q, V, ST> Bound<Q, V, ST> {
    /// The next bind parameter.
    pub(crate) fn bind<ST2, V2>(self, value: V2) -> Bound<Self, V2, ST2> {
        Bound { query: self, value, sql_type: PhantomData }
    }

    /// The statement with its rows typed as `Row` (a tuple of SQL types, in
    /// the order of its `RETURNING` list), so that diesel reads them by
    /// position into a `Queryable` type instead of by name.
    pub(crate) fn rows<Row>(self) -> Typed<Self, Row> {
        Typed { query: self, row: PhantomData }
    }
}

/// A bound statement whose rows have the SQL types `Row`, in order.
#[derive(Debug)]
pub(crate) struct Typed<Q, Row> {
    query: Q,
    row: PhantomData<Row>,
}

impl<Q: QueryFragment<Pg>, Row> QueryFragment<Pg> for Typed<Q, Row> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        self.query.walk_ast(out)
    }
}

impl<Q, Row> QueryId for Typed<Q, Row> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, Row> Query for Typed<Q, Row> {
    type SqlType = Row;
}

impl<Q, Row> diesel::query_dsl::RunQueryDslSupport for Typed<Q, Row> {}

impl<Q, V, ST> QueryFragment<Pg> for Bound<Q, V, ST>
where
    Q: QueryFragment<Pg>,
    V: ToSql<ST, Pg>,
    Pg: HasSqlType<ST>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        // The text already holds the `$n` placeholders, so only the value is
        // pushed, as diesel's own `sql_query` binds do. This method is public
        // under diesel's third-party-backend feature, which diesel-async
        // turns on for itself (and pins diesel to ~2.4 for).
        out.push_bind_param_value_only(&self.value)
    }
}

impl<Q, V, ST> QueryId for Bound<Q, V, ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, V, ST> Query for Bound<Q, V, ST> {
    type SqlType = Untyped;
}

// Opts in to `load`, `get_result` and `execute`, as diesel's own query types
// do.
impl<Q, V, ST> diesel::query_dsl::RunQueryDslSupport for Bound<Q, V, ST> {}

impl QueryFragment<Pg> for Statement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

impl QueryId for Statement {
    // No static id: the statement cache keys these by their text and the
    // types of their binds, which is exactly what tells them apart.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement {
    type SqlType = Untyped;
}

/// Inserts a batch in one statement, skipping keys already used, and sends
/// one NOTIFY for the whole statement when anything was inserted.
///
/// `unnest ... WITH ORDINALITY` turns the parallel arrays into rows and
/// keeps the input order, so that of two rows with the same idempotency key
/// the first is inserted and the second meets the conflict. `ON CONFLICT ...
/// DO NOTHING` (not DO UPDATE) allows that second row in the same command.
/// The `notified` CTE runs `pg_notify` once, guarded by EXISTS so that a
/// batch that inserted nothing wakes nobody; the final WHERE references it
/// in a subquery that PostgreSQL evaluates once (an `InitPlan`), never per row.
///
/// Only the id and the two times the database decided come back: the store
/// builds each job from its request and these, so a batch's payloads do
/// not travel back over the wire and are not parsed a second time.
pub(crate) const ENQUEUE: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now),
input AS (
    SELECT *
    FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WITH ORDINALITY
        AS input(id, atom_id, learner_id, execution_id, request_payload, max_retries,
                 priority, run_at, delay, idempotency_key, ordinal)
),
inserted AS (
    INSERT INTO greenlight_queue
        (id, atom_id, learner_id, execution_id, status, request_payload, queued_at,
         run_at, retry_count, max_retries, attempt, priority, idempotency_key)
    SELECT input.id, input.atom_id, input.learner_id, input.execution_id, 'pending',
           input.request_payload, clock.now,
           COALESCE(input.run_at, clock.now + COALESCE(input.delay, interval '0')),
           0, input.max_retries, 0, input.priority, input.idempotency_key
    FROM input CROSS JOIN clock
    ORDER BY input.ordinal
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, queued_at, run_at
),
notified AS (
    SELECT pg_notify('greenlight_queue_ready', '') WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT inserted.* FROM inserted WHERE (SELECT count(*) FROM notified) >= 0",
);

/// Inserts a batch of plain jobs: to run now, with no idempotency key and
/// no execution id, by far the common case. Without keys there is no
/// conflict to skip and no input order to keep, and every row gets the
/// same `queued_at` and `run_at`, the database's time, so one row comes
/// back: that time and how many rows went in. One NOTIFY, as `ENQUEUE`.
pub(crate) const ENQUEUE_PLAIN: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now),
inserted AS (
    INSERT INTO greenlight_queue
        (id, atom_id, learner_id, status, request_payload, queued_at, run_at,
         retry_count, max_retries, attempt, priority)
    SELECT input.id, input.atom_id, input.learner_id, 'pending', input.request_payload,
           clock.now, clock.now, 0, input.max_retries, 0, input.priority
    FROM unnest($2, $3, $4, $5, $6, $7)
        AS input(id, atom_id, learner_id, request_payload, max_retries, priority)
    CROSS JOIN clock
    RETURNING 1
),
notified AS (
    SELECT pg_notify('greenlight_queue_ready', '') WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT clock.now AS queued_at, (SELECT count(*) FROM inserted) AS inserted
FROM clock
WHERE (SELECT count(*) FROM notified) >= 0",
);

/// The jobs holding these idempotency keys, for the answers of an enqueue
/// whose keys were already used.
pub(crate) const BY_IDEMPOTENCY_KEYS: Statement = Statement(
    "\
SELECT * FROM greenlight_queue WHERE idempotency_key = ANY($1)",
);

/// Claims in one statement. The CTE picks ready rows in claim order and
/// locks them, skipping rows another claimer has locked (SKIP LOCKED: no
/// waiting, and never the same row to two claimers); the UPDATE marks them
/// executing with the next attempt and a lease. A row that another claim
/// changed after this statement's snapshot is re-checked by FOR UPDATE
/// against `status = 'pending'`, so it cannot be claimed twice.
/// `idx_greenlight_queue_claim` serves the CTE in exactly this order.
///
/// The UPDATE takes its rows as `id = ANY(ARRAY(...))`, a primary-key
/// lookup whatever the batch size. Written as a join with the CTE, the
/// planner switched at about 800 rows to a hash join that reads the whole
/// table (seen: a 2,000-row claim on 100,000 rows spent 76 ms instead of
/// 53 ms), and a table that keeps its finished jobs only grows.
///
/// The columns come back in the order of `row::ClaimedRow`, which reads
/// them by position; what the claimer knows already (status, holder) or
/// a claimed row cannot have (result, completion time) stays behind.
pub(crate) const CLAIM: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now),
ready AS (
    SELECT id FROM greenlight_queue
    WHERE status = 'pending' AND run_at <= (SELECT now FROM clock)
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE greenlight_queue AS job
SET status = 'executing',
    attempt = job.attempt + 1,
    started_at = clock.now,
    worker_id = $3,
    lease_expires_at = clock.now + $4
FROM clock
WHERE job.id = ANY(ARRAY(SELECT id FROM ready))
RETURNING job.id, job.atom_id, job.learner_id, job.execution_id, job.request_payload,
    job.queued_at, job.started_at, job.error_message, job.retry_count, job.max_retries,
    job.run_at, job.attempt, job.lease_expires_at, job.priority, job.idempotency_key",
);

/// Which of these ids name a stored job: explains a guarded write that
/// changed nothing (gone, or held no more).
pub(crate) const EXISTING: Statement =
    Statement("SELECT id FROM greenlight_queue WHERE id = ANY($1)");

/// Extends a held lease.
pub(crate) const HEARTBEAT: Statement = Statement(
    "\
UPDATE greenlight_queue
SET lease_expires_at = COALESCE($1, now()) + $2
WHERE id = $3 AND status = 'executing' AND attempt = $4
RETURNING *",
);

/// Stores the execution id of a held job.
pub(crate) const RECORD_EXECUTION_ID: Statement = Statement(
    "\
UPDATE greenlight_queue
SET execution_id = $1
WHERE id = $2 AND status = 'executing' AND attempt = $3
RETURNING *",
);

/// Completes held jobs, one or many, in one statement. The lease, holder
/// and last error go, as a complete job has none of them.
///
/// Only what the caller's copy of a job may lack comes back: the time of
/// completion, and the execution id (recorded, perhaps, through another
/// handle on the job). Returning whole rows would send every request and
/// result back over the wire to be parsed again, for nothing.
///
/// `job.id = ANY($2)` repeats the join condition so that the planner finds
/// the rows by primary key. Without it, it hashed every executing row
/// (found through the status index) to join against the batch: under
/// load, twice the batch and more, a fifth of the statement's time.
pub(crate) const COMPLETE: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now),
input AS (SELECT * FROM unnest($2, $3, $4) AS input(id, attempt, result))
UPDATE greenlight_queue AS job
SET status = 'complete',
    result_payload = input.result,
    completed_at = clock.now,
    error_message = NULL,
    lease_expires_at = NULL,
    worker_id = NULL
FROM input, clock
WHERE job.id = ANY($2)
  AND job.id = input.id AND job.status = 'executing' AND job.attempt = input.attempt
RETURNING job.id, job.completed_at, job.execution_id",
);

/// Records failed attempts of held jobs and decides, in SQL, retry or fail:
/// failure number `retry_count + 1` is retried when it is at most
/// `max_retries` and the failure is retryable, exactly as the core's
/// `Job::fail` and `Job::fail_permanently` decide. The SET expressions all
/// read the row as it was before this UPDATE, so `job.retry_count + 1` is
/// this failure's number in every one of them.
///
/// The delay is the core's retry policy, computed in Rust per job from the
/// same retry count and attempt and passed in; the guard on `retry_count`
/// makes sure the delay was computed for the row being written. Used by
/// `fail` (one job, `$8` false) and by the rescuer (many, `$8` true), which
/// repeats the expiry check so that a heartbeat that got in first wins.
pub(crate) const FAIL: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now),
input AS (
    SELECT * FROM unnest($2, $3, $4, $5, $6, $7)
        AS input(id, attempt, retry_count, message, retryable, delay)
)
UPDATE greenlight_queue AS job
SET retry_count = job.retry_count + 1,
    status = CASE WHEN input.retryable AND job.retry_count + 1 <= job.max_retries
                  THEN 'pending' ELSE 'failed' END,
    run_at = CASE WHEN input.retryable AND job.retry_count + 1 <= job.max_retries
                  THEN clock.now + input.delay ELSE job.run_at END,
    started_at = CASE WHEN input.retryable AND job.retry_count + 1 <= job.max_retries
                      THEN NULL ELSE job.started_at END,
    completed_at = CASE WHEN input.retryable AND job.retry_count + 1 <= job.max_retries
                        THEN NULL ELSE clock.now END,
    error_message = input.message,
    lease_expires_at = NULL,
    worker_id = NULL
FROM input, clock
WHERE job.id = input.id
  AND job.status = 'executing'
  AND job.attempt = input.attempt
  AND job.retry_count = input.retry_count
  AND (NOT $8 OR job.lease_expires_at <= clock.now)
RETURNING job.*",
);

/// Executing jobs whose lease has run out, oldest expiry first, with what
/// the rescuer needs to compute each one's retry delay and message.
pub(crate) const EXPIRED: Statement = Statement(
    "\
SELECT id, attempt, retry_count, worker_id
FROM greenlight_queue
WHERE status = 'executing' AND lease_expires_at <= COALESCE($1, now())
ORDER BY lease_expires_at
LIMIT $2",
);

/// Gives a held job back unrun: pending at once, no retry spent.
pub(crate) const RELEASE: Statement = Statement(
    "\
UPDATE greenlight_queue
SET status = 'pending',
    run_at = COALESCE($1, now()),
    started_at = NULL,
    lease_expires_at = NULL,
    worker_id = NULL
WHERE id = $2 AND status = 'executing' AND attempt = $3
RETURNING *",
);

/// Cancels a pending job.
pub(crate) const CANCEL: Statement = Statement(
    "\
UPDATE greenlight_queue
SET status = 'failed',
    error_message = $3,
    completed_at = COALESCE($1, now()),
    started_at = NULL
WHERE id = $2 AND status = 'pending'
RETURNING *",
);

/// Puts a failed job back to pending with a fresh retry budget; the error
/// stays as the record of the last failure.
pub(crate) const REQUEUE: Statement = Statement(
    "\
UPDATE greenlight_queue
SET status = 'pending',
    retry_count = 0,
    run_at = COALESCE($1, now()),
    started_at = NULL,
    completed_at = NULL,
    result_payload = NULL
WHERE id = $2 AND status = 'failed'
RETURNING *",
);

/// Every count of `Stats` in one pass over the table. The LEFT JOIN from
/// `clock` makes an empty table give one row of zeros.
pub(crate) const STATS: Statement = Statement(
    "\
WITH clock AS (SELECT COALESCE($1, now()) AS now)
SELECT count(*) FILTER (WHERE job.status = 'pending') AS pending,
       count(*) FILTER (WHERE job.status = 'pending' AND job.run_at <= clock.now) AS ready,
       count(*) FILTER (WHERE job.status = 'executing') AS executing,
       count(*) FILTER (WHERE job.status = 'executing'
                          AND job.lease_expires_at <= clock.now) AS expired_leases,
       count(*) FILTER (WHERE job.status = 'complete') AS complete,
       count(*) FILTER (WHERE job.status = 'failed') AS failed,
       min(job.run_at) FILTER (WHERE job.status = 'pending'
                                 AND job.run_at <= clock.now) AS oldest_ready_run_at,
       min(job.run_at) FILTER (WHERE job.status = 'pending'
                                 AND job.run_at > clock.now) AS next_scheduled_run_at,
       clock.now AS now
FROM clock LEFT JOIN greenlight_queue AS job ON true
GROUP BY clock.now",
);

/// Whether any job is executing, or pending with `run_at` at most `$2`
/// from now: two index probes that stop at the first row found, where
/// `STATS` reads the whole table.
///
/// The pending probe is a scalar subquery ordered as the claim index is,
/// not an EXISTS: PostgreSQL drops the ORDER BY from an EXISTS, and with
/// statistics from a moment when most rows were pending (a backlog just
/// loaded) it then prefers a sequential scan that reads every finished job
/// before it gives up.
pub(crate) const HAS_WORK: Statement = Statement(
    "\
SELECT EXISTS (SELECT 1 FROM greenlight_queue WHERE status = 'executing')
    OR (SELECT id FROM greenlight_queue
        WHERE status = 'pending' AND run_at <= COALESCE($1, now()) + $2
        ORDER BY priority DESC, run_at, id
        LIMIT 1) IS NOT NULL AS has_work",
);

/// Deletes at most `$4` finished jobs. The subquery bounds the batch, and
/// SKIP LOCKED keeps two pruners (or a pruner and an operator) from waiting
/// on each other's rows.
pub(crate) const PRUNE: Statement = Statement(
    "\
DELETE FROM greenlight_queue
WHERE id IN (
    SELECT id FROM greenlight_queue
    WHERE status = $2 AND completed_at < COALESCE($1, now()) - $3
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)",
);

/// The privileges among `$1` that the connected role lacks on the
/// queue's table.
pub(crate) const MISSING_PRIVILEGES: Statement = Statement(
    "\
SELECT privilege FROM unnest($1::text[]) AS privilege
WHERE NOT has_table_privilege('greenlight_queue', privilege)",
);

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::query_builder::QueryFragment;
    use diesel::sql_types::{BigInt, Nullable, Timestamptz};

    #[test]
    fn constant_statements_may_stay_prepared() {
        let prune = super::PRUNE
            .bind::<Nullable<Timestamptz>, _>(None::<chrono::DateTime<chrono::Utc>>)
            .bind::<BigInt, _>(5_i64);
        assert_eq!(prune.is_safe_to_cache_prepared(&Pg).ok(), Some(true));
        // What `sql_query` would have said, and why these are not built on it.
        let plain = diesel::sql_query(super::PRUNE.text()).bind::<BigInt, _>(5_i64);
        assert_eq!(plain.is_safe_to_cache_prepared(&Pg).ok(), Some(false));
    }

    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }

    /// The plan of `statement`, one line per plan node.
    async fn explain(conn: &mut diesel_async::AsyncPgConnection, statement: &str) -> String {
        use diesel_async::RunQueryDsl;

        let plan: Vec<PlanLine> =
            diesel::sql_query(format!("EXPLAIN {statement}")).load(conn).await.expect("explain");
        let plan: Vec<String> = plan.into_iter().map(|line| line.line).collect();
        plan.join("\n")
    }

    /// A fresh database holding 20,000 ready jobs, analysed.
    async fn analysed_backlog()
    -> (greenlight_testkit::postgres::TestDb, diesel_async::AsyncPgConnection) {
        use greenlight_testkit::postgres::{TestDb, execute, insert_ready_jobs};

        let db = TestDb::new().await;
        let mut conn = db.connect().await;
        assert_eq!(insert_ready_jobs(&mut conn, 20_000).await.expect("load"), 20_000);
        execute(&mut conn, "ANALYZE greenlight_queue").await.expect("analyze");
        (db, conn)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_claim_updates_its_rows_found_by_primary_key() {
        let (_db, mut conn) = analysed_backlog().await;

        // A large claim: a quarter of the ready rows.
        let claim = super::CLAIM
            .text()
            .replace("$1", "NULL::timestamptz")
            .replace("$2", "5000")
            .replace("$3", "'w'")
            .replace("$4", "interval '30 seconds'");
        let plan = explain(&mut conn, &claim).await;
        // How the ready rows are picked is the planner's call (a quarter of
        // the table may well be read in full); the rows it updates are
        // fetched by id, never by reading the table (`job`) again.
        assert!(
            !plan.contains("Seq Scan on greenlight_queue job"),
            "the update reads the whole table:\n{plan}"
        );
        assert!(plan.contains("Index Cond: (id = ANY"), "no primary-key lookup:\n{plan}");
    }

    /// Statistics taken while a backlog was loaded say that nearly every
    /// row is pending; once the backlog is done they are wrong, and the
    /// drain check must not trust them into reading every finished job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_drain_check_probes_indexes_even_with_stale_statistics() {
        use greenlight_testkit::postgres::execute;

        let (_db, mut conn) = analysed_backlog().await;
        execute(
            &mut conn,
            "UPDATE greenlight_queue SET status = 'complete', completed_at = now(), \
             result_payload = '{}'",
        )
        .await
        .expect("finish the backlog");

        let check = super::HAS_WORK
            .text()
            .replace("$1", "NULL::timestamptz")
            .replace("$2", "interval '10 minutes'");
        let plan = explain(&mut conn, &check).await;
        assert!(!plan.contains("Seq Scan"), "the drain check reads the whole table:\n{plan}");
        assert!(plan.contains("idx_greenlight_queue_claim"), "no claim-index probe:\n{plan}");
    }
}
