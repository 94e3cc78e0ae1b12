//! Store-then-deliver flows for peer messages (IM, CUSTOMER_V2) and system
//! messages, shared by client sessions and the HTTP API. They are delivered
//! only after the store confirmed a durable write, with exact METADATA (ids
//! are contiguous, prev = id − 1); the delivery itself is
//! [`crate::delivery`]'s. (Messages that are never stored — notifications,
//! RT, rooms — go straight to [`crate::delivery`].)

use crate::delivery::UserFrame;
use crate::node::Node;
use crate::store::{AppendRequest, Dedup, NewEntry, Placed, QueueId, StoreError};
use bytes::Bytes;
use ferry_common::protocol::command::SYSTEM;
use ferry_common::protocol::flag::{PUSH, TEXT};

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
    /// Client sends with a msgid: the dedup record (see [`crate::resend`]).
    pub dedup: Option<Dedup>,
    /// The session's number for this send in its ACK ledger: a verdict
    /// never takes the send's own entry for the earlier one.
    pub ticket: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct PeerOutcome {
    pub sender: Placed,
    pub receiver: Placed,
    pub duplicate: bool,
}

impl Node {
    /// Stores a peer message in the receiver's and the sender's queues as one
    /// durable step, then pushes it to the receiver's connections and to the
    /// sender's other devices. A resend (see [`crate::resend`]) writes
    /// nothing and only re-notifies the receiver.
    pub async fn send_peer(&self, p: PeerSend) -> Result<PeerOutcome, StoreError> {
        let same_queue = p.sender == p.receiver;
        let entry = |queue| NewEntry {
            queue,
            cmd: p.cmd,
            flag: p.flag & TEXT,
            device_id: p.device_id,
            body: p.body.clone(),
        };
        let entries = || {
            let mut entries = vec![entry(p.receiver)];
            if !same_queue {
                entries.push(entry(p.sender));
            }
            entries
        };
        let out = self.append_send(entries, p.dedup, p.ticket).await?;
        let receiver = *out
            .placed
            .first()
            .ok_or_else(|| StoreError::Backend("empty append result".into()))?;
        let sender = *out.placed.get(1).unwrap_or(&receiver);
        if out.duplicate {
            self.delivery.notify_sync(p.receiver, receiver.msgid);
            return Ok(PeerOutcome {
                sender,
                receiver,
                duplicate: true,
            });
        }
        let flag = p.flag | PUSH;
        if !same_queue {
            self.delivery.to_user(UserFrame {
                queue: p.receiver,
                cmd: p.cmd,
                flag,
                body: &p.body,
                placed: Some(receiver),
                skip_device: 0,
            });
            self.delivery
                .offline_push(p.receiver.appid, &[p.receiver.uid], p.cmd, p.flag, &p.body);
        }
        self.delivery.to_user(UserFrame {
            queue: p.sender,
            cmd: p.cmd,
            flag,
            body: &p.body,
            placed: Some(sender),
            skip_device: p.device_id,
        });
        Ok(PeerOutcome {
            sender,
            receiver,
            duplicate: false,
        })
    }

    /// Stores a SYSTEM message for every receiver (one atomic, durable write)
    /// and tells each of them to sync.
    pub async fn send_system(
        &self,
        appid: i64,
        receivers: &[i64],
        content: Bytes,
    ) -> Result<(), StoreError> {
        if receivers.is_empty() {
            return Ok(());
        }
        let entries = NewEntry::fan_out(appid, receivers, SYSTEM, 0, 0, &content);
        let out = self
            .store
            .append(AppendRequest {
                entries,
                dedup: None,
            })
            .await?;
        for (&uid, placed) in receivers.iter().zip(&out.placed) {
            self.delivery
                .notify_sync(QueueId { appid, uid }, placed.msgid);
        }
        self.delivery
            .offline_push(appid, receivers, SYSTEM, 0, &content);
        Ok(())
    }
}
