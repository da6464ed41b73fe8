//! The executor of `greenlight work`: runs a program once per job.
//!
//! The contract with the program, which README.md repeats for its authors:
//!
//! - stdin: the job's request payload as JSON, then end of file;
//! - environment: `GREENLIGHT_JOB_ID`, `GREENLIGHT_ATTEMPT`,
//!   `GREENLIGHT_LEARNER_ID`, and `GREENLIGHT_ATOM_ID` and
//!   `GREENLIGHT_EXECUTION_ID` when the job has them;
//! - stdout: the result as JSON (empty stdout is `{}`);
//! - stderr: free text, except that a line `greenlight:execution-id=ID`
//!   records Greenlight's execution id on the job at once, while the
//!   program keeps running;
//! - exit 0 completes the job; exit 65 (`EX_DATAERR`: the request itself is
//!   bad) fails it for good; any other exit, death by a signal, stdout that
//!   is not JSON, or running past the timeout is a retryable failure whose
//!   message ends with the last lines of stderr.
//!
//! The program is killed (SIGKILL) when its job times out, when the lease
//! is lost, and when the worker shuts down past its grace period. It runs
//! in a process group of its own, so a Ctrl-C at the terminal reaches the
//! worker, which shuts down gracefully, and not the running programs,
//! which get the grace period to finish. When the program ends, however it
//! ends, whatever it left running in that group is killed too: its result
//! is what it wrote before it exited (read for a further 250 ms at most),
//! and a background process holding its output does not hold the job.
//! Should the worker itself be killed outright, the [`Reaper`] kills the
//! groups it left.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use greenlight_core::serde_json::{self, Value, json};
use greenlight_core::{Error, Executing, ExecutionId, Job};
use greenlight_worker::{ExecuteError, Executor, JobContext};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tracing::{debug, info, warn};

use crate::duration::Human;
use crate::reaper::Reaper;

/// The exit code that fails a job for good: `EX_DATAERR` from sysexits.h,
/// "the input data was incorrect", which is what a permanent failure means.
pub(crate) const PERMANENT_EXIT_CODE: i32 = 65;

/// The stderr line prefix that records an execution id.
pub(crate) const EXECUTION_ID_MARKER: &str = "greenlight:execution-id=";

/// The most stdout kept. Results over the queue's 1 MiB payload limit are
/// refused anyway; reading a little past it lets the message say so.
const MAX_STDOUT_BYTES: usize = 1024 * 1024 + 1;

/// The most stderr a failure message carries: its last 2 KiB, enough for
/// an error and the end of a traceback, and well under the 8 KiB the queue
/// keeps of an error message.
const MAX_STDERR_TAIL_BYTES: usize = 2 * 1024;

/// The longest stderr line looked at; the rest of a longer line is
/// dropped, so a program that never prints a newline cannot exhaust memory.
const MAX_LINE_BYTES: usize = 4 * 1024;

/// Runs `program` with `args` for each job; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ProcessExecutor {
    program: String,
    args: Vec<String>,
    timeout: Duration,
    /// Told of every program's process group while it runs.
    reaper: Option<Arc<Reaper>>,
}

impl ProcessExecutor {
    /// An executor for `command` (the program, then its arguments) that
    /// kills a run after `timeout`, and tells `reaper` of each program's
    /// process group while it runs. `command` must not be empty.
    pub(crate) fn new(command: &[String], timeout: Duration, reaper: Option<Arc<Reaper>>) -> Self {
        let (program, args) = command.split_first().expect("clap requires a command");
        Self { program: program.clone(), args: args.to_vec(), timeout, reaper }
    }

    fn command(&self, job: &Job<Executing>, context: &JobContext) -> Command {
        let data = job.data();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("GREENLIGHT_JOB_ID", data.id.to_string())
            .env("GREENLIGHT_ATTEMPT", data.attempt.to_string())
            .env("GREENLIGHT_LEARNER_ID", data.learner_id.to_string());
        #[cfg(unix)]
        command.process_group(0);
        // Unset rather than inherited: a worker started from a shell that
        // has these set must not hand a stale value to every job.
        match data.atom_id {
            Some(atom_id) => command.env("GREENLIGHT_ATOM_ID", atom_id.to_string()),
            None => command.env_remove("GREENLIGHT_ATOM_ID"),
        };
        match context.execution_id() {
            Some(execution_id) => command.env("GREENLIGHT_EXECUTION_ID", execution_id.as_str()),
            None => command.env_remove("GREENLIGHT_EXECUTION_ID"),
        };
        command
    }
}

#[greenlight_core::async_trait]
impl Executor for ProcessExecutor {
    async fn execute(
        &self,
        job: &Job<Executing>,
        context: &JobContext,
    ) -> Result<Value, ExecuteError> {
        let mut child = self.command(job, context).spawn().map_err(|error| {
            // Retryable: a missing program is the worker's setup, not the
            // job's fault; once it is fixed the job should run.
            ExecuteError::retryable(format!("cannot start {:?}: {error}", self.program))
        })?;
        // From here on, every way out kills the program's group.
        let group = Group::new(child.id(), self.reaper.as_deref());
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams were set to piped");
        };
        let payload = serde_json::to_vec(&job.data().request_payload).map_err(|error| {
            ExecuteError::permanent(format!("cannot encode the request: {error}"))
        })?;
        let tail = Arc::new(Mutex::new(Tail::default()));
        let out = Mutex::new(Stdout::default());

        let run = async {
            let streams = async {
                tokio::try_join!(
                    read_bounded(stdout, &out),
                    watch_stderr(stderr, context, Arc::clone(&tail)),
                    async {
                        feed(stdin, &payload).await;
                        Ok(())
                    },
                )
            };
            tokio::pin!(streams);
            let wait_error =
                |error| ExecuteError::retryable(format!("cannot wait for the program: {error}"));
            tokio::select! {
                // The usual end: the program closed its output and exits.
                streams = &mut streams => {
                    streams?;
                    child.wait().await.map_err(wait_error)
                }
                // It exited first: the rest of its output is read for a
                // moment, then whatever it left holding the pipes is
                // killed rather than waited for.
                status = child.wait() => {
                    let status = status.map_err(wait_error)?;
                    if let Ok(streams) = tokio::time::timeout(READ_AFTER_EXIT, &mut streams).await {
                        streams?;
                    } else {
                        warn!(
                            "the program exited but left a process holding its output; \
                             that process is killed"
                        );
                    }
                    Ok(status)
                }
            }
        };

        // Leaving this function drops the child, and kill_on_drop kills it:
        // that is how the timeout and a cancellation stop the program.
        // Whatever it started in its process group goes too, on every way
        // out, when `group` is dropped.
        let tail_text = || tail.lock().unwrap_or_else(PoisonError::into_inner).text();
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = context.cancelled() => {
                Err(ExecuteError::retryable("killed: the lease was lost or the worker is stopping"))
            }
            () = tokio::time::sleep(self.timeout) => {
                let what = format!("killed after the timeout of {}", Human(self.timeout));
                Err(ExecuteError::retryable(with_stderr(&what, &tail_text())))
            }
        };
        drop(group);
        let status = outcome?;
        let stdout = out.into_inner().unwrap_or_else(PoisonError::into_inner);
        interpret(status, &stdout, &tail_text())
    }
}

/// Turns the program's exit and output into the job's outcome.
fn interpret(status: ExitStatus, stdout: &Stdout, stderr: &str) -> Result<Value, ExecuteError> {
    match status.code() {
        Some(0) => {
            if stdout.overflowed {
                return Err(ExecuteError::permanent(format!(
                    "the result on stdout is over {} bytes",
                    MAX_STDOUT_BYTES - 1
                )));
            }
            let text = String::from_utf8_lossy(&stdout.bytes);
            if text.trim().is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_str(&text).map_err(|error| {
                let what = format!("stdout is not JSON ({error})");
                ExecuteError::retryable(with_stderr(&what, stderr))
            })
        }
        Some(PERMANENT_EXIT_CODE) => Err(ExecuteError::permanent(with_stderr(
            &format!("exited with status {PERMANENT_EXIT_CODE} (permanent failure)"),
            stderr,
        ))),
        Some(code) => {
            Err(ExecuteError::retryable(with_stderr(&format!("exited with status {code}"), stderr)))
        }
        None => Err(ExecuteError::retryable(with_stderr(&killed_by(status), stderr))),
    }
}

#[cfg(unix)]
fn killed_by(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => format!("ended without an exit code ({status})"),
    }
}

#[cfg(not(unix))]
fn killed_by(status: ExitStatus) -> String {
    format!("ended without an exit code ({status})")
}

fn with_stderr(what: &str, stderr: &str) -> String {
    if stderr.is_empty() { what.to_owned() } else { format!("{what}; stderr: {stderr}") }
}

/// Writes the request and closes stdin. A program that exits without
/// reading its input closes the pipe; that is its business, not an error.
async fn feed(mut stdin: tokio::process::ChildStdin, payload: &[u8]) {
    if let Err(error) = stdin.write_all(payload).await {
        debug!(%error, "the program did not read all of its input");
    }
    drop(stdin);
}

/// What the program wrote on stdout, up to the bound.
#[derive(Debug, Default)]
struct Stdout {
    bytes: Vec<u8>,
    overflowed: bool,
}

/// Reads stdout to its end into `out`, keeping at most
/// [`MAX_STDOUT_BYTES`]. The rest is read and dropped, so the program never
/// blocks on a full pipe. What was read stays in `out` if the reading is
/// stopped before the end.
async fn read_bounded(
    mut stream: impl AsyncRead + Unpin,
    out: &Mutex<Stdout>,
) -> Result<(), ExecuteError> {
    let mut chunk = [0u8; 8192];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| ExecuteError::retryable(format!("cannot read stdout: {error}")))?;
        if read == 0 {
            return Ok(());
        }
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_STDOUT_BYTES - out.bytes.len();
        out.bytes.extend_from_slice(&chunk[..read.min(room)]);
        out.overflowed |= read > room;
    }
}

/// How long the program's output is still read after the program itself
/// has exited: what it wrote is already in the pipes, so this only bounds
/// the wait for a process it left behind holding them.
const READ_AFTER_EXIT: Duration = Duration::from_millis(250);

/// A running program's process group (its id is the program's pid): killed,
/// with whatever is left in it, when this is dropped, and watched by the
/// reaper until then.
struct Group<'a> {
    pid: Option<u32>,
    reaper: Option<&'a Reaper>,
}

impl<'a> Group<'a> {
    fn new(pid: Option<u32>, reaper: Option<&'a Reaper>) -> Self {
        if let (Some(pid), Some(reaper)) = (pid, reaper) {
            reaper.watch(pid);
        }
        Self { pid, reaper }
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        kill_group(self.pid);
        if let (Some(pid), Some(reaper)) = (self.pid, self.reaper) {
            reaper.release(pid);
        }
    }
}

/// Kills what is left of the program's process group (it runs in one of
/// its own, whose id is its pid): the background processes it started.
/// Nothing to do, and no error, when the group is already empty.
#[cfg(unix)]
pub(crate) fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;

    let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) else { return };
    match killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) => debug!(group = pid, "killed what the program left running"),
        Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => warn!(%error, group = pid, "cannot kill the program's process group"),
    }
}

#[cfg(not(unix))]
pub(crate) fn kill_group(_pid: Option<u32>) {}

/// Reads stderr line by line while the program runs: records execution
/// ids as they appear and keeps the tail for failure messages. Fails only
/// when recording an id finds the lease lost, which stops the run.
async fn watch_stderr(
    mut stream: impl AsyncRead + Unpin,
    context: &JobContext,
    tail: Arc<Mutex<Tail>>,
) -> Result<(), ExecuteError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            if !line.is_empty() {
                on_line(&line, context, &tail).await?;
            }
            return Ok(());
        }
        for &byte in &chunk[..read] {
            if byte == b'\n' {
                on_line(&line, context, &tail).await?;
                line.clear();
            } else if line.len() < MAX_LINE_BYTES {
                line.push(byte);
            }
        }
    }
}

async fn on_line(
    line: &[u8],
    context: &JobContext,
    tail: &Mutex<Tail>,
) -> Result<(), ExecuteError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let Some(id) = text.strip_prefix(EXECUTION_ID_MARKER) else {
        tail.lock().unwrap_or_else(PoisonError::into_inner).push(text);
        return Ok(());
    };
    let execution_id = match ExecutionId::new(id.trim()) {
        Ok(execution_id) => execution_id,
        Err(error) => {
            warn!(%error, "the program printed an execution id the queue refuses; ignored");
            return Ok(());
        }
    };
    match context.record_execution_id(execution_id.clone()).await {
        Ok(()) => {
            info!(%execution_id, "recorded the execution id");
            Ok(())
        }
        Err(error @ Error::LeaseLost { .. }) => Err(ExecuteError::retryable(error)),
        Err(error) => {
            warn!(%error, %execution_id, "cannot record the execution id; the program goes on");
            Ok(())
        }
    }
}

/// The last lines of stderr, at most [`MAX_STDERR_TAIL_BYTES`] in all.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: &str) {
        let line: String = if line.len() > MAX_STDERR_TAIL_BYTES {
            // Keep the end of an overlong line, cut at a character boundary.
            let mut start = line.len() - MAX_STDERR_TAIL_BYTES;
            while !line.is_char_boundary(start) {
                start += 1;
            }
            line[start..].to_owned()
        } else {
            line.to_owned()
        };
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > MAX_STDERR_TAIL_BYTES {
            let Some(dropped) = self.lines.pop_front() else { break };
            self.bytes -= dropped.len() + 1;
        }
    }

    fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            let _ = writeln!(text, "{line}");
        }
        text.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_within_its_bound() {
        let mut tail = Tail::default();
        for n in 0..1_000 {
            tail.push(&format!("line {n}"));
        }
        let text = tail.text();
        assert!(text.len() <= MAX_STDERR_TAIL_BYTES);
        assert!(text.ends_with("line 999"));
        assert!(!text.contains("line 1\n"));
    }

    #[test]
    fn an_overlong_line_keeps_its_end() {
        let mut tail = Tail::default();
        tail.push(&format!("{}END", "é".repeat(MAX_STDERR_TAIL_BYTES)));
        let text = tail.text();
        assert!(text.len() <= MAX_STDERR_TAIL_BYTES);
        assert!(text.ends_with("END"));
    }
}
