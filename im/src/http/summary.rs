//! `/summary` (spec §6.1): node counters, plus one app's users and rooms.

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// gobelieve's meanings: `connection_count` = open client sockets (logged in
/// or not), `client_count` = logged-in connections, `clientset_count` =
/// distinct logged-in users. `goroutine_count` reports the tokio runtime's
/// alive tasks, the closest equivalent.
pub async fn summary(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let appid = p.opt_i64("appid")?;
    let (users, clients) = node.delivery.registry.totals(None);
    let mut obj = Map::new();
    obj.insert(
        "goroutine_count".into(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            .into(),
    );
    obj.insert("connection_count".into(), node.metrics.open_total().into());
    obj.insert("client_count".into(), clients.into());
    obj.insert("clientset_count".into(), users.into());
    obj.insert(
        "in_message_count".into(),
        crate::metrics::frames_total(true).into(),
    );
    obj.insert(
        "out_message_count".into(),
        crate::metrics::frames_total(false).into(),
    );
    obj.insert(
        "slow_consumer_drops".into(),
        node.metrics.slow_consumer_drops().into(),
    );
    let m = &node.metrics;
    for (name, c) in [
        ("refused_connections", &m.refused_connections),
        ("refused_user_connections", &m.refused_user_connections),
        ("refused_memory", &m.refused_memory),
        ("auth_timeouts", &m.auth_timeouts),
        ("rate_limited", &m.rate_limited),
    ] {
        obj.insert(name.into(), c.get().into());
    }
    if let Some(appid) = appid.filter(|&a| a != 0) {
        let (users, clients) = node.delivery.registry.totals(Some(appid));
        let (rooms, room_clients) = node.delivery.rooms.totals(Some(appid));
        obj.insert(
            format!("app_{appid}"),
            json!({
                "clientset_count": users,
                "client_count": clients,
                "room_count": rooms,
                "room_client_count": room_clients,
            }),
        );
    }
    Ok(Json(Value::Object(obj)))
}
