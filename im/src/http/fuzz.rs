//! Mutation fuzzing of the HTTP API's input handling: query parameters
//! (`Params`), JSON bodies, and whole raw HTTP/1.1 requests sent to a live
//! in-process API on a socket. Engine and case count (`FERRY_FUZZ_CASES`)
//! are shared with `common/tests/fuzz_decoders.rs`.
//!
//! A panic in a handler would only drop that connection, so handler threads
//! carry a name and a panic hook counts panics on them: the count must stay 0.

use ferry_testkit::fuzz as fuzz_engine;

use super::params::{Params, parse_json};
use super::post::{CustomerMessage, SystemMessage};
use super::*;
use crate::auth::{Authenticator, JwtAuth};
use crate::config::ImOptions;
use crate::store::{FjallOptions, FjallStore};
use axum::http::Uri;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMES: [&str; 10] = [
    "appid", "uid", "sender", "receiver", "room", "limit", "last_id", "sync_key", "content", "x",
];

fn query_corpus() -> Vec<Vec<u8>> {
    [
        "appid=7&uid=1",
        "appid=7&uid=-3&uid=9&limit=10",
        "appid=9223372036854775807&sender=%2B5&receiver=-9223372036854775808",
        "last_id=&sync_key=1.5&appid=%ZZ",
        "a=b=c&&=&appid",
        "room=1&appid=7&limit=0",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn check_params(q: &[u8]) {
    let Ok(q) = std::str::from_utf8(q) else {
        return;
    };
    let Ok(uri) = format!("/load_latest_message?{q}").parse::<Uri>() else {
        return;
    };
    if let Ok(p) = Params::from_uri(&uri) {
        for n in NAMES {
            match p.opt_i64(n) {
                Ok(Some(v)) => assert_eq!(p.i64(n), Ok(v)),
                Ok(None) => assert!(p.i64(n).is_err()),
                Err(e) => assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
        }
    }
}

fn json_corpus() -> Vec<Vec<u8>> {
    [
        &br#"{"appid":7,"content":"hi","receivers":[1,2,3]}"#[..],
        br#"{"sender_appid":7,"sender":1,"receiver_appid":8,"receiver":2,"content":"x"}"#,
        br#"{"appid":-9223372036854775808,"content":"\u00e9\ud83d\ude00","receivers":[]}"#,
        br#"[1,2,{"a":[[[[]]]]}]"#,
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

fn check_json(b: &[u8]) {
    for r in [
        parse_json::<SystemMessage>(b).err(),
        parse_json::<CustomerMessage>(b).err(),
        parse_json::<serde_json::Value>(b).err(),
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.message.starts_with("invalid json format"),
            "{}",
            r.message
        );
    }
}

#[test]
fn fuzz_query_params() {
    fuzz_engine::run("http_params", &query_corpus(), check_params);
}

#[test]
fn fuzz_json_bodies() {
    fuzz_engine::run("http_json", &json_corpus(), check_json);
}

static HANDLER_PANICS: AtomicU64 = AtomicU64::new(0);
const THREAD: &str = "http-fuzz-worker";

fn request_corpus() -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for path in [
        "/load_latest_message?appid=7&uid=1&limit=5",
        "/load_history_message?appid=7&uid=1&last_id=3",
        "/get_offline_count?appid=7&uid=1",
        "/summary?appid=7",
        "/health",
    ] {
        c.push(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes());
    }
    let posts: [(&str, &[u8]); 5] = [
        ("/post_peer_message?appid=7&sender=1&receiver=2", b"hello"),
        (
            "/post_system_message",
            br#"{"appid":7,"content":"s","receivers":[1]}"#,
        ),
        ("/post_notification?appid=7&uid=1", b"n"),
        ("/post_room_message?appid=7&uid=1&room=3", b"r"),
        (
            "/post_customer_message",
            br#"{"sender_appid":7,"sender":1,"receiver_appid":7,"receiver":2,"content":"c"}"#,
        ),
    ];
    for (path, body) in posts {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        c.push(r);
    }
    c
}

/// Sends one raw request; returns the status code if a response came.
async fn send_raw(addr: std::net::SocketAddr, req: &[u8]) -> Option<u16> {
    send(addr, req, true).await
}

/// Sends `req` and returns the response status. With `half_close` the write
/// side is shut after the request (so a truncated request ends), which lets
/// the server drop the connection without answering: only the mutated
/// requests use it, not the final well-formed probe.
async fn send(addr: std::net::SocketAddr, req: &[u8], half_close: bool) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(req).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer and no close within 10 s");
    let head = std::str::from_utf8(out.get(..12)?).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn fuzz_raw_requests_against_live_api() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(THREAD) {
            HANDLER_PANICS.fetch_add(1, Ordering::Relaxed);
        }
        prev(info);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREAD)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = ImOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .expect("config");
        let store = Arc::new(FjallStore::open(dir.path(), FjallOptions::default()).expect("store"));
        let groups = Arc::new(crate::store::FjallGroupStore::open(dir.path()).expect("groups"));
        let node = Arc::new(Node::new(
            cfg,
            store,
            groups,
            Authenticator::Jwt(JwtAuth::new(vec![7; 32])),
            None,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(node, listener));
        // Each request is a connection: a twentieth of the pure cases.
        let n = (fuzz_engine::cases() / 20).max(200);
        let corpus = request_corpus();
        let mut rng = fuzz_engine::Rng::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        );
        let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
        for _ in 0..n {
            let req = fuzz_engine::mutate(&mut rng, &corpus);
            if let Some(s) = send_raw(addr, &req).await {
                *statuses.entry(s).or_default() += 1;
                assert_ne!(s, 500, "500 for {:?}", String::from_utf8_lossy(&req));
            }
        }
        // Still serving after all of that.
        assert_eq!(send(addr, &corpus[4], false).await, Some(200));
        eprintln!("fuzz http_raw: {n} requests, statuses {statuses:?}");
    });
    assert_eq!(
        HANDLER_PANICS.load(Ordering::Relaxed),
        0,
        "a handler panicked"
    );
}
