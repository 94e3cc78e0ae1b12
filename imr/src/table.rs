//! The subscription table of one im link (spec §4.4): appid → uid → online,
//! plus a set of (appid, room). SUBSCRIBE overwrites, UNSUBSCRIBE removes;
//! rooms are a set, not a counter (the im counts its own joins). The table
//! lives exactly as long as the link.
//!
//! Link version 4 adds the users' logged-in connections (DEVICE_ONLINE /
//! DEVICE_OFFLINE), kept apart from the online flags: they only answer
//! presence queries, routing never looks at them.

use ferry_common::link::Device;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Table {
    users: HashMap<i64, HashMap<i64, bool>>,
    rooms: HashSet<(i64, i64)>,
    devices: HashMap<(i64, i64), Vec<Device>>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// SUBSCRIBE: sets or overwrites `uid → online`.
    pub fn subscribe(&mut self, appid: i64, uid: i64, online: bool) {
        self.users.entry(appid).or_default().insert(uid, online);
    }

    /// UNSUBSCRIBE: forgets the user (no-op when unknown).
    pub fn unsubscribe(&mut self, appid: i64, uid: i64) {
        if let Some(app) = self.users.get_mut(&appid) {
            app.remove(&uid);
            if app.is_empty() {
                self.users.remove(&appid);
            }
        }
    }

    /// DEVICE_ONLINE: records a connection (a repeat for the same
    /// connection id replaces the old record).
    pub fn device_online(&mut self, appid: i64, uid: i64, d: Device) {
        let v = self.devices.entry((appid, uid)).or_default();
        v.retain(|x| x.conn != d.conn);
        v.push(d);
    }

    /// DEVICE_OFFLINE: forgets a connection (no-op when unknown).
    pub fn device_offline(&mut self, appid: i64, uid: i64, conn: u64) {
        if let Some(v) = self.devices.get_mut(&(appid, uid)) {
            v.retain(|x| x.conn != conn);
            if v.is_empty() {
                self.devices.remove(&(appid, uid));
            }
        }
    }

    /// The user's connections on this link.
    pub fn devices(&self, appid: i64, uid: i64) -> &[Device] {
        self.devices.get(&(appid, uid)).map_or(&[], Vec::as_slice)
    }

    pub fn subscribe_room(&mut self, appid: i64, room: i64) {
        self.rooms.insert((appid, room));
    }

    pub fn unsubscribe_room(&mut self, appid: i64, room: i64) {
        self.rooms.remove(&(appid, room));
    }

    /// The user is subscribed here (online or not).
    pub fn has_user(&self, appid: i64, uid: i64) -> bool {
        self.users.get(&appid).is_some_and(|a| a.contains_key(&uid))
    }

    /// At least one of `uids` is subscribed here (online or not).
    pub fn has_any_user(&self, appid: i64, uids: &[i64]) -> bool {
        self.users
            .get(&appid)
            .is_some_and(|a| uids.iter().any(|u| a.contains_key(u)))
    }

    /// The user is subscribed here and marked online.
    pub fn is_online(&self, appid: i64, uid: i64) -> bool {
        self.users
            .get(&appid)
            .and_then(|a| a.get(&uid))
            .copied()
            .unwrap_or(false)
    }

    pub fn has_room(&self, appid: i64, room: i64) -> bool {
        self.rooms.contains(&(appid, room))
    }

    /// At least one user of the app is subscribed here.
    pub fn has_app(&self, appid: i64) -> bool {
        self.users.contains_key(&appid)
    }

    /// Calls `f(appid, uid)` for every subscribed user.
    pub fn for_each_user(&self, mut f: impl FnMut(i64, i64)) {
        for (&appid, app) in &self.users {
            for &uid in app.keys() {
                f(appid, uid);
            }
        }
    }

    /// Number of subscribed users and rooms.
    pub fn len(&self) -> (usize, usize) {
        (
            self.users.values().map(HashMap::len).sum(),
            self.rooms.len(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_overwrites_online_flag() {
        let mut t = Table::new();
        t.subscribe(1, 10, false);
        assert!(t.has_user(1, 10));
        assert!(!t.is_online(1, 10));
        t.subscribe(1, 10, true);
        assert!(t.is_online(1, 10));
        t.subscribe(1, 10, false);
        assert!(!t.is_online(1, 10));
        assert!(t.has_user(1, 10));
        assert_eq!(t.len(), (1, 0));
    }

    #[test]
    fn unsubscribe_removes_user_and_empty_app() {
        let mut t = Table::new();
        t.subscribe(1, 10, true);
        t.subscribe(1, 11, false);
        t.subscribe(2, 10, true);
        t.unsubscribe(1, 10);
        assert!(!t.has_user(1, 10));
        assert!(!t.is_online(1, 10));
        assert!(t.has_app(1));
        t.unsubscribe(1, 11);
        assert!(!t.has_app(1));
        assert!(t.has_app(2));
        t.unsubscribe(3, 3); // unknown: no-op
        t.unsubscribe(2, 99);
        assert!(t.has_user(2, 10));
    }

    #[test]
    fn has_any_user_checks_the_app_and_the_list() {
        let mut t = Table::new();
        t.subscribe(1, 10, false);
        assert!(t.has_any_user(1, &[3, 10]));
        assert!(!t.has_any_user(1, &[3, 11]));
        assert!(!t.has_any_user(1, &[]));
        assert!(!t.has_any_user(2, &[10]));
    }

    #[test]
    fn devices_are_per_connection() {
        let d = |conn| Device {
            conn,
            platform: 1,
            transport: 1,
            since: 5,
            device_id: bytes::Bytes::from_static(b"d"),
        };
        let mut t = Table::new();
        t.device_online(1, 10, d(1));
        t.device_online(1, 10, d(2));
        t.device_online(1, 10, d(2));
        assert_eq!(t.devices(1, 10).len(), 2);
        assert!(t.devices(2, 10).is_empty());
        t.device_offline(1, 10, 1);
        t.device_offline(1, 10, 7);
        assert_eq!(t.devices(1, 10), &[d(2)]);
        t.device_offline(1, 10, 2);
        assert!(t.devices(1, 10).is_empty());
        assert!(t.devices.is_empty());
    }

    #[test]
    fn appids_are_separate() {
        let mut t = Table::new();
        t.subscribe(1, 10, true);
        assert!(!t.has_user(2, 10));
        assert!(!t.is_online(2, 10));
    }

    #[test]
    fn rooms_are_a_set() {
        let mut t = Table::new();
        t.subscribe_room(1, 5);
        t.subscribe_room(1, 5);
        assert!(t.has_room(1, 5));
        assert!(!t.has_room(2, 5));
        t.unsubscribe_room(1, 5);
        assert!(!t.has_room(1, 5));
        t.unsubscribe_room(1, 5);
        assert!(t.is_empty());
        // Rooms don't make an app "present" for PUBLISH_APP.
        t.subscribe_room(3, 1);
        assert!(!t.has_app(3));
    }

    #[test]
    fn for_each_user_visits_all() {
        let mut t = Table::new();
        t.subscribe(1, 10, true);
        t.subscribe(1, 11, false);
        t.subscribe(2, 10, true);
        let mut v = Vec::new();
        t.for_each_user(|a, u| v.push((a, u)));
        v.sort_unstable();
        assert_eq!(v, vec![(1, 10), (1, 11), (2, 10)]);
    }
}
