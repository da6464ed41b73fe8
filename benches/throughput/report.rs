//! The table on stdout and the same figures as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::memory::{self, MemoryFigures};
use crate::queue::QueueFigures;
use crate::raw::RawFigures;
use crate::{Latencies, Options, Rate, Result, connect};

/// What a figure should reach. Targets are reported, never asserted.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The figure divided by its baseline is at least this.
    RatioAtLeast(f64),
    /// The figure itself is at least this.
    AtLeast(f64),
    /// The figure itself is at most this.
    AtMost(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Self::RatioAtLeast(ratio) => format!("ratio >= {ratio}"),
            Self::AtLeast(value) => format!(">= {}", group(value)),
            Self::AtMost(value) => format!("<= {value}"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
struct Row {
    figure: String,
    unit: &'static str,
    value: f64,
    /// The baseline's name and value, for figures measured against one.
    baseline: Option<(&'static str, f64)>,
    target: Option<Target>,
}

impl Row {
    fn new(figure: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self { figure: figure.into(), unit, value, baseline: None, target: None }
    }

    fn against(mut self, name: &'static str, baseline: f64, target: Option<f64>) -> Self {
        self.baseline = Some((name, baseline));
        self.target = target.map(Target::RatioAtLeast);
        self
    }

    fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.and_then(|(_, base)| (base > 0.0).then(|| self.value / base))
    }

    fn met(&self) -> Option<bool> {
        Some(match self.target? {
            Target::RatioAtLeast(ratio) => self.ratio()? >= ratio,
            Target::AtLeast(value) => self.value >= value,
            Target::AtMost(value) => self.value <= value,
        })
    }
}

/// The run's description and figures.
#[derive(Debug)]
pub(crate) struct Report {
    mode: &'static str,
    clients: usize,
    rounds: usize,
    burn_down_batch: usize,
    cores: usize,
    server_version: String,
    rows: Vec<Row>,
}

impl Report {
    pub(crate) async fn new(options: &Options, url: &str) -> Result<Self> {
        let (client, _task) = connect(url).await?;
        let server_version: String =
            client.query_one("SELECT version()", &[]).await?.get::<_, String>(0);
        Ok(Self {
            mode: if options.smoke { "smoke" } else { "full" },
            clients: options.clients,
            rounds: options.scale.rounds,
            burn_down_batch: options.burn_down_batch,
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            server_version,
            rows: Vec::new(),
        })
    }

    pub(crate) fn add(
        &mut self,
        raw: &RawFigures,
        queue: &QueueFigures,
        latencies: &Latencies,
        memory: &MemoryFigures,
    ) {
        const RAW_INSERT_100: &str = "raw insert, 100 rows";
        const RAW_INSERT_1: &str = "raw insert, 1 row";
        const RAW_DRAIN_100: &str = "raw claim+complete, 100";
        const RAW_DRAIN_BURN_DOWN: &str = "raw, burn-down batch";
        const RAW_LATENCY: &str = "raw insert-to-claim";

        let rate = Rate::per_second;
        self.rows.extend([
            Row::new(RAW_INSERT_100, "jobs/s", rate(raw.insert_batch)),
            Row::new(RAW_INSERT_1, "jobs/s", rate(raw.insert_one)),
            Row::new(RAW_DRAIN_100, "jobs/s", rate(raw.drain_batch)),
            Row::new("raw claim+complete, 1", "jobs/s", rate(raw.drain_one)),
            Row::new(
                format!("raw claim+complete, {}", self.burn_down_batch),
                "jobs/s",
                rate(raw.drain_at_burn_down_batch),
            ),
            Row::new("enqueue, one at a time", "jobs/s", rate(queue.enqueue_one)).against(
                RAW_INSERT_1,
                rate(raw.insert_one),
                Some(0.8),
            ),
            Row::new("enqueue_many, 100", "jobs/s", rate(queue.enqueue_many_100)).against(
                RAW_INSERT_100,
                rate(raw.insert_batch),
                Some(0.8),
            ),
            Row::new("enqueue_many, 1,000", "jobs/s", rate(queue.enqueue_many_1000)).against(
                RAW_INSERT_100,
                rate(raw.insert_batch),
                Some(1.0),
            ),
            Row::new(
                format!("burn-down, {} jobs, batch {}", queue.burn_down.jobs, self.burn_down_batch),
                "jobs/s",
                rate(queue.burn_down),
            )
            .against(RAW_DRAIN_100, rate(raw.drain_batch), Some(1.2)),
            // No target: how much of what the database does at the
            // worker's batch size the worker keeps, its own overhead.
            Row::new("burn-down, against its own batch", "jobs/s", rate(queue.burn_down)).against(
                RAW_DRAIN_BURN_DOWN,
                rate(raw.drain_at_burn_down_batch),
                None,
            ),
            Row::new("burn-down worker peak RSS", "MiB", queue.burn_down_peak_kib as f64 / 1024.0)
                .target(Target::AtMost(64.0)),
        ]);

        // Each quantile beside the raw floor's (insert, NOTIFY, claim of
        // one row); the ratio is how many times the floor the queue takes,
        // so lower is better, and the targets are the absolute ones.
        let latency = |name: String, quantile: f64| {
            let ms = |samples: &[Duration]| percentile(samples, quantile).as_secs_f64() * 1_000.0;
            Row::new(name, "ms", ms(&latencies.queue)).against(
                RAW_LATENCY,
                ms(&latencies.raw),
                None,
            )
        };
        self.rows.extend([
            latency(format!("enqueue-to-start p50, {} samples", latencies.queue.len()), 0.50)
                .target(Target::AtMost(1.5)),
            latency("enqueue-to-start p90".to_owned(), 0.90),
            latency("enqueue-to-start p99".to_owned(), 0.99).target(Target::AtMost(5.0)),
            latency("enqueue-to-start max".to_owned(), 1.0),
            Row::new("memory lifecycles, one thread", "per s", rate(memory.one_thread))
                .target(Target::AtLeast(1_000_000.0)),
            Row::new(format!("memory lifecycles, {} tasks", memory::TASKS), "per s", {
                rate(memory.tasks)
            }),
        ]);
    }

    /// Prints the table.
    pub(crate) fn print(&self, elapsed: Duration) {
        let rounds = match self.rounds {
            1 => "one round".to_owned(),
            rounds => format!("best of {rounds} rounds"),
        };
        println!(
            "greenlight throughput ({} run, {} clients, {rounds}, {} cores, {:.0} s)",
            self.mode,
            self.clients,
            self.cores,
            elapsed.as_secs_f64()
        );
        println!("{}", self.server_version);
        println!();
        let mut table = String::new();
        let header = ["figure", "value", "unit", "baseline", "baseline", "ratio", "target", "met"];
        let _ = writeln!(
            table,
            "{:<38} {:>12} {:<7} {:<24} {:>12} {:>6}  {:<14} {}",
            header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7]
        );
        for row in &self.rows {
            let (name, base) =
                row.baseline.map_or((String::new(), String::new()), |(name, value)| {
                    (name.to_owned(), format_value(value, row.unit))
                });
            let ratio = row.ratio().map_or(String::new(), |ratio| format!("{ratio:.2}"));
            let target = row.target.map_or(String::new(), Target::describe);
            let met = match row.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            let _ = writeln!(
                table,
                "{:<38} {:>12} {:<7} {:<24} {:>12} {:>6}  {:<14} {}",
                row.figure,
                format_value(row.value, row.unit),
                row.unit,
                name,
                base,
                ratio,
                target,
                met
            );
        }
        print!("{table}");
    }

    /// The same figures as JSON.
    pub(crate) fn to_json(&self, elapsed: Duration) -> Result<String> {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "figure": row.figure,
                    "unit": row.unit,
                    "value": row.value,
                    "baseline": row.baseline.map(|(name, _)| name),
                    "baseline_value": row.baseline.map(|(_, value)| value),
                    "ratio": row.ratio(),
                    "target": row.target.map(Target::describe),
                    "met": row.met(),
                })
            })
            .collect();
        let report = json!({
            "mode": self.mode,
            "clients": self.clients,
            "rounds": self.rounds,
            "burn_down_batch": self.burn_down_batch,
            "cores": self.cores,
            "server_version": self.server_version,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "figures": rows,
        });
        Ok(serde_json::to_string_pretty(&report)?)
    }
}

/// The sample at `quantile` (0 to 1) of sorted samples, nearest rank.
pub(crate) fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.3}"),
        "MiB" => format!("{value:.1}"),
        _ => group(value),
    }
}

/// A whole number with thousands separators: 41,234.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
