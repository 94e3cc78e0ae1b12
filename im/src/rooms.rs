//! Chat rooms on this node: `(appid, room)` → member connections. Memory only
//! (spec §3.8): no history, no membership list beyond who is connected.

use crate::outbox::{OutFrame, Outbox};
use crate::registry::ConnId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
struct Member {
    uid: i64,
    device_id: i64,
    outbox: Arc<Outbox>,
}

type Key = (i64, i64);
const SHARDS: usize = 16;

pub struct Rooms {
    shards: Vec<Mutex<HashMap<Key, HashMap<ConnId, Member>>>>,
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Rooms {
    fn shard(&self, room: i64) -> MutexGuard<'_, HashMap<Key, HashMap<ConnId, Member>>> {
        let i = (room.unsigned_abs() % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection; an older connection of the same uid and non-zero
    /// device is replaced (spec §3.3). Returns the member count after.
    pub fn join(
        &self,
        appid: i64,
        room: i64,
        conn: ConnId,
        uid: i64,
        device_id: i64,
        outbox: Arc<Outbox>,
    ) -> usize {
        let mut s = self.shard(room);
        let members = s.entry((appid, room)).or_default();
        if device_id != 0 {
            members.retain(|_, m| !(m.uid == uid && m.device_id == device_id));
        }
        members.insert(
            conn,
            Member {
                uid,
                device_id,
                outbox,
            },
        );
        members.len()
    }

    /// Removes a connection; returns the member count after.
    pub fn leave(&self, appid: i64, room: i64, conn: ConnId) -> usize {
        let mut s = self.shard(room);
        let Some(members) = s.get_mut(&(appid, room)) else {
            return 0;
        };
        members.remove(&conn);
        let n = members.len();
        if n == 0 {
            s.remove(&(appid, room));
        }
        n
    }

    pub fn contains(&self, appid: i64, room: i64, conn: ConnId) -> bool {
        self.shard(room)
            .get(&(appid, room))
            .is_some_and(|m| m.contains_key(&conn))
    }

    /// Sends one frame (body shared) to every member except connections of
    /// `exclude = (uid, device)`. Returns the number of deliveries.
    pub fn broadcast(
        &self,
        appid: i64,
        room: i64,
        frame: &OutFrame,
        exclude: Option<(i64, i64)>,
    ) -> usize {
        let s = self.shard(room);
        let Some(members) = s.get(&(appid, room)) else {
            return 0;
        };
        let mut n = 0;
        for m in members.values() {
            if exclude == Some((m.uid, m.device_id)) {
                continue;
            }
            if m.outbox.push([frame.clone()]) {
                n += 1;
            }
        }
        n
    }

    /// The `n` rooms with the most member connections, largest first, as
    /// `(appid, room, members)`. Walks every shard (one lock at a time): for
    /// the admin console, once a second at most, never on the message path.
    pub fn largest(&self, n: usize) -> Vec<(i64, i64, usize)> {
        use std::cmp::Reverse;
        // A min-heap of the best `n` so far: memory stays O(n) however many
        // rooms there are.
        let mut best = std::collections::BinaryHeap::with_capacity(n + 1);
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for (&(a, r), m) in s.iter() {
                best.push(Reverse((m.len(), Reverse((a, r)))));
                if best.len() > n {
                    best.pop();
                }
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|Reverse((len, Reverse((a, r))))| (a, r, len))
            .collect()
    }

    /// (rooms, member connections), optionally for one app.
    pub fn totals(&self, appid: Option<i64>) -> (usize, usize) {
        let mut rooms = 0;
        let mut members = 0;
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for ((a, _), m) in s.iter() {
                if appid.is_none_or(|x| x == *a) {
                    rooms += 1;
                    members += m.len();
                }
            }
        }
        (rooms, members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_rooms_first_bounded() {
        let rooms = Rooms::default();
        let outbox = Arc::new(Outbox::new(1024));
        let mut conn = 0;
        // Room r gets r members (rooms 1..=30, spread over the shards).
        for room in 1..=30i64 {
            for uid in 0..room {
                conn += 1;
                rooms.join(7, room, conn, uid, 0, outbox.clone());
            }
        }
        rooms.join(8, 1, 10_000, 1, 0, outbox.clone());
        let top = rooms.largest(3);
        assert_eq!(top, vec![(7, 30, 30), (7, 29, 29), (7, 28, 28)]);
        assert_eq!(rooms.largest(100).len(), 31);
        assert!(Rooms::default().largest(20).is_empty());
    }
}
