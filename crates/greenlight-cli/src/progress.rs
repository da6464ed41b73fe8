//! Logs and live progress on stderr, without one garbling the other.
//!
//! Logs go through `tracing`; the level comes from `RUST_LOG` when it is
//! set, else from `-v`/`-q`. While a progress bar is on screen, each log
//! line is written with the bar cleared and redrawn after it, so a warning
//! about a retry never lands in the middle of the bar.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The bar on screen, if any; log lines suspend it while they print.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The levels `-q`/`-v` step through, quietest first; the default is
/// `warn` (index 2): retries, lost leases and failures, but not every job.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Installs the log subscriber. `quiet_by_default` starts from `off`
/// instead of `warn` (the demo, whose simulated failures would flood the
/// screen); any `-v` brings the normal scale back.
pub(crate) fn init_logging(verbose: u8, quiet: u8, quiet_by_default: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => {
            let level = if quiet_by_default && verbose == 0 {
                0
            } else {
                (2 + usize::from(verbose)).saturating_sub(usize::from(quiet)).min(LEVELS.len() - 1)
            };
            EnvFilter::new(LEVELS[level])
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .init();
}

/// Whether live progress can be drawn: stderr is a terminal.
pub(crate) fn is_interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `total` steps on stderr, registered so logs suspend it.
pub(crate) fn bar(total: u64) -> ProgressBar {
    let style = ProgressStyle::with_template("{bar:40.green/dim} {pos}/{len} {msg}")
        .expect("the template is a valid constant")
        .progress_chars("█▉▊▋▌▍▎▏ ");
    register(
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style),
    )
}

/// A one-line spinner with a message, on stderr, registered so logs
/// suspend it.
pub(crate) fn spinner() -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg}").expect("a valid constant");
    let spinner =
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    spinner.enable_steady_tick(Duration::from_millis(120));
    register(spinner)
}

fn register(bar: ProgressBar) -> ProgressBar {
    *BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
    bar
}

/// Clears the bar from the screen and stops logs from suspending it.
pub(crate) fn finish(bar: &ProgressBar) {
    bar.finish_and_clear();
    *BAR.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Writes log lines to stderr, around the progress bar when one is shown.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // The subscriber formats a whole event and writes it in one call,
        // so one suspension covers one log line.
        let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(bytes))?,
            None => std::io::stderr().write_all(bytes)?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
