//! The web demo (`/demo`): one self-contained page that speaks the binary
//! protocol over this node's WebSocket listener. It is served on that
//! listener (the address to open in a browser) and, for scripts, on the HTTP
//! port too. With `--dev-tokens`,
//! `/dev/token?uid=N[&appid=A]` mints login tokens for it — a development
//! aid only: anyone who reaches the HTTP or WebSocket port can then log in
//! as anyone.

use crate::config::AuthMethod;
use crate::node::Node;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const PAGE: &str = include_str!("demo.html");

/// The page as served on the HTTP port: it connects to `--ws-listen`.
pub async fn page(State(node): State<Arc<Node>>) -> Response {
    html(&node.cfg.ws_listen.port().to_string())
}

/// The page as served on a WebSocket listener: it connects back to the host
/// and port it was loaded from (an empty port tells it so), which also picks
/// `wss://` when loaded over `https://`.
pub async fn page_here() -> Response {
    html("")
}

fn html(ws_port: &str) -> Response {
    let html = PAGE.replace("{{WS_PORT}}", ws_port);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct TokenQuery {
    uid: i64,
    appid: Option<i64>,
}

pub async fn dev_token(State(node): State<Arc<Node>>, q: Query<TokenQuery>) -> Response {
    if !node.cfg.dev_tokens || node.cfg.auth != AuthMethod::Jwt {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if q.uid == 0 {
        return (StatusCode::BAD_REQUEST, "uid must not be 0").into_response();
    }
    let key = match crate::auth::load_or_create_secret(
        node.cfg.jwt_secret.as_deref(),
        &node.cfg.data_dir,
    ) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "dev token: cannot load the JWT secret");
            return (StatusCode::INTERNAL_SERVER_ERROR, "no JWT secret").into_response();
        }
    };
    let claims = ferry_common::token::Claims {
        appid: q.appid.unwrap_or(7),
        uid: q.uid,
        exp: None,
        nbf: None,
    };
    axum::Json(json!({ "token": ferry_common::token::sign(&claims, &key) })).into_response()
}
