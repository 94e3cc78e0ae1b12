//! The committer thread: the second stage of the pipelined group commit.
//!
//! It receives one prepared batch at a time from the writer, commits it
//! (atomic, synced before it becomes visible), sends every reply of the batch
//! the moment the sync returned, and reports back, so the writer can hand
//! over the next batch it built meanwhile. A request never waits for a batch
//! it does not belong to, except the one in flight when it arrived.

use super::EngineState;
use super::kv::Kv;
use super::message::{Done, Msg, Reply};
use crate::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use tokio::sync::mpsc;
use tracing::warn;

/// A batch ready to commit, with the replies it owes.
pub(crate) struct Prepared<K: Kv> {
    pub(crate) db: Arc<K>,
    pub(crate) batch: K::Batch,
    pub(crate) replies: Vec<(Reply, Result<Done, StoreError>)>,
    pub(crate) requests: usize,
    /// Sync keys the batch carries (they leave the pending map once durable).
    pub(crate) sync_keys: Vec<(Vec<u8>, i64)>,
}

/// A batch that failed: the writer recovers the store first, then answers
/// these requests, so a caller that sees the error finds the store usable.
pub(crate) struct Failed {
    pub(crate) error: String,
    pub(crate) replies: Vec<(Reply, Result<Done, StoreError>)>,
}

impl Failed {
    /// Answers every request with the batch's error; requests refused
    /// before touching the database keep their own.
    pub(crate) fn answer(self) {
        let msg = format!("write batch failed: {}", self.error);
        for (reply, res) in self.replies {
            let err = match res {
                Err(StoreError::Invalid(why)) => StoreError::Invalid(why),
                _ => StoreError::Backend(msg.clone()),
            };
            let _ = reply.send(Err(err));
        }
    }
}

/// What the committer reports for each batch.
pub(crate) type Outcome = Result<(), Failed>;

/// Starts the committer. It reports every batch's [`Outcome`] on `done` and
/// nudges the writer through `wake`; it stops when the writer drops its
/// sender.
pub(crate) fn spawn<K: Kv>(
    rx: std_mpsc::Receiver<Prepared<K>>,
    done: std_mpsc::Sender<Outcome>,
    wake: mpsc::WeakSender<Msg>,
    shared: Arc<EngineState<K>>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("ferry-store-commit".into())
        .spawn(move || {
            for p in rx {
                let outcome = commit(p, &shared);
                if done.send(outcome).is_err() {
                    break;
                }
                // If the channel is full the writer has messages to read and
                // checks `done` before each of them.
                if let Some(tx) = wake.upgrade() {
                    let _ = tx.try_send(Msg::Wake);
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start committer thread: {e}")))
}

/// Commits one batch and, if it is durable, answers its requests.
fn commit<K: Kv>(p: Prepared<K>, shared: &EngineState<K>) -> Outcome {
    let result = p.db.commit(p.batch);
    drop(p.db);
    // Counted once the batch is decided, so a reader of the counters knows
    // its outcome is settled.
    shared.batches.fetch_add(1, Ordering::Relaxed);
    shared
        .requests
        .fetch_add(p.requests as u64, Ordering::Relaxed);
    match result {
        Ok(()) => {
            shared.sync_keys.committed(&p.sync_keys);
            for (reply, res) in p.replies {
                let _ = reply.send(res);
            }
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, requests = p.requests, "write batch failed, reopening the store");
            Err(Failed {
                error: e.to_string(),
                replies: p.replies,
            })
        }
    }
}
