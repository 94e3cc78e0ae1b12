//! Real clients' habits (issue 10): msgid 0 everywhere, a benchmark run
//! twice, a msgid reused with new content — every one of those messages is
//! stored and delivered — and the one true resend (the ACK never reached the
//! client) is stored once and ACKed with the original ids. On one node (the
//! embedded store), and on two ims sharing a Redis store.

mod support;
mod wire;

use bytes::Bytes;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::*;
use ferry_common::protocol::group_sync::GroupSyncKey;
use ferry_common::protocol::im::Im as ImBody;
use ferry_common::protocol::metadata::Metadata;
use std::net::SocketAddr;
use support::{APPID, Im, Imr, Redis, cluster_im, http_get, http_post, wait_until};
use wire::*;

const NORMAL: i64 = 500;
const SUPER: i64 = 501;

/// Where each party connects; `imr` (cluster) is asked to confirm logins.
struct Setup<'a> {
    /// The sender's node, and the node a reconnecting sender uses.
    send: &'a Im,
    resend: &'a Im,
    /// The receivers' node.
    recv: &'a Im,
    imr: Option<&'a Imr>,
}

impl Setup<'_> {
    fn online(&self, uid: i64) {
        if let Some(imr) = self.imr {
            tokio::task::block_in_place(|| imr.wait_online(APPID, uid));
        }
    }
}

fn single(store: &str) -> Im {
    Im::start(&["--store", store])
}

fn create_group(http: SocketAddr, gid: i64, is_super: bool, members: &[i64]) {
    let body = serde_json::json!({
        "appid": APPID, "group_id": gid, "super": is_super, "members": members,
    })
    .to_string();
    let (status, out) = tokio::task::block_in_place(|| http_post(http, "/groups", body.as_bytes()));
    assert_eq!(status, 200, "create group {gid}: {out}");
}

fn content_of(f: &Frame) -> String {
    String::from_utf8_lossy(&im_of(f).content).into_owned()
}

/// GROUP_IM sent and ACKed (METADATA + ACK); returns the metadata.
async fn group_im(c: &mut Raw, sender: i64, gid: i64, msgid: i32, content: &str) -> Metadata {
    let body = ImBody {
        sender,
        receiver: gid,
        timestamp: 1,
        msgid,
        content: Bytes::copy_from_slice(content.as_bytes()),
    }
    .encode(c.version);
    let seq = c.send(GROUP_IM, 0, body).await;
    c.expect_stored_ack(seq).await
}

/// A pushed super-group message: METADATA + GROUP_IM + SYNC_GROUP_NOTIFY.
async fn expect_super_push(c: &mut Raw) -> String {
    let m = c.expect(METADATA).await;
    let f = c.expect(GROUP_IM).await;
    assert_eq!(m.seq + 1, f.seq);
    c.expect(SYNC_GROUP_NOTIFY).await;
    content_of(&f)
}

/// Every message of a super group from key 0 (one window).
async fn sync_group(c: &mut Raw, gid: i64) -> Vec<String> {
    let key = GroupSyncKey {
        group_id: gid,
        sync_key: 0,
    };
    c.send(SYNC_GROUP, 0, key.encode()).await;
    c.expect(SYNC_GROUP_BEGIN).await;
    let mut out = Vec::new();
    loop {
        let f = c.recv().await;
        match f.cmd {
            SYNC_GROUP_END => return out,
            GROUP_IM => out.push(content_of(&f)),
            other => panic!("unexpected {other} in a group sync"),
        }
    }
}

/// Contents of a personal sync from key 0 (IMs and normal-group messages).
async fn personal(c: &mut Raw) -> Vec<String> {
    let b = c.sync(0).await;
    b.messages.iter().map(content_of).collect()
}

fn count(v: &[String], want: &str) -> usize {
    v.iter().filter(|c| *c == want).count()
}

/// Three IMs with msgid 0 (same content) to one receiver, then three
/// GROUP_IMs with msgid 0 to a normal and to a super group: the online
/// receiver gets every one pushed, the offline one syncs every one from 0.
async fn msgid_zero_is_never_a_resend(s: Setup<'_>) {
    create_group(s.send.http, NORMAL, false, &[1, 2, 3]);
    create_group(s.send.http, SUPER, true, &[1, 2, 3]);
    let mut b = Raw::login(s.recv.tcp, 2, "b", 2).await.named("b");
    s.online(2);
    let mut a = Raw::login(s.send.tcp, 1, "a", 2).await.named("a");
    let mut metas = Vec::new();
    for _ in 0..3 {
        metas.push(a.im(1, 2, 0, "zero").await.sync_key);
        metas.push(a.im(1, 3, 0, "zero").await.sync_key);
    }
    for _ in 0..3 {
        metas.push(group_im(&mut a, 1, NORMAL, 0, "zero-normal").await.sync_key);
    }
    let mut super_ids = Vec::new();
    for _ in 0..3 {
        super_ids.push(group_im(&mut a, 1, SUPER, 0, "zero-super").await.sync_key);
    }
    assert_eq!(
        metas,
        (1..=9).collect::<Vec<_>>(),
        "nine new messages in a's queue"
    );
    assert_eq!(super_ids, vec![1, 2, 3], "three in the super group's queue");
    for _ in 0..3 {
        assert_eq!(content_of(&b.expect_push(IM).await.1), "zero");
    }
    for _ in 0..3 {
        assert_eq!(content_of(&b.expect_push(GROUP_IM).await.1), "zero-normal");
    }
    for _ in 0..3 {
        assert_eq!(expect_super_push(&mut b).await, "zero-super");
    }
    b.assert_quiet().await;
    // The offline member syncs everything from key 0.
    let mut c = Raw::login(s.recv.tcp, 3, "c", 2).await.named("c");
    let got = personal(&mut c).await;
    assert_eq!(
        (count(&got, "zero"), count(&got, "zero-normal"), got.len()),
        (3, 3, 6),
        "{got:?}"
    );
    assert_eq!(sync_group(&mut c, SUPER).await, vec!["zero-super"; 3]);
    // And so does another device of the online one.
    let mut b2 = Raw::login(s.recv.tcp, 2, "b2", 2).await.named("b2");
    assert_eq!(personal(&mut b2).await.len(), 6);
}

/// gobelieve's peer benchmark run twice: the same 500 messages (same
/// device, msgids, contents) on two connections, every ACK read by the
/// client. The receiver gets all 1,000. `reset`: each run's client sends
/// one message at a time and resets its connection right after reading the
/// last ACK (a process exiting with unread data does), likely before its
/// delayed TCP ACK went out; else it pipelines and closes normally.
async fn a_rerun_is_delivered_again(s: Setup<'_>, reset: bool) {
    for (run, node) in [s.send, s.resend].into_iter().enumerate() {
        let closed_before = disconnects(node);
        let mut a = Raw::login(node.tcp, 1, "bench", 2)
            .await
            .named(&format!("run {run}"));
        let mut seqs = Vec::new();
        for i in 0..500 {
            let seq = a.send_im(1, 2, i, &format!("bench {i}")).await;
            if reset {
                // One at a time, waiting for each ACK (request/response:
                // the client's TCP stack then delays its ACKs).
                let m = a.expect_stored_ack(seq).await;
                assert_eq!(m.sync_key, (run * 500 + i as usize + 1) as i64);
            } else {
                seqs.push(seq);
            }
        }
        for (i, seq) in seqs.into_iter().enumerate() {
            let m = a.expect_stored_ack(seq).await;
            assert_eq!(
                m.sync_key,
                (run * 500 + i + 1) as i64,
                "run {run}, message {i}"
            );
        }
        if !reset {
            a.assert_quiet().await;
            continue;
        }
        a.reset();
        // The second run is judged by what the first one left behind.
        tokio::task::block_in_place(|| {
            wait_until("the reset connection closed", || {
                disconnects(node) > closed_before
            })
        });
    }
    let mut b = Raw::login(s.recv.tcp, 2, "b", 2).await;
    let got = personal(&mut b).await;
    assert_eq!(got.len(), 1000);
    for i in 0..500 {
        assert_eq!(count(&got, &format!("bench {i}")), 2, "bench {i}");
    }
}

/// A msgid reused with new content (a reinstalled app) is a new message.
async fn a_reused_msgid_with_new_content_arrives(s: Setup<'_>) {
    let mut b = Raw::login(s.recv.tcp, 2, "b", 2).await.named("b");
    s.online(2);
    let mut a = Raw::login(s.send.tcp, 1, "phone", 2).await.named("a");
    assert_eq!(a.im(1, 2, 1, "before reinstall").await.sync_key, 1);
    drop(a);
    let mut a = Raw::login(s.resend.tcp, 1, "phone", 2)
        .await
        .named("a again");
    assert_eq!(a.im(1, 2, 1, "after reinstall").await.sync_key, 2);
    // Both arrive. On a cluster the first push travels a -> imr -> b while
    // the second is delivered on b directly, so the live pushes may cross;
    // their order in the queue is the sync keys above.
    let mut got = vec![
        content_of(&b.expect_push(IM).await.1),
        content_of(&b.expect_push(IM).await.1),
    ];
    got.sort();
    assert_eq!(got, ["after reinstall", "before reinstall"]);
}

/// Sum of `ferry_disconnects_total` on a node: a connection counts there
/// only after its unconfirmed ACKs were marked.
fn disconnects(node: &Im) -> u64 {
    http_get(node.http, "/metrics")
        .lines()
        .filter(|l| l.starts_with("ferry_disconnects_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The one true resend: the sender's window is full of unread pushes, so
/// the ACK of its IM cannot reach it; it resets the connection (SO_LINGER
/// 0), reconnects and sends the same IM again. Stored once, ACKed with the
/// original ids, pushed once. `wait_for_close`: resend only after the old
/// connection was closed on its node (the mark path; otherwise the live
/// ledger may answer).
async fn a_true_resend_is_stored_once(s: Setup<'_>, wait_for_close: bool) {
    let mut b = Raw::login(s.recv.tcp, 2, "b", 2).await.named("b");
    s.online(2);
    let mut a = Raw::connect_small_rcvbuf(s.send.tcp, 4096).await.named("a");
    assert_eq!(a.auth(&support::token(1), 1, "phone", 2).await, 0);
    // 200 KB of pushes a never reads: its receive window closes, while the
    // server's write buffer for it stays under the high water at which it
    // stops reading a's frames.
    let mut c = Raw::login(s.send.tcp, 3, "c", 2).await.named("c");
    let filler = "f".repeat(4000);
    for _ in 0..50 {
        c.im(3, 1, 0, &filler).await;
    }
    let closed_before = disconnects(s.send);
    let seq = a.send_im(1, 2, 7, "resend me").await;
    let pushed = b.expect_push(IM).await;
    assert_eq!(content_of(&pushed.1), "resend me");
    let _ = seq;
    a.reset();
    if wait_for_close {
        tokio::task::block_in_place(|| {
            wait_until("the reset connection closed", || {
                disconnects(s.send) > closed_before
            })
        });
    }
    let mut a2 = Raw::login(s.resend.tcp, 1, "phone", 2).await.named("a2");
    let meta = a2.im(1, 2, 7, "resend me").await;
    // The original ids: a's queue holds c's 50 messages, then this one.
    assert_eq!(meta.sync_key, 51, "ACKed with the original ids");
    let mine = personal(&mut a2).await;
    assert_eq!(
        count(&mine, "resend me"),
        1,
        "stored once in the sender's queue"
    );
    assert_eq!(mine.len(), 51);
    // The receiver got one push; a resend only re-notifies. Its notify may
    // trail the barrier's answer (a reply can overtake a queued push), so
    // the queue is read on a second device and b is asked again after.
    let theirs = personal(&mut Raw::login(s.recv.tcp, 2, "b2", 2).await.named("b2")).await;
    let mut extra = b.barrier().await;
    extra.extend(b.barrier().await);
    assert!(
        extra
            .iter()
            .all(|f| f.cmd == SYNC_NOTIFY && i64_of(f) == pushed.0.sync_key),
        "no second push: {}",
        describe(&extra)
    );
    assert_eq!(theirs, vec!["resend me"]);
}

/// After a clean stop (SIGTERM) the node recorded that every unconfirmed
/// ACK was marked: an identical send is a new message. After a crash
/// (SIGKILL) nothing tells whether the ACK got out: it is a resend.
async fn restarts_are_judged_by_how_the_node_stopped(im: &mut Im) {
    let mut a = Raw::login(im.tcp, 1, "phone", 2).await.named("a");
    assert_eq!(a.im(1, 2, 5, "before stop").await.sync_key, 1);
    let status = tokio::task::block_in_place(|| im.terminate());
    assert!(status.success(), "clean exit: {status}");
    drop(a);
    tokio::task::block_in_place(|| im.restart());
    let mut a = Raw::login(im.tcp, 1, "phone", 2)
        .await
        .named("a after stop");
    assert_eq!(
        a.im(1, 2, 5, "before stop").await.sync_key,
        2,
        "clean stop: a new message"
    );
    assert_eq!(a.im(1, 2, 6, "before kill").await.sync_key, 3);
    tokio::task::block_in_place(|| im.restart()); // SIGKILL, then start
    drop(a);
    let mut a = Raw::login(im.tcp, 1, "phone", 2)
        .await
        .named("a after kill");
    assert_eq!(
        a.im(1, 2, 6, "before kill").await.sync_key,
        3,
        "crash: a resend, ACKed with the original ids"
    );
    assert_eq!(personal(&mut a).await.len(), 3);
}

// ------------------------------------------------------------ single node

macro_rules! single_node {
    ($store:literal, $m:ident) => {
        mod $m {
            use super::*;

            fn setup(im: &Im) -> Setup<'_> {
                Setup {
                    send: im,
                    resend: im,
                    recv: im,
                    imr: None,
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn msgid_zero_is_never_a_resend() {
                let im = single($store);
                super::msgid_zero_is_never_a_resend(setup(&im)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_rerun_is_delivered_again() {
                let im = single($store);
                super::a_rerun_is_delivered_again(setup(&im), false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_rerun_after_a_reset_is_delivered_again() {
                let im = single($store);
                super::a_rerun_is_delivered_again(setup(&im), true).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restarts_are_judged_by_how_the_node_stopped() {
                let mut im = single($store);
                super::restarts_are_judged_by_how_the_node_stopped(&mut im).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reused_msgid_with_new_content_arrives() {
                let im = single($store);
                super::a_reused_msgid_with_new_content_arrives(setup(&im)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_true_resend_is_stored_once() {
                let im = single($store);
                super::a_true_resend_is_stored_once(setup(&im), false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_true_resend_after_the_close_is_stored_once() {
                let im = single($store);
                super::a_true_resend_is_stored_once(setup(&im), true).await;
            }
        }
    };
}

single_node!("fjall", fjall);

// ---------------------------------------------- two ims on a Redis store

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

impl Cluster {
    /// Sender on node a, reconnecting to node b; receivers on node b.
    fn setup(&self) -> Setup<'_> {
        Setup {
            send: &self.a,
            resend: &self.b,
            recv: &self.b,
            imr: Some(&self.imr),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_msgid_zero_is_never_a_resend() {
    let c = tokio::task::block_in_place(cluster);
    msgid_zero_is_never_a_resend(c.setup()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rerun_is_delivered_again() {
    let c = tokio::task::block_in_place(cluster);
    a_rerun_is_delivered_again(c.setup(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reused_msgid_with_new_content_arrives() {
    let c = tokio::task::block_in_place(cluster);
    a_reused_msgid_with_new_content_arrives(c.setup()).await;
}

/// The resend reaches the other node: the mark written by the first node
/// at the reset is what tells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_true_resend_on_another_node_is_stored_once() {
    let c = tokio::task::block_in_place(cluster);
    a_true_resend_is_stored_once(c.setup(), true).await;
}

/// The resend reaches the same node at once: its live ledger answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_true_resend_on_the_same_node_is_stored_once() {
    let c = tokio::task::block_in_place(cluster);
    let s = Setup {
        resend: &c.a,
        ..c.setup()
    };
    a_true_resend_is_stored_once(s, false).await;
}
