//! `ferry bench reconnect`: a reconnect storm. N clients connect, log in
//! and finish their first sync; then all of them drop at once and come
//! back at once (at most `--connect-wave` connecting concurrently). Reports
//! the time from the drop until the last client is authenticated and has
//! finished a sync (SYNC_END), and the per-client distribution.

use super::ConnArgs;
use super::connect::{Targets, Tokens, open};
use super::report::{Table, latency_histogram, rate, record};
use anyhow::{Context, bail};
use clap::Args;
use ferry_common::client::{Client, ClientOptions, Event};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct ReconnectArgs {
    /// Clients.
    #[arg(short = 'n', long = "clients", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub n: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Connects, logs in and waits for the end of the first sync batch.
async fn login_synced(
    addr: SocketAddr,
    uid: i64,
    token: &str,
    a: &ConnArgs,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let stream = open(addr, uid as usize, a.source_ips).await?;
    let mut c = Client::from_stream(
        stream,
        ClientOptions {
            sync_timeout: timeout,
            request_timeout: timeout,
            ..ClientOptions::default()
        },
    )?;
    c.auth(token, a.platform, &format!("bench-{uid}"), a.proto_version)
        .await?;
    loop {
        match c.recv_timeout(timeout).await? {
            Event::SyncDone { .. } => return Ok(c),
            Event::Closed(why) => bail!("closed before sync finished: {why}"),
            _ => {}
        }
    }
}

/// Logs in all clients with at most `concurrency` in progress; returns the
/// clients, per-client times and the time until the last one was synced.
async fn storm(
    targets: &[SocketAddr],
    a: &Arc<ConnArgs>,
    uids: &[i64],
    tokens: &[String],
    what: &'static str,
) -> anyhow::Result<(Vec<Client>, hdrhistogram::Histogram<u64>, Duration, u64)> {
    let sem = Arc::new(Semaphore::new(a.connect_wave as usize));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, (&uid, tok)) in uids.iter().zip(tokens).enumerate() {
        let addr = targets[i % targets.len()];
        let (sem, done, a, tok) = (sem.clone(), done.clone(), a.clone(), tok.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let t0 = Instant::now();
            let r = login_synced(addr, uid, &tok, &a, a.timeout()).await;
            done.fetch_add(1, Ordering::Relaxed);
            (uid, t0.elapsed(), r)
        });
    }
    let mut h = latency_histogram()?;
    let mut clients = Vec::with_capacity(uids.len());
    let mut errors = 0u64;
    let mut first_error = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = start;
    loop {
        tokio::select! {
            j = set.join_next() => match j {
                None => break,
                Some(Ok((_, t, Ok(c)))) => {
                    record(&mut h, t);
                    clients.push(c);
                    last = Instant::now();
                }
                Some(Ok((uid, _, Err(e)))) => {
                    errors += 1;
                    first_error.get_or_insert(format!("uid {uid}: {e:#}"));
                }
                Some(Err(e)) => {
                    errors += 1;
                    first_error.get_or_insert(format!("task: {e}"));
                }
            },
            _ = tick.tick() => eprintln!(
                "[{:>4}s] {what}: {}/{} authenticated and synced",
                start.elapsed().as_secs(),
                done.load(Ordering::Relaxed),
                uids.len()
            ),
        }
    }
    if let Some(e) = first_error {
        eprintln!("{what}: {errors} failed, first: {e}");
    }
    Ok((clients, h, last - start, errors))
}

pub async fn run(a: ReconnectArgs) -> anyhow::Result<()> {
    let targets = Targets::resolve(&a.conn).await?;
    let tokens = Tokens::new(&a.conn).await?;
    let n = a.n as usize;
    let uids: Vec<i64> = (0..n as i64).map(|i| a.conn.uid_base + i).collect();
    let mut toks = Vec::with_capacity(n);
    for chunk in uids.chunks(10_000) {
        toks.extend(tokens.make(a.conn.appid, chunk).await?);
    }
    let conn = Arc::new(a.conn.clone());
    eprintln!(
        "bench reconnect: {n} clients, {} connecting at a time, {}",
        conn.connect_wave,
        targets.describe()
    );
    let (clients, _, first_time, errors) =
        storm(&targets.all, &conn, &uids, &toks, "initial login").await?;
    if errors > 0 {
        bail!("{errors} clients could not log in initially");
    }
    eprintln!(
        "{n} clients online after {:.2} s; dropping them all",
        first_time.as_secs_f64()
    );
    for c in &clients {
        c.close();
    }
    drop(clients);
    let (clients, h, storm_time, errors) = storm(&targets.all, &conn, &uids, &toks, "reconnect")
        .await
        .context("reconnect storm")?;
    Table::new("bench reconnect")
        .row("clients", format!("{n} ({} back)", clients.len()))
        .row(
            "all back in",
            format!(
                "{:.3} s   ({:.0} logins+syncs/s)",
                storm_time.as_secs_f64(),
                rate(clients.len() as u64, storm_time)
            ),
        )
        .latency("per client", &h)
        .row("errors", errors.to_string())
        .print();
    drop(clients);
    if errors > 0 {
        bail!("{errors} clients did not come back");
    }
    Ok(())
}
