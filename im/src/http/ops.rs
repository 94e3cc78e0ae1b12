//! Operations endpoints: `/ready` (can this node serve traffic?) and
//! `/metrics` (Prometheus text format). Neither needs the API token, like
//! `/health`: probes and scrapers run without credentials, and neither
//! reveals message content.

use crate::node::Node;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// 200 when the store answers and every imr link is up; 503 otherwise,
/// with what is down.
pub async fn ready(State(node): State<Arc<Node>>) -> Response {
    let probe = crate::store::QueueId { appid: 0, uid: 0 };
    let store_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), node.store.sync_key(probe)).await,
        Ok(Ok(_))
    );
    let links: Vec<_> = node
        .delivery
        .cluster
        .iter()
        .flat_map(|c| c.links())
        .map(|l| json!({ "imr": l.addr, "up": l.up.load(Ordering::Relaxed) }))
        .collect();
    let links_ok = node.delivery.cluster.as_ref().is_none_or(|c| c.all_up());
    let shutting_down = node.shutdown.is_cancelled();
    let ok = store_ok && links_ok && !shutting_down;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "store": store_ok,
        "imr_links": links,
        "shutting_down": shutting_down,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&node),
    )
        .into_response()
}
