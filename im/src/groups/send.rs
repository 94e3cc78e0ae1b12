//! Group sends (spec §3.7): GROUP_IM from clients and the HTTP API, and group
//! notifications.
//!
//! # Normal groups: exactly-once fan-out
//!
//! A message is written into every member's personal queue by ONE
//! [`AppendRequest`] (one entry per member, batched by the backend) whose
//! dedup key is `(appid, sender, device, client msgid, !gid)` — the per-group
//! fan-out record (client sends with a msgid only; whether a matching
//! record makes a send a resend is decided as for peer messages, see
//! [`crate::resend`]). The embedded store applies a request atomically (all queues or
//! none, one fsync). Redis writes each queue with a script that first checks
//! the record *in that queue*, so a fan-out interrupted by a crash of this
//! node or of Redis is completed by the client's resend (it gets no ACK and
//! resends the same msgid): queues already written return their original ids,
//! the missing ones are written, nobody gets a second copy. The ACK is sent
//! only after the store confirmed every queue. One order per group: the
//! embedded stores apply requests one at a time ([`Store::orders_appends`])
//! and pushes follow that order ([`super::turns`]); on Redis, fan-outs of
//! one group are serialised per node (striped lock).
//!
//! [`Store::orders_appends`]: crate::store::Store::orders_appends
//!
//! # Membership
//!
//! A client send first reads the sender's standing and the group's version
//! from the store (one point read); the cached member list is used only if
//! its version matches, else the group is reloaded. A change made on any
//! node therefore applies to the very next client send on every node. HTTP
//! sends use the cache, kept current by GROUP_CHANGED through the imrs.
//!
//! # Super groups
//!
//! One queue per group ([`group_queue`]), one entry per message; members
//! learn about it by METADATA + GROUP_IM + SYNC_GROUP_NOTIFY and sync the
//! group queue.

use crate::delivery::UserFrame;
use crate::delivery::group::group_notify_body;
use crate::node::Node;
use crate::store::group::{Standing, group_queue};
use crate::store::{AppendRequest, Dedup, NewEntry, Placed, QueueId, StoreError};
use bytes::Bytes;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::{GROUP_IM, GROUP_NOTIFICATION, SYNC_GROUP_NOTIFY};
use ferry_common::protocol::flag::{PUSH, SUPER_GROUP, TEXT};

/// One GROUP_IM to send.
#[derive(Debug, Clone)]
pub struct GroupSend {
    pub appid: i64,
    pub sender: i64,
    pub gid: i64,
    /// Sending device (0 for HTTP); its connections get no push copy.
    pub device_id: i64,
    /// Client flags (only TEXT is kept).
    pub flag: u8,
    /// GROUP_IM body at version 2, timestamp set by the server.
    pub body: Bytes,
    /// Client sends with a msgid (None for HTTP and msgid 0): the dedup
    /// record of the fan-out, receiver `!gid`
    /// ([`crate::store::group::group_dedup_receiver`]).
    pub dedup: Option<Dedup>,
    /// The session's ledger number for this send (see
    /// [`crate::messaging::PeerSend::ticket`]).
    pub ticket: Option<u64>,
    /// Client sends must come from an unmuted member; HTTP sends are not
    /// checked (as gobelieve).
    pub check_sender: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupSendError {
    #[error("group does not exist")]
    NoGroup,
    #[error("sender is not a member")]
    NotMember,
    #[error("sender is muted")]
    Muted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful send produced.
#[derive(Debug, Clone, Copy)]
pub struct GroupSent {
    pub is_super: bool,
    /// The sender's copy (normal group, sender a member) or the group
    /// queue entry (super group).
    pub placed: Option<Placed>,
    /// Queue of the request's first entry (for
    /// [`crate::store::Unconfirmed::queue`]).
    pub first_queue: Option<QueueId>,
    pub duplicate: bool,
}

impl Node {
    pub async fn send_group(&self, s: GroupSend) -> Result<GroupSent, GroupSendError> {
        let mut version = None;
        if s.check_sender {
            // Fresh read: a mute or removal is effective the moment it is
            // stored, and its version tells whether the cached member list
            // is current (every node, without waiting for GROUP_CHANGED).
            let standing = self.groups.store.standing(s.appid, s.gid, s.sender).await?;
            match standing {
                Standing::NoGroup => return Err(GroupSendError::NoGroup),
                Standing::NotMember { .. } => return Err(GroupSendError::NotMember),
                Standing::Member { member, .. } if member.mute => {
                    return Err(GroupSendError::Muted);
                }
                Standing::Member { .. } => {}
            }
            version = standing.version();
        }
        let Some(group) = self.groups.get_version(s.appid, s.gid, version).await? else {
            return Err(GroupSendError::NoGroup);
        };
        let members: Vec<i64> = group.members.iter().map(|m| m.uid).collect();
        if group.is_super {
            self.send_super(&s, &members).await
        } else {
            self.send_normal(&s, &members).await
        }
    }

    async fn send_normal(
        &self,
        s: &GroupSend,
        members: &[i64],
    ) -> Result<GroupSent, GroupSendError> {
        let (appid, gid) = (s.appid, s.gid);
        if members.is_empty() {
            return Ok(GroupSent {
                is_super: false,
                placed: None,
                first_queue: None,
                duplicate: false,
            });
        }
        let entries = || {
            NewEntry::fan_out(
                appid,
                members,
                GROUP_IM,
                s.flag & TEXT,
                s.device_id,
                &s.body,
            )
        };
        // Held until every member was handed its copy: one order per group
        // (not needed when the store itself applies requests in order).
        let _order = self.group_order(appid, gid).await;
        let (mut out, mut position) = self
            .store
            .append_ordered(
                AppendRequest {
                    entries: entries(),
                    dedup: s.dedup,
                },
                (appid, gid),
            )
            .await?;
        if let (Some(d), Some(e)) = (s.dedup, out.earlier)
            && !self.is_resend(&d.key, e, s.ticket).await
        {
            // A new message after all: give up this turn (nothing to
            // deliver) and take the next one with the real write.
            if let Some(p) = position {
                drop(self.groups.turns.wait((appid, gid), p).await);
            }
            (out, position) = self
                .store
                .append_ordered(
                    AppendRequest {
                        entries: entries(),
                        dedup: Some(Dedup { replace: true, ..d }),
                    },
                    (appid, gid),
                )
                .await?;
        }
        // Pushed in storage order (see `turns`), so members' METADATA chain
        // and they need not sync.
        let _turn = match position {
            Some(p) => Some(self.groups.turns.wait((appid, gid), p).await),
            None => None,
        };
        let mut sender_placed = None;
        for (&uid, p) in members.iter().zip(&out.placed) {
            let queue = QueueId { appid, uid };
            if uid == s.sender {
                sender_placed = Some(*p);
            }
            if out.duplicate {
                self.delivery.notify_sync(queue, p.msgid);
                continue;
            }
            self.delivery.to_user(UserFrame {
                queue,
                cmd: GROUP_IM,
                flag: s.flag | PUSH,
                body: &s.body,
                placed: Some(*p),
                skip_device: if uid == s.sender { s.device_id } else { 0 },
            });
        }
        if !out.duplicate {
            let offline: Vec<i64> = members.iter().copied().filter(|&u| u != s.sender).collect();
            self.delivery
                .offline_push(appid, &offline, GROUP_IM, s.flag, &s.body);
        }
        Ok(GroupSent {
            is_super: false,
            placed: sender_placed,
            first_queue: members.first().map(|&uid| QueueId { appid, uid }),
            duplicate: out.duplicate,
        })
    }

    async fn send_super(
        &self,
        s: &GroupSend,
        members: &[i64],
    ) -> Result<GroupSent, GroupSendError> {
        let (appid, gid) = (s.appid, s.gid);
        let entries = || {
            vec![NewEntry {
                queue: group_queue(appid, gid),
                cmd: GROUP_IM,
                flag: s.flag & TEXT,
                device_id: s.device_id,
                body: s.body.clone(),
            }]
        };
        let out = self.append_send(entries, s.dedup, s.ticket).await?;
        let p = *out
            .placed
            .first()
            .ok_or_else(|| StoreError::Backend("empty append result".into()))?;
        // HTTP sends (and resends) only notify; client sends also push the
        // message itself (spec §3.7 step 3 and 5).
        let inner = if s.check_sender && !out.duplicate {
            Frame::new(GROUP_IM, 2, s.flag | PUSH | SUPER_GROUP, 0, s.body.clone())
        } else {
            Frame::new(SYNC_GROUP_NOTIFY, 2, 0, 0, group_notify_body(gid, p.msgid))
        };
        let skip = (s.sender, s.device_id);
        self.delivery
            .to_group_members(appid, gid, members, &inner, p, Some(skip));
        if !out.duplicate {
            let offline: Vec<i64> = members.iter().copied().filter(|&u| u != s.sender).collect();
            self.delivery
                .offline_push(appid, &offline, GROUP_IM, s.flag, &s.body);
        }
        Ok(GroupSent {
            is_super: true,
            placed: Some(p),
            first_queue: Some(group_queue(appid, gid)),
            duplicate: out.duplicate,
        })
    }

    /// The group's fan-out lock, unless the store keeps the order itself.
    async fn group_order(&self, appid: i64, gid: i64) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.store.orders_appends() {
            return None;
        }
        Some(self.groups.order_lock(appid, gid).lock().await)
    }

    /// `/post_group_notification`: a GROUP_NOTIFICATION to `members`. Normal
    /// group: stored in every member's queue (one atomic request) and
    /// SYNC_NOTIFY to each; super group: stored once in the group queue and
    /// SYNC_GROUP_NOTIFY to each member on every node.
    pub async fn send_group_notification(
        &self,
        appid: i64,
        gid: i64,
        is_super: bool,
        members: &[i64],
        content: Bytes,
    ) -> Result<(), StoreError> {
        if is_super {
            let out = self
                .store
                .append(AppendRequest {
                    entries: vec![NewEntry {
                        queue: group_queue(appid, gid),
                        cmd: GROUP_NOTIFICATION,
                        flag: 0,
                        device_id: 0,
                        body: content,
                    }],
                    dedup: None,
                })
                .await?;
            let p = *out
                .placed
                .first()
                .ok_or_else(|| StoreError::Backend("empty append result".into()))?;
            let inner = Frame::new(SYNC_GROUP_NOTIFY, 2, 0, 0, group_notify_body(gid, p.msgid));
            self.delivery
                .to_group_members(appid, gid, members, &inner, p, None);
            return Ok(());
        }
        if members.is_empty() {
            return Ok(());
        }
        let entries = NewEntry::fan_out(appid, members, GROUP_NOTIFICATION, 0, 0, &content);
        let _order = self.group_order(appid, gid).await;
        let out = self
            .store
            .append(AppendRequest {
                entries,
                dedup: None,
            })
            .await?;
        for (&uid, p) in members.iter().zip(&out.placed) {
            self.delivery.notify_sync(QueueId { appid, uid }, p.msgid);
        }
        Ok(())
    }
}
