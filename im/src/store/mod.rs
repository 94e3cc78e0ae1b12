//! Message storage: personal queues (one per `(appid, uid)`), sync keys and the
//! idempotency records that make a resend after a lost ACK harmless.
//!
//! Every backend implements [`Store`]. The session and HTTP code only ever talk
//! to `Arc<dyn Store>`, so the embedded store (the queue engine on fjall,
//! single node) and the Redis store (cluster) are interchangeable and share
//! one test suite.
//!
//! Invariants every backend keeps:
//! * message ids are contiguous per queue (1, 2, 3, …), so the previous id of a
//!   message is always `id - 1` and METADATA `prev_sync_key` is exact;
//! * one [`AppendRequest`] is atomic: all of its entries are written, or none;
//! * the future returned by [`Store::append`] resolves only once the write is
//!   durable (fsync'd), which is when the caller may ACK;
//! * a request whose [`Dedup`] record (same [`DedupKey`], same content
//!   digest) was written within the dedup window is not written again unless
//!   it asks to [`Dedup::replace`] the record: the original ids are returned
//!   with `duplicate = true` and the record's [`Earlier`] (who wrote it and
//!   whether its ACK was marked unconfirmed), and the caller decides whether
//!   this is a resend (see `crate::resend`) or a new message, which it then
//!   appends again with `replace`. A record with another digest is replaced
//!   by the new message at once.

#[cfg(test)]
mod conformance;
mod engine;
mod fjall;
pub mod group;
#[cfg(test)]
mod group_conformance;
pub mod mysql_groups;
pub mod record;
mod redis;
mod streams;
#[cfg(test)]
mod test_support;

pub use self::fjall::{FjallGroupStore, FjallOptions, FjallStore};
pub use self::redis::{RedisGroupStore, RedisStore, RedisStoreOptions};
pub use engine::{EngineOptions, Migrated, StoreStats};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// Boxed future returned by [`Store`] methods (keeps the trait object-safe).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed. The caller never ACKs on error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("store is shut down")]
    Closed,
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The data is owned by another system (groups in MySQL).
    #[error("{0}")]
    ReadOnly(String),
}

/// Identifies a queue: one per user per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId {
    pub appid: i64,
    pub uid: i64,
}

/// One message to append to one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub queue: QueueId,
    /// Protocol command of the stored message (IM 4, GROUP_IM 8,
    /// GROUP_NOTIFICATION 7, SYSTEM 21, CUSTOMER_V2 64).
    pub cmd: u8,
    /// Flag bits worth keeping (TEXT is persisted, unlike gobelieve).
    pub flag: u8,
    /// Device number of the sending connection (0 for HTTP/system).
    pub device_id: i64,
    /// Message body encoded at protocol version 2 (shared, not copied).
    pub body: Bytes,
}

impl NewEntry {
    /// One entry per user's queue, all sharing `body`: a fan-out.
    pub fn fan_out(
        appid: i64,
        uids: &[i64],
        cmd: u8,
        flag: u8,
        device_id: i64,
        body: &Bytes,
    ) -> Vec<NewEntry> {
        uids.iter()
            .map(|&uid| NewEntry {
                queue: QueueId { appid, uid },
                cmd,
                flag,
                device_id,
                body: body.clone(),
            })
            .collect()
    }
}

/// Identity of one client send, for idempotent resends
/// `(appid, sender, device, client msgid, receiver)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub appid: i64,
    pub sender: i64,
    pub device_id: i64,
    pub client_msgid: i64,
    pub receiver: i64,
}

/// Who wrote a dedup record: a node process (its incarnation, a random id
/// drawn at start) and a connection serial within it. The node uses it to
/// tell whether the earlier send's ACK may not have reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    pub incarnation: u64,
    pub connection: u64,
}

/// The dedup record a client send asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedup {
    pub key: DedupKey,
    /// Stable digest of the client's content ([`record::digest`]): a reused
    /// msgid with other content is a new message.
    pub digest: u64,
    pub origin: Origin,
    /// Write the entries and replace any record of `key` (the node decided
    /// an earlier record with the same digest is not a resend).
    pub replace: bool,
}

/// What an existing record with the same key and digest says about the
/// earlier send (returned with `duplicate = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Earlier {
    pub origin: Origin,
    /// [`Store::mark_unconfirmed`] was called for the key: the earlier ACK
    /// was not confirmed received when its connection ended.
    pub unconfirmed: bool,
}

/// A record whose ACK was not confirmed received, for
/// [`Store::mark_unconfirmed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unconfirmed {
    pub key: DedupKey,
    /// Queue of the request's first entry: the Redis store keeps a record
    /// per queue and judges a send by the first one.
    pub queue: QueueId,
}

/// A batch of entries written atomically (e.g. receiver copy + sender copy).
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub entries: Vec<NewEntry>,
    pub dedup: Option<Dedup>,
}

/// Where one entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub msgid: i64,
    /// Previous id in the same queue (`msgid - 1`; 0 for the first).
    pub prev: i64,
}

/// Result of [`Store::append`]: one [`Placed`] per entry, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub placed: Vec<Placed>,
    /// True when a record with the same key and digest was found and the
    /// request did not ask to replace it: nothing was written and `placed`
    /// holds the original ids.
    pub duplicate: bool,
    /// The found record's origin and mark (`Some` exactly when `duplicate`).
    pub earlier: Option<Earlier>,
}

/// A message read back from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub msgid: i64,
    pub cmd: u8,
    pub flag: u8,
    pub device_id: i64,
    pub body: Bytes,
}

/// One sync window (spec §3.6): the oldest messages after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Oldest first, at most `limit` messages with id > `after`.
    pub messages: Vec<StoredMessage>,
    /// Newest id in the whole queue (0 if empty).
    pub head: i64,
    /// More messages exist after the last one returned.
    pub has_more: bool,
}

/// Storage backend.
///
/// Backends implement [`put`](Store::put) (and [`put_ordered`] if they
/// keep an order); callers use [`append`](Store::append) and
/// [`append_ordered`](Store::append_ordered), provided here so every append
/// is timed and counted in [`crate::metrics`] by construction — a backend
/// cannot forget it, and no wrapper has to forward every other method.
///
/// [`put_ordered`]: Store::put_ordered
pub trait Store: Send + Sync + 'static {
    /// Append atomically and durably; see the module docs. Not to be
    /// overridden (it only adds timing to [`put`](Store::put)).
    fn append(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        let entries = req.entries.len() as u64;
        Box::pin(async move {
            let start = std::time::Instant::now();
            let r = self.put(req).await;
            crate::metrics::record_append(start, entries, r.is_ok());
            r
        })
    }
    /// The backend's append, untimed; callers use [`Store::append`].
    fn put(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome>;
    /// Up to `limit` oldest messages with id > `after`.
    fn window(&self, queue: QueueId, after: i64, limit: usize) -> StoreFuture<'_, Window>;
    /// The newest `limit` messages, returned oldest first.
    fn latest(&self, queue: QueueId, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>>;
    /// Number of messages with id > `after` (all messages ever stored when 0).
    fn count_after(&self, queue: QueueId, after: i64) -> StoreFuture<'_, i64>;
    /// Stored personal sync key (0 if none).
    fn sync_key(&self, queue: QueueId) -> StoreFuture<'_, i64>;
    /// Store `key` as the personal sync key only if it is larger than the stored one.
    fn set_sync_key(&self, queue: QueueId, key: i64) -> StoreFuture<'_, ()>;
    /// Stored super-group sync key of `queue`'s user for group `gid` (0 if none).
    fn group_sync_key(&self, queue: QueueId, gid: i64) -> StoreFuture<'_, i64>;
    /// Store a super-group sync key only if larger than the stored one.
    fn set_group_sync_key(&self, queue: QueueId, gid: i64, key: i64) -> StoreFuture<'_, ()>;
    /// Marks the records of `keys` (those that exist within the window) as
    /// "ACK not confirmed": a later send with the same key and digest is a
    /// resend. Durable when the future resolves.
    fn mark_unconfirmed(&self, marks: Vec<Unconfirmed>) -> StoreFuture<'_, ()>;
    /// Records node incarnation `incarnation` as alive now (`clean = false`:
    /// start and heartbeats) or as ended cleanly (`clean`: every connection
    /// wrote its marks first). Kept as a sync key of a reserved queue, so
    /// every backend stores it durably with no schema of its own.
    fn set_node_state(&self, incarnation: u64, clean: bool) -> StoreFuture<'_, ()> {
        let (queue, value) = node_state_record(incarnation, clean);
        self.set_sync_key(queue, value)
    }
    /// What [`Store::set_node_state`] last recorded for `incarnation`.
    fn node_state(&self, incarnation: u64) -> StoreFuture<'_, Option<NodeState>> {
        Box::pin(async move {
            let v = self.sync_key(node_queue(incarnation)).await?;
            Ok((v > 0).then_some(NodeState {
                seen_secs: v >> 1,
                clean: v & 1 == 1,
            }))
        })
    }
    /// True when other nodes share this store (Redis): an incarnation that
    /// is neither this one nor ended cleanly may still be running elsewhere.
    fn shared(&self) -> bool {
        false
    }
    /// Device number for `(device_id, platform)`, allocated on first use and
    /// stable afterwards (spec §3.1 step 5); never two numbers for one device.
    fn device_number(&self, device_id: &str, platform: u8) -> StoreFuture<'_, i64>;
    /// True when requests are applied one at a time in arrival order (one
    /// writer), so two requests that share queues land in the same relative
    /// order in every one of them: group fan-outs then need no lock of
    /// their own to keep one order per group.
    fn orders_appends(&self) -> bool {
        false
    }
    /// [`Store::append`] for a stream of requests that must be delivered in
    /// the order they were stored (a group's fan-outs): a store that applies
    /// requests in order ([`Store::orders_appends`]) also returns the
    /// request's position among those with the same `stream` (1, 2, …,
    /// counted since the process started). `None` from stores that do not.
    /// Not to be overridden (it only adds timing to [`Store::put_ordered`]).
    fn append_ordered(
        &self,
        req: AppendRequest,
        stream: (i64, i64),
    ) -> StoreFuture<'_, (AppendOutcome, Option<u64>)> {
        let entries = req.entries.len() as u64;
        Box::pin(async move {
            let start = std::time::Instant::now();
            let r = self.put_ordered(req, stream).await;
            crate::metrics::record_append(start, entries, r.is_ok());
            r
        })
    }
    /// The backend's [`Store::append_ordered`], untimed.
    fn put_ordered(
        &self,
        req: AppendRequest,
        stream: (i64, i64),
    ) -> StoreFuture<'_, (AppendOutcome, Option<u64>)> {
        let _ = stream;
        Box::pin(async move { Ok((self.put(req).await?, None)) })
    }
    /// Completes appends a crashed node left half-written (see the Redis
    /// store's fan-out log); returns how many it completed. Run by every node
    /// every [`RECOVER_EVERY`]. Stores whose appends are atomic have nothing
    /// to do.
    fn recover_interrupted(&self) -> StoreFuture<'_, usize> {
        Box::pin(async { Ok(0) })
    }
    /// Flush and stop; later calls fail with [`StoreError::Closed`].
    fn close(&self) -> StoreFuture<'_, ()>;
}

/// Reserved appid of the node-incarnation records: below every group queue
/// (`!appid` of a positive appid) and every user queue.
const NODE_APPID: i64 = i64::MIN;

/// Incarnation ids are drawn below 2^62, so they fit a queue's uid.
pub const INCARNATION_MASK: u64 = (1 << 62) - 1;

fn node_queue(incarnation: u64) -> QueueId {
    QueueId {
        appid: NODE_APPID,
        uid: (incarnation & INCARNATION_MASK) as i64,
    }
}

/// Where and as what [`Store::set_node_state`] records a state: the reserved
/// queue's sync key and its value (seconds now, shifted, plus the clean bit).
pub(crate) fn node_state_record(incarnation: u64, clean: bool) -> (QueueId, i64) {
    (
        node_queue(incarnation),
        (now_secs() << 1) | i64::from(clean),
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Last recorded state of a node incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    /// Unix seconds of its last heartbeat (or of its clean end).
    pub seen_secs: i64,
    pub clean: bool,
}

/// How often a node runs [`Store::recover_interrupted`].
pub const RECOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
