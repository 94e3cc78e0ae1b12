//! Groups on an im node: a membership cache in front of the [`GroupStore`],
//! kept exact across nodes by invalidation through the imrs (link command
//! GROUP_CHANGED), the group send paths ([`send`]) and the management
//! operations behind the HTTP API ([`manage`]).
//!
//! The cache only ever serves the *member list* used for fan-out. Whether a
//! sender may send (member, not muted) is read fresh from the store on every
//! send, so a mute or a removal is effective on every node the moment the
//! store write returns, without waiting for the invalidation to arrive.

pub mod feed;
pub mod manage;
pub mod send;
pub mod turns;

use crate::store::StoreError;
use crate::store::group::{Group, GroupStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Most groups cached per node; past it the cache is emptied (groups are
/// reloaded on next use), which bounds memory without a sweeper task.
const CACHE_MAX: usize = 50_000;

/// Lock stripes that serialise fan-outs of one group on this node.
const ORDER_STRIPES: usize = 256;

pub struct Groups {
    pub store: Arc<dyn GroupStore>,
    cache: Mutex<HashMap<(i64, i64), Arc<Group>>>,
    /// Bumped on every invalidation: a load that started before an
    /// invalidation must not put its (possibly stale) result in the cache.
    epoch: AtomicU64,
    /// Fan-outs of one group run one at a time on a node, so every member's
    /// queue gets the group's messages in the same order.
    order: Vec<tokio::sync::Mutex<()>>,
    /// Deliveries in storage order on stores that order appends.
    pub turns: turns::Turns,
}

impl Groups {
    pub fn new(store: Arc<dyn GroupStore>) -> Groups {
        Groups {
            store,
            cache: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            order: (0..ORDER_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            turns: turns::Turns::default(),
        }
    }

    /// The group from the cache, loading it on a miss.
    pub async fn get(&self, appid: i64, gid: i64) -> Result<Option<Arc<Group>>, StoreError> {
        self.get_version(appid, gid, None).await
    }

    /// Like [`Groups::get`], but a cached copy is used only if it has
    /// `version` (from a fresh [`GroupStore::standing`] read): then the
    /// member list is exact even if an invalidation is still on its way.
    pub async fn get_version(
        &self,
        appid: i64,
        gid: i64,
        version: Option<i64>,
    ) -> Result<Option<Arc<Group>>, StoreError> {
        if let Some(g) = self.cached(appid, gid)
            && version.is_none_or(|v| v == g.version)
        {
            return Ok(Some(g));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(g) = self.store.group(appid, gid).await? else {
            return Ok(None);
        };
        let g = Arc::new(g);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) == epoch {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert((appid, gid), g.clone());
        }
        Ok(Some(g))
    }

    /// The cached group, if any (no store access).
    pub fn cached(&self, appid: i64, gid: i64) -> Option<Arc<Group>> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(appid, gid))
            .cloned()
    }

    /// Drops the cached copy; the next use reloads it from the store.
    pub fn invalidate(&self, appid: i64, gid: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        cache.remove(&(appid, gid));
    }

    /// Drops every cached group (after an imr link gap, when GROUP_CHANGED
    /// frames may have been lost).
    pub fn clear(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        cache.clear();
    }

    /// The ordering lock of a group (striped, so the set stays bounded).
    pub fn order_lock(&self, appid: i64, gid: i64) -> &tokio::sync::Mutex<()> {
        let h = (appid as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(gid as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.order[(h >> 32) as usize % ORDER_STRIPES]
    }
}
