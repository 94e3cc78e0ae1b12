//! Offline push against a real redis-server: exact JSON per queue, online
//! receivers skipped, buffering while Redis is down, bounded drops.

mod common;

use bytes::Bytes;
use common::*;
use ferry_common::link::{BatchPush, PUSH};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::{Frame, Message};

fn im(sender: i64, receiver: i64, content: &str) -> Im {
    Im {
        sender,
        receiver,
        timestamp: 1_700_000_000,
        msgid: 5,
        content: Bytes::copy_from_slice(content.as_bytes()),
    }
}

fn system(content: &str) -> Message {
    Message::System(Bytes::copy_from_slice(content.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_receivers_get_exact_entries_online_ones_none() {
    let redis = Redis::start();
    let imr = Imr::start(config(Some(&redis.url()))).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    b.subscribe(7, 10, true).await; // online on another im
    b.subscribe(7, 11, false).await; // subscribed but not online
    a.subscribe(7, 13, true).await; // online on the requesting im itself
    b.subscribe(8, 12, true).await; // online, but in another app
    imr.wait_subscribed(7, 10).await;
    imr.wait_subscribed(7, 11).await;
    imr.wait_subscribed(7, 13).await;
    imr.wait_subscribed(8, 12).await;

    a.push(7, &[10], &Message::Im(im(1, 10, "{\"text\":\"to 10\"}")))
        .await;
    a.push(7, &[13], &Message::Im(im(1, 13, "to 13"))).await;
    a.push(7, &[11], &Message::Im(im(1, 11, "{\"text\":\"to 11\"}")))
        .await;
    a.push(7, &[12], &Message::Im(im(1, 12, "<b>&"))).await;

    // PUSH frames of one link are handled in order and the writer is FIFO:
    // had the online ones produced entries, they would come first.
    let v = redis.wait_list("push_queue", 2).await;
    assert_eq!(
        v,
        vec![
            r#"{"appid":7,"content":"{\"text\":\"to 11\"}","receiver":11,"sender":1}"#,
            r#"{"appid":7,"content":"\u003cb\u003e\u0026","receiver":12,"sender":1}"#,
        ]
    );
    eventually("push_written", || async { imr.stats().push_written == 2 }).await;
    let s = imr.stats();
    assert_eq!(
        (s.push_requests, s.push_dropped, s.push_buffered),
        (4, 0, 0)
    );
    let (_, h) = imr.get_json("/health").await;
    assert_eq!(h["redis"], "up");
    assert_eq!(h["push_buffered"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_system_and_customer_queues() {
    let redis = Redis::start();
    let imr = Imr::start(config(Some(&redis.url()))).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    b.subscribe(7, 10, true).await;
    imr.wait_subscribed(7, 10).await;

    a.push(7, &[10, 11, 12], &Message::GroupIm(im(1, 900, "group hi")))
        .await;
    a.push(7, &[10, 11, 12], &system("sys")).await;
    let c = CustomerV2 {
        sender_appid: 7,
        sender: 1,
        receiver_appid: 9,
        receiver: 44,
        timestamp: 1,
        content: Bytes::from_static(b"help"),
    };
    a.push(9, &[44], &Message::CustomerV2(c)).await;
    // Everything is offline in this group.
    a.push(7, &[20, 21], &Message::GroupIm(im(2, 901, "g2")))
        .await;

    assert_eq!(
        redis.wait_list("group_push_queue", 2).await,
        vec![
            r#"{"appid":7,"content":"group hi","group_id":900,"receivers":[11,12],"sender":1}"#,
            r#"{"appid":7,"content":"g2","group_id":901,"receivers":[20,21],"sender":2}"#,
        ]
    );
    assert_eq!(
        redis.wait_list("system_push_queue", 2).await,
        vec![
            r#"{"appid":7,"content":"sys","receiver":11}"#,
            r#"{"appid":7,"content":"sys","receiver":12}"#,
        ]
    );
    assert_eq!(
        redis.wait_list("customer_push_queue_v2", 1).await,
        vec![
            r#"{"appid":9,"content":"help","receiver":44,"receiver_appid":9,"sender":1,"sender_appid":7}"#
        ]
    );
    assert_eq!(redis.llen("push_queue").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_embedded_frame_is_counted_link_stays_up() {
    let redis = Redis::start();
    let imr = Imr::start(config(Some(&redis.url()))).await;
    let mut a = FakeIm::linked(&imr, "").await;
    // Embedded IM body shorter than its version requires.
    let bad = BatchPush {
        appid: 7,
        receivers: vec![5],
        msg: Frame::new(4, 2, 0, 0, Bytes::from_static(b"short")).to_bytes(),
    };
    a.send(PUSH, bad.encode()).await;
    // A command without an offline push.
    a.push(7, &[5], &Message::Sync(3)).await;
    a.push(7, &[5], &Message::Im(im(1, 5, "ok"))).await;
    redis.wait_list("push_queue", 1).await;
    assert_eq!(imr.stats().push_invalid, 2);
    assert_eq!(imr.stats().links, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_wait_for_redis_started_later() {
    let port = free_port();
    let imr = Imr::start(config(Some(&format!("redis://127.0.0.1:{port}")))).await;
    let mut a = FakeIm::linked(&imr, "").await;
    a.push(7, &[5], &Message::Im(im(1, 5, "while down"))).await;
    eventually("entry buffered", || async {
        imr.stats().push_buffered == 1
    })
    .await;
    eventually("redis reported down", || async {
        imr.get_json("/health").await.1["redis"] == "down"
    })
    .await;
    let (_, h) = imr.get_json("/health").await;
    assert_eq!(h["push_buffered"], 1);

    let redis = Redis::start_on(port);
    assert_eq!(
        redis.wait_list("push_queue", 1).await,
        vec![r#"{"appid":7,"content":"while down","receiver":5,"sender":1}"#]
    );
    eventually("redis reported up", || async {
        imr.get_json("/health").await.1["redis"] == "up"
    })
    .await;
    let s = imr.stats();
    assert_eq!((s.push_written, s.push_buffered, s.push_dropped), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_redis_restart() {
    let mut redis = Redis::start();
    let imr = Imr::start(config(Some(&redis.url()))).await;
    let mut a = FakeIm::linked(&imr, "").await;
    a.push(7, &[5], &Message::Im(im(1, 5, "before"))).await;
    redis.wait_list("push_queue", 1).await;

    redis.stop();
    a.push(7, &[5], &Message::Im(im(1, 5, "during 1"))).await;
    a.push(7, &[6], &system("during 2")).await;
    eventually("both buffered", || async { imr.stats().push_buffered == 2 }).await;

    redis.restart(); // same port, empty (no persistence)
    assert_eq!(
        redis.wait_list("push_queue", 1).await,
        vec![r#"{"appid":7,"content":"during 1","receiver":5,"sender":1}"#]
    );
    assert_eq!(
        redis.wait_list("system_push_queue", 1).await,
        vec![r#"{"appid":7,"content":"during 2","receiver":6}"#]
    );
    eventually("all written", || async { imr.stats().push_written == 3 }).await;
    assert_eq!(imr.stats().push_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_drops_are_counted_never_silent() {
    let port = free_port();
    let mut cfg = config(Some(&format!("redis://127.0.0.1:{port}")));
    cfg.push_buffer = 2;
    let imr = Imr::start(cfg).await;
    let mut a = FakeIm::linked(&imr, "").await;
    // 1100 offline receivers → 1100 system entries; with Redis down at most
    // one batch (1000) plus the buffer (2) can be held.
    let receivers: Vec<i64> = (1..=1100).collect();
    a.push(7, &receivers, &system("flood")).await;
    eventually("producer gave up and counted drops", || async {
        let s = imr.stats();
        s.push_dropped > 0 && s.push_dropped + s.push_buffered == 1100
    })
    .await;
    let held = imr.stats().push_buffered;
    assert!(held <= 1002, "held {held}");
    // The link is still up and Redis gets what was held.
    let redis = Redis::start_on(port);
    redis.wait_list("system_push_queue", held as usize).await;
    eventually("held entries written", || async {
        imr.stats().push_written == held
    })
    .await;
    assert_eq!(imr.stats().links, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_disabled_ignores_requests() {
    let redis = Redis::start();
    let mut cfg = config(Some(&redis.url()));
    cfg.push_disabled = true;
    let imr = Imr::start(cfg).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    a.push(7, &[5], &Message::Im(im(1, 5, "x"))).await;
    b.subscribe(7, 1, true).await;
    a.subscribe(7, 2, true).await; // after the PUSH on the same link
    imr.wait_subscribed(7, 2).await;
    assert_eq!(imr.stats().push_requests, 1);
    assert_eq!(imr.stats().push_buffered, 0);
    assert_eq!(redis.llen("push_queue").await, 0);
    let (_, h) = imr.get_json("/health").await;
    assert_eq!(h["redis"], "disabled");
    drop(b);
}
