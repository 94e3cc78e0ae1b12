//! Server hooks and presence with real processes: `ferry im` (and, for the
//! cluster cases, `ferry imr` + `redis-server`) against a real HTTP hook
//! server running in this test process (tests/support/hook.rs).

mod support;

use ferry_common::client::{Client, ClientOptions, Event};
use ferry_common::protocol::Message;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::hook::{HookServer, Rule, allow_all};
use support::{APPID, Im as ImNode, Imr, Redis, cluster_im, http_get, token};

const HOOK_SECRET: &str = "hook-test-secret";
const WAIT: Duration = Duration::from_secs(15);
const IOS: u8 = 1;
const WEB: u8 = 3;

async fn login(addr: SocketAddr, uid: i64, platform: u8, device: &str) -> Client {
    let c = Client::connect_with(addr, ClientOptions::default())
        .await
        .expect("connect");
    c.auth(&token(uid), platform, device, 2)
        .await
        .expect("auth");
    c
}

/// Waits for the IM with this content; panics on any IM with `forbidden`.
async fn expect_content(c: &mut Client, content: &str, forbidden: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .recv_timeout(left)
            .await
            .unwrap_or_else(|e| panic!("waiting for {content:?}: {e}"));
        if let Event::Message {
            msg: Message::Im(m),
            ..
        }
        | Event::Synced {
            msg: Message::Im(m),
            ..
        } = ev
        {
            let got = String::from_utf8_lossy(&m.content).to_string();
            assert!(!forbidden.contains(&got.as_str()), "{got:?} was delivered");
            if got == content {
                return;
            }
        }
    }
}

/// Contents stored in the user's queue (`/load_latest_message` order: oldest first).
fn stored(node: &ImNode, uid: i64) -> Vec<String> {
    let body = http_get(
        node.http,
        &format!("/load_latest_message?appid={APPID}&uid={uid}&limit=1000"),
    );
    let v: Value = serde_json::from_str(&body).expect("json");
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect()
}

fn metric(node: &ImNode, name: &str) -> u64 {
    http_get(node.http, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// allow / reject (with the status the client sees) / replace, decided by
/// the content; every request carries a valid signature.
fn moderation() -> Rule {
    Arc::new(|v: &Value| {
        let content = v["content"].as_str().unwrap_or("");
        let answer = if content.starts_with("spam") {
            r#"{"action":"reject","status":90}"#
        } else if content.starts_with("rude") {
            r#"{"action":"replace","content":"[removed]"}"#
        } else {
            r#"{"action":"allow"}"#
        };
        (Duration::ZERO, answer.to_string())
    })
}

fn hook_flags<'a>(hook: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--hook-url", hook, "--hook-secret", HOOK_SECRET];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_send_allows_rejects_and_replaces() {
    let hook = HookServer::start(HOOK_SECRET, moderation()).await;
    let url = hook.url();
    let node = ImNode::start(&hook_flags(
        &url,
        &["--hook-before-send", "im,group_im,room_im"],
    ));
    let c1 = login(node.tcp, 1, IOS, "d1").await;
    let mut c2 = login(node.tcp, 2, IOS, "d2").await;

    let ack = c1.send_im(2, "spam offer", 1).await.expect("ack");
    assert_eq!(ack.status, 90, "the hook's status reaches the client");
    let ack = c1.send_im(2, "rude words", 2).await.expect("ack");
    assert!(ack.is_ok(), "{ack:?}");
    let ack = c1.send_im(2, "hello", 3).await.expect("ack");
    assert!(ack.is_ok(), "{ack:?}");
    expect_content(&mut c2, "[removed]", &["spam offer", "rude words"]).await;
    expect_content(&mut c2, "hello", &["spam offer", "rude words"]).await;
    let node_ref = &node;
    let queue = tokio::task::block_in_place(|| stored(node_ref, 2));
    assert_eq!(queue, vec!["[removed]".to_string(), "hello".to_string()]);

    // Room messages ask too; a rejected one reaches nobody.
    c1.enter_room(5).expect("enter");
    c2.enter_room(5).expect("enter");
    let ack = c1.send_room_im(5, "spam room").await.expect("room ack");
    assert_eq!(ack.status, 90);

    hook.seen(|s| {
        assert_eq!(s.bad_signatures, 0);
        assert_eq!(s.before.len(), 4);
        let first = &s.before[0];
        assert_eq!(first["type"], "before_send");
        assert_eq!(first["kind"], "im");
        assert_eq!(
            (
                first["appid"].as_i64(),
                first["sender"].as_i64(),
                first["receiver"].as_i64()
            ),
            (Some(APPID), Some(1), Some(2))
        );
        assert_eq!(s.before[3]["kind"], "room_im");
        // One sender's sequential calls reuse one pooled connection.
        assert_eq!(s.peers.len(), 1, "keep-alive: {:?}", s.peers);
    });
    let n = &node;
    tokio::task::block_in_place(|| {
        assert_eq!(metric(n, "ferry_hook_before_send_rejected_total"), 2);
        assert_eq!(metric(n, "ferry_hook_before_send_replaced_total"), 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_is_refused_by_the_hook_and_the_policy_applies() {
    // The hook checks with another secret: it answers 401, the im counts a
    // failure and --hook-fail closed refuses the message (status 71).
    let hook = HookServer::start("another secret", allow_all()).await;
    let url = hook.url();
    let node = ImNode::start(&hook_flags(
        &url,
        &["--hook-before-send", "im", "--hook-fail", "closed"],
    ));
    let c1 = login(node.tcp, 1, IOS, "d1").await;
    let ack = c1.send_im(2, "hi", 1).await.expect("ack");
    assert_eq!(ack.status, 71);
    hook.seen(|s| assert_eq!((s.bad_signatures, s.good_signatures), (1, 0)));
    let n = &node;
    tokio::task::block_in_place(|| {
        assert_eq!(metric(n, "ferry_hook_before_send_failures_total"), 1);
        assert!(stored(n, 2).is_empty());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_follow_the_policy_and_block_only_the_sender() {
    let slow: Rule = Arc::new(|_| (Duration::from_secs(4), r#"{"action":"allow"}"#.into()));
    let hook = HookServer::start(HOOK_SECRET, slow).await;
    let url = hook.url();
    let timeout = ["--hook-before-send", "im", "--hook-timeout-ms", "1500"];
    let open = ImNode::start(&hook_flags(&url, &timeout));
    let mut closed_flags = timeout.to_vec();
    closed_flags.extend(["--hook-fail", "closed"]);
    let closed = ImNode::start(&hook_flags(&url, &closed_flags));

    let c1 = login(open.tcp, 1, IOS, "d1").await;
    let other = login(open.tcp, 3, IOS, "d3").await;
    let started = Instant::now();
    let send = tokio::spawn(async move { c1.send_im(2, "open", 1).await });
    // While the sender waits for the hook, another connection is served.
    hook.wait("the before-send request", |s| s.before.len() == 1)
        .await;
    other.ping().await.expect("ping");
    assert!(
        !send.is_finished(),
        "the ping was answered only after the pending hook call"
    );
    let ack = send.await.expect("join").expect("ack");
    assert!(ack.is_ok(), "fail open delivers: {ack:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "the timeout decided, after {took:?}"
    );

    let c1 = login(closed.tcp, 1, IOS, "d1").await;
    let ack = c1.send_im(2, "closed", 1).await.expect("ack");
    assert_eq!(ack.status, 71, "fail closed refuses");

    let (o, c) = (&open, &closed);
    tokio::task::block_in_place(|| {
        assert_eq!(stored(o, 2), vec!["open".to_string()]);
        assert!(stored(c, 2).is_empty());
        assert_eq!(metric(o, "ferry_hook_before_send_failures_total"), 1);
        assert_eq!(metric(c, "ferry_hook_before_send_failures_total"), 1);
    });
}

fn after_send_msgids(events: &[Value], receiver: i64) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["type"] == "after_send" && e["receiver"].as_i64() == Some(receiver))
        .filter_map(|e| e["msgid"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_batched_and_retried_after_the_hook_restarts() {
    let mut hook = HookServer::start(HOOK_SECRET, allow_all()).await;
    let url = hook.url();
    let node = ImNode::start(&hook_flags(&url, &["--hook-events", "after_send,group"]));
    let c1 = login(node.tcp, 1, IOS, "d1").await;
    for i in 1..=3 {
        assert!(
            c1.send_im(2, format!("m{i}"), i)
                .await
                .expect("ack")
                .is_ok()
        );
    }
    hook.wait("3 after_send events", |s| {
        after_send_msgids(&s.events(), 2).len() == 3
    })
    .await;
    let e = hook.seen(|s| s.events()[0].clone());
    assert_eq!(e["kind"], "im");
    assert_eq!(e["sender"].as_i64(), Some(1));
    assert_eq!(e["queue"]["uid"].as_i64(), Some(2));
    assert!(e["id"].as_str().is_some_and(|id| !id.is_empty()));

    // The hook goes away; messaging goes on; the events wait and retry.
    hook.stop().await;
    for i in 4..=30 {
        assert!(
            c1.send_im(2, format!("m{i}"), i)
                .await
                .expect("ack")
                .is_ok()
        );
    }
    let n = &node;
    tokio::task::block_in_place(|| {
        support::wait_until("a failed delivery", || {
            metric(n, "ferry_hook_delivery_failures_total") > 0
        })
    });
    let batches_before = hook.seen(|s| s.batches.len());
    hook.resume().await;
    hook.wait("all 30 after_send events", |s| {
        let mut ids = after_send_msgids(&s.events(), 2);
        ids.sort_unstable();
        ids.dedup();
        ids == (1..=30).collect::<Vec<i64>>()
    })
    .await;
    hook.seen(|s| {
        let later = &s.batches[batches_before..];
        assert!(
            later.iter().any(|b| b.len() > 1),
            "events that waited arrive batched: {:?}",
            later.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(s.bad_signatures, 0);
    });

    // Group changes are events too.
    let (status, _) = tokio::task::block_in_place(|| {
        support::http_post(
            n.http,
            "/groups",
            br#"{"appid":7,"group_id":77,"members":[1,2]}"#,
        )
    });
    assert_eq!(status, 200);
    hook.wait("group created event", |s| {
        s.events().iter().any(|e| {
            e["type"] == "group"
                && e["action"] == "created"
                && e["group_id"].as_i64() == Some(77)
                && e["members"] == serde_json::json!([1, 2])
        })
    })
    .await;
}

/// (online flags of the presence events of `uid`, in delivery order).
fn presence_of(events: &[Value], uid: i64) -> Vec<bool> {
    events
        .iter()
        .filter(|e| e["type"] == "presence" && e["uid"].as_i64() == Some(uid))
        .filter_map(|e| e["online"].as_bool())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_wait_out_the_grace_period() {
    let hook = HookServer::start(HOOK_SECRET, allow_all()).await;
    let url = hook.url();
    let node = ImNode::start(&hook_flags(
        &url,
        &["--hook-events", "presence", "--presence-grace", "1"],
    ));
    let c = login(node.tcp, 1, IOS, "d1").await;
    hook.wait("online", |s| presence_of(&s.events(), 1) == [true])
        .await;
    // A reconnect well within the grace period is no change.
    c.close();
    drop(c);
    let gone = Instant::now();
    let c = login(node.tcp, 1, IOS, "d1").await;
    assert!(gone.elapsed() < Duration::from_millis(900));
    c.close();
    drop(c);
    let left = Instant::now();
    hook.wait("offline", |s| presence_of(&s.events(), 1) == [true, false])
        .await;
    assert!(
        left.elapsed() >= Duration::from_secs(1),
        "offline only after the grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_query_on_a_single_node() {
    let node = ImNode::start(&["--node-name", "solo"]);
    let _a = login(node.tcp, 1, IOS, "phone").await;
    let _b = login(node.tcp, 1, WEB, "browser").await;
    let _c = login(node.tcp, 2, WEB, "").await;
    let n = &node;
    let (online, one) = tokio::task::block_in_place(|| {
        (
            http_get(n.http, &format!("/users/online?appid={APPID}&uids=1,2,3")),
            http_get(n.http, &format!("/users/1/presence?appid={APPID}")),
        )
    });
    let v: Value = serde_json::from_str(&online).expect("json");
    assert_eq!(
        v["data"],
        serde_json::json!([
            {"uid":1,"online":true,"connections":2,"platforms":{"ios":1,"web":1}},
            {"uid":2,"online":true,"connections":1,"platforms":{"web":1}},
            {"uid":3,"online":false,"connections":0,"platforms":{}},
        ])
    );
    let v: Value = serde_json::from_str(&one).expect("json");
    let mut devices: Vec<(String, String, String, String)> = v["data"]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            assert!(d["since"].as_i64().unwrap_or(0) > 1_600_000_000);
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (s("platform"), s("device_id"), s("node"), s("transport"))
        })
        .collect();
    devices.sort();
    assert_eq!(
        devices,
        vec![
            ("ios".into(), "phone".into(), "solo".into(), "tcp".into()),
            ("web".into(), "browser".into(), "solo".into(), "tcp".into()),
        ]
    );
    let bad = tokio::task::block_in_place(|| {
        support::http_post(
            n.http,
            &format!("/users/online?appid={APPID}&uids=1,x"),
            b"",
        )
    });
    assert_eq!(bad.0, 400, "{}", bad.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_two_nodes_and_two_imrs() {
    let redis = Redis::start();
    let imr0 = Imr::start(None, &[]);
    let imr1 = Imr::start(None, &[]);
    let hook = HookServer::start(HOOK_SECRET, allow_all()).await;
    let url = hook.url();
    let flags = |name: &'static str| {
        let mut v = hook_flags(
            &url,
            &["--hook-events", "presence", "--presence-grace", "1"],
        );
        v.extend(["--node-name", name]);
        v
    };
    let a = cluster_im(&[&imr0, &imr1], &redis.url(), &flags("node-a"));
    let b = cluster_im(&[&imr0, &imr1], &redis.url(), &flags("node-b"));
    // uid 1 homed on imr1, uid 2 on imr0.
    let _a1 = login(a.tcp, 1, IOS, "phone").await;
    let _b1 = login(b.tcp, 1, WEB, "browser").await;
    let _b2 = login(b.tcp, 2, IOS, "phone2").await;
    tokio::task::block_in_place(|| {
        imr1.wait_subscribers(APPID, 1, 2);
        imr0.wait_subscribers(APPID, 2, 1);
    });
    let node_a = &a;
    let v: Value = tokio::task::block_in_place(|| {
        serde_json::from_str(&http_get(
            node_a.http,
            &format!("/users/online?appid={APPID}&uids=1,2,3"),
        ))
        .expect("json")
    });
    assert_eq!(
        v["data"],
        serde_json::json!([
            {"uid":1,"online":true,"connections":2,"platforms":{"ios":1,"web":1}},
            {"uid":2,"online":true,"connections":1,"platforms":{"ios":1}},
            {"uid":3,"online":false,"connections":0,"platforms":{}},
        ])
    );
    let v: Value = tokio::task::block_in_place(|| {
        serde_json::from_str(&http_get(
            node_a.http,
            &format!("/users/2/presence?appid={APPID}"),
        ))
        .expect("json")
    });
    let d = &v["data"]["devices"][0];
    assert_eq!(
        (d["node"].as_str(), d["device_id"].as_str()),
        (Some("node-b"), Some("phone2"))
    );
    assert_eq!(d["transport"], "tcp");

    // uid 5 moves from node A to node B within the grace period: no offline.
    let c = login(a.tcp, 5, IOS, "p5").await;
    hook.wait("uid 5 online", |s| presence_of(&s.events(), 5) == [true])
        .await;
    c.close();
    drop(c);
    let c = login(b.tcp, 5, IOS, "p5").await;
    // Past node A's grace period (it finds uid 5 on node B and stays quiet),
    // then uid 5 leaves for good: one offline, after every online.
    let b_ref = &b;
    tokio::task::block_in_place(|| {
        support::wait_until("node B sees uid 5", || {
            http_get(b_ref.http, &format!("/users/5/presence?appid={APPID}")).contains("node-b")
        })
    });
    let a_ref = &a;
    tokio::task::block_in_place(|| {
        support::wait_until("node A's grace period for uid 5 ended", || {
            metric(a_ref, "ferry_hook_presence_grace_expired_total") == 1
        })
    });
    hook.seen(|s| {
        assert!(
            !presence_of(&s.events(), 5).contains(&false),
            "a move between nodes within the grace period is no offline"
        )
    });
    c.close();
    drop(c);
    hook.wait("uid 5 offline", |s| {
        presence_of(&s.events(), 5).last() == Some(&false)
    })
    .await;
    hook.seen(|s| {
        let p = presence_of(&s.events(), 5);
        assert_eq!(p.iter().filter(|o| !**o).count(), 1, "{p:?}");
    });

    // An imr restart loses its tables; the ims' reconnect snapshot restores
    // the devices.
    let mut imr1 = imr1;
    tokio::task::block_in_place(|| {
        imr1.restart();
        support::wait_until("uid 1's devices back after the imr restart", || {
            http_get(node_a.http, &format!("/users/online?appid={APPID}&uids=1"))
                .contains(r#""connections":2"#)
        });
    });

    // An imr that does not answer is a 503 naming it, not a wrong answer.
    drop(imr1);
    let (status, body) = tokio::task::block_in_place(|| {
        support::http_post(
            node_a.http,
            &format!("/users/online?appid={APPID}&uids=1"),
            b"",
        )
    });
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_a_redis_stream() {
    let redis = Redis::start();
    let node = ImNode::start(&[
        "--hook-events",
        "after_send",
        "--hook-stream",
        "redis",
        "--hook-redis",
        &redis.url(),
        "--hook-stream-key",
        "app:events",
    ]);
    let r = &redis;
    tokio::task::block_in_place(|| {
        assert_eq!(
            r.cli(&["XGROUP", "CREATE", "app:events", "workers", "0", "MKSTREAM"]),
            "OK"
        );
    });
    let c1 = login(node.tcp, 1, IOS, "d1").await;
    for i in 1..=5 {
        assert!(
            c1.send_im(2, format!("s{i}"), i)
                .await
                .expect("ack")
                .is_ok()
        );
    }
    let mut got: Vec<i64> = Vec::new();
    tokio::task::block_in_place(|| {
        support::wait_until("5 events read by the consumer group", || {
            let out = r.cli(&[
                "XREADGROUP",
                "GROUP",
                "workers",
                "c1",
                "COUNT",
                "100",
                "STREAMS",
                "app:events",
                ">",
            ]);
            for line in out.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["type"] == "after_send"
                {
                    got.extend(v["msgid"].as_i64());
                }
            }
            got.len() >= 5
        })
    });
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
}

/// Runs `ferry bench` and returns its stdout (results table).
fn bench(args: &[String]) -> String {
    let out = std::process::Command::new(support::ferry_bin())
        .arg("bench")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ferry bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Measurement (not in the suite): peer throughput through a before-send
/// hook that answers in 1 ms vs no hook, as A/B pairs from one run.
/// `cargo test --release --test hooks measure_before_send -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_before_send_overhead() {
    let one_ms: Rule = Arc::new(|_| (Duration::from_millis(1), r#"{"action":"allow"}"#.into()));
    let hook = HookServer::start(HOOK_SECRET, one_ms).await;
    let url = hook.url();
    let plain = ImNode::start(&[]);
    let hooked = ImNode::start(&hook_flags(&url, &["--hook-before-send", "im"]));
    let args = |node: &ImNode| -> Vec<String> {
        [
            "peer",
            "-c",
            "100",
            "-n",
            "200",
            "--jwt-secret",
            support::SECRET,
            "--target",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([node.tcp.to_string()])
        .collect()
    };
    for round in 0..2 {
        for (name, node) in [("no hook", &plain), ("hook 1 ms", &hooked)] {
            let a = args(node);
            let out = tokio::task::spawn_blocking(move || bench(&a))
                .await
                .expect("bench");
            let rows: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with("throughput") || l.contains("latency"))
                .collect();
            eprintln!("round {round} {name}: {}", rows.join(" | "));
        }
    }
    let n = &hooked;
    let calls = tokio::task::block_in_place(|| metric(n, "ferry_hook_before_send_total"));
    eprintln!("hook calls answered: {calls}");
    assert!(calls >= 40_000);
}

/// Measurement (not in the suite): `/users/online` for 1,000 random uids
/// on a 2-imr cluster whose imrs hold 100,000 users (reported by an
/// in-process im node), answered by a real `ferry im` node.
/// `cargo test --release --test hooks measure_presence -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_presence_query_100k() {
    const USERS: i64 = 100_000;
    struct Ignore;
    impl ferry_im::cluster::Inbound for Ignore {
        fn on_frame(&self, _: usize, _: ferry_common::protocol::Frame) {}
        fn on_gap(&self, _: usize) {}
    }
    let redis = Redis::start();
    let imr0 = Imr::start(None, &[]);
    let imr1 = Imr::start(None, &[]);
    let bulk = ferry_im::cluster::Cluster::new(
        &[imr0.link.to_string(), imr1.link.to_string()],
        bytes::Bytes::from_static(support::LINK_SECRET.as_bytes()),
        bytes::Bytes::from_static(b"bulk"),
        64 << 20,
    );
    for uid in 1..=USERS {
        bulk.subscribe(APPID, uid, true);
        bulk.device_online(
            APPID,
            uid,
            ferry_common::link::Device {
                conn: uid as u64,
                platform: (uid % 3 + 1) as u8,
                transport: 1,
                since: 1_700_000_000,
                device_id: bytes::Bytes::from(format!("device-{uid}")),
            },
        );
    }
    let tasks = bulk.start(Arc::new(Ignore));
    let node = cluster_im(&[&imr0, &imr1], &redis.url(), &[]);
    let n = &node;
    let query = |uids: &[i64]| -> (Duration, Value) {
        let list: Vec<String> = uids.iter().map(i64::to_string).collect();
        let t = Instant::now();
        let body = http_get(
            n.http,
            &format!("/users/online?appid={APPID}&uids={}", list.join(",")),
        );
        (t.elapsed(), serde_json::from_str(&body).expect("json"))
    };
    let all_online = |v: &Value| {
        v["data"]
            .as_array()
            .is_some_and(|a| a.len() == 1000 && a.iter().all(|u| u["online"] == true))
    };
    tokio::task::block_in_place(|| {
        let probe: Vec<i64> = (0..1000).map(|i| 1 + i * (USERS / 1000)).collect();
        support::wait_until("100,000 devices at the imrs", || {
            all_online(&query(&probe).1)
        });
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut times = Vec::new();
        for _ in 0..300 {
            let uids: Vec<i64> = (0..1000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    1 + (seed % USERS as u64) as i64
                })
                .collect();
            let (took, v) = query(&uids);
            assert!(all_online(&v), "a measured answer was incomplete");
            times.push(took);
        }
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        eprintln!(
            "presence query, 1,000 uids of 100,000 on 2 imrs, {} queries over HTTP: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            times.len(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    });
    for t in tasks {
        t.abort();
    }
}
