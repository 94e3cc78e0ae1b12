//! Presence events, debounced: a user's first connection on this node makes
//! it "online", its last connection gone makes it "offline" only once
//! `--presence-grace` has passed without a new login here — so a reconnect
//! (network change, app restart) is no change at all.
//!
//! In a cluster a user can move between nodes: before emitting, the node
//! asks the user's home imr whether the user has devices on another node.
//! "offline" is sent only when none remain anywhere; "online" is not sent
//! when the user was already online elsewhere. (Two nodes can still both
//! report "online" when logins race; events carry the state, not a delta,
//! so a repeat is harmless.)
//!
//! Pending offlines sit in one map checked by one node-wide timer, not a
//! task per user.

use super::events::{Event, EventKind};
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often expired grace periods are looked for.
const TICK: Duration = Duration::from_millis(100);

impl Node {
    fn presence_events(&self) -> bool {
        self.hooks
            .as_ref()
            .is_some_and(|h| h.wants(EventKind::Presence))
    }

    /// The user's first connection on this node logged in.
    pub fn presence_arrived(self: &Arc<Self>, appid: i64, uid: i64) {
        if !self.presence_events() {
            return;
        }
        if self.presence_tracker.lock().remove(&(appid, uid)).is_some() {
            return; // back within the grace period: no change
        }
        let node = self.clone();
        tokio::spawn(async move {
            if !node.online_elsewhere(appid, uid).await {
                node.emit_presence(appid, uid, true);
            }
        });
    }

    /// The user's last connection on this node ended.
    pub fn presence_left(&self, appid: i64, uid: i64) {
        if !self.presence_events() {
            return;
        }
        let deadline = Instant::now() + self.cfg.presence_grace;
        self.presence_tracker.lock().insert((appid, uid), deadline);
    }

    fn emit_presence(&self, appid: i64, uid: i64, online: bool) {
        if let Some(h) = &self.hooks {
            h.emit(Event::Presence { appid, uid, online });
        }
    }

    /// Whether the user has devices on another node (cluster only). An
    /// unanswered query counts as "no": the event is sent rather than lost.
    async fn online_elsewhere(&self, appid: i64, uid: i64) -> bool {
        if self.delivery.cluster.is_none() {
            return false;
        }
        match self.presence(appid, &[uid]).await {
            Ok(users) => users
                .iter()
                .flat_map(|u| &u.devices)
                .any(|d| d.node != self.cfg.node_name),
            Err(e) => {
                tracing::debug!(appid, uid, error = %e, "presence check failed; emitting the event");
                false
            }
        }
    }
}

/// Emits "offline" for users whose grace period passed without a new login
/// here. Runs until shutdown.
pub async fn run_timer(node: Arc<Node>) {
    if !node.presence_events() {
        return;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let expired: Vec<(i64, i64)> = {
            let mut p = node.presence_tracker.lock();
            let due: Vec<(i64, i64)> = p
                .iter()
                .filter(|(_, d)| **d <= now)
                .map(|(k, _)| *k)
                .collect();
            for k in &due {
                p.remove(k);
            }
            due
        };
        for (appid, uid) in expired {
            let n = node.clone();
            tokio::spawn(async move {
                if n.delivery.registry.count(appid, uid) == 0
                    && !n.online_elsewhere(appid, uid).await
                {
                    n.emit_presence(appid, uid, false);
                }
                if let Some(h) = &n.hooks {
                    h.stats
                        .presence_expired
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    }
}
