//! Operations endpoints of a real node: `/ready` reflects the store and the
//! imr links, `/metrics` counts what happened (Prometheus text format).

mod support;
mod wire;

use std::net::SocketAddr;
use support::{Im, Redis, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::{Raw, WAIT};

/// GET returning (status line, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_metrics_on_a_single_node() {
    let im = Im::start(&[]);
    let (status, body) = get(im.http, "/ready").await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("\"ready\""), "{body}");

    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    a.im(1, 2, 1, "counted").await;
    let (_, m) = get(im.http, "/metrics").await;
    for needle in [
        "ferry_connections{transport=\"tcp\"} 1",
        "ferry_authenticated_users 1",
        "ferry_frames_in_total{cmd=\"im\"} 1",
        "ferry_frames_out_total{cmd=\"ack\"} 1",
        "ferry_store_append_seconds_count 1",
        "ferry_store_append_entries_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(m.contains(needle), "missing {needle}:\n{m}");
    }
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_an_imr_link_is_down() {
    let redis = Redis::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let im = Im::start(&["--store", &redis.url(), "--imr", &dead]);
    let (status, body) = get(im.http, "/ready").await;
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("\"up\":false"), "{body}");
    let (_, m) = get(im.http, "/metrics").await;
    assert!(
        m.contains(&format!("ferry_imr_link_up{{imr=\"{dead}\"}} 0")),
        "{m}"
    );
}
