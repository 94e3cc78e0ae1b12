//! Friend lists and blacklists kept by Ferry ([`crate::own_relations`]):
//!
//! * `PUT /users/{uid}/friends/{fid}?appid=A` — uid counts fid as a friend;
//! * `DELETE /users/{uid}/friends/{fid}?appid=A`;
//! * `GET /users/{uid}/friends?appid=A` → `{"data":[fid, …]}`;
//! * the same under `/users/{uid}/blacklist/{bid}` (uid blocks bid).
//!
//! With `--mysql` the lists are the app server's tables: these routes
//! answer 409.

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;
use crate::own_relations::{List, OwnRelations};
use crate::store::StoreError;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use std::sync::Arc;

fn own(node: &Node) -> Result<OwnRelations, ApiError> {
    if node.cfg.mysql.is_some() {
        return Err(StoreError::ReadOnly(
            "friends and blacklists are managed in MySQL by the app server (tables friend/blacklist), not by Ferry"
                .into(),
        )
        .into());
    }
    Ok(OwnRelations {
        store: node.groups.store.clone(),
    })
}

fn ids(raw: &[&str]) -> Result<Vec<i64>, ApiError> {
    raw.iter()
        .map(|r| match r.parse::<i64>() {
            Ok(v) if v != 0 => Ok(v),
            _ => Err(ApiError::bad_request(format!(
                "invalid path param {r:?}: a non-zero decimal i64"
            ))),
        })
        .collect()
}

fn appid(p: &Params) -> Result<i64, ApiError> {
    let a = p.i64("appid")?;
    if a <= 0 {
        return Err(ApiError::bad_request("invalid appid: must be positive"));
    }
    Ok(a)
}

async fn change(
    node: Arc<Node>,
    list: List,
    (uid, other): (String, String),
    p: Params,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let appid = appid(&p)?;
    let v = ids(&[&uid, &other])?;
    let r = own(&node)?;
    if add {
        r.add(appid, list, v[0], v[1]).await?;
    } else {
        r.remove(appid, list, v[0], v[1]).await?;
    }
    Ok(Json(json!({ "data": {} })))
}

async fn show(
    node: Arc<Node>,
    list: List,
    uid: String,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let appid = appid(&p)?;
    let uid = ids(&[&uid])?[0];
    let r = own(&node)?;
    Ok(Json(json!({ "data": r.list(appid, list, uid).await? })))
}

pub async fn put_friend(
    State(node): State<Arc<Node>>,
    Path(ids): Path<(String, String)>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    change(node, List::Friends, ids, p, true).await
}

pub async fn delete_friend(
    State(node): State<Arc<Node>>,
    Path(ids): Path<(String, String)>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    change(node, List::Friends, ids, p, false).await
}

pub async fn friends(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    show(node, List::Friends, uid, p).await
}

pub async fn put_blocked(
    State(node): State<Arc<Node>>,
    Path(ids): Path<(String, String)>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    change(node, List::Blacklist, ids, p, true).await
}

pub async fn delete_blocked(
    State(node): State<Arc<Node>>,
    Path(ids): Path<(String, String)>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    change(node, List::Blacklist, ids, p, false).await
}

pub async fn blacklist(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    show(node, List::Blacklist, uid, p).await
}
