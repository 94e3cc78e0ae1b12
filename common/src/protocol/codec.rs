//! tokio-util codec for framed streams (client library, router links).
//!
//! The server's client connections use their own readiness-based reader (no
//! buffer held while idle) but share [`split_frame`] with this codec.

use super::ProtocolError;
use super::frame::Frame;
use super::header::{HEADER_LEN, Header};
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Takes one complete frame off the front of `buf`, if there is one.
/// Errors on a bad header (negative or oversize length) before the body is read.
pub fn split_frame(buf: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&buf[..HEADER_LEN]);
    let header = Header::parse(&h, max_body)?;
    if buf.len() < HEADER_LEN + header.len {
        // Grow towards the announced size in steps: a peer that announces a
        // large body but never sends it must not make us allocate it up front.
        buf.reserve((HEADER_LEN + header.len - buf.len()).min(64 * 1024));
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(header.len).freeze();
    Ok(Some(Frame {
        seq: header.seq,
        cmd: header.cmd,
        version: header.version,
        flag: header.flag,
        body,
    }))
}

/// Codec for a stream of frames with a body size limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_body: usize,
}

impl FrameCodec {
    pub fn new(max_body: usize) -> FrameCodec {
        FrameCodec { max_body }
    }
}

/// Codec error: either the protocol was violated or the socket failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(split_frame(src, self.max_body)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.write_to(dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.write_to(dst);
        Ok(())
    }
}
