//! What every test of the binary shares: running it against a database
//! and reading what it printed.

#![allow(dead_code, reason = "each test binary uses its own part of the helpers")]
#![allow(unreachable_pub, reason = "test helpers, not a public API")]

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use greenlight_testkit::postgres::{TestDb, execute};
use serde_json::Value;

pub const LEARNER: &str = "5f0c3f8e-9a43-4c59-9d7e-0d3f2c0b6a11";

/// A database URL where nothing listens.
pub const UNREACHABLE: &str = "postgres://postgres@127.0.0.1:1/x";

/// The binary, pointed at `url`, with logs at their default level.
pub fn greenlight(url: &str) -> Command {
    let mut command = cargo_bin_cmd!("greenlight");
    command.arg("--database-url").arg(url).env_remove("RUST_LOG").env_remove("DATABASE_URL");
    command
}

/// Runs the binary and returns its stdout, failing the test with stderr
/// when it does not exit 0.
pub fn run_ok(url: &str, args: &[&str]) -> String {
    let output = greenlight(url).args(args).output().expect("run greenlight");
    assert!(
        output.status.success(),
        "greenlight {args:?} failed with {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 stdout")
}

pub fn run_json(url: &str, args: &[&str]) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    serde_json::from_str(&run_ok(url, &with_json)).expect("JSON on stdout")
}

/// Runs the binary expecting failure with `code`, and returns its stderr,
/// checked to be exactly one line.
pub fn run_failing(url: &str, args: &[&str], code: i32) -> String {
    let output = greenlight(url).args(args).output().expect("run greenlight");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "greenlight {args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "greenlight {args:?} printed more than one line: {stderr}"
    );
    assert!(output.stdout.is_empty(), "greenlight {args:?} wrote to stdout");
    stderr
}

pub fn enqueue(url: &str, args: &[&str]) -> String {
    let mut all = vec!["enqueue", "--learner", LEARNER];
    all.extend_from_slice(args);
    run_ok(url, &all).trim().to_owned()
}

pub fn show(url: &str, id: &str) -> Value {
    run_json(url, &["show", id])
}

pub async fn count_rows(db: &TestDb) -> usize {
    let mut connection = db.connect().await;
    execute(&mut connection, "SELECT 1 FROM greenlight_queue").await.expect("count rows")
}

/// `work --drain` with short retry delays and polls, so retries run within
/// a second, and the given shell script as the program.
pub fn work_drain(url: &str, script: &str) -> String {
    run_ok(
        url,
        &["work", "--drain", "--retry-base", "100ms", "--poll", "100ms", "--", "sh", "-c", script],
    )
}
