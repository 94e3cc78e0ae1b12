//! The background task that owns the socket (the state it shares with the
//! API handles is [`super::state`]).
//!
//! One spawned task runs a reader and a writer concurrently (`select!` over
//! both, on split halves of the same `TcpStream`). The writer drains every
//! queued frame into one buffer per `write_all`, so a burst of sends costs one
//! syscall. The reader decodes with [`FrameCodec`] and hands frames to the
//! [`Dispatcher`]. Sequence numbers are assigned under a lock together with the
//! enqueue, so the seq order on the wire is the order of the numbers even when
//! several tasks send at once.

use super::dispatch::Dispatcher;
use super::error::CloseReason;
use super::event::Event;
use super::state::{ClientState, Outgoing, lock};
use crate::protocol::FrameCodec;
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;

/// Everything the task needs; built by `Client::connect`.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) shared: Arc<ClientState>,
    pub(crate) rx: mpsc::UnboundedReceiver<Outgoing>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) shutdown: oneshot::Receiver<()>,
    pub(crate) max_body: usize,
}

/// Upper bound of frames taken from the queue per write.
const WRITE_BATCH: usize = 512;
/// How long a local close may spend flushing frames already queued.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

impl Connection {
    /// Runs until the socket fails, the server closes, or the client closes.
    /// Ends by failing every waiter with `Closed` and emitting
    /// [`Event::Closed`].
    pub(crate) async fn run(self) {
        let Connection {
            mut stream,
            shared,
            mut rx,
            events,
            mut shutdown,
            max_body,
        } = self;
        let mut dispatcher = Dispatcher::new(shared.clone(), events);
        let (mut rd, mut wr) = stream.split();
        let reason = tokio::select! {
            r = read_loop(&mut rd, &mut dispatcher, max_body) => r,
            r = write_loop(&mut wr, &mut rx) => r,
            _ = &mut shutdown => {
                // Flush what the app already queued (e.g. a send right before
                // close), bounded in time.
                rx.close();
                let mut buf = BytesMut::new();
                while let Ok(item) = rx.try_recv() {
                    push_item(&mut buf, item);
                }
                let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                    wr.write_all(&buf).await?;
                    wr.shutdown().await
                })
                .await;
                CloseReason::Local
            }
        };
        // Order matters: refuse new sends, close the queue, then drop the
        // waiters (their receivers see `Closed`).
        shared.closed.store(true, Ordering::Release);
        rx.close();
        drop(rx);
        {
            let mut p = lock(&shared.pending);
            p.acks.clear();
            p.pongs.clear();
            p.auth = None;
        }
        dispatcher.closed(reason);
    }
}

fn push_item(buf: &mut BytesMut, item: Outgoing) {
    match item {
        Outgoing::Frame(f) => f.write_to(buf),
        Outgoing::Raw(b) => buf.extend_from_slice(&b),
    }
}

async fn write_loop(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> CloseReason {
    let mut items = Vec::with_capacity(64);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if rx.recv_many(&mut items, WRITE_BATCH).await == 0 {
            return CloseReason::Local;
        }
        for item in items.drain(..) {
            push_item(&mut buf, item);
        }
        if let Err(e) = wr.write_all(&buf).await {
            return CloseReason::Io(Arc::new(e));
        }
        buf.clear();
        if buf.capacity() > 1024 * 1024 {
            // Don't keep a burst-sized buffer forever.
            buf = BytesMut::with_capacity(16 * 1024);
        }
    }
}

async fn read_loop(
    rd: &mut tokio::net::tcp::ReadHalf<'_>,
    dispatcher: &mut Dispatcher,
    max_body: usize,
) -> CloseReason {
    let mut codec = FrameCodec::new(max_body);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                return if buf.is_empty() {
                    CloseReason::Eof
                } else {
                    CloseReason::TruncatedFrame
                };
            }
            Ok(_) => {}
            Err(e) => return CloseReason::Io(Arc::new(e)),
        }
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(reason) = dispatcher.handle(frame) {
                        return reason;
                    }
                }
                Ok(None) => break,
                Err(e) => return e.into(),
            }
        }
        dispatcher.end_of_read();
    }
}
