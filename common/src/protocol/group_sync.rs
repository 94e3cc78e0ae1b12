//! SYNC_GROUP family (30–33) and GROUP_SYNC_KEY (35): `group_id i64, sync_key i64`.

use super::ProtocolError;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSyncKey {
    pub group_id: i64,
    pub sync_key: i64,
}

impl GroupSyncKey {
    pub fn decode(cmd: u8, body: Bytes) -> Result<GroupSyncKey, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(16)?;
        Ok(GroupSyncKey {
            group_id: r.i64()?,
            sync_key: r.i64()?,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_i64(self.group_id);
        b.put_i64(self.sync_key);
        b.freeze()
    }
}
