//! Hostile clients against a real `ferry im` (issue 7 §2–3): garbage and
//! oversize headers, truncated frames, clients that never log in, slowloris
//! writes, a client that never reads, frame floods, 10 000 failed logins,
//! huge HTTP bodies, and the admission limits (connections per node and per
//! user, rooms per connection, the `--max-rss` memory guard). After every
//! attack a fresh pair of clients must still exchange a message, and the
//! server's resident memory stays bounded.

mod support;
mod wire;

use ferry_common::protocol::ack::STATUS_NOT_IN_ROOM;
use ferry_common::protocol::command::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::{Im, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wire::*;

/// A message still goes from a new sender to a new receiver, pushed and ACKed.
async fn assert_flowing(addr: SocketAddr, from: i64, to: i64) {
    let mut b = Raw::login(addr, to, &format!("rx{to}"), 2).await;
    let mut a = Raw::login(addr, from, &format!("tx{from}"), 2).await;
    a.im(from, to, 1, "still flowing").await;
    let (_, f, _) = b.expect_push(IM).await;
    assert_eq!(im_of(&f).content, "still flowing".as_bytes());
}

async fn summary(im: &Im) -> Value {
    serde_json::from_str(&http_get(im.http, "/summary").await).expect("summary json")
}

async fn counter(im: &Im, name: &str) -> u64 {
    summary(im).await[name].as_u64().unwrap_or(0)
}

/// Polls `/summary` until `name` reaches `at_least` (bounded).
async fn wait_counter(im: &Im, name: &str, at_least: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = counter(im, name).await;
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} = {v}, wanted ≥ {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("status field")
}

fn rss_kib(im: &Im) -> u64 {
    proc_status(im.pid().expect("running"), "VmRSS:")
}

fn open_fds(im: &Im) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", im.pid().expect("running")))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Closed by the server within `within` (measured from now).
async fn closed_within(r: &mut Raw, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        match r.next(within).await {
            Ok(f) if f.cmd == PONG => continue,
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(End::Timeout) => panic!("not closed within {within:?}"),
            Err(_) => return t0.elapsed(),
        }
    }
}

#[tokio::test]
async fn garbage_oversize_and_forbidden_headers_close_only_that_connection() {
    let im = Im::start(&[]);
    let mut rx = Raw::login(im.tcp, 2, "rx", 2).await;
    let mut tx = Raw::login(im.tcp, 1, "tx", 2).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random garbage",
            (0..64u32).map(|i| (i * 97 + 13) as u8).collect(),
        ),
        ("negative length", header(-1, 1, PING, 2)),
        ("oversize length", header(i32::MAX, 1, IM, 2)),
        ("just over 32 KiB", header(32 * 1024, 1, IM, 2)),
        ("router command", header(8, 1, 130, 2)),
        ("unknown command", header(0, 1, 250, 2)),
        ("all 0xff", vec![0xff; 24]),
    ];
    let mut msgid = 0;
    for (what, bytes) in cases {
        for authed in [false, true] {
            msgid += 1;
            let mut r = if authed {
                Raw::login(im.tcp, 50, "attacker", 2).await
            } else {
                Raw::connect(im.tcp).await
            };
            r.send_bytes(&bytes).await;
            match r.next(WAIT).await {
                Err(e) if e.is_closed() => {}
                other => panic!("{what} (authed {authed}): expected close, got {other:?}"),
            }
            // The established pair is unaffected.
            tx.im(1, 2, msgid, what).await;
            let (_, f, _) = rx.expect_push(IM).await;
            assert_eq!(im_of(&f).content, what.as_bytes());
        }
    }
    assert_flowing(im.tcp, 3, 4).await;
}

#[tokio::test]
async fn truncated_frames_are_dropped_at_eof_or_after_the_auth_timeout() {
    let im = Im::start(&["--auth-timeout", "1"]);
    // Header announces 100 bytes, 10 arrive, then EOF.
    let mut s = TcpStream::connect(im.tcp).await.expect("connect");
    s.write_all(&header(100, 1, AUTH_TOKEN, 2))
        .await
        .expect("w");
    s.write_all(&[1; 10]).await.expect("w");
    s.shutdown().await.expect("shutdown");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // Header announces 100 bytes, 10 arrive, then nothing: closed at the
    // login deadline, not held forever.
    let mut r = Raw::connect(im.tcp).await;
    r.send_bytes(&header(100, 1, AUTH_TOKEN, 2)).await;
    r.send_bytes(&[1; 10]).await;
    let took = closed_within(&mut r, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A logged-in client stuck in the middle of a frame: the idle timeout
    // counts complete frames only.
    let im2 = Im::start(&["--idle-timeout", "1"]);
    let mut r = Raw::login(im2.tcp, 9, "stuck", 2).await;
    r.send_bytes(&header(100, 5, IM, 2)).await;
    let took = closed_within(&mut r, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_flowing(im.tcp, 1, 2).await;
    assert_flowing(im2.tcp, 1, 2).await;
}

#[tokio::test]
async fn a_client_that_never_logs_in_is_closed_after_the_auth_timeout() {
    let im = Im::start(&["--auth-timeout", "1"]);
    let t0 = Instant::now();
    // Silent, and one that keeps pinging (PING is answered before login but
    // does not extend the deadline).
    let mut silent = Raw::connect(im.tcp).await;
    let mut pinger = Raw::connect(im.tcp).await;
    let ping = async {
        loop {
            let seq = pinger.next_seq();
            pinger
                .send_frame(&ferry_common::protocol::Frame::new(
                    PING,
                    2,
                    0,
                    seq,
                    bytes::Bytes::new(),
                ))
                .await;
            match pinger.next(Duration::from_millis(200)).await {
                Ok(f) => assert_eq!(f.cmd, PONG),
                Err(End::Timeout) => {}
                Err(_) => return t0.elapsed(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (s, p) = tokio::join!(closed_within(&mut silent, Duration::from_secs(5)), ping);
    assert!(
        s >= Duration::from_millis(900) && s < Duration::from_secs(4),
        "{s:?}"
    );
    assert!(p < Duration::from_secs(4), "pinger closed after {p:?}");
    wait_counter(&im, "auth_timeouts", 2).await;
    assert!(im.log().contains("auth_timeout"), "log names the reason");
    // A client that logs in in time stays connected past the deadline.
    let mut ok = Raw::login(im.tcp, 1, "ok", 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // outlive the 1 s deadline (what is tested)
    ok.assert_quiet().await;
    assert_flowing(im.tcp, 1, 2).await;
}

#[tokio::test]
async fn slowloris_login_is_cut_at_the_auth_timeout() {
    let im = Im::start(&["--auth-timeout", "2"]);
    let mut rx = Raw::login(im.tcp, 2, "rx", 2).await;
    let mut tx = Raw::login(im.tcp, 1, "tx", 2).await;
    let frame =
        ferry_common::protocol::Message::AuthToken(ferry_common::protocol::auth::AuthToken {
            platform_id: 1,
            token: token(3),
            device_id: "slow".into(),
        })
        .to_frame(1, 2, 0)
        .to_bytes();
    let mut s = TcpStream::connect(im.tcp).await.expect("connect");
    let t0 = Instant::now();
    let mut closed_at = None;
    for (i, b) in frame.iter().enumerate() {
        if s.write_all(&[*b]).await.is_err() {
            closed_at = Some((t0.elapsed(), i));
            break;
        }
        // Others are served while the slow writer trickles.
        if i % 10 == 0 {
            tx.im(1, 2, i as i32, "during slowloris").await;
            rx.expect_push(IM).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // the attack is slowness itself
    }
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed");
    let (took, sent) = closed_at.unwrap_or((t0.elapsed(), frame.len()));
    // Either the write failed after the close, or the read shows the close
    // without any AUTH_STATUS.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(sent < frame.len(), "the whole frame got through ({took:?})");
    assert!(took < Duration::from_secs(5), "{took:?}");
    wait_counter(&im, "auth_timeouts", 1).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let im = Im::start(&["--outbox-bytes", "65536"]);
    let mut victim = Raw::connect_small_rcvbuf(im.tcp, 4096).await;
    assert_eq!(victim.auth(&token(2), 1, "deaf", 2).await, 0);
    let mut tx = Raw::login(im.tcp, 1, "tx", 2).await;
    let before = rss_kib(&im);
    let content = "x".repeat(16 * 1024);
    let mut sent = 0;
    // Every message is stored and ACKed whatever the receiver does.
    while counter(&im, "slow_consumer_drops").await == 0 {
        tx.im(1, 2, sent, &content).await;
        sent += 1;
        assert!(sent < 5000, "the deaf client was never dropped");
    }
    for _ in 0..200 {
        tx.im(1, 2, sent, &content).await;
        sent += 1;
    }
    let grown = rss_kib(&im).saturating_sub(before);
    eprintln!("never-reads: {sent} x 16 KiB messages ACKed, RSS {before} KiB, grew {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    // The deaf client's socket is closed: after draining what the kernel
    // buffered, EOF.
    let frames = victim.drain_until_closed(WAIT).await;
    assert!(frames.iter().filter(|f| f.cmd == IM).count() < sent as usize);
    // Nothing is lost: a new login syncs every message.
    let mut again = Raw::login(im.tcp, 2, "deaf", 2).await;
    let mut got = 0;
    let mut key = 0;
    loop {
        let b = again.sync(key).await;
        got += b.messages.iter().filter(|f| f.cmd == IM).count();
        if b.end == key || b.messages.is_empty() {
            break;
        }
        key = b.end;
    }
    assert_eq!(got, sent as usize, "every ACKed message is stored");
    assert_flowing(im.tcp, 3, 4).await;
}

#[tokio::test]
async fn frame_floods_are_cut_by_the_rate_limit_with_a_reason() {
    let im = Im::start(&["--max-frames-per-sec", "200"]);
    let mut rx = Raw::login(im.tcp, 2, "rx", 2).await;
    let mut tx = Raw::login(im.tcp, 1, "tx", 2).await;
    // A normal burst is fine.
    let mut calm = Raw::login(im.tcp, 5, "calm", 2).await;
    for _ in 0..50 {
        calm.barrier().await;
    }
    // 5 000 PINGs in one write.
    let mut flood = Raw::login(im.tcp, 6, "flood", 2).await;
    let mut burst = Vec::new();
    for i in 0..5000 {
        burst.extend(
            ferry_common::protocol::Frame::new(PING, 2, 0, i + 2, bytes::Bytes::new()).to_bytes(),
        );
    }
    let _ = flood.try_send_bytes(&burst).await;
    let answered = flood.drain_until_closed(WAIT).await;
    assert!(answered.len() < 5000, "{} PONGs", answered.len());
    wait_counter(&im, "rate_limited", 1).await;
    assert!(im.log().contains("frame_rate_exceeded"));
    tx.im(1, 2, 1, "after flood").await;
    rx.expect_push(IM).await;
    calm.assert_quiet().await;
}

#[tokio::test]
async fn ten_thousand_failed_logins_leak_nothing() {
    let im = Im::start(&[]);
    let mut rx = Raw::login(im.tcp, 2, "rx", 2).await;
    let mut tx = Raw::login(im.tcp, 1, "tx", 2).await;
    let fds = open_fds(&im);
    let before = rss_kib(&im);
    let addr = im.tcp;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        tasks.spawn(async move {
            let mut refused = 0;
            for i in 0..(10_000 / 32 + 1) {
                if w * 313 + i >= 10_000 {
                    break;
                }
                let mut r = Raw::connect(addr).await;
                let f = r.auth_frame("not.a.token", 1, "x", 2).await;
                assert_eq!(i32_of(&f), 1);
                r.expect_closed().await;
                refused += 1;
            }
            refused
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.expect("task");
    }
    assert!(total >= 10_000, "{total}");
    tx.im(1, 2, 1, "after 10k failures").await;
    rx.expect_push(IM).await;
    let deadline = Instant::now() + WAIT;
    while open_fds(&im) > fds + 2 {
        assert!(Instant::now() < deadline, "fds {} vs {fds}", open_fds(&im));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grown = rss_kib(&im).saturating_sub(before);
    eprintln!("failed logins: {total} refused, fds back to {fds}, RSS grew {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(counter(&im, "connection_count").await, 2);
}

#[tokio::test]
async fn huge_http_bodies_are_refused_without_buffering_them() {
    let im = Im::start(&[]);
    let before = rss_kib(&im);
    for chunked in [false, true] {
        let mut s = TcpStream::connect(im.http).await.expect("connect");
        let head = if chunked {
            "POST /post_system_message HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_string()
        } else {
            "POST /post_system_message HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n"
                .to_string()
        };
        s.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b'a'; 64 * 1024];
        // Up to 64 MiB; the server answers 413 and stops reading long before.
        for _ in 0..1024 {
            let r = if chunked {
                let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                c.extend_from_slice(&chunk);
                c.extend_from_slice(b"\r\n");
                s.write_all(&c).await
            } else {
                s.write_all(&chunk).await
            };
            if r.is_err() {
                break;
            }
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), s.peek(&mut [0u8; 1])).await
                && n > 0
            {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked {chunked}: {text:?}"
        );
    }
    let grown = rss_kib(&im).saturating_sub(before);
    eprintln!("huge http bodies: RSS grew {grown} KiB");
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert_flowing(im.tcp, 1, 2).await;
}

// ------------------------------------------------------------ limits

#[tokio::test]
async fn max_connections_refuses_the_extra_connection_and_counts_it() {
    let im = Im::start(&["--max-connections", "3"]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let _c = Raw::login(im.tcp, 3, "c", 2).await;
    let mut extra = Raw::connect(im.tcp).await;
    extra.send_auth(&token(4), 1, "d", 2).await;
    extra.expect_closed().await;
    wait_counter(&im, "refused_connections", 1).await;
    assert!(
        im.log()
            .contains("refusing connection: node connection limit reached")
    );
    a.im(1, 2, 1, "still served").await;
    b.expect_push(IM).await;
    // A slot frees when a connection closes. Until the server has seen the
    // close, a new connection is still refused (dropped): retry those.
    drop(_c);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut r = Raw::connect(im.tcp).await;
        let auth = ferry_common::protocol::auth::AuthToken {
            platform_id: 1,
            token: token(4),
            device_id: "d".into(),
        };
        let f = ferry_common::protocol::Frame::new(AUTH_TOKEN, 2, 0, 1, auth.encode());
        if r.try_send_bytes(&f.to_bytes()).await.is_ok()
            && let Ok(f) = r.next(WAIT).await
            && f.cmd == AUTH_STATUS
            && i32_of(&f) == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
}

#[tokio::test]
async fn max_connections_per_user_refuses_the_extra_login() {
    let im = Im::start(&["--max-connections-per-user", "2"]);
    let _a1 = Raw::login(im.tcp, 1, "a1", 2).await;
    let a2 = Raw::login(im.tcp, 1, "a2", 2).await;
    let mut a3 = Raw::connect(im.tcp).await;
    let f = a3.auth_frame(&token(1), 1, "a3", 2).await;
    assert_eq!(i32_of(&f), 1, "third login of uid 1 refused");
    a3.expect_closed().await;
    wait_counter(&im, "refused_user_connections", 1).await;
    assert!(im.log().contains("per-user connection limit reached"));
    // Other users are not affected; a freed slot is reusable.
    assert_flowing(im.tcp, 2, 3).await;
    drop(a2);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut r = Raw::connect(im.tcp).await;
        if r.auth(&token(1), 1, "a4", 2).await == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
}

#[tokio::test]
async fn one_room_per_connection_entering_another_leaves_the_first() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    b.enter_room(100).await;
    // b's ENTER_ROOM is applied before a's message (connections are served
    // concurrently).
    b.barrier().await;
    for room in 1..=50 {
        a.enter_room(room).await;
    }
    a.barrier().await;
    let seq = a.send_room_im(1, 1, "old room").await;
    a.expect_refused(seq, STATUS_NOT_IN_ROOM).await;
    a.enter_room(100).await;
    let seq = a.send_room_im(1, 100, "current room").await;
    let ack = a.expect(ACK).await;
    assert_eq!(ack_of(&ack), (seq, Some(0)));
    let f = b.expect(ROOM_IM).await;
    assert_eq!(rt_of(&f).content, "current room".as_bytes());
    let body: Value =
        serde_json::from_str(&http_get(im.http, "/summary?appid=7").await).expect("json");
    assert_eq!(body["app_7"]["room_count"], 1, "{body}");
    assert_eq!(body["app_7"]["room_client_count"], 2, "{body}");
}

#[tokio::test]
async fn memory_guard_refuses_new_connections_above_max_rss() {
    // 1 MiB: any real process is above it, so every connection is refused.
    let im = Im::start(&["--max-rss", "1"]);
    let mut r = Raw::connect(im.tcp).await;
    r.send_auth(&token(1), 1, "a", 2).await;
    r.expect_closed().await;
    wait_counter(&im, "refused_memory", 1).await;
    assert!(
        im.log()
            .contains("refusing connection: resident memory above --max-rss")
    );
    // The HTTP API (health, metrics) keeps answering.
    assert!(!http_get(im.http, "/summary").await.is_empty());
    // With a generous bound, connections are admitted.
    let im2 = Im::start(&["--max-rss", "4096"]);
    assert_flowing(im2.tcp, 1, 2).await;
    assert_eq!(counter(&im2, "refused_memory").await, 0);
}
