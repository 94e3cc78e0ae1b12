//! Chat rooms (spec §3.8): one room per connection, memory only.

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::hooks::Kind;
use ferry_common::protocol::ack::{STATUS_INVALID_SENDER, STATUS_MUTED, STATUS_NOT_IN_ROOM};
use ferry_common::protocol::realtime::Realtime;

impl Session {
    pub(super) fn enter_room(&mut self, a: Authed, room: i64) -> Control {
        if room == 0 || self.room == Some(room) {
            return Control::Continue;
        }
        if let Some(old) = self.room.take() {
            self.leave_current_room(a.appid, old);
        }
        self.node.delivery.rooms.join(
            a.appid,
            room,
            self.conn,
            a.uid,
            a.device_id,
            self.outbox.clone(),
        );
        if let Some(c) = &self.node.delivery.cluster {
            c.room_join(a.appid, room);
        }
        self.room = Some(room);
        Control::Continue
    }

    pub(super) fn leave_room(&mut self, a: Authed, room: i64) -> Control {
        if self.room == Some(room) {
            self.leave_current_room(a.appid, room);
            self.room = None;
        }
        Control::Continue
    }

    /// Leaves locally and, in cluster mode, drops this connection's share of
    /// the node's room subscription.
    pub(super) fn leave_current_room(&self, appid: i64, room: i64) {
        self.node.delivery.rooms.leave(appid, room, self.conn);
        if let Some(c) = &self.node.delivery.cluster {
            c.room_leave(appid, room);
        }
    }

    /// Forwarded to the other members, then ACKed. A message for a room the
    /// connection is not in, or from a forbidden user, is refused with a
    /// status instead of being dropped silently.
    pub(super) async fn room_im(
        &mut self,
        a: Authed,
        seq: i32,
        mut m: Realtime,
        w: &mut Encoder,
    ) -> Control {
        if m.sender != a.uid {
            return self.ack(seq, STATUS_INVALID_SENDER, 0, w);
        }
        if self.room != Some(m.receiver) {
            return self.ack(seq, STATUS_NOT_IN_ROOM, 0, w);
        }
        if self
            .node
            .forbidden
            .is_forbidden(a.appid, a.uid, a.forbidden)
        {
            return self.ack(seq, STATUS_MUTED, 0, w);
        }
        if let Err(status) = self
            .before_send(Kind::RoomIm, a, m.receiver, None, &mut m.content)
            .await
        {
            return self.ack(seq, status, 0, w);
        }
        self.node
            .delivery
            .to_room(a.appid, m.receiver, m.encode(), Some((a.uid, a.device_id)));
        self.ack(seq, 0, 0, w)
    }
}
