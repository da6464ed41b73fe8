//! Bad and hostile input through the `greenlight` binary: each case exits 2
//! with one line naming the problem and writes nothing; text shaped like
//! SQL is stored verbatim.

use greenlight_testkit::postgres::TestDb;

mod common;
use common::{LEARNER, count_rows, greenlight, run_failing, run_json, show};

/// One refused input: the arguments, what goes to stdin, and a word the
/// one-line error must contain.
struct Case {
    what: &'static str,
    args: Vec<String>,
    stdin: Vec<u8>,
    expected: &'static str,
}

fn case(
    what: &'static str,
    args: &[&str],
    stdin: impl Into<Vec<u8>>,
    expected: &'static str,
) -> Case {
    Case {
        what,
        args: args.iter().map(ToString::to_string).collect(),
        stdin: stdin.into(),
        expected,
    }
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The table of refused inputs.
fn hostile_cases() -> Vec<Case> {
    let enqueue = ["enqueue", "--learner", LEARNER];
    let from_stdin = ["enqueue", "--learner", LEARNER, "--payload-file", "-"];
    let batch = ["enqueue", "--batch", "-"];
    let line = |extra: &str| format!(r#"{{"learner_id": "{LEARNER}"{extra}}}"#);
    let huge = format!(r#"{{"code": "{}"}}"#, "x".repeat(1024 * 1024));
    let long_id = "x".repeat(101);

    vec![
        case("not JSON", &[&enqueue[..], &["--payload", "print(1)"]].concat(), "", "JSON"),
        case(
            "a bare string",
            &[&enqueue[..], &["--payload", "\"x\""]].concat(),
            "",
            "object or array",
        ),
        case(
            "a bare number",
            &[&enqueue[..], &["--payload", "42"]].concat(),
            "",
            "object or array",
        ),
        case("null", &[&enqueue[..], &["--payload", "null"]].concat(), "", "object or array"),
        case("over 1 MiB", &from_stdin, huge.clone(), "bytes"),
        case("nested 65 deep", &from_stdin, nested(65), "deeper"),
        case("nested 100,000 deep", &from_stdin, nested(100_000), "JSON"),
        case("a NUL in a string", &from_stdin, r#"{"code": "a\u0000b"}"#, "NUL"),
        case("a NUL in a key", &from_stdin, r#"{"a\u0000": 1}"#, "NUL"),
        case("invalid UTF-8 on stdin", &from_stdin, b"{\"code\": \"\xff\xfe\"}".to_vec(), "UTF-8"),
        case(
            "invalid UTF-8 in a batch",
            &batch,
            b"{\"learner_id\": \"\xc3\x28\"}\n".to_vec(),
            "UTF-8",
        ),
        case(
            "101-character execution id",
            &[&enqueue[..], &["--execution-id", &long_id]].concat(),
            "",
            "100",
        ),
        case(
            "negative max_retries",
            &[&enqueue[..], &["--max-retries", "-1"]].concat(),
            "",
            "negative",
        ),
        case(
            "absurd max_retries",
            &[&enqueue[..], &["--max-retries", "1000000"]].concat(),
            "",
            "max_retries",
        ),
        case(
            "max_retries past u64",
            &[&enqueue[..], &["--max-retries", "99999999999999999999999"]].concat(),
            "",
            "max-retries",
        ),
        case(
            "priority past i32",
            &[&enqueue[..], &["--priority", "3000000000"]].concat(),
            "",
            "priority",
        ),
        case(
            "a malformed learner",
            &["enqueue", "--learner", "'; DROP TABLE greenlight_queue; --"],
            "",
            "UUID",
        ),
        case(
            "a NUL in a batch's execution id",
            &batch,
            line(r#", "execution_id": "a\u0000b""#) + "\n",
            "NUL",
        ),
        case(
            "a batch payload too deep",
            &batch,
            line(&format!(r#", "request_payload": {}"#, nested(70))) + "\n",
            "deeper",
        ),
        case(
            "an absurd batch max_retries",
            &batch,
            line(r#", "max_retries": 1e30"#) + "\n",
            "max_retries",
        ),
        case(
            "a run_at past year 9999",
            &[&enqueue[..], &["--run-at", "99999-01-01T00:00:00Z"]].concat(),
            "",
            "RFC 3339",
        ),
    ]
}

#[tokio::test]
async fn hostile_input_exits_2_with_one_line_and_writes_nothing() {
    let db = TestDb::new().await;
    let url = db.url();
    for Case { what, args, stdin, expected } in hostile_cases() {
        let output =
            greenlight(url).args(&args).write_stdin(stdin).output().expect("run greenlight");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr:?} lacks {expected:?}");
        assert!(output.stdout.is_empty(), "{what}: wrote to stdout");
        assert_eq!(count_rows(&db).await, 0, "{what}: wrote to the table");
    }
}

#[tokio::test]
async fn text_shaped_like_sql_is_stored_verbatim() {
    let db = TestDb::new().await;
    let url = db.url();
    let hostile = "'); DROP TABLE greenlight_queue; --";
    let payload = serde_json::json!({ hostile: hostile, "code": "\" OR 1=1 --" });
    let job = run_json(
        url,
        &[
            "enqueue",
            "--learner",
            LEARNER,
            "--payload",
            &payload.to_string(),
            "--key",
            hostile,
            "--execution-id",
            hostile,
        ],
    );
    let id = job["id"].as_str().expect("an id");
    let stored = show(url, id);
    assert_eq!(stored["request_payload"], payload);
    assert_eq!(stored["idempotency_key"], hostile);
    assert_eq!(stored["execution_id"], hostile);

    // The same key again finds the same job; a cancel reason is kept as
    // given; the table is still there and holds one row.
    let again = run_json(url, &["enqueue", "--learner", LEARNER, "--key", hostile]);
    assert_eq!(again["id"], job["id"]);
    run_json(url, &["cancel", id, "--reason", "'; DELETE FROM greenlight_queue; --"]);
    assert_eq!(show(url, id)["error_message"], "'; DELETE FROM greenlight_queue; --");
    assert_eq!(count_rows(&db).await, 1);
    let listed = run_json(url, &["list", "--status", "failed"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // A status shaped like SQL is refused before anything connects.
    let stderr = run_failing(url, &["list", "--status", "failed' OR '1'='1"], 2);
    assert!(stderr.contains("unknown status"), "{stderr}");
}
