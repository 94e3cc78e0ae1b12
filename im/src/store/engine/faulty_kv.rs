//! A [`Kv`] wrapper that injects the faults a disk can produce into the
//! commits of the backend it wraps, so the engine's tests can make batches
//! fail or stall without the writer or the committer carrying test-only
//! branches.
//!
//! The [`Faults`] handle travels in the backend's config, so the store the
//! writer reopens after a failed batch obeys the same handle.

use super::kv::{Kv, Order, Space, Visit, Write};
use crate::store::StoreError;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use tokio::sync::Notify;

/// What the next commits will do, set by a test.
#[derive(Default)]
struct Armed {
    /// Commits to refuse before anything is written (a full disk).
    fail: u32,
    /// Commits to write and then report failed (a sync error after the
    /// write reached the disk).
    fail_after_write: u32,
    /// The next commit blocks until [`Faults::release`].
    stall: bool,
    /// A commit is blocked, waiting for [`Faults::release`].
    blocked: bool,
}

/// The faults shared by a test and every [`FaultyKv`] opened with them.
#[derive(Default)]
pub(crate) struct Faults {
    armed: Mutex<Armed>,
    released: Condvar,
    /// Signalled when a commit starts to stall.
    stalled: Notify,
}

impl Faults {
    fn armed(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` commits fail before anything is written.
    pub(crate) fn fail_next(&self, n: u32) {
        self.armed().fail = n;
    }

    /// The next `n` commits are written, then reported failed.
    pub(crate) fn fail_after_write(&self, n: u32) {
        self.armed().fail_after_write = n;
    }

    /// The next commit blocks until [`Faults::release`] (a slow sync).
    pub(crate) fn stall_next(&self) {
        self.armed().stall = true;
    }

    /// Waits until a commit armed by [`Faults::stall_next`] is blocked.
    pub(crate) async fn stalled(&self) {
        self.stalled.notified().await;
    }

    /// Lets the stalled commit go on (a stall armed meanwhile applies to
    /// the next commit).
    pub(crate) fn release(&self) {
        self.armed().blocked = false;
        self.released.notify_all();
    }

    /// Decides one commit's fate when it starts (so faults armed while it
    /// is stalled apply to the commits after it), then stalls if armed to.
    fn on_commit(&self) -> Fate {
        let mut a = self.armed();
        let fate = if a.fail > 0 {
            a.fail -= 1;
            Fate::Fail
        } else if a.fail_after_write > 0 {
            a.fail_after_write -= 1;
            Fate::FailAfterWrite
        } else {
            Fate::Commit
        };
        if std::mem::take(&mut a.stall) {
            a.blocked = true;
            self.stalled.notify_one();
            while a.blocked {
                a = self
                    .released
                    .wait(a)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        fate
    }
}

enum Fate {
    Commit,
    Fail,
    FailAfterWrite,
}

/// `K` with the commit faults of a [`Faults`] handle.
pub(crate) struct FaultyKv<K> {
    inner: K,
    faults: Arc<Faults>,
}

impl<K: Kv> Kv for FaultyKv<K> {
    type Config = (K::Config, Arc<Faults>);
    type Batch = K::Batch;

    fn open(dir: &Path, (config, faults): &Self::Config) -> Result<Self, StoreError> {
        Ok(FaultyKv {
            inner: K::open(dir, config)?,
            faults: Arc::clone(faults),
        })
    }

    fn batch(&self, capacity: usize) -> Self::Batch {
        self.inner.batch(capacity)
    }

    fn stage(&self, batch: &mut Self::Batch, write: Write<'_>) {
        self.inner.stage(batch, write);
    }

    fn commit(&self, batch: Self::Batch) -> Result<(), StoreError> {
        match self.faults.on_commit() {
            Fate::Commit => self.inner.commit(batch),
            Fate::Fail => Err(StoreError::Backend("injected commit failure".into())),
            Fate::FailAfterWrite => {
                self.inner.commit(batch)?;
                Err(StoreError::Backend("injected fsync failure".into()))
            }
        }
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        order: Order,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan(space, from, to, order, visit)
    }
}
