//! What the commands print on stdout: aligned tables for people, JSON for
//! programs (`--json`). Logs and progress go to stderr, never here, so
//! stdout stays clean for a pipe.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use greenlight_core::chrono::{DateTime, SecondsFormat, Utc};
use greenlight_core::serde_json::{self, Value, json};
use greenlight_core::{AnyJob, JobRecord, Stats};
use serde::Serialize;

use crate::duration::Human;
use crate::error::{CliError, CliResult};

/// Prints `value` as pretty JSON and a newline.
pub(crate) fn print_json(value: &impl Serialize) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| CliError::failed(format!("cannot write JSON: {error}")))?;
    print_text(&format!("{text}\n"))
}

/// Prints `text` as it is. A closed stdout (`greenlight list | head -1`)
/// is not an error worth a message: the reader has what it wanted.
pub(crate) fn print_text(text: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::failed(format!("cannot write to stdout: {error}")))
        }
        _ => Ok(()),
    }
}

/// Columns of text, each padded to its widest cell. Columns named in
/// `right` are right-aligned (numbers).
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    /// A table with this header row.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self { rows: vec![header.iter().map(ToString::to_string).collect()], right: Vec::new() }
    }

    /// Right-aligns the column at `index`.
    #[must_use]
    pub(crate) fn align_right(mut self, index: usize) -> Self {
        self.right.push(index);
        self
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                let cells = self.rows.iter().filter_map(|row| row.get(column));
                cells.map(|cell| cell.chars().count()).max().unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                let width = widths[column];
                if self.right.contains(&column) {
                    let _ = write!(line, "{cell:>width$}");
                } else {
                    let _ = write!(line, "{cell:<width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A time to the second, in UTC, as RFC 3339.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// At most `max` characters of `text` on one line, with an ellipsis when
/// cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The job list as a table: one line per job.
pub(crate) fn job_table(jobs: &[AnyJob]) -> String {
    let mut table = Table::new(&["ID", "STATUS", "LEARNER", "TRIES", "QUEUED", "ERROR"]);
    for job in jobs {
        let record = job.to_record();
        table.row(vec![
            record.id.to_string(),
            record.status.to_string(),
            record.learner_id.to_string(),
            format!("{}/{}", record.retry_count, record.max_retries),
            time(record.queued_at),
            record.error_message.as_deref().map(|error| clip(error, 50)).unwrap_or_default(),
        ]);
    }
    table.render()
}

/// One job in full: a field per line, payloads as pretty JSON.
pub(crate) fn job_detail(job: &AnyJob) -> String {
    let record: JobRecord = job.to_record();
    let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let optional_time = |value: Option<DateTime<Utc>>| optional(value.map(time));
    let fields = [
        ("id", record.id.to_string()),
        ("status", record.status.to_string()),
        ("learner_id", record.learner_id.to_string()),
        ("atom_id", optional(record.atom_id.map(|id| id.to_string()))),
        ("execution_id", optional(record.execution_id.map(|id| id.to_string()))),
        ("idempotency_key", optional(record.idempotency_key.map(|key| key.to_string()))),
        ("priority", record.priority.to_string()),
        ("attempt", record.attempt.to_string()),
        ("retry_count", record.retry_count.to_string()),
        ("max_retries", record.max_retries.to_string()),
        ("queued_at", time(record.queued_at)),
        ("run_at", time(record.run_at)),
        ("started_at", optional_time(record.started_at)),
        ("completed_at", optional_time(record.completed_at)),
        ("worker_id", optional(record.worker_id.map(|id| id.to_string()))),
        ("lease_expires_at", optional_time(record.lease_expires_at)),
        ("error_message", optional(record.error_message)),
    ];
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (name, value) in fields {
        table.row(vec![name.to_owned(), value]);
    }
    let mut out = table.render();
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let _ = write!(out, "\nrequest_payload:\n{}\n", pretty(&record.request_payload));
    if let Some(result) = &record.result_payload {
        let _ = write!(out, "\nresult_payload:\n{}\n", pretty(result));
    }
    out
}

/// The stats as a table.
pub(crate) fn stats_table(stats: &Stats) -> String {
    let mut table = Table::new(&["STATUS", "JOBS", "NOTE"]).align_right(1);
    let age = |label: &str, duration: Option<Duration>| {
        duration.map(|duration| format!("{label} {}", Human(duration))).unwrap_or_default()
    };
    let rows = [
        ("pending", stats.pending, {
            let mut note = format!("{} ready", stats.ready);
            for extra in [
                age("oldest ready for", stats.oldest_ready_age),
                age("next due in", stats.next_scheduled_in),
            ] {
                if !extra.is_empty() {
                    note = format!("{note}, {extra}");
                }
            }
            note
        }),
        ("executing", stats.executing, format!("{} leases expired", stats.expired_leases)),
        ("complete", stats.complete, String::new()),
        ("failed", stats.failed, String::new()),
        ("total", stats.total(), String::new()),
    ];
    for (status, count, note) in rows {
        table.row(vec![status.to_owned(), count.to_string(), note]);
    }
    table.render()
}

/// The stats as JSON, durations in seconds.
pub(crate) fn stats_json(stats: &Stats) -> Value {
    let seconds = |duration: Option<Duration>| duration.map(|d| d.as_secs_f64());
    json!({
        "pending": stats.pending,
        "ready": stats.ready,
        "executing": stats.executing,
        "expired_leases": stats.expired_leases,
        "complete": stats.complete,
        "failed": stats.failed,
        "total": stats.total(),
        "oldest_ready_age_seconds": seconds(stats.oldest_ready_age),
        "next_scheduled_in_seconds": seconds(stats.next_scheduled_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_trim_line_ends() {
        let mut table = Table::new(&["NAME", "N", "NOTE"]).align_right(1);
        table.row(vec!["complete".into(), "12".into(), String::new()]);
        table.row(vec!["failed".into(), "3".into(), "x".into()]);
        assert_eq!(table.render(), "NAME       N  NOTE\ncomplete  12\nfailed     3  x\n");
    }

    #[test]
    fn clipping_flattens_and_cuts() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
