//! "Acknowledged means durable": several senders stream IMs, the im is
//! SIGKILLed while messages are still in flight, restarted on the same data
//! dir, and every ACKed message must be in both queues exactly once, with the
//! ids its ACK announced; a resend after the restart is recognised.

mod support;
mod wire;

use ferry_common::client::{Client, ClientOptions};
use ferry_common::protocol::metadata::Metadata;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::{Im, token};
use tokio::sync::mpsc;
use wire::*;

const SENDERS: i64 = 4;
/// Requests in flight per sender.
const LANES: i32 = 3;
const RECEIVER: i64 = 500;
/// Kill once every sender has at least this many ACKs.
const MIN_ACKED: usize = 150;

#[derive(Debug, Clone)]
struct Acked {
    msgid: i32,
    content: String,
    meta: Metadata,
}

fn device(uid: i64) -> String {
    format!("dur-{uid}")
}

/// The whole personal queue of `uid`, oldest first, read on a fresh connection.
async fn queue_of(im: &Im, uid: i64) -> Vec<String> {
    let mut c = Raw::login(im.tcp, uid, "verifier", 2)
        .await
        .named(&format!("verify {uid}"));
    let mut all = Vec::new();
    let mut key = 0;
    loop {
        let s = c.sync(key).await;
        assert_eq!(s.begin, key);
        all.extend(s.contents());
        assert_eq!(
            s.end,
            all.len() as i64,
            "queue {uid}: ids must stay contiguous from 1 after the crash"
        );
        key = s.end;
        if s.after.is_empty() {
            return all;
        }
    }
}

fn sender_of(content: &str) -> i64 {
    content[1..content.find('-').expect("u<uid>-n<n>")]
        .parse()
        .expect("uid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_survives_sigkill_exactly_once() {
    survives_sigkill(&[]).await;
}

/// The scenario of the module docs on the store `store_args` selects.
async fn survives_sigkill(store_args: &[&str]) {
    let mut im = Im::start(store_args);
    let (tx, mut acks) = mpsc::unbounded_channel::<i64>();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let uid = 101 + s;
        let opts = ClientOptions {
            sync: false,
            request_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let c = Client::connect_with(im.tcp, opts).await.expect("connect");
        c.auth(&token(uid), 1, &device(uid), 2).await.expect("auth");
        for lane in 0..LANES {
            let h = c.handle();
            let tx = tx.clone();
            senders.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = lane + 1;
                loop {
                    let content = format!("u{uid}-n{n}");
                    match h.send_im(RECEIVER, content.clone(), n).await {
                        Ok(ack) => {
                            assert!(ack.is_ok(), "{content}: status {}", ack.status);
                            let meta = ack
                                .metadata
                                .unwrap_or_else(|| panic!("{content}: ACK without METADATA"));
                            acked.push(Acked {
                                msgid: n,
                                content,
                                meta,
                            });
                            let _ = tx.send(uid);
                        }
                        // The server died under us: whatever was not ACKed may or may not be stored.
                        Err(_) => return (uid, acked),
                    }
                    n += LANES;
                }
            }));
        }
        // Each lane keeps its own handle; the connection lives while any does.
        drop(c);
    }
    drop(tx);

    let mut counts: HashMap<i64, usize> = HashMap::new();
    while counts.len() < SENDERS as usize || counts.values().any(|&n| n < MIN_ACKED) {
        let uid = tokio::time::timeout(WAIT, acks.recv())
            .await
            .expect("ACKs stalled")
            .expect("senders alive");
        *counts.entry(uid).or_default() += 1;
    }
    // Traffic is still flowing: SIGKILL now.
    im.kill();

    let mut acked: HashMap<i64, Vec<Acked>> = HashMap::new();
    for t in senders {
        let (uid, list) = tokio::time::timeout(WAIT, t)
            .await
            .expect("sender did not notice the kill")
            .expect("sender");
        acked.entry(uid).or_default().extend(list);
    }
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total >= SENDERS as usize * MIN_ACKED);

    im.restart();

    // Receiver: every ACKed message exactly once; nothing at all twice.
    let received = queue_of(&im, RECEIVER).await;
    let mut seen = HashSet::new();
    for c in &received {
        assert!(
            seen.insert(c.clone()),
            "{c} is twice in the receiver's queue"
        );
    }
    for a in acked.values().flatten() {
        assert!(
            seen.contains(&a.content),
            "ACKed {} is missing from the receiver's queue after SIGKILL",
            a.content
        );
    }

    // Senders: each ACKed message sits at exactly the id its ACK announced,
    // and both queues hold the same messages (one atomic write).
    let mut resend = Vec::new();
    for (uid, list) in &acked {
        let own = queue_of(&im, *uid).await;
        let unique: HashSet<_> = own.iter().collect();
        assert_eq!(
            unique.len(),
            own.len(),
            "sender {uid}: duplicate in own queue"
        );
        for a in list {
            assert_eq!(
                a.meta.prev_sync_key,
                a.meta.sync_key - 1,
                "{}: {:?}",
                a.content,
                a.meta
            );
            assert_eq!(
                own.get(a.meta.sync_key as usize - 1),
                Some(&a.content),
                "sender {uid}: ACKed {} must be at id {}",
                a.content,
                a.meta.sync_key
            );
        }
        let in_receiver: HashSet<&String> =
            received.iter().filter(|c| sender_of(c) == *uid).collect();
        let in_sender: HashSet<&String> = own.iter().collect();
        assert_eq!(
            in_receiver, in_sender,
            "sender {uid}: receiver and sender copies differ (non-atomic write)"
        );
        let last = list
            .iter()
            .max_by_key(|a| a.meta.sync_key)
            .expect("acked")
            .clone();
        resend.push((*uid, last));
    }

    // A resend of an ACKed message after the restart (same device, msgid,
    // receiver) is a duplicate: same ids, nothing stored.
    for (uid, a) in &resend {
        let mut c = Raw::login(im.tcp, *uid, &device(*uid), 2)
            .await
            .named(&format!("resend {uid}"));
        let meta = c.im(*uid, RECEIVER, a.msgid, &a.content).await;
        assert_eq!(
            meta, a.meta,
            "resend of {} after restart must get the original ids",
            a.content
        );
    }
    eprintln!(
        "durability: {total} ACKed before SIGKILL, {} in the receiver's queue after restart ({} stored but not ACKed)",
        received.len(),
        received.len() - total
    );
    let again = queue_of(&im, RECEIVER).await;
    assert_eq!(
        again.len(),
        received.len(),
        "resends after the restart were stored again"
    );
}
