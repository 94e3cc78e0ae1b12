//! Sync keys (SYNC_KEY / GROUP_SYNC_KEY) coalesced between batches.
//!
//! A client reports its sync key after nearly every message it receives.
//! Writing each report and making the client wait for its fsync doubled the
//! writer's work and held the receiver's connection. Sync keys only grow and
//! losing the last one in a crash only re-sends a few messages the client
//! already has, so a report is just raised in this map and returns at once;
//! every batch carries the latest value per key, and an entry leaves the map
//! only once a batch with that value (or a larger one) is durable. When no
//! requests flow, a flush tick writes them within [`FLUSH_EVERY`] (a batch
//! of sync keys alone would otherwise cost a sync per report and delay the
//! next message behind it). Readers
//! consult the map first, so a key reads back as soon as it was set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Longest time a sync key waits for a batch when no requests flow.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Sync keys set but not yet durable (`meta` key → value).
#[derive(Default)]
pub(crate) struct PendingSyncKeys {
    keys: Mutex<HashMap<Vec<u8>, i64>>,
    /// Set when a key was raised since the writer last took them: the
    /// writer then has work even without requests.
    dirty: AtomicBool,
}

impl PendingSyncKeys {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, i64>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises `key` to `value`.
    pub(crate) fn raise(&self, key: Vec<u8>, value: i64) {
        {
            let mut map = self.map();
            let v = map.entry(key).or_insert(value);
            *v = (*v).max(value);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// The pending value of `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        self.map().get(key).copied()
    }

    /// True when any key waits to be written.
    pub(crate) fn has_any(&self) -> bool {
        !self.map().is_empty()
    }

    /// True when keys were raised since the last [`Self::take`].
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// A copy of every pending key for the next batch (entries stay until
    /// [`Self::committed`]).
    pub(crate) fn take(&self) -> Vec<(Vec<u8>, i64)> {
        self.dirty.store(false, Ordering::Release);
        self.map().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A batch carrying `written` is durable: drop the entries it covers
    /// (those not raised meanwhile).
    pub(crate) fn committed(&self, written: &[(Vec<u8>, i64)]) {
        if written.is_empty() {
            return;
        }
        let mut map = self.map();
        for (k, v) in written {
            if map.get(k).is_some_and(|p| p <= v) {
                map.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_coalesce_and_leave_once_committed() {
        let p = PendingSyncKeys::default();
        p.raise(b"a".to_vec(), 5);
        p.raise(b"a".to_vec(), 3);
        assert!(p.is_dirty());
        assert_eq!(p.get(b"a"), Some(5));
        let batch = p.take();
        assert_eq!(batch, vec![(b"a".to_vec(), 5)]);
        assert!(!p.is_dirty());
        // Raised again while that batch syncs: the newer value stays.
        p.raise(b"a".to_vec(), 9);
        p.committed(&batch);
        assert_eq!(p.get(b"a"), Some(9));
        p.committed(&p.take());
        assert_eq!(p.get(b"a"), None);
    }
}
