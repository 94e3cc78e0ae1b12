//! Reading client frames without holding a buffer while idle: bytes are read
//! into a per-thread scratch buffer, complete frames are copied out once, and
//! only a trailing partial frame is kept per connection.

use bytes::{Bytes, BytesMut};
use ferry_common::protocol::codec::{is_complete, peek_header, take_frame};
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
    /// Bytes arrived; zero or more complete frames were appended.
    Data,
    /// Readiness was spurious: nothing to read right now.
    WouldBlock,
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
    with_scratch(|scratch| {
        let n = match stream.try_read(scratch) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(e) => return Err(e.into()),
        };
        absorb(&scratch[..n], partial, out)?;
        Ok(ReadOutcome::Data)
    })
}

/// Runs `f` with this thread's scratch buffer. `f` must not await (it can't:
/// it is a plain closure), so the buffer is never held across a suspension.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH_BUF.with(|cell| f(&mut cell.borrow_mut()[..]))
}

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, after our last byte and FIN went out.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Lingering close: reads and discards until the client closes too (EOF),
/// an error, or [`LINGER`]. Closing a socket that still has unread input
/// makes the kernel send a reset at once and throw away whatever of our
/// replies had not yet reached the client — e.g. the last ACKs to a client
/// that was pipelining when the node shut down. Reading goes through the
/// scratch buffer, so a lingering connection holds no buffer either.
pub async fn linger<S: tokio::io::AsyncRead + Unpin>(io: &mut S) {
    let drain = std::future::poll_fn(|cx| {
        loop {
            let polled = with_scratch(|scratch| {
                let mut buf = tokio::io::ReadBuf::new(scratch);
                std::pin::Pin::new(&mut *io)
                    .poll_read(cx, &mut buf)
                    .map(|r| r.map(|()| buf.filled().len()))
            });
            match polled {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                // EOF or an error: the client is done with us.
                std::task::Poll::Ready(Ok(0) | Err(_)) => return std::task::Poll::Ready(()),
                // Discarded; read on.
                std::task::Poll::Ready(Ok(_)) => {}
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Appends freshly read bytes to the connection's partial frame (if any),
/// splits off complete frames, and keeps only a trailing partial frame.
pub fn absorb(
    data: &[u8],
    partial: &mut Option<BytesMut>,
    out: &mut Vec<Frame>,
) -> Result<(), ProtocolError> {
    let mut buf = match partial.take() {
        Some(mut p) => {
            p.extend_from_slice(data);
            p
        }
        None => BytesMut::from(data),
    };
    parse_frames(&mut buf, out)?;
    if !buf.is_empty() {
        // Keep a compact copy so the rest of this read's allocation is freed.
        *partial = Some(BytesMut::from(&buf[..]));
    }
    Ok(())
}

/// Decodes the one frame a WebSocket message carries (spec §1.3: only the
/// first frame counts, trailing bytes are ignored). The body shares `msg`.
pub fn parse_message(msg: Bytes) -> Result<Frame, ProtocolError> {
    let Some(header) = client_header(&msg)? else {
        return Err(ProtocolError::Truncated {
            cmd: msg.get(8).copied().unwrap_or(0),
            need: HEADER_LEN,
            got: msg.len(),
        });
    };
    if !is_complete(&msg, &header) {
        return Err(ProtocolError::Truncated {
            cmd: header.cmd,
            need: header.len,
            got: msg.len() - HEADER_LEN,
        });
    }
    Ok(Frame::with_header(
        &header,
        msg.slice(HEADER_LEN..HEADER_LEN + header.len),
    ))
}

/// Splits complete frames off `buf`. A bad header (length out of range, or a
/// command clients may not send) is an error as soon as the header is in,
/// before any body byte is awaited.
pub fn parse_frames(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), ProtocolError> {
    while let Some(header) = client_header(buf)? {
        if !is_complete(buf, &header) {
            break;
        }
        out.push(take_frame(buf, &header));
    }
    Ok(())
}

/// The header at the front of `buf` with the client limits applied: the
/// client body limit and the commands a client may send.
fn client_header(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
    let header = peek_header(buf, MAX_CLIENT_BODY)?;
    match header {
        Some(h) if !client_may_send(h.cmd) => Err(ProtocolError::NotAllowed(h.cmd)),
        _ => Ok(header),
    }
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
    fn websocket_message_carries_one_frame() {
        let msg = Bytes::from_static(&[0u8, 0, 0, 2, 0, 0, 0, 9, 4, 2, 0, 0, 7, 8, 99]);
        let f = parse_message(msg).expect("frame");
        assert_eq!((f.seq, f.cmd, &f.body[..]), (9, 4, &[7u8, 8][..]));
        let short = Bytes::from_static(&[0u8, 0, 0, 5, 0, 0, 0, 9, 4, 2, 0, 0, 7]);
        assert!(parse_message(short).is_err());
        assert!(parse_message(Bytes::from_static(&[0u8; 5])).is_err());
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
