//! The 12-byte frame header (spec §1.1): `len i32 | seq i32 | cmd u8 | version u8 | flag u8 | 0`.

use super::ProtocolError;
use bytes::BufMut;

/// Size of the header on every wire.
pub const HEADER_LEN: usize = 12;
/// Largest body a client may send (exclusive bound 32 KiB, spec §1.2).
pub const MAX_CLIENT_BODY: usize = 32 * 1024 - 1;
/// Protocol version used internally (storage, router links).
pub const DEFAULT_VERSION: u8 = 2;

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: i32,
    pub cmd: u8,
    pub version: u8,
    pub flag: u8,
}

impl Header {
    /// Parses a header from exactly [`HEADER_LEN`] bytes, rejecting a negative
    /// length or one above `max_body`.
    pub fn parse(b: &[u8; HEADER_LEN], max_body: usize) -> Result<Header, ProtocolError> {
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if len < 0 || len as usize > max_body {
            return Err(ProtocolError::BadLength {
                len: len as i64,
                max: max_body,
            });
        }
        Ok(Header {
            len: len as usize,
            seq: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            cmd: b[8],
            version: b[9],
            flag: b[10],
        })
    }

    /// Writes the header; `len` is the body length that will follow.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_i32(self.len as i32);
        out.put_i32(self.seq);
        out.put_u8(self.cmd);
        out.put_u8(self.version);
        out.put_u8(self.flag);
        out.put_u8(0);
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let mut s = &mut b[..];
        self.write(&mut s);
        b
    }
}
