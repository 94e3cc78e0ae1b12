//! Mutation fuzzing (see `fuzz_engine`) of every decoder a peer can reach:
//! the client frame splitter and `FrameCodec`, the 12-byte header, every
//! client-protocol body (`Message::decode` for every cmd and version, and
//! `body_for_version`), and every im↔imr link body.
//!
//! `protocol_props.rs` checks the same decoders with proptest strategies
//! (round trips, structured inputs); this file starts from valid encodings
//! and corrupts them, which reaches length and count fields that random
//! bytes rarely get right. Long run: `FERRY_FUZZ_CASES=1000000 cargo test
//! -p ferry-common --test fuzz_decoders --release -- --nocapture`.

mod fuzz_engine;

use bytes::{Bytes, BytesMut};
use ferry_common::link::{
    BatchPush, Device, DeviceOffline, DeviceOnline, GroupPublish, Hello, MAX_LINK_BODY, NodeDevice,
    PresenceQuery, PresenceReply, RoomSubscription, RouteMessage, Subscribe, Unsubscribe,
    UserPresence,
};
use ferry_common::protocol::ack::Ack;
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::{self, CUSTOMER};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::im::{Im, body_for_version};
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::realtime::Realtime;
use ferry_common::protocol::{
    Frame, FrameCodec, HEADER_LEN, Header, MAX_CLIENT_BODY, Message, ProtocolError, split_frame,
};
use tokio_util::codec::Decoder;

fn im() -> Im {
    Im {
        sender: 1001,
        receiver: -2,
        timestamp: 1_700_000_000,
        msgid: 77,
        content: Bytes::from_static(b"{\"text\":\"hello\"}"),
    }
}

fn rt() -> Realtime {
    Realtime {
        sender: i64::MAX,
        receiver: 5,
        content: Bytes::from_static(b"rt"),
    }
}

fn gsk() -> GroupSyncKey {
    GroupSyncKey {
        group_id: 9,
        sync_key: 1 << 40,
    }
}

/// One value of every `Message` variant.
fn messages() -> Vec<Message> {
    vec![
        Message::AuthStatus(1),
        Message::Im(im()),
        Message::Ack(Ack { seq: 3, status: 2 }),
        Message::GroupNotification(Bytes::from_static(b"{\"create\":{}}")),
        Message::GroupIm(im()),
        Message::Ping,
        Message::Pong,
        Message::AuthToken(AuthToken {
            platform_id: 1,
            token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
            device_id: "device-1".into(),
        }),
        Message::Rt(rt()),
        Message::EnterRoom(12),
        Message::LeaveRoom(12),
        Message::RoomIm(rt()),
        Message::System(Bytes::from_static(b"sys")),
        Message::UnreadCount(4),
        Message::LegacyCustomer(CUSTOMER),
        Message::Sync(5),
        Message::SyncBegin(5),
        Message::SyncEnd(6),
        Message::SyncNotify(7),
        Message::SyncGroup(gsk()),
        Message::SyncGroupBegin(gsk()),
        Message::SyncGroupEnd(gsk()),
        Message::SyncGroupNotify(gsk()),
        Message::SyncKey(8),
        Message::GroupSyncKey(gsk()),
        Message::Notification(Bytes::from_static(b"n")),
        Message::Metadata(Metadata {
            sync_key: 10,
            prev_sync_key: 9,
        }),
        Message::CustomerV2(CustomerV2 {
            sender_appid: 7,
            sender: 1,
            receiver_appid: 8,
            receiver: 2,
            timestamp: 1,
            content: Bytes::from_static(b"c"),
        }),
    ]
}

/// Inputs `[cmd, version, body…]` for every variant at versions 0–2.
fn body_corpus() -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for m in messages() {
        for v in 0..=2u8 {
            let mut x = vec![m.cmd(), v];
            x.extend_from_slice(&m.encode(v));
            c.push(x);
        }
    }
    c
}

/// Streams of 1–3 valid frames, preceded by a byte choosing the body limit.
fn stream_corpus() -> Vec<Vec<u8>> {
    let ms = messages();
    let mut c = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let mut b = BytesMut::new();
        for (k, n) in [m, &ms[(i + 1) % ms.len()], &ms[(i + 7) % ms.len()]]
            .iter()
            .enumerate()
            .take(1 + i % 3)
        {
            n.to_frame(k as i32 + 1, 2, 0).write_to(&mut b);
        }
        c.push([vec![i as u8], b.to_vec()].concat());
    }
    c
}

const LIMITS: [usize; 5] = [0, 16, 1024, MAX_CLIENT_BODY, MAX_LINK_BODY];

/// Runs `split_frame` and `FrameCodec` over the same stream: same frames,
/// same error, each frame consumes exactly header + body within the limit.
fn frame_stream(input: &[u8]) {
    let Some((&sel, raw)) = input.split_first() else {
        return;
    };
    let max = LIMITS[sel as usize % LIMITS.len()];
    let mut a = BytesMut::from(raw);
    let mut b = BytesMut::from(raw);
    let mut codec = FrameCodec::new(max);
    loop {
        let before = a.len();
        let x = split_frame(&mut a, max);
        let y = codec.decode(&mut b);
        match (x, y) {
            (Ok(Some(f)), Ok(Some(g))) => {
                assert_eq!(f, g);
                assert!(f.body.len() <= max);
                assert_eq!(a.len(), before - HEADER_LEN - f.body.len());
                // A frame re-serialises to the bytes it came from, except
                // the reserved 12th header byte, which is ignored on input
                // and written as 0.
                let mut out = BytesMut::new();
                f.write_to(&mut out);
                let mut src = raw[raw.len() - before..][..out.len()].to_vec();
                src[11] = 0;
                assert_eq!(&out[..], &src[..]);
            }
            (Ok(None), Ok(None)) => {
                assert_eq!(a.len(), before);
                return;
            }
            (Err(e), Err(_)) => {
                assert!(matches!(e, ProtocolError::BadLength { .. }), "{e:?}");
                return;
            }
            (x, y) => panic!("split_frame {x:?} but FrameCodec {y:?}"),
        }
    }
}

fn header(input: &[u8]) {
    let Some(h) = input.get(..HEADER_LEN) else {
        return;
    };
    let mut arr = [0u8; HEADER_LEN];
    arr.copy_from_slice(h);
    let max = input
        .get(HEADER_LEN)
        .map_or(MAX_CLIENT_BODY, |&s| LIMITS[s as usize % LIMITS.len()]);
    if let Ok(p) = Header::parse(&arr, max) {
        assert!(p.len <= max);
        assert_eq!(p.cmd, arr[8]);
    }
}

/// `[cmd, version, body…]` through every client body decoder.
fn message_body(input: &[u8]) {
    if input.len() < 2 {
        return;
    }
    let (cmd, version) = (input[0], input[1]);
    let body = Bytes::copy_from_slice(&input[2..]);
    let r = Message::decode(cmd, version, body.clone());
    let c = Message::decode_client(&Frame::new(cmd, version, 0, 1, body.clone()));
    if command::client_may_send(cmd) {
        assert_eq!(c, r);
    } else {
        assert_eq!(c, Err(ProtocolError::NotAllowed(cmd)));
    }
    if let Ok(m) = r {
        assert_eq!(m.cmd(), cmd);
        // Encoding what was decoded is stable.
        let e = m.encode(version);
        let again = Message::decode(cmd, version, e.clone()).expect("re-decodes");
        assert_eq!(again.encode(version), e);
    }
    let out = body_for_version(cmd, version, &body);
    assert!(out.len() <= body.len());
}

/// `[cmd, body…]` through every link decoder, with re-encode round trips.
fn link_body(input: &[u8]) {
    let Some((&cmd, raw)) = input.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(raw);
    if let Ok(h) = Hello::decode(body.clone()) {
        assert_eq!(Hello::decode(h.encode()), Ok(h));
    }
    if let Ok(s) = Subscribe::decode(body.clone()) {
        assert_eq!(Subscribe::decode(s.encode()), Ok(s));
    }
    if let Ok(u) = Unsubscribe::decode(body.clone()) {
        assert_eq!(Unsubscribe::decode(u.encode()), Ok(u));
    }
    if let Ok(r) = RoomSubscription::decode(cmd, body.clone()) {
        assert_eq!(RoomSubscription::decode(cmd, r.encode()), Ok(r));
    }
    if let Ok(r) = RouteMessage::decode(cmd, body.clone()) {
        assert_eq!(RouteMessage::decode(cmd, r.encode()), Ok(r));
    }
    if let Ok(r) = RouteMessage::decode_legacy(cmd, body.clone()) {
        let e = r
            .encode_legacy()
            .expect("a decoded legacy route re-encodes");
        assert_eq!(RouteMessage::decode_legacy(cmd, e), Ok(r));
    }
    if let Ok(g) = GroupPublish::decode(body.clone()) {
        assert_eq!(GroupPublish::decode(g.encode()), Ok(g));
    }
    if let Ok(p) = BatchPush::decode(body.clone()) {
        assert_eq!(BatchPush::decode(p.encode()), Ok(p));
    }
    if let Ok(d) = DeviceOnline::decode(body.clone()) {
        assert_eq!(DeviceOnline::decode(d.encode()), Ok(d));
    }
    if let Ok(d) = DeviceOffline::decode(body.clone()) {
        assert_eq!(DeviceOffline::decode(d.encode()), Ok(d));
    }
    if let Ok(q) = PresenceQuery::decode(body.clone()) {
        assert_eq!(PresenceQuery::decode(q.encode()), Ok(q));
    }
    if let Ok(r) = PresenceReply::decode(body.clone()) {
        assert_eq!(PresenceReply::decode(r.encode()), Ok(r));
    }
    if let Ok(p) = BatchPush::decode_legacy(body) {
        let e = p.encode_legacy().expect("a decoded legacy push re-encodes");
        assert_eq!(BatchPush::decode_legacy(e), Ok(p));
    }
}

fn link_corpus() -> Vec<Vec<u8>> {
    let route = RouteMessage {
        appid: 7,
        receiver: 2,
        msgid: 3,
        prev_msgid: 2,
        device_id: 4,
        timestamp: 5,
        msg: Message::Im(im()).to_frame(0, 2, 0).to_bytes(),
    };
    let push = BatchPush {
        appid: 7,
        receivers: vec![1, 2, 3],
        msg: Bytes::from_static(b"frame"),
    };
    let bodies = [
        (
            128u8,
            Hello {
                version: 1,
                secret: Bytes::from_static(b"secret"),
                name: Bytes::from_static(b"node-a"),
            }
            .encode(),
        ),
        (
            130,
            Subscribe {
                appid: 7,
                uid: 1,
                online: true,
            }
            .encode(),
        ),
        (131, Unsubscribe { appid: 7, uid: 1 }.encode()),
        (
            136,
            RoomSubscription {
                appid: 7,
                room_id: 9,
            }
            .encode(),
        ),
        (132, route.encode()),
        (
            135,
            GroupPublish {
                route: route.clone(),
                members: vec![1, 3, 5],
            }
            .encode(),
        ),
        (139, route.encode()),
        (132, route.encode_legacy().expect("legacy")),
        (134, push.encode()),
        (134, push.encode_legacy().expect("legacy")),
        (
            142,
            DeviceOnline {
                appid: 7,
                uid: 1,
                device: Device {
                    conn: 3,
                    platform: 1,
                    transport: 2,
                    since: 1_700_000_000,
                    device_id: Bytes::from_static(b"phone"),
                },
            }
            .encode(),
        ),
        (
            143,
            DeviceOffline {
                appid: 7,
                uid: 1,
                conn: 3,
            }
            .encode(),
        ),
        (
            144,
            PresenceQuery {
                id: 1,
                appid: 7,
                uids: vec![1, 2, 3],
            }
            .encode(),
        ),
        (
            145,
            PresenceReply {
                id: 1,
                nodes: vec!["a:1".into(), "b:2".into()],
                users: vec![UserPresence {
                    uid: 2,
                    devices: vec![NodeDevice {
                        node: 1,
                        platform: 3,
                        transport: 3,
                        since: 5,
                        device_id: Bytes::from_static(b"tab"),
                    }],
                }],
            }
            .encode(),
        ),
    ];
    bodies
        .into_iter()
        .map(|(cmd, b)| [vec![cmd], b.to_vec()].concat())
        .collect()
}

#[test]
fn fuzz_frame_stream() {
    fuzz_engine::run("frame_stream", &stream_corpus(), frame_stream);
}

#[test]
fn fuzz_header() {
    fuzz_engine::run("header", &stream_corpus(), |i| {
        header(i.get(1..).unwrap_or(&[]))
    });
}

#[test]
fn fuzz_message_bodies() {
    fuzz_engine::run("message_body", &body_corpus(), message_body);
}

#[test]
fn fuzz_link_bodies() {
    fuzz_engine::run("link_body", &link_corpus(), link_body);
}

/// The engine really mutates: over a few thousand cases it yields both
/// inputs that decode and inputs that are rejected, for every target kind.
#[test]
fn mutations_reach_both_outcomes() {
    let corpus = body_corpus();
    let mut rng = fuzz_engine::Rng::new(42);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..5000 {
        let i = fuzz_engine::mutate(&mut rng, &corpus);
        if i.len() < 2 {
            continue;
        }
        match Message::decode(i[0], i[1], Bytes::copy_from_slice(&i[2..])) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok > 100 && err > 100, "ok {ok} err {err}");
}
