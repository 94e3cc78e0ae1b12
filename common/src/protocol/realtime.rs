//! RT (17) and ROOM_IM (20): `sender i64, receiver i64, content`.

use super::ProtocolError;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Unstored message; for ROOM_IM `receiver` is the room id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realtime {
    pub sender: i64,
    pub receiver: i64,
    pub content: Bytes,
}

impl Realtime {
    pub fn decode(cmd: u8, body: Bytes) -> Result<Realtime, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(16)?;
        Ok(Realtime {
            sender: r.i64()?,
            receiver: r.i64()?,
            content: r.rest(),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + self.content.len());
        b.put_i64(self.sender);
        b.put_i64(self.receiver);
        b.put_slice(&self.content);
        b.freeze()
    }
}
