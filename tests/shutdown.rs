//! Graceful shutdown: SIGTERM while a client is pipelining messages. Every
//! message the server ACKed before closing is there after a restart, nothing
//! is stored that was not ACKed, nothing twice; WebSocket clients get a
//! "going away" close; the process exits 0.

mod support;
mod wire;

use ferry_common::protocol::command::{ACK, IM};
use ferry_common::protocol::im::Im as ImBody;
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::time::Duration;
use support::Im;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wire::{Raw, ack_of};

const SENT: i32 = 20000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_acks_and_restart_loses_nothing() {
    let mut im = Im::start(&["--sync-limit", "30000"]);
    let mut a = Raw::login(im.tcp, 1, "sender", 2).await.named("sender");
    let tcp = TcpStream::connect(im.ws).await.expect("ws connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .expect("ws handshake");

    // Pipeline every message without waiting, then SIGTERM at once, so
    // the shutdown lands while frames are being stored and ACKed.
    // One write for all frames: the server is still storing them when the
    // signal arrives.
    let mut seqs = Vec::new();
    let mut burst = Vec::new();
    for i in 0..SENT {
        let seq = a.next_seq();
        let body = ImBody {
            sender: 1,
            receiver: 2,
            timestamp: 0,
            msgid: i,
            content: format!("m{i}").into_bytes().into(),
        }
        .encode(2);
        burst.extend_from_slice(&wire::header(body.len() as i32, seq, IM, 2));
        burst.extend_from_slice(&body);
        seqs.push(seq);
    }
    a.send_bytes(&burst).await;
    let pid = im.pid().expect("running");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());

    let frames = a.drain_until_closed(Duration::from_secs(20)).await;
    let acked: BTreeSet<i32> = frames
        .iter()
        .filter(|f| f.cmd == ACK)
        .map(|f| {
            let (seq, status) = ack_of(f);
            assert_eq!(status, Some(0), "only successful ACKs");
            seq
        })
        .collect();
    assert!(!acked.is_empty(), "some messages were ACKed");
    eprintln!(
        "{} of {SENT} messages ACKed before the shutdown",
        acked.len()
    );

    let close = tokio::time::timeout(wire::WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("ws closed within the wait");
    assert_eq!(
        close,
        Some(1001),
        "WebSocket clients are told the server is going away"
    );

    let status = im.terminate();
    assert!(status.success(), "clean exit: {status}\n{}", im.log());
    assert!(im.log().contains("stopped"), "{}", im.log());

    im.restart();
    let mut b = Raw::login(im.tcp, 2, "receiver", 2).await.named("receiver");
    let batch = b.sync(0).await;
    let stored: Vec<String> = batch.contents();
    assert!(batch.messages.iter().all(|f| f.cmd == IM));
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "nothing stored twice");
    let expected: BTreeSet<String> = acked
        .iter()
        .map(|seq| {
            let i = seqs.iter().position(|s| s == seq).expect("our seq");
            format!("m{i}")
        })
        .collect();
    let got: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(
        got,
        expected,
        "exactly the ACKed messages survive the restart ({} acked of {SENT})\n{}",
        acked.len(),
        im.log()
    );
}
