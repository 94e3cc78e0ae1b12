//! The fan-out log: an append that spans several queues (a group message to
//! every member) is written by one script per queue, and those cannot share
//! a transaction. If the node dies between them, some queues have the
//! message and others never will — unless the client resends it. So before
//! the per-queue writes start, the whole request is recorded here (one
//! `HSET`); once every queue has answered the record is deleted.
//!
//! A peer message (the receiver's copy and the sender's) is not logged: its
//! two writes are sent together, and an unacknowledged message is the
//! client's to resend, as with gobelieve. Logging it cost a fifth of the
//! peer throughput on one Redis (16.5k → 13.3k msgs/s: two more commands
//! per message on a CPU-bound Redis). [`RedisStore::recover_fanouts`] (run by every im
//! node every few seconds) redoes records older than [`LEASE`]: every
//! per-queue write is idempotent under the request's dedup identity, so a
//! redo — or a redo racing the client's resend, or two nodes redoing the
//! same record — writes each queue exactly once.
//!
//! Records are spread over [`SHARDS`] hashes, each under its own hash tag,
//! so on Redis Cluster they do not all land on one node. A record whose
//! per-queue dedup records may already have expired (older than the dedup
//! window) cannot be redone safely; it is dropped with an error log.
//!
//! [`RedisStore::recover_fanouts`]: super::RedisStore::recover_fanouts

use super::keys::DedupId;
use crate::store::{DedupKey, NewEntry, QueueId};
use bytes::{Buf, BufMut, Bytes};
use std::collections::HashMap;
use std::time::Duration;

/// Requests spanning at least this many queues are logged (see above).
pub(super) const MIN_QUEUES: usize = 3;

/// Hashes the records are spread over.
pub(super) const SHARDS: u64 = 16;

/// Age after which a record is taken for interrupted: far above the longest
/// append (bounded by `op_timeout`, 5 s by default).
pub const LEASE: Duration = Duration::from_secs(30);

/// Layout version, first byte of every record (1: before the tag).
const VERSION: u8 = 2;

/// A decoded record: everything needed to redo the request's writes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    pub dedup: DedupId,
    /// The request's record tag (digest and origin, see the append script);
    /// empty for records of version 1.
    pub tag: String,
    /// Timestamp (unix ms) the original call gave its entries.
    pub ts: i64,
    pub entries: Vec<NewEntry>,
}

/// The hash holding `field`'s record.
pub(super) fn shard_key(prefix: &str, field: &str) -> String {
    // FNV-1a: stable across processes and builds (unlike `DefaultHasher`),
    // so every node looks for a record where it was written.
    let h = field.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    shard_key_n(prefix, h % SHARDS)
}

/// The name of shard `n`.
pub(super) fn shard_key_n(prefix: &str, n: u64) -> String {
    format!("{prefix}:{{fanout:{n}}}:log")
}

/// The record's field: the request's dedup identity.
pub(super) fn field(dedup: &DedupId) -> String {
    match dedup {
        DedupId::Client(k) => format!(
            "c:{}:{}:{}:{}:{}",
            k.appid, k.sender, k.device_id, k.client_msgid, k.receiver
        ),
        DedupId::Request(hex) => format!("r:{hex}"),
    }
}

/// Encodes a record. A body shared by many entries (a group message) is
/// stored once.
pub(super) fn encode(dedup: &DedupId, tag: &str, ts: i64, entries: &[NewEntry]) -> Vec<u8> {
    let mut bodies: Vec<&Bytes> = Vec::new();
    let mut index: HashMap<(usize, usize), u32> = HashMap::new();
    let mut refs = Vec::with_capacity(entries.len());
    for e in entries {
        let key = (e.body.as_ptr() as usize, e.body.len());
        let i = *index.entry(key).or_insert_with(|| {
            bodies.push(&e.body);
            (bodies.len() - 1) as u32
        });
        refs.push(i);
    }
    let mut out = Vec::with_capacity(64 + entries.len() * 34);
    out.put_u8(VERSION);
    out.put_i64(ts);
    match dedup {
        DedupId::Client(k) => {
            out.put_u8(0);
            for v in [k.appid, k.sender, k.device_id, k.client_msgid, k.receiver] {
                out.put_i64(v);
            }
        }
        DedupId::Request(hex) => {
            out.put_u8(1);
            out.put_u32(hex.len() as u32);
            out.put_slice(hex.as_bytes());
        }
    }
    out.put_u32(tag.len() as u32);
    out.put_slice(tag.as_bytes());
    out.put_u32(bodies.len() as u32);
    for b in bodies {
        out.put_u32(b.len() as u32);
        out.put_slice(b);
    }
    out.put_u32(entries.len() as u32);
    for (e, i) in entries.iter().zip(refs) {
        out.put_i64(e.queue.appid);
        out.put_i64(e.queue.uid);
        out.put_u8(e.cmd);
        out.put_u8(e.flag);
        out.put_i64(e.device_id);
        out.put_u32(i);
    }
    out
}

/// Decodes a record; `None` for anything malformed (never panics).
pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
    let mut b = bytes;
    let take = |b: &mut &[u8], n: usize| -> Option<Bytes> {
        if b.remaining() < n {
            return None;
        }
        let v = Bytes::copy_from_slice(&b[..n]);
        b.advance(n);
        Some(v)
    };
    if b.remaining() < 1 + 8 + 1 {
        return None;
    }
    let version = b.get_u8();
    if version != 1 && version != VERSION {
        return None;
    }
    let ts = b.get_i64();
    let dedup = match b.get_u8() {
        0 => {
            if b.remaining() < 40 {
                return None;
            }
            DedupId::Client(DedupKey {
                appid: b.get_i64(),
                sender: b.get_i64(),
                device_id: b.get_i64(),
                client_msgid: b.get_i64(),
                receiver: b.get_i64(),
            })
        }
        1 => {
            if b.remaining() < 4 {
                return None;
            }
            let n = b.get_u32() as usize;
            let hex = take(&mut b, n)?;
            DedupId::Request(String::from_utf8(hex.to_vec()).ok()?)
        }
        _ => return None,
    };
    let mut tag = String::new();
    if version == VERSION {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        tag = String::from_utf8(take(&mut b, n)?.to_vec()).ok()?;
    }
    if b.remaining() < 4 {
        return None;
    }
    let nbodies = b.get_u32() as usize;
    // Each body takes at least its 4-byte length: bounds the allocation.
    if nbodies > b.remaining() / 4 {
        return None;
    }
    let mut bodies = Vec::with_capacity(nbodies);
    for _ in 0..nbodies {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        bodies.push(take(&mut b, n)?);
    }
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    const ENTRY: usize = 8 + 8 + 1 + 1 + 8 + 4;
    if n == 0 || b.remaining() != n.checked_mul(ENTRY)? {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let queue = QueueId {
            appid: b.get_i64(),
            uid: b.get_i64(),
        };
        let cmd = b.get_u8();
        let flag = b.get_u8();
        let device_id = b.get_i64();
        let body = bodies.get(b.get_u32() as usize)?.clone();
        entries.push(NewEntry {
            queue,
            cmd,
            flag,
            device_id,
            body,
        });
    }
    Some(Record {
        dedup,
        tag,
        ts,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: i64, body: &Bytes) -> NewEntry {
        NewEntry {
            queue: QueueId { appid: 7, uid },
            cmd: 8,
            flag: 1,
            device_id: 3,
            body: body.clone(),
        }
    }

    #[test]
    fn roundtrip_stores_a_shared_body_once() {
        let body = Bytes::from(vec![42u8; 1000]);
        let entries: Vec<NewEntry> = (1..=100).map(|u| entry(u, &body)).collect();
        let dedup = DedupId::Client(DedupKey {
            appid: 7,
            sender: 1,
            device_id: 3,
            client_msgid: 9,
            receiver: -5,
        });
        let bytes = encode(&dedup, "2a|9|3", 1234, &entries);
        assert!(bytes.len() < 1000 + 100 * 40, "{} bytes", bytes.len());
        let r = decode(&bytes).expect("decodes");
        assert_eq!((r.ts, r.tag.as_str()), (1234, "2a|9|3"));
        assert_eq!(field(&r.dedup), field(&dedup));
        assert_eq!(r.entries, entries);

        let other = Bytes::from_static(b"sender copy");
        let mixed = vec![entry(1, &body), entry(2, &other)];
        let dedup = DedupId::Request("ab12".into());
        let r = decode(&encode(&dedup, "", -1, &mixed)).expect("decodes");
        assert_eq!(r.entries, mixed);
        assert_eq!(field(&r.dedup), "r:ab12");
    }

    #[test]
    fn malformed_records_are_refused_without_panicking() {
        let body = Bytes::from_static(b"x");
        let good = encode(
            &DedupId::Request("ff".into()),
            "1|2|3",
            1,
            &[entry(1, &body)],
        );
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_none(), "prefix of {n} bytes");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut bad_index = good.clone();
        let at = bad_index.len() - 4;
        bad_index[at..].copy_from_slice(&9u32.to_be_bytes());
        assert!(decode(&bad_index).is_none());
        let mut huge = good;
        huge[0] = VERSION + 1;
        assert!(decode(&huge).is_none());
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let a = shard_key("ferry", "c:7:1:3:9:2");
        assert_eq!(a, shard_key("ferry", "c:7:1:3:9:2"));
        let distinct: std::collections::HashSet<String> = (0..200)
            .map(|i| shard_key("ferry", &format!("c:7:1:3:{i}:2")))
            .collect();
        assert!(distinct.len() > SHARDS as usize / 2, "{distinct:?}");
        assert!(a.starts_with("ferry:{fanout:"));
    }
}
