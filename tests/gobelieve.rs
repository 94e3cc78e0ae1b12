//! Moving from gobelieve: the sample `contrib/gobelieve/im.cfg` and
//! `imr.cfg` start a two-node cluster unchanged (only the port numbers are
//! moved to free ones), with Redis tokens, the file's word filter, and mutes
//! announced on `speak_forbidden` reaching both nodes; groups from MySQL
//! follow the app server's `group_manager_stream` on both nodes; the word
//! filter on each message kind.

mod support;
mod wire;

use bytes::Bytes;
use ferry_common::protocol::command::*;
use ferry_common::protocol::flag::TEXT;
use ferry_common::protocol::realtime::Realtime;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::{Redis, free_port, http_get, wait_listening, wait_until};
use wire::*;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/gobelieve");

/// A `ferry im|imr --gobelieve-config FILE` process run from `dir` (where
/// the file's relative paths point), its log in `dir/<name>.log`.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str], wait: &[SocketAddr]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(support::ferry_bin())
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn ferry");
        for addr in wait {
            wait_listening(*addr, &mut child, name);
        }
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample with its default ports replaced.
fn sample(name: &str, replace: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(SAMPLES).join(name)).expect("sample");
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text
}

struct Node {
    proc: Proc,
    tcp: SocketAddr,
}

struct Cluster {
    _db: support::MariaDb,
    redis: Redis,
    _imr: Proc,
    imr_http: SocketAddr,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let db = support::MariaDb::start();
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(SAMPLES).join("dirty_words.txt"),
        dir.path().join("dirty_words.txt"),
    )
    .expect("word file");
    let redis_addr = format!("127.0.0.1:{}", redis.port());
    let link = free_port();
    let imr_http = free_port();
    let imr_cfg = sample(
        "imr.cfg",
        &[
            (":4444", format!(":{link}")),
            ("127.0.0.1:4445", format!("127.0.0.1:{imr_http}")),
            ("127.0.0.1:6379", redis_addr.clone()),
        ],
    );
    std::fs::write(dir.path().join("imr.cfg"), imr_cfg).expect("write");
    let imr = Proc::start(
        dir.path(),
        "imr",
        &["imr", "--gobelieve-config", "imr.cfg"],
        &[
            SocketAddr::from(([127, 0, 0, 1], link)),
            SocketAddr::from(([127, 0, 0, 1], imr_http)),
        ],
    );
    let mut nodes = Vec::new();
    for i in 0..2 {
        let (tcp, ws, http) = (free_port(), free_port(), free_port());
        let cfg = sample(
            "im.cfg",
            &[
                ("port = 23000", format!("port = {tcp}")),
                (":13891", format!(":{ws}")),
                (":6666", format!(":{http}")),
                ("127.0.0.1:4444", format!("127.0.0.1:{link}")),
                ("127.0.0.1:6379", redis_addr.clone()),
                ("127.0.0.1:3306", format!("127.0.0.1:{}", db.port)),
            ],
        );
        let file = format!("im{i}.cfg");
        std::fs::write(dir.path().join(&file), cfg).expect("write");
        let tcp = SocketAddr::from(([127, 0, 0, 1], tcp));
        let http = SocketAddr::from(([127, 0, 0, 1], http));
        let proc = Proc::start(
            dir.path(),
            &format!("im{i}"),
            &["im", "--gobelieve-config", &file],
            &[tcp, http],
        );
        // Ready once its imr link is up.
        wait_until(&format!("im{i} ready"), || {
            http_get(http, "/ready").contains("\"status\":\"ready\"")
        });
        nodes.push(Node { proc, tcp });
    }
    Cluster {
        _db: db,
        redis,
        _imr: imr,
        imr_http: SocketAddr::from(([127, 0, 0, 1], imr_http)),
        nodes,
        _dir: dir,
    }
}

impl Cluster {
    /// A Redis token for uid, as gobelieve's API server writes it.
    async fn login(&self, node: usize, uid: i64) -> Raw {
        let token = format!("tok{uid}");
        self.redis.cli(&[
            "HSET",
            &format!("access_token_{token}"),
            "user_id",
            &uid.to_string(),
            "app_id",
            "7",
        ]);
        Raw::login_token(self.nodes[node].tcp, &token, 1, &format!("dev{uid}"), 2)
            .await
            .named(&format!("uid {uid}@im{node}"))
    }

    /// Polls the imr's `/subscribers` until `links` im links hold `what`
    /// (`uid=N` or `room=N`): subscriptions travel asynchronously.
    fn wait_links(&self, what: &str, links: u64) {
        wait_until(&format!("{what} held by {links} im links"), || {
            let body = http_get(self.imr_http, &format!("/subscribers?appid=7&{what}"));
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["links"].as_u64())
                == Some(links)
        });
    }

    /// Publishes a mute and waits until every node applied it.
    fn mute(&self, uid: i64, flag: u8) {
        let payload = format!("7,{uid},{flag}");
        let forbidden = if flag == 1 { "true" } else { "false" };
        let line = format!("uid={uid} forbidden={forbidden}");
        wait_until("both nodes subscribed to speak_forbidden", || {
            self.redis.cli(&["PUBLISH", "speak_forbidden", &payload]) == "2"
        });
        for (i, n) in self.nodes.iter().enumerate() {
            wait_until(&format!("im{i} applied {payload}"), || {
                n.proc.log().contains(&line)
            });
        }
    }
}

async fn room_text(c: &mut Raw, sender: i64, room: i64, text: &str) -> i32 {
    let body = Realtime {
        sender,
        receiver: room,
        content: Bytes::from(format!(r#"{{"text":"{text}"}}"#)),
    }
    .encode();
    c.send(ROOM_IM, TEXT, body).await
}

fn text_of(content: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(content).expect("json content");
    v["text"].as_str().expect("text").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_configs_start_a_cluster_with_words_and_mutes() {
    let c = cluster();
    for (i, n) in c.nodes.iter().enumerate() {
        let log = n.proc.log();
        let warning = log
            .lines()
            .find(|l| l.contains("gobelieve config keys without effect"))
            .unwrap_or_else(|| panic!("im{i}: no ignored-keys warning:\n{log}"));
        for key in [
            "storage_rpc_addrs",
            "pending_root",
            "group_deliver_count",
            "[log] filename",
        ] {
            assert!(warning.contains(key), "im{i}: {key} not named in {warning}");
        }
        assert!(
            log.contains("effective configuration"),
            "im{i}: no debug config"
        );
        // The sample's MySQL password never reaches the log, even at debug.
        assert!(
            log.contains("mysql://root:***@"),
            "im{i}: no MySQL in the config line"
        );
        assert!(
            !log.contains("123456"),
            "im{i}: MySQL password logged:\n{log}"
        );
        assert!(
            log.contains("words=3"),
            "im{i}: word file not loaded:\n{log}"
        );
        // The sample's ":6666" is bound on loopback only, with a warning.
        assert!(log.contains("HTTP API listens on 127.0.0.1"), "im{i}");
    }

    // Peer IM across the nodes, filtered by the file's dictionary.
    let mut a = c.login(0, 1).await;
    let mut b = c.login(1, 2).await;
    c.wait_links("uid=2", 1);
    let seq = a
        .send_im_flag(1, 2, 1, r#"{"text":"you foo, 傻瓜!"}"#, TEXT)
        .await;
    a.expect_stored_ack(seq).await;
    let (_, f, _) = b.expect_push(IM).await;
    assert_eq!(text_of(&im_of(&f).content), "you ***, **!");

    // Rooms on both nodes; mutes reach both nodes.
    let mut d = c.login(1, 3).await;
    for x in [&mut a, &mut b, &mut d] {
        x.enter_room(9).await;
        x.barrier().await;
    }
    c.wait_links("room=9", 2);
    c.mute(1, 1);
    c.mute(3, 1);
    let seq = room_text(&mut a, 1, 9, "hello").await;
    a.expect_refused(seq, 67).await;
    let seq = room_text(&mut d, 3, 9, "hello").await;
    d.expect_refused(seq, 67).await;
    c.mute(1, 0);
    let seq = room_text(&mut a, 1, 9, "badword again").await;
    let ack = a.expect(ACK).await;
    assert_eq!(ack_of(&ack), (seq, Some(0)));
    for x in [&mut b, &mut d] {
        let f = x.expect(ROOM_IM).await;
        assert_eq!(text_of(&rt_of(&f).content), "******* again");
    }
}

/// GROUP_IM with TEXT from `sender` to group `gid` (a new client msgid each
/// time, so no send is taken for a resend of another).
async fn send_group_text(c: &mut Raw, sender: i64, gid: i64, content: &str) -> i32 {
    static MSGID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);
    let body = ferry_common::protocol::im::Im {
        sender,
        receiver: gid,
        timestamp: 1,
        msgid: MSGID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        content: Bytes::copy_from_slice(content.as_bytes()),
    }
    .encode(c.version);
    c.send(GROUP_IM, TEXT, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_filter_masks_text_of_each_message_kind() {
    let words = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(words.path(), "foo\n傻瓜\n").expect("write");
    let path = words.path().to_str().expect("utf-8 path");
    let im = support::Im::start(&["--word-file", path, "--kefu-appid", "7"]);
    let mut a = Raw::login(im.tcp, 1, "a", 2).await.named("a");
    let mut b = Raw::login(im.tcp, 2, "b", 2).await.named("b");

    // IM: JSON text masked; non-JSON and non-TEXT content untouched.
    let cases = [
        (
            r#"{"text":"a foo, 傻|瓜","id":3}"#,
            TEXT,
            Some("a ***, ***"),
        ),
        ("foo as plain text", TEXT, None),
        (r#"{"text":"foo"}"#, 0, None),
    ];
    for (i, (content, flag, masked)) in cases.into_iter().enumerate() {
        let seq = a.send_im_flag(1, 2, i as i32 + 1, content, flag).await;
        a.expect_stored_ack(seq).await;
        let (_, f, _) = b.expect_push(IM).await;
        let got = im_of(&f).content;
        match masked {
            Some(text) => {
                assert_eq!(text_of(&got), text);
                let v: serde_json::Value = serde_json::from_slice(&got).expect("json");
                assert_eq!(v["id"], 3, "other fields kept");
            }
            None => assert_eq!(got.as_ref(), content.as_bytes(), "untouched"),
        }
    }
    // The stored copy is the masked one.
    let synced = b.sync(0).await;
    assert_eq!(text_of(&synced.ims()[0].content), "a ***, ***");

    // GROUP_IM (normal group).
    let (status, body) = support::http_post(
        im.http,
        "/groups",
        br#"{"appid":7,"group_id":50,"members":[1,2]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let seq = send_group_text(&mut a, 1, 50, r#"{"text":"group foo"}"#).await;
    a.expect_stored_ack(seq).await;
    let (_, f, _) = b.expect_push(GROUP_IM).await;
    assert_eq!(text_of(&im_of(&f).content), "group ***");

    // CUSTOMER_V2 (kefu app 7).
    let body = ferry_common::protocol::customer::CustomerV2 {
        sender_appid: 7,
        sender: 1,
        receiver_appid: 7,
        receiver: 2,
        timestamp: 1,
        content: Bytes::from_static(r#"{"text":"kefu foo"}"#.as_bytes()),
    }
    .encode();
    let seq = a.send(CUSTOMER_V2, TEXT, body).await;
    a.expect_stored_ack(seq).await;
    let (_, f, _) = b.expect_push(CUSTOMER_V2).await;
    assert_eq!(text_of(&customer_of(&f).content), "kefu ***");

    // ROOM_IM.
    a.enter_room(5).await;
    b.enter_room(5).await;
    a.barrier().await;
    b.barrier().await;
    let seq = room_text(&mut a, 1, 5, "room 傻瓜").await;
    assert_eq!(ack_of(&a.expect(ACK).await), (seq, Some(0)));
    assert_eq!(text_of(&rt_of(&b.expect(ROOM_IM).await).content), "room **");
}

#[test]
fn a_misspelt_gobelieve_key_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = sample("im.cfg", &[("pending_root", "pending_rot".into())]);
    std::fs::write(dir.path().join("im.cfg"), cfg).expect("write");
    std::fs::write(
        dir.path().join("imr.cfg"),
        "listen = \":4444\"\npush_disable = true\n",
    )
    .expect("write");
    for (cmd, file, key) in [
        ("im", "im.cfg", "pending_rot"),
        ("imr", "imr.cfg", "push_disable"),
    ] {
        let out = Command::new(support::ferry_bin())
            .args([cmd, "--gobelieve-config", file])
            .current_dir(dir.path())
            .output()
            .expect("run ferry");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} started with a bad key");
        assert!(
            stderr.contains(key),
            "{cmd}: error does not name {key}: {stderr}"
        );
        assert!(
            stderr.contains(file),
            "{cmd}: error does not name the file: {stderr}"
        );
    }
}

/// Waits until `c` has the group message `want`: pushed, or (when the node
/// only notified) found by a sync; then drains what came with it.
async fn got_group_message(c: &mut Raw, want: &str) {
    find_group_message(c, want).await;
    c.barrier().await;
}

async fn find_group_message(c: &mut Raw, want: &str) {
    loop {
        let f = c.recv().await;
        match f.cmd {
            GROUP_IM if im_of(&f).content.as_ref() == want.as_bytes() => return,
            SYNC_NOTIFY => {
                c.send(SYNC, 0, Bytes::copy_from_slice(&0i64.to_be_bytes()))
                    .await;
                let mut found = false;
                loop {
                    let f = c.recv().await;
                    if f.cmd == GROUP_IM && im_of(&f).content.as_ref() == want.as_bytes() {
                        found = true;
                    }
                    if f.cmd == SYNC_END {
                        break;
                    }
                }
                if found {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// gobelieve's API server as the group feed sees it: writes MySQL, then
/// `groups_actions` and one `group_manager_stream` entry per change.
struct AppServer<'a> {
    redis: &'a Redis,
    action: std::cell::Cell<i64>,
}

impl AppServer<'_> {
    fn event(&self, name: &str, gid: i64, member: i64) {
        let prev = self.action.get();
        self.announce(prev, prev + 1, name, gid, member);
    }

    fn announce(&self, prev: i64, id: i64, name: &str, gid: i64, member: i64) {
        self.action.set(id);
        let (prev, id, gid, member) = (
            prev.to_string(),
            id.to_string(),
            gid.to_string(),
            member.to_string(),
        );
        self.redis
            .cli(&["SET", "groups_actions", &format!("{prev}:{id}")]);
        self.redis.cli(&[
            "XADD",
            "group_manager_stream",
            "MAXLEN",
            "~",
            "100000",
            "*",
            "action_id",
            &id,
            "previous_action_id",
            &prev,
            "name",
            name,
            "app_id",
            "7",
            "group_id",
            &gid,
            "member_id",
            &member,
            "super",
            "0",
            "mute",
            "0",
        ]);
    }
}

/// Polls `GET /groups/{gid}` on every node until `check` holds for its
/// answer (the node's view of the group, from its memory or MySQL).
fn wait_view(
    nodes: &[&support::Im],
    gid: i64,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    for (i, n) in nodes.iter().enumerate() {
        wait_until(&format!("im{i}: group {gid} {what}"), || {
            let body = http_get(n.http, &format!("/groups/{gid}?appid=7"));
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| check(&v))
        });
    }
}

fn members(v: &serde_json::Value) -> Vec<(i64, bool)> {
    v["data"]["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["uid"].as_i64().unwrap_or(0),
                        m["mute"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_groups_follow_all_seven_events_on_two_nodes() {
    use ferry_common::protocol::ack::{
        STATUS_GROUP_NOT_EXIST, STATUS_MUTED, STATUS_NOT_GROUP_MEMBER,
    };
    use ferry_common::protocol::flag::SUPER_GROUP;
    let db = support::MariaDb::start();
    let redis = Redis::start();
    let imr = support::Imr::start(Some(&redis), &[]);
    let store = redis.url();
    let dsn = db.go_dsn();
    let flags = ["--mysql", dsn.as_str(), "--redis", store.as_str()];
    let a = support::cluster_im(&[&imr], &store, &flags);
    let b = support::cluster_im(&[&imr], &store, &flags);
    let nodes = [&a, &b];
    let app = AppServer {
        redis: &redis,
        action: std::cell::Cell::new(0),
    };
    let now = now_secs();
    db.exec(&format!(
        "INSERT INTO `group` (id, appid, master, super, name, deleted) VALUES (100, 7, 1, 0, 'g', 0), (200, 7, 1, 0, 'h', 0);
         INSERT INTO group_member (group_id, uid, timestamp, mute, deleted) VALUES
           (100, 1, {now}, 0, 0), (100, 2, {now}, 0, 0), (200, 1, {now}, 0, 0);"
    ));
    app.event("group_create", 100, 0);
    app.event("group_create", 200, 0);

    let mut u1 = Raw::login(a.tcp, 1, "u1", 2).await.named("u1@a");
    let mut u2 = Raw::login(b.tcp, 2, "u2", 2).await.named("u2@b");
    let mut u3 = Raw::login(b.tcp, 3, "u3", 2).await.named("u3@b");
    for uid in 1..=3 {
        imr.wait_online(7, uid);
    }
    // Loaded from MySQL on first use; a message reaches the other node.
    let seq = send_group_text(&mut u1, 1, 100, "hello").await;
    u1.expect_stored_ack(seq).await;
    got_group_message(&mut u2, "hello").await;
    // Ferry does not write groups it does not own.
    let (status, body) = support::http_post(a.http, "/groups", br#"{"appid":7,"members":[1]}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("MySQL"), "{body}");
    wait_view(&nodes, 200, "loaded", |v| members(v) == [(1, false)]);

    // group_member_add: the new member can send at once on its node.
    db.exec(&format!(
        "INSERT INTO group_member (group_id, uid, timestamp, mute, deleted) VALUES (100, 3, {now}, 0, 0)"
    ));
    app.event("group_member_add", 100, 3);
    wait_view(&nodes, 100, "has 3", |v| members(v).len() == 3);
    let seq = send_group_text(&mut u3, 3, 100, "joined").await;
    u3.expect_stored_ack(seq).await;
    got_group_message(&mut u1, "joined").await;
    got_group_message(&mut u2, "joined").await;

    // group_member_mute.
    db.exec("UPDATE group_member SET mute = 1 WHERE group_id = 100 AND uid = 3");
    app.event("group_member_mute", 100, 3);
    wait_view(&nodes, 100, "3 muted", |v| members(v).contains(&(3, true)));
    let seq = send_group_text(&mut u3, 3, 100, "muted").await;
    u3.expect_refused(seq, STATUS_MUTED).await;

    // group_changed (here: the app server unmuted 3 and says only "changed").
    db.exec("UPDATE group_member SET mute = 0 WHERE group_id = 100 AND uid = 3");
    app.event("group_changed", 100, 0);
    wait_view(&nodes, 100, "3 unmuted", |v| {
        members(v).contains(&(3, false))
    });
    let seq = send_group_text(&mut u3, 3, 100, "unmuted").await;
    u3.expect_stored_ack(seq).await;
    got_group_message(&mut u1, "unmuted").await;
    got_group_message(&mut u2, "unmuted").await;

    // group_member_remove.
    db.exec("UPDATE group_member SET deleted = 1 WHERE group_id = 100 AND uid = 2");
    app.event("group_member_remove", 100, 2);
    wait_view(&nodes, 100, "without 2", |v| {
        members(v) == [(1, false), (3, false)]
    });
    let seq = send_group_text(&mut u2, 2, 100, "removed").await;
    u2.expect_refused(seq, STATUS_NOT_GROUP_MEMBER).await;

    // group_upgrade: one queue for the group, ACK flagged SUPER_GROUP.
    db.exec("UPDATE `group` SET super = 1 WHERE id = 100");
    app.event("group_upgrade", 100, 0);
    wait_view(&nodes, 100, "super", |v| v["data"]["super"] == true);
    let seq = send_group_text(&mut u1, 1, 100, "super").await;
    u1.expect(METADATA).await;
    let ack = u1.expect(ACK).await;
    assert_eq!(ack_of(&ack), (seq, Some(0)));
    assert_ne!(ack.flag & SUPER_GROUP, 0, "super-group ACK");
    got_group_message(&mut u3, "super").await;

    // group_disband.
    db.exec("UPDATE `group` SET deleted = 1 WHERE id = 100");
    app.event("group_disband", 100, 0);
    wait_view(&nodes, 100, "gone", |v| v["meta"]["code"] == 404);
    let seq = send_group_text(&mut u1, 1, 100, "gone").await;
    u1.expect_refused(seq, STATUS_GROUP_NOT_EXIST).await;

    // A gap: group 200 changed in MySQL, its event lost; the next entry does
    // not follow the last action id, so every node drops every group.
    db.exec(&format!(
        "INSERT INTO group_member (group_id, uid, timestamp, mute, deleted) VALUES (200, 2, {now}, 0, 0)"
    ));
    wait_view(&nodes, 200, "still cached", |v| members(v) == [(1, false)]);
    let last = app.action.get();
    app.announce(last + 5, last + 6, "group_changed", 999, 0);
    wait_view(&nodes, 200, "reloaded after the gap", |v| {
        members(v) == [(1, false), (2, false)]
    });
    for n in nodes {
        assert!(n.log().contains("change feed gap"), "{}", n.log());
    }
}

/// The app server's `relationship_stream` entry for one changed row.
fn relationship_event(redis: &Redis, prev: i64, id: i64, name: &str, uid: i64, friend: i64) {
    redis.cli(&["SET", "friends_actions", &format!("{prev}:{id}")]);
    redis.cli(&[
        "XADD",
        "relationship_stream",
        "*",
        "action_id",
        &id.to_string(),
        "previous_action_id",
        &prev.to_string(),
        "name",
        name,
        "app_id",
        "7",
        "uid",
        &uid.to_string(),
        "friend_uid",
        &friend.to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friendship_and_blacklist_answer_ack_1_2_3_from_mysql() {
    use ferry_common::protocol::ack::{
        STATUS_IN_BLACKLIST, STATUS_NOT_MY_FRIEND, STATUS_NOT_YOUR_FRIEND,
    };
    let db = support::MariaDb::start();
    let redis = Redis::start();
    let url = db.url();
    let redis_url = redis.url();
    let im = support::Im::start(&[
        "--mysql",
        &url,
        "--redis",
        &redis_url,
        "--enable-friendship",
        "--enable-blacklist",
    ]);
    let mut u1 = Raw::login(im.tcp, 1, "u1", 2).await.named("u1");
    let mut u2 = Raw::login(im.tcp, 2, "u2", 2).await.named("u2");
    // Waits until the node applied `n` relationship entries.
    let applied = |n: usize| {
        wait_until(&format!("{n} relationship changes applied"), || {
            im.log().matches("relationship change").count() >= n
        })
    };
    let mut msgid = 0;
    let mut send = async |c: &mut Raw, from: i64, to: i64| {
        msgid += 1;
        c.send_im(from, to, msgid, "hi").await
    };

    let seq = send(&mut u1, 1, 2).await;
    u1.expect_refused(seq, STATUS_NOT_MY_FRIEND).await;

    db.exec("INSERT INTO friend (appid, uid, friend_uid, timestamp) VALUES (7, 1, 2, 0)");
    relationship_event(&redis, 0, 1, "friend", 1, 2);
    applied(1);
    let seq = send(&mut u1, 1, 2).await;
    u1.expect_refused(seq, STATUS_NOT_YOUR_FRIEND).await;

    db.exec("INSERT INTO friend (appid, uid, friend_uid, timestamp) VALUES (7, 2, 1, 0)");
    relationship_event(&redis, 1, 2, "friend", 2, 1);
    applied(2);
    let seq = send(&mut u1, 1, 2).await;
    u1.expect_stored_ack(seq).await;
    u2.expect_push(IM).await;

    // u2 blocks u1: u1's messages are refused, u2's still go through.
    db.exec("INSERT INTO blacklist (appid, uid, friend_uid, timestamp) VALUES (7, 2, 1, 0)");
    relationship_event(&redis, 2, 3, "blacklist", 2, 1);
    applied(3);
    let seq = send(&mut u1, 1, 2).await;
    u1.expect_refused(seq, STATUS_IN_BLACKLIST).await;
    let seq = send(&mut u2, 2, 1).await;
    u2.expect_stored_ack(seq).await;
    u1.expect_push(IM).await;

    // The unblock's entry is lost; the next one shows the gap and every
    // cached pair is read again.
    db.exec("DELETE FROM blacklist WHERE appid = 7 AND uid = 2 AND friend_uid = 1");
    relationship_event(&redis, 9, 10, "friend", 5, 6);
    applied(4);
    assert!(im.log().contains("change feed gap"), "{}", im.log());
    let seq = send(&mut u1, 1, 2).await;
    u1.expect_stored_ack(seq).await;

    // The lists are the app server's: Ferry's list API refuses to write them.
    let (status, body) = http_request(im.http, "PUT", "/users/1/friends/2?appid=7");
    assert_eq!(status, 409, "{body}");

    // A version-1 client cannot read a status: refused by closing.
    let mut v1 = Raw::login(im.tcp, 1, "u1-old", 1).await.named("u1 v1");
    send(&mut v1, 1, 3).await;
    v1.expect_closed().await;
}

/// A request with any method (tests only): (status, body).
fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .expect("connect to http");
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
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

fn ok(addr: SocketAddr, method: &str, path: &str) -> String {
    let (status, body) = http_request(addr, method, path);
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_friend_lists_answer_ack_1_2_3_on_every_node() {
    use ferry_common::protocol::ack::{
        STATUS_IN_BLACKLIST, STATUS_NOT_MY_FRIEND, STATUS_NOT_YOUR_FRIEND,
    };
    let redis = Redis::start();
    let imr = support::Imr::start(Some(&redis), &[]);
    let store = redis.url();
    let flags = ["--enable-friendship", "--enable-blacklist"];
    let a = support::cluster_im(&[&imr], &store, &flags);
    let b = support::cluster_im(&[&imr], &store, &flags);
    let mut u1 = Raw::login(a.tcp, 1, "u1", 2).await.named("u1@a");
    let mut msgid = 0;
    let mut send = async |c: &mut Raw| {
        msgid += 1;
        c.send_im(1, 2, msgid, "hi").await
    };
    let seq = send(&mut u1).await;
    u1.expect_refused(seq, STATUS_NOT_MY_FRIEND).await;
    // Lists changed through node b apply to the next message on node a.
    ok(b.http, "PUT", "/users/1/friends/2?appid=7");
    let seq = send(&mut u1).await;
    u1.expect_refused(seq, STATUS_NOT_YOUR_FRIEND).await;
    ok(b.http, "PUT", "/users/2/friends/1?appid=7");
    ok(b.http, "PUT", "/users/2/friends/1?appid=7"); // idempotent
    let seq = send(&mut u1).await;
    u1.expect_stored_ack(seq).await;
    ok(b.http, "PUT", "/users/2/blacklist/1?appid=7");
    let seq = send(&mut u1).await;
    u1.expect_refused(seq, STATUS_IN_BLACKLIST).await;
    assert_eq!(
        ok(a.http, "GET", "/users/2/blacklist?appid=7"),
        r#"{"data":[1]}"#
    );
    assert_eq!(
        ok(a.http, "GET", "/users/2/friends?appid=7"),
        r#"{"data":[1]}"#
    );
    ok(a.http, "DELETE", "/users/2/blacklist/1?appid=7");
    let seq = send(&mut u1).await;
    u1.expect_stored_ack(seq).await;
    ok(a.http, "DELETE", "/users/1/friends/2?appid=7");
    let seq = send(&mut u1).await;
    u1.expect_refused(seq, STATUS_NOT_MY_FRIEND).await;
    assert_eq!(
        ok(a.http, "GET", "/users/1/friends?appid=7"),
        r#"{"data":[]}"#
    );
    // Bad input.
    assert_eq!(
        http_request(a.http, "PUT", "/users/1/friends/x?appid=7").0,
        400
    );
    assert_eq!(
        http_request(a.http, "PUT", "/users/1/friends/2?appid=0").0,
        400
    );
    // Lists are not groups: the group API does not see them.
    assert_eq!(http_request(a.http, "GET", "/groups/2?appid=7").0, 404);

    // The embedded store keeps them too.
    let single = support::Im::start(&flags);
    ok(single.http, "PUT", "/users/5/friends/6?appid=7");
    assert_eq!(
        ok(single.http, "GET", "/users/5/friends?appid=7"),
        r#"{"data":[6]}"#
    );
}
