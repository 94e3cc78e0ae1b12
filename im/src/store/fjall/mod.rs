//! Embedded single-node [`Store`] on fjall (an LSM tree): the same semantics
//! as [`crate::store::SqliteStore`], with sequential journal writes instead of
//! random B-tree page writes.
//!
//! * [`layout`]: keyspaces, key/value encodings and format version;
//! * [`writer`]: the one writer thread, group commit (one fsync per batch),
//!   dedup index and id placement, recovery after a failed batch;
//! * [`reader`]: the read queries, run on `spawn_blocking`.
//!
//! Every write goes through the writer thread (so ids can be handed out from
//! an in-memory head cache without races) and resolves only after its batch
//! was fsync'd. Reads use fjall's concurrent readers and never wait for the
//! writer (except while it reopens the database after a failed batch).

mod group;
mod layout;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use crate::store::{
    AppendOutcome, AppendRequest, QueueId, Store, StoreError, StoreFuture, StoreStats,
    StoredMessage, Unconfirmed, Window,
};
pub use group::FjallGroupStore;
use layout::Db;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{info, warn};
use writer::{Done, Msg, Op, Writer};

/// Tuning knobs of [`FjallStore`]; `Default` suits a production node.
#[derive(Debug, Clone)]
pub struct FjallOptions {
    /// How long a [`crate::store::DedupKey`] is remembered. A client resends
    /// within seconds of a lost ACK, so ten minutes is generous. Every record
    /// of the window is indexed in memory (roughly 20 to 40 bytes each).
    pub dedup_window: Duration,
    /// Most requests committed in one write batch. Bounds the latency one
    /// batch adds; batches are normally much smaller than this.
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
        FjallOptions {
            dedup_window: Duration::from_secs(600),
            batch_max: 1024,
            queue_capacity: 8192,
            readers: 4,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// State shared between the store handle, its read tasks and its writer.
struct Shared {
    closed: AtomicBool,
    batches: AtomicU64,
    requests: AtomicU64,
    /// The open database; `None` while the writer reopens it after a failed
    /// batch (readers then wait on the lock) or once the store is closed.
    db: RwLock<Option<Arc<Db>>>,
}

/// The embedded message store; see the module docs.
pub struct FjallStore {
    /// `None` only while dropping: releasing it lets the writer drain and stop.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    /// Bounds concurrent reads (each holds a blocking-pool thread).
    read_permits: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
}

impl FjallStore {
    /// Opens (or creates) the database in `<dir>/fjall/`, creating missing
    /// directories, and starts the writer thread.
    pub fn open(dir: &Path, opts: FjallOptions) -> Result<FjallStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = Arc::new(layout::open(dir, &opts)?);
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            db: RwLock::new(Some(Arc::clone(&db))),
        });
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let read_permits = Arc::new(Semaphore::new(opts.readers.max(1)));
        let writer = Writer::new(dir.to_path_buf(), opts, db, rx, Arc::clone(&shared))?;
        let thread = std::thread::Builder::new()
            .name("ferry-fjall-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        info!(path = %dir.join(layout::DATA_DIR).display(), "fjall store opened");
        Ok(FjallStore {
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
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
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

    #[cfg(test)]
    async fn test_op(&self, op: Op) -> Result<(), StoreError> {
        self.write(op).await.map(|_| ())
    }
}

/// The writer answered with a result of the wrong kind (a bug, not a panic).
fn mismatch() -> StoreError {
    StoreError::Backend("internal error: unexpected writer reply".into())
}

impl Store for FjallStore {
    fn append(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(async move {
            match self.write(Op::Append(req)).await? {
                Done::Append(outcome) => Ok(outcome),
                _ => Err(mismatch()),
            }
        })
    }

    fn append_ordered(
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
        Box::pin(self.read(move |db| reader::sync_key(db, queue)))
    }

    fn set_sync_key(&self, queue: QueueId, key: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            match self.write(Op::SetSyncKey { queue, key }).await? {
                Done::Unit => Ok(()),
                _ => Err(mismatch()),
            }
        })
    }

    fn group_sync_key(&self, queue: QueueId, gid: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.read(move |db| reader::group_sync_key(db, queue, gid)))
    }

    fn set_group_sync_key(&self, queue: QueueId, gid: i64, key: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            match self.write(Op::SetGroupSyncKey { queue, gid, key }).await? {
                Done::Unit => Ok(()),
                _ => Err(mismatch()),
            }
        })
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
    /// `Ok` once the writer is gone.
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
                info!("fjall store closed");
            }
            Ok(())
        })
    }
}

impl Drop for FjallStore {
    /// Stops the writer: it finishes what is queued (nobody waits for those
    /// replies any more, but they were promised to be attempted), closes the
    /// database and exits. Blocks for at most the batch in progress.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("fjall writer thread panicked");
        }
    }
}
