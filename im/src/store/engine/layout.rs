//! Key and value encodings of the engine, and the store format version.
//!
//! * `Messages`: `appid | uid | id` → `cmd | flag | device_id | body`. A
//!   queue is one contiguous key range, oldest first, so a window is a range
//!   scan and the head is the last key of the queue's prefix;
//! * `Dedup`: `created_ms | batch` → every dedup record of one write batch
//!   (see [`super::dedup`]). Ordered by creation time, so expired batches are
//!   a prefix of the space and pruning is a range scan from a cursor; one
//!   write per batch instead of one per message;
//! * `Meta`: small records keyed by a tag byte: format version, the last
//!   allocated device number, device numbers, sync keys and group sync keys.
//!
//! Integers in keys use a compact order-preserving encoding (a code byte
//! giving sign and length, then the minimal big-endian bytes), so numeric
//! order (negative values included) is byte order, and a typical message key
//! (small appid, uid and id) fits the 20 bytes that fjall keeps inline in its
//! memtable nodes: comparing keys during an insert then touches no other
//! memory. The encoding is self-delimiting, so a queue's prefix never matches
//! another queue's keys.

use crate::store::{QueueId, StoreError};

/// Version of this layout, stored under [`META_FORMAT`]. Bump it (and say in
/// the README how to migrate) whenever an encoding changes.
///
/// * 1: one dedup record per message (Ferry before the queue engine);
/// * 2: one dedup record per batch.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// `meta` tags.
pub(crate) const META_FORMAT: [u8; 1] = [0x00];
pub(crate) const META_LAST_DEVICE: [u8; 1] = [0x01];
const META_DEVICE: u8 = 0x02;
const META_SYNC_KEY: u8 = 0x03;
const META_GROUP_SYNC_KEY: u8 = 0x04;

/// Longest encoded integer: code byte + 8 bytes.
const INT_MAX_LEN: usize = 9;

/// A key built on the stack (at most six encoded integers plus a tag).
#[derive(Clone, Copy)]
pub(crate) struct Key {
    buf: [u8; 1 + 6 * INT_MAX_LEN],
    len: usize,
}

impl Key {
    fn new() -> Self {
        Key {
            buf: [0; 1 + 6 * INT_MAX_LEN],
            len: 0,
        }
    }

    fn tag(mut self, tag: u8) -> Self {
        self.buf[self.len] = tag;
        self.len += 1;
        self
    }

    /// Appends `v` in the order-preserving encoding: `0x80` for zero,
    /// `0x80 + n` then `n` big-endian bytes for a positive value, `0x80 - n`
    /// then the `n`-byte ones' complement of the magnitude for a negative one.
    fn int(mut self, v: i64) -> Self {
        let magnitude = v.unsigned_abs();
        let n = 8 - (magnitude.leading_zeros() as usize / 8);
        let (code, bytes) = if v >= 0 {
            (0x80 + n as u8, magnitude.to_be_bytes())
        } else {
            (0x80 - n as u8, (!magnitude).to_be_bytes())
        };
        self.buf[self.len] = code;
        self.buf[self.len + 1..self.len + 1 + n].copy_from_slice(&bytes[8 - n..]);
        self.len += 1 + n;
        self
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

/// Reads one integer written by [`Key::int`] from the front of `input`.
fn take_int(input: &mut &[u8]) -> Option<i64> {
    let (&code, rest) = input.split_first()?;
    let (negative, n) = if code >= 0x80 {
        (false, usize::from(code - 0x80))
    } else {
        (true, usize::from(0x80 - code))
    };
    if n > 8 || rest.len() < n {
        return None;
    }
    let mut bytes = if negative { [0xff; 8] } else { [0; 8] };
    bytes[8 - n..].copy_from_slice(&rest[..n]);
    *input = &rest[n..];
    let raw = u64::from_be_bytes(bytes);
    if negative {
        // `!raw` is the magnitude, at most 2^63.
        let magnitude = !raw;
        if magnitude == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(raw).ok()
    }
}

/// Encodes a signed integer value (fixed 8 bytes; values are never compared).
pub(crate) fn value_int(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes an integer value, reporting corruption as an error.
pub(crate) fn dec_value(b: &[u8], what: &str) -> Result<i64, StoreError> {
    b.try_into()
        .map(i64::from_be_bytes)
        .map_err(|_| StoreError::Backend(format!("corrupt {what} record in store")))
}

/// Prefix shared by every message of one queue.
pub(crate) fn queue_prefix(queue: QueueId) -> Key {
    Key::new().int(queue.appid).int(queue.uid)
}

pub(crate) fn message_key(queue: QueueId, id: i64) -> Key {
    queue_prefix(queue).int(id)
}

/// Message id of a `messages` key (its last integer).
pub(crate) fn message_id(key: &[u8]) -> Result<i64, StoreError> {
    let mut rest = key;
    let parsed = (|| {
        take_int(&mut rest)?;
        take_int(&mut rest)?;
        let id = take_int(&mut rest)?;
        rest.is_empty().then_some(id)
    })();
    parsed.ok_or_else(|| StoreError::Backend("corrupt message key in store".into()))
}

/// Appends a `messages` value to `out`.
pub(crate) fn message_value(out: &mut Vec<u8>, cmd: u8, flag: u8, device_id: i64, body: &[u8]) {
    out.push(cmd);
    out.push(flag);
    out.extend_from_slice(&device_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// First byte of a `messages` value whose body is stored in another entry
/// (a group fan-out stores its body once). No stored command is 255, so an
/// inline value never starts with it (the writer refuses command 255).
pub(crate) const BODY_REF: u8 = 0xff;

/// Appends a `messages` value whose body is the one of the entry at
/// `body_key` to `out`.
pub(crate) fn message_ref_value(
    out: &mut Vec<u8>,
    cmd: u8,
    flag: u8,
    device_id: i64,
    body_key: &[u8],
) {
    out.push(BODY_REF);
    message_value(out, cmd, flag, device_id, body_key);
}

/// A `messages` value: the body inline, or the key of the entry holding it.
pub(crate) enum Body<'a> {
    Inline(&'a [u8]),
    At(&'a [u8]),
}

/// `(cmd, flag, device_id, body)` of a `messages` value.
pub(crate) fn parse_message(v: &[u8]) -> Result<(u8, u8, i64, Body<'_>), StoreError> {
    let corrupt = || StoreError::Backend("corrupt message record in store".into());
    let (is_ref, v) = match v.split_first() {
        Some((&BODY_REF, rest)) => (true, rest),
        _ => (false, v),
    };
    let (head, body) = v.split_at_checked(10).ok_or_else(corrupt)?;
    let device: [u8; 8] = head[2..].try_into().map_err(|_| corrupt())?;
    let body = if is_ref {
        Body::At(body)
    } else {
        Body::Inline(body)
    };
    Ok((head[0], head[1], i64::from_be_bytes(device), body))
}

/// Exclusive upper bound of the `dedup` keys created before `created_ms`.
pub(crate) fn dedup_time_prefix(created_ms: i64) -> Key {
    Key::new().int(created_ms)
}

/// Key of the dedup record of batch `batch`, created at `created_ms`.
pub(crate) fn dedup_batch_key(created_ms: i64, batch: i64) -> Key {
    Key::new().int(created_ms).int(batch)
}

/// `(created_ms, batch)` of a `dedup` key.
pub(crate) fn parse_dedup_batch_key(key: &[u8]) -> Option<(i64, i64)> {
    let mut rest = key;
    let created = take_int(&mut rest)?;
    let batch = take_int(&mut rest)?;
    rest.is_empty().then_some((created, batch))
}

/// The smallest key greater than every key starting with `prefix` (the
/// exclusive end of a prefix scan); `None` when there is none (all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Exclusive end of the whole key space (longer than any key we write and
/// greater than all of them).
pub(crate) const KEY_MAX: [u8; 64] = [0xff; 64];

pub(crate) fn device_key(device_id: &str, platform: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + device_id.len());
    k.push(META_DEVICE);
    k.push(platform);
    k.extend_from_slice(device_id.as_bytes());
    k
}

pub(crate) fn sync_key_key(queue: QueueId) -> Vec<u8> {
    Key::new()
        .tag(META_SYNC_KEY)
        .int(queue.appid)
        .int(queue.uid)
        .to_vec()
}

pub(crate) fn group_sync_key_key(queue: QueueId, gid: i64) -> Vec<u8> {
    Key::new()
        .tag(META_GROUP_SYNC_KEY)
        .int(queue.appid)
        .int(queue.uid)
        .int(gid)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: i64) -> Vec<u8> {
        Key::new().int(v).to_vec()
    }

    #[test]
    fn integer_encoding_preserves_order_and_roundtrips() {
        let mut values = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0];
        for shift in 0..63 {
            let p = 1i64 << shift;
            values.extend([p - 1, p, p + 1, -p + 1, -p, -p - 1]);
        }
        values.sort_unstable();
        values.dedup();
        for w in values.windows(2) {
            assert!(enc(w[0]) < enc(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in values {
            let e = enc(v);
            let mut rest = &e[..];
            assert_eq!(take_int(&mut rest), Some(v));
            assert!(rest.is_empty());
        }
        assert_eq!(enc(0), vec![0x80]);
        assert_eq!(enc(1), vec![0x81, 1]);
        assert_eq!(enc(-1), vec![0x7f, 0xfe]);
        assert_eq!(take_int(&mut &[0x83, 1][..]), None);
        assert_eq!(take_int(&mut &[0x90][..]), None);
    }

    #[test]
    fn message_keys_sort_by_queue_then_id() {
        let q = |appid, uid| QueueId { appid, uid };
        assert!(message_key(q(1, 1), 9).as_ref() < message_key(q(1, 1), 10).as_ref());
        assert!(message_key(q(1, 1), 255).as_ref() < message_key(q(1, 1), 256).as_ref());
        assert!(message_key(q(1, 1), i64::MAX).as_ref() < message_key(q(1, 2), 1).as_ref());
        assert!(message_key(q(1, -1), 1).as_ref() < message_key(q(1, 0), 1).as_ref());
        assert!(message_key(q(1, 1), 3).starts_with(&queue_prefix(q(1, 1))));
        // Self-delimiting: uid 1's prefix is not a prefix of uid 256's keys.
        assert!(!message_key(q(1, 256), 1).starts_with(&queue_prefix(q(1, 1))));
        assert_eq!(message_id(&message_key(q(1, 1), 77)).expect("id"), 77);
        assert_eq!(
            message_id(&message_key(q(-3, i64::MIN), -2)).expect("id"),
            -2
        );
        // A typical key is stored inline by fjall (20 bytes or less).
        assert!(message_key(q(1_000, 1 << 40), 1 << 31).len() <= 20);
    }

    #[test]
    fn records_roundtrip() {
        let mut v = Vec::new();
        let inline = |v: &[u8]| match parse_message(v).expect("parse") {
            (c, f, d, Body::Inline(b)) => (c, f, d, b.to_vec()),
            _ => panic!("not inline"),
        };
        message_value(&mut v, 4, 1, -3, b"body");
        assert_eq!(inline(&v), (4, 1, -3, b"body".to_vec()));
        v.clear();
        message_value(&mut v, 4, 1, 7, b"");
        assert_eq!(inline(&v), (4, 1, 7, Vec::new()));
        v.clear();
        message_ref_value(&mut v, 8, 0, 2, b"key");
        assert!(matches!(
            parse_message(&v).expect("parse"),
            (8, 0, 2, Body::At(b"key"))
        ));
        assert!(parse_message(&[1, 2]).is_err());
        assert!(parse_message(&[BODY_REF, 1]).is_err());
        assert_eq!(
            parse_dedup_batch_key(&dedup_batch_key(99, 4)),
            Some((99, 4))
        );
        assert!(dedup_batch_key(99, 5).as_ref() < dedup_batch_key(100, 1).as_ref());
        assert!(dedup_batch_key(99, 5).as_ref() < dedup_time_prefix(100).as_ref());
        assert!(dedup_batch_key(100, 0).as_ref() > dedup_time_prefix(100).as_ref());
        assert_eq!(parse_dedup_batch_key(&dedup_time_prefix(100)), None);
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert!(message_key(QueueId { appid: 1, uid: 1 }, i64::MAX)[..] < KEY_MAX[..]);
        assert_eq!(dec_value(&value_int(-9), "x").expect("value"), -9);
        assert!(dec_value(&[1], "x").is_err());
    }
}
