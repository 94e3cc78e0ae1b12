//! Personal sync (spec §3.6) and sync keys.

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::store::StoredMessage;
use ferry_common::protocol::command::{CUSTOMER_V2, SYNC_BEGIN, SYNC_END, SYNC_NOTIFY};
use ferry_common::protocol::flag::{SELF, TEXT};
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::scalar::encode_i64;

impl Session {
    /// SYNC(key): one window of the oldest unsynced messages between
    /// SYNC_BEGIN(key) and SYNC_END(new key); SYNC_NOTIFY when more remain.
    /// On a store error nothing is sent and the client retries on its next
    /// notify (as SDKs do).
    pub(super) async fn sync(&mut self, a: Authed, key: i64, w: &mut Encoder) -> Control {
        let store = self.node.store.clone();
        let q = a.queue();
        let key = if key == 0 {
            match store.sync_key(q).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, "reading stored sync key failed");
                    return Control::Continue;
                }
            }
        } else {
            key
        };
        let window = match store.window(q, key.max(0), self.node.cfg.sync_limit).await {
            Ok(win) => win,
            Err(e) => {
                tracing::warn!(error = %e, "sync read failed");
                return Control::Continue;
            }
        };
        w.frame(SYNC_BEGIN, 0, &encode_i64(key));
        let mut last = None;
        for m in &window.messages {
            w.frame(m.cmd, self.sync_flag(a, m), &m.body);
            last = Some(m.msgid);
        }
        let new_key = match last {
            Some(id) => id,
            // Client ahead of the server (e.g. data restored from backup): rewind.
            None if window.head > 0 && window.head < key => window.head,
            None => key,
        };
        w.frame(SYNC_END, 0, &encode_i64(new_key));
        if window.has_more {
            w.frame(SYNC_NOTIFY, 0, &encode_i64(window.head));
        }
        Control::Continue
    }

    /// SELF when this device sent it; TEXT is kept (stored, unlike gobelieve).
    pub(super) fn sync_flag(&self, a: Authed, m: &StoredMessage) -> u8 {
        let mut flag = m.flag & TEXT;
        let sender = m
            .body
            .get(..8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
        let mine = if m.cmd == CUSTOMER_V2 {
            let sender_appid = sender;
            let sender = m
                .body
                .get(8..16)
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
            sender_appid == Some(a.appid) && sender == Some(a.uid)
        } else {
            sender == Some(a.uid)
        };
        if mine && m.device_id == a.device_id {
            flag |= SELF;
        }
        flag
    }

    pub(super) async fn sync_key(&mut self, a: Authed, key: i64) -> Control {
        if key > 0
            && let Err(e) = self.node.store.set_sync_key(a.queue(), key).await
        {
            tracing::warn!(error = %e, "storing sync key failed");
        }
        Control::Continue
    }

    pub(super) async fn group_sync_key(&mut self, a: Authed, g: GroupSyncKey) -> Control {
        if g.sync_key > 0
            && let Err(e) = self
                .node
                .store
                .set_group_sync_key(a.queue(), g.group_id, g.sync_key)
                .await
        {
            tracing::warn!(error = %e, "storing group sync key failed");
        }
        Control::Continue
    }
}
