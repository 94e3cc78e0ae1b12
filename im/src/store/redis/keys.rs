//! Key names and the binary layout of queue members.

use crate::store::{DedupKey, NewEntry, QueueId, StoredMessage};
use bytes::Bytes;

/// Bytes before the body in a queue member: id i64 BE, timestamp i64 BE
/// (unix ms), cmd u8, flag u8, device i64 BE.
pub(super) const MEMBER_HEADER: usize = 8 + 8 + 1 + 1 + 8;

/// Names of the keys of one queue. They all carry the hash tag
/// `{<appid>:<uid>}`, so one script or pipeline over them stays in one
/// Redis Cluster slot.
pub(super) struct QueueKeys {
    /// Common start `<prefix>:{<appid>:<uid>}:`.
    base: String,
}

impl QueueKeys {
    pub(super) fn new(prefix: &str, queue: QueueId) -> Self {
        QueueKeys {
            base: format!("{prefix}:{{{}:{}}}:", queue.appid, queue.uid),
        }
    }

    /// ZSET of messages: score = id, member = [`encode_tail`] behind the id.
    pub(super) fn queue(&self) -> String {
        format!("{}q", self.base)
    }

    /// HASH: `head` (newest id), `sync_key`, `gsk:<gid>`.
    pub(super) fn meta(&self) -> String {
        format!("{}meta", self.base)
    }

    /// STRING holding the first id a request placed in this queue.
    pub(super) fn dedup(&self, id: &DedupId) -> String {
        match id {
            DedupId::Client(k) => format!(
                "{}d:{}:{}:{}:{}:{}",
                self.base, k.appid, k.sender, k.device_id, k.client_msgid, k.receiver
            ),
            DedupId::Request(hex) => format!("{}d:r:{hex}", self.base),
        }
    }
}

/// Field of the meta hash holding the super-group sync key of `gid`.
pub(super) fn group_sync_field(gid: i64) -> String {
    format!("gsk:{gid}")
}

/// Field of the meta hash holding the newest id.
pub(super) const HEAD_FIELD: &str = "head";
/// Field of the meta hash holding the personal sync key.
pub(super) const SYNC_KEY_FIELD: &str = "sync_key";

/// gobelieve's device-number key (shared with `--auth redis`).
pub(super) fn device_key(device_id: &str, platform: u8) -> String {
    format!("devices_{device_id}_{platform}")
}

/// gobelieve's device-number counter.
pub(super) const DEVICE_COUNTER: &str = "devices_id";

/// Identity under which a request's write to one queue is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DedupId {
    /// The client's own key: a resend finds the original ids.
    Client(DedupKey),
    /// Random id of one `append` call (no client key): only that call's
    /// internal retries ever see it.
    Request(String),
}

/// A member without its leading id (the script prepends the id it assigns).
pub(super) fn encode_tail(entry: &NewEntry, ts_ms: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(MEMBER_HEADER - 8 + entry.body.len());
    v.extend_from_slice(&ts_ms.to_be_bytes());
    v.push(entry.cmd);
    v.push(entry.flag);
    v.extend_from_slice(&entry.device_id.to_be_bytes());
    v.extend_from_slice(&entry.body);
    v
}

/// Decodes a full member; `None` if it is too short to be one.
pub(super) fn decode_member(member: Vec<u8>) -> Option<StoredMessage> {
    if member.len() < MEMBER_HEADER {
        return None;
    }
    let be = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&member[at..at + 8]);
        i64::from_be_bytes(b)
    };
    let msgid = be(0);
    let cmd = member[16];
    let flag = member[17];
    let device_id = be(18);
    Some(StoredMessage {
        msgid,
        cmd,
        flag,
        device_id,
        body: Bytes::from(member).slice(MEMBER_HEADER..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_share_the_queue_hash_tag() {
        let k = QueueKeys::new("ferry", QueueId { appid: 7, uid: 100 });
        assert_eq!(k.queue(), "ferry:{7:100}:q");
        assert_eq!(k.meta(), "ferry:{7:100}:meta");
        let d = DedupId::Client(DedupKey {
            appid: 7,
            sender: 100,
            device_id: 3,
            client_msgid: 42,
            receiver: 200,
        });
        assert_eq!(k.dedup(&d), "ferry:{7:100}:d:7:100:3:42:200");
        assert_eq!(
            k.dedup(&DedupId::Request("ab01".into())),
            "ferry:{7:100}:d:r:ab01"
        );
        assert_eq!(group_sync_field(5), "gsk:5");
        assert_eq!(device_key("phone", 1), "devices_phone_1");
    }

    #[test]
    fn member_roundtrip_and_short_members_are_refused() {
        let entry = NewEntry {
            queue: QueueId { appid: 1, uid: 2 },
            cmd: 4,
            flag: 1,
            device_id: -9,
            body: Bytes::from_static(b"\0hi\xff"),
        };
        let mut member = 77i64.to_be_bytes().to_vec();
        member.extend(encode_tail(&entry, 1_700_000_000_000));
        assert_eq!(member.len(), MEMBER_HEADER + 4);
        assert_eq!(
            decode_member(member),
            Some(StoredMessage {
                msgid: 77,
                cmd: 4,
                flag: 1,
                device_id: -9,
                body: Bytes::from_static(b"\0hi\xff"),
            })
        );
        assert_eq!(decode_member(vec![0; MEMBER_HEADER - 1]), None);
        assert!(decode_member(vec![0; MEMBER_HEADER]).is_some());
    }
}
