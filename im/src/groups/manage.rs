//! Management operations (used by the HTTP API): every change is written to
//! the group store first, then this node's cached copy is dropped and a
//! GROUP_CHANGED goes to every imr, which relays it to every other im node.

use crate::node::{Node, now_secs};
use crate::store::StoreError;
use crate::store::group::{Group, NewGroup, Update};
use std::sync::Arc;

impl Node {
    /// Drops the cached group here and on every other node.
    pub fn group_changed(&self, appid: i64, gid: i64) {
        self.groups.invalidate(appid, gid);
        if let Some(c) = &self.delivery.cluster {
            c.group_changed(appid, gid);
        }
    }

    /// A "group" hook event (when enabled), for a change that was stored.
    fn group_event(
        &self,
        action: &'static str,
        appid: i64,
        gid: i64,
        members: impl FnOnce() -> Vec<i64>,
    ) {
        if let Some(h) = self
            .hooks
            .as_ref()
            .filter(|h| h.wants(crate::hooks::EventKind::Group))
        {
            h.emit(crate::hooks::Event::Group {
                action,
                appid,
                group_id: gid,
                members: members(),
            });
        }
    }

    /// Creates a group; `Ok(None)` when the gid is taken.
    pub async fn create_group(
        &self,
        appid: i64,
        gid: Option<i64>,
        is_super: bool,
        members: Vec<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let event_members = self.hooks.is_some().then(|| members.clone());
        let gid = self
            .groups
            .store
            .create(NewGroup {
                appid,
                gid,
                is_super,
                members,
                joined: now_secs() as i64,
            })
            .await?;
        if let Some(gid) = gid {
            self.group_changed(appid, gid);
            self.group_event("created", appid, gid, || event_members.unwrap_or_default());
        }
        Ok(gid)
    }

    /// Fresh from the store (the API shows what is stored, not a cache).
    pub async fn load_group(&self, appid: i64, gid: i64) -> Result<Option<Group>, StoreError> {
        self.groups.store.group(appid, gid).await
    }

    /// The cached or loaded group (the send paths).
    pub async fn group(&self, appid: i64, gid: i64) -> Result<Option<Arc<Group>>, StoreError> {
        self.groups.get(appid, gid).await
    }

    pub async fn delete_group(&self, appid: i64, gid: i64) -> Result<bool, StoreError> {
        let found = self.groups.store.delete(appid, gid).await?;
        self.group_changed(appid, gid);
        if found {
            self.group_event("deleted", appid, gid, Vec::new);
        }
        Ok(found)
    }

    pub async fn add_group_members(
        &self,
        appid: i64,
        gid: i64,
        uids: Vec<i64>,
    ) -> Result<Update, StoreError> {
        let event_members = self.hooks.is_some().then(|| uids.clone());
        let u = self
            .groups
            .store
            .add_members(appid, gid, uids, now_secs() as i64)
            .await?;
        self.group_changed(appid, gid);
        if u == Update::Done {
            self.group_event("members_added", appid, gid, || {
                event_members.unwrap_or_default()
            });
        }
        Ok(u)
    }

    pub async fn remove_group_member(
        &self,
        appid: i64,
        gid: i64,
        uid: i64,
    ) -> Result<Update, StoreError> {
        let u = self.groups.store.remove_member(appid, gid, uid).await?;
        self.group_changed(appid, gid);
        if u == Update::Done {
            self.group_event("member_removed", appid, gid, || vec![uid]);
        }
        Ok(u)
    }

    pub async fn mute_group_member(
        &self,
        appid: i64,
        gid: i64,
        uid: i64,
        mute: bool,
    ) -> Result<Update, StoreError> {
        let u = self.groups.store.set_mute(appid, gid, uid, mute).await?;
        self.group_changed(appid, gid);
        if u == Update::Done {
            let action = if mute {
                "member_muted"
            } else {
                "member_unmuted"
            };
            self.group_event(action, appid, gid, || vec![uid]);
        }
        Ok(u)
    }

    pub async fn upgrade_group(&self, appid: i64, gid: i64) -> Result<Update, StoreError> {
        let u = self.groups.store.upgrade(appid, gid).await?;
        self.group_changed(appid, gid);
        if u == Update::Done {
            self.group_event("upgraded", appid, gid, Vec::new);
        }
        Ok(u)
    }
}
