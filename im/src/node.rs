//! Where one im node is wired together: everything its connections and its
//! HTTP API share, built once at start ([`crate::server`]) and handed around
//! as `Arc<Node>`.
//!
//! The parts keep to their own concerns — [`Delivery`] reaches connected
//! users, [`Store`] keeps messages, [`Metrics`] counts, [`Limits`] admits —
//! and the flows that need several of them (store, then deliver) are
//! methods of `Node` in their own modules: [`crate::messaging`],
//! [`crate::groups`], [`crate::presence`].

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::ImConfig;
use crate::delivery::Delivery;
use crate::groups::Groups;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::group::GroupStore;
use std::sync::Arc;

pub struct Node {
    pub cfg: ImConfig,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    /// Connections, rooms and imr links: how frames reach people.
    pub delivery: Delivery,
    /// Group membership cache and store.
    pub groups: Groups,
    /// Every counter `/metrics`, `/summary` and the console report.
    pub metrics: Arc<Metrics>,
    /// Admission limits (connections per node and per user, memory guard).
    pub limits: Arc<Limits>,
    /// Random per-process prefix that makes ephemeral device numbers unique
    /// across nodes.
    pub node_tag: i64,
    /// Fired once on shutdown: listeners stop, connections flush and close.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every client connection task, so shutdown can wait for them.
    pub conns: tokio_util::task::TaskTracker,
    /// Every open connection's outbox, so shutdown can wake them.
    pub wake_list: crate::connection::wake_list::WakeList,
    /// `--hook-url` and friends; `None` without hooks.
    pub hooks: Option<crate::hooks::Hooks>,
    /// Users waiting out `--presence-grace` before an offline event.
    pub presence_tracker: crate::hooks::grace::Tracker,
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
        let metrics = Arc::new(Metrics::default());
        Node {
            limits: Limits::new(cfg.limits.clone(), metrics.clone()),
            metrics,
            cfg,
            store,
            auth,
            delivery: Delivery::new(cluster),
            groups: Groups::new(groups),
            node_tag: (u32::from_be_bytes(tag) & 0x7fff_ffff) as i64,
            shutdown: tokio_util::sync::CancellationToken::new(),
            conns: tokio_util::task::TaskTracker::new(),
            wake_list: Default::default(),
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
