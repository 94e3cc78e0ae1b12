//! Isolation (issue 7 §4), against real processes: a client can never send
//! as another uid, reach another app's user or room, or read another user's
//! queue; the HTTP API with `--api-token` refuses requests without it; the
//! imr refuses links that fail the HELLO handshake.

mod support;
mod wire;

use bytes::Bytes;
use ferry_common::link::{HELLO, Hello, LINK_VERSION, MAX_LINK_BODY, SUBSCRIBE, Subscribe};
use ferry_common::protocol::ack::STATUS_INVALID_SENDER;
use ferry_common::protocol::command::*;
use ferry_common::protocol::{Frame, split_frame};
use support::{Im, Imr, LINK_SECRET, token_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::*;

async fn login_app(im: &Im, appid: i64, uid: i64, device: &str) -> Raw {
    Raw::login_token(im.tcp, &token_for(appid, uid), 1, device, 2).await
}

#[tokio::test]
async fn a_client_cannot_send_as_another_uid() {
    let im = Im::start(&[]);
    let mut victim_peer = login_app(&im, 7, 2, "b").await;
    let mut a = login_app(&im, 7, 1, "a").await;
    // IM, ROOM_IM and customer messages with a forged sender are refused.
    let seq = a.send_im(99, 2, 1, "forged").await;
    a.expect_refused(seq, STATUS_INVALID_SENDER).await;
    a.enter_room(5).await;
    victim_peer.enter_room(5).await;
    let seq = a.send_room_im(99, 5, "forged room").await;
    a.expect_refused(seq, STATUS_INVALID_SENDER).await;
    // Nothing reached uid 2, and nothing was stored in its queue.
    victim_peer.assert_quiet().await;
    let batch = victim_peer.sync(0).await;
    assert!(batch.messages.is_empty(), "{}", describe(&batch.messages));
}

#[tokio::test]
async fn apps_are_separate_for_peers_rooms_and_queues() {
    let im = Im::start(&[]);
    let mut b7 = login_app(&im, 7, 2, "b7").await;
    let mut b8 = login_app(&im, 8, 2, "b8").await;
    let mut a7 = login_app(&im, 7, 1, "a7").await;
    // Same uid in another app: the message only reaches app 7's uid 2.
    a7.im(1, 2, 1, "app 7 only").await;
    let (_, f, _) = b7.expect_push(IM).await;
    assert_eq!(im_of(&f).content, "app 7 only".as_bytes());
    b8.assert_quiet().await;
    assert!(b8.sync(0).await.messages.is_empty());
    // Same room id in another app: a separate room.
    a7.enter_room(100).await;
    b7.enter_room(100).await;
    b8.enter_room(100).await;
    // Each connection's ENTER_ROOM is applied before the message is sent
    // (connections are served concurrently).
    a7.barrier().await;
    b7.barrier().await;
    b8.barrier().await;
    let seq = a7.send_room_im(1, 100, "room of app 7").await;
    assert_eq!(ack_of(&a7.expect(ACK).await), (seq, Some(0)));
    assert_eq!(
        rt_of(&b7.expect(ROOM_IM).await).content,
        "room of app 7".as_bytes()
    );
    b8.assert_quiet().await;
    // RT to the same uid in another app: not delivered there either.
    a7.send_rt(1, 2, "rt").await;
    assert_eq!(b7.expect(RT).await.cmd, RT);
    b8.assert_quiet().await;
}

#[tokio::test]
async fn a_client_only_ever_syncs_its_own_queue() {
    let im = Im::start(&[]);
    let mut a = login_app(&im, 7, 1, "a").await;
    for i in 0..5 {
        a.im(1, 2, i + 1, "for uid 2").await;
    }
    // uid 3 syncs from 0 and from keys of uid 2's queue: never uid 2's messages.
    let mut c = login_app(&im, 7, 3, "c").await;
    for key in [0, 1, 3, i64::MAX, -1] {
        let b = c.sync(key).await;
        assert!(
            b.messages.is_empty(),
            "key {key}: {}",
            describe(&b.messages)
        );
    }
    // The sender's own queue holds its 5 copies, uid 2's holds 5 too.
    assert_eq!(a.sync(0).await.ims().len(), 5);
    let mut b = login_app(&im, 7, 2, "b").await;
    assert_eq!(b.sync(0).await.ims().len(), 5);
}

async fn http(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)[9..12]
        .parse()
        .expect("status")
}

#[tokio::test]
async fn http_api_with_api_token_refuses_requests_without_it() {
    let im = Im::start(&["--api-token", "s3cret-token"]);
    for path in [
        "/summary",
        "/load_latest_message?appid=7&uid=1&limit=5",
        "/get_offline_count?appid=7&uid=1",
        "/post_peer_message?appid=7&sender=1&receiver=2",
    ] {
        assert_eq!(http(im.http, path, None).await, 401, "{path} without token");
        assert_eq!(
            http(im.http, path, Some("wrong")).await,
            401,
            "{path} wrong token"
        );
    }
    assert_eq!(http(im.http, "/summary", Some("s3cret-token")).await, 200);
    assert_eq!(
        http(im.http, "/health", None).await,
        200,
        "liveness needs no token"
    );
    assert!(
        !im.log().contains("s3cret-token"),
        "the token is never logged"
    );
}

/// Sends `frames` on a fresh link connection; true if the imr then closed
/// it (a version mismatch gets the imr's HELLO first, then the close).
async fn refused(imr: &Imr, frames: &[Frame]) -> bool {
    let mut s = TcpStream::connect(imr.link).await.expect("connect imr");
    for f in frames {
        if s.write_all(&f.to_bytes()).await.is_err() {
            return true;
        }
    }
    let mut buf = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(WAIT, s.read_buf(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => while let Ok(Some(_)) = split_frame(&mut buf, MAX_LINK_BODY) {},
        }
    }
}

fn hello(secret: &str, version: u16) -> Frame {
    let body = Hello {
        version,
        secret: Bytes::copy_from_slice(secret.as_bytes()),
        name: Bytes::new(),
    }
    .encode();
    Frame::new(HELLO, 0, 0, 1, body)
}

#[tokio::test]
async fn imr_refuses_links_failing_the_handshake() {
    let imr = Imr::start(None, &[]);
    let sub = |uid| {
        Frame::new(
            SUBSCRIBE,
            0,
            0,
            2,
            Subscribe {
                appid: 7,
                uid,
                online: true,
            }
            .encode(),
        )
    };
    let cases: Vec<(&str, Vec<Frame>)> = vec![
        ("wrong secret", vec![hello("wrong", LINK_VERSION), sub(1)]),
        ("no secret", vec![hello("", LINK_VERSION), sub(2)]),
        (
            "other version",
            vec![hello(LINK_SECRET, LINK_VERSION + 1), sub(3)],
        ),
        ("no HELLO", vec![sub(4)]),
        (
            "garbage HELLO",
            vec![Frame::new(
                HELLO,
                0,
                0,
                1,
                Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            )],
        ),
    ];
    for (what, frames) in &cases {
        assert!(refused(&imr, frames).await, "{what}: link not closed");
    }
    for uid in 1..=4 {
        assert!(
            !imr.is_online(7, uid),
            "a refused link subscribed uid {uid}"
        );
    }
    // The right secret is accepted and its subscription takes effect.
    let mut ok = TcpStream::connect(imr.link).await.expect("connect");
    for f in [hello(LINK_SECRET, LINK_VERSION), sub(9)] {
        ok.write_all(&f.to_bytes()).await.expect("write");
    }
    imr.wait_online(7, 9);
    assert!(imr.log().contains("link refused: wrong link secret"));
}

/// Groups are not provisioned on this branch: every group is unknown, so a
/// client can neither post to nor read any group, its app's or another's.
#[tokio::test]
async fn no_group_of_any_app_can_be_posted_to_or_read() {
    use ferry_common::protocol::ack::STATUS_GROUP_NOT_EXIST;
    use ferry_common::protocol::group_sync::GroupSyncKey;
    let im = Im::start(&[]);
    let mut a = login_app(&im, 8, 1, "a8").await;
    let body = ferry_common::protocol::im::Im {
        sender: 1,
        receiver: 77,
        timestamp: 0,
        msgid: 1,
        content: Bytes::from_static(b"into a group"),
    }
    .encode(2);
    let seq = a.send(GROUP_IM, 0, body).await;
    a.expect_refused(seq, STATUS_GROUP_NOT_EXIST).await;
    let g = GroupSyncKey {
        group_id: 77,
        sync_key: 0,
    };
    a.send(SYNC_GROUP, 0, g.encode()).await;
    a.expect(SYNC_GROUP_BEGIN).await;
    a.expect(SYNC_GROUP_END).await;
    a.assert_quiet().await;
}
