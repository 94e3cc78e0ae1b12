//! Link protocol against an in-process imr: handshake, subscription tables,
//! relay of PUBLISH / PUBLISH_ROOM / PUBLISH_GROUP (to links holding listed
//! members only) / PUBLISH_APP, malformed
//! frames and slow consumers.

mod common;

use bytes::Bytes;
use common::*;
use ferry_common::link::{
    GROUP_CHANGED, GroupPublish, HELLO, Hello, LINK_VERSION, PUBLISH, PUBLISH_GROUP, PUBLISH_ROOM,
    RoomSubscription, RouteMessage, SUBSCRIBE, UNSUBSCRIBE_ROOM,
};
use ferry_common::protocol::Frame;
use ferry_imr::PUBLISH_APP;

/// Asserts `f` is exactly the routed frame `cmd` + `rm`.
fn assert_routed(f: &Frame, cmd: u8, rm: &RouteMessage) {
    assert_eq!(f.cmd, cmd);
    assert_eq!((f.version, f.flag), (0, 0));
    assert_eq!(f.body, rm.encode(), "body relayed byte for byte");
    let got = RouteMessage::decode(cmd, f.body.clone()).expect("decodes");
    assert_eq!(&got, rm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_ok() {
    let imr = Imr::start(config(None)).await;
    let _im = FakeIm::linked(&imr, "").await;
    imr.wait_links(1).await;
    let (status, v) = imr.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["links"], 1);
    assert_eq!(v["redis"], "disabled");
    imr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_gets_our_hello_then_close() {
    let imr = Imr::start(config(None)).await;
    let mut im = FakeIm::connect(imr.link).await;
    im.send_raw(&hello_frame(LINK_VERSION + 7, "")).await;
    let frames = im.closed().await;
    assert_eq!(frames.len(), 1, "exactly our HELLO before the close");
    assert_eq!(frames[0].cmd, HELLO);
    let h = Hello::decode(frames[0].body.clone()).expect("HELLO");
    assert_eq!(h.version, LINK_VERSION);
    assert_eq!(imr.stats().handshakes_refused, 1);
    assert_eq!(imr.stats().links, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_right_one_accepted() {
    let mut cfg = config(None);
    cfg.link_secret = "s3cret".into();
    let imr = Imr::start(cfg).await;

    for bad in ["wrong!", "", "s3cre"] {
        let mut im = FakeIm::connect(imr.link).await;
        im.send_raw(&hello_frame(LINK_VERSION, bad)).await;
        let frames = im.closed().await;
        assert!(frames.is_empty(), "no HELLO for a wrong secret: {frames:?}");
    }
    assert_eq!(imr.stats().handshakes_refused, 3);

    let _ok = FakeIm::linked(&imr, "s3cret").await;
    imr.wait_links(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_must_be_hello() {
    let imr = Imr::start(config(None)).await;
    let mut im = FakeIm::connect(imr.link).await;
    im.subscribe(7, 1, true).await;
    assert!(im.closed().await.is_empty());

    // Not a Ferry HELLO (bad magic).
    let mut im = FakeIm::connect(imr.link).await;
    im.send(HELLO, Bytes::from_static(b"XXXX\0\x01\0\0")).await;
    assert!(im.closed().await.is_empty());
    assert_eq!(imr.stats().handshakes_refused, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_only_other_links_holding_the_receiver() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 10, true).await; // the origin holds the receiver too
    b.subscribe(7, 10, false).await; // offline subscription still routes
    c.subscribe(7, 11, true).await;
    c.subscribe(8, 10, true).await; // same uid, other app
    a.subscribe(7, 20, true).await; // marker target on a
    c.subscribe(7, 21, true).await; // marker target on c
    imr.wait_subscribed(7, 10).await;
    imr.wait_subscribed(7, 20).await;
    imr.wait_subscribed(7, 21).await;
    imr.wait_subscribed(8, 10).await;
    // (7, 10) shows up as soon as a's subscription is in; b's is in once a
    // later frame from b is (each link's frames apply in order).
    b.subscribe(7, 30, true).await;
    imr.wait_subscribed(7, 30).await;

    let rm = route(7, 10, "hello");
    a.publish(PUBLISH, &rm).await;
    let got = b.recv().await;
    assert_routed(&got, PUBLISH, &rm);

    // a's publish has been fully relayed (b got it). Markers sent now reach
    // a and c after anything the publish could have queued for them.
    let m_a = route(7, 20, "marker-a");
    let m_c = route(7, 21, "marker-c");
    b.publish(PUBLISH, &m_a).await;
    b.publish(PUBLISH, &m_c).await;
    assert_routed(&a.recv().await, PUBLISH, &m_a);
    assert_routed(&c.recv().await, PUBLISH, &m_c);

    // Nobody holds uid 99: dropped silently, the link stays up.
    a.publish(PUBLISH, &route(7, 99, "void")).await;
    let m = route(7, 20, "marker-2");
    b.publish(PUBLISH, &m).await;
    assert_routed(&a.recv().await, PUBLISH, &m);

    // The relay counts its copies after queueing them, so the last
    // receipt can come before the count: wait for it (an extra copy would
    // overshoot and time out).
    imr.wait_stats("frames relayed", |s| {
        s.frames_received == 5 && s.frames_relayed == 4
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_routed_frame_crosses() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    b.subscribe(7, 10, true).await;
    imr.wait_subscribed(7, 10).await;
    // Bigger than the legacy 32 KiB router limit.
    let rm = route(7, 10, &"x".repeat(200_000));
    a.publish(PUBLISH, &rm).await;
    assert_routed(&b.recv().await, PUBLISH, &rm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_route_to_subscribed_links_only() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    a.subscribe_room(7, 100).await;
    b.subscribe_room(7, 100).await;
    c.subscribe_room(8, 100).await; // other app
    c.subscribe(7, 21, true).await; // marker target, after the room frame
    b.subscribe(7, 22, true).await; // sync point for b's room frame
    imr.wait_subscribed(7, 21).await;
    imr.wait_subscribed(7, 22).await;

    let mut rm = route(7, 100, "room msg");
    rm.timestamp = 0;
    a.publish(PUBLISH_ROOM, &rm).await;
    assert_routed(&b.recv().await, PUBLISH_ROOM, &rm);
    let m = route(7, 21, "marker");
    b.publish(PUBLISH, &m).await;
    assert_routed(&c.recv().await, PUBLISH, &m);

    // After UNSUBSCRIBE_ROOM b no longer gets the room.
    b.send(
        UNSUBSCRIBE_ROOM,
        RoomSubscription {
            appid: 7,
            room_id: 100,
        }
        .encode(),
    )
    .await;
    b.subscribe(7, 23, true).await;
    imr.wait_subscribed(7, 23).await;
    a.publish(PUBLISH_ROOM, &rm).await;
    // Sent by a after the room message: reaches b after it, if it did.
    let m = route(7, 22, "marker-b");
    a.publish(PUBLISH, &m).await;
    assert_routed(&b.recv().await, PUBLISH, &m);
    // a (origin, and subscribed) never saw its own room messages.
    let m = route(7, 24, "marker-a");
    a.subscribe(7, 24, true).await;
    imr.wait_subscribed(7, 24).await;
    c.publish(PUBLISH, &m).await;
    assert_routed(&a.recv().await, PUBLISH, &m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_app_reaches_links_with_users_of_the_app() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    let mut d = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 1, true).await;
    b.subscribe(7, 2, false).await;
    c.subscribe(8, 3, true).await;
    c.subscribe(9, 4, true).await; // marker target on c
    imr.wait_subscribed(7, 1).await;
    imr.wait_subscribed(7, 2).await;
    imr.wait_subscribed(9, 4).await;

    let rm = route(7, 0, "broadcast");
    a.publish(PUBLISH_APP, &rm).await;
    assert_routed(&b.recv().await, PUBLISH_APP, &rm);
    let m = route(9, 4, "marker");
    d.publish(PUBLISH, &m).await;
    assert_routed(&c.recv().await, PUBLISH, &m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_group_reaches_only_links_holding_listed_members() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    let mut d = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 1, true).await; // the origin holds a member too
    b.subscribe(7, 1, true).await;
    b.subscribe(7, 2, false).await; // two members on b: still one copy
    c.subscribe(7, 3, false).await; // not online: still connected, gets it
    d.subscribe(7, 4, true).await; // not a member
    d.subscribe(8, 1, true).await; // member uid, other app
    for (app, uid) in [(7, 1), (7, 2), (7, 3), (7, 4), (8, 1)] {
        imr.wait_subscribed(app, uid).await;
    }
    // b's (7, 1) is in once a later frame of b's is.
    b.subscribe(7, 30, true).await;
    imr.wait_subscribed(7, 30).await;

    let g = GroupPublish {
        route: route(7, 555, "group"),
        members: vec![1, 2, 3, 99],
    };
    a.send(PUBLISH_GROUP, g.encode()).await;
    for im in [&mut b, &mut c] {
        let f = im.recv().await;
        assert_eq!(f.cmd, PUBLISH_GROUP);
        assert_eq!(f.body, g.encode(), "relayed byte for byte");
        assert_eq!(GroupPublish::decode(f.body).expect("decodes"), g);
    }
    // Markers sent after it: if b, c, a or d had got a (second) copy it
    // would arrive before these.
    for (im, uid) in [(&mut b, 30), (&mut c, 3), (&mut d, 4)] {
        let m = route(7, uid, "marker");
        a.publish(PUBLISH, &m).await;
        assert_routed(&im.recv().await, PUBLISH, &m);
    }
    let m = route(7, 1, "marker-a");
    d.publish(PUBLISH, &m).await;
    assert_routed(&a.recv().await, PUBLISH, &m);

    // The relay counts its copies after queueing them, so the last
    // receipt can come before the count: wait for it (an extra copy would
    // overshoot and time out).
    // 2 group copies + 3 markers + marker-a to a and b.
    imr.wait_stats("frames relayed", |s| {
        s.frames_received == 5 && s.frames_relayed == 7
    })
    .await;

    // A body whose count disagrees with its length closes the sender's link.
    let mut bad = g.encode().to_vec();
    bad.push(0);
    d.send(PUBLISH_GROUP, Bytes::from(bad)).await;
    d.closed().await;
    imr.wait_links(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frame_closes_only_that_link() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut bad = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 1, true).await;
    b.subscribe(7, 2, true).await;
    bad.subscribe(7, 3, true).await;
    imr.wait_subscribed(7, 1).await;
    imr.wait_subscribed(7, 2).await;
    imr.wait_subscribed(7, 3).await;

    // SUBSCRIBE body too short.
    bad.send(SUBSCRIBE, Bytes::from_static(&[0u8; 5])).await;
    assert!(bad.closed().await.is_empty());
    imr.wait_links(2).await;
    // Its table went with it.
    let (_, v) = imr.get_json("/online?appid=7&uid=3").await;
    assert_eq!(v["online"], false);

    // A RouteMessage whose inner length runs past the body.
    let mut bad2 = FakeIm::linked(&imr, "").await;
    let mut body = route(7, 2, "x").encode().to_vec();
    let n = body.len();
    body[48..52].copy_from_slice(&((n as u32) * 2).to_be_bytes());
    bad2.send(PUBLISH, Bytes::from(body)).await;
    assert!(bad2.closed().await.is_empty());

    // A header with a negative length.
    let mut bad3 = FakeIm::linked(&imr, "").await;
    bad3.send_raw(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, SUBSCRIBE, 0, 0, 0])
        .await;
    assert!(bad3.closed().await.is_empty());

    // A header announcing more than MAX_LINK_BODY.
    let mut bad4 = FakeIm::linked(&imr, "").await;
    bad4.send_raw(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, PUBLISH, 0, 0, 0])
        .await;
    assert!(bad4.closed().await.is_empty());

    imr.wait_links(2).await;
    assert_eq!(imr.stats().malformed_frames, 4);

    // The others are unaffected.
    let rm = route(7, 2, "still works");
    a.publish(PUBLISH, &rm).await;
    assert_routed(&b.recv().await, PUBLISH, &rm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_is_skipped_not_fatal() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    b.subscribe(7, 2, true).await;
    a.send(200, Bytes::from_static(b"future command")).await;
    imr.wait_subscribed(7, 2).await;
    let rm = route(7, 2, "after unknown");
    a.publish(PUBLISH, &rm).await;
    assert_routed(&b.recv().await, PUBLISH, &rm);
    assert_eq!(imr.stats().frames_ignored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_link_takes_its_table() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 1, true).await;
    imr.wait_subscribed(7, 1).await;
    let (_, v) = imr.get_json("/online?appid=7&uid=1").await;
    assert_eq!(v["online"], true);
    drop(a);
    imr.wait_links(0).await;
    let (_, v) = imr.get_json("/online?appid=7&uid=1").await;
    assert_eq!(v["online"], false);
    let (_, v) = imr.get_json("/all_online").await;
    assert_eq!(v, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_im_is_dropped_without_stalling_others() {
    let mut cfg = config(None);
    cfg.link_queue = 1024 * 1024;
    let imr = Imr::start(cfg).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut slow = FakeIm::linked(&imr, "").await; // never reads
    let mut fast = FakeIm::linked(&imr, "").await;
    slow.subscribe(7, 1, true).await;
    fast.subscribe(7, 1, true).await;
    imr.wait_subscribed(7, 1).await;
    fast.subscribe(7, 2, true).await; // sync point for fast's first frame
    slow.subscribe(7, 3, true).await; // sync point for slow's
    imr.wait_subscribed(7, 2).await;
    imr.wait_subscribed(7, 3).await;

    // Fast reads everything; the sender paces itself on fast's progress so
    // fast's queue stays well under the limit, while slow's only grows.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = received.clone();
    let reader = tokio::spawn(async move {
        loop {
            let f = fast.recv().await;
            assert_eq!(f.cmd, PUBLISH);
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let rm = route(7, 1, &"y".repeat(64 * 1024));
    let mut sent = 0;
    // Up to ~64 MiB towards `slow`: far more than socket buffers + queue.
    while imr.stats().link_drops == 0 && sent < 1024 {
        for _ in 0..4 {
            a.publish(PUBLISH, &rm).await;
            sent += 1;
        }
        eventually("fast keeps up", || async {
            received.load(std::sync::atomic::Ordering::Relaxed) >= sent
        })
        .await;
    }
    assert_eq!(
        imr.stats().link_drops,
        1,
        "slow link dropped after {sent} frames"
    );
    imr.wait_links(2).await;
    let (_, v) = imr.get_json("/online?appid=7&uid=3").await;
    assert_eq!(v["online"], false);
    // Fast is still linked and served.
    for _ in 0..4 {
        a.publish(PUBLISH, &rm).await;
        sent += 1;
    }
    eventually("fast still served", || async {
        received.load(std::sync::atomic::Ordering::Relaxed) >= sent
    })
    .await;
    assert!(!reader.is_finished(), "fast link still open");
    reader.abort();
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changed_reaches_every_other_link() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    imr.wait_links(3).await;
    let mut rm = route(7, 3110, "");
    rm.msg = Bytes::new();
    a.publish(GROUP_CHANGED, &rm).await;
    assert_routed(&b.recv().await, GROUP_CHANGED, &rm);
    assert_routed(&c.recv().await, GROUP_CHANGED, &rm);
    a.subscribe(7, 1, true).await;
    imr.wait_subscribed(7, 1).await;
    let m = route(7, 1, "marker");
    b.publish(PUBLISH, &m).await;
    assert_routed(&a.recv().await, PUBLISH, &m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_is_echoed_after_the_frames_before_it() {
    let imr = Imr::start(config(None)).await;
    let mut im = FakeIm::linked(&imr, "").await;
    for uid in 1..=1000 {
        im.subscribe(7, uid, true).await;
    }
    im.send(ferry_common::link::MARK, Bytes::new()).await;
    let f = im.recv().await;
    assert_eq!((f.cmd, f.body.len()), (ferry_common::link::MARK, 0));
    // Everything sent before the MARK is applied when the echo leaves.
    let (_, v) = imr.get_json("/health").await;
    assert_eq!(v["subscriptions"], 1000);
    imr.shutdown().await;
}

/// NODE_QUERY goes to every other link stamped with the asker's link id,
/// the asker learns how many links were asked, and each NODE_REPLY goes to
/// the asking link only, byte for byte; a reply for a link that is gone is
/// dropped, and a malformed query closes only its sender's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_queries_reach_every_other_link_and_replies_only_the_asker() {
    use ferry_common::link::{NODE_QUERY, NODE_REPLY, NodeAsk, NodeQuery, NodeReply};
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    let mut c = FakeIm::linked(&imr, "").await;
    imr.wait_links(3).await;

    let ask = NodeAsk::User { appid: 7, uid: 41 };
    let q = NodeQuery {
        origin: 0,
        request_id: 99,
        ask,
    };
    a.send(NODE_QUERY, q.encode()).await;
    let count = a.recv().await;
    assert_eq!(count.cmd, NODE_REPLY);
    let count = NodeReply::decode(count.body).expect("count decodes");
    assert_eq!((count.request_id, count.relayed), (99, 2));
    assert!(count.payload.is_empty());
    let asker = count.origin;
    assert_ne!(asker, 0, "stamped with a's link id");
    for im in [&mut b, &mut c] {
        let f = im.recv().await;
        assert_eq!(f.cmd, NODE_QUERY);
        let got = NodeQuery::decode(f.body).expect("query decodes");
        assert_eq!(got, NodeQuery { origin: asker, ..q });
    }

    let answer = NodeReply {
        origin: asker,
        request_id: 99,
        relayed: 0,
        payload: Bytes::from_static(br#"{"node":"b"}"#),
    }
    .encode()
    .expect("encode");
    b.send(NODE_REPLY, answer.clone()).await;
    let f = a.recv().await;
    assert_eq!((f.cmd, f.body.clone()), (NODE_REPLY, answer));
    // For a link id nobody has: dropped.
    let stray = NodeReply {
        origin: asker + 1000,
        request_id: 1,
        relayed: 0,
        payload: Bytes::from_static(b"{}"),
    };
    b.send(NODE_REPLY, stray.encode().expect("encode")).await;
    // c got neither reply: the next frame it sees is this marker from b.
    let mut rm = route(7, 3110, "");
    rm.msg = Bytes::new();
    b.publish(GROUP_CHANGED, &rm).await;
    assert_routed(&c.recv().await, GROUP_CHANGED, &rm);
    assert_routed(&a.recv().await, GROUP_CHANGED, &rm);

    // A query with an unknown kind closes that link only.
    let mut bad = q.encode().to_vec();
    bad[16] = 7;
    c.send(NODE_QUERY, Bytes::from(bad)).await;
    assert!(c.closed().await.is_empty());
    imr.wait_links(2).await;
    a.send(NODE_QUERY, q.encode()).await;
    let count = NodeReply::decode(a.recv().await.body).expect("count decodes");
    assert_eq!(count.relayed, 1);
}
