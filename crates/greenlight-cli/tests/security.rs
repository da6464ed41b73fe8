//! What SECURITY.md promises, checked with the real binary: a worker and a
//! producer run with only the privileges it grants, the database password
//! never reaches stderr, and payloads and results stay out of the logs.

use std::sync::atomic::{AtomicUsize, Ordering};

use greenlight_testkit::postgres::{TestDb, admin, database_url, execute, run_sql};

mod common;
use common::{LEARNER, count_rows, greenlight, run_failing, run_ok, show};

/// The statements SECURITY.md tells an owner to run, read from the file
/// itself so that the document cannot drift from what is tested.
fn documented_grants() -> String {
    let text = include_str!("../../../SECURITY.md");
    let start = text.find("-- greenlight: least privileges").expect("the marked block");
    let end = start + text[start..].find("```").expect("the block's end");
    text[start..end].to_owned()
}

/// `url` with its user and password replaced.
fn url_as(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

/// Two login roles, unique to this test run, dropped afterwards. Roles
/// belong to the whole server, so their names must not collide with
/// another test's, nor outlive the test.
struct Roles {
    worker: String,
    producer: String,
}

static ROLE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Roles {
    async fn create(db: &TestDb) -> Self {
        let suffix =
            format!("{}_{}", std::process::id(), ROLE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let roles = Self {
            worker: format!("gl_worker_{suffix}"),
            producer: format!("gl_producer_{suffix}"),
        };
        let mut server = admin().await;
        for role in [&roles.worker, &roles.producer] {
            run_sql(&mut server, &format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
                .await
                .expect("create a role");
        }
        let grants = documented_grants()
            .replace("greenlight_worker", &roles.worker)
            .replace("greenlight_producer", &roles.producer);
        let mut owner = db.connect().await;
        run_sql(&mut owner, &grants).await.expect("the documented grants run as written");
        roles
    }

    /// `db`'s URL as the worker and as the producer.
    fn urls(&self, db: &TestDb) -> (String, String) {
        (url_as(db.url(), &self.worker, "pw"), url_as(db.url(), &self.producer, "pw"))
    }

    async fn drop_in(self, db: &TestDb) {
        let mut owner = db.connect().await;
        let mut server = admin().await;
        for role in [&self.worker, &self.producer] {
            run_sql(&mut owner, &format!("DROP OWNED BY {role}")).await.expect("revoke");
            run_sql(&mut server, &format!("DROP ROLE {role}")).await.expect("drop the role");
        }
    }
}

#[tokio::test]
async fn a_producer_and_a_worker_need_only_the_documented_privileges() {
    let db = TestDb::new().await;
    let roles = Roles::create(&db).await;
    let (worker, producer) = roles.urls(&db);
    let mut owner = db.connect().await;
    let atom = "0b5c8f0e-3d2a-4f6b-9c1d-2e3f4a5b6c7d";
    execute(&mut owner, &format!("INSERT INTO learning_atoms (id) VALUES ('{atom}')"))
        .await
        .expect("an atom");

    // The producer enqueues, with an atom and an idempotency key, alone
    // and in a batch, and reads back the job a key already made.
    let first = run_ok(&producer, &["enqueue", "--learner", LEARNER, "--atom", atom, "--key", "k"]);
    let again = run_ok(&producer, &["enqueue", "--learner", LEARNER, "--key", "k"]);
    assert_eq!(first, again, "the same key gives the same job");
    let batch = format!(r#"{{"learner_id": "{LEARNER}"}}"#);
    let output = greenlight(&producer)
        .args(["enqueue", "--batch", "-"])
        .write_stdin(format!("{batch}\n{batch}\n"))
        .output()
        .expect("run greenlight");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(count_rows(&db).await, 3);

    // It cannot claim or change a job: refused with one line, nothing done.
    let stderr = run_failing(&producer, &["work", "--drain", "--", "true"], 1);
    assert!(stderr.contains("permission denied"), "{stderr}");
    let stderr = run_failing(&producer, &["cancel", first.trim()], 1);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert_eq!(show(db.url(), first.trim())["status"], "pending");

    // The worker runs every job (its rescuer and pruner run too) and the
    // operator commands work, but it cannot add a job.
    run_ok(&worker, &["work", "--drain", "--", "sh", "-c", "cat > /dev/null"]);
    assert_eq!(show(db.url(), first.trim())["status"], "complete");
    run_ok(&worker, &["stats"]);
    run_ok(&worker, &["list", "--status", "complete"]);
    run_ok(&worker, &["prune", "--older-than", "0s"]);
    assert_eq!(count_rows(&db).await, 0, "the worker role may prune");
    let stderr = run_failing(&worker, &["enqueue", "--learner", LEARNER], 1);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert_eq!(count_rows(&db).await, 0);

    drop(owner);
    roles.drop_in(&db).await;
}

#[tokio::test]
async fn the_database_password_never_reaches_stderr() {
    const PASSWORD: &str = "Sup3r-Secret-Passw0rd";
    let no_server = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/x");
    let no_database = url_as(
        &greenlight_testkit::postgres::url_for(&database_url(), "greenlight_no_such_database"),
        "postgres",
        PASSWORD,
    );
    for url in [&no_server, &no_database] {
        for args in [
            vec!["-vv", "stats"],
            vec!["-vv", "migrate"],
            vec!["-vv", "enqueue", "--learner", LEARNER],
            vec!["-vv", "work", "--drain", "--", "true"],
        ] {
            let output = greenlight(url).args(&args).output().expect("run greenlight");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{args:?} on {url}: {stderr}");
            assert!(!stderr.is_empty(), "{args:?}: the failure is reported");
            assert!(!stderr.contains(PASSWORD), "{args:?} leaked the password: {stderr}");
        }
    }
}

#[tokio::test]
async fn payloads_and_results_stay_out_of_the_logs_at_info() {
    let db = TestDb::new().await;
    let url = db.url();
    let payload = r#"{"code": "print('PAYLOAD-MARKER')"}"#;
    for _ in 0..3 {
        run_ok(url, &["enqueue", "--learner", LEARNER, "--payload", payload, "--max-retries", "1"]);
    }
    // The first attempt of every job fails, the second succeeds with a
    // result that carries its own marker.
    let script = r#"cat > /dev/null
if [ "$GREENLIGHT_ATTEMPT" = 1 ]; then exit 3; fi
echo '{"stdout": "RESULT-MARKER"}'"#;
    let output = greenlight(url)
        .args(["-v", "work", "--drain", "--retry-base", "50ms", "--poll", "50ms"])
        .args(["--", "sh", "-c", script])
        .output()
        .expect("run greenlight");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("INFO") || stderr.contains("WARN"), "logs were written: {stderr}");
    assert!(!stderr.contains("PAYLOAD-MARKER"), "a payload was logged: {stderr}");
    assert!(!stderr.contains("RESULT-MARKER"), "a result was logged: {stderr}");

    let jobs = common::run_json(url, &["list", "--status", "complete"]);
    let jobs = jobs.as_array().expect("a list");
    assert_eq!(jobs.len(), 3, "every job completed after one retry");
}
