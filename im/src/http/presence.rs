//! Presence API.
//!
//! * `GET /users/online?appid=A&uids=1,2,3` (1 to [`MAX_UIDS`] uids) →
//!   `{"data":[{"uid":1,"online":true,"connections":2,"platforms":{"ios":1,"web":1}},…]}`
//!   in the order asked.
//! * `GET /users/{uid}/presence?appid=A` →
//!   `{"data":{"uid":1,"online":true,"devices":[{"platform":"ios","platform_id":1,
//!   "device_id":"…","node":"host:23000","transport":"tcp","since":1700000000}]}}`
//!
//! In a cluster both are answered by the imrs (one round trip per imr), a
//! 503 naming the imr when one does not answer.

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;
use crate::presence::{PresenceError, platform_name, transport_name};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Most uids one `/users/online` request may ask about.
pub const MAX_UIDS: usize = 1000;

fn appid(p: &Params) -> Result<i64, ApiError> {
    let a = p.i64("appid")?;
    if a <= 0 {
        return Err(ApiError::bad_request(
            "invalid query param: appid (must be positive)",
        ));
    }
    Ok(a)
}

fn unavailable(e: PresenceError) -> ApiError {
    tracing::warn!(error = %e, "presence query failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// `1,2,3` → uids; anything else is a 400 naming the bad item.
fn parse_uids(s: Option<&str>) -> Result<Vec<i64>, ApiError> {
    let s = s.ok_or_else(|| ApiError::bad_request("invalid query param: uids (missing)"))?;
    let mut uids = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if uids.len() == MAX_UIDS {
            return Err(ApiError::bad_request(format!(
                "invalid query param: uids (at most {MAX_UIDS})"
            )));
        }
        let uid = item.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid query param: uids ({item:?} is not a decimal i64)"
            ))
        })?;
        uids.push(uid);
    }
    if uids.is_empty() {
        return Err(ApiError::bad_request("invalid query param: uids (empty)"));
    }
    Ok(uids)
}

pub async fn online(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let appid = appid(&p)?;
    let uids = parse_uids(p.str("uids"))?;
    let users = node.presence(appid, &uids).await.map_err(unavailable)?;
    let data: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut platforms = Map::new();
            for d in &u.devices {
                let e = platforms
                    .entry(platform_name(d.platform).into_owned())
                    .or_insert(json!(0));
                *e = json!(e.as_u64().unwrap_or(0) + 1);
            }
            json!({
                "uid": u.uid,
                "online": !u.devices.is_empty(),
                "connections": u.devices.len(),
                "platforms": platforms,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

pub async fn user(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let appid = appid(&p)?;
    let uid = uid
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request("invalid path: uid (not a decimal i64)"))?;
    let users = node.presence(appid, &[uid]).await.map_err(unavailable)?;
    let devices: Vec<Value> = users
        .iter()
        .flat_map(|u| &u.devices)
        .map(|d| {
            json!({
                "platform": platform_name(d.platform),
                "platform_id": d.platform,
                "device_id": d.device_id,
                "node": d.node,
                "transport": transport_name(d.transport),
                "since": d.since,
            })
        })
        .collect();
    Ok(Json(json!({ "data": {
        "uid": uid,
        "online": !devices.is_empty(),
        "devices": devices,
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_lists() {
        assert_eq!(parse_uids(Some("1, 2,-3,")).expect("ok"), vec![1, 2, -3]);
        assert!(parse_uids(None).is_err());
        assert!(parse_uids(Some(",")).is_err());
        let e = parse_uids(Some("1,x")).unwrap_err();
        assert!(e.message.contains("\"x\""), "{}", e.message);
        let many: Vec<String> = (0..=MAX_UIDS).map(|i| i.to_string()).collect();
        assert!(parse_uids(Some(&many.join(","))).is_err());
        assert_eq!(
            parse_uids(Some(&many[..MAX_UIDS].join(",")))
                .expect("ok")
                .len(),
            MAX_UIDS
        );
    }
}
