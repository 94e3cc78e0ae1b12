//! Answers PRESENCE_QUERY from the im links' device tables: one reply per
//! query, holding every device any linked im reported for the asked users.
//! Takes one table lock at a time, never across an await.

use crate::registry::Registry;
use ferry_common::link::{NodeDevice, PresenceQuery, PresenceReply, UserPresence};

/// Builds the reply to `q` from the current links.
pub fn answer(registry: &Registry, q: &PresenceQuery) -> PresenceReply {
    let peers = registry.snapshot();
    let mut users: Vec<UserPresence> = q
        .uids
        .iter()
        .map(|&uid| UserPresence {
            uid,
            devices: Vec::new(),
        })
        .collect();
    let mut nodes = Vec::new();
    for p in peers.iter() {
        let t = p.table();
        let index = nodes.len() as u16;
        let mut used = false;
        for u in users.iter_mut() {
            for d in t.devices(q.appid, u.uid) {
                used = true;
                u.devices.push(NodeDevice {
                    node: index,
                    platform: d.platform,
                    transport: d.transport,
                    since: d.since,
                    device_id: d.device_id.clone(),
                });
            }
        }
        drop(t);
        if used {
            nodes.push(p.name.clone());
        }
        if nodes.len() == u16::MAX as usize {
            break;
        }
    }
    users.retain(|u| !u.devices.is_empty());
    PresenceReply {
        id: q.id,
        nodes,
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Peer;
    use bytes::Bytes;
    use ferry_common::link::Device;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    fn peer(r: &Registry, name: &str) -> Arc<Peer> {
        let p = Arc::new(Peer::named(
            r.next_id(),
            "127.0.0.1:1".parse().expect("addr"),
            name.into(),
            1024,
            CancellationToken::new(),
        ));
        r.add(p.clone());
        p
    }

    fn dev(conn: u64, platform: u8) -> Device {
        Device {
            conn,
            platform,
            transport: 1,
            since: 100,
            device_id: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn merges_links_and_names_only_nodes_in_use() {
        let r = Registry::new();
        let a = peer(&r, "a");
        let b = peer(&r, "b");
        let c = peer(&r, "c");
        a.table_mut().device_online(7, 1, dev(1, 1));
        c.table_mut().device_online(7, 1, dev(9, 3));
        c.table_mut().device_online(7, 2, dev(10, 2));
        b.table_mut().device_online(8, 1, dev(2, 1)); // another app
        let rep = answer(
            &r,
            &PresenceQuery {
                id: 3,
                appid: 7,
                uids: vec![1, 2, 4],
            },
        );
        assert_eq!(rep.id, 3);
        assert_eq!(rep.nodes, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(rep.users.len(), 2);
        assert_eq!(rep.users[0].uid, 1);
        let where1: Vec<(u16, u8)> = rep.users[0]
            .devices
            .iter()
            .map(|d| (d.node, d.platform))
            .collect();
        assert_eq!(where1, vec![(0, 1), (1, 3)]);
        assert_eq!(rep.users[1].uid, 2);
        assert_eq!(rep.users[1].devices[0].node, 1);
    }
}
