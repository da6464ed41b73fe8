//! One function per subcommand, and what they share: opening the store.
//!
//! Every command checks all of its input before it opens the store, so a
//! refused command has written nothing.

mod enqueue;
mod jobs;
mod work;

use std::time::Duration;

use greenlight_core::RetryPolicy;
use greenlight_postgres::PgStore;

use crate::args::{Cli, Command};
use crate::demo;
use crate::error::CliResult;

/// How long opening a connection may take before the command gives up:
/// a healthy local connect takes milliseconds, and an operator at a
/// terminal should not wait long to learn the database is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> CliResult {
    let url = cli.database_url.as_str();
    let json = cli.json;
    match cli.command {
        Command::Demo(args) => demo::run(&args, json).await,
        Command::Migrate => jobs::migrate(url, json).await,
        Command::Enqueue(args) => enqueue::run(url, *args, json).await,
        Command::Work(args) => work::run(url, args, json).await,
        Command::Stats => jobs::stats(url, json).await,
        Command::List(args) => jobs::list(url, &args, json).await,
        Command::Show(args) => jobs::show(url, &args, json).await,
        Command::Retry(args) => jobs::retry(url, &args, json).await,
        Command::Cancel(args) => jobs::cancel(url, &args, json).await,
        Command::Prune(args) => jobs::prune(url, &args, json).await,
    }
}

/// The store for an operator command: a few connections are plenty.
fn open(url: &str) -> CliResult<PgStore> {
    open_with(url, 2, RetryPolicy::default())
}

fn open_with(url: &str, connections: usize, policy: RetryPolicy) -> CliResult<PgStore> {
    Ok(PgStore::builder(url)
        .max_connections(connections)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_policy(policy)
        .build()?)
}
