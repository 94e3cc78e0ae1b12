//! What the connection hands to the application.

use super::error::CloseReason;
use crate::protocol::Frame;
use crate::protocol::Message;
use crate::protocol::group_sync::GroupSyncKey;
use crate::protocol::metadata::Metadata;
use crate::protocol::realtime::Realtime;
use bytes::Bytes;

/// An incoming event. Stored messages (IM, GROUP_IM, CUSTOMER_V2, SYSTEM,
/// GROUP_NOTIFICATION) arrive as [`Event::Message`] or [`Event::Synced`];
/// with the sync loop on, each of them is delivered exactly once across the
/// two (see [`super::sync`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// A stored message pushed in real time, outside a sync batch. With the
    /// sync loop on this is a push the loop accepted (its METADATA continued
    /// the key) or a super-group GROUP_IM (flag SUPER_GROUP; its METADATA
    /// refers to the group's queue, which the loop does not manage). With the
    /// loop off, every such frame, including those inside batches.
    Message {
        msg: Message,
        flag: u8,
        /// The METADATA frame with seq just before this one, if any.
        metadata: Option<Metadata>,
    },
    /// A stored message from a sync batch (loop on): the personal queue, or
    /// a super group's when the app sent SYNC_GROUP itself (bracketed by
    /// `Control` events SYNC_GROUP_BEGIN / _END). `msgid` is the server
    /// message id when the server sent METADATA adjacent to it; gobelieve
    /// does not, so usually `None`. `flag` is 0 or SELF (TEXT on Ferry).
    Synced {
        msgid: Option<i64>,
        msg: Message,
        flag: u8,
    },
    /// A personal sync batch ended (loop on): the adopted key and how many
    /// messages the batch delivered. A batch with 0 messages means the queue
    /// was empty at that point, which is how a caller knows it has drained.
    SyncDone { sync_key: i64, messages: usize },
    /// SYNC_NOTIFY (only with the loop off; with it on the loop acts on it).
    SyncNotify(i64),
    /// SYNC_GROUP_NOTIFY: new data in a super group (not managed by the loop).
    SyncGroupNotify(GroupSyncKey),
    /// NOTIFICATION (36): raw content, not stored.
    Notification(Bytes),
    /// ROOM_IM from another member of the room.
    Room(Realtime),
    /// RT message.
    Rt(Realtime),
    /// An ACK that no request is waiting for (e.g. for a frame sent with
    /// `send_frame`, or one that arrived after its request timed out).
    Ack {
        seq: i32,
        status: u8,
        flag: u8,
        metadata: Option<Metadata>,
    },
    /// Any other decodable frame not consumed by the client: SYNC_BEGIN /
    /// SYNC_END with the loop off, SYNC_GROUP_BEGIN / _END, PONG or
    /// AUTH_STATUS nobody waits for, or a client-direction command the server
    /// should not send.
    Control { msg: Message, flag: u8 },
    /// A frame with a command number this library does not know.
    Unknown(Frame),
    /// The connection ended; always the last event.
    Closed(CloseReason),
}
