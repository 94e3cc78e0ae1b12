//! Two im nodes, one imr, one Redis: a peer message crosses nodes.

mod support;

use ferry_common::client::{Client, Event};
use ferry_common::protocol::Message;
use std::time::Duration;
use support::{APPID, Imr, Redis, cluster_im, token};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_message_crosses_im_nodes_through_the_imr() {
    let redis = Redis::start();
    let imr = Imr::start(Some(&redis), &[]);
    let node_a = cluster_im(&[&imr], &redis.url(), &[]);
    let node_b = cluster_im(&[&imr], &redis.url(), &[]);
    let mut b = Client::connect(node_b.tcp).await.expect("connect b");
    b.auth(&token(2), 1, "b", 2).await.expect("auth b");
    tokio::task::block_in_place(|| imr.wait_online(APPID, 2));
    let a = Client::connect(node_a.tcp).await.expect("connect a");
    a.auth(&token(1), 1, "a", 2).await.expect("auth a");
    let ack = a.send_im(2, "across", 1).await.expect("ack");
    assert!(ack.is_ok(), "ack {ack:?}");
    loop {
        match b.recv_timeout(WAIT).await.expect("b gets the message") {
            Event::Message {
                msg: Message::Im(m),
                ..
            }
            | Event::Synced {
                msg: Message::Im(m),
                ..
            } => {
                assert_eq!(m.content.as_ref(), b"across");
                assert_eq!(m.sender, 1);
                break;
            }
            _ => {}
        }
    }
}
