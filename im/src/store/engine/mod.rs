//! The queue engine: the single-node [`Store`] written once over a small
//! key-value interface ([`kv::Kv`]), with fjall as its backend.
//!
//! * [`kv`]: what a backend provides (atomic durable batch, point get,
//!   forward/reverse range scan, open);
//! * [`layout`]: key and value encodings, store format version;
//! * [`writer`]: the one writer thread: id placement from a head cache, the
//!   dedup index, sync keys, pruning, batch building;
//! * [`commit`]: the committer thread: sync, then replies (pipelined with
//!   the writer: one batch syncs while the next is built);
//! * [`dedup`]: one idempotency record per batch and its in-memory index;
//! * [`sync_keys`]: SYNC_KEY / GROUP_SYNC_KEY coalesced per batch, never
//!   awaited by the connection that reports them;
//! * [`reader`]: the read queries, run on `spawn_blocking`.

pub(crate) mod commit;
pub(crate) mod dedup;
#[cfg(test)]
pub(crate) mod faulty_kv;
pub mod kv;
pub(crate) mod layout;
pub(crate) mod message;
mod reader;
pub(crate) mod sync_keys;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

use crate::store::{
    AppendOutcome, AppendRequest, QueueId, Store, StoreError, StoreFuture, StoredMessage,
    Unconfirmed, Window,
};
use kv::{Kv, Space, Write};
use message::{Done, Msg, Op};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use sync_keys::PendingSyncKeys;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{info, warn};
use writer::Writer;

/// Tuning knobs of the engine; `Default` suits a production node.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long a [`crate::store::DedupKey`] is remembered. A client resends
    /// within seconds of a lost ACK, so ten minutes is generous. Every record
    /// of the window is indexed in memory (roughly 30 to 50 bytes each).
    pub dedup_window: Duration,
    /// Most requests in one write batch. Bounds the latency one batch adds;
    /// batches are normally much smaller than this.
    pub batch_max: usize,
    /// Requests that may wait for the writer before `append` applies
    /// backpressure to its callers.
    pub queue_capacity: usize,
    /// Reads running at once on the blocking pool.
    pub readers: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            dedup_window: Duration::from_secs(crate::defaults::DEDUP_WINDOW_SECS),
            batch_max: 1024,
            queue_capacity: 8192,
            readers: 4,
        }
    }
}

/// Counters of the group commit (for metrics): `requests / batches` is the
/// average batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches committed (or failed).
    pub batches: u64,
    /// Write requests those batches carried.
    pub requests: u64,
    /// Write requests the writer has taken into a batch (committed or not):
    /// how a caller knows its requests reached the writer.
    pub placed: u64,
}

/// State shared between the store handle, its read tasks and its threads.
pub(crate) struct EngineState<K> {
    closed: AtomicBool,
    batches: AtomicU64,
    requests: AtomicU64,
    placed: AtomicU64,
    /// The open database; `None` while the writer reopens it after a failed
    /// batch (readers then wait on the lock) or once the store is closed.
    db: RwLock<Option<Arc<K>>>,
    sync_keys: PendingSyncKeys,
}

/// The embedded message store; see the module docs.
pub struct Engine<K: Kv> {
    /// `None` only while dropping: releasing it lets the writer drain and stop.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<EngineState<K>>,
    /// Bounds concurrent reads (each holds a blocking-pool thread).
    read_permits: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
}

/// Opens the backend and checks (or records) the store format version.
pub(crate) fn open_kv<K: Kv>(dir: &Path, config: &K::Config) -> Result<K, StoreError> {
    let db = K::open(dir, config)?;
    let current = layout::FORMAT_VERSION.to_be_bytes();
    match db.get(Space::Meta, &layout::META_FORMAT)? {
        None => {
            let mut batch = db.batch(1);
            db.stage(
                &mut batch,
                Write::Put(Space::Meta, &layout::META_FORMAT, &current),
            );
            db.commit(batch)?;
        }
        Some(v) if v[..] == current => {}
        Some(v) => {
            let found = <[u8; 4]>::try_from(&v[..]).map(u32::from_be_bytes);
            let why = match found {
                Ok(old) if old < layout::FORMAT_VERSION => format!(
                    "the data dir {} holds store format {old}, written by an older Ferry; \
                     this build reads format {} only (see \"Store format versions\" in the \
                     README for how to migrate)",
                    dir.display(),
                    layout::FORMAT_VERSION
                ),
                Ok(new) => format!(
                    "the data dir {} holds store format {new}, written by a newer Ferry; \
                     this build reads format {} only",
                    dir.display(),
                    layout::FORMAT_VERSION
                ),
                Err(_) => format!("the data dir {} has a corrupt format record", dir.display()),
            };
            return Err(StoreError::Backend(why));
        }
    }
    Ok(db)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The dir holds no store yet (nothing to do).
    Empty,
    /// Already in the current format.
    Current,
    /// Moved from `from` to the current format, dropping `dedup_records`
    /// old idempotency records.
    Upgraded { from: u32, dedup_records: usize },
}

/// Moves a store written in an older format to the current one, in place
/// (the node must be stopped). Format 1 differs only in its dedup records,
/// which live for the dedup window: they are dropped, messages, sync keys
/// and device numbers are kept.
pub(crate) fn migrate<K: Kv>(dir: &Path, config: &K::Config) -> Result<Migrated, StoreError> {
    let db = K::open(dir, config)?;
    let Some(v) = db.get(Space::Meta, &layout::META_FORMAT)? else {
        return Ok(Migrated::Empty);
    };
    let from = <[u8; 4]>::try_from(&v[..])
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Backend("corrupt format record".into()))?;
    match from {
        f if f == layout::FORMAT_VERSION => Ok(Migrated::Current),
        1 => {
            let mut keys = Vec::new();
            db.scan(
                Space::Dedup,
                &[],
                &layout::KEY_MAX,
                kv::Order::Forward,
                &mut |k, _| {
                    keys.push(k.to_vec());
                    Ok(true)
                },
            )?;
            let mut batch = db.batch(keys.len() + 1);
            for k in &keys {
                db.stage(&mut batch, Write::Delete(Space::Dedup, k));
            }
            let current = layout::FORMAT_VERSION.to_be_bytes();
            db.stage(
                &mut batch,
                Write::Put(Space::Meta, &layout::META_FORMAT, &current),
            );
            db.commit(batch)?;
            Ok(Migrated::Upgraded {
                from,
                dedup_records: keys.len(),
            })
        }
        other => Err(StoreError::Backend(format!(
            "store format {other} cannot be migrated by this build (it reads format {})",
            layout::FORMAT_VERSION
        ))),
    }
}

impl<K: Kv> Engine<K> {
    /// Opens (or creates) the store in `dir`, creating missing directories,
    /// and starts the writer and committer threads.
    pub(crate) fn start(
        dir: &Path,
        config: K::Config,
        opts: EngineOptions,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = Arc::new(open_kv::<K>(dir, &config)?);
        let shared = Arc::new(EngineState {
            closed: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            placed: AtomicU64::new(0),
            db: RwLock::new(Some(Arc::clone(&db))),
            sync_keys: PendingSyncKeys::default(),
        });
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let read_permits = Arc::new(Semaphore::new(opts.readers.max(1)));
        let writer = Writer::new(
            dir.to_path_buf(),
            config,
            &opts,
            db,
            rx,
            tx.downgrade(),
            Arc::clone(&shared),
        )?;
        let thread = std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        spawn_flush_tick(tx.downgrade(), Arc::clone(&shared))?;
        Ok(Engine {
            tx: Some(tx),
            shared,
            read_permits,
            thread: Some(thread),
        })
    }

    /// Group-commit counters since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
            placed: self.shared.placed.load(Ordering::Relaxed),
        }
    }

    /// Hands `op` to the writer thread and waits for its durable result.
    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        // A dropped reply means the writer stopped without running the job.
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read query in a blocking task.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&K) -> Result<T, StoreError> + Send + 'static,
    {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("store used outside a tokio runtime".into()))?;
        // Owned by the blocking task, so a cancelled caller cannot free a
        // permit while its read still runs.
        let permit = Arc::clone(&self.read_permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let shared = Arc::clone(&self.shared);
        handle
            .spawn_blocking(move || {
                let _permit = permit;
                let db = shared
                    .db
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match db {
                    Some(db) => f(&db),
                    None if shared.closed.load(Ordering::Acquire) => Err(StoreError::Closed),
                    None => Err(StoreError::Backend(
                        "store unavailable: reopening it after a failed write failed".into(),
                    )),
                }
            })
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Raises a sync key without waiting for any write (see [`sync_keys`]).
    fn raise_sync_key(&self, key: Vec<u8>, value: i64) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.shared.sync_keys.raise(key, value);
        Ok(())
    }

    /// A sync key as set: the pending value or the stored one, the larger.
    async fn read_sync_key(&self, key: Vec<u8>) -> Result<i64, StoreError> {
        let pending = self.shared.sync_keys.get(&key);
        let stored = self
            .read(move |db| reader::int(db, &key, "sync key"))
            .await?;
        Ok(pending.max(stored).unwrap_or(0))
    }
}

/// Asks the writer to write pending sync keys every
/// [`sync_keys::FLUSH_EVERY`] while some wait (see [`sync_keys`]). Stops
/// once the store's handle is gone.
fn spawn_flush_tick<K: Kv>(
    wake: mpsc::WeakSender<Msg>,
    shared: Arc<EngineState<K>>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("ferry-store-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(sync_keys::FLUSH_EVERY);
                let Some(tx) = wake.upgrade() else { break };
                if shared.sync_keys.is_dirty() {
                    // Full: the writer is busy and takes the keys with its
                    // next batch anyway.
                    let _ = tx.try_send(Msg::FlushSyncKeys);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::Backend(format!("cannot start flush thread: {e}")))
}

/// The writer answered with a result of the wrong kind (a bug, not a panic).
fn mismatch() -> StoreError {
    StoreError::Backend("internal error: unexpected writer reply".into())
}

impl<K: Kv> Store for Engine<K> {
    fn put(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            match self.write(Op::Append(req)).await? {
                Done::Append(outcome) => Ok(outcome),
                _ => Err(mismatch()),
            }
        })
    }

    fn put_ordered(
        &self,
        req: AppendRequest,
        stream: (i64, i64),
    ) -> StoreFuture<'_, (AppendOutcome, Option<u64>)> {
        Box::pin(async move {
            match self.write(Op::AppendOrdered(req, stream)).await? {
                Done::Ordered(outcome, n) => Ok((outcome, Some(n))),
                _ => Err(mismatch()),
            }
        })
    }

    fn window(&self, queue: QueueId, after: i64, limit: usize) -> StoreFuture<'_, Window> {
        Box::pin(self.read(move |db| reader::window(db, queue, after, limit)))
    }

    fn latest(&self, queue: QueueId, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(self.read(move |db| reader::latest(db, queue, limit)))
    }

    fn count_after(&self, queue: QueueId, after: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.read(move |db| reader::count_after(db, queue, after)))
    }

    fn sync_key(&self, queue: QueueId) -> StoreFuture<'_, i64> {
        Box::pin(self.read_sync_key(layout::sync_key_key(queue)))
    }

    /// Returns once the key is recorded in memory; it is written with the
    /// next batch (see [`sync_keys`]).
    fn set_sync_key(&self, queue: QueueId, key: i64) -> StoreFuture<'_, ()> {
        let res = self.raise_sync_key(layout::sync_key_key(queue), key);
        Box::pin(async move { res })
    }

    fn group_sync_key(&self, queue: QueueId, gid: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.read_sync_key(layout::group_sync_key_key(queue, gid)))
    }

    fn set_group_sync_key(&self, queue: QueueId, gid: i64, key: i64) -> StoreFuture<'_, ()> {
        let res = self.raise_sync_key(layout::group_sync_key_key(queue, gid), key);
        Box::pin(async move { res })
    }

    fn mark_unconfirmed(&self, marks: Vec<Unconfirmed>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if marks.is_empty() {
                return Ok(());
            }
            let keys = marks.into_iter().map(|m| m.key).collect();
            match self.write(Op::Mark(keys)).await? {
                Done::Unit => Ok(()),
                _ => Err(mismatch()),
            }
        })
    }

    /// Unlike a client's sync key, a node state must be durable when this
    /// resolves (a crash right after a start must still find it).
    fn set_node_state(&self, incarnation: u64, clean: bool) -> StoreFuture<'_, ()> {
        let (queue, value) = crate::store::node_state_record(incarnation, clean);
        let key = layout::sync_key_key(queue);
        Box::pin(async move {
            match self.write(Op::RaiseDurable { key, value }).await? {
                Done::Unit => Ok(()),
                _ => Err(mismatch()),
            }
        })
    }

    fn device_number(&self, device_id: &str, platform: u8) -> StoreFuture<'_, i64> {
        let device_id = device_id.to_owned();
        Box::pin(async move {
            // Known devices are answered by a reader; only a first login
            // needs the writer, which re-checks before allocating.
            let id = device_id.clone();
            if let Some(n) = self
                .read(move |db| reader::device_number(db, &id, platform))
                .await?
            {
                return Ok(n);
            }
            match self
                .write(Op::DeviceNumber {
                    device_id,
                    platform,
                })
                .await?
            {
                Done::Number(n) => Ok(n),
                _ => Err(mismatch()),
            }
        })
    }

    /// The one writer thread applies requests in arrival order.
    fn orders_appends(&self) -> bool {
        true
    }

    /// Idempotent: a second call (or a call after the writer died) returns
    /// `Ok` once the writer is gone. Pending sync keys are written first.
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let first = !self.shared.closed.swap(true, Ordering::AcqRel);
            if first {
                if let Some(tx) = self.tx.as_ref() {
                    let (ack, done) = oneshot::channel();
                    if tx.send(Msg::Close(ack)).await.is_ok() {
                        // Err only if the writer is already gone: also fine.
                        let _ = done.await;
                    }
                }
                self.read_permits.close();
                info!("store closed");
            }
            Ok(())
        })
    }
}

impl<K: Kv> Drop for Engine<K> {
    /// Stops the writer: it finishes what is queued (nobody waits for those
    /// replies any more, but they were promised to be attempted), writes
    /// pending sync keys, closes the database and exits. Blocks for at most
    /// the batches in progress.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("store writer thread panicked");
        }
    }
}
