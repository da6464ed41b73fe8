//! The reaper: a small process beside `greenlight work` that kills the
//! programs of its jobs if the worker dies without doing so itself.
//!
//! A worker that ends in any ordinary way (the job ends, times out, loses
//! its lease; a shutdown) kills each program's process group itself. One
//! that is killed outright (SIGKILL, the out-of-memory killer, a panic that
//! aborts) cannot, and its programs would run on with nobody to read their
//! output, while the queue hands their jobs to another worker once the
//! leases expire: the same submission running twice at once.
//!
//! So `work` starts this binary again as a reaper (a hidden argument,
//! [`ARGUMENT`]) with a pipe to its stdin, and tells it, one line each,
//! which process groups to watch (`+<pgid>`) and which have ended
//! (`-<pgid>`). The pipe closes when the worker's process ends, however it
//! ends; the reaper then kills every group still watched and exits. It runs
//! in a process group of its own, so a Ctrl-C meant for the worker does not
//! reach it, and it ignores SIGINT, SIGTERM and SIGHUP: it ends with the
//! pipe, never before the worker.
//!
//! What it cannot cover: a worker killed between starting a program and
//! sending its line (a few microseconds), and a reaper killed with SIGKILL.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{ChildStdin, ExitCode, Stdio};
use std::sync::{Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::warn;

use crate::process::kill_group;

/// The first argument that makes the binary a reaper. Not a subcommand:
/// it is not for people to type, and clap never sees it.
pub(crate) const ARGUMENT: &str = "__greenlight-reaper";

/// The worker's end: the pipe to a running reaper.
#[derive(Debug)]
pub(crate) struct Reaper {
    /// `None` once a write failed (the reaper is gone): the worker goes on
    /// without one, as it would without the feature.
    stdin: Mutex<Option<ChildStdin>>,
}

impl Reaper {
    /// Starts a reaper: this binary, run again with [`ARGUMENT`].
    pub(crate) fn start() -> std::io::Result<Self> {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command.arg(ARGUMENT).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::inherit());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // Not waited for: it exits when this process does, and is then
        // nobody's child to wait for.
        let stdin = command.spawn()?.stdin.take();
        Ok(Self { stdin: Mutex::new(stdin) })
    }

    /// From now on, the process group `group` is killed should the worker
    /// die.
    pub(crate) fn watch(&self, group: u32) {
        self.send(&format!("+{group}\n"));
    }

    /// The process group `group` has been killed; it is no longer watched
    /// (its id may be reused by another group).
    pub(crate) fn release(&self, group: u32) {
        self.send(&format!("-{group}\n"));
    }

    fn send(&self, line: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pipe) = stdin.as_mut() else { return };
        // A line is far shorter than a pipe's atomic write, and the reaper
        // reads as lines come: this does not block.
        if let Err(error) = pipe.write_all(line.as_bytes()) {
            warn!(
                %error,
                "the reaper is gone: programs would outlive a worker that is killed outright"
            );
            *stdin = None;
        }
    }
}

/// The reaper's own process: reads the worker's lines until the pipe
/// closes, then kills every group still watched.
pub(crate) fn run() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: the reaper cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    let watched = runtime.block_on(read_until_closed());
    let left = watched.len();
    for group in watched {
        kill_group(Some(group));
    }
    if left > 0 {
        // Not eprintln!, which panics when stderr is gone (a closed
        // terminal may be why the worker ended).
        let _ = writeln!(
            std::io::stderr(),
            "greenlight: the worker ended without stopping the programs of {left} job(s); \
             they were killed"
        );
    }
    ExitCode::SUCCESS
}

/// The groups watched when the worker's end of the pipe closed.
async fn read_until_closed() -> HashSet<u32> {
    // Holding these streams keeps the signals from ending the process.
    #[cfg(unix)]
    let _ignored: Vec<_> = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()]
            .into_iter()
            .filter_map(|kind| signal(kind).ok())
            .collect()
    };
    let mut watched = HashSet::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // A read error is the pipe gone as much as its end is.
    while let Ok(Some(line)) = lines.next_line().await {
        apply(&mut watched, &line);
    }
    watched
}

/// One line of the worker's: `+<pgid>` or `-<pgid>`. Anything else is
/// ignored; only the worker writes here.
fn apply(watched: &mut HashSet<u32>, line: &str) {
    let (sign, group) = line.split_at_checked(1).unwrap_or(("", ""));
    // A child's process group is its pid: never 0, which `killpg` would
    // take for the reaper's own group, and never 1.
    let Some(group) = group.parse::<u32>().ok().filter(|&group| group > 1) else { return };
    match sign {
        "+" => {
            watched.insert(group);
        }
        "-" => {
            watched.remove(&group);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_watch_and_release_groups() {
        let mut watched = HashSet::new();
        for line in ["+10", "+11", "-10", "+12", "junk", "", "+", "-x", "*13", "+-1", "+0", "+1"] {
            apply(&mut watched, line);
        }
        assert_eq!(watched, HashSet::from([11, 12]));
    }
}
