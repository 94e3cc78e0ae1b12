//! The delivery side of a node: who is connected here ([`Registry`]), who is
//! in which room ([`Rooms`]) and the links to the imrs ([`Cluster`]), and the
//! three ways a frame reaches people through them — to a user, to a room,
//! to a group's members ([`group`]) — plus what other nodes relay here
//! ([`routed`]).
//!
//! Nothing here stores anything: the store-then-deliver flows
//! ([`crate::messaging`], [`crate::groups`]) call these once the store has
//! confirmed a write. Every delivery goes to this node's connections
//! directly and, in cluster mode, to the receivers' home imrs, which relay
//! it to the other nodes.

pub mod group;
pub mod routed;

use crate::cluster::Cluster;
use crate::outbox::{OutFrame, Unit};
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::store::{Placed, QueueId};
use bytes::Bytes;
use ferry_common::link::RouteMessage;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::{NOTIFICATION, ROOM_IM, RT, SYNC_NOTIFY};
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::scalar::encode_i64;

/// Connections here, rooms here, and the way to every other node.
pub struct Delivery {
    pub registry: Registry,
    pub rooms: Rooms,
    /// Links to the imrs; `None` on a single node.
    pub cluster: Option<Cluster>,
}

/// One frame addressed to one user, everywhere.
pub struct UserFrame<'a> {
    pub queue: QueueId,
    pub cmd: u8,
    pub flag: u8,
    pub body: &'a Bytes,
    /// Stored message: sent with METADATA and followed by SYNC_NOTIFY.
    pub placed: Option<Placed>,
    /// Connections of this device are skipped (0 = none).
    pub skip_device: i64,
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

/// Route timestamps: Unix time in nanoseconds.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Delivery {
    pub fn new(cluster: Option<Cluster>) -> Delivery {
        Delivery {
            registry: Registry::default(),
            rooms: Rooms::default(),
            cluster,
        }
    }

    /// Local connections first, then the other nodes through the imr.
    pub fn to_user(&self, f: UserFrame<'_>) {
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
    pub fn offline_push(&self, appid: i64, receivers: &[i64], cmd: u8, flag: u8, body: &Bytes) {
        if let Some(c) = &self.cluster {
            c.push(
                appid,
                receivers,
                &Frame::new(cmd, 2, flag, 0, body.clone()).to_bytes(),
            );
        }
    }

    /// SYNC_NOTIFY to every connection of a user, on every node.
    pub fn notify_sync(&self, q: QueueId, msgid: i64) {
        self.unstored(q, SYNC_NOTIFY, encode_i64(msgid));
    }

    /// A frame that is not stored (no METADATA, no ACK) to every connection
    /// of a user, on every node.
    fn unstored(&self, q: QueueId, cmd: u8, body: Bytes) {
        self.to_user(UserFrame {
            queue: q,
            cmd,
            flag: 0,
            body: &body,
            placed: None,
            skip_device: 0,
        });
    }

    /// Real-time NOTIFICATION (not stored) to every connection of a user.
    pub fn notification(&self, appid: i64, uid: i64, content: Bytes) {
        self.unstored(QueueId { appid, uid }, NOTIFICATION, content);
    }

    /// RT (not stored, no ACK) to every connection of the receiver.
    pub fn rt(&self, appid: i64, receiver: i64, body: Bytes) {
        self.unstored(
            QueueId {
                appid,
                uid: receiver,
            },
            RT,
            body,
        );
    }

    /// The same NOTIFICATION to every connection of each receiver, on every
    /// node: the frame is built once and shared; only the route header is
    /// per receiver.
    pub fn notifications(&self, appid: i64, receivers: &[i64], content: Bytes) {
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
    pub fn to_app(&self, appid: i64, content: Bytes) {
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

    /// ROOM_IM to every member connection of a room, on every node, except
    /// the sender's own `(uid, device)` identity.
    pub fn to_room(
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
