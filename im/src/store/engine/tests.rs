//! Behaviour tests of the engine (on fjall) through the [`Store`] trait,
//! plus injected commit and fsync failures and a slow sync (through
//! [`FaultyKv`]), a stalled writer and a crash image test.

use super::faulty_kv::{Faults, FaultyKv};
use super::kv::Order;
use super::*;
use crate::store::fjall::{DATA_DIR, FjallKv};
use crate::store::{FjallOptions, FjallStore, NewEntry, Placed};
use std::time::Instant;

use crate::store::test_support::*;

fn open(dir: &Path) -> FjallStore {
    FjallStore::open(dir, FjallOptions::default()).expect("open store")
}

/// The engine on fjall as [`open`] sets it up, with commit faults a test
/// arms through the returned handle.
fn open_faulty(dir: &Path) -> (FaultyStore, Arc<Faults>) {
    let o = FjallOptions::default();
    let faults = Arc::new(Faults::default());
    let opts = EngineOptions {
        dedup_window: o.dedup_window,
        batch_max: o.batch_max,
        queue_capacity: o.queue_capacity,
        readers: o.readers,
    };
    let store = Engine::start(dir, (o.cache_bytes, Arc::clone(&faults)), opts).expect("open store");
    (store, faults)
}

/// Dedup batch records on disk.
async fn dedup_records(store: &FjallStore) -> usize {
    store
        .read(|db| {
            let mut n = 0;
            db.scan(
                Space::Dedup,
                &[],
                &layout::KEY_MAX,
                Order::Forward,
                &mut |_, _| {
                    n += 1;
                    Ok(true)
                },
            )?;
            Ok(n)
        })
        .await
        .expect("count")
}

type FaultyStore = Engine<FaultyKv<FjallKv>>;

/// Holds the writer's next batch open: the sync of a first append (to uid
/// 99) stalls until `faults.release()`, and requests sent meanwhile are
/// built into one batch behind it. Returns that append's task.
async fn hold_next_batch(
    store: &Arc<FaultyStore>,
    faults: &Faults,
) -> tokio::task::JoinHandle<Result<AppendOutcome, StoreError>> {
    faults.stall_next();
    let s = Arc::clone(store);
    let first = tokio::spawn(async move { s.append(single(99, "hold")).await });
    tokio::time::timeout(Duration::from_secs(10), faults.stalled())
        .await
        .expect("the holding batch reaches its sync");
    first
}

/// Waits until the writer has taken `n` requests into its batches since
/// `before` (a [`StoreStats::placed`] reading). On failure the stalled
/// batch is released first, so the test fails instead of hanging.
async fn placed(store: &FaultyStore, faults: &Faults, before: u64, n: u64) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while store.stats().placed < before + n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    if reached.is_err() {
        faults.release();
        panic!(
            "{} of {n} requests reached the writer",
            store.stats().placed - before
        );
    }
}

async fn dedup_index_len(store: &FjallStore) -> i64 {
    match store.write(Op::DedupIndexLen).await.expect("len") {
        Done::Number(n) => n,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test]
async fn ids_are_contiguous_per_queue_and_continue_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for i in 0..3 {
            let out = store.append(single(1, "a")).await.expect("append");
            assert_eq!(
                out.placed,
                vec![Placed {
                    msgid: i + 1,
                    prev: i
                }]
            );
        }
        let out = store.append(single(2, "b")).await.expect("append");
        assert_eq!(ids(&out), vec![1]);
        // Another app's queue with the same uid is a different queue.
        let other = AppendRequest {
            entries: vec![NewEntry {
                queue: QueueId { appid: 8, uid: 1 },
                ..entry(1, "c")
            }],
            dedup: None,
        };
        assert_eq!(ids(&store.append(other).await.expect("append")), vec![1]);
        store.close().await.expect("close");
    }
    let store = open(dir.path());
    let out = store.append(peer(1, 2, None, "d")).await.expect("append");
    assert_eq!(
        out.placed,
        vec![Placed { msgid: 2, prev: 1 }, Placed { msgid: 4, prev: 3 }]
    );
    assert_eq!(all_ids(&store, 1).await, vec![1, 2, 3, 4]);
    assert_eq!(all_ids(&store, 2).await, vec![1, 2]);
}

#[tokio::test]
async fn failed_commit_writes_neither_entry_and_ids_stay_contiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    store.append(peer(1, 2, None, "a")).await.expect("append");
    faults.fail_next(1);
    let err = store.append(peer(1, 2, Some(5), "lost")).await;
    assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
    assert_eq!(all_ids(&store, 1).await, vec![1]);
    assert_eq!(all_ids(&store, 2).await, vec![1]);
    // Recovered: the same request (its dedup key was never committed)
    // now succeeds and takes the next ids without a gap.
    let out = store
        .append(peer(1, 2, Some(5), "kept"))
        .await
        .expect("append");
    assert!(!out.duplicate);
    assert_eq!(ids(&out), vec![2, 2]);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2]);
    let w = store.window(q(2), 1, 10).await.expect("window");
    assert_eq!(&w.messages[0].body[..], b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_fails_every_request_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    let store = Arc::new(store);
    // The next requests queue up behind a stalled sync and share one
    // batch, which fails.
    let hold = hold_next_batch(&store, &faults).await;
    faults.fail_next(1);
    let before = store.stats().placed;
    let batch = {
        let s = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::join!(
                s.append(single(1, "a")),
                s.append(peer(1, 2, Some(1), "b")),
                s.set_sync_key(q(1), 9),
                s.device_number("dev", 1),
            )
        })
    };
    // Two appends and a new device (a sync key never goes to the writer).
    placed(&store, &faults, before, 3).await;
    faults.release();
    hold.await
        .expect("join")
        .expect("the holding batch commits");
    let (a, b, c, d) = batch.await.expect("join");
    assert!(matches!(a, Err(StoreError::Backend(_))), "{a:?}");
    assert!(matches!(b, Err(StoreError::Backend(_))), "{b:?}");
    assert!(matches!(d, Err(StoreError::Backend(_))), "{d:?}");
    assert_eq!(all_ids(&*store, 1).await, Vec::<i64>::new());
    // A sync key never waits for a batch: it stays pending until one
    // commits it, and reads back meanwhile.
    c.expect("sync key");
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 9);
    // Recovered.
    assert_eq!(
        ids(&store.append(single(1, "c")).await.expect("append")),
        vec![1]
    );
    assert_eq!(store.device_number("dev", 1).await.expect("number"), 1);
    drop(store);
    assert_eq!(open(dir.path()).sync_key(q(1)).await.expect("key"), 9);
}

#[tokio::test]
async fn repeated_write_failures_return_errors_and_store_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    for _ in 0..3 {
        store
            .append(peer(1, 2, None, "small"))
            .await
            .expect("append");
    }
    // Like a full disk: every batch fails until space returns.
    faults.fail_next(3);
    let big = "x".repeat(256 * 1024);
    let mut failures = 0;
    for i in 0..3 {
        match store.append(peer(1, 2, Some(100 + i), &big)).await {
            Err(StoreError::Backend(_)) => failures += 1,
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
    assert_eq!(failures, 3);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2, 3]);
    // Space returns: writes succeed again, ids continue without a gap, and
    // the dedup keys of the failed requests were never recorded.
    let out = store
        .append(peer(1, 2, Some(100), &big))
        .await
        .expect("append");
    assert!(!out.duplicate);
    assert_eq!(ids(&out), vec![4, 4]);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2, 3, 4]);
    assert_eq!(all_ids(&store, 2).await, vec![1, 2, 3, 4]);
    let w = store.window(q(2), 3, 10).await.expect("window");
    assert_eq!(w.messages[0].body.len(), big.len());
}

#[tokio::test]
async fn fsync_failure_errors_and_a_resend_is_answered_from_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    store.append(peer(1, 2, None, "a")).await.expect("append");
    store.set_sync_key(q(1), 4).await.expect("set");
    faults.fail_after_write(1);
    // The batch reached the journal but its "fsync" failed: the caller must
    // not ACK, yet the write may survive (as after a crash before the reply).
    let err = store.append(peer(1, 2, Some(9), "maybe")).await;
    assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
    // The store reopened from disk: whatever it holds is contiguous, and the
    // client's resend is idempotent.
    let again = store
        .append(peer(1, 2, Some(9), "maybe"))
        .await
        .expect("resend");
    assert!(again.duplicate, "the journal kept the write");
    assert_eq!(ids(&again), vec![2, 2]);
    assert_eq!(all_ids(&store, 1).await, vec![1, 2]);
    assert_eq!(
        ids(&store.append(single(1, "next")).await.expect("append")),
        vec![3]
    );
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 4);
    assert_eq!(store.device_number("d", 1).await.expect("number"), 1);
}

#[tokio::test]
async fn duplicate_is_detected_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let store = open(dir.path());
        store
            .append(peer(1, 2, Some(42), "hi"))
            .await
            .expect("append")
    };
    let store = open(dir.path());
    let again = store
        .append(peer(1, 2, Some(42), "hi"))
        .await
        .expect("append");
    assert!(again.duplicate);
    assert_eq!(again.placed, first.placed);
    assert_eq!(all_ids(&store, 1).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_twice_in_one_batch_is_a_duplicate_of_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    let store = Arc::new(store);
    let before = store.stats();
    let hold = hold_next_batch(&store, &faults).await;
    let placed_before = store.stats().placed;
    let both = {
        let s = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::join!(
                s.append(peer(1, 2, Some(7), "m")),
                s.append(peer(1, 2, Some(7), "m")),
            )
        })
    };
    placed(&store, &faults, placed_before, 2).await;
    faults.release();
    hold.await.expect("join").expect("hold");
    let (a, b) = both.await.expect("join");
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.placed, b.placed);
    assert!(a.duplicate ^ b.duplicate, "exactly one duplicate");
    assert_eq!(all_ids(&*store, 1).await, vec![1]);
    // Both joined the batch built behind the holding one.
    let after = store.stats();
    assert_eq!(after.batches - before.batches, 2);
    assert_eq!(after.requests - before.requests, 3);
}

#[tokio::test]
async fn dedup_expires_after_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FjallOptions {
        dedup_window: Duration::from_millis(50),
        ..FjallOptions::default()
    };
    let store = FjallStore::open(dir.path(), opts).expect("open");
    let first = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let again = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    assert!(!again.duplicate, "expired key must be a new message");
    assert_eq!(ids(&first), vec![1, 1]);
    assert_eq!(ids(&again), vec![2, 2]);
    // The renewed record protects the new ids.
    let third = store
        .append(peer(1, 2, Some(1), "a"))
        .await
        .expect("append");
    assert!(third.duplicate);
    assert_eq!(third.placed, again.placed);
}

#[tokio::test]
async fn expired_dedup_rows_are_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FjallOptions {
        dedup_window: Duration::from_millis(50),
        ..FjallOptions::default()
    };
    let store = FjallStore::open(dir.path(), opts).expect("open");
    for i in 0..20 {
        store
            .append(peer(1, 2, Some(i), "a"))
            .await
            .expect("append");
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Any later batch prunes; then no stale records are left, on disk or in
    // the in-memory index.
    store.append(single(3, "b")).await.expect("append");
    assert_eq!(dedup_records(&store).await, 0);
    assert_eq!(dedup_index_len(&store).await, 0);
}

#[tokio::test]
async fn a_pruning_backlog_is_spread_over_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for i in 0..300 {
            store
                .append(peer(1, 2, Some(i), "a"))
                .await
                .expect("append");
        }
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Reopened with a shorter window, every record is expired.
    let opts = FjallOptions {
        dedup_window: Duration::from_millis(10),
        ..FjallOptions::default()
    };
    // After a restart, one batch deletes at most the floor (256) of the
    // expired backlog when nothing new arrived...
    // (The index length is read before that batch prunes.)
    let store = FjallStore::open(dir.path(), opts).expect("open");
    assert_eq!(dedup_records(&store).await, 300);
    assert_eq!(dedup_index_len(&store).await, 300);
    assert_eq!(dedup_records(&store).await, 300 - 256);
    // ...and the next batch carries on without waiting for the interval.
    store.append(single(3, "b")).await.expect("append");
    assert_eq!(dedup_records(&store).await, 0);
    assert_eq!(dedup_index_len(&store).await, 0);
}

#[tokio::test]
async fn dedup_expiry_and_pruning_work_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FjallOptions {
        dedup_window: Duration::from_millis(300),
        ..FjallOptions::default()
    };
    let first = {
        let store = FjallStore::open(dir.path(), opts.clone()).expect("open");
        let mut outcomes = Vec::new();
        for i in 0..10 {
            outcomes.push(
                store
                    .append(peer(1, 2, Some(i), "a"))
                    .await
                    .expect("append"),
            );
        }
        store.close().await.expect("close");
        outcomes.swap_remove(0)
    };
    {
        // Within the window: loaded from disk, still a duplicate.
        let store = FjallStore::open(dir.path(), opts.clone()).expect("open");
        assert_eq!(dedup_index_len(&store).await, 10);
        let again = store
            .append(peer(1, 2, Some(0), "a"))
            .await
            .expect("append");
        assert!(again.duplicate);
        assert_eq!(again.placed, first.placed);
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let store = FjallStore::open(dir.path(), opts).expect("open");
    let renewed = store
        .append(peer(1, 2, Some(0), "a"))
        .await
        .expect("append");
    assert!(!renewed.duplicate, "expired across a restart");
    assert_eq!(ids(&renewed), vec![11, 11]);
    // That batch pruned the expired backlog; only the renewed record is left.
    assert_eq!(dedup_records(&store).await, 1);
    assert_eq!(dedup_index_len(&store).await, 1);
    let third = store
        .append(peer(1, 2, Some(0), "a"))
        .await
        .expect("append");
    assert!(third.duplicate);
    assert_eq!(third.placed, renewed.placed);
}

#[tokio::test]
async fn sync_keys_only_increase_and_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(store.sync_key(q(1)).await.expect("key"), 0);
        store.set_sync_key(q(1), 5).await.expect("set");
        store.set_sync_key(q(1), 3).await.expect("set");
        assert_eq!(store.sync_key(q(1)).await.expect("key"), 5);
        store.set_sync_key(q(1), 8).await.expect("set");
        assert_eq!(store.sync_key(q(1)).await.expect("key"), 8);
        assert_eq!(store.sync_key(q(2)).await.expect("key"), 0);

        assert_eq!(store.group_sync_key(q(1), 100).await.expect("key"), 0);
        store.set_group_sync_key(q(1), 100, 9).await.expect("set");
        store.set_group_sync_key(q(1), 100, 4).await.expect("set");
        store.set_group_sync_key(q(1), 200, 2).await.expect("set");
        assert_eq!(store.group_sync_key(q(1), 100).await.expect("key"), 9);
        assert_eq!(store.group_sync_key(q(1), 200).await.expect("key"), 2);
        assert_eq!(store.group_sync_key(q(2), 100).await.expect("key"), 0);
    }
    let store = open(dir.path());
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 8);
    assert_eq!(store.group_sync_key(q(1), 100).await.expect("key"), 9);
}

#[tokio::test]
async fn a_sync_key_of_a_failed_batch_is_written_by_a_later_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    store.set_sync_key(q(1), 4).await.expect("set");
    store
        .set_group_sync_key(q(1), 100, 4)
        .await
        .expect("set group key");
    faults.fail_next(1);
    store.set_sync_key(q(1), 9).await.expect("set");
    store
        .set_group_sync_key(q(1), 100, 9)
        .await
        .expect("set group key");
    // This batch carries the keys and fails.
    let err = store.append(single(2, "lost")).await;
    assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 9);
    assert_eq!(store.group_sync_key(q(1), 100).await.expect("key"), 9);
    // The next batch writes them; decreases are still refused.
    store.append(single(2, "kept")).await.expect("append");
    store.set_sync_key(q(1), 5).await.expect("set");
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 9);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 9);
    assert_eq!(store.group_sync_key(q(1), 100).await.expect("key"), 9);
    store.set_sync_key(q(1), 5).await.expect("set");
    store.close().await.expect("close");
    let store = open(dir.path());
    assert_eq!(store.sync_key(q(1)).await.expect("key"), 9);
}

#[tokio::test]
async fn sync_keys_are_written_without_any_other_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let before = store.stats();
    store.set_sync_key(q(1), 3).await.expect("set");
    // The writer wakes for the key alone; wait until its batch committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().batches == before.batches {
        assert!(Instant::now() < deadline, "no batch carried the sync key");
        tokio::task::yield_now().await;
    }
    let stored = store
        .read(|db| reader::int(db, &layout::sync_key_key(q(1)), "sync key"))
        .await
        .expect("read");
    assert_eq!(stored, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_built_on_the_one_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    let store = Arc::new(store);
    // Batch 1 (built behind a holding batch): an append and a new device;
    // its sync then stalls until released.
    let hold = hold_next_batch(&store, &faults).await;
    let before = store.stats().placed;
    let first = {
        let s = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::join!(s.append(peer(1, 2, Some(7), "a")), s.device_number("d", 1))
        })
    };
    placed(&store, &faults, before, 2).await;
    faults.stall_next();
    faults.release();
    hold.await.expect("join").expect("hold");
    tokio::time::timeout(Duration::from_secs(10), faults.stalled())
        .await
        .expect("batch 1 reaches its sync");
    assert_eq!(
        all_ids(&*store, 2).await,
        Vec::<i64>::new(),
        "not visible before its sync"
    );
    // Batch 2, placed while batch 1 syncs: it must see batch 1's ids, dedup
    // record and device number although the database does not have them yet.
    let before = store.stats().placed;
    let second = {
        let s = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::join!(
                s.append(peer(1, 2, Some(7), "a")),
                s.device_number("d", 1),
                s.append(single(2, "b")),
            )
        })
    };
    // All three reach the writer (the device is not durable yet, so its
    // number is asked of the writer too).
    placed(&store, &faults, before, 3).await;
    assert_eq!(store.stats().batches, 1, "batch 1 is still syncing");
    faults.release();
    let (dup, device, next) = second.await.expect("join");
    let (a, d) = first.await.expect("join");
    let a = a.expect("append");
    let dup = dup.expect("resend");
    assert!(dup.duplicate);
    assert_eq!(dup.placed, a.placed);
    assert_eq!(device.expect("number"), d.expect("number"));
    assert_eq!(ids(&next.expect("append")), vec![2]);
    assert_eq!(all_ids(&*store, 2).await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_pending_writes_then_refuses_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open_faulty(dir.path());
    let store = Arc::new(store);
    let hold = hold_next_batch(&store, &faults).await;
    let before = store.stats().placed;
    let pending: Vec<_> = (0..10)
        .map(|_| {
            let s = Arc::clone(&store);
            tokio::spawn(async move { s.append(single(1, "queued")).await })
        })
        .collect();
    placed(&store, &faults, before, 10).await;
    let close = {
        let s = Arc::clone(&store);
        tokio::spawn(async move { s.close().await })
    };
    // Released only once the close was asked for: it must drain them.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !store
            .shared
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("close requested");
    faults.release();
    close.await.expect("join").expect("close");
    hold.await.expect("join").expect("hold");
    for p in pending {
        p.await
            .expect("join")
            .expect("queued before close: written");
    }
    assert!(matches!(
        store.append(single(1, "late")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.window(q(1), 0, 10).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.set_sync_key(q(1), 1).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.device_number("d", 1).await,
        Err(StoreError::Closed)
    ));
    store.close().await.expect("second close is a no-op");
    drop(store);
    let store = open(dir.path());
    assert_eq!(all_ids(&store, 1).await, (1..=10).collect::<Vec<_>>());
}

#[test]
fn drop_stops_the_writer_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = open(dir.path());
    rt.block_on(store.append(single(1, "a"))).expect("append");
    drop(store); // joins the writer
    let store = open(dir.path());
    assert_eq!(rt.block_on(all_ids(&store, 1)), vec![1]);
}

#[test]
fn open_creates_missing_directories_and_refuses_a_newer_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    let store = open(&nested);
    assert!(nested.join(DATA_DIR).is_dir());
    drop(store);
    let set_format = |v: u32| {
        let db = FjallKv::open(&nested, &(1 << 20)).expect("open");
        let mut batch = db.batch(1);
        db.stage(
            &mut batch,
            Write::Put(Space::Meta, &layout::META_FORMAT, &v.to_be_bytes()),
        );
        db.commit(batch).expect("commit");
    };
    set_format(layout::FORMAT_VERSION + 1);
    match FjallStore::open(&nested, FjallOptions::default()) {
        Err(StoreError::Backend(why)) => assert!(why.contains("newer Ferry"), "{why}"),
        other => panic!("opened a newer format: {:?}", other.err()),
    }
    set_format(1);
    match FjallStore::open(&nested, FjallOptions::default()) {
        Err(StoreError::Backend(why)) => {
            assert!(
                why.contains("older Ferry") && why.contains("migrate"),
                "{why}"
            )
        }
        other => panic!("opened an older format: {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_mark_survives_reopen_and_keeps_the_send_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FjallOptions {
        dedup_window: Duration::from_millis(400),
        ..FjallOptions::default()
    };
    let first = {
        let store = FjallStore::open(dir.path(), opts.clone()).expect("open");
        let first = store
            .append(peer(1, 2, Some(5), "m"))
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mark = crate::store::Unconfirmed {
            key: key(1, 2, 5),
            queue: q(2),
        };
        store.mark_unconfirmed(vec![mark]).await.expect("mark");
        first
    };
    let store = FjallStore::open(dir.path(), opts).expect("reopen");
    let again = store
        .append(peer(1, 2, Some(5), "m"))
        .await
        .expect("resend");
    assert!(again.duplicate);
    assert_eq!(again.placed, first.placed);
    assert!(
        again.earlier.expect("earlier").unconfirmed,
        "the mark was kept"
    );
    // The window counts from the send, not from the mark.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let late = store
        .append(peer(1, 2, Some(5), "m"))
        .await
        .expect("append");
    assert!(!late.duplicate, "expired 400 ms after the send");
}

#[tokio::test]
async fn a_fan_out_stores_its_body_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let long = bytes::Bytes::from(vec![b'g'; 200]);
    let uids = [1, 2, 3, 4, 5];
    let req = AppendRequest {
        entries: NewEntry::fan_out(APP, &uids, 8, 0, 3, &long),
        dedup: None,
    };
    store.append(req).await.expect("fan-out");
    // A short body and a peer message's two copies stay inline.
    let short = bytes::Bytes::from_static(b"short");
    let req = AppendRequest {
        entries: NewEntry::fan_out(APP, &uids, 8, 0, 3, &short),
        dedup: None,
    };
    store.append(req).await.expect("fan-out");
    store
        .append(peer(1, 2, None, &"p".repeat(200)))
        .await
        .expect("peer");
    let refs = store
        .read(|db| {
            let mut n = 0;
            db.scan(
                Space::Messages,
                &[],
                &layout::KEY_MAX,
                Order::Forward,
                &mut |_, v| {
                    n += usize::from(v.first() == Some(&layout::BODY_REF));
                    Ok(true)
                },
            )?;
            Ok(n)
        })
        .await
        .expect("scan");
    assert_eq!(refs, 4, "one body, four references");
    for uid in uids {
        let w = store.window(q(uid), 0, 10).await.expect("window");
        assert_eq!(w.messages[0].body, long, "uid {uid}");
        assert_eq!(w.messages[1].body, short);
        assert_eq!(w.messages[0].cmd, 8);
        let latest = store.latest(q(uid), 10).await.expect("latest");
        assert_eq!(latest[0].body, long);
    }
    let bad = AppendRequest {
        entries: vec![NewEntry {
            cmd: layout::BODY_REF,
            ..entry(1, "x")
        }],
        dedup: None,
    };
    assert!(matches!(
        store.append(bad).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn migrate_moves_a_format_1_dir_to_the_current_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        FjallStore::migrate(dir.path()).expect("empty"),
        Migrated::Empty
    );
    {
        let store = open(dir.path());
        store
            .append(peer(1, 2, Some(3), "kept"))
            .await
            .expect("append");
        store.set_sync_key(q(2), 1).await.expect("set");
        store.close().await.expect("close");
    }
    {
        // What format 1 looked like: its format record and a dedup record
        // keyed by creation time then the dedup key.
        let db = FjallKv::open(dir.path(), &(1 << 20)).expect("open");
        let mut batch = db.batch(2);
        db.stage(
            &mut batch,
            Write::Put(Space::Meta, &layout::META_FORMAT, &1u32.to_be_bytes()),
        );
        db.stage(
            &mut batch,
            Write::Put(Space::Dedup, &[0x85, 1, 2, 3, 4, 5, 0x81, 7], &[1; 16]),
        );
        db.commit(batch).expect("commit");
    }
    assert!(FjallStore::open(dir.path(), FjallOptions::default()).is_err());
    assert_eq!(
        FjallStore::migrate(dir.path()).expect("migrate"),
        Migrated::Upgraded {
            from: 1,
            dedup_records: 2
        }
    );
    assert_eq!(
        FjallStore::migrate(dir.path()).expect("again"),
        Migrated::Current
    );
    let store = open(dir.path());
    assert_eq!(dedup_records(&store).await, 0);
    let w = store.window(q(2), 0, 10).await.expect("window");
    assert_eq!(&w.messages[0].body[..], b"kept");
    assert_eq!(store.sync_key(q(2)).await.expect("key"), 1);
}

/// Copies a live store's files: what a crash at this instant leaves on disk
/// (every acknowledged batch was fsync'd; nothing was closed or flushed).
fn crash_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            crash_image(&entry.path(), &target);
        } else {
            if let Err(e) = std::fs::copy(entry.path(), &target) {
                panic!("copy {}: {e}", entry.path().display());
            }
        }
    }
}

#[test]
fn acknowledged_writes_survive_a_crash_exactly_once() {
    const N: i64 = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(open(dir.path()));
    let acked = rt.block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let s = Arc::clone(&store);
                tokio::spawn(async move {
                    let dedup = (i % 2 == 0).then_some(i);
                    let out = s
                        .append(peer(1 + i % 3, 10 + i % 5, dedup, &format!("m{i}")))
                        .await
                        .expect("append");
                    (i, out)
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await.expect("join"));
        }
        acked
    });
    rt.block_on(store.set_sync_key(q(1), 77)).expect("set");
    let device = rt
        .block_on(store.device_number("crash", 1))
        .expect("number");
    // The process "dies" now: the running store is never closed or dropped.
    crash_image(&dir.path().join(DATA_DIR), &image.path().join(DATA_DIR));
    std::mem::forget(store);

    let store = open(image.path());
    rt.block_on(async {
        let mut total = 0;
        for uid in (1..=3).chain(10..15) {
            let got = all_ids(&store, uid).await;
            assert_eq!(
                got,
                (1..=got.len() as i64).collect::<Vec<_>>(),
                "queue {uid}"
            );
            total += got.len() as i64;
        }
        assert_eq!(total, 2 * N, "every acknowledged entry, none twice");
        for (i, out) in &acked {
            let receiver = 10 + i % 5;
            let w = store
                .window(q(receiver), out.placed[0].msgid - 1, 1)
                .await
                .expect("window");
            assert_eq!(w.messages[0].body, format!("m{i}").as_bytes());
            if i % 2 == 0 {
                let again = store
                    .append(peer(1 + i % 3, receiver, Some(*i), &format!("m{i}")))
                    .await
                    .expect("resend");
                assert!(again.duplicate, "dedup record of {i} survived");
                assert_eq!(again.placed, out.placed);
            }
        }
        assert_eq!(store.sync_key(q(1)).await.expect("key"), 77);
        assert_eq!(
            store.device_number("crash", 1).await.expect("number"),
            device
        );
        assert_ne!(
            store.device_number("other", 1).await.expect("number"),
            device
        );
    });
}

/// One-off measurement of the group-commit path:
/// `cargo test -p ferry-im --release --lib store::engine::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "measurement, run explicitly in release mode"]
fn throughput_100_concurrent_peer_writers() {
    const WRITERS: i64 = 100;
    const USERS: i64 = 1000;
    let secs: u64 = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(open(dir.path()));
    let body = "b".repeat(100);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let latencies = rt.block_on(async {
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
    let mut lat = latencies;
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    let stats = store.stats();
    println!(
        "appends={n} in {:.2?}: {:.0} appends/s, avg batch {:.1} requests, p50 {:?}, p99 {:?}, max {:?}",
        elapsed,
        n as f64 / elapsed.as_secs_f64(),
        stats.requests as f64 / stats.batches.max(1) as f64,
        pct(0.50),
        pct(0.99),
        lat[n - 1],
    );
}
