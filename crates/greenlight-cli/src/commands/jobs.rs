//! The operator's commands: `migrate`, `stats`, `list`, `show`, `retry`,
//! `cancel` and `prune`.

use greenlight_core::serde_json::json;
use greenlight_core::{AnyJob, Error, JobRecord, ListFilter, PruneRequest, Status, Store};

use super::open;
use crate::args::{CancelArgs, ListArgs, PruneArgs, RetryArgs, ShowArgs};
use crate::error::{CliError, CliResult};
use crate::output;

/// Jobs per page when `retry --all-failed` walks the failed jobs.
const REQUEUE_PAGE: usize = 500;

/// Rows per `prune` call: small enough that one delete holds few locks,
/// large enough that a big backlog takes few round trips.
const PRUNE_BATCH: usize = 1_000;

/// `greenlight migrate`.
pub(crate) async fn migrate(url: &str, json: bool) -> CliResult {
    greenlight_postgres::migrate(url).await?;
    if json {
        output::print_json(&json!({"migrated": true}))
    } else {
        output::print_text("migrations applied\n")
    }
}

/// `greenlight stats`.
pub(crate) async fn stats(url: &str, json: bool) -> CliResult {
    let stats = open(url)?.stats().await?;
    if json {
        output::print_json(&output::stats_json(&stats))
    } else {
        output::print_text(&output::stats_table(&stats))
    }
}

/// `greenlight list`.
pub(crate) async fn list(url: &str, args: &ListArgs, json: bool) -> CliResult {
    let filter = ListFilter {
        status: args.status,
        learner_id: args.learner,
        limit: args.limit,
        after: None,
    };
    filter.validate()?;
    let page = open(url)?.list(&filter).await?;
    if json {
        let records: Vec<JobRecord> = page.jobs.iter().map(AnyJob::to_record).collect();
        output::print_json(&records)
    } else {
        output::print_text(&output::job_table(&page.jobs))
    }
}

/// `greenlight show`.
pub(crate) async fn show(url: &str, args: &ShowArgs, json: bool) -> CliResult {
    let job = open(url)?
        .get(args.id)
        .await?
        .ok_or_else(|| CliError::from(Error::NotFound { id: args.id }))?;
    if json {
        output::print_json(&job.to_record())
    } else {
        output::print_text(&output::job_detail(&job))
    }
}

/// `greenlight retry ID` and `greenlight retry --all-failed`.
pub(crate) async fn retry(url: &str, args: &RetryArgs, json: bool) -> CliResult {
    let store = open(url)?;
    if let Some(id) = args.id {
        let job = store.requeue(id).await?;
        return if json {
            output::print_json(&job)
        } else {
            output::print_text(&format!("job {id} is pending again\n"))
        };
    }

    // Page through the failed jobs, newest first. A requeued job leaves
    // the filter, and the cursor moves past each page, so every job that
    // was failed when the walk reached it is visited once.
    let mut requeued = 0u64;
    let mut filter =
        ListFilter { status: Some(Status::Failed), limit: REQUEUE_PAGE, ..ListFilter::default() };
    loop {
        let page = store.list(&filter).await?;
        for job in &page.jobs {
            match store.requeue(job.id()).await {
                Ok(_) => requeued += 1,
                // Changed or deleted by someone else since the page was
                // read: nothing to do for it.
                Err(Error::WrongState { .. } | Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    if json {
        output::print_json(&json!({"requeued": requeued}))
    } else {
        output::print_text(&format!("requeued {requeued} failed jobs\n"))
    }
}

/// `greenlight cancel`.
pub(crate) async fn cancel(url: &str, args: &CancelArgs, json: bool) -> CliResult {
    if args.reason.trim().is_empty() {
        return Err(CliError::input("invalid --reason: must not be empty"));
    }
    let job = open(url)?.cancel(args.id, &args.reason).await?;
    if json {
        output::print_json(&job)
    } else {
        output::print_text(&format!("job {} cancelled\n", args.id))
    }
}

/// `greenlight prune`.
pub(crate) async fn prune(url: &str, args: &PruneArgs, json: bool) -> CliResult {
    let statuses = match args.status {
        Some(status) => vec![status],
        None => vec![Status::Complete, Status::Failed],
    };
    let requests: Vec<PruneRequest> = statuses
        .into_iter()
        .map(|status| PruneRequest { status, older_than: args.older_than, batch_size: PRUNE_BATCH })
        .collect();
    for request in &requests {
        request.validate()?;
    }

    let store = open(url)?;
    let mut complete = 0u64;
    let mut failed = 0u64;
    for request in &requests {
        let counter = if request.status == Status::Complete { &mut complete } else { &mut failed };
        loop {
            let deleted = store.prune(request).await?;
            *counter += deleted;
            if deleted == 0 {
                break;
            }
        }
    }
    let total = complete + failed;
    if json {
        output::print_json(&json!({"pruned": total, "complete": complete, "failed": failed}))
    } else {
        output::print_text(&format!("pruned {total} jobs ({complete} complete, {failed} failed)\n"))
    }
}
