//! Latency recording and the printed results.

use hdrhistogram::Histogram;
use std::time::Duration;

/// ACK latencies in microseconds, 3 significant digits, up to one hour.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_micros().clamp(1, u64::MAX as u128) as u64);
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Final numbers of a run.
pub struct Results<'a> {
    pub messages: u64,
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
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.messages as f64 / secs
        } else {
            0.0
        };
        let h = self.latency;
        println!("{:<16}{} of {}", "messages", self.messages, self.expected);
        println!("{:<16}{:.3} s", "elapsed", secs);
        println!("{:<16}{:.0} msgs/s", "throughput", rate);
        if h.is_empty() {
            println!("{:<16}-", "ack latency");
        } else {
            println!(
                "{:<16}p50 {}   p99 {}   max {}   ({} acks)",
                "ack latency",
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                h.len()
            );
        }
        println!(
            "{:<16}{} pushed, {} synced, {} duplicates",
            "delivery", self.pushed, self.synced, self.duplicates
        );
        println!("{:<16}{}", "errors", self.errors);
    }
}
