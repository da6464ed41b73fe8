//! Batches completions into `complete_many` calls.
//!
//! Job tasks hand their results to one completer task and wait for the
//! answer. The completer takes whatever has queued up while its previous
//! write was in flight and writes it in one call: under load, completions
//! batch themselves; when idle, a lone completion is written at once. No
//! timer holds a result back.

use std::sync::Arc;

use greenlight_core::{Complete, Error, Executing, Job, Result};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::backoff::Backoff;
use crate::worker::Shared;

/// The most completions one write carries.
const MAX_COMPLETIONS_PER_WRITE: usize = 500;

type Reply = oneshot::Sender<Result<Job<Complete>>>;

pub(crate) struct Completion {
    pub(crate) job: Job<Executing>,
    pub(crate) result: Value,
    pub(crate) reply: Reply,
}

pub(crate) type CompletionSender = mpsc::UnboundedSender<Completion>;

pub(crate) async fn run(shared: Arc<Shared>, mut completions: mpsc::UnboundedReceiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_COMPLETIONS_PER_WRITE);
    while completions.recv_many(&mut batch, MAX_COMPLETIONS_PER_WRITE).await > 0 {
        gather(&mut completions, &mut batch).await;
        let (items, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|c| ((c.job, c.result), c.reply)).unzip();
        let answers = write(&shared, items).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A job task that stopped waiting (it was aborted) needs no answer.
            let _ = reply.send(answer);
        }
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
async fn write(shared: &Shared, items: Vec<(Job<Executing>, Value)>) -> Vec<Result<Job<Complete>>> {
    let count = items.len();
    let mut backoff = Backoff::default();
    loop {
        match shared.store.complete_many(items.clone()).await {
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
