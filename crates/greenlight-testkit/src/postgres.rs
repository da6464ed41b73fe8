//! Databases for tests against a real PostgreSQL: one template per test
//! process, migrated once, and a fresh database per test copied from it,
//! dropped when the test ends. Tests share nothing and run in parallel.
//!
//! The server comes from `DATABASE_URL`, defaulting to
//! `postgres://postgres@127.0.0.1:5432/postgres`. When no server answers,
//! [`TestDb::new`] panics with one line that says how to start one: a test
//! against PostgreSQL never passes silently without it.
//!
//! The template is per process (its name carries the process id), so test
//! binaries running at the same time never race to create or migrate the
//! same database. Databases left by a test process that was killed are
//! dropped by the next one (local servers only, where a process id can be
//! checked).
//!
//! ```no_run
//! # async fn demo() {
//! use greenlight_testkit::postgres::TestDb;
//!
//! let db = TestDb::new().await; // migrated, empty, this test's own
//! let store = greenlight_postgres::PgStore::new(db.url()).expect("a store");
//! # drop(store);
//! // `db` is dropped at the end of the test, and the database with it.
//! # }
//! ```

#![allow(
    clippy::missing_panics_doc,
    reason = "test setup: a panic with a clear message is how a broken setup is reported"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
/// Every database a test process makes starts with this.
const PREFIX: &str = "greenlight_test_";

/// The server the tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced by `name`.
pub fn url_for(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A connection to the server's maintenance database, or a one-line panic
/// saying how to start a server. Never a silent pass.
pub async fn admin() -> AsyncPgConnection {
    let url = database_url();
    match tokio::time::timeout(Duration::from_secs(10), AsyncPgConnection::establish(&url)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => unreachable_server(&url, &error.to_string()),
        Err(_) => unreachable_server(&url, "timed out"),
    }
}

fn unreachable_server(url: &str, why: &str) -> ! {
    panic!(
        "cannot reach PostgreSQL at {url} ({why}): start it with `pg_ctlcluster 15 main start` \
         or set DATABASE_URL"
    )
}

struct Template {
    name: Option<String>,
    users: usize,
    cleaned: bool,
}

/// The process's template and how many test databases use it; the last
/// one to go drops it. A tokio mutex: creating the template is async.
static TEMPLATE: tokio::sync::Mutex<Template> =
    tokio::sync::Mutex::const_new(Template { name: None, users: 0, cleaned: false });

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, migrated database of its own, dropped with this value.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Copies the process's template (made and migrated on first use).
    pub async fn new() -> Self {
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}_{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut template = TEMPLATE.lock().await;
        let mut admin = admin().await;
        if !template.cleaned {
            drop_leftovers(&mut admin).await;
            template.cleaned = true;
        }
        let template_name = if let Some(name) = &template.name {
            name.clone()
        } else {
            let name = format!("{PREFIX}{pid}_template");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop an old template");
            admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("template");
            greenlight_postgres::migrate(&url_for(&database_url(), &name))
                .await
                .expect("migrate the template");
            template.name = Some(name.clone());
            name
        };
        // Under the lock: the template must have no other session while it
        // is copied, and no test may drop it meanwhile.
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template_name}"))
            .await
            .expect("create a test database from the template");
        template.users += 1;
        drop(template);
        Self { url: url_for(&database_url(), &name), name }
    }

    /// A database with nothing in it, not even the migrations.
    pub async fn empty() -> Self {
        let name =
            format!("{PREFIX}{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut admin = admin().await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        TEMPLATE.lock().await.users += 1;
        Self { url: url_for(&database_url(), &name), name }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A plain connection to it, outside any store.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on itself:
        // a thread with a runtime of its own does the async work.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async move {
                let mut admin = admin().await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let mut template = TEMPLATE.lock().await;
                template.users -= 1;
                if template.users == 0
                    && let Some(template_name) = template.name.take()
                {
                    let _ = admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {template_name} WITH (FORCE)"
                        ))
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Drops test databases whose process is gone (a killed test run), when the
/// server is local and process ids mean something.
async fn drop_leftovers(admin: &mut AsyncPgConnection) {
    drop_abandoned(admin, PREFIX).await;
}

/// Drops the databases named `<prefix><pid>...` whose process `pid` is no
/// longer running (a run that was killed, or panicked, before it could
/// drop its own), when the server is local and process ids mean something.
/// Also used by the throughput harness for its `greenlight_bench_` ones.
pub async fn drop_abandoned(admin: &mut AsyncPgConnection, prefix: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }

    let url = database_url();
    if !(url.contains("@127.0.0.1") || url.contains("@localhost")) {
        return;
    }
    let names: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname::text FROM pg_database WHERE datname LIKE '{prefix}%'"
    ))
    .load(admin)
    .await
    .expect("list databases");
    for Name { datname } in names {
        let pid = datname[prefix.len()..].split('_').next().and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .await;
        }
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("name", &self.name).field("url", &self.url).finish()
    }
}

/// Runs SQL text as written, through the simple query protocol, on a plain
/// connection: how an operator's psql session would run it.
pub async fn run_sql(connection: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<()> {
    connection.batch_execute(sql).await
}

/// Runs `sql` and returns how many rows it affected (or returned).
pub async fn execute(connection: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<usize> {
    diesel::sql_query(sql).execute(connection).await
}

/// Inserts `count` ready jobs with an empty request in one statement, as a
/// backlog for plans and drains; returns how many went in.
pub async fn insert_ready_jobs(
    connection: &mut AsyncPgConnection,
    count: u32,
) -> diesel::QueryResult<usize> {
    let sql = format!(
        "INSERT INTO greenlight_queue (learner_id, request_payload) \
         SELECT gen_random_uuid(), '{{}}' FROM generate_series(1, {count})"
    );
    execute(connection, &sql).await
}
