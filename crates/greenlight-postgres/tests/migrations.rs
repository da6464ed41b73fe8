//! The migrations: up, down, up again; harmless to repeat; and down leaves
//! the host platform's own `learning_atoms` alone.

mod common;

use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The same migrations the crate embeds, for reverting them.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

async fn exists(conn: &mut AsyncPgConnection, object: &str) -> bool {
    let sql = format!("SELECT to_regclass('{object}') IS NOT NULL AS exists");
    diesel::sql_query(sql).get_result::<Exists>(conn).await.expect("to_regclass").exists
}

async fn function_exists(conn: &mut AsyncPgConnection) -> bool {
    let sql = "SELECT to_regprocedure('greenlight_queue_manual_lease()') IS NOT NULL AS exists";
    diesel::sql_query(sql).get_result::<Exists>(conn).await.expect("to_regprocedure").exists
}

/// Reverts every migration, on a blocking thread as diesel's runner is
/// synchronous.
async fn revert_all(url: &str) {
    let connection = AsyncPgConnection::establish(url).await.expect("connect");
    tokio::task::spawn_blocking(move || {
        let mut connection: AsyncConnectionWrapper<AsyncPgConnection> = connection.into();
        let reverted = connection.revert_all_migrations(MIGRATIONS).expect("revert all");
        assert_eq!(reverted.len(), 3, "every migration is reverted");
    })
    .await
    .expect("the revert task");
}

// The default current-thread runtime: migrate must work there too.
#[tokio::test]
async fn up_down_up_round_trip() {
    let db = common::TestDb::empty().await;
    let mut conn = db.connect().await;
    assert!(!exists(&mut conn, "greenlight_queue").await);

    greenlight_postgres::migrate(db.url()).await.expect("up");
    assert!(exists(&mut conn, "greenlight_queue").await);
    assert!(exists(&mut conn, "learning_atoms").await);
    assert!(exists(&mut conn, "idx_greenlight_queue_claim").await);
    assert!(function_exists(&mut conn).await);
    // Running again is harmless.
    greenlight_postgres::migrate(db.url()).await.expect("up again");

    revert_all(db.url()).await;
    assert!(!exists(&mut conn, "greenlight_queue").await);
    assert!(!exists(&mut conn, "learning_atoms").await, "the queue created it, so it goes");
    assert!(!exists(&mut conn, "idx_greenlight_queue_claim").await);
    assert!(!function_exists(&mut conn).await);

    greenlight_postgres::migrate(db.url()).await.expect("up after down");
    assert!(exists(&mut conn, "greenlight_queue").await);
    assert!(function_exists(&mut conn).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_leaves_the_hosts_learning_atoms_alone() {
    #[derive(diesel::QueryableByName)]
    struct Host {
        #[diesel(sql_type = BigInt)]
        atoms: i64,
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
    }

    let db = common::TestDb::empty().await;
    let mut conn = db.connect().await;
    common::run_sql(
        &mut conn,
        "CREATE TABLE learning_atoms (id UUID PRIMARY KEY, title TEXT NOT NULL);
         COMMENT ON TABLE learning_atoms IS 'the platform''s atoms';
         INSERT INTO learning_atoms VALUES (gen_random_uuid(), 'loops');",
    )
    .await
    .expect("the host's table");

    greenlight_postgres::migrate(db.url()).await.expect("up");
    // The queue's foreign key points at the host's table.
    common::run_sql(
        &mut conn,
        "INSERT INTO greenlight_queue (atom_id, learner_id, request_payload)
         VALUES ((SELECT id FROM learning_atoms LIMIT 1), gen_random_uuid(), '{}')",
    )
    .await
    .expect("a job for the host's atom");

    revert_all(db.url()).await;
    assert!(!exists(&mut conn, "greenlight_queue").await);
    let host: Host = diesel::sql_query(
        "SELECT (SELECT count(*) FROM learning_atoms) AS atoms,
                obj_description('learning_atoms'::regclass, 'pg_class') AS comment",
    )
    .get_result(&mut conn)
    .await
    .expect("the host's table is still there");
    assert_eq!(host.atoms, 1);
    assert_eq!(host.comment.as_deref(), Some("the platform's atoms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    let db = common::TestDb::empty().await;
    let url = db.url().to_owned();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { greenlight_postgres::migrate(&url).await })
        })
        .collect();
    for run in runs {
        run.await.expect("task").expect("every concurrent migrate succeeds");
    }

    let mut conn = db.connect().await;
    let applied: Count =
        diesel::sql_query("SELECT count(*) AS count FROM __diesel_schema_migrations")
            .get_result(&mut conn)
            .await
            .expect("migrations table");
    assert_eq!(applied.count, 3);
}
