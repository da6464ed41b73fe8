//! `greenlight enqueue`: one job from flags, or many from JSON Lines.
//!
//! A batch is checked whole before anything is sent: every line must parse,
//! name only the table's columns, and make a valid job, and no execution id
//! may appear twice. The first bad line is reported with its number, and
//! nothing is inserted. Valid jobs then go in with `enqueue_many`, a chunk
//! per call, each chunk all or nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use greenlight_core::chrono::{DateTime, Utc};
use greenlight_core::serde_json::{self, Value, json};
use greenlight_core::{AtomId, LearnerId, NewJob, Store};
use serde::de::DeserializeOwned;

use super::open;
use crate::args::{self, EnqueueArgs};
use crate::error::{CliError, CliResult};
use crate::output;

/// Jobs per `enqueue_many` call: one statement each, of a size PostgreSQL
/// handles in milliseconds, so a large file neither holds one long
/// transaction nor pays a round trip per job.
const CHUNK: usize = 1_000;

/// Runs the command.
pub(crate) async fn run(url: &str, args: EnqueueArgs, json: bool) -> CliResult {
    match &args.batch {
        Some(path) => batch(url, path, json).await,
        None => single(url, args, json).await,
    }
}

async fn single(url: &str, args: EnqueueArgs, json: bool) -> CliResult {
    let learner = args.learner.expect("clap requires --learner without --batch");
    let payload = match (&args.payload, &args.payload_file) {
        (Some(payload), _) => payload.clone(),
        (None, Some(path)) => {
            let text = read_input(path)?;
            args::payload(text.trim()).map_err(|reason| {
                CliError::input(format!("invalid payload in {}: {reason}", path.display()))
            })?
        }
        (None, None) => json!({}),
    };
    let mut builder = NewJob::builder(learner, payload);
    if let Some(atom) = args.atom {
        builder = builder.atom(atom);
    }
    if let Some(max_retries) = args.max_retries {
        builder = builder.max_retries(i64::try_from(max_retries).unwrap_or(i64::MAX));
    }
    if let Some(priority) = args.priority {
        builder = builder.priority(priority);
    }
    if let Some(delay) = args.delay {
        builder = builder.delay(delay);
    }
    if let Some(run_at) = args.run_at {
        builder = builder.run_at(run_at);
    }
    if let Some(execution_id) = args.execution_id {
        builder = builder.execution_id(execution_id.as_str());
    }
    if let Some(key) = args.key {
        builder = builder.idempotency_key(key);
    }
    let job = builder.build()?;

    let enqueued = open(url)?.enqueue(job).await?;
    if !enqueued.is_created() {
        tracing::warn!(id = %enqueued.id(), "a job with this idempotency key exists; nothing added");
    }
    if json {
        output::print_json(&enqueued.into_any().to_record())
    } else {
        output::print_text(&format!("{}\n", enqueued.id()))
    }
}

/// One line of a batch file: the table's columns, nothing else.
#[derive(Debug)]
struct Line {
    learner_id: LearnerId,
    atom_id: Option<AtomId>,
    request_payload: Value,
    max_retries: Option<i64>,
    priority: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    execution_id: Option<String>,
    idempotency_key: Option<String>,
}

/// The columns a line may name.
const COLUMNS: [&str; 8] = [
    "learner_id",
    "atom_id",
    "request_payload",
    "max_retries",
    "priority",
    "run_at",
    "execution_id",
    "idempotency_key",
];

impl Line {
    /// Parses one line field by field, so that an error names the field
    /// at fault: serde's message for a mistyped field ("invalid type:
    /// floating point, expected i64") does not.
    fn parse(raw: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(raw).map_err(|error| without_position(&error))?;
        let Value::Object(mut fields) = value else {
            return Err("a line must be a JSON object".to_owned());
        };
        if let Some(unknown) = fields.keys().find(|name| !COLUMNS.contains(&name.as_str())) {
            return Err(format!(
                "unknown field `{unknown}`, expected one of {}",
                COLUMNS.join(", ")
            ));
        }
        // An explicit null payload is kept, to be refused as not an object
        // or array; only a missing one defaults to `{}`.
        let request_payload = fields.remove("request_payload").unwrap_or_else(empty_object);
        let mut take = |name: &str| fields.remove(name).filter(|value| !value.is_null());
        Ok(Self {
            learner_id: column("learner_id", take("learner_id"))?
                .ok_or("missing field `learner_id`")?,
            atom_id: column("atom_id", take("atom_id"))?,
            request_payload,
            max_retries: column("max_retries", take("max_retries"))?,
            priority: column("priority", take("priority"))?,
            run_at: column("run_at", take("run_at"))?,
            execution_id: column("execution_id", take("execution_id"))?,
            idempotency_key: column("idempotency_key", take("idempotency_key"))?,
        })
    }
}

fn empty_object() -> Value {
    json!({})
}

/// A column's value, if present, as `T`; the error names the column.
fn column<T: DeserializeOwned>(name: &str, value: Option<Value>) -> Result<Option<T>, String> {
    value
        .map(|value| serde_json::from_value(value).map_err(|error| format!("{name}: {error}")))
        .transpose()
}

impl Line {
    fn into_job(self) -> Result<NewJob, greenlight_core::Error> {
        let mut builder = NewJob::builder(self.learner_id, self.request_payload);
        if let Some(atom_id) = self.atom_id {
            builder = builder.atom(atom_id);
        }
        if let Some(max_retries) = self.max_retries {
            builder = builder.max_retries(max_retries);
        }
        if let Some(priority) = self.priority {
            builder = builder.priority(priority);
        }
        if let Some(run_at) = self.run_at {
            builder = builder.run_at(run_at);
        }
        if let Some(execution_id) = self.execution_id {
            builder = builder.execution_id(execution_id);
        }
        if let Some(key) = self.idempotency_key {
            builder = builder.idempotency_key(key);
        }
        builder.build()
    }
}

/// Checks every line of `text`; the jobs in order, or the first bad line.
fn parse_batch(text: &str) -> CliResult<Vec<NewJob>> {
    let mut jobs = Vec::new();
    let mut execution_ids: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad =
            |reason: &dyn std::fmt::Display| CliError::input(format!("line {number}: {reason}"));
        let line = Line::parse(raw).map_err(|reason| bad(&reason))?;
        let job = line.into_job().map_err(|error| bad(&error))?;
        if let Some(execution_id) = job.execution_id()
            && let Some(first) = execution_ids.insert(execution_id.to_string(), number)
        {
            return Err(bad(&format!(
                "execution_id {:?} is already used on line {first}",
                execution_id.as_str()
            )));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// The parser's message without its " at line 1 column N": every line is
/// parsed on its own, so its line number would always be 1.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rsplit_once(" at line ") {
        Some((reason, _)) => format!("{reason} (column {})", error.column()),
        None => message,
    }
}

async fn batch(url: &str, path: &Path, json: bool) -> CliResult {
    let jobs = parse_batch(&read_input(path)?)?;

    let store = open(url)?;
    let (mut created, mut existing) = (0usize, 0usize);
    for chunk in jobs.chunks(CHUNK) {
        let answers = store.enqueue_many(chunk.to_vec()).await.map_err(|error| {
            let error = CliError::from(error);
            if created + existing == 0 {
                return error;
            }
            // Earlier chunks are in; say so, so the rerun can skip them.
            CliError::failed(format!(
                "{} (the first {} jobs were enqueued before this)",
                error.one_line(),
                created + existing
            ))
        })?;
        let added = answers.iter().filter(|answer| answer.is_created()).count();
        created += added;
        existing += answers.len() - added;
    }
    if json {
        output::print_json(&json!({"enqueued": created, "existing": existing}))
    } else if existing > 0 {
        output::print_text(&format!(
            "enqueued {created} jobs ({existing} already existed with the same idempotency key)\n"
        ))
    } else {
        output::print_text(&format!("enqueued {created} jobs\n"))
    }
}

/// The text of a file, or of stdin for `-`.
fn read_input(path: &Path) -> CliResult<String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_string(&mut text)).map(drop)
    };
    read.map_err(|error| CliError::input(format!("cannot read {}: {error}", path.display())))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEARNER: &str = "5f0c3f8e-9a43-4c59-9d7e-0d3f2c0b6a11";

    #[test]
    fn a_valid_batch_parses_every_line_and_skips_blank_ones() {
        let text = format!(
            "{{\"learner_id\":\"{LEARNER}\"}}\n\n{{\"learner_id\":\"{LEARNER}\",\"request_payload\":[1],\"priority\":-3}}\n"
        );
        let jobs = parse_batch(&text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].priority(), -3);
    }

    #[test]
    fn the_first_bad_line_is_named() {
        let good = format!("{{\"learner_id\":\"{LEARNER}\"}}");
        let cases = [
            (format!("{good}\n{good}\n{{\"learner_id\":\"nope\"}}"), "line 3:"),
            (format!("{good}\n{{\"learner_id\":\"{LEARNER}\",\"colour\":1}}"), "unknown field"),
            (format!("{{\"learner_id\":\"{LEARNER}\",\"max_retries\":-1}}"), "max_retries"),
            (format!("{{\"learner_id\":\"{LEARNER}\",\"request_payload\":7}}"), "request_payload"),
            (format!("{good}\n{{"), "line 2:"),
        ];
        for (text, expected) in cases {
            let error = parse_batch(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
            assert!(!error.contains("at line"), "{error}");
        }
    }

    #[test]
    fn a_repeated_execution_id_is_refused() {
        let line = format!("{{\"learner_id\":\"{LEARNER}\",\"execution_id\":\"gl-1\"}}");
        let error = parse_batch(&format!("{line}\n{line}")).unwrap_err().to_string();
        assert!(error.starts_with("line 2:") && error.contains("line 1"), "{error}");
    }
}
