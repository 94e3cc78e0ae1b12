//! Store-then-deliver flows shared by client sessions and the HTTP API:
//! peer messages (IM, CUSTOMER_V2), system messages, notifications, RT and
//! room messages. Stored kinds are delivered only after the store confirmed
//! a durable write, with exact METADATA (ids are contiguous, prev = id − 1).
//!
//! Every delivery goes to this node's connections directly and, in cluster
//! mode, to the receiver's home imr, which relays it to the other nodes.

use crate::node::Node;
use crate::outbox::{OutFrame, Unit};
use crate::store::{AppendRequest, Dedup, NewEntry, Placed, QueueId, StoreError};
use bytes::Bytes;
use ferry_common::link::RouteMessage;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::{NOTIFICATION, ROOM_IM, RT, SYNC_NOTIFY, SYSTEM};
use ferry_common::protocol::flag::{PUSH, TEXT};
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

fn meta(p: Placed) -> Metadata {
    Metadata {
        sync_key: p.msgid,
        prev_sync_key: p.prev,
    }
}

fn sync_notify(msgid: i64) -> OutFrame {
    OutFrame::new(SYNC_NOTIFY, 0, encode_i64(msgid))
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One frame addressed to one user, everywhere.
pub(crate) struct UserFrame<'a> {
    pub(crate) queue: QueueId,
    pub(crate) cmd: u8,
    pub(crate) flag: u8,
    pub(crate) body: &'a Bytes,
    /// Stored message: sent with METADATA and followed by SYNC_NOTIFY.
    pub(crate) placed: Option<Placed>,
    /// Connections of this device are skipped (0 = none).
    pub(crate) skip_device: i64,
}

impl Node {
    /// Local connections first, then the other nodes through the imr.
    pub(crate) fn to_user(&self, f: UserFrame<'_>) {
        self.registry.deliver(f.queue.appid, f.queue.uid, |h| {
            if f.skip_device != 0 && h.device_id == f.skip_device {
                return None;
            }
            Some(match f.placed {
                Some(p) => Unit::two(
                    OutFrame::with_meta(f.cmd, f.flag, f.body.clone(), meta(p)),
                    sync_notify(p.msgid),
                ),
                None => Unit::one(OutFrame::new(f.cmd, f.flag, f.body.clone())),
            })
        });
        if let Some(c) = &self.cluster {
            let placed = f.placed.unwrap_or(Placed { msgid: 0, prev: 0 });
            c.publish_user(&RouteMessage {
                appid: f.queue.appid,
                receiver: f.queue.uid,
                msgid: placed.msgid,
                prev_msgid: placed.prev,
                device_id: f.skip_device,
                timestamp: now_nanos(),
                msg: Frame::new(f.cmd, 2, f.flag, 0, f.body.clone()).to_bytes(),
            });
        }
    }

    /// Asks the receivers' imrs to queue offline pushes for those online nowhere.
    pub(crate) fn offline_push(
        &self,
        appid: i64,
        receivers: &[i64],
        cmd: u8,
        flag: u8,
        body: &Bytes,
    ) {
        if let Some(c) = &self.cluster {
            c.push(
                appid,
                receivers,
                &Frame::new(cmd, 2, flag, 0, body.clone()).to_bytes(),
            );
        }
    }

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
        let mut out = self
            .store
            .append(AppendRequest {
                entries: entries(),
                dedup: p.dedup,
            })
            .await?;
        if let (Some(d), Some(e)) = (p.dedup, out.earlier)
            && !self.is_resend(&d.key, e, p.ticket).await
        {
            out = self
                .store
                .append(AppendRequest {
                    entries: entries(),
                    dedup: Some(Dedup { replace: true, ..d }),
                })
                .await?;
        }
        let receiver = *out
            .placed
            .first()
            .ok_or_else(|| StoreError::Backend("empty append result".into()))?;
        let sender = *out.placed.get(1).unwrap_or(&receiver);
        if out.duplicate {
            self.notify_sync(p.receiver, receiver.msgid);
            return Ok(PeerOutcome {
                sender,
                receiver,
                duplicate: true,
            });
        }
        let flag = p.flag | PUSH;
        if !same_queue {
            self.to_user(UserFrame {
                queue: p.receiver,
                cmd: p.cmd,
                flag,
                body: &p.body,
                placed: Some(receiver),
                skip_device: 0,
            });
            self.offline_push(p.receiver.appid, &[p.receiver.uid], p.cmd, p.flag, &p.body);
        }
        self.to_user(UserFrame {
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
            self.notify_sync(QueueId { appid, uid }, placed.msgid);
        }
        self.offline_push(appid, receivers, SYSTEM, 0, &content);
        Ok(())
    }

    /// SYNC_NOTIFY to every connection of a user, on every node.
    pub fn notify_sync(&self, q: QueueId, msgid: i64) {
        let body = encode_i64(msgid);
        self.to_user(UserFrame {
            queue: q,
            cmd: SYNC_NOTIFY,
            flag: 0,
            body: &body,
            placed: None,
            skip_device: 0,
        });
    }

    /// Real-time NOTIFICATION (not stored) to every connection of a user.
    pub fn send_notification(&self, appid: i64, uid: i64, content: Bytes) {
        let q = QueueId { appid, uid };
        self.to_user(UserFrame {
            queue: q,
            cmd: NOTIFICATION,
            flag: 0,
            body: &content,
            placed: None,
            skip_device: 0,
        });
    }

    /// The same NOTIFICATION to every connection of each receiver, on every
    /// node: the frame is built once and shared; only the route header is
    /// per receiver.
    pub fn send_notifications(&self, appid: i64, receivers: &[i64], content: Bytes) {
        let f = OutFrame::new(NOTIFICATION, 0, content.clone());
        let inner = Frame::new(NOTIFICATION, 2, 0, 0, content).to_bytes();
        let now = now_nanos();
        let mut receivers = receivers.to_vec();
        receivers.sort_unstable();
        receivers.dedup();
        for uid in receivers {
            self.registry
                .deliver(appid, uid, |_| Some(Unit::one(f.clone())));
            if let Some(c) = &self.cluster {
                c.publish_user(&RouteMessage {
                    appid,
                    receiver: uid,
                    msgid: 0,
                    prev_msgid: 0,
                    device_id: 0,
                    timestamp: now,
                    msg: inner.clone(),
                });
            }
        }
    }

    /// NOTIFICATION to every connected user of an app on every node; the
    /// frame is encoded once per node.
    pub fn broadcast_notification(&self, appid: i64, content: Bytes) {
        let f = OutFrame::new(NOTIFICATION, 0, content.clone());
        self.registry.deliver_app(appid, |_| true, &f);
        if let Some(c) = &self.cluster {
            c.publish_app(&RouteMessage {
                appid,
                receiver: 0,
                msgid: 0,
                prev_msgid: 0,
                device_id: 0,
                timestamp: now_nanos(),
                msg: Frame::new(NOTIFICATION, 2, 0, 0, content).to_bytes(),
            });
        }
    }

    /// A broadcast relayed by the imr behind `link`: only users homed there,
    /// so a user never gets the copies sent through other imrs.
    pub fn deliver_app_local(&self, appid: i64, link: Option<usize>, f: &OutFrame) {
        match (&self.cluster, link) {
            (Some(c), Some(l)) => self.registry.deliver_app(appid, |uid| c.home(uid) == l, f),
            _ => self.registry.deliver_app(appid, |_| true, f),
        };
    }

    /// RT (not stored, no ACK) to every connection of the receiver.
    pub fn send_rt(&self, appid: i64, receiver: i64, body: Bytes) {
        let q = QueueId {
            appid,
            uid: receiver,
        };
        self.to_user(UserFrame {
            queue: q,
            cmd: RT,
            flag: 0,
            body: &body,
            placed: None,
            skip_device: 0,
        });
    }

    /// ROOM_IM to every member connection of a room, on every node, except
    /// the sender's own `(uid, device)` identity.
    pub fn send_room(
        &self,
        appid: i64,
        room: i64,
        body: Bytes,
        exclude: Option<(i64, i64)>,
    ) -> usize {
        let f = OutFrame::new(ROOM_IM, 0, body.clone());
        let n = self.rooms.broadcast(appid, room, &f, exclude);
        if let Some(c) = &self.cluster {
            c.publish_room(&RouteMessage {
                appid,
                receiver: room,
                msgid: 0,
                prev_msgid: 0,
                device_id: exclude.map_or(0, |e| e.1),
                timestamp: 0,
                msg: Frame::new(ROOM_IM, 2, 0, 0, body).to_bytes(),
            });
        }
        n
    }
}
