//! `ferry bench baseline-server`: the bare fan-out limit of this machine.
//!
//! A minimal Tokio server that speaks just enough of the client protocol for
//! `ferry bench room` to run against it unchanged: AUTH_TOKEN is answered
//! with AUTH_STATUS 0 (no token check), PING with PONG, ENTER_ROOM adds the
//! connection to the one room, and a ROOM_IM is encoded once into a frame
//! (seq 0) whose bytes are shared by every other member, then ACKed. Each
//! connection has a writer task that concatenates whatever is queued into
//! one write. No storage, no sessions, no per-recipient work beyond the
//! queue push and the copy into the socket: what Ferry's room path is
//! compared against.

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Args;
use ferry_common::protocol::command::{
    ACK, AUTH_STATUS, AUTH_TOKEN, ENTER_ROOM, LEAVE_ROOM, PING, PONG, ROOM_IM,
};
use ferry_common::protocol::{HEADER_LEN, Header, MAX_CLIENT_BODY};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:24000")]
    pub listen: SocketAddr,
}

type Tx = mpsc::UnboundedSender<Bytes>;

#[derive(Default)]
struct Room {
    members: Mutex<HashMap<u64, Tx>>,
    next_id: AtomicU64,
}

pub async fn run(a: BaselineArgs) -> anyhow::Result<()> {
    if !a.listen.ip().is_loopback() {
        anyhow::bail!("the baseline server only listens on loopback addresses");
    }
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    eprintln!("baseline fan-out server on {}", a.listen);
    let room = Arc::new(Room::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of fds and the like: keep serving the others.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let room = room.clone();
        tokio::spawn(async move {
            let id = room.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = serve(stream, id, &room).await;
            room.members
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }
}

fn frame(cmd: u8, version: u8, seq: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    Header {
        len: body.len(),
        seq,
        cmd,
        version,
        flag: 0,
    }
    .write(&mut b);
    b.put_slice(body);
    b.freeze()
}

async fn serve(stream: TcpStream, id: u64, room: &Room) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut buf = BytesMut::new();
        while rx.recv_many(&mut batch, 1024).await > 0 {
            for b in batch.drain(..) {
                buf.extend_from_slice(&b);
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
            if buf.capacity() > 256 * 1024 {
                buf = BytesMut::new();
            }
        }
    });
    let mut buf = BytesMut::with_capacity(4096);
    let result = async {
        loop {
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            while buf.len() >= HEADER_LEN {
                let mut h = [0u8; HEADER_LEN];
                h.copy_from_slice(&buf[..HEADER_LEN]);
                let h = Header::parse(&h, MAX_CLIENT_BODY)?;
                if buf.len() < HEADER_LEN + h.len {
                    break;
                }
                buf.advance(HEADER_LEN);
                let body = buf.split_to(h.len).freeze();
                let v = h.version;
                match h.cmd {
                    AUTH_TOKEN => {
                        let _ = tx.send(frame(AUTH_STATUS, v, 0, &0i32.to_be_bytes()));
                    }
                    PING => {
                        let _ = tx.send(frame(PONG, v, 0, &[]));
                    }
                    ENTER_ROOM => {
                        room.members
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, tx.clone());
                    }
                    LEAVE_ROOM => {
                        room.members
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                    }
                    ROOM_IM => {
                        let shared = frame(ROOM_IM, v, 0, &body);
                        {
                            let members = room.members.lock().unwrap_or_else(|e| e.into_inner());
                            for (m, t) in members.iter() {
                                if *m != id {
                                    let _ = t.send(shared.clone());
                                }
                            }
                        }
                        let mut ack = [0u8; 5];
                        ack[..4].copy_from_slice(&h.seq.to_be_bytes());
                        let _ = tx.send(frame(ACK, v, 0, &ack));
                    }
                    _ => {}
                }
            }
        }
    }
    .await;
    drop(tx);
    room.members
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    let _ = writer.await;
    result
}
