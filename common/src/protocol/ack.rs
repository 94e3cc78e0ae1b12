//! ACK (5): `seq i32` at version ≤ 1, `seq i32, status u8` at version ≥ 2.

use super::ProtocolError;
use super::command::ACK;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

pub const STATUS_OK: u8 = 0;
pub const STATUS_NOT_MY_FRIEND: u8 = 1;
pub const STATUS_NOT_YOUR_FRIEND: u8 = 2;
pub const STATUS_IN_BLACKLIST: u8 = 3;
pub const STATUS_NOT_GROUP_MEMBER: u8 = 64;
pub const STATUS_GROUP_NOT_EXIST: u8 = 65;
/// Ferry extension: the frame's sender is not the authenticated user.
pub const STATUS_INVALID_SENDER: u8 = 66;
/// Ferry extension: the sender is muted in this group / forbidden to speak.
pub const STATUS_MUTED: u8 = 67;
/// Ferry extension: the sender is not in the room it wrote to.
pub const STATUS_NOT_IN_ROOM: u8 = 68;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: i32,
    pub status: u8,
}

impl Ack {
    /// Lenient, as clients' ACKs are only informative: a missing status is 0,
    /// and, as in gobelieve (spec §2.3, "any length accepted"), a body too
    /// short for `seq` reads as seq 0 instead of failing (which would close
    /// the client's connection).
    pub fn decode(body: Bytes) -> Result<Ack, ProtocolError> {
        if body.len() < 4 {
            return Ok(Ack { seq: 0, status: 0 });
        }
        let mut r = Reader::new(ACK, body);
        let seq = r.i32()?;
        let status = if r.remaining() > 0 { r.u8()? } else { 0 };
        Ok(Ack { seq, status })
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::with_capacity(5);
        b.put_i32(self.seq);
        if version >= 2 {
            b.put_u8(self.status);
        }
        b.freeze()
    }
}
