//! `ferry bench group`: gobelieve's benchmark_group.go. Creates a group of
//! s + r members through the im HTTP API (`POST /groups`), then s senders
//! each send n GROUP_IMs, one in flight (waiting for the ACK), while r
//! receivers (sync loop on, like an app) count what reaches them, pushed or
//! synced. Reports deliveries/s until the last delivery, ACK and delivery
//! latency.
//!
//! Content: 16 hex digits of the send time (ns on this process's clock),
//! then `-`, the sender index, `-`, the message number, then filler.

use super::ConnArgs;
use super::connect::{Targets, Tokens, connect_all, loopback_target, msgid_base};
use super::http::post_json;
use super::report::{latency_histogram, now_nanos, record};
use super::scenario::{self, Counters, Drain, FanWatch, Phase, Report};
use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use ferry_common::client::{Client, ClientOptions, Event};
use ferry_common::protocol::Message;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

const MAX_TOTAL_DELIVERIES: u64 = 500_000_000;

#[derive(Args, Debug)]
pub struct GroupArgs {
    /// Sender connections (group members).
    #[arg(short = 's', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub senders: u32,
    /// Receiver connections (group members).
    #[arg(short = 'r', long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub receivers: u32,
    /// Messages per sender.
    #[arg(short = 'n', long = "messages", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub n: u64,
    /// GROUP_IM content size in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Group id to create [default: derived from the clock, so reruns do
    /// not collide with an existing group].
    #[arg(long)]
    pub group_id: Option<i64>,
    /// The im HTTP API that creates the group.
    #[arg(long, default_value = "127.0.0.1:6666")]
    pub http: String,
    /// Bearer token for the HTTP API (the server's --api-token).
    #[arg(long, env = "FERRY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Also write the run (config, deliveries per second, delivery latency
    /// distribution) to this JSON file, for `ferry bench plot`.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub host: super::host::HostArgs,
}

/// `POST /groups`; a 404/501 means the server has no group API.
async fn create_group(a: &GroupArgs, gid: i64, members: &[i64]) -> anyhow::Result<()> {
    let addr = loopback_target(&a.http).await?;
    let json = serde_json::json!({
        "appid": a.conn.appid,
        "group_id": gid,
        "super": false,
        "members": members,
    })
    .to_string();
    let r = post_json(addr, "/groups", &json, a.api_token.as_deref()).await?;
    match r.status {
        200..=299 => Ok(()),
        404 | 501 => bail!(
            "the im HTTP API at {addr} has no POST /groups (HTTP {}): this server does not \
             implement group management yet, so the group scenario cannot run",
            r.status
        ),
        s => bail!(
            "POST /groups at {addr} failed with HTTP {s}: {}",
            r.body.trim()
        ),
    }
}

pub async fn run(a: GroupArgs) -> anyhow::Result<()> {
    if a.payload < 32 || a.payload > 30_000 {
        bail!("--payload must be between 32 and 30000 bytes");
    }
    let (s, r) = (a.senders as usize, a.receivers as usize);
    if s as u64 * a.n * r as u64 > MAX_TOTAL_DELIVERIES {
        bail!("s·n·r exceeds {MAX_TOTAL_DELIVERIES} deliveries per run");
    }
    let targets = Targets::resolve(&a.conn).await?;
    let tokens = Tokens::new(&a.conn).await?;
    let deadline = Instant::now() + a.conn.timeout();
    let base = a.conn.uid_base;
    let sender_uids: Vec<i64> = (0..s as i64).map(|i| base + i).collect();
    let receiver_uids: Vec<i64> = (0..r as i64).map(|i| base + s as i64 + i).collect();
    let gid = a.group_id.unwrap_or_else(|| {
        // Unique per run: seconds since 2020 (fits the i64 and stays readable).
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        1_000_000_000 + secs.saturating_sub(1_577_836_800) as i64
    });
    let members: Vec<i64> = sender_uids.iter().chain(&receiver_uids).copied().collect();
    create_group(&a, gid, &members).await?;
    eprintln!(
        "bench group: group {gid} of {} members, {s} senders, {r} receivers, {} msgs per sender, {}",
        members.len(),
        a.n,
        targets.describe()
    );
    eprintln!("{}", super::host::fsync_line(&a.host, &a.conn.data_dir));

    // Receivers first, with their old messages drained.
    let receivers = connect_all(
        targets.receivers(),
        &a.conn,
        &tokens,
        &receiver_uids,
        ClientOptions {
            sync_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        },
        deadline,
    )
    .await?;
    let shared = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drained_tx, mut drained_rx) = mpsc::unbounded_channel::<()>();
    let mut recv_tasks = JoinSet::new();
    for c in receivers {
        recv_tasks.spawn(receive(
            c,
            sender_uids[0],
            s,
            a.n,
            shared.clone(),
            stop_rx.clone(),
            drained_tx.clone(),
        ));
    }
    drop(drained_tx);
    match scenario::drained(&mut drained_rx, r, deadline, &|| None).await {
        Ok(_) => {}
        Err((Drain::Closed | Drain::Fatal(_), _)) => bail!("a receiver failed while draining"),
        Err((Drain::TimedOut, _)) => bail!("time limit reached while draining receivers"),
    }
    let senders = connect_all(
        targets.senders(),
        &a.conn,
        &tokens,
        &sender_uids,
        ClientOptions {
            sync: false,
            ..ClientOptions::default()
        },
        deadline,
    )
    .await?;
    eprintln!("{} members online, receivers drained", s + r);

    let (run_start, start_nanos, cpu) = scenario::start(&a.host)?;
    let mut send_tasks = JoinSet::new();
    for (i, c) in senders.into_iter().enumerate() {
        send_tasks.spawn(send(c, i, gid, a.n, a.payload, shared.clone()));
    }
    let tail = |c: &Counters| {
        format!(
            "errors {}",
            c.refused.load(Ordering::Relaxed) + c.lost.load(Ordering::Relaxed)
        )
    };
    let watch = FanWatch {
        counters: &shared,
        receivers: r as u64,
        tail: &tail,
    };
    let phase = Phase {
        stall: Some(Duration::from_secs(10)),
        deadline,
        timeout_s: a.conn.timeout,
        wake: None,
    };
    let measured =
        scenario::measure(&mut send_tasks, &watch, phase, run_start, start_nanos).await?;
    shared.stop.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    send_tasks.abort_all();
    let mut delivery_latency = latency_histogram()?;
    while let Some(j) = recv_tasks.join_next().await {
        if let Ok(h) = j {
            let _ = delivery_latency.add(&h);
        }
    }
    let report = Report {
        scenario: "group",
        head: (
            "group",
            format!("{gid}: {s} senders, {r} receivers ({})", targets.describe()),
        ),
        deliveries_note: format!(
            "   ({} duplicates)",
            shared.duplicates.load(Ordering::Relaxed)
        ),
        receivers: r as u64,
        json: a.json.as_deref(),
        config: serde_json::json!({
            "senders": s,
            "receivers": r,
            "messages": a.n,
            "payload": a.payload,
            "group_id": gid,
            "target": a.conn.target,
        }),
        label: format!("group -s {s} -r {r} -n {} ({} B)", a.n, a.payload),
    };
    scenario::report(report, &shared, measured, &delivery_latency, cpu.as_ref())
}

/// Sender i: n GROUP_IMs, one in flight. Its own pushes are drained by a
/// side task. Returns the client (kept open until the end) and its ACK latency.
async fn send(
    client: Client,
    i: usize,
    gid: i64,
    n: u64,
    payload: usize,
    shared: Arc<Counters>,
) -> (ferry_common::client::ClientHandle, Histogram<u64>) {
    let (handle, mut events) = client.split();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut h = latency_histogram().expect("valid histogram bounds");
    let base = msgid_base();
    for k in 1..=n {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let mut content = format!("{:016x}-{i}-{k}-", now_nanos()).into_bytes();
        content.resize(payload.max(content.len()), b'x');
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        match handle
            .send_group_im(gid, Bytes::from(content), base + k as i32)
            .await
        {
            Ok(ack) if ack.is_ok() => {
                record(&mut h, t0.elapsed());
                shared.acked.fetch_add(1, Ordering::Release);
            }
            Ok(_) => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    (handle, h)
}

/// Parses `<16 hex>-<sender index>-<k>-` from a bench GROUP_IM.
fn parse_content(c: &[u8]) -> Option<(u64, usize, u64)> {
    let s = std::str::from_utf8(c.get(..c.len().min(64))?).ok()?;
    let mut it = s.split('-');
    let t = u64::from_str_radix(it.next()?, 16).ok()?;
    let i = it.next()?.parse().ok()?;
    let k = it.next()?.parse().ok()?;
    Some((t, i, k))
}

/// Receiver: drain old messages, then count each (sender, k) once.
async fn receive(
    mut c: Client,
    first_sender: i64,
    senders: usize,
    n: u64,
    shared: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    drained: mpsc::UnboundedSender<()>,
) -> Histogram<u64> {
    let mut h = latency_histogram().expect("valid histogram bounds");
    loop {
        match c.recv().await {
            Some(Event::SyncDone { messages: 0, .. }) => break,
            Some(Event::SyncDone { .. }) => {
                if c.request_sync().is_err() {
                    return h;
                }
            }
            Some(Event::Closed(_)) | None => return h,
            Some(_) => {}
        }
    }
    let _ = drained.send(());
    let mut seen = vec![0u64; (senders * n as usize).div_ceil(64)];
    loop {
        let ev = tokio::select! {
            ev = c.recv() => ev,
            _ = stop.changed() => return h,
        };
        let msg = match ev {
            Some(Event::Message { msg, .. }) | Some(Event::Synced { msg, .. }) => msg,
            Some(Event::Closed(_)) | None => {
                if !shared.stop.load(Ordering::Acquire) {
                    shared.lost.fetch_add(1, Ordering::Relaxed);
                }
                return h;
            }
            Some(_) => continue,
        };
        let Message::GroupIm(im) = msg else { continue };
        let idx = im.sender - first_sender;
        let Some((t, i, k)) = parse_content(&im.content) else {
            continue;
        };
        if idx < 0 || idx as usize != i || i >= senders || k < 1 || k > n {
            continue;
        }
        let bit = i * n as usize + (k - 1) as usize;
        let (w, b) = (bit / 64, 1u64 << (bit % 64));
        if seen[w] & b != 0 {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen[w] |= b;
        let now = now_nanos();
        h.saturating_record((now.saturating_sub(t) / 1000).max(1));
        shared.delivered.fetch_add(1, Ordering::AcqRel);
        shared.last_delivery.fetch_max(now, Ordering::AcqRel);
    }
}
