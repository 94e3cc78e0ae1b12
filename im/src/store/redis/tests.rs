//! Redis-specific behaviour of [`RedisStore`] (the shared contract is covered
//! by `store::conformance`): key layout, half-written requests, dedup expiry,
//! retention, malformed members, restarts and outages of redis-server.

use super::*;
use ferry_testkit::redis::RedisServer;
use std::sync::Arc;
use std::time::Instant;

use crate::store::test_support::*;

async fn start() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis")
}

async fn connect(server: &RedisServer, opts: RedisStoreOptions) -> RedisStore {
    RedisStore::connect(&server.url(), opts)
        .await
        .expect("connect")
}

async fn raw(store: &RedisStore, args: &[&[u8]]) -> ::redis::Value {
    let mut cmd = ::redis::cmd(std::str::from_utf8(args[0]).expect("utf8"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let mut c = store.conn.clone();
    cmd.query_async(&mut c).await.expect("raw command")
}

#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let server = start().await;
    let store = connect(&server, RedisStoreOptions::default()).await;
    store
        .append(peer(100, 200, Some(42), "hi"))
        .await
        .expect("append");
    store.set_sync_key(q(100), 9).await.expect("set");
    store.set_group_sync_key(q(100), 5, 4).await.expect("set");
    let n = store.device_number("phone", 1).await.expect("number");
    let cli = |args: &[&str]| server.cli(args).trim().to_owned();
    assert_eq!(cli(&["zcard", "ferry:{7:100}:q"]), "1");
    assert_eq!(cli(&["zcard", "ferry:{7:200}:q"]), "1");
    assert_eq!(cli(&["hget", "ferry:{7:100}:meta", "head"]), "1");
    assert_eq!(cli(&["hget", "ferry:{7:100}:meta", "sync_key"]), "9");
    assert_eq!(cli(&["hget", "ferry:{7:100}:meta", "gsk:5"]), "4");
    for queue in ["100", "200"] {
        let d = format!("ferry:{{7:{queue}}}:d:7:100:3:42:200");
        // First id, digest of "hi" (FNV-1a), origin (incarnation 1,
        // connection 1), no mark.
        assert_eq!(cli(&["get", &d]), "1|8ba5f07b55ec3da|1|1|0");
        let ttl: i64 = cli(&["pttl", &d]).parse().expect("pttl");
        assert!(ttl > 590_000 && ttl <= 600_000, "{ttl}");
    }
    // Queues expire when idle for the retention age; meta never does.
    let ttl: i64 = cli(&["pttl", "ferry:{7:100}:q"]).parse().expect("pttl");
    assert!(ttl > 29 * 24 * 3600 * 1000, "{ttl}");
    assert_eq!(cli(&["pttl", "ferry:{7:100}:meta"]), "-1");
    // Without a client key the record only outlives the call's retries.
    store.append(single(300, "x")).await.expect("append");
    let rec = cli(&["--scan", "--pattern", "ferry:{7:300}:d:r:*"]);
    assert_eq!(rec.lines().count(), 1, "{rec}");
    assert_eq!(cli(&["get", &rec]), "1||0", "first id, empty tag, no mark");
    let ttl: i64 = cli(&["pttl", &rec]).parse().expect("pttl");
    assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
    // gobelieve's device keys, shared with `--auth redis`.
    assert_eq!(cli(&["get", "devices_phone_1"]), n.to_string());
    assert_eq!(cli(&["get", "devices_id"]), n.to_string());
    // The member is id, ts, cmd, flag, device, body.
    let members = raw(&store, &[b"ZRANGE", b"ferry:{7:200}:q", b"0", b"-1"]).await;
    let ::redis::Value::Array(members) = members else {
        panic!("{members:?}")
    };
    let ::redis::Value::BulkString(m) = &members[0] else {
        panic!("{members:?}")
    };
    assert_eq!(&m[..8], &1i64.to_be_bytes());
    let ts = i64::from_be_bytes(m[8..16].try_into().expect("8 bytes"));
    assert!((now_ms() - ts).abs() < 60_000, "{ts}");
    assert_eq!(&m[16..18], &[4, 1]);
    assert_eq!(&m[18..26], &3i64.to_be_bytes());
    assert_eq!(&m[26..], b"hi");
}

/// A crash after the receiver's half was written: the client's resend
/// finds that half and writes only the missing one.
#[tokio::test]
async fn resend_completes_a_half_written_request() {
    let server = start().await;
    let store = connect(&server, RedisStoreOptions::default()).await;
    store.append(single(1, "older")).await.expect("append");
    let req = peer(1, 2, Some(9), "m");
    // Only the receiver's group reaches Redis.
    let inv = store.invocation(
        q(2),
        &DedupId::Client(key(1, 2, 9)),
        Duration::from_secs(600),
        now_ms(),
        &tag(req.dedup.expect("key").digest, ORIGIN),
        Mode::Check,
        std::iter::once(keys::encode_tail(&req.entries[0], now_ms())),
    );
    let mut c = store.conn.clone();
    let (existed, first, _, _): (i64, i64, String, i64) =
        inv.invoke_async(&mut c).await.expect("half");
    assert_eq!((existed, first), (0, 1));
    let out = store.append(req.clone()).await.expect("resend");
    assert_eq!(ids(&out), vec![1, 2]);
    assert!(out.duplicate, "the first entry was already stored");
    assert_eq!(all_ids(&store, 2).await, vec![1]);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2]);
    // Now both halves are known.
    let again = store.append(req).await.expect("again");
    assert_eq!(again.placed, out.placed);
    assert!(again.duplicate);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2]);
}

#[tokio::test]
async fn dedup_expires_after_the_window() {
    let server = start().await;
    let opts = RedisStoreOptions {
        dedup_window: Duration::from_millis(400),
        ..RedisStoreOptions::default()
    };
    let store = connect(&server, opts).await;
    let first = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    // Wait until the records of both halves expired.
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = ["ferry:{7:2}:d:7:1:3:1:2", "ferry:{7:1}:d:7:1:3:1:2"];
    while records
        .iter()
        .any(|r| server.cli(&["exists", r]).trim() != "0")
    {
        assert!(Instant::now() < deadline, "dedup records never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    assert!(!again.duplicate, "expired key must be a new message");
    assert_eq!(ids(&first), vec![1, 1]);
    assert_eq!(ids(&again), vec![2, 2]);
    let third = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    assert!(third.duplicate);
    assert_eq!(third.placed, again.placed);
}

#[tokio::test]
async fn retention_by_count_keeps_the_newest_messages() {
    let server = start().await;
    let opts = RedisStoreOptions {
        retention_count: 5,
        ..RedisStoreOptions::default()
    };
    let store = connect(&server, opts).await;
    for i in 1..=8 {
        store
            .append(single(1, &format!("m{i}")))
            .await
            .expect("append");
    }
    assert_eq!(all_ids(&store, 1).await, vec![4, 5, 6, 7, 8]);
    let w = store.window(q(1), 0, 2).await.expect("window");
    assert_eq!((w.head, w.has_more), (8, true));
    assert_eq!(store.count_after(q(1), 0).await.expect("count"), 8);
    assert_eq!(store.latest(q(1), 10).await.expect("latest").len(), 5);
    // Ids keep counting from the head.
    let out = store.append(single(1, "m9")).await.expect("append");
    assert_eq!(ids(&out), vec![9]);
}

#[tokio::test]
async fn retention_by_age_drops_old_messages_in_bounded_steps() {
    let server = start().await;
    let opts = RedisStoreOptions {
        retention_age: Duration::from_secs(3600),
        ..RedisStoreOptions::default()
    };
    let store = connect(&server, opts).await;
    // 150 entries written two hours ago (ids 1..=150), then fresh ones.
    let old_ts = now_ms() - 2 * 3600 * 1000;
    let stale: Vec<Vec<u8>> = (0..150)
        .map(|i| keys::encode_tail(&entry(1, &format!("old{i}")), old_ts))
        .collect();
    let inv = store.invocation(
        q(1),
        &DedupId::Request("seed".into()),
        Duration::from_secs(60),
        old_ts, // "now" of that append: nothing is old yet
        "",
        Mode::Check,
        stale.into_iter(),
    );
    let mut c = store.conn.clone();
    let (_, first, _, _): (i64, i64, String, i64) = inv.invoke_async(&mut c).await.expect("seed");
    assert_eq!(first, 1);
    assert_eq!(all_ids(&store, 1).await.len(), 150);
    // Each append drops at most AGE_SCAN old entries.
    store.append(single(1, "new1")).await.expect("append");
    let left = all_ids(&store, 1).await;
    assert_eq!(left.len(), 150 - AGE_SCAN + 1);
    assert_eq!(left[0], AGE_SCAN as i64 + 1);
    store.append(single(1, "new2")).await.expect("append");
    assert_eq!(all_ids(&store, 1).await, vec![151, 152]);
    assert_eq!(store.count_after(q(1), 0).await.expect("count"), 152);
}

#[tokio::test]
async fn malformed_members_are_skipped() {
    let server = start().await;
    let store = connect(&server, RedisStoreOptions::default()).await;
    store.append(single(1, "a")).await.expect("append");
    // Garbage between the real messages (score 1.5, too short to decode).
    raw(&store, &[b"ZADD", b"ferry:{7:1}:q", b"1.5", b"\x01\x02"]).await;
    store.append(single(1, "b")).await.expect("append");
    let w = store.window(q(1), 0, 10).await.expect("window");
    let bodies: Vec<&[u8]> = w.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(store.latest(q(1), 10).await.expect("latest").len(), 2);
}

#[tokio::test]
async fn bad_urls_and_options_are_refused() {
    let opts = RedisStoreOptions::default;
    for url in ["http://127.0.0.1:1", "redis+cluster://", "redis://:x:y:z"] {
        let err = RedisStore::connect(url, opts()).await.err();
        assert!(
            matches!(err, Some(StoreError::Invalid(_))),
            "{url}: {err:?}"
        );
    }
    let braces = RedisStoreOptions {
        key_prefix: "a{b}".into(),
        ..opts()
    };
    assert!(matches!(
        RedisStore::connect("redis://127.0.0.1:1", braces).await,
        Err(StoreError::Invalid(_))
    ));
    // Nothing listening: a quick backend error, no hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let t0 = Instant::now();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), opts())
        .await
        .err();
    assert!(matches!(err, Some(StoreError::Backend(_))), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_aof_keeps_ids_contiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || {
        RedisServer::start_in(&path, &["--appendonly", "yes", "--appendfsync", "always"])
    })
    .await
    .expect("start");
    let store = Arc::new(connect(&server, RedisStoreOptions::default()).await);
    for i in 0..5 {
        store
            .append(peer(1, 2, Some(i), "before"))
            .await
            .expect("append");
    }
    store.set_sync_key(q(1), 5).await.expect("set");
    // SIGKILL: only what is in the AOF survives.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    // The store reconnects by itself; the first call may still see the
    // dropped connection, so poll (bounded) until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        match store.append(peer(1, 2, Some(5), "after")).await {
            Ok(out) => break out,
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
    };
    assert_eq!(ids(&out), vec![6, 6]);
    assert_eq!(all_ids(&*store, 1).await, (1..=6).collect::<Vec<_>>());
    assert_eq!(all_ids(&*store, 2).await, (1..=6).collect::<Vec<_>>());
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 5);
    // Dedup records survived too.
    let dup = store
        .append(peer(1, 2, Some(0), "before"))
        .await
        .expect("append");
    assert!(dup.duplicate);
    assert_eq!(ids(&dup), vec![1, 1]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || {
        RedisServer::start_in(&path, &["--appendonly", "yes", "--appendfsync", "always"])
    })
    .await
    .expect("start");
    let store = Arc::new(connect(&server, RedisStoreOptions::default()).await);
    store
        .append(peer(1, 2, Some(1), "up"))
        .await
        .expect("append");
    server.stop();
    // Every call fails with a backend error within a few seconds.
    for _ in 0..2 {
        let t0 = Instant::now();
        let err = store.append(peer(1, 2, Some(2), "down")).await;
        assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "took {:?}",
            t0.elapsed()
        );
        let err = store.window(q(1), 0, 10).await;
        assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
    }
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        match store.append(peer(1, 2, Some(2), "down")).await {
            Ok(out) => break out,
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
    };
    assert_eq!(ids(&out), vec![2, 2]);
    assert!(!out.duplicate);
    assert_eq!(all_ids(&*store, 1).await, vec![1, 2]);
    drop(server);
}

#[test]
fn options_have_the_documented_defaults() {
    let o = RedisStoreOptions::default();
    assert_eq!(o.dedup_window, Duration::from_secs(600));
    assert_eq!(o.retention_count, 100_000);
    assert_eq!(o.retention_age, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(o.key_prefix, "ferry");
}

#[test]
fn requests_group_by_queue_in_order() {
    let entries = [entry(1, "a"), entry(2, "b"), entry(1, "c")];
    assert_eq!(
        group_by_queue(&entries),
        vec![(q(1), vec![0, 2]), (q(2), vec![1])]
    );
    assert_eq!(request_id().len(), 32);
    assert_ne!(request_id(), request_id());
}

/// Peer-shaped appends (2 entries + dedup key) per second with 100
/// concurrent writers against a local redis-server:
/// `cargo test --release -p ferry-im --lib -- --ignored redis_throughput --nocapture`
#[test]
#[ignore = "measurement, run explicitly in release mode"]
fn redis_throughput_100_concurrent_peer_writers() {
    const WRITERS: i64 = 100;
    const USERS: i64 = 1000;
    let secs: u64 = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let extra: Vec<String> = std::env::var("FERRY_BENCH_REDIS_ARGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_else(|_| vec!["--appendonly".into(), "no".into()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = RedisServer::start_in(dir.path(), &extra_refs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(
        rt.block_on(RedisStore::connect(
            &server.url(),
            RedisStoreOptions::default(),
        ))
        .expect("connect"),
    );
    let body = "b".repeat(100);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut lat = rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = Arc::clone(&store);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = 0i64;
                    while Instant::now() < deadline {
                        let receiver = USERS + (w * 7919 + i * 104_729) % USERS;
                        let t0 = Instant::now();
                        s.append(peer(w, receiver, Some(i), &body))
                            .await
                            .expect("append");
                        lat.push(t0.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("join"));
        }
        all
    });
    let elapsed = start.elapsed();
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "redis {extra:?}: appends={n} in {elapsed:.2?}: {:.0} appends/s, p50 {:?}, p99 {:?}, max {:?}, retried {}",
        n as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat[n - 1],
        store.retried_appends(),
    );
}

/// A group-like request: one shared body to each of `uids`' queues.
fn fanout(uids: &[i64], msgid: i64) -> AppendRequest {
    let body = bytes::Bytes::from_static(b"to everyone");
    AppendRequest {
        entries: uids
            .iter()
            .map(|&uid| NewEntry {
                queue: q(uid),
                cmd: 8,
                flag: 0,
                device_id: 3,
                body: body.clone(),
            })
            .collect(),
        dedup: Some(dedup(key(1, -77, msgid), "to everyone")),
    }
}

/// Simulates a node that logged `req` `age` ago and died after writing
/// only the queues in `written`.
async fn crash_mid_fanout(store: &RedisStore, req: &AppendRequest, age: Duration, written: &[i64]) {
    let d = req.dedup.expect("client key");
    let dedup = DedupId::Client(d.key);
    let tag = tag(d.digest, d.origin);
    let ts = now_ms() - age.as_millis() as i64;
    store
        .log_fanout(&dedup, &tag, ts, &req.entries)
        .await
        .expect("log");
    let groups: Vec<(QueueId, Vec<usize>)> = group_by_queue(&req.entries)
        .into_iter()
        .filter(|(queue, _)| written.contains(&queue.uid))
        .collect();
    store
        .write_groups(
            &groups,
            &req.entries,
            &dedup,
            Duration::from_secs(600),
            ts,
            &tag,
            Mode::Check,
        )
        .await
        .expect("first queues");
}

async fn log_len(server: &RedisServer) -> usize {
    (0..fanout_log::SHARDS)
        .map(|n| {
            let key = fanout_log::shard_key_n("ferry", n);
            server
                .cli(&["hlen", &key])
                .trim()
                .parse::<usize>()
                .expect("hlen")
        })
        .sum()
}

/// The node died after two of five queues and the client never resends:
/// recovery writes the other three, once, and leaves the first two alone.
#[tokio::test]
async fn recovery_completes_an_interrupted_fanout_exactly_once() {
    let server = start().await;
    let store = connect(&server, RedisStoreOptions::default()).await;
    let uids = [10, 11, 12, 13, 14];
    store.append(single(12, "older")).await.expect("append");
    let req = fanout(&uids, 5);
    crash_mid_fanout(&store, &req, Duration::from_secs(5), &[10, 11]).await;
    assert_eq!(all_ids(&store, 12).await, vec![1]);
    // Within the lease the record belongs to a node that may still be
    // writing: left alone.
    assert_eq!(store.recover_fanouts().await.expect("recover"), 0);
    assert_eq!(log_len(&server).await, 1);

    // Another node, after the lease.
    let other = connect(&server, RedisStoreOptions::default()).await;
    let req_old = fanout(&uids, 6);
    crash_mid_fanout(
        &other,
        &req_old,
        fanout_log::LEASE + Duration::from_secs(1),
        &[10, 11],
    )
    .await;
    assert_eq!(other.recover_fanouts().await.expect("recover"), 1);
    for uid in uids {
        let window = store.window(q(uid), 0, 100).await.expect("window");
        let copies = window.messages.iter().filter(|m| m.msgid > 0).count();
        let expected = match uid {
            10 | 11 => 2, // both requests' first halves
            12 => 2,      // "older" + the recovered copy
            _ => 1,       // only the recovered copy
        };
        assert_eq!(copies, expected, "uid {uid}: {:?}", window.messages);
    }
    assert_eq!(log_len(&server).await, 1, "only the young record is left");
    assert_eq!(other.recover_fanouts().await.expect("again"), 0);

    // The client's late resend finds every queue written: same ids, nothing new.
    let before: Vec<Vec<i64>> =
        futures_util::future::join_all(uids.map(|u| all_ids(&store, u))).await;
    let out = store.append(req_old).await.expect("resend");
    assert!(out.duplicate);
    let after: Vec<Vec<i64>> =
        futures_util::future::join_all(uids.map(|u| all_ids(&store, u))).await;
    assert_eq!(before, after);
    assert_eq!(ids(&out), vec![2, 2, 2, 1, 1]);
}

/// A record older than the dedup window cannot be redone safely (a queue's
/// dedup record may be gone): it is dropped, nothing is written.
#[tokio::test]
async fn records_older_than_the_dedup_window_are_dropped() {
    let server = start().await;
    let opts = RedisStoreOptions {
        dedup_window: Duration::from_secs(20),
        ..RedisStoreOptions::default()
    };
    let store = connect(&server, opts).await;
    let req = fanout(&[20, 21, 22], 1);
    crash_mid_fanout(
        &store,
        &req,
        fanout_log::LEASE + Duration::from_secs(1),
        &[20],
    )
    .await;
    assert_eq!(store.recover_fanouts().await.expect("recover"), 0);
    assert_eq!(log_len(&server).await, 0);
    assert!(all_ids(&store, 21).await.is_empty());
}

/// A completed fan-out leaves no record behind (the delete runs off the
/// append's path, so poll for it); peer and single-queue appends never log.
#[tokio::test]
async fn completed_appends_leave_the_log_empty() {
    let server = start().await;
    let store = connect(&server, RedisStoreOptions::default()).await;
    store.append(peer(1, 2, Some(7), "p")).await.expect("peer");
    store.append(single(4, "s")).await.expect("single");
    assert_eq!(log_len(&server).await, 0);
    store.append(fanout(&[1, 2, 3], 1)).await.expect("group");
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_len(&server).await > 0 {
        assert!(Instant::now() < deadline, "records never deleted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.recover_fanouts().await.expect("recover"), 0);
}
