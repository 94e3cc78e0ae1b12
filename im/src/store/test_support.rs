//! Builders shared by the store tests (conformance suite and the
//! backend-specific tests): queues, entries and requests of app 7.

use super::{
    AppendOutcome, AppendRequest, Dedup, DedupKey, NewEntry, Origin, QueueId, Store, StoredMessage,
    record,
};
use bytes::Bytes;

pub(crate) const APP: i64 = 7;

pub(crate) fn q(uid: i64) -> QueueId {
    QueueId { appid: APP, uid }
}

/// An IM entry for `uid`'s queue from device 3.
pub(crate) fn entry(uid: i64, body: &str) -> NewEntry {
    NewEntry {
        queue: q(uid),
        cmd: 4,
        flag: 1,
        device_id: 3,
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

pub(crate) fn key(sender: i64, receiver: i64, client_msgid: i64) -> DedupKey {
    DedupKey {
        appid: APP,
        sender,
        device_id: 3,
        client_msgid,
        receiver,
    }
}

/// The origin test requests are written from.
pub(crate) const ORIGIN: Origin = Origin {
    incarnation: 1,
    connection: 1,
};

/// The dedup record of a send of `body` under `key`, from [`ORIGIN`].
pub(crate) fn dedup(key: DedupKey, body: &str) -> Dedup {
    Dedup {
        key,
        digest: record::digest(body.as_bytes()),
        origin: ORIGIN,
        replace: false,
    }
}

/// A peer message: receiver copy + sender copy, with an optional dedup key.
pub(crate) fn peer(
    sender: i64,
    receiver: i64,
    client_msgid: Option<i64>,
    body: &str,
) -> AppendRequest {
    AppendRequest {
        entries: vec![entry(receiver, body), entry(sender, body)],
        dedup: client_msgid.map(|m| dedup(key(sender, receiver, m), body)),
    }
}

pub(crate) fn single(uid: i64, body: &str) -> AppendRequest {
    AppendRequest {
        entries: vec![entry(uid, body)],
        dedup: None,
    }
}

pub(crate) fn ids(outcome: &AppendOutcome) -> Vec<i64> {
    outcome.placed.iter().map(|p| p.msgid).collect()
}

pub(crate) fn msg_ids(messages: &[StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.msgid).collect()
}

/// Every message id in `uid`'s queue, oldest first.
pub(crate) async fn all_ids(store: &dyn Store, uid: i64) -> Vec<i64> {
    let w = store.window(q(uid), 0, usize::MAX).await.expect("window");
    msg_ids(&w.messages)
}
