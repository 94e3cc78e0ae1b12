//! Behaviour tests of [`GroupStore`], run against every backend
//! (fjall, standalone Redis, Redis Cluster).

use super::group::{GroupStore, Member, NewGroup, Standing, Update};
use std::sync::Arc;

type Shared = Arc<dyn GroupStore>;

fn new_group(appid: i64, gid: Option<i64>, members: &[i64]) -> NewGroup {
    NewGroup {
        appid,
        gid,
        is_super: false,
        members: members.to_vec(),
        joined: 1000,
    }
}

fn m(uid: i64, joined: i64, mute: bool) -> Member {
    Member { uid, joined, mute }
}

async fn create_and_read(s: Shared) {
    assert_eq!(
        s.create(new_group(7, Some(3110), &[3, 1, 2]))
            .await
            .unwrap(),
        Some(3110)
    );
    let g = s.group(7, 3110).await.unwrap().expect("group");
    assert!(!g.is_super);
    assert_eq!(
        g.members,
        vec![m(1, 1000, false), m(2, 1000, false), m(3, 1000, false)]
    );
    // A taken gid is refused and left unchanged.
    assert_eq!(
        s.create(new_group(7, Some(3110), &[9])).await.unwrap(),
        None
    );
    assert_eq!(
        s.group(7, 3110)
            .await
            .unwrap()
            .expect("group")
            .members
            .len(),
        3
    );
    // Same gid in another app is another group.
    let mut other = new_group(8, Some(3110), &[]);
    other.is_super = true;
    assert_eq!(s.create(other).await.unwrap(), Some(3110));
    let g8 = s.group(8, 3110).await.unwrap().expect("group");
    assert!(g8.is_super && g8.members.is_empty());
    assert_eq!(s.group(7, 999).await.unwrap(), None);
}

async fn ids_are_allocated_without_collisions(s: Shared) {
    let a = s
        .create(new_group(7, None, &[1]))
        .await
        .unwrap()
        .expect("gid");
    // Take the next id by hand: allocation must skip it.
    assert_eq!(
        s.create(new_group(7, Some(a + 1), &[])).await.unwrap(),
        Some(a + 1)
    );
    let b = s
        .create(new_group(7, None, &[]))
        .await
        .unwrap()
        .expect("gid");
    assert!(b != a && b != a + 1, "{a} {b}");
    assert!(s.group(7, b).await.unwrap().is_some());
}

async fn membership_changes(s: Shared) {
    s.create(new_group(7, Some(5), &[1, 2])).await.unwrap();
    assert_eq!(s.set_mute(7, 5, 2, true).await.unwrap(), Update::Done);
    // Adding keeps an existing member's join time and mute.
    assert_eq!(
        s.add_members(7, 5, vec![2, 4], 2000).await.unwrap(),
        Update::Done
    );
    let g = s.group(7, 5).await.unwrap().expect("group");
    assert_eq!(
        g.members,
        vec![m(1, 1000, false), m(2, 1000, true), m(4, 2000, false)]
    );
    assert!(matches!(
        s.standing(7, 5, 2).await.unwrap(),
        Standing::Member { is_super: false, member, .. } if member == m(2, 1000, true)
    ));
    assert_eq!(s.set_mute(7, 5, 2, false).await.unwrap(), Update::Done);
    assert_eq!(s.set_mute(7, 5, 9, true).await.unwrap(), Update::NoMember);
    assert_eq!(s.remove_member(7, 5, 1).await.unwrap(), Update::Done);
    assert_eq!(s.remove_member(7, 5, 1).await.unwrap(), Update::Done);
    assert!(matches!(
        s.standing(7, 5, 1).await.unwrap(),
        Standing::NotMember {
            is_super: false,
            ..
        }
    ));
    assert_eq!(s.upgrade(7, 5).await.unwrap(), Update::Done);
    let g = s.group(7, 5).await.unwrap().expect("group");
    assert!(g.is_super);
    assert_eq!(g.members, vec![m(2, 1000, false), m(4, 2000, false)]);
    assert!(s.delete(7, 5).await.unwrap());
    assert!(!s.delete(7, 5).await.unwrap());
    assert_eq!(s.group(7, 5).await.unwrap(), None);
    assert_eq!(s.standing(7, 5, 2).await.unwrap(), Standing::NoGroup);
    // Every change on a missing group says so.
    assert_eq!(
        s.add_members(7, 5, vec![1], 1).await.unwrap(),
        Update::NoGroup
    );
    assert_eq!(s.remove_member(7, 5, 1).await.unwrap(), Update::NoGroup);
    assert_eq!(s.set_mute(7, 5, 1, true).await.unwrap(), Update::NoGroup);
    assert_eq!(s.upgrade(7, 5).await.unwrap(), Update::NoGroup);
    // A recreated group starts empty (members were deleted with it).
    s.create(new_group(7, Some(5), &[])).await.unwrap();
    assert!(
        s.group(7, 5)
            .await
            .unwrap()
            .expect("group")
            .members
            .is_empty()
    );
}

/// Every change gives the group a new version, seen by both reads.
async fn versions_change_with_every_write(s: Shared) {
    s.create(new_group(7, Some(8), &[1])).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let version = |s: Shared| async move {
        let g = s.group(7, 8).await.unwrap().expect("group").version;
        let st = s
            .standing(7, 8, 1)
            .await
            .unwrap()
            .version()
            .expect("exists");
        assert_eq!(g, st);
        g
    };
    assert!(seen.insert(version(s.clone()).await));
    s.add_members(7, 8, vec![2], 5).await.unwrap();
    assert!(seen.insert(version(s.clone()).await));
    s.set_mute(7, 8, 2, true).await.unwrap();
    assert!(seen.insert(version(s.clone()).await));
    s.remove_member(7, 8, 2).await.unwrap();
    assert!(seen.insert(version(s.clone()).await));
    s.upgrade(7, 8).await.unwrap();
    assert!(seen.insert(version(s.clone()).await));
    s.delete(7, 8).await.unwrap();
    s.create(new_group(7, Some(8), &[1])).await.unwrap();
    assert!(seen.insert(version(s.clone()).await));
}

async fn large_groups(s: Shared) {
    let members: Vec<i64> = (1..=10_000).collect();
    s.create(new_group(7, Some(77), &members)).await.unwrap();
    let g = s.group(7, 77).await.unwrap().expect("group");
    assert_eq!(g.members.len(), 10_000);
    assert!(g.members.iter().map(|m| m.uid).eq(members.iter().copied()));
}

macro_rules! cases {
    ($fixture:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn create_and_read() {
            let (s, _g) = $fixture().await;
            super::create_and_read(s).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ids_are_allocated_without_collisions() {
            let (s, _g) = $fixture().await;
            super::ids_are_allocated_without_collisions(s).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn membership_changes() {
            let (s, _g) = $fixture().await;
            super::membership_changes(s).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn versions_change_with_every_write() {
            let (s, _g) = $fixture().await;
            super::versions_change_with_every_write(s).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn large_groups() {
            let (s, _g) = $fixture().await;
            super::large_groups(s).await;
        }
    };
}

mod fjall {
    use super::Shared;
    use crate::store::FjallGroupStore;
    use std::sync::Arc;

    async fn fixture() -> (Shared, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FjallGroupStore::open(dir.path()).expect("open");
        (Arc::new(s), dir)
    }
    cases!(fixture);

    #[tokio::test]
    async fn groups_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FjallGroupStore::open(dir.path()).expect("open");
        super::super::group::GroupStore::create(&s, super::new_group(7, Some(1), &[5]))
            .await
            .unwrap();
        drop(s);
        let s = FjallGroupStore::open(dir.path()).expect("reopen");
        let g = super::super::group::GroupStore::group(&s, 7, 1)
            .await
            .unwrap();
        assert_eq!(g.expect("group").members.len(), 1);
    }
}

mod redis_standalone {
    use super::Shared;
    use crate::store::group::group_dedup_receiver;
    use crate::store::{
        AppendRequest, DedupKey, NewEntry, QueueId, RedisGroupStore, RedisStore, RedisStoreOptions,
        Store,
    };
    use ferry_testkit::redis::RedisServer;
    use std::sync::Arc;

    /// Redis writes a fan-out queue by queue; a fan-out cut short (im or
    /// Redis crash after some queues) is completed by the resend with the
    /// same fan-out record, and no member gets a second copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_fan_out_is_completed_once_by_the_resend() {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis");
        let store = RedisStore::connect(&server.url(), RedisStoreOptions::default())
            .await
            .expect("connect");
        let key = DedupKey {
            appid: 7,
            sender: 1,
            device_id: 3,
            client_msgid: 42,
            receiver: group_dedup_receiver(100),
        };
        let fan_out = |uids: &[i64]| AppendRequest {
            entries: uids
                .iter()
                .map(|&uid| NewEntry {
                    queue: QueueId { appid: 7, uid },
                    cmd: 8,
                    flag: 0,
                    device_id: 3,
                    body: bytes::Bytes::from_static(b"g"),
                })
                .collect(),
            dedup: Some(crate::store::test_support::dedup(key, "g")),
        };
        // The crash: only the first two members' queues were written.
        let partial = store.append(fan_out(&[1, 2])).await.expect("partial");
        let full = store.append(fan_out(&[1, 2, 3, 4])).await.expect("resend");
        assert_eq!(full.placed[..2], partial.placed[..]);
        for uid in 1..=4 {
            let w = store
                .window(QueueId { appid: 7, uid }, 0, 10)
                .await
                .expect("window");
            assert_eq!(w.messages.len(), 1, "uid {uid}");
        }
        // A third try changes nothing.
        store.append(fan_out(&[1, 2, 3, 4])).await.expect("again");
        for uid in 1..=4 {
            let w = store
                .window(QueueId { appid: 7, uid }, 0, 10)
                .await
                .expect("w");
            assert_eq!(w.messages.len(), 1, "uid {uid}");
        }
    }

    async fn fixture() -> (Shared, RedisServer) {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis");
        let store = RedisStore::connect(&server.url(), RedisStoreOptions::default())
            .await
            .expect("connect");
        (Arc::new(RedisGroupStore::new(Arc::new(store))), server)
    }
    cases!(fixture);
}

mod redis_cluster {
    use crate::store::{RedisGroupStore, RedisStore, RedisStoreOptions};
    use ferry_testkit::redis::RedisCluster;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_suite_on_a_three_node_cluster() {
        let cluster = tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .expect("start cluster");
        for (i, prefix) in ["g1", "g2", "g3", "g4", "g5"].iter().enumerate() {
            let opts = RedisStoreOptions {
                key_prefix: prefix.to_string(),
                ..RedisStoreOptions::default()
            };
            let store = RedisStore::connect(&cluster.url(), opts)
                .await
                .expect("connect");
            let s: super::Shared = Arc::new(RedisGroupStore::new(Arc::new(store)));
            match i {
                0 => super::create_and_read(s).await,
                1 => super::ids_are_allocated_without_collisions(s).await,
                2 => super::membership_changes(s).await,
                3 => super::versions_change_with_every_write(s).await,
                _ => super::large_groups(s).await,
            }
        }
    }
}
