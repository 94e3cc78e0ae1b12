//! `ferry bench room`: gobelieve's benchmark_room.go. s senders and r
//! listeners enter one room; each sender sends n ROOM_IMs, one in flight
//! (waiting for its ACK); listeners count every ROOM_IM they receive.
//! Reports deliveries/s (listener side, until the last delivery), ACK and
//! delivery latency. Works against `ferry bench baseline-server` unchanged,
//! which is how the room figure is compared with a bare fan-out.
//!
//! Payload: `'M'` + the send time (ns on this process's clock) + filler; a
//! warm-up phase (`'W'`) first waits until every listener receives, which in
//! a cluster also covers the routers' room subscriptions.

use super::ConnArgs;
use super::connect::{Targets, Tokens};
use super::raw::{RawConn, login_all};
use super::report::{latency_histogram, now_nanos, record};
use super::scenario::{self, Counters, FanWatch, Phase, Report};
use anyhow::bail;
use clap::Args;
use ferry_common::protocol::command::{ACK, ROOM_IM};
use ferry_common::protocol::realtime::Realtime;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

const MAX_TOTAL_DELIVERIES: u64 = 2_000_000_000;

#[derive(Args, Debug)]
pub struct RoomArgs {
    /// Sender connections.
    #[arg(short = 's', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub senders: u32,
    /// Listener connections.
    #[arg(short = 'r', long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=18000))]
    pub listeners: u32,
    /// Messages per sender.
    #[arg(short = 'n', long = "messages", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub n: u64,
    /// Stop sending after this many seconds even if n is not reached.
    #[arg(long)]
    pub duration: Option<u64>,
    /// ROOM_IM content size in bytes (at least 9: marker and timestamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Room id.
    #[arg(long, default_value_t = 10)]
    pub room: i64,
    /// Also write the run (config, deliveries per second, delivery latency
    /// distribution) to this JSON file, for `ferry bench plot`.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub host: super::host::HostArgs,
}

/// The fan-out counters plus what only the room run has.
#[derive(Default)]
struct Shared {
    fan: Counters,
    /// Listeners that have seen a warm-up frame.
    warm: AtomicU64,
    stop_sending: AtomicBool,
}

pub async fn run(a: RoomArgs) -> anyhow::Result<()> {
    if a.payload < 9 || a.payload > 30_000 {
        bail!("--payload must be between 9 and 30000 bytes");
    }
    if a.senders as u64 * a.n * a.listeners as u64 > MAX_TOTAL_DELIVERIES {
        bail!("s·n·r exceeds {MAX_TOTAL_DELIVERIES} deliveries per run");
    }
    let targets = Targets::resolve(&a.conn).await?;
    let tokens = Tokens::new(&a.conn).await?;
    let deadline = Instant::now() + a.conn.timeout();
    let (s, r) = (a.senders as usize, a.listeners as usize);
    let base = a.conn.uid_base;
    let sender_uids: Vec<i64> = (0..s as i64).map(|i| base + i).collect();
    let listener_uids: Vec<i64> = (0..r as i64).map(|i| base + s as i64 + i).collect();
    eprintln!(
        "bench room: {s} senders, {r} listeners in room {}, {} msgs per sender, {}-byte payload, {}",
        a.room,
        a.n,
        a.payload,
        targets.describe()
    );
    let t0 = Instant::now();
    let listeners = login_all(
        targets.receivers(),
        &a.conn,
        &tokens,
        &listener_uids,
        Some(a.room),
        deadline,
        "listeners",
    )
    .await?;
    let senders = login_all(
        targets.senders(),
        &a.conn,
        &tokens,
        &sender_uids,
        Some(a.room),
        deadline,
        "senders",
    )
    .await?;
    eprintln!(
        "{} connections in the room after {:.2} s",
        s + r,
        t0.elapsed().as_secs_f64()
    );

    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listen_tasks = JoinSet::new();
    for l in listeners {
        listen_tasks.spawn(listen(l, shared.clone(), stop_rx.clone()));
    }
    let mut senders = senders;
    warm_up(&mut senders[0], a.room, r as u64, &shared, deadline).await?;

    // Measured phase.
    let (run_start, start_nanos, cpu) = scenario::start(&a.host)?;
    let send_until = a
        .duration
        .map(|d| run_start + Duration::from_secs(d))
        .unwrap_or(deadline);
    let mut send_tasks = JoinSet::new();
    for c in senders {
        let room = shared.clone();
        send_tasks
            .spawn(async move { ((), send(c, a.room, a.n, a.payload, send_until, room).await) });
    }
    let tail = |c: &Counters| format!("lost connections {}", c.lost.load(Ordering::Relaxed));
    let watch = FanWatch {
        counters: &shared.fan,
        receivers: r as u64,
        tail: &tail,
    };
    let phase = Phase {
        stall: Some(Duration::from_secs(5)),
        deadline,
        timeout_s: a.conn.timeout,
        wake: None,
    };
    let measured =
        scenario::measure(&mut send_tasks, &watch, phase, run_start, start_nanos).await?;
    shared.fan.stop.store(true, Ordering::Release);
    shared.stop_sending.store(true, Ordering::Release);
    send_tasks.abort_all();
    let mut delivery_latency = latency_histogram()?;
    let _ = stop_tx.send(true);
    while let Some(j) = listen_tasks.join_next().await {
        if let Ok(h) = j {
            let _ = delivery_latency.add(&h);
        }
    }
    let report = Report {
        scenario: "room",
        head: (
            "connections",
            format!("{s} senders, {r} listeners ({})", targets.describe()),
        ),
        deliveries_note: String::new(),
        receivers: r as u64,
        json: a.json.as_deref(),
        config: serde_json::json!({
            "senders": s,
            "listeners": r,
            "messages": a.n,
            "payload": a.payload,
            "duration": a.duration,
            "target": a.conn.target,
        }),
        label: format!("room -s {s} -r {r} -n {} ({} B)", a.n, a.payload),
    };
    scenario::report(
        report,
        &shared.fan,
        measured,
        &delivery_latency,
        cpu.as_ref(),
    )
}

/// Sends warm-up frames from one sender until every listener has received
/// one (room subscriptions across nodes settle asynchronously).
async fn warm_up(
    c: &mut RawConn,
    room: i64,
    listeners: u64,
    shared: &Shared,
    deadline: Instant,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sent = 0u32;
    while shared.warm.load(Ordering::Acquire) < listeners {
        if Instant::now() > deadline {
            bail!("time limit reached while warming up the room");
        }
        if sent == 0 || started.elapsed() > Duration::from_millis(200) * sent {
            let body = Realtime {
                sender: c.uid,
                receiver: room,
                content: bytes::Bytes::from_static(b"W"),
            }
            .encode();
            let seq = c.send(ROOM_IM, &body).await?;
            wait_ack(c, seq).await?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "room warm: all {listeners} listeners receive ({sent} warm-up messages, {:.2} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads until the ACK for `seq`; returns its status.
async fn wait_ack(c: &mut RawConn, seq: i32) -> anyhow::Result<u8> {
    let mut status = None;
    while status.is_none() {
        c.read_batch(|cmd, _, body| {
            if cmd == ACK && body.len() >= 4 {
                let s = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if s == seq {
                    status = Some(body.get(4).copied().unwrap_or(0));
                }
            }
        })
        .await?;
    }
    Ok(status.unwrap_or(0))
}

async fn send(
    mut c: RawConn,
    room: i64,
    n: u64,
    payload: usize,
    until: Instant,
    shared: Arc<Shared>,
) -> Histogram<u64> {
    let mut h = latency_histogram().expect("valid histogram bounds");
    let mut content = vec![b'x'; payload];
    content[0] = b'M';
    for _ in 0..n {
        if shared.stop_sending.load(Ordering::Acquire) || Instant::now() >= until {
            break;
        }
        content[1..9].copy_from_slice(&now_nanos().to_be_bytes());
        let body = Realtime {
            sender: c.uid,
            receiver: room,
            content: bytes::Bytes::copy_from_slice(&content),
        }
        .encode();
        let t0 = Instant::now();
        shared.fan.sent.fetch_add(1, Ordering::Relaxed);
        let r = async {
            let seq = c.send(ROOM_IM, &body).await?;
            wait_ack(&mut c, seq).await
        }
        .await;
        match r {
            Ok(0) => {
                record(&mut h, t0.elapsed());
                shared.fan.acked.fetch_add(1, Ordering::Release);
            }
            Ok(_) => {
                shared.fan.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.fan.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    // Keep the connection until the run ends so membership does not change.
    tokio::spawn(async move {
        while !shared.fan.stop.load(Ordering::Acquire) {
            if c.read_batch(|_, _, _| {}).await.is_err() {
                break;
            }
        }
    });
    h
}

/// Counts measured ROOM_IMs and their delivery latency; flags warm-up.
/// Returns its latency histogram when `stop` changes or the connection ends.
async fn listen(
    mut c: RawConn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut h = latency_histogram().expect("valid histogram bounds");
    let mut warm = false;
    loop {
        let mut got = 0u64;
        let mut saw_warm = false;
        let mut now = 0u64;
        let r = tokio::select! {
            r = c.read_batch(|cmd, _, body| {
                if cmd != ROOM_IM || body.len() < 16 + 9 {
                    if cmd == ROOM_IM && body.get(16) == Some(&b'W') {
                        saw_warm = true;
                    }
                    return;
                }
                if body[16] == b'M' {
                    if now == 0 {
                        now = now_nanos();
                    }
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&body[17..25]);
                    let sent = u64::from_be_bytes(t);
                    h.saturating_record((now.saturating_sub(sent) / 1000).max(1));
                    got += 1;
                }
            }) => r,
            _ = stop.changed() => return h,
        };
        if saw_warm && !warm {
            warm = true;
            shared.warm.fetch_add(1, Ordering::AcqRel);
        }
        if got > 0 {
            shared.fan.delivered.fetch_add(got, Ordering::AcqRel);
            shared.fan.last_delivery.fetch_max(now, Ordering::AcqRel);
        }
        if r.is_err() {
            if !shared.fan.stop.load(Ordering::Acquire) {
                shared.fan.lost.fetch_add(1, Ordering::Relaxed);
            }
            return h;
        }
    }
}
