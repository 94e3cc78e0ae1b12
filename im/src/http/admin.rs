//! The admin console: `/admin` (one embedded page, charts drawn by the page
//! itself, nothing fetched from elsewhere) and the JSON it polls every
//! second, `/admin/api/stats?since=T` (current figures plus the history
//! samples newer than `T`) and `/admin/api/user?uid=N[&appid=A]`. On a
//! cluster both also carry every other node's answer, asked through the
//! imrs (`cluster::NodeQueries`), so one console shows the whole cluster.
//!
//! Access to the JSON: with `--api-token`, the bearer token (the page asks
//! for it once and keeps it in the browser's local storage); without one,
//! only clients on loopback, the same rule that keeps the token-less HTTP
//! API on a loopback address. The page itself holds no data and is public.

use super::error::ApiError;
use super::params::Params;
use crate::connection::ws::Peer;
use crate::console;
use crate::node::Node;
use crate::store::QueueId;
use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_common::link::NodeAsk;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("admin.html");
/// How long a console request waits for the other nodes' answers; normally
/// they are all in long before (see `cluster::NodeQueries`), and the page
/// polls every second.
const CLUSTER_WAIT: Duration = Duration::from_millis(600);

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

/// Current figures, and the history samples after `since` (Unix seconds),
/// of this node and — on a cluster — of every other node reachable through
/// the imrs (`nodes`, each shaped like this node's top level).
pub async fn stats(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let since = p.opt_i64("since")?.unwrap_or(0).max(0) as u64;
    let mut out = console::figures(&node, since);
    let others = ask_others(&node, NodeAsk::Figures { since }).await;
    if let Value::Object(m) = &mut out {
        m.insert("cluster".into(), others);
    }
    Ok(Json(out))
}

/// Where a user is connected on every node, its queue head (newest message
/// id) and the sync key its clients last stored (the store is shared by
/// the nodes, so this node reads those).
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
    let mut nodes = vec![console::user_here(&node, appid, uid)];
    let others = ask_others(&node, NodeAsk::User { appid, uid }).await;
    if let Some(list) = others.get("nodes").and_then(Value::as_array) {
        nodes.extend(list.iter().cloned());
    }
    let online = nodes.iter().any(|n| {
        n.get("connections")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
    });
    Ok(Json(json!({
        "appid": appid,
        "uid": uid,
        "online": online,
        "nodes": nodes,
        "cluster_complete": others.get("complete").cloned().unwrap_or(Value::Bool(true)),
        "queue_head": head,
        "sync_key": sync_key,
        "unsynced": (head - sync_key).max(0),
    })))
}

/// The other nodes' answers: `{"imrs", "complete", "nodes": [...]}`, one
/// entry per node (a node answering through several imrs counts once),
/// sorted by name. A single node gets an empty list.
async fn ask_others(node: &Node, ask: NodeAsk) -> Value {
    let Some(cluster) = &node.delivery.cluster else {
        return json!({ "imrs": 0, "complete": true, "nodes": [] });
    };
    let g = cluster.nodes.ask(cluster, ask, CLUSTER_WAIT).await;
    let mut by_name = std::collections::BTreeMap::new();
    for a in &g.answers {
        let Ok(v) = serde_json::from_slice::<Value>(a) else {
            tracing::warn!("undecodable console answer from another node ignored");
            continue;
        };
        let name = match v.get("node") {
            Some(Value::String(s)) => s.clone(),
            Some(n) => n
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            None => continue,
        };
        by_name.entry(name).or_insert(v);
    }
    json!({
        "imrs": g.imrs,
        "complete": g.complete,
        "nodes": by_name.into_values().collect::<Vec<_>>(),
    })
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
