//! Hand-built byte vectors for every client body and every im↔imr link body.
//!
//! The expected bytes are written out literally from the wire spec
//! (/work/shared/spec/gobelieve-wire.md §1, §2, §4.2, §4.6), never produced by
//! our own encoder, so an encoder and decoder that agree with each other but
//! not with gobelieve fail here.
//!
//! Recurring field values (chosen so every byte position is distinct and a
//! byte-order mistake shows up immediately):
//! * `A8` = 0x0102030405060708 (i64) → `[1,2,3,4,5,6,7,8]`
//! * `B8` = 0x1112131415161718 (i64) → `[0x11,…,0x18]`
//! * `C4` = 0x21222324 (i32)         → `[0x21,0x22,0x23,0x24]`
//! * `D4` = 0x31323334 (i32)         → `[0x31,0x32,0x33,0x34]`

use bytes::{Bytes, BytesMut};
use ferry_common::link::{
    self, BatchPush, Hello, LINK_MAGIC, LINK_VERSION, MAX_LINK_BODY, RoomSubscription,
    RouteMessage, Subscribe, Unsubscribe,
};
use ferry_common::protocol::ack::Ack;
use ferry_common::protocol::auth::AuthToken;
use ferry_common::protocol::command::{self, *};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::im::{Im, body_for_version};
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::realtime::Realtime;
use ferry_common::protocol::{
    Frame, FrameCodec, HEADER_LEN, Header, MAX_CLIENT_BODY, Message, ProtocolError, split_frame,
};
use tokio_util::codec::Decoder;

const A8: i64 = 0x0102_0304_0506_0708;
const A8B: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const B8: i64 = 0x1112_1314_1516_1718;
const B8B: [u8; 8] = [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18];
const C4: i32 = 0x2122_2324;
const C4B: [u8; 4] = [0x21, 0x22, 0x23, 0x24];
const D4: i32 = 0x3132_3334;
const D4B: [u8; 4] = [0x31, 0x32, 0x33, 0x34];

/// Concatenates literal pieces.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// A command number and the `Message` constructor for its body.
type Ctor<T> = (u8, fn(T) -> Message);

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

fn decode(cmd: u8, version: u8, body: &[u8]) -> Result<Message, ProtocolError> {
    Message::decode(cmd, version, b(body))
}

fn client_frame(cmd: u8, version: u8, body: &[u8]) -> Frame {
    Frame::new(cmd, version, 0, 1, b(body))
}

// ───────────────────────────── header (§1.1, §1.2) ─────────────────────────────

#[test]
fn header_parse_fields() {
    let h = Header::parse(&[0, 0, 0, 8, 0, 0, 0, 1, 26, 2, 0x10, 0], MAX_CLIENT_BODY).unwrap();
    assert_eq!(
        h,
        Header {
            len: 8,
            seq: 1,
            cmd: 26,
            version: 2,
            flag: 0x10
        }
    );
    // seq is a signed BE i32; every header byte lands in its own field.
    let h = Header::parse(
        &[0, 0, 0x01, 0x02, 0xff, 0xff, 0xff, 0xfe, 4, 1, 0x21, 0],
        MAX_CLIENT_BODY,
    )
    .unwrap();
    assert_eq!(
        h,
        Header {
            len: 0x0102,
            seq: -2,
            cmd: 4,
            version: 1,
            flag: 0x21
        }
    );
}

#[test]
fn header_negative_length_rejected() {
    for len in [
        [0xff, 0xff, 0xff, 0xff],
        [0x80, 0, 0, 0],
        [0xff, 0xff, 0x80, 0x00],
    ] {
        let raw = cat(&[&len, &[0, 0, 0, 1, 4, 2, 0, 0]]);
        let err = Header::parse(raw[..].try_into().unwrap(), MAX_CLIENT_BODY).unwrap_err();
        let expect = i32::from_be_bytes(len) as i64;
        assert!(expect < 0);
        assert_eq!(
            err,
            ProtocolError::BadLength {
                len: expect,
                max: MAX_CLIENT_BODY
            }
        );
        // Also negative under the (much larger) link limit.
        assert!(Header::parse(raw[..].try_into().unwrap(), MAX_LINK_BODY).is_err());
    }
}

#[test]
fn header_client_limit_is_32k_exclusive() {
    assert_eq!(MAX_CLIENT_BODY, 32767);
    let ok = Header::parse(&[0, 0, 0x7f, 0xff, 0, 0, 0, 1, 4, 2, 0, 0], MAX_CLIENT_BODY).unwrap();
    assert_eq!(ok.len, 32767);
    let err =
        Header::parse(&[0, 0, 0x80, 0x00, 0, 0, 0, 1, 4, 2, 0, 0], MAX_CLIENT_BODY).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::BadLength {
            len: 32768,
            max: 32767
        }
    );
    // Zero-length body is fine.
    assert_eq!(
        Header::parse(&[0, 0, 0, 0, 0, 0, 0, 1, 13, 2, 0, 0], MAX_CLIENT_BODY)
            .unwrap()
            .len,
        0
    );
    // 32768 is fine on a link.
    assert_eq!(
        Header::parse(&[0, 0, 0x80, 0x00, 0, 0, 0, 1, 132, 0, 0, 0], MAX_LINK_BODY)
            .unwrap()
            .len,
        32768
    );
    // ... up to 16 MiB inclusive, not beyond.
    assert_eq!(MAX_LINK_BODY, 16 * 1024 * 1024);
    assert!(Header::parse(&[0x01, 0, 0, 0, 0, 0, 0, 1, 132, 0, 0, 0], MAX_LINK_BODY).is_ok());
    assert!(Header::parse(&[0x01, 0, 0, 1, 0, 0, 0, 1, 132, 0, 0, 0], MAX_LINK_BODY).is_err());
}

#[test]
fn header_reserved_byte_ignored_on_read_zero_on_write() {
    let a = Header::parse(&[0, 0, 0, 4, 0, 0, 0, 9, 5, 1, 0, 0], MAX_CLIENT_BODY).unwrap();
    let b2 = Header::parse(&[0, 0, 0, 4, 0, 0, 0, 9, 5, 1, 0, 0xab], MAX_CLIENT_BODY).unwrap();
    assert_eq!(a, b2);
    assert_eq!(b2.to_bytes(), [0, 0, 0, 4, 0, 0, 0, 9, 5, 1, 0, 0]);
}

#[test]
fn header_write_layout() {
    let h = Header {
        len: 0x0102,
        seq: 0x0a0b0c0d,
        cmd: 64,
        version: 2,
        flag: 0x19,
    };
    assert_eq!(
        h.to_bytes(),
        [0, 0, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d, 64, 2, 0x19, 0]
    );
    let mut out = BytesMut::new();
    h.write(&mut out);
    assert_eq!(
        &out[..],
        &[0, 0, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d, 64, 2, 0x19, 0]
    );
    assert_eq!(HEADER_LEN, 12);
}

#[test]
fn frame_to_bytes_layout() {
    let f = Frame::new(26, 2, 0, 1, b(&[0, 0, 0, 0, 0, 0, 0, 7]));
    assert_eq!(
        &f.to_bytes()[..],
        &[0, 0, 0, 8, 0, 0, 0, 1, 26, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]
    );
    let ping = Frame::new(13, 1, 0, -1, Bytes::new());
    assert_eq!(
        &ping.to_bytes()[..],
        &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 13, 1, 0, 0]
    );
}

// ───────────────────────────── AUTH_TOKEN / AUTH_STATUS ─────────────────────────────

#[test]
fn auth_token_with_device() {
    let body = [2, 3, b'a', b'b', b'c', 4, b'd', b'e', b'v', b'1'];
    let a = AuthToken::decode(b(&body)).unwrap();
    assert_eq!(
        a,
        AuthToken {
            platform_id: 2,
            token: "abc".into(),
            device_id: "dev1".into()
        }
    );
    assert_eq!(&a.encode()[..], &body);
    assert_eq!(decode(AUTH_TOKEN, 1, &body).unwrap(), Message::AuthToken(a));
}

#[test]
fn auth_token_without_device() {
    // Empty device id: device_len byte present and 0.
    let body = [3, 3, b'a', b'b', b'c', 0];
    let a = AuthToken::decode(b(&body)).unwrap();
    assert_eq!(
        a,
        AuthToken {
            platform_id: 3,
            token: "abc".into(),
            device_id: String::new()
        }
    );
    assert_eq!(&a.encode()[..], &body);
    // Four bytes, empty token and device: the smallest valid body; the 4th byte is trailing.
    let a = AuthToken::decode(b(&[1, 0, 0, 0xaa])).unwrap();
    assert_eq!(a.token, "");
    assert_eq!(a.device_id, "");
    // Encoding empty token and device must still meet the 4-byte minimum
    // (spec §2.3), else our own client would be disconnected: 3 bytes + one
    // trailing zero, which decoders ignore.
    let empty = AuthToken {
        platform_id: 1,
        token: String::new(),
        device_id: String::new(),
    };
    assert_eq!(&empty.encode()[..], &[1, 0, 0, 0]);
    assert_eq!(AuthToken::decode(empty.encode()).unwrap(), empty);
    // One-byte token, empty device: 4 bytes already, no padding.
    let one = AuthToken {
        platform_id: 2,
        token: "t".into(),
        device_id: String::new(),
    };
    assert_eq!(&one.encode()[..], &[2, 1, b't', 0]);
}

#[test]
fn auth_token_device_len_missing_rejected() {
    // token_len > 0 and the token ends the body: no device_len byte.
    assert!(AuthToken::decode(b(&[1, 3, b'a', b'b', b'c'])).is_err());
    assert!(decode(AUTH_TOKEN, 2, &[1, 3, b'a', b'b', b'c']).is_err());
}

#[test]
fn auth_token_len_beyond_body_rejected() {
    assert_eq!(
        AuthToken::decode(b(&[1, 10, b'a', b'b', b'c'])).unwrap_err(),
        ProtocolError::BadInnerLength(AUTH_TOKEN)
    );
    assert_eq!(
        AuthToken::decode(b(&[1, 0xff, b'a', b'b', b'c', 0])).unwrap_err(),
        ProtocolError::BadInnerLength(AUTH_TOKEN)
    );
    // device_len beyond the body.
    assert_eq!(
        AuthToken::decode(b(&[1, 1, b't', 5, b'x'])).unwrap_err(),
        ProtocolError::BadInnerLength(AUTH_TOKEN)
    );
}

#[test]
fn auth_token_trailing_bytes_ignored() {
    let a = AuthToken::decode(b(&[1, 1, b't', 1, b'd', 0xff, 0xee, 0x00])).unwrap();
    assert_eq!(
        a,
        AuthToken {
            platform_id: 1,
            token: "t".into(),
            device_id: "d".into()
        }
    );
}

#[test]
fn auth_token_body_under_4_rejected() {
    for body in [&[][..], &[1], &[1, 0], &[1, 0, 0]] {
        let err = AuthToken::decode(b(body)).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Truncated {
                cmd: AUTH_TOKEN,
                need: 4,
                got: body.len()
            }
        );
    }
}

#[test]
fn auth_token_encode_truncates_to_255() {
    let long = "x".repeat(300);
    let a = AuthToken {
        platform_id: 4,
        token: long.clone(),
        device_id: long,
    };
    let e = a.encode();
    assert_eq!(e.len(), 1 + 1 + 255 + 1 + 255);
    assert_eq!(e[0], 4);
    assert_eq!(e[1], 255);
    assert_eq!(e[257], 255);
    let back = AuthToken::decode(e).unwrap();
    assert_eq!(back.token.len(), 255);
    assert_eq!(back.device_id.len(), 255);
}

#[test]
fn auth_status() {
    assert_eq!(&Message::AuthStatus(0).encode(2)[..], &[0, 0, 0, 0]);
    assert_eq!(&Message::AuthStatus(1).encode(1)[..], &[0, 0, 0, 1]);
    assert_eq!(&Message::AuthStatus(1).encode(0)[..], &[0, 0, 0, 1]);
    assert_eq!(
        decode(AUTH_STATUS, 2, &[0, 0, 0, 1]).unwrap(),
        Message::AuthStatus(1)
    );
    assert_eq!(
        decode(AUTH_STATUS, 2, &[0xff, 0xff, 0xff, 0xff]).unwrap(),
        Message::AuthStatus(-1)
    );
    assert!(decode(AUTH_STATUS, 2, &[0, 0, 1]).is_err());
    assert_eq!(
        &Message::AuthStatus(0).to_frame(1, 2, 0).to_bytes()[..],
        &[0, 0, 0, 4, 0, 0, 0, 1, 3, 2, 0, 0, 0, 0, 0, 0]
    );
}

// ───────────────────────────── IM / GROUP_IM ─────────────────────────────

fn sample_im() -> Im {
    Im {
        sender: A8,
        receiver: B8,
        timestamp: C4,
        msgid: D4,
        content: b(b"hi"),
    }
}

/// v≥1 body of `sample_im()`: sender, receiver, timestamp, msgid, "hi".
fn im_v1_body() -> Vec<u8> {
    cat(&[&A8B, &B8B, &C4B, &D4B, b"hi"])
}

/// v0 body of `sample_im()`: sender, receiver, msgid, "hi" (no timestamp).
fn im_v0_body() -> Vec<u8> {
    cat(&[&A8B, &B8B, &D4B, b"hi"])
}

#[test]
fn im_v1_v2_layout() {
    let body = im_v1_body();
    assert_eq!(body.len(), 26);
    for v in [1u8, 2, 3] {
        assert_eq!(&sample_im().encode(v)[..], &body[..], "encode v{v}");
        assert_eq!(
            decode(IM, v, &body).unwrap(),
            Message::Im(sample_im()),
            "decode v{v}"
        );
        assert_eq!(
            decode(GROUP_IM, v, &body).unwrap(),
            Message::GroupIm(sample_im())
        );
        assert_eq!(&Message::GroupIm(sample_im()).encode(v)[..], &body[..]);
    }
}

#[test]
fn im_v0_layout_has_no_timestamp() {
    let body = im_v0_body();
    assert_eq!(body.len(), 22);
    assert_eq!(&sample_im().encode(0)[..], &body[..]);
    let expect = Im {
        timestamp: 0,
        ..sample_im()
    };
    assert_eq!(decode(IM, 0, &body).unwrap(), Message::Im(expect.clone()));
    assert_eq!(
        decode(GROUP_IM, 0, &body).unwrap(),
        Message::GroupIm(expect)
    );
    // A v1 body read as v0: bytes 16..20 are the msgid, the rest is content.
    let m = Im::decode(IM, 0, b(&im_v1_body())).unwrap();
    assert_eq!(m.msgid, C4);
    assert_eq!(m.timestamp, 0);
    assert_eq!(&m.content[..], &cat(&[&D4B, b"hi"])[..]);
}

#[test]
fn im_min_lengths() {
    for cmd in [IM, GROUP_IM] {
        // v0: min 20.
        let b19 = cat(&[&A8B, &B8B, &[0, 0, 0]]);
        assert_eq!(
            decode(cmd, 0, &b19).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 20,
                got: 19
            }
        );
        let b20 = cat(&[&A8B, &B8B, &D4B]);
        let m = Im::decode(cmd, 0, b(&b20)).unwrap();
        assert_eq!((m.sender, m.receiver, m.msgid), (A8, B8, D4));
        assert!(m.content.is_empty());
        // v1/v2: min 24 (so a 20-byte v0 body is too short at v≥1).
        for v in [1u8, 2] {
            assert_eq!(
                decode(cmd, v, &b20).unwrap_err(),
                ProtocolError::Truncated {
                    cmd,
                    need: 24,
                    got: 20
                }
            );
            let b23 = cat(&[&A8B, &B8B, &C4B, &[0, 0, 0]]);
            assert!(decode(cmd, v, &b23).is_err());
            let b24 = cat(&[&A8B, &B8B, &C4B, &D4B]);
            let m = Im::decode(cmd, v, b(&b24)).unwrap();
            assert_eq!(
                (m.sender, m.receiver, m.timestamp, m.msgid),
                (A8, B8, C4, D4)
            );
            assert!(m.content.is_empty());
        }
    }
}

#[test]
fn im_negative_fields() {
    let body = cat(&[
        &[0xff; 8],
        &[0x80, 0, 0, 0, 0, 0, 0, 0],
        &[0xff, 0xff, 0xff, 0xfe],
        &[0x80, 0, 0, 0],
    ]);
    let m = Im::decode(IM, 2, b(&body)).unwrap();
    assert_eq!(m.sender, -1);
    assert_eq!(m.receiver, i64::MIN);
    assert_eq!(m.timestamp, -2);
    assert_eq!(m.msgid, i32::MIN);
}

#[test]
fn im_frame_bytes() {
    let f = Message::Im(sample_im()).to_frame(7, 2, 0x10);
    let expect = cat(&[&[0, 0, 0, 26, 0, 0, 0, 7, 4, 2, 0x10, 0], &im_v1_body()]);
    assert_eq!(&f.to_bytes()[..], &expect[..]);
    let f = Message::GroupIm(sample_im()).to_frame(7, 0, 0x20);
    let expect = cat(&[&[0, 0, 0, 22, 0, 0, 0, 7, 8, 0, 0x20, 0], &im_v0_body()]);
    assert_eq!(&f.to_bytes()[..], &expect[..]);
}

#[test]
fn body_for_version_v0_drops_timestamp() {
    let v1 = b(&im_v1_body());
    for cmd in [IM, GROUP_IM] {
        assert_eq!(&body_for_version(cmd, 0, &v1)[..], &im_v0_body()[..]);
        // v1 and v2 connections get the body unchanged.
        assert_eq!(&body_for_version(cmd, 1, &v1)[..], &im_v1_body()[..]);
        assert_eq!(&body_for_version(cmd, 2, &v1)[..], &im_v1_body()[..]);
    }
    // Exactly 24 bytes (empty content) → 20 bytes.
    let v1_24 = b(&cat(&[&A8B, &B8B, &C4B, &D4B]));
    assert_eq!(
        &body_for_version(IM, 0, &v1_24)[..],
        &cat(&[&A8B, &B8B, &D4B])[..]
    );
    // Other commands are never rewritten, at any version.
    for cmd in [RT, ROOM_IM, CUSTOMER_V2, SYSTEM, ACK, METADATA] {
        assert_eq!(&body_for_version(cmd, 0, &v1)[..], &im_v1_body()[..]);
    }
}

// ───────────────────────────── ACK ─────────────────────────────

#[test]
fn ack_encode_by_version() {
    let a = Ack {
        seq: 0x01020304,
        status: 65,
    };
    assert_eq!(&a.encode(0)[..], &[1, 2, 3, 4]);
    assert_eq!(&a.encode(1)[..], &[1, 2, 3, 4]);
    assert_eq!(&a.encode(2)[..], &[1, 2, 3, 4, 65]);
    assert_eq!(&a.encode(3)[..], &[1, 2, 3, 4, 65]);
    // v1 frame: 4-byte body (the python client unpacks it strictly).
    let f = Message::Ack(Ack { seq: 9, status: 3 }).to_frame(5, 1, 0);
    assert_eq!(
        &f.to_bytes()[..],
        &[0, 0, 0, 4, 0, 0, 0, 5, 5, 1, 0, 0, 0, 0, 0, 9]
    );
    let f = Message::Ack(Ack { seq: 9, status: 3 }).to_frame(5, 2, 0x20);
    assert_eq!(
        &f.to_bytes()[..],
        &[0, 0, 0, 5, 0, 0, 0, 5, 5, 2, 0x20, 0, 0, 0, 0, 9, 3]
    );
}

#[test]
fn ack_decode_lenient() {
    for v in [0u8, 1, 2] {
        assert_eq!(
            decode(ACK, v, &[1, 2, 3, 4]).unwrap(),
            Message::Ack(Ack {
                seq: 0x01020304,
                status: 0
            })
        );
        assert_eq!(
            decode(ACK, v, &[1, 2, 3, 4, 2]).unwrap(),
            Message::Ack(Ack {
                seq: 0x01020304,
                status: 2
            })
        );
        // Trailing bytes are ignored.
        assert_eq!(
            decode(ACK, v, &[0xff, 0xff, 0xff, 0xff, 1, 9, 9, 9]).unwrap(),
            Message::Ack(Ack { seq: -1, status: 1 })
        );
    }
}

#[test]
fn ack_from_client_any_length_accepted() {
    // Spec §2.3: c→s ACK is read leniently, any length accepted (its content
    // is only logged), so even a short body must not close the connection.
    for body in [&[][..], &[1], &[1, 2], &[1, 2, 3]] {
        for v in [0u8, 1, 2] {
            // gobelieve's binary.Read leaves seq at 0 when fewer than 4 bytes remain.
            let m = Message::decode_client(&client_frame(ACK, v, body));
            assert_eq!(
                m,
                Ok(Message::Ack(Ack { seq: 0, status: 0 })),
                "ACK body {body:?} v{v}"
            );
        }
    }
}

// ───────────────────────────── PING / PONG ─────────────────────────────

#[test]
fn ping_pong_empty_body() {
    assert_eq!(decode(PING, 2, &[]).unwrap(), Message::Ping);
    assert_eq!(decode(PONG, 1, &[]).unwrap(), Message::Pong);
    assert_eq!(
        decode(PING, 2, &[0]).unwrap_err(),
        ProtocolError::NonEmptyBody(PING)
    );
    assert_eq!(
        decode(PONG, 2, &[1, 2, 3, 4]).unwrap_err(),
        ProtocolError::NonEmptyBody(PONG)
    );
    assert!(Message::Ping.encode(2).is_empty());
    assert_eq!(
        &Message::Pong.to_frame(3, 1, 0).to_bytes()[..],
        &[0, 0, 0, 0, 0, 0, 0, 3, 14, 1, 0, 0]
    );
}

// ───────────────────────────── RT / ROOM_IM ─────────────────────────────

#[test]
fn rt_and_room_im() {
    let body = cat(&[&A8B, &B8B, b"typing"]);
    let r = Realtime {
        sender: A8,
        receiver: B8,
        content: b(b"typing"),
    };
    for v in [0u8, 1, 2] {
        assert_eq!(decode(RT, v, &body).unwrap(), Message::Rt(r.clone()));
        assert_eq!(
            decode(ROOM_IM, v, &body).unwrap(),
            Message::RoomIm(r.clone())
        );
        assert_eq!(&Message::Rt(r.clone()).encode(v)[..], &body[..]);
        assert_eq!(&Message::RoomIm(r.clone()).encode(v)[..], &body[..]);
    }
    // Min 16.
    let b16 = cat(&[&A8B, &B8B]);
    let e = Realtime::decode(RT, b(&b16)).unwrap();
    assert!(e.content.is_empty());
    for cmd in [RT, ROOM_IM] {
        assert_eq!(
            decode(cmd, 2, &b16[..15]).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 16,
                got: 15
            }
        );
    }
}

// ───────────────────────────── ENTER / LEAVE_ROOM, UNREAD_COUNT ─────────────────────────────

#[test]
fn enter_leave_room() {
    assert_eq!(
        decode(ENTER_ROOM, 2, &[0, 0, 0, 0, 0, 0, 0x30, 0x39]).unwrap(),
        Message::EnterRoom(12345)
    );
    assert_eq!(decode(LEAVE_ROOM, 1, &A8B).unwrap(), Message::LeaveRoom(A8));
    assert_eq!(&Message::EnterRoom(A8).encode(2)[..], &A8B);
    assert_eq!(&Message::LeaveRoom(-1).encode(2)[..], &[0xff; 8]);
    for cmd in [ENTER_ROOM, LEAVE_ROOM] {
        assert!(matches!(
            decode(cmd, 2, &A8B[..7]).unwrap_err(),
            ProtocolError::Truncated { got: 7, .. }
        ));
        assert!(decode(cmd, 2, &[]).is_err());
    }
}

#[test]
fn unread_count() {
    assert_eq!(
        decode(UNREAD_COUNT, 2, &[0, 0, 0, 5]).unwrap(),
        Message::UnreadCount(5)
    );
    assert_eq!(
        decode(UNREAD_COUNT, 2, &[0xff, 0xff, 0xff, 0xff]).unwrap(),
        Message::UnreadCount(-1)
    );
    assert_eq!(&Message::UnreadCount(C4).encode(1)[..], &C4B);
    assert!(decode(UNREAD_COUNT, 2, &[0, 0, 5]).is_err());
}

// ───────────────────────────── SYNC family ─────────────────────────────

#[test]
fn sync_family_i64() {
    let cases: [Ctor<i64>; 5] = [
        (SYNC, Message::Sync),
        (SYNC_BEGIN, Message::SyncBegin),
        (SYNC_END, Message::SyncEnd),
        (SYNC_NOTIFY, Message::SyncNotify),
        (SYNC_KEY, Message::SyncKey),
    ];
    for (cmd, ctor) in cases {
        for v in [0u8, 1, 2] {
            assert_eq!(decode(cmd, v, &A8B).unwrap(), ctor(A8), "cmd {cmd}");
            assert_eq!(&ctor(A8).encode(v)[..], &A8B);
            assert_eq!(ctor(A8).cmd(), cmd);
        }
        assert_eq!(decode(cmd, 2, &[0; 8]).unwrap(), ctor(0));
        assert_eq!(
            decode(cmd, 2, &[0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            ctor(i64::MIN)
        );
        assert_eq!(
            decode(cmd, 2, &A8B[..7]).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 8,
                got: 7
            }
        );
    }
    let f = Message::SyncKey(7).to_frame(1, 2, 0);
    assert_eq!(
        &f.to_bytes()[..],
        &[0, 0, 0, 8, 0, 0, 0, 1, 34, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]
    );
}

#[test]
fn sync_group_family() {
    let g = GroupSyncKey {
        group_id: A8,
        sync_key: B8,
    };
    let body = cat(&[&A8B, &B8B]);
    let cases: [Ctor<GroupSyncKey>; 5] = [
        (SYNC_GROUP, Message::SyncGroup),
        (SYNC_GROUP_BEGIN, Message::SyncGroupBegin),
        (SYNC_GROUP_END, Message::SyncGroupEnd),
        (SYNC_GROUP_NOTIFY, Message::SyncGroupNotify),
        (GROUP_SYNC_KEY, Message::GroupSyncKey),
    ];
    for (cmd, ctor) in cases {
        for v in [0u8, 1, 2] {
            assert_eq!(decode(cmd, v, &body).unwrap(), ctor(g), "cmd {cmd}");
            assert_eq!(&ctor(g).encode(v)[..], &body[..]);
            assert_eq!(ctor(g).cmd(), cmd);
        }
        assert_eq!(
            decode(cmd, 2, &body[..15]).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 16,
                got: 15
            }
        );
        assert!(decode(cmd, 2, &body[..8]).is_err());
    }
}

// ───────────────────────────── METADATA ─────────────────────────────

#[test]
fn metadata_layout() {
    let body = cat(&[&A8B, &B8B, &[0; 16]]);
    assert_eq!(body.len(), 32);
    let m = Metadata {
        sync_key: A8,
        prev_sync_key: B8,
    };
    assert_eq!(&m.encode()[..], &body[..]);
    for v in [0u8, 1, 2] {
        assert_eq!(&Message::Metadata(m).encode(v)[..], &body[..]);
        assert_eq!(decode(METADATA, v, &body).unwrap(), Message::Metadata(m));
    }
    // Padding is reserved: non-zero padding is ignored on read.
    let odd = cat(&[&A8B, &B8B, &[0xee; 16]]);
    assert_eq!(decode(METADATA, 2, &odd).unwrap(), Message::Metadata(m));
    // < 32 rejected (even with both keys present).
    assert_eq!(
        decode(METADATA, 2, &body[..31]).unwrap_err(),
        ProtocolError::Truncated {
            cmd: METADATA,
            need: 32,
            got: 31
        }
    );
    assert!(decode(METADATA, 2, &body[..16]).is_err());
    assert!(Message::decode_client(&client_frame(METADATA, 2, &body[..16])).is_err());
    let f = Message::Metadata(Metadata {
        sync_key: 2,
        prev_sync_key: 1,
    })
    .to_frame(10, 2, 0);
    assert_eq!(
        &f.to_bytes()[..],
        &[
            0, 0, 0, 32, 0, 0, 0, 10, 37, 2, 0, 0, //
            0, 0, 0, 0, 0, 0, 0, 2, //
            0, 0, 0, 0, 0, 0, 0, 1, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
}

// ───────────────────────────── raw bodies ─────────────────────────────

#[test]
fn raw_bodies_system_notification_group_notification() {
    let json = br#"{"create":{"group_id":1}}"#;
    let cases: [Ctor<Bytes>; 3] = [
        (SYSTEM, Message::System),
        (NOTIFICATION, Message::Notification),
        (GROUP_NOTIFICATION, Message::GroupNotification),
    ];
    for (cmd, ctor) in cases {
        for body in [&json[..], &[], &[0xff, 0x00, 0xfe]] {
            for v in [0u8, 1, 2] {
                assert_eq!(decode(cmd, v, body).unwrap(), ctor(b(body)));
                assert_eq!(&ctor(b(body)).encode(v)[..], body);
            }
        }
        assert_eq!(ctor(Bytes::new()).cmd(), cmd);
    }
}

// ───────────────────────────── CUSTOMER_V2 and legacy customer ─────────────────────────────

#[test]
fn customer_v2_layout() {
    let c = CustomerV2 {
        sender_appid: A8,
        sender: B8,
        receiver_appid: 7,
        receiver: -1,
        timestamp: C4,
        content: b(b"{}"),
    };
    let body = cat(&[
        &A8B,
        &B8B,
        &[0, 0, 0, 0, 0, 0, 0, 7],
        &[0xff; 8],
        &C4B,
        b"{}",
    ]);
    assert_eq!(body.len(), 38);
    for v in [0u8, 1, 2] {
        assert_eq!(&Message::CustomerV2(c.clone()).encode(v)[..], &body[..]);
        assert_eq!(
            decode(CUSTOMER_V2, v, &body).unwrap(),
            Message::CustomerV2(c.clone())
        );
    }
    // Min 36: exactly 36 gives empty content; 35 is rejected.
    let m = CustomerV2::decode(CUSTOMER_V2, b(&body[..36])).unwrap();
    assert!(m.content.is_empty());
    assert_eq!(m.timestamp, C4);
    assert_eq!(
        decode(CUSTOMER_V2, 2, &body[..35]).unwrap_err(),
        ProtocolError::Truncated {
            cmd: CUSTOMER_V2,
            need: 36,
            got: 35
        }
    );
}

#[test]
fn legacy_customer_accepted_min_36() {
    for cmd in [CUSTOMER, CUSTOMER_SUPPORT] {
        let body36 = cat(&[&A8B, &B8B, &A8B, &B8B, &C4B]);
        assert_eq!(body36.len(), 36);
        let with_content = cat(&[&body36, b"hello"]);
        for v in [0u8, 1, 2] {
            assert_eq!(
                decode(cmd, v, &body36).unwrap(),
                Message::LegacyCustomer(cmd)
            );
            assert_eq!(
                Message::decode_client(&client_frame(cmd, v, &with_content)).unwrap(),
                Message::LegacyCustomer(cmd)
            );
        }
        assert_eq!(
            decode(cmd, 2, &body36[..35]).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 36,
                got: 35
            }
        );
        assert_eq!(Message::LegacyCustomer(cmd).cmd(), cmd);
    }
}

// ───────────────────────────── which commands a client may send ─────────────────────────────

#[test]
fn decode_client_rejects_forbidden_and_unknown_commands() {
    let forbidden = [
        0u8, 1, 2, 3, 6, 7, 9, 10, 11, 12, 16, 21, 23, 27, 28, 29, 31, 32, 33, 36, 38, 63, 65, 128,
        130, 131, 132, 134, 135, 136, 137, 138, 220, 247, 251, 255,
    ];
    for cmd in forbidden {
        assert!(!command::client_may_send(cmd), "cmd {cmd}");
        // Whatever the body, the command alone closes the connection.
        for body in [&[][..], &[0u8; 64][..]] {
            assert_eq!(
                Message::decode_client(&client_frame(cmd, 2, body)).unwrap_err(),
                ProtocolError::NotAllowed(cmd),
                "cmd {cmd}"
            );
        }
    }
    // Every byte outside the allowed set is refused.
    let allowed = [
        4u8, 5, 8, 13, 14, 15, 17, 18, 19, 20, 22, 24, 25, 26, 30, 34, 35, 37, 64,
    ];
    for cmd in 0..=255u8 {
        assert_eq!(
            command::client_may_send(cmd),
            allowed.contains(&cmd),
            "cmd {cmd}"
        );
    }
}

#[test]
fn decode_unknown_commands() {
    // Message::decode (both directions) knows no body for these numbers.
    for cmd in [
        0u8, 1, 2, 6, 9, 10, 11, 12, 16, 23, 38, 63, 65, 128, 130, 134, 255,
    ] {
        assert_eq!(
            decode(cmd, 2, &[0; 40]).unwrap_err(),
            ProtocolError::UnknownCommand(cmd),
            "cmd {cmd}"
        );
    }
}

#[test]
fn decode_client_accepts_every_allowed_command() {
    let im = cat(&[&A8B, &B8B, &C4B, &D4B, b"x"]);
    let gk = cat(&[&A8B, &B8B]);
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (IM, im.clone()),
        (ACK, vec![0, 0, 0, 1]),
        (GROUP_IM, im),
        (PING, vec![]),
        (PONG, vec![]),
        (AUTH_TOKEN, vec![1, 1, b't', 0]),
        (RT, gk.clone()),
        (ENTER_ROOM, A8B.to_vec()),
        (LEAVE_ROOM, A8B.to_vec()),
        (ROOM_IM, gk.clone()),
        (UNREAD_COUNT, C4B.to_vec()),
        (CUSTOMER, vec![0; 36]),
        (CUSTOMER_SUPPORT, vec![0; 36]),
        (SYNC, A8B.to_vec()),
        (SYNC_GROUP, gk.clone()),
        (SYNC_KEY, A8B.to_vec()),
        (GROUP_SYNC_KEY, gk),
        (METADATA, vec![0; 32]),
        (CUSTOMER_V2, vec![0; 36]),
    ];
    assert_eq!(cases.len(), 19);
    for (cmd, body) in cases {
        let m = Message::decode_client(&client_frame(cmd, 2, &body))
            .unwrap_or_else(|e| panic!("cmd {cmd}: {e}"));
        assert_eq!(m.cmd(), cmd);
    }
}

// ───────────────────────────── split_frame / FrameCodec ─────────────────────────────

const SYNC_FRAME: [u8; 20] = [0, 0, 0, 8, 0, 0, 0, 1, 26, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const PING_FRAME: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 2, 13, 2, 0, 0];

#[test]
fn split_frame_partial_header() {
    for n in 0..HEADER_LEN {
        let mut buf = BytesMut::from(&SYNC_FRAME[..n]);
        assert_eq!(split_frame(&mut buf, MAX_CLIENT_BODY).unwrap(), None);
        assert_eq!(&buf[..], &SYNC_FRAME[..n], "buffer untouched");
    }
}

#[test]
fn split_frame_partial_body() {
    for n in HEADER_LEN..SYNC_FRAME.len() {
        let mut buf = BytesMut::from(&SYNC_FRAME[..n]);
        assert_eq!(split_frame(&mut buf, MAX_CLIENT_BODY).unwrap(), None);
        assert_eq!(&buf[..], &SYNC_FRAME[..n], "buffer untouched");
    }
    let mut buf = BytesMut::from(&SYNC_FRAME[..]);
    let f = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            seq: 1,
            cmd: 26,
            version: 2,
            flag: 0,
            body: b(&[0, 0, 0, 0, 0, 0, 0, 7])
        }
    );
    assert!(buf.is_empty());
    assert_eq!(Message::decode_client(&f).unwrap(), Message::Sync(7));
}

#[test]
fn split_frame_two_frames_back_to_back() {
    let stream = cat(&[&SYNC_FRAME, &PING_FRAME, &SYNC_FRAME[..5]]);
    let mut buf = BytesMut::from(&stream[..]);
    let f1 = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!((f1.cmd, f1.seq, f1.body.len()), (26, 1, 8));
    let f2 = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!((f2.cmd, f2.seq, f2.body.len()), (13, 2, 0));
    assert_eq!(split_frame(&mut buf, MAX_CLIENT_BODY).unwrap(), None);
    assert_eq!(&buf[..], &SYNC_FRAME[..5]);
    // Completing the third frame yields it.
    buf.extend_from_slice(&SYNC_FRAME[5..]);
    let f3 = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!(f3, f1);
    assert!(buf.is_empty());
}

#[test]
fn split_frame_oversize_header_error_before_body() {
    // Only the 12 header bytes have arrived; the 32768-byte body never will.
    let mut buf = BytesMut::from(&[0, 0, 0x80, 0x00, 0, 0, 0, 1, 4, 2, 0, 0][..]);
    assert_eq!(
        split_frame(&mut buf, MAX_CLIENT_BODY).unwrap_err(),
        ProtocolError::BadLength {
            len: 32768,
            max: MAX_CLIENT_BODY
        }
    );
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1, 4, 2, 0, 0][..]);
    assert_eq!(
        split_frame(&mut buf, MAX_CLIENT_BODY).unwrap_err(),
        ProtocolError::BadLength {
            len: -16,
            max: MAX_CLIENT_BODY
        }
    );
    // A huge claimed length errors immediately (no attempt to wait for it).
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 4, 2, 0, 0][..]);
    assert!(split_frame(&mut buf, MAX_LINK_BODY).is_err());
    // The same 32768 header on a link waits for the body.
    let mut buf = BytesMut::from(&[0, 0, 0x80, 0x00, 0, 0, 0, 1, 132, 0, 0, 0][..]);
    assert_eq!(split_frame(&mut buf, MAX_LINK_BODY).unwrap(), None);
    assert_eq!(buf.len(), 12);
}

#[test]
fn split_frame_max_client_body_exactly() {
    let mut raw = vec![0, 0, 0x7f, 0xff, 0, 0, 0, 1, 4, 2, 0, 0];
    raw.extend(std::iter::repeat_n(0xaa, 32767));
    let mut buf = BytesMut::from(&raw[..]);
    let f = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!(f.body.len(), 32767);
    assert!(buf.is_empty());
}

#[test]
fn frame_codec_decodes_stream() {
    let stream = cat(&[&PING_FRAME, &SYNC_FRAME]);
    let mut codec = FrameCodec::new(MAX_CLIENT_BODY);
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap().cmd, PING);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap().cmd, SYNC);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    let mut bad = BytesMut::from(&[0, 0, 0x80, 0x00, 0, 0, 0, 1, 4, 2, 0, 0][..]);
    assert!(codec.decode(&mut bad).is_err());
}

// ───────────────────────────── link: HELLO ─────────────────────────────

#[test]
fn link_hello() {
    assert_eq!(link::HELLO, 128);
    assert_eq!(LINK_MAGIC, [b'F', b'R', b'R', b'Y']);
    assert_eq!(LINK_VERSION, 4);
    let body = [b'F', b'R', b'R', b'Y', 0, 1, 0, 3, b'a', b'b', b'c'];
    let h = Hello {
        version: 1,
        secret: b(b"abc"),
        name: Bytes::new(),
    };
    assert_eq!(&h.encode()[..], &body);
    assert_eq!(Hello::decode(b(&body)).unwrap(), h);
    // Version 4: the im's node name follows the secret.
    let named = Hello {
        version: 4,
        secret: Bytes::new(),
        name: b(b"n1"),
    };
    let body4 = [b'F', b'R', b'R', b'Y', 0, 4, 0, 0, 0, 2, b'n', b'1'];
    assert_eq!(&named.encode()[..], &body4);
    assert_eq!(Hello::decode(b(&body4)).unwrap(), named);
    // Version is a BE u16.
    let h2 = Hello::decode(b(&[b'F', b'R', b'R', b'Y', 0x01, 0x02, 0, 0])).unwrap();
    assert_eq!(h2.version, 0x0102);
    assert!(h2.secret.is_empty());
    // Bad magic.
    assert!(matches!(
        Hello::decode(b(&[b'G', b'R', b'R', b'Y', 0, 1, 0, 0])).unwrap_err(),
        ProtocolError::Link(_)
    ));
    // Shorter than 8 bytes.
    assert!(Hello::decode(b(&body[..7])).is_err());
    // secret_len beyond the body.
    assert_eq!(
        Hello::decode(b(&[b'F', b'R', b'R', b'Y', 0, 1, 0, 4, b'a', b'b', b'c'])).unwrap_err(),
        ProtocolError::BadInnerLength(link::HELLO)
    );
    assert!(Hello::decode(b(&[b'F', b'R', b'R', b'Y', 0, 1, 0xff, 0xff])).is_err());
}

// ───────────────────────────── link: (UN)SUBSCRIBE, rooms ─────────────────────────────

#[test]
fn link_subscribe() {
    assert_eq!((link::SUBSCRIBE, link::UNSUBSCRIBE), (130, 131));
    let on = cat(&[&A8B, &B8B, &[1]]);
    let off = cat(&[&A8B, &B8B, &[0]]);
    assert_eq!(on.len(), 17);
    let s = Subscribe {
        appid: A8,
        uid: B8,
        online: true,
    };
    assert_eq!(&s.encode()[..], &on[..]);
    assert_eq!(Subscribe::decode(b(&on)).unwrap(), s);
    let s0 = Subscribe { online: false, ..s };
    assert_eq!(&s0.encode()[..], &off[..]);
    assert_eq!(Subscribe::decode(b(&off)).unwrap(), s0);
    // Any non-zero byte means online.
    assert!(
        Subscribe::decode(b(&cat(&[&A8B, &B8B, &[2]])))
            .unwrap()
            .online
    );
    // 16 bytes (no online byte) is too short.
    assert_eq!(
        Subscribe::decode(b(&on[..16])).unwrap_err(),
        ProtocolError::Truncated {
            cmd: 130,
            need: 17,
            got: 16
        }
    );
}

#[test]
fn link_unsubscribe() {
    let body = cat(&[&A8B, &B8B]);
    let u = Unsubscribe { appid: A8, uid: B8 };
    assert_eq!(&u.encode()[..], &body[..]);
    assert_eq!(Unsubscribe::decode(b(&body)).unwrap(), u);
    assert_eq!(
        Unsubscribe::decode(b(&body[..15])).unwrap_err(),
        ProtocolError::Truncated {
            cmd: 131,
            need: 16,
            got: 15
        }
    );
}

#[test]
fn link_room_subscription() {
    assert_eq!((link::SUBSCRIBE_ROOM, link::UNSUBSCRIBE_ROOM), (136, 137));
    let body = cat(&[&A8B, &B8B]);
    let r = RoomSubscription {
        appid: A8,
        room_id: B8,
    };
    assert_eq!(&r.encode()[..], &body[..]);
    for cmd in [link::SUBSCRIBE_ROOM, link::UNSUBSCRIBE_ROOM] {
        assert_eq!(RoomSubscription::decode(cmd, b(&body)).unwrap(), r);
        assert_eq!(
            RoomSubscription::decode(cmd, b(&body[..15])).unwrap_err(),
            ProtocolError::Truncated {
                cmd,
                need: 16,
                got: 15
            }
        );
    }
}

// ───────────────────────────── link: RouteMessage ─────────────────────────────

/// A complete IM frame (v2, flag PUSH) as embedded in route and push bodies.
fn embedded_im_frame() -> Vec<u8> {
    cat(&[&[0, 0, 0, 26, 0, 0, 0, 0, 4, 2, 0x10, 0], &im_v1_body()])
}

fn sample_route(msg: Bytes) -> RouteMessage {
    RouteMessage {
        appid: 7,
        receiver: A8,
        msgid: B8,
        prev_msgid: 0x0a0b_0c0d_0e0f_1011,
        device_id: 0,
        timestamp: -2,
        msg,
    }
}

#[test]
fn link_route_message_ferry_layout() {
    assert_eq!(
        (link::PUBLISH, link::PUBLISH_GROUP, link::PUBLISH_ROOM),
        (132, 135, 138)
    );
    let frame = embedded_im_frame();
    assert_eq!(frame.len(), 38);
    let body = cat(&[
        &[0, 0, 0, 0, 0, 0, 0, 7],                         // appid
        &A8B,                                              // receiver
        &B8B,                                              // msgid
        &[0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11], // prev_msgid
        &[0; 8],                                           // device_id
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], // timestamp
        &[0, 0, 0, 38],                                    // msg_len u32
        &frame,
    ]);
    assert_eq!(body.len(), 52 + 38);
    let r = sample_route(b(&frame));
    assert_eq!(&r.encode()[..], &body[..]);
    for cmd in [link::PUBLISH, link::PUBLISH_GROUP, link::PUBLISH_ROOM] {
        assert_eq!(RouteMessage::decode(cmd, b(&body)).unwrap(), r);
    }
    // The embedded frame parses as a normal frame.
    let mut buf = BytesMut::from(&r.msg[..]);
    let f = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap().unwrap();
    assert_eq!(
        Message::decode(f.cmd, f.version, f.body).unwrap(),
        Message::Im(sample_im())
    );
    // Empty embedded frame: 52 bytes exactly.
    assert!(
        RouteMessage::decode(
            132,
            b(&body[..48]
                .iter()
                .copied()
                .chain([0, 0, 0, 0])
                .collect::<Vec<_>>())
        )
        .unwrap()
        .msg
        .is_empty()
    );
    // < 52 rejected.
    assert_eq!(
        RouteMessage::decode(132, b(&body[..51])).unwrap_err(),
        ProtocolError::Truncated {
            cmd: 132,
            need: 52,
            got: 51
        }
    );
    // msg_len beyond the body.
    let mut bad = body.clone();
    bad[51] = 39;
    assert_eq!(
        RouteMessage::decode(132, b(&bad)).unwrap_err(),
        ProtocolError::BadInnerLength(132)
    );
    let mut bad = body.clone();
    bad[48..52].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert!(RouteMessage::decode(132, b(&bad)).is_err());
}

#[test]
fn link_route_message_legacy_layout() {
    let frame = embedded_im_frame();
    let body = cat(&[
        &[0, 0, 0, 0, 0, 0, 0, 7],                         // appid
        &A8B,                                              // receiver
        &B8B,                                              // msgid
        &[0; 8],                                           // device_id
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], // timestamp (ns)
        &[0, 38],                                          // msg_len i16
        &frame,
    ]);
    assert_eq!(body.len(), 42 + 38);
    let r = sample_route(b(&frame));
    // prev_msgid is not on the legacy wire.
    assert_eq!(&r.encode_legacy().unwrap()[..], &body[..]);
    let back = RouteMessage::decode_legacy(132, b(&body)).unwrap();
    assert_eq!(back, RouteMessage { prev_msgid: 0, ..r });
    // < 42 rejected.
    assert_eq!(
        RouteMessage::decode_legacy(135, b(&body[..41])).unwrap_err(),
        ProtocolError::Truncated {
            cmd: 135,
            need: 42,
            got: 41
        }
    );
    // Negative msg_len rejected, even when the body is long enough for |len|.
    for neg in [[0xff, 0xff], [0x80, 0x00], [0xff, 0xd9]] {
        let mut bad = body.clone();
        bad[40..42].copy_from_slice(&neg);
        assert_eq!(
            RouteMessage::decode_legacy(132, b(&bad)).unwrap_err(),
            ProtocolError::BadInnerLength(132)
        );
    }
    // msg_len beyond the body.
    let mut bad = body.clone();
    bad[41] = 39;
    assert_eq!(
        RouteMessage::decode_legacy(132, b(&bad)).unwrap_err(),
        ProtocolError::BadInnerLength(132)
    );
}

#[test]
fn link_route_message_large_embedded_frame() {
    // A 32 KiB embedded frame (§4.6): does not fit gobelieve's i16 msg_len...
    let mut big = vec![0, 0, 0x7f, 0xf4, 0, 0, 0, 1, 4, 2, 0, 0];
    big.extend(std::iter::repeat_n(0x5a, 32756));
    assert_eq!(big.len(), 32768);
    let r = sample_route(b(&big));
    assert!(matches!(
        r.encode_legacy().unwrap_err(),
        ProtocolError::Link(_)
    ));
    // ...but crosses fine in the Ferry layout with its u32 length.
    let e = r.encode();
    assert_eq!(e.len(), 52 + 32768);
    assert_eq!(&e[48..52], &[0, 0, 0x80, 0x00]);
    assert_eq!(RouteMessage::decode(132, e).unwrap(), r);
    // The largest legacy frame, 32767 bytes, still encodes: msg_len 0x7fff.
    let r = sample_route(b(&big[..32767]));
    let e = r.encode_legacy().unwrap();
    assert_eq!(&e[40..42], &[0x7f, 0xff]);
    assert_eq!(
        RouteMessage::decode_legacy(132, e).unwrap().msg.len(),
        32767
    );
}

// ───────────────────────────── link: BatchPush ─────────────────────────────

#[test]
fn link_batch_push_ferry_layout() {
    assert_eq!(link::PUSH, 134);
    let frame = embedded_im_frame();
    let body = cat(&[
        &[0, 0, 0, 0, 0, 0, 0, 7], // appid
        &[0, 0, 0, 2],             // count u32
        &A8B,
        &B8B,
        &[0, 0, 0, 38], // msg_len u32
        &frame,
    ]);
    let p = BatchPush {
        appid: 7,
        receivers: vec![A8, B8],
        msg: b(&frame),
    };
    assert_eq!(&p.encode()[..], &body[..]);
    assert_eq!(BatchPush::decode(b(&body)).unwrap(), p);
    // No receivers, empty frame: 16 bytes.
    let empty = [0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0];
    let e = BatchPush::decode(b(&empty)).unwrap();
    assert!(e.receivers.is_empty() && e.msg.is_empty());
    assert!(BatchPush::decode(b(&empty[..15])).is_err());
    // count larger than the body: error, no allocation of count×8 bytes.
    let huge = [0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    assert_eq!(
        BatchPush::decode(b(&huge)).unwrap_err(),
        ProtocolError::BadInnerLength(134)
    );
    let mut bad = body.clone();
    bad[11] = 3; // three receivers claimed, two present (+ len + frame bytes)
    assert!(BatchPush::decode(b(&bad[..12 + 16 + 4])).is_err());
    // msg_len beyond the body.
    let mut bad = body.clone();
    bad[31] = 39;
    assert_eq!(
        BatchPush::decode(b(&bad)).unwrap_err(),
        ProtocolError::BadInnerLength(134)
    );
}

#[test]
fn link_batch_push_legacy_layout() {
    let frame = embedded_im_frame();
    let body = cat(&[
        &[0, 0, 0, 0, 0, 0, 0, 7], // appid
        &[0, 2],                   // count u16
        &A8B,
        &B8B,
        &[0, 38], // msg_len i16
        &frame,
    ]);
    let p = BatchPush {
        appid: 7,
        receivers: vec![A8, B8],
        msg: b(&frame),
    };
    assert_eq!(&p.encode_legacy().unwrap()[..], &body[..]);
    assert_eq!(BatchPush::decode_legacy(b(&body)).unwrap(), p);
    // Min 12.
    let empty = [0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0];
    assert!(
        BatchPush::decode_legacy(b(&empty))
            .unwrap()
            .receivers
            .is_empty()
    );
    assert!(BatchPush::decode_legacy(b(&empty[..11])).is_err());
    // count larger than the body.
    let huge = [0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 0, 0];
    assert_eq!(
        BatchPush::decode_legacy(b(&huge)).unwrap_err(),
        ProtocolError::BadInnerLength(134)
    );
    // Negative msg_len.
    let mut bad = body.clone();
    bad[26..28].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        BatchPush::decode_legacy(b(&bad)).unwrap_err(),
        ProtocolError::BadInnerLength(134)
    );
    // Too many receivers / too large a frame for the legacy widths.
    let many = BatchPush {
        appid: 1,
        receivers: vec![1; 65536],
        msg: Bytes::new(),
    };
    assert!(many.encode_legacy().is_err());
    let e = BatchPush {
        receivers: vec![1; 65535],
        ..many
    }
    .encode_legacy()
    .unwrap();
    assert_eq!(&e[8..10], &[0xff, 0xff]);
    let big = BatchPush {
        appid: 1,
        receivers: vec![2],
        msg: Bytes::from(vec![0u8; 32768]),
    };
    assert!(big.encode_legacy().is_err());
    let e = big.encode();
    assert_eq!(&e[8..12], &[0, 0, 0, 1]);
    assert_eq!(&e[20..24], &[0, 0, 0x80, 0]);
    assert_eq!(BatchPush::decode(e).unwrap(), big);
}
