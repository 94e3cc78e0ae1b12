//! Groups end to end with real processes: two im nodes, one imr, one Redis.

mod support;

use ferry_common::client::{Client, Event};
use ferry_common::protocol::Message;
use ferry_common::protocol::ack::{STATUS_MUTED, STATUS_NOT_GROUP_MEMBER};
use ferry_common::protocol::flag::SUPER_GROUP;
use ferry_common::protocol::group_sync::GroupSyncKey;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{APPID, Im, Imr, Redis, cluster_im, token};

const WAIT: Duration = Duration::from_secs(10);

/// A minimal HTTP/1.0 request: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect("connect to http");
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn ok(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    let (status, body) = http(addr, method, path, body);
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Number of messages listed in a user's personal queue (HTTP; the sync
/// key an online client stored does not matter here).
fn queue_len(node: &Im, uid: i64) -> i64 {
    let v = ok(
        node.http,
        "GET",
        &format!("/load_latest_message?appid={APPID}&uid={uid}&limit=1000"),
        "",
    );
    v["data"].as_array().expect("data").len() as i64
}

async fn login(node: &Im, uid: i64) -> Client {
    let c = Client::connect(node.tcp).await.expect("connect");
    c.auth(&token(uid), 1, &format!("dev{uid}"), 2)
        .await
        .expect("auth");
    c
}

/// The next GROUP_IM (pushed or synced) whose content is `want`.
async fn expect_group_im(c: &mut Client, want: &str) -> (u8, Option<i64>) {
    loop {
        match c.recv_timeout(WAIT).await.expect("group message") {
            Event::Message {
                msg: Message::GroupIm(m),
                flag,
                metadata,
            } if m.content.as_ref() == want.as_bytes() => {
                return (flag, metadata.map(|m| m.sync_key));
            }
            Event::Synced {
                msg: Message::GroupIm(m),
                flag,
                ..
            } if m.content.as_ref() == want.as_bytes() => return (flag, None),
            _ => {}
        }
    }
}

/// Waits (bounded) until the imr has written `n` entries to
/// `group_push_queue`, and returns them.
fn wait_push_entries(redis: &Redis, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = redis.cli(&["LRANGE", "group_push_queue", "0", "-1"]);
        let entries: Vec<Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l.trim()).ok())
            .collect();
        if entries.len() >= n {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} group push entries after {WAIT:?}: {out}",
            entries.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Cluster {
    _redis: Redis,
    imr: Imr,
    a: Im,
    b: Im,
}

fn cluster() -> Cluster {
    let redis = Redis::start();
    let imr = Imr::start(Some(&redis), &[]);
    let a = cluster_im(&[&imr], &redis.url(), &[]);
    let b = cluster_im(&[&imr], &redis.url(), &[]);
    Cluster {
        _redis: redis,
        imr,
        a,
        b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_across_two_nodes_with_mute_and_removal() {
    let c = cluster();
    ok(
        c.a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":100,"super":false,"members":[1,2,3]}).to_string(),
    );
    let u1 = login(&c.a, 1).await;
    let mut u2 = login(&c.b, 2).await;
    let mut u3 = login(&c.a, 3).await;
    tokio::task::block_in_place(|| {
        c.imr.wait_online(APPID, 2);
        c.imr.wait_online(APPID, 3);
    });

    let ack = u1.send_group_im(100, "hello group", 1).await.expect("ack");
    assert!(ack.is_ok(), "{ack:?}");
    assert_eq!(ack.metadata.expect("metadata").sync_key, 1);
    expect_group_im(&mut u2, "hello group").await;
    expect_group_im(&mut u3, "hello group").await;
    // Stored once in each member's queue.
    for uid in [1, 2, 3] {
        assert_eq!(queue_len(&c.b, uid), 1, "uid {uid}");
    }
    // The same msgid and content again after its ACK arrived is not a
    // resend (README "Resends are idempotent"): a second message.
    let ack = u1.send_group_im(100, "hello group", 1).await.expect("ack");
    assert!(ack.is_ok());
    assert_eq!(ack.metadata.expect("metadata").sync_key, 2);
    expect_group_im(&mut u2, "hello group").await;
    expect_group_im(&mut u3, "hello group").await;
    for uid in [1, 2, 3] {
        assert_eq!(queue_len(&c.a, uid), 2, "uid {uid}");
    }

    // Muted on node B: refused at once on node A with status 67.
    ok(
        c.b.http,
        "POST",
        &format!("/groups/100/mute?appid={APPID}"),
        r#"{"uid":1,"mute":true}"#,
    );
    let ack = u1.send_group_im(100, "muted", 2).await.expect("ack");
    assert_eq!(ack.status, STATUS_MUTED);
    ok(
        c.b.http,
        "POST",
        &format!("/groups/100/mute?appid={APPID}"),
        r#"{"uid":1,"mute":false}"#,
    );
    assert!(
        u1.send_group_im(100, "unmuted", 3)
            .await
            .expect("ack")
            .is_ok()
    );
    expect_group_im(&mut u2, "unmuted").await;

    // Removed on node B: u3 (on node A) is no member any more and gets no
    // further messages.
    ok(
        c.b.http,
        "DELETE",
        &format!("/groups/100/members/3?appid={APPID}"),
        "",
    );
    let ack = u3.send_group_im(100, "still here?", 1).await.expect("ack");
    assert_eq!(ack.status, STATUS_NOT_GROUP_MEMBER);
    assert!(
        u1.send_group_im(100, "after removal", 4)
            .await
            .expect("ack")
            .is_ok()
    );
    expect_group_im(&mut u2, "after removal").await;
    assert_eq!(queue_len(&c.a, 3), 3, "removed member got a copy");
    assert_eq!(queue_len(&c.a, 2), 4);
    // Offline push: nobody is offline yet, so nothing was queued for them.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn super_group_sync_after_being_offline() {
    let c = cluster();
    ok(
        c.a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":200,"super":true,"members":[1,2,3]}).to_string(),
    );
    let u1 = login(&c.a, 1).await;
    let mut u3 = login(&c.b, 3).await;
    tokio::task::block_in_place(|| c.imr.wait_online(APPID, 3));
    for i in 1..=5 {
        let ack = u1
            .send_group_im(200, format!("s{i}"), i)
            .await
            .expect("ack");
        assert!(ack.is_ok());
        assert_eq!(ack.flag, SUPER_GROUP);
        assert_eq!(ack.metadata.expect("meta").sync_key, i as i64);
    }
    // Online member on the other node: pushed with the group queue's id.
    let (flag, id) = expect_group_im(&mut u3, "s5").await;
    assert_ne!(flag & SUPER_GROUP, 0);
    assert_eq!(id, Some(5));
    // Nothing in personal queues: one queue per group.
    assert_eq!(queue_len(&c.a, 2), 0);
    // Offline push: one group_push_queue entry per message, listing only
    // the member online nowhere (2), not the sender (1) or 3 (online).
    let entries = tokio::task::block_in_place(|| wait_push_entries(&c._redis, 5));
    for e in &entries {
        assert_eq!(e["group_id"], 200, "{e}");
        assert_eq!(e["receivers"], json!([2]), "{e}");
        assert_eq!(e["sender"], 1, "{e}");
    }

    // u2 was offline: syncs the group on node B from key 0.
    let mut u2 = login(&c.b, 2).await;
    u2.send_message(
        &Message::SyncGroup(GroupSyncKey {
            group_id: 200,
            sync_key: 0,
        }),
        0,
    )
    .expect("send");
    let mut got = Vec::new();
    let end = loop {
        match u2.recv_timeout(WAIT).await.expect("sync") {
            Event::Synced {
                msg: Message::GroupIm(m),
                ..
            } => got.push(String::from_utf8_lossy(&m.content).into_owned()),
            Event::Control {
                msg: Message::SyncGroupEnd(g),
                ..
            } => break g,
            _ => {}
        }
    };
    assert_eq!(got, vec!["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(
        end,
        GroupSyncKey {
            group_id: 200,
            sync_key: 5
        }
    );
    u2.send_message(&Message::GroupSyncKey(end), 0)
        .expect("send");
    // A non-member still gets an answer (empty window).
    let u9 = login(&c.b, 9).await;
    let mut u9 = u9;
    u9.send_message(
        &Message::SyncGroup(GroupSyncKey {
            group_id: 200,
            sync_key: 0,
        }),
        0,
    )
    .expect("send");
    loop {
        if let Event::Control {
            msg: Message::SyncGroupEnd(g),
            ..
        } = u9.recv_timeout(WAIT).await.expect("answer")
        {
            assert_eq!(g.sync_key, 0);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_notifications_reach_members_on_other_nodes() {
    let c = cluster();
    ok(
        c.a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":300,"members":[1,2]}).to_string(),
    );
    ok(
        c.a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":301,"super":true,"members":[1,2]}).to_string(),
    );
    let mut u2 = login(&c.b, 2).await;
    tokio::task::block_in_place(|| c.imr.wait_online(APPID, 2));
    ok(
        c.a.http,
        "POST",
        "/post_group_notification",
        &json!({"appid":APPID,"group_id":300,"notification":"normal-n"}).to_string(),
    );
    loop {
        match u2.recv_timeout(WAIT).await.expect("notification") {
            Event::Synced {
                msg: Message::GroupNotification(n),
                ..
            }
            | Event::Message {
                msg: Message::GroupNotification(n),
                ..
            } => {
                assert_eq!(n.as_ref(), b"normal-n");
                break;
            }
            _ => {}
        }
    }
    ok(
        c.a.http,
        "POST",
        "/post_group_notification",
        &json!({"appid":APPID,"group_id":301,"notification":"super-n"}).to_string(),
    );
    loop {
        if let Event::SyncGroupNotify(g) = u2.recv_timeout(WAIT).await.expect("notify") {
            assert_eq!(
                g,
                GroupSyncKey {
                    group_id: 301,
                    sync_key: 1
                }
            );
            break;
        }
    }
    // And a group message from HTTP to the super group only notifies.
    ok(
        c.b.http,
        "POST",
        &format!("/post_group_message?appid={APPID}&sender=1&receiver=301"),
        "from http",
    );
    loop {
        if let Event::SyncGroupNotify(g) = u2.recv_timeout(WAIT).await.expect("notify") {
            assert_eq!(
                g,
                GroupSyncKey {
                    group_id: 301,
                    sync_key: 2
                }
            );
            break;
        }
    }
}

/// One message to a 10,000-member normal group lands in every member's
/// queue exactly once. Prints the time from send to ACK
/// (stored in every queue and pushed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_member_group_message_reaches_every_queue_once() {
    const N: i64 = 10_000;
    let c = cluster();
    let members: Vec<i64> = (1..=N).collect();
    ok(
        c.a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":400,"members":members}).to_string(),
    );
    let u1 = login(&c.a, 1).await;
    let mut u2 = login(&c.b, 2).await;
    tokio::task::block_in_place(|| c.imr.wait_online(APPID, 2));
    let t = Instant::now();
    let ack = u1
        .send_group_im(400, "to ten thousand", 1)
        .await
        .expect("ack");
    let stored = t.elapsed();
    assert!(ack.is_ok(), "{ack:?}");
    expect_group_im(&mut u2, "to ten thousand").await;
    let pushed = t.elapsed();
    eprintln!(
        "10,000-member normal group: stored (ACK) after {stored:?}, pushed to a member on the other node after {pushed:?}"
    );
    let counts =
        tokio::task::block_in_place(|| (1..=N).map(|uid| queue_len(&c.b, uid)).collect::<Vec<_>>());
    let wrong: Vec<(i64, i64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (i as i64 + 1, *n))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "queues without exactly one copy: {wrong:?}"
    );
    // One push entry for the message, listing the
    // 9,998 members online nowhere.
    let entries = tokio::task::block_in_place(|| wait_push_entries(&c._redis, 1));
    assert_eq!(entries.len(), 1);
    let receivers = entries[0]["receivers"].as_array().expect("receivers");
    assert_eq!(receivers.len(), (N - 2) as usize);
    assert!(!receivers.contains(&json!(1)) && !receivers.contains(&json!(2)));
}

/// The default embedded store (fjall) on one node: normal and super groups,
/// refusals for unknown groups and non-members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_embedded_store() {
    let node = Im::start(&[]);
    ok(
        node.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":1,"members":[1,2]}).to_string(),
    );
    let v = ok(
        node.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"super":true,"members":[1,2]}).to_string(),
    );
    let sgid = v["data"]["group_id"].as_i64().expect("gid");
    let u1 = login(&node, 1).await;
    let mut u2 = login(&node, 2).await;
    let u5 = login(&node, 5).await;
    assert!(u1.send_group_im(1, "normal", 1).await.expect("ack").is_ok());
    expect_group_im(&mut u2, "normal").await;
    assert_eq!(queue_len(&node, 2), 1);
    let ack = u1.send_group_im(sgid, "super", 2).await.expect("ack");
    assert_eq!((ack.status, ack.flag), (0, SUPER_GROUP));
    let (flag, id) = expect_group_im(&mut u2, "super").await;
    assert_ne!(flag & SUPER_GROUP, 0);
    assert_eq!(id, Some(1));
    assert_eq!(
        u1.send_group_im(999, "x", 3).await.expect("ack").status,
        ferry_common::protocol::ack::STATUS_GROUP_NOT_EXIST
    );
    assert_eq!(
        u5.send_group_im(1, "x", 1).await.expect("ack").status,
        STATUS_NOT_GROUP_MEMBER
    );
}

/// The same 10,000-member fan-out on one node with the default embedded
/// store (fjall): every queue once; prints the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_member_group_on_the_embedded_store() {
    const N: i64 = 10_000;
    let node = Im::start(&[]);
    let members: Vec<i64> = (1..=N).collect();
    ok(
        node.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":400,"members":members}).to_string(),
    );
    let u1 = login(&node, 1).await;
    let mut u2 = login(&node, 2).await;
    let t = Instant::now();
    let ack = u1.send_group_im(400, "fjall", 1).await.expect("ack");
    let stored = t.elapsed();
    assert!(ack.is_ok(), "{ack:?}");
    expect_group_im(&mut u2, "fjall").await;
    eprintln!(
        "10,000-member normal group (fjall, one node): stored and pushed (ACK) after {stored:?}, received after {:?}",
        t.elapsed()
    );
    let wrong: Vec<i64> = tokio::task::block_in_place(|| {
        (1..=N)
            .filter(|&uid| queue_len(&node, uid) != 1)
            .take(10)
            .collect()
    });
    assert!(
        wrong.is_empty(),
        "queues without exactly one copy: {wrong:?}"
    );
}

/// Group delivery rate on one node (fjall): 10 senders and 90 receivers in
/// a group of 100, each send waiting for its ACK, like gobelieve's
/// `benchmark_group`. Measurement only (`cargo test --release --test groups
/// -- --ignored --nocapture group_delivery_rate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release"]
async fn group_delivery_rate() {
    const PER_SENDER: usize = 300;
    let node = Im::start(&[]);
    let members: Vec<i64> = (1..=100).collect();
    ok(
        node.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":500,"members":members}).to_string(),
    );
    let mut receivers = Vec::new();
    for uid in 11..=100 {
        receivers.push(login(&node, uid).await);
    }
    let mut senders = Vec::new();
    for uid in 1..=10 {
        senders.push(login(&node, uid).await);
    }
    let total = 10 * PER_SENDER;
    let t = Instant::now();
    let counting: Vec<_> = receivers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut n = 0;
                while n < total {
                    match c.recv_timeout(Duration::from_secs(30)).await {
                        Ok(Event::Message {
                            msg: Message::GroupIm(_),
                            ..
                        })
                        | Ok(Event::Synced {
                            msg: Message::GroupIm(_),
                            ..
                        }) => n += 1,
                        Ok(_) => {}
                        Err(e) => panic!("receiver stopped after {n}: {e}"),
                    }
                }
            })
        })
        .collect();
    let sending: Vec<_> = senders
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                for i in 0..PER_SENDER {
                    let ack = c.send_group_im(500, "x", i as i32 + 1).await.expect("ack");
                    assert!(ack.is_ok());
                }
            })
        })
        .collect();
    for s in sending {
        s.await.expect("sender");
    }
    let sent = t.elapsed();
    for c in counting {
        c.await.expect("receiver");
    }
    let all = t.elapsed();
    let deliveries = 90 * total;
    eprintln!(
        "group of 100, 10 senders, 90 receivers: {total} messages sent in {sent:?}, {deliveries} deliveries in {all:?} = {:.0} deliveries/s",
        deliveries as f64 / all.as_secs_f64()
    );
}

/// Sum of an im node's `/metrics` counter over its imr links.
fn link_counter(node: &Im, name: &str) -> u64 {
    let (status, body) = http(node.http, "GET", "/metrics", "");
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Events until the IM `marker` arrives; returns how many pushed GROUP_IMs
/// with content `want` came before it.
async fn group_pushes_before(c: &mut Client, want: &str, marker: &str) -> usize {
    let mut n = 0;
    loop {
        match c.recv_timeout(WAIT).await.expect("event before the marker") {
            Event::Message {
                msg: Message::GroupIm(m),
                ..
            } if m.content.as_ref() == want.as_bytes() => n += 1,
            Event::Message {
                msg: Message::Im(m),
                ..
            }
            | Event::Synced {
                msg: Message::Im(m),
                ..
            } if m.content.as_ref() == marker.as_bytes() => return n,
            _ => {}
        }
    }
}

/// Issue 4 item 7: a super-group message goes only to the nodes holding
/// members, once per member connection. Three im nodes, two imrs (users
/// homed by |uid| mod 2); members online on A and B, node C holds only
/// non-members and must receive no PUBLISH_GROUP at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn super_group_message_goes_only_to_nodes_holding_members() {
    let redis = Redis::start();
    let imrs = [Imr::start(Some(&redis), &[]), Imr::start(Some(&redis), &[])];
    let nodes = [&imrs[0], &imrs[1]];
    let a = cluster_im(&nodes, &redis.url(), &[]);
    let b = cluster_im(&nodes, &redis.url(), &[]);
    let c = cluster_im(&nodes, &redis.url(), &[]);
    ok(
        a.http,
        "POST",
        "/groups",
        &json!({"appid":APPID,"group_id":700,"super":true,"members":[1,2,3,4,5]}).to_string(),
    );
    // Members: 1 (sender) and 2 on A; 3 (imr 1) and 4 (imr 0) on B; 5 offline.
    // Non-members 10 (imr 0) and 11 (imr 1) on C.
    let u1 = login(&a, 1).await;
    let mut u2 = login(&a, 2).await;
    let mut u3 = login(&b, 3).await;
    let mut u4 = login(&b, 4).await;
    let mut u10 = login(&c, 10).await;
    let mut u11 = login(&c, 11).await;
    tokio::task::block_in_place(|| {
        for uid in [1, 2, 3, 4, 10, 11] {
            imrs[(uid % 2) as usize].wait_online(APPID, uid);
        }
    });
    let group = "PUBLISH_GROUP frames";
    let name = "ferry_imr_link_received_group_frames_total";
    let before: Vec<u64> = [&a, &b, &c].iter().map(|n| link_counter(n, name)).collect();

    let ack = u1.send_group_im(700, "to members", 1).await.expect("ack");
    assert_eq!((ack.status, ack.flag), (0, SUPER_GROUP));
    // A marker to each user, sent after the group message: it comes through
    // the user's home imr behind anything that imr relayed to the node
    // before, so once it arrives every copy that node will ever get is in.
    for (i, (client, uid)) in [
        (&mut u2, 2),
        (&mut u3, 3),
        (&mut u4, 4),
        (&mut u10, 10),
        (&mut u11, 11),
    ]
    .into_iter()
    .enumerate()
    {
        let marker = format!("marker {uid}");
        assert!(
            u1.send_im(uid, marker.clone(), 10 + i as i32)
                .await
                .expect("ack")
                .is_ok()
        );
        let n = group_pushes_before(client, "to members", &marker).await;
        let want = usize::from(uid < 10);
        assert_eq!(n, want, "uid {uid}: pushed copies of the group message");
    }
    let after: Vec<u64> = [&a, &b, &c].iter().map(|n| link_counter(n, name)).collect();
    let got: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    // A sent it (imrs never echo to the origin), B got one copy from each
    // imr (3 is homed on imr 1, 4 on imr 0), C none.
    assert_eq!(got, vec![0, 2, 0], "{group} received by nodes A, B, C");
}
