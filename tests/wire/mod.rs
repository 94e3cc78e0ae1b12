//! A raw frame-level client for end-to-end tests: every frame the server
//! writes is seen exactly as sent (seq, version byte, flag, body), and the
//! test decides what to send, including malformed bytes.
//!
//! "Nothing else arrived" is checked with [`Raw::barrier`]: PING, then read
//! until the PONG. The server writes a connection's frames in order, so a
//! frame queued before the PING was read shows up before the PONG.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::*;
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::im::Im as ImBody;
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::realtime::Realtime;
use ferry_common::protocol::{Frame, split_frame};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How long to wait for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// Why no frame came.
#[derive(Debug)]
pub enum End {
    /// Orderly close; `partial` bytes of an unfinished frame were left.
    Eof {
        partial: usize,
    },
    /// Reset or other socket error (a close with unread data gives RST).
    Reset(std::io::Error),
    Timeout,
}

impl End {
    pub fn is_closed(&self) -> bool {
        !matches!(self, End::Timeout)
    }
}

pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    seq: i32,
    /// Header version of frames this client sends (set by a successful auth).
    pub version: u8,
    pub name: String,
    /// Seq of the last frame the server sent (its frames count 1, 2, 3, …).
    last_server_seq: i32,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            seq: 0,
            version: 0,
            name: "raw".into(),
            last_server_seq: 0,
        }
    }

    /// Connects with a small kernel receive buffer (a client that stops
    /// reading then fills up quickly).
    pub async fn connect_small_rcvbuf(addr: SocketAddr, bytes: u32) -> Raw {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(bytes).expect("rcvbuf");
        let stream = sock.connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            seq: 0,
            version: 0,
            name: "raw".into(),
            last_server_seq: 0,
        }
    }

    /// Connects and logs in (JWT for appid 7); panics unless AUTH_STATUS 0.
    pub async fn login(addr: SocketAddr, uid: i64, device: &str, version: u8) -> Raw {
        Raw::login_token(addr, &crate::support::token(uid), 1, device, version).await
    }

    pub async fn login_token(
        addr: SocketAddr,
        token: &str,
        platform: u8,
        device: &str,
        version: u8,
    ) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.name = format!("{device}@v{version}");
        let status = r.auth(token, platform, device, version).await;
        assert_eq!(status, 0, "login of {device} refused");
        r
    }

    /// Closes with a reset (`SO_LINGER` 0), as a crashing app or a lost
    /// network path does: data queued to us is thrown away unread.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger 0");
        drop(self.stream);
    }

    pub fn named(mut self, name: &str) -> Raw {
        self.name = name.to_string();
        self
    }

    pub fn next_seq(&mut self) -> i32 {
        self.seq += 1;
        self.seq
    }

    /// Sends one frame at `self.version` with the next seq; returns the seq.
    pub async fn send(&mut self, cmd: u8, flag: u8, body: impl Into<Bytes>) -> i32 {
        let seq = self.next_seq();
        let f = Frame::new(cmd, self.version, flag, seq, body.into());
        self.send_frame(&f).await;
        seq
    }

    pub async fn send_frame(&mut self, f: &Frame) {
        let b = f.to_bytes();
        self.send_bytes(&b).await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write to server");
    }

    /// Like [`Raw::send_bytes`], for attacks the server may cut short.
    pub async fn try_send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b).await
    }

    /// Sends AUTH_TOKEN with header `version` (no wait).
    pub async fn send_auth(&mut self, token: &str, platform: u8, device: &str, version: u8) -> i32 {
        let body = AuthToken {
            platform_id: platform,
            token: token.into(),
            device_id: device.into(),
        }
        .encode();
        let seq = self.next_seq();
        self.send_frame(&Frame::new(AUTH_TOKEN, version, 0, seq, body))
            .await;
        seq
    }

    /// AUTH_TOKEN with header `version`; returns the AUTH_STATUS frame.
    pub async fn auth_frame(
        &mut self,
        token: &str,
        platform: u8,
        device: &str,
        version: u8,
    ) -> Frame {
        self.send_auth(token, platform, device, version).await;
        let f = self.expect(AUTH_STATUS).await;
        assert_eq!(f.body.len(), 4, "AUTH_STATUS body");
        if i32_of(&f) == 0 {
            self.version = version;
        }
        f
    }

    /// AUTH_TOKEN with header `version`; returns the AUTH_STATUS value.
    pub async fn auth(&mut self, token: &str, platform: u8, device: &str, version: u8) -> i32 {
        let f = self.auth_frame(token, platform, device, version).await;
        let status = i32_of(&f);
        if status == 0 {
            assert_eq!(
                f.version, version,
                "AUTH_STATUS 0 carries the AUTH_TOKEN frame's version"
            );
            self.version = version;
        }
        status
    }

    /// Next frame, or why none came within `t`.
    pub async fn next(&mut self, t: Duration) -> Result<Frame, End> {
        let deadline = Instant::now() + t;
        loop {
            match split_frame(&mut self.buf, 64 << 20) {
                Ok(Some(f)) => {
                    assert_eq!(
                        f.seq,
                        self.last_server_seq.wrapping_add(1),
                        "{}: server frames must be numbered 1, 2, 3, … per connection ({} {:?})",
                        self.name,
                        name(f.cmd),
                        f
                    );
                    self.last_server_seq = f.seq;
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => panic!("{}: server sent a bad frame header: {e}", self.name),
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(End::Timeout),
                Ok(Ok(0)) => {
                    return Err(End::Eof {
                        partial: self.buf.len(),
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(End::Reset(e)),
            }
        }
    }

    /// The next frame; panics if none comes.
    pub async fn recv(&mut self) -> Frame {
        match self.next(WAIT).await {
            Ok(f) => f,
            Err(e) => panic!("{}: expected a frame, got {e:?}", self.name),
        }
    }

    /// The next frame, which must have command `cmd`.
    pub async fn expect(&mut self, cmd: u8) -> Frame {
        let f = self.recv().await;
        assert_eq!(
            f.cmd,
            cmd,
            "{}: expected {} ({cmd}), got {} ({}) {:?}",
            self.name,
            name(cmd),
            name(f.cmd),
            f.cmd,
            f
        );
        f
    }

    /// The server must close the connection without sending another frame.
    pub async fn expect_closed(&mut self) {
        match self.next(WAIT).await {
            Ok(f) => panic!(
                "{}: expected the server to close, got frame {f:?}",
                self.name
            ),
            Err(End::Timeout) => panic!("{}: the server did not close the connection", self.name),
            Err(_) => {}
        }
    }

    /// The server must close the connection; frames before the close are returned.
    pub async fn drain_until_closed(&mut self, t: Duration) -> Vec<Frame> {
        let mut v = Vec::new();
        loop {
            match self.next(t).await {
                Ok(f) => v.push(f),
                Err(End::Timeout) => {
                    panic!(
                        "{}: the server did not close the connection ({} frames read)",
                        self.name,
                        v.len()
                    )
                }
                Err(_) => return v,
            }
        }
    }

    /// PING, then everything until the PONG (the PONG itself is checked and dropped).
    pub async fn barrier(&mut self) -> Vec<Frame> {
        let seq = self.next_seq();
        self.send_frame(&Frame::new(PING, self.version, 0, seq, Bytes::new()))
            .await;
        let mut v = Vec::new();
        loop {
            let f = self.recv().await;
            if f.cmd == PONG {
                assert!(f.body.is_empty(), "PONG has an empty body");
                return v;
            }
            v.push(f);
        }
    }

    /// Nothing may be queued for this client.
    pub async fn assert_quiet(&mut self) {
        let extra = self.barrier().await;
        assert!(
            extra.is_empty(),
            "{}: unexpected frames: {}",
            self.name,
            describe(&extra)
        );
    }

    /// IM at this client's version; the body's timestamp is a stale value
    /// the server must overwrite.
    pub async fn send_im(&mut self, sender: i64, receiver: i64, msgid: i32, content: &str) -> i32 {
        self.send_im_flag(sender, receiver, msgid, content, 0).await
    }

    pub async fn send_im_flag(
        &mut self,
        sender: i64,
        receiver: i64,
        msgid: i32,
        content: &str,
        flag: u8,
    ) -> i32 {
        let body = ImBody {
            sender,
            receiver,
            timestamp: 12345,
            msgid,
            content: Bytes::copy_from_slice(content.as_bytes()),
        }
        .encode(self.version);
        self.send(IM, flag, body).await
    }

    /// The server's answer to our stored message: METADATA then ACK(seq, 0),
    /// adjacent. Returns the metadata.
    pub async fn expect_stored_ack(&mut self, seq: i32) -> Metadata {
        let m = self.expect(METADATA).await;
        let a = self.expect(ACK).await;
        assert_eq!(
            m.seq + 1,
            a.seq,
            "{}: METADATA and ACK must be adjacent",
            self.name
        );
        assert_eq!(m.version, self.version);
        assert_eq!(a.version, self.version);
        let (aseq, status) = ack_of(&a);
        assert_eq!(aseq, seq, "{}: ACK acknowledges our frame's seq", self.name);
        assert_eq!(
            status,
            Some(0).filter(|_| self.version >= 2),
            "{}: ACK status",
            self.name
        );
        meta_of(&m)
    }

    /// A refused frame: a bare ACK(seq, status) with no METADATA.
    pub async fn expect_refused(&mut self, seq: i32, status: u8) {
        let a = self.expect(ACK).await;
        assert_eq!(
            ack_of(&a),
            (seq, Some(status)),
            "{}: refusal ACK",
            self.name
        );
    }

    /// IM sent and ACKed; returns the sender-queue metadata.
    pub async fn im(&mut self, sender: i64, receiver: i64, msgid: i32, content: &str) -> Metadata {
        let seq = self.send_im(sender, receiver, msgid, content).await;
        self.expect_stored_ack(seq).await
    }

    /// A push of a stored message: METADATA + the message (adjacent, flag
    /// PUSH) + SYNC_NOTIFY. Returns (metadata, message frame, notify key).
    pub async fn expect_push(&mut self, cmd: u8) -> (Metadata, Frame, i64) {
        let m = self.expect(METADATA).await;
        let f = self.expect(cmd).await;
        assert_eq!(
            m.seq + 1,
            f.seq,
            "{}: METADATA must be adjacent to the message",
            self.name
        );
        assert_eq!(
            f.version, self.version,
            "{}: pushed frame version",
            self.name
        );
        let n = self.expect(SYNC_NOTIFY).await;
        (meta_of(&m), f, i64_of(&n))
    }

    /// SYNC(key) and the batch that answers it, plus whatever follows it
    /// before a PONG (e.g. SYNC_NOTIFY when more remain).
    pub async fn sync(&mut self, key: i64) -> SyncBatch {
        self.send(SYNC, 0, Bytes::copy_from_slice(&key.to_be_bytes()))
            .await;
        let b = self.expect(SYNC_BEGIN).await;
        let mut messages = Vec::new();
        loop {
            let f = self.recv().await;
            if f.cmd == SYNC_END {
                let after = self.barrier().await;
                return SyncBatch {
                    begin: i64_of(&b),
                    messages,
                    end: i64_of(&f),
                    after,
                };
            }
            messages.push(f);
        }
    }

    /// ENTER_ROOM / LEAVE_ROOM.
    pub async fn enter_room(&mut self, room: i64) {
        self.send(ENTER_ROOM, 0, Bytes::copy_from_slice(&room.to_be_bytes()))
            .await;
    }

    pub async fn leave_room(&mut self, room: i64) {
        self.send(LEAVE_ROOM, 0, Bytes::copy_from_slice(&room.to_be_bytes()))
            .await;
    }

    pub async fn send_room_im(&mut self, sender: i64, room: i64, content: &str) -> i32 {
        let body = Realtime {
            sender,
            receiver: room,
            content: Bytes::copy_from_slice(content.as_bytes()),
        }
        .encode();
        self.send(ROOM_IM, 0, body).await
    }

    pub async fn send_rt(&mut self, sender: i64, receiver: i64, content: &str) -> i32 {
        let body = Realtime {
            sender,
            receiver,
            content: Bytes::copy_from_slice(content.as_bytes()),
        }
        .encode();
        self.send(RT, 0, body).await
    }

    pub async fn send_customer(&mut self, sa: i64, s: i64, ra: i64, r: i64, content: &str) -> i32 {
        let body = CustomerV2 {
            sender_appid: sa,
            sender: s,
            receiver_appid: ra,
            receiver: r,
            timestamp: 1,
            content: Bytes::copy_from_slice(content.as_bytes()),
        }
        .encode();
        self.send(CUSTOMER_V2, 0, body).await
    }
}

/// One answered SYNC.
#[derive(Debug)]
pub struct SyncBatch {
    pub begin: i64,
    pub messages: Vec<Frame>,
    pub end: i64,
    /// Frames after SYNC_END and before the PONG of a barrier.
    pub after: Vec<Frame>,
}

impl SyncBatch {
    /// Decoded IM bodies (panics on any other kind).
    pub fn ims(&self) -> Vec<ImBody> {
        self.messages
            .iter()
            .map(|f| {
                assert_eq!(f.cmd, IM, "sync batch holds only IMs here: {f:?}");
                im_of(f)
            })
            .collect()
    }

    pub fn contents(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|f| match f.cmd {
                IM => String::from_utf8_lossy(&im_of(f).content).into_owned(),
                CUSTOMER_V2 => String::from_utf8_lossy(&customer_of(f).content).into_owned(),
                c => panic!("unexpected {} in sync batch", name(c)),
            })
            .collect()
    }

    pub fn flags(&self) -> Vec<u8> {
        self.messages.iter().map(|f| f.flag).collect()
    }
}

pub fn i64_of(f: &Frame) -> i64 {
    assert_eq!(
        f.body.len(),
        8,
        "{} body must be one i64: {f:?}",
        name(f.cmd)
    );
    i64::from_be_bytes(f.body[..8].try_into().expect("8 bytes"))
}

pub fn i32_of(f: &Frame) -> i32 {
    i32::from_be_bytes(f.body[..4].try_into().expect("4 bytes"))
}

pub fn meta_of(f: &Frame) -> Metadata {
    assert_eq!(f.cmd, METADATA);
    assert_eq!(f.body.len(), 32, "METADATA is 32 bytes");
    assert!(
        f.body[16..].iter().all(|&b| b == 0),
        "METADATA padding is zero"
    );
    Metadata::decode(f.body.clone()).expect("metadata")
}

/// (acknowledged seq, status if the body has one).
pub fn ack_of(f: &Frame) -> (i32, Option<u8>) {
    assert_eq!(f.cmd, ACK);
    match f.body.len() {
        4 => (i32_of(f), None),
        5 => (i32_of(f), Some(f.body[4])),
        n => panic!("ACK body of {n} bytes"),
    }
}

pub fn im_of(f: &Frame) -> ImBody {
    ImBody::decode(f.cmd, f.version, f.body.clone()).expect("IM body")
}

pub fn customer_of(f: &Frame) -> CustomerV2 {
    CustomerV2::decode(CUSTOMER_V2, f.body.clone()).expect("CUSTOMER_V2 body")
}

pub fn rt_of(f: &Frame) -> Realtime {
    Realtime::decode(f.cmd, f.body.clone()).expect("RT/ROOM_IM body")
}

pub fn describe(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|f| {
            format!(
                "{}(seq {}, flag {:#x}, {} B)",
                name(f.cmd),
                f.seq,
                f.flag,
                f.body.len()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A header with an arbitrary length field (body not included).
pub fn header(len: i32, seq: i32, cmd: u8, version: u8) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(12);
    b.put_i32(len);
    b.put_i32(seq);
    b.put_u8(cmd);
    b.put_u8(version);
    b.put_u8(0);
    b.put_u8(0);
    b.to_vec()
}

/// Minimal HTTP/1.1 GET against the im's API; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("http connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("http write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("http timeout")
        .expect("http read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}
