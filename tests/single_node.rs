//! End-to-end tests of one `ferry im` process over TCP: the real binary, the
//! real wire, frames checked byte for byte (spec §1–3, README "Behaviour
//! worth knowing").

mod support;
mod wire;

use bytes::Bytes;
use ferry_common::client::{Client, ClientOptions, Event};
use ferry_common::protocol::command::*;
use ferry_common::protocol::flag::{PUSH, SELF, TEXT};
use ferry_common::protocol::metadata::Metadata;
use ferry_common::token::{Claims, sign};
use std::time::Duration;
use support::{Im, SECRET, token, token_for};
use tokio::time::Instant;
use wire::*;

fn md(sync_key: i64, prev_sync_key: i64) -> Metadata {
    Metadata {
        sync_key,
        prev_sync_key,
    }
}

fn key_body(k: i64) -> Bytes {
    Bytes::copy_from_slice(&k.to_be_bytes())
}

// ---------------------------------------------------------------- 1. auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_jwt_ok_gives_status_0_at_the_auth_frame_version() {
    let im = Im::start(&[]);
    let mut c = Raw::connect(im.tcp).await;
    let f = c.auth_frame(&token(1), 1, "dev", 2).await;
    assert_eq!((f.seq, f.version, f.flag), (1, 2, 0));
    assert_eq!(f.body.as_ref(), &0i32.to_be_bytes());
    // Logged in as uid 1: a message from uid 1 is stored.
    assert_eq!(c.im(1, 2, 1, "hi").await, md(1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_bad_token_gets_status_1_and_the_connection_is_closed() {
    let im = Im::start(&[]);
    let now = now_secs();
    let wrong_secret = sign(
        &Claims {
            appid: 7,
            uid: 5,
            exp: None,
            nbf: None,
        },
        b"not-the-secret",
    );
    let expired = sign(
        &Claims {
            appid: 7,
            uid: 5,
            exp: Some(now - 60),
            nbf: None,
        },
        SECRET.as_bytes(),
    );
    let no_uid = token(0);
    for (what, tok) in [
        ("garbage", "garbage".to_string()),
        ("wrong secret", wrong_secret),
        ("expired", expired),
        ("uid 0", no_uid),
        ("empty", String::new()),
    ] {
        let mut c = Raw::connect(im.tcp).await.named(what);
        let f = c.auth_frame(&tok, 1, "dev", 2).await;
        assert_eq!(
            f.body.as_ref(),
            &1i32.to_be_bytes(),
            "{what}: AUTH_STATUS 1"
        );
        assert_eq!(
            f.version, 0,
            "{what}: a failed login leaves the connection at version 0"
        );
        c.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_ping_and_auth_is_processed_before_login() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut a = Raw::connect(im.tcp).await.named("anon");
    a.version = 2;
    let _ = a.send_im(1, 2, 1, "before login").await;
    let _ = a.send_rt(1, 2, "rt before login").await;
    a.send(SYNC_KEY, 0, key_body(5)).await;
    a.send(SYNC, 0, key_body(0)).await;
    a.enter_room(9).await;
    let _ = a.send_room_im(1, 9, "room before login").await;
    a.send(UNREAD_COUNT, 0, Bytes::from_static(&[0, 0, 0, 3]))
        .await;
    // Only the PONG comes back: no ACK, no SYNC_BEGIN.
    a.assert_quiet().await;
    b.assert_quiet().await;
    // Log in on the same connection: the early frames were not replayed.
    assert_eq!(a.auth(&token(1), 1, "a", 2).await, 0);
    a.assert_quiet().await;
    let own = a.sync(0).await;
    assert_eq!(
        (own.messages.len(), own.end),
        (0, 0),
        "the IM before login was not stored (and SYNC_KEY 5 was ignored)"
    );
    let theirs = b.sync(0).await;
    assert_eq!(
        (theirs.messages.len(), theirs.end),
        (0, 0),
        "the receiver's queue is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_auth_on_a_logged_in_connection_is_ignored() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    a.send_auth(&token(2), 1, "other", 2).await;
    a.assert_quiet().await;
    a.send_auth("garbage", 1, "other", 1).await;
    a.assert_quiet().await; // no AUTH_STATUS 1, no close
    // Still uid 1, still version 2.
    assert_eq!(a.im(1, 3, 1, "as uid 1").await, md(1, 0));
    let seq = a.send_im(2, 3, 2, "as uid 2").await;
    a.expect_refused(seq, 66).await;
}

// ---------------------------------------------------------------- 2. peer IM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_im_v2_ack_metadata_push_and_contiguous_ids() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let before = now_secs();

    let seq = a.send_im(1, 2, 77, "hello").await;
    let m = a.expect(METADATA).await;
    let ack = a.expect(ACK).await;
    assert_eq!(m.seq + 1, ack.seq, "METADATA right before the ACK");
    assert_eq!(
        meta_of(&m),
        md(1, 0),
        "sender's first message: id 1, prev 0"
    );
    assert_eq!((ack.version, ack.flag), (2, 0));
    assert_eq!(
        ack_of(&ack),
        (seq, Some(0)),
        "v2 ACK = seq + status 0 (5 bytes)"
    );

    let (meta, f, notify) = b.expect_push(IM).await;
    assert_eq!(meta, md(1, 0));
    assert_eq!(f.flag, PUSH);
    let body = im_of(&f);
    assert_eq!((body.sender, body.receiver, body.msgid), (1, 2, 77));
    assert_eq!(body.content.as_ref(), b"hello");
    let ts = body.timestamp as i64;
    assert!(
        ts >= before - 1 && ts <= now_secs() + 1,
        "server stamps its own time, got {ts}"
    );
    assert_eq!(notify, 1);

    // Second message: ids continue; TEXT is echoed on the push.
    let seq = a.send_im_flag(1, 2, 78, "again", TEXT).await;
    assert_eq!(a.expect_stored_ack(seq).await, md(2, 1));
    let (meta, f, notify) = b.expect_push(IM).await;
    assert_eq!(meta, md(2, 1));
    assert_eq!(f.flag, PUSH | TEXT);
    assert_eq!(im_of(&f).msgid, 78);
    assert_eq!(notify, 2);

    // The sending device gets no copy; nothing else is pending anywhere.
    a.assert_quiet().await;
    b.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_im_v1_client_gets_4_byte_acks_and_version_1_frames() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 1).await;
    let mut a = Raw::login(im.tcp, 1, "a", 1).await;
    let seq = a.send_im(1, 2, 5, "v1 hello").await;
    let m = a.expect(METADATA).await;
    let ack = a.expect(ACK).await;
    assert_eq!(m.version, 1);
    assert_eq!(ack.version, 1);
    assert_eq!(
        ack.body.as_ref(),
        &seq.to_be_bytes(),
        "v1 ACK body is exactly the 4-byte seq"
    );
    assert_eq!(m.seq + 1, ack.seq);
    assert_eq!(meta_of(&m), md(1, 0));

    let (meta, f, notify) = b.expect_push(IM).await;
    assert_eq!(meta, md(1, 0));
    assert_eq!(f.version, 1);
    assert_eq!(
        f.body.len(),
        24 + "v1 hello".len(),
        "v1 IM body has the timestamp"
    );
    let body = im_of(&f);
    assert_eq!((body.sender, body.receiver, body.msgid), (1, 2, 5));
    assert_eq!(body.content.as_ref(), b"v1 hello");
    assert_eq!(notify, 1);
    let pong = {
        b.send(PING, 0, Bytes::new()).await;
        b.expect(PONG).await
    };
    assert_eq!(pong.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_im_v0_client_gets_bodies_without_timestamp() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 0).await;
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    assert_eq!(a.im(1, 2, 9, "zero").await, md(1, 0));

    let (meta, f, _) = b.expect_push(IM).await;
    assert_eq!(meta, md(1, 0));
    assert_eq!(f.version, 0);
    assert_eq!(
        f.body.len(),
        20 + 4,
        "v0 IM body: sender, receiver, msgid, content"
    );
    assert_eq!(&f.body[..8], &1i64.to_be_bytes());
    assert_eq!(&f.body[8..16], &2i64.to_be_bytes());
    assert_eq!(&f.body[16..20], &9i32.to_be_bytes());
    assert_eq!(&f.body[20..], b"zero");

    // Synced copies are re-encoded at v0 too.
    let batch = b.sync(0).await;
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.messages[0].version, 0);
    assert_eq!(batch.messages[0].body, f.body);

    // A v0 client sends v0 bodies and gets a 4-byte ACK; a v2 receiver sees a server timestamp.
    let seq = b.send_im(2, 1, 3, "from v0").await;
    assert_eq!(b.expect_stored_ack(seq).await, md(2, 1));
    let (meta, f, _) = a.expect_push(IM).await;
    assert_eq!(meta, md(2, 1));
    let body = im_of(&f);
    assert_eq!((body.sender, body.receiver, body.msgid), (2, 1, 3));
    assert_eq!(body.content.as_ref(), b"from v0");
    assert!(
        (body.timestamp as i64 - now_secs()).abs() <= 2,
        "timestamp {}",
        body.timestamp
    );
}

// ---------------------------------------------------------------- 3. multi-device

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_device_copy_goes_to_other_devices_with_their_own_metadata() {
    let im = Im::start(&[]);
    let mut phone = Raw::login(im.tcp, 1, "phone", 2).await.named("phone");
    let mut desk = Raw::login(im.tcp, 1, "desktop", 2).await.named("desktop");
    let mut b = Raw::login(im.tcp, 2, "b", 2).await.named("b");
    let mut c = Raw::login(im.tcp, 3, "c", 2).await.named("c");
    // Make B's queue longer than A's so the two queues' ids differ.
    for i in 1..=2 {
        c.im(3, 2, i, "from c").await;
        assert_eq!(b.expect_push(IM).await.0, md(i as i64, i as i64 - 1));
    }

    assert_eq!(phone.im(1, 2, 10, "from phone").await, md(1, 0));
    let (meta, f, notify) = desk.expect_push(IM).await;
    assert_eq!(
        meta,
        md(1, 0),
        "the other device gets the sender queue's ids"
    );
    assert_eq!(f.flag, PUSH);
    assert_eq!(im_of(&f).content.as_ref(), b"from phone");
    assert_eq!(
        notify, 1,
        "SYNC_NOTIFY carries the sender queue's id (not the receiver's 3)"
    );
    let (meta, _, notify) = b.expect_push(IM).await;
    assert_eq!((meta, notify), (md(3, 2), 3));
    phone.assert_quiet().await; // the sending device gets no copy

    // B answers: both of A's devices get it.
    assert_eq!(b.im(2, 1, 20, "reply").await, md(4, 3));
    assert_eq!(phone.expect_push(IM).await.0, md(2, 1));
    assert_eq!(desk.expect_push(IM).await.0, md(2, 1));

    // SELF marks messages sent from this very device only.
    let s = phone.sync(0).await;
    assert_eq!(s.contents(), ["from phone", "reply"]);
    assert_eq!(s.flags(), [SELF, 0]);
    let s = desk.sync(0).await;
    assert_eq!(s.flags(), [0, 0]);
    let mut phone2 = Raw::login(im.tcp, 1, "phone", 2).await.named("phone again");
    assert_eq!(
        phone2.sync(0).await.flags(),
        [SELF, 0],
        "device identity survives reconnecting"
    );
    let s = b.sync(0).await;
    assert_eq!(s.contents(), ["from c", "from c", "from phone", "reply"]);
    assert_eq!(s.flags(), [0, 0, 0, SELF]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_tabs_without_device_id_are_distinct_devices() {
    let im = Im::start(&[]);
    let mut tab1 = Raw::login_token(im.tcp, &token(1), 3, "", 2)
        .await
        .named("tab1");
    let mut tab2 = Raw::login_token(im.tcp, &token(1), 3, "", 2)
        .await
        .named("tab2");
    assert_eq!(tab1.im(1, 2, 1, "from tab1").await, md(1, 0));
    let (meta, f, _) = tab2.expect_push(IM).await;
    assert_eq!(meta, md(1, 0));
    assert_eq!(im_of(&f).content.as_ref(), b"from tab1");
    tab1.assert_quiet().await;
}

// ---------------------------------------------------------------- 4. sync

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_by_sync_oldest_first() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    for i in 1..=3 {
        a.im(1, 2, i, &format!("m{i}")).await;
    }
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let s = b.sync(0).await;
    assert_eq!(s.begin, 0);
    assert_eq!(s.end, 3);
    assert!(
        s.after.is_empty(),
        "no SYNC_NOTIFY when nothing remains: {}",
        describe(&s.after)
    );
    assert!(
        s.messages
            .iter()
            .all(|f| f.cmd == IM && f.flag == 0 && f.version == 2),
        "{}",
        describe(&s.messages)
    );
    let ims = s.ims();
    assert_eq!(ims.iter().map(|m| m.msgid).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(ims.iter().all(|m| m.sender == 1 && m.receiver == 2));
    assert_eq!(s.contents(), ["m1", "m2", "m3"]);
    // Nothing after the newest key.
    let s = b.sync(3).await;
    assert_eq!((s.begin, s.messages.len(), s.end), (3, 0, 3));
}

/// Sends `n` IMs without waiting, then collects the ACKs in order.
async fn send_many(a: &mut Raw, sender: i64, receiver: i64, n: i32, prefix: &str) -> Vec<Metadata> {
    let mut seqs = Vec::new();
    for i in 1..=n {
        seqs.push(
            a.send_im(sender, receiver, i, &format!("{prefix}{i}"))
                .await,
        );
    }
    let mut metas = Vec::new();
    for seq in seqs {
        metas.push(a.expect_stored_ack(seq).await);
    }
    metas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_limit_splits_into_windows_with_notify() {
    let im = Im::start(&["--sync-limit", "10"]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let metas = send_many(&mut a, 1, 2, 25, "m").await;
    assert_eq!(metas.last(), Some(&md(25, 24)));

    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut got = Vec::new();
    let mut key = 0;
    let mut windows = Vec::new();
    loop {
        let s = b.sync(key).await;
        assert_eq!(s.begin, key);
        windows.push(s.messages.len());
        got.extend(s.ims().iter().map(|m| m.msgid));
        assert_eq!(
            s.end,
            key + s.messages.len() as i64,
            "SYNC_END = newest id sent"
        );
        key = s.end;
        match s.after.as_slice() {
            [] => break,
            [n] if n.cmd == SYNC_NOTIFY => assert!(
                i64_of(n) > key,
                "has-more notify {} must be past {key}",
                i64_of(n)
            ),
            other => panic!("unexpected after SYNC_END: {}", describe(other)),
        }
        assert!(windows.len() < 10, "sync does not converge");
    }
    assert_eq!(windows, [10, 10, 5]);
    assert_eq!(
        got,
        (1..=25).collect::<Vec<_>>(),
        "all 25 exactly once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sync_loop_receives_every_message_once_across_windows() {
    let im = Im::start(&["--sync-limit", "10"]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    send_many(&mut a, 1, 2, 25, "m").await;
    let mut b = Client::connect(im.tcp).await.expect("connect");
    b.auth(&token(2), 1, "b", 2).await.expect("auth");
    let mut got = Vec::new();
    loop {
        match b.recv_timeout(WAIT).await.expect("event") {
            Event::Synced {
                msg: ferry_common::protocol::Message::Im(m),
                ..
            } => got.push(m.msgid),
            Event::SyncDone { sync_key: 25, .. } => break,
            Event::SyncDone { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, (1..=25).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_zero_resumes_from_stored_key_which_only_grows() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    send_many(&mut a, 1, 2, 5, "m").await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await.named("b");
    b.send(SYNC_KEY, 0, key_body(3)).await;
    b.assert_quiet().await; // SYNC_KEY has no reply
    let s = b.sync(0).await;
    assert!(
        s.begin == 0 || s.begin == 3,
        "SYNC_BEGIN carries the requested or the resolved key, got {}",
        s.begin
    );
    assert_eq!(s.ims().iter().map(|m| m.msgid).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(s.end, 5);

    // A smaller key does not overwrite; nor do 0 and negative keys.
    for k in [2, 0, -7] {
        b.send(SYNC_KEY, 0, key_body(k)).await;
    }
    b.assert_quiet().await;
    let mut b2 = Raw::login(im.tcp, 2, "b2", 2).await.named("b2");
    let s = b2.sync(0).await;
    assert_eq!(
        s.ims().iter().map(|m| m.msgid).collect::<Vec<_>>(),
        [4, 5],
        "stored key stayed 3"
    );

    b.send(SYNC_KEY, 0, key_body(5)).await;
    b.assert_quiet().await;
    let s = b2.sync(0).await;
    assert_eq!((s.messages.len(), s.end), (0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_rewinds_a_client_ahead_of_the_server() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    send_many(&mut a, 1, 2, 3, "m").await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let s = b.sync(1000).await;
    assert_eq!(s.begin, 1000);
    assert!(s.messages.is_empty());
    assert_eq!(s.end, 3, "SYNC_END rewinds to the server's newest id");
    assert!(s.after.is_empty());
}

// ---------------------------------------------------------------- 5. idempotency

/// The same IM twice in one write (a client resending before it could see
/// the ACK): both are answered, the second is judged while the first ACK is
/// not even written, so it is a resend. Returns both ACKs' metadata.
async fn im_twice(c: &mut Raw, receiver: i64, msgid: i32, content: &str) -> (Metadata, Metadata) {
    let body = ferry_common::protocol::im::Im {
        sender: 1,
        receiver,
        timestamp: 1,
        msgid,
        content: Bytes::copy_from_slice(content.as_bytes()),
    }
    .encode(c.version);
    let (s1, s2) = (c.next_seq(), c.next_seq());
    let mut bytes = ferry_common::protocol::Frame::new(IM, c.version, 0, s1, body.clone())
        .to_bytes()
        .to_vec();
    bytes.extend_from_slice(
        &ferry_common::protocol::Frame::new(IM, c.version, 0, s2, body).to_bytes(),
    );
    c.send_bytes(&bytes).await;
    (c.expect_stored_ack(s1).await, c.expect_stored_ack(s2).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_im_is_acked_with_the_original_ids_and_stored_once() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await.named("b");
    let mut a = Raw::login(im.tcp, 1, "dev-a", 2).await.named("a");
    // Resent before the first ACK reached the client: one message.
    assert_eq!(im_twice(&mut a, 2, 42, "once").await, (md(1, 0), md(1, 0)));
    assert_eq!(b.expect_push(IM).await.0, md(1, 0));
    // Sent again after its ACK arrived: not a resend (README "Resends are
    // idempotent"), a second message; as are a different client msgid and
    // the same msgid to another receiver.
    let mut a2 = Raw::login(im.tcp, 1, "dev-a", 2).await.named("a2");
    assert_eq!(a2.im(1, 2, 42, "once").await, md(2, 1));
    assert_eq!(a.im(1, 2, 43, "twice").await, md(3, 2));
    // The receiver got no second copy of the resend: before the next push
    // there is at most a SYNC_NOTIFY(1).
    let mut before = Vec::new();
    let m = loop {
        let f = b.recv().await;
        if f.cmd == METADATA {
            break f;
        }
        before.push(f);
    };
    assert!(
        before.len() <= 1
            && before
                .iter()
                .all(|f| f.cmd == SYNC_NOTIFY && i64_of(f) == 1),
        "no second push of a resent message: {}",
        describe(&before)
    );
    assert_eq!(meta_of(&m), md(2, 1));
    let f = b.expect(IM).await;
    assert_eq!((m.seq + 1, im_of(&f).msgid), (f.seq, 42));
    assert_eq!(i64_of(&b.expect(SYNC_NOTIFY).await), 2);
    assert_eq!(a.im(1, 3, 42, "other receiver").await, md(4, 3));

    let mut fresh = Raw::login(im.tcp, 2, "b-fresh", 2).await;
    let s = fresh.sync(0).await;
    assert_eq!(s.contents(), ["once", "once", "twice"]);
    assert_eq!(s.end, 3);
    let s = a2.sync(0).await;
    assert_eq!(s.contents(), ["once", "once", "twice", "other receiver"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_after_the_dedup_window_is_stored_again() {
    let im = Im::start(&["--dedup-window", "1"]);
    let mut a = Raw::login(im.tcp, 1, "dev-a", 2).await;
    assert_eq!(
        im_twice(&mut a, 2, 42, "once").await,
        (md(1, 0), md(1, 0)),
        "inside the window: a resend"
    );
    // Waiting out the window is the behaviour under test, not synchronisation.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        im_twice(&mut a, 2, 42, "once").await,
        (md(2, 1), md(2, 1)),
        "after the window: a new message (and its own resend)"
    );
}

// ---------------------------------------------------------------- 6. forged sender

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sender_v2_is_refused_with_66_and_not_stored() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let seq = a.send_im(99, 2, 1, "forged").await;
    a.expect_refused(seq, 66).await; // a bare ACK: no METADATA before it
    let seq = a.send_im(1, 0, 2, "to uid 0").await;
    a.expect_refused(seq, 66).await;
    b.assert_quiet().await;
    assert_eq!(b.sync(0).await.messages.len(), 0);
    assert_eq!(a.sync(0).await.messages.len(), 0);
    // The connection is still fine.
    assert_eq!(a.im(1, 2, 3, "genuine").await, md(1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sender_v1_closes_the_connection() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 1).await;
    a.send_im(99, 2, 1, "forged").await;
    a.expect_closed().await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    assert_eq!(b.sync(0).await.messages.len(), 0, "nothing stored");
}

// ---------------------------------------------------------------- 7. rooms and RT

/// Pushes queued for one connection leave in as few socket writes as the
/// reader allows (coalesced across senders): a reader that falls far behind
/// (a small receive buffer, not reading while three senders pipeline 300
/// room messages each) and one that reads as it can both get every message
/// exactly once, each sender's in its sending order, numbered 1, 2, 3, ….
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_burst_reaches_slow_and_fast_readers_whole_and_in_order() {
    const PER_SENDER: usize = 300;
    const SENDERS: i64 = 3;
    let im = Im::start(&[]);
    let mut slow = Raw::connect_small_rcvbuf(im.tcp, 4096).await.named("slow");
    assert_eq!(
        slow.auth(&token(20), 1, "slow", 2).await,
        0,
        "slow reader logged in"
    );
    let mut fast = Raw::login(im.tcp, 21, "fast", 2).await.named("fast");
    slow.enter_room(600).await;
    fast.enter_room(600).await;
    slow.assert_quiet().await;
    fast.assert_quiet().await;
    let mut senders = Vec::new();
    for uid in 1..=SENDERS {
        let mut s = Raw::login(im.tcp, uid, &format!("s{uid}"), 2).await;
        s.enter_room(600).await;
        s.assert_quiet().await;
        senders.push(s);
    }
    // The fast reader reads while the burst is sent.
    let fast_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < PER_SENDER * SENDERS as usize {
            let f = fast.expect(ROOM_IM).await;
            got.push(rt_of(&f));
        }
        fast.assert_quiet().await;
        got
    });
    let mut sending = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        let uid = i as i64 + 1;
        sending.push(tokio::spawn(async move {
            // Pipelined: all frames first, then all ACKs.
            let mut seqs = Vec::new();
            for k in 0..PER_SENDER {
                seqs.push(s.send_room_im(uid, 600, &format!("{uid}-{k}")).await);
            }
            // The other senders' messages reach this sender too (a member).
            for seq in seqs {
                let ack = loop {
                    let f = s.recv().await;
                    if f.cmd != ROOM_IM {
                        break f;
                    }
                };
                assert_eq!(ack.cmd, ACK);
                assert_eq!(ack_of(&ack), (seq, Some(0)));
            }
            s
        }));
    }
    let mut keep = Vec::new();
    for t in sending {
        keep.push(t.await.expect("sender"));
    }
    // Every message was ACKed, so every push is queued or in the socket.
    let mut got = Vec::new();
    while got.len() < PER_SENDER * SENDERS as usize {
        got.push(rt_of(&slow.expect(ROOM_IM).await));
    }
    slow.assert_quiet().await;
    for (who, got) in [("slow", got), ("fast", fast_reader.await.expect("fast"))] {
        let mut next = [0usize; SENDERS as usize];
        for m in got {
            assert_eq!(m.receiver, 600);
            let i = (m.sender - 1) as usize;
            assert_eq!(
                std::str::from_utf8(&m.content).expect("utf-8"),
                format!("{}-{}", m.sender, next[i]),
                "{who}: sender {}'s messages in order, none lost or repeated",
                m.sender
            );
            next[i] += 1;
        }
        assert_eq!(next, [PER_SENDER; SENDERS as usize], "{who}: all arrived");
    }
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_reach_other_members_and_are_acked() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await.named("a");
    let mut a2 = Raw::login(im.tcp, 1, "a-second", 2).await.named("a2");
    let mut b = Raw::login(im.tcp, 2, "b", 2).await.named("b");
    let mut c = Raw::login(im.tcp, 3, "c", 2).await.named("c");
    let mut outside = Raw::login(im.tcp, 4, "d", 2).await.named("outside");
    for r in [&mut a, &mut a2, &mut b] {
        r.enter_room(500).await;
    }
    c.enter_room(501).await;
    for r in [&mut a, &mut a2, &mut b, &mut c] {
        r.assert_quiet().await; // ENTER_ROOM has no reply
    }

    let seq = a.send_room_im(1, 500, "hi room").await;
    let ack = a.expect(ACK).await;
    assert_eq!(ack_of(&ack), (seq, Some(0)));
    for r in [&mut b, &mut a2] {
        let f = r.expect(ROOM_IM).await;
        assert_eq!((f.flag, f.version), (0, 2));
        let m = rt_of(&f);
        assert_eq!((m.sender, m.receiver), (1, 500));
        assert_eq!(m.content.as_ref(), b"hi room");
    }
    a.assert_quiet().await; // not echoed to the sender
    c.assert_quiet().await; // other room
    outside.assert_quiet().await;

    // Not in room 501 → refused with 68, nobody gets it.
    let seq = a.send_room_im(1, 501, "wrong room").await;
    a.expect_refused(seq, 68).await;
    // Forged sender → 66.
    let seq = a.send_room_im(9, 500, "forged").await;
    a.expect_refused(seq, 66).await;
    c.assert_quiet().await;
    b.assert_quiet().await;

    // After LEAVE_ROOM, b gets nothing more.
    b.leave_room(500).await;
    b.assert_quiet().await;
    let seq = a.send_room_im(1, 500, "after leave").await;
    assert_eq!(ack_of(&a.expect(ACK).await), (seq, Some(0)));
    assert_eq!(
        rt_of(&a2.expect(ROOM_IM).await).content.as_ref(),
        b"after leave"
    );
    b.assert_quiet().await;
    // Room messages are not stored.
    assert_eq!(b.sync(0).await.messages.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_im_from_v1_client_outside_its_room_closes_the_connection() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 1).await;
    a.send_room_im(1, 77, "not entered").await;
    a.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_reaches_every_receiver_connection_without_ack() {
    let im = Im::start(&[]);
    let mut b1 = Raw::login(im.tcp, 2, "b1", 2).await.named("b1");
    let mut b2 = Raw::login(im.tcp, 2, "b2", 1).await.named("b2");
    let mut a = Raw::login(im.tcp, 1, "a", 2).await.named("a");
    a.send_rt(1, 2, "typing").await;
    a.assert_quiet().await; // no ACK for RT
    for r in [&mut b1, &mut b2] {
        let f = r.expect(RT).await;
        assert_eq!(f.flag, 0);
        let m = rt_of(&f);
        assert_eq!((m.sender, m.receiver), (1, 2));
        assert_eq!(m.content.as_ref(), b"typing");
        r.assert_quiet().await; // no METADATA / SYNC_NOTIFY: not stored
    }
    let seq = a.send_rt(5, 2, "forged").await;
    a.expect_refused(seq, 66).await;
    b1.assert_quiet().await;
    assert_eq!(b1.sync(0).await.messages.len(), 0, "RT is not stored");
}

// ---------------------------------------------------------------- 8. ping, idle timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_before_and_after_login() {
    let im = Im::start(&[]);
    let mut c = Raw::connect(im.tcp).await;
    c.send(PING, 0, Bytes::new()).await;
    let p = c.expect(PONG).await;
    assert_eq!((p.seq, p.version, p.flag, p.body.len()), (1, 0, 0, 0));
    assert_eq!(c.auth(&token(1), 1, "p", 2).await, 0);
    c.send(PING, 0, Bytes::new()).await;
    let p = c.expect(PONG).await;
    assert_eq!((p.seq, p.version, p.body.len()), (3, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_active_ones_stay() {
    let im = Im::start(&["--idle-timeout", "1"]);
    let mut idle = Raw::login(im.tcp, 1, "idle", 2).await.named("idle");
    let mut anon = Raw::connect(im.tcp).await.named("idle anon");
    let mut active = Raw::login(im.tcp, 2, "active", 2).await.named("active");
    // Half a frame does not count as activity.
    let mut partial = Raw::login(im.tcp, 3, "partial", 2)
        .await
        .named("partial frame");
    let start = Instant::now();
    partial
        .send_bytes(&[header(100, 2, IM, 2), vec![0; 10]].concat())
        .await;
    let keep_alive = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        while start.elapsed() < Duration::from_millis(2600) {
            tick.tick().await;
            active.assert_quiet().await;
        }
        active
    };
    let close_idle = async move {
        idle.drain_until_closed(Duration::from_secs(5)).await;
        start.elapsed()
    };
    let close_anon = async move {
        anon.drain_until_closed(Duration::from_secs(5)).await;
        start.elapsed()
    };
    let close_partial = async move {
        partial.drain_until_closed(Duration::from_secs(5)).await;
        start.elapsed()
    };
    let (mut active, t_idle, t_anon, t_partial) =
        tokio::join!(keep_alive, close_idle, close_anon, close_partial);
    for (what, t) in [
        ("logged-in", t_idle),
        ("anonymous", t_anon),
        ("partial-frame", t_partial),
    ] {
        assert!(
            t >= Duration::from_millis(900) && t < Duration::from_secs(4),
            "{what} idle connection closed after {t:?}"
        );
    }
    // Still usable after 2.6 s of pinging with a 1 s idle timeout.
    assert_eq!(active.im(2, 3, 1, "alive").await, md(1, 0));
}

// ---------------------------------------------------------------- 9. malformed input

/// Sends `bytes` on a fresh connection (logged in first when `login`), which
/// the server must close without a reply; then a healthy client on the
/// same server still gets an IM through.
async fn bad_input_closes_only_that_connection(im: &Im, cases: Vec<(&str, bool, Vec<u8>)>) {
    let mut good = Raw::login(im.tcp, 1, "good", 2).await.named("good sender");
    let mut rcv = Raw::login(im.tcp, 2, "rcv", 2).await.named("good receiver");
    for (i, (what, login, bytes)) in cases.into_iter().enumerate() {
        let mut bad = if login {
            Raw::login(im.tcp, 9, "bad", 2).await
        } else {
            Raw::connect(im.tcp).await
        }
        .named(what);
        bad.send_bytes(&bytes).await;
        bad.expect_closed().await;
        let i = i as i32 + 1;
        assert_eq!(
            good.im(1, 2, i, what).await,
            md(i as i64, i as i64 - 1),
            "after {what}"
        );
        let (_, f, _) = rcv.expect_push(IM).await;
        assert_eq!(im_of(&f).content.as_ref(), what.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_length_headers_close_the_connection() {
    let im = Im::start(&[]);
    bad_input_closes_only_that_connection(
        &im,
        vec![
            // Only the header: the server must not wait for the body.
            ("length 32768", false, header(32768, 1, IM, 2)),
            ("length 32768 after login", true, header(32768, 2, IM, 2)),
            ("length i32::MAX", true, header(i32::MAX, 2, IM, 2)),
            ("negative length", false, header(-1, 1, PING, 2)),
            (
                "negative length after login",
                true,
                header(i32::MIN, 2, IM, 2),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_commands_close_the_connection() {
    let im = Im::start(&[]);
    bad_input_closes_only_that_connection(
        &im,
        vec![
            ("cmd 130 (SUBSCRIBE)", true, header(0, 2, 130, 2)),
            (
                "cmd 130 body announced, not sent",
                false,
                header(100, 1, 130, 2),
            ),
            ("cmd 1 (old HEARTBEAT)", true, header(0, 2, 1, 2)),
            ("cmd 1 before login", false, header(0, 1, 1, 2)),
            ("cmd 23 (CUSTOMER_SERVICE)", true, header(0, 2, 23, 2)),
            (
                "cmd 3 (AUTH_STATUS)",
                true,
                [header(4, 2, AUTH_STATUS, 2), vec![0; 4]].concat(),
            ),
            ("cmd 255", true, header(0, 2, 255, 2)),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_close_the_connection() {
    let auth_truncated = [1u8, 50, b'a', b'b', b'c'];
    let im = Im::start(&[]);
    bad_input_closes_only_that_connection(
        &im,
        vec![
            (
                "PING with a body",
                false,
                [header(1, 1, PING, 2), vec![0]].concat(),
            ),
            (
                "PING with a body after login",
                true,
                [header(4, 2, PING, 2), vec![0; 4]].concat(),
            ),
            (
                "PONG with a body",
                true,
                [header(2, 2, PONG, 2), vec![0; 2]].concat(),
            ),
            (
                "truncated AUTH (token_len past the end)",
                false,
                [header(5, 1, AUTH_TOKEN, 2), auth_truncated.to_vec()].concat(),
            ),
            (
                "AUTH shorter than 4 bytes",
                false,
                [header(3, 1, AUTH_TOKEN, 2), vec![1, 0, 0]].concat(),
            ),
            (
                "IM v2 body of 20 bytes",
                true,
                [header(20, 2, IM, 2), vec![0; 20]].concat(),
            ),
            (
                "METADATA of 16 bytes",
                true,
                [header(16, 2, METADATA, 2), vec![0; 16]].concat(),
            ),
            (
                "SYNC of 4 bytes",
                true,
                [header(4, 2, SYNC, 2), vec![0; 4]].concat(),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_writes_or_coalesced_are_parsed() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    // One IM trickled byte by byte.
    let body = ferry_common::protocol::im::Im {
        sender: 1,
        receiver: 2,
        timestamp: 0,
        msgid: 1,
        content: Bytes::from_static(b"slow"),
    }
    .encode(2);
    let seq = a.next_seq();
    let bytes = ferry_common::protocol::Frame::new(IM, 2, 0, seq, body).to_bytes();
    for byte in bytes.iter() {
        a.send_bytes(&[*byte]).await;
    }
    assert_eq!(a.expect_stored_ack(seq).await, md(1, 0));
    // Three frames in one write.
    let mut burst = Vec::new();
    let mut seqs = Vec::new();
    for i in 2..=4 {
        let seq = a.next_seq();
        let body = ferry_common::protocol::im::Im {
            sender: 1,
            receiver: 2,
            timestamp: 0,
            msgid: i,
            content: Bytes::from_static(b"burst"),
        }
        .encode(2);
        burst
            .extend_from_slice(&ferry_common::protocol::Frame::new(IM, 2, 0, seq, body).to_bytes());
        seqs.push(seq);
    }
    a.send_bytes(&burst).await;
    for (i, seq) in seqs.into_iter().enumerate() {
        let id = i as i64 + 2;
        assert_eq!(a.expect_stored_ack(seq).await, md(id, id - 1));
    }
    for id in 1..=4 {
        assert_eq!(b.expect_push(IM).await.0, md(id, id - 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_allowed_body_is_accepted() {
    let im = Im::start(&[]);
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let content = "y".repeat(32767 - 24);
    assert_eq!(a.im(1, 2, 1, &content).await, md(1, 0));
    let (_, f, _) = b.expect_push(IM).await;
    assert_eq!(f.body.len(), 32767);
    assert_eq!(b.sync(0).await.contents(), [content]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_a_malformed_header_are_still_processed() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    // IM + PING + a disallowed command, in one write: the server handles
    // the complete frames in order (store + ACK, PONG), then closes at the
    // bad header, as gobelieve does (spec §1.6: closed right after *that*
    // header is read).
    let seq = a.next_seq();
    let body = ferry_common::protocol::im::Im {
        sender: 1,
        receiver: 2,
        timestamp: 0,
        msgid: 1,
        content: Bytes::from_static(b"last words"),
    }
    .encode(2);
    let mut bytes = ferry_common::protocol::Frame::new(IM, 2, 0, seq, body)
        .to_bytes()
        .to_vec();
    bytes.extend_from_slice(&header(0, seq + 1, PING, 2));
    bytes.extend_from_slice(&header(0, seq + 2, 130, 2));
    a.send_bytes(&bytes).await;
    let frames = a.drain_until_closed(WAIT).await;
    assert_eq!(
        frames.iter().map(|f| f.cmd).collect::<Vec<_>>(),
        [METADATA, ACK, PONG],
        "replies to the frames before the bad header: {}",
        describe(&frames)
    );
    // b logs in afterwards: the message was stored before the close.
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    assert_eq!(b.sync(0).await.contents(), ["last words"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_before_an_undecodable_frame_are_flushed() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    // IM + a PING with a body, in one write: the IM is stored and ACKed,
    // then the connection is closed for the bad PING. The ACK must not be
    // thrown away (the message *was* stored).
    let seq = a.next_seq();
    let body = ferry_common::protocol::im::Im {
        sender: 1,
        receiver: 2,
        timestamp: 0,
        msgid: 1,
        content: Bytes::from_static(b"stored"),
    }
    .encode(2);
    let mut bytes = ferry_common::protocol::Frame::new(IM, 2, 0, seq, body)
        .to_bytes()
        .to_vec();
    bytes.extend_from_slice(&[header(1, seq + 1, PING, 2), vec![0]].concat());
    a.send_bytes(&bytes).await;
    let frames = a.drain_until_closed(WAIT).await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    let stored = b.sync(0).await.contents();
    assert_eq!(
        (frames.iter().map(|f| f.cmd).collect::<Vec<_>>(), stored),
        (vec![METADATA, ACK], vec!["stored".to_string()]),
        "frames before the close: {}",
        describe(&frames)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_but_ignored_commands_get_no_reply() {
    let im = Im::start(&[]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    a.send(ACK, 0, Bytes::from_static(&[1])).await; // client ACKs: any length
    a.send(ACK, 0, Bytes::from_static(&[0, 0, 0, 1, 0])).await;
    a.send(PONG, 0, Bytes::new()).await;
    a.send(METADATA, 0, Bytes::from_static(&[0; 32])).await;
    a.send(CUSTOMER, 0, Bytes::from_static(&[0; 36])).await;
    a.send(CUSTOMER_SUPPORT, 0, Bytes::from_static(&[0; 40]))
        .await;
    a.assert_quiet().await;
    assert_eq!(a.im(1, 2, 1, "still here").await, md(1, 0));
}

// ---------------------------------------------------------------- 10. slow consumer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_dropped_without_slowing_the_sender_and_loses_nothing() {
    const N: i32 = 800;
    const SIZE: usize = 16 * 1024;
    let im = Im::start(&["--outbox-bytes", "65536"]);
    // The receiver logs in and then never reads; a small receive buffer
    // makes its socket fill quickly.
    let mut stalled = Raw::connect_small_rcvbuf(im.tcp, 4096)
        .await
        .named("stalled receiver");
    assert_eq!(stalled.auth(&token(2), 1, "stalled", 2).await, 0);

    let opts = ClientOptions {
        sync: false,
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let sender = Client::connect_with(im.tcp, opts).await.expect("connect");
    sender.auth(&token(1), 1, "sender", 2).await.expect("auth");
    let started = Instant::now();
    // 8 requests in flight at a time.
    let mut tasks = Vec::new();
    for lane in 0..8 {
        let h = sender.handle();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut i = lane + 1;
            while i <= N {
                let content = format!("{i:05}:{}", "x".repeat(SIZE));
                let ack = h
                    .send_im(2, content, i)
                    .await
                    .unwrap_or_else(|e| panic!("message {i}: {e}"));
                assert!(ack.is_ok(), "message {i}: ACK status {}", ack.status);
                acks.push(i);
                i += 8;
            }
            acks
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.expect("sender task").len();
    }
    assert_eq!(acked, N as usize);
    let took = started.elapsed();

    // The stalled receiver was disconnected: reading now yields some frames, then the close.
    let frames = stalled.drain_until_closed(Duration::from_secs(10)).await;
    let pushed = frames.iter().filter(|f| f.cmd == IM).count();
    eprintln!(
        "slow consumer: {pushed} of {N} pushes reached the stalled receiver before the drop; sending took {took:?}"
    );
    assert!(
        pushed < N as usize,
        "the receiver got all {pushed} pushes: it was never dropped"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&http_get(im.http, "/summary").await).expect("json");
    assert_eq!(summary["slow_consumer_drops"], 1, "{summary}");
    assert!(
        took < Duration::from_secs(25),
        "sending {N} messages took {took:?}"
    );

    // Reconnect: every message is there, in order, once.
    let mut b = Raw::login(im.tcp, 2, "stalled", 2).await;
    let s = b.sync(0).await;
    assert_eq!(s.end, N as i64);
    let ids: Vec<i32> = s
        .contents()
        .iter()
        .map(|c| c[..5].parse().expect("prefix"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted,
        (1..=N).collect::<Vec<_>>(),
        "every message exactly once"
    );
    assert!(s.contents().iter().all(|c| c.len() == 6 + SIZE));
}

// ---------------------------------------------------------------- 11. CUSTOMER_V2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_v2_between_app_and_kefu_app_both_ways() {
    let im = Im::start(&["--kefu-appid", "100"]);
    let mut cust = Raw::login_token(im.tcp, &token_for(7, 11), 1, "cust", 2)
        .await
        .named("customer");
    let mut agent = Raw::login_token(im.tcp, &token_for(100, 21), 1, "agent", 2)
        .await
        .named("agent");
    let mut same_uid_other_app = Raw::login_token(im.tcp, &token_for(7, 21), 1, "x", 2)
        .await
        .named("7/21");
    let mut cust_tablet = Raw::login_token(im.tcp, &token_for(7, 11), 1, "cust-tablet", 2)
        .await
        .named("customer tablet");

    let seq = cust.send_customer(7, 11, 100, 21, "help").await;
    assert_eq!(cust.expect_stored_ack(seq).await, md(1, 0));
    let (meta, f, notify) = agent.expect_push(CUSTOMER_V2).await;
    assert_eq!((meta, notify), (md(1, 0), 1));
    assert_eq!(f.flag, PUSH);
    let m = customer_of(&f);
    assert_eq!(
        (m.sender_appid, m.sender, m.receiver_appid, m.receiver),
        (7, 11, 100, 21)
    );
    assert_eq!(m.content.as_ref(), b"help");
    assert!(
        (m.timestamp as i64 - now_secs()).abs() <= 2,
        "server timestamp, got {}",
        m.timestamp
    );
    same_uid_other_app.assert_quiet().await; // uid 21 of app 7 is someone else
    // The customer's other device gets its copy with the customer queue's ids.
    let (meta, f, notify) = cust_tablet.expect_push(CUSTOMER_V2).await;
    assert_eq!((meta, notify), (md(1, 0), 1));
    assert_eq!(customer_of(&f).content.as_ref(), b"help");
    cust.assert_quiet().await;

    let seq = agent.send_customer(100, 21, 7, 11, "sure").await;
    assert_eq!(agent.expect_stored_ack(seq).await, md(2, 1));
    let (meta, f, notify) = cust.expect_push(CUSTOMER_V2).await;
    assert_eq!((meta, notify), (md(2, 1), 2));
    assert_eq!(customer_of(&f).content.as_ref(), b"sure");

    // Stored on both sides; SELF for the side that sent it.
    let s = cust.sync(0).await;
    assert_eq!(s.contents(), ["help", "sure"]);
    assert_eq!(s.flags(), [SELF, 0]);
    let s = agent.sync(0).await;
    assert_eq!(s.contents(), ["help", "sure"]);
    assert_eq!(s.flags(), [0, SELF]);

    // Neither side is the kefu app → refused; so is a forged sender appid.
    let seq = cust.send_customer(7, 11, 8, 21, "no kefu").await;
    cust.expect_refused(seq, 66).await;
    let seq = cust.send_customer(100, 11, 7, 21, "forged appid").await;
    cust.expect_refused(seq, 66).await;
    same_uid_other_app.assert_quiet().await;
    assert_eq!(same_uid_other_app.sync(0).await.messages.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_v2_without_kefu_appid_is_refused() {
    let im = Im::start(&[]);
    let mut cust = Raw::login_token(im.tcp, &token_for(7, 11), 1, "cust", 2).await;
    let seq = cust.send_customer(7, 11, 100, 21, "help").await;
    cust.expect_refused(seq, 66).await;
    let mut agent = Raw::login_token(im.tcp, &token_for(100, 21), 1, "agent", 2).await;
    assert_eq!(agent.sync(0).await.messages.len(), 0);
}
