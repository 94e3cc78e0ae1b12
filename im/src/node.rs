//! Everything one im node shares between its connections and its HTTP API.

use crate::auth::Authenticator;
use crate::config::ImConfig;
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/summary` (and later `/metrics`).
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub in_messages: AtomicU64,
    pub out_messages: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Node {
    pub cfg: ImConfig,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub registry: Registry,
    pub rooms: Rooms,
    pub stats: Stats,
}

impl Node {
    pub fn new(cfg: ImConfig, store: Arc<dyn Store>, auth: Authenticator) -> Node {
        Node {
            cfg,
            store,
            auth,
            registry: Registry::default(),
            rooms: Rooms::default(),
            stats: Stats::default(),
        }
    }
}

/// Current Unix time in seconds, as message timestamps carry it.
pub fn now_secs() -> i32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i32)
}
