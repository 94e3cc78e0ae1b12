//! Cluster mode: links to the imr routers (spec §4) and the sharding rules.
//! Users are homed on `links[|uid| mod N]`, rooms on `links[|room| mod N]`;
//! every im must list the imrs in the same order.

mod counters;
mod inbound;
mod link;
mod nodes;

pub use link::{Inbound, Link, LinkError, QueryError};
pub use nodes::{Gathered, NodeQueries};

use bytes::Bytes;
use ferry_common::link::{
    BatchPush, GROUP_CHANGED, GroupPublish, MAX_LINK_BODY, PUBLISH, PUBLISH_APP, PUBLISH_GROUP,
    PUBLISH_ROOM, PUSH, RouteMessage,
};
use link::link_frame;
use std::sync::Arc;

pub struct Cluster {
    links: Vec<Arc<Link>>,
    /// This node's pending questions to the other nodes (admin console).
    pub nodes: NodeQueries,
}

impl Cluster {
    /// One link per address; `buffer` bounds each link's send buffer in
    /// bytes; `name` is this node's name, shown in presence answers.
    pub fn new(addrs: &[String], secret: Bytes, name: Bytes, buffer: usize) -> Cluster {
        let links = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Arc::new(Link::new(
                    i,
                    a.clone(),
                    secret.clone(),
                    name.clone(),
                    buffer,
                ))
            })
            .collect();
        Cluster {
            links,
            nodes: NodeQueries::default(),
        }
    }

    pub fn links(&self) -> &[Arc<Link>] {
        &self.links
    }

    fn shard(&self, id: i64) -> usize {
        (id.unsigned_abs() % self.links.len().max(1) as u64) as usize
    }

    /// Index of the link that is home to this uid.
    pub fn home(&self, uid: i64) -> usize {
        self.shard(uid)
    }

    fn user_link(&self, uid: i64) -> Option<&Link> {
        self.links.get(self.shard(uid)).map(|l| &**l)
    }

    fn room_link(&self, room: i64) -> Option<&Link> {
        self.links.get(self.shard(room)).map(|l| &**l)
    }

    pub fn subscribe(&self, appid: i64, uid: i64, online: bool) {
        if let Some(l) = self.user_link(uid) {
            l.user_add(appid, uid, online);
        }
    }

    pub fn unsubscribe(&self, appid: i64, uid: i64, online: bool) {
        if let Some(l) = self.user_link(uid) {
            l.user_remove(appid, uid, online);
        }
    }

    /// Reports a logged-in connection to the user's home imr (presence).
    pub fn device_online(&self, appid: i64, uid: i64, device: ferry_common::link::Device) {
        if let Some(l) = self.user_link(uid) {
            l.device_add(appid, uid, device);
        }
    }

    pub fn device_offline(&self, appid: i64, uid: i64, conn: u64) {
        if let Some(l) = self.user_link(uid) {
            l.device_remove(appid, uid, conn);
        }
    }

    /// The devices of `uids` on every node: each uid's home imr is asked
    /// once for all its share, the imrs concurrently. Fails if any imr
    /// holding a share does not answer within `timeout`.
    pub async fn query_presence(
        &self,
        appid: i64,
        uids: &[i64],
        timeout: std::time::Duration,
    ) -> Result<Vec<ferry_common::link::PresenceReply>, (String, QueryError)> {
        let mut per_link: Vec<Vec<i64>> = vec![Vec::new(); self.links.len()];
        for &u in uids {
            per_link[self.shard(u)].push(u);
        }
        let asks = per_link
            .into_iter()
            .enumerate()
            .filter(|(_, share)| !share.is_empty())
            .map(|(i, share)| {
                let link = self.links[i].clone();
                async move {
                    link.query_presence(appid, share, timeout)
                        .await
                        .map_err(|e| (link.addr.clone(), e))
                }
            });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect()
    }

    pub fn room_join(&self, appid: i64, room: i64) {
        if let Some(l) = self.room_link(room) {
            l.room_add(appid, room);
        }
    }

    pub fn room_leave(&self, appid: i64, room: i64) {
        if let Some(l) = self.room_link(room) {
            l.room_remove(appid, room);
        }
    }

    /// Relays a frame to the user's connections on other nodes.
    pub fn publish_user(&self, rm: &RouteMessage) {
        if let Some(l) = self.user_link(rm.receiver) {
            l.send(link_frame(PUBLISH, rm.encode()));
        }
    }

    pub fn publish_room(&self, rm: &RouteMessage) {
        if let Some(l) = self.room_link(rm.receiver) {
            l.send(link_frame(PUBLISH_ROOM, rm.encode()));
        }
    }

    /// A super-group frame to the other nodes holding its members. The
    /// members are split by home imr and each imr gets one PUBLISH_GROUP
    /// listing only its share; it forwards the frame to the links holding
    /// at least one of them, so a node with no member connected gets
    /// nothing. A receiver delivers only to listed members homed on the
    /// link the frame came in on: each connection gets one copy. A share too
    /// large for one link frame goes in several disjoint ones.
    pub fn publish_group(&self, rm: &RouteMessage, members: &[i64]) {
        if self.links.is_empty() || members.is_empty() {
            return;
        }
        let mut per_link: Vec<Vec<i64>> = vec![Vec::new(); self.links.len()];
        for &m in members {
            per_link[self.shard(m)].push(m);
        }
        let room = MAX_LINK_BODY.saturating_sub(GroupPublish::encoded_len(rm.msg.len(), 0));
        let chunk = (room / 8).max(1);
        for (i, share) in per_link.iter().enumerate() {
            for part in share.chunks(chunk) {
                let body = GroupPublish::encode_parts(rm, part);
                self.links[i].send(link_frame(PUBLISH_GROUP, body));
            }
        }
    }

    /// Tells every other node to drop its cached copy of the group. Sent
    /// through every imr: an invalidation must not depend on one link.
    pub fn group_changed(&self, appid: i64, gid: i64) {
        let body = RouteMessage {
            appid,
            receiver: gid,
            msgid: 0,
            prev_msgid: 0,
            device_id: 0,
            timestamp: 0,
            msg: Bytes::new(),
        }
        .encode();
        let frame = link_frame(GROUP_CHANGED, body);
        for l in &self.links {
            l.send(frame.clone());
        }
    }

    /// To every imr: each forwards to the nodes holding users of the app that
    /// are homed on it, and receivers deliver only to users homed on the link
    /// it came in on, so every user gets one copy.
    pub fn publish_app(&self, rm: &RouteMessage) {
        let frame = link_frame(PUBLISH_APP, rm.encode());
        for l in &self.links {
            l.send(frame.clone());
        }
    }

    /// Offline-push request: each receiver's home imr decides whether the
    /// receiver is online anywhere and queues a push entry if not.
    pub fn push(&self, appid: i64, receivers: &[i64], msg: &Bytes) {
        if self.links.is_empty() || receivers.is_empty() {
            return;
        }
        let mut per_link: Vec<Vec<i64>> = vec![Vec::new(); self.links.len()];
        for &r in receivers {
            per_link[self.shard(r)].push(r);
        }
        for (i, receivers) in per_link.into_iter().enumerate() {
            if receivers.is_empty() {
                continue;
            }
            let body = BatchPush {
                appid,
                receivers,
                msg: msg.clone(),
            }
            .encode();
            self.links[i].send(link_frame(PUSH, body));
        }
    }

    /// Starts one task per link; `inbound` handles what the imrs relay to us.
    pub fn start(&self, inbound: Arc<dyn link::Inbound>) -> Vec<tokio::task::JoinHandle<()>> {
        self.links
            .iter()
            .map(|l| tokio::spawn(link::run(l.clone(), inbound.clone())))
            .collect()
    }

    /// True when every link is connected.
    pub fn all_up(&self) -> bool {
        self.links
            .iter()
            .all(|l| l.up.load(std::sync::atomic::Ordering::Relaxed))
    }
}

pub use inbound::NodeInbound;

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize) -> Cluster {
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", i + 1)).collect();
        Cluster::new(&addrs, Bytes::new(), Bytes::new(), 64 << 20)
    }

    fn rm() -> RouteMessage {
        RouteMessage {
            appid: 7,
            receiver: 3110,
            msgid: 9,
            prev_msgid: 8,
            device_id: 1,
            timestamp: 2,
            msg: Bytes::from_static(b"frame"),
        }
    }

    /// The PUBLISH_GROUP bodies queued on link `i`.
    fn group_bodies(c: &Cluster, i: usize) -> Vec<GroupPublish> {
        c.links[i]
            .queued_frames()
            .into_iter()
            .map(|f| {
                assert_eq!(f[8], PUBLISH_GROUP);
                assert!(f.len() - 12 <= MAX_LINK_BODY);
                GroupPublish::decode(f.slice(12..)).expect("a GroupPublish body")
            })
            .collect()
    }

    #[test]
    fn group_publish_gives_each_imr_only_its_members() {
        let c = cluster(3);
        c.publish_group(&rm(), &[1, 2, 3, 4, -5, 7]);
        let members =
            |i| -> Vec<Vec<i64>> { group_bodies(&c, i).into_iter().map(|g| g.members).collect() };
        assert_eq!(members(0), vec![vec![3]]);
        assert_eq!(members(1), vec![vec![1, 4, 7]]);
        assert_eq!(members(2), vec![vec![2, -5]]);
        assert!(group_bodies(&c, 0).iter().all(|g| g.route == rm()));

        // Members homed on one imr only: the others get nothing.
        let c = cluster(2);
        c.publish_group(&rm(), &[2, 4]);
        assert_eq!(group_bodies(&c, 0).len(), 1);
        assert!(group_bodies(&c, 1).is_empty());
        c.publish_group(&rm(), &[]);
        assert_eq!(group_bodies(&c, 0).len(), 1);
    }

    #[test]
    fn a_share_too_large_for_one_frame_goes_in_disjoint_frames() {
        let c = cluster(1);
        let members: Vec<i64> = (0..2_100_000).collect();
        c.publish_group(&rm(), &members);
        let bodies = group_bodies(&c, 0);
        assert_eq!(bodies.len(), 2);
        let got: Vec<i64> = bodies.into_iter().flat_map(|g| g.members).collect();
        assert_eq!(got, members);
    }
}
