//! Bounds-checked big-endian reads over a body; a short body is an error.

use super::ProtocolError;
use bytes::{Buf, Bytes};

pub(crate) struct Reader {
    cmd: u8,
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(cmd: u8, buf: Bytes) -> Reader {
        Reader { cmd, buf }
    }

    /// Fails unless at least `need` bytes remain.
    pub(crate) fn need(&self, need: usize) -> Result<(), ProtocolError> {
        if self.buf.len() < need {
            return Err(ProtocolError::Truncated {
                cmd: self.cmd,
                need,
                got: self.buf.len(),
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ProtocolError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ProtocolError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ProtocolError> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    /// `len` bytes; a length beyond the body is an inner-length error.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, ProtocolError> {
        if self.buf.len() < len {
            return Err(ProtocolError::BadInnerLength(self.cmd));
        }
        Ok(self.buf.split_to(len))
    }

    /// All remaining bytes (the "content" of most bodies).
    pub(crate) fn rest(self) -> Bytes {
        self.buf
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
}
