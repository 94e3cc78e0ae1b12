//! The admin console's figures as JSON, in one place: `/admin/api/*` shows
//! them for the node it is served from, and the node answers other nodes'
//! NODE_QUERY with the same objects (see [`crate::cluster::NodeQueries`]),
//! so a console on any node shows every node alike.

use crate::metrics::{self, Transport};
use crate::node::Node;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Rooms listed by size.
const TOP_ROOMS: usize = 20;

/// The name a console shows for this node: host name and client port, so
/// nodes that all listen on `0.0.0.0:23000` on different hosts differ.
pub fn node_name(node: &Node) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", node.cfg.listen.port())
}

/// Who this node is: its name and the addresses it serves.
pub fn identity(node: &Node) -> Value {
    json!({
        "name": node_name(node),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": node.started.elapsed().as_secs(),
        "store": crate::config::redacted_store(&node.cfg.store).to_string(),
        "listen": node.cfg.listen.to_string(),
        "ws_listen": node.cfg.ws_listen.to_string(),
        "http_listen": node.cfg.http_listen.to_string(),
    })
}

/// Identity, current figures and the history samples after Unix second
/// `since`: `{"node", "now", "history"}`.
pub fn figures(node: &Node, since: u64) -> Value {
    let open = node.metrics.open_connections();
    let connections: serde_json::Map<String, Value> = Transport::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), open[*t as usize].into()))
        .collect();
    let (users, authed) = node.delivery.registry.totals(None);
    let (rooms, room_members) = node.delivery.rooms.totals(None);
    let top_rooms: Vec<Value> = node
        .delivery
        .rooms
        .largest(TOP_ROOMS)
        .into_iter()
        .map(|(appid, room, members)| json!({ "appid": appid, "room": room, "members": members }))
        .collect();
    let commands: Vec<Value> = node
        .history
        .by_command()
        .into_iter()
        .map(|(cmd, i, o)| json!({ "cmd": metrics::command_name(cmd), "in": i, "out": o }))
        .collect();
    let links: Vec<Value> = node
        .delivery
        .cluster
        .iter()
        .flat_map(|c| c.links())
        .map(|l| {
            json!({
                "imr": l.addr.to_string(),
                "up": l.up.load(Ordering::Relaxed),
                "queued_bytes": l.queued_bytes(),
                "sent_frames": l.stats.sent_frames.load(Ordering::Relaxed),
                "dropped_frames": l.stats.dropped_frames.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "node": identity(node),
        "now": {
            "connections": connections,
            "users": users,
            "authenticated_connections": authed,
            "rooms": rooms,
            "room_members": room_members,
            "logins_total": node.metrics.logins.get(),
            "slow_consumer_drops_total": node.metrics.slow_consumer_drops(),
            "frames_by_command": commands,
            "imr_links": links,
            "top_rooms": top_rooms,
        },
        "history": node.history.since(since),
    })
}

/// The user's connections on this node: `{"node": name, "connections"}`.
pub fn user_here(node: &Node, appid: i64, uid: i64) -> Value {
    json!({
        "node": node_name(node),
        "connections": node.delivery.registry.connections(appid, uid),
    })
}

/// Samples the node's figures into its [`crate::history`] every second
/// until it shuts down.
pub async fn sample_history(node: Arc<Node>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = node.shutdown.cancelled() => return,
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let queued: u64 = node
            .delivery
            .cluster
            .iter()
            .flat_map(|c| c.links())
            .map(|l| l.queued_bytes() as u64)
            .sum();
        node.history.sample(&node.metrics, queued, t);
    }
}
