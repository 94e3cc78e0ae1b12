//! `ferry bench peer`: gobelieve's benchmark.go. c senders, c receivers,
//! sender i → receiver i; receivers drain their old messages first; each
//! sender then sends n IMs one at a time (waiting for each ACK), at most
//! `window` messages ahead of its receiver. Receivers take pushes and syncs
//! through the client's sync loop (which also reports SYNC_KEY). Done when
//! all c·n messages have arrived; throughput = c·n / elapsed.

use super::ConnArgs;
use super::connect::{Targets, Tokens, connect_all, msgid_base};
use super::record::{Latency, RunRecord};
use super::report::{Results, latency_histogram, record};
use super::scenario::{self, Drain, Phase, Watch};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use ferry_common::client::{Client, ClientError, ClientOptions, Event};
use ferry_common::protocol::{MAX_CLIENT_BODY, Message};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest sender count: 2·c connections must fit in the fd limits of both
/// the bench and the server on one machine.
const MAX_C: u32 = 5000;
const MAX_N: u64 = 1_000_000;
const MAX_TOTAL: u64 = 20_000_000;

#[derive(Args, Debug)]
pub struct PeerArgs {
    /// Sender connections (and as many receivers).
    #[arg(short = 'c', long = "connections", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=MAX_C as i64))]
    pub c: u32,
    /// Messages per sender.
    #[arg(short = 'n', long = "messages", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_N))]
    pub n: u64,
    /// IM content size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Total send rate in msgs/s spread over the senders (default: as fast
    /// as ACKs come back). Latency at a fixed fraction of the peak is
    /// measured with this.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How far (in messages) a sender may run ahead of its receiver.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Also write the run (config, per-second throughput, ACK latency
    /// distribution) to this JSON file, for `ferry bench plot`.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub host: super::host::HostArgs,
}

/// Counters shared by all tasks.
#[derive(Default)]
struct Progress {
    /// This run's client msgid offset (see [`msgid_base`]).
    base: i32,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    pushed: AtomicU64,
    synced: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    /// Set by the task that hit a fatal condition (connection lost).
    fatal: Mutex<Option<String>>,
    /// Signalled when `received` reaches the total or on a fatal error.
    done: Notify,
}

impl Progress {
    fn fail(&self, why: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(why);
        drop(f);
        self.done.notify_one();
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What sender i and receiver i share: the throttle.
#[derive(Default)]
struct Pair {
    received: AtomicU64,
    notify: Notify,
}

pub async fn run(a: PeerArgs) -> anyhow::Result<()> {
    let c = a.c as usize;
    let total = a.c as u64 * a.n;
    if total > MAX_TOTAL {
        bail!("c·n = {total} exceeds the limit of {MAX_TOTAL} messages per run");
    }
    if a.payload + 24 > MAX_CLIENT_BODY {
        bail!("--payload must be at most {}", MAX_CLIENT_BODY - 24);
    }
    let targets = Targets::resolve(&a.conn).await?;
    let tokens = Tokens::new(&a.conn).await?;
    let start = Instant::now();
    let deadline = start + a.conn.timeout();
    let base = a.conn.uid_base;
    let sender_uids: Vec<i64> = (0..c as i64).map(|i| base + i).collect();
    let receiver_uids: Vec<i64> = (0..c as i64).map(|i| base + c as i64 + i).collect();
    eprintln!(
        "bench peer: {c} senders (uid {}..={}) -> {c} receivers (uid {}..={}), {} msgs each, \
         {}-byte payload, {}",
        sender_uids[0],
        sender_uids[c - 1],
        receiver_uids[0],
        receiver_uids[c - 1],
        a.n,
        a.payload,
        targets.describe()
    );
    eprintln!("{}", super::host::fsync_line(&a.host, &a.conn.data_dir));

    // Receivers: sync loop on, resuming from the key the server stored.
    let sync_opts = ClientOptions {
        sync_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let receivers = connect_all(
        targets.receivers(),
        &a.conn,
        &tokens,
        &receiver_uids,
        sync_opts,
        deadline,
    )
    .await?;
    eprintln!(
        "connected {c} receivers in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    let progress = Arc::new(Progress {
        base: msgid_base(),
        ..Progress::default()
    });
    let pairs: Arc<Vec<Pair>> = Arc::new((0..c).map(|_| Pair::default()).collect());
    let mut tasks = JoinSet::new();
    let (drained_tx, mut drained_rx) = mpsc::unbounded_channel::<u64>();
    let drain_start = Instant::now();
    for (i, rc) in receivers.into_iter().enumerate() {
        tasks.spawn(receive(
            rc,
            i,
            sender_uids[i],
            a.n,
            total,
            pairs.clone(),
            progress.clone(),
            drained_tx.clone(),
        ));
    }
    drop(drained_tx);
    let drained_msgs: u64 =
        match scenario::drained(&mut drained_rx, c, deadline, &|| progress.fatal()).await {
            Ok(counts) => counts.into_iter().sum(),
            // Every receiver task gone without a fatal error: nothing left
            // to wait for (the run's own checks report what follows).
            Err((Drain::Closed, counts)) => counts.into_iter().sum(),
            Err((Drain::TimedOut, _)) => {
                tasks.abort_all();
                bail!("time limit reached while draining old messages");
            }
            Err((Drain::Fatal(why), _)) => {
                tasks.abort_all();
                bail!("while draining: {why}");
            }
        };
    eprintln!(
        "drained {drained_msgs} old messages in {:.2} s",
        drain_start.elapsed().as_secs_f64()
    );

    // Senders: no sync loop (their own history is not part of the test).
    let send_opts = ClientOptions {
        sync: false,
        ..ClientOptions::default()
    };
    let senders = match connect_all(
        targets.senders(),
        &a.conn,
        &tokens,
        &sender_uids,
        send_opts,
        deadline,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tasks.abort_all();
            return Err(e);
        }
    };
    eprintln!("connected {c} senders");

    let payload = Bytes::from(vec![b'x'; a.payload]);
    let (run_start, start_nanos, cpu) = scenario::start(&a.host)?;
    let mut send_tasks = JoinSet::new();
    for (i, sc) in senders.into_iter().enumerate() {
        let sent = send(
            sc,
            i,
            receiver_uids[i],
            a.n,
            a.window,
            a.rate
                .map(|r| Duration::from_secs_f64(a.c as f64 / r.max(0.001))),
            payload.clone(),
            pairs.clone(),
            progress.clone(),
        );
        send_tasks.spawn(async move { ((), sent.await) });
    }
    let phase = Phase {
        stall: None,
        deadline,
        timeout_s: a.conn.timeout,
        wake: Some(&progress.done),
    };
    let watch = PeerWatch {
        progress: &progress,
        total,
    };
    let mut m = scenario::measure(&mut send_tasks, &watch, phase, run_start, start_nanos).await?;
    let (outcome, elapsed) = (m.outcome, m.elapsed);
    progress.stop.store(true, Ordering::Release);
    for p in pairs.iter() {
        p.notify.notify_one();
    }

    // Collect the histograms of the senders still running (they return once
    // they see `stop`; give them a moment, then abort).
    let collect = async {
        while let Some(j) = send_tasks.join_next().await {
            if let Ok(((), h)) = j {
                let _ = m.ack_latency.add(&h);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), collect)
        .await
        .is_err()
    {
        send_tasks.abort_all();
    }
    tasks.abort_all();
    let latency = m.ack_latency;
    let mut recorder = m.recorder;
    recorder.finish(progress.received.load(Ordering::Relaxed));
    let started = m.started;

    if let Some(path) = &a.json {
        let received = progress.received.load(Ordering::Relaxed);
        RunRecord {
            scenario: "peer".into(),
            label: format!("peer -c {} -n {} ({} B)", a.c, a.n, a.payload),
            started,
            config: serde_json::json!({
                "connections": a.c,
                "messages": a.n,
                "payload": a.payload,
                "rate": a.rate,
                "window": a.window,
                "target": a.conn.target,
                "proto_version": a.conn.proto_version,
            }),
            unit: "msgs/s".into(),
            series: recorder.series,
            latency_name: "ack".into(),
            latency: Latency::from_histogram(&latency),
            summary: serde_json::json!({
                "messages": received,
                "expected": total,
                "elapsed_s": elapsed.as_secs_f64(),
                "throughput": super::report::rate(received, elapsed),
                "pushed": progress.pushed.load(Ordering::Relaxed),
                "synced": progress.synced.load(Ordering::Relaxed),
                "duplicates": progress.duplicates.load(Ordering::Relaxed),
                "errors": progress.errors.load(Ordering::Relaxed),
                "complete": outcome.is_ok(),
            }),
        }
        .write(path)?;
    }

    let received = progress.received.load(Ordering::Relaxed);
    let server_cpu = match &cpu {
        Some(c) => Some(c.row(received, 0)?),
        None => None,
    };
    Results {
        messages: received,
        server_cpu,
        expected: total,
        elapsed,
        latency: &latency,
        pushed: progress.pushed.load(Ordering::Relaxed),
        synced: progress.synced.load(Ordering::Relaxed),
        duplicates: progress.duplicates.load(Ordering::Relaxed),
        errors: progress.errors.load(Ordering::Relaxed),
    }
    .print();
    match outcome {
        Ok(()) => Ok(()),
        Err(why) => Err(anyhow::anyhow!(why)).context(format!(
            "bench peer incomplete: {} of {total} messages received",
            progress.received.load(Ordering::Relaxed)
        )),
    }
}

/// Peer's watch: messages received are the count; the run fails on the
/// first fatal error and is complete when all c·n messages arrived.
struct PeerWatch<'a> {
    progress: &'a Progress,
    total: u64,
}

impl Watch for PeerWatch<'_> {
    fn count(&self) -> u64 {
        self.progress.received.load(Ordering::Relaxed)
    }

    fn line(&self, received: u64, delta: u64) -> String {
        let p = self.progress;
        format!(
            "sent {}/{}  acked {}  received {received}  ({delta} msg/s)  errors {}",
            p.sent.load(Ordering::Relaxed),
            self.total,
            p.acked.load(Ordering::Relaxed),
            p.errors.load(Ordering::Relaxed),
        )
    }

    fn end(&self, _senders_done: bool) -> Option<Result<(), String>> {
        if let Some(why) = self.progress.fatal() {
            return Some(Err(why));
        }
        (self.progress.received.load(Ordering::Acquire) >= self.total).then_some(Ok(()))
    }
}

/// Receiver i: drain (sync until a batch comes back empty), report the
/// drained count, then count the bench's messages from sender i, each local
/// msgid once.
#[allow(clippy::too_many_arguments)]
async fn receive(
    mut client: Client,
    i: usize,
    sender: i64,
    n: u64,
    total: u64,
    pairs: Arc<Vec<Pair>>,
    progress: Arc<Progress>,
    drained: mpsc::UnboundedSender<u64>,
) {
    // Drain: the sync started at auth; keep asking until a batch is empty.
    let mut old = 0u64;
    loop {
        match client.recv().await {
            Some(Event::SyncDone { messages: 0, .. }) => break,
            Some(Event::SyncDone { messages, .. }) => {
                old += messages as u64;
                if client.request_sync().is_err() {
                    progress.fail(format!("receiver {i}: connection closed while draining"));
                    return;
                }
            }
            Some(Event::Closed(why)) => {
                progress.fail(format!(
                    "receiver {i}: connection closed while draining: {why}"
                ));
                return;
            }
            None => return,
            Some(_) => {}
        }
    }
    let _ = drained.send(old);

    let pair = &pairs[i];
    let base = progress.base;
    let mut seen = vec![0u64; (n as usize).div_ceil(64)];
    let mut got = 0u64;
    while got < n {
        let (msg, pushed) = match client.recv().await {
            Some(Event::Message { msg, .. }) => (msg, true),
            Some(Event::Synced { msg, .. }) => (msg, false),
            Some(Event::Closed(why)) => {
                if !progress.stop.load(Ordering::Acquire) {
                    progress.fail(format!("receiver {i}: connection closed: {why}"));
                }
                return;
            }
            None => return,
            Some(_) => continue,
        };
        let Message::Im(im) = msg else { continue };
        let local = im.msgid.wrapping_sub(base) as i64;
        if im.sender != sender || local < 1 || local as u64 > n {
            continue;
        }
        let bit = (local - 1) as usize;
        let (w, b) = (bit / 64, 1u64 << (bit % 64));
        if seen[w] & b != 0 {
            progress.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen[w] |= b;
        got += 1;
        if pushed {
            progress.pushed.fetch_add(1, Ordering::Relaxed);
        } else {
            progress.synced.fetch_add(1, Ordering::Relaxed);
        }
        pair.received.fetch_add(1, Ordering::Release);
        pair.notify.notify_one();
        if progress.received.fetch_add(1, Ordering::AcqRel) + 1 == total {
            progress.done.notify_one();
        }
    }
    // Keep the connection open (and its events drained) until the run ends,
    // so the server sees no churn while other pairs are still working.
    while let Some(ev) = client.recv().await {
        if matches!(ev, Event::Closed(_)) {
            break;
        }
    }
}

/// Sender i: n IMs to receiver i, one in flight, throttled to `window` ahead
/// of the receiver. Returns its ACK latency histogram.
#[allow(clippy::too_many_arguments)]
async fn send(
    client: Client,
    i: usize,
    receiver: i64,
    n: u64,
    window: u64,
    interval: Option<Duration>,
    payload: Bytes,
    pairs: Arc<Vec<Pair>>,
    progress: Arc<Progress>,
) -> Histogram<u64> {
    let mut h = latency_histogram().expect("valid histogram bounds");
    let pair = &pairs[i];
    let base = progress.base;
    // Paced senders start spread over one interval so they do not send in lockstep.
    let mut next = interval.map(|iv| Instant::now() + iv.mul_f64(i as f64 / 97.0 % 1.0));
    for k in 1..=n {
        if let (Some(at), Some(iv)) = (next.as_mut(), interval) {
            tokio::time::sleep_until(*at).await;
            *at += iv;
        }
        // Throttle: at most `window` messages not yet received.
        while (k - 1).saturating_sub(pair.received.load(Ordering::Acquire)) >= window {
            if progress.stop.load(Ordering::Acquire) {
                return h;
            }
            tokio::select! {
                _ = pair.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        if progress.stop.load(Ordering::Acquire) {
            return h;
        }
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        match client
            .send_im(receiver, payload.clone(), base + k as i32)
            .await
        {
            Ok(ack) if ack.is_ok() => {
                record(&mut h, t0.elapsed());
                progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(ClientError::Timeout) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if !progress.stop.load(Ordering::Acquire) {
                    progress.fail(format!("sender {i}: {e}"));
                }
                return h;
            }
        }
    }
    // Stay connected until the run ends (closing early is not what is measured).
    while !progress.stop.load(Ordering::Acquire) {
        tokio::select! {
            _ = pair.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    h
}
