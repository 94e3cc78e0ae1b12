//! `post_*` endpoints (spec §6.1): messages injected by an application server.
//! Stored kinds answer only after the store confirmed the write; a storage
//! failure is a 500, never a 200.

use super::error::ApiError;
use super::params::{JsonBody, Params, RawBody, check_content, parse_json};
use crate::messaging::PeerSend;
use crate::node::{Node, now_secs};
use crate::store::QueueId;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_common::protocol::command::{CUSTOMER_V2, IM};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::realtime::Realtime;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Fixed part of an IM body at version ≥ 1 (sender, receiver, timestamp, msgid).
const IM_HEADER: usize = 24;
/// Fixed part of RT and ROOM_IM bodies (sender, receiver).
const RT_HEADER: usize = 16;
/// Fixed part of a CUSTOMER_V2 body.
const CUSTOMER_HEADER: usize = 36;

/// Query `appid, sender, receiver`; body = content. Stored in both queues
/// (device 0), pushed with exact METADATA to the receiver and to every
/// connection of the sender, each followed by SYNC_NOTIFY.
pub async fn peer_message(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(content): RawBody,
) -> Result<StatusCode, ApiError> {
    let (appid, sender, receiver) = (p.i64("appid")?, p.i64("sender")?, p.i64("receiver")?);
    check_content(content.len(), IM_HEADER)?;
    let im = Im {
        sender,
        receiver,
        timestamp: now_secs(),
        msgid: 0,
        content,
    };
    node.send_peer(PeerSend {
        cmd: IM,
        flag: 0,
        body: im.encode(2),
        sender: QueueId { appid, uid: sender },
        receiver: QueueId {
            appid,
            uid: receiver,
        },
        device_id: 0,
        dedup: None,
        ticket: None,
    })
    .await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct SystemMessage {
    appid: i64,
    content: String,
    receivers: Vec<i64>,
}

/// JSON `{"appid","content","receivers"}`: SYSTEM stored for every receiver
/// in one atomic write, then SYNC_NOTIFY to each.
pub async fn system_message(
    State(node): State<Arc<Node>>,
    JsonBody(m): JsonBody<SystemMessage>,
) -> Result<StatusCode, ApiError> {
    check_content(m.content.len(), 0)?;
    node.send_system(m.appid, &m.receivers, m.content.into())
        .await?;
    Ok(StatusCode::OK)
}

/// NOTIFICATION in real time, not stored. Two forms:
/// * query `appid, uid`; raw body = content (gobelieve);
/// * no `uid` in the query: JSON `{"appid", "receivers": [uids], "content":
///   string}` (the field names of `post_system_message`), one NOTIFICATION
///   to every connection of every receiver, on every node.
pub async fn notification(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    if p.opt_i64("uid")?.is_none() {
        let m: Notifications = parse_json(&body)?;
        check_content(m.content.len(), 0)?;
        node.delivery
            .notifications(m.appid, &m.receivers, m.content.into());
        return Ok(StatusCode::OK);
    }
    let (appid, uid) = (p.i64("appid")?, p.i64("uid")?);
    check_content(body.len(), 0)?;
    node.delivery.notification(appid, uid, body);
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct Notifications {
    appid: i64,
    receivers: Vec<i64>,
    content: String,
}

/// Query `appid`; raw body = content. One NOTIFICATION to every connected
/// user of the app on every node (through the imrs), encoded once per node.
pub async fn broadcast(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(content): RawBody,
) -> Result<StatusCode, ApiError> {
    let appid = p.i64("appid")?;
    check_content(content.len(), 0)?;
    node.delivery.to_app(appid, content);
    Ok(StatusCode::OK)
}

/// Query `appid, uid, room`; body = content. ROOM_IM from `uid` to every
/// member of the room, the sender's own connections included.
pub async fn room_message(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(content): RawBody,
) -> Result<StatusCode, ApiError> {
    let (appid, uid, room) = (p.i64("appid")?, p.i64("uid")?, p.i64("room")?);
    check_content(content.len(), RT_HEADER)?;
    let body = Realtime {
        sender: uid,
        receiver: room,
        content,
    }
    .encode();
    node.delivery.to_room(appid, room, body, None);
    Ok(StatusCode::OK)
}

/// Query `appid, sender, receiver`; body = content. RT to every connection
/// of the receiver, not stored.
pub async fn realtime_message(
    State(node): State<Arc<Node>>,
    p: Params,
    RawBody(content): RawBody,
) -> Result<StatusCode, ApiError> {
    let (appid, sender, receiver) = (p.i64("appid")?, p.i64("sender")?, p.i64("receiver")?);
    check_content(content.len(), RT_HEADER)?;
    node.delivery.rt(
        appid,
        receiver,
        Realtime {
            sender,
            receiver,
            content,
        }
        .encode(),
    );
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct CustomerMessage {
    sender_appid: i64,
    sender: i64,
    receiver_appid: i64,
    receiver: i64,
    content: String,
}

/// JSON `{"sender_appid","sender","receiver_appid","receiver","content"}`:
/// CUSTOMER_V2 stored in both queues (no kefu check, as gobelieve), pushed
/// like a peer message. Answers `{"data":{}}`.
pub async fn customer_message(
    State(node): State<Arc<Node>>,
    JsonBody(m): JsonBody<CustomerMessage>,
) -> Result<Json<Value>, ApiError> {
    check_content(m.content.len(), CUSTOMER_HEADER)?;
    let body = CustomerV2 {
        sender_appid: m.sender_appid,
        sender: m.sender,
        receiver_appid: m.receiver_appid,
        receiver: m.receiver,
        timestamp: now_secs(),
        content: m.content.into(),
    }
    .encode();
    node.send_peer(PeerSend {
        cmd: CUSTOMER_V2,
        flag: 0,
        body,
        sender: QueueId {
            appid: m.sender_appid,
            uid: m.sender,
        },
        receiver: QueueId {
            appid: m.receiver_appid,
            uid: m.receiver,
        },
        device_id: 0,
        dedup: None,
        ticket: None,
    })
    .await?;
    Ok(Json(json!({ "data": {} })))
}
