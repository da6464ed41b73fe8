//! The `greenlight` binary, run as a user runs it, against a real
//! PostgreSQL database of each test's own (`TestDb`: migrated, empty,
//! dropped afterwards).

use std::path::Path;

use greenlight_testkit::postgres::{TestDb, execute, insert_ready_jobs};
use serde_json::Value;

mod common;
use common::{
    LEARNER, UNREACHABLE, count_rows, enqueue, greenlight, run_failing, run_json, run_ok, show,
    work_drain,
};

#[tokio::test]
async fn enqueued_jobs_are_completed_by_a_draining_worker_and_stats_and_list_agree() {
    let db = TestDb::new().await;
    let url = db.url();
    let ids: Vec<String> =
        (1..=3).map(|n| enqueue(url, &["--payload", &format!(r#"{{"n": {n}}}"#)])).collect();

    // The program echoes its input and environment as its result.
    let summary = work_drain(
        url,
        r#"payload=$(cat); printf '{"input": %s, "job": "%s", "attempt": %s}' "$payload" "$GREENLIGHT_JOB_ID" "$GREENLIGHT_ATTEMPT""#,
    );
    assert!(summary.contains("3 completed"), "{summary}");

    for (n, id) in ids.iter().enumerate() {
        let job = show(url, id);
        assert_eq!(job["status"], "complete");
        assert_eq!(job["result_payload"]["input"]["n"], n + 1);
        assert_eq!(job["result_payload"]["job"], id.as_str());
        assert_eq!(job["result_payload"]["attempt"], 1);
    }
    let stats = run_json(url, &["stats"]);
    let listed = run_json(url, &["list", "--status", "complete"]);
    assert_eq!(stats["complete"], 3);
    assert_eq!(stats["pending"], 0);
    assert_eq!(stats["total"], 3);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    assert_eq!(run_json(url, &["list", "--status", "pending"]), serde_json::json!([]));
    let table = run_ok(url, &["list"]);
    assert_eq!(table.lines().filter(|line| line.contains("complete")).count(), 3, "{table}");
}

#[tokio::test]
async fn a_backlog_drains_with_several_claims_and_writes_in_flight() {
    let db = TestDb::new().await;
    let url = db.url();
    let mut conn = db.connect().await;
    assert_eq!(insert_ready_jobs(&mut conn, 40).await.expect("a backlog"), 40);

    let summary = run_ok(
        url,
        &[
            "work",
            "--drain",
            "--concurrency",
            "8",
            "--batch",
            "2",
            "--claims-in-flight",
            "4",
            "--completions-in-flight",
            "3",
            "--",
            "true",
        ],
    );
    assert!(summary.contains("40 completed"), "{summary}");
    let stats = run_json(url, &["stats"]);
    assert_eq!(stats["complete"], 40, "{stats}");
    assert_eq!(stats["total"], 40, "{stats}");
}

#[tokio::test]
async fn a_program_that_fails_twice_then_succeeds_leaves_retry_count_2() {
    let db = TestDb::new().await;
    let url = db.url();
    let counters = tempfile::tempdir().expect("a temporary directory");
    let id = enqueue(url, &[]);

    let script = format!(
        r#"file="{dir}/$GREENLIGHT_JOB_ID"; n=$(cat "$file" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$file"
if [ $n -le 2 ]; then echo "greenlight is down (try $n)" >&2; exit 3; fi
echo '{{"ok": true}}'"#,
        dir = counters.path().display()
    );
    work_drain(url, &script);

    let job = show(url, &id);
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["retry_count"], 2);
    assert_eq!(job["attempt"], 3);
    assert_eq!(job["result_payload"], serde_json::json!({"ok": true}));
    let tries = std::fs::read_to_string(counters.path().join(&id)).expect("the counter file");
    assert_eq!(tries.trim(), "3");
}

#[tokio::test]
async fn exit_65_fails_a_job_for_good_and_retry_brings_it_back() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &[]);

    work_drain(url, "echo 'the request names no language' >&2; exit 65");
    let job = show(url, &id);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempt"], 1, "a permanent failure is not retried");
    let error = job["error_message"].as_str().expect("an error message");
    assert!(error.contains("65") && error.contains("the request names no language"), "{error}");

    run_ok(url, &["retry", &id]);
    assert_eq!(show(url, &id)["status"], "pending");
}

#[tokio::test]
async fn retry_all_failed_requeues_every_failed_job() {
    let db = TestDb::new().await;
    let url = db.url();
    for _ in 0..3 {
        enqueue(url, &[]);
    }
    work_drain(url, "exit 65");
    assert_eq!(run_json(url, &["stats"])["failed"], 3);

    let answer = run_json(url, &["retry", "--all-failed"]);
    assert_eq!(answer["requeued"], 3);
    let stats = run_json(url, &["stats"]);
    assert_eq!((stats["failed"].as_u64(), stats["pending"].as_u64()), (Some(0), Some(3)));
}

#[tokio::test]
async fn a_program_past_its_timeout_is_killed_and_its_stderr_kept() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &["--max-retries", "0"]);

    run_ok(
        url,
        &[
            "work",
            "--drain",
            "--timeout",
            "300ms",
            "--",
            "sh",
            "-c",
            "echo started >&2; exec sleep 30",
        ],
    );
    let job = show(url, &id);
    assert_eq!(job["status"], "failed");
    let error = job["error_message"].as_str().expect("an error message");
    assert!(error.contains("timeout") && error.contains("started"), "{error}");
}

/// SIGTERM with a grace shorter than the running job: the worker kills the
/// program, gives the job back to pending without spending a retry, and
/// exits 0. (The killed program's "cancelled" answer was once taken for
/// the job's own failure; `scripts/chaos` shutdown-under-load found it.)
#[tokio::test]
async fn sigterm_past_the_grace_gives_the_running_job_back_without_spending_a_retry() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &[]);
    let markers = tempfile::tempdir().expect("a temporary directory");
    let started = markers.path().join("started");

    let script = format!("touch '{}'; exec sleep 30", started.display());
    let worker = spawn_worker(url, &["--grace", "200ms", "--", "sh", "-c", &script]);
    wait_for_file(&started).await;
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("run kill");
    assert!(signalled.success());
    let output = worker.wait_with_output().expect("the worker exits");

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("1 given back"), "{summary}");
    let job = show(url, &id);
    assert_eq!(job["status"], "pending", "{job}");
    assert_eq!(job["retry_count"], 0, "a shutdown spends no retry: {job}");
    assert_eq!(job["attempt"], 1);
}

/// A worker killed outright (SIGKILL) cannot stop the program it runs; its
/// reaper does, with what the program started in its process group.
/// Otherwise the program would run on while the job, its lease expired,
/// runs again elsewhere.
#[tokio::test]
async fn a_worker_killed_outright_takes_its_programs_with_it() {
    let db = TestDb::new().await;
    let url = db.url();
    enqueue(url, &[]);
    let marks = tempfile::tempdir().expect("a temporary directory");
    let program = marks.path().join("program");
    let background = marks.path().join("background");

    // Each pid file appears whole (written, then renamed).
    let script = format!(
        "sleep 300 & echo $! > '{background}.tmp'; mv '{background}.tmp' '{background}'; \
         echo $$ > '{program}.tmp'; mv '{program}.tmp' '{program}'; wait",
        background = background.display(),
        program = program.display(),
    );
    let mut worker = spawn_worker(url, &["--", "sh", "-c", &script]);
    wait_for_file(&program).await;
    let pid_in = |path: &Path| -> u32 {
        std::fs::read_to_string(path).expect("a pid file").trim().parse().expect("a pid")
    };
    let pids = [pid_in(&program), pid_in(&background)];
    assert!(pids.iter().all(|&pid| running(pid)), "the program is not running: {pids:?}");

    worker.kill().expect("SIGKILL the worker");
    // Its stderr ends when the reaper, which shares it, has exited.
    let output = worker.wait_with_output().expect("the worker is gone");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("programs of 1 job(s)"), "{stderr}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pids.iter().any(|&pid| running(pid)) {
        assert!(std::time::Instant::now() < deadline, "the program outlived its worker: {pids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts `greenlight work` with `args` in the background, its stdout and
/// stderr piped.
fn spawn_worker(url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .args(["--database-url", url, "work"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the worker")
}

/// Waits for a job's program to create `path`; fails the test after 30 s.
async fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live process (a zombie is not: it has ended and
/// only waits for its parent to read its status).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// A program that exits 0 but leaves a background process holding its
/// stdout completes with what it printed, and the background process is
/// killed with its process group rather than waited for.
#[tokio::test]
async fn a_background_child_holding_stdout_is_killed_and_the_job_completes() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &["--max-retries", "0"]);
    let marks = tempfile::tempdir().expect("a temporary directory");
    let mark = marks.path().join("survived");

    // Were the job to wait for the background process, it would run into
    // the 20 s timeout and fail; were that process left alive, it would
    // leave its mark a second later.
    let script = format!("(sleep 1; touch '{}') & echo '{{\"ok\": true}}'", mark.display());
    run_ok(url, &["work", "--drain", "--timeout", "20s", "--", "sh", "-c", &script]);
    let job = show(url, &id);
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["result_payload"], serde_json::json!({"ok": true}), "{job}");

    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!mark.exists(), "the background process outlived the job");
}

#[tokio::test]
async fn an_execution_id_printed_on_stderr_is_recorded_at_once() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &[]);

    // The program then fails for good: the id it printed is on the job all
    // the same, so it was recorded while the program ran, not with a result.
    work_drain(url, r#"echo "greenlight:execution-id=gl-$GREENLIGHT_JOB_ID" >&2; exit 65"#);
    let job = show(url, &id);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["execution_id"], format!("gl-{id}"));
    let error = job["error_message"].as_str().expect("an error message");
    assert!(!error.contains("greenlight:execution-id"), "marker lines are not errors: {error}");
}

#[tokio::test]
async fn bad_input_exits_2_with_one_line_and_writes_nothing() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &[]);
    let payload_file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(payload_file.path(), "not json").expect("write the payload file");
    let payload_path = payload_file.path().to_str().expect("a UTF-8 path");
    let long_id = "x".repeat(101);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["enqueue", "--learner", "not-a-uuid"], "UUID"),
        (vec!["enqueue", "--learner", LEARNER, "--atom", "42"], "UUID"),
        (vec!["show", "123"], "UUID"),
        (vec!["retry", "abc"], "UUID"),
        (vec!["cancel", "abc"], "UUID"),
        (vec!["list", "--learner", "abc"], "UUID"),
        (vec!["enqueue", "--learner", LEARNER, "--payload", "{not json"], "JSON"),
        (vec!["enqueue", "--learner", LEARNER, "--payload", "\"print(1)\""], "object or array"),
        (vec!["enqueue", "--learner", LEARNER, "--payload-file", payload_path], "JSON"),
        (vec!["list", "--status", "done"], "unknown status"),
        (vec!["prune", "--older-than", "7d", "--status", "pending"], "complete or failed"),
        (vec!["enqueue", "--learner", LEARNER, "--execution-id", &long_id], "100"),
        (vec!["enqueue", "--learner", LEARNER, "--max-retries", "-1"], "negative"),
        (vec!["list", "--limit", "-5"], "negative"),
        (vec!["work", "--concurrency", "-2", "--", "true"], "negative"),
        (vec!["work", "--claims-in-flight", "0", "--", "true"], "from 1 to 16"),
        (vec!["work", "--completions-in-flight", "17", "--", "true"], "from 1 to 16"),
        (vec!["enqueue", "--learner", LEARNER, "--delay", "soon"], "duration"),
        (vec!["prune", "--older-than", "7 days"], "duration"),
        (vec!["work", "--lease", "30", "--", "true"], "duration"),
        (vec!["work", "--rescue-interval", "0s", "--", "true"], "rescue_interval"),
        (vec!["enqueue", "--learner", LEARNER, "--run-at", "tomorrow"], "RFC 3339"),
        (vec!["work", "--", "/no/such/program"], "cannot find"),
    ];
    let before = count_rows(&db).await;
    for (args, expected) in cases {
        let stderr = run_failing(url, &args, 2);
        assert!(stderr.contains(expected), "{args:?}: {stderr:?} lacks {expected:?}");
        assert_eq!(count_rows(&db).await, before, "{args:?} wrote to the table");
    }
    assert_eq!(show(url, &id)["status"], "pending", "the job is untouched");
}

#[tokio::test]
async fn an_unreachable_database_exits_1_with_one_line() {
    for args in [
        vec!["stats"],
        vec!["list"],
        vec!["migrate"],
        vec!["enqueue", "--learner", LEARNER],
        vec!["retry", "--all-failed"],
        vec!["work", "--drain", "--", "true"],
    ] {
        let stderr = run_failing(UNREACHABLE, &args, 1);
        assert!(stderr.contains("connect"), "{args:?}: {stderr}");
        assert!(!stderr.to_lowercase().contains("select"), "no SQL text: {stderr}");
    }
}

#[tokio::test]
async fn jobs_in_the_wrong_state_are_refused_with_exit_1() {
    let db = TestDb::new().await;
    let url = db.url();
    let done = enqueue(url, &[]);
    work_drain(url, "true");
    assert_eq!(show(url, &done)["status"], "complete");

    let stderr = run_failing(url, &["retry", &done], 1);
    assert!(stderr.contains("complete"), "{stderr}");
    assert_eq!(show(url, &done)["status"], "complete");

    // Moved to executing by hand, as the original checklist does.
    let running = enqueue(url, &[]);
    let mut connection = db.connect().await;
    let sql = format!(
        "UPDATE greenlight_queue SET status = 'executing', started_at = now() WHERE id = '{running}'"
    );
    assert_eq!(execute(&mut connection, &sql).await.expect("move to executing"), 1);
    let stderr = run_failing(url, &["cancel", &running, "--reason", "changed my mind"], 1);
    assert!(stderr.contains("executing"), "{stderr}");
    assert_eq!(show(url, &running)["status"], "executing");

    let missing = "00000000-0000-4000-8000-000000000000";
    assert!(run_failing(url, &["show", missing], 1).contains("not found"));
}

#[tokio::test]
async fn cancel_fails_a_pending_job_and_prune_deletes_it() {
    let db = TestDb::new().await;
    let url = db.url();
    let id = enqueue(url, &[]);
    let kept = enqueue(url, &[]);

    run_ok(url, &["cancel", &id, "--reason", "learner left the course"]);
    let job = show(url, &id);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_message"], "learner left the course");

    assert_eq!(run_json(url, &["prune", "--older-than", "1h"])["pruned"], 0, "too recent");
    let pruned = run_json(url, &["prune", "--older-than", "0s", "--status", "failed"]);
    assert_eq!(pruned["pruned"], 1);
    assert_eq!(count_rows(&db).await, 1);
    assert_eq!(show(url, &kept)["status"], "pending");
}

#[tokio::test]
async fn enqueue_takes_every_option_and_honours_idempotency_keys() {
    let db = TestDb::new().await;
    let url = db.url();
    let job = run_json(
        url,
        &[
            "enqueue",
            "--learner",
            LEARNER,
            "--payload",
            r#"{"code": "print(1)"}"#,
            "--max-retries",
            "5",
            "--priority",
            "-2",
            "--delay",
            "1h",
            "--execution-id",
            "gl-upfront",
            "--key",
            "submit-1",
        ],
    );
    assert_eq!(job["status"], "pending");
    assert_eq!(job["max_retries"], 5);
    assert_eq!(job["priority"], -2);
    assert_eq!(job["execution_id"], "gl-upfront");
    assert_eq!(job["request_payload"]["code"], "print(1)");
    assert_eq!(run_json(url, &["stats"])["ready"], 0, "delayed by an hour");

    let again = enqueue(url, &["--key", "submit-1"]);
    assert_eq!(again, job["id"].as_str().expect("an id"), "the same key gives the same job");
    assert_eq!(count_rows(&db).await, 1);

    // The payload from stdin.
    let id = greenlight(url)
        .args(["enqueue", "--learner", LEARNER, "--payload-file", "-"])
        .write_stdin("[1, 2, 3]")
        .output()
        .expect("run greenlight");
    assert!(id.status.success());
    let id = String::from_utf8(id.stdout).expect("UTF-8");
    assert_eq!(show(url, id.trim())["request_payload"], serde_json::json!([1, 2, 3]));
}

fn batch_line(extra: &str) -> String {
    format!(r#"{{"learner_id": "{LEARNER}", "request_payload": {{"code": "x"}}{extra}}}"#)
}

#[tokio::test]
async fn a_batch_with_a_bad_third_line_names_it_and_inserts_nothing() {
    let db = TestDb::new().await;
    let url = db.url();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let file = directory.path().join("jobs.jsonl");
    let bad_lines = [
        r#", "colour": "red""#,
        r#", "max_retries": -1"#,
        r#", "learner_id": "nope""#,
        r#", "request_payload": 7"#,
    ];
    for bad in bad_lines {
        let text = [batch_line(""), batch_line(""), batch_line(bad), batch_line("")].join("\n");
        std::fs::write(&file, text).expect("write the batch");
        let stderr = run_failing(url, &["enqueue", "--batch", path(&file)], 2);
        assert!(stderr.contains("line 3"), "{stderr}");
        assert_eq!(count_rows(&db).await, 0, "nothing inserted for {bad}");
    }

    let good: Vec<String> =
        (0..5).map(|n| batch_line(&format!(r#", "priority": {n}, "max_retries": 1"#))).collect();
    let output = greenlight(url)
        .args(["--json", "enqueue", "--batch", "-"])
        .write_stdin(good.join("\n") + "\n\n")
        .output()
        .expect("run greenlight");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer["enqueued"], 5);
    assert_eq!(count_rows(&db).await, 5);
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn the_demo_runs_in_memory_and_prints_its_table() {
    // No database: the URL points nowhere, and the demo never uses it.
    let output = greenlight(UNREACHABLE)
        .args(["demo", "--jobs", "200"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run the demo");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    let value = |name: &str| -> u64 {
        let line = table.lines().find(|line| line.starts_with(name)).expect("a row");
        line.split_whitespace().last().and_then(|n| n.parse().ok()).expect("a number")
    };
    assert_eq!(value("jobs "), 200, "{table}");
    assert_eq!(value("complete") + value("failed"), 200, "{table}");
    assert!(table.contains("jobs/s") && table.contains("retries spent"), "{table}");

    let output = greenlight(UNREACHABLE)
        .args(["--json", "demo", "--jobs", "100", "--failure-rate", "0"])
        .output()
        .expect("run the demo");
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(summary["complete"], 100, "no failures at rate 0: {summary}");
    assert_eq!(summary["retries"], 0);
}
