//! The transport-agnostic connection loop: one task per connection reads
//! frames, runs the [`Session`], and writes the session's replies and the
//! outbox's pushes in batches.
//!
//! Backpressure: frames from the client are only read while less than
//! [`WRITE_HIGH_WATER`] bytes wait to be written to it, so a client that
//! stops reading stops being served and is dropped after [`WRITE_TIMEOUT`]
//! (or earlier, when its outbox overflows).
//!
//! Shutdown: when the node's shutdown token fires, the loop stops reading,
//! writes every reply and queued push it still holds (for at most
//! [`CLOSE_FLUSH`]) and closes with reason `shutdown`. A frame being handled
//! when the token fires (e.g. a store write) is finished first, since the
//! token is only looked at between frames.

use super::guard::Guard;
use crate::disconnect::Disconnect;
use crate::limits::ConnPermit;
use crate::metrics::{self, Transport as Kind};
use crate::node::Node;
use crate::outbox::Outbox;
use crate::session::encoder::{Encoder, Wire};
use crate::session::{Control, Session};
use ferry_common::protocol::Frame;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub const WRITE_HIGH_WATER: usize = 256 * 1024;
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long replies and queued pushes may take to drain once the connection
/// is closing.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// What one [`Transport::poll_io`] call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Bytes were written and/or frames were read.
    Progress,
    /// The peer closed the connection.
    Eof,
    /// Stop reading; flush what is pending, then close with this reason
    /// (a protocol error, a WebSocket text message).
    Closing(Disconnect),
    /// The connection is unusable (I/O error); close now with this reason.
    Failed(Disconnect),
}

/// A client connection's byte (or message) stream.
pub trait Transport: Send {
    /// The TCP socket under the transport, for `TCP_INFO` (`None` when the
    /// transport cannot reach it).
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Where the bytes taken from `w` are (see [`Wire`]).
    fn wire(&self, w: &Encoder) -> Wire {
        let _ = w;
        Wire::Untracked
    }

    /// Writes as much of `w` as the peer takes without blocking and, if
    /// `read` is set, reads what has arrived, appending complete frames to
    /// `out`. Ready when anything happened; Pending (with wakers registered
    /// for both directions) otherwise. Must not hold buffers across Pending.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut Encoder,
        read: bool,
        out: &mut Vec<Frame>,
    ) -> Poll<Io>;

    /// Ends the connection, telling the peer why where the transport can
    /// (a WebSocket close frame).
    fn close(self, reason: Disconnect) -> impl Future<Output = ()> + Send;
}

/// Runs one client connection to its end; `permit` (its slot under
/// `--max-connections`) is released when it ends.
///
/// A plain function returning one `async` block, not an `async fn` wrapped
/// by the transports' own `async fn`s: every layer of `async fn` keeps its
/// own copy of its arguments in the connection's task for as long as the
/// connection lives, and an idle connection's memory is mostly that task.
pub fn serve<T: Transport>(
    node: Arc<Node>,
    mut t: T,
    peer: SocketAddr,
    kind: Kind,
    permit: ConnPermit,
) -> impl Future<Output = ()> + Send {
    node.metrics.accepted(kind);
    let outbox = Arc::new(Outbox::new(node.cfg.outbox_bytes));
    let mut session = Session::new(node.clone(), outbox.clone(), peer, kind, t.raw_fd());
    async move {
        let reason = drive(&node, &mut t, &mut session, &outbox).await;
        // Before the socket goes: which ACKs the client may not have got.
        session.settle().await;
        node.metrics.disconnected(reason);
        tracing::debug!(peer = %session.peer(), transport = kind.as_str(), reason = reason.label(), "connection closed");
        session.close();
        t.close(reason).await;
        // Last: the permit is the connection's place in `ferry_connections`.
        drop(permit);
    }
}

/// Why the loop woke up.
enum Wake {
    Io(Io),
    /// The outbox was woken: a push, a close, shutdown or a passed deadline.
    Outbox,
    Shutdown,
}

async fn drive<T: Transport>(
    node: &Node,
    t: &mut T,
    session: &mut Session,
    outbox: &Outbox,
) -> Disconnect {
    // Admission hooks: login deadline and frame-rate limit.
    let mut guard = Guard::new(&node.cfg.limits);
    let mut w = Encoder::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut idle_deadline = Instant::now() + node.cfg.idle_timeout;
    let mut write_deadline: Option<Instant> = None;
    let mut closing: Option<(Disconnect, Instant)> = None;
    loop {
        // One lock: the close check and the frames, encoded straight into
        // the write buffer (nothing when the buffer is at its high water).
        let budget = WRITE_HIGH_WATER.saturating_sub(w.pending());
        // Per-command frame counters are added to once per batch.
        let drained = {
            let mut count = metrics::FramesOut::default();
            outbox.drain_with(budget, |f| w.push_counted(&f, &mut count))
        };
        if let Err(r) = drained {
            return r;
        }
        if let Some((r, _)) = closing
            && w.pending() == 0
            && outbox.is_empty()
        {
            return r;
        }
        let can_read = closing.is_none() && w.pending() < WRITE_HIGH_WATER;
        let deadline = [Some(idle_deadline), write_deadline, closing.map(|c| c.1)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(idle_deadline);
        let deadline = guard.earliest(deadline);
        // Shutdown and the node-wide timer wake the outbox (see `wake_list`).
        // A block, so that what it computes (the wake, the clock) is not
        // kept across the coalescing wait below: every local alive at an
        // `.await` is part of the connection's task while it idles.
        let (mut failure, coalesce) = {
            let wake = if closing.is_none() && node.shutdown.is_cancelled() {
                Wake::Shutdown
            } else {
                // One hand-written wait instead of a `select!` over futures:
                // everything a waiting connection holds is part of its task for
                // as long as it idles.
                outbox.set_deadline(deadline);
                poll_fn(|cx| {
                    if let Poll::Ready(io) = t.poll_io(cx, &mut w, can_read, &mut frames) {
                        return Poll::Ready(Wake::Io(io));
                    }
                    outbox.poll_notified(cx).map(|()| Wake::Outbox)
                })
                .await
            };
            session.on_wire(t.wire(&w), w.written());
            if w.pending() == 0 {
                write_deadline = None;
            } else {
                write_deadline.get_or_insert_with(|| Instant::now() + WRITE_TIMEOUT);
            }
            match wake {
                Wake::Io(Io::Progress) => (None, false),
                Wake::Io(Io::Eof) => (Some(Disconnect::Eof), false),
                Wake::Io(Io::Closing(r)) => (Some(r), false),
                Wake::Io(Io::Failed(r)) => return r,
                Wake::Shutdown => (Some(Disconnect::Shutdown), false),
                // A push, a close, or the timer: see which deadline passed.
                Wake::Outbox => {
                    let now = Instant::now();
                    if let Some((r, by)) = closing
                        && by <= now
                    {
                        return r;
                    }
                    if write_deadline.is_some_and(|d| d <= now) {
                        return Disconnect::WriteTimeout;
                    }
                    if guard.auth_expired(&node.metrics, session.peer()) {
                        return Disconnect::AuthTimeout;
                    }
                    if idle_deadline <= now {
                        return Disconnect::IdleTimeout;
                    }
                    (None, w.pending() == 0 && closing.is_none())
                }
            }
        };
        // A push woke us with nothing of ours in flight. Frames the client
        // sent are handled first (a sender's next message must not wait
        // behind the fan-out); otherwise the tasks ready right now (the
        // fan-out still pushing, other senders' fan-outs) run first, so what
        // they queue for this connection leaves in the same socket write
        // instead of one write each. The scheduler resumes us as soon as it
        // runs out of ready tasks: on an idle node this adds no latency.
        if coalesce {
            match read_or_yield(t, &mut w, can_read, &mut frames).await {
                None | Some(Io::Progress) => {}
                Some(Io::Eof) => failure = Some(Disconnect::Eof),
                Some(Io::Closing(r)) => failure = Some(r),
                Some(Io::Failed(r)) => return r,
            }
        }
        if let Err(r) = guard.charge(frames.len(), &node.metrics, session.peer()) {
            frames.clear();
            failure = Some(r);
        }
        // Frames that arrived before a bad header are still handled, and
        // every reply produced is flushed before the close.
        if !frames.is_empty() {
            idle_deadline = Instant::now() + node.cfg.idle_timeout;
        }
        for f in frames.drain(..) {
            metrics::frame_in(f.cmd);
            // Boxed: the session's future (login, store writes) is large,
            // and inline it would be part of every idle connection's task;
            // boxed it only exists while a frame is being handled.
            match Box::pin(session.handle(f, &mut w)).await {
                Control::Continue => {}
                Control::Close(r) => {
                    failure = failure.or(Some(r));
                    break;
                }
            }
        }
        if frames.capacity() > 0 {
            // Not `clear()`: the vector's capacity would stay with the
            // connection while it idles.
            frames = Vec::new();
        }
        if session.is_authed() {
            guard.authenticated();
        }
        if let Some(r) = failure
            && closing.is_none()
        {
            closing = Some((r, Instant::now() + CLOSE_FLUSH));
        }
    }
}

/// Reads what the client sent, if anything arrived (`Some`); otherwise
/// yields once to the tasks that are ready (`None`).
async fn read_or_yield<T: Transport>(
    t: &mut T,
    w: &mut Encoder,
    can_read: bool,
    frames: &mut Vec<Frame>,
) -> Option<Io> {
    match poll_fn(|cx| Poll::Ready(t.poll_io(cx, w, can_read, frames))).await {
        Poll::Ready(io) => Some(io),
        Poll::Pending => {
            tokio::task::yield_now().await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, JwtAuth};
    use crate::config::ImOptions;
    use crate::store::{FjallGroupStore, FjallOptions, FjallStore};

    /// An idle connection's memory is mostly its task: tokio rounds the task
    /// (about 110 bytes of its own plus this future) up to a multiple of 128
    /// bytes, and 768 is what keeps an idle connection under 2 KiB. Waiting
    /// on one more future, or an `async fn` layer copying its arguments,
    /// shows up here first. The test measures the future, so it allows the
    /// task's own [`TASK_OVERHEAD`] on top.
    #[tokio::test]
    async fn idle_connection_future_keeps_its_task_within_768_bytes() {
        /// tokio's task header and scheduler fields, rounded up to 16.
        const TASK_OVERHEAD: usize = 112;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = ImOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .expect("config");
        let store = FjallStore::open(dir.path(), FjallOptions::default()).expect("store");
        let groups = FjallGroupStore::open(dir.path()).expect("groups");
        let node = Arc::new(Node::new(
            cfg,
            Arc::new(store),
            Arc::new(groups),
            Authenticator::Jwt(JwtAuth::new(vec![7; 32])),
            None,
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let permit = node.limits.admit(Kind::Tcp).expect("admitted");
        let task = crate::connection::tcp::serve(node.clone(), stream, addr, permit);
        let size = std::mem::size_of_val(&task);
        assert!(
            size + TASK_OVERHEAD <= 768,
            "connection future is {size} bytes"
        );
    }
}
