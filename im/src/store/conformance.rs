//! Backend-agnostic behaviour tests of [`Store`]: every function here takes
//! any store and checks one part of the contract in `store/mod.rs`. The
//! modules at the bottom run every function against each backend (the
//! engine on fjall, standalone Redis, Redis Cluster).
//!
//! The functions only assume a store that is fresh for the queues they use:
//! a shared Redis is fine as long as each gets its own key prefix (device
//! numbers use unique device names per run).

use super::test_support::*;
use super::{
    AppendOutcome, AppendRequest, DedupKey, Earlier, NewEntry, Origin, Placed, QueueId, Store,
    StoreError, StoredMessage, Unconfirmed, Window,
};
use bytes::Bytes;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) type SharedStore = Arc<dyn Store>;
type Case = fn(SharedStore) -> Pin<Box<dyn Future<Output = ()> + Send>>;

async fn append(store: &dyn Store, req: AppendRequest) -> AppendOutcome {
    store.append(req).await.expect("append")
}

/// Unique text per call, so runs sharing one Redis never collide.
fn unique(tag: &str) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    format!("{tag}-{}", u64::from_le_bytes(b))
}

pub(crate) async fn ids_are_contiguous_per_queue(s: SharedStore) {
    for i in 0..3 {
        let out = append(&*s, single(1, "a")).await;
        assert_eq!(
            out.placed,
            vec![Placed {
                msgid: i + 1,
                prev: i
            }]
        );
        assert!(!out.duplicate);
    }
    assert_eq!(ids(&append(&*s, single(2, "b")).await), vec![1]);
    // Another app's queue with the same uid is a different queue.
    let other = AppendRequest {
        entries: vec![NewEntry {
            queue: QueueId { appid: 8, uid: 1 },
            ..entry(1, "c")
        }],
        dedup: None,
    };
    assert_eq!(ids(&append(&*s, other).await), vec![1]);
    let out = append(&*s, peer(1, 2, None, "d")).await;
    assert_eq!(
        out.placed,
        vec![Placed { msgid: 2, prev: 1 }, Placed { msgid: 4, prev: 3 }]
    );
    assert_eq!(all_ids(&*s, 1).await, vec![1, 2, 3, 4]);
    assert_eq!(all_ids(&*s, 2).await, vec![1, 2]);
}

pub(crate) async fn two_entry_append_is_written_together(s: SharedStore) {
    let out = append(&*s, peer(10, 20, None, "hello")).await;
    assert!(!out.duplicate);
    assert_eq!(ids(&out), vec![1, 1]);
    for uid in [10, 20] {
        let w = s.window(q(uid), 0, 10).await.expect("window");
        assert_eq!(
            w.messages,
            vec![StoredMessage {
                msgid: 1,
                cmd: 4,
                flag: 1,
                device_id: 3,
                body: Bytes::from_static(b"hello"),
            }]
        );
    }
    // Two entries for one queue in one request get consecutive ids, in
    // request order, also when another queue's entry sits between them.
    let req = AppendRequest {
        entries: vec![entry(10, "x"), entry(30, "z"), entry(10, "y")],
        dedup: None,
    };
    let out = append(&*s, req).await;
    assert_eq!(
        out.placed,
        vec![
            Placed { msgid: 2, prev: 1 },
            Placed { msgid: 1, prev: 0 },
            Placed { msgid: 3, prev: 2 }
        ]
    );
    let w = s.window(q(10), 1, 10).await.expect("window");
    let bodies: Vec<&[u8]> = w.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"x"[..], &b"y"[..]]);
}

pub(crate) async fn message_fields_roundtrip(s: SharedStore) {
    let big = Bytes::from(vec![0xabu8; 32 * 1024]);
    let cases = [
        (4u8, 0u8, 0i64, Bytes::new()),
        (8, 3, -1, Bytes::from_static(b"\0\x01\xff\0")),
        (21, 255, i64::MAX, Bytes::from_static("héllo".as_bytes())),
        (64, 1, 123_456_789, big),
    ];
    for (cmd, flag, device_id, body) in &cases {
        let req = AppendRequest {
            entries: vec![NewEntry {
                queue: q(1),
                cmd: *cmd,
                flag: *flag,
                device_id: *device_id,
                body: body.clone(),
            }],
            dedup: None,
        };
        append(&*s, req).await;
    }
    let w = s.window(q(1), 0, 100).await.expect("window");
    let expected: Vec<StoredMessage> = cases
        .iter()
        .zip(1..)
        .map(|((cmd, flag, device_id, body), msgid)| StoredMessage {
            msgid,
            cmd: *cmd,
            flag: *flag,
            device_id: *device_id,
            body: body.clone(),
        })
        .collect();
    assert_eq!(w.messages, expected);
    assert_eq!(s.latest(q(1), 100).await.expect("latest"), expected);
}

pub(crate) async fn concurrent_appenders_get_contiguous_ids(s: SharedStore) {
    const TASKS: i64 = 120;
    const PER_TASK: i64 = 15;
    const USERS: i64 = 10;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut placed = Vec::new();
                for i in 0..PER_TASK {
                    let sender = t % USERS;
                    let mut receiver = (t + i + 1) % USERS;
                    if receiver == sender {
                        receiver = (receiver + 1) % USERS;
                    }
                    // Half with a client key, half without.
                    let cm = (i % 2 == 0).then_some(t * 1000 + i);
                    let out = s
                        .append(peer(sender, receiver, cm, "body"))
                        .await
                        .expect("append");
                    assert!(!out.duplicate);
                    placed.push((receiver, out.placed[0].msgid));
                    placed.push((sender, out.placed[1].msgid));
                }
                placed
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for p in t.await.expect("join") {
            assert!(seen.insert(p), "id handed out twice: {p:?}");
        }
    }
    let mut total = 0;
    for uid in 0..USERS {
        let got = all_ids(&*s, uid).await;
        let expected: Vec<i64> = (1..=got.len() as i64).collect();
        assert_eq!(got, expected, "queue {uid} has gaps");
        total += got.len();
        for id in got {
            assert!(seen.contains(&(uid, id)));
        }
        assert_eq!(
            s.window(q(uid), 0, 1).await.expect("window").head,
            total_len(&*s, uid).await
        );
    }
    assert_eq!(total as i64, TASKS * PER_TASK * 2);
    assert_eq!(seen.len(), total);
}

async fn total_len(s: &dyn Store, uid: i64) -> i64 {
    all_ids(s, uid).await.len() as i64
}

pub(crate) async fn duplicate_returns_original_ids_and_writes_nothing(s: SharedStore) {
    let first = append(&*s, peer(1, 2, Some(42), "hi")).await;
    assert!(!first.duplicate);
    append(&*s, single(1, "other")).await;
    let again = append(&*s, peer(1, 2, Some(42), "hi")).await;
    assert!(again.duplicate);
    assert_eq!(again.placed, first.placed);
    assert_eq!(all_ids(&*s, 1).await, vec![1, 2]);
    assert_eq!(all_ids(&*s, 2).await, vec![1]);
    // Any field of the key differing makes it a new message.
    let other_receiver = append(&*s, peer(1, 3, Some(42), "hi")).await;
    assert!(!other_receiver.duplicate);
    assert_eq!(ids(&other_receiver), vec![1, 3]);
    let mut other_device = peer(1, 2, Some(42), "hi");
    other_device.dedup = Some(dedup(
        DedupKey {
            device_id: 4,
            ..key(1, 2, 42)
        },
        "hi",
    ));
    let out = append(&*s, other_device).await;
    assert!(!out.duplicate);
    assert_eq!(ids(&out), vec![2, 4]);
    // A duplicate does not consume ids: the next append follows on.
    assert_eq!(ids(&append(&*s, single(2, "n")).await), vec![3]);
    // A message to oneself (one entry) deduplicates too.
    let own = AppendRequest {
        entries: vec![entry(5, "me")],
        dedup: Some(dedup(key(5, 5, 1), "me")),
    };
    let a = append(&*s, own.clone()).await;
    let b = append(&*s, own).await;
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(a.placed, b.placed);
    assert_eq!(all_ids(&*s, 5).await, vec![1]);
}

/// A reused msgid with other content is a new message, and its record
/// replaces the earlier one.
pub(crate) async fn other_content_is_new_and_replaces_the_record(s: SharedStore) {
    let a = append(&*s, peer(1, 2, Some(42), "a")).await;
    let b = append(&*s, peer(1, 2, Some(42), "b")).await;
    assert!(!b.duplicate && b.earlier.is_none());
    assert_eq!((ids(&a), ids(&b)), (vec![1, 1], vec![2, 2]));
    let b_again = append(&*s, peer(1, 2, Some(42), "b")).await;
    assert!(b_again.duplicate);
    assert_eq!(b_again.placed, b.placed);
    // "a"'s record was replaced: "a" is new again.
    let a_again = append(&*s, peer(1, 2, Some(42), "a")).await;
    assert!(!a_again.duplicate);
    assert_eq!(ids(&a_again), vec![3, 3]);
    assert_eq!(all_ids(&*s, 2).await, vec![1, 2, 3]);
}

/// A candidate carries the record's origin and mark; a marked record stays
/// a candidate with the same ids; `replace` writes and takes the record
/// over (new ids, new origin, no mark).
pub(crate) async fn candidates_carry_origin_and_mark_and_replace_writes(s: SharedStore) {
    let first = append(&*s, peer(1, 2, Some(9), "m")).await;
    let again = append(&*s, peer(1, 2, Some(9), "m")).await;
    assert_eq!(
        again.earlier,
        Some(Earlier {
            origin: ORIGIN,
            unconfirmed: false
        })
    );
    assert_eq!(again.placed, first.placed);
    let mark = Unconfirmed {
        key: key(1, 2, 9),
        queue: q(2),
    };
    // Marking an unknown key is not an error.
    let unknown = Unconfirmed {
        key: key(1, 2, 10),
        queue: q(2),
    };
    s.mark_unconfirmed(vec![mark, unknown]).await.expect("mark");
    let marked = append(&*s, peer(1, 2, Some(9), "m")).await;
    assert!(marked.duplicate);
    assert_eq!(marked.placed, first.placed);
    assert!(marked.earlier.is_some_and(|e| e.unconfirmed), "{marked:?}");
    let other = Origin {
        incarnation: 77,
        connection: 5,
    };
    let mut req = peer(1, 2, Some(9), "m");
    if let Some(d) = req.dedup.as_mut() {
        d.replace = true;
        d.origin = other;
    }
    let replaced = append(&*s, req).await;
    assert!(!replaced.duplicate && replaced.earlier.is_none());
    assert_eq!(ids(&replaced), vec![2, 2]);
    let after = append(&*s, peer(1, 2, Some(9), "m")).await;
    assert_eq!(after.placed, replaced.placed);
    assert_eq!(
        after.earlier,
        Some(Earlier {
            origin: other,
            unconfirmed: false
        })
    );
    assert_eq!(all_ids(&*s, 2).await, vec![1, 2]);
    // No record at all for requests without a key, however alike.
    let x = append(&*s, peer(1, 2, None, "m")).await;
    let y = append(&*s, peer(1, 2, None, "m")).await;
    assert!(!x.duplicate && !y.duplicate);
    assert_eq!(all_ids(&*s, 2).await, vec![1, 2, 3, 4]);
}

/// Node incarnation records: absent, running (with its time), clean.
pub(crate) async fn node_states_round_trip(s: SharedStore) {
    let inc = 1 + u64::from(rand_u16());
    assert_eq!(s.node_state(inc).await.expect("read"), None);
    s.set_node_state(inc, false).await.expect("running");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let running = s.node_state(inc).await.expect("read").expect("state");
    assert!(!running.clean);
    assert!((now - running.seen_secs).abs() <= 2, "{running:?}");
    s.set_node_state(inc, true).await.expect("clean");
    assert!(s.node_state(inc).await.expect("read").expect("state").clean);
    assert_eq!(s.node_state(inc + 1).await.expect("read"), None);
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("random");
    u16::from_le_bytes(b)
}

pub(crate) async fn concurrent_duplicates_agree(s: SharedStore) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.append(peer(1, 2, Some(7), "m")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("join").expect("append"));
    }
    let originals = outcomes.iter().filter(|o| !o.duplicate).count();
    assert_eq!(originals, 1, "exactly one original: {outcomes:?}");
    assert!(outcomes.iter().all(|o| o.placed == outcomes[0].placed));
    assert_eq!(all_ids(&*s, 1).await, vec![1]);
    assert_eq!(all_ids(&*s, 2).await, vec![1]);
}

pub(crate) async fn empty_append_is_refused(s: SharedStore) {
    let err = s
        .append(AppendRequest {
            entries: vec![],
            dedup: None,
        })
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert_eq!(ids(&append(&*s, single(1, "a")).await), vec![1]);
}

pub(crate) async fn window_pages_with_has_more(s: SharedStore) {
    let empty = s.window(q(1), 0, 10).await.expect("window");
    assert_eq!(
        empty,
        Window {
            messages: vec![],
            head: 0,
            has_more: false
        }
    );
    for i in 1..=5 {
        append(&*s, single(1, &format!("m{i}"))).await;
    }
    let w = s.window(q(1), 0, 2).await.expect("window");
    assert_eq!(msg_ids(&w.messages), vec![1, 2]);
    assert_eq!(&w.messages[1].body[..], b"m2");
    assert_eq!((w.head, w.has_more), (5, true));
    let w = s.window(q(1), 2, 2).await.expect("window");
    assert_eq!(msg_ids(&w.messages), vec![3, 4]);
    assert!(w.has_more);
    let w = s.window(q(1), 4, 2).await.expect("window");
    assert_eq!(msg_ids(&w.messages), vec![5]);
    assert_eq!((w.head, w.has_more), (5, false));
    let w = s.window(q(1), 5, 2).await.expect("window");
    assert!(w.messages.is_empty());
    assert_eq!((w.head, w.has_more), (5, false));
    // Client ahead of the server.
    let w = s.window(q(1), 9, 2).await.expect("window");
    assert!(w.messages.is_empty());
    assert_eq!((w.head, w.has_more), (5, false));
    let w = s.window(q(1), 3, 0).await.expect("window");
    assert!(w.messages.is_empty());
    assert_eq!((w.head, w.has_more), (5, true));
    let w = s.window(q(1), -3, usize::MAX).await.expect("window");
    assert_eq!(msg_ids(&w.messages), vec![1, 2, 3, 4, 5]);
    assert!(!w.has_more);
}

pub(crate) async fn latest_returns_newest_oldest_first(s: SharedStore) {
    assert!(s.latest(q(1), 3).await.expect("latest").is_empty());
    for i in 1..=5 {
        append(&*s, single(1, &format!("m{i}"))).await;
    }
    let l = s.latest(q(1), 3).await.expect("latest");
    assert_eq!(msg_ids(&l), vec![3, 4, 5]);
    assert_eq!(&l[2].body[..], b"m5");
    assert_eq!(s.latest(q(1), 100).await.expect("latest").len(), 5);
    assert_eq!(s.latest(q(1), usize::MAX).await.expect("latest").len(), 5);
    assert!(s.latest(q(1), 0).await.expect("latest").is_empty());
}

pub(crate) async fn count_after_counts_newer_messages(s: SharedStore) {
    assert_eq!(s.count_after(q(1), 0).await.expect("count"), 0);
    for _ in 0..5 {
        append(&*s, single(1, "m")).await;
    }
    assert_eq!(s.count_after(q(1), 0).await.expect("count"), 5);
    assert_eq!(s.count_after(q(1), 3).await.expect("count"), 2);
    assert_eq!(s.count_after(q(1), 5).await.expect("count"), 0);
    assert_eq!(s.count_after(q(1), 99).await.expect("count"), 0);
    assert_eq!(s.count_after(q(1), -4).await.expect("count"), 5);
    assert_eq!(s.count_after(q(2), 0).await.expect("count"), 0);
}

pub(crate) async fn sync_keys_only_increase(s: SharedStore) {
    assert_eq!(s.sync_key(q(1)).await.expect("key"), 0);
    s.set_sync_key(q(1), 5).await.expect("set");
    s.set_sync_key(q(1), 3).await.expect("set");
    assert_eq!(s.sync_key(q(1)).await.expect("key"), 5);
    s.set_sync_key(q(1), 5).await.expect("set");
    s.set_sync_key(q(1), 8).await.expect("set");
    assert_eq!(s.sync_key(q(1)).await.expect("key"), 8);
    assert_eq!(s.sync_key(q(2)).await.expect("key"), 0);
    s.set_sync_key(q(3), 1 << 40).await.expect("set");
    s.set_sync_key(q(3), (1 << 40) - 1).await.expect("set");
    assert_eq!(s.sync_key(q(3)).await.expect("key"), 1 << 40);
    // The personal key and the group keys are independent.
    assert_eq!(s.group_sync_key(q(1), 0).await.expect("key"), 0);
}

pub(crate) async fn group_sync_keys_only_increase(s: SharedStore) {
    assert_eq!(s.group_sync_key(q(1), 100).await.expect("key"), 0);
    s.set_group_sync_key(q(1), 100, 9).await.expect("set");
    s.set_group_sync_key(q(1), 100, 4).await.expect("set");
    s.set_group_sync_key(q(1), 200, 2).await.expect("set");
    assert_eq!(s.group_sync_key(q(1), 100).await.expect("key"), 9);
    assert_eq!(s.group_sync_key(q(1), 200).await.expect("key"), 2);
    assert_eq!(s.group_sync_key(q(2), 100).await.expect("key"), 0);
    assert_eq!(s.sync_key(q(1)).await.expect("key"), 0);
    s.set_group_sync_key(q(1), 200, 3).await.expect("set");
    assert_eq!(s.group_sync_key(q(1), 200).await.expect("key"), 3);
}

pub(crate) async fn device_numbers_are_stable_and_distinct(s: SharedStore) {
    let phone_a = unique("phone-a");
    let phone_b = unique("phone-b");
    // Many concurrent first logins of one device: a single number.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = Arc::clone(&s);
            let d = phone_a.clone();
            tokio::spawn(async move { s.device_number(&d, 1).await })
        })
        .collect();
    let mut numbers = HashSet::new();
    for t in tasks {
        numbers.insert(t.await.expect("join").expect("number"));
    }
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    let a = s.device_number(&phone_a, 1).await.expect("number");
    assert!(numbers.contains(&a));
    let b = s.device_number(&phone_a, 2).await.expect("number");
    let c = s.device_number(&phone_b, 1).await.expect("number");
    assert_eq!(HashSet::from([a, b, c]).len(), 3);
    assert!(a > 0 && b > 0 && c > 0);
    assert_eq!(s.device_number(&phone_a, 2).await.expect("number"), b);
    assert_eq!(s.device_number(&phone_b, 1).await.expect("number"), c);
}

pub(crate) async fn close_refuses_later_calls(s: SharedStore) {
    append(&*s, single(1, "before")).await;
    s.close().await.expect("close");
    assert!(matches!(
        s.append(single(1, "late")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.window(q(1), 0, 10).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.latest(q(1), 10).await, Err(StoreError::Closed)));
    assert!(matches!(
        s.count_after(q(1), 0).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.sync_key(q(1)).await, Err(StoreError::Closed)));
    assert!(matches!(
        s.set_sync_key(q(1), 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.group_sync_key(q(1), 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.set_group_sync_key(q(1), 1, 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        s.device_number("d", 1).await,
        Err(StoreError::Closed)
    ));
    s.close().await.expect("second close is a no-op");
}

/// Stores that apply requests in order give each request its position in
/// its stream, counted per stream, a duplicate included; others give none.
pub(crate) async fn ordered_appends_get_their_position_per_stream(s: SharedStore) {
    let g1 = (7, 1);
    let g2 = (7, 2);
    let expect = |n: u64| s.orders_appends().then_some(n);
    let pos = |r: Result<(AppendOutcome, Option<u64>), StoreError>| r.expect("append").1;
    assert_eq!(pos(s.append_ordered(single(1, "a"), g1).await), expect(1));
    assert_eq!(pos(s.append_ordered(single(1, "b"), g2).await), expect(1));
    let req = peer(1, 2, Some(5), "c");
    assert_eq!(pos(s.append_ordered(req.clone(), g1).await), expect(2));
    let (again, p) = s.append_ordered(req, g1).await.expect("resend");
    assert!(again.duplicate);
    assert_eq!(p, expect(3));
    // A plain append has no position and takes none.
    append(&*s, single(1, "d")).await;
    assert_eq!(pos(s.append_ordered(single(1, "e"), g1).await), expect(4));
}

/// Calls `$m!` with every conformance function's name: the one list the
/// per-backend test modules and [`CASES`] are generated from.
macro_rules! with_cases {
    ($m:ident $(, $arg:tt)*) => {
        $m! {
            [$($arg)*]
            ids_are_contiguous_per_queue,
            two_entry_append_is_written_together,
            message_fields_roundtrip,
            concurrent_appenders_get_contiguous_ids,
            duplicate_returns_original_ids_and_writes_nothing,
            other_content_is_new_and_replaces_the_record,
            candidates_carry_origin_and_mark_and_replace_writes,
            node_states_round_trip,
            concurrent_duplicates_agree,
            empty_append_is_refused,
            window_pages_with_has_more,
            latest_returns_newest_oldest_first,
            count_after_counts_newer_messages,
            sync_keys_only_increase,
            group_sync_keys_only_increase,
            device_numbers_are_stable_and_distinct,
            ordered_appends_get_their_position_per_stream,
            close_refuses_later_calls,
        }
    };
}

macro_rules! case_list {
    ([] $($name:ident),* $(,)?) => {
        /// Every conformance function with its name.
        pub(crate) const CASES: &[(&str, Case)] = &[
            $((stringify!($name), |s| Box::pin($name(s)))),*
        ];
    };
}
with_cases!(case_list);

/// One `#[tokio::test]` per conformance function; `$fixture` is an async fn
/// returning `(SharedStore, guard)`, the guard keeping the backend alive.
macro_rules! backend_tests {
    ([$fixture:path] $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture().await;
                super::$name(store).await;
            }
        )*
    };
}

mod fjall {
    use super::SharedStore;
    use crate::store::{FjallOptions, FjallStore};
    use std::sync::Arc;

    async fn fixture() -> (SharedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallStore::open(dir.path(), FjallOptions::default()).expect("open");
        (Arc::new(store), dir)
    }

    with_cases!(backend_tests, fixture);
}

mod redis_standalone {
    use super::SharedStore;
    use crate::store::{RedisStore, RedisStoreOptions};
    use ferry_testkit::redis::RedisServer;
    use std::sync::Arc;

    /// A private redis-server per test.
    async fn fixture() -> (SharedStore, RedisServer) {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis");
        let store = RedisStore::connect(&server.url(), RedisStoreOptions::default())
            .await
            .expect("connect");
        (Arc::new(store), server)
    }

    with_cases!(backend_tests, fixture);
}

mod redis_cluster {
    use super::{CASES, SharedStore};
    use crate::store::{RedisStore, RedisStoreOptions};
    use ferry_testkit::redis::RedisCluster;
    use std::sync::Arc;

    /// Every conformance function over `redis+cluster://` on one three-node
    /// cluster, each with a fresh store under its own key prefix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite_on_a_three_node_cluster() {
        let cluster = tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .expect("start cluster");
        for (name, case) in CASES {
            let opts = RedisStoreOptions {
                key_prefix: format!("conf-{name}"),
                ..RedisStoreOptions::default()
            };
            let store: SharedStore = Arc::new(
                RedisStore::connect(&cluster.url(), opts)
                    .await
                    .expect("connect"),
            );
            case(store).await;
        }
    }
}
