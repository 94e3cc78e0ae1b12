//! One client's protocol state machine, independent of the transport (TCP,
//! TLS, WebSocket and secure WebSocket all drive the same `Session`). The
//! transport feeds it decoded frames and flushes what it writes into the
//! [`Encoder`].

pub mod encoder;
mod group;
mod hooks;
mod login;
mod peer;
mod realtime;
mod relations;
mod room;
mod sync;
mod words;

use crate::disconnect::Disconnect;
use crate::node::Node;
use crate::outbox::Outbox;
use crate::registry::ConnId;
use crate::resend::ledger::Ledger;
use crate::store::{Dedup, DedupKey, Origin, QueueId, Unconfirmed, record};
use encoder::{Encoder, Wire};
use ferry_common::protocol::ack::Ack;
use ferry_common::protocol::command::{ACK, PONG};
use ferry_common::protocol::{Frame, Message};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the transport should do after a frame was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop reading, write every reply already produced (e.g. the ACK or
    /// AUTH_STATUS that explains the close), then close for this reason.
    /// There is no "close without flushing": a reply the session produced
    /// is always worth the bounded [`CLOSE_FLUSH`] wait.
    ///
    /// [`CLOSE_FLUSH`]: crate::connection::drive::CLOSE_FLUSH
    Close(Disconnect),
}

/// State of an authenticated connection.
#[derive(Debug, Clone, Copy)]
pub struct Authed {
    pub appid: i64,
    pub uid: i64,
    /// Device number (spec §3.1 step 5); a per-connection negative number when
    /// the client gave no device id, so browser tabs are told apart.
    pub device_id: i64,
    pub online: bool,
    pub forbidden: bool,
}

impl Authed {
    pub fn queue(&self) -> QueueId {
        QueueId {
            appid: self.appid,
            uid: self.uid,
        }
    }
}

pub struct Session {
    node: Arc<Node>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    /// The transport, for presence.
    transport: crate::metrics::Transport,
    authed: Option<Authed>,
    room: Option<i64>,
    /// This login's slot under `--max-connections-per-user`.
    user_permit: Option<crate::limits::UserPermit>,
    /// The TCP socket under the transport (for the ACK ledger).
    wire_fd: Option<std::os::fd::RawFd>,
    /// ACK ledger, from the first send with a msgid on.
    ledger: Option<Arc<Ledger>>,
}

impl Session {
    pub fn new(
        node: Arc<Node>,
        outbox: Arc<Outbox>,
        peer: SocketAddr,
        transport: crate::metrics::Transport,
        wire_fd: Option<std::os::fd::RawFd>,
    ) -> Session {
        let conn = node.delivery.registry.next_conn_id();
        node.wake_list.insert(conn, &outbox);
        Session {
            node,
            conn,
            outbox,
            peer,
            transport,
            authed: None,
            room: None,
            user_permit: None,
            wire_fd,
            ledger: None,
        }
    }

    /// The dedup record of a client send, registered in the ACK ledger
    /// before its append starts; `None` for msgid 0 (no identity: every
    /// such send is a new message). `first_queue`: the request's first
    /// entry's queue, if known now.
    fn dedup(
        &mut self,
        key: DedupKey,
        content: &[u8],
        first_queue: QueueId,
    ) -> Option<(Dedup, u64)> {
        if key.client_msgid == 0 {
            return None;
        }
        let ticket = self.node.ledgers.ticket();
        let conn = self.conn;
        let node = &self.node;
        let fd = self.wire_fd;
        let ledger = self.ledger.get_or_insert_with(|| {
            let l = Arc::new(Ledger::new(fd));
            node.ledgers.insert(conn, l.clone());
            l
        });
        ledger.sending(
            ticket,
            Unconfirmed {
                key,
                queue: first_queue,
            },
        );
        let d = Dedup {
            key,
            digest: record::digest(content),
            origin: Origin {
                incarnation: self.node.incarnation,
                connection: self.conn,
            },
            replace: false,
        };
        Some((d, ticket))
    }

    /// The ACK of send `ticket` was just appended to `w`.
    fn acked(&self, ticket: Option<u64>, first_queue: Option<QueueId>, w: &Encoder) {
        if let (Some(t), Some(l)) = (ticket, &self.ledger) {
            l.acked(t, first_queue, w.appended());
        }
    }

    /// Send `ticket` was refused (nothing stored): drop its ledger entry.
    fn refused(&self, ticket: Option<u64>) {
        if let (Some(t), Some(l)) = (ticket, &self.ledger) {
            l.forget(t);
        }
    }

    /// Output progress from the transport, for the ACK ledger.
    pub fn on_wire(&self, wire: Wire, written: u64) {
        if let Some(l) = &self.ledger {
            match wire {
                Wire::Unflushed => {}
                Wire::Untracked => l.on_wire(written, None),
                Wire::At(n) => l.on_wire(written, Some(n)),
            }
        }
    }

    /// At connection end, while the socket is still open: marks the sends
    /// whose ACK the client may not have got, then retires the ledger (in
    /// this order, so a resend racing the close sees one or the other).
    pub async fn settle(&mut self) {
        let Some(l) = self.ledger.take() else {
            return;
        };
        let marks = l.unconfirmed();
        // In memory first: a resend on this node that finds the ledger gone
        // while the store's mark is still being written sees it there.
        self.node.ledgers.closed_with(self.conn, &marks);
        if !marks.is_empty() {
            tracing::debug!(peer = %self.peer, sends = marks.len(), "ACKs not confirmed at close");
            if let Err(e) = self.node.store.mark_unconfirmed(marks).await {
                tracing::warn!(peer = %self.peer, error = %e, "could not mark unconfirmed ACKs; their resends will be stored again");
            }
        }
        self.node.ledgers.remove(self.conn);
        l.detach();
    }

    /// Whether AUTH_TOKEN succeeded on this connection.
    pub fn is_authed(&self) -> bool {
        self.authed.is_some()
    }

    /// The client's address (for logs).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Handles one decoded frame from the client.
    pub async fn handle(&mut self, frame: Frame, w: &mut Encoder) -> Control {
        let msg = match Message::decode_client(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "undecodable frame, closing");
                return Control::Close(Disconnect::ProtocolError);
            }
        };
        let Some(a) = self.authed else {
            return match msg {
                Message::Ping => {
                    w.frame(PONG, 0, &bytes::Bytes::new());
                    Control::Continue
                }
                Message::AuthToken(t) => self.login(t, frame.version, w).await,
                // Nothing else is processed before login (spec §10.13).
                _ => Control::Continue,
            };
        };
        let msg = self.filter_words(msg, frame.flag);
        match msg {
            Message::Ping => {
                w.frame(PONG, 0, &bytes::Bytes::new());
                Control::Continue
            }
            // A second login on the same connection is ignored (the identity
            // of a connection never changes).
            Message::AuthToken(_) => Control::Continue,
            Message::Im(m) => self.peer_im(a, frame.seq, frame.flag, m, w).await,
            Message::CustomerV2(m) => self.customer(a, frame.seq, frame.flag, m, w).await,
            Message::GroupIm(m) => self.group_im(a, frame.seq, frame.flag, m, w).await,
            Message::Rt(m) => self.rt(a, frame.seq, m, w),
            Message::EnterRoom(r) => self.enter_room(a, r),
            Message::LeaveRoom(r) => self.leave_room(a, r),
            Message::RoomIm(m) => self.room_im(a, frame.seq, m, w).await,
            Message::Sync(k) => self.sync(a, k, w).await,
            Message::SyncKey(k) => self.sync_key(a, k).await,
            Message::SyncGroup(g) => self.sync_group(a, g, w).await,
            Message::GroupSyncKey(g) => self.group_sync_key(a, g).await,
            Message::UnreadCount(n) => self.unread(a, n).await,
            // Client ACKs, PONGs, METADATA and legacy customer frames are
            // accepted and ignored (spec §1.6).
            _ => Control::Continue,
        }
    }

    /// Replies ACK(seq, status). A refusal (status ≠ 0) cannot be seen by a
    /// version-1 client, so instead of a misleading ACK it gets its
    /// connection closed (documented in README, "Refused messages").
    pub(super) fn ack(&self, seq: i32, status: u8, flag: u8, w: &mut Encoder) -> Control {
        if status != 0 && w.version() < 2 {
            tracing::info!(peer = %self.peer, status, "refusing a v1 client's frame: closing");
            return Control::Close(Disconnect::RefusedV1);
        }
        w.frame(ACK, flag, &Ack { seq, status }.encode(2));
        Control::Continue
    }

    /// Unregisters the connection; called once when the transport ends.
    pub fn close(&mut self) {
        if let Some(a) = self.authed.take() {
            let left = self
                .node
                .delivery
                .registry
                .remove(a.appid, a.uid, self.conn);
            if let Some(c) = &self.node.delivery.cluster {
                c.unsubscribe(a.appid, a.uid, a.online);
                c.device_offline(a.appid, a.uid, self.conn);
            }
            if left == 0 {
                self.node.presence_left(a.appid, a.uid);
            }
            if let Some(r) = self.room.take() {
                self.leave_current_room(a.appid, r);
            }
        }
        self.user_permit = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.node.wake_list.remove(self.conn);
        if let Some(l) = self.ledger.take() {
            self.node.ledgers.remove(self.conn);
            l.detach();
        }
        if self.authed.is_some() {
            self.close();
        }
    }
}
