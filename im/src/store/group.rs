//! Group membership storage: groups `(appid, gid, super)` and their members
//! (join time, mute), plus group id allocation. Every backend of [`Store`]
//! has a matching [`GroupStore`] (the embedded store keeps groups in its own
//! small database next to the message store; Redis keeps them beside the
//! queues), and the conformance suite runs on all of them.
//!
//! Membership changes are rare and small, so every change is one atomic,
//! durable write; reads are cached per im node (see `crate::groups`) and
//! invalidated through the imrs when any node changes a group.
//!
//! [`Store`]: super::Store

use super::{QueueId, StoreFuture};

/// One member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub uid: i64,
    /// Join time in Unix seconds (the super-group key-0 sync rule uses it).
    pub joined: i64,
    pub mute: bool,
}

/// A group with its members, sorted by uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub appid: i64,
    pub gid: i64,
    pub is_super: bool,
    pub members: Vec<Member>,
    /// Changes with every write to the group (random, never reused in
    /// practice): a cached copy whose version matches a fresh
    /// [`GroupStore::standing`] read is exact.
    pub version: i64,
}

impl Group {
    pub fn member(&self, uid: i64) -> Option<&Member> {
        self.members
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.members[i])
    }
}

/// A group to create.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub appid: i64,
    /// `None`: the store allocates an unused id.
    pub gid: Option<i64>,
    pub is_super: bool,
    pub members: Vec<i64>,
    /// Join time given to the initial members (Unix seconds).
    pub joined: i64,
}

/// What a membership change found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Done,
    NoGroup,
    /// The uid is not a member (mute only; removing a non-member is `Done`).
    NoMember,
}

/// A fresh read of one user's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    NoGroup,
    NotMember {
        is_super: bool,
        version: i64,
    },
    Member {
        is_super: bool,
        member: Member,
        version: i64,
    },
}

impl Standing {
    /// The group's version, if it exists.
    pub fn version(&self) -> Option<i64> {
        match *self {
            Standing::NoGroup => None,
            Standing::NotMember { version, .. } | Standing::Member { version, .. } => Some(version),
        }
    }
}

/// A fresh group version: 63 random bits (a collision between two writes of
/// one group is as likely as guessing a 63-bit key).
pub(crate) fn new_version() -> i64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back to the clock, still unique per write.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as i64 & i64::MAX);
    }
    i64::from_le_bytes(b) & i64::MAX
}

/// Storage of groups; see the module docs.
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group; `Ok(None)` when the given gid is already taken.
    /// Returns the group id (allocated when `gid` is `None`).
    fn create(&self, g: NewGroup) -> StoreFuture<'_, Option<i64>>;
    /// The group with all members, `None` if it does not exist.
    fn group(&self, appid: i64, gid: i64) -> StoreFuture<'_, Option<Group>>;
    /// One point read: does the group exist, is `uid` a member, and the
    /// group's current version.
    fn standing(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Standing>;
    /// Deletes the group and its members; false if it did not exist.
    fn delete(&self, appid: i64, gid: i64) -> StoreFuture<'_, bool>;
    /// Adds members (existing members keep their join time and mute).
    fn add_members(
        &self,
        appid: i64,
        gid: i64,
        uids: Vec<i64>,
        joined: i64,
    ) -> StoreFuture<'_, Update>;
    /// Removes one member (a no-op `Done` when not a member).
    fn remove_member(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Update>;
    fn set_mute(&self, appid: i64, gid: i64, uid: i64, mute: bool) -> StoreFuture<'_, Update>;
    /// Normal → super (idempotent).
    fn upgrade(&self, appid: i64, gid: i64) -> StoreFuture<'_, Update>;
}

/// The message queue of a super group. Group queues live in the negative
/// appid namespace (`!appid`), which no user queue uses (appids are
/// positive), so they share the message store's machinery — contiguous ids,
/// windows, retention — without colliding with personal queues.
pub fn group_queue(appid: i64, gid: i64) -> QueueId {
    QueueId {
        appid: !appid,
        uid: gid,
    }
}

/// `receiver` of the dedup key of a group send: `!gid`, so a group message
/// and a peer message with the same client msgid never share a record.
pub fn group_dedup_receiver(gid: i64) -> i64 {
    !gid
}

/// Encoding of a member record shared by the embedded backends:
/// joined i64 BE, mute u8.
pub(crate) fn encode_member(joined: i64, mute: bool) -> [u8; 9] {
    let mut b = [0u8; 9];
    b[..8].copy_from_slice(&joined.to_be_bytes());
    b[8] = mute as u8;
    b
}

pub(crate) fn decode_member(uid: i64, v: &[u8]) -> Option<Member> {
    let joined = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    Some(Member {
        uid,
        joined,
        mute: *v.get(8)? != 0,
    })
}
