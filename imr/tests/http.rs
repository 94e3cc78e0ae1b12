//! The imr HTTP API, and `server::run` as the binary uses it.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_and_all_online() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    let mut b = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 3, false).await;
    a.subscribe(7, 1, true).await;
    b.subscribe(7, 3, true).await;
    b.subscribe(8, 2, false).await;
    imr.wait_subscribed(7, 1).await;
    imr.wait_subscribed(8, 2).await;
    imr.wait_subscribed(7, 3).await;
    eventually("b's (7,3) online", || async {
        imr.get_json("/online?appid=7&uid=3").await.1["online"] == true
    })
    .await;

    assert_eq!(
        imr.get_json("/online?appid=7&uid=1").await,
        (200, json!({"online": true}))
    );
    assert_eq!(
        imr.get_json("/online?appid=8&uid=2").await,
        (200, json!({"online": false}))
    );
    assert_eq!(
        imr.get_json("/online?appid=9&uid=1").await,
        (200, json!({"online": false}))
    );
    assert_eq!(
        imr.get_json("/all_online").await,
        (
            200,
            json!([{"appid": 7, "users": [1, 3]}, {"appid": 8, "users": [2]}])
        )
    );

    assert_eq!(
        imr.get_json("/subscribers?appid=7&uid=3").await,
        (200, json!({"links": 2, "online": 1}))
    );
    assert_eq!(
        imr.get_json("/subscribers?appid=7&room=5").await,
        (200, json!({"links": 0}))
    );

    // b's user 3 goes offline there: a still has it subscribed, not online.
    b.subscribe(7, 3, false).await;
    eventually("(7,3) offline", || async {
        imr.get_json("/online?appid=7&uid=3").await.1["online"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_json() {
    let imr = Imr::start(config(None)).await;
    for q in [
        "/online",
        "/online?appid=7",
        "/online?uid=1",
        "/online?appid=x&uid=1",
        "/online?appid=7&uid=99999999999999999999",
    ] {
        let (status, v) = imr.get_json(q).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(v["meta"]["code"], 400, "{q}");
        assert!(
            v["meta"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{q}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats() {
    let redis = Redis::start();
    let imr = Imr::start(config(Some(&redis.url()))).await;
    let _a = FakeIm::linked(&imr, "").await;
    imr.wait_links(1).await;
    eventually("redis up", || async {
        imr.get_json("/health").await.1["redis"] == "up"
    })
    .await;
    let (status, body) = imr.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"status":"ok","links":1,"redis":"up","push_buffered":0,"subscriptions":0}"#
    );
    let (status, v) = imr.get_json("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(v["links"], 1);
    assert_eq!(v["links_total"], 1);
    assert_eq!(v["link_drops"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_until_shutdown() {
    let mut cfg = config(None);
    cfg.listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    cfg.http_listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let http = cfg.http_listen;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ferry_imr::server::run(cfg, async move {
        let _ = rx.await;
    }));
    eventually("http up", || async {
        tokio::net::TcpStream::connect(http).await.is_ok()
    })
    .await;
    let (status, v) = http_get(http, "/health").await;
    assert_eq!(status, 200, "{v}");
    tx.send(()).expect("still running");
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_failure_is_a_start_error() {
    let imr = Imr::start(config(None)).await;
    let mut cfg = config(None);
    cfg.listen = imr.link;
    let err = ferry_imr::server::run(cfg, std::future::pending())
        .await
        .expect_err("port taken");
    assert!(err.to_string().contains("--listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_prometheus_format() {
    let imr = Imr::start(config(None)).await;
    let mut a = FakeIm::linked(&imr, "").await;
    a.subscribe(7, 1, true).await;
    imr.wait_subscribed(7, 1).await;
    let (status, body) = imr.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE ferry_imr_links gauge\nferry_imr_links 1\n"),
        "{body}"
    );
    assert!(body.contains("ferry_imr_links_total 1\n"), "{body}");
    assert!(body.contains("ferry_imr_frames_received_total "), "{body}");
}
