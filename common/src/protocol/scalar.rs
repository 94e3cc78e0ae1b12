//! Bodies that are a single integer: ENTER/LEAVE_ROOM and SYNC*/SYNC_KEY
//! (`i64`), UNREAD_COUNT and AUTH_STATUS (`i32`).

use super::ProtocolError;
use super::reader::Reader;
use bytes::Bytes;

pub fn decode_i64(cmd: u8, body: Bytes) -> Result<i64, ProtocolError> {
    Reader::new(cmd, body).i64()
}

pub fn decode_i32(cmd: u8, body: Bytes) -> Result<i32, ProtocolError> {
    Reader::new(cmd, body).i32()
}

pub fn encode_i64(v: i64) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

pub fn encode_i32(v: i32) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}
