//! The skeleton every message scenario (peer, group, room) shares, so each
//! keeps only what is its own (who connects how, what a message carries,
//! how a receiver counts):
//!
//! - [`drained`]: wait until every receiver has synced away its old
//!   messages, with a time limit and the scenario's fatal check;
//! - [`measure`]: senders run while progress is printed once a second; the
//!   run ends when the scenario's [`Watch`] says so, when a watched count
//!   stalls, or at the time limit;
//! - [`report`]: the fan-out scenarios' (group, room) table and JSON record.

use super::host::ServerCpu;
use super::record::{Recorder, RunRecord, unix_now};
use super::report::{FanOut, Stall, Table, latency_histogram, now_nanos};
use hdrhistogram::Histogram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Why waiting for the receivers' drain ended early.
pub enum Drain {
    /// The time limit passed first.
    TimedOut,
    /// Every receiver task is gone before all reported (one failed).
    Closed,
    /// The scenario's fatal check reported this.
    Fatal(String),
}

/// Waits for `expected` drain reports on `rx`, checking `fatal` after each
/// and when the receivers are gone, and returns them. An error carries the
/// reports so far: the caller decides whether [`Drain::Closed`] (receivers
/// gone without a fatal error) is one.
pub async fn drained<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    expected: usize,
    deadline: Instant,
    fatal: &dyn Fn() -> Option<String>,
) -> Result<Vec<T>, (Drain, Vec<T>)> {
    let mut got = Vec::with_capacity(expected);
    for _ in 0..expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(m)) => got.push(m),
            // A receiver that failed may have said why before it ended.
            Ok(None) => return Err((fatal().map_or(Drain::Closed, Drain::Fatal), got)),
            Err(_) => return Err((Drain::TimedOut, got)),
        }
        if let Some(why) = fatal() {
            return Err((Drain::Fatal(why), got));
        }
    }
    Ok(got)
}

/// Counters of a fan-out run (group, room), shared by all its tasks.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    /// `now_nanos()` of the latest counted delivery.
    pub last_delivery: AtomicU64,
    pub lost: AtomicU64,
    /// Set when the measured phase is over: tasks stop counting losses.
    pub stop: AtomicBool,
}

/// What one scenario counts while its measured phase runs.
pub trait Watch {
    /// The count whose growth the progress line shows as a rate, the JSON
    /// series records and the stall check watches.
    fn count(&self) -> u64;
    /// One progress line after the `[   Ns]` prefix, given the count and
    /// its growth since the previous line.
    fn line(&self, count: u64, delta: u64) -> String;
    /// Checked after every wake-up: `Some(Ok)` when the run is complete,
    /// `Some(Err)` when it failed (a fatal error), `None` to go on.
    /// `senders_done` says whether every sender task has returned.
    fn end(&self, senders_done: bool) -> Option<Result<(), String>>;
}

/// How one scenario's measured phase runs.
pub struct Phase<'a> {
    /// The count standing still this long after the last sender finished
    /// ends the run as incomplete (`None`: no stall check).
    pub stall: Option<Duration>,
    pub deadline: Instant,
    /// `--timeout`, for the message when `deadline` passes.
    pub timeout_s: u64,
    /// Signalled by tasks when [`Watch::end`] may have changed between
    /// ticks, so the run ends without waiting for the next one.
    pub wake: Option<&'a Notify>,
}

/// What the measured phase leaves for the report.
pub struct Measured<T> {
    pub outcome: Result<(), String>,
    /// The senders' ACK latency, merged as they returned.
    pub ack_latency: Histogram<u64>,
    /// Whatever the senders returned besides their histogram, held until
    /// the report is written (their connections stay open meanwhile, so no
    /// membership changes while receivers finish counting).
    pub _kept: Vec<T>,
    pub recorder: Recorder,
    /// Unix time the phase started (for the JSON record).
    pub started: u64,
    /// `now_nanos()` when the phase started (delivery span).
    pub start_nanos: u64,
    /// From the start to the end of the measured phase.
    pub elapsed: Duration,
}

/// The phase's start: its clock, its `now_nanos()` and the server CPU
/// counter (with `--server-pid`), taken together.
pub fn start(host: &super::host::HostArgs) -> anyhow::Result<(Instant, u64, Option<ServerCpu>)> {
    Ok((Instant::now(), now_nanos(), ServerCpu::start(host)?))
}

/// Runs the measured phase over the already spawned `senders`.
pub async fn measure<T: 'static>(
    senders: &mut JoinSet<(T, Histogram<u64>)>,
    watch: &dyn Watch,
    p: Phase<'_>,
    run_start: Instant,
    start_nanos: u64,
) -> anyhow::Result<Measured<T>> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut ack_latency = latency_histogram()?;
    let mut senders_done = false;
    let mut stall = p.stall.map(Stall::new);
    let mut last = 0u64;
    let mut kept = Vec::new();
    let mut recorder = Recorder::new();
    let started = unix_now();
    let woken = || async {
        match p.wake {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    let outcome: Result<(), String> = loop {
        tokio::select! {
            j = senders.join_next(), if !senders_done => match j {
                Some(Ok((k, h))) => { let _ = ack_latency.add(&h); kept.push(k); }
                Some(Err(e)) => break Err(format!("sender task failed: {e}")),
                None => senders_done = true,
            },
            _ = woken() => {}
            _ = tick.tick() => {
                let n = watch.count();
                eprintln!(
                    "[{:>4}s] {}",
                    run_start.elapsed().as_secs(),
                    watch.line(n, n - last),
                );
                last = n;
                recorder.tick(n);
                if let Some(Err(e)) = stall.as_mut().map(|s| s.tick(senders_done, n)) {
                    break Err(e);
                }
            }
            _ = tokio::time::sleep_until(p.deadline) => {
                break Err(format!("time limit of {} s reached", p.timeout_s));
            }
        }
        if let Some(end) = watch.end(senders_done) {
            break end;
        }
    };
    Ok(Measured {
        outcome,
        ack_latency,
        _kept: kept,
        recorder,
        started,
        start_nanos,
        elapsed: run_start.elapsed(),
    })
}

/// The fan-out scenarios' watch: deliveries are the count; the run is
/// complete when every sender returned and every ACKed message reached
/// every receiver.
pub struct FanWatch<'a> {
    pub counters: &'a Counters,
    /// Receivers every ACKed message must reach.
    pub receivers: u64,
    /// The end of each progress line (errors as the scenario counts them).
    pub tail: &'a dyn Fn(&Counters) -> String,
}

impl Watch for FanWatch<'_> {
    fn count(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    fn line(&self, delivered: u64, delta: u64) -> String {
        let c = self.counters;
        format!(
            "sent {}  acked {}  delivered {delivered}  ({delta} deliveries/s)  {}",
            c.sent.load(Ordering::Relaxed),
            c.acked.load(Ordering::Relaxed),
            (self.tail)(c),
        )
    }

    fn end(&self, senders_done: bool) -> Option<Result<(), String>> {
        let c = self.counters;
        let expected = c.acked.load(Ordering::Acquire) * self.receivers;
        (senders_done && c.delivered.load(Ordering::Acquire) >= expected).then_some(Ok(()))
    }
}

/// How one scenario names and describes its run in the report.
pub struct Report<'a> {
    /// `group` or `room`: the JSON scenario and the error prefix.
    pub scenario: &'static str,
    /// First table row: name and value.
    pub head: (&'static str, String),
    /// Appended to the deliveries row (e.g. a duplicates count).
    pub deliveries_note: String,
    pub receivers: u64,
    pub json: Option<&'a Path>,
    pub config: serde_json::Value,
    pub label: String,
}

/// Prints the table, writes the JSON record when asked, and returns the
/// command's result.
pub fn report<T>(
    r: Report<'_>,
    c: &Counters,
    m: Measured<T>,
    delivery_latency: &Histogram<u64>,
    cpu: Option<&ServerCpu>,
) -> anyhow::Result<()> {
    let Measured {
        outcome,
        ack_latency,
        mut recorder,
        started,
        start_nanos,
        ..
    } = m;
    let acked = c.acked.load(Ordering::Relaxed);
    let delivered = c.delivered.load(Ordering::Relaxed);
    let span = Duration::from_nanos(
        c.last_delivery
            .load(Ordering::Relaxed)
            .saturating_sub(start_nanos),
    );
    let fan = FanOut {
        delivered,
        acked,
        span,
        ack_latency: &ack_latency,
        delivery_latency,
        refused: c.refused.load(Ordering::Relaxed),
        lost: c.lost.load(Ordering::Relaxed),
    };
    let mut table = Table::new(format!("bench {}", r.scenario));
    table
        .row(r.head.0, r.head.1)
        .row(
            "messages",
            format!("{acked} acked of {} sent", c.sent.load(Ordering::Relaxed)),
        )
        .row(
            "deliveries",
            format!(
                "{delivered} of {}{}",
                acked * r.receivers,
                r.deliveries_note
            ),
        );
    fan.rows(&mut table);
    if let Some(cpu) = cpu {
        table.row("server CPU", cpu.row(acked, delivered)?);
    }
    table.print();
    if let Some(path) = r.json {
        recorder.finish(delivered);
        RunRecord::fan_out(
            r.scenario,
            r.label,
            r.config,
            started,
            recorder.series,
            &fan,
            outcome.is_ok(),
        )
        .write(path)?;
    }
    fan.finish(r.scenario, outcome)
}
