//! METADATA (37): `sync_key i64, prev_sync_key i64, 16 zero bytes`. Sent right
//! before the frame it describes, with consecutive seq numbers (spec §1.5).

use super::ProtocolError;
use super::command::METADATA;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

pub const METADATA_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub sync_key: i64,
    pub prev_sync_key: i64,
}

impl Metadata {
    pub fn decode(body: Bytes) -> Result<Metadata, ProtocolError> {
        let mut r = Reader::new(METADATA, body);
        r.need(METADATA_LEN)?;
        Ok(Metadata {
            sync_key: r.i64()?,
            prev_sync_key: r.i64()?,
        })
    }

    pub fn write(&self, out: &mut impl BufMut) {
        out.put_i64(self.sync_key);
        out.put_i64(self.prev_sync_key);
        out.put_bytes(0, 16);
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(METADATA_LEN);
        self.write(&mut b);
        b.freeze()
    }
}
