//! Embedded single-node [`Store`] on SQLite.
//!
//! * [`schema`]: file layout, pragmas (WAL, `synchronous=FULL`) and version;
//! * [`writer`]: the one writer thread, group commit, dedup and id placement;
//! * [`reader`]: the read-only connection pool and read queries.
//!
//! Every write goes through the writer thread (so ids can be handed out from
//! an in-memory head cache without races) and resolves only after its batch
//! committed with an fsync. Reads go to separate connections and never wait
//! for the writer.

mod group;
mod reader;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use crate::store::{
    AppendOutcome, AppendRequest, QueueId, Store, StoreError, StoreFuture, StoredMessage,
    Unconfirmed, Window,
};
pub use group::SqliteGroupStore;
use reader::ReadPool;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use writer::{Done, Msg, Op, Writer};

/// Tuning knobs of [`SqliteStore`]; `Default` suits a production node.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a [`crate::store::DedupKey`] is remembered. A client resends
    /// within seconds of a lost ACK, so ten minutes is generous.
    pub dedup_window: Duration,
    /// Most requests committed in one transaction. Bounds the latency one
    /// batch adds; batches are normally much smaller than this.
    pub batch_max: usize,
    /// Requests that may wait for the writer before `append` applies
    /// backpressure to its callers.
    pub queue_capacity: usize,
    /// Read-only connections (WAL readers run in parallel with the writer).
    pub readers: usize,
    /// Page size of a newly created database file (ignored for existing ones).
    pub page_size: u32,
    /// Page cache of the write connection, in KiB (readers get a quarter).
    pub cache_kib: i64,
    /// WAL pages after which a commit checkpoints into the main file. Larger
    /// values let repeated writes to a queue's tail page coalesce before they
    /// are copied, at the price of a larger WAL file.
    pub wal_autocheckpoint: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            dedup_window: Duration::from_secs(600),
            batch_max: 1024,
            queue_capacity: 8192,
            readers: 2,
            page_size: 4096,
            cache_kib: 64 * 1024,
            wal_autocheckpoint: 10_000,
        }
    }
}

/// Counters of the writer's group commit (for metrics): `requests / batches`
/// is the average batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions the writer ran (committed or failed).
    pub batches: u64,
    /// Write requests those transactions carried.
    pub requests: u64,
}

/// State shared between the store handle and its writer thread.
struct Shared {
    closed: AtomicBool,
    batches: AtomicU64,
    requests: AtomicU64,
}

/// The embedded message store; see the module docs.
pub struct SqliteStore {
    /// `None` only while dropping: releasing it lets the writer drain and stop.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    thread: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens (or creates) `<dir>/ferry.db`, creating `dir` if missing, and
    /// starts the writer thread.
    pub fn open(dir: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        if opts.page_size < 512 || opts.page_size > 65536 || !opts.page_size.is_power_of_two() {
            return Err(StoreError::Invalid(format!(
                "page_size {} is not a power of two in 512..=65536",
                opts.page_size
            )));
        }
        let conn = schema::open_writer(dir, &opts)?;
        let readers = (0..opts.readers.max(1))
            .map(|_| schema::open_reader(dir, &opts))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let window_ms = i64::try_from(opts.dedup_window.as_millis()).unwrap_or(i64::MAX);
        let writer = Writer::new(conn, rx, Arc::clone(&shared), opts.batch_max, window_ms);
        let thread = std::thread::Builder::new()
            .name("ferry-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        info!(path = %dir.join(schema::DB_FILE).display(), "sqlite store opened");
        Ok(SqliteStore {
            tx: Some(tx),
            shared,
            readers: Arc::new(ReadPool::new(readers)),
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

    /// Runs a read query on the pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.readers.run(f).await
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

impl Store for SqliteStore {
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
        Box::pin(self.read(move |c| reader::window(c, queue, after, limit)))
    }

    fn latest(&self, queue: QueueId, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(self.read(move |c| reader::latest(c, queue, limit)))
    }

    fn count_after(&self, queue: QueueId, after: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.read(move |c| reader::count_after(c, queue, after)))
    }

    fn sync_key(&self, queue: QueueId) -> StoreFuture<'_, i64> {
        Box::pin(self.read(move |c| reader::sync_key(c, queue)))
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
        Box::pin(self.read(move |c| reader::group_sync_key(c, queue, gid)))
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
                .read(move |c| reader::device_number(c, &id, platform))
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
                self.readers.shutdown();
                info!("sqlite store closed");
            }
            Ok(())
        })
    }
}

impl Drop for SqliteStore {
    /// Stops the writer: it finishes what is queued (nobody waits for those
    /// replies any more, but they were promised to be attempted), closes the
    /// connection and exits. Blocks for at most the batch in progress.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("sqlite writer thread panicked");
        }
    }
}
