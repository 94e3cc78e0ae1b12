//! The measured phase and the report the fan-out scenarios (group, room)
//! share: senders run with one message in flight while receivers count
//! deliveries; progress is printed once a second; the run ends when every
//! sender is done and every ACKed message reached every receiver, when
//! deliveries stall, or at the time limit. The scenarios keep only what is
//! theirs: who connects how, what a message carries, how a receiver counts.

use super::host::ServerCpu;
use super::record::{Recorder, RunRecord, unix_now};
use super::report::{FanOut, Stall, Table, latency_histogram, now_nanos};
use hdrhistogram::Histogram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Counters of a fan-out run, shared by all its tasks.
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

/// How one scenario's measured phase runs.
pub struct Phase<'a> {
    /// Receivers every ACKed message must reach.
    pub receivers: u64,
    /// Deliveries standing still this long after the last sender finished
    /// end the run as incomplete.
    pub stall: Duration,
    pub deadline: Instant,
    /// `--timeout`, for the message when `deadline` passes.
    pub timeout_s: u64,
    /// The end of each progress line (errors as the scenario counts them).
    pub tail: &'a dyn Fn(&Counters) -> String,
}

/// What the measured phase leaves for the report.
pub struct Measured<T> {
    pub outcome: Result<(), String>,
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
}

/// Runs the measured phase over the already spawned `senders`.
pub async fn measure<T: 'static>(
    senders: &mut JoinSet<(T, Histogram<u64>)>,
    c: &Counters,
    p: Phase<'_>,
    run_start: Instant,
    start_nanos: u64,
) -> anyhow::Result<Measured<T>> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut ack_latency = latency_histogram()?;
    let mut senders_done = false;
    let mut stall = Stall::new(p.stall);
    let mut kept = Vec::new();
    let mut recorder = Recorder::new();
    let started = unix_now();
    let outcome: Result<(), String> = loop {
        tokio::select! {
            j = senders.join_next(), if !senders_done => match j {
                Some(Ok((k, h))) => { let _ = ack_latency.add(&h); kept.push(k); }
                Some(Err(e)) => break Err(format!("sender task failed: {e}")),
                None => senders_done = true,
            },
            _ = tick.tick() => {
                let d = c.delivered.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4}s] sent {}  acked {}  delivered {d}  ({} deliveries/s)  {}",
                    run_start.elapsed().as_secs(),
                    c.sent.load(Ordering::Relaxed),
                    c.acked.load(Ordering::Relaxed),
                    stall.delta(d),
                    (p.tail)(c),
                );
                recorder.tick(d);
                if let Err(e) = stall.tick(senders_done, d) {
                    break Err(e);
                }
            }
            _ = tokio::time::sleep_until(p.deadline) => {
                break Err(format!("time limit of {} s reached", p.timeout_s));
            }
        }
        let expected = c.acked.load(Ordering::Acquire) * p.receivers;
        if senders_done && c.delivered.load(Ordering::Acquire) >= expected {
            break Ok(());
        }
    };
    Ok(Measured {
        outcome,
        ack_latency,
        _kept: kept,
        recorder,
        started,
        start_nanos,
    })
}

/// The phase's start: its clock, its `now_nanos()` and the server CPU
/// counter (with `--server-pid`), taken together.
pub fn start(host: &super::host::HostArgs) -> anyhow::Result<(Instant, u64, Option<ServerCpu>)> {
    Ok((Instant::now(), now_nanos(), ServerCpu::start(host)?))
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
