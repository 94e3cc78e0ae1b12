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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// Node-wide number of the send ([`Ledgers::ticket`]).
    ticket: u64,
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

    /// Send `ticket` of `mark.key` starts (before its append). An entry of
    /// an earlier send of the same key stays until this one is ACKed: a
    /// verdict on this send is about that earlier ACK.
    pub fn sending(&self, ticket: u64, mark: Unconfirmed) {
        let mut g = self.lock();
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
            ticket,
            mark,
            stage: Stage::Sending,
        });
    }

    /// The ACK of `key` was appended to the write buffer, ending at
    /// plaintext offset `end`; `queue`: the request's first queue, when only
    /// the send's outcome told it.
    /// Earlier sends of the key are forgotten: this ACK is the one the
    /// client waits for now.
    pub fn acked(&self, ticket: u64, queue: Option<QueueId>, end: u64) {
        let mut g = self.lock();
        let Some(key) = g
            .entries
            .iter()
            .find(|e| e.ticket == ticket)
            .map(|e| e.mark.key)
        else {
            return;
        };
        g.entries
            .retain(|e| e.mark.key != key || e.ticket == ticket);
        if let Some(e) = g.entries.iter_mut().find(|e| e.ticket == ticket) {
            e.stage = Stage::Buffered(end);
            if let Some(q) = queue {
                e.mark.queue = q;
            }
        }
    }

    /// Send `ticket` was refused before anything was stored: no ACK will
    /// follow, and nothing is left to mark.
    pub fn forget(&self, ticket: u64) {
        self.lock().entries.retain(|e| e.ticket != ticket);
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

    /// Where the ACK of an earlier send of `key` (not send `own`) is;
    /// `None` when the ledger knows of none.
    pub fn ack_state(&self, key: &DedupKey, own: Option<u64>) -> Option<AckState> {
        let g = self.lock();
        let e = g
            .entries
            .iter()
            .rev()
            .find(|e| e.mark.key == *key && Some(e.ticket) != own)?;
        Some(match e.stage {
            Stage::Sending | Stage::Buffered(_) => AckState::NotSent,
            Stage::Wire(_) => {
                let acked = g.fd.and_then(tcp_info::bytes_acked);
                if confirmed(e.stage, acked, g.fd) {
                    AckState::Confirmed
                } else {
                    AckState::Unacked
                }
            }
        })
    }

    /// The sends whose ACK never left this host, at connection end (the
    /// socket is still open, after a reset too). An ACK that was
    /// transmitted but not acknowledged is in doubt — a client that read it
    /// and reset its connection before its delayed TCP ACK went out, or a
    /// path that died — and counts as delivered: a rare duplicate instead
    /// of taking a client's next identical send for a resend.
    pub fn unconfirmed(&self) -> Vec<Unconfirmed> {
        let g = self.lock();
        let c = g.fd.and_then(tcp_info::counters);
        g.entries
            .iter()
            .filter(|e| match (e.stage, c) {
                (Stage::Sending | Stage::Buffered(_), _) => true,
                (Stage::Wire(end), Some(c)) => end > c.acked && end > c.transmitted,
                // The socket cannot be asked: when in doubt, confirmed.
                (Stage::Wire(_), None) => false,
            })
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

/// Where an earlier send's ACK is, as its connection's ledger sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckState {
    /// Not written to the socket (the send may still be running).
    NotSent,
    /// Written, not yet acknowledged by the peer's TCP stack.
    Unacked,
    /// Acknowledged by the peer's TCP stack (or not askable: taken as such).
    Confirmed,
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

/// How long the keys a closing connection marked stay answerable from
/// memory after its ledger is gone (see [`Ledgers::closed`]).
const CLOSED_KEPT: Duration = Duration::from_secs(60);

/// The ledgers of this node's open connections, by connection serial.
#[derive(Default)]
pub struct Ledgers {
    map: Mutex<HashMap<ConnId, Arc<Ledger>>>,
    /// Keys marked unconfirmed by connections that closed recently. A
    /// verdict reads the store's record (no mark yet) and then the ledger
    /// (gone): without this memory, a resend racing the close's mark write
    /// would be taken for new and stored a second time.
    closed: Mutex<HashMap<ConnId, (Instant, Vec<DedupKey>)>>,
    tickets: AtomicU64,
}

impl Ledgers {
    /// A node-wide unique number for one send.
    pub fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::Relaxed) + 1
    }

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

    /// Remembers the keys `conn` marked at its close; called before its
    /// ledger is removed. Entries older than [`CLOSED_KEPT`] are dropped.
    pub fn closed_with(&self, conn: ConnId, marks: &[Unconfirmed]) {
        if marks.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        closed.retain(|_, (at, _)| now.duration_since(*at) < CLOSED_KEPT);
        closed.insert(conn, (now, marks.iter().map(|m| m.key).collect()));
    }

    /// Whether `conn`, now closed, marked `key` unconfirmed at its close.
    pub fn was_marked(&self, conn: ConnId, key: &DedupKey) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&conn)
            .is_some_and(|(_, keys)| keys.contains(key))
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
    fn a_closed_connection_remembers_what_it_marked() {
        let ls = Ledgers::default();
        assert!(!ls.was_marked(5, &mark(1).key));
        ls.closed_with(5, &[mark(1)]);
        assert!(ls.was_marked(5, &mark(1).key));
        assert!(!ls.was_marked(5, &mark(2).key), "only the marked key");
        assert!(!ls.was_marked(6, &mark(1).key), "only that connection");
        ls.closed_with(6, &[]);
        assert!(!ls.was_marked(6, &mark(1).key));
    }

    #[test]
    fn stages_without_a_socket() {
        let l = Ledger::new(None);
        l.sending(1, mark(1));
        l.sending(2, mark(2));
        assert_eq!(l.ack_state(&mark(1).key, None), Some(AckState::NotSent));
        assert_eq!(l.ack_state(&mark(1).key, Some(1)), None, "not its own");
        l.acked(1, None, 50);
        assert_eq!(l.ack_state(&mark(1).key, None), Some(AckState::NotSent));
        l.on_wire(49, None);
        assert_eq!(l.ack_state(&mark(1).key, None), Some(AckState::NotSent));
        l.on_wire(50, None);
        // No socket to ask: handed over counts as delivered (and forgotten).
        assert_eq!(l.ack_state(&mark(1).key, None), None);
        assert_eq!(l.unconfirmed(), vec![mark(2)]);
        // A second send of a key is judged by the first one's ACK, and its
        // own ACK replaces it.
        l.sending(3, mark(4));
        l.acked(3, None, 70);
        l.sending(4, mark(4));
        assert_eq!(l.ack_state(&mark(4).key, Some(4)), Some(AckState::NotSent));
        l.acked(4, None, 80);
        l.on_wire(80, None);
        l.sending(5, mark(4));
        assert_eq!(
            l.ack_state(&mark(4).key, Some(5)),
            None,
            "first ACK delivered"
        );
    }

    /// Over a real socket: an ACK is unacked until the peer's TCP stack
    /// acknowledged its last byte.
    #[test]
    fn wire_entries_follow_tcp_info() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let l = Ledger::new(Some(server.as_raw_fd()));
        l.sending(1, mark(1));
        l.acked(1, None, 10);
        // Ten bytes of plaintext are bytes 1..=10 of the stream; pretend a
        // TLS layer made them 20 on the wire.
        l.on_wire(10, Some(20));
        server.write_all(&[0; 10]).expect("write");
        let mut buf = [0; 10];
        client.read_exact(&mut buf).expect("read");
        client.write_all(&[1]).expect("reply carries the ack");
        server.read_exact(&mut buf[..1]).expect("read");
        assert_eq!(l.ack_state(&mark(1).key, None), Some(AckState::Unacked));
        server.write_all(&[0; 10]).expect("write");
        client.read_exact(&mut buf).expect("read");
        client.write_all(&[1]).expect("reply");
        server.read_exact(&mut buf[..1]).expect("read");
        assert_eq!(l.ack_state(&mark(1).key, None), Some(AckState::Confirmed));
        assert!(l.unconfirmed().is_empty());
        l.detach();
        assert_eq!(l.ack_state(&mark(1).key, None), None);
    }
}
