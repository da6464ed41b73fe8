//! `greenlight`: operate the Greenlight job queue from a shell.
//!
//! - [`args`]: the command line (clap), with every value checked as it is
//!   read;
//! - [`commands`]: one function per subcommand, over the PostgreSQL store;
//! - [`process`]: the executor of `greenlight work`, which runs a program
//!   per job; [`reaper`]: the process beside a worker that kills those
//!   programs should the worker be killed outright;
//! - [`demo`]: a simulated workload on the in-memory store;
//! - [`output`]: tables and JSON on stdout; [`progress`]: logs and progress
//!   bars on stderr;
//! - [`error`]: the one error type and its exit codes: 0 done, 1 the
//!   command could not do its work, 2 bad input (nothing was written).
//!
//! README.md documents every command with an example.

mod args;
mod commands;
mod demo;
mod duration;
mod error;
mod output;
mod process;
mod progress;
mod reaper;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|first| first == reaper::ARGUMENT) {
        return reaper::run();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let quiet_by_default = matches!(cli.command, Command::Demo(_));
    progress::init_logging(cli.verbose, cli.quiet, quiet_by_default);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return report(&CliError::failed(format!("cannot start tokio: {error}"))),
    };
    let outcome = runtime.block_on(commands::run(cli));
    // Background tasks (a pool's connections, a listener) have nothing
    // left to do; the process exits without waiting for them.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

fn report(error: &CliError) -> ExitCode {
    eprintln!("error: {}", error.one_line());
    ExitCode::from(error.exit_code())
}

/// Prints help and version as clap does; any other parse error becomes one
/// line on stderr and exit code 2. clap's own rendering adds a usage block
/// and a tip over several lines; only the complaint itself is kept, with
/// any argument names clap listed under it.
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let rendered = error.render().to_string();
    let complaint: Vec<&str> =
        rendered.lines().map(str::trim).take_while(|line| !line.is_empty()).collect();
    let line = complaint.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    report(&CliError::input(line))
}
