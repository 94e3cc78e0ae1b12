//! To a group's members: a super-group frame goes to each member's
//! connections here and, through the imrs, to the other nodes — once per
//! message, not once per member (normal groups deliver per member queue,
//! through [`Delivery::to_user`]).

use super::{Delivery, now_nanos};
use crate::outbox::{OutFrame, Unit};
use crate::store::Placed;
use bytes::Bytes;
use ferry_common::link::RouteMessage;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::{GROUP_IM, SYNC_GROUP_NOTIFY};
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::metadata::Metadata;

/// SYNC_GROUP_NOTIFY body.
pub fn group_notify_body(gid: i64, msgid: i64) -> Bytes {
    GroupSyncKey {
        group_id: gid,
        sync_key: msgid,
    }
    .encode()
}

impl Delivery {
    /// A super-group frame to every member, on every node. `skip` = the
    /// sending (uid, device), whose own connection gets no copy.
    pub fn to_group_members(
        &self,
        appid: i64,
        gid: i64,
        members: &[i64],
        inner: &Frame,
        p: Placed,
        skip: Option<(i64, i64)>,
    ) {
        self.to_group_members_here(appid, gid, members, inner, p, skip);
        if let Some(c) = &self.cluster {
            c.publish_group(
                &RouteMessage {
                    appid,
                    receiver: gid,
                    msgid: p.msgid,
                    prev_msgid: p.prev,
                    device_id: skip.map_or(0, |(_, device)| device),
                    timestamp: now_nanos(),
                    msg: inner.to_bytes(),
                },
                members,
            );
        }
    }

    /// Hands a super-group frame to this node's member connections: a
    /// GROUP_IM goes with METADATA and is followed by SYNC_GROUP_NOTIFY; any
    /// other frame (a notify) goes alone. `skip` = the sending (uid, device).
    pub fn to_group_members_here(
        &self,
        appid: i64,
        gid: i64,
        members: &[i64],
        inner: &Frame,
        p: Placed,
        skip: Option<(i64, i64)>,
    ) {
        let meta = Metadata {
            sync_key: p.msgid,
            prev_sync_key: p.prev,
        };
        let notify = OutFrame::new(SYNC_GROUP_NOTIFY, 0, group_notify_body(gid, p.msgid));
        for &uid in members {
            self.registry.deliver(appid, uid, |h| {
                if skip.is_some_and(|(su, sd)| su == uid && sd != 0 && sd == h.device_id) {
                    return None;
                }
                Some(if inner.cmd == GROUP_IM {
                    Unit::two(
                        OutFrame::with_meta(GROUP_IM, inner.flag, inner.body.clone(), meta),
                        notify.clone(),
                    )
                } else {
                    Unit::one(OutFrame::new(inner.cmd, inner.flag, inner.body.clone()))
                })
            });
        }
    }
}
