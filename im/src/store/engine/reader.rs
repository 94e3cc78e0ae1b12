//! Read queries. They run concurrently with the writer and with each other;
//! a batch becomes visible only after its sync, and a write is acknowledged
//! only after that, so a read issued after an ACK always sees the write.
//! Queries block (they may touch disk), so they run on `spawn_blocking` (see
//! [`super::Engine`]).

use super::kv::{Kv, Order, Space};
use super::layout::{self, dec_value};
use crate::store::{QueueId, StoreError, StoredMessage, Window};
use bytes::Bytes;

/// A stored message; a body stored in another entry (group fan-outs) is
/// read from there.
fn message<K: Kv>(db: &K, key: &[u8], value: &[u8]) -> Result<StoredMessage, StoreError> {
    let (cmd, flag, device_id, body) = layout::parse_message(value)?;
    let body = match body {
        layout::Body::Inline(b) => Bytes::copy_from_slice(b),
        layout::Body::At(at) => {
            let v = db
                .get(Space::Messages, at)?
                .ok_or_else(|| StoreError::Backend("message body missing from store".into()))?;
            match layout::parse_message(&v)? {
                (_, _, _, layout::Body::Inline(b)) => Bytes::copy_from_slice(b),
                _ => {
                    return Err(StoreError::Backend(
                        "corrupt message reference in store".into(),
                    ));
                }
            }
        }
    };
    Ok(StoredMessage {
        msgid: layout::message_id(key)?,
        cmd,
        flag,
        device_id,
        body,
    })
}

/// Exclusive end of `queue`'s key range.
fn queue_end(queue: QueueId) -> Vec<u8> {
    layout::prefix_end(&layout::queue_prefix(queue)).unwrap_or_else(|| layout::KEY_MAX.to_vec())
}

/// Newest id of the queue (0 if empty).
pub(crate) fn head<K: Kv>(db: &K, queue: QueueId) -> Result<i64, StoreError> {
    let mut head = 0;
    db.scan(
        Space::Messages,
        &layout::queue_prefix(queue),
        &queue_end(queue),
        Order::Reverse,
        &mut |key, _| {
            head = layout::message_id(key)?;
            Ok(false)
        },
    )?;
    Ok(head)
}

/// Messages after `after` and the head. The head is read after the
/// messages, so it is never older than them: `has_more` may report a message
/// that arrived in between (the client then syncs once more), never miss one.
pub(crate) fn window<K: Kv>(
    db: &K,
    queue: QueueId,
    after: i64,
    limit: usize,
) -> Result<Window, StoreError> {
    let mut messages = Vec::new();
    if let Some(first) = after.checked_add(1)
        && limit > 0
    {
        db.scan(
            Space::Messages,
            &layout::message_key(queue, first),
            &queue_end(queue),
            Order::Forward,
            &mut |key, value| {
                messages.push(message(db, key, value)?);
                Ok(messages.len() < limit)
            },
        )?;
    }
    let head = head(db, queue)?;
    let last = messages.last().map_or(after, |m| m.msgid);
    Ok(Window {
        messages,
        head,
        has_more: head > last,
    })
}

/// Newest `limit` messages, oldest first.
pub(crate) fn latest<K: Kv>(
    db: &K,
    queue: QueueId,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut messages = Vec::new();
    if limit > 0 {
        db.scan(
            Space::Messages,
            &layout::queue_prefix(queue),
            &queue_end(queue),
            Order::Reverse,
            &mut |key, value| {
                messages.push(message(db, key, value)?);
                Ok(messages.len() < limit)
            },
        )?;
    }
    messages.reverse();
    Ok(messages)
}

/// Messages with id > `after`. Ids are contiguous from 1 and never removed,
/// so this is `head - after`: one seek instead of a range scan.
pub(crate) fn count_after<K: Kv>(db: &K, queue: QueueId, after: i64) -> Result<i64, StoreError> {
    let head = head(db, queue)?;
    Ok(head.saturating_sub(after.max(0)).max(0))
}

/// A stored integer `meta` record.
pub(crate) fn int<K: Kv>(db: &K, key: &[u8], what: &str) -> Result<Option<i64>, StoreError> {
    match db.get(Space::Meta, key)? {
        Some(v) => dec_value(&v, what).map(Some),
        None => Ok(None),
    }
}

/// Already allocated device number, if any (the fast path of a login).
pub(crate) fn device_number<K: Kv>(
    db: &K,
    device_id: &str,
    platform: u8,
) -> Result<Option<i64>, StoreError> {
    int(db, &layout::device_key(device_id, platform), "device")
}
