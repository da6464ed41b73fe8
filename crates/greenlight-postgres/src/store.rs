//! [`PgStore`]: the [`Store`] on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::pg::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Int4, Interval, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use greenlight_core::{
    AnyJob, ClaimRequest, Clock, Complete, Enqueued, Error, Executing, ExecutionId, FailOutcome,
    Failed, Failure, Jitter, Job, JobId, JobPage, ListCursor, ListFilter, NewJob, PayloadLimits,
    Pending, PruneRequest, Rescued, Result, RetryPolicy, Schedule, State, Stats, Status, Store,
    Wakeups, WorkerId, lease_expired_message, sanitize_error, truncate_time,
};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Secrets, connection_lost, pool_error, query_error};
use crate::privileges::{Missing, Role};
use crate::row::{ClaimedRow, ClaimedSqlType, JobRow};
use crate::schema::greenlight_queue;
use crate::{listen, sql};

/// How many expired leases one rescue statement takes back; the rescuer
/// repeats until fewer come back, so a backlog is handled in bounded bites
/// that never lock much of the table at once.
const RESCUE_BATCH: i64 = 1_000;

/// How often `cancel` and `requeue` try again when the job changed between
/// their write and the read that explains a refusal.
const STATE_RACE_TRIES: usize = 3;

/// The [`Store`] on PostgreSQL, through diesel-async connections in a
/// deadpool pool.
///
/// Cheap to clone: clones share the pool. Made with [`PgStore::builder`];
/// apply the schema with [`PgStore::migrate`] (or [`crate::migrate`]).
///
/// Without an injected clock the database's `now()` decides every
/// comparison with the current time (lease expiry, `run_at`), so the clocks
/// of worker machines do not matter. With one ([`PgStoreBuilder::clock`]),
/// its time stands where `now()` would, so tests drive time without
/// sleeping.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<AsyncPgConnection>,
    database_url: String,
    secrets: Secrets,
    connect_timeout: Duration,
    policy: RetryPolicy,
    limits: PayloadLimits,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: only its redacted form is shown.
        f.debug_struct("PgStore")
            .field("database_url", &self.inner.secrets.redacted_url())
            .field("max_connections", &self.inner.pool.status().max_size)
            .field("retry_policy", &self.inner.policy)
            .field("payload_limits", &self.inner.limits)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Configures a [`PgStore`]; made by [`PgStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use greenlight_postgres::PgStore;
///
/// let store = PgStore::builder("postgres://postgres@127.0.0.1:5432/postgres")
///     .max_connections(16)
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// // Nothing connects until the first operation.
/// # drop(store);
/// # Ok::<(), greenlight_core::Error>(())
/// ```
#[must_use]
pub struct PgStoreBuilder {
    database_url: String,
    max_connections: usize,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    policy: RetryPolicy,
    limits: PayloadLimits,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreBuilder")
            .field("database_url", &Secrets::from_url(&self.database_url).redacted_url())
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("retry_policy", &self.policy)
            .field("payload_limits", &self.limits)
            .field("clock", &self.clock)
            .finish()
    }
}

impl PgStoreBuilder {
    /// The most connections the pool opens. Default: 10, enough for a
    /// worker's claim loop, heartbeats and completions running side by side;
    /// PostgreSQL's own default limit is 100 for all clients together.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// How long opening one connection may take before the operation fails
    /// as unavailable. Default: 5 s, far above a healthy connect (a few
    /// milliseconds) and short enough that a worker notices a dead server.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an operation waits for a free connection when all are busy.
    /// Default: 30 s; a longer wait means the pool is too small for the
    /// load, which an unavailable error makes visible.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The retry policy `fail` and the rescuer use. Default:
    /// [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Bounds on request payloads and results. Default:
    /// [`PayloadLimits::default`] (1 MiB, 64 levels).
    pub fn payload_limits(mut self, limits: PayloadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A clock whose time replaces the database's `now()` in every
    /// statement. Default: none, the database decides. Meant for tests.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Makes the store. Connections open lazily, on first use, so this
    /// succeeds whether or not the server is up; a bad pool size is refused.
    pub fn build(self) -> Result<PgStore> {
        if self.max_connections == 0 {
            return Err(Error::invalid("max_connections", "must be at least 1"));
        }
        let secrets = Secrets::from_url(&self.database_url);

        // Fast recycling: a pooled connection is handed out without a test
        // query, saving a round trip on every operation. A connection the
        // server closed is still caught (diesel-async reports it broken and
        // the pool drops it); one lost silently fails one statement with a
        // retryable error, which every caller of the queue handles anyway.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            self.database_url.clone(),
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .wait_timeout(Some(self.acquire_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| {
                Error::storage(format!("cannot build the connection pool: {error}"))
            })?;

        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                database_url: self.database_url,
                secrets,
                connect_timeout: self.connect_timeout,
                policy: self.policy,
                limits: self.limits,
                clock: self.clock,
            }),
        })
    }
}

impl PgStore {
    /// Starts configuring a store on `database_url`
    /// (`postgres://user:password@host:port/database`, or key-value form).
    pub fn builder(database_url: impl Into<String>) -> PgStoreBuilder {
        PgStoreBuilder {
            database_url: database_url.into(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
            policy: RetryPolicy::default(),
            limits: PayloadLimits::default(),
            clock: None,
        }
    }

    /// A store on `database_url` with every default.
    pub fn new(database_url: impl Into<String>) -> Result<Self> {
        Self::builder(database_url).build()
    }

    /// Applies the migrations this version embeds that the database lacks;
    /// harmless when they are all applied. See [`crate::migrate`].
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::migrate(&self.inner.database_url).await
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// Checks that the connected role holds every table privilege `role`
    /// needs (see [`Role::privileges`]), so a process can refuse to start
    /// rather than fail on its first claim. A worker's claim loop backs off
    /// and tries again after any error, so without this check a role that
    /// may not `UPDATE` would wait for ever.
    ///
    /// Fails with [`Error::PermissionDenied`] naming what is missing.
    pub async fn check_privileges(&self, role: Role) -> Result<()> {
        let privileges: Vec<&str> = role.privileges().to_vec();
        let mut conn = self.connection().await?;
        let missing = (sql::MISSING_PRIVILEGES)
            .bind::<Array<Text>, _>(privileges)
            .load::<Missing>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        if missing.is_empty() {
            return Ok(());
        }
        let missing: Vec<String> = missing.into_iter().map(|row| row.privilege).collect();
        Err(Error::PermissionDenied {
            message: format!(
                "permission denied: this role lacks {} on greenlight_queue, which {} needs \
                 (see SECURITY.md)",
                missing.join(", "),
                role.name()
            ),
        })
    }

    /// The injected clock's time, or `None` to let the database's `now()`
    /// decide. Every statement binds this as its `$1`.
    fn now(&self) -> Option<DateTime<Utc>> {
        self.inner.clock.as_ref().map(|clock| clock.now())
    }

    async fn connection(&self) -> Result<Conn<'_>> {
        let object =
            self.inner.pool.get().await.map_err(|error| pool_error(error, &self.inner.secrets))?;
        Ok(Conn { object: Some(object), secrets: &self.inner.secrets, lost: false })
    }

    /// Runs the FAIL statement for held jobs; returns the rows it changed.
    async fn fail_rows(&self, input: FailInput, rescue: bool) -> Result<Vec<JobRow>> {
        let mut conn = self.connection().await?;
        (sql::FAIL)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Array<SqlUuid>, _>(input.ids)
            .bind::<Array<Int4>, _>(input.attempts)
            .bind::<Array<Int4>, _>(input.retry_counts)
            .bind::<Array<Text>, _>(input.messages)
            .bind::<Array<Bool>, _>(input.retryable)
            .bind::<Array<Interval>, _>(input.delays)
            .bind::<Bool, _>(rescue)
            .load::<JobRow>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))
    }

    /// Inserts a batch of plain jobs (see `ENQUEUE_PLAIN`); returns the
    /// time they were queued at, which is also when they may run.
    async fn insert_plain(&self, input: EnqueueInput<'_>) -> Result<DateTime<Utc>> {
        #[derive(QueryableByName)]
        struct Inserted {
            #[diesel(sql_type = Timestamptz)]
            queued_at: DateTime<Utc>,
            #[diesel(sql_type = BigInt)]
            inserted: i64,
        }

        let expected = input.ids.len();
        let mut conn = self.connection().await?;
        let inserted = (sql::ENQUEUE_PLAIN)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Array<SqlUuid>, _>(input.ids)
            .bind::<Array<Nullable<SqlUuid>>, _>(input.atom_ids)
            .bind::<Array<SqlUuid>, _>(input.learner_ids)
            .bind::<Array<Jsonb>, _>(input.payloads)
            .bind::<Array<Int4>, _>(input.max_retries)
            .bind::<Array<Int4>, _>(input.priorities)
            .get_result::<Inserted>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        // Without keys no row can be skipped: a refused row fails the
        // whole statement instead.
        if usize::try_from(inserted.inserted).ok() != Some(expected) {
            return Err(Error::storage(format!(
                "enqueue inserted {} of {expected} jobs",
                inserted.inserted
            )));
        }
        Ok(inserted.queued_at)
    }

    /// Completes held jobs in one statement; returns what it wrote for the
    /// jobs it changed, by id.
    async fn complete_rows(
        &self,
        ids: Vec<Uuid>,
        attempts: Vec<i32>,
        results: Vec<&Value>,
    ) -> Result<HashMap<JobId, CompletedRow>> {
        let mut conn = self.connection().await?;
        let rows = (sql::COMPLETE)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Int4>, _>(attempts)
            .bind::<Array<Jsonb>, _>(results)
            .load::<CompletedRow>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        Ok(rows.into_iter().map(|row| (JobId(row.id), row)).collect())
    }

    /// The error for a guarded write to a held job that changed nothing:
    /// the job is gone ([`Error::NotFound`]) or another attempt moved it on
    /// ([`Error::LeaseLost`]). Read after the write, only to explain it.
    async fn not_held(&self, job: &Job<Executing>) -> Error {
        match self.existing(vec![job.id().0]).await {
            Ok(found) if found.is_empty() => Error::NotFound { id: job.id() },
            Ok(_) => lease_lost(job),
            Err(error) => error,
        }
    }

    /// Which of `ids` name a stored job.
    async fn existing(&self, ids: Vec<Uuid>) -> Result<HashSet<JobId>> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }

        let mut conn = self.connection().await?;
        let found = (sql::EXISTING)
            .bind::<Array<SqlUuid>, _>(ids)
            .load::<Found>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        Ok(found.into_iter().map(|found| JobId(found.id)).collect())
    }

    /// Why a guarded write to job `id`, which needs it in state `From`,
    /// changed nothing: not found, or in another state. `None` when the job
    /// is in `From` after all (it moved there after the write looked), and
    /// the write should be tried again.
    async fn refusal<From: State>(&self, id: JobId) -> Result<Option<Error>> {
        Ok(match self.get(id).await? {
            None => Some(Error::NotFound { id }),
            Some(job) if job.status() == From::STATUS => None,
            Some(job) => {
                Some(Error::WrongState { id, expected: From::STATUS, actual: job.status() })
            }
        })
    }
}

/// A pooled connection that is closed instead of going back to the pool
/// once a statement on it failed for a connection-level reason.
///
/// The pool drops a connection it sees closed, but it looks only when it
/// hands the connection out: right after the server ended a session (a
/// restart, `pg_terminate_backend`, a failover), the driver may not have
/// noticed yet, and the next caller would get the dead connection and a
/// second error. Discarding it at the first error means one failed call,
/// not two.
struct Conn<'a> {
    /// Always `Some` until `drop` takes it.
    object: Option<Object<AsyncPgConnection>>,
    secrets: &'a Secrets,
    lost: bool,
}

impl Conn<'_> {
    /// Maps a failed statement's error, remembering whether the connection
    /// itself is suspect.
    fn error(&mut self, error: diesel::result::Error) -> Error {
        self.lost |= connection_lost(&error);
        query_error(error, self.secrets)
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        // `object` is taken only in `drop`, after the last use.
        self.object.as_ref().expect("a connection until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        // `object` is taken only in `drop`, after the last use.
        self.object.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if self.lost
            && let Some(object) = self.object.take()
        {
            // Detached from the pool, the connection closes when dropped
            // and the pool opens a fresh one when it needs one.
            drop(Object::take(object));
        }
    }
}

/// The parallel arrays of the FAIL statement.
#[derive(Default)]
struct FailInput {
    ids: Vec<Uuid>,
    attempts: Vec<i32>,
    retry_counts: Vec<i32>,
    messages: Vec<String>,
    retryable: Vec<bool>,
    delays: Vec<PgInterval>,
}

impl FailInput {
    fn push(&mut self, job: &FailedAttempt, policy: &RetryPolicy) {
        // The delay before failure number retry_count + 1, exactly as the
        // core's Job::fail computes it for the same job and attempt.
        let failure = job.retry_count.saturating_add(1);
        let delay = policy.delay(failure, Jitter::for_attempt(job.id, job.attempt));
        self.ids.push(job.id.0);
        self.attempts.push(job.attempt as i32);
        self.retry_counts.push(job.retry_count as i32);
        self.messages.push(sanitize_error(&job.message));
        self.retryable.push(job.retryable);
        self.delays.push(interval(delay));
    }
}

/// One failed attempt to record.
struct FailedAttempt {
    id: JobId,
    attempt: u32,
    retry_count: u32,
    message: String,
    retryable: bool,
}

/// A duration as a PostgreSQL interval of whole microseconds (the precision
/// stored), saturating where an absurd duration would overflow; the
/// database then refuses the resulting time as out of range.
fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

/// The longest horizon `has_work_within` looks ahead: a thousand years.
/// PostgreSQL's timestamps end in the year 294276, so a longer interval
/// added to now could overflow; no job is scheduled that far out.
const MAX_HORIZON: Duration = Duration::from_secs(1_000 * 366 * 24 * 3600);

/// The answer of `sql::HAS_WORK`.
#[derive(QueryableByName)]
struct HasWork {
    #[diesel(sql_type = Bool)]
    has_work: bool,
}

/// A job that moved into and out of the needed state faster than a write
/// could catch it, several times over: retrying later will do.
fn changing(id: JobId) -> Error {
    Error::unavailable(format!("job {id} kept changing state; try again"))
}

/// Leases shorter than this are refused, as by the claim: a lease that ends
/// before the heartbeat's answer arrives is a caller's mistake.
const MIN_LEASE: Duration = Duration::from_millis(1);

fn check_lease(lease: Duration) -> Result<()> {
    if lease < MIN_LEASE {
        return Err(Error::invalid("lease", "must be at least one millisecond"));
    }
    Ok(())
}

fn lease_lost(job: &Job<Executing>) -> Error {
    Error::LeaseLost { id: job.id(), attempt: job.attempt() }
}

fn narrow<S: State>(row: JobRow) -> Result<Job<S>> {
    Job::<S>::try_from(row.into_job()?)
}

/// The claim order: highest priority, then earliest `run_at`, then id.
fn claim_order(job: &Job<Executing>) -> (std::cmp::Reverse<i32>, DateTime<Utc>, JobId) {
    let data = job.data();
    (std::cmp::Reverse(data.priority), data.run_at, data.id)
}

/// An expired lease as the rescuer reads it.
#[derive(QueryableByName)]
struct ExpiredRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Int4)]
    attempt: i32,
    #[diesel(sql_type = Int4)]
    retry_count: i32,
    #[diesel(sql_type = Nullable<Text>)]
    worker_id: Option<String>,
}

/// What a completion wrote, as `COMPLETE` returns it.
#[derive(QueryableByName)]
struct CompletedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    completed_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    execution_id: Option<String>,
}

impl CompletedRow {
    /// The complete job: the caller's held job, moved on by the core's own
    /// transition at the stored time. The row's execution id wins, since
    /// one recorded through another copy of the job is on the row but not
    /// on this copy; nothing else of an executing job changes while held
    /// but the lease, which a complete job does not have.
    fn finish(self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        let stored = self.execution_id.map(ExecutionId::new).transpose().map_err(|error| {
            Error::storage(format!("job {} has an invalid execution_id: {error}", job.id()))
        })?;
        let job = match stored {
            Some(id) if job.data().execution_id.as_ref() != Some(&id) => {
                job.record_execution_id(id)
            }
            _ => job,
        };
        Ok(job.complete(result, self.completed_at))
    }
}

/// What an enqueue wrote, as `ENQUEUE` returns it: the times the database
/// decided.
#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    queued_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    run_at: DateTime<Utc>,
}

impl InsertedRow {
    /// The pending job: the request as given, with the stored id and
    /// times. `run_at` is taken from the row too, since the database
    /// computed it (a delay added to its clock, a time kept to whole
    /// microseconds).
    fn pending(self, new: NewJob) -> Job<Pending> {
        let job = new.into_pending(JobId(self.id), self.queued_at);
        if job.data().run_at == self.run_at {
            return job;
        }
        let mut data = job.data().clone();
        data.run_at = self.run_at;
        Job::new(data)
    }
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    ready: i64,
    #[diesel(sql_type = BigInt)]
    executing: i64,
    #[diesel(sql_type = BigInt)]
    expired_leases: i64,
    #[diesel(sql_type = BigInt)]
    complete: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest_ready_run_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_scheduled_run_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

/// The columns of one enqueue batch, as the parallel arrays `unnest` takes.
/// Payloads are borrowed from the requests: they are only written.
#[derive(Default)]
struct EnqueueInput<'a> {
    ids: Vec<Uuid>,
    atom_ids: Vec<Option<Uuid>>,
    learner_ids: Vec<Uuid>,
    execution_ids: Vec<Option<String>>,
    payloads: Vec<&'a Value>,
    max_retries: Vec<i32>,
    priorities: Vec<i32>,
    run_at: Vec<Option<DateTime<Utc>>>,
    delays: Vec<Option<PgInterval>>,
    keys: Vec<Option<String>>,
}

impl<'a> EnqueueInput<'a> {
    /// The batch in columns, with a fresh id per job.
    fn of(jobs: &'a [NewJob]) -> Self {
        let mut input = Self::default();
        for job in jobs {
            let (run_at, delay) = match job.schedule() {
                Schedule::Now => (None, None),
                Schedule::At(at) => (Some(truncate_time(at)), None),
                Schedule::After(delay) => (None, Some(interval(delay))),
            };
            input.ids.push(Uuid::new_v4());
            input.atom_ids.push(job.atom_id().map(|atom| atom.0));
            input.learner_ids.push(job.learner_id().0);
            input.execution_ids.push(job.execution_id().map(|id| id.as_str().to_owned()));
            input.payloads.push(job.request_payload());
            input.max_retries.push(job.max_retries() as i32);
            input.priorities.push(job.priority());
            input.run_at.push(run_at);
            input.delays.push(delay);
            input.keys.push(job.idempotency_key().map(|key| key.as_str().to_owned()));
        }
        input
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut answers = self.enqueue_many(vec![job]).await?;
        answers.pop().ok_or_else(|| Error::storage("enqueue returned no answer"))
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }

        // Step 1: check every payload against this store's limits (the
        // builder checked against its own), then lay the batch out in
        // columns. Ids are made here so each answer finds its row.
        for job in &jobs {
            job.check_limits(&self.inner.limits)?;
        }
        let input = EnqueueInput::of(&jobs);
        let plain = jobs.iter().all(|job| {
            job.schedule() == Schedule::Now
                && job.idempotency_key().is_none()
                && job.execution_id().is_none()
        });
        let ids = input.ids.clone();

        // The common case, jobs to run now with no key and no execution
        // id: every row is inserted and the database decides one time for
        // all of them, so nothing per row needs to come back.
        if plain {
            let queued_at = self.insert_plain(input).await?;
            return Ok(jobs
                .into_iter()
                .zip(ids)
                .map(|(job, id)| Enqueued::Created(job.into_pending(JobId(id), queued_at)))
                .collect());
        }
        let keys = input.keys.clone();

        // Step 2: one INSERT for the whole batch (and one NOTIFY).
        let mut conn = self.connection().await?;
        let inserted = (sql::ENQUEUE)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Array<SqlUuid>, _>(input.ids)
            .bind::<Array<Nullable<SqlUuid>>, _>(input.atom_ids)
            .bind::<Array<SqlUuid>, _>(input.learner_ids)
            .bind::<Array<Nullable<Text>>, _>(input.execution_ids)
            .bind::<Array<Jsonb>, _>(input.payloads)
            .bind::<Array<Int4>, _>(input.max_retries)
            .bind::<Array<Int4>, _>(input.priorities)
            .bind::<Array<Nullable<Timestamptz>>, _>(input.run_at)
            .bind::<Array<Nullable<Interval>>, _>(input.delays)
            .bind::<Array<Nullable<Text>>, _>(input.keys)
            .load::<InsertedRow>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        let mut inserted: HashMap<Uuid, InsertedRow> =
            inserted.into_iter().map(|row| (row.id, row)).collect();
        // The created jobs, in input order; `None` where a key was taken.
        let created: Vec<Option<Job<Pending>>> = jobs
            .into_iter()
            .zip(&ids)
            .map(|(job, id)| inserted.remove(id).map(|row| row.pending(job)))
            .collect();

        // Step 3: a row that was not inserted met an idempotency key already
        // used, before this batch or earlier in it. Read those jobs in a
        // second statement: it sees rows that a concurrent enqueue committed
        // while the INSERT waited on the key, which the INSERT's own
        // snapshot could not.
        let mut existing: HashMap<String, AnyJob> = HashMap::new();
        for job in created.iter().flatten() {
            if let Some(key) = &job.data().idempotency_key {
                existing.insert(key.as_str().to_owned(), job.clone().into_any());
            }
        }
        let missing: Vec<String> = created
            .iter()
            .zip(&keys)
            .filter(|(job, _)| job.is_none())
            .filter_map(|(_, key)| key.clone())
            .filter(|key| !existing.contains_key(key))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            let rows = (sql::BY_IDEMPOTENCY_KEYS)
                .bind::<Array<Text>, _>(missing)
                .load::<JobRow>(&mut *conn)
                .await
                .map_err(|error| conn.error(error))?;
            for row in rows {
                let job = row.into_job()?;
                if let Some(key) = &job.data().idempotency_key {
                    existing.insert(key.as_str().to_owned(), job.clone());
                }
            }
        }

        // Step 4: the answers, in input order.
        created
            .into_iter()
            .zip(keys)
            .map(|(job, key)| {
                if let Some(job) = job {
                    return Ok(Enqueued::Created(job));
                }
                key.and_then(|key| existing.get(&key).cloned()).map(Enqueued::Existing).ok_or_else(
                    || {
                        Error::storage(
                            "a job with this idempotency key was deleted while enqueueing",
                        )
                    },
                )
            })
            .collect()
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Job<Executing>>> {
        request.validate()?;
        if request.limit == 0 {
            return Ok(Vec::new());
        }

        let mut conn = self.connection().await?;
        let rows = (sql::CLAIM)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<BigInt, _>(request.limit as i64)
            .bind::<Text, _>(request.worker_id.as_str())
            .bind::<Interval, _>(interval(request.lease))
            .rows::<ClaimedSqlType>()
            .load::<ClaimedRow>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;

        // UPDATE ... RETURNING hands rows back in no particular order. Ids
        // are unique, so no two keys tie and an unstable sort (no scratch
        // buffer of whole jobs) gives the same order.
        let mut jobs = rows
            .into_iter()
            .map(|row| row.into_job(&request.worker_id))
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_unstable_by_key(claim_order);
        Ok(jobs)
    }

    async fn heartbeat(&self, job: &Job<Executing>, lease: Duration) -> Result<Job<Executing>> {
        check_lease(lease)?;
        let mut conn = self.connection().await?;
        let row = (sql::HEARTBEAT)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Interval, _>(interval(lease))
            .bind::<SqlUuid, _>(job.id().0)
            .bind::<Int4, _>(job.attempt() as i32)
            .get_result::<JobRow>(&mut *conn)
            .await
            .optional()
            .map_err(|error| conn.error(error))?;
        drop(conn);
        match row {
            Some(row) => narrow(row),
            None => Err(self.not_held(job).await),
        }
    }

    async fn record_execution_id(
        &self,
        job: &Job<Executing>,
        execution_id: ExecutionId,
    ) -> Result<Job<Executing>> {
        let mut conn = self.connection().await?;
        let row = (sql::RECORD_EXECUTION_ID)
            .bind::<Text, _>(execution_id.as_str())
            .bind::<SqlUuid, _>(job.id().0)
            .bind::<Int4, _>(job.attempt() as i32)
            .get_result::<JobRow>(&mut *conn)
            .await
            .optional()
            .map_err(|error| match conn.error(error) {
                // The id we tried to store is the one that clashed.
                Error::DuplicateExecutionId { .. } => {
                    Error::DuplicateExecutionId { execution_id: execution_id.as_str().to_owned() }
                }
                other => other,
            })?;
        drop(conn);
        match row {
            Some(row) => narrow(row),
            None => Err(self.not_held(job).await),
        }
    }

    async fn complete(&self, job: Job<Executing>, result: Value) -> Result<Job<Complete>> {
        self.inner.limits.check_result(&result)?;
        let mut rows =
            self.complete_rows(vec![job.id().0], vec![job.attempt() as i32], vec![&result]).await?;
        match rows.remove(&job.id()) {
            Some(row) => row.finish(job, result),
            None => Err(self.not_held(&job).await),
        }
    }

    async fn complete_many(
        &self,
        jobs: Vec<(Job<Executing>, Value)>,
    ) -> Result<Vec<Result<Job<Complete>>>> {
        // A result over the limits fails only its own job; a job named twice
        // is completed once, and its second entry finds the lease gone, as
        // it would completing one after the other.
        let mut seen = HashSet::new();
        let mut checks = Vec::with_capacity(jobs.len());
        let (mut ids, mut attempts, mut results) = (Vec::new(), Vec::new(), Vec::new());
        for (job, result) in &jobs {
            let check = self.inner.limits.check_result(result);
            let first = seen.insert(job.id());
            if check.is_ok() && first {
                ids.push(job.id().0);
                attempts.push(job.attempt() as i32);
                results.push(result);
            }
            checks.push(check.map(|()| first));
        }

        // One UPDATE for the whole batch.
        let mut rows = if ids.is_empty() {
            HashMap::new()
        } else {
            self.complete_rows(ids, attempts, results).await?
        };
        let completed: HashSet<JobId> = rows.keys().copied().collect();

        // The jobs it did not change are gone, or held no more: one read
        // tells which, for all of them.
        let unchanged: Vec<Uuid> =
            seen.iter().filter(|id| !completed.contains(id)).map(|id| id.0).collect();
        let stored =
            if unchanged.is_empty() { HashSet::new() } else { self.existing(unchanged).await? };
        let not_held = |job: &Job<Executing>| {
            if completed.contains(&job.id()) || stored.contains(&job.id()) {
                lease_lost(job)
            } else {
                Error::NotFound { id: job.id() }
            }
        };

        Ok(jobs
            .into_iter()
            .zip(checks)
            .map(|((job, result), check)| match check {
                Err(error) => Err(error),
                Ok(false) => Err(not_held(&job)),
                Ok(true) => match rows.remove(&job.id()) {
                    Some(row) => row.finish(job, result),
                    None => Err(not_held(&job)),
                },
            })
            .collect())
    }

    async fn fail(&self, job: Job<Executing>, failure: Failure) -> Result<FailOutcome> {
        let mut input = FailInput::default();
        input.push(
            &FailedAttempt {
                id: job.id(),
                attempt: job.attempt(),
                retry_count: job.data().retry_count,
                message: failure.message,
                retryable: failure.retryable,
            },
            &self.inner.policy,
        );
        let Some(row) = self.fail_rows(input, false).await?.pop() else {
            return Err(self.not_held(&job).await);
        };
        match row.into_job()? {
            AnyJob::Pending(job) => Ok(FailOutcome::Retrying(job)),
            AnyJob::Failed(job) => Ok(FailOutcome::Failed(job)),
            other => Err(Error::storage(format!(
                "job {} is {} after a failure",
                other.id(),
                other.status()
            ))),
        }
    }

    async fn release(&self, job: Job<Executing>) -> Result<Job<Pending>> {
        let mut conn = self.connection().await?;
        let row = (sql::RELEASE)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<SqlUuid, _>(job.id().0)
            .bind::<Int4, _>(job.attempt() as i32)
            .get_result::<JobRow>(&mut *conn)
            .await
            .optional()
            .map_err(|error| conn.error(error))?;
        drop(conn);
        match row {
            Some(row) => narrow(row),
            None => Err(self.not_held(&job).await),
        }
    }

    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job<Failed>> {
        let reason = sanitize_error(reason);
        for _ in 0..STATE_RACE_TRIES {
            let mut conn = self.connection().await?;
            let row = (sql::CANCEL)
                .bind::<Nullable<Timestamptz>, _>(self.now())
                .bind::<SqlUuid, _>(id.0)
                .bind::<Text, _>(reason.as_str())
                .get_result::<JobRow>(&mut *conn)
                .await
                .optional()
                .map_err(|error| conn.error(error))?;
            drop(conn);
            if let Some(row) = row {
                return narrow(row);
            }
            if let Some(error) = self.refusal::<Pending>(id).await? {
                return Err(error);
            }
        }
        Err(changing(id))
    }

    async fn requeue(&self, id: JobId) -> Result<Job<Pending>> {
        for _ in 0..STATE_RACE_TRIES {
            let mut conn = self.connection().await?;
            let row = (sql::REQUEUE)
                .bind::<Nullable<Timestamptz>, _>(self.now())
                .bind::<SqlUuid, _>(id.0)
                .get_result::<JobRow>(&mut *conn)
                .await
                .optional()
                .map_err(|error| conn.error(error))?;
            drop(conn);
            if let Some(row) = row {
                return narrow(row);
            }
            if let Some(error) = self.refusal::<Failed>(id).await? {
                return Err(error);
            }
        }
        Err(changing(id))
    }

    async fn rescue_expired(&self) -> Result<Rescued> {
        let now = self.now();
        let mut rescued = Rescued::default();
        loop {
            // Step 1: find expired leases. No lock is taken: step 2 repeats
            // every condition (status, attempt, retry count, expiry), so a
            // job that was heartbeated, completed or rescued by another
            // rescuer in between is simply not written.
            let mut conn = self.connection().await?;
            let expired = (sql::EXPIRED)
                .bind::<Nullable<Timestamptz>, _>(now)
                .bind::<BigInt, _>(RESCUE_BATCH)
                .load::<ExpiredRow>(&mut *conn)
                .await
                .map_err(|error| conn.error(error))?;
            drop(conn);
            let found = expired.len();
            if found == 0 {
                return Ok(rescued);
            }

            // Step 2: count each as a retryable failure, with the core's
            // words for an expired lease.
            let mut input = FailInput::default();
            for row in expired {
                let worker = row.worker_id.unwrap_or_default();
                let message = WorkerId::new(worker.clone()).map_or_else(
                    |_| format!("lease expired: worker {worker} stopped heartbeating"),
                    |worker| lease_expired_message(&worker),
                );
                input.push(
                    &FailedAttempt {
                        id: JobId(row.id),
                        attempt: u32::try_from(row.attempt).unwrap_or(0),
                        retry_count: u32::try_from(row.retry_count).unwrap_or(0),
                        message,
                        retryable: true,
                    },
                    &self.inner.policy,
                );
            }
            for row in self.fail_rows(input, true).await? {
                match row.into_job()?.status() {
                    Status::Pending => rescued.retried += 1,
                    _ => rescued.failed += 1,
                }
            }
            if found < RESCUE_BATCH as usize {
                return Ok(rescued);
            }
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<AnyJob>> {
        let mut conn = self.connection().await?;
        let row = greenlight_queue::table
            .find(id.0)
            .select(JobRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(|error| conn.error(error))?;
        row.map(JobRow::into_job).transpose()
    }

    async fn get_by_execution_id(&self, execution_id: &ExecutionId) -> Result<Option<AnyJob>> {
        let mut conn = self.connection().await?;
        let row = greenlight_queue::table
            .filter(greenlight_queue::execution_id.eq(execution_id.as_str()))
            .select(JobRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(|error| conn.error(error))?;
        row.map(JobRow::into_job).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<JobPage> {
        use greenlight_queue::dsl;

        filter.validate()?;
        let mut query = dsl::greenlight_queue.into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(dsl::status.eq(status.as_str()));
        }
        if let Some(learner) = filter.learner_id {
            query = query.filter(dsl::learner_id.eq(learner.0));
        }
        if let Some(after) = filter.after {
            // Strictly after the cursor in (queued_at DESC, id DESC) order.
            query = query.filter(
                dsl::queued_at
                    .lt(after.queued_at)
                    .or(dsl::queued_at.eq(after.queued_at).and(dsl::id.lt(after.id.0))),
            );
        }

        let mut conn = self.connection().await?;
        let rows = query
            .order((dsl::queued_at.desc(), dsl::id.desc()))
            .limit(filter.limit as i64)
            .select(JobRow::as_select())
            .load(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        let jobs = rows.into_iter().map(JobRow::into_job).collect::<Result<Vec<_>>>()?;
        let next =
            if jobs.len() == filter.limit { jobs.last().map(ListCursor::after) } else { None };
        Ok(JobPage { jobs, next })
    }

    async fn stats(&self) -> Result<Stats> {
        let mut conn = self.connection().await?;
        let row = (sql::STATS)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .get_result::<StatsRow>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Stats {
            pending: count(row.pending),
            ready: count(row.ready),
            executing: count(row.executing),
            expired_leases: count(row.expired_leases),
            complete: count(row.complete),
            failed: count(row.failed),
            oldest_ready_age: row
                .oldest_ready_run_at
                .and_then(|run_at| (row.now - run_at).to_std().ok()),
            next_scheduled_in: row
                .next_scheduled_run_at
                .and_then(|run_at| (run_at - row.now).to_std().ok()),
        })
    }

    async fn has_work_within(&self, horizon: Duration) -> Result<bool> {
        let mut conn = self.connection().await?;
        let answer = (sql::HAS_WORK)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Interval, _>(interval(horizon.min(MAX_HORIZON)))
            .get_result::<HasWork>(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        Ok(answer.has_work)
    }

    async fn prune(&self, request: &PruneRequest) -> Result<u64> {
        request.validate()?;
        let mut conn = self.connection().await?;
        let deleted = (sql::PRUNE)
            .bind::<Nullable<Timestamptz>, _>(self.now())
            .bind::<Text, _>(request.status.as_str())
            .bind::<Interval, _>(interval(request.older_than))
            .bind::<BigInt, _>(request.batch_size as i64)
            .execute(&mut *conn)
            .await
            .map_err(|error| conn.error(error))?;
        Ok(deleted as u64)
    }

    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        let stream = listen::wakeups(
            self.inner.database_url.clone(),
            self.inner.secrets.clone(),
            self.inner.connect_timeout,
        )
        .await?;
        Ok(Some(stream))
    }
}
