//! Reading personal queues over HTTP (spec §6.1, §5.3): offline count,
//! latest messages, history after an id.

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;
use crate::store::{QueueId, StoredMessage};
use axum::Json;
use axum::extract::State;
use ferry_common::protocol::Message;
use ferry_common::protocol::command::{CUSTOMER_V2, GROUP_IM, IM};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Most messages one `load_latest_message` returns, whatever `limit` asks.
pub const MAX_LATEST: i64 = 1000;

/// One listed message. `sender_appid`/`receiver_appid` only for CUSTOMER_V2.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Msg {
    pub id: i64,
    pub command: u8,
    pub sender: i64,
    pub receiver: i64,
    pub timestamp: i32,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_appid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_appid: Option<i64>,
}

impl Msg {
    /// IM, GROUP_IM and CUSTOMER_V2 are listed (as gobelieve); other kinds
    /// and undecodable bodies are skipped.
    pub fn from_stored(m: &StoredMessage) -> Option<Msg> {
        if !matches!(m.cmd, IM | GROUP_IM | CUSTOMER_V2) {
            return None;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match Message::decode(m.cmd, 2, m.body.clone()) {
            Ok(Message::Im(im) | Message::GroupIm(im)) => Some(Msg {
                id: m.msgid,
                command: m.cmd,
                sender: im.sender,
                receiver: im.receiver,
                timestamp: im.timestamp,
                content: text(&im.content),
                sender_appid: None,
                receiver_appid: None,
            }),
            Ok(Message::CustomerV2(c)) => Some(Msg {
                id: m.msgid,
                command: m.cmd,
                sender: c.sender,
                receiver: c.receiver,
                timestamp: c.timestamp,
                content: text(&c.content),
                sender_appid: Some(c.sender_appid),
                receiver_appid: Some(c.receiver_appid),
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(msgid = m.msgid, cmd = m.cmd, error = %e, "undecodable stored message skipped");
                None
            }
        }
    }
}

fn listing(messages: &[StoredMessage]) -> Json<Value> {
    let list: Vec<Msg> = messages.iter().filter_map(Msg::from_stored).collect();
    Json(json!({ "data": list }))
}

fn queue(p: &Params) -> Result<QueueId, ApiError> {
    Ok(QueueId {
        appid: p.i64("appid")?,
        uid: p.i64("uid")?,
    })
}

/// Query `appid, uid`, optional `sync_key` (absent/empty/0 → the stored
/// sync key): `{"data":{"count":N}}`, N = messages after that key.
pub async fn offline_count(
    State(node): State<Arc<Node>>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let q = queue(&p)?;
    let key = match p.opt_i64("sync_key")? {
        Some(k) if k != 0 => k,
        _ => node.store.sync_key(q).await?,
    };
    let count = node.store.count_after(q, key).await?;
    Ok(Json(json!({ "data": { "count": count } })))
}

/// Query `appid, uid, limit`: the newest `limit` entries (capped at
/// [`MAX_LATEST`]; ≤ 0 → none), oldest first, listed kinds only.
pub async fn latest(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let q = queue(&p)?;
    let limit = p.i64("limit")?.min(MAX_LATEST);
    if limit <= 0 {
        return Ok(listing(&[]));
    }
    let messages = node.store.latest(q, limit as usize).await?;
    Ok(listing(&messages))
}

/// Query `appid, uid, last_id`: one sync window (`--sync-limit` entries)
/// after `last_id`, oldest first, listed kinds only.
pub async fn history(State(node): State<Arc<Node>>, p: Params) -> Result<Json<Value>, ApiError> {
    let q = queue(&p)?;
    let last_id = p.i64("last_id")?;
    let window = node
        .store
        .window(q, last_id.max(0), node.cfg.sync_limit)
        .await?;
    Ok(listing(&window.messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::protocol::command::SYSTEM;
    use ferry_common::protocol::customer::CustomerV2;
    use ferry_common::protocol::im::Im;

    fn stored(msgid: i64, cmd: u8, body: bytes::Bytes) -> StoredMessage {
        StoredMessage {
            msgid,
            cmd,
            flag: 0,
            device_id: 0,
            body,
        }
    }

    #[test]
    fn im_and_customer_are_listed_system_is_not() {
        let im = Im {
            sender: 1,
            receiver: 2,
            timestamp: 3,
            msgid: 4,
            content: "hi".into(),
        };
        let m = Msg::from_stored(&stored(10, IM, im.encode(2))).expect("listed");
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            json!({"id":10,"command":4,"sender":1,"receiver":2,"timestamp":3,"content":"hi"})
        );
        let c = CustomerV2 {
            sender_appid: 7,
            sender: 1,
            receiver_appid: 8,
            receiver: 2,
            timestamp: 5,
            content: bytes::Bytes::from_static(b"a\xffb"),
        };
        let m = Msg::from_stored(&stored(11, CUSTOMER_V2, c.encode())).expect("listed");
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            json!({"id":11,"command":64,"sender":1,"receiver":2,"timestamp":5,
                   "content":"a\u{fffd}b","sender_appid":7,"receiver_appid":8})
        );
        assert_eq!(Msg::from_stored(&stored(12, SYSTEM, "x".into())), None);
        // Truncated body: skipped, not a failure of the whole listing.
        assert_eq!(
            Msg::from_stored(&stored(13, IM, bytes::Bytes::from_static(&[0; 5]))),
            None
        );
    }
}
