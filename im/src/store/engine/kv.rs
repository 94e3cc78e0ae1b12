//! The small key-value interface the queue engine runs on.
//!
//! Everything that makes a queue store (ids, dedup, sync keys, pruning,
//! group commit) lives in the engine; a backend only has to offer ordered
//! byte keys in a few [`Space`]s, one atomic durable batch, point reads and
//! range scans. The fjall adapter is [`crate::store::fjall`].

use crate::store::StoreError;
use std::path::Path;

/// The key spaces of the engine (separate ordered key ranges that one batch
/// writes atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// `appid | uid | id` → message record.
    Messages,
    /// One dedup record per batch, keyed by creation time.
    Dedup,
    /// Format version, device numbers, sync keys.
    Meta,
}

/// One write of a batch.
pub enum Write<'a> {
    Put(Space, &'a [u8], &'a [u8]),
    Delete(Space, &'a [u8]),
}

/// A scan's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Forward,
    Reverse,
}

/// What a scan calls for each key and value: `Ok(false)` stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

/// An ordered key-value store with atomic durable batches.
pub trait Kv: Send + Sync + Sized + 'static {
    /// Backend-specific settings (cache sizes, ...).
    type Config: Clone + Send + 'static;
    /// A batch under construction.
    type Batch: Send + 'static;

    /// Opens (or creates) the store in `dir`.
    fn open(dir: &Path, config: &Self::Config) -> Result<Self, StoreError>;

    /// An empty batch with room for about `capacity` writes.
    fn batch(&self, capacity: usize) -> Self::Batch;

    /// Adds one write to `batch`; later writes of one key win.
    fn stage(&self, batch: &mut Self::Batch, write: Write<'_>);

    /// Writes `batch` atomically and returns once it is durable (synced);
    /// nothing of it is visible to readers before that.
    fn commit(&self, batch: Self::Batch) -> Result<(), StoreError>;

    /// The value of `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `visit` for keys in `from..to` (`to` exclusive) in `order`
    /// until it returns `Ok(false)`, with each key and value. One scan reads
    /// one consistent snapshot.
    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        order: Order,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError>;
}
