//! The group management API and the group post endpoints on one node.

use super::*;
use crate::store::group::group_queue;
use bytes::Bytes;
use ferry_common::protocol::command::{GROUP_IM, GROUP_NOTIFICATION, SYNC_GROUP_NOTIFY};
use ferry_common::protocol::group_sync::GroupSyncKey;

async fn create(api: &Api, body: Value) -> Reply {
    api.post("/groups", body.to_string().as_bytes()).await
}

#[tokio::test]
async fn management_api_round_trip() {
    let api = start(None).await;
    let r = create(
        &api,
        json!({"appid":7,"group_id":3110,"super":false,"members":[1,2,3]}),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"data":{"group_id":3110}}))
    );
    // Allocated id.
    let r = create(&api, json!({"appid":7,"members":[9]})).await;
    let gid = r.json()["data"]["group_id"].as_i64().expect("gid");
    assert_ne!(gid, 3110);
    assert_eq!(
        create(&api, json!({"appid":7,"group_id":3110}))
            .await
            .error()
            .0,
        409
    );

    let g = api.get("/groups/3110?appid=7").await.json();
    assert_eq!(g["data"]["super"], false);
    let uids: Vec<i64> = g["data"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["uid"].as_i64().expect("uid"))
        .collect();
    assert_eq!(uids, vec![1, 2, 3]);
    assert_eq!(g["data"]["members"][0]["mute"], false);

    let r = api
        .post("/groups/3110/members?appid=7", br#"{"members":[4,5]}"#)
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"data":{}})));
    let r = api
        .call("DELETE", "/groups/3110/members/1?appid=7", "", b"")
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .post("/groups/3110/mute?appid=7", br#"{"uid":4,"mute":true}"#)
        .await;
    assert_eq!(r.status, 200);
    let g = api.get("/groups/3110?appid=7").await.json();
    let members = g["data"]["members"].as_array().expect("members").clone();
    assert_eq!(members.len(), 4);
    assert_eq!(members[2]["uid"], 4);
    assert_eq!(members[2]["mute"], true);
    assert_eq!(
        api.post("/groups/3110/upgrade?appid=7", b"").await.status,
        200
    );
    assert_eq!(
        api.get("/groups/3110?appid=7").await.json()["data"]["super"],
        true
    );
    assert_eq!(
        api.call("DELETE", "/groups/3110?appid=7", "", b"")
            .await
            .status,
        200
    );

    // Unknown group → 404 everywhere.
    assert_eq!(api.get("/groups/3110?appid=7").await.error().0, 404);
    assert_eq!(
        api.call("DELETE", "/groups/3110?appid=7", "", b"")
            .await
            .error()
            .0,
        404
    );
    assert_eq!(
        api.post("/groups/3110/members?appid=7", br#"{"members":[1]}"#)
            .await
            .error()
            .0,
        404
    );
    assert_eq!(
        api.call("DELETE", "/groups/3110/members/1?appid=7", "", b"")
            .await
            .error()
            .0,
        404
    );
    assert_eq!(
        api.post("/groups/3110/mute?appid=7", br#"{"uid":1,"mute":true}"#)
            .await
            .error()
            .0,
        404
    );
    assert_eq!(
        api.post("/groups/3110/upgrade?appid=7", b"")
            .await
            .error()
            .0,
        404
    );
    // Mute of a non-member of an existing group is a 404 too.
    assert_eq!(
        api.post(
            &format!("/groups/{gid}/mute?appid=7"),
            br#"{"uid":1,"mute":true}"#
        )
        .await
        .error(),
        (404, "not a member".to_string())
    );
}

#[tokio::test]
async fn bad_input_is_a_json_400() {
    let api = start(None).await;
    for body in [
        &b"not json"[..],
        br#"{"group_id":1}"#,
        br#"{"appid":0,"group_id":1}"#,
        br#"{"appid":7,"group_id":0}"#,
        br#"{"appid":7,"members":"x"}"#,
        br#"{"appid":7,"members":[0]}"#,
        br#"{"appid":7,"bogus":1}"#,
    ] {
        let r = api.post("/groups", body).await;
        assert_eq!(r.error().0, 400, "{}", String::from_utf8_lossy(body));
    }
    create(&api, json!({"appid":7,"group_id":1})).await;
    assert_eq!(api.get("/groups/x?appid=7").await.error().0, 400);
    assert_eq!(api.get("/groups/1").await.error().0, 400);
    assert_eq!(api.get("/groups/1?appid=-7").await.error().0, 400);
    assert_eq!(
        api.post("/groups/1/mute?appid=7", br#"{"uid":1}"#)
            .await
            .error()
            .0,
        400
    );
    assert_eq!(
        api.post("/groups/1/members?appid=7", b"[]").await.error().0,
        400
    );
    assert_eq!(
        api.call("PUT", "/groups/1?appid=7", "", b"")
            .await
            .error()
            .0,
        405
    );
    // A 10,000-member list fits the group routes' body limit.
    let members: Vec<i64> = (1..=10_000).collect();
    let r = create(&api, json!({"appid":7,"group_id":2,"members":members})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn post_group_message_fans_out_to_every_member_queue() {
    let api = start(None).await;
    create(&api, json!({"appid":7,"group_id":5,"members":[1,2,3]})).await;
    let m2 = api.connect_user(7, 2, 20);
    let r = api
        .post("/post_group_message?appid=7&sender=1&receiver=5", b"hi")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for uid in [1, 2, 3] {
        let w = api
            .node
            .store
            .window(QueueId { appid: 7, uid }, 0, 10)
            .await
            .expect("window");
        assert_eq!(w.messages.len(), 1, "uid {uid}");
        assert_eq!(w.messages[0].cmd, GROUP_IM);
        let im = Im::decode(GROUP_IM, 2, w.messages[0].body.clone()).expect("im");
        assert_eq!(
            (im.sender, im.receiver, &im.content[..]),
            (1, 5, &b"hi"[..])
        );
    }
    let frames = drain(&m2);
    assert_eq!(frames.len(), 2);
    assert_eq!((frames[0].cmd, frames[0].flag), (GROUP_IM, PUSH));
    assert_eq!(frames[0].meta.expect("meta").sync_key, 1);
    assert_eq!(frames[1].cmd, SYNC_NOTIFY);
    // Unknown group.
    let r = api
        .post("/post_group_message?appid=7&sender=1&receiver=6", b"hi")
        .await;
    assert_eq!(r.error().0, 404);
}

#[tokio::test]
async fn group_notifications_normal_and_super() {
    let api = start(None).await;
    create(&api, json!({"appid":7,"group_id":5,"members":[1,2]})).await;
    create(
        &api,
        json!({"appid":7,"group_id":6,"super":true,"members":[1,2]}),
    )
    .await;
    let m2 = api.connect_user(7, 2, 20);

    // Normal: stored in each member's queue (given members added), SYNC_NOTIFY.
    let r = api
        .post(
            "/post_group_notification",
            br#"{"appid":7,"group_id":5,"notification":"{\"x\":1}","members":[3]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for uid in [1, 2, 3] {
        let w = api
            .node
            .store
            .window(QueueId { appid: 7, uid }, 0, 10)
            .await
            .expect("w");
        assert_eq!(w.messages.len(), 1);
        assert_eq!(w.messages[0].cmd, GROUP_NOTIFICATION);
        assert_eq!(&w.messages[0].body[..], br#"{"x":1}"#);
    }
    let frames = drain(&m2);
    assert_eq!(
        frames.iter().map(|f| f.cmd).collect::<Vec<_>>(),
        vec![SYNC_NOTIFY]
    );

    // Super: stored once in the group queue, SYNC_GROUP_NOTIFY to members.
    let r = api
        .post(
            "/post_group_notification",
            br#"{"appid":7,"group_id":6,"notification":"up"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let w = api
        .node
        .store
        .window(group_queue(7, 6), 0, 10)
        .await
        .expect("w");
    assert_eq!(w.messages.len(), 1);
    assert_eq!(w.messages[0].cmd, GROUP_NOTIFICATION);
    let frames = drain(&m2);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].cmd, SYNC_GROUP_NOTIFY);
    assert_eq!(
        GroupSyncKey::decode(SYNC_GROUP_NOTIFY, frames[0].body.clone()).expect("body"),
        GroupSyncKey {
            group_id: 6,
            sync_key: 1
        }
    );
    // No group, no members.
    let r = api
        .post(
            "/post_group_notification",
            br#"{"appid":7,"group_id":99,"notification":"x"}"#,
        )
        .await;
    assert_eq!(r.error(), (400, "group no member".to_string()));
}

/// Concurrent sends to one group land in the same order in every member's
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_per_group_under_concurrent_sends() {
    let api = Arc::new(start(None).await);
    let members: Vec<i64> = (1..=20).collect();
    create(&api, json!({"appid":7,"group_id":5,"members":members})).await;
    let sends: Vec<_> = (0..30)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let r = api
                    .post(
                        &format!(
                            "/post_group_message?appid=7&sender={}&receiver=5",
                            i % 20 + 1
                        ),
                        format!("m{i}").as_bytes(),
                    )
                    .await;
                assert_eq!(r.status, 200);
            })
        })
        .collect();
    for s in sends {
        s.await.expect("send");
    }
    let mut first: Option<Vec<Bytes>> = None;
    for uid in 1..=20 {
        let w = api
            .node
            .store
            .window(QueueId { appid: 7, uid }, 0, 100)
            .await
            .expect("window");
        let bodies: Vec<Bytes> = w.messages.iter().map(|m| m.body.slice(20..)).collect();
        assert_eq!(bodies.len(), 30);
        match &first {
            None => first = Some(bodies),
            Some(f) => assert_eq!(&bodies, f, "uid {uid}"),
        }
    }
}
