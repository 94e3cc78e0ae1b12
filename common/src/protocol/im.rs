//! IM (4) and GROUP_IM (8): the only bodies whose layout depends on the version.

use super::ProtocolError;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// A peer or group message. `receiver` is a uid for IM and a group id for
/// GROUP_IM; `msgid` is the sender's local id, kept unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Im {
    pub sender: i64,
    pub receiver: i64,
    /// Unix seconds, set by the server. Absent on the wire at version 0.
    pub timestamp: i32,
    pub msgid: i32,
    pub content: Bytes,
}

impl Im {
    /// v0: `sender, receiver, msgid, content`; v≥1 adds `timestamp` before msgid.
    pub fn decode(cmd: u8, version: u8, body: Bytes) -> Result<Im, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(if version == 0 { 20 } else { 24 })?;
        let sender = r.i64()?;
        let receiver = r.i64()?;
        let timestamp = if version == 0 { 0 } else { r.i32()? };
        let msgid = r.i32()?;
        Ok(Im {
            sender,
            receiver,
            timestamp,
            msgid,
            content: r.rest(),
        })
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::with_capacity(24 + self.content.len());
        b.put_i64(self.sender);
        b.put_i64(self.receiver);
        if version != 0 {
            b.put_i32(self.timestamp);
        }
        b.put_i32(self.msgid);
        b.put_slice(&self.content);
        b.freeze()
    }
}

/// Re-encodes a v≥1 IM/GROUP_IM body for a version-0 connection by dropping the
/// timestamp. Any other body is returned unchanged (shared, not copied).
pub fn body_for_version(cmd: u8, version: u8, body: &Bytes) -> Bytes {
    use super::command::{GROUP_IM, IM};
    if version == 0 && (cmd == IM || cmd == GROUP_IM) && body.len() >= 24 {
        let mut b = BytesMut::with_capacity(body.len() - 4);
        b.put_slice(&body[..16]);
        b.put_slice(&body[20..]);
        return b.freeze();
    }
    body.clone()
}
