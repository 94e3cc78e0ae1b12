//! The state the API handles and the connection task share: the writer
//! channel with its seq counter, the callers waiting for replies, the sync
//! machine and the connection's flags. Its own module so that the task
//! ([`super::connection`]) and the frame dispatcher ([`super::dispatch`])
//! both use it without importing each other.

use super::ack::Ack;
use super::error::ClientError;
use super::sync::SyncMachine;
use crate::protocol::Frame;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
pub(crate) struct ClientState {
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

impl ClientState {
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

/// Creates the shared state and the writer channel.
pub(crate) fn shared(
    sync: Option<SyncMachine>,
    request_timeout: Duration,
) -> (Arc<ClientState>, mpsc::UnboundedReceiver<Outgoing>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = ClientState {
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
