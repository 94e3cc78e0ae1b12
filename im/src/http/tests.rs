//! The API served on a real socket by an in-process node with a temporary
//! embedded store; requests are written as raw HTTP/1.1.

use super::*;
use crate::auth::{Authenticator, JwtAuth};
use crate::config::ImOptions;
use crate::outbox::{OutFrame, Outbox};
use crate::registry::LocalConn;
use crate::store::{
    AppendOutcome, AppendRequest, FjallOptions, FjallStore, QueueId, Store, StoreError,
    StoreFuture, StoredMessage, Window,
};
use ferry_common::protocol::command::{IM, NOTIFICATION, ROOM_IM, RT, SYNC_NOTIFY};
use ferry_common::protocol::flag::PUSH;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::realtime::Realtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Api {
    addr: std::net::SocketAddr,
    node: Arc<Node>,
    _dir: tempfile::TempDir,
}

async fn start(api_token: Option<&str>) -> Api {
    start_with(api_token, None).await
}

async fn start_with(api_token: Option<&str>, store: Option<Arc<dyn Store>>) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ImOptions {
        data_dir: Some(dir.path().to_path_buf()),
        api_token: api_token.map(String::from),
        sync_limit: Some(2),
        ..Default::default()
    }
    .resolve()
    .expect("config");
    let store = store.unwrap_or_else(|| {
        Arc::new(FjallStore::open(dir.path(), FjallOptions::default()).expect("store"))
    });
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
    tokio::spawn(serve(node.clone(), listener));
    Api {
        addr,
        node,
        _dir: dir,
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn error(&self) -> (u16, String) {
        let v = self.json();
        assert_eq!(v["meta"]["code"], self.status, "{v}");
        (
            self.status,
            v["meta"]["message"].as_str().expect("message").to_string(),
        )
    }
}

impl Api {
    async fn call(&self, method: &str, target: &str, extra: &str, body: &[u8]) -> Reply {
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("write");
        // The server may answer (413, 401) before reading a large body.
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head[9..12].parse().expect("status");
        let mut body = raw[end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Reply {
            status,
            headers: head,
            body,
        }
    }

    async fn post(&self, target: &str, body: &[u8]) -> Reply {
        self.call("POST", target, "", body).await
    }

    async fn post_with(&self, target: &str, headers: &str, body: &[u8]) -> Reply {
        self.call("POST", target, headers, body).await
    }

    async fn get(&self, target: &str) -> Reply {
        self.call("GET", target, "", b"").await
    }

    /// A logged-in connection of `(appid, uid)` whose outbox the test reads.
    fn connect_user(&self, appid: i64, uid: i64, device_id: i64) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let conn = self.node.delivery.registry.next_conn_id();
        self.node.delivery.registry.add(
            appid,
            uid,
            LocalConn {
                conn,
                device_id,
                online: true,
                transport: crate::metrics::Transport::Tcp,
                platform: 3,
                outbox: outbox.clone(),
                info: crate::presence::DeviceInfo::test(),
            },
        );
        outbox
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).expect("hex").trim(), 16)
            .expect("hex");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn drain(o: &Outbox) -> Vec<OutFrame> {
    let mut v = Vec::new();
    o.drain_into(&mut v, usize::MAX);
    v
}

#[tokio::test]
async fn peer_message_is_stored_pushed_and_listed() {
    let api = start(None).await;
    let receiver = api.connect_user(1, 20, 5);
    let sender = api.connect_user(1, 10, 6);
    let r = api
        .post("/post_peer_message?appid=1&sender=10&receiver=20", b"hello")
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());

    for (outbox, msgid) in [(&receiver, 1), (&sender, 1)] {
        let frames = drain(outbox);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].cmd, frames[0].flag), (IM, PUSH));
        let meta = frames[0].meta.expect("metadata");
        assert_eq!((meta.sync_key, meta.prev_sync_key), (msgid, 0));
        let im = Im::decode(IM, 2, frames[0].body.clone()).expect("im");
        assert_eq!(
            (im.sender, im.receiver, im.msgid, &im.content[..]),
            (10, 20, 0, &b"hello"[..])
        );
        assert!(im.timestamp > 0);
        assert_eq!(frames[1].cmd, SYNC_NOTIFY);
    }

    let v = api
        .get("/load_latest_message?appid=1&uid=20&limit=10")
        .await
        .json();
    let list = v["data"].as_array().expect("data");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], 1);
    assert_eq!(list[0]["command"], IM);
    assert_eq!(list[0]["sender"], 10);
    assert_eq!(list[0]["receiver"], 20);
    assert_eq!(list[0]["content"], "hello");
    assert!(list[0].get("sender_appid").is_none());
    // The sender's queue has its copy too.
    let v = api
        .get("/load_latest_message?appid=1&uid=10&limit=10")
        .await
        .json();
    assert_eq!(v["data"][0]["content"], "hello");
}

#[tokio::test]
async fn offline_count_latest_and_history_windows() {
    let api = start(None).await;
    for i in 0..5 {
        let r = api
            .post(
                "/post_peer_message?appid=1&sender=10&receiver=20",
                format!("m{i}").as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let count = |q: &'static str| {
        let api = &api;
        async move { api.get(&format!("/get_offline_count?{q}")).await.json()["data"]["count"].clone() }
    };
    assert_eq!(count("appid=1&uid=20").await, 5);
    assert_eq!(count("appid=1&uid=20&sync_key=0").await, 5);
    assert_eq!(count("appid=1&uid=20&sync_key=3").await, 2);
    assert_eq!(count("appid=1&uid=20&sync_key=").await, 5);
    // The stored sync key is used when none is given.
    api.node
        .store
        .set_sync_key(QueueId { appid: 1, uid: 20 }, 4)
        .await
        .expect("set");
    assert_eq!(count("appid=1&uid=20").await, 1);
    assert_eq!(count("appid=1&uid=99").await, 0);

    let contents = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["content"].as_str().expect("s").to_string())
            .collect()
    };
    assert_eq!(
        contents(
            api.get("/load_latest_message?appid=1&uid=20&limit=2")
                .await
                .json()
        ),
        ["m3", "m4"]
    );
    assert_eq!(
        contents(
            api.get("/load_latest_message?appid=1&uid=20&limit=0")
                .await
                .json()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        contents(
            api.get("/load_latest_message?appid=1&uid=20&limit=99999")
                .await
                .json()
        )
        .len(),
        5
    );
    // sync_limit is 2 in this test node: one window after last_id.
    assert_eq!(
        contents(
            api.get("/load_history_message?appid=1&uid=20&last_id=0")
                .await
                .json()
        ),
        ["m0", "m1"]
    );
    assert_eq!(
        contents(
            api.get("/load_history_message?appid=1&uid=20&last_id=3")
                .await
                .json()
        ),
        ["m3", "m4"]
    );
    assert_eq!(
        contents(
            api.get("/load_history_message?appid=1&uid=20&last_id=5")
                .await
                .json()
        ),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn system_and_customer_messages() {
    let api = start(None).await;
    let u = api.connect_user(1, 20, 5);
    let r = api
        .post(
            "/post_system_message",
            br#"{"appid":1,"content":"sys","receivers":[20,21]}"#,
        )
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    let frames = drain(&u);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].cmd, SYNC_NOTIFY);
    assert_eq!(
        api.get("/get_offline_count?appid=1&uid=21").await.json()["data"]["count"],
        1
    );
    // SYSTEM is stored but not listed (gobelieve lists IM, GROUP_IM, CUSTOMER_V2).
    assert_eq!(
        api.get("/load_latest_message?appid=1&uid=20&limit=5")
            .await
            .json(),
        json!({"data": []})
    );

    let body = br#"{"sender_appid":1,"sender":20,"receiver_appid":2,"receiver":30,"content":"hi"}"#;
    let r = api.post("/post_customer_message", body).await;
    assert_eq!((r.status, r.json()), (200, json!({"data": {}})));
    let v = api
        .get("/load_latest_message?appid=2&uid=30&limit=5")
        .await
        .json();
    let m = &v["data"][0];
    assert_eq!(
        (
            m["command"].clone(),
            m["sender_appid"].clone(),
            m["sender"].clone()
        ),
        (json!(64), json!(1), json!(20))
    );
    assert_eq!(
        (
            m["receiver_appid"].clone(),
            m["receiver"].clone(),
            m["content"].clone()
        ),
        (json!(2), json!(30), json!("hi"))
    );
    let v = api
        .get("/load_latest_message?appid=1&uid=20&limit=5")
        .await
        .json();
    assert_eq!(v["data"][0]["content"], "hi");

    let bad = [
        &br#"{"appid":1,"content":"x"}"#[..],
        br#"{"appid":"1","content":"x","receivers":[]}"#,
        br#"{"appid":1,"content":5,"receivers":[]}"#,
        b"not json",
    ];
    for b in bad {
        let (code, msg) = api.post("/post_system_message", b).await.error();
        assert_eq!(code, 400);
        assert!(msg.starts_with("invalid json format: "), "{msg}");
    }
    let (code, msg) = api
        .post("/post_customer_message", br#"{"sender_appid":1}"#)
        .await
        .error();
    assert_eq!(code, 400);
    assert!(msg.contains("missing field"), "{msg}");
}

#[tokio::test]
async fn realtime_kinds_reach_connections() {
    let api = start(None).await;
    let u = api.connect_user(1, 20, 5);
    assert_eq!(
        api.post("/post_notification?appid=1&uid=20", b"n")
            .await
            .status,
        200
    );
    assert_eq!(
        api.post(
            "/post_realtime_message?appid=1&sender=10&receiver=20",
            b"rt"
        )
        .await
        .status,
        200
    );
    let frames = drain(&u);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        (frames[0].cmd, &frames[0].body[..]),
        (NOTIFICATION, &b"n"[..])
    );
    assert_eq!(frames[1].cmd, RT);
    assert_eq!(
        Realtime::decode(RT, frames[1].body.clone()).expect("rt"),
        Realtime {
            sender: 10,
            receiver: 20,
            content: "rt".into()
        }
    );

    let member = Arc::new(Outbox::new(1 << 20));
    api.node
        .delivery
        .rooms
        .join(1, 77, 1000, 20, 5, member.clone());
    assert_eq!(
        api.post("/post_room_message?appid=1&uid=20&room=77", b"room")
            .await
            .status,
        200
    );
    let frames = drain(&member);
    assert_eq!(
        frames.len(),
        1,
        "the sender's own connection is not excluded"
    );
    assert_eq!(
        Realtime::decode(ROOM_IM, frames[0].body.clone()).expect("room im"),
        Realtime {
            sender: 20,
            receiver: 77,
            content: "room".into()
        }
    );

    let v = api.get("/summary?appid=1").await.json();
    assert_eq!(
        (v["client_count"].clone(), v["clientset_count"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        v["app_1"],
        json!({"clientset_count": 1, "client_count": 1, "room_count": 1, "room_client_count": 1})
    );
    assert!(v["goroutine_count"].as_u64().is_some());
    assert!(api.get("/summary").await.json().get("app_0").is_none());
}

#[tokio::test]
async fn bad_params_sizes_and_unknown_paths() {
    let api = start(None).await;
    let (code, msg) = api
        .post("/post_peer_message?appid=1&sender=10", b"x")
        .await
        .error();
    assert_eq!(
        (code, msg.as_str()),
        (400, "invalid query param: receiver (missing)")
    );
    let (code, msg) = api
        .post("/post_peer_message?appid=1&sender=abc&receiver=2", b"x")
        .await
        .error();
    assert_eq!(
        (code, msg.as_str()),
        (400, "invalid query param: sender (not a decimal i64)")
    );
    let (code, msg) = api.get("/load_latest_message?appid=1&uid=2").await.error();
    assert_eq!(
        (code, msg.as_str()),
        (400, "invalid query param: limit (missing)")
    );
    let (code, _) = api
        .get("/get_offline_count?appid=1&uid=2&sync_key=z")
        .await
        .error();
    assert_eq!(code, 400);
    assert_eq!(api.get("/summary?appid=q").await.error().0, 400);

    // Content must fit a client frame; the body limit is larger.
    let max = ferry_common::protocol::MAX_CLIENT_BODY - 24;
    assert_eq!(
        api.post(
            "/post_peer_message?appid=1&sender=1&receiver=2",
            &vec![b'a'; max]
        )
        .await
        .status,
        200
    );
    let (code, msg) = api
        .post(
            "/post_peer_message?appid=1&sender=1&receiver=2",
            &vec![b'a'; max + 1],
        )
        .await
        .error();
    assert_eq!(code, 400);
    assert!(msg.starts_with("content too large"), "{msg}");
    let (code, msg) = api
        .post(
            "/post_notification?appid=1&uid=2",
            &vec![b'a'; BODY_LIMIT + 1],
        )
        .await
        .error();
    assert_eq!(
        (code, msg.as_str()),
        (413, "request body too large (limit 65536 bytes)")
    );

    // Any method on API paths, like gobelieve.
    assert_eq!(
        api.call("PUT", "/post_notification?appid=1&uid=2", "", b"x")
            .await
            .status,
        200
    );
    assert_eq!(
        api.get("/post_notification?appid=1&uid=2").await.status,
        200
    );

    assert_eq!(api.get("/nope").await.error().0, 404);
    assert_eq!(
        api.post("/post_group_message?appid=1&sender=1&receiver=2", b"x")
            .await
            .error()
            .0,
        404
    );
    assert_eq!(
        api.post("/post_group_notification", b"{}").await.error().0,
        400
    );
    let h = api.get("/health").await;
    assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn api_token_guards_everything_but_health() {
    let api = start(Some("s3cret")).await;
    let r = api.get("/summary").await;
    assert_eq!(
        r.error(),
        (401, "missing or invalid bearer token".to_string())
    );
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        r.headers
    );
    for auth in [
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer s3cre\r\n",
        "Authorization: s3cret\r\n",
        "Authorization: Basic s3cret\r\n",
    ] {
        assert_eq!(
            api.call("GET", "/summary", auth, b"").await.status,
            401,
            "{auth}"
        );
    }
    assert_eq!(api.get("/nope").await.status, 401);
    assert_eq!(
        api.post("/post_notification?appid=1&uid=2", &vec![0; BODY_LIMIT + 1])
            .await
            .status,
        401
    );
    assert_eq!(
        api.call("GET", "/summary", "Authorization: Bearer s3cret\r\n", b"")
            .await
            .status,
        200
    );
    assert_eq!(
        api.call("GET", "/summary", "Authorization: bearer  s3cret \r\n", b"")
            .await
            .status,
        200
    );
    assert_eq!(api.get("/health").await.status, 200);
}

/// A store whose every operation fails.
struct BrokenStore;

impl Store for BrokenStore {
    fn put(&self, _: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        broken()
    }
    fn window(&self, _: QueueId, _: i64, _: usize) -> StoreFuture<'_, Window> {
        broken()
    }
    fn latest(&self, _: QueueId, _: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        broken()
    }
    fn count_after(&self, _: QueueId, _: i64) -> StoreFuture<'_, i64> {
        broken()
    }
    fn sync_key(&self, _: QueueId) -> StoreFuture<'_, i64> {
        broken()
    }
    fn set_sync_key(&self, _: QueueId, _: i64) -> StoreFuture<'_, ()> {
        broken()
    }
    fn group_sync_key(&self, _: QueueId, _: i64) -> StoreFuture<'_, i64> {
        broken()
    }
    fn set_group_sync_key(&self, _: QueueId, _: i64, _: i64) -> StoreFuture<'_, ()> {
        broken()
    }
    fn device_number(&self, _: &str, _: u8) -> StoreFuture<'_, i64> {
        broken()
    }
    fn mark_unconfirmed(&self, _: Vec<crate::store::Unconfirmed>) -> StoreFuture<'_, ()> {
        broken()
    }
    fn close(&self) -> StoreFuture<'_, ()> {
        broken()
    }
}

fn broken<'a, T: Send + 'a>() -> StoreFuture<'a, T> {
    Box::pin(async { Err(StoreError::Backend("disk on fire".into())) })
}

#[tokio::test]
async fn storage_errors_are_500_and_deliver_nothing() {
    let api = start_with(None, Some(Arc::new(BrokenStore))).await;
    let u = api.connect_user(1, 20, 5);
    let calls: [(&str, &[u8]); 7] = [
        ("/post_peer_message?appid=1&sender=10&receiver=20", b"x"),
        (
            "/post_system_message",
            br#"{"appid":1,"content":"x","receivers":[20]}"#,
        ),
        (
            "/post_customer_message",
            br#"{"sender_appid":1,"sender":10,"receiver_appid":1,"receiver":20,"content":"x"}"#,
        ),
        ("/get_offline_count?appid=1&uid=20", b""),
        ("/get_offline_count?appid=1&uid=20&sync_key=3", b""),
        ("/load_latest_message?appid=1&uid=20&limit=5", b""),
        ("/load_history_message?appid=1&uid=20&last_id=0", b""),
    ];
    for (target, body) in calls {
        let (code, msg) = api.post(target, body).await.error();
        assert_eq!(code, 500, "{target}");
        assert_eq!(
            msg, "storage error: storage backend error: disk on fire",
            "{target}"
        );
    }
    assert!(drain(&u).is_empty());
}

#[test]
fn constant_time_eq_basics() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}

#[path = "groups_tests.rs"]
mod groups;

/// The admin console's JSON: token-guarded like the API, the page public;
/// the user lookup reports connections, queue head and stored sync key.
#[tokio::test]
async fn admin_console_json_and_user_lookup() {
    let api = start(Some("s3cret")).await;
    let auth = "Authorization: Bearer s3cret\r\n";
    let page = api.get("/admin").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>Ferry admin</title>"));
    assert_eq!(api.get("/admin/api/stats").await.status, 401);
    assert_eq!(api.get("/admin/api/user?uid=20&appid=1").await.status, 401);

    let _receiver = api.connect_user(1, 20, 5);
    for _ in 0..3 {
        let r = api
            .post_with(
                "/post_peer_message?appid=1&sender=10&receiver=20",
                auth,
                b"hi",
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    api.node
        .store
        .set_sync_key(QueueId { appid: 1, uid: 20 }, 2)
        .await
        .expect("sync key");
    let v = api
        .call("GET", "/admin/api/user?uid=20&appid=1", auth, b"")
        .await
        .json();
    assert_eq!(v["online"], true, "{v}");
    assert_eq!(
        (v["queue_head"].as_i64(), v["sync_key"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(v["unsynced"], 1);
    let conns = v["nodes"][0]["connections"]
        .as_array()
        .expect("connections");
    assert_eq!(conns.len(), 1, "{v}");
    assert_eq!(
        (
            conns[0]["transport"].as_str(),
            conns[0]["device_id"].as_i64()
        ),
        (Some("tcp"), Some(5))
    );
    let v = api
        .call("GET", "/admin/api/user?uid=21&appid=1", auth, b"")
        .await
        .json();
    assert_eq!(
        (v["online"].as_bool(), v["queue_head"].as_i64()),
        (Some(false), Some(0))
    );
    let r = api.call("GET", "/admin/api/user?uid=x", auth, b"").await;
    assert_eq!(r.status, 400);

    // Two samples a second apart make one history point; the sampler task
    // does not run in this harness, so sample by hand.
    api.node.history.sample(&api.node.metrics, 0, 1000);
    api.node.history.sample(&api.node.metrics, 0, 1001);
    let v = api.call("GET", "/admin/api/stats", auth, b"").await.json();
    assert_eq!(v["history"]["t"], json!([1001]), "{v}");
    assert_eq!(v["now"]["authenticated_connections"], 1);
    let v = api
        .call("GET", "/admin/api/stats?since=1001", auth, b"")
        .await
        .json();
    assert_eq!(v["history"]["t"], json!([]));
}
