//! A minimal wire-level connection for scenarios where the full client
//! library would cost the load tool more than the server: room listeners
//! (hundreds of thousands of frames per second, counted from headers) and
//! idle connections (nothing but a socket per connection).

use super::connect::open;
use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::{AUTH_STATUS, AUTH_TOKEN, PING, PONG};
use ferry_common::protocol::{HEADER_LEN, Header};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest body accepted from the server (as the client library).
const MAX_BODY: usize = 16 * 1024 * 1024;

pub struct RawConn {
    pub stream: TcpStream,
    /// The uid this connection logged in as.
    pub uid: i64,
    seq: i32,
    version: u8,
    buf: BytesMut,
}

impl RawConn {
    /// Connects from 127.0.0.x (see [`open`]) and logs in; fails unless the
    /// server answers AUTH_STATUS 0.
    pub async fn login(
        addr: SocketAddr,
        uid: i64,
        source_ips: u8,
        token: &str,
        platform: u8,
        version: u8,
    ) -> anyhow::Result<RawConn> {
        let device = format!("bench-{uid}");
        let stream = open(addr, uid as usize, source_ips)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let mut c = RawConn {
            stream,
            uid,
            seq: 0,
            version,
            buf: BytesMut::new(),
        };
        let body = AuthToken {
            platform_id: platform,
            token: token.to_string(),
            device_id: device,
        }
        .encode();
        c.send(AUTH_TOKEN, &body).await?;
        loop {
            let (cmd, body) = c.read_frame().await?;
            if cmd == AUTH_STATUS {
                let status = body.get(..4).map_or(-1, |b| {
                    i32::from_be_bytes(b.try_into().unwrap_or([0xff; 4]))
                });
                if status != 0 {
                    bail!("login refused (AUTH_STATUS {status})");
                }
                // An idle connection keeps no read buffer.
                c.buf = BytesMut::new();
                return Ok(c);
            }
        }
    }

    /// Writes one frame; returns its seq.
    pub async fn send(&mut self, cmd: u8, body: &[u8]) -> anyhow::Result<i32> {
        self.seq = self.seq.wrapping_add(1);
        let h = Header {
            len: body.len(),
            seq: self.seq,
            cmd,
            version: self.version,
            flag: 0,
        };
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(body);
        self.stream
            .write_all(&out)
            .await
            .context("writing to the server")?;
        Ok(self.seq)
    }

    /// Sends PING and waits for PONG, skipping everything else: since the
    /// server handles a connection's frames in order, this confirms that
    /// everything sent before (e.g. ENTER_ROOM) has been processed.
    pub async fn barrier(&mut self) -> anyhow::Result<()> {
        self.send(PING, &[]).await?;
        loop {
            let (cmd, _) = self.read_frame().await?;
            if cmd == PONG {
                self.buf = BytesMut::new();
                return Ok(());
            }
        }
    }

    /// The next frame (command, body).
    pub async fn read_frame(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        loop {
            if let Some(h) = self.header()?
                && self.buf.len() >= HEADER_LEN + h.len
            {
                self.buf.advance(HEADER_LEN);
                let body = self.buf.split_to(h.len).to_vec();
                return Ok((h.cmd, body));
            }
            self.fill().await?;
        }
    }

    /// One read, then `f(cmd, seq, body)` for every complete frame. Errors
    /// on EOF or a bad header.
    pub async fn read_batch(&mut self, mut f: impl FnMut(u8, i32, &[u8])) -> anyhow::Result<()> {
        self.fill().await?;
        while let Some(h) = self.header()? {
            if self.buf.len() < HEADER_LEN + h.len {
                break;
            }
            f(h.cmd, h.seq, &self.buf[HEADER_LEN..HEADER_LEN + h.len]);
            self.buf.advance(HEADER_LEN + h.len);
        }
        Ok(())
    }

    fn header(&self) -> anyhow::Result<Option<Header>> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        Ok(Some(
            Header::parse(&h, MAX_BODY).context("bad frame header from the server")?,
        ))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("reading from the server")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Logs in every uid with raw connections, `--connect-wave` at a time; uid
/// i goes to `targets[i % len]`. With `room`, each connection also enters
/// it and waits for a PING round trip, so it is a member when this returns.
/// Prints a progress line per second.
pub async fn login_all(
    targets: &[SocketAddr],
    a: &super::ConnArgs,
    tokens: &super::connect::Tokens,
    uids: &[i64],
    room: Option<i64>,
    deadline: tokio::time::Instant,
    what: &str,
) -> anyhow::Result<Vec<RawConn>> {
    use ferry_common::protocol::command::ENTER_ROOM;
    use tokio::task::JoinSet;
    use tokio::time::Instant;
    let start = Instant::now();
    let mut last_print = start;
    let mut out: Vec<Option<RawConn>> = Vec::with_capacity(uids.len());
    out.resize_with(uids.len(), || None);
    let wave = a.connect_wave as usize;
    let mut done = 0usize;
    for (w, chunk) in uids.chunks(wave).enumerate() {
        let toks = tokens.make(a.appid, chunk).await?;
        let mut set = JoinSet::new();
        for (j, (&uid, tok)) in chunk.iter().zip(toks).enumerate() {
            let idx = w * wave + j;
            let addr = targets[idx % targets.len()];
            let (platform, version, ips) = (a.platform, a.proto_version, a.source_ips);
            set.spawn(async move {
                let r = async {
                    let mut c = RawConn::login(addr, uid, ips, &tok, platform, version).await?;
                    if let Some(room) = room {
                        c.send(ENTER_ROOM, &room.to_be_bytes()).await?;
                        c.barrier().await?;
                    }
                    Ok::<_, anyhow::Error>(c)
                }
                .await;
                (idx, uid, addr, r)
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let collected =
            tokio::time::timeout(left.max(std::time::Duration::from_millis(1)), async {
                while let Some(joined) = set.join_next().await {
                    let (idx, uid, addr, r) = joined.context("connect task failed")?;
                    let c = r.with_context(|| format!("logging in uid {uid} at {addr}"))?;
                    out[idx] = Some(c);
                    done += 1;
                }
                Ok::<_, anyhow::Error>(())
            })
            .await;
        match collected {
            Ok(r) => r?,
            Err(_) => bail!("time limit reached while connecting {what}"),
        }
        if last_print.elapsed().as_secs() >= 1 {
            last_print = Instant::now();
            eprintln!(
                "[{:>4}s] {what}: {done}/{} logged in",
                start.elapsed().as_secs(),
                uids.len()
            );
        }
    }
    out.into_iter()
        .map(|c| c.context("a connection is missing"))
        .collect()
}
