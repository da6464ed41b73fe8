//! Applying the embedded migrations.

use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use greenlight_core::{Error, Result};

use crate::error::{Secrets, connection_error, query_error};

/// The migrations of the top-level `migrations/` folder, compiled in.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// The advisory lock every migrating process takes first, so that two
/// processes starting at once apply each migration once, one after the
/// other, instead of racing on the same `CREATE TABLE`. The number spells
/// "glmigr" in ASCII.
const MIGRATION_LOCK: i64 = 0x0000_676c_6d69_6772;

/// Applies every embedded migration the database at `database_url` lacks.
///
/// Running it again is harmless: applied migrations are recorded in diesel's
/// `__diesel_schema_migrations` table and skipped. Concurrent callers wait
/// for each other on an advisory lock.
///
/// diesel's migration runner is synchronous; it runs on a blocking thread
/// over an async connection driven by the caller's tokio runtime, so this
/// works on the current-thread runtime too.
pub async fn migrate(database_url: &str) -> Result<()> {
    let secrets = Secrets::from_url(database_url);
    let connection = AsyncPgConnection::establish(database_url)
        .await
        .map_err(|error| connection_error(error, &secrets))?;
    tokio::task::spawn_blocking(move || apply(connection, &secrets))
        .await
        .map_err(|error| Error::storage(format!("the migration task failed: {error}")))?
}

fn apply(connection: AsyncPgConnection, secrets: &Secrets) -> Result<()> {
    let mut connection: AsyncConnectionWrapper<AsyncPgConnection> = connection.into();
    connection
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(|error| query_error(error, secrets))?;
    // The lock is released when the connection closes, which also happens
    // if a migration fails.
    connection.run_pending_migrations(MIGRATIONS).map(drop).map_err(|error| {
        match error.downcast::<diesel::result::Error>() {
            Ok(error) => query_error(*error, secrets),
            Err(error) => {
                Error::storage(format!("migration failed: {}", secrets.scrub(&error.to_string())))
            }
        }
    })
}
