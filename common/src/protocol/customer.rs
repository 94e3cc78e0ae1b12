//! CUSTOMER_V2 (64), and the legacy CUSTOMER (24) / CUSTOMER_SUPPORT (25)
//! bodies that are accepted and ignored.

use super::ProtocolError;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Cross-app message: `sender_appid, sender, receiver_appid, receiver, timestamp i32, content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerV2 {
    pub sender_appid: i64,
    pub sender: i64,
    pub receiver_appid: i64,
    pub receiver: i64,
    pub timestamp: i32,
    pub content: Bytes,
}

impl CustomerV2 {
    pub fn decode(cmd: u8, body: Bytes) -> Result<CustomerV2, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(36)?;
        Ok(CustomerV2 {
            sender_appid: r.i64()?,
            sender: r.i64()?,
            receiver_appid: r.i64()?,
            receiver: r.i64()?,
            timestamp: r.i32()?,
            content: r.rest(),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(36 + self.content.len());
        b.put_i64(self.sender_appid);
        b.put_i64(self.sender);
        b.put_i64(self.receiver_appid);
        b.put_i64(self.receiver);
        b.put_i32(self.timestamp);
        b.put_slice(&self.content);
        b.freeze()
    }
}

/// Legacy customer body; only its minimum length (36) is checked.
pub fn check_legacy(cmd: u8, body: Bytes) -> Result<(), ProtocolError> {
    Reader::new(cmd, body).need(36)
}
