//! The set of connected im links. Each [`Peer`] owns its subscription table
//! and its outbound queue; the set itself is copy-on-write, so routing takes
//! a snapshot (one `Arc` clone) and never holds a lock across peers.

use crate::outbox::Outbox;
use crate::table::Table;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio_util::sync::CancellationToken;

/// One connected im (past the handshake).
#[derive(Debug)]
pub struct Peer {
    pub id: u64,
    pub addr: SocketAddr,
    /// The im's node name from its HELLO (its address when it sent none).
    pub name: String,
    table: RwLock<Table>,
    pub outbox: Outbox,
    /// Cancelled to drop the link (slow consumer, shutdown, error).
    pub cancel: CancellationToken,
}

impl Peer {
    pub fn new(id: u64, addr: SocketAddr, queue_limit: usize, cancel: CancellationToken) -> Peer {
        Peer::named(id, addr, addr.to_string(), queue_limit, cancel)
    }

    pub fn named(
        id: u64,
        addr: SocketAddr,
        name: String,
        queue_limit: usize,
        cancel: CancellationToken,
    ) -> Peer {
        Peer {
            id,
            addr,
            name,
            table: RwLock::new(Table::new()),
            outbox: Outbox::new(queue_limit),
            cancel,
        }
    }

    pub fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    peers: RwLock<Arc<Vec<Arc<Peer>>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A fresh link id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add(&self, peer: Arc<Peer>) {
        let mut g = self.peers.write().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Arc<Peer>> = g.as_ref().clone();
        v.push(peer);
        *g = Arc::new(v);
    }

    /// Removes the link; its table goes with it.
    pub fn remove(&self, id: u64) {
        let mut g = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if g.iter().any(|p| p.id == id) {
            let v: Vec<Arc<Peer>> = g.iter().filter(|p| p.id != id).cloned().collect();
            *g = Arc::new(v);
        }
    }

    /// The current links (cheap: one `Arc` clone).
    pub fn snapshot(&self) -> Arc<Vec<Arc<Peer>>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Online = some link has the user subscribed with online = true.
    pub fn is_online(&self, appid: i64, uid: i64) -> bool {
        self.snapshot()
            .iter()
            .any(|p| p.table().is_online(appid, uid))
    }

    /// (links holding the user, links marking it online).
    pub fn user_links(&self, appid: i64, uid: i64) -> (usize, usize) {
        let mut n = (0, 0);
        for p in self.snapshot().iter() {
            let t = p.table();
            if t.has_user(appid, uid) {
                n.0 += 1;
            }
            if t.is_online(appid, uid) {
                n.1 += 1;
            }
        }
        n
    }

    /// (appid, uid) entries over all link tables.
    pub fn subscriptions(&self) -> usize {
        self.snapshot().iter().map(|p| p.table().len().0).sum()
    }

    /// Links holding the room.
    pub fn room_links(&self, appid: i64, room: i64) -> usize {
        self.snapshot()
            .iter()
            .filter(|p| p.table().has_room(appid, room))
            .count()
    }

    /// The receivers that are not online on any link, in their given order.
    /// Takes one table lock at a time.
    pub fn offline(&self, appid: i64, receivers: &[i64]) -> Vec<i64> {
        let mut online = vec![false; receivers.len()];
        for p in self.snapshot().iter() {
            let t = p.table();
            for (i, &uid) in receivers.iter().enumerate() {
                online[i] = online[i] || t.is_online(appid, uid);
            }
        }
        receivers
            .iter()
            .zip(online)
            .filter(|(_, on)| !on)
            .map(|(&uid, _)| uid)
            .collect()
    }

    /// Every subscribed user (online or not), per app, deduplicated and sorted.
    pub fn all_users(&self) -> BTreeMap<i64, BTreeSet<i64>> {
        let mut out: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for p in self.snapshot().iter() {
            p.table().for_each_user(|appid, uid| {
                out.entry(appid).or_default().insert(uid);
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(r: &Registry) -> Arc<Peer> {
        let p = Arc::new(Peer::new(
            r.next_id(),
            "127.0.0.1:1".parse().expect("addr"),
            1024,
            CancellationToken::new(),
        ));
        r.add(p.clone());
        p
    }

    #[test]
    fn online_on_any_link() {
        let r = Registry::new();
        let a = peer(&r);
        let b = peer(&r);
        a.table_mut().subscribe(1, 10, false);
        b.table_mut().subscribe(1, 10, true);
        b.table_mut().subscribe(1, 11, false);
        assert!(r.is_online(1, 10));
        assert!(!r.is_online(1, 11));
        assert!(!r.is_online(2, 10));
        assert_eq!(r.offline(1, &[12, 10, 11]), vec![12, 11]);
        r.remove(b.id);
        assert!(!r.is_online(1, 10));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn all_users_merges_links() {
        let r = Registry::new();
        let a = peer(&r);
        let b = peer(&r);
        a.table_mut().subscribe(1, 10, false);
        b.table_mut().subscribe(1, 10, true);
        b.table_mut().subscribe(2, 3, true);
        let all = r.all_users();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&1].iter().copied().collect::<Vec<_>>(), vec![10]);
        assert_eq!(all[&2].iter().copied().collect::<Vec<_>>(), vec![3]);
    }
}
