//! The fjall backend of the queue engine ([`crate::store::engine`]): an LSM
//! tree, so a batch is one sequential journal append (synced with
//! `fdatasync`) instead of random B-tree page writes.
//!
//! Three keyspaces share one journal, so one write batch is atomic across
//! them. `fdatasync` rather than `fsync`: it writes the appended bytes and the
//! metadata needed to read them back (the file size), which is all a journal
//! append needs; `fsync` also forces timestamps through the file system's own
//! journal on every batch. fjall itself syncs a journal fully when it seals
//! it and syncs the directory when it creates the next one. A batch is
//! applied to the memtables only after its sync, so readers never see a
//! write that is not durable.

mod group;

use crate::store::StoreError;
use crate::store::engine::kv::{Kv, Order, Space, Visit, Write};
use crate::store::engine::{Engine, EngineOptions, Migrated};
use fjall::config::FilterPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
pub use group::FjallGroupStore;
use std::path::Path;
use std::time::Duration;
use tracing::info;

/// Name of the data directory inside the store directory.
pub(crate) const DATA_DIR: &str = "fjall";

/// Tuning knobs of [`FjallStore`]; `Default` suits a production node.
#[derive(Debug, Clone)]
pub struct FjallOptions {
    /// How long a [`crate::store::DedupKey`] is remembered (see
    /// [`EngineOptions::dedup_window`]).
    pub dedup_window: Duration,
    /// Most requests committed in one write batch.
    pub batch_max: usize,
    /// Requests that may wait for the writer before `append` applies
    /// backpressure to its callers.
    pub queue_capacity: usize,
    /// Reads running at once on the blocking pool.
    pub readers: usize,
    /// fjall block cache, in bytes.
    pub cache_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> Self {
        let e = EngineOptions::default();
        FjallOptions {
            dedup_window: e.dedup_window,
            batch_max: e.batch_max,
            queue_capacity: e.queue_capacity,
            readers: e.readers,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The embedded message store: the queue engine on fjall.
pub type FjallStore = Engine<FjallKv>;

impl Engine<FjallKv> {
    /// Opens (or creates) the database in `<dir>/fjall/`, creating missing
    /// directories, and starts the engine's threads.
    pub fn open(dir: &Path, opts: FjallOptions) -> Result<FjallStore, StoreError> {
        let engine = EngineOptions {
            dedup_window: opts.dedup_window,
            batch_max: opts.batch_max,
            queue_capacity: opts.queue_capacity,
            readers: opts.readers,
        };
        let store = Engine::start(dir, opts.cache_bytes, engine)?;
        info!(path = %dir.join(DATA_DIR).display(), "fjall store opened");
        Ok(store)
    }

    /// Moves the store in `<dir>/fjall/` to the current format (see
    /// "Store format versions" in the README); the node must be stopped.
    pub fn migrate(dir: &Path) -> Result<Migrated, StoreError> {
        if !dir.join(DATA_DIR).is_dir() {
            return Ok(Migrated::Empty);
        }
        crate::store::engine::migrate::<FjallKv>(dir, &FjallOptions::default().cache_bytes)
    }
}

/// fjall as a [`Kv`]: one keyspace per [`Space`].
pub struct FjallKv {
    db: Database,
    messages: Keyspace,
    dedup: Keyspace,
    meta: Keyspace,
}

/// Turns a fjall error into the store's error type.
fn backend(e: fjall::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl FjallKv {
    fn space(&self, space: Space) -> &Keyspace {
        match space {
            Space::Messages => &self.messages,
            Space::Dedup => &self.dedup,
            Space::Meta => &self.meta,
        }
    }
}

impl Kv for FjallKv {
    /// Block cache size in bytes.
    type Config = u64;
    type Batch = OwnedWriteBatch;

    fn open(dir: &Path, cache_bytes: &u64) -> Result<Self, StoreError> {
        let path = dir.join(DATA_DIR);
        let db = Database::builder(&path)
            .cache_size(*cache_bytes)
            .open()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        // Messages are only ever range-scanned, so point-read filters would
        // be built and cached for nothing.
        let messages = db
            .keyspace("messages", || {
                KeyspaceCreateOptions::default().filter_policy(FilterPolicy::disabled())
            })
            .map_err(backend)?;
        let dedup = db
            .keyspace("dedup", KeyspaceCreateOptions::default)
            .map_err(backend)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(backend)?;
        Ok(FjallKv {
            db,
            messages,
            dedup,
            meta,
        })
    }

    fn batch(&self, capacity: usize) -> OwnedWriteBatch {
        OwnedWriteBatch::with_capacity(self.db.clone(), capacity)
    }

    fn stage(&self, batch: &mut OwnedWriteBatch, write: Write<'_>) {
        match write {
            Write::Put(space, key, value) => batch.insert(self.space(space), key, value),
            Write::Delete(space, key) => batch.remove(self.space(space), key),
        }
    }

    fn commit(&self, batch: OwnedWriteBatch) -> Result<(), StoreError> {
        // SyncData: the journal is flushed and fdatasync'd before the batch
        // is applied to the memtables (see module docs).
        batch
            .durability(Some(PersistMode::SyncData))
            .commit()
            .map_err(backend)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .space(space)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        order: Order,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let iter = self.space(space).range(from..to);
        let mut step = |guard: fjall::Guard| {
            let (k, v) = guard.into_inner().map_err(backend)?;
            visit(&k, &v)
        };
        match order {
            Order::Forward => {
                for guard in iter {
                    if !step(guard)? {
                        break;
                    }
                }
            }
            Order::Reverse => {
                for guard in iter.rev() {
                    if !step(guard)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}
