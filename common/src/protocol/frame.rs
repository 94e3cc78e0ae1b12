//! A whole frame (header fields + body) and its encoding into one `Bytes`.

use super::header::{HEADER_LEN, Header};
use bytes::{Bytes, BytesMut};

/// One protocol frame. The body is shared (`Bytes`), so the same payload can
/// go to many connections without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: i32,
    pub cmd: u8,
    pub version: u8,
    pub flag: u8,
    pub body: Bytes,
}

impl Frame {
    pub fn new(cmd: u8, version: u8, flag: u8, seq: i32, body: Bytes) -> Frame {
        Frame {
            seq,
            cmd,
            version,
            flag,
            body,
        }
    }

    /// The frame a parsed header announces, with its body (whose length the
    /// caller has matched to `header.len`).
    pub fn with_header(header: &Header, body: Bytes) -> Frame {
        Frame {
            seq: header.seq,
            cmd: header.cmd,
            version: header.version,
            flag: header.flag,
            body,
        }
    }

    pub fn header(&self) -> Header {
        Header {
            len: self.body.len(),
            seq: self.seq,
            cmd: self.cmd,
            version: self.version,
            flag: self.flag,
        }
    }

    /// Appends header and body to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(HEADER_LEN + self.body.len());
        self.header().write(out);
        out.extend_from_slice(&self.body);
    }

    /// Encodes the whole frame once.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.body.len());
        self.write_to(&mut b);
        b.freeze()
    }
}
