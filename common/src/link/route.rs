//! RouteMessage: body of PUBLISH (132), PUBLISH_ROOM (138), PUBLISH_APP (139)
//! and GROUP_CHANGED (140); the leading part of PUBLISH_GROUP (135).
//!
//! Ferry layout: `appid, receiver, msgid, prev_msgid, device_id, timestamp`
//! (all i64), `msg_len u32`, `msg` (a complete frame). gobelieve's layout has
//! no `prev_msgid` and an i16 `msg_len` (see [`RouteMessage::decode_legacy`]).

use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMessage {
    pub appid: i64,
    /// uid, group id or room id.
    pub receiver: i64,
    /// Id in the receiver's queue (0 when the message carries no metadata).
    pub msgid: i64,
    /// Previous id in that queue, so remote pushes get exact METADATA.
    pub prev_msgid: i64,
    /// Sending device, excluded from delivery on the sender's own nodes.
    pub device_id: i64,
    /// Publish time, Unix nanoseconds.
    pub timestamp: i64,
    /// The embedded frame (12-byte header + body), encoded once.
    pub msg: Bytes,
}

impl RouteMessage {
    pub fn decode(cmd: u8, body: Bytes) -> Result<RouteMessage, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(52)?;
        RouteMessage::read(&mut r)
    }

    /// Reads one encoding from `r` (also the start of a PUBLISH_GROUP body).
    pub(crate) fn read(r: &mut Reader) -> Result<RouteMessage, ProtocolError> {
        let (appid, receiver, msgid, prev_msgid, device_id, timestamp) =
            (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.i64()?);
        let len = r.u32()? as usize;
        let msg = r.bytes(len)?;
        Ok(RouteMessage {
            appid,
            receiver,
            msgid,
            prev_msgid,
            device_id,
            timestamp,
            msg,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(52 + self.msg.len());
        self.put(&mut b);
        b.freeze()
    }

    /// Appends the encoding to `b` (also the start of a PUBLISH_GROUP body).
    pub fn put(&self, b: &mut BytesMut) {
        b.put_i64(self.appid);
        b.put_i64(self.receiver);
        b.put_i64(self.msgid);
        b.put_i64(self.prev_msgid);
        b.put_i64(self.device_id);
        b.put_i64(self.timestamp);
        b.put_u32(self.msg.len() as u32);
        b.put_slice(&self.msg);
    }

    /// gobelieve layout (min 42): no prev_msgid, `msg_len i16`.
    pub fn decode_legacy(cmd: u8, body: Bytes) -> Result<RouteMessage, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(42)?;
        let (appid, receiver, msgid, device_id, timestamp) =
            (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.i64()?);
        let len = r.u16()? as i16;
        if len < 0 {
            return Err(ProtocolError::BadInnerLength(cmd));
        }
        let msg = r.bytes(len as usize)?;
        Ok(RouteMessage {
            appid,
            receiver,
            msgid,
            prev_msgid: 0,
            device_id,
            timestamp,
            msg,
        })
    }

    /// gobelieve layout; fails if the embedded frame does not fit an i16.
    pub fn encode_legacy(&self) -> Result<Bytes, ProtocolError> {
        if self.msg.len() > i16::MAX as usize {
            return Err(ProtocolError::Link(
                "embedded frame too large for the legacy layout",
            ));
        }
        let mut b = BytesMut::with_capacity(42 + self.msg.len());
        b.put_i64(self.appid);
        b.put_i64(self.receiver);
        b.put_i64(self.msgid);
        b.put_i64(self.device_id);
        b.put_i64(self.timestamp);
        b.put_i16(self.msg.len() as i16);
        b.put_slice(&self.msg);
        Ok(b.freeze())
    }
}
