//! GROUP_IM (spec §3.7) and super-group sync (SYNC_GROUP, §3.7 and §10.10).

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::delivery::group::group_notify_body;
use crate::groups::send::{GroupSend, GroupSendError};
use crate::hooks::Kind;
use crate::node::now_secs;
use crate::outbox::OutFrame;
use crate::store::group::{Standing, group_dedup_receiver, group_queue};
use crate::store::{DedupKey, StoreError, StoredMessage};
use ferry_common::protocol::ack::{
    Ack, STATUS_GROUP_NOT_EXIST, STATUS_INVALID_SENDER, STATUS_MUTED, STATUS_NOT_GROUP_MEMBER,
};
use ferry_common::protocol::command::{
    ACK, GROUP_IM, SYNC_GROUP_BEGIN, SYNC_GROUP_END, SYNC_GROUP_NOTIFY,
};
use ferry_common::protocol::flag::SUPER_GROUP;
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::metadata::Metadata;

impl Session {
    /// Refusals: not a member → ACK 64, unknown group → 65, muted → 67 (v2;
    /// a v1 client cannot see a status and has its connection closed, see
    /// [`Session::ack`]). On a store error nothing is ACKed: the client
    /// resends and the fan-out record makes the resend complete, not repeat.
    pub(super) async fn group_im(
        &mut self,
        a: Authed,
        seq: i32,
        flag: u8,
        mut m: Im,
        w: &mut Encoder,
    ) -> Control {
        if m.sender != a.uid {
            return self.ack(seq, STATUS_INVALID_SENDER, 0, w);
        }
        if let Err(status) = self
            .before_send(Kind::GroupIm, a, m.receiver, None, &mut m.content)
            .await
        {
            return self.ack(seq, status, 0, w);
        }
        m.timestamp = now_secs();
        let gid = m.receiver;
        let key = DedupKey {
            appid: a.appid,
            sender: a.uid,
            device_id: a.device_id,
            client_msgid: m.msgid as i64,
            receiver: group_dedup_receiver(m.receiver),
        };
        // The first queue is the group's (super) or a member's (normal):
        // corrected from the outcome once known.
        let (dedup, ticket) = self
            .dedup(key, &m.content, group_queue(a.appid, m.receiver))
            .unzip();
        let s = GroupSend {
            appid: a.appid,
            sender: a.uid,
            gid: m.receiver,
            device_id: a.device_id,
            flag,
            body: m.encode(2),
            dedup,
            ticket,
            check_sender: true,
        };
        match self.node.send_group(s).await {
            Ok(sent) => {
                if !sent.duplicate {
                    let queue = if sent.is_super {
                        group_queue(a.appid, gid)
                    } else {
                        a.queue()
                    };
                    let placed = sent.placed.map(|p| p.msgid);
                    self.after_send(
                        Kind::GroupIm,
                        a.appid,
                        gid,
                        placed.map(|_| queue.into()),
                        placed,
                    );
                }
                let ack_flag = if sent.is_super { SUPER_GROUP } else { 0 };
                let ack = Ack { seq, status: 0 }.encode(2);
                match sent.placed {
                    Some(p) => w.push(&OutFrame::with_meta(
                        ACK,
                        ack_flag,
                        ack,
                        Metadata {
                            sync_key: p.msgid,
                            prev_sync_key: p.prev,
                        },
                    )),
                    None => w.push(&OutFrame::new(ACK, ack_flag, ack)),
                }
                self.acked(ticket, sent.first_queue, w);
                Control::Continue
            }
            Err(GroupSendError::NoGroup) => {
                self.refused(ticket);
                self.ack(seq, STATUS_GROUP_NOT_EXIST, 0, w)
            }
            Err(GroupSendError::NotMember) => {
                self.refused(ticket);
                self.ack(seq, STATUS_NOT_GROUP_MEMBER, 0, w)
            }
            Err(GroupSendError::Muted) => {
                self.refused(ticket);
                self.ack(seq, STATUS_MUTED, 0, w)
            }
            Err(GroupSendError::Store(e)) => {
                tracing::warn!(peer = %self.peer, error = %e, "group store failed; message not acknowledged");
                Control::Continue
            }
        }
    }

    /// SYNC_GROUP(gid, key): one window of the group queue between
    /// SYNC_GROUP_BEGIN and SYNC_GROUP_END, with the personal-sync window and
    /// has-more rules (SYNC_GROUP_NOTIFY when more remain; no 100-message
    /// cap). Every request is answered: a non-member, an unknown or normal
    /// group, or a store error gets an empty BEGIN/END with its own key.
    pub(super) async fn sync_group(
        &mut self,
        a: Authed,
        g: GroupSyncKey,
        w: &mut Encoder,
    ) -> Control {
        match self.group_window(a, g).await {
            Ok(Some((messages, new_key, more))) => {
                w.frame(SYNC_GROUP_BEGIN, 0, &g.encode());
                for m in &messages {
                    w.frame(m.cmd, self.sync_flag(a, m), &m.body);
                }
                let end = GroupSyncKey {
                    group_id: g.group_id,
                    sync_key: new_key,
                };
                w.frame(SYNC_GROUP_END, 0, &end.encode());
                if let Some(head) = more {
                    w.frame(SYNC_GROUP_NOTIFY, 0, &group_notify_body(g.group_id, head));
                }
            }
            Ok(None) => {
                w.frame(SYNC_GROUP_BEGIN, 0, &g.encode());
                w.frame(SYNC_GROUP_END, 0, &g.encode());
            }
            Err(e) => {
                tracing::warn!(error = %e, "group sync failed; answering with an empty window");
                w.frame(SYNC_GROUP_BEGIN, 0, &g.encode());
                w.frame(SYNC_GROUP_END, 0, &g.encode());
            }
        }
        Control::Continue
    }

    /// `(messages, new key, Some(head) when more remain)`, or None when the
    /// user may not sync this group.
    async fn group_window(
        &self,
        a: Authed,
        g: GroupSyncKey,
    ) -> Result<Option<(Vec<StoredMessage>, i64, Option<i64>)>, StoreError> {
        let node = &self.node;
        let gid = g.group_id;
        let member = match node.groups.store.standing(a.appid, gid, a.uid).await? {
            Standing::Member {
                is_super: true,
                member,
                ..
            } => member,
            _ => return Ok(None),
        };
        let q = group_queue(a.appid, gid);
        let limit = node.cfg.sync_limit;
        let mut key = g.sync_key;
        if key == 0 {
            key = node.store.group_sync_key(a.queue(), gid).await?;
        }
        if key > 0 {
            let win = node.store.window(q, key, limit).await?;
            let new_key = match win.messages.last() {
                Some(m) => m.msgid,
                // Client ahead of the server: rewind.
                None if win.head > 0 && win.head < key => win.head,
                None => key,
            };
            return Ok(Some((
                win.messages,
                new_key,
                win.has_more.then_some(win.head),
            )));
        }
        // Key 0 and nothing stored: the member starts at its join time.
        // Skip every message up to the last GROUP_IM sent before joining.
        let mut after = 0;
        loop {
            let win = node.store.window(q, after, limit).await?;
            let Some(cut) = join_cut(&win.messages, member.joined) else {
                let new_key = win.messages.last().map_or(after, |m| m.msgid);
                return Ok(Some((
                    win.messages,
                    new_key,
                    win.has_more.then_some(win.head),
                )));
            };
            after = win.messages[cut].msgid;
            if cut + 1 < win.messages.len() || !win.has_more {
                let rest = win.messages[cut + 1..].to_vec();
                let new_key = rest.last().map_or(after, |m| m.msgid);
                return Ok(Some((rest, new_key, win.has_more.then_some(win.head))));
            }
        }
    }
}

/// Index of the last GROUP_IM sent before `joined` (Unix seconds): it and
/// everything older is history from before the member joined.
fn join_cut(messages: &[StoredMessage], joined: i64) -> Option<usize> {
    messages
        .iter()
        .rposition(|m| m.cmd == GROUP_IM && sent_at(m).is_some_and(|t| t < joined))
}

/// Timestamp (Unix seconds) of a stored GROUP_IM body (version 2 layout).
fn sent_at(m: &StoredMessage) -> Option<i64> {
    let b = m.body.get(16..20)?;
    Some(i32::from_be_bytes(b.try_into().ok()?) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::protocol::command::GROUP_NOTIFICATION;

    fn msg(msgid: i64, cmd: u8, ts: i32) -> StoredMessage {
        let body = if cmd == GROUP_IM {
            Im {
                sender: 1,
                receiver: 9,
                timestamp: ts,
                msgid: 0,
                content: bytes::Bytes::from_static(b"x"),
            }
            .encode(2)
        } else {
            bytes::Bytes::from_static(b"notification")
        };
        StoredMessage {
            msgid,
            cmd,
            flag: 0,
            device_id: 0,
            body,
        }
    }

    #[test]
    fn key_zero_starts_after_the_last_message_before_joining() {
        let joined = 1000;
        let ms = vec![
            msg(1, GROUP_IM, 990),
            msg(2, GROUP_NOTIFICATION, 0),
            msg(3, GROUP_IM, 999),
            msg(4, GROUP_NOTIFICATION, 0),
            msg(5, GROUP_IM, 1000),
            msg(6, GROUP_IM, 1001),
        ];
        assert_eq!(join_cut(&ms, joined), Some(2));
        // Sent in the joining second: kept.
        assert_eq!(join_cut(&ms[4..], joined), None);
        // Only notifications: nothing to cut by.
        assert_eq!(join_cut(&[msg(1, GROUP_NOTIFICATION, 0)], joined), None);
        // A truncated body is never mistaken for an old message.
        let mut short = msg(1, GROUP_IM, 5);
        short.body = short.body.slice(..10);
        assert_eq!(join_cut(&[short], joined), None);
    }
}
