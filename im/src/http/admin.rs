//! The admin console: `/admin` (one embedded page, charts drawn by the page
//! itself, nothing fetched from elsewhere) and the JSON it polls every
//! second, `/admin/api/stats?since=T` (current figures plus the history
//! samples newer than `T`) and `/admin/api/user?uid=N[&appid=A]`.
//!
//! Access to the JSON: with `--api-token`, the bearer token (the page asks
//! for it once and keeps it in the browser's local storage); without one,
//! only clients on loopback, the same rule that keeps the token-less HTTP
//! API on a loopback address. The page itself holds no data and is public.

use super::error::ApiError;
use super::params::Params;
use crate::connection::ws::Peer;
use crate::metrics::{self, Transport};
use crate::node::{Node, Stats};
use crate::store::QueueId;
use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const PAGE: &str = include_str!("admin.html");
/// Rooms listed by size.
const TOP_ROOMS: usize = 20;

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

/// Token check for the console's JSON (see the module docs).
pub async fn guard(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(Peer(p))| *p);
    let token = node.cfg.api_token.as_deref();
    if allowed(token, req.headers(), peer) {
        return next.run(req).await;
    }
    let mut res = match token {
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"),
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin console answers other hosts only with --api-token set",
        ),
    }
    .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// With a token: the bearer must match. Without: loopback peers only; no
/// peer address means the HTTP API listener, which without a token may
/// only bind loopback (a config check).
fn allowed(token: Option<&str>, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    match token {
        Some(t) => super::bearer_matches(headers, t.as_bytes()),
        None => peer.is_none_or(|p| p.ip().is_loopback()),
    }
}

/// Current figures, and the history samples after `since` (Unix seconds).
pub async fn stats(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let since = p.opt_i64("since")?.unwrap_or(0).max(0) as u64;
    let open = metrics::open_connections();
    let connections: serde_json::Map<String, Value> = Transport::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), open[*t as usize].into()))
        .collect();
    let (users, authed) = node.registry.totals(None);
    let (rooms, room_members) = node.rooms.totals(None);
    let top_rooms: Vec<Value> = node
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
    Ok(Json(json!({
        "node": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": node.started.elapsed().as_secs(),
            "store": crate::config::redacted_store(&node.cfg.store).to_string(),
            "listen": node.cfg.listen.to_string(),
            "ws_listen": node.cfg.ws_listen.to_string(),
            "http_listen": node.cfg.http_listen.to_string(),
        },
        "now": {
            "connections": connections,
            "users": users,
            "authenticated_connections": authed,
            "rooms": rooms,
            "room_members": room_members,
            "logins_total": Stats::get(&node.stats.logins),
            "slow_consumer_drops_total": Stats::get(&node.stats.slow_consumer_drops),
            "frames_by_command": commands,
            "imr_links": links,
            "top_rooms": top_rooms,
        },
        "history": node.history.since(since),
    })))
}

/// Where a user is connected on this node, its queue head (newest message
/// id) and the sync key its clients last stored.
pub async fn user(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let uid = p.i64("uid")?;
    let appid = p.opt_i64("appid")?.unwrap_or(7);
    let queue = QueueId { appid, uid };
    let head = node
        .store
        .latest(queue, 1)
        .await?
        .last()
        .map_or(0, |m| m.msgid);
    let sync_key = node.store.sync_key(queue).await?;
    let connections = node.registry.connections(appid, uid);
    Ok(Json(json!({
        "appid": appid,
        "uid": uid,
        "online": !connections.is_empty(),
        "nodes": [{ "node": node.cfg.listen.to_string(), "connections": connections }],
        "queue_head": head,
        "sync_key": sync_key,
        "unsynced": (head - sync_key).max(0),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().expect("header"));
        h
    }

    #[test]
    fn console_json_needs_the_token_or_loopback() {
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let remote: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
        let none = HeaderMap::new();
        // No token configured: loopback and the HTTP listener only.
        assert!(allowed(None, &none, Some(local)));
        assert!(allowed(None, &none, None));
        assert!(!allowed(None, &none, Some(remote)));
        // A token: required from everywhere, loopback included.
        assert!(!allowed(Some("s3cret"), &none, Some(local)));
        assert!(!allowed(
            Some("s3cret"),
            &bearer("Bearer wrong"),
            Some(local)
        ));
        assert!(allowed(
            Some("s3cret"),
            &bearer("Bearer s3cret"),
            Some(remote)
        ));
    }
}
