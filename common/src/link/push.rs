//! BatchPush: body of PUSH (134), a request to queue offline pushes.
//!
//! Ferry layout: `appid i64, count u32, receivers count×i64, msg_len u32, msg`.
//! gobelieve's has a u16 count and an i16 msg_len ([`BatchPush::decode_legacy`]).

use super::PUSH;
use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPush {
    pub appid: i64,
    pub receivers: Vec<i64>,
    /// Embedded frame; its command and body decide the push queue.
    pub msg: Bytes,
}

impl BatchPush {
    pub fn decode(body: Bytes) -> Result<BatchPush, ProtocolError> {
        let mut r = Reader::new(PUSH, body);
        r.need(16)?;
        let appid = r.i64()?;
        let count = r.u32()? as usize;
        if count.saturating_mul(8) > r.remaining() {
            return Err(ProtocolError::BadInnerLength(PUSH));
        }
        let mut receivers = Vec::with_capacity(count);
        for _ in 0..count {
            receivers.push(r.i64()?);
        }
        let len = r.u32()? as usize;
        let msg = r.bytes(len)?;
        Ok(BatchPush {
            appid,
            receivers,
            msg,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + 8 * self.receivers.len() + self.msg.len());
        b.put_i64(self.appid);
        b.put_u32(self.receivers.len() as u32);
        for r in &self.receivers {
            b.put_i64(*r);
        }
        b.put_u32(self.msg.len() as u32);
        b.put_slice(&self.msg);
        b.freeze()
    }

    /// gobelieve layout (min 12): `appid, count u16, receivers, msg_len i16, msg`.
    pub fn decode_legacy(body: Bytes) -> Result<BatchPush, ProtocolError> {
        let mut r = Reader::new(PUSH, body);
        r.need(12)?;
        let appid = r.i64()?;
        let count = r.u16()? as usize;
        if count * 8 > r.remaining() {
            return Err(ProtocolError::BadInnerLength(PUSH));
        }
        let mut receivers = Vec::with_capacity(count);
        for _ in 0..count {
            receivers.push(r.i64()?);
        }
        let len = r.u16()? as i16;
        if len < 0 {
            return Err(ProtocolError::BadInnerLength(PUSH));
        }
        let msg = r.bytes(len as usize)?;
        Ok(BatchPush {
            appid,
            receivers,
            msg,
        })
    }

    /// gobelieve layout; fails past 65 535 receivers or a 32 KiB frame.
    pub fn encode_legacy(&self) -> Result<Bytes, ProtocolError> {
        if self.receivers.len() > u16::MAX as usize || self.msg.len() > i16::MAX as usize {
            return Err(ProtocolError::Link("push too large for the legacy layout"));
        }
        let mut b = BytesMut::with_capacity(12 + 8 * self.receivers.len() + self.msg.len());
        b.put_i64(self.appid);
        b.put_u16(self.receivers.len() as u16);
        for r in &self.receivers {
            b.put_i64(*r);
        }
        b.put_i16(self.msg.len() as i16);
        b.put_slice(&self.msg);
        Ok(b.freeze())
    }
}
