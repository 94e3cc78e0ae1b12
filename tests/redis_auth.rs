//! `--auth redis` against a real redis-server: gobelieve's token hashes,
//! device numbers and unread counts (README "Connecting a client", spec §3.1,
//! §3.9, §11.1).

mod support;
mod wire;

use bytes::Bytes;
use ferry_common::protocol::command::*;
use ferry_common::protocol::metadata::Metadata;
use support::{Im, Redis};
use wire::*;

fn start() -> (Redis, Im) {
    let redis = Redis::start();
    let url = redis.url();
    let im = Im::start(&["--auth", "redis", "--redis", &url]);
    (redis, im)
}

fn unread(n: i32) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_token_logs_in_as_its_user() {
    let (redis, im) = start();
    redis.cli(&["HSET", "access_token_tok5", "user_id", "5", "app_id", "7"]);
    let mut c = Raw::connect(im.tcp).await.named("uid 5");
    assert_eq!(c.auth("tok5", 1, "dev-a", 2).await, 0);
    // uid 5 of app 7: its own messages are accepted, others' refused.
    assert_eq!(
        c.im(5, 6, 1, "as 5").await,
        Metadata {
            sync_key: 1,
            prev_sync_key: 0
        }
    );
    let seq = c.send_im(6, 5, 2, "as 6").await;
    c.expect_refused(seq, 66).await;
    // The receiver is uid 6 of app 7 (a JWT would do as well, but stay in redis mode).
    redis.cli(&["HSET", "access_token_tok6", "user_id", "6", "app_id", "7"]);
    let mut r = Raw::login_token(im.tcp, "tok6", 1, "dev-r", 2).await;
    assert_eq!(r.sync(0).await.contents(), ["as 5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_redis_token_gets_status_1_and_is_closed() {
    let (redis, im) = start();
    redis.cli(&["HSET", "access_token_nouid", "app_id", "7"]);
    for tok in ["never-issued", "nouid"] {
        let mut c = Raw::connect(im.tcp).await.named(tok);
        let f = c.auth_frame(tok, 1, "dev", 2).await;
        assert_eq!(i32_of(&f), 1, "{tok}");
        c.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_numbers_are_allocated_in_redis() {
    let (redis, im) = start();
    redis.cli(&["HSET", "access_token_tok5", "user_id", "5", "app_id", "7"]);
    Raw::login_token(im.tcp, "tok5", 1, "dev-a", 2).await;
    assert_eq!(redis.cli(&["GET", "devices_dev-a_1"]), "1");
    assert_eq!(redis.cli(&["GET", "devices_id"]), "1");
    Raw::login_token(im.tcp, "tok5", 2, "dev-b", 2).await;
    assert_eq!(redis.cli(&["GET", "devices_dev-b_2"]), "2");
    // Same device id on another platform is another device.
    Raw::login_token(im.tcp, "tok5", 1, "dev-b", 2).await;
    assert_eq!(redis.cli(&["GET", "devices_dev-b_1"]), "3");
    // A known device keeps its number.
    Raw::login_token(im.tcp, "tok5", 1, "dev-a", 2).await;
    assert_eq!(redis.cli(&["GET", "devices_dev-a_1"]), "1");
    assert_eq!(redis.cli(&["GET", "devices_id"]), "3");
    // No device id: no allocation.
    Raw::login_token(im.tcp, "tok5", 3, "", 2).await;
    assert_eq!(redis.cli(&["GET", "devices_id"]), "3");
    assert_eq!(
        redis.cli(&["KEYS", "devices_*"]).lines().count(),
        4,
        "devices_id + 3 devices"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_count_is_written_and_reset_by_login() {
    let (redis, im) = start();
    redis.cli(&["HSET", "access_token_tok5", "user_id", "5", "app_id", "7"]);
    let mut c = Raw::login_token(im.tcp, "tok5", 1, "dev-a", 2).await;
    assert_eq!(
        redis.cli(&["HGET", "users_7_5", "unread"]),
        "0",
        "login sets unread 0"
    );
    c.send(UNREAD_COUNT, 0, unread(9)).await;
    c.assert_quiet().await; // no reply; processed before the PONG
    assert_eq!(redis.cli(&["HGET", "users_7_5", "unread"]), "9");
    // Another login resets it.
    Raw::login_token(im.tcp, "tok5", 2, "dev-b", 2).await;
    assert_eq!(redis.cli(&["HGET", "users_7_5", "unread"]), "0");
    // Before login, UNREAD_COUNT writes nothing (no users_0_0).
    let mut anon = Raw::connect(im.tcp).await;
    anon.version = 2;
    anon.send(UNREAD_COUNT, 0, unread(4)).await;
    anon.assert_quiet().await;
    assert_eq!(redis.cli(&["EXISTS", "users_0_0"]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_user_cannot_speak_in_rooms() {
    let (redis, im) = start();
    redis.cli(&["HSET", "access_token_tok5", "user_id", "5", "app_id", "7"]);
    redis.cli(&["HSET", "users_7_5", "forbidden", "1"]);
    redis.cli(&["HSET", "access_token_tok6", "user_id", "6", "app_id", "7"]);
    let mut muted = Raw::login_token(im.tcp, "tok5", 1, "m", 2)
        .await
        .named("muted");
    let mut other = Raw::login_token(im.tcp, "tok6", 1, "o", 2)
        .await
        .named("other");
    muted.enter_room(3).await;
    other.enter_room(3).await;
    other.assert_quiet().await;
    let seq = muted.send_room_im(5, 3, "shh").await;
    muted.expect_refused(seq, 67).await;
    other.assert_quiet().await;
    // The unmuted one still can.
    let seq = other.send_room_im(6, 3, "hello").await;
    assert_eq!(ack_of(&other.expect(ACK).await), (seq, Some(0)));
    assert_eq!(
        rt_of(&muted.expect(ROOM_IM).await).content.as_ref(),
        b"hello"
    );
}
