//! `ferry bench connections`: N authenticated idle connections (the 500k
//! claim of gobelieve's benchmark_connection.go, measured as memory). Opens
//! them from 127.0.0.x source addresses (bind before connect), holds them,
//! checks each still answers a PING, and reports the growth of the server's
//! RSS per connection, read from /proc/<pid>/status.

use super::ConnArgs;
use super::connect::{Targets, Tokens};
use super::raw::{RawConn, login_all};
use super::report::{Table, rate};
use anyhow::{Context, bail};
use clap::Args;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct ConnectionsArgs {
    /// Connections to open.
    #[arg(short = 'n', long = "connections", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub n: u32,
    /// Seconds to hold them idle before measuring.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// PID of the server process(es) whose RSS is measured (repeatable).
    #[arg(long = "server-pid")]
    pub server_pid: Vec<u32>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// VmRSS of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb * 1024)
}

fn total_rss(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &p in pids {
        sum += rss_bytes(p)?;
    }
    Ok(Some(sum))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

pub async fn run(a: ConnectionsArgs) -> anyhow::Result<()> {
    let targets = Targets::resolve(&a.conn).await?;
    let tokens = Tokens::new(&a.conn).await?;
    let deadline = Instant::now() + a.conn.timeout();
    let n = a.n as usize;
    let uids: Vec<i64> = (0..n as i64).map(|i| a.conn.uid_base + i).collect();
    eprintln!(
        "bench connections: {n} idle connections over {} source addresses to {}",
        a.conn.source_ips,
        targets
            .all
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let before = total_rss(&a.server_pid)?;
    let t0 = Instant::now();
    let conns = login_all(
        &targets.all,
        &a.conn,
        &tokens,
        &uids,
        None,
        deadline,
        "connections",
    )
    .await?;
    let connect_time = t0.elapsed();
    eprintln!(
        "{n} connections authenticated in {:.2} s; holding {} s",
        connect_time.as_secs_f64(),
        a.hold
    );
    let hold_end = Instant::now() + Duration::from_secs(a.hold);
    while Instant::now() < hold_end {
        let step = hold_end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
        let rss = total_rss(&a.server_pid)?;
        eprintln!(
            "[{:>4}s] holding {n} connections  server RSS {}",
            t0.elapsed().as_secs(),
            rss.map_or("-".into(), mib)
        );
    }
    let after = total_rss(&a.server_pid)?;

    // Every connection must still be served: one PING round trip each, a
    // wave at a time; all stay open until the end.
    let mut dead = 0usize;
    let mut kept = Vec::with_capacity(n);
    let mut conns = conns;
    while !conns.is_empty() {
        let wave: Vec<RawConn> = conns
            .drain(..conns.len().min(a.conn.connect_wave as usize))
            .collect();
        let mut set = JoinSet::new();
        for mut c in wave {
            set.spawn(async move {
                let ok = tokio::time::timeout(Duration::from_secs(10), c.barrier())
                    .await
                    .is_ok_and(|r| r.is_ok());
                (c, ok)
            });
        }
        while let Some(j) = set.join_next().await {
            match j {
                Ok((c, true)) => kept.push(c),
                _ => dead += 1,
            }
        }
    }
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    let mut t = Table::new("bench connections");
    t.row(
        "connections",
        format!("{n} ({} alive after hold)", kept.len()),
    )
    .row(
        "connect+auth",
        format!(
            "{:.2} s   ({:.0} connections/s)",
            connect_time.as_secs_f64(),
            rate(n as u64, connect_time)
        ),
    );
    match (before, after, per_conn) {
        (Some(b), Some(af), Some(p)) => {
            t.row(
                "server RSS",
                format!("{} before, {} after", mib(b), mib(af)),
            )
            .row("RSS/connection", format!("{p:.0} bytes"));
        }
        _ => {
            t.row("RSS/connection", "- (pass --server-pid)");
        }
    }
    t.row(
        "errors",
        format!("{dead} (connections that did not answer PING)"),
    )
    .print();
    drop(kept);
    if dead > 0 {
        bail!("{dead} connections were lost while idle");
    }
    Ok(())
}
