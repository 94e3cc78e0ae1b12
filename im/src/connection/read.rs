//! Reading client frames without holding a buffer while idle: bytes are read
//! into a per-thread scratch buffer, complete frames are copied out once, and
//! only a trailing partial frame is kept per connection.

use bytes::{Buf, BytesMut};
use ferry_common::protocol::command::client_may_send;
use ferry_common::protocol::{Frame, HEADER_LEN, Header, MAX_CLIENT_BODY, ProtocolError};
use std::cell::RefCell;
use std::io;
use tokio::net::TcpStream;

const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

pub enum ReadOutcome {
    /// Zero or more frames were appended (readiness can be spurious).
    Data,
    Eof,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// One non-blocking read; complete frames go to `out`.
pub fn read_frames(
    stream: &TcpStream,
    partial: &mut Option<BytesMut>,
    out: &mut Vec<Frame>,
) -> Result<ReadOutcome, ReadError> {
    SCRATCH_BUF.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let n = match stream.try_read(&mut scratch[..]) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Data),
            Err(e) => return Err(e.into()),
        };
        let mut buf = match partial.take() {
            Some(mut p) => {
                p.extend_from_slice(&scratch[..n]);
                p
            }
            None => BytesMut::from(&scratch[..n]),
        };
        parse_frames(&mut buf, out)?;
        if !buf.is_empty() {
            // Keep a compact copy so the rest of this read's allocation is freed.
            *partial = Some(BytesMut::from(&buf[..]));
        }
        Ok(ReadOutcome::Data)
    })
}

/// Splits complete frames off `buf`. A bad header (length out of range, or a
/// command clients may not send) is an error as soon as the header is in,
/// before any body byte is awaited.
pub fn parse_frames(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), ProtocolError> {
    while buf.len() >= HEADER_LEN {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        let header = Header::parse(&h, MAX_CLIENT_BODY)?;
        if !client_may_send(header.cmd) {
            return Err(ProtocolError::NotAllowed(header.cmd));
        }
        if buf.len() < HEADER_LEN + header.len {
            break;
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(header.len).freeze();
        out.push(Frame {
            seq: header.seq,
            cmd: header.cmd,
            version: header.version,
            flag: header.flag,
            body,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_forbidden_command_before_body() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 100, 0, 0, 0, 1, 130, 2, 0, 0][..]);
        let mut out = Vec::new();
        assert_eq!(
            parse_frames(&mut b, &mut out),
            Err(ProtocolError::NotAllowed(130))
        );
    }

    #[test]
    fn keeps_partial_frame() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 1, 13, 2, 0, 0, 0, 0, 0, 8][..]);
        let mut out = Vec::new();
        parse_frames(&mut b, &mut out).expect("ok");
        assert_eq!(out.len(), 1);
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn rejects_oversize_length() {
        let mut b = BytesMut::from(&[0u8, 0, 0x80, 0, 0, 0, 0, 1, 4, 2, 0, 0][..]);
        let mut out = Vec::new();
        assert!(matches!(
            parse_frames(&mut b, &mut out),
            Err(ProtocolError::BadLength { .. })
        ));
    }
}
