//! Getting bench users logged in: the JWT secret, the (loopback) target,
//! tokens, and connecting in bounded waves.

use super::ConnArgs;
use anyhow::{Context, bail};
use ferry_common::client::{Client, ClientOptions};
use ferry_common::token::{Claims, sign};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The server's JWT secret: `--jwt-secret` / `FERRY_JWT_SECRET`, else the
/// file the server generated in its data dir (trimmed like the server does).
/// Never creates one: a fresh secret would not match the running server.
pub fn secret(a: &ConnArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = a.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    let path = a.data_dir.join("jwt_secret");
    let s = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (pass --jwt-secret or --data-dir of the running `ferry im`)",
            path.display()
        )
    })?;
    let s = s.trim();
    if s.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(s.as_bytes().to_vec())
}

/// Resolves `target` and refuses anything that is not loopback.
pub async fn loopback_target(target: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        bail!("{target} resolves to no address");
    };
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!("{target} resolves to {bad}: the bench only targets loopback addresses");
    }
    Ok(first)
}

/// A 4-hour HS256 token for `uid` (benchmark.go's tokens also last 4 h).
pub fn token(key: &[u8], appid: i64, uid: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    sign(
        &Claims {
            appid,
            uid,
            exp: Some(now + 4 * 3600),
            nbf: None,
        },
        key,
    )
}

/// Connects and logs in every uid, `wave` at a time, in order. Fails on the
/// first error (with the uid) or when `deadline` passes.
pub async fn connect_all(
    addr: SocketAddr,
    a: &ConnArgs,
    key: &[u8],
    uids: &[i64],
    options: ClientOptions,
    deadline: Instant,
) -> anyhow::Result<Vec<Client>> {
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(uids.len());
    clients.resize_with(uids.len(), || None);
    for (w, chunk) in uids.chunks(a.connect_wave as usize).enumerate() {
        let mut set = JoinSet::new();
        for (j, &uid) in chunk.iter().enumerate() {
            let idx = w * a.connect_wave as usize + j;
            let tok = token(key, a.appid, uid);
            let opts = options.clone();
            let (platform, version) = (a.platform, a.proto_version);
            set.spawn(async move {
                let r = async {
                    let c = Client::connect_with(addr, opts).await?;
                    c.auth(&tok, platform, &format!("bench-{uid}"), version)
                        .await?;
                    Ok::<_, ferry_common::client::ClientError>(c)
                }
                .await;
                (idx, uid, r)
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let collected = tokio::time::timeout(left.max(Duration::from_millis(1)), async {
            while let Some(joined) = set.join_next().await {
                let (idx, uid, r) = joined.context("connect task failed")?;
                let c = r.with_context(|| format!("connecting/logging in uid {uid} at {addr}"))?;
                clients[idx] = Some(c);
            }
            Ok::<_, anyhow::Error>(())
        })
        .await;
        match collected {
            Ok(r) => r?,
            Err(_) => bail!("time limit reached while connecting"),
        }
    }
    clients
        .into_iter()
        .map(|c| c.context("a connection is missing"))
        .collect()
}
