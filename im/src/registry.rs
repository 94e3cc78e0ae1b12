//! Who is connected to this node: `(appid, uid)` → the user's connections.
//!
//! Sharded by uid so unrelated users never contend on one lock. Deliveries
//! run under the shard lock but never await: they only push to outboxes.

use crate::outbox::{OutFrame, Outbox, Unit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub type ConnId = u64;

/// One connection on this node, as the rest of the node sees it (the
/// client library's `ClientHandle` is the other end of the wire).
#[derive(Clone)]
pub struct LocalConn {
    pub conn: ConnId,
    pub device_id: i64,
    /// Counts as online for offline-push suppression (spec §3.1 step 6).
    pub online: bool,
    /// How the client is connected and its login platform, for the admin
    /// console's user lookup.
    pub transport: crate::metrics::Transport,
    pub platform: u8,
    pub outbox: Arc<Outbox>,
    /// Login time and device id, for presence.
    pub info: DeviceInfo,
}

/// What presence needs of a connection beyond its platform and transport
/// (which the registry keeps for the admin console too).
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Unix seconds of the login.
    pub since: i64,
    /// The client's device id string (empty when it sent none).
    pub device_id: Arc<str>,
}

impl DeviceInfo {
    /// A connection without a device id, logged in at time 0 (tests and benches).
    #[doc(hidden)]
    pub fn test() -> DeviceInfo {
        DeviceInfo {
            since: 0,
            device_id: Arc::from(""),
        }
    }
}

/// One connection of a user, as the admin console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionInfo {
    pub conn: ConnId,
    pub device_id: i64,
    pub online: bool,
    pub transport: &'static str,
    pub platform: u8,
    /// Bytes queued for the client right now.
    pub queued_bytes: usize,
}

type Key = (i64, i64);
const SHARDS: usize = 64;

pub struct Registry {
    shards: Vec<Mutex<HashMap<Key, Vec<LocalConn>>>>,
    next_conn: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_conn: AtomicU64::new(1),
        }
    }
}

impl Registry {
    /// A node-unique connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, uid: i64) -> MutexGuard<'_, HashMap<Key, Vec<LocalConn>>> {
        let i = (uid.unsigned_abs() % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's connections on this node.
    pub fn connections(&self, appid: i64, uid: i64) -> Vec<ConnectionInfo> {
        self.shard(uid)
            .get(&(appid, uid))
            .map(|v| {
                v.iter()
                    .map(|h| ConnectionInfo {
                        conn: h.conn,
                        device_id: h.device_id,
                        online: h.online,
                        transport: h.transport.as_str(),
                        platform: h.platform,
                        queued_bytes: h.outbox.queued_bytes(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers a connection; returns how many the user now has here.
    pub fn add(&self, appid: i64, uid: i64, h: LocalConn) -> usize {
        let mut s = self.shard(uid);
        // Most users have one connection: don't let the first push reserve four.
        let v = s
            .entry((appid, uid))
            .or_insert_with(|| Vec::with_capacity(1));
        v.push(h);
        v.len()
    }

    /// Unregisters a connection; returns how many the user still has here.
    pub fn remove(&self, appid: i64, uid: i64, conn: ConnId) -> usize {
        let mut s = self.shard(uid);
        let Some(v) = s.get_mut(&(appid, uid)) else {
            return 0;
        };
        v.retain(|h| h.conn != conn);
        let n = v.len();
        if n == 0 {
            s.remove(&(appid, uid));
        }
        n
    }

    /// Pushes `frames` (built per connection by `make`) to every connection of
    /// the user for which `make` returns `Some`. Returns how many got them.
    pub fn deliver(
        &self,
        appid: i64,
        uid: i64,
        mut make: impl FnMut(&LocalConn) -> Option<Unit>,
    ) -> usize {
        let s = self.shard(uid);
        let Some(v) = s.get(&(appid, uid)) else {
            return 0;
        };
        let mut n = 0;
        for h in v {
            if let Some(frames) = make(h)
                && h.outbox.push(frames)
            {
                n += 1;
            }
        }
        n
    }

    /// `f` of each of the user's connections here.
    pub fn map_user<T>(&self, appid: i64, uid: i64, f: impl FnMut(&LocalConn) -> T) -> Vec<T> {
        self.shard(uid)
            .get(&(appid, uid))
            .map_or_else(Vec::new, |v| v.iter().map(f).collect())
    }

    /// Every (appid, uid) with a connection here.
    pub fn users(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(s.lock().unwrap_or_else(|e| e.into_inner()).keys().copied());
        }
        out
    }

    /// Pushes `frame` to every connection of every user of `appid` for which
    /// `pick(uid)` holds. Returns the number of connections reached.
    pub fn deliver_app(&self, appid: i64, pick: impl Fn(i64) -> bool, frame: &OutFrame) -> usize {
        let mut n = 0;
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for ((a, uid), v) in s.iter() {
                if *a != appid || !pick(*uid) {
                    continue;
                }
                for h in v {
                    if h.outbox.push([frame.clone()]) {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Number of connections of one user on this node.
    pub fn count(&self, appid: i64, uid: i64) -> usize {
        self.shard(uid).get(&(appid, uid)).map_or(0, Vec::len)
    }

    /// (users, connections) on this node, optionally for one app.
    pub fn totals(&self, appid: Option<i64>) -> (usize, usize) {
        let mut users = 0;
        let mut conns = 0;
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for ((a, _), v) in s.iter() {
                if appid.is_none_or(|x| x == *a) {
                    users += 1;
                    conns += v.len();
                }
            }
        }
        (users, conns)
    }
}
