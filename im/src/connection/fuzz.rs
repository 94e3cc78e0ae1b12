//! Mutation fuzzing of the server's own frame splitter ([`parse_frames`]):
//! on any byte stream, fed in any chunking, it never panics, yields exactly
//! the frames `split_frame` yields, rejects a bad header or a command clients
//! may not send, and keeps only an incomplete trailing frame. Engine and case
//! count (`FERRY_FUZZ_CASES`) shared with `common/tests/fuzz_decoders.rs`.

use ferry_testkit::fuzz as fuzz_engine;

use super::read::parse_frames;
use bytes::BytesMut;
use ferry_common::protocol::command::client_may_send;
use ferry_common::protocol::{HEADER_LEN, MAX_CLIENT_BODY, Message, ProtocolError, split_frame};

fn corpus() -> Vec<Vec<u8>> {
    let frames = [
        Message::Ping,
        Message::Sync(5),
        Message::EnterRoom(3),
        Message::SyncKey(9),
        Message::AuthStatus(0),
        Message::UnreadCount(1),
    ];
    let mut c = Vec::new();
    for i in 0..frames.len() {
        let mut b = BytesMut::new();
        for (k, m) in frames[i..].iter().enumerate() {
            m.to_frame(k as i32, 2, 0).write_to(&mut b);
        }
        // First byte: chunk size for feeding.
        c.push([vec![i as u8 * 7 + 1], b.to_vec()].concat());
    }
    c
}

/// What `split_frame` plus the command check says about the whole stream.
fn reference(raw: &[u8]) -> (usize, Option<ProtocolError>) {
    let mut b = BytesMut::from(raw);
    let mut n = 0;
    loop {
        if b.len() >= HEADER_LEN && !client_may_send(b[8]) {
            // The length is checked first.
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&b[..HEADER_LEN]);
            return match ferry_common::protocol::Header::parse(&h, MAX_CLIENT_BODY) {
                Err(e) => (n, Some(e)),
                Ok(_) => (n, Some(ProtocolError::NotAllowed(b[8]))),
            };
        }
        match split_frame(&mut b, MAX_CLIENT_BODY) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e)),
        }
    }
}

fn target(input: &[u8]) {
    let Some((&chunk, raw)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(chunk.max(1));
    let (want_frames, want_err) = reference(raw);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut err = None;
    for piece in raw.chunks(chunk) {
        buf.extend_from_slice(piece);
        if let Err(e) = parse_frames(&mut buf, &mut out) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(out.len(), want_frames);
    assert_eq!(err, want_err);
    if err.is_none() {
        let used: usize = out.iter().map(|f| HEADER_LEN + f.body.len()).sum();
        assert_eq!(buf.len(), raw.len() - used);
        assert!(buf.len() < HEADER_LEN + MAX_CLIENT_BODY);
    }
}

#[test]
fn fuzz_parse_frames() {
    fuzz_engine::run("parse_frames", &corpus(), target);
}
