//! tokio-util codec for framed streams (client library, router links), and
//! the two steps every frame splitter is made of.
//!
//! The server's client connections use their own readiness-based reader (no
//! buffer held while idle, and a command check before the body is awaited)
//! but are built from the same [`peek_header`] and [`take_frame`].

use super::ProtocolError;
use super::frame::Frame;
use super::header::{HEADER_LEN, Header};
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The header at the front of `buf`, once all of its bytes have arrived.
/// A bad header (negative or oversize length) is an error at once, before
/// any body byte is awaited.
pub fn peek_header(buf: &[u8], max_body: usize) -> Result<Option<Header>, ProtocolError> {
    match buf.first_chunk::<HEADER_LEN>() {
        Some(h) => Header::parse(h, max_body).map(Some),
        None => Ok(None),
    }
}

/// Whether `buf` holds the whole frame `header` announces.
pub fn is_complete(buf: &[u8], header: &Header) -> bool {
    buf.len() >= HEADER_LEN + header.len
}

/// Takes the frame `header` announces off the front of `buf`; the caller has
/// checked [`is_complete`]. The body shares `buf`'s allocation.
pub fn take_frame(buf: &mut BytesMut, header: &Header) -> Frame {
    buf.advance(HEADER_LEN);
    Frame::with_header(header, buf.split_to(header.len).freeze())
}

/// Takes one complete frame off the front of `buf`, if there is one.
/// Errors on a bad header (negative or oversize length) before the body is read.
pub fn split_frame(buf: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, ProtocolError> {
    let Some(header) = peek_header(buf, max_body)? else {
        return Ok(None);
    };
    if !is_complete(buf, &header) {
        // Grow towards the announced size in steps: a peer that announces a
        // large body but never sends it must not make us allocate it up front.
        buf.reserve((HEADER_LEN + header.len - buf.len()).min(64 * 1024));
        return Ok(None);
    }
    Ok(Some(take_frame(buf, &header)))
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
