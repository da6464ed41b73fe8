//! The original sketch's manual checklist, run as written, and the table's
//! shape as `\d greenlight_queue` and `pg_indexes` show it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use greenlight_core::{AnyJob, JobId, ManualClock, Rescued, Status, Store};
use greenlight_postgres::PgStore;
use uuid::Uuid;

/// The sketch's INSERT: a pending job for the first atom there is.
const CHECKLIST_INSERT: &str = "INSERT INTO greenlight_queue (atom_id, learner_id, status, request_payload) \
     VALUES ((SELECT id FROM learning_atoms LIMIT 1), gen_random_uuid(), 'pending', \
     '{\"language\": \"python\", \"code\": \"print(1)\"}')";

/// The sketch's hand move to executing, with nothing but `started_at`.
const CHECKLIST_UPDATE: &str = "UPDATE greenlight_queue SET status = 'executing', started_at = NOW() \
     WHERE status = 'pending' RETURNING *";

#[derive(diesel::QueryableByName, Debug)]
struct Returned {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Nullable<Text>)]
    worker_id: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    queued_at: DateTime<Utc>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checklist_runs_as_written_and_the_store_reads_its_rows() {
    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    common::run_sql(&mut conn, "INSERT INTO learning_atoms DEFAULT VALUES").await.expect("atom");

    // The INSERT that takes an atom from learning_atoms.
    let inserted = common::execute(&mut conn, CHECKLIST_INSERT).await.expect("checklist insert");
    assert_eq!(inserted, 1);

    // The SELECT finds it, pending, with the defaults filled in.
    let pending: Vec<Returned> =
        diesel::sql_query("SELECT * FROM greenlight_queue WHERE status = 'pending'")
            .load(&mut conn)
            .await
            .expect("checklist select");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempt, 0);
    assert_eq!(pending[0].lease_expires_at, None);

    // The store reads the hand-made row as a valid pending job.
    let store = PgStore::new(db.url()).expect("store");
    let id = JobId(pending[0].id);
    let job = store.get(id).await.expect("get").expect("the row");
    assert_eq!(job.status(), Status::Pending);
    assert_eq!(job.data().max_retries, 3);
    assert_eq!(job.data().retry_count, 0);

    // The hand UPDATE to executing with RETURNING *: the trigger gives the
    // row a lease, a holder and the next attempt.
    let moved: Vec<Returned> =
        diesel::sql_query(CHECKLIST_UPDATE).load(&mut conn).await.expect("checklist update");
    assert_eq!(moved.len(), 1);
    let row = &moved[0];
    assert_eq!(row.status, "executing");
    assert_eq!(row.attempt, 1);
    assert_eq!(row.worker_id.as_deref(), Some("manual"));
    let started = row.started_at.expect("started_at");
    let lease = row.lease_expires_at.expect("a lease from the trigger");
    assert_eq!(lease - started, chrono::TimeDelta::minutes(5));
    assert!(row.queued_at <= started);

    // The store reads it back as a valid executing job.
    let AnyJob::Executing(executing) = store.get(id).await.expect("get").expect("the row") else {
        panic!("expected an executing job");
    };
    assert_eq!(executing.attempt(), 1);
    assert_eq!(executing.state().worker_id.as_str(), "manual");
    assert_eq!(executing.state().lease_expires_at, lease);

    // Once the lease is over, the rescuer takes it back like any other.
    let clock = ManualClock::new(lease + chrono::TimeDelta::seconds(1));
    let later = PgStore::builder(db.url()).clock(Arc::new(clock)).build().expect("store");
    assert_eq!(later.rescue_expired().await.expect("rescue"), Rescued { retried: 1, failed: 0 });
    let AnyJob::Pending(rescued) = later.get(id).await.expect("get").expect("the row") else {
        panic!("expected the rescued job to be pending");
    };
    assert_eq!(rescued.data().retry_count, 1);
    assert_eq!(
        rescued.state().last_error.as_deref(),
        Some("lease expired: worker manual stopped heartbeating")
    );
}

#[tokio::test]
async fn a_store_claim_never_calls_the_trigger_and_bumps_attempt_once() {
    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    common::run_sql(&mut conn, "INSERT INTO learning_atoms DEFAULT VALUES").await.expect("atom");
    common::execute(&mut conn, CHECKLIST_INSERT).await.expect("insert");
    let store = PgStore::new(db.url()).expect("store");
    let request = greenlight_core::ClaimRequest {
        worker_id: greenlight_core::WorkerId::new("worker-1").expect("id"),
        limit: 10,
        lease: Duration::from_secs(60),
    };
    let claimed = store.claim(&request).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    // The trigger would have said 'manual' and a five-minute lease.
    assert_eq!(claimed[0].attempt(), 1);
    assert_eq!(claimed[0].state().worker_id.as_str(), "worker-1");
    let lease = claimed[0].state().lease_expires_at - claimed[0].state().started_at;
    assert_eq!(lease, chrono::TimeDelta::seconds(60));
}

#[tokio::test]
async fn pg_indexes_lists_the_original_indexes() {
    #[derive(diesel::QueryableByName)]
    struct Index {
        #[diesel(sql_type = Text)]
        indexname: String,
        #[diesel(sql_type = Text)]
        indexdef: String,
    }

    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    let indexes: Vec<Index> = diesel::sql_query(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'greenlight_queue'",
    )
    .load(&mut conn)
    .await
    .expect("pg_indexes");
    let def = |name: &str| {
        indexes
            .iter()
            .find(|index| index.indexname == name)
            .map_or_else(|| panic!("index {name} is missing"), |index| index.indexdef.clone())
    };

    assert!(def("idx_greenlight_queue_status").ends_with("USING btree (status, queued_at)"));
    assert!(def("idx_greenlight_queue_learner").ends_with("USING btree (learner_id, status)"));
    assert!(
        def("idx_greenlight_queue_execution_id")
            .ends_with("USING btree (execution_id) WHERE (execution_id IS NOT NULL)")
    );
    assert!(
        def("idx_greenlight_queue_claim")
            .ends_with("(priority DESC, run_at, id) WHERE ((status)::text = 'pending'::text)")
    );
    assert!(
        def("idx_greenlight_queue_rescue")
            .ends_with("(lease_expires_at) WHERE ((status)::text = 'executing'::text)")
    );
    assert!(
        def("idx_greenlight_queue_idempotency_key").starts_with("CREATE UNIQUE INDEX")
            && def("idx_greenlight_queue_idempotency_key")
                .ends_with("(idempotency_key) WHERE (idempotency_key IS NOT NULL)")
    );
}

/// A column as `\d greenlight_queue` shows it: name, type, length,
/// nullable, default.
type Expected<'a> = (&'a str, &'a str, Option<i32>, &'a str, Option<&'a str>);

#[tokio::test]
async fn columns_keep_the_original_names_and_types() {
    /// One row of `information_schema.columns`, named as it names them.
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    #[allow(clippy::struct_field_names, reason = "the names of information_schema's columns")]
    struct Column {
        #[diesel(sql_type = Text)]
        column_name: String,
        #[diesel(sql_type = Text)]
        data_type: String,
        #[diesel(sql_type = Nullable<Integer>)]
        character_maximum_length: Option<i32>,
        #[diesel(sql_type = Text)]
        is_nullable: String,
        #[diesel(sql_type = Nullable<Text>)]
        column_default: Option<String>,
        #[diesel(sql_type = Bool)]
        commented: bool,
    }

    #[derive(diesel::QueryableByName)]
    struct Table {
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        options: Option<String>,
    }

    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT column_name::text, data_type::text, character_maximum_length::int,
                is_nullable::text, column_default::text,
                col_description('greenlight_queue'::regclass, ordinal_position::int) IS NOT NULL
                    AS commented
         FROM information_schema.columns
         WHERE table_name = 'greenlight_queue'
         ORDER BY ordinal_position",
    )
    .load(&mut conn)
    .await
    .expect("information_schema");

    let expected: [Expected<'_>; 19] = [
        ("id", "uuid", None, "NO", Some("gen_random_uuid()")),
        ("atom_id", "uuid", None, "YES", None),
        ("learner_id", "uuid", None, "NO", None),
        ("execution_id", "character varying", Some(100), "YES", None),
        ("status", "character varying", Some(20), "NO", Some("'pending'::character varying")),
        ("request_payload", "jsonb", None, "NO", None),
        ("result_payload", "jsonb", None, "YES", None),
        ("queued_at", "timestamp with time zone", None, "NO", Some("now()")),
        ("started_at", "timestamp with time zone", None, "YES", None),
        ("completed_at", "timestamp with time zone", None, "YES", None),
        ("error_message", "text", None, "YES", None),
        ("retry_count", "integer", None, "NO", Some("0")),
        ("max_retries", "integer", None, "NO", Some("3")),
        ("run_at", "timestamp with time zone", None, "NO", Some("now()")),
        ("attempt", "integer", None, "NO", Some("0")),
        ("lease_expires_at", "timestamp with time zone", None, "YES", None),
        ("worker_id", "text", None, "YES", None),
        ("priority", "integer", None, "NO", Some("0")),
        ("idempotency_key", "text", None, "YES", None),
    ];
    let expected: Vec<Column> = expected
        .into_iter()
        .map(|(name, data_type, length, nullable, default)| Column {
            column_name: name.to_owned(),
            data_type: data_type.to_owned(),
            character_maximum_length: length,
            is_nullable: nullable.to_owned(),
            column_default: default.map(str::to_owned),
            commented: true,
        })
        .collect();
    assert_eq!(columns, expected);

    // The table's comment names the NOTIFY channel; the storage settings
    // for a hot table are in place.
    let table: Table = diesel::sql_query(
        "SELECT obj_description('greenlight_queue'::regclass, 'pg_class') AS comment,
                array_to_string(reloptions, ',') AS options
         FROM pg_class WHERE relname = 'greenlight_queue'",
    )
    .get_result(&mut conn)
    .await
    .expect("pg_class");
    assert!(table.comment.expect("a comment").contains(greenlight_postgres::NOTIFY_CHANNEL));
    assert!(table.options.expect("reloptions").contains("fillfactor=80"));
}

/// Runs `sql` and returns the kind of error the database answered with.
async fn refusal(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> DatabaseErrorKind {
    match common::execute(conn, sql).await {
        Err(DieselError::DatabaseError(kind, _)) => kind,
        other => panic!("expected the database to refuse {sql:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_database_itself_refuses_bad_rows() {
    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    let insert = |columns: &str, values: &str| {
        format!(
            "INSERT INTO greenlight_queue (learner_id, {columns}) VALUES (gen_random_uuid(), {values})"
        )
    };

    let bogus = insert("status, request_payload", "'bogus', '{}'");
    assert!(matches!(refusal(&mut conn, &bogus).await, DatabaseErrorKind::CheckViolation));
    let negative = insert("max_retries, request_payload", "-1, '{}'");
    assert!(matches!(refusal(&mut conn, &negative).await, DatabaseErrorKind::CheckViolation));
    let too_many = insert("max_retries, request_payload", "101, '{}'");
    assert!(matches!(refusal(&mut conn, &too_many).await, DatabaseErrorKind::CheckViolation));
    let null_payload = insert("request_payload", "NULL");
    assert!(matches!(refusal(&mut conn, &null_payload).await, DatabaseErrorKind::NotNullViolation));
    let scalar_payload = insert("request_payload", "'\"print(1)\"'");
    assert!(matches!(refusal(&mut conn, &scalar_payload).await, DatabaseErrorKind::CheckViolation));
    let negative_count = insert("retry_count, request_payload", "-1, '{}'");
    assert!(matches!(refusal(&mut conn, &negative_count).await, DatabaseErrorKind::CheckViolation));
    let null_status = insert("status, request_payload", "NULL, '{}'");
    assert!(matches!(refusal(&mut conn, &null_status).await, DatabaseErrorKind::NotNullViolation));

    // A finished row must say how it finished.
    let complete_without_result =
        insert("status, completed_at, request_payload", "'complete', now(), '{}'");
    assert!(matches!(
        refusal(&mut conn, &complete_without_result).await,
        DatabaseErrorKind::CheckViolation
    ));
    let failed_without_error =
        insert("status, completed_at, request_payload", "'failed', now(), '{}'");
    assert!(matches!(
        refusal(&mut conn, &failed_without_error).await,
        DatabaseErrorKind::CheckViolation
    ));
    // An unknown atom is refused by the foreign key.
    let unknown_atom = insert("atom_id, request_payload", "gen_random_uuid(), '{}'");
    assert!(matches!(
        refusal(&mut conn, &unknown_atom).await,
        DatabaseErrorKind::ForeignKeyViolation
    ));

    // None of it got in; a good row does.
    let good = insert("request_payload", "'{}'");
    assert_eq!(common::execute(&mut conn, &good).await.expect("a valid row"), 1);
    // Deleting the atom deletes its jobs.
    common::run_sql(&mut conn, "INSERT INTO learning_atoms DEFAULT VALUES").await.expect("atom");
    common::execute(&mut conn, CHECKLIST_INSERT).await.expect("insert");
    common::run_sql(&mut conn, "DELETE FROM learning_atoms").await.expect("delete atoms");
    let store = PgStore::new(db.url()).expect("store");
    assert_eq!(store.stats().await.expect("stats").total(), 1);
}
