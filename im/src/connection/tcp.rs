//! The raw TCP transport: one task per connection that reads frames, runs
//! the session, and writes the session's replies and the outbox's pushes
//! in batches (one syscall for everything ready).
//!
//! Backpressure: frames from the client are only read while less than
//! [`WRITE_HIGH_WATER`] bytes wait to be written to it, so a client that
//! stops reading stops being served and is dropped after `write_timeout`
//! (or earlier, when its outbox overflows).

use super::read::{ReadError, ReadOutcome, read_frames};
use crate::node::{Node, Stats};
use crate::outbox::{CloseReason, Outbox};
use crate::session::writer::Writer;
use crate::session::{Control, Session};
use bytes::BytesMut;
use ferry_common::protocol::Frame;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

const WRITE_HIGH_WATER: usize = 256 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long replies may take to drain once the connection is closing.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

pub async fn serve(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let outbox = Arc::new(Outbox::new(node.cfg.outbox_bytes));
    let mut session = Session::new(node.clone(), outbox.clone(), peer);
    let reason = drive(&node, &stream, &mut session, &outbox).await;
    if reason == CloseReason::SlowConsumer.as_str() {
        Stats::add(&node.stats.slow_consumer_drops, 1);
    }
    tracing::debug!(%peer, reason, "connection closed");
    session.close();
    let _ = stream.shutdown().await;
}

async fn drive(
    node: &Node,
    stream: &TcpStream,
    session: &mut Session,
    outbox: &Outbox,
) -> &'static str {
    let idle = node.cfg.idle_timeout;
    let mut w = Writer::default();
    let mut partial: Option<BytesMut> = None;
    let mut frames: Vec<Frame> = Vec::new();
    let mut idle_deadline = Instant::now() + idle;
    let mut write_deadline: Option<Instant> = None;
    let mut closing: Option<&'static str> = None;
    let mut written_frames = 0;
    loop {
        // One lock: the close check and the frames, encoded straight into
        // the write buffer (nothing when the buffer is at its high water).
        let budget = WRITE_HIGH_WATER.saturating_sub(w.pending());
        if let Err(r) = outbox.drain_with(budget, |f| w.push(&f)) {
            return r.as_str();
        }
        if w.pending() > 0 {
            // Write eagerly; wait for writability only when the socket is full.
            match write_some(stream, &mut w) {
                Ok(true) => write_deadline = None,
                Ok(false) => {
                    write_deadline.get_or_insert_with(|| Instant::now() + WRITE_TIMEOUT);
                }
                Err(_) => return "write_error",
            }
            let n = w.frames();
            Stats::add(&node.stats.out_messages, n - written_frames);
            written_frames = n;
        }
        if let Some(r) = closing
            && w.pending() == 0
        {
            return r;
        }
        let writing = w.pending() > 0;
        let can_read = closing.is_none() && w.pending() < WRITE_HIGH_WATER;
        let deadline = match write_deadline {
            Some(d) if writing => d.min(idle_deadline),
            _ => idle_deadline,
        };
        tokio::select! {
            biased;
            r = stream.writable(), if writing => {
                if r.is_err() {
                    return "write_error";
                }
            }
            r = stream.readable(), if can_read => {
                if r.is_err() {
                    return "read_error";
                }
                // Frames that arrived before a bad header are still handled,
                // and every reply produced is flushed before the close.
                let mut failure = None;
                match read_frames(stream, &mut partial, &mut frames) {
                    Ok(ReadOutcome::Eof) => failure = Some("eof"),
                    Ok(ReadOutcome::Data) => {}
                    Err(ReadError::Io(_)) => return "read_error",
                    Err(ReadError::Protocol(e)) => {
                        tracing::debug!(error = %e, "protocol error");
                        failure = Some("protocol_error");
                    }
                }
                if !frames.is_empty() {
                    idle_deadline = Instant::now() + idle;
                }
                for f in frames.drain(..) {
                    // Boxed: the session's future (login, store writes) is
                    // large, and inline it would be part of every idle
                    // connection's task; boxed it only exists while a frame
                    // is being handled.
                    match Box::pin(session.handle(f, &mut w)).await {
                        Control::Continue => {}
                        Control::Close(r) | Control::CloseAfterFlush(r) => {
                            failure = failure.or(Some(r));
                            break;
                        }
                    }
                }
                // Not `clear()`: the vector's capacity would stay with the
                // connection while it idles.
                frames = Vec::new();
                if let Some(r) = failure {
                    closing = Some(r);
                    let flush_by = Instant::now() + CLOSE_FLUSH;
                    write_deadline = Some(write_deadline.map_or(flush_by, |d| d.min(flush_by)));
                }
            }
            _ = outbox.notified() => {}
            _ = sleep_until(deadline) => {
                return if writing && write_deadline.is_some_and(|d| d <= Instant::now()) {
                    "write_timeout"
                } else {
                    "idle_timeout"
                };
            }
        }
    }
}

/// Writes as much as the socket takes. Ok(true) when everything went out.
fn write_some(stream: &TcpStream, w: &mut Writer) -> io::Result<bool> {
    while w.pending() > 0 {
        match stream.try_write(w.bytes()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => w.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
