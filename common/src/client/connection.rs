//! The background task that owns the socket, and the state it shares with the
//! API handles.
//!
//! One spawned task runs a reader and a writer concurrently (`select!` over
//! both, on split halves of the same `TcpStream`). The writer drains every
//! queued frame into one buffer per `write_all`, so a burst of sends costs one
//! syscall. The reader decodes with [`FrameCodec`] and hands frames to the
//! [`Dispatcher`]. Sequence numbers are assigned under a lock together with the
//! enqueue, so the seq order on the wire is the order of the numbers even when
//! several tasks send at once.

use super::ack::Ack;
use super::dispatch::Dispatcher;
use super::error::{ClientError, CloseReason};
use super::event::Event;
use super::sync::SyncMachine;
use crate::protocol::{Frame, FrameCodec};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;

/// One item for the writer.
pub(crate) enum Outgoing {
    Frame(Frame),
    /// Bytes written verbatim (tests of malformed input).
    Raw(Bytes),
}

/// Callers waiting for a reply from the server.
#[derive(Default)]
pub(crate) struct Pending {
    /// ACK waiters by the seq of the frame they acknowledge.
    pub(crate) acks: HashMap<i32, oneshot::Sender<Ack>>,
    /// PONG carries no seq, so PING waiters are answered in order.
    pub(crate) pongs: VecDeque<oneshot::Sender<()>>,
    /// The AUTH_TOKEN in flight: its header version and the waiter.
    pub(crate) auth: Option<(u8, oneshot::Sender<i32>)>,
}

struct Outbound {
    /// Last seq used; the first frame gets 1.
    seq: i32,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Counters for load tools and tests.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) pushes_accepted: AtomicU64,
    pub(crate) pushes_ignored: AtomicU64,
    pub(crate) synced: AtomicU64,
    pub(crate) frames_received: AtomicU64,
}

/// State shared by the API handles and the connection task.
pub(crate) struct Shared {
    out: Mutex<Outbound>,
    pub(crate) pending: Mutex<Pending>,
    /// `None` when the sync loop is off.
    pub(crate) sync: Option<Mutex<SyncMachine>>,
    /// Header version for outgoing frames: 0 until auth succeeds.
    pub(crate) version: AtomicU8,
    pub(crate) authenticated: AtomicBool,
    pub(crate) closed: AtomicBool,
    pub(crate) uid: AtomicI64,
    pub(crate) appid: AtomicI64,
    pub(crate) counters: Counters,
    pub(crate) request_timeout: Duration,
}

/// Locks ignoring poisoning: the protected data stays consistent because no
/// code path panics while holding these locks, and a client library must not
/// turn someone else's panic into its own.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Queues a frame with the next seq. `register` runs under the same lock
    /// with the assigned seq, so a waiter is in place before the frame can
    /// possibly be answered. `version: None` uses the connection's version.
    pub(crate) fn send(
        &self,
        cmd: u8,
        version: Option<u8>,
        flag: u8,
        body: Bytes,
        register: impl FnOnce(i32, &mut Pending),
    ) -> Result<i32, ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let mut out = lock(&self.out);
        let seq = out.seq.wrapping_add(1);
        let version = version.unwrap_or_else(|| self.version.load(Ordering::Acquire));
        register(seq, &mut lock(&self.pending));
        let frame = Frame::new(cmd, version, flag, seq, body);
        if out.tx.send(Outgoing::Frame(frame)).is_err() {
            drop(out);
            // The task is gone (it already cleared the waiters); drop the
            // one we just added too.
            let mut p = lock(&self.pending);
            p.acks.clear();
            p.pongs.clear();
            p.auth = None;
            return Err(ClientError::Closed);
        }
        out.seq = seq;
        Ok(seq)
    }

    /// Queues something that takes no seq (a raw frame or raw bytes).
    pub(crate) fn send_raw(&self, item: Outgoing) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        lock(&self.out)
            .tx
            .send(item)
            .map_err(|_| ClientError::Closed)
    }
}

/// Everything the task needs; built by `Client::connect`.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::UnboundedReceiver<Outgoing>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) shutdown: oneshot::Receiver<()>,
    pub(crate) max_body: usize,
}

/// Creates the shared state and the writer channel.
pub(crate) fn shared(
    sync: Option<SyncMachine>,
    request_timeout: Duration,
) -> (Arc<Shared>, mpsc::UnboundedReceiver<Outgoing>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Shared {
        out: Mutex::new(Outbound { seq: 0, tx }),
        pending: Mutex::new(Pending::default()),
        sync: sync.map(Mutex::new),
        version: AtomicU8::new(0),
        authenticated: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        uid: AtomicI64::new(0),
        appid: AtomicI64::new(0),
        counters: Counters::default(),
        request_timeout,
    };
    (Arc::new(shared), rx)
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
