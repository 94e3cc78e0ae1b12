//! Per-connection ACK ledger: for each msgid-carrying send of a connection,
//! where its ACK is — not written yet, in the connection's write buffer, or
//! on the wire up to a known byte offset of the TCP stream — so the node can
//! tell whether that ACK may not have reached the client.
//!
//! A ledger exists only for connections that sent a message with a client
//! msgid (idle connections and msgid-0 clients cost nothing) and lives in
//! [`Ledgers`] while its connection is open, so a resend arriving on another
//! connection can ask it. At connection end the unconfirmed keys are marked
//! in the store *before* the ledger is detached (see
//! [`crate::connection::drive`]), so a resend racing the close finds either
//! the live ledger or the mark.

use super::tcp_info;
use crate::registry::ConnId;
use crate::store::{DedupKey, QueueId, Unconfirmed};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};

/// Entries above which confirmed ones are pruned (one `TCP_INFO` read).
const PRUNE_AT: usize = 64;
/// Hard bound: past it the oldest entries are dropped, i.e. taken as
/// confirmed (a possible duplicate, never a loss).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The append is running; no ACK exists yet.
    Sending,
    /// The ACK was appended to the write buffer; its last byte is plaintext
    /// byte `n` of the connection's output.
    Buffered(u64),
    /// The ACK's last byte is byte `n` of the TCP stream.
    Wire(u64),
}

struct Entry {
    mark: Unconfirmed,
    stage: Stage,
}

struct Inner {
    /// The socket, while the connection owns it (`None` once detached).
    fd: Option<RawFd>,
    entries: Vec<Entry>,
}

/// See the module docs.
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    /// `fd`: the connection's TCP socket, or `None` when the transport
    /// cannot tell what the peer received (WebSocket): its ACKs count as
    /// confirmed once handed to the transport.
    pub fn new(fd: Option<RawFd>) -> Ledger {
        Ledger {
            inner: Mutex::new(Inner {
                fd,
                entries: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A send of `mark.key` starts (before its append).
    pub fn sending(&self, mark: Unconfirmed) {
        let mut g = self.lock();
        g.entries.retain(|e| e.mark.key != mark.key);
        if g.entries.len() >= PRUNE_AT {
            let acked = g.fd.and_then(tcp_info::bytes_acked);
            let fd = g.fd;
            g.entries.retain(|e| !confirmed(e.stage, acked, fd));
            if g.entries.len() >= MAX_ENTRIES {
                let n = g.entries.len() + 1 - MAX_ENTRIES;
                g.entries.drain(..n);
            }
        }
        g.entries.push(Entry {
            mark,
            stage: Stage::Sending,
        });
    }

    /// The ACK of `key` was appended to the write buffer, ending at
    /// plaintext offset `end`; `queue`: the request's first queue, when only
    /// the send's outcome told it.
    pub fn acked(&self, key: &DedupKey, queue: Option<QueueId>, end: u64) {
        let mut g = self.lock();
        if let Some(e) = g.entries.iter_mut().rev().find(|e| e.mark.key == *key) {
            e.stage = Stage::Buffered(end);
            if let Some(q) = queue {
                e.mark.queue = q;
            }
        }
    }

    /// Everything up to plaintext offset `plain` is on the wire, which has
    /// carried `wire` bytes so far (`None`: no wire to watch, take it as
    /// delivered).
    pub fn on_wire(&self, plain: u64, wire: Option<u64>) {
        let mut g = self.lock();
        let before = g.entries.len();
        for e in &mut g.entries {
            if let Stage::Buffered(end) = e.stage
                && end <= plain
            {
                e.stage = Stage::Wire(wire.unwrap_or(0));
            }
        }
        if wire.is_none() && before > 0 {
            g.entries.retain(|e| !matches!(e.stage, Stage::Wire(_)));
        }
    }

    /// Whether the ACK of `key` may not have reached the client; `None`
    /// when the ledger knows nothing of `key`.
    pub fn may_be_lost(&self, key: &DedupKey) -> Option<bool> {
        let g = self.lock();
        let e = g.entries.iter().rev().find(|e| e.mark.key == *key)?;
        let acked = match e.stage {
            Stage::Wire(_) => g.fd.and_then(tcp_info::bytes_acked),
            _ => None,
        };
        Some(!confirmed(e.stage, acked, g.fd))
    }

    /// The sends whose ACK is not confirmed received, at connection end
    /// (the socket is still open, after a reset too).
    pub fn unconfirmed(&self) -> Vec<Unconfirmed> {
        let g = self.lock();
        let acked = g.fd.and_then(tcp_info::bytes_acked);
        g.entries
            .iter()
            .filter(|e| !confirmed(e.stage, acked, g.fd))
            .map(|e| e.mark)
            .collect()
    }

    /// Forgets the socket: called before the connection drops it.
    pub fn detach(&self) {
        let mut g = self.lock();
        g.fd = None;
        g.entries = Vec::new();
    }
}

/// An ACK on the wire is confirmed once the peer acknowledged its last
/// byte; one that never got there (or whose socket cannot be asked) is not.
fn confirmed(stage: Stage, acked: Option<u64>, fd: Option<RawFd>) -> bool {
    match stage {
        Stage::Sending | Stage::Buffered(_) => false,
        Stage::Wire(end) => match (fd, acked) {
            (Some(_), Some(acked)) => acked >= end,
            // The socket cannot be asked: when in doubt, confirmed.
            _ => true,
        },
    }
}

/// The ledgers of this node's open connections, by connection serial.
#[derive(Default)]
pub struct Ledgers {
    map: Mutex<HashMap<ConnId, Arc<Ledger>>>,
}

impl Ledgers {
    pub fn insert(&self, conn: ConnId, l: Arc<Ledger>) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conn, l);
    }

    pub fn get(&self, conn: ConnId) -> Option<Arc<Ledger>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&conn)
            .cloned()
    }

    pub fn remove(&self, conn: ConnId) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(m: i64) -> Unconfirmed {
        Unconfirmed {
            key: DedupKey {
                appid: 7,
                sender: 1,
                device_id: 3,
                client_msgid: m,
                receiver: 2,
            },
            queue: QueueId { appid: 7, uid: 2 },
        }
    }

    #[test]
    fn stages_without_a_socket() {
        let l = Ledger::new(None);
        l.sending(mark(1));
        l.sending(mark(2));
        assert_eq!(l.may_be_lost(&mark(1).key), Some(true));
        l.acked(&mark(1).key, None, 50);
        assert_eq!(l.may_be_lost(&mark(1).key), Some(true), "only buffered");
        l.on_wire(49, None);
        assert_eq!(l.may_be_lost(&mark(1).key), Some(true));
        l.on_wire(50, None);
        // No socket to ask: handed over counts as delivered.
        assert_eq!(l.may_be_lost(&mark(1).key), None);
        assert_eq!(l.unconfirmed(), vec![mark(2)]);
        assert_eq!(l.may_be_lost(&mark(3).key), None);
    }
}
