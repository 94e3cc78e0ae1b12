//! imr HTTP API (spec §6.2 plus health/stats):
//!
//! * `GET /online?appid=&uid=` → `{"online": true|false}`
//! * `GET /all_online` → `[{"appid": N, "users": [uid…]}, …]` (every subscribed user)
//! * `GET /subscribers?appid=&uid=` → `{"links": N, "online": M}`: how many im
//!   links have the user subscribed, and how many of them mark it online
//! * `GET /subscribers?appid=&room=` → `{"links": N}`: im links in the room
//!   (operators and tests use these to see where a user or room is routed)
//! * `GET /health` → `{"status":"ok","links":N,"redis":"up"|"down"|"disabled","push_buffered":N,
//!   "subscriptions":N}`
//! * `GET /stats` → all counters
//! * `GET /metrics` → the same counters in the Prometheus text format
//!
//! Bad parameters → 400 `{"meta":{"code":400,"message":"…"}}`.

use crate::state::ImrState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) fn router(sh: Arc<ImrState>) -> Router {
    Router::new()
        .route("/online", get(online))
        .route("/all_online", get(all_online))
        .route("/subscribers", get(subscribers))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(sh)
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"meta": {"code": 400, "message": message.into()}})),
    )
        .into_response()
}

fn int_param(q: &HashMap<String, String>, name: &str) -> Result<i64, String> {
    match q.get(name) {
        None => Err(format!("missing parameter {name}")),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("parameter {name} must be an integer")),
    }
}

async fn online(
    State(sh): State<Arc<ImrState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_request("malformed query string");
    };
    match (int_param(&q, "appid"), int_param(&q, "uid")) {
        (Ok(appid), Ok(uid)) => {
            Json(json!({"online": sh.registry.is_online(appid, uid)})).into_response()
        }
        (Err(e), _) | (_, Err(e)) => bad_request(e),
    }
}

async fn subscribers(
    State(sh): State<Arc<ImrState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_request("malformed query string");
    };
    let appid = match int_param(&q, "appid") {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if q.contains_key("room") {
        return match int_param(&q, "room") {
            Ok(room) => Json(json!({"links": sh.registry.room_links(appid, room)})).into_response(),
            Err(e) => bad_request(e),
        };
    }
    match int_param(&q, "uid") {
        Ok(uid) => {
            let (links, online) = sh.registry.user_links(appid, uid);
            Json(json!({"links": links, "online": online})).into_response()
        }
        Err(e) => bad_request(e),
    }
}

#[derive(Serialize)]
struct AppUsers {
    appid: i64,
    users: Vec<i64>,
}

async fn all_online(State(sh): State<Arc<ImrState>>) -> Json<Vec<AppUsers>> {
    Json(
        sh.registry
            .all_users()
            .into_iter()
            .map(|(appid, users)| AppUsers {
                appid,
                users: users.into_iter().collect(),
            })
            .collect(),
    )
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    links: usize,
    redis: &'static str,
    push_buffered: u64,
    /// (appid, uid) subscriptions over all links (a user on two ims counts twice).
    subscriptions: usize,
}

async fn health(State(sh): State<Arc<ImrState>>) -> Json<Health> {
    let redis = if sh.push.is_none() {
        "disabled"
    } else if sh.stats.redis_up.load(Ordering::Relaxed) {
        "up"
    } else {
        "down"
    };
    Json(Health {
        status: "ok",
        links: sh.registry.len(),
        redis,
        push_buffered: sh.stats.push_buffered.load(Ordering::Relaxed),
        subscriptions: sh.registry.subscriptions(),
    })
}

async fn stats(State(sh): State<Arc<ImrState>>) -> Json<crate::stats::StatsSnapshot> {
    Json(sh.stats.snapshot())
}

/// Every counter of [`crate::stats::StatsSnapshot`] as `ferry_imr_<name>`;
/// the levels (links, push buffer depth, Redis state) are gauges, the rest
/// monotonic counters with a `_total` suffix.
async fn metrics(State(sh): State<Arc<ImrState>>) -> Response {
    use std::fmt::Write;
    const GAUGES: [&str; 3] = ["links", "push_buffered", "redis_up"];
    let snap = serde_json::to_value(sh.stats.snapshot()).unwrap_or_default();
    let mut out = String::new();
    if let Some(fields) = snap.as_object() {
        for (name, v) in fields {
            let n = match v {
                serde_json::Value::Bool(b) => u64::from(*b),
                v => v.as_u64().unwrap_or(0),
            };
            let (metric, kind) = if GAUGES.contains(&name.as_str()) {
                (format!("ferry_imr_{name}"), "gauge")
            } else if name.ends_with("_total") {
                (format!("ferry_imr_{name}"), "counter")
            } else {
                (format!("ferry_imr_{name}_total"), "counter")
            };
            let _ = writeln!(out, "# TYPE {metric} {kind}\n{metric} {n}");
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
