//! Getting bench users logged in: the (loopback) targets, tokens (JWT or
//! Redis), sockets bound to spread source addresses, and connecting in
//! bounded waves.

use super::{ConnArgs, TokenSource};
use anyhow::{Context, bail};
use ferry_common::client::{Client, ClientOptions};
use ferry_common::token::{Claims, sign};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Token lifetime; benchmark.go's Redis tokens also last 4 h.
const TOKEN_TTL: i64 = 4 * 3600;

/// Offset of this run's client msgids. The server recognises a resent
/// message by (sender, device, client msgid) for its dedup window, so a
/// rerun numbering its messages 1..n again would be ACKed but not stored;
/// each run therefore numbers from its own base (n ≤ 1,000,000 per sender).
pub fn msgid_base() -> i32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    (t % 2000) as i32 * 1_000_000
}

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

/// The resolved `--target` list. With one target everything runs on it;
/// with several, senders use the first and receivers the others (cross-node).
pub struct Targets {
    pub all: Vec<SocketAddr>,
}

impl Targets {
    pub async fn resolve(a: &ConnArgs) -> anyhow::Result<Targets> {
        let mut all = Vec::new();
        for t in a.target.iter().filter(|t| !t.trim().is_empty()) {
            all.push(loopback_target(t.trim()).await?);
        }
        if all.is_empty() {
            bail!("no --target given");
        }
        Ok(Targets { all })
    }

    pub fn senders(&self) -> &[SocketAddr] {
        &self.all[..1]
    }

    pub fn receivers(&self) -> &[SocketAddr] {
        if self.all.len() > 1 {
            &self.all[1..]
        } else {
            &self.all[..]
        }
    }

    pub fn cross_node(&self) -> bool {
        self.all.len() > 1
    }

    /// For the scenario's first progress line.
    pub fn describe(&self) -> String {
        if self.cross_node() {
            let r: Vec<String> = self.receivers().iter().map(|a| a.to_string()).collect();
            format!("senders on {}, receivers on {}", self.all[0], r.join(","))
        } else {
            format!("target {}", self.all[0])
        }
    }
}

/// Makes login tokens for bench users.
pub enum Tokens {
    Jwt(Vec<u8>),
    Redis(redis::aio::MultiplexedConnection),
}

impl Tokens {
    pub async fn new(a: &ConnArgs) -> anyhow::Result<Tokens> {
        match a.token_source {
            TokenSource::Jwt => Ok(Tokens::Jwt(secret(a)?)),
            TokenSource::Redis => {
                let client = redis::Client::open(a.redis.as_str())
                    .with_context(|| format!("--redis {}", a.redis))?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .with_context(|| format!("connecting to {}", a.redis))?;
                Ok(Tokens::Redis(conn))
            }
        }
    }

    /// One token per uid, in order. Redis tokens are written in one pipeline
    /// as gobelieve's benchmarks do (`access_token_<t>` with user_id, app_id,
    /// 4 h expiry).
    pub async fn make(&self, appid: i64, uids: &[i64]) -> anyhow::Result<Vec<String>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self {
            Tokens::Jwt(key) => Ok(uids
                .iter()
                .map(|&uid| {
                    sign(
                        &Claims {
                            appid,
                            uid,
                            exp: Some(now.as_secs() as i64 + TOKEN_TTL),
                            nbf: None,
                        },
                        key,
                    )
                })
                .collect()),
            Tokens::Redis(conn) => {
                let mut conn = conn.clone();
                let tokens: Vec<String> = uids
                    .iter()
                    .map(|uid| format!("bench{:x}u{uid}", now.as_nanos()))
                    .collect();
                let mut pipe = redis::pipe();
                for (t, &uid) in tokens.iter().zip(uids) {
                    let key = format!("access_token_{t}");
                    pipe.hset_multiple(&key, &[("user_id", uid), ("app_id", appid)])
                        .ignore()
                        .expire(&key, TOKEN_TTL)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn)
                    .await
                    .context("writing bench tokens to Redis")?;
                Ok(tokens)
            }
        }
    }
}

/// A TCP connection to `addr` whose source address is 127.0.0.(1 + slot %
/// n), bound before connecting, so N connections use N/n ports per address.
pub async fn open(addr: SocketAddr, slot: usize, source_ips: u8) -> std::io::Result<TcpStream> {
    let stream = match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && source_ips > 1 => {
            let s = TcpSocket::new_v4()?;
            let last = 1 + (slot % source_ips as usize) as u8;
            s.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
            s.connect(addr).await?
        }
        _ => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects and logs in every uid, `wave` at a time; uid i goes to
/// `targets[i % len]`. Fails on the first error (with the uid) or when
/// `deadline` passes.
pub async fn connect_all(
    targets: &[SocketAddr],
    a: &ConnArgs,
    tokens: &Tokens,
    uids: &[i64],
    options: ClientOptions,
    deadline: Instant,
) -> anyhow::Result<Vec<Client>> {
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(uids.len());
    clients.resize_with(uids.len(), || None);
    let wave = a.connect_wave as usize;
    for (w, chunk) in uids.chunks(wave).enumerate() {
        let toks = tokens.make(a.appid, chunk).await?;
        let mut set = JoinSet::new();
        for (j, (&uid, tok)) in chunk.iter().zip(toks).enumerate() {
            let idx = w * wave + j;
            let addr = targets[idx % targets.len()];
            let opts = options.clone();
            let (platform, version, ips, appid) =
                (a.platform, a.proto_version, a.source_ips, a.appid);
            set.spawn(async move {
                let r = async {
                    let stream = open(addr, uid as usize, ips).await?;
                    let c = Client::from_stream(stream, opts)?;
                    // Redis tokens are opaque: tell the client who it is.
                    c.set_identity(appid, uid);
                    c.auth(&tok, platform, &format!("bench-{uid}"), version)
                        .await?;
                    Ok::<_, anyhow::Error>(c)
                }
                .await;
                (idx, uid, addr, r)
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let collected = tokio::time::timeout(left.max(Duration::from_millis(1)), async {
            while let Some(joined) = set.join_next().await {
                let (idx, uid, addr, r) = joined.context("connect task failed")?;
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
