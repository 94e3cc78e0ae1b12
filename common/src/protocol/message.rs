//! Typed view of every client-visible command. [`Message::decode`] turns a
//! frame's body into a variant (using the frame's own version byte), and
//! [`Message::encode`] produces a body for a given version.

use super::ProtocolError;
use super::ack::Ack;
use super::auth::{AuthToken, encode_status};
use super::command::*;
use super::customer::{CustomerV2, check_legacy};
use super::frame::Frame;
use super::group_sync::GroupSyncKey;
use super::im::Im;
use super::metadata::Metadata;
use super::realtime::Realtime;
use super::scalar::{decode_i32, decode_i64, encode_i32, encode_i64};
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    AuthStatus(i32),
    Im(Im),
    Ack(Ack),
    GroupNotification(Bytes),
    GroupIm(Im),
    Ping,
    Pong,
    AuthToken(AuthToken),
    Rt(Realtime),
    EnterRoom(i64),
    LeaveRoom(i64),
    RoomIm(Realtime),
    System(Bytes),
    UnreadCount(i32),
    /// Legacy CUSTOMER / CUSTOMER_SUPPORT: accepted and ignored.
    LegacyCustomer(u8),
    Sync(i64),
    SyncBegin(i64),
    SyncEnd(i64),
    SyncNotify(i64),
    SyncGroup(GroupSyncKey),
    SyncGroupBegin(GroupSyncKey),
    SyncGroupEnd(GroupSyncKey),
    SyncGroupNotify(GroupSyncKey),
    SyncKey(i64),
    GroupSyncKey(GroupSyncKey),
    Notification(Bytes),
    Metadata(Metadata),
    CustomerV2(CustomerV2),
}

impl Message {
    /// Decodes any known command's body (both directions). Unknown commands
    /// are an error; so are PING/PONG with a body.
    pub fn decode(cmd: u8, version: u8, body: Bytes) -> Result<Message, ProtocolError> {
        Ok(match cmd {
            AUTH_STATUS => Message::AuthStatus(decode_i32(cmd, body)?),
            IM => Message::Im(Im::decode(cmd, version, body)?),
            ACK => Message::Ack(Ack::decode(body)?),
            GROUP_NOTIFICATION => Message::GroupNotification(body),
            GROUP_IM => Message::GroupIm(Im::decode(cmd, version, body)?),
            PING | PONG if !body.is_empty() => return Err(ProtocolError::NonEmptyBody(cmd)),
            PING => Message::Ping,
            PONG => Message::Pong,
            AUTH_TOKEN => Message::AuthToken(AuthToken::decode(body)?),
            RT => Message::Rt(Realtime::decode(cmd, body)?),
            ENTER_ROOM => Message::EnterRoom(decode_i64(cmd, body)?),
            LEAVE_ROOM => Message::LeaveRoom(decode_i64(cmd, body)?),
            ROOM_IM => Message::RoomIm(Realtime::decode(cmd, body)?),
            SYSTEM => Message::System(body),
            UNREAD_COUNT => Message::UnreadCount(decode_i32(cmd, body)?),
            CUSTOMER | CUSTOMER_SUPPORT => {
                check_legacy(cmd, body)?;
                Message::LegacyCustomer(cmd)
            }
            SYNC => Message::Sync(decode_i64(cmd, body)?),
            SYNC_BEGIN => Message::SyncBegin(decode_i64(cmd, body)?),
            SYNC_END => Message::SyncEnd(decode_i64(cmd, body)?),
            SYNC_NOTIFY => Message::SyncNotify(decode_i64(cmd, body)?),
            SYNC_GROUP => Message::SyncGroup(GroupSyncKey::decode(cmd, body)?),
            SYNC_GROUP_BEGIN => Message::SyncGroupBegin(GroupSyncKey::decode(cmd, body)?),
            SYNC_GROUP_END => Message::SyncGroupEnd(GroupSyncKey::decode(cmd, body)?),
            SYNC_GROUP_NOTIFY => Message::SyncGroupNotify(GroupSyncKey::decode(cmd, body)?),
            SYNC_KEY => Message::SyncKey(decode_i64(cmd, body)?),
            GROUP_SYNC_KEY => Message::GroupSyncKey(GroupSyncKey::decode(cmd, body)?),
            NOTIFICATION => Message::Notification(body),
            METADATA => Message::Metadata(Metadata::decode(body)?),
            CUSTOMER_V2 => Message::CustomerV2(CustomerV2::decode(cmd, body)?),
            other => return Err(ProtocolError::UnknownCommand(other)),
        })
    }

    /// Decodes a frame received from a client: the command must be one a
    /// client may send (spec §1.6).
    pub fn decode_client(frame: &Frame) -> Result<Message, ProtocolError> {
        if !client_may_send(frame.cmd) {
            return Err(ProtocolError::NotAllowed(frame.cmd));
        }
        Message::decode(frame.cmd, frame.version, frame.body.clone())
    }

    pub fn cmd(&self) -> u8 {
        match self {
            Message::AuthStatus(_) => AUTH_STATUS,
            Message::Im(_) => IM,
            Message::Ack(_) => ACK,
            Message::GroupNotification(_) => GROUP_NOTIFICATION,
            Message::GroupIm(_) => GROUP_IM,
            Message::Ping => PING,
            Message::Pong => PONG,
            Message::AuthToken(_) => AUTH_TOKEN,
            Message::Rt(_) => RT,
            Message::EnterRoom(_) => ENTER_ROOM,
            Message::LeaveRoom(_) => LEAVE_ROOM,
            Message::RoomIm(_) => ROOM_IM,
            Message::System(_) => SYSTEM,
            Message::UnreadCount(_) => UNREAD_COUNT,
            Message::LegacyCustomer(c) => *c,
            Message::Sync(_) => SYNC,
            Message::SyncBegin(_) => SYNC_BEGIN,
            Message::SyncEnd(_) => SYNC_END,
            Message::SyncNotify(_) => SYNC_NOTIFY,
            Message::SyncGroup(_) => SYNC_GROUP,
            Message::SyncGroupBegin(_) => SYNC_GROUP_BEGIN,
            Message::SyncGroupEnd(_) => SYNC_GROUP_END,
            Message::SyncGroupNotify(_) => SYNC_GROUP_NOTIFY,
            Message::SyncKey(_) => SYNC_KEY,
            Message::GroupSyncKey(_) => GROUP_SYNC_KEY,
            Message::Notification(_) => NOTIFICATION,
            Message::Metadata(_) => METADATA,
            Message::CustomerV2(_) => CUSTOMER_V2,
        }
    }

    /// The body at `version`.
    pub fn encode(&self, version: u8) -> Bytes {
        match self {
            Message::AuthStatus(s) => encode_status(*s),
            Message::Im(m) | Message::GroupIm(m) => m.encode(version),
            Message::Ack(a) => a.encode(version),
            Message::GroupNotification(b) | Message::System(b) | Message::Notification(b) => {
                b.clone()
            }
            Message::Ping | Message::Pong => Bytes::new(),
            Message::LegacyCustomer(_) => Bytes::from_static(&[0u8; 36]),
            Message::AuthToken(a) => a.encode(),
            Message::Rt(m) | Message::RoomIm(m) => m.encode(),
            Message::EnterRoom(v)
            | Message::LeaveRoom(v)
            | Message::Sync(v)
            | Message::SyncBegin(v)
            | Message::SyncEnd(v)
            | Message::SyncNotify(v)
            | Message::SyncKey(v) => encode_i64(*v),
            Message::UnreadCount(v) => encode_i32(*v),
            Message::SyncGroup(g)
            | Message::SyncGroupBegin(g)
            | Message::SyncGroupEnd(g)
            | Message::SyncGroupNotify(g)
            | Message::GroupSyncKey(g) => g.encode(),
            Message::Metadata(m) => m.encode(),
            Message::CustomerV2(c) => c.encode(),
        }
    }

    /// A whole frame for this message.
    pub fn to_frame(&self, seq: i32, version: u8, flag: u8) -> Frame {
        Frame::new(self.cmd(), version, flag, seq, self.encode(version))
    }
}
