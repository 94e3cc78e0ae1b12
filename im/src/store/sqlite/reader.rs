//! Read-only connections and the queries that run on them.
//!
//! WAL mode lets readers run beside the writer; each statement reads the last
//! committed state, and a write is only acknowledged after its COMMIT, so a
//! read issued after an ACK always sees that write. Queries block, so they
//! run on `spawn_blocking`, with a semaphore keeping at most one task per
//! pooled connection.

use super::schema::backend;
use super::writer::SELECT_DEVICE;
use crate::store::{QueueId, StoreError, StoredMessage, Window};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

const SELECT_WINDOW: &str = "SELECT id, cmd, flag, device_id, body FROM messages \
     WHERE appid = ?1 AND uid = ?2 AND id > ?3 ORDER BY id LIMIT ?4";
const SELECT_LATEST: &str = "SELECT id, cmd, flag, device_id, body FROM messages \
     WHERE appid = ?1 AND uid = ?2 ORDER BY id DESC LIMIT ?3";
const SELECT_HEAD: &str = "SELECT max(id) FROM messages WHERE appid = ?1 AND uid = ?2";
const SELECT_SYNC_KEY: &str = "SELECT sync_key FROM sync_keys WHERE appid = ?1 AND uid = ?2";
const SELECT_GROUP_SYNC_KEY: &str =
    "SELECT sync_key FROM group_sync_keys WHERE appid = ?1 AND uid = ?2 AND gid = ?3";

/// A fixed set of read-only connections shared by blocking tasks.
pub(super) struct ReadPool {
    conns: Mutex<Vec<Connection>>,
    /// One permit per connection; owned by the blocking task so a cancelled
    /// caller cannot free a permit while its connection is still in use.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(super) fn new(conns: Vec<Connection>) -> Self {
        let permits = Arc::new(Semaphore::new(conns.len()));
        ReadPool {
            conns: Mutex::new(conns),
            permits,
        }
    }

    /// Runs `f` on a pooled connection in a blocking task.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("store used outside a tokio runtime".into()))?;
        // Closed semaphore = pool shut down.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        handle
            .spawn_blocking(move || {
                let _permit = permit;
                let conn = pool
                    .conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop()
                    .ok_or(StoreError::Closed)?;
                let out = f(&conn).map_err(backend);
                if !pool.permits.is_closed() {
                    pool.conns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(conn);
                }
                out
            })
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Refuses further reads and closes the idle connections.
    pub(super) fn shutdown(&self) {
        self.permits.close();
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Clamps a caller's limit into SQLite's integer range.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        msgid: r.get(0)?,
        cmd: r.get(1)?,
        flag: r.get(2)?,
        device_id: r.get(3)?,
        body: Bytes::from(r.get::<_, Vec<u8>>(4)?),
    })
}

/// Newest id of the queue (0 if empty).
pub(super) fn head(conn: &Connection, queue: QueueId) -> rusqlite::Result<i64> {
    let head: Option<i64> = conn
        .prepare_cached(SELECT_HEAD)?
        .query_row(params![queue.appid, queue.uid], |r| r.get(0))?;
    Ok(head.unwrap_or(0))
}

/// Messages after `after`, then the head. The head is read second, so it is
/// never older than the page and `has_more` can only err towards "yes".
pub(super) fn window(
    conn: &Connection,
    queue: QueueId,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Window> {
    let messages = conn
        .prepare_cached(SELECT_WINDOW)?
        .query_map(
            params![queue.appid, queue.uid, after, sql_limit(limit)],
            message,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let head = head(conn, queue)?;
    let last = messages.last().map_or(after, |m| m.msgid);
    Ok(Window {
        messages,
        head,
        has_more: head > last,
    })
}

/// Newest `limit` messages, oldest first.
pub(super) fn latest(
    conn: &Connection,
    queue: QueueId,
    limit: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut messages = conn
        .prepare_cached(SELECT_LATEST)?
        .query_map(params![queue.appid, queue.uid, sql_limit(limit)], message)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    messages.reverse();
    Ok(messages)
}

/// Messages with id > `after`. Ids are contiguous from 1 and never removed,
/// so this is `head - after`: one index probe instead of a range scan.
pub(super) fn count_after(conn: &Connection, queue: QueueId, after: i64) -> rusqlite::Result<i64> {
    let head = head(conn, queue)?;
    Ok(head.saturating_sub(after.max(0)).max(0))
}

pub(super) fn sync_key(conn: &Connection, queue: QueueId) -> rusqlite::Result<i64> {
    let key: Option<i64> = conn
        .prepare_cached(SELECT_SYNC_KEY)?
        .query_row(params![queue.appid, queue.uid], |r| r.get(0))
        .optional()?;
    Ok(key.unwrap_or(0))
}

pub(super) fn group_sync_key(conn: &Connection, queue: QueueId, gid: i64) -> rusqlite::Result<i64> {
    let key: Option<i64> = conn
        .prepare_cached(SELECT_GROUP_SYNC_KEY)?
        .query_row(params![queue.appid, queue.uid, gid], |r| r.get(0))
        .optional()?;
    Ok(key.unwrap_or(0))
}

/// Already allocated device number, if any (the fast path of a login).
pub(super) fn device_number(
    conn: &Connection,
    device_id: &str,
    platform: u8,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(SELECT_DEVICE)?
        .query_row(params![device_id, platform], |r| r.get(0))
        .optional()
}
