//! `/summary` (spec §6.1): node counters, plus one app's users and rooms.

use super::error::ApiError;
use super::params::Params;
use crate::node::{Node, Stats};
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
    let (users, clients) = node.registry.totals(None);
    let mut obj = Map::new();
    obj.insert(
        "goroutine_count".into(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            .into(),
    );
    obj.insert(
        "connection_count".into(),
        Stats::get(&node.stats.connections).into(),
    );
    obj.insert("client_count".into(), clients.into());
    obj.insert("clientset_count".into(), users.into());
    obj.insert(
        "in_message_count".into(),
        Stats::get(&node.stats.in_messages).into(),
    );
    obj.insert(
        "out_message_count".into(),
        Stats::get(&node.stats.out_messages).into(),
    );
    obj.insert(
        "slow_consumer_drops".into(),
        Stats::get(&node.stats.slow_consumer_drops).into(),
    );
    for (name, c) in [
        ("refused_connections", &node.stats.refused_connections),
        (
            "refused_user_connections",
            &node.stats.refused_user_connections,
        ),
        ("refused_memory", &node.stats.refused_memory),
        ("auth_timeouts", &node.stats.auth_timeouts),
        ("rate_limited", &node.stats.rate_limited),
    ] {
        obj.insert(name.into(), Stats::get(c).into());
    }
    if let Some(appid) = appid.filter(|&a| a != 0) {
        let (users, clients) = node.registry.totals(Some(appid));
        let (rooms, room_clients) = node.rooms.totals(Some(appid));
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
