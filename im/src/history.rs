//! The last ten minutes of the node's headline figures, one sample a
//! second, for the admin console (`/admin`): a newcomer sees what happened
//! before the page was opened without running Prometheus.
//!
//! Memory is fixed: [`KEEP`] samples of [`SERIES`] `u32` values plus a
//! timestamp, allocated once (about 30 KiB), and the previous second's
//! counters (4 KiB) to turn them into rates. Sampling reads the same atomics
//! `/metrics` renders, once a second from one task; the message path gains
//! nothing but the login counter.

use crate::metrics::{self, Metrics};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Samples kept: ten minutes at one a second.
pub const KEEP: usize = 600;

/// The series, in the order a sample stores them. Rates are per second;
/// latencies in microseconds.
pub const SERIES: [&str; 12] = [
    "conn_tcp",
    "conn_tls",
    "conn_ws",
    "conn_wss",
    "logins",
    "frames_in",
    "frames_out",
    "stored",
    "append_p50_us",
    "append_p99_us",
    "slow_consumer_drops",
    "imr_queued_bytes",
];

/// One second's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Unix time, seconds (u32 lasts until 2106 and keeps the ring small).
    t: u32,
    values: [u32; SERIES.len()],
}

/// Running totals at the previous sample, to turn counters into rates.
#[derive(Clone, Copy)]
struct Totals {
    logins: u64,
    frames_in: [u64; 256],
    frames_out: [u64; 256],
    drops: u64,
    latency: [u64; 13],
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<Sample>,
    prev: Option<Box<Totals>>,
    /// The last second's frames per command: `(cmd, in, out)`, busiest first.
    by_command: Vec<(u8, u32, u32)>,
}

/// The ring of samples; locked only by the sampler and the console's reads.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

/// The samples after a point in time, column by column.
#[derive(Debug, serde::Serialize)]
pub struct Columns {
    /// Unix seconds of each sample.
    pub t: Vec<u64>,
    /// One column per [`SERIES`] name, aligned with `t`.
    pub series: serde_json::Map<String, serde_json::Value>,
}

impl History {
    /// Takes one sample of `node` at Unix time `t`. The first call only
    /// records the totals (a rate needs two readings). `queued`: bytes
    /// waiting for the imrs now.
    pub fn sample(&self, m: &Metrics, queued: u64, t: u64) {
        let open = m.open_connections();
        let now = Box::new(Totals {
            logins: m.logins.get(),
            frames_in: metrics::frames_by_command(true),
            frames_out: metrics::frames_by_command(false),
            drops: m.slow_consumer_drops(),
            latency: metrics::append_latency_buckets(),
        });
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(prev) = inner.prev.replace(now.clone()) else {
            return;
        };
        let mut by_command: Vec<(u8, u32, u32)> = (0..=255u8)
            .map(|c| {
                let i = usize::from(c);
                (
                    c,
                    clamp(now.frames_in[i].saturating_sub(prev.frames_in[i])),
                    clamp(now.frames_out[i].saturating_sub(prev.frames_out[i])),
                )
            })
            .filter(|&(_, i, o)| i > 0 || o > 0)
            .collect();
        by_command
            .sort_unstable_by_key(|&(c, i, o)| (std::cmp::Reverse(u64::from(i) + u64::from(o)), c));
        inner.by_command = by_command;
        let sum = |a: &[u64; 256]| a.iter().sum::<u64>();
        let delta: [u64; 13] =
            std::array::from_fn(|i| now.latency[i].saturating_sub(prev.latency[i]));
        let rate = |a: u64, b: u64| clamp(a.saturating_sub(b));
        let values = [
            clamp(open[0]),
            clamp(open[1]),
            clamp(open[2]),
            clamp(open[3]),
            rate(now.logins, prev.logins),
            rate(sum(&now.frames_in), sum(&prev.frames_in)),
            rate(sum(&now.frames_out), sum(&prev.frames_out)),
            clamp(delta.iter().sum()),
            clamp(percentile(&delta, 0.50)),
            clamp(percentile(&delta, 0.99)),
            rate(now.drops, prev.drops),
            clamp(queued),
        ];
        if inner.samples.len() == KEEP {
            inner.samples.pop_front();
        }
        let len = inner.samples.len();
        if inner.samples.capacity() < KEEP {
            inner.samples.reserve_exact(KEEP - len);
        }
        inner.samples.push_back(Sample {
            t: clamp(t),
            values,
        });
    }

    /// The last second's frames per command, `(cmd, in, out)`, busiest first.
    pub fn by_command(&self) -> Vec<(u8, u32, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_command.clone()
    }

    /// Samples taken after Unix second `after` (0: all of them).
    pub fn since(&self, after: u64) -> Columns {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let picked: Vec<&Sample> = inner
            .samples
            .iter()
            .filter(|s| u64::from(s.t) > after)
            .collect();
        let mut series = serde_json::Map::new();
        for (i, name) in SERIES.iter().enumerate() {
            let col: Vec<u32> = picked.iter().map(|s| s.values[i]).collect();
            series.insert((*name).into(), col.into());
        }
        Columns {
            t: picked.iter().map(|s| u64::from(s.t)).collect(),
            series,
        }
    }
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The `q` quantile (0..1) of one second's append latencies in µs, from
/// bucket counts: linear within the bucket that holds it (the histogram's
/// resolution); the overflow bucket reads as its lower bound.
fn percentile(buckets: &[u64; 13], q: f64) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let bounds = &metrics::LATENCY_BOUNDS_US;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lo = if i == 0 { 0 } else { bounds[i - 1] };
            let Some(&hi) = bounds.get(i) else {
                return lo;
            };
            let within = (rank - seen as f64) / n as f64;
            return lo + ((hi - lo) as f64 * within).round() as u64;
        }
        seen += n;
    }
    bounds[bounds.len() - 1]
}

/// How long the ring's storage is, in bytes (for the docs and a test).
pub const fn footprint() -> usize {
    KEEP * std::mem::size_of::<Sample>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_within_a_bucket() {
        let mut b = [0u64; 13];
        assert_eq!(percentile(&b, 0.5), 0);
        // 100 appends all in (250, 500] µs.
        b[2] = 100;
        assert_eq!(percentile(&b, 0.5), 375);
        assert_eq!(percentile(&b, 0.99), 498);
        // One slow outlier beyond the last bound.
        b[12] = 1;
        assert_eq!(percentile(&b, 0.999), 1_000_000);
        let mut c = [0u64; 13];
        c[0] = 99;
        c[5] = 1;
        assert!(percentile(&c, 0.5) <= 100);
        assert!(percentile(&c, 0.995) > 2_500);
    }

    #[test]
    fn ring_is_bounded_and_small() {
        assert!(footprint() <= 32 * 1024, "{}", footprint());
    }
}
