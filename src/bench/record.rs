//! `--json FILE`: one bench run as a file people can keep, compare and plot
//! (`ferry bench plot`): the configuration, the per-second throughput
//! series, the latency distribution and the printed summary.

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Quantiles kept from the latency histogram (the plot's x axis).
pub const QUANTILES: [f64; 10] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0];

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// `peer`, `room`, ...
    pub scenario: String,
    /// A short description for legends (scenario and its main options).
    pub label: String,
    /// Unix seconds at the start.
    pub started: u64,
    /// The options the run was given.
    pub config: serde_json::Value,
    /// What the throughput series counts (e.g. `msgs/s received`).
    pub unit: String,
    /// One point per progress tick.
    pub series: Vec<Point>,
    /// Which latency the distribution measures (e.g. `ack`).
    pub latency_name: String,
    pub latency: Latency,
    /// The printed results, as numbers.
    pub summary: serde_json::Value,
}

/// Throughput in one progress interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the measured phase started (end of the interval).
    pub t: f64,
    /// Events per second in the interval.
    pub rate: f64,
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub mean_us: f64,
    /// `(quantile, µs)` for each of [`QUANTILES`].
    pub quantiles: Vec<(f64, u64)>,
    /// `(upper bound µs, count)`, log-spaced buckets (powers of two),
    /// empty buckets left out.
    pub histogram: Vec<(u64, u64)>,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let quantiles = QUANTILES
            .iter()
            .map(|&q| (q, h.value_at_quantile(q)))
            .collect();
        let histogram = h
            .iter_log(1, 2.0)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect();
        Latency {
            samples: h.len(),
            mean_us: h.mean(),
            quantiles,
            histogram,
        }
    }
}

/// Collects the per-second points of a run as it goes.
pub struct Recorder {
    start: tokio::time::Instant,
    last_t: f64,
    last_count: u64,
    pub series: Vec<Point>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: tokio::time::Instant::now(),
            last_t: 0.0,
            last_count: 0,
            series: Vec::new(),
        }
    }

    /// A progress tick: `count` is the running total of what is measured.
    pub fn tick(&mut self, count: u64) {
        self.point(count, 0.0);
    }

    /// The end of the run: the last partial interval, unless it is too
    /// short to give a meaningful rate.
    pub fn finish(&mut self, count: u64) {
        self.point(count, 0.25);
    }

    fn point(&mut self, count: u64, min_dt: f64) {
        let t = self.start.elapsed().as_secs_f64();
        let dt = t - self.last_t;
        if dt > min_dt {
            self.series.push(Point {
                t,
                rate: count.saturating_sub(self.last_count) as f64 / dt,
            });
        }
        self.last_t = t;
        self.last_count = count;
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RunRecord {
    /// A fan-out run (room, group): deliveries per second, the delivery
    /// latency distribution, and the fan-out's closing figures.
    pub fn fan_out(
        scenario: &str,
        label: String,
        config: serde_json::Value,
        started: u64,
        series: Vec<Point>,
        fan: &super::report::FanOut<'_>,
        complete: bool,
    ) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            label,
            started,
            config,
            unit: "deliveries/s".into(),
            series,
            latency_name: "delivery".into(),
            latency: Latency::from_histogram(fan.delivery_latency),
            summary: serde_json::json!({
                "acked": fan.acked,
                "delivered": fan.delivered,
                "span_s": fan.span.as_secs_f64(),
                "throughput": super::report::rate(fan.delivered, fan.span),
                "ack_latency": Latency::from_histogram(fan.ack_latency),
                "errors": fan.errors(),
                "complete": complete,
            }),
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<RunRecord> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a `ferry bench --json` file", path.display()))
    }
}
