//! Batches completions into `complete_many` calls.
//!
//! Job tasks hand their results to one completer task, with their slots,
//! and end. The completer takes whatever has queued up and writes it in
//! one call, with up to [`completions_in_flight`] writes at once: under
//! load, completions batch themselves while writes are in flight; when
//! idle, a lone completion is written at once. No timer holds a result
//! back. Once a batch is written, the completer counts and logs each
//! job's outcome in the job's span and frees its slot, so a slot is busy
//! until its job's outcome is written, as when a job task writes a
//! failure itself.
//!
//! [`completions_in_flight`]: crate::WorkerConfig::completions_in_flight

use std::sync::Arc;
use std::sync::atomic::Ordering;

use greenlight_core::{Complete, Error, Executing, Failure, Job, Result};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, Span, error, info, warn};

use crate::backoff::Backoff;
use crate::metrics::Counters;
use crate::worker::{Shared, fail, lease_lost};

/// The most completions one write carries.
const MAX_COMPLETIONS_PER_WRITE: usize = 500;

/// A job's result, handed over by its task with the job's slot.
pub(crate) struct Completion {
    pub(crate) job: Job<Executing>,
    pub(crate) result: Value,
    pub(crate) slot: OwnedSemaphorePermit,
    /// The job's span, so that what is logged of it names the job.
    pub(crate) span: Span,
}

pub(crate) type CompletionSender = mpsc::UnboundedSender<Completion>;

pub(crate) async fn run(shared: Arc<Shared>, mut completions: mpsc::UnboundedReceiver<Completion>) {
    let most = shared.config.completions_in_flight;
    let mut writes = JoinSet::new();
    let mut batch = Vec::with_capacity(MAX_COMPLETIONS_PER_WRITE);
    let mut open = true;
    loop {
        // With a write in flight, another starts only for half a batch or
        // more; less waits to grow, as it would with one writer.
        let worthwhile = writes.is_empty() || !open || batch.len() >= MAX_COMPLETIONS_PER_WRITE / 2;
        if !batch.is_empty() && worthwhile && writes.len() < most {
            let taken =
                std::mem::replace(&mut batch, Vec::with_capacity(MAX_COMPLETIONS_PER_WRITE));
            writes.spawn(write_batch(Arc::clone(&shared), taken).in_current_span());
            continue;
        }
        if !open && batch.is_empty() {
            break;
        }
        let room = MAX_COMPLETIONS_PER_WRITE - batch.len();
        tokio::select! {
            Some(_) = writes.join_next() => {}
            received = completions.recv_many(&mut batch, room),
                if open && batch.len() < MAX_COMPLETIONS_PER_WRITE =>
            {
                if received == 0 {
                    open = false;
                } else {
                    gather(&mut completions, &mut batch).await;
                }
            }
        }
    }
    while writes.join_next().await.is_some() {}
}

/// Writes one batch; then, for each job, counts and logs its outcome in
/// its span and frees its slot.
async fn write_batch(shared: Arc<Shared>, batch: Vec<Completion>) {
    let (items, held): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|c| ((c.job, c.result), (c.slot, c.span))).unzip();
    let answers = write(&shared, &items).await;
    for (((job, _), (slot, span)), answer) in items.into_iter().zip(held).zip(answers) {
        settled(&shared, job, answer).instrument(span).await;
        drop(slot);
        shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts and logs what became of one completion. A result the store
/// refused as invalid (too large, a NUL character) would be refused on
/// every attempt: the job fails for good rather than expire and rerun.
async fn settled(shared: &Shared, job: Job<Executing>, answer: Result<Job<Complete>>) {
    match answer {
        Ok(_) => {
            Counters::add(&shared.counters.completed, 1);
            info!("completed");
        }
        Err(Error::LeaseLost { .. }) => lease_lost(shared),
        Err(Error::InvalidInput { reason, .. }) => {
            let message = format!("the executor's result was refused: {reason}");
            fail(shared, job, Failure::permanent(message)).await;
        }
        Err(error) => error!(
            %error,
            "cannot record the result; the lease will expire and the job will run again"
        ),
    }
}

/// Lets the rest of a burst of completions join the batch before it is
/// written. A claimed batch's jobs tend to finish together, and their
/// completions reach the channel over a few scheduler turns: written as
/// they trickle in, a burst of five hundred became a one-job write and a
/// few partial ones, each a statement and a commit. Each yield gives the
/// job tasks a turn; the first turn that adds nothing ends the wait, so a
/// lone completion on an idle worker is written after one yield.
async fn gather(
    completions: &mut mpsc::UnboundedReceiver<Completion>,
    batch: &mut Vec<Completion>,
) {
    while batch.len() < MAX_COMPLETIONS_PER_WRITE {
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < MAX_COMPLETIONS_PER_WRITE {
            match completions.try_recv() {
                Ok(completion) => batch.push(completion),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

/// Writes one batch, retrying while the storage is unavailable, until the
/// worker's grace period is over. Returns one answer per item.
async fn write(shared: &Shared, items: &[(Job<Executing>, Value)]) -> Vec<Result<Job<Complete>>> {
    let count = items.len();
    let mut backoff = Backoff::default();
    loop {
        match shared.store.complete_many(items.to_vec()).await {
            Ok(answers) if answers.len() == count => return answers,
            Ok(answers) => {
                let message = format!("complete_many answered {} of {count} jobs", answers.len());
                return (0..count).map(|_| Err(Error::storage(message.clone()))).collect();
            }
            Err(error) if error.is_retryable() && !shared.hard_stop.is_cancelled() => {
                let delay = backoff.next_delay();
                warn!(%error, jobs = count, ?delay, "completing failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.hard_stop.cancelled() => {}
                }
            }
            Err(error) => {
                // The error is not Clone; every job gets one of the same
                // kind and words, so each caller can still ask is_retryable.
                let message = error.to_string();
                let retryable = error.is_retryable();
                return (0..count)
                    .map(|_| {
                        Err(if retryable {
                            Error::unavailable(message.clone())
                        } else {
                            Error::storage(message.clone())
                        })
                    })
                    .collect();
            }
        }
    }
}
