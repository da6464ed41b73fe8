//! What a worker runs for each job.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use greenlight_core::{Error, Executing, ExecutionId, Job, Store};
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Runs one job: calls Greenlight with the job's request and returns its
/// result.
///
/// The worker handles everything else: the lease, heartbeats, retries,
/// panics (caught and retried), timeouts and shutdown. An executor should
/// watch [`JobContext::cancelled`] in its long waits, so that a lost lease
/// or a shutdown stops it promptly; if it does not, its future is dropped
/// at the next await point anyway.
///
/// ```
/// use greenlight_core::{Executing, Job};
/// use greenlight_worker::{ExecuteError, Executor, JobContext};
/// use serde_json::{Value, json};
///
/// struct Echo;
///
/// #[greenlight_core::async_trait]
/// impl Executor for Echo {
///     async fn execute(&self, job: &Job<Executing>, _: &JobContext) -> Result<Value, ExecuteError> {
///         match job.data().request_payload.get("code") {
///             Some(code) => Ok(json!({ "echo": code })),
///             None => Err(ExecuteError::permanent("the request has no code")),
///         }
///     }
/// }
/// ```
#[greenlight_core::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `job`; `context` records the Greenlight execution id and tells
    /// when to stop.
    async fn execute(
        &self,
        job: &Job<Executing>,
        context: &JobContext,
    ) -> Result<Value, ExecuteError>;
}

/// Why an execution failed, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// Another attempt may succeed (a timeout, Greenlight unavailable). The
    /// job is retried while its retries last.
    #[error("{0}")]
    Retryable(String),
    /// Every attempt would fail the same way (a malformed request). The job
    /// fails for good at once.
    #[error("{0}")]
    Permanent(String),
}

impl ExecuteError {
    /// A failure that another attempt may not repeat.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self::Retryable(message.to_string())
    }

    /// A failure that every attempt would repeat.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::Permanent(message.to_string())
    }
}

/// An executor made from an async closure that takes the job and its
/// context by value, handy in tests and small programs.
///
/// ```
/// use greenlight_worker::{FnExecutor, ExecuteError};
/// use serde_json::json;
///
/// let executor = FnExecutor::new(|job, _context| async move {
///     Ok::<_, ExecuteError>(json!({ "attempt": job.attempt() }))
/// });
/// ```
#[derive(Clone)]
pub struct FnExecutor<F> {
    function: F,
}

impl<F> FnExecutor<F> {
    /// Wraps `function`.
    pub fn new<Fut>(function: F) -> Self
    where
        F: Fn(Job<Executing>, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ExecuteError>> + Send + 'static,
    {
        Self { function }
    }
}

impl<F> fmt::Debug for FnExecutor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnExecutor")
    }
}

#[greenlight_core::async_trait]
impl<F, Fut> Executor for FnExecutor<F>
where
    F: Fn(Job<Executing>, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ExecuteError>> + Send + 'static,
{
    async fn execute(
        &self,
        job: &Job<Executing>,
        context: &JobContext,
    ) -> Result<Value, ExecuteError> {
        (self.function)(job.clone(), context.clone()).await
    }
}

/// What an executor can do besides returning: record the Greenlight
/// execution id, and learn when to stop. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    store: Arc<dyn Store>,
    job: Arc<Mutex<Job<Executing>>>,
    cancel: CancellationToken,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.current().id())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        job: Arc<Mutex<Job<Executing>>>,
        cancel: CancellationToken,
    ) -> Self {
        Self { store, job, cancel }
    }

    /// The job as the worker holds it now (a heartbeat moves its lease).
    pub fn current(&self) -> Job<Executing> {
        // The lock guards a plain value that a panic cannot leave half
        // written, so a poisoned lock is still safe to read.
        self.job.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The Greenlight execution id stored on the job, if an earlier attempt
    /// (perhaps on another worker that crashed) recorded one. An executor
    /// that finds one should resume polling that execution instead of
    /// submitting the request again.
    pub fn execution_id(&self) -> Option<ExecutionId> {
        self.current().data().execution_id.clone()
    }

    /// Stores the Greenlight execution id at once, before waiting for the
    /// result, so that whoever runs the job next can resume it.
    ///
    /// Fails with [`Error::LeaseLost`] when the job has been taken back, in
    /// which case the executor should stop; the worker discards its result.
    pub async fn record_execution_id(&self, execution_id: ExecutionId) -> Result<(), Error> {
        let held = self.current();
        let updated = self.store.record_execution_id(&held, execution_id).await?;
        *self.job.lock().unwrap_or_else(PoisonError::into_inner) = updated;
        Ok(())
    }

    /// Resolves when the executor should stop: the lease was lost, the job
    /// timed out, or the worker is shutting down past its grace period.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether [`JobContext::cancelled`] has fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
