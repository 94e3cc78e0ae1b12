//! Latency recording, the progress clock, and the printed results.

use hdrhistogram::Histogram;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// Latencies in microseconds, 3 significant digits, up to one hour.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_micros().clamp(1, u64::MAX as u128) as u64);
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// `p50 … p99 … max … (n samples)` or `-` when empty.
pub fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".to_string();
    }
    format!(
        "p50 {}   p99 {}   max {}   ({} samples)",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    )
}

/// Nanoseconds since the first call: a clock shared by the tasks of one
/// process, so a timestamp written into a payload by a sender can be
/// compared by the listener that receives it.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// A two-column results table, printed to stdout (progress goes to stderr).
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, label: &str, value: impl Into<String>) -> &mut Table {
        self.rows.push((label.to_string(), value.into()));
        self
    }

    pub fn latency(&mut self, label: &str, h: &Histogram<u64>) -> &mut Table {
        self.row(label, latency_line(h))
    }

    pub fn print(&self) {
        println!("== {} ==", self.title);
        for (l, v) in &self.rows {
            println!("{l:<18}{v}");
        }
    }
}

/// The closing figures shared by the fan-out scenarios (room, group).
pub struct FanOut<'a> {
    pub delivered: u64,
    pub acked: u64,
    /// From the first send to the last counted delivery.
    pub span: Duration,
    pub ack_latency: &'a Histogram<u64>,
    pub delivery_latency: &'a Histogram<u64>,
    pub refused: u64,
    pub lost: u64,
}

impl FanOut<'_> {
    pub fn errors(&self) -> u64 {
        self.refused + self.lost
    }

    /// Adds elapsed, throughput, both latencies and errors to `t`.
    pub fn rows<'t>(&self, t: &'t mut Table) -> &'t mut Table {
        t.row("elapsed", format!("{:.3} s", self.span.as_secs_f64()))
            .row(
                "throughput",
                format!(
                    "{:.0} deliveries/s   ({:.0} msgs/s sent)",
                    rate(self.delivered, self.span),
                    rate(self.acked, self.span)
                ),
            )
            .latency("ack latency", self.ack_latency)
            .latency("delivery latency", self.delivery_latency)
            .row(
                "errors",
                format!(
                    "{} ({} refused ACKs, {} lost connections)",
                    self.errors(),
                    self.refused,
                    self.lost
                ),
            )
    }

    /// The command's result: an error when the run was cut short or had errors.
    pub fn finish(&self, name: &str, outcome: Result<(), String>) -> anyhow::Result<()> {
        use anyhow::Context;
        match outcome {
            Ok(()) if self.errors() == 0 => Ok(()),
            Ok(()) => anyhow::bail!("bench {name} finished with {} errors", self.errors()),
            Err(why) => {
                Err(anyhow::anyhow!(why)).with_context(|| format!("bench {name} incomplete"))
            }
        }
    }
}

/// Final numbers of a peer run.
pub struct Results<'a> {
    pub messages: u64,
    /// Server CPU row, with `--server-pid`.
    pub server_cpu: Option<String>,
    pub expected: u64,
    pub elapsed: Duration,
    pub latency: &'a Histogram<u64>,
    pub pushed: u64,
    pub synced: u64,
    pub duplicates: u64,
    pub errors: u64,
}

impl Results<'_> {
    pub fn print(&self) {
        Table::new("bench peer")
            .row(
                "messages",
                format!("{} of {}", self.messages, self.expected),
            )
            .row("elapsed", format!("{:.3} s", self.elapsed.as_secs_f64()))
            .row(
                "throughput",
                format!("{:.0} msgs/s", rate(self.messages, self.elapsed)),
            )
            .latency("ack latency", self.latency)
            .row(
                "delivery",
                format!(
                    "{} pushed, {} synced, {} duplicates",
                    self.pushed, self.synced, self.duplicates
                ),
            )
            .row("errors", self.errors.to_string())
            .row(
                "server CPU",
                self.server_cpu
                    .as_deref()
                    .unwrap_or("- (pass --server-pid)"),
            )
            .print();
    }
}

/// Watches a fan-out's delivery count once its senders are done: an error
/// when it stops growing for `limit` (something was lost), instead of
/// waiting for the overall time limit.
pub struct Stall {
    limit: Duration,
    last: u64,
    since: Option<Instant>,
}

impl Stall {
    pub fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            last: 0,
            since: None,
        }
    }

    /// Called once per progress tick with the current count.
    pub fn tick(&mut self, senders_done: bool, delivered: u64) -> Result<(), String> {
        if senders_done && delivered == self.last {
            let since = *self.since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.limit {
                return Err("deliveries stopped before all arrived".into());
            }
        } else {
            self.since = None;
        }
        self.last = delivered;
        Ok(())
    }
}
