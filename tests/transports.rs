//! Every client transport end to end against a real `ferry im`: raw TCP, raw
//! TLS, WebSocket and secure WebSocket. Certificates are generated here
//! (rcgen), never committed. Each test logs a user in over the transport
//! under test and exchanges messages both ways with a TCP user.

mod support;
mod wire;

use bytes::{Bytes, BytesMut};
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::*;
use ferry_common::protocol::im::Im as ImBody;
use ferry_common::protocol::{Frame, split_frame};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::{Im, free_port, token};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wire::{Raw, WAIT};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A self-signed certificate for `localhost`, written as PEM files.
struct Cert {
    der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn make_cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    Cert {
        der: ck.cert.der().clone(),
        cert,
        key,
        _dir: dir,
    }
}

struct Node {
    im: Im,
    tls: SocketAddr,
    wss: SocketAddr,
    cert: Cert,
}

fn start_tls_node() -> Node {
    let cert = make_cert();
    let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let wss = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let im = Im::start(&[
        "--tls-cert",
        cert.cert.to_str().expect("utf8"),
        "--tls-key",
        cert.key.to_str().expect("utf8"),
        "--tls-listen",
        &tls.to_string(),
        "--wss-listen",
        &wss.to_string(),
    ]);
    Node { im, tls, wss, cert }
}

async fn tls_connect(addr: SocketAddr, root: &CertificateDer<'static>) -> impl Io + use<> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls handshake")
}

/// A frame client over a byte stream or WebSocket messages.
enum Conn {
    Stream(Box<dyn Io>, BytesMut),
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
}

impl Conn {
    async fn stream(io: impl Io + 'static) -> Conn {
        Conn::Stream(Box::new(io), BytesMut::new())
    }

    async fn ws(io: impl Io + 'static) -> Conn {
        let io: Box<dyn Io> = Box::new(io);
        let (ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", io)
            .await
            .expect("websocket handshake");
        Conn::Ws(Box::new(ws))
    }

    async fn send(&mut self, f: Frame) {
        let mut b = BytesMut::new();
        f.write_to(&mut b);
        match self {
            Conn::Stream(io, _) => io.write_all(&b).await.expect("write"),
            Conn::Ws(ws) => ws.send(Message::Binary(b.freeze())).await.expect("ws send"),
        }
    }

    async fn recv(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.recv_inner())
            .await
            .expect("no frame within the wait")
    }

    async fn recv_inner(&mut self) -> Frame {
        match self {
            Conn::Stream(io, buf) => loop {
                if let Some(f) = split_frame(buf, 1 << 20).expect("frame") {
                    return f;
                }
                let mut chunk = [0u8; 4096];
                let n = io.read(&mut chunk).await.expect("read");
                assert!(n > 0, "server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            },
            Conn::Ws(ws) => loop {
                match ws.next().await.expect("ws open").expect("ws message") {
                    Message::Binary(b) => {
                        let mut buf = BytesMut::from(&b[..]);
                        let f = split_frame(&mut buf, 1 << 20)
                            .expect("frame")
                            .expect("a whole frame");
                        assert!(
                            buf.is_empty(),
                            "each WebSocket message carries exactly one frame"
                        );
                        return f;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    other => panic!("unexpected websocket message {other:?}"),
                }
            },
        }
    }

    /// Next frame with command `cmd`, skipping others.
    async fn expect(&mut self, cmd: u8) -> Frame {
        loop {
            let f = self.recv().await;
            if f.cmd == cmd {
                return f;
            }
        }
    }
}

fn auth_frame(uid: i64) -> Frame {
    let body = AuthToken {
        platform_id: 3,
        token: token(uid),
        device_id: format!("dev-{uid}"),
    }
    .encode();
    Frame::new(AUTH_TOKEN, 2, 0, 1, body)
}

fn im_frame(seq: i32, sender: i64, receiver: i64, text: &str) -> Frame {
    let body = ImBody {
        sender,
        receiver,
        timestamp: 0,
        msgid: seq,
        content: Bytes::copy_from_slice(text.as_bytes()),
    }
    .encode(2);
    Frame::new(IM, 2, 0, seq, body)
}

fn content(f: &Frame) -> String {
    let im = ImBody::decode(f.cmd, f.version, f.body.clone()).expect("im body");
    String::from_utf8_lossy(&im.content).into_owned()
}

/// Logs uid 1 in over `conn` and uid 2 over TCP; messages go both ways.
async fn chat_both_ways(mut conn: Conn, tcp: SocketAddr, tag: &str) {
    conn.send(auth_frame(1)).await;
    let st = conn.expect(AUTH_STATUS).await;
    assert_eq!(&st.body[..], &[0, 0, 0, 0], "{tag}: login accepted");
    let mut b = Raw::login(tcp, 2, "tcp-peer", 2).await;

    let out = format!("hello over {tag}");
    conn.send(im_frame(2, 1, 2, &out)).await;
    let ack = conn.expect(ACK).await;
    assert_eq!(&ack.body[..4], &2i32.to_be_bytes(), "{tag}: ACK of our seq");
    assert_eq!(ack.body.get(4), Some(&0), "{tag}: stored");
    let (_, pushed, _) = b.expect_push(IM).await;
    assert_eq!(content(&pushed), out, "{tag}: delivered to the TCP user");

    let back = format!("reply to {tag}");
    b.im(2, 1, 1, &back).await;
    let got = conn.expect(IM).await;
    assert_eq!(content(&got), back, "{tag}: pushed over the transport");
    conn.expect(SYNC_NOTIFY).await;

    // PING/PONG round trip over the transport.
    conn.send(Frame::new(PING, 2, 0, 3, Bytes::new())).await;
    conn.expect(PONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_end_to_end() {
    let im = Im::start(&[]);
    let conn = Conn::stream(TcpStream::connect(im.tcp).await.expect("connect")).await;
    chat_both_ways(conn, im.tcp, "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_end_to_end() {
    let im = Im::start(&[]);
    let conn = Conn::ws(TcpStream::connect(im.ws).await.expect("connect")).await;
    chat_both_ways(conn, im.tcp, "ws").await;
    let metrics = wire::http_get(im.http, "/metrics").await;
    assert!(
        metrics.contains("ferry_connections_accepted_total{transport=\"ws\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end() {
    let n = start_tls_node();
    let conn = Conn::stream(tls_connect(n.tls, &n.cert.der).await).await;
    chat_both_ways(conn, n.im.tcp, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_end_to_end() {
    let n = start_tls_node();
    let conn = Conn::ws(tls_connect(n.wss, &n.cert.der).await).await;
    chat_both_ways(conn, n.im.tcp, "wss").await;
    let metrics = wire::http_get(n.im.http, "/metrics").await;
    assert!(
        metrics.contains("ferry_connections_accepted_total{transport=\"wss\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_frames_in_total{cmd=\"auth_token\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_text_message_closes_with_reason() {
    let im = Im::start(&[]);
    let tcp = TcpStream::connect(im.ws).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .expect("handshake");
    ws.send(Message::Text("hello".into())).await.expect("send");
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("close within the wait")
    .expect("close frame with a reason");
    assert_eq!(u16::from(close.code), 1003);
    assert!(close.reason.contains("binary"), "{}", close.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_message_with_bad_frame_closes() {
    let im = Im::start(&[]);
    let tcp = TcpStream::connect(im.ws).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .expect("handshake");
    // Header says 100 body bytes, the message has 2.
    let mut bad = wire::header(100, 1, IM, 2);
    bad.extend_from_slice(&[1, 2]);
    ws.send(Message::Binary(bad.into())).await.expect("send");
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within the wait");
    assert_eq!(end, Some(1002));
}

/// `ferry im` with these TLS flags must refuse to start, naming `needle`.
fn start_fails_naming(cert: &Path, key: &Path, needle: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::ferry_bin())
        .arg("im")
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--jwt-secret", support::SECRET])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--ws-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--tls-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--wss-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ferry im");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail; stderr:\n{stderr}");
    assert!(stderr.contains(needle), "must name {needle}:\n{stderr}");
}

#[test]
fn bad_tls_files_are_named_at_startup() {
    let c = make_cert();
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing-key.pem");
    start_fails_naming(&c.cert, &missing, "missing-key.pem");
    let garbage = dir.path().join("garbage-cert.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    start_fails_naming(&garbage, &c.key, "garbage-cert.pem");
    // A key that does not belong to the certificate.
    let other = make_cert();
    start_fails_naming(&c.cert, &other.key, "does not fit");
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Idle memory per logged-in connection, TCP vs WebSocket (measurement, not
/// a check): `cargo test --test transports idle_memory -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn idle_memory_per_connection() {
    const N: i64 = 2000;
    for tag in ["tcp", "ws", "tls", "wss"] {
        // A fresh process per transport, so freed memory is not reused.
        let n = start_tls_node();
        let pid = n.im.pid().expect("pid");
        let before = vm_rss_kb(pid);
        let mut conns = Vec::new();
        for i in 0..N {
            let mut c = match tag {
                "tcp" => Conn::stream(TcpStream::connect(n.im.tcp).await.expect("connect")).await,
                "ws" => Conn::ws(TcpStream::connect(n.im.ws).await.expect("connect")).await,
                "tls" => Conn::stream(tls_connect(n.tls, &n.cert.der).await).await,
                _ => Conn::ws(tls_connect(n.wss, &n.cert.der).await).await,
            };
            c.send(auth_frame(100_000 + i)).await;
            c.expect(AUTH_STATUS).await;
            conns.push(c);
        }
        let after = vm_rss_kb(pid);
        println!(
            "{tag}: {N} idle logged-in connections: RSS {before} kB -> {after} kB = {:.1} KB per connection",
            (after - before) as f64 / N as f64
        );
        drop(conns);
    }
}

/// A TLS client in the manner of gobelieve's Python client (OpenSSL without
/// read-ahead): before each frame it waits for the *socket* to turn
/// readable, then reads exactly one TLS record. A frame that shares a
/// record with the one before it is already decrypted in the TLS layer
/// while the socket stays quiet, so such a client would sit until some
/// later packet arrives; here that fails the test at once.
struct RecordClient {
    tcp: TcpStream,
    tls: tokio_rustls::rustls::ClientConnection,
}

impl RecordClient {
    async fn connect(addr: SocketAddr, root: &CertificateDer<'static>) -> RecordClient {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).expect("root");
        let cfg = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let s = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("tls handshake");
        let (tcp, tls) = s.into_inner();
        RecordClient { tcp, tls }
    }

    async fn send(&mut self, frames: &[Frame]) {
        use std::io::Write;
        let mut plain = BytesMut::new();
        for f in frames {
            f.write_to(&mut plain);
        }
        self.tls.writer().write_all(&plain).expect("seal");
        let mut wire = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut wire).expect("tls out");
        }
        self.tcp.write_all(&wire).await.expect("write");
    }

    /// One readiness wait, one TLS record, exactly one whole frame.
    async fn next_frame(&mut self, what: &str) -> Frame {
        use std::io::Read;
        loop {
            // A handshake leftover (session tickets) may already be buffered.
            let mut plain = Vec::new();
            let _ = self.tls.reader().read_to_end(&mut plain);
            if plain.is_empty() {
                tokio::time::timeout(std::time::Duration::from_secs(3), self.tcp.readable())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "{what}: the socket never turned readable (frame stuck in a TLS record)"
                        )
                    })
                    .expect("readable");
                let mut rec = vec![0u8; 5];
                self.tcp.read_exact(&mut rec).await.expect("record header");
                let len = u16::from_be_bytes([rec[3], rec[4]]) as usize;
                rec.resize(5 + len, 0);
                self.tcp
                    .read_exact(&mut rec[5..])
                    .await
                    .expect("record body");
                self.tls.read_tls(&mut &rec[..]).expect("tls in");
                self.tls.process_new_packets().expect("tls record");
                let _ = self.tls.reader().read_to_end(&mut plain);
            }
            if plain.is_empty() {
                continue; // a record without application data
            }
            let mut buf = BytesMut::from(&plain[..]);
            let f = split_frame(&mut buf, 1 << 20)
                .expect("frame")
                .unwrap_or_else(|| panic!("{what}: a record with part of a frame"));
            assert!(
                buf.is_empty(),
                "{what}: {} ({}) shares its TLS record with {} more bytes",
                f.cmd,
                f.seq,
                buf.len()
            );
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_gives_every_frame_its_own_record() {
    let n = start_tls_node();
    let mut c = RecordClient::connect(n.tls, &n.cert.der).await;
    c.send(&[auth_frame(1)]).await;
    assert_eq!(c.next_frame("login").await.cmd, AUTH_STATUS);
    // A push: METADATA + IM + SYNC_NOTIFY, three frames written together.
    let mut b = Raw::login(n.im.tcp, 2, "tcp-peer", 2).await;
    b.im(2, 1, 1, "to the tls user").await;
    for cmd in [METADATA, IM, SYNC_NOTIFY] {
        assert_eq!(c.next_frame("push").await.cmd, cmd);
    }
    // Five pipelined IMs: five METADATA + ACK pairs written together.
    let frames: Vec<Frame> = (2..=6)
        .map(|seq| im_frame(seq, 1, 2, &format!("m{seq}")))
        .collect();
    c.send(&frames).await;
    for seq in 2..=6i32 {
        assert_eq!(c.next_frame("ack").await.cmd, METADATA);
        let ack = c.next_frame("ack").await;
        assert_eq!(ack.cmd, ACK);
        assert_eq!(&ack.body[..4], &seq.to_be_bytes());
    }
}
