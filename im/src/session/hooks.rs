//! The session's side of the hooks: the before-send question (a separate
//! step before each store call) and the after-send event.

use super::{Authed, Session};
use crate::hooks::before::Outgoing;
use crate::hooks::events::QueueRef;
use crate::hooks::{Event, EventKind, Kind, Verdict};
use bytes::Bytes;

impl Session {
    /// Asks the before-send hook about a message with `content` (when the
    /// kind is opted in). `Err(status)`: refuse with that ACK status;
    /// otherwise `content` may have been replaced. Only this connection
    /// waits for the answer.
    pub(super) async fn before_send(
        &self,
        kind: Kind,
        a: Authed,
        receiver: i64,
        receiver_appid: Option<i64>,
        content: &mut Bytes,
    ) -> Result<(), u8> {
        let Some(hooks) = self.node.hooks.as_ref().filter(|h| h.wants_before(kind)) else {
            return Ok(());
        };
        let verdict = hooks
            .before_send(Outgoing {
                ty: "before_send",
                kind,
                appid: a.appid,
                sender: a.uid,
                receiver,
                receiver_appid,
                device_id: a.device_id,
                content: String::from_utf8_lossy(content),
                node: hooks.node(),
            })
            .await;
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Reject(status) => Err(status),
            Verdict::Replace(c) => {
                *content = c;
                Ok(())
            }
        }
    }

    /// The after-send event of a stored message (when enabled).
    pub(super) fn after_send(
        &self,
        kind: Kind,
        appid: i64,
        receiver: i64,
        queue: Option<QueueRef>,
        msgid: Option<i64>,
    ) {
        if let Some(h) = self
            .node
            .hooks
            .as_ref()
            .filter(|h| h.wants(EventKind::AfterSend))
            && let Some(a) = self.authed
        {
            h.emit(Event::AfterSend {
                kind,
                appid,
                sender: a.uid,
                receiver,
                queue,
                msgid,
            });
        }
    }
}
