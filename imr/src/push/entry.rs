//! Offline push entries (spec §3.12): which Redis list, and the exact JSON
//! gobelieve writes there.
//!
//! | list | embedded frame | JSON |
//! |---|---|---|
//! | `push_queue` | IM | `appid, content, receiver, sender` (one per offline receiver) |
//! | `group_push_queue` | GROUP_IM | `appid, content, group_id, receivers, sender` (one per request) |
//! | `system_push_queue` | SYSTEM | `appid, content, receiver` (one per offline receiver) |
//! | `customer_push_queue_v2` | CUSTOMER_V2 | `appid (= receiver_appid), content, receiver, receiver_appid, sender, sender_appid` |
//!
//! For IM and CUSTOMER_V2 gobelieve writes one entry taking `receiver` from
//! the message; the im always sends exactly that receiver, and Ferry writes
//! one entry per offline receiver in the request (the same thing then).

use super::json::Object;
use ferry_common::link::MAX_LINK_BODY;
use ferry_common::protocol::{HEADER_LEN, Header, Message};

pub const PUSH_QUEUE: &str = "push_queue";
pub const GROUP_PUSH_QUEUE: &str = "group_push_queue";
pub const SYSTEM_PUSH_QUEUE: &str = "system_push_queue";
pub const CUSTOMER_PUSH_QUEUE: &str = "customer_push_queue_v2";

/// One element to RPUSH onto `queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    pub queue: &'static str,
    pub json: String,
}

/// Why a PUSH request's embedded frame produced no entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("embedded frame: {0}")]
    Frame(String),
    #[error("embedded frame length {header} does not match the {actual} bytes present")]
    Length { header: usize, actual: usize },
    #[error("command {0} has no offline push")]
    NotPushable(u8),
}

/// Builds the entries for `offline` receivers of `msg` (a complete frame:
/// 12-byte header + body, normally at version 2).
pub fn build(appid: i64, offline: &[i64], msg: &[u8]) -> Result<Vec<PushEntry>, EntryError> {
    let head: &[u8; HEADER_LEN] = msg
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| EntryError::Frame(format!("{} bytes, shorter than a header", msg.len())))?;
    let header =
        Header::parse(head, MAX_LINK_BODY).map_err(|e| EntryError::Frame(e.to_string()))?;
    let actual = msg.len() - HEADER_LEN;
    if header.len != actual {
        return Err(EntryError::Length {
            header: header.len,
            actual,
        });
    }
    let body = bytes::Bytes::copy_from_slice(&msg[HEADER_LEN..]);
    let m = Message::decode(header.cmd, header.version, body)
        .map_err(|e| EntryError::Frame(e.to_string()))?;
    if offline.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match m {
        Message::Im(im) => offline
            .iter()
            .map(|&receiver| PushEntry {
                queue: PUSH_QUEUE,
                json: Object::new()
                    .int("appid", appid)
                    .bytes("content", &im.content)
                    .int("receiver", receiver)
                    .int("sender", im.sender)
                    .finish(),
            })
            .collect(),
        Message::GroupIm(im) => vec![PushEntry {
            queue: GROUP_PUSH_QUEUE,
            json: Object::new()
                .int("appid", appid)
                .bytes("content", &im.content)
                .int("group_id", im.receiver)
                .ints("receivers", offline)
                .int("sender", im.sender)
                .finish(),
        }],
        Message::System(content) => offline
            .iter()
            .map(|&receiver| PushEntry {
                queue: SYSTEM_PUSH_QUEUE,
                json: Object::new()
                    .int("appid", appid)
                    .bytes("content", &content)
                    .int("receiver", receiver)
                    .finish(),
            })
            .collect(),
        Message::CustomerV2(c) => offline
            .iter()
            .map(|&receiver| PushEntry {
                queue: CUSTOMER_PUSH_QUEUE,
                json: Object::new()
                    .int("appid", c.receiver_appid)
                    .bytes("content", &c.content)
                    .int("receiver", receiver)
                    .int("receiver_appid", c.receiver_appid)
                    .int("sender", c.sender)
                    .int("sender_appid", c.sender_appid)
                    .finish(),
            })
            .collect(),
        other => return Err(EntryError::NotPushable(other.cmd())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_common::protocol::customer::CustomerV2;
    use ferry_common::protocol::im::Im;

    fn frame(m: &Message, version: u8) -> Bytes {
        m.to_frame(0, version, 0).to_bytes()
    }

    fn im(sender: i64, receiver: i64, content: &str) -> Im {
        Im {
            sender,
            receiver,
            timestamp: 1_700_000_000,
            msgid: 3,
            content: Bytes::copy_from_slice(content.as_bytes()),
        }
    }

    #[test]
    fn peer_message() {
        let f = frame(&Message::Im(im(1, 2, "{\"text\":\"hello\"}")), 2);
        let e = build(7, &[2], &f).expect("entries");
        assert_eq!(
            e,
            vec![PushEntry {
                queue: "push_queue",
                json: r#"{"appid":7,"content":"{\"text\":\"hello\"}","receiver":2,"sender":1}"#
                    .into()
            }]
        );
    }

    #[test]
    fn peer_message_at_version_1_and_0() {
        for v in [0u8, 1] {
            let f = frame(&Message::Im(im(1, 2, "x")), v);
            let e = build(7, &[2], &f).expect("entries");
            assert_eq!(
                e[0].json,
                r#"{"appid":7,"content":"x","receiver":2,"sender":1}"#
            );
        }
    }

    #[test]
    fn group_message_lists_offline_receivers() {
        let f = frame(&Message::GroupIm(im(1, 900, "hi <all> & you")), 2);
        let e = build(7, &[3, 4, 5], &f).expect("entries");
        assert_eq!(
            e,
            vec![PushEntry {
                queue: "group_push_queue",
                json: r#"{"appid":7,"content":"hi \u003call\u003e \u0026 you","group_id":900,"receivers":[3,4,5],"sender":1}"#
                    .into()
            }]
        );
    }

    #[test]
    fn system_message_one_entry_per_receiver() {
        let f = frame(&Message::System(Bytes::from_static(b"sys")), 2);
        let e = build(7, &[3, 4], &f).expect("entries");
        assert_eq!(
            e,
            vec![
                PushEntry {
                    queue: "system_push_queue",
                    json: r#"{"appid":7,"content":"sys","receiver":3}"#.into()
                },
                PushEntry {
                    queue: "system_push_queue",
                    json: r#"{"appid":7,"content":"sys","receiver":4}"#.into()
                },
            ]
        );
    }

    #[test]
    fn customer_message_uses_receiver_appid() {
        let c = CustomerV2 {
            sender_appid: 11,
            sender: 12,
            receiver_appid: 13,
            receiver: 14,
            timestamp: 5,
            content: Bytes::from_static(b"q"),
        };
        let f = frame(&Message::CustomerV2(c), 2);
        let e = build(13, &[14], &f).expect("entries");
        assert_eq!(
            e,
            vec![PushEntry {
                queue: "customer_push_queue_v2",
                json: r#"{"appid":13,"content":"q","receiver":14,"receiver_appid":13,"sender":12,"sender_appid":11}"#
                    .into()
            }]
        );
    }

    #[test]
    fn nobody_offline_means_no_entries() {
        let f = frame(&Message::Im(im(1, 2, "x")), 2);
        assert_eq!(build(7, &[], &f), Ok(vec![]));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(build(7, &[1], b""), Err(EntryError::Frame(_))));
        assert!(matches!(
            build(7, &[1], &[0u8; 11]),
            Err(EntryError::Frame(_))
        ));
        let f = frame(&Message::Im(im(1, 2, "xyz")), 2);
        assert!(matches!(
            build(7, &[1], &f[..f.len() - 1]),
            Err(EntryError::Length { .. })
        ));
        let mut long = f.to_vec();
        long.push(0);
        assert!(matches!(
            build(7, &[1], &long),
            Err(EntryError::Length { .. })
        ));
        // IM body too short for its version.
        let short = Message::System(Bytes::from_static(b"abc")).to_frame(0, 2, 0);
        let short = ferry_common::protocol::Frame::new(4, 2, 0, 0, short.body).to_bytes();
        assert!(matches!(build(7, &[1], &short), Err(EntryError::Frame(_))));
        let rt = frame(&Message::Sync(1), 2);
        assert_eq!(build(7, &[1], &rt), Err(EntryError::NotPushable(26)));
        // Negative length in the header.
        let mut neg = f.to_vec();
        neg[0] = 0xff;
        assert!(matches!(build(7, &[1], &neg), Err(EntryError::Frame(_))));
    }
}
