//! Read queries. fjall readers run concurrently with the writer and with each
//! other; a batch becomes visible only after its journal fsync, and a write
//! is acknowledged only after that, so a read issued after an ACK always sees
//! the write. Queries block (they may touch disk), so they run on
//! `spawn_blocking` (see [`super::FjallStore`]).

use super::layout::{self, Db, backend, dec_value};
use crate::store::{QueueId, StoreError, StoredMessage, Window};
use bytes::Bytes;
use fjall::{Guard, Readable};

fn message(guard: Guard) -> Result<StoredMessage, StoreError> {
    let (key, value) = guard.into_inner().map_err(backend)?;
    let (cmd, flag, device_id, body) = layout::parse_message(&value)?;
    Ok(StoredMessage {
        msgid: layout::message_id(&key)?,
        cmd,
        flag,
        device_id,
        body: Bytes::copy_from_slice(body),
    })
}

/// Newest id of the queue (0 if empty) as of `snapshot`.
fn head(db: &Db, snapshot: &impl Readable, queue: QueueId) -> Result<i64, StoreError> {
    match snapshot
        .prefix(&db.messages, layout::queue_prefix(queue))
        .next_back()
    {
        Some(guard) => layout::message_id(&guard.key().map_err(backend)?),
        None => Ok(0),
    }
}

/// Messages after `after` and the head, from one snapshot, so `has_more` is
/// exact.
pub(super) fn window(
    db: &Db,
    queue: QueueId,
    after: i64,
    limit: usize,
) -> Result<Window, StoreError> {
    let snapshot = db.db.snapshot();
    let messages = match after.checked_add(1) {
        Some(first) if limit > 0 => snapshot
            .range(
                &db.messages,
                layout::message_key(queue, first)..=layout::message_key(queue, i64::MAX),
            )
            .take(limit)
            .map(message)
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let head = head(db, &snapshot, queue)?;
    let last = messages.last().map_or(after, |m| m.msgid);
    Ok(Window {
        messages,
        head,
        has_more: head > last,
    })
}

/// Newest `limit` messages, oldest first.
pub(super) fn latest(
    db: &Db,
    queue: QueueId,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut messages = db
        .messages
        .prefix(layout::queue_prefix(queue))
        .rev()
        .take(limit)
        .map(message)
        .collect::<Result<Vec<_>, _>>()?;
    messages.reverse();
    Ok(messages)
}

/// Messages with id > `after`. Ids are contiguous from 1 and never removed,
/// so this is `head - after`: one seek instead of a range scan.
pub(super) fn count_after(db: &Db, queue: QueueId, after: i64) -> Result<i64, StoreError> {
    let head = head(db, &db.db.snapshot(), queue)?;
    Ok(head.saturating_sub(after.max(0)).max(0))
}

fn int(db: &Db, key: &[u8], what: &str) -> Result<Option<i64>, StoreError> {
    match db.meta.get(key).map_err(backend)? {
        Some(v) => dec_value(&v, what).map(Some),
        None => Ok(None),
    }
}

pub(super) fn sync_key(db: &Db, queue: QueueId) -> Result<i64, StoreError> {
    Ok(int(db, &layout::sync_key_key(queue), "sync key")?.unwrap_or(0))
}

pub(super) fn group_sync_key(db: &Db, queue: QueueId, gid: i64) -> Result<i64, StoreError> {
    Ok(int(db, &layout::group_sync_key_key(queue, gid), "sync key")?.unwrap_or(0))
}

/// Already allocated device number, if any (the fast path of a login).
pub(super) fn device_number(
    db: &Db,
    device_id: &str,
    platform: u8,
) -> Result<Option<i64>, StoreError> {
    int(db, &layout::device_key(device_id, platform), "device")
}
