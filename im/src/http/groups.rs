//! Group management API (Ferry addition, issue 4) and the two gobelieve
//! group endpoints `/post_group_message` and `/post_group_notification`.
//!
//! * `POST /groups` JSON `{"appid","group_id"?,"super"?,"members"?}` →
//!   `{"data":{"group_id":N}}` (id allocated when absent; 409 if taken);
//! * `GET /groups/{gid}?appid=` → `{"data":{"appid","group_id","super",
//!   "members":[{"uid","joined","mute"}]}}`;
//! * `DELETE /groups/{gid}?appid=`, `POST /groups/{gid}/members?appid=`
//!   `{"members":[…]}`, `DELETE /groups/{gid}/members/{uid}?appid=`,
//!   `POST /groups/{gid}/mute?appid=` `{"uid","mute"}`,
//!   `POST /groups/{gid}/upgrade?appid=` → `{"data":{}}`.
//!
//! Bad input is a 400 and an unknown group (or, for mute, member) a 404, both
//! with the usual JSON error body. Every change is stored, then propagated to
//! every im node through the imrs before the answer is sent.

use super::error::ApiError;
use super::params::{JsonBody, Params, RawBody, check_content};
use crate::groups::send::{GroupSend, GroupSendError};
use crate::node::{Node, now_secs};
use crate::store::group::Update;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_common::protocol::im::Im;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Most members one request may name.
pub const MAX_MEMBERS: usize = 100_000;
/// Body limit of the group routes (a 100,000-member list fits).
pub const GROUP_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Fixed part of a GROUP_IM body at version ≥ 1.
const IM_HEADER: usize = 24;

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "group not found")
}

fn id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!("invalid path param: {what} (not a decimal i64)"))
    })
}

/// Appids are positive: group queues use the negative namespace.
fn appid(v: i64) -> Result<i64, ApiError> {
    if v <= 0 {
        return Err(ApiError::bad_request("invalid appid: must be positive"));
    }
    Ok(v)
}

fn members(uids: Vec<i64>) -> Result<Vec<i64>, ApiError> {
    if uids.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "too many members: {} (at most {MAX_MEMBERS})",
            uids.len()
        )));
    }
    if uids.contains(&0) {
        return Err(ApiError::bad_request("invalid member uid 0"));
    }
    Ok(uids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

fn updated(u: Update) -> Result<Json<Value>, ApiError> {
    match u {
        Update::Done => Ok(Json(json!({ "data": {} }))),
        Update::NoGroup => Err(not_found()),
        Update::NoMember => Err(ApiError::new(StatusCode::NOT_FOUND, "not a member")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    appid: i64,
    group_id: Option<i64>,
    #[serde(rename = "super", default)]
    is_super: bool,
    #[serde(default)]
    members: Vec<i64>,
}

pub async fn create(
    State(node): State<Arc<Node>>,
    JsonBody(g): JsonBody<CreateGroup>,
) -> Result<Json<Value>, ApiError> {
    let appid = appid(g.appid)?;
    if g.group_id == Some(0) {
        return Err(ApiError::bad_request("invalid group_id 0"));
    }
    let members = members(g.members)?;
    match node
        .create_group(appid, g.group_id, g.is_super, members)
        .await?
    {
        Some(gid) => Ok(Json(json!({ "data": { "group_id": gid } }))),
        None => Err(ApiError::new(StatusCode::CONFLICT, "group already exists")),
    }
}

pub async fn get(
    State(node): State<Arc<Node>>,
    Path(gid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?);
    let g = node.load_group(appid, gid).await?.ok_or_else(not_found)?;
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| json!({ "uid": m.uid, "joined": m.joined, "mute": m.mute }))
        .collect();
    Ok(Json(json!({ "data": {
        "appid": g.appid, "group_id": g.gid, "super": g.is_super, "members": members
    }})))
}

pub async fn delete(
    State(node): State<Arc<Node>>,
    Path(gid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?);
    if node.delete_group(appid, gid).await? {
        Ok(Json(json!({ "data": {} })))
    } else {
        Err(not_found())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    members: Vec<i64>,
}

pub async fn add_members(
    State(node): State<Arc<Node>>,
    Path(gid): Path<String>,
    p: Params,
    JsonBody(m): JsonBody<AddMembers>,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?);
    let uids = members(m.members)?;
    updated(node.add_group_members(appid, gid, uids).await?)
}

pub async fn remove_member(
    State(node): State<Arc<Node>>,
    Path((gid, uid)): Path<(String, String)>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid, uid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?, id(&uid, "uid")?);
    updated(node.remove_group_member(appid, gid, uid).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    uid: i64,
    mute: bool,
}

pub async fn mute(
    State(node): State<Arc<Node>>,
    Path(gid): Path<String>,
    p: Params,
    JsonBody(m): JsonBody<Mute>,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?);
    updated(node.mute_group_member(appid, gid, m.uid, m.mute).await?)
}

pub async fn upgrade(
    State(node): State<Arc<Node>>,
    Path(gid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let (appid, gid) = (appid(p.i64("appid")?)?, id(&gid, "gid")?);
    updated(node.upgrade_group(appid, gid).await?)
}

/// Query `appid, sender, receiver` (= gid); body = content. GROUP_IM from
/// `sender` (device 0, membership not checked, as gobelieve) to the group;
/// unknown group → 404 (gobelieve answers 200 and does nothing).
pub async fn post_group_message(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(content): RawBody,
) -> Result<StatusCode, ApiError> {
    let (appid, sender, gid) = (p.i64("appid")?, p.i64("sender")?, p.i64("receiver")?);
    check_content(content.len(), IM_HEADER)?;
    let body = Im {
        sender,
        receiver: gid,
        timestamp: now_secs(),
        msgid: 0,
        content,
    }
    .encode(2);
    let s = GroupSend {
        appid,
        sender,
        gid,
        device_id: 0,
        flag: 0,
        body,
        dedup: None,
        ticket: None,
        check_sender: false,
    };
    match node.send_group(s).await {
        Ok(_) => Ok(StatusCode::OK),
        Err(GroupSendError::Store(e)) => Err(e.into()),
        Err(_) => Err(not_found()),
    }
}

#[derive(Deserialize)]
pub struct GroupNotification {
    appid: i64,
    group_id: i64,
    notification: String,
    #[serde(default)]
    members: Vec<i64>,
    #[serde(rename = "super")]
    is_super: Option<bool>,
}

/// JSON `{"appid","group_id","notification","members"?,"super"?}`:
/// members = given ∪ stored members; `super` from the stored group if it
/// exists, else from the JSON. No member at all → 400 `group no member`.
pub async fn post_group_notification(
    State(node): State<Arc<Node>>,
    JsonBody(n): JsonBody<GroupNotification>,
) -> Result<StatusCode, ApiError> {
    check_content(n.notification.len(), 0)?;
    let mut members: BTreeSet<i64> = n.members.into_iter().collect();
    let group = node.group(n.appid, n.group_id).await?;
    let is_super = match &group {
        Some(g) => {
            members.extend(g.members.iter().map(|m| m.uid));
            g.is_super
        }
        None => n.is_super.unwrap_or(false),
    };
    if members.is_empty() {
        return Err(ApiError::bad_request("group no member"));
    }
    let members: Vec<i64> = members.into_iter().collect();
    node.send_group_notification(
        n.appid,
        n.group_id,
        is_super,
        &members,
        n.notification.into(),
    )
    .await?;
    Ok(StatusCode::OK)
}
