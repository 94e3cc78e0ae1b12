//! Harness for imr integration tests: an in-process imr on free loopback
//! ports, a real `redis-server` process, and fake ims speaking the link
//! protocol over raw TCP with `FrameCodec`.
#![allow(dead_code)]

use bytes::Bytes;
use ferry_common::link::{
    BatchPush, HELLO, Hello, LINK_VERSION, MAX_LINK_BODY, PUSH, RoomSubscription, RouteMessage,
    SUBSCRIBE, SUBSCRIBE_ROOM, Subscribe, UNSUBSCRIBE, Unsubscribe,
};
use ferry_common::protocol::{CodecError, Frame, FrameCodec, Message};
use ferry_imr::config::ImrConfig;
use ferry_imr::server::Server;
use ferry_imr::stats::{Stats, StatsSnapshot};
use futures_util::StreamExt;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;

/// Upper bound for every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `check` until it returns true (bounded by [`WAIT`]).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- redis

/// A throwaway `redis-server` on a loopback port, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Redis {
            child: None,
            port,
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: apt-get install redis-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + WAIT;
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited before listening on {addr}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    pub async fn llen(&self, key: &str) -> usize {
        let mut c = self.conn().await;
        redis::cmd("LLEN")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("LLEN")
    }

    pub async fn lrange(&self, key: &str) -> Vec<String> {
        let mut c = self.conn().await;
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .expect("LRANGE")
    }

    /// Waits until `key` holds `n` elements and returns them.
    pub async fn wait_list(&self, key: &str, n: usize) -> Vec<String> {
        eventually(&format!("{key} to hold {n} entries"), || async {
            self.llen(key).await >= n
        })
        .await;
        let v = self.lrange(key).await;
        assert_eq!(v.len(), n, "{key}: {v:?}");
        v
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- imr

/// An in-process imr on free loopback ports; stopped on drop.
pub struct Imr {
    pub link: SocketAddr,
    pub http: SocketAddr,
    pub stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ferry_imr::server::StartError>>>,
}

pub fn config(redis_url: Option<&str>) -> ImrConfig {
    ImrConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        redis: redis_url.unwrap_or("redis://127.0.0.1:1").to_string(),
        push_disabled: redis_url.is_none(),
        ..ImrConfig::default()
    }
}

impl Imr {
    pub async fn start(cfg: ImrConfig) -> Imr {
        let server = Server::bind(cfg).await.expect("imr binds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let link = server.link_addr();
        let http = server.http_addr();
        let stats = server.stats();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Imr {
            link,
            http,
            stats,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops the imr and waits for it to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(WAIT, t)
                .await
                .expect("imr stops in time");
            r.expect("join").expect("clean stop");
        }
    }

    /// GET on the HTTP API: (status, body).
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        http_get(self.http, path_and_query).await
    }

    pub async fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path_and_query).await;
        let v =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"));
        (status, v)
    }

    /// Waits until the HTTP API lists `uid` of `appid` as subscribed.
    pub async fn wait_subscribed(&self, appid: i64, uid: i64) {
        eventually(&format!("({appid}, {uid}) subscribed"), || async {
            let (_, v) = self.get_json("/all_online").await;
            v.as_array().is_some_and(|apps| {
                apps.iter().any(|a| {
                    a["appid"] == appid
                        && a["users"]
                            .as_array()
                            .is_some_and(|u| u.iter().any(|x| *x == uid))
                })
            })
        })
        .await;
    }

    /// Polls the counters until `check` holds (bounded by [`WAIT`]).
    pub async fn wait_stats(&self, what: &str, check: impl Fn(&StatsSnapshot) -> bool) {
        eventually(what, || async { check(&self.stats()) }).await;
    }

    pub async fn wait_links(&self, n: u64) {
        eventually(&format!("{n} links"), || async { self.stats().links == n }).await;
    }
}

impl Drop for Imr {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Minimal HTTP/1.1 GET (Connection: close).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(addr).await.expect("http connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("http write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http reply in time")
        .expect("http read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP reply: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

// ---------------------------------------------------------------- fake im

/// A raw link client.
pub struct FakeIm {
    reader: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: OwnedWriteHalf,
}

pub fn hello_frame(version: u16, secret: &str) -> Bytes {
    Frame::new(
        HELLO,
        0,
        0,
        0,
        Hello {
            version,
            secret: Bytes::copy_from_slice(secret.as_bytes()),
            name: Bytes::new(),
        }
        .encode(),
    )
    .to_bytes()
}

impl FakeIm {
    /// Connects without a handshake.
    pub async fn connect(addr: SocketAddr) -> FakeIm {
        let s = TcpStream::connect(addr).await.expect("connect imr");
        let (r, w) = s.into_split();
        FakeIm {
            reader: FramedRead::new(r, FrameCodec::new(MAX_LINK_BODY)),
            writer: w,
        }
    }

    /// Connects and completes the handshake with `secret`.
    pub async fn linked(imr: &Imr, secret: &str) -> FakeIm {
        let mut im = FakeIm::connect(imr.link).await;
        im.send_raw(&hello_frame(LINK_VERSION, secret)).await;
        let f = im.recv().await;
        assert_eq!(f.cmd, HELLO);
        let h = Hello::decode(f.body).expect("HELLO body");
        assert_eq!(h.version, LINK_VERSION);
        assert!(h.secret.is_empty());
        im
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write to imr");
    }

    /// Writes, tolerating a connection the imr already closed.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    pub async fn send(&mut self, cmd: u8, body: Bytes) {
        self.send_raw(&Frame::new(cmd, 0, 0, 0, body).to_bytes())
            .await;
    }

    pub async fn subscribe(&mut self, appid: i64, uid: i64, online: bool) {
        self.send(SUBSCRIBE, Subscribe { appid, uid, online }.encode())
            .await;
    }

    pub async fn unsubscribe(&mut self, appid: i64, uid: i64) {
        self.send(UNSUBSCRIBE, Unsubscribe { appid, uid }.encode())
            .await;
    }

    pub async fn subscribe_room(&mut self, appid: i64, room: i64) {
        self.send(
            SUBSCRIBE_ROOM,
            RoomSubscription {
                appid,
                room_id: room,
            }
            .encode(),
        )
        .await;
    }

    pub async fn publish(&mut self, cmd: u8, rm: &RouteMessage) {
        self.send(cmd, rm.encode()).await;
    }

    pub async fn push(&mut self, appid: i64, receivers: &[i64], msg: &Message) {
        let req = BatchPush {
            appid,
            receivers: receivers.to_vec(),
            msg: msg.to_frame(0, 2, 0).to_bytes(),
        };
        self.send(PUSH, req.encode()).await;
    }

    /// The next frame (bounded wait); panics on close or timeout.
    pub async fn recv(&mut self) -> Frame {
        match tokio::time::timeout(WAIT, self.reader.next()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => panic!("link error: {e}"),
            Ok(None) => panic!("imr closed the link"),
            Err(_) => panic!("no frame from imr within {WAIT:?}"),
        }
    }

    /// Waits until the imr closes the link (EOF or reset); returns the
    /// frames that arrived before.
    pub async fn closed(&mut self) -> Vec<Frame> {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.reader.next()).await {
                Ok(Some(Ok(f))) => got.push(f),
                Ok(Some(Err(CodecError::Io(_)))) | Ok(None) => return got,
                Ok(Some(Err(e))) => panic!("unexpected codec error: {e}"),
                Err(_) => panic!("imr did not close the link within {WAIT:?}"),
            }
        }
    }
}

/// A RouteMessage carrying an IM frame from `sender` to `receiver`.
pub fn route(appid: i64, receiver: i64, content: &str) -> RouteMessage {
    let im = ferry_common::protocol::im::Im {
        sender: 1,
        receiver,
        timestamp: 1_700_000_000,
        msgid: 1,
        content: Bytes::copy_from_slice(content.as_bytes()),
    };
    RouteMessage {
        appid,
        receiver,
        msgid: 11,
        prev_msgid: 10,
        device_id: 0,
        timestamp: 123,
        msg: Message::Im(im).to_frame(0, 2, 0).to_bytes(),
    }
}
