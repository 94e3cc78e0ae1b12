//! Everything one im node shares between its connections and its HTTP API.

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::ImConfig;
use crate::groups::Groups;
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::store::Store;
use crate::store::group::GroupStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/summary` (and later `/metrics`).
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub in_messages: AtomicU64,
    pub out_messages: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    /// Connections refused by `--max-connections`.
    pub refused_connections: AtomicU64,
    /// Logins refused by `--max-connections-per-user`.
    pub refused_user_connections: AtomicU64,
    /// Connections refused by the `--max-rss` memory guard.
    pub refused_memory: AtomicU64,
    /// Connections closed for not logging in within `--auth-timeout`.
    pub auth_timeouts: AtomicU64,
    /// Connections closed for exceeding `--max-frames-per-sec`.
    pub rate_limited: AtomicU64,
    /// Successful logins (AUTH_TOKEN accepted), for the admin console.
    pub logins: AtomicU64,
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
    /// Group membership cache and store.
    pub groups: Groups,
    pub stats: Stats,
    /// Admission limits (connections per node and per user, memory guard).
    pub limits: std::sync::Arc<crate::limits::Limits>,
    /// Links to the imrs; `None` on a single node.
    pub cluster: Option<Cluster>,
    /// Random per-process prefix that makes ephemeral device numbers unique
    /// across nodes.
    pub node_tag: i64,
    /// Fired once on shutdown: listeners stop, connections flush and close.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every client connection task, so shutdown can wait for them.
    pub conns: tokio_util::task::TaskTracker,
    /// Every open connection's outbox, so shutdown can wake them.
    pub live: crate::connection::live::Live,
    /// `--hook-url` and friends; `None` without hooks.
    pub hooks: Option<crate::hooks::Hooks>,
    /// Users waiting out `--presence-grace` before an offline event.
    pub presence_tracker: crate::hooks::presence::Tracker,
    /// `--word-file` dictionary, applied to TEXT messages from clients.
    pub word_filter: Option<Arc<crate::wordfilter::WordFilter>>,
    /// Mutes announced on Redis `speak_forbidden`.
    pub forbidden: crate::forbidden::SpeakForbidden,
    /// Friendship/blacklist checks (`--enable-friendship`, `--enable-blacklist`).
    pub relations: Option<Arc<crate::relations::Relations>>,
    /// This process's random id in dedup records' origins (see
    /// [`crate::resend`]).
    pub incarnation: u64,
    /// ACK ledgers of open connections that sent msgid-carrying messages.
    pub ledgers: crate::resend::ledger::Ledgers,
    /// The last ten minutes of headline figures, for `/admin`.
    pub history: crate::history::History,
    /// When the node started, for the console's uptime.
    pub started: std::time::Instant,
}

impl Node {
    pub fn new(
        cfg: ImConfig,
        store: Arc<dyn Store>,
        groups: Arc<dyn GroupStore>,
        auth: Authenticator,
        cluster: Option<Cluster>,
    ) -> Node {
        let mut tag = [0u8; 4];
        let _ = getrandom::fill(&mut tag);
        let hooks = cfg
            .hooks
            .clone()
            .map(|h| crate::hooks::Hooks::new(h, &cfg.node_name));
        Node {
            limits: crate::limits::Limits::new(cfg.limits.clone()),
            cfg,
            store,
            auth,
            registry: Registry::default(),
            rooms: Rooms::default(),
            groups: Groups::new(groups),
            stats: Stats::default(),
            cluster,
            node_tag: (u32::from_be_bytes(tag) & 0x7fff_ffff) as i64,
            shutdown: tokio_util::sync::CancellationToken::new(),
            conns: tokio_util::task::TaskTracker::new(),
            live: Default::default(),
            hooks,
            presence_tracker: Default::default(),
            word_filter: None,
            forbidden: Default::default(),
            relations: None,
            incarnation: crate::resend::new_incarnation(),
            ledgers: Default::default(),
            history: Default::default(),
            started: std::time::Instant::now(),
        }
    }
}

/// Current Unix time in seconds, as message timestamps carry it.
pub fn now_secs() -> i32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i32)
}
