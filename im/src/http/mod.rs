//! The im HTTP API (spec §6.1): gobelieve's paths, query names, JSON bodies
//! and `{"meta":{"code","message"}}` errors, any HTTP method on every API path.
//!
//! Differences from gobelieve, all deliberate:
//! * with `--api-token`, every path except `/health`, `/ready`, `/metrics`,
//!   `/demo`, `/admin` (whose JSON checks the token itself) and
//!   `/dev/token` (which exists only with `--dev-tokens`) needs
//!   `Authorization: Bearer <token>` (401 otherwise);
//! * the browser pages (`/demo`, `/admin`) are also served on the WebSocket
//!   listeners ([`pages`]): browsers refuse to open port 6666 at all
//!   (ERR_UNSAFE_PORT: 6665–6669 are on their blocked-port lists);
//! * a storage failure is a 500 on every endpoint (gobelieve answers 200 on
//!   `post_peer_message` and fails the request on `load_history_message`);
//! * request bodies are limited to [`BODY_LIMIT`] (413), and message content
//!   must fit a client frame (400), so the API never accepts a message that
//!   no client could receive;
//! * `post_peer_message` also pushes the message (exact METADATA) before the
//!   SYNC_NOTIFY, like a client send.

mod admin;
mod demo;
mod error;
#[cfg(test)]
mod fuzz;
mod groups;
mod load;
mod ops;
mod params;
mod post;
mod presence;
mod relations;
mod summary;

pub use error::ApiError;
pub use params::BODY_LIMIT;

use crate::node::Node;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the API on `listener` until the node shuts down (in-flight
/// requests are finished first).
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let stop = node.shutdown.clone().cancelled_owned();
    if let Err(e) = axum::serve(listener, router(node))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "http api stopped");
    }
}

/// All routes, with the token check when one is configured.
pub fn router(node: Arc<Node>) -> Router {
    let mut api = Router::new()
        .route("/post_peer_message", any(post::peer_message))
        .route("/post_system_message", any(post::system_message))
        .route("/post_notification", any(post::notification))
        .route("/post_broadcast", any(post::broadcast))
        .route("/post_room_message", any(post::room_message))
        .route("/post_realtime_message", any(post::realtime_message))
        .route("/post_customer_message", any(post::customer_message))
        .route("/post_group_message", any(groups::post_group_message))
        .route(
            "/post_group_notification",
            any(groups::post_group_notification),
        )
        .route("/get_offline_count", any(load::offline_count))
        .route("/load_latest_message", any(load::latest))
        .route("/load_history_message", any(load::history))
        .route("/summary", any(summary::summary))
        .route("/users/online", any(presence::online))
        .route("/users/{uid}/presence", any(presence::user))
        .merge(group_routes())
        .fallback(not_found);
    if let Some(token) = &node.cfg.api_token {
        let token: Arc<[u8]> = token.as_bytes().into();
        api = api.layer(middleware::from_fn_with_state(token, require_token));
    }
    // Added after the token layer: liveness probes need no credentials
    // (and the console checks the token itself).
    api.merge(admin_routes(&node))
        .route("/health", any(health))
        .route("/ready", any(ops::ready))
        .route("/metrics", any(ops::metrics))
        .route("/demo", any(demo::page))
        .route("/dev/token", any(demo::dev_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(node)
}

/// The browser pages for a WebSocket listener (`--ws-listen`,
/// `--wss-listen`): `/demo` (which then connects back to the listener it was
/// loaded from), `/dev/token` for it, and the admin console `/admin`. The HTTP API stays on its own port
/// for gobelieve's servers; browsers can only reach pages here, because
/// they refuse the HTTP port 6666 outright.
pub fn pages(node: Arc<Node>) -> Router {
    admin_routes(&node)
        .route("/demo", any(demo::page_here))
        .route("/dev/token", any(demo::dev_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(node)
}

/// The admin console's page and JSON (see `admin.rs` for who may read it).
fn admin_routes(node: &Arc<Node>) -> Router<Arc<Node>> {
    use axum::routing::get;
    Router::new()
        .route("/admin/api/stats", get(admin::stats))
        .route("/admin/api/user", get(admin::user))
        .layer(middleware::from_fn_with_state(node.clone(), admin::guard))
        .route("/admin", get(admin::page))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The group management API (REST methods; see `groups.rs`), with a body
/// limit that fits large member lists.
fn group_routes() -> Router<Arc<Node>> {
    use axum::routing::{delete, get, post};
    Router::new()
        .route("/groups", post(groups::create).fallback(method_not_allowed))
        .route(
            "/groups/{gid}",
            get(groups::get)
                .delete(groups::delete)
                .fallback(method_not_allowed),
        )
        .route(
            "/groups/{gid}/members",
            post(groups::add_members).fallback(method_not_allowed),
        )
        .route(
            "/groups/{gid}/members/{uid}",
            delete(groups::remove_member).fallback(method_not_allowed),
        )
        .route(
            "/groups/{gid}/mute",
            post(groups::mute).fallback(method_not_allowed),
        )
        .route(
            "/groups/{gid}/upgrade",
            post(groups::upgrade).fallback(method_not_allowed),
        )
        .route(
            "/users/{uid}/friends",
            get(relations::friends).fallback(method_not_allowed),
        )
        .route(
            "/users/{uid}/friends/{fid}",
            axum::routing::put(relations::put_friend)
                .delete(relations::delete_friend)
                .fallback(method_not_allowed),
        )
        .route(
            "/users/{uid}/blacklist",
            get(relations::blacklist).fallback(method_not_allowed),
        )
        .route(
            "/users/{uid}/blacklist/{bid}",
            axum::routing::put(relations::put_blocked)
                .delete(relations::delete_blocked)
                .fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(groups::GROUP_BODY_LIMIT))
}

async fn require_token(State(token): State<Arc<[u8]>>, req: Request, next: Next) -> Response {
    if bearer_matches(req.headers(), &token) {
        return next.run(req).await;
    }
    tracing::debug!(
        path = req.uri().path(),
        "http api: missing or wrong bearer token"
    );
    let mut res =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token").into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), compared in
/// constant time for a given length.
fn bearer_matches(headers: &HeaderMap, token: &[u8]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(sp) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(sp);
    scheme.eq_ignore_ascii_case(b"bearer") && constant_time_eq(rest.trim_ascii(), token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
