//! One client's protocol state machine, independent of the transport (TCP
//! now; TLS and WebSocket drive the same `Session`). The transport feeds it
//! decoded frames and flushes what it writes into the [`Writer`].

mod group;
mod hooks;
mod login;
mod peer;
mod realtime;
mod room;
mod sync;
pub mod writer;

use crate::node::{Node, Stats};
use crate::outbox::Outbox;
use crate::registry::ConnId;
use crate::store::QueueId;
use ferry_common::protocol::ack::Ack;
use ferry_common::protocol::command::{ACK, PONG};
use ferry_common::protocol::{Frame, Message};
use std::net::SocketAddr;
use std::sync::Arc;
use writer::Writer;

/// What the transport should do after a frame was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Write what is pending, then close (e.g. failed login).
    CloseAfterFlush(&'static str),
    /// Close now.
    Close(&'static str),
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
}

impl Session {
    pub fn new(
        node: Arc<Node>,
        outbox: Arc<Outbox>,
        peer: SocketAddr,
        transport: crate::metrics::Transport,
    ) -> Session {
        let conn = node.registry.next_conn_id();
        Stats::add(&node.stats.connections, 1);
        node.live.insert(conn, &outbox);
        Session {
            node,
            conn,
            outbox,
            peer,
            transport,
            authed: None,
            room: None,
            user_permit: None,
        }
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
    pub async fn handle(&mut self, frame: Frame, w: &mut Writer) -> Control {
        Stats::add(&self.node.stats.in_messages, 1);
        let msg = match Message::decode_client(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "undecodable frame, closing");
                return Control::Close("protocol_error");
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
    pub(super) fn ack(&self, seq: i32, status: u8, flag: u8, w: &mut Writer) -> Control {
        if status != 0 && w.version() < 2 {
            tracing::info!(peer = %self.peer, status, "refusing a v1 client's frame: closing");
            return Control::CloseAfterFlush("refused_v1");
        }
        w.frame(ACK, flag, &Ack { seq, status }.encode(2));
        Control::Continue
    }

    /// Unregisters the connection; called once when the transport ends.
    pub fn close(&mut self) {
        if let Some(a) = self.authed.take() {
            let left = self.node.registry.remove(a.appid, a.uid, self.conn);
            if let Some(c) = &self.node.cluster {
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
        self.node
            .stats
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.node.live.remove(self.conn);
        if self.authed.is_some() {
            self.close();
        }
    }
}
