//! The in-memory store's full lifecycles: enqueue, claim, complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight::memory::MemoryStore;
use greenlight::{ClaimRequest, LearnerId, NewJob, Store, WorkerId};
use serde_json::json;

use crate::raw::payload;
use crate::{Budget, Rate, Result, Scale};

/// Tasks sharing one store in the concurrent phase: a few per core of the
/// reference machine, enough to contend for the store's lock.
pub(crate) const TASKS: usize = 4;

/// The store's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryFigures {
    pub(crate) one_thread: Rate,
    pub(crate) tasks: Rate,
}

impl MemoryFigures {
    /// The best rate of each figure over two rounds.
    pub(crate) fn best(self, other: Self) -> Self {
        Self {
            one_thread: self.one_thread.best(other.one_thread),
            tasks: self.tasks.best(other.tasks),
        }
    }
}

pub(crate) fn run(scale: Scale) -> Result<MemoryFigures> {
    // One thread: a current-thread runtime, one task, no contention.
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(lifecycles(1, scale.memory_lifecycles, scale.phase_limit))?;
    // Several tasks on a runtime with a thread per core.
    let tasks = tokio::runtime::Builder::new_multi_thread().build()?.block_on(lifecycles(
        TASKS,
        scale.memory_lifecycles,
        scale.phase_limit,
    ))?;
    Ok(MemoryFigures { one_thread, tasks })
}

/// Runs `total` lifecycles from `tasks` tasks on one fresh store.
async fn lifecycles(tasks: usize, total: usize, limit: Duration) -> Result<Rate> {
    let store = MemoryStore::new();
    let budget = Budget::new(total, limit);
    let job = NewJob::builder(LearnerId::random(), payload()).build()?;
    let request = ClaimRequest {
        worker_id: WorkerId::new("bench")?,
        limit: 1,
        lease: Duration::from_secs(30),
    };

    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, budget, job, request) =
                (store.clone(), Arc::clone(&budget), job.clone(), request.clone());
            tokio::spawn(async move {
                let mut done = 0_u64;
                while budget.take(1) == 1 {
                    store.enqueue(job.clone()).await?;
                    for claimed in store.claim(&request).await? {
                        store.complete(claimed, json!({})).await?;
                        done += 1;
                    }
                }
                Ok::<_, crate::BoxError>(done)
            })
        })
        .collect();
    let mut jobs = 0;
    for handle in handles {
        jobs += handle.await??;
    }
    Ok(Rate { jobs, elapsed: started.elapsed() })
}
