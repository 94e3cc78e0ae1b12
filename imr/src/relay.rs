//! Routing of PUBLISH* frames (spec §4.4): which other links get a copy.
//! The frame is encoded once; every target gets the same `Bytes`.

use crate::outbox::PushError;
use crate::registry::Registry;
use crate::stats::{self, Stats};
use crate::table::Table;
use bytes::Bytes;
use ferry_common::link::{
    GROUP_CHANGED, GroupPublish, PUBLISH, PUBLISH_APP, PUBLISH_GROUP, PUBLISH_ROOM, RouteMessage,
};

/// Where a routed frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// PUBLISH: links holding (appid, uid).
    User { appid: i64, uid: i64 },
    /// PUBLISH_ROOM: links holding (appid, room).
    Room { appid: i64, room: i64 },
    /// PUBLISH_GROUP: links holding at least one of `uids` (the group's
    /// members homed on this imr), connected or not-online alike: the online
    /// flag (spec §4.3) only decides offline pushes, and a member whose
    /// connections are all "offline" (desktop with notifications on) still
    /// gets the message in real time.
    Members { appid: i64, uids: &'a [i64] },
    /// GROUP_CHANGED: every other link (every im may cache the group).
    Every,
    /// PUBLISH_APP: links with any user of the app.
    App { appid: i64 },
}

impl Route<'static> {
    /// The route of a command whose body is a plain RouteMessage, or None
    /// if `cmd` is not one (PUBLISH_GROUP: see [`Route::group`]).
    pub fn of(cmd: u8, rm: &RouteMessage) -> Option<Route<'static>> {
        Some(match cmd {
            PUBLISH => Route::User {
                appid: rm.appid,
                uid: rm.receiver,
            },
            PUBLISH_ROOM => Route::Room {
                appid: rm.appid,
                room: rm.receiver,
            },
            // Every im caches groups, so every im must drop its copy.
            GROUP_CHANGED => Route::Every,
            PUBLISH_APP => Route::App { appid: rm.appid },
            _ => return None,
        })
    }
}

impl<'a> Route<'a> {
    /// The route of a PUBLISH_GROUP body.
    pub fn group(g: &'a GroupPublish) -> Route<'a> {
        Route::Members {
            appid: g.route.appid,
            uids: &g.members,
        }
    }

    pub fn matches(&self, t: &Table) -> bool {
        match *self {
            Route::User { appid, uid } => t.has_user(appid, uid),
            Route::Room { appid, room } => t.has_room(appid, room),
            Route::Members { appid, uids } => t.has_any_user(appid, uids),
            Route::Every => true,
            Route::App { appid } => t.has_app(appid),
        }
    }
}

/// True for the commands routed by [`relay`].
pub fn is_routed(cmd: u8) -> bool {
    matches!(
        cmd,
        PUBLISH | PUBLISH_ROOM | PUBLISH_GROUP | PUBLISH_APP | GROUP_CHANGED
    )
}

/// Queues `frame` on every link except `from` that matches `route`; a link
/// whose queue overflows is dropped (never waited for). Returns the number
/// of links the frame was queued on.
pub fn relay(registry: &Registry, st: &Stats, from: u64, route: Route<'_>, frame: &Bytes) -> usize {
    let peers = registry.snapshot();
    let mut n = 0;
    for p in peers.iter() {
        if p.id == from || !route.matches(&p.table()) {
            continue;
        }
        match p.outbox.push(frame.clone()) {
            Ok(()) => n += 1,
            Err(PushError::Overflow) => {
                stats::add(&st.link_drops, 1);
                tracing::warn!(
                    link = p.id,
                    peer = %p.addr,
                    "im link too slow: outbound queue full (--link-queue), dropping the link; it will reconnect and resubscribe"
                );
                p.cancel.cancel();
            }
            Err(PushError::Closed) => {}
        }
    }
    stats::add(&st.frames_relayed, n as u64);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Peer;
    use bytes::BytesMut;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    fn peer(r: &Registry, limit: usize) -> Arc<Peer> {
        let p = Arc::new(Peer::new(
            r.next_id(),
            "127.0.0.1:1".parse().expect("addr"),
            limit,
            CancellationToken::new(),
        ));
        r.add(p.clone());
        p
    }

    async fn drained(p: &Peer) -> usize {
        let n = p.outbox.queued_bytes();
        if n > 0 {
            let mut b = BytesMut::new();
            p.outbox.next_batch(&mut b).await;
        }
        n
    }

    fn rm(appid: i64, receiver: i64) -> RouteMessage {
        RouteMessage {
            appid,
            receiver,
            msgid: 0,
            prev_msgid: 0,
            device_id: 0,
            timestamp: 0,
            msg: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn routes_by_table_and_skips_origin() {
        let r = Registry::new();
        let st = Stats::default();
        let a = peer(&r, 1024);
        let b = peer(&r, 1024);
        let c = peer(&r, 1024);
        a.table_mut().subscribe(1, 10, true);
        b.table_mut().subscribe(1, 10, false);
        c.table_mut().subscribe(2, 10, true);
        c.table_mut().subscribe_room(1, 7);
        let f = Bytes::from_static(b"frame");

        let route = Route::of(PUBLISH, &rm(1, 10)).expect("route");
        assert_eq!(relay(&r, &st, a.id, route, &f), 1);
        assert_eq!(
            (drained(&a).await, drained(&b).await, drained(&c).await),
            (0, 5, 0)
        );

        let route = Route::of(PUBLISH_ROOM, &rm(1, 7)).expect("route");
        assert_eq!(relay(&r, &st, a.id, route, &f), 1);
        assert_eq!(drained(&c).await, 5);

        assert_eq!(Route::of(PUBLISH_GROUP, &rm(1, 99)), None);

        let route = Route::of(GROUP_CHANGED, &rm(1, 99)).expect("route");
        assert_eq!(relay(&r, &st, a.id, route, &f), 2);
        assert_eq!((drained(&b).await, drained(&c).await), (5, 5));

        let route = Route::of(PUBLISH_APP, &rm(2, 0)).expect("route");
        assert_eq!(relay(&r, &st, a.id, route, &f), 1);
        assert_eq!(drained(&c).await, 5);

        assert_eq!(Route::of(0x55, &rm(1, 1)), None);
        assert_eq!(st.snapshot().frames_relayed, 5);
    }

    #[tokio::test]
    async fn group_goes_once_to_links_holding_listed_members() {
        let r = Registry::new();
        let st = Stats::default();
        let origin = peer(&r, 1024);
        let b = peer(&r, 1024);
        let c = peer(&r, 1024);
        let d = peer(&r, 1024);
        origin.table_mut().subscribe(1, 2, true);
        b.table_mut().subscribe(1, 2, true);
        b.table_mut().subscribe(1, 4, false); // two members, still one copy
        c.table_mut().subscribe(1, 6, false); // held, not online: gets it
        d.table_mut().subscribe(1, 8, true); // not listed
        d.table_mut().subscribe(2, 2, true); // listed uid, other app
        let g = GroupPublish {
            route: rm(1, 99),
            members: vec![2, 4, 6, 10],
        };
        let f = Bytes::from_static(b"frame");
        assert_eq!(relay(&r, &st, origin.id, Route::group(&g), &f), 2);
        assert_eq!(
            (
                drained(&origin).await,
                drained(&b).await,
                drained(&c).await,
                drained(&d).await
            ),
            (0, 5, 5, 0)
        );
        let none = GroupPublish {
            route: rm(1, 99),
            members: vec![],
        };
        assert_eq!(relay(&r, &st, origin.id, Route::group(&none), &f), 0);
        assert_eq!(st.snapshot().frames_relayed, 2);
    }

    #[test]
    fn overflow_drops_only_the_slow_link() {
        let r = Registry::new();
        let st = Stats::default();
        let origin = peer(&r, 1024);
        let slow = peer(&r, 8);
        let fast = peer(&r, 1024);
        slow.table_mut().subscribe(1, 10, true);
        fast.table_mut().subscribe(1, 10, true);
        let route = Route::User { appid: 1, uid: 10 };
        let f = Bytes::from_static(b"12345");
        assert_eq!(relay(&r, &st, origin.id, route, &f), 2);
        assert_eq!(relay(&r, &st, origin.id, route, &f), 1);
        assert!(slow.cancel.is_cancelled());
        assert!(!fast.cancel.is_cancelled());
        assert_eq!(fast.outbox.queued_bytes(), 10);
        assert_eq!(st.snapshot().link_drops, 1);
        // Later frames to the dropped link are ignored, not counted again.
        assert_eq!(relay(&r, &st, origin.id, route, &f), 1);
        assert_eq!(st.snapshot().link_drops, 1);
    }
}
