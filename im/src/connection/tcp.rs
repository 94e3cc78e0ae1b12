//! Raw TCP: readiness-based, so an idle connection holds no buffer at all —
//! reads go through the per-thread scratch buffer (see [`super::read`]) and
//! writes straight from the session's [`Encoder`].

use super::drive::{Io, Transport};
use super::read::{ReadError, ReadOutcome, read_frames};
use crate::disconnect::Disconnect;
use crate::limits::ConnPermit;
use crate::metrics::Transport as Kind;
use crate::node::Node;
use crate::session::encoder::{Encoder, Wire};
use bytes::BytesMut;
use ferry_common::protocol::Frame;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub struct Tcp {
    stream: TcpStream,
    /// A trailing partial frame; `None` (no allocation) almost always.
    partial: Option<BytesMut>,
}

/// The connection's whole task (see [`super::serve`] for why this is not an
/// `async fn`).
pub fn serve(
    node: Arc<Node>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnPermit,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let t = Tcp {
        stream,
        partial: None,
    };
    super::serve(node, t, peer, Kind::Tcp, permit)
}

impl Transport for Tcp {
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.stream.as_raw_fd())
    }

    /// Bytes leave the writer only by `try_write` into the socket.
    fn wire(&self, w: &Encoder) -> Wire {
        Wire::At(w.written())
    }

    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut Encoder,
        read: bool,
        out: &mut Vec<Frame>,
    ) -> Poll<Io> {
        let mut progress = false;
        while w.pending() > 0 {
            match self.stream.poll_write_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
                Poll::Ready(Ok(())) => {}
            }
            match self.stream.try_write(w.bytes()) {
                Ok(0) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
                Ok(n) => {
                    w.advance(n);
                    progress = true;
                }
                // Readiness was cleared; the next poll registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
            }
        }
        if read {
            loop {
                match self.stream.poll_read_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(_)) => return Poll::Ready(Io::Failed(Disconnect::ReadError)),
                    Poll::Ready(Ok(())) => {}
                }
                match read_frames(&self.stream, &mut self.partial, out) {
                    Ok(ReadOutcome::Data) => return Poll::Ready(Io::Progress),
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Eof) => return Poll::Ready(Io::Eof),
                    Err(ReadError::Io(_)) => return Poll::Ready(Io::Failed(Disconnect::ReadError)),
                    Err(ReadError::Protocol(e)) => {
                        tracing::debug!(error = %e, "protocol error");
                        return Poll::Ready(Io::Closing(Disconnect::ProtocolError));
                    }
                }
            }
        }
        if progress {
            Poll::Ready(Io::Progress)
        } else {
            Poll::Pending
        }
    }

    async fn close(mut self, _reason: Disconnect) {
        // FIN after everything written, then a lingering close.
        let _ = self.stream.shutdown().await;
        super::read::linger(&mut self.stream).await;
    }
}
