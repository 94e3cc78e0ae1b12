//! [`GroupStore`] on fjall: a small database of its own in `<dir>/fjall-groups`
//! (membership writes are rare and need no group commit, so they do not go
//! through the message writer thread). A process-wide mutex serialises the
//! read-modify-write operations; every change is one batch committed with
//! `PersistMode::SyncAll`.
//!
//! Keyspaces: `groups`: `appid BE | gid BE` → `super u8 | version i64 BE`; `members`:
//! `appid BE | gid BE | uid BE` → `joined i64 BE | mute u8`; `gmeta`:
//! `next_gid` → last allocated gid.

use crate::store::group::{
    Group, GroupStore, Member, NewGroup, Standing, Update, decode_member, encode_member,
    new_version,
};
use crate::store::{StoreError, StoreFuture};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

const DIR: &str = "fjall-groups";
const NEXT_GID: &[u8] = b"next_gid";

struct Inner {
    db: Database,
    groups: Keyspace,
    members: Keyspace,
    meta: Keyspace,
}

/// The embedded group store; see the module docs.
#[derive(Clone)]
pub struct FjallGroupStore {
    inner: Arc<Mutex<Inner>>,
}

fn backend(e: fjall::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn group_key(appid: i64, gid: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&appid.to_be_bytes());
    k[8..].copy_from_slice(&gid.to_be_bytes());
    k
}

fn member_key(appid: i64, gid: i64, uid: i64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&group_key(appid, gid));
    k[16..].copy_from_slice(&uid.to_be_bytes());
    k
}

fn be(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

impl FjallGroupStore {
    pub fn open(dir: &Path) -> Result<FjallGroupStore, StoreError> {
        let path = dir.join(DIR);
        let db = Database::builder(&path)
            .open()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let groups = db
            .keyspace("groups", KeyspaceCreateOptions::default)
            .map_err(backend)?;
        let members = db
            .keyspace("members", KeyspaceCreateOptions::default)
            .map_err(backend)?;
        let meta = db
            .keyspace("gmeta", KeyspaceCreateOptions::default)
            .map_err(backend)?;
        Ok(FjallGroupStore {
            inner: Arc::new(Mutex::new(Inner {
                db,
                groups,
                members,
                meta,
            })),
        })
    }

    /// Runs `f` on the blocking pool with the database locked.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let g = inner.lock().unwrap_or_else(PoisonError::into_inner);
                f(&g)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("group store task failed: {e}")))?
        })
    }
}

fn group_value(is_super: bool) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = is_super as u8;
    v[1..].copy_from_slice(&new_version().to_be_bytes());
    v
}

impl Inner {
    /// `(super, version)` of an existing group.
    fn head(&self, appid: i64, gid: i64) -> Result<Option<(bool, i64)>, StoreError> {
        Ok(self
            .groups
            .get(group_key(appid, gid))
            .map_err(backend)?
            .map(|v| (v.first() == Some(&1), v.get(1..).and_then(be).unwrap_or(0))))
    }

    fn is_super(&self, appid: i64, gid: i64) -> Result<Option<bool>, StoreError> {
        Ok(self.head(appid, gid)?.map(|h| h.0))
    }

    /// A batch that also gives the group a new version.
    fn change(&self, appid: i64, gid: i64, is_super: bool) -> fjall::OwnedWriteBatch {
        let mut b = self.db.batch();
        b.insert(&self.groups, group_key(appid, gid), group_value(is_super));
        b
    }

    fn member(&self, appid: i64, gid: i64, uid: i64) -> Result<Option<Member>, StoreError> {
        Ok(self
            .members
            .get(member_key(appid, gid, uid))
            .map_err(backend)?
            .and_then(|v| decode_member(uid, &v)))
    }

    fn commit(&self, b: fjall::OwnedWriteBatch) -> Result<(), StoreError> {
        b.durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(backend)
    }

    fn create(&self, g: NewGroup) -> Result<Option<i64>, StoreError> {
        let gid = match g.gid {
            Some(gid) => {
                if self.is_super(g.appid, gid)?.is_some() {
                    return Ok(None);
                }
                gid
            }
            None => {
                let mut next = match self.meta.get(NEXT_GID).map_err(backend)? {
                    Some(v) => be(&v).unwrap_or(0),
                    None => 0,
                } + 1;
                while self.is_super(g.appid, next)?.is_some() {
                    next += 1;
                }
                next
            }
        };
        let mut b = self.db.batch();
        if g.gid.is_none() {
            b.insert(&self.meta, NEXT_GID, gid.to_be_bytes());
        }
        b.insert(
            &self.groups,
            group_key(g.appid, gid),
            group_value(g.is_super),
        );
        for &uid in &g.members {
            b.insert(
                &self.members,
                member_key(g.appid, gid, uid),
                encode_member(g.joined, false),
            );
        }
        self.commit(b)?;
        Ok(Some(gid))
    }

    fn group(&self, appid: i64, gid: i64) -> Result<Option<Group>, StoreError> {
        let Some((is_super, version)) = self.head(appid, gid)? else {
            return Ok(None);
        };
        let mut members = Vec::new();
        for kv in self.members.prefix(group_key(appid, gid)) {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let uid = k.get(16..).and_then(be);
            if let Some(m) = uid.and_then(|uid| decode_member(uid, &v)) {
                members.push(m);
            }
        }
        // Keys are big-endian, so negative uids sort last: sort by value.
        members.sort_by_key(|m| m.uid);
        Ok(Some(Group {
            appid,
            gid,
            is_super,
            members,
            version,
        }))
    }

    fn delete(&self, appid: i64, gid: i64) -> Result<bool, StoreError> {
        if self.is_super(appid, gid)?.is_none() {
            return Ok(false);
        }
        let mut b = self.db.batch();
        b.remove(&self.groups, group_key(appid, gid));
        for kv in self.members.prefix(group_key(appid, gid)) {
            b.remove(&self.members, kv.key().map_err(backend)?);
        }
        self.commit(b)?;
        Ok(true)
    }
}

impl GroupStore for FjallGroupStore {
    fn create(&self, g: NewGroup) -> StoreFuture<'_, Option<i64>> {
        self.run(move |i| i.create(g))
    }

    fn group(&self, appid: i64, gid: i64) -> StoreFuture<'_, Option<Group>> {
        self.run(move |i| i.group(appid, gid))
    }

    fn standing(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Standing> {
        self.run(move |i| {
            Ok(match i.head(appid, gid)? {
                None => Standing::NoGroup,
                Some((is_super, version)) => match i.member(appid, gid, uid)? {
                    Some(member) => Standing::Member {
                        is_super,
                        member,
                        version,
                    },
                    None => Standing::NotMember { is_super, version },
                },
            })
        })
    }

    fn delete(&self, appid: i64, gid: i64) -> StoreFuture<'_, bool> {
        self.run(move |i| i.delete(appid, gid))
    }

    fn add_members(
        &self,
        appid: i64,
        gid: i64,
        uids: Vec<i64>,
        joined: i64,
    ) -> StoreFuture<'_, Update> {
        self.run(move |i| {
            let Some(is_super) = i.is_super(appid, gid)? else {
                return Ok(Update::NoGroup);
            };
            let mut b = i.change(appid, gid, is_super);
            for uid in uids {
                if i.member(appid, gid, uid)?.is_none() {
                    b.insert(
                        &i.members,
                        member_key(appid, gid, uid),
                        encode_member(joined, false),
                    );
                }
            }
            i.commit(b)?;
            Ok(Update::Done)
        })
    }

    fn remove_member(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Update> {
        self.run(move |i| {
            let Some(is_super) = i.is_super(appid, gid)? else {
                return Ok(Update::NoGroup);
            };
            let mut b = i.change(appid, gid, is_super);
            b.remove(&i.members, member_key(appid, gid, uid));
            i.commit(b)?;
            Ok(Update::Done)
        })
    }

    fn set_mute(&self, appid: i64, gid: i64, uid: i64, mute: bool) -> StoreFuture<'_, Update> {
        self.run(move |i| {
            let Some(is_super) = i.is_super(appid, gid)? else {
                return Ok(Update::NoGroup);
            };
            let Some(m) = i.member(appid, gid, uid)? else {
                return Ok(Update::NoMember);
            };
            let mut b = i.change(appid, gid, is_super);
            b.insert(
                &i.members,
                member_key(appid, gid, uid),
                encode_member(m.joined, mute),
            );
            i.commit(b)?;
            Ok(Update::Done)
        })
    }

    fn upgrade(&self, appid: i64, gid: i64) -> StoreFuture<'_, Update> {
        self.run(move |i| {
            if i.is_super(appid, gid)?.is_none() {
                return Ok(Update::NoGroup);
            }
            let b = i.change(appid, gid, true);
            i.commit(b)?;
            Ok(Update::Done)
        })
    }
}
