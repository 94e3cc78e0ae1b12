//! Property tests for the client protocol and the im↔imr link bodies:
//! encode→decode round trips for every `Message` variant at versions 0/1/2,
//! frame encode→`split_frame` round trips (including every split point of a
//! concatenated stream), and "arbitrary bytes never panic" for every decoder.
//!
//! Case counts are kept modest so the file runs in a few seconds in debug.

use bytes::{Bytes, BytesMut};
use ferry_common::link::{
    BatchPush, Hello, MAX_LINK_BODY, RoomSubscription, RouteMessage, Subscribe, Unsubscribe,
};
use ferry_common::protocol::ack::Ack;
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::{self, CUSTOMER, CUSTOMER_SUPPORT};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::im::{Im, body_for_version};
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::realtime::Realtime;
use ferry_common::protocol::{
    Frame, HEADER_LEN, MAX_CLIENT_BODY, Message, ProtocolError, split_frame,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

// ───────────────────────────── strategies ─────────────────────────────

fn bytes_s(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Strings of at most 40 chars (≤ 160 bytes), so the u8 length prefix never truncates.
fn short_string() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=40).prop_map(String::from_iter)
}

fn im_s() -> impl Strategy<Value = Im> {
    (
        any::<i64>(),
        any::<i64>(),
        any::<i32>(),
        any::<i32>(),
        bytes_s(64),
    )
        .prop_map(|(sender, receiver, timestamp, msgid, content)| Im {
            sender,
            receiver,
            timestamp,
            msgid,
            content,
        })
}

fn realtime_s() -> impl Strategy<Value = Realtime> {
    (any::<i64>(), any::<i64>(), bytes_s(64)).prop_map(|(sender, receiver, content)| Realtime {
        sender,
        receiver,
        content,
    })
}

fn gsk_s() -> impl Strategy<Value = GroupSyncKey> {
    (any::<i64>(), any::<i64>())
        .prop_map(|(group_id, sync_key)| GroupSyncKey { group_id, sync_key })
}

fn customer_s() -> impl Strategy<Value = CustomerV2> {
    (
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i32>(),
        bytes_s(64),
    )
        .prop_map(
            |(sender_appid, sender, receiver_appid, receiver, timestamp, content)| CustomerV2 {
                sender_appid,
                sender,
                receiver_appid,
                receiver,
                timestamp,
                content,
            },
        )
}

/// Every `Message` variant.
fn message_s() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<i32>().prop_map(Message::AuthStatus),
        im_s().prop_map(Message::Im),
        (any::<i32>(), any::<u8>()).prop_map(|(seq, status)| Message::Ack(Ack { seq, status })),
        bytes_s(64).prop_map(Message::GroupNotification),
        im_s().prop_map(Message::GroupIm),
        Just(Message::Ping),
        Just(Message::Pong),
        (any::<u8>(), short_string(), short_string()).prop_map(
            |(platform_id, token, device_id)| {
                Message::AuthToken(AuthToken {
                    platform_id,
                    token,
                    device_id,
                })
            }
        ),
        realtime_s().prop_map(Message::Rt),
        any::<i64>().prop_map(Message::EnterRoom),
        any::<i64>().prop_map(Message::LeaveRoom),
        realtime_s().prop_map(Message::RoomIm),
        bytes_s(64).prop_map(Message::System),
        any::<i32>().prop_map(Message::UnreadCount),
        prop::sample::select(vec![CUSTOMER, CUSTOMER_SUPPORT]).prop_map(Message::LegacyCustomer),
        any::<i64>().prop_map(Message::Sync),
        any::<i64>().prop_map(Message::SyncBegin),
        any::<i64>().prop_map(Message::SyncEnd),
        any::<i64>().prop_map(Message::SyncNotify),
        gsk_s().prop_map(Message::SyncGroup),
        gsk_s().prop_map(Message::SyncGroupBegin),
        gsk_s().prop_map(Message::SyncGroupEnd),
        gsk_s().prop_map(Message::SyncGroupNotify),
        any::<i64>().prop_map(Message::SyncKey),
        gsk_s().prop_map(Message::GroupSyncKey),
        bytes_s(64).prop_map(Message::Notification),
        (any::<i64>(), any::<i64>()).prop_map(|(sync_key, prev_sync_key)| Message::Metadata(
            Metadata {
                sync_key,
                prev_sync_key
            }
        )),
        customer_s().prop_map(Message::CustomerV2),
    ]
}

/// Index of a variant; exhaustive on purpose, so a new variant fails to
/// compile here until the strategy above covers it too.
fn variant_index(m: &Message) -> usize {
    match m {
        Message::AuthStatus(_) => 0,
        Message::Im(_) => 1,
        Message::Ack(_) => 2,
        Message::GroupNotification(_) => 3,
        Message::GroupIm(_) => 4,
        Message::Ping => 5,
        Message::Pong => 6,
        Message::AuthToken(_) => 7,
        Message::Rt(_) => 8,
        Message::EnterRoom(_) => 9,
        Message::LeaveRoom(_) => 10,
        Message::RoomIm(_) => 11,
        Message::System(_) => 12,
        Message::UnreadCount(_) => 13,
        Message::LegacyCustomer(_) => 14,
        Message::Sync(_) => 15,
        Message::SyncBegin(_) => 16,
        Message::SyncEnd(_) => 17,
        Message::SyncNotify(_) => 18,
        Message::SyncGroup(_) => 19,
        Message::SyncGroupBegin(_) => 20,
        Message::SyncGroupEnd(_) => 21,
        Message::SyncGroupNotify(_) => 22,
        Message::SyncKey(_) => 23,
        Message::GroupSyncKey(_) => 24,
        Message::Notification(_) => 25,
        Message::Metadata(_) => 26,
        Message::CustomerV2(_) => 27,
    }
}
const VARIANTS: usize = 28;

/// What a message looks like after a trip through the wire at `version`:
/// v0 IM/GROUP_IM carry no timestamp, v≤1 ACKs carry no status.
fn at_version(m: &Message, version: u8) -> Message {
    match m {
        Message::Im(im) if version == 0 => Message::Im(Im {
            timestamp: 0,
            ..im.clone()
        }),
        Message::GroupIm(im) if version == 0 => Message::GroupIm(Im {
            timestamp: 0,
            ..im.clone()
        }),
        Message::Ack(a) if version < 2 => Message::Ack(Ack {
            seq: a.seq,
            status: 0,
        }),
        other => other.clone(),
    }
}

fn frame_s(max_body: usize) -> impl Strategy<Value = Frame> {
    (
        any::<i32>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        bytes_s(max_body),
    )
        .prop_map(|(seq, cmd, version, flag, body)| Frame::new(cmd, version, flag, seq, body))
}

/// Takes every complete frame off `buf`, asserting the split_frame contract.
fn drain(buf: &mut BytesMut, max_body: usize, out: &mut Vec<Frame>) {
    loop {
        let before = buf.len();
        match split_frame(buf, max_body).expect("valid stream") {
            Some(f) => {
                assert_eq!(buf.len(), before - HEADER_LEN - f.body.len());
                out.push(f);
            }
            None => {
                assert_eq!(buf.len(), before, "Ok(None) must not consume");
                return;
            }
        }
    }
}

// ───────────────────────────── coverage of the strategy ─────────────────────────────

#[test]
fn strategy_covers_every_variant() {
    let mut runner = TestRunner::deterministic();
    let s = message_s();
    let mut seen = [false; VARIANTS];
    for _ in 0..3000 {
        let m = s.new_tree(&mut runner).unwrap().current();
        seen[variant_index(&m)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "variants never generated: {missing:?}");
}

// ───────────────────────────── deterministic exhaustive sweep ─────────────────────────────

/// Every cmd 0..=255 × a spread of versions × every body length up to 40,
/// through both `Message::decode` and `Message::decode_client`: no panic,
/// and a successful decode re-encodes to something that decodes the same.
#[test]
fn decode_every_cmd_every_version_never_panics() {
    let pattern: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let fills: [&[u8]; 3] = [&pattern[..], &[0u8; 48], &[0xffu8; 48]];
    for cmd in 0..=255u8 {
        for version in [0u8, 1, 2, 3, 127, 255] {
            for fill in fills {
                for len in 0..=40 {
                    let body = Bytes::copy_from_slice(&fill[..len]);
                    let r = Message::decode(cmd, version, body.clone());
                    let c = Message::decode_client(&Frame::new(cmd, version, 0, 1, body));
                    if !command::client_may_send(cmd) {
                        assert_eq!(c, Err(ProtocolError::NotAllowed(cmd)));
                    } else {
                        assert_eq!(c, r);
                    }
                    if let Ok(m) = r {
                        assert_eq!(m.cmd(), cmd);
                        let again = Message::decode(cmd, version, m.encode(version));
                        assert_eq!(again, Ok(at_version(&m, version)), "cmd {cmd} v{version}");
                    }
                }
            }
        }
    }
}

// ───────────────────────────── properties ─────────────────────────────

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// encode(v) → decode(v) gives the message back (minus what the version cannot carry).
    #[test]
    fn message_round_trip_all_versions(m in message_s()) {
        for version in [0u8, 1, 2] {
            let body = m.encode(version);
            let back = Message::decode(m.cmd(), version, body.clone());
            prop_assert_eq!(back, Ok(at_version(&m, version)), "version {}", version);
            if command::client_may_send(m.cmd()) {
                let f = Frame::new(m.cmd(), version, 0, 1, body);
                prop_assert_eq!(Message::decode_client(&f), Ok(at_version(&m, version)));
            }
        }
    }

    /// Only IM/GROUP_IM (v0 vs v≥1) and ACK (v≤1 vs v≥2) bodies depend on the version.
    #[test]
    fn only_im_and_ack_bodies_depend_on_version(m in message_s()) {
        let (v0, v1, v2) = (m.encode(0), m.encode(1), m.encode(2));
        match &m {
            Message::Im(_) | Message::GroupIm(_) => {
                prop_assert_eq!(v0.len() + 4, v1.len());
                prop_assert_eq!(&v1, &v2);
                // The server's v0 conversion of a v2 body equals the v0 encoding.
                prop_assert_eq!(body_for_version(m.cmd(), 0, &v2), v0);
            }
            Message::Ack(_) => {
                prop_assert_eq!(v0.len(), 4);
                prop_assert_eq!(&v0, &v1);
                prop_assert_eq!(v2.len(), 5);
                prop_assert_eq!(&v2[..4], &v1[..]);
            }
            _ => {
                prop_assert_eq!(&v0, &v1);
                prop_assert_eq!(&v1, &v2);
                prop_assert_eq!(body_for_version(m.cmd(), 0, &v2), v2);
            }
        }
    }

    /// A message frame encodes to bytes that split_frame takes back exactly.
    #[test]
    fn frame_round_trip(m in message_s(), seq in any::<i32>(), version in 0u8..=2, flag in any::<u8>()) {
        let f = m.to_frame(seq, version, flag);
        let raw = f.to_bytes();
        prop_assert_eq!(raw.len(), HEADER_LEN + f.body.len());
        prop_assert_eq!(raw[11], 0);
        let mut buf = BytesMut::from(&raw[..]);
        let back = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(
            Message::decode(back.cmd, back.version, back.body),
            Ok(at_version(&m, version))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A stream of frames cut at any single byte boundary yields the same frames.
    #[test]
    fn split_at_every_boundary(frames in vec(frame_s(40), 1..=5)) {
        let mut stream = BytesMut::new();
        for f in &frames {
            f.write_to(&mut stream);
        }
        let stream = stream.freeze();
        for cut in 0..=stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            drain(&mut buf, MAX_CLIENT_BODY, &mut got);
            buf.extend_from_slice(&stream[cut..]);
            drain(&mut buf, MAX_CLIENT_BODY, &mut got);
            prop_assert!(buf.is_empty(), "cut {}", cut);
            prop_assert_eq!(&got, &frames, "cut {}", cut);
        }
    }

    /// Arbitrary chunking of the stream (many cuts) also yields the same frames.
    #[test]
    fn split_with_random_chunks(
        frames in vec(frame_s(200), 1..=8),
        chunks in vec(1usize..=50, 1..=64),
    ) {
        let mut stream = BytesMut::new();
        for f in &frames {
            f.write_to(&mut stream);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let n = chunks[i % chunks.len()].min(stream.len() - pos);
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            i += 1;
            drain(&mut buf, MAX_CLIENT_BODY, &mut got);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// split_frame on arbitrary bytes: never panics, and Some(frame) always
    /// consumes exactly header + body with the body within the limit.
    #[test]
    fn split_frame_arbitrary_bytes(
        raw in prop_oneof![
            vec(any::<u8>(), 0..64),
            // A plausible small length prefix followed by noise.
            (0u8..=1, any::<u8>(), vec(any::<u8>(), 0..80))
                .prop_map(|(hi, lo, rest)| [vec![0, 0, hi, lo], rest].concat()),
        ],
        max_body in prop_oneof![Just(0usize), Just(16), Just(MAX_CLIENT_BODY), Just(MAX_LINK_BODY), 0usize..1024],
    ) {
        let mut buf = BytesMut::from(&raw[..]);
        loop {
            let before = buf.len();
            match split_frame(&mut buf, max_body) {
                Ok(Some(f)) => {
                    prop_assert!(f.body.len() <= max_body);
                    prop_assert_eq!(buf.len(), before - HEADER_LEN - f.body.len());
                }
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before);
                    break;
                }
                Err(e) => {
                    let bad_length = matches!(e, ProtocolError::BadLength { .. });
                    prop_assert!(bad_length, "unexpected error {:?}", e);
                    prop_assert_eq!(buf.len(), before);
                    break;
                }
            }
        }
    }

    /// Message::decode / decode_client on arbitrary (cmd, version, body): no panic,
    /// and anything that decodes re-encodes consistently.
    #[test]
    fn decode_arbitrary_bytes(cmd in any::<u8>(), version in any::<u8>(), body in bytes_s(96)) {
        let r = Message::decode(cmd, version, body.clone());
        let _ = Message::decode_client(&Frame::new(cmd, version, 0, 0, body));
        if let Ok(m) = r {
            prop_assert_eq!(m.cmd(), cmd);
            prop_assert_eq!(
                Message::decode(cmd, version, m.encode(version)),
                Ok(at_version(&m, version))
            );
        }
    }

    /// Valid bodies truncated or with one byte changed: no panic in decode.
    #[test]
    fn decode_mutated_valid_bodies(
        m in message_s(),
        version in 0u8..=3,
        cut in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let body = m.encode(version);
        let cut_at = cut.index(body.len() + 1);
        let _ = Message::decode(m.cmd(), version, body.slice(..cut_at));
        if !body.is_empty() {
            let mut v = body.to_vec();
            let p = pos.index(v.len());
            v[p] = byte;
            let _ = Message::decode(m.cmd(), version, Bytes::from(v));
        }
    }

    /// body_for_version never panics and only ever rewrites v0 IM/GROUP_IM.
    #[test]
    fn body_for_version_arbitrary(cmd in any::<u8>(), version in any::<u8>(), body in bytes_s(64)) {
        let out = body_for_version(cmd, version, &body);
        let rewritten = version == 0
            && (cmd == command::IM || cmd == command::GROUP_IM)
            && body.len() >= 24;
        if rewritten {
            prop_assert_eq!(out.len(), body.len() - 4);
            prop_assert_eq!(&out[..16], &body[..16]);
            prop_assert_eq!(&out[16..], &body[20..]);
        } else {
            prop_assert_eq!(out, body);
        }
    }
}

// ───────────────────────────── link bodies ─────────────────────────────

fn route_s() -> impl Strategy<Value = RouteMessage> {
    (any::<[i64; 6]>(), bytes_s(200)).prop_map(
        |([appid, receiver, msgid, prev_msgid, device_id, timestamp], msg)| RouteMessage {
            appid,
            receiver,
            msgid,
            prev_msgid,
            device_id,
            timestamp,
            msg,
        },
    )
}

fn push_s() -> impl Strategy<Value = BatchPush> {
    (any::<i64>(), vec(any::<i64>(), 0..20), bytes_s(200)).prop_map(|(appid, receivers, msg)| {
        BatchPush {
            appid,
            receivers,
            msg,
        }
    })
}

const LINK_CMDS: [u8; 9] = [128, 130, 131, 132, 134, 135, 136, 137, 138];

/// Runs every link decoder on `body`; each successful decode must re-encode
/// to a body that decodes to the same value.
fn all_link_decoders(cmd: u8, body: Bytes) -> Result<(), TestCaseError> {
    if let Ok(h) = Hello::decode(body.clone()) {
        prop_assert_eq!(Hello::decode(h.encode()), Ok(h));
    }
    if let Ok(s) = Subscribe::decode(body.clone()) {
        prop_assert_eq!(Subscribe::decode(s.encode()), Ok(s));
    }
    if let Ok(u) = Unsubscribe::decode(body.clone()) {
        prop_assert_eq!(Unsubscribe::decode(u.encode()), Ok(u));
    }
    if let Ok(r) = RoomSubscription::decode(cmd, body.clone()) {
        prop_assert_eq!(RoomSubscription::decode(cmd, r.encode()), Ok(r));
    }
    if let Ok(r) = RouteMessage::decode(cmd, body.clone()) {
        prop_assert_eq!(RouteMessage::decode(cmd, r.encode()), Ok(r));
    }
    if let Ok(r) = RouteMessage::decode_legacy(cmd, body.clone()) {
        let e = r
            .encode_legacy()
            .expect("a decoded legacy route re-encodes");
        prop_assert_eq!(RouteMessage::decode_legacy(cmd, e), Ok(r));
    }
    if let Ok(p) = BatchPush::decode(body.clone()) {
        prop_assert_eq!(BatchPush::decode(p.encode()), Ok(p));
    }
    if let Ok(p) = BatchPush::decode_legacy(body) {
        let e = p.encode_legacy().expect("a decoded legacy push re-encodes");
        prop_assert_eq!(BatchPush::decode_legacy(e), Ok(p));
    }
    Ok(())
}

/// Every valid link body of every kind, in both layouts where there are two.
fn valid_link_bodies(
    route: &RouteMessage,
    push: &BatchPush,
    appid: i64,
    uid: i64,
    online: bool,
    secret: &Bytes,
) -> Vec<Bytes> {
    vec![
        Hello {
            version: 1,
            secret: secret.clone(),
            name: Bytes::new(),
        }
        .encode(),
        Subscribe { appid, uid, online }.encode(),
        Unsubscribe { appid, uid }.encode(),
        RoomSubscription {
            appid,
            room_id: uid,
        }
        .encode(),
        route.encode(),
        route.encode_legacy().unwrap(),
        push.encode(),
        push.encode_legacy().unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn link_round_trips(
        route in route_s(),
        push in push_s(),
        appid in any::<i64>(),
        uid in any::<i64>(),
        online in any::<bool>(),
        version in any::<u16>(),
        secret in bytes_s(64),
        cmd in prop::sample::select(vec![136u8, 137]),
    ) {
        let h = Hello {
            version,
            name: secret.clone(),
            secret,
        };
        prop_assert_eq!(Hello::decode(h.encode()), Ok(h));
        let s = Subscribe { appid, uid, online };
        prop_assert_eq!(Subscribe::decode(s.encode()), Ok(s));
        let u = Unsubscribe { appid, uid };
        prop_assert_eq!(Unsubscribe::decode(u.encode()), Ok(u));
        let r = RoomSubscription { appid, room_id: uid };
        prop_assert_eq!(RoomSubscription::decode(cmd, r.encode()), Ok(r));
        prop_assert_eq!(RouteMessage::decode(132, route.encode()), Ok(route.clone()));
        let legacy = RouteMessage { prev_msgid: 0, ..route.clone() };
        prop_assert_eq!(
            RouteMessage::decode_legacy(135, route.encode_legacy().unwrap()),
            Ok(legacy)
        );
        prop_assert_eq!(BatchPush::decode(push.encode()), Ok(push.clone()));
        prop_assert_eq!(BatchPush::decode_legacy(push.encode_legacy().unwrap()), Ok(push));
    }

    /// Link frames (header + body) survive split_frame with the link limit.
    #[test]
    fn link_frame_round_trip(route in route_s(), seq in any::<i32>()) {
        let f = Frame::new(132, 0, 0, seq, route.encode());
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let back = split_frame(&mut buf, MAX_LINK_BODY).unwrap().unwrap();
        prop_assert_eq!(RouteMessage::decode(back.cmd, back.body), Ok(route));
    }

    /// Arbitrary bytes into every link decoder: no panic.
    #[test]
    fn link_decoders_arbitrary_bytes(
        cmd in prop::sample::select(LINK_CMDS.to_vec()),
        body in bytes_s(128),
    ) {
        all_link_decoders(cmd, body)?;
    }

    /// Valid link bodies truncated at any point or with one byte changed: no
    /// panic (this reaches the inner length checks arbitrary bytes rarely hit).
    #[test]
    fn link_decoders_mutated_valid_bodies(
        route in route_s(),
        push in push_s(),
        appid in any::<i64>(),
        uid in any::<i64>(),
        secret in bytes_s(16),
        cut in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cmd in prop::sample::select(LINK_CMDS.to_vec()),
    ) {
        for body in valid_link_bodies(&route, &push, appid, uid, true, &secret) {
            all_link_decoders(cmd, body.slice(..cut.index(body.len() + 1)))?;
            let mut v = body.to_vec();
            let p = pos.index(v.len());
            v[p] = byte;
            all_link_decoders(cmd, Bytes::from(v))?;
        }
    }
}

/// Huge counts and lengths in link bodies are refused before any allocation
/// of that size (a u32::MAX receiver count would be a 32 GiB Vec).
#[test]
fn link_huge_counts_and_lengths_refused() {
    for count in [u32::MAX, 0x8000_0000, 0x1000_0000, 3] {
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&count.to_be_bytes());
        body.extend_from_slice(&[0u8; 20]);
        assert!(
            BatchPush::decode(Bytes::from(body)).is_err(),
            "count {count}"
        );
    }
    for len in [u32::MAX, 0x8000_0000, 1] {
        let mut body = vec![0u8; 48];
        body.extend_from_slice(&len.to_be_bytes());
        assert!(RouteMessage::decode(132, Bytes::from(body)).is_err());
    }
}
