//! Store-then-deliver flows shared by client sessions and the HTTP API:
//! peer messages (IM, CUSTOMER_V2), system messages, notifications, RT and
//! room messages. Stored kinds are delivered only after the store confirmed
//! a durable write, with exact METADATA (ids are contiguous, prev = id − 1).

use crate::node::Node;
use crate::outbox::OutFrame;
use crate::store::{AppendRequest, DedupKey, NewEntry, Placed, QueueId, StoreError};
use bytes::Bytes;
use ferry_common::protocol::command::{NOTIFICATION, ROOM_IM, RT, SYNC_NOTIFY, SYSTEM};
use ferry_common::protocol::flag::PUSH;
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::scalar::encode_i64;

/// A message from one user to another, stored in both queues.
#[derive(Debug, Clone)]
pub struct PeerSend {
    pub cmd: u8,
    pub flag: u8,
    /// Body at version 2, timestamp already set by the server.
    pub body: Bytes,
    pub sender: QueueId,
    pub receiver: QueueId,
    /// Sending device (0 for HTTP); its connections get no push copy.
    pub device_id: i64,
    pub dedup: Option<DedupKey>,
}

#[derive(Debug, Clone, Copy)]
pub struct PeerOutcome {
    pub sender: Placed,
    pub receiver: Placed,
    pub duplicate: bool,
}

fn meta(p: Placed) -> Metadata {
    Metadata { sync_key: p.msgid, prev_sync_key: p.prev }
}

fn sync_notify(msgid: i64) -> OutFrame {
    OutFrame::new(SYNC_NOTIFY, 0, encode_i64(msgid))
}

impl Node {
    /// Stores a peer message in the receiver's and the sender's queues as one
    /// durable step, then pushes it to the receiver's connections and to the
    /// sender's other devices. A duplicate send (same dedup key inside the
    /// window) writes nothing and only re-notifies the receiver.
    pub async fn send_peer(&self, p: PeerSend) -> Result<PeerOutcome, StoreError> {
        let same_queue = p.sender == p.receiver;
        let entry = |queue| NewEntry {
            queue,
            cmd: p.cmd,
            flag: p.flag & ferry_common::protocol::flag::TEXT,
            device_id: p.device_id,
            body: p.body.clone(),
        };
        let mut entries = vec![entry(p.receiver)];
        if !same_queue {
            entries.push(entry(p.sender));
        }
        let out = self.store.append(AppendRequest { entries, dedup: p.dedup }).await?;
        let receiver = *out.placed.first().ok_or_else(|| StoreError::Backend("empty append result".into()))?;
        let sender = *out.placed.get(1).unwrap_or(&receiver);
        if out.duplicate {
            self.notify_sync(p.receiver, receiver.msgid);
            return Ok(PeerOutcome { sender, receiver, duplicate: true });
        }
        let flag = p.flag | PUSH;
        if !same_queue {
            self.registry.deliver(p.receiver.appid, p.receiver.uid, |_| {
                Some(vec![
                    OutFrame::with_meta(p.cmd, flag, p.body.clone(), meta(receiver)),
                    sync_notify(receiver.msgid),
                ])
            });
        }
        self.registry.deliver(p.sender.appid, p.sender.uid, |h| {
            (h.device_id != p.device_id || p.device_id == 0).then(|| {
                vec![
                    OutFrame::with_meta(p.cmd, flag, p.body.clone(), meta(sender)),
                    sync_notify(sender.msgid),
                ]
            })
        });
        Ok(PeerOutcome { sender, receiver, duplicate: false })
    }

    /// Stores a SYSTEM message for every receiver (one atomic, durable write)
    /// and tells each of them to sync.
    pub async fn send_system(&self, appid: i64, receivers: &[i64], content: Bytes) -> Result<(), StoreError> {
        if receivers.is_empty() {
            return Ok(());
        }
        let entries = receivers
            .iter()
            .map(|&uid| NewEntry {
                queue: QueueId { appid, uid },
                cmd: SYSTEM,
                flag: 0,
                device_id: 0,
                body: content.clone(),
            })
            .collect();
        let out = self.store.append(AppendRequest { entries, dedup: None }).await?;
        for (&uid, placed) in receivers.iter().zip(&out.placed) {
            self.notify_sync(QueueId { appid, uid }, placed.msgid);
        }
        Ok(())
    }

    /// SYNC_NOTIFY to every connection of a user.
    pub fn notify_sync(&self, q: QueueId, msgid: i64) {
        self.registry.deliver(q.appid, q.uid, |_| Some(vec![sync_notify(msgid)]));
    }

    /// Real-time NOTIFICATION (not stored) to every connection of a user.
    pub fn send_notification(&self, appid: i64, uid: i64, content: Bytes) -> usize {
        let f = OutFrame::new(NOTIFICATION, 0, content);
        self.registry.deliver(appid, uid, |_| Some(vec![f.clone()]))
    }

    /// RT (not stored, no ACK) to every connection of the receiver.
    pub fn send_rt(&self, appid: i64, receiver: i64, body: Bytes) -> usize {
        let f = OutFrame::new(RT, 0, body);
        self.registry.deliver(appid, receiver, |_| Some(vec![f.clone()]))
    }

    /// ROOM_IM to every member connection of a room except the sender's own
    /// `(uid, device)` identity.
    pub fn send_room(&self, appid: i64, room: i64, body: Bytes, exclude: Option<(i64, i64)>) -> usize {
        let f = OutFrame::new(ROOM_IM, 0, body);
        self.rooms.broadcast(appid, room, &f, exclude)
    }
}
