//! RT (spec §3.9) and UNREAD_COUNT.

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use ferry_common::protocol::ack::STATUS_INVALID_SENDER;
use ferry_common::protocol::realtime::Realtime;

impl Session {
    /// Forwarded to the receiver's connections; not stored, not ACKed —
    /// except that a forged sender is refused like any other frame.
    pub(super) fn rt(&mut self, a: Authed, seq: i32, m: Realtime, w: &mut Encoder) -> Control {
        if m.sender != a.uid {
            return self.ack(seq, STATUS_INVALID_SENDER, 0, w);
        }
        self.node.delivery.rt(a.appid, m.receiver, m.encode());
        Control::Continue
    }

    /// Badge count for the push service; kept in Redis when tokens live there.
    pub(super) async fn unread(&mut self, a: Authed, count: i32) -> Control {
        if let Some(r) = self.node.auth.redis()
            && let Err(e) = r.set_unread(a.appid, a.uid, count).await
        {
            tracing::warn!(error = %e, "storing unread count failed");
        }
        Control::Continue
    }
}
