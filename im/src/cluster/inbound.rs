//! What an imr relays to this node: routed user frames, room messages,
//! super-group messages, app broadcasts — delivered to local connections
//! exactly like local sends.

use super::link::Inbound;
use crate::node::Node;
use crate::outbox::{OutFrame, Unit};
use crate::store::QueueId;
use ferry_common::link::{GROUP_CHANGED, GroupPublish, PUBLISH_APP};
use ferry_common::link::{MAX_LINK_BODY, PUBLISH, PUBLISH_GROUP, PUBLISH_ROOM, RouteMessage};
use ferry_common::link::{NODE_QUERY, NODE_REPLY, NodeAsk, NodeQuery, NodeReply};
use ferry_common::protocol::command::SYNC_NOTIFY;
use ferry_common::protocol::scalar::encode_i64;
use ferry_common::protocol::{Frame, split_frame};
use std::sync::{Arc, Weak};

/// Inbound handler holding the node weakly (the node owns the links).
pub struct NodeInbound(pub Weak<Node>);

fn embedded(rm: &RouteMessage) -> Option<Frame> {
    let mut buf = bytes::BytesMut::from(&rm.msg[..]);
    split_frame(&mut buf, MAX_LINK_BODY).ok().flatten()
}

impl Inbound for NodeInbound {
    fn on_frame(&self, link: usize, frame: Frame) {
        let Some(node) = self.0.upgrade() else { return };
        if frame.cmd == PUBLISH_GROUP {
            match GroupPublish::decode(frame.body) {
                Ok(g) => deliver_group(&node, link, g),
                Err(e) => tracing::warn!(error = %e, "undecodable PUBLISH_GROUP from imr ignored"),
            }
            return;
        }
        match frame.cmd {
            NODE_QUERY => return answer_node_query(&node, link, frame.body),
            NODE_REPLY => {
                match NodeReply::decode(frame.body) {
                    Ok(r) => {
                        if let Some(c) = &node.delivery.cluster {
                            c.nodes.on_reply(r);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable NODE_REPLY from imr ignored"),
                }
                return;
            }
            _ => {}
        }
        let rm = match RouteMessage::decode(frame.cmd, frame.body) {
            Ok(rm) => rm,
            Err(e) => {
                tracing::warn!(cmd = frame.cmd, error = %e, "undecodable frame from imr ignored");
                return;
            }
        };
        if frame.cmd == GROUP_CHANGED {
            node.groups.invalidate(rm.appid, rm.receiver);
            return;
        }
        let Some(inner) = embedded(&rm) else {
            tracing::warn!(
                cmd = frame.cmd,
                "routed message without a valid embedded frame ignored"
            );
            return;
        };
        match frame.cmd {
            PUBLISH => node.delivery.routed_here(&rm, inner),
            PUBLISH_ROOM => {
                let sender = inner
                    .body
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(i64::from_be_bytes);
                let exclude = sender.map(|s| (s, rm.device_id));
                node.delivery.rooms.broadcast(
                    rm.appid,
                    rm.receiver,
                    &OutFrame::new(inner.cmd, inner.flag, inner.body),
                    exclude,
                );
            }
            PUBLISH_APP => {
                let f = OutFrame::new(inner.cmd, inner.flag, inner.body);
                node.delivery.to_app_here(rm.appid, Some(link), &f);
            }
            other => tracing::warn!(cmd = other, "unexpected command from imr ignored"),
        }
    }

    fn on_gap(&self, link: usize) {
        let Some(node) = self.0.upgrade() else { return };
        // GROUP_CHANGED frames may have been lost with the link.
        node.groups.clear();
        tokio::spawn(notify_after_gap(node, link));
    }
}

/// Another node's console asks for this node's figures or a user's
/// connections here; the answer goes back on the link the query came in on.
/// Always answered, even with nothing to report: the asker counts answers.
fn answer_node_query(node: &Node, link: usize, body: bytes::Bytes) {
    let q = match NodeQuery::decode(body) {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable NODE_QUERY from imr ignored");
            return;
        }
    };
    let value = match q.ask {
        NodeAsk::Figures { since } => crate::console::figures(node, since),
        NodeAsk::User { appid, uid } => crate::console::user_here(node, appid, uid),
    };
    let payload = serde_json::to_vec(&value).unwrap_or_default();
    let (Some(frame), Some(l)) = (
        super::nodes::answer_frame(&q, payload),
        node.delivery
            .cluster
            .as_ref()
            .and_then(|c| c.links().get(link)),
    ) else {
        return;
    };
    l.send(frame);
}

/// A super-group frame from another node, to this node's connections of the
/// members it lists. Only members homed on `link` count: the sender sent
/// every other imr its own share, so each member's connections here get the
/// frame once, from its home imr, whatever else arrives.
fn deliver_group(node: &Node, link: usize, mut g: GroupPublish) {
    let Some(inner) = embedded(&g.route) else {
        tracing::warn!("PUBLISH_GROUP without a valid embedded frame ignored");
        return;
    };
    if let Some(c) = node.delivery.cluster.as_ref() {
        g.members.retain(|&uid| c.home(uid) == link);
    }
    let rm = &g.route;
    let placed = crate::store::Placed {
        msgid: rm.msgid,
        prev: rm.prev_msgid,
    };
    let sender = inner
        .body
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes);
    let skip = sender.map(|s| (s, rm.device_id));
    node.delivery
        .to_group_members_here(rm.appid, rm.receiver, &g.members, &inner, placed, skip);
}

/// After a link gap, frames routed to our users may have been lost: tell
/// every local user homed on that link to sync (with its real queue head).
async fn notify_after_gap(node: Arc<Node>, link: usize) {
    let Some(cluster) = node.delivery.cluster.as_ref() else {
        return;
    };
    let users: Vec<(i64, i64)> = node
        .delivery
        .registry
        .users()
        .into_iter()
        .filter(|&(_, uid)| cluster.home(uid) == link)
        .collect();
    let n = users.len();
    for (appid, uid) in users {
        let q = QueueId { appid, uid };
        let head = match node.store.window(q, i64::MAX - 1, 1).await {
            Ok(w) => w.head,
            Err(_) => i64::MAX,
        };
        if head > 0 {
            node.delivery.registry.deliver(appid, uid, |_| {
                Some(Unit::one(OutFrame::new(SYNC_NOTIFY, 0, encode_i64(head))))
            });
        }
    }
    if n > 0 {
        tracing::info!(link, users = n, "sent SYNC_NOTIFY after imr link gap");
    }
}
