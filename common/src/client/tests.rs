//! Client tests against a scripted fake server on loopback: every frame the
//! client writes is checked, every frame the server writes is chosen by the
//! test.

use super::*;
use crate::protocol::ack::Ack as WireAck;
use crate::protocol::command::*;
use crate::protocol::flag::{PUSH, SUPER_GROUP};
use crate::protocol::im::Im;
use crate::protocol::metadata::Metadata;
use crate::protocol::{Frame, Message, split_frame};
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

struct FakeServer {
    sock: TcpStream,
    buf: BytesMut,
    seq: i32,
    version: u8,
}

impl FakeServer {
    async fn read(&mut self) -> Frame {
        loop {
            if let Some(f) = split_frame(&mut self.buf, 1 << 20).expect("frame") {
                return f;
            }
            let n = tokio::time::timeout(T, self.sock.read_buf(&mut self.buf))
                .await
                .expect("client frame in time")
                .expect("read");
            assert!(n > 0, "client closed");
        }
    }

    async fn read_msg(&mut self) -> (Frame, Message) {
        let f = self.read().await;
        let m = Message::decode(f.cmd, f.version, f.body.clone()).expect("decodes");
        (f, m)
    }

    /// Writes frames with consecutive server seqs; returns the first seq.
    async fn write(&mut self, msgs: &[(Message, u8)]) -> i32 {
        let first = self.seq + 1;
        let mut out = BytesMut::new();
        for (m, flag) in msgs {
            self.seq += 1;
            m.to_frame(self.seq, self.version, *flag).write_to(&mut out);
        }
        self.sock.write_all(&out).await.expect("write");
        first
    }

    /// Answers AUTH_TOKEN with `status`; returns the AUTH_TOKEN frame.
    async fn auth(&mut self, status: i32) -> Frame {
        let (f, m) = self.read_msg().await;
        assert!(matches!(m, Message::AuthToken(_)), "{m:?}");
        if status == 0 {
            self.version = f.version;
        }
        self.write(&[(Message::AuthStatus(status), 0)]).await;
        f
    }
}

async fn pair(options: ClientOptions) -> (Client, FakeServer) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, s) = tokio::join!(Client::connect_with(addr, options), l.accept());
    let server = FakeServer {
        sock: s.expect("accept").0,
        buf: BytesMut::new(),
        seq: 0,
        version: 0,
    };
    (c.expect("connect"), server)
}

fn jwt(uid: i64) -> String {
    crate::token::sign(
        &crate::token::Claims {
            appid: 7,
            uid,
            exp: None,
            nbf: None,
        },
        b"k",
    )
}

fn im(sender: i64, receiver: i64, msgid: i32) -> Message {
    Message::Im(Im {
        sender,
        receiver,
        timestamp: 1,
        msgid,
        content: Bytes::from_static(b"hi"),
    })
}

fn meta(sync_key: i64, prev_sync_key: i64) -> Message {
    Message::Metadata(Metadata {
        sync_key,
        prev_sync_key,
    })
}

async fn login(
    c: &Client,
    s: &mut FakeServer,
    platform: u8,
    version: u8,
    status: i32,
) -> (Result<(), ClientError>, Frame) {
    let token = jwt(100);
    tokio::join!(c.auth(&token, platform, "dev", version), s.auth(status))
}

async fn next(c: &mut Client) -> Event {
    c.recv_timeout(T).await.expect("event")
}

/// Auth at v2 with the sync loop: answers the first SYNC with `batch`
/// messages and SYNC_END(`end`).
async fn authed_with_sync(batch: Vec<Message>, end: i64) -> (Client, FakeServer) {
    let (c, mut s) = pair(ClientOptions::default()).await;
    let (r, f) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    assert_eq!((f.seq, f.version), (1, 2));
    assert_eq!(c.uid(), 100);
    assert_eq!(c.version(), 2);
    let (f, m) = s.read_msg().await;
    assert_eq!((f.seq, m), (2, Message::Sync(0)));
    let mut frames = vec![(Message::SyncBegin(0), 0)];
    frames.extend(batch.into_iter().map(|m| (m, 0)));
    frames.push((Message::SyncEnd(end), 0));
    s.write(&frames).await;
    (c, s)
}

#[tokio::test]
async fn auth_sync_send_and_ack_with_metadata() {
    let (mut c, mut s) = authed_with_sync(vec![im(5, 100, 1), im(5, 100, 2)], 5).await;
    for want in [1, 2] {
        match next(&mut c).await {
            Event::Synced {
                msgid: None,
                msg: Message::Im(m),
                flag: 0,
            } => assert_eq!(m.msgid, want),
            e => panic!("{e:?}"),
        }
    }
    match next(&mut c).await {
        Event::SyncDone {
            sync_key: 5,
            messages: 2,
        } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(c.current_sync_key(), 5);
    let (f, m) = s.read_msg().await;
    assert_eq!((f.seq, m), (3, Message::SyncKey(5)));

    let send = c.send_im(200, "yo", 9);
    let server = async {
        let (f, m) = s.read_msg().await;
        assert_eq!(f.seq, 4);
        assert_eq!(f.version, 2);
        let Message::Im(im) = m else { panic!() };
        assert_eq!((im.sender, im.receiver, im.msgid), (100, 200, 9));
        assert_eq!(&im.content[..], b"yo");
        s.write(&[
            (meta(6, 5), 0),
            (Message::Ack(WireAck { seq: 4, status: 0 }), 0),
        ])
        .await;
    };
    let (ack, ()) = tokio::join!(send, server);
    let ack = ack.expect("ack");
    assert!(ack.is_ok());
    assert_eq!(
        ack.metadata,
        Some(Metadata {
            sync_key: 6,
            prev_sync_key: 5
        })
    );
    // Our own message continued the key.
    assert_eq!(c.current_sync_key(), 6);
    let (_, m) = s.read_msg().await;
    assert_eq!(m, Message::SyncKey(6));
}

#[tokio::test]
async fn push_accepted_when_contiguous_else_left_to_sync() {
    let (mut c, mut s) = authed_with_sync(vec![], 10).await;
    assert!(matches!(
        next(&mut c).await,
        Event::SyncDone {
            sync_key: 10,
            messages: 0
        }
    ));
    let (_, m) = s.read_msg().await;
    assert_eq!(m, Message::SyncKey(10));

    // Contiguous push: delivered, key advances, its notify is a no-op.
    s.write(&[
        (meta(11, 10), 0),
        (im(5, 100, 1), PUSH),
        (Message::SyncNotify(11), 0),
    ])
    .await;
    match next(&mut c).await {
        Event::Message {
            msg: Message::Im(m),
            flag,
            metadata: Some(md),
        } => {
            assert_eq!((m.msgid, flag, md.sync_key), (1, PUSH, 11));
        }
        e => panic!("{e:?}"),
    }
    let (_, m) = s.read_msg().await;
    assert_eq!(m, Message::SyncKey(11));

    // A gap: ignored; the notify starts a sync from 11.
    s.write(&[
        (meta(13, 12), 0),
        (im(5, 100, 3), PUSH),
        (Message::SyncNotify(13), 0),
    ])
    .await;
    let (_, m) = s.read_msg().await;
    assert_eq!(m, Message::Sync(11));
    // While that sync is in flight, a contiguous-looking push is ignored
    // too (the batch will contain it) and its notify is remembered.
    s.write(&[
        (meta(14, 11), 0),
        (im(5, 100, 4), PUSH),
        (Message::SyncNotify(14), 0),
        (Message::SyncBegin(11), 0),
        (im(5, 100, 2), 0),
        (im(5, 100, 3), 0),
        (Message::SyncEnd(13), 0),
    ])
    .await;
    for want in [2, 3] {
        match next(&mut c).await {
            Event::Synced {
                msg: Message::Im(m),
                ..
            } => assert_eq!(m.msgid, want),
            e => panic!("{e:?}"),
        }
    }
    assert!(matches!(
        next(&mut c).await,
        Event::SyncDone {
            sync_key: 13,
            messages: 2
        }
    ));
    // Remembered notify 14 > 13: sync again.
    let (_, m) = s.read_msg().await;
    assert_eq!(m, Message::Sync(13));
    s.write(&[
        (Message::SyncBegin(13), 0),
        (im(5, 100, 4), 0),
        (Message::SyncEnd(14), 0),
    ])
    .await;
    assert!(matches!(next(&mut c).await, Event::Synced { .. }));
    assert!(matches!(
        next(&mut c).await,
        Event::SyncDone {
            sync_key: 14,
            messages: 1
        }
    ));
    // The SYNC_KEY for 13 and 14 were coalesced per read; the last one is 14.
    let mut last = 0;
    while last != 14 {
        let (_, m) = s.read_msg().await;
        let Message::SyncKey(k) = m else {
            panic!("{m:?}")
        };
        last = k;
    }
    let st = c.stats();
    assert_eq!(
        (st.pushes_accepted, st.pushes_ignored, st.synced),
        (1, 2, 3)
    );
}

#[tokio::test]
async fn super_group_push_bypasses_personal_key() {
    let (mut c, mut s) = authed_with_sync(vec![], 10).await;
    assert!(matches!(next(&mut c).await, Event::SyncDone { .. }));
    let gim = Message::GroupIm(Im {
        sender: 5,
        receiver: 77,
        timestamp: 1,
        msgid: 1,
        content: Bytes::new(),
    });
    s.write(&[(meta(500, 499), 0), (gim, PUSH | SUPER_GROUP)])
        .await;
    match next(&mut c).await {
        Event::Message { flag, metadata, .. } => {
            assert_eq!(flag, PUSH | SUPER_GROUP);
            assert_eq!(metadata.map(|m| m.sync_key), Some(500));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(c.current_sync_key(), 10);
}

#[tokio::test]
async fn metadata_only_attaches_when_adjacent() {
    let (mut c, mut s) = pair(ClientOptions {
        sync: false,
        ..Default::default()
    })
    .await;
    let (r, _) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    // METADATA, then an unrelated frame, then the IM: not adjacent.
    s.write(&[(meta(2, 1), 0), (Message::Pong, 0), (im(5, 100, 1), PUSH)])
        .await;
    assert!(matches!(
        next(&mut c).await,
        Event::Control {
            msg: Message::Pong,
            ..
        }
    ));
    match next(&mut c).await {
        Event::Message { metadata, .. } => assert_eq!(metadata, None),
        e => panic!("{e:?}"),
    }
    // Loop off: notifies are events.
    s.write(&[(Message::SyncNotify(3), 0)]).await;
    assert!(matches!(next(&mut c).await, Event::SyncNotify(3)));
}

#[tokio::test]
async fn version_1_encoding_and_four_byte_ack() {
    let (c, mut s) = pair(ClientOptions {
        sync: false,
        ..Default::default()
    })
    .await;
    let (r, f) = login(&c, &mut s, 1, 1, 0).await;
    r.expect("auth");
    assert_eq!(f.version, 1);
    let send = c.send_im(200, "abc", 3);
    let server = async {
        let f = s.read().await;
        assert_eq!((f.cmd, f.version, f.body.len()), (IM, 1, 24 + 3));
        // v1 ACK: 4 bytes, no status.
        let ack = Message::Ack(WireAck {
            seq: f.seq,
            status: 9,
        });
        assert_eq!(ack.encode(1).len(), 4);
        s.write(&[(ack, 0)]).await;
    };
    let (ack, ()) = tokio::join!(send, server);
    assert_eq!(ack.expect("ack").status, 0);
}

#[tokio::test]
async fn auth_failure_keeps_connection_and_allows_retry() {
    let (c, mut s) = pair(ClientOptions::default()).await;
    let (r, _) = tokio::join!(c.auth("bad", 3, "dev", 2), s.auth(1));
    assert!(matches!(r, Err(ClientError::AuthFailed(1))));
    assert!(!c.is_authenticated());
    assert!(matches!(
        c.send_im(1, "x", 1).await,
        Err(ClientError::NotAuthenticated)
    ));
    let (r, f) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    assert_eq!(f.seq, 2);
    let token = jwt(100);
    assert!(matches!(
        c.auth(&token, 3, "dev", 2).await,
        Err(ClientError::AlreadyAuthenticated)
    ));
}

#[tokio::test]
async fn timeout_then_late_ack_is_an_event_and_ping_works() {
    let (mut c, mut s) = pair(ClientOptions {
        sync: false,
        request_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let (r, _) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    let r = c.send_im(200, "x", 1).await;
    assert!(matches!(r, Err(ClientError::Timeout)), "{r:?}");
    let f = s.read().await;
    s.write(&[(
        Message::Ack(WireAck {
            seq: f.seq,
            status: 0,
        }),
        0,
    )])
    .await;
    match next(&mut c).await {
        Event::Ack { seq, status: 0, .. } => assert_eq!(seq, f.seq),
        e => panic!("{e:?}"),
    }
    let ping = c.ping();
    let server = async {
        let f = s.read().await;
        assert_eq!((f.cmd, f.body.len()), (PING, 0));
        s.write(&[(Message::Pong, 0)]).await;
    };
    let (rtt, ()) = tokio::join!(ping, server);
    assert!(rtt.expect("pong") < T);
}

#[tokio::test]
async fn server_close_fails_pending_and_ends_events() {
    let (mut c, mut s) = pair(ClientOptions {
        sync: false,
        ..Default::default()
    })
    .await;
    let (r, _) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    let send = c.send_im(200, "x", 1);
    let server = async {
        let _ = s.read().await;
        drop(s);
    };
    let (r, ()) = tokio::join!(send, server);
    assert!(matches!(r, Err(ClientError::Closed)), "{r:?}");
    assert!(matches!(
        next(&mut c).await,
        Event::Closed(CloseReason::Eof)
    ));
    assert!(c.recv().await.is_none());
    assert!(matches!(c.send_rt(1, "x"), Err(ClientError::Closed)));
}

#[tokio::test]
async fn garbage_from_server_closes_with_protocol_error() {
    let (mut c, mut s) = pair(ClientOptions::default()).await;
    // Negative body length.
    s.sock
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 3, 2, 0, 0])
        .await
        .expect("write");
    assert!(matches!(
        next(&mut c).await,
        Event::Closed(CloseReason::Protocol(_))
    ));
}

#[tokio::test]
async fn close_flushes_queued_frames() {
    let (c, mut s) = pair(ClientOptions::default()).await;
    c.send_frame(Frame::new(PING, 2, 0, 42, Bytes::new()))
        .expect("queued");
    c.close();
    let f = s.read().await;
    assert_eq!((f.cmd, f.seq), (PING, 42));
    let mut rest = Vec::new();
    let n = s.sock.read_to_end(&mut rest).await.expect("eof");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn oversize_body_is_refused_locally() {
    let (c, mut s) = pair(ClientOptions::default()).await;
    let (r, _) = login(&c, &mut s, 3, 2, 0).await;
    r.expect("auth");
    let big = vec![b'x'; 40_000];
    assert!(matches!(
        c.send_im(1, big, 1).await,
        Err(ClientError::TooLarge(_))
    ));
}

#[tokio::test]
async fn group_sync_batch_is_delivered_not_mistaken_for_pushes() {
    use crate::protocol::group_sync::GroupSyncKey;
    let (mut c, mut s) = authed_with_sync(vec![], 10).await;
    assert!(matches!(next(&mut c).await, Event::SyncDone { .. }));
    let g = GroupSyncKey {
        group_id: 77,
        sync_key: 0,
    };
    let gim = Message::GroupIm(Im {
        sender: 5,
        receiver: 77,
        timestamp: 1,
        msgid: 1,
        content: Bytes::new(),
    });
    s.write(&[
        (Message::SyncGroupBegin(g), 0),
        (gim, 0),
        (Message::SyncGroupEnd(GroupSyncKey { sync_key: 3, ..g }), 0),
    ])
    .await;
    assert!(matches!(
        next(&mut c).await,
        Event::Control {
            msg: Message::SyncGroupBegin(_),
            ..
        }
    ));
    assert!(matches!(
        next(&mut c).await,
        Event::Synced {
            msg: Message::GroupIm(_),
            ..
        }
    ));
    assert!(matches!(
        next(&mut c).await,
        Event::Control {
            msg: Message::SyncGroupEnd(_),
            ..
        }
    ));
    assert_eq!(c.current_sync_key(), 10);
}
