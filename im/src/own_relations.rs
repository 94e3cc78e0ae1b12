//! Friendship and blacklist without MySQL: Ferry keeps the lists itself,
//! managed over the HTTP API (`PUT/DELETE /users/{uid}/friends/{fid}`,
//! `PUT/DELETE /users/{uid}/blacklist/{bid}`, `GET` of each list).
//!
//! A user's list is stored as a member list in the group store, under a
//! namespace no app's groups can use (appids are positive; the friend list
//! of (appid, uid) is "group" uid of app `-2·appid`, the blacklist of
//! `-2·appid - 1`). So every backend (fjall, SQLite, Redis) keeps the lists
//! durably with no new storage code, and the check on each peer message is
//! one point read ([`GroupStore::standing`]) with no cache: a change made
//! through any node applies to the next message on every node sharing the
//! store.

use crate::node::now_secs;
use crate::store::StoreError;
use crate::store::group::{GroupStore, NewGroup, Standing, Update};
use ferry_common::protocol::ack::{
    STATUS_IN_BLACKLIST, STATUS_NOT_MY_FRIEND, STATUS_NOT_YOUR_FRIEND,
};
use std::sync::Arc;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Friends,
    Blacklist,
}

/// The group-store appid holding `list` of `appid` (`None` for appids that
/// cannot be mapped: not positive, or too large).
pub fn namespace(appid: i64, list: List) -> Option<i64> {
    if appid <= 0 {
        return None;
    }
    let base = appid.checked_mul(2)?.checked_neg()?;
    match list {
        List::Friends => Some(base),
        List::Blacklist => base.checked_sub(1),
    }
}

pub struct OwnRelations {
    pub store: Arc<dyn GroupStore>,
}

fn bad_appid() -> StoreError {
    StoreError::Invalid("appid must be positive and below 2^62".into())
}

impl OwnRelations {
    async fn has(&self, appid: i64, list: List, uid: i64, other: i64) -> Result<bool, StoreError> {
        let ns = namespace(appid, list).ok_or_else(bad_appid)?;
        Ok(matches!(
            self.store.standing(ns, uid, other).await?,
            Standing::Member { .. }
        ))
    }

    /// ACK status of `sender → receiver` (0 = allowed), as in
    /// [`crate::relations`].
    pub async fn status(
        &self,
        appid: i64,
        sender: i64,
        receiver: i64,
        friendship: bool,
        blacklist: bool,
    ) -> Result<u8, StoreError> {
        if sender == receiver {
            return Ok(0);
        }
        if friendship {
            if !self.has(appid, List::Friends, sender, receiver).await? {
                return Ok(STATUS_NOT_MY_FRIEND);
            }
            if !self.has(appid, List::Friends, receiver, sender).await? {
                return Ok(STATUS_NOT_YOUR_FRIEND);
            }
        }
        if blacklist && self.has(appid, List::Blacklist, receiver, sender).await? {
            return Ok(STATUS_IN_BLACKLIST);
        }
        Ok(0)
    }

    /// Adds `other` to `uid`'s list (idempotent).
    pub async fn add(
        &self,
        appid: i64,
        list: List,
        uid: i64,
        other: i64,
    ) -> Result<(), StoreError> {
        let ns = namespace(appid, list).ok_or_else(bad_appid)?;
        let joined = now_secs() as i64;
        let list_of_one = || NewGroup {
            appid: ns,
            gid: Some(uid),
            is_super: false,
            members: vec![other],
            joined,
        };
        if self.store.create(list_of_one()).await?.is_none() {
            // The list exists (or was created meanwhile): add to it; a list
            // deleted in between is created again.
            if self.store.add_members(ns, uid, vec![other], joined).await? == Update::NoGroup {
                self.store.create(list_of_one()).await?;
            }
        }
        Ok(())
    }

    /// Removes `other` from `uid`'s list (idempotent).
    pub async fn remove(
        &self,
        appid: i64,
        list: List,
        uid: i64,
        other: i64,
    ) -> Result<(), StoreError> {
        let ns = namespace(appid, list).ok_or_else(bad_appid)?;
        self.store.remove_member(ns, uid, other).await?;
        Ok(())
    }

    /// `uid`'s list, sorted.
    pub async fn list(&self, appid: i64, list: List, uid: i64) -> Result<Vec<i64>, StoreError> {
        let ns = namespace(appid, list).ok_or_else(bad_appid)?;
        Ok(self
            .store
            .group(ns, uid)
            .await?
            .map(|g| g.members.iter().map(|m| m.uid).collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_disjoint_and_negative() {
        assert_eq!(namespace(1, List::Friends), Some(-2));
        assert_eq!(namespace(1, List::Blacklist), Some(-3));
        assert_eq!(namespace(2, List::Friends), Some(-4));
        assert_eq!(namespace(0, List::Friends), None);
        assert_eq!(namespace(-1, List::Friends), None);
        assert_eq!(namespace(i64::MAX, List::Friends), None);
    }
}
